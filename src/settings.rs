//! Typed, validated netdump settings per host, resolved from inventory variables + defaults.
//!
//! This is the only place that reads `netdump_*` variables. Everything downstream (roles,
//! apply, test-crash) works on these types.
//!
//! CONTRACT (shared with roles/apply): the type definitions below are fixed; `resolve` fills them.

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

/// `netdump_key_type`: the type of a client's ssh key pair (the one it dumps or registers with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    /// Per client, from facts: netdump clients get ed25519 when their OpenSSH has it (6.5+) and
    /// RSA otherwise; kdump clients get what their distribution's kdump expects (ed25519 on
    /// Debian, RSA on RHEL-family).
    Auto,
    Ed25519,
    Rsa,
    /// Only for the oldest netdump clients; current OpenSSH can neither make nor accept DSA keys.
    Dsa,
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

/// The netdump account's password, as the user resource applies it.
pub use crate::resources::user::PasswordSpec;

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
    /// `netdump_concurrent_dumps` (64, the receiver's default).
    pub concurrent_dumps: u32,
    /// `netdump_secure` (true): magic check in the receiver.
    pub secure: bool,
    /// `netdump_space_check` (true).
    pub space_check: bool,
    /// `netdump_min_free` (256 MiB): the dump sink refuses a new dump below this many free
    /// bytes in the dump directory.
    pub min_free: u64,
    /// `netdump_keep_dumps` (5): dumps kept per client by the sink (0 = no limit).
    pub keep_dumps: u32,
    /// `netdump_max_total` (0 = no limit): bytes of dumps kept in the whole dump directory.
    pub max_total: u64,
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
    /// `netdump_key_type` (auto).
    pub key_type: KeyType,
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

/// Where a bad value came from (defined by the inventory, which knows files and lines).
pub use netdump_inventory::Origin;

// ---------------------------------------------------------------------------------------------
// Resolution: inventory variables + defaults → the types above.
// ---------------------------------------------------------------------------------------------

use std::collections::HashMap;
use std::fmt;

use yaml_serde::Value;

use netdump_inventory::Inventory;
use netdump_inventory::coerce;

/// Group whose hosts are dump servers.
pub const SERVER_GROUP: &str = "netdump_servers";
/// Group whose hosts are dump clients.
pub const CLIENT_GROUP: &str = "netdump_clients";

/// Defaults, as documented on the types.
pub const DEFAULT_PORT: u16 = 6666;
pub const DEFAULT_DUMP_DIR: &str = "/var/crash";
pub const DEFAULT_CONCURRENT_DUMPS: u32 = netdump_receiver::config::DEFAULT_CONCURRENT as u32;
/// `netdump_min_free`: what test-crash's preflight asks for too.
pub const DEFAULT_MIN_FREE: u64 = 256 << 20;
/// `netdump_keep_dumps`: enough history for a lab server.
pub const DEFAULT_KEEP_DUMPS: u32 = 5;
pub const DEFAULT_UID: u32 = 34;
pub const DEFAULT_SYSRQ: u32 = 1;
pub const DEFAULT_CORE_COLLECTOR: &str = "makedumpfile -F -l --message-level 7 -d 31";
pub const DEFAULT_CRASHKERNEL: &str = "256M";

/// The netdump password given outside the inventory (`--password-file` or `NETDUMP_PASSWORD`).
///
/// Precedence: a plaintext given here wins over `netdump_password_hash` from the inventory (it
/// is the operator's explicit choice for this run); the inventory hash is used only when no
/// plaintext is given; with neither, the password is not managed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordInput {
    pub plaintext: Option<Secret>,
}

/// One invalid setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    pub origin: Origin,
    pub host: String,
    /// Variable name (empty when the problem is not one variable, e.g. group membership).
    pub var: String,
    /// What is wrong and what is expected. Never contains secret values.
    pub message: String,
    /// How many other hosts have the same error from the same definition.
    pub other_hosts: usize,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin.file.display())?;
        if let Some(l) = self.origin.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": host {}: ", self.host)?;
        if !self.var.is_empty() {
            write!(f, "{}: ", self.var)?;
        }
        f.write_str(&self.message)?;
        if self.other_hosts > 0 {
            write!(f, " (same for {} other host(s))", self.other_hosts)?;
        }
        Ok(())
    }
}

