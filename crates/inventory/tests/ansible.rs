//! Cross-check `Inventory::to_list_json` against real `ansible-inventory -i FILE --list`.
//! Needs ansible-core (`pip install ansible-core`); skips loudly when it is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use netdump_inventory::Inventory;
use serde_json::Value;

/// The fixtures are the repository's (shared with the `provision` tests).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> Vec<PathBuf> {
    let root = repo_root().join("tests/fixtures/inventory");
    let mut out = Vec::new();
    for d in std::fs::read_dir(&root).unwrap() {
        let p = d.unwrap().path().join("inventory.yaml");
        if p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    out.push(repo_root().join("inventories/example.yaml"));
    out
}

/// Drop what only some ansible-core versions print (`_meta.profile`).
fn normalize(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.remove("profile");
    }
    v
}

#[test]
fn list_json_matches_ansible_inventory() {
    if Command::new("ansible-inventory")
        .arg("--version")
        .output()
        .is_err()
    {
        netdump_test_support::skip(
            "list_json_matches_ansible_inventory",
            "`ansible-inventory` is not on PATH (pip install ansible-core)",
        );
        return;
    }
    let files = fixtures();
    assert!(
        files.len() >= 4,
        "expected several fixture inventories, found {files:?}"
    );
    for f in files {
        let out = Command::new("ansible-inventory")
            .arg("-i")
            .arg(&f)
            .arg("--list")
            .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "true")
            .env("ANSIBLE_INVENTORY_ENABLED", "yaml")
            .env("ANSIBLE_NOCOLOR", "1")
            .output()
            .expect("run ansible-inventory");
        assert!(
            out.status.success(),
            "ansible-inventory failed on {}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = normalize(serde_json::from_slice(&out.stdout).expect("ansible JSON"));
        let inv = Inventory::load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let ours = inv.to_list_json();
        assert_eq!(
            ours,
            expected,
            "{}:\nours:\n{}\nansible:\n{}",
            f.display(),
            serde_json::to_string_pretty(&ours).unwrap(),
            serde_json::to_string_pretty(&expected).unwrap()
        );
        eprintln!("OK: {} matches ansible-inventory --list", f.display());
    }
}
