//! Ansible-compatible YAML inventory (issue 2).
//!
//! [`Inventory::load`] reads an `ansible.builtin.yaml` inventory plus the `group_vars/` and
//! `host_vars/` next to it, and flattens variables per host with Ansible's precedence:
//!
//! 1. group vars written in the inventory file, groups ordered by (depth, `ansible_group_priority`,
//!    name): `all` first, parents before children, same depth in ASCII name order;
//! 2. `group_vars/all`, then `group_vars/<group>` in the same group order;
//! 3. host vars written in the inventory file (later mentions replace earlier ones);
//! 4. `host_vars/<host>`.
//!
//! A later value replaces an earlier one outright (`hash_behaviour=replace`).
//!
//! Values are `yaml_serde::Value`s, with plain scalars resolved by YAML 1.1 rules as PyYAML does
//! for Ansible (`yes` is a boolean, `0644` is 420; see `yaml11.rs`). Quoted `'yes'` stays a
//! string, so use [`coerce`] where a typed value is expected: it accepts what Ansible's
//! `bool`/`int` filters accept. `!unsafe` values are plain values here; `!vault` values are
//! rejected with an error. Duplicate keys are an error (Ansible only warns).

pub mod coerce;
mod list;
pub use list::{HostVarsJson, ListJson};
mod load;
mod pattern;
pub mod range;
mod yaml11;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::{IndexMap, IndexSet};
use yaml_serde::Value;

/// How to reach a host, from its connection variables (Ansible's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Inventory name (`inventory_hostname`).
    pub name: String,
    /// `ansible_host`, or the inventory name.
    pub address: String,
    /// `ansible_port`, default 22.
    pub port: u16,
    /// `ansible_user`; `None` lets ssh pick (ssh config or the local user).
    pub user: Option<String>,
    /// `ansible_ssh_private_key_file`.
    pub private_key_file: Option<PathBuf>,
    /// `ansible_become`: run every step through `sudo -n`.
    pub become_: bool,
    /// `ansible_ssh_common_args`, split shell-style.
    pub ssh_common_args: Vec<String>,
}

/// A connection variable of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host {host}: {variable}: {message}")]
pub struct ConnectionVarError {
    pub host: String,
    pub variable: String,
    pub message: String,
}

/// A host with its flattened variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// Inventory name (`inventory_hostname`).
    pub name: String,
    /// Effective variables after precedence and `group_vars`/`host_vars`.
    pub vars: Vars,
    /// Every group the host belongs to, ancestors and `all` included, in merge order (shared by
    /// every host of the same groups).
    pub groups: Arc<[String]>,
}

/// One variable as the inventory defined it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VarEntry {
    /// The value templates and settings see (`!unsafe` tags removed).
    pub value: Value,
    /// The value as written, only when it carries `!unsafe` tags (for `--list`).
    pub tagged: Option<Value>,
    pub src: VarSource,
}

impl VarEntry {
    pub(crate) fn new(raw: Value, src: VarSource) -> VarEntry {
        if load::has_tag(&raw) {
            VarEntry {
                value: load::strip_unsafe(&raw),
                tagged: Some(raw),
                src,
            }
        } else {
            VarEntry {
                value: raw,
                tagged: None,
                src,
            }
        }
    }
}

/// Variables in precedence order: a later insert of the same key replaces the value and keeps
/// the key's first position, as Ansible's merge does.
pub(crate) type Layer = IndexMap<String, VarEntry>;

/// A host's effective variables.
///
/// Fleets put nearly every variable on groups, so the merged variables of a set of groups are
/// built once and shared (`Arc`) by every host of exactly those groups; a host owns only what
/// was written for it. A 10,000-host inventory thus holds one copy of its group variables per
/// distinct group set, not one per host.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    groups: Arc<Layer>,
    own: Layer,
}

impl Vars {
    pub(crate) fn new(groups: Arc<Layer>, own: Layer) -> Vars {
        Vars { groups, own }
    }

    fn entry(&self, key: &str) -> Option<&VarEntry> {
        self.own.get(key).or_else(|| self.groups.get(key))
    }