/// Every invalid setting found, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SettingsErrors(pub Vec<SettingsError>);

impl fmt::Display for SettingsErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// What a variable must look like.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Port,
    Uint {
        min: u64,
        max: u64,
    },
    Bool,
    /// A host name, address or similar token: non-empty, no whitespace/quotes, no leading `-`.
    Token,
    /// A network interface name.
    Iface,
    AbsPath,
    Mac,
    OneOf(&'static [&'static str]),
    /// `netdump_legacy_key_types`: a boolean or `auto`.
    BoolOrAuto,
    CryptHash,
    /// NETDUMPKEYEXCHANGE: only `none`.
    KeyExchange,
    /// NETLOGADDR: an address or `NONE`.
    NetlogAddr,
    CoreCollector,
    Crashkernel,
}

/// Every `netdump_*` variable `provision` understands.
const VARS: &[(&str, Kind)] = &[
    ("netdump_server", Kind::Token),
    ("netdump_server_address", Kind::Token),
    ("netdump_port", Kind::Port),
    ("netdump_dump_dir", Kind::AbsPath),
    ("netdump_password_hash", Kind::CryptHash),
    (
        "netdump_client_flavor",
        Kind::OneOf(&["netdump", "kdump", "auto"]),
    ),
    ("netdump_dev", Kind::Iface),
    ("netdump_sysrq", Kind::Uint { min: 0, max: 511 }),
    ("netdump_manage_packages", Kind::Bool),
    ("netdump_manage_services", Kind::Bool),
    (
        "netdump_receiver",
        Kind::OneOf(&["embedded", "package", "none"]),
    ),
    ("netdump_concurrent_dumps", Kind::Uint { min: 1, max: 1024 }),
    ("netdump_secure", Kind::Bool),
    ("netdump_space_check", Kind::Bool),
    (
        "netdump_min_free",
        Kind::Uint {
            min: 0,
            max: u64::MAX,
        },
    ),
    (
        "netdump_keep_dumps",
        Kind::Uint {
            min: 0,
            max: 100_000,
        },
    ),
    (
        "netdump_max_total",
        Kind::Uint {
            min: 0,
            max: u64::MAX,
        },
    ),
    ("netdump_legacy_key_types", Kind::BoolOrAuto),
    (
        "netdump_key_type",
        Kind::OneOf(&["auto", "ed25519", "rsa", "dsa"]),
    ),
    ("netdump_uid", Kind::Uint { min: 1, max: 65533 }),
    ("netdump_netdumpport", Kind::Port),
    ("netdump_netdumpmacaddr", Kind::Mac),
    ("netdump_netdumpkeyexchange", Kind::KeyExchange),
    ("netdump_localport", Kind::Port),
    ("netdump_netlogaddr", Kind::NetlogAddr),
    ("netdump_netlogport", Kind::Port),
    ("netdump_netlogmacaddr", Kind::Mac),
    ("netdump_syslogaddr", Kind::Token),
    ("netdump_syslogport", Kind::Port),
    ("netdump_syslogmacaddr", Kind::Mac),
    (
        "netdump_idletimeout",
        Kind::Uint {
            min: 0,
            max: u32::MAX as u64,
        },
    ),
    (
        "netdump_mhz",
        Kind::Uint {
            min: 1,
            max: u32::MAX as u64,
        },
    ),
    ("netdump_kdump_core_collector", Kind::CoreCollector),
    ("netdump_crashkernel", Kind::Crashkernel),
    ("netdump_kdump_ssh_key", Kind::AbsPath),
    ("netdump_netconsole", Kind::Bool),
    ("netdump_netconsole_extended", Kind::Bool),
    ("netdump_netconsole_port", Kind::Port),
];

