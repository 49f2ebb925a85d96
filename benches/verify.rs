//! On-demand benchmark: `provision verify` on a fleet of namespace hosts
//! (`sudo cargo bench --bench verify`, issue 12): wall time and ssh round trips per host, against
//! `provision apply --check` on the same fleet in the same run (the other read-only sweep of
//! the fleet: facts and one observation per host, changing nothing).
//!
//! One fleet of `BENCH_HOSTS` namespace hosts (default 50: 1 server + 49 kdump clients) is set
//! up with `provision apply`, with what namespace hosts cannot have simulated as in
//! tests/support/kdump_sim.rs (kdump loaded, netconsole, the receiver started by hand). Then
//! `BENCH_REPS` (default 3) rounds alternate verify and apply --check; every verify must pass
//! every check, or the bench fails. Medians and the ratio verify / apply --check are printed.
//! Under `cargo test --all-targets` (no `--bench` argument) it does nothing.

#[allow(dead_code)]
#[path = "../tests/support/kdump_sim.rs"]
mod kdump_sim;
#[allow(dead_code)]
#[path = "../tests/support/nshost.rs"]
mod nshost;

use std::path::Path;
use std::time::Instant;

use kdump_sim::{Kill, include_sshd_dropin, simulate_kdump, start_forwarder, start_receiver};
use nshost::{Fleet, require_root_tools, show};

const PROVISION: &str = env!("CARGO_BIN_EXE_provision");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("verify bench: not run under cargo test; run `sudo cargo bench --bench verify`");
        return;
    }
    if !require_root_tools() {
        return;
    }
    let hosts = env_usize("BENCH_HOSTS", 50).max(2);
    let reps = env_usize("BENCH_REPS", 3).max(1);
    let mut names = vec!["srv".to_string()];
    names.extend((1..hosts).map(|i| format!("k{i:02}")));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    println!(
        "verify bench: {hosts} namespace hosts (1 server + {} kdump clients), {reps} rounds",
        hosts - 1
    );
    let t = Instant::now();
    let fleet = Fleet::start(&refs);
    println!("fleet up in {:.1}s", t.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    let mut text = format!(
        "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n    netdump_manage_packages: false\n    netdump_manage_services: false\n  children:\n    netdump_servers:\n      hosts:\n        srv:\n          ansible_host: {}\n    netdump_clients:\n      vars:\n        netdump_client_flavor: kdump\n      hosts:\n",
        fleet.client_key_path().display(),
        fleet.host("srv").address
    );
    for n in names.iter().skip(1) {
        text.push_str(&format!(
            "        {n}:\n          ansible_host: {}\n",
            fleet.host(n).address
        ));
    }
    std::fs::write(&inv, text).unwrap();
    let run = |sub: &str, extra: &[&str]| {
        let mut c = fleet.provision(Path::new(PROVISION), sub, 10);
        if sub == "verify" {
            c.arg("-i");
        }
        let t = Instant::now();
        let out = c.arg(&inv).args(extra).output().expect("run provision");
        (t.elapsed().as_secs_f64(), out)
    };
    let (secs, out) = run("apply", &["--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "apply: {}", show(&out));
    println!("apply (cold) {secs:.1}s");
    let srv = fleet.host("srv");
    include_sshd_dropin(srv);
    let mut procs = Kill(vec![start_receiver(srv)]);
    for n in names.iter().skip(1) {
        let h = fleet.host(n);
        simulate_kdump(h);
        procs.0.push(start_forwarder(h, &srv.address.to_string()));
    }

    let (mut v, mut a, mut trips) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=reps {
        let (secs, out) = run("verify", &["--output", "json"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "verify: {}", show(&out));
        let recap: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
        let per_host = recap["round_trips"].as_f64().unwrap_or(0.0) / hosts as f64;
        let (asecs, aout) = run("apply", &["--check", "--output", "json"]);
        assert_eq!(
            aout.status.code(),
            Some(0),
            "apply --check: {}",
            show(&aout)
        );
        println!(
            "round {round}: verify {secs:.2}s ({} checks, {per_host:.2} round trips per host), apply --check {asecs:.2}s",
            recap["checks"]
        );
        v.push(secs);
        a.push(asecs);
        trips.push(per_host);
    }
    let (mv, ma) = (median(&v), median(&a));
    println!(
        "median: verify {mv:.2}s, apply --check {ma:.2}s: verify / apply --check = {:.2}; {:.2} ssh round trips per host (clients 2, the server 1 + marker polls)",
        mv / ma,
        median(&trips)
    );
    drop(procs);
}
