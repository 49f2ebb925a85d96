//! Tier 3: the hand-verified Debian kdump-over-ssh + netconsole recipe (tests/lab_kdump_recipe.md §2), replayed
//! on fresh lab VMs with a real `echo c > /proc/sysrq-trigger`. It guards the lab itself (reboot
//! after the dump, crash kernel memory, capture-boot networking, distinct client addresses) and
//! is the oracle the product's `apply` + `test-crash` must match. This is NOT the product's code
//! path: the configuration here is the plain shell from the notes.
//!
//! Own namespace (`ndlabk`), subnet 198.19.2.0/24 and temporary state; shares the image cache.
//! Takes about 6-8 minutes under TCG.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use netdump_provision::lab::{self, LabConfig, cmd};

/// Server side: the netdump user (home /var/crash, 0700), the client key restricted to the
/// client's address in authorized_keys2, and a UDP listener standing in for the receiver.
fn server_script(client_key: &str, client_ip: Ipv4Addr) -> String {
    format!(
        r#"set -eu
id netdump >/dev/null 2>&1 || useradd --system --home-dir /var/crash --no-create-home --shell /bin/sh netdump
install -d -o netdump -g netdump -m 0700 /var/crash
install -d -o netdump -g netdump -m 0700 /var/crash/.ssh
printf 'restrict,from="%s" %s\n' '{client_ip}' '{client_key}' > /var/crash/.ssh/authorized_keys2
chown netdump:netdump /var/crash/.ssh/authorized_keys2
chmod 0600 /var/crash/.ssh/authorized_keys2
systemd-run --unit=nclisten --collect socat -u UDP-RECV:6666 OPEN:/root/netconsole.log,creat,append
"#
    )
}

/// Client side: key, pinned server host keys, /etc/default/kdump-tools, sysrq, netconsole unit,
/// `kdump-config load`. Prints the public key last.
fn client_script(server: Ipv4Addr, server_mac: &str, server_host_keys: &str) -> String {
    let pinned: String = server_host_keys
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(format!("{server} {} {}\n", w.next()?, w.next()?))
        })
        .collect();
    format!(
        r#"set -eu
KEY=/root/.ssh/netdump_kdump_id_ed25519
install -d -m 0700 /root/.ssh
[ -f $KEY ] || ssh-keygen -q -t ed25519 -N '' -C "kdump@$(hostname)" -f $KEY
cat > /etc/ssh/ssh_known_hosts <<'EOT'
{pinned}EOT
chmod 0644 /etc/ssh/ssh_known_hosts
cat > /etc/default/kdump-tools <<EOT
USE_KDUMP=1
KDUMP_KERNEL=/var/lib/kdump/vmlinuz
KDUMP_INITRD=/var/lib/kdump/initrd.img
KDUMP_COREDIR='/var/crash'
SSH='netdump@{server}'
SSH_KEY='$KEY'
HOSTTAG=ip
MAKEDUMP_ARGS='-F -c -d 31'
KDUMP_DUMP_DMESG=1
EOT
printf 'kernel.sysrq = 1\n' > /etc/sysctl.d/90-netdump.conf
sysctl -q -p /etc/sysctl.d/90-netdump.conf
DEV=$(ip -o route get {server} | sed -n 's/.* dev \([^ ]*\).*/\1/p')
SRC=$(ip -o route get {server} | sed -n 's/.* src \([^ ]*\).*/\1/p')
printf 'options netconsole netconsole=+6665@%s/%s,6666@{server}/{server_mac}\n' "$SRC" "$DEV" > /etc/modprobe.d/netconsole.conf
cat > /etc/systemd/system/netconsole.service <<'EOT'
[Unit]
Description=netconsole to the netdump server
Wants=network-online.target
After=network-online.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStartPre=/sbin/modprobe configfs
ExecStart=/sbin/modprobe netconsole
ExecStop=/sbin/modprobe -r netconsole
[Install]
WantedBy=multi-user.target
EOT
systemctl daemon-reload
systemctl enable --now netconsole.service >/dev/null 2>&1
kdump-config unload >/dev/null 2>&1 || true
kdump-config load >/dev/null
kdump-config status >&2
cat $KEY.pub
"#
    )
}

async fn ssh_out(cfg: &LabConfig, ip: Ipv4Addr, script: &str) -> String {
    let (ok, out) = cfg.ssh(ip, script).await.unwrap();
    assert!(ok, "ssh {ip} failed running:\n{script}");
    out.trim().to_string()
}

