//! `provision test-crash`: crash clients on purpose — through sysrq, lkdtm or what any kernel
//! does (`--kind`) — and prove that the dump and the console log arrived at their server, that
//! the crash is the one provoked, and that the host came back.
//!
//! [`verify`] and [`kind`] are pure; [`phases`] drives one host through the phases, acting on
//! hosts only through the [`Connector`](crate::apply::Connector); this file is the command:
//! hosts, concurrency, output.

pub mod error;
pub mod kind;
pub mod phases;
pub mod verify;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::apply::Connector;
use crate::fleet::{ConnectArgs, Output, SshConnector};
use crate::report::junit;
use crate::settings::{FleetSettings, PasswordInput};

pub use error::CrashTestError;
pub use kind::CrashKind;
pub use phases::{HostRun, Timeouts};
pub use verify::{CrashSummary, DumpFormat};

#[derive(Args, Debug)]
pub struct TestCrashArgs {
    /// Hosts or groups to crash (Ansible host patterns); default: every client.
    #[arg(value_name = "HOST")]
    pub hosts: Vec<String>,
    #[arg(short = 'i', long = "inventory", value_name = "INVENTORY")]
    pub inventory: PathBuf,
    /// Further restrict the hosts (Ansible host pattern).
    #[arg(long, short = 'l', value_name = "PATTERN")]
    pub limit: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// Write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Seconds to wait for the crash to show on the receiver's console log.
    #[arg(long, default_value_t = 120)]
    pub crash_timeout: u64,
    /// Seconds to wait for a complete dump on the server.
    #[arg(long, default_value_t = 900)]
    pub dump_timeout: u64,
    /// Seconds to wait for the host to come back with a new boot id.
    #[arg(long, default_value_t = 900)]
    pub reboot_timeout: u64,
    /// What crash to provoke: sysrq (every kernel), panic, bug, oops, warning, soft-lockup (lkdtm,
    /// loaded on demand), hung-task (lkdtm, else a writer on a frozen filesystem), oom. The
    /// sysctls a kind needs (panic_on_oops, panic_on_warn, hung_task_panic, ...) are set live
    /// for the run only.
    #[arg(long, value_enum, default_value_t = CrashKind::Sysrq)]
    pub kind: CrashKind,
    /// Crash hosts this many at a time.
    #[arg(long, short = 'f', default_value_t = 8)]
    pub forks: usize,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// How one phase of a host's test crash went (time, verdict, what was seen), for the report.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub secs: f64,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub host: String,
    pub passed: bool,
    /// The crash kind provoked (`--kind`).
    pub kind: CrashKind,
    pub phases: Vec<PhaseReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump_format: Option<DumpFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The crash the kernel log shows, as `provision triage` names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_title: Option<String>,
    /// Triage's kind of that crash (SYSRQ, PANIC, HANG, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_signature: Option<String>,
}

/// The JUnit failure message of a host: the error, and the crash it showed when one is known.
pub fn junit_message(r: &HostResult) -> Option<String> {
    let e = r.error.as_ref()?;
    Some(match (&r.crash_title, &r.crash_signature) {
        (Some(t), Some(s)) => format!("{e} (crash: {t}, signature {s})"),
        _ => e.clone(),
    })
}

/// Runs the phases of one host, recording each one's time and outcome.
struct Recorder {
    phases: Vec<PhaseReport>,
    /// The crash found in the kernel log (set by the verify phase, also when it is not the
    /// expected one).
    crash: Option<CrashSummary>,
}

impl Recorder {
    async fn phase<T, F>(
        &mut self,
        name: &str,
        detail: impl Fn(&T) -> String,
        f: F,
    ) -> Result<T, CrashTestError>
    where
        F: std::future::Future<Output = Result<T, CrashTestError>>,
    {
        let t = Instant::now();
        let r = f.await;
        let secs = t.elapsed().as_secs_f64();
        let (ok, text) = match &r {
            Ok(v) => (true, detail(v)),
            Err(e) => (false, e.to_string()),
        };
        self.phases.push(PhaseReport {
            name: name.into(),
            secs,
            ok,
            detail: text,
        });
        r
    }
}

/// Runs every phase of one host and gathers its result.
pub async fn test_host(run: HostRun) -> HostResult {
    let mut rec = Recorder {
        phases: Vec::new(),
        crash: None,
    };
    let r = run_phases(&run, &mut rec).await;
    let (dump_dir, dump_format, error) = match r {
        Ok((d, f)) => (Some(d), Some(f), None),
        Err(e) => {
            if let CrashTestError::UnexpectedCrash {
                title,
                got_kind,
                signature,
                ..
            } = &e
            {
                rec.crash = Some(CrashSummary {
                    title: title.clone(),
                    kind: got_kind.clone(),
                    signature: signature.clone(),
                });
            }
            (None, None, Some(e.to_string()))
        }
    };
    let (crash_title, crash_kind, crash_signature) = match rec.crash {
        Some(c) => (Some(c.title), Some(c.kind), Some(c.signature)),
        None => (None, None, None),
    };
    HostResult {
        host: run.client.host.clone(),
        passed: error.is_none(),
        kind: run.kind,
        phases: rec.phases,
        dump_dir,
        dump_format,
        error,
        crash_title,
        crash_kind,
        crash_signature,
    }
}

