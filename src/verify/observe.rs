//! What `verify` asks hosts, and the parsing of what they answer (pure).
//!
//! Every host answers one read-only observation script (the facts probe of src/facts.rs followed
//! by `vf_*` lines); a client then runs one more script (the marker and the ssh path probe), and
//! each server is read for the markers. Everything a host prints is hostile: the text is cut to
//! [`MAX_OUTPUT`] bytes, lines to [`MAX_LINE`], repeated keys to [`MAX_REPEAT`], and every value
//! is parsed strictly or treated as absent. Nothing here panics on any input.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::facts::Facts;
use crate::resources::sh_quote;

/// Bytes of a host's answer that are looked at.
pub const MAX_OUTPUT: usize = 256 * 1024;
/// Longest line kept (longer lines are cut).
pub const MAX_LINE: usize = 4096;
/// At most this many values of one repeated key.
pub const MAX_REPEAT: usize = 64;
/// Longest text quoted back in a check's detail.
pub const MAX_DETAIL: usize = 300;

/// One-line, printable, bounded form of text a host sent (for details and errors).
pub fn clean(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if s.chars().count() > MAX_DETAIL {
        s = s.chars().take(MAX_DETAIL).collect::<String>() + "…";
    }
    s
}

/// The `vf_*` section of an answer, by key (values in order, bounded).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields(BTreeMap<String, Vec<String>>);

impl Fields {
    /// Parses `vf_key=value` lines; anything else is ignored.
    pub fn parse(text: &str) -> Fields {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in bounded(text).lines() {
            let Some(rest) = line.strip_prefix("vf_") else {
                continue;
            };
            let Some((k, v)) = rest.split_once('=') else {
                continue;
            };
            if k.is_empty()
                || k.len() > 32
                || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                continue;
            }
            let vals = map.entry(k.to_string()).or_default();
            if vals.len() < MAX_REPEAT {
                vals.push(cut(v, MAX_LINE).trim_end_matches('\r').to_string());
            }
        }
        Fields(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.trim().parse().ok())
    }

    pub fn i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(|v| v.trim().parse().ok())
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The first [`MAX_OUTPUT`] bytes of an answer.
pub fn bounded(text: &str) -> &str {
    cut(text, MAX_OUTPUT)
}

/// Splits an observation answer into the facts part (up to `probe_end=1`) and the rest.
pub fn split_facts(text: &str) -> (&str, &str) {
    let text = bounded(text);
    match text.find("\nprobe_end=1\n") {
        Some(i) => text.split_at(i + "\nprobe_end=1\n".len()),
        None => (text, ""),
    }
}

// ---------------------------------------------------------------------------------------------
// Scripts. Every value from the inventory is quoted; every answer is cut at the source too.
// ---------------------------------------------------------------------------------------------

/// Paths a client's observation looks at (both distribution families; the checks pick).
pub struct ClientPaths<'a> {
    /// Candidate key pair paths (roles::client_key_paths).
    pub keys: &'a [String],
}

/// `printf`-safe one-line value of a command's output: newlines and tabs to spaces, cut.
const ONE_LINE: &str = "tr '\\n\\r\\t' '   ' | head -c 512";

