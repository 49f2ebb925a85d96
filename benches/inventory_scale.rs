//! `provision inventory --list` against `ansible-inventory --list` on generated fleets: wall time
//! and peak memory (max RSS of the process, from wait4), same JSON checked.
//!
//! Fleets: 1 server + N clients in racks of 500, 60 variables per host, all inherited from
//! groups (20 on `all`, 20 on `netdump_clients`, 20 on each rack; strings, lists and mappings).
//! Sizes from `BENCH_INVENTORY_HOSTS` (default `1000,10000`), repetitions from `BENCH_REPS`
//! (default 3, median reported). Then one inventory past the cap (a 200,000-host range under a
//! 5,000-element group variable) shows provision's answer: an error naming file, line and count,
//! with its memory.
//!
//! `cargo bench --bench inventory_scale`. Under `cargo test --all-targets` it only runs a
//! 200-host smoke pass of provision (output checked, nothing timed).

use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROVISION: &str = env!("CARGO_BIN_EXE_provision");

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Writes the fleet's inventory into `dir` and returns its path.
fn write_fleet(dir: &Path, clients: usize) -> PathBuf {
    let mut y = String::from("all:\n  vars:\n");
    for i in 0..20 {
        writeln!(y, "    all_var_{i:02}: value-of-all-{i}").unwrap();
    }
    y += "  children:\n    netdump_servers:\n      hosts:\n        dumpsrv:\n          ansible_host: 10.0.0.1\n";
    y += "    netdump_clients:\n      vars:\n";
    for i in 0..20 {
        writeln!(y, "        client_var_{i:02}: [a, b, {i}]").unwrap();
    }
    y += "      children:\n";
    let racks = clients.div_ceil(500).max(1);
    for r in 0..racks {
        writeln!(y, "        rack{r:02}:\n          vars:").unwrap();
        for i in 0..20 {
            writeln!(
                y,
                "            rack_var_{i:02}: {{rack: {r}, n: {i}, name: rack{r:02}-v{i}}}"
            )
            .unwrap();
        }
        let n = (clients - r * 500).min(500);
        writeln!(
            y,
            "          hosts:\n            r{r:02}-node[000:{:03}]:",
            n - 1
        )
        .unwrap();
    }
    let p = dir.join(format!("fleet-{clients}.yaml"));
    std::fs::write(&p, y).unwrap();
    p
}

/// The inventory past the cap: 200,000 hosts in one range under a 5,000-element variable.
fn write_too_big(dir: &Path) -> PathBuf {
    let mut y = String::from("all:\n  vars:\n    big:\n");
    for i in 0..5000 {
        writeln!(y, "      - element-{i}").unwrap();
    }
    y += "  hosts:\n    node[000000:199999]:\n";
    let p = dir.join("too-big.yaml");
    std::fs::write(&p, y).unwrap();
    p
}

