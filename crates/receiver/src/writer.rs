//! The receiver's file IO, off the packet loop (docs/receiver.md, "Nothing blocks the loop"):
//!
//! - [`Writer`]: one thread per client directory (netlog `log`, `vmcore-incomplete`, hooks,
//!   space checks), fed in order. Pages are counted in `pages` so the session can stop
//!   requesting more when the disk is slow; other work has a bounded queue. A failed write
//!   ends that dump as failed (reported back with its reason), never the receiver.
//! - [`EventSink`]: one thread appending to `events.jsonl` (and rewriting the stats file);
//!   a full queue or a failing file only costs events, counted.
//! - [`ConsoleSink`]: one thread owning the console logs (receiver::console).
//!
//! Every file is opened non-blocking, without following links, and must be a regular file
//! (receiver::files), so a FIFO or device planted in the dump dir cannot park a thread.

use std::io;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self as std_mpsc, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::console::{ConsoleConfig, ConsoleStore};
use super::events::{Event, EventKind, append_event};
use super::limits::{Caps, DirBudget, Stats};
use super::store::{self, DumpFile, LogFile};
use netdump_proto::netconsole::ConsoleEvent;
use netdump_proto::vmcore::CoreHeader;

/// File work for one client directory, done in order.
#[derive(Debug)]
pub enum Op {
    Log(Vec<u8>),
    Open {
        header: CoreHeader,
        generation: u64,
    },
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
    /// Forwarded to the events file after the file work queued before it (so `dump_complete`
    /// is written only once `vmcore` exists; turned into `dump_failed` if the dump failed).
    Event(Event),
    CheckSpace {
        need: u64,
        generation: u64,
    },
}

/// What a writer tells the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Space {
        ip: IpAddr,
        generation: u64,
        ok: bool,
    },
    Failed {
        ip: IpAddr,
        generation: u64,
        reason: String,
    },
}

/// Milliseconds since `epoch()`; 0 means idle.
fn epoch() -> Instant {
    static E: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    Instant::now().duration_since(epoch()).as_millis() as u64 + 1
}

/// Handle of one host's writer thread.
pub struct Writer {
    tx: std_mpsc::Sender<Op>,
    /// Pages queued, not yet written.
    pages: Arc<AtomicUsize>,
    /// Other ops queued.
    others: Arc<AtomicUsize>,
    busy_since: Arc<AtomicU64>,
    pub dir: PathBuf,
    pub thread: JoinHandle<()>,
    pub reported_stall: bool,
}

/// What a writer thread needs.
pub struct WriterCtx {
    pub ip: IpAddr,
    pub root: PathBuf,
    pub dir: PathBuf,
    pub hook_timeout: Duration,
    pub space_check: bool,
    pub reports: mpsc::UnboundedSender<Report>,
    pub events: EventSink,
    pub stats: Arc<Stats>,
    pub caps: Caps,
}

impl Writer {
    pub fn spawn(ctx: WriterCtx) -> io::Result<Writer> {
        let (tx, rx) = std_mpsc::channel();
        let pages = Arc::new(AtomicUsize::new(0));
        let others = Arc::new(AtomicUsize::new(0));
        let busy_since = Arc::new(AtomicU64::new(0));
        let dir = ctx.dir.clone();
        let (p, o, b) = (pages.clone(), others.clone(), busy_since.clone());
        let thread = std::thread::Builder::new()
            .name(format!("writer-{}", store::host_name(ctx.ip)))
            .stack_size(256 * 1024)
            .spawn(move || writer_main(ctx, rx, p, o, b))?;
        Ok(Writer {
            tx,
            pages,
            others,
            busy_since,
            dir,
            thread,
            reported_stall: false,
        })
    }

    /// Queues `op`. Pages and dump control always go in (their number is bounded by the
    /// session's backlog check); other work is dropped (false) when `limit` ops wait already.
    pub fn send(&self, op: Op, limit: usize) -> bool {
        match op {
            Op::Page { .. } => {
                self.pages.fetch_add(1, Ordering::Relaxed);
            }
            Op::Log(_) | Op::Hook { .. } => {
                if self.others.load(Ordering::Relaxed) >= limit {
                    return false;
                }
                self.others.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.others.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.tx.send(op).is_ok()
    }

    /// Pages queued and not yet written.
    pub fn page_backlog(&self) -> usize {
        self.pages.load(Ordering::Relaxed)
    }

    /// Nothing queued and nothing in progress.
    pub fn is_idle(&self) -> bool {
        self.pages.load(Ordering::Relaxed) == 0
            && self.others.load(Ordering::Relaxed) == 0
            && self.busy_since.load(Ordering::Relaxed) == 0
    }

    /// How long the current op has been running, if one is.
    pub fn busy_for(&self) -> Option<Duration> {
        let b = self.busy_since.load(Ordering::Relaxed);
        (b != 0).then(|| Duration::from_millis(now_ms().saturating_sub(b)))
    }
}

/// Creates the client's directory (0700) unless it exists as a real directory.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            match std::fs::symlink_metadata(dir) {
                Ok(m) if m.is_dir() => Ok(()),
                _ => Err(io::Error::other(format!(
                    "{} exists and is not a directory (remove it)",
                    dir.display()
                ))),
            }
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "Error making crashdump directory {}: {e} (check the dump dir's owner and free \
                 space)",
                dir.display()
            ),
        )),
    }
}