async fn run_phases(
    run: &HostRun,
    rec: &mut Recorder,
) -> Result<(String, DumpFormat), CrashTestError> {
    let (sessions, pre) = rec
        .phase("preflight", |(_, p)| p.detail(), phases::preflight(run))
        .await?;
    let server = sessions.server;
    rec.phase(
        "trigger",
        phases::Triggered::detail,
        phases::trigger(run, sessions.client, &pre),
    )
    .await?;
    rec.phase(
        "console",
        phases::ConsoleSeen::detail,
        phases::wait_console(run, &*server, &pre),
    )
    .await?;
    let arrived = rec
        .phase(
            "dump",
            phases::DumpArrived::detail,
            phases::wait_dump(run, &*server, &pre),
        )
        .await?;
    let verified = rec
        .phase(
            "verify",
            phases::Verified::detail,
            phases::verify(run, &*server, &pre, &arrived),
        )
        .await?;
    rec.crash = verified.crash.clone();
    rec.phase(
        "reboot",
        phases::Rebooted::detail,
        phases::wait_reboot(run, &pre),
    )
    .await?;
    Ok((arrived.dir, verified.format))
}

fn render_human(results: &[HostResult]) -> String {
    let mut s = String::new();
    for r in results {
        s.push_str(&format!(
            "{} {}\n",
            if r.passed { "PASS" } else { "FAIL" },
            r.host
        ));
        if let Some(t) = &r.crash_title {
            s.push_str(&format!(
                "  crash     {t} (signature {})\n",
                r.crash_signature.as_deref().unwrap_or("-")
            ));
        }
        for p in &r.phases {
            s.push_str(&format!(
                "  {:<9} {:>7.1}s  {}  {}\n",
                p.name,
                p.secs,
                if p.ok { "ok  " } else { "FAIL" },
                p.detail
            ));
        }
    }
    let passed = results.iter().filter(|r| r.passed).count();
    s.push_str(&format!(
        "{} passed, {} failed\n",
        passed,
        results.len() - passed
    ));
    s
}

pub async fn run(args: TestCrashArgs, _verbose: u8) -> Result<i32> {
    let (inv, fleet) = match crate::fleet::load_fleet(&args.inventory, PasswordInput::default()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(crate::fleet::exit::USAGE);
        }
    };
    let mut hosts: Vec<String> = if args.hosts.is_empty() {
        fleet.clients.keys().cloned().collect()
    } else {
        let mut v = Vec::new();
        for p in &args.hosts {
            match inv.select(p) {
                Ok(s) => v.extend(s),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(crate::fleet::exit::USAGE);
                }
            }
        }
        v
    };
    if let Some(l) = &args.limit {
        match inv.select(l) {
            Ok(s) => hosts.retain(|h| s.contains(h)),
            Err(e) => {
                eprintln!("error: --limit: {e}");
                return Ok(crate::fleet::exit::USAGE);
            }
        }
    }
    hosts.dedup();
    if let Some(h) = hosts.iter().find(|h| !fleet.clients.contains_key(*h)) {
        eprintln!("error: {h} is not in group netdump_clients; only clients can be crash-tested");
        return Ok(crate::fleet::exit::USAGE);
    }
    if hosts.is_empty() {
        eprintln!("error: no client matches; nothing to crash");
        return Ok(crate::fleet::exit::USAGE);
    }
    let connector: Arc<dyn Connector> = Arc::new(SshConnector {
        options: args.connect.ssh_options(),
    });
    let results = run_hosts(&fleet, &hosts, &args, connector).await;
    match args.output {
        Output::Human => print!("{}", render_human(&results)),
        Output::Json => {
            for r in &results {
                println!("{}", serde_json::to_string(r)?);
            }
        }
    }
    if let Some(path) = &args.junit {
        let cases: Vec<junit::Case> = results
            .iter()
            .map(|r| junit::Case {
                name: r.host.clone(),
                classname: "provision.test-crash".into(),
                passed: r.passed,
                message: junit_message(r),
                duration: Duration::from_secs_f64(r.phases.iter().map(|p| p.secs).sum()),
                output: r
                    .phases
                    .iter()
                    .map(|p| format!("{} {:.1}s {}\n", p.name, p.secs, p.detail))
                    .collect(),
            })
            .collect();
        junit::write(path, "provision", "test-crash", &cases)?;
    }
    Ok(if results.iter().all(|r| r.passed) {
        crate::fleet::exit::OK
    } else {
        crate::fleet::exit::HOST_FAILED
    })
}

async fn run_hosts(
    fleet: &FleetSettings,
    hosts: &[String],
    args: &TestCrashArgs,
    connector: Arc<dyn Connector>,
) -> Vec<HostResult> {
    let sem = Arc::new(tokio::sync::Semaphore::new(args.forks.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, h) in hosts.iter().enumerate() {
        let client = fleet.clients[h].clone();
        let server = fleet.servers.get(&client.server).cloned();
        let ctx = server.map(|server| HostRun {
            client_target: fleet.targets[h].clone(),
            server_target: fleet.targets[&server.host].clone(),
            client,
            server,
            connector: connector.clone(),
            kind: args.kind,
            timeouts: Timeouts::new(
                Duration::from_secs(args.crash_timeout),
                Duration::from_secs(args.dump_timeout),
                Duration::from_secs(args.reboot_timeout),
            ),
        });
        let sem = sem.clone();
        let host = h.clone();
        let kind = args.kind;
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            let r = match ctx {
                Some(ctx) => test_host(ctx).await,
                None => HostResult {
                    host: host.clone(),
                    passed: false,
                    kind,
                    phases: vec![],
                    dump_dir: None,
                    dump_format: None,
                    error: Some(format!(
                        "{host}: its server is not in group netdump_servers"
                    )),
                    crash_title: None,
                    crash_kind: None,
                    crash_signature: None,
                },
            };
            (i, r)
        });
    }
    let mut out: Vec<(usize, HostResult)> = Vec::new();
    while let Some(Ok(r)) = set.join_next().await {
        out.push(r);
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}
