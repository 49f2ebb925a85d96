//! The dump sink for real: `provision apply` sets up a server and two clients on namespace
//! hosts (tests/support/nshost.rs), the server's sshd reads the drop-in apply wrote, and the
//! clients' own keys then run the exact command sequences of Debian's kdump-tools and of RHEL's
//! kdumpctl/dracut over ssh, scp in SFTP mode and `scp -O`; everything else is refused.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};

use support::nshost::{Fleet, NsHost, require_root_tools, show};

const KEY: &str = "/etc/sysconfig/netdump_id_dsa";

fn inventory(fleet: &Fleet, server_vars: &str) -> String {
    let mut s = format!(
        "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n    netdump_manage_packages: false\n    netdump_manage_services: false\n  children:\n    netdump_servers:\n      hosts:\n        srv:\n          ansible_host: {}\n{server_vars}",
        fleet.client_key_path().display(),
        fleet.host("srv").address
    );
    s.push_str("    netdump_clients:\n      vars:\n        netdump_client_flavor: netdump\n        netdump_netlogaddr: NONE\n      hosts:\n");
    for h in ["a", "b"] {
        s.push_str(&format!(
            "        {h}:\n          ansible_host: {}\n",
            fleet.host(h).address
        ));
    }
    s
}

fn apply(fleet: &Fleet, inv: &Path) -> Output {
    fleet
        .provision(Path::new(env!("CARGO_BIN_EXE_provision")), "apply", 5)
        .arg(inv)
        .output()
        .expect("run provision")
}

const SSH_OPTS: &str = "-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR";

/// `ssh netdump@srv <remote>` from `client`, with `stdin_file` (a path on this machine) as
/// stdin; the remote command is passed as ssh's arguments, as the dump tools do.
fn ssh(client: &NsHost, srv: &NsHost, remote: &str, stdin_file: Option<&Path>) -> Output {
    let input = stdin_file
        .map(|p| format!(" < '{}'", p.display()))
        .unwrap_or_else(|| " < /dev/null".into());
    client.exec(&format!(
        "ssh -i {KEY} {SSH_OPTS} netdump@{} {remote}{input}",
        srv.address
    ))
}

