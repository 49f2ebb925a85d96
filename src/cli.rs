//! The `provision` command line: clap definitions and wiring, on top of everything else; nothing
//! depends on it (what fleet commands share is in src/fleet.rs).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::apply::ApplyOptions;
use crate::fleet::{ConnectArgs, Output, SshConnector, exit, load_fleet, self_exe};
use crate::report::{Reporter, human::HumanReporter, json::JsonReporter};
use crate::secret::Secret;
use crate::settings::{self, PasswordInput};
use crate::templates::Templates;
use netdump_inventory::Inventory;

#[derive(Parser, Debug)]
#[command(
    name = "provision",
    version,
    about = "Provision network kernel crash dumps (netdump and kdump over ssh) on lab fleets, and prove they work"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More output (-v: every resource; -vv: debug logs).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Configure dump servers and clients from an inventory (idempotent).
    Apply(ApplyArgs),
    /// Crash clients on purpose and verify that their dump and console log arrived.
    TestCrash(crate::crashtest::TestCrashArgs),
    /// Run the dump receiver (netdump UDP protocol + netconsole) in the foreground.
    Receiver(netdump_receiver::config::ReceiverArgs),
    /// Show the resolved inventory.
    Inventory(InventoryArgs),
    /// A throwaway qemu lab fleet (server + clients) for demos and end-to-end tests.
    Lab(crate::lab::LabArgs),
    /// Find kernel crash reports in log files and name them (title, kind, signature).
    Triage(crate::triage_cmd::TriageArgs),
    /// What crashed across the fleet recently, grouped by crash signature (exit 3 if anything).
    Crashes(crate::crashes::CrashesArgs),
    /// Prove, read-only, that every client's dump path works (exit 2 if a check failed).
    Verify(crate::verify::VerifyArgs),
    /// The dump server's forced command for client keys (run by sshd, not by hand).
    #[command(hide = true)]
    DumpSink(crate::sink::SinkArgs),
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The inventory (Ansible YAML format).
    #[arg(value_name = "INVENTORY", required_unless_present = "inventory")]
    pub inventory_pos: Option<PathBuf>,
    /// The inventory, as with ansible's -i.
    #[arg(short = 'i', long = "inventory", value_name = "INVENTORY")]
    pub inventory: Option<PathBuf>,
    /// Predict changes; change nothing.
    #[arg(long, short = 'C')]
    pub check: bool,
    /// Show unified diffs of changed files (secrets masked).
    #[arg(long, short = 'D')]
    pub diff: bool,
    /// Only these hosts (Ansible host pattern: names, groups, globs, `:`, `:&`, `:!`).
    #[arg(long, short = 'l', value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Hosts worked on at once.
    #[arg(long, short = 'f', default_value_t = 50)]
    pub forks: usize,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// File holding the netdump user's password (plaintext, first line); hashed locally.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Directory whose *.j2 files override the embedded templates by name.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Reboot kdump clients that need it for crashkernel= and wait (seconds) until they are
    /// back with the capture kernel loaded.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "900")]
    pub reboot: Option<u64>,
    /// Receiver binary to install on servers (default: this program). A static build
    /// (`--target x86_64-unknown-linux-musl`) runs on any server; a dynamic one needs the
    /// server's glibc to be at least as new as the one it was linked against (checked).
    #[arg(long, value_name = "FILE", env = "NETDUMP_RECEIVER_BINARY")]
    pub receiver_binary: Option<PathBuf>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Args, Debug)]
pub struct InventoryArgs {
    #[arg(short = 'i', long = "inventory", value_name = "INVENTORY")]
    pub inventory: PathBuf,
    /// Print the whole inventory as JSON (ansible-inventory --list shape).
    #[arg(long)]
    pub list: bool,
    /// Print one host's variables as JSON.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Print the resolved netdump settings of every host (secrets omitted).
    #[arg(long)]
    pub settings: bool,
}

