//! The dump sink must not slow dumps: a stream (default 1 GiB, `BENCH_SINK_MIB`) through
//! `provision dump-sink` (`dd of=` as kdump-tools sends it) against plain `ssh … dd of=` to the
//! same namespace host (tests/support/nshost.rs) over the same ssh, alternating, median of
//! `BENCH_REPS` (3). Prints MB/s and the ratio sink / dd (goal ≥ 0.9). Needs root; prints
//! `SKIP:` otherwise. Under `cargo test --all-targets` (no `--bench`) it does nothing.

// Test harnesses shared with tests/main.rs; a bench uses only part of each.
#[allow(dead_code)]
#[path = "../tests/support/nshost.rs"]
mod nshost;

use std::process::Command;
use std::time::Instant;

use nshost::{Fleet, require_root_tools};

const PROVISION: &str = env!("CARGO_BIN_EXE_provision");

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("sink: not run under cargo test; run `sudo cargo bench --bench sink`");
        return;
    }
    if !require_root_tools() {
        return;
    }
    let mib = env_u64("BENCH_SINK_MIB", 1024);
    let reps = env_u64("BENCH_REPS", 3).max(1);
    let fleet = Fleet::start(&["srv"]);
    let srv = fleet.host("srv");
    let gw = fleet.gateway();
    let ssh = format!(
        "ssh -F '{}' -i '{}' -o UserKnownHostsFile='{}' -o BatchMode=yes root@{}",
        fleet.ssh_config_path().display(),
        fleet.client_key_path().display(),
        fleet.known_hosts_path().display(),
        srv.address
    );
    let sink = |cmd: &str| {
        format!(
            "\"SSH_ORIGINAL_COMMAND='{cmd}' {PROVISION} dump-sink --client bench --ip {gw} --dump-dir /var/crash --keep-dumps 0\""
        )
    };
    let run = |remote: &str| -> f64 {
        let t = Instant::now();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("head -c {}M /dev/zero | {ssh} {remote}", mib))
            .output()
            .expect("sh");
        let secs = t.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "{remote}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (mib as f64 * 1.048_576) / secs
    };
    let dir = format!("/var/crash/{gw}-1");
    let mut plain = Vec::new();
    let mut through = Vec::new();
    for _ in 0..reps {
        plain.push(run("dd of=/var/crash/peer bs=1M status=none"));
        srv.exec_ok("rm -f /var/crash/peer");
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{ssh} {} < /dev/null",
                sink(&format!("mkdir -p {dir}"))
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        through.push(run(&sink(&format!("dd of={dir}/dump-incomplete"))));
        let size: u64 = srv
            .exec_ok(&format!("stat -c %s {dir}/dump-incomplete"))
            .trim()
            .parse()
            .unwrap();
        assert_eq!(size, mib << 20, "the sink stored every byte");
        srv.exec_ok(&format!("rm -rf {dir}"));
    }
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "sink: runs (MB/s): dd of= [{}], dump-sink [{}]",
        fmt(&plain),
        fmt(&through)
    );
    let (p, s) = (median(plain), median(through));
    println!(
        "sink: {mib} MiB, median of {reps}: ssh dd of= {p:.0} MB/s, ssh dump-sink {s:.0} MB/s, ratio {:.2} (goal >= 0.9)",
        s / p
    );
}
