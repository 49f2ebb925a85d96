//! Turning one raw console line into the kernel's message text: line prefixes (timestamps,
//! caller ids, netconsole extended headers, syslog priorities) and CR/control noise removed.

/// Longest message text kept per line; console lines are far shorter, and the cap bounds the
/// work done on a hostile line (see docs/triage.md, "Limits").
pub const MAX_LINE: usize = 1024;

/// One console line with its prefixes removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stripped<'a> {
    /// The kernel's message text (leading spaces kept: stack frames are indented).
    pub msg: &'a str,
    /// Whether a kernel prefix (timestamp, caller id, netconsole header) was removed. Lines
    /// without one inside a prefixed report come from elsewhere (a program writing to the same
    /// console) and are not part of the report.
    pub prefixed: bool,
    /// The caller id (`T81` for a task, `C1` for a CPU in interrupt context) when printed:
    /// lines of one report share it, so it separates reports printed at the same time.
    pub caller: Option<&'a str>,
}

/// Removes the prefixes a kernel console line may carry, in any combination and order:
/// `<6>`, `6,1234,5678,-;` (netconsole extended / /dev/kmsg), `[   72.150000]`,
/// `[   T81]` / `[ C1]` (caller id), `[4:  comm: 123]` (vendor kernels), and the receiver's own
/// `2026-12-02T09:00:00.250Z seq=12 lvl=4 ` (receive time, then the extended header's fields) of
/// `console/<ip>.log` and crash records (src/receiver/console.rs).
pub fn strip(raw: &str) -> Stripped<'_> {
    let mut s = trim_noise(raw);
    let mut prefixed = false;
    let mut caller = None;
    if let Some(rest) = strip_receive_time(s) {
        s = rest;
        for key in ["seq=", "lvl="] {
            if let Some(rest) = strip_number_field(s, key) {
                s = rest;
            }
        }
        prefixed = true;
    }
    loop {
        let before = s.len();
        if let Some(rest) = strip_ext_header(s) {
            s = rest;
        }
        if let Some(rest) = strip_priority(s) {
            s = rest;
        }
        if let Some((rest, inner)) = strip_bracket(s) {
            if is_caller(inner) {
                caller = Some(inner);
            }
            s = rest;
        }
        if s.len() == before {
            break;
        }
        prefixed = true;
    }
    if prefixed {
        // One separator space follows a timestamp; indentation beyond it belongs to the message.
        s = s.strip_prefix(' ').unwrap_or(s);
    }
    Stripped {
        msg: s,
        prefixed,
        caller,
    }
}

