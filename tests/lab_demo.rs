//! Tier 3, the product end to end on real kernels: `provision lab demo --keep` brings up a server
//! VM and a kdump client VM, applies, applies again (must change nothing), crash-tests the client
//! (real `echo c > /proc/sysrq-trigger`, capture kernel, makedumpfile over ssh, reboot), and
//! the test then checks independently what landed on the server before `provision lab down`,
//! which must leave no qemu process, namespace or veth behind.
//!
//! Own lab (support::lab::DEMO: namespace and /24) and state dir; the base image cache is shared.
//! Takes several minutes under TCG.

use std::path::{Path, PathBuf};
use std::process::Command;

use netdump_provision::lab::{self, LabConfig};

use crate::support;
use support::lab::DEMO as LAB;
use support::nshost::show;

/// The demo runs the static (musl) build when it exists, as `.ci/demo` does.
fn provision_bin() -> PathBuf {
    support::lab::static_or_test_build("lab demo test")
}

fn provision_lab(state: &Path, args: &[&str]) -> std::process::Output {
    LAB.provision_lab(&provision_bin(), state, args)
}

fn processes_mentioning(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_applies_and_proves_a_real_crash_dump() {
    if let Some(missing) = lab::missing_tool() {
        netdump_test_support::skip("lab demo test", &missing.to_string());
        return;
    }
    let state = tempfile::Builder::new()
        .prefix("ndlabd-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let out = provision_lab(state.path(), &["demo", "--keep"]);
    // The demo's own report (phase timings), shown with --nocapture or on failure.
    eprintln!("{}", show(&out));
    let cfg = LAB.config(state.path());
    let result = tokio::spawn(checks(cfg, out, state.path().to_path_buf())).await;

    let down = provision_lab(state.path(), &["down"]);
    assert_eq!(down.status.code(), Some(0), "{}", show(&down));
    assert_eq!(
        processes_mentioning(&state.path().display().to_string()),
        0,
        "qemu left running"
    );
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains(LAB.netns),
        "namespace left behind"
    );
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(LAB.netns),
        "veth left behind"
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn checks(cfg: LabConfig, out: std::process::Output, state: PathBuf) {
    assert_eq!(out.status.code(), Some(0), "demo failed:\n{}", show(&out));
    let text = show(&out);
    assert!(text.contains("second apply: exit 0, 0 changed"), "{text}");
    assert!(text.contains("PASS lab-client1"), "{text}");
    let server = LAB.ip(10);
    let client_ip = LAB.ip(11).to_string();

    // Independently of test-crash: a complete dump and a dmesg with the crash line.
    let (ok, listing) = cfg
        .ssh(
            server,
            &format!("cd /var/crash && ls -d {client_ip}-*/ && ls {client_ip}-*/"),
        )
        .await
        .unwrap();
    assert!(ok, "{listing}");
    assert!(
        listing.contains("dump.") && listing.contains("dmesg."),
        "{listing}"
    );
    assert!(!listing.contains("incomplete"), "{listing}");
    let (ok, dmesg) = cfg
        .ssh(server, &format!("cat /var/crash/{client_ip}-*/dmesg.*"))
        .await
        .unwrap();
    assert!(ok && dmesg.contains("sysrq: Trigger a crash"), "{dmesg}");
    let (ok, head) = cfg
        .ssh(
            server,
            &format!("head -c 12 /var/crash/{client_ip}-*/dump.*"),
        )
        .await
        .unwrap();
    assert!(ok && head.starts_with("makedumpfile"), "{head}");
    // One crash, one directory: the kdump files joined the receiver's console crash record.
    let (ok, merged) = cfg
        .ssh(
            server,
            &format!(
                "cd /var/crash && for d in {client_ip}-*/; do ls \"$d\" | tr '\\n' ' '; echo; done"
            ),
        )
        .await
        .unwrap();
    assert!(
        ok && merged
            .lines()
            .any(|l| l.contains("dump.") && l.contains("dmesg.") && l.contains("log")),
        "no directory holds dump, dmesg and the console record together:\n{merged}"
    );
    // The client's own key gets the dump sink and nothing else: it cannot even list.
    let client = LAB.ip(11);
    let (ok, listing) = cfg
        .ssh(
            client,
            ". /etc/default/kdump-tools; ssh -i \"$SSH_KEY\" -o BatchMode=yes \"$SSH\" ls /var/crash 2>&1; echo \"exit=$?\"",
        )
        .await
        .unwrap();
    assert!(
        ok && listing.contains("dump-sink: refused") && listing.contains("exit=1"),
        "{listing}"
    );
    // The receiver's console log holds the panic, and events.jsonl the crash.
    let (ok, console) = cfg
        .ssh(server, &format!("cat /var/crash/console/{client_ip}.log"))
        .await
        .unwrap();
    assert!(
        ok && console.contains("Kernel panic - not syncing"),
        "{console}"
    );
    let (ok, events) = cfg
        .ssh(server, "cat /var/crash/events.jsonl")
        .await
        .unwrap();
    assert!(
        ok && events.contains(&format!("\"host\":\"{client_ip}\"")),
        "{events}"
    );
    // The receiver runs unprivileged.
    let (ok, user) = cfg
        .ssh(server, "ps -o user= -C netdump-provision | sort -u")
        .await
        .unwrap();
    assert!(ok && user.trim() == "netdump", "receiver user: {user:?}");
    // ...from the binary the demo ran (static when built): compared by checksum.
    let local = std::fs::read(provision_bin()).unwrap();
    let (ok, sum) = cfg
        .ssh(server, "sha256sum /usr/local/sbin/netdump-provision")
        .await
        .unwrap();
    let want = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&local))
    };
    assert!(
        ok && sum.starts_with(&want),
        "installed receiver {sum:?}, expected {want}"
    );
    // The JUnit report says one test, no failure.
    let junit = std::fs::read_to_string(state.join("test-crash.xml")).unwrap();
    assert!(
        junit.contains("tests=\"1\"") && junit.contains("failures=\"0\""),
        "{junit}"
    );
}
