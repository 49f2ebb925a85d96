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
