//! The real receiver (server.rs) on loopback: extended netconsole datagrams shaped like a
//! Debian 6.1 kernel's sysrq crash end up in `console/<ip>.log`, a crash record and a `crash`
//! line in events.jsonl — what `provision test-crash` waits for.

use crate::support::receiver_harness;

use std::net::UdpSocket;
use std::time::Duration;

use netdump_receiver::events::EventKind;
use receiver_harness::Harness;

const CRASH: &[&str] = &[
    "6,498,304849686,-;sysrq: Trigger a crash\n",
    "0,499,304850229,-;Kernel panic - not syncing: sysrq triggered crash\n",
    "4,500,304853701,-;CPU: 0 PID: 2538 Comm: sh Kdump: loaded Not tainted 6.1.0-50-amd64 #1  Debian 6.1.176-1\n",
    "4,501,304853934,-;Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014\n",
    "4,502,304854700,-;Call Trace:\n",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_netconsole_crash_reaches_console_log_and_events() {
    let h = Harness::start(|_| {}).await;
    let sender = UdpSocket::bind("127.0.7.9:6665").unwrap();
    sender
        .send_to(
            b"12,497,291445288,-;netdump-lab: netconsole probe\n",
            h.addr,
        )
        .unwrap();
    // Out of order and duplicated, as UDP may deliver them.
    let mut order: Vec<usize> = (0..CRASH.len()).collect();
    order.swap(1, 2);
    order.push(0);
    for i in order {
        sender.send_to(CRASH[i].as_bytes(), h.addr).unwrap();
    }
    // Plain text from another kernel on the same port.
    let plain = UdpSocket::bind("127.0.7.10:0").unwrap();
    plain
        .send_to(b"[   12.0] Oops: 0002 [#1] SMP\n", h.addr)
        .unwrap();

    let e = h.wait_event("127.0.7.9", EventKind::Crash).await;
    assert!(e.dir.contains("127.0.7.9-"), "{e:?}");
    h.wait_event("127.0.7.10", EventKind::Crash).await;

    // The rolling console log has every line once, in kernel order.
    let log_path = h.root().join("console/127.0.7.9.log");
    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("Call Trace:") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every line is there, exactly once (the duplicate of line 0 dropped), and lines 1 and 2,
    // sent swapped, are back in seq order.
    let texts: Vec<&str> = CRASH
        .iter()
        .map(|r| r.split_once(';').unwrap().1.trim_end())
        .collect();
    let mut at = Vec::new();
    for t in &texts {
        assert_eq!(log.matches(t).count(), 1, "{t:?} once:\n{log}");
        at.push(log.find(t).unwrap());
    }
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "lines in kernel (seq) order, not arrival order {at:?}:\n{log}"
    );

    // The crash record holds the lines around the crash.
    let record_path = std::path::Path::new(&e.dir).join("log");
    let mut record = String::new();
    for _ in 0..50 {
        record = std::fs::read_to_string(&record_path).unwrap_or_default();
        if record.contains("Call Trace:") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(record.contains("netconsole probe"), "{record}");
    for t in &texts {
        assert!(record.contains(t), "{t:?} in the crash record:\n{record}");
    }
    h.stop().await;
}