/// Names of every `netdump_*` variable `provision` understands.
pub fn known_variables() -> impl Iterator<Item = &'static str> {
    VARS.iter().map(|(n, _)| *n)
}

/// A checked value.
#[derive(Debug, Clone)]
enum Parsed {
    U(u64),
    B(Option<bool>),
    S(String),
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "'\"`$;\\|&<>".contains(c))
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_crypt_hash(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('$') else {
        return false;
    };
    let fields: Vec<&str> = rest.split('$').collect();
    fields.len() >= 3
        && fields[0].chars().all(|c| c.is_ascii_alphanumeric())
        && !fields[0].is_empty()
        && fields[1..].iter().all(|f| !f.is_empty())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "$./=,-".contains(c))
}

fn parse(kind: Kind, v: &Value) -> Result<Parsed, String> {
    let got = || coerce::describe(v);
    let string = || coerce::as_string(v).map(|s| s.trim().to_string());
    match kind {
        Kind::Port => coerce::as_u16(v)
            .filter(|p| *p > 0)
            .map(|p| Parsed::U(p.into()))
            .ok_or_else(|| format!("expected an integer 1-65535, got {}", got())),
        Kind::Uint { min, max } => coerce::as_u64(v)
            .filter(|n| (min..=max).contains(n))
            .map(Parsed::U)
            .ok_or_else(|| format!("expected an integer {min}-{max}, got {}", got())),
        Kind::Bool => coerce::as_bool(v)
            .map(|b| Parsed::B(Some(b)))
            .ok_or_else(|| format!("expected a boolean (true/false/yes/no), got {}", got())),
        Kind::BoolOrAuto => match string().as_deref() {
            Some("auto") => Ok(Parsed::B(None)),
            _ => coerce::as_bool(v)
                .map(|b| Parsed::B(Some(b)))
                .ok_or_else(|| format!("expected a boolean or `auto`, got {}", got())),
        },
        Kind::Token => string()
            .filter(|s| is_token(s))
            .map(Parsed::S)
            .ok_or_else(|| {
                format!("expected a host name or address (no spaces, quotes or leading '-'), got {}", got())
            }),
        Kind::Iface => string()
            .filter(|s| {
                is_token(s)
                    && s.len() <= 15
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.:@-".contains(c))
            })
            .map(Parsed::S)
            .ok_or_else(|| format!("expected a network interface name like eth0 (at most 15 characters), got {}", got())),
        Kind::AbsPath => string()
            .filter(|s| {
                s.starts_with('/')
                    && !s.split('/').any(|c| c == "..")
                    && !s.chars().any(|c| c.is_whitespace() || c.is_control() || "'\"`$;\\|&<>".contains(c))
            })
            .map(Parsed::S)
            .ok_or_else(|| format!("expected an absolute path without `..` or spaces, got {}", got())),
        Kind::Mac => match v {
            // YAML 1.1 reads an unquoted MAC whose groups are all 00-59 as a base-60 integer.
            Value::Number(_) => Err(format!(
                "expected a MAC address, got the number {}: quote it (\"52:54:00:12:34:56\"), since YAML 1.1 reads an unquoted MAC as a base-60 integer",
                got()
            )),
            _ => string()
                .filter(|s| is_mac(s))
                .map(Parsed::S)
                .ok_or_else(|| format!("expected a MAC address like \"52:54:00:12:34:56\", got {}", got())),
        },
        Kind::OneOf(choices) => string()
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| choices.contains(&s.as_str()))
            .map(Parsed::S)
            .ok_or_else(|| format!("expected one of {}, got {}", choices.join(", "), got())),
        Kind::CryptHash => match v {
            Value::String(s) if is_crypt_hash(s.trim()) => Ok(Parsed::S(s.trim().to_string())),
            // Never echo the value: it is a password hash.
            _ => Err("expected a crypt(3) hash like $6$salt$hash (e.g. from `mkpasswd -m sha-512`); value not shown".into()),
        },
        Kind::KeyExchange => match string().map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("none") => Ok(Parsed::S("none".into())),
            _ => Err(format!(
                "only `none` is supported (leave it unset for the ssh key exchange), got {}",
                got()
            )),
        },
        Kind::NetlogAddr => match string() {
            Some(s) if s == "NONE" || is_token(&s) => Ok(Parsed::S(s)),
            _ => Err(format!("expected an address or NONE, got {}", got())),
        },
        Kind::CoreCollector => {
            let s = string().filter(|s| !s.is_empty() && !s.chars().any(|c| c.is_control()));
            let Some(s) = s else {
                return Err(format!("expected a command line like {DEFAULT_CORE_COLLECTOR:?}, got {}", got()));
            };
            let has_f = s
                .split_whitespace()
                .any(|t| t.starts_with('-') && !t.starts_with("--") && t.contains('F'));
            if has_f {
                Ok(Parsed::S(s))
            } else {
                Err(format!(
                    "must contain -F (kdump's ssh target needs flattened makedumpfile output), got {}",
                    got()
                ))
            }
        }
        Kind::Crashkernel => string()
            .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || ":,@-".contains(c)))
            .map(Parsed::S)
            .ok_or_else(|| format!("expected a crashkernel= value like 256M or 1G-4G:192M,4G-:256M, got {}", got())),
    }
}

