//! The kdump client (every current distribution): kdump's ssh target pointing at the netdump
//! server, a dedicated key pair, the server's host keys pinned, netconsole towards the receiver,
//! kernel.sysrq, and the crashkernel reservation.

use serde_json::json;

use super::netdump_client::{known_hosts, sysrq};
use super::{NETDUMP_USER, Resources, RoleError};
use crate::facts::Facts;
use crate::resources::service::InitSystem;
use crate::resources::{File, KeyPair, Package, Resource, Service};
use crate::settings::{ClientSettings, KeyType};
use crate::templates::Templates;

pub const NETCONSOLE_MODPROBE: &str = "/etc/modprobe.d/netdump-provision-netconsole.conf";
pub const NETCONSOLE_UNIT: &str = "/etc/systemd/system/netdump-netconsole.service";
pub const NETCONSOLE_SERVICE: &str = "netdump-netconsole";
pub const GRUB_DROPIN: &str = "/etc/default/grub.d/netdump-provision-crashkernel.cfg";

/// What a kdump client needs after it converged, as far as its boot is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterConverge {
    /// Nothing: memory is reserved for the capture kernel (or nothing is known about it).
    Ready,
    /// Nothing is reserved, `crashkernel=` is (or would be) in the boot configuration, and the
    /// run may not reboot: say so loudly.
    RebootRequired(String),
    /// Nothing is reserved and the run was allowed to reboot (`apply --reboot`).
    Reboot,
}

/// The crashkernel policy: a kdump client whose kernel reserved nothing for the capture kernel
/// (`/sys/kernel/kexec_crash_size` 0) cannot dump until it boots with `crashkernel=`.
/// `reboot` is `apply --reboot`; `check` is `--check` (never reboots).
pub fn after_converge(
    s: &ClientSettings,
    facts: &Facts,
    reboot: bool,
    check: bool,
) -> AfterConverge {
    if facts.kexec_crash_size != Some(0) {
        return AfterConverge::Ready;
    }
    if reboot && !check {
        return AfterConverge::Reboot;
    }
    AfterConverge::RebootRequired(format!(
        "no memory is reserved for the capture kernel (/sys/kernel/kexec_crash_size is 0): \
         crashkernel={} {} the boot configuration; REBOOT REQUIRED before kdump can work (or \
         re-run with --reboot)",
        s.kdump.crashkernel,
        if check {
            "would be written to"
        } else {
            "is in"
        }
    ))
}

/// Debian's kdump-tools, or the RHEL family's kdumpctl.
fn debian(facts: &Facts) -> bool {
    facts.is_debian_like()
}

fn key_path(s: &ClientSettings, facts: &Facts) -> String {
    s.kdump.ssh_key.clone().unwrap_or_else(|| {
        if debian(facts) {
            "/root/.ssh/netdump_kdump_id_ed25519".into()
        } else {
            "/root/.ssh/kdump_id_rsa".into()
        }
    })
}

/// Every path `key_path` may choose before the facts are known (observed with the facts).
pub fn key_paths(s: &ClientSettings) -> Vec<String> {
    match &s.kdump.ssh_key {
        Some(k) => vec![k.clone()],
        None => vec![
            "/root/.ssh/netdump_kdump_id_ed25519".into(),
            "/root/.ssh/kdump_id_rsa".into(),
        ],
    }
}

pub fn keypair(s: &ClientSettings, facts: &Facts) -> Result<KeyPair, RoleError> {
    let key_type = match s.key_type {
        KeyType::Auto if debian(facts) => KeyType::Ed25519,
        // RHEL's capture initramfs and kdumpctl expect an RSA key by default.
        KeyType::Auto => KeyType::Rsa,
        t => t,
    };
    Ok(super::keypair_of(&key_path(s, facts), key_type, &s.host))
}

fn render(
    t: &Templates,
    s: &ClientSettings,
    name: &str,
    ctx: serde_json::Value,
) -> Result<String, RoleError> {
    t.render(name, ctx).map_err(|source| RoleError::Template {
        host: s.host.clone(),
        source,
    })
}

/// The ssh client drop-in for the dump server (Debian kdump clients).
pub const SSH_CLIENT_DROPIN: &str = "/etc/ssh/ssh_config.d/netdump-provision.conf";

