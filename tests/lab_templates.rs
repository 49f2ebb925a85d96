//! The kdump configuration templates (templates/kdump-tools.j2, templates/kdump.conf.j2) render
//! into files the distributions' tools accept: the Debian file is valid POSIX sh that yields the
//! intended variables when sourced, the RHEL file has exactly the intended directives.

use std::process::Command;

use netdump_provision::templates::Templates;

/// Renders with the product's own template set (embedded templates, strict undefined, trailing
/// newline kept), exactly as the roles do.
fn render(name: &str, ctx: minijinja::Value) -> String {
    Templates::new(None)
        .expect("embedded templates")
        .render(name, ctx)
        .unwrap_or_else(|e| panic!("render {name}: {e}"))
}

/// Sources the rendered file with /bin/sh (as kdump-config does) and prints the variables.
fn source_with_sh(content: &str, vars: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kdump-tools");
    std::fs::write(&f, content).unwrap();
    let script = vars
        .iter()
        .map(|v| format!("printf '%s\\n' \"${v}\""))
        .collect::<Vec<_>>()
        .join("; ");
    let out = Command::new("sh")
        .arg("-euc")
        .arg(format!(". \"$1\"; {script}"))
        .arg("sh")
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn kdump_tools_defaults_source_cleanly() {
    let out = render(
        "kdump-tools.j2",
        minijinja::context! { server_address => "198.19.0.10",
        ssh_key => "/root/.ssh/netdump_kdump_id_ed25519" },
    );
    assert!(out.starts_with("# Managed by netdump-provision"), "{out}");
    let vals = source_with_sh(
        &out,
        &[
            "USE_KDUMP",
            "SSH",
            "SSH_KEY",
            "KDUMP_COREDIR",
            "MAKEDUMP_ARGS",
            "HOSTTAG",
            "SSH_KDUMP_RETRY",
        ],
    );
    assert_eq!(
        vals,
        [
            "1",
            "netdump@198.19.0.10",
            "/root/.ssh/netdump_kdump_id_ed25519",
            "/var/crash",
            "-F -c -d 31",
            "ip",
            "16"
        ]
    );
}

#[test]
fn kdump_tools_overrides_and_no_double_flatten() {
    let out = render(
        "kdump-tools.j2",
        minijinja::context! { server_address => "dump.example", ssh_user => "dumper",
        dump_dir => "/srv/crash", ssh_key => "/root/.ssh/k", makedump_args => "-F -l -d 1",
        hosttag => "hostname" },
    );
    let vals = source_with_sh(&out, &["SSH", "KDUMP_COREDIR", "MAKEDUMP_ARGS", "HOSTTAG"]);
    assert_eq!(
        vals,
        [
            "dumper@dump.example",
            "/srv/crash",
            "-F -l -d 1",
            "hostname"
        ]
    );
}

#[test]
fn kdump_conf_directives() {
    let out = render(
        "kdump.conf.j2",
        minijinja::context! { server_address => "198.19.0.10" },
    );
    assert!(out.starts_with("# Managed by netdump-provision"), "{out}");
    let directives: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        directives,
        [
            "ssh netdump@198.19.0.10",
            "sshkey /root/.ssh/kdump_id_rsa",
            "path /var/crash",
            "core_collector makedumpfile -F -l --message-level 7 -d 31",
            "failure_action reboot",
        ],
        "{out}"
    );
    let legacy = render(
        "kdump.conf.j2",
        minijinja::context! { server_address => "2001:db8::1", legacy_default => true,
        failure_action => "shell", ssh_key => "/root/.ssh/k" },
    );
    assert!(legacy.contains("\nssh netdump@2001:db8::1\n"), "{legacy}");
    assert!(legacy.contains("\nsshkey /root/.ssh/k\n"), "{legacy}");
    assert!(legacy.ends_with("\ndefault shell\n"), "{legacy:?}");
}
