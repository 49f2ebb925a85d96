//! The sink's lines in `<dumpdir>/events.jsonl`, next to the receiver's: same fields (`event`,
//! `host`, `dir`, `time`, `detail`) plus `client` (inventory name) and `files`. Kinds:
//! `dump_started`, `dump_complete`, `dump_failed`, `dump_deleted`, `refused`.
//!
//! The file is opened relative to the dump directory's descriptor with O_APPEND|O_NOFOLLOW and
//! must be a regular file; each line is one `write`, so concurrent writers never interleave.

use std::io::Write;
use std::os::fd::AsFd;

use rustix::fs::{FileType, Mode, OFlags};
use serde::Serialize;

use super::policy::Client;

#[derive(Debug, Clone, Serialize)]
pub struct SinkEvent {
    pub event: &'static str,
    pub host: String,
    pub client: String,
    pub dir: String,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<serde_json::Value>,
    /// The crash the dump is about, from triage of its kernel log (docs/triage.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl SinkEvent {
    pub fn new(event: &'static str, client: &Client, dir: &str) -> Self {
        SinkEvent {
            event,
            host: client.ip.to_string(),
            client: client.name.clone(),
            dir: dir.to_string(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            detail: None,
            files: Vec::new(),
            title: None,
            signature: None,
        }
    }

    pub fn with_detail(mut self, d: impl Into<String>) -> Self {
        // Bounded: a refusal quotes the client's words.
        let mut d: String = d.into();
        if d.len() > 400 {
            let mut cut = 400;
            while !d.is_char_boundary(cut) {
                cut -= 1;
            }
            d.truncate(cut);
        }
        self.detail = Some(d);
        self
    }

    pub fn with_crash(mut self, title: String, signature: String) -> Self {
        self.title = Some(title);
        self.signature = Some(signature);
        self
    }

    pub fn with_files(mut self, files: Vec<serde_json::Value>) -> Self {
        self.files = files;
        self
    }
}

pub fn append_event(base: impl AsFd, e: &SinkEvent) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let fd = rustix::fs::openat(
        base,
        "events.jsonl",
        OFlags::WRONLY
            | OFlags::APPEND
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NONBLOCK,
        Mode::from_raw_mode(0o600),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(std::io::Error::other("events.jsonl is not a regular file"));
    }
    std::fs::File::from(fd).write_all(&line)
}
