//! What every crate's tests share and nothing ships (publish = false).
//!
//! - [`skip`]: the one place that decides whether a test that cannot run may skip.
//! - [`inventory`]: temporary inventories with their vars files.
//! - [`netdump_client`]: a scripted netdump client speaking the wire protocol.

pub mod inventory;
pub mod netdump_client;

/// Whether skipping is forbidden: `CI` is set to anything but empty, `0` or `false`.
///
/// A test that needs a tool (root, sshd, qemu, ansible-inventory, the static build...) prints a
/// loud `SKIP:` line when the tool is absent, so a developer's partial machine still runs the
/// rest. In CI (`CI` set, as `.ci/run` runs) the set-up has already checked that every tool is
/// there, so a skip can only mean a broken set-up: it fails the test instead of counting as a
/// pass.
pub fn skips_forbidden() -> bool {
    std::env::var("CI")
        .map(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
        .unwrap_or(false)
}

/// Skips the calling test with a loud `SKIP:` line, or panics under CI.
/// `test` names the test (or check), `reason` says what is missing and how to get it.
#[track_caller]
pub fn skip(test: &str, reason: &str) {
    if skips_forbidden() {
        panic!("SKIP is a failure under CI: {test}: {reason} (.ci/run installs every tool)");
    }
    eprintln!("SKIP: {test}: {reason}");
}
