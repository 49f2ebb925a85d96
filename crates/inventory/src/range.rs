//! Host name ranges (`node[01:64]`, `node[08:12:2]`, `rack-[a:f]`) and the `host:port` suffix,
//! expanded the way Ansible's `expand_hostname_range` does.

/// Most hosts one range pattern may expand to (a typo like `[1:1000000000]` must not exhaust
/// memory).
pub const MAX_EXPANSION: usize = 100_000;

/// Expand every `[begin:end(:step)]` in `name`. Names without brackets come back unchanged.
pub fn expand(name: &str) -> Result<Vec<String>, String> {
    let Some(open) = name.find('[') else {
        return Ok(vec![name.to_string()]);
    };
    let Some(close_rel) = name[open..].find(']') else {
        return Err(format!("host range in {name:?} has '[' without ']'"));
    };
    let close = open + close_rel;
    let head = &name[..open];
    let inner = &name[open + 1..close];
    let tail = &name[close + 1..];
    let bounds: Vec<&str> = inner.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err(format!(
            "host range [{inner}] in {name:?} must be [begin:end] or [begin:end:step]"
        ));
    }
    let beg = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    if end.is_empty() {
        return Err(format!("host range [{inner}] in {name:?} has no end"));
    }
    let step: usize = match bounds.get(2) {
        None | Some(&"") => 1,
        Some(s) => s.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!("host range [{inner}] in {name:?}: step {s:?} is not a positive integer")
        })?,
    };
    let alpha = |s: &str| s.len() == 1 && s.chars().all(|c| c.is_ascii_alphabetic());
    let seq: Vec<String> = if alpha(beg) && alpha(end) {
        const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let (ib, ie) = (
            LETTERS.find(beg).unwrap_or(0),
            LETTERS.find(end).unwrap_or(0),
        );
        if ib > ie {
            return Err(format!(
                "host range [{inner}] in {name:?} must have begin <= end"
            ));
        }
        LETTERS[ib..=ie]
            .chars()
            .step_by(step)
            .map(String::from)
            .collect()
    } else {
        let parse = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("host range [{inner}] in {name:?}: {s:?} is neither a number nor a single letter"))
        };
        let (b, e) = (parse(beg)?, parse(end)?);
        if b > e {
            return Err(format!(
                "host range [{inner}] in {name:?} must have begin <= end"
            ));
        }
        let width = if beg.starts_with('0') && beg.len() > 1 {
            if beg.len() != end.len() {
                return Err(format!(
                    "host range [{inner}] in {name:?} must give begin and end with the same number of digits"
                ));
            }
            beg.len()
        } else {
            0
        };
        let count = ((e - b) / step as u64).saturating_add(1);
        if count > MAX_EXPANSION as u64 {
            return Err(format!(
                "host range [{inner}] in {name:?} gives {count} hosts, more than the {MAX_EXPANSION} one range may give"
            ));
        }
        (b..=e)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect()
    };
    let tails = expand(tail)?;
    let count = seq.len().saturating_mul(tails.len());
    if count > MAX_EXPANSION {
        return Err(format!(
            "host range in {name:?} gives {count} hosts, more than the {MAX_EXPANSION} one range may give"
        ));
    }
    let mut out = Vec::with_capacity(seq.len() * tails.len());
    for s in &seq {
        for t in &tails {
            out.push(format!("{head}{s}{t}"));
        }
    }
    Ok(out)
}

/// Split a `host:port` suffix (only colons outside range brackets count). `[v6addr]:port` and
/// bare IPv6 addresses (several colons) are handled; a non-numeric suffix is an error.
pub fn split_port(name: &str) -> Result<(String, Option<u16>), String> {
    if let Some((addr, after)) = name.strip_prefix('[').and_then(|r| r.split_once(']')) {
        let is_v6 = addr.matches(':').count() >= 2
            && addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if is_v6 {
            return match after.strip_prefix(':') {
                Some(port) => parse_port(name, port).map(|p| (addr.to_string(), Some(p))),
                None if after.is_empty() => Ok((addr.to_string(), None)),
                None => Err(format!("host {name:?}: unexpected text after ']'")),
            };
        }
    }
    let mut depth = 0usize;
    let mut colons = Vec::new();
    for (i, c) in name.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    match colons.as_slice() {
        [i] => parse_port(name, &name[i + 1..]).map(|p| (name[..*i].to_string(), Some(p))),
        _ => Ok((name.to_string(), None)),
    }
}

fn parse_port(name: &str, port: &str) -> Result<u16, String> {
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("host {name:?}: port {port:?} after ':' is not a number 1-65535"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ranges_keep_leading_zeros() {
        assert_eq!(
            expand("node[01:03]").unwrap(),
            ["node01", "node02", "node03"]
        );
        assert_eq!(expand("node[8:10]").unwrap(), ["node8", "node9", "node10"]);
        assert_eq!(
            expand("node[08:12:2]").unwrap(),
            ["node08", "node10", "node12"]
        );
        assert_eq!(expand("n[:2]").unwrap(), ["n0", "n1", "n2"]);
        assert_eq!(expand("node[01:64]").unwrap().len(), 64);
        assert_eq!(expand("plain").unwrap(), ["plain"]);
    }

    #[test]
    fn alphabetic_and_nested_ranges() {
        assert_eq!(
            expand("rack-[a:c]").unwrap(),
            ["rack-a", "rack-b", "rack-c"]
        );
        assert_eq!(expand("r[a:c:2]x").unwrap(), ["rax", "rcx"]);
        assert_eq!(
            expand("r[1:2]-[a:b]").unwrap(),
            ["r1-a", "r1-b", "r2-a", "r2-b"]
        );
    }

    #[test]
    fn bad_ranges() {
        assert!(expand("n[3:1]").is_err());
        assert!(expand("n[01:100]").is_err());
        assert!(expand("n[1:x]").is_err());
        assert!(expand("n[1]").is_err());
        assert!(expand("n[1:3").is_err());
        assert!(expand("n[1:3:0]").is_err());
        assert!(expand("n[0:99999999999]").is_err());
        assert!(expand("n[0:999]-[0:999]").is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(split_port("h:2222").unwrap(), ("h".into(), Some(2222)));
        assert_eq!(split_port("h").unwrap(), ("h".into(), None));
        assert_eq!(split_port("fe80::1").unwrap(), ("fe80::1".into(), None));
        assert_eq!(
            split_port("[fe80::1]:22").unwrap(),
            ("fe80::1".into(), Some(22))
        );
        assert!(split_port("h:x").is_err());
        assert_eq!(
            split_port("n[01:02]:22").unwrap(),
            ("n[01:02]".into(), Some(22))
        );
        assert_eq!(split_port("n[01:02]").unwrap(), ("n[01:02]".into(), None));
    }
}
