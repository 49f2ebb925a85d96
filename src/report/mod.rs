//! What `apply` tells the user: events as they happen (progress bar + lines on a TTY, plain
//! lines otherwise, or JSON lines), then a recap per host.

pub mod human;
pub mod json;
pub mod junit;

use serde::Serialize;

/// Final state of one resource in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    Ok,
    Changed,
    Failed,
}

/// How a host ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum HostOutcome {
    Ok,
    Changed,
    Failed(String),
    Unreachable(String),
    Skipped(String),
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A host entered a phase (connect, facts, keys, observe, converge).
    Phase {
        host: String,
        phase: String,
    },
    Resource {
        host: String,
        resource: String,
        status: ResourceStatus,
        summary: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
        /// Check mode: the change was predicted, not made.
        check: bool,
    },
    Warning {
        host: String,
        message: String,
    },
    HostDone {
        host: String,
        outcome: HostOutcome,
    },
}

/// Counts per host, Ansible-recap style.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostRecap {
    pub host: String,
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
    pub unreachable: u32,
    pub skipped: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Recap {
    pub hosts: Vec<HostRecap>,
    pub check: bool,
    pub elapsed_secs: f64,
}

impl Recap {
    /// Builds the recap from the full event list, hosts in the given order.
    pub fn from_events(
        order: &[String],
        events: &[Event],
        check: bool,
        elapsed_secs: f64,
    ) -> Recap {
        let mut hosts: Vec<HostRecap> = order
            .iter()
            .map(|h| HostRecap {
                host: h.clone(),
                ..Default::default()
            })
            .collect();
        let find = |hosts: &mut Vec<HostRecap>, h: &str| -> usize {
            match hosts.iter().position(|r| r.host == h) {
                Some(i) => i,
                None => {
                    hosts.push(HostRecap {
                        host: h.to_string(),
                        ..Default::default()
                    });
                    hosts.len() - 1
                }
            }
        };
        for e in events {
            match e {
                Event::Resource { host, status, .. } => {
                    let i = find(&mut hosts, host);
                    match status {
                        ResourceStatus::Ok => hosts[i].ok += 1,
                        ResourceStatus::Changed => hosts[i].changed += 1,
                        ResourceStatus::Failed => hosts[i].failed += 1,
                    }
                }
                Event::HostDone { host, outcome } => {
                    let i = find(&mut hosts, host);
                    match outcome {
                        HostOutcome::Unreachable(m) => {
                            hosts[i].unreachable += 1;
                            hosts[i].message = Some(m.clone());
                        }
                        HostOutcome::Skipped(m) => {
                            hosts[i].skipped += 1;
                            hosts[i].message = Some(m.clone());
                        }
                        HostOutcome::Failed(m) => {
                            if hosts[i].failed == 0 {
                                hosts[i].failed = 1;
                            }
                            hosts[i].message = Some(m.clone());
                        }
                        HostOutcome::Ok | HostOutcome::Changed => {}
                    }
                }
                _ => {}
            }
        }
        Recap {
            hosts,
            check,
            elapsed_secs,
        }
    }

    /// 0 ok, 2 a host failed, 4 a host unreachable (failed wins over unreachable).
    pub fn exit_code(&self) -> i32 {
        if self.hosts.iter().any(|h| h.failed > 0) {
            2
        } else if self.hosts.iter().any(|h| h.unreachable > 0) {
            4
        } else {
            0
        }
    }
}

/// Receives events as they happen. Implementations must be cheap: they run on the apply path.
pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);
    fn finish(&self, recap: &Recap);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(host: &str, status: ResourceStatus) -> Event {
        Event::Resource {
            host: host.into(),
            resource: "file:/x".into(),
            status,
            summary: String::new(),
            diff: None,
            check: false,
        }
    }

    #[test]
    fn recap_counts_and_exit_codes() {
        let order = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let events = vec![
            res("a", ResourceStatus::Ok),
            res("a", ResourceStatus::Changed),
            Event::HostDone {
                host: "a".into(),
                outcome: HostOutcome::Changed,
            },
            Event::HostDone {
                host: "b".into(),
                outcome: HostOutcome::Unreachable("down".into()),
            },
            Event::HostDone {
                host: "c".into(),
                outcome: HostOutcome::Skipped("server failed".into()),
            },
        ];
        let r = Recap::from_events(&order, &events, false, 1.0);
        assert_eq!((r.hosts[0].ok, r.hosts[0].changed), (1, 1));
        assert_eq!(r.hosts[1].unreachable, 1);
        assert_eq!(r.hosts[2].skipped, 1);
        assert_eq!(r.exit_code(), 4);
        let mut events = events;
        events.push(res("c", ResourceStatus::Failed));
        assert_eq!(
            Recap::from_events(&order, &events, false, 1.0).exit_code(),
            2
        );
        assert_eq!(
            Recap::from_events(&order, &events[..3], false, 1.0).exit_code(),
            0
        );
    }
}
