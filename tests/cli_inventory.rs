//! `provision inventory`: what the command prints.

use netdump_test_support::inventory::write_inventory;

#[test]
fn list_output_masks_secret_variables() {
    let t = write_inventory(
        "all:\n  hosts:\n    h1:\n      netdump_password_hash: '$6$salt$secrethash'\n      other: visible\n",
        &[],
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_provision"))
        .args(["inventory", "-i"])
        .arg(&t.path)
        .arg("--list")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("secrethash"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["_meta"]["hostvars"]["h1"]["other"], "visible");
    assert_eq!(
        v["_meta"]["hostvars"]["h1"]["netdump_password_hash"],
        "********"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_provision"))
        .args(["inventory", "-i"])
        .arg(&t.path)
        .args(["--host", "h1"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("secrethash"), "{text}");
    assert!(text.contains("visible"), "{text}");
}
