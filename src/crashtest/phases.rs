//! The phases of one host's crash test, one function each, in the order they run: preflight,
//! trigger, console, dump, verify, reboot. Each acts on hosts only through [`Connector`] and
//! [`Remote`] (so tests drive them with a fake host), returns what it learned as a typed value
//! and fails with a [`CrashTestError`] that names the host, the step and what to do.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::apply::Connector;
use crate::resources::sh_quote;
use crate::settings::{ClientFlavor, ClientSettings, ServerSettings};
use crate::ssh::{Remote, RemoteCommand, Target};
use netdump_receiver::events::{EventKind, EventLog};

use super::error::CrashTestError;
use super::kind::{self, CrashKind, LkdtmProbe, Method};
use super::verify::{
    self, CrashSummary, DumpFormat, MIN_DUMP_BYTES, RemoteFile, complete_dump, dmesg_has_crash,
    new_dump_dirs,
};

/// Free space a server needs before its clients are crashed.
pub const MIN_FREE_KB: u64 = 256 * 1024;

/// Deadlines of the waiting phases and how often each looks.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub crash: Duration,
    pub dump: Duration,
    pub reboot: Duration,
    pub console_every: Duration,
    pub dump_every: Duration,
    pub reboot_every: Duration,
}

impl Timeouts {
    pub fn new(crash: Duration, dump: Duration, reboot: Duration) -> Self {
        Timeouts {
            crash,
            dump,
            reboot,
            console_every: Duration::from_secs(2),
            dump_every: Duration::from_secs(3),
            reboot_every: Duration::from_secs(5),
        }
    }
}

/// Everything one host's test needs.
pub struct HostRun {
    pub client: ClientSettings,
    pub server: ServerSettings,
    pub client_target: Target,
    pub server_target: Target,
    pub connector: Arc<dyn Connector>,
    pub kind: CrashKind,
    pub timeouts: Timeouts,
}

impl HostRun {
    fn host(&self) -> &str {
        &self.client.host
    }

    fn dump_dir(&self) -> String {
        self.server.dump_dir.trim_end_matches('/').to_string()
    }
}

/// The sessions preflight opened.
pub struct Sessions {
    pub client: Arc<dyn Remote>,
    pub server: Arc<dyn Remote>,
}

/// What preflight found: the client is armed and the server ready.
#[derive(Debug, Clone)]
pub struct Preflight {
    pub boot_id: String,
    /// The client's source address towards its server (names its dump directories).
    pub ip: String,
    pub flavor: ClientFlavor,
    pub kernel: String,
    pub method: Method,
    pub free_kb: u64,
    /// `up`, `down` or `unknown` (no `ss` on the server).
    pub receiver: String,
    pub dirs_before: BTreeSet<String>,
    pub events_offset: u64,
}

impl Preflight {
    pub fn detail(&self) -> String {
        format!(
            "flavor {:?}, armed, kernel {}, {}, client ip {}, {} KiB free on server, receiver {}",
            self.flavor, self.kernel, self.method, self.ip, self.free_kb, self.receiver
        )
    }
}

/// The crash was started.
#[derive(Debug, Clone)]
pub struct Triggered {
    pub method: Method,
    pub boot_id: String,
    /// Sysctls set for the run (`kernel.panic_on_warn=1`), live only.
    pub sysctls: Vec<String>,
}

impl Triggered {
    pub fn detail(&self) -> String {
        let sysctls = if self.sysctls.is_empty() {
            String::new()
        } else {
            format!(
                " with {} (live only, gone after the reboot)",
                self.sysctls.join(", ")
            )
        };
        format!(
            "{} scheduled{sysctls}, boot id was {}",
            self.method, self.boot_id
        )
    }
}

/// The receiver logged the crash.
#[derive(Debug, Clone)]
pub struct ConsoleSeen {
    pub time: String,
    pub dir: String,
}

impl ConsoleSeen {
    pub fn detail(&self) -> String {
        format!("receiver saw the crash at {} ({})", self.time, self.dir)
    }
}

