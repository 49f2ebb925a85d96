//! The ssh engine against real sshd's in namespace hosts (tests/support/nshost.rs).

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use netdump_provision::ssh::Remote;
use netdump_provision::ssh::{RemoteCommand, SshError, SshHost, SshOptions, connect};
use support::nshost::{Fleet, require_root_tools};

async fn connect_root(fleet: &Fleet, name: &str) -> SshHost {
    connect(&fleet.target(name), &fleet.ssh_options())
        .await
        .unwrap_or_else(|e| panic!("connect {name}: {e}"))
}

fn cmd(script: &str) -> RemoteCommand {
    RemoteCommand::new("test", script).timeout(Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_scripts_with_status_stdout_stderr() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["h1"]);
    let host = connect_root(&fleet, "h1").await;
    assert_eq!(host.host(), "h1");
    assert_eq!(host.target().address, fleet.host("h1").address.to_string());

    let out = host
        .run(cmd("echo out; echo err >&2; hostname; exit 3"))
        .await
        .unwrap();
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stdout_str(), "out\nh1\n");
    assert_eq!(out.stderr_str(), "err\n");
    assert!(!out.success());

    // Statuses the openssh crate treats specially are ordinary statuses here.
    for code in [0, 1, 126, 127, 255] {
        let out = host.run(cmd(&format!("exit {code}"))).await.unwrap();
        assert_eq!(out.status, Some(code));
    }
    let out = host.run(cmd("no-such-command-xyz")).await.unwrap();
    assert_eq!(out.status, Some(127));
    assert!(out.stderr_str().contains("not found"));
    host.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_delivers_binary_data_and_is_closed() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["h1"]);
    let host = connect_root(&fleet, "h1").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let out = host.run(cmd("cat").stdin(data.clone())).await.unwrap();
    assert_eq!(out.status, Some(0));
    assert!(out.stdout == data, "binary stdin did not round-trip");

    // No stdin: reading gives EOF at once instead of hanging.
    let out = host.run(cmd("wc -c")).await.unwrap();
    assert_eq!(out.stdout_str().trim(), "0");
    // A script that ignores its stdin is fine.
    let out = host
        .run(cmd("true").stdin(vec![b'x'; 1 << 20]))
        .await
        .unwrap();
    assert_eq!(out.status, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn nasty_scripts_arrive_verbatim() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["h1"]);
    let host = connect_root(&fleet, "h1").await;
    let script = "x='single '\\''quoted'\\'''\ny=\"double \\\"quoted\\\" \\$HOME `echo tick` $(echo sub)\"\n\
printf '%s\\n' \"$x\" \"$y\" '$HOME' \"a\\\\b\" 'ünï ✓' \"*\"\n# comment; exit 9\ncase \"$0\" in *) : ;; esac";
    let out = host.run(cmd(script)).await.unwrap();
    assert_eq!(out.status, Some(0), "{}", out.stderr_str());
    assert_eq!(
        out.stdout_str(),
        "single 'quoted'\ndouble \"quoted\" $HOME tick sub\n$HOME\na\\b\nünï ✓\n*\n"
    );
    // A script that starts with a dash, and one with a literal newline-separated heredoc.
    let out = host.run(cmd("-true 2>/dev/null; echo dash")).await.unwrap();
    assert_eq!(out.stdout_str(), "dash\n");
    let out = host
        .run(cmd("cat <<'EOF'\n$not expanded\n'quotes'\nEOF"))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "$not expanded\n'quotes'\n");
    // The script text reaches sh unaltered, byte for byte.
    let out = host
        .run(cmd("printf '%s' \"$0\"; printf 'x\\0y'"))
        .await
        .unwrap();
    assert_eq!(out.stdout, b"shx\0y");
    // A NUL in the script is refused with a clear error instead of being cut.
    let err = host.run(cmd("echo a\0b")).await.unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_on_stdin_never_reach_argv() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["h1"]);
    let host = Arc::new(connect_root(&fleet, "h1").await);
    let secret = "s3cr3t-Pa55-7f2c91";
    let script = "IFS= read -r pw; printf '%s' \"$pw\" | sha256sum; touch /var/tmp/reading; \
                  while [ ! -e /var/tmp/go ]; do sleep 0.1; done; \
                  for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\"; echo; done 2>/dev/null";
    let task = {
        let host = host.clone();
        let secret = secret.to_string();
        tokio::spawn(async move { host.run(cmd(script).stdin(format!("{secret}\n"))).await })
    };
    // While the step runs: no local process has the secret in its argv either.
    let h1 = fleet.host("h1");
    let deadline = Instant::now() + Duration::from_secs(30);
    while h1.read_file("/var/tmp/reading").is_none() {
        assert!(Instant::now() < deadline, "remote step never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(argv) = std::fs::read(entry.path().join("cmdline")) {
            assert!(
                !String::from_utf8_lossy(&argv).contains(secret),
                "secret in local argv of pid {:?}",
                entry.file_name()
            );
        }
    }
    h1.exec_ok("touch /var/tmp/go");
    let out = task.await.unwrap().unwrap();
    assert_eq!(out.status, Some(0));
    let text = out.stdout_str();
    let expected = {
        let o = std::process::Command::new("sh")
            .args(["-c", &format!("printf '%s' '{secret}' | sha256sum")])
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    assert!(
        text.starts_with(&expected),
        "secret did not arrive on stdin"
    );
    assert!(
        text.contains("sshd"),
        "remote process list looks empty: {text}"
    );
    assert!(
        !text[expected.len()..].contains(secret),
        "secret visible in remote argv"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_timeout_kills_the_remote_process() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["h1"]);
    let host = connect_root(&fleet, "h1").await;
    let step = RemoteCommand::new(
        "slow step",
        "echo $$ > /var/tmp/sh.pid; sleep 600 & echo $! > /var/tmp/sleep.pid; wait",
    )
    .timeout(Duration::from_secs(2));
    let err = host.run(step).await.unwrap_err();
    match &err {
        SshError::Timeout { host, step, secs } => {
            assert_eq!(
                (host.as_str(), step.as_str(), *secs),
                ("h1", "slow step", 2)
            );
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(!err.is_unreachable());
    let h1 = fleet.host("h1");
    for pidfile in ["/var/tmp/sh.pid", "/var/tmp/sleep.pid"] {
        let pid = String::from_utf8(h1.read_file(pidfile).unwrap()).unwrap();
        let pid = pid.trim();
        assert!(!pid.is_empty());
        // Gone (or a zombie about to be reaped): not running any more.
        let state = h1.exec(&format!(
            "cat /proc/{pid}/stat 2>/dev/null | awk '{{print $3}}'"
        ));
        let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
        assert!(
            state.is_empty() || state == "Z",
            "{pidfile} pid {pid} still running: {state}"
        );
    }
    // The connection is still fine afterwards.
    assert_eq!(host.run(cmd("echo ok")).await.unwrap().stdout_str(), "ok\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_key_policy() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["h1"]);
    let target = fleet.target("h1");
    let empty_kh = fleet.path().join("empty_known_hosts");
    std::fs::write(&empty_kh, "").unwrap();
    let mut opts = SshOptions {
        known_hosts: Some(empty_kh.clone()),
        ..fleet.ssh_options()
    };

    // Unknown key: refused by default.
    let err = connect(&target, &opts)
        .await
        .expect_err("unknown key accepted");
    assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{err:?}");
    assert!(err.is_unreachable());
    assert!(err.to_string().contains(&empty_kh.display().to_string()));

    // ... unless the inventory pins StrictHostKeyChecking=yes, which stays strict even then.
    let strict_target = netdump_provision::ssh::Target {
        ssh_common_args: vec!["-o".into(), "StrictHostKeyChecking=yes".into()],
        ..target.clone()
    };
    opts.accept_new_host_keys = true;
    let err = connect(&strict_target, &opts).await.expect_err("accepted");
    assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{err:?}");
    // Weakening it from the inventory is refused outright.
    let weak_target = netdump_provision::ssh::Target {
        ssh_common_args: vec!["-o".into(), "StrictHostKeyChecking=no".into()],
        ..target.clone()
    };
    let err = connect(&weak_target, &opts).await.expect_err("accepted");
    assert!(err.to_string().contains("not accepted"), "{err}");

    // accept_new: connects and records the key.
    let host = connect(&target, &opts).await.unwrap();
    assert_eq!(
        host.run(cmd("hostname")).await.unwrap().stdout_str(),
        "h1\n"
    );
    host.close().await;
    let recorded = std::fs::read_to_string(&empty_kh).unwrap();
    assert!(recorded.contains(&target.address), "{recorded}");

    // Changed key: refused, with accept_new too, against both known_hosts files.
    fleet.host("h1").regenerate_host_key();
    for kh in [fleet.known_hosts_path(), empty_kh.clone()] {
        for accept in [false, true] {
            let opts = SshOptions {
                known_hosts: Some(kh.clone()),
                accept_new_host_keys: accept,
                ..fleet.ssh_options()
            };
            let err = connect(&target, &opts)
                .await
                .expect_err("changed key accepted");
            assert!(matches!(err, SshError::HostKeyChanged { .. }), "{err:?}");
            assert!(err.is_unreachable());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_hosts_fail_fast_with_connect_errors() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["h1"]);
    let opts = fleet.ssh_options();

    // Nothing at that address.
    let mut target = fleet.target("h1");
    target.address = fleet.unused_address().to_string();
    let started = Instant::now();
    let err = connect(&target, &opts)
        .await
        .expect_err("connected to nothing");
    let took = started.elapsed();
    eprintln!("unreachable address failed after {took:?}: {err}");
    assert!(matches!(err, SshError::Connect { .. }), "{err:?}");
    assert!(err.is_unreachable());
    // Bounded by the connect timeout (plus ssh's own startup), not by TCP's minutes.
    assert!(
        took < opts.connect_timeout * 3 + Duration::from_secs(5),
        "{took:?}"
    );

    // sshd down: refused.
    fleet.host("h1").stop();
    let err = connect(&fleet.target("h1"), &opts)
        .await
        .expect_err("connected");
    match &err {
        SshError::Connect { reason, hint, .. } => {
            assert!(reason.contains("Connection refused"), "{reason}");
            assert!(hint.contains("sshd running"), "{hint}");
        }
        other => panic!("{other:?}"),
    }
    fleet.host("h1").start_sshd();

    // Wrong user/key: permission denied, with a hint about the user and key.
    let mut target = fleet.target("h1");
    target.user = Some("nobody-here".into());
    let err = connect(&target, &opts).await.expect_err("connected");
    match &err {
        SshError::Connect { reason, hint, .. } => {
            assert!(reason.contains("Permission denied"), "{reason}");
            assert!(hint.contains("ansible_user (nobody-here)"), "{hint}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn become_through_sudo() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["h1"]);
    fleet.add_sudo_user("h1", "alice");
    fleet.add_user("h1", "bob");
    let opts = fleet.ssh_options();

    let mut alice = fleet.target("h1");
    alice.user = Some("alice".into());
    alice.become_ = true;
    let host = connect(&alice, &opts).await.unwrap();
    let out = host
        .run(cmd("id -u; cat").stdin(b"via sudo".to_vec()))
        .await
        .unwrap();
    assert_eq!(out.status, Some(0), "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "0\nvia sudo");
    let out = host.run(cmd("echo $SUDO_USER; exit 4")).await.unwrap();
    assert_eq!((out.status, out.stdout_str()), (Some(4), "alice\n".into()));

    let mut bob = fleet.target("h1");
    bob.user = Some("bob".into());
    // Without become bob can run things...
    let plain = connect(&bob, &opts).await.unwrap();
    assert_eq!(
        plain.run(cmd("id -un")).await.unwrap().stdout_str(),
        "bob\n"
    );
    // ... with become, sudo refuses.
    bob.become_ = true;
    let host = connect(&bob, &opts).await.unwrap();
    let err = host
        .run(RemoteCommand::new("install pkg", "id -u"))
        .await
        .unwrap_err();
    match &err {
        SshError::Become {
            host,
            step,
            user,
            reason,
        } => {
            assert_eq!(
                (host.as_str(), step.as_str(), user.as_str()),
                ("h1", "install pkg", "bob")
            );
            assert!(reason.starts_with("sudo:"), "{reason}");
        }
        other => panic!("expected Become, got {other:?}"),
    }
    assert!(err.to_string().contains("sudo -n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_steps_are_capped_per_host() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["h1"]);
    let host = Arc::new(connect_root(&fleet, "h1").await);
    // Each step bumps a shared counter (under flock), records the maximum, holds, and leaves.
    let script = r#"bump() { flock /var/tmp/count.lock sh -c '
        n=$(( $(cat /var/tmp/count 2>/dev/null || echo 0) + $1 )); echo $n > /var/tmp/count
        m=$(cat /var/tmp/max 2>/dev/null || echo 0); [ $n -le $m ] || echo $n > /var/tmp/max' sh "$1"; }
        bump 1; sleep 1; bump -1; echo done"#;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let host = host.clone();
        tasks.spawn(async move { host.run(cmd(script)).await });
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        let out = r.unwrap().unwrap();
        assert_eq!(out.stdout_str(), "done\n", "{}", out.stderr_str());
        done += 1;
    }
    assert_eq!(done, 20);
    let h1 = fleet.host("h1");
    let max: u32 = String::from_utf8(h1.read_file("/var/tmp/max").unwrap())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let left = String::from_utf8(h1.read_file("/var/tmp/count").unwrap()).unwrap();
    eprintln!("at most {max} steps ran at once");
    assert!(max <= 8, "{max} channels at once");
    assert!(max >= 2, "steps did not run concurrently (max {max})");
    assert_eq!(left.trim(), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_hosts_in_parallel() {
    if !require_root_tools() {
        return;
    }
    let fleet = Arc::new(Fleet::start_n("p", 10));
    let mut tasks = tokio::task::JoinSet::new();
    for h in fleet.hosts() {
        let fleet = fleet.clone();
        let name = h.name.clone();
        tasks.spawn(async move {
            let host = connect_root(&fleet, &name).await;
            let out = host
                .run(cmd("hostname; cat /proc/sys/kernel/sysrq"))
                .await
                .unwrap();
            host.close().await;
            (name, out.stdout_str())
        });
    }
    let mut seen = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (name, out) = r.unwrap();
        assert_eq!(out, format!("{name}\n0\n"));
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen.len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_connection_is_disconnected_and_reconnects_afterwards() {
    if !require_root_tools() {
        return;
    }
    let fleet = Arc::new(Fleet::start(&["h1"]));
    let host = Arc::new(connect_root(&fleet, "h1").await);
    let task = {
        let host = host.clone();
        tokio::spawn(async move { host.run(cmd("touch /var/tmp/started; sleep 60")).await })
    };
    let h1 = fleet.host("h1");
    let deadline = Instant::now() + Duration::from_secs(30);
    while h1.read_file("/var/tmp/started").is_none() {
        assert!(Instant::now() < deadline, "remote step never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The host "goes down": sshd and every session die.
    h1.stop();
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, SshError::Disconnected { .. }), "{err:?}");
    assert!(err.is_unreachable());
    // Down: the next step cannot reconnect.
    let err = host.run(cmd("true")).await.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    // Back up: the same SshHost reconnects by itself.
    h1.start_sshd();
    let out = host
        .run(cmd("cat /var/tmp/started && echo back"))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "back\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn common_args_are_honoured_or_refused() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["h1"]);
    let mut target = fleet.target("h1");
    target.ssh_common_args = vec![
        "-o".into(),
        "ServerAliveCountMax=2".into(),
        "-oConnectionAttempts=1".into(),
    ];
    let host = connect(&target, &fleet.ssh_options()).await.unwrap();
    assert_eq!(host.run(cmd("echo hi")).await.unwrap().stdout_str(), "hi\n");
    // A -o that would route around the pinned key file is refused before connecting.
    target.ssh_common_args = vec!["-o".into(), "UserKnownHostsFile=/dev/null".into()];
    let err = connect(&target, &fleet.ssh_options()).await.unwrap_err();
    assert!(matches!(err, SshError::Other { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("h1: step 'connect': ansible_ssh_common_args"),
        "{err}"
    );
    // A -o that is honoured changes ssh's behaviour: a bogus ProxyCommand makes connect fail.
    target.ssh_common_args = vec!["-o".into(), "ProxyCommand=false".into()];
    assert!(connect(&target, &fleet.ssh_options()).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silently_dead_host_is_noticed_by_keepalives() {
    if !require_root_tools() {
        return;
    }
    let fleet = Arc::new(Fleet::start(&["h1"]));
    let host = Arc::new(connect_root(&fleet, "h1").await);
    let task = {
        let host = host.clone();
        tokio::spawn(async move { host.run(cmd("touch /var/tmp/started; sleep 50")).await })
    };
    let h1 = fleet.host("h1");
    let deadline = Instant::now() + Duration::from_secs(30);
    while h1.read_file("/var/tmp/started").is_none() {
        assert!(Instant::now() < deadline, "remote step never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No FIN, no RST: the host just stops answering, as a crashed kernel would.
    h1.set_link(false);
    let started = Instant::now();
    let err = task.await.unwrap().unwrap_err();
    eprintln!("dead host noticed after {:?}", started.elapsed());
    assert!(matches!(err, SshError::Disconnected { .. }), "{err:?}");
    h1.set_link(true);
    let out = host.run(cmd("echo alive")).await.unwrap();
    assert_eq!(out.stdout_str(), "alive\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn files_are_written_atomically_through_become() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["h1"]);
    fleet.add_sudo_user("h1", "alice");
    let mut alice = fleet.target("h1");
    alice.user = Some("alice".into());
    alice.become_ = true;
    let host = connect(&alice, &fleet.ssh_options()).await.unwrap();
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let step = netdump_provision::ssh::RemoteFile::new("/etc/ndp test.conf", 0o640)
        .owner("root", "alice")
        .write_command("write config", data.clone())
        .unwrap();
    let out = host.run(step).await.unwrap();
    assert!(out.success(), "{}", out.stderr_str());
    let h1 = fleet.host("h1");
    let alice_gid: u32 = h1.exec_ok("id -g alice").trim().parse().unwrap();
    assert_eq!(h1.stat("/etc/ndp test.conf"), Some((0, alice_gid, 0o640)));
    assert!(h1.read_file("/etc/ndp test.conf").unwrap() == data);
    assert_eq!(
        h1.exec_ok("ls -a /etc | grep -c '^.provision' || true")
            .trim(),
        "0"
    );
    // A missing directory is a failed step with ssh's and the shell's words, not a transport error.
    let step = netdump_provision::ssh::RemoteFile::new("/nonexistent/dir/f", 0o644)
        .write_command("write", b"x".to_vec())
        .unwrap();
    let out = host.run(step).await.unwrap();
    assert!(!out.success());
    assert!(
        out.stderr_str().contains("/nonexistent/dir"),
        "{}",
        out.stderr_str()
    );
    assert!(!std::path::Path::new("/etc/ndp test.conf").exists());
}

/// A second connection to the same host with the same settings goes through the master the
/// first one left (same TCP connection, so no new handshake); editing known_hosts, or the master
/// dying with the host, makes the next connection a fresh one.
#[tokio::test(flavor = "multi_thread")]
async fn masters_are_reused_until_the_settings_or_the_master_change() {
    if !require_root_tools() {
        return;
    }
    let fleet = Fleet::start(&["h1"]);
    // The client address and port of the TCP connection the command came through.
    let conn = |_: &SshHost| cmd("echo \"$SSH_CONNECTION\"");
    let first = connect_root(&fleet, "h1").await;
    let a = first.run(conn(&first)).await.unwrap().stdout_str();
    drop(first);
    // Another run's sweep of dead masters connects to the socket and hangs up: the master
    // must live on.
    let kept: Vec<_> = std::fs::read_dir(fleet.path().join("c"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("master"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(kept.len(), 1, "one kept master expected: {kept:?}");
    drop(std::os::unix::net::UnixStream::connect(&kept[0]).unwrap());
    let second = connect_root(&fleet, "h1").await;
    let b = second.run(conn(&second)).await.unwrap().stdout_str();
    assert!(!a.trim().is_empty());
    assert_eq!(a, b, "the second connection did not reuse the master");
    drop(second);

    // known_hosts edited (same content, new modification time): a new connection.
    let kh = fleet.known_hosts_path();
    let text = std::fs::read(&kh).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&kh, &text).unwrap();
    let third = connect_root(&fleet, "h1").await;
    let c = third.run(conn(&third)).await.unwrap().stdout_str();
    assert_ne!(b, c, "a master was reused after known_hosts changed");
    drop(third);

    // The host's sshd and sessions die (the kept master with them): connecting starts anew.
    let h1 = fleet.host("h1");
    h1.stop();
    h1.start_sshd();
    let fourth = connect_root(&fleet, "h1").await;
    let d = fourth.run(conn(&fourth)).await.unwrap().stdout_str();
    assert_ne!(c, d, "a dead master was reused");
    drop(fourth);

    // Tearing the hosts down closes the masters that pin their known_hosts (as `lab down`
    // does): the next connection is a new one.
    let control = fleet.path().join("c");
    let other = netdump_provision::ssh::close_kept_masters(Some(&control), "/no/such/known_hosts");
    assert_eq!(
        other.await,
        0,
        "only masters that mention the needle are closed"
    );
    let closed =
        netdump_provision::ssh::close_kept_masters(Some(&control), &kh.display().to_string()).await;
    assert!(closed >= 1, "the kept master was not closed");
    let fifth = connect_root(&fleet, "h1").await;
    let e = fifth.run(conn(&fifth)).await.unwrap().stdout_str();
    assert_ne!(d, e, "a closed master was reused");
}
