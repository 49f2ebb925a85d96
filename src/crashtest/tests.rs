//! test-crash's phases against fake hosts: a fake [`Remote`] answers each step's script the way
//! a kdump client and its server would (a small simulated world: the crash, what the receiver
//! logs, the dump directory, the reboot), so every phase and its failures run without ssh.

use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::ssh::{CommandOutput, Remote, RemoteCommand, SshError, Target};

const CLIENT_IP: &str = "192.0.2.11";
const NEW_DIR: &str = "192.0.2.11-2026-12-02-09:00:00";

/// What the fake client and server answer, and what they were asked.
struct World {
    kexec_crash_loaded: bool,
    /// lkdtm's crash points; `None`: the kernel has no lkdtm.
    lkdtm: Option<Vec<&'static str>>,
    crashed: bool,
    /// The host answers ssh again after the crash.
    comes_back: bool,
    /// Failed connects after the crash before it answers (while it reboots).
    down_for: u32,
    /// The receiver logs a crash event for the client.
    console_event: bool,
    /// Files of the new dump directory after the crash (none: no directory).
    dump_files: Vec<(&'static str, u64)>,
    header: Vec<u8>,
    dmesg: String,
    console_log: String,
    /// The trigger step exits 3 with this on stderr (a sysctl the kernel lacks).
    trigger_fails: Option<&'static str>,
    /// (host, step, script) of every step run.
    steps: Vec<(String, String, String)>,
    client_connects: u32,
}

impl World {
    fn kdump_ok(dmesg: &str) -> World {
        let mut header = b"makedumpfile\0\0\0\0".to_vec();
        header.resize(64, 0);
        World {
            kexec_crash_loaded: true,
            lkdtm: None,
            crashed: false,
            comes_back: true,
            down_for: 0,
            console_event: true,
            dump_files: vec![
                ("dump.202612020900", 40 << 20),
                ("dmesg.202612020900", 30_000),
                ("log", 4_000),
            ],
            header,
            dmesg: dmesg.to_string(),
            console_log: String::new(),
            trigger_fails: None,
            steps: Vec::new(),
            client_connects: 0,
        }
    }

    fn ran(&self, step: &str) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|(_, s, _)| s == step)
            .map(|(_, _, script)| script.as_str())
            .collect()
    }
}

const SYSRQ_DMESG: &str = "[   90.1] sysrq: Trigger a crash\n[   90.1] Kernel panic - not syncing: sysrq triggered crash\n[   90.2] CPU: 0 PID: 812 Comm: sh Not tainted 6.1.0-50-amd64 #1  Debian 6.1.158-1\n[   90.2] Call Trace:\n[   90.2]  <TASK>\n[   90.2]  dump_stack_lvl+0x44/0x5c\n[   90.2]  panic+0x118/0x2ed\n[   90.2]  sysrq_handle_crash+0x16/0x20\n[   90.2]  __handle_sysrq.cold+0x43/0x11b\n[   90.2]  write_sysrq_trigger+0x24/0x40\n";

const HUNG_DMESG: &str = "[  200.1] INFO: task sh:812 blocked for more than 10 seconds.\n[  200.1]       Not tainted 6.1.0-50-amd64 #1 Debian 6.1.158-1\n[  200.1] task:sh              state:D stack:0     pid:812   ppid:1      flags:0x00004002\n[  200.1] Call Trace:\n[  200.1]  <TASK>\n[  200.1]  __schedule+0x34d/0x9e0\n[  200.1]  schedule+0x5a/0xd0\n[  200.1]  percpu_rwsem_wait+0x113/0x130\n[  200.1]  __percpu_down_read+0x6d/0xb0\n[  200.1]  mnt_want_write+0x8b/0xa0\n[  200.1]  path_openat+0x9a2/0x1000\n[  200.2] Kernel panic - not syncing: hung_task: blocked tasks\n";

fn out(stdout: impl Into<String>) -> Result<CommandOutput, SshError> {
    Ok(CommandOutput {
        status: Some(0),
        stdout: stdout.into().into_bytes(),
        stderr: Vec::new(),
    })
}

