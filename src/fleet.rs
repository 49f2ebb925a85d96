//! What every fleet command shares (apply, test-crash, crashes, lab, and the commands to come):
//! loading the inventory with its settings, connection options and the ssh connector, the output
//! mode, exit codes, and the running program. The CLI (src/cli.rs) sits on top of this; nothing
//! here depends on it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use async_trait::async_trait;
use clap::{Args, ValueEnum};

use crate::apply::Connector;
use crate::settings::{self, FleetSettings, PasswordInput};
use crate::ssh::{Remote, SshError, SshOptions, Target};
use netdump_inventory::Inventory;

/// Exit codes (also in README).
pub mod exit {
    pub const OK: i32 = 0;
    pub const USAGE: i32 = 1;
    pub const HOST_FAILED: i32 = 2;
    pub const UNREACHABLE: i32 = 4;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

/// Connection options shared by apply and test-crash.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// known_hosts file to verify host keys against (default: ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE", env = "PROVISION_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,
    /// Record the keys of hosts not yet in known_hosts. A CHANGED key is always refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// ssh client config file (default: the user's).
    #[arg(long, value_name = "FILE", env = "PROVISION_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// Seconds to wait for a host to accept the ssh connection.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub connect_timeout: u64,
}

impl ConnectArgs {
    pub fn ssh_options(&self) -> SshOptions {
        SshOptions {
            known_hosts: self.known_hosts.clone(),
            accept_new_host_keys: self.accept_new_host_keys,
            ssh_config: self.ssh_config.clone(),
            connect_timeout: Duration::from_secs(self.connect_timeout.max(1)),
            ..SshOptions::default()
        }
    }
}

/// ssh as the apply engine's connector.
pub struct SshConnector {
    pub options: SshOptions,
}

#[async_trait]
impl Connector for SshConnector {
    async fn connect(&self, target: &Target) -> Result<Arc<dyn Remote>, SshError> {
        let host = crate::ssh::connect(target, &self.options).await?;
        Ok(Arc::new(host))
    }
}

/// This program's own executable. `/proc/self/exe` still opens when the file on disk was
/// replaced (e.g. rebuilt) while we run, unlike the path `current_exe` returns.
pub fn self_exe() -> std::io::Result<PathBuf> {
    let proc_exe = PathBuf::from("/proc/self/exe");
    if proc_exe.exists() {
        Ok(proc_exe)
    } else {
        std::env::current_exe()
    }
}

/// Loads and resolves an inventory; errors carry file and line.
pub fn load_fleet(
    path: &std::path::Path,
    password: PasswordInput,
) -> Result<(Inventory, FleetSettings)> {
    let inv = Inventory::load(path).map_err(anyhow::Error::new)?;
    let fleet = settings::resolve(&inv, password).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((inv, fleet))
}
