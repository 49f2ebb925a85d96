//! The one interface the rest of the program uses to act on a host.

use std::time::Duration;

use async_trait::async_trait;

/// One remote step: a POSIX `sh` script, optional bytes on its stdin, and a deadline.
///
/// Secrets travel only on `stdin`, never in `script` (which ends up in the remote argv).
#[derive(Clone)]
pub struct RemoteCommand {
    /// What this step is, for progress and error messages ("facts", "observe", "converge
    /// file:/etc/sysconfig/netdump").
    pub step: String,
    /// The script, run as `sh -c SCRIPT` (through `sudo -n` when the host uses become).
    pub script: String,
    /// Bytes written to the script's stdin, then stdin is closed. `None` gives an empty stdin.
    pub stdin: Option<Vec<u8>>,
    /// Upper bound for the whole step, enforced on the remote side and locally.
    pub timeout: Duration,
    /// Whether the remote side enforces `timeout` too (coreutils `timeout`, which kills the
    /// step's whole process group). See [`RemoteCommand::read_only`].
    pub remote_bound: bool,
}

impl RemoteCommand {
    pub fn new(step: impl Into<String>, script: impl Into<String>) -> Self {
        RemoteCommand {
            step: step.into(),
            script: script.into(),
            stdin: None,
            timeout: Duration::from_secs(120),
            remote_bound: true,
        }
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A step that only reads, and starts nothing that waits on anyone (no lock, no input, no
    /// network beyond a bounded ping): the local deadline alone bounds it, and the script runs
    /// as `sh -c SCRIPT` without the remote `timeout` around it. That saves two programs per
    /// round trip, a third of what a no-op run starts on a host. What such a step could still
    /// hang on (a hung NFS mount) leaves its process in a state `timeout` cannot kill either.
    pub fn read_only(mut self) -> Self {
        self.remote_bound = false;
        self
    }
}

impl std::fmt::Debug for RemoteCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // stdin may hold secrets: show only its length.
        f.debug_struct("RemoteCommand")
            .field("step", &self.step)
            .field("script", &self.script)
            .field("stdin_len", &self.stdin.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field("remote_bound", &self.remote_bound)
            .finish()
    }
}

/// What a finished remote step returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status of the script; `None` when it was killed by a signal.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Transport-level failures. A script that ran and exited non-zero is *not* an error here: it
/// comes back as a [`CommandOutput`] with its status.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{host}: cannot connect to {address}: {reason}. {hint}")]
    Connect {
        host: String,
        address: String,
        reason: String,
        hint: String,
    },
    #[error(
        "{host}: the host key of {address} is not in {known_hosts}; refusing to connect. Pin it (ssh-keyscan, then verify the fingerprint) or re-run with --accept-new-host-keys"
    )]
    HostKeyUnknown {
        host: String,
        address: String,
        known_hosts: String,
    },
    #[error(
        "{host}: the host key of {address} has CHANGED since it was recorded in {known_hosts}; refusing to connect. If the host was reinstalled, remove the old key with `ssh-keygen -R {address} -f {known_hosts}` after verifying the new one"
    )]
    HostKeyChanged {
        host: String,
        address: String,
        known_hosts: String,
    },
    #[error("{host}: step '{step}' timed out after {secs}s; the host may be overloaded or hung")]
    Timeout {
        host: String,
        step: String,
        secs: u64,
    },
    #[error("{host}: connection lost during step '{step}': {reason}")]
    Disconnected {
        host: String,
        step: String,
        reason: String,
    },
    #[error(
        "{host}: step '{step}': privilege escalation failed: {reason}. Allow passwordless sudo for {user} (sudo -n) or connect as root"
    )]
    Become {
        host: String,
        step: String,
        user: String,
        reason: String,
    },
    #[error("{host}: step '{step}': {reason}")]
    Other {
        host: String,
        step: String,
        reason: String,
    },
}

impl SshError {
    /// True when the host could not be reached at all (recap: "unreachable", exit code 4).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SshError::Connect { .. }
                | SshError::HostKeyUnknown { .. }
                | SshError::HostKeyChanged { .. }
                | SshError::Disconnected { .. }
        )
    }
}

/// A host we can run steps on.
#[async_trait]
pub trait Remote: Send + Sync {
    /// Inventory name of the host, for messages.
    fn host(&self) -> &str;

    /// Runs one step to completion.
    async fn run(&self, cmd: RemoteCommand) -> Result<CommandOutput, SshError>;

    /// What an earlier run stored with [`Remote::remember`] over this same connection (a kept
    /// ssh master: same destination and settings, host key already checked), if anything.
    /// Only ever a hint: callers check it against what the host says now.
    fn recall(&self, _key: MemoKey) -> Option<String> {
        None
    }

    /// Stores `value` with the connection for later runs (nothing happens when the connection
    /// is not kept). Never secrets: it is a file on the control machine.
    fn remember(&self, _key: MemoKey, _value: &str) {}
}

/// What may be remembered with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoKey {
    /// The host's fact probe output, to plan the next run's observation before its facts arrive.
    Facts,
}

impl MemoKey {
    pub fn file_name(self) -> &'static str {
        match self {
            MemoKey::Facts => "memo-facts",
        }
    }
}

/// The most a remembered value may hold: a fact probe prints a few KiB.
pub const MAX_MEMO_BYTES: u64 = 256 * 1024;

/// How to reach one host: the inventory's connection variables, resolved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    /// Inventory name (`inventory_hostname`).
    pub name: String,
    /// `ansible_host`, or the inventory name.
    pub address: String,
    /// `ansible_port`, default 22.
    pub port: u16,
    /// `ansible_user`; `None` lets ssh pick (ssh config or the local user).
    pub user: Option<String>,
    /// `ansible_ssh_private_key_file`.
    pub private_key_file: Option<std::path::PathBuf>,
    /// `ansible_become`: run every step through `sudo -n`.
    pub become_: bool,
    /// `ansible_ssh_common_args`, split shell-style. Only `-o Key=Value` options are honoured.
    pub ssh_common_args: Vec<String>,
}

/// The inventory says how to reach a host; ssh keeps its own copy of it.
impl From<netdump_inventory::Connection> for Target {
    fn from(c: netdump_inventory::Connection) -> Self {
        Target {
            name: c.name,
            address: c.address,
            port: c.port,
            user: c.user,
            private_key_file: c.private_key_file,
            become_: c.become_,
            ssh_common_args: c.ssh_common_args,
        }
    }
}