struct FakeHost {
    name: String,
    /// Which boot of the client this session belongs to (1: before the crash).
    boot: u32,
    world: Arc<Mutex<World>>,
}

#[async_trait]
impl Remote for FakeHost {
    fn host(&self) -> &str {
        &self.name
    }

    async fn run(&self, cmd: RemoteCommand) -> Result<CommandOutput, SshError> {
        let mut w = self.world.lock().unwrap();
        w.steps
            .push((self.name.clone(), cmd.step.clone(), cmd.script.clone()));
        if self.name == "c1" {
            self.client(&mut w, &cmd)
        } else {
            Self::server(&w, &cmd)
        }
    }
}

impl FakeHost {
    fn client(&self, w: &mut World, cmd: &RemoteCommand) -> Result<CommandOutput, SshError> {
        if w.crashed && self.boot == 1 {
            return Err(SshError::Disconnected {
                host: self.name.clone(),
                step: cmd.step.clone(),
                reason: "the kernel crashed".into(),
            });
        }
        match cmd.step.as_str() {
            "facts" => {
                // The probe asks for the route to the client's server.
                assert!(cmd.script.contains("ip -o route get '192.0.2.10'"));
                out(format!(
                    "os_id=debian\nos_version=12\nkernel=6.1.0-50-amd64\npkg=apt\ninit=systemd\n\
                     boot_id=boot-{}\nkexec_crash_size=268435456\nkexec_crash_loaded={}\n\
                     route=192.0.2.10 dev ens3 src {CLIENT_IP} uid 0\n\
                     neigh=192.0.2.10 lladdr 52:54:00:00:00:10 REACHABLE\nprobe_end=1\n",
                    self.boot, w.kexec_crash_loaded as u8
                ))
            }
            "lkdtm" => {
                assert!(cmd.script.contains("modprobe lkdtm"));
                match &w.lkdtm {
                    Some(points) => {
                        let mut s = String::from("debugfs=1\nlkdtm=1\n");
                        for p in points {
                            s.push_str(&format!("point={p}\n"));
                        }
                        out(s)
                    }
                    None => out("debugfs=1\nlkdtm=0\n"),
                }
            }
            "trigger" if w.trigger_fails.is_some() => Ok(CommandOutput {
                status: Some(3),
                stdout: Vec::new(),
                stderr: w.trigger_fails.unwrap_or_default().as_bytes().to_vec(),
            }),
            "trigger" => {
                // What the script reports: the sysctls it sets, then `triggered`.
                let mut s = String::new();
                for l in cmd.script.lines() {
                    if let Some(rest) = l.strip_prefix("echo \"sysctl ") {
                        s.push_str(&format!("sysctl {}\n", rest.trim_end_matches('"')));
                    }
                }
                s.push_str("triggered\n");
                w.crashed = true;
                out(s)
            }
            "boot id" => out(format!("boot-{}\n", self.boot)),
            other => panic!("the client was not expected to run step {other:?}"),
        }
    }

