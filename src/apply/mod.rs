//! `provision apply`: a run over the fleet in phases — connect and gather facts (with the client
//! key pairs), servers, clients, reboots — with bounded concurrency. It knows roles and the
//! resource protocol (observe, plan, converge), not what any resource does.
//!
//! [`apply`] is the run loop: each phase is one method of [`Run`] that takes the previous
//! phases' typed results and returns its own; a host that stops is recorded once with a typed
//! [`Stop`] and left out of the later phases.

mod converge;
mod parallel;
mod reboot;
mod stop;
#[cfg(test)]
mod tests;

pub use stop::Stop;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::facts::{self, Facts};
use crate::report::{Event, HostOutcome, Recap, Reporter, ResourceStatus};
use crate::resources::{KeyPair, batch};
use crate::roles::kdump_client::AfterConverge;
use crate::roles::{self, ClientKey, netdump_client, server};
use crate::settings::{ClientFlavor, ClientSettings, FleetSettings, KeyType};
use crate::ssh::{MemoKey, Remote, RemoteCommand, SshError, Target};
use crate::templates::Templates;
use converge::{converge_host, ensure_keypair};
use parallel::run_parallel;

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

/// Where a run gets each host's desired state. The product's roles (`roles::`); the unit tests
/// substitute resources whose observation does not depend on the machine they run on.
trait RoleSet: Send + Sync {
    fn server(
        &self,
        inputs: server::ServerInputs<'_>,
    ) -> Result<roles::Resources, roles::RoleError>;
    fn client(
        &self,
        settings: &ClientSettings,
        flavor: ClientFlavor,
        facts: &Facts,
        server_keys: &[String],
        templates: &Templates,
    ) -> Result<roles::Resources, roles::RoleError>;
}

struct ProductRoles;

impl RoleSet for ProductRoles {
    fn server(
        &self,
        inputs: server::ServerInputs<'_>,
    ) -> Result<roles::Resources, roles::RoleError> {
        server::resources(inputs)
    }

    fn client(
        &self,
        settings: &ClientSettings,
        flavor: ClientFlavor,
        facts: &Facts,
        server_keys: &[String],
        templates: &Templates,
    ) -> Result<roles::Resources, roles::RoleError> {
        client_resources(settings, flavor, facts, server_keys, templates)
    }
}

/// Runs apply over `selected` hosts (inventory names, already filtered by `--limit`).
pub async fn apply(
    fleet: &FleetSettings,
    selected: &[String],
    opts: &ApplyOptions,
    connector: Arc<dyn Connector>,
    reporter: Arc<dyn Reporter>,
) -> Recap {
    run_with(
        fleet,
        selected,
        opts,
        connector,
        reporter,
        Arc::new(ProductRoles),
    )
    .await
}

async fn run_with(
    fleet: &FleetSettings,
    selected: &[String],
    opts: &ApplyOptions,
    connector: Arc<dyn Connector>,
    reporter: Arc<dyn Reporter>,
    roles: Arc<dyn RoleSet>,
) -> Recap {
    let mut run = Run::new(fleet, selected, opts, connector, reporter, roles);
    let (hosts, made) = run.connect().await;
    let keys = run.client_keys(made);
    let servers = run.servers(&hosts, &keys).await;
    let clients = run.clients(&hosts, &keys, &servers).await;
    let reboots = run.after_clients(&hosts, &keys, clients);
    run.reboots(&hosts, reboots).await;
    run.finish()
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

    fn done(&self, host: &str, outcome: HostOutcome) {
        self.emit(Event::HostDone {
            host: host.to_string(),
            outcome,
        })
    }
}

/// What the run shares between its phases.
struct Run {
    fleet: Arc<FleetSettings>,
    check: bool,
    diff: bool,
    forks: usize,
    step_timeout: Duration,
    reboot: Option<Duration>,
    templates: Arc<Templates>,
    receiver_binary: Option<Arc<crate::receiver_binary::ReceiverBinary>>,
    connector: Arc<dyn Connector>,
    roles: Arc<dyn RoleSet>,
    sink: Arc<Sink>,
    /// Selected hosts that have a role, in inventory order.
    managed: Vec<String>,
    /// Hosts that stopped, and why; each is reported once, when it stops.
    stopped: HashMap<String, Stop>,
    started: Instant,
}