/// Drops trailing CR/LF, a leading run of CRs and NULs, and caps the length.
fn trim_noise(raw: &str) -> &str {
    let s = raw.trim_end_matches(['\r', '\n', '\0']);
    let s = s.trim_start_matches(['\r', '\0']);
    if s.len() <= MAX_LINE {
        return s;
    }
    let mut end = MAX_LINE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `<level>,<seq>,<timestamp>,<flags>[,more];` — the extended netconsole / kmsg header.
fn strip_ext_header(s: &str) -> Option<&str> {
    let semi = s.get(..64.min(s.len())).unwrap_or(s).find(';')?;
    let head = &s[..semi];
    let mut fields = head.split(',');
    let level = fields.next()?;
    let seq = fields.next()?;
    let ts = fields.next()?;
    let flags = fields.next()?;
    let digits = |f: &str, max: usize| {
        !f.is_empty() && f.len() <= max && f.bytes().all(|b| b.is_ascii_digit())
    };
    if digits(level, 4) && digits(seq, 20) && digits(ts, 20) && flags.len() <= 1 {
        Some(&s[semi + 1..])
    } else {
        None
    }
}

/// `2026-12-02T09:00:00.250Z ` (RFC 3339, UTC, any fraction): the receiver's receive time.
fn strip_receive_time(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    if !shape {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len().min(start + 9) && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    s.get(i..)?.strip_prefix("Z ")
}

/// `seq=123 ` / `lvl=4 `.
fn strip_number_field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(key)?;
    let end = rest.find(' ')?;
    (end > 0 && end <= 20 && rest[..end].bytes().all(|b| b.is_ascii_digit()))
        .then(|| &rest[end + 1..])
}

/// `<6>` syslog priority.
fn strip_priority(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('<')?;
    let end = rest.find('>')?;
    (end > 0 && end <= 3 && rest[..end].bytes().all(|b| b.is_ascii_digit()))
        .then(|| &rest[end + 1..])
}

/// `[   72.150000]`, `[  T81]`, `[ C1]`, `[4:  comm: 123]`.
fn strip_bracket(s: &str) -> Option<(&str, &str)> {
    let rest = s.strip_prefix('[')?;
    let end = rest.get(..48.min(rest.len()))?.find(']')?;
    let inner = rest[..end].trim();
    let ok = is_timestamp(inner) || is_caller(inner) || is_vendor(inner);
    ok.then(|| (&rest[end + 1..], inner))
}

fn is_timestamp(s: &str) -> bool {
    let Some((secs, frac)) = s.split_once('.') else {
        return false;
    };
    !secs.is_empty()
        && !frac.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn is_caller(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(b'T' | b'C')) && s.len() > 1 && b.all(|c| c.is_ascii_digit())
}

/// `4:  comm: 123` (cpu, task name, pid) as some vendor kernels print.
fn is_vendor(s: &str) -> bool {
    let mut parts = s.splitn(3, ':');
    let (Some(cpu), Some(_comm), Some(pid)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let pid = pid.trim();
    !cpu.is_empty()
        && cpu.bytes().all(|b| b.is_ascii_digit())
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_and_caller_prefixes_go() {
        assert_eq!(strip("[   72.150000] BUG: x").msg, "BUG: x");
        assert_eq!(strip("[   30.020000][   T81] BUG: x").msg, "BUG: x");
        assert_eq!(strip("[   30.020000][    C1] BUG: x").msg, "BUG: x");
        assert!(strip("[   30.020000][   T81] BUG: x").prefixed);
        assert_eq!(strip("[   30.020000][   T81] BUG: x").caller, Some("T81"));
        assert_eq!(strip("[   30.020000] BUG: x").caller, None);
    }

    #[test]
    fn frame_indentation_is_kept() {
        assert_eq!(strip("[    1.000000]  foo+0x1/0x2").msg, " foo+0x1/0x2");
    }

    #[test]
    fn netconsole_extended_and_syslog() {
        assert_eq!(
            strip("4,2817,912345678,-;WARNING: CPU: 0").msg,
            "WARNING: CPU: 0"
        );
        assert_eq!(strip("6,12,34,c;<4>[ 1.5] hello\r\n").msg, "hello");
        assert_eq!(strip("<4>hi").msg, "hi");
    }

    #[test]
    fn receiver_console_log_prefixes() {
        let s = strip("2026-11-26T16:08:13.250Z [  200.1] INFO: task sh:812 blocked");
        assert_eq!(s.msg, "INFO: task sh:812 blocked");
        assert!(s.prefixed);
        assert_eq!(
            strip("2026-11-26T16:08:13.250Z seq=4711 lvl=4 [   95.000001]  panic+0x1/0x2").msg,
            " panic+0x1/0x2"
        );
        // Without a kernel timestamp (printk.time=0), the receive time alone.
        let s = strip("2026-11-26T16:08:13Z Kernel panic - not syncing: x");
        assert_eq!(s.msg, "Kernel panic - not syncing: x");
        assert!(s.prefixed);
        // Not a receive time: left alone.
        assert_eq!(strip("2026-11-26 16:08:13 x").msg, "2026-11-26 16:08:13 x");
        assert_eq!(
            strip("2026-11-26T16:08:13.Z x").msg,
            "2026-11-26T16:08:13.Z x"
        );
        assert_eq!(
            strip("2026-11-26T16:08:13.250Z").msg,
            "2026-11-26T16:08:13.250Z"
        );
    }

    #[test]
    fn plain_lines_stay() {
        let s = strip("2026/01/02 10:11:12 executing program 3:");
        assert_eq!(s.msg, "2026/01/02 10:11:12 executing program 3:");
        assert!(!s.prefixed);
        assert_eq!(
            strip("[<ffffffff81000000>] foo+0x1/0x2").msg,
            "[<ffffffff81000000>] foo+0x1/0x2"
        );
        assert_eq!(strip("1,2;x").msg, "1,2;x");
    }

    #[test]
    fn cr_noise_and_long_lines() {
        assert_eq!(strip("\r\r[ 1.0] x\r\r").msg, "x");
        let long = "é".repeat(MAX_LINE);
        assert!(strip(&long).msg.len() <= MAX_LINE);
    }
}
