//! `provision test-crash`: crash clients on purpose through sysrq and prove that the dump and
//! the console log arrived at their server and that the host came back.
//!
//! The verification of what arrived is pure ([`classify_dump`], [`dmesg_has_crash`],
//! [`new_dump_dirs`]); the rest drives ssh sessions with a deadline per phase.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::fleet::{ConnectArgs, Output};
use crate::report::junit;
use crate::resources::sh_quote;
use crate::settings::{ClientFlavor, ClientSettings, FleetSettings, PasswordInput, ServerSettings};
use crate::ssh::{Remote, RemoteCommand, SshOptions};
use netdump_receiver::events::{EventKind, EventLog};

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
    /// Crash hosts this many at a time.
    #[arg(long, short = 'f', default_value_t = 8)]
    pub forks: usize,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// What kind of dump file arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpFormat {
    /// `makedumpfile -F` output (must be rebuilt with `makedumpfile -R` before analysis).
    MakedumpfileFlat,
    /// kdump-compressed (`makedumpfile -c/-l/-p` without -F): "KDUMP   " signature.
    KdumpCompressed,
    /// ELF core (netdump receiver, `cp /proc/vmcore`, makedumpfile -E).
    Elf,
    Unknown,
}

/// Identifies a dump by its first bytes.
pub fn classify_dump(header: &[u8]) -> DumpFormat {
    if header.starts_with(b"makedumpfile\0") {
        DumpFormat::MakedumpfileFlat
    } else if header.starts_with(b"KDUMP   ") {
        DumpFormat::KdumpCompressed
    } else if header.starts_with(b"\x7fELF") && header.len() >= 18 {
        // ET_CORE (4), in either byte order.
        let e_type = if header[5] == 2 {
            u16::from_be_bytes([header[16], header[17]])
        } else {
            u16::from_le_bytes([header[16], header[17]])
        };
        if e_type == 4 {
            DumpFormat::Elf
        } else {
            DumpFormat::Unknown
        }
    } else {
        DumpFormat::Unknown
    }
}

/// The smallest size accepted as a real dump of a crashed kernel (even `-d 31` of a small VM is
/// megabytes).
pub const MIN_DUMP_BYTES: u64 = 1 << 20;

/// True when the kernel log holds the sysrq crash or a panic.
pub fn dmesg_has_crash(text: &str) -> bool {
    text.lines().any(|l| {
        l.contains("sysrq: Trigger a crash")
            || l.contains("SysRq : Trigger a crash")
            || l.contains("Kernel panic - not syncing")
    })
}

/// A file in a dump directory on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteFile {
    pub name: String,
    pub size: u64,
}

/// Title and signature of the crash that took the host down ([`netdump_triage::fatal`]) as its
/// dump's kernel log shows it, else as the console log does.
pub fn crash_summary(dmesg: &str, console: &str) -> Option<(String, String)> {
    let from = |text: &str| {
        netdump_triage::fatal(&netdump_triage::analyze(text))
            .map(|r| (r.title.clone(), r.signature.clone()))
    };
    from(dmesg).or_else(|| from(console))
}

/// The JUnit failure message of a host: the error, and the crash it showed when one is known.
pub fn junit_message(r: &HostResult) -> Option<String> {
    let e = r.error.as_ref()?;
    Some(match (&r.crash_title, &r.crash_signature) {
        (Some(t), Some(s)) => format!("{e} (crash: {t}, signature {s})"),
        _ => e.clone(),
    })
}

/// The files that make a dump directory complete, by layout:
/// Debian kdump-tools `dump.<stamp>` + `dmesg.<stamp>`; RHEL `vmcore.flat`/`vmcore` +
/// `vmcore-dmesg.txt`; netdump receiver `vmcore` + `log`. Nothing may still be `*-incomplete`.
pub fn complete_dump(files: &[RemoteFile]) -> Option<(&RemoteFile, Option<&RemoteFile>)> {
    if files.iter().any(|f| f.name.contains("incomplete")) {
        return None;
    }
    let dump = files
        .iter()
        .find(|f| f.name.starts_with("dump.") || f.name == "vmcore" || f.name == "vmcore.flat")?;
    let log = files
        .iter()
        .find(|f| f.name.starts_with("dmesg.") || f.name == "vmcore-dmesg.txt" || f.name == "log");
    Some((dump, log))
}

