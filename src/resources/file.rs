//! File and Directory: content, owner, group and mode, written atomically.

use sha2::{Digest, Sha256};

use super::{Change, Observed, Plan, PlanContext, Resource, ResourceError, diff, sh_quote};

/// Files larger than this are compared by hash only (and shown as binary in diffs).
const MAX_SHOWN: usize = 256 * 1024;

/// A regular file with exact content, owner, group and mode.
#[derive(Clone)]
pub struct File {
    pub path: String,
    pub content: Vec<u8>,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    /// Mask the content in diffs (passwords, keys).
    pub secret: bool,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .field("len", &self.content.len())
            .field("owner", &self.owner)
            .field("group", &self.group)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("secret", &self.secret)
            .finish()
    }
}

/// What a path looks like on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathState {
    pub kind: PathKind,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    pub size: u64,
    pub sha256: Option<String>,
    pub content: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Absent,
    File,
    Dir,
    Other,
}

/// Shell snippet printing a path's state; content is included when `with_content` and small,
/// else its sha256. One `stat` for every attribute and one program for the bytes: this runs for
/// every file of every host on every run, so what it spawns is most of a no-op run's cost.
pub fn observe_path(path: &str, with_content: bool) -> String {
    let p = sh_quote(path);
    let sha = format!("h=$(sha256sum < {p}); echo \"sha256=${{h%% *}}\"");
    let bytes = if with_content {
        format!(
            "if [ \"$sz\" -le {MAX_SHOWN} ] 2>/dev/null; then \
               if command -v base64 >/dev/null 2>&1; then echo enc=b64; base64 < {p}; \
               else echo enc=hex; od -An -v -tx1 < {p}; fi; \
             elif command -v sha256sum >/dev/null 2>&1; then {sha}; fi"
        )
    } else {
        format!("if command -v sha256sum >/dev/null 2>&1; then {sha}; fi")
    };
    // The format's newlines are literal: `stat -c` prints them as they are, one field a line.
    format!(
        "if [ -L {p} ]; then echo type=other; \
         elif [ -d {p} ]; then echo type=dir; \
         elif [ -f {p} ]; then echo type=file; \
         elif [ -e {p} ]; then echo type=other; \
         else echo type=absent; exit 0; fi\n\
         s=$(stat -c 'owner=%U\ngroup=%G\nmode=%a\nsize=%s' {p}); echo \"$s\"; sz=${{s##*size=}}\n\
         if [ -f {p} ]; then {bytes}; fi"
    )
}

/// Parses [`observe_path`] output.
pub fn parse_path(id: &str, o: &Observed) -> Result<PathState, ResourceError> {
    let bad = |detail: &str| ResourceError::Observe {
        id: id.to_string(),
        detail: detail.to_string(),
    };
    let kind = match o.field("type") {
        Some("absent") => {
            return Ok(PathState {
                kind: PathKind::Absent,
                owner: String::new(),
                group: String::new(),
                mode: 0,
                size: 0,
                sha256: None,
                content: None,
            });
        }
        Some("file") => PathKind::File,
        Some("dir") => PathKind::Dir,
        Some("other") => PathKind::Other,
        _ => return Err(bad("no type line (is `stat` available on the host?)")),
    };
    let owner = o.field("owner").ok_or_else(|| bad("no owner"))?.to_string();
    let group = o.field("group").ok_or_else(|| bad("no group"))?.to_string();
    let mode = u32::from_str_radix(o.field("mode").ok_or_else(|| bad("no mode"))?, 8)
        .map_err(|_| bad("mode is not octal"))?;
    let size = o
        .field("size")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no size"))?;
    let content = decode_content(&o.text).map_err(|e| bad(&e))?;
    // The snippet prints the bytes of a small file instead of its hash.
    let sha256 = o
        .field("sha256")
        .map(str::to_string)
        .or_else(|| content.as_deref().map(sha256_hex));
    Ok(PathState {
        kind,
        owner,
        group,
        mode,
        size,
        sha256,
        content,
    })
}

