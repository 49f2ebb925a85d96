//! Connection options for the ssh engine, and the rules for `ansible_ssh_common_args`.

use std::path::PathBuf;
use std::time::Duration;

/// How [`crate::ssh::connect`] reaches hosts. Defaults are safe for production: strict host-key
/// checking against `~/.ssh/known_hosts`, the user's own ssh config, keepalives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOptions {
    /// The known_hosts file to check host keys against. `None` = `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Accept (and record) keys of hosts not yet in known_hosts (`StrictHostKeyChecking=accept-new`).
    /// A key that CHANGED is refused regardless.
    pub accept_new_host_keys: bool,
    /// The ssh client config to read. `None` = the user's default (`~/.ssh/config` and
    /// `/etc/ssh/ssh_config`); tests pass an empty file so a developer's config never applies.
    pub ssh_config: Option<PathBuf>,
    /// TCP connect + handshake bound (`ConnectTimeout`, whole seconds, at least 1).
    pub connect_timeout: Duration,
    /// `ServerAliveInterval` (whole seconds, at least 1). A dead host is noticed after about
    /// three intervals (`ServerAliveCountMax` 3).
    pub keepalive_interval: Duration,
    /// Where control sockets live. `None` = `$XDG_RUNTIME_DIR/provision` or `/tmp/provision-<uid>`.
    /// Must be short: a unix socket path has at most 104 bytes on some systems.
    pub control_dir: Option<PathBuf>,
    /// At most this many commands run at once on one host (sshd `MaxSessions` is 10 by default).
    pub max_channels: usize,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            known_hosts: None,
            accept_new_host_keys: false,
            ssh_config: None,
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(5),
            control_dir: None,
            max_channels: 8,
        }
    }
}

/// Options from `ansible_ssh_common_args` that provision manages itself and so refuses, with why.
const MANAGED_OPTIONS: &[(&str, &str)] = &[
    (
        "stricthostkeychecking",
        "the host-key policy is provision's own: strict by default, --accept-new-host-keys to record keys of new hosts; a changed key is always refused",
    ),
    (
        "globalknownhostsfile",
        "set the known_hosts file with provision's --known-hosts option instead",
    ),
    (
        "knownhostscommand",
        "the host-key policy is provision's own; pin keys in a known_hosts file",
    ),
    (
        "controlmaster",
        "provision runs its own multiplexing master",
    ),
    ("controlpath", "provision runs its own multiplexing master"),
    (
        "controlpersist",
        "provision runs its own multiplexing master",
    ),
    (
        "batchmode",
        "provision never prompts; BatchMode is always on",
    ),
    (
        "host",
        "`Host` blocks belong in an ssh config file, not in -o",
    ),
    (
        "match",
        "`Match` blocks belong in an ssh config file, not in -o",
    ),
    (
        "include",
        "`Include` belongs in an ssh config file, not in -o",
    ),
];

/// Parses `ansible_ssh_common_args` (already split into words) into `(Key, Value)` pairs.
///
/// Only `-o Key=Value`, `-oKey=Value` (and ssh's `Key Value` spelling inside one word) are
/// honoured. Any other flag, an option provision manages itself (host-key policy, control
/// master, batch mode), or a value with a line break is an error that says why.
/// `StrictHostKeyChecking=yes` is accepted: it can only make the policy stricter, and is
/// reported through the returned `strict` flag.
pub fn parse_common_args(args: &[String]) -> Result<CommonArgs, String> {
    let mut parsed = CommonArgs::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let option = if arg == "-o" {
            it.next()
                .ok_or_else(|| {
                    "`-o` at the end of ansible_ssh_common_args has no option".to_string()
                })?
                .as_str()
        } else if let Some(rest) = arg.strip_prefix("-o") {
            rest
        } else {
            return Err(format!(
                "ansible_ssh_common_args: only `-o Key=Value` options are supported, got `{arg}`"
            ));
        };
        let option = option.trim();
        let (key, value) = option
            .split_once(|c: char| c == '=' || c.is_ascii_whitespace())
            .map(|(k, v)| {
                (
                    k.trim(),
                    v.trim_start_matches(|c: char| c == '=' || c.is_ascii_whitespace()),
                )
            })
            .ok_or_else(|| {
                format!("ansible_ssh_common_args: `-o {option}` has no value (expected Key=Value)")
            })?;
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "ansible_ssh_common_args: `{key}` in `-o {option}` is not an ssh option name"
            ));
        }
        if value.is_empty() || value.contains(['\n', '\r', '\0']) {
            return Err(format!(
                "ansible_ssh_common_args: the value of `-o {key}` must be one non-empty line"
            ));
        }
        let lower = key.to_ascii_lowercase();
        if lower == "stricthostkeychecking" && value.eq_ignore_ascii_case("yes") {
            parsed.strict = true;
            continue;
        }
        if lower == "userknownhostsfile" {
            // A pinned known_hosts file for this host (as Ansible inventories write it): checked
            // as strictly as --known-hosts, which it replaces for this host. One file only.
            if value.split_whitespace().count() != 1 {
                return Err(format!(
                    "ansible_ssh_common_args: `-o {key}={value}`: give exactly one known_hosts file"
                ));
            }
            if value == "/dev/null" {
                return Err(format!(
                    "ansible_ssh_common_args: `-o {key}={value}` is not accepted: it would disable host-key checking; pin the keys in a known_hosts file (or use --accept-new-host-keys once)"
                ));
            }
            parsed.known_hosts = Some(std::path::PathBuf::from(value));
            continue;
        }
        if let Some((_, why)) = MANAGED_OPTIONS.iter().find(|(k, _)| *k == lower) {
            return Err(format!(
                "ansible_ssh_common_args: `-o {key}={value}` is not accepted: {why}"
            ));
        }
        parsed.options.push((key.to_string(), value.to_string()));
    }
    Ok(parsed)
}

