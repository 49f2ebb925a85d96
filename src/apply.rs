//! `provision apply`: phases over the fleet — connect and gather facts, client keys, servers,
//! clients — with bounded concurrency. It knows roles and the resource protocol (observe, plan,
//! converge), not what any resource does.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::facts::{self, Facts};
use crate::report::{Event, HostOutcome, Recap, Reporter, ResourceStatus};
use crate::resources::{KeyPair, Plan, PlanContext, Resource, batch};
use crate::roles::{self, ClientKey, netdump_client, server};
use crate::settings::{ClientFlavor, FleetSettings};
use crate::ssh::{Remote, RemoteCommand, SshError, Target};
use crate::templates::Templates;

/// Opens a session to a host. The real one is ssh; tests may substitute their own.
#[async_trait]
pub trait Connector: Send + Sync {
    async fn connect(&self, target: &Target) -> Result<Arc<dyn Remote>, SshError>;
}

pub struct ApplyOptions {
    /// Predict changes, make none.
    pub check: bool,
    /// Attach diffs to change events.
    pub diff: bool,
    /// Hosts worked on at once.
    pub forks: usize,
    pub templates: Arc<Templates>,
    /// The receiver binary uploaded to servers in embedded mode.
    pub receiver_binary: Option<Arc<crate::receiver_binary::ReceiverBinary>>,
    /// Bound for observation and facts steps.
    pub step_timeout: Duration,
    /// `--reboot`: reboot kdump clients whose crashkernel reservation needs a boot, and wait
    /// this long for each to come back armed.
    pub reboot: Option<Duration>,
}

/// Why a host stopped.
#[derive(Debug, Clone)]
enum Stop {
    Unreachable(String),
    Failed(String),
}

impl Stop {
    fn outcome(&self) -> HostOutcome {
        match self {
            Stop::Unreachable(m) => HostOutcome::Unreachable(m.clone()),
            Stop::Failed(m) => HostOutcome::Failed(m.clone()),
        }
    }
}

impl From<SshError> for Stop {
    fn from(e: SshError) -> Self {
        if e.is_unreachable() {
            Stop::Unreachable(e.to_string())
        } else {
            Stop::Failed(e.to_string())
        }
    }
}

/// Forwards events to the reporter and keeps them for the recap.
struct Sink {
    reporter: Arc<dyn Reporter>,
    events: Mutex<Vec<Event>>,
}

impl Sink {
    fn emit(&self, e: Event) {
        self.reporter.event(&e);
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }

    fn phase(&self, host: &str, phase: &str) {
        self.emit(Event::Phase {
            host: host.to_string(),
            phase: phase.to_string(),
        });
    }
}

struct Session {
    remote: Arc<dyn Remote>,
    facts: Facts,
    /// Managed clients: the effective flavour and the key phase's result (public key, `None`
    /// in check mode when it does not exist yet), done right after facts so no client waits
    /// for the slowest connection of the fleet before generating its key.
    client: Option<(ClientFlavor, Result<Option<String>, Stop>)>,
}