/// The client's observation: facts (with the route to its server) + what the checks need.
pub fn client_script(server_address: &str, paths: &ClientPaths<'_>) -> String {
    let mut extra = String::new();
    extra
        .push_str("echo \"vf_memtotal_kb=$(awk '/^MemTotal:/ {print $2; exit}' /proc/meminfo)\"\n");
    extra.push_str("echo \"vf_printk=$(head -c 64 /proc/sys/kernel/printk | tr '\\t\\n' '  ')\"\n");
    // kdump's own status: kdump-tools (Debian) or kdumpctl (RHEL family).
    extra.push_str(&format!(
        "if command -v kdump-config >/dev/null; then st=$(kdump-config status 2>&1); echo \"vf_kdump_rc=$?\"; echo \"vf_kdump_tool=kdump-config\"; echo \"vf_kdump_text=$(printf '%s' \"$st\" | {ONE_LINE})\"; \
         elif command -v kdumpctl >/dev/null; then st=$(kdumpctl status 2>&1); echo \"vf_kdump_rc=$?\"; echo \"vf_kdump_tool=kdumpctl\"; echo \"vf_kdump_text=$(printf '%s' \"$st\" | {ONE_LINE})\"; fi\n"
    ));
    // Capture kernel files and what they must not be older than (modification times).
    let mut files: Vec<(String, String)> = vec![
        ("deb_conf".into(), "/etc/default/kdump-tools".into()),
        ("rhel_conf".into(), "/etc/kdump.conf".into()),
        (
            "known_hosts".into(),
            crate::roles::netdump_client::KNOWN_HOSTS.into(),
        ),
    ];
    for (i, k) in paths.keys.iter().enumerate().take(8) {
        files.push((format!("key{i}"), k.clone()));
    }
    for (name, path) in &files {
        extra.push_str(&format!(
            "echo \"vf_mtime_{name}=$(stat -c %Y -- {} 2>/dev/null)\"\n",
            sh_quote(path)
        ));
    }
    extra.push_str(
        "k=$(uname -r)\n\
         echo \"vf_mtime_deb_initrd=$(stat -L -c %Y -- \"/var/lib/kdump/initrd.img-$k\" 2>/dev/null)\"\n\
         echo \"vf_mtime_rhel_initrd=$(stat -L -c %Y -- \"/boot/initramfs-${k}kdump.img\" 2>/dev/null)\"\n",
    );
    // netconsole: what the boot configuration says, whether it is loaded, live configfs targets.
    extra.push_str(&format!(
        "echo \"vf_nc_conf=$(grep -m1 '^options netconsole' {} 2>/dev/null | head -c 1024)\"\n\
         [ -d /sys/module/netconsole ] && echo vf_nc_loaded=1\n\
         for t in /sys/kernel/config/netconsole/*/; do [ -r \"${{t}}remote_mac\" ] && echo \"vf_nc_target=$(cat \"${{t}}enabled\") $(cat \"${{t}}remote_ip\") $(cat \"${{t}}remote_mac\")\"; done 2>/dev/null | head -n 16\n",
        sh_quote(crate::roles::kdump_client::NETCONSOLE_MODPROBE)
    ));
    // The legacy netdump client.
    extra.push_str(&format!(
        "if [ -r {sc} ]; then grep -E '^(NETDUMPADDR|NETDUMPPORT|NETDUMPMACADDR|DEV|NETLOGADDR)=' {sc} | head -n 16 | head -c 4096 | sed 's/^/vf_sysconfig=/'; \
         service netdump status >/dev/null 2>&1; echo \"vf_netdump_rc=$?\"; fi\n",
        sc = sh_quote(crate::roles::netdump_client::SYSCONFIG)
    ));
    crate::facts::probe_script_for(
        crate::facts::Scope {
            server: false,
            client_of: Some(server_address),
            netdump_module: true,
            ssh_version: crate::facts::SshVersion::Always,
            ssh_client_config: true,
        },
        &extra,
    )
}

/// The marker text written into a client's kernel log: unique per run and host.
pub fn marker(nonce: &str, host: &str) -> String {
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(64)
        .collect();
    format!("netdump-provision-verify:{nonce}:{host}")
}

/// The client's second script: the marker into /dev/kmsg at `level`, then the ssh path exactly
/// as the capture environment uses it (root, the configured key, only the pinned known_hosts,
/// no prompts), answered by the dump sink's `probe`.
pub fn path_script(marker: Option<(&str, u8)>, key: &str, server_address: &str) -> String {
    let mut s = String::new();
    if let Some((m, level)) = marker {
        s.push_str(&format!(
            "if printf '<{}>%s\\n' {} > /dev/kmsg 2>/dev/null; then echo vf_marker=written; else echo vf_marker=failed; fi\n",
            level.min(7),
            sh_quote(m)
        ));
    }
    s.push_str(&format!(
        "out=$(ssh -i {key} -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/dev/null \
         -o GlobalKnownHostsFile={kh} -o IdentitiesOnly=yes -o ConnectTimeout=10 -o LogLevel=ERROR \
         {user}@{srv} probe </dev/null 2>&1); rc=$?\n\
         echo \"vf_ssh_rc=$rc\"\n\
         printf '%s\\n' \"$out\" | head -n 20 | head -c 8192 | sed 's/^/vf_ssh_out=/'\n\
         exit 0\n",
        key = sh_quote(key),
        kh = sh_quote(crate::roles::netdump_client::KNOWN_HOSTS),
        user = crate::roles::NETDUMP_USER,
        srv = sh_quote(server_address),
    ));
    s
}

