//! What arrived on the server, judged (pure): the dump's format and size, which files make a
//! dump directory complete, the new directories of a client, the crash its kernel log shows.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::resources::sh_quote;

/// What kind of dump file arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpFormat {
    /// `makedumpfile -F` output (must be rebuilt with `makedumpfile -R` before analysis).
    MakedumpfileFlat,
    /// kdump-compressed (`makedumpfile -c/-l/-p` without -F): "KDUMP   " signature.
    KdumpCompressed,
    /// ELF core (netdump receiver, `cp /proc/vmcore`, makedumpfile -E).
    Elf,
    Unknown,
}

/// Identifies a dump by its first bytes.
pub fn classify_dump(header: &[u8]) -> DumpFormat {
    if header.starts_with(b"makedumpfile\0") {
        DumpFormat::MakedumpfileFlat
    } else if header.starts_with(b"KDUMP   ") {
        DumpFormat::KdumpCompressed
    } else if header.starts_with(b"\x7fELF") && header.len() >= 18 {
        // ET_CORE (4), in either byte order.
        let e_type = if header[5] == 2 {
            u16::from_be_bytes([header[16], header[17]])
        } else {
            u16::from_le_bytes([header[16], header[17]])
        };
        if e_type == 4 {
            DumpFormat::Elf
        } else {
            DumpFormat::Unknown
        }
    } else {
        DumpFormat::Unknown
    }
}

/// The smallest size accepted as a real dump of a crashed kernel (even `-d 31` of a small VM is
/// megabytes).
pub const MIN_DUMP_BYTES: u64 = 1 << 20;

/// True when the kernel log holds the sysrq crash or a panic.
pub fn dmesg_has_crash(text: &str) -> bool {
    text.lines().any(|l| {
        l.contains("sysrq: Trigger a crash")
            || l.contains("SysRq : Trigger a crash")
            || l.contains("Kernel panic - not syncing")
    })
}

/// A file in a dump directory on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteFile {
    pub name: String,
    pub size: u64,
}

/// The crash that took the host down, as triage names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrashSummary {
    pub title: String,
    /// Triage's kind (SYSRQ, PANIC, HANG, ...).
    pub kind: String,
    pub signature: String,
}

/// The crash that took the host down ([`netdump_triage::fatal`]) as its dump's kernel log shows
/// it, else as the console log does.
pub fn crash_summary(dmesg: &str, console: &str) -> Option<CrashSummary> {
    let from = |text: &str| {
        netdump_triage::fatal(&netdump_triage::analyze(text)).map(|r| CrashSummary {
            title: r.title.clone(),
            kind: r.kind.clone(),
            signature: r.signature.clone(),
        })
    };
    from(dmesg).or_else(|| from(console))
}

/// The files of a dump directory still being written (`*-incomplete`).
pub fn incomplete_files(files: &[RemoteFile]) -> Vec<&str> {
    files
        .iter()
        .filter(|f| f.name.contains("incomplete"))
        .map(|f| f.name.as_str())
        .collect()
}

/// The files that make a dump directory complete, by layout:
/// Debian kdump-tools `dump.<stamp>` + `dmesg.<stamp>`; RHEL `vmcore.flat`/`vmcore` +
/// `vmcore-dmesg.txt`; netdump receiver `vmcore` + `log`. Nothing may still be `*-incomplete`.
pub fn complete_dump(files: &[RemoteFile]) -> Option<(&RemoteFile, Option<&RemoteFile>)> {
    if files.iter().any(|f| f.name.contains("incomplete")) {
        return None;
    }
    let dump = files
        .iter()
        .find(|f| f.name.starts_with("dump.") || f.name == "vmcore" || f.name == "vmcore.flat")?;
    let log = files
        .iter()
        .find(|f| f.name.starts_with("dmesg.") || f.name == "vmcore-dmesg.txt" || f.name == "log");
    Some((dump, log))
}

/// The directories now on the server that are new for `ip` (`<ip>-<time>`), newest first.
pub fn new_dump_dirs<'a>(
    before: &BTreeSet<String>,
    now: &'a [String],
    ip: &str,
) -> Vec<&'a String> {
    let prefix = format!("{ip}-");
    let mut dirs: Vec<&String> = now
        .iter()
        .filter(|d| d.starts_with(&prefix) && !before.contains(*d))
        .collect();
    dirs.sort_by(|a, b| b.cmp(a));
    dirs
}

pub fn list_dirs_script(dump_dir: &str) -> String {
    format!(
        "cd {} && for d in */; do [ -d \"$d\" ] && echo \"${{d%/}}\"; done; true",
        sh_quote(dump_dir)
    )
}

pub fn list_files_script(dir: &str) -> String {
    format!(
        "cd {} && for f in *; do [ -f \"$f\" ] && echo \"$(stat -c %s \"$f\") $f\"; done; true",
        sh_quote(dir)
    )
}

