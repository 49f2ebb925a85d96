//! The grammar of what a dump client may ask the sink to do (pure, no IO).
//!
//! sshd hands the sink the client's command line as one string (`SSH_ORIGINAL_COMMAND`). No
//! shell ever sees it: it is split into words here by a deliberately small subset of shell
//! quoting (bare words of a safe character set, '…' and "…" without expansions) and matched
//! against the exact command shapes the dump tools send (docs/server-layout.md lists them with
//! their origin). Anything else is a [`Refusal`].

use std::fmt;

/// One request of a client, as parsed; paths are still the client's strings (the policy in
/// [`super::policy`] decides what they may name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `mkdir [-p] PATH`
    Mkdir { path: String },
    /// `mktemp -dqp BASE`: RHEL's `kdumpctl` checks it may create directories.
    MkTemp { base: String },
    /// `rmdir PATH`
    Rmdir { path: String },
    /// `df --output=avail PATH`: RHEL's free-space check.
    Df { path: String },
    /// stdin to a file: `dd [bs=N] of=PATH` (optionally after `umask 0077 &&`) or `cat > PATH`.
    WriteStdin { path: String },
    /// `echo WORDS > PATH`: RHEL's `vmcore-creation.status`, netdump's magic.
    WriteText { path: String, text: String },
    /// `mv [-f] FROM TO`
    Rename { from: String, to: String },
    /// Legacy scp server mode: `scp -t PATH` (receive) or `scp -f PATH` (send).
    Scp { sink: bool, path: String },
    /// The SFTP subsystem (sshd passes the subsystem's command line).
    Sftp,
    /// `probe`: free space, this client's quota and the sink's version, for our own tools.
    Probe,
}

/// Why a command line was refused (shown to the client on one line, and logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse<T>(msg: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(msg.into()))
}

/// Longest command line accepted (the dump tools' lines are a few hundred bytes).
pub const MAX_COMMAND: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    And,
    Redirect,
    Pipe,
}

fn bare_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_./:=,+@%-".contains(c)
}

/// Splits a command line into words and the few operators the dump tools use.
fn tokenize(line: &str) -> Result<Vec<Tok>, Refusal> {
    if line.len() > MAX_COMMAND {
        return refuse(format!("command longer than {MAX_COMMAND} bytes"));
    }
    let mut toks = Vec::new();
    let mut chars = line.chars().peekable();
    let mut cur: Option<String> = None;
    let flush = |cur: &mut Option<String>, toks: &mut Vec<Tok>| {
        if let Some(w) = cur.take() {
            toks.push(Tok::Word(w));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => flush(&mut cur, &mut toks),
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) if c.is_control() => {
                            return refuse("control character in a quoted word");
                        }
                        Some(c) => w.push(c),
                        None => return refuse("unterminated single quote"),
                    }
                }
            }
            '"' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) if matches!(c, '$' | '`' | '\\' | '!') || c.is_control() => {
                            return refuse(format!("{c:?} inside double quotes is not allowed"));
                        }
                        Some(c) => w.push(c),
                        None => return refuse("unterminated double quote"),
                    }
                }
            }
            '&' if chars.peek() == Some(&'&') => {
                chars.next();
                flush(&mut cur, &mut toks);
                toks.push(Tok::And);
            }
            '>' => {
                flush(&mut cur, &mut toks);
                toks.push(Tok::Redirect);
            }
            '|' => {
                flush(&mut cur, &mut toks);
                toks.push(Tok::Pipe);
            }
            c if bare_ok(c) => cur.get_or_insert_with(String::new).push(c),
            c => return refuse(format!("character {c:?} is not allowed")),
        }
    }
    flush(&mut cur, &mut toks);
    Ok(toks)
}

fn words(toks: &[Tok]) -> Option<Vec<&str>> {
    toks.iter()
        .map(|t| match t {
            Tok::Word(w) => Some(w.as_str()),
            _ => None,
        })
        .collect()
}

