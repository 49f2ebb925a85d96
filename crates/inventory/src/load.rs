//! Reading the inventory file and `group_vars/`/`host_vars/`, then flattening vars per host.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use yaml_serde::{Mapping, Value};

use super::{
    Group, Host, Inventory, InventoryError, Layer, VarEntry, VarSource, Vars, coerce, range,
};

/// Most hosts one inventory may hold, all ranges and files together: far above any lab fleet,
/// low enough that a typo (`node[0:99999]` written under ten groups) gets an error naming the
/// line instead of exhausting memory.
pub const MAX_HOSTS: usize = 100_000;

/// What hosts of one group list share: the list itself and their merged group variables.
type SharedGroups = (Arc<[String]>, Arc<Layer>);

/// Extensions `group_vars`/`host_vars` files may have (Ansible's `yaml_valid_extensions` + none).
const VARS_EXTENSIONS: [&str; 4] = ["", ".yml", ".yaml", ".json"];

pub(super) fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let mut b = Builder {
        file: path.to_path_buf(),
        file_src: Arc::from(path),
        text: String::new(),
        groups: IndexMap::new(),
        hosts: IndexMap::new(),
        texts: HashMap::new(),
    };
    b.text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    let doc = parse_yaml(path, &b.text)?;
    b.ensure_group("all");
    b.ensure_group("ungrouped");
    match doc {
        Value::Null => {}
        Value::Mapping(m) => {
            for (k, v) in m {
                let name = b.key_name(&k, None, "group name")?;
                b.parse_group(&name, v, None)?;
            }
        }
        other => {
            return Err(b.shape(
                None,
                format!(
                    "the inventory must be a mapping of group names (usually starting with `all:`), got {}",
                    coerce::describe(&other)
                ),
            ));
        }
    }
    b.texts.insert(path.to_path_buf(), b.text.clone());
    b.link_and_check()?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    b.load_vars_dirs(&dir)?;
    b.finish(path)
}

/// Parse a YAML document, apply merge keys, reject `!vault`, unwrap `!unsafe`.
fn parse_yaml(file: &Path, text: &str) -> Result<Value, InventoryError> {
    let mut doc: Value = super::yaml11::from_str(text).map_err(|e| {
        let loc = e.location();
        InventoryError::Syntax {
            file: file.to_path_buf(),
            line: loc.as_ref().map_or(0, |l| l.line()),
            column: loc.as_ref().map_or(0, |l| l.column()),
            message: e.to_string(),
        }
    })?;
    // Tags first: a `!vault` inside a merge would otherwise give a confusing merge error.
    untag(file, text, &mut doc, "")?;
    doc.apply_merge().map_err(|e| InventoryError::Shape {
        file: file.to_path_buf(),
        line: find_key_line(text, None, "<<"),
        message: format!(
            "YAML merge key `<<`: {e}; `<<` must refer to a mapping or a list of mappings"
        ),
    })?;
    Ok(doc)
}

