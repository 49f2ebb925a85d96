//! On-demand receiver benchmark: `cargo bench --bench receiver`.
//! Simulated RHEL 4 clients on loopback dump synthetic memory to the real receiver; prints the
//! memory-phase throughput per client and in aggregate as a ratio to 1 Gbit/s line rate, for
//! 1, 8 and 64 clients at 0%, 1% and 5% loss (applied in both directions by the simulator), and
//! checks that every vmcore is identical to its image (zero pages lost).
//! Env: RECEIVER_BENCH_MB (memory per single client, default 128), RECEIVER_BENCH_WINDOW.

#[path = "../tests/support/netdump_client.rs"]
mod netdump_client;
#[path = "../tests/support/receiver_harness.rs"]
mod receiver_harness;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use netdump_client::{Image, Knobs, SimClient};
use netdump_provision::receiver::events::EventKind;
use receiver_harness::{Harness, assert_core_matches, crash_dir};

const LINE_RATE: f64 = 1e9 / 8.0; // bytes/s

struct Row {
    clients: usize,
    loss: f64,
    per_client_mbs: f64,
    aggregate_mbs: f64,
    retransmit_pct: f64,
}

async fn one(clients: usize, loss: f64, total_mb: usize, window: Option<usize>) -> Row {
    let h = Harness::start(|c| {
        c.concurrent = clients.max(4);
        if let Some(w) = window {
            c.tuning.window = w;
        }
    })
    .await;
    let pages = ((total_mb << 20) / 4096 / clients) as u32;
    let mut tasks = Vec::new();
    let mut images = Vec::new();
    for i in 0..clients {
        let img = Image::new(pages, 4096, vec![(pages / 2, pages / 2 + 16)], i as u64);
        images.push(img.clone());
        let mut s = SimClient::new(Ipv4Addr::new(127, 0, 9, 10 + i as u8), h.addr, img);
        s.seed = i as u64 + 1;
        s.knobs = Knobs {
            loss,
            ..Knobs::default()
        };
        s.deadline = Duration::from_secs(600);
        tasks.push(tokio::spawn(s.run()));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    for i in 0..clients {
        h.wait_event(&format!("127.0.9.{}", 10 + i), EventKind::DumpComplete)
            .await;
    }
    let root = h.root().to_path_buf();
    let _keep = h.stop().await;
    let mut per_client = 0.0;
    let mut bytes_total = 0.0;
    let mut reqs = 0u64;
    let mut ram = 0u64;
    let first = results.iter().filter_map(|r| r.mem_first).min().unwrap();
    let last = results.iter().filter_map(|r| r.mem_last).max().unwrap();
    for (r, img) in results.iter().zip(&images) {
        assert!(r.rebooted, "client did not finish: {r:?}");
        let bytes = img.ram_pages() as f64 * 4096.0;
        let secs = (r.mem_last.unwrap() - r.mem_first.unwrap())
            .as_secs_f64()
            .max(1e-6);
        per_client += bytes / secs;
        bytes_total += bytes;
        reqs += r.mem_requests;
        ram += img.ram_pages() as u64;
    }
    for (i, img) in images.iter().enumerate() {
        let dir = crash_dir(&root, &format!("127.0.9.{}", 10 + i));
        assert_core_matches(&dir.join("vmcore"), img);
    }
    let agg_secs = (last - first).as_secs_f64().max(1e-6);
    Row {
        clients,
        loss,
        per_client_mbs: per_client / clients as f64 / 1e6,
        aggregate_mbs: bytes_total / agg_secs / 1e6,
        retransmit_pct: 100.0 * (reqs.saturating_sub(ram)) as f64 / ram as f64,
    }
}

fn main() {
    let total_mb: usize = std::env::var("RECEIVER_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let window: Option<usize> = std::env::var("RECEIVER_BENCH_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "receiver benchmark: {total_mb} MiB per run over loopback, window {}, 4 KiB pages",
        window.map_or("default".to_string(), |w| w.to_string())
    );
    println!(
        "{:>7} {:>5} {:>14} {:>10} {:>14} {:>10} {:>9}",
        "clients", "loss", "per-client MB/s", "ratio", "aggregate MB/s", "ratio", "re-req %"
    );
    let t0 = Instant::now();
    for clients in [1usize, 8, 64] {
        for loss in [0.0, 0.01, 0.05] {
            let r = rt.block_on(one(clients, loss, total_mb, window));
            println!(
                "{:>7} {:>4.0}% {:>14.1} {:>9.2}x {:>14.1} {:>9.2}x {:>8.1}%",
                r.clients,
                r.loss * 100.0,
                r.per_client_mbs,
                r.per_client_mbs * 1e6 / LINE_RATE,
                r.aggregate_mbs,
                r.aggregate_mbs * 1e6 / LINE_RATE,
                r.retransmit_pct
            );
        }
    }
    println!(
        "all vmcores identical to their images; total {:.1?}",
        t0.elapsed()
    );
}
