//! End-to-end dumps over loopback UDP: the real receiver against the client simulator.

use crate::support::receiver_harness;
use netdump_test_support::netdump_client;

use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use netdump_client::{Image, SHOW_STATE_TEXT, SimClient};
use netdump_proto::wire::machine;
use netdump_receiver::events::EventKind;
use receiver_harness::{Harness, assert_core_matches, crash_dir, tool_exists};

fn image() -> Image {
    Image::new(600, 4096, vec![(0, 1), (40, 100), (560, 600)], 7)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x86_64_dump_is_identical_and_readable_as_netdump() {
    let h = Harness::start(|_| {}).await;
    let img = image();
    let ip = Ipv4Addr::new(127, 0, 0, 11);
    let sim = SimClient::new(ip, h.addr, img.clone());
    let regs = sim.regs();
    let task = sim.task_struct;
    let oops = sim.oops.clone();
    let r = sim.run().await;
    assert!(r.acked && r.rebooted, "{r:?}");
    assert_eq!(r.show_states, 1, "SHOW_STATE sent once");
    let e = h.wait_event("127.0.0.11", EventKind::DumpComplete).await;
    let root = h.root().to_path_buf();
    let dir = crash_dir(&root, "127.0.0.11");
    assert_eq!(e.dir, dir.display().to_string());
    // logs flow after the reboot command too; stop to close everything
    let _keep = h.stop().await;

    let core = dir.join("vmcore");
    assert!(!dir.join("vmcore-incomplete").exists());
    let v = assert_core_matches(&core, &img);
    assert!(v.elf64 && v.little);
    assert_eq!(v.machine, machine::X86_64);
    assert_eq!(v.prstatus_len, 336);
    assert_eq!(v.pr_reg, regs);
    assert_eq!(v.task_struct, task);

    let log = std::fs::read(dir.join("log")).unwrap();
    let want: Vec<u8> = [oops.as_slice(), SHOW_STATE_TEXT.as_bytes()].concat();
    assert_eq!(log, want, "log = oops + show_state, once each");

    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for f in ["log", "vmcore"] {
        let m = std::fs::metadata(dir.join(f)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
    }
    let kinds: Vec<EventKind> = receiver_harness_events(&root, "127.0.0.11");
    assert_eq!(
        kinds,
        vec![
            EventKind::Crash,
            EventKind::DumpStarted,
            EventKind::DumpComplete
        ]
    );

    // Independent ELF readers.
    if tool_exists("readelf") {
        let out = Command::new("readelf")
            .args(["-W", "-l", "-n"])
            .arg(&core)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "readelf failed: {text}");
        assert!(text.contains("CORE (Core file)"), "{text}");
        assert!(text.contains("NOTE"), "{text}");
        let load = text
            .lines()
            .find(|l| l.trim_start().starts_with("LOAD"))
            .expect("LOAD");
        assert!(
            load.trim_end().ends_with("0x1000"),
            "p_align = page size: {load}"
        );
        assert!(text.contains("NT_PRSTATUS"), "{text}");
        assert!(text.contains("NT_TASKSTRUCT"), "{text}");
    } else {
        netdump_test_support::skip("readelf check", "binutils readelf is not installed");
    }
    if tool_exists("eu-readelf") {
        let out = Command::new("eu-readelf")
            .args(["-l", "-n"])
            .arg(&core)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "eu-readelf failed: {text}");
        assert!(text.contains("PRSTATUS"), "{text}");
        assert!(text.contains("TASKSTRUCT"), "{text}");
        assert!(text.contains("LOAD"), "{text}");
    } else {
        netdump_test_support::skip("eu-readelf check", "elfutils is not installed");
    }
}

