//! `provision dump-sink`: the only thing a client's key can run on the dump server.
//!
//! sshd starts it for every login of user netdump (a forced command: the `Match User netdump`
//! block's ForceCommand, and each managed key line's own `command=`). It learns who the client
//! is from sshd alone — its own arguments (`--client NAME --ip IP`, written by apply into the
//! key line) or, under ForceCommand, the key sshd authenticated (`ExposeAuthInfo`) looked up in
//! the root-owned authorized_keys2 — never from what the client sent. Then it parses
//! `SSH_ORIGINAL_COMMAND` ([`command`]), confines every path ([`policy`]) and does the work
//! without a shell, relative to the dump directory's descriptor ([`store`]): kdump's ssh
//! commands, SFTP ([`sftp`]) and legacy scp ([`scp`]). Anything else: one line on stderr,
//! exit 1, a `refused` event. docs/server-layout.md and docs/threat-model.md explain why.

pub mod command;
pub mod events;
pub mod identity;
pub mod policy;
pub mod scp;
pub mod sftp;
pub mod store;

use std::io::{BufReader, Read, Write};

use clap::Args;

use command::Request;
use events::SinkEvent;
use policy::{Client, Loc};
use store::{Limits, Store, StoreError};

/// Exit code for a refused or failed request.
pub const REFUSED: i32 = 1;

#[derive(Args, Debug, Clone)]
pub struct SinkArgs {
    /// The client's inventory name (from the key line's `command=`; set by apply).
    #[arg(long, requires = "ip")]
    pub client: Option<String>,
    /// The client's address (its dump directories are `<ip>-<stamp>`).
    #[arg(long, requires = "client")]
    pub ip: Option<std::net::IpAddr>,
    /// The dump directory (netdump's home).
    #[arg(long, default_value = "/var/crash")]
    pub dump_dir: String,
    /// Refuse a new dump when less than this many bytes are free (netdump_min_free).
    #[arg(long, default_value_t = 0)]
    pub min_free: u64,
    /// Keep at most this many dumps per client, deleting the oldest complete ones
    /// (netdump_keep_dumps; 0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub keep_dumps: u32,
    /// Keep the dump directory's dumps under this many bytes in total (netdump_max_total;
    /// 0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub max_total: u64,
    /// Where the managed key lines are (for ExposeAuthInfo identities).
    #[arg(long)]
    pub authorized_keys: Option<String>,
}

fn say(msg: &str) {
    let one_line: String = msg
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let _ = writeln!(std::io::stderr(), "dump-sink: {one_line}");
}

/// Runs one session; returns the exit code.
pub fn run(args: SinkArgs) -> i32 {
    let dump_dir = args.dump_dir.trim_end_matches('/').to_string();
    let keys = args
        .authorized_keys
        .clone()
        .unwrap_or_else(|| format!("{dump_dir}/.ssh/authorized_keys2"));
    let env = identity::Env::from_process();
    let client = match identity::establish(args.client.as_deref(), args.ip, &keys, &dump_dir, &env)
    {
        Ok(c) => c,
        Err(e) => {
            say(&format!("refused: {e}"));
            return REFUSED;
        }
    };
    let limits = Limits {
        min_free: args.min_free,
        keep_dumps: args.keep_dumps,
        max_total: args.max_total,
    };
    let store = match Store::open(&dump_dir, client.clone(), limits) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("the dump server cannot take dumps: {e}"));
            return REFUSED;
        }
    };
    let line = env.original_command.clone().unwrap_or_default();
    let refuse = |why: &str| {
        store.event(
            SinkEvent::new("refused", &client, &dump_dir).with_detail(format!(
                "{why} (command: {})",
                line.chars().take(200).collect::<String>()
            )),
        );
        say(&format!("refused: {why}"));
        REFUSED
    };
    let req = match command::parse(&line) {
        Ok(r) => r,
        Err(r) => return refuse(&r.0),
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let result =
        match req {
            // A dump stream: straight from sshd's pipe into the file.
            Request::WriteStdin { path } => loc(&store, &path)
                .and_then(|l| store.create(&l))
                .and_then(|mut f| {
                    use std::os::fd::AsFd;
                    store.receive_fd(&mut f, stdin.as_fd()).map(|_| ())
                }),
            req => serve(&store, req, &mut stdin.lock(), &mut stdout.lock()),
        };
    match result {
        Ok(()) => 0,
        Err(StoreError::Refused(m)) => refuse(&m),
        Err(e) => {
            say(&e.to_string());
            REFUSED
        }
    }
}

fn loc(store: &Store, path: &str) -> Result<Loc, StoreError> {
    store
        .client()
        .resolve(store.base_path(), path)
        .map_err(|r| StoreError::Refused(r.0))
}