/// Phase 1's result for one host: its session and facts.
struct HostState {
    remote: Arc<dyn Remote>,
    facts: Facts,
    /// The host's resources observed in the facts round trip, planned from the facts the
    /// connection remembered from the last run; used only if they are still what the fresh facts
    /// ask for.
    prefetched: Option<Prefetched>,
}

/// Observations made ahead of planning: what was observed, and what each snippet printed.
pub(super) struct Prefetched {
    observation: batch::Observation,
    observed: Vec<crate::resources::Observed>,
}

/// Phase 1: the hosts that answered.
type Hosts = HashMap<String, Arc<HostState>>;

/// A managed client's flavour and key pair, made in phase 1 right after its facts so no
/// client waits for the slowest connection of the fleet before generating its key.
type KeyMade = (ClientFlavor, Result<Option<String>, Stop>);

/// Phase 2: managed clients' flavours and public keys (`None`: not made yet, check mode).
#[derive(Default)]
struct ClientKeys {
    flavors: HashMap<String, ClientFlavor>,
    public: HashMap<String, Option<String>>,
}

/// Phase 3: whether each server converged.
type Servers = HashMap<String, bool>;

/// Phase 4: each client's converge result (changed or not).
type Clients = Vec<(String, Result<bool, Stop>)>;

impl Run {
    fn new(
        fleet: &FleetSettings,
        selected: &[String],
        opts: &ApplyOptions,
        connector: Arc<dyn Connector>,
        reporter: Arc<dyn Reporter>,
        roles: Arc<dyn RoleSet>,
    ) -> Run {
        let sel: BTreeSet<&String> = selected.iter().collect();
        let managed = fleet
            .targets
            .keys()
            .filter(|h| {
                sel.contains(h)
                    && (fleet.servers.contains_key(*h) || fleet.clients.contains_key(*h))
            })
            .cloned()
            .collect();
        Run {
            fleet: Arc::new(fleet.clone()),
            check: opts.check,
            diff: opts.diff,
            forks: opts.forks,
            step_timeout: opts.step_timeout,
            reboot: opts.reboot,
            templates: opts.templates.clone(),
            receiver_binary: opts.receiver_binary.clone(),
            connector,
            roles,
            sink: Arc::new(Sink {
                reporter,
                events: Mutex::new(Vec::new()),
            }),
            managed,
            stopped: HashMap::new(),
            started: Instant::now(),
        }
    }

    /// Records that `host` stopped and reports it (managed hosts only: a server probed for
    /// its host keys outside `--limit` is not part of the recap).
    fn stop(&mut self, host: String, stop: Stop) {
        if self.managed.contains(&host) {
            self.sink.done(&host, stop.outcome());
        }
        self.stopped.insert(host, stop);
    }

    fn converged(&self, host: &str, changed: bool) {
        self.sink.done(
            host,
            if changed {
                HostOutcome::Changed
            } else {
                HostOutcome::Ok
            },
        );
    }

