//! The receiver's IO edge: one tokio UDP socket, sessions keyed by client IPv4 address, a timer
//! tick for timeouts, and one writer thread per client directory so file IO, events and hook
//! scripts never stall the socket loop.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::config::ReceiverConfig;
use super::events::{Event, EventKind, EventLog};
use super::session::{Action, Admission, Input, Security, Session};
use super::store::{self, DumpFile, LogCursor, LogFile};
use super::vmcore::CoreHeader;
use super::wire::{self, Datagram};

/// File work for one client directory, done in order on its writer thread.
enum Op {
    Log(Vec<u8>),
    Open(CoreHeader),
    Page {
        pfn: u32,
        data: Vec<u8>,
    },
    Finish {
        complete: bool,
    },
    Hook {
        name: &'static str,
        args: Vec<String>,
    },
    Event(Event),
    CheckSpace {
        need: u64,
        generation: u64,
    },
}

struct Writer {
    tx: std_mpsc::Sender<Op>,
}

struct WriterCtx {
    ip: Ipv4Addr,
    root: PathBuf,
    dir: PathBuf,
    hook_timeout: Duration,
    space_check: bool,
    space_tx: mpsc::UnboundedSender<(Ipv4Addr, u64, bool)>,
    events: EventLog,
}

fn writer_main(ctx: WriterCtx, rx: std_mpsc::Receiver<Op>) {
    let mut log: Option<LogFile> = None;
    let mut dump: Option<DumpFile> = None;
    let mut failed_io = false;
    while let Ok(op) = rx.recv() {
        let r: io::Result<()> = (|| {
            match op {
                Op::Log(data) => {
                    if log.is_none() {
                        log = Some(LogFile::open(&ctx.dir)?);
                    }
                    log.as_mut().expect("opened").append(&data)?;
                }
                Op::Open(h) => {
                    failed_io = false;
                    dump = Some(DumpFile::create(&ctx.dir, h)?);
                }
                Op::Page { pfn, data } => {
                    if let Some(d) = dump.as_mut()
                        && !failed_io
                    {
                        d.write_page(pfn, &data)?;
                    }
                }
                Op::Finish { complete } => {
                    if let Some(d) = dump.take() {
                        let p = d.finish(complete && !failed_io)?;
                        tracing::info!("netdump client {}: closed {}", ctx.ip, p.display());
                    }
                }
                Op::Hook { name, args } => {
                    if store::spawn_hook(&ctx.root, name, &args, ctx.hook_timeout).is_none() {
                        tracing::debug!("no hook {name} in {}/scripts", ctx.root.display());
                    }
                }
                Op::Event(e) => ctx.events.append(&e).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot append to {}: {e}", ctx.events.path().display()),
                    )
                })?,
                Op::CheckSpace { need, generation } => {
                    let ok = !ctx.space_check
                        || store::check_space(&ctx.root, ctx.ip, &ctx.dir, need, ctx.hook_timeout);
                    let _ = ctx.space_tx.send((ctx.ip, generation, ok));
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            failed_io = true;
            tracing::error!(
                "netdump client {}: writing under {} failed: {e} (check free space and \
                 permissions of the dump dir)",
                ctx.ip,
                ctx.dir.display()
            );
        }
    }
    // Channel closed (session over or shutdown): DumpFile's Drop flushes; vmcore-incomplete
    // stays as it is.
}

struct Client {
    /// Current crash directory of this client boot (created on first write).
    dir: Option<PathBuf>,
    writer: Option<Writer>,
    /// Last time file work was queued (idle writers of log-only clients are closed).
    last_op: Instant,
    log_cursor: LogCursor,
    session: Option<Session>,
    generation: u64,
    reply_to: SocketAddr,
}

/// The UDP receiver.
pub struct Server {
    sock: UdpSocket,
    cfg: ReceiverConfig,
    clients: HashMap<Ipv4Addr, Client>,
    threads: Vec<JoinHandle<()>>,
    space_tx: mpsc::UnboundedSender<(Ipv4Addr, u64, bool)>,
    space_rx: mpsc::UnboundedReceiver<(Ipv4Addr, u64, bool)>,
    actions: Vec<Action>,
    generation: u64,
    events: EventLog,
    /// netconsole reassembly, ordering, loss and crash detection (sans-IO).
    console: crate::receiver::netconsole::Collector,
    /// Rolling per-host console logs and crash records under `<dumpdir>/console/`.
    console_store: crate::receiver::console::ConsoleStore,
}

