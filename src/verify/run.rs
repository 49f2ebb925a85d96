//! The IO driver of `verify`: connect to every host at once, one observation round trip each,
//! one more per client (marker + ssh path probe), then one marker read per server and poll
//! until every marker arrived or the deadline passed. The checks are decided in
//! [`super::checks`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checks::{self, ClientInput, Marker, ServerInput};
use super::observe::{self, ClientObs, PathObs, ServerObs};
use super::{CheckResult, Report};
use crate::apply::Connector;
use crate::settings::{ClientFlavor, FleetSettings};
use crate::ssh::{Remote, RemoteCommand, SshError};

pub struct Options {
    pub forks: usize,
    pub marker_timeout: Duration,
    pub step_timeout: Duration,
    /// The build servers should run (to compare hashes).
    pub binary: Result<PathBuf, String>,
}

/// Why a host could not be observed.
struct Unreached {
    detail: String,
    /// A transport failure (exit code 4) rather than a host that answered nonsense.
    transport: bool,
}

enum Obs {
    Client(ClientObs),
    Server(ServerObs),
}

struct Host {
    remote: Arc<dyn Remote>,
    obs: Obs,
}

async fn run_step(
    remote: &dyn Remote,
    step: &str,
    script: String,
    timeout: Duration,
) -> Result<String, Unreached> {
    let out = remote
        .run(RemoteCommand::new(step, script).timeout(timeout))
        .await
        .map_err(|e: SshError| Unreached {
            transport: e.is_unreachable(),
            detail: e.to_string(),
        })?;
    if !out.success() {
        return Err(Unreached {
            transport: false,
            detail: format!(
                "{}: step '{step}' failed (exit {:?}): {}",
                remote.host(),
                out.status,
                observe::clean(&out.stderr_str())
            ),
        });
    }
    let mut text = out.stdout;
    text.truncate(observe::MAX_OUTPUT);
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// SHA-256 of a file, hex.
fn sha256_file(path: &std::path::Path) -> Result<String, String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Runs `f` over `items` with at most `forks` at once; results in input order.
async fn parallel<T, R, F, Fut>(forks: usize, items: Vec<T>, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(forks.max(1)));
    let f = Arc::new(f);
    let mut set = tokio::task::JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let sem = sem.clone();
        let f = f.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, f(item).await)
        });
    }
    let mut out: Vec<(usize, R)> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(v) = r {
            out.push(v);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// The key path a client's dump tool uses, as apply chose it.
fn client_key(settings: &crate::settings::ClientSettings, obs: &ClientObs) -> String {
    match crate::roles::effective_flavor(settings, &obs.facts) {
        ClientFlavor::Netdump => crate::roles::netdump_client::KEY_PATH.to_string(),
        _ => crate::roles::kdump_client::keypair(settings, &obs.facts)
            .map(|k| k.path)
            .unwrap_or_default(),
    }
}

/// Whether this client's console should reach the receiver (the inventory turned it on).
fn marker_applies(settings: &crate::settings::ClientSettings, obs: &ClientObs) -> bool {
    match crate::roles::effective_flavor(settings, &obs.facts) {
        ClientFlavor::Netdump => !settings
            .sysconfig
            .netlogaddr
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case("none")),
        _ => settings.kdump.netconsole,
    }
}

/// One client's marker on its way: (inventory name, source address, marker text).
type Wanted = (String, IpAddr, String);
/// Per client: seconds until its marker was seen, and whether the receiver has its console log.
type SeenState = BTreeMap<String, (Option<f64>, bool)>;
/// One server's marker read: (server, its session, its dump directory, the markers).
type ReadJob = (String, Arc<dyn Remote>, String, Vec<Wanted>);

