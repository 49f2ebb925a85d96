//! The checks themselves (pure): observations and settings in, one [`CheckResult`] per check
//! out, each with what was seen and the fix. docs/verify.md explains every check.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::CheckResult;
use super::observe::{ClientObs, PathObs, ServerObs, normalize_mac, parse_netconsole};
use crate::settings::{ClientFlavor, ClientSettings, ServerSettings};

// Check names (stable: they are the JSON `check` field and the JUnit case names).
pub const REACHABLE: &str = "reachable";
pub const KDUMP_ARMED: &str = "kdump_armed";
pub const CRASHKERNEL: &str = "crashkernel";
pub const CAPTURE_FILES: &str = "capture_files";
pub const SSH_PATH: &str = "ssh_path";
pub const NETCONSOLE_MAC: &str = "netconsole_mac";
pub const NETCONSOLE_MARKER: &str = "netconsole_marker";
pub const NETDUMP_SERVICE: &str = "netdump_service";
pub const NETDUMP_CONFIG: &str = "netdump_config";
pub const RECEIVER: &str = "receiver";
pub const SINK_BUILD: &str = "sink_build";
pub const SSHD: &str = "sshd";
pub const FREE_SPACE: &str = "free_space";
pub const RETENTION: &str = "retention";

fn result(host: &str, check: &str, ok: bool, detail: String, fix: &str) -> CheckResult {
    CheckResult {
        host: host.to_string(),
        check: check.to_string(),
        ok,
        detail,
        fix: if ok { String::new() } else { fix.to_string() },
    }
}

/// `1.5 GiB`-style sizes for details.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

// ---------------------------------------------------------------------------------------------
// Sizing.
// ---------------------------------------------------------------------------------------------

/// A `crashkernel=` range list (`2G-64G:256M,64G-:512M`): `(start, end, size)`, end exclusive.
pub type Ladder = Vec<(u64, Option<u64>, u64)>;

fn size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        b'T' | b't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// Parses the range syntax of `crashkernel=` (kernel's admin-guide).
pub fn parse_ladder(s: &str) -> Option<Ladder> {
    s.split(',')
        .map(|step| {
            let (range, sz) = step.split_once(':')?;
            let (start, end) = range.split_once('-')?;
            let end = if end.is_empty() {
                None
            } else {
                Some(size(end)?)
            };
            Some((size(start)?, end, size(sz)?))
        })
        .collect()
}

/// What a ladder reserves for `ram` bytes (0 below its first step).
pub fn ladder_size(l: &Ladder, ram: u64) -> u64 {
    l.iter()
        .find(|(start, end, _)| ram >= *start && end.is_none_or(|e| ram < e))
        .map(|(_, _, s)| *s)
        .unwrap_or(0)
}

/// The distribution's own default ladder for this client (docs/verify.md, "crashkernel"):
/// Debian's kdump-tools (`/etc/default/grub.d/kdump-tools.cfg`) or RHEL's
/// `kdumpctl get-default-crashkernel`, by architecture. Returns the name and the ladder.
pub fn distro_ladder(debian: bool, arch: &str) -> (&'static str, &'static str) {
    match (debian, arch) {
        (true, "aarch64" | "arm64") => (
            "kdump-tools (arm64)",
            "2G-4G:320M,4G-32G:512M,32G-64G:1024M,64G-128G:2048M,128G-:4096M",
        ),
        (true, _) => ("kdump-tools", "512M-:192M"),
        (false, "aarch64") => ("kdumpctl (aarch64)", "2G-4G:256M,4G-64G:320M,64G-:576M"),
        (false, "ppc64le" | "ppc64") => (
            "kdumpctl (ppc64le)",
            "2G-4G:384M,4G-16G:512M,16G-64G:1G,64G-128G:2G,128G-:4G",
        ),
        (false, _) => ("kdumpctl", "2G-64G:256M,64G-:512M"),
    }
}

/// The dump level of a makedumpfile command line (`-d N`), 31 when absent.
pub fn dump_level(core_collector: &str) -> u32 {
    let w: Vec<&str> = core_collector.split_whitespace().collect();
    w.windows(2)
        .find(|p| p[0] == "-d")
        .and_then(|p| p[1].parse().ok())
        .or_else(|| {
            w.iter()
                .find_map(|x| x.strip_prefix("--dump-level=").and_then(|v| v.parse().ok()))
        })
        .unwrap_or(31)
        & 31
}

/// A conservative size of a client's dump: all of RAM without filtering; an eighth with user,
/// cache and free pages left out (`-d 31`; the lab's 1 GiB VM gave 40 MB, about a 25th); half
/// when only some are (docs/verify.md, "free_space").
pub fn expected_dump_bytes(ram: u64, flavor: ClientFlavor, core_collector: &str) -> u64 {
    if flavor == ClientFlavor::Netdump {
        return ram; // netdump-server writes every page
    }
    let level = dump_level(core_collector);
    if level & (8 | 16) == (8 | 16) && level & (2 | 4) != 0 {
        ram / 8
    } else if level & (8 | 16) != 0 {
        ram / 2
    } else {
        ram
    }
}

// ---------------------------------------------------------------------------------------------
// Clients.
// ---------------------------------------------------------------------------------------------

/// How the netconsole marker went.
#[derive(Debug, Clone, PartialEq)]
pub enum Marker {
    /// Not checked (netconsole is off for this client in the inventory); no check is reported.
    NotApplicable,
    /// Not checked because a link reported elsewhere is down (the server's receiver, or the
    /// server itself); no check is reported for the client, the server's check names it.
    Blocked,
    /// Could not be written into the client's kernel log.
    WriteFailed,
    /// Seen in the receiver's console log of the client.
    Seen { secs: f64 },
    /// Not seen within the deadline; `log` tells whether the receiver has a console log of
    /// this client at all.
    NotSeen { secs: u64, log: bool },
}

