//! Everything the receiver puts on disk, all under the dump dir (docs/netdump-wire.md, "Server files and hooks", docs/server-layout.md):
//! per-crash directories `<ip>-<YYYY-MM-DD-HH:MM:SS>` (0700) with `log` and
//! `vmcore-incomplete` (0600, renamed to `vmcore`), magic files, hook scripts, free-space checks.
//! Paths are built only from the socket's IPv4 address and the clock, never from packet bytes.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netdump_proto::vmcore::CoreHeader;

pub const LOG_FILE: &str = "log";
pub const VMCORE_INCOMPLETE: &str = "vmcore-incomplete";
pub const VMCORE: &str = "vmcore";
pub const HOOKS: [&str; 4] = [
    "netdump-start",
    "netdump-crash",
    "netdump-nospace",
    "netdump-reboot",
];

/// How a source address appears in file and directory names: IPv4 (also IPv4-mapped IPv6) as
/// dotted quad; IPv6 with `_` for `:` so names stay safe for scp/rsync-style `host:path`
/// arguments and colon-separated lists. Only hex digits, `.` and `_` ever appear.
pub fn host_name(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6.to_string().replace(':', "_"),
    }
}

/// The one name of a crash directory: `<ip>-<UTC time>` (docs/server-layout.md). Console crash
/// records, netdump dumps and their shared directory all go through here, with one clock (UTC)
/// so names sort the same on every server whatever its time zone.
pub fn crash_dir_name(ip: IpAddr, t: chrono::DateTime<chrono::Utc>) -> String {
    format!("{}-{}", host_name(ip), t.format("%Y-%m-%d-%H:%M:%S"))
}

/// Parses a magic file leniently: whitespace ignored; `0x` prefixes allowed; either one hex
/// u64 (`$MAGIC2$MAGIC1`, high word first) or two `0x`-prefixed 32-bit words (high, low).
pub fn parse_magic(text: &str) -> Option<u64> {
    let s: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let lower = s.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split("0x").filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [one] if lower.matches("0x").count() <= 1 => {
            if one.len() > 16 {
                return None;
            }
            u64::from_str_radix(one, 16).ok()
        }
        [hi, lo] => {
            let hi = u32::from_str_radix(hi, 16).ok()?;
            let lo = u32::from_str_radix(lo, 16).ok()?;
            Some(((hi as u64) << 32) | lo as u64)
        }
        _ => None,
    }
}

/// Longest magic file read (16 hex digits with `0x` prefixes, spaces and a newline fit).
pub const MAGIC_MAX_BYTES: usize = 128;

/// Reads `<root>/magic/<ip>` (a regular file of at most [`MAGIC_MAX_BYTES`], opened without
/// following links or blocking); `None` if missing, not a regular file, too long or unparsable.
pub fn read_magic(root: &Path, ip: IpAddr) -> Option<u64> {
    let p = root.join("magic").join(host_name(ip));
    match super::files::read_bounded(&p, MAGIC_MAX_BYTES) {
        Ok(b) => {
            let m = parse_magic(&String::from_utf8_lossy(&b));
            if m.is_none() {
                tracing::warn!(
                    "magic file {} is not hex (expected 16 hex digits); treating it as missing",
                    p.display()
                );
            }
            m
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!("magic file for {ip}: {e}; treating it as missing");
            None
        }
    }
}

/// Triage of a dump directory's kernel log (`<dir>/log`, the netlog text of a netdump client):
/// writes `<dir>/triage.json` (0600, never through a link) and returns the fatal crash's title
/// and signature. Runs on a writer thread, never on the packet loop; best effort.
pub fn triage_log(dir: &Path) -> Option<(String, String)> {
    triage_log_into(dir, true)
}

