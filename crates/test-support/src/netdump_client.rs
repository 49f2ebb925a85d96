//! A netdump client simulator that behaves like the RHEL 4 kernel (docs/netdump-wire.md, "A dump, step by step"): it sends the
//! oops text as netlog `REPLY_LOG` frames from a second socket, then `REPLY_START_NETDUMP`
//! about once a second until the first queued request is `COMM_START_NETDUMP_ACK`; afterwards
//! it answers every request exactly once and never retransmits: `REPLY_MEM` chunks for RAM,
//! `REPLY_RESERVED` with the next RAM pfn for holes, `REPLY_ERROR` beyond max pfn, the REGS
//! block, SHOW_STATE followed by LOG frames, and silence (it "reboots") on `COMM_REBOOT`.
//! Loss, duplication, reordering and delay are applied on both its send and receive paths.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netdump_proto::wire::{Reply, Request, cmd, code, machine};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::net::UdpSocket;

/// A synthetic physical memory: holes (not RAM), zero pages and random pages.
#[derive(Debug, Clone)]
pub struct Image {
    pub page_size: u32,
    pub nr_pages: u32,
    /// `[start, end)` pfn ranges that are not RAM.
    pub holes: Vec<(u32, u32)>,
    /// Contents, `nr_pages * page_size` bytes (holes are zero here and never served).
    pub bytes: Arc<Vec<u8>>,
}

impl Image {
    /// Every 4th RAM page is zero, the rest random (seeded).
    pub fn new(nr_pages: u32, page_size: u32, holes: Vec<(u32, u32)>, seed: u64) -> Image {
        let mut rng = SmallRng::seed_from_u64(seed);
        let ps = page_size as usize;
        let mut bytes = vec![0u8; nr_pages as usize * ps];
        for pfn in 0..nr_pages {
            let ram = !holes.iter().any(|&(a, b)| pfn >= a && pfn < b);
            if ram && pfn % 4 != 1 {
                let page = &mut bytes[pfn as usize * ps..(pfn as usize + 1) * ps];
                for w in page.chunks_mut(8) {
                    let v: u64 = rng.random();
                    w.copy_from_slice(&v.to_le_bytes()[..w.len()]);
                }
            }
        }
        Image {
            page_size,
            nr_pages,
            holes,
            bytes: Arc::new(bytes),
        }
    }

    pub fn is_ram(&self, pfn: u32) -> bool {
        pfn < self.nr_pages && !self.holes.iter().any(|&(a, b)| pfn >= a && pfn < b)
    }

    pub fn next_ram(&self, pfn: u32) -> u32 {
        (pfn + 1..self.nr_pages)
            .find(|&p| self.is_ram(p))
            .unwrap_or(0)
    }

    pub fn page(&self, pfn: u32) -> &[u8] {
        let ps = self.page_size as usize;
        &self.bytes[pfn as usize * ps..(pfn as usize + 1) * ps]
    }

    pub fn ram_pages(&self) -> u32 {
        (0..self.nr_pages).filter(|&p| self.is_ram(p)).count() as u32
    }
}

/// Network impairments, each a probability per packet, applied in both directions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Knobs {
    pub loss: f64,
    pub dup: f64,
    pub reorder: f64,
    pub delay: f64,
    pub delay_by: Duration,
}

/// Makes a bound UDP socket for an address (e.g. inside another network namespace).
pub type SocketFactory =
    Arc<dyn Fn(Ipv4Addr) -> std::io::Result<std::net::UdpSocket> + Send + Sync>;

#[derive(Clone)]
pub struct SimClient {
    pub ip: Ipv4Addr,
    pub server: SocketAddr,
    pub image: Image,
    pub knobs: Knobs,
    pub magic: u64,
    pub machine: u16,
    pub task_struct: u64,
    pub page_offset: u64,
    /// Console text sent as netlog before the crash (the oops).
    pub oops: Vec<u8>,
    pub seed: u64,
    /// Give up after this long (a real client would spin forever).
    pub deadline: Duration,
    /// Stall (like a busy CPU) when first asked for this pfn, until `gate` gives a permit.
    pub stall: Option<Stall>,
    /// Where the client's sockets come from (default: bind `ip:0` here).
    pub sockets: Option<SocketFactory>,
}