fn writer_main(
    ctx: WriterCtx,
    rx: std_mpsc::Receiver<Op>,
    pages: Arc<AtomicUsize>,
    others: Arc<AtomicUsize>,
    busy_since: Arc<AtomicU64>,
) {
    let mut log: Option<LogFile> = None;
    let mut log_failed = false;
    let mut dump: Option<DumpFile> = None;
    let mut generation = 0u64;
    // Why the current dump failed (set by a failed open, page write or finish).
    let mut failed: Option<String> = None;
    let mut dir_ok = false;
    let host = store::host_name(ctx.ip);
    while let Ok(op) = rx.recv() {
        busy_since.store(now_ms(), Ordering::Relaxed);
        let is_page = matches!(op, Op::Page { .. });
        match op {
            Op::Log(data) => {
                if log.is_none() && !log_failed {
                    let r = if dir_ok { Ok(()) } else { ensure_dir(&ctx.dir) };
                    match r.and_then(|()| LogFile::open(&ctx.dir, ctx.caps.netlog_log_max)) {
                        Ok(f) => {
                            dir_ok = true;
                            log = Some(f);
                        }
                        Err(e) => {
                            // The console log is not the dump: note it, do not touch the dump.
                            log_failed = true;
                            tracing::error!("netdump client {host}: netlog not kept: {e}");
                        }
                    }
                }
                if let Some(l) = log.as_mut() {
                    match l.append(&data) {
                        Ok(true) => {}
                        Ok(false) => Stats::add(&ctx.stats.netlog_bytes_capped, data.len() as u64),
                        Err(e) => {
                            tracing::error!(
                                "netdump client {host}: writing {}/log failed: {e}",
                                ctx.dir.display()
                            );
                            log = None;
                            log_failed = true;
                        }
                    }
                }
            }
            Op::Open {
                header,
                generation: g,
            } => {
                generation = g;
                failed = None;
                let r = if dir_ok { Ok(()) } else { ensure_dir(&ctx.dir) };
                match r.and_then(|()| DumpFile::create(&ctx.dir, header)) {
                    Ok(d) => {
                        dir_ok = true;
                        dump = Some(d);
                    }
                    Err(e) => fail(&ctx, generation, &mut failed, e.to_string()),
                }
            }
            Op::Page { pfn, data } => {
                if failed.is_none()
                    && let Some(d) = dump.as_mut()
                {
                    match d.write_page(pfn, &data) {
                        Ok(()) => Stats::inc(&ctx.stats.pages_written),
                        Err(e) => fail(
                            &ctx,
                            generation,
                            &mut failed,
                            format!("writing page {pfn} to {}: {e}", ctx.dir.display()),
                        ),
                    }
                }
            }
            Op::Finish { complete } => {
                if let Some(d) = dump.take() {
                    let ok = complete && failed.is_none();
                    match d.finish(ok) {
                        Ok(p) => tracing::info!("netdump client {host}: closed {}", p.display()),
                        Err(e) => fail(
                            &ctx,
                            generation,
                            &mut failed,
                            format!("closing the vmcore in {}: {e}", ctx.dir.display()),
                        ),
                    }
                }
            }
            Op::Hook { name, args } => {
                if store::running_hooks() >= ctx.caps.max_running_hooks {
                    Stats::inc(&ctx.stats.hooks_running_cap);
                } else {
                    let _ = store::spawn_hook(&ctx.root, name, &args, ctx.hook_timeout);
                }
            }
            Op::Event(mut e) => {
                if let Some(why) = &failed
                    && e.event == EventKind::DumpComplete
                {
                    e.event = EventKind::DumpFailed;
                    e.detail = Some(why.clone());
                }
                if e.event == EventKind::DumpComplete
                    && let Some((title, signature)) = store::triage_log(&ctx.dir)
                {
                    e.title = Some(title);
                    e.signature = Some(signature);
                }
                ctx.events.send(e);
            }
            Op::CheckSpace {
                need,
                generation: g,
            } => {
                let ok = !ctx.space_check
                    || store::check_space(&ctx.root, ctx.ip, &ctx.dir, need, ctx.hook_timeout);
                let _ = ctx.reports.send(Report::Space {
                    ip: ctx.ip,
                    generation: g,
                    ok,
                });
            }
        }
        if is_page {
            pages.fetch_sub(1, Ordering::Relaxed);
        } else {
            others.fetch_sub(1, Ordering::Relaxed);
        }
        busy_since.store(0, Ordering::Relaxed);
    }
    // Channel closed (session over or shutdown): DumpFile's Drop flushes; vmcore-incomplete
    // stays as it is.
}

