//! Self-tests of the namespace-host harness (tests/support/nshost.rs).

mod support;

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

#[test]
fn fleet_hosts_are_isolated_and_reachable() {
    if !require_root_tools() {
        return;
    }
    let passwd_before = std::fs::read("/etc/passwd").unwrap();
    let shadow_before = std::fs::read("/etc/shadow").unwrap();
    let hostname_before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let fleet = Fleet::start(&["alpha", "beta"]);

    // Reachable over ssh with the pinned host key, each with its own hostname and address.
    for h in fleet.hosts() {
        let out = system_ssh(
            &fleet,
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
        assert_eq!(lines.next(), Some(h.name.as_str()));
        assert!(lines.next().unwrap().contains(&format!("{}/24", h.address)));
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

    // The fake sysrq knob and /var/crash tmpfs exist.
    assert_eq!(alpha.read_file("/proc/sys/kernel/sysrq").unwrap(), b"0\n");
    alpha.exec_ok("echo 1 > /proc/sys/kernel/sysrq; touch /var/crash/x /etc/ndp-marker");
    assert_eq!(alpha.read_file("/proc/sys/kernel/sysrq").unwrap(), b"1\n");
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
    assert!(!std::path::Path::new("/etc/ndp-marker").exists());
    assert!(!std::path::Path::new("/etc/sudoers.d/ndp-ndpuser").exists());
    assert!(!std::path::Path::new("/proc/sys/kernel/sysrq").exists());
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        hostname_before
    );

    // stop: unreachable; start_sshd: back, files kept.
    alpha.stop();
    assert!(!system_ssh(&fleet, "alpha", "root", "true").status.success());
    alpha.start_sshd();
    let out = system_ssh(&fleet, "alpha", "root", "cat /etc/ndp-marker && echo ok");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");

    // A regenerated host key no longer matches known_hosts.
    alpha.regenerate_host_key();
    let out = system_ssh(&fleet, "alpha", "root", "true");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
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
    let mut addrs: Vec<_> = fleet.hosts().iter().map(|h| h.address).collect();
    addrs.dedup();
    assert_eq!(addrs.len(), 50);
    let last = &fleet.hosts()[49];
    let out = system_ssh(&fleet, &last.name, "root", "hostname");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "n50");
}
