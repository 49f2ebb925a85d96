//! pyinfra's side: an inventory and a deploy doing provision's work (written into a temporary
//! directory), and one timed `pyinfra -y` run whose results table gives the number of changes.
//!
//! pyinfra prepares every host's operations first (running the deploy file once per host and
//! reading the facts it asks for), then executes them operation by operation across the hosts.
//! The client public keys only exist once the key pairs are made, so they are collected at
//! execution time (`python.call` on each client) and the server's authorized_keys2 is written by
//! a `python.call` placed after it in the file (pyinfra runs operations in file order and waits
//! for every host between operations). Those two callbacks are named `bench: ...` and are not
//! counted as changes: what they change shows up as the nested operation they run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use netdump_provision::resources::user::sha512_crypt;
use netdump_provision::secret::Secret;

use super::{NETDUMP_TEMPLATE, PASSWORD, PROVISION, tail};
use crate::nshost::Fleet;

/// The pyinfra deploy. `bench_data` (generated per fleet) holds paths and the password hash;
/// `bench_keys` is a plain module, shared by every host's callbacks in the one pyinfra process.
const DEPLOY: &str = r#"
import shlex
from io import StringIO

from pyinfra import host, inventory
from pyinfra.facts.files import File, FileContents
from pyinfra.facts.server import Command
from pyinfra.operations import files, python, server

import bench_data as B
import bench_keys

KEY = "/etc/sysconfig/netdump_id_dsa"
DEFAULT_DEV = "ip -4 route show default | awk '{print $5; exit}'"
CLIENT = "netdump_clients" in host.groups
SERVER = "netdump_servers" in host.groups


def server_facts():
    # Read once from the server, whichever host asks first. pyinfra prepares hosts in
    # concurrent greenlets: without the lock every client would open its own channels on the
    # server's one connection at once, past sshd's MaxSessions.
    with bench_keys.LOCK:
        if not bench_keys.SERVER:
            read_server_facts()
    return bench_keys.SERVER


def read_server_facts():
    srv = inventory.get_host(B.SERVER)
    mac = srv.get_fact(Command, command="cat /sys/class/net/$(" + DEFAULT_DEV + ")/address")
    keys = srv.get_fact(Command, command="cat /etc/ssh/ssh_host_*_key.pub")
    bench_keys.SERVER["mac"] = mac.strip()
    bench_keys.SERVER["keys"] = [" ".join(l.split()[:2]) for l in keys.splitlines() if l.strip()]


if SERVER:
    server.user(
        name="netdump user",
        user="netdump",
        system=True,
        home="/var/crash",
        create_home=False,
        shell="/usr/local/sbin/netdump-provision",
        comment="Network Crash Dump user",
        password=B.PASSWORD_HASH,
    )
    for path, owner, mode in [
        ("/var/crash", "netdump", "700"),
        ("/var/crash/.ssh", "root", "750"),
        ("/var/crash/magic", "netdump", "700"),
        ("/var/crash/scripts", "root", "750"),
    ]:
        files.directory(name="dump directory " + path, path=path, user=owner, group="netdump", mode=mode)
    files.put(
        name="sshd drop-in",
        src=B.FILES + "/sshd-netdump.conf",
        dest="/etc/ssh/sshd_config.d/netdump-provision.conf",
        user="root", group="root", mode="644",
    )
    files.put(
        name="receiver binary",
        src=B.RECEIVER,
        dest="/usr/local/sbin/netdump-provision",
        user="root", group="root", mode="755",
    )