/// A complete dump directory arrived.
#[derive(Debug, Clone)]
pub struct DumpArrived {
    /// Full path on the server.
    pub dir: String,
    pub files: Vec<RemoteFile>,
}

impl DumpArrived {
    pub fn detail(&self) -> String {
        let names: Vec<String> = self
            .files
            .iter()
            .map(|f| format!("{} ({} bytes)", f.name, f.size))
            .collect();
        format!("{}: {}", self.dir, names.join(", "))
    }
}

/// What arrived is a real dump of the expected crash.
#[derive(Debug, Clone)]
pub struct Verified {
    pub format: DumpFormat,
    pub dump: RemoteFile,
    pub log: String,
    pub console_has_panic: bool,
    /// The receiver's console crash record `log` sits in the same directory.
    pub record_beside: bool,
    pub crash: Option<CrashSummary>,
}

impl Verified {
    pub fn detail(&self) -> String {
        let console = if self.console_has_panic {
            "console log has the panic"
        } else {
            "console log lacks the panic"
        };
        let record = if self.record_beside {
            "; the console crash record is in the same directory"
        } else {
            ""
        };
        let crash = match &self.crash {
            Some(c) => format!("; crash: {} (signature {})", c.title, c.signature),
            None => String::new(),
        };
        format!(
            "{:?}, {} bytes; {} has the crash line; {console}{record}{crash}",
            self.format, self.dump.size, self.log
        )
    }
}

/// The host is back.
#[derive(Debug, Clone)]
pub struct Rebooted {
    pub boot_id: String,
}

impl Rebooted {
    pub fn detail(&self) -> String {
        format!("back with boot id {}", self.boot_id)
    }
}

/// Runs one step; a non-zero exit is an error naming host and step.
async fn sh(remote: &dyn Remote, step: &str, script: String) -> Result<String, CrashTestError> {
    let out = remote
        .run(RemoteCommand::new(step, script).timeout(Duration::from_secs(60)))
        .await?;
    if out.success() {
        Ok(out.stdout_str())
    } else {
        Err(CrashTestError::StepFailed {
            host: remote.host().to_string(),
            step: step.to_string(),
            status: out
                .status
                .map_or_else(|| "by signal".to_string(), |s| s.to_string()),
            stderr: out.stderr_str().trim().to_string(),
        })
    }
}