    fn server(w: &World, cmd: &RemoteCommand) -> Result<CommandOutput, SshError> {
        let new_dir = w.crashed && !w.dump_files.is_empty();
        match cmd.step.as_str() {
            "server space" => out("10485760\n"),
            "receiver" => out("up\n"),
            "list dumps" => {
                let mut s = String::from("192.0.2.11-2026-11-30-10:00:00\nconsole\n");
                if new_dir {
                    s.push_str(NEW_DIR);
                    s.push('\n');
                }
                out(s)
            }
            "events offset" => out("100\n"),
            "events" => {
                assert!(
                    cmd.script
                        .contains("tail -c +101 '/var/crash/events.jsonl'")
                );
                let mut s = String::from(
                    "{\"event\":\"crash\",\"host\":\"192.0.2.99\",\"dir\":\"/var/crash/x\",\"time\":\"t0\"}\n",
                );
                if w.crashed && w.console_event {
                    s.push_str(&format!(
                        "{{\"event\":\"crash\",\"host\":\"{CLIENT_IP}\",\"dir\":\"/var/crash/{NEW_DIR}\",\"time\":\"2026-12-02T09:00:00Z\"}}\n"
                    ));
                }
                out(s)
            }
            "list files" => {
                assert!(cmd.script.contains(&format!("cd '/var/crash/{NEW_DIR}'")));
                out(w
                    .dump_files
                    .iter()
                    .map(|(n, s)| format!("{s} {n}\n"))
                    .collect::<String>())
            }
            "dump header" => {
                assert!(cmd.script.contains("/dump."), "{}", cmd.script);
                out(w
                    .header
                    .iter()
                    .map(|b| format!(" {b:02x}"))
                    .collect::<String>()
                    + "\n")
            }
            "dmesg" => {
                assert!(cmd.script.contains("/dmesg.202612020900'"));
                out(w.dmesg.clone())
            }
            "console log" => {
                assert!(
                    cmd.script
                        .contains(&format!("/var/crash/console/{CLIENT_IP}.log"))
                );
                out(w.console_log.clone())
            }
            other => panic!("the server was not expected to run step {other:?}"),
        }
    }
}

struct FakeConnector {
    world: Arc<Mutex<World>>,
}

#[async_trait]
impl Connector for FakeConnector {
    async fn connect(&self, target: &Target) -> Result<Arc<dyn Remote>, SshError> {
        let mut w = self.world.lock().unwrap();
        let mut boot = 1;
        if target.name == "c1" {
            w.client_connects += 1;
            if w.crashed {
                if !w.comes_back || w.down_for > 0 {
                    w.down_for = w.down_for.saturating_sub(1);
                    return Err(SshError::Connect {
                        host: target.name.clone(),
                        address: target.address.clone(),
                        reason: "Connection refused".into(),
                        hint: "Is sshd running?".into(),
                    });
                }
                boot = 2;
            }
        }
        Ok(Arc::new(FakeHost {
            name: target.name.clone(),
            boot,
            world: self.world.clone(),
        }))
    }
}

const INVENTORY: &str = "all:\n  children:\n    netdump_servers:\n      hosts:\n        srv:\n          ansible_host: 192.0.2.10\n    netdump_clients:\n      hosts:\n        c1:\n          ansible_host: 192.0.2.11\n";

/// A host run of client `c1` against server `srv` through the fake world. Waits try a few
/// times, milliseconds apart (the deadline is only reached when the world never answers).
fn host_run(world: &Arc<Mutex<World>>, kind: CrashKind) -> HostRun {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.yaml");
    std::fs::write(&path, INVENTORY).unwrap();
    let (_, fleet) = crate::fleet::load_fleet(&path, PasswordInput::default()).unwrap();
    let mut timeouts = Timeouts::new(
        Duration::from_millis(30),
        Duration::from_millis(30),
        Duration::from_millis(30),
    );
    timeouts.console_every = Duration::from_millis(1);
    timeouts.dump_every = Duration::from_millis(1);
    timeouts.reboot_every = Duration::from_millis(1);
    HostRun {
        client: fleet.clients["c1"].clone(),
        server: fleet.servers["srv"].clone(),
        client_target: fleet.targets["c1"].clone(),
        server_target: fleet.targets["srv"].clone(),
        connector: Arc::new(FakeConnector {
            world: world.clone(),
        }),
        kind,
        timeouts,
    }
}

async fn run_world(world: World, kind: CrashKind) -> (HostResult, Arc<Mutex<World>>) {
    let world = Arc::new(Mutex::new(world));
    let r = test_host(host_run(&world, kind)).await;
    (r, world)
}

fn phase_names(r: &HostResult) -> Vec<(&str, bool)> {
    r.phases.iter().map(|p| (p.name.as_str(), p.ok)).collect()
}