pub struct ClientInput<'a> {
    pub settings: &'a ClientSettings,
    pub obs: &'a ClientObs,
    /// The second round trip: `Err` when it could not run.
    pub path: Result<&'a PathObs, String>,
    pub marker: Marker,
    /// The key path the ssh probe used.
    pub key: String,
}

pub fn client_checks(i: &ClientInput<'_>) -> Vec<CheckResult> {
    let s = i.settings;
    let flavor = crate::roles::effective_flavor(s, &i.obs.facts);
    let mut out = Vec::new();
    match flavor {
        ClientFlavor::Netdump => {
            out.push(netdump_service(i));
            out.push(netdump_config(i));
            out.push(ssh_path(i));
        }
        _ => {
            out.push(kdump_armed(i));
            out.push(crashkernel(i));
            out.push(capture_files(i));
            out.push(ssh_path(i));
            if s.kdump.netconsole {
                out.push(netconsole_mac(i));
            }
        }
    }
    if let Some(r) = marker_check(i) {
        out.push(r);
    }
    out
}

fn kdump_armed(i: &ClientInput<'_>) -> CheckResult {
    let host = &i.settings.host;
    let loaded = i.obs.facts.kexec_crash_loaded;
    let tool = i.obs.f.get("kdump_tool");
    let text = super::observe::clean(i.obs.f.get("kdump_text").unwrap_or(""));
    let rc = i.obs.f.i64("kdump_rc");
    // kdump-tools prints "current state: ready to kdump" when armed; kdumpctl exits 0 with
    // "Kdump is operational".
    let status_ok = match tool {
        Some("kdump-config") => {
            let t = text.to_ascii_lowercase();
            t.contains("ready to kdump") && !t.contains("not ready")
        }
        Some("kdumpctl") => rc == Some(0) && text.to_ascii_lowercase().contains("operational"),
        _ => false,
    };
    let loaded_s = match loaded {
        Some(true) => "1",
        Some(false) => "0",
        None => "absent",
    };
    let detail = format!(
        "/sys/kernel/kexec_crash_loaded = {loaded_s}; {}",
        match tool {
            Some(t) => format!("`{t} status`: {text}"),
            None => "neither kdump-config nor kdumpctl is installed".into(),
        }
    );
    let unit = if i.obs.facts.is_debian_like() {
        "kdump-tools"
    } else {
        "kdump"
    };
    result(
        host,
        KDUMP_ARMED,
        loaded == Some(true) && status_ok,
        detail,
        &format!(
            "load the capture kernel: `systemctl restart {unit}` on {host} (Debian: `kdump-config load`), then read `{}` status; if no memory is reserved, `provision apply --reboot`",
            tool.unwrap_or("kdump-config")
        ),
    )
}

fn crashkernel(i: &ClientInput<'_>) -> CheckResult {
    let host = &i.settings.host;
    let reserved = i.obs.facts.kexec_crash_size.unwrap_or(0);
    let debian = i.obs.facts.is_debian_like();
    let (name, ladder) = distro_ladder(debian, &i.obs.facts.arch);
    let Some(ram) = i.obs.ram_bytes() else {
        return result(
            host,
            CRASHKERNEL,
            false,
            format!(
                "{} reserved; RAM unknown (no MemTotal in /proc/meminfo)",
                human_bytes(reserved)
            ),
            "check /proc/meminfo on the host",
        );
    };
    let want = parse_ladder(ladder)
        .map(|l| ladder_size(&l, ram))
        .unwrap_or(0);
    let ok = reserved > 0 && reserved >= want;
    let detail = format!(
        "{} reserved for {} of RAM; {name} default `crashkernel={ladder}` asks {}",
        human_bytes(reserved),
        human_bytes(ram),
        if want == 0 {
            "nothing at this size (any reservation accepted)".to_string()
        } else {
            human_bytes(want)
        }
    );
    result(
        host,
        CRASHKERNEL,
        ok,
        detail,
        &format!(
            "set netdump_crashkernel to at least {} (or `crashkernel={ladder}`) and reboot: `provision apply --reboot` writes it when nothing is reserved; otherwise edit the boot configuration",
            human_bytes(want.max(1 << 27))
        ),
    )
}

fn capture_files(i: &ClientInput<'_>) -> CheckResult {
    let host = &i.settings.host;
    let kernel = &super::observe::clean(&i.obs.facts.kernel);
    if i.obs.facts.is_debian_like() {
        // Debian boots the capture kernel on the real root filesystem: keys and known_hosts
        // are read at dump time, so only the initrd for the running kernel must exist.
        let ok = i.obs.mtime("deb_initrd").is_some();
        return result(
            host,
            CAPTURE_FILES,
            ok,
            format!(
                "/var/lib/kdump/initrd.img-{kernel} {}",
                if ok { "present" } else { "missing" }
            ),
            "rebuild the capture initrd: `kdump-config load` (kdump-tools builds it for the running kernel), or reinstall kdump-tools",
        );
    }
    let Some(initrd) = i.obs.mtime("rhel_initrd") else {
        return result(
            host,
            CAPTURE_FILES,
            false,
            format!("/boot/initramfs-{kernel}kdump.img missing"),
            "`kdumpctl rebuild` (or `systemctl restart kdump`)",
        );
    };
    // kdumpctl does not rebuild when the key or known_hosts change: older than them means the
    // capture environment carries stale copies.
    let mut newer: Vec<&str> = Vec::new();
    if i.obs.mtime("rhel_conf").is_some_and(|t| t > initrd) {
        newer.push("/etc/kdump.conf");
    }
    if i.obs.mtime("known_hosts").is_some_and(|t| t > initrd) {
        newer.push(crate::roles::netdump_client::KNOWN_HOSTS);
    }
    let keys = crate::roles::kdump_client::key_paths(i.settings);
    for (n, k) in keys.iter().enumerate().take(8) {
        if *k == i.key && i.obs.mtime(&format!("key{n}")).is_some_and(|t| t > initrd) {
            newer.push("the ssh key");
        }
    }
    result(
        host,
        CAPTURE_FILES,
        newer.is_empty(),
        if newer.is_empty() {
            format!("/boot/initramfs-{kernel}kdump.img newer than kdump.conf, key and known_hosts")
        } else {
            format!(
                "/boot/initramfs-{kernel}kdump.img is older than {}",
                newer.join(", ")
            )
        },
        "`kdumpctl rebuild` on the host (the capture initramfs holds its own copy of the key and known_hosts)",
    )
}

