//! The sink's filesystem side: every operation is relative to a directory descriptor of the
//! dump directory, never follows a symlink (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, no-replace
//! renames) and only touches entries the policy allowed. Directories are 0700, files 0600.
//! Retention, space checks, crash-record aliasing and events live here too
//! (docs/server-layout.md).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Stat};
use rustix::io::Errno;

use super::events::{SinkEvent, append_event};
use super::policy::{Client, Loc, MKTEMP_INFIX, is_incomplete};

/// Space and retention limits (`netdump_min_free`, `netdump_keep_dumps`,
/// `netdump_max_total`; 0 = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min_free: u64,
    pub keep_dumps: u32,
    pub max_total: u64,
}

/// The hidden file in a receiver crash-record directory naming the kdump directory it stands in
/// for (one crash, one directory).
pub const ALIAS_FILE: &str = ".kdump-name";
/// How recent a receiver crash record must be to take in a new kdump directory.
pub const ALIAS_WINDOW: Duration = Duration::from_secs(15 * 60);
/// A `*-incomplete` file written to within this window marks its dump as in progress.
pub const IN_PROGRESS_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Files one dump directory may hold (a dump has a handful).
pub const MAX_FILES_PER_DIR: usize = 64;
/// `mktemp -dqp` directories a client may have at once (kdumpctl removes its own at once).
pub const MAX_TMP_DIRS: usize = 8;
/// The file name that `echo … >` may rewrite (RHEL `kdumpctl test`).
pub const STATUS_FILE: &str = "vmcore-creation.status";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The client asked for something not allowed (shown to it, logged as `refused`).
    #[error("{0}")]
    Refused(String),
    /// The filesystem said no (shown to the client too).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

fn refused<T>(msg: impl Into<String>) -> Result<T> {
    Err(StoreError::Refused(msg.into()))
}

fn io_err(what: impl Into<String>) -> impl FnOnce(Errno) -> StoreError {
    let what = what.into();
    move |e| StoreError::Io {
        what,
        source: e.into(),
    }
}

fn nofollow_dir() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn mtime(st: &Stat) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64)
}

/// One dump directory as retention sees it.
#[derive(Debug, Clone)]
pub struct DumpDirInfo {
    pub name: String,
    pub ip: std::net::IpAddr,
    pub modified: SystemTime,
    pub bytes: u64,
    pub in_progress: bool,
}

/// An open regular file of a client, with the place it lives in.
#[derive(Debug)]
pub struct OpenFile {
    pub file: std::fs::File,
    pub dir: String,
    pub name: String,
}

pub struct Store {
    base: OwnedFd,
    base_path: String,
    client: Client,
    limits: Limits,
    uid: u32,
}

impl Store {
    /// Opens the dump directory (which must be a real directory owned by this user).
    pub fn open(base_path: &str, client: Client, limits: Limits) -> Result<Store> {
        let base = rustix::fs::open(base_path, nofollow_dir(), Mode::empty())
            .map_err(io_err(format!("dump directory {base_path}")))?;
        let uid = rustix::process::geteuid().as_raw();
        Ok(Store {
            base,
            base_path: base_path.trim_end_matches('/').to_string(),
            client,
            limits,
            uid,
        })
    }

    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn event(&self, e: SinkEvent) {
        // Events are best effort: a full disk must not turn into a failed dump.
        let _ = append_event(&self.base, &e);
    }

    fn stat_at(&self, dir: impl AsFd, name: &str) -> Option<Stat> {
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()
    }

    /// Opens a directory of the client (by its on-disk name); must be ours and a directory.
    fn open_dir_real(&self, real: &str) -> Result<OwnedFd> {
        let fd = rustix::fs::openat(&self.base, real, nofollow_dir(), Mode::empty())
            .map_err(io_err(format!("{}/{real}", self.base_path)))?;
        let st = rustix::fs::fstat(&fd).map_err(io_err(real.to_string()))?;
        if st.st_uid != self.uid {
            return refused(format!("{real} is not a dump directory of this sink"));
        }
        Ok(fd)
    }