fn root_file(path: &str, content: String, mode: u32) -> File {
    File {
        path: path.into(),
        content: content.into_bytes(),
        owner: "root".into(),
        group: "root".into(),
        mode,
        secret: false,
    }
}

/// makedumpfile options for Debian's MAKEDUMP_ARGS: the collector without the program name and
/// without -F (kdump-tools adds it for ssh targets).
fn makedump_args(core_collector: &str) -> String {
    core_collector
        .split_whitespace()
        .skip_while(|w| *w == "makedumpfile")
        .filter(|w| *w != "-F")
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn resources(
    s: &ClientSettings,
    facts: &Facts,
    server_host_keys: &[String],
    templates: &Templates,
) -> Result<Resources, RoleError> {
    super::require_server_host_keys(s, server_host_keys)?;
    if s.manage_services && facts.init != InitSystem::Systemd {
        return Err(RoleError::Invalid {
            host: s.host.clone(),
            detail: "kdump clients are managed through systemd, and this host has no systemd; set netdump_manage_services: false".into(),
        });
    }
    let deb = debian(facts);
    let mut r: Resources = Vec::new();
    if s.manage_packages {
        let pkgs: &[&str] = if deb {
            &[
                "kdump-tools",
                "makedumpfile",
                "kexec-tools",
                "openssh-client",
            ]
        } else {
            &["kexec-tools", "openssh-clients"]
        };
        for p in pkgs {
            r.push(Box::new(Package {
                opt_out: super::PACKAGES_OPT_OUT,
                name: p.to_string(),
                manager: facts.pkg,
            }));
        }
    }
    let kp = keypair(s, facts)?;
    let kp_id = kp.id();
    let key = kp.path.clone();
    r.push(Box::new(kp));

    let kh = known_hosts(&s.server_address, server_host_keys);
    let kh_id = kh.id();
    r.push(Box::new(kh));

    // Debian's capture environment is the real root filesystem: its ssh reads the client
    // configuration, so the server gets patient, prompt-free, strictly checked connections.
    // RHEL's capture initramfs builds its own ssh environment, which this file does not reach.
    if deb && facts.ssh_config_include {
        r.push(Box::new(root_file(
            SSH_CLIENT_DROPIN,
            render(
                templates,
                s,
                "ssh-client-netdump.conf.j2",
                json!({"server_address": s.server_address}),
            )?,
            0o644,
        )));
    }

    let conf = if deb {
        root_file(
            "/etc/default/kdump-tools",
            render(
                templates,
                s,
                "kdump-tools.j2",
                json!({"dump_dir": s.dump_dir, "makedump_args": makedump_args(&s.kdump.core_collector),
                       "ssh_user": NETDUMP_USER, "server_address": s.server_address, "ssh_key": key}),
            )?,
            0o644,
        )
    } else {
        root_file(
            "/etc/kdump.conf",
            render(
                templates,
                s,
                "kdump.conf.j2",
                json!({"dump_dir": s.dump_dir, "core_collector": s.kdump.core_collector,
                       "ssh_user": NETDUMP_USER, "server_address": s.server_address, "ssh_key": key}),
            )?,
            0o644,
        )
    };
    let conf_id = conf.id();
    r.push(Box::new(conf));

    // The crashkernel reservation: written to the boot configuration when nothing is reserved
    // (it takes effect at the next boot; apply reports "reboot required").
    if facts.kexec_crash_size == Some(0) {
        let size = crate::resources::sh_quote(&format!("crashkernel={}", s.kdump.crashkernel));
        if deb {
            let dropin = root_file(
                GRUB_DROPIN,
                format!(
                    "# Managed by netdump-provision: memory for the kdump capture kernel.\n\
                     GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT crashkernel={}\"\n",
                    s.kdump.crashkernel
                ),
                0o644,
            );
            let dropin_id = dropin.id();
            r.push(Box::new(dropin));
            r.push(Box::new(crate::resources::Exec {
                name: "update-grub".into(),
                check: Some(format!(
                    "! command -v update-grub || grep -q -- {size} /boot/grub/grub.cfg"
                )),
                script: "update-grub".into(),
                on_change: vec![dropin_id],
            }));
        } else {
            r.push(Box::new(crate::resources::Exec {
                name: "grubby-crashkernel".into(),
                check: Some(format!("grubby --info=DEFAULT | grep -q -- {size}")),
                script: format!("grubby --update-kernel=ALL --args={size}"),
                on_change: vec![],
            }));
        }
    }

    r.extend(sysrq(s, facts, templates)?);

    if s.kdump.netconsole {
        let route = facts.route.as_ref();
        let dev = s.dev.clone().or_else(|| route.map(|r| r.dev.clone())).ok_or_else(|| {
            RoleError::Invalid {
                host: s.host.clone(),
                detail: format!(
                    "no route to the server {} was found for netconsole; set netdump_dev or fix routing",
                    s.server_address
                ),
            }
        })?;
        let script = root_file(
            NETCONSOLE_MODPROBE,
            render(
                templates,
                s,
                "netconsole-modprobe.conf.j2",
                json!({"dev": dev, "local_ip": route.and_then(|r| r.src.clone()),
                       "server_address": s.server_address, "port": s.kdump.netconsole_port,
                       "mac": route.and_then(|r| r.mac.clone()), "extended": s.kdump.netconsole_extended}),
            )?,
            0o644,
        );
        let script_id = script.id();
        r.push(Box::new(script));
        let unit = root_file(
            NETCONSOLE_UNIT,
            render(
                templates,
                s,
                "netconsole.service.j2",
                json!({"server_address": s.server_address, "port": s.kdump.netconsole_port,
                       "modprobe_conf": NETCONSOLE_MODPROBE}),
            )?,
            0o644,
        );
        let unit_id = unit.id();
        r.push(Box::new(unit));
        if s.manage_services {
            r.push(Box::new(Service {
                opt_out: super::SERVICES_OPT_OUT,
                name: NETCONSOLE_SERVICE.into(),
                init: facts.init,
                enabled: Some(true),
                running: true,
                restart_on: vec![script_id, unit_id.clone()],
                daemon_reload_on: vec![unit_id],
                reload: false,
                validate: None,
            }));
        }
    }

    if s.manage_services {
        r.push(Box::new(Service {
            opt_out: super::SERVICES_OPT_OUT,
            name: if deb {
                "kdump-tools".into()
            } else {
                "kdump".into()
            },
            init: facts.init,
            enabled: Some(true),
            running: true,
            restart_on: vec![conf_id, kh_id, kp_id],
            daemon_reload_on: vec![],
            reload: false,
            // RHEL's initramfs holds its own copy of the key and known_hosts: rebuild it.
            validate: if deb {
                None
            } else {
                Some("kdumpctl rebuild".into())
            },
        }));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::netdump_client::tests::client;
    use crate::settings::ClientFlavor;

    fn facts(os: &str) -> Facts {
        crate::facts::parse(&format!(
            "os_id={os}\nkernel=6.1.0-28-amd64\npkg=apt\ninit=systemd\nsysrq=438\nsysctl_d=yes\n\
             kexec_crash_size=0\nroute=198.19.0.10 dev ens3 src 198.19.0.11\n\
             neigh=198.19.0.10 dev ens3 lladdr 52:54:00:00:00:10 REACHABLE\nprobe_end=1\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_client_without_reserved_memory_reboots_only_when_allowed_and_not_in_check_mode() {
        let mut s = client();
        s.flavor = ClientFlavor::Kdump;
        let none = facts("debian");
        let mut reserved = none.clone();
        reserved.kexec_crash_size = Some(256 << 20);
        assert_eq!(
            after_converge(&s, &reserved, true, false),
            AfterConverge::Ready
        );
        assert_eq!(
            after_converge(&s, &none, true, false),
            AfterConverge::Reboot
        );
        let AfterConverge::RebootRequired(m) = after_converge(&s, &none, true, true) else {
            panic!("check mode never reboots");
        };
        assert!(
            m.contains("would be written to") && m.contains("REBOOT REQUIRED"),
            "{m}"
        );
        let AfterConverge::RebootRequired(m) = after_converge(&s, &none, false, false) else {
            panic!("no --reboot");
        };
        assert!(
            m.contains("crashkernel=") && m.contains("is in the boot"),
            "{m}"
        );
    }

    fn golden(name: &str, text: &str) {
        // Config files end with a newline (line-oriented parsers drop or join a last line
        // without one); UPDATE_GOLDEN must not be able to bless a file that does not.
        assert!(
            text.ends_with('\n'),
            "{name} does not end with a newline: {text:?}"
        );
        let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, text).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            text, want,
            "{name} changed; re-run with UPDATE_GOLDEN=1 if intended"
        );
    }

    #[test]
    fn debian_and_rhel_configs_match_golden_files() {
        let t = Templates::new(None).unwrap();
        let mut c = client();
        c.flavor = ClientFlavor::Kdump;
        let r = resources(&c, &facts("debian"), &["ssh-ed25519 AAAA".into()], &t).unwrap();
        let ids: Vec<String> = r.iter().map(|x| x.id()).collect();
        assert!(
            ids.contains(&"file:/etc/default/kdump-tools".to_string()),
            "{ids:?}"
        );
        assert!(ids.contains(&format!("file:{GRUB_DROPIN}")));
        assert!(ids.contains(&"service:kdump-tools".to_string()));
        golden(
            "kdump-tools.debian",
            &t.render(
                "kdump-tools.j2",
                json!({"dump_dir": "/var/crash", "makedump_args": makedump_args(&c.kdump.core_collector),
                       "ssh_user": "netdump", "server_address": "198.19.0.10",
                       "ssh_key": "/root/.ssh/netdump_kdump_id_ed25519"}),
            )
            .unwrap(),
        );
        let r = resources(&c, &facts("rhel"), &["ssh-ed25519 AAAA".into()], &t).unwrap();
        let ids: Vec<String> = r.iter().map(|x| x.id()).collect();
        assert!(ids.contains(&"file:/etc/kdump.conf".to_string()), "{ids:?}");
        golden(
            "kdump.conf.rhel",
            &t.render(
                "kdump.conf.j2",
                json!({"dump_dir": "/var/crash", "core_collector": c.kdump.core_collector,
                       "ssh_user": "netdump", "server_address": "198.19.0.10",
                       "ssh_key": "/root/.ssh/kdump_id_rsa"}),
            )
            .unwrap(),
        );
    }

    #[test]
    fn key_pairs_follow_the_distribution_unless_set() {
        let mut c = client();
        c.flavor = ClientFlavor::Kdump;
        let kp = keypair(&c, &facts("debian")).unwrap();
        assert_eq!(kp.path, "/root/.ssh/netdump_kdump_id_ed25519");
        assert_eq!(kp.key_type, "ed25519");
        let kp = keypair(&c, &facts("rhel")).unwrap();
        assert_eq!(
            (kp.path.as_str(), kp.key_type.as_str()),
            ("/root/.ssh/kdump_id_rsa", "rsa")
        );
        assert_eq!(kp.bits, Some(3072));
        // Every path keypair() may pick is observed with the facts.
        for os in ["debian", "rhel"] {
            assert!(key_paths(&c).contains(&keypair(&c, &facts(os)).unwrap().path));
        }
        c.key_type = KeyType::Ed25519;
        c.kdump.ssh_key = Some("/root/.ssh/lab".into());
        let kp = keypair(&c, &facts("rhel")).unwrap();
        assert_eq!(
            (kp.path.as_str(), kp.key_type.as_str()),
            ("/root/.ssh/lab", "ed25519")
        );
        assert_eq!(key_paths(&c), vec!["/root/.ssh/lab".to_string()]);
    }

    #[test]
    fn netconsole_options_match_golden_file() {
        let t = Templates::new(None).unwrap();
        golden(
            "netconsole-modprobe.conf",
            &t.render(
                "netconsole-modprobe.conf.j2",
                json!({"dev": "ens3", "local_ip": "198.19.0.11", "server_address": "198.19.0.10",
                       "port": 6666, "mac": "52:54:c6:13:00:0a", "extended": true}),
            )
            .unwrap(),
        );
    }

    #[test]
    fn makedump_args_drop_program_and_flatten_flag() {
        assert_eq!(
            makedump_args("makedumpfile -F -l --message-level 7 -d 31"),
            "-l --message-level 7 -d 31"
        );
        assert_eq!(makedump_args("-c -d 31"), "-c -d 31");
    }
}
