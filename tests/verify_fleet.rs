//! `provision verify` for real against namespace hosts (tests/support/nshost.rs): a server and
//! two kdump clients set up by `provision apply`; verify passes; then each link is broken in
//! turn and verify must fail on exactly that check of exactly that host, and nothing else.
//!
//! What a namespace host cannot have (kdump loaded in its kernel, its own netconsole, systemd)
//! is SIMULATED as tests/support/kdump_sim.rs describes: a /sys/kernel of plain files and a
//! `kdump-config` reading it, a /dev/kmsg → UDP forwarder standing in for extended netconsole,
//! and the installed receiver started by hand. Everything else is real: apply, sshd, the sink,
//! the receiver, the marker written into the kernel log, the route and neighbour tables.

use crate::support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use support::kdump_sim::{
    Kill, include_sshd_dropin, simulate_kdump, simulate_netdump_service, start_forwarder,
    start_receiver,
};
use support::nshost::{Fleet, require_root_tools, show};

const CLIENTS: [&str; 2] = ["k1", "k2"];
/// A legacy netdump client (its kernel module and init script simulated), netlog off.
const NETDUMP_CLIENT: &str = "n1";

fn inventory(fleet: &Fleet) -> String {
    let mut s = format!(
        "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n    netdump_manage_packages: false\n    netdump_manage_services: false\n  children:\n    netdump_servers:\n      hosts:\n        srv:\n          ansible_host: {}\n",
        fleet.client_key_path().display(),
        fleet.host("srv").address
    );
    s.push_str(
        "    netdump_clients:\n      vars:\n        netdump_client_flavor: kdump\n      hosts:\n",
    );
    for c in CLIENTS {
        s.push_str(&format!(
            "        {c}:\n          ansible_host: {}\n",
            fleet.host(c).address
        ));
    }
    s.push_str(&format!(
        "        {NETDUMP_CLIENT}:\n          ansible_host: {}\n          netdump_client_flavor: netdump\n          netdump_netlogaddr: NONE\n",
        fleet.host(NETDUMP_CLIENT).address
    ));
    s
}

fn program() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_provision"))
}

/// Runs verify; returns the exit code and the failed (host, check) pairs, after checking that
/// every line is the documented JSON shape and the last one the recap.
fn verify(fleet: &Fleet, inv: &Path) -> (Option<i32>, BTreeSet<(String, String)>, Output) {
    let out = fleet
        .provision(program(), "verify", 5)
        .arg("-i")
        .arg(inv)
        .args(["--output", "json", "--marker-timeout", "15"])
        .output()
        .expect("run provision verify");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", show(&out))))
        .collect();
    let (recap, checks) = lines.split_last().expect("no output");
    assert_eq!(recap["event"], "recap", "{}", show(&out));
    let mut failed = BTreeSet::new();
    for c in checks {
        for k in ["host", "check", "detail", "fix"] {
            assert!(c[k].is_string(), "{k} in {c}");
        }
        if !c["ok"].as_bool().expect("ok is a bool") {
            failed.insert((
                c["host"].as_str().unwrap().to_string(),
                c["check"].as_str().unwrap().to_string(),
            ));
        }
    }
    (out.status.code(), failed, out)
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(h, c)| (h.to_string(), c.to_string()))
        .collect()
}

fn boot_ids(fleet: &Fleet) -> Vec<String> {
    fleet
        .hosts()
        .iter()
        .map(|h| h.exec_ok("cat /proc/sys/kernel/random/boot_id"))
        .collect()
}

