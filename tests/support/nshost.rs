//! Namespace hosts: each test "host" is a real OpenSSH `sshd` in its own network + mount + UTS
//! namespace (DESIGN.md, test tier 2), so the provisioner runs for real over ssh without touching
//! the machine's own files.
//!
//! Layout of one fleet:
//! - a slot `k` (0..512) claimed atomically as `/run/netdump-provision-tests/slot-<k>` (mkdir),
//!   giving the fleet its own /24 inside 198.18.0.0/16 (`198.18.k.0`; 198.19.0.0/16, the other
//!   half of the test range, is left to the qemu lab), skipping any /24 the root namespace already
//!   routes, its own bridge
//!   `ndp<k>br` in the root namespace (address `.1`), and names `ndp<k>h<i>` for the per-host
//!   network namespace (`ip netns`) and the root-side end of its veth pair. Hosts get `.10`, `.11`...
//! - a fleet directory `/tmp/ndp<k>-XXXXXX`: client key, known_hosts (every host key pinned), an
//!   empty ssh config, a control-socket directory, and one directory per host holding its sshd
//!   config, host keys, log and the overlay upper/work directories.
//! - per host, a long-lived init process: `ip netns exec ndp<k>h<i> unshare --mount --uts --fork
//!   sh setup.sh`. The setup script configures eth0, mounts overlays over the writable system
//!   directories, a tmpfs over /var/crash, a fresh /proc, a tmpfs over /proc/sys/kernel, a tmpfs
//!   over /run, sets the hostname, starts sshd (which binds before it daemonizes, so the host is
//!   reachable once the script reports in) and then `exec`s `sleep`, which keeps the namespaces
//!   alive. `host.exec` runs commands inside them with `nsenter`.
//!
//! Everything is torn down in `Drop` (also while unwinding from a panic): every process inside each
//! host's network namespace is killed, the namespaces, veths and the bridge are deleted and the
//! directories removed. [`cleanup_stale`] removes what a killed test run left behind; `Fleet::start`
//! calls it first.
//!
//! Typical use (see tests/ssh_engine.rs and tests/ssh_nshost.rs):
//!
//! ```ignore
//! mod support;
//! use support::nshost::{Fleet, require_root_tools};
//!
//! #[tokio::test(flavor = "multi_thread")]
//! async fn example() {
//!     if !require_root_tools() {
//!         return; // printed a SKIP line
//!     }
//!     let fleet = Fleet::start(&["server", "client1"]);
//!     fleet.add_sudo_user("client1", "deploy");          // for become tests
//!     let opts = fleet.ssh_options();                     // pinned known_hosts, empty ssh config
//!     let host = netdump_provision::ssh::connect(&fleet.target("server"), &opts).await.unwrap();
//!     // ... run provision against it ...
//!     let server = fleet.host("server");
//!     assert_eq!(server.stat("/var/crash"), Some((0, 0, 0o755)));
//!     let shadow = server.read_file("/etc/shadow").unwrap();  // the host's, not the machine's
//!     server.set_link(false);                             // "crash": silent, no FIN
//! }
//! ```
//!
//! What a host is *not*: it shares the machine's kernel, pid namespace, /tmp, /dev and /sys (as
//! remounted by `ip netns exec`); /proc/sys/kernel is a tmpfs of plain files (see the setup
//! script), so sysctl writes there change nothing real. Package installs land in the /usr overlay.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netdump_provision::ssh::{SshOptions, Target};

/// Root of the cross-process allocation state (slot directories).
pub const STATE_DIR: &str = "/run/netdump-provision-tests";
/// Number of /24 networks in 198.18.0.0/16.
const SLOTS: u32 = 256;
/// First host address inside a fleet's /24.
const FIRST_HOST: u32 = 10;
/// Directories that get a private overlay in every host, when they exist. /usr (which holds
/// /usr/local) is included so that even a package install on a namespace host cannot reach the
/// machine's own files.
const OVERLAY_DIRS: &[&str] = &["/etc", "/usr", "/var", "/root", "/home", "/opt", "/srv"];
/// RSA host key size. 1024 bits is the smallest OpenSSH accepts (RequiredRSASize); a 2048-bit
/// key costs ~0.25 s of CPU, which made starting 50 hosts on a loaded machine take 15 s instead
/// of a few. These keys only guard throwaway test hosts; ed25519 is what clients negotiate.
const RSA_BITS: &str = "1024";
/// Kernel knobs copied into the fake /proc/sys/kernel (as plain files) so that probes reading
/// them still find something sensible.
/// (`arch` exists from Linux 6.1 on: where the kernel has none, neither has the host.)
const KERNEL_FILES_COPIED: &[&str] = &[
    "osrelease",
    "ostype",
    "version",
    "pid_max",
    "printk",
    "arch",
];