if CLIENT:
    files.directory(name="/etc/sysconfig", path="/etc/sysconfig", user="root", group="root", mode="755")
    if not host.get_fact(File, path=KEY):
        server.shell(
            name="key pair",
            commands=['ssh-keygen -q -t ed25519 -N "" -C "netdump-provision:' + host.name + '" -f ' + KEY],
        )

    def collect_key():
        text = host.get_fact(FileContents, path=KEY + ".pub")
        if isinstance(text, list):
            text = "\n".join(text)
        bench_keys.KEYS[host.name] = " ".join(text.split()[:2])

    python.call(name="bench: collect public key", function=collect_key)

    srv = server_facts()
    server_address = inventory.get_host(B.SERVER).data.ssh_hostname
    files.template(
        name="/etc/sysconfig/netdump",
        src=B.TEMPLATE,
        dest="/etc/sysconfig/netdump",
        user="root", group="root", mode="644",
        jinja_env_kwargs={"trim_blocks": True},
        server_address=server_address,
        dev=host.get_fact(Command, command=DEFAULT_DEV).strip(),
        sysconfig={
            "netdumpport": None, "netdumpmacaddr": srv["mac"], "netdumpkeyexchange": None,
            "localport": None, "netlogaddr": "NONE", "netlogport": None, "netlogmacaddr": None,
            "syslogaddr": None, "syslogport": None, "syslogmacaddr": None,
            "idletimeout": None, "mhz": None,
        },
    )
    # pyinfra's files.line matches with grep's basic regexes, where the `+` of a base64 key
    # (escaped to `\+`) means "one or more": it never finds the line and appends it again on
    # every run. So: an exact-line check as a fact, and an append when it is missing.
    for i, key in enumerate(srv["keys"]):
        line = shlex.quote(server_address + " " + key)
        found = host.get_fact(
            Command,
            command="grep -qxF -- %s /etc/ssh/ssh_known_hosts 2>/dev/null && echo yes || echo no" % line,
        )
        if found.strip() != "yes":
            server.shell(
                name="server host key %d pinned" % i,
                commands=["echo %s >> /etc/ssh/ssh_known_hosts" % line],
            )
    files.put(
        name="sysctl.d file",
        src=B.FILES + "/sysctl-netdump.conf",
        dest="/etc/sysctl.d/90-netdump-provision.conf",
        user="root", group="root", mode="644",
    )
    if host.get_fact(Command, command="cat /proc/sys/kernel/sysrq").strip() != "1":
        server.shell(name="kernel.sysrq live", commands=["echo 1 > /proc/sys/kernel/sysrq"])

if SERVER:

    def authorized_keys():
        lines = []
        for c in sorted(inventory.get_group("netdump_clients"), key=lambda h: h.name):
            addr = c.data.ssh_hostname
            lines.append(
                'restrict,from="%s",command="%s --client %s --ip %s" %s netdump-provision:%s'
                % (addr, B.SINK, c.name, addr, bench_keys.KEYS[c.name], c.name)
            )
        files.put(
            name="client keys in authorized_keys2",
            src=StringIO("\n".join(lines) + "\n"),
            dest="/var/crash/.ssh/authorized_keys2",
            user="root", group="netdump", mode="640",
        )

    python.call(name="bench: authorized_keys2", function=authorized_keys)
"#;

/// The pyinfra side's working directory.
pub struct PyinfraProject {
    dir: tempfile::TempDir,
    parallel: usize,
}

/// One pyinfra run: wall time and changes (operations that changed a host, callbacks aside).
pub struct PyinfraRun {
    pub secs: f64,
    pub changed: u64,
    /// The results table's rows of operations that changed something (for failure messages).
    pub changed_ops: Vec<String>,
}

