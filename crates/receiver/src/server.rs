//! The receiver's IO edge: one tokio UDP socket (dual-stack by default), netdump sessions keyed
//! by client address, and the netconsole collector. The loop itself never touches a file: all
//! file work goes to writer threads (receiver::writer), magic files are read on the blocking
//! pool, and the loop sleeps until the earliest deadline of its sessions and the collector.
//! Caps on everything a sender can make it hold: receiver::limits, docs/receiver.md.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::config::ReceiverConfig;
use super::events::Event;
use super::limits::{Caps, DirBudget, RateLimit, Stats};
use super::store::{self, LogCursor};
use super::writer::{ConsoleSink, EventSink, Op, Report, Writer, WriterCtx};
use netdump_proto::netconsole::{Collector, ConsoleEvent};
use netdump_proto::session::{Action, Admission, Input, Security, Session};
use netdump_proto::wire::{self, Datagram};

/// One source of netdump traffic (netlog frames and/or a session).
struct Client {
    /// Current crash directory (planned; the writer creates it on first write).
    dir: Option<PathBuf>,
    /// The dir budget refused a directory for this boot: its netlog is dropped.
    dir_refused: bool,
    writer: Option<Writer>,
    last_seen: Instant,
    log_cursor: LogCursor,
    session: Option<Session>,
    generation: u64,
    /// The (address, port) of the START that opened the session: replies from elsewhere are
    /// ignored.
    reply_to: SocketAddr,
    /// Last directory base name planned and how many times it was used (`.N` suffixes).
    last_base: (String, u32),
}

impl Client {
    fn new(src: SocketAddr, now: Instant) -> Client {
        Client {
            dir: None,
            dir_refused: false,
            writer: None,
            last_seen: now,
            log_cursor: LogCursor::default(),
            session: None,
            generation: 0,
            reply_to: src,
            last_base: (String::new(), 0),
        }
    }
}

/// A magic file value read recently (secure mode), so STARTs do not each cost a file read.
const MAGIC_TTL: Duration = Duration::from_secs(2);
/// Writers making no progress this long are reported (once).
const STALL_REPORT: Duration = Duration::from_secs(10);
/// Receive buffer asked for the socket: bursts from many clients must not overflow it.
const RCVBUF: usize = 32 << 20;
/// Most datagrams handled before timers are looked at again.
const BURST: usize = 512;