/// Calls `f` every `every` until it gives a value or `deadline` has passed (tried at least once).
async fn poll<T, F, Fut>(deadline: Duration, every: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// The client is a client whose dump path is armed, the crash kind can be provoked there, its
/// server is reachable with room for a dump; records what later phases compare against.
pub async fn preflight(run: &HostRun) -> Result<(Sessions, Preflight), CrashTestError> {
    let host = run.host().to_string();
    let dump_dir = run.dump_dir();
    let client = run.connector.connect(&run.client_target).await?;
    let server = run.connector.connect(&run.server_target).await?;

    let facts_text = sh(
        &*client,
        "facts",
        crate::facts::probe_script(Some(&run.client.server_address)),
    )
    .await?;
    let facts = crate::facts::parse(&facts_text).map_err(|e| CrashTestError::Facts {
        host: host.clone(),
        reason: e.to_string(),
    })?;
    let flavor = crate::roles::effective_flavor(&run.client, &facts);
    let armed = match flavor {
        ClientFlavor::Netdump => sh(
            &*client,
            "netdump status",
            "service netdump status >/dev/null 2>&1 && echo armed=1 || echo armed=0".into(),
        )
        .await?
        .contains("armed=1"),
        _ => facts.kexec_crash_loaded == Some(true),
    };
    if !armed {
        return Err(match flavor {
            ClientFlavor::Netdump => CrashTestError::NetdumpNotRunning { host },
            _ => CrashTestError::KdumpNotArmed {
                host,
                reserved: facts.kexec_crash_size.unwrap_or(0),
            },
        });
    }
    let reported = facts
        .route
        .as_ref()
        .and_then(|r| r.src.clone())
        .ok_or_else(|| CrashTestError::NoRoute {
            host: host.clone(),
            server_address: run.client.server_address.clone(),
        })?;
    // A value the client reported: it must be an address before it names anything on the
    // server (and it is quoted in every script anyway).
    let ip = reported
        .parse::<std::net::IpAddr>()
        .map_err(|_| CrashTestError::BadSourceAddress {
            host: host.clone(),
            reported: reported.clone(),
        })?
        .to_string();
    let method = crash_method(run, &*client, &facts.kernel).await?;

    let space = sh(
        &*server,
        "server space",
        format!("df -Pk {} | awk 'NR==2 {{print $4}}'", sh_quote(&dump_dir)),
    )
    .await?;
    let free_kb: u64 = space.trim().parse().unwrap_or(0);
    if free_kb < MIN_FREE_KB {
        return Err(CrashTestError::LowSpace {
            server: run.server.host.clone(),
            free_kb,
            dump_dir,
        });
    }
    let receiver = sh(
        &*server,
        "receiver",
        format!(
            "if command -v ss >/dev/null; then ss -Hlun 'sport = :{}' | grep -q . && echo up || echo down; else echo unknown; fi",
            run.server.port
        ),
    )
    .await?;
    let dirs_before: BTreeSet<String> =
        sh(&*server, "list dumps", verify::list_dirs_script(&dump_dir))
            .await?
            .lines()
            .map(str::to_string)
            .collect();
    let events = sh(
        &*server,
        "events offset",
        format!(
            "stat -c %s {}/events.jsonl 2>/dev/null || echo 0",
            sh_quote(&dump_dir)
        ),
    )
    .await?;
    let pre = Preflight {
        boot_id: facts.boot_id.clone(),
        ip,
        flavor,
        kernel: facts.kernel.clone(),
        method,
        free_kb,
        receiver: receiver.trim().to_string(),
        dirs_before,
        events_offset: events.trim().parse().unwrap_or(0),
    };
    Ok((Sessions { client, server }, pre))
}

/// How the kind is provoked on this client: asks for lkdtm (loading it) only when the kind
/// may use it.
async fn crash_method(
    run: &HostRun,
    client: &dyn Remote,
    kernel: &str,
) -> Result<Method, CrashTestError> {
    let host = run.host().to_string();
    let Some(point) = run.kind.lkdtm_point() else {
        return Ok(run
            .kind
            .method(None)
            .expect("kinds without lkdtm always have a method"));
    };
    let probe = kind::parse_lkdtm_probe(&sh(client, "lkdtm", kind::lkdtm_probe_script()).await?);
    let points = match &probe {
        LkdtmProbe::Available(p) => Some(p.as_slice()),
        LkdtmProbe::Absent { .. } => None,
    };
    if let Some(m) = run.kind.method(points) {
        return Ok(m);
    }
    Err(match probe {
        LkdtmProbe::Available(offered) => CrashTestError::NoLkdtmPoint {
            host,
            kind: run.kind.name(),
            kernel: kernel.to_string(),
            point,
            offered: offered.join(" "),
        },
        LkdtmProbe::Absent { module, debugfs } => CrashTestError::NoLkdtm {
            host,
            kind: run.kind.name(),
            kernel: kernel.to_string(),
            why: match (module, debugfs) {
                (true, true) => format!(
                    "module lkdtm exists but `modprobe lkdtm` did not create {}",
                    kind::LKDTM_DIRECT
                ),
                (true, false) => {
                    "module lkdtm exists but debugfs cannot be mounted (kernel lockdown?)".into()
                }
                (false, _) => {
                    "no module lkdtm (`modinfo lkdtm` finds nothing): CONFIG_LKDTM is not set"
                        .into()
                }
            },
            others: CrashKind::without_lkdtm().join("|"),
        },
    })
}

/// Sets the kind's sysctls and starts the crash detached, so the ssh step returns before the
/// kernel dies. Takes the client session and closes it.
pub async fn trigger(
    run: &HostRun,
    client: Arc<dyn Remote>,
    pre: &Preflight,
) -> Result<Triggered, CrashTestError> {
    let out = sh(
        &*client,
        "trigger",
        kind::trigger_script(run.kind, pre.method),
    )
    .await?;
    drop(client);
    Ok(Triggered {
        method: pre.method,
        boot_id: pre.boot_id.clone(),
        sysctls: out
            .lines()
            .filter_map(|l| l.strip_prefix("sysctl "))
            .map(str::to_string)
            .collect(),
    })
}

/// Waits for the receiver's events to show the crash (netconsole / netlog → events.jsonl).
pub async fn wait_console(
    run: &HostRun,
    server: &dyn Remote,
    pre: &Preflight,
) -> Result<ConsoleSeen, CrashTestError> {
    let events_path = format!("{}/events.jsonl", run.dump_dir());
    let script = format!(
        "tail -c +{} {} 2>/dev/null; true",
        pre.events_offset + 1,
        sh_quote(&events_path)
    );
    let found = poll(run.timeouts.crash, run.timeouts.console_every, || async {
        let text = sh(server, "events", script.clone()).await.ok()?;
        EventLog::parse(&text).into_iter().find(|e| {
            e.host == pre.ip && matches!(e.event, EventKind::Crash | EventKind::DumpStarted)
        })
    })
    .await;
    match found {
        Some(e) => Ok(ConsoleSeen {
            time: e.time,
            dir: e.dir,
        }),
        None => Err(CrashTestError::NoCrashSeen {
            host: run.host().to_string(),
            server: run.server.host.clone(),
            ip: pre.ip.clone(),
            secs: run.timeouts.crash.as_secs(),
        }),
    }
}

/// The client's new dump directories and their files, newest first.
async fn new_dirs(
    server: &dyn Remote,
    dump_dir: &str,
    pre: &Preflight,
) -> Option<Vec<(String, Vec<RemoteFile>)>> {
    let now: Vec<String> = sh(server, "list dumps", verify::list_dirs_script(dump_dir))
        .await
        .ok()?
        .lines()
        .map(str::to_string)
        .collect();
    let mut out = Vec::new();
    for d in new_dump_dirs(&pre.dirs_before, &now, &pre.ip) {
        let path = format!("{dump_dir}/{d}");
        let files = verify::parse_files(
            &sh(server, "list files", verify::list_files_script(&path))
                .await
                .ok()?,
        );
        out.push((path, files));
    }
    Some(out)
}

/// Waits for a new, complete dump directory of this client on the server.
pub async fn wait_dump(
    run: &HostRun,
    server: &dyn Remote,
    pre: &Preflight,
) -> Result<DumpArrived, CrashTestError> {
    let dump_dir = run.dump_dir();
    let found = poll(run.timeouts.dump, run.timeouts.dump_every, || async {
        new_dirs(server, &dump_dir, pre)
            .await?
            .into_iter()
            .find(|(_, files)| complete_dump(files).is_some())
    })
    .await;
    if let Some((dir, files)) = found {
        return Ok(DumpArrived { dir, files });
    }
    // Say which it is: nothing arrived, or a transfer that never finished.
    let incomplete = new_dirs(server, &dump_dir, pre)
        .await
        .unwrap_or_default()
        .into_iter()
        .find_map(|(dir, files)| {
            let names = verify::incomplete_files(&files);
            (!names.is_empty()).then(|| (dir.clone(), names.join(", ")))
        });
    Err(match incomplete {
        Some((dir, incomplete)) => CrashTestError::DumpIncomplete {
            host: run.host().to_string(),
            server: run.server.host.clone(),
            dir,
            incomplete,
            secs: run.timeouts.dump.as_secs(),
        },
        None => CrashTestError::NoDump {
            host: run.host().to_string(),
            server: run.server.host.clone(),
            ip: pre.ip.clone(),
            dump_dir,
            secs: run.timeouts.dump.as_secs(),
        },
    })
}

/// What arrived is a real dump (header, size) whose kernel log shows the crash this kind
/// provokes.
pub async fn verify(
    run: &HostRun,
    server: &dyn Remote,
    pre: &Preflight,
    arrived: &DumpArrived,
) -> Result<Verified, CrashTestError> {
    let host = run.host().to_string();
    let dir = &arrived.dir;
    let Some((dump, log)) = complete_dump(&arrived.files) else {
        return Err(CrashTestError::NoDump {
            host,
            server: run.server.host.clone(),
            ip: pre.ip.clone(),
            dump_dir: run.dump_dir(),
            secs: run.timeouts.dump.as_secs(),
        });
    };
    let dump_path = format!("{dir}/{}", dump.name);
    let head = sh(
        server,
        "dump header",
        format!("head -c 64 {} | od -An -v -tx1", sh_quote(&dump_path)),
    )
    .await?;
    let bytes = hex::decode(head.split_whitespace().collect::<String>()).map_err(|e| {
        CrashTestError::Header {
            host: host.clone(),
            path: dump_path.clone(),
            reason: e.to_string(),
        }
    })?;
    let format = verify::classify_dump(&bytes);
    if format == DumpFormat::Unknown {
        return Err(CrashTestError::NotADump {
            host,
            path: dump_path,
        });
    }
    if dump.size < MIN_DUMP_BYTES {
        return Err(CrashTestError::Truncated {
            host,
            path: dump_path,
            size: dump.size,
        });
    }
    let log = log.ok_or_else(|| CrashTestError::NoKernelLog {
        host: host.clone(),
        dir: dir.clone(),
    })?;
    let log_path = format!("{dir}/{}", log.name);
    let text = sh(server, "dmesg", format!("cat {}", sh_quote(&log_path))).await?;
    if !dmesg_has_crash(&text) {
        return Err(CrashTestError::NoCrashInLog {
            host,
            path: log_path,
            expected: if run.kind == CrashKind::Sysrq {
                "sysrq crash"
            } else {
                "kernel panic"
            },
        });
    }
    let console = sh(
        server,
        "console log",
        format!(
            "cat {} 2>/dev/null; true",
            sh_quote(&format!("{}/console/{}.log", run.dump_dir(), pre.ip))
        ),
    )
    .await?;
    let crash = verify::crash_summary(&text, &console);
    let expected = run.kind.expected();
    match &crash {
        Some(c) if !run.kind.matches(&c.title, &c.kind) => {
            return Err(CrashTestError::UnexpectedCrash {
                host,
                kind: run.kind.name(),
                expected_title: expected.title_prefix,
                expected_kind: expected.kind,
                path: log_path,
                title: c.title.clone(),
                got_kind: c.kind.clone(),
                signature: c.signature.clone(),
            });
        }
        None => {
            return Err(CrashTestError::NoCrashReport {
                host,
                kind: run.kind.name(),
                expected_title: expected.title_prefix,
                path: log_path,
            });
        }
        Some(_) => {}
    }
    Ok(Verified {
        format,
        dump: dump.clone(),
        log: log.name.clone(),
        console_has_panic: dmesg_has_crash(&console),
        // One crash, one directory: the sink puts kdump's files into the receiver's crash
        // record when there is one (docs/server-layout.md).
        record_beside: arrived.files.iter().any(|f| f.name == "log") && log.name != "log",
        crash,
    })
}

/// Waits for the client to answer ssh with a new boot id.
pub async fn wait_reboot(run: &HostRun, pre: &Preflight) -> Result<Rebooted, CrashTestError> {
    let back = poll(run.timeouts.reboot, run.timeouts.reboot_every, || async {
        let c = run.connector.connect(&run.client_target).await.ok()?;
        let id = sh(&*c, "boot id", "cat /proc/sys/kernel/random/boot_id".into())
            .await
            .ok()?;
        let id = id.trim().to_string();
        (id != pre.boot_id && !id.is_empty()).then_some(id)
    })
    .await;
    back.map(|boot_id| Rebooted { boot_id })
        .ok_or_else(|| CrashTestError::NoReboot {
            host: run.host().to_string(),
            secs: run.timeouts.reboot.as_secs(),
        })
}