/// Runs apply over `selected` hosts (inventory names, already filtered by `--limit`).
pub async fn apply(
    fleet: &FleetSettings,
    selected: &[String],
    opts: &ApplyOptions,
    connector: Arc<dyn Connector>,
    reporter: Arc<dyn Reporter>,
) -> Recap {
    let started = Instant::now();
    let sink = Arc::new(Sink {
        reporter,
        events: Mutex::new(Vec::new()),
    });
    let sel: BTreeSet<&String> = selected.iter().collect();
    let managed: Vec<String> = fleet
        .targets
        .keys()
        .filter(|h| {
            sel.contains(h) && (fleet.servers.contains_key(*h) || fleet.clients.contains_key(*h))
        })
        .cloned()
        .collect();
    // Servers are probed (read-only) for their host keys even when --limit leaves them out.
    let mut probe: Vec<String> = managed.clone();
    for c in managed.iter().filter_map(|h| fleet.clients.get(h)) {
        if !probe.contains(&c.server) {
            probe.push(c.server.clone());
        }
    }

    // Phase 1: connect + facts; for managed clients also phase 2, their key pairs (generated on
    // the clients; only public keys travel).
    let managed_set: Arc<BTreeSet<String>> = Arc::new(managed.iter().cloned().collect());
    let sessions = run_parallel(opts.forks, probe.clone(), {
        let fleet = fleet.clone();
        let connector = connector.clone();
        let sink = sink.clone();
        let timeout = opts.step_timeout;
        let check = opts.check;
        move |host: String| {
            let fleet = fleet.clone();
            let connector = connector.clone();
            let sink = sink.clone();
            let managed_set = managed_set.clone();
            async move {
                let target = fleet
                    .targets
                    .get(&host)
                    .cloned()
                    .ok_or_else(|| Stop::Failed(format!("{host}: not in the inventory")))?;
                sink.phase(&host, "connect");
                let remote = connector.connect(&target).await?;
                sink.phase(&host, "facts");
                let server_addr = fleet.clients.get(&host).map(|c| c.server_address.clone());
                let managed_client = fleet
                    .clients
                    .get(&host)
                    .filter(|_| managed_set.contains(&host));
                // A managed client's possible key pairs are observed in the same round trip.
                let key_paths = managed_client
                    .map(roles::client_key_paths)
                    .unwrap_or_default();
                let nonce = batch::nonce();
                let snippets: Vec<String> = key_paths
                    .iter()
                    .map(|p| KeyPair::observer(p).observe_script())
                    .collect();
                let extra = if snippets.is_empty() {
                    String::new()
                } else {
                    batch::observe_script(&snippets, &nonce)
                };
                let probe = facts::probe_script_with(server_addr.as_deref(), &extra);
                // Read-only: output cut short is asked for again (see converge_host).
                let mut attempt = 0;
                let (facts, key_obs) = loop {
                    attempt += 1;
                    let out = remote
                        .run(RemoteCommand::new("facts", probe.clone()).timeout(timeout))
                        .await?;
                    let text = out.stdout_str();
                    let facts_text = batch::preamble(&text);
                    let parsed = facts::parse(facts_text)
                        .map_err(|e| e.to_string())
                        .and_then(|f| {
                            if snippets.is_empty() {
                                return Ok((f, Vec::new()));
                            }
                            batch::split(&text, &nonce, snippets.len())
                                .map(|o| (f, o))
                                .map_err(|e| e.to_string())
                        });
                    match parsed {
                        Ok(v) => break v,
                        Err(e) if attempt < 3 => {
                            tracing::warn!("{host}: facts output incomplete ({e}); asking again");
                        }
                        Err(e) => return Err(Stop::Failed(format!("{host}: facts: {e}"))),
                    }
                };
                let client = match managed_client {
                    Some(settings) => {
                        let flavor = roles::effective_flavor(settings, &facts);
                        sink.phase(&host, "keys");
                        let key = match client_keypair(settings, flavor, &facts) {
                            Ok(kp) => {
                                let seen = key_paths
                                    .iter()
                                    .position(|p| *p == kp.path)
                                    .and_then(|i| key_obs.get(i).cloned());
                                ensure_keypair(&host, &*remote, &kp, seen, check, timeout, &sink)
                                    .await
                            }
                            Err(e) => Err(Stop::Failed(e.to_string())),
                        };
                        Some((flavor, key))
                    }
                    None => None,
                };
                Ok(Session {
                    remote,
                    facts,
                    client,
                })
            }
        }
    })
    .await;

    let mut stopped: HashMap<String, Stop> = HashMap::new();
    let mut live: HashMap<String, Arc<Session>> = HashMap::new();
    for (host, r) in sessions {
        match r {
            Ok(s) => {
                live.insert(host, Arc::new(s));
            }
            Err(stop) => {
                stopped.insert(host, stop);
            }
        }
    }
    let finish = |sink: &Sink, host: &str, outcome: HostOutcome| {
        sink.emit(Event::HostDone {
            host: host.to_string(),
            outcome,
        })
    };
    for h in &managed {
        if let Some(stop) = stopped.get(h) {
            finish(&sink, h, stop.outcome());
        }
    }

    // Phase 2 results (the key pairs were handled with the facts).
    let clients: Vec<String> = managed
        .iter()
        .filter(|h| fleet.clients.contains_key(*h) && live.contains_key(*h))
        .cloned()
        .collect();
    let mut flavors: HashMap<String, ClientFlavor> = HashMap::new();
    let mut client_keys: HashMap<String, Option<String>> = HashMap::new();
    for host in &clients {
        let Some((flavor, key)) = live[host].client.clone() else {
            continue;
        };
        flavors.insert(host.clone(), flavor);
        match key {
            Ok(k) => {
                client_keys.insert(host.clone(), k);
            }
            Err(stop) => {
                finish(&sink, host, stop.outcome());
                stopped.insert(host.clone(), stop);
            }
        }
    }

    // Phase 3: servers.
    let servers: Vec<String> = managed
        .iter()
        .filter(|h| fleet.servers.contains_key(*h) && live.contains_key(*h))
        .cloned()
        .collect();
    let server_results = run_parallel(opts.forks, servers.clone(), {
        let fleet = fleet.clone();
        let live = live.clone();
        let sink = sink.clone();
        let client_keys = client_keys.clone();
        let templates = opts.templates.clone();
        let binary = opts.receiver_binary.clone();
        let (check, diff, timeout) = (opts.check, opts.diff, opts.step_timeout);
        move |host: String| {
            let fleet = fleet.clone();
            let session = live[&host].clone();
            let sink = sink.clone();
            let client_keys = client_keys.clone();
            let templates = templates.clone();
            let binary = binary.clone();
            async move {
                let settings = &fleet.servers[&host];
                let mut keys = Vec::new();
                let mut keep = BTreeSet::new();
                for c in fleet.clients.values().filter(|c| c.server == host) {
                    match client_keys.get(&c.host) {
                        Some(Some(k)) => keys.push(ClientKey {
                            client: c.host.clone(),
                            from: client_source_address(&fleet, &c.host),
                            key: k.clone(),
                        }),
                        // Outside this run, or its key is unknown: leave its line alone.
                        _ => {
                            keep.insert(c.host.clone());
                        }
                    }
                }
                let resources = server::resources(server::ServerInputs {
                    settings,
                    facts: &session.facts,
                    client_keys: keys,
                    keep,
                    receiver_binary: binary,
                    templates: &templates,
                })
                .map_err(|e| Stop::Failed(e.to_string()))?;
                converge_host(
                    &host,
                    &*session.remote,
                    &resources,
                    check,
                    diff,
                    timeout,
                    &sink,
                )
                .await
            }
        }
    })
    .await;
    let mut server_ok: HashMap<String, bool> = HashMap::new();
    for (host, r) in server_results {
        match r {
            Ok(changed) => {
                server_ok.insert(host.clone(), true);
                finish(
                    &sink,
                    &host,
                    if changed {
                        HostOutcome::Changed
                    } else {
                        HostOutcome::Ok
                    },
                );
            }
            Err(stop) => {
                server_ok.insert(host.clone(), false);
                finish(&sink, &host, stop.outcome());
                stopped.insert(host, stop);
            }
        }
    }

    // Phase 4: clients whose server is fine.
    let mut runnable = Vec::new();
    for c in clients.iter().filter(|c| !stopped.contains_key(*c)) {
        let srv = &fleet.clients[c].server;
        let ok = match server_ok.get(srv) {
            Some(ok) => *ok,
            None => live.contains_key(srv),
        };
        if ok {
            runnable.push(c.clone());
        } else {
            let why = match stopped.get(srv) {
                Some(Stop::Unreachable(_)) => format!("its server {srv} is unreachable"),
                _ => format!("its server {srv} failed"),
            };
            finish(&sink, c, HostOutcome::Skipped(why));
        }
    }
    let client_results = run_parallel(opts.forks, runnable, {
        let fleet = fleet.clone();
        let live = live.clone();
        let sink = sink.clone();
        let templates = opts.templates.clone();
        let flavors = flavors.clone();
        let (check, diff, timeout) = (opts.check, opts.diff, opts.step_timeout);
        move |host: String| {
            let fleet = fleet.clone();
            let session = live[&host].clone();
            let sink = sink.clone();
            let templates = templates.clone();
            let flavor = flavors[&host];
            let server_keys = live[&fleet.clients[&host].server].facts.host_keys.clone();
            async move {
                let settings = &fleet.clients[&host];
                let resources =
                    client_resources(settings, flavor, &session.facts, &server_keys, &templates)
                        .map_err(|e| Stop::Failed(e.to_string()))?;
                converge_host(
                    &host,
                    &*session.remote,
                    &resources,
                    check,
                    diff,
                    timeout,
                    &sink,
                )
                .await
            }
        }
    })
    .await;
    let mut to_reboot = Vec::new();
    for (host, r) in client_results {
        let needs_boot = flavors.get(&host) == Some(&ClientFlavor::Kdump)
            && live[&host].facts.kexec_crash_size == Some(0);
        match r {
            Ok(changed) if needs_boot && opts.reboot.is_some() && !opts.check => {
                to_reboot.push((host, changed));
            }
            Ok(changed) => {
                if needs_boot {
                    sink.emit(Event::Warning {
                        host: host.clone(),
                        message: format!(
                            "no memory is reserved for the capture kernel (/sys/kernel/kexec_crash_size is 0): crashkernel={} {} the boot configuration; REBOOT REQUIRED before kdump can work (or re-run with --reboot)",
                            fleet.clients[&host].kdump.crashkernel,
                            if opts.check { "would be written to" } else { "is in" }
                        ),
                    });
                }
                finish(
                    &sink,
                    &host,
                    if changed {
                        HostOutcome::Changed
                    } else {
                        HostOutcome::Ok
                    },
                )
            }
            Err(stop) => finish(&sink, &host, stop.outcome()),
        }
    }
    if let Some(deadline) = opts.reboot {
        let rebooted = run_parallel(opts.forks, to_reboot.iter().map(|(h, _)| h.clone()).collect(), {
            let fleet = fleet.clone();
            let live = live.clone();
            let sink = sink.clone();
            let connector = connector.clone();
            move |host: String| {
                let target = fleet.targets[&host].clone();
                let session = live[&host].clone();
                let sink = sink.clone();
                let connector = connector.clone();
                async move {
                    sink.phase(&host, "reboot");
                    reboot_and_wait(&host, &target, &*session.remote, &session.facts.boot_id, &*connector, deadline)
                        .await
                        .map(|loaded| {
                            sink.emit(Event::Resource {
                                host: host.clone(),
                                resource: "reboot:crashkernel".into(),
                                status: ResourceStatus::Changed,
                                summary: format!("rebooted for crashkernel=; kexec_crash_loaded={}", u8::from(loaded)),
                                diff: None,
                                check: false,
                            });
                            if !loaded {
                                sink.emit(Event::Warning {
                                    host: host.clone(),
                                    message: "back after the reboot, but no capture kernel is loaded (kexec_crash_loaded 0); check `kdump-config show` / `kdumpctl status`".into(),
                                });
                            }
                        })
                }
            }
        })
        .await;
        for (host, r) in rebooted {
            match r {
                Ok(()) => finish(&sink, &host, HostOutcome::Changed),
                Err(stop) => finish(&sink, &host, stop.outcome()),
            }
        }
    }

    let events = sink
        .events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let recap = Recap::from_events(
        &managed,
        &events,
        opts.check,
        started.elapsed().as_secs_f64(),
    );
    sink.reporter.finish(&recap);
    recap
}

