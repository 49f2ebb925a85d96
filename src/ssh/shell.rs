//! Building POSIX shell text safely.
//!
//! Every piece of data that goes into a remote command line or script (paths, user names,
//! values) must pass through [`quote`], so that quotes, `$`, backquotes, globs and newlines in it
//! stay data.

/// Quotes `s` as one POSIX shell word: wrapped in single quotes, with each `'` written as `'\''`.
/// The result is literal for `sh`, `dash`, `bash`, `ksh` and `zsh`, whatever `s` contains.
/// Strings made only of characters no shell treats specially are returned unchanged.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b',' | b':' | b'+' | b'@' | b'%'
                )
        })
    // A leading '-' is harmless to the shell; keeping `=` out avoids `a=b` being read as an
    // assignment when the word comes first.
    {
        return s.to_string();
    }
    single_quote(s)
}

/// Like [`quote`], but always wrapped in single quotes, even when `s` needs none.
pub fn single_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quotes each word and joins them with spaces: a command line for `sh -c`.
pub fn join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    words
        .into_iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    #[test]
    fn plain_words_stay_unquoted() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote("/etc/sysconfig/netdump"), "/etc/sysconfig/netdump");
        assert_eq!(quote("user@host:22"), "user@host:22");
    }

    #[test]
    fn special_strings_are_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote("a=b"), "'a=b'");
        assert_eq!(quote("~"), "'~'");
        assert_eq!(quote("*"), "'*'");
        assert_eq!(quote("a\nb"), "'a\nb'");
        assert_eq!(quote("'"), "''\\'''");
    }

    #[test]
    fn join_quotes_each_word() {
        assert_eq!(join(["printf", "%s\n", "it's"]), "printf '%s\n' 'it'\\''s'");
    }

    /// Runs `sh -c "printf %s <quoted>"` and returns what the shell printed.
    fn round_trip(shell: &str, s: &str) -> Vec<u8> {
        let out = Command::new(shell)
            .arg("-c")
            .arg(format!("printf %s {}", quote(s)))
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell} failed for {s:?}");
        out.stdout
    }

    #[test]
    fn nasty_strings_round_trip_through_sh() {
        for s in [
            "",
            "'",
            "''",
            "\"",
            "\\",
            "\\'",
            "$(id)",
            "`id`",
            "${HOME}",
            "a\nb\n",
            "\t lead and trail \t",
            "*?[a]{b,c}",
            "-n",
            "--",
            "x; rm -rf /nonexistent",
            "!history",
            "ünïcødé ✓",
            "%s %d %%",
        ] {
            assert_eq!(round_trip("sh", s), s.as_bytes(), "{s:?}");
            if std::path::Path::new("/bin/bash").exists() {
                assert_eq!(round_trip("bash", s), s.as_bytes(), "bash {s:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_strings_round_trip_through_sh(s in "[^\u{0}]{0,40}") {
            prop_assert_eq!(round_trip("sh", &s), s.as_bytes());
        }

        #[test]
        fn quote_metacharacter_soup_round_trips(s in "['\"\\\\$`!*?;&|<>(){} \n\t~#=%a-]{0,24}") {
            prop_assert_eq!(round_trip("sh", &s), s.as_bytes());
        }
    }
}
