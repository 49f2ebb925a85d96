//! One probe script per host, parsed into [`Facts`]: OS, package manager, init system, kernel,
//! sysrq, host keys, the route towards the host's dump server, and the kdump state.

use serde::Serialize;

use crate::ssh::shell::single_quote as sh_quote;

/// The host's package manager, as the probe found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    Apt,
    Dnf,
    Yum,
    Up2date,
    None,
}

/// The host's init system, as the probe found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitSystem {
    Systemd,
    Sysv,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub os_id: String,
    pub os_version: String,
    /// `ID_LIKE` from os-release (e.g. "debian", "rhel fedora").
    pub os_like: String,
    pub kernel: String,
    pub arch: String,
    pub pkg: PackageManager,
    pub init: InitSystem,
    /// Current `kernel.sysrq`, `None` when the kernel has no /proc/sys/kernel/sysrq.
    pub sysrq: Option<String>,
    pub boot_id: String,
    pub hostname: String,
    /// `/etc/sysctl.d` exists (else /etc/sysctl.conf is used).
    pub sysctl_d: bool,
    /// The host's ssh host public keys (`type base64`), for pinning on clients.
    pub host_keys: Vec<String>,
    /// OpenSSH (major, minor) of the host's `ssh` client, `None` when it is not OpenSSH or
    /// not installed.
    pub ssh_version: Option<(u32, u32)>,
    /// glibc (major, minor) from `getconf GNU_LIBC_VERSION`; `None` without glibc (musl,
    /// busybox) or getconf.
    pub glibc: Option<(u32, u32)>,
    /// Name of the ssh daemon's service (ssh on Debian, sshd elsewhere).
    pub ssh_service: String,
    /// sshd_config includes /etc/ssh/sshd_config.d/*.conf.
    pub sshd_include: bool,
    /// The ssh client's configuration includes `/etc/ssh/ssh_config.d/*.conf`.
    pub ssh_config_include: bool,
    /// sshd's effective `MaxStartups` (`sshd -T`), as reported: parse before use.
    pub sshd_max_startups: Option<String>,
    /// A netdump kernel module exists for the running kernel.
    pub netdump_module: bool,
    /// Route to the dump server (clients only).
    pub route: Option<Route>,
    /// `/sys/kernel/kexec_crash_size` (bytes reserved for the capture kernel).
    pub kexec_crash_size: Option<u64>,
    /// `/sys/kernel/kexec_crash_loaded`.
    pub kexec_crash_loaded: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub dev: String,
    pub src: Option<String>,
    /// First hop when the server is not on-link.
    pub via: Option<String>,
    /// MAC of the server (on-link) or of the first hop.
    pub mac: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("facts: the probe printed no {0} line; is this a Linux host with a POSIX shell?")]
    Missing(&'static str),
}

/// Which facts a probe gathers: those every host needs, plus those of its roles. A host that is
/// only a client never runs `sshd -T` or reads host keys; a server never resolves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    /// Dump-server facts: host keys, glibc, sshd's `Include` and `MaxStartups`.
    pub server: bool,
    /// Client facts, with the dump server the client must reach: ssh version, the ssh client's
    /// `Include`, the route and next-hop MAC towards the server.
    pub client_of: Option<&'a str>,
    /// Whether the running kernel has a netdump module (`modinfo`): what an `auto` client
    /// flavour is decided by, and only that.
    pub netdump_module: bool,
    /// When to ask the ssh client its version (`ssh -V`, the costliest program of the probe).
    pub ssh_version: SshVersion<'a>,
    /// Whether the ssh client's configuration includes `ssh_config.d` (a kdump client's
    /// drop-in depends on it; a netdump client has no use for it).
    pub ssh_client_config: bool,
}

/// When a client's probe runs `ssh -V`. The version only chooses the type of a netdump client's
/// new key pair (ed25519 from OpenSSH 6.5), so once that key pair exists nothing reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshVersion<'a> {
    Never,
    Always,
    /// Only while the key pair at this private key path (and its `.pub`) is incomplete.
    UnlessKeyPair(&'a str),
}