fn decode_content(text: &str) -> Result<Option<Vec<u8>>, String> {
    use base64::Engine;
    let mut lines = text.lines();
    let enc = loop {
        match lines.next() {
            None => return Ok(None),
            Some("enc=b64") => break "b64",
            Some("enc=hex") => break "hex",
            Some(_) => continue,
        }
    };
    let body: String = lines.flat_map(|l| l.split_whitespace()).collect();
    match enc {
        "b64" => base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map(Some)
            .map_err(|e| format!("content is not valid base64: {e}")),
        _ => hex::decode(body)
            .map(Some)
            .map_err(|e| format!("content is not valid hex: {e}")),
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Script that atomically writes stdin to `path` with owner, group and mode (the ssh layer's
/// [`crate::ssh::RemoteFile`]: temp file next to the target, chown, chmod, sync, rename).
pub fn atomic_write_script(
    id: &str,
    path: &str,
    owner: &str,
    group: &str,
    mode: u32,
) -> Result<String, ResourceError> {
    crate::ssh::RemoteFile::new(path, mode)
        .owner(owner, group)
        .write_command(id, Vec::new())
        .map(|c| c.script)
        .map_err(|detail| ResourceError::Invalid {
            id: id.to_string(),
            detail,
        })
}

fn attr_changes(st: &PathState, owner: &str, group: &str, mode: u32) -> Vec<String> {
    let mut v = Vec::new();
    if st.owner != owner || st.group != group {
        v.push(format!(
            "owner {}:{} -> {owner}:{group}",
            st.owner, st.group
        ));
    }
    if st.mode != mode {
        v.push(format!("mode {:04o} -> {mode:04o}", st.mode));
    }
    v
}

impl File {
    fn is_text(&self) -> bool {
        self.content.len() <= MAX_SHOWN && std::str::from_utf8(&self.content).is_ok()
    }

    fn content_diff(&self, st: &PathState) -> String {
        if self.secret {
            return diff::masked(&self.path);
        }
        let new_hash = sha256_hex(&self.content);
        let old_text = st.content.as_deref().map(String::from_utf8_lossy);
        match (self.is_text(), old_text) {
            (true, Some(old))
                if std::str::from_utf8(st.content.as_deref().unwrap_or_default()).is_ok() =>
            {
                diff::unified(&self.path, &old, &String::from_utf8_lossy(&self.content))
            }
            (true, None) if st.kind == PathKind::Absent => {
                diff::unified(&self.path, "", &String::from_utf8_lossy(&self.content))
            }
            _ => diff::binary(&self.path, st.sha256.as_deref(), &new_hash),
        }
    }
}

impl Resource for File {
    fn id(&self) -> String {
        format!("file:{}", self.path)
    }

    fn observe_script(&self) -> String {
        observe_path(&self.path, self.is_text() || self.secret)
    }

    fn plan(&self, observed: &Observed, _ctx: &PlanContext) -> Result<Plan, ResourceError> {
        let st = parse_path(&self.id(), observed)?;
        let write =
            atomic_write_script(&self.id(), &self.path, &self.owner, &self.group, self.mode)?;
        match st.kind {
            PathKind::Absent => Ok(Plan::Change(
                Change::new(
                    format!(
                        "create ({} bytes, mode {:04o})",
                        self.content.len(),
                        self.mode
                    ),
                    write,
                )
                .with_diff(Some(self.content_diff(&st)))
                .with_stdin(self.content.clone()),
            )),
            PathKind::Dir | PathKind::Other => Err(ResourceError::Invalid {
                id: self.id(),
                detail: "exists but is not a regular file; move it away and re-run".into(),
            }),
            PathKind::File => {
                let same = match (&st.content, &st.sha256) {
                    (Some(c), _) => *c == self.content,
                    (None, Some(h)) => *h == sha256_hex(&self.content),
                    (None, None) => {
                        return Err(ResourceError::Observe {
                            id: self.id(),
                            detail: "neither content nor sha256 could be read".into(),
                        });
                    }
                };
                let attrs = attr_changes(&st, &self.owner, &self.group, self.mode);
                if !same {
                    let mut summary = vec!["content".to_string()];
                    summary.extend(attrs);
                    Ok(Plan::Change(
                        Change::new(summary.join(", "), write)
                            .with_diff(Some(self.content_diff(&st)))
                            .with_stdin(self.content.clone()),
                    ))
                } else if !attrs.is_empty() {
                    // Rewritten whole (temp file + rename) rather than chown/chmod on the path,
                    // which would follow a symlink put there meanwhile.
                    Ok(Plan::Change(
                        Change::new(attrs.join(", "), write).with_stdin(self.content.clone()),
                    ))
                } else {
                    Ok(Plan::Ok)
                }
            }
        }
    }
}

/// Sets a directory's owner and mode without following a path another user may control: the
/// script enters the directory, checks that it entered the real directory of that name (no
/// symlink on the way, not swapped meanwhile) and changes `.` — the directory it holds, which
/// nobody can redirect. A swapped path stops the step and changes nothing.
pub fn fix_dir_script(path: &str, owner: &str, group: &str, mode: u32) -> String {
    let p = sh_quote(path.trim_end_matches('/'));
    let og = sh_quote(&format!("{owner}:{group}"));
    let moved = sh_quote(&format!(
        "{path}: changed while being fixed (a symlink or a moved directory); nothing changed"
    ));
    format!(
        "set -e\ncd -P -- {p}\n\
         if [ \"$(pwd -P)\" != {p} ] || [ \"$(stat -c %d:%i .)\" != \"$(stat -c %d:%i -- {p})\" ]; then echo {moved} >&2; exit 1; fi\n\
         chown {og} .\nchmod {mode:04o} .\n"
    )
}

/// A directory with owner, group and mode (parents are created as needed, root-owned).
#[derive(Debug, Clone)]
pub struct Directory {
    pub path: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
}

impl Resource for Directory {
    fn id(&self) -> String {
        format!("dir:{}", self.path)
    }

    fn observe_script(&self) -> String {
        observe_path(&self.path, false)
    }

    fn plan(&self, observed: &Observed, _ctx: &PlanContext) -> Result<Plan, ResourceError> {
        let st = parse_path(&self.id(), observed)?;
        let p = sh_quote(&self.path);
        let fix = fix_dir_script(&self.path, &self.owner, &self.group, self.mode);
        match st.kind {
            PathKind::Absent => Ok(Plan::Change(Change::new(
                format!("create (mode {:04o})", self.mode),
                format!("set -e\nmkdir -p -- {p}\n{fix}"),
            ))),
            PathKind::File | PathKind::Other => Err(ResourceError::Invalid {
                id: self.id(),
                detail: "exists but is not a directory; move it away and re-run".into(),
            }),
            PathKind::Dir => {
                let attrs = attr_changes(&st, &self.owner, &self.group, self.mode);
                if attrs.is_empty() {
                    Ok(Plan::Ok)
                } else {
                    Ok(Plan::Change(Change::new(attrs.join(", "), fix)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::resources::observe_local;

    fn me() -> (String, String) {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg("id -un; id -gn")
            .output()
            .unwrap();
        let s = String::from_utf8(o.stdout).unwrap();
        let mut l = s.lines();
        (l.next().unwrap().to_string(), l.next().unwrap().to_string())
    }

    fn file(path: &str, content: &[u8], mode: u32) -> File {
        let (u, g) = me();
        File {
            path: path.into(),
            content: content.to_vec(),
            owner: u,
            group: g,
            mode,
            secret: false,
        }
    }

    fn converge_local(c: &Change) {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&c.script)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(c.stdin.as_deref().unwrap_or_default())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "converge failed: {}",
            c.script
        );
    }

    #[test]
    fn file_create_then_idempotent_then_mode_fix_on_a_real_fs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("it's a file").display().to_string();
        let f = file(&path, b"line1\nline2\n", 0o640);
        let ctx = PlanContext::default();

        let Plan::Change(c) = f.plan(&observe_local(&f.observe_script()), &ctx).unwrap() else {
            panic!("absent file must be created")
        };
        assert!(c.summary.starts_with("create"));
        assert!(c.diff.as_deref().unwrap().contains("+line2"));
        converge_local(&c);
        assert_eq!(std::fs::read(&path).unwrap(), b"line1\nline2\n");
        assert!(matches!(
            f.plan(&observe_local(&f.observe_script()), &ctx).unwrap(),
            Plan::Ok
        ));

        std::process::Command::new("chmod")
            .args(["600", &path])
            .status()
            .unwrap();
        let Plan::Change(c) = f.plan(&observe_local(&f.observe_script()), &ctx).unwrap() else {
            panic!("mode drift must be fixed")
        };
        assert_eq!(c.summary, "mode 0600 -> 0640");
        // The fix rewrites the file (temp + rename) instead of chmod on a path.
        assert_eq!(c.stdin.as_deref(), Some(&b"line1\nline2\n"[..]));
        converge_local(&c);
        assert!(matches!(
            f.plan(&observe_local(&f.observe_script()), &ctx).unwrap(),
            Plan::Ok
        ));

        let f2 = file(&path, b"line1\nchanged\n", 0o640);
        let Plan::Change(c) = f2.plan(&observe_local(&f2.observe_script()), &ctx).unwrap() else {
            panic!()
        };
        let d = c.diff.unwrap();
        assert!(d.contains("-line2") && d.contains("+changed"), "{d}");
    }

    #[test]
    fn secret_file_diff_is_masked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret").display().to_string();
        let mut f = file(&path, b"hunter2\n", 0o600);
        f.secret = true;
        let Plan::Change(c) = f
            .plan(&observe_local(&f.observe_script()), &PlanContext::default())
            .unwrap()
        else {
            panic!()
        };
        let d = c.diff.clone().unwrap();
        assert!(!d.contains("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn binary_file_compared_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin").display().to_string();
        let big: Vec<u8> = (0..(MAX_SHOWN + 10)).map(|i| (i % 251) as u8).collect();
        let f = file(&path, &big, 0o755);
        let Plan::Change(c) = f
            .plan(&observe_local(&f.observe_script()), &PlanContext::default())
            .unwrap()
        else {
            panic!()
        };
        assert!(c.diff.as_deref().unwrap().contains("binary"));
        converge_local(&c);
        assert!(matches!(
            f.plan(&observe_local(&f.observe_script()), &PlanContext::default())
                .unwrap(),
            Plan::Ok
        ));
    }

    #[test]
    fn directory_lifecycle_and_wrong_kind() {
        let dir = tempfile::tempdir().unwrap();
        let (u, g) = me();
        let d = Directory {
            path: dir.path().join("a/b").display().to_string(),
            owner: u,
            group: g,
            mode: 0o700,
        };
        let ctx = PlanContext::default();
        let Plan::Change(c) = d.plan(&observe_local(&d.observe_script()), &ctx).unwrap() else {
            panic!()
        };
        converge_local(&c);
        assert!(matches!(
            d.plan(&observe_local(&d.observe_script()), &ctx).unwrap(),
            Plan::Ok
        ));

        let f = file(&d.path, b"x", 0o600);
        assert!(matches!(
            f.plan(&observe_local(&f.observe_script()), &ctx),
            Err(ResourceError::Invalid { .. })
        ));
    }

    /// The race: a user who can write the parent swaps the directory for a symlink to
    /// something of root's between observe and converge. The fix must change nothing there.
    #[test]
    fn directory_fix_never_follows_a_symlink_swapped_in_after_observe() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o711)).unwrap();
        let path = parent.path().join("magic");
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (u, g) = me();
        let d = Directory {
            path: path.display().to_string(),
            owner: u,
            group: g,
            mode: 0o700,
        };
        let Plan::Change(c) = d
            .plan(&observe_local(&d.observe_script()), &PlanContext::default())
            .unwrap()
        else {
            panic!("mode differs: a change is planned")
        };
        // Swap between observe and converge.
        std::fs::rename(&path, parent.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&c.script)
            .output()
            .unwrap();
        assert!(!out.status.success(), "the swapped path must stop the step");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("nothing changed"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o7777;
        assert_eq!(m, 0o711, "the symlink's target was changed");
        // Same for a file resource whose owner/mode differ: the symlink is replaced, its
        // target never touched.
        let target = outside.path().join("shadow");
        std::fs::write(&target, b"secret").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        let fpath = parent.path().join("authorized_keys2");
        std::fs::write(&fpath, b"k\n").unwrap();
        let f = file(&fpath.display().to_string(), b"k\n", 0o600);
        let Plan::Change(c) = f
            .plan(&observe_local(&f.observe_script()), &PlanContext::default())
            .unwrap()
        else {
            panic!("mode differs")
        };
        std::fs::remove_file(&fpath).unwrap();
        std::os::unix::fs::symlink(&target, &fpath).unwrap();
        converge_local(&c);
        assert_eq!(std::fs::read(&target).unwrap(), b"secret");
        let m = std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
        assert_eq!(m, 0o640);
        assert!(!std::fs::symlink_metadata(&fpath).unwrap().is_symlink());
    }

    #[test]
    fn garbage_observation_is_an_error_not_a_panic() {
        let f = file("/x", b"", 0o600);
        let o = Observed {
            text: "type=file\nowner=root\n".into(),
            status: 0,
        };
        assert!(f.plan(&o, &PlanContext::default()).is_err());
        let o = Observed {
            text: "".into(),
            status: 1,
        };
        assert!(f.plan(&o, &PlanContext::default()).is_err());
        let o = Observed {
            text: "type=file\nowner=a\ngroup=b\nmode=644\nsize=3\nenc=b64\n!!!\n".into(),
            status: 0,
        };
        assert!(f.plan(&o, &PlanContext::default()).is_err());
    }
}
