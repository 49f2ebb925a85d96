//! Self-tests of the namespace-host harness (tests/support/nshost.rs).

use crate::support;

use std::process::Command;

use support::nshost::{Fleet, require_root_tools};

/// Runs the system ssh client against a fleet host (independent of our engine).
fn system_ssh(fleet: &Fleet, host: &str, user: &str, cmd: &str) -> std::process::Output {
    let h = fleet.host(host);
    Command::new("ssh")
        .arg("-F")
        .arg(fleet.ssh_config_path())
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            fleet.known_hosts_path().display()
        ))
        .args(["-o", "IdentitiesOnly=yes", "-i"])
        .arg(fleet.client_key_path())
        .args(["-l", user, &h.address.to_string(), "--", cmd])
        .output()
        .unwrap()
}

/// ssh to the host's address reaches that very host: its own hostname and eth0 address.
fn assert_answers_as_itself(fleet: &Fleet, h: &support::nshost::NsHost) {
    let out = system_ssh(
        fleet,
        &h.name,
        "root",
        "hostname; ip -4 -o addr show dev eth0",
    );
    assert!(
        out.status.success(),
        "ssh to {}: {}",
        h.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(h.name.as_str()), "{}", h.address);
    assert!(
        lines
            .next()
            .is_some_and(|l| l.contains(&format!(" {}/24", h.address))),
        "{}: {text}",
        h.name
    );
}

#[test]
fn fleet_hosts_are_isolated_and_reachable() {
    if !require_root_tools() {
        return;
    }
    let passwd_before = std::fs::read("/etc/passwd").unwrap();
    let shadow_before = std::fs::read("/etc/shadow").unwrap();
    let hosts_before = std::fs::read("/etc/hosts").unwrap();
    let hostname_before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let fleet = Fleet::start(&["alpha", "beta"]);

    // Reachable over ssh with the pinned host key, each with its own hostname and address.
    for h in fleet.hosts() {
        assert_answers_as_itself(&fleet, h);
    }

    // Namespace-private files: a user created on alpha exists there only.
    let alpha = fleet.host("alpha");
    fleet.add_sudo_user("alpha", "ndpuser");
    assert!(
        alpha
            .exec_ok("getent passwd ndpuser")
            .starts_with("ndpuser:")
    );
    assert!(
        !fleet
            .host("beta")
            .exec("getent passwd ndpuser")
            .status
            .success()
    );
    let shadow = String::from_utf8(alpha.read_file("/etc/shadow").unwrap()).unwrap();
    assert!(shadow.contains("ndpuser:"));
    assert_eq!(
        alpha.stat("/etc/sudoers.d/ndp-ndpuser"),
        Some((0, 0, 0o440))
    );
    assert_eq!(alpha.stat("/nonexistent"), None);
    // ... and can log in with the fleet key.
    let out = system_ssh(&fleet, "alpha", "ndpuser", "id -un; sudo -n id -u");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ndpuser\n0\n");

    // The fake sysrq knob and /var/crash tmpfs exist. The host writes a value the machine's own
    // knob (present on stock kernels, absent on some sandboxes) does not hold, so a write that
    // leaked through would show.
    let machine_sysrq = std::fs::read_to_string("/proc/sys/kernel/sysrq").ok();
    let sentinel = if machine_sysrq.as_deref() == Some("176\n") {
        "208"
    } else {
        "176"
    };
    assert_eq!(alpha.read_file("/proc/sys/kernel/sysrq").unwrap(), b"0\n");
    alpha.exec_ok(&format!(
        "echo {sentinel} > /proc/sys/kernel/sysrq; touch /var/crash/x /etc/ndp-marker"
    ));
    assert_eq!(
        alpha.read_file("/proc/sys/kernel/sysrq").unwrap(),
        format!("{sentinel}\n").into_bytes()
    );
    assert!(alpha.exec_ok("findmnt -no FSTYPE /var/crash").trim() == "tmpfs");
    assert!(
        alpha.read_file("/proc/sys/kernel/random/boot_id").unwrap()
            != fleet
                .host("beta")
                .read_file("/proc/sys/kernel/random/boot_id")
                .unwrap()
    );

    // The machine itself is untouched.
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd_before);
    assert_eq!(std::fs::read("/etc/shadow").unwrap(), shadow_before);
    assert_eq!(std::fs::read("/etc/hosts").unwrap(), hosts_before);
    assert!(!std::path::Path::new("/etc/ndp-marker").exists());
    assert!(!std::path::Path::new("/etc/sudoers.d/ndp-ndpuser").exists());
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/sysrq").ok(),
        machine_sysrq
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        hostname_before
    );

    // stop: unreachable; start_sshd: back, files kept.
    alpha.stop();
    assert!(!system_ssh(&fleet, "alpha", "root", "true").status.success());
    alpha.start_sshd();
    let out = system_ssh(&fleet, "alpha", "root", "cat /etc/ndp-marker && echo ok");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\n",
        "after restart: {}; sshd.log: {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(alpha.dir.join("sshd.log")).unwrap_or_default()
    );

    // A regenerated host key no longer matches known_hosts.
    alpha.regenerate_host_key();
    let out = system_ssh(&fleet, "alpha", "root", "true");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "after key change: {}; sshd.log: {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(alpha.dir.join("sshd.log")).unwrap_or_default()
    );

    let dir = fleet.path().to_path_buf();
    let netns = alpha.netns.clone();
    drop(fleet);
    // Teardown removes everything.
    assert!(!dir.exists());
    assert!(!std::path::Path::new("/run/netns").join(netns).exists());
}

