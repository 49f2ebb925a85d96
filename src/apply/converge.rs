//! One host's resources: observe them all in one round trip, plan each (pure), converge the
//! changes in order; and the client key pair, which is done right after the facts.

use std::time::Duration;

use super::stop::Stop;
use super::{Prefetched, Sink};
use crate::report::{Event, ResourceStatus};
use crate::resources::{KeyPair, Observed, Plan, PlanContext, Resource, batch};
use crate::roles;
use crate::ssh::{Remote, RemoteCommand};

/// Observes, plans and (unless `check`) generates a key pair; returns its public key
/// (`None` in check mode when it does not exist yet).
pub(super) async fn ensure_keypair(
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
            Err(Stop::Plan {
                host: host.to_string(),
                source: e,
            })
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
    let snippets: Vec<String> = resources.iter().map(|r| r.observe_script()).collect();
    let observed = match prefetched {
        Some(p) if p.scripts == snippets => p.observed.clone(),
        other => {
            if other.is_some() {
                tracing::debug!("{host}: the facts changed since the last run; observing again");
            }
            observe(host, remote, &snippets, timeout).await?
        }
    };
    plan_and_converge(host, remote, resources, &observed, check, diff, sink).await
}

/// The observation round trip of [`converge_host`].
async fn observe(
    host: &str,
    remote: &dyn Remote,
    snippets: &[String],
    timeout: Duration,
) -> Result<Vec<Observed>, Stop> {
    let nonce = batch::nonce();
    let script = batch::observe_script(snippets, &nonce);
    // Observation is read-only: when its output comes back cut short (seen rarely over a
    // loaded mux connection), it is simply asked again.
    let mut attempt = 0;
    let (out, observed) = loop {
        attempt += 1;
        let out = remote
            .run(RemoteCommand::new("observe", script.clone()).timeout(timeout))
            .await?;
        match batch::split(&out.stdout_str(), &nonce, snippets.len()) {
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
                return Err(Stop::Plan {
                    host: host.to_string(),
                    source: e,
                });
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
                    let stop = Stop::converge(host, &id, out.status, &out.stderr_str());
                    sink.emit(event(ResourceStatus::Failed, stop.to_string(), None, false));
                    return Err(stop);
                }
            }
        }
    }
    Ok(changed)
}
