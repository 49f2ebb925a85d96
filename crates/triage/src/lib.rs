//! Crash triage: kernel log text in, crash reports out (title, kind, guilty frame, call trace,
//! kernel, signature). Pure: no IO, no clock, no async. The title convention, the signature and
//! the limits are described in docs/triage.md.
//!
//! Two ways in: [`analyze`] for a whole text, or a [`Triage`] fed line by line (a receiver can
//! feed console lines as they arrive and ask for the reports at the end). Both do the same work,
//! linear in the input, with bounded memory: at most [`MAX_REPORTS`] reports of at most
//! [`MAX_REPORT_LINES`] lines each are kept.

mod frames;
mod line;
mod rules;

use std::collections::VecDeque;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use frames::is_generic;
pub use line::{MAX_LINE, strip};

/// Reports kept per input; later ones are counted in [`Triage::dropped`] only.
pub const MAX_REPORTS: usize = 64;
/// Lines kept per report (a report's title comes from its first hundred lines).
pub const MAX_REPORT_LINES: usize = 400;
/// Frames of the call trace that go into the signature, starting at the guilty frame.
pub const SIGNATURE_FRAMES: usize = 4;
/// Lines after a report's header during which another header is part of the same report
/// (the panic after an oops, the second CPU of an interleaved crash).
const FOLD_LINES: usize = 300;
/// Message lines remembered before a header (ODEBUG / refcount / list messages precede the
/// WARNING line they explain).
const BEFORE: usize = 4;

/// One crash found in a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrashReport {
    /// syzbot-style title, e.g. `WARNING in foo_bar`.
    pub title: String,
    /// Class: BUG, WARNING, HANG, NULL-POINTER-DEREFERENCE, PANIC, KASAN-…, LOCKDEP, SYSRQ, …
    pub kind: String,
    /// The function the title names (`None` when the report is too damaged to tell).
    pub guilty: Option<String>,
    /// The call trace, function names only, outermost last, unreliable (`?`) frames left out.
    pub frames: Vec<String>,
    /// Kernel release (`6.1.0-18-amd64`) when the report or the boot banner printed it.
    pub kernel: Option<String>,
    /// Taint flags as printed (`G        W`), `Not tainted` as an empty string.
    pub taint: Option<String>,
    pub cpu: Option<u32>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// The report is damaged: no call trace, no guilty frame, or another crash report
    /// interleaved with it.
    pub corrupted: bool,
    /// Hex digest of the title and the top frames from the guilty one on (docs/triage.md).
    pub signature: String,
    /// 1-based line number of the report's first line in the input.
    pub line: usize,
    /// The kernel panicked on this crash (a `Kernel panic - not syncing` followed it, or it is
    /// a panic): the crash that took the machine down, and a dump with it.
    pub panicked: bool,
}

/// Finds every crash report in `text`, first first.
pub fn analyze(text: &str) -> Vec<CrashReport> {
    let mut t = Triage::new();
    for l in text.split('\n') {
        t.feed_line(l);
    }
    t.finish()
}

/// [`analyze`] for bytes that may not be UTF-8 (invalid sequences replaced).
pub fn analyze_bytes(bytes: &[u8]) -> Vec<CrashReport> {
    let mut t = Triage::new();
    for l in bytes.split(|&b| b == b'\n') {
        t.feed_line(&String::from_utf8_lossy(l));
    }
    t.finish()
}

/// Most bytes of a dump's kernel log that triage on arrival reads: its end, where the fatal
/// crash is (a whole-boot dmesg is a few hundred KiB; a flooded log is cut, not read whole).
pub const DUMP_LOG_TAIL: u64 = 8 << 20;

/// What triage on arrival records beside a dump (the receiver and the dump sink both write it).
pub struct DumpTriage {
    /// `triage.json`: `{"source": <log file name>, "crashes": [reports]}`.
    pub json: Vec<u8>,
    /// Title and signature of the [`fatal`] crash, for the `dump_complete` event.
    pub fatal: Option<(String, String)>,
}

/// Triage of the tail of a dump's kernel log named `source`.
pub fn for_dump(source: &str, log_tail: &[u8]) -> DumpTriage {
    let reports = analyze_bytes(log_tail);
    let json = serde_json::to_vec_pretty(&serde_json::json!({
        "source": source,
        "crashes": reports,
    }))
    .unwrap_or_default();
    let fatal = fatal(&reports).map(|c| (c.title.clone(), c.signature.clone()));
    DumpTriage { json, fatal }
}

/// The crash that took the machine down: the last report that panicked, else the last one. A
/// dump's kernel log holds the whole boot (warnings before the fatal crash), a rolling console
/// log several boots; either way this is the crash the dump or the reboot is about.
pub fn fatal(reports: &[CrashReport]) -> Option<&CrashReport> {
    reports
        .iter()
        .rev()
        .find(|r| r.panicked)
        .or_else(|| reports.last())
}

