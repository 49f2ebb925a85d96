//! On-demand benchmark: `provision apply` against ansible-core doing the same job
//! (`sudo cargo bench --bench apply_vs_ansible`, issue 2).
//!
//! Each repetition starts a FRESH fleet of namespace hosts (tests/support/nshost.rs: one real sshd
//! per host, 1 server `srv` + N-1 netdump clients), times a COLD run and then a NO-OP re-run of
//! `provision apply`; then starts another fresh fleet of the same shape and does the same with
//! `ansible-playbook` running an equivalent playbook (written below, into a temporary directory).
//! Medians over the repetitions are printed with the ratio ansible / provision.
//!
//! Both sides do the same work: facts, an RSA-3072 key pair generated on every client, the public
//! keys collected into the server's `/var/crash/.ssh/authorized_keys2` (restricted, address-bound
//! lines), the `netdump` user with a SHA-512 password hash, the dump directory layout with owners
//! and modes, the sshd drop-in, the receiver binary (the `provision` release binary itself) in
//! `/usr/local/sbin/netdump-provision`, and on clients `/etc/sysconfig/netdump` (rendered from the
//! same `templates/netdump.j2`), the server's host keys in `/etc/ssh/ssh_known_hosts`,
//! `/etc/sysctl.d/90-netdump-provision.conf` and the live `kernel.sysrq`. Package and service
//! management are off on both sides (namespace hosts have no init system). After each cold
//! ansible run the bench checks a sample of the resulting state against provision's (same
//! sysconfig text up to the fleet's addresses, the netdump user and its password, one
//! authorized_keys2 line per client, the same receiver binary); each no-op run must report zero
//! changes on both sides, or the bench fails.
//!
//! Ansible is given its fastest fair settings: `pipelining = True`, its default multiplexing
//! (`ControlMaster=auto`, `ControlPersist=60s`, so the no-op re-run, which starts right after the
//! cold run, reuses the cold run's ssh masters, as provision's no-op run reuses its own since
//! masters outlive a run), the same forks, a 60 s connect timeout, an explicit
//! `ansible_python_interpreter` (no discovery), and a fact subset limited to what the play needs
//! (network + ssh host keys). Host keys are checked strictly against the fleet's known_hosts on
//! both sides.
//!
//! Environment: `BENCH_HOSTS` (default 50, at least 2), `BENCH_REPS` (default 3), `BENCH_FORKS`
//! (default 50), `BENCH_ONLY=provision` (time this side only, no ratio), `BENCH_HOLD=1`
//! (start one fleet, print the provision command for it, wait for Enter: for profiling), `ANSIBLE_PLAYBOOK` (default: `ansible-playbook` on PATH). The provision binary
//! is `CARGO_BIN_EXE_provision`, which `cargo bench` builds with the release (bench) profile.
//! Needs root; prints `SKIP:` and exits 0 when a tool is missing. Under `cargo test
//! --all-targets` (no `--bench` argument) it does nothing: a run takes minutes.

mod apply_support;
// Test harnesses shared with tests/main.rs; a bench uses only part of each.
#[allow(dead_code)]
#[path = "../tests/support/nshost.rs"]
mod nshost;

use std::time::Instant;

use apply_support::ansible::{AnsibleProject, Flavor};
use apply_support::provision::{provision_inventory, run_provision};
use apply_support::state::{Sample, sample};
use apply_support::{PASSWORD, PROVISION, env_usize, find_on_path, host_names, median};
use nshost::{Fleet, require_root_tools};

