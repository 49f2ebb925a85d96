//! The netdump client (RHEL 3/4-era kernels): /etc/sysconfig/netdump, its ssh key pair, the
//! server's host keys pinned, kernel.sysrq, and `service netdump`.

use serde_json::json;

use super::{Resources, RoleError, SYSCTL_FILE};
use crate::facts::Facts;
use crate::resources::lines::LineOwner;
use crate::resources::{File, KeyPair, ManagedLines, Package, Resource, Service, Sysctl};
use crate::settings::{ClientSettings, KeyType};
use crate::templates::Templates;

pub const SYSCONFIG: &str = "/etc/sysconfig/netdump";
pub const KEY_PATH: &str = "/etc/sysconfig/netdump_id_dsa";
pub const KNOWN_HOSTS: &str = "/etc/ssh/ssh_known_hosts";

/// The client's key pair. The init script expects the name `netdump_id_dsa` whatever the key
/// type. `auto` makes ed25519 when the client's OpenSSH has it (6.5+: fast to make, accepted by
/// every current sshd without the legacy drop-in) and RSA otherwise (RHEL 3/4's OpenSSH 3.x,
/// which current servers accept through the sshd drop-in).
pub fn keypair(s: &ClientSettings, facts: &Facts) -> KeyPair {
    let key_type = match s.key_type {
        KeyType::Auto if facts.has_ed25519() => KeyType::Ed25519,
        KeyType::Auto => KeyType::Rsa,
        t => t,
    };
    super::keypair_of(KEY_PATH, key_type, &s.host)
}

/// Resources that pin the server's host keys for `address`.
pub fn known_hosts(address: &str, server_host_keys: &[String]) -> ManagedLines {
    ManagedLines {
        path: KNOWN_HOSTS.into(),
        owner: "root".into(),
        group: "root".into(),
        mode: 0o644,
        lines: server_host_keys
            .iter()
            .map(|k| format!("{address} {k}"))
            .collect(),
        line_owner: LineOwner::Hosts(vec![address.to_string()]),
    }
}

/// kernel.sysrq, live and persistent (/etc/sysctl.d, or /etc/sysctl.conf on old systems).
pub fn sysrq(
    s: &ClientSettings,
    facts: &Facts,
    templates: &Templates,
) -> Result<Resources, RoleError> {
    let mut r: Resources = vec![Box::new(Sysctl {
        key: "kernel.sysrq".into(),
        value: s.sysrq.to_string(),
    })];
    if facts.sysctl_d {
        let text = templates
            .render("sysctl-netdump.conf.j2", json!({"sysrq": s.sysrq}))
            .map_err(|source| RoleError::Template {
                host: s.host.clone(),
                source,
            })?;
        r.push(Box::new(File {
            path: SYSCTL_FILE.into(),
            content: text.into_bytes(),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            secret: false,
        }));
    } else {
        r.push(Box::new(ManagedLines {
            path: "/etc/sysctl.conf".into(),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            lines: vec![format!("kernel.sysrq = {}", s.sysrq)],
            line_owner: LineOwner::SysctlKey("kernel.sysrq".into()),
        }));
    }
    Ok(r)
}

