//! The run loop with fake hosts: every phase's outcome reaches the recap, a failure in one phase
//! keeps the host out of the next, and a client follows its server's fate. A fake host answers
//! the fact probe with canned facts, runs batched observations (read-only by the resource
//! contract) with the local `sh`, and answers every converge step with success, unless told
//! otherwise; nothing is changed on this machine. So that observations do not depend on the
//! machine, hosts get one file each under a path that does not exist (the role set below) and
//! the clients' keys live there too: every resource is absent and plans a change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::report::{Event, HostOutcome, Recap, Reporter};
use crate::settings::PasswordInput;
use crate::ssh::CommandOutput;

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Fine,
    /// ssh cannot connect.
    Down,
    /// The fact probe answers garbage every time.
    Garbage,
    /// Steps whose name contains this fail with exit 1.
    FailStep(&'static str),
    /// The task panics in its fact probe.
    Panic,
    /// Nothing reserved for the capture kernel (kexec_crash_size 0).
    NoReserve,
}

struct FakeHost {
    name: String,
    behaviour: Behaviour,
    facts: String,
    steps: Steps,
    memo: Option<Memo>,
}

/// What fake connections remember between runs, by host (a kept ssh master's memo).
type Memo = Arc<Mutex<HashMap<String, String>>>;

/// Every step run: (host, step name, its stdin as text, whether the host bounds it too).
type Steps = Arc<Mutex<Vec<(String, String, String, bool)>>>;

