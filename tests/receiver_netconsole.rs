//! End to end over a real UDP socket: kernel-shaped netconsole datagrams → the receiver's own
//! server (netdump_receiver::server, as `provision receiver` runs it) → files under a temporary
//! dump directory.

use std::net::{IpAddr, UdpSocket as StdUdp};
use std::path::Path;
use std::time::Duration;

use netdump_receiver::events::{EventKind, EventLog};

use crate::support::receiver_harness::Harness;

const LAST_LINE: &str = "---[ end Kernel panic - not syncing: sysrq triggered crash ]---";

/// One extended record the way the kernel's netconsole sends it: the /dev/kmsg header
/// `<prefix>,<seq>,<ts_usec>,<flags>;`, the text, `\n`, then sysdata ` key=value\n` lines.
fn ext(seq: u64, ts: u64, level: u8, text: &str, msgid: u32) -> Vec<u8> {
    format!("{level},{seq},{ts},-;{text}\n cpu=0\n taskname=sh\n msgid={msgid}\n").into_bytes()
}

fn crash_block() -> Vec<&'static str> {
    vec![
        "sysrq: Trigger a crash",
        "Kernel panic - not syncing: sysrq triggered crash",
        "CPU: 0 PID: 612 Comm: sh Not tainted 6.1.0-28-amd64 #1  Debian 6.1.119-1",
        "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014",
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x44/0x5c",
        " panic+0x118/0x2ed",
        " sysrq_handle_crash+0x16/0x20",
        " __handle_sysrq.cold+0x43/0x11b",
        " write_sysrq_trigger+0x24/0x40",
        " proc_reg_write+0x56/0xa0",
        " vfs_write+0xc9/0x3f0",
        " ksys_write+0x6b/0xf0",
        " do_syscall_64+0x55/0xb0",
        " entry_SYSCALL_64_after_hwframe+0x6e/0xd8",
        " </TASK>",
        "Kernel Offset: 0x2a00000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)",
        LAST_LINE,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_shaped_datagrams_end_up_in_logs_and_crash_record() {
    let h = Harness::start(|_| {}).await;
    let to = h.addr;

    // Host A (127.0.0.1): extended netconsole with sysdata, a fragmented record sent out of
    // order, a duplicate, a reordered pair, a lost record (msgid gap), then the sysrq crash.
    let a = StdUdp::bind("127.0.0.1:0").unwrap();
    let mut dgrams: Vec<Vec<u8>> = vec![
        b"6.1.0-28-amd64,6,400,90000000,-;netconsole: network logging started\n".to_vec(),
        ext(
            401,
            90_000_100,
            6,
            "e1000: eth0 NIC Link is Up 1000 Mbps Full Duplex",
            1,
        ),
    ];
    // A 2400-byte record split like the kernel does (1000-byte chunks, header repeated).
    let long = format!("{}LONG-END\n cpu=0\n msgid=2\n", "L".repeat(2392));
    let total = long.len();
    let mut frags: Vec<Vec<u8>> = (0..total)
        .step_by(1000)
        .map(|off| {
            let end = (off + 1000).min(total);
            let mut d = format!("4,402,90000200,-,ncfrag={off}/{total};").into_bytes();
            d.extend_from_slice(&long.as_bytes()[off..end]);
            d
        })
        .collect();
    frags.reverse();
    dgrams.extend(frags);
    dgrams.push(ext(404, 90_000_400, 6, "second of a swapped pair", 4));
    dgrams.push(ext(403, 90_000_300, 6, "first of a swapped pair", 3));
    dgrams.push(ext(403, 90_000_300, 6, "first of a swapped pair", 3));
    // msgid 5 and 6 never sent (seq 405, 406): two lost.
    for (i, line) in crash_block().into_iter().enumerate() {
        let level = if i < 2 { 0 } else { 4 };
        let seq = 407 + i as u64;
        let msgid = 7 + i as u32;
        dgrams.push(ext(seq, 95_000_000 + seq, level, line, msgid));
    }
    for d in &dgrams {
        a.send_to(d, to).unwrap();
    }

    // Host B (127.0.0.2): plain netconsole, lines split across datagrams at odd places.
    let b = StdUdp::bind("127.0.0.2:0").unwrap();
    let text: String = crash_block()
        .iter()
        .enumerate()
        .map(|(i, l)| format!("[   61.{i:06}] {l}\n"))
        .collect();
    let text = format!("[   60.000000] systemd[1]: Started getty@tty1.service.\n{text}");
    for chunk in text.as_bytes().chunks(53) {
        b.send_to(chunk, to).unwrap();
    }

    // Wait (bounded) until both hosts' last lines are on disk, then stop the receiver so every
    // file is flushed and closed.
    let root = h.root().to_path_buf();
    let done = |ip: &str| {
        std::fs::read_to_string(root.join(format!("console/{ip}.log")))
            .is_ok_and(|l| l.contains(LAST_LINE))
    };
    for _ in 0..600 {
        if done("127.0.0.1") && done("127.0.0.2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dump = h.stop().await;
    assert!(
        done("127.0.0.1") && done("127.0.0.2"),
        "both hosts' last lines arrived"
    );

    let ip_a: IpAddr = "127.0.0.1".parse().unwrap();
    let ip_b: IpAddr = "127.0.0.2".parse().unwrap();

    // Rolling logs, one per host, named by the socket's source address.
    let log_a = std::fs::read_to_string(dump.path().join("console/127.0.0.1.log")).unwrap();
    let lines_a: Vec<&str> = log_a.lines().collect();
    let texts: Vec<&str> = lines_a
        .iter()
        .map(|l| l.split_once("] ").map(|(_, t)| t).unwrap_or(l))
        .collect();
    assert_eq!(texts[0], "netconsole: network logging started");
    assert!(lines_a[0].contains(" seq=400 lvl=6 [   90.000000] "));
    assert!(texts[1].starts_with("e1000: eth0 NIC Link is Up"));
    assert!(texts[1].ends_with("| cpu=0 taskname=sh msgid=1"));
    assert_eq!(
        texts[2],
        format!("{}LONG-END | cpu=0 msgid=2", "L".repeat(2392))
    );
    assert!(texts[3].starts_with("first of a swapped pair"));
    assert!(texts[4].starts_with("second of a swapped pair"));
    assert!(lines_a[5].ends_with("-- 2 console message(s) lost --"));
    assert!(texts[6].starts_with("sysrq: Trigger a crash"));
    assert!(texts.last().unwrap().starts_with(LAST_LINE));
    assert_eq!(lines_a.len(), 6 + crash_block().len());

    let log_b = std::fs::read_to_string(dump.path().join("console/127.0.0.2.log")).unwrap();
    assert_eq!(log_b.lines().count(), 1 + crash_block().len());
    assert!(log_b.contains("Z [   61.000001] Kernel panic - not syncing: sysrq triggered crash\n"));

    // One crash record and one events.jsonl line per host.
    let events =
        EventLog::parse(&std::fs::read_to_string(dump.path().join("events.jsonl")).unwrap());
    assert_eq!(events.len(), 2, "{events:?}");
    for (ip, before) in [
        (ip_a, "first of a swapped pair"),
        (ip_b, "systemd[1]: Started getty"),
    ] {
        let ev = events.iter().find(|e| e.host == ip.to_string()).unwrap();
        assert_eq!(ev.event, EventKind::Crash);
        let dir = Path::new(&ev.dir);
        assert_eq!(dir.parent(), Some(dump.path()));
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(&format!("{ip}-20")), "{name}");
        let log = std::fs::read_to_string(dir.join("log")).unwrap();
        assert!(log.contains(before), "context before the crash: {log}");
        assert!(log.contains("sysrq: Trigger a crash"));
        assert!(log.contains("Comm: sh"));
        assert!(log.contains(" sysrq_handle_crash+0x16/0x20"));
        assert!(log.contains(LAST_LINE), "lines after the crash: {log}");
    }
    // Nothing else was written in the dump dir.
    let mut names: Vec<String> = std::fs::read_dir(dump.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with("127.0.0."))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["console", "events.jsonl", "receiver-stats.json"],
        "the receiver writes its counters at shutdown"
    );
}
