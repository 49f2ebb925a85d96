//! The receiver's caps and counters: every resource a stranger's datagrams can make it spend
//! (tracked sources, sessions, writer threads, directories, hook runs, queued work, open files)
//! has a cap here, and every time a cap is reached it is counted. The server logs the counters
//! that moved once per interval and writes them to `<dumpdir>/receiver-stats.json`, which
//! `provision receiver --stats` prints. Values and reasons: docs/receiver.md ("Caps").

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Caps (see docs/receiver.md for the reasoning behind each value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// netdump sessions at once (handshaking, dumping, rebooting), all kinds together.
    pub max_sessions: usize,
    /// Sources of netdump traffic (netlog frames, sessions) tracked at once; the longest idle
    /// source without a session is forgotten beyond this.
    pub max_netdump_sources: usize,
    /// A netlog-only source silent this long is forgotten (its writer closed).
    pub source_idle: Duration,
    /// Per-host writer threads at once.
    pub max_writers: usize,
    /// Ops queued to one writer (netlog text, hooks) beyond which new ones are dropped; pages
    /// are not counted here: the session stops requesting them instead.
    pub writer_queue: usize,
    /// Directories created per source per hour, and by all sources per hour.
    pub dirs_per_source_per_hour: u32,
    pub dirs_per_hour: u32,
    /// Hook runs started per minute (all hooks), and running at once.
    pub hooks_per_minute: u32,
    pub max_running_hooks: usize,
    /// Size cap of a netlog `<dir>/log` file.
    pub netlog_log_max: u64,
    /// Console event batches queued to the console writer thread.
    pub console_queue: usize,
    /// Events queued to the events writer thread.
    pub events_queue: usize,
    /// Secure-mode magic file reads in progress at once.
    pub magic_lookups: usize,
    /// Open file descriptors the receiver asks for (RLIMIT_NOFILE soft limit).
    pub fd_budget: u64,
    /// How often moved counters are logged and the stats file rewritten.
    pub report_interval: Duration,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            max_sessions: 64,
            max_netdump_sources: 1024,
            source_idle: Duration::from_secs(60),
            max_writers: 64,
            writer_queue: 4096,
            dirs_per_source_per_hour: 4,
            dirs_per_hour: 256,
            hooks_per_minute: 30,
            max_running_hooks: 8,
            netlog_log_max: 16 * 1024 * 1024,
            console_queue: 1024,
            events_queue: 4096,
            magic_lookups: 32,
            fd_budget: 4096,
            report_interval: Duration::from_secs(60),
        }
    }
}

macro_rules! counters {
    ($($name:ident: $doc:literal,)*) => {
        /// Counters shared by the loop and the writer threads (relaxed atomics).
        #[derive(Debug, Default)]
        pub struct Stats {
            $(#[doc = $doc] pub $name: AtomicU64,)*
        }

        impl Stats {
            /// `(name, value)` of every counter.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    datagrams: "datagrams received",
    sessions_cap: "STARTs ignored: max_sessions sessions in progress",
    sources_evicted: "netdump sources forgotten to stay under max_netdump_sources",
    writers_cap: "file work dropped: max_writers writer threads busy with sessions",
    writer_queue_full: "netlog/hook ops dropped: a host's writer queue was full",
    dirs_source_cap: "directories not created: dirs_per_source_per_hour reached",
    dirs_total_cap: "directories not created: dirs_per_hour reached",
    hooks_rate_cap: "hook runs skipped: hooks_per_minute reached",
    hooks_running_cap: "hook runs skipped: max_running_hooks running",
    netlog_bytes_capped: "netlog bytes dropped at the log size cap",
    console_queue_full: "console events dropped: console writer queue full",
    events_queue_full: "events dropped: events writer queue full",
    events_failed: "events that could not be appended to events.jsonl",
    magic_lookups_cap: "STARTs dropped: max magic lookups in progress",
    invalid_starts: "secure mode: STARTs with a wrong or missing magic (no state kept)",
    wrong_port: "netdump datagrams from the session's address but another port",
    no_session: "netdump replies from a source without a session",
    write_failures: "dump writes that failed (each ends its dump as failed)",
    writer_stalls: "writers seen making no progress for 10 s",
    pages_written: "vmcore pages written",
}

impl Stats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters that are not zero, as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, v) in self.snapshot() {
            m.insert(k.to_string(), v.into());
        }
        serde_json::Value::Object(m)
    }
}

