//! netconsole side by side with Meta's netconsd (issue 11): the same `netconsblaster` load
//! (extended netconsole messages from a raw IPv6 socket, 2^N spoofed sources on loopback) against
//! `netconsd` with its `logger-simple` module (one file per host) and against
//! `provision receiver` (console logs), for 2 (netconsblaster's minimum), 256 and 65,536 sources.
//! Prints messages written per wall second and per CPU-second, CPU-seconds, lost, and ratios.
//!
//! `NETCONSD_DIR=/tmp/netconsd-build cargo bench --bench netconsole_vs_netconsd` (root: the
//! blaster uses a raw socket). NETCONSD_DIR is a netconsd checkout built with `make` and
//! `make -C util` outside this repository; without it the bench prints a loud SKIP.
//! `NETCONSD_BENCH_MESSAGES` (default 100000) messages per run, `NETCONSD_BENCH_BITS`
//! (default 1,8,16) source orders.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// utime + stime of `pid` in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of comm: state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / clk_tck()
}

/// Messages in the peer's output files (lines matching `is_msg`), over every file below `dir`.
fn count_lines(dir: &Path, is_msg: &dyn Fn(&[u8]) -> bool) -> u64 {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file()
                && let Ok(b) = std::fs::read(&p)
            {
                n += b.split(|&c| c == b'\n').filter(|l| is_msg(l)).count() as u64;
            }
        }
    }
    n
}

struct Run {
    sent: u64,
    written: u64,
    wall: f64,
    cpu: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.written as f64 / self.wall.max(1e-9)
    }
    fn per_cpu(&self) -> f64 {
        self.written as f64 / self.cpu.max(1e-9)
    }
}

fn blast(dir: &Path, bits: u32, n: u64, port: u16) -> u64 {
    let out = Command::new(dir.join("util/netconsblaster"))
        .args(["-o", &bits.to_string(), "-t", "0", "-n", &n.to_string()])
        .args(["-p", &port.to_string(), "-d", "::1", "-s", "fd00::"])
        .output()
        .expect("run netconsblaster");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("netconsblaster said {text:?} {:?}", out.stderr))
}

/// Runs one load against the child `peer` writing under `out`; waits until the output stops
/// growing for 1.5 s (the receiver flushes its buffers every 0.5 s).
fn measure(
    mut peer: Child,
    out: &Path,
    is_msg: &dyn Fn(&[u8]) -> bool,
    netconsd: &Path,
    bits: u32,
    n: u64,
    port: u16,
) -> Run {
    std::thread::sleep(Duration::from_millis(300));
    let pid = peer.id();
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let sent = blast(netconsd, bits, n, port);
    let mut last = count_lines(out, is_msg);
    let mut last_change = Instant::now();
    // Give up waiting 120 s after the load ended (then the rest counts as lost).
    let give_up = Instant::now() + Duration::from_secs(120);
    while last_change.elapsed() < Duration::from_millis(1500)
        && last < sent
        && Instant::now() < give_up
    {
        std::thread::sleep(Duration::from_millis(100));
        let c = count_lines(out, is_msg);
        if c != last {
            last = c;
            last_change = Instant::now();
        }
    }
    let wall = last_change.duration_since(t0).as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    // netconsd may not stop on SIGTERM while tearing down many hosts: SIGKILL after 10 s.
    let until = Instant::now() + Duration::from_secs(10);
    while peer.try_wait().ok().flatten().is_none() {
        if Instant::now() >= until {
            let _ = peer.kill();
            let _ = peer.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let written = count_lines(out, is_msg);
    Run {
        sent,
        written,
        wall,
        cpu,
    }
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_netconsd(dir: &Path, bits: u32, n: u64) -> Run {
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = Command::new(dir.join("netconsd"))
        .args(["-u", &port.to_string(), "-w", "2", "-l", "1"])
        .arg(dir.join("modules/logger-simple.so"))
        .current_dir(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start netconsd");
    // logger-simple writes the message text, one line per message.
    measure(peer, out.path(), &|l| !l.is_empty(), dir, bits, n, port)
}

fn run_receiver(dir: &Path, bits: u32, n: u64) -> Run {
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut peer = Command::new(env!("CARGO_BIN_EXE_provision"))
        .args([
            "receiver",
            "--insecure",
            "--listen",
            &format!("[::]:{port}"),
        ])
        .arg("--dump-dir")
        .arg(out.path())
        .env("RUST_LOG", "warn,netdump_receiver::server=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start provision receiver");
    // The program logs to stderr.
    let stdout = peer.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if l.contains("receiver listening") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = peer.kill();
        let _ = peer.wait();
        panic!("provision receiver did not start listening");
    }
    // Console log lines of extended messages carry `seq=`.
    let is_msg = |l: &[u8]| l.windows(5).any(|w| w == b" seq=");
    measure(peer, out.path(), &is_msg, dir, bits, n, port)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "netconsole_vs_netconsd: not run under cargo test; run `NETCONSD_DIR=... cargo bench \
             --bench netconsole_vs_netconsd` as root"
        );
        return;
    }
    let Some(dir) = std::env::var_os("NETCONSD_DIR").map(PathBuf::from) else {
        println!(
            "SKIP: netconsole_vs_netconsd: NETCONSD_DIR is not set (build netconsd outside the \
             repository: cp -r netconsd /tmp/netconsd-build && make -C /tmp/netconsd-build && make \
             -C /tmp/netconsd-build/util; then NETCONSD_DIR=/tmp/netconsd-build)"
        );
        return;
    };
    for f in [
        "netconsd",
        "modules/logger-simple.so",
        "util/netconsblaster",
    ] {
        if !dir.join(f).is_file() {
            println!(
                "SKIP: netconsole_vs_netconsd: {} missing (run make)",
                dir.join(f).display()
            );
            return;
        }
    }
    // 65,536 sources: netconsd keeps one open file per host.
    let _ = nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        200_000,
        200_000,
    );
    let n: u64 = std::env::var("NETCONSD_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let bits: Vec<u32> = std::env::var("NETCONSD_BENCH_BITS")
        .unwrap_or_else(|_| "1,8,16".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    println!(
        "| sources | peer | sent | written | lost | msgs/s | CPU-s | msgs/CPU-s | ratio msgs/s | ratio msgs/CPU-s |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for b in bits {
        let nc = run_netconsd(&dir, b, n);
        let rx = run_receiver(&dir, b, n);
        for (name, r) in [("netconsd logger-simple", &nc), ("provision receiver", &rx)] {
            println!(
                "| {} | {name} | {} | {} | {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2} |",
                1u64 << b,
                r.sent,
                r.written,
                r.sent.saturating_sub(r.written),
                r.rate(),
                r.cpu,
                r.per_cpu(),
                r.rate() / nc.rate().max(1e-9),
                r.per_cpu() / nc.per_cpu().max(1e-9),
            );
        }
    }
}
