//! One host's resources: observe them all in one round trip, plan each (pure), converge the
//! changes in order; and the client key pair, which is done right after the facts.

use std::time::Duration;

use super::stop::Stop;
use super::{Prefetched, Sink};
use crate::report::{Event, ResourceStatus};
use crate::resources::{Change, KeyPair, Observed, Plan, PlanContext, Resource, batch};
use crate::roles;
use crate::ssh::{Remote, RemoteCommand};

/// Observes, plans and (unless `check`) generates a key pair; returns its public key
/// (`None` in check mode when it does not exist yet). When it generates one and `then_observe`
/// is given, the same round trip observes that too, and what it printed comes back (`None` when
/// no key was made or the output was cut short).
#[allow(clippy::too_many_arguments)]
pub(super) async fn ensure_keypair(
    host: &str,
    remote: &dyn Remote,
    kp: &KeyPair,
    observed: Option<crate::resources::Observed>,
    then_observe: Option<&batch::Observation>,
    check: bool,
    timeout: Duration,
    sink: &Sink,
) -> Result<(Option<String>, Option<Vec<Observed>>), Stop> {
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
            Err(Stop::Plan {
                host: host.to_string(),
                source: e,
            })
        }
        Ok(Plan::Ok) => {
            emit(ResourceStatus::Ok, String::new(), false);
            Ok((
                KeyPair::public_key(&observed.text).and_then(|k| roles::key_material(&k)),
                None,
            ))
        }
        Ok(Plan::Change(c)) if check => {
            emit(ResourceStatus::Changed, c.summary, true);
            Ok((None, None))
        }
        Ok(Plan::Change(c)) => {
            let nonce = batch::nonce();
            let script = match then_observe {
                // The observation runs only once the key pair is there, in sections of their
                // own after the key step's output.
                Some(o) => format!("(\n{}\n) || exit $?\n{}", c.script, o.script(&nonce)),
                None => c.script,
            };
            let out = remote
                .run(RemoteCommand::new(format!("converge {id}"), script).timeout(c.timeout))
                .await?;
            let text = out.stdout_str();
            let key_output = batch::preamble(&text);
            match KeyPair::public_key(key_output).and_then(|k| roles::key_material(&k)) {
                Some(k) if out.success() => {
                    emit(ResourceStatus::Changed, c.summary, false);
                    let observed = then_observe.and_then(|o| {
                        batch::split(&text, &nonce, o.len())
                            .map_err(|e| {
                                tracing::debug!("{host}: observation after the key pair: {e}")
                            })
                            .ok()
                    });
                    Ok((Some(k), observed))
                }
                _ => {
                    let stop = Stop::converge(host, &id, out.status, &out.stderr_str());
                    emit(ResourceStatus::Failed, stop.to_string(), false);
                    Err(stop)
                }
            }
        }
    }
}

/// Observe everything in one round trip (none when phase 1 already observed exactly these
/// snippets), then plan and converge in order. Returns whether anything changed; stops at the
/// first failure.
#[allow(clippy::too_many_arguments)]
pub(super) async fn converge_host(
    host: &str,
    remote: &dyn Remote,
    resources: &[Box<dyn Resource>],
    prefetched: Option<&Prefetched>,
    check: bool,
    diff: bool,
    timeout: Duration,
    sink: &Sink,
) -> Result<bool, Stop> {
    // The phase is reported either way: with a prefetched observation it is over at once.
    sink.phase(host, "observe");
    let wanted = batch::Observation::of(resources);
    let observed = match prefetched {
        Some(p) if p.observation == wanted => p.observed.clone(),
        other => {
            if other.is_some() {
                tracing::debug!("{host}: the facts changed since the last run; observing again");
            }
            observe(host, remote, &wanted, timeout).await?
        }
    };
    plan_and_converge(host, remote, resources, &observed, check, diff, sink).await
}