#[test]
fn verify_passes_after_apply_and_names_each_broken_link() {
    if !require_root_tools() {
        return;
    }
    let mut names = vec!["srv"];
    names.extend(CLIENTS);
    names.push(NETDUMP_CLIENT);
    let fleet = Fleet::start(&names);
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(&inv, inventory(&fleet)).unwrap();
    let applied = fleet
        .provision(program(), "apply", 5)
        .arg(&inv)
        .output()
        .expect("run provision apply");
    assert_eq!(applied.status.code(), Some(0), "{}", show(&applied));

    let srv = fleet.host("srv");
    include_sshd_dropin(srv);
    let mut procs = Kill(vec![start_receiver(srv)]);
    for c in CLIENTS {
        simulate_kdump(fleet.host(c));
        procs
            .0
            .push(start_forwarder(fleet.host(c), &srv.address.to_string()));
    }
    simulate_netdump_service(fleet.host(NETDUMP_CLIENT));
    // The netdump client's dump is all of its RAM (the machine's, since namespace hosts share
    // it), more than the default tmpfs (half of RAM) holds: give the server's /var/crash room
    // for it. A tmpfs size is a limit; nothing is allocated.
    let ram_kb: u64 = srv
        .exec_ok("awk '/^MemTotal:/ {print $2}' /proc/meminfo")
        .trim()
        .parse()
        .unwrap();
    srv.exec_ok(&format!("mount -o remount,size={}k /var/crash", ram_kb * 2));
    let boot_before = boot_ids(&fleet);

    let (code, failed, out) = verify(&fleet, &inv);
    assert_eq!(failed, pairs(&[]), "{}", show(&out));
    assert_eq!(code, Some(0), "{}", show(&out));
    // Every check of the issue ran: 5 for the server, 6 for each kdump client, 3 for the
    // netdump client (its netlog is off: no marker).
    let stdout = String::from_utf8_lossy(&out.stdout);
    for check in [
        "receiver",
        "sink_build",
        "sshd",
        "free_space",
        "retention",
        "kdump_armed",
        "crashkernel",
        "capture_files",
        "ssh_path",
        "netconsole_mac",
        "netconsole_marker",
        "netdump_service",
        "netdump_config",
    ] {
        assert!(
            stdout.contains(&format!("\"check\":\"{check}\"")),
            "{check} missing: {stdout}"
        );
    }
    assert_eq!(
        stdout.lines().count(),
        5 + 6 * CLIENTS.len() + 3 + 1,
        "{stdout}"
    );
    // The recap counts two round trips per client and one observation + marker reads for the
    // server.
    let recap: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(recap["round_trips"].as_u64().unwrap() >= 5, "{recap}");

    // 1. The receiver stopped: only the server's receiver check fails (the clients' markers
    //    cannot be checked, which that check says).
    let mut receiver = procs.0.remove(0);
    receiver.kill().unwrap();
    receiver.wait().unwrap();
    let (code, failed, out) = verify(&fleet, &inv);
    assert_eq!(failed, pairs(&[("srv", "receiver")]), "{}", show(&out));
    assert_eq!(code, Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("netconsole markers of k1, k2 not checked"),
        "{}",
        show(&out)
    );
    procs.0.push(start_receiver(srv));

    // 2. k1's key removed from authorized_keys2.
    let ak = "/var/crash/.ssh/authorized_keys2";
    srv.exec_ok(&format!(
        "cp -p {ak} /root/ak.saved && sed -i '/ netdump-provision:k1$/d' {ak}"
    ));
    let (code, failed, out) = verify(&fleet, &inv);
    assert_eq!(failed, pairs(&[("k1", "ssh_path")]), "{}", show(&out));
    assert_eq!(code, Some(2));
    srv.exec_ok(&format!("cp -p /root/ak.saved {ak}"));

    // 3. k2's netconsole target MAC wrong (a router change the configuration missed).
    let k2 = fleet.host("k2");
    let nc = "/etc/modprobe.d/netdump-provision-netconsole.conf";
    k2.exec_ok(&format!(
        "cp -p {nc} /root/nc.saved && sed -i 's#/[0-9a-f:]*$#/02:00:00:00:00:01#' {nc}"
    ));
    let (code, failed, out) = verify(&fleet, &inv);
    assert_eq!(failed, pairs(&[("k2", "netconsole_mac")]), "{}", show(&out));
    assert_eq!(code, Some(2));
    k2.exec_ok(&format!("cp -p /root/nc.saved {nc}"));

    // 4. The server's tmpfs nearly full: shrunk to what it holds plus 64 MiB, below the sink's
    //    256 MiB reserve.
    let size_kb: u64 = srv
        .exec_ok("df -Pk /var/crash | awk 'NR==2 {print $2}'")
        .trim()
        .parse()
        .unwrap();
    srv.exec_ok(
        "used=$(df -Pk /var/crash | awk 'NR==2 {print $3}'); mount -o remount,size=$((used + 65536))k /var/crash",
    );
    let (code, failed, out) = verify(&fleet, &inv);
    assert_eq!(failed, pairs(&[("srv", "free_space")]), "{}", show(&out));
    assert_eq!(code, Some(2));
    srv.exec_ok(&format!("mount -o remount,size={size_kb}k /var/crash"));

    // 5. kdump not loaded on k1 (SIMULATED: the plain file standing in for the kernel's).
    let k1 = fleet.host("k1");
    k1.exec_ok("echo 0 > /sys/kernel/kexec_crash_loaded");
    let (code, failed, out) = verify(&fleet, &inv);
    assert_eq!(failed, pairs(&[("k1", "kdump_armed")]), "{}", show(&out));
    assert_eq!(code, Some(2));
    k1.exec_ok("echo 1 > /sys/kernel/kexec_crash_loaded");

    // 5b. The netdump client's service stopped (SIMULATED init script, see kdump_sim.rs).
    let n1 = fleet.host(NETDUMP_CLIENT);
    n1.exec_ok(": > /run/netdump-simulated-down");
    let (code, failed, out) = verify(&fleet, &inv);
    assert_eq!(
        failed,
        pairs(&[("n1", "netdump_service")]),
        "{}",
        show(&out)
    );
    assert_eq!(code, Some(2));
    n1.exec_ok("rm /run/netdump-simulated-down");

    // 5c. k2 unreachable (its link down, like a hung host): its `reachable` fails, exit 4,
    //     and nothing else (the server's space check just has one client fewer to size).
    let k2 = fleet.host("k2");
    k2.set_link(false);
    let (code, failed, out) = verify(&fleet, &inv);
    k2.set_link(true);
    assert_eq!(failed, pairs(&[("k2", "reachable")]), "{}", show(&out));
    assert_eq!(code, Some(4), "{}", show(&out));

    // Mended: all pass again.
    let (code, failed, out) = verify(&fleet, &inv);
    assert_eq!((code, failed), (Some(0), pairs(&[])), "{}", show(&out));

    // 6. The server's host key changed (a reinstall): every client's pinned key is stale, so
    //    each client's ssh path fails, and nothing else. The controller trusts the new key.
    srv.regenerate_host_key();
    fleet.write_known_hosts();
    procs.0.push(start_receiver(srv)); // regenerate_host_key stopped every process on srv
    let (code, failed, out) = verify(&fleet, &inv);
    assert_eq!(
        failed,
        pairs(&[("k1", "ssh_path"), ("k2", "ssh_path"), ("n1", "ssh_path")]),
        "{}",
        show(&out)
    );
    assert_eq!(code, Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("host key"),
        "{}",
        show(&out)
    );

    assert_eq!(boot_ids(&fleet), boot_before, "a host rebooted");
}
