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

/// Files up to this size whose bytes are printable ASCII (and tabs) are read by the shell
/// itself, a line at a time; bigger or other files go through `base64`. A shell without buffered
/// reads (dash) makes one read(2) per byte, so the bound keeps that cheap.
const SHELL_READ_MAX: usize = 8 * 1024;

/// Shell snippet printing a path's state; content is included when `with_content` and small,
/// else its sha256. It calls the functions of [`path_prelude`], which every observation script
/// starts with ([`super::batch::observe_script`]).
pub fn observe_path(path: &str, with_content: bool) -> String {
    format!("ndp_path {} {}", sh_quote(path), u8::from(with_content))
}

/// Defines `ndp_path PATH WITH_CONTENT` and reads the attributes of `paths` with one `stat`.
///
/// Why it is written the way it is: it runs for every managed path of every host on every run,
/// and on a no-op run the programs it starts are most of the cost. So one `stat` answers for all
/// the paths of the script (a path missing from its answer gets its own `stat`), the type comes
/// from `test`, and a small text file's bytes are read by the shell and printed a line at a
/// time behind `:` (a last line without newline behind `!`), so no line of it can pass for a
/// field or a section marker. The shell checks that what it read adds up to the size `stat`
/// gave and is printable ASCII; otherwise (a file changed meanwhile, a NUL, other bytes) the
/// bytes go through `base64`. `LC_ALL=C` makes `${#l}` count bytes and `[:print:]` ASCII only.
pub fn path_prelude(paths: &[String]) -> String {
    let stat = if paths.is_empty() {
        "ndp_st=".to_string()
    } else {
        let quoted: Vec<String> = paths.iter().map(|p| sh_quote(p)).collect();
        format!(
            "ndp_st=$(stat -c '%s|%a|%U|%G|%n' -- {} 2>/dev/null)",
            quoted.join(" ")
        )
    };
    PATH_FUNCTIONS
        .replace("@STAT@", &stat)
        .replace("@MAX_SHOWN@", &MAX_SHOWN.to_string())
        .replace("@SHELL_READ_MAX@", &SHELL_READ_MAX.to_string())
}

