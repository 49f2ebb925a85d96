//! On-demand benchmark: `provision apply` against the fastest peers, over a scale curve, with the
//! ssh floor measured in the same run (`sudo cargo bench --bench apply_peers`, issue 14).
//!
//! For each fleet size (1 server + N-1 netdump clients, namespace hosts from
//! tests/support/nshost.rs, each a real sshd) and each tool, a FRESH fleet is started, the tool's
//! cold run is timed and its resulting state compared with provision's (the sample of
//! benches/apply_support/state.rs: file contents, owners and modes, user and password, one
//! authorized_keys2 line per client carrying that client's own key, the receiver binary), then its
//! no-op re-run is timed and must change nothing. The work is the same as in
//! benches/apply_vs_ansible.rs; the peers:
//!
//! - `ansible`: ansible-core, pipelining, ControlMaster=auto with ControlPersist=60s (the no-op run
//!   reuses the cold run's masters), fact subset network + ssh host keys, no interpreter
//!   discovery;
//! - `mitogen`: the same playbook and settings with `strategy = mitogen_linear` (Mitogen keeps one
//!   Python per host over one ssh connection for the whole run; it does not use ControlPersist,
//!   so each run connects anew, as provision does);
//! - `pyinfra`: pyinfra 3 with an equivalent deploy (`-y`, `--parallel` = forks; paramiko ssh
//!   connections per run; facts fetched only where the deploy asks for them).
//!
//! - `provision-curve25519` (only when named): provision itself with `-o
//!   KexAlgorithms=curve25519-sha256`, the key exchange paramiko negotiates, to show what OpenSSH's
//!   default post-quantum key exchange costs a cold run.
//!
//! The floor (benches/apply_support/floor.rs) is measured on provision's fresh fleet just before
//! provision's cold run: one `ssh HOST true` per host, all at once, cold and through masters.
//!
//! Environment: `APPLY_BENCH_SIZES` (default `10,50,200`), `APPLY_BENCH_PEERS` (default
//! `ansible,mitogen,pyinfra`; an empty value times provision and the floor only),
//! `APPLY_BENCH_REPS` (default 1; medians when more), `BENCH_FORKS` (default 50, the same for
//! every tool), `ANSIBLE_PLAYBOOK` (default `ansible-playbook` on PATH; Mitogen is looked for in
//! the Python that runs it), `PYINFRA` (default `pyinfra` on PATH). A peer whose tool is missing
//! is left out with a loud `SKIP:` line naming the install command (a failure under CI). Needs
//! root. Under `cargo test --all-targets` (no `--bench` argument) it does nothing.

// Test harnesses shared with tests/main.rs; a bench uses only part of each.
#[allow(dead_code)]
#[path = "../tests/support/nshost.rs"]
mod nshost;

mod apply_support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use apply_support::ansible::{AnsibleProject, Flavor, mitogen_strategy_dir};
use apply_support::provision::{provision_inventory, provision_inventory_with, run_provision};
use apply_support::pyinfra::PyinfraProject;
use apply_support::state::{Sample, sample};
use apply_support::{env_list, env_usize, find_on_path, floor, host_names, median};
use nshost::{Fleet, require_root_tools};

/// Install commands printed with a peer's SKIP line (the versions the README's figures used).
const PIP_ANSIBLE: &str = "pip install ansible-core==2.19.14";
const PIP_MITOGEN: &str =
    "pip install mitogen==0.3.54 (into the Python that runs ansible-playbook)";
const PIP_PYINFRA: &str = "pip install pyinfra==3.10.0";

/// The key exchange paramiko (so pyinfra) negotiates; OpenSSH 9.x prefers the post-quantum
/// hybrid `sntrup761x25519-sha512`, whose client side costs about ten times the CPU.
const CLASSIC_KEX: &str = "KexAlgorithms=curve25519-sha256";

enum Peer {
    Ansible {
        playbook: PathBuf,
        flavor: Flavor,
    },
    Pyinfra {
        pyinfra: PathBuf,
    },
    /// provision itself with pyinfra's key exchange (`-o KexAlgorithms=curve25519-sha256` in the
    /// inventory): what the post-quantum key exchange costs, not a peer.
    ProvisionClassicKex,
}

impl Peer {
    fn name(&self) -> &'static str {
        match self {
            Peer::Ansible {
                flavor: Flavor::Plain,
                ..
            } => "ansible",
            Peer::Ansible {
                flavor: Flavor::Mitogen { .. },
                ..
            } => "mitogen",
            Peer::Pyinfra { .. } => "pyinfra",
            Peer::ProvisionClassicKex => "provision-curve25519",
        }
    }
}

fn skip(peer: &str, reason: &str) {
    netdump_test_support::skip(&format!("apply_peers: peer {peer}"), reason);
}

