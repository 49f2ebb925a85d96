//! The remote command line for one step, and how to read what came back. Pure, no IO.

use std::time::Duration;

use super::shell::quote;

/// Grace between the remote `timeout`'s SIGTERM and its SIGKILL.
pub const KILL_AFTER_SECS: u64 = 5;
/// Extra local wait on top of the remote bound before a step counts as hung locally.
pub const LOCAL_GRACE: Duration = Duration::from_secs(5);

/// Runs `$2` under `sh -c`, bounded by coreutils `timeout` (`$1` seconds, SIGKILL
/// `KILL_AFTER_SECS` later) when the host has it. `timeout` signals its whole process group, so
/// children of the script die too. Hosts without `timeout` (very old coreutils) run unbounded
/// remotely; the local deadline still applies.
const WRAPPER: &str = "if command -v timeout >/dev/null 2>&1; then exec timeout -k KILL \"$1\" sh -c -- \"$2\"; else exec sh -c -- \"$2\"; fi";

/// Whole seconds for the remote `timeout` (rounded up, at least 1).
pub fn remote_secs(timeout: Duration) -> u64 {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    secs.max(1)
}

/// How long to wait locally before giving up on a step.
pub fn local_deadline(timeout: Duration) -> Duration {
    Duration::from_secs(remote_secs(timeout) + KILL_AFTER_SECS) + LOCAL_GRACE
}

/// The command line sshd hands to the login shell: `[sudo -n] sh -c WRAPPER sh SECS SCRIPT`,
/// every word quoted, so the script reaches `sh -c` byte for byte. Without `remote_bound` (a
/// read-only step, see [`super::RemoteCommand::read_only`]) it is `[sudo -n] sh -c -- SCRIPT`.
pub fn remote_line(script: &str, timeout: Duration, become_: bool, remote_bound: bool) -> String {
    let mut words: Vec<String> = Vec::new();
    if become_ {
        words.push("sudo".into());
        words.push("-n".into());
    }
    words.push("sh".into());
    words.push("-c".into());
    if remote_bound {
        words.push(quote(
            &WRAPPER.replace("KILL", &KILL_AFTER_SECS.to_string()),
        ));
        words.push("sh".into());
        words.push(remote_secs(timeout).to_string());
    } else {
        words.push("--".into());
    }
    words.push(quote(script));
    words.join(" ")
}

/// When a step run through `sudo -n` failed because sudo refused, sudo's reason.
pub fn become_failure(status: Option<i32>, stdout: &[u8], stderr: &[u8]) -> Option<String> {
    if !stdout.is_empty() {
        return None;
    }
    let err = String::from_utf8_lossy(stderr);
    // sudo may warn first (e.g. "sudo: unable to resolve host"), so look at every line.
    let mut lines = err.lines().map(str::trim).filter(|l| !l.is_empty());
    match status {
        Some(1) => {
            let refused = [
                "a password is required",
                "a terminal is required",
                "is not in the sudoers file",
                "is not allowed to execute",
                "may not run sudo",
                "account validation failure",
            ];
            lines
                .find(|l| {
                    (l.starts_with("sudo:") || l.contains("is not in the sudoers file"))
                        && refused.iter().any(|r| l.contains(r))
                })
                .map(str::to_string)
        }
        Some(127) => lines
            .find(|l| l.contains("sudo") && l.contains("not found"))
            .map(|l| format!("sudo is not installed on the host ({l})")),
        _ => None,
    }
}

