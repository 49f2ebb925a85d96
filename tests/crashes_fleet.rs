//! `provision crashes` for real: a dump server that is a namespace host (tests/support/nshost.rs,
//! a real sshd), its dump directory holding crash directories and `events.jsonl` as the receiver
//! and kdump leave them; provision reads them over ssh, groups by signature, and gates on them.

use crate::support;

use std::path::Path;
use std::process::Output;

use base64::Engine as _;
use support::nshost::{Fleet, require_root_tools, show};

/// Console text of a crash, written for this test.
fn crash_log(pid: u32, ts: &str) -> String {
    format!(
        "[{ts}] BUG: kernel NULL pointer dereference, address: 0000000000000010\n\
         [{ts}] Oops: 0000 [#1] PREEMPT SMP NOPTI\n\
         [{ts}] CPU: 1 PID: {pid} Comm: widgetd Not tainted 6.1.0-18-amd64 #1\n\
         [{ts}] RIP: 0010:widget_ioctl+0x2a/0x90\n\
         [{ts}] Call Trace:\n\
         [{ts}]  <TASK>\n\
         [{ts}]  widget_dispatch+0x51/0x120\n\
         [{ts}]  __x64_sys_ioctl+0x97/0xd0\n\
         [{ts}]  </TASK>\n\
         [{ts}] Kernel panic - not syncing: Fatal exception\n"
    )
}

const WARN_LOG: &str = "[  9.1][  T77] WARNING: CPU: 0 PID: 77 at drivers/gizmo.c:4 gizmo_reset+0x1/0x2\n\
[  9.1][  T77] CPU: 0 PID: 77 Comm: kworker/0:2 Not tainted 6.6.9 #3\n\
[  9.1][  T77] Call Trace:\n\
[  9.1][  T77]  gizmo_work+0x33/0x60\n\
[  9.1][  T77]  process_one_work+0x171/0x340\n";

fn inventory(fleet: &Fleet, clients: &[(&str, String)]) -> String {
    let mut s = format!(
        "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n  children:\n    netdump_servers:\n      hosts:\n        srv:\n          ansible_host: {}\n    netdump_clients:\n      hosts:\n",
        fleet.client_key_path().display(),
        fleet.host("srv").address
    );
    for (name, addr) in clients {
        s.push_str(&format!(
            "        {name}:\n          ansible_host: {addr}\n"
        ));
    }
    s
}

fn crashes(fleet: &Fleet, inv: &Path, args: &[&str]) -> Output {
    fleet
        .provision(Path::new(env!("CARGO_BIN_EXE_provision")), "crashes", 5)
        .arg("-i")
        .arg(inv)
        .args(args)
        .output()
        .expect("run provision")
}

/// Writes a file inside the server (content travels base64-encoded through the shell).
fn put(fleet: &Fleet, path: &str, content: &str) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(content);
    fleet.host("srv").exec_ok(&format!(
        "mkdir -p \"$(dirname '{path}')\" && echo '{b64}' | base64 -d > '{path}'"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn crashes_grouped_across_hosts_and_gated() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["srv"]);
    let net = fleet.host("srv").address.octets();
    let c1 = format!("{}.{}.{}.61", net[0], net[1], net[2]);
    let c2 = format!("{}.{}.{}.62", net[0], net[1], net[2]);
    let dir = fleet.path().join("inv.yaml");
    std::fs::write(
        &dir,
        inventory(
            &fleet,
            &[
                ("client1", c1.clone()),
                ("client2", c2.clone()),
                ("client3", format!("{}.{}.{}.63", net[0], net[1], net[2])),
            ],
        ),
    )
    .unwrap();
    let junit = fleet.path().join("crashes.xml");

    // Nothing crashed yet: exit 0.
    let o = crashes(&fleet, &dir, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no crash in the last 24h"),
        "{}",
        show(&o)
    );

    // client1 and client2 hit the same NULL dereference (different pids and times: same
    // signature), client2 also warned once; a crash from two weeks ago is outside the window.
    put(
        &fleet,
        &format!("/var/crash/{c1}-2026-12-01-10:00/log"),
        &crash_log(4321, "   72.150000"),
    );
    put(
        &fleet,
        &format!("/var/crash/{c2}-202612011100/dmesg.202612011100"),
        &crash_log(99, " 1200.000001"),
    );
    put(
        &fleet,
        &format!("/var/crash/{c2}-202612011200/vmcore-dmesg.txt"),
        WARN_LOG,
    );
    put(
        &fleet,
        &format!("/var/crash/{c1}-2026-11-10-09:00/log"),
        WARN_LOG,
    );
    fleet.host("srv").exec_ok(&format!(
        "touch -d '14 days ago' /var/crash/{c1}-2026-11-10-09:00"
    ));
    put(
        &fleet,
        "/var/crash/events.jsonl",
        &format!(
            "{{\"event\":\"crash\",\"host\":\"{c1}\",\"dir\":\"/var/crash/{c1}-2026-12-01-10:00\",\"time\":\"{}\"}}\n",
            chrono::Utc::now().to_rfc3339()
        ),
    );

    let o = crashes(
        &fleet,
        &dir,
        &["--output", "json", "--junit", junit.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let groups: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(groups.len(), 2, "{}", show(&o));
    assert_eq!(
        groups[0]["title"],
        "BUG: unable to handle kernel NULL pointer dereference in widget_ioctl"
    );
    assert_eq!(groups[0]["count"], 2);
    assert_eq!(
        groups[0]["hosts"],
        serde_json::json!(["client1", "client2"])
    );
    assert_eq!(groups[0]["kernels"], serde_json::json!(["6.1.0-18-amd64"]));
    assert_eq!(groups[1]["title"], "WARNING in gizmo_reset");
    assert_eq!(
        groups[1]["count"], 1,
        "the old warning is outside the window"
    );
    assert_eq!(
        groups[1]["newest"],
        format!("srv:/var/crash/{c2}-202612011200")
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("client1 crashed 1 time"), "{xml}");
    assert!(xml.contains("client2 crashed 2 times"), "{xml}");
    assert!(xml.contains("name=\"client3\""), "{xml}");

    // The human table, and a window that includes the old crash.
    let o = crashes(&fleet, &dir, &["--since", "30d"]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("client1,client2"), "{out}");
    assert!(
        out.contains("4 crashes in 2 groups in the last 30d"),
        "{out}"
    );

    // A directory name with a space and a glob character is read as it is.
    put(&fleet, "/var/crash/odd *name/log", WARN_LOG);
    let o = crashes(&fleet, &dir, &["--output", "json"]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let warn: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|g| g["title"] == "WARNING in gizmo_reset")
        .unwrap();
    assert_eq!(warn["count"], 2, "{out}");
    assert_eq!(warn["hosts"], serde_json::json!(["client2", "odd *name"]));
    assert_eq!(warn["newest"], "srv:/var/crash/odd *name");

    // An unreachable server: a clear error naming it, exit 4.
    fleet.host("srv").set_link(false);
    let o = crashes(&fleet, &dir, &[]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("error: srv: cannot read its crashes"));
}
