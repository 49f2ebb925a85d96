//! On-demand receiver benchmark: `cargo bench --bench receiver`.
//! Simulated RHEL 4 clients dump synthetic memory to the real receiver (on its own thread and
//! runtime, as in production); prints the memory-phase throughput per client and in aggregate
//! as a ratio to 1 Gbit/s line rate, for 1, 8 and 64 clients at 0%, 1% and 5% loss, and checks
//! that every vmcore is identical to its image (zero pages lost).
//! Table 1: loopback, loss applied by the simulator in both directions.
//! Table 2: a real link: two network namespaces joined by a veth pair shaped by netem
//! (1 Gbit/s, 0.1 ms each way = 0.2 ms RTT, loss each way), receiver in one, clients
//! (198.18.0.10+) in the other. Needs root, iproute2 and sch_netem; otherwise prints SKIP.
//! Env: RECEIVER_BENCH_MB (memory per run, default 128), RECEIVER_BENCH_WINDOW,
//! RECEIVER_BENCH_CLIENTS=1,8,64 (client counts), RECEIVER_BENCH_NETEM=0 to skip table 2, RECEIVER_BENCH_LOOPBACK=0 to skip table 1.

use netdump_test_support::netdump_client;
// Test harnesses shared with tests/main.rs; a bench uses only part of each.
#[allow(dead_code)]
#[path = "../tests/support/receiver_harness.rs"]
mod receiver_harness;

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netdump_client::{Image, Knobs, SimClient};
use netdump_receiver::events::EventKind;
use receiver_harness::{Harness, Opts, assert_core_matches, crash_dir};

const LINE_RATE: f64 = 1e9 / 8.0; // bytes/s

struct Row {
    /// CPU seconds used by the receiver (socket thread + writer threads) for this run.
    receiver_cpu: f64,
    bytes: f64,
    clients: usize,
    loss: f64,
    per_client_mbs: f64,
    aggregate_mbs: f64,
    retransmit_pct: f64,
}

#[derive(Clone)]
enum Link {
    Loopback,
    Netem(Arc<Netns>),
}

fn client_ip(link: &Link, i: usize) -> Ipv4Addr {
    match link {
        Link::Loopback => Ipv4Addr::new(127, 0, 9, 10 + i as u8),
        Link::Netem(_) => Ipv4Addr::new(198, 18, 0, 10 + i as u8),
    }
}

async fn one(
    link: &Link,
    clients: usize,
    loss: f64,
    total_mb: usize,
    window: Option<usize>,
) -> Row {
    let pages = ((total_mb << 20) / 4096 / clients) as u32;
    let images: Vec<Image> = (0..clients)
        .map(|i| Image::new(pages, 4096, vec![(pages / 2, pages / 2 + 16)], i as u64))
        .collect();
    // CPU is sampled after the images exist, so generating them is not charged to anyone.
    let (total0, sim0) = (cpu_secs(|_| true), cpu_secs(|c| c.starts_with("sim")));
    let socket = match link {
        Link::Loopback => None,
        Link::Netem(ns) => {
            ns.set_loss(loss);
            Some(ns.server_socket())
        }
    };
    let h = Harness::start_opts(
        tempfile::tempdir().unwrap(),
        |c| {
            c.concurrent = clients.max(4);
            if let Some(w) = window {
                c.tuning.window = w;
            }
        },
        Opts {
            dedicated: true,
            socket,
        },
    )
    .await;
    let mut tasks = Vec::new();
    for (i, img) in images.iter().cloned().enumerate() {
        let mut s = SimClient::new(client_ip(link, i), h.addr, img);
        s.seed = i as u64 + 1;
        s.deadline = Duration::from_secs(600);
        match link {
            Link::Loopback => {
                s.knobs = Knobs {
                    loss,
                    ..Knobs::default()
                }
            }
            Link::Netem(ns) => {
                s.sockets = Some(ns.client_factory());
                if !ns.netem {
                    s.knobs = Knobs {
                        loss,
                        ..Knobs::default()
                    };
                }
            }
        }
        tasks.push(tokio::spawn(s.run()));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    for i in 0..clients {
        h.wait_event(&client_ip(link, i).to_string(), EventKind::DumpComplete)
            .await;
    }
    let root = h.root().to_path_buf();
    let _keep = h.stop().await;
    let (total1, sim1) = (cpu_secs(|_| true), cpu_secs(|c| c.starts_with("sim")));
    let receiver_cpu = ((total1 - total0) - (sim1 - sim0)).max(1e-3);
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
        let dir = crash_dir(&root, &client_ip(link, i).to_string());
        assert_core_matches(&dir.join("vmcore"), img);
    }
    let agg_secs = (last - first).as_secs_f64().max(1e-6);
    Row {
        receiver_cpu,
        bytes: bytes_total,
        clients,
        loss,
        per_client_mbs: per_client / clients as f64 / 1e6,
        aggregate_mbs: bytes_total / agg_secs / 1e6,
        retransmit_pct: 100.0 * (reqs.saturating_sub(ram)) as f64 / ram as f64,
    }
}

