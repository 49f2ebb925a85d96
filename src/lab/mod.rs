//! Throwaway qemu lab fleet (issue 4): `provision lab up|down|status|demo`.
//!
//! One dump server VM (`lab-server`) and N client VMs (`lab-client1`...) run real Debian bookworm
//! kernels under qemu (TCG: nested KVM hangs on our machines) with `crashkernel=256M`, each with
//! its own disk, address, hostname and ssh host keys. They sit on a bridge inside a network
//! namespace; a veth gives the controller (root namespace) an address on the same /24, so
//! `provision apply -i <state>/inventory.yaml` reaches them directly and the server sees every
//! client's real address.
//!
//! Modules: `image` (debootstrap base image, cached by recipe hash), `net` (namespace, bridge,
//! taps, veth), `keys` (login key, pinned host keys), `vm` (disk, qemu, pidfile),
//! `inventory` (the Ansible-format inventory), `cmd` (running host tools).

pub mod cmd;
pub mod demo;
pub mod image;
pub mod inventory;
pub mod keys;
pub mod net;
pub mod vm;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use net::{NetPlan, VmNet};
use vm::VmPaths;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/netdump-provision/lab";
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/netdump-provision/lab";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab: {0}")]
    Config(String),
    #[error("lab: `{tool}` is not installed; {hint}")]
    MissingTool { tool: String, hint: String },
    #[error("lab: {step}: cannot run `{command}`: {source}")]
    Spawn {
        step: String,
        command: String,
        source: std::io::Error,
    },
    #[error("lab: {step}: `{command}` failed (exit {status:?}):\n{stderr}")]
    ToolFailed {
        step: String,
        command: String,
        status: Option<i32>,
        stderr: String,
    },
    #[error("lab: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "lab: building the base image failed: {detail}; see {log}, fix, and run `lab up` again"
    )]
    ImageBuild { log: PathBuf, detail: String },
    #[error("lab: {vm}: qemu is not running (exited or was killed); console log {serial}:\n{tail}")]
    VmDied {
        vm: String,
        serial: PathBuf,
        tail: String,
    },
    #[error(
        "lab: sshd did not answer within {waited_secs} s on: {vms}; see the console logs under \
         {state}/vms/<name>/serial.log (under TCG a boot takes about 2 minutes; raise --timeout \
         on a loaded machine)"
    )]
    SshTimeout {
        vms: String,
        waited_secs: u64,
        state: PathBuf,
    },
    #[error("lab: could not stop {what}; kill it by hand, then run `lab down` again")]
    Stuck { what: String },
}

impl LabError {
    pub fn io(path: &Path, source: std::io::Error) -> LabError {
        LabError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `provision lab ...`
#[derive(Debug, Clone, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
    /// Lab state: login key, pinned host keys, VM disks and console logs, generated inventory.
    #[arg(long, env = "NETDUMP_LAB_STATE", default_value = DEFAULT_STATE_DIR, global = true)]
    pub state_dir: PathBuf,
    /// Base image cache (outside the repository; keyed by the image recipe's hash).
    #[arg(long, env = "NETDUMP_LAB_CACHE", default_value = DEFAULT_CACHE_DIR, global = true)]
    pub cache_dir: PathBuf,
    /// Network namespace holding the lab bridge (also prefixes the controller's veth name).
    #[arg(long, default_value = "ndlab", global = true)]
    pub netns: String,
    /// The lab's /24 (first three octets); the controller is .1, the server .10, clients .11...
    #[arg(long, default_value = "198.19.0", value_parser = parse_prefix, global = true)]
    pub subnet: [u8; 3],
    /// Debian mirror for the image build (default: the one apt uses on this machine).
    #[arg(long, global = true)]
    pub mirror: Option<String>,
    /// Seconds `up` waits for sshd on every VM.
    #[arg(long, default_value_t = 1800, global = true)]
    pub timeout: u64,
}

#[derive(Debug, Clone, Subcommand)]
pub enum LabCommand {
    /// Build the image if needed, start the server and client VMs, wait for ssh, write the
    /// inventory. Idempotent: running VMs are left alone.
    Up {
        /// Number of client VMs.
        #[arg(long, default_value_t = 1)]
        clients: u8,
    },
    /// Stop every lab VM and remove the namespace, bridge, taps and veth. Idempotent.
    Down,
    /// Show each VM's pid, address and whether ssh answers.
    Status,
    /// The whole story: `up`, apply, apply again (must change nothing), test-crash every
    /// client, show where dumps and logs landed, then `down` (unless --keep).
    Demo {
        #[arg(long, default_value_t = 1)]
        clients: u8,
        /// Leave the lab running afterwards (for a look around, or for tests).
        #[arg(long)]
        keep: bool,
    },
}

fn parse_prefix(s: &str) -> Result<[u8; 3], String> {
    let parts: Vec<&str> = s.split('.').collect();
    let bad = || format!("{s:?}: expected the first three octets of a /24, like 198.19.0");
    if parts.len() != 3 {
        return Err(bad());
    }
    let mut out = [0u8; 3];
    for (o, p) in out.iter_mut().zip(parts) {
        *o = p.parse().map_err(|_| bad())?;
    }
    Ok(out)
}

/// Everything the lab operations need, independent of clap.
#[derive(Debug, Clone)]
pub struct LabConfig {
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub netns: String,
    pub subnet: [u8; 3],
    pub mirror: Option<String>,
    pub timeout: Duration,
}

impl LabConfig {
    pub fn from_args(a: &LabArgs) -> LabConfig {
        LabConfig {
            state_dir: a.state_dir.clone(),
            cache_dir: a.cache_dir.clone(),
            netns: a.netns.clone(),
            subnet: a.subnet,
            mirror: a.mirror.clone(),
            timeout: Duration::from_secs(a.timeout),
        }
    }