/// Reads the netdump password from `--password-file` or `NETDUMP_PASSWORD`.
fn password_input(file: Option<&PathBuf>) -> Result<PasswordInput> {
    if let Some(p) = file {
        let text = std::fs::read_to_string(p).with_context(|| {
            format!(
                "cannot read --password-file {}; check the path and permissions",
                p.display()
            )
        })?;
        let line = text.lines().next().unwrap_or("").to_string();
        anyhow::ensure!(
            !line.is_empty(),
            "--password-file {}: the first line is empty; put the password there",
            p.display()
        );
        return Ok(PasswordInput {
            plaintext: Some(Secret::new(line)),
        });
    }
    Ok(PasswordInput {
        plaintext: std::env::var("NETDUMP_PASSWORD")
            .ok()
            .filter(|s| !s.is_empty())
            .map(Secret::new),
    })
}

async fn run_apply(args: ApplyArgs, verbose: u8) -> Result<i32> {
    let path = args
        .inventory
        .clone()
        .or(args.inventory_pos.clone())
        .context("no inventory given")?;
    let password = password_input(args.password_file.as_ref())?;
    let (inv, fleet) = match load_fleet(&path, password) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(exit::USAGE);
        }
    };
    let selected = match &args.limit {
        Some(p) => match inv.select(p) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: --limit: {e}");
                return Ok(exit::USAGE);
            }
        },
        None => inv.hosts().map(|h| h.name.clone()).collect(),
    };
    let templates = match Templates::new(args.templates.as_deref()) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
    };
    // Every server gets this program as its dump sink (and, when embedded, its receiver).
    let needs_binary = fleet.servers.values().any(|s| selected.contains(&s.host));
    let receiver_binary = if needs_binary {
        let p = match &args.receiver_binary {
            Some(p) => p.clone(),
            None => self_exe().context(
                "cannot locate this program to install it as the receiver; pass --receiver-binary",
            )?,
        };
        match crate::receiver_binary::ReceiverBinary::load(&p) {
            Ok(b) => Some(Arc::new(b)),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(exit::USAGE);
            }
        }
    } else {
        None
    };
    let count = selected
        .iter()
        .filter(|h| fleet.servers.contains_key(*h) || fleet.clients.contains_key(*h))
        .count();
    let reporter: Arc<dyn Reporter> = match args.output {
        Output::Human => Arc::new(HumanReporter::new(count, verbose > 0, args.diff)),
        Output::Json => Arc::new(JsonReporter::new(std::io::stdout())),
    };
    let opts = ApplyOptions {
        check: args.check,
        diff: args.diff,
        forks: args.forks.max(1),
        templates,
        receiver_binary,
        step_timeout: Duration::from_secs(300),
        reboot: args.reboot.map(Duration::from_secs),
    };
    let connector = Arc::new(SshConnector {
        options: args.connect.ssh_options(),
    });
    let recap = crate::apply::apply(&fleet, &selected, &opts, connector, reporter).await;
    Ok(recap.exit_code())
}

fn run_inventory(args: InventoryArgs) -> Result<i32> {
    let inv = match Inventory::load(&args.inventory) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
    };
    if let Some(h) = &args.host {
        match inv.host_vars_json(h, SECRET_VARS, Secret::MASK) {
            Some(v) => println!("{}", serde_json::to_string_pretty(&v)?),
            None => {
                eprintln!("error: host {h} is not in {}", args.inventory.display());
                return Ok(exit::USAGE);
            }
        }
    } else if args.settings {
        let fleet = match settings::resolve(&inv, PasswordInput::default()) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(exit::USAGE);
            }
        };
        let v = serde_json::json!({
            "servers": fleet.servers, "clients": fleet.clients, "targets": fleet.targets,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        // Written as it is serialized: a large fleet's document is never held whole.
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut out, &inv.list_json(SECRET_VARS, Secret::MASK))?;
        writeln!(out)?;
        out.flush()?;
    }
    Ok(exit::OK)
}

/// Variables whose values are never printed (ansible-inventory would print them).
const SECRET_VARS: &[&str] = &[
    "netdump_password_hash",
    "ansible_password",
    "ansible_become_password",
];

