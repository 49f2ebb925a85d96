//! `ansible-inventory --list` output.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value as Json};
use yaml_serde::Value;

use super::{Host, Inventory};

/// Convert a YAML value to JSON. Non-string mapping keys become their text, as Ansible's JSON
/// output does; non-finite floats become null.
pub(crate) fn yaml_to_json(v: &Value) -> Json {
    convert(v, false)
}

/// `unsafe_`: inside a `!unsafe` value, strings print as `{"__ansible_unsafe": "..."}` the way
/// ansible-inventory marks them.
fn convert(v: &Value, unsafe_: bool) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Json::from(u)
            } else if let Some(i) = n.as_i64() {
                Json::from(i)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::Null, Json::Number)
            }
        }
        Value::String(s) if unsafe_ => serde_json::json!({ "__ansible_unsafe": s }),
        Value::String(s) => Json::String(s.clone()),
        Value::Sequence(s) => Json::Array(s.iter().map(|v| convert(v, unsafe_)).collect()),
        Value::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => super::coerce::as_string(other)
                        .unwrap_or_else(|| super::coerce::describe(other)),
                };
                out.insert(key, convert(v, unsafe_));
            }
            Json::Object(out)
        }
        Value::Tagged(t) => convert(&t.value, unsafe_ || t.tag == "unsafe"),
    }
}

/// `ansible-inventory --list` output, serialized while it is written: one host's variables are
/// converted at a time, so printing a 10,000-host inventory never holds the whole document.
/// Variables named in `masked` print as `mask`.
pub struct ListJson<'a> {
    pub(super) inv: &'a Inventory,
    pub(super) masked: &'a [&'a str],
    pub(super) mask: &'a str,
}

/// One host's variables, as in `_meta.hostvars` (and `ansible-inventory --host`).
pub struct HostVarsJson<'a> {
    pub(super) host: &'a Host,
    pub(super) masked: &'a [&'a str],
    pub(super) mask: &'a str,
}

impl Serialize for HostVarsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.host.vars.len()))?;
        for (k, v) in self.host.vars.iter_tagged() {
            if self.masked.contains(&k) {
                m.serialize_entry(k, self.mask)?;
            } else {
                m.serialize_entry(k, &yaml_to_json(v))?;
            }
        }
        m.end()
    }
}

struct HostVars<'a>(&'a ListJson<'a>);

impl Serialize for HostVars<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let l = self.0;
        let mut m = s.serialize_map(None)?;
        // ansible-inventory leaves hosts without variables out of `_meta.hostvars`.
        for h in l.inv.hosts.values().filter(|h| !h.vars.is_empty()) {
            let vars = HostVarsJson {
                host: h,
                masked: l.masked,
                mask: l.mask,
            };
            m.serialize_entry(&h.name, &vars)?;
        }
        m.end()
    }
}

struct Meta<'a>(&'a ListJson<'a>);

impl Serialize for Meta<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("hostvars", &HostVars(self.0))?;
        m.end()
    }
}

impl Serialize for ListJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(None)?;
        out.serialize_entry("_meta", &Meta(self))?;
        for g in self.inv.groups.values() {
            let mut entry = Map::new();
            if !g.children.is_empty() {
                entry.insert("children".into(), Json::from(g.children.clone()));
            }
            if g.name != "all" && !g.hosts.is_empty() {
                entry.insert(
                    "hosts".into(),
                    Json::from(g.hosts.iter().cloned().collect::<Vec<_>>()),
                );
            }
            if !entry.is_empty() {
                out.serialize_entry(&g.name, &entry)?;
            }
        }
        out.end()
    }
}
