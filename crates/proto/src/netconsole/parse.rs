//! Parsing one netconsole datagram: the extended header, the body and its ` key=value`
//! fields, and the patterns that mark a console line as a crash (docs/netconsole.md).

/// The header of one extended netconsole datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtHeader<'a> {
    /// Kernel release when the sender uses `r` / configfs `release=1`.
    pub release: Option<&'a str>,
    /// Syslog priority: `facility << 3 | level`.
    pub prefix: u32,
    pub seq: u64,
    pub ts_usec: u64,
    /// `-`, `c` or `+` (continuation flags of older kernels).
    pub flags: &'a str,
    /// `ncfrag=<offset>/<total>` when the record was split.
    pub frag: Option<(usize, usize)>,
}

impl ExtHeader<'_> {
    pub fn level(&self) -> u8 {
        (self.prefix & 7) as u8
    }
}

/// Longest header we look for a `;` in (release + four numbers + caller + ncfrag fit easily).
const MAX_HEADER: usize = 256;

/// Splits an extended netconsole datagram into header and body (the bytes after `;`).
/// Returns `None` when the datagram is not extended netconsole (treat it as plain text).
pub fn parse_extended(datagram: &[u8]) -> Option<(ExtHeader<'_>, &[u8])> {
    let limit = datagram.len().min(MAX_HEADER);
    let semi = datagram[..limit].iter().position(|&b| b == b';')?;
    let header = std::str::from_utf8(&datagram[..semi]).ok()?;
    if header.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return None;
    }
    let body = &datagram[semi + 1..];
    let mut positional: [&str; 5] = [""; 5];
    let mut n = 0usize;
    let mut frag = None;
    for field in header.split(',') {
        if let Some(v) = field.strip_prefix("ncfrag=") {
            let (off, total) = v.split_once('/')?;
            frag = Some((parse_num::<usize>(off)?, parse_num::<usize>(total)?));
        } else if field.contains('=') {
            // `caller=T123` (CONFIG_PRINTK_CALLER) and any future key=value header field.
            continue;
        } else {
            if n == positional.len() {
                return None;
            }
            positional[n] = field;
            n += 1;
        }
    }
    let (release, rest) = match n {
        4 => (None, &positional[..4]),
        5 if !positional[0].is_empty() => (Some(positional[0]), &positional[1..5]),
        _ => return None,
    };
    let prefix = parse_num::<u32>(rest[0])?;
    if prefix > 1023 {
        return None;
    }
    let seq = parse_num::<u64>(rest[1])?;
    let ts_usec = parse_num::<u64>(rest[2])?;
    let flags = rest[3];
    if flags.len() > 4 {
        return None;
    }
    Some((
        ExtHeader {
            release,
            prefix,
            seq,
            ts_usec,
            flags,
            frag,
        },
        body,
    ))
}

fn parse_num<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits a (reassembled) extended body into the message text and its ` key=value` lines.
/// The text keeps the kernel's `\xNN` escapes; other control bytes are escaped the same way.
pub fn split_body(body: &[u8]) -> (String, Vec<(String, String)>) {
    let mut lines = body.split(|&b| b == b'\n');
    let text = sanitize(lines.next().unwrap_or_default());
    let mut fields = Vec::new();
    for line in lines {
        let Some(kv) = line.strip_prefix(b" ") else {
            continue;
        };
        let kv = sanitize(kv);
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => fields.push((k.to_owned(), v.to_owned())),
            _ => {}
        }
    }
    (text, fields)
}

/// Lossy UTF-8 with control characters (other than tab) escaped as `\xNN`, so nothing a sender
/// puts in a datagram can inject terminal escapes or line breaks into the log files.
pub fn sanitize(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let lossy = String::from_utf8_lossy(bytes);
    if !lossy.chars().any(|c| c.is_control() && c != '\t') {
        return lossy.into_owned();
    }
    let mut out = String::with_capacity(lossy.len() + 8);
    for c in lossy.chars() {
        if c.is_control() && c != '\t' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// True for console lines that show a kernel crash: `sysrq: Trigger a crash` (and the older
/// `SysRq : Trigger a crash`), `Kernel panic - not syncing`, `Oops:` / `Internal error: Oops`,
/// `BUG:`, `kernel BUG at` and x86 `general protection fault` (which older kernels print
/// without an `Oops:` prefix). The pattern must start the message (after an optional printk
/// timestamp `[   12.345678]`, caller id `[T123]` and syslog `<N>` prefix), so ordinary lines
/// that merely mention "bug" or "oops", and user-space `traps: … general protection fault`
/// lines, do not match.
pub fn is_crash_line(text: &str) -> bool {
    let t = strip_line_prefixes(text);
    if t.starts_with("Kernel panic - not syncing")
        || t.starts_with("Oops:")
        || t.starts_with("Internal error: Oops")
        || t.starts_with("BUG:")
        || t.starts_with("kernel BUG at ")
        || t.starts_with("general protection fault")
    {
        return true;
    }
    is_sysrq_crash(t)
}

fn is_sysrq_crash(t: &str) -> bool {
    if !t.starts_with(['s', 'S']) {
        return false;
    }
    // Compare case-insensitively with whitespace removed: "sysrq: Trigger a crash",
    // "SysRq : Trigger a crash", "sysrq: SysRq : Trigger a crash".
    let mut squeezed = String::with_capacity(48);
    for c in t.chars().filter(|c| !c.is_whitespace()).take(48) {
        squeezed.extend(c.to_lowercase());
    }
    let mut s = squeezed.as_str();
    let mut saw_sysrq = false;
    while let Some(rest) = s.strip_prefix("sysrq:") {
        s = rest;
        saw_sysrq = true;
    }
    saw_sysrq && s.starts_with("triggeracrash")
}

pub(super) fn strip_line_prefixes(mut t: &str) -> &str {
    for _ in 0..4 {
        t = t.trim_start();
        if let Some(rest) = t.strip_prefix('<')
            && let Some(end) = rest.find('>')
            && end <= 4
            && rest[..end].bytes().all(|b| b.is_ascii_digit())
        {
            t = &rest[end + 1..];
            continue;
        }
        if let Some(rest) = t.strip_prefix('[')
            && let Some(end) = rest.find(']')
        {
            let inner = &rest[..end];
            if end <= 24
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b' ')
            {
                t = &rest[end + 1..];
                continue;
            }
        }
        break;
    }
    t
}
