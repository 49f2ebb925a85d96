//! One lab VM: its disk (the base rootfs plus its own identity, made into a raw ext4 image with
//! `mkfs.ext4 -d`), the qemu command line, and its process (started daemonized inside the lab
//! namespace, tracked by a pidfile).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::LabError;
use super::cmd::Tool;
use super::image::BaseImage;
use super::net::{NetPlan, VmNet};

/// Interface name the guest gives the virtio NIC at PCI slot 3 (predictable naming, `ens3`).
pub const GUEST_IFACE: &str = "ens3";
/// Disk size (sparse); room for a few client dumps on the server.
pub const DISK_SIZE: &str = "4G";
/// Guest memory in MiB, and the crash kernel reservation.
pub const MEMORY_MIB: u32 = 1024;
pub const CRASHKERNEL: &str = "256M";

/// Where one VM keeps its files under the lab state dir.
#[derive(Debug, Clone)]
pub struct VmPaths {
    pub dir: PathBuf,
    pub disk: PathBuf,
    pub serial: PathBuf,
    pub pidfile: PathBuf,
    pub upper: PathBuf,
    pub host_keys: PathBuf,
}

impl VmPaths {
    pub fn new(state: &Path, name: &str) -> VmPaths {
        let dir = state.join("vms").join(name);
        VmPaths {
            disk: dir.join("disk.img"),
            serial: dir.join("serial.log"),
            pidfile: dir.join("qemu.pid"),
            upper: dir.join("identity"),
            host_keys: state.join("hostkeys").join(name),
            dir,
        }
    }
}

/// The kernel command line of every lab VM. `panic=10` makes a VM whose kdump is not armed
/// reboot after a crash instead of hanging; with kdump armed the panic goes to the capture
/// kernel first.
pub fn kernel_cmdline() -> String {
    format!("root=/dev/vda ro console=ttyS0 crashkernel={CRASHKERNEL} panic=10")
}

/// qemu's arguments (after `qemu-system-x86_64`), pure. No `-no-reboot`: a crash test needs
/// the reboot that follows the dump.
pub fn qemu_args(vm: &VmNet, paths: &VmPaths, img: &BaseImage) -> Vec<String> {
    let p = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        "-name".into(),
        vm.name.clone(),
        "-machine".into(),
        "pc".into(),
        // Nested KVM hangs on these machines (MSR 0x10a); TCG is slow but works.
        "-accel".into(),
        "tcg".into(),
        "-m".into(),
        MEMORY_MIB.to_string(),
        "-smp".into(),
        "1".into(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-serial".into(),
        format!("file:{}", p(&paths.serial)),
        "-daemonize".into(),
        "-pidfile".into(),
        p(&paths.pidfile),
        "-kernel".into(),
        p(&img.kernel),
        "-initrd".into(),
        p(&img.initrd),
        "-append".into(),
        kernel_cmdline(),
        "-drive".into(),
        format!("file={},format=raw,if=virtio,cache=unsafe", p(&paths.disk)),
        "-netdev".into(),
        format!("tap,id=n0,ifname={},script=no,downscript=no", vm.tap),
        "-device".into(),
        format!("virtio-net-pci,netdev=n0,mac={},addr=0x3", vm.mac),
        "-rtc".into(),
        "base=utc".into(),
    ]
}

/// `/etc/network/interfaces.d/lab` for a VM (ifupdown: `networking.service` is wanted by
/// `network-online.target`, which Debian's kdump capture boot also reaches).
pub fn interfaces_file(ip: Ipv4Addr) -> String {
    format!(
        "# Written by provision lab.\nauto {GUEST_IFACE}\niface {GUEST_IFACE} inet static\n    address {ip}/24\n"
    )
}

pub fn hosts_file(vm: &VmNet, plan: &NetPlan) -> String {
    let mut s = format!("127.0.0.1\tlocalhost\n127.0.1.1\t{}\n", vm.name);
    s.push_str(&format!("{}\tlab-controller\n", plan.controller_ip()));
    for other in &plan.vms {
        s.push_str(&format!("{}\t{}\n", other.ip, other.name));
    }
    s
}

fn write(path: &Path, content: &[u8], mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    }
    std::fs::write(path, content).map_err(|e| LabError::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| LabError::io(path, e))
}