/// The peers asked for in `APPLY_BENCH_PEERS` whose tools are installed.
fn peers() -> Vec<Peer> {
    let wanted = env_list("APPLY_BENCH_PEERS", "ansible,mitogen,pyinfra");
    let playbook_tool = std::env::var("ANSIBLE_PLAYBOOK").unwrap_or("ansible-playbook".into());
    let playbook = find_on_path(&playbook_tool);
    let mut peers = Vec::new();
    for w in &wanted {
        match w.as_str() {
            "ansible" => match &playbook {
                Some(p) => peers.push(Peer::Ansible {
                    playbook: p.clone(),
                    flavor: Flavor::Plain,
                }),
                None => skip(
                    "ansible",
                    &format!("{playbook_tool} is not on PATH: {PIP_ANSIBLE}"),
                ),
            },
            "mitogen" => match &playbook {
                None => skip(
                    "mitogen",
                    &format!("{playbook_tool} is not on PATH: {PIP_ANSIBLE}; {PIP_MITOGEN}"),
                ),
                Some(p) => match mitogen_strategy_dir(p) {
                    Some(strategy_dir) => peers.push(Peer::Ansible {
                        playbook: p.clone(),
                        flavor: Flavor::Mitogen { strategy_dir },
                    }),
                    None => skip(
                        "mitogen",
                        &format!(
                            "ansible_mitogen is not importable by the Python of {}: {PIP_MITOGEN}",
                            p.display()
                        ),
                    ),
                },
            },
            "pyinfra" => {
                let tool = std::env::var("PYINFRA").unwrap_or("pyinfra".into());
                match find_on_path(&tool) {
                    Some(pyinfra) => peers.push(Peer::Pyinfra { pyinfra }),
                    None => skip("pyinfra", &format!("{tool} is not on PATH: {PIP_PYINFRA}")),
                }
            }
            "provision-curve25519" => peers.push(Peer::ProvisionClassicKex),
            other => panic!(
                "APPLY_BENCH_PEERS: unknown peer {other:?} (known: ansible, mitogen, pyinfra, provision-curve25519)"
            ),
        }
    }
    peers
}

/// Cold and no-op seconds of one tool at one size (medians over the repetitions).
#[derive(Default)]
struct Times {
    cold: Vec<f64>,
    noop: Vec<f64>,
}

/// Runs one peer on a fresh fleet: cold run, state check against provision's, no-op run.
fn run_peer(peer: &Peer, refs: &[&str], forks: usize, want: &Sample) -> (f64, f64) {
    let fleet = Fleet::start(refs);
    let name = peer.name();
    let (cold, cold_changed, noop, noop_changed) = match peer {
        Peer::Ansible { playbook, flavor } => {
            let project = AnsibleProject::new(&fleet, forks, flavor);
            let (cold, cold_changed) = project.run(playbook);
            check_state(name, &fleet, want);
            let (noop, noop_changed) = project.run(playbook);
            (cold, cold_changed, noop, noop_changed)
        }
        Peer::Pyinfra { pyinfra } => {
            let project = PyinfraProject::new(&fleet, forks);
            let cold = project.run(pyinfra);
            check_state(name, &fleet, want);
            let noop = project.run(pyinfra);
            assert_eq!(
                noop.changed, 0,
                "pyinfra's no-op run changed something: {:#?}",
                noop.changed_ops
            );
            (cold.secs, cold.changed, noop.secs, noop.changed)
        }
        Peer::ProvisionClassicKex => {
            let inv_dir = tempfile::tempdir().unwrap();
            let inv = inv_dir.path().join("inventory.yaml");
            std::fs::write(&inv, provision_inventory_with(&fleet, &["-o", CLASSIC_KEX])).unwrap();
            let cold = run_provision(&fleet, &inv, forks);
            check_state(name, &fleet, want);
            let noop = run_provision(&fleet, &inv, forks);
            (cold.secs, cold.changed, noop.secs, noop.changed)
        }
    };
    assert!(cold_changed > 0, "{name}'s cold run changed nothing");
    assert_eq!(noop_changed, 0, "{name}'s no-op run changed something");
    println!(
        "  {name:<9} cold {cold:7.2}s (changed {cold_changed}), no-op {noop:7.2}s (changed 0); state checked equal to provision's"
    );
    (cold, noop)
}