/// Polls `script` on `ip` until it exits 0 (returns its output) or `limit` passes.
async fn wait_until(cfg: &LabConfig, ip: Ipv4Addr, script: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Ok((true, out)) = cfg.ssh(ip, script).await {
            return out.trim().to_string();
        }
        assert!(
            start.elapsed() < limit,
            "gave up after {} s waiting on {ip} for: {script}",
            start.elapsed().as_secs()
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

async fn exercise(cfg: &LabConfig) {
    let plan = lab::up(cfg, 1).await.expect("lab up");
    let server = plan.server().ip;
    let client = plan.clients().next().unwrap().ip;
    let long = Duration::from_secs(1200);

    let server_mac = ssh_out(cfg, server, "cat /sys/class/net/ens3/address").await;
    let host_keys_dir = cfg.state_dir.join("hostkeys/lab-server");
    let mut host_keys = String::new();
    for kind in lab::keys::HOST_KEY_TYPES {
        host_keys +=
            &std::fs::read_to_string(host_keys_dir.join(format!("ssh_host_{kind}_key.pub")))
                .unwrap();
    }
    // The client's first boot builds the kdump initrd; wait until kdump-tools has settled.
    wait_until(
        cfg,
        client,
        "systemctl is-active kdump-tools && kdump-config status | grep -Eq 'current state *: *ready to kdump'",
        long,
    )
    .await;
    let client_key = ssh_out(cfg, client, &client_script(server, &server_mac, &host_keys)).await;
    let client_key = client_key.lines().last().unwrap().to_string();
    assert!(client_key.starts_with("ssh-ed25519 "), "{client_key}");
    ssh_out(cfg, server, &server_script(&client_key, client)).await;

    // Armed, and the dump path works as the capture boot will use it.
    assert_eq!(
        ssh_out(cfg, client, "cat /sys/kernel/kexec_crash_loaded").await,
        "1"
    );
    ssh_out(
        cfg,
        client,
        &format!("ssh -i /root/.ssh/netdump_kdump_id_ed25519 netdump@{server} true </dev/null"),
    )
    .await;

    let boot_id = ssh_out(cfg, client, "cat /proc/sys/kernel/random/boot_id").await;
    ssh_out(
        cfg,
        client,
        "nohup sh -c 'sleep 2; echo c > /proc/sysrq-trigger' >/dev/null 2>&1 &",
    )
    .await;

    let dump_dir = wait_until(
        cfg,
        server,
        &format!("cd /var/crash && ls -d {client}-*/dump.* | head -1 | xargs dirname"),
        long,
    )
    .await;
    let files = ssh_out(cfg, server, &format!("cd /var/crash/{dump_dir} && ls")).await;
    let stamp = dump_dir.rsplit('-').next().unwrap().to_string();
    assert_eq!(stamp.len(), 12, "stamp in {dump_dir}");
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        [format!("dmesg.{stamp}"), format!("dump.{stamp}")]
    );
    let checks = ssh_out(
        cfg,
        server,
        &format!(
            "cd /var/crash/{dump_dir} && head -c 12 dump.{stamp}; echo; \
             grep -c 'sysrq: Trigger a crash' dmesg.{stamp}; \
             makedumpfile -R /tmp/vmcore < dump.{stamp} >/dev/null 2>&1 && file -b /tmp/vmcore; \
             rm -f /tmp/vmcore; \
             grep -a -c 'Kernel panic - not syncing: sysrq triggered crash' /root/netconsole.log"
        ),
    )
    .await;
    let lines: Vec<&str> = checks.lines().collect();
    assert_eq!(lines[0], "makedumpfile", "flattened signature: {checks}");
    assert_ne!(lines[1], "0", "dmesg lacks the sysrq line: {checks}");
    assert!(
        lines[2].starts_with("Kdump compressed dump"),
        "rebuilt dump: {checks}"
    );
    assert_ne!(lines[3], "0", "netconsole lacks the panic: {checks}");

    // The client reboots after the dump and is armed again.
    let new_id = wait_until(
        cfg,
        client,
        &format!(
            "id=$(cat /proc/sys/kernel/random/boot_id); [ \"$id\" != {boot_id} ] && \
             kdump-config status | grep -Eq 'current state *: *ready to kdump' && echo $id"
        ),
        long,
    )
    .await;
    assert_ne!(new_id, boot_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn debian_kdump_over_ssh_with_netconsole_on_real_vms() {
    for (tool, _) in lab::TOOLS {
        if !cmd::have(tool) {
            netdump_test_support::skip(
                "lab_kdump_recipe",
                &format!("needs {tool}, which is not installed"),
            );
            return;
        }
    }
    let state = tempfile::tempdir().unwrap();
    let cfg = LabConfig {
        timeout: Duration::from_secs(1800),
        ..crate::support::lab::KDUMP_RECIPE.config(state.path())
    };
    let outcome = tokio::spawn({
        let cfg = cfg.clone();
        async move { exercise(&cfg).await }
    })
    .await;
    lab::down(&cfg).await.expect("lab down");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
