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
//! cold run, reuses the cold run's ssh masters; provision opens its connections anew on every
//! run), the same forks, an explicit `ansible_python_interpreter` (no discovery), and a fact
//! subset limited to what the play needs (network + ssh host keys). Host keys are checked
//! strictly against the fleet's known_hosts on both sides.
//!
//! Environment: `BENCH_HOSTS` (default 50, at least 2), `BENCH_REPS` (default 3), `BENCH_FORKS`
//! (default 50), `BENCH_ONLY=provision` (time this side only, no ratio), `BENCH_HOLD=1`
//! (start one fleet, print the provision command for it, wait for Enter: for profiling), `ANSIBLE_PLAYBOOK` (default: `ansible-playbook` on PATH). The provision binary
//! is `CARGO_BIN_EXE_provision`, which `cargo bench` builds with the release (bench) profile.
//! Needs root; prints `SKIP:` and exits 0 when a tool is missing. Under `cargo test
//! --all-targets` (no `--bench` argument) it does nothing: a run takes minutes.

// Test harnesses shared with tests/main.rs; a bench uses only part of each.
#[allow(dead_code)]
#[path = "../tests/support/nshost.rs"]
mod nshost;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use netdump_provision::resources::user::{sha512_crypt, verify};
use netdump_provision::secret::Secret;
use netdump_provision::templates::Templates;
use nshost::{Fleet, require_root_tools};

const PASSWORD: &str = "bench horse battery staple";
const PROVISION: &str = env!("CARGO_BIN_EXE_provision");
const NETDUMP_TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates/netdump.j2");

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number; unset it or give a count")),
        Err(_) => default,
    }
}