    /// The effective value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.entry(key).is_some()
    }

    /// Names of the effective variables, in definition order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries().map(|(k, _)| k)
    }

    /// Effective variables in definition order (group keys first, then the host's new keys).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries().map(|(k, e)| (k, &e.value))
    }

    /// Like [`Vars::iter`], with `!unsafe` tags kept.
    pub(crate) fn iter_tagged(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries()
            .map(|(k, e)| (k, e.tagged.as_ref().unwrap_or(&e.value)))
    }

    pub(crate) fn source(&self, key: &str) -> Option<&VarSource> {
        self.entry(key).map(|e| &e.src)
    }

    fn entries(&self) -> impl Iterator<Item = (&str, &VarEntry)> {
        let shared = self
            .groups
            .iter()
            .map(|(k, e)| (k.as_str(), self.own.get(k).unwrap_or(e)));
        let own = self
            .own
            .iter()
            .filter(|(k, _)| !self.groups.contains_key(k.as_str()))
            .map(|(k, e)| (k.as_str(), e));
        shared.chain(own)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
            + self
                .own
                .keys()
                .filter(|k| !self.groups.contains_key(k.as_str()))
                .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for Vars {
    fn eq(&self, other: &Vars) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

/// Errors while loading an inventory or evaluating a host pattern. Each names the file (and line
/// where one is known) and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{}: cannot read inventory: {source} (check the path given with -i)", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: YAML syntax error: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}:{}: {message}", file.display(), fmt_line(*line))]
    Shape {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error(
        "{}:{}: `!vault` encrypted value for `{key}` is not supported; decrypt it (ansible-vault decrypt) or pass secrets with --password-file / NETDUMP_PASSWORD",
        file.display(), fmt_line(*line)
    )]
    Vault {
        file: PathBuf,
        line: Option<usize>,
        key: String,
    },
    #[error(
        "{}:{}: group cycle in `children`: {}; a group must not be its own ancestor, remove one of these `children` entries",
        file.display(), fmt_line(*line), path.join(" -> ")
    )]
    Cycle {
        file: PathBuf,
        line: Option<usize>,
        path: Vec<String>,
    },
    #[error("{}:{}: bad host range: {message}", file.display(), fmt_line(*line))]
    Range {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("{}: host pattern {pattern:?}: {message}", file.display())]
    Pattern {
        file: PathBuf,
        pattern: String,
        message: String,
    },
}

fn fmt_line(line: Option<usize>) -> String {
    line.map_or_else(|| "?".to_string(), |l| l.to_string())
}

/// Where one raw variable definition came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VarSource {
    /// Shared by every variable of the file.
    pub file: Arc<Path>,
    /// Name of the host or group under which the key was written in `file` (`None` for
    /// `group_vars`/`host_vars` files, whose keys are top level).
    pub anchor: Option<Arc<str>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Group {
    pub name: String,
    /// Hosts listed directly under this group, in order.
    pub hosts: IndexSet<String>,
    pub children: Vec<String>,
    pub parents: Vec<String>,
    /// Vars written in the inventory file.
    pub vars: Layer,
    /// Vars from `group_vars/`.
    pub file_vars: Layer,
    pub priority: i64,
    pub depth: usize,
}

/// Where a value came from, for messages ("inventories/lab.yaml:12: netdump_port: ...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: Option<usize>,
}

/// A loaded inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    source: PathBuf,
    hosts: IndexMap<String, Host>,
    groups: IndexMap<String, Group>,
    /// File contents, for best-effort line lookup.
    texts: HashMap<PathBuf, String>,
}

