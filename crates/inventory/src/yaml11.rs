//! Load YAML the way Ansible (PyYAML, YAML 1.1) resolves plain scalars.
//!
//! `yaml_serde` applies the YAML 1.2 core schema. This loader drives the same parser but
//! re-resolves *plain* (unquoted) scalars that YAML 1.1 reads differently: `yes/no/on/off` (in
//! the three spellings PyYAML knows) become booleans, `0644` octal, `0b1010` binary, `1_000`
//! and sexagesimal `1:30` integers. A scalar is known to be plain when the parser hands back a
//! slice of the source not preceded by a quote. Tagged values (`!unsafe yes`) stay as written.
//!
//! Known remaining differences from PyYAML: `yaml_serde` already turns plain `0o17` into 15 and
//! `1e3` into 1000.0, which PyYAML keeps as strings; timestamps stay strings (Ansible prints
//! them as strings too).

use std::fmt;

use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use yaml_serde::value::{Tag, TaggedValue};
use yaml_serde::{Mapping, Number, Value};

/// Parse one YAML document with YAML 1.1 resolution of plain scalars.
pub(crate) fn from_str(text: &str) -> Result<Value, yaml_serde::Error> {
    let de = yaml_serde::Deserializer::from_str(text);
    Seed {
        src: text,
        resolve: true,
    }
    .deserialize(de)
}

#[derive(Clone, Copy)]
struct Seed<'s> {
    src: &'s str,
    /// False inside an explicitly tagged value.
    resolve: bool,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Seed<'_> {
    /// Whether `s` is a slice of the source that is not preceded by a quote.
    fn is_plain(&self, s: &str) -> bool {
        let base = self.src.as_ptr() as usize;
        let p = s.as_ptr() as usize;
        if p < base || p + s.len() > base + self.src.len() {
            return false;
        }
        let off = p - base;
        off == 0 || !matches!(self.src.as_bytes()[off - 1], b'\'' | b'"')
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Value, E> {
        if self.resolve && self.is_plain(s) {
            Ok(resolve_plain(s))
        } else {
            Ok(Value::String(s.to_string()))
        }
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Sequence(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Mapping::new();
        while let Some(k) = map.next_key_seed(self)? {
            if out.contains_key(&k) {
                let shown = match &k {
                    Value::String(s) => format!("{s:?}"),
                    other => format!("{other:?}"),
                };
                return Err(de::Error::custom(format!(
                    "duplicate key {shown} (Ansible keeps the last one with a warning; remove one of them)"
                )));
            }
            let v = map.next_value_seed(self)?;
            out.insert(k, v);
        }
        Ok(Value::Mapping(out))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, contents): (String, _) = data.variant()?;
        let inner = Seed {
            src: self.src,
            resolve: false,
        };
        let value = contents.newtype_variant_seed(inner)?;
        if tag.is_empty() {
            return Ok(value);
        }
        Ok(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}

/// YAML 1.1 (PyYAML) resolution of a plain scalar that YAML 1.2 left as a string.
fn resolve_plain(s: &str) -> Value {
    match s {
        "yes" | "Yes" | "YES" | "on" | "On" | "ON" => return Value::Bool(true),
        "no" | "No" | "NO" | "off" | "Off" | "OFF" => return Value::Bool(false),
        _ => {}
    }
    if let Some(n) = yaml11_int(s) {
        return Value::Number(n);
    }
    if let Some(f) = yaml11_float(s) {
        return Value::Number(f.into());
    }
    Value::String(s.to_string())
}

fn yaml11_int(s: &str) -> Option<Number> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let all = |t: &str, ok: fn(char) -> bool| !t.is_empty() && t.chars().all(|c| ok(c) || c == '_');
    let digits = |t: &str| t.chars().filter(|c| *c != '_').collect::<String>();
    let magnitude: u64 = if let Some(b) = body.strip_prefix("0b") {
        all(b, |c| c == '0' || c == '1').then(|| u64::from_str_radix(&digits(b), 2).ok())??
    } else if let Some(h) = body.strip_prefix("0x") {
        all(h, |c| c.is_ascii_hexdigit()).then(|| u64::from_str_radix(&digits(h), 16).ok())??
    } else if body.len() > 1 && body.starts_with('0') {
        all(&body[1..], |c| ('0'..='7').contains(&c))
            .then(|| u64::from_str_radix(&digits(&body[1..]), 8).ok())??
    } else if body.contains(':') {
        // Sexagesimal: [1-9][0-9_]*(:[0-5]?[0-9])+
        let mut parts = body.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| ('1'..='9').contains(&c))
            || !all(first, |c| c.is_ascii_digit())
        {
            return None;
        }
        let mut n: u64 = digits(first).parse().ok()?;
        for p in parts {
            let ok = (1..=2).contains(&p.len())
                && p.chars().all(|c| c.is_ascii_digit())
                && (p.len() == 1 || p.as_bytes()[0] <= b'5');
            if !ok {
                return None;
            }
            n = n.checked_mul(60)?.checked_add(p.parse::<u64>().ok()?)?;
        }
        n
    } else if body == "0"
        || (body.starts_with(|c: char| ('1'..='9').contains(&c))
            && all(body, |c| c.is_ascii_digit()))
    {
        digits(body).parse().ok()?
    } else {
        return None;
    };
    if neg {
        let v = i64::try_from(magnitude).ok()?;
        Some((-v).into())
    } else {
        Some(magnitude.into())
    }
}

