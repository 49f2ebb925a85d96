//! One crashing netdump client, as a pure state machine (docs/netdump-wire.md, "A dump, step by step"):
//! `handle(input, now) -> actions`. No sockets, files or clocks: the server feeds it decoded
//! replies and timer ticks and performs the actions it returns, in order.
//!
//! Phases: handshake (ACK with from=5 + PAGE_SIZE/NR_PAGES/REGS queries, repeated on START and
//! on timeout) → space check → windowed `SEND_MEM` pipeline (nr = pfn) → `SHOW_STATE` once, wait
//! while LOG flows → `REBOOT` repeated. Over the concurrency limit or out of space the memory phase
//! is skipped; with a bad magic in secure mode the client is left alone.
//!
//! The session never blocks on the disk: the server tells it how many written pages are still
//! queued (`set_write_backlog`); above `write_backlog_max` it stops requesting pages (the protocol
//! is pull-based, so the client simply waits) and resumes when the writer catches up. Every wait
//! has a deadline, and [`Session::poll_timeout`] says when the session next needs a `Tick`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::event::EventKind;
use crate::vmcore::{self, CoreHeader, CoreParams};
use crate::wire::{self, Reply, Request, StartInfo, cmd, code};

/// Timers, limits and options of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// `SEND_MEM` pages in flight.
    pub window: usize,
    /// Retransmission timeout bounds for page requests (adapted to the measured RTT).
    pub min_rto: Duration,
    pub max_rto: Duration,
    /// Re-send ACK and queries when the handshake gets no answer this long.
    pub handshake_timeout: Duration,
    /// Requests of one page before the dump is declared failed.
    pub max_page_tries: u32,
    /// Client silent this long → give up (dump stays vmcore-incomplete).
    pub silence_timeout: Duration,
    /// Retransmit a page when this many later requests were already answered (client is FIFO).
    pub reorder_gap: u64,
    /// After SHOW_STATE: move on to reboot once no LOG arrived for this long.
    pub log_idle_timeout: Duration,
    /// SHOW_STATE unanswered (no reply, no log) this long → resend (at most `show_state_tries`).
    pub show_state_timeout: Duration,
    pub show_state_tries: u32,
    pub reboot_count: u32,
    pub reboot_interval: Duration,
    /// A rejected client (bad magic) is ignored this long before its START is looked at again.
    pub reject_hold: Duration,
    /// Leave all-zero pages as sparse holes.
    pub skip_zero: bool,
    /// A session whose client answered nothing (e.g. a spoofed START) is dropped after this.
    pub unconfirmed_timeout: Duration,
    /// Handshake datagram rounds sent to a client that has not answered yet (the first one
    /// included), each `handshake_timeout` × 2^n after the previous.
    pub unconfirmed_rounds: u32,
    /// Longest wait for the free-space check (the netdump-nospace hook included).
    pub space_timeout: Duration,
    /// Pages queued for the disk above which no more pages are requested.
    pub write_backlog_max: usize,
    /// Requests paused by a full write queue this long → the dump fails (the writer is stuck).
    pub write_stall_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            window: 128,
            min_rto: Duration::from_millis(20),
            max_rto: Duration::from_secs(1),
            handshake_timeout: Duration::from_millis(250),
            max_page_tries: 40,
            silence_timeout: Duration::from_secs(30),
            reorder_gap: 16,
            log_idle_timeout: Duration::from_secs(5),
            show_state_timeout: Duration::from_secs(3),
            show_state_tries: 3,
            reboot_count: 5,
            reboot_interval: Duration::from_secs(1),
            reject_hold: Duration::from_secs(30),
            skip_zero: false,
            unconfirmed_timeout: Duration::from_secs(5),
            unconfirmed_rounds: 3,
            space_timeout: Duration::from_secs(120),
            write_backlog_max: 1024,
            write_stall_timeout: Duration::from_secs(120),
        }
    }
}

/// Whether the START's magic must be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Insecure,
    /// Secure mode: the value of `<dumpdir>/magic/<ip>`, `None` if missing or unreadable.
    Expect(Option<u64>),
}

