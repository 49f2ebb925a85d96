//! Ansible host patterns: `all`/`*`, host and group names, globs (`web*`, `node0?`, `[ab]x`),
//! unions with `:` or `,`, intersections `&grp`, exclusions `!grp`. As in Ansible, plain terms are
//! applied first, then intersections, then exclusions; a pattern of only `&`/`!` terms starts
//! from `all`. Regex terms (`~...`) are not supported and give an error.

use std::collections::HashSet;

use indexmap::IndexSet;

use super::{Inventory, InventoryError, coerce};

pub(super) fn select(inv: &Inventory, pattern: &str) -> Result<Vec<String>, InventoryError> {
    let err = |message: String| InventoryError::Pattern {
        file: inv.source.clone(),
        pattern: pattern.to_string(),
        message,
    };
    let terms = split_terms(pattern);
    if terms.is_empty() {
        return Err(err(
            "empty pattern; give a host or group name, or `all`".into()
        ));
    }
    let mut plain = Vec::new();
    let mut inter = Vec::new();
    let mut excl = Vec::new();
    for t in &terms {
        if let Some(r) = t.strip_prefix('&') {
            inter.push(r);
        } else if let Some(r) = t.strip_prefix('!') {
            excl.push(r);
        } else {
            plain.push(t.as_str());
        }
    }
    if plain.is_empty() {
        plain.push("all");
    }
    let mut hosts: IndexSet<String> = IndexSet::new();
    for t in plain {
        hosts.extend(term_hosts(inv, t).map_err(&err)?);
    }
    for t in inter {
        let set: HashSet<String> = term_hosts(inv, t).map_err(&err)?.into_iter().collect();
        hosts.retain(|h| set.contains(h));
    }
    for t in excl {
        let set: HashSet<String> = term_hosts(inv, t).map_err(&err)?.into_iter().collect();
        hosts.retain(|h| !set.contains(h));
    }
    Ok(hosts.into_iter().collect())
}

/// Split on `,` always and on `:` unless the pattern looks like an IPv6 address.
fn split_terms(pattern: &str) -> Vec<String> {
    let ipv6 = pattern.matches(':').count() >= 2
        && !pattern.contains(":&")
        && !pattern.contains(":!")
        && pattern
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
    pattern
        .split(|c| c == ',' || (c == ':' && !ipv6))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn term_hosts(inv: &Inventory, term: &str) -> Result<Vec<String>, String> {
    if term == "all" || term == "*" {
        return Ok(inv.hosts.keys().cloned().collect());
    }
    if term.starts_with('~') {
        return Err(format!(
            "regex term `{term}` is not supported; use globs (`web*`) or group names"
        ));
    }
    if inv.groups.contains_key(term) {
        return Ok(inv.group_hosts(term));
    }
    if inv.hosts.contains_key(term) {
        return Ok(vec![term.to_string()]);
    }
    if term.contains(['*', '?', '[']) {
        let groups: Vec<&String> = inv.groups.keys().filter(|g| glob(term, g)).collect();
        // Matching hosts and members of matching groups, in inventory order.
        let out = inv
            .hosts
            .values()
            .filter(|h| glob(term, &h.name) || h.groups.iter().any(|g| groups.contains(&g)))
            .map(|h| h.name.clone())
            .collect();
        return Ok(out);
    }
    let names = inv
        .hosts
        .keys()
        .chain(inv.groups.keys())
        .map(String::as_str);
    let close = coerce::close_matches(term, names);
    Err(if close.is_empty() {
        format!("no host or group named `{term}`; list them with `provision inventory --list`")
    } else {
        format!(
            "no host or group named `{term}`; did you mean {}?",
            close.join(", ")
        )
    })
}

/// fnmatch-style glob: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`.
pub(crate) fn glob(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let s: Vec<char> = s.chars().collect();
    glob_at(&p, &s)
}

fn glob_at(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => (0..=s.len()).any(|i| glob_at(&p[1..], &s[i..])),
        Some('?') => !s.is_empty() && glob_at(&p[1..], &s[1..]),
        Some('[') => {
            let Some(end) = p.iter().skip(2).position(|c| *c == ']').map(|i| i + 2) else {
                return s.first() == Some(&'[') && glob_at(&p[1..], &s[1..]);
            };
            let Some(c) = s.first() else { return false };
            let (neg, set) = match p[1] {
                '!' | '^' => (true, &p[2..end]),
                _ => (false, &p[1..end]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    hit |= (set[i]..=set[i + 2]).contains(c);
                    i += 3;
                } else {
                    hit |= set[i] == *c;
                    i += 1;
                }
            }
            hit != neg && glob_at(&p[end + 1..], &s[1..])
        }
        Some(c) => s.first() == Some(c) && glob_at(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(glob("web*", "web01"));
        assert!(glob("web*", "web"));
        assert!(!glob("web*", "db1"));
        assert!(glob("node0?", "node01"));
        assert!(glob("n[ab]x", "nbx"));
        assert!(glob("n[a-c]x", "nbx"));
        assert!(!glob("n[!a-c]x", "nbx"));
    }

    #[test]
    fn term_splitting() {
        assert_eq!(split_terms("a:b,c:&d:!e"), ["a", "b", "c", "&d", "!e"]);
        assert_eq!(split_terms("fe80::1"), ["fe80::1"]);
    }
}
