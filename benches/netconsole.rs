//! On-demand benchmark of the netconsole receive path (`cargo bench --bench netconsole`).
//!
//! Three runs, same message shape (extended netconsole with sysdata `cpu=`, `taskname=`,
//! `msgid=`, ~130 bytes on the wire):
//!
//! 1. **core**: `Collector::ingest_into` + `ConsoleStore::handle` on datagrams already in memory
//!    (no sockets): the capacity of our code alone.
//! 2. **raw**: a loopback UDP sender blasting with `sendmmsg` to a receiver that only counts
//!    datagrams (`recvmmsg`, batch 512): the peer we compare against, i.e. what this machine's
//!    loopback can deliver to one receiving thread with this sender.
//! 3. **pipeline**: the same blast to a receiver that feeds every datagram through
//!    `Collector` + `ConsoleStore` (real files in a temporary dump dir).
//!
//! Printed: messages/s of each run, pipeline/raw ratio, and for the pipeline the datagrams the
//! socket accepted versus the lines written (accepted-message loss, which must be 0) and the
//! loss the collector counted from `msgid` gaps (datagrams the kernel dropped before we read
//! them). `NETCONSOLE_BENCH_MESSAGES` sets the messages per run (default 2,000,000 under
//! `cargo bench`, 20,000 as a smoke run under `cargo test --all-targets`),
//! `NETCONSOLE_BENCH_SENDERS` the sender threads (default 2).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netdump_proto::netconsole::{Collector, ConsoleEvent};
use netdump_receiver::console::{ConsoleConfig, ConsoleStore};

const BATCH: usize = 512;
const SEND_BATCH: usize = 64;
const BUF: usize = 2048;

fn message(seq: u64, out: &mut String) {
    out.clear();
    let _ = write!(
        out,
        "6,{seq},{},-;e1000e 0000:00:19.0 eth0: bench message number {seq} from the kernel\n cpu=1\n taskname=kworker/1:2\n msgid={}\n",
        1_000_000 + seq * 10,
        seq as u32
    );
}

fn setsockopt_int(fd: i32, opt: i32, val: i32) {
    // SAFETY: plain setsockopt with a valid fd and an int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&val as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r != 0 {
        eprintln!(
            "note: setsockopt({opt}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn receiver_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    // As root SO_RCVBUFFORCE goes past rmem_max; otherwise SO_RCVBUF gives what it can.
    setsockopt_int(s.as_raw_fd(), libc::SO_RCVBUFFORCE, 64 << 20);
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

/// Blasts `n` messages to `to` with sendmmsg; returns the time it took.
fn blast_one(to: SocketAddr, n: u64, from: u8) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let s = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, from), 0)).unwrap();
        s.connect(to).unwrap();
        let fd = s.as_raw_fd();
        let mut bufs: Vec<String> = (0..SEND_BATCH)
            .map(|_| String::with_capacity(256))
            .collect();
        let start = Instant::now();
        let mut seq = 0u64;
        while seq < n {
            let k = ((n - seq) as usize).min(SEND_BATCH);
            for (i, b) in bufs.iter_mut().take(k).enumerate() {
                message(seq + i as u64, b);
            }
            let mut iov: Vec<libc::iovec> = bufs[..k]
                .iter()
                .map(|b| libc::iovec {
                    iov_base: b.as_ptr() as *mut _,
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: zeroed mmsghdr is a valid "no name, no control" header.
            let mut hdrs: Vec<libc::mmsghdr> =
                (0..k).map(|_| unsafe { std::mem::zeroed() }).collect();
            for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
            }
            let mut sent = 0;
            while sent < k {
                // SAFETY: hdrs[sent..k] point at live iovecs over live buffers.
                let r =
                    unsafe { libc::sendmmsg(fd, hdrs[sent..].as_mut_ptr(), (k - sent) as u32, 0) };
                if r < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::ENOBUFS)
                        || e.raw_os_error() == Some(libc::EAGAIN)
                    {
                        std::thread::yield_now();
                        continue;
                    }
                    panic!("sendmmsg: {e}");
                }
                sent += r as usize;
            }
            seq += k as u64;
        }
        start.elapsed()
    })
}