/// CPU seconds (user + system) of this process's live threads whose name passes `filter`;
/// with a filter that accepts everything, the whole process (exited threads included).
fn cpu_secs(filter: impl Fn(&str) -> bool) -> f64 {
    fn parse(stat: &str) -> Option<(String, f64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some((comm, ticks / 100.0))
    }
    if filter("") {
        let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        return parse(&s).map_or(0.0, |x| x.1);
    }
    let mut sum = 0.0;
    for e in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let s = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if let Some((comm, secs)) = parse(&s)
            && filter(&comm)
        {
            sum += secs;
        }
    }
    sum
}

/// Two network namespaces joined by a netem-shaped veth pair.
struct Netns {
    srv: String,
    cli: String,
    srv_if: String,
    cli_if: String,
    /// false: this kernel has no sch_netem; the link is shaped by tbf (1 Gbit/s, no added
    /// delay) and loss comes from the simulator.
    netem: bool,
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `f` on a thread that joined network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .unwrap()
}

impl Netns {
    fn setup(clients: usize) -> Result<Netns, String> {
        let id = std::process::id() % 100000;
        let n = Netns {
            srv: format!("ndb-srv-{id}"),
            cli: format!("ndb-cli-{id}"),
            srv_if: format!("ndbs{id}"),
            cli_if: format!("ndbc{id}"),
            netem: true,
        };
        let mut n = n;
        let _ = sh(&["modprobe", "sch_netem"]);
        sh(&["ip", "netns", "add", &n.srv])?;
        sh(&["ip", "netns", "add", &n.cli])?;
        sh(&[
            "ip", "link", "add", &n.srv_if, "type", "veth", "peer", "name", &n.cli_if,
        ])?;
        sh(&["ip", "link", "set", &n.srv_if, "netns", &n.srv])?;
        sh(&["ip", "link", "set", &n.cli_if, "netns", &n.cli])?;
        sh(&[
            "ip",
            "-n",
            &n.srv,
            "addr",
            "add",
            "198.18.0.1/24",
            "dev",
            &n.srv_if,
        ])?;
        sh(&[
            "ip",
            "-n",
            &n.cli,
            "addr",
            "add",
            "198.18.0.2/24",
            "dev",
            &n.cli_if,
        ])?;
        for i in 0..clients {
            let a = format!("198.18.0.{}/32", 10 + i);
            sh(&["ip", "-n", &n.cli, "addr", "add", &a, "dev", &n.cli_if])?;
        }
        for (ns, dev) in [(&n.srv, &n.srv_if), (&n.cli, &n.cli_if)] {
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        }
        for (ns, dev) in [
            (n.srv.clone(), n.srv_if.clone()),
            (n.cli.clone(), n.cli_if.clone()),
        ] {
            let netem = sh(&[
                "tc", "-n", &ns, "qdisc", "add", "dev", &dev, "root", "netem", "rate", "1gbit",
                "delay", "100us", "limit", "10000",
            ]);
            if let Err(e) = netem {
                println!("note: netem unavailable ({e}); shaping with tbf instead");
                n.netem = false;
                sh(&[
                    "tc", "-n", &ns, "qdisc", "add", "dev", &dev, "root", "tbf", "rate", "1gbit",
                    "burst", "256kb", "latency", "20ms",
                ])?;
            }
        }
        Ok(n)
    }

    fn set_loss(&self, loss: f64) {
        if !self.netem {
            return;
        }
        for (ns, dev) in [(&self.srv, &self.srv_if), (&self.cli, &self.cli_if)] {
            let pct = format!("{}%", loss * 100.0);
            sh(&[
                "tc", "-n", ns, "qdisc", "change", "dev", dev, "root", "netem", "rate", "1gbit",
                "delay", "100us", "limit", "10000", "loss", &pct,
            ])
            .expect("tc qdisc change");
        }
    }