/// [`triage_log`]; with `replace` false an existing `triage.json` is left as it is (a console
/// crash record yields to the dump's own triage) and the title is still returned.
pub fn triage_log_into(dir: &Path, replace: bool) -> Option<(String, String)> {
    use std::io::Write;
    let mut f = super::files::open_read(&dir.join("log")).ok()?;
    let tail = super::files::read_tail(&mut f, netdump_triage::DUMP_LOG_TAIL).ok()?;
    let t = netdump_triage::for_dump("log", &tail);
    let out = dir.join("triage.json");
    let opened = if replace {
        super::files::open_truncate(&out)
    } else {
        // O_EXCL: never through a link, and never over a triage.json that is already there.
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&out)
    };
    match opened.and_then(|mut o| o.write_all(&t.json)) {
        Err(e) if !replace && e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => tracing::warn!("triage.json in {}: {e}", dir.display()),
        Ok(()) => {}
    }
    t.fatal
}

/// Bytes available to an unprivileged writer on the file system holding `path`.
pub fn free_space(path: &Path) -> io::Result<u64> {
    let st = nix::sys::statfs::statfs(path).map_err(io::Error::from)?;
    Ok(st.blocks_available().saturating_mul(st.block_size() as u64))
}

/// Path of a hook script, if it exists and is trusted: the `scripts` directory and the script
/// are owned by root, writable by nobody else, and neither is a symbolic link. The dump
/// directory belongs to the unprivileged netdump user, so anything it (or a client acting
/// through it) could have planted is never run (docs/threat-model.md).
pub fn hook_path(root: &Path, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    if !HOOKS.contains(&name) {
        return None;
    }
    let trusted = |m: &std::fs::Metadata| m.uid() == 0 && m.mode() & 0o022 == 0;
    let dir = root.join("scripts");
    let dm = std::fs::symlink_metadata(&dir).ok()?;
    let p = dir.join(name);
    let pm = std::fs::symlink_metadata(&p).ok()?;
    if !(dm.is_dir() && trusted(&dm) && pm.is_file() && trusted(&pm)) {
        if pm.is_file() || pm.is_symlink() {
            tracing::warn!(
                "hook {} not run: it and its directory must be root's and writable by nobody else (chown root; chmod go-w)",
                p.display()
            );
        }
        return None;
    }
    Some(p)
}

static RUNNING_HOOKS: AtomicUsize = AtomicUsize::new(0);

/// Hook scripts started by [`spawn_hook`] and still running (or being waited for).
pub fn running_hooks() -> usize {
    RUNNING_HOOKS.load(Ordering::Relaxed)
}

/// Starts a hook script with `args` (cwd = dump dir, stdin/stdout null). Returns `None` if the
/// script does not exist. The child is killed if it is still running after `limit`.
pub fn spawn_hook(
    root: &Path,
    name: &str,
    args: &[String],
    limit: Duration,
) -> Option<std::thread::JoinHandle<()>> {
    let path = hook_path(root, name)?;
    RUNNING_HOOKS.fetch_add(1, Ordering::Relaxed);
    let child = Command::new(&path)
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            RUNNING_HOOKS.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(
                "hook {} {:?} failed to execute: {e} (make it executable: chmod 0755)",
                path.display(),
                args
            );
            return None;
        }
    };
    let args = args.to_vec();
    Some(std::thread::spawn(move || {
        struct Done;
        impl Drop for Done {
            fn drop(&mut self) {
                RUNNING_HOOKS.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let _done = Done;
        let until = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => {
                    if !st.success() {
                        tracing::warn!("hook {} {:?} exited with {st}", path.display(), args);
                    }
                    return;
                }
                Ok(None) if Instant::now() >= until => {
                    tracing::warn!(
                        "hook {} {:?} still running after {:?}; killing it",
                        path.display(),
                        args,
                        limit
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    tracing::warn!("hook {}: wait failed: {e}", path.display());
                    return;
                }
            }
        }
    }))
}

