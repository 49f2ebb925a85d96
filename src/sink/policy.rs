//! Which paths a client may name, and what they mean (pure, no IO).
//!
//! A client sees the dump directory (`<dumpdir>`, netdump's home) and, inside it, only its own
//! dump directories `<ip>-<stamp>` one level deep with plain files in them, plus its own
//! netdump magic file `magic/<ip>`. Paths may be absolute (under `<dumpdir>`) or relative to
//! it. `.`/`..` components, hidden names, empty components, control characters and anything
//! deeper are refused, so no path the sink opens can leave the client's directories
//! (docs/server-layout.md).

use std::net::IpAddr;

use super::command::Refusal;

/// Who the client is, as sshd established it (never from the command line it sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Inventory name, for logs and events.
    pub name: String,
    /// The address its key is bound to (`from=`); its dump directories are `<ip>-…`.
    pub ip: IpAddr,
}

/// Longest file or directory name a client may use.
pub const MAX_NAME: usize = 100;

/// Prefix of the directories `mktemp -dqp` makes (RHEL's write check); never a dump.
pub const MKTEMP_INFIX: &str = "tmp.";

/// What a client path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loc {
    /// The dump directory itself.
    Base,
    /// One of this client's dump directories (its name on disk, before crash-record aliasing).
    Dir(String),
    /// A file in one of this client's dump directories.
    File { dir: String, name: String },
    /// This client's netdump magic file `magic/<ip>`.
    Magic,
}

fn refuse<T>(msg: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(msg.into()))
}

/// Characters allowed in names (kdump stamps use digits, `-`, `:` and `.`; IPv6 adds `:`).
fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:+-".contains(c))
}

/// Whether a file name is still being written (`dump-incomplete`, `vmcore-incomplete`,
/// `vmcore-dmesg-incomplete.txt`): only such files may be overwritten or renamed.
pub fn is_incomplete(name: &str) -> bool {
    name.contains("incomplete")
}

impl Client {
    fn prefix(&self) -> String {
        format!("{}-", self.ip)
    }

    /// Whether `name` (a directory name on disk) is one of this client's dump directories.
    pub fn owns_dir(&self, name: &str) -> bool {
        name_ok(name)
            && name
                .strip_prefix(&self.prefix())
                .is_some_and(|rest| !rest.is_empty())
    }

    /// The on-disk name for a directory name the client asked for: its own `<ip>-…` names as
    /// they are; RHEL's `kdumpctl test` directory `kdump-test-<id>` gets the client's prefix.
    pub fn dir_name(&self, asked: &str) -> Result<String, Refusal> {
        if !name_ok(asked) {
            return refuse(format!("directory name {asked:?} is not allowed"));
        }
        if self.owns_dir(asked) {
            return Ok(asked.to_string());
        }
        if asked.starts_with("kdump-test-") {
            return Ok(format!("{}{asked}", self.prefix()));
        }
        refuse(format!(
            "{asked:?} is not one of this client's directories (they are named {}<stamp>)",
            self.prefix()
        ))
    }

    /// Resolves a client path against the dump directory `base` (absolute, no trailing `/`).
    pub fn resolve(&self, base: &str, path: &str) -> Result<Loc, Refusal> {
        if path.is_empty() || path.chars().any(|c| c.is_control()) {
            return refuse("empty path or control character in a path");
        }
        let rel = if let Some(abs) = path.strip_prefix('/') {
            let b = base.trim_start_matches('/');
            match abs.strip_prefix(b) {
                Some("") | Some("/") => return Ok(Loc::Base),
                Some(r) if r.starts_with('/') => r[1..].to_string(),
                _ => {
                    return refuse(format!("{path:?} is outside the dump directory {base}"));
                }
            }
        } else {
            path.to_string()
        };
        let rel = rel.strip_suffix('/').unwrap_or(&rel);
        if rel.is_empty() || rel == "." {
            return Ok(Loc::Base);
        }
        let parts: Vec<&str> = rel.split('/').collect();
        for p in &parts {
            if p.is_empty() || *p == "." || *p == ".." {
                return refuse(format!("{path:?}: `.`, `..` and `//` are not allowed"));
            }
        }
        match parts.as_slice() {
            ["magic", ip] => {
                if ip.parse::<IpAddr>().ok() == Some(self.ip) {
                    Ok(Loc::Magic)
                } else {
                    refuse(format!("{path:?}: a client may only write its own magic"))
                }
            }
            [dir] => Ok(Loc::Dir(self.dir_name(dir)?)),
            [dir, file] => {
                let dir = self.dir_name(dir)?;
                if !name_ok(file) {
                    return refuse(format!("file name {file:?} is not allowed"));
                }
                Ok(Loc::File {
                    dir,
                    name: file.to_string(),
                })
            }
            _ => refuse(format!(
                "{path:?}: too deep (dump directories hold plain files)"
            )),
        }
    }
}

