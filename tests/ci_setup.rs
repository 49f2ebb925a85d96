//! The set-up's decision of which qemu packages to install (`.ci/qemu-plan plan`), fed made-up
//! machines: the one that broke a fresh clone (backports qemu-utils, bookworm-only sources, no
//! qemu-system), a plain Debian 12, machines that already have some or all of qemu, and one where
//! no consistent set exists. The script is pure in `plan` mode: facts in, decision out.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const BPO: &str = "1:10.0.2+ds-2+deb13u1~bpo12+1";
const U18_B3: &str = "1:7.2+dfsg-7+deb12u18+b3";
const U18: &str = "1:7.2+dfsg-7+deb12u18";
const U15: &str = "1:7.2+dfsg-7+deb12u15";

fn plan(facts: &str) -> Vec<String> {
    if !Path::new("/usr/bin/dpkg").exists() {
        netdump_test_support::skip("qemu-plan", "dpkg is not installed (not a Debian machine)");
        return Vec::new();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/qemu-plan");
    let mut child = Command::new("bash")
        .arg(script)
        .arg("plan")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash .ci/qemu-plan");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(facts.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "qemu-plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// What bookworm + bookworm-security offer (apt-cache madison on a Debian 12 machine).
fn bookworm() -> String {
    let mut f = String::new();
    for p in ["qemu-system-x86", "qemu-utils", "qemu-system-common"] {
        f += &format!("available {p} {U18_B3}\navailable {p} {U15}\n");
    }
    f += &format!("available qemu-system-data {U18}\navailable qemu-system-data {U15}\n");
    f
}

fn has(plan: &[String], line: &str) -> bool {
    plan.iter().any(|l| l == line)
}

#[test]
fn backports_qemu_utils_without_system_is_downgraded_to_one_consistent_set() {
    let facts = format!("installed qemu-utils {BPO} ii\n{}", bookworm());
    let p = plan(&facts);
    if p.is_empty() {
        return;
    }
    assert!(has(&p, "source 1:7.2+dfsg-7+deb12u18"), "{p:?}");
    assert!(
        has(&p, &format!("downgrade qemu-utils {BPO} {U18_B3}")),
        "{p:?}"
    );
    assert!(has(&p, &format!("install qemu-utils={U18_B3}")), "{p:?}");
    assert!(
        has(&p, &format!("install qemu-system-x86={U18_B3}")),
        "{p:?}"
    );
    assert!(
        has(&p, &format!("install qemu-system-common={U18_B3}")),
        "{p:?}"
    );
    // The arch-independent data package has no binNMU suffix: same source, its own version.
    assert!(has(&p, &format!("install qemu-system-data={U18}")), "{p:?}");
}

#[test]
fn plain_debian_installs_the_newest_offered_version_without_downgrading() {
    let p = plan(&bookworm());
    if p.is_empty() {
        return;
    }
    assert!(has(&p, &format!("install qemu-utils={U18_B3}")), "{p:?}");
    assert!(
        has(&p, &format!("install qemu-system-x86={U18_B3}")),
        "{p:?}"
    );
    assert!(!p.iter().any(|l| l.starts_with("downgrade")), "{p:?}");
}

#[test]
fn a_complete_consistent_install_is_kept() {
    let mut facts = bookworm();
    for pkg in ["qemu-system-x86", "qemu-utils", "qemu-system-common"] {
        facts += &format!("installed {pkg} {U18_B3} ii\n");
    }
    facts += &format!("installed qemu-system-data {U18} ii\n");
    let p = plan(&facts);
    if p.is_empty() {
        return;
    }
    assert!(p.iter().all(|l| !l.starts_with("install")), "{p:?}");
    assert!(has(&p, &format!("keep qemu-system-x86 {U18_B3}")), "{p:?}");
}

#[test]
fn backports_everywhere_keeps_backports_and_adds_system_at_the_same_version() {
    // A machine whose sources include bookworm-backports: no reason to downgrade.
    let mut facts = format!("installed qemu-utils {BPO} ii\n{}", bookworm());
    for p in ["qemu-system-x86", "qemu-utils", "qemu-system-common"] {
        facts += &format!("available {p} {BPO}\n");
    }
    facts += "available qemu-system-data 1:10.0.2+ds-2+deb13u1~bpo12+1\n";
    let p = plan(&facts);
    if p.is_empty() {
        return;
    }
    assert!(has(&p, &format!("keep qemu-utils {BPO}")), "{p:?}");
    assert!(has(&p, &format!("install qemu-system-x86={BPO}")), "{p:?}");
    assert!(!p.iter().any(|l| l.starts_with("downgrade")), "{p:?}");
}

#[test]
fn an_older_partial_install_is_completed_and_upgraded_together() {
    // qemu-utils from the security archive (u15), qemu-block-extra beside it: every installed
    // qemu package moves with the set.
    let facts = format!(
        "installed qemu-utils {U15} ii\ninstalled qemu-block-extra {U15} ii\n{}available qemu-block-extra {U18_B3}\navailable qemu-block-extra {U15}\n",
        bookworm()
    );
    let p = plan(&facts);
    if p.is_empty() {
        return;
    }
    assert!(
        has(&p, &format!("install qemu-block-extra={U18_B3}")),
        "{p:?}"
    );
    assert!(has(&p, &format!("install qemu-utils={U18_B3}")), "{p:?}");
    assert!(!p.iter().any(|l| l.starts_with("downgrade")), "{p:?}");
}

#[test]
fn a_half_configured_package_is_reinstalled_even_at_the_chosen_version() {
    let mut facts = bookworm();
    facts += &format!("installed qemu-utils {U18_B3} iF\n");
    let p = plan(&facts);
    if p.is_empty() {
        return;
    }
    assert!(has(&p, &format!("install qemu-utils={U18_B3}")), "{p:?}");
}

#[test]
fn no_consistent_set_is_an_error_naming_the_packages() {
    // An installed qemu package the sources do not offer at any version qemu-system-x86 has.
    let facts = format!("installed qemu-block-extra {BPO} ii\n{}", bookworm());
    let p = plan(&facts);
    if p.is_empty() {
        return;
    }
    let err = p
        .iter()
        .find(|l| l.starts_with("error "))
        .unwrap_or_else(|| panic!("expected an error, got {p:?}"));
    assert!(err.contains("qemu-block-extra"), "{err}");
    assert!(!p.iter().any(|l| l.starts_with("install")), "{p:?}");
}

#[test]
fn skipping_is_forbidden_exactly_when_ci_is_set() {
    // The harness's own switch, checked in a child process so this test's environment stays put.
    let exe = std::env::current_exe().unwrap();
    for (ci, forbidden) in [
        (Some("true"), true),
        (Some("1"), true),
        (Some("false"), false),
        (Some(""), false),
        (None, false),
    ] {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--exact",
            "ci_setup::skip_probe_child",
            "--nocapture",
            "--test-threads=1",
        ]);
        cmd.env("SKIP_PROBE_CHILD", "1");
        match ci {
            Some(v) => cmd.env("CI", v),
            None => cmd.env_remove("CI"),
        };
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            !out.status.success(),
            forbidden,
            "CI={ci:?}: status {:?}, stderr {stderr}",
            out.status
        );
        if !forbidden {
            assert!(stderr.contains("SKIP: probe: nothing"), "{stderr}");
        }
    }
}

/// Run only as the child of the test above.
#[test]
fn skip_probe_child() {
    if std::env::var_os("SKIP_PROBE_CHILD").is_none() {
        return;
    }
    netdump_test_support::skip("probe", "nothing");
}