    fn server_socket(&self) -> std::net::UdpSocket {
        in_netns(&self.srv, || {
            std::net::UdpSocket::bind("198.18.0.1:6666").expect("bind")
        })
    }

    fn client_factory(&self) -> netdump_client::SocketFactory {
        let ns = self.cli.clone();
        Arc::new(move |ip: Ipv4Addr| in_netns(&ns, move || std::net::UdpSocket::bind((ip, 0))))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.srv]);
        let _ = sh(&["ip", "netns", "del", &self.cli]);
    }
}

fn print_header() {
    println!(
        "{:>7} {:>5} {:>15} {:>7} {:>14} {:>7} {:>9} {:>17}",
        "clients",
        "loss",
        "per-client MB/s",
        "ratio",
        "aggregate MB/s",
        "ratio",
        "re-req %",
        "receiver MB/cpu-s"
    );
}

fn print_row(r: &Row) {
    let per_cpu = r.bytes / r.receiver_cpu / 1e6;
    println!(
        "{:>7} {:>4.0}% {:>15.1} {:>6.2}x {:>14.1} {:>6.2}x {:>8.1}% {:>9.0} ({:.2}x)",
        r.clients,
        r.loss * 100.0,
        r.per_client_mbs,
        r.per_client_mbs * 1e6 / LINE_RATE,
        r.aggregate_mbs,
        r.aggregate_mbs * 1e6 / LINE_RATE,
        r.retransmit_pct,
        per_cpu,
        per_cpu * 1e6 / LINE_RATE
    );
}

fn env_is(name: &str, v: &str) -> bool {
    std::env::var(name).as_deref() == Ok(v)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it:
    // then only a small smoke run (1 client, loopback, 4 MiB) checks that the bench still works.
    let benching = std::env::args().any(|a| a == "--bench");
    if !benching {
        println!("receiver bench: smoke run (cargo test); `cargo bench --bench receiver` measures");
        // SAFETY: single-threaded here, before any runtime or thread exists.
        unsafe {
            std::env::set_var("RECEIVER_BENCH_CLIENTS", "1");
            std::env::set_var("RECEIVER_BENCH_NETEM", "0");
            if std::env::var_os("RECEIVER_BENCH_MB").is_none() {
                std::env::set_var("RECEIVER_BENCH_MB", "4");
            }
        }
    }
    let total_mb: usize = std::env::var("RECEIVER_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let window: Option<usize> = std::env::var("RECEIVER_BENCH_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sim")
        .enable_all()
        .build()
        .unwrap();
    println!(
        "receiver benchmark: {total_mb} MiB per run, window {}, 4 KiB pages; ratio = MB/s / \
         1 Gbit/s line rate",
        window.map_or("default".to_string(), |w| w.to_string())
    );
    let counts: Vec<usize> = std::env::var("RECEIVER_BENCH_CLIENTS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 64]);
    let t0 = Instant::now();
    if !env_is("RECEIVER_BENCH_LOOPBACK", "0") {
        println!("table 1: loopback (loss applied by the simulator, both directions)");
        print_header();
        for &clients in &counts {
            for loss in [0.0, 0.01, 0.05] {
                print_row(&rt.block_on(one(&Link::Loopback, clients, loss, total_mb, window)));
            }
        }
    }
    if !env_is("RECEIVER_BENCH_NETEM", "0") {
        match Netns::setup(64) {
            Ok(ns) => {
                if ns.netem {
                    println!(
                        "table 2: veth between namespaces, netem 1 Gbit/s, 0.2 ms RTT, loss each way"
                    );
                } else {
                    println!(
                        "table 2: veth between namespaces shaped by tbf to 1 Gbit/s (no netem in \
                         this kernel: no added delay), loss applied by the simulator both ways"
                    );
                }
                print_header();
                let link = Link::Netem(Arc::new(ns));
                for &clients in &counts {
                    for loss in [0.0, 0.01, 0.05] {
                        print_row(&rt.block_on(one(&link, clients, loss, total_mb, window)));
                    }
                }
            }
            Err(e) => println!("SKIP: netem table because the namespace setup failed: {e}"),
        }
    }
    println!(
        "receiver MB/cpu-s = dump bytes per CPU second spent by the receiver's threads (its \
         capacity on one core; the simulated clients share the same 2 CPUs in this run)"
    );
    println!(
        "all vmcores identical to their images; total {:.1?}",
        t0.elapsed()
    );
}