/// The directories now on the server that are new for `ip` (`<ip>-<time>`), newest first.
pub fn new_dump_dirs<'a>(
    before: &BTreeSet<String>,
    now: &'a [String],
    ip: &str,
) -> Vec<&'a String> {
    let prefix = format!("{ip}-");
    let mut dirs: Vec<&String> = now
        .iter()
        .filter(|d| d.starts_with(&prefix) && !before.contains(*d))
        .collect();
    dirs.sort_by(|a, b| b.cmp(a));
    dirs
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub secs: f64,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub host: String,
    pub passed: bool,
    pub phases: Vec<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump_format: Option<DumpFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The crash the kernel log shows, as `provision triage` names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_signature: Option<String>,
}

struct Ctx {
    client: ClientSettings,
    server: ServerSettings,
    client_target: crate::ssh::Target,
    server_target: crate::ssh::Target,
    ssh: SshOptions,
    crash_timeout: Duration,
    dump_timeout: Duration,
    reboot_timeout: Duration,
}

async fn sh(remote: &dyn Remote, step: &str, script: String) -> Result<String, String> {
    let out = remote
        .run(RemoteCommand::new(step, script).timeout(Duration::from_secs(60)))
        .await
        .map_err(|e| e.to_string())?;
    if out.success() {
        Ok(out.stdout_str())
    } else {
        Err(format!(
            "{}: step '{step}' failed (exit {:?}): {}",
            remote.host(),
            out.status,
            out.stderr_str().trim()
        ))
    }
}

/// Runs one phase, recording its time; `Err` ends the host's test.
struct Recorder {
    phases: Vec<Phase>,
    /// Title and signature of the crash found in the kernel log (set by the verify phase).
    crash: Option<(String, String)>,
}

impl Recorder {
    async fn phase<T, F>(&mut self, name: &str, f: F) -> Result<T, String>
    where
        F: std::future::Future<Output = Result<(T, String), String>>,
    {
        let t = Instant::now();
        let r = f.await;
        let secs = t.elapsed().as_secs_f64();
        match r {
            Ok((v, detail)) => {
                self.phases.push(Phase {
                    name: name.into(),
                    secs,
                    ok: true,
                    detail,
                });
                Ok(v)
            }
            Err(e) => {
                self.phases.push(Phase {
                    name: name.into(),
                    secs,
                    ok: false,
                    detail: e.clone(),
                });
                Err(e)
            }
        }
    }
}