#[derive(Debug, Clone, Default)]
pub struct SimResult {
    pub acked: bool,
    pub rebooted: bool,
    pub starts_sent: u32,
    pub requests: u64,
    pub mem_requests: u64,
    pub show_states: u32,
    pub elapsed: Duration,
    /// When the first and the last `SEND_MEM` were answered (memory-phase throughput).
    pub mem_first: Option<Instant>,
    pub mem_last: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Stall {
    pub at: u32,
    pub gate: Arc<tokio::sync::Semaphore>,
    /// Gets a permit when the client reaches the stall point.
    pub reached: Arc<tokio::sync::Semaphore>,
}

impl Stall {
    pub fn at(at: u32) -> Stall {
        Stall {
            at,
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            reached: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
}

pub const SHOW_STATE_TEXT: &str = "SysRq : Show State\n  task PC pid father\ninit S 1 0\n";

impl SimClient {
    pub fn new(ip: Ipv4Addr, server: SocketAddr, image: Image) -> SimClient {
        SimClient {
            ip,
            server,
            image,
            knobs: Knobs::default(),
            magic: 0x1111_1111_1111_1111,
            machine: machine::X86_64,
            task_struct: 0xffff_8100_3a5c_0000,
            page_offset: 0xffff_8100_0000_0000,
            oops: b"Unable to handle kernel NULL pointer dereference at 0000000000000000\n\
                    RIP: sysrq_handle_crash+0x0/0x10\nKernel panic - not syncing: Oops\n"
                .to_vec(),
            seed: 1,
            deadline: Duration::from_secs(120),
            stall: None,
            sockets: None,
        }
    }

    /// The register block of this client's arch (a recognisable pattern).
    pub fn regs(&self) -> Vec<u8> {
        let n = match self.machine {
            machine::I386 => 68,
            machine::PPC64 => 384,
            _ => 216,
        };
        (0..n)
            .map(|i| (i as u8).wrapping_mul(3).wrapping_add(1))
            .collect()
    }

    pub async fn run(self) -> SimResult {
        let t0 = Instant::now();
        let bind = |ip: Ipv4Addr| -> UdpSocket {
            let s = match &self.sockets {
                Some(f) => f(ip),
                None => std::net::UdpSocket::bind((ip, 0)),
            }
            .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
            s.set_nonblocking(true).unwrap();
            UdpSocket::from_std(s).unwrap()
        };
        let dump = Arc::new(bind(self.ip));
        let netlog = Arc::new(bind(self.ip));
        let mut tx = Tx {
            rng: SmallRng::seed_from_u64(self.seed ^ 0x5eed),
            knobs: self.knobs,
            to: self.server,
            held: None,
        };
        let mut rx_rng = SmallRng::seed_from_u64(self.seed ^ 0xface);
        let mut res = SimResult::default();
        let mut log_off: u32 = 0;
        // The oops reaches the server as netlog before netdump mode.
        for chunk in self.oops.chunks(1000) {
            let f = frame(4, 0, code::LOG, log_off, chunk);
            tx.send(&netlog, f).await;
            log_off += chunk.len() as u32;
        }
        tx.flush(&netlog).await;

        let mut buf = vec![0u8; 2048];
        let start_text = format!(
            "task_struct:0x{:x} page_offset:0x{:x} netdump_magic:0x{:x}\n",
            self.task_struct, self.page_offset, self.magic
        );
        // Handshake: START about once a second until the first queued request is the ACK.
        let version: u8;
        'handshake: loop {
            if t0.elapsed() > self.deadline {
                res.elapsed = t0.elapsed();
                return res;
            }
            let st = frame(
                4,
                self.machine as u32,
                code::START_NETDUMP,
                5,
                start_text.as_bytes(),
            );
            tx.send(&dump, st).await;
            tx.flush(&dump).await;
            res.starts_sent += 1;
            let until = tokio::time::Instant::now() + Duration::from_secs(1);
            loop {
                match tokio::time::timeout_at(until, dump.recv_from(&mut buf)).await {
                    Err(_) => continue 'handshake,
                    Ok(Err(_)) => continue,
                    Ok(Ok((n, _))) => {
                        if rx_rng.random_bool(self.knobs.loss) {
                            continue;
                        }
                        let Ok(r) = Request::decode(&buf[..n]) else {
                            continue;
                        };
                        if r.command == cmd::START_NETDUMP_ACK {
                            version = r.from.clamp(1, 5) as u8;
                            res.acked = true;
                            break 'handshake;
                        }
                        // first queued request is not the ACK: discard, START again
                        continue 'handshake;
                    }
                }
            }
        }
        // Request loop: answer each request once, in arrival order.
        let mut stall = self.stall.clone();
        let mut held_req: Option<Request> = None;
        let regs = self.regs();
        loop {
            if t0.elapsed() > self.deadline {
                break;
            }
            tx.flush(&dump).await;
            let got =
                tokio::time::timeout(Duration::from_millis(200), dump.recv_from(&mut buf)).await;
            let r = match got {
                Err(_) => {
                    if let Some(h) = held_req.take() {
                        h
                    } else {
                        continue;
                    }
                }
                Ok(Err(_)) => continue,
                Ok(Ok((n, _))) => match Request::decode(&buf[..n]) {
                    Ok(r) => r,
                    Err(_) => continue,
                },
            };
            if rx_rng.random_bool(self.knobs.loss) {
                continue;
            }
            let mut todo = vec![r];
            if rx_rng.random_bool(self.knobs.dup) {
                todo.push(r);
            }
            if held_req.is_none() && rx_rng.random_bool(self.knobs.reorder) {
                held_req = todo.pop();
            } else if let Some(h) = held_req.take() {
                todo.push(h);
            }
            for r in todo {
                res.requests += 1;
                match r.command {
                    cmd::SEND_MEM => {
                        res.mem_requests += 1;
                        let now = Instant::now();
                        res.mem_first.get_or_insert(now);
                        res.mem_last = Some(now);
                        let pfn = r.from;
                        if stall.as_ref().is_some_and(|s| s.at == pfn)
                            && let Some(s) = stall.take()
                        {
                            s.reached.add_permits(1);
                            s.gate.acquire().await.expect("semaphore").forget();
                        }
                        if pfn >= self.image.nr_pages {
                            let t = format!(
                                "page {pfn:08x} is bigger than max page # {:08x}!\n",
                                self.image.nr_pages
                            );
                            tx.send(&dump, frame(version, r.nr, code::ERROR, 0, t.as_bytes()))
                                .await;
                        } else if !self.image.is_ram(pfn) {
                            let next = self.image.next_ram(pfn);
                            tx.send(&dump, frame(version, r.nr, code::RESERVED, next, b""))
                                .await;
                        } else {
                            for (i, c) in self.image.page(pfn).chunks(1024).enumerate() {
                                let f = frame(version, r.nr, code::MEM, (i * 1024) as u32, c);
                                tx.send(&dump, f).await;
                            }
                        }
                    }
                    cmd::GET_PAGE_SIZE => {
                        let t = format!("PAGE_SIZE: {}\n", self.image.page_size);
                        let f = frame(
                            version,
                            r.nr,
                            code::PAGE_SIZE,
                            self.image.page_size,
                            t.as_bytes(),
                        );
                        tx.send(&dump, f).await;
                    }
                    cmd::GET_NR_PAGES => {
                        let t = format!("Number of pages: {}\n", self.image.nr_pages);
                        let f = frame(
                            version,
                            r.nr,
                            code::NR_PAGES,
                            self.image.nr_pages,
                            t.as_bytes(),
                        );
                        tx.send(&dump, f).await;
                    }
                    cmd::GET_REGS => {
                        let mut p = b"Sending register info.\n".to_vec();
                        p.extend_from_slice(&regs);
                        let f = frame(version, r.nr, code::REGS, self.image.ram_pages(), &p);
                        tx.send(&dump, f).await;
                    }
                    cmd::HELLO => {
                        let f = frame(
                            version,
                            r.nr,
                            code::HELLO,
                            4,
                            b"Hello, this is netdump version 0.04\n",
                        );
                        tx.send(&dump, f).await;
                    }
                    cmd::SHOW_STATE => {
                        res.show_states += 1;
                        // RHEL 4 ≥ 2.6.9-67: print first (netlog), then reply.
                        for line in SHOW_STATE_TEXT.as_bytes().chunks(1000) {
                            let f = frame(4, 0, code::LOG, log_off, line);
                            log_off += line.len() as u32;
                            tx.send(&netlog, f).await;
                        }
                        tx.flush(&netlog).await;
                        let f = frame(version, r.nr, code::SHOW_STATE, 0, b"stale scratch");
                        tx.send(&dump, f).await;
                    }
                    cmd::REBOOT => {
                        res.rebooted = true;
                        tx.flush(&dump).await;
                        res.elapsed = t0.elapsed();
                        return res;
                    }
                    other => {
                        let t = format!("Got unknown command code {other}!\n");
                        let f = frame(version, r.nr, code::ERROR, other, t.as_bytes());
                        tx.send(&dump, f).await;
                    }
                }
            }
        }
        res.elapsed = t0.elapsed();
        res
    }
}

pub fn frame(version: u8, nr: u32, c: u32, info: u32, payload: &[u8]) -> Vec<u8> {
    Reply {
        version,
        nr,
        code: c,
        info,
        payload,
    }
    .encode()
}

/// The send path with impairments.
struct Tx {
    rng: SmallRng,
    knobs: Knobs,
    to: SocketAddr,
    held: Option<Vec<u8>>,
}

impl Tx {
    async fn raw(&self, sock: &Arc<UdpSocket>, b: &[u8]) {
        // Loopback can run out of buffer under bursts: that is loss, like a real NIC's.
        let _ = sock.send_to(b, self.to).await;
    }

    async fn send(&mut self, sock: &Arc<UdpSocket>, b: Vec<u8>) {
        let k = self.knobs;
        if k.loss > 0.0 && self.rng.random_bool(k.loss) {
            return;
        }
        if k.delay > 0.0 && self.rng.random_bool(k.delay) {
            let s = sock.clone();
            let to = self.to;
            let by = k.delay_by;
            tokio::spawn(async move {
                tokio::time::sleep(by).await;
                let _ = s.send_to(&b, to).await;
            });
            return;
        }
        if k.dup > 0.0 && self.rng.random_bool(k.dup) {
            self.raw(sock, &b).await;
        }
        if k.reorder > 0.0 && self.held.is_none() && self.rng.random_bool(k.reorder) {
            self.held = Some(b);
            return;
        }
        self.raw(sock, &b).await;
        if let Some(h) = self.held.take() {
            self.raw(sock, &h).await;
        }
    }

    async fn flush(&mut self, sock: &Arc<UdpSocket>) {
        if let Some(h) = self.held.take() {
            self.raw(sock, &h).await;
        }
    }
}
