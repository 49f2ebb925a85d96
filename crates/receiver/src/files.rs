//! Opening files under a dump directory that other users (or a compromised client's owner) may
//! have tampered with: every open is non-blocking (a FIFO cannot park the caller in the kernel),
//! never follows a final symlink, and the opened file must be a regular file (checked on the
//! descriptor, so there is no race between the check and the use). Reads are bounded in size.
//! See docs/receiver.md ("Files").

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

fn flags() -> i32 {
    use nix::fcntl::OFlag;
    (OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits()
}

fn regular(f: File, path: &Path) -> io::Result<File> {
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file (a FIFO, device or directory was put there; remove it)",
                path.display()
            ),
        ));
    }
    Ok(f)
}

fn named(path: &Path, e: io::Error) -> io::Error {
    // ELOOP from O_NOFOLLOW: say what it means.
    if e.raw_os_error() == Some(nix::libc::ELOOP) {
        return io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link; refusing to follow it",
                path.display()
            ),
        );
    }
    io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
}

/// Opens (creating with mode 0600) `path` for appending. An existing file is set to 0600.
pub fn open_append(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(flags())
        .open(path)
        .map_err(|e| named(path, e))?;
    let f = regular(f, path)?;
    private(&f)?;
    Ok(f)
}

/// Creates or truncates `path` (mode 0600) for reading and writing at offsets.
pub fn open_truncate(path: &Path) -> io::Result<File> {
    // Open without O_TRUNC first: truncating happens only once we know it is a regular file.
    let f = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(flags())
        .open(path)
        .map_err(|e| named(path, e))?;
    let f = regular(f, path)?;
    f.set_len(0)?;
    private(&f)?;
    Ok(f)
}

fn private(f: &File) -> io::Result<()> {
    let meta = f.metadata()?;
    if meta.permissions().mode() & 0o777 != 0o600 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Opens the regular file `path` for reading (non-blocking, no-follow, regular files only).
pub fn open_read(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(flags())
        .open(path)
        .map_err(|e| named(path, e))?;
    regular(f, path)
}

/// The last `max` bytes of an open file (all of it when shorter).
pub fn read_tail(f: &mut File, max: u64) -> io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let size = f.metadata()?.len();
    f.seek(SeekFrom::Start(size.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    f.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads at most `max` bytes of the regular file `path`; a longer file is an error (never read
/// whole: a link to a huge file must not eat memory).
pub fn read_bounded(path: &Path, max: usize) -> io::Result<Vec<u8>> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(flags())
        .open(path)
        .map_err(|e| named(path, e))?;
    let f = regular(f, path)?;
    let mut buf = Vec::with_capacity(max.min(4096) + 1);
    f.take(max as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", path.display()),
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_symlink_and_device_are_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // No reader: a blocking open would wait forever here.
        assert!(open_append(&fifo).is_err());
        assert!(open_truncate(&fifo).is_err());
        assert!(read_bounded(&fifo, 64).is_err());
        let link = t.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read_bounded(&link, 64).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(open_append(&link).is_err());
        assert!(read_bounded(Path::new("/dev/zero"), 64).is_err());
    }

    #[test]
    fn regular_files_work_and_reads_are_bounded() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        {
            use std::io::Write;
            let mut f = open_append(&p).unwrap();
            f.write_all(b"hello").unwrap();
        }
        assert_eq!(read_bounded(&p, 5).unwrap(), b"hello");
        assert!(read_bounded(&p, 4).is_err());
        let f = open_truncate(&p).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 0);
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    }
}