struct Resolver<'a> {
    inv: &'a Inventory,
    errors: Vec<SettingsError>,
}

impl Resolver<'_> {
    fn err(&mut self, host: &str, var: &str, message: String) {
        let origin = if var.is_empty() || var.starts_with("--") {
            Origin {
                file: self.inv.source().to_path_buf(),
                line: None,
            }
        } else {
            self.inv.origin(host, var)
        };
        self.errors.push(SettingsError {
            origin,
            host: host.to_string(),
            var: var.to_string(),
            message,
            other_hosts: 0,
        });
    }

    /// The checked value of `var` for `host`; `None` when unset (or null) or invalid (then an
    /// error is recorded).
    fn get(&mut self, host: &str, var: &str) -> Option<Parsed> {
        let kind = VARS.iter().find(|(n, _)| *n == var).map(|(_, k)| *k)?;
        let v = self.inv.host(host)?.vars.get(var)?;
        if v.is_null() {
            return None;
        }
        match parse(kind, v) {
            Ok(p) => Some(p),
            Err(m) => {
                self.err(host, var, m);
                None
            }
        }
    }

    fn u64(&mut self, host: &str, var: &str, default: u64) -> u64 {
        match self.get(host, var) {
            Some(Parsed::U(n)) => n,
            _ => default,
        }
    }

    fn u16(&mut self, host: &str, var: &str, default: u16) -> u16 {
        u16::try_from(self.u64(host, var, default.into())).unwrap_or(default)
    }

    fn u32(&mut self, host: &str, var: &str, default: u32) -> u32 {
        u32::try_from(self.u64(host, var, default.into())).unwrap_or(default)
    }

    fn opt_u16(&mut self, host: &str, var: &str) -> Option<u16> {
        match self.get(host, var) {
            Some(Parsed::U(n)) => u16::try_from(n).ok(),
            _ => None,
        }
    }

    fn opt_u32(&mut self, host: &str, var: &str) -> Option<u32> {
        match self.get(host, var) {
            Some(Parsed::U(n)) => u32::try_from(n).ok(),
            _ => None,
        }
    }

    fn bool(&mut self, host: &str, var: &str, default: bool) -> bool {
        match self.get(host, var) {
            Some(Parsed::B(Some(b))) => b,
            _ => default,
        }
    }

    fn string(&mut self, host: &str, var: &str) -> Option<String> {
        match self.get(host, var) {
            Some(Parsed::S(s)) => Some(s),
            _ => None,
        }
    }
}

