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

pub struct ServerInputs<'a> {
    pub settings: &'a ServerSettings,
    pub facts: &'a Facts,
    /// Keys of this server's clients that are part of this run.
    pub client_keys: Vec<ClientKey>,
    /// Clients of this server that are outside this run: their lines stay untouched.
    pub keep: BTreeSet<String>,
    /// The receiver binary to install (embedded mode).
    pub receiver_binary: Option<Arc<Vec<u8>>>,
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
            let bin_file = File {
                path: RECEIVER_BINARY.into(),
                content: bin.as_ref().clone(),
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
                        "user": user, "binary": RECEIVER_BINARY, "listen": "0.0.0.0",
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
            if s.manage_services {
                r.push(Box::new(Service {
                    name: "netdump-server".into(),
                    init: i.facts.init,
                    enabled: Some(true),
                    running: true,
                    restart_on: vec![],
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