/// Everything a server's checks need, in one read-only script.
pub fn server_script(s: &crate::settings::ServerSettings) -> String {
    let dump = s.dump_dir.trim_end_matches('/');
    let mut extra = String::new();
    extra.push_str(&format!(
        "echo \"vf_df=$(df -Pk {d} | awk 'NR==2 {{print $2\" \"$4}}')\"\n",
        d = sh_quote(dump)
    ));
    extra.push_str(&format!(
        "echo \"vf_sink_sha256=$(sha256sum {b} 2>/dev/null | cut -c1-64)\"\n",
        b = sh_quote(crate::roles::SINK_BINARY)
    ));
    // Sockets bound to the receiver's UDP port (hex local address:port), both families.
    extra.push_str(&format!(
        "awk 'FNR > 1 && $4 == \"07\" && substr($2, length($2) - 4) == \":{port:04X}\" {{ print \"vf_udp=\" $2 }}' /proc/net/udp /proc/net/udp6 2>/dev/null | head -n 32\n",
        port = s.port
    ));
    extra.push_str(&format!(
        "[ -d /run/systemd/system ] && echo \"vf_receiver_unit=$(systemctl is-active {u} 2>/dev/null | head -c 32)\"\n",
        u = sh_quote(crate::roles::RECEIVER_SERVICE)
    ));
    extra.push_str(&format!(
        "sshd_bin=$(command -v sshd || echo /usr/sbin/sshd)\n\
         if [ -x \"$sshd_bin\" ]; then t=$(\"$sshd_bin\" -t 2>&1); echo \"vf_sshd_t_rc=$?\"; echo \"vf_sshd_t=$(printf '%s' \"$t\" | {ONE_LINE})\"; \
         echo \"vf_forcecommand=$(\"$sshd_bin\" -T -C user={user},host=verify.invalid,addr=127.0.0.1 2>/dev/null | awk 'tolower($1) == \"forcecommand\" {{ $1 = \"\"; print; exit }}' | head -c 1024)\"; fi\n\
         echo \"vf_dropin=$(grep -c '^Match User {user}$' {dropin} 2>/dev/null)\"\n\
         sed -n 's/.*command=\"\\([^\"]*\\)\".* {raw_tag}.*/\\1/p' {ak} 2>/dev/null | sed 's/ --client .*//' | sort -u | head -n 8 | head -c 4096 | sed 's/^/vf_key_command=/'\n\
         echo \"vf_key_lines=$(grep -c {tag} {ak} 2>/dev/null)\"\n",
        user = crate::roles::NETDUMP_USER,
        dropin = sh_quote(crate::roles::SSHD_DROPIN),
        tag = sh_quote(crate::roles::KEY_TAG),
        // A constant of letters, '-' and ':': safe inside the sed expression's single quotes.
        raw_tag = crate::roles::KEY_TAG,
        ak = sh_quote(&format!("{dump}/.ssh/authorized_keys2")),
    ));
    crate::facts::probe_script_for(
        crate::facts::Scope {
            server: true,
            client_of: None,
            netdump_module: false,
            ssh_version: crate::facts::SshVersion::Never,
            ssh_client_config: false,
        },
        &extra,
    )
}

