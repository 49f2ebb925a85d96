//! `provision crashes -i INVENTORY`: what crashed across the fleet, grouped by crash signature.
//!
//! One ssh round trip per server runs [`collect_script`], which prints the server's
//! `events.jsonl` (its last 4 MiB) and, for every crash directory changed inside the window, the
//! directory's kernel log (first 1 MiB of `dmesg.<stamp>`, `vmcore-dmesg.txt` or `log`), all
//! base64-framed so no byte a crashed client sent can break the framing. The rest is pure:
//! [`parse_collected`], [`crashes_of`] (triage of each log, client address → inventory name),
//! [`group`] and the renderers. Exit 0 when nothing crashed in the window, 3 when something did
//! (a pipeline gates a kernel on it), 4 when a server could not be read and nothing crashed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::fleet::{ConnectArgs, Output, exit};
use crate::report::junit;
use crate::resources::sh_quote;
use crate::settings::{FleetSettings, PasswordInput};
use crate::ssh::{Remote, RemoteCommand};

/// Exit code when a crash happened in the window.
pub const CRASHED: i32 = 3;
/// Bytes of each kernel log read (a crash report sits at the start of a dump's dmesg file).
pub const MAX_LOG_BYTES: u64 = 1 << 20;
/// Bytes of `events.jsonl` read (its tail).
pub const MAX_EVENTS_BYTES: u64 = 4 << 20;
/// Crash directories read per server (newest first).
pub const MAX_DIRS: usize = 500;

#[derive(Args, Debug)]
pub struct CrashesArgs {
    #[arg(short = 'i', long = "inventory", value_name = "INVENTORY")]
    pub inventory: PathBuf,
    /// Only crashes newer than this (`90s`, `30m`, `12h`, `7d`, `2w`).
    #[arg(long, default_value = "24h", value_name = "DURATION", value_parser = parse_since)]
    pub since: Since,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// Write a JUnit XML report here: one case per client, failed when it crashed.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// The window as given (for messages) and as a duration.
#[derive(Debug, Clone)]
pub struct Since {
    pub text: String,
    pub duration: Duration,
}

fn parse_since(s: &str) -> Result<Since, String> {
    Ok(Since {
        text: s.trim().to_string(),
        duration: parse_duration(s)?,
    })
}

/// `90s`, `30m`, `12h`, `7d`, `2w`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (examples: 90s, 30m, 12h, 7d)"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "'{s}': unknown unit '{unit}' (use s, m, h, d or w)"
            ));
        }
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("'{s}' is too long"))
}

/// The shell script run on a server: events, then one framed record per recent crash
/// directory. Directory and file names travel base64-encoded, contents too.
pub fn collect_script(dump_dir: &str, since_epoch: i64) -> String {
    format!(
        r#"cd {dir} || {{ echo "cannot enter {dir_msg}" >&2; exit 3; }}
echo "@@events"
if [ -f events.jsonl ] && [ ! -L events.jsonl ]; then tail -c {ev} events.jsonl | base64 -w0; fi
echo
n=0
ls -1t | while IFS= read -r d; do
  [ -d "$d" ] && [ ! -L "$d" ] || continue
  m=$(stat -c %Y "$d") || continue
  [ "$m" -ge {since} ] || continue
  n=$((n+1)); [ $n -le {max} ] || break
  f=""
  for c in "$d"/dmesg.* "$d"/vmcore-dmesg.txt "$d"/log; do
    case "$c" in *incomplete*) continue;; esac
    if [ -f "$c" ] && [ ! -L "$c" ]; then f=$c; break; fi
  done
  printf '@@dir %s %s %s\n' "$m" "$(printf %s "$d" | base64 -w0)" "$(printf %s "${{f##*/}}" | base64 -w0)"
  if [ -n "$f" ]; then head -c {log} "$f" | base64 -w0; fi
  echo
done
"#,
        dir = sh_quote(dump_dir),
        dir_msg = dump_dir.replace(['"', '\\', '$', '`'], "_"),
        ev = MAX_EVENTS_BYTES,
        since = since_epoch,
        max = MAX_DIRS,
        log = MAX_LOG_BYTES,
    )
}

/// One crash directory as the server reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashDir {
    pub name: String,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// The kernel log file's name, when the directory has one.
    pub log_name: Option<String>,
    pub log: Vec<u8>,
}

