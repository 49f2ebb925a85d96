//! Shared test fixtures. Every integration test binary compiles all of them and uses a part.
#![allow(dead_code)]

pub mod kdump_sim;
pub mod nshost;
pub mod storm;

// Inventory tests: write an inventory (and vars files) into a temp dir.

use std::path::{Path, PathBuf};

pub struct TempInv {
    /// Keeps the directory alive for the test.
    pub _dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// `files`: (relative path, content); the inventory itself is `inventory.yaml`.
pub fn write_inventory(inventory: &str, files: &[(&str, &str)]) -> TempInv {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("inventory.yaml");
    std::fs::write(&path, inventory).unwrap();
    for (rel, content) in files {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap_or(Path::new("."))).unwrap();
        std::fs::write(p, content).unwrap();
    }
    TempInv { _dir: dir, path }
}

/// The statically linked release build of `provision` (musl), which `.ci/test` builds before the
/// test suite: `cargo build --release --target x86_64-unknown-linux-musl --bin provision`.
/// `None` (and a loud SKIP line from the caller) when it has not been built.
pub fn static_provision() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let p = target.join("x86_64-unknown-linux-musl/release/provision");
    p.is_file().then_some(p)
}

pub const STATIC_BUILD_HINT: &str = "rustup target add x86_64-unknown-linux-musl && cargo build --release --target x86_64-unknown-linux-musl --bin provision (.ci/test does)";