impl Inventory {
    /// Load an Ansible YAML inventory file and the `group_vars/`/`host_vars/` beside it.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        load::load(path)
    }

    /// The inventory file this was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Every host, in inventory order (order of first mention).
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values()
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.get(name)
    }

    /// Names of all groups, `all` and `ungrouped` included, in order of first mention.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// Hosts of `group` and of all its descendants, in inventory order. Empty for an unknown
    /// group.
    pub fn group_hosts(&self, group: &str) -> Vec<String> {
        if !self.groups.contains_key(group) {
            return Vec::new();
        }
        self.hosts
            .values()
            .filter(|h| h.groups.iter().any(|g| g == group))
            .map(|h| h.name.clone())
            .collect()
    }

    /// Evaluate an Ansible host pattern (see [`pattern`](self::pattern)).
    pub fn select(&self, pattern: &str) -> Result<Vec<String>, InventoryError> {
        pattern::select(self, pattern)
    }

    /// The inventory as `ansible-inventory -i FILE --list` prints it.
    pub fn to_list_json(&self) -> serde_json::Value {
        serde_json::to_value(self.list_json(&[], "")).unwrap_or_default()
    }

    /// The inventory as `ansible-inventory --list` prints it, to serialize while writing (memory
    /// stays flat whatever the fleet size); variables named in `masked` print as `mask`.
    pub fn list_json<'a>(&'a self, masked: &'a [&'a str], mask: &'a str) -> ListJson<'a> {
        ListJson {
            inv: self,
            masked,
            mask,
        }
    }

    /// One host's variables as `ansible-inventory --host NAME` prints them; `None` for an
    /// unknown host.
    pub fn host_vars_json<'a>(
        &'a self,
        host: &str,
        masked: &'a [&'a str],
        mask: &'a str,
    ) -> Option<HostVarsJson<'a>> {
        self.hosts
            .get(host)
            .map(|host| HostVarsJson { host, masked, mask })
    }

    /// File and (best effort) line where `host`'s effective value of `var` was defined. For an
    /// unknown host or variable, the inventory file without a line.
    pub fn origin(&self, host: &str, var: &str) -> Origin {
        match self.host(host).and_then(|h| h.vars.source(var)) {
            Some(src) => Origin {
                file: src.file.to_path_buf(),
                line: self.find_line(src, var),
            },
            None => Origin {
                file: self.source.clone(),
                line: None,
            },
        }
    }

    pub(crate) fn find_line(&self, src: &VarSource, key: &str) -> Option<usize> {
        let text = self.texts.get(&*src.file)?;
        load::find_key_line(text, src.anchor.as_deref(), key)
    }

    /// How to reach `host`. Connection variables that do not parse fall back to their
    /// defaults here; callers that must report them use [`Inventory::try_connection`].
    pub fn connection(&self, host: &str) -> Connection {
        self.try_connection(host).unwrap_or_else(|_| Connection {
            name: host.to_string(),
            address: self
                .host(host)
                .and_then(|h| h.vars.get("ansible_host"))
                .and_then(coerce::as_string)
                .unwrap_or_else(|| host.to_string()),
            port: 22,
            user: None,
            private_key_file: None,
            become_: false,
            ssh_common_args: Vec::new(),
        })
    }

    /// Like [`Inventory::connection`], but a connection variable of the wrong type is an error
    /// naming the host and the variable.
    pub fn try_connection(&self, host: &str) -> Result<Connection, ConnectionVarError> {
        let empty = Vars::default();
        let vars = self.host(host).map_or(&empty, |h| &h.vars);
        let get = |names: &[&'static str]| -> Option<(&'static str, &Value)> {
            names.iter().find_map(|n| vars.get(n).map(|v| (*n, v)))
        };
        let bad = |variable: &str, message: String| ConnectionVarError {
            host: host.to_string(),
            variable: variable.to_string(),
            message,
        };
        let string = |names: &[&'static str]| -> Result<Option<String>, ConnectionVarError> {
            match get(names) {
                None | Some((_, Value::Null)) => Ok(None),
                Some((n, v)) => coerce::as_string(v).map(Some).ok_or_else(|| {
                    bad(n, format!("expected a string, got {}", coerce::describe(v)))
                }),
            }
        };
        let address =
            string(&["ansible_host", "ansible_ssh_host"])?.unwrap_or_else(|| host.to_string());
        let port = match get(&["ansible_port", "ansible_ssh_port"]) {
            None | Some((_, Value::Null)) => 22,
            Some((n, v)) => coerce::as_u16(v).filter(|p| *p > 0).ok_or_else(|| {
                bad(
                    n,
                    format!("expected an integer 1-65535, got {}", coerce::describe(v)),
                )
            })?,
        };
        let user = string(&["ansible_user", "ansible_ssh_user"])?;
        let private_key_file =
            string(&["ansible_ssh_private_key_file", "ansible_private_key_file"])?
                .map(PathBuf::from);
        let become_ = match get(&["ansible_become"]) {
            None | Some((_, Value::Null)) => false,
            Some((n, v)) => coerce::as_bool(v).ok_or_else(|| {
                bad(
                    n,
                    format!(
                        "expected a boolean (yes/no/true/false), got {}",
                        coerce::describe(v)
                    ),
                )
            })?,
        };
        let ssh_common_args = match string(&["ansible_ssh_common_args"])? {
            None => Vec::new(),
            Some(s) => coerce::shell_split(&s).map_err(|e| {
                bad(
                    "ansible_ssh_common_args",
                    format!("cannot split shell-style: {e}"),
                )
            })?,
        };
        Ok(Connection {
            name: host.to_string(),
            address,
            port,
            user,
            private_key_file,
            become_,
            ssh_common_args,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_the_same_groups_share_one_copy_of_their_group_variables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.yaml");
        std::fs::write(
            &path,
            "all:\n  vars:\n    x: [1, 2, 3]\n  children:\n    r1:\n      hosts:\n        a[1:3]:\n    r2:\n      hosts:\n        b1:\n          own: 1\n",
        )
        .unwrap();
        let inv = Inventory::load(&path).unwrap();
        let shared = |h: &str| inv.host(h).unwrap().vars.groups.clone();
        assert!(Arc::ptr_eq(&shared("a1"), &shared("a3")));
        assert!(Arc::ptr_eq(
            &inv.host("a1").unwrap().groups,
            &inv.host("a2").unwrap().groups
        ));
        // Other groups, other map.
        assert!(!Arc::ptr_eq(&shared("a1"), &shared("b1")));
        // A host's own variables stay its own.
        assert!(inv.host("a1").unwrap().vars.own.is_empty());
        assert_eq!(inv.host("b1").unwrap().vars.own.len(), 1);
    }
}