impl<'a> Scope<'a> {
    /// Every fact (used where the host's roles are not known up front).
    pub fn full(server: Option<&'a str>) -> Scope<'a> {
        let client = server.is_some();
        Scope {
            server: true,
            client_of: server,
            netdump_module: client,
            ssh_version: if client {
                SshVersion::Always
            } else {
                SshVersion::Never
            },
            ssh_client_config: client,
        }
    }
}

/// The full probe. `server` is the dump server address a client must reach.
pub fn probe_script(server: Option<&str>) -> String {
    probe_script_for(Scope::full(server), "")
}

/// The probe for `scope`, followed by `extra` (more read-only observation in the same round trip;
/// its output comes after `probe_end=1` and must not print lines that look like facts).
///
/// Why it is written the way it is: it runs on every host of every run, so a no-op run costs
/// mostly what this script spawns. Files under /proc and /sys and the host keys are read with the
/// shell's `read` (host name, kernel and machine too; `uname` only where the kernel predates
/// /proc/sys/kernel/arch, 6.1), the route is cut apart with parameter expansion, and the next
/// hop is pinged only when the kernel has no MAC for it yet: a client starts `ip`, a server two
/// or three programs.
/// It stays within what RHEL 3's bash 2.05 and a busybox `sh` understand.
pub fn probe_script_for(scope: Scope<'_>, extra: &str) -> String {
    let server_facts = if scope.server {
        r#"for f in /etc/ssh/ssh_host_*_key.pub; do [ -r "$f" ] && read -r t k x < "$f" && echo "hostkey=$t $k"; done
echo "glibc=$(getconf GNU_LIBC_VERSION)"
grep -qi '^[[:space:]]*Include[[:space:]]\+/etc/ssh/sshd_config.d' /etc/ssh/sshd_config && echo sshd_include=yes
sshd_bin=$(command -v sshd || echo /usr/sbin/sshd); [ -x "$sshd_bin" ] && echo "sshd_maxstartups=$("$sshd_bin" -T 2>/dev/null | awk '$1 == "maxstartups" { print $2; exit }')"
"#
        .to_string()
    } else {
        String::new()
    };
    let ssh_version = match scope.ssh_version {
        SshVersion::Never => String::new(),
        SshVersion::Always => "echo \"ssh_version=$(ssh -V 2>&1)\"\n".to_string(),
        SshVersion::UnlessKeyPair(key) => {
            let k = sh_quote(key);
            let p = sh_quote(&format!("{key}.pub"));
            format!("[ -f {k} ] && [ -f {p} ] || echo \"ssh_version=$(ssh -V 2>&1)\"\n")
        }
    };
    let ssh_client_config = if scope.ssh_client_config {
        "grep -qi '^[[:space:]]*Include[[:space:]]\\+/etc/ssh/ssh_config.d' /etc/ssh/ssh_config && echo ssh_config_include=yes\n"
    } else {
        ""
    };
    let client_facts = match scope.client_of {
        Some(s) => {
            let s = sh_quote(s);
            format!(
                r#"{ssh_version}{ssh_client_config}r=$(ip -o route get {s} 2>/dev/null); r=${{r%%"$nl"*}}
echo "route=$r"
via=; dev=
case "$r" in *" via "*) via=${{r#* via }}; via=${{via%% *}};; esac
case "$r" in *" dev "*) dev=${{r#* dev }}; dev=${{dev%% *}};; esac
hop=${{via:-{s}}}
# The next hop's neighbour entry: the IPv4 table is a /proc file the shell reads itself (what
# it lacks, `ip` has no address for either), `ip` answers for IPv6.
neigh() {{
  n=
  case "$hop" in
  *:*) n=$(ip neigh show "$hop" dev "$dev" 2>/dev/null) ;;
  *) if [ -r /proc/net/arp ]; then
      while read -r a t f m k d; do
        if [ "$a" = "$hop" ] && [ "$d" = "$dev" ] && [ "$f" != 0x0 ]; then n="$hop dev $dev lladdr $m"; fi
      done < /proc/net/arp
    else n=$(ip neigh show "$hop" dev "$dev" 2>/dev/null); fi ;;
  esac
}}
# Loopback has no neighbours to resolve.
if [ -n "$dev" ] && [ "$dev" != lo ]; then
  neigh
  case "$n" in *lladdr*) ;; *)
    # Any packet towards the next hop makes the kernel resolve its MAC. A ping that got its
    # answer means the kernel has it (or the link has none); without ping, a UDP packet from
    # bash, and the answer comes within milliseconds on a LAN: look every 20 ms, up to 0.5 s.
    if ping -c 1 -W 1 "$hop" >/dev/null 2>&1; then neigh
    else
      command -v bash >/dev/null && bash -c "echo > /dev/udp/$hop/9" >/dev/null 2>&1
      i=0
      while [ $i -lt 25 ]; do neigh; case "$n" in *lladdr*) break;; esac; sleep 0.02; i=$((i + 1)); done
    fi;;
  esac
  echo "neigh=${{n%%"$nl"*}}"
fi
"#
            )
        }
        None => String::new(),
    };
    let module = if scope.netdump_module {
        "modinfo netdump >/dev/null 2>&1 && echo netdump_module=yes\n"
    } else {
        ""
    };
    format!(
        r#"exec 2>/dev/null
nl='
'
if [ -r /etc/os-release ]; then . /etc/os-release; echo "os_id=$ID"; echo "os_version=$VERSION_ID"; echo "os_like=$ID_LIKE"
elif [ -r /etc/redhat-release ]; then read -r rel < /etc/redhat-release; v=${{rel#*release }}; echo "os_id=rhel"; echo "os_version=${{v%% *}}"; echo "os_like=rhel"
else echo "os_id=unknown"; echo "os_version="; echo "os_like="; fi
h=; k=; a=
[ -r /proc/sys/kernel/hostname ] && read -r h < /proc/sys/kernel/hostname
[ -r /proc/sys/kernel/osrelease ] && read -r k < /proc/sys/kernel/osrelease
[ -r /proc/sys/kernel/arch ] && read -r a < /proc/sys/kernel/arch
if [ -z "$h" ] || [ -z "$k" ] || [ -z "$a" ]; then set -- $(uname -n -r -m); h=$1; k=$2; a=$3; fi
echo "hostname=$h"; echo "kernel=$k"; echo "arch=$a"
if command -v apt-get >/dev/null; then echo pkg=apt
elif command -v dnf >/dev/null; then echo pkg=dnf
elif command -v yum >/dev/null; then echo pkg=yum
elif command -v up2date >/dev/null; then echo pkg=up2date
else echo pkg=none; fi
c=; [ -r /proc/1/comm ] && read -r c < /proc/1/comm
if [ -d /run/systemd/system ]; then echo init=systemd
elif [ -d /etc/init.d ] && [ "$c" = init ]; then echo init=sysv
else echo init=none; fi
if [ -e /proc/sys/kernel/sysrq ]; then v=; read -r v < /proc/sys/kernel/sysrq; echo "sysrq=$v"; fi
v=; read -r v < /proc/sys/kernel/random/boot_id; echo "boot_id=$v"
[ -d /etc/sysctl.d ] && echo sysctl_d=yes
if [ -e /lib/systemd/system/ssh.service ] || [ -e /etc/init.d/ssh ]; then echo ssh_service=ssh; else echo ssh_service=sshd; fi
[ -r /sys/kernel/kexec_crash_size ] && read -r v < /sys/kernel/kexec_crash_size && echo "kexec_crash_size=$v"
[ -r /sys/kernel/kexec_crash_loaded ] && read -r v < /sys/kernel/kexec_crash_loaded && echo "kexec_crash_loaded=$v"
{server_facts}{client_facts}{module}echo probe_end=1
{extra}
exit 0
"#
    )
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn word_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == key {
            return it.next();
        }
    }
    None
}

