//! The dump server: the netdump user and its password, the dump directory layout,
//! authorized_keys2 with every client's key, the sshd drop-in, and the receiver.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;

use super::{
    ClientKey, KEY_TAG, NETDUMP_USER, RECEIVER_BINARY, RECEIVER_SERVICE, RECEIVER_UNIT, Resources,
    RoleError, SSHD_DROPIN,
};
use crate::facts::Facts;
use crate::resources::lines::LineOwner;
use crate::resources::service::InitSystem;
use crate::resources::{Directory, File, ManagedLines, Package, Service, User};
use crate::settings::{ReceiverMode, ServerSettings};
use crate::templates::Templates;

/// netdump-server's configuration file (`netdump_receiver: package`).
pub const PACKAGE_CONF: &str = "/etc/netdump.conf";

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
            name: "netdump-server".into(),
            manager: i.facts.pkg,
        }));
    }
    r.push(Box::new(User {
        name: user.clone(),
        uid: Some(s.uid),
        home: dump.clone(),
        shell: "/bin/bash".into(),
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
    r.push(dir(format!("{dump}/.ssh"), &user, 0o700));
    r.push(dir(format!("{dump}/magic"), &user, 0o700));
    // Hook scripts run as the receiver's user; root owns them so clients cannot plant any.
    r.push(dir(format!("{dump}/scripts"), "root", 0o750));

    let mut keys = i.client_keys.clone();
    keys.sort_by(|a, b| a.client.cmp(&b.client));
    r.push(Box::new(ManagedLines {
        path: format!("{dump}/.ssh/authorized_keys2"),
        owner: user.clone(),
        group: user.clone(),
        mode: 0o600,
        lines: keys.iter().map(ClientKey::authorized_line).collect(),
        line_owner: LineOwner::Tag {
            prefix: KEY_TAG.to_string(),
            keep: i.keep.clone(),
        },
    }));

    if i.facts.sshd_include {
        let dropin = tmpl(
            "sshd-netdump.conf.j2",
            json!({"user": user, "home": dump, "legacy": s.legacy_key_types}),
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
            let bin = i.receiver_binary.clone().ok_or_else(|| RoleError::Invalid {
                host: s.host.clone(),
                detail: "the embedded receiver needs this program's binary, which could not be read; set netdump_receiver: none or package".into(),
            })?;
            crate::receiver_binary::check(&bin.info, i.facts).map_err(|detail| {
                RoleError::Invalid {
                    host: s.host.clone(),
                    detail: format!("receiver binary {}: {detail}", bin.path.display()),
                }
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

    const COMMON: [&str; 8] = [
        "user:netdump",
        "dir:/var/crash",
        "dir:/var/crash/.ssh",
        "dir:/var/crash/magic",
        "dir:/var/crash/scripts",
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
                "file:/usr/local/sbin/netdump-provision",
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
            None,
        );
        let mut want = vec!["package:netdump-server".to_string()];
        want.extend(COMMON.iter().map(|s| s.to_string()));
        want.extend(["file:/etc/netdump.conf", "service:netdump-server"].map(String::from));
        assert_eq!(got, want);
        // No binary upload, no unit of ours.
        assert!(
            !got.iter()
                .any(|i| i.contains("netdump-provision") && i.starts_with("file:/usr"))
        );

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
        let parsed = crate::receiver::config::FileConfig::load(&conf).unwrap();
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
        let got = ids(&s, &facts("debian", "glibc 2.36"), None);
        let want: Vec<String> = COMMON[..7].iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want);
    }
}
