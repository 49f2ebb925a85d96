//! Writing a file on a host atomically, with its content on stdin (never in argv).
//!
//! The script writes stdin to a temporary file next to the target (same filesystem), sets owner
//! and mode on it, flushes it to disk where `sync FILE` is supported, and renames it over the
//! target. Readers see the old file or the new one, never a partial one; a failed step leaves no
//! temporary file behind.

use std::path::Path;

use super::remote::RemoteCommand;
use super::shell::quote;

/// Shell lines that `cd` into `dir` and stop unless it is the real directory of that name
/// (not reached through a symlink, not swapped meanwhile) and only root or the connecting user
/// can change its entries. Later steps then work relative to `.`, which no other user can
/// redirect.
pub fn enter_private_dir(dir: &str) -> String {
    let d = quote(dir);
    format!(
        // One `stat` for both directories (device:inode, owner, mode); `id` only when the
        // owner is not root. Every write step starts with this, so its programs count.
        "cd -P -- {d}\n\
         set -- $(stat -c '%d:%i %u %a' -- . {d})\n\
         if [ \"$(pwd -P)\" != {d} ] || [ $# -ne 6 ] || [ \"$1\" != \"$4\" ]; then \
           echo {msg_moved} >&2; exit 1; fi\n\
         case \"$2\" in 0) ;; *) if [ \"$2\" != \"$(id -u)\" ]; then echo {msg_owner} >&2; exit 1; fi;; esac\n\
         if [ $(( 0$3 & 022 )) -ne 0 ]; then echo {msg_owner} >&2; exit 1; fi\n",
        msg_moved = quote(&format!(
            "{dir}: not a plain directory path (a symlink on the way, or it moved); nothing written"
        )),
        msg_owner = quote(&format!(
            "{dir}: another user can change this directory; refusing to write there as root (make it root-owned, mode 0755 or stricter)"
        )),
    )
}

/// Where and how to write a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Absolute path on the host.
    pub path: String,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
    /// Owner (name or uid); `None` keeps the connecting user.
    pub owner: Option<String>,
    /// Group (name or gid); `None` keeps the user's primary group.
    pub group: Option<String>,
}

impl RemoteFile {
    pub fn new(path: impl Into<String>, mode: u32) -> Self {
        RemoteFile {
            path: path.into(),
            mode,
            owner: None,
            group: None,
        }
    }

    pub fn owner(mut self, owner: impl Into<String>, group: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self.group = Some(group.into());
        self
    }

    /// The step that writes `contents` to this file. Errors name what is wrong with the request.
    pub fn write_command(
        &self,
        step: impl Into<String>,
        contents: impl Into<Vec<u8>>,
    ) -> Result<RemoteCommand, String> {
        let path = Path::new(&self.path);
        if !path.is_absolute() || self.path.ends_with('/') {
            return Err(format!(
                "{}: remote file paths must be absolute file paths",
                self.path
            ));
        }
        if self.path.contains('\0') || self.path.contains('\n') {
            return Err(format!(
                "{:?}: a path must not contain NUL or newline",
                self.path
            ));
        }
        if self.mode > 0o7777 {
            return Err(format!(
                "{}: mode {:o} is not a permission mode",
                self.path, self.mode
            ));
        }
        let dir = path
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        let chown = match (&self.owner, &self.group) {
            (None, None) => String::new(),
            (owner, group) => {
                for name in [owner, group].into_iter().flatten() {
                    if name.is_empty() || name.contains([':', '\n', '\0']) {
                        return Err(format!("{}: bad owner or group {name:?}", self.path));
                    }
                }
                format!(
                    "chown {} \"$t\"\n",
                    quote(&format!(
                        "{}{}",
                        owner.as_deref().unwrap_or(""),
                        group.as_ref().map(|g| format!(":{g}")).unwrap_or_default()
                    ))
                )
            }
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n != "." && n != "..")
            .ok_or_else(|| format!("{}: no file name", self.path))?;
        // Everything happens inside the target's directory, entered once: the temporary file
        // is created, chowned and renamed relative to it, and only when nobody but root (or
        // the connecting user) can write there, so no other user can swap a path under us.
        let script = format!(
            "set -eu\n\
             {enter}\
             t=$(mktemp ./.provision.XXXXXX)\n\
             trap 'rm -f \"$t\"' EXIT\n\
             cat > \"$t\"\n\
             {chown}chmod {mode:04o} \"$t\"\n\
             sync \"$t\" 2>/dev/null || true\n\
             mv -f \"$t\" ./{name}\n\
             trap - EXIT\n",
            enter = enter_private_dir(&dir),
            mode = self.mode,
            name = quote(&name),
        );
        Ok(RemoteCommand::new(step, script).stdin(contents))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::process::{Command, Stdio};

    /// Runs the step's script with a local `sh`, as sshd would on the host.
    fn run_locally(cmd: &RemoteCommand) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&cmd.script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(cmd.stdin.as_deref().unwrap_or_default())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    #[test]
    fn writes_atomically_with_mode_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("it's $odd.conf");
        std::fs::write(&path, "old").unwrap();
        let old_ino = std::fs::metadata(&path).unwrap().ino();
        let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let cmd = RemoteFile::new(path.to_str().unwrap(), 0o600)
            .write_command("write", data.clone())
            .unwrap();
        assert!(!cmd.script.contains("\u{0}"));
        let out = run_locally(&cmd);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_ne!(
            meta.ino(),
            old_ino,
            "replaced by rename, not rewritten in place"
        );
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
    }

    #[test]
    fn failure_leaves_target_and_directory_clean() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, "old").unwrap();
        // chown to a user that does not exist fails after the temp file was written.
        let cmd = RemoteFile::new(path.to_str().unwrap(), 0o644)
            .owner("no-such-user-xyz", "root")
            .write_command("write", b"new".to_vec())
            .unwrap();
        let out = run_locally(&cmd);
        assert!(!out.status.success());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn never_writes_in_a_directory_another_user_can_change() {
        let tmp = tempfile::tempdir().unwrap();
        // Writable by others: refused, nothing left behind.
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let cmd = RemoteFile::new(open.join("f").to_str().unwrap(), 0o600)
            .write_command("write", b"x".to_vec())
            .unwrap();
        let out = run_locally(&cmd);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("another user"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
        // Reached through a symlink: refused, the link's target untouched.
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let cmd = RemoteFile::new(link.join("f").to_str().unwrap(), 0o600)
            .write_command("write", b"x".to_vec())
            .unwrap();
        assert!(!run_locally(&cmd).status.success());
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(
            RemoteFile::new("relative/path", 0o644)
                .write_command("s", vec![])
                .is_err()
        );
        assert!(
            RemoteFile::new("/etc/", 0o644)
                .write_command("s", vec![])
                .is_err()
        );
        assert!(
            RemoteFile::new("/etc/x", 0o17777)
                .write_command("s", vec![])
                .is_err()
        );
        assert!(
            RemoteFile::new("/etc/x", 0o644)
                .owner("a:b", "c")
                .write_command("s", vec![])
                .is_err()
        );
    }

    #[test]
    fn content_travels_on_stdin_only() {
        let cmd = RemoteFile::new("/etc/secret", 0o600)
            .write_command("write", b"hunter2".to_vec())
            .unwrap();
        assert!(!cmd.script.contains("hunter2"));
        assert!(!format!("{cmd:?}").contains("hunter2"));
        assert_eq!(cmd.stdin.as_deref(), Some(&b"hunter2"[..]));
    }
}