/// Counts directories created per source and in total over a sliding hour. Memory is bounded
/// by `per_hour` (only sources that created a directory in the last hour are remembered).
#[derive(Debug)]
pub struct DirBudget {
    per_source: u32,
    per_hour: u32,
    window: Duration,
    recent: VecDeque<(Instant, IpAddr)>,
    by_source: HashMap<IpAddr, u32>,
}

/// Why a directory was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirRefused {
    SourceCap,
    TotalCap,
}

impl DirBudget {
    pub fn new(per_source: u32, per_hour: u32) -> Self {
        DirBudget {
            per_source,
            per_hour,
            window: Duration::from_secs(3600),
            recent: VecDeque::new(),
            by_source: HashMap::new(),
        }
    }

    /// Takes one directory for `ip` at `now`, or says which cap refuses it.
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> Result<(), DirRefused> {
        while let Some(&(t, old)) = self.recent.front() {
            if now.saturating_duration_since(t) < self.window {
                break;
            }
            self.recent.pop_front();
            if let Some(n) = self.by_source.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.by_source.remove(&old);
                }
            }
        }
        let ip = ip.to_canonical();
        if self.by_source.get(&ip).copied().unwrap_or(0) >= self.per_source {
            return Err(DirRefused::SourceCap);
        }
        if self.recent.len() >= self.per_hour as usize {
            return Err(DirRefused::TotalCap);
        }
        self.recent.push_back((now, ip));
        *self.by_source.entry(ip).or_insert(0) += 1;
        Ok(())
    }

    /// Counts a refusal in `stats`.
    pub fn count(stats: &Stats, r: DirRefused) {
        match r {
            DirRefused::SourceCap => Stats::inc(&stats.dirs_source_cap),
            DirRefused::TotalCap => Stats::inc(&stats.dirs_total_cap),
        }
    }
}

/// Hook runs per minute: a token bucket refilled continuously.
#[derive(Debug)]
pub struct RateLimit {
    per_minute: u32,
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimit {
    pub fn new(per_minute: u32) -> Self {
        RateLimit {
            per_minute,
            tokens: per_minute as f64,
            last: None,
        }
    }

    pub fn allow(&mut self, now: Instant) -> bool {
        if let Some(l) = self.last {
            let dt = now.saturating_duration_since(l).as_secs_f64();
            self.tokens =
                (self.tokens + dt * self.per_minute as f64 / 60.0).min(self.per_minute as f64);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Raises the soft RLIMIT_NOFILE to `budget` (at most the hard limit). Returns the soft limit
/// now in force.
pub fn raise_nofile(budget: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    let want = budget.min(hard);
    if want > soft && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
        return want;
    }
    soft
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_budget_caps_per_source_and_total_and_forgets_after_an_hour() {
        let mut b = DirBudget::new(2, 3);
        let t0 = Instant::now();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        let c: IpAddr = "127.0.0.3".parse().unwrap();
        assert_eq!(b.take(a, t0), Ok(()));
        assert_eq!(b.take(mapped, t0), Ok(()));
        assert_eq!(b.take(a, t0), Err(DirRefused::SourceCap));
        assert_eq!(b.take(c, t0), Ok(()));
        assert_eq!(
            b.take("127.0.0.4".parse().unwrap(), t0),
            Err(DirRefused::TotalCap)
        );
        let later = t0 + Duration::from_secs(3601);
        assert_eq!(b.take(a, later), Ok(()));
        assert!(b.by_source.len() <= 3);
    }

    #[test]
    fn rate_limit_refills_over_time() {
        let mut r = RateLimit::new(2);
        let t0 = Instant::now();
        assert!(r.allow(t0));
        assert!(r.allow(t0));
        assert!(!r.allow(t0));
        assert!(r.allow(t0 + Duration::from_secs(30)));
        assert!(!r.allow(t0 + Duration::from_secs(31)));
    }

    #[test]
    fn stats_snapshot_names_every_counter() {
        let s = Stats::default();
        Stats::inc(&s.sessions_cap);
        let snap = s.snapshot();
        assert!(snap.contains(&("sessions_cap", 1)));
        assert_eq!(s.to_json()["sessions_cap"], 1);
    }
}
