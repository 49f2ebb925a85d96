//! YAML 1.1 scalar coercion as Ansible applies it.
//!
//! `yaml_serde` resolves plain scalars with the YAML 1.2 core schema, so `yes`, `on` and `0644`
//! arrive as strings. Where a typed value is expected, these helpers accept what Ansible (PyYAML
//! plus its `boolean()` filter) accepts.

use yaml_serde::Value;

/// A boolean the way Ansible reads one: real booleans, `yes/no/on/off/y/n/true/false` in any
/// case, and the integers/strings `1`/`0`.
pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "on" | "y" | "true" | "1" | "t" => Some(true),
            "no" | "off" | "n" | "false" | "0" | "f" => Some(false),
            _ => None,
        },
        Value::Tagged(t) => as_bool(&t.value),
        _ => None,
    }
}

/// An unsigned integer: a YAML integer, or a string of decimal digits (also `0x..` hex and
/// YAML 1.1 underscores, which PyYAML accepts).
pub fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => parse_u64_text(s.trim()),
        Value::Tagged(t) => as_u64(&t.value),
        _ => None,
    }
}

fn parse_u64_text(s: &str) -> Option<u64> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.is_empty() {
        return None;
    }
    let cleaned: String = s.chars().filter(|c| *c != '_').collect();
    if let Some(hex) = cleaned.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok();
    }
    if cleaned.chars().all(|c| c.is_ascii_digit()) {
        return cleaned.parse().ok();
    }
    None
}

pub fn as_u16(v: &Value) -> Option<u16> {
    as_u64(v).and_then(|n| u16::try_from(n).ok())
}

pub fn as_u32(v: &Value) -> Option<u32> {
    as_u64(v).and_then(|n| u32::try_from(n).ok())
}

/// A file mode. YAML 1.1 reads a plain `0644` as octal (420); `yaml_serde` hands it over as the
/// string "0644", which is read as octal here. Strings `"0o644"` and `"644"` are octal too
/// (Ansible's `mode` convention); a YAML integer without a leading zero is taken as is.
pub fn as_mode(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|m| *m <= 0o7777),
        Value::String(s) => {
            let s = s.trim();
            let digits = s.strip_prefix("0o").unwrap_or(s);
            if digits.is_empty() || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
                return None;
            }
            u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
        }
        Value::Tagged(t) => as_mode(&t.value),
        _ => None,
    }
}

/// A scalar as a string (numbers and booleans converted the way Ansible templates them).
/// `None` for null, sequences and mappings.
pub fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        Value::Tagged(t) => as_string(&t.value),
        _ => None,
    }
}

/// Short description of a value for error messages: its YAML text for scalars, else its kind.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("{} {}", t.tag, describe(&t.value)),
    }
}

/// Split a string shell-style (single quotes, double quotes with backslash escapes, backslash
/// outside quotes), as Python's `shlex.split` does for `ansible_ssh_common_args`.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Edit distance counting insertions, deletions, substitutions and swaps of adjacent characters
/// (optimal string alignment), for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// Candidates close to `word` (edit distance <= max(2, len/4)), best first, at most 3.
pub fn close_matches<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let limit = (word.chars().count() / 4).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.dedup();
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        yaml_serde::from_str(s).unwrap()
    }

    #[test]
    fn yaml11_booleans() {
        for t in [
            "yes", "Yes", "YES", "on", "ON", "y", "Y", "true", "True", "1",
        ] {
            assert_eq!(as_bool(&y(t)), Some(true), "{t}");
        }
        for f in ["no", "No", "off", "OFF", "n", "N", "false", "FALSE", "0"] {
            assert_eq!(as_bool(&y(f)), Some(false), "{f}");
        }
        assert_eq!(as_bool(&y("maybe")), None);
        assert_eq!(as_bool(&y("2")), None);
        assert_eq!(as_bool(&y("[1]")), None);
    }

    #[test]
    fn integers_and_modes() {
        assert_eq!(as_u64(&y("6666")), Some(6666));
        assert_eq!(as_u64(&y("'6666'")), Some(6666));
        assert_eq!(as_u64(&y("1_000")), Some(1000));
        assert_eq!(as_u64(&y("abc")), None);
        assert_eq!(as_u64(&y("-1")), None);
        assert_eq!(as_u64(&y("1.5")), None);
        assert_eq!(as_u16(&y("70000")), None);
        assert_eq!(as_u16(&y("65535")), Some(65535));
        assert_eq!(as_mode(&y("0644")), Some(0o644));
        assert_eq!(as_mode(&y("'0600'")), Some(0o600));
        assert_eq!(as_mode(&y("0o755")), Some(0o755));
        assert_eq!(as_mode(&y("420")), Some(420));
        assert_eq!(as_mode(&y("0698")), None);
    }

    #[test]
    fn strings() {
        assert_eq!(as_string(&y("abc")).as_deref(), Some("abc"));
        assert_eq!(as_string(&y("12")).as_deref(), Some("12"));
        assert_eq!(as_string(&y("~")), None);
    }

    #[test]
    fn shell_splitting() {
        assert_eq!(
            shell_split(r#"-o ProxyJump=bastion -o 'StrictHostKeyChecking=no' "a b" c\ d"#)
                .unwrap(),
            vec![
                "-o",
                "ProxyJump=bastion",
                "-o",
                "StrictHostKeyChecking=no",
                "a b",
                "c d"
            ]
        );
        assert!(shell_split("'open").is_err());
        assert_eq!(shell_split("  ").unwrap(), Vec::<String>::new());
        assert_eq!(shell_split("''").unwrap(), vec![""]);
    }

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("wbe1", "web1"), 1);
        assert_eq!(edit_distance("", "ab"), 2);
        let c = close_matches(
            "netdump_prot",
            ["netdump_port", "netdump_uid", "netdump_dev"],
        );
        assert_eq!(c, vec!["netdump_port"]);
    }
}