async fn poll<T, F, Fut>(deadline: Duration, every: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

fn list_dirs_script(dump_dir: &str) -> String {
    format!(
        "cd {} && for d in */; do [ -d \"$d\" ] && echo \"${{d%/}}\"; done; true",
        sh_quote(dump_dir)
    )
}

fn list_files_script(dir: &str) -> String {
    format!(
        "cd {} && for f in *; do [ -f \"$f\" ] && echo \"$(stat -c %s \"$f\") $f\"; done; true",
        sh_quote(dir)
    )
}

fn parse_files(text: &str) -> Vec<RemoteFile> {
    text.lines()
        .filter_map(|l| {
            let (size, name) = l.split_once(' ')?;
            Some(RemoteFile {
                name: name.to_string(),
                size: size.parse().ok()?,
            })
        })
        .collect()
}

async fn test_host(ctx: Ctx) -> HostResult {
    let mut rec = Recorder {
        phases: Vec::new(),
        crash: None,
    };
    let host = ctx.client.host.clone();
    let r = run_phases(&ctx, &mut rec).await;
    let (dump_dir, dump_format, error) = match r {
        Ok((d, f)) => (Some(d), Some(f), None),
        Err(e) => (None, None, Some(e)),
    };
    let (crash_title, crash_signature) = rec.crash.unzip();
    HostResult {
        host,
        passed: error.is_none(),
        phases: rec.phases,
        dump_dir,
        dump_format,
        error,
        crash_title,
        crash_signature,
    }
}

async fn run_phases(ctx: &Ctx, rec: &mut Recorder) -> Result<(String, DumpFormat), String> {
    let host = ctx.client.host.clone();
    let dump_dir = ctx.server.dump_dir.trim_end_matches('/').to_string();

    // Preflight.
    let (client, server, boot_id, ip, flavor, dirs_before, events_offset) = rec
        .phase("preflight", async {
            let client = crate::ssh::connect(&ctx.client_target, &ctx.ssh).await.map_err(|e| e.to_string())?;
            let server = crate::ssh::connect(&ctx.server_target, &ctx.ssh).await.map_err(|e| e.to_string())?;
            let facts_text = sh(&client, "facts", crate::facts::probe_script(Some(&ctx.client.server_address))).await?;
            let facts = crate::facts::parse(&facts_text).map_err(|e| format!("{host}: {e}"))?;
            let flavor = crate::roles::effective_flavor(&ctx.client, &facts);
            let armed = match flavor {
                ClientFlavor::Netdump => sh(&client, "netdump status", "service netdump status >/dev/null 2>&1 && echo armed=1 || echo armed=0".into()).await?,
                _ => format!("armed={}", if facts.kexec_crash_loaded == Some(true) { 1 } else { 0 }),
            };
            if !armed.contains("armed=1") {
                return Err(match flavor {
                    ClientFlavor::Netdump => format!("{host}: the netdump service is not running; run `provision apply` and check `service netdump status`"),
                    _ => format!(
                        "{host}: kdump is not armed (/sys/kernel/kexec_crash_loaded is not 1; crashkernel reserved: {} bytes); run `provision apply` (a reboot may be required for crashkernel=)",
                        facts.kexec_crash_size.unwrap_or(0)
                    ),
                });
            }
            let ip = facts
                .route
                .as_ref()
                .and_then(|r| r.src.clone())
                .ok_or_else(|| format!("{host}: no route to the server {}", ctx.client.server_address))?;
            // A value the client reported: it must be an address before it names anything on
            // the server (and it is quoted in every script anyway).
            let ip = ip
                .parse::<std::net::IpAddr>()
                .map_err(|_| format!("{host}: the client reports source address {ip:?}, which is not an IP address"))?
                .to_string();
            let space = sh(&server, "server space", format!("df -Pk {} | awk 'NR==2 {{print $4}}'", sh_quote(&dump_dir))).await?;
            let free_kb: u64 = space.trim().parse().unwrap_or(0);
            if free_kb < 256 * 1024 {
                return Err(format!("{}: only {free_kb} KiB free in {dump_dir}; free space before crashing clients", ctx.server.host));
            }
            let receiver = sh(&server, "receiver", format!(
                "if command -v ss >/dev/null; then ss -Hlun 'sport = :{}' | grep -q . && echo up || echo down; else echo unknown; fi",
                ctx.server.port
            )).await?;
            let dirs: BTreeSet<String> = sh(&server, "list dumps", list_dirs_script(&dump_dir)).await?.lines().map(str::to_string).collect();
            let events = sh(&server, "events offset", format!("stat -c %s {}/events.jsonl 2>/dev/null || echo 0", sh_quote(&dump_dir))).await?;
            let offset: u64 = events.trim().parse().unwrap_or(0);
            let detail = format!("flavor {flavor:?}, armed, client ip {ip}, {free_kb} KiB free on server, receiver {}", receiver.trim());
            Ok(((client, server, facts.boot_id.clone(), ip, flavor, dirs, offset), detail))
        })
        .await?;

    // Trigger, detached so the ssh command returns before the kernel dies.
    rec.phase("trigger", async {
        let script = "if command -v systemd-run >/dev/null 2>&1; then \
                        systemd-run --quiet --no-block --collect sh -c 'sleep 2; echo c > /proc/sysrq-trigger'; \
                      else nohup sh -c 'sleep 2; echo c > /proc/sysrq-trigger' >/dev/null 2>&1 & fi; echo triggered";
        sh(&client, "trigger", script.into()).await.map(|_| ((), format!("sysrq crash scheduled, boot id was {boot_id}")))
    })
    .await?;
    drop(client);

    // The crash on the receiver's console log (netconsole / netlog → events.jsonl).
    let events_path = format!("{dump_dir}/events.jsonl");
    rec.phase("console", async {
        let found = poll(ctx.crash_timeout, Duration::from_secs(2), || async {
            let text = sh(&server, "events", format!("tail -c +{} {} 2>/dev/null; true", events_offset + 1, sh_quote(&events_path))).await.ok()?;
            EventLog::parse(&text)
                .into_iter()
                .find(|e| e.host == ip && matches!(e.event, EventKind::Crash | EventKind::DumpStarted))
        })
        .await;
        match found {
            Some(e) => Ok(((), format!("receiver saw the crash at {} ({})", e.time, e.dir))),
            None => Err(format!(
                "{host}: the receiver on {} logged no crash from {ip} within {}s; check netconsole on the client and the receiver service",
                ctx.server.host,
                ctx.crash_timeout.as_secs()
            )),
        }
    })
    .await?;

    // A complete dump directory.
    let (dir, files) = rec
        .phase("dump", async {
            let found = poll(ctx.dump_timeout, Duration::from_secs(3), || async {
                let now: Vec<String> = sh(&server, "list dumps", list_dirs_script(&dump_dir)).await.ok()?.lines().map(str::to_string).collect();
                for d in new_dump_dirs(&dirs_before, &now, &ip) {
                    let path = format!("{dump_dir}/{d}");
                    let files = parse_files(&sh(&server, "list files", list_files_script(&path)).await.ok()?);
                    if complete_dump(&files).is_some() {
                        return Some((path, files));
                    }
                }
                None
            })
            .await;
            match found {
                Some((path, files)) => {
                    let names: Vec<String> = files.iter().map(|f| format!("{} ({} bytes)", f.name, f.size)).collect();
                    Ok(((path.clone(), files), format!("{path}: {}", names.join(", "))))
                }
                None => Err(format!(
                    "{host}: no complete dump for {ip} appeared in {}:{dump_dir} within {}s (an `*-incomplete` file means the transfer broke)",
                    ctx.server.host,
                    ctx.dump_timeout.as_secs()
                )),
            }
        })
        .await?;

    // What arrived is a real dump with the crash in its log.
    let (format, crash) = rec
        .phase("verify", async {
            let (dump, log) = complete_dump(&files).ok_or("dump vanished")?;
            let head = sh(
                &server,
                "dump header",
                format!(
                    "head -c 64 {}/{} | od -An -v -tx1",
                    sh_quote(&dir),
                    sh_quote(&dump.name)
                ),
            )
            .await?;
            let bytes = hex::decode(head.split_whitespace().collect::<String>())
                .map_err(|e| e.to_string())?;
            let format = classify_dump(&bytes);
            if format == DumpFormat::Unknown {
                return Err(format!(
                    "{host}: {}/{} is not a dump (unknown header)",
                    dir, dump.name
                ));
            }
            if dump.size < MIN_DUMP_BYTES {
                return Err(format!(
                    "{host}: {}/{} is only {} bytes: truncated",
                    dir, dump.name, dump.size
                ));
            }
            let log = log.ok_or_else(|| format!("{host}: {dir} holds no kernel log (dmesg)"))?;
            let text = sh(
                &server,
                "dmesg",
                format!("cat {}/{}", sh_quote(&dir), sh_quote(&log.name)),
            )
            .await?;
            if !dmesg_has_crash(&text) {
                return Err(format!(
                    "{host}: {}/{} does not contain the sysrq crash line",
                    dir, log.name
                ));
            }
            let console = sh(
                &server,
                "console log",
                format!(
                    "cat {} 2>/dev/null; true",
                    sh_quote(&format!("{dump_dir}/console/{ip}.log"))
                ),
            )
            .await?;
            let console_note = if dmesg_has_crash(&console) {
                "console log has the panic"
            } else {
                "console log lacks the panic"
            };
            // One crash, one directory: the sink puts kdump's files into the receiver's crash
            // record when there is one (docs/server-layout.md).
            let record = if files.iter().any(|f| f.name == "log") && log.name != "log" {
                "; the console crash record is in the same directory"
            } else {
                ""
            };
            let crash = crash_summary(&text, &console);
            let crash_note = match &crash {
                Some((title, sig)) => format!("; crash: {title} (signature {sig})"),
                None => String::new(),
            };
            Ok((
                (format, crash),
                format!(
                    "{format:?}, {} bytes; {} has the crash line; {console_note}{record}{crash_note}",
                    dump.size, log.name
                ),
            ))
        })
        .await?;
    rec.crash = crash;

    // The host comes back, with a new boot id.
    rec.phase("reboot", async {
        let back = poll(ctx.reboot_timeout, Duration::from_secs(5), || async {
            let c = crate::ssh::connect(&ctx.client_target, &ctx.ssh)
                .await
                .ok()?;
            let id = sh(&c, "boot id", "cat /proc/sys/kernel/random/boot_id".into())
                .await
                .ok()?;
            let id = id.trim().to_string();
            (id != boot_id && !id.is_empty()).then_some(id)
        })
        .await;
        match back {
            Some(id) => Ok(((), format!("back with boot id {id}"))),
            None => Err(format!(
                "{host}: did not come back with a new boot id within {}s",
                ctx.reboot_timeout.as_secs()
            )),
        }
    })
    .await?;
    let _ = flavor;
    Ok((dir, format))
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
    let results = run_hosts(&fleet, &hosts, &args).await;
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
) -> Vec<HostResult> {
    let sem = Arc::new(tokio::sync::Semaphore::new(args.forks.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, h) in hosts.iter().enumerate() {
        let client = fleet.clients[h].clone();
        let server = fleet.servers.get(&client.server).cloned();
        let ctx = server.map(|server| Ctx {
            client_target: fleet.targets[h].clone(),
            server_target: fleet.targets[&server.host].clone(),
            client,
            server,
            ssh: args.connect.ssh_options(),
            crash_timeout: Duration::from_secs(args.crash_timeout),
            dump_timeout: Duration::from_secs(args.dump_timeout),
            reboot_timeout: Duration::from_secs(args.reboot_timeout),
        });
        let sem = sem.clone();
        let host = h.clone();
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            let r = match ctx {
                Some(ctx) => test_host(ctx).await,
                None => HostResult {
                    host: host.clone(),
                    passed: false,
                    phases: vec![],
                    dump_dir: None,
                    dump_format: None,
                    error: Some(format!(
                        "{host}: its server is not in group netdump_servers"
                    )),
                    crash_title: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_dump_headers() {
        let mut flat = b"makedumpfile\0\0\0\0".to_vec();
        flat.extend_from_slice(&[0; 48]);
        assert_eq!(classify_dump(&flat), DumpFormat::MakedumpfileFlat);
        assert_eq!(
            classify_dump(b"KDUMP   \x06\0\0\0"),
            DumpFormat::KdumpCompressed
        );
        let mut elf = vec![
            0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0,
        ];
        assert_eq!(classify_dump(&elf), DumpFormat::Elf);
        elf[16] = 2; // ET_EXEC: an executable is not a dump
        assert_eq!(classify_dump(&elf), DumpFormat::Unknown);
        let mut be = vec![
            0x7f, b'E', b'L', b'F', 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4,
        ];
        assert_eq!(classify_dump(&be), DumpFormat::Elf);
        be.truncate(10);
        assert_eq!(classify_dump(&be), DumpFormat::Unknown, "truncated header");
        assert_eq!(classify_dump(b""), DumpFormat::Unknown);
        assert_eq!(classify_dump(b"#!/bin/sh\n"), DumpFormat::Unknown);
    }

    #[test]
    fn crash_summary_names_the_dump_s_crash() {
        let dmesg = "[   90.1] sysrq: Trigger a crash\n[   90.1] Kernel panic - not syncing: sysrq triggered crash\n[   90.2] Call Trace:\n[   90.2]  sysrq_handle_crash+0x16/0x20\n";
        let (title, sig) = crash_summary(dmesg, "").unwrap();
        assert_eq!(title, "sysrq: Trigger a crash");
        assert_eq!(sig.len(), 32);
        // Without a crash in the dump's log, the console log's last crash.
        let console = "[ 1.0] WARNING: CPU: 0 PID: 1 at a.c:1 old_warn+0x1/0x2\n[ 1.1] Call Trace:\n[ 1.1]  boot_fn+0x1/0x2\n[ 2.0] ---[ end trace 0 ]---\n[ 99.0] sysrq: Trigger a crash\n";
        assert_eq!(
            crash_summary("", console).unwrap().0,
            "sysrq: Trigger a crash"
        );
        // A boot-time warning in the dump's log is not what the dump is about.
        assert_eq!(
            crash_summary(console, "").unwrap().0,
            "sysrq: Trigger a crash"
        );
        assert_eq!(crash_summary("all quiet", "all quiet"), None);
    }

    #[test]
    fn junit_message_carries_the_crash() {
        let mut r = HostResult {
            host: "c1".into(),
            passed: false,
            phases: vec![],
            dump_dir: None,
            dump_format: None,
            error: Some("c1: did not come back".into()),
            crash_title: Some("WARNING in foo".into()),
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

    #[test]
    fn dmesg_crash_lines() {
        assert!(dmesg_has_crash(
            "[   90.1] sysrq: Trigger a crash\n[   90.1] Kernel panic - not syncing: sysrq triggered crash\n"
        ));
        assert!(dmesg_has_crash("SysRq : Trigger a crash"));
        assert!(!dmesg_has_crash("all good\nsysrq: HELP : loglevel(0-9)\n"));
        assert!(!dmesg_has_crash(""));
    }

    fn f(name: &str, size: u64) -> RemoteFile {
        RemoteFile {
            name: name.into(),
            size,
        }
    }

    #[test]
    fn complete_dump_layouts() {
        let deb = [
            f("dump.202611261530", 40 << 20),
            f("dmesg.202611261530", 30_000),
        ];
        let (d, l) = complete_dump(&deb).unwrap();
        assert_eq!(
            (d.name.as_str(), l.unwrap().name.as_str()),
            ("dump.202611261530", "dmesg.202611261530")
        );
        let rhel = [
            f("vmcore.flat", 50 << 20),
            f("vmcore-dmesg.txt", 1),
            f("kexec-dmesg.log", 1),
        ];
        assert_eq!(complete_dump(&rhel).unwrap().0.name, "vmcore.flat");
        let netdump = [f("vmcore", 1 << 30), f("log", 10)];
        assert_eq!(complete_dump(&netdump).unwrap().0.name, "vmcore");
        assert!(complete_dump(&[f("vmcore-incomplete", 5), f("log", 1)]).is_none());
        // kdump files joined into the receiver's crash record directory.
        let merged = [f("dmesg.1", 2), f("dump.1", 5), f("log", 1)];
        let (d, l) = complete_dump(&merged).unwrap();
        assert_eq!(
            (d.name.as_str(), l.unwrap().name.as_str()),
            ("dump.1", "dmesg.1")
        );
        assert!(complete_dump(&[f("dump-incomplete", 5), f("dmesg.1", 1)]).is_none());
        assert!(
            complete_dump(&[f("vmcore.flat", 5), f("vmcore-dmesg-incomplete.txt", 1)]).is_none()
        );
        assert!(complete_dump(&[f("README", 5)]).is_none());
        assert!(complete_dump(&[]).is_none());
    }

    #[test]
    fn picks_the_new_dir_of_this_client_only() {
        let before: BTreeSet<String> = ["198.19.0.11-202611261500".to_string()].into();
        let now = vec![
            "198.19.0.11-202611261500".to_string(),
            "198.19.0.111-202611261531".to_string(),
            "198.19.0.11-202611261530".to_string(),
            "console".to_string(),
        ];
        assert_eq!(
            *new_dump_dirs(&before, &now, "198.19.0.11")[0],
            "198.19.0.11-202611261530"
        );
        assert_eq!(
            new_dump_dirs(&before, &now, "198.19.0.11").len(),
            1,
            "not the .111 host's"
        );
        assert!(new_dump_dirs(&before, &now[..1], "198.19.0.11").is_empty());
    }

    #[test]
    fn parses_file_listing() {
        assert_eq!(
            parse_files("12 dump.1\nbad\n3 name with space\n"),
            vec![f("dump.1", 12), f("name with space", 3)]
        );
    }
}