pub fn parse_files(text: &str) -> Vec<RemoteFile> {
    text.lines()
        .filter_map(|l| {
            let (size, name) = l.split_once(' ')?;
            Some(RemoteFile {
                name: name.to_string(),
                size: size.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_dump_headers() {
        let mut flat = b"makedumpfile\0\0\0\0".to_vec();
        flat.extend_from_slice(&[0; 48]);
        assert_eq!(classify_dump(&flat), DumpFormat::MakedumpfileFlat);
        assert_eq!(
            classify_dump(b"KDUMP   \x06\0\0\0"),
            DumpFormat::KdumpCompressed
        );
        let mut elf = vec![
            0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0,
        ];
        assert_eq!(classify_dump(&elf), DumpFormat::Elf);
        elf[16] = 2; // ET_EXEC: an executable is not a dump
        assert_eq!(classify_dump(&elf), DumpFormat::Unknown);
        let mut be = vec![
            0x7f, b'E', b'L', b'F', 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4,
        ];
        assert_eq!(classify_dump(&be), DumpFormat::Elf);
        be.truncate(10);
        assert_eq!(classify_dump(&be), DumpFormat::Unknown, "truncated header");
        assert_eq!(classify_dump(b""), DumpFormat::Unknown);
        assert_eq!(classify_dump(b"#!/bin/sh\n"), DumpFormat::Unknown);
    }

    #[test]
    fn crash_summary_names_the_dump_s_crash() {
        let dmesg = "[   90.1] sysrq: Trigger a crash\n[   90.1] Kernel panic - not syncing: sysrq triggered crash\n[   90.2] Call Trace:\n[   90.2]  sysrq_handle_crash+0x16/0x20\n";
        let c = crash_summary(dmesg, "").unwrap();
        assert_eq!(c.title, "sysrq: Trigger a crash");
        assert_eq!(c.kind, "SYSRQ");
        assert_eq!(c.signature.len(), 32);
        // Without a crash in the dump's log, the console log's last crash.
        let console = "[ 1.0] WARNING: CPU: 0 PID: 1 at a.c:1 old_warn+0x1/0x2\n[ 1.1] Call Trace:\n[ 1.1]  boot_fn+0x1/0x2\n[ 2.0] ---[ end trace 0 ]---\n[ 99.0] sysrq: Trigger a crash\n";
        assert_eq!(
            crash_summary("", console).unwrap().title,
            "sysrq: Trigger a crash"
        );
        // A boot-time warning in the dump's log is not what the dump is about.
        assert_eq!(
            crash_summary(console, "").unwrap().title,
            "sysrq: Trigger a crash"
        );
        assert_eq!(crash_summary("all quiet", "all quiet"), None);
    }

    #[test]
    fn dmesg_crash_lines() {
        assert!(dmesg_has_crash(
            "[   90.1] sysrq: Trigger a crash\n[   90.1] Kernel panic - not syncing: sysrq triggered crash\n"
        ));
        assert!(dmesg_has_crash("SysRq : Trigger a crash"));
        assert!(!dmesg_has_crash("all good\nsysrq: HELP : loglevel(0-9)\n"));
        assert!(!dmesg_has_crash(""));
    }

    fn f(name: &str, size: u64) -> RemoteFile {
        RemoteFile {
            name: name.into(),
            size,
        }
    }

    #[test]
    fn complete_dump_layouts() {
        let deb = [
            f("dump.202611261530", 40 << 20),
            f("dmesg.202611261530", 30_000),
        ];
        let (d, l) = complete_dump(&deb).unwrap();
        assert_eq!(
            (d.name.as_str(), l.unwrap().name.as_str()),
            ("dump.202611261530", "dmesg.202611261530")
        );
        let rhel = [
            f("vmcore.flat", 50 << 20),
            f("vmcore-dmesg.txt", 1),
            f("kexec-dmesg.log", 1),
        ];
        assert_eq!(complete_dump(&rhel).unwrap().0.name, "vmcore.flat");
        let netdump = [f("vmcore", 1 << 30), f("log", 10)];
        assert_eq!(complete_dump(&netdump).unwrap().0.name, "vmcore");
        assert!(complete_dump(&[f("vmcore-incomplete", 5), f("log", 1)]).is_none());
        assert_eq!(
            incomplete_files(&[f("vmcore-incomplete", 5), f("log", 1)]),
            ["vmcore-incomplete"]
        );
        assert!(incomplete_files(&netdump).is_empty());
        // kdump files joined into the receiver's crash record directory.
        let merged = [f("dmesg.1", 2), f("dump.1", 5), f("log", 1)];
        let (d, l) = complete_dump(&merged).unwrap();
        assert_eq!(
            (d.name.as_str(), l.unwrap().name.as_str()),
            ("dump.1", "dmesg.1")
        );
        assert!(complete_dump(&[f("dump-incomplete", 5), f("dmesg.1", 1)]).is_none());
        assert!(
            complete_dump(&[f("vmcore.flat", 5), f("vmcore-dmesg-incomplete.txt", 1)]).is_none()
        );
        assert!(complete_dump(&[f("README", 5)]).is_none());
        assert!(complete_dump(&[]).is_none());
    }

    #[test]
    fn picks_the_new_dir_of_this_client_only() {
        let before: BTreeSet<String> = ["198.19.0.11-202611261500".to_string()].into();
        let now = vec![
            "198.19.0.11-202611261500".to_string(),
            "198.19.0.111-202611261531".to_string(),
            "198.19.0.11-202611261530".to_string(),
            "console".to_string(),
        ];
        assert_eq!(
            *new_dump_dirs(&before, &now, "198.19.0.11")[0],
            "198.19.0.11-202611261530"
        );
        assert_eq!(
            new_dump_dirs(&before, &now, "198.19.0.11").len(),
            1,
            "not the .111 host's"
        );
        assert!(new_dump_dirs(&before, &now[..1], "198.19.0.11").is_empty());
    }

    #[test]
    fn parses_file_listing() {
        assert_eq!(
            parse_files("12 dump.1\nbad\n3 name with space\n"),
            vec![f("dump.1", 12), f("name with space", 3)]
        );
    }
}
