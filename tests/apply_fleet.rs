//! `provision apply` for real against namespace hosts (tests/support/nshost.rs): one server and
//! three netdump clients, each a real sshd in its own network + mount namespace.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};

use netdump_provision::resources::user::verify;
use netdump_provision::secret::Secret;
use support::nshost::{Fleet, require_root_tools, show};

const PASSWORD: &str = "correct horse battery staple";

fn inventory(fleet: &Fleet, extra_client_vars: &str) -> String {
    let key = fleet.client_key_path();
    let mut s = format!(
        "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n    netdump_manage_packages: false\n    netdump_manage_services: false\n  children:\n    netdump_servers:\n      hosts:\n",
        key.display()
    );
    s.push_str(&format!(
        "        srv:\n          ansible_host: {}\n",
        fleet.host("srv").address
    ));
    s.push_str("    netdump_clients:\n      vars:\n        netdump_client_flavor: netdump\n        netdump_netlogaddr: NONE\n");
    s.push_str(extra_client_vars);
    s.push_str("      hosts:\n");
    for h in fleet.hosts().iter().filter(|h| h.name != "srv") {
        s.push_str(&format!(
            "        {}:\n          ansible_host: {}\n",
            h.name, h.address
        ));
    }
    s
}

fn provision(fleet: &Fleet, inv: &Path, args: &[&str]) -> Output {
    fleet
        .provision(Path::new(env!("CARGO_BIN_EXE_provision")), "apply", 5)
        .arg(inv)
        .args(args)
        .env("NETDUMP_PASSWORD", PASSWORD)
        .output()
        .expect("run provision")
}

fn recap(o: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&o.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("no JSON recap ({e}):\n{}", show(o)))
}