    /// The lab's ssh login key (root on every VM).
    pub fn login_key(&self) -> PathBuf {
        self.state_dir.join("id_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.state_dir.join("known_hosts")
    }

    pub fn inventory(&self) -> PathBuf {
        self.state_dir.join("inventory.yaml")
    }

    pub fn plan(&self, clients: u8) -> Result<NetPlan, LabError> {
        NetPlan::new(&self.netns, self.subnet, clients)
    }

    /// ssh options that log in as root with the lab key and the pinned host keys only.
    pub fn ssh_args(&self, ip: Ipv4Addr) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=15".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-i".into(),
            self.login_key().display().to_string(),
            format!("root@{ip}"),
        ]
    }

    /// Runs `script` as root on the VM at `ip`; returns (exit 0?, stdout). A transport failure
    /// (ssh exit 255: TCG guests on a loaded host can miss the connect timeout) is retried
    /// twice, 3 s apart, so use scripts that are safe to repeat.
    pub async fn ssh(&self, ip: Ipv4Addr, script: &str) -> Result<(bool, String), LabError> {
        let mut attempt = 0;
        loop {
            let (status, out) = self.ssh_once(ip, script).await?;
            attempt += 1;
            if status != Some(255) || attempt == 3 {
                return Ok((status == Some(0), out));
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }

    /// One ssh attempt: (exit status, stdout).
    pub async fn ssh_once(
        &self,
        ip: Ipv4Addr,
        script: &str,
    ) -> Result<(Option<i32>, String), LabError> {
        let out = tokio::process::Command::new("ssh")
            .args(self.ssh_args(ip))
            .arg(script)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| LabError::Spawn {
                step: format!("ssh to {ip}"),
                command: "ssh".into(),
                source: e,
            })?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }
}

pub(crate) fn create_dir_mode(dir: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| LabError::io(dir, e))
}

/// Host tools the lab needs, with the Debian package that has each.
pub const TOOLS: [(&str, &str); 7] = [
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("debootstrap", "debootstrap"),
    ("mkfs.ext4", "e2fsprogs"),
    ("ip", "iproute2"),
    ("ssh-keygen", "openssh-client"),
    ("ssh", "openssh-client"),
    ("unshare", "util-linux"),
];

/// The first missing host tool, if any.
pub fn missing_tool() -> Option<LabError> {
    TOOLS
        .iter()
        .find(|(t, _)| !cmd::have(t))
        .map(|(t, pkg)| LabError::MissingTool {
            tool: t.to_string(),
            hint: format!("install it with `apt-get install {pkg}`"),
        })
}

/// One VM as `status` sees it.
#[derive(Debug, Clone)]
pub struct VmStatus {
    pub name: String,
    pub ip: Ipv4Addr,
    pub pid: Option<i32>,
    pub ssh: bool,
}