/// Builds the VM's disk: its identity files in an upper directory, overlaid read-only on the base
/// rootfs in a private mount namespace, then `mkfs.ext4 -d` of the merged tree.
pub async fn build_disk(
    vm: &VmNet,
    plan: &NetPlan,
    paths: &VmPaths,
    img: &BaseImage,
    host_keys: &[PathBuf],
    login_pubkey: &str,
) -> Result<(), LabError> {
    let up = &paths.upper;
    if up.exists() {
        std::fs::remove_dir_all(up).map_err(|e| LabError::io(up, e))?;
    }
    for (dir, mode) in [
        ("", 0o755),
        ("etc", 0o755),
        ("etc/ssh", 0o755),
        ("etc/network", 0o755),
        ("etc/network/interfaces.d", 0o755),
        ("root", 0o700),
        ("root/.ssh", 0o700),
    ] {
        super::create_dir_mode(&up.join(dir), mode)?;
    }
    write(
        &up.join("etc/hostname"),
        format!("{}\n", vm.name).as_bytes(),
        0o644,
    )?;
    write(
        &up.join("etc/hosts"),
        hosts_file(vm, plan).as_bytes(),
        0o644,
    )?;
    write(
        &up.join("etc/network/interfaces.d/lab"),
        interfaces_file(vm.ip).as_bytes(),
        0o644,
    )?;
    for key in host_keys {
        let name = key.file_name().expect("host key file name");
        let private = std::fs::read(key).map_err(|e| LabError::io(key, e))?;
        write(&up.join("etc/ssh").join(name), &private, 0o600)?;
        let public_path = super::keys::pub_path(key);
        let public = std::fs::read(&public_path).map_err(|e| LabError::io(&public_path, e))?;
        let pub_name = super::keys::pub_path(Path::new(name));
        write(&up.join("etc/ssh").join(pub_name), &public, 0o644)?;
    }
    write(
        &up.join("root/.ssh/authorized_keys"),
        login_pubkey.as_bytes(),
        0o600,
    )?;

    let _ = std::fs::remove_file(&paths.disk);
    Tool::new(format!("allocate disk for {}", vm.name), "truncate")
        .args(["-s", DISK_SIZE])
        .arg(&paths.disk)
        .run()
        .await?;
    let merged = paths.dir.join("merged");
    super::create_dir_mode(&merged, 0o755)?;
    // Positional parameters keep the paths out of the script text (no quoting issues).
    let script = "set -e; mount -t overlay lab -o \"lowerdir=$1:$2\" \"$3\"; \
                  mkfs.ext4 -q -F -L labroot -d \"$3\" \"$4\"; umount \"$3\"";
    Tool::new(format!("make disk for {}", vm.name), "unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(up)
        .arg(&img.rootfs)
        .arg(&merged)
        .arg(&paths.disk)
        .run()
        .await?;
    let _ = std::fs::remove_dir(&merged);
    Ok(())
}

/// The pid of a running qemu for this VM, if any (pidfile present, process alive and really
/// ours: its command line names our pidfile).
pub fn running_pid(paths: &VmPaths) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(&paths.pidfile)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let want = paths.pidfile.to_string_lossy();
    cmdline
        .split(|b| *b == 0)
        .any(|a| a == want.as_bytes())
        .then_some(pid)
}

pub async fn start(
    vm: &VmNet,
    plan: &NetPlan,
    paths: &VmPaths,
    img: &BaseImage,
) -> Result<i32, LabError> {
    let _ = std::fs::remove_file(&paths.pidfile);
    Tool::in_netns(
        format!("start qemu for {}", vm.name),
        &plan.netns,
        "qemu-system-x86_64",
    )
    .args(qemu_args(vm, paths, img))
    .run()
    .await?;
    running_pid(paths).ok_or_else(|| died(&vm.name, paths))
}

/// The error for a VM whose qemu is gone, with the end of its console log.
pub fn died(name: &str, paths: &VmPaths) -> LabError {
    let log = std::fs::read(&paths.serial).unwrap_or_default();
    let text = String::from_utf8_lossy(&log);
    let lines: Vec<&str> = text.lines().rev().take(8).collect();
    LabError::VmDied {
        vm: name.to_string(),
        serial: paths.serial.clone(),
        tail: lines.into_iter().rev().collect::<Vec<_>>().join("\n"),
    }
}

/// Stops the VM's qemu: SIGTERM, then SIGKILL after 10 s. Idempotent.
pub async fn stop(paths: &VmPaths) -> Result<(), LabError> {
    let Some(pid) = running_pid(paths) else {
        let _ = std::fs::remove_file(&paths.pidfile);
        return Ok(());
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    for _ in 0..100 {
        if running_pid(paths).is_none() {
            let _ = std::fs::remove_file(&paths.pidfile);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    for _ in 0..50 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(&paths.pidfile);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(LabError::Stuck {
        what: format!("qemu pid {pid} ({})", paths.dir.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_args_boot_the_rootfs_with_crashkernel_and_allow_reboot() {
        let plan = NetPlan::new("ndlab", [198, 19, 0], 1).unwrap();
        let vm = &plan.vms[1];
        let paths = VmPaths::new(Path::new("/s"), &vm.name);
        let img = BaseImage::at(Path::new("/c"));
        let args = qemu_args(vm, &paths, &img);
        let joined = args.join(" ");
        assert!(!args.iter().any(|a| a == "-no-reboot"));
        assert!(joined.contains("-accel tcg"));
        assert!(joined.contains("-m 1024 -smp 1"));
        assert!(joined.contains("crashkernel=256M"));
        assert!(joined.contains("root=/dev/vda"));
        assert!(joined.contains("console=ttyS0"));
        assert!(joined.contains("ifname=tap11,"));
        assert!(joined.contains("mac=52:54:c6:13:00:0b"));
        assert!(joined.contains("file:/s/vms/lab-client1/serial.log"));
        assert!(joined.contains("-pidfile /s/vms/lab-client1/qemu.pid"));
        // -append takes the whole command line as one argument.
        let i = args.iter().position(|a| a == "-append").unwrap();
        assert_eq!(args[i + 1], kernel_cmdline());
    }

    #[test]
    fn identity_files() {
        let plan = NetPlan::new("ndlab", [198, 19, 0], 2).unwrap();
        let hosts = hosts_file(&plan.vms[1], &plan);
        assert!(hosts.contains("127.0.1.1\tlab-client1\n"));
        assert!(hosts.contains("198.19.0.10\tlab-server\n"));
        assert!(hosts.contains("198.19.0.12\tlab-client2\n"));
        assert!(hosts.contains("198.19.0.1\tlab-controller\n"));
        let ifs = interfaces_file(Ipv4Addr::new(198, 19, 0, 11));
        assert!(ifs.contains("auto ens3\n"));
        assert!(ifs.contains("address 198.19.0.11/24"));
    }

    #[test]
    fn no_pid_without_pidfile() {
        let paths = VmPaths::new(Path::new("/nonexistent-lab-state"), "lab-server");
        assert_eq!(running_pid(&paths), None);
    }
}