/// A receiver event (only the fields read here).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Event {
    pub event: String,
    pub host: String,
    pub dir: String,
    pub time: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub events: Vec<Event>,
    pub dirs: Vec<CrashDir>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CollectError {
    #[error("the server's answer is malformed at line {0}")]
    Malformed(usize),
}

/// Parses what [`collect_script`] printed.
pub fn parse_collected(text: &str) -> Result<Collected, CollectError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Collected::default();
    let mut lines = text.lines().enumerate();
    while let Some((i, l)) = lines.next() {
        if l == "@@events" {
            let (_, data) = lines.next().ok_or(CollectError::Malformed(i + 2))?;
            let bytes = b64
                .decode(data.trim())
                .map_err(|_| CollectError::Malformed(i + 2))?;
            out.events = String::from_utf8_lossy(&bytes)
                .lines()
                .filter_map(|l| serde_json::from_str::<Event>(l).ok())
                .collect();
        } else if let Some(rest) = l.strip_prefix("@@dir ") {
            let mut f = rest.split(' ');
            let (Some(m), Some(name), file) = (f.next(), f.next(), f.next().unwrap_or("")) else {
                return Err(CollectError::Malformed(i + 1));
            };
            let dec = |s: &str| {
                b64.decode(s)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|_| CollectError::Malformed(i + 1))
            };
            let (_, data) = lines.next().ok_or(CollectError::Malformed(i + 2))?;
            let log = b64
                .decode(data.trim())
                .map_err(|_| CollectError::Malformed(i + 2))?;
            let log_name = dec(file)?;
            out.dirs.push(CrashDir {
                name: dec(name)?,
                mtime: m.parse().map_err(|_| CollectError::Malformed(i + 1))?,
                log_name: (!log_name.is_empty()).then_some(log_name),
                log,
            });
        } else if !l.trim().is_empty() {
            return Err(CollectError::Malformed(i + 1));
        }
    }
    Ok(out)
}

/// One crash found on a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Crash {
    /// Inventory name of the client, or its address when no inventory host has it.
    pub host: String,
    pub server: String,
    pub dir: String,
    #[serde(serialize_with = "rfc3339")]
    pub time: DateTime<Utc>,
    pub title: String,
    pub kind: String,
    pub signature: String,
    pub kernel: Option<String>,
}

/// Title of a crash directory whose kernel log is missing or shows no crash report.
pub const NO_LOG: &str = "crash without a kernel log";

/// The crashes of one server: each recent directory's log triaged (the crash that took the
/// client down, [`netdump_triage::fatal`]), its client's address
/// (the directory name's `<ip>-` prefix) mapped to the inventory name, its time taken from the
/// receiver's crash event when there is one, else from the directory.
pub fn crashes_of(
    server: &str,
    dump_dir: &str,
    collected: &Collected,
    names: &BTreeMap<String, String>,
    since: DateTime<Utc>,
) -> Vec<Crash> {
    let dump_dir = dump_dir.trim_end_matches('/');
    let mut out = Vec::new();
    for d in &collected.dirs {
        let host = host_of(&d.name, names);
        let path = format!("{dump_dir}/{}", d.name);
        let event_time = collected
            .events
            .iter()
            .filter(|e| e.dir == path || e.dir.rsplit('/').next() == Some(&d.name))
            .filter_map(|e| DateTime::parse_from_rfc3339(&e.time).ok())
            .map(|t| t.with_timezone(&Utc))
            .min();
        let time = event_time
            .or_else(|| Utc.timestamp_opt(d.mtime, 0).single())
            .unwrap_or(since);
        if time < since {
            continue;
        }
        let reports = netdump_triage::analyze_bytes(&d.log);
        let (title, kind, signature, kernel) = match netdump_triage::fatal(&reports).cloned() {
            Some(r) => (r.title, r.kind, r.signature, r.kernel),
            None => (
                NO_LOG.to_string(),
                "UNKNOWN".to_string(),
                String::new(),
                None,
            ),
        };
        out.push(Crash {
            host,
            server: server.to_string(),
            dir: path,
            time,
            title,
            kind,
            signature,
            kernel,
        });
    }
    out
}