fn untag(file: &Path, text: &str, v: &mut Value, key: &str) -> Result<(), InventoryError> {
    match v {
        Value::Tagged(t) => {
            if t.tag == "vault" || t.tag == "!vault" {
                return Err(InventoryError::Vault {
                    file: file.to_path_buf(),
                    line: find_key_line(text, None, key),
                    key: key.to_string(),
                });
            }
            // `!unsafe` stays tagged here so `--list` output can mark it as Ansible does; `Host::vars`
            // gets the plain value (see `strip_unsafe`). Any other tag is dropped.
            let unsafe_tag = t.tag == "unsafe" || t.tag == "!unsafe";
            let mut inner = std::mem::replace(&mut t.value, Value::Null);
            untag(file, text, &mut inner, key)?;
            if unsafe_tag {
                t.value = inner;
            } else {
                *v = inner;
            }
        }
        Value::Sequence(s) => {
            for item in s {
                untag(file, text, item, key)?;
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let name = k.as_str().map_or_else(|| key.to_string(), str::to_string);
                untag(file, text, item, &name)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether `v` carries a tag anywhere (only `!unsafe` survives parsing).
pub(crate) fn has_tag(v: &Value) -> bool {
    match v {
        Value::Tagged(_) => true,
        Value::Sequence(s) => s.iter().any(has_tag),
        Value::Mapping(m) => m.values().any(has_tag),
        _ => false,
    }
}

/// The value with `!unsafe` tags removed: what templates and settings see.
pub(crate) fn strip_unsafe(v: &Value) -> Value {
    match v {
        Value::Tagged(t) => strip_unsafe(&t.value),
        Value::Sequence(s) => Value::Sequence(s.iter().map(strip_unsafe).collect()),
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, v)| (k.clone(), strip_unsafe(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Best-effort line (1-based) of `key:` in `text`, searched after the line where `anchor:` is
/// written when an anchor is given (falling back to the whole text).
pub(crate) fn find_key_line(text: &str, anchor: Option<&str>, key: &str) -> Option<usize> {
    let is_key_line = |line: &str, k: &str| {
        let t = line.trim_start().trim_start_matches("- ");
        [format!("{k}:"), format!("\"{k}\":"), format!("'{k}':")]
            .iter()
            .any(|p| t.starts_with(p.as_str()))
            || t.starts_with(&format!("{{{k}:"))
            || t.contains(&format!(" {k}:"))
            || t.contains(&format!("{{{k}:"))
            || t.contains(&format!("\"{k}\":"))
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = anchor
        .and_then(|a| lines.iter().position(|l| is_key_line(l, a)))
        .unwrap_or(0);
    if key.is_empty() {
        return anchor.map(|_| start + 1);
    }
    lines[start..]
        .iter()
        .position(|l| is_key_line(l, key))
        .map(|i| start + i + 1)
        .or_else(|| {
            lines
                .iter()
                .position(|l| is_key_line(l, key))
                .map(|i| i + 1)
        })
}

struct Builder {
    file: PathBuf,
    /// `file`, shared by the sources of its variables.
    file_src: Arc<Path>,
    text: String,
    groups: IndexMap<String, Group>,
    /// Host name → inline vars in order.
    hosts: IndexMap<String, Layer>,
    texts: HashMap<PathBuf, String>,
}

impl Builder {
    fn line_of(&self, anchor: Option<&str>, key: &str) -> Option<usize> {
        find_key_line(&self.text, anchor, key)
    }

    fn shape(&self, line: Option<usize>, message: String) -> InventoryError {
        InventoryError::Shape {
            file: self.file.clone(),
            line,
            message,
        }
    }

    fn key_name(
        &self,
        k: &Value,
        parent: Option<&str>,
        what: &str,
    ) -> Result<String, InventoryError> {
        match k {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::Number(_) | Value::Bool(_) => Ok(coerce::as_string(k).unwrap_or_default()),
            other => Err(self.shape(
                parent.and_then(|p| self.line_of(None, p)),
                format!(
                    "{what} must be a non-empty string, got {}",
                    coerce::describe(other)
                ),
            )),
        }
    }

    fn src(&self, anchor: &str) -> VarSource {
        VarSource {
            file: self.file_src.clone(),
            anchor: Some(Arc::from(anchor)),
        }
    }

    fn ensure_group(&mut self, name: &str) {
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| Group {
                name: name.to_string(),
                priority: 1,
                ..Group::default()
            });
    }

    fn parse_group(
        &mut self,
        name: &str,
        v: Value,
        parent: Option<&str>,
    ) -> Result<(), InventoryError> {
        self.ensure_group(name);
        if let Some(p) = parent {
            let g = &mut self.groups[name];
            if !g.parents.iter().any(|x| x == p) {
                g.parents.push(p.to_string());
            }
            let pg = &mut self.groups[p];
            if !pg.children.iter().any(|x| x == name) {
                pg.children.push(name.to_string());
            }
        }
        let m = match v {
            Value::Null => return Ok(()),
            Value::Mapping(m) => m,
            other => {
                return Err(self.shape(
                    self.line_of(parent, name),
                    format!(
                        "group `{name}` must be a mapping with optional `hosts`, `vars` and `children`, got {}",
                        coerce::describe(&other)
                    ),
                ));
            }
        };
        for (k, v) in m {
            let key = self.key_name(&k, Some(name), "key")?;
            match key.as_str() {
                "hosts" => self.parse_hosts(name, v)?,
                "vars" => self.parse_vars(name, v)?,
                "children" => match v {
                    Value::Null => {}
                    Value::Mapping(children) => {
                        for (ck, cv) in children {
                            let child = self.key_name(&ck, Some(name), "child group name")?;
                            self.parse_group(&child, cv, Some(name))?;
                        }
                    }
                    other => {
                        return Err(self.shape(
                            self.line_of(Some(name), "children"),
                            format!(
                                "group `{name}`: `children` must be a mapping of group names (`child:` on its own line), got {}",
                                coerce::describe(&other)
                            ),
                        ));
                    }
                },
                other => {
                    let hint = coerce::close_matches(other, ["hosts", "vars", "children"]);
                    let hint = match hint.first() {
                        Some(h) => format!("; did you mean `{h}`?"),
                        None => String::new(),
                    };
                    return Err(self.shape(
                        self.line_of(Some(name), other),
                        format!(
                            "group `{name}`: unexpected key `{other}` (a group has only `hosts`, `vars` and `children`){hint}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn parse_hosts(&mut self, group: &str, v: Value) -> Result<(), InventoryError> {
        let m = match v {
            Value::Null => return Ok(()),
            Value::Mapping(m) => m,
            other => {
                return Err(self.shape(
                    self.line_of(Some(group), "hosts"),
                    format!(
                        "group `{group}`: `hosts` must be a mapping (write `host1:` on its own line, with a colon), got {}",
                        coerce::describe(&other)
                    ),
                ));
            }
        };
        for (k, hv) in m {
            let raw = self.key_name(&k, Some(group), "host name")?;
            let range_err = |message| InventoryError::Range {
                file: self.file.clone(),
                line: self.line_of(Some(group), &raw),
                message,
            };
            let (pattern, port) = range::split_port(&raw).map_err(range_err)?;
            let names = range::expand(&pattern).map_err(range_err)?;
            let new = names
                .iter()
                .filter(|n| !self.hosts.contains_key(n.as_str()))
                .count();
            if self.hosts.len() + new > MAX_HOSTS {
                return Err(InventoryError::Range {
                    file: self.file.clone(),
                    line: self.line_of(Some(group), &raw),
                    message: format!(
                        "`{raw}` would bring the inventory to {} hosts, more than the {MAX_HOSTS} one inventory may hold; check the range bounds or split the fleet",
                        self.hosts.len() + new
                    ),
                });
            }
            let vars = match hv {
                Value::Null => Mapping::new(),
                Value::Mapping(m) => m,
                other => {
                    return Err(self.shape(
                        self.line_of(Some(group), &raw),
                        format!(
                            "group `{group}`: host `{raw}` must be followed by nothing or a mapping of host variables, got {}",
                            coerce::describe(&other)
                        ),
                    ));
                }
            };
            let src = self.src(&raw);
            for name in names {
                let entry = self.hosts.entry(name.clone()).or_default();
                if let Some(p) = port {
                    entry.insert(
                        "ansible_port".into(),
                        VarEntry::new(Value::Number(p.into()), src.clone()),
                    );
                }
                for (vk, vv) in &vars {
                    let key = self.key_name(vk, Some(&raw), "variable name")?;
                    let entry = self.hosts.entry(name.clone()).or_default();
                    entry.shift_remove(&key);
                    entry.insert(key, VarEntry::new(vv.clone(), src.clone()));
                }
                let g = &mut self.groups[group];
                g.hosts.insert(name);
            }
        }
        Ok(())
    }

    fn parse_vars(&mut self, group: &str, v: Value) -> Result<(), InventoryError> {
        let m = match v {
            Value::Null => return Ok(()),
            Value::Mapping(m) => m,
            other => {
                return Err(self.shape(
                    self.line_of(Some(group), "vars"),
                    format!(
                        "group `{group}`: `vars` must be a mapping of variable names to values, got {}",
                        coerce::describe(&other)
                    ),
                ));
            }
        };
        let src = self.src(group);
        for (k, v) in m {
            let key = self.key_name(&k, Some(group), "variable name")?;
            if key == "ansible_group_priority" {
                let p = coerce::as_u64(&v).and_then(|p| i64::try_from(p).ok()).ok_or_else(|| {
                    self.shape(
                        self.line_of(Some(group), &key),
                        format!(
                            "group `{group}`: ansible_group_priority must be a non-negative integer, got {}",
                            coerce::describe(&v)
                        ),
                    )
                })?;
                self.groups[group].priority = p;
                continue;
            }
            let g = &mut self.groups[group];
            g.vars.shift_remove(&key);
            g.vars.insert(key, VarEntry::new(v, src.clone()));
        }
        Ok(())
    }

    /// Attach parentless groups to `all`, detect cycles, compute depths.
    fn link_and_check(&mut self) -> Result<(), InventoryError> {
        let names: Vec<String> = self.groups.keys().cloned().collect();
        // Cycle detection over `children` (all included).
        let mut state: HashMap<String, u8> = HashMap::new(); // 1 = on stack, 2 = done
        for n in &names {
            let mut stack = Vec::new();
            self.dfs_cycle(n, &mut state, &mut stack)?;
        }
        for n in &names {
            if n != "all" && self.groups[n].parents.is_empty() {
                self.groups[n.as_str()].parents.push("all".into());
                let all = &mut self.groups["all"];
                all.children.push(n.clone());
            }
        }
        // `ungrouped` is listed first among all's children, as Ansible creates it first.
        let all = &mut self.groups["all"];
        all.children.retain(|c| c != "ungrouped");
        all.children.insert(0, "ungrouped".into());
        // Depth = longest path from `all` (Ansible's Group.depth).
        let mut order = vec!["all".to_string()];
        let mut i = 0;
        while i < order.len() {
            let g = order[i].clone();
            let d = self.groups[g.as_str()].depth;
            for c in self.groups[g.as_str()].children.clone() {
                if self.groups[c.as_str()].depth < d + 1 {
                    self.groups[c.as_str()].depth = d + 1;
                    order.push(c);
                }
            }
            i += 1;
        }
        Ok(())
    }

    fn dfs_cycle(
        &self,
        n: &str,
        state: &mut HashMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Result<(), InventoryError> {
        match state.get(n) {
            Some(2) => return Ok(()),
            Some(1) => {
                let start = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut path: Vec<String> = stack[start..].to_vec();
                path.push(n.to_string());
                let line = path
                    .get(path.len().saturating_sub(2))
                    .and_then(|p| self.line_of(Some(p), "children"));
                return Err(InventoryError::Cycle {
                    file: self.file.clone(),
                    line,
                    path,
                });
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for c in &self.groups[n].children {
            self.dfs_cycle(c, state, stack)?;
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        Ok(())
    }

    fn load_vars_dirs(&mut self, dir: &Path) -> Result<(), InventoryError> {
        let group_names: Vec<String> = self.groups.keys().cloned().collect();
        for g in group_names {
            let vars = self.load_vars_for(&dir.join("group_vars"), &g)?;
            self.groups[g.as_str()].file_vars = vars;
        }
        Ok(())
    }

    /// Vars for `name` from `<base>/<name>{,.yml,.yaml,.json}` or the directory `<base>/<name>/`.
    fn load_vars_for(&mut self, base: &Path, name: &str) -> Result<Layer, InventoryError> {
        let mut out = IndexMap::new();
        if !base.is_dir() {
            return Ok(out);
        }
        let mut files = Vec::new();
        for ext in VARS_EXTENSIONS {
            let p = base.join(format!("{name}{ext}"));
            if p.is_file() {
                files.push(p);
            } else if ext.is_empty() && p.is_dir() {
                collect_dir(&p, &mut files).map_err(|source| InventoryError::Read {
                    file: p.clone(),
                    source,
                })?;
            }
        }
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|source| InventoryError::Read {
                file: f.clone(),
                source,
            })?;
            let doc = parse_yaml(&f, &text)?;
            let m = match doc {
                Value::Null => Mapping::new(),
                Value::Mapping(m) => m,
                other => {
                    return Err(InventoryError::Shape {
                        file: f.clone(),
                        line: Some(1),
                        message: format!(
                            "a vars file must be a mapping of variable names to values, got {}",
                            coerce::describe(&other)
                        ),
                    });
                }
            };
            let src = VarSource {
                file: Arc::from(f.as_path()),
                anchor: None,
            };
            for (k, v) in m {
                let key = coerce::as_string(&k).ok_or_else(|| InventoryError::Shape {
                    file: f.clone(),
                    line: None,
                    message: format!(
                        "variable names must be strings, got {}",
                        coerce::describe(&k)
                    ),
                })?;
                out.shift_remove(&key);
                out.insert(key, VarEntry::new(v, src.clone()));
            }
            self.texts.insert(f, text);
        }
        Ok(out)
    }

    fn finish(mut self, path: &Path) -> Result<Inventory, InventoryError> {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        // Membership: direct groups per host, in order.
        let mut direct: IndexMap<String, Vec<String>> =
            self.hosts.keys().map(|h| (h.clone(), Vec::new())).collect();
        for g in self.groups.values() {
            for h in &g.hosts {
                direct.entry(h.clone()).or_default().push(g.name.clone());
            }
        }
        // Hosts only in `all` (or nowhere) go to `ungrouped`.
        let mut ungrouped = Vec::new();
        for (h, gs) in &direct {
            if gs.iter().all(|g| g == "all" || g == "ungrouped") {
                ungrouped.push(h.clone());
            }
        }
        {
            let ug = &mut self.groups["ungrouped"];
            for h in ungrouped {
                ug.hosts.insert(h.clone());
                if let Some(d) = direct.get_mut(&h) {
                    d.retain(|g| g != "all" && g != "ungrouped");
                    d.push("ungrouped".into());
                }
            }
        }
        self.groups["all"].hosts.clear();
        // Hosts of the same groups share one merged map of their group variables (see
        // `Vars`); `shared` holds it per group list.
        let mut shared: HashMap<Vec<String>, SharedGroups> = HashMap::new();
        let mut hosts = IndexMap::new();
        let host_names: Vec<String> = self.hosts.keys().cloned().collect();
        for h in host_names {
            // All groups including ancestors.
            let mut seen: HashSet<String> = HashSet::new();
            let mut todo: Vec<String> = direct.get(&h).cloned().unwrap_or_default();
            todo.push("all".into());
            while let Some(g) = todo.pop() {
                if seen.insert(g.clone()) {
                    todo.extend(self.groups[g.as_str()].parents.iter().cloned());
                }
            }
            let mut groups: Vec<&Group> = seen.iter().map(|g| &self.groups[g.as_str()]).collect();
            groups.sort_by(|a, b| {
                (a.depth, a.priority, &a.name).cmp(&(b.depth, b.priority, &b.name))
            });
            let group_names: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();
            let (names, layer) = shared
                .entry(group_names)
                .or_insert_with_key(|names| {
                    let mut merged = Layer::new();
                    for g in &groups {
                        for (k, e) in &g.vars {
                            merged.insert(k.clone(), e.clone());
                        }
                    }
                    for g in &groups {
                        for (k, e) in &g.file_vars {
                            merged.insert(k.clone(), e.clone());
                        }
                    }
                    (Arc::from(names.as_slice()), Arc::new(merged))
                })
                .clone();
            // Taken, not copied: the builder's own map is not used after this loop.
            let own = self
                .hosts
                .get_mut(h.as_str())
                .map(std::mem::take)
                .unwrap_or_default();
            hosts.insert(
                h.clone(),
                Host {
                    name: h.clone(),
                    vars: Vars::new(layer, own),
                    groups: names,
                },
            );
        }
        // host_vars last: highest precedence.
        for (name, host) in hosts.iter_mut() {
            let file_vars = self.load_vars_for(&dir.join("host_vars"), name)?;
            if file_vars.is_empty() {
                continue;
            }
            let Vars { groups, mut own } = std::mem::take(&mut host.vars);
            for (k, e) in file_vars {
                own.insert(k, e);
            }
            host.vars = Vars::new(groups, own);
        }
        Ok(Inventory {
            source: path.to_path_buf(),
            hosts,
            groups: self.groups,
            texts: self.texts,
        })
    }
}

/// Files of a vars directory, recursively, in lexicographic order; hidden files and files with
/// other extensions are skipped (as Ansible's `host_group_vars` plugin does).
fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let fname = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
        if fname.starts_with('.') || fname.ends_with('~') {
            continue;
        }
        if p.is_dir() {
            collect_dir(&p, out)?;
        } else {
            let ext_ok = match p.extension().and_then(|e| e.to_str()) {
                None => true,
                Some(e) => matches!(e, "yml" | "yaml" | "json"),
            };
            if ext_ok {
                out.push(p);
            }
        }
    }
    Ok(())
}
