//! Secure mode (magic files) and the disk-space path, over loopback UDP.

use crate::support::receiver_harness;
use netdump_test_support::netdump_client;

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netdump_client::{Image, SimClient, Stall};
use netdump_receiver::events::EventKind;
use receiver_harness::{Harness, assert_core_matches, crash_dir};

fn write_magic(root: &Path, ip: &str, text: &str) {
    let d = root.join("magic");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(ip), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_mode_dumps_only_clients_with_matching_magic() {
    let dir = tempfile::tempdir().unwrap();
    // As `service netdump start` writes it: "$MAGIC2$MAGIC1" + newline.
    write_magic(dir.path(), "127.0.4.2", "89abcdef01234567\n");
    write_magic(dir.path(), "127.0.4.3", "0x89abcdef01234567\n");
    let h = Harness::start_in(dir, |c| c.secure = true).await;
    let img = Image::new(64, 4096, vec![], 1);

    let mut good = SimClient::new(Ipv4Addr::new(127, 0, 4, 2), h.addr, img.clone());
    good.magic = 0x89ab_cdef_0123_4567;
    let mut wrong = SimClient::new(Ipv4Addr::new(127, 0, 4, 3), h.addr, img.clone());
    wrong.magic = 0x89ab_cdef_0123_4568;
    wrong.oops.clear();
    wrong.deadline = Duration::from_secs(4);
    let mut missing = SimClient::new(Ipv4Addr::new(127, 0, 4, 4), h.addr, img.clone());
    missing.oops.clear();
    missing.deadline = Duration::from_secs(4);
    let (g, w, m) = tokio::join!(good.run(), wrong.run(), missing.run());
    assert!(g.acked && g.rebooted);
    for r in [&w, &m] {
        assert!(!r.acked, "refused client must be left alone: {r:?}");
        assert!(r.starts_sent >= 3, "it keeps sending START: {r:?}");
        assert_eq!(r.requests, 0);
    }
    h.wait_event("127.0.4.2", EventKind::DumpComplete).await;
    let root = h.root().to_path_buf();
    let events = h.events();
    let _keep = h.stop().await;
    assert_core_matches(&crash_dir(&root, "127.0.4.2").join("vmcore"), &img);
    for ip in ["127.0.4.3", "127.0.4.4"] {
        assert!(
            events.iter().all(|e| e.host != ip),
            "events for {ip}: {events:?}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(ip))
            .collect();
        assert!(
            leftovers.is_empty(),
            "nothing written for {ip}: {leftovers:?}"
        );
    }
}

fn hook(root: &Path, name: &str, body: &str) {
    let d = root.join("scripts");
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_dump_dir_runs_nospace_hook_then_keeps_only_the_log() {
    let mnt = tempfile::tempdir().unwrap();
    if !receiver_harness::mount_tmpfs(mnt.path(), "1m", "space-check test") {
        return;
    }
    let _unmount = receiver_harness::Unmount(mnt.path().to_path_buf());
    let root = mnt.path().to_path_buf();
    hook(
        &root,
        "netdump-nospace",
        &format!("echo \"$1 $2\" > {}/nospace.out", root.display()),
    );
    let h = Harness::start_in(tempfile::tempdir_in(&root).unwrap(), |c| {
        c.dump_dir = root.clone();
        c.space_check = true;
    })
    .await;
    // 4 MiB of memory does not fit in 1 MiB.
    let img = Image::new(1024, 4096, vec![], 2);
    let r = SimClient::new(Ipv4Addr::new(127, 0, 5, 2), h.addr, img)
        .run()
        .await;
    assert!(r.acked && r.rebooted && r.show_states == 1, "{r:?}");
    assert_eq!(r.mem_requests, 0);
    let e = h.wait_event("127.0.5.2", EventKind::DumpFailed).await;
    assert!(e.detail.unwrap().contains("no space"));
    let _keep = h.stop().await;
    let dir = crash_dir(&root, "127.0.5.2");
    assert!(!dir.join("vmcore").exists() && !dir.join("vmcore-incomplete").exists());
    assert!(
        std::fs::read_to_string(dir.join("log"))
            .unwrap()
            .contains("Kernel panic")
    );
    let out = std::fs::read_to_string(root.join("nospace.out")).unwrap();
    assert_eq!(out.trim(), format!("127.0.5.2 {}", dir.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nospace_hook_that_frees_space_lets_the_dump_proceed() {
    let mnt = tempfile::tempdir().unwrap();
    if !receiver_harness::mount_tmpfs(mnt.path(), "4m", "space-check test") {
        return;
    }
    let _unmount = receiver_harness::Unmount(mnt.path().to_path_buf());
    let root = mnt.path().to_path_buf();
    // 3 MiB of old dumps leave ~1 MiB; the hook deletes them.
    std::fs::write(root.join("old-dump"), vec![1u8; 3 << 20]).unwrap();
    hook(
        &root,
        "netdump-nospace",
        &format!("rm -f {}/old-dump", root.display()),
    );
    let h = Harness::start_in(tempfile::tempdir_in(&root).unwrap(), |c| {
        c.dump_dir = root.clone();
        c.space_check = true;
    })
    .await;
    let img = Image::new(512, 4096, vec![], 3); // 2 MiB
    let r = SimClient::new(Ipv4Addr::new(127, 0, 5, 3), h.addr, img.clone())
        .run()
        .await;
    assert!(r.rebooted);
    h.wait_event("127.0.5.3", EventKind::DumpComplete).await;
    let _keep = h.stop().await;
    assert!(!root.join("old-dump").exists());
    assert_core_matches(&crash_dir(&root, "127.0.5.3").join("vmcore"), &img);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netdump_start_hook_runs_when_a_log_stream_starts() {
    let dir = tempfile::tempdir().unwrap();
    hook(
        dir.path(),
        "netdump-start",
        &format!("echo \"$# $1\" >> {}/start.out", dir.path().display()),
    );
    let h = Harness::start_in(dir, |_| {}).await;
    let sock = tokio::net::UdpSocket::bind((Ipv4Addr::new(127, 0, 6, 2), 0))
        .await
        .unwrap();
    let f = netdump_client::frame(4, 0, 2, 0, b"Linux version 2.6.9-89.EL\n");
    sock.send_to(&f, h.addr).await.unwrap();
    let f2 = netdump_client::frame(4, 0, 2, 26, b"[...network console startup...]\n");
    sock.send_to(&f2, h.addr).await.unwrap();
    sock.send_to(&f2, h.addr).await.unwrap(); // duplicate: written once
    let root = h.root().to_path_buf();
    let mut out = String::new();
    for _ in 0..100 {
        out = std::fs::read_to_string(root.join("start.out")).unwrap_or_default();
        let log = std::fs::read_dir(&root)
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with("127.0.6.2-"))
            .and_then(|e| std::fs::read_to_string(e.path().join("log")).ok())
            .unwrap_or_default();
        if !out.is_empty() && log.lines().count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _keep = h.stop().await;
    assert_eq!(out, "1 127.0.6.2\n");
    let log = std::fs::read_to_string(crash_dir(&root, "127.0.6.2").join("log")).unwrap();
    assert_eq!(
        log,
        "Linux version 2.6.9-89.EL\n[...network console startup...]\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_mid_dump_leaves_vmcore_incomplete_with_pages_so_far() {
    let h = Harness::start(|_| {}).await;
    let img = Image::new(400, 4096, vec![], 8);
    let stall = Stall::at(300);
    let mut s = SimClient::new(Ipv4Addr::new(127, 0, 6, 3), h.addr, img.clone());
    s.stall = Some(stall.clone());
    s.deadline = Duration::from_secs(5);
    let sim = tokio::spawn(s.run());
    h.wait_event("127.0.6.3", EventKind::DumpStarted).await;
    // The client stalls when asked for pfn 300. The receiver only asks for it once fewer than
    // `window` pages are in flight, so pages 0..300-window are complete and queued for writing.
    stall.reached.acquire().await.unwrap().forget();
    let window = receiver_harness::test_config("/x".into()).tuning.window as u32;
    let root = h.root().to_path_buf();
    let _keep = h.stop().await; // SIGTERM path: close files, keep vmcore-incomplete
    stall.gate.add_permits(1);
    let _ = sim.await;
    let dir = crash_dir(&root, "127.0.6.3");
    assert!(!dir.join("vmcore").exists());
    let b = std::fs::read(dir.join("vmcore-incomplete")).unwrap();
    let v = receiver_harness::crash_view(&b);
    for pfn in 0..300 - window {
        let at = v.header_size as usize + pfn as usize * 4096;
        assert!(
            b.len() >= at + 4096 && &b[at..at + 4096] == img.page(pfn),
            "pfn {pfn} not flushed at shutdown"
        );
    }
}

/// `--user`: as root, the receiver switches uid/gid after binding. Runs in a child process
/// (this test binary re-executed), since a process cannot get root back.
#[test]
fn drop_privileges_switches_to_the_user_when_root() {
    use nix::unistd::{Uid, User, getgid, getuid};
    const CHILD: &str = "RECEIVER_DROP_PRIVILEGES_CHILD";
    if std::env::var(CHILD).is_ok() {
        let nobody = User::from_name("nobody").unwrap().unwrap();
        netdump_provision::receiver_cmd::drop_privileges("nobody").unwrap();
        assert_eq!(getuid(), nobody.uid);
        assert_eq!(getgid(), nobody.gid);
        // Unprivileged now: a misspelt user is still an error, not silently ignored.
        assert!(netdump_provision::receiver_cmd::drop_privileges("no-such-user-xyz").is_err());
        return;
    }
    if !Uid::effective().is_root() {
        netdump_test_support::skip("privilege drop test", "it needs root");
        return;
    }
    if User::from_name("nobody").ok().flatten().is_none() {
        netdump_test_support::skip("privilege drop test", "there is no user nobody");
        return;
    }
    assert!(
        netdump_provision::receiver_cmd::drop_privileges("no-such-user-xyz")
            .unwrap_err()
            .to_string()
            .contains("no such user")
    );
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "receiver_policy::drop_privileges_switches_to_the_user_when_root",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}

/// `receiver::run` serves in the foreground and returns cleanly on SIGTERM. Runs in a child
/// process (this test binary re-executed) so the signal only reaches the receiver.
#[test]
fn run_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    const CHILD: &str = "RECEIVER_SIGTERM_CHILD";
    if let Ok(dir) = std::env::var(CHILD) {
        let args = netdump_receiver::ReceiverArgs {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            dump_dir: Some(dir.into()),
            insecure: true,
            ..Default::default()
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(netdump_provision::receiver_cmd::run(args))
            .unwrap();
        println!("RUN RETURNED OK");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "receiver_policy::run_stops_cleanly_on_sigterm",
            "--nocapture",
        ])
        .env(CHILD, dir.path())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let ready = line.contains("receiver listening on 127.0.0.1:");
        seen.push(line);
        if ready {
            break;
        }
    }
    assert!(
        seen.last()
            .is_some_and(|l| l.contains("receiver listening")),
        "receiver never reported listening: {seen:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "child exit {status}: {rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM received")),
        "{rest:?}"
    );
    assert!(
        rest.iter().any(|l| l.contains("RUN RETURNED OK")),
        "{rest:?}"
    );
}
