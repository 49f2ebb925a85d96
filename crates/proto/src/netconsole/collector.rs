//! All sources: one [`Stream`] per address, bounded in number, with the earliest deadline of
//! any of them for the driver to sleep until.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::stream::Stream;
use super::{ConsoleEvent, Limits, StreamStats};

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
