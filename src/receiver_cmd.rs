//! `provision receiver`: the command edge of the netdump-receiver crate: logging, signals,
//! dropping privileges after the bind, `--stats`.

use netdump_receiver::files::read_bounded;
use netdump_receiver::server::Server;
use netdump_receiver::writer::STATS_FILE;
use netdump_receiver::{ReceiverArgs, ReceiverConfig};

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
    let server = Server::bind(cfg).await?;
    if let Some(name) = user {
        drop_privileges(&name)?;
    }
    Ok(server.run(shutdown).await?)
}

/// `provision receiver --stats`: the counters the receiver serving `dump_dir` last wrote.
fn print_stats(dump_dir: &std::path::Path) -> anyhow::Result<()> {
    let p = dump_dir.join(STATS_FILE);
    let b = read_bounded(&p, 64 * 1024).map_err(|e| {
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
/// The user is looked up first in every case, so a misspelt `--user` fails on a developer's
/// machine as it would on the server.
pub fn drop_privileges(name: &str) -> anyhow::Result<()> {
    use nix::unistd::{Uid, User, setgid, setgroups, setuid};
    let user = User::from_name(name)
        .map_err(|e| anyhow::anyhow!("cannot look up user {name}: {e}"))?
        .ok_or_else(|| {
            anyhow::anyhow!("--user {name}: no such user (create it, e.g. `useradd -r netdump`)")
        })?;
    if !Uid::effective().is_root() {
        tracing::debug!("not root; ignoring --user {name}");
        return Ok(());
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn an_unknown_user_is_an_error_whoever_runs_it() {
        let e = super::drop_privileges("no-such-user-xyz").unwrap_err();
        assert!(e.to_string().contains("no such user"), "{e}");
    }
}