fn host_names(count: usize) -> Vec<String> {
    let mut names = vec!["srv".to_string()];
    names.extend((1..count).map(|i| format!("c{i:02}")));
    names
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Path::new(tool).exists().then(|| PathBuf::from(tool));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// provision

fn provision_inventory(fleet: &Fleet) -> String {
    let mut s = format!(
        "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n    netdump_manage_packages: false\n    netdump_manage_services: false\n  children:\n    netdump_servers:\n      hosts:\n        srv:\n          ansible_host: {}\n    netdump_clients:\n      vars:\n        netdump_client_flavor: netdump\n        netdump_netlogaddr: NONE\n      hosts:\n",
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

/// Wall time of one `provision apply` run, total changed resources, and per-phase times read
/// from the arrival time of its JSON events.
struct ProvisionRun {
    secs: f64,
    changed: u64,
    phases: Vec<(&'static str, f64)>,
}

fn run_provision(fleet: &Fleet, inv: &Path, forks: usize) -> ProvisionRun {
    let start = Instant::now();
    let mut child = Command::new(PROVISION)
        .arg("apply")
        .arg(inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts_path())
        .arg("--ssh-config")
        .arg(fleet.ssh_config_path())
        .args(["--forks", &forks.to_string(), "--output", "json"])
        .env("NETDUMP_PASSWORD", PASSWORD)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run provision");
    let stdout = child.stdout.take().unwrap();
    let mut events: Vec<(f64, serde_json::Value)> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read provision output");
        let t = start.elapsed().as_secs_f64();
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("provision printed a non-JSON line ({e}): {line}"));
        events.push((t, v));
    }
    let out = child.wait_with_output().expect("wait for provision");
    let secs = start.elapsed().as_secs_f64();
    let recap = events
        .last()
        .map(|(_, v)| v.clone())
        .unwrap_or(serde_json::Value::Null);
    assert!(
        out.status.success() && recap["event"] == "recap",
        "provision apply failed ({:?}):\n{}\n--- last events\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        events
            .iter()
            .rev()
            .take(20)
            .map(|(_, v)| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let changed = recap["hosts"]
        .as_array()
        .expect("recap hosts")
        .iter()
        .map(|h| h["changed"].as_u64().unwrap_or(0))
        .sum();
    ProvisionRun {
        secs,
        changed,
        phases: phases(&events, secs),
    }
}

/// Splits a run into its phases from event arrival times: connect, facts and client keys (each
/// host on its own, until the server starts observing), server (until it is done; the receiver
/// upload is the time its file resource took), clients (until the last client is done), exit
/// (recap to process exit).
fn phases(events: &[(f64, serde_json::Value)], total: f64) -> Vec<(&'static str, f64)> {
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        events.iter().find(|(_, v)| pred(v)).map(|(t, _)| *t)
    };
    let srv_observe =
        find(&|v| v["event"] == "phase" && v["host"] == "srv" && v["phase"] == "observe")
            .unwrap_or(0.0);
    let srv_done =
        find(&|v| v["event"] == "host_done" && v["host"] == "srv").unwrap_or(srv_observe);
    let last_done = events
        .iter()
        .filter(|(_, v)| v["event"] == "host_done")
        .map(|(t, _)| *t)
        .fold(srv_done, f64::max);
    // The receiver upload: from the previous server event to the binary's resource event.
    let mut upload = 0.0;
    let mut prev = srv_observe;
    for (t, v) in events.iter().filter(|(_, v)| v["host"] == "srv") {
        if v["event"] == "resource" && v["resource"] == "file:/usr/local/sbin/netdump-provision" {
            upload = t - prev;
        }
        if *t >= srv_observe {
            prev = *t;
        }
    }
    // Per host: "connect" then "facts" once ssh is up.
    let at = |host: &serde_json::Value, phase: &str| {
        find(&|v| v["event"] == "phase" && &v["host"] == host && v["phase"] == phase)
    };
    let first_connect = find(&|v| v["event"] == "phase" && v["phase"] == "connect").unwrap_or(0.0);
    let mut slowest_connect = 0.0f64;
    for (_, v) in events
        .iter()
        .filter(|(_, v)| v["event"] == "phase" && v["phase"] == "connect")
    {
        if let (Some(c), Some(f)) = (at(&v["host"], "connect"), at(&v["host"], "facts")) {
            slowest_connect = slowest_connect.max(f - c);
        }
    }
    vec![
        ("connect+facts+keys", srv_observe),
        ("  start (to first connect)", first_connect),
        ("  ssh connect, slowest host", slowest_connect),
        ("server", srv_done - srv_observe),
        ("  of which receiver upload", upload),
        ("clients", last_done - srv_done),
        ("recap+exit", total - last_done),
    ]
}

// ---------------------------------------------------------------------------------------------
// ansible-core

const PLAYBOOK: &str = r##"---
- name: Facts (network and ssh host keys only)
  hosts: all
  gather_facts: true
  gather_subset: ["!all", "!min", "network", "ssh_pub_keys"]
  tasks: []

- name: Client key pairs
  hosts: netdump_clients
  gather_facts: false
  tasks:
    - name: /etc/sysconfig exists
      ansible.builtin.file:
        path: /etc/sysconfig
        state: directory
        owner: root
        group: root
        mode: "0755"
    - name: Key pair
      ansible.builtin.command:
        cmd: ssh-keygen -q -t ed25519 -N "" -C "netdump-provision:{{ inventory_hostname }}" -f /etc/sysconfig/netdump_id_dsa
        creates: /etc/sysconfig/netdump_id_dsa
    - name: Public key
      ansible.builtin.slurp:
        src: /etc/sysconfig/netdump_id_dsa.pub
      register: netdump_pub

- name: Dump server
  hosts: netdump_servers
  gather_facts: false
  tasks:
    - name: netdump user
      ansible.builtin.user:
        name: netdump
        system: true
        home: /var/crash
        create_home: false
        shell: /usr/local/sbin/netdump-provision
        comment: Network Crash Dump user
        password: "{{ netdump_password_hash }}"
    - name: Dump directories
      ansible.builtin.file:
        path: "{{ item.path }}"
        state: directory
        owner: "{{ item.owner }}"
        group: netdump
        mode: "{{ item.mode }}"
      loop:
        - {path: /var/crash, owner: netdump, mode: "0700"}
        - {path: /var/crash/.ssh, owner: root, mode: "0750"}
        - {path: /var/crash/magic, owner: netdump, mode: "0700"}
        - {path: /var/crash/scripts, owner: root, mode: "0750"}
    - name: Client keys in authorized_keys2
      ansible.builtin.blockinfile:
        path: /var/crash/.ssh/authorized_keys2
        create: true
        owner: root
        group: netdump
        mode: "0640"
        marker: "# {mark} netdump-provision managed keys"
        block: "{{ lookup('ansible.builtin.template', 'authorized_keys2.j2') }}"
    - name: sshd drop-in
      ansible.builtin.copy:
        src: "{{ files_dir }}/sshd-netdump.conf"
        dest: /etc/ssh/sshd_config.d/netdump-provision.conf
        owner: root
        group: root
        mode: "0644"
    - name: Receiver binary
      ansible.builtin.copy:
        src: "{{ receiver_binary }}"
        dest: /usr/local/sbin/netdump-provision
        owner: root
        group: root
        mode: "0755"

- name: Netdump clients
  hosts: netdump_clients
  gather_facts: false
  vars:
    srv: "{{ groups['netdump_servers'][0] }}"
    server_address: "{{ hostvars[srv].ansible_host }}"
    dev: "{{ ansible_facts.default_ipv4.interface }}"
    sysconfig:
      netdumpport: null
      netdumpmacaddr: "{{ hostvars[srv].ansible_facts.default_ipv4.macaddress }}"
      netdumpkeyexchange: null
      localport: null
      netlogaddr: NONE
      netlogport: null
      netlogmacaddr: null
      syslogaddr: null
      syslogport: null
      syslogmacaddr: null
      idletimeout: null
      mhz: null
  tasks:
    - name: /etc/sysconfig/netdump
      ansible.builtin.template:
        src: "{{ netdump_template }}"
        dest: /etc/sysconfig/netdump
        owner: root
        group: root
        mode: "0644"
    - name: Server host keys pinned
      ansible.builtin.known_hosts:
        path: /etc/ssh/ssh_known_hosts
        name: "{{ server_address }}"
        key: "{{ server_address }} {{ hostvars[srv].ansible_facts['ssh_host_key_' + item + '_public_keytype'] }} {{ hostvars[srv].ansible_facts['ssh_host_key_' + item + '_public'] }}"
      loop: [dsa, ecdsa, ed25519, rsa]
      when: ("ssh_host_key_" + item + "_public") in hostvars[srv].ansible_facts
    - name: sysctl.d file
      ansible.builtin.copy:
        src: "{{ files_dir }}/sysctl-netdump.conf"
        dest: /etc/sysctl.d/90-netdump-provision.conf
        owner: root
        group: root
        mode: "0644"
    - name: kernel.sysrq live
      ansible.builtin.shell: |
        if [ "$(cat /proc/sys/kernel/sysrq)" != 1 ]; then echo 1 > /proc/sys/kernel/sysrq; echo changed; fi
      register: sysrq
      changed_when: "'changed' in sysrq.stdout"
"##;

/// authorized_keys2 lines, one per client: the same restricted, address-bound, tagged line
/// forced to the dump sink that provision writes
/// (`restrict,from="ADDR",command="<sink> dump-sink … --client NAME --ip ADDR" TYPE BASE64
/// netdump-provision:NAME`, defaults of the sink's limits).
const AUTHORIZED_KEYS_TEMPLATE: &str = r#"{% for c in groups['netdump_clients'] | sort %}
restrict,from="{{ hostvars[c].ansible_host }}",command="/usr/local/sbin/netdump-provision dump-sink --dump-dir /var/crash --min-free 268435456 --keep-dumps 5 --max-total 0 --client {{ c }} --ip {{ hostvars[c].ansible_host }}" {{ (hostvars[c].netdump_pub.content | b64decode).split()[:2] | join(' ') }} netdump-provision:{{ c }}
{% endfor %}"#;

/// The ansible side's working directory: config, inventory, playbook, vars and the files it
/// copies.
struct AnsibleProject {
    dir: tempfile::TempDir,
}

impl AnsibleProject {
    fn new(fleet: &Fleet, forks: usize) -> AnsibleProject {
        let dir = tempfile::Builder::new()
            .prefix("ndp-ansible-")
            .tempdir()
            .expect("ansible temp dir");
        let d = dir.path();
        let files = d.join("files");
        std::fs::create_dir(&files).unwrap();
        std::fs::create_dir(d.join("cp")).unwrap();
        std::fs::create_dir(d.join("tmp")).unwrap();
        let t = Templates::new(None).expect("embedded templates");
        let sshd = t
            .render(
                "sshd-netdump.conf.j2",
                serde_json::json!({"user": "netdump", "home": "/var/crash", "legacy": true,
                    "sink": "/usr/local/sbin/netdump-provision dump-sink --dump-dir /var/crash --min-free 268435456 --keep-dumps 5 --max-total 0"}),
            )
            .expect("render sshd drop-in");
        std::fs::write(files.join("sshd-netdump.conf"), sshd).unwrap();
        let sysctl = t
            .render("sysctl-netdump.conf.j2", serde_json::json!({"sysrq": 1}))
            .expect("render sysctl file");
        std::fs::write(files.join("sysctl-netdump.conf"), sysctl).unwrap();
        std::fs::write(d.join("authorized_keys2.j2"), AUTHORIZED_KEYS_TEMPLATE).unwrap();
        std::fs::write(d.join("site.yaml"), PLAYBOOK).unwrap();
        let cfg = format!(
            "[defaults]\ninventory = {d}/inventory.yaml\nforks = {forks}\nhost_key_checking = True\nretry_files_enabled = False\nlocal_tmp = {d}/tmp\nnocows = 1\n\n[ssh_connection]\npipelining = True\nssh_args = -C -o ControlMaster=auto -o ControlPersist=60s -F {cfg}\ncontrol_path_dir = {d}/cp\n",
            d = d.display(),
            cfg = fleet.ssh_config_path().display()
        );
        std::fs::write(d.join("ansible.cfg"), cfg).unwrap();

        let mut inv = format!(
            "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {key}\n    ansible_ssh_common_args: \"-o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes\"\n    ansible_python_interpreter: /usr/bin/python3\n  children:\n    netdump_servers:\n      hosts:\n        srv:\n          ansible_host: {srv}\n    netdump_clients:\n      hosts:\n",
            key = fleet.client_key_path().display(),
            kh = fleet.known_hosts_path().display(),
            srv = fleet.host("srv").address,
        );
        for h in fleet.hosts().iter().filter(|h| h.name != "srv") {
            inv.push_str(&format!(
                "        {}:\n          ansible_host: {}\n",
                h.name, h.address
            ));
        }
        std::fs::write(d.join("inventory.yaml"), inv).unwrap();

        // The password hash travels in a vars file (0600), never on a command line.
        let hash = sha512_crypt(&Secret::new(PASSWORD)).expect("hash the bench password");
        let vars = format!(
            "netdump_password_hash: '{}'\nreceiver_binary: {PROVISION}\nfiles_dir: {}\nnetdump_template: {NETDUMP_TEMPLATE}\n",
            hash.expose(),
            files.display()
        );
        let vars_path = d.join("vars.yaml");
        std::fs::write(&vars_path, vars).unwrap();
        std::fs::set_permissions(
            &vars_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        AnsibleProject { dir }
    }

    /// Runs the playbook; returns wall time and the total of `changed=` in the recap.
    fn run(&self, playbook: &Path) -> (f64, u64) {
        let d = self.dir.path();
        let start = Instant::now();
        let out = Command::new(playbook)
            .arg("site.yaml")
            .arg("-e")
            .arg(format!("@{}", d.join("vars.yaml").display()))
            .current_dir(d)
            .env("ANSIBLE_CONFIG", d.join("ansible.cfg"))
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .stdin(Stdio::null())
            .output()
            .expect("run ansible-playbook");
        let secs = start.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ansible-playbook failed ({:?}):\n{}\n{}",
            out.status.code(),
            tail(&text, 60),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut changed = 0;
        let mut hosts = 0;
        let recap = text.split("PLAY RECAP").nth(1).unwrap_or("");
        for line in recap.lines() {
            if let Some(c) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("changed="))
            {
                changed += c.parse::<u64>().unwrap_or(0);
                hosts += 1;
            }
        }
        assert!(
            hosts > 0,
            "no PLAY RECAP in ansible output:\n{}",
            tail(&text, 60)
        );
        (secs, changed)
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Equivalence check

/// What one fleet looks like after a cold run, normalized so that two fleets (different
/// subnets) compare equal when they were configured the same way.
#[derive(Debug, PartialEq)]
struct Sample {
    sysconfig: String,
    sysctl_file: String,
    sysrq: String,
    known_hosts_has_server_keys: bool,
    key_mode: u32,
    user: String,
    password_ok: bool,
    dirs: Vec<(String, String, u32)>,
    authorized_keys: Vec<String>,
    authorized_keys_mode: u32,
    sshd_dropin: String,
    receiver_same: bool,
}

fn text(b: Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(&b.unwrap_or_default()).into_owned()
}

fn sample(fleet: &Fleet) -> Sample {
    let srv = fleet.host("srv");
    let c = fleet.host("c01");
    let srv_mac = srv
        .exec_ok("cat /sys/class/net/eth0/address")
        .trim()
        .to_string();
    let norm = |s: String| {
        s.replace(&srv.address.to_string(), "SERVER")
            .replace(&srv_mac, "SERVER-MAC")
    };
    let server_keys: Vec<String> = srv
        .exec_ok("for f in /etc/ssh/ssh_host_*_key.pub; do cut -d' ' -f1,2 \"$f\"; done")
        .lines()
        .map(|k| format!("{} {k}", srv.address))
        .collect();
    let kh = text(c.read_file("/etc/ssh/ssh_known_hosts"));
    let passwd = srv.exec("getent passwd netdump");
    let passwd = String::from_utf8_lossy(&passwd.stdout).trim().to_string();
    let f: Vec<&str> = passwd.split(':').collect();
    let user = if f.len() == 7 {
        format!("{}:{}:{}", f[0], f[5], f[6])
    } else {
        String::new()
    };
    let shadow = srv.exec_ok("awk -F: '$1==\"netdump\" {print $2}' /etc/shadow");
    let uid_of = |u: u32| {
        srv.exec_ok(&format!("getent passwd {u} | cut -d: -f1"))
            .trim()
            .to_string()
    };
    let dirs = [
        "/var/crash",
        "/var/crash/.ssh",
        "/var/crash/magic",
        "/var/crash/scripts",
    ]
    .iter()
    .map(|p| match srv.stat(p) {
        Some((u, _, m)) => (p.to_string(), uid_of(u), m & 0o7777),
        None => (p.to_string(), "missing".into(), 0),
    })
    .collect();
    let mut authorized_keys: Vec<String> = text(srv.read_file("/var/crash/.ssh/authorized_keys2"))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            // The key material differs per fleet; keep the shape: options, type, tag.
            let (opts, material, tag) = netdump_provision::sink::identity::split_key_line(l)
                .unwrap_or_else(|| (l.to_string(), String::new(), String::new()));
            let from = fleet.hosts().iter().fold(opts, |acc, h| {
                acc.replace(&format!("\"{}\"", h.address), &format!("\"{}\"", h.name))
                    .replace(
                        &format!("--ip {}\"", h.address),
                        &format!("--ip {}\"", h.name),
                    )
            });
            // The key must be the client's own public key.
            let name = tag.trim_start_matches("netdump-provision:");
            let own = text(
                fleet
                    .host(name)
                    .read_file("/etc/sysconfig/netdump_id_dsa.pub"),
            );
            let own: Vec<&str> = own.split_whitespace().take(2).collect();
            let matches = own.join(" ") == material;
            let ty = material.split_whitespace().next().unwrap_or("").to_string();
            format!("{from} {ty} {tag} own-key={matches}")
        })
        .collect();
    authorized_keys.sort();
    Sample {
        sysconfig: norm(text(c.read_file("/etc/sysconfig/netdump"))),
        sysctl_file: text(c.read_file("/etc/sysctl.d/90-netdump-provision.conf")),
        sysrq: c.exec_ok("cat /proc/sys/kernel/sysrq").trim().to_string(),
        known_hosts_has_server_keys: !server_keys.is_empty()
            && server_keys.iter().all(|k| kh.lines().any(|l| l == k)),
        key_mode: c
            .stat("/etc/sysconfig/netdump_id_dsa")
            .map(|s| s.2 & 0o777)
            .unwrap_or(0),
        user,
        password_ok: verify(&Secret::new(PASSWORD), shadow.trim()),
        dirs,
        authorized_keys,
        authorized_keys_mode: srv
            .stat("/var/crash/.ssh/authorized_keys2")
            .map(|s| s.2 & 0o777)
            .unwrap_or(0),
        sshd_dropin: text(srv.read_file("/etc/ssh/sshd_config.d/netdump-provision.conf")),
        receiver_same: srv.read_file("/usr/local/sbin/netdump-provision")
            == std::fs::read(PROVISION).ok(),
    }
}

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
        let project = AnsibleProject::new(&fleet, forks);
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
