//! One source's console stream: fragments reassembled, records ordered by `seq` in a small
//! window, duplicates dropped, losses counted, reboots noticed (docs/netconsole.md).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::parse::*;
use super::{ConsoleEvent, Limits, StreamStats};

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
    pub(super) last_heard: Instant,
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
