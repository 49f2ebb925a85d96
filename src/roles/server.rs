//! The dump server: the netdump user and its password, the dump directory layout,
//! authorized_keys2 with every client's key, the sshd drop-in, and the receiver.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;

use super::{
    ClientKey, KEY_TAG, NETDUMP_USER, RECEIVER_BINARY, RECEIVER_SERVICE, RECEIVER_UNIT, Resources,
    RoleError, SINK_BINARY, SSHD_DROPIN, sink_command,
};
use crate::facts::Facts;
use crate::resources::lines::LineOwner;
use crate::resources::service::InitSystem;
use crate::resources::{Directory, File, ManagedLines, Package, Service, User};
use crate::settings::{ReceiverMode, ServerSettings};
use crate::templates::Templates;

/// netdump-server's configuration file (`netdump_receiver: package`).
pub const PACKAGE_CONF: &str = "/etc/netdump.conf";

/// sshd's `MaxStartups start:rate:full`: past `start` unauthenticated connections sshd drops new
/// ones with probability `rate`%, rising to 100% at `full`.
///
/// Why the server sets it: kdump's ssh target opens a few connections per dump (mkdir, the
/// kernel log, the dump stream, the final rename), most of them single attempts, and a rack that
/// crashes at once logs in at once. sshd's default (10:30:100) then drops a third of the fleet
/// at key exchange, and with it their dumps (docs/server-layout.md, "Crash storms").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxStartups {
    pub start: u32,
    pub rate: u32,
    pub full: u32,
}

impl MaxStartups {
    /// sshd's own default.
    pub const DEFAULT: MaxStartups = MaxStartups {
        start: 10,
        rate: 30,
        full: 100,
    };
    /// Beyond this an inventory typo, not a fleet: sshd keeps one process per slot.
    const CEILING: u32 = 10_000;

    /// `sshd -T`'s value (`10:30:100`, or a single number meaning start = full). `None` for
    /// anything else: the value comes from the host and is not trusted.
    pub fn parse(v: &str) -> Option<MaxStartups> {
        let nums: Vec<u32> = v
            .trim()
            .split(':')
            .map(|p| p.parse::<u32>().ok().filter(|n| *n <= 1_000_000))
            .collect::<Option<_>>()?;
        match nums[..] {
            [n] => Some(MaxStartups {
                start: n,
                rate: 100,
                full: n,
            }),
            [start, rate, full] if rate <= 100 && start <= full => {
                Some(MaxStartups { start, rate, full })
            }
            _ => None,
        }
    }

    /// What a server with `clients` clients needs: every client may be in key exchange at
    /// once, twice over (a dump's connections overlap when sshd is slow), so nothing is dropped
    /// below twice the fleet; never less than what the host already allows.
    pub fn for_fleet(clients: usize, current: Option<&str>) -> MaxStartups {
        let twice = u32::try_from(clients)
            .unwrap_or(u32::MAX)
            .saturating_mul(2)
            .min(Self::CEILING);
        let wanted = MaxStartups {
            start: twice.max(Self::DEFAULT.start),
            rate: Self::DEFAULT.rate,
            full: twice.saturating_mul(2).max(Self::DEFAULT.full),
        };
        match current.and_then(MaxStartups::parse) {
            Some(c) => MaxStartups {
                start: wanted.start.max(c.start),
                // A lower rate drops fewer connections: keep the host's if it is lower.
                rate: wanted.rate.min(c.rate),
                full: wanted.full.max(c.full),
            },
            None => wanted,
        }
    }
}

impl std::fmt::Display for MaxStartups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.rate, self.full)
    }
}

pub struct ServerInputs<'a> {
    pub settings: &'a ServerSettings,
    pub facts: &'a Facts,
    /// Keys of this server's clients that are part of this run.
    pub client_keys: Vec<ClientKey>,
    /// Clients of this server that are outside this run: their lines stay untouched.
    pub keep: BTreeSet<String>,
    /// The receiver binary to install (embedded mode).
    pub receiver_binary: Option<Arc<crate::receiver_binary::ReceiverBinary>>,
    pub templates: &'a Templates,
}

