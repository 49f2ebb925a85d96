//! A crash storm on namespace hosts, shared by `tests/crash_storm.rs` and
//! `benches/crash_storm.rs`: every kdump client of one server replays, at the same moment, the
//! ssh sequence of Debian's kdump-tools (mkdir retried 16 times 3 s apart, then single attempts
//! of the dmesg scp, the dump stream through `dd`, the final `mv`) with its own key, through the
//! dump sink, against the server's real sshd.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use sha2::{Digest, Sha256};

use super::nshost::{Fleet, NsHost, show};

/// One client's files: (inventory name, kernel log, dump).
pub type ClientFiles = (String, PathBuf, PathBuf);

pub const KEY: &str = "/root/.ssh/netdump_kdump_id_ed25519";
pub const PAYLOAD: usize = 4 << 20;

pub fn inventory(fleet: &Fleet) -> String {
    let mut s = format!(
        "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n    netdump_manage_packages: false\n    netdump_manage_services: false\n  children:\n    netdump_servers:\n      hosts:\n        srv:\n          ansible_host: {}\n    netdump_clients:\n      vars:\n        netdump_client_flavor: kdump\n      hosts:\n",
        fleet.client_key_path().display(),
        fleet.host("srv").address
    );
    for h in fleet.hosts().iter().filter(|h| h.name != "srv") {
        s.push_str(&format!(
            "        {}:\n          ansible_host: {}\n",
            h.name, h.address
        ));
    }
    s
}

/// Restarts the server's sshd on a Debian-like configuration: the drop-ins included first (so
/// apply's global settings count, as with Debian's sshd_config), strict modes. `stock` adds
/// sshd's default MaxStartups after them, which then wins (for MaxStartups sshd keeps the last
/// value, unlike most options).
pub fn restart_server_sshd(srv: &NsHost, stock: bool) {
    let cfg = srv.dir.join("sshd_config");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let body: String = text
        .lines()
        .filter(|l| {
            !l.starts_with("MaxStartups") && !l.starts_with("Include") && !l.starts_with("#stock")
        })
        .map(|l| {
            if l.starts_with("StrictModes") {
                "StrictModes yes\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let tail = if stock {
        "#stock\nMaxStartups 10:30:100\n"
    } else {
        ""
    };
    std::fs::write(
        &cfg,
        format!("Include /etc/ssh/sshd_config.d/*.conf\n{body}{tail}"),
    )
    .unwrap();
    srv.stop();
    srv.start_sshd();
}

/// What one client's replay reported: attempts that failed, and whether each step succeeded.
#[derive(Debug, Default)]
pub struct Replay {
    pub failed_attempts: usize,
    pub steps_ok: bool,
    pub log: String,
}

/// kdump-tools' `kdump_save_core_to_ssh`, step for step, with this client's files.
pub fn replay(client: &NsHost, srv: &str, stamp: &str, dmesg: &Path, payload: &Path) -> Replay {
    let d = format!("/var/crash/{}-{stamp}", client.address);
    let script = format!(
        r#"S=netdump@{srv}; K={KEY}; fails=0; ok=1
i=0
until ssh -i $K $S mkdir -p {d} </dev/null 2>>/tmp/storm-{name}.err; do
  fails=$((fails+1)); i=$((i+1)); [ $i -ge 16 ] && {{ ok=0; break; }}; sleep 3
done
if [ $ok = 1 ]; then
  scp -q -i $K '{dmesg}' $S:{d}/dmesg.{stamp} </dev/null 2>>/tmp/storm-{name}.err || {{ fails=$((fails+1)); ok=0; }}
  ssh -i $K $S dd of={d}/dump-incomplete < '{payload}' 2>>/tmp/storm-{name}.err || {{ fails=$((fails+1)); ok=0; }}
  ssh -i $K $S mv {d}/dump-incomplete {d}/dump.{stamp} </dev/null 2>>/tmp/storm-{name}.err || {{ fails=$((fails+1)); ok=0; }}
fi
echo "fails=$fails ok=$ok""#,
        name = client.name,
        dmesg = dmesg.display(),
        payload = payload.display(),
    );
    let out = client.exec(&script);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse::<usize>().ok())
    };
    Replay {
        failed_attempts: field("fails=").unwrap_or(usize::MAX),
        steps_ok: field("ok=") == Some(1),
        log: text,
    }
}

/// Runs the storm: every client starts at the same moment. Returns each client's replay.
pub fn storm(fleet: &Fleet, stamp: &str, files: &[ClientFiles]) -> Vec<(String, Replay)> {
    let srv = fleet.host("srv").address.to_string();
    let barrier = Arc::new(Barrier::new(files.len()));
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|(name, dmesg, payload)| {
                let barrier = barrier.clone();
                let client = fleet.host(name);
                let srv = srv.clone();
                scope.spawn(move || {
                    barrier.wait();
                    (name.clone(), replay(client, &srv, stamp, dmesg, payload))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Clients whose dump and dmesg arrived whole (byte for byte) under `stamp`.
pub fn complete(fleet: &Fleet, stamp: &str, files: &[ClientFiles]) -> Vec<String> {
    let srv = fleet.host("srv");
    files
        .iter()
        .filter(|(name, dmesg, payload)| {
            let d = format!("/var/crash/{}-{stamp}", fleet.host(name).address);
            let dump = srv.read_file(&format!("{d}/dump.{stamp}"));
            let log = srv.read_file(&format!("{d}/dmesg.{stamp}"));
            let want = Sha256::digest(std::fs::read(payload).unwrap());
            dump.is_some_and(|b| Sha256::digest(&b) == want) && log == std::fs::read(dmesg).ok()
        })
        .map(|(n, _, _)| n.clone())
        .collect()
}

/// A fleet of `srv` + `n` kdump clients (`c001`…), configured by `provision apply`.
pub fn applied_fleet(n: usize, provision: &Path, dir: &Path) -> Fleet {
    let names: Vec<String> = std::iter::once("srv".to_string())
        .chain((1..=n).map(|i| format!("c{i:03}")))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let fleet = Fleet::start(&refs);
    let inv = dir.join("inventory.yaml");
    std::fs::write(&inv, inventory(&fleet)).unwrap();
    // A patient connect timeout: a fleet this size shakes hands on 2 cores.
    let out = fleet
        .provision(provision, "apply", 30)
        .arg(&inv)
        .args(["--forks", "64"])
        .output()
        .expect("run provision");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    fleet
}

/// Each client's own dump (distinct random bytes) and kernel log, written into `dir`.
pub fn client_files(fleet: &Fleet, dir: &Path) -> Vec<ClientFiles> {
    fleet
        .hosts()
        .iter()
        .filter(|h| h.name != "srv")
        .map(|h| {
            let name = &h.name;
            let payload = dir.join(format!("{name}.dump"));
            let mut bytes = vec![0u8; PAYLOAD];
            rand::fill(&mut bytes[..]);
            std::fs::write(&payload, &bytes).unwrap();
            let dmesg = dir.join(format!("{name}.dmesg"));
            std::fs::write(
                &dmesg,
                format!("{name}: sysrq: Trigger a crash\nKernel panic - not syncing: sysrq triggered crash\n"),
            )
            .unwrap();
            (name.clone(), dmesg, payload)
        })
        .collect()
}

/// Removes the per-client error logs a storm leaves in /tmp.
pub fn cleanup(files: &[ClientFiles]) {
    for (name, _, _) in files {
        let _ = std::fs::remove_file(format!("/tmp/storm-{name}.err"));
    }
}