/// The basename of the SFTP server programs sshd may pass as the subsystem's command.
fn is_sftp_server(word: &str) -> bool {
    word == "internal-sftp" || word.rsplit('/').next() == Some("sftp-server")
}

/// Parses `SSH_ORIGINAL_COMMAND`.
pub fn parse(line: &str) -> Result<Request, Refusal> {
    let line = line.trim_matches([' ', '\t']);
    if line.is_empty() {
        return refuse("no command given (this account only accepts crash dumps; no shell)");
    }
    let mut toks = tokenize(line)?;
    // `umask 0077 && <write>` (RHEL): the sink always creates files 0600 anyway.
    if let [Tok::Word(a), Tok::Word(b), Tok::And, ..] = toks.as_slice() {
        if a == "umask" && (b == "0077" || b == "077") {
            toks.drain(..3);
        } else {
            return refuse(format!("`{a}` is not an allowed command"));
        }
    }
    // `CMD... > PATH`
    if let Some(i) = toks.iter().position(|t| *t == Tok::Redirect) {
        let (cmd, rest) = toks.split_at(i);
        let path = match rest {
            [Tok::Redirect, Tok::Word(p)] => p.clone(),
            _ => return refuse("a redirection must be the last thing: `> FILE`"),
        };
        let w = words(cmd).ok_or_else(|| Refusal("only one command is allowed".into()))?;
        return match w.as_slice() {
            ["cat"] => Ok(Request::WriteStdin { path }),
            ["echo", text @ ..] => Ok(Request::WriteText {
                path,
                text: text.join(" "),
            }),
            _ => refuse(format!(
                "`{}` with a redirection is not allowed (only `cat > FILE`, `echo … > FILE`)",
                w.first().copied().unwrap_or("")
            )),
        };
    }
    // `df --output=avail PATH | tail -1` (the pipe's right side runs locally in kdumpctl, but
    // older scripts send it to the server).
    if let Some(i) = toks.iter().position(|t| *t == Tok::Pipe) {
        let tail = words(&toks[i + 1..]);
        let ok_tail = matches!(
            tail.as_deref(),
            Some(["tail", "-1"]) | Some(["tail", "-n", "1"]) | Some(["tail", "-n1"])
        );
        if !ok_tail {
            return refuse("pipes are not allowed");
        }
        toks.truncate(i);
    }
    let w = words(&toks).ok_or_else(|| Refusal("only one command is allowed".into()))?;
    let one_path = |args: &[&str]| -> Result<String, Refusal> {
        match args {
            [p] | ["--", p] if !p.starts_with('-') || args.len() == 2 => Ok(p.to_string()),
            _ => refuse("expected exactly one path"),
        }
    };
    match w.as_slice() {
        [first, ..] if is_sftp_server(first) => Ok(Request::Sftp),
        ["probe"] => Ok(Request::Probe),
        ["mkdir", "-p", rest @ ..] | ["mkdir", rest @ ..] => Ok(Request::Mkdir {
            path: one_path(rest)?,
        }),
        ["mktemp", "-dqp", base] => Ok(Request::MkTemp {
            base: base.to_string(),
        }),
        ["rmdir", rest @ ..] => Ok(Request::Rmdir {
            path: one_path(rest)?,
        }),
        ["df", "--output=avail", rest @ ..] => Ok(Request::Df {
            path: one_path(rest)?,
        }),
        ["mv", "-f", a, b] | ["mv", a, b] if !a.starts_with('-') && !b.starts_with('-') => {
            Ok(Request::Rename {
                from: a.to_string(),
                to: b.to_string(),
            })
        }
        ["dd", args @ ..] => {
            let mut of = None;
            for a in args {
                if let Some(p) = a.strip_prefix("of=") {
                    if of.replace(p.to_string()).is_some() {
                        return refuse("dd: `of=` given twice");
                    }
                } else if let Some(n) = a.strip_prefix("bs=") {
                    if n.is_empty() || n.len() > 8 || !n.chars().all(|c| c.is_ascii_digit()) {
                        return refuse("dd: `bs=` must be a plain number");
                    }
                } else {
                    return refuse(format!(
                        "dd: operand `{a}` is not allowed (only bs= and of=)"
                    ));
                }
            }
            match of {
                Some(path) if !path.is_empty() => Ok(Request::WriteStdin { path }),
                _ => refuse("dd: `of=FILE` is required"),
            }
        }
        ["scp", args @ ..] => {
            let mut mode = None;
            let mut path = None;
            let mut ended = false;
            for a in args {
                match *a {
                    "--" if !ended => ended = true,
                    "-t" | "-f" if !ended => {
                        if mode.replace(*a == "-t").is_some() {
                            return refuse("scp: -t and -f are exclusive");
                        }
                    }
                    "-d" | "-p" | "-v" | "-q" if !ended => {}
                    "-r" if !ended => return refuse("scp: recursive copies are not allowed"),
                    p if (ended || !p.starts_with('-')) && path.is_none() => {
                        path = Some(p.to_string())
                    }
                    other => return refuse(format!("scp: argument `{other}` is not allowed")),
                }
            }
            match (mode, path) {
                (Some(sink), Some(path)) => Ok(Request::Scp { sink, path }),
                _ => refuse("scp: only `scp -t PATH` and `scp -f PATH` are served"),
            }
        }
        [cmd, ..] => refuse(format!(
            "`{cmd}` is not an allowed command (this account only accepts crash dumps; no shell)"
        )),
        [] => refuse("no command given"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Request {
        parse(line).unwrap_or_else(|e| panic!("{line:?} refused: {e}"))
    }
    fn no(line: &str) -> String {
        match parse(line) {
            Ok(r) => panic!("{line:?} accepted as {r:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn debian_kdump_tools_sequence() {
        let d = "/var/crash/198.18.0.11-202612020425";
        assert_eq!(
            ok(&format!("mkdir -p {d}")),
            Request::Mkdir { path: d.into() }
        );
        assert_eq!(
            ok(&format!("dd of={d}/dump-incomplete")),
            Request::WriteStdin {
                path: format!("{d}/dump-incomplete")
            }
        );
        assert_eq!(
            ok(&format!("mv {d}/dump-incomplete {d}/dump.202612020425")),
            Request::Rename {
                from: format!("{d}/dump-incomplete"),
                to: format!("{d}/dump.202612020425")
            }
        );
        assert_eq!(
            ok(&format!("scp -t {d}")),
            Request::Scp {
                sink: true,
                path: d.into()
            }
        );
        assert_eq!(ok("/usr/lib/openssh/sftp-server"), Request::Sftp);
        assert_eq!(ok("internal-sftp"), Request::Sftp);
        assert_eq!(
            ok("/usr/libexec/openssh/sftp-server -l INFO"),
            Request::Sftp
        );
    }

    #[test]
    fn rhel_kdumpctl_and_dracut_sequence() {
        let d = "/var/crash/198.18.0.12-2026-12-02-04:25:01";
        assert_eq!(
            ok("mkdir -p /var/crash"),
            Request::Mkdir {
                path: "/var/crash".into()
            }
        );
        assert_eq!(
            ok("mktemp -dqp /var/crash"),
            Request::MkTemp {
                base: "/var/crash".into()
            }
        );
        assert_eq!(
            ok("rmdir /var/crash/tmp.AbCdEf1234"),
            Request::Rmdir {
                path: "/var/crash/tmp.AbCdEf1234".into()
            }
        );
        assert_eq!(
            ok("df --output=avail /var/crash"),
            Request::Df {
                path: "/var/crash".into()
            }
        );
        assert_eq!(
            ok("df --output=avail /var/crash | tail -1"),
            Request::Df {
                path: "/var/crash".into()
            }
        );
        assert_eq!(
            ok(&format!(
                "umask 0077 && dd bs=512 of='{d}/vmcore-incomplete'"
            )),
            Request::WriteStdin {
                path: format!("{d}/vmcore-incomplete")
            }
        );
        assert_eq!(
            ok(&format!(
                "umask 0077 && dd of='{d}/vmcore-dmesg-incomplete.txt'"
            )),
            Request::WriteStdin {
                path: format!("{d}/vmcore-dmesg-incomplete.txt")
            }
        );
        assert_eq!(
            ok(&format!("mv '{d}/vmcore-incomplete' '{d}/vmcore.flat'")),
            Request::Rename {
                from: format!("{d}/vmcore-incomplete"),
                to: format!("{d}/vmcore.flat")
            }
        );
        assert_eq!(
            ok(&format!(
                "echo success kdump_test_id=1733113500-123 > {d}/vmcore-creation.status"
            )),
            Request::WriteText {
                path: format!("{d}/vmcore-creation.status"),
                text: "success kdump_test_id=1733113500-123".into()
            }
        );
        assert_eq!(
            ok(&format!("scp -f {d}/vmcore-creation.status")),
            Request::Scp {
                sink: false,
                path: format!("{d}/vmcore-creation.status")
            }
        );
        assert_eq!(
            ok(&format!("scp -v -d -t -- {d}/")),
            Request::Scp {
                sink: true,
                path: format!("{d}/")
            }
        );
    }

    #[test]
    fn netdump_magic_and_suse_cat() {
        assert_eq!(
            ok("echo 0123abcd89abcdef > /var/crash/magic/198.18.0.13"),
            Request::WriteText {
                path: "/var/crash/magic/198.18.0.13".into(),
                text: "0123abcd89abcdef".into()
            }
        );
        assert_eq!(
            ok("cat > /var/crash/198.18.0.13-x/vmcore"),
            Request::WriteStdin {
                path: "/var/crash/198.18.0.13-x/vmcore".into()
            }
        );
        assert_eq!(ok("probe"), Request::Probe);
    }

    #[test]
    fn shells_and_other_commands_are_refused() {
        for line in [
            "",
            "id",
            "sh -c id",
            "bash",
            "bash -i",
            "/bin/sh",
            "ls /var/crash",
            "cat /var/crash/events.jsonl",
            "rm -rf /var/crash",
            "mkdir -p /x; id",
            "mkdir -p /x && id",
            "mkdir -p $(id)",
            "mkdir -p `id`",
            "mkdir -p \"$HOME\"",
            "dd of=/x if=/etc/shadow",
            "dd of=/x of=/y",
            "dd",
            "cat /etc/shadow > /var/crash/x",
            "cat >> /var/crash/.ssh/authorized_keys2",
            "echo x >> /var/crash/x",
            "echo x > /a > /b",
            "mv -t /a /b",
            "mv a b c",
            "scp -r -t /var/crash",
            "scp -t",
            "scp -t -f /x",
            "scp -S evil -t /x",
            "umask 0 && dd of=/x",
            "umask 0077 && id",
            "df --output=avail /x | sh",
            "mkdir -p 'a\nb'",
            "mkdir -p 'unterminated",
            "mkdir -p a\\ b",
            "mkdir -p ~",
            "mkdir -p *",
            "mkdir -p /a /b",
            "mkdir -p -m 777 /a",
            "mktemp -d /var/crash",
            "sftp-server-evil",
        ] {
            no(line);
        }
        assert!(no("id").contains("not an allowed command"));
        assert!(no(&"a".repeat(MAX_COMMAND + 1)).contains("longer"));
    }

    #[test]
    fn quoting_is_literal() {
        assert_eq!(
            ok("mkdir -p '/var/crash/a b'"),
            Request::Mkdir {
                path: "/var/crash/a b".into()
            }
        );
        assert_eq!(
            ok("mkdir -p \"/var/crash/x\""),
            Request::Mkdir {
                path: "/var/crash/x".into()
            }
        );
        // A quoted `;` is a character of the path, not a command separator; the path policy
        // refuses it later.
        assert_eq!(
            ok("mkdir -p '/var/crash/a;id'"),
            Request::Mkdir {
                path: "/var/crash/a;id".into()
            }
        );
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        use proptest::prelude::*;
        proptest!(|(s in ".{0,300}")| { let _ = parse(&s); });
    }
}