/// Carries out one parsed request (no shell, no path outside the client's directories).
pub fn serve(
    store: &Store,
    req: Request,
    input: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<(), StoreError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source: std::io::Error| StoreError::Io { what, source }
    };
    match req {
        Request::Mkdir { path } => store.mkdir(&loc(store, &path)?).map(|_| ()),
        Request::MkTemp { base } => {
            if loc(store, &base)? != Loc::Base {
                return Err(StoreError::Refused(
                    "mktemp: only in the dump directory".into(),
                ));
            }
            let p = store.mktemp()?;
            writeln!(out, "{p}").map_err(io("mktemp"))
        }
        Request::Rmdir { path } => store.rmdir(&loc(store, &path)?),
        Request::Df { path } => {
            loc(store, &path)?;
            let kib = store.available()? / 1024;
            write!(out, "Avail\n{kib}\n").map_err(io("df"))
        }
        Request::WriteStdin { path } => {
            let l = loc(store, &path)?;
            let mut f = store.create(&l)?;
            store.receive(&mut f, input, None).map(|_| ())
        }
        Request::WriteText { path, text } => {
            let l = loc(store, &path)?;
            policy::text_ok(&l, &text).map_err(|r| StoreError::Refused(r.0))?;
            store.write_text(&l, &text)
        }
        Request::Rename { from, to } => store.rename(&loc(store, &from)?, &loc(store, &to)?),
        Request::Scp { sink, path } => {
            let l = loc(store, &path)?;
            let mut input = BufReader::new(input);
            let res = if sink {
                scp::receive(store, &l, &mut input, out)
            } else {
                scp::send(store, &l, &mut input, out)
            };
            res.map_err(StoreError::Refused)
        }
        Request::Sftp => {
            let client = store.client().clone();
            let note = |m: &str| {
                store.event(
                    SinkEvent::new("refused", &client, store.base_path())
                        .with_detail(format!("SFTP: {m}")),
                )
            };
            sftp::Server::new(store, &note)
                .serve(input, out)
                .map_err(|e| StoreError::Io {
                    what: "sftp".into(),
                    source: std::io::Error::other(e.to_string()),
                })
        }
        Request::Probe => {
            let l = store.limits();
            let mine = store
                .all_dump_dirs()?
                .into_iter()
                .filter(|d| d.ip == store.client().ip)
                .count();
            let v = serde_json::json!({
                "sink": env!("CARGO_PKG_VERSION"),
                "client": store.client().name,
                "ip": store.client().ip.to_string(),
                "free_bytes": store.free_bytes()?,
                "available_bytes": store.available()?,
                "min_free": l.min_free,
                "keep_dumps": l.keep_dumps,
                "max_total": l.max_total,
                "dumps": mine,
            });
            writeln!(out, "{v}").map_err(io("probe"))
        }
    }
}

/// For tests and tools: a client identity (no sshd involved).
pub fn client(name: &str, ip: std::net::IpAddr) -> Client {
    Client {
        name: name.into(),
        ip,
    }
}

/// netdump's login shell: sshd runs `<shell> -c <command>`. Only a forced command (then sshd
/// sets `SSH_ORIGINAL_COMMAND` to what the client asked for) that runs this program's
/// `dump-sink` is carried out; the command string comes from root's sshd configuration or key
/// line. Anything else — an interactive login, a client's own command — is refused.
pub fn login_shell(command: &str) -> i32 {
    if std::env::var_os("SSH_ORIGINAL_COMMAND").is_none() {
        say(
            "refused: this account only accepts crash dumps (no shell, no command without the dump sink)",
        );
        return REFUSED;
    }
    match parse_forced(command) {
        Some(args) => run(args),
        None => {
            say(
                "refused: the forced command is not the dump sink; check the sshd drop-in and the key lines (provision apply)",
            );
            REFUSED
        }
    }
}

/// Parses a forced command line `<path>/netdump-provision dump-sink ARGS...` (plain words).
pub fn parse_forced(command: &str) -> Option<SinkArgs> {
    #[derive(clap::Parser)]
    struct P {
        #[command(flatten)]
        a: SinkArgs,
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        [prog, "dump-sink", rest @ ..] if prog.starts_with('/') => {
            use clap::Parser;
            P::try_parse_from(std::iter::once("dump-sink").chain(rest.iter().copied()))
                .ok()
                .map(|p| p.a)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_and_df_answer_for_this_client() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(
            t.path().to_str().unwrap(),
            client("c1", "198.18.0.11".parse().unwrap()),
            Limits {
                min_free: 1 << 20,
                keep_dumps: 5,
                max_total: 0,
            },
        )
        .unwrap();
        let mut out = Vec::new();
        serve(&store, Request::Probe, &mut &b""[..], &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["client"], "c1");
        assert_eq!(v["keep_dumps"], 5);
        assert_eq!(v["sink"], env!("CARGO_PKG_VERSION"));
        assert!(v["available_bytes"].as_u64().unwrap() <= v["free_bytes"].as_u64().unwrap());
        let mut out = Vec::new();
        let df = command::parse(&format!("df --output=avail {}", t.path().display())).unwrap();
        serve(&store, df, &mut &b""[..], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("Avail"));
        assert!(lines.next().unwrap().parse::<u64>().is_ok(), "{text}");
        // Outside the dump directory: refused.
        let df = command::parse("df --output=avail /etc").unwrap();
        assert!(matches!(
            serve(&store, df, &mut &b""[..], &mut Vec::new()),
            Err(StoreError::Refused(_))
        ));
    }

    #[test]
    fn forced_command_lines() {
        let a = parse_forced("/usr/local/sbin/netdump-provision dump-sink --dump-dir /srv/d --min-free 5 --keep-dumps 2 --max-total 0 --client c1 --ip 198.18.0.11").unwrap();
        assert_eq!(a.dump_dir, "/srv/d");
        assert_eq!((a.min_free, a.keep_dumps), (5, 2));
        assert_eq!(a.client.as_deref(), Some("c1"));
        assert!(parse_forced("id").is_none());
        assert!(parse_forced("/bin/sh -c id").is_none());
        assert!(
            parse_forced("/x dump-sink --client c1").is_none(),
            "--client needs --ip"
        );
        assert!(parse_forced("/x dump-sink --evil").is_none());
    }
}