/// Validates the text of `echo … > FILE`: the status line of `kdumpctl test` or a netdump
/// magic (hex). Short and printable only.
pub fn text_ok(loc: &Loc, text: &str) -> Result<(), Refusal> {
    let printable = text.len() <= 200 && text.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    match loc {
        Loc::Magic
            if !text.is_empty()
                && text.len() <= 32
                && text.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            Ok(())
        }
        Loc::Magic => refuse("a netdump magic is up to 32 hex digits"),
        Loc::File { name, .. } if name == "vmcore-creation.status" && printable => Ok(()),
        Loc::File { .. } => refuse("`echo > FILE` only writes vmcore-creation.status"),
        _ => refuse("`echo > FILE` needs a file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> Client {
        Client {
            name: "c1".into(),
            ip: "198.18.0.11".parse().unwrap(),
        }
    }
    const B: &str = "/var/crash";

    #[test]
    fn own_directories_and_files() {
        let c = c();
        assert_eq!(c.resolve(B, "/var/crash").unwrap(), Loc::Base);
        assert_eq!(c.resolve(B, "/var/crash/").unwrap(), Loc::Base);
        assert_eq!(c.resolve(B, ".").unwrap(), Loc::Base);
        assert_eq!(
            c.resolve(B, "/var/crash/198.18.0.11-202612020425").unwrap(),
            Loc::Dir("198.18.0.11-202612020425".into())
        );
        assert_eq!(
            c.resolve(B, "198.18.0.11-2026-12-02-04:25:01/vmcore-incomplete")
                .unwrap(),
            Loc::File {
                dir: "198.18.0.11-2026-12-02-04:25:01".into(),
                name: "vmcore-incomplete".into()
            }
        );
        assert_eq!(
            c.resolve(B, "/var/crash/kdump-test-17/vmcore-creation.status")
                .unwrap(),
            Loc::File {
                dir: "198.18.0.11-kdump-test-17".into(),
                name: "vmcore-creation.status".into()
            }
        );
        assert_eq!(c.resolve(B, "magic/198.18.0.11").unwrap(), Loc::Magic);
    }

    #[test]
    fn everything_else_is_refused() {
        let c = c();
        for p in [
            "",
            "/",
            "/etc/passwd",
            "/var/crashx/198.18.0.11-1",
            "/var/crash/../etc",
            "/var/crash/198.18.0.11-1/../198.18.0.12-1/dump",
            "/var/crash/198.18.0.11-1/./dump",
            "/var/crash//198.18.0.11-1",
            "198.18.0.12-202612020425",
            "198.18.0.111-202612020425",
            "198.18.0.11-",
            "/var/crash/198.18.0.11-1/a/b",
            "/var/crash/198.18.0.11-1/.hidden",
            "/var/crash/198.18.0.11-1/-rf",
            "/var/crash/198.18.0.11-1/a;id",
            "/var/crash/198.18.0.11-1/a b",
            "events.jsonl",
            "console/198.18.0.11.log",
            ".ssh/authorized_keys2",
            "scripts/netdump-crash",
            "magic/198.18.0.12",
            "magic",
            "/var/crash/198.18.0.11-1/x\n",
        ] {
            assert!(c.resolve(B, p).is_err(), "{p:?} accepted");
        }
    }

    #[test]
    fn texts() {
        let f = Loc::File {
            dir: "d".into(),
            name: "vmcore-creation.status".into(),
        };
        assert!(text_ok(&f, "success kdump_test_id=1-2").is_ok());
        assert!(text_ok(&Loc::Magic, "0123abcdef").is_ok());
        assert!(text_ok(&Loc::Magic, "zz").is_err());
        let other = Loc::File {
            dir: "d".into(),
            name: "dump.1".into(),
        };
        assert!(text_ok(&other, "x").is_err());
    }

    #[test]
    fn incomplete_names() {
        assert!(is_incomplete("dump-incomplete"));
        assert!(is_incomplete("vmcore-dmesg-incomplete.txt"));
        assert!(!is_incomplete("dump.202612020425"));
    }
}
