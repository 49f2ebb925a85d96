//! Roles turn settings + facts into the resources a host must have. They decide *what*;
//! resources decide *how*.

pub mod kdump_client;
pub mod netdump_client;
pub mod server;

use crate::facts::Facts;
use crate::resources::{KeyPair, Resource};
use crate::settings::{ClientFlavor, ClientSettings, KeyType};

/// The netdump service user, as netdump-server created it.
pub const NETDUMP_USER: &str = "netdump";
/// Tag on the lines this tool manages in authorized_keys2 (`<tag><client inventory name>`).
pub const KEY_TAG: &str = "netdump-provision:";
/// Where the embedded receiver binary is installed on servers.
pub const RECEIVER_BINARY: &str = "/usr/local/sbin/netdump-provision";
/// The dump sink is the same program, installed on every server whatever the receiver mode;
/// it is also netdump's login shell, since sshd runs forced commands through the user's shell.
pub const SINK_BINARY: &str = RECEIVER_BINARY;
pub const RECEIVER_UNIT: &str = "/etc/systemd/system/netdump-receiver.service";
pub const RECEIVER_SERVICE: &str = "netdump-receiver";
pub const SSHD_DROPIN: &str = "/etc/ssh/sshd_config.d/netdump-provision.conf";
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-netdump-provision.conf";

/// How a user stops us managing packages / services on a host where we cannot: the resources
/// name this remedy in their error, the roles (which know the inventory's variables) supply it.
pub const PACKAGES_OPT_OUT: &str = "set netdump_manage_packages: false for the host";
pub const SERVICES_OPT_OUT: &str = "set netdump_manage_services: false for the host";

/// A list of resources for one host, in converge order.
pub type Resources = Vec<Box<dyn Resource>>;

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("{host}: {detail}")]
    Invalid { host: String, detail: String },
    #[error("{host}: template: {source}")]
    Template {
        host: String,
        #[source]
        source: crate::templates::TemplateError,
    },
}

/// A client's key pair of a concrete type (never `Auto`; the roles decide that), tagged with
/// the client's inventory name. RSA keys are 3072 bits, as ssh-keygen makes them today.
pub fn keypair_of(path: &str, key_type: KeyType, host: &str) -> KeyPair {
    let (name, bits) = match key_type {
        KeyType::Ed25519 | KeyType::Auto => ("ed25519", None),
        KeyType::Rsa => ("rsa", Some(3072)),
        KeyType::Dsa => ("dsa", None),
    };
    KeyPair {
        path: path.into(),
        key_type: name.into(),
        bits,
        comment: format!("{KEY_TAG}{host}"),
    }
}

/// Every path a client's key pair may have once its facts are known: observed together with
/// the facts, so the key phase needs no round trip of its own to look.
pub fn client_key_paths(s: &ClientSettings) -> Vec<String> {
    let mut paths = Vec::new();
    if matches!(s.flavor, ClientFlavor::Netdump | ClientFlavor::Auto) {
        paths.push(netdump_client::KEY_PATH.to_string());
    }
    if matches!(s.flavor, ClientFlavor::Kdump | ClientFlavor::Auto) {
        paths.extend(kdump_client::key_paths(s));
    }
    paths
}

/// A client's public key on its way to the server's authorized_keys2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    /// Inventory name of the client.
    pub client: String,
    /// The client's address as the server sees it (for `from=`), when known.
    pub from: Option<String>,
    /// `type base64` (the client's own comment is dropped).
    pub key: String,
}

impl ClientKey {
    /// The authorized_keys2 line: restricted, bound to the client's address when known, tagged,
    /// and forced to run the dump sink (`sink_command`, see [`sink_command`]) with the client's
    /// identity as arguments (docs/server-layout.md).
    pub fn authorized_line(&self, sink_command: &str) -> String {
        let mut opts = String::from("restrict");
        let mut command = sink_command.to_string();
        if let Some(from) = &self.from {
            opts.push_str(&format!(",from=\"{from}\""));
            // Inventory names are tokens; only plain ones go into the command.
            if !self.client.is_empty()
                && self
                    .client
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                command.push_str(&format!(" --client {} --ip {from}", self.client));
            }
        }
        opts.push_str(&format!(",command=\"{command}\""));
        format!("{opts} {} {KEY_TAG}{}", self.key, self.client)
    }
}

/// The dump sink's command line on a server (without a client identity): what sshd's
/// ForceCommand runs, and what each key line's `command=` extends.
pub fn sink_command(s: &crate::settings::ServerSettings) -> String {
    format!(
        "{SINK_BINARY} dump-sink --dump-dir {} --min-free {} --keep-dumps {} --max-total {}",
        s.dump_dir.trim_end_matches('/'),
        s.min_free,
        s.keep_dumps,
        s.max_total
    )
}

/// The flavour a client really gets: `auto` picks netdump when the kernel has a netdump module.
pub fn effective_flavor(settings: &ClientSettings, facts: &Facts) -> ClientFlavor {
    match settings.flavor {
        ClientFlavor::Auto if facts.netdump_module => ClientFlavor::Netdump,
        ClientFlavor::Auto => ClientFlavor::Kdump,
        f => f,
    }
}

/// Clients pin their server's host keys; a server that offered none is an error for the client.
pub fn require_server_host_keys(
    s: &ClientSettings,
    server_host_keys: &[String],
) -> Result<(), RoleError> {
    if server_host_keys.is_empty() {
        return Err(RoleError::Invalid {
            host: s.host.clone(),
            detail: format!(
                "server {} offered no readable ssh host keys (/etc/ssh/ssh_host_*_key.pub) to pin",
                s.server
            ),
        });
    }
    Ok(())
}

/// `type base64` of an ssh public key line, dropping options and comment.
pub fn key_material(line: &str) -> Option<String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let i = fields
        .iter()
        .position(|f| f.starts_with("ssh-") || f.starts_with("ecdsa-") || f.starts_with("sk-"))?;
    let b64 = fields.get(i + 1)?;
    Some(format!("{} {}", fields[i], b64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_line_is_restricted_and_tagged() {
        let k = ClientKey {
            client: "c1".into(),
            from: Some("198.18.0.11".into()),
            key: "ssh-rsa AAAAB3".into(),
        };
        assert_eq!(
            k.authorized_line("/s dump-sink --dump-dir /d"),
            "restrict,from=\"198.18.0.11\",command=\"/s dump-sink --dump-dir /d --client c1 --ip 198.18.0.11\" ssh-rsa AAAAB3 netdump-provision:c1"
        );
        let odd = ClientKey {
            client: "c\"1".into(),
            ..k.clone()
        };
        assert!(
            odd.authorized_line("/s dump-sink")
                .contains(",command=\"/s dump-sink\" ")
        );
    }

    #[test]
    fn key_material_strips_options_and_comment() {
        assert_eq!(
            key_material("ssh-ed25519 AAAA root@c1").as_deref(),
            Some("ssh-ed25519 AAAA")
        );
        assert_eq!(
            key_material("restrict ssh-rsa BBBB x").as_deref(),
            Some("ssh-rsa BBBB")
        );
        assert_eq!(key_material("garbage"), None);
    }
}
