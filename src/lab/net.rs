//! The lab network: one network namespace holding a bridge, one tap per VM on that bridge, and a
//! veth whose root-namespace end carries the controller address, so `provision apply` run from
//! the root namespace reaches every VM by its own address (no NAT, no slirp: the server sees each
//! client's real source address).
//!
//! ```text
//!  root ns                      | lab ns (e.g. ndlab)
//!  <veth_host> 198.19.0.1/24 ---+--- uplink --+
//!                               |             br0 --- tap10 (lab-server  198.19.0.10)
//!                               |             +------ tap11 (lab-client1 198.19.0.11) ...
//! ```

use std::net::Ipv4Addr;

use super::LabError;
use super::cmd::Tool;

/// What a VM is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// One VM's place on the lab network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmNet {
    /// Inventory name and hostname (`lab-server`, `lab-client1`, ...).
    pub name: String,
    pub role: Role,
    pub ip: Ipv4Addr,
    pub mac: String,
    /// Tap device inside the namespace (15 chars max).
    pub tap: String,
}

/// The whole lab network, computed from the subnet and the number of clients (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPlan {
    /// Network namespace name.
    pub netns: String,
    /// First three octets of the /24 (e.g. [198, 19, 0]).
    pub prefix: [u8; 3],
    /// Bridge inside the namespace.
    pub bridge: String,
    /// Root-namespace end of the veth (carries the controller address).
    pub veth_host: String,
    /// Namespace end of the veth (a bridge port).
    pub veth_lab: String,
    pub vms: Vec<VmNet>,
}

/// Last octet of the server; clients follow it.
const SERVER_OCTET: u8 = 10;
/// Upper bound for clients so addresses stay inside the /24 and tap names stay short.
pub const MAX_CLIENTS: u8 = 200;

impl NetPlan {
    pub fn new(netns: &str, prefix: [u8; 3], clients: u8) -> Result<NetPlan, LabError> {
        if clients == 0 || clients > MAX_CLIENTS {
            return Err(LabError::Config(format!(
                "--clients {clients}: the lab needs between 1 and {MAX_CLIENTS} clients"
            )));
        }
        if netns.is_empty() || netns.len() > 10 || !netns.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(LabError::Config(format!(
                "lab namespace name {netns:?}: use 1-10 ASCII letters or digits (it prefixes \
                 interface names)"
            )));
        }
        let mut vms = vec![Self::vm(
            prefix,
            "lab-server".into(),
            Role::Server,
            SERVER_OCTET,
        )];
        for i in 1..=clients {
            vms.push(Self::vm(
                prefix,
                format!("lab-client{i}"),
                Role::Client,
                SERVER_OCTET + i,
            ));
        }
        Ok(NetPlan {
            netns: netns.to_string(),
            prefix,
            bridge: "br0".into(),
            veth_host: format!("{netns}0"),
            veth_lab: "uplink".into(),
            vms,
        })
    }

    fn vm(prefix: [u8; 3], name: String, role: Role, octet: u8) -> VmNet {
        VmNet {
            name,
            role,
            ip: Ipv4Addr::new(prefix[0], prefix[1], prefix[2], octet),
            mac: format!(
                "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
                prefix[0], prefix[1], prefix[2], octet
            ),
            tap: format!("tap{octet}"),
        }
    }

    /// The controller's address on the lab network (root-namespace end of the veth).
    pub fn controller_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], 1)
    }

    pub fn server(&self) -> &VmNet {
        &self.vms[0]
    }

    pub fn clients(&self) -> impl Iterator<Item = &VmNet> {
        self.vms.iter().filter(|v| v.role == Role::Client)
    }
}

/// Whether the namespace exists.
pub async fn netns_exists(netns: &str) -> Result<bool, LabError> {
    let out = Tool::new("list network namespaces", "ip")
        .args(["netns", "list"])
        .run()
        .await?;
    Ok(out
        .lines()
        .any(|l| l.split_whitespace().next() == Some(netns)))
}

async fn link_exists(netns: Option<&str>, dev: &str) -> Result<bool, LabError> {
    let mut t = Tool::new(format!("look for interface {dev}"), "ip");
    if let Some(ns) = netns {
        t.args(["-n", ns]);
    }
    t.args(["link", "show", "dev", dev]).succeeds().await
}

