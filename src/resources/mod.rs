//! Resources: each observes current state on a host (a shell snippet), computes what must change
//! (pure), and converges with one remote step. They know nothing about netdump.
//!
//! Observation is batched: [`batch::observe_script`] joins every resource's snippet into one
//! remote script per host and [`batch::split`] cuts the answer back into per-resource sections,
//! so a no-op run costs one round trip per host.

pub mod batch;
pub mod diff;
pub mod exec;
pub mod file;
pub mod keypair;
pub mod lines;
pub mod package;
pub mod service;
pub mod sysctl;
pub mod user;

use std::collections::BTreeSet;
use std::time::Duration;

pub use exec::Exec;
pub use file::{Directory, File};
pub use keypair::KeyPair;
pub use lines::ManagedLines;
pub use package::Package;
pub use service::Service;
pub use sysctl::Sysctl;
pub use user::User;

/// What one resource's observation snippet printed (stdout+stderr) and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub text: String,
    pub status: i32,
}

impl Observed {
    /// `key=value` lines of the observation, first occurrence wins.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
    }
}

/// What the plan step knows about the run so far.
#[derive(Debug, Default, Clone)]
pub struct PlanContext {
    /// Ids of resources on this host that changed (or would change, in check mode) earlier in
    /// this run. Services restart when one of their triggers is in here.
    pub changed: BTreeSet<String>,
}

/// A change to make: what, why, and the one remote step that makes it.
#[derive(Clone)]
pub struct Change {
    /// Short human summary ("create", "mode 0644 -> 0600", "restart (netdump.conf changed)").
    pub summary: String,
    /// Unified diff for `--diff`; already masked for secrets.
    pub diff: Option<String>,
    pub script: String,
    /// Bytes for the converge step's stdin (file content, password hash): may be secret.
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Change")
            .field("summary", &self.summary)
            .field("diff", &self.diff)
            .field("script", &self.script)
            .field("stdin_len", &self.stdin.as_ref().map(Vec::len))
            .finish()
    }
}

impl Change {
    pub fn new(summary: impl Into<String>, script: impl Into<String>) -> Self {
        Change {
            summary: summary.into(),
            diff: None,
            script: script.into(),
            stdin: None,
            timeout: Duration::from_secs(120),
        }
    }

    pub fn with_diff(mut self, diff: Option<String>) -> Self {
        self.diff = diff;
        self
    }

    pub fn with_stdin(mut self, stdin: Vec<u8>) -> Self {
        self.stdin = Some(stdin);
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The result of planning one resource.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Already as desired.
    Ok,
    Change(Change),
}

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The observation could not be understood. `detail` never contains observed secrets.
    #[error("{id}: cannot read the current state: {detail}")]
    Observe { id: String, detail: String },
    /// The desired state cannot be reached on this host as configured.
    #[error("{id}: {detail}")]
    Invalid { id: String, detail: String },
}

/// A piece of desired state on one host.
pub trait Resource: Send + Sync {
    /// Stable id, unique on a host: `file:/etc/sysconfig/netdump`, `user:netdump`, ...
    fn id(&self) -> String;
    /// POSIX sh snippet printing the current state. Runs as part of one batched script, after
    /// [`file::path_prelude`].
    fn observe_script(&self) -> String;
    /// The path whose attributes the snippet asks `ndp_path` for: the batch reads them all
    /// with one `stat` up front. A snippet that is `ndp_path` runs in place and never waits,
    /// which is what the two methods below default to for such a resource.
    fn observed_path(&self) -> Option<&str> {
        None
    }
    /// Whether the snippet may run in the observation script's own shell rather than a
    /// subshell (a fork per resource): it neither exits nor changes the shell's options, traps,
    /// directory or descriptors, and sets only variables it assigns before reading them.
    fn observation_in_place(&self) -> bool {
        self.observed_path().is_some()
    }
    /// Whether the snippet may wait on something without a bound of its own (a lock, a daemon,
    /// an arbitrary command), so that its round trip needs the remote `timeout` (see
    /// `RemoteCommand::read_only`).
    fn observation_may_wait(&self) -> bool {
        self.observed_path().is_none()
    }
    /// Pure: compares the observation with the desired state.
    fn plan(&self, observed: &Observed, ctx: &PlanContext) -> Result<Plan, ResourceError>;
}

/// POSIX single-quote a string for a shell script (always quoted).
pub use crate::ssh::shell::single_quote as sh_quote;

/// Test helper: runs an observation snippet with the local `sh`, as sshd would on a host.
#[cfg(test)]
pub(crate) fn observe_local(script: &str) -> Observed {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{}{script}", file::path_prelude(&[])))
        .output()
        .expect("run sh");
    Observed {
        text: String::from_utf8_lossy(&out.stdout).into_owned(),
        status: out.status.code().unwrap_or(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_round_trips_through_sh() {
        for s in ["plain", "it's", "a b\nc", "$HOME `id` \\ \"q\"", ""] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn observed_fields() {
        let o = Observed {
            text: "type=file\nowner=root\nmode=644\nowner=x\n".into(),
            status: 0,
        };
        assert_eq!(o.field("owner"), Some("root"));
        assert_eq!(o.field("mode"), Some("644"));
        assert_eq!(o.field("nope"), None);
    }
}
