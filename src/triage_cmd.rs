//! `provision triage FILE...`: reads kernel logs (console captures, kdump's dmesg files,
//! netdump's `log`) and prints the crashes [`netdump_triage`] finds in each.
//!
//! JSON output is one line per file, `{"file": <path as given>, "crashes": [...]}`, each crash
//! with `title`, `kind`, `signature`, `frames`, `kernel`, `corrupted`, `line`, first crash
//! first. That shape is an interface (pipelines parse it): add fields only with care.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::fleet::{Output, exit};
use netdump_triage::{self as triage, CrashReport};

/// Bytes read per file; a longer file is triaged on its first `MAX_FILE_BYTES` (a crash report
/// sits near the end of a console log only when the log is short; the cap bounds memory and
/// time on a multi-gigabyte capture). Documented in README and docs/triage.md.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Args, Debug)]
pub struct TriageArgs {
    /// Kernel log files to read (console logs, dmesg files, netdump logs).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
}

/// A crash as the JSON output carries it.
#[derive(Debug, Serialize)]
pub struct CrashJson<'a> {
    pub title: &'a str,
    pub kind: &'a str,
    pub signature: &'a str,
    pub frames: &'a [String],
    pub kernel: Option<&'a str>,
    pub corrupted: bool,
    pub line: usize,
}

impl<'a> From<&'a CrashReport> for CrashJson<'a> {
    fn from(r: &'a CrashReport) -> Self {
        CrashJson {
            title: &r.title,
            kind: &r.kind,
            signature: &r.signature,
            frames: &r.frames,
            kernel: r.kernel.as_deref(),
            corrupted: r.corrupted,
            line: r.line,
        }
    }
}

/// The JSON line for one file.
pub fn json_line(file: &str, crashes: &[CrashReport]) -> String {
    let crashes: Vec<CrashJson> = crashes.iter().map(CrashJson::from).collect();
    serde_json::json!({ "file": file, "crashes": crashes }).to_string()
}

/// The readable summary for one file.
pub fn human(file: &str, crashes: &[CrashReport], truncated: bool) -> String {
    let mut s = String::new();
    let note = if truncated {
        format!(" (only the first {} MiB read)", MAX_FILE_BYTES >> 20)
    } else {
        String::new()
    };
    match crashes.len() {
        0 => {
            let _ = writeln!(s, "{file}: no crash{note}");
        }
        n => {
            let _ = writeln!(
                s,
                "{file}: {n} crash{}{note}",
                if n == 1 { "" } else { "es" }
            );
        }
    }
    for c in crashes {
        let _ = writeln!(
            s,
            "  line {}: {}{}",
            c.line,
            c.title,
            if c.corrupted { " (corrupted)" } else { "" }
        );
        let _ = writeln!(s, "    kind {}, signature {}", c.kind, c.signature);
        let mut who = Vec::new();
        if let Some(k) = &c.kernel {
            who.push(format!("kernel {k}"));
        }
        match c.taint.as_deref() {
            Some("") => who.push("not tainted".into()),
            Some(t) => who.push(format!(
                "tainted {}",
                t.split_whitespace().collect::<String>()
            )),
            None => {}
        }
        if let Some(cpu) = c.cpu {
            who.push(format!("CPU {cpu}"));
        }
        if let Some(pid) = c.pid {
            who.push(format!("PID {pid}"));
        }
        if let Some(comm) = &c.comm {
            who.push(format!("comm {comm}"));
        }
        if !who.is_empty() {
            let _ = writeln!(s, "    {}", who.join(", "));
        }
        if !c.frames.is_empty() {
            let top: Vec<&str> = c.frames.iter().take(8).map(String::as_str).collect();
            let more = if c.frames.len() > 8 { " …" } else { "" };
            let _ = writeln!(s, "    trace: {}{more}", top.join(" < "));
        }
    }
    s
}

/// Reads at most `cap` bytes of a file; `true` when there was more.
fn read_capped(path: &Path, cap: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(cap + 1).read_to_end(&mut buf)?;
    let truncated = buf.len() as u64 > cap;
    buf.truncate(cap as usize);
    Ok((buf, truncated))
}

/// Runs the subcommand; exit 0 when every file was read, 1 when one could not be.
pub fn run(args: TriageArgs) -> Result<i32> {
    let mut code = exit::OK;
    for path in &args.files {
        let shown = path.to_string_lossy();
        let (bytes, truncated) = match read_capped(path, MAX_FILE_BYTES) {
            Ok(b) => b,
            Err(e) => {
                eprintln!(
                    "error: triage: cannot read {shown}: {e} (check the path and its permissions)"
                );
                code = exit::USAGE;
                continue;
            }
        };
        let crashes = triage::analyze_bytes(&bytes);
        match args.output {
            Output::Json => println!("{}", json_line(&shown, &crashes)),
            Output::Human => print!("{}", human(&shown, &crashes, truncated)),
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, b"0123456789abcdef").unwrap();
        assert_eq!(read_capped(&p, 10).unwrap(), (b"0123456789".to_vec(), true));
        assert_eq!(
            read_capped(&p, 16).unwrap(),
            (b"0123456789abcdef".to_vec(), false)
        );
        assert!(read_capped(&dir.path().join("nope"), 10).is_err());
    }

    #[test]
    fn human_summary_says_when_a_file_was_cut() {
        let s = human("big.log", &[], true);
        assert_eq!(s, "big.log: no crash (only the first 64 MiB read)\n");
        let crashes = netdump_triage::analyze("[ 1.0] sysrq: Trigger a crash\n");
        let s = human("c.log", &crashes, false);
        assert!(
            s.starts_with("c.log: 1 crash\n  line 1: sysrq: Trigger a crash (corrupted)\n"),
            "{s}"
        );
    }
}