fn check_state(name: &str, fleet: &Fleet, want: &Sample) {
    let s = sample(fleet);
    assert_eq!(
        &s, want,
        "{name}'s cold run did not produce the state provision produces (left: {name}, right: provision)"
    );
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "apply_peers: not run under cargo test (it takes many minutes); run `sudo cargo bench --bench apply_peers`"
        );
        return;
    }
    if !require_root_tools() {
        return;
    }
    let sizes: Vec<usize> = env_list("APPLY_BENCH_SIZES", "10,50,200")
        .iter()
        .map(|s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| (2..=245).contains(n))
                .unwrap_or_else(|| {
                    panic!("APPLY_BENCH_SIZES: {s:?} is not a host count from 2 to 245")
                })
        })
        .collect();
    let reps = env_usize("APPLY_BENCH_REPS", 1).max(1);
    let forks = env_usize("BENCH_FORKS", 50).max(1);
    let peers = peers();
    let names: Vec<&str> = peers.iter().map(Peer::name).collect();
    println!(
        "apply_peers: sizes {sizes:?}, peers {names:?}, forks {forks}, {reps} repetition(s), load average {}",
        load()
    );

    // size -> tool -> times
    let mut results: BTreeMap<usize, BTreeMap<&'static str, Times>> = BTreeMap::new();
    let mut floors: BTreeMap<usize, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut loads: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for &hosts in &sizes {
        let host_list = host_names(hosts);
        let refs: Vec<&str> = host_list.iter().map(String::as_str).collect();
        for rep in 1..=reps {
            println!("{hosts} hosts, repetition {rep} (load average {}):", load());
            loads.entry(hosts).or_default().push(load());
            // provision, with the floor measured on its fresh fleet first.
            let t = Instant::now();
            let fleet = Fleet::start(&refs);
            let fleet_secs = t.elapsed().as_secs_f64();
            let f = floor::measure(&fleet);
            println!(
                "  floor     cold {:7.2}s, warm {:7.2}s (one `ssh HOST true` per host, all at once; fleet start {fleet_secs:.1}s)",
                f.cold, f.warm
            );
            let fl = floors.entry(hosts).or_default();
            fl.0.push(f.cold);
            fl.1.push(f.warm);
            let inv_dir = tempfile::tempdir().unwrap();
            let inv = inv_dir.path().join("inventory.yaml");
            std::fs::write(&inv, provision_inventory(&fleet)).unwrap();
            let cold = run_provision(&fleet, &inv, forks);
            assert!(cold.changed > 0, "provision's cold run changed nothing");
            let noop = run_provision(&fleet, &inv, forks);
            assert_eq!(
                noop.changed, 0,
                "provision's no-op run changed something: {:#?}",
                noop.changes
            );
            let reference = sample(&fleet);
            assert_eq!(
                reference.authorized_keys.len(),
                hosts - 1,
                "provision: authorized_keys2 {:?}",
                reference.authorized_keys
            );
            assert!(
                reference.password_ok && reference.receiver_same,
                "provision state: {reference:#?}"
            );
            drop(fleet);
            println!(
                "  provision cold {:7.2}s (changed {}), no-op {:7.2}s (changed 0)",
                cold.secs, cold.changed, noop.secs
            );
            for (what, run) in [("cold", &cold), ("no-op", &noop)] {
                let parts: Vec<String> = run
                    .phases
                    .iter()
                    .map(|(n, t)| format!("{}={t:.2}", n.trim()))
                    .collect();
                println!("    provision {what} phases: {}", parts.join(", "));
            }
            let by_tool = results.entry(hosts).or_default();
            let p = by_tool.entry("provision").or_default();
            p.cold.push(cold.secs);
            p.noop.push(noop.secs);
            for peer in &peers {
                let (c, n) = run_peer(peer, &refs, forks, &reference);
                let t = by_tool.entry(peer.name()).or_default();
                t.cold.push(c);
                t.noop.push(n);
            }
        }
    }

    println!();
    println!(
        "forks {forks}, median of {reps}; ratios are the tool's time over provision's; `over floor` is provision's time over the floor of the same run (cold run: cold floor, no-op run: warm floor)"
    );
    let mut header = String::from("| hosts | run | floor | provision | over floor |");
    let mut rule = String::from("| --- | --- | --- | --- | --- |");
    for n in &names {
        header.push_str(&format!(" {n} | {n} / provision |"));
        rule.push_str(" --- | --- |");
    }
    header.push_str(" load (1/5/15 min) |");
    rule.push_str(" --- |");
    println!("{header}\n{rule}");
    let mut goals = Vec::new();
    for (hosts, by_tool) in &results {
        let (fc, fw) = &floors[hosts];
        let p = &by_tool["provision"];
        for (run, floor_secs, pick) in [
            (
                "cold",
                median(fc),
                (|t: &Times| median(&t.cold)) as fn(&Times) -> f64,
            ),
            ("no-op", median(fw), |t: &Times| median(&t.noop)),
        ] {
            let ps = pick(p);
            let mut row = format!(
                "| {hosts} | {run} | {floor_secs:.2} s | {ps:.2} s | {:.2}x |",
                ps / floor_secs
            );
            let mut fastest_peer = f64::INFINITY;
            for n in &names {
                let t = pick(&by_tool[n]);
                if *n != "provision-curve25519" {
                    fastest_peer = fastest_peer.min(t);
                }
                row.push_str(&format!(" {t:.2} s | {:.1}x |", t / ps));
            }
            row.push_str(&format!(" {} |", loads[hosts].join("; ")));
            println!("{row}");
            if fastest_peer.is_finite() {
                goals.push(format!(
                    "{hosts} hosts {run}: fastest peer / provision = {:.1}x (goal >= 3x: {})",
                    fastest_peer / ps,
                    if fastest_peer / ps >= 3.0 {
                        "met"
                    } else {
                        "NOT met"
                    }
                ));
            }
            if run == "no-op" && *hosts >= 200 {
                goals.push(format!(
                    "{hosts} hosts no-op: provision / warm floor = {:.2}x (goal <= 1.5x: {})",
                    ps / floor_secs,
                    if ps / floor_secs <= 1.5 {
                        "met"
                    } else {
                        "NOT met"
                    }
                ));
            }
        }
    }
    println!();
    for g in goals {
        println!("{g}");
    }
}
