//! What the VM-lab tests share: each test's own lab (network namespace and /24, so tests that
//! run at the same time never share a bridge or a route), the image cache, the program they run,
//! and `provision lab ...` aimed at their lab.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use netdump_provision::lab::{self, LabConfig};

/// One test's lab: its namespace and its `a.b.c.0/24`. Every lab test has its own.
#[derive(Debug, Clone, Copy)]
pub struct LabSlot {
    pub netns: &'static str,
    pub subnet: [u8; 3],
}

pub const E2E: LabSlot = LabSlot {
    netns: "ndlabt",
    subnet: [198, 19, 1],
};
pub const KDUMP_RECIPE: LabSlot = LabSlot {
    netns: "ndlabk",
    subnet: [198, 19, 2],
};
pub const DEMO: LabSlot = LabSlot {
    netns: "ndlabd",
    subnet: [198, 19, 3],
};
pub const VERIFY: LabSlot = LabSlot {
    netns: "ndlabv",
    subnet: [198, 19, 4],
};
pub const CRASH_KINDS: LabSlot = LabSlot {
    netns: "ndlabc",
    subnet: [198, 19, 5],
};

/// VM lab timeouts in the tests: TCG boots are slow on a loaded machine.
pub const TIMEOUT: Duration = Duration::from_secs(2400);

/// The image cache (`NETDUMP_LAB_CACHE`, else the lab's default), shared by every lab.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("NETDUMP_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(lab::DEFAULT_CACHE_DIR))
}

/// The static (musl) build when it exists — the program as shipped, and the receiver `apply`
/// installs on the server VM is this same file — else the test build, with a note.
pub fn static_or_test_build(test: &str) -> PathBuf {
    super::static_provision().unwrap_or_else(|| {
        eprintln!(
            "NOTE: {test} runs the dynamically linked test build; for the static one: {}",
            super::STATIC_BUILD_HINT
        );
        PathBuf::from(env!("CARGO_BIN_EXE_provision"))
    })
}

impl LabSlot {
    /// The lab's address ending in `last` (server .10, clients .11 on).
    pub fn ip(&self, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, last)
    }

    /// The lab's configuration for a state directory.
    pub fn config(&self, state: &Path) -> LabConfig {
        LabConfig {
            state_dir: state.to_path_buf(),
            cache_dir: cache_dir(),
            netns: self.netns.into(),
            subnet: self.subnet,
            mirror: None,
            timeout: TIMEOUT,
        }
    }

    /// `program lab ARGS --state-dir STATE ...` aimed at this lab.
    pub fn provision_lab(&self, program: &Path, state: &Path, args: &[&str]) -> Output {
        let [a, b, c] = self.subnet;
        Command::new(program)
            .arg("lab")
            .args(args)
            .arg("--state-dir")
            .arg(state)
            .arg("--cache-dir")
            .arg(cache_dir())
            .args(["--netns", self.netns])
            .args(["--subnet", &format!("{a}.{b}.{c}")])
            .args(["--timeout", &TIMEOUT.as_secs().to_string()])
            .output()
            .expect("run provision lab")
    }
}