/// Parses the probe's output (pure).
pub fn parse(text: &str) -> Result<Facts, FactsError> {
    // The last line: output cut short must not pass for a host without the later facts.
    if field(text, "probe_end").is_none() {
        return Err(FactsError::Missing("probe_end"));
    }
    let req = |k: &'static str| {
        field(text, k)
            .map(str::to_string)
            .ok_or(FactsError::Missing(k))
    };
    let pkg = match field(text, "pkg") {
        Some("apt") => PackageManager::Apt,
        Some("dnf") => PackageManager::Dnf,
        Some("yum") => PackageManager::Yum,
        Some("up2date") => PackageManager::Up2date,
        Some(_) => PackageManager::None,
        None => return Err(FactsError::Missing("pkg")),
    };
    let init = match field(text, "init") {
        Some("systemd") => InitSystem::Systemd,
        Some("sysv") => InitSystem::Sysv,
        Some(_) => InitSystem::None,
        None => return Err(FactsError::Missing("init")),
    };
    let route = field(text, "route")
        .filter(|r| !r.trim().is_empty())
        .and_then(|r| {
            let dev = word_after(r, "dev")?.to_string();
            let mac = field(text, "neigh")
                .and_then(|n| word_after(n, "lladdr"))
                .map(str::to_string);
            Some(Route {
                dev,
                src: word_after(r, "src").map(str::to_string),
                via: word_after(r, "via").map(str::to_string),
                mac,
            })
        });
    Ok(Facts {
        os_id: req("os_id")?,
        os_version: field(text, "os_version").unwrap_or("").to_string(),
        os_like: field(text, "os_like").unwrap_or("").to_string(),
        kernel: req("kernel")?,
        arch: field(text, "arch").unwrap_or("").to_string(),
        pkg,
        init,
        sysrq: field(text, "sysrq").map(|s| s.trim().to_string()),
        boot_id: field(text, "boot_id").unwrap_or("").trim().to_string(),
        hostname: field(text, "hostname").unwrap_or("").to_string(),
        sysctl_d: field(text, "sysctl_d").is_some(),
        host_keys: text
            .lines()
            .filter_map(|l| l.strip_prefix("hostkey="))
            .filter(|k| k.split_whitespace().count() == 2)
            .map(str::to_string)
            .collect(),
        ssh_version: field(text, "ssh_version").and_then(openssh_version),
        glibc: field(text, "glibc").and_then(glibc_version),
        ssh_service: field(text, "ssh_service").unwrap_or("sshd").to_string(),
        sshd_include: field(text, "sshd_include").is_some(),
        ssh_config_include: field(text, "ssh_config_include").is_some(),
        sshd_max_startups: field(text, "sshd_maxstartups")
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string),
        netdump_module: field(text, "netdump_module").is_some(),
        route,
        kexec_crash_size: field(text, "kexec_crash_size").and_then(|v| v.trim().parse().ok()),
        kexec_crash_loaded: field(text, "kexec_crash_loaded").map(|v| v.trim() == "1"),
    })
}