fn ssh_path(i: &ClientInput<'_>) -> CheckResult {
    let s = i.settings;
    let host = &s.host;
    let what = format!("ssh -i {} netdump@{} probe", i.key, s.server_address);
    let p = match &i.path {
        Ok(p) => *p,
        Err(e) => {
            return result(
                host,
                SSH_PATH,
                false,
                format!(
                    "{what}: the probe could not run: {}",
                    super::observe::clean(e)
                ),
                "check that the host answers ssh, then run verify again",
            );
        }
    };
    match (&p.probe, p.ssh_rc) {
        (Some(pr), Some(0)) => {
            let wrong_client = pr.client.as_deref().is_some_and(|c| c != host.as_str());
            let detail = format!(
                "{what}: dump sink {} answered as {} ({}): {} available to this client, {} dump(s) kept (keep {}){}",
                super::observe::clean(&pr.sink),
                super::observe::clean(pr.client.as_deref().unwrap_or("?")),
                pr.ip,
                human_bytes(pr.available_bytes),
                pr.dumps,
                pr.keep_dumps,
                if wrong_client {
                    "; this key belongs to another client on the server"
                } else {
                    ""
                }
            );
            result(
                host,
                SSH_PATH,
                !wrong_client,
                detail,
                "`provision apply` rewrites the server's key lines from the inventory",
            )
        }
        (None, Some(0)) => result(
            host,
            SSH_PATH,
            false,
            format!(
                "{what}: the login succeeded but the dump sink did not answer: {}",
                p.ssh_text
            ),
            "the server does not run the dump sink for this key: `provision apply` (server)",
        ),
        (_, rc) => {
            let t = p.ssh_text.to_ascii_lowercase();
            let fix = if t.contains("host key verification failed")
                || t.contains("remote host identification has changed")
                || t.contains("no ed25519 host key is known")
                || t.contains("host key for")
            {
                "the server's host key is not the one pinned in /etc/ssh/ssh_known_hosts: verify the server's new key, then `provision apply` pins it"
            } else if t.contains("permission denied") {
                "the server does not accept this client's key: `provision apply` restores its line in authorized_keys2"
            } else if t.contains("identity file") || t.contains("no such file") {
                "the client's key pair is missing: `provision apply` creates it and installs its public half"
            } else if t.contains("refused")
                || t.contains("timed out")
                || t.contains("no route")
                || t.contains("unreachable")
            {
                "the client cannot reach sshd on the server: check the server's sshd, routing and firewalls between them"
            } else {
                "run the command above on the client as root to see why"
            };
            let rc = rc.map(|r| r.to_string()).unwrap_or_else(|| "?".into());
            result(
                host,
                SSH_PATH,
                false,
                format!("{what}: exit {rc}: {}", p.ssh_text),
                fix,
            )
        }
    }
}

fn netconsole_mac(i: &ClientInput<'_>) -> CheckResult {
    let host = &i.settings.host;
    let conf = i.obs.f.get("nc_conf").unwrap_or("");
    let target = parse_netconsole(conf);
    let route = i.obs.facts.route.as_ref();
    let hop = super::observe::clean(
        &route
            .and_then(|r| r.via.clone())
            .unwrap_or_else(|| i.settings.server_address.clone()),
    );
    let current = route.and_then(|r| r.mac.as_deref()).and_then(normalize_mac);
    let Some(t) = target else {
        return result(
            host,
            NETCONSOLE_MAC,
            false,
            format!(
                "no netconsole target in {} ({})",
                crate::roles::kdump_client::NETCONSOLE_MODPROBE,
                super::observe::clean(conf)
            ),
            "`provision apply` writes the netconsole options",
        );
    };
    // Live dynamic targets (configfs) too, when the kernel has them.
    let live: Vec<String> = i
        .obs
        .f
        .all("nc_target")
        .iter()
        .filter_map(|l| l.split_whitespace().nth(2).and_then(normalize_mac))
        .collect();
    let Some(cur) = current else {
        return result(
            host,
            NETCONSOLE_MAC,
            false,
            format!(
                "netconsole sends to {}; the next hop {hop} has no resolved MAC now (`ip neigh`)",
                t.mac.as_deref().unwrap_or("broadcast")
            ),
            "check the route to the server and that the next hop answers ARP/ND",
        );
    };
    let conf_ok = t.mac.as_deref() == Some(cur.as_str());
    let live_ok = live.iter().all(|m| *m == cur);
    result(
        host,
        NETCONSOLE_MAC,
        conf_ok && live_ok,
        format!(
            "netconsole target MAC {} (configured){}; next hop {hop} is at {cur} now",
            t.mac.as_deref().unwrap_or("none"),
            if live.is_empty() {
                String::new()
            } else {
                format!(", {} (live)", live.join(", "))
            }
        ),
        "the next hop changed (router or NIC swap): `provision apply` rewrites the netconsole options with the current MAC and reloads netconsole",
    )
}

fn netdump_service(i: &ClientInput<'_>) -> CheckResult {
    let host = &i.settings.host;
    let rc = i.obs.f.i64("netdump_rc");
    result(
        host,
        NETDUMP_SERVICE,
        rc == Some(0),
        match rc {
            Some(rc) => format!("`service netdump status` exit {rc}"),
            None => format!("{} is missing", crate::roles::netdump_client::SYSCONFIG),
        },
        "`service netdump start` on the host (and `chkconfig netdump on`); `provision apply` installs and configures it",
    )
}