/// True when the exit status says the remote `timeout` killed the step (124 after SIGTERM, 137
/// after SIGKILL) and the step did run for its whole allowance.
pub fn killed_by_remote_timeout(status: Option<i32>, elapsed: Duration, timeout: Duration) -> bool {
    matches!(status, Some(124) | Some(137)) && elapsed >= Duration::from_secs(remote_secs(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn secs_round_up() {
        assert_eq!(remote_secs(Duration::from_millis(1)), 1);
        assert_eq!(remote_secs(Duration::from_millis(1500)), 2);
        assert_eq!(remote_secs(Duration::from_secs(30)), 30);
        assert_eq!(remote_secs(Duration::ZERO), 1);
        assert_eq!(
            local_deadline(Duration::from_secs(10)),
            Duration::from_secs(20)
        );
    }

    /// The line is what sshd passes to `$SHELL -c`; run it through a local sh the same way.
    fn run_line(line: &str, stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(line)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    #[test]
    fn script_arrives_verbatim_with_stdin() {
        let script = "printf '%s|' \"$0\" \"it's\" '$HOME' \"`echo x`\"; echo; cat; exit 3";
        for bound in [true, false] {
            let out = run_line(
                &remote_line(script, Duration::from_secs(30), false, bound),
                b"in\0put",
            );
            assert_eq!(out.status.code(), Some(3), "remote bound: {bound}");
            assert_eq!(
                out.stdout, b"sh|it's|$HOME|x|\nin\0put",
                "remote bound: {bound}"
            );
        }
    }

    #[test]
    fn scripts_starting_with_a_dash_are_not_options() {
        for bound in [true, false] {
            let out = run_line(
                &remote_line(
                    "-x 2>/dev/null; echo ran",
                    Duration::from_secs(30),
                    false,
                    bound,
                ),
                b"",
            );
            assert_eq!(out.stdout, b"ran\n", "remote bound: {bound}");
        }
    }

    #[test]
    fn read_only_lines_start_no_timeout() {
        let line = remote_line("id", Duration::from_secs(5), false, false);
        assert_eq!(line, "sh -c -- id");
        let line = remote_line("id", Duration::from_secs(5), true, false);
        assert_eq!(line, "sudo -n sh -c -- id");
    }

    #[test]
    fn become_line_starts_with_sudo_n() {
        let line = remote_line("id", Duration::from_secs(5), true, true);
        assert!(line.starts_with("sudo -n sh -c "), "{line}");
        assert!(line.ends_with(" sh 5 id"), "{line}");
    }

    /// Whether `pid` is still a live process (a zombie waiting for its reaper counts as dead).
    fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => false,
            Ok(stat) => {
                let state = stat
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next());
                !matches!(state, Some("Z") | Some("X"))
            }
        }
    }

    #[test]
    fn local_timeout_wrapper_kills_the_process_group() {
        // The script's background child must die with it, not linger after the step "ended".
        // Its output goes elsewhere, so only the kill (not our pipe) can end it.
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!(
            "sleep 300 >/dev/null 2>&1 & echo $! > {}; wait",
            super::super::shell::single_quote(pidfile.to_str().unwrap())
        );
        let out = run_line(
            &remote_line(&script, Duration::from_secs(1), false, true),
            b"",
        );
        assert_eq!(out.status.code(), Some(124));
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Termination follows the signal asynchronously: give the kernel a bounded moment.
        let mut waited = 0;
        while alive(pid) && waited < 100 {
            std::thread::sleep(Duration::from_millis(100));
            waited += 1;
        }
        let lingering = alive(pid);
        if lingering {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        assert!(!lingering, "background child {pid} outlived the timeout");
    }

    #[test]
    fn sudo_refusals_are_recognised() {
        assert_eq!(
            become_failure(Some(1), b"", b"sudo: a password is required\n").as_deref(),
            Some("sudo: a password is required")
        );
        assert!(become_failure(Some(1), b"", b"bob is not in the sudoers file.\n").is_some());
        assert!(become_failure(Some(1), b"", b"cp: a password is required\n").is_none());
        assert!(become_failure(Some(1), b"out", b"sudo: a password is required\n").is_none());
        assert!(become_failure(Some(2), b"", b"sudo: a password is required\n").is_none());
        assert!(become_failure(Some(1), b"", b"grep: x: No such file\n").is_none());
        assert_eq!(
            become_failure(
                Some(1),
                b"",
                b"sudo: unable to resolve host h1: Temporary failure\nsudo: a password is required\n"
            )
            .as_deref(),
            Some("sudo: a password is required")
        );
        assert!(
            become_failure(Some(127), b"", b"sh: 1: sudo: not found\n")
                .unwrap()
                .contains("not installed")
        );
    }

    #[test]
    fn remote_timeout_needs_status_and_elapsed() {
        let t = Duration::from_secs(2);
        assert!(killed_by_remote_timeout(
            Some(124),
            Duration::from_secs(2),
            t
        ));
        assert!(killed_by_remote_timeout(
            Some(137),
            Duration::from_secs(8),
            t
        ));
        assert!(!killed_by_remote_timeout(
            Some(124),
            Duration::from_millis(100),
            t
        ));
        assert!(!killed_by_remote_timeout(
            Some(1),
            Duration::from_secs(9),
            t
        ));
    }
}