fn receiver_harness_events(root: &std::path::Path, host: &str) -> Vec<EventKind> {
    let t = std::fs::read_to_string(root.join("events.jsonl")).unwrap();
    netdump_receiver::events::EventLog::parse(&t)
        .into_iter()
        .filter(|e| e.host == host)
        .map(|e| e.event)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i386_dump_is_elf32_and_skip_zero_keeps_content() {
    let h = Harness::start(|c| c.tuning.skip_zero = true).await;
    let img = Image::new(300, 4096, vec![(100, 120)], 9);
    let ip = Ipv4Addr::new(127, 0, 0, 12);
    let mut sim = SimClient::new(ip, h.addr, img.clone());
    sim.machine = machine::I386;
    sim.task_struct = 0xc12345a0;
    sim.page_offset = 0xc0000000;
    let regs = sim.regs();
    let r = sim.run().await;
    assert!(r.rebooted);
    h.wait_event("127.0.0.12", EventKind::DumpComplete).await;
    let root = h.root().to_path_buf();
    let _keep = h.stop().await;
    let dir = crash_dir(&root, "127.0.0.12");
    let core = dir.join("vmcore");
    let v = assert_core_matches(&core, &img);
    assert!(!v.elf64 && v.little);
    assert_eq!(v.machine, machine::I386);
    assert_eq!(v.prstatus_len, 144);
    assert_eq!(v.pr_reg, regs);
    assert_eq!(v.task_struct, 0xc12345a0);
    // zero pages and holes are sparse: fewer blocks than the file length
    let m = std::fs::metadata(&core).unwrap();
    let data_pages = (0..300).filter(|&p| img.is_ram(p) && p % 4 != 1).count() as u64;
    assert!(
        m.blocks() * 512 < m.len(),
        "vmcore not sparse: {} blocks for {} bytes",
        m.blocks(),
        m.len()
    );
    assert!(m.blocks() * 512 >= data_pages * 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_with_documented_args() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let out = dir.path().join("hooks.out");
    let seen = dir.path().join("reboot-saw");
    for name in ["netdump-crash", "netdump-reboot"] {
        let p = scripts.join(name);
        // netdump-reboot also records what it found in the crash directory when it ran.
        let look = if name == "netdump-reboot" {
            format!(
                "ls \"$2\" > {seen}; stat -c 'size %s' \"$2/vmcore\" >> {seen}\n",
                seen = seen.display()
            )
        } else {
            String::new()
        };
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\n{look}echo \"{name} $# $1 $2\" >> {}\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let h = Harness::start_in(dir, |_| {}).await;
    let img = Image::new(50, 4096, vec![], 3);
    let r = SimClient::new(Ipv4Addr::new(127, 0, 0, 13), h.addr, img)
        .run()
        .await;
    assert!(r.rebooted);
    h.wait_event("127.0.0.13", EventKind::DumpComplete).await;
    let root = h.root().to_path_buf();
    let cdir = crash_dir(&root, "127.0.0.13");
    // hooks run asynchronously: wait (bounded) for both lines
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(root.join("hooks.out")).unwrap_or_default();
        if text.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _keep = h.stop().await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("netdump-crash 2 127.0.0.13 {}", cdir.display()),
            format!("netdump-reboot 2 127.0.0.13 {}", cdir.display()),
        ]
    );
    // vmcore closed and renamed before netdump-reboot ran (0.7.14 behaviour): the hook saw
    // `vmcore`, no `vmcore-incomplete`, at its final size.
    let saw = std::fs::read_to_string(&seen).unwrap();
    let names: Vec<&str> = saw.lines().filter(|l| !l.starts_with("size ")).collect();
    assert!(names.contains(&"vmcore"), "{saw}");
    assert!(!names.contains(&"vmcore-incomplete"), "{saw}");
    let final_size = std::fs::metadata(cdir.join("vmcore")).unwrap().len();
    assert!(saw.contains(&format!("size {final_size}\n")), "{saw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_do_not_disturb_the_receiver() {
    use rand::{RngExt, SeedableRng};
    let h = Harness::start(|_| {}).await;
    let h_addr = h.addr;
    // Junk (including plausible netdump headers, STARTs and replies) from one source…
    let junk = tokio::net::UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 16), 0))
        .await
        .unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
    for i in 0..3000u32 {
        let len = rng.random_range(0..1600usize);
        let mut b: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if i % 2 == 0 && b.len() >= 13 {
            // plausible headers: version 3..5, code 0..12, random nr/info/payload
            b[0] = 3 + (i % 3) as u8;
            b[5..9].copy_from_slice(&(i % 13).to_be_bytes());
        }
        let _ = junk.send_to(&b, h.addr).await;
    }
    // …and the receiver still serves real clients, while junk keeps arriving.
    let junk_task = tokio::spawn(async move {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(43);
        for _ in 0..3000u32 {
            let len = rng.random_range(0..40usize);
            let b: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let _ = junk.send_to(&b, h_addr).await;
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
    });
    let img = Image::new(80, 4096, vec![(5, 9)], 5);
    let (a, b) = tokio::join!(
        SimClient::new(Ipv4Addr::new(127, 0, 0, 14), h.addr, img.clone()).run(),
        SimClient::new(Ipv4Addr::new(127, 0, 0, 15), h.addr, img.clone()).run()
    );
    assert!(a.rebooted && b.rebooted);
    junk_task.await.unwrap();
    h.wait_event("127.0.0.14", EventKind::DumpComplete).await;
    h.wait_event("127.0.0.15", EventKind::DumpComplete).await;
    let root = h.root().to_path_buf();
    let _keep = h.stop().await;
    for ip in ["127.0.0.14", "127.0.0.15"] {
        assert_core_matches(&crash_dir(&root, ip).join("vmcore"), &img);
    }
}