    /// Phase 1: connect and gather facts on every managed host and on the servers of managed
    /// clients (read-only, for their host keys, even when `--limit` leaves them out); managed
    /// clients also get their key pair (generated on the client; only public keys travel).
    async fn connect(&mut self) -> (Hosts, Vec<(String, KeyMade)>) {
        let mut probe = self.managed.clone();
        for c in self
            .managed
            .iter()
            .filter_map(|h| self.fleet.clients.get(h))
        {
            if !probe.contains(&c.server) {
                probe.push(c.server.clone());
            }
        }
        let managed: Arc<BTreeSet<String>> = Arc::new(self.managed.iter().cloned().collect());
        let (fleet, connector, sink) = (
            self.fleet.clone(),
            self.connector.clone(),
            self.sink.clone(),
        );
        let (timeout, check) = (self.step_timeout, self.check);
        let ahead = Arc::new(Ahead {
            roles: self.roles.clone(),
            templates: self.templates.clone(),
            receiver_binary: self.receiver_binary.clone(),
        });
        let results = run_parallel(self.forks, probe, move |host: String| {
            let (fleet, connector, sink) = (fleet.clone(), connector.clone(), sink.clone());
            let ahead = ahead.clone();
            let client = fleet
                .clients
                .get(&host)
                .filter(|_| managed.contains(&host))
                .cloned();
            let is_managed = managed.contains(&host);
            async move {
                let target = fleet
                    .targets
                    .get(&host)
                    .cloned()
                    .ok_or_else(|| Stop::NotInInventory { host: host.clone() })?;
                sink.phase(&host, "connect");
                let remote = connector.connect(&target).await?;
                sink.phase(&host, "facts");
                let settings = fleet.clients.get(&host);
                let scope = facts::Scope {
                    server: fleet.servers.contains_key(&host),
                    client_of: settings.map(|c| c.server_address.as_str()),
                    netdump_module: settings.is_some_and(|c| c.flavor == ClientFlavor::Auto),
                    ssh_version: match settings {
                        // Only the type of a new netdump key pair depends on it.
                        Some(c)
                            if c.flavor != ClientFlavor::Kdump && c.key_type == KeyType::Auto =>
                        {
                            facts::SshVersion::UnlessKeyPair(netdump_client::KEY_PATH)
                        }
                        _ => facts::SshVersion::Never,
                    },
                    ssh_client_config: settings.is_some_and(|c| c.flavor != ClientFlavor::Netdump),
                };
                let guess = |f: &Facts| {
                    if is_managed {
                        ahead.observation(&fleet, &host, f)
                    } else {
                        batch::Observation::default()
                    }
                };
                host_state(
                    &host,
                    remote,
                    scope,
                    client.as_ref(),
                    &guess,
                    check,
                    timeout,
                    &sink,
                )
                .await
            }
        })
        .await;
        let mut hosts = Hosts::new();
        let mut made = Vec::new();
        for (host, r) in results {
            match r {
                Ok((state, key)) => {
                    hosts.insert(host.clone(), Arc::new(state));
                    made.extend(key.map(|k| (host, k)));
                }
                Err(stop) => self.stop(host, stop),
            }
        }
        (hosts, made)
    }

    /// Phase 2: the key pairs made in phase 1; a client whose key failed stops here.
    fn client_keys(&mut self, made: Vec<(String, KeyMade)>) -> ClientKeys {
        let mut keys = ClientKeys::default();
        for (host, (flavor, key)) in made {
            keys.flavors.insert(host.clone(), flavor);
            match key {
                Ok(k) => {
                    keys.public.insert(host, k);
                }
                Err(stop) => self.stop(host, stop),
            }
        }
        keys
    }

    /// Phase 3: servers, with the public keys of their clients.
    async fn servers(&mut self, hosts: &Hosts, keys: &ClientKeys) -> Servers {
        let servers: Vec<String> = self
            .managed
            .iter()
            .filter(|h| self.fleet.servers.contains_key(*h) && hosts.contains_key(*h))
            .cloned()
            .collect();
        let public = Arc::new(keys.public.clone());
        let (fleet, sink, templates, binary, roles) = (
            self.fleet.clone(),
            self.sink.clone(),
            self.templates.clone(),
            self.receiver_binary.clone(),
            self.roles.clone(),
        );
        let (check, diff, timeout) = (self.check, self.diff, self.step_timeout);
        let hosts_for_tasks = hosts.clone();
        let results = run_parallel(self.forks, servers, move |host: String| {
            let state = hosts_for_tasks[&host].clone();
            let (fleet, sink, templates, binary, public, roles) = (
                fleet.clone(),
                sink.clone(),
                templates.clone(),
                binary.clone(),
                public.clone(),
                roles.clone(),
            );
            async move {
                let (client_keys, keep) = server_client_keys(&fleet, &host, &public);
                let resources = roles.server(server::ServerInputs {
                    settings: &fleet.servers[&host],
                    facts: &state.facts,
                    client_keys,
                    keep,
                    receiver_binary: binary,
                    templates: &templates,
                })?;
                converge_host(
                    &host,
                    &*state.remote,
                    &resources,
                    state.prefetched.as_ref(),
                    check,
                    diff,
                    timeout,
                    &sink,
                )
                .await
            }
        })
        .await;
        let mut done = Servers::new();
        for (host, r) in results {
            done.insert(host.clone(), r.is_ok());
            match r {
                Ok(changed) => self.converged(&host, changed),
                Err(stop) => self.stop(host, stop),
            }
        }
        done
    }

