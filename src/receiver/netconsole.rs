//! netconsole log collection, sans-IO: datagrams and time in, [`ConsoleEvent`]s out.
//!
//! Two wire formats arrive on the console port (default 6666, also 1514 for netconsd parity):
//!
//! * **plain** netconsole (any kernel): raw console text, one or several lines per datagram, or a
//!   partial line continued in the next datagram;
//! * **extended** netconsole (`netconsole=+…` or configfs `extended=1`): one `/dev/kmsg`-style
//!   record per datagram, `[<release>,]<prefix>,<seq>,<ts_usec>,<flags>[,caller=…][,ncfrag=<off>/<total>];<text>`
//!   then optional continuation lines ` key=value` (dictionary, userdata, sysdata `cpu=`,
//!   `taskname=`, `release=`, `msgid=`). Records over 1000 bytes are split into fragments that
//!   repeat the header with `ncfrag=<byte offset>/<total bytes>`.
//!
//! Per source address a [`Stream`] reassembles fragments (in any order, bounded in memory, with a
//! timeout that emits what arrived), orders records by `seq` in a small window, drops duplicates,
//! counts lost records (from `msgid` gaps when the sender provides them, else from `seq` gaps),
//! notices reboots (`seq`/timestamps restarting) and flags crash lines ([`is_crash_line`]).
//!
//! Nothing here does IO or reads the clock: callers pass `now`, so every path is unit-testable.
//! Nothing here panics on any input (see the proptests).
//!
//! ## Wiring (server.rs)
//!
//! ```text
//! on datagram (buf, from) that is not a netdump frame (docs/netdump-protocol.md, "Frames"):
//!     for (ip, ev) in collector.ingest(from.ip(), buf, Instant::now()) {
//!         store.handle(ip, ev, Utc::now());          // console::ConsoleStore; errors are
//!     }                                              // already logged and counted
//! on a netdump REPLY_LOG frame (info = byte offset, payload = text):
//!     collector.ingest_netlog(from.ip(), info, payload, now) → store.handle(...)
//! every 100–200 ms:
//!     collector.tick(now) → store.handle(...); then store.tick(Utc::now())
//! when a netdump dump starts for ip:
//!     store.crash_dir_for(ip) gives the console's crash directory to put vmcore in, if any;
//!     otherwise create one and pass it to store.adopt_crash_dir(ip, dir).
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What the collector reports for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// One console line. Extended records carry `seq`, `level` (0–7) and `ts_usec`; plain
    /// netconsole text carries none. `fields` holds the record's ` key=value` continuation lines
    /// (dictionary, userdata and sysdata such as `cpu`, `taskname`, `release`, `msgid`).
    Line {
        seq: Option<u64>,
        level: Option<u8>,
        ts_usec: Option<u64>,
        text: String,
        fields: Vec<(String, String)>,
    },
    /// `count` records never arrived (a gap in `msgid`, or in `seq` when there is no `msgid`).
    Lost { count: u64 },
    /// The sender restarted its sequence numbers: it rebooted (or its console was reloaded).
    Rebooted,
    /// The line just reported (always emitted right after its `Line`) shows a kernel crash.
    /// One crash usually yields several (`sysrq: Trigger a crash`, `Kernel panic - not syncing`);
    /// consumers keep one record open per host (see `console::ConsoleStore`).
    Crash { text: String },
}

/// Tunables; [`Limits::default`] suits a lab fleet and matches netconsd's timings.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most sources tracked at once; the least recently heard one is evicted beyond this.
    pub max_sources: usize,
    /// How long a record waits for a missing lower `seq` before the gap is declared lost.
    pub reorder_timeout: Duration,
    /// Most records held back waiting for a gap to fill.
    pub reorder_window: usize,
    /// How long an incomplete fragmented record waits for its missing fragments.
    pub fragment_timeout: Duration,
    /// Largest `ncfrag` total accepted (bytes); larger claims are dropped as malformed.
    pub max_record: usize,
    /// Most incomplete fragmented records per source.
    pub max_fragmented: usize,
    /// Most bytes held in incomplete fragmented records per source.
    pub max_fragment_bytes: usize,
    /// Longest partial plain-text line kept before it is emitted as is.
    pub max_partial_line: usize,
    /// How long a partial plain-text line waits for its newline.
    pub partial_line_timeout: Duration,
    /// A source silent this long is forgotten by `tick`.
    pub idle_forget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sources: 1024,
            reorder_timeout: Duration::from_millis(200),
            reorder_window: 256,
            fragment_timeout: Duration::from_millis(1000),
            max_record: 64 * 1024,
            max_fragmented: 32,
            max_fragment_bytes: 128 * 1024,
            max_partial_line: 4096,
            partial_line_timeout: Duration::from_millis(1000),
            idle_forget: Duration::from_secs(6 * 3600),
        }
    }
}

/// Counters for one source, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub datagrams: u64,
    pub records: u64,
    pub plain_lines: u64,
    pub duplicates: u64,
    pub lost: u64,
    /// Records that arrived after their gap had already been declared lost (still emitted).
    pub late: u64,
    pub reboots: u64,
    /// Fragmented records emitted with missing pieces after the fragment timeout.
    pub incomplete: u64,
    /// Fragments dropped: bad offsets, oversize totals, or over the per-source bound.
    pub bad_fragments: u64,
    /// netlog bytes skipped as already received (duplicate or overlapping `REPLY_LOG` frames).
    pub netlog_dup_bytes: u64,
    /// netlog bytes that never arrived (gaps in the `REPLY_LOG` offsets).
    pub netlog_gap_bytes: u64,
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// The header of one extended netconsole datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtHeader<'a> {
    /// Kernel release when the sender uses `r` / configfs `release=1`.
    pub release: Option<&'a str>,
    /// Syslog priority: `facility << 3 | level`.
    pub prefix: u32,
    pub seq: u64,
    pub ts_usec: u64,
    /// `-`, `c` or `+` (continuation flags of older kernels).
    pub flags: &'a str,
    /// `ncfrag=<offset>/<total>` when the record was split.
    pub frag: Option<(usize, usize)>,
}

impl ExtHeader<'_> {
    pub fn level(&self) -> u8 {
        (self.prefix & 7) as u8
    }
}

/// Longest header we look for a `;` in (release + four numbers + caller + ncfrag fit easily).
const MAX_HEADER: usize = 256;

/// Splits an extended netconsole datagram into header and body (the bytes after `;`).
/// Returns `None` when the datagram is not extended netconsole (treat it as plain text).
pub fn parse_extended(datagram: &[u8]) -> Option<(ExtHeader<'_>, &[u8])> {
    let limit = datagram.len().min(MAX_HEADER);
    let semi = datagram[..limit].iter().position(|&b| b == b';')?;
    let header = std::str::from_utf8(&datagram[..semi]).ok()?;
    if header.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return None;
    }
    let body = &datagram[semi + 1..];
    let mut positional: [&str; 5] = [""; 5];
    let mut n = 0usize;
    let mut frag = None;
    for field in header.split(',') {
        if let Some(v) = field.strip_prefix("ncfrag=") {
            let (off, total) = v.split_once('/')?;
            frag = Some((parse_num::<usize>(off)?, parse_num::<usize>(total)?));
        } else if field.contains('=') {
            // `caller=T123` (CONFIG_PRINTK_CALLER) and any future key=value header field.
            continue;
        } else {
            if n == positional.len() {
                return None;
            }
            positional[n] = field;
            n += 1;
        }
    }
    let (release, rest) = match n {
        4 => (None, &positional[..4]),
        5 if !positional[0].is_empty() => (Some(positional[0]), &positional[1..5]),
        _ => return None,
    };
    let prefix = parse_num::<u32>(rest[0])?;
    if prefix > 1023 {
        return None;
    }
    let seq = parse_num::<u64>(rest[1])?;
    let ts_usec = parse_num::<u64>(rest[2])?;
    let flags = rest[3];
    if flags.len() > 4 {
        return None;
    }
    Some((
        ExtHeader {
            release,
            prefix,
            seq,
            ts_usec,
            flags,
            frag,
        },
        body,
    ))
}

