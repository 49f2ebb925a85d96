//! The embedded dump receiver (`provision receiver`): netdump UDP protocol and netconsole logs.
//!
//! - `wire`: netdump frame codec and the port-6666 datagram classifier (pure).
//! - `session`: one crashing client as a sans-IO state machine, `(input, now) -> actions`.
//! - `vmcore`: the ELF core header `crash` recognises as a netdump dump (pure).
//! - `store`: dump directories, log and vmcore files, magic files, hooks, space checks.
//! - `server`: the tokio UDP loop that feeds sessions and performs their actions.
//! - `config`: `ReceiverArgs` (clap), netdump.conf, resolved `ReceiverConfig`.
//! - `events`: `<dumpdir>/events.jsonl`.
//! - `files`: opening files that must be regular, without following links or blocking.
//! - `limits`: caps and counters on what senders can make the receiver hold.
//! - `writer`: the threads doing file IO off the packet loop.

pub mod config;
pub mod console;
pub mod events;
pub mod files;
pub mod limits;
pub mod netconsole;
pub mod server;
pub mod session;
pub mod store;
pub mod vmcore;
pub mod wire;
pub mod writer;

pub use config::{ReceiverArgs, ReceiverConfig};

/// Runs the receiver in the foreground until SIGTERM or SIGINT.
pub async fn run(args: ReceiverArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let cfg = ReceiverConfig::resolve(&args)?;
    if args.stats {
        return print_stats(&cfg.dump_dir);
    }
    let user = cfg.user.clone();
    // Handlers first: a SIGTERM that arrives once we serve must stop us cleanly, not kill us.
    let shutdown = shutdown_signal()?;
    let server = server::Server::bind(cfg).await?;
    if let Some(name) = user {
        drop_privileges(&name)?;
    }
    server.run(shutdown).await
}

/// `provision receiver --stats`: the counters the receiver serving `dump_dir` last wrote.
fn print_stats(dump_dir: &std::path::Path) -> anyhow::Result<()> {
    let p = dump_dir.join(writer::STATS_FILE);
    let b = files::read_bounded(&p, 64 * 1024).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e} (is a receiver serving --dump-dir {}? it writes the file every \
             report interval and at shutdown)",
            p.display(),
            dump_dir.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_slice(&b)
        .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", p.display()))?;
    if let Some(m) = v.as_object() {
        for (k, v) in m {
            println!("{k:<22} {v}");
        }
    }
    Ok(())
}

/// Installs SIGTERM/SIGINT handlers now; the returned future resolves on either signal.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| anyhow::anyhow!("cannot install the SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| anyhow::anyhow!("cannot install the SIGINT handler: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// When running as root, switches to `name` (groups, gid, then uid). Not root: nothing to do.
pub fn drop_privileges(name: &str) -> anyhow::Result<()> {
    use nix::unistd::{Uid, User, setgid, setgroups, setuid};
    if !Uid::effective().is_root() {
        tracing::debug!("not root; ignoring --user {name}");
        return Ok(());
    }
    let user = User::from_name(name)
        .map_err(|e| anyhow::anyhow!("cannot look up user {name}: {e}"))?
        .ok_or_else(|| {
            anyhow::anyhow!("--user {name}: no such user (create it, e.g. `useradd -r netdump`)")
        })?;
    setgroups(&[user.gid]).map_err(|e| anyhow::anyhow!("setgroups for {name}: {e}"))?;
    setgid(user.gid).map_err(|e| anyhow::anyhow!("setgid {} for {name}: {e}", user.gid))?;
    setuid(user.uid).map_err(|e| anyhow::anyhow!("setuid {} for {name}: {e}", user.uid))?;
    tracing::info!(
        "running as user {name} (uid {}, gid {})",
        user.uid,
        user.gid
    );
    Ok(())
}
