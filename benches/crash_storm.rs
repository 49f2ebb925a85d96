//! On-demand benchmark: a crash storm of 16, 64 and 128 kdump clients against one server
//! (`sudo cargo bench --bench crash_storm`; sizes from `CRASH_STORM_BENCH_CLIENTS`, e.g.
//! `16,64`). Each size gets a fresh namespace fleet configured by `provision apply`; every
//! client replays kdump-tools' ssh sequence at once through the dump sink (4 MiB dumps;
//! tests/support/storm.rs). Printed per size: wall time of the storm, dumps that arrived whole,
//! the server's CPU-seconds (sshd and the sinks it ran, from the sshd listener's reaped-children
//! times) and its peak memory (sum of RSS of the server's processes, sampled every 50 ms) —
//! once with apply's sshd settings and once with sshd's stock `MaxStartups 10:30:100`, the peer
//! the ratio of arrived dumps is measured against. Under `cargo test --all-targets` it does
//! nothing (a run takes minutes).

// Test harnesses shared with tests/main.rs; a bench uses only part of each.
#[allow(dead_code)]
#[path = "../tests/support/nshost.rs"]
mod nshost;
// Shared with tests/crash_storm.rs, which reads fields this bench does not.
#[allow(dead_code)]
#[path = "../tests/support/storm.rs"]
mod storm;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use nshost::{Fleet, require_root_tools};

const PROVISION: &str = env!("CARGO_BIN_EXE_provision");

/// Clock ticks of the listener's reaped children (cutime + cstime, /proc/PID/stat 16 and 17).
fn children_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0))
        .collect();
    // Fields after the comm: state is index 0, so field N (1-based) is index N - 3.
    f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0)
}

/// Sum of VmRSS (KiB) over the processes in the host's network namespace.
fn netns_rss_kib(netns: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", netns])
        .output();
    let Ok(out) = out else { return 0 };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .sum()
}

struct Measured {
    secs: f64,
    complete: usize,
    failed_attempts: usize,
    cpu_secs: f64,
    peak_mib: f64,
}

fn measure(fleet: &Fleet, stamp: &str, files: &[storm::ClientFiles]) -> Measured {
    let srv = fleet.host("srv");
    // The daemon writes its pid file after it forked: wait for it (bounded).
    let mut pid = None;
    for _ in 0..100 {
        pid = std::fs::read_to_string(srv.dir.join("sshd.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok());
        if pid.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = pid.expect("sshd wrote no pid file");
    let tick = 100.0; // USER_HZ on Linux
    let before = children_ticks(pid);
    let done = AtomicBool::new(false);
    let peak = AtomicU64::new(0);
    let start = Instant::now();
    let replays = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(netns_rss_kib(&srv.netns), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        let r = storm::storm(fleet, stamp, files);
        done.store(true, Ordering::Relaxed);
        r
    });
    let secs = start.elapsed().as_secs_f64();
    Measured {
        secs,
        complete: storm::complete(fleet, stamp, files).len(),
        failed_attempts: replays.iter().map(|(_, r)| r.failed_attempts).sum(),
        cpu_secs: (children_ticks(pid).saturating_sub(before)) as f64 / tick,
        peak_mib: peak.load(Ordering::Relaxed) as f64 / 1024.0,
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "crash_storm: not run under cargo test (it takes minutes); run `sudo cargo bench --bench crash_storm`"
        );
        return;
    }
    if !require_root_tools() {
        return;
    }
    let sizes: Vec<usize> = std::env::var("CRASH_STORM_BENCH_CLIENTS")
        .unwrap_or_else(|_| "16,64,128".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "{:>7} | {:>28} | {:>28} | {:>8}",
        "clients", "apply's sshd settings", "stock MaxStartups 10:30:100", "arrived"
    );
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let fleet = storm::applied_fleet(n, std::path::Path::new(PROVISION), dir.path());
        let files = storm::client_files(&fleet, dir.path());
        let srv = fleet.host("srv");
        storm::restart_server_sshd(srv, false);
        let ours = measure(&fleet, "202612020800", &files);
        storm::restart_server_sshd(srv, true);
        let stock = measure(&fleet, "202612020801", &files);
        storm::cleanup(&files);
        let cell = |m: &Measured| {
            format!(
                "{}/{n} in {:.1} s, {:.1} CPU-s, {:.0} MiB",
                m.complete, m.secs, m.cpu_secs, m.peak_mib
            )
        };
        println!(
            "{n:>7} | {:>28} | {:>28} | {:>7.1}x",
            cell(&ours),
            cell(&stock),
            ours.complete as f64 / stock.complete.max(1) as f64
        );
        println!(
            "        failed ssh attempts: {} with apply's settings, {} with stock",
            ours.failed_attempts, stock.failed_attempts
        );
    }
}
