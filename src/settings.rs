//! Typed, validated netdump settings per host, resolved from inventory variables + defaults.
//!
//! This is the only place that reads `netdump_*` variables. Everything downstream (roles,
//! apply, test-crash) works on these types.
//!
//! CONTRACT (shared with roles/apply): the type definitions below are fixed; `resolve` fills them.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Serialize;

use crate::secret::Secret;
use crate::ssh::Target;

/// Which kind of dump path a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientFlavor {
    /// RHEL 3/4-era netdump.ko / netconsole.o + `/etc/sysconfig/netdump` + `service netdump`.
    Netdump,
    /// kdump's ssh target (+ netconsole for the log).
    Kdump,
    /// Decide from facts at apply time: netdump when the kernel has a netdump module, else kdump.
    Auto,
}

/// How the server receives netdump/netconsole traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverMode {
    /// Upload this binary and run `provision receiver` as a systemd service (default).
    Embedded,
    /// Install and run the distribution's `netdump-server` package.
    Package,
    /// Do not manage a receiver at all.
    None,
}

/// Where the `netdump` user's password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSpec {
    /// `netdump_password_hash`: a crypt(3) string, set as is.
    Hash(Secret),
    /// `--password-file` / `NETDUMP_PASSWORD`: hashed locally with SHA-512 crypt; the current
    /// hash on the server is verified against it first so re-runs stay idempotent.
    Plain(Secret),
    /// No password managed (the account stays locked for password logins).
    Unset,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerSettings {
    /// Inventory name.
    pub host: String,
    /// Address clients use to reach this server (`netdump_server_address`, default its
    /// `ansible_host`).
    pub address: String,
    /// UDP port of the receiver (`netdump_port`, 6666).
    pub port: u16,
    /// `netdump_dump_dir` (/var/crash); also the netdump user's home.
    pub dump_dir: String,
    #[serde(skip)]
    pub password: PasswordSpec,
    /// `netdump_receiver`: embedded | package | none.
    pub receiver: ReceiverMode,
    /// `netdump_concurrent_dumps` (4).
    pub concurrent_dumps: u32,
    /// `netdump_secure` (true): magic check in the receiver.
    pub secure: bool,
    /// `netdump_space_check` (true).
    pub space_check: bool,
    /// `netdump_legacy_key_types` (auto = true when any of its clients is a netdump client):
    /// add an sshd `Match User netdump` block accepting ssh-dss / ssh-rsa (SHA-1) keys.
    pub legacy_key_types: bool,
    /// `netdump_uid` (34, used when free).
    pub uid: u32,
    pub manage_packages: bool,
    pub manage_services: bool,
}

/// Every `/etc/sysconfig/netdump` variable. `None` = leave it unset in the file (the init
/// script's or kernel's default applies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetdumpSysconfig {
    pub netdumpport: Option<u16>,
    pub netdumpmacaddr: Option<String>,
    /// `none` disables the ssh/magic exchange.
    pub netdumpkeyexchange: Option<String>,
    pub localport: Option<u16>,
    pub netlogaddr: Option<String>,
    pub netlogport: Option<u16>,
    pub netlogmacaddr: Option<String>,
    pub syslogaddr: Option<String>,
    pub syslogport: Option<u16>,
    pub syslogmacaddr: Option<String>,
    pub idletimeout: Option<u32>,
    pub mhz: Option<u32>,
}

/// kdump-specific client settings (issue 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KdumpSettings {
    /// `netdump_kdump_core_collector` ("makedumpfile -F -l --message-level 7 -d 31").
    pub core_collector: String,
    /// `netdump_crashkernel` ("256M"), written to the boot configuration when no memory is
    /// reserved.
    pub crashkernel: String,
    /// `netdump_kdump_ssh_key` (/root/.ssh/netdump_kdump_id_ed25519 on Debian,
    /// /root/.ssh/kdump_id_rsa on RHEL-family when unset: `None` = per-distro default).
    pub ssh_key: Option<String>,
    /// `netdump_netconsole` (true): stream the console to the receiver.
    pub netconsole: bool,
    /// `netdump_netconsole_extended` (true).
    pub netconsole_extended: bool,
    /// `netdump_netconsole_port` (defaults to the server's `netdump_port`).
    pub netconsole_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientSettings {
    /// Inventory name.
    pub host: String,
    pub flavor: ClientFlavor,
    /// Inventory name of this client's server (`netdump_server`).
    pub server: String,
    /// How this client reaches the server (`netdump_server_address` of the client, else the
    /// server's address).
    pub server_address: String,
    /// Server UDP port.
    pub port: u16,
    /// Server's dump dir (for kdump's path / KDUMP_COREDIR).
    pub dump_dir: String,
    /// `netdump_dev`: interface used for dumping; `None` = from facts (route to the server).
    pub dev: Option<String>,
    pub sysconfig: NetdumpSysconfig,
    /// `netdump_sysrq` (1).
    pub sysrq: u32,
    pub kdump: KdumpSettings,
    pub manage_packages: bool,
    pub manage_services: bool,
}

/// The whole fleet, resolved.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// How to connect to every host of the inventory, by inventory name, in inventory order.
    pub targets: IndexMap<String, Target>,
    /// Hosts in group `netdump_servers`.
    pub servers: IndexMap<String, ServerSettings>,
    /// Hosts in group `netdump_clients`.
    pub clients: IndexMap<String, ClientSettings>,
}

/// Where a bad value came from, for messages ("inventories/lab.yaml:12: netdump_port: ...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: Option<usize>,
}