fn scp(client: &NsHost, srv: &NsHost, legacy: bool, from: &Path, to: &str) -> Output {
    client.exec(&format!(
        "scp {} -i {KEY} {SSH_OPTS} '{}' netdump@{}:{to}",
        if legacy { "-O" } else { "" },
        from.display(),
        srv.address
    ))
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(o: Output, what: &str) {
    assert!(!o.status.success(), "{what} was allowed: {}", show(&o));
}

#[test]
fn clients_dump_through_the_sink_and_nothing_else() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["srv", "a", "b"]);
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(&inv, inventory(&fleet, "")).unwrap();
    let out = apply(&fleet, &inv);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        fleet
            .host("srv")
            .read_file("/etc/ssh/sshd_config.d/netdump-provision.conf")
            .is_some(),
        "apply wrote no sshd drop-in: {}",
        show(&out)
    );

    // The namespace sshd reads its own config: give it the drop-in apply wrote, as the
    // distribution's sshd_config does with its Include line.
    let srv = fleet.host("srv");
    let cfg = srv.dir.join("sshd_config");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replace("StrictModes no\n", "StrictModes yes\n");
    text.push_str("Include /etc/ssh/sshd_config.d/netdump-provision.conf\n");
    std::fs::write(&cfg, text).unwrap();
    srv.stop();
    srv.start_sshd();

    let (a, b) = (fleet.host("a"), fleet.host("b"));
    let (ipa, ipb) = (a.address.to_string(), b.address.to_string());
    let payload = dir.path().join("payload");
    std::fs::write(&payload, b"KDUMP   \x01\x00 a flattened dump would be here").unwrap();
    let dmesg = dir.path().join("dmesg.202612020425");
    std::fs::write(
        &dmesg,
        b"sysrq: Trigger a crash\nKernel panic - not syncing\n",
    )
    .unwrap();

    // Debian kdump-tools (kdump-config's kdump_save_core_to_ssh), scp in SFTP mode.
    let d = format!("/var/crash/{ipa}-202612020425");
    ok(ssh(a, srv, &format!("mkdir -p {d}"), None), "mkdir");
    ok(
        ssh(
            a,
            srv,
            &format!("dd of={d}/dump-incomplete"),
            Some(&payload),
        ),
        "dd",
    );
    ok(
        ssh(
            a,
            srv,
            &format!("mv {d}/dump-incomplete {d}/dump.202612020425"),
            None,
        ),
        "mv",
    );
    ok(scp(a, srv, false, &dmesg, &d), "scp (SFTP) of dmesg");
    let got = srv.read_file(&format!("{d}/dump.202612020425")).unwrap();
    assert_eq!(got, std::fs::read(&payload).unwrap());
    assert_eq!(
        srv.read_file(&format!("{d}/dmesg.202612020425")).unwrap(),
        std::fs::read(&dmesg).unwrap()
    );
    let (_, _, m) = srv.stat(&format!("{d}/dump.202612020425")).unwrap();
    assert_eq!(m & 0o777, 0o600);
    let (_, _, m) = srv.stat(&d).unwrap();
    assert_eq!(m & 0o777, 0o700);

    // RHEL kdumpctl (first kernel) and the dracut capture script, scp -O (legacy protocol).
    ok(ssh(a, srv, "mkdir -p /var/crash", None), "mkdir -p base");
    let tmp = ok(ssh(a, srv, "mktemp -dqp /var/crash", None), "mktemp");
    let tmp = tmp.trim();
    assert!(tmp.starts_with(&format!("/var/crash/{ipa}-")), "{tmp}");
    ok(ssh(a, srv, &format!("rmdir {tmp}"), None), "rmdir");
    let df = ok(ssh(a, srv, "df --output=avail /var/crash", None), "df");
    assert!(
        df.lines().last().unwrap().trim().parse::<u64>().is_ok(),
        "{df}"
    );
    let r = format!("/var/crash/{ipa}-2026-12-02-04:25:01");
    ok(ssh(a, srv, &format!("mkdir -p {r}"), None), "mkdir");
    ok(
        ssh(
            a,
            srv,
            &format!("\"umask 0077 && dd of='{r}/vmcore-dmesg-incomplete.txt'\""),
            Some(&dmesg),
        ),
        "dd dmesg",
    );
    ok(
        ssh(
            a,
            srv,
            &format!("mv {r}/vmcore-dmesg-incomplete.txt {r}/vmcore-dmesg.txt"),
            None,
        ),
        "mv dmesg",
    );
    ok(
        ssh(
            a,
            srv,
            &format!("\"umask 0077 && dd bs=512 of='{r}/vmcore-incomplete'\""),
            Some(&payload),
        ),
        "dd vmcore",
    );
    ok(
        ssh(
            a,
            srv,
            &format!("\"mv '{r}/vmcore-incomplete' '{r}/vmcore.flat'\""),
            None,
        ),
        "mv vmcore",
    );
    let klog = dir.path().join("kexec-dmesg.log");
    std::fs::write(&klog, b"kdump: saving vmcore complete\n").unwrap();
    ok(
        scp(a, srv, true, &klog, &format!("{r}/")),
        "scp -O of kexec-dmesg.log",
    );
    assert!(srv.read_file(&format!("{r}/kexec-dmesg.log")).is_some());
    ok(
        ssh(
            a,
            srv,
            &format!("\"echo success kdump_test_id=1-2 > {r}/vmcore-creation.status\""),
            None,
        ),
        "status",
    );

    // kdumpctl fetches the status file back after reboot: scp from the server, both protocols.
    for legacy in [false, true] {
        let dst = dir.path().join(format!("status-{legacy}"));
        ok(
            a.exec(&format!(
                "scp {} -i {KEY} {SSH_OPTS} netdump@{}:{r}/vmcore-creation.status '{}'",
                if legacy { "-O" } else { "" },
                srv.address,
                dst.display()
            )),
            "scp the status file back",
        );
        let text = std::fs::read_to_string(&dst).unwrap();
        assert_eq!(text, "success kdump_test_id=1-2\n");
        // Nothing else can be read back.
        let stolen = dir.path().join(format!("stolen-{legacy}"));
        refused(
            a.exec(&format!(
                "scp {} -i {KEY} {SSH_OPTS} netdump@{}:{d}/dump.202612020425 '{}'",
                if legacy { "-O" } else { "" },
                srv.address,
                stolen.display()
            )),
            "scp a dump back",
        );
        assert!(std::fs::read(&stolen).map(|b| b.is_empty()).unwrap_or(true));
    }

    // B's dump, written by B.
    let db = format!("/var/crash/{ipb}-202612020426");
    ok(ssh(b, srv, &format!("mkdir -p {db}"), None), "b mkdir");
    ok(
        ssh(
            b,
            srv,
            &format!("dd of={db}/dump-incomplete"),
            Some(&payload),
        ),
        "b dd",
    );
    ok(
        ssh(
            b,
            srv,
            &format!("mv {db}/dump-incomplete {db}/dump.1"),
            None,
        ),
        "b mv",
    );

    // What A must not do.
    let evil = dir.path().join("evil");
    std::fs::write(&evil, b"overwritten").unwrap();
    let by_sink = |o: Output, what: &str| {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        refused(o, what);
        assert!(
            err.starts_with("dump-sink: "),
            "{what}: not the sink's refusal: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
    };
    for cmd in [
        "id".to_string(),
        "sh -c id".into(),
        "bash".into(),
        "\"bash -i\"".into(),
        "ls /var/crash".into(),
        format!("ls {db}"),
        format!("cat {db}/dump.1"),
        "cat /var/crash/events.jsonl".into(),
        format!("rm -f {db}/dump.1"),
        format!("mv {db}/dump.1 {db}/x"),
        format!("mv {d}/dump.202612020425 {d}/x"),
        format!("rmdir {db}"),
        format!("dd of={db}/dump.1"),
        format!("dd of={db}/new-incomplete"),
        format!("dd of={d}/dump.202612020425"),
        format!("dd of={d}/../{ipb}-202612020426/x-incomplete"),
        "dd of=/etc/evil".into(),
        "dd of=/var/crash/events.jsonl".into(),
        "dd of=/var/crash/.ssh/authorized_keys2".into(),
        "\"cat >> /var/crash/.ssh/authorized_keys2\"".into(),
        "dd of=/var/crash/scripts/netdump-crash".into(),
        format!("dd of=/var/crash/magic/{ipb}"),
        "mkdir -p /var/crash/scripts/x".into(),
        format!("mkdir -p /var/crash/{ipb}-202612020427"),
        "\"mkdir -p /tmp/x; id\"".into(),
    ] {
        by_sink(ssh(a, srv, &cmd, Some(&evil)), &cmd);
    }
    refused(
        scp(a, srv, false, &evil, &format!("{db}/dump.1")),
        "scp onto B's dump",
    );
    refused(
        scp(a, srv, true, &evil, &format!("{d}/dump.202612020425")),
        "scp -O onto A's finished dump",
    );
    refused(
        scp(a, srv, false, &evil, "/var/crash/.ssh/authorized_keys2"),
        "scp onto authorized_keys2",
    );
    // A symlink planted in A's directory (as root, standing in for any way one got there)
    // is never followed.
    srv.exec_ok(&format!("ln -s /etc/passwd {d}/link-incomplete"));
    let passwd = srv.read_file("/etc/passwd").unwrap();
    refused(
        ssh(a, srv, &format!("dd of={d}/link-incomplete"), Some(&evil)),
        "write through a symlink",
    );
    assert_eq!(srv.read_file("/etc/passwd").unwrap(), passwd);
    srv.exec_ok(&format!("rm {d}/link-incomplete"));
    // Nothing of B's changed, and no file appeared outside A's directories.
    assert_eq!(
        srv.read_file(&format!("{db}/dump.1")).unwrap(),
        std::fs::read(&payload).unwrap()
    );
    assert_eq!(
        srv.read_file(&format!("{d}/dump.202612020425")).unwrap(),
        std::fs::read(&payload).unwrap()
    );
    assert!(srv.read_file("/etc/evil").is_none());
    let listing = srv.exec_ok("ls -A /var/crash");
    for name in listing.lines() {
        assert!(
            name.starts_with(&format!("{ipa}-"))
                || name.starts_with(&format!("{ipb}-"))
                || [".ssh", "magic", "scripts", "events.jsonl"].contains(&name),
            "unexpected {name} in /var/crash:\n{listing}"
        );
    }

    // Events: started, completed (with files) and refusals, all with the client's identity.
    let events = String::from_utf8(srv.read_file("/var/crash/events.jsonl").unwrap()).unwrap();
    assert!(
        events.contains(&format!(
            "\"event\":\"dump_complete\",\"host\":\"{ipa}\",\"client\":\"a\""
        )),
        "{events}"
    );
    assert!(
        events.contains(&format!(
            "\"event\":\"refused\",\"host\":\"{ipa}\",\"client\":\"a\""
        )),
        "{events}"
    );
    assert!(events.contains("dump.202612020425"), "{events}");
    // The legitimate transfers used no request the sink does not serve (scp's FSETSTAT is
    // acknowledged, as the lab's real kdump-tools run showed it is sent).
    assert!(!events.contains("is not served"), "{events}");

    // Retention: netdump_keep_dumps 5. A has 2 complete dumps; 3 more make 5, and the 6th
    // removes the oldest. Distinct ages, oldest first (the sink orders by directory time).
    srv.exec_ok(&format!("touch -d '-30 min' {d}; touch -d '-20 min' {r}"));
    for i in 0..3 {
        let x = format!("/var/crash/{ipa}-20261202050{i}");
        ok(ssh(a, srv, &format!("mkdir -p {x}"), None), "mkdir");
        ok(
            ssh(
                a,
                srv,
                &format!("dd of={x}/dump-incomplete"),
                Some(&payload),
            ),
            "dd",
        );
        ok(
            ssh(
                a,
                srv,
                &format!("mv {x}/dump-incomplete {x}/dump.{i}"),
                None,
            ),
            "mv",
        );
        srv.exec_ok(&format!("touch -d '-{} min' {x}", 10 - i));
    }
    let count = |h: &NsHost| {
        srv.exec_ok(&format!("ls -d /var/crash/{}-* | wc -l", h.address))
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    assert_eq!(count(a), 5, "{}", srv.exec_ok("ls -la /var/crash"));
    ok(
        ssh(
            a,
            srv,
            &format!("mkdir -p /var/crash/{ipa}-202612020600"),
            None,
        ),
        "mkdir",
    );
    assert_eq!(count(a), 5, "{}", srv.exec_ok("ls -la /var/crash"));
    assert!(srv.stat(&d).is_none(), "the oldest dump was removed");
    assert!(srv.stat(&r).is_some(), "only the oldest");
    assert_eq!(count(b), 1, "B's dump is not A's to remove");
    let events = String::from_utf8(srv.read_file("/var/crash/events.jsonl").unwrap()).unwrap();
    assert!(events.contains("\"event\":\"dump_deleted\""), "{events}");

    // A nearly full dump filesystem refuses a new dump with a clear message.
    srv.exec_ok("mount -o remount,size=300m /var/crash && fallocate -l 200m /var/crash/.fill");
    let o = ssh(
        a,
        srv,
        &format!("mkdir -p /var/crash/{ipa}-202612020700"),
        None,
    );
    refused(o.clone(), "a dump on a full disk");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not enough space") && err.contains("netdump_min_free"),
        "{err}"
    );
}

