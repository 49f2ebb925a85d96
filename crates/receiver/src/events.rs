//! `<dumpdir>/events.jsonl`: one JSON object per line for every crash seen on the console and
//! every netdump dump started, completed or failed. `provision test-crash` waits on these lines.
//!
//! Line shape (fields beyond these may be added, never removed or renamed):
//! `{"event":"crash"|"crash_triaged"|"dump_started"|"dump_complete"|"dump_failed",
//!   "host":"<client ip>", "dir":"<absolute dump directory>","time":"<RFC 3339 UTC>",
//!   "detail":"<optional text>"}`; `crash_triaged` (a console crash record closed) and
//! `dump_complete` carry the crash's `title` and `signature` when triage found one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use netdump_proto::event::EventKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub event: EventKind,
    pub host: String,
    pub dir: String,
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The crash a completed dump is about, from triage of its kernel log (docs/triage.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Event {
    pub fn now(
        event: EventKind,
        host: impl Into<String>,
        dir: &Path,
        detail: Option<String>,
    ) -> Self {
        Event {
            event,
            host: host.into(),
            dir: dir.display().to_string(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            detail,
            title: None,
            signature: None,
        }
    }
}

/// Appends events to `<dumpdir>/events.jsonl`, one `write` per line so concurrent appenders
/// (O_APPEND) never interleave inside a line.
#[derive(Debug, Clone)]
pub struct EventLog {
    path: PathBuf,
}

impl EventLog {
    pub fn new(dump_dir: &Path) -> Self {
        EventLog {
            path: dump_dir.join("events.jsonl"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event line. The file is opened without following links or blocking and
    /// must be a regular file (receiver::files); errors name the file. Public for other writers
    /// of the same stream (e.g. the dump sink).
    pub fn append(&self, event: &Event) -> std::io::Result<()> {
        append_event(&self.path, event)
    }

    /// Parses an events file's text; lines that are not valid events are skipped.
    pub fn parse(text: &str) -> Vec<Event> {
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Appends `event` as one JSON line to the events file at `path` (one `write`, O_APPEND).
pub fn append_event(path: &Path, event: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = super::files::open_append(path)?;
    f.write_all(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_and_parse_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path());
        let e = Event::now(EventKind::Crash, "198.18.0.2", &dir.path().join("x"), None);
        log.append(&e).unwrap();
        log.append(&Event::now(
            EventKind::DumpComplete,
            "198.18.0.2",
            dir.path(),
            Some("ok".into()),
        ))
        .unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        let parsed = EventLog::parse(&format!("{text}garbage\n"));
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0], e);
        assert!(text.starts_with("{\"event\":\"crash\",\"host\":\"198.18.0.2\""));
    }
}