pub fn resources(i: ServerInputs<'_>) -> Result<Resources, RoleError> {
    let s = i.settings;
    let host = s.host.clone();
    let tmpl = |name: &str, ctx: serde_json::Value| {
        i.templates
            .render(name, ctx)
            .map_err(|source| RoleError::Template {
                host: host.clone(),
                source,
            })
    };
    let mut r: Resources = Vec::new();
    let user = NETDUMP_USER.to_string();
    let dump = s.dump_dir.trim_end_matches('/').to_string();

    if s.receiver == ReceiverMode::Package && s.manage_packages {
        r.push(Box::new(Package {
            opt_out: super::PACKAGES_OPT_OUT,
            name: "netdump-server".into(),
            manager: i.facts.pkg,
        }));
    }
    // netdump's login shell is the dump sink: sshd runs every forced command through the
    // user's shell, and this one runs nothing but the sink (docs/server-layout.md).
    r.push(Box::new(User {
        name: user.clone(),
        uid: Some(s.uid),
        home: dump.clone(),
        shell: SINK_BINARY.into(),
        comment: "Network Crash Dump user".into(),
        password: s.password.clone(),
    }));
    let dir = |path: String, owner: &str, mode: u32| -> Box<Directory> {
        Box::new(Directory {
            path,
            owner: owner.to_string(),
            group: user.clone(),
            mode,
        })
    };
    r.push(dir(dump.clone(), &user, 0o700));
    // Only apply edits the key list: root owns it; sshd (reading as netdump) may read it, and
    // StrictModes accepts root-owned files that are not group- or world-writable.
    r.push(dir(format!("{dump}/.ssh"), "root", 0o750));
    r.push(dir(format!("{dump}/magic"), &user, 0o700));
    // Hook scripts run as the receiver's user; root owns them so clients cannot plant any.
    r.push(dir(format!("{dump}/scripts"), "root", 0o750));

    // The sink is this program; it is installed whatever the receiver mode.
    let bin = i.receiver_binary.clone().ok_or_else(|| RoleError::Invalid {
        host: s.host.clone(),
        detail: "the dump sink (every client key's forced command) is this program's binary, which could not be read; pass --receiver-binary FILE".into(),
    })?;
    crate::receiver_binary::check(&bin.info, i.facts).map_err(|detail| RoleError::Invalid {
        host: s.host.clone(),
        detail: format!("receiver binary {}: {detail}", bin.path.display()),
    })?;
    let bin_file = File {
        path: RECEIVER_BINARY.into(),
        content: bin.bytes.clone(),
        owner: "root".into(),
        group: "root".into(),
        mode: 0o755,
        secret: false,
    };
    let bin_id = crate::resources::Resource::id(&bin_file);
    r.push(Box::new(bin_file));

    let sink = sink_command(s);
    let mut keys = i.client_keys.clone();
    keys.sort_by(|a, b| a.client.cmp(&b.client));
    r.push(Box::new(ManagedLines {
        path: format!("{dump}/.ssh/authorized_keys2"),
        owner: "root".into(),
        group: user.clone(),
        mode: 0o640,
        lines: keys.iter().map(|k| k.authorized_line(&sink)).collect(),
        line_owner: LineOwner::Tag {
            prefix: KEY_TAG.to_string(),
            keep: i.keep.clone(),
        },
    }));

    if i.facts.sshd_include {
        let clients = i.client_keys.len() + i.keep.len();
        let max_startups =
            MaxStartups::for_fleet(clients, i.facts.sshd_max_startups.as_deref()).to_string();
        let dropin = tmpl(
            "sshd-netdump.conf.j2",
            json!({"user": user, "home": dump, "legacy": s.legacy_key_types, "sink": sink,
                   "max_startups": max_startups, "clients": clients}),
        )?;
        let f = File {
            path: SSHD_DROPIN.into(),
            content: dropin.into_bytes(),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            secret: false,
        };
        let id = crate::resources::Resource::id(&f);
        r.push(Box::new(f));
        if s.manage_services {
            r.push(Box::new(Service {
                opt_out: super::SERVICES_OPT_OUT,
                name: i.facts.ssh_service.clone(),
                init: i.facts.init,
                enabled: None,
                running: true,
                restart_on: vec![id],
                daemon_reload_on: vec![],
                reload: true,
                validate: Some("sshd -t".into()),
            }));
        }
    }

    match s.receiver {
        ReceiverMode::Embedded => {
            if s.manage_services {
                if i.facts.init != InitSystem::Systemd {
                    return Err(RoleError::Invalid {
                        host: s.host.clone(),
                        detail: "the embedded receiver is installed as a systemd service, and this host has no systemd; set netdump_manage_services: false and start `netdump-provision receiver` yourself, or use netdump_receiver: package".into(),
                    });
                }
                let unit = tmpl(
                    "netdump-receiver.service.j2",
                    json!({
                        "user": user, "binary": RECEIVER_BINARY, "listen": "[::]",
                        "port": s.port, "dump_dir": dump, "concurrent": s.concurrent_dumps,
                        "secure": s.secure, "space_check": s.space_check,
                    }),
                )?;
                let unit_file = File {
                    path: RECEIVER_UNIT.into(),
                    content: unit.into_bytes(),
                    owner: "root".into(),
                    group: "root".into(),
                    mode: 0o644,
                    secret: false,
                };
                let unit_id = crate::resources::Resource::id(&unit_file);
                r.push(Box::new(unit_file));
                r.push(Box::new(Service {
                    opt_out: super::SERVICES_OPT_OUT,
                    name: RECEIVER_SERVICE.into(),
                    init: i.facts.init,
                    enabled: Some(true),
                    running: true,
                    restart_on: vec![bin_id, unit_id.clone()],
                    daemon_reload_on: vec![unit_id],
                    reload: false,
                    validate: None,
                }));
            }
        }
        ReceiverMode::Package => {
            // The distribution's netdump-server reads /etc/netdump.conf at start-up.
            let conf = tmpl(
                "netdump-server.conf.j2",
                json!({
                    "port": s.port, "dump_dir": dump, "concurrent": s.concurrent_dumps,
                    "secure": s.secure, "space_check": s.space_check,
                }),
            )?;
            let conf_file = File {
                path: PACKAGE_CONF.into(),
                content: conf.into_bytes(),
                owner: "root".into(),
                group: "root".into(),
                mode: 0o644,
                secret: false,
            };
            let conf_id = crate::resources::Resource::id(&conf_file);
            r.push(Box::new(conf_file));
            if s.manage_services {
                r.push(Box::new(Service {
                    opt_out: super::SERVICES_OPT_OUT,
                    name: "netdump-server".into(),
                    init: i.facts.init,
                    enabled: Some(true),
                    running: true,
                    restart_on: vec![conf_id],
                    daemon_reload_on: vec![],
                    reload: false,
                    validate: None,
                }));
            }
        }
        ReceiverMode::None => {}
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver_binary::{BinaryInfo, ReceiverBinary};
    use crate::settings::PasswordSpec;

    fn settings(receiver: ReceiverMode) -> ServerSettings {
        ServerSettings {
            host: "srv".into(),
            address: "198.18.0.10".into(),
            port: 6666,
            dump_dir: "/var/crash".into(),
            password: PasswordSpec::Unset,
            receiver,
            concurrent_dumps: 4,
            secure: true,
            space_check: true,
            min_free: 256 << 20,
            keep_dumps: 5,
            max_total: 0,
            legacy_key_types: true,
            uid: 34,
            manage_packages: true,
            manage_services: true,
        }
    }

    fn facts(os: &str, glibc: &str) -> Facts {
        crate::facts::parse(&format!(
            "os_id={os}\nkernel=6.1.0\narch=x86_64\npkg=apt\ninit=systemd\nglibc={glibc}\n\
             sshd_include=yes\nssh_service=ssh\nprobe_end=1\n"
        ))
        .unwrap()
    }

    fn binary(is_static: bool) -> Arc<ReceiverBinary> {
        Arc::new(ReceiverBinary {
            path: "/build/provision".into(),
            bytes: b"\x7fELF...".to_vec(),
            info: BinaryInfo {
                arch: Some("x86_64"),
                is_static,
                glibc_needed: if is_static { None } else { Some((2, 34)) },
            },
        })
    }

    fn ids(s: &ServerSettings, f: &Facts, bin: Option<Arc<ReceiverBinary>>) -> Vec<String> {
        let t = Templates::new(None).unwrap();
        resources(ServerInputs {
            settings: s,
            facts: f,
            client_keys: vec![],
            keep: BTreeSet::new(),
            receiver_binary: bin,
            templates: &t,
        })
        .unwrap()
        .iter()
        .map(|r| r.id())
        .collect()
    }

    const COMMON: [&str; 9] = [
        "user:netdump",
        "dir:/var/crash",
        "dir:/var/crash/.ssh",
        "dir:/var/crash/magic",
        "dir:/var/crash/scripts",
        "file:/usr/local/sbin/netdump-provision",
        "lines:/var/crash/.ssh/authorized_keys2",
        "file:/etc/ssh/sshd_config.d/netdump-provision.conf",
        "service:ssh",
    ];

    #[test]
    fn embedded_receiver_installs_the_binary_and_its_unit() {
        let got = ids(
            &settings(ReceiverMode::Embedded),
            &facts("debian", "glibc 2.36"),
            Some(binary(false)),
        );
        let mut want: Vec<String> = COMMON.iter().map(|s| s.to_string()).collect();
        want.extend(
            [
                "file:/etc/systemd/system/netdump-receiver.service",
                "service:netdump-receiver",
            ]
            .map(String::from),
        );
        assert_eq!(got, want);
    }

    #[test]
    fn a_receiver_binary_that_cannot_run_there_is_refused_before_upload() {
        let t = Templates::new(None).unwrap();
        let s = settings(ReceiverMode::Embedded);
        let old = facts("rhel", "glibc 2.17");
        let e = resources(ServerInputs {
            settings: &s,
            facts: &old,
            client_keys: vec![],
            keep: BTreeSet::new(),
            receiver_binary: Some(binary(false)),
            templates: &t,
        })
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.starts_with("srv: receiver binary /build/provision: ")
                && e.contains("needs glibc 2.34")
                && e.contains("--receiver-binary"),
            "{e}"
        );
        // The static build goes anywhere.
        let got = ids(&s, &old, Some(binary(true)));
        assert!(got.contains(&"file:/usr/local/sbin/netdump-provision".to_string()));
    }

    #[test]
    fn package_receiver_installs_netdump_server_and_its_config() {
        let got = ids(
            &settings(ReceiverMode::Package),
            &facts("rhel", "glibc 2.3"),
            Some(binary(true)),
        );
        let mut want = vec!["package:netdump-server".to_string()];
        want.extend(COMMON.iter().map(|s| s.to_string()));
        want.extend(["file:/etc/netdump.conf", "service:netdump-server"].map(String::from));
        assert_eq!(got, want);
        // The binary goes there as the dump sink, but no unit of ours.
        assert!(!got.iter().any(|i| i.contains("netdump-receiver")));

        let t = Templates::new(None).unwrap();
        let mut s = settings(ReceiverMode::Package);
        s.port = 7777;
        s.secure = false;
        s.concurrent_dumps = 8;
        let text = t
            .render(
                "netdump-server.conf.j2",
                json!({"port": s.port, "dump_dir": "/srv/dumps", "concurrent": s.concurrent_dumps,
                       "secure": s.secure, "space_check": s.space_check}),
            )
            .unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/netdump.conf");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, &text).unwrap();
        }
        assert_eq!(
            text,
            std::fs::read_to_string(path).unwrap_or_default(),
            "templates/netdump-server.conf.j2 output changed; re-run with UPDATE_GOLDEN=1 if intended"
        );
        // Our own receiver reads the same file (--config): what we write, it understands.
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("netdump.conf");
        std::fs::write(&conf, &text).unwrap();
        let parsed = netdump_receiver::config::FileConfig::load(&conf).unwrap();
        assert_eq!(parsed.port, Some(7777));
        assert_eq!(parsed.max_concurrent_dumps, Some(8));
        assert_eq!(parsed.secure, Some(false));
        assert_eq!(parsed.space_check, Some(true));
        assert_eq!(
            parsed.dumpdir.as_deref(),
            Some(std::path::Path::new("/srv/dumps"))
        );
    }

    #[test]
    fn no_receiver_and_no_services() {
        let mut s = settings(ReceiverMode::None);
        s.manage_services = false;
        let got = ids(&s, &facts("debian", "glibc 2.36"), Some(binary(true)));
        let want: Vec<String> = COMMON[..8].iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn max_startups_grows_with_the_fleet_and_never_shrinks_the_host() {
        let m = |c, cur| MaxStartups::for_fleet(c, cur).to_string();
        assert_eq!(m(3, None), "10:30:100");
        assert_eq!(m(64, None), "128:30:256");
        assert_eq!(m(128, Some("10:30:100")), "256:30:512");
        // What the host has is never lowered: start, full up; rate down.
        assert_eq!(m(3, Some("500:10:600")), "500:10:600");
        assert_eq!(m(64, Some("200:50:210")), "200:30:256");
        // A single number means start = full, rate 100.
        assert_eq!(m(64, Some("300")), "300:30:300");
        // Re-running with our own value in place gives the same value (idempotent).
        let once = m(64, Some("10:30:100"));
        assert_eq!(m(64, Some(&once)), once);
        // Host values that do not parse are ignored, not trusted; absurd fleets are capped.
        for bad in [
            "",
            "10:30",
            "a:b:c",
            "10:130:100",
            "100:30:10",
            "-1",
            "1:2:3:4",
        ] {
            assert_eq!(MaxStartups::parse(bad), None, "{bad}");
        }
        assert_eq!(m(64, Some("garbage; rm -rf /")), "128:30:256");
        assert_eq!(m(1_000_000, None), "10000:30:20000");
    }

    #[test]
    fn clients_get_only_the_sink() {
        let t = Templates::new(None).unwrap();
        let s = settings(ReceiverMode::Embedded);
        let f = facts("debian", "glibc 2.36");
        let r = resources(ServerInputs {
            settings: &s,
            facts: &f,
            client_keys: vec![ClientKey {
                client: "c1".into(),
                from: Some("198.18.0.11".into()),
                key: "ssh-ed25519 AAAAk".into(),
            }],
            keep: BTreeSet::new(),
            receiver_binary: Some(binary(true)),
            templates: &t,
        })
        .unwrap();
        let dropin = t
            .render(
                "sshd-netdump.conf.j2",
                json!({"user": "netdump", "home": "/var/crash", "legacy": false,
                       "sink": sink_command(&s)}),
            )
            .unwrap();
        for want in [
            "ForceCommand /usr/local/sbin/netdump-provision dump-sink --dump-dir /var/crash --min-free 268435456 --keep-dumps 5 --max-total 0\n",
            "ExposeAuthInfo yes\n",
            "PermitTTY no\n",
            "AllowTcpForwarding no\n",
            "AllowStreamLocalForwarding no\n",
            "AllowAgentForwarding no\n",
            "X11Forwarding no\n",
            "PermitTunnel no\n",
            "PasswordAuthentication no\n",
        ] {
            assert!(dropin.contains(want), "{want} missing from\n{dropin}");
        }
        let dbg = format!("{:?}", r.iter().map(|x| x.id()).collect::<Vec<_>>());
        assert!(
            dbg.contains("lines:/var/crash/.ssh/authorized_keys2"),
            "{dbg}"
        );
    }
}
