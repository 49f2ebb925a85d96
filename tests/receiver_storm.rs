//! A rack of RHEL 4 netdump clients crashes at once against the real `provision receiver`
//! binary with its default settings (secure mode, the default `--concurrent`): every client
//! dumps, page for page, none is rebooted without a dump, and the receiver's memory stays under
//! a stated bound. `RECEIVER_STORM_CLIENTS` (default 64) sets the count; the peak memory per
//! session is printed (README: the `netdump_concurrent_dumps` trade-off).

use crate::support::receiver_harness;
use crate::support::receiver_process;
use netdump_test_support::netdump_client;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use netdump_client::{Image, SimClient};
use receiver_harness::{assert_core_matches, crash_dir};
use receiver_process::ReceiverProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rack_of_netdump_clients_crashing_at_once_all_dump_with_the_default_limit() {
    let n: u8 = std::env::var("RECEIVER_STORM_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
        .clamp(1, 200);
    assert!(
        usize::from(n) <= netdump_receiver::config::DEFAULT_CONCURRENT,
        "the default limit must take the whole rack"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    std::fs::create_dir(root.join("magic")).unwrap();
    let ip = |i: u8| Ipv4Addr::new(127, 0, 4, 10 + i);
    let magic = |i: u8| 0x5eed_0000_0000_1000 + u64::from(i);
    for i in 0..n {
        std::fs::write(
            root.join("magic").join(ip(i).to_string()),
            format!("{:016x}\n", magic(i)),
        )
        .unwrap();
    }
    let rx = ReceiverProcess::start(&root, &["--no-space-check"]);
    let idle = rx.usage();

    // 4 MiB of RAM each (1024 pages, a hole of reserved pages), all at once.
    let mut images = Vec::new();
    let mut sims = Vec::new();
    for i in 0..n {
        let img = Image::new(1024, 4096, vec![(20 + u32::from(i) % 7, 40)], u64::from(i));
        images.push(img.clone());
        let mut s = SimClient::new(ip(i), rx.addr, img);
        s.magic = magic(i);
        s.seed = u64::from(i);
        s.deadline = Duration::from_secs(600);
        sims.push(tokio::spawn(s.run()));
    }
    let mut peak = idle;
    for s in sims {
        let r = s.await.unwrap();
        assert!(r.acked && r.rebooted, "{r:?}");
        let u = rx.usage();
        peak.peak_rss_kib = peak.peak_rss_kib.max(u.peak_rss_kib);
        peak.threads = peak.threads.max(u.threads);
    }
    // The vmcores are renamed once their writers flushed: wait for each (bounded).
    let deadline = Instant::now() + Duration::from_secs(300);
    for i in 0..n {
        loop {
            let done = std::fs::read_dir(&root)
                .unwrap()
                .filter_map(Result::ok)
                .any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{}-", ip(i)))
                        && e.path().join("vmcore").exists()
                });
            if done {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never completed: {:?}",
                ip(i),
                rx.output().iter().rev().take(20).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let out = rx.output();
    assert!(
        !out.iter().any(|l| l.contains("Too many concurrent")),
        "a client was refused a dump: {:?}",
        out.iter()
            .filter(|l| l.contains("Too many"))
            .collect::<Vec<_>>()
    );
    let per_session = peak.peak_rss_kib.saturating_sub(idle.rss_kib) / u64::from(n);
    eprintln!(
        "{n} clients at once: receiver RSS idle {} KiB, peak {} KiB ({per_session} KiB per session), {} threads at most",
        idle.rss_kib, peak.peak_rss_kib, peak.threads
    );
    // Bounded: the in-flight page budget is shared, so memory does not grow with the window.
    assert!(peak.peak_rss_kib <= 256 * 1024, "peak RSS {peak:?}");
    let (_status, _) = rx.terminate(Duration::from_secs(10));
    for (i, img) in images.iter().enumerate() {
        let d = crash_dir(&root, &ip(i as u8).to_string());
        assert_core_matches(&d.join("vmcore"), img);
    }
}