/// Starts the lab (idempotent) and waits until sshd answers on every VM.
pub async fn up(cfg: &LabConfig, clients: u8) -> Result<NetPlan, LabError> {
    if let Some(e) = missing_tool() {
        return Err(e);
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(LabError::Config(
            "the lab creates network namespaces, taps and disk images: run it as root".into(),
        ));
    }
    let plan = cfg.plan(clients)?;
    create_dir_mode(&cfg.state_dir, 0o700)?;
    let mirror = cfg.mirror.clone().unwrap_or_else(image::host_mirror);
    let img = image::ensure(&cfg.cache_dir, &mirror).await?;

    keys::ensure_keypair(&cfg.login_key(), "ed25519", "netdump-provision-lab").await?;
    let login_pub_path = keys::pub_path(&cfg.login_key());
    let login_pub =
        std::fs::read_to_string(&login_pub_path).map_err(|e| LabError::io(&login_pub_path, e))?;

    let mut known = Vec::new();
    let mut host_keys = Vec::new();
    for vm in &plan.vms {
        let paths = VmPaths::new(&cfg.state_dir, &vm.name);
        let ks = keys::ensure_host_keys(&paths.host_keys, &vm.name).await?;
        let pubs = ks
            .iter()
            .map(|k| {
                let p = keys::pub_path(k);
                std::fs::read_to_string(&p).map_err(|e| LabError::io(&p, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        known.extend(keys::known_hosts_lines(&vm.name, vm.ip, &pubs));
        host_keys.push(ks);
    }
    write_file(&cfg.known_hosts(), &(known.join("\n") + "\n"), 0o644)?;
    write_file(
        &cfg.inventory(),
        &inventory::render(&plan, &cfg.login_key(), &cfg.known_hosts()),
        0o644,
    )?;

    net::up(&plan).await?;

    for (vm, ks) in plan.vms.iter().zip(&host_keys) {
        let paths = VmPaths::new(&cfg.state_dir, &vm.name);
        if let Some(pid) = vm::running_pid(&paths) {
            eprintln!("lab: {} already running (pid {pid})", vm.name);
            continue;
        }
        create_dir_mode(&paths.dir, 0o700)?;
        if !paths.disk.exists() {
            eprintln!("lab: {}: making its disk", vm.name);
            vm::build_disk(vm, &plan, &paths, &img, ks, &login_pub).await?;
        }
        let pid = vm::start(vm, &plan, &paths, &img).await?;
        eprintln!(
            "lab: {} started (pid {pid}, {}, console {})",
            vm.name,
            vm.ip,
            paths.serial.display()
        );
    }

    wait_for_ssh(cfg, &plan.vms).await?;
    Ok(plan)
}

/// Polls `ssh true` on every VM until all answer or the deadline passes.
pub async fn wait_for_ssh(cfg: &LabConfig, vms: &[VmNet]) -> Result<(), LabError> {
    let start = Instant::now();
    let mut pending: Vec<&VmNet> = vms.iter().collect();
    let mut last_note = Instant::now();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for vm in pending {
            let paths = VmPaths::new(&cfg.state_dir, &vm.name);
            if vm::running_pid(&paths).is_none() {
                return Err(vm::died(&vm.name, &paths));
            }
            if cfg.ssh_once(vm.ip, "true").await?.0 == Some(0) {
                eprintln!(
                    "lab: {} answers on ssh after {} s",
                    vm.name,
                    start.elapsed().as_secs()
                );
            } else {
                still.push(vm);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if start.elapsed() > cfg.timeout {
            return Err(LabError::SshTimeout {
                vms: pending
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                waited_secs: start.elapsed().as_secs(),
                state: cfg.state_dir.clone(),
            });
        }
        if last_note.elapsed() >= Duration::from_secs(30) {
            last_note = Instant::now();
            eprintln!(
                "lab: waiting for sshd on {} ({} s so far)",
                pending
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                start.elapsed().as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Ok(())
}

/// VM names that have a directory in the state dir, server first.
fn known_vms(cfg: &LabConfig) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cfg.state_dir.join("vms"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort_by_key(|n| (n != "lab-server", n.len(), n.clone()));
    names
}

/// The plan covering every VM the state dir knows (at least one client).
fn plan_for_state(cfg: &LabConfig) -> Result<NetPlan, LabError> {
    let clients = known_vms(cfg)
        .iter()
        .filter_map(|n| n.strip_prefix("lab-client")?.parse::<u8>().ok())
        .max()
        .unwrap_or(1)
        .max(1);
    cfg.plan(clients)
}

/// Stops every VM, removes the network and the VM disks. Keys, known_hosts and the inventory stay
/// (they are reused by the next `up`). Idempotent.
pub async fn down(cfg: &LabConfig) -> Result<(), LabError> {
    for name in known_vms(cfg) {
        let paths = VmPaths::new(&cfg.state_dir, &name);
        if let Some(pid) = vm::running_pid(&paths) {
            eprintln!("lab: stopping {name} (pid {pid})");
        }
        vm::stop(&paths).await?;
        if paths.dir.exists() {
            std::fs::remove_dir_all(&paths.dir).map_err(|e| LabError::io(&paths.dir, e))?;
        }
    }
    net::down(&plan_for_state(cfg)?).await?;
    // Masters that apply or test-crash kept for the lab's VMs (they pin this lab's known_hosts)
    // would otherwise wait for their idle timeout to notice the hosts are gone.
    let closed =
        crate::ssh::close_kept_masters(None, &cfg.known_hosts().display().to_string()).await;
    if closed > 0 {
        eprintln!("lab: closed {closed} ssh connection(s) to the lab's VMs");
    }
    // Empty once every VM is gone; a failure here only means something else lives there.
    let _ = std::fs::remove_dir(cfg.state_dir.join("vms"));
    Ok(())
}

pub async fn status(cfg: &LabConfig) -> Result<Vec<VmStatus>, LabError> {
    let plan = plan_for_state(cfg)?;
    let mut out = Vec::new();
    for name in known_vms(cfg) {
        let Some(vm) = plan.vms.iter().find(|v| v.name == name) else {
            continue;
        };
        let pid = vm::running_pid(&VmPaths::new(&cfg.state_dir, &name));
        let ssh = pid.is_some() && cfg.ssh(vm.ip, "true").await?.0;
        out.push(VmStatus {
            name,
            ip: vm.ip,
            pid,
            ssh,
        });
    }
    Ok(out)
}

fn write_file(path: &Path, content: &str, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).map_err(|e| LabError::io(&tmp, e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| LabError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| LabError::io(path, e))
}

/// Entry point for `provision lab ...`; returns the process exit code.
pub async fn run(args: LabArgs) -> anyhow::Result<i32> {
    let cfg = LabConfig::from_args(&args);
    match args.command {
        LabCommand::Up { clients } => {
            up(&cfg, clients).await?;
            eprintln!("lab: up; inventory {}", cfg.inventory().display());
            Ok(0)
        }
        LabCommand::Demo { clients, keep } => demo::demo(&cfg, clients, keep).await,
        LabCommand::Down => {
            down(&cfg).await?;
            eprintln!("lab: down");
            Ok(0)
        }
        LabCommand::Status => {
            let vms = status(&cfg).await?;
            if vms.is_empty() {
                println!("no lab VMs (run `provision lab up`)");
                return Ok(1);
            }
            println!("{:<14} {:<8} {:<15} SSH", "VM", "PID", "ADDRESS");
            for v in &vms {
                println!(
                    "{:<14} {:<8} {:<15} {}",
                    v.name,
                    v.pid.map_or("-".to_string(), |p| p.to_string()),
                    v.ip,
                    if v.ssh { "yes" } else { "no" }
                );
            }
            Ok(if vms.iter().all(|v| v.ssh) { 0 } else { 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_parsing() {
        assert_eq!(parse_prefix("198.19.0"), Ok([198, 19, 0]));
        assert!(parse_prefix("198.19").is_err());
        assert!(parse_prefix("198.19.0.1").is_err());
        assert!(parse_prefix("198.300.0").is_err());
    }

    #[test]
    fn ssh_args_pin_host_keys_and_key() {
        let cfg = LabConfig {
            state_dir: "/s".into(),
            cache_dir: "/c".into(),
            netns: "ndlab".into(),
            subnet: [198, 19, 0],
            mirror: None,
            timeout: Duration::from_secs(1),
        };
        let a = cfg.ssh_args(Ipv4Addr::new(198, 19, 0, 10)).join(" ");
        assert!(a.contains("StrictHostKeyChecking=yes"));
        assert!(a.contains("UserKnownHostsFile=/s/known_hosts"));
        assert!(a.contains("BatchMode=yes"));
        assert!(a.ends_with("-i /s/id_ed25519 root@198.19.0.10"));
    }

    #[test]
    fn clap_parses_lab_commands() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            lab: LabArgs,
        }
        let t = T::try_parse_from(["t", "up", "--clients", "3", "--netns", "ndlabt"]).unwrap();
        assert!(matches!(t.lab.command, LabCommand::Up { clients: 3 }));
        assert_eq!(t.lab.netns, "ndlabt");
        assert!(T::try_parse_from(["t", "status", "--subnet", "1.2"]).is_err());
    }
}