/// One server read for the markers of its clients: `vf_seen=<i> <count>` per client, from the
/// tail of its console log (`missing` when the receiver never logged that client).
pub fn marker_read_script(dump_dir: &str, wanted: &[(IpAddr, String)]) -> String {
    let dump = dump_dir.trim_end_matches('/');
    let mut s = String::new();
    for (i, (ip, m)) in wanted.iter().enumerate() {
        let log = format!(
            "{dump}/console/{}.log",
            netdump_receiver::store::host_name(*ip)
        );
        s.push_str(&format!(
            "if [ -f {f} ]; then echo \"vf_seen={i} $(tail -c 4194304 {f} | grep -c -F -e {m})\"; else echo \"vf_seen={i} missing\"; fi\n",
            f = sh_quote(&log),
            m = sh_quote(m)
        ));
    }
    s.push_str("exit 0\n");
    s
}

// ---------------------------------------------------------------------------------------------
// Parsed observations.
// ---------------------------------------------------------------------------------------------

/// What a client showed in its observation script.
#[derive(Debug, Clone)]
pub struct ClientObs {
    pub facts: Facts,
    pub f: Fields,
}

impl ClientObs {
    pub fn parse(text: &str) -> Result<ClientObs, String> {
        let (facts, rest) = split_facts(text);
        let facts = crate::facts::parse(facts).map_err(|e| e.to_string())?;
        Ok(ClientObs {
            facts,
            f: Fields::parse(rest),
        })
    }

    pub fn mtime(&self, name: &str) -> Option<i64> {
        self.f.i64(&format!("mtime_{name}"))
    }

    /// `console_loglevel`: the first number of /proc/sys/kernel/printk.
    pub fn console_loglevel(&self) -> Option<u8> {
        self.f
            .get("printk")?
            .split_whitespace()
            .next()?
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= 15)
    }

    /// RAM in bytes: MemTotal plus the capture kernel's reservation (MemTotal leaves it out).
    pub fn ram_bytes(&self) -> Option<u64> {
        let kb = self.f.u64("memtotal_kb")?;
        Some(
            kb.saturating_mul(1024)
                .saturating_add(self.facts.kexec_crash_size.unwrap_or(0)),
        )
    }

    /// `/etc/sysconfig/netdump` values (`KEY=value`, quotes removed).
    pub fn sysconfig(&self, key: &str) -> Option<String> {
        self.f.all("sysconfig").iter().find_map(|l| {
            let v = l.strip_prefix(key)?.strip_prefix('=')?;
            Some(v.trim().trim_matches('"').trim_matches('\'').to_string())
        })
    }
}

/// The netconsole target from a `netconsole=[+][r][sport]@[sip]/[dev],[tport]@tip/[tmac]`
/// parameter (first target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetconsoleTarget {
    pub dev: String,
    pub port: Option<u16>,
    pub ip: String,
    pub mac: Option<String>,
}

/// Parses the `options netconsole netconsole=…` line of the modprobe file.
pub fn parse_netconsole(line: &str) -> Option<NetconsoleTarget> {
    let param = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("netconsole="))?;
    // Several targets are separated by ';'; the first is ours.
    let first = param.split(';').next()?;
    let (local, remote) = first.split_once(',')?;
    let dev = local
        .rsplit_once('/')
        .map(|(_, d)| d)
        .unwrap_or("")
        .to_string();
    let (tport, rest) = remote.split_once('@')?;
    let (ip, mac) = match rest.split_once('/') {
        Some((ip, mac)) => (ip, Some(mac)),
        None => (rest, None),
    };
    if ip.is_empty() || ip.len() > 64 {
        return None;
    }
    Some(NetconsoleTarget {
        dev,
        port: if tport.is_empty() {
            None
        } else {
            Some(tport.parse().ok()?)
        },
        ip: ip.to_string(),
        mac: mac.filter(|m| !m.is_empty()).and_then(normalize_mac),
    })
}

/// A MAC address as six lower-case hex pairs, or `None`.
pub fn normalize_mac(m: &str) -> Option<String> {
    let parts: Vec<&str> = m.trim().split([':', '-']).collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_lowercase())
}