/// Verifies `selected` hosts (inventory names of servers and clients).
pub async fn verify(
    fleet: &FleetSettings,
    selected: &[String],
    opts: &Options,
    connector: Arc<dyn Connector>,
) -> Report {
    let started = Instant::now();
    let sel: BTreeSet<&String> = selected.iter().collect();
    // Servers of selected clients are read (never reported) even when not selected: the
    // markers arrive there.
    let mut observe_hosts: Vec<String> = fleet
        .targets
        .keys()
        .filter(|h| {
            sel.contains(h) && (fleet.clients.contains_key(*h) || fleet.servers.contains_key(*h))
        })
        .cloned()
        .collect();
    for c in selected.iter().filter_map(|h| fleet.clients.get(h)) {
        if fleet.servers.contains_key(&c.server) && !observe_hosts.contains(&c.server) {
            observe_hosts.push(c.server.clone());
        }
    }
    let controller_sha = {
        let b = opts.binary.clone();
        tokio::task::spawn_blocking(move || b.and_then(|p| sha256_file(&p)))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    };

    // Round trip 1: connect and observe, every host at once.
    let fleet_a = Arc::new(fleet.clone());
    let timeout = opts.step_timeout;
    let observed: Vec<(String, Result<Host, Unreached>)> = parallel(opts.forks, observe_hosts, {
        let fleet = fleet_a.clone();
        let connector = connector.clone();
        move |host: String| {
            let fleet = fleet.clone();
            let connector = connector.clone();
            async move {
                let r = async {
                    let target = fleet.targets.get(&host).ok_or_else(|| Unreached {
                        transport: false,
                        detail: format!("{host}: not in the inventory"),
                    })?;
                    let remote = connector.connect(target).await.map_err(|e| Unreached {
                        transport: e.is_unreachable(),
                        detail: e.to_string(),
                    })?;
                    let (script, is_client) = match fleet.clients.get(&host) {
                        Some(c) => {
                            let keys = crate::roles::client_key_paths(c);
                            (
                                observe::client_script(
                                    &c.server_address,
                                    &observe::ClientPaths { keys: &keys },
                                ),
                                true,
                            )
                        }
                        None => match fleet.servers.get(&host) {
                            Some(s) => (observe::server_script(s), false),
                            None => {
                                return Err(Unreached {
                                    transport: false,
                                    detail: format!("{host}: neither a server nor a client"),
                                });
                            }
                        },
                    };
                    let text = run_step(remote.as_ref(), "verify observe", script, timeout).await?;
                    let obs = if is_client {
                        ClientObs::parse(&text).map(Obs::Client)
                    } else {
                        ServerObs::parse(&text).map(Obs::Server)
                    }
                    .map_err(|e| Unreached {
                        transport: false,
                        detail: format!("{host}: observation: {e}"),
                    })?;
                    Ok(Host { remote, obs })
                }
                .await;
                (host, r)
            }
        }
    })
    .await;
    let mut round_trips: BTreeMap<String, u32> = BTreeMap::new();
    let mut hosts: BTreeMap<String, Host> = BTreeMap::new();
    let mut unreached: BTreeMap<String, Unreached> = BTreeMap::new();
    for (h, r) in observed {
        round_trips.insert(h.clone(), 1);
        match r {
            Ok(x) => {
                hosts.insert(h, x);
            }
            Err(e) => {
                unreached.insert(h, e);
            }
        }
    }
    let server_obs = |name: &str| -> Option<&ServerObs> {
        match hosts.get(name).map(|h| &h.obs) {
            Some(Obs::Server(o)) => Some(o),
            _ => None,
        }
    };
    // Where each server's receiver must be bound: the addresses its clients send to.
    let facing = |server: &str| -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = fleet
            .clients
            .values()
            .filter(|c| c.server == server)
            .filter_map(|c| c.server_address.parse().ok())
            .collect();
        if let Some(s) = fleet.servers.get(server)
            && let Ok(a) = s.address.parse()
        {
            v.push(a);
        }
        v
    };
    let receiver_up = |server: &str| -> bool {
        server_obs(server).is_some_and(|o| {
            let f = facing(server);
            let bound = o.udp_bound();
            if f.is_empty() {
                !bound.is_empty()
            } else {
                checks::receiver_hears(&bound, &f)
            }
        })
    };

    // Round trip 2 (clients): the marker into the kernel log, then the ssh path probe.
    let nonce = crate::resources::batch::nonce();
    struct Step2 {
        host: String,
        remote: Arc<dyn Remote>,
        script: String,
    }
    let mut step2 = Vec::new();
    let mut markers: BTreeMap<String, (String, Marker)> = BTreeMap::new();
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for (name, h) in &hosts {
        let (Obs::Client(o), Some(c)) = (&h.obs, fleet.clients.get(name)) else {
            continue;
        };
        if !sel.contains(name) {
            continue;
        }
        let key = client_key(c, o);
        let marker = if !marker_applies(c, o) {
            (String::new(), Marker::NotApplicable)
        } else if !receiver_up(&c.server) {
            (String::new(), Marker::Blocked)
        } else {
            (
                observe::marker(&nonce, name),
                Marker::NotSeen {
                    secs: 0,
                    log: false,
                },
            )
        };
        let level = checks::marker_level(o.console_loglevel());
        let script = observe::path_script(
            (!marker.0.is_empty()).then_some((marker.0.as_str(), level)),
            &key,
            &c.server_address,
        );
        step2.push(Step2 {
            host: name.clone(),
            remote: h.remote.clone(),
            script,
        });
        markers.insert(name.clone(), marker);
        keys.insert(name.clone(), key);
    }
    let paths: Vec<(String, Result<PathObs, String>, Instant)> =
        parallel(opts.forks, step2, move |s: Step2| async move {
            let r = run_step(s.remote.as_ref(), "verify ssh path", s.script, timeout)
                .await
                .map(|t| PathObs::parse(&t))
                .map_err(|e| e.detail);
            (s.host, r, Instant::now())
        })
        .await;
    let mut path_obs: BTreeMap<String, (Result<PathObs, String>, Instant)> = BTreeMap::new();
    for (h, r, t) in paths {
        *round_trips.entry(h.clone()).or_default() += 1;
        if let Ok(p) = &r
            && p.marker_written == Some(false)
            && let Some(m) = markers.get_mut(&h)
        {
            m.1 = Marker::WriteFailed;
        }
        path_obs.insert(h, (r, t));
    }

    // Marker reads: one per server and poll, until every marker arrived or the deadline.
    let mut by_server: BTreeMap<String, Vec<Wanted>> = BTreeMap::new();
    let mut no_source: Vec<String> = Vec::new();
    for (h, (m, state)) in &markers {
        if m.is_empty() || *state == Marker::WriteFailed {
            continue;
        }
        let c = &fleet.clients[h];
        // The receiver names a client's console log by the address its packets come from.
        let ip = match &hosts[h].obs {
            Obs::Client(o) => o
                .facts
                .route
                .as_ref()
                .and_then(|r| r.src.as_deref())
                .and_then(|s| s.parse::<IpAddr>().ok()),
            _ => None,
        };
        match ip {
            Some(ip) => {
                by_server
                    .entry(c.server.clone())
                    .or_default()
                    .push((h.clone(), ip, m.clone()))
            }
            None => no_source.push(h.clone()),
        }
    }
    for h in no_source {
        if let Some(x) = markers.get_mut(&h) {
            x.1 = Marker::NotSeen {
                secs: 0,
                log: false,
            };
        }
    }
    let deadline = opts.marker_timeout;
    let reads: Vec<(String, SeenState, u32)> = parallel(
        opts.forks,
        by_server
            .into_iter()
            .filter_map(|(srv, list)| {
                let remote = hosts.get(&srv)?.remote.clone();
                let dump = fleet.servers.get(&srv)?.dump_dir.clone();
                Some((srv, remote, dump, list))
            })
            .collect(),
        {
            let written: BTreeMap<String, Instant> =
                path_obs.iter().map(|(h, (_, t))| (h.clone(), *t)).collect();
            move |(srv, remote, dump, list): ReadJob| {
                let written = written.clone();
                async move {
                    let wanted: Vec<(IpAddr, String)> =
                        list.iter().map(|(_, ip, m)| (*ip, m.clone())).collect();
                    let script = observe::marker_read_script(&dump, &wanted);
                    let start = Instant::now();
                    let mut state: SeenState = list
                        .iter()
                        .map(|(h, _, _)| (h.clone(), (None, false)))
                        .collect();
                    let mut reads = 0u32;
                    loop {
                        reads += 1;
                        if let Ok(text) =
                            run_step(remote.as_ref(), "verify markers", script.clone(), timeout)
                                .await
                        {
                            for (i, n) in observe::parse_seen(&text, list.len()) {
                                let h = &list[i].0;
                                let e = state.entry(h.clone()).or_insert((None, false));
                                e.1 = n.is_some();
                                if n.unwrap_or(0) > 0 && e.0.is_none() {
                                    let since = written.get(h).copied().unwrap_or(start);
                                    e.0 = Some(since.elapsed().as_secs_f64());
                                }
                            }
                        }
                        if state.values().all(|(s, _)| s.is_some()) || start.elapsed() >= deadline {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    (srv, state, reads)
                }
            }
        },
    )
    .await;
    for (srv, state, reads) in reads {
        *round_trips.entry(srv).or_default() += reads;
        for (h, (seen, log)) in state {
            if let Some(m) = markers.get_mut(&h) {
                m.1 = match seen {
                    Some(secs) => Marker::Seen { secs },
                    None => Marker::NotSeen {
                        secs: deadline.as_secs(),
                        log,
                    },
                };
            }
        }
    }

    // Decide.
    let mut results: Vec<CheckResult> = Vec::new();
    let mut unreachable = Vec::new();
    let mut dumps: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for name in fleet.targets.keys().filter(|h| sel.contains(h)) {
        if let Some(u) = unreached.get(name) {
            results.push(CheckResult {
                host: name.clone(),
                check: checks::REACHABLE.into(),
                ok: false,
                detail: observe::clean(&u.detail),
                fix: "check that the host is up and answers ssh as the inventory says (address, user, key, pinned host key)".into(),
            });
            if u.transport {
                unreachable.push(name.clone());
            }
            continue;
        }
        let Some(Host {
            obs: Obs::Client(o),
            ..
        }) = hosts.get(name)
        else {
            continue;
        };
        let c = &fleet.clients[name];
        let path = match path_obs.get(name) {
            Some((Ok(p), _)) => Ok(p),
            Some((Err(e), _)) => Err(e.clone()),
            None => Err("not run".to_string()),
        };
        let mut marker = markers
            .get(name)
            .map(|m| m.1.clone())
            .unwrap_or(Marker::NotApplicable);
        if marker != Marker::NotApplicable && unreached.contains_key(&c.server) {
            marker = Marker::Blocked;
        }
        results.extend(checks::client_checks(&ClientInput {
            settings: c,
            obs: o,
            path,
            marker,
            key: keys.get(name).cloned().unwrap_or_default(),
        }));
        if let Some(ram) = o.ram_bytes() {
            let flavor = crate::roles::effective_flavor(c, &o.facts);
            dumps.entry(c.server.clone()).or_default().insert(
                name.clone(),
                checks::expected_dump_bytes(ram, flavor, &c.kdump.core_collector),
            );
        }
    }
    // Servers after their clients' sizes are known; placed where the inventory has them.
    let mut server_results: BTreeMap<String, Vec<CheckResult>> = BTreeMap::new();
    for (name, s) in &fleet.servers {
        if !sel.contains(name) {
            continue;
        }
        let Some(o) = server_obs(name) else { continue };
        let unchecked: Vec<String> = fleet
            .clients
            .values()
            .filter(|c| {
                &c.server == name && markers.get(&c.host).is_some_and(|m| m.1 == Marker::Blocked)
            })
            .map(|c| c.host.clone())
            .collect();
        server_results.insert(
            name.clone(),
            checks::server_checks(&ServerInput {
                settings: s,
                obs: o,
                controller_sha256: controller_sha.clone(),
                client_dumps: dumps.remove(name).unwrap_or_default(),
                client_facing: facing(name),
                markers_unchecked: unchecked,
                sink_available: fleet
                    .clients
                    .values()
                    .filter(|c| &c.server == name)
                    .filter_map(|c| match path_obs.get(&c.host) {
                        Some((Ok(p), _)) => p.probe.as_ref().map(|p| p.available_bytes),
                        _ => None,
                    })
                    .min(),
            }),
        );
    }
    let mut ordered = Vec::new();
    for name in fleet.targets.keys().filter(|h| sel.contains(h)) {
        if let Some(r) = server_results.remove(name) {
            ordered.extend(r);
        }
        ordered.extend(results.iter().filter(|r| &r.host == name).cloned());
    }
    round_trips.retain(|h, _| sel.contains(h) || fleet.servers.contains_key(h));
    Report {
        results: ordered,
        unreachable,
        round_trips,
        elapsed: started.elapsed(),
    }
}
