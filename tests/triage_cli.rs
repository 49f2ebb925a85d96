//! `provision triage FILE...` as a pipeline uses it: the JSON line per file (an interface), the
//! readable summary, and an unreadable file among readable ones.

use std::process::Command;

const CRASH: &str = "\
[   12.000001] Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) #1 SMP\r
[   80.100000] sysrq: Trigger a crash\r
[   80.100100] Kernel panic - not syncing: sysrq triggered crash\r
[   80.100200] CPU: 1 PID: 700 Comm: bash Not tainted 6.1.0-18-amd64 #1  Debian 6.1.76-1\r
[   80.100300] Call Trace:\r
[   80.100400]  <TASK>\r
[   80.100500]  dump_stack_lvl+0x44/0x5c\r
[   80.100600]  panic+0x118/0x2ed\r
[   80.100700]  sysrq_handle_crash+0x16/0x20\r
[   80.100800]  __handle_sysrq.cold+0x43/0x11b\r
[   80.100900]  write_sysrq_trigger+0x24/0x40\r
[   80.101000]  </TASK>\r
";

const QUIET: &str = "[    1.0] Linux version 6.1.0 (x@y)\n[    2.0] e1000e: eth0 NIC Link is Up\n";

fn provision() -> Command {
    Command::new(env!("CARGO_BIN_EXE_provision"))
}

#[test]
fn json_line_per_file_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let crash = dir.path().join("console.log");
    let quiet = dir.path().join("dmesg.txt");
    std::fs::write(&crash, CRASH).unwrap();
    std::fs::write(&quiet, QUIET).unwrap();
    let out = provision()
        .arg("triage")
        .arg(&crash)
        .arg(&quiet)
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["file"], crash.to_str().unwrap());
    let c = &lines[0]["crashes"][0];
    let mut keys: Vec<&str> = c.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "corrupted",
            "frames",
            "kernel",
            "kind",
            "line",
            "signature",
            "title"
        ]
    );
    assert_eq!(c["title"], "sysrq: Trigger a crash");
    assert_eq!(c["kind"], "SYSRQ");
    assert_eq!(c["kernel"], "6.1.0-18-amd64");
    assert_eq!(c["line"], 2);
    assert_eq!(c["corrupted"], false);
    assert_eq!(c["frames"][2], "sysrq_handle_crash");
    assert_eq!(lines[1]["file"], quiet.to_str().unwrap());
    assert_eq!(lines[1]["crashes"], serde_json::json!([]));
}

#[test]
fn human_summary_and_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let crash = dir.path().join("console.log");
    std::fs::write(&crash, CRASH).unwrap();
    let missing = dir.path().join("no-such.log");
    let out = provision()
        .arg("triage")
        .arg(&missing)
        .arg(&crash)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(missing.to_str().unwrap()),
        "the error names the file: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 crash"), "{stdout}");
    assert!(
        stdout.contains("line 2: sysrq: Trigger a crash"),
        "{stdout}"
    );
    assert!(stdout.contains("kernel 6.1.0-18-amd64"), "{stdout}");
}
