//! Console logs on disk: the IO edge for [`netdump_proto::netconsole`] events. The crash-record
//! policy (context, size bound, quiet time) is pure, in `record`; the log files and their rotation
//! are in `files`.
//!
//! Under the dump directory (nothing outside it is ever written):
//!
//! * `console/<ip>.log` (directory 0700, files 0600): every console line of a host, prefixed with
//!   the receive time (RFC 3339, UTC, milliseconds) and, for extended netconsole, `seq=`, `lvl=`
//!   and the kernel timestamp. Rotated by size to `<ip>.log.1` … `<ip>.log.<keep>`.
//! * `<ip>-<YYYY-MM-DD-HH:MM:SS>/log` (0700 / 0600): a crash record, opened by a
//!   [`ConsoleEvent::Crash`]. It starts with the host's last `context_lines` lines (the crash line
//!   included) and keeps growing with the lines that follow until the host reboots, goes quiet
//!   for `record_quiet`, or the record reaches `record_max_bytes`. Opening it appends
//!   `{"event":"crash","host":…,"dir":…,"time":…,"detail":<crash line>}` to `events.jsonl`.
//!
//! Sharing a crash directory with the netdump side: [`ConsoleStore::crash_dir_for`] tells which
//! directory the open record of a host uses (so a netdump session can write `vmcore` there), and
//! [`ConsoleStore::adopt_crash_dir`] hands over a directory the netdump side already created, which
//! the next crash record of that host then uses instead of making its own. Both only accept
//! directories directly inside the dump directory.
//!
//! The `<ip>` in every file name is the datagram's source address as the socket reported it,
//! never text from the datagram. IO errors (disk full, permissions) are logged, counted in
//! [`StoreStats::errors`] and returned, never panic; the failed file is reopened on the next
//! write, so the receiver keeps going. Writes are buffered; everything is flushed at most
//! `flush_interval` after it was handled (given the receiver calls `handle` or `tick` at least
//! that often) and at once for crash lines.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{DirBuilder, File};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::events::{Event, EventKind, EventLog};
use files::open_append;
use record::{Context, RecordBudget};

use netdump_proto::netconsole::ConsoleEvent;

mod files;
mod record;

/// Tunables of the on-disk console logs.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Size at which `<ip>.log` is rotated.
    pub max_log_bytes: u64,
    /// Rotated files kept (`<ip>.log.1` … `<ip>.log.<keep>`); 0 keeps none.
    pub keep_rotated: usize,
    /// Lines before a crash copied into the crash record.
    pub context_lines: usize,
    /// Bytes of those lines kept per host at most.
    pub context_bytes: usize,
    /// Hosts tracked at once; the longest-silent host without an open crash record is
    /// forgotten beyond this (its log is flushed and closed first).
    pub max_hosts: usize,
    /// Rolling log files kept open at once; the least recently written one is closed beyond
    /// this (and reopened when its host writes again).
    pub max_open_logs: usize,
    /// A crash record closes when its host sent nothing for this long.
    pub record_quiet: Duration,
    /// A crash record stops growing at this size.
    pub record_max_bytes: u64,
    /// Longest time a handled line may sit in a buffer.
    pub flush_interval: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            max_log_bytes: 16 * 1024 * 1024,
            keep_rotated: 4,
            context_lines: 200,
            context_bytes: 128 * 1024,
            max_hosts: 1024,
            max_open_logs: 256,
            record_quiet: Duration::from_secs(60),
            record_max_bytes: 8 * 1024 * 1024,
            flush_interval: Duration::from_millis(500),
        }
    }
}

/// Counters for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub lines: u64,
    pub lost: u64,
    pub reboots: u64,
    pub crashes: u64,
    pub rotations: u64,
    pub errors: u64,
}

#[derive(Debug)]
struct CrashRecord {
    dir: PathBuf,
    file: Option<BufWriter<File>>,
    budget: RecordBudget,
}

#[derive(Debug)]
struct HostLog {
    file: Option<BufWriter<File>>,
    size: u64,
    context: Context,
    record: Option<CrashRecord>,
    /// A directory the netdump side created for this host's current crash.
    adopted: Option<PathBuf>,
    last_line: DateTime<Utc>,
}

/// Writes console events of every host below the dump directory. See the module docs.
#[derive(Debug)]
pub struct ConsoleStore {
    dump_dir: PathBuf,
    console_dir: PathBuf,
    cfg: ConsoleConfig,
    events: EventLog,
    hosts: HashMap<IpAddr, HostLog>,
    last_flush: Option<DateTime<Utc>>,
    time_cache: (i64, String),
    line: String,
    pub stats: StoreStats,
    /// Caps on crash directories (receiver::limits), when the receiver shares its budget.
    budget: Option<(
        std::sync::Arc<std::sync::Mutex<super::limits::DirBudget>>,
        std::sync::Arc<super::limits::Stats>,
    )>,
}

