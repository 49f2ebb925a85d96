//! The receiver under hostile and broken traffic (issue 11), on loopback with spoofed sources
//! (any 127/8 address works on `lo`): the real `provision receiver` binary, a simulated RHEL 4
//! secure-mode dump, and at the same time tens of thousands of spoofed netlog/netconsole
//! sources, wrong-magic STARTs from the victim's own address, a FIFO and a /dev/zero link planted
//! in the dump dir and an events file that cannot be written. Bounds are on memory and counts,
//! never on time.

use crate::support::receiver_harness;
use crate::support::receiver_process;
use netdump_test_support::netdump_client;

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use netdump_client::{Image, SimClient, frame};
use netdump_proto::wire::code;
use netdump_receiver::events::{EventKind, EventLog};
use netdump_receiver::limits::Caps;
use receiver_harness::assert_core_matches;
use receiver_process::ReceiverProcess;

const MAGIC: u64 = 0x89ab_cdef_0123_4567;

fn write_magic(root: &Path, ip: &str, text: &str) {
    let d = root.join("magic");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(ip), text).unwrap();
}

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

fn start_frame(magic: u64) -> Vec<u8> {
    let text = format!(
        "task_struct:0xffff81003a5c0000 page_offset:0xffff810000000000 netdump_magic:0x{magic:x}\n"
    );
    frame(4, 62, code::START_NETDUMP, 5, text.as_bytes())
}

/// Spoofed source number `i` (never one of the named test hosts 127.0.9.x).
fn spoof_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        20 + (i / 62_500) as u8,
        ((i / 250) % 250) as u8,
        (i % 250 + 1) as u8,
    )
}