    /// Phase 4: clients whose server is fine (converged in this run, or outside it and
    /// reachable); the others are skipped with the reason.
    async fn clients(&mut self, hosts: &Hosts, keys: &ClientKeys, servers: &Servers) -> Clients {
        let mut runnable = Vec::new();
        for c in self.managed.clone() {
            if !keys.flavors.contains_key(&c) || self.stopped.contains_key(&c) {
                continue;
            }
            let srv = &self.fleet.clients[&c].server;
            let ok = match servers.get(srv) {
                Some(ok) => *ok,
                None => hosts.contains_key(srv),
            };
            if ok {
                runnable.push(c);
            } else {
                let why = match self.stopped.get(srv) {
                    Some(s) if s.is_unreachable() => format!("its server {srv} is unreachable"),
                    _ => format!("its server {srv} failed"),
                };
                self.sink.done(&c, HostOutcome::Skipped(why));
            }
        }
        let (fleet, sink, templates, roles) = (
            self.fleet.clone(),
            self.sink.clone(),
            self.templates.clone(),
            self.roles.clone(),
        );
        let flavors = Arc::new(keys.flavors.clone());
        let (check, diff, timeout) = (self.check, self.diff, self.step_timeout);
        let hosts_for_tasks = hosts.clone();
        run_parallel(self.forks, runnable, move |host: String| {
            let state = hosts_for_tasks[&host].clone();
            let server_keys = hosts_for_tasks[&fleet.clients[&host].server]
                .facts
                .host_keys
                .clone();
            let (fleet, sink, templates, roles) = (
                fleet.clone(),
                sink.clone(),
                templates.clone(),
                roles.clone(),
            );
            let flavor = flavors[&host];
            async move {
                let settings = &fleet.clients[&host];
                let resources =
                    roles.client(settings, flavor, &state.facts, &server_keys, &templates)?;
                converge_host(
                    &host,
                    &*state.remote,
                    &resources,
                    state.prefetched.as_ref(),
                    check,
                    diff,
                    timeout,
                    &sink,
                )
                .await
            }
        })
        .await
    }

    /// After phase 4: each client's outcome, with its role's boot policy applied
    /// (roles::kdump_client::after_converge). Returns the clients to reboot.
    fn after_clients(&mut self, hosts: &Hosts, keys: &ClientKeys, clients: Clients) -> Vec<String> {
        let mut reboot = Vec::new();
        for (host, r) in clients {
            let changed = match r {
                Ok(changed) => changed,
                Err(stop) => {
                    self.stop(host, stop);
                    continue;
                }
            };
            let policy = match keys.flavors.get(&host) {
                Some(ClientFlavor::Kdump) => roles::kdump_client::after_converge(
                    &self.fleet.clients[&host],
                    &hosts[&host].facts,
                    self.reboot.is_some(),
                    self.check,
                ),
                _ => AfterConverge::Ready,
            };
            match policy {
                AfterConverge::Reboot => reboot.push(host),
                AfterConverge::RebootRequired(message) => {
                    self.sink.emit(Event::Warning {
                        host: host.clone(),
                        message,
                    });
                    self.converged(&host, changed);
                }
                AfterConverge::Ready => self.converged(&host, changed),
            }
        }
        reboot
    }

