//! Harnesses of the `provision` integration tests (compiled once, into tests/main.rs). What
//! other crates' tests share too lives in crates/test-support.

pub mod kdump_sim;
pub mod lab;
pub mod nshost;
pub mod receiver_harness;
pub mod receiver_process;
pub mod storm;

use std::path::{Path, PathBuf};

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