fn parse_num<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits a (reassembled) extended body into the message text and its ` key=value` lines.
/// The text keeps the kernel's `\xNN` escapes; other control bytes are escaped the same way.
pub fn split_body(body: &[u8]) -> (String, Vec<(String, String)>) {
    let mut lines = body.split(|&b| b == b'\n');
    let text = sanitize(lines.next().unwrap_or_default());
    let mut fields = Vec::new();
    for line in lines {
        let Some(kv) = line.strip_prefix(b" ") else {
            continue;
        };
        let kv = sanitize(kv);
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => fields.push((k.to_owned(), v.to_owned())),
            _ => {}
        }
    }
    (text, fields)
}

/// Lossy UTF-8 with control characters (other than tab) escaped as `\xNN`, so nothing a sender
/// puts in a datagram can inject terminal escapes or line breaks into the log files.
pub fn sanitize(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let lossy = String::from_utf8_lossy(bytes);
    if !lossy.chars().any(|c| c.is_control() && c != '\t') {
        return lossy.into_owned();
    }
    let mut out = String::with_capacity(lossy.len() + 8);
    for c in lossy.chars() {
        if c.is_control() && c != '\t' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// True for console lines that show a kernel crash: `sysrq: Trigger a crash` (and the older
/// `SysRq : Trigger a crash`), `Kernel panic - not syncing`, `Oops:` / `Internal error: Oops`,
/// `BUG:`, `kernel BUG at` and x86 `general protection fault` (which older kernels print
/// without an `Oops:` prefix). The pattern must start the message (after an optional printk
/// timestamp `[   12.345678]`, caller id `[T123]` and syslog `<N>` prefix), so ordinary lines
/// that merely mention "bug" or "oops", and user-space `traps: … general protection fault`
/// lines, do not match.
pub fn is_crash_line(text: &str) -> bool {
    let t = strip_line_prefixes(text);
    if t.starts_with("Kernel panic - not syncing")
        || t.starts_with("Oops:")
        || t.starts_with("Internal error: Oops")
        || t.starts_with("BUG:")
        || t.starts_with("kernel BUG at ")
        || t.starts_with("general protection fault")
    {
        return true;
    }
    is_sysrq_crash(t)
}

fn is_sysrq_crash(t: &str) -> bool {
    if !t.starts_with(['s', 'S']) {
        return false;
    }
    // Compare case-insensitively with whitespace removed: "sysrq: Trigger a crash",
    // "SysRq : Trigger a crash", "sysrq: SysRq : Trigger a crash".
    let mut squeezed = String::with_capacity(48);
    for c in t.chars().filter(|c| !c.is_whitespace()).take(48) {
        squeezed.extend(c.to_lowercase());
    }
    let mut s = squeezed.as_str();
    let mut saw_sysrq = false;
    while let Some(rest) = s.strip_prefix("sysrq:") {
        s = rest;
        saw_sysrq = true;
    }
    saw_sysrq && s.starts_with("triggeracrash")
}

fn strip_line_prefixes(mut t: &str) -> &str {
    for _ in 0..4 {
        t = t.trim_start();
        if let Some(rest) = t.strip_prefix('<')
            && let Some(end) = rest.find('>')
            && end <= 4
            && rest[..end].bytes().all(|b| b.is_ascii_digit())
        {
            t = &rest[end + 1..];
            continue;
        }
        if let Some(rest) = t.strip_prefix('[')
            && let Some(end) = rest.find(']')
        {
            let inner = &rest[..end];
            if end <= 24
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b' ')
            {
                t = &rest[end + 1..];
                continue;
            }
        }
        break;
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Per-source state
// ---------------------------------------------------------------------------------------------

/// One complete extended record waiting to be emitted in order.
#[derive(Debug)]
struct Record {
    seq: u64,
    level: u8,
    ts_usec: u64,
    text: String,
    fields: Vec<(String, String)>,
    msgid: Option<u32>,
    arrived: Instant,
}

/// A record whose `ncfrag` fragments are still arriving.
#[derive(Debug)]
struct Partial {
    level: u8,
    ts_usec: u64,
    buf: Vec<u8>,
    /// Sorted, disjoint, merged byte ranges received so far.
    have: Vec<(usize, usize)>,
    first: Instant,
}

impl Partial {
    fn covered(&self) -> usize {
        self.have.iter().map(|(a, b)| b - a).sum()
    }

    fn add(&mut self, off: usize, data: &[u8]) {
        let end = off + data.len();
        self.buf[off..end].copy_from_slice(data);
        self.have.push((off, end));
        self.have.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.have.len());
        for &(a, b) in &self.have {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.have = merged;
    }

    /// The bytes received so far, with ` [...] ` where fragments are missing.
    fn assemble_incomplete(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len());
        let mut pos = 0;
        for &(a, b) in &self.have {
            if a > pos {
                out.extend_from_slice(b" [...] ");
            }
            out.extend_from_slice(&self.buf[a..b]);
            pos = b;
        }
        if pos < self.buf.len() {
            out.extend_from_slice(b" [...]");
        }
        out
    }
}

/// Remembered recent records for duplicate detection: `(seq, ts_usec)`.
const RECENT: usize = 512;
/// Records after a stream (re)start during which a lower `seq` is taken as reordering.
const START_GRACE: u64 = 16;
/// Timestamps going backwards by more than this mean a new boot, not printk jitter.
const TS_SLACK_USEC: u64 = 250_000;

/// State for one source address.
#[derive(Debug)]
pub struct Stream {
    // extended netconsole
    next_seq: Option<u64>,
    emitted_since_reset: u64,
    last_ts: u64,
    last_msgid: Option<u32>,
    pending: BTreeMap<u64, Record>,
    partials: HashMap<u64, Partial>,
    partial_bytes: usize,
    recent: VecDeque<(u64, u64)>,
    /// Seq ranges `[a, b)` given up as lost, so a late arrival is told from a reboot.
    skipped: VecDeque<(u64, u64)>,
    // plain netconsole, and RHEL netlog (`REPLY_LOG` byte offsets)
    netlog_next: Option<u32>,
    line: Vec<u8>,
    line_since: Option<Instant>,
    last_heard: Instant,
    pub stats: StreamStats,
}

impl Stream {
    pub fn new(now: Instant) -> Self {
        Stream {
            next_seq: None,
            emitted_since_reset: 0,
            last_ts: 0,
            last_msgid: None,
            pending: BTreeMap::new(),
            partials: HashMap::new(),
            partial_bytes: 0,
            recent: VecDeque::new(),
            skipped: VecDeque::new(),
            netlog_next: None,
            line: Vec::new(),
            line_since: None,
            last_heard: now,
            stats: StreamStats::default(),
        }
    }

    /// Feeds one datagram; events are appended to `out`.
    pub fn ingest(
        &mut self,
        datagram: &[u8],
        now: Instant,
        limits: &Limits,
        out: &mut Vec<ConsoleEvent>,
    ) {
        self.stats.datagrams += 1;
        self.last_heard = now;
        match parse_extended(datagram) {
            Some((hdr, body)) => self.ingest_extended(&hdr, body, now, limits, out),
            None => self.ingest_plain(datagram, now, limits, out),
        }
    }

    /// Feeds plain console text (also the payload of RHEL netlog `REPLY_LOG` frames).
    pub fn ingest_plain(
        &mut self,
        text: &[u8],
        now: Instant,
        limits: &Limits,
        out: &mut Vec<ConsoleEvent>,
    ) {
        self.last_heard = now;
        let mut rest = text;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if self.line.is_empty() {
                self.emit_plain(&rest[..nl], out);
            } else {
                self.line.extend_from_slice(&rest[..nl]);
                let line = std::mem::take(&mut self.line);
                self.emit_plain(&line, out);
                self.line = line;
                self.line.clear();
            }
            self.line_since = None;
            rest = &rest[nl + 1..];
        }
        if !rest.is_empty() {
            if self.line.is_empty() {
                self.line_since = Some(now);
            }
            self.line.extend_from_slice(rest);
            // A line longer than the bound goes out in pieces of the bound's size.
            let max = limits.max_partial_line.max(1);
            while self.line.len() >= max {
                let line = std::mem::take(&mut self.line);
                self.emit_plain(&line[..max], out);
                self.line = line[max..].to_vec();
                self.line_since = Some(now);
            }
        }
    }

    /// Feeds one RHEL netlog `REPLY_LOG` payload whose first byte is at `offset` of the
    /// sender's console stream (the frame's `info`, a wrapping u32 byte count since module
    /// load). Bytes already received are skipped; offset 0 after a stream that went further
    /// means the module was reloaded or the host rebooted; a gap is counted in
    /// `stats.netlog_gap_bytes` and marked in the log text.
    pub fn ingest_netlog(
        &mut self,
        offset: u32,
        payload: &[u8],
        now: Instant,
        limits: &Limits,
        out: &mut Vec<ConsoleEvent>,
    ) {
        self.stats.datagrams += 1;
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let mut data = payload;
        if let Some(next) = self.netlog_next {
            let delta = offset.wrapping_sub(next) as i32;
            if offset == 0 && next > len {
                self.flush_line(out);
                self.stats.reboots += 1;
                out.push(ConsoleEvent::Rebooted);
            } else if delta < 0 {
                let skip = (delta.unsigned_abs() as usize).min(data.len());
                self.stats.netlog_dup_bytes += skip as u64;
                data = &data[skip..];
                if data.is_empty() {
                    return;
                }
            } else if delta > 0 {
                self.stats.netlog_gap_bytes += delta as u64;
                self.line.extend_from_slice(
                    format!(" [... {delta} bytes of console log lost ...] ").as_bytes(),
                );
                self.line_since.get_or_insert(now);
            }
        }
        self.netlog_next = Some(offset.wrapping_add(len));
        self.ingest_plain(data, now, limits, out);
    }

    fn flush_line(&mut self, out: &mut Vec<ConsoleEvent>) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.emit_plain(&line, out);
            self.line = line;
            self.line.clear();
        }
        self.line_since = None;
    }

    fn emit_plain(&mut self, raw: &[u8], out: &mut Vec<ConsoleEvent>) {
        let text = sanitize(raw);
        if text.is_empty() {
            return;
        }
        self.stats.plain_lines += 1;
        // Plain text has no sequence numbers; the kernel's boot banner is the reboot marker.
        if strip_line_prefixes(&text).starts_with("Linux version ") && self.stats.plain_lines > 1 {
            self.stats.reboots += 1;
            out.push(ConsoleEvent::Rebooted);
        }
        push_line(out, None, None, None, text, Vec::new());
    }

    fn ingest_extended(
        &mut self,
        hdr: &ExtHeader<'_>,
        body: &[u8],
        now: Instant,
        limits: &Limits,
        out: &mut Vec<ConsoleEvent>,
    ) {
        let Some((off, total)) = hdr.frag else {
            self.complete(hdr.seq, hdr.level(), hdr.ts_usec, body, now, limits, out);
            return;
        };
        let end = off.checked_add(body.len());
        if total == 0 || total > limits.max_record || end.is_none_or(|e| e > total) {
            self.stats.bad_fragments += 1;
            return;
        }
        if self.is_known_duplicate(hdr.seq, hdr.ts_usec) {
            self.stats.duplicates += 1;
            return;
        }
        if !self.partials.contains_key(&hdr.seq) {
            if self.partials.len() >= limits.max_fragmented
                || self.partial_bytes + total > limits.max_fragment_bytes
            {
                self.expire_oldest_partial(now, limits, out);
            }
            if self.partials.len() >= limits.max_fragmented {
                self.stats.bad_fragments += 1;
                return;
            }
            self.partial_bytes += total;
            self.partials.insert(
                hdr.seq,
                Partial {
                    level: hdr.level(),
                    ts_usec: hdr.ts_usec,
                    buf: vec![0; total],
                    have: Vec::new(),
                    first: now,
                },
            );
        }
        let Some(p) = self.partials.get_mut(&hdr.seq) else {
            return;
        };
        if p.buf.len() != total {
            self.stats.bad_fragments += 1;
            return;
        }
        p.add(off, body);
        if p.covered() == total
            && let Some(p) = self.partials.remove(&hdr.seq)
        {
            self.partial_bytes -= p.buf.len();
            self.complete(hdr.seq, p.level, p.ts_usec, &p.buf, now, limits, out);
        }
    }

    fn expire_oldest_partial(
        &mut self,
        now: Instant,
        limits: &Limits,
        out: &mut Vec<ConsoleEvent>,
    ) {
        let oldest = self
            .partials
            .iter()
            .min_by_key(|(s, p)| (p.first, **s))
            .map(|(&s, _)| s);
        if let Some(seq) = oldest {
            self.finish_partial(seq, now, limits, out);
        }
    }

    fn finish_partial(
        &mut self,
        seq: u64,
        now: Instant,
        limits: &Limits,
        out: &mut Vec<ConsoleEvent>,
    ) {
        if let Some(p) = self.partials.remove(&seq) {
            self.partial_bytes -= p.buf.len();
            self.stats.incomplete += 1;
            let body = p.assemble_incomplete();
            self.complete(seq, p.level, p.ts_usec, &body, now, limits, out);
        }
    }

    fn is_known_duplicate(&self, seq: u64, ts: u64) -> bool {
        if let Some(r) = self.pending.get(&seq) {
            return r.ts_usec == ts;
        }
        // Everything emitted (and so in `recent`) is below `next_seq`: the common in-order case
        // needs no scan.
        if self.next_seq.is_none_or(|n| seq >= n) {
            return false;
        }
        self.recent.iter().any(|&(s, t)| s == seq && t == ts)
    }

    #[allow(clippy::too_many_arguments)]
    fn complete(
        &mut self,
        seq: u64,
        level: u8,
        ts_usec: u64,
        body: &[u8],
        now: Instant,
        limits: &Limits,
        out: &mut Vec<ConsoleEvent>,
    ) {
        if self.is_known_duplicate(seq, ts_usec) {
            self.stats.duplicates += 1;
            return;
        }
        self.stats.records += 1;
        let (text, fields) = split_body(body);
        let msgid = fields
            .iter()
            .find(|(k, _)| k == "msgid")
            .and_then(|(_, v)| v.parse::<u32>().ok());
        let rec = Record {
            seq,
            level,
            ts_usec,
            text,
            fields,
            msgid,
            arrived: now,
        };
        let Some(next) = self.next_seq else {
            self.emit(rec, out);
            return;
        };
        let ts_backwards = ts_usec.saturating_add(TS_SLACK_USEC) < self.last_ts;
        if seq < next {
            // Late rather than a new boot: its gap was already given up as lost, or the stream
            // just (re)started and the first records crossed on the way (nothing was held back
            // for them yet). Timestamps going back always mean a new boot.
            let just_started = self.emitted_since_reset < START_GRACE
                && next - seq <= limits.reorder_window as u64;
            if !ts_backwards && (self.take_skipped(seq) || just_started) {
                self.stats.late += 1;
                self.remember(seq, ts_usec);
                emit_record_events(rec, out);
                return;
            }
            self.reboot(rec, out);
            return;
        }
        if ts_backwards {
            // A higher seq with a much older timestamp: a new boot whose log reached further.
            self.reboot(rec, out);
            return;
        }
        if seq == next && self.pending.is_empty() {
            self.emit(rec, out);
            return;
        }
        self.pending.insert(seq, rec);
        self.drain(now, limits, out);
    }

    /// Emits pending records that are in order, whose gap is explained by `msgid`, or that
    /// waited longer than the reorder timeout (or overflow the window).
    fn drain(&mut self, now: Instant, limits: &Limits, out: &mut Vec<ConsoleEvent>) {
        loop {
            let overflow = self.pending.len() > limits.reorder_window;
            let Some(entry) = self.pending.first_entry() else {
                break;
            };
            let r = entry.get();
            let in_order = Some(r.seq) == self.next_seq;
            let msgid_contiguous = matches!((self.last_msgid, r.msgid),
                (Some(a), Some(b)) if b == a.wrapping_add(1));
            let timed_out = now.saturating_duration_since(r.arrived) >= limits.reorder_timeout;
            if in_order || msgid_contiguous || timed_out || overflow {
                let rec = entry.remove();
                self.emit(rec, out);
            } else {
                break;
            }
        }
    }

    fn reboot(&mut self, rec: Record, out: &mut Vec<ConsoleEvent>) {
        // Whatever the old boot still had waiting goes out first, then the marker.
        while let Some((_, r)) = self.pending.pop_first() {
            self.emit(r, out);
        }
        self.stats.reboots += 1;
        out.push(ConsoleEvent::Rebooted);
        self.next_seq = None;
        self.emitted_since_reset = 0;
        self.last_msgid = None;
        self.last_ts = 0;
        self.recent.clear();
        self.skipped.clear();
        self.emit(rec, out);
    }

    /// Emits one record in sequence order, with a `Lost` event for the gap before it.
    fn emit(&mut self, rec: Record, out: &mut Vec<ConsoleEvent>) {
        self.emitted_since_reset += 1;
        if let Some(next) = self.next_seq {
            let seq_gap = rec.seq.saturating_sub(next);
            let lost = match (self.last_msgid, rec.msgid) {
                (Some(a), Some(b)) => u64::from(b.wrapping_sub(a).wrapping_sub(1)),
                _ => seq_gap,
            };
            if seq_gap > 0 {
                self.skipped.push_back((next, rec.seq));
                if self.skipped.len() > 64 {
                    self.skipped.pop_front();
                }
            }
            if lost > 0 {
                self.stats.lost = self.stats.lost.saturating_add(lost);
                out.push(ConsoleEvent::Lost { count: lost });
            }
        }
        self.next_seq = Some(rec.seq.saturating_add(1));
        self.last_ts = self.last_ts.max(rec.ts_usec);
        if rec.msgid.is_some() {
            self.last_msgid = rec.msgid;
        }
        self.remember(rec.seq, rec.ts_usec);
        emit_record_events(rec, out);
    }

    fn remember(&mut self, seq: u64, ts_usec: u64) {
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((seq, ts_usec));
    }

    /// Removes `seq` from the ranges given up as lost; true if it was there.
    fn take_skipped(&mut self, seq: u64) -> bool {
        let Some(i) = self.skipped.iter().position(|&(a, b)| a <= seq && seq < b) else {
            return false;
        };
        let (a, b) = self.skipped[i];
        self.skipped.remove(i);
        if a < seq {
            self.skipped.push_back((a, seq));
        }
        if seq + 1 < b {
            self.skipped.push_back((seq + 1, b));
        }
        true
    }

    /// Flushes whatever waited too long: fragments, reorder gaps, partial plain lines.
    pub fn tick(&mut self, now: Instant, limits: &Limits, out: &mut Vec<ConsoleEvent>) {
        let expired: Vec<u64> = self
            .partials
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.first) >= limits.fragment_timeout)
            .map(|(&s, _)| s)
            .collect();
        let mut expired = expired;
        expired.sort_unstable();
        for seq in expired {
            self.finish_partial(seq, now, limits, out);
        }
        self.drain(now, limits, out);
        if let Some(since) = self.line_since
            && now.saturating_duration_since(since) >= limits.partial_line_timeout
        {
            self.flush_line(out);
        }
    }

    /// When [`Stream::tick`] next has something to flush (a fragment, reorder gap or partial
    /// line timing out); `None` when nothing is held back.
    pub fn poll_timeout(&self, limits: &Limits) -> Option<Instant> {
        let frag = self
            .partials
            .values()
            .map(|p| p.first + limits.fragment_timeout)
            .min();
        let gap = self
            .pending
            .first_key_value()
            .map(|(_, r)| r.arrived + limits.reorder_timeout);
        let line = self.line_since.map(|t| t + limits.partial_line_timeout);
        [frag, gap, line].into_iter().flatten().min()
    }

    /// True when nothing is held back (no fragments, gaps or partial line).
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.partials.is_empty() && self.line.is_empty()
    }

    /// Emits everything held back, as if every timeout had expired.
    pub fn flush_all(&mut self, out: &mut Vec<ConsoleEvent>) {
        let seqs: Vec<u64> = self.partials.keys().copied().collect();
        let mut seqs = seqs;
        seqs.sort_unstable();
        let far = self.last_heard + Duration::from_secs(3600 * 24 * 365);
        let limits = Limits::default();
        for seq in seqs {
            self.finish_partial(seq, far, &limits, out);
        }
        while let Some((_, r)) = self.pending.pop_first() {
            self.emit(r, out);
        }
        self.flush_line(out);
    }
}