/// The client a crash directory belongs to: its name starts with the client's address (the
/// receiver, kdump-tools) or host name, then `-` and a time stamp. The longest known prefix
/// wins (a host name may hold dashes); unknown clients are shown by that prefix.
fn host_of(dir: &str, names: &BTreeMap<String, String>) -> String {
    names
        .iter()
        .filter(|(k, _)| {
            dir.len() > k.len() && dir.starts_with(k.as_str()) && dir[k.len()..].starts_with('-')
        })
        .max_by_key(|(k, _)| k.len())
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| dir.split('-').next().unwrap_or(dir).to_string())
}

/// Crashes of one signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub title: String,
    pub kind: String,
    pub signature: String,
    pub count: usize,
    pub hosts: BTreeSet<String>,
    pub kernels: BTreeSet<String>,
    #[serde(serialize_with = "rfc3339")]
    pub first_seen: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub last_seen: DateTime<Utc>,
    /// `server:directory` of the newest crash.
    pub newest: String,
}

/// Groups crashes by signature (by title when there is none), most frequent first.
pub fn group(crashes: &[Crash]) -> Vec<Group> {
    let mut by: BTreeMap<(String, String), Group> = BTreeMap::new();
    for c in crashes {
        let key = (c.signature.clone(), c.title.clone());
        let g = by.entry(key).or_insert_with(|| Group {
            title: c.title.clone(),
            kind: c.kind.clone(),
            signature: c.signature.clone(),
            count: 0,
            hosts: BTreeSet::new(),
            kernels: BTreeSet::new(),
            first_seen: c.time,
            last_seen: c.time,
            newest: format!("{}:{}", c.server, c.dir),
        });
        g.count += 1;
        g.hosts.insert(c.host.clone());
        if let Some(k) = &c.kernel {
            g.kernels.insert(k.clone());
        }
        g.first_seen = g.first_seen.min(c.time);
        if c.time >= g.last_seen {
            g.last_seen = c.time;
            g.newest = format!("{}:{}", c.server, c.dir);
        }
    }
    let mut v: Vec<Group> = by.into_values().collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(b.last_seen.cmp(&a.last_seen)));
    v
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn join(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "-".into()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(",")
    }
}