pub fn resources(
    s: &ClientSettings,
    facts: &Facts,
    server_host_keys: &[String],
    templates: &Templates,
) -> Result<Resources, RoleError> {
    super::require_server_host_keys(s, server_host_keys)?;
    let mut r: Resources = Vec::new();
    if s.manage_packages {
        r.push(Box::new(Package {
            opt_out: super::PACKAGES_OPT_OUT,
            name: "netdump".into(),
            manager: facts.pkg,
        }));
    }
    let kp = keypair(s, facts);
    let kp_id = kp.id();
    r.push(Box::new(kp));

    let dev = s
        .dev
        .clone()
        .or_else(|| facts.route.as_ref().map(|r| r.dev.clone()));
    let mut sysconfig = s.sysconfig.clone();
    if sysconfig.netdumpmacaddr.is_none() {
        sysconfig.netdumpmacaddr = facts.route.as_ref().and_then(|r| r.mac.clone());
    }
    if sysconfig.netdumpport.is_none() && s.port != 6666 {
        sysconfig.netdumpport = Some(s.port);
    }
    let text = templates
        .render(
            "netdump.j2",
            json!({"server_address": s.server_address, "dev": dev, "sysconfig": sysconfig}),
        )
        .map_err(|source| RoleError::Template {
            host: s.host.clone(),
            source,
        })?;
    let conf = File {
        path: SYSCONFIG.into(),
        content: text.into_bytes(),
        owner: "root".into(),
        group: "root".into(),
        mode: 0o644,
        secret: false,
    };
    let conf_id = conf.id();
    r.push(Box::new(conf));
    let kh = known_hosts(&s.server_address, server_host_keys);
    let kh_id = kh.id();
    r.push(Box::new(kh));
    r.extend(sysrq(s, facts, templates)?);
    if s.manage_services {
        r.push(Box::new(Service {
            opt_out: super::SERVICES_OPT_OUT,
            name: "netdump".into(),
            init: facts.init,
            enabled: Some(true),
            running: true,
            restart_on: vec![conf_id, kh_id, kp_id],
            daemon_reload_on: vec![],
            reload: false,
            validate: None,
        }));
    }
    Ok(r)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::settings::{ClientFlavor, KdumpSettings, NetdumpSysconfig};

    pub fn client() -> ClientSettings {
        ClientSettings {
            host: "c1".into(),
            flavor: ClientFlavor::Netdump,
            server: "srv".into(),
            server_address: "198.18.0.10".into(),
            port: 6666,
            dump_dir: "/var/crash".into(),
            dev: None,
            sysconfig: NetdumpSysconfig {
                netlogaddr: Some("NONE".into()),
                idletimeout: Some(600),
                ..Default::default()
            },
            sysrq: 1,
            kdump: KdumpSettings {
                core_collector: "makedumpfile -F -l --message-level 7 -d 31".into(),
                crashkernel: "256M".into(),
                ssh_key: None,
                netconsole: true,
                netconsole_extended: true,
                netconsole_port: 6666,
            },
            manage_packages: true,
            manage_services: true,
            key_type: KeyType::Auto,
        }
    }

    fn facts() -> Facts {
        crate::facts::parse(
            "os_id=rhel\nkernel=2.6.9-89.EL\npkg=up2date\ninit=sysv\nsysrq=0\n\
             route=198.18.0.10 dev eth1 src 198.18.0.11\nneigh=198.18.0.10 dev eth1 lladdr 52:54:00:aa:bb:cc REACHABLE\nprobe_end=1\n",
        )
        .unwrap()
    }

    #[test]
    fn sysconfig_matches_golden_file() {
        let t = Templates::new(None).unwrap();
        let r = resources(&client(), &facts(), &["ssh-ed25519 AAAA".into()], &t).unwrap();
        let ids: Vec<String> = r.iter().map(|x| x.id()).collect();
        assert_eq!(
            ids,
            vec![
                "package:netdump",
                "keypair:/etc/sysconfig/netdump_id_dsa",
                "file:/etc/sysconfig/netdump",
                "lines:/etc/ssh/ssh_known_hosts",
                "sysctl:kernel.sysrq",
                "lines:/etc/sysctl.conf",
                "service:netdump",
            ]
        );
        let text = t
            .render(
                "netdump.j2",
                json!({"server_address": "198.18.0.10", "dev": "eth1",
                       "sysconfig": {"netdumpport": null, "netdumpmacaddr": "52:54:00:aa:bb:cc",
                       "netdumpkeyexchange": null, "localport": null, "netlogaddr": "NONE",
                       "netlogport": null, "netlogmacaddr": null, "syslogaddr": null, "syslogport": null,
                       "syslogmacaddr": null, "idletimeout": 600, "mhz": null}}),
            )
            .unwrap();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/netdump.sysconfig"
        );
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, &text).unwrap();
        }
        let golden = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            text, golden,
            "templates/netdump.j2 output changed; re-run with UPDATE_GOLDEN=1 if intended"
        );
    }

    #[test]
    fn key_type_follows_the_clients_openssh() {
        let c = client();
        // RHEL 4's OpenSSH 3.9 cannot make ed25519 keys: RSA.
        let mut f = facts();
        f.ssh_version = Some((3, 9));
        let kp = keypair(&c, &f);
        assert_eq!((kp.key_type.as_str(), kp.bits), ("rsa", Some(3072)));
        assert_eq!(kp.path, KEY_PATH);
        assert_eq!(kp.comment, "netdump-provision:c1");
        // No ssh at all (or not OpenSSH): RSA, the type every ssh knows.
        f.ssh_version = None;
        assert_eq!(keypair(&c, &f).key_type, "rsa");
        // OpenSSH 6.5 and later: ed25519.
        f.ssh_version = Some((6, 5));
        let kp = keypair(&c, &f);
        assert_eq!((kp.key_type.as_str(), kp.bits), ("ed25519", None));
        // An explicit netdump_key_type wins.
        let mut c = client();
        c.key_type = KeyType::Rsa;
        assert_eq!(keypair(&c, &f).key_type, "rsa");
        c.key_type = KeyType::Dsa;
        assert_eq!(keypair(&c, &f).key_type, "dsa");
    }

    #[test]
    fn no_server_host_keys_is_an_error() {
        let t = Templates::new(None).unwrap();
        let e = resources(&client(), &facts(), &[], &t).err().unwrap();
        assert!(e.to_string().contains("srv"));
    }
}
