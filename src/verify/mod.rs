//! `provision verify`: proves, read-only, that every link of every client's dump path works
//! (issue 12), without crashing anything.
//!
//! - [`observe`]: the scripts hosts run and the parsing of their answers (pure, bounded).
//! - [`checks`]: observations + settings → one [`CheckResult`] per check (pure).
//! - [`run`]: the IO driver (all hosts at once; at most two ssh round trips per client, one
//!   observation per server and one marker read per server and poll).
//! - this file: the command line and the three outputs (table, JSON lines, JUnit).
//!
//! docs/verify.md explains each check and its limits.

pub mod checks;
pub mod observe;
pub mod run;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::fleet::{ConnectArgs, Output, exit};
use crate::report::junit;
use crate::settings::PasswordInput;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Hosts or groups to verify (Ansible host patterns); default: every server and client.
    #[arg(value_name = "HOST")]
    pub hosts: Vec<String>,
    #[arg(short = 'i', long = "inventory", value_name = "INVENTORY")]
    pub inventory: PathBuf,
    /// Further restrict the hosts (Ansible host pattern).
    #[arg(long, short = 'l', value_name = "PATTERN")]
    pub limit: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// Write a JUnit XML report here (one test case per host and check).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Seconds to wait for the netconsole markers to reach the receivers.
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    pub marker_timeout: u64,
    /// Hosts worked on at once.
    #[arg(long, short = 'f', default_value_t = 100)]
    pub forks: usize,
    /// The build servers should run (default: this program), as with apply.
    #[arg(long, value_name = "FILE", env = "NETDUMP_RECEIVER_BINARY")]
    pub receiver_binary: Option<PathBuf>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// One check of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub host: String,
    pub check: String,
    pub ok: bool,
    /// What was seen.
    pub detail: String,
    /// What to do (empty when the check passed).
    pub fix: String,
}

/// Everything one run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub results: Vec<CheckResult>,
    /// Hosts that could not be reached (their `reachable` check failed).
    pub unreachable: Vec<String>,
    /// ssh round trips per host (for the bench and the recap).
    pub round_trips: std::collections::BTreeMap<String, u32>,
    pub elapsed: Duration,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.ok).count()
    }

    /// 0 all passed, 2 a check failed, 4 a host unreachable (and nothing else failed).
    pub fn exit_code(&self) -> i32 {
        let other = self
            .results
            .iter()
            .any(|r| !r.ok && !self.unreachable.contains(&r.host));
        if other {
            exit::HOST_FAILED
        } else if !self.unreachable.is_empty() {
            exit::UNREACHABLE
        } else {
            exit::OK
        }
    }

    pub fn recap_json(&self) -> serde_json::Value {
        let hosts: std::collections::BTreeSet<&str> =
            self.results.iter().map(|r| r.host.as_str()).collect();
        let trips: u32 = self.round_trips.values().sum();
        serde_json::json!({
            "event": "recap",
            "hosts": hosts.len(),
            "checks": self.results.len(),
            "passed": self.results.len() - self.failed(),
            "failed": self.failed(),
            "unreachable": self.unreachable,
            "round_trips": trips,
            "secs": (self.elapsed.as_secs_f64() * 10.0).round() / 10.0,
            "exit": self.exit_code(),
        })
    }
}

