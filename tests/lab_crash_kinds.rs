//! Tier 3: `test-crash --kind` on real kernels. A lab server and one kdump client are brought up
//! and applied, then the client is crashed as a hung task (no lkdtm needed: a writer blocked on
//! a frozen filesystem, `kernel.hung_task_panic`), and the test checks what test-crash reported,
//! what arrived on the server, that the receiver triaged the console crash record when it closed
//! (`crash_triaged` event), and that the sysctls set for the run are gone after the reboot. Then
//! `--kind panic` needs lkdtm: on a kernel without it (Debian 12's) preflight must refuse before
//! touching anything; with it, the panic must arrive titled `kernel panic: dumptest`.
//!
//! Own lab (support::lab::CRASH_KINDS: namespace and /24) and state dir; the base image cache is
//! shared.
//! Takes several minutes under TCG.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use netdump_provision::lab::{self, LabConfig};

use crate::support;
use support::nshost::show;

use support::lab::CRASH_KINDS as LAB;

fn provision_bin() -> PathBuf {
    support::lab::static_or_test_build("lab crash-kinds test")
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(provision_bin())
        .args(args)
        .output()
        .expect("run provision")
}

fn lab_cmd(state: &Path, args: &[&str]) -> std::process::Output {
    LAB.provision_lab(&provision_bin(), state, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_task_crash_arrives_triaged_and_lkdtm_kinds_are_checked() {
    if let Some(missing) = lab::missing_tool() {
        netdump_test_support::skip("lab crash-kinds test", &missing.to_string());
        return;
    }
    let state = tempfile::Builder::new()
        .prefix("ndlabk-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let cfg = LAB.config(state.path());
    let result = tokio::spawn(exercise(cfg)).await;
    let down = lab_cmd(state.path(), &["down"]);
    assert_eq!(down.status.code(), Some(0), "{}", show(&down));
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn exercise(cfg: LabConfig) {
    let up = lab_cmd(&cfg.state_dir, &["up", "--clients", "1"]);
    assert_eq!(up.status.code(), Some(0), "lab up: {}", show(&up));
    let inv = cfg.inventory().display().to_string();
    let known = cfg.known_hosts().display().to_string();
    let apply = run(&["apply", &inv, "--known-hosts", &known]);
    assert_eq!(apply.status.code(), Some(0), "apply: {}", show(&apply));
    let server = LAB.ip(10);
    let client = LAB.ip(11);
    let client_ip = LAB.ip(11).to_string();

    // A hung task, provoked without lkdtm.
    let out = run(&[
        "test-crash",
        "-i",
        &inv,
        "--known-hosts",
        &known,
        "--kind",
        "hung-task",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "hung-task: {}", show(&out));
    let r: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    assert_eq!(r["kind"], "hung-task");
    assert_eq!(r["crash_kind"], "HANG", "{r}");
    let title = r["crash_title"].as_str().unwrap();
    assert!(title.starts_with("INFO: task hung in "), "{title}");
    let dir = r["dump_dir"].as_str().unwrap().to_string();

    // The dump's triage (the sink's, from dmesg) names the same crash.
    let (ok, triage) = cfg
        .ssh(server, &format!("cat '{dir}/triage.json'"))
        .await
        .unwrap();
    assert!(ok && triage.contains(title), "{triage}");
    // The receiver triaged the console crash record when it closed (quiet, or the reboot).
    let mut events = String::new();
    for _ in 0..60 {
        let (_, e) = cfg
            .ssh(server, "cat /var/crash/events.jsonl")
            .await
            .unwrap();
        events = e;
        if events.contains("\"event\":\"crash_triaged\"") {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let triaged = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "crash_triaged" && e["host"] == client_ip.as_str())
        .unwrap_or_else(|| panic!("no crash_triaged event for {client_ip}:\n{events}"));
    assert_eq!(triaged["dir"], dir.as_str());
    assert_eq!(triaged["title"], title, "console and dump agree");
    assert_eq!(triaged["signature"], r["crash_signature"]);

    // The sysctls were for the run only: the rebooted client has the defaults.
    let (ok, sysctls) = cfg
        .ssh(
            client,
            "cat /proc/sys/kernel/hung_task_panic /proc/sys/kernel/hung_task_timeout_secs",
        )
        .await
        .unwrap();
    assert!(ok, "{sysctls}");
    assert_eq!(
        sysctls.split_whitespace().collect::<Vec<_>>(),
        ["0", "120"],
        "{sysctls}"
    );

    // lkdtm kinds: refused cleanly without lkdtm, checked with it.
    let (_, has_lkdtm) = cfg
        .ssh(
            client,
            "modinfo lkdtm >/dev/null 2>&1 && echo yes || echo no",
        )
        .await
        .unwrap();
    let (_, boot_before) = cfg
        .ssh(client, "cat /proc/sys/kernel/random/boot_id")
        .await
        .unwrap();
    let out = run(&[
        "test-crash",
        "-i",
        &inv,
        "--known-hosts",
        &known,
        "--kind",
        "panic",
        "--output",
        "json",
    ]);
    let r: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    if has_lkdtm.trim() == "yes" {
        assert_eq!(out.status.code(), Some(0), "panic: {}", show(&out));
        assert_eq!(r["crash_title"], "kernel panic: dumptest", "{r}");
    } else {
        assert_eq!(out.status.code(), Some(2), "panic: {}", show(&out));
        let e = r["error"].as_str().unwrap();
        assert!(
            e.contains("preflight: --kind panic needs lkdtm") && e.contains("CONFIG_LKDTM"),
            "{e}"
        );
        assert_eq!(r["phases"].as_array().unwrap().len(), 1, "{r}");
        let (_, boot_after) = cfg
            .ssh(client, "cat /proc/sys/kernel/random/boot_id")
            .await
            .unwrap();
        assert_eq!(boot_before, boot_after, "nothing was crashed");
    }
}