fn push_line(
    out: &mut Vec<ConsoleEvent>,
    seq: Option<u64>,
    level: Option<u8>,
    ts_usec: Option<u64>,
    text: String,
    fields: Vec<(String, String)>,
) {
    let crash = is_crash_line(&text).then(|| text.clone());
    out.push(ConsoleEvent::Line {
        seq,
        level,
        ts_usec,
        text,
        fields,
    });
    if let Some(text) = crash {
        out.push(ConsoleEvent::Crash { text });
    }
}

fn emit_record_events(rec: Record, out: &mut Vec<ConsoleEvent>) {
    push_line(
        out,
        Some(rec.seq),
        Some(rec.level),
        Some(rec.ts_usec),
        rec.text,
        rec.fields,
    );
}

// ---------------------------------------------------------------------------------------------
// All sources
// ---------------------------------------------------------------------------------------------

/// Per-source streams keyed by the datagram's source address (IPv4-mapped IPv6 addresses are
/// folded to IPv4, so a dual-stack socket and an IPv4 socket name a host the same way).
#[derive(Debug)]
pub struct Collector {
    streams: HashMap<IpAddr, Stream>,
    limits: Limits,
    scratch: Vec<ConsoleEvent>,
    /// Sources evicted because `max_sources` was reached.
    pub evicted: u64,
    /// Earliest deadline of any stream (may be early, never late).
    wake_at: Option<Instant>,
}

