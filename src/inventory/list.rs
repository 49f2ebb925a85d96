//! `ansible-inventory --list` output.

use serde_json::{Map, Value as Json};
use yaml_serde::Value;

use super::Inventory;

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

pub(super) fn to_list_json(inv: &Inventory) -> Json {
    let mut hostvars = Map::new();
    for h in inv.hosts.values() {
        let raw = inv.raw_vars.get(&h.name).unwrap_or(&h.vars);
        if raw.is_empty() {
            // ansible-inventory leaves hosts without variables out of `_meta.hostvars`.
            continue;
        }
        let vars: Map<String, Json> = raw
            .iter()
            .map(|(k, v)| (k.clone(), yaml_to_json(v)))
            .collect();
        hostvars.insert(h.name.clone(), Json::Object(vars));
    }
    let mut meta = Map::new();
    meta.insert("hostvars".into(), Json::Object(hostvars));
    let mut out = Map::new();
    out.insert("_meta".into(), Json::Object(meta));
    for g in inv.groups.values() {
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
            out.insert(g.name.clone(), Json::Object(entry));
        }
    }
    Json::Object(out)
}