#[tokio::test]
async fn sysrq_crash_passes_every_phase() {
    let (r, world) = run_world(World::kdump_ok(SYSRQ_DMESG), CrashKind::Sysrq).await;
    assert!(r.passed, "{r:#?}");
    assert_eq!(
        phase_names(&r),
        [
            ("preflight", true),
            ("trigger", true),
            ("console", true),
            ("dump", true),
            ("verify", true),
            ("reboot", true)
        ]
    );
    assert_eq!(
        r.dump_dir.as_deref(),
        Some(&*format!("/var/crash/{NEW_DIR}"))
    );
    assert_eq!(r.dump_format, Some(DumpFormat::MakedumpfileFlat));
    assert_eq!(r.crash_title.as_deref(), Some("sysrq: Trigger a crash"));
    assert_eq!(r.crash_kind.as_deref(), Some("SYSRQ"));
    assert_eq!(r.crash_signature.as_ref().map(String::len), Some(32));
    let w = world.lock().unwrap();
    assert!(w.ran("lkdtm").is_empty(), "sysrq needs no lkdtm");
    let trigger = w.ran("trigger");
    assert_eq!(trigger.len(), 1);
    assert!(trigger[0].contains("echo c > /proc/sysrq-trigger"));
    assert!(
        r.phases[0].detail.contains("client ip 192.0.2.11"),
        "{}",
        r.phases[0].detail
    );
    assert!(
        r.phases[4]
            .detail
            .contains("console crash record is in the same directory")
    );
    assert!(r.phases[5].detail.contains("boot-2"));
}

#[tokio::test]
async fn host_that_never_comes_back_fails_the_reboot_phase() {
    let mut world = World::kdump_ok(SYSRQ_DMESG);
    world.comes_back = false;
    let (r, world) = run_world(world, CrashKind::Sysrq).await;
    assert!(!r.passed);
    assert_eq!(
        r.phases.last().map(|p| (p.name.as_str(), p.ok)),
        Some(("reboot", false))
    );
    let e = r.error.as_deref().unwrap();
    assert!(
        e.starts_with("c1: reboot: did not come back with a new boot id within 0s"),
        "{e}"
    );
    assert!(e.contains("--reboot-timeout"), "{e}");
    // The dump arrived and was verified: its crash is still reported.
    assert_eq!(r.crash_title.as_deref(), Some("sysrq: Trigger a crash"));
    assert!(world.lock().unwrap().client_connects > 2, "it kept trying");
    assert!(
        junit_message(&r)
            .unwrap()
            .contains("(crash: sysrq: Trigger a crash, signature ")
    );
}

#[tokio::test]
async fn host_back_after_a_few_refused_connects_passes() {
    let mut world = World::kdump_ok(SYSRQ_DMESG);
    world.down_for = 3;
    let world = Arc::new(Mutex::new(world));
    let mut run = host_run(&world, CrashKind::Sysrq);
    // Ends as soon as the host answers; the deadline only bounds a broken test.
    run.timeouts.reboot = Duration::from_secs(600);
    let r = test_host(run).await;
    assert!(r.passed, "{r:#?}");
    // Preflight's connect, three refused, one that answers.
    assert_eq!(world.lock().unwrap().client_connects, 5);
}

#[tokio::test]
async fn incomplete_dump_is_named() {
    let mut world = World::kdump_ok(SYSRQ_DMESG);
    world.dump_files = vec![("dump-incomplete", 20 << 20), ("log", 4_000)];
    let (r, world) = run_world(world, CrashKind::Sysrq).await;
    assert!(!r.passed);
    assert_eq!(
        r.phases.last().map(|p| (p.name.as_str(), p.ok)),
        Some(("dump", false))
    );
    let e = r.error.as_deref().unwrap();
    assert!(
        e.starts_with(&format!(
            "c1: dump: srv:/var/crash/{NEW_DIR} is still incomplete"
        )),
        "{e}"
    );
    assert!(e.contains("(dump-incomplete)"), "{e}");
    assert!(world.lock().unwrap().ran("dump header").is_empty());
}