    /// Phase 5 (`--reboot`): reboot the clients that need a boot and wait until they are back
    /// with a capture kernel loaded.
    async fn reboots(&mut self, hosts: &Hosts, reboot: Vec<String>) {
        let Some(deadline) = self.reboot else {
            return;
        };
        let (fleet, sink, connector) = (
            self.fleet.clone(),
            self.sink.clone(),
            self.connector.clone(),
        );
        let hosts_for_tasks = hosts.clone();
        let results = run_parallel(self.forks, reboot, move |host: String| {
            let target = fleet.targets[&host].clone();
            let state = hosts_for_tasks[&host].clone();
            let (sink, connector) = (sink.clone(), connector.clone());
            async move {
                sink.phase(&host, "reboot");
                let loaded = reboot::reboot_and_wait(
                    &host,
                    &target,
                    &*state.remote,
                    &state.facts.boot_id,
                    &*connector,
                    deadline,
                )
                .await?;
                sink.emit(Event::Resource {
                    host: host.clone(),
                    resource: "reboot:crashkernel".into(),
                    status: ResourceStatus::Changed,
                    summary: format!(
                        "rebooted for crashkernel=; kexec_crash_loaded={}",
                        u8::from(loaded)
                    ),
                    diff: None,
                    check: false,
                });
                if !loaded {
                    sink.emit(Event::Warning {
                        host: host.clone(),
                        message: "back after the reboot, but no capture kernel is loaded \
                                  (kexec_crash_loaded 0); check `kdump-config show` / \
                                  `kdumpctl status`"
                            .into(),
                    });
                }
                Ok(())
            }
        })
        .await;
        for (host, r) in results {
            match r {
                Ok(()) => self.sink.done(&host, HostOutcome::Changed),
                Err(stop) => self.stop(host, stop),
            }
        }
    }

    fn finish(self) -> Recap {
        let events = self
            .sink
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let recap = Recap::from_events(
            &self.managed,
            &events,
            self.check,
            self.started.elapsed().as_secs_f64(),
        );
        self.sink.reporter.finish(&recap);
        recap
    }
}

/// What phase 1 needs to plan a host's observation ahead of its facts.
struct Ahead {
    roles: Arc<dyn RoleSet>,
    templates: Arc<Templates>,
    receiver_binary: Option<Arc<crate::receiver_binary::ReceiverBinary>>,
}

impl Ahead {
    /// The observation snippets of `host`'s resources if its facts were `facts`. What only
    /// changes the desired contents (client keys, server host keys) is left empty or stood in
    /// for: observation does not depend on it. Empty when the role cannot be planned (phase 3 or 4 says why).
    fn observation(&self, fleet: &FleetSettings, host: &str, facts: &Facts) -> batch::Observation {
        let resources = if let Some(settings) = fleet.servers.get(host) {
            self.roles.server(server::ServerInputs {
                settings,
                facts,
                client_keys: Vec::new(),
                keep: fleet
                    .clients
                    .values()
                    .filter(|c| c.server == host)
                    .map(|c| c.host.clone())
                    .collect(),
                receiver_binary: self.receiver_binary.clone(),
                templates: &self.templates,
            })
        } else if let Some(settings) = fleet.clients.get(host) {
            let flavor = roles::effective_flavor(settings, facts);
            // The server's keys arrive with its own facts; a client role refuses to plan without
            // one, and only the lines it writes depend on them.
            let stand_in = [String::from("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5")];
            self.roles
                .client(settings, flavor, facts, &stand_in, &self.templates)
        } else {
            return batch::Observation::default();
        };
        resources
            .map(|rs| batch::Observation::of(&rs))
            .unwrap_or_default()
    }
}