/// The UDP receiver.
pub struct Server {
    sock: UdpSocket,
    cfg: ReceiverConfig,
    caps: Caps,
    stats: Arc<Stats>,
    clients: HashMap<IpAddr, Client>,
    writers: usize,
    /// Writer threads whose handle was dropped, joined (bounded wait) at shutdown.
    retired: Vec<JoinHandle<()>>,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports_rx: mpsc::UnboundedReceiver<Report>,
    magic_tx: mpsc::UnboundedSender<(IpAddr, Option<u64>)>,
    magic_rx: mpsc::UnboundedReceiver<(IpAddr, Option<u64>)>,
    magic_cache: HashMap<IpAddr, (Option<u64>, Instant)>,
    /// Lookups in progress, with the last START waiting for each.
    magic_pending: HashMap<IpAddr, Option<(SocketAddr, Vec<u8>)>>,
    actions: Vec<Action>,
    generation: u64,
    events: EventSink,
    console: Collector,
    console_sink: ConsoleSink,
    console_batch: Vec<(IpAddr, ConsoleEvent)>,
    threads: Vec<JoinHandle<()>>,
    budget: Arc<Mutex<DirBudget>>,
    hooks: RateLimit,
    last_report: Instant,
    reported: Vec<(&'static str, u64)>,
    next_housekeeping: Instant,
}

/// Why the receiver could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "Couldn't bind master socket to {addr}: {source} (is another netdump-server running? \
         ports below 1024 need root)"
    )]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot create dump dir {}: {source} (create it, owned by the receiver's user)", dir.display())]
    DumpDir { dir: PathBuf, source: io::Error },
    #[error("cannot set up the receiver's {what}: {source}")]
    Setup {
        what: &'static str,
        source: io::Error,
    },
    #[error("the receiver's shutdown wait failed: {0}")]
    Shutdown(#[from] tokio::task::JoinError),
}

impl Server {
    /// Binds the socket (an IPv6 wildcard also takes IPv4) and prepares the dump dir.
    pub async fn bind(cfg: ReceiverConfig) -> Result<Server, ServerError> {
        let mut r = bind_socket(cfg.listen);
        if let Err(e) = &r
            && cfg.listen.ip() == IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            && e.raw_os_error() == Some(nix::libc::EAFNOSUPPORT)
        {
            // IPv6 switched off in this kernel: the wildcard still means "every address".
            let v4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), cfg.listen.port());
            tracing::warn!("IPv6 is not available here ({e}); listening on {v4} only");
            r = bind_socket(v4);
        }
        let std_sock = r.map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            source,
        })?;
        Self::with_socket(cfg, std_sock)
    }

    /// Serves on an already bound socket (e.g. one created inside another network namespace);
    /// `cfg.listen` is ignored. Must be called within a tokio runtime.
    pub fn with_socket(
        cfg: ReceiverConfig,
        std_sock: std::net::UdpSocket,
    ) -> Result<Server, ServerError> {
        std::fs::create_dir_all(&cfg.dump_dir).map_err(|source| ServerError::DumpDir {
            dir: cfg.dump_dir.clone(),
            source,
        })?;
        let setup = |what: &'static str| move |source| ServerError::Setup { what, source };
        let caps = cfg.caps.clone();
        let nofile = super::limits::raise_nofile(caps.fd_budget);
        tracing::debug!("open file limit {nofile} (fd budget {})", caps.fd_budget);
        std_sock.set_nonblocking(true).map_err(setup("socket"))?;
        enlarge_rcvbuf(&std_sock);
        let sock = UdpSocket::from_std(std_sock).map_err(setup("socket"))?;
        let stats = Arc::new(Stats::default());
        let budget = Arc::new(Mutex::new(DirBudget::new(
            caps.dirs_per_source_per_hour,
            caps.dirs_per_hour,
        )));
        let (events, et) = EventSink::spawn(&cfg.dump_dir, caps.events_queue, stats.clone())
            .map_err(setup("event writer"))?;
        let (console_sink, ct) = ConsoleSink::spawn(
            &cfg.dump_dir,
            Default::default(),
            &caps,
            stats.clone(),
            budget.clone(),
        )
        .map_err(setup("console writer"))?;
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let (magic_tx, magic_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        Ok(Server {
            sock,
            hooks: RateLimit::new(caps.hooks_per_minute),
            caps,
            stats,
            clients: HashMap::new(),
            writers: 0,
            retired: Vec::new(),
            reports_tx,
            reports_rx,
            magic_tx,
            magic_rx,
            magic_cache: HashMap::new(),
            magic_pending: HashMap::new(),
            actions: Vec::new(),
            generation: 0,
            events,
            console: Collector::new(Default::default()),
            console_sink,
            console_batch: Vec::new(),
            threads: vec![et, ct],
            budget,
            last_report: now,
            reported: Vec::new(),
            next_housekeeping: now + cfg.tick,
            cfg,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    pub fn config(&self) -> &ReceiverConfig {
        &self.cfg
    }

    /// Counters (caps reached, drops, failures).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Earliest deadline of any session, the collector and housekeeping.
    fn next_deadline(&self) -> Instant {
        let mut at = self.next_housekeeping;
        if let Some(c) = self.console.poll_timeout() {
            at = at.min(c);
        }
        for c in self.clients.values() {
            if let Some(s) = &c.session
                && let Some(d) = s.poll_timeout()
            {
                at = at.min(d);
            }
        }
        at
    }

    /// Serves until `shutdown` resolves; then closes every file (vmcore-incomplete stays).
    /// Writers stuck in the kernel are not waited for more than a few seconds.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        tracing::info!(
            "receiver listening on {} (dump dir {}, secure {}, concurrent {})",
            self.local_addr().map_err(|source| ServerError::Setup {
                what: "socket",
                source
            })?,
            self.cfg.dump_dir.display(),
            self.cfg.secure,
            self.cfg.concurrent
        );
        let mut buf = vec![0u8; 65536];
        tokio::pin!(shutdown);
        loop {
            let deadline = tokio::time::Instant::from_std(self.next_deadline());
            // Biased, and the socket last: under a flood it is always readable, and timers,
            // writer reports and magic values must still be seen (they are rare and cheap).
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(deadline) => self.on_timers(Instant::now()).await,
                Some(r) = self.reports_rx.recv() => self.on_report(r, Instant::now()).await,
                Some((ip, magic)) = self.magic_rx.recv() => {
                    self.on_magic(ip, magic, Instant::now()).await;
                }
                r = self.sock.recv_from(&mut buf) => {
                    match r {
                        Ok((n, src)) => self.on_datagram(src, &buf[..n], Instant::now()).await,
                        Err(e) => tracing::warn!("receive on {:?} failed: {e}", self.local_addr()),
                    }
                    // Drain what is queued before looking at timers again.
                    for _ in 0..BURST {
                        match self.sock.try_recv_from(&mut buf) {
                            Ok((n, src)) => self.on_datagram(src, &buf[..n], Instant::now()).await,
                            Err(_) => break,
                        }
                    }
                    self.flush_console();
                }
            }
        }
        tracing::info!("receiver shutting down; closing files");
        self.report(true);
        let mut threads = std::mem::take(&mut self.retired);
        for (_, c) in self.clients.drain() {
            if let Some(w) = c.writer {
                threads.push(w.thread);
            }
        }
        threads.append(&mut self.threads);
        // Closing the channels ends every thread once its queue is done.
        drop(self);
        let waited = tokio::task::spawn_blocking(move || {
            let until = Instant::now() + Duration::from_secs(3);
            let mut left = threads;
            while !left.is_empty() && Instant::now() < until {
                left.retain(|t| !t.is_finished());
                std::thread::sleep(Duration::from_millis(10));
            }
            left.len()
        })
        .await?;
        if waited > 0 {
            tracing::warn!(
                "{waited} writer thread(s) still blocked in the kernel at shutdown; leaving them \
                 (their vmcore-incomplete files stay)"
            );
        }
        Ok(())
    }

    fn flush_console(&mut self) {
        if !self.console_batch.is_empty() {
            let batch = std::mem::take(&mut self.console_batch);
            self.console_sink.send(batch);
        }
    }

    /// The client entry of `ip`, creating it within `max_netdump_sources` (evicting the longest
    /// idle source without a session). None when full of sessions.
    fn client(&mut self, ip: IpAddr, src: SocketAddr, now: Instant) -> Option<&mut Client> {
        if !self.clients.contains_key(&ip) {
            if self.clients.len() >= self.caps.max_netdump_sources.max(1) {
                // Forget the longest-idle eighth of the sources without a session at once, so
                // a stream of new (spoofed) sources costs O(1) per datagram, not a scan each.
                let mut idle: Vec<(Instant, IpAddr)> = self
                    .clients
                    .iter()
                    .filter(|(_, c)| c.session.is_none())
                    .map(|(ip, c)| (c.last_seen, *ip))
                    .collect();
                if idle.is_empty() {
                    Stats::inc(&self.stats.sessions_cap);
                    return None;
                }
                let n = (self.caps.max_netdump_sources / 8).clamp(1, idle.len());
                if n < idle.len() {
                    idle.select_nth_unstable(n);
                }
                for &(_, v) in &idle[..n] {
                    self.forget(v);
                }
                Stats::add(&self.stats.sources_evicted, n as u64);
            }
            self.clients.insert(ip, Client::new(src, now));
        }
        let c = self.clients.get_mut(&ip).expect("present");
        c.last_seen = now;
        Some(c)
    }

    fn forget(&mut self, ip: IpAddr) {
        if let Some(c) = self.clients.remove(&ip) {
            self.retire_writer(c.writer);
        }
    }

    fn retire_writer(&mut self, w: Option<Writer>) {
        if let Some(w) = w {
            self.writers -= 1;
            self.retired.push(w.thread);
        }
    }

    async fn on_datagram(&mut self, src: SocketAddr, data: &[u8], now: Instant) {
        Stats::inc(&self.stats.datagrams);
        // IPv4-mapped senders on a dual-stack socket are named as IPv4.
        let ip = src.ip().to_canonical();
        match wire::classify(data) {
            Datagram::Console(text) => {
                self.console
                    .ingest_into(ip, text, now, &mut self.console_batch);
            }
            Datagram::NetLog { offset, text } => self.on_netlog(ip, src, offset, text, now).await,
            Datagram::Netdump(r) => {
                let bound = self
                    .clients
                    .get(&ip)
                    .and_then(|c| c.session.as_ref().map(|_| c.reply_to));
                match bound {
                    Some(to) if to != src => {
                        // Same address, another port: not the client the session talks to.
                        Stats::inc(&self.stats.wrong_port);
                        return;
                    }
                    Some(_) => {}
                    None => {
                        if r.code != wire::code::START_NETDUMP {
                            Stats::inc(&self.stats.no_session);
                            return;
                        }
                        if !self.admit_start(ip, src, data, &r, now) {
                            return;
                        }
                    }
                }
                let generation = self.clients[&ip].generation;
                let restart = self.feed(ip, generation, Input::Reply(r), now).await;
                if restart && self.admit_start(ip, src, data, &r, now) {
                    let generation = self.clients[&ip].generation;
                    self.feed(ip, generation, Input::Reply(r), now).await;
                }
            }
        }
    }

    async fn on_netlog(
        &mut self,
        ip: IpAddr,
        src: SocketAddr,
        offset: u32,
        text: &[u8],
        now: Instant,
    ) {
        let Some(c) = self.client(ip, src, now) else {
            return;
        };
        if c.log_cursor.fresh(offset, text.len()) {
            if offset == 0 && c.session.is_none() && c.dir.is_some() {
                // A log stream starting at 0 again: the client (re)loaded netconsole, i.e. it
                // booted. One directory per boot (within the directory caps).
                let old = c.writer.take();
                c.dir = None;
                c.dir_refused = false;
                self.retire_writer(old);
            }
            let first = self.clients[&ip].dir.is_none();
            self.send_op(ip, Op::Log(text.to_vec()), now);
            if first && self.clients[&ip].dir.is_some() {
                self.run_hook(ip, "netdump-start", vec![ip.to_string()], now);
            }
        }
        let generation = self.clients[&ip].generation;
        self.feed(ip, generation, Input::Log, now).await;
    }

    /// Decides whether a START from `src` may open a session; in secure mode only with a
    /// matching magic (read off the loop; the START is replayed once the value is known). An
    /// invalid START leaves no state behind.
    fn admit_start(
        &mut self,
        ip: IpAddr,
        src: SocketAddr,
        data: &[u8],
        r: &wire::Reply<'_>,
        now: Instant,
    ) -> bool {
        let security = if self.cfg.secure {
            let cached = self
                .magic_cache
                .get(&ip)
                .filter(|(_, at)| now.saturating_duration_since(*at) < MAGIC_TTL)
                .map(|(m, _)| *m);
            let Some(expected) = cached else {
                self.lookup_magic(ip, src, data);
                return false;
            };
            let got = wire::StartInfo::parse(r).magic;
            match (expected, got) {
                (Some(e), Some(g)) if e == g => Security::Expect(Some(e)),
                _ => {
                    Stats::inc(&self.stats.invalid_starts);
                    let n = self
                        .stats
                        .invalid_starts
                        .load(std::sync::atomic::Ordering::Relaxed);
                    if n <= 10 || n.is_multiple_of(1000) {
                        let why = match (expected, got) {
                            (None, _) => {
                                "no readable magic file <dumpdir>/magic/<ip> (push one \
                                          with `service netdump start` on the client, or run with \
                                          --insecure)"
                            }
                            (_, None) => {
                                "its START carries no netdump_magic (legacy client; run \
                                          with --insecure to accept it)"
                            }
                            _ => {
                                "its START magic does not match <dumpdir>/magic/<ip> (restart \
                                  netdump on the client to push a fresh magic)"
                            }
                        };
                        tracing::warn!(
                            "netdump client {src}: refusing dump: {why} ({n} refused STARTs so far)"
                        );
                    }
                    return false;
                }
            }
        } else {
            Security::Insecure
        };
        let sessions = self
            .clients
            .values()
            .filter(|c| c.session.is_some())
            .count();
        if sessions >= self.caps.max_sessions {
            Stats::inc(&self.stats.sessions_cap);
            return false;
        }
        let active = self
            .clients
            .values()
            .filter(|c| c.session.as_ref().is_some_and(|s| s.holds_dump_slot()))
            .count();
        let admission = if active < self.cfg.concurrent {
            Admission::Dump
        } else {
            Admission::RebootOnly
        };
        self.generation += 1;
        let generation = self.generation;
        let root = self.cfg.dump_dir.clone();
        let tuning = self.cfg.tuning.clone();
        let Some(c) = self.client(ip, src, now) else {
            return false;
        };
        let dir = match &c.dir {
            Some(d) => d.clone(),
            None => {
                let d = plan_crash_dir(&root, ip, &mut c.last_base, chrono::Utc::now());
                c.dir = Some(d.clone());
                d
            }
        };
        // A dump is never refused a directory by the directory caps (its netlog may have been).
        c.dir_refused = false;
        c.reply_to = src;
        c.generation = generation;
        c.session = Some(Session::new(ip, dir, security, admission, tuning, now));
        self.share_window();
        true
    }

    fn lookup_magic(&mut self, ip: IpAddr, src: SocketAddr, data: &[u8]) {
        if let Some(waiting) = self.magic_pending.get_mut(&ip) {
            *waiting = Some((src, data.to_vec()));
            return;
        }
        if self.magic_pending.len() >= self.caps.magic_lookups {
            Stats::inc(&self.stats.magic_lookups_cap);
            return;
        }
        self.magic_pending.insert(ip, Some((src, data.to_vec())));
        let root = self.cfg.dump_dir.clone();
        let tx = self.magic_tx.clone();
        tokio::task::spawn_blocking(move || {
            let _ = tx.send((ip, store::read_magic(&root, ip)));
        });
    }

    async fn on_magic(&mut self, ip: IpAddr, magic: Option<u64>, now: Instant) {
        if self.magic_cache.len() >= 4096 {
            self.magic_cache
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < MAGIC_TTL);
        }
        if self.magic_cache.len() < 4096 {
            self.magic_cache.insert(ip, (magic, now));
        }
        if let Some(Some((src, data))) = self.magic_pending.remove(&ip) {
            let has_session = self.clients.get(&ip).is_some_and(|c| c.session.is_some());
            if !has_session && self.magic_cache.contains_key(&ip) {
                Box::pin(self.on_datagram(src, &data, now)).await;
            }
        }
    }

    /// Feeds one input to the client's session (if its generation matches) and performs the
    /// resulting actions. Returns true if the session asked to be restarted.
    async fn feed(&mut self, ip: IpAddr, generation: u64, input: Input<'_>, now: Instant) -> bool {
        let mut actions = std::mem::take(&mut self.actions);
        actions.clear();
        if let Some(c) = self.clients.get_mut(&ip)
            && c.generation == generation
            && let Some(s) = c.session.as_mut()
        {
            s.set_write_backlog(c.writer.as_ref().map_or(0, |w| w.page_backlog()));
            s.handle_into(input, now, &mut actions);
        }
        let restart = self.perform(ip, &mut actions, now).await;
        self.actions = actions;
        restart
    }

    async fn on_report(&mut self, r: Report, now: Instant) {
        match r {
            Report::Space { ip, generation, ok } => {
                self.feed(ip, generation, Input::SpaceChecked { ok }, now)
                    .await;
            }
            Report::Failed {
                ip,
                generation,
                reason,
            } => {
                self.feed(ip, generation, Input::WriteFailed(&reason), now)
                    .await;
            }
        }
    }

    async fn on_timers(&mut self, now: Instant) {
        if self.console.poll_timeout().is_some_and(|t| t <= now) {
            let ev = self.console.tick(now);
            self.console_batch.extend(ev);
            self.flush_console();
        }
        let due: Vec<(IpAddr, u64)> = self
            .clients
            .iter()
            .filter_map(|(ip, c)| {
                let s = c.session.as_ref()?;
                s.poll_timeout()
                    .is_some_and(|t| t <= now)
                    .then_some((*ip, c.generation))
            })
            .collect();
        for (ip, generation) in due {
            self.feed(ip, generation, Input::Tick, now).await;
        }
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + self.cfg.tick;
            self.housekeeping(now);
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        let ev = self.console.tick(now);
        self.console_batch.extend(ev);
        self.flush_console();
        self.share_window();
        // Sources without a session that went quiet: forget them (their writer is closed).
        let idle = self.caps.source_idle;
        let quiet: Vec<IpAddr> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                c.session.is_none()
                    && now.saturating_duration_since(c.last_seen) >= idle
                    && c.writer.as_ref().is_none_or(|w| w.is_idle())
            })
            .map(|(ip, _)| *ip)
            .collect();
        for ip in quiet {
            self.forget(ip);
        }
        for (ip, c) in &mut self.clients {
            if let Some(w) = &mut c.writer {
                match w.busy_for() {
                    Some(d) if d >= STALL_REPORT && !w.reported_stall => {
                        w.reported_stall = true;
                        Stats::inc(&self.stats.writer_stalls);
                        tracing::error!(
                            "writer for {} has made no progress for {} s on {} (file system \
                             stuck?); only this host waits, its dump stops requesting pages",
                            ip,
                            d.as_secs(),
                            w.dir.display()
                        );
                    }
                    None => w.reported_stall = false,
                    _ => {}
                }
            }
        }
        self.retired.retain(|t| !t.is_finished());
        self.magic_cache
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < MAGIC_TTL);
        if now.saturating_duration_since(self.last_report) >= self.caps.report_interval {
            self.last_report = now;
            self.report(false);
        }
    }

    /// Logs the counters that moved since the last report (each cap once per interval) and
    /// rewrites the stats file.
    fn report(&mut self, last: bool) {
        let snap = self.stats.snapshot();
        let moved: Vec<String> = snap
            .iter()
            .filter(|(k, v)| {
                *k != "datagrams"
                    && *k != "pages_written"
                    && *v
                        != self
                            .reported
                            .iter()
                            .find(|(k2, _)| k2 == k)
                            .map_or(0, |x| x.1)
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !moved.is_empty() {
            tracing::warn!(
                "receiver caps/drops since the last report: {} (see docs/receiver.md; \
                 `provision receiver --stats`)",
                moved.join(" ")
            );
        }
        self.reported = snap;
        let mut j = self.stats.to_json();
        j["time"] = chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            .into();
        j["sources"] = self.clients.len().into();
        j["writers"] = self.writers.into();
        j["console_sources"] = self.console.sources().into();
        j["stopped"] = last.into();
        self.events.write_stats(format!("{j}\n"));
    }

    fn run_hook(&mut self, ip: IpAddr, name: &'static str, args: Vec<String>, now: Instant) {
        if !self.hooks.allow(now) {
            Stats::inc(&self.stats.hooks_rate_cap);
            return;
        }
        self.send_op(ip, Op::Hook { name, args }, now);
    }

    async fn perform(&mut self, ip: IpAddr, actions: &mut Vec<Action>, now: Instant) -> bool {
        let mut restart = false;
        for a in actions.drain(..) {
            match a {
                Action::Send(req) => {
                    let Some(to) = self.clients.get(&ip).map(|c| c.reply_to) else {
                        continue;
                    };
                    // Never waits: a full socket buffer drops the request (it is retried).
                    if let Err(e) = self.sock.try_send_to(&req.encode(), to)
                        && e.kind() != io::ErrorKind::WouldBlock
                    {
                        tracing::debug!("send to netdump client {to} failed: {e}");
                    }
                }
                Action::OpenDump(header) => {
                    let generation = self.clients.get(&ip).map_or(0, |c| c.generation);
                    if !self.send_op(ip, Op::Open { header, generation }, now) {
                        self.dump_not_writable(ip, generation);
                    }
                }
                Action::WritePage { pfn, data } => {
                    self.send_op(ip, Op::Page { pfn, data }, now);
                }
                Action::CheckSpace { need } => {
                    let generation = self.clients.get(&ip).map_or(0, |c| c.generation);
                    if self.cfg.space_check {
                        if !self.send_op(ip, Op::CheckSpace { need, generation }, now) {
                            let _ = self.reports_tx.send(Report::Space {
                                ip,
                                generation,
                                ok: false,
                            });
                        }
                    } else {
                        let _ = self.reports_tx.send(Report::Space {
                            ip,
                            generation,
                            ok: true,
                        });
                    }
                }
                Action::FinishDump { complete } => {
                    self.send_op(ip, Op::Finish { complete }, now);
                }
                Action::RunHook { name, args } => self.run_hook(ip, name, args, now),
                Action::Emit { kind, detail } => {
                    let dir = self
                        .clients
                        .get(&ip)
                        .and_then(|c| c.dir.clone())
                        .unwrap_or_else(|| self.cfg.dump_dir.clone());
                    let e = Event::now(kind, ip.to_string(), &dir, detail);
                    // After the file work queued before it, through the writer if there is one.
                    let via_writer = self.clients.get(&ip).is_some_and(|c| c.writer.is_some());
                    if !via_writer || !self.send_op(ip, Op::Event(e.clone()), now) {
                        self.events.send(e);
                    }
                }
                Action::Log { warn, msg } => {
                    if warn {
                        tracing::warn!("{msg}");
                    } else {
                        tracing::info!("{msg}");
                    }
                }
                Action::Restart => {
                    restart = true;
                    self.end_session(ip);
                }
                Action::Close => self.end_session(ip),
            }
        }
        restart
    }

    /// No writer could take the dump (caps or directory refused): the session fails it.
    fn dump_not_writable(&mut self, ip: IpAddr, generation: u64) {
        let _ = self.reports_tx.send(Report::Failed {
            ip,
            generation,
            reason: "no writer for the dump directory (writer or directory cap reached; see \
                     `provision receiver --stats`)"
                .into(),
        });
    }

    /// Splits `total_window` among the dumps in progress.
    fn share_window(&mut self) {
        let active = self
            .clients
            .values()
            .filter(|c| c.session.as_ref().is_some_and(|s| s.holds_dump_slot()))
            .count()
            .max(1);
        let w = (self.cfg.total_window / active).clamp(4, self.cfg.tuning.window.max(4));
        for c in self.clients.values_mut() {
            if let Some(s) = c.session.as_mut() {
                s.set_window(w);
            }
        }
    }

    /// The client's session is over: its next boot gets a new directory.
    fn end_session(&mut self, ip: IpAddr) {
        let w = self.clients.get_mut(&ip).and_then(|c| {
            c.session = None;
            c.dir = None;
            c.dir_refused = false;
            c.log_cursor.reset();
            c.writer.take()
        });
        self.retire_writer(w);
    }

    /// Queues file work for the client's current directory, starting its writer thread on
    /// first use (within the writer and directory caps). False when the work was dropped.
    fn send_op(&mut self, ip: IpAddr, op: Op, now: Instant) -> bool {
        let Some(c) = self.clients.get(&ip) else {
            return false;
        };
        if c.writer.is_none() {
            let has_session = c.session.is_some();
            if c.dir_refused && !has_session {
                return false;
            }
            if self.writers >= self.caps.max_writers {
                // Make room: the longest-quiet netlog-only writer with nothing queued.
                let victim = self
                    .clients
                    .iter()
                    .filter(|(_, c)| {
                        c.session.is_none() && c.writer.as_ref().is_some_and(|w| w.is_idle())
                    })
                    .min_by_key(|(_, c)| c.last_seen)
                    .map(|(ip, _)| *ip);
                match victim {
                    Some(v) => {
                        let w = self.clients.get_mut(&v).and_then(|c| {
                            // Its next frame continues in the same directory.
                            c.writer.take()
                        });
                        self.retire_writer(w);
                    }
                    None => {
                        Stats::inc(&self.stats.writers_cap);
                        return false;
                    }
                }
            }
            let root = self.cfg.dump_dir.clone();
            let c = self.clients.get_mut(&ip).expect("present");
            let dir = match &c.dir {
                Some(d) => d.clone(),
                None => {
                    // A new directory: within the per-source and per-hour caps. A dump in
                    // progress is never refused by them (its session is already admitted).
                    let r = self
                        .budget
                        .lock()
                        .map_err(|_| super::limits::DirRefused::TotalCap)
                        .and_then(|mut b| b.take(ip, now));
                    if let Err(why) = r
                        && !has_session
                    {
                        DirBudget::count(&self.stats, why);
                        c.dir_refused = true;
                        return false;
                    }
                    let d = plan_crash_dir(&root, ip, &mut c.last_base, chrono::Utc::now());
                    c.dir = Some(d.clone());
                    d
                }
            };
            let ctx = WriterCtx {
                ip,
                root,
                dir,
                hook_timeout: self.cfg.hook_timeout,
                space_check: self.cfg.space_check,
                reports: self.reports_tx.clone(),
                events: self.events.clone(),
                stats: self.stats.clone(),
                caps: self.caps.clone(),
            };
            match Writer::spawn(ctx) {
                Ok(w) => {
                    self.writers += 1;
                    self.clients.get_mut(&ip).expect("present").writer = Some(w);
                }
                Err(e) => {
                    tracing::error!("cannot start writer thread for {ip}: {e}");
                    Stats::inc(&self.stats.writers_cap);
                    return false;
                }
            }
        }
        let limit = self.caps.writer_queue;
        let w = self.clients[&ip].writer.as_ref().expect("writer");
        if w.send(op, limit) {
            true
        } else {
            Stats::inc(&self.stats.writer_queue_full);
            false
        }
    }
}

/// Chooses `<root>/<ip>-<time>` (with a `.N` suffix when this client already used that name
/// this second). Pure: the writer creates it.
fn plan_crash_dir(
    root: &Path,
    ip: IpAddr,
    last: &mut (String, u32),
    now: chrono::DateTime<chrono::Utc>,
) -> PathBuf {
    let base = store::crash_dir_name(ip, now);
    if last.0 == base {
        last.1 += 1;
        root.join(format!("{base}.{}", last.1))
    } else {
        *last = (base.clone(), 0);
        root.join(base)
    }
}

/// Binds `addr`; an IPv6 wildcard is made dual-stack explicitly (IPv4 senders then arrive as
/// IPv4-mapped addresses, named as IPv4 by the loop).
pub fn bind_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        s.set_only_v6(false)?;
    }
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn enlarge_rcvbuf(sock: &std::net::UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(sock, sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = setsockopt(sock, sockopt::RcvBuf, &RCVBUF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn crash_dirs_of_one_client_in_one_second_get_numbered() {
        let root = Path::new("/var/crash");
        let ip = IpAddr::from([198, 18, 0, 7]);
        let t = chrono::Utc.with_ymd_and_hms(2026, 12, 2, 8, 5, 9).unwrap();
        let mut last = (String::new(), 0);
        let a = plan_crash_dir(root, ip, &mut last, t);
        let b = plan_crash_dir(root, ip, &mut last, t);
        let c = plan_crash_dir(root, ip, &mut last, t + chrono::Duration::seconds(1));
        assert_eq!(a, root.join("198.18.0.7-2026-12-02-08:05:09"));
        assert_eq!(b, root.join("198.18.0.7-2026-12-02-08:05:09.1"));
        assert_eq!(c, root.join("198.18.0.7-2026-12-02-08:05:10"));
    }
}
