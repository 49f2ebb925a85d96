//! ansible-core's side, plain or with the Mitogen strategy: the playbook doing provision's work,
//! the project directory (config, inventory, vars, files) and one timed `ansible-playbook` run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use netdump_provision::resources::user::sha512_crypt;
use netdump_provision::secret::Secret;

use super::{CONNECT_TIMEOUT, NETDUMP_TEMPLATE, PASSWORD, PROVISION, tail};
use crate::nshost::Fleet;

/// How ansible-playbook runs: its own strategy and ssh connection, or Mitogen's.
#[derive(Clone, Debug)]
pub enum Flavor {
    Plain,
    /// `strategy = mitogen_linear` from this `ansible_mitogen/plugins/strategy` directory.
    Mitogen {
        strategy_dir: PathBuf,
    },
}

/// The `ansible_mitogen/plugins/strategy` directory of the Python that runs `playbook`, when
/// Mitogen is installed there. That Python is the one `ansible-playbook --version` names (its
/// `python version = ... (/path/to/python3)` line), which also sees through pyenv shims.
pub fn mitogen_strategy_dir(playbook: &Path) -> Option<PathBuf> {
    let version = Command::new(playbook)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let line = version
        .lines()
        .find(|l| l.trim_start().starts_with("python version"))?;
    let python = line
        .rsplit_once('(')?
        .1
        .trim_end()
        .trim_end_matches(')')
        .to_string();
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, ansible_mitogen; print(os.path.join(os.path.dirname(ansible_mitogen.__file__), 'plugins', 'strategy'))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && dir.join("mitogen_linear.py").is_file()).then_some(dir)
}

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
pub struct AnsibleProject {
    dir: tempfile::TempDir,
}

impl AnsibleProject {
    pub fn new(fleet: &Fleet, forks: usize, flavor: &Flavor) -> AnsibleProject {
        let dir = tempfile::Builder::new()
            .prefix("ndp-ansible-")
            .tempdir()
            .expect("ansible temp dir");
        let d = dir.path();
        let files = d.join("files");
        std::fs::create_dir(&files).unwrap();
        std::fs::create_dir(d.join("cp")).unwrap();
        std::fs::create_dir(d.join("tmp")).unwrap();
        super::write_static_files(&files, fleet.hosts().len() - 1);
        std::fs::write(d.join("authorized_keys2.j2"), AUTHORIZED_KEYS_TEMPLATE).unwrap();
        std::fs::write(d.join("site.yaml"), PLAYBOOK).unwrap();
        // Mitogen replaces the strategy and the connection (one Python per host over one ssh,
        // kept for the whole run); everything else stays the same.
        let strategy = match flavor {
            Flavor::Plain => String::new(),
            Flavor::Mitogen { strategy_dir } => format!(
                "strategy_plugins = {}\nstrategy = mitogen_linear\n",
                strategy_dir.display()
            ),
        };
        let cfg = format!(
            "[defaults]\ninventory = {d}/inventory.yaml\nforks = {forks}\ntimeout = {CONNECT_TIMEOUT}\nhost_key_checking = True\nretry_files_enabled = False\nlocal_tmp = {d}/tmp\nnocows = 1\n{strategy}\n[ssh_connection]\npipelining = True\nssh_args = -C -o ControlMaster=auto -o ControlPersist=60s -F {cfg}\ncontrol_path_dir = {d}/cp\n",
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
    pub fn run(&self, playbook: &Path) -> (f64, u64) {
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
