//! `provision receiver` options: clap arguments, netdump-server's `/etc/netdump.conf`, and the
//! resolved configuration (explicit CLI flags > config file > defaults).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use netdump_proto::session::Tuning;

pub const DEFAULT_PORT: u16 = 6666;
pub const DEFAULT_DUMP_DIR: &str = "/var/crash";
/// Dumps received at once. netdump-server's 4 dates from a single-threaded C server; this
/// receiver shares one in-flight page budget among its dumps, and 64 simulated RHEL 4 clients
/// crashing at once all dumped with about 1.2 MiB of memory each (tests/receiver_storm.rs).
/// A client over the limit is rebooted without a dump: the one loss this limit can cause.
pub const DEFAULT_CONCURRENT: usize = 64;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReceiverArgs {
    /// UDP address to listen on (netdump and netconsole share it); `[::]` takes IPv4 and IPv6
    /// [default: [::]:6666]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Root of the dump directories [default: /var/crash]
    #[arg(long, value_name = "DIR")]
    pub dump_dir: Option<PathBuf>,
    /// Simultaneous memory dumps; extra crashing clients are only logged and rebooted [default: 64]
    #[arg(long, value_name = "N")]
    pub concurrent: Option<usize>,
    /// Require the START magic to match <dump-dir>/magic/<client-ip> (default)
    #[arg(long, overrides_with = "insecure")]
    pub secure: bool,
    /// Accept dumps from any client, without the magic check
    #[arg(long, overrides_with = "secure")]
    pub insecure: bool,
    /// Check free space before each memory dump (default)
    #[arg(long, overrides_with = "no_space_check")]
    pub space_check: bool,
    /// Do not check free space
    #[arg(long, overrides_with = "space_check")]
    pub no_space_check: bool,
    /// Leave all-zero pages as sparse holes in the vmcore
    #[arg(long)]
    pub skip_zero: bool,
    /// Memory pages requested ahead of the replies [default: 128]
    #[arg(long, value_name = "PAGES")]
    pub window: Option<usize>,
    /// netdump-server configuration file (keys: port, addr, max_concurrent_dumps, secure,
    /// space_check, dumpdir, skip_zero)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// When started as root: switch to this user after binding (e.g. netdump)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Print the counters of the receiver serving --dump-dir (caps reached, drops, failures)
    /// from <dump-dir>/receiver-stats.json, and exit
    #[arg(long)]
    pub stats: bool,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read receiver config {path}: {source} (fix the path given to --config)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("receiver config {path} line {line}: {msg}")]
    Syntax {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("receiver option {0}")]
    Invalid(String),
}

/// Settings read from a netdump.conf (only keys present are `Some`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileConfig {
    pub port: Option<u16>,
    pub addr: Option<IpAddr>,
    pub max_concurrent_dumps: Option<usize>,
    pub secure: Option<bool>,
    pub space_check: Option<bool>,
    pub dumpdir: Option<PathBuf>,
    pub skip_zero: Option<bool>,
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl FileConfig {
    /// Parses `key = value` / `key=value` / `key value` lines; `#` starts a comment; values may be
    /// double-quoted. Unknown keys (daemon, pidfile, …) are accepted and ignored.
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        let mut c = FileConfig::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |msg: String| ConfigError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                msg,
            };
            let (key, val) = match line.find(|ch: char| ch == '=' || ch.is_whitespace()) {
                Some(p) => (
                    line[..p].trim(),
                    line[p..].trim_start_matches(['=', ' ', '\t']),
                ),
                None => return Err(err(format!("`{line}` has no value; write `key = value`"))),
            };
            let val = val.trim().trim_matches('"');
            let bool_of = |v: &str| {
                parse_bool(v)
                    .ok_or_else(|| err(format!("{key} must be true/false or 1/0, not `{v}`")))
            };
            match key {
                "port" => {
                    c.port =
                        Some(val.parse().map_err(|_| {
                            err(format!("port must be a number 1-65535, not `{val}`"))
                        })?)
                }
                "addr" => {
                    c.addr = Some(
                        val.parse()
                            .map_err(|_| err(format!("addr must be an IP address, not `{val}`")))?,
                    )
                }
                "max_concurrent_dumps" => {
                    c.max_concurrent_dumps = Some(val.parse().map_err(|_| {
                        err(format!(
                            "max_concurrent_dumps must be a number, not `{val}`"
                        ))
                    })?)
                }
                "secure" => c.secure = Some(bool_of(val)?),
                "space_check" => c.space_check = Some(bool_of(val)?),
                "skip_zero" => c.skip_zero = Some(bool_of(val)?),
                "dumpdir" => c.dumpdir = Some(PathBuf::from(val)),
                _ => tracing::debug!("{}: ignoring key {key}", path.display()),
            }
        }
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        FileConfig::parse(&text, path)
    }
}