/// Creates whatever part of the lab network is missing (idempotent).
pub async fn up(plan: &NetPlan) -> Result<(), LabError> {
    let ns = plan.netns.as_str();
    if !netns_exists(ns).await? {
        Tool::new("create lab namespace", "ip")
            .args(["netns", "add", ns])
            .run()
            .await?;
    }
    Tool::new("bring up loopback in lab namespace", "ip")
        .args(["-n", ns, "link", "set", "lo", "up"])
        .run()
        .await?;
    if !link_exists(Some(ns), &plan.bridge).await? {
        Tool::new("create lab bridge", "ip")
            .args(["-n", ns, "link", "add", &plan.bridge, "type", "bridge"])
            .run()
            .await?;
    }
    Tool::new("bring up lab bridge", "ip")
        .args(["-n", ns, "link", "set", &plan.bridge, "up"])
        .run()
        .await?;
    if !link_exists(None, &plan.veth_host).await? {
        Tool::new("create controller veth", "ip")
            .args([
                "link",
                "add",
                &plan.veth_host,
                "type",
                "veth",
                "peer",
                "name",
            ])
            .args([&plan.veth_lab, "netns", ns])
            .run()
            .await?;
    }
    Tool::new("attach veth to lab bridge", "ip")
        .args([
            "-n",
            ns,
            "link",
            "set",
            &plan.veth_lab,
            "master",
            &plan.bridge,
            "up",
        ])
        .run()
        .await?;
    let cidr = format!("{}/24", plan.controller_ip());
    let addrs = Tool::new("read controller veth addresses", "ip")
        .args(["-o", "-4", "addr", "show", "dev", &plan.veth_host])
        .run()
        .await?;
    if !addrs.contains(&format!(" {cidr} ")) {
        Tool::new("address controller veth", "ip")
            .args(["addr", "add", &cidr, "dev", &plan.veth_host])
            .run()
            .await?;
    }
    Tool::new("bring up controller veth", "ip")
        .args(["link", "set", &plan.veth_host, "up"])
        .run()
        .await?;
    for vm in &plan.vms {
        if !link_exists(Some(ns), &vm.tap).await? {
            Tool::new(format!("create tap {} for {}", vm.tap, vm.name), "ip")
                .args(["-n", ns, "tuntap", "add", "dev", &vm.tap, "mode", "tap"])
                .run()
                .await?;
        }
        Tool::new(format!("attach tap {} for {}", vm.tap, vm.name), "ip")
            .args([
                "-n",
                ns,
                "link",
                "set",
                &vm.tap,
                "master",
                &plan.bridge,
                "up",
            ])
            .run()
            .await?;
    }
    Ok(())
}

/// Removes the namespace (with its bridge, taps and veth end) and the controller veth.
/// Idempotent. Call only after every VM process has exited (a tap held open by qemu would keep
/// the namespace alive).
pub async fn down(plan: &NetPlan) -> Result<(), LabError> {
    if netns_exists(&plan.netns).await? {
        Tool::new("delete lab namespace", "ip")
            .args(["netns", "del", &plan.netns])
            .run()
            .await?;
    }
    if link_exists(None, &plan.veth_host).await? {
        Tool::new("delete controller veth", "ip")
            .args(["link", "del", &plan.veth_host])
            .run()
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_addresses_server_then_clients() {
        let p = NetPlan::new("ndlab", [198, 19, 0], 2).unwrap();
        assert_eq!(p.controller_ip(), Ipv4Addr::new(198, 19, 0, 1));
        let names: Vec<_> = p.vms.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["lab-server", "lab-client1", "lab-client2"]);
        assert_eq!(p.server().ip, Ipv4Addr::new(198, 19, 0, 10));
        assert_eq!(p.vms[2].ip, Ipv4Addr::new(198, 19, 0, 12));
        assert_eq!(p.vms[2].mac, "52:54:c6:13:00:0c");
        assert_eq!(p.vms[2].tap, "tap12");
        assert_eq!(p.veth_host, "ndlab0");
        assert_eq!(p.clients().count(), 2);
    }

    #[test]
    fn plan_rejects_bad_counts_and_names() {
        assert!(NetPlan::new("ndlab", [198, 19, 0], 0).is_err());
        assert!(NetPlan::new("ndlab", [198, 19, 0], MAX_CLIENTS + 1).is_err());
        assert!(NetPlan::new("nd-lab", [198, 19, 0], 1).is_err());
        assert!(NetPlan::new("waytoolongname", [198, 19, 0], 1).is_err());
        let p = NetPlan::new("ndlab", [198, 19, 0], MAX_CLIENTS).unwrap();
        assert!(p.vms.iter().all(|v| v.tap.len() <= 15));
        assert_eq!(p.vms.last().unwrap().ip, Ipv4Addr::new(198, 19, 0, 210));
    }

    #[test]
    fn macs_are_distinct_and_locally_administered() {
        let p = NetPlan::new("ndlab", [198, 19, 0], 50).unwrap();
        let mut macs: Vec<_> = p.vms.iter().map(|v| v.mac.clone()).collect();
        macs.sort();
        macs.dedup();
        assert_eq!(macs.len(), p.vms.len());
        // 0x52: locally administered, unicast.
        assert!(p.vms.iter().all(|v| v.mac.starts_with("52:")));
    }
}