/// A server set up the old way (netdump with a shell, owning `.ssh` and its key list, key lines
/// without a forced command, a hand-added key) converges on the next apply, and the hand-added
/// line is kept and reported.
#[test]
fn an_old_server_converges_and_unmanaged_keys_are_reported() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["srv", "a", "b"]);
    let srv = fleet.host("srv");
    // `-p '*'`: this test sshd runs without PAM, and then refuses accounts whose password
    // field is `!` (locked) even for key logins.
    srv.exec_ok(
        "useradd -r -U -p '*' -d /var/crash -s /bin/bash netdump; \
         mkdir -p /var/crash/.ssh /var/crash/magic && \
         echo 'restrict,from=\"198.18.255.1\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOldOldOldOldOldOldOldOldOldOldOldOldOldOld netdump-provision:a' > /var/crash/.ssh/authorized_keys2 && \
         echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHandAddedKeyHandAddedKeyHandAddedKey0 admin@desk' >> /var/crash/.ssh/authorized_keys2 && \
         chown -R netdump:netdump /var/crash && chmod 0700 /var/crash /var/crash/.ssh && chmod 0600 /var/crash/.ssh/authorized_keys2",
    );
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(&inv, inventory(&fleet, "")).unwrap();
    let out = apply(&fleet, &inv);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let passwd = srv.exec_ok("getent passwd netdump");
    assert!(
        passwd
            .trim()
            .ends_with(":/usr/local/sbin/netdump-provision"),
        "{passwd}"
    );
    let (u, _, m) = srv.stat("/var/crash/.ssh").unwrap();
    assert_eq!((u, m & 0o7777), (0, 0o750));
    let (u, _, m) = srv.stat("/var/crash/.ssh/authorized_keys2").unwrap();
    assert_eq!((u, m & 0o7777), (0, 0o640));
    let keys =
        String::from_utf8(srv.read_file("/var/crash/.ssh/authorized_keys2").unwrap()).unwrap();
    assert!(keys.contains("admin@desk"), "{keys}");
    assert!(!keys.contains("OldOld"), "{keys}");
    for l in keys.lines().filter(|l| l.contains("netdump-provision:")) {
        assert!(
            l.contains(",command=\"/usr/local/sbin/netdump-provision dump-sink "),
            "{l}"
        );
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not managed by provision"),
        "the hand-added key is reported: {}",
        show(&out)
    );
    // This namespace sshd has no Include, so no ForceCommand: the key line's own `command=`
    // carries the sink and the client's identity.
    let (a, ipa) = (fleet.host("a"), fleet.host("a").address.to_string());
    let payload = dir.path().join("payload");
    std::fs::write(&payload, b"KDUMP   data").unwrap();
    let x = format!("/var/crash/{ipa}-202612020800");
    ok(
        ssh(a, srv, &format!("mkdir -p {x}"), None),
        "mkdir via command=",
    );
    ok(
        ssh(
            a,
            srv,
            &format!("dd of={x}/dump-incomplete"),
            Some(&payload),
        ),
        "dd via command=",
    );
    ok(
        ssh(a, srv, &format!("mv {x}/dump-incomplete {x}/dump.1"), None),
        "mv via command=",
    );
    assert_eq!(
        srv.read_file(&format!("{x}/dump.1")).unwrap(),
        b"KDUMP   data"
    );
    let o = ssh(a, srv, "id", None);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).starts_with("dump-sink: refused"),
        "{}",
        show(&o)
    );
    // A key that is not forced at all (this test sshd lets the fleet key in for every user):
    // netdump's login shell is the sink, which runs nothing that sshd did not force.
    let o = Command::new("ssh")
        .args(["-F", &fleet.ssh_config_path().display().to_string()])
        .args(["-i", &fleet.client_key_path().display().to_string()])
        .args([
            "-o",
            &format!("UserKnownHostsFile={}", fleet.known_hosts_path().display()),
            "-o",
            "BatchMode=yes",
        ])
        .arg(format!("netdump@{}", srv.address))
        .arg("id")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("dump-sink: refused") && o.stdout.is_empty(),
        "{}",
        show(&o)
    );

    // Converged: a second run changes nothing.
    let again = apply(&fleet, &inv);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    let recap = String::from_utf8_lossy(&again.stdout).into_owned();
    let lines: Vec<&str> = recap.lines().filter(|l| l.contains(" ok=")).collect();
    assert_eq!(lines.len(), 3, "{}", show(&again));
    assert!(
        lines.iter().all(|l| l.contains("changed=0 ")),
        "{}",
        show(&again)
    );
}