const PATH_FUNCTIONS: &str = "LC_ALL=C
nl='
'
@STAT@
ndp_path() {
  if [ -L \"$1\" ]; then echo type=other
  elif [ -d \"$1\" ]; then echo type=dir
  elif [ -f \"$1\" ]; then echo type=file
  elif [ -e \"$1\" ]; then echo type=other
  else echo type=absent; return 0; fi
  s=; r=$ndp_st
  while [ -n \"$r\" ]; do
    l=${r%%\"$nl\"*}; t=${l#*|}; t=${t#*|}; t=${t#*|}; t=${t#*|}
    if [ \"$t\" = \"$1\" ]; then s=$l; break; fi
    case \"$r\" in *\"$nl\"*) r=${r#*\"$nl\"};; *) r=;; esac
  done
  [ -n \"$s\" ] || s=$(stat -c '%s|%a|%U|%G|%n' -- \"$1\")
  sz=${s%%|*}; t=${s#*|}; echo \"mode=${t%%|*}\"; t=${t#*|}; echo \"owner=${t%%|*}\"
  t=${t#*|}; echo \"group=${t%%|*}\"; echo \"size=$sz\"
  [ -f \"$1\" ] && [ ! -L \"$1\" ] || return 0
  if [ \"$2\" = 1 ] && [ \"$sz\" -le @MAX_SHOWN@ ] 2>/dev/null; then
    [ \"$sz\" -le @SHELL_READ_MAX@ ] && ndp_lines \"$1\" \"$sz\" && return 0
    if command -v base64 >/dev/null 2>&1; then echo enc=b64; base64 < \"$1\"
    else echo enc=hex; od -An -v -tx1 < \"$1\"; fi
  elif command -v sha256sum >/dev/null 2>&1; then h=$(sha256sum < \"$1\"); echo \"sha256=${h%% *}\"; fi
}
ndp_lines() {
  c=; n=0; l=
  while IFS= read -r l; do
    case \"$l\" in *[![:print:]\"\t\"]*) return 1;; esac
    c=\"$c:$l$nl\"; n=$((n + ${#l} + 1))
  done < \"$1\"
  case \"$l\" in *[![:print:]\"\t\"]*) return 1;; esac
  [ -z \"$l\" ] || { c=\"$c!$l$nl\"; n=$((n + ${#l})); }
  [ \"$n\" = \"$2\" ] || return 1
  echo enc=lines; printf '%s' \"$c\"
}
";

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
    let content = decode_content(&o.text, size).map_err(|e| bad(&e))?;
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

fn decode_content(text: &str, size: u64) -> Result<Option<Vec<u8>>, String> {
    use base64::Engine;
    let mut lines = text.lines();
    let enc = loop {
        match lines.next() {
            None => return Ok(None),
            Some("enc=b64") => break "b64",
            Some("enc=hex") => break "hex",
            Some("enc=lines") => break "lines",
            Some(_) => continue,
        }
    };
    if enc == "lines" {
        return shell_lines(lines, size).map(Some);
    }
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

/// The bytes of a file the shell printed a line at a time (see [`path_prelude`]): the shell
/// checked them already, and they are checked again here, since nothing else vouches for them.
fn shell_lines<'a>(lines: impl Iterator<Item = &'a str>, size: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut ended = false;
    for l in lines {
        if ended {
            return Err("content goes on after its last line".into());
        }
        let (line, newline) = if let Some(l) = l.strip_prefix(':') {
            (l, true)
        } else if let Some(l) = l.strip_prefix('!') {
            ended = true;
            (l, false)
        } else {
            return Err("a content line without its mark".into());
        };
        if !line
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return Err("content read by the shell is not printable ASCII".into());
        }
        out.extend_from_slice(line.as_bytes());
        if newline {
            out.push(b'\n');
        }
    }
    if out.len() as u64 != size {
        return Err(format!(
            "the shell read {} bytes of a {size}-byte file",
            out.len()
        ));
    }
    Ok(out)
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

    fn observed_path(&self) -> Option<&str> {
        Some(&self.path)
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

    fn observed_path(&self) -> Option<&str> {
        Some(&self.path)
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

    /// Every shape of file through one batched observation with its `stat` table, in the
    /// host's `sh` and in bash: the bytes come back exact whichever way the shell read them.
    #[test]
    fn batched_path_observation_returns_exact_bytes_and_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).display().to_string();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "plain",
                b"NETDUMPADDR=10.0.0.1\n\tindented  x\\y\n".to_vec(),
            ),
            ("no newline", b"last line".to_vec()),
            ("empty", Vec::new()),
            ("blank lines", b"\n\n".to_vec()),
            ("utf8", "caf\u{e9}\n".as_bytes().to_vec()),
            ("nul", b"a\0b\n".to_vec()),
            ("cr", b"a\r\n".to_vec()),
            (
                "forged fields",
                b"owner=evil\nenc=b64\n@@NDP-x 0 end 0\n!\n:\n".to_vec(),
            ),
            ("pipe|in name", b"x\n".to_vec()),
            ("big", vec![b'a'; SHELL_READ_MAX + 1]),
        ];
        for (name, bytes) in &cases {
            std::fs::write(at(name), bytes).unwrap();
        }
        std::os::unix::fs::symlink(at("plain"), at("link")).unwrap();
        std::fs::create_dir(at("dir")).unwrap();
        let mut paths: Vec<String> = cases.iter().map(|(n, _)| at(n)).collect();
        paths.extend([at("link"), at("dir"), at("absent")]);
        // One path is left out of the table: it gets a `stat` of its own.
        let table = &paths[1..];
        // In place as the resources run them, every other one in a subshell as well.
        let snippets: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| crate::resources::batch::Snippet {
                script: observe_path(p, true),
                in_place: i % 2 == 0,
            })
            .collect();
        let script = crate::resources::batch::observe_script(&snippets, table, "t");
        for shell in ["sh", "bash"] {
            let out = std::process::Command::new(shell)
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            let text = String::from_utf8(out.stdout).unwrap();
            let obs = crate::resources::batch::split(&text, "t", paths.len()).unwrap();
            let (u, g) = me();
            for ((name, bytes), o) in cases.iter().zip(&obs) {
                let st = parse_path(name, o).unwrap_or_else(|e| panic!("{shell} {name}: {e}"));
                assert_eq!(st.kind, PathKind::File, "{shell} {name}");
                assert_eq!(
                    (st.owner.as_str(), st.group.as_str()),
                    (u.as_str(), g.as_str())
                );
                assert_eq!(st.size, bytes.len() as u64, "{shell} {name}");
                assert_eq!(
                    st.content.as_ref(),
                    Some(bytes),
                    "{shell} {name}: {}",
                    o.text
                );
            }
            let n = cases.len();
            assert_eq!(parse_path("link", &obs[n]).unwrap().kind, PathKind::Other);
            assert_eq!(parse_path("link", &obs[n]).unwrap().content, None);
            assert_eq!(parse_path("dir", &obs[n + 1]).unwrap().kind, PathKind::Dir);
            assert_eq!(
                parse_path("absent", &obs[n + 2]).unwrap().kind,
                PathKind::Absent
            );
            // What the shell read itself is marked as such, bigger or other files are not.
            assert!(obs[0].text.contains("enc=lines"), "{shell}");
            assert!(obs[4].text.contains("enc=b64"), "{shell}: utf8");
            assert!(obs[9].text.contains("enc=b64"), "{shell}: big");
        }
    }

    #[test]
    fn shell_read_content_is_checked_again_when_parsed() {
        let parse = |text: &str, size| decode_content(text, size);
        assert_eq!(
            parse("enc=lines\n:a\n!b\n", 3).unwrap(),
            Some(b"a\nb".to_vec())
        );
        assert!(parse("enc=lines\n:a\n", 3).is_err(), "size differs");
        assert!(parse("enc=lines\nb\n", 1).is_err(), "unmarked line");
        assert!(
            parse("enc=lines\n!a\n:b\n", 3).is_err(),
            "line after the last"
        );
        assert!(parse("enc=lines\n:caf\u{e9}\n", 6).is_err(), "not ASCII");
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

    /// The issue's race: a user who can write the parent swaps the directory for a symlink to
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
