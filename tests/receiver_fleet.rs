//! Many clients at once, loss, and the concurrency limit, over loopback UDP.

use crate::support::receiver_harness;
use netdump_test_support::netdump_client;

use std::net::Ipv4Addr;
use std::time::Duration;

use netdump_client::{Image, Knobs, SimClient, Stall};
use netdump_receiver::events::EventKind;
use receiver_harness::{Harness, assert_core_matches, crash_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_both_ways_gives_identical_vmcore() {
    let h = Harness::start(|_| {}).await;
    let img = Image::new(1500, 4096, vec![(10, 30), (700, 900)], 11);
    let mut sim = SimClient::new(Ipv4Addr::new(127, 0, 1, 2), h.addr, img.clone());
    sim.knobs = Knobs {
        loss: 0.05,
        dup: 0.02,
        reorder: 0.02,
        delay: 0.01,
        delay_by: Duration::from_millis(30),
    };
    sim.seed = 77;
    let r = sim.run().await;
    assert!(r.acked && r.rebooted, "{r:?}");
    let ram = img.ram_pages() as u64;
    assert!(
        r.mem_requests > ram,
        "loss must have forced re-requests ({} for {ram} pages)",
        r.mem_requests
    );
    h.wait_event("127.0.1.2", EventKind::DumpComplete).await;
    let root = h.root().to_path_buf();
    let _keep = h.stop().await;
    assert_core_matches(&crash_dir(&root, "127.0.1.2").join("vmcore"), &img);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_crashing_at_once_all_complete() {
    let h = Harness::start(|c| c.concurrent = 64).await;
    let mut sims = Vec::new();
    let mut images = Vec::new();
    for i in 0..64u8 {
        let img = Image::new(96, 4096, vec![(20 + i as u32 % 7, 30)], i as u64);
        images.push(img.clone());
        let mut s = SimClient::new(Ipv4Addr::new(127, 0, 2, 10 + i), h.addr, img);
        s.magic = 0x1000 + i as u64;
        s.seed = i as u64;
        sims.push(tokio::spawn(s.run()));
    }
    for s in sims {
        let r = s.await.unwrap();
        assert!(r.acked && r.rebooted, "{r:?}");
    }
    for i in 0..64u8 {
        h.wait_event(&format!("127.0.2.{}", 10 + i), EventKind::DumpComplete)
            .await;
    }
    let root = h.root().to_path_buf();
    let _keep = h.stop().await;
    for (i, img) in images.iter().enumerate() {
        let dir = crash_dir(&root, &format!("127.0.2.{}", 10 + i));
        assert_core_matches(&dir.join("vmcore"), img);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_the_concurrency_limit_are_rebooted_without_dump() {
    let h = Harness::start(|c| c.concurrent = 2).await;
    let img = Image::new(200, 4096, vec![], 5);
    // Two clients dump and stall at pfn 100 until released.
    let stall = Stall::at(100);
    let gate = stall.gate.clone();
    let mut first = Vec::new();
    for i in 0..2u8 {
        let mut s = SimClient::new(Ipv4Addr::new(127, 0, 3, 10 + i), h.addr, img.clone());
        s.stall = Some(stall.clone());
        first.push(tokio::spawn(s.run()));
    }
    for i in 0..2u8 {
        h.wait_event(&format!("127.0.3.{}", 10 + i), EventKind::DumpStarted)
            .await;
    }
    // Both slots are taken: two more crashing clients only get show_state + reboot.
    let (a, b) = tokio::join!(
        SimClient::new(Ipv4Addr::new(127, 0, 3, 20), h.addr, img.clone()).run(),
        SimClient::new(Ipv4Addr::new(127, 0, 3, 21), h.addr, img.clone()).run()
    );
    for r in [&a, &b] {
        assert!(r.acked && r.rebooted && r.show_states == 1, "{r:?}");
        assert_eq!(r.mem_requests, 0, "no memory dump over the limit");
    }
    gate.add_permits(2);
    for f in first {
        assert!(f.await.unwrap().rebooted);
    }
    for i in 0..2u8 {
        h.wait_event(&format!("127.0.3.{}", 10 + i), EventKind::DumpComplete)
            .await;
    }
    let root = h.root().to_path_buf();
    let events = h.events();
    let _keep = h.stop().await;
    for ip in ["127.0.3.20", "127.0.3.21"] {
        let ev: Vec<_> = events.iter().filter(|e| e.host == ip).collect();
        assert!(ev.iter().any(|e| e.event == EventKind::DumpFailed
            && e.detail.as_deref().unwrap_or("").contains("concurrent")));
        let dir = crash_dir(&root, ip);
        assert!(!dir.join("vmcore").exists() && !dir.join("vmcore-incomplete").exists());
        assert!(
            std::fs::read_to_string(dir.join("log"))
                .unwrap()
                .contains("Show State")
        );
    }
    for i in 0..2u8 {
        assert_core_matches(
            &crash_dir(&root, &format!("127.0.3.{}", 10 + i)).join("vmcore"),
            &img,
        );
    }
}