#[tokio::test]
async fn no_dump_directory_at_all() {
    let mut world = World::kdump_ok(SYSRQ_DMESG);
    world.dump_files.clear();
    let (r, _) = run_world(world, CrashKind::Sysrq).await;
    let e = r.error.as_deref().unwrap();
    assert!(
        e.starts_with("c1: dump: no complete dump for 192.0.2.11 appeared in srv:/var/crash"),
        "{e}"
    );
}

#[tokio::test]
async fn crash_never_seen_on_the_console() {
    let mut world = World::kdump_ok(SYSRQ_DMESG);
    world.console_event = false;
    let (r, world) = run_world(world, CrashKind::Sysrq).await;
    assert!(!r.passed);
    assert_eq!(
        phase_names(&r),
        [("preflight", true), ("trigger", true), ("console", false)]
    );
    let e = r.error.as_deref().unwrap();
    assert!(
        e.starts_with("c1: console: the receiver on srv logged no crash from 192.0.2.11"),
        "{e}"
    );
    assert!(e.contains("check netconsole"), "{e}");
    // Another host's crash in the events does not count.
    assert!(
        world.lock().unwrap().ran("events").len() > 1,
        "it kept looking"
    );
}

#[tokio::test]
async fn unexpected_crash_title_goes_into_the_junit_message() {
    let mut world = World::kdump_ok(HUNG_DMESG);
    world.lkdtm = Some(vec!["PANIC", "BUG", "WARNING", "EXCEPTION"]);
    let (r, world) = run_world(world, CrashKind::Warning).await;
    assert!(!r.passed);
    assert_eq!(
        r.phases.last().map(|p| (p.name.as_str(), p.ok)),
        Some(("verify", false))
    );
    let e = r.error.as_deref().unwrap();
    assert!(e.starts_with("c1: verify: --kind warning expects a crash titled `WARNING in …` (WARNING), but /var/crash/"), "{e}");
    assert!(
        e.contains("shows `INFO: task hung in percpu_rwsem_wait` (HANG)"),
        "{e}"
    );
    assert_eq!(
        r.crash_title.as_deref(),
        Some("INFO: task hung in percpu_rwsem_wait")
    );
    assert_eq!(r.crash_kind.as_deref(), Some("HANG"));
    let sig = r.crash_signature.clone().unwrap();
    let msg = junit_message(&r).unwrap();
    assert!(
        msg.ends_with(&format!(
            "(crash: INFO: task hung in percpu_rwsem_wait, signature {sig})"
        )),
        "{msg}"
    );
    // The warning was provoked through lkdtm with panic_on_warn set for the run.
    let w = world.lock().unwrap();
    let trigger = w.ran("trigger")[0];
    assert!(trigger.contains("echo WARNING > /sys/kernel/debug/provoke-crash/DIRECT"));
    assert!(
        r.phases[1]
            .detail
            .contains("kernel.panic_on_warn=1 (live only, gone after the reboot)"),
        "{}",
        r.phases[1].detail
    );
}

#[tokio::test]
async fn kernel_without_lkdtm_stops_before_crashing() {
    let (r, world) = run_world(World::kdump_ok(SYSRQ_DMESG), CrashKind::Panic).await;
    assert!(!r.passed);
    assert_eq!(phase_names(&r), [("preflight", false)]);
    let e = r.error.as_deref().unwrap();
    assert_eq!(
        e,
        "c1: preflight: --kind panic needs lkdtm, and kernel 6.1.0-50-amd64 has none (no module lkdtm (`modinfo lkdtm` finds nothing): CONFIG_LKDTM is not set); use a kernel built with CONFIG_LKDTM (=m or =y), or one of --kind sysrq|hung-task|oom"
    );
    assert!(
        world.lock().unwrap().ran("trigger").is_empty(),
        "nothing crashed"
    );
}