/// A log-only client's writer thread is closed after this long without work.
const WRITER_IDLE: Duration = Duration::from_secs(60);

/// Receive buffer asked for the socket: bursts from many clients must not overflow it.
const RCVBUF: usize = 32 << 20;

impl Server {
    /// Binds the socket and prepares the dump dir (created if missing).
    pub async fn bind(cfg: ReceiverConfig) -> anyhow::Result<Server> {
        let std_sock = std::net::UdpSocket::bind(cfg.listen).map_err(|e| {
            anyhow::anyhow!(
                "Couldn't bind master socket to {}: {e} (is another netdump-server running? \
                 ports below 1024 need root)",
                cfg.listen
            )
        })?;
        Self::with_socket(cfg, std_sock)
    }

    /// Serves on an already bound socket (e.g. one created inside another network namespace);
    /// `cfg.listen` is ignored. Must be called within a tokio runtime.
    pub fn with_socket(
        cfg: ReceiverConfig,
        std_sock: std::net::UdpSocket,
    ) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&cfg.dump_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create dump dir {}: {e} (create it, owned by the receiver's user)",
                cfg.dump_dir.display()
            )
        })?;
        std_sock.set_nonblocking(true)?;
        enlarge_rcvbuf(&std_sock);
        let sock = UdpSocket::from_std(std_sock)?;
        let (space_tx, space_rx) = mpsc::unbounded_channel();
        Ok(Server {
            sock,
            events: EventLog::new(&cfg.dump_dir),
            console: crate::receiver::netconsole::Collector::new(Default::default()),
            console_store: crate::receiver::console::ConsoleStore::new(
                &cfg.dump_dir,
                Default::default(),
            ),
            cfg,
            clients: HashMap::new(),
            threads: Vec::new(),
            space_tx,
            space_rx,
            actions: Vec::new(),
            generation: 0,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    pub fn config(&self) -> &ReceiverConfig {
        &self.cfg
    }

    /// Serves until `shutdown` resolves; then closes every file (vmcore-incomplete stays).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tracing::info!(
            "receiver listening on {} (dump dir {}, secure {}, concurrent {})",
            self.local_addr()?,
            self.cfg.dump_dir.display(),
            self.cfg.secure,
            self.cfg.concurrent
        );
        let mut buf = vec![0u8; 65536];
        let mut tick = tokio::time::interval(self.cfg.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                r = self.sock.recv_from(&mut buf) => {
                    match r {
                        Ok((n, src)) => self.on_datagram(src, &buf[..n], Instant::now()).await,
                        Err(e) => tracing::warn!("receive on {:?} failed: {e}", self.local_addr()),
                    }
                    // Drain what is queued before looking at timers again.
                    for _ in 0..512 {
                        match self.sock.try_recv_from(&mut buf) {
                            Ok((n, src)) => self.on_datagram(src, &buf[..n], Instant::now()).await,
                            Err(_) => break,
                        }
                    }
                }
                _ = tick.tick() => self.on_tick(Instant::now()).await,
                Some((ip, generation, ok)) = self.space_rx.recv() => {
                    self.feed(ip, generation, Input::SpaceChecked { ok }, Instant::now()).await;
                }
            }
        }
        tracing::info!("receiver shutting down; closing files");
        if let Err(e) = self.console_store.flush() {
            tracing::warn!("flushing console logs failed: {e}");
        }
        for c in self.clients.values_mut() {
            c.writer = None;
        }
        self.clients.clear();
        let threads = std::mem::take(&mut self.threads);
        tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await?;
        Ok(())
    }

    fn client(&mut self, ip: Ipv4Addr, src: SocketAddr) -> &mut Client {
        self.clients.entry(ip).or_insert_with(|| Client {
            dir: None,
            writer: None,
            last_op: Instant::now(),
            log_cursor: LogCursor::default(),
            session: None,
            generation: 0,
            reply_to: src,
        })
    }

    async fn on_datagram(&mut self, src: SocketAddr, data: &[u8], now: Instant) {
        let SocketAddr::V4(v4) = src else {
            tracing::debug!("ignoring datagram from non-IPv4 {src}");
            return;
        };
        let ip = *v4.ip();
        match wire::classify(data) {
            Datagram::Console(text) => self.on_console_datagram(src, text, now),
            Datagram::NetLog { offset, text } => {
                let c = self.client(ip, src);
                if !c.log_cursor.fresh(offset, text.len()) {
                    // exact duplicate of a frame already written
                } else {
                    if offset == 0 && c.session.is_none() {
                        // A log stream starting at 0: the client (re)loaded netconsole, i.e. it
                        // booted. One directory per boot; run netdump-start.
                        c.writer = None;
                        c.dir = None;
                        let args = [ip.to_string()];
                        let _ = store::spawn_hook(
                            &self.cfg.dump_dir,
                            "netdump-start",
                            &args,
                            self.cfg.hook_timeout,
                        );
                    }
                    let op = Op::Log(text.to_vec());
                    self.send_op(ip, op);
                }
                let generation = self.clients[&ip].generation;
                self.feed(ip, generation, Input::Log, now).await;
            }
            Datagram::Netdump(r) => {
                let has_session = self.clients.get(&ip).is_some_and(|c| c.session.is_some());
                if !has_session {
                    if r.code != wire::code::START_NETDUMP {
                        tracing::debug!(
                            "Got packet (code {}) from {src} which has no netdump session; ignored",
                            r.code
                        );
                        return;
                    }
                    self.new_session(ip, src, now);
                }
                let generation = self.clients[&ip].generation;
                let restart = self.feed(ip, generation, Input::Reply(r), now).await;
                if restart {
                    self.new_session(ip, src, now);
                    let generation = self.clients[&ip].generation;
                    self.feed(ip, generation, Input::Reply(r), now).await;
                }
            }
        }
    }

    fn new_session(&mut self, ip: Ipv4Addr, src: SocketAddr, now: Instant) {
        let security = if self.cfg.secure {
            Security::Expect(store::read_magic(&self.cfg.dump_dir, ip))
        } else {
            Security::Insecure
        };
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
        let c = self.client(ip, src);
        let dir = c
            .dir
            .get_or_insert_with(|| plan_crash_dir(&root, ip))
            .clone();
        c.reply_to = src;
        c.generation = generation;
        c.session = Some(Session::new(ip, dir, security, admission, tuning, now));
        self.share_window();
    }

    /// Feeds one input to the client's session (if its generation matches) and performs the
    /// resulting actions. Returns true if the session asked to be restarted.
    async fn feed(
        &mut self,
        ip: Ipv4Addr,
        generation: u64,
        input: Input<'_>,
        now: Instant,
    ) -> bool {
        let mut actions = std::mem::take(&mut self.actions);
        actions.clear();
        if let Some(c) = self.clients.get_mut(&ip)
            && c.generation == generation
            && let Some(s) = c.session.as_mut()
        {
            s.handle_into(input, now, &mut actions);
        }
        let restart = self.perform(ip, &mut actions).await;
        self.actions = actions;
        restart
    }

    async fn on_tick(&mut self, now: Instant) {
        let console = self.console.tick(now);
        self.handle_console_events(console);
        let _ = self.console_store.tick(chrono::Utc::now());
        let ips: Vec<(Ipv4Addr, u64)> = self
            .clients
            .iter()
            .filter(|(_, c)| c.session.is_some())
            .map(|(ip, c)| (*ip, c.generation))
            .collect();
        for (ip, generation) in ips {
            self.feed(ip, generation, Input::Tick, now).await;
        }
        self.share_window();
        // A host that only streams console logs keeps its directory but not an idle thread.
        for c in self.clients.values_mut() {
            if c.writer.is_some()
                && c.session.is_none()
                && now.saturating_duration_since(c.last_op) > WRITER_IDLE
            {
                c.writer = None;
            }
        }
        self.threads.retain(|t| !t.is_finished());
    }

    async fn perform(&mut self, ip: Ipv4Addr, actions: &mut Vec<Action>) -> bool {
        let mut restart = false;
        for a in actions.drain(..) {
            match a {
                Action::Send(req) => {
                    let Some(to) = self.clients.get(&ip).map(|c| c.reply_to) else {
                        continue;
                    };
                    if let Err(e) = self.sock.send_to(&req.encode(), to).await {
                        tracing::warn!("send to netdump client {to} failed: {e}");
                    }
                }
                Action::OpenDump(h) => self.send_op(ip, Op::Open(h)),
                Action::WritePage { pfn, data } => self.send_op(ip, Op::Page { pfn, data }),
                Action::CheckSpace { need } => {
                    let generation = self.clients.get(&ip).map_or(0, |c| c.generation);
                    if self.cfg.space_check {
                        self.send_op(ip, Op::CheckSpace { need, generation });
                    } else {
                        let _ = self.space_tx.send((ip, generation, true));
                    }
                }
                Action::FinishDump { complete } => self.send_op(ip, Op::Finish { complete }),
                Action::RunHook { name, args } => self.send_op(ip, Op::Hook { name, args }),
                Action::Emit { kind, detail } => {
                    let dir = self
                        .clients
                        .get(&ip)
                        .and_then(|c| c.dir.clone())
                        .unwrap_or_else(|| self.cfg.dump_dir.clone());
                    let e = Event::now(kind, ip.to_string(), &dir, detail);
                    self.send_op(ip, Op::Event(e));
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
    fn end_session(&mut self, ip: Ipv4Addr) {
        if let Some(c) = self.clients.get_mut(&ip) {
            c.session = None;
            c.writer = None;
            c.dir = None;
            c.log_cursor.reset();
        }
    }

    /// Queues file work for the client's current directory, creating it and its writer thread
    /// on first use.
    fn send_op(&mut self, ip: Ipv4Addr, op: Op) {
        let root = self.cfg.dump_dir.clone();
        let hook_timeout = self.cfg.hook_timeout;
        let space_check = self.cfg.space_check;
        let space_tx = self.space_tx.clone();
        let events = self.events.clone();
        let Some(c) = self.clients.get_mut(&ip) else {
            return;
        };
        if c.writer.is_none() {
            let dir = c
                .dir
                .get_or_insert_with(|| plan_crash_dir(&root, ip))
                .clone();
            if let Err(e) = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
            {
                tracing::error!(
                    "Error making crashdump directory {}: {e} (check the dump dir's owner and \
                     free space)",
                    dir.display()
                );
                return;
            }
            let (tx, rx) = std_mpsc::channel();
            let ctx = WriterCtx {
                ip,
                root,
                dir,
                hook_timeout,
                space_check,
                space_tx,
                events,
            };
            match std::thread::Builder::new()
                .name(format!("writer-{ip}"))
                .spawn(move || writer_main(ctx, rx))
            {
                Ok(h) => self.threads.push(h),
                Err(e) => {
                    tracing::error!("cannot start writer thread for {ip}: {e}");
                    return;
                }
            }
            c.writer = Some(Writer { tx });
        }
        if let Some(w) = &c.writer {
            c.last_op = Instant::now();
            let _ = w.tx.send(op);
        }
    }

    /// Plain or extended netconsole text (not a netdump frame): reassembled and ordered by the
    /// collector, then written to `<dumpdir>/console/<ip>.log`; a crash in the stream creates a
    /// crash record and an `events.jsonl` line (receiver::console). IO errors are logged and
    /// counted there, never fatal.
    fn on_console_datagram(&mut self, src: SocketAddr, data: &[u8], now: Instant) {
        let events = self.console.ingest(src.ip(), data, now);
        self.handle_console_events(events);
    }

    fn handle_console_events(
        &mut self,
        events: Vec<(std::net::IpAddr, crate::receiver::netconsole::ConsoleEvent)>,
    ) {
        let wall = chrono::Utc::now();
        for (ip, ev) in events {
            let _ = self.console_store.handle(ip, ev, wall);
        }
    }
}

use std::os::unix::fs::DirBuilderExt;

/// Chooses `<root>/<ip>-<time>` (with a `.N` suffix if taken); created later, on first write.
fn plan_crash_dir(root: &Path, ip: Ipv4Addr) -> PathBuf {
    let base = store::crash_dir_name(ip, chrono::Local::now());
    let mut p = root.join(&base);
    let mut n = 1;
    while p.exists() {
        p = root.join(format!("{base}.{n}"));
        n += 1;
    }
    p
}

fn enlarge_rcvbuf(sock: &std::net::UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(sock, sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = setsockopt(sock, sockopt::RcvBuf, &RCVBUF);
    }
}

/// Events the receiver emits, for callers that want to wait on them.
pub fn dump_events(dump_dir: &Path) -> Vec<Event> {
    std::fs::read_to_string(dump_dir.join("events.jsonl"))
        .map(|t| EventLog::parse(&t))
        .unwrap_or_default()
}

/// True if an event of `kind` for `host` is in `<dump_dir>/events.jsonl`.
pub fn has_event(dump_dir: &Path, host: &str, kind: EventKind) -> bool {
    dump_events(dump_dir)
        .iter()
        .any(|e| e.host == host && e.event == kind)
}
