//! Tier 3, `provision verify` on real kernels: lab up (a server VM and a Debian kdump client VM),
//! apply, then verify passes every check — the netconsole marker goes from the client kernel's
//! log through real netconsole to the receiver; `kdump-config unload` on the client fails
//! exactly the client's `kdump_armed`, stopping the receiver fails exactly the server's
//! `receiver`; no VM reboots.
//!
//! Own lab (support::lab::VERIFY: namespace and /24) and state dir; the base image cache is shared.
//! Run it alone on the lab (`flock /tmp/ndlab.lock cargo test --test lab_verify`): minutes under
//! TCG.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use netdump_provision::lab::{self, LabConfig};

use crate::support;
use support::lab::VERIFY as LAB;
use support::nshost::show;

fn program() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_provision"))
}

fn provision_lab(state: &Path, args: &[&str]) -> std::process::Output {
    LAB.provision_lab(program(), state, args)
}

/// verify's exit code and failed (host, check) pairs.
fn verify(inv: &Path) -> (Option<i32>, BTreeSet<(String, String)>, String) {
    let out = Command::new(program())
        .args(["verify", "-i"])
        .arg(inv)
        .args(["--output", "json", "--marker-timeout", "30"])
        .output()
        .expect("run provision verify");
    let mut failed = BTreeSet::new();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for l in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", show(&out)));
        if v["ok"] == false {
            failed.insert((
                v["host"].as_str().unwrap().to_string(),
                v["check"].as_str().unwrap().to_string(),
            ));
        }
    }
    (out.status.code(), failed, show(&out))
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(h, c)| (h.to_string(), c.to_string()))
        .collect()
}

async fn ssh_ok(cfg: &LabConfig, ip: Ipv4Addr, script: &str) -> String {
    let (ok, out) = cfg.ssh(ip, script).await.unwrap();
    assert!(ok, "ssh {ip} {script:?} failed: {out}");
    out
}

async fn exercise(cfg: LabConfig) {
    let up = provision_lab(&cfg.state_dir, &["up", "--clients", "1"]);
    assert_eq!(up.status.code(), Some(0), "{}", show(&up));
    let inv = cfg.inventory();
    let apply = Command::new(program())
        .arg("apply")
        .arg(&inv)
        .output()
        .unwrap();
    assert_eq!(apply.status.code(), Some(0), "{}", show(&apply));
    let server: Ipv4Addr = LAB.ip(10);
    let client: Ipv4Addr = LAB.ip(11);
    let before = (boot_id(&cfg, server).await, boot_id(&cfg, client).await);

    let (code, failed, out) = verify(&inv);
    assert_eq!((code, failed), (Some(0), pairs(&[])), "{out}");
    assert!(
        out.contains("\"check\":\"netconsole_marker\",\"ok\":true"),
        "{out}"
    );

    // kdump unloaded on the client: the capture kernel is no longer armed.
    ssh_ok(&cfg, client, "kdump-config unload").await;
    let (code, failed, out) = verify(&inv);
    assert_eq!(failed, pairs(&[("lab-client1", "kdump_armed")]), "{out}");
    assert_eq!(code, Some(2), "{out}");
    ssh_ok(&cfg, client, "kdump-config load").await;

    // The receiver stopped on the server.
    ssh_ok(&cfg, server, "systemctl stop netdump-receiver").await;
    let (code, failed, out) = verify(&inv);
    assert_eq!(failed, pairs(&[("lab-server", "receiver")]), "{out}");
    assert_eq!(code, Some(2), "{out}");
    ssh_ok(&cfg, server, "systemctl start netdump-receiver").await;

    let (code, failed, out) = verify(&inv);
    assert_eq!((code, failed), (Some(0), pairs(&[])), "{out}");
    assert_eq!(
        (boot_id(&cfg, server).await, boot_id(&cfg, client).await),
        before,
        "a VM rebooted"
    );
}

async fn boot_id(cfg: &LabConfig, ip: Ipv4Addr) -> String {
    ssh_ok(cfg, ip, "cat /proc/sys/kernel/random/boot_id").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_on_real_kernels_names_the_broken_link() {
    if let Some(missing) = lab::missing_tool() {
        netdump_test_support::skip("lab verify test", &missing.to_string());
        return;
    }
    let state = tempfile::Builder::new()
        .prefix("ndlabv-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let cfg = LAB.config(state.path());
    let result = tokio::spawn(exercise(cfg.clone())).await;
    let down = provision_lab(state.path(), &["down"]);
    assert_eq!(down.status.code(), Some(0), "{}", show(&down));
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