#[tokio::test]
async fn lkdtm_without_the_point() {
    let mut world = World::kdump_ok(SYSRQ_DMESG);
    world.lkdtm = Some(vec!["PANIC", "BUG"]);
    let (r, _) = run_world(world, CrashKind::SoftLockup).await;
    let e = r.error.as_deref().unwrap();
    assert!(
        e.contains(
            "has no crash point SOFTLOCKUP (needed by --kind soft-lockup); it offers: PANIC BUG"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn hung_task_without_lkdtm_freezes_a_filesystem() {
    let (r, world) = run_world(World::kdump_ok(HUNG_DMESG), CrashKind::HungTask).await;
    assert!(r.passed, "{r:#?}");
    assert_eq!(r.kind, CrashKind::HungTask);
    assert_eq!(r.crash_kind.as_deref(), Some("HANG"));
    let w = world.lock().unwrap();
    assert_eq!(w.ran("lkdtm").len(), 1, "looked for lkdtm first");
    assert!(w.ran("trigger")[0].contains("fsfreeze -f"));
    assert!(
        r.phases[0]
            .detail
            .contains("writer blocked on a frozen filesystem")
    );
    assert!(
        r.phases[1]
            .detail
            .contains("kernel.hung_task_panic=1, kernel.hung_task_timeout_secs=10"),
        "{}",
        r.phases[1].detail
    );
}

#[tokio::test]
async fn failed_trigger_names_host_step_and_reason() {
    let mut world = World::kdump_ok(SYSRQ_DMESG);
    world.lkdtm = Some(vec!["WARNING"]);
    world.trigger_fails = Some("no sysctl kernel.panic_on_warn: this kernel lacks it\n");
    let (r, world) = run_world(world, CrashKind::Warning).await;
    assert_eq!(phase_names(&r), [("preflight", true), ("trigger", false)]);
    let e = r.error.as_deref().unwrap();
    assert!(
        e.starts_with("c1: step 'trigger' failed (exit 3): no sysctl kernel.panic_on_warn: this kernel lacks it; fix what it says on c1"),
        "{e}"
    );
    assert!(!world.lock().unwrap().crashed);
}

#[tokio::test]
async fn unarmed_kdump_client_is_refused() {
    let mut world = World::kdump_ok(SYSRQ_DMESG);
    world.kexec_crash_loaded = false;
    let (r, world) = run_world(world, CrashKind::Sysrq).await;
    let e = r.error.as_deref().unwrap();
    assert!(e.starts_with("c1: preflight: kdump is not armed"), "{e}");
    assert!(e.contains("crashkernel reserved: 268435456 bytes"), "{e}");
    assert!(world.lock().unwrap().ran("trigger").is_empty());
}

#[tokio::test]
async fn a_log_without_the_crash_fails_verify() {
    let (r, _) = run_world(World::kdump_ok("[ 1.0] all quiet\n"), CrashKind::Sysrq).await;
    let e = r.error.as_deref().unwrap();
    assert_eq!(
        e,
        format!(
            "c1: verify: /var/crash/{NEW_DIR}/dmesg.202612020900 does not contain the sysrq crash line; the dump may be of another crash"
        )
    );
}

#[tokio::test]
async fn json_result_carries_kind_and_crash() {
    let (r, _) = run_world(World::kdump_ok(HUNG_DMESG), CrashKind::HungTask).await;
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["kind"], "hung-task");
    assert_eq!(v["crash_kind"], "HANG");
    assert_eq!(v["crash_title"], "INFO: task hung in percpu_rwsem_wait");
}

#[test]
fn junit_message_carries_the_crash() {
    let mut r = HostResult {
        host: "c1".into(),
        passed: false,
        kind: CrashKind::Sysrq,
        phases: vec![],
        dump_dir: None,
        dump_format: None,
        error: Some("c1: did not come back".into()),
        crash_title: Some("WARNING in foo".into()),
        crash_kind: Some("WARNING".into()),
        crash_signature: Some("ab12".into()),
    };
    assert_eq!(
        junit_message(&r).unwrap(),
        "c1: did not come back (crash: WARNING in foo, signature ab12)"
    );
    r.crash_title = None;
    assert_eq!(junit_message(&r).unwrap(), "c1: did not come back");
    r.error = None;
    assert_eq!(junit_message(&r), None);
}
