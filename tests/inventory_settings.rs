//! `settings::resolve`: defaults, every validation error, and the example inventory.

use std::path::Path;

use netdump_inventory::Inventory;
use netdump_provision::secret::Secret;
use netdump_provision::settings::{
    ClientFlavor, FleetSettings, PasswordInput, PasswordSpec, ReceiverMode, SettingsErrors, resolve,
};
use netdump_test_support::inventory::write_inventory;

const BASE: &str = "
all:
  children:
    netdump_servers:
      hosts:
        srv: {ansible_host: 198.18.0.1}
    netdump_clients:
      hosts:
        c1: {ansible_host: 198.18.0.11}
        c2: {ansible_host: 198.18.0.12}
";

fn resolve_str(inv: &str, pw: Option<&str>) -> Result<FleetSettings, SettingsErrors> {
    let t = write_inventory(inv, &[]);
    let i = Inventory::load(&t.path).unwrap_or_else(|e| panic!("{e}"));
    resolve(
        &i,
        PasswordInput {
            plaintext: pw.map(Secret::new),
        },
    )
}

fn ok(inv: &str) -> FleetSettings {
    resolve_str(inv, None).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

fn errors(inv: &str) -> String {
    match resolve_str(inv, None) {
        Ok(_) => panic!("expected errors for:\n{inv}"),
        Err(e) => e.to_string(),
    }
}

/// BASE with extra vars on client c1.
fn with_client_vars(vars: &str) -> String {
    BASE.replace(
        "c1: {ansible_host: 198.18.0.11}",
        &format!("c1: {{ansible_host: 198.18.0.11, {vars}}}"),
    )
}

fn with_server_vars(vars: &str) -> String {
    BASE.replace(
        "srv: {ansible_host: 198.18.0.1}",
        &format!("srv: {{ansible_host: 198.18.0.1, {vars}}}"),
    )
}

#[test]
fn defaults() {
    let f = ok(BASE);
    assert_eq!(f.targets.keys().collect::<Vec<_>>(), ["srv", "c1", "c2"]);
    let s = &f.servers["srv"];
    assert_eq!(s.address, "198.18.0.1");
    assert_eq!(s.port, 6666);
    assert_eq!(s.dump_dir, "/var/crash");
    assert_eq!(s.password, PasswordSpec::Unset);
    assert_eq!(s.receiver, ReceiverMode::Embedded);
    assert_eq!(s.concurrent_dumps, 64);
    assert!(s.secure && s.space_check && s.manage_packages && s.manage_services);
    assert_eq!(s.uid, 34);
    // auto: clients default to flavor auto, which may be netdump.
    assert!(s.legacy_key_types);
    let c = &f.clients["c1"];
    assert_eq!(c.server, "srv");
    assert_eq!(c.server_address, "198.18.0.1");
    assert_eq!(c.port, 6666);
    assert_eq!(c.dump_dir, "/var/crash");
    assert_eq!(c.flavor, ClientFlavor::Auto);
    assert_eq!(c.sysrq, 1);
    assert_eq!(c.dev, None);
    assert_eq!(c.sysconfig, Default::default());
    assert_eq!(
        c.kdump.core_collector,
        "makedumpfile -F -l --message-level 7 -d 31"
    );
    assert_eq!(c.kdump.crashkernel, "256M");
    assert_eq!(c.kdump.ssh_key, None);
    assert!(c.kdump.netconsole && c.kdump.netconsole_extended);
    assert_eq!(c.kdump.netconsole_port, 6666);
}

#[test]
fn values_are_read_with_yaml11_coercion() {
    let inv = with_server_vars(
        "netdump_port: '7777', netdump_secure: no, netdump_space_check: 'off', netdump_receiver: Package, netdump_dump_dir: /srv/crash, netdump_legacy_key_types: no, netdump_uid: 1034",
    );
    let inv = inv.replace(
        "c2: {ansible_host: 198.18.0.12}",
        "c2: {ansible_host: 198.18.0.12, netdump_client_flavor: kdump, netdump_netconsole: 'n', netdump_sysrq: '0x1b0', netdump_dev: eth1, netdump_netdumpmacaddr: '52:54:00:AB:cd:01', netdump_netlogaddr: NONE, netdump_netdumpkeyexchange: none, netdump_idletimeout: 60, netdump_mhz: 2400, netdump_server_address: 198.18.1.1, netdump_kdump_ssh_key: /root/.ssh/k, netdump_crashkernel: '1G-4G:192M,4G-:256M'}",
    );
    let f = ok(&inv);
    let s = &f.servers["srv"];
    assert_eq!(s.port, 7777);
    assert!(!s.secure && !s.space_check && !s.legacy_key_types);
    assert_eq!(s.receiver, ReceiverMode::Package);
    assert_eq!(s.dump_dir, "/srv/crash");
    assert_eq!(s.uid, 1034);
    let c = &f.clients["c2"];
    assert_eq!(c.flavor, ClientFlavor::Kdump);
    assert!(!c.kdump.netconsole);
    assert_eq!(c.sysrq, 0x1b0);
    assert_eq!(c.port, 7777);
    assert_eq!(c.kdump.netconsole_port, 7777);
    assert_eq!(c.dump_dir, "/srv/crash");
    assert_eq!(c.dev.as_deref(), Some("eth1"));
    assert_eq!(
        c.sysconfig.netdumpmacaddr.as_deref(),
        Some("52:54:00:AB:cd:01")
    );
    assert_eq!(c.sysconfig.netlogaddr.as_deref(), Some("NONE"));
    assert_eq!(c.sysconfig.netdumpkeyexchange.as_deref(), Some("none"));
    assert_eq!(c.sysconfig.idletimeout, Some(60));
    assert_eq!(c.sysconfig.mhz, Some(2400));
    assert_eq!(c.server_address, "198.18.1.1");
    assert_eq!(c.kdump.ssh_key.as_deref(), Some("/root/.ssh/k"));
    assert_eq!(c.kdump.crashkernel, "1G-4G:192M,4G-:256M");
    assert_eq!(f.clients["c1"].server_address, "198.18.0.1");
}

#[test]
fn password_precedence_plaintext_then_hash_then_unset() {
    let hash = "$6$saltsalt$0123456789abcdefABCDEF./";
    let inv = with_server_vars(&format!("netdump_password_hash: '{hash}'"));
    let f = resolve_str(&inv, None).unwrap();
    assert_eq!(
        f.servers["srv"].password,
        PasswordSpec::Hash(Secret::new(hash))
    );
    let f = resolve_str(&inv, Some("s3cret")).unwrap();
    assert_eq!(
        f.servers["srv"].password,
        PasswordSpec::Plain(Secret::new("s3cret"))
    );
    let e = resolve_str(BASE, Some("")).unwrap_err().to_string();
    assert!(e.contains("--password-file") && e.contains("empty"), "{e}");
}

#[test]
fn bad_password_hash_is_reported_without_its_value() {
    let e = errors(&with_server_vars("netdump_password_hash: 'hunter2'"));
    assert!(
        e.contains("netdump_password_hash") && e.contains("crypt(3)"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "secret leaked: {e}");
    let e = errors(&with_server_vars("netdump_password_hash: '$6$a b$c'"));
    assert!(e.contains("netdump_password_hash"), "{e}");
}

#[test]
fn error_line_format_names_file_line_host_var() {
    let e = errors(&with_client_vars("netdump_port: abc"));
    let line = e.lines().next().unwrap();
    assert!(
        line.contains(
            "inventory.yaml:9: host c1: netdump_port: expected an integer 1-65535, got \"abc\""
        ),
        "{e}"
    );
}

#[test]
fn every_type_error() {
    let cases: &[(&str, &str)] = &[
        ("netdump_port: 0", "expected an integer 1-65535"),
        ("netdump_port: 70000", "expected an integer 1-65535"),
        ("netdump_sysrq: 512", "expected an integer 0-511"),
        ("netdump_sysrq: -1", "expected an integer 0-511"),
        ("netdump_manage_packages: maybe", "expected a boolean"),
        ("netdump_manage_services: [1]", "expected a boolean"),
        ("netdump_netconsole: 2", "expected a boolean"),
        ("netdump_netconsole_extended: sure", "expected a boolean"),
        ("netdump_dump_dir: var/crash", "absolute path"),
        ("netdump_dump_dir: /var/../etc", "absolute path"),
        ("netdump_kdump_ssh_key: key", "absolute path"),
        (
            "netdump_client_flavor: diskdump",
            "expected one of netdump, kdump, auto",
        ),
        (
            "netdump_receiver: builtin",
            "expected one of embedded, package, none",
        ),
        ("netdump_dev: 'eth0; reboot'", "network interface"),
        ("netdump_dev: averyveryverylongname0", "network interface"),
        ("netdump_netdumpmacaddr: '52:54:00:12:34'", "MAC address"),
        ("netdump_netlogmacaddr: zz:54:00:12:34:56", "MAC address"),
        ("netdump_syslogmacaddr: 525400123456", "MAC address"),
        ("netdump_netdumpmacaddr: 52:54:00:12:34:56", "quote it"),
        ("netdump_netdumpkeyexchange: ssh", "only `none`"),
        ("netdump_netlogaddr: '-oProxy'", "address or NONE"),
        ("netdump_syslogaddr: 'a b'", "host name or address"),
        ("netdump_server_address: ''", "host name or address"),
        ("netdump_netdumpport: x", "expected an integer 1-65535"),
        ("netdump_localport: 0", "expected an integer 1-65535"),
        ("netdump_netlogport: 1.5", "expected an integer 1-65535"),
        ("netdump_syslogport: {a: 1}", "expected an integer 1-65535"),
        ("netdump_netconsole_port: -5", "expected an integer 1-65535"),
        ("netdump_idletimeout: forever", "expected an integer"),
        ("netdump_mhz: 0", "expected an integer 1-"),
        ("netdump_concurrent_dumps: 0", "expected an integer 1-1024"),
        ("netdump_uid: 0", "expected an integer 1-65533"),
        ("netdump_secure: 'nope'", "expected a boolean"),
        ("netdump_space_check: 3", "expected a boolean"),
        ("netdump_legacy_key_types: sometimes", "boolean or `auto`"),
        (
            "netdump_kdump_core_collector: makedumpfile -l -d 31",
            "must contain -F",
        ),
        ("netdump_crashkernel: '256M; rm'", "crashkernel"),
    ];
    for (vars, want) in cases {
        let var = vars.split(':').next().unwrap();
        let e = errors(&with_client_vars(vars));
        assert!(
            e.contains(&format!("host c1: {var}: ")) && e.contains(want),
            "{vars}: {e}"
        );
    }
}

#[test]
fn all_errors_are_collected() {
    let e = errors(&with_client_vars(
        "netdump_port: abc, netdump_sysrq: 9999, netdump_prot: 1",
    ));
    assert_eq!(e.lines().count(), 3, "{e}");
}

#[test]
fn unknown_variable_suggests_the_known_one() {
    let e = errors(&with_client_vars("netdump_dumpdir: /x"));
    assert!(
        e.contains("netdump_dumpdir: unknown netdump variable; did you mean netdump_dump_dir?"),
        "{e}"
    );
    let e = errors(&with_client_vars("netdump_zzzzzzzzzzzzzzzz: 1"));
    assert!(
        e.contains("unknown netdump variable; see inventories/example.yaml"),
        "{e}"
    );
}

#[test]
fn same_error_in_group_vars_is_reported_once() {
    let inv = BASE.replace("all:\n", "all:\n  vars: {netdump_sysrq: big}\n");
    let e = errors(&inv);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("inventory.yaml:3:") && e.contains("(same for 2 other host(s))"),
        "{e}"
    );
}

#[test]
fn server_selection() {
    let two = BASE.replace(
        "srv: {ansible_host: 198.18.0.1}",
        "srv: {ansible_host: 198.18.0.1}\n        srv2: {ansible_host: 198.18.0.2}",
    );
    let e = errors(&two);
    assert!(
        e.contains("netdump_server: not set and there are several servers (srv, srv2)"),
        "{e}"
    );
    let chosen = two.replace(
        "netdump_clients:\n",
        "netdump_clients:\n      vars: {netdump_server: srv2}\n",
    );
    let f = ok(&chosen);
    assert_eq!(f.clients["c1"].server, "srv2");
    assert_eq!(f.clients["c1"].server_address, "198.18.0.2");
    let e = errors(&with_client_vars("netdump_server: svr"));
    assert!(
        e.contains("no server named \"svr\"; did you mean srv?"),
        "{e}"
    );
    let e = errors(&with_client_vars("netdump_server: c2"));
    assert!(e.contains("host c2 is not in group netdump_servers"), "{e}");
    let none = "all:\n  children:\n    netdump_clients:\n      hosts: {c1: }\n";
    let e = errors(none);
    assert!(e.contains("no dump server"), "{e}");
}

#[test]
fn host_in_both_groups_is_an_error() {
    let inv = BASE.replace(
        "c2: {ansible_host: 198.18.0.12}",
        "c2: {ansible_host: 198.18.0.12}\n        srv:",
    );
    let e = errors(&inv);
    assert!(
        e.contains("host srv: is in both netdump_servers and netdump_clients"),
        "{e}"
    );
}

#[test]
fn duplicate_addresses_are_an_error() {
    let inv = BASE.replace("198.18.0.12", "198.18.0.11");
    let e = errors(&inv);
    assert!(
        e.contains("host c2: ansible_host: address 198.18.0.11:22 is also used by host c1"),
        "{e}"
    );
    // Same address, different port: two machines behind one NAT address is fine.
    let inv = BASE.replace(
        "c2: {ansible_host: 198.18.0.12}",
        "c2: {ansible_host: 198.18.0.11, ansible_port: 2222}",
    );
    ok(&inv);
}

#[test]
fn bad_connection_variables_are_reported() {
    let e = errors(&with_client_vars("ansible_port: http"));
    assert!(
        e.contains("host c1: ansible_port: expected an integer 1-65535"),
        "{e}"
    );
    let e = errors(&with_client_vars("ansible_become: perhaps"));
    assert!(
        e.contains("host c1: ansible_become: expected a boolean"),
        "{e}"
    );
    let e = errors(&with_client_vars("ansible_ssh_common_args: \"-o 'x\""));
    assert!(e.contains("ansible_ssh_common_args: cannot split"), "{e}");
    let e = errors(&BASE.replace("198.18.0.11", "'-oProxyCommand=x'"));
    assert!(
        e.contains("host c1: ansible_host: expected a host name"),
        "{e}"
    );
}

#[test]
fn legacy_key_types_auto_follows_client_flavors() {
    let kdump_only = BASE.replace(
        "netdump_clients:\n",
        "netdump_clients:\n      vars: {netdump_client_flavor: kdump}\n",
    );
    assert!(!ok(&kdump_only).servers["srv"].legacy_key_types);
    let one_netdump = with_client_vars("netdump_client_flavor: netdump").replace(
        "c2: {ansible_host: 198.18.0.12}",
        "c2: {ansible_host: 198.18.0.12, netdump_client_flavor: kdump}",
    );
    assert!(ok(&one_netdump).servers["srv"].legacy_key_types);
    let forced = with_server_vars("netdump_legacy_key_types: yes").replace(
        "netdump_clients:\n",
        "netdump_clients:\n      vars: {netdump_client_flavor: kdump}\n",
    );
    assert!(ok(&forced).servers["srv"].legacy_key_types);
}

#[test]
fn example_inventory_loads_and_resolves() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventories/example.yaml");
    let inv = Inventory::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let f = resolve(&inv, PasswordInput::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.servers.len(), 1);
    assert_eq!(f.clients.len(), 6);
    assert_eq!(f.clients["rhel4-a"].flavor, ClientFlavor::Netdump);
    assert_eq!(f.clients["node03"].flavor, ClientFlavor::Kdump);
    assert_eq!(f.targets["node03"].port, 2222);
    // The example documents every variable provision understands.
    let text = std::fs::read_to_string(&path).unwrap();
    for v in netdump_provision::settings::known_variables() {
        assert!(
            text.contains(&format!("{v}:")),
            "inventories/example.yaml does not document {v}"
        );
    }
}