    /// The on-disk directory for a client directory name: itself, or the receiver crash
    /// record that took it in (its `.kdump-name` names it).
    pub fn real_dir(&self, asked: &str) -> Result<Option<String>> {
        if let Some(st) = self.stat_at(&self.base, asked) {
            return if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                Ok(Some(asked.to_string()))
            } else {
                refused(format!("{asked} exists and is not a directory"))
            };
        }
        for d in self.client_dirs()? {
            if self.alias_of(&d).as_deref() == Some(asked) {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    fn alias_of(&self, real: &str) -> Option<String> {
        let dir = self.open_dir_real(real).ok()?;
        let fd = rustix::fs::openat(
            &dir,
            ALIAS_FILE,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .ok()?;
        let mut s = String::new();
        std::fs::File::from(fd)
            .take(256)
            .read_to_string(&mut s)
            .ok()?;
        Some(s.trim().to_string())
    }

    /// Names of the directories in the dump directory that belong to this client.
    fn client_dirs(&self) -> Result<Vec<String>> {
        Ok(self
            .all_dump_dirs()?
            .into_iter()
            .filter(|i| i.ip == self.client.ip)
            .map(|i| i.name)
            .collect())
    }

    fn list(&self, dir: impl AsFd) -> Result<Vec<(String, Stat)>> {
        let dup =
            rustix::fs::openat(dir, ".", nofollow_dir(), Mode::empty()).map_err(io_err("list"))?;
        let mut d = rustix::fs::Dir::new(dup).map_err(io_err("list"))?;
        let mut out = Vec::new();
        while let Some(ent) = d.read() {
            let ent = ent.map_err(io_err("list"))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            if out.len() > 100_000 {
                break;
            }
            out.push(name);
        }
        let dirfd = d.fd().map_err(io_err("list"))?;
        Ok(out
            .into_iter()
            .filter_map(|n| {
                let st = rustix::fs::statat(dirfd, n.as_str(), AtFlags::SYMLINK_NOFOLLOW).ok()?;
                Some((n, st))
            })
            .collect())
    }

    /// Every `<ip>-…` directory of any client (ours by owner), with its size and state.
    pub fn all_dump_dirs(&self) -> Result<Vec<DumpDirInfo>> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for (name, st) in self.list(&self.base)? {
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory || st.st_uid != self.uid {
                continue;
            }
            let Some((ip, rest)) = split_ip(&name) else {
                continue;
            };
            if rest.starts_with(MKTEMP_INFIX) {
                continue;
            }
            let Ok(dir) = self.open_dir_real(&name) else {
                continue;
            };
            let files = self.list(&dir)?;
            let recent =
                |t: SystemTime| now.duration_since(t).unwrap_or_default() < IN_PROGRESS_WINDOW;
            let visible: Vec<_> = files.iter().filter(|(n, _)| !n.starts_with('.')).collect();
            let in_progress = visible
                .iter()
                .any(|(n, s)| is_incomplete(n) && recent(mtime(s)))
                || (visible.is_empty() && recent(mtime(&st)));
            out.push(DumpDirInfo {
                name,
                ip,
                modified: mtime(&st),
                bytes: files.iter().map(|(_, s)| s.st_size.max(0) as u64).sum(),
                in_progress,
            });
        }
        out.sort_by(|a, b| a.modified.cmp(&b.modified).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Free bytes for unprivileged users on the dump directory's filesystem.
    pub fn free_bytes(&self) -> Result<u64> {
        let v = rustix::fs::fstatvfs(&self.base).map_err(io_err("statvfs"))?;
        Ok(v.f_bavail.saturating_mul(v.f_frsize))
    }

    /// What this client may still write: free space above the reserve, capped by the total.
    pub fn available(&self) -> Result<u64> {
        let mut avail = self.free_bytes()?.saturating_sub(self.limits.min_free);
        if self.limits.max_total > 0 {
            let used: u64 = self.all_dump_dirs()?.iter().map(|d| d.bytes).sum();
            avail = avail.min(self.limits.max_total.saturating_sub(used));
        }
        Ok(avail)
    }

    fn delete_dump_dir(&self, d: &DumpDirInfo, why: &str) -> Result<()> {
        let dir = self.open_dir_real(&d.name)?;
        for (n, st) in self.list(&dir)? {
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return refused(format!("{} holds a directory; left alone", d.name));
            }
            rustix::fs::unlinkat(&dir, n.as_str(), AtFlags::empty())
                .map_err(io_err(format!("{}/{n}", d.name)))?;
        }
        rustix::fs::unlinkat(&self.base, d.name.as_str(), AtFlags::REMOVEDIR)
            .map_err(io_err(d.name.clone()))?;
        self.event(
            SinkEvent::new(
                "dump_deleted",
                &self.client,
                &format!("{}/{}", self.base_path, d.name),
            )
            .with_detail(format!("{why}; {} bytes, dump of {}", d.bytes, d.ip)),
        );
        Ok(())
    }

    /// Before a new dump: delete this client's oldest dumps beyond `keep_dumps - 1` and the
    /// oldest dumps of all clients beyond `max_total`, never one in progress; then refuse if
    /// free space is below `min_free`.
    pub fn make_room(&self) -> Result<()> {
        let all = self.all_dump_dirs()?;
        let keep = self.limits.keep_dumps as usize;
        let mut gone = std::collections::BTreeSet::new();
        if keep > 0 {
            let mine: Vec<&DumpDirInfo> = all.iter().filter(|d| d.ip == self.client.ip).collect();
            let mut excess = (mine.len() + 1).saturating_sub(keep);
            for d in mine.iter().filter(|d| !d.in_progress) {
                if excess == 0 {
                    break;
                }
                self.delete_dump_dir(d, &format!("netdump_keep_dumps={keep} for {}", d.ip))?;
                gone.insert(d.name.clone());
                excess -= 1;
            }
        }
        if self.limits.max_total > 0 {
            let mut total: u64 = all
                .iter()
                .filter(|d| !gone.contains(&d.name))
                .map(|d| d.bytes)
                .sum();
            for d in all
                .iter()
                .filter(|d| !d.in_progress && !gone.contains(&d.name))
            {
                if total <= self.limits.max_total {
                    break;
                }
                self.delete_dump_dir(
                    d,
                    &format!("netdump_max_total={} bytes", self.limits.max_total),
                )?;
                total = total.saturating_sub(d.bytes);
            }
        }
        let mut free = self.free_bytes()?;
        if free < self.limits.min_free && self.run_hook("netdump-nospace", &self.base_path) {
            // As netdump-server does: the administrator's hook may free space; look again.
            free = self.free_bytes()?;
        }
        if free < self.limits.min_free {
            return refused(format!(
                "not enough space on the dump server: {} MiB free in {}, netdump_min_free is {} MiB; no dump accepted",
                free >> 20,
                self.base_path,
                self.limits.min_free >> 20
            ));
        }
        Ok(())
    }

    /// Runs a hook of `<dumpdir>/scripts/` (as the receiver does, with the client's address),
    /// only when it is root's and nobody else can change it; waits for it (bounded).
    /// Returns whether it ran.
    fn run_hook(&self, name: &str, dir: &str) -> bool {
        let Ok(scripts) = rustix::fs::openat(&self.base, "scripts", nofollow_dir(), Mode::empty())
        else {
            return false;
        };
        let trusted = |st: &Stat| st.st_uid == 0 && st.st_mode & 0o022 == 0;
        let dir_ok = rustix::fs::fstat(&scripts).is_ok_and(|st| trusted(&st));
        let hook_ok = self.stat_at(&scripts, name).is_some_and(|st| {
            FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && trusted(&st)
        });
        if !(dir_ok && hook_ok) {
            return false;
        }
        let args = [self.client.ip.to_string(), dir.to_string()];
        match netdump_receiver::store::spawn_hook(
            std::path::Path::new(&self.base_path),
            name,
            &args,
            Duration::from_secs(60),
        ) {
            Some(h) => h.join().is_ok(),
            None => false,
        }
    }

    /// A recent receiver crash record of this client not yet joined to a kdump directory.
    fn recent_crash_record(&self) -> Option<String> {
        let now = SystemTime::now();
        let mut best: Option<(SystemTime, String)> = None;
        for (name, st) in self.list(&self.base).ok()? {
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory
                || st.st_uid != self.uid
                || split_ip(&name).map(|(ip, _)| ip) != Some(self.client.ip)
                || now.duration_since(mtime(&st)).unwrap_or_default() > ALIAS_WINDOW
            {
                continue;
            }
            let Ok(dir) = self.open_dir_real(&name) else {
                continue;
            };
            let files = self.list(&dir).ok()?;
            // The receiver's console record: `log` alone (no dump of any kind yet, no alias).
            if files.len() == 1 && files[0].0 == "log" {
                let t = mtime(&st);
                if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                    best = Some((t, name));
                }
            }
        }
        best.map(|(_, n)| n)
    }

    /// `mkdir -p`: the dump directory itself exists already; an existing own directory is
    /// fine; a new one starts a dump (space and retention first), joining a fresh receiver
    /// crash record of this client when there is one.
    pub fn mkdir(&self, loc: &Loc) -> Result<String> {
        let asked = match loc {
            Loc::Base => return Ok(self.base_path.clone()),
            Loc::Dir(d) => d,
            _ => return refused("only dump directories can be created"),
        };
        if let Some(real) = self.real_dir(asked)? {
            return Ok(real);
        }
        self.make_room()?;
        if let Some(record) = self.recent_crash_record() {
            let dir = self.open_dir_real(&record)?;
            if let Ok(fd) = rustix::fs::openat(
                &dir,
                ALIAS_FILE,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                let mut f = std::fs::File::from(fd);
                f.write_all(format!("{asked}\n").as_bytes())
                    .map_err(|source| StoreError::Io {
                        what: ALIAS_FILE.into(),
                        source,
                    })?;
                self.event(
                    SinkEvent::new("dump_started", &self.client, &self.path_of(&record))
                        .with_detail(format!("kdump directory {asked} joins the crash record")),
                );
                self.run_hook("netdump-crash", &self.path_of(&record));
                return Ok(record);
            }
        }
        rustix::fs::mkdirat(&self.base, asked.as_str(), Mode::from_raw_mode(0o700))
            .map_err(io_err(format!("mkdir {}", self.path_of(asked))))?;
        self.event(SinkEvent::new(
            "dump_started",
            &self.client,
            &self.path_of(asked),
        ));
        // The same hook netdump dumps run (docs/netdump-wire.md, "Server files and hooks"): kdump dumps too.
        self.run_hook("netdump-crash", &self.path_of(asked));
        Ok(asked.clone())
    }

    pub fn path_of(&self, real: &str) -> String {
        format!("{}/{real}", self.base_path)
    }

    /// `mktemp -dqp BASE`: a fresh empty directory `<ip>-tmp.XXXXXXXXXX` of this client.
    pub fn mktemp(&self) -> Result<String> {
        use rand::RngExt;
        let prefix = format!("{}-{MKTEMP_INFIX}", self.client.ip);
        let existing = self
            .list(&self.base)?
            .iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .count();
        if existing >= MAX_TMP_DIRS {
            return refused(format!(
                "mktemp: this client already has {existing} temporary directories; rmdir them first"
            ));
        }
        for _ in 0..16 {
            let suffix: String = rand::rng()
                .sample_iter(rand::distr::Alphanumeric)
                .take(10)
                .map(char::from)
                .collect();
            let name = format!("{}-{MKTEMP_INFIX}{suffix}", self.client.ip);
            match rustix::fs::mkdirat(&self.base, name.as_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) => return Ok(self.path_of(&name)),
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(io_err("mktemp")(e)),
            }
        }
        refused("mktemp: no free name")
    }

    /// `rmdir`: an empty directory of this client.
    pub fn rmdir(&self, loc: &Loc) -> Result<()> {
        let Loc::Dir(asked) = loc else {
            return refused("rmdir: only this client's own empty directories");
        };
        let Some(real) = self.real_dir(asked)? else {
            return refused(format!("rmdir: {asked}: no such directory"));
        };
        self.open_dir_real(&real)?;
        rustix::fs::unlinkat(&self.base, real.as_str(), AtFlags::REMOVEDIR)
            .map_err(io_err(format!("rmdir {asked}")))
    }

    fn existing_dir(&self, asked: &str) -> Result<(String, OwnedFd)> {
        let Some(real) = self.real_dir(asked)? else {
            return refused(format!("{asked}: no such directory (mkdir it first)"));
        };
        let fd = self.open_dir_real(&real)?;
        Ok((real, fd))
    }

    /// Opens a client file for writing: a new name is created (0600, exclusive); an existing
    /// file only when it is still `*-incomplete` (or the status file), and then truncated.
    /// Finished files are never opened for writing.
    pub fn create(&self, loc: &Loc) -> Result<OpenFile> {
        let Loc::File { dir, name } = loc else {
            return refused("only files in this client's dump directories can be written");
        };
        let (real, dirfd) = self.existing_dir(dir)?;
        let exists = self.stat_at(&dirfd, name);
        let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        if exists.is_none() && self.list(&dirfd)?.len() >= MAX_FILES_PER_DIR {
            return refused(format!(
                "{dir} already holds {MAX_FILES_PER_DIR} files; no more in one dump directory"
            ));
        }
        let fd = match exists {
            None => rustix::fs::openat(
                &dirfd,
                name.as_str(),
                flags | OFlags::CREATE | OFlags::EXCL,
                Mode::from_raw_mode(0o600),
            ),
            Some(st) => {
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    return refused(format!("{dir}/{name} is not a regular file"));
                }
                if !is_incomplete(name) && name != STATUS_FILE {
                    return refused(format!(
                        "{dir}/{name} is a finished file: it cannot be overwritten"
                    ));
                }
                rustix::fs::openat(&dirfd, name.as_str(), flags | OFlags::TRUNC, Mode::empty())
            }
        }
        .map_err(io_err(format!("{dir}/{name}")))?;
        let st = rustix::fs::fstat(&fd).map_err(io_err(name.clone()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_nlink != 1 {
            return refused(format!("{dir}/{name} is not a plain file"));
        }
        // Blocking writes from here on.
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(io_err(name.clone()))?;
        Ok(OpenFile {
            file: std::fs::File::from(fd),
            dir: real,
            name: name.clone(),
        })
    }

    /// Opens the status file for reading (`kdumpctl` fetches it back after a test crash).
    pub fn open_read(&self, loc: &Loc) -> Result<OpenFile> {
        let Loc::File { dir, name } = loc else {
            return refused("only files can be read");
        };
        if name != STATUS_FILE {
            return refused(format!("reading is only allowed for {STATUS_FILE}"));
        }
        let (real, dirfd) = self.existing_dir(dir)?;
        let fd = rustix::fs::openat(
            &dirfd,
            name.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(io_err(format!("{dir}/{name}")))?;
        let st = rustix::fs::fstat(&fd).map_err(io_err(name.clone()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return refused(format!("{dir}/{name} is not a regular file"));
        }
        Ok(OpenFile {
            file: std::fs::File::from(fd),
            dir: real,
            name: name.clone(),
        })
    }

    /// `echo TEXT > FILE`: the status file (rewritten through a temporary name) or this
    /// client's netdump magic.
    pub fn write_text(&self, loc: &Loc, text: &str) -> Result<()> {
        let (dirfd, name) = match loc {
            Loc::Magic => {
                let fd = rustix::fs::openat(&self.base, "magic", nofollow_dir(), Mode::empty())
                    .map_err(io_err(format!("{}/magic", self.base_path)))?;
                (fd, self.client.ip.to_string())
            }
            Loc::File { dir, name } if name == STATUS_FILE => {
                (self.existing_dir(dir)?.1, name.clone())
            }
            _ => return refused("`echo > FILE` only writes the status file or the magic"),
        };
        let tmp = format!(".{name}.sink-tmp");
        let _ = rustix::fs::unlinkat(&dirfd, tmp.as_str(), AtFlags::empty());
        let fd = rustix::fs::openat(
            &dirfd,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_err(name.clone()))?;
        std::fs::File::from(fd)
            .write_all(format!("{text}\n").as_bytes())
            .map_err(|source| StoreError::Io {
                what: name.clone(),
                source,
            })?;
        if let Some(st) = self.stat_at(&dirfd, &name)
            && FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        {
            let _ = rustix::fs::unlinkat(&dirfd, tmp.as_str(), AtFlags::empty());
            return refused(format!("{name} is not a regular file"));
        }
        rustix::fs::renameat(&dirfd, tmp.as_str(), &dirfd, name.as_str())
            .map_err(io_err(name.clone()))
    }

    /// `mv FROM TO` inside one dump directory: FROM must be `*-incomplete`, TO must not exist.
    /// A finished dump file completes the dump (event with the directory's files).
    pub fn rename(&self, from: &Loc, to: &Loc) -> Result<()> {
        let (Loc::File { dir: d1, name: n1 }, Loc::File { dir: d2, name: n2 }) = (from, to) else {
            return refused("mv: only files inside one dump directory");
        };
        let (r1, dirfd) = self.existing_dir(d1)?;
        let r2 = self.real_dir(d2)?;
        if r2.as_deref() != Some(r1.as_str()) {
            return refused("mv: both names must be in the same dump directory");
        }
        if !is_incomplete(n1) {
            return refused(format!("mv: {d1}/{n1} is finished and cannot be renamed"));
        }
        match self.stat_at(&dirfd, n1) {
            Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
            Some(_) => return refused(format!("mv: {d1}/{n1} is not a regular file")),
            None => return refused(format!("mv: {d1}/{n1}: no such file")),
        }
        rustix::fs::renameat_with(
            &dirfd,
            n1.as_str(),
            &dirfd,
            n2.as_str(),
            RenameFlags::NOREPLACE,
        )
        .map_err(|e| {
            if e == Errno::EXIST {
                StoreError::Refused(format!("mv: {d2}/{n2} exists and is never replaced"))
            } else {
                io_err(format!("mv {d1}/{n1} {d2}/{n2}"))(e)
            }
        })?;
        if is_dump_name(n2) {
            let listing = self.list(&dirfd)?;
            // What crashed, from the kernel log beside the dump (docs/triage.md): best effort,
            // the dump is complete whatever triage finds.
            let crash = self.triage_dir(&dirfd, &listing);
            let files = listing
                .into_iter()
                .filter(|(n, _)| !n.starts_with('.'))
                .map(|(n, s)| serde_json::json!({"name": n, "size": s.st_size}))
                .collect::<Vec<_>>();
            let mut ev =
                SinkEvent::new("dump_complete", &self.client, &self.path_of(&r1)).with_files(files);
            if let Some((title, signature)) = crash {
                ev = ev.with_crash(title, signature);
            }
            self.event(ev);
        }
        Ok(())
    }

    /// Triage of the dump directory's kernel log (kdump's `dmesg.<stamp>` or
    /// `vmcore-dmesg.txt`, else the receiver's console crash record `log`): writes
    /// `triage.json` (0600, through a temporary name, replacing whatever the client may have put
    /// there) and returns the fatal crash's title and signature. Reads at most the last
    /// `triage::DUMP_LOG_TAIL` bytes of the log, without following links.
    fn triage_dir(&self, dirfd: &OwnedFd, listing: &[(String, Stat)]) -> Option<(String, String)> {
        let regular = |st: &Stat| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
        let pick = |want: &dyn Fn(&str) -> bool| {
            listing
                .iter()
                .filter(|(n, st)| want(n) && !is_incomplete(n) && regular(st))
                .map(|(n, _)| n.clone())
                .max()
        };
        let name = pick(&|n: &str| n.starts_with("dmesg."))
            .or_else(|| pick(&|n: &str| n == "vmcore-dmesg.txt"))
            .or_else(|| pick(&|n: &str| n == "log"))?;
        let fd = rustix::fs::openat(
            dirfd,
            name.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .ok()?;
        if !regular(&rustix::fs::fstat(&fd).ok()?) {
            return None;
        }
        let tail = netdump_receiver::files::read_tail(
            &mut std::fs::File::from(fd),
            netdump_triage::DUMP_LOG_TAIL,
        )
        .ok()?;
        let t = netdump_triage::for_dump(&name, &tail);
        let tmp = format!(".triage.json.{}", std::process::id());
        let out = rustix::fs::openat(
            dirfd,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .ok()?;
        let written = std::fs::File::from(out).write_all(&t.json).is_ok()
            && rustix::fs::renameat(dirfd, tmp.as_str(), dirfd, "triage.json").is_ok();
        if !written {
            let _ = rustix::fs::unlinkat(dirfd, tmp.as_str(), AtFlags::empty());
        }
        t.fatal
    }

    /// Attributes of what a client path names, when it exists.
    pub fn stat(&self, loc: &Loc) -> Result<Option<Stat>> {
        Ok(match loc {
            Loc::Base => Some(rustix::fs::fstat(&self.base).map_err(io_err("stat"))?),
            Loc::Dir(d) => match self.real_dir(d)? {
                Some(real) => {
                    Some(rustix::fs::fstat(self.open_dir_real(&real)?).map_err(io_err("stat"))?)
                }
                None => None,
            },
            Loc::File { dir, name } => match self.real_dir(dir)? {
                Some(real) => {
                    let fd = self.open_dir_real(&real)?;
                    self.stat_at(&fd, name)
                }
                None => None,
            },
            Loc::Magic => None,
        })
    }

    /// Copies a file descriptor (the session's stdin) into an open file until end of input.
    /// From a pipe — what sshd gives a command — the kernel moves the pages (splice), so the
    /// sink adds no copy to a dump; anything else takes the read/write path.
    pub fn receive_fd(&self, f: &mut OpenFile, input: std::os::fd::BorrowedFd<'_>) -> Result<u64> {
        let is_pipe = rustix::fs::fstat(input)
            .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Fifo)
            .unwrap_or(false);
        if !is_pipe {
            let mut file = std::fs::File::from(input.try_clone_to_owned().map_err(|source| {
                StoreError::Io {
                    what: "stdin".into(),
                    source,
                }
            })?);
            return self.receive(f, &mut file, None);
        }
        let mut total = 0u64;
        loop {
            match rustix::pipe::splice(
                input,
                None,
                &f.file,
                None,
                1 << 20,
                rustix::pipe::SpliceFlags::MOVE | rustix::pipe::SpliceFlags::MORE,
            ) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(Errno::INTR) => continue,
                // A filesystem without splice support: carry on the ordinary way.
                Err(Errno::INVAL) if total == 0 => {
                    let mut file =
                        std::fs::File::from(input.try_clone_to_owned().map_err(|source| {
                            StoreError::Io {
                                what: "stdin".into(),
                                source,
                            }
                        })?);
                    return self.receive(f, &mut file, None);
                }
                Err(e) => {
                    let source = std::io::Error::from(e);
                    self.event(
                        SinkEvent::new("dump_failed", &self.client, &self.path_of(&f.dir))
                            .with_detail(format!("{}: {source} after {total} bytes", f.name)),
                    );
                    return Err(StoreError::Io {
                        what: format!("{}/{}", f.dir, f.name),
                        source,
                    });
                }
            }
        }
    }

    /// Copies `input` into an open file; a failure is a failed dump (event).
    pub fn receive(
        &self,
        f: &mut OpenFile,
        input: &mut dyn Read,
        limit: Option<u64>,
    ) -> Result<u64> {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let res: io::Result<()> = (|| {
            loop {
                let want = match limit {
                    Some(l) if l - total < buf.len() as u64 => (l - total) as usize,
                    _ => buf.len(),
                };
                if want == 0 {
                    return Ok(());
                }
                let n = match input.read(&mut buf[..want]) {
                    Ok(0) => {
                        return if limit.is_some() {
                            Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the sender stopped early",
                            ))
                        } else {
                            Ok(())
                        };
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                f.file.write_all(&buf[..n])?;
                total += n as u64;
            }
        })();
        if let Err(source) = res {
            self.event(
                SinkEvent::new("dump_failed", &self.client, &self.path_of(&f.dir))
                    .with_detail(format!("{}: {source} after {total} bytes", f.name)),
            );
            return Err(StoreError::Io {
                what: format!("{}/{}", f.dir, f.name),
                source,
            });
        }
        Ok(total)
    }
}

/// Names that finish a dump: Debian `dump.<stamp>`/`vmcore.<stamp>`, RHEL `vmcore`/`vmcore.flat`.
pub fn is_dump_name(name: &str) -> bool {
    !is_incomplete(name)
        && (name.starts_with("dump.") || name == "vmcore" || name.starts_with("vmcore."))
}

/// `<ip>-<rest>` where `<ip>` is an address: the address and the rest.
pub fn split_ip(name: &str) -> Option<(std::net::IpAddr, &str)> {
    // IPv6 addresses contain `-`-free hex and colons; the stamp starts after the first `-`
    // whose prefix parses as an address.
    name.match_indices('-').find_map(|(i, _)| {
        let ip = name[..i].parse().ok()?;
        let rest = &name[i + 1..];
        (!rest.is_empty()).then_some((ip, rest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn store(dir: &std::path::Path, limits: Limits) -> Store {
        Store::open(
            dir.to_str().unwrap(),
            Client {
                name: "c1".into(),
                ip: "198.18.0.11".parse().unwrap(),
            },
            limits,
        )
        .unwrap()
    }
    const NO_LIMITS: Limits = Limits {
        min_free: 0,
        keep_dumps: 0,
        max_total: 0,
    };
    fn file(d: &str, n: &str) -> Loc {
        Loc::File {
            dir: d.into(),
            name: n.into(),
        }
    }

    #[test]
    fn a_whole_dump_and_its_immutability() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), NO_LIMITS);
        let d = "198.18.0.11-202612020425";
        assert_eq!(s.mkdir(&Loc::Dir(d.into())).unwrap(), d);
        assert_eq!(s.mkdir(&Loc::Dir(d.into())).unwrap(), d, "mkdir -p again");
        let mut f = s.create(&file(d, "dump-incomplete")).unwrap();
        s.receive(&mut f, &mut &b"KDUMP   data"[..], None).unwrap();
        drop(f);
        s.rename(&file(d, "dump-incomplete"), &file(d, "dump.202612020425"))
            .unwrap();
        let p = t.path().join(d).join("dump.202612020425");
        assert_eq!(std::fs::read(&p).unwrap(), b"KDUMP   data");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(t.path().join(d))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        // Finished: no overwrite, no rename, no rename onto it.
        assert!(s.create(&file(d, "dump.202612020425")).is_err());
        assert!(
            s.rename(&file(d, "dump.202612020425"), &file(d, "x"))
                .is_err()
        );
        let mut g = s.create(&file(d, "vmcore-incomplete")).unwrap();
        s.receive(&mut g, &mut &b"y"[..], None).unwrap();
        assert!(
            s.rename(&file(d, "vmcore-incomplete"), &file(d, "dump.202612020425"))
                .is_err()
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"KDUMP   data");
        let ev = std::fs::read_to_string(t.path().join("events.jsonl")).unwrap();
        assert!(
            ev.contains("\"dump_started\"") && ev.contains("\"dump_complete\""),
            "{ev}"
        );
        assert!(ev.contains("dump.202612020425"), "{ev}");
    }

    #[test]
    fn a_completed_dump_is_triaged_from_its_kernel_log() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), NO_LIMITS);
        let d = "198.18.0.11-202612020430";
        s.mkdir(&Loc::Dir(d.into())).unwrap();
        // The client put its own triage.json first: the sink's replaces it.
        let mut fake = s.create(&file(d, "triage.json")).unwrap();
        s.receive(&mut fake, &mut &b"{\"forged\": true}"[..], None)
            .unwrap();
        drop(fake);
        let log = "[   42.100000] sysrq: Trigger a crash\n                   [   42.100100] Kernel panic - not syncing: sysrq triggered crash\n                   [   42.100200] CPU: 0 PID: 812 Comm: bash Not tainted 6.1.0-18-amd64 #1\n                   [   42.100300] Call Trace:\n                   [   42.100400]  <TASK>\n                   [   42.100500]  dump_stack_lvl+0x44/0x5c\n                   [   42.100600]  panic+0x118/0x2ed\n                   [   42.100700]  sysrq_handle_crash+0x16/0x20\n                   [   42.100800]  __handle_sysrq.cold+0x43/0x11b\n                   [   42.100900]  write_sysrq_trigger+0x24/0x40\n                   [   42.101000]  </TASK>\n";
        let mut f = s.create(&file(d, "dmesg.202612020430")).unwrap();
        s.receive(&mut f, &mut log.as_bytes(), None).unwrap();
        drop(f);
        let mut f = s.create(&file(d, "dump-incomplete")).unwrap();
        s.receive(&mut f, &mut &b"KDUMP   data"[..], None).unwrap();
        drop(f);
        s.rename(&file(d, "dump-incomplete"), &file(d, "dump.202612020430"))
            .unwrap();
        let p = t.path().join(d).join("triage.json");
        let tj: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(tj["source"], "dmesg.202612020430");
        let title = tj["crashes"][0]["title"].as_str().unwrap().to_string();
        assert!(title.contains("sysrq"), "{tj}");
        assert!(tj.get("forged").is_none());
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let ev = std::fs::read_to_string(t.path().join("events.jsonl")).unwrap();
        let done: serde_json::Value = ev
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .find(|e: &serde_json::Value| e["event"] == "dump_complete")
            .unwrap();
        assert_eq!(done["title"], title.as_str());
        assert_eq!(
            done["signature"],
            tj["crashes"][0]["signature"].as_str().unwrap()
        );
    }

    #[test]
    fn a_pipe_is_spliced_into_the_file() {
        use std::io::Write as _;
        use std::os::fd::AsFd;
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), NO_LIMITS);
        let d = "198.18.0.11-7";
        s.mkdir(&Loc::Dir(d.into())).unwrap();
        let mut f = s.create(&file(d, "dump-incomplete")).unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let data = data.clone();
            std::thread::spawn(move || std::fs::File::from(w).write_all(&data).unwrap())
        };
        let n = s.receive_fd(&mut f, r.as_fd()).unwrap();
        writer.join().unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(
            std::fs::read(t.path().join(d).join("dump-incomplete")).unwrap(),
            data
        );
    }

    #[test]
    fn files_and_temporary_directories_are_bounded() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), NO_LIMITS);
        let d = "198.18.0.11-8";
        s.mkdir(&Loc::Dir(d.into())).unwrap();
        for i in 0..MAX_FILES_PER_DIR {
            s.create(&file(d, &format!("f{i}"))).unwrap();
        }
        let e = s.create(&file(d, "one-more")).unwrap_err().to_string();
        assert!(e.contains("no more"), "{e}");
        for _ in 0..MAX_TMP_DIRS {
            s.mktemp().unwrap();
        }
        assert!(s.mktemp().is_err());
    }

    #[test]
    fn symlinks_are_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let s = store(t.path(), NO_LIMITS);
        let d = "198.18.0.11-1";
        std::os::unix::fs::symlink(outside.path(), t.path().join(d)).unwrap();
        assert!(s.create(&file(d, "dump-incomplete")).is_err());
        assert!(s.mkdir(&Loc::Dir(d.into())).is_err());
        let d2 = "198.18.0.11-2";
        s.mkdir(&Loc::Dir(d2.into())).unwrap();
        let target = outside.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, t.path().join(d2).join("dump-incomplete")).unwrap();
        assert!(s.create(&file(d2, "dump-incomplete")).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(std::fs::read_dir(outside.path()).unwrap().count() == 1);
    }

    #[test]
    fn retention_keeps_the_newest_and_never_one_in_progress() {
        let t = tempfile::tempdir().unwrap();
        let s = store(
            t.path(),
            Limits {
                min_free: 0,
                keep_dumps: 2,
                max_total: 0,
            },
        );
        let old = SystemTime::now() - Duration::from_secs(3600);
        for (i, name) in ["198.18.0.11-1", "198.18.0.11-2"].iter().enumerate() {
            s.mkdir(&Loc::Dir(name.to_string())).unwrap();
            let mut f = s.create(&file(name, "dump-incomplete")).unwrap();
            s.receive(&mut f, &mut &b"x"[..], None).unwrap();
            if i == 0 {
                // The older one is finished; the newer one is still being written.
                s.rename(&file(name, "dump-incomplete"), &file(name, "dump.1"))
                    .unwrap();
            }
            filetime_set(&t.path().join(name), old + Duration::from_secs(i as u64));
        }
        // Another client's dump is not ours to count.
        std::fs::create_dir(t.path().join("198.18.0.12-1")).unwrap();
        s.mkdir(&Loc::Dir("198.18.0.11-3".into())).unwrap();
        assert!(
            !t.path().join("198.18.0.11-1").exists(),
            "oldest complete one removed"
        );
        assert!(t.path().join("198.18.0.11-2").exists(), "in progress, kept");
        assert!(t.path().join("198.18.0.12-1").exists());
        let ev = std::fs::read_to_string(t.path().join("events.jsonl")).unwrap();
        assert!(ev.contains("\"dump_deleted\""), "{ev}");
    }

    fn filetime_set(p: &std::path::Path, t: SystemTime) {
        let f = std::fs::File::open(p).unwrap();
        f.set_modified(t).unwrap();
    }

    #[test]
    fn no_room_is_refused_clearly() {
        let t = tempfile::tempdir().unwrap();
        let s = store(
            t.path(),
            Limits {
                min_free: u64::MAX / 2,
                keep_dumps: 0,
                max_total: 0,
            },
        );
        let e = s
            .mkdir(&Loc::Dir("198.18.0.11-9".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not enough space") && e.contains("netdump_min_free"),
            "{e}"
        );
        assert!(!t.path().join("198.18.0.11-9").exists());
    }

    #[test]
    fn the_nospace_hook_runs_and_only_when_it_is_roots() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let s = store(
            t.path(),
            Limits {
                min_free: u64::MAX / 2,
                keep_dumps: 0,
                max_total: 0,
            },
        );
        let scripts = t.path().join("scripts");
        std::fs::create_dir(&scripts).unwrap();
        std::fs::set_permissions(&scripts, std::fs::Permissions::from_mode(0o750)).unwrap();
        let hook = scripts.join("netdump-nospace");
        let mark = t.path().join("hook-ran");
        std::fs::write(
            &hook,
            format!("#!/bin/sh\necho \"$1 $2\" > '{}'\n", mark.display()),
        )
        .unwrap();
        // Group-writable: not trusted, not run.
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(s.mkdir(&Loc::Dir("198.18.0.11-1".into())).is_err());
        assert!(!mark.exists());
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = s
            .mkdir(&Loc::Dir("198.18.0.11-1".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not enough space"), "{e}");
        let ran = std::fs::read_to_string(&mark).unwrap();
        assert!(ran.starts_with("198.18.0.11 "), "{ran}");
    }

    #[test]
    fn joins_a_fresh_crash_record() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), NO_LIMITS);
        let rec = t.path().join("198.18.0.11-2026-12-02-04:24:34");
        std::fs::create_dir(&rec).unwrap();
        std::fs::write(rec.join("log"), "Kernel panic").unwrap();
        let real = s
            .mkdir(&Loc::Dir("198.18.0.11-202612020425".into()))
            .unwrap();
        assert_eq!(real, "198.18.0.11-2026-12-02-04:24:34");
        let mut f = s
            .create(&file("198.18.0.11-202612020425", "dump-incomplete"))
            .unwrap();
        s.receive(&mut f, &mut &b"d"[..], None).unwrap();
        s.rename(
            &file("198.18.0.11-202612020425", "dump-incomplete"),
            &file("198.18.0.11-202612020425", "dump.202612020425"),
        )
        .unwrap();
        assert!(rec.join("dump.202612020425").exists());
        assert!(!t.path().join("198.18.0.11-202612020425").exists());
        // A second dump gets its own directory: the record is taken.
        let real2 = s
            .mkdir(&Loc::Dir("198.18.0.11-202612020430".into()))
            .unwrap();
        assert_eq!(real2, "198.18.0.11-202612020430");
        let _ = std::fs::metadata(&rec).unwrap().ino();
    }

    #[test]
    fn a_kdump_dump_runs_the_crash_hook_with_its_directory() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), NO_LIMITS);
        let scripts = t.path().join("scripts");
        std::fs::create_dir(&scripts).unwrap();
        std::fs::set_permissions(&scripts, std::fs::Permissions::from_mode(0o750)).unwrap();
        let mark = t.path().join("crash-hook");
        let hook = scripts.join("netdump-crash");
        std::fs::write(
            &hook,
            format!("#!/bin/sh\necho \"$1 $2\" >> '{}'\n", mark.display()),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = "198.18.0.11-202612020440";
        s.mkdir(&Loc::Dir(d.into())).unwrap();
        // mkdir -p again (kdump-tools retries it) is no new crash.
        s.mkdir(&Loc::Dir(d.into())).unwrap();
        let ran = std::fs::read_to_string(&mark).unwrap_or_default();
        let trusted = nix::unistd::geteuid().is_root();
        if trusted {
            assert_eq!(
                ran,
                format!("198.18.0.11 {}/{d}\n", t.path().display()),
                "once, with the address and the directory"
            );
        } else {
            // Not root's: never run (the sink trusts only root's hooks).
            assert_eq!(ran, "");
        }
    }

    #[test]
    fn split_ip_handles_v4_and_v6() {
        assert_eq!(
            split_ip("198.18.0.11-2026-12-02-04:24:34").map(|(i, r)| (i.to_string(), r)),
            Some(("198.18.0.11".into(), "2026-12-02-04:24:34"))
        );
        assert_eq!(
            split_ip("fd00::11-202612020425").map(|(i, r)| (i.to_string(), r)),
            Some(("fd00::11".into(), "202612020425"))
        );
        assert!(split_ip("console").is_none());
    }
}
