//! What the apply benchmarks share (benches/apply_vs_ansible.rs, benches/apply_peers.rs): the
//! fleet shape, how provision is run and timed, the peers (ansible-core plain and with Mitogen,
//! pyinfra), the ssh floor, and the state sample every tool's cold run is checked against.
//!
//! The bench's root file declares `mod nshost` (tests/support/nshost.rs) before this module.

#![allow(dead_code)]

pub mod ansible;
pub mod floor;
pub mod provision;
pub mod pyinfra;
pub mod state;

use std::path::{Path, PathBuf};

use netdump_provision::roles::server::MaxStartups;
use netdump_provision::templates::Templates;

/// Seconds the peers may take to set up a connection (ansible's `timeout`, pyinfra's
/// `CONNECT_TIMEOUT`; both default to 10). Hundreds of handshakes at once on a small machine
/// take longer than 10 s, and a peer whose hosts time out measures nothing.
pub const CONNECT_TIMEOUT: u32 = 60;
pub const PASSWORD: &str = "bench horse battery staple";
pub const PROVISION: &str = env!("CARGO_BIN_EXE_provision");
pub const NETDUMP_TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates/netdump.j2");

pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number; unset it or give a count")),
        Err(_) => default,
    }
}

pub fn host_names(count: usize) -> Vec<String> {
    let mut names = vec!["srv".to_string()];
    names.extend((1..count).map(|i| format!("c{i:02}")));
    names
}

pub fn find_on_path(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Path::new(tool).exists().then(|| PathBuf::from(tool));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// A comma-separated list from the environment (`APPLY_BENCH_SIZES=10,50`), or `default`.
pub fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The last `n` lines of a tool's output, for failure messages.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The dump sink command line provision forces for the netdump user (its default limits).
pub const SINK: &str = "/usr/local/sbin/netdump-provision dump-sink --dump-dir /var/crash --min-free 268435456 --keep-dumps 5 --max-total 0";

/// Writes the files a peer copies as they are into `files`: the sshd drop-in and the sysctl.d
/// file, rendered from provision's own templates. The drop-in's `MaxStartups` is computed here the
/// way provision computes it for `clients` clients on a host whose sshd has the stock setting
/// (what the namespace hosts run), so the peers skip reading `sshd -T` that provision does.
pub fn write_static_files(files: &Path, clients: usize) {
    let t = Templates::new(None).expect("embedded templates");
    let max_startups = MaxStartups::for_fleet(clients, None).to_string();
    let sshd = t
        .render(
            "sshd-netdump.conf.j2",
            serde_json::json!({"user": "netdump", "home": "/var/crash", "legacy": true,
                "sink": SINK, "max_startups": max_startups, "clients": clients}),
        )
        .expect("render sshd drop-in");
    std::fs::write(files.join("sshd-netdump.conf"), sshd).unwrap();
    let sysctl = t
        .render("sysctl-netdump.conf.j2", serde_json::json!({"sysrq": 1}))
        .expect("render sysctl file");
    std::fs::write(files.join("sysctl-netdump.conf"), sysctl).unwrap();
}
