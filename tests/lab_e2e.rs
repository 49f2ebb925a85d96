//! Tier 3: the real qemu lab. `lab up` with a server and one client, ssh into both with the
//! pinned host keys, check the client has crash kernel memory reserved, `up` again is a no-op,
//! then `lab down` leaves no qemu process, namespace or veth behind.
//!
//! Uses its own namespace (`ndlabt`), subnet (198.19.1.0/24) and a temporary state dir, so it does
//! not disturb a lab started by hand (`ndlab`, 198.19.0.0/24). The base image cache is shared
//! (NETDUMP_LAB_CACHE or the default), so only the first run anywhere pays for debootstrap.
//! Takes several minutes under TCG.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use netdump_provision::lab::{self, LabConfig, cmd};

const NETNS: &str = crate::support::lab::E2E.netns;

fn config(state: &Path) -> LabConfig {
    LabConfig {
        timeout: Duration::from_secs(1800),
        ..crate::support::lab::E2E.config(state)
    }
}

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&c).contains(needle)
        {
            found.push(name);
        }
    }
    found
}

async fn ssh_out(cfg: &LabConfig, ip: Ipv4Addr, script: &str) -> String {
    let (ok, out) = cfg.ssh(ip, script).await.unwrap();
    assert!(ok, "ssh {ip} {script:?} failed");
    out.trim().to_string()
}

async fn exercise(cfg: &LabConfig) {
    let plan = lab::up(cfg, 1).await.expect("lab up");
    let server = plan.server().clone();
    let client = plan.clients().next().unwrap().clone();

    let mut boot_ids = Vec::new();
    for vm in [&server, &client] {
        assert_eq!(ssh_out(cfg, vm.ip, "hostname").await, vm.name);
        let id = ssh_out(cfg, vm.ip, "cat /proc/sys/kernel/random/boot_id").await;
        assert_eq!(id.len(), 36, "boot_id {id:?}");
        boot_ids.push(id);
        let addr = ssh_out(cfg, vm.ip, "ip -o -4 addr show scope global").await;
        assert!(addr.contains(&format!(" {}/24 ", vm.ip)), "{addr}");
    }
    assert_ne!(boot_ids[0], boot_ids[1]);
    let crash_size: u64 = ssh_out(cfg, client.ip, "cat /sys/kernel/kexec_crash_size")
        .await
        .parse()
        .unwrap();
    assert!(crash_size > 0, "no crash kernel memory reserved");
    // The VMs reach each other directly (what kdump-over-ssh and netconsole need).
    ssh_out(
        cfg,
        client.ip,
        &format!("timeout 5 bash -c '</dev/tcp/{}/22'", server.ip),
    )
    .await;

    // The inventory and known_hosts written for `provision apply`.
    let inv = std::fs::read_to_string(cfg.inventory()).unwrap();
    assert!(
        inv.contains(&format!("ansible_host: {}", client.ip)),
        "{inv}"
    );
    let known = std::fs::read_to_string(cfg.known_hosts()).unwrap();
    assert_eq!(known.lines().count(), 6, "{known}");

    // `up` again leaves the running VMs alone.
    lab::up(cfg, 1).await.expect("second lab up");
    assert_eq!(
        ssh_out(cfg, client.ip, "cat /proc/sys/kernel/random/boot_id").await,
        boot_ids[1]
    );
    let status = lab::status(cfg).await.unwrap();
    assert_eq!(status.len(), 2);
    assert!(
        status.iter().all(|v| v.pid.is_some() && v.ssh),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_up_ssh_and_down_leaves_nothing() {
    for (tool, _) in lab::TOOLS {
        if !cmd::have(tool) {
            netdump_test_support::skip("lab_e2e", &format!("needs {tool}, which is not installed"));
            return;
        }
    }
    let state = tempfile::tempdir().unwrap();
    let cfg = config(state.path());
    let state_str = state.path().to_string_lossy().into_owned();

    let outcome = tokio::spawn({
        let cfg = cfg.clone();
        async move { exercise(&cfg).await }
    })
    .await;
    lab::down(&cfg).await.expect("lab down");
    lab::down(&cfg).await.expect("second lab down is a no-op");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }

    assert!(
        processes_mentioning(&state_str).is_empty(),
        "processes left behind"
    );
    let ns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(NETNS)),
        "namespace {NETNS} left behind"
    );
    let veth = std::process::Command::new("ip")
        .args(["link", "show", "dev", &format!("{NETNS}0")])
        .output()
        .unwrap();
    assert!(!veth.status.success(), "controller veth left behind");
    assert!(!state.path().join("vms").exists());
}
