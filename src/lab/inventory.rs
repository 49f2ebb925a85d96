//! The inventory and known_hosts file `lab up` writes for the running lab (pure rendering).

use std::path::Path;

use super::net::NetPlan;

/// The Ansible-format YAML inventory of the lab: `netdump_servers` holds `lab-server`,
/// `netdump_clients` the clients (kdump flavour, dumping to `lab-server`). Connection settings
/// pin the lab's known_hosts file and log in as root with the lab key.
pub fn render(plan: &NetPlan, login_key: &Path, known_hosts: &Path) -> String {
    let mut s = String::new();
    s.push_str("# Lab fleet written by `provision lab up`; regenerated on every `lab up`.\n");
    s.push_str("all:\n  vars:\n    ansible_user: root\n");
    s.push_str(&format!(
        "    ansible_ssh_private_key_file: {}\n",
        login_key.display()
    ));
    s.push_str(&format!(
        "    ansible_ssh_common_args: >-\n      -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes\n",
        known_hosts.display()
    ));
    s.push_str("  children:\n    netdump_servers:\n      hosts:\n");
    let server = plan.server();
    s.push_str(&format!(
        "        {}:\n          ansible_host: {}\n",
        server.name, server.ip
    ));
    s.push_str("    netdump_clients:\n      vars:\n        netdump_client_flavor: kdump\n");
    s.push_str(&format!("        netdump_server: {}\n", server.name));
    s.push_str("      hosts:\n");
    for c in plan.clients() {
        s.push_str(&format!(
            "        {}:\n          ansible_host: {}\n",
            c.name, c.ip
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn render_default(clients: u8) -> String {
        let plan = NetPlan::new("ndlab", [198, 19, 0], clients).unwrap();
        render(
            &plan,
            Path::new("/var/lib/netdump-provision/lab/id_ed25519"),
            Path::new("/var/lib/netdump-provision/lab/known_hosts"),
        )
    }

    #[test]
    fn renders_groups_and_hosts() {
        let v: yaml_serde::Value = yaml_serde::from_str(&render_default(2)).unwrap();
        let children = &v["all"]["children"];
        assert_eq!(
            children["netdump_servers"]["hosts"]["lab-server"]["ansible_host"].as_str(),
            Some("198.19.0.10")
        );
        let clients = &children["netdump_clients"];
        assert_eq!(
            clients["vars"]["netdump_client_flavor"].as_str(),
            Some("kdump")
        );
        assert_eq!(
            clients["vars"]["netdump_server"].as_str(),
            Some("lab-server")
        );
        assert_eq!(
            clients["hosts"]["lab-client2"]["ansible_host"].as_str(),
            Some("198.19.0.12")
        );
        assert_eq!(
            v["all"]["vars"]["ansible_ssh_common_args"].as_str(),
            Some(
                "-o UserKnownHostsFile=/var/lib/netdump-provision/lab/known_hosts \
                 -o StrictHostKeyChecking=yes"
            )
        );
    }

    /// The committed example must stay what `lab up` writes with the default settings.
    #[test]
    fn committed_lab_inventory_matches_default_render() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("inventories/lab.yaml");
        let committed = std::fs::read_to_string(&path).unwrap();
        let a: yaml_serde::Value = yaml_serde::from_str(&committed).unwrap();
        let b: yaml_serde::Value = yaml_serde::from_str(&render_default(1)).unwrap();
        assert_eq!(
            a,
            b,
            "{} drifted from lab::inventory::render",
            path.display()
        );
    }
}
