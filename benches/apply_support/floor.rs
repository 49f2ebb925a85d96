//! The floor every tool stands on: one `ssh HOST true` per host, all hosts at once, with the
//! system OpenSSH client. Cold: fresh connections (key exchange, authentication, a session, a
//! remote shell). Warm: the same through masters started beforehand (`ControlMaster`), i.e. one
//! round trip plus the remote shell.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::nshost::Fleet;

/// Seconds for one `ssh true` on every host at once, cold and warm.
pub struct Floor {
    pub cold: f64,
    pub warm: f64,
}

fn ssh(fleet: &Fleet) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-F")
        .arg(fleet.ssh_config_path())
        .arg("-i")
        .arg(fleet.client_key_path())
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            fleet.known_hosts_path().display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-l",
            "root",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Starts every command at once and waits for all; panics naming the host when one fails.
fn all_at_once(fleet: &Fleet, what: &str, mut make: impl FnMut(&str, &str) -> Command) -> f64 {
    let start = Instant::now();
    let children: Vec<(String, Child)> = fleet
        .hosts()
        .iter()
        .map(|h| {
            let child = make(&h.name, &h.address.to_string())
                .spawn()
                .unwrap_or_else(|e| panic!("floor: cannot run ssh for {}: {e}", h.name));
            (h.name.clone(), child)
        })
        .collect();
    for (name, child) in children {
        let out = child.wait_with_output().expect("wait for ssh");
        assert!(
            out.status.success(),
            "floor ({what}): ssh to {name} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    start.elapsed().as_secs_f64()
}

/// Measures the floor on `fleet` (which it leaves as it found it: `true` changes nothing, and the
/// masters are stopped afterwards).
pub fn measure(fleet: &Fleet) -> Floor {
    let cold = all_at_once(fleet, "cold", |_, addr| {
        let mut c = ssh(fleet);
        c.args([
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            addr,
            "true",
        ]);
        c
    });
    let control = tempfile::Builder::new()
        .prefix("ndpf-")
        .tempdir_in("/tmp")
        .expect("floor control dir");
    let path = |name: &str| -> PathBuf { control.path().join(name) };
    // Masters: `-f` returns once the connection is up and the master listens.
    all_at_once(fleet, "start masters", |name, addr| {
        let mut c = ssh(fleet);
        c.args(["-M", "-N", "-f", "-o", "ControlPersist=120", "-S"])
            .arg(path(name))
            .arg(addr)
            .stderr(Stdio::null());
        c
    });
    let warm = all_at_once(fleet, "warm", |name, addr| {
        let mut c = ssh(fleet);
        c.arg("-S")
            .arg(path(name))
            .args(["-o", "ControlMaster=no", addr, "true"]);
        c
    });
    stop_masters(fleet, control.path());
    Floor { cold, warm }
}

fn stop_masters(fleet: &Fleet, dir: &Path) {
    for h in fleet.hosts() {
        let _ = ssh(fleet)
            .arg("-S")
            .arg(dir.join(&h.name))
            .args(["-O", "exit"])
            .arg(h.address.to_string())
            .stderr(Stdio::null())
            .status();
    }
}
