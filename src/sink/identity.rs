//! Who is on the other end, as sshd established it.
//!
//! Two sources, both written by root and neither by the client: the sink's own arguments
//! (`--client NAME --ip IP` in the key line's `command=`), or — when the sshd drop-in's
//! ForceCommand runs the sink without them — the public key sshd authenticated, which
//! `ExposeAuthInfo` writes to the file named by `SSH_USER_AUTH`, looked up among the managed
//! lines of the root-owned authorized_keys2 (tag `netdump-provision:NAME`, `from="IP"`).
//! The TCP peer address sshd reports (`SSH_CONNECTION`) must match the key's address.

use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use super::policy::Client;
use crate::roles::KEY_TAG;

/// What sshd put in the environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub original_command: Option<String>,
    pub user_auth: Option<String>,
    pub connection_ip: Option<IpAddr>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            original_command: std::env::var("SSH_ORIGINAL_COMMAND").ok(),
            user_auth: std::env::var("SSH_USER_AUTH").ok(),
            connection_ip: std::env::var("SSH_CONNECTION")
                .ok()
                .and_then(|c| c.split_whitespace().next().and_then(|a| a.parse().ok())),
        }
    }
}

fn read_small(path: &str, limit: u64) -> Result<(String, std::fs::Metadata), String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(
            rustix::fs::OFlags::NOFOLLOW.bits() as i32 | rustix::fs::OFlags::NONBLOCK.bits() as i32,
        )
        .open(path)
        .map_err(|e| format!("{path}: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("{path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{path} is not a regular file"));
    }
    let mut s = String::new();
    f.take(limit)
        .read_to_string(&mut s)
        .map_err(|e| format!("{path}: {e}"))?;
    Ok((s, meta))
}

/// Splits an authorized_keys line into (options, "type base64", comment).
pub fn split_key_line(line: &str) -> Option<(String, String, String)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    // Options end at the first unquoted space.
    let mut in_q = false;
    let mut end = 0;
    let is_type =
        |s: &str| s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-");
    let (opts, rest) = if is_type(line) {
        ("", line)
    } else {
        for (i, c) in line.char_indices() {
            match c {
                '"' => in_q = !in_q,
                ' ' | '\t' if !in_q => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        if end == 0 {
            return None;
        }
        (&line[..end], line[end..].trim_start())
    };
    let mut f = rest.split_whitespace();
    let ty = f.next()?;
    let b64 = f.next()?;
    let comment: Vec<&str> = f.collect();
    Some((opts.to_string(), format!("{ty} {b64}"), comment.join(" ")))
}

/// The value of `from="…"` in an options field.
pub fn from_option(opts: &str) -> Option<&str> {
    let i = opts.find("from=\"")?;
    let rest = &opts[i + 6..];
    rest.split('"').next()
}

/// Finds the managed line for `key` ("type base64"): (client name, address).
pub fn lookup(keys_text: &str, key: &str) -> Result<(String, IpAddr), String> {
    for line in keys_text.lines() {
        let Some((opts, material, comment)) = split_key_line(line) else {
            continue;
        };
        if material != key {
            continue;
        }
        let Some(name) = comment.strip_prefix(KEY_TAG) else {
            return Err("this key is not managed by provision apply".into());
        };
        let ip = from_option(&opts)
            .and_then(|f| f.parse::<IpAddr>().ok())
            .ok_or_else(|| format!("the key of {name} is not bound to one address (from=)"))?;
        return Ok((name.to_string(), ip));
    }
    Err("the authenticated key is not in the managed key list".into())
}

/// Establishes the client's identity, or says why not.
pub fn establish(
    client: Option<&str>,
    ip: Option<IpAddr>,
    keys_path: &str,
    dump_dir: &str,
    env: &Env,
) -> Result<Client, String> {
    let c = match (client, ip) {
        (Some(name), Some(ip)) => Client {
            name: name.to_string(),
            ip,
        },
        _ => {
            let auth = env.user_auth.as_deref().ok_or(
                "no client identity: sshd gave neither --client/--ip nor SSH_USER_AUTH (ExposeAuthInfo)",
            )?;
            let dd = format!("{}/", dump_dir.trim_end_matches('/'));
            if !auth.starts_with('/') || auth.starts_with(&dd) || auth.contains("/../") {
                return Err("SSH_USER_AUTH does not name sshd's file".into());
            }
            let (text, _) = read_small(auth, 64 * 1024)?;
            let key = text
                .lines()
                .filter_map(|l| l.strip_prefix("publickey "))
                .next_back()
                .ok_or("sshd reports no public key authentication")?
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let (keys, meta) = read_small(keys_path, 4 << 20)?;
            if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
                return Err(format!(
                    "{keys_path} must be owned by root and writable by root only"
                ));
            }
            let (name, ip) = lookup(&keys, &key)?;
            Client { name, ip }
        }
    };
    if let Some(peer) = env.connection_ip
        && peer != c.ip
        && !(peer.is_loopback() && c.ip.is_loopback())
    {
        return Err(format!(
            "{} connected from {peer}, but its key is bound to {}",
            c.name, c.ip
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = "\
ssh-ed25519 AAAAunmanaged someone@else
restrict,from=\"198.18.0.11\",command=\"/usr/local/sbin/netdump-provision dump-sink --client c1 --ip 198.18.0.11\" ssh-ed25519 AAAAc1 netdump-provision:c1
restrict,from=\"198.18.0.12\" ssh-rsa AAAAc2 netdump-provision:c2
";

    #[test]
    fn looks_up_managed_keys_only() {
        assert_eq!(
            lookup(KEYS, "ssh-ed25519 AAAAc1").unwrap(),
            ("c1".into(), "198.18.0.11".parse().unwrap())
        );
        assert_eq!(lookup(KEYS, "ssh-rsa AAAAc2").unwrap().0, "c2");
        assert!(lookup(KEYS, "ssh-ed25519 AAAAunmanaged").is_err());
        assert!(lookup(KEYS, "ssh-ed25519 AAAAnope").is_err());
    }

    #[test]
    fn identity_from_exposed_auth_info() {
        let t = tempfile::tempdir().unwrap();
        let keys = t.path().join("authorized_keys2");
        std::fs::write(&keys, KEYS).unwrap();
        let auth = t.path().join("sshauth.x");
        std::fs::write(&auth, "publickey ssh-ed25519 AAAAc1\n").unwrap();
        let env = Env {
            original_command: None,
            user_auth: Some(auth.to_str().unwrap().into()),
            connection_ip: Some("198.18.0.11".parse().unwrap()),
        };
        let dd = "/var/crash";
        let c = establish(None, None, keys.to_str().unwrap(), dd, &env).unwrap();
        assert_eq!(c.name, "c1");
        // From another address: refused.
        let mut e2 = env.clone();
        e2.connection_ip = Some("198.18.0.12".parse().unwrap());
        assert!(establish(None, None, keys.to_str().unwrap(), dd, &e2).is_err());
        // No identity at all: refused.
        assert!(establish(None, None, keys.to_str().unwrap(), dd, &Env::default()).is_err());
        // An auth file inside the dump directory is not sshd's.
        let e3 = Env {
            user_auth: Some(format!("{}/x", t.path().display())),
            ..env.clone()
        };
        assert!(
            establish(
                None,
                None,
                keys.to_str().unwrap(),
                t.path().to_str().unwrap(),
                &e3
            )
            .is_err()
        );
        // Arguments win, and are checked against the peer too.
        let c = establish(
            Some("c9"),
            Some("198.18.0.11".parse().unwrap()),
            "/nonexistent",
            dd,
            &env,
        )
        .unwrap();
        assert_eq!(c.name, "c9");
    }
}