/// The human table: one row per host and check.
pub fn render_human(r: &Report) -> String {
    let hw = r
        .results
        .iter()
        .map(|c| c.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let cw = r
        .results
        .iter()
        .map(|c| c.check.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut s = format!("{:<hw$}  {:<cw$}  {:<4}  detail\n", "host", "check", "");
    for c in &r.results {
        s.push_str(&format!(
            "{:<hw$}  {:<cw$}  {:<4}  {}\n",
            c.host,
            c.check,
            if c.ok { "ok" } else { "FAIL" },
            c.detail
        ));
        if !c.ok && !c.fix.is_empty() {
            s.push_str(&format!("{:<hw$}  {:<cw$}        fix: {}\n", "", "", c.fix));
        }
    }
    s.push_str(&format!(
        "{} checks: {} passed, {} failed; {} unreachable; {:.1}s\n",
        r.results.len(),
        r.results.len() - r.failed(),
        r.failed(),
        r.unreachable.len(),
        r.elapsed.as_secs_f64()
    ));
    s
}

/// JSON lines: one object per check, then the recap.
pub fn render_json(r: &Report) -> String {
    let mut s = String::new();
    for c in &r.results {
        s.push_str(&serde_json::to_string(c).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&r.recap_json().to_string());
    s.push('\n');
    s
}

pub fn junit_cases(r: &Report) -> Vec<junit::Case> {
    r.results
        .iter()
        .map(|c| junit::Case {
            name: format!("{}.{}", c.host, c.check),
            classname: format!("provision.verify.{}", c.host),
            passed: c.ok,
            message: (!c.ok).then(|| format!("{}; fix: {}", c.detail, c.fix)),
            duration: Duration::ZERO,
            output: c.detail.clone(),
        })
        .collect()
}

/// `provision verify`.
pub async fn run(args: VerifyArgs) -> Result<i32> {
    let (inv, fleet) = match crate::fleet::load_fleet(&args.inventory, PasswordInput::default()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(exit::USAGE);
        }
    };
    let mut hosts: Vec<String> = if args.hosts.is_empty() {
        fleet
            .targets
            .keys()
            .filter(|h| fleet.servers.contains_key(*h) || fleet.clients.contains_key(*h))
            .cloned()
            .collect()
    } else {
        let mut v = Vec::new();
        for p in &args.hosts {
            match inv.select(p) {
                Ok(s) => v.extend(s),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(exit::USAGE);
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
                return Ok(exit::USAGE);
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    hosts.retain(|h| seen.insert(h.clone()));
    hosts.retain(|h| fleet.servers.contains_key(h) || fleet.clients.contains_key(h));
    if hosts.is_empty() {
        eprintln!("error: no server or client matches; nothing to verify");
        return Ok(exit::USAGE);
    }
    let binary = match &args.receiver_binary {
        Some(p) => Ok(p.clone()),
        None => crate::fleet::self_exe().map_err(|e| e.to_string()),
    };
    let opts = run::Options {
        forks: args.forks.max(1),
        marker_timeout: Duration::from_secs(args.marker_timeout),
        step_timeout: Duration::from_secs(60),
        binary,
    };
    let connector = std::sync::Arc::new(crate::fleet::SshConnector {
        options: args.connect.ssh_options(),
    });
    let report = run::verify(&fleet, &hosts, &opts, connector).await;
    match args.output {
        Output::Human => print!("{}", render_human(&report)),
        Output::Json => print!("{}", render_json(&report)),
    }
    if let Some(path) = &args.junit {
        junit::write(path, "provision", "verify", &junit_cases(&report))?;
    }
    Ok(report.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(host: &str, check: &str, ok: bool) -> CheckResult {
        CheckResult {
            host: host.into(),
            check: check.into(),
            ok,
            detail: "seen".into(),
            fix: if ok { String::new() } else { "do it".into() },
        }
    }

    #[test]
    fn exit_codes_and_outputs() {
        let mut r = Report {
            results: vec![c("c1", "ssh_path", true), c("srv", "receiver", true)],
            ..Report::default()
        };
        assert_eq!(r.exit_code(), 0);
        r.results.push(c("c2", "reachable", false));
        r.unreachable.push("c2".into());
        assert_eq!(r.exit_code(), 4);
        r.results.push(c("c1", "netconsole_mac", false));
        assert_eq!(r.exit_code(), 2);
        let json = render_json(&r);
        let lines: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0]["check"], "ssh_path");
        assert_eq!(lines[3]["ok"], false);
        assert_eq!(lines[4]["event"], "recap");
        assert_eq!(lines[4]["failed"], 2);
        let human = render_human(&r);
        assert!(
            human.contains("FAIL") && human.contains("fix: do it"),
            "{human}"
        );
        let xml = junit::render("provision", "verify", &junit_cases(&r)).unwrap();
        assert!(
            xml.contains("tests=\"4\"") && xml.contains("failures=\"2\""),
            "{xml}"
        );
        assert!(xml.contains("c1.netconsole_mac"));
    }
}