impl ConsoleStore {
    /// A store rooted at `dump_dir` (made absolute; it must exist when the first line arrives).
    pub fn new(dump_dir: &Path, cfg: ConsoleConfig) -> Self {
        let dump_dir = std::path::absolute(dump_dir).unwrap_or_else(|_| dump_dir.to_path_buf());
        ConsoleStore {
            console_dir: dump_dir.join("console"),
            events: EventLog::new(&dump_dir),
            dump_dir,
            cfg,
            hosts: HashMap::new(),
            last_flush: None,
            time_cache: (i64::MIN, String::new()),
            line: String::with_capacity(256),
            stats: StoreStats::default(),
            budget: None,
        }
    }

    /// Crash records then make directories only within `budget` (per source and per hour);
    /// a refused record keeps its lines in `console/<ip>.log` only and emits no event.
    pub fn set_dir_budget(
        &mut self,
        budget: std::sync::Arc<std::sync::Mutex<super::limits::DirBudget>>,
        stats: std::sync::Arc<super::limits::Stats>,
    ) {
        self.budget = Some((budget, stats));
    }

    pub fn dump_dir(&self) -> &Path {
        &self.dump_dir
    }

    /// Path of a host's current console log.
    pub fn log_path(&self, ip: IpAddr) -> PathBuf {
        self.console_dir
            .join(format!("{}.log", super::store::host_name(ip)))
    }

    /// The directory of the host's open crash record, if one is open.
    pub fn crash_dir_for(&self, ip: IpAddr) -> Option<&Path> {
        self.hosts
            .get(&ip.to_canonical())?
            .record
            .as_ref()
            .map(|r| r.dir.as_path())
    }