/// `OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024` → (9, 2).
fn openssh_version(line: &str) -> Option<(u32, u32)> {
    let rest = line.trim().strip_prefix("OpenSSH_")?;
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// `glibc 2.36` → (2, 36).
fn glibc_version(line: &str) -> Option<(u32, u32)> {
    let v = line.trim().strip_prefix("glibc ")?;
    let mut parts = v.split('.');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.trim().parse().ok()?,
    ))
}

impl Facts {
    /// The host's ssh can make and use ed25519 keys (OpenSSH 6.5 or later).
    pub fn has_ed25519(&self) -> bool {
        self.ssh_version.is_some_and(|v| v >= (6, 5))
    }

    /// Debian family (kdump-tools) rather than RHEL family (kexec-tools / kdump-utils).
    pub fn is_debian_like(&self) -> bool {
        self.os_id == "debian"
            || self.os_id == "ubuntu"
            || self.os_like.split_whitespace().any(|w| w == "debian")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_runs_on_this_machine_and_parses() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(probe_script(Some("127.0.0.1")))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let f = parse(&text).unwrap();
        // Read from /proc where the kernel has it: the same as uname says.
        let uname = |flag: &str| {
            let o = std::process::Command::new("uname")
                .arg(flag)
                .output()
                .unwrap();
            String::from_utf8(o.stdout).unwrap().trim().to_string()
        };
        assert_eq!(
            (f.hostname.as_str(), f.kernel.as_str(), f.arch.as_str()),
            (
                uname("-n").as_str(),
                uname("-r").as_str(),
                uname("-m").as_str()
            )
        );
        assert_eq!(f.route.as_ref().unwrap().dev, "lo");
        assert_eq!(f.boot_id.len(), 36, "{text}");
    }