impl Default for Collector {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Collector {
    pub fn new(limits: Limits) -> Self {
        Collector {
            streams: HashMap::new(),
            limits,
            scratch: Vec::new(),
            evicted: 0,
            wake_at: None,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Feeds one datagram (plain or extended netconsole) received from `src`.
    pub fn ingest(
        &mut self,
        src: IpAddr,
        datagram: &[u8],
        now: Instant,
    ) -> Vec<(IpAddr, ConsoleEvent)> {
        let mut out = Vec::new();
        self.ingest_into(src, datagram, now, &mut out);
        out
    }

    /// Like [`Collector::ingest`], appending to a caller-owned buffer (no allocation per call
    /// once the buffer has grown).
    pub fn ingest_into(
        &mut self,
        src: IpAddr,
        datagram: &[u8],
        now: Instant,
        out: &mut Vec<(IpAddr, ConsoleEvent)>,
    ) {
        let src = src.to_canonical();
        let mut scratch = std::mem::take(&mut self.scratch);
        let (stream, limits) = self.stream(src, now, out);
        stream.ingest(datagram, now, limits, &mut scratch);
        let due = stream.poll_timeout(limits);
        out.extend(scratch.drain(..).map(|e| (src, e)));
        self.scratch = scratch;
        self.note_deadline(due);
    }

    fn note_deadline(&mut self, due: Option<Instant>) {
        if let Some(d) = due {
            self.wake_at = Some(self.wake_at.map_or(d, |w| w.min(d)));
        }
    }

    /// When [`Collector::tick`] next has work (held-back fragments, gaps or partial lines);
    /// `None` when nothing waits. Idle sources are forgotten by ticks the caller makes anyway.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.wake_at
    }

    /// Feeds the text payload of a RHEL netlog `REPLY_LOG` frame (or any plain console text)
    /// received from `src`, for the netdump side to share line handling and crash detection.
    pub fn ingest_text(
        &mut self,
        src: IpAddr,
        text: &[u8],
        now: Instant,
    ) -> Vec<(IpAddr, ConsoleEvent)> {
        let src = src.to_canonical();
        let mut out = Vec::new();
        let mut scratch = std::mem::take(&mut self.scratch);
        let (stream, limits) = self.stream(src, now, &mut out);
        stream.ingest_plain(text, now, limits, &mut scratch);
        let due = stream.poll_timeout(limits);
        out.extend(scratch.drain(..).map(|e| (src, e)));
        self.scratch = scratch;
        self.note_deadline(due);
        out
    }

    /// Feeds a RHEL netlog `REPLY_LOG` frame's payload and `info` offset (see
    /// [`Stream::ingest_netlog`]), received from `src`.
    pub fn ingest_netlog(
        &mut self,
        src: IpAddr,
        offset: u32,
        payload: &[u8],
        now: Instant,
    ) -> Vec<(IpAddr, ConsoleEvent)> {
        let src = src.to_canonical();
        let mut out = Vec::new();
        let mut scratch = std::mem::take(&mut self.scratch);
        let (stream, limits) = self.stream(src, now, &mut out);
        stream.ingest_netlog(offset, payload, now, limits, &mut scratch);
        let due = stream.poll_timeout(limits);
        out.extend(scratch.drain(..).map(|e| (src, e)));
        self.scratch = scratch;
        self.note_deadline(due);
        out
    }

    fn stream(
        &mut self,
        src: IpAddr,
        now: Instant,
        out: &mut Vec<(IpAddr, ConsoleEvent)>,
    ) -> (&mut Stream, &Limits) {
        if !self.streams.contains_key(&src) && self.streams.len() >= self.limits.max_sources {
            // Evict the least recently heard eighth at once: a stream of new (spoofed)
            // sources then costs O(1) per datagram instead of a scan each.
            let mut by_age: Vec<(Instant, IpAddr)> = self
                .streams
                .iter()
                .map(|(ip, s)| (s.last_heard, *ip))
                .collect();
            let n = (self.limits.max_sources / 8).clamp(1, by_age.len().max(1));
            if n < by_age.len() {
                by_age.select_nth_unstable(n);
            }
            for &(_, ip) in by_age.iter().take(n) {
                if let Some(mut s) = self.streams.remove(&ip) {
                    let mut ev = Vec::new();
                    s.flush_all(&mut ev);
                    out.extend(ev.into_iter().map(|e| (ip, e)));
                    self.evicted += 1;
                }
            }
        }
        let stream = self.streams.entry(src).or_insert_with(|| Stream::new(now));
        (stream, &self.limits)
    }

    /// Flushes timed-out fragments, reorder gaps and partial lines; forgets long-idle sources.
    /// Call it every 100–200 ms.
    pub fn tick(&mut self, now: Instant) -> Vec<(IpAddr, ConsoleEvent)> {
        let mut out = Vec::new();
        let mut ev = Vec::new();
        let mut forget = Vec::new();
        let mut wake: Option<Instant> = None;
        for (&ip, s) in &mut self.streams {
            s.tick(now, &self.limits, &mut ev);
            out.extend(ev.drain(..).map(|e| (ip, e)));
            if let Some(d) = s.poll_timeout(&self.limits) {
                wake = Some(wake.map_or(d, |w| w.min(d)));
            }
            if s.is_idle() && now.saturating_duration_since(s.last_heard) >= self.limits.idle_forget
            {
                forget.push(ip);
            }
        }
        for ip in forget {
            self.streams.remove(&ip);
        }
        self.wake_at = wake;
        out
    }

    /// Number of sources tracked.
    pub fn sources(&self) -> usize {
        self.streams.len()
    }

    /// Counters for one source.
    pub fn stats(&self, src: IpAddr) -> Option<&StreamStats> {
        self.streams.get(&src.to_canonical()).map(|s| &s.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip() -> IpAddr {
        "198.18.0.2".parse().unwrap()
    }

    fn lines(ev: &[(IpAddr, ConsoleEvent)]) -> Vec<String> {
        ev.iter()
            .filter_map(|(_, e)| match e {
                ConsoleEvent::Line { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    fn seqs(ev: &[(IpAddr, ConsoleEvent)]) -> Vec<u64> {
        ev.iter()
            .filter_map(|(_, e)| match e {
                ConsoleEvent::Line { seq, .. } => *seq,
                _ => None,
            })
            .collect()
    }

    fn lost(ev: &[(IpAddr, ConsoleEvent)]) -> u64 {
        ev.iter()
            .map(|(_, e)| match e {
                ConsoleEvent::Lost { count } => *count,
                _ => 0,
            })
            .sum()
    }

    fn ext(seq: u64, ts: u64, text: &str) -> Vec<u8> {
        format!("6,{seq},{ts},-;{text}\n").into_bytes()
    }

    #[test]
    fn parses_extended_header_variants() {
        let (h, body) =
            parse_extended(b"6,444,501151268,-;netconsole: network logging started\n").unwrap();
        assert_eq!(
            (h.prefix, h.seq, h.ts_usec, h.flags),
            (6, 444, 501151268, "-")
        );
        assert_eq!(h.release, None);
        assert_eq!(body, b"netconsole: network logging started\n");

        let (h, _) = parse_extended(b"6.4.0,6,444,501151268,-;netconsole: started").unwrap();
        assert_eq!(h.release, Some("6.4.0"));
        assert_eq!(h.seq, 444);

        let (h, body) = parse_extended(b"6,416,1758426,-,ncfrag=16/31; the 2nd chunk.").unwrap();
        assert_eq!(h.frag, Some((16, 31)));
        assert_eq!(body, b" the 2nd chunk.");

        let (h, _) = parse_extended(b"12,339,5140900,-,caller=T1;sysrq: x").unwrap();
        assert_eq!((h.prefix, h.level()), (12, 4));

        // Plain console text, even with commas and semicolons, is not extended.
        assert!(parse_extended(b"[   12.345678] foo, bar; baz\n").is_none());
        assert!(parse_extended(b"hello; world").is_none());
        assert!(parse_extended(b"a,b,c,d;x").is_none());
        assert!(parse_extended(b"6,1,2;x").is_none());
        assert!(parse_extended(b"").is_none());
    }

    #[test]
    fn splits_text_and_fields() {
        let (text, fields) = split_body(
            b"sysrq: Trigger a crash\n cpu=0\n taskname=sh\n release=6.1.0-28-amd64\n msgid=77\n",
        );
        assert_eq!(text, "sysrq: Trigger a crash");
        assert_eq!(
            fields,
            vec![
                ("cpu".into(), "0".into()),
                ("taskname".into(), "sh".into()),
                ("release".into(), "6.1.0-28-amd64".into()),
                ("msgid".into(), "77".into()),
            ]
        );
        let (text, _) = split_body(b"evil \x1b[31mred\r");
        assert_eq!(text, "evil \\x1b[31mred");
    }

    #[test]
    fn plain_text_lines_and_partial_lines() {
        let mut c = Collector::default();
        let t = Instant::now();
        let ev = c.ingest(ip(), b"[    1.000000] first\n[    1.000001] sec", t);
        assert_eq!(lines(&ev), vec!["[    1.000000] first"]);
        let ev = c.ingest(ip(), b"ond\nthird\n", t);
        assert_eq!(lines(&ev), vec!["[    1.000001] second", "third"]);
        if let (_, ConsoleEvent::Line { seq, level, .. }) = &ev[0] {
            assert_eq!((*seq, *level), (None, None));
        }
        // A partial line is flushed after the timeout.
        // The boot banner over plain netconsole marks a reboot.
        let ev = c.ingest(
            ip(),
            b"[    0.000000] Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org)\n",
            t,
        );
        assert_eq!(ev[0].1, ConsoleEvent::Rebooted);
        assert_eq!(lines(&ev).len(), 1);
        let ev = c.ingest(ip(), b"no newline", t);
        assert!(ev.is_empty());
        assert!(c.tick(t + Duration::from_millis(10)).is_empty());
        let ev = c.tick(t + Duration::from_secs(2));
        assert_eq!(lines(&ev), vec!["no newline"]);
    }

    #[test]
    fn netlog_offsets_drop_duplicates_and_mark_gaps_and_restarts() {
        let mut c = Collector::default();
        let t = Instant::now();
        let start = b"[...network console startup...]\n";
        let mut all = c.ingest_netlog(ip(), 0, start, t);
        let off = start.len() as u32;
        all.extend(c.ingest_netlog(ip(), off, b"eth0: link up\nsysrq: ", t));
        // Retransmitted/overlapping frame: only the new tail counts.
        all.extend(c.ingest_netlog(
            ip(),
            off,
            b"eth0: link up\nsysrq: SysRq : Trigger a crash\n",
            t,
        ));
        all.extend(c.ingest_netlog(ip(), off, b"eth0: link up\n", t));
        let next = off + 45;
        // 10 bytes never arrive.
        all.extend(c.ingest_netlog(ip(), next + 10, b"tail\n", t));
        assert_eq!(
            lines(&all),
            vec![
                "[...network console startup...]",
                "eth0: link up",
                "sysrq: SysRq : Trigger a crash",
                " [... 10 bytes of console log lost ...] tail"
            ]
        );
        assert!(
            all.iter()
                .any(|(_, e)| matches!(e, ConsoleEvent::Crash { .. }))
        );
        let st = c.stats(ip()).unwrap();
        assert_eq!((st.netlog_dup_bytes, st.netlog_gap_bytes), (21 + 14, 10));
        // Offset 0 again: the module was reloaded (the host rebooted).
        let ev = c.ingest_netlog(ip(), 0, start, t);
        assert_eq!(ev[0].1, ConsoleEvent::Rebooted);
        // u32 wrap-around is continuous, not a reboot.
        let mut c = Collector::default();
        c.ingest_netlog(ip(), u32::MAX - 2, b"ab", t);
        let ev = c.ingest_netlog(ip(), u32::MAX, b"c\nd\n", t);
        assert_eq!(lines(&ev), vec!["abc", "d"]);
        let ev = c.ingest_netlog(ip(), 3, b"e\n", t);
        assert_eq!(lines(&ev), vec!["e"]);
    }

    #[test]
    fn in_order_records_come_out_at_once() {
        let mut c = Collector::default();
        let t = Instant::now();
        let mut all = Vec::new();
        for s in 10..15 {
            all.extend(c.ingest(ip(), &ext(s, s * 1000, &format!("m{s}")), t));
        }
        assert_eq!(seqs(&all), vec![10, 11, 12, 13, 14]);
        assert_eq!(lost(&all), 0);
    }

    #[test]
    fn reorders_within_window_and_counts_gaps() {
        let mut c = Collector::default();
        let t = Instant::now();
        let mut all = c.ingest(ip(), &ext(1, 1000, "a"), t);
        all.extend(c.ingest(ip(), &ext(3, 3000, "c"), t));
        assert_eq!(seqs(&all), vec![1], "3 waits for 2");
        all.extend(c.ingest(ip(), &ext(2, 2000, "b"), t));
        assert_eq!(seqs(&all), vec![1, 2, 3]);
        // 4 never comes: 5 waits, then the gap is declared lost by tick.
        all.extend(c.ingest(ip(), &ext(5, 5000, "e"), t));
        assert_eq!(seqs(&all), vec![1, 2, 3]);
        all.extend(c.tick(t + Duration::from_millis(50)));
        assert_eq!(seqs(&all), vec![1, 2, 3]);
        all.extend(c.tick(t + Duration::from_millis(300)));
        assert_eq!(seqs(&all), vec![1, 2, 3, 5]);
        assert_eq!(lost(&all), 1);
        // 4 turns up late: emitted, not a reboot, not counted again.
        let late = c.ingest(ip(), &ext(4, 4000, "d"), t + Duration::from_millis(400));
        assert_eq!(seqs(&late), vec![4]);
        assert!(!late.iter().any(|(_, e)| *e == ConsoleEvent::Rebooted));
        let st = c.stats(ip()).unwrap();
        assert_eq!((st.lost, st.late, st.reboots), (1, 1, 0));
    }

    #[test]
    fn msgid_tells_filtered_seqs_from_lost_ones() {
        let mut c = Collector::default();
        let t = Instant::now();
        let m =
            |seq: u64, id: u32| format!("6,{seq},{seq}000,-;m{seq}\n msgid={id}\n").into_bytes();
        let mut all = c.ingest(ip(), &m(100, 7), t);
        // seq jumps by 5 (debug messages below the console loglevel) but msgid is contiguous:
        // emitted at once and nothing is lost.
        all.extend(c.ingest(ip(), &m(105, 8), t));
        assert_eq!(seqs(&all), vec![100, 105]);
        assert_eq!(lost(&all), 0);
        // msgid jumps by 3: two messages were lost, whatever the seq gap says.
        all.extend(c.ingest(ip(), &m(106, 11), t));
        all.extend(c.tick(t + Duration::from_secs(1)));
        assert_eq!(seqs(&all), vec![100, 105, 106]);
        assert_eq!(lost(&all), 2);
    }

    #[test]
    fn reordering_at_stream_start_is_not_a_reboot() {
        let mut c = Collector::default();
        let t = Instant::now();
        let mut all = c.ingest(ip(), &ext(5, 5000, "e"), t);
        all.extend(c.ingest(ip(), &ext(4, 4000, "d"), t));
        all.extend(c.ingest(ip(), &ext(6, 6000, "f"), t));
        assert_eq!(seqs(&all), vec![5, 4, 6]);
        assert!(!all.iter().any(|(_, e)| *e == ConsoleEvent::Rebooted));
        // The late record repeated is a duplicate.
        assert!(c.ingest(ip(), &ext(4, 4000, "d"), t).is_empty());
        assert_eq!(c.stats(ip()).unwrap().duplicates, 1);
        // Later on, a lower seq that was never skipped is a new boot.
        for s in 7..40 {
            all.extend(c.ingest(ip(), &ext(s, s * 1000, "x"), t));
        }
        let ev = c.ingest(ip(), &ext(30, 90_000, "new boot, further in time"), t);
        assert_eq!(ev[0].1, ConsoleEvent::Rebooted);
    }

    #[test]
    fn drops_duplicates() {
        let mut c = Collector::default();
        let t = Instant::now();
        let mut all = Vec::new();
        for s in [1, 2, 2, 3, 1, 3] {
            all.extend(c.ingest(ip(), &ext(s, s * 10, "x"), t));
        }
        assert_eq!(seqs(&all), vec![1, 2, 3]);
        assert_eq!(c.stats(ip()).unwrap().duplicates, 3);
        assert!(!all.iter().any(|(_, e)| *e == ConsoleEvent::Rebooted));
        // A duplicate of a record still waiting in the reorder window is dropped too.
        let mut all = c.ingest(ip(), &ext(5, 50, "y"), t);
        all.extend(c.ingest(ip(), &ext(5, 50, "y"), t));
        all.extend(c.tick(t + Duration::from_secs(1)));
        assert_eq!(seqs(&all), vec![5]);
    }

    #[test]
    fn detects_reboot_when_seq_restarts() {
        let mut c = Collector::default();
        let t = Instant::now();
        let mut all = Vec::new();
        for s in 900..905 {
            all.extend(c.ingest(ip(), &ext(s, 40_000_000 + s, "old boot"), t));
        }
        all.extend(c.ingest(ip(), &ext(0, 0, "Linux version 6.1.0-28-amd64"), t));
        all.extend(c.ingest(ip(), &ext(1, 10, "Command line: ..."), t));
        let kinds: Vec<_> = all.iter().map(|(_, e)| e.clone()).collect();
        let r = kinds
            .iter()
            .position(|e| *e == ConsoleEvent::Rebooted)
            .expect("reboot noticed");
        assert_eq!(seqs(&all), vec![900, 901, 902, 903, 904, 0, 1]);
        assert!(matches!(
            &kinds[r + 1],
            ConsoleEvent::Line { seq: Some(0), .. }
        ));
        assert_eq!(lost(&all), 0);

        // New boot whose first record has a *higher* seq but an older timestamp.
        let mut c = Collector::default();
        let mut all = c.ingest(ip(), &ext(300, 20_000_000, "crashing"), t);
        all.extend(c.ingest(
            ip(),
            &ext(800, 5_000_000, "netconsole: network logging started"),
            t,
        ));
        assert!(all.iter().any(|(_, e)| *e == ConsoleEvent::Rebooted));
        assert_eq!(lost(&all), 0);
    }

    #[test]
    fn reassembles_fragments_in_order_and_out_of_order() {
        let text = "x".repeat(1500) + "END";
        let body = format!("{text}\n cpu=1\n");
        let total = body.len();
        let frag = |off: usize, end: usize| {
            let mut d = format!("4,416,1758426,-,ncfrag={off}/{total};").into_bytes();
            d.extend_from_slice(&body.as_bytes()[off..end]);
            d
        };
        let t = Instant::now();
        for order in [[0usize, 1, 2], [2, 0, 1], [1, 2, 0]] {
            let cuts = [(0, 1000), (1000, 1400), (1400, total)];
            let mut c = Collector::default();
            let mut all = Vec::new();
            for i in order {
                all.extend(c.ingest(ip(), &frag(cuts[i].0, cuts[i].1), t));
            }
            assert_eq!(all.len(), 1, "{order:?}");
            match &all[0].1 {
                ConsoleEvent::Line {
                    seq,
                    level,
                    text: got,
                    fields,
                    ..
                } => {
                    assert_eq!((*seq, *level), (Some(416), Some(4)));
                    assert_eq!(got, &text);
                    assert_eq!(fields, &vec![("cpu".to_string(), "1".to_string())]);
                }
                e => panic!("unexpected {e:?}"),
            }
            // A repeated fragment after completion is a duplicate.
            assert!(c.ingest(ip(), &frag(0, 1000), t).is_empty());
        }
    }

    #[test]
    fn reassembles_the_kernel_documentation_example() {
        // Documentation/networking/netconsole.rst, "Extended console".
        let mut c = Collector::default();
        let t = Instant::now();
        let mut all = c.ingest(ip(), b"6,416,1758426,-,ncfrag=16/31; the 2nd chunk.", t);
        all.extend(c.ingest(ip(), b"6,416,1758426,-,ncfrag=0/31;the first chunk,", t));
        assert_eq!(lines(&all), vec!["the first chunk, the 2nd chunk."]);
        assert_eq!(seqs(&all), vec![416]);
    }

    #[test]
    fn missing_fragment_times_out_with_what_arrived() {
        let mut c = Collector::default();
        let t = Instant::now();
        let ev = c.ingest(ip(), b"6,7,100,-,ncfrag=0/20;0123456789", t);
        assert!(ev.is_empty());
        assert!(c.tick(t + Duration::from_millis(500)).is_empty());
        let ev = c.tick(t + Duration::from_secs(2));
        assert_eq!(lines(&ev), vec!["0123456789 [...]"]);
        assert_eq!(c.stats(ip()).unwrap().incomplete, 1);
        // Fragments with impossible offsets or huge totals are dropped and counted.
        assert!(
            c.ingest(ip(), b"6,8,100,-,ncfrag=15/20;0123456789", t)
                .is_empty()
        );
        assert!(
            c.ingest(ip(), b"6,8,100,-,ncfrag=0/99999999;x", t)
                .is_empty()
        );
        assert_eq!(c.stats(ip()).unwrap().bad_fragments, 2);
    }

    #[test]
    fn fragment_memory_is_bounded() {
        let limits = Limits {
            max_fragmented: 4,
            ..Limits::default()
        };
        let mut c = Collector::new(limits);
        let t = Instant::now();
        let mut all = Vec::new();
        for s in 0..20u64 {
            all.extend(c.ingest(ip(), format!("6,{s},{s},-,ncfrag=0/10;abc").as_bytes(), t));
        }
        // Older incomplete records were pushed out (emitted incomplete) to stay within 4.
        assert_eq!(c.stats(ip()).unwrap().incomplete, 16);
        all.extend(c.tick(t + Duration::from_secs(5)));
        assert_eq!(seqs(&all).len(), 20);
    }

    #[test]
    fn sources_are_bounded_and_kept_apart() {
        let limits = Limits {
            max_sources: 3,
            ..Limits::default()
        };
        let mut c = Collector::new(limits);
        let t = Instant::now();
        for i in 0..10u8 {
            let src = IpAddr::from([198, 18, 0, i]);
            c.ingest(src, b"partial", t + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(c.sources(), 3);
        assert_eq!(c.evicted, 7);
        // IPv4-mapped IPv6 names the same host.
        let mapped: IpAddr = "::ffff:198.18.0.9".parse().unwrap();
        let ev = c.ingest(mapped, b"!\n", t);
        assert_eq!(ev[0].0, IpAddr::from([198, 18, 0, 9]));
        assert_eq!(lines(&ev), vec!["partial!"]);
    }

    #[test]
    fn crash_patterns_match_word_level() {
        for yes in [
            "sysrq: Trigger a crash",
            "[  110.123456] sysrq: Trigger a crash",
            "SysRq : Trigger a crash",
            "sysrq: SysRq : Trigger a crash",
            "Kernel panic - not syncing: sysrq triggered crash",
            "Oops: 0002 [#1] PREEMPT SMP NOPTI",
            "<4>[   3.1] BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "kernel BUG at mm/slub.c:123!",
            "Internal error: Oops: 96000045 [#1] SMP",
            "general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] PREEMPT SMP NOPTI",
        ] {
            assert!(is_crash_line(yes), "{yes}");
        }
        for no in [
            "debug: fixed a bug in foo",
            "BUGS: none",
            "usb 1-1: this is not a BUG: really",
            "oops: lowercase is not the kernel's",
            "systemd[1]: Started Kernel panic handler",
            "sysrq: HELP : loglevel(0-9) reboot(b) crash(c)",
            "sysrq: Trigger",
            "traps: a.out[123] general protection fault ip:401136 sp:7ffd error:0 in a.out",
            "",
        ] {
            assert!(!is_crash_line(no), "{no}");
        }
    }

    #[test]
    fn debian_sysrq_crash_block_yields_crash_events() {
        // The console text of `echo c > /proc/sysrq-trigger` on Debian 12 (linux 6.1).
        let block = [
            "sysrq: Trigger a crash",
            "Kernel panic - not syncing: sysrq triggered crash",
            "CPU: 0 PID: 612 Comm: sh Not tainted 6.1.0-28-amd64 #1  Debian 6.1.119-1",
            "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014",
            "Call Trace:",
            " <TASK>",
            " dump_stack_lvl+0x44/0x5c",
            " panic+0x118/0x2ed",
            " sysrq_handle_crash+0x16/0x20",
            " __handle_sysrq.cold+0x43/0x11b",
            " write_sysrq_trigger+0x24/0x40",
            " proc_reg_write+0x56/0xa0",
            " vfs_write+0xc9/0x3f0",
            " ksys_write+0x6b/0xf0",
            " do_syscall_64+0x55/0xb0",
            " entry_SYSCALL_64_after_hwframe+0x6e/0xd8",
            " </TASK>",
            "Kernel Offset: 0x2a00000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)",
            "---[ end Kernel panic - not syncing: sysrq triggered crash ]---",
        ];
        let mut c = Collector::default();
        let t = Instant::now();
        let mut all = Vec::new();
        for (i, l) in block.iter().enumerate() {
            let seq = 1200 + i as u64;
            let lvl = if i < 2 { 0 } else { 4 };
            let d = format!(
                "{lvl},{seq},{},-;{l}\n cpu=0\n taskname=sh\n",
                95_000_000 + i
            );
            all.extend(c.ingest(ip(), d.as_bytes(), t));
        }
        let crashes: Vec<_> = all
            .iter()
            .filter_map(|(_, e)| match e {
                ConsoleEvent::Crash { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            crashes,
            vec![
                "sysrq: Trigger a crash",
                "Kernel panic - not syncing: sysrq triggered crash"
            ]
        );
        assert_eq!(lines(&all).len(), block.len());
        // The same block over plain netconsole, in arbitrary datagram cuts.
        let text: String = block
            .iter()
            .enumerate()
            .map(|(i, l)| format!("[   95.{:06}] {l}\n", i))
            .collect();
        let mut c = Collector::default();
        let mut all = Vec::new();
        for chunk in text.as_bytes().chunks(37) {
            all.extend(c.ingest(ip(), chunk, t));
        }
        assert_eq!(lines(&all).len(), block.len());
        let n = all
            .iter()
            .filter(|(_, e)| matches!(e, ConsoleEvent::Crash { .. }))
            .count();
        assert_eq!(n, 2);
    }

    proptest! {
        #[test]
        fn never_panics_on_any_datagram(
            dgrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1200), 0..30),
            steps in proptest::collection::vec(0u64..3000, 0..30),
        ) {
            let mut c = Collector::new(Limits { max_sources: 2, max_fragmented: 3, ..Limits::default() });
            let t = Instant::now();
            for (i, d) in dgrams.iter().enumerate() {
                let src = IpAddr::from([198, 18, 0, (i % 3) as u8]);
                let now = t + Duration::from_millis(steps.get(i).copied().unwrap_or(0));
                let _ = c.ingest(src, d, now);
                let _ = c.tick(now);
            }
        }

        #[test]
        fn never_panics_on_header_like_datagrams(
            pre in "[0-9.]{0,6}", prefix in "[0-9]{0,5}", seq in "[0-9]{0,21}", ts in "[0-9]{0,21}",
            flag in "[-c+]{0,2}", off in 0usize..3000, total in 0usize..3000, body in ".{0,40}",
            with_frag in any::<bool>(),
        ) {
            let mut c = Collector::default();
            let t = Instant::now();
            let frag = if with_frag { format!(",ncfrag={off}/{total}") } else { String::new() };
            let d = format!("{pre},{prefix},{seq},{ts},{flag}{frag};{body}\n msgid={off}\n");
            let _ = c.ingest(ip(), d.as_bytes(), t);
            let d = format!("{prefix},{seq},{ts},{flag}{frag};{body}");
            let _ = c.ingest(ip(), d.as_bytes(), t);
            let _ = c.tick(t + Duration::from_secs(10));
        }

        #[test]
        fn drops_swaps_and_duplicates_account_exactly(
            n in 3usize..120,
            drop_mask in proptest::collection::vec(any::<bool>(), 120),
            swap_mask in proptest::collection::vec(any::<bool>(), 120),
            dup_mask in proptest::collection::vec(any::<bool>(), 120),
            with_msgid in any::<bool>(),
        ) {
            // Keep the first and last record so every loss is a gap between two records.
            let kept: Vec<u64> = (0..n as u64)
                .filter(|&i| i == 0 || i == n as u64 - 1 || !drop_mask[i as usize])
                .collect();
            let mut wire: Vec<u64> = Vec::new();
            for (k, &s) in kept.iter().enumerate() {
                wire.push(s);
                if dup_mask[k] {
                    wire.push(s);
                }
            }
            for (k, &swap) in swap_mask.iter().enumerate().take(wire.len() - 1).skip(1) {
                if swap {
                    wire.swap(k, k + 1);
                }
            }
            // The first record on the wire must stay the lowest (a stream starts where it starts).
            let first = wire.iter().position(|&s| s == 0).unwrap();
            wire.swap(0, first);
            let mut c = Collector::default();
            let t = Instant::now();
            let mut all = Vec::new();
            for &s in &wire {
                let d = if with_msgid {
                    format!("6,{},{},-;m\n msgid={}\n", 500 + s, 1000 + s, s).into_bytes()
                } else {
                    ext(500 + s, 1000 + s, "m")
                };
                all.extend(c.ingest(ip(), &d, t));
            }
            all.extend(c.tick(t + Duration::from_secs(1)));
            let expect: Vec<u64> = kept.iter().map(|s| 500 + s).collect();
            prop_assert_eq!(seqs(&all), expect);
            prop_assert_eq!(lost(&all), (n - kept.len()) as u64);
            prop_assert!(!all.iter().any(|(_, e)| *e == ConsoleEvent::Rebooted));
            prop_assert_eq!(c.stats(ip()).unwrap().duplicates, (wire.len() - kept.len()) as u64);
        }

        #[test]
        fn every_record_comes_out_once_in_any_order(perm in Just((0u64..40).collect::<Vec<_>>()).prop_shuffle()) {
            let mut c = Collector::default();
            let t = Instant::now();
            let mut all = c.ingest(ip(), &ext(1000, 1, "first"), t);
            for s in &perm {
                all.extend(c.ingest(ip(), &ext(1001 + s, 2 + s, "m"), t));
            }
            all.extend(c.tick(t + Duration::from_secs(1)));
            let got = seqs(&all);
            prop_assert_eq!(got, (1000..1041).collect::<Vec<_>>());
            prop_assert_eq!(lost(&all), 0);
        }
    }
}