// ---------------------------------------------------------------------------------------------

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench targets without it.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "apply_vs_ansible: not run under cargo test (it takes minutes); run `sudo cargo bench --bench apply_vs_ansible`"
        );
        return;
    }
    if !require_root_tools() {
        return;
    }
    let playbook_tool = std::env::var("ANSIBLE_PLAYBOOK").unwrap_or("ansible-playbook".into());
    let Some(playbook) = find_on_path(&playbook_tool) else {
        eprintln!(
            "SKIP: apply_vs_ansible skipped because {playbook_tool} is not on PATH (pip install ansible-core; .ci/run does)"
        );
        return;
    };
    let hosts = env_usize("BENCH_HOSTS", 50).max(2);
    let reps = env_usize("BENCH_REPS", 3).max(1);
    let forks = env_usize("BENCH_FORKS", 50).max(1);
    // BENCH_ONLY=provision: measure this side only (for profiling; prints no ratio).
    let provision_only = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "provision");
    let names = host_names(hosts);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let binary_size = std::fs::metadata(PROVISION).map(|m| m.len()).unwrap_or(0);
    println!(
        "apply_vs_ansible: {hosts} hosts (1 server + {} netdump clients), forks {forks}, {reps} repetitions",
        hosts - 1
    );
    println!(
        "provision: {PROVISION} ({:.1} MB, also the receiver binary both sides upload)",
        binary_size as f64 / 1e6
    );
    println!("ansible:   {}", playbook.display());

    if std::env::var_os("BENCH_HOLD").is_some() {
        // Profiling aid: keep one fleet up and print how to run provision against it.
        let fleet = Fleet::start(&refs);
        let dir = std::env::temp_dir().join("apply_vs_ansible-hold");
        std::fs::create_dir_all(&dir).unwrap();
        let inv = dir.join("inventory.yaml");
        std::fs::write(&inv, provision_inventory(&fleet)).unwrap();
        println!(
            "BENCH_HOLD: fleet up; run:\n  NETDUMP_PASSWORD='{PASSWORD}' {PROVISION} apply {} --known-hosts {} --ssh-config {} --forks {forks}\nthen press Enter (or close stdin) to tear it down",
            inv.display(),
            fleet.known_hosts_path().display(),
            fleet.ssh_config_path().display()
        );
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        return;
    }
    let (mut p_cold, mut p_noop, mut a_cold, mut a_noop) = (vec![], vec![], vec![], vec![]);
    let mut p_phases: Vec<Vec<(&'static str, f64)>> = Vec::new();
    let mut p_noop_phases: Vec<Vec<(&'static str, f64)>> = Vec::new();
    let mut reference: Option<Sample> = None;
    for rep in 1..=reps {
        // provision on a fresh fleet.
        let t = Instant::now();
        let fleet = Fleet::start(&refs);
        let fleet_secs = t.elapsed().as_secs_f64();
        let inv_dir = tempfile::tempdir().unwrap();
        let inv = inv_dir.path().join("inventory.yaml");
        std::fs::write(&inv, provision_inventory(&fleet)).unwrap();
        let cold = run_provision(&fleet, &inv, forks);
        assert!(cold.changed > 0, "provision's cold run changed nothing");
        let noop = run_provision(&fleet, &inv, forks);
        assert_eq!(noop.changed, 0, "provision's re-run changed something");
        let s = sample(&fleet);
        assert_eq!(
            s.authorized_keys.len(),
            hosts - 1,
            "provision: authorized_keys2 {:?}",
            s.authorized_keys
        );
        assert!(s.password_ok && s.receiver_same, "provision state: {s:#?}");
        reference.get_or_insert(s);
        drop(fleet);
        println!(
            "rep {rep}: provision cold {:.2}s, no-op {:.2}s (fleet start {fleet_secs:.1}s)",
            cold.secs, noop.secs
        );
        for (what, run) in [("cold", &cold), ("no-op", &noop)] {
            let parts: Vec<String> = run
                .phases
                .iter()
                .map(|(n, t)| format!("{}={t:.2}", n.trim()))
                .collect();
            println!("rep {rep}: provision {what} phases: {}", parts.join(", "));
        }
        p_cold.push(cold.secs);
        p_noop.push(noop.secs);
        p_phases.push(cold.phases);
        p_noop_phases.push(noop.phases);

        if provision_only {
            continue;
        }
        // ansible-core on another fresh fleet of the same shape.
        let fleet = Fleet::start(&refs);
        let project = AnsibleProject::new(&fleet, forks, &Flavor::Plain);
        let (cold_secs, cold_changed) = project.run(&playbook);
        assert!(cold_changed > 0, "ansible's cold run changed nothing");
        let s = sample(&fleet);
        let want = reference.as_ref().unwrap();
        assert_eq!(
            &s, want,
            "ansible's cold run did not produce the state provision produces (left: ansible, right: provision)"
        );
        let (noop_secs, noop_changed) = project.run(&playbook);
        assert_eq!(noop_changed, 0, "ansible's re-run changed something");
        drop(fleet);
        println!(
            "rep {rep}: ansible   cold {cold_secs:.2}s (changed {cold_changed}), no-op {noop_secs:.2}s; state checked equal"
        );
        a_cold.push(cold_secs);
        a_noop.push(noop_secs);
    }

    if provision_only {
        for (title, runs) in [("cold", &p_phases), ("no-op", &p_noop_phases)] {
            println!("provision {title} phases (median seconds):");
            for (i, (name, _)) in runs[0].iter().enumerate() {
                let v: Vec<f64> = runs.iter().map(|r| r[i].1).collect();
                println!("  {name:<28} {:7.2}", median(&v));
            }
        }
        println!(
            "provision cold {:.2}s, no-op {:.2}s (median of {reps}); BENCH_ONLY=provision: no ansible run, no ratio",
            median(&p_cold),
            median(&p_noop)
        );
        return;
    }
    let (pc, pn, ac, an) = (
        median(&p_cold),
        median(&p_noop),
        median(&a_cold),
        median(&a_noop),
    );
    println!();
    println!(
        "hosts {hosts} (1 server + {} clients), forks {forks}, median of {reps}",
        hosts - 1
    );
    println!("| run    | provision | ansible-core | ansible / provision |");
    println!("| ------ | --------- | ------------ | ------------------- |");
    println!("| cold   | {pc:8.2}s | {ac:11.2}s | {:18.1}x |", ac / pc);
    println!("| no-op  | {pn:8.2}s | {an:11.2}s | {:18.1}x |", an / pn);
    println!();
    for (title, runs) in [("cold", &p_phases), ("no-op", &p_noop_phases)] {
        println!("provision {title} phases (median seconds, from JSON event arrival times):");
        for (i, (name, _)) in runs[0].iter().enumerate() {
            let v: Vec<f64> = runs.iter().map(|r| r[i].1).collect();
            println!("  {name:<28} {:7.2}", median(&v));
        }
    }
    for (what, ratio) in [("cold", ac / pc), ("no-op", an / pn)] {
        println!(
            "goal (issue 2: provision >= 10x faster) {what}: {}",
            if ratio >= 10.0 { "met" } else { "NOT met" }
        );
    }
}