/// The signature: the first 16 bytes of SHA-256 over the title and up to
/// [`SIGNATURE_FRAMES`] frame names starting at the guilty one, hex.
pub fn signature(title: &str, frames: &[String], guilty: Option<&str>) -> String {
    let start = guilty
        .and_then(|g| frames.iter().position(|f| f == g))
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(title.as_bytes());
    for f in frames.iter().skip(start).take(SIGNATURE_FRAMES) {
        h.update(b"\n");
        h.update(f.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

#[derive(Debug)]
struct Pending {
    header: rules::Header,
    start: usize,
    before: Vec<String>,
    lines: Vec<String>,
    /// The header carried a kernel prefix: unprefixed lines are someone else's output.
    prefixed: bool,
    /// The header's caller id: lines with another one were printed by another task or CPU
    /// at the same time.
    caller: Option<String>,
    /// Lines of another caller's crash report were interleaved with this one.
    interleaved: bool,
    /// A panic line was seen in the report (or it is one).
    panicked: bool,
    /// Lines seen since the header (kept or not).
    seen: usize,
    ended: bool,
}

/// Line-by-line crash finder; see the module documentation.
#[derive(Debug, Default)]
pub struct Triage {
    lineno: usize,
    recent: VecDeque<String>,
    pending: Option<Pending>,
    reports: Vec<CrashReport>,
    /// A report was seen since the last boot banner (a later "Fatal exception" panic is its
    /// consequence, not a new crash).
    crashed: bool,
    /// Release from the last `Linux version` banner.
    boot_release: Option<String>,
    /// Reports beyond [`MAX_REPORTS`], not kept.
    pub dropped: usize,
}

impl Triage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one line (without or with its line end).
    pub fn feed_line(&mut self, raw: &str) {
        self.lineno += 1;
        let st = line::strip(raw);
        let st = if st.prefixed {
            st
        } else {
            resync(raw).unwrap_or(st)
        };
        let msg = st.msg;
        let trimmed = msg.trim();

        if let Some(rel) = boot_release(trimmed) {
            self.close();
            self.crashed = false;
            self.boot_release = Some(rel);
        }

        if let Some(h) = rules::header(trimmed) {
            let fold = match &self.pending {
                Some(p) => (!p.ended && p.seen < FOLD_LINES) || h.is_consequence(),
                None => false,
            };
            if fold {
                if let Some(p) = &mut self.pending
                    && p.caller.is_some()
                    && st.caller.is_some()
                    && p.caller.as_deref() != st.caller
                    && !h.is_consequence()
                {
                    p.interleaved = true;
                }
                if let Some(p) = &mut self.pending
                    && h.is_panic()
                {
                    p.panicked = true;
                }
                self.push_line(msg, st.prefixed, st.caller);
            } else if h.is_consequence() && self.crashed {
                // The panic that follows a report already closed: that report was fatal.
                if h.is_panic()
                    && let Some(r) = self.reports.last_mut()
                {
                    r.panicked = true;
                }
            } else {
                self.close();
                self.start(h, msg, st.prefixed, st.caller);
            }
        } else {
            self.push_line(msg, st.prefixed, st.caller);
        }

        // Reuse the oldest buffer: no allocation per line once the window is full.
        let mut buf = if self.recent.len() == BEFORE {
            self.recent.pop_front().unwrap_or_default()
        } else {
            String::new()
        };
        buf.clear();
        buf.push_str(trimmed);
        self.recent.push_back(buf);
    }

    /// Ends the input and returns the reports, first first.
    pub fn finish(mut self) -> Vec<CrashReport> {
        self.close();
        self.reports
    }

    fn start(&mut self, header: rules::Header, msg: &str, prefixed: bool, caller: Option<&str>) {
        self.crashed = true;
        if self.reports.len() >= MAX_REPORTS {
            self.dropped += 1;
            return;
        }
        self.pending = Some(Pending {
            header,
            start: self.lineno,
            before: self.recent.iter().cloned().collect(),
            lines: vec![msg.to_string()],
            prefixed,
            caller: caller.map(str::to_string),
            interleaved: false,
            panicked: false,
            seen: 0,
            ended: false,
        });
    }

    fn push_line(&mut self, msg: &str, prefixed: bool, caller: Option<&str>) {
        let Some(p) = &mut self.pending else {
            return;
        };
        p.seen += 1;
        if p.prefixed && !prefixed {
            return; // another program's output interleaved with the report
        }
        if let (Some(mine), Some(theirs)) = (p.caller.as_deref(), caller)
            && mine != theirs
        {
            return; // another task or CPU printing at the same time
        }
        let t = msg.trim_start();
        if t.starts_with("---[ end") || t.starts_with("Rebooting in") {
            p.ended = true;
        }
        if p.lines.len() < MAX_REPORT_LINES {
            p.lines.push(msg.to_string());
        }
        if p.ended && p.seen > FOLD_LINES {
            self.close();
        }
    }

    fn close(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let trace = frames::first_trace(&p.lines);
        let (v, trace) = rules::verdict(&p.header, &p.before, &p.lines, &trace);
        let frames: Vec<String> = trace.into_iter().map(|f| f.name).collect();
        let meta = Meta::from_lines(&p.before, &p.lines);
        let corrupted = v.title.ends_with(&format!(" in {}", rules::CORRUPTED))
            || v.title.contains(&format!(" in {}/", rules::CORRUPTED))
            || (frames.is_empty() && v.guilty.is_none())
            || p.interleaved;
        let signature = signature(&v.title, &frames, v.guilty.as_deref());
        self.reports.push(CrashReport {
            title: v.title,
            kind: v.kind,
            guilty: v.guilty,
            frames,
            kernel: meta.kernel.or_else(|| self.boot_release.clone()),
            taint: meta.taint,
            cpu: meta.cpu,
            pid: meta.pid,
            comm: meta.comm,
            corrupted,
            signature,
            line: p.start,
            panicked: p.panicked || p.header.is_panic(),
        });
    }
}

/// A kernel line glued to the end of another program's output (`login: [   59.8][ T1] BUG:`):
/// the part from the timestamp on.
fn resync(raw: &str) -> Option<line::Stripped<'_>> {
    static TS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[\s*\d+\.\d{3,}\]").unwrap());
    let m = TS.find(raw)?;
    if m.start() == 0 {
        return None;
    }
    let st = line::strip(&raw[m.start()..]);
    st.prefixed.then_some(st)
}

fn boot_release(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("Linux version ")?;
    rest.split_whitespace().next().map(str::to_string)
}

#[derive(Debug, Default)]
struct Meta {
    kernel: Option<String>,
    taint: Option<String>,
    cpu: Option<u32>,
    pid: Option<u32>,
    comm: Option<String>,
}

impl Meta {
    fn from_lines(before: &[String], lines: &[String]) -> Meta {
        static CPU: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"CPU: (\d+) (?:UID: \d+ )?PID: (\d+) Comm: (.{1,16}?) (?:Not tainted|Tainted: ([A-Z ]*[A-Z])) +(\d\S*)").unwrap()
        });
        static WARN: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"CPU: (\d+) PID: (\d+) at ").unwrap());
        // 2.6-era kernels: `Pid: 3131, comm: bash Not tainted 2.6.9-89.ELsmp` (x86_64),
        // `Process bash (pid: 3192, ...)` with `EFLAGS: 00010246   (2.6.9-89.EL)` (i386).
        static OLD_PID: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(
                r"^Pid: (\d+), comm: (.{1,16}?) (?:Not tainted|Tainted: ([A-Z ]*[A-Z])) +(\d\S*)",
            )
            .unwrap()
        });
        static OLD_PROC: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"^Process (.{1,16}?) \(pid: (\d+),").unwrap());
        static OLD_REL: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"^EFLAGS: [0-9a-f]+\s+(?:\S+\s+)?\((\d[^)\s]*)\)").unwrap()
        });
        let mut m = Meta::default();
        for l in before.iter().chain(lines.iter().take(120)) {
            if let Some(c) = CPU.captures(l) {
                m.cpu = c[1].parse().ok();
                m.pid = c[2].parse().ok();
                m.comm = Some(c[3].to_string());
                m.taint = Some(c.get(4).map(|t| t.as_str().to_string()).unwrap_or_default());
                m.kernel = Some(c[5].to_string());
                return m;
            }
            let t = l.trim();
            if let Some(c) = OLD_PID.captures(t) {
                m.pid = c[1].parse().ok();
                m.comm = Some(c[2].to_string());
                m.taint = Some(c.get(3).map(|t| t.as_str().to_string()).unwrap_or_default());
                m.kernel = Some(c[4].to_string());
            }
            if let Some(c) = OLD_PROC.captures(t) {
                m.comm = Some(c[1].to_string());
                m.pid = c[2].parse().ok();
            }
            if m.kernel.is_none()
                && let Some(c) = OLD_REL.captures(t)
            {
                m.kernel = Some(c[1].to_string());
            }
            if m.cpu.is_none()
                && let Some(c) = WARN.captures(l)
            {
                m.cpu = c[1].parse().ok();
                m.pid = c[2].parse().ok();
            }
        }
        m
    }
}

#[cfg(test)]
mod tests;