impl PyinfraProject {
    pub fn new(fleet: &Fleet, parallel: usize) -> PyinfraProject {
        let dir = tempfile::Builder::new()
            .prefix("ndp-pyinfra-")
            .tempdir()
            .expect("pyinfra temp dir");
        let d = dir.path();
        let files = d.join("files");
        std::fs::create_dir(&files).unwrap();
        super::write_static_files(&files, fleet.hosts().len() - 1);
        let sink = super::SINK;
        std::fs::write(d.join("deploy.py"), DEPLOY).unwrap();
        std::fs::write(
            d.join("bench_keys.py"),
            "from gevent.lock import Semaphore\n\nKEYS = {}\nSERVER = {}\nLOCK = Semaphore()\n",
        )
        .unwrap();
        std::fs::write(
            d.join("config.py"),
            format!("CONNECT_TIMEOUT = {}\n", super::CONNECT_TIMEOUT),
        )
        .unwrap();

        // Host-key checking is strict against the fleet's known_hosts, as for the other tools.
        let ssh = format!(
            "dict(ssh_user=\"root\", ssh_key=\"{key}\", ssh_known_hosts_file=\"{kh}\", ssh_strict_host_key_checking=\"yes\", ssh_config_file=\"{cfg}\", ssh_allow_agent=False, ssh_look_for_keys=False)",
            key = fleet.client_key_path().display(),
            kh = fleet.known_hosts_path().display(),
            cfg = fleet.ssh_config_path().display(),
        );
        let mut inv = format!(
            "_SSH = {ssh}\nnetdump_servers = [(\"srv\", dict(ssh_hostname=\"{}\", **_SSH))]\nnetdump_clients = [\n",
            fleet.host("srv").address
        );
        for h in fleet.hosts().iter().filter(|h| h.name != "srv") {
            inv.push_str(&format!(
                "    (\"{}\", dict(ssh_hostname=\"{}\", **_SSH)),\n",
                h.name, h.address
            ));
        }
        inv.push_str("]\n");
        std::fs::write(d.join("inventory.py"), inv).unwrap();

        // The password hash is in a 0600 module, never on a command line.
        let hash = sha512_crypt(&Secret::new(PASSWORD)).expect("hash the bench password");
        let data = format!(
            "SERVER = \"srv\"\nPASSWORD_HASH = r'{}'\nRECEIVER = \"{PROVISION}\"\nFILES = \"{}\"\nTEMPLATE = \"{NETDUMP_TEMPLATE}\"\nSINK = \"{sink}\"\n",
            hash.expose(),
            files.display()
        );
        let data_path = d.join("bench_data.py");
        std::fs::write(&data_path, data).unwrap();
        std::fs::set_permissions(
            &data_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        PyinfraProject { dir, parallel }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Runs the deploy (`pyinfra -y --parallel N inventory.py deploy.py`).
    pub fn run(&self, pyinfra: &Path) -> PyinfraRun {
        let d = self.dir.path();
        let start = Instant::now();
        let out = Command::new(pyinfra)
            .args(["-y", "--parallel", &self.parallel.to_string()])
            .args(["inventory.py", "deploy.py"])
            .current_dir(d)
            .env("NO_COLOR", "1")
            .env("TERM", "dumb")
            .stdin(Stdio::null())
            .output()
            .expect("run pyinfra");
        let secs = start.elapsed().as_secs_f64();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "pyinfra failed ({:?}):\n{}",
            out.status.code(),
            tail(&text, 80)
        );
        let (changed, changed_ops) = count_changes(&text).unwrap_or_else(|| {
            panic!("no results table in pyinfra's output:\n{}", tail(&text, 80))
        });
        PyinfraRun {
            secs,
            changed,
            changed_ops,
        }
    }
}

/// Sum of the "Success" column (operations that changed a host) of pyinfra's results table,
/// without the bench's own `bench:` callbacks, and the rows that count. `None` when there is no
/// table.
pub fn count_changes(output: &str) -> Option<(u64, Vec<String>)> {
    let strip = |s: &str| {
        // Colour codes, in case the tool ignores NO_COLOR.
        let mut out = String::new();
        let mut esc = false;
        for ch in s.chars() {
            match (esc, ch) {
                (false, '\x1b') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    };
    let mut lines = output.lines().map(strip).skip_while(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        !(w.first() == Some(&"Operation") && w.contains(&"Success"))
    });
    lines.next()?;
    let mut changed = 0;
    let mut rows = Vec::new();
    let mut saw_total = false;
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 {
            continue;
        }
        let n = fields.len();
        let name = fields[..n - 4].join(" ");
        if name == "Grand total" {
            saw_total = true;
            break;
        }
        if name.starts_with("bench:") {
            continue;
        }
        if let Ok(c) = fields[n - 3].parse::<u64>() {
            changed += c;
            rows.push(line.trim().to_string());
        }
    }
    saw_total.then_some((changed, rows))
}