/// Resolve typed settings for the whole fleet. All problems are collected and returned
/// together.
pub fn resolve(inv: &Inventory, password: PasswordInput) -> Result<FleetSettings, SettingsErrors> {
    let mut cx = Resolver {
        inv,
        errors: Vec::new(),
    };
    let targets = cx.targets();
    cx.check_netdump_variables();
    let (server_hosts, client_hosts) = cx.roles();
    let mut servers = cx.servers(&server_hosts, &client_hosts, &targets, &password);
    let clients = cx.clients(&client_hosts, &server_hosts, &servers);
    cx.legacy_key_types(&mut servers, &clients);
    if cx.errors.is_empty() {
        Ok(FleetSettings {
            targets,
            servers,
            clients,
        })
    } else {
        Err(SettingsErrors(dedup(cx.errors)))
    }
}

impl Resolver<'_> {
    /// Connection targets, and no two inventory hosts on the same address:port.
    fn targets(&mut self) -> IndexMap<String, Target> {
        let mut targets = IndexMap::new();
        let mut seen: HashMap<(String, u16), String> = HashMap::new();
        for h in self.inv.hosts() {
            let t = Target::from(match self.inv.try_connection(&h.name) {
                Ok(c) => c,
                Err(e) => {
                    self.err(&h.name, &e.variable, e.message);
                    self.inv.connection(&h.name)
                }
            });
            if !is_token(&t.address) {
                self.err(
                    &h.name,
                    "ansible_host",
                    format!(
                        "expected a host name or address (no spaces, quotes or leading '-'), got {:?}",
                        t.address
                    ),
                );
            }
            let key = (t.address.to_ascii_lowercase(), t.port);
            if let Some(first) = seen.get(&key) {
                self.err(
                    &h.name,
                    "ansible_host",
                    format!(
                        "address {}:{} is also used by host {first}; each inventory host must be a different machine (set ansible_host/ansible_port)",
                        t.address, t.port
                    ),
                );
            } else {
                seen.insert(key, h.name.clone());
            }
            targets.insert(h.name.clone(), t);
        }
        targets
    }

    /// Unknown netdump_* variables, and type checks of every known one on every host.
    fn check_netdump_variables(&mut self) {
        let known: Vec<&str> = known_variables().collect();
        for h in self.inv.hosts() {
            for var in h.vars.keys() {
                if !var.starts_with("netdump_") {
                    continue;
                }
                if known.contains(&var) {
                    self.get(&h.name, var);
                } else {
                    let close = coerce::close_matches(var, known.iter().copied());
                    let hint = match close.first() {
                        Some(c) => format!("; did you mean {c}?"),
                        None => {
                            "; see inventories/example.yaml for the supported variables".to_string()
                        }
                    };
                    self.err(&h.name, var, format!("unknown netdump variable{hint}"));
                }
            }
        }
    }

    /// The hosts of the server and client groups; a host in both is an error.
    fn roles(&mut self) -> (Vec<String>, Vec<String>) {
        let server_hosts = self.inv.group_hosts(SERVER_GROUP);
        let client_hosts = self.inv.group_hosts(CLIENT_GROUP);
        for h in &server_hosts {
            if client_hosts.contains(h) {
                self.err(
                    h,
                    "",
                    format!("is in both {SERVER_GROUP} and {CLIENT_GROUP}; a host is either a dump server or a client"),
                );
            }
        }
        (server_hosts, client_hosts)
    }

    /// Each server's settings (a host in both groups is neither).
    fn servers(
        &mut self,
        server_hosts: &[String],
        client_hosts: &[String],
        targets: &IndexMap<String, Target>,
        password: &PasswordInput,
    ) -> IndexMap<String, ServerSettings> {
        let mut servers = IndexMap::new();
        for h in server_hosts.iter().filter(|h| !client_hosts.contains(h)) {
            let address = self.string(h, "netdump_server_address").unwrap_or_else(|| {
                targets
                    .get(h)
                    .map_or_else(|| h.clone(), |t| t.address.clone())
            });
            let pw = match (&password.plaintext, self.string(h, "netdump_password_hash")) {
                (Some(p), _) if p.is_empty() => {
                    self.err(h, "--password-file", "the netdump password is empty".into());
                    PasswordSpec::Unset
                }
                (Some(p), _) => PasswordSpec::Plain(p.clone()),
                (None, Some(hash)) => PasswordSpec::Hash(Secret::new(hash)),
                (None, None) => PasswordSpec::Unset,
            };
            let receiver = match self.string(h, "netdump_receiver").as_deref() {
                Some("package") => ReceiverMode::Package,
                Some("none") => ReceiverMode::None,
                _ => ReceiverMode::Embedded,
            };
            let s = ServerSettings {
                host: h.clone(),
                address,
                port: self.u16(h, "netdump_port", DEFAULT_PORT),
                dump_dir: self
                    .string(h, "netdump_dump_dir")
                    .unwrap_or_else(|| DEFAULT_DUMP_DIR.to_string()),
                password: pw,
                receiver,
                concurrent_dumps: self.u32(h, "netdump_concurrent_dumps", DEFAULT_CONCURRENT_DUMPS),
                secure: self.bool(h, "netdump_secure", true),
                space_check: self.bool(h, "netdump_space_check", true),
                min_free: self.u64(h, "netdump_min_free", DEFAULT_MIN_FREE),
                keep_dumps: self.u32(h, "netdump_keep_dumps", DEFAULT_KEEP_DUMPS),
                max_total: self.u64(h, "netdump_max_total", 0),
                legacy_key_types: false, // decided below, once the clients are known
                uid: self.u32(h, "netdump_uid", DEFAULT_UID),
                manage_packages: self.bool(h, "netdump_manage_packages", true),
                manage_services: self.bool(h, "netdump_manage_services", true),
            };
            servers.insert(h.clone(), s);
        }
        servers
    }

    /// Each client's settings, with its server's address, port and dump directory.
    fn clients(
        &mut self,
        client_hosts: &[String],
        server_hosts: &[String],
        servers: &IndexMap<String, ServerSettings>,
    ) -> IndexMap<String, ClientSettings> {
        let mut clients = IndexMap::new();
        for h in client_hosts.iter().filter(|h| !server_hosts.contains(h)) {
            let server = match self.string(h, "netdump_server") {
                Some(name) if servers.contains_key(&name) => Some(name),
                Some(name) => {
                    let msg = if self.inv.host(&name).is_some() {
                        format!(
                            "host {name} is not in group {SERVER_GROUP}; add it there or name another server"
                        )
                    } else {
                        let close =
                            coerce::close_matches(&name, servers.keys().map(String::as_str));
                        match close.first() {
                            Some(c) => format!("no server named {name:?}; did you mean {c}?"),
                            None => format!(
                                "no server named {name:?}; servers are: {}",
                                servers.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        }
                    };
                    self.err(h, "netdump_server", msg);
                    None
                }
                None => match servers.len() {
                    1 => servers.keys().next().cloned(),
                    0 => {
                        self.err(
                            h,
                            "",
                            format!("no dump server: add a host to group {SERVER_GROUP}"),
                        );
                        None
                    }
                    _ => {
                        self.err(
                            h,
                            "netdump_server",
                            format!(
                                "not set and there are several servers ({}); set netdump_server to one of them",
                                servers.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        );
                        None
                    }
                },
            };
            let flavor = match self.string(h, "netdump_client_flavor").as_deref() {
                Some("netdump") => ClientFlavor::Netdump,
                Some("kdump") => ClientFlavor::Kdump,
                _ => ClientFlavor::Auto,
            };
            let sysconfig = NetdumpSysconfig {
                netdumpport: self.opt_u16(h, "netdump_netdumpport"),
                netdumpmacaddr: self.string(h, "netdump_netdumpmacaddr"),
                netdumpkeyexchange: self.string(h, "netdump_netdumpkeyexchange"),
                localport: self.opt_u16(h, "netdump_localport"),
                netlogaddr: self.string(h, "netdump_netlogaddr"),
                netlogport: self.opt_u16(h, "netdump_netlogport"),
                netlogmacaddr: self.string(h, "netdump_netlogmacaddr"),
                syslogaddr: self.string(h, "netdump_syslogaddr"),
                syslogport: self.opt_u16(h, "netdump_syslogport"),
                syslogmacaddr: self.string(h, "netdump_syslogmacaddr"),
                idletimeout: self.opt_u32(h, "netdump_idletimeout"),
                mhz: self.opt_u32(h, "netdump_mhz"),
            };
            let key_type = match self.string(h, "netdump_key_type").as_deref() {
                Some("ed25519") => KeyType::Ed25519,
                Some("rsa") => KeyType::Rsa,
                Some("dsa") => KeyType::Dsa,
                _ => KeyType::Auto,
            };
            let dev = self.string(h, "netdump_dev");
            let sysrq = self.u32(h, "netdump_sysrq", DEFAULT_SYSRQ);
            let manage_packages = self.bool(h, "netdump_manage_packages", true);
            let manage_services = self.bool(h, "netdump_manage_services", true);
            let own_address = self.string(h, "netdump_server_address");
            let core_collector = self
                .string(h, "netdump_kdump_core_collector")
                .unwrap_or_else(|| DEFAULT_CORE_COLLECTOR.to_string());
            let crashkernel = self
                .string(h, "netdump_crashkernel")
                .unwrap_or_else(|| DEFAULT_CRASHKERNEL.to_string());
            let ssh_key = self.string(h, "netdump_kdump_ssh_key");
            let netconsole = self.bool(h, "netdump_netconsole", true);
            let netconsole_extended = self.bool(h, "netdump_netconsole_extended", true);
            let netconsole_port = self.opt_u16(h, "netdump_netconsole_port");
            let Some(server) = server else { continue };
            let srv = &servers[&server];
            clients.insert(
                h.clone(),
                ClientSettings {
                    host: h.clone(),
                    flavor,
                    server: server.clone(),
                    server_address: own_address.unwrap_or_else(|| srv.address.clone()),
                    port: srv.port,
                    dump_dir: srv.dump_dir.clone(),
                    dev,
                    sysconfig,
                    sysrq,
                    kdump: KdumpSettings {
                        core_collector,
                        crashkernel,
                        ssh_key,
                        netconsole,
                        netconsole_extended,
                        netconsole_port: netconsole_port.unwrap_or(srv.port),
                    },
                    manage_packages,
                    manage_services,
                    key_type,
                },
            );
        }
        clients
    }

    /// `netdump_legacy_key_types`: explicit value, else `auto` = true when any client of the
    /// server may be a netdump client (flavor netdump, or auto which can resolve to netdump).
    fn legacy_key_types(
        &mut self,
        servers: &mut IndexMap<String, ServerSettings>,
        clients: &IndexMap<String, ClientSettings>,
    ) {
        let names: Vec<String> = servers.keys().cloned().collect();
        for name in names {
            let auto = clients.values().any(|c| {
                c.server == name && matches!(c.flavor, ClientFlavor::Netdump | ClientFlavor::Auto)
            });
            let v = match self.get(&name, "netdump_legacy_key_types") {
                Some(Parsed::B(Some(b))) => b,
                _ => auto,
            };
            servers[&name].legacy_key_types = v;
        }
    }
}

/// Merge identical errors (same definition, variable and message) reported for several hosts.
fn dedup(errors: Vec<SettingsError>) -> Vec<SettingsError> {
    let mut out: Vec<SettingsError> = Vec::new();
    let mut hosts: Vec<std::collections::HashSet<String>> = Vec::new();
    for e in errors {
        let same = out
            .iter()
            .position(|p| p.origin == e.origin && p.var == e.var && p.message == e.message);
        match same {
            Some(i) => {
                if hosts[i].insert(e.host.clone()) {
                    out[i].other_hosts += 1;
                }
            }
            None => {
                hosts.push([e.host.clone()].into_iter().collect());
                out.push(e);
            }
        }
    }
    out
}