fn netdump_config(i: &ClientInput<'_>) -> CheckResult {
    let s = i.settings;
    let addr = i.obs.sysconfig("NETDUMPADDR");
    let port = i
        .obs
        .sysconfig("NETDUMPPORT")
        .map(|p| p.parse::<u16>().ok())
        .unwrap_or(Some(6666));
    let mac = i
        .obs
        .sysconfig("NETDUMPMACADDR")
        .and_then(|m| normalize_mac(&m));
    let cur = i
        .obs
        .facts
        .route
        .as_ref()
        .and_then(|r| r.mac.as_deref())
        .and_then(normalize_mac);
    let mut wrong = Vec::new();
    if addr.as_deref() != Some(s.server_address.as_str()) {
        wrong.push(format!(
            "NETDUMPADDR is {:?}, the server is {}",
            addr.as_deref().map(super::observe::clean),
            s.server_address
        ));
    }
    if port != Some(s.port) {
        wrong.push(format!(
            "NETDUMPPORT gives {port:?}, the receiver listens on {}",
            s.port
        ));
    }
    if s.sysconfig.netdumpmacaddr.is_none() && mac.is_some() && mac != cur {
        wrong.push(format!(
            "NETDUMPMACADDR is {}, the next hop is at {} now",
            mac.as_deref().unwrap_or("?"),
            cur.as_deref().unwrap_or("an unresolved MAC")
        ));
    }
    result(
        &s.host,
        NETDUMP_CONFIG,
        wrong.is_empty(),
        if wrong.is_empty() {
            format!(
                "NETDUMPADDR {}, port {}, MAC {}",
                s.server_address,
                s.port,
                mac.as_deref().unwrap_or("(none)")
            )
        } else {
            wrong.join("; ")
        },
        "`provision apply` rewrites /etc/sysconfig/netdump, then `service netdump restart`",
    )
}

fn marker_check(i: &ClientInput<'_>) -> Option<CheckResult> {
    let host = &i.settings.host;
    let (ok, detail, fix) = match &i.marker {
        Marker::NotApplicable | Marker::Blocked => return None,
        Marker::WriteFailed => (
            false,
            "the marker could not be written to /dev/kmsg".to_string(),
            "run verify as root on the client (ansible_user root or ansible_become)",
        ),
        Marker::Seen { secs } => (
            true,
            format!("marker written to the kernel log reached the receiver in {secs:.1}s"),
            "",
        ),
        Marker::NotSeen { secs, log } => (
            false,
            format!(
                "marker written to the kernel log did not reach the receiver within {secs}s ({})",
                if *log {
                    "it has a console log of this client, so earlier messages came through"
                } else {
                    "it has never logged this client"
                }
            ),
            "check that netconsole is loaded (`lsmod | grep netconsole`, `systemctl status netdump-netconsole`), its target address, port and MAC, and the console log level (`dmesg -n`)",
        ),
    };
    Some(result(host, NETCONSOLE_MARKER, ok, detail, fix))
}

/// The kernel log level the marker is written at: notice (5) when the console prints it,
/// else the highest level the console still prints (a `quiet` boot prints only below 4).
pub fn marker_level(console_loglevel: Option<u8>) -> u8 {
    match console_loglevel {
        Some(l) if l <= 5 => l.saturating_sub(1),
        _ => 5,
    }
}

// ---------------------------------------------------------------------------------------------
// Servers.
// ---------------------------------------------------------------------------------------------

pub struct ServerInput<'a> {
    pub settings: &'a ServerSettings,
    pub obs: &'a ServerObs,
    /// SHA-256 of the binary apply would install (this program or --receiver-binary).
    pub controller_sha256: Result<String, String>,
    /// Expected dump size of each client of this server that answered.
    pub client_dumps: BTreeMap<String, u64>,
    /// The server's address as clients reach it (for "bound where clients send").
    pub client_facing: Vec<IpAddr>,
    /// Clients whose netconsole marker could not be checked because of this server.
    pub markers_unchecked: Vec<String>,
    /// What the dump sink told its clients they may still write (the least of their `probe`
    /// answers: free space above the reserve, capped by `netdump_max_total`).
    pub sink_available: Option<u64>,
}

pub fn server_checks(i: &ServerInput<'_>) -> Vec<CheckResult> {
    let mut out = Vec::new();
    if i.settings.receiver != crate::settings::ReceiverMode::None {
        out.push(receiver(i));
    }
    out.push(sink_build(i));
    out.push(sshd(i));
    out.push(free_space(i));
    out.push(retention(i));
    out
}

/// True when the receiver bound on `port` hears datagrams sent to one of `to`.
pub fn receiver_hears(bound: &[IpAddr], to: &[IpAddr]) -> bool {
    bound
        .iter()
        .any(|b| b.is_unspecified() || to.iter().any(|t| t.to_canonical() == b.to_canonical()))
}