    #[test]
    fn parses_a_debian_client_with_gateway() {
        let text = "os_id=debian\nos_version=12\nos_like=\nkernel=6.1.0-28-amd64\narch=x86_64\nhostname=c1\n\
pkg=apt\ninit=systemd\nsysrq=438\nboot_id=0f6e\nsysctl_d=yes\nhostkey=ssh-ed25519 AAAAC3\nhostkey=broken\n\
ssh_version=OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024\nglibc=glibc 2.36\n\
ssh_service=ssh\nsshd_include=yes\nkexec_crash_size=268435456\nkexec_crash_loaded=1\n\
route=10.1.2.3 via 198.18.0.1 dev ens3 src 198.18.0.11 uid 0 \\    cache\n\
neigh=198.18.0.1 lladdr 52:54:00:12:34:56 REACHABLE\nprobe_end=1\n";
        let f = parse(text).unwrap();
        assert!(f.is_debian_like());
        assert_eq!(f.pkg, PackageManager::Apt);
        assert_eq!(f.init, InitSystem::Systemd);
        assert_eq!(f.sysrq.as_deref(), Some("438"));
        assert_eq!(f.host_keys, vec!["ssh-ed25519 AAAAC3"]);
        assert_eq!(f.ssh_version, Some((9, 2)));
        assert_eq!(f.glibc, Some((2, 36)));
        assert!(f.has_ed25519());
        assert_eq!(f.kexec_crash_size, Some(268435456));
        assert_eq!(f.kexec_crash_loaded, Some(true));
        let r = f.route.unwrap();
        assert_eq!(r.dev, "ens3");
        assert_eq!(r.via.as_deref(), Some("198.18.0.1"));
        assert_eq!(r.src.as_deref(), Some("198.18.0.11"));
        assert_eq!(r.mac.as_deref(), Some("52:54:00:12:34:56"));
    }

    #[test]
    fn openssh_versions() {
        assert_eq!(
            openssh_version("OpenSSH_3.9p1, OpenSSL 0.9.7a Feb 19 2003"),
            Some((3, 9))
        );
        assert_eq!(openssh_version("OpenSSH_6.5, OpenSSL 1.0.1f"), Some((6, 5)));
        assert_eq!(openssh_version("OpenSSH_10.0p2 Debian-5"), Some((10, 0)));
        assert_eq!(openssh_version("sh: 1: ssh: not found"), None);
        assert_eq!(openssh_version("Sun_SSH_1.1"), None);
        assert_eq!(openssh_version(""), None);
        assert_eq!(glibc_version("glibc 2.17"), Some((2, 17)));
        assert_eq!(glibc_version("glibc 2.3.4"), Some((2, 3)));
        assert_eq!(glibc_version(""), None);
        assert_eq!(glibc_version("getconf: Unrecognized variable"), None);
    }

    #[test]
    fn missing_lines_are_errors() {
        assert!(parse("").is_err());
        assert!(parse("os_id=x\nkernel=1\npkg=apt\n").is_err());
        assert!(
            parse("os_id=x\nkernel=1\npkg=apt\ninit=systemd\n").is_err(),
            "no probe_end"
        );
    }
}