/// The human table.
pub fn render_human(groups: &[Group], since: &str) -> String {
    if groups.is_empty() {
        return format!("no crash in the last {since}\n");
    }
    let t = |d: &DateTime<Utc>| d.format("%Y-%m-%d %H:%M:%S").to_string();
    let mut rows = vec![[
        "COUNT".to_string(),
        "TITLE".into(),
        "KIND".into(),
        "HOSTS".into(),
        "KERNELS".into(),
        "FIRST".into(),
        "LAST".into(),
        "NEWEST".into(),
        "SIGNATURE".into(),
    ]];
    for g in groups {
        rows.push([
            g.count.to_string(),
            g.title.clone(),
            g.kind.clone(),
            join(&g.hosts),
            join(&g.kernels),
            t(&g.first_seen),
            t(&g.last_seen),
            g.newest.clone(),
            if g.signature.is_empty() {
                "-".into()
            } else {
                g.signature.clone()
            },
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        s.push_str(cells.join("  ").trim_end());
        s.push('\n');
    }
    let total: usize = groups.iter().map(|g| g.count).sum();
    s.push_str(&format!(
        "{total} crash{} in {} group{} in the last {since}\n",
        if total == 1 { "" } else { "es" },
        groups.len(),
        if groups.len() == 1 { "" } else { "s" }
    ));
    s
}

/// JUnit cases: one per inventory client, failed when it crashed in the window.
pub fn junit_cases(clients: &[String], crashes: &[Crash]) -> Vec<junit::Case> {
    clients
        .iter()
        .map(|h| {
            let mine: Vec<&Crash> = crashes.iter().filter(|c| &c.host == h).collect();
            let newest = mine.iter().max_by_key(|c| c.time);
            junit::Case {
                name: h.clone(),
                classname: "provision.crashes".into(),
                passed: mine.is_empty(),
                message: newest.map(|c| {
                    format!(
                        "{h} crashed {} time{}; newest: {} (signature {}) in {}:{}",
                        mine.len(),
                        if mine.len() == 1 { "" } else { "s" },
                        c.title,
                        if c.signature.is_empty() {
                            "-"
                        } else {
                            &c.signature
                        },
                        c.server,
                        c.dir
                    )
                }),
                duration: Duration::ZERO,
                output: mine
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {} {} {}\n",
                            c.time.to_rfc3339(),
                            c.title,
                            c.signature,
                            c.dir
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Inventory names by client address (`ansible_host`) and by name.
fn names_by_address(fleet: &FleetSettings) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = fleet
        .clients
        .keys()
        .map(|n| (n.clone(), n.clone()))
        .collect();
    for n in fleet.clients.keys() {
        if let Some(t) = fleet.targets.get(n) {
            m.insert(t.address.clone(), n.clone());
        }
    }
    m
}

pub async fn run(args: CrashesArgs) -> Result<i32> {
    let (_inv, fleet) = match crate::fleet::load_fleet(&args.inventory, PasswordInput::default()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(exit::USAGE);
        }
    };
    if fleet.servers.is_empty() {
        eprintln!(
            "error: {}: no host in group netdump_servers; nothing to read",
            args.inventory.display()
        );
        return Ok(exit::USAGE);
    }
    let since = chrono::Duration::from_std(args.since.duration)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let names = names_by_address(&fleet);
    let opts = args.connect.ssh_options();
    let mut set = tokio::task::JoinSet::new();
    for (name, server) in &fleet.servers {
        let Some(target) = fleet.targets.get(name).cloned() else {
            continue;
        };
        let (name, dump_dir, opts) = (name.clone(), server.dump_dir.clone(), opts.clone());
        let script = collect_script(&dump_dir, since.timestamp());
        set.spawn(async move {
            let r = async {
                let remote = crate::ssh::connect(&target, &opts)
                    .await
                    .map_err(|e| e.to_string())?;
                let out = remote
                    .run(
                        RemoteCommand::new("read crashes", script)
                            .timeout(Duration::from_secs(120)),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if !out.success() {
                    return Err(format!(
                        "step 'read crashes' failed (exit {:?}): {}",
                        out.status,
                        out.stderr_str().trim()
                    ));
                }
                parse_collected(&out.stdout_str()).map_err(|e| e.to_string())
            }
            .await;
            (name, dump_dir, r)
        });
    }
    let mut crashes = Vec::new();
    let mut failed = false;
    while let Some(joined) = set.join_next().await {
        let Ok((name, dump_dir, r)) = joined else {
            failed = true;
            continue;
        };
        match r {
            Ok(c) => crashes.extend(crashes_of(&name, &dump_dir, &c, &names, since)),
            Err(e) => {
                failed = true;
                eprintln!(
                    "error: {name}: cannot read its crashes in {dump_dir}: {e} (check that the server is reachable over ssh and the directory readable)"
                );
            }
        }
    }
    crashes.sort_by(|a, b| a.time.cmp(&b.time).then(a.dir.cmp(&b.dir)));
    let groups = group(&crashes);
    let since_text = &args.since.text;
    match args.output {
        Output::Human => print!("{}", render_human(&groups, since_text)),
        Output::Json => {
            for g in &groups {
                println!("{}", serde_json::to_string(g)?);
            }
        }
    }
    if let Some(path) = &args.junit {
        let clients: Vec<String> = fleet.clients.keys().cloned().collect();
        junit::write(
            path,
            "provision",
            "crashes",
            &junit_cases(&clients, &crashes),
        )?;
    }
    Ok(if !crashes.is_empty() {
        CRASHED
    } else if failed {
        exit::UNREACHABLE
    } else {
        exit::OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    fn framed(events: &str, dirs: &[(&str, i64, &str, &str)]) -> String {
        let mut s = format!("@@events\n{}\n", B64.encode(events));
        for (name, m, file, log) in dirs {
            s.push_str(&format!(
                "@@dir {m} {} {}\n{}\n",
                B64.encode(name),
                B64.encode(file),
                B64.encode(log)
            ));
        }
        s
    }

    const LOG: &str = "[ 5.0] BUG: kernel NULL pointer dereference, address: 0000000000000008\n[ 5.0] CPU: 0 PID: 1 Comm: x Not tainted 6.1.0-18-amd64 #1\n[ 5.0] RIP: 0010:widget_ioctl+0x2a/0x90\n[ 5.0] Call Trace:\n[ 5.0]  widget_dispatch+0x1/0x2\n";

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999w").is_err());
    }

    #[test]
    fn parses_framed_answer_and_refuses_garbage() {
        let text = framed(
            "{\"event\":\"crash\",\"host\":\"10.0.0.5\",\"dir\":\"/var/crash/10.0.0.5-x\",\"time\":\"2025-12-01T10:00:00.000Z\"}\nnot json\n",
            &[
                ("10.0.0.5-x", 1_764_583_200, "log", LOG),
                ("10.0.0.6-y", 1, "", ""),
            ],
        );
        let c = parse_collected(&text).unwrap();
        assert_eq!(c.events.len(), 1);
        assert_eq!(c.dirs.len(), 2);
        assert_eq!(c.dirs[0].log_name.as_deref(), Some("log"));
        assert_eq!(c.dirs[1].log_name, None);
        assert_eq!(
            parse_collected("@@dir x\n"),
            Err(CollectError::Malformed(1))
        );
        assert_eq!(parse_collected("hello\n"), Err(CollectError::Malformed(1)));
        assert!(parse_collected("@@dir 1 !!! \n\n").is_err());
    }

    #[test]
    fn crashes_grouped_by_signature_with_inventory_names() {
        let text = framed(
            "{\"event\":\"crash\",\"host\":\"10.0.0.5\",\"dir\":\"/var/crash/10.0.0.5-a\",\"time\":\"2025-12-01T10:00:00.000Z\"}\n",
            &[
                ("10.0.0.5-a", 1_764_583_300, "log", LOG),
                ("10.0.0.6-b", 1_764_590_000, "dmesg.202612011200", LOG),
                ("10.0.0.9-c", 1_764_591_000, "", ""),
                ("10.0.0.5-old", 1_000_000_000, "log", LOG),
            ],
        );
        let c = parse_collected(&text).unwrap();
        let names: BTreeMap<String, String> = [
            ("10.0.0.5".to_string(), "lab-client1".to_string()),
            ("10.0.0.6".to_string(), "lab-client2".to_string()),
        ]
        .into();
        let since = Utc.timestamp_opt(1_764_500_000, 0).unwrap();
        let crashes = crashes_of("srv", "/var/crash/", &c, &names, since);
        assert_eq!(crashes.len(), 3, "the old directory is outside the window");
        assert_eq!(
            crashes[0].time,
            DateTime::parse_from_rfc3339("2025-12-01T10:00:00Z").unwrap(),
            "the event's time wins over the directory's"
        );
        let groups = group(&crashes);
        assert_eq!(groups.len(), 2);
        let g = &groups[0];
        assert_eq!(g.count, 2);
        assert_eq!(
            g.title,
            "BUG: unable to handle kernel NULL pointer dereference in widget_ioctl"
        );
        assert_eq!(
            g.hosts.iter().collect::<Vec<_>>(),
            ["lab-client1", "lab-client2"]
        );
        assert_eq!(g.kernels.iter().collect::<Vec<_>>(), ["6.1.0-18-amd64"]);
        assert_eq!(g.newest, "srv:/var/crash/10.0.0.6-b");
        assert_eq!(groups[1].title, NO_LOG);
        assert_eq!(groups[1].hosts.iter().collect::<Vec<_>>(), ["10.0.0.9"]);
        let table = render_human(&groups, "24h");
        assert!(table.contains("lab-client1,lab-client2"), "{table}");
        assert!(
            table.ends_with("3 crashes in 2 groups in the last 24h\n"),
            "{table}"
        );
        let cases = junit_cases(&["lab-client1".into(), "lab-client3".into()], &crashes);
        assert!(!cases[0].passed);
        assert!(
            cases[0]
                .message
                .as_ref()
                .unwrap()
                .contains("widget_ioctl (signature ")
        );
        assert!(cases[1].passed);
    }

    #[test]
    fn directory_names_map_to_inventory_hosts() {
        let names: BTreeMap<String, String> = [
            ("10.0.0.5", "lab-client1"),
            ("lab-client1", "lab-client1"),
            ("lab-client12", "lab-client12"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(host_of("10.0.0.5-2026-12-01-10:00", &names), "lab-client1");
        assert_eq!(host_of("lab-client12-202612011000", &names), "lab-client12");
        assert_eq!(host_of("lab-client1-202612011000", &names), "lab-client1");
        assert_eq!(host_of("10.0.0.50-202612011000", &names), "10.0.0.50");
    }

    #[test]
    fn script_quotes_the_dump_dir() {
        let s = collect_script("/var/crash dir'x", 5);
        assert!(s.starts_with("cd '/var/crash dir'\\''x' ||"), "{s}");
        assert!(s.contains("-ge 5 ]"));
    }
}