/// The observation round trip of [`converge_host`].
async fn observe(
    host: &str,
    remote: &dyn Remote,
    observation: &batch::Observation,
    timeout: Duration,
) -> Result<Vec<Observed>, Stop> {
    let nonce = batch::nonce();
    let mut command = RemoteCommand::new("observe", observation.script(&nonce)).timeout(timeout);
    if !observation.may_wait {
        command = command.read_only();
    }
    // Observation is read-only: when its output comes back cut short (seen rarely over a
    // loaded mux connection), it is simply asked again.
    let mut attempt = 0;
    let (out, observed) = loop {
        attempt += 1;
        let out = remote.run(command.clone()).await?;
        match batch::split(&out.stdout_str(), &nonce, observation.len()) {
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
    observed.map_err(|e| Stop::Observe {
        host: host.to_string(),
        reason: e.to_string(),
        status: out.status,
        bytes: out.stdout.len(),
        stderr_tail: out.stderr_str().lines().last().unwrap_or("").to_string(),
    })
}

/// Plans each resource on its observation and, unless `check`, runs the changes in order.
async fn plan_and_converge(
    host: &str,
    remote: &dyn Remote,
    resources: &[Box<dyn Resource>],
    observed: &[Observed],
    check: bool,
    diff: bool,
    sink: &Sink,
) -> Result<bool, Stop> {
    let mut ctx = PlanContext::default();
    let event = |id: &str, status, summary: String, d: Option<String>, is_check| Event::Resource {
        host: host.to_string(),
        resource: id.to_string(),
        status,
        summary,
        diff: if diff { d } else { None },
        check: is_check,
    };
    // Plan in order. A change counts as made for the plans after it (`on_change`): if it then
    // fails, nothing after it runs, as if planning had stopped there.
    let mut changes: Vec<(String, Change)> = Vec::new();
    let mut plan_error = None;
    for (r, obs) in resources.iter().zip(observed.iter()) {
        let id = r.id();
        match r.plan(obs, &ctx) {
            Err(e) => {
                plan_error = Some((id, e));
                break;
            }
            Ok(Plan::Ok) => sink.emit(event(&id, ResourceStatus::Ok, String::new(), None, check)),
            Ok(Plan::Change(c)) => {
                ctx.changed.insert(id.clone());
                changes.push((id, c));
            }
        }
    }
    let changed = !changes.is_empty();
    if check {
        for (id, c) in changes {
            sink.emit(event(&id, ResourceStatus::Changed, c.summary, c.diff, true));
        }
    } else if changed {
        sink.phase(host, "converge");
        for group in batch::converge_groups(&changes) {
            let group = &changes[group];
            let ran = run_changes(host, remote, group).await?;
            for ((id, c), result) in group.iter().zip(ran) {
                match result {
                    Ok(()) => sink.emit(event(
                        id,
                        ResourceStatus::Changed,
                        c.summary.clone(),
                        c.diff.clone(),
                        false,
                    )),
                    Err(stop) => {
                        sink.emit(event(
                            id,
                            ResourceStatus::Failed,
                            stop.to_string(),
                            None,
                            false,
                        ));
                        return Err(stop);
                    }
                }
            }
        }
    }
    if let Some((id, e)) = plan_error {
        sink.emit(event(
            &id,
            ResourceStatus::Failed,
            e.to_string(),
            None,
            check,
        ));
        return Err(Stop::Plan {
            host: host.to_string(),
            source: e,
        });
    }
    Ok(changed)
}

/// Runs consecutive changes in one round trip (one alone as it is); returns each change's
/// result, in order, up to and including the first that failed.
async fn run_changes(
    host: &str,
    remote: &dyn Remote,
    group: &[(String, Change)],
) -> Result<Vec<Result<(), Stop>>, Stop> {
    if let [(id, c)] = group {
        let mut cmd =
            RemoteCommand::new(format!("converge {id}"), c.script.clone()).timeout(c.timeout);
        if let Some(s) = &c.stdin {
            cmd = cmd.stdin(s.clone());
        }
        let out = remote.run(cmd).await?;
        return Ok(vec![if out.success() {
            Ok(())
        } else {
            Err(Stop::converge(host, id, out.status, &out.stderr_str()))
        }]);
    }
    let nonce = batch::nonce();
    let steps: Vec<batch::Step<'_>> = group
        .iter()
        .map(|(_, c)| batch::Step {
            script: &c.script,
            stdin_len: c.stdin.as_ref().map(Vec::len),
        })
        .collect();
    let stdin: Vec<u8> = group
        .iter()
        .filter_map(|(_, c)| c.stdin.as_deref())
        .flatten()
        .copied()
        .collect();
    let timeout = group.iter().map(|(_, c)| c.timeout).sum();
    let ids: Vec<&str> = group.iter().map(|(id, _)| id.as_str()).collect();
    let out = remote
        .run(
            RemoteCommand::new(
                format!("converge {}", ids.join(", ")),
                batch::converge_script(&steps, &nonce),
            )
            .stdin(stdin)
            .timeout(timeout),
        )
        .await?;
    let ran = batch::split_ran(&out.stdout_str(), &nonce, group.len());
    let mut results = Vec::with_capacity(ran.len());
    for ((id, _), o) in group.iter().zip(&ran) {
        if o.status == 0 {
            results.push(Ok(()));
        } else {
            results.push(Err(Stop::converge(host, id, Some(o.status), &o.text)));
            return Ok(results);
        }
    }
    if ran.len() < group.len() {
        // The script ended (killed, cut short) before this step reported.
        let (id, _) = &group[ran.len()];
        let why = format!(
            "{}the batched converge ended before this step finished",
            out.stderr_str()
        );
        results.push(Err(Stop::converge(host, id, out.status, &why)));
    }
    Ok(results)
}