/// The honoured part of `ansible_ssh_common_args`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommonArgs {
    /// `(Key, Value)` in the order given (for ssh the first value of a key wins).
    pub options: Vec<(String, String)>,
    /// `StrictHostKeyChecking=yes` was given: never accept new keys for this host.
    pub strict: bool,
    /// `UserKnownHostsFile=FILE`: the known_hosts file for this host (instead of --known-hosts).
    pub known_hosts: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_is_strict_with_eight_channels() {
        let o = SshOptions::default();
        assert!(!o.accept_new_host_keys);
        assert_eq!(o.max_channels, 8);
        assert!(o.keepalive_interval >= Duration::from_secs(1));
    }

    #[test]
    fn honours_both_o_spellings() {
        let p = parse_common_args(&args(&[
            "-o",
            "ProxyJump=bastion",
            "-oServerAliveCountMax=5",
            "-o",
            "ProxyCommand ssh -W %h:%p gw",
        ]))
        .unwrap();
        assert_eq!(
            p.options,
            vec![
                ("ProxyJump".into(), "bastion".into()),
                ("ServerAliveCountMax".into(), "5".into()),
                ("ProxyCommand".into(), "ssh -W %h:%p gw".into()),
            ]
        );
        assert!(!p.strict);
    }

    #[test]
    fn user_known_hosts_file_pins_this_host() {
        let p = parse_common_args(&args(&[
            "-o",
            "UserKnownHostsFile=/var/lib/lab/known_hosts",
            "-o",
            "StrictHostKeyChecking=yes",
        ]))
        .unwrap();
        assert_eq!(
            p.known_hosts.as_deref(),
            Some(std::path::Path::new("/var/lib/lab/known_hosts"))
        );
        assert!(p.strict && p.options.is_empty());
        assert!(parse_common_args(&args(&["-o", "UserKnownHostsFile=/a /b"])).is_err());
        assert!(parse_common_args(&args(&["-o", "StrictHostKeyChecking=no"])).is_err());
    }

    #[test]
    fn rejects_other_flags() {
        let e = parse_common_args(&args(&["-J", "bastion"])).unwrap_err();
        assert!(e.contains("only `-o Key=Value`"), "{e}");
        assert!(parse_common_args(&args(&["-v"])).is_err());
        assert!(parse_common_args(&args(&["-o"])).is_err());
        assert!(parse_common_args(&args(&["-o", "NoValue"])).is_err());
    }

    #[test]
    fn refuses_to_weaken_host_key_checking() {
        for bad in [
            "StrictHostKeyChecking=no",
            "stricthostkeychecking=accept-new",
            "StrictHostKeyChecking=off",
            "UserKnownHostsFile=/dev/null",
            "GlobalKnownHostsFile=/dev/null",
            "KnownHostsCommand=/bin/true",
        ] {
            let e = parse_common_args(&args(&["-o", bad])).unwrap_err();
            assert!(e.contains("not accepted"), "{bad}: {e}");
        }
        let p = parse_common_args(&args(&["-o", "StrictHostKeyChecking=yes"])).unwrap();
        assert!(p.strict);
        assert!(p.options.is_empty());
    }

    #[test]
    fn refuses_managed_and_config_structure_options() {
        for bad in [
            "ControlPath=/tmp/x",
            "ControlMaster=no",
            "BatchMode=no",
            "Host=evil",
            "Match=all",
            "Include=/etc/passwd",
        ] {
            assert!(parse_common_args(&args(&["-o", bad])).is_err(), "{bad}");
        }
        assert!(parse_common_args(&args(&["-o", "ProxyCommand=a\nHost *"])).is_err());
        assert!(parse_common_args(&args(&["-o", "Bad-Key=1"])).is_err());
    }
}