/// Runs a read-only observation script with the local `sh`.
async fn observe_locally(script: &str) -> String {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .await
        .expect("sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[async_trait]
impl Remote for FakeHost {
    fn host(&self) -> &str {
        &self.name
    }

    async fn run(&self, cmd: RemoteCommand) -> Result<CommandOutput, SshError> {
        self.steps.lock().unwrap().push((
            self.name.clone(),
            cmd.step.clone(),
            String::from_utf8_lossy(cmd.stdin.as_deref().unwrap_or_default()).into_owned(),
            cmd.remote_bound,
        ));
        let ok = |stdout: String| CommandOutput {
            status: Some(0),
            stdout: stdout.into_bytes(),
            stderr: Vec::new(),
        };
        if let Behaviour::FailStep(s) = self.behaviour
            && cmd.step.contains(s)
        {
            return Ok(CommandOutput {
                status: Some(1),
                stdout: Vec::new(),
                stderr: b"boom: disk full\n".to_vec(),
            });
        }
        match cmd.step.as_str() {
            "facts" => {
                if self.behaviour == Behaviour::Panic {
                    panic!("fake host {} panics", self.name);
                }
                if self.behaviour == Behaviour::Garbage {
                    return Ok(ok("%%% not facts %%%\n".into()));
                }
                // Canned facts; the observations appended to the probe run for real.
                let extra = match cmd.script.split_once("echo probe_end=1\n") {
                    Some((_, extra)) if !extra.trim().is_empty() => observe_locally(extra).await,
                    _ => String::new(),
                };
                Ok(ok(format!("{}{extra}", self.facts)))
            }
            "observe" => Ok(ok(observe_locally(&cmd.script).await)),
            // A new key pair prints its public key; an observation riding along runs for real.
            s if s.starts_with("converge keypair:") => {
                let extra = match cmd.script.split_once(") || exit $?\n") {
                    Some((_, extra)) => observe_locally(extra).await,
                    None => String::new(),
                };
                Ok(ok(format!(
                    "pub=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyFor{} root@{}\n{extra}",
                    self.name, self.name
                )))
            }
            _ => Ok(ok(String::new())),
        }
    }

    fn recall(&self, key: MemoKey) -> Option<String> {
        assert_eq!(key, MemoKey::Facts);
        self.memo.as_ref()?.lock().unwrap().get(&self.name).cloned()
    }

    fn remember(&self, _: MemoKey, value: &str) {
        if let Some(m) = &self.memo {
            m.lock()
                .unwrap()
                .insert(self.name.clone(), value.to_string());
        }
    }
}

struct FakeConnector {
    hosts: HashMap<String, Behaviour>,
    steps: Steps,
    memo: Option<Memo>,
}

#[async_trait]
impl Connector for FakeConnector {
    async fn connect(&self, target: &Target) -> Result<Arc<dyn Remote>, SshError> {
        let behaviour = self
            .hosts
            .get(&target.name)
            .copied()
            .unwrap_or(Behaviour::Fine);
        if behaviour == Behaviour::Down {
            return Err(SshError::Connect {
                host: target.name.clone(),
                address: target.address.clone(),
                reason: "Connection refused".into(),
                hint: "is sshd running?".into(),
            });
        }
        let reserved = !target.name.starts_with("srv") && behaviour != Behaviour::NoReserve;
        Ok(Arc::new(FakeHost {
            name: target.name.clone(),
            behaviour,
            facts: facts(&target.name, reserved),
            steps: self.steps.clone(),
            memo: self.memo.clone(),
        }))
    }
}

fn facts(host: &str, reserved: bool) -> String {
    let reserved = if reserved { "268435456" } else { "0" };
    format!(
        "os_id=debian\nos_version=12\nos_like=\nkernel=6.1.0-28-amd64\narch=x86_64\nhostname={host}\n\
         pkg=apt\ninit=systemd\nsysrq=438\nboot_id=0f6e-{host}\nsysctl_d=yes\n\
         hostkey=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOf{host}\n\
         ssh_version=OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024\nglibc=glibc 2.36\n\
         ssh_service=ssh\nsshd_include=yes\nkexec_crash_size={reserved}\nkexec_crash_loaded=1\n\
         route=198.18.0.1 dev ens3 src 198.18.0.11\n\
         neigh=198.18.0.1 lladdr 52:54:00:12:34:56 REACHABLE\nprobe_end=1\n"
    )
}

#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

impl Reporter for Collect {
    fn event(&self, e: &Event) {
        self.0.lock().unwrap().push(e.clone());
    }
    fn finish(&self, _: &Recap) {}
}

const NOWHERE: &str = "/nonexistent/netdump-provision-apply-test";

/// Servers get a file listing the client keys they were given; clients a file naming their
/// server's host keys, whose name depends on a fact (so planning depends on facts, as the
/// product's roles do).
struct TestRoles;

impl RoleSet for TestRoles {
    fn server(&self, i: server::ServerInputs<'_>) -> Result<roles::Resources, roles::RoleError> {
        let keys: String = i
            .client_keys
            .iter()
            .map(|k| format!("{} {}\n", k.client, k.key))
            .collect();
        Ok(vec![file(&i.settings.host, "authorized_keys", keys)])
    }

    fn client(
        &self,
        settings: &ClientSettings,
        _: ClientFlavor,
        facts: &Facts,
        server_keys: &[String],
        _: &Templates,
    ) -> Result<roles::Resources, roles::RoleError> {
        Ok(vec![file(
            &settings.host,
            &format!("known_hosts-{}", facts.os_version),
            server_keys.join("\n"),
        )])
    }
}

fn file(host: &str, name: &str, content: String) -> Box<dyn crate::resources::Resource> {
    Box::new(crate::resources::File {
        path: format!("{NOWHERE}/{host}/{name}"),
        content: content.into_bytes(),
        owner: "root".into(),
        group: "root".into(),
        mode: 0o600,
        secret: false,
    })
}

const INVENTORY: &str = "all:
  vars:
    ansible_user: root
    netdump_kdump_ssh_key: /nonexistent/netdump-provision-apply-test/client_key
  children:
    netdump_servers:
      hosts:
        srv1: {ansible_host: 198.18.0.1, netdump_receiver: none}
        srv2: {ansible_host: 198.18.0.2, netdump_receiver: none}
    netdump_clients:
      hosts:
        c1: {ansible_host: 198.18.0.11, netdump_server: srv1, netdump_client_flavor: kdump}
        c2: {ansible_host: 198.18.0.12, netdump_server: srv1, netdump_client_flavor: kdump}
        c3: {ansible_host: 198.18.0.13, netdump_server: srv2, netdump_client_flavor: kdump}
";

struct Outcome {
    hosts: HashMap<String, HostOutcome>,
    events: Vec<Event>,
    /// (host, step) in the order they ran.
    steps: Vec<(String, String)>,
    /// (host, stdin) of every converge step that had one (file contents).
    written: Vec<(String, String)>,
    /// (host, step) of the steps run without the remote `timeout`.
    read_only: Vec<(String, String)>,
}

fn run(behaviours: &[(&str, Behaviour)], check: bool, reboot: Option<Duration>) -> Outcome {
    run_remembering(behaviours, check, reboot, None)
}

fn run_remembering(
    behaviours: &[(&str, Behaviour)],
    check: bool,
    reboot: Option<Duration>,
    memo: Option<Memo>,
) -> Outcome {
    let t = netdump_test_support::inventory::write_inventory(INVENTORY, &[]);
    let inv = netdump_inventory::Inventory::load(&t.path).unwrap();
    let fleet =
        crate::settings::resolve(&inv, PasswordInput::default()).unwrap_or_else(|e| panic!("{e}"));
    let steps = Arc::new(Mutex::new(Vec::new()));
    let connector = Arc::new(FakeConnector {
        hosts: behaviours
            .iter()
            .map(|(h, b)| (h.to_string(), *b))
            .collect(),
        steps: steps.clone(),
        memo,
    });
    let reporter = Arc::new(Collect::default());
    let opts = ApplyOptions {
        check,
        diff: false,
        forks: 4,
        templates: Arc::new(Templates::new(None).unwrap()),
        // Any readable ELF will do: nothing is uploaded.
        receiver_binary: Some(Arc::new(
            crate::receiver_binary::ReceiverBinary::load(&std::env::current_exe().unwrap())
                .unwrap(),
        )),
        step_timeout: Duration::from_secs(5),
        reboot,
    };
    let selected: Vec<String> = fleet.targets.keys().cloned().collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run_with(
        &fleet,
        &selected,
        &opts,
        connector,
        reporter.clone(),
        Arc::new(TestRoles),
    ));
    let events = reporter.0.lock().unwrap().clone();
    let hosts = events
        .iter()
        .filter_map(|e| match e {
            Event::HostDone { host, outcome } => Some((host.clone(), outcome.clone())),
            _ => None,
        })
        .collect();
    let all = steps.lock().unwrap().clone();
    Outcome {
        hosts,
        events,
        steps: all
            .iter()
            .map(|(h, s, _, _)| (h.clone(), s.clone()))
            .collect(),
        read_only: all
            .iter()
            .filter(|(_, _, _, bound)| !bound)
            .map(|(h, s, _, _)| (h.clone(), s.clone()))
            .collect(),
        written: all
            .into_iter()
            .filter(|(_, s, stdin, _)| s.starts_with("converge") && !stdin.is_empty())
            .map(|(h, _, stdin, _)| (h, stdin))
            .collect(),
    }
}

fn done(o: &Outcome) -> usize {
    o.events
        .iter()
        .filter(|e| matches!(e, Event::HostDone { .. }))
        .count()
}

#[test]
fn a_healthy_fleet_converges_every_host_once() {
    let o = run(&[], false, None);
    for h in ["srv1", "srv2", "c1", "c2", "c3"] {
        assert_eq!(
            o.hosts.get(h),
            Some(&HostOutcome::Changed),
            "{h}: {:?}",
            o.hosts
        );
    }
    assert_eq!(done(&o), 5, "one verdict per host");
    // Only reading steps go without the host's own bound; whatever writes keeps it. (The test
    // roles manage files only, so every reading step here is one.)
    let mut reading: Vec<(String, String)> = o
        .steps
        .iter()
        .filter(|(_, s)| s == "facts" || s == "observe")
        .cloned()
        .collect();
    reading.sort();
    let mut read_only = o.read_only.clone();
    read_only.sort();
    assert_eq!(read_only, reading);
    // Servers converge before their clients, and with their clients' new keys.
    let pos = |h: &str, step: &str| {
        o.steps
            .iter()
            .position(|(x, s)| x == h && s.starts_with(step))
            .unwrap_or_else(|| panic!("{h} ran no {step}: {:?}", o.steps))
    };
    assert!(pos("c1", "converge keypair:") < pos("srv1", "observe"));
    assert!(pos("srv1", "converge") < pos("c1", "converge file:"));
    // A client's first observation rode along with its new key pair.
    for c in ["c1", "c2", "c3"] {
        assert!(
            !o.steps.iter().any(|(h, s)| h == c && s == "observe"),
            "{c} observed in a round trip of its own: {:?}",
            o.steps
        );
    }
    // srv1's file holds exactly its clients' new keys (c1, c2), not c3's.
    let content = o
        .written
        .iter()
        .find(|(h, _)| h == "srv1")
        .map(|(_, c)| c.clone())
        .expect("srv1's file written");
    assert!(
        content.contains("c1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForc1"),
        "{content}"
    );
    assert!(
        content.contains("c2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForc2"),
        "{content}"
    );
    assert!(!content.contains("c3"), "{content}");
    // A client pins its own server's host keys.
    let c3 = o
        .written
        .iter()
        .find(|(h, _)| h == "c3")
        .map(|(_, c)| c.as_str());
    assert_eq!(
        c3,
        Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfsrv2")
    );
}

#[test]
fn check_mode_runs_no_converge_step() {
    let o = run(&[], true, None);
    assert!(
        o.steps.iter().all(|(_, s)| !s.starts_with("converge")),
        "{:?}",
        o.steps
    );
    assert_eq!(o.hosts.get("c1"), Some(&HostOutcome::Changed));
}

#[test]
fn an_unreachable_server_skips_its_clients_and_nobody_else() {
    let o = run(&[("srv1", Behaviour::Down)], false, None);
    assert!(
        matches!(o.hosts.get("srv1"), Some(HostOutcome::Unreachable(m)) if m.contains("cannot connect"))
    );
    for c in ["c1", "c2"] {
        assert_eq!(
            o.hosts.get(c),
            Some(&HostOutcome::Skipped(
                "its server srv1 is unreachable".into()
            ))
        );
        assert!(
            !o.steps.iter().any(|(h, s)| h == c && s == "observe"),
            "{c} must not converge without its server"
        );
    }
    assert_eq!(o.hosts.get("c3"), Some(&HostOutcome::Changed));
    assert_eq!(done(&o), 5);
}

#[test]
fn a_failed_server_converge_names_the_resource_and_skips_its_clients() {
    let o = run(&[("srv2", Behaviour::FailStep("converge"))], false, None);
    let Some(HostOutcome::Failed(m)) = o.hosts.get("srv2") else {
        panic!("{:?}", o.hosts);
    };
    assert!(
        m.starts_with("srv2: converge ") && m.contains("boom: disk full"),
        "{m}"
    );
    assert_eq!(
        o.hosts.get("c3"),
        Some(&HostOutcome::Skipped("its server srv2 failed".into()))
    );
    assert_eq!(o.hosts.get("c1"), Some(&HostOutcome::Changed));
}

#[test]
fn unreadable_facts_are_asked_three_times_then_fail_the_host() {
    let o = run(&[("c2", Behaviour::Garbage)], false, None);
    let Some(HostOutcome::Failed(m)) = o.hosts.get("c2") else {
        panic!("{:?}", o.hosts);
    };
    assert!(m.starts_with("c2: facts:"), "{m}");
    let asked = o
        .steps
        .iter()
        .filter(|(h, s)| h == "c2" && s == "facts")
        .count();
    assert_eq!(asked, 3);
    assert_eq!(o.hosts.get("c1"), Some(&HostOutcome::Changed));
}

#[test]
fn a_failing_key_pair_stops_the_client_before_its_server_is_touched_for_it() {
    let o = run(&[("c1", Behaviour::FailStep("keypair"))], false, None);
    assert!(matches!(o.hosts.get("c1"), Some(HostOutcome::Failed(m)) if m.contains("keypair")));
    assert!(!o.steps.iter().any(|(h, s)| h == "c1" && s == "observe"));
    assert_eq!(o.hosts.get("srv1"), Some(&HostOutcome::Changed));
    assert_eq!(o.hosts.get("c2"), Some(&HostOutcome::Changed));
}

#[test]
fn a_panicking_host_task_is_that_hosts_failure() {
    let o = run(&[("c3", Behaviour::Panic)], false, None);
    assert!(
        matches!(o.hosts.get("c3"), Some(HostOutcome::Failed(m)) if m.contains("internal error"))
    );
    assert_eq!(o.hosts.get("c1"), Some(&HostOutcome::Changed));
}

fn warnings(o: &Outcome) -> Vec<(String, String)> {
    o.events
        .iter()
        .filter_map(|e| match e {
            Event::Warning { host, message } => Some((host.clone(), message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_crashkernel_policy_warns_without_reboot_and_reboots_with_it() {
    let o = run(&[], false, None);
    assert!(warnings(&o).is_empty(), "memory reserved everywhere");

    let o = run(&[("c2", Behaviour::NoReserve)], false, None);
    let w = warnings(&o);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, "c2");
    assert!(w[0].1.contains("REBOOT REQUIRED"), "{w:?}");
    assert_eq!(o.hosts.get("c2"), Some(&HostOutcome::Changed));

    // With --reboot the host is rebooted; the fake never comes back with a new boot id, so
    // the run reports it unreachable after the deadline instead of warning.
    let o = run(
        &[("c2", Behaviour::NoReserve)],
        false,
        Some(Duration::from_secs(1)),
    );
    assert!(warnings(&o).is_empty(), "{:?}", warnings(&o));
    assert!(o.steps.iter().any(|(h, s)| h == "c2" && s == "reboot"));
    assert!(
        matches!(o.hosts.get("c2"), Some(HostOutcome::Unreachable(m)) if m.contains("did not come back armed"))
    );
    assert_eq!(o.hosts.get("c1"), Some(&HostOutcome::Changed));
}

#[test]
fn remembered_facts_fold_observation_into_the_facts_round_trip() {
    let memo: Memo = Arc::default();
    let first = run_remembering(&[], false, None, Some(memo.clone()));
    let observes = |o: &Outcome| {
        o.steps
            .iter()
            .filter(|(_, s)| s == "observe")
            .map(|(h, _)| h.clone())
            .collect::<Vec<_>>()
    };
    let mut first_observes = observes(&first);
    first_observes.sort();
    assert_eq!(
        first_observes,
        ["srv1", "srv2"],
        "nothing remembered yet, and the clients observed with their new key pairs: {:?}",
        first.steps
    );
    assert_eq!(
        memo.lock().unwrap().len(),
        5,
        "each host's facts remembered"
    );

    // Same facts: every host is observed in its facts round trip, and planned the same way.
    let second = run_remembering(&[], false, None, Some(memo.clone()));
    assert_eq!(
        observes(&second),
        Vec::<String>::new(),
        "{:?}",
        second.steps
    );
    assert_eq!(second.hosts, first.hosts);
    let sorted = |o: &Outcome| {
        let mut w = o.written.clone();
        w.sort();
        w
    };
    assert_eq!(
        sorted(&second),
        sorted(&first),
        "the same changes, from the same observation"
    );

    // c1's remembered facts plan another file than its facts now do: observed again. c2's are
    // garbage: no guess at all, so it is observed with its key pair (the fake hosts make one
    // on every run). Nobody else is affected.
    {
        let mut m = memo.lock().unwrap();
        let c1 = m["c1"].replace("os_version=12", "os_version=11");
        m.insert("c1".into(), c1);
        m.insert("c2".into(), "%%% not facts %%%".into());
    }
    let third = run_remembering(&[], false, None, Some(memo.clone()));
    let mut again = observes(&third);
    again.sort();
    assert_eq!(again, vec!["c1"]);
    assert!(
        third
            .steps
            .iter()
            .any(|(h, s)| h == "c2" && s.starts_with("converge keypair:")),
        "{:?}",
        third.steps
    );
    assert_eq!(third.hosts, first.hosts);
    assert!(
        memo.lock().unwrap()["c1"].contains("os_version=12"),
        "fresh facts remembered"
    );
}
