//! Inventory tests: write an inventory (and its vars files) into a temporary directory.

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