#[test]
fn fifty_hosts_start_in_parallel() {
    if !require_root_tools() {
        return;
    }
    let t = std::time::Instant::now();
    let fleet = Fleet::start_n("n", 50);
    let started = t.elapsed();
    eprintln!("started 50 namespace hosts in {started:?}");
    assert_eq!(fleet.hosts().len(), 50);
    // Every address reaches its own host: ask each one for its name and eth0 address.
    let mut seen = std::collections::BTreeSet::new();
    for h in fleet.hosts() {
        assert_answers_as_itself(&fleet, h);
        seen.insert(h.name.clone());
    }
    assert_eq!(seen.len(), 50);
    assert!(seen.contains("n50"));
}

/// Not a test on its own: run by `stale_leftovers_of_a_killed_run_are_cleaned_up` in a child
/// process, which it then SIGKILLs. Starts a fleet, reports it, and waits to be killed.
#[test]
#[ignore = "helper process for stale_leftovers_of_a_killed_run_are_cleaned_up"]
fn helper_start_fleet_and_wait_to_be_killed() {
    let Some(report) = std::env::var_os("NSHOST_HELPER_REPORT") else {
        return;
    };
    let fleet = Fleet::start(&["s1", "s2"]);
    let names: Vec<String> = fleet.hosts().iter().map(|h| h.netns.clone()).collect();
    let text = format!(
        "{}\n{}\n{}\n",
        fleet.slot(),
        fleet.path().display(),
        names.join(" ")
    );
    std::fs::write(format!("{}.tmp", report.to_string_lossy()), text).unwrap();
    std::fs::rename(format!("{}.tmp", report.to_string_lossy()), &report).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(600));
}

#[test]
fn stale_leftovers_of_a_killed_run_are_cleaned_up() {
    if !require_root_tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "ssh_nshost::helper_start_fleet_and_wait_to_be_killed",
            "--nocapture",
        ])
        .env("NSHOST_HELPER_REPORT", &report)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !report.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "helper exited before reporting"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "helper never reported"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&report).unwrap();
    let mut lines = text.lines();
    let slot: u32 = lines.next().unwrap().parse().unwrap();
    let dir = std::path::PathBuf::from(lines.next().unwrap());
    let netns: Vec<String> = lines
        .next()
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect();
    // The run dies without dropping its fleet.
    child.kill().unwrap();
    child.wait().unwrap();
    let run_netns = std::path::Path::new("/run/netns");
    assert!(dir.exists() && netns.iter().all(|n| run_netns.join(n).exists()));
    let bridge = format!("/sys/class/net/ndp{slot}br");
    assert!(std::path::Path::new(&bridge).exists());
    // Its hosts' processes are still running.
    let sshd_pid_file = dir.join("hosts/s1/sshd.pid");
    let sshd_pid = std::fs::read_to_string(&sshd_pid_file).unwrap();
    assert!(std::path::Path::new(&format!("/proc/{}", sshd_pid.trim())).exists());

    support::nshost::cleanup_stale();

    assert!(!dir.exists(), "fleet dir left behind");
    for n in &netns {
        assert!(!run_netns.join(n).exists(), "netns {n} left behind");
    }
    assert!(
        !std::path::Path::new(&bridge).exists(),
        "bridge left behind"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{}", sshd_pid.trim())).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", sshd_pid.trim()))
                .is_ok_and(|s| s.contains(") Z")),
        "sshd of the killed run still running"
    );
    assert!(
        !std::path::Path::new(support::nshost::STATE_DIR)
            .join(format!("slot-{slot}"))
            .exists()
    );
}