fn fail(ctx: &WriterCtx, generation: u64, failed: &mut Option<String>, reason: String) {
    if failed.is_some() {
        return;
    }
    Stats::inc(&ctx.stats.write_failures);
    tracing::error!(
        "netdump client {}: {reason} — this dump fails; vmcore-incomplete is kept (check free \
         space and permissions of the dump dir)",
        store::host_name(ctx.ip)
    );
    *failed = Some(reason.clone());
    let _ = ctx.reports.send(Report::Failed {
        ip: ctx.ip,
        generation,
        reason,
    });
}

/// Work for the events thread.
enum EventJob {
    Event(Event),
    /// Rewrite `<dumpdir>/receiver-stats.json` with this text.
    Stats(String),
}

/// Appends events from any thread without blocking it (bounded queue, drops counted).
#[derive(Clone)]
pub struct EventSink {
    tx: SyncSender<EventJob>,
    stats: Arc<Stats>,
}

/// The stats file `provision receiver --stats` reads.
pub const STATS_FILE: &str = "receiver-stats.json";

impl EventSink {
    pub fn spawn(
        dump_dir: &Path,
        queue: usize,
        stats: Arc<Stats>,
    ) -> io::Result<(EventSink, JoinHandle<()>)> {
        let (tx, rx) = std_mpsc::sync_channel::<EventJob>(queue.max(1));
        let path = dump_dir.join("events.jsonl");
        let root = dump_dir.to_path_buf();
        let st = stats.clone();
        let t = std::thread::Builder::new()
            .name("events".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut last_err: Option<Instant> = None;
                while let Ok(job) = rx.recv() {
                    let r = match job {
                        EventJob::Event(e) => append_event(&path, &e).inspect_err(|_| {
                            Stats::inc(&st.events_failed);
                        }),
                        EventJob::Stats(text) => write_stats_file(&root, &text),
                    };
                    if let Err(e) = r
                        && last_err.is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                    {
                        last_err = Some(Instant::now());
                        tracing::error!(
                            "events: {e} (events are counted as failed; dumps are not affected; \
                             fix the file's owner/type)"
                        );
                    }
                }
            })?;
        Ok((EventSink { tx, stats }, t))
    }

    pub fn send(&self, e: Event) {
        match self.tx.try_send(EventJob::Event(e)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => Stats::inc(&self.stats.events_queue_full),
            Err(TrySendError::Disconnected(_)) => Stats::inc(&self.stats.events_failed),
        }
    }

    pub fn write_stats(&self, text: String) {
        let _ = self.tx.try_send(EventJob::Stats(text));
    }
}

/// Writes the stats file atomically (temp file opened exclusively, renamed over).
fn write_stats_file(root: &Path, text: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = root.join(format!(".{STATS_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(
            (nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_CLOEXEC)
                .bits(),
        )
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, root.join(STATS_FILE))
}

/// Work for the console thread.
pub enum ConsoleJob {
    Events(Vec<(IpAddr, ConsoleEvent)>),
    Flush,
}

/// The console logs' thread: owns the [`ConsoleStore`], flushes on its own timer.
pub struct ConsoleSink {
    tx: SyncSender<ConsoleJob>,
    stats: Arc<Stats>,
}

impl ConsoleSink {
    pub fn spawn(
        dump_dir: &Path,
        cfg: ConsoleConfig,
        caps: &Caps,
        stats: Arc<Stats>,
        budget: Arc<Mutex<DirBudget>>,
    ) -> io::Result<(ConsoleSink, JoinHandle<()>)> {
        let (tx, rx) = std_mpsc::sync_channel::<ConsoleJob>(caps.console_queue.max(1));
        let mut store = ConsoleStore::new(dump_dir, cfg);
        store.set_dir_budget(budget, stats.clone());
        let t = std::thread::Builder::new()
            .name("console".into())
            .stack_size(512 * 1024)
            .spawn(move || {
                let tick = Duration::from_millis(250);
                let mut next = Instant::now() + tick;
                loop {
                    let wait = next.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok(ConsoleJob::Events(batch)) => {
                            let wall = chrono::Utc::now();
                            for (ip, ev) in batch {
                                let _ = store.handle(ip, ev, wall);
                            }
                        }
                        Ok(ConsoleJob::Flush) => {
                            let _ = store.flush();
                        }
                        Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                    if Instant::now() >= next {
                        let _ = store.tick(chrono::Utc::now());
                        next = Instant::now() + tick;
                    }
                }
                if let Err(e) = store.flush() {
                    tracing::warn!("flushing console logs failed: {e}");
                }
            })?;
        Ok((ConsoleSink { tx, stats }, t))
    }

    /// Hands a batch over; dropped and counted when the console thread is behind.
    pub fn send(&self, batch: Vec<(IpAddr, ConsoleEvent)>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        match self.tx.try_send(ConsoleJob::Events(batch)) {
            Ok(()) => {}
            Err(_) => Stats::add(&self.stats.console_queue_full, n),
        }
    }
}