/// Space check before the memory phase: enough room for `need` bytes under `root`? If not, the
/// `netdump-nospace` hook gets one chance (waited for, bounded by `limit`), then re-check.
pub fn check_space(root: &Path, ip: IpAddr, dir: &Path, need: u64, limit: Duration) -> bool {
    let avail = free_space(root).unwrap_or(0);
    if avail >= need {
        return true;
    }
    tracing::warn!(
        "netdump client {ip}: not enough space in {}: avail = {avail}, need = {need}; running \
         netdump-nospace",
        root.display()
    );
    if let Some(h) = spawn_hook(
        root,
        "netdump-nospace",
        &[ip.to_string(), dir.display().to_string()],
        limit,
    ) {
        let _ = h.join();
    }
    let avail = free_space(root).unwrap_or(0);
    if avail < need {
        tracing::warn!(
            "No space for dump image, even after calling netdump-nospace: avail = {avail}, need = \
             {need} (free space in {} or run with --no-space-check)",
            root.display()
        );
    }
    avail >= need
}

/// Appends console text to `<dir>/log`, up to a size cap (then one note, and the rest is
/// dropped and counted: the console log of a crash is its first megabytes).
pub struct LogFile {
    file: File,
    written: u64,
    max: u64,
    /// Bytes not written because the cap was reached.
    pub dropped: u64,
}

/// Default cap of a netlog `log` file.
pub const LOG_MAX_BYTES: u64 = 16 * 1024 * 1024;

impl LogFile {
    pub fn open(dir: &Path, max: u64) -> io::Result<LogFile> {
        let file = super::files::open_append(&dir.join(LOG_FILE))?;
        let written = file.metadata()?.len();
        Ok(LogFile {
            file,
            written,
            max,
            dropped: 0,
        })
    }

    /// Appends `data`; returns false when it was dropped because the file is at its cap.
    pub fn append(&mut self, data: &[u8]) -> io::Result<bool> {
        if self.written + data.len() as u64 > self.max {
            if self.dropped == 0 {
                let note = b"\n-- log size cap reached; later console text dropped --\n";
                self.file.write_all(note)?;
                self.written += note.len() as u64;
            }
            self.dropped += data.len() as u64;
            return Ok(false);
        }
        self.file.write_all(data)?;
        self.written += data.len() as u64;
        Ok(true)
    }
}

/// Drops netlog frames already written (exact duplicates of an `(offset, length)` seen among
/// the last 1024 frames); everything else is written in arrival order.
#[derive(Debug, Clone, Default)]
pub struct LogCursor {
    seen: std::collections::VecDeque<(u32, u32)>,
    set: std::collections::HashSet<(u32, u32)>,
}

impl LogCursor {
    const KEEP: usize = 1024;

    /// True if the frame is new (and remembers it).
    pub fn fresh(&mut self, offset: u32, len: usize) -> bool {
        let key = (offset, len as u32);
        if !self.set.insert(key) {
            return false;
        }
        self.seen.push_back(key);
        if self.seen.len() > Self::KEEP
            && let Some(old) = self.seen.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    /// Forget everything (the client rebooted: its stream starts again at 0).
    pub fn reset(&mut self) {
        self.seen.clear();
        self.set.clear();
    }
}

/// `vmcore-incomplete` being filled: pages are gathered into contiguous runs and written with
/// one `pwrite` per run.
pub struct DumpFile {
    dir: PathBuf,
    file: File,
    header: CoreHeader,
    run: Vec<u8>,
    run_start: u64,
    run_cap: usize,
}

impl DumpFile {
    pub fn create(dir: &Path, header: CoreHeader) -> io::Result<DumpFile> {
        let file = super::files::open_truncate(&dir.join(VMCORE_INCOMPLETE))?;
        file.write_all_at(&header.bytes, 0)?;
        Ok(DumpFile {
            dir: dir.to_path_buf(),
            file,
            header,
            run: Vec::with_capacity(1 << 20),
            run_start: 0,
            run_cap: 1 << 20,
        })
    }