/// The receiver's resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    pub listen: SocketAddr,
    pub dump_dir: PathBuf,
    pub concurrent: usize,
    pub secure: bool,
    pub space_check: bool,
    pub user: Option<String>,
    pub tuning: Tuning,
    /// Upper bound on a hook script's run time.
    pub hook_timeout: Duration,
    /// Housekeeping period (idle sources, writer stalls); session and netconsole timers run
    /// from their own deadlines.
    pub tick: Duration,
    /// Caps on everything a sender can make the receiver hold (receiver::limits).
    pub caps: super::limits::Caps,
    /// Pages in flight summed over all concurrent dumps; each dump gets an equal share
    /// (at most `tuning.window`, at least 4) so many clients cannot overrun the socket buffer.
    pub total_window: usize,
}

impl ReceiverConfig {
    /// Defaults of netdump-server with the given dump dir.
    pub fn new(dump_dir: PathBuf) -> ReceiverConfig {
        ReceiverConfig {
            listen: SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), DEFAULT_PORT),
            dump_dir,
            concurrent: DEFAULT_CONCURRENT,
            secure: true,
            space_check: true,
            user: None,
            tuning: Tuning::default(),
            hook_timeout: Duration::from_secs(60),
            tick: Duration::from_millis(250),
            caps: super::limits::Caps::default(),
            total_window: 2048,
        }
    }

    /// CLI flags win over the config file, which wins over the defaults.
    pub fn resolve(args: &ReceiverArgs) -> Result<ReceiverConfig, ConfigError> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        Self::resolve_with(args, &file)
    }

    pub fn resolve_with(
        args: &ReceiverArgs,
        file: &FileConfig,
    ) -> Result<ReceiverConfig, ConfigError> {
        let dump_dir = args
            .dump_dir
            .clone()
            .or_else(|| file.dumpdir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DUMP_DIR));
        if !dump_dir.is_absolute() {
            return Err(ConfigError::Invalid(format!(
                "--dump-dir {} must be an absolute path",
                dump_dir.display()
            )));
        }
        let mut c = ReceiverConfig::new(dump_dir);
        c.listen = args.listen.unwrap_or_else(|| {
            SocketAddr::new(
                file.addr.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
                file.port.unwrap_or(DEFAULT_PORT),
            )
        });
        c.concurrent = args
            .concurrent
            .or(file.max_concurrent_dumps)
            .unwrap_or(DEFAULT_CONCURRENT);
        c.secure = if args.insecure {
            false
        } else if args.secure {
            true
        } else {
            file.secure.unwrap_or(true)
        };
        c.space_check = if args.no_space_check {
            false
        } else if args.space_check {
            true
        } else {
            file.space_check.unwrap_or(true)
        };
        c.tuning.skip_zero = args.skip_zero || file.skip_zero.unwrap_or(false);
        if let Some(w) = args.window {
            if w == 0 || w > 65536 {
                return Err(ConfigError::Invalid(format!(
                    "--window {w} must be between 1 and 65536 pages"
                )));
            }
            c.tuning.window = w;
        }
        c.user = args.user.clone();
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        r: ReceiverArgs,
    }

    fn args(v: &[&str]) -> ReceiverArgs {
        Cli::try_parse_from(std::iter::once("x").chain(v.iter().copied()))
            .unwrap()
            .r
    }

    #[test]
    fn defaults_match_netdump_server() {
        let c = ReceiverConfig::resolve_with(&args(&[]), &FileConfig::default()).unwrap();
        assert_eq!(c.listen, "[::]:6666".parse().unwrap());
        assert_eq!(c.dump_dir, PathBuf::from("/var/crash"));
        assert_eq!(c.concurrent, DEFAULT_CONCURRENT);
        assert!(c.secure && c.space_check && !c.tuning.skip_zero);
    }

    #[test]
    fn config_file_forms_and_cli_precedence() {
        let text = "# netdump.conf\nport = 7777\naddr=198.18.0.1\nmax_concurrent_dumps 9\n\
                    secure=0  # off\nspace_check = \"false\"\ndumpdir = \"/srv/crash\"\ndaemon=true\n";
        let f = FileConfig::parse(text, Path::new("/etc/netdump.conf")).unwrap();
        let c = ReceiverConfig::resolve_with(&args(&[]), &f).unwrap();
        assert_eq!(c.listen, "198.18.0.1:7777".parse().unwrap());
        assert_eq!(c.concurrent, 9);
        assert!(!c.secure && !c.space_check);
        assert_eq!(c.dump_dir, PathBuf::from("/srv/crash"));
        let c = ReceiverConfig::resolve_with(
            &args(&[
                "--secure",
                "--space-check",
                "--concurrent",
                "2",
                "--listen",
                "127.0.0.1:1",
                "--dump-dir",
                "/x",
            ]),
            &f,
        )
        .unwrap();
        assert!(c.secure && c.space_check);
        assert_eq!(c.concurrent, 2);
        assert_eq!(c.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(c.dump_dir, PathBuf::from("/x"));
        let c =
            ReceiverConfig::resolve_with(&args(&["--insecure"]), &FileConfig::default()).unwrap();
        assert!(!c.secure);
    }

    #[test]
    fn bad_config_names_file_and_line() {
        let e = FileConfig::parse("port = 6666\nsecure = maybe\n", Path::new("/etc/n.conf"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/n.conf line 2"), "{e}");
        assert!(
            ReceiverConfig::resolve_with(&args(&["--window", "0"]), &FileConfig::default())
                .is_err()
        );
        assert!(
            ReceiverConfig::resolve_with(&args(&["--dump-dir", "rel"]), &FileConfig::default())
                .is_err()
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

            /// Any text (netdump.conf is often hand-edited) parses or fails with a line number;
            /// never a panic.
            #[test]
            fn any_text_parses_or_names_a_line(text in "(?s).{0,400}") {
                match FileConfig::parse(&text, Path::new("/etc/netdump.conf")) {
                    Ok(_) => {}
                    Err(e) => prop_assert!(e.to_string().contains("/etc/netdump.conf line "), "{e}"),
                }
            }

            /// Well-formed lines in any spelling give back their values.
            #[test]
            fn known_keys_round_trip(
                port in 1u16..,
                conc in 0usize..10_000,
                secure in any::<bool>(),
                sep in prop_oneof![Just(" = "), Just("="), Just(" "), Just("\t")],
                quote in any::<bool>(),
            ) {
                let q = if quote { "\"" } else { "" };
                let text = format!(
                    "# c\nport{sep}{q}{port}{q}\nmax_concurrent_dumps{sep}{conc}\nsecure{sep}{}  # x\n",
                    if secure { "yes" } else { "0" }
                );
                let c = FileConfig::parse(&text, Path::new("/n")).unwrap();
                prop_assert_eq!(c.port, Some(port));
                prop_assert_eq!(c.max_concurrent_dumps, Some(conc));
                prop_assert_eq!(c.secure, Some(secure));
            }
        }
    }
}