fn init_tracing(verbose: u8, json: bool) {
    let default = match verbose {
        0 => "warn,netdump_provision=info,netdump_receiver=info",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// How the program was started.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    /// As netdump's login shell: sshd runs `<shell> -c <command>` (the forced command), or a
    /// login shell named `-…` with no command. The command goes to the dump sink, which
    /// refuses everything it does not know; it never reaches clap.
    LoginShell(String),
    /// As a command: clap parses the arguments.
    Command,
}

fn entry(argv: &[std::ffi::OsString]) -> Entry {
    if argv.len() == 3 && argv[1] == "-c" {
        return Entry::LoginShell(argv[2].to_string_lossy().into_owned());
    }
    if argv
        .first()
        .is_some_and(|a| a.to_string_lossy().starts_with('-'))
    {
        return Entry::LoginShell(String::new());
    }
    Entry::Command
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Entry::LoginShell(command) = entry(&argv) {
        return crate::sink::login_shell(&command);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    // The sink runs once per ssh login: no async runtime, no log subscriber on the client's
    // stderr.
    let command = match cli.command {
        Command::DumpSink(a) => return crate::sink::run(a),
        c => c,
    };
    init_tracing(cli.verbose, false);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::USAGE;
        }
    };
    let result = rt.block_on(async move {
        match command {
            Command::DumpSink(_) => unreachable!("handled before the runtime starts"),
            Command::Apply(a) => run_apply(a, cli.verbose).await,
            Command::TestCrash(a) => crate::crashtest::run(a, cli.verbose).await,
            Command::Receiver(a) => crate::receiver_cmd::run(a).await.map(|_| exit::OK),
            Command::Inventory(a) => run_inventory(a),
            Command::Lab(a) => crate::lab::run(a).await,
            Command::Triage(a) => crate::triage_cmd::run(a),
            Command::Crashes(a) => crate::crashes::run(a).await,
            Command::Verify(a) => crate::verify::run(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<std::ffi::OsString> {
        a.iter().map(Into::into).collect()
    }

    #[test]
    fn sshd_starting_the_login_shell_reaches_the_sink_never_clap() {
        assert_eq!(
            entry(&argv(&[
                "/usr/local/sbin/netdump-provision",
                "-c",
                "apply --help"
            ])),
            Entry::LoginShell("apply --help".into())
        );
        assert_eq!(
            entry(&argv(&["-netdump-provision"])),
            Entry::LoginShell(String::new())
        );
        assert_eq!(
            entry(&argv(&["provision", "apply", "inv.yaml"])),
            Entry::Command
        );
        // `-c` with anything else is a (bad) command line, for clap to refuse.
        assert_eq!(entry(&argv(&["provision", "-c"])), Entry::Command);
    }

    #[test]
    fn apply_takes_the_inventory_either_way_and_its_flags() {
        let c = Cli::try_parse_from([
            "provision",
            "apply",
            "-i",
            "inv.yaml",
            "-C",
            "-D",
            "-l",
            "c1",
        ])
        .unwrap();
        let Command::Apply(a) = c.command else {
            panic!("apply")
        };
        assert_eq!(
            a.inventory.as_deref(),
            Some(std::path::Path::new("inv.yaml"))
        );
        assert!(a.check && a.diff);
        assert_eq!(a.limit.as_deref(), Some("c1"));
        assert_eq!(a.reboot, None);
        let c = Cli::try_parse_from(["provision", "apply", "inv.yaml", "--reboot"]).unwrap();
        let Command::Apply(a) = c.command else {
            panic!("apply")
        };
        assert_eq!(
            a.inventory_pos.as_deref(),
            Some(std::path::Path::new("inv.yaml"))
        );
        assert_eq!(
            a.reboot,
            Some(900),
            "--reboot alone waits the default 900 s"
        );
        assert!(
            Cli::try_parse_from(["provision", "apply"]).is_err(),
            "no inventory"
        );
    }

    #[test]
    fn the_password_file_gives_its_first_line_and_refuses_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\nignored\n").unwrap();
        let pw = password_input(Some(&p)).unwrap();
        assert_eq!(pw.plaintext.unwrap().expose(), "s3cret");
        std::fs::write(&p, "\nsecond\n").unwrap();
        let e = password_input(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("first line is empty"), "{e}");
        let e = password_input(Some(&dir.path().join("missing")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read --password-file"), "{e}");
    }
}
