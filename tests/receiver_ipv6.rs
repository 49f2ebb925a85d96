//! IPv6: the receiver listens dual-stack on `[::]`, names IPv4(-mapped) senders as IPv4, takes
//! netconsole over IPv6, and names IPv6 hosts' files with safe characters only.

use crate::support::receiver_harness;
use crate::support::receiver_process;
use netdump_test_support::netdump_client;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use netdump_client::{Image, SimClient};
use netdump_receiver::events::{EventKind, EventLog};
use receiver_harness::{assert_core_matches, crash_dir};
use receiver_process::ReceiverProcess;

/// Waits (bounded, for correctness, not speed) until `p` holds `needle`.
fn wait_for_text(p: &Path, needle: &str) -> String {
    for _ in 0..300 {
        if let Ok(t) = std::fs::read_to_string(p)
            && t.contains(needle)
        {
            return t;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} never held {needle:?}: {:?}",
        p.display(),
        std::fs::read_to_string(p)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_netconsole_over_ipv6_and_netdump_over_ipv4() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let rx = ReceiverProcess::start_on(&root, "[::]:0", &["--insecure", "--no-space-check"]);
    assert!(rx.addr.is_ipv6(), "listening on {}", rx.addr);
    let port = rx.addr.port();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // netconsole over IPv6 (plain and extended, with a crash line).
    let s6 = UdpSocket::bind("[::1]:0").unwrap();
    s6.send_to(b"hello over ipv6\n", v6).unwrap();
    s6.send_to(b"6,1,100,-;sysrq: Trigger a crash\n", v6)
        .unwrap();
    s6.send_to(
        b"0,2,101,-;Kernel panic - not syncing: sysrq triggered crash\n",
        v6,
    )
    .unwrap();
    let log6 = root.join("console/__1.log");
    let t = wait_for_text(&log6, "Kernel panic");
    assert!(t.contains("hello over ipv6"), "{t}");

    // IPv4 senders on the dual-stack socket are named as IPv4, not ::ffff:….
    let s4 = UdpSocket::bind("127.0.11.5:0").unwrap();
    s4.send_to(b"hello over ipv4\n", v4).unwrap();
    wait_for_text(&root.join("console/127.0.11.5.log"), "hello over ipv4");

    // A netdump client over IPv4 to the same socket.
    let img = Image::new(96, 4096, vec![], 5);
    let c = SimClient::new(Ipv4Addr::new(127, 0, 11, 2), v4, img.clone());
    let r = c.run().await;
    assert!(r.acked && r.rebooted, "{r:?}");

    let events = {
        let mut ev = vec![];
        for _ in 0..300 {
            ev = EventLog::parse(&std::fs::read_to_string(root.join("events.jsonl")).unwrap());
            if ev.iter().any(|e| e.event == EventKind::DumpComplete) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        ev
    };
    let (status, _) = rx.terminate(Duration::from_secs(30));
    assert!(status.success());
    assert_core_matches(&crash_dir(&root, "127.0.11.2").join("vmcore"), &img);
    // The IPv6 crash: event host is the address, the directory name has no ':'.
    let crash6 = events
        .iter()
        .find(|e| e.event == EventKind::Crash && e.host == "::1")
        .unwrap_or_else(|| panic!("no crash event for ::1: {events:?}"));
    let name = Path::new(&crash6.dir)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(name.starts_with("__1-"), "{name}");
    assert!(
        !name.contains(':') || name.matches(':').count() == 2,
        "{name}"
    );
    assert!(Path::new(&crash6.dir).join("log").is_file());
    let names: Vec<String> = std::fs::read_dir(root.join("console"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("ffff")),
        "IPv4-mapped names leaked: {names:?}"
    );
}