    pub fn write_page(&mut self, pfn: u32, data: &[u8]) -> io::Result<()> {
        let off = self.header.page_offset_in_file(pfn);
        if !self.run.is_empty()
            && (off != self.run_start + self.run.len() as u64
                || self.run.len() + data.len() > self.run_cap)
        {
            self.flush()?;
        }
        if self.run.is_empty() {
            self.run_start = off;
        }
        self.run.extend_from_slice(data);
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if !self.run.is_empty() {
            self.file.write_all_at(&self.run, self.run_start)?;
            self.run.clear();
        }
        Ok(())
    }

    /// Flushes, extends the file to its full length (holes read as zeros), and renames it to
    /// `vmcore` if `complete`. Returns the final path.
    pub fn finish(mut self, complete: bool) -> io::Result<PathBuf> {
        self.flush()?;
        self.file.set_len(self.header.file_len)?;
        self.file.sync_all()?;
        let from = self.dir.join(VMCORE_INCOMPLETE);
        if complete {
            let to = self.dir.join(VMCORE);
            fs::rename(&from, &to)?;
            Ok(to)
        } else {
            Ok(from)
        }
    }
}

impl Drop for DumpFile {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn hooks_run_only_when_root_owns_them_and_nobody_else_can_write() {
        use std::os::unix::fs::PermissionsExt;
        if !nix::unistd::geteuid().is_root() {
            netdump_test_support::skip("hook trust check", "needs root to own the hook files");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("scripts");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let hook = dir.join("netdump-crash");
        std::fs::write(&hook, "#!/bin/sh\n").unwrap();
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        mode(&hook, 0o755);
        assert_eq!(hook_path(t.path(), "netdump-crash"), Some(hook.clone()));
        assert_eq!(hook_path(t.path(), "not-a-hook"), None);
        mode(&hook, 0o775);
        assert_eq!(
            hook_path(t.path(), "netdump-crash"),
            None,
            "group-writable hook"
        );
        mode(&hook, 0o755);
        mode(&dir, 0o777);
        assert_eq!(
            hook_path(t.path(), "netdump-crash"),
            None,
            "world-writable dir"
        );
        mode(&dir, 0o750);
        std::os::unix::fs::chown(&hook, Some(65534), None).unwrap();
        assert_eq!(
            hook_path(t.path(), "netdump-crash"),
            None,
            "hook not root's"
        );
        std::fs::remove_file(&hook).unwrap();
        std::os::unix::fs::symlink("/bin/true", &hook).unwrap();
        assert_eq!(hook_path(t.path(), "netdump-crash"), None, "symlinked hook");
    }

    use super::*;

    #[test]
    fn magic_files_parse_leniently() {
        assert_eq!(parse_magic("1234abcd5678ef00\n"), Some(0x1234abcd5678ef00));
        assert_eq!(
            parse_magic("  0x1234ABCD5678EF00 "),
            Some(0x1234abcd5678ef00)
        );
        assert_eq!(
            parse_magic("0x1234abcd0x5678ef00"),
            Some(0x1234abcd5678ef00)
        );
        assert_eq!(
            parse_magic("0x11111111 0x11111111"),
            Some(0x1111111111111111)
        );
        assert_eq!(parse_magic(""), None);
        assert_eq!(parse_magic("zz"), None);
        assert_eq!(parse_magic("1234abcd5678ef0011"), None);
    }

    #[test]
    fn host_names_are_safe_path_components() {
        let n = |s: &str| host_name(s.parse().unwrap());
        assert_eq!(n("198.18.0.7"), "198.18.0.7");
        assert_eq!(n("::ffff:198.18.0.7"), "198.18.0.7");
        assert_eq!(n("fd00::1"), "fd00__1");
        assert_eq!(n("::1"), "__1");
        for a in ["2001:db8::ff00:42:8329", "fe80::1", "::"] {
            let name = n(a);
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_hexdigit() || c == '_' || c == '.'),
                "{name}"
            );
        }
    }

