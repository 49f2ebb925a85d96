//! The crash-record policy, pure: what context a new record starts with, how much a record may
//! hold, and when a quiet host's record closes. `ConsoleStore` does the file IO around it.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The last lines of a host, bounded by count and bytes: a new crash record starts with them.
#[derive(Debug)]
pub(super) struct Context {
    lines: VecDeque<String>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
}

impl Context {
    pub(super) fn new(max_lines: usize, max_bytes: usize) -> Context {
        Context {
            lines: VecDeque::with_capacity(max_lines.min(256)),
            bytes: 0,
            max_lines,
            max_bytes,
        }
    }

    /// Remembers `line`, forgetting the oldest ones beyond the bounds. A line longer than the
    /// byte bound is not kept at all (the rolling log has it).
    pub(super) fn push(&mut self, line: &str) {
        if self.max_lines == 0 || line.len() > self.max_bytes {
            return;
        }
        // Reuse the evicted line's allocation: no allocation per line once the ring is full.
        let mut slot = String::new();
        while self.lines.len() >= self.max_lines || self.bytes + line.len() > self.max_bytes {
            let Some(old) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= old.len();
            slot = old;
        }
        slot.clear();
        slot.push_str(line);
        self.bytes += slot.len();
        self.lines.push_back(slot);
    }

    pub(super) fn lines(&self) -> impl Iterator<Item = &String> {
        self.lines.iter()
    }
}

/// What a crash record may still take: up to `max` bytes, then one note and nothing more.
#[derive(Debug)]
pub(super) struct RecordBudget {
    written: u64,
    max: u64,
    truncated: bool,
}

pub(super) const TRUNCATED: &str =
    "-- crash record truncated here; the rest is in console/<ip>.log --\n";

impl RecordBudget {
    pub(super) fn new(max: u64) -> RecordBudget {
        RecordBudget {
            written: 0,
            max,
            truncated: false,
        }
    }

    /// What to write for `line`: the line, the truncation note once the record is full, or
    /// nothing after that.
    pub(super) fn admit<'a>(&mut self, line: &'a str) -> Option<&'a str> {
        if self.truncated {
            return None;
        }
        if self.written + line.len() as u64 > self.max {
            self.truncated = true;
            return Some(TRUNCATED);
        }
        Some(line)
    }

    pub(super) fn wrote(&mut self, bytes: usize) {
        self.written += bytes as u64;
    }
}

/// A record closes once its host has been silent for `quiet` (a crashed kernel stops talking;
/// the dump or the reboot comes later and gets its own record).
pub(super) fn gone_quiet(last_line: DateTime<Utc>, now: DateTime<Utc>, quiet: Duration) -> bool {
    (now - last_line).to_std().unwrap_or_default() >= quiet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_newest_lines_within_both_bounds() {
        let mut c = Context::new(3, 12);
        for l in ["a\n", "bb\n", "ccc\n", "dddd\n"] {
            c.push(l);
        }
        let kept: Vec<&String> = c.lines().collect();
        assert_eq!(kept, ["bb\n", "ccc\n", "dddd\n"], "three lines at most");
        c.push("eeeeeeeeee\n"); // 11 bytes: only it fits in 12
        assert_eq!(c.lines().collect::<Vec<_>>(), ["eeeeeeeeee\n"]);
        c.push(&"x".repeat(13)); // longer than the bound: not kept, nothing evicted
        assert_eq!(c.lines().count(), 1);
        let mut off = Context::new(0, 100);
        off.push("a\n");
        assert_eq!(off.lines().count(), 0);
    }

    #[test]
    fn a_full_record_gets_one_note_then_nothing() {
        let mut b = RecordBudget::new(10);
        assert_eq!(b.admit("12345\n"), Some("12345\n"));
        b.wrote(6);
        assert_eq!(b.admit("1234\n"), Some(TRUNCATED));
        b.wrote(TRUNCATED.len());
        assert_eq!(b.admit("1\n"), None);
    }

    #[test]
    fn a_record_closes_after_the_quiet_time_and_not_before() {
        let t = Utc::now();
        let q = Duration::from_secs(60);
        assert!(!gone_quiet(t, t + chrono::Duration::seconds(59), q));
        assert!(gone_quiet(t, t + chrono::Duration::seconds(60), q));
        // A clock step backwards never closes a record early.
        assert!(!gone_quiet(t, t - chrono::Duration::seconds(5), q));
    }
}