/// What the client's ssh path probe showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathObs {
    pub marker_written: Option<bool>,
    pub ssh_rc: Option<i32>,
    /// The sink's probe answer, when one came back.
    pub probe: Option<SinkProbe>,
    /// What ssh said otherwise (cleaned, bounded).
    pub ssh_text: String,
}

/// The dump sink's `probe` answer (src/sink/mod.rs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct SinkProbe {
    pub sink: String,
    #[serde(default)]
    pub client: Option<String>,
    pub ip: String,
    #[serde(default)]
    pub free_bytes: u64,
    #[serde(default)]
    pub available_bytes: u64,
    #[serde(default)]
    pub min_free: u64,
    #[serde(default)]
    pub keep_dumps: u32,
    #[serde(default)]
    pub max_total: u64,
    #[serde(default)]
    pub dumps: u64,
}

impl PathObs {
    pub fn parse(text: &str) -> PathObs {
        let f = Fields::parse(text);
        let out = f.all("ssh_out");
        let probe = out
            .iter()
            .filter(|l| l.starts_with('{') && l.len() <= 2048)
            .find_map(|l| serde_json::from_str::<SinkProbe>(l).ok())
            .filter(|p| p.sink.len() <= 64 && p.ip.parse::<IpAddr>().is_ok());
        PathObs {
            marker_written: f.get("marker").map(|v| v == "written"),
            ssh_rc: f.get("ssh_rc").and_then(|v| v.trim().parse().ok()),
            probe,
            ssh_text: clean(
                &out.iter()
                    .filter(|l| !l.starts_with('{'))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
    }
}

/// What a server showed.
#[derive(Debug, Clone)]
pub struct ServerObs {
    pub facts: Facts,
    pub f: Fields,
}

impl ServerObs {
    pub fn parse(text: &str) -> Result<ServerObs, String> {
        let (facts, rest) = split_facts(text);
        let facts = crate::facts::parse(facts).map_err(|e| e.to_string())?;
        Ok(ServerObs {
            facts,
            f: Fields::parse(rest),
        })
    }

    /// `(total, available)` bytes of the dump directory's filesystem.
    pub fn df(&self) -> Option<(u64, u64)> {
        let v = self.f.get("df")?;
        let mut it = v.split_whitespace();
        let total: u64 = it.next()?.parse().ok()?;
        let avail: u64 = it.next()?.parse().ok()?;
        Some((total.saturating_mul(1024), avail.saturating_mul(1024)))
    }

    /// Local addresses of the UDP sockets bound to the receiver's port.
    pub fn udp_bound(&self) -> Vec<IpAddr> {
        self.f
            .all("udp")
            .iter()
            .filter_map(|a| parse_proc_net_addr(a))
            .collect()
    }

    pub fn sink_sha256(&self) -> Option<String> {
        self.f
            .get("sink_sha256")
            .map(str::trim)
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase)
    }
}

/// `0100007F:1A0A` (IPv4) or 32 hex digits (IPv6) of /proc/net/udp{,6}: the kernel prints each
/// 32-bit word in host byte order (little-endian here).
pub fn parse_proc_net_addr(s: &str) -> Option<IpAddr> {
    let (addr, port) = s.trim().split_once(':')?;
    if port.len() != 4 || u16::from_str_radix(port, 16).is_err() {
        return None;
    }
    let words = |hex: &str| -> Option<Vec<u32>> {
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        (0..hex.len() / 8)
            .map(|i| {
                u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16)
                    .ok()
                    .map(u32::swap_bytes)
            })
            .collect()
    };
    match addr.len() {
        8 => {
            let w = words(addr)?;
            Some(IpAddr::from(w[0].to_be_bytes()))
        }
        32 => {
            let w = words(addr)?;
            let mut b = [0u8; 16];
            for (i, x) in w.iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
            }
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

/// Parses the marker read: client index → times seen (`None`: no console log for it).
pub fn parse_seen(text: &str, count: usize) -> BTreeMap<usize, Option<u64>> {
    let mut seen = BTreeMap::new();
    for v in Fields::parse(text).all("seen") {
        let mut it = v.split_whitespace();
        let (Some(i), Some(n)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(i) = i.parse::<usize>() else { continue };
        if i >= count {
            continue;
        }
        seen.insert(i, n.parse::<u64>().ok());
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_bounded_and_strict() {
        let f = Fields::parse(
            "vf_a=1\nvf_a=2\nnoise\nvf_=x\nvf_b c=1\nvf_long="
                .to_string()
                .as_str(),
        );
        assert_eq!(f.all("a"), ["1", "2"]);
        assert_eq!(f.get("b c"), None);
        let many: String = (0..1000).map(|i| format!("vf_x={i}\n")).collect();
        assert_eq!(Fields::parse(&many).all("x").len(), MAX_REPEAT);
        let long = format!("vf_y={}\n", "é".repeat(10_000));
        assert!(Fields::parse(&long).get("y").unwrap().len() <= MAX_LINE);
        let huge = "vf_z=1\n".repeat(100_000);
        assert_eq!(Fields::parse(&huge).all("z").len(), MAX_REPEAT);
        assert_eq!(clean("a\x1b[31mb\n\tc"), "a [31mb c");
        assert!(clean(&"x".repeat(5000)).chars().count() <= MAX_DETAIL + 1);
    }

    #[test]
    fn splits_facts_from_the_rest() {
        let (a, b) = split_facts("os_id=x\nprobe_end=1\nvf_a=1\n");
        assert_eq!(a, "os_id=x\nprobe_end=1\n");
        assert_eq!(b, "vf_a=1\n");
        assert_eq!(split_facts("garbage").1, "");
    }

    #[test]
    fn netconsole_parameters() {
        let t = parse_netconsole(
            "options netconsole netconsole=+6665@198.19.0.11/ens3,6666@198.19.0.10/52:54:C6:13:00:0A",
        )
        .unwrap();
        assert_eq!(t.dev, "ens3");
        assert_eq!(t.port, Some(6666));
        assert_eq!(t.ip, "198.19.0.10");
        assert_eq!(t.mac.as_deref(), Some("52:54:c6:13:00:0a"));
        let t = parse_netconsole("options netconsole netconsole=@/,@10.0.0.1/").unwrap();
        assert_eq!((t.port, t.mac), (None, None));
        assert_eq!(parse_netconsole("options netconsole"), None);
        assert_eq!(parse_netconsole("netconsole=garbage"), None);
        assert_eq!(parse_netconsole("netconsole=a,b@"), None);
        assert_eq!(parse_netconsole("netconsole=a,99999@1.2.3.4/"), None);
        assert_eq!(
            normalize_mac("52-54-00-AA-bb-cc").as_deref(),
            Some("52:54:00:aa:bb:cc")
        );
        assert_eq!(normalize_mac("52:54:00:aa:bb"), None);
        assert_eq!(normalize_mac("zz:54:00:aa:bb:cc"), None);
        assert_eq!(normalize_mac("ééé:54:00:aa:bb:cc"), None);
    }

    #[test]
    fn proc_net_addresses() {
        assert_eq!(
            parse_proc_net_addr("0100007F:1A0A"),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_proc_net_addr("00000000:1A0A"),
            Some("0.0.0.0".parse().unwrap())
        );
        assert_eq!(
            parse_proc_net_addr("00000000000000000000000000000000:1A0A"),
            Some("::".parse().unwrap())
        );
        assert_eq!(
            parse_proc_net_addr("0000000000000000FFFF00000A1312C6:1A0A"),
            Some("::ffff:198.18.19.10".parse().unwrap())
        );
        for bad in [
            "",
            ":",
            "0100007F",
            "0100007G:1A0A",
            "0100007F:1A0",
            "01:1A0A",
            "é00007F:1A0A",
        ] {
            assert_eq!(parse_proc_net_addr(bad), None, "{bad}");
        }
    }

    #[test]
    fn path_probe_answers() {
        let ok = PathObs::parse(
            "vf_marker=written\nvf_ssh_rc=0\nvf_ssh_out={\"sink\":\"0.1.0\",\"client\":\"c1\",\"ip\":\"198.18.0.11\",\"free_bytes\":10,\"available_bytes\":5,\"min_free\":1,\"keep_dumps\":5,\"max_total\":0,\"dumps\":0}\n",
        );
        assert_eq!(ok.marker_written, Some(true));
        assert_eq!(ok.ssh_rc, Some(0));
        assert_eq!(ok.probe.as_ref().unwrap().available_bytes, 5);
        let bad = PathObs::parse("vf_ssh_rc=255\nvf_ssh_out=Host key verification failed.\n");
        assert_eq!(bad.probe, None);
        assert_eq!(bad.ssh_text, "Host key verification failed.");
        // A forged answer that is not the sink's shape is not a probe.
        for forged in [
            "vf_ssh_out={\"sink\":1}",
            "vf_ssh_out={\"sink\":\"x\",\"ip\":\"not an ip\"}",
            "vf_ssh_out={{{{",
        ] {
            assert_eq!(PathObs::parse(forged).probe, None, "{forged}");
        }
        assert_eq!(PathObs::parse("").ssh_rc, None);
    }

    #[test]
    fn seen_counts() {
        let s = parse_seen(
            "vf_seen=0 2\nvf_seen=1 missing\nvf_seen=9 1\nvf_seen=x 1\nvf_seen=2\n",
            3,
        );
        assert_eq!(s.get(&0), Some(&Some(2)));
        assert_eq!(s.get(&1), Some(&None));
        assert_eq!(s.get(&2), None);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn markers_are_tokens() {
        assert_eq!(
            marker("abc", "c1 ;rm -rf"),
            "netdump-provision-verify:abc:c1rm-rf"
        );
    }

    #[test]
    fn scripts_quote_inventory_values() {
        let s = path_script(Some(("m'x", 5)), "/root/k ey", "srv;reboot");
        assert!(
            s.contains("'srv;reboot'") && s.contains("'/root/k ey'"),
            "{s}"
        );
        assert!(s.contains("'m'\\''x'"), "{s}");
        let r = marker_read_script("/var/crash/", &[("fd00::5".parse().unwrap(), "m".into())]);
        assert!(r.contains("/var/crash/console/fd00__5.log"), "{r}");
    }

    #[test]
    fn server_script_reads_key_lines_and_space() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".ssh")).unwrap();
        let mut s = crate::verify::checks::tests::server();
        s.dump_dir = dir.path().display().to_string();
        let sink = crate::roles::sink_command(&s);
        let key = crate::roles::ClientKey {
            client: "c1".into(),
            from: Some("198.18.0.11".into()),
            key: "ssh-ed25519 AAAA".into(),
        };
        std::fs::write(
            dir.path().join(".ssh/authorized_keys2"),
            format!("{}\nssh-rsa BBBB unmanaged\n", key.authorized_line(&sink)),
        )
        .unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(server_script(&s))
            .output()
            .unwrap();
        let obs = ServerObs::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert_eq!(obs.f.all("key_command"), [sink]);
        assert_eq!(obs.f.u64("key_lines"), Some(1));
        let (total, avail) = obs.df().unwrap();
        assert!(total > 0 && avail <= total);
    }

    #[test]
    fn scripts_run_in_sh_and_parse() {
        // The client observation runs on this machine (whatever it has) and parses.
        let keys = vec!["/nonexistent/key".to_string()];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(client_script("127.0.0.1", &ClientPaths { keys: &keys }))
            .output()
            .unwrap();
        let obs = ClientObs::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert!(obs.f.u64("memtotal_kb").unwrap() > 0);
        assert_eq!(obs.mtime("key0"), None);
        let r = marker_read_script(
            "/nonexistent",
            &[("127.0.0.1".parse().unwrap(), "m".into())],
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(r)
            .output()
            .unwrap();
        assert_eq!(
            parse_seen(&String::from_utf8_lossy(&out.stdout), 1).get(&0),
            Some(&None)
        );
    }
}
