//! `provision lab demo`: the whole story on real kernels — lab up, apply, apply again (must
//! change nothing), test-crash every client, show where the dump and log landed, lab down.
//!
//! Each step runs this same program as a child process, exactly as a user would type it, so the
//! demo exercises the real command line.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{LabConfig, down, up};

async fn provision(args: &[&str]) -> Result<(i32, String)> {
    let exe = crate::fleet::self_exe().context("cannot locate this program")?;
    let out = tokio::process::Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("cannot run provision")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok((out.status.code().unwrap_or(-1), stdout))
}

fn step(n: u32, what: &str) {
    eprintln!("\n=== demo step {n}: {what}");
}

/// Runs the demo; returns the exit code (0 only if every step passed). The lab is taken down at
/// the end unless `keep` is set, also after a failure.
pub async fn demo(cfg: &LabConfig, clients: u8, keep: bool) -> Result<i32> {
    let started = Instant::now();
    let result = run_steps(cfg, clients).await;
    if !keep {
        step(7, "lab down");
        if let Err(e) = down(cfg).await {
            eprintln!("lab down failed: {e}");
        }
    }
    match result {
        Ok(()) => {
            eprintln!("\ndemo passed in {:.0}s", started.elapsed().as_secs_f64());
            Ok(0)
        }
        Err(e) => {
            eprintln!(
                "\ndemo FAILED after {:.0}s: {e:#}",
                started.elapsed().as_secs_f64()
            );
            Ok(2)
        }
    }
}

async fn run_steps(cfg: &LabConfig, clients: u8) -> Result<()> {
    let t = Instant::now();
    step(
        1,
        "lab up (image build on first use, VMs boot under qemu TCG)",
    );
    let plan = up(cfg, clients).await?;
    eprintln!("lab up took {:.0}s", t.elapsed().as_secs_f64());
    let inv = cfg.inventory();
    let inv_s = inv.display().to_string();

    step(2, "provision apply");
    let t = Instant::now();
    let (code, out) = provision(&["apply", &inv_s]).await?;
    print!("{out}");
    if code != 0 {
        bail!("provision apply exited {code}");
    }
    eprintln!("apply took {:.0}s", t.elapsed().as_secs_f64());

    step(3, "provision apply again: nothing may change");
    let t = Instant::now();
    let (code, out) = provision(&["apply", &inv_s, "--output", "json"]).await?;
    let recap: serde_json::Value = out
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .context("the second apply printed no JSON recap")?;
    let changed: u64 = recap["hosts"]
        .as_array()
        .map(|hs| hs.iter().filter_map(|h| h["changed"].as_u64()).sum())
        .unwrap_or(u64::MAX);
    eprintln!(
        "second apply: exit {code}, {changed} changed, {:.0}s",
        t.elapsed().as_secs_f64()
    );
    if code != 0 || changed != 0 {
        bail!("the second apply was not a no-op (exit {code}, {changed} changed)");
    }

    step(
        4,
        "provision test-crash on every client (real sysrq crash, capture kernel, ssh dump)",
    );
    let junit = cfg.state_dir.join("test-crash.xml");
    let junit_s = junit.display().to_string();
    let (code, out) = provision(&["test-crash", "-i", &inv_s, "--junit", &junit_s]).await?;
    print!("{out}");
    if code != 0 {
        bail!("test-crash exited {code}");
    }

    step(5, "where the dumps and logs landed on the server");
    let server = plan.server();
    let (_, listing) = cfg
        .ssh(
            server.ip,
            "cd /var/crash && for d in */; do echo \"/var/crash/$d\"; ls -l \"$d\" | tail -n +2 | sed 's/^/    /'; done; \
             echo; echo 'events.jsonl:'; tail -n 5 events.jsonl 2>/dev/null | sed 's/^/    /'",
        )
        .await?;
    println!("{listing}");

    step(6, "JUnit report");
    println!("{}", Path::new(&junit).display());
    Ok(())
}