/// The address a client's packets and ssh connections come from, as the server sees them:
/// its inventory address when that is an IP.
fn client_source_address(fleet: &FleetSettings, client: &str) -> Option<String> {
    let t = fleet.targets.get(client)?;
    t.address
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

fn client_keypair(
    settings: &crate::settings::ClientSettings,
    flavor: ClientFlavor,
    facts: &Facts,
) -> Result<KeyPair, roles::RoleError> {
    match flavor {
        ClientFlavor::Netdump => Ok(netdump_client::keypair(settings, facts)),
        _ => roles::kdump_client::keypair(settings, facts),
    }
}

fn client_resources(
    settings: &crate::settings::ClientSettings,
    flavor: ClientFlavor,
    facts: &Facts,
    server_keys: &[String],
    templates: &Templates,
) -> Result<roles::Resources, roles::RoleError> {
    let all = match flavor {
        ClientFlavor::Netdump => {
            netdump_client::resources(settings, facts, server_keys, templates)?
        }
        _ => roles::kdump_client::resources(settings, facts, server_keys, templates)?,
    };
    // The key pair was handled in the keys phase.
    Ok(all
        .into_iter()
        .filter(|r| !r.id().starts_with("keypair:"))
        .collect())
}

/// Observes, plans and (unless `check`) generates a key pair; returns its public key
/// (`None` in check mode when it does not exist yet).
async fn ensure_keypair(
    host: &str,
    remote: &dyn Remote,
    kp: &KeyPair,
    observed: Option<crate::resources::Observed>,
    check: bool,
    timeout: Duration,
    sink: &Sink,
) -> Result<Option<String>, Stop> {
    let observed = match observed {
        Some(o) => o,
        None => {
            let out = remote
                .run(RemoteCommand::new("observe key pair", kp.observe_script()).timeout(timeout))
                .await?;
            crate::resources::Observed {
                text: out.stdout_str(),
                status: out.status.unwrap_or(-1),
            }
        }
    };
    let id = kp.id();
    let emit = |status, summary: String, is_check| {
        sink.emit(Event::Resource {
            host: host.to_string(),
            resource: id.clone(),
            status,
            summary,
            diff: None,
            check: is_check,
        })
    };
    match kp.plan(&observed, &PlanContext::default()) {
        Err(e) => {
            emit(ResourceStatus::Failed, e.to_string(), false);
            Err(Stop::Failed(format!("{host}: {e}")))
        }
        Ok(Plan::Ok) => {
            emit(ResourceStatus::Ok, String::new(), false);
            Ok(KeyPair::public_key(&observed.text).and_then(|k| roles::key_material(&k)))
        }
        Ok(Plan::Change(c)) if check => {
            emit(ResourceStatus::Changed, c.summary, true);
            Ok(None)
        }
        Ok(Plan::Change(c)) => {
            let out = remote
                .run(RemoteCommand::new(format!("converge {id}"), c.script).timeout(c.timeout))
                .await?;
            match KeyPair::public_key(&out.stdout_str()).and_then(|k| roles::key_material(&k)) {
                Some(k) if out.success() => {
                    emit(ResourceStatus::Changed, c.summary, false);
                    Ok(Some(k))
                }
                _ => {
                    let msg = failure_message(host, &id, out.status, &out.stderr_str());
                    emit(ResourceStatus::Failed, msg.clone(), false);
                    Err(Stop::Failed(msg))
                }
            }
        }
    }
}

/// Reboots a host (detached, so the ssh step returns), waits for it to come back with a new boot
/// id, then waits for the capture kernel to be loaded. Returns `kexec_crash_loaded`.
async fn reboot_and_wait(
    host: &str,
    target: &Target,
    remote: &dyn Remote,
    old_boot_id: &str,
    connector: &dyn Connector,
    deadline: Duration,
) -> Result<bool, Stop> {
    let script = "if command -v systemd-run >/dev/null 2>&1; then \
                    systemd-run --quiet --no-block --collect sh -c 'sleep 2; reboot'; \
                  else nohup sh -c 'sleep 2; reboot' >/dev/null 2>&1 & fi";
    remote.run(RemoteCommand::new("reboot", script)).await?;
    let end = Instant::now() + deadline;
    tokio::time::sleep(Duration::from_secs(5)).await;
    while Instant::now() < end {
        if let Ok(r) = connector.connect(target).await {
            let probe = "cat /proc/sys/kernel/random/boot_id; cat /sys/kernel/kexec_crash_loaded 2>/dev/null || echo 0";
            if let Ok(out) = r.run(RemoteCommand::new("boot id", probe)).await {
                let text = out.stdout_str();
                let mut lines = text.lines();
                let id = lines.next().unwrap_or("").trim();
                if !id.is_empty() && id != old_boot_id {
                    if lines.next().map(str::trim) == Some("1") {
                        return Ok(true);
                    }
                    // kdump may still be loading its capture kernel (first boot builds an initrd).
                    if Instant::now() + Duration::from_secs(10) >= end {
                        return Ok(false);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    Err(Stop::Unreachable(format!(
        "{host}: did not come back armed within {}s after the reboot for crashkernel=",
        deadline.as_secs()
    )))
}

fn failure_message(host: &str, id: &str, status: Option<i32>, stderr: &str) -> String {
    let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(5)..].join(" | ");
    let code = status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "signal".into());
    format!(
        "{host}: converge {id} failed (exit {code}): {}. Fix the cause on the host and re-run; `--check --diff` previews what would change",
        if tail.is_empty() {
            "no error output".to_string()
        } else {
            tail
        }
    )
}

/// Observe everything in one round trip, then plan and converge in order. Returns whether
/// anything changed; stops at the first failure.
async fn converge_host(
    host: &str,
    remote: &dyn Remote,
    resources: &[Box<dyn Resource>],
    check: bool,
    diff: bool,
    timeout: Duration,
    sink: &Sink,
) -> Result<bool, Stop> {
    sink.phase(host, "observe");
    let nonce = batch::nonce();
    let snippets: Vec<String> = resources.iter().map(|r| r.observe_script()).collect();
    let script = batch::observe_script(&snippets, &nonce);
    // Observation is read-only: when its output comes back cut short (seen rarely over a
    // loaded mux connection), it is simply asked again.
    let mut attempt = 0;
    let (out, observed) = loop {
        attempt += 1;
        let out = remote
            .run(RemoteCommand::new("observe", script.clone()).timeout(timeout))
            .await?;
        match batch::split(&out.stdout_str(), &nonce, resources.len()) {
            Ok(o) => break (out, Ok(o)),
            Err(e) if attempt < 3 => {
                tracing::warn!(
                    "{host}: observation output incomplete ({e}, {} bytes); asking again",
                    out.stdout.len()
                );
            }
            Err(e) => break (out, Err(e)),
        }
    };
    let observed = observed.map_err(|e| {
        // The raw output is not shown: it may hold observed secrets (password hashes).
        Stop::Failed(format!(
            "{host}: observe: {e} (exit {:?}, {} bytes of output); stderr: {}",
            out.status,
            out.stdout.len(),
            out.stderr_str().lines().last().unwrap_or("")
        ))
    })?;
    let mut ctx = PlanContext::default();
    let mut changed = false;
    if !check {
        sink.phase(host, "converge");
    }
    for (r, obs) in resources.iter().zip(observed.iter()) {
        let id = r.id();
        let event = |status, summary: String, d: Option<String>, is_check| Event::Resource {
            host: host.to_string(),
            resource: id.clone(),
            status,
            summary,
            diff: if diff { d } else { None },
            check: is_check,
        };
        match r.plan(obs, &ctx) {
            Err(e) => {
                sink.emit(event(ResourceStatus::Failed, e.to_string(), None, check));
                return Err(Stop::Failed(format!("{host}: {e}")));
            }
            Ok(Plan::Ok) => sink.emit(event(ResourceStatus::Ok, String::new(), None, check)),
            Ok(Plan::Change(c)) if check => {
                sink.emit(event(
                    ResourceStatus::Changed,
                    c.summary.clone(),
                    c.diff.clone(),
                    true,
                ));
                ctx.changed.insert(id.clone());
                changed = true;
            }
            Ok(Plan::Change(c)) => {
                let mut cmd = RemoteCommand::new(format!("converge {id}"), c.script.clone())
                    .timeout(c.timeout);
                if let Some(s) = &c.stdin {
                    cmd = cmd.stdin(s.clone());
                }
                let out = remote.run(cmd).await?;
                if out.success() {
                    sink.emit(event(
                        ResourceStatus::Changed,
                        c.summary.clone(),
                        c.diff.clone(),
                        false,
                    ));
                    ctx.changed.insert(id.clone());
                    changed = true;
                } else {
                    let msg = failure_message(host, &id, out.status, &out.stderr_str());
                    sink.emit(event(ResourceStatus::Failed, msg.clone(), None, false));
                    return Err(Stop::Failed(msg));
                }
            }
        }
    }
    Ok(changed)
}

/// Runs `f` for every host with at most `forks` at once; results in input order.
async fn run_parallel<T, F, Fut>(
    forks: usize,
    hosts: Vec<String>,
    f: F,
) -> Vec<(String, Result<T, Stop>)>
where
    T: Send + 'static,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, Stop>> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(forks.max(1)));
    let mut set = JoinSet::new();
    for (i, host) in hosts.iter().enumerate() {
        let fut = f(host.clone());
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, fut.await)
        });
    }
    let mut results: Vec<Option<Result<T, Stop>>> = hosts.iter().map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, r)) => results[i] = Some(r),
            Err(e) => {
                // A panicking host task must not take the run down; it shows as a failure.
                tracing::error!("a host task panicked: {e}");
            }
        }
    }
    hosts
        .into_iter()
        .zip(results)
        .map(|(h, r)| {
            let r = r.unwrap_or_else(|| {
                Err(Stop::Failed(format!("{h}: internal error (task panicked)")))
            });
            (h, r)
        })
        .collect()
}
