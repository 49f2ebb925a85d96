//! What a namespace host cannot have for `provision verify`, simulated (tests/verify_fleet.rs
//! and benches/verify.rs):
//! - the kernel is the machine's, which has no kexec: a client gets a /sys/kernel of plain files
//!   (`kexec_crash_loaded`, `kexec_crash_size`) in its own mount namespace, and a `kdump-config`
//!   that answers `status` from that file as kdump-tools does; the capture initrd is an empty
//!   file where kdump-tools keeps it.
//! - netconsole cannot be loaded per namespace: a client runs a forwarder that reads the
//!   (machine's) /dev/kmsg and sends this client's verify markers by UDP from the client's own
//!   address to the receiver. /dev/kmsg records have extended netconsole's format, so the real
//!   receiver sees what netconsole would send. verify writes the marker into /dev/kmsg for real.
//! - no systemd: the receiver apply installed is started by hand, as root dropping to netdump.

use std::process::{Child, Stdio};

use super::nshost::NsHost;

/// The server's sshd reads the drop-in apply wrote, as a distribution's sshd_config does
/// (StrictModes stays off: the fleet's own root key file lives under /tmp). Restarts sshd.
pub fn include_sshd_dropin(srv: &NsHost) {
    let cfg = srv.dir.join("sshd_config");
    let text = std::fs::read_to_string(&cfg).unwrap()
        + "Include /etc/ssh/sshd_config.d/netdump-provision.conf\n";
    std::fs::write(&cfg, text).unwrap();
    srv.stop();
    srv.start_sshd();
}

/// Starts the receiver apply installed, inside the server; returns once UDP 6666 is bound.
pub fn start_receiver(srv: &NsHost) -> Child {
    let mut child = srv
        .command("/usr/local/sbin/netdump-provision")
        .args([
            "receiver",
            "--listen",
            "[::]:6666",
            "--dump-dir",
            "/var/crash",
            "--user",
            "netdump",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the receiver");
    for _ in 0..400 {
        if srv.exec_ok("cat /proc/net/udp6").contains(":1A0A ") {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the receiver did not bind UDP 6666 on {}", srv.name);
}

/// SIMULATION: what a kernel with kdump loaded shows, in this client's mount namespace only.
pub fn simulate_kdump(h: &NsHost) {
    h.exec_ok(
        "mount -t tmpfs -o size=1m,mode=0755 tmpfs /sys/kernel && \
         echo 1 > /sys/kernel/kexec_crash_loaded && echo 268435456 > /sys/kernel/kexec_crash_size && \
         mkdir -p /var/lib/kdump && : > /var/lib/kdump/initrd.img-$(uname -r) && \
         printf '%s\\n' '#!/bin/sh' \
           '# SIMULATION for provision verify tests: kdump-tools answers status from the kernel.' \
           '[ \"$1\" = status ] || exit 1' \
           'if [ \"$(cat /sys/kernel/kexec_crash_loaded)\" = 1 ]; then echo \"current state   : ready to kdump\"; else echo \"current state   : Not ready to kdump\"; fi' \
           > /usr/sbin/kdump-config && chmod 0755 /usr/sbin/kdump-config",
    );
}

/// SIMULATION: the netdump client's init script (RHEL 3/4 `service netdump`), which a namespace
/// host of a current distribution cannot run: `status` says stopped once
/// `/run/netdump-simulated-down` exists.
pub fn simulate_netdump_service(h: &NsHost) {
    h.exec_ok(
        "mkdir -p /etc/init.d && printf '%s\\n' '#!/bin/sh' \
           '# SIMULATION for provision verify tests: the netdump client service.' \
           '[ -e /run/netdump-simulated-down ] && exit 3' 'exit 0' \
           > /etc/init.d/netdump && chmod 0755 /etc/init.d/netdump",
    );
}

/// SIMULATION: this client's verify markers, from the kernel log to the receiver at `server`,
/// from the client's own address, as extended netconsole would send them.
pub fn start_forwarder(h: &NsHost, server: &str) -> Child {
    let script = format!(
        "exec 3>/dev/udp/{server}/6666; exec grep --line-buffered -E 'netdump-provision-verify:[a-z]+:{}$' /dev/kmsg >&3",
        h.name
    );
    h.command("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the netconsole forwarder")
}

/// Kills and reaps its processes on drop (also while unwinding).
pub struct Kill(pub Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
