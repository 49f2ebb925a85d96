//! provision's side: the inventory for a namespace fleet, one timed `provision apply` run, and the
//! phases of a run read from its JSON events.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{PASSWORD, PROVISION};
use crate::nshost::Fleet;

pub fn provision_inventory(fleet: &Fleet) -> String {
    provision_inventory_with(fleet, &[])
}

/// The inventory with more `ssh` options for every host (`ansible_ssh_common_args`).
pub fn provision_inventory_with(fleet: &Fleet, ssh_args: &[&str]) -> String {
    let common = if ssh_args.is_empty() {
        String::new()
    } else {
        format!("    ansible_ssh_common_args: \"{}\"\n", ssh_args.join(" "))
    };
    let mut s = format!(
        "all:\n  vars:\n{common}    ansible_user: root\n    ansible_ssh_private_key_file: {}\n    netdump_manage_packages: false\n    netdump_manage_services: false\n  children:\n    netdump_servers:\n      hosts:\n        srv:\n          ansible_host: {}\n    netdump_clients:\n      vars:\n        netdump_client_flavor: netdump\n        netdump_netlogaddr: NONE\n      hosts:\n",
        fleet.client_key_path().display(),
        fleet.host("srv").address
    );
    for h in fleet.hosts().iter().filter(|h| h.name != "srv") {
        s.push_str(&format!(
            "        {}:\n          ansible_host: {}\n",
            h.name, h.address
        ));
    }
    s
}

/// Wall time of one `provision apply` run, total changed resources, and per-phase times read
/// from the arrival time of its JSON events.
pub struct ProvisionRun {
    pub secs: f64,
    pub changed: u64,
    /// `host resource: summary` of every change, for the message when a no-op run changed
    /// something.
    pub changes: Vec<String>,
    pub phases: Vec<(&'static str, f64)>,
}

pub fn run_provision(fleet: &Fleet, inv: &Path, forks: usize) -> ProvisionRun {
    let start = Instant::now();
    let mut child = Command::new(PROVISION)
        .arg("apply")
        .arg(inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts_path())
        .arg("--ssh-config")
        .arg(fleet.ssh_config_path())
        .args(["--forks", &forks.to_string(), "--output", "json"])
        .env("NETDUMP_PASSWORD", PASSWORD)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run provision");
    let stdout = child.stdout.take().unwrap();
    let mut events: Vec<(f64, serde_json::Value)> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read provision output");
        let t = start.elapsed().as_secs_f64();
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("provision printed a non-JSON line ({e}): {line}"));
        events.push((t, v));
    }
    let out = child.wait_with_output().expect("wait for provision");
    let secs = start.elapsed().as_secs_f64();
    let recap = events
        .last()
        .map(|(_, v)| v.clone())
        .unwrap_or(serde_json::Value::Null);
    assert!(
        out.status.success() && recap["event"] == "recap",
        "provision apply failed ({:?}):\n{}\n--- last events\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        events
            .iter()
            .rev()
            .take(20)
            .map(|(_, v)| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let changed = recap["hosts"]
        .as_array()
        .expect("recap hosts")
        .iter()
        .map(|h| h["changed"].as_u64().unwrap_or(0))
        .sum();
    let changes = events
        .iter()
        .filter(|(_, v)| v["event"] == "resource" && v["status"] == "changed")
        .map(|(_, v)| format!("{} {}: {}", v["host"], v["resource"], v["summary"]))
        .collect();
    ProvisionRun {
        secs,
        changed,
        changes,
        phases: phases(&events, secs),
    }
}

/// Splits a run into its phases from event arrival times: connect, facts and client keys (each
/// host on its own, until the server starts observing), server (until it is done; the receiver
/// upload is the time its file resource took), clients (until the last client is done), exit
/// (recap to process exit).
pub fn phases(events: &[(f64, serde_json::Value)], total: f64) -> Vec<(&'static str, f64)> {
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        events.iter().find(|(_, v)| pred(v)).map(|(t, _)| *t)
    };
    let srv_observe =
        find(&|v| v["event"] == "phase" && v["host"] == "srv" && v["phase"] == "observe")
            .unwrap_or(0.0);
    let srv_done =
        find(&|v| v["event"] == "host_done" && v["host"] == "srv").unwrap_or(srv_observe);
    let last_done = events
        .iter()
        .filter(|(_, v)| v["event"] == "host_done")
        .map(|(t, _)| *t)
        .fold(srv_done, f64::max);
    // The receiver upload: from the previous server event to the binary's resource event.
    let mut upload = 0.0;
    let mut prev = srv_observe;
    for (t, v) in events.iter().filter(|(_, v)| v["host"] == "srv") {
        if v["event"] == "resource" && v["resource"] == "file:/usr/local/sbin/netdump-provision" {
            upload = t - prev;
        }
        if *t >= srv_observe {
            prev = *t;
        }
    }
    // Per host: "connect" then "facts" once ssh is up.
    let at = |host: &serde_json::Value, phase: &str| {
        find(&|v| v["event"] == "phase" && &v["host"] == host && v["phase"] == phase)
    };
    let first_connect = find(&|v| v["event"] == "phase" && v["phase"] == "connect").unwrap_or(0.0);
    let mut slowest_connect = 0.0f64;
    for (_, v) in events
        .iter()
        .filter(|(_, v)| v["event"] == "phase" && v["phase"] == "connect")
    {
        if let (Some(c), Some(f)) = (at(&v["host"], "connect"), at(&v["host"], "facts")) {
            slowest_connect = slowest_connect.max(f - c);
        }
    }
    vec![
        ("connect+facts+keys", srv_observe),
        ("  start (to first connect)", first_connect),
        ("  ssh connect, slowest host", slowest_connect),
        ("server", srv_done - srv_observe),
        ("  of which receiver upload", upload),
        ("clients", last_done - srv_done),
        ("recap+exit", total - last_done),
    ]
}