/// `senders` threads, each its own source address 127.0.0.<i+1> (so each is one netconsole
/// host with its own sequence), together sending `n` messages; sets `done` when all finished.
fn blast(
    to: SocketAddr,
    n: u64,
    senders: u8,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let per = n / u64::from(senders);
        let hs: Vec<_> = (0..senders)
            .map(|i| {
                let extra = if i == 0 { n % u64::from(senders) } else { 0 };
                blast_one(to, per + extra, i + 1)
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        start.elapsed()
    })
}

struct Rx {
    accepted: u64,
    busy: Duration,
}

/// Receives with recvmmsg until the sender is done and the socket stays empty; `each` gets
/// every datagram with its source address and the batch's receive instant.
fn receive(
    sock: &UdpSocket,
    done: &AtomicBool,
    mut each: impl FnMut(IpAddr, &[u8], Instant),
) -> Rx {
    let fd = sock.as_raw_fd();
    let mut bufs = vec![0u8; BATCH * BUF];
    // SAFETY: zeroed sockaddr_in / mmsghdr are valid initial values.
    let mut addrs: Vec<libc::sockaddr_in> =
        (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|i| libc::iovec {
            iov_base: bufs[i * BUF..].as_mut_ptr().cast(),
            iov_len: BUF,
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    let mut accepted = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    loop {
        for i in 0..BATCH {
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: every header points at its own live address slot and buffer.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                continue;
            }
            panic!("recvmmsg: {e}");
        }
        let now = Instant::now();
        first.get_or_insert(now);
        for i in 0..r as usize {
            let len = hdrs[i].msg_len as usize;
            let ip = IpAddr::V4(Ipv4Addr::from(u32::from_be(addrs[i].sin_addr.s_addr)));
            each(ip, &bufs[i * BUF..i * BUF + len], now);
        }
        accepted += r as u64;
        last = Instant::now();
    }
    Rx {
        accepted,
        busy: first.map(|f| last - f).unwrap_or_default(),
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not: then run a short
    // smoke pass (same checks, small count) so test runs stay quick.
    let benching = std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::var("NETCONSOLE_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 2_000_000 } else { 20_000 });
    let senders: u8 = std::env::var("NETCONSOLE_BENCH_SENDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(2);
    println!(
        "netconsole receive benchmark: {n} extended messages per run from {senders} sender thread(s) \
         (one source address each), recvmmsg batch {BATCH}, {} CPUs",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    // 1. core only
    let dir = tempfile::tempdir().unwrap();
    let core_n = n.min(1_000_000);
    let mut datagrams = Vec::with_capacity(core_n as usize);
    let mut s = String::new();
    for seq in 0..core_n {
        message(seq, &mut s);
        datagrams.push(s.clone().into_bytes());
    }
    let mut collector = Collector::default();
    let mut store = ConsoleStore::new(dir.path(), ConsoleConfig::default());
    let mut out = Vec::with_capacity(1024);
    let src = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let start = Instant::now();
    for (i, d) in datagrams.iter().enumerate() {
        let now = Instant::now();
        collector.ingest_into(src, d, now, &mut out);
        if i % BATCH == 0 {
            let utc = chrono::Utc::now();
            for (ip, ev) in out.drain(..) {
                store.handle(ip, ev, utc).unwrap();
            }
        }
    }
    let utc = chrono::Utc::now();
    for (ip, ev) in out.drain(..) {
        store.handle(ip, ev, utc).unwrap();
    }
    store.flush().unwrap();
    let core_t = start.elapsed();
    assert_eq!(store.stats.lines, core_n, "core run wrote every line");
    let core_rate = rate(core_n, core_t);
    println!(
        "core      : {core_n} msgs in {:.3} s = {:>10.0} msgs/s (parse+order+format+write, no socket)",
        core_t.as_secs_f64(),
        core_rate
    );
    drop(datagrams);
    drop(store);
    drop(dir);

    // 2. raw loopback receive rate
    let sock = receiver_socket();
    let done = Arc::new(AtomicBool::new(false));
    let sender = blast(sock.local_addr().unwrap(), n, senders, done.clone());
    let raw = receive(&sock, &done, |_, _, _| {});
    let raw_send = sender.join().unwrap();
    let raw_rate = rate(raw.accepted, raw.busy);
    println!(
        "raw       : accepted {}/{} ({:.2} % dropped by the kernel), {:>10.0} msgs/s received; sender {:>10.0} msgs/s",
        raw.accepted,
        n,
        100.0 * (n - raw.accepted) as f64 / n as f64,
        raw_rate,
        rate(n, raw_send)
    );
    drop(sock);

    // 3. full pipeline
    let dir = tempfile::tempdir().unwrap();
    let sock = receiver_socket();
    let done = Arc::new(AtomicBool::new(false));
    let mut collector = Collector::default();
    let mut store = ConsoleStore::new(dir.path(), ConsoleConfig::default());
    let mut out: Vec<(IpAddr, ConsoleEvent)> = Vec::with_capacity(2 * BATCH);
    let mut lost_events = 0u64;
    let mut last_batch: Option<Instant> = None;
    let mut utc = chrono::Utc::now();
    let sender = blast(sock.local_addr().unwrap(), n, senders, done.clone());
    let rx = receive(&sock, &done, |ip, d, now| {
        if last_batch != Some(now) {
            // once per recvmmsg batch: wall clock for the log prefix, and the timers
            last_batch = Some(now);
            utc = chrono::Utc::now();
            out.extend(collector.tick(now));
            let _ = store.tick(utc);
        }
        collector.ingest_into(ip, d, now, &mut out);
        for (ip, ev) in out.drain(..) {
            if let ConsoleEvent::Lost { count } = ev {
                lost_events += count;
            }
            store.handle(ip, ev, utc).unwrap();
        }
    });
    let send_t = sender.join().unwrap();
    let later = Instant::now() + Duration::from_secs(5);
    for (ip, ev) in collector.tick(later) {
        if let ConsoleEvent::Lost { count } = ev {
            lost_events += count;
        }
        store.handle(ip, ev, chrono::Utc::now()).unwrap();
    }
    store.flush().unwrap();
    let written = store.stats.lines;
    let pipe_rate = rate(rx.accepted, rx.busy);
    println!(
        "pipeline  : accepted {}/{} ({:.2} % dropped by the kernel), {:>10.0} msgs/s processed; sender {:>10.0} msgs/s",
        rx.accepted,
        n,
        100.0 * (n - rx.accepted) as f64 / n as f64,
        pipe_rate,
        rate(n, send_t)
    );
    println!(
        "pipeline  : lines written {written}, accepted-message loss {} ({}), loss counted from msgid gaps {lost_events} (kernel drops {})",
        rx.accepted as i64 - written as i64,
        if rx.accepted == written {
            "none"
        } else {
            "LOSS"
        },
        n - rx.accepted
    );
    println!(
        "ratio     : pipeline/raw = {:.2}, core/raw = {:.2}; goal 500000 msgs/s: pipeline {}",
        pipe_rate / raw_rate,
        core_rate / raw_rate,
        if !benching {
            "not judged (smoke run under cargo test; rates mean nothing here)"
        } else if pipe_rate >= 500_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    assert_eq!(
        rx.accepted, written,
        "every datagram the socket accepted must reach the console log"
    );
    let on_disk: u64 = std::fs::read_dir(dir.path().join("console"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "pipeline  : {:.1} MiB of console log kept after rotation, {} rotations, {} store errors",
        on_disk as f64 / 1048576.0,
        store.stats.rotations,
        store.stats.errors
    );
}
