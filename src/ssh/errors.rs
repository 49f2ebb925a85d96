//! Turning what `ssh` printed when the master connection failed into a typed [`SshError`] with a
//! hint that says what to check.

use super::remote::{SshError, Target};

/// Classifies the master's log text (`ssh -E` output) of a failed connect.
pub fn classify_connect_failure(target: &Target, known_hosts: &str, log: &str) -> SshError {
    let host = target.name.clone();
    let address = format!("{}:{}", target.address, target.port);
    // Lines that say nothing about the failure.
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("Warning: Permanently added")
                && !l.chars().all(|c| c == '@')
        })
        .collect();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    let line_with = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .map(|l| l.trim_start_matches("ssh: ").to_string())
            .unwrap_or_default()
    };

    if has("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || lines
            .iter()
            .any(|l| l.contains("Host key for") && l.contains("has changed"))
    {
        return SshError::HostKeyChanged {
            host,
            address,
            known_hosts: known_hosts.to_string(),
        };
    }
    if has("host key is known for") || has("Host key verification failed") {
        return SshError::HostKeyUnknown {
            host,
            address,
            known_hosts: known_hosts.to_string(),
        };
    }
    let user = target.user.as_deref().unwrap_or("(ssh's default user)");
    let (reason, hint) = if has("Permission denied (") {
        (
            line_with("Permission denied ("),
            format!(
                "Check ansible_user ({user}) and the key (ansible_ssh_private_key_file{}): is its public key in that user's authorized_keys on the host?",
                target
                    .private_key_file
                    .as_ref()
                    .map(|p| format!(" = {}", p.display()))
                    .unwrap_or_default()
            ),
        )
    } else if has("Connection refused") {
        (
            line_with("Connection refused"),
            format!(
                "Nothing listens on port {}: is sshd running, and is ansible_port right?",
                target.port
            ),
        )
    } else if has("timed out") {
        (
            lines
                .iter()
                .find(|l| l.contains("timed out"))
                .map(|l| l.to_string())
                .unwrap_or_default(),
            "The host did not answer in time: is it down, still booting, or behind a firewall? Is ansible_host right?".to_string(),
        )
    } else if has("No route to host") || has("Network is unreachable") {
        (
            lines
                .iter()
                .find(|l| l.contains("No route to host") || l.contains("Network is unreachable"))
                .map(|l| l.to_string())
                .unwrap_or_default(),
            "The address is not reachable from here: is the host up and on this network? Is ansible_host right?".to_string(),
        )
    } else if has("Could not resolve hostname") {
        (
            line_with("Could not resolve hostname"),
            "Check ansible_host and DNS (or /etc/hosts).".to_string(),
        )
    } else if has("Too many authentication failures") {
        (
            line_with("Too many authentication failures"),
            "The ssh agent offered too many keys: set ansible_ssh_private_key_file so only that key is tried.".to_string(),
        )
    } else if has("Connection closed by")
        || has("Connection reset by")
        || has("kex_exchange_identification")
    {
        (
            lines.last().map(|l| l.to_string()).unwrap_or_default(),
            "sshd closed the connection before login: too many unauthenticated connections (sshd MaxStartups), or tcp wrappers / fail2ban blocking this machine?".to_string(),
        )
    } else {
        (
            lines
                .last()
                .map(|l| l.to_string())
                .unwrap_or_else(|| "ssh failed without saying why".to_string()),
            format!(
                "Run `ssh -vvv -p {} {}{}` to see why.",
                target.port,
                target
                    .user
                    .as_ref()
                    .map(|u| format!("{u}@"))
                    .unwrap_or_default(),
                target.address
            ),
        )
    };
    SshError::Connect {
        host,
        address,
        reason,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            name: "web1".into(),
            address: "198.18.0.10".into(),
            port: 22,
            user: Some("deploy".into()),
            private_key_file: Some("/keys/id".into()),
            become_: false,
            ssh_common_args: vec![],
        }
    }

    fn classify(log: &str) -> SshError {
        classify_connect_failure(&target(), "/kh", log)
    }

    #[test]
    fn changed_host_key() {
        let log = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r\n\
Host key for 198.18.0.10 has changed and you have requested strict checking.\r\n\
Host key verification failed.\r\n";
        let e = classify(log);
        assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e:?}");
        assert!(e.to_string().contains("ssh-keygen -R"));
        assert!(e.is_unreachable());
    }

    #[test]
    fn unknown_host_key() {
        let log = "No ED25519 host key is known for 198.18.0.10 and you have requested strict checking.\r\nHost key verification failed.\r\n";
        let e = classify(log);
        assert!(matches!(e, SshError::HostKeyUnknown { .. }), "{e:?}");
        assert!(e.to_string().contains("/kh"));
    }

    #[test]
    fn permission_denied_points_at_user_and_key() {
        let log = "Warning: Permanently added '198.18.0.10' (ED25519) to the list of known hosts.\r\ndeploy@198.18.0.10: Permission denied (publickey).\r\n";
        let e = classify(log);
        let SshError::Connect { reason, hint, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(reason, "deploy@198.18.0.10: Permission denied (publickey).");
        assert!(hint.contains("ansible_user (deploy)"));
        assert!(hint.contains("/keys/id"));
        assert!(
            e.to_string()
                .starts_with("web1: cannot connect to 198.18.0.10:22")
        );
    }

    #[test]
    fn refused_timed_out_unreachable() {
        for (log, hint_part) in [
            (
                "ssh: connect to host 198.18.0.10 port 22: Connection refused",
                "is sshd running",
            ),
            (
                "ssh: connect to host 198.18.0.10 port 22: Connection timed out",
                "is it down",
            ),
            ("Connection timed out during banner exchange", "is it down"),
            (
                "ssh: connect to host 198.18.0.10 port 22: No route to host",
                "not reachable",
            ),
            (
                "ssh: Could not resolve hostname nohost: Name or service not known",
                "DNS",
            ),
            ("something odd", "ssh -vvv -p 22 deploy@198.18.0.10"),
        ] {
            let e = classify(log);
            let SshError::Connect { hint, reason, .. } = &e else {
                panic!("{e:?}")
            };
            assert!(hint.contains(hint_part), "{log}: {hint}");
            assert!(!reason.is_empty());
            assert!(e.is_unreachable());
        }
    }
}
