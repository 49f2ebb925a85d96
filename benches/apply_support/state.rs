//! The state every tool's cold run must leave behind: a sample of one client and the server,
//! normalized so that two fleets (different subnets, different generated keys) compare equal when
//! they were configured the same way.

use netdump_provision::resources::user::verify;
use netdump_provision::secret::Secret;

use super::{PASSWORD, PROVISION};
use crate::nshost::Fleet;

// Equivalence check

/// What one fleet looks like after a cold run, normalized so that two fleets (different
/// subnets) compare equal when they were configured the same way.
#[derive(Debug, PartialEq)]
pub struct Sample {
    pub sysconfig: String,
    pub sysctl_file: String,
    pub sysrq: String,
    pub known_hosts_has_server_keys: bool,
    pub key_mode: u32,
    pub user: String,
    pub password_ok: bool,
    pub dirs: Vec<(String, String, u32)>,
    pub authorized_keys: Vec<String>,
    pub authorized_keys_mode: u32,
    pub sshd_dropin: String,
    pub receiver_same: bool,
}

pub fn text(b: Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(&b.unwrap_or_default()).into_owned()
}

pub fn sample(fleet: &Fleet) -> Sample {
    let srv = fleet.host("srv");
    let c = fleet.host("c01");
    let srv_mac = srv
        .exec_ok("cat /sys/class/net/eth0/address")
        .trim()
        .to_string();
    let norm = |s: String| {
        s.replace(&srv.address.to_string(), "SERVER")
            .replace(&srv_mac, "SERVER-MAC")
    };
    let server_keys: Vec<String> = srv
        .exec_ok("for f in /etc/ssh/ssh_host_*_key.pub; do cut -d' ' -f1,2 \"$f\"; done")
        .lines()
        .map(|k| format!("{} {k}", srv.address))
        .collect();
    let kh = text(c.read_file("/etc/ssh/ssh_known_hosts"));
    let passwd = srv.exec("getent passwd netdump");
    let passwd = String::from_utf8_lossy(&passwd.stdout).trim().to_string();
    let f: Vec<&str> = passwd.split(':').collect();
    let user = if f.len() == 7 {
        format!("{}:{}:{}", f[0], f[5], f[6])
    } else {
        String::new()
    };
    let shadow = srv.exec_ok("awk -F: '$1==\"netdump\" {print $2}' /etc/shadow");
    let uid_of = |u: u32| {
        srv.exec_ok(&format!("getent passwd {u} | cut -d: -f1"))
            .trim()
            .to_string()
    };
    let dirs = [
        "/var/crash",
        "/var/crash/.ssh",
        "/var/crash/magic",
        "/var/crash/scripts",
    ]
    .iter()
    .map(|p| match srv.stat(p) {
        Some((u, _, m)) => (p.to_string(), uid_of(u), m & 0o7777),
        None => (p.to_string(), "missing".into(), 0),
    })
    .collect();
    let mut authorized_keys: Vec<String> = text(srv.read_file("/var/crash/.ssh/authorized_keys2"))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            // The key material differs per fleet; keep the shape: options, type, tag.
            let (opts, material, tag) = netdump_provision::sink::identity::split_key_line(l)
                .unwrap_or_else(|| (l.to_string(), String::new(), String::new()));
            let from = fleet.hosts().iter().fold(opts, |acc, h| {
                acc.replace(&format!("\"{}\"", h.address), &format!("\"{}\"", h.name))
                    .replace(
                        &format!("--ip {}\"", h.address),
                        &format!("--ip {}\"", h.name),
                    )
            });
            // The key must be the client's own public key.
            let name = tag.trim_start_matches("netdump-provision:");
            let own = text(
                fleet
                    .host(name)
                    .read_file("/etc/sysconfig/netdump_id_dsa.pub"),
            );
            let own: Vec<&str> = own.split_whitespace().take(2).collect();
            let matches = own.join(" ") == material;
            let ty = material.split_whitespace().next().unwrap_or("").to_string();
            format!("{from} {ty} {tag} own-key={matches}")
        })
        .collect();
    authorized_keys.sort();
    Sample {
        sysconfig: norm(text(c.read_file("/etc/sysconfig/netdump"))),
        sysctl_file: text(c.read_file("/etc/sysctl.d/90-netdump-provision.conf")),
        sysrq: c.exec_ok("cat /proc/sys/kernel/sysrq").trim().to_string(),
        known_hosts_has_server_keys: !server_keys.is_empty()
            && server_keys.iter().all(|k| kh.lines().any(|l| l == k)),
        key_mode: c
            .stat("/etc/sysconfig/netdump_id_dsa")
            .map(|s| s.2 & 0o777)
            .unwrap_or(0),
        user,
        password_ok: verify(&Secret::new(PASSWORD), shadow.trim()),
        dirs,
        authorized_keys,
        authorized_keys_mode: srv
            .stat("/var/crash/.ssh/authorized_keys2")
            .map(|s| s.2 & 0o777)
            .unwrap_or(0),
        sshd_dropin: text(srv.read_file("/etc/ssh/sshd_config.d/netdump-provision.conf")),
        receiver_same: srv.read_file("/usr/local/sbin/netdump-provision")
            == std::fs::read(PROVISION).ok(),
    }
}