struct Run {
    wall: Duration,
    max_rss_kib: i64,
    status: i32,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `cmd` to completion and measures it through a small intermediary (this bench binary
/// started with `--measure`), which spawns the command and reads its peak memory with wait4.
///
/// Why the intermediary: Linux carries a process's peak RSS across exec from the memory it had
/// before, and std spawns with vfork, so a child of this (large, JSON-parsing) process would
/// report at least this process's size. A grandchild of a small process starts near zero.
fn run(cmd: &mut Command) -> Run {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut wrapped = Command::new(std::env::current_exe().unwrap());
    wrapped
        .arg("--measure")
        .arg(report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap());
    let st = wrapped.status().expect("spawn the measuring intermediary");
    assert!(st.success(), "measuring intermediary failed: {st:?}");
    let fields: Vec<i64> = std::fs::read_to_string(report.path())
        .unwrap()
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Run {
        status: fields[0] as i32,
        wall: Duration::from_micros(fields[1] as u64),
        max_rss_kib: fields[2],
        stdout: read(out),
        stderr: String::from_utf8_lossy(&read(err)).into_owned(),
    }
}

/// The intermediary: `--measure REPORT PROGRAM ARGS...` runs the program with this process's
/// stdio and writes `exit-code wall-microseconds max-rss-KiB` to REPORT.
fn measure(args: &[String]) {
    let (report, program, rest) = (&args[0], &args[1], &args[2..]);
    let start = Instant::now();
    let child = Command::new(program)
        .args(rest)
        .spawn()
        .expect("spawn measured program");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills; pid is our own child, waited exactly once
    // (the Child is forgotten so std never waits on it again).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    std::mem::forget(child);
    assert_eq!(r, pid, "wait4 failed");
    let wall = start.elapsed();
    let code = std::process::ExitStatus::from_raw(status)
        .code()
        .unwrap_or(-1);
    std::fs::write(
        report,
        format!("{code} {} {}\n", wall.as_micros(), ru.ru_maxrss),
    )
    .unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "--measure") {
        measure(&args[2..]);
        return;
    }
    let benching = std::env::args().any(|a| a == "--bench");
    let dir = tempfile::tempdir().unwrap();
    if !benching {
        // Smoke pass under `cargo test --all-targets`: the generator and the parse, nothing timed.
        let inv = write_fleet(dir.path(), 200);
        let r = run(Command::new(PROVISION)
            .args(["inventory", "-i"])
            .arg(&inv)
            .arg("--list"));
        assert_eq!(r.status, 0, "{}", r.stderr);
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(v["_meta"]["hostvars"].as_object().unwrap().len(), 201);
        assert_eq!(
            v["_meta"]["hostvars"]["r00-node000"]
                .as_object()
                .unwrap()
                .len(),
            60
        );
        eprintln!("inventory_scale: smoke pass only; run `cargo bench --bench inventory_scale`");
        return;
    }
    let reps = env_list("BENCH_REPS", "3")
        .first()
        .copied()
        .unwrap_or(3)
        .max(1);
    let ansible = find_on_path("ansible-inventory");
    if ansible.is_none() {
        println!(
            "SKIP: ansible-inventory is not on PATH (pip install ansible-core; .ci/run does): provision only, no ratios"
        );
    }
    println!(
        "{:>7} | {:>16} | {:>16} | {:>10} | {:>10}",
        "hosts", "provision", "ansible-inventory", "time ×", "memory ×"
    );
    for clients in env_list("BENCH_INVENTORY_HOSTS", "1000,10000") {
        let inv = write_fleet(dir.path(), clients);
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut same = true;
        for _ in 0..reps {
            let p = run(Command::new(PROVISION)
                .args(["inventory", "-i"])
                .arg(&inv)
                .arg("--list"));
            assert_eq!(p.status, 0, "provision failed: {}", p.stderr);
            if let Some(a) = &ansible {
                let q = run(Command::new(a).arg("-i").arg(&inv).arg("--list"));
                assert_eq!(q.status, 0, "ansible-inventory failed: {}", q.stderr);
                let pv: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
                let mut qv: serde_json::Value = serde_json::from_slice(&q.stdout).unwrap();
                // ansible-core 2.19 adds `_meta.profile` (its output format's name), which is
                // not inventory data.
                if let Some(meta) = qv["_meta"].as_object_mut() {
                    meta.remove("profile");
                }
                same &= pv == qv;
                theirs.push((q.wall.as_secs_f64(), q.max_rss_kib as f64 / 1024.0));
            }
            ours.push((p.wall.as_secs_f64(), p.max_rss_kib as f64 / 1024.0));
        }
        let (pt, pm) = (
            median(ours.iter().map(|x| x.0).collect()),
            median(ours.iter().map(|x| x.1).collect()),
        );
        if theirs.is_empty() {
            println!(
                "{:>7} | {pt:>7.2} s {pm:>6.0} MB | {:>16} | {:>10} | {:>10}",
                clients + 1,
                "-",
                "-",
                "-"
            );
            continue;
        }
        let (at, am) = (
            median(theirs.iter().map(|x| x.0).collect()),
            median(theirs.iter().map(|x| x.1).collect()),
        );
        println!(
            "{:>7} | {pt:>7.2} s {pm:>6.0} MB | {at:>7.2} s {am:>6.0} MB | {:>9.1}x | {:>9.1}x{}",
            clients + 1,
            at / pt,
            am / pm,
            if same { "" } else { "  JSON DIFFERS" }
        );
        assert!(
            same,
            "provision and ansible-inventory printed different JSON"
        );
    }
    let big = write_too_big(dir.path());
    let r = run(Command::new(PROVISION)
        .args(["inventory", "-i"])
        .arg(&big)
        .arg("--list"));
    println!(
        "200,000-host range under a 5,000-element variable: provision exit {} in {:.2} s, {:.0} MB: {}",
        r.status,
        r.wall.as_secs_f64(),
        r.max_rss_kib as f64 / 1024.0,
        r.stderr.trim()
    );
    assert_eq!(r.status, 1, "expected a clear error: {}", r.stderr);
}