fn total(recap: &serde_json::Value, field: &str) -> u64 {
    recap["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[field].as_u64().unwrap())
        .sum()
}

/// One host's line of the recap.
fn host_recap(recap: &serde_json::Value, host: &str) -> serde_json::Value {
    recap["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .cloned()
        .unwrap_or_else(|| panic!("{host} not in recap: {recap}"))
}

/// Everything apply manages on a host, as text: every file, directory and link under the
/// managed trees with owner, group, mode, mtime (ns), size and content hash, the netdump account
/// and its password hash, and the live sysrq value.
fn state_snapshot(h: &support::nshost::NsHost) -> String {
    h.exec_ok(
        "for d in /etc/sysconfig /etc/ssh /etc/sysctl.d /etc/systemd/system /etc/modprobe.d \
                 /etc/default /var/crash /usr/local/sbin; do \
           [ -e \"$d\" ] && find \"$d\" -xdev \\( -type f -o -type d -o -type l \\) \
             -printf '%p %U:%G %m %T@ %s %l\\n'; \
         done | sort; \
         find /etc/sysconfig /etc/ssh /etc/sysctl.d /var/crash /usr/local/sbin -xdev -type f \
           -exec sha256sum {} + 2>/dev/null | sort; \
         getent passwd netdump; grep '^netdump:' /etc/shadow; cat /proc/sys/kernel/sysrq",
    )
}

fn setup() -> Option<(Fleet, tempfile::TempDir, std::path::PathBuf)> {
    if !require_root_tools() {
        return None;
    }
    let fleet = Fleet::start(&["srv", "c1", "c2", "c3"]);
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(&inv, inventory(&fleet, "")).unwrap();
    Some((fleet, dir, inv))
}

#[test]
fn apply_configures_server_and_clients_then_is_idempotent() {
    let Some((fleet, _dir, inv)) = setup() else {
        return;
    };
    let srv = fleet.host("srv");

    let first = provision(&fleet, &inv, &["--output", "json"]);
    assert_eq!(first.status.code(), Some(0), "{}", show(&first));
    assert!(total(&recap(&first), "changed") > 10, "{}", show(&first));

    // The netdump user with the password, home = dump dir.
    let passwd = String::from_utf8(srv.exec_ok("getent passwd netdump").into_bytes()).unwrap();
    let f: Vec<&str> = passwd.trim().split(':').collect();
    // The login shell is the dump sink, which runs nothing else (docs/server-layout.md).
    assert_eq!(
        (f[5], f[6]),
        ("/var/crash", "/usr/local/sbin/netdump-provision"),
        "{passwd}"
    );
    let shadow = srv.exec_ok("awk -F: '$1==\"netdump\" {print $2}' /etc/shadow");
    assert!(
        verify(&Secret::new(PASSWORD), shadow.trim()),
        "shadow hash does not verify: {shadow}"
    );
    let uid: u32 = f[2].parse().unwrap();

    // Directory layout, owner and modes.
    for (path, owner, mode) in [
        ("/var/crash", uid, 0o700),
        ("/var/crash/.ssh", 0, 0o750),
        ("/var/crash/magic", uid, 0o700),
    ] {
        let (u, _g, m) = srv.stat(path).unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!((u, m & 0o7777), (owner, mode), "{path}");
    }
    // Only root (apply) edits the key list.
    let (u, _, m) = srv.stat("/var/crash/.ssh/authorized_keys2").unwrap();
    assert_eq!((u, m & 0o7777), (0, 0o640));

    // authorized_keys2: one restricted, address-bound line per client, holding its key.
    let ak = String::from_utf8(srv.read_file("/var/crash/.ssh/authorized_keys2").unwrap()).unwrap();
    assert_eq!(ak.lines().count(), 3, "{ak}");
    for c in ["c1", "c2", "c3"] {
        let h = fleet.host(c);
        let pubkey =
            String::from_utf8(h.read_file("/etc/sysconfig/netdump_id_dsa.pub").unwrap()).unwrap();
        let material: Vec<&str> = pubkey.split_whitespace().take(2).collect();
        // These hosts run a current OpenSSH: netdump_key_type auto makes ed25519.
        assert_eq!(material[0], "ssh-ed25519", "key type on {c}: {pubkey}");
        let want = format!(
            "restrict,from=\"{a}\",command=\"/usr/local/sbin/netdump-provision dump-sink --dump-dir /var/crash --min-free 268435456 --keep-dumps 5 --max-total 0 --client {c} --ip {a}\" {} {} netdump-provision:{c}",
            material[0],
            material[1],
            a = h.address
        );
        assert!(
            ak.lines().any(|l| l == want),
            "missing line for {c}:\n{want}\nin\n{ak}"
        );
        let (_, _, m) = h.stat("/etc/sysconfig/netdump_id_dsa").unwrap();
        assert_eq!(m & 0o777, 0o600, "private key mode on {c}");

        // /etc/sysconfig/netdump points at the server, with device and MAC from facts.
        let conf = String::from_utf8(h.read_file("/etc/sysconfig/netdump").unwrap()).unwrap();
        assert!(
            conf.contains(&format!("\nNETDUMPADDR={}\n", srv.address)),
            "{conf}"
        );
        assert!(conf.contains("\nNETLOGADDR=NONE\n"), "{conf}");
        assert!(conf.contains("\nDEV="), "{conf}");
        assert!(
            conf.lines().any(
                |l| l.starts_with("NETDUMPMACADDR=") && l.len() == "NETDUMPMACADDR=".len() + 17
            ),
            "{conf}"
        );

        // Server host keys pinned, sysrq live and persistent.
        let kh = String::from_utf8(h.read_file("/etc/ssh/ssh_known_hosts").unwrap()).unwrap();
        let server_key =
            String::from_utf8(srv.read_file("/etc/ssh/ssh_host_ed25519_key.pub").unwrap()).unwrap();
        let server_key: Vec<&str> = server_key.split_whitespace().take(2).collect();
        assert!(
            kh.contains(&format!(
                "{} {} {}",
                srv.address, server_key[0], server_key[1]
            )),
            "{kh}"
        );
        assert_eq!(h.exec_ok("cat /proc/sys/kernel/sysrq").trim(), "1");
        let sysctl = String::from_utf8(
            h.read_file("/etc/sysctl.d/90-netdump-provision.conf")
                .unwrap(),
        )
        .unwrap();
        assert!(sysctl.contains("kernel.sysrq = 1"));
    }
    // The receiver binary is installed, executable, and the same program.
    let (_, _, m) = srv.stat("/usr/local/sbin/netdump-provision").unwrap();
    assert_eq!(m & 0o777, 0o755);
    let remote = srv.read_file("/usr/local/sbin/netdump-provision").unwrap();
    assert_eq!(
        remote,
        std::fs::read(env!("CARGO_BIN_EXE_provision")).unwrap()
    );

    // Second run: nothing to do, by its own recap and by the hosts' state (contents, owners,
    // modes, mtimes, users, live sysctl), so a step that rewrites a file with the same bytes or
    // "fixes" a mode back and forth cannot hide behind a recap of 0.
    let before: Vec<String> = fleet.hosts().iter().map(state_snapshot).collect();
    let second = provision(&fleet, &inv, &["--output", "json"]);
    assert_eq!(second.status.code(), Some(0), "{}", show(&second));
    let r = recap(&second);
    assert_eq!(
        total(&r, "changed"),
        0,
        "second apply changed something:\n{}",
        show(&second)
    );
    assert!(total(&r, "ok") > 10);
    for (h, was) in fleet.hosts().iter().zip(&before) {
        let now = state_snapshot(h);
        let gone: Vec<&str> = was
            .lines()
            .filter(|l| !now.lines().any(|n| n == *l))
            .collect();
        let new: Vec<&str> = now
            .lines()
            .filter(|l| !was.lines().any(|w| w == *l))
            .collect();
        assert!(
            gone.is_empty() && new.is_empty(),
            "second apply touched {} although it reported no change:\nbefore: {gone:#?}\nafter: {new:#?}",
            h.name
        );
    }

    // A client key added by hand is kept; a stale managed line is removed.
    srv.exec_ok("echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHandAddedKeyHandAddedKeyHandAddedKey0 admin@desk' >> /var/crash/.ssh/authorized_keys2");
    srv.exec_ok("echo 'restrict ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStaleKeyStaleKeyStaleKeyStaleKeyStale netdump-provision:gone' >> /var/crash/.ssh/authorized_keys2");
    let third = provision(&fleet, &inv, &["--output", "json", "--diff"]);
    assert_eq!(third.status.code(), Some(0), "{}", show(&third));
    assert_eq!(total(&recap(&third), "changed"), 1, "{}", show(&third));
    let ak = String::from_utf8(srv.read_file("/var/crash/.ssh/authorized_keys2").unwrap()).unwrap();
    assert!(
        ak.contains("admin@desk") && !ak.contains("netdump-provision:gone"),
        "{ak}"
    );
    let out = String::from_utf8_lossy(&third.stdout);
    assert!(
        out.contains("-restrict ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStaleKey"),
        "diff shown: {out}"
    );
    assert!(!out.contains(PASSWORD));
}

/// The issue asks for a receiver "built static so it runs on older systems": the musl build is
/// installed on the server byte for byte, has no program interpreter, and runs there as the
/// unprivileged netdump user (the user lookup is musl's own /etc/passwd reader, no NSS).
#[test]
fn static_receiver_binary_is_installed_and_runs_on_the_server() {
    let Some(static_bin) = support::static_provision() else {
        netdump_test_support::skip(
            "static_receiver_binary_is_installed_and_runs_on_the_server",
            &format!("no static build; run: {}", support::STATIC_BUILD_HINT),
        );
        return;
    };
    let Some((fleet, _dir, inv)) = setup() else {
        return;
    };
    let srv = fleet.host("srv");
    let bin = static_bin.display().to_string();
    let out = provision(
        &fleet,
        &inv,
        &["--output", "json", "--receiver-binary", &bin],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let installed = srv
        .read_file("/usr/local/sbin/netdump-provision")
        .expect("receiver installed");
    assert!(
        installed == std::fs::read(&static_bin).unwrap(),
        "the server's receiver is not the static build"
    );
    let info = netdump_provision::receiver_binary::inspect(&installed).unwrap();
    assert!(info.is_static && info.glibc_needed.is_none(), "{info:?}");

    let run = srv.exec(
        "timeout 3 /usr/local/sbin/netdump-provision receiver --listen 127.0.0.1:6666 --dump-dir /var/crash --user netdump; echo rc=$?",
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    // 124: still running when timeout stopped it.
    assert!(stdout.contains("rc=124"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("running as user netdump") && stderr.contains("receiver listening"),
        "{stderr}"
    );

    // A file that is not an executable is refused before anything is touched.
    let not_elf = inv.display().to_string();
    let bad = provision(
        &fleet,
        &inv,
        &["--output", "json", "--receiver-binary", &not_elf],
    );
    assert_eq!(bad.status.code(), Some(1), "{}", show(&bad));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(&not_elf) && err.contains("not a 64-bit ELF"),
        "{err}"
    );
}

/// `ansible_become`: a plain user with passwordless sudo gets the same result as root, the
/// password travels through sudo on stdin, and a user sudo refuses stops with sudo's reason.
#[test]
fn apply_as_a_sudo_user_with_become() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["srv", "c1", "c2"]);
    for h in ["srv", "c1"] {
        fleet.add_sudo_user(h, "deploy");
    }
    fleet.add_user("c2", "deploy"); // no sudo rights on c2
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    let text = inventory(&fleet, "").replace(
        "    ansible_user: root\n",
        "    ansible_user: deploy\n    ansible_become: true\n",
    );
    assert!(text.contains("ansible_become"), "{text}");
    std::fs::write(&inv, text).unwrap();

    let out = provision(&fleet, &inv, &["--output", "json"]);
    let r = recap(&out);
    assert_eq!(out.status.code(), Some(2), "c2 must fail: {}", show(&out));
    let host = |name: &str| host_recap(&r, name);
    assert_eq!(host("srv")["failed"], 0, "{}", show(&out));
    assert_eq!(host("c1")["failed"], 0, "{}", show(&out));
    assert_eq!(host("c2")["failed"], 1, "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("sudo") && stdout.contains("c2"),
        "c2's failure names sudo: {stdout}"
    );

    // What root would have produced: root-owned files, the netdump user with its password.
    let srv = fleet.host("srv");
    let c1 = fleet.host("c1");
    let (u, _, m) = c1.stat("/etc/sysconfig/netdump").unwrap();
    assert_eq!((u, m & 0o7777), (0, 0o644));
    let shadow = srv.exec_ok("awk -F: '$1==\"netdump\" {print $2}' /etc/shadow");
    assert!(
        verify(&Secret::new(PASSWORD), shadow.trim()),
        "password hash"
    );
    let ak = String::from_utf8(srv.read_file("/var/crash/.ssh/authorized_keys2").unwrap()).unwrap();
    assert!(ak.contains("netdump-provision:c1"), "{ak}");

    // Idempotent through sudo too.
    let again = provision(&fleet, &inv, &["--output", "json", "--limit", "srv:c1"]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    assert_eq!(total(&recap(&again), "changed"), 0, "{}", show(&again));
}

#[test]
fn check_mode_reports_changes_and_changes_nothing() {
    let Some((fleet, _dir, inv)) = setup() else {
        return;
    };
    let out = provision(&fleet, &inv, &["--check", "--diff", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = recap(&out);
    assert_eq!(r["check"], true);
    assert!(total(&r, "changed") > 10, "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("+NETDUMPADDR="),
        "check mode shows the diff of the sysconfig file"
    );
    assert!(
        !stdout.contains(PASSWORD) && !stdout.contains("$6$"),
        "secrets in check output"
    );
    // Nothing changed on any host.
    let srv = fleet.host("srv");
    assert!(
        !srv.exec("getent passwd netdump").status.success(),
        "check mode created the user"
    );
    assert!(srv.read_file("/var/crash/.ssh/authorized_keys2").is_none());
    for c in ["c1", "c2", "c3"] {
        assert!(fleet.host(c).read_file("/etc/sysconfig/netdump").is_none());
        assert!(
            fleet
                .host(c)
                .read_file("/etc/sysconfig/netdump_id_dsa")
                .is_none()
        );
        assert_eq!(
            fleet.host(c).exec_ok("cat /proc/sys/kernel/sysrq").trim(),
            "0"
        );
    }
}

#[test]
fn unreachable_client_does_not_stop_the_others() {
    let Some((fleet, _dir, inv)) = setup() else {
        return;
    };
    fleet.host("c2").stop();
    let out = provision(&fleet, &inv, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let r = recap(&out);
    let by_host = |h: &str| host_recap(&r, h);
    assert_eq!(by_host("c2")["unreachable"], 1);
    assert!(by_host("c1")["changed"].as_u64().unwrap() > 0);
    assert!(by_host("c3")["changed"].as_u64().unwrap() > 0);
    assert!(
        fleet
            .host("c1")
            .read_file("/etc/sysconfig/netdump")
            .is_some()
    );
    // The server got the keys of the reachable clients only.
    let ak = String::from_utf8(
        fleet
            .host("srv")
            .read_file("/var/crash/.ssh/authorized_keys2")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ak.lines().count(), 2, "{ak}");
}

#[test]
fn changed_server_host_key_is_refused_and_its_clients_skipped() {
    let Some((fleet, _dir, inv)) = setup() else {
        return;
    };
    fleet.host("srv").regenerate_host_key();
    let out = provision(&fleet, &inv, &["--limit", "srv:c1"]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains("CHANGED"), "{text}");
    assert!(text.contains("skipped: [c1]"), "{text}");
    assert!(
        fleet
            .host("c1")
            .read_file("/etc/sysconfig/netdump")
            .is_none()
    );
}

#[test]
fn broken_inventory_exits_1_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("bad.yaml");
    std::fs::write(&inv, "all:\n  children:\n    netdump_servers:\n      hosts:\n        srv:\n          netdump_prot: 6666\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_provision"))
        .arg("apply")
        .arg(&inv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:6"), "{err}");
    assert!(
        err.contains("netdump_port"),
        "did-you-mean suggestion: {err}"
    );

    std::fs::write(&inv, "all:\n  hosts:\n    a: [\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_provision"))
        .arg("apply")
        .arg(&inv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.yaml:"),
        "{}",
        show(&out)
    );
}

/// The kdump client role on namespace hosts: everything but what needs a kernel (the capture
/// kernel, netconsole's module, the crash itself stay in the VM lab tests). Its files, its key
/// pair, the server's host keys pinned for the capture environment, the key line on the server;
/// and a second run changes nothing.
#[test]
fn kdump_clients_get_their_files_keys_and_known_hosts() {
    let Some((fleet, dir, _)) = setup() else {
        return;
    };
    let inv = dir.path().join("kdump.yaml");
    let text = inventory(&fleet, "").replace(
        "netdump_client_flavor: netdump\n        netdump_netlogaddr: NONE\n",
        "netdump_client_flavor: kdump\n",
    );
    std::fs::write(&inv, text).unwrap();
    let first = provision(&fleet, &inv, &["--output", "json"]);
    assert_eq!(first.status.code(), Some(0), "{}", show(&first));
    let srv = fleet.host("srv");
    let srv_addr = srv.address.to_string();
    let srv_mac = srv
        .exec_ok("cat /sys/class/net/eth0/address")
        .trim()
        .to_string();
    let server_keys: Vec<String> = srv
        .exec_ok("for f in /etc/ssh/ssh_host_*_key.pub; do cut -d' ' -f1,2 \"$f\"; done")
        .lines()
        .map(|k| format!("{srv_addr} {k}"))
        .collect();
    assert!(!server_keys.is_empty());
    let ak = String::from_utf8(srv.read_file("/var/crash/.ssh/authorized_keys2").unwrap()).unwrap();
    // The server's sshd accepts a crash storm of its fleet: never below sshd's default.
    let sshd = String::from_utf8(
        srv.read_file("/etc/ssh/sshd_config.d/netdump-provision.conf")
            .unwrap(),
    )
    .unwrap();
    assert!(sshd.contains("\nMaxStartups 10:30:100\n"), "{sshd}");
    assert!(
        sshd.find("MaxStartups") < sshd.find("Match User"),
        "MaxStartups must be global: {sshd}"
    );
    for c in ["c1", "c2", "c3"] {
        let h = fleet.host(c);
        let addr = h.address.to_string();
        // kdump-tools reads its configuration with /bin/sh: what it sees is what counts.
        let vars = h.exec_ok(
            ". /etc/default/kdump-tools; printf '%s\\n' \"$SSH\" \"$SSH_KEY\" \"$KDUMP_COREDIR\" \"$MAKEDUMP_ARGS\" \"$USE_KDUMP\"",
        );
        let vars: Vec<&str> = vars.lines().collect();
        assert_eq!(vars[0], format!("netdump@{srv_addr}"), "{c}");
        assert_eq!(vars[1], "/root/.ssh/netdump_kdump_id_ed25519", "{c}");
        assert_eq!(vars[2], "/var/crash", "{c}");
        assert!(
            vars[3].split_whitespace().any(|w| w == "-F"),
            "{c}: {vars:?}"
        );
        assert_eq!(vars[4], "1", "{c}");
        // The key pair: private 0600, its public half on the server, bound to the address.
        assert_eq!(
            h.stat("/root/.ssh/netdump_kdump_id_ed25519")
                .map(|s| s.2 & 0o777),
            Some(0o600),
            "{c}"
        );
        let public = h.exec_ok("cut -d' ' -f1,2 /root/.ssh/netdump_kdump_id_ed25519.pub");
        let line = ak
            .lines()
            .find(|l| l.ends_with(&format!(" netdump-provision:{c}")))
            .unwrap_or_else(|| panic!("no key line for {c} in {ak}"));
        assert!(line.contains(public.trim()), "{c}: {line}");
        assert!(line.contains(&format!("from=\"{addr}\"")), "{c}: {line}");
        assert!(line.starts_with("restrict"), "{c}: {line}");
        // The server's host keys pinned where the capture environment's ssh looks.
        let kh = String::from_utf8(h.read_file("/etc/ssh/ssh_known_hosts").unwrap()).unwrap();
        for k in &server_keys {
            assert!(kh.lines().any(|l| l == k), "{c}: {k} not pinned in {kh}");
        }
        // netconsole to the server's port, from this host's address, to the server's MAC.
        let modprobe = String::from_utf8(
            h.read_file("/etc/modprobe.d/netdump-provision-netconsole.conf")
                .unwrap(),
        )
        .unwrap();
        assert!(
            modprobe.contains(&format!(
                "netconsole=+6665@{addr}/eth0,6666@{srv_addr}/{srv_mac}"
            )),
            "{c}: {modprobe}"
        );
        assert_eq!(h.exec_ok("cat /proc/sys/kernel/sysrq").trim(), "1", "{c}");
        // The ssh path as the capture environment uses it: kdump-tools runs plain
        // `ssh -i KEY netdump@SERVER CMD`; the client drop-in apply wrote makes it strict
        // (pinned keys only), prompt-free and patient. Its first step is a mkdir.
        let dropin = String::from_utf8(
            h.read_file("/etc/ssh/ssh_config.d/netdump-provision.conf")
                .unwrap_or_default(),
        )
        .unwrap();
        assert!(
            dropin.contains(&format!("Host {srv_addr}\n")),
            "{c}: {dropin}"
        );
        let resolved = h.exec_ok(&format!("ssh -G netdump@{srv_addr}"));
        for want in [
            "batchmode yes",
            "stricthostkeychecking true",
            "connecttimeout 30",
            "serveraliveinterval 15",
        ] {
            assert!(
                resolved.lines().any(|l| l == want),
                "{c}: no {want:?} in ssh -G"
            );
        }
        let out = h.exec(&format!(
            "ssh -i /root/.ssh/netdump_kdump_id_ed25519 netdump@{srv_addr} \
               mkdir -p /var/crash/{addr}-202612020600 < /dev/null"
        ));
        assert!(
            out.status.success(),
            "{c}: kdump's ssh path failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let before: Vec<String> = fleet.hosts().iter().map(state_snapshot).collect();
    let second = provision(&fleet, &inv, &["--output", "json"]);
    assert_eq!(second.status.code(), Some(0), "{}", show(&second));
    assert_eq!(total(&recap(&second), "changed"), 0, "{}", show(&second));
    for (h, was) in fleet.hosts().iter().zip(&before) {
        assert_eq!(&state_snapshot(h), was, "second apply touched {}", h.name);
    }
}