/// Floats with `_` separators (the other YAML 1.1 float forms are resolved by `yaml_serde`).
fn yaml11_float(s: &str) -> Option<f64> {
    let body = s.trim_start_matches(['-', '+']);
    if !s.contains('_') || !body.starts_with(|c: char| c.is_ascii_digit()) || !body.contains('.') {
        return None;
    }
    let ok = body
        .chars()
        .all(|c| c.is_ascii_digit() || "_.eE+-".contains(c));
    if !ok {
        return None;
    }
    s.replace('_', "").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(doc: &str, key: &str) -> Value {
        from_str(doc).unwrap().get(key).cloned().unwrap()
    }

    #[test]
    fn plain_scalars_follow_yaml11() {
        let doc = "a: yes\nb: 'yes'\nc: \"on\"\nd: Off\ne: 0644\nf: '0644'\ng: 1_000\nh: 1:30\ni: 0b101\nj: y\nk: -017\nl: 0x1F\nm: 1.5\nn: ~\no: 52:54:00:12:34:56\np: 52:54:00:ab:cd:ef\nq: 1_0.5\nr: YeS\n";
        assert_eq!(get(doc, "a"), Value::Bool(true));
        assert_eq!(get(doc, "b"), Value::String("yes".into()));
        assert_eq!(get(doc, "c"), Value::String("on".into()));
        assert_eq!(get(doc, "d"), Value::Bool(false));
        assert_eq!(get(doc, "e").as_u64(), Some(0o644));
        assert_eq!(get(doc, "f"), Value::String("0644".into()));
        assert_eq!(get(doc, "g").as_u64(), Some(1000));
        assert_eq!(get(doc, "h").as_u64(), Some(90));
        assert_eq!(get(doc, "i").as_u64(), Some(5));
        assert_eq!(get(doc, "j"), Value::String("y".into()));
        assert_eq!(get(doc, "k").as_i64(), Some(-15));
        assert_eq!(get(doc, "l").as_u64(), Some(31));
        assert_eq!(get(doc, "m").as_f64(), Some(1.5));
        assert_eq!(get(doc, "n"), Value::Null);
        assert!(
            get(doc, "o").is_u64(),
            "unquoted MAC is a base-60 integer in YAML 1.1"
        );
        assert_eq!(get(doc, "p"), Value::String("52:54:00:ab:cd:ef".into()));
        assert_eq!(get(doc, "q").as_f64(), Some(10.5));
        assert_eq!(get(doc, "r"), Value::String("YeS".into()));
    }

    #[test]
    fn flow_collections_and_tags() {
        let v = from_str("a: [yes, 'no', 010]\nb: {x: on}\nc: !unsafe yes\nd: !vault |\n  abc\n")
            .unwrap();
        let a = v.get("a").unwrap().as_sequence().unwrap();
        assert_eq!(a[0], Value::Bool(true));
        assert_eq!(a[1], Value::String("no".into()));
        assert_eq!(a[2].as_u64(), Some(8));
        assert_eq!(v.get("b").unwrap().get("x"), Some(&Value::Bool(true)));
        match v.get("c").unwrap() {
            Value::Tagged(t) => {
                assert!(t.tag == "unsafe");
                assert_eq!(t.value, Value::String("yes".into()));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(v.get("d").unwrap(), Value::Tagged(t) if t.tag == "vault"));
    }

    #[test]
    fn duplicates_and_empty() {
        let e = from_str("a: 1\na: 2\n").unwrap_err();
        assert!(e.to_string().contains("duplicate key \"a\""), "{e}");
        assert_eq!(from_str("").unwrap(), Value::Null);
        assert_eq!(from_str("# only a comment\n").unwrap(), Value::Null);
    }
}
