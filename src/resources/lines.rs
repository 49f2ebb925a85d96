//! A file in which this tool owns some lines and leaves every other line alone
//! (authorized_keys2, ssh_known_hosts).

use std::collections::BTreeSet;

use super::file::{PathKind, atomic_write_script, observe_path, parse_path};
use super::{Change, Observed, Plan, PlanContext, Resource, ResourceError, diff};

/// Which existing lines belong to this resource (and are therefore replaced).
#[derive(Debug, Clone)]
pub enum LineOwner {
    /// Lines whose last field is `<prefix><name>`, except the names in `keep` (managed by us but
    /// outside this run, e.g. clients excluded by `--limit`: left as they are).
    Tag {
        prefix: String,
        keep: BTreeSet<String>,
    },
    /// `key = value` lines setting this sysctl key (for /etc/sysctl.conf on hosts without
    /// /etc/sysctl.d).
    SysctlKey(String),
    /// known_hosts lines whose host field names one of these hosts.
    Hosts(Vec<String>),
}

impl LineOwner {
    fn owns(&self, line: &str) -> bool {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            return false;
        }
        match self {
            LineOwner::Tag { prefix, keep } => t
                .split_whitespace()
                .last()
                .and_then(|f| f.strip_prefix(prefix.as_str()))
                .is_some_and(|name| !keep.contains(name)),
            LineOwner::SysctlKey(key) => t
                .split_once('=')
                .is_some_and(|(k, _)| k.trim() == key.as_str()),
            LineOwner::Hosts(hosts) => {
                let mut fields = t.split_whitespace();
                let mut first = fields.next().unwrap_or("");
                if first.starts_with('@') {
                    first = fields.next().unwrap_or("");
                }
                first.split(',').any(|h| {
                    let bare = h
                        .strip_prefix('[')
                        .and_then(|x| x.split_once("]:"))
                        .map(|(a, _)| a)
                        .unwrap_or(h);
                    hosts.iter().any(|want| want == bare || want == h)
                })
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ManagedLines {
    pub path: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    /// The lines this resource wants, in order (without trailing newlines).
    pub lines: Vec<String>,
    pub line_owner: LineOwner,
}

impl ManagedLines {
    /// The full desired file given the current content.
    pub fn desired(&self, current: &str) -> String {
        let mut out = String::new();
        for l in current.lines() {
            if !self.line_owner.owns(l) {
                out.push_str(l);
                out.push('\n');
            }
        }
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

impl Resource for ManagedLines {
    fn id(&self) -> String {
        format!("lines:{}", self.path)
    }

    fn observe_script(&self) -> String {
        observe_path(&self.path, true)
    }

    fn observed_path(&self) -> Option<&str> {
        Some(&self.path)
    }

    fn plan(&self, observed: &Observed, _ctx: &PlanContext) -> Result<Plan, ResourceError> {
        let st = parse_path(&self.id(), observed)?;
        let current = match st.kind {
            PathKind::Absent => String::new(),
            PathKind::File => {
                let bytes = st.content.clone().ok_or_else(|| ResourceError::Observe {
                    id: self.id(),
                    detail: "file too large to manage line by line (over 256 KiB)".into(),
                })?;
                String::from_utf8(bytes).map_err(|_| ResourceError::Invalid {
                    id: self.id(),
                    detail: "file is not text; fix or remove it and re-run".into(),
                })?
            }
            _ => {
                return Err(ResourceError::Invalid {
                    id: self.id(),
                    detail: "exists but is not a regular file; move it away and re-run".into(),
                });
            }
        };
        if let LineOwner::Tag { prefix, .. } = &self.line_owner {
            let foreign = current
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter(|l| {
                    !l.split_whitespace()
                        .last()
                        .is_some_and(|f| f.starts_with(prefix.as_str()))
                })
                .count();
            if foreign > 0 {
                // Reported, not removed: someone put them there on purpose.
                tracing::warn!(
                    "{}: {foreign} line(s) not managed by provision (no `{prefix}` tag); remove them or manage the host in the inventory",
                    self.path
                );
            }
        }
        let desired = self.desired(&current);
        let attrs_ok = st.kind == PathKind::File
            && st.owner == self.owner
            && st.group == self.group
            && st.mode == self.mode;
        if desired == current && attrs_ok {
            return Ok(Plan::Ok);
        }
        let added = self
            .lines
            .iter()
            .filter(|l| !current.lines().any(|c| c == l.as_str()))
            .count();
        let removed = current
            .lines()
            .filter(|c| self.line_owner.owns(c) && !self.lines.iter().any(|l| l == c))
            .count();
        let summary = if st.kind == PathKind::Absent {
            format!("create with {} managed line(s)", self.lines.len())
        } else if desired == current {
            format!(
                "owner/mode -> {}:{} {:04o}",
                self.owner, self.group, self.mode
            )
        } else {
            format!("{added} line(s) added, {removed} removed")
        };
        Ok(Plan::Change(
            Change::new(
                summary,
                atomic_write_script(&self.id(), &self.path, &self.owner, &self.group, self.mode)?,
            )
            .with_diff(Some(diff::unified(&self.path, &current, &desired)))
            .with_stdin(desired.into_bytes()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(keep: &[&str]) -> LineOwner {
        LineOwner::Tag {
            prefix: "netdump-provision:".into(),
            keep: keep.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn tagged_lines_are_replaced_and_foreign_lines_kept() {
        let r = ManagedLines {
            path: "/var/crash/.ssh/authorized_keys2".into(),
            owner: "netdump".into(),
            group: "netdump".into(),
            mode: 0o600,
            lines: vec!["restrict ssh-ed25519 NEW netdump-provision:c1".into()],
            line_owner: tag(&["c9"]),
        };
        let current = "ssh-rsa AAA admin@laptop\n\
                       restrict ssh-ed25519 OLD netdump-provision:c1\n\
                       restrict ssh-ed25519 KEEP netdump-provision:c9\n\
                       restrict ssh-ed25519 GONE netdump-provision:c2\n";
        let d = r.desired(current);
        assert_eq!(
            d,
            "ssh-rsa AAA admin@laptop\n\
             restrict ssh-ed25519 KEEP netdump-provision:c9\n\
             restrict ssh-ed25519 NEW netdump-provision:c1\n"
        );
        // Idempotent: applying to its own output changes nothing.
        assert_eq!(r.desired(&d), d);
    }

    #[test]
    fn known_hosts_lines_for_our_hosts_are_replaced() {
        let owner = LineOwner::Hosts(vec!["198.18.0.10".into()]);
        assert!(owner.owns("198.18.0.10 ssh-ed25519 AAAA"));
        assert!(owner.owns("server,198.18.0.10 ssh-rsa AAAA"));
        assert!(owner.owns("[198.18.0.10]:2222 ssh-rsa AAAA"));
        assert!(owner.owns("@cert-authority 198.18.0.10 ssh-rsa AAAA"));
        assert!(!owner.owns("198.18.0.100 ssh-ed25519 AAAA"));
        assert!(!owner.owns("# 198.18.0.10 comment"));
        assert!(!owner.owns(""));
        let owner = LineOwner::SysctlKey("kernel.sysrq".into());
        assert!(owner.owns("kernel.sysrq = 0"));
        assert!(owner.owns("kernel.sysrq=1"));
        assert!(!owner.owns("# kernel.sysrq = 1"));
        assert!(!owner.owns("kernel.sysrq_x = 1"));
    }

    #[test]
    fn plan_reports_counts_and_is_ok_when_converged() {
        let r = ManagedLines {
            path: "/k".into(),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            lines: vec!["h ssh-ed25519 K".into()],
            line_owner: LineOwner::Hosts(vec!["h".into()]),
        };
        use base64::Engine;
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let obs = |content: &str, mode: &str| Observed {
            text: format!(
                "type=file\nowner=root\ngroup=root\nmode={mode}\nsize={}\nenc=b64\n{}\n",
                content.len(),
                enc(content)
            ),
            status: 0,
        };
        let ctx = PlanContext::default();
        let Plan::Change(c) = r.plan(&obs("x y z\nh ssh-rsa OLD\n", "644"), &ctx).unwrap() else {
            panic!()
        };
        assert_eq!(c.summary, "1 line(s) added, 1 removed");
        assert!(matches!(
            r.plan(&obs("x y z\nh ssh-ed25519 K\n", "644"), &ctx)
                .unwrap(),
            Plan::Ok
        ));
        let Plan::Change(c) = r
            .plan(&obs("x y z\nh ssh-ed25519 K\n", "600"), &ctx)
            .unwrap()
        else {
            panic!()
        };
        assert!(c.summary.starts_with("owner/mode"));
    }
}