    #[test]
    fn netlog_log_stops_at_its_cap_with_one_note() {
        let t = tempfile::tempdir().unwrap();
        let mut l = LogFile::open(t.path(), 100).unwrap();
        assert!(l.append(&[b'a'; 60]).unwrap());
        assert!(!l.append(&[b'b'; 60]).unwrap());
        assert!(!l.append(&[b'c'; 10]).unwrap());
        assert_eq!(l.dropped, 70);
        let text = fs::read_to_string(t.path().join(LOG_FILE)).unwrap();
        assert_eq!(text.matches("cap reached").count(), 1);
        assert!(!text.contains('b'));
        // Reopened later, the size already written still counts.
        let mut l = LogFile::open(t.path(), 100).unwrap();
        assert!(!l.append(b"more").unwrap());
    }

    #[test]
    fn magic_reads_refuse_links_fifos_and_huge_files() {
        let t = tempfile::tempdir().unwrap();
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let d = t.path().join("magic");
        fs::create_dir(&d).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("127.0.0.2")).unwrap();
        assert_eq!(read_magic(t.path(), ip), None);
        fs::remove_file(d.join("127.0.0.2")).unwrap();
        fs::write(d.join("127.0.0.2"), "0".repeat(10_000)).unwrap();
        assert_eq!(read_magic(t.path(), ip), None);
        fs::write(d.join("127.0.0.2"), "89abcdef01234567\n").unwrap();
        assert_eq!(read_magic(t.path(), ip), Some(0x89ab_cdef_0123_4567));
    }

    #[test]
    fn crash_dir_names_are_the_address_and_utc_time() {
        use chrono::TimeZone;
        let t = chrono::Utc.with_ymd_and_hms(2026, 12, 2, 8, 5, 9).unwrap();
        assert_eq!(
            crash_dir_name(IpAddr::from([198, 18, 0, 7]), t),
            "198.18.0.7-2026-12-02-08:05:09"
        );
        let v6: IpAddr = "fd00::5".parse().unwrap();
        assert_eq!(crash_dir_name(v6, t), "fd00__5-2026-12-02-08:05:09");
    }

    #[test]
    fn log_cursor_drops_exact_duplicates_only() {
        let mut c = LogCursor::default();
        assert!(c.fresh(0, 6));
        assert!(!c.fresh(0, 6));
        assert!(c.fresh(20, 4));
        assert!(c.fresh(6, 14)); // late but new
        assert!(!c.fresh(20, 4));
        c.reset();
        assert!(c.fresh(0, 6));
        for i in 1..2000 {
            assert!(c.fresh(i * 10, 10));
        }
        assert!(c.fresh(0, 6)); // forgotten after 1024 frames
    }

    #[test]
    fn dump_file_writes_runs_and_renames() {
        let t = tempfile::tempdir().unwrap();
        let h = netdump_proto::vmcore::build(&netdump_proto::vmcore::CoreParams {
            machine: 62,
            page_size: 4096,
            nr_pages: 8,
            page_offset: 0,
            task_struct: 0,
            regs: vec![],
        });
        let off = h.data_offset;
        let len = h.file_len;
        let mut d = DumpFile::create(t.path(), h).unwrap();
        d.write_page(1, &[1u8; 4096]).unwrap();
        d.write_page(2, &[2u8; 4096]).unwrap();
        d.write_page(5, &[5u8; 4096]).unwrap();
        let p = d.finish(true).unwrap();
        let b = fs::read(&p).unwrap();
        assert_eq!(b.len() as u64, len);
        assert!(b[off as usize..off as usize + 4096].iter().all(|&x| x == 0));
        assert!(
            b[off as usize + 4096..off as usize + 8192]
                .iter()
                .all(|&x| x == 1)
        );
        assert!(
            b[off as usize + 5 * 4096..off as usize + 6 * 4096]
                .iter()
                .all(|&x| x == 5)
        );
        assert!(!t.path().join(VMCORE_INCOMPLETE).exists());
    }
}
