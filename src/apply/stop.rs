//! Why a host stopped during a run, typed by what went wrong; [`Stop::outcome`] turns it into
//! the recap's verdict (unreachable hosts count apart: exit code 4).

use crate::report::HostOutcome;
use crate::resources::ResourceError;
use crate::roles::RoleError;
use crate::ssh::SshError;

#[derive(Debug, thiserror::Error)]
pub enum Stop {
    /// The transport failed: connect, host key, timeout, lost connection, sudo.
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("{host}: not in the inventory (a client's server must be an inventory host)")]
    NotInInventory { host: String },
    /// The fact probe's output could not be read, three times in a row.
    #[error("{host}: facts: {reason}; check that the host has a POSIX sh and /proc")]
    Facts { host: String, reason: String },
    /// The role cannot build this host's desired state (bad settings, template error).
    #[error(transparent)]
    Role(#[from] RoleError),
    /// The batched observation came back unreadable three times. The raw output is never shown:
    /// it may hold observed secrets (password hashes).
    #[error(
        "{host}: observe: {reason} (exit {status:?}, {bytes} bytes of output); stderr: {stderr_tail}"
    )]
    Observe {
        host: String,
        reason: String,
        status: Option<i32>,
        bytes: usize,
        stderr_tail: String,
    },
    /// A resource's plan says the desired state cannot be reached on this host.
    #[error("{host}: {source}")]
    Plan {
        host: String,
        #[source]
        source: ResourceError,
    },
    /// A converge step ran and failed.
    #[error(
        "{host}: converge {resource} failed (exit {code}): {stderr_tail}. Fix the cause on the host and re-run; `--check --diff` previews what would change"
    )]
    Converge {
        host: String,
        resource: String,
        /// Exit status, or `signal`.
        code: String,
        /// The last lines of its stderr, or "no error output".
        stderr_tail: String,
    },
    #[error("{host}: did not come back armed within {secs}s after the reboot for crashkernel=")]
    RebootTimeout { host: String, secs: u64 },
    #[error("{host}: internal error (task panicked); please report it with the -v output")]
    Panicked { host: String },
}

impl Stop {
    /// A converge failure from the step's exit status and stderr.
    pub fn converge(host: &str, resource: &str, status: Option<i32>, stderr: &str) -> Stop {
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
        Stop::Converge {
            host: host.to_string(),
            resource: resource.to_string(),
            code: status.map_or_else(|| "signal".into(), |s| s.to_string()),
            stderr_tail: if tail.is_empty() {
                "no error output".into()
            } else {
                tail
            },
        }
    }

    /// True when the host could not be reached (or did not come back).
    pub fn is_unreachable(&self) -> bool {
        match self {
            Stop::Ssh(e) => e.is_unreachable(),
            Stop::RebootTimeout { .. } => true,
            _ => false,
        }
    }

    pub fn outcome(&self) -> HostOutcome {
        if self.is_unreachable() {
            HostOutcome::Unreachable(self.to_string())
        } else {
            HostOutcome::Failed(self.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_converge_failure_names_host_resource_exit_and_the_last_stderr_lines() {
        let stderr = "\n1\n2\n3\n4\n5\n6\n";
        let s = Stop::converge("c1", "file:/etc/x", Some(2), stderr);
        let m = s.to_string();
        assert!(
            m.starts_with("c1: converge file:/etc/x failed (exit 2): 2 | 3 | 4 | 5 | 6."),
            "{m}"
        );
        assert!(matches!(s.outcome(), HostOutcome::Failed(_)));
        let k = Stop::converge("c1", "x", None, "");
        assert!(
            k.to_string().contains("(exit signal): no error output"),
            "{k}"
        );
    }

    #[test]
    fn only_transport_failures_and_lost_reboots_count_as_unreachable() {
        let connect = Stop::from(SshError::Connect {
            host: "c1".into(),
            address: "198.18.0.9".into(),
            reason: "refused".into(),
            hint: "is sshd running?".into(),
        });
        assert!(
            matches!(connect.outcome(), HostOutcome::Unreachable(m) if m.starts_with("c1: cannot connect"))
        );
        let timeout = Stop::from(SshError::Timeout {
            host: "c1".into(),
            step: "observe".into(),
            secs: 5,
        });
        assert!(!timeout.is_unreachable());
        assert!(
            Stop::RebootTimeout {
                host: "c1".into(),
                secs: 9
            }
            .is_unreachable()
        );
    }
}