/// Dirs per source address under `root` (`<ip>-<time>[.N]`).
fn dirs_per_source(root: &Path) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for e in std::fs::read_dir(root).unwrap().filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().to_string();
        if e.file_type().unwrap().is_dir()
            && let Some((ip, _)) = name.split_once('-')
            && ip.parse::<Ipv4Addr>().is_ok()
        {
            *m.entry(ip.to_string()).or_insert(0) += 1;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_traffic_leaves_a_real_dump_intact_and_the_receiver_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let victim_ip = Ipv4Addr::new(127, 0, 9, 2);
    write_magic(&root, "127.0.9.2", "89abcdef01234567\n");
    // (c) a FIFO at another host's console log, a /dev/zero link at another's magic file.
    let console = root.join("console");
    std::fs::create_dir(&console).unwrap();
    mkfifo(&console.join("127.0.9.3.log"));
    std::os::unix::fs::symlink("/dev/zero", root.join("magic/127.0.9.4")).unwrap();
    // (d) events.jsonl cannot be written: a FIFO nobody reads.
    mkfifo(&root.join("events.jsonl"));

    let rx = ReceiverProcess::start(&root, &["--secure", "--no-space-check"]);
    let server = rx.addr;
    let before = rx.usage();

    let img = Image::new(2048, 4096, vec![(100, 140)], 11);
    let mut victim = SimClient::new(victim_ip, server, img.clone());
    victim.magic = MAGIC;
    victim.deadline = Duration::from_secs(
        std::env::var("HOSTILE_DEADLINE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
    );
    let victim = tokio::spawn(victim.run());

    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    // (a) 20,000 spoofed sources, each one netlog frame and one netconsole line, in rounds
    // until the dump is over; a few "reboot" over and over (offset-0 frames of new lengths)
    // and print crash lines, to reach the directory caps.
    let spoofers = {
        let (done, sent) = (done.clone(), sent.clone());
        std::thread::spawn(move || {
            let mut round = 0u32;
            while !done.load(Ordering::Relaxed) || round == 0 {
                // Paced at one round (20,000 sources, ~41,000 datagrams) per 2 s: a flood the
                // receiver can read; an unpaced one only measures the kernel's socket drops.
                let next = std::time::Instant::now() + Duration::from_secs(2);
                for i in 0..20u32 {
                    let s = UdpSocket::bind((Ipv4Addr::new(127, 30, 0, i as u8 + 1), 0)).unwrap();
                    for k in 0..20usize {
                        let text = "x".repeat(10 + k + round as usize * 20) + "\n";
                        let _ = s.send_to(&frame(4, 0, code::LOG, 0, text.as_bytes()), server);
                        let _ = s.send_to(b"Kernel panic - not syncing: spoofed\n", server);
                        let _ = s.send_to(b"<0>Oops: 0002 [#1] SMP\n", server);
                    }
                }
                for i in 0..20_000u32 {
                    let Ok(s) = UdpSocket::bind((spoof_ip(i), 0)) else {
                        continue;
                    };
                    let text = format!("spoofed netlog {i} round {round}\n");
                    let _ = s.send_to(&frame(4, 0, code::LOG, 0, text.as_bytes()), server);
                    let _ = s.send_to(format!("<6>spoofed console {i}\n").as_bytes(), server);
                    sent.fetch_add(2, Ordering::Relaxed);
                }
                // The FIFO host and the /dev/zero-magic host.
                let f = UdpSocket::bind("127.0.9.3:0").unwrap();
                for k in 0..50 {
                    let _ = f.send_to(format!("fifo host line {k}\n").as_bytes(), server);
                }
                let z = UdpSocket::bind("127.0.9.4:0").unwrap();
                let _ = z.send_to(&start_frame(MAGIC), server);
                round += 1;
                std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
            }
            round
        })
    };
    // (b) wrong-magic STARTs from the victim's own address (another port) every 100 ms.
    let wrong = {
        let done = done.clone();
        tokio::spawn(async move {
            let s = tokio::net::UdpSocket::bind((victim_ip, 0)).await.unwrap();
            let mut n = 0u32;
            while !done.load(Ordering::Relaxed) {
                let _ = s.send_to(&start_frame(0xdead_beef_dead_beef), server).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            n
        })
    };

    let res = victim.await.unwrap();
    done.store(true, Ordering::Relaxed);
    let rounds = tokio::task::spawn_blocking(move || spoofers.join().unwrap())
        .await
        .unwrap();
    let wrong_sent = wrong.await.unwrap();
    let during = rx.usage();
    if !(res.acked && res.rebooted) {
        let out = rx.output();
        let mine: Vec<_> = out
            .iter()
            .filter(|l| l.contains("127.0.9.2") || l.contains("ERROR") || l.contains("caps"))
            .take(200)
            .collect();
        let head: Vec<_> = out.iter().take(40).collect();
        panic!(
            "victim: {res:?}; receiver said ({} lines): {mine:#?}; first lines: {head:#?}; now {:?}",
            out.len(),
            rx.usage()
        );
    }

    let stats_path = root.join("receiver-stats.json");
    let (status, out) = rx.terminate(Duration::from_secs(30));
    assert!(status.success(), "receiver exit {status}");
    eprintln!(
        "spoofed datagrams {} in {rounds} rounds, wrong-magic STARTs {wrong_sent}; receiver \
         before {before:?}, after the attack {during:?}",
        sent.load(Ordering::Relaxed)
    );
    let stats = std::fs::read_to_string(&stats_path).unwrap_or_default();
    eprintln!("stats: {stats}");

    // The real dump: page-for-page identical, in the victim's one directory.
    let per_source = dirs_per_source(&root);
    let vdirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("vmcore").is_file())
        .collect();
    assert_eq!(vdirs.len(), 1, "one complete vmcore: {vdirs:?}");
    assert!(
        vdirs[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("127.0.9.2-")
    );
    assert_core_matches(&vdirs[0].join("vmcore"), &img);

    // Bounded: no source got more directories than the cap, nor all together more than the
    // hourly cap (plus the victim's).
    let caps = Caps::default();
    let worst = per_source.iter().max_by_key(|(_, n)| **n);
    assert!(
        per_source
            .values()
            .all(|&n| n <= caps.dirs_per_source_per_hour as usize),
        "a source got more than {} directories: {worst:?}",
        caps.dirs_per_source_per_hour
    );
    let total: usize = per_source.values().sum();
    assert!(
        total <= caps.dirs_per_hour as usize + 1,
        "{total} directories"
    );
    // Nothing written for the /dev/zero-magic host; the FIFO is still a FIFO.
    assert!(!per_source.contains_key("127.0.9.4"));
    assert!(
        std::fs::symlink_metadata(console.join("127.0.9.3.log"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // Memory and counts while under attack (the binary is a debug build here).
    assert!(during.peak_rss_kib <= 400 * 1024, "peak RSS {during:?}");
    assert!(during.threads <= 100, "threads {during:?}");
    // Open files: the console logs kept open (256) and two per writer (64), plus sockets,
    // pipes and the runtime's own.
    let fd_bound = 256 + 2 * caps.max_writers as u64 + 64;
    assert!(during.fds <= fd_bound, "open fds {during:?} > {fd_bound}");
    // The caps that were reached are said in the log and in the stats file.
    assert!(
        out.iter().any(|l| l.contains("receiver caps/drops")),
        "no cap report in the log"
    );
    let v: serde_json::Value = serde_json::from_str(&stats).expect("stats file");
    assert!(
        v["dirs_source_cap"].as_u64().unwrap() > 0,
        "per-source cap never reached: {v}"
    );
    assert!(v["dirs_total_cap"].as_u64().unwrap() + v["dirs_source_cap"].as_u64().unwrap() > 0);
    assert!(v["invalid_starts"].as_u64().unwrap() > 0);
    assert!(v["events_failed"].as_u64().unwrap() > 0, "{v}");
}

use std::os::unix::fs::FileTypeExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_fails_that_dump_loudly_and_the_receiver_serves_the_next() {
    let mnt = tempfile::tempdir().unwrap();
    if !receiver_harness::mount_tmpfs(mnt.path(), "4m", "disk-full test") {
        return;
    }
    let _unmount = receiver_harness::Unmount(mnt.path().to_path_buf());
    let root = mnt.path().to_path_buf();
    // One byte already holds a tmpfs page: the event lines still fit when the disk is full.
    std::fs::write(root.join("events.jsonl"), "\n").unwrap();
    let rx = ReceiverProcess::start(&root, &["--insecure", "--no-space-check"]);

    // 8 MiB of memory into 4 MiB of disk.
    let big = Image::new(2048, 4096, vec![], 21);
    let mut a = SimClient::new(Ipv4Addr::new(127, 0, 10, 2), rx.addr, big);
    a.oops.clear();
    let ra = a.run().await;
    assert!(ra.acked && ra.rebooted, "{ra:?}");
    let events = EventLog::parse(&std::fs::read_to_string(root.join("events.jsonl")).unwrap());
    let ea: Vec<_> = events.iter().filter(|e| e.host == "127.0.10.2").collect();
    assert!(
        ea.iter().all(|e| e.event != EventKind::DumpComplete),
        "a failed dump reported complete: {ea:?}"
    );
    let failed = ea
        .iter()
        .find(|e| e.event == EventKind::DumpFailed)
        .unwrap_or_else(|| panic!("no dump_failed event: {events:?}"));
    let why = failed.detail.clone().unwrap_or_default();
    assert!(why.contains("No space left"), "reason: {why}");
    let adir = Path::new(&failed.dir);
    assert!(!adir.join("vmcore").exists());
    let partial = adir.join("vmcore-incomplete");
    let len = std::fs::metadata(&partial)
        .expect("vmcore-incomplete kept")
        .len();
    assert!(len > 0);
    assert!(
        rx.output()
            .iter()
            .any(|l| l.contains("127.0.10.2") && l.contains("dump failed")),
        "the log says the dump failed"
    );

    // The operator frees space; the next client dumps completely through the same receiver.
    std::fs::remove_file(&partial).unwrap();
    let small = Image::new(128, 4096, vec![], 22);
    let mut b = SimClient::new(Ipv4Addr::new(127, 0, 10, 3), rx.addr, small.clone());
    b.oops.clear();
    let rb = b.run().await;
    assert!(rb.acked && rb.rebooted, "{rb:?}");
    let events = EventLog::parse(&std::fs::read_to_string(root.join("events.jsonl")).unwrap());
    let done = events
        .iter()
        .find(|e| e.host == "127.0.10.3" && e.event == EventKind::DumpComplete)
        .unwrap_or_else(|| panic!("second client not served: {events:?}"));
    assert_core_matches(&Path::new(&done.dir).join("vmcore"), &small);
    let (status, _) = rx.terminate(Duration::from_secs(30));
    assert!(status.success());
}