/// Phase 1 on one host: the fact probe, with a managed client's possible key pairs observed in
/// the same round trip, then that client's key pair.
///
/// When the connection remembers the facts of the last run (a kept ssh master), the host's
/// resources as planned from those facts are observed in the same round trip too; phases 3 and
/// 4 use that observation only if the fresh facts plan the very same snippets, so a no-op run
/// costs one round trip per host instead of two.
#[allow(clippy::too_many_arguments)]
async fn host_state(
    host: &str,
    remote: Arc<dyn Remote>,
    scope: facts::Scope<'_>,
    client: Option<&ClientSettings>,
    guess: &(dyn Fn(&Facts) -> batch::Observation + Sync),
    check: bool,
    timeout: Duration,
    sink: &Sink,
) -> Result<(HostState, Option<KeyMade>), Stop> {
    let key_paths = client.map(roles::client_key_paths).unwrap_or_default();
    let nonce = batch::nonce();
    let mut observation = batch::Observation::default();
    for p in &key_paths {
        observation.push(&KeyPair::observer(p));
    }
    let remembered = remote.recall(MemoKey::Facts);
    let guessed = remembered
        .as_deref()
        .and_then(|t| facts::parse(t).ok())
        .map(|f| guess(&f))
        .unwrap_or_default();
    observation.extend(&guessed);
    let snippets = observation.len();
    let extra = if observation.is_empty() {
        String::new()
    } else {
        observation.script(&nonce)
    };
    let probe = facts::probe_script_for(scope, &extra);
    let mut command = RemoteCommand::new("facts", probe).timeout(timeout);
    if !observation.may_wait {
        command = command.read_only();
    }
    // Read-only: output cut short is asked for again (see converge_host).
    let mut attempt = 0;
    let (facts, preamble, mut obs) = loop {
        attempt += 1;
        let out = remote.run(command.clone()).await?;
        let text = out.stdout_str();
        let preamble = batch::preamble(&text);
        let parsed = facts::parse(preamble)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                if snippets == 0 {
                    return Ok((f, Vec::new()));
                }
                batch::split(&text, &nonce, snippets)
                    .map(|o| (f, o))
                    .map_err(|e| e.to_string())
            })
            .map(|(f, o)| (f, preamble.to_string(), o));
        match parsed {
            Ok(v) => break v,
            Err(e) if attempt < 3 => {
                tracing::warn!("{host}: facts output incomplete ({e}); asking again");
            }
            Err(reason) => {
                return Err(Stop::Facts {
                    host: host.to_string(),
                    reason,
                });
            }
        }
    };
    if remembered.as_deref() != Some(preamble.as_str()) {
        remote.remember(MemoKey::Facts, &preamble);
    }
    let mut prefetched = (!guessed.is_empty()).then(|| Prefetched {
        observed: obs.split_off(key_paths.len()),
        observation: guessed,
    });
    let key_obs = obs;
    let client = match client {
        Some(settings) => {
            let flavor = roles::effective_flavor(settings, &facts);
            sink.phase(host, "keys");
            let key = match client_keypair(settings, flavor, &facts) {
                Ok(kp) => {
                    let seen = key_paths
                        .iter()
                        .position(|p| *p == kp.path)
                        .and_then(|i| key_obs.get(i).cloned());
                    // Nothing rode along with the facts (a first run): a new key pair's round
                    // trip observes the client's resources too, so its converge phase needs no
                    // round trip to look. The key pair is not among them.
                    let fold = match &prefetched {
                        None => Some(guess(&facts)).filter(|o| !o.is_empty()),
                        Some(_) => None,
                    };
                    let made = ensure_keypair(
                        host,
                        &*remote,
                        &kp,
                        seen,
                        fold.as_ref(),
                        check,
                        timeout,
                        sink,
                    )
                    .await;
                    made.map(|(key, observed)| {
                        if let (Some(observation), Some(observed)) = (fold, observed) {
                            prefetched = Some(Prefetched {
                                observation,
                                observed,
                            });
                        }
                        key
                    })
                }
                Err(e) => Err(Stop::Role(e)),
            };
            Some((flavor, key))
        }
        None => None,
    };
    Ok((
        HostState {
            remote,
            facts,
            prefetched,
        },
        client,
    ))
}

/// The key lines a server gets: its clients' public keys from this run, and the clients whose
/// key is unknown here (outside this run, or not made yet) whose lines are kept as they are.
fn server_client_keys(
    fleet: &FleetSettings,
    server: &str,
    public: &HashMap<String, Option<String>>,
) -> (Vec<ClientKey>, BTreeSet<String>) {
    let mut keys = Vec::new();
    let mut keep = BTreeSet::new();
    for c in fleet.clients.values().filter(|c| c.server == server) {
        match public.get(&c.host) {
            Some(Some(k)) => keys.push(ClientKey {
                client: c.host.clone(),
                from: client_source_address(fleet, &c.host),
                key: k.clone(),
            }),
            _ => {
                keep.insert(c.host.clone());
            }
        }
    }
    (keys, keep)
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