/// A completed netdump dump is triaged from the console text it sent as netlog: `triage.json`
/// beside the vmcore and the crash's title and signature in the `dump_complete` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_dump_names_its_crash() {
    let h = Harness::start(|_| {}).await;
    let mut sim = SimClient::new(Ipv4Addr::new(127, 0, 0, 21), h.addr, image());
    sim.oops = b"[  301.120000] BUG: unable to handle kernel NULL pointer dereference at 0000000000000008\n\
[  301.120100] IP: [<ffffffffa0123456>] ext3_find_entry+0x76/0x2c0 [ext3]\n\
[  301.120200] Oops: 0000 [#1] SMP\n\
[  301.120300] Pid: 4242, comm: tar Not tainted 2.6.9-89.ELsmp\n\
[  301.120400] Call Trace:\n\
[  301.120500]  [<ffffffffa0123456>] ext3_find_entry+0x76/0x2c0 [ext3]\n\
[  301.120600]  [<ffffffff80187654>] ext3_lookup+0x24/0xa0\n\
[  301.120700]  [<ffffffff80176543>] real_lookup+0x6a/0xe0\n\
[  301.120800]  [<ffffffff80176f00>] do_lookup+0x5c/0xa0\n\
[  301.120900] Kernel panic - not syncing: Oops\n"
        .to_vec();
    let r = sim.run().await;
    assert!(r.rebooted, "{r:?}");
    let done = h.wait_event("127.0.0.21", EventKind::DumpComplete).await;
    let root = h.root().to_path_buf();
    let _keep = h.stop().await;
    let dir = crash_dir(&root, "127.0.0.21");
    let tj: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("triage.json")).unwrap()).unwrap();
    let title = tj["crashes"][0]["title"].as_str().unwrap_or_default();
    assert!(title.contains("ext3_find_entry"), "{tj}");
    assert_eq!(done.title.as_deref(), Some(title));
    assert_eq!(
        done.signature.as_deref(),
        tj["crashes"][0]["signature"].as_str()
    );
    assert_eq!(
        std::fs::metadata(dir.join("triage.json")).unwrap().mode() & 0o777,
        0o600
    );
}