fn receiver(i: &ServerInput<'_>) -> CheckResult {
    let s = i.settings;
    let bound = i.obs.udp_bound();
    let unit = i.obs.f.get("receiver_unit");
    let ok = receiver_hears(&bound, &i.client_facing);
    let mut detail = if bound.is_empty() {
        format!("nothing listens on UDP port {}", s.port)
    } else {
        format!(
            "UDP port {} bound on {}",
            s.port,
            bound
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if let Some(u) = unit {
        detail.push_str(&format!(
            "; {} is {}",
            crate::roles::RECEIVER_SERVICE,
            super::observe::clean(u)
        ));
    }
    if !i.markers_unchecked.is_empty() {
        detail.push_str(&format!(
            "; netconsole markers of {} not checked",
            i.markers_unchecked.join(", ")
        ));
    }
    result(
        &s.host,
        RECEIVER,
        ok,
        detail,
        &match s.receiver {
            crate::settings::ReceiverMode::Package => {
                "`service netdump-server start`; check /etc/netdump.conf".to_string()
            }
            _ => format!(
                "`systemctl restart {0}`, then `journalctl -u {0}`; `provision apply` installs it",
                crate::roles::RECEIVER_SERVICE
            ),
        },
    )
}

fn sink_build(i: &ServerInput<'_>) -> CheckResult {
    let host = &i.settings.host;
    let installed = i.obs.sink_sha256();
    match (&i.controller_sha256, installed) {
        (Ok(want), Some(have)) => result(
            host,
            SINK_BUILD,
            *want == have,
            format!(
                "{} sha256 {}…, this controller's build {}…",
                crate::roles::SINK_BINARY,
                &have[..12],
                &want[..want.len().min(12)]
            ),
            "`provision apply` installs this controller's build as the receiver and dump sink",
        ),
        (_, None) => result(
            host,
            SINK_BUILD,
            false,
            format!("{} is missing or unreadable", crate::roles::SINK_BINARY),
            "`provision apply` installs it",
        ),
        (Err(e), Some(have)) => result(
            host,
            SINK_BUILD,
            false,
            format!(
                "installed sha256 {}…; this controller's build cannot be read: {e}",
                &have[..12]
            ),
            "pass --receiver-binary FILE (the build apply installs)",
        ),
    }
}

fn sshd(i: &ServerInput<'_>) -> CheckResult {
    let host = &i.settings.host;
    let rc = i.obs.f.i64("sshd_t_rc");
    let t = super::observe::clean(i.obs.f.get("sshd_t").unwrap_or(""));
    let dropin = i.obs.f.u64("dropin").unwrap_or(0);
    let force = i.obs.f.get("forcecommand").map(str::trim).unwrap_or("");
    let include = i.obs.facts.sshd_include;
    let mut wrong = Vec::new();
    match rc {
        Some(0) => {}
        Some(rc) => wrong.push(format!("`sshd -t` exit {rc}: {t}")),
        None => wrong.push("sshd is not installed".to_string()),
    }
    if include {
        if dropin == 0 {
            wrong.push(format!(
                "{} has no `Match User netdump` block",
                crate::roles::SSHD_DROPIN
            ));
        }
        if force.is_empty() {
            wrong.push("sshd forces no command on user netdump (`sshd -T -C user=netdump`)".into());
        }
    }
    result(
        host,
        SSHD,
        wrong.is_empty(),
        if wrong.is_empty() {
            if include {
                format!(
                    "`sshd -t` ok; user netdump forced to `{}`",
                    super::observe::clean(force)
                )
            } else {
                "`sshd -t` ok; sshd_config has no sshd_config.d Include, so the key lines' command= is the only confinement".into()
            }
        } else {
            wrong.join("; ")
        },
        "fix sshd's configuration (`sshd -t` names the line), then `provision apply` rewrites the drop-in",
    )
}

fn free_space(i: &ServerInput<'_>) -> CheckResult {
    let s = i.settings;
    let Some((total, avail)) = i.obs.df() else {
        return result(
            &s.host,
            FREE_SPACE,
            false,
            format!("cannot read the free space of {} (`df`)", s.dump_dir),
            "check that the dump directory exists: `provision apply`",
        );
    };
    let mut usable = avail.saturating_sub(s.min_free);
    if let Some(q) = i.sink_available {
        usable = usable.min(q);
    }
    let largest = i.client_dumps.iter().max_by_key(|(_, b)| **b);
    let need = largest.map(|(_, b)| *b).unwrap_or(0);
    let ok = avail > s.min_free && usable >= need;
    let detail = format!(
        "{} free of {} in {}; reserve (netdump_min_free) {}{}; largest expected dump {}",
        human_bytes(avail),
        human_bytes(total),
        s.dump_dir,
        human_bytes(s.min_free),
        match i.sink_available {
            Some(q) => format!("; the sink lets a client write {} more", human_bytes(q)),
            None => String::new(),
        },
        match largest {
            Some((c, b)) => format!("{} ({c})", human_bytes(*b)),
            None => "none (no client answered)".into(),
        }
    );
    result(
        &s.host,
        FREE_SPACE,
        ok,
        detail,
        "make room in the dump directory (delete old dumps or grow its filesystem), or lower netdump_keep_dumps / netdump_max_total so the sink deletes old dumps sooner",
    )
}

fn retention(i: &ServerInput<'_>) -> CheckResult {
    let s = i.settings;
    let want = crate::roles::sink_command(s);
    let norm = |x: &str| x.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut wrong = Vec::new();
    let force = i.obs.f.get("forcecommand").map(norm).unwrap_or_default();
    if i.obs.facts.sshd_include && !force.is_empty() && force != want {
        wrong.push(format!("sshd forces `{}`", super::observe::clean(&force)));
    }
    for k in i.obs.f.all("key_command") {
        if norm(k) != want {
            wrong.push(format!("a key line runs `{}`", super::observe::clean(k)));
        }
    }
    let keep = if s.keep_dumps == 0 {
        "all dumps kept".to_string()
    } else {
        format!("{} dumps kept per client", s.keep_dumps)
    };
    let total = if s.max_total == 0 {
        "no total limit".to_string()
    } else {
        format!("at most {} in all", human_bytes(s.max_total))
    };
    result(
        &s.host,
        RETENTION,
        wrong.is_empty(),
        if wrong.is_empty() {
            format!(
                "{keep}, {total}, {} kept free ({} key lines)",
                human_bytes(s.min_free),
                i.obs.f.u64("key_lines").unwrap_or(0)
            )
        } else {
            format!("the inventory asks `{want}` but {}", wrong.join("; "))
        },
        "`provision apply` rewrites the sshd drop-in and the key lines with the inventory's retention settings",
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::verify::observe::{ClientObs, PathObs, ServerObs};

    const FACTS: &str = "os_id=debian\nos_version=12\nkernel=6.1.0-28-amd64\narch=x86_64\npkg=apt\ninit=systemd\nboot_id=b\nkexec_crash_size=268435456\nkexec_crash_loaded=1\nroute=198.18.0.10 dev eth0 src 198.18.0.11\nneigh=198.18.0.10 dev eth0 lladdr 52:54:00:00:00:10 REACHABLE\nprobe_end=1\n";

    fn client() -> ClientSettings {
        let mut c = crate::roles::netdump_client::tests::client();
        c.flavor = ClientFlavor::Kdump;
        c.host = "c1".into();
        c.server_address = "198.18.0.10".into();
        c
    }

    fn obs(extra: &str) -> ClientObs {
        ClientObs::parse(&format!(
            "{FACTS}vf_memtotal_kb=4000000\nvf_kdump_tool=kdump-config\nvf_kdump_rc=0\nvf_kdump_text=current state: ready to kdump\n\
             vf_mtime_deb_initrd=100\nvf_nc_conf=options netconsole netconsole=+6665@198.18.0.11/eth0,6666@198.18.0.10/52:54:00:00:00:10\n{extra}"
        ))
        .unwrap()
    }

    const PROBE: &str = "vf_marker=written\nvf_ssh_rc=0\nvf_ssh_out={\"sink\":\"0.1.0\",\"client\":\"c1\",\"ip\":\"198.18.0.11\",\"available_bytes\":1000,\"keep_dumps\":5}\n";

    fn run(o: &ClientObs, path: &PathObs, marker: Marker) -> Vec<CheckResult> {
        let s = client();
        client_checks(&ClientInput {
            settings: &s,
            obs: o,
            path: Ok(path),
            marker,
            key: "/root/.ssh/netdump_kdump_id_ed25519".into(),
        })
    }

    fn failed(r: &[CheckResult]) -> Vec<&str> {
        r.iter()
            .filter(|c| !c.ok)
            .map(|c| c.check.as_str())
            .collect()
    }

    #[test]
    fn a_healthy_kdump_client_passes_every_check() {
        let r = run(&obs(""), &PathObs::parse(PROBE), Marker::Seen { secs: 0.4 });
        assert_eq!(failed(&r), Vec::<&str>::new(), "{r:#?}");
        let names: Vec<&str> = r.iter().map(|c| c.check.as_str()).collect();
        assert_eq!(
            names,
            [
                KDUMP_ARMED,
                CRASHKERNEL,
                CAPTURE_FILES,
                SSH_PATH,
                NETCONSOLE_MAC,
                NETCONSOLE_MARKER
            ]
        );
        assert!(r.iter().all(|c| c.fix.is_empty()));
    }

    #[test]
    fn each_broken_link_fails_its_own_check_only() {
        let p = PathObs::parse(PROBE);
        let seen = Marker::Seen { secs: 1.0 };
        // Not loaded.
        let o = obs("").clone();
        let mut unloaded = o.clone();
        unloaded.facts.kexec_crash_loaded = Some(false);
        assert_eq!(failed(&run(&unloaded, &p, seen.clone())), [KDUMP_ARMED]);
        // kdump-tools' own verdict counts too ("Not ready to kdump" contains "ready to kdump").
        let mut not_ready = o.clone();
        not_ready.f = crate::verify::observe::Fields::parse(&format!(
            "vf_memtotal_kb=4000000\nvf_kdump_tool=kdump-config\nvf_kdump_text=current state   : Not ready to kdump\nvf_mtime_deb_initrd=1\nvf_nc_conf={}\n",
            o.f.get("nc_conf").unwrap()
        ));
        assert_eq!(failed(&run(&not_ready, &p, seen.clone())), [KDUMP_ARMED]);
        // Wrong MAC.
        let wrong_mac = obs("")
            .f
            .get("nc_conf")
            .unwrap()
            .replace("52:54:00:00:00:10", "02:00:00:00:00:01");
        let o2 = ClientObs::parse(&format!("{FACTS}vf_memtotal_kb=4000000\nvf_kdump_tool=kdump-config\nvf_kdump_text=ready to kdump\nvf_mtime_deb_initrd=1\nvf_nc_conf={wrong_mac}\n")).unwrap();
        let r = run(&o2, &p, seen.clone());
        assert_eq!(failed(&r), [NETCONSOLE_MAC]);
        assert!(
            r[4].detail.contains("02:00:00:00:00:01") && r[4].detail.contains("52:54:00:00:00:10")
        );
        // Key refused.
        let denied = PathObs::parse(
            "vf_ssh_rc=255\nvf_ssh_out=netdump@198.18.0.10: Permission denied (publickey).\n",
        );
        let r = run(&o, &denied, seen.clone());
        assert_eq!(failed(&r), [SSH_PATH]);
        assert!(r[3].fix.contains("authorized_keys2"));
        let hk = PathObs::parse("vf_ssh_rc=255\nvf_ssh_out=Host key verification failed.\n");
        assert!(run(&o, &hk, seen.clone())[3].fix.contains("host key"));
        // Marker lost.
        let r = run(
            &o,
            &p,
            Marker::NotSeen {
                secs: 10,
                log: true,
            },
        );
        assert_eq!(failed(&r), [NETCONSOLE_MARKER]);
        // Blocked markers are not reported.
        assert!(
            run(&o, &p, Marker::Blocked)
                .iter()
                .all(|c| c.check != NETCONSOLE_MARKER)
        );
        // No reservation.
        let mut none = o.clone();
        none.facts.kexec_crash_size = Some(0);
        assert!(failed(&run(&none, &p, seen.clone())).contains(&CRASHKERNEL));
        // Initrd missing.
        let o3 = ClientObs::parse(&format!("{FACTS}vf_memtotal_kb=4000000\nvf_kdump_tool=kdump-config\nvf_kdump_text=ready to kdump\nvf_nc_conf={}\n", obs("").f.get("nc_conf").unwrap())).unwrap();
        assert_eq!(failed(&run(&o3, &p, seen)), [CAPTURE_FILES]);
    }

    #[test]
    fn garbled_observations_fail_cleanly() {
        // Any bytes a hostile client prints: no panic, every check reported, nothing passes
        // that was not seen.
        let junk = [
            String::new(),
            "\0\0\0".into(),
            "vf_".repeat(10_000),
            format!(
                "{FACTS}vf_memtotal_kb=-5\nvf_nc_conf=netconsole=@@@,,,//\nvf_kdump_text=\x1b[2J ready to kdump\nvf_kdump_tool=x"
            ),
            format!(
                "{FACTS}vf_memtotal_kb=99999999999999999999999\nvf_printk=999 x\nvf_nc_target=1 2 3\n"
            ),
            format!(
                "{FACTS}{}",
                "vf_sysconfig=NETDUMPADDR=\u{202e}evil\n".repeat(200)
            ),
        ];
        for j in &junk {
            let Ok(o) = ClientObs::parse(j) else { continue };
            for p in [
                "",
                "vf_ssh_out=\u{0}{\n",
                PROBE,
                &"vf_ssh_out=x\n".repeat(1000),
            ] {
                let p = PathObs::parse(p);
                let r = run(
                    &o,
                    &p,
                    Marker::NotSeen {
                        secs: 1,
                        log: false,
                    },
                );
                assert!(!r.is_empty());
                for c in &r {
                    assert!(c.detail.chars().count() < 2000, "{c:?}");
                    assert!(!c.detail.contains('\n'));
                    assert!(c.ok || !c.fix.is_empty(), "{c:?}");
                }
                assert!(r.iter().any(|c| !c.ok), "{j:?}");
            }
        }
        assert_eq!(marker_level(Some(4)), 3);
        assert_eq!(marker_level(Some(7)), 5);
        assert_eq!(marker_level(Some(0)), 0);
        assert_eq!(marker_level(None), 5);
    }

    #[test]
    fn ladders_follow_the_distribution() {
        let rhel = parse_ladder(distro_ladder(false, "x86_64").1).unwrap();
        assert_eq!(ladder_size(&rhel, 1 << 30), 0);
        assert_eq!(ladder_size(&rhel, 2 << 30), 256 << 20);
        assert_eq!(ladder_size(&rhel, 64 << 30), 512 << 20);
        let deb = parse_ladder(distro_ladder(true, "x86_64").1).unwrap();
        assert_eq!(ladder_size(&deb, 256 << 20), 0);
        assert_eq!(ladder_size(&deb, 1 << 40), 192 << 20);
        let ppc = parse_ladder(distro_ladder(false, "ppc64le").1).unwrap();
        assert_eq!(ladder_size(&ppc, 100 << 30), 2 << 30);
        for bad in [
            "",
            "x",
            "1G:2",
            "1G-2G",
            "1G-2G:",
            "99999999999T-:1M",
            "1Q-:1M",
        ] {
            assert_eq!(parse_ladder(bad), None, "{bad}");
        }
        // A 23 GiB RHEL client with 128 MiB reserved is short; with 256 MiB fine.
        let mut o = obs("");
        o.facts.os_id = "rhel".into();
        o.f = crate::verify::observe::Fields::parse("vf_memtotal_kb=24000000\n");
        o.facts.kexec_crash_size = Some(128 << 20);
        let s = client();
        let i = ClientInput {
            settings: &s,
            obs: &o,
            path: Err("x".into()),
            marker: Marker::NotApplicable,
            key: String::new(),
        };
        let c = crashkernel(&i);
        assert!(!c.ok && c.detail.contains("256.0 MiB"), "{c:?}");
    }

    #[test]
    fn dump_sizes() {
        assert_eq!(dump_level("makedumpfile -F -l --message-level 7 -d 31"), 31);
        assert_eq!(dump_level("makedumpfile -c"), 31);
        assert_eq!(dump_level("makedumpfile -d 1"), 1);
        assert_eq!(dump_level("makedumpfile -d 99999999999999"), 31);
        assert_eq!(
            expected_dump_bytes(8 << 30, ClientFlavor::Kdump, "-d 31"),
            1 << 30
        );
        assert_eq!(
            expected_dump_bytes(8 << 30, ClientFlavor::Kdump, "-d 16"),
            4 << 30
        );
        assert_eq!(
            expected_dump_bytes(8 << 30, ClientFlavor::Kdump, "-d 1"),
            8 << 30
        );
        assert_eq!(
            expected_dump_bytes(8 << 30, ClientFlavor::Netdump, "-d 31"),
            8 << 30
        );
    }

    pub fn server() -> ServerSettings {
        ServerSettings {
            host: "srv".into(),
            address: "198.18.0.10".into(),
            port: 6666,
            dump_dir: "/var/crash".into(),
            password: crate::settings::PasswordSpec::Unset,
            receiver: crate::settings::ReceiverMode::Embedded,
            concurrent_dumps: 64,
            secure: true,
            space_check: true,
            min_free: 256 << 20,
            keep_dumps: 5,
            max_total: 0,
            legacy_key_types: false,
            uid: 34,
            manage_packages: false,
            manage_services: false,
        }
    }

    fn server_obs(extra: &str) -> ServerObs {
        let s = server();
        ServerObs::parse(&format!(
            "os_id=debian\nkernel=6\npkg=apt\ninit=none\nsshd_include=yes\nprobe_end=1\n\
             vf_df=10485760 5242880\nvf_sink_sha256={}\nvf_udp=00000000:1A0A\nvf_sshd_t_rc=0\nvf_sshd_t=\n\
             vf_forcecommand= {}\nvf_dropin=1\nvf_key_command={}\nvf_key_lines=2\n{extra}",
            "ab".repeat(32),
            crate::roles::sink_command(&s),
            crate::roles::sink_command(&s),
        ))
        .unwrap()
    }

    fn srun(o: &ServerObs, sha: &str, dumps: &[(&str, u64)]) -> Vec<CheckResult> {
        let s = server();
        server_checks(&ServerInput {
            settings: &s,
            obs: o,
            controller_sha256: Ok(sha.into()),
            client_dumps: dumps.iter().map(|(c, b)| (c.to_string(), *b)).collect(),
            client_facing: vec!["198.18.0.10".parse().unwrap()],
            markers_unchecked: vec![],
            sink_available: None,
        })
    }

    #[test]
    fn server_checks_pass_and_fail_one_at_a_time() {
        let sha = "ab".repeat(32);
        let o = server_obs("");
        let r = srun(&o, &sha, &[("c1", 1 << 30)]);
        assert_eq!(failed(&r), Vec::<&str>::new(), "{r:#?}");
        // Other build.
        assert_eq!(failed(&srun(&o, &"cd".repeat(32), &[])), [SINK_BUILD]);
        // Receiver down (only a socket on another port's address would not show at all).
        let mut down = o.clone();
        down.f = crate::verify::observe::Fields::parse(
            &server_obs("")
                .f
                .all("df")
                .iter()
                .map(|v| format!("vf_df={v}\n"))
                .collect::<String>(),
        );
        assert!(failed(&srun(&down, &sha, &[])).contains(&RECEIVER));
        // Nearly full: 5 GiB free, 256 MiB reserve, an 8 GiB dump expected.
        assert_eq!(failed(&srun(&o, &sha, &[("c1", 8 << 30)])), [FREE_SPACE]);
        // netdump_max_total nearly used up: the sink's own answer caps what fits.
        let s = server();
        let r = server_checks(&ServerInput {
            settings: &s,
            obs: &o,
            controller_sha256: Ok(sha.clone()),
            client_dumps: [("c1".to_string(), 1 << 30)].into(),
            client_facing: vec![],
            markers_unchecked: vec![],
            sink_available: Some(100 << 20),
        });
        assert_eq!(failed(&r), [FREE_SPACE]);
        assert!(r[3].detail.contains("100.0 MiB more"), "{r:?}");
        // Retention changed by hand on the server.
        let o2 = server_obs(
            "vf_key_command=/usr/local/sbin/netdump-provision dump-sink --dump-dir /var/crash --min-free 0 --keep-dumps 0 --max-total 0\n",
        );
        assert_eq!(failed(&srun(&o2, &sha, &[])), [RETENTION]);
        // Bound to another address only.
        assert!(!receiver_hears(
            &["10.0.0.1".parse().unwrap()],
            &["198.18.0.10".parse().unwrap()]
        ));
        assert!(receiver_hears(
            &["::".parse().unwrap()],
            &["198.18.0.10".parse().unwrap()]
        ));
        assert!(receiver_hears(
            &["::ffff:198.18.0.10".parse().unwrap()],
            &["198.18.0.10".parse().unwrap()]
        ));
    }

    #[test]
    fn garbled_server_answers_fail_cleanly() {
        let sha = "ab".repeat(32);
        for junk in [
            "os_id=x\nkernel=1\npkg=apt\ninit=none\nprobe_end=1\n".to_string(),
            "os_id=x\nkernel=1\npkg=apt\ninit=none\nprobe_end=1\nvf_df=a b\nvf_sink_sha256=zz\nvf_udp=::::\nvf_sshd_t_rc=x\n".into(),
            format!("os_id=x\nkernel=1\npkg=apt\ninit=none\nprobe_end=1\n{}", "vf_udp=FFFFFFFF:1A0A\n".repeat(500)),
        ] {
            let o = ServerObs::parse(&junk).unwrap();
            let r = srun(&o, &sha, &[("c", u64::MAX)]);
            assert!(r.iter().any(|c| !c.ok));
            for c in &r {
                assert!(c.ok || !c.fix.is_empty());
            }
        }
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use crate::verify::observe::{ClientObs, PathObs, ServerObs};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever a host prints after valid facts, parsing and every check finish without a
        /// panic and with bounded, one-line details.
        #[test]
        fn any_answer_is_judged_without_panic(
            extra in proptest::collection::vec(
                prop_oneof![
                    "vf_[a-z_]{1,14}=[ -~]{0,80}",
                    "vf_(nc_conf|udp|df|ssh_out|sysconfig|printk|memtotal_kb|kdump_text|forcecommand|key_command|seen)=.{0,120}",
                    ".{0,60}",
                ],
                0..40,
            ),
            kernel in "[^\n\r]{1,40}",
            via in "[^\n\r \t]{1,20}",
        ) {
            let body = extra.join("\n");
            let facts = format!("os_id=debian\nkernel={kernel}\narch=x86_64\npkg=apt\ninit=none\nkexec_crash_loaded=1\nroute=10.0.0.1 via {via} dev e src 10.0.0.2\nprobe_end=1\n");
            let o = ClientObs::parse(&format!("{facts}{body}")).unwrap();
            let p = PathObs::parse(&body);
            let s = crate::roles::netdump_client::tests::client();
            for flavor in [ClientFlavor::Kdump, ClientFlavor::Netdump] {
                let mut s = s.clone();
                s.flavor = flavor;
                let r = client_checks(&ClientInput { settings: &s, obs: &o, path: Ok(&p), marker: Marker::NotSeen { secs: 1, log: false }, key: "k".into() });
                for c in &r {
                    prop_assert!(!c.detail.chars().any(char::is_control) && c.detail.len() < 4000, "{c:?}");
                }
            }
            let so = ServerObs::parse(&format!("{facts}{body}")).unwrap();
            let srv = tests_server();
            let r = server_checks(&ServerInput { settings: &srv, obs: &so, controller_sha256: Ok("ab".repeat(32)), client_dumps: Default::default(), client_facing: vec![], markers_unchecked: vec![], sink_available: Some(0) });
            prop_assert!(!r.is_empty());
            let _ = crate::verify::observe::parse_seen(&body, 3);
        }
    }

    fn tests_server() -> ServerSettings {
        ServerSettings {
            host: "srv".into(),
            address: "10.0.0.1".into(),
            port: 6666,
            dump_dir: "/var/crash".into(),
            password: crate::settings::PasswordSpec::Unset,
            receiver: crate::settings::ReceiverMode::Embedded,
            concurrent_dumps: 64,
            secure: true,
            space_check: true,
            min_free: 1,
            keep_dumps: 5,
            max_total: 0,
            legacy_key_types: false,
            uid: 34,
            manage_packages: false,
            manage_services: false,
        }
    }
}