    /// Hands over a crash directory the netdump side created for `ip`; the host's next crash
    /// record writes its `log` there. Rejected (`InvalidInput`) unless `dir` is a directory
    /// directly inside the dump directory.
    pub fn adopt_crash_dir(&mut self, ip: IpAddr, dir: &Path) -> io::Result<()> {
        let ok = dir.parent() == Some(self.dump_dir.as_path())
            && dir.components().all(|c| !matches!(c, Component::ParentDir))
            && std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
        if !ok {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "console store: crash dir {} for {ip} is not a directory inside {}; \
                     pass a directory the receiver created under its dump dir",
                    dir.display(),
                    self.dump_dir.display()
                ),
            ));
        }
        let now = Utc::now();
        self.host(ip.to_canonical(), now).adopted = Some(dir.to_path_buf());
        Ok(())
    }

    fn host(&mut self, ip: IpAddr, now: DateTime<Utc>) -> &mut HostLog {
        if !self.hosts.contains_key(&ip) && self.hosts.len() >= self.cfg.max_hosts.max(1) {
            self.forget_one_host(now);
        }
        let (lines, bytes) = (self.cfg.context_lines, self.cfg.context_bytes);
        self.hosts.entry(ip).or_insert_with(|| HostLog {
            file: None,
            size: 0,
            context: Context::new(lines, bytes),
            record: None,
            adopted: None,
            last_line: now,
        })
    }

    /// Drops the longest-silent host, preferring one without an open crash record.
    fn forget_one_host(&mut self, now: DateTime<Utc>) {
        let victim = self
            .hosts
            .iter()
            .min_by_key(|(_, h)| (h.record.is_some(), h.last_line))
            .map(|(&ip, _)| ip);
        let Some(ip) = victim else { return };
        let _ = self.close_record(ip, now);
        if let Some(mut h) = self.hosts.remove(&ip)
            && let Some(mut f) = h.file.take()
            && let Err(e) = f.flush()
        {
            self.error(&format!("flush console log of {ip}: {e}"));
        }
    }

    /// Keeps the number of open rolling logs below `max_open_logs` before one more is opened.
    fn limit_open_logs(&mut self) {
        let open = self.hosts.values().filter(|h| h.file.is_some()).count();
        if open < self.cfg.max_open_logs.max(1) {
            return;
        }
        let victim = self
            .hosts
            .iter()
            .filter(|(_, h)| h.file.is_some())
            .min_by_key(|(_, h)| h.last_line)
            .map(|(&ip, _)| ip);
        if let Some(ip) = victim
            && let Some(h) = self.hosts.get_mut(&ip)
            && let Some(mut f) = h.file.take()
            && let Err(e) = f.flush()
        {
            self.error(&format!("flush console log of {ip}: {e}"));
        }
    }

    /// Records one event of host `ip` received at `now`. Errors are already logged and counted;
    /// callers may ignore them.
    pub fn handle(
        &mut self,
        ip: IpAddr,
        event: ConsoleEvent,
        now: DateTime<Utc>,
    ) -> io::Result<()> {
        let ip = ip.to_canonical();
        let result = match event {
            ConsoleEvent::Line {
                seq,
                level,
                ts_usec,
                text,
                fields,
            } => {
                self.stats.lines += 1;
                self.format_line(now, seq, level, ts_usec, &text, &fields);
                self.write_line(ip, now)
            }
            ConsoleEvent::Lost { count } => {
                self.stats.lost = self.stats.lost.saturating_add(count);
                self.format_note(now, &format!("-- {count} console message(s) lost --"));
                self.write_line(ip, now)
            }
            ConsoleEvent::Rebooted => {
                self.stats.reboots += 1;
                self.format_note(now, "-- sender rebooted --");
                let r = self.write_line(ip, now);
                let r2 = self.close_record(ip, now);
                r.and(r2)
            }
            ConsoleEvent::Crash { text } => {
                let r = self.open_record(ip, &text, now);
                let r2 = self.flush();
                r.and(r2)
            }
        };
        let due = self
            .last_flush
            .is_none_or(|t| (now - t).to_std().unwrap_or_default() >= self.cfg.flush_interval);
        if due {
            let r = self.flush();
            self.last_flush = Some(now);
            return result.and(r);
        }
        result
    }

    /// Flushes buffers and closes crash records whose host went quiet. Call it every few hundred
    /// milliseconds from the receiver loop.
    pub fn tick(&mut self, now: DateTime<Utc>) -> io::Result<()> {
        let quiet: Vec<IpAddr> = self
            .hosts
            .iter()
            .filter(|(_, h)| {
                h.record.is_some() && record::gone_quiet(h.last_line, now, self.cfg.record_quiet)
            })
            .map(|(&ip, _)| ip)
            .collect();
        let mut result = Ok(());
        for ip in quiet {
            result = result.and(self.close_record(ip, now));
        }
        self.last_flush = Some(now);
        result.and(self.flush())
    }

    /// Flushes every buffered line to the kernel.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        let mut errors = Vec::new();
        for (ip, h) in &mut self.hosts {
            if let Some(f) = &mut h.file
                && let Err(e) = f.flush()
            {
                h.file = None;
                errors.push(format!("flush console log of {ip}: {e}"));
                result = result.and(Err(e));
            }
            if let Some(r) = &mut h.record
                && let Some(f) = &mut r.file
                && let Err(e) = f.flush()
            {
                r.file = None;
                errors.push(format!("flush crash log {}/log: {e}", r.dir.display()));
                result = result.and(Err(e));
            }
        }
        for e in errors {
            self.error(&e);
        }
        result
    }

    fn error(&mut self, what: &str) {
        self.stats.errors += 1;
        // Log the first errors and then every 1000th, so a full disk does not flood the journal.
        if self.stats.errors <= 10 || self.stats.errors.is_multiple_of(1000) {
            tracing::warn!(
                errors = self.stats.errors,
                "console store: {what} (check free space and permissions of the dump dir)"
            );
        }
    }

    fn timestamp(&mut self, now: DateTime<Utc>) {
        let secs = now.timestamp();
        if self.time_cache.0 != secs {
            self.time_cache = (secs, now.format("%Y-%m-%dT%H:%M:%S").to_string());
        }
        self.line.clear();
        self.line.push_str(&self.time_cache.1);
        let _ = write!(
            self.line,
            ".{:03}Z ",
            now.timestamp_subsec_millis().min(999)
        );
    }

    fn format_line(
        &mut self,
        now: DateTime<Utc>,
        seq: Option<u64>,
        level: Option<u8>,
        ts_usec: Option<u64>,
        text: &str,
        fields: &[(String, String)],
    ) {
        self.timestamp(now);
        if let Some(s) = seq {
            let _ = write!(self.line, "seq={s} ");
        }
        if let Some(l) = level {
            let _ = write!(self.line, "lvl={l} ");
        }
        if let Some(ts) = ts_usec {
            let _ = write!(self.line, "[{:5}.{:06}] ", ts / 1_000_000, ts % 1_000_000);
        }
        self.line.push_str(text);
        if !fields.is_empty() {
            self.line.push_str(" |");
            for (k, v) in fields {
                let _ = write!(self.line, " {k}={v}");
            }
        }
        self.line.push('\n');
    }

    fn format_note(&mut self, now: DateTime<Utc>, note: &str) {
        self.timestamp(now);
        self.line.push_str(note);
        self.line.push('\n');
    }

    /// Writes `self.line` to the host's log, ring buffer and open crash record.
    fn write_line(&mut self, ip: IpAddr, now: DateTime<Utc>) -> io::Result<()> {
        let len = self.line.len() as u64;
        let mut result = Ok(());
        if self.host(ip, now).size + len > self.cfg.max_log_bytes && self.host(ip, now).size > 0 {
            result = self.rotate(ip);
        }
        if self.host(ip, now).file.is_none() {
            self.limit_open_logs();
            match self.open_log(ip) {
                Ok((f, size)) => {
                    let h = self.host(ip, now);
                    h.file = Some(f);
                    h.size = size;
                }
                Err(e) => {
                    self.error(&format!("cannot open {}: {e}", self.log_path(ip).display()));
                    result = Err(e);
                }
            }
        }
        let line = &self.line;
        let Some(h) = self.hosts.get_mut(&ip) else {
            return result;
        };
        h.last_line = now;
        let mut errors: Vec<String> = Vec::new();
        if let Some(f) = &mut h.file {
            match f.write_all(line.as_bytes()) {
                Ok(()) => h.size += len,
                Err(e) => {
                    h.file = None;
                    errors.push(format!("write console log of {ip}: {e}"));
                    result = Err(e);
                }
            }
        }
        h.context.push(line);
        if let Some(r) = &mut h.record
            && let Some(data) = r.budget.admit(line)
        {
            if r.file.is_none() {
                match open_append(&r.dir.join("log")) {
                    Ok(f) => r.file = Some(f),
                    Err(e) => {
                        errors.push(format!("cannot open {}/log: {e}", r.dir.display()));
                        result = Err(e);
                    }
                }
            }
            if let Some(f) = &mut r.file {
                match f.write_all(data.as_bytes()) {
                    Ok(()) => r.budget.wrote(data.len()),
                    Err(e) => {
                        r.file = None;
                        errors.push(format!("write {}/log: {e}", r.dir.display()));
                        result = Err(e);
                    }
                }
            }
        }
        for e in errors {
            self.error(&e);
        }
        result
    }

    fn open_log(&self, ip: IpAddr) -> io::Result<(BufWriter<File>, u64)> {
        files::ensure_private_dir(&self.console_dir)?;
        let f = open_append(&self.log_path(ip))?;
        let size = f.get_ref().metadata()?.len();
        Ok((f, size))
    }

    fn rotate(&mut self, ip: IpAddr) -> io::Result<()> {
        let base = self.log_path(ip);
        let mut result = Ok(());
        if let Some(h) = self.hosts.get_mut(&ip) {
            if let Some(mut f) = h.file.take() {
                result = f.flush();
            }
            h.size = 0;
        }
        result = result.and(files::rotate(&base, self.cfg.keep_rotated));
        self.stats.rotations += 1;
        if let Err(e) = &result {
            self.error(&format!("rotate {}: {e}", base.display()));
        }
        result
    }

    fn open_record(&mut self, ip: IpAddr, crash_line: &str, now: DateTime<Utc>) -> io::Result<()> {
        if self.host(ip, now).record.is_some() {
            return Ok(()); // the same crash's next line (e.g. "Kernel panic" after "sysrq:")
        }
        self.stats.crashes += 1;
        if let Some((budget, stats)) = &self.budget {
            let r = budget
                .lock()
                .map_err(|_| super::limits::DirRefused::TotalCap)
                .and_then(|mut b| b.take(ip, std::time::Instant::now()));
            if let Err(why) = r {
                super::limits::DirBudget::count(stats, why);
                return Ok(());
            }
        }
        let adopted = self.host(ip, now).adopted.take();
        let dir = match adopted {
            Some(d) if d.is_dir() => d,
            _ => self.dump_dir.join(super::store::crash_dir_name(ip, now)),
        };
        let made = match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => Ok(()),
            // Same second as a netdump directory (or an earlier record): share it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match std::fs::symlink_metadata(&dir) {
                    Ok(m) if m.is_dir() => Ok(()),
                    _ => Err(io::Error::other(format!(
                        "{} exists and is not a directory",
                        dir.display()
                    ))),
                }
            }
            Err(e) => Err(e),
        };
        let mut result = Ok(());
        let mut record = CrashRecord {
            dir: dir.clone(),
            file: None,
            budget: RecordBudget::new(self.cfg.record_max_bytes),
        };
        match made.and_then(|()| open_append(&dir.join("log"))) {
            Ok(mut f) => {
                let mut w = Ok(());
                for l in self
                    .hosts
                    .get(&ip)
                    .map(|h| h.context.lines())
                    .into_iter()
                    .flatten()
                {
                    w = w.and(f.write_all(l.as_bytes()));
                    record.budget.wrote(l.len());
                }
                w = w.and(f.flush());
                match w {
                    Ok(()) => record.file = Some(f),
                    Err(e) => {
                        self.error(&format!("write {}/log: {e}", dir.display()));
                        result = Err(e);
                    }
                }
            }
            Err(e) => {
                self.error(&format!("create crash record {}/log: {e}", dir.display()));
                result = Err(e);
            }
        }
        // The record stays open even when its file failed, so one crash makes one event.
        self.host(ip, now).record = Some(record);
        let event = Event {
            event: EventKind::Crash,
            host: ip.to_string(),
            dir: dir.display().to_string(),
            time: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            detail: Some(crash_line.to_owned()),
            title: None,
            signature: None,
        };
        if let Err(e) = self.events.append(&event) {
            self.error(&format!("append {}: {e}", self.events.path().display()));
            result = result.and(Err(e));
        }
        tracing::info!(host = %ip, dir = %dir.display(), "console: crash seen: {crash_line}");
        result
    }

    fn close_record(&mut self, ip: IpAddr, now: DateTime<Utc>) -> io::Result<()> {
        let Some(h) = self.hosts.get_mut(&ip) else {
            return Ok(());
        };
        let Some(mut r) = h.record.take() else {
            return Ok(());
        };
        let Some(mut f) = r.file.take() else {
            return Ok(()); // no record on disk: nothing to triage
        };
        if let Err(e) = f.flush() {
            self.error(&format!("flush {}/log: {e}", r.dir.display()));
            return Err(e);
        }
        drop(f);
        self.triage_record(ip, &r.dir, now)
    }

    /// Triage of a closed crash record (docs/triage.md), on this store's thread, never the
    /// packet loop: `<dir>/triage.json` unless the directory has one already (the dump's own
    /// kernel log, triaged by the dump sink or the netdump writer, tells more than the console
    /// and wins), and a `crash_triaged` event with the fatal crash's title and signature.
    fn triage_record(&mut self, ip: IpAddr, dir: &Path, now: DateTime<Utc>) -> io::Result<()> {
        let fatal = super::store::triage_log_into(dir, false);
        let (title, signature) = fatal.unzip();
        let event = Event {
            event: EventKind::CrashTriaged,
            host: ip.to_string(),
            dir: dir.display().to_string(),
            time: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            detail: Some("console crash record closed".into()),
            title,
            signature,
        };
        if let Err(e) = self.events.append(&event) {
            self.error(&format!("append {}: {e}", self.events.path().display()));
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdump_proto::netconsole::Collector;
    use std::os::unix::fs::MetadataExt;
    use std::time::Instant;

    fn ip() -> IpAddr {
        "198.18.0.2".parse().unwrap()
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T16:08:13.250Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn line(text: &str) -> ConsoleEvent {
        ConsoleEvent::Line {
            seq: None,
            level: None,
            ts_usec: None,
            text: text.into(),
            fields: vec![],
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn writes_prefixed_lines_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ConsoleStore::new(dir.path(), ConsoleConfig::default());
        s.handle(ip(), line("plain text"), t0()).unwrap();
        s.handle(
            ip(),
            ConsoleEvent::Line {
                seq: Some(412),
                level: Some(6),
                ts_usec: Some(12_345_678),
                text: "e1000: eth0 NIC Link is Up".into(),
                fields: vec![("cpu".into(), "1".into())],
            },
            t0(),
        )
        .unwrap();
        s.handle(ip(), ConsoleEvent::Lost { count: 3 }, t0())
            .unwrap();
        s.flush().unwrap();
        let log = s.log_path(ip());
        assert_eq!(log, dir.path().join("console/198.18.0.2.log"));
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text,
            "2026-11-26T16:08:13.250Z plain text\n\
             2026-11-26T16:08:13.250Z seq=412 lvl=6 [   12.345678] e1000: eth0 NIC Link is Up | cpu=1\n\
             2026-11-26T16:08:13.250Z -- 3 console message(s) lost --\n"
        );
        assert_eq!(mode(&dir.path().join("console")), 0o700);
        assert_eq!(mode(&log), 0o600);
    }

    #[test]
    fn lines_reach_disk_within_flush_interval_without_explicit_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ConsoleStore::new(dir.path(), ConsoleConfig::default());
        s.handle(ip(), line("one"), t0()).unwrap();
        s.handle(ip(), line("two"), t0()).unwrap();
        let later = t0() + chrono::Duration::milliseconds(600);
        s.handle(ip(), line("three"), later).unwrap();
        let text = std::fs::read_to_string(s.log_path(ip())).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn huge_loss_counts_saturate() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ConsoleStore::new(dir.path(), ConsoleConfig::default());
        for _ in 0..2 {
            s.handle(
                ip(),
                ConsoleEvent::Lost {
                    count: u64::MAX - 1,
                },
                t0(),
            )
            .unwrap();
        }
        assert_eq!(s.stats.lost, u64::MAX);
    }

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ConsoleConfig {
            max_log_bytes: 200,
            keep_rotated: 2,
            ..ConsoleConfig::default()
        };
        let mut s = ConsoleStore::new(dir.path(), cfg);
        for i in 0..40 {
            s.handle(ip(), line(&format!("line {i:03} padding padding")), t0())
                .unwrap();
        }
        s.flush().unwrap();
        let base = s.log_path(ip());
        let mut files: Vec<String> = std::fs::read_dir(dir.path().join("console"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(
            files,
            vec!["198.18.0.2.log", "198.18.0.2.log.1", "198.18.0.2.log.2"]
        );
        for f in &files {
            let p = dir.path().join("console").join(f);
            assert!(std::fs::metadata(&p).unwrap().len() <= 200, "{f}");
            assert_eq!(mode(&p), 0o600);
        }
        // The newest line is in the live file, older ones in .1, and lines are never split.
        let live = std::fs::read_to_string(&base).unwrap();
        assert!(live.ends_with("line 039 padding padding\n"));
        let one = std::fs::read_to_string(dir.path().join("console/198.18.0.2.log.1")).unwrap();
        let last_of_one: u32 = one.lines().last().unwrap()[30..33].parse().unwrap();
        let first_of_live: u32 = live.lines().next().unwrap()[30..33].parse().unwrap();
        assert_eq!(last_of_one + 1, first_of_live);
        // 50-byte lines, 4 per 200-byte file: 40 lines fill 10 files, so 9 rotations.
        assert_eq!(s.stats.rotations, 9);
    }

    #[test]
    fn crash_record_has_context_and_following_lines_and_event() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ConsoleConfig {
            context_lines: 3,
            ..ConsoleConfig::default()
        };
        let mut s = ConsoleStore::new(dir.path(), cfg);
        let mut c = Collector::default();
        let t = Instant::now();
        let text = "[   90.1] old 1\n[   90.2] old 2\n[   90.3] before\n\
                    [   95.0] sysrq: Trigger a crash\n\
                    [   95.0] Kernel panic - not syncing: sysrq triggered crash\n\
                    [   95.0] CPU: 0 PID: 612 Comm: sh Not tainted 6.1.0-28-amd64 #1  Debian 6.1.119-1\n";
        for (ip, ev) in c.ingest(ip(), text.as_bytes(), t) {
            s.handle(ip, ev, t0()).unwrap();
        }
        let rec = dir.path().join("198.18.0.2-2026-11-26-16:08:13");
        assert_eq!(s.crash_dir_for(ip()), Some(rec.as_path()));
        assert_eq!(mode(&rec), 0o700);
        assert_eq!(mode(&rec.join("log")), 0o600);
        // Written at once (flushed on the crash), before any tick.
        let log = std::fs::read_to_string(rec.join("log")).unwrap();
        assert!(
            !log.contains("old 1"),
            "only the last 3 lines before: {log}"
        );
        assert!(log.contains("old 2\n"));
        assert!(log.contains("sysrq: Trigger a crash\n"));
        // Lines after the crash keep going to the record; one crash makes one record.
        let later = t0() + chrono::Duration::seconds(2);
        s.handle(ip(), line("Call Trace:"), later).unwrap();
        s.handle(ip(), line(" panic+0x118/0x2ed"), later).unwrap();
        s.tick(later).unwrap();
        let log = std::fs::read_to_string(rec.join("log")).unwrap();
        assert!(log.ends_with(" panic+0x118/0x2ed\n"), "{log}");
        assert!(log.contains("Kernel panic - not syncing"));
        assert!(log.contains("Comm: sh"));
        let events =
            EventLog::parse(&std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, EventKind::Crash);
        assert_eq!(events[0].host, "198.18.0.2");
        assert_eq!(events[0].dir, rec.display().to_string());
        assert_eq!(events[0].time, "2026-11-26T16:08:13.250Z");
        assert_eq!(
            events[0].detail.as_deref(),
            Some("[   95.0] sysrq: Trigger a crash")
        );
        let raw = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        assert!(raw.starts_with("{\"event\":\"crash\",\"host\":\"198.18.0.2\",\"dir\":\""));
        // Quiet host: the record closes; the reboot's lines stay out of it.
        let quiet = later + chrono::Duration::seconds(120);
        s.tick(quiet).unwrap();
        assert_eq!(s.crash_dir_for(ip()), None);
        s.handle(ip(), line("Linux version 6.1.0-28-amd64"), quiet)
            .unwrap();
        s.flush().unwrap();
        assert!(
            !std::fs::read_to_string(rec.join("log"))
                .unwrap()
                .contains("Linux version")
        );
        // Every line also went to the rolling log.
        let all = std::fs::read_to_string(s.log_path(ip())).unwrap();
        assert_eq!(all.lines().count(), 9);
    }

    #[test]
    fn reboot_closes_record_and_next_crash_opens_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ConsoleStore::new(dir.path(), ConsoleConfig::default());
        s.handle(ip(), line("Oops: 0002 [#1] SMP"), t0()).unwrap();
        s.handle(
            ip(),
            ConsoleEvent::Crash {
                text: "Oops: 0002 [#1] SMP".into(),
            },
            t0(),
        )
        .unwrap();
        assert!(s.crash_dir_for(ip()).is_some());
        let t1 = t0() + chrono::Duration::seconds(90);
        s.handle(ip(), ConsoleEvent::Rebooted, t1).unwrap();
        assert_eq!(s.crash_dir_for(ip()), None);
        s.handle(
            ip(),
            ConsoleEvent::Crash {
                text: "BUG: x".into(),
            },
            t1,
        )
        .unwrap();
        let second = dir.path().join("198.18.0.2-2026-11-26-16:09:43");
        assert_eq!(s.crash_dir_for(ip()), Some(second.as_path()));
        let ev =
            EventLog::parse(&std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap());
        let kinds: Vec<EventKind> = ev.iter().map(|e| e.event).collect();
        assert_eq!(
            kinds,
            [EventKind::Crash, EventKind::CrashTriaged, EventKind::Crash],
            "the reboot closed (and triaged) the first record"
        );
        assert_eq!(s.stats.crashes, 2);
    }

    /// A closed record is triaged on the store's thread: `triage.json` beside it and a
    /// `crash_triaged` event with the title and signature; a `triage.json` already there (the
    /// dump's, from the sink) is kept.
    #[test]
    fn closed_record_is_triaged() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ConsoleStore::new(dir.path(), ConsoleConfig::default());
        let mut c = Collector::default();
        let t = Instant::now();
        let text = "[  200.1] INFO: task sh:812 blocked for more than 10 seconds.\n\
                    [  200.1]       Not tainted 6.1.0-50-amd64 #1 Debian 6.1.158-1\n\
                    [  200.1] Call Trace:\n\
                    [  200.1]  <TASK>\n\
                    [  200.1]  __schedule+0x34d/0x9e0\n\
                    [  200.1]  schedule+0x5a/0xd0\n\
                    [  200.1]  percpu_rwsem_wait+0x113/0x130\n\
                    [  200.1]  __percpu_down_read+0x6d/0xb0\n\
                    [  200.2] Kernel panic - not syncing: hung_task: blocked tasks\n";
        for (ip, ev) in c.ingest(ip(), text.as_bytes(), t) {
            s.handle(ip, ev, t0()).unwrap();
        }
        let rec = s.crash_dir_for(ip()).unwrap().to_path_buf();
        assert!(!rec.join("triage.json").exists(), "not before it closes");
        let quiet = t0() + chrono::Duration::seconds(120);
        s.tick(quiet).unwrap();
        assert_eq!(s.crash_dir_for(ip()), None);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(rec.join("triage.json")).unwrap()).unwrap();
        assert_eq!(json["source"], "log");
        assert_eq!(
            json["crashes"][0]["title"],
            "INFO: task hung in percpu_rwsem_wait"
        );
        assert_eq!(mode(&rec.join("triage.json")), 0o600);
        let ev =
            EventLog::parse(&std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap());
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].event, EventKind::CrashTriaged);
        assert_eq!(ev[1].dir, rec.display().to_string());
        assert_eq!(ev[1].time, "2026-11-26T16:10:13.250Z");
        assert_eq!(
            ev[1].title.as_deref(),
            Some("INFO: task hung in percpu_rwsem_wait")
        );
        assert_eq!(
            ev[1].signature.as_deref(),
            json["crashes"][0]["signature"].as_str()
        );
        let raw = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        assert!(
            raw.contains("{\"event\":\"crash_triaged\",\"host\":\"198.18.0.2\""),
            "{raw}"
        );

        // The next crash's directory already holds the dump's triage: it stays.
        let t1 = quiet + chrono::Duration::seconds(1);
        s.handle(
            ip(),
            ConsoleEvent::Crash {
                text: "sysrq: Trigger a crash".into(),
            },
            t1,
        )
        .unwrap();
        let rec2 = s.crash_dir_for(ip()).unwrap().to_path_buf();
        std::fs::write(rec2.join("triage.json"), "{\"source\":\"dmesg.1\"}").unwrap();
        s.handle(ip(), ConsoleEvent::Rebooted, t1).unwrap();
        assert_eq!(
            std::fs::read_to_string(rec2.join("triage.json")).unwrap(),
            "{\"source\":\"dmesg.1\"}"
        );
        let ev =
            EventLog::parse(&std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap());
        assert_eq!(ev.last().unwrap().event, EventKind::CrashTriaged);
        assert_eq!(ev.last().unwrap().dir, rec2.display().to_string());
    }

    #[test]
    fn adopts_netdump_dir_only_inside_dump_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ConsoleStore::new(dir.path(), ConsoleConfig::default());
        let nd = dir.path().join("198.18.0.2-2026-11-26-16:00:00");
        std::fs::create_dir(&nd).unwrap();
        std::fs::write(nd.join("vmcore-incomplete"), b"").unwrap();
        let other = tempfile::tempdir().unwrap();
        assert!(s.adopt_crash_dir(ip(), other.path()).is_err());
        assert!(s.adopt_crash_dir(ip(), &dir.path().join("nope")).is_err());
        assert!(
            s.adopt_crash_dir(ip(), &nd.join("..").join(nd.file_name().unwrap()))
                .is_err()
        );
        s.adopt_crash_dir(ip(), &nd).unwrap();
        s.handle(ip(), line("Kernel panic - not syncing: x"), t0())
            .unwrap();
        s.handle(
            ip(),
            ConsoleEvent::Crash {
                text: "Kernel panic - not syncing: x".into(),
            },
            t0(),
        )
        .unwrap();
        assert_eq!(s.crash_dir_for(ip()), Some(nd.as_path()));
        assert!(
            std::fs::read_to_string(nd.join("log"))
                .unwrap()
                .contains("Kernel panic")
        );
    }

    #[test]
    fn hosts_open_files_and_context_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ConsoleConfig {
            max_hosts: 4,
            max_open_logs: 2,
            context_lines: 100,
            context_bytes: 100,
            ..ConsoleConfig::default()
        };
        let mut s = ConsoleStore::new(dir.path(), cfg);
        for round in 0..3 {
            for i in 0..10u8 {
                let h = IpAddr::from([198, 18, 1, i]);
                let t = t0() + chrono::Duration::seconds(i64::from(round * 10 + i));
                s.handle(h, line(&format!("r{round} host {i}")), t).unwrap();
                assert!(s.hosts.len() <= 4);
                assert!(s.hosts.values().filter(|h| h.file.is_some()).count() <= 2);
            }
        }
        s.flush().unwrap();
        // Every line still reached its host's log, across closes and reopens.
        for i in 0..10u8 {
            let p = s.log_path(IpAddr::from([198, 18, 1, i]));
            assert_eq!(std::fs::read_to_string(p).unwrap().lines().count(), 3);
        }
        // 100 context bytes hold three 31-byte lines, not 100 lines.
        let h = IpAddr::from([198, 18, 1, 9]);
        for k in 0..5 {
            s.handle(h, line(&format!("ctx {k}")), t0()).unwrap();
        }
        let kept: Vec<&String> = s.hosts[&h].context.lines().collect();
        assert_eq!(kept.len(), 3);
        assert!(kept.iter().map(|l| l.len()).sum::<usize>() <= 100);
        assert_eq!(
            kept.last().unwrap().trim_end().split(' ').next_back(),
            Some("4")
        );
    }

    fn arb_event() -> impl proptest::strategy::Strategy<Value = (u8, ConsoleEvent)> {
        use proptest::prelude::*;
        let text = proptest::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| netdump_proto::netconsole::sanitize(&b));
        (
            0u8..3,
            prop_oneof![
                (
                    proptest::option::of(any::<u64>()),
                    proptest::option::of(0u8..8),
                    text.clone()
                )
                    .prop_map(|(seq, level, text)| ConsoleEvent::Line {
                        seq,
                        level,
                        ts_usec: seq,
                        text,
                        fields: vec![("k".into(), "v".into())],
                    }),
                any::<u64>().prop_map(|count| ConsoleEvent::Lost { count }),
                Just(ConsoleEvent::Rebooted),
                text.prop_map(|text| ConsoleEvent::Crash { text }),
            ],
        )
    }

    proptest::proptest! {
        #[test]
        fn any_event_sequence_stays_inside_the_dump_dir(
            events in proptest::collection::vec(arb_event(), 0..60),
            step_ms in 0i64..90_000,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let cfg = ConsoleConfig {
                max_log_bytes: 2048,
                keep_rotated: 1,
                record_max_bytes: 1024,
                record_quiet: Duration::from_secs(30),
                ..ConsoleConfig::default()
            };
            let mut s = ConsoleStore::new(dir.path(), cfg);
            let mut now = t0();
            for (host, ev) in events {
                now += chrono::Duration::milliseconds(step_ms);
                let h = IpAddr::from([198, 18, 0, host]);
                s.handle(h, ev, now).unwrap();
                s.tick(now).unwrap();
            }
            s.flush().unwrap();
            proptest::prop_assert_eq!(s.stats.errors, 0);
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let name = e.unwrap().file_name().into_string().unwrap();
                proptest::prop_assert!(
                    name == "console" || name == "events.jsonl" || name.starts_with("198.18.0."),
                    "{}", name
                );
            }
            let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap_or_default();
            let events = EventLog::parse(&text);
            proptest::prop_assert_eq!(events.len(), text.lines().count());
            let crashes = events.iter().filter(|e| e.event == EventKind::Crash).count();
            proptest::prop_assert_eq!(crashes as u64, s.stats.crashes);
            // Each closed record is triaged once.
            let triaged = events.iter().filter(|e| e.event == EventKind::CrashTriaged).count();
            proptest::prop_assert!(triaged <= crashes);
        }
    }

    #[test]
    fn io_errors_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        // `console` is a file, so the console dir cannot be created.
        std::fs::write(dir.path().join("console"), b"x").unwrap();
        let mut s = ConsoleStore::new(dir.path(), ConsoleConfig::default());
        assert!(s.handle(ip(), line("a"), t0()).is_err());
        assert!(s.handle(ip(), line("b"), t0()).is_err());
        assert!(s.stats.errors >= 2);
        // A symlink planted as a log file is not followed.
        let dir2 = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir2.path().join("console")).unwrap();
        let target = dir2.path().join("target");
        std::os::unix::fs::symlink(&target, dir2.path().join("console/198.18.0.2.log")).unwrap();
        let mut s = ConsoleStore::new(dir2.path(), ConsoleConfig::default());
        assert!(s.handle(ip(), line("a"), t0()).is_err());
        assert!(!target.exists());
        // Crash handling still makes its record and event with the log unwritable.
        s.handle(
            ip(),
            ConsoleEvent::Crash {
                text: "BUG: y".into(),
            },
            t0(),
        )
        .unwrap();
        assert!(dir2.path().join("events.jsonl").exists());
    }
}