/// What the server allows this client (decided from the number of active dumps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Dump,
    /// Too many concurrent dumps: log, show_state, reboot; no memory dump.
    RebootOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    Reply(Reply<'a>),
    /// A netlog frame from this client (the server writes it; the session only watches activity).
    Log,
    /// Result of `Action::CheckSpace` (after netdump-nospace had its one chance).
    SpaceChecked {
        ok: bool,
    },
    /// Writing this session's dump failed (the reason names file and error).
    WriteFailed(&'a str),
    Tick,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(Request),
    /// Create `vmcore-incomplete` with this header.
    OpenDump(CoreHeader),
    WritePage {
        pfn: u32,
        data: Vec<u8>,
    },
    /// Check free space for `need` bytes, running netdump-nospace once if short.
    CheckSpace {
        need: u64,
    },
    /// Close the vmcore: extend to full length, rename to `vmcore` if complete.
    FinishDump {
        complete: bool,
    },
    RunHook {
        name: &'static str,
        args: Vec<String>,
    },
    Emit {
        kind: EventKind,
        detail: Option<String>,
    },
    Log {
        warn: bool,
        msg: String,
    },
    /// The client crashed again: the server ends this session and starts a new one from the
    /// START it just delivered.
    Restart,
    /// Session over; the server drops it.
    Close,
}

#[derive(Debug)]
struct InFlight {
    sent_at: Instant,
    seq: u64,
    tries: u32,
    got: u64,
    buf: Vec<u8>,
}

#[derive(Debug)]
enum Phase {
    Idle,
    Rejected {
        until: Instant,
    },
    Handshake {
        sent_at: Instant,
    },
    SpaceWait {
        header: CoreHeader,
        until: Instant,
    },
    Memory,
    ShowState {
        sent_at: Instant,
        last_activity: Instant,
        answered: bool,
        tries: u32,
    },
    Reboot {
        sent: u32,
        next_at: Instant,
    },
    Done,
}

/// Progress counters, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub nr_pages: u32,
    pub pages_written: u32,
    pub zero_pages: u32,
    pub hole_pages: u32,
    pub retransmits: u64,
    pub complete: bool,
}

pub struct Session {
    host: IpAddr,
    dir: PathBuf,
    security: Security,
    admission: Admission,
    t: Tuning,
    phase: Phase,
    start: StartInfo,
    magic: u64,
    page_size: Option<u32>,
    nr_pages: Option<u32>,
    regs: Option<Vec<u8>>,
    ctl_nr: u32,
    last_heard: Instant,
    last_start_ack: Option<Instant>,
    confirmed: bool,
    created: Instant,
    /// Handshake rounds sent so far.
    rounds: u32,
    /// When the last datagram answering a repeated START went out (at most one per second).
    last_start_reply: Option<Instant>,
    /// Crash event and netdump-crash hook already emitted.
    announced: bool,
    write_backlog: usize,
    paused_since: Option<Instant>,
    failed: bool,
    // memory phase
    inflight: HashMap<u32, InFlight>,
    next_pfn: u32,
    limit: u32,
    seq: u64,
    highest_answered: u64,
    srtt: Duration,
    dump_open: bool,
    progress: Progress,
}

const CTL_NR_BASE: u32 = 0xC000_0000;

impl Session {
    pub fn new(
        host: impl Into<IpAddr>,
        dir: PathBuf,
        security: Security,
        admission: Admission,
        tuning: Tuning,
        now: Instant,
    ) -> Session {
        Session {
            host: host.into().to_canonical(),
            dir,
            security,
            admission,
            t: tuning,
            phase: Phase::Idle,
            start: StartInfo::default(),
            magic: 0,
            page_size: None,
            nr_pages: None,
            regs: None,
            ctl_nr: CTL_NR_BASE,
            last_heard: now,
            last_start_ack: None,
            confirmed: false,
            created: now,
            rounds: 0,
            last_start_reply: None,
            announced: false,
            write_backlog: 0,
            paused_since: None,
            failed: false,
            inflight: HashMap::new(),
            next_pfn: 0,
            limit: 0,
            seq: 0,
            highest_answered: 0,
            srtt: Duration::from_millis(50),
            dump_open: false,
            progress: Progress::default(),
        }
    }

    pub fn host(&self) -> IpAddr {
        self.host
    }

    /// True once the client answered a request (its START was not a lone, possibly spoofed,
    /// datagram).
    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// Pages handed out in `WritePage` actions that the writer has not written yet.
    pub fn set_write_backlog(&mut self, pages: usize) {
        self.write_backlog = pages;
    }

