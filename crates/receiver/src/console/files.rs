//! The console logs' files: the private `console/` directory, appending without following links,
//! and rotation by renaming `<ip>.log` → `<ip>.log.1` → … → `<ip>.log.<keep>`.

use std::fs::{DirBuilder, File};
use std::io::{self, BufWriter};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Write buffer of a log or record file.
const BUF_BYTES: usize = 64 * 1024;

/// Makes `dir` (0700) unless it exists; something else in its place is an error.
pub(super) fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::other(format!(
            "{} exists but is not a directory; remove it",
            dir.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match DirBuilder::new().mode(0o700).create(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e),
    }
}

/// Opens `path` for appending, creating it 0600; never follows a symlink; a pre-existing file
/// gets mode 0600 too. Non-blocking (a FIFO put there cannot stall us), regular files only.
pub(super) fn open_append(path: &Path) -> io::Result<BufWriter<File>> {
    let f = crate::files::open_append(path)?;
    Ok(BufWriter::with_capacity(BUF_BYTES, f))
}

/// Shifts `base.1` … `base.<keep-1>` up by one and `base` to `base.1` (the oldest falls off);
/// with `keep` 0 `base` is removed. Missing files are fine.
pub(super) fn rotate(base: &Path, keep: usize) -> io::Result<()> {
    let name = |i: usize| {
        let mut p = base.to_path_buf().into_os_string();
        p.push(format!(".{i}"));
        PathBuf::from(p)
    };
    let step = |from: &Path, to: Option<&Path>| {
        let r = match to {
            Some(to) => std::fs::rename(from, to),
            None => std::fs::remove_file(from),
        };
        match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    };
    let mut result = Ok(());
    if keep == 0 {
        return step(base, None);
    }
    for i in (1..keep).rev() {
        result = result.and(step(&name(i), Some(&name(i + 1))));
    }
    result.and(step(base, Some(&name(1))))
}