/// True when this process can run namespace hosts. Otherwise prints a loud SKIP line (naming the
/// reason) and returns false; tests then return early.
pub fn require_root_tools() -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("not running as root".to_string());
    }
    for tool in [
        "/usr/sbin/sshd",
        "ssh",
        "ssh-keygen",
        "unshare",
        "nsenter",
        "ip",
        "useradd",
        "sudo",
    ] {
        if !tool_exists(tool) {
            missing.push(format!("{tool} is missing"));
        }
    }
    if missing.is_empty() {
        true
    } else {
        netdump_test_support::skip("namespace-host test", &missing.join(", "));
        false
    }
}

fn tool_exists(tool: &str) -> bool {
    if tool.contains('/') {
        return Path::new(tool).exists();
    }
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
                .any(|d| d.join(tool).exists())
        })
        .unwrap_or(false)
}

/// Runs a command to completion; panics with its stderr when it fails.
fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("nshost: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "nshost: {cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs a command, ignoring failure (for teardown).
fn run_quiet(cmd: &mut Command) {
    let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
}

fn subnet_base(slot: u32) -> u32 {
    u32::from(Ipv4Addr::new(198, 18, 0, 0)) + slot * 256
}

fn bridge_name(slot: u32) -> String {
    format!("ndp{slot}br")
}

fn netns_name(slot: u32, index: usize) -> String {
    format!("ndp{slot}h{index}")
}

/// Start time of a process (field 22 of /proc/PID/stat), to tell a live owner from a reused pid.
fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Inode of a network namespace file (`/run/netns/NAME` or `/proc/PID/ns/net`).
fn netns_inode(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

/// All pids whose network namespace is one of `inodes`, grouped by namespace inode.
fn pids_in_netns(inodes: &[u64]) -> HashMap<u64, Vec<u32>> {
    let mut found: HashMap<u64, Vec<u32>> = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(ino) = netns_inode(&entry.path().join("ns/net"))
            && inodes.contains(&ino)
        {
            found.entry(ino).or_default().push(pid);
        }
    }
    found
}

/// SIGKILLs every process in the given network namespaces (except `spare`) until none is left.
fn kill_netns_processes(inodes: &[u64], spare: &[u32]) {
    for _ in 0..100 {
        let found = pids_in_netns(inodes);
        let victims: Vec<u32> = found
            .values()
            .flatten()
            .copied()
            .filter(|p| !spare.contains(p))
            .collect();
        if victims.is_empty() {
            return;
        }
        for pid in victims {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes the network namespaces of one slot (and everything running in them), the root-side
/// veths (deleted explicitly: a namespace's own devices go away asynchronously) and its bridge.
fn teardown_slot_network(slot: u32) {
    let prefix = format!("ndp{slot}h");
    let names: Vec<String> = list_netns()
        .into_iter()
        .filter(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
        })
        .collect();
    let inodes: Vec<u64> = names
        .iter()
        .filter_map(|n| netns_inode(&Path::new("/run/netns").join(n)))
        .collect();
    kill_netns_processes(&inodes, &[]);
    let veths: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| {
                    n.strip_prefix(&prefix).is_some_and(|rest| {
                        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    for v in &veths {
        run_quiet(Command::new("ip").args(["link", "del", v]));
    }
    for n in &names {
        run_quiet(Command::new("ip").args(["netns", "del", n]));
    }
    run_quiet(Command::new("ip").args(["link", "del", &bridge_name(slot)]));
}

fn list_netns() -> Vec<String> {
    fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Contents of a slot's `owner` file: `pid start_time fleet_dir`.
fn read_owner(slot_dir: &Path) -> Option<(u32, u64, PathBuf)> {
    let text = fs::read_to_string(slot_dir.join("owner")).ok()?;
    let mut it = text.splitn(3, ' ');
    let pid = it.next()?.parse().ok()?;
    let start = it.next()?.parse().ok()?;
    let dir = PathBuf::from(it.next()?.trim_end());
    Some((pid, start, dir))
}

/// Removes leftovers of test runs that were killed before their `Fleet` was dropped: slots whose
/// owner process is gone (their namespaces, processes, bridge and directories), and `ndp*`
/// network namespaces or bridges that no slot claims. Safe to call while other test processes run.
pub fn cleanup_stale() {
    let _ = fs::create_dir_all(STATE_DIR);
    let mut live_slots = Vec::new();
    if let Ok(entries) = fs::read_dir(STATE_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(slot) = name
                .strip_prefix("slot-")
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let path = entry.path();
            match read_owner(&path) {
                Some((pid, start, dir)) => {
                    if proc_start_time(pid) == Some(start) {
                        live_slots.push(slot);
                        continue;
                    }
                    teardown_slot_network(slot);
                    if dir.starts_with("/tmp") && dir.exists() {
                        let _ = fs::remove_dir_all(&dir);
                    }
                    let _ = fs::remove_dir_all(&path);
                }
                None => {
                    // Being created right now (owner not written yet), or its creator died in
                    // between: reclaim only when old.
                    let old = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(120));
                    if old {
                        teardown_slot_network(slot);
                        let _ = fs::remove_dir_all(&path);
                    } else {
                        live_slots.push(slot);
                    }
                }
            }
        }
    }
    // Namespaces and bridges nobody claims.
    let mut orphan_slots: Vec<u32> = Vec::new();
    for n in list_netns() {
        if let Some(slot) = n
            .strip_prefix("ndp")
            .and_then(|r| r.split_once('h'))
            .and_then(|(s, i)| i.parse::<u32>().ok().and(s.parse::<u32>().ok()))
            && !live_slots.contains(&slot)
        {
            orphan_slots.push(slot);
        }
    }
    if let Ok(entries) = fs::read_dir("/sys/class/net") {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(slot) = n
                .strip_prefix("ndp")
                .and_then(|r| r.strip_suffix("br"))
                .and_then(|s| s.parse::<u32>().ok())
                && !live_slots.contains(&slot)
            {
                orphan_slots.push(slot);
            }
        }
    }
    orphan_slots.sort_unstable();
    orphan_slots.dedup();
    for slot in orphan_slots {
        // A fleet claims its slot directory before it creates any namespace, so a namespace seen
        // above whose slot directory exists *now* belongs to a fleet that started meanwhile.
        if Path::new(STATE_DIR).join(format!("slot-{slot}")).exists() {
            continue;
        }
        teardown_slot_network(slot);
    }
}

/// Claims a free slot by creating its directory (atomic), and records this process as owner.
fn claim_slot() -> (u32, PathBuf) {
    fs::create_dir_all(STATE_DIR).expect("nshost: cannot create state dir");
    // Start at an offset derived from the pid and a per-process counter, so concurrent test
    // processes rarely contend and a fleet does not reuse the slot just freed by the previous one.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = (std::process::id().wrapping_mul(7) + n) % SLOTS;
    let routed = routed_prefixes();
    for i in 0..SLOTS {
        let slot = (start + i) % SLOTS;
        let base = subnet_base(slot);
        let in_use = routed.iter().any(|&(net, len)| {
            let mask = |l: u32| if l == 0 { 0 } else { u32::MAX << (32 - l) };
            let common = mask(len.min(24));
            (net & common) == (base & common)
        });
        if in_use && !Path::new("/sys/class/net").join(bridge_name(slot)).exists() {
            continue; // someone else's network (not a leftover of ours)
        }
        let dir = Path::new(STATE_DIR).join(format!("slot-{slot}"));
        if fs::create_dir(&dir).is_ok() {
            return (slot, dir);
        }
    }
    panic!("nshost: all {SLOTS} fleet slots under {STATE_DIR} are taken");
}

/// IPv4 prefixes routed in the root namespace (all tables), as `(network, length)`.
fn routed_prefixes() -> Vec<(u32, u32)> {
    let out = Command::new("ip")
        .args(["-4", "-o", "route", "show", "table", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut found = Vec::new();
    for line in out.lines() {
        let mut words = line.split_whitespace();
        let mut first = words.next().unwrap_or("");
        if matches!(
            first,
            "local"
                | "broadcast"
                | "unicast"
                | "multicast"
                | "anycast"
                | "blackhole"
                | "unreachable"
                | "prohibit"
                | "throw"
                | "nat"
        ) {
            first = words.next().unwrap_or("");
        }
        let (addr, len) = match first.split_once('/') {
            Some((a, l)) => (a, l.parse().unwrap_or(32)),
            None => (first, 32),
        };
        if let Ok(ip) = addr.parse::<Ipv4Addr>()
            && len > 0
        {
            found.push((u32::from(ip), len));
        }
    }
    found
}

/// Phase timings of `Fleet::start`, printed when `NSHOST_TIMING` is set.
struct Phases {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn new() -> Self {
        Phases {
            last: Instant::now(),
            done: Vec::new(),
        }
    }

    fn mark(&mut self, phase: &'static str) {
        let now = Instant::now();
        self.done.push((phase, now - self.last));
        self.last = now;
    }

    fn report(&self, hosts: usize) {
        if std::env::var_os("NSHOST_TIMING").is_some() {
            for (phase, took) in &self.done {
                eprintln!("nshost: {hosts} hosts: {phase}: {took:?}");
            }
        }
    }
}

/// One namespace host.
pub struct NsHost {
    pub name: String,
    pub address: Ipv4Addr,
    /// `ip netns` name (also the name of the root-side veth).
    pub netns: String,
    /// The fleet bridge in the root namespace.
    bridge: String,
    /// This host's directory (sshd config, host keys, sshd.log, overlay upper dirs).
    pub dir: PathBuf,
    init: Mutex<Option<Child>>,
    init_pid: Mutex<Option<u32>>,
}

impl NsHost {
    fn init_pid(&self) -> u32 {
        self.init_pid
            .lock()
            .unwrap()
            .unwrap_or_else(|| panic!("nshost {}: host is not running", self.name))
    }

    fn netns_inode(&self) -> Option<u64> {
        netns_inode(&Path::new("/run/netns").join(&self.netns))
    }

    /// A `Command` that runs `program` inside this host's mount, UTS and network namespaces.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.init_pid().to_string(), "-m", "-u", "-n", "--"])
            .arg(program);
        c
    }

    /// Runs a shell command inside this host (as root) and returns its output (not checked).
    pub fn exec(&self, cmd: &str) -> Output {
        self.command("sh")
            .args(["-c", cmd])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("nshost {}: nsenter failed: {e}", self.name))
    }

    /// Like [`exec`](Self::exec) but panics unless the command succeeds; returns stdout.
    pub fn exec_ok(&self, cmd: &str) -> String {
        let out = self.exec(cmd);
        assert!(
            out.status.success(),
            "nshost {}: `{cmd}` failed ({}): {}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A file's contents as seen inside this host; `None` when it does not exist.
    pub fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        let out = self
            .command("cat")
            .arg("--")
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter cat");
        out.status.success().then_some(out.stdout)
    }

    /// `(uid, gid, mode & 0o7777)` of a path inside this host; `None` when it does not exist.
    pub fn stat(&self, path: &str) -> Option<(u32, u32, u32)> {
        let out = self
            .command("stat")
            .args(["-c", "%u %g %a", "--", path])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter stat");
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace();
        let uid = it.next()?.parse().ok()?;
        let gid = it.next()?.parse().ok()?;
        let mode = u32::from_str_radix(it.next()?, 8).ok()?;
        Some((uid, gid, mode))
    }

    /// Kills every process of this host except its namespace keeper: sshd and all ssh sessions
    /// die, so the host refuses connections (like a host whose sshd is down). Files persist;
    /// [`start_sshd`](Self::start_sshd) brings it back.
    pub fn stop(&self) {
        // Spare the namespace keeper and its parent (`unshare --kill-child`, which would take the
        // keeper down with it).
        let mut spare = vec![self.init_pid()];
        if let Some(child) = self.init.lock().unwrap().as_ref() {
            spare.push(child.id());
        }
        if let Some(ino) = self.netns_inode() {
            kill_netns_processes(&[ino], &spare);
        }
    }

    /// Takes the host's network link down (`false`) or up again (`true`). Down, the host looks
    /// like a crashed or frozen machine: nothing answers and no connection is closed (no FIN or
    /// RST), so only keepalives and timeouts notice.
    pub fn set_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        self.exec_ok(&format!("ip link set eth0 {state}"));
        if up {
            // The default route went away with the link.
            let gw = Ipv4Addr::from(u32::from(self.address) & 0xffff_ff00 | 1);
            self.exec_ok(&format!("ip route replace default via {gw}"));
            // Forget the failed ARP lookups from while it was down, and wait until it answers.
            run_quiet(Command::new("ip").args([
                "neigh",
                "del",
                &self.address.to_string(),
                "dev",
                &self.bridge,
            ]));
            self.wait_reachable();
        }
    }

    /// Waits (up to 30 s) until sshd on this host accepts TCP connections; panics otherwise.
    pub fn wait_reachable(&self) {
        let addr = SocketAddrV4::new(self.address, 22);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2)) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("nshost {}: {addr} not reachable: {e}", self.name)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Starts sshd again after [`stop`](Self::stop). Returns once it listens.
    pub fn start_sshd(&self) {
        let cfg = self.dir.join("sshd_config");
        let log = self.dir.join("sshd.log");
        let out = self
            .command("/usr/sbin/sshd")
            .arg("-f")
            .arg(&cfg)
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter sshd");
        assert!(
            out.status.success(),
            "nshost {}: sshd did not start: {}; log {}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(&log).unwrap_or_default()
        );
        self.wait_reachable();
    }

    /// Replaces the host keys with new ones and restarts sshd, as a reinstalled host would: the
    /// fleet's known_hosts still pins the old keys.
    pub fn regenerate_host_key(&self) {
        self.stop();
        for t in ["ed25519", "rsa"] {
            let key = self.dir.join(format!("ssh_host_{t}_key"));
            let _ = fs::remove_file(&key);
            let _ = fs::remove_file(key.with_extension("pub"));
        }
        generate_host_keys(&self.dir);
        self.start_sshd();
    }

    /// This host's current public host keys as known_hosts lines.
    pub fn known_hosts_lines(&self) -> String {
        let mut s = String::new();
        for t in ["ed25519", "rsa"] {
            let pub_key = fs::read_to_string(self.dir.join(format!("ssh_host_{t}_key.pub")))
                .expect("host key .pub");
            let mut parts = pub_key.split_whitespace();
            let (kind, blob) = (parts.next().unwrap(), parts.next().unwrap());
            s.push_str(&format!("{} {kind} {blob}\n", self.address));
        }
        s
    }

    fn kill_all(&self) {
        if let Some(ino) = self.netns_inode() {
            kill_netns_processes(&[ino], &[]);
        }
        if let Some(mut child) = self.init.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        *self.init_pid.lock().unwrap() = None;
    }
}

/// Starts a host's init: its setup script in a new mount + UTS namespace inside its netns.
fn spawn_init(host: &NsHost) {
    let setup_log = fs::File::create(host.dir.join("setup.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &host.netns])
        .args([
            "unshare",
            "--mount",
            "--uts",
            "--fork",
            "--kill-child",
            "sh",
        ])
        .arg(host.dir.join("setup.sh"))
        .stdin(Stdio::null())
        .stdout(setup_log.try_clone().unwrap())
        .stderr(setup_log)
        .spawn()
        .expect("nshost: spawn host init");
    *host.init.lock().unwrap() = Some(child);
}

fn generate_host_keys(dir: &Path) {
    for (t, extra) in [("ed25519", &[][..]), ("rsa", &["-b", RSA_BITS][..])] {
        let key = dir.join(format!("ssh_host_{t}_key"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", t])
            .args(extra)
            .args(["-N", "", "-C", "", "-f"])
            .arg(&key));
    }
}

/// A set of namespace hosts on one private bridge.
pub struct Fleet {
    slot: u32,
    slot_dir: PathBuf,
    dir: Option<tempfile::TempDir>,
    hosts: Vec<NsHost>,
    network_up: bool,
}

impl Fleet {
    /// Starts one namespace host per name (in parallel). Panics with the reason if anything fails.
    pub fn start(names: &[&str]) -> Fleet {
        cleanup_stale();
        let (slot, slot_dir) = claim_slot();
        let dir = tempfile::Builder::new()
            .prefix(&format!("ndp{slot}-"))
            .tempdir_in("/tmp")
            .expect("nshost: temp dir");
        let me = std::process::id();
        fs::write(
            slot_dir.join("owner"),
            format!(
                "{me} {} {}",
                proc_start_time(me).expect("own start time"),
                dir.path().display()
            ),
        )
        .expect("nshost: owner file");
        let mut fleet = Fleet {
            slot,
            slot_dir,
            dir: Some(dir),
            hosts: Vec::new(),
            network_up: false,
        };
        fleet.setup(names);
        fleet
    }

    /// Starts `count` hosts named `<prefix>1`, `<prefix>2`, ...
    pub fn start_n(prefix: &str, count: usize) -> Fleet {
        let names: Vec<String> = (1..=count).map(|i| format!("{prefix}{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        Fleet::start(&refs)
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn setup(&mut self, names: &[&str]) {
        assert!(
            names.len() <= (255 - FIRST_HOST) as usize,
            "nshost: at most {} hosts per fleet",
            255 - FIRST_HOST
        );
        let dir = self.dir().to_path_buf();
        // Leftovers with our slot's names can only come from a run that lost its slot directory.
        teardown_slot_network(self.slot);

        // Client side: key, authorized_keys (shared by every host and user), empty ssh config.
        let client_key = dir.join("client_key");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "nshost-client", "-f"])
            .arg(&client_key));
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        fs::write(dir.join("ssh_config"), "").unwrap();
        let control = dir.join("c");
        fs::create_dir(&control).unwrap();
        fs::set_permissions(&control, fs::Permissions::from_mode(0o700)).unwrap();

        // Root-namespace network in one `ip -batch`.
        let base = subnet_base(self.slot);
        let gw = Ipv4Addr::from(base + 1);
        let br = bridge_name(self.slot);
        let mut batch =
            format!("link add {br} type bridge\naddr add {gw}/24 dev {br}\nlink set {br} up\n");
        for i in 0..names.len() {
            let ns = netns_name(self.slot, i);
            batch.push_str(&format!(
                "netns add {ns}\nlink add {ns} type veth peer name eth0 netns {ns}\nlink set {ns} master {br} up\n"
            ));
        }
        let batch_file = dir.join("net.batch");
        fs::write(&batch_file, batch).unwrap();
        self.network_up = true;
        let mut phases = Phases::new();
        run(Command::new("ip").arg("-batch").arg(&batch_file));
        phases.mark("root-namespace network");

        // Spawn every host's init, then wait for all of them.
        for (i, name) in names.iter().enumerate() {
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
                "nshost: host name {name:?} must be a plain hostname"
            );
            let address = Ipv4Addr::from(base + FIRST_HOST + i as u32);
            let host_dir = dir.join("hosts").join(name);
            fs::create_dir_all(&host_dir).unwrap();
            let host = NsHost {
                name: name.to_string(),
                address,
                netns: netns_name(self.slot, i),
                bridge: bridge_name(self.slot),
                dir: host_dir,
                init: Mutex::new(None),
                init_pid: Mutex::new(None),
            };
            write_sshd_config(&host, &dir);
            fs::write(
                host.dir.join("setup.sh"),
                setup_script(&host, gw, &dir.join("hosts").join(name)),
            )
            .unwrap();
            self.hosts.push(host);
        }
        // Spawning waits for each child's exec; on a loaded machine that adds up, so spawn from a
        // few threads at once. (The children belong to the process, not to these threads.)
        let workers = 8.min(self.hosts.len().max(1));
        std::thread::scope(|scope| {
            for w in 0..workers {
                let hosts = &self.hosts;
                scope.spawn(move || {
                    for host in hosts.iter().skip(w).step_by(workers) {
                        spawn_init(host);
                    }
                });
            }
        });
        phases.mark("spawn host inits");
        let deadline = Instant::now() + Duration::from_secs(60);
        for host in &self.hosts {
            let pid_file = host.dir.join("init.pid");
            loop {
                if let Ok(text) = fs::read_to_string(&pid_file)
                    && let Ok(pid) = text.trim().parse::<u32>()
                {
                    *host.init_pid.lock().unwrap() = Some(pid);
                    break;
                }
                let exited = host
                    .init
                    .lock()
                    .unwrap()
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                if exited.is_some() || Instant::now() > deadline {
                    panic!(
                        "nshost {}: setup failed ({exited:?}): {}\nsshd.log: {}",
                        host.name,
                        fs::read_to_string(host.dir.join("setup.log")).unwrap_or_default(),
                        fs::read_to_string(host.dir.join("sshd.log")).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        phases.mark("host setup (mounts, keys, sshd)");
        // sshd binds before it daemonizes, so every host already listens; check it anyway.
        for host in &self.hosts {
            let addr = SocketAddrV4::new(host.address, 22);
            let mut attempt = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5));
            while attempt.is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                attempt = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5));
            }
            if let Err(e) = attempt {
                panic!(
                    "nshost {}: sshd on {addr} not reachable: {e}; sshd.log: {}",
                    host.name,
                    fs::read_to_string(host.dir.join("sshd.log")).unwrap_or_default()
                );
            }
        }
        self.write_known_hosts();
        phases.mark("reachability check, known_hosts");
        phases.report(names.len());
    }

    /// Rewrites known_hosts with every host's current keys.
    pub fn write_known_hosts(&self) {
        let mut kh = fs::File::create(self.known_hosts_path()).unwrap();
        for h in &self.hosts {
            kh.write_all(h.known_hosts_lines().as_bytes()).unwrap();
        }
    }

    pub fn hosts(&self) -> &[NsHost] {
        &self.hosts
    }

    pub fn host(&self, name: &str) -> &NsHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("nshost: no host {name} in this fleet"))
    }

    /// The fleet's slot: its /24 is `198.18.0.0 + slot * 256`, its names start with `ndp<slot>`.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The fleet's directory (client key, known_hosts, host dirs).
    pub fn path(&self) -> &Path {
        self.dir()
    }

    /// The root namespace's address on the fleet bridge (hosts' default gateway).
    #[allow(dead_code)] // benches/sink.rs
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(subnet_base(self.slot) + 1)
    }

    /// An address in the fleet's subnet where nothing answers (connects to it time out).
    pub fn unused_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(subnet_base(self.slot) + 254)
    }

    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir().join("known_hosts")
    }

    pub fn client_key_path(&self) -> PathBuf {
        self.dir().join("client_key")
    }

    /// An empty ssh client config, so the developer's ~/.ssh/config never applies.
    pub fn ssh_config_path(&self) -> PathBuf {
        self.dir().join("ssh_config")
    }

    /// Options that reach this fleet: its known_hosts, its empty ssh config, a short control dir.
    pub fn ssh_options(&self) -> SshOptions {
        SshOptions {
            known_hosts: Some(self.known_hosts_path()),
            accept_new_host_keys: false,
            ssh_config: Some(self.ssh_config_path()),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(2),
            control_dir: Some(self.dir().join("c")),
            max_channels: 8,
        }
    }

    /// A target for `name` as root with the fleet's client key.
    pub fn target(&self, name: &str) -> Target {
        let h = self.host(name);
        Target {
            name: h.name.clone(),
            address: h.address.to_string(),
            port: 22,
            user: Some("root".into()),
            private_key_file: Some(self.client_key_path()),
            become_: false,
            ssh_common_args: Vec::new(),
        }
    }

    /// Adds a user that can log in with the fleet's client key, without sudo rights.
    pub fn add_user(&self, host: &str, user: &str) {
        assert!(user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        // '*' instead of useradd's '!': sshd refuses accounts whose password field starts with
        // '!' (locked) even for key logins when UsePAM is off.
        self.host(host).exec_ok(&format!(
            "useradd -m -s /bin/sh {user} && usermod -p '*' {user}"
        ));
    }

    /// Adds a user with passwordless sudo (`NOPASSWD: ALL`), for become tests.
    pub fn add_sudo_user(&self, host: &str, user: &str) {
        self.add_user(host, user);
        self.host(host).exec_ok(&format!(
            "printf '%s ALL=(ALL) NOPASSWD: ALL\\n' {user} > /etc/sudoers.d/ndp-{user} && chmod 0440 /etc/sudoers.d/ndp-{user}"
        ));
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let inodes: Vec<u64> = self.hosts.iter().filter_map(|h| h.netns_inode()).collect();
        kill_netns_processes(&inodes, &[]);
        for h in &self.hosts {
            h.kill_all();
        }
        if self.network_up {
            teardown_slot_network(self.slot);
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if dir.close().is_err() {
                let _ = fs::remove_dir_all(&path);
            }
        }
        let _ = fs::remove_dir_all(&self.slot_dir);
    }
}

fn write_sshd_config(host: &NsHost, fleet_dir: &Path) {
    let d = &host.dir;
    let cfg = format!(
        "ListenAddress {addr}:22\n\
         HostKey {d}/ssh_host_ed25519_key\n\
         HostKey {d}/ssh_host_rsa_key\n\
         PidFile {d}/sshd.pid\n\
         PermitRootLogin prohibit-password\n\
         # The fleet key for every user, plus the users' own files (the provisioner installs\n\
         # keys for the dump user there).\n\
         AuthorizedKeysFile {fleet}/authorized_keys .ssh/authorized_keys .ssh/authorized_keys2\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes no\n\
         MaxSessions 16\n\
         MaxStartups 100:30:200\n\
         Subsystem sftp /usr/lib/openssh/sftp-server\n",
        addr = host.address,
        d = d.display(),
        fleet = fleet_dir.display(),
    );
    fs::write(d.join("sshd_config"), cfg).unwrap();
}

/// The host's init script. It runs as root inside the host's new namespaces, and uses shell
/// builtins where it can, since 50 hosts start at once on a busy machine.
fn setup_script(host: &NsHost, gw: Ipv4Addr, d: &Path) -> String {
    let d = d.display();
    let overlays: Vec<&str> = OVERLAY_DIRS
        .iter()
        .copied()
        .filter(|p| Path::new(p).is_dir())
        .collect();
    let mut dirs = String::new();
    let mut mounts = String::new();
    for p in &overlays {
        dirs.push_str(&format!(" \"$D/upper{p}\" \"$D/work{p}\""));
        mounts.push_str(&format!(
            "mount -t overlay overlay -o \"lowerdir={p},upperdir=$D/upper{p},workdir=$D/work{p}\" {p}\n"
        ));
    }
    let mut save = String::new();
    let mut restore = String::new();
    for f in KERNEL_FILES_COPIED {
        save.push_str(&format!(
            "IFS= read -r k_{f} < /proc/sys/kernel/{f} || k_{f}=\n"
        ));
        restore.push_str(&format!(
            "[ -z \"$k_{f}\" ] || printf '%s\\n' \"$k_{f}\" > /proc/sys/kernel/{f}\n"
        ));
    }
    format!(
        r#"set -eu
# Everything below changes mounts and the network: never do it in the machine's own namespaces.
if [ /proc/$$/ns/mnt -ef /proc/{harness}/ns/mnt ] || [ /proc/$$/ns/net -ef /proc/{harness}/ns/net ]; then
  echo "nshost: refusing to set up a host outside private mount+net namespaces" >&2
  exit 1
fi
D={d}
umask 022
# Network: this script already runs in the host's own network namespace.
ip -batch - <<NSHOST_IP_BATCH
link set lo up
addr add {addr}/24 dev eth0
link set eth0 up
route add default via {gw}
NSHOST_IP_BATCH
# Private copies of the writable system directories (upper dirs in the fleet's temp dir).
mkdir -p{dirs}
{mounts}# root's shell start-up files as a freshly installed Debian host has them, not the ones of
# the machine running the tests (a developer's ~/.bashrc may start pyenv, cargo... on every
# ssh command, since bash reads ~/.bashrc when sshd starts it).
for f in bashrc profile; do
  if [ -f /usr/share/base-files/dot.$f ]; then cp /usr/share/base-files/dot.$f /root/.$f; else rm -f /root/.$f; fi
done
mkdir -p /var/crash
mount -t tmpfs -o mode=0755 tmpfs /var/crash
# Remember a few kernel knobs before hiding them.
{save}IFS= read -r boot_id < /proc/sys/kernel/random/uuid
mount -t proc proc /proc
# NOTE: the kernel of these machines has no /proc/sys/kernel/sysrq, so this is a plain file on a
# tmpfs, holding 0 like a distribution default. Writes to it change nothing in the kernel; tier 3
# (qemu lab) tests the real knob. The other files here are plain copies, plus a per-host boot_id.
mount -t tmpfs -o mode=0755 tmpfs /proc/sys/kernel
echo 0 > /proc/sys/kernel/sysrq
{restore}echo {name} > /proc/sys/kernel/hostname
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /proc/sys/kernel/random /run/sshd /run/lock
echo "$boot_id" > /proc/sys/kernel/random/boot_id
hostname {name}
echo "127.0.1.1 {name}" >> /etc/hosts
[ -f "$D/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C '' -f "$D/ssh_host_ed25519_key"
[ -f "$D/ssh_host_rsa_key" ] || ssh-keygen -q -t rsa -b {rsa_bits} -N '' -C '' -f "$D/ssh_host_rsa_key"
# /etc/ssh (a private overlay) shows the keys this host's sshd serves, as on a real host: facts
# read them there and clients pin them, so they must not be the machine's own.
rm -f /etc/ssh/ssh_host_*
cp -p "$D"/ssh_host_*_key "$D"/ssh_host_*_key.pub /etc/ssh/
# Daemon mode: sshd binds its socket before it forks, so the host is reachable when this returns.
/usr/sbin/sshd -f "$D/sshd_config" -E "$D/sshd.log"
# One small write: the harness never reads a partial pid.
echo $$ > "$D/init.pid"
exec sleep 2147483647
"#,
        addr = host.address,
        name = host.name,
        harness = std::process::id(),
        rsa_bits = RSA_BITS,
    )
}

/// A finished command's exit status and output, for assertion messages.
pub fn show(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Fleet {
    /// `PROVISION SUBCOMMAND ARGS` aimed at this fleet: its known_hosts (strict host keys), its
    /// ssh config, the connect timeout, no colours. Callers add the inventory and the rest.
    pub fn provision(&self, program: &Path, subcommand: &str, connect_timeout: u32) -> Command {
        let mut c = Command::new(program);
        c.arg(subcommand)
            .arg("--known-hosts")
            .arg(self.known_hosts_path())
            .arg("--ssh-config")
            .arg(self.ssh_config_path())
            .arg("--connect-timeout")
            .arg(connect_timeout.to_string())
            .env("NO_COLOR", "1");
        c
    }
}