    fn paused(&self) -> bool {
        self.write_backlog >= self.t.write_backlog_max.max(1)
    }

    /// When the session next needs an `Input::Tick` (None: only on input).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.t;
        match &self.phase {
            Phase::Idle | Phase::Done => None,
            Phase::Rejected { until } => Some(*until),
            Phase::Handshake { sent_at } => {
                let silence = if self.confirmed {
                    self.last_heard + t.silence_timeout
                } else {
                    self.created + t.unconfirmed_timeout
                };
                let resend = if self.confirmed || self.rounds < t.unconfirmed_rounds.max(1) {
                    Some(*sent_at + self.handshake_backoff())
                } else {
                    None
                };
                Some(resend.map_or(silence, |r| r.min(silence)))
            }
            Phase::SpaceWait { until, .. } => Some(*until),
            Phase::Memory => {
                if self.inflight.is_empty() {
                    // Paused by the writer: look at its backlog again soon (the stall deadline
                    // in memory_tick bounds the wait).
                    return Some(self.last_heard + t.min_rto);
                }
                let rto = self.rto();
                let tail = self.next_pfn >= self.limit;
                let mut at = self.last_heard + t.silence_timeout;
                for f in self.inflight.values() {
                    let backoff = if tail {
                        rto
                    } else {
                        rto * (1u32 << (f.tries - 1).min(5))
                    };
                    at = at.min(f.sent_at + backoff.min(t.max_rto));
                }
                if self.paused() && self.next_pfn < self.limit {
                    at = at.min(self.last_heard + t.min_rto);
                }
                Some(at)
            }
            Phase::ShowState {
                sent_at,
                last_activity,
                answered,
                ..
            } => {
                if *answered || last_activity > sent_at {
                    Some(*last_activity + t.log_idle_timeout)
                } else {
                    Some(*sent_at + t.show_state_timeout)
                }
            }
            Phase::Reboot { next_at, .. } => Some(*next_at),
        }
    }

    fn handshake_backoff(&self) -> Duration {
        if self.confirmed {
            self.t.handshake_timeout
        } else {
            self.t.handshake_timeout * (1u32 << self.rounds.saturating_sub(1).min(6))
        }
    }

    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// True while this session counts against `--concurrent` (admitted and not past memory).
    pub fn holds_dump_slot(&self) -> bool {
        self.admission == Admission::Dump
            && matches!(
                self.phase,
                Phase::Idle | Phase::Handshake { .. } | Phase::SpaceWait { .. } | Phase::Memory
            )
    }

    /// Changes the number of pages kept in flight (the server shares a global budget among
    /// concurrent dumps). Takes effect as replies free slots.
    pub fn set_window(&mut self, pages: usize) {
        self.t.window = pages.max(1);
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    pub fn handle(&mut self, input: Input<'_>, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.handle_into(input, now, &mut out);
        out
    }

    /// Like `handle`, appending to a caller-owned buffer (no allocation per packet).
    pub fn handle_into(&mut self, input: Input<'_>, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Done) {
            return;
        }
        match input {
            Input::Reply(r) if r.code == code::START_NETDUMP => self.on_start(&r, now, out),
            Input::Reply(r) => {
                if matches!(self.phase, Phase::Idle | Phase::Rejected { .. }) {
                    return;
                }
                self.last_heard = now;
                self.confirm(out);
                self.on_reply(&r, now, out);
            }
            Input::Log => {
                if matches!(self.phase, Phase::Idle | Phase::Rejected { .. }) {
                    return;
                }
                self.last_heard = now;
                if let Phase::ShowState {
                    ref mut last_activity,
                    ..
                } = self.phase
                {
                    *last_activity = now;
                    self.confirm(out);
                }
            }
            Input::SpaceChecked { ok } => self.on_space(ok, now, out),
            Input::WriteFailed(why) => self.on_write_failed(why, now, out),
            Input::Tick => self.on_tick(now, out),
        }
    }

    fn confirm(&mut self, out: &mut Vec<Action>) {
        if !self.confirmed {
            self.confirmed = true;
            self.announce(out);
        }
    }

    /// The crash event and netdump-crash hook: at START when its magic was verified, else once
    /// the client answered (a lone spoofed START must not produce events or run hooks).
    fn announce(&mut self, out: &mut Vec<Action>) {
        if self.announced || matches!(self.phase, Phase::Idle | Phase::Rejected { .. }) {
            return;
        }
        self.announced = true;
        let info = self.start;
        self.emit(
            out,
            EventKind::Crash,
            Some(format!(
                "netdump START: machine {}, version {}{}",
                info.machine,
                info.version,
                if info.legacy { ", legacy client" } else { "" }
            )),
        );
        self.hook(out, "netdump-crash");
        if self.admission == Admission::RebootOnly {
            self.emit(
                out,
                EventKind::DumpFailed,
                Some("too many concurrent dumps; no memory dump".into()),
            );
        }
    }

    fn on_write_failed(&mut self, why: &str, now: Instant, out: &mut Vec<Action>) {
        if !self.dump_open || self.failed {
            return;
        }
        self.fail_dump(out, &format!("writing the dump failed: {why}"));
        if matches!(self.phase, Phase::Memory) {
            self.enter_show_state(now, out);
        }
    }

    fn next_ctl_nr(&mut self) -> u32 {
        self.ctl_nr = self.ctl_nr.wrapping_add(1) | CTL_NR_BASE;
        self.ctl_nr
    }

    fn req(&mut self, command: u32, from: u32) -> Request {
        Request {
            magic: self.magic,
            nr: self.next_ctl_nr(),
            command,
            from,
            to: 0,
        }
    }

    fn emit(&self, out: &mut Vec<Action>, kind: EventKind, detail: Option<String>) {
        out.push(Action::Emit { kind, detail });
    }

    fn log(&self, out: &mut Vec<Action>, warn: bool, msg: String) {
        out.push(Action::Log { warn, msg });
    }

    fn hook(&self, out: &mut Vec<Action>, name: &'static str) {
        out.push(Action::RunHook {
            name,
            args: vec![self.host.to_string(), self.dir.display().to_string()],
        });
    }

    fn on_start(&mut self, r: &Reply<'_>, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Idle => {}
            Phase::Rejected { .. } | Phase::Done => return,
            Phase::Handshake { .. } => {
                // ACK lost: acknowledge again and repeat the missing queries — but a START
                // proves nothing (it may be spoofed): it neither extends the session's life
                // nor draws more than the bounded handshake rounds, at most one per second.
                if self.confirmed {
                    self.last_heard = now;
                    self.send_handshake(now, out);
                } else if self.rounds < self.t.unconfirmed_rounds.max(1)
                    && self.start_reply_due(now)
                {
                    self.send_handshake(now, out);
                }
                return;
            }
            Phase::ShowState { .. } if !self.confirmed => {
                if self.start_reply_due(now) {
                    self.send_ack(out);
                    let q = self.req(cmd::SHOW_STATE, 0);
                    out.push(Action::Send(q));
                }
                return;
            }
            Phase::SpaceWait { .. } => return,
            _ if !self.confirmed => return,
            _ => {
                // Still hearing replies → a late duplicate of the original START.
                if now.saturating_duration_since(self.last_heard) < Duration::from_secs(2) {
                    return;
                }
                self.log(
                    out,
                    true,
                    format!(
                        "netdump client {} sent START again mid-dump: it crashed again; \
                         starting a new dump",
                        self.host
                    ),
                );
                self.fail_dump(out, "client crashed again during the dump");
                self.phase = Phase::Done;
                out.push(Action::Restart);
                return;
            }
        }
        let info = StartInfo::parse(r);
        self.start = info;
        self.magic = info.magic.unwrap_or(0);
        self.last_heard = now;
        if let Security::Expect(expected) = self.security {
            let ok = matches!((expected, info.magic), (Some(e), Some(m)) if e == m);
            if !ok {
                let why = match (expected, info.magic) {
                    (None, _) => "no readable magic file <dumpdir>/magic/<ip> (push one with \
                                  `service netdump start` on the client, or run with --insecure)"
                        .to_string(),
                    (_, None) => "its START carries no netdump_magic (legacy client; run with \
                                  --insecure to accept it)"
                        .to_string(),
                    _ => "its START magic does not match <dumpdir>/magic/<ip> (restart netdump \
                          on the client to push a fresh magic)"
                        .to_string(),
                };
                self.log(
                    out,
                    true,
                    format!("netdump client {}: refusing dump: {why}", self.host),
                );
                self.phase = Phase::Rejected {
                    until: now + self.t.reject_hold,
                };
                return;
            }
        }
        let verified = matches!(self.security, Security::Expect(_));
        match self.admission {
            Admission::Dump => {
                self.log(
                    out,
                    false,
                    format!(
                        "netdump client {} crashed (machine {}); handshaking",
                        self.host, info.machine
                    ),
                );
                self.send_handshake(now, out);
            }
            Admission::RebootOnly => {
                self.log(
                    out,
                    true,
                    format!(
                        "Too many concurrent netdumps, ignoring dump from {}; collecting its \
                         state and rebooting it (raise --concurrent to dump more at once)",
                        self.host
                    ),
                );
                self.send_ack(out);
                self.enter_show_state(now, out);
            }
        }
        if verified {
            self.announce(out);
        }
    }

    /// Rate limit for answers to repeated STARTs of a client that has not answered yet.
    fn start_reply_due(&mut self, now: Instant) -> bool {
        let due = self
            .last_start_reply
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if due {
            self.last_start_reply = Some(now);
        }
        due
    }

    fn send_ack(&mut self, out: &mut Vec<Action>) {
        self.last_start_ack = None;
        let ack = self.req(cmd::START_NETDUMP_ACK, wire::SERVER_VERSION);
        out.push(Action::Send(ack));
    }

    fn send_handshake(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.send_ack(out);
        self.last_start_ack = Some(now);
        if self.page_size.is_none() {
            let q = self.req(cmd::GET_PAGE_SIZE, 0);
            out.push(Action::Send(q));
        }
        if self.nr_pages.is_none() {
            let q = self.req(cmd::GET_NR_PAGES, 0);
            out.push(Action::Send(q));
        }
        if self.regs.is_none() {
            let q = self.req(cmd::GET_REGS, 0);
            out.push(Action::Send(q));
        }
        self.rounds = self.rounds.saturating_add(1);
        self.phase = Phase::Handshake { sent_at: now };
    }

    fn resend_queries(&mut self, now: Instant, out: &mut Vec<Action>) {
        // The client may already be in its request loop (then the ACK only earns a harmless
        // REPLY_ERROR) or still handshaking (then the queries are discarded): send both.
        self.send_handshake(now, out);
    }

    fn on_reply(&mut self, r: &Reply<'_>, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Handshake { .. } => self.on_handshake_reply(r, now, out),
            Phase::Memory => self.on_memory_reply(r, now, out),
            Phase::ShowState {
                ref mut answered,
                ref mut last_activity,
                ..
            } if r.code == code::SHOW_STATE => {
                *answered = true;
                *last_activity = now;
            }
            _ => {}
        }
    }

    fn on_handshake_reply(&mut self, r: &Reply<'_>, now: Instant, out: &mut Vec<Action>) {
        match r.code {
            code::PAGE_SIZE => self.page_size = Some(r.info),
            code::NR_PAGES => self.nr_pages = Some(r.info),
            code::REGS => self.regs = Some(wire::regs_block(r.payload).to_vec()),
            _ => return,
        }
        let (Some(ps), Some(np), Some(regs)) = (self.page_size, self.nr_pages, self.regs.clone())
        else {
            return;
        };
        if !ps.is_power_of_two() || !(1024..=65536).contains(&ps) {
            self.log(
                out,
                true,
                format!(
                    "netdump client {} reports page size {ps}, not a power of two in 1 KiB..64 KiB; \
                     no memory dump",
                    self.host
                ),
            );
            self.emit(
                out,
                EventKind::DumpFailed,
                Some(format!("unsupported page size {ps}")),
            );
            self.enter_show_state(now, out);
            return;
        }
        self.progress.nr_pages = np;
        let header = vmcore::build(&CoreParams {
            machine: self.start.machine,
            page_size: ps,
            nr_pages: np,
            page_offset: self.start.page_offset.unwrap_or(0),
            task_struct: self.start.task_struct.unwrap_or(0),
            regs,
        });
        out.push(Action::CheckSpace {
            need: header.file_len,
        });
        self.phase = Phase::SpaceWait {
            header,
            until: now + self.t.space_timeout,
        };
    }

    fn on_space(&mut self, ok: bool, now: Instant, out: &mut Vec<Action>) {
        let Phase::SpaceWait { .. } = self.phase else {
            return;
        };
        let Phase::SpaceWait { header, .. } = std::mem::replace(&mut self.phase, Phase::Memory)
        else {
            unreachable!()
        };
        if !ok {
            self.log(
                out,
                true,
                format!(
                    "No space for dump image of {} ({} bytes needed), even after calling \
                     netdump-nospace; keeping only the log",
                    self.host, header.file_len
                ),
            );
            self.emit(
                out,
                EventKind::DumpFailed,
                Some(format!("no space for {} bytes", header.file_len)),
            );
            self.enter_show_state(now, out);
            return;
        }
        let np = self.nr_pages.unwrap_or(0);
        out.push(Action::OpenDump(header));
        self.dump_open = true;
        self.emit(
            out,
            EventKind::DumpStarted,
            Some(format!(
                "{np} pages of {} bytes",
                self.page_size.unwrap_or(0)
            )),
        );
        self.limit = np;
        self.next_pfn = 0;
        self.last_heard = now;
        self.fill_window(now, out);
        self.check_memory_done(now, out);
    }

    fn send_page_req(&mut self, pfn: u32, now: Instant, out: &mut Vec<Action>) -> u64 {
        self.seq += 1;
        out.push(Action::Send(Request {
            magic: self.magic,
            nr: pfn,
            command: cmd::SEND_MEM,
            from: pfn,
            to: 0,
        }));
        let _ = now;
        self.seq
    }

    fn fill_window(&mut self, now: Instant, out: &mut Vec<Action>) {
        let ps = self.page_size.unwrap_or(4096) as usize;
        if self.paused() {
            self.paused_since.get_or_insert(now);
            return;
        }
        self.paused_since = None;
        while self.inflight.len() < self.t.window.max(1) && self.next_pfn < self.limit {
            let pfn = self.next_pfn;
            self.next_pfn += 1;
            let seq = self.send_page_req(pfn, now, out);
            self.inflight.insert(
                pfn,
                InFlight {
                    sent_at: now,
                    seq,
                    tries: 1,
                    got: 0,
                    buf: Vec::with_capacity(ps),
                },
            );
        }
    }

    fn rto(&self) -> Duration {
        (self.srtt * 4).clamp(self.t.min_rto, self.t.max_rto)
    }

    fn on_memory_reply(&mut self, r: &Reply<'_>, now: Instant, out: &mut Vec<Action>) {
        let pfn = r.nr;
        let ps = self.page_size.unwrap_or(4096) as usize;
        match r.code {
            code::MEM => {
                let Some(f) = self.inflight.get_mut(&pfn) else {
                    return; // late duplicate or stray
                };
                let off = r.info as usize;
                if !off.is_multiple_of(wire::CHUNK)
                    || off >= ps
                    || r.payload.len() != wire::CHUNK.min(ps - off)
                {
                    return;
                }
                self.highest_answered = self.highest_answered.max(f.seq);
                let bit = 1u64 << (off / wire::CHUNK);
                if f.got & bit != 0 {
                    return;
                }
                if f.buf.len() < ps {
                    f.buf.resize(ps, 0);
                }
                f.buf[off..off + r.payload.len()].copy_from_slice(r.payload);
                f.got |= bit;
                let all = if ps / wire::CHUNK >= 64 {
                    u64::MAX
                } else {
                    (1u64 << (ps / wire::CHUNK)) - 1
                };
                if f.got == all {
                    let f = self.inflight.remove(&pfn).expect("present");
                    if f.tries == 1 {
                        let sample = now.saturating_duration_since(f.sent_at);
                        self.srtt = (self.srtt * 7 + sample) / 8;
                    }
                    if self.t.skip_zero && f.buf.iter().all(|&b| b == 0) {
                        self.progress.zero_pages += 1;
                    } else {
                        self.progress.pages_written += 1;
                        out.push(Action::WritePage { pfn, data: f.buf });
                    }
                    self.fill_window(now, out);
                    self.check_memory_done(now, out);
                }
            }
            code::RESERVED => {
                let Some(f) = self.inflight.remove(&pfn) else {
                    return;
                };
                self.highest_answered = self.highest_answered.max(f.seq);
                let next = r.info;
                if next == 0 || next <= pfn {
                    self.truncate(pfn + 1);
                } else {
                    let next = next.min(self.limit);
                    self.inflight.retain(|&p, _| !(p > pfn && p < next));
                    self.next_pfn = self.next_pfn.max(next);
                }
                self.fill_window(now, out);
                self.check_memory_done(now, out);
            }
            code::ERROR => {
                if !self.inflight.contains_key(&pfn) {
                    return;
                }
                self.log(
                    out,
                    true,
                    format!(
                        "netdump client {} answered ERROR for pfn {pfn}: taking it as the end of \
                         memory",
                        self.host
                    ),
                );
                self.truncate(pfn);
                self.check_memory_done(now, out);
            }
            _ => {}
        }
    }

    /// No RAM at or above `end`.
    fn truncate(&mut self, end: u32) {
        self.limit = self.limit.min(end);
        self.inflight.retain(|&p, _| p < end);
        self.next_pfn = self.next_pfn.min(self.limit);
    }

    fn check_memory_done(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Memory)
            || self.next_pfn < self.limit
            || !self.inflight.is_empty()
        {
            return;
        }
        self.progress.complete = true;
        self.progress.hole_pages = self
            .progress
            .nr_pages
            .saturating_sub(self.progress.pages_written + self.progress.zero_pages);
        self.dump_open = false;
        out.push(Action::FinishDump { complete: true });
        let p = self.progress;
        self.log(
            out,
            false,
            format!(
                "netdump client {}: all pages received ({} pages written, {} zero, {} holes, {} \
                 retransmits)",
                self.host, p.pages_written, p.zero_pages, p.hole_pages, p.retransmits
            ),
        );
        self.emit(
            out,
            EventKind::DumpComplete,
            Some(format!("{} pages", p.nr_pages)),
        );
        self.enter_show_state(now, out);
    }

    fn fail_dump(&mut self, out: &mut Vec<Action>, why: &str) {
        self.failed = true;
        if self.dump_open {
            self.dump_open = false;
            out.push(Action::FinishDump { complete: false });
        }
        self.log(
            out,
            true,
            format!(
                "netdump client {}: dump failed: {why}; vmcore-incomplete kept",
                self.host
            ),
        );
        self.emit(out, EventKind::DumpFailed, Some(why.to_string()));
    }

    fn enter_show_state(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.inflight.clear();
        let q = self.req(cmd::SHOW_STATE, 0);
        out.push(Action::Send(q));
        self.phase = Phase::ShowState {
            sent_at: now,
            last_activity: now,
            answered: false,
            tries: 1,
        };
    }

    fn enter_reboot(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.hook(out, "netdump-reboot");
        let q = self.req(cmd::REBOOT, 0);
        out.push(Action::Send(q));
        self.phase = Phase::Reboot {
            sent: 1,
            next_at: now + self.t.reboot_interval,
        };
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Idle | Phase::Done => {}
            Phase::SpaceWait { until, .. } => {
                if now >= until {
                    self.log(
                        out,
                        true,
                        format!(
                            "netdump client {}: the free-space check did not answer within {} s",
                            self.host,
                            self.t.space_timeout.as_secs()
                        ),
                    );
                    self.on_space(false, now, out);
                }
            }
            Phase::Rejected { until } => {
                if now >= until {
                    self.phase = Phase::Done;
                    out.push(Action::Close);
                }
            }
            Phase::Handshake { sent_at } => {
                if !self.confirmed {
                    if now.saturating_duration_since(self.created) >= self.t.unconfirmed_timeout {
                        self.log(
                            out,
                            false,
                            format!(
                                "netdump client {} answered none of {} handshake rounds; \
                                 dropping the session (a lone START may be spoofed)",
                                self.host, self.rounds
                            ),
                        );
                        self.phase = Phase::Done;
                        out.push(Action::Close);
                    } else if self.rounds < self.t.unconfirmed_rounds.max(1)
                        && now.saturating_duration_since(sent_at) >= self.handshake_backoff()
                    {
                        self.resend_queries(now, out);
                    }
                } else if now.saturating_duration_since(self.last_heard) > self.t.silence_timeout {
                    self.log(
                        out,
                        true,
                        format!(
                            "Got too many timeouts in handshaking, ignoring client {}",
                            self.host
                        ),
                    );
                    self.emit(
                        out,
                        EventKind::DumpFailed,
                        Some("handshake timed out".into()),
                    );
                    self.phase = Phase::Done;
                    out.push(Action::Close);
                } else if now.saturating_duration_since(sent_at) >= self.t.handshake_timeout {
                    self.resend_queries(now, out);
                }
            }
            Phase::Memory => self.memory_tick(now, out),
            Phase::ShowState {
                sent_at,
                last_activity,
                answered,
                tries,
            } => {
                let logs_seen = last_activity > sent_at;
                if answered || logs_seen {
                    if now.saturating_duration_since(last_activity) >= self.t.log_idle_timeout {
                        self.enter_reboot(now, out);
                    }
                } else if now.saturating_duration_since(sent_at) >= self.t.show_state_timeout {
                    if tries >= self.t.show_state_tries {
                        self.log(
                            out,
                            true,
                            format!(
                                "Got too many timeouts waiting for SHOW_STATUS for client {}, \
                                 rebooting it",
                                self.host
                            ),
                        );
                        self.enter_reboot(now, out);
                    } else {
                        let q = self.req(cmd::SHOW_STATE, 0);
                        out.push(Action::Send(q));
                        self.phase = Phase::ShowState {
                            sent_at: now,
                            last_activity: now,
                            answered,
                            tries: tries + 1,
                        };
                    }
                }
            }
            Phase::Reboot { sent, next_at } => {
                if now >= next_at {
                    if sent >= self.t.reboot_count {
                        self.phase = Phase::Done;
                        out.push(Action::Close);
                    } else {
                        let q = self.req(cmd::REBOOT, 0);
                        out.push(Action::Send(q));
                        self.phase = Phase::Reboot {
                            sent: sent + 1,
                            next_at: now + self.t.reboot_interval,
                        };
                    }
                }
            }
        }
    }

    fn memory_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.inflight.is_empty() {
            // Nothing asked of the client: its silence means nothing. Paused by the writer?
            self.last_heard = now;
            if let Some(p) = self.paused_since
                && self.paused()
                && now.saturating_duration_since(p) >= self.t.write_stall_timeout
            {
                let secs = self.t.write_stall_timeout.as_secs();
                self.fail_dump(
                    out,
                    &format!("the disk writer made no progress for {secs} s (stuck file system?)"),
                );
                self.enter_show_state(now, out);
                return;
            }
            self.fill_window(now, out);
            self.check_memory_done(now, out);
            return;
        }
        if now.saturating_duration_since(self.last_heard) > self.t.silence_timeout {
            let secs = self.t.silence_timeout.as_secs();
            self.fail_dump(out, &format!("client silent for more than {secs} s"));
            self.phase = Phase::Done;
            out.push(Action::Close);
            return;
        }
        let rto = self.rto();
        let gap = self.t.reorder_gap;
        let highest = self.highest_answered;
        let tail = self.next_pfn >= self.limit;
        let mut resend: Vec<u32> = Vec::new();
        for (&pfn, f) in &self.inflight {
            let overtaken = f.seq + gap < highest;
            // Exponential back-off per page, so a slow (not dead) client is not flooded; but
            // not at the tail of the dump, where no later replies can reveal a loss.
            let backoff = if tail {
                rto
            } else {
                rto * (1u32 << (f.tries - 1).min(5))
            };
            let timed_out = now.saturating_duration_since(f.sent_at) >= backoff.min(self.t.max_rto);
            if overtaken || timed_out {
                resend.push(pfn);
            }
        }
        if resend.is_empty() {
            return;
        }
        resend.sort_unstable();
        for pfn in resend {
            let tries = self.inflight[&pfn].tries;
            if tries >= self.t.max_page_tries {
                self.fail_dump(
                    out,
                    &format!("page {pfn} still missing after {tries} requests"),
                );
                self.enter_show_state(now, out);
                return;
            }
            let seq = self.send_page_req(pfn, now, out);
            let f = self.inflight.get_mut(&pfn).expect("present");
            f.seq = seq;
            f.sent_at = now;
            f.tries += 1;
            self.progress.retransmits += 1;
        }
    }
}

#[cfg(test)]
mod tests;
