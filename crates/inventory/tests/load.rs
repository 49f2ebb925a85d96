//! Inventory loading: structure, precedence, vars files, tags, errors, patterns, targets.

use netdump_inventory::{Inventory, InventoryError};
use netdump_test_support::inventory::write_inventory;
use yaml_serde::Value;

fn load(
    inv: &str,
    files: &[(&str, &str)],
) -> (netdump_test_support::inventory::TempInv, Inventory) {
    let t = write_inventory(inv, files);
    let i = Inventory::load(&t.path).unwrap_or_else(|e| panic!("load failed: {e}"));
    (t, i)
}

fn load_err(inv: &str, files: &[(&str, &str)]) -> InventoryError {
    let t = write_inventory(inv, files);
    match Inventory::load(&t.path) {
        Ok(_) => panic!("expected an error for:\n{inv}"),
        Err(e) => e,
    }
}

fn var<'a>(i: &'a Inventory, host: &str, v: &str) -> &'a Value {
    i.host(host)
        .unwrap_or_else(|| panic!("no host {host}"))
        .vars
        .get(v)
        .unwrap_or_else(|| panic!("{host} has no {v}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

const PRECEDENCE: &str = "
all:
  vars: {x: all, only_all: 1}
  children:
    parent:
      vars: {x: parent}
      children:
        child:
          vars: {x: child}
          hosts:
            h1:
            h2: {x: host}
    bbb:
      vars: {y: bbb}
      hosts: {h1: }
    aaa:
      vars: {y: aaa}
      hosts: {h1: }
    prio:
      vars: {ansible_group_priority: 5, z: prio}
      hosts: {h1: }
    zzz:
      vars: {z: zzz}
      hosts: {h1: }
";

#[test]
fn precedence_all_parent_child_host() {
    let (_t, i) = load(PRECEDENCE, &[]);
    assert_eq!(s(var(&i, "h1", "x")), "child");
    assert_eq!(s(var(&i, "h2", "x")), "host");
    assert_eq!(var(&i, "h1", "only_all").as_u64(), Some(1));
}

#[test]
fn same_depth_groups_merge_in_name_order_and_priority_wins() {
    let (_t, i) = load(PRECEDENCE, &[]);
    // aaa and bbb at the same depth: bbb sorts last and wins.
    assert_eq!(s(var(&i, "h1", "y")), "bbb");
    // prio has ansible_group_priority 5 > zzz's default 1, so it merges later.
    assert_eq!(s(var(&i, "h1", "z")), "prio");
    // The priority itself is not a host variable (as in Ansible).
    assert!(
        !i.host("h1")
            .unwrap()
            .vars
            .contains_key("ansible_group_priority")
    );
}

#[test]
fn groups_include_ancestors_and_all() {
    let (_t, i) = load(PRECEDENCE, &[]);
    let g = &i.host("h2").unwrap().groups;
    for want in ["all", "parent", "child"] {
        assert!(g.iter().any(|x| x == want), "{want} missing from {g:?}");
    }
    assert_eq!(g[0], "all");
    assert_eq!(i.group_hosts("parent"), ["h1", "h2"]);
    assert_eq!(i.group_hosts("child"), ["h1", "h2"]);
    assert_eq!(i.group_hosts("aaa"), ["h1"]);
    assert!(i.group_hosts("nope").is_empty());
}

#[test]
fn group_vars_and_host_vars_files_and_directories() {
    let inv = "
all:
  vars: {a: inline-all}
  children:
    web:
      vars: {a: inline-web, b: inline-web}
      hosts:
        w1: {c: inline-host}
        w2:
";
    let (_t, i) = load(
        inv,
        &[
            ("group_vars/all.yml", "a: gv-all\nd: gv-all\n"),
            ("group_vars/web/01-first", "b: first\ne: first\n"),
            ("group_vars/web/02-second.yaml", "b: second\n"),
            ("group_vars/web/03-ignored.txt", "b: ignored\n"),
            ("group_vars/web/.hidden.yml", "b: hidden\n"),
            ("host_vars/w1.json", "{\"c\": \"hv-json\"}"),
            ("host_vars/w2/main.yml", "f: hv-dir\n"),
        ],
    );
    // group_vars/all beats group vars written in the inventory file (Ansible's order).
    assert_eq!(s(var(&i, "w1", "a")), "gv-all");
    assert_eq!(s(var(&i, "w1", "b")), "second");
    assert_eq!(s(var(&i, "w1", "e")), "first");
    assert_eq!(s(var(&i, "w1", "c")), "hv-json");
    assert_eq!(s(var(&i, "w2", "f")), "hv-dir");
    assert_eq!(s(var(&i, "w2", "d")), "gv-all");
}

#[test]
fn hash_behaviour_is_replace() {
    let inv = "
all:
  vars: {opts: {a: 1, b: 2}}
  hosts:
    h: {opts: {c: 3}}
";
    let (_t, i) = load(inv, &[]);
    let opts = var(&i, "h", "opts").as_mapping().unwrap();
    assert_eq!(opts.len(), 1);
    assert!(opts.contains_key("c"));
}

#[test]
fn ranges_ports_and_ungrouped() {
    let inv = "
all:
  hosts:
    lone:
  children:
    rack:
      hosts:
        node[01:03]:
        node[08:12:2]:
        rack-[a:c]:
        'bmc:2222':
";
    let (_t, i) = load(inv, &[]);
    let names: Vec<&str> = i.hosts().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "lone", "node01", "node02", "node03", "node08", "node10", "node12", "rack-a", "rack-b",
            "rack-c", "bmc"
        ]
    );
    assert_eq!(var(&i, "bmc", "ansible_port").as_u64(), Some(2222));
    assert_eq!(i.group_hosts("ungrouped"), ["lone"]);
    assert_eq!(*i.host("lone").unwrap().groups, ["all", "ungrouped"]);
    assert_eq!(i.select("ungrouped").unwrap(), ["lone"]);
}

#[test]
fn group_mentioned_twice_merges() {
    let inv = "
all:
  children:
    a:
      children:
        shared:
          vars: {v: 1}
          hosts: {h1: }
    shared:
      vars: {w: 2}
      hosts: {h2: }
";
    let (_t, i) = load(inv, &[]);
    assert_eq!(i.group_hosts("shared"), ["h1", "h2"]);
    assert_eq!(i.group_hosts("a"), ["h1", "h2"]);
    assert_eq!(var(&i, "h2", "v").as_u64(), Some(1));
    assert_eq!(var(&i, "h1", "w").as_u64(), Some(2));
}

#[test]
fn merge_keys_and_unsafe() {
    let inv = "
all:
  vars:
    base: &base {p: 1, q: 2}
    derived:
      <<: *base
      q: 3
    raw: !unsafe '{{ lookup(\"pipe\", \"id\") }}'
  hosts: {h: }
";
    let (_t, i) = load(inv, &[]);
    let d = var(&i, "h", "derived");
    assert_eq!(d.get("p").and_then(Value::as_u64), Some(1));
    assert_eq!(d.get("q").and_then(Value::as_u64), Some(3));
    assert_eq!(s(var(&i, "h", "raw")), "{{ lookup(\"pipe\", \"id\") }}");
    let list = i.to_list_json();
    assert_eq!(
        list["_meta"]["hostvars"]["h"]["raw"]["__ansible_unsafe"],
        "{{ lookup(\"pipe\", \"id\") }}"
    );
}

#[test]
fn vault_values_are_rejected_clearly() {
    let inv = "
all:
  hosts:
    h:
      secret: !vault |
        $ANSIBLE_VAULT;1.1;AES256
        6162
";
    let e = load_err(inv, &[]).to_string();
    assert!(
        e.contains("!vault") && e.contains("secret") && e.contains(":5:"),
        "{e}"
    );
    let e = load_err(
        "all: {hosts: {h: }}",
        &[("host_vars/h.yml", "pw: !vault |\n  $ANSIBLE_VAULT;1.1\n")],
    )
    .to_string();
    assert!(
        e.contains("host_vars/h.yml:1:") && e.contains("not supported"),
        "{e}"
    );
}

#[test]
fn cycles_are_detected() {
    let inv = "
all:
  children:
    a:
      children:
        b:
          children:
            a:
";
    let e = load_err(inv, &[]);
    assert!(matches!(e, InventoryError::Cycle { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("a -> b -> a"), "{msg}");
}

#[test]
fn syntax_errors_name_file_line_column() {
    let e = load_err("all:\n  hosts:\n    h1: {a: 1\n  vars: x\n", &[]);
    let msg = e.to_string();
    assert!(matches!(e, InventoryError::Syntax { .. }), "{e:?}");
    assert!(
        msg.contains("inventory.yaml:") && msg.contains("YAML syntax error"),
        "{msg}"
    );
}

#[test]
fn wrong_shapes_name_group_and_line() {
    let e = load_err(
        "all:\n  children:\n    web:\n      hosts:\n        - w1\n        - w2\n",
        &[],
    )
    .to_string();
    assert!(
        e.contains("inventory.yaml:4:") && e.contains("`web`") && e.contains("mapping"),
        "{e}"
    );
    let e = load_err(
        "all:\n  children:\n    web:\n      host:\n        w1:\n",
        &[],
    )
    .to_string();
    assert!(e.contains("did you mean `hosts`"), "{e}");
    let e = load_err("- a\n- b\n", &[]).to_string();
    assert!(e.contains("mapping of group names"), "{e}");
    let e = load_err("all:\n  hosts:\n    h: 5\n", &[]).to_string();
    assert!(
        e.contains("inventory.yaml:3:") && e.contains("host `h`"),
        "{e}"
    );
    let e = load_err("all:\n  vars: [1]\n", &[]).to_string();
    assert!(e.contains("`vars` must be a mapping"), "{e}");
    let e = load_err("all: {hosts: {h: }}", &[("group_vars/all.yml", "- 1\n")]).to_string();
    assert!(
        e.contains("group_vars/all.yml") && e.contains("vars file must be a mapping"),
        "{e}"
    );
}

#[test]
fn bad_ranges_name_line() {
    let e = load_err("all:\n  hosts:\n    n[3:1]:\n", &[]);
    assert!(
        matches!(e, InventoryError::Range { line: Some(3), .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("begin <= end"));
}

#[test]
fn patterns() {
    let inv = "
all:
  children:
    web:
      hosts: {web1: , web2: , web3: }
    db:
      hosts: {db1: , web3: }
    staging:
      hosts: {web2: , db1: }
";
    let (_t, i) = load(inv, &[]);
    assert_eq!(i.select("all").unwrap(), ["web1", "web2", "web3", "db1"]);
    assert_eq!(i.select("*").unwrap(), ["web1", "web2", "web3", "db1"]);
    assert_eq!(i.select("web").unwrap(), ["web1", "web2", "web3"]);
    assert_eq!(i.select("db1").unwrap(), ["db1"]);
    assert_eq!(i.select("web*").unwrap(), ["web1", "web2", "web3"]);
    assert_eq!(i.select("db:web1").unwrap(), ["web3", "db1", "web1"]);
    assert_eq!(i.select("db,web1").unwrap(), ["web3", "db1", "web1"]);
    assert_eq!(i.select("web:&staging").unwrap(), ["web2"]);
    assert_eq!(i.select("web:!staging").unwrap(), ["web1", "web3"]);
    assert_eq!(i.select("!db").unwrap(), ["web1", "web2"]);
    assert_eq!(i.select("web:!db:&staging").unwrap(), ["web2"]);
    let e = i.select("wbe1").unwrap_err().to_string();
    assert!(e.contains("did you mean web1"), "{e}");
    assert!(i.select("~web.*").is_err());
    assert!(i.select("").is_err());
}

#[test]
fn origin_points_at_file_and_line() {
    let inv = "all:\n  vars:\n    port: 1\n  children:\n    g:\n      vars:\n        port: 2\n      hosts:\n        h1:\n          port: 3\n        h2:\n        h3:\n";
    let (t, i) = load(inv, &[("host_vars/h3.yml", "# comment\nport: 4\n")]);
    let o = i.origin("h1", "port");
    assert_eq!((o.file.clone(), o.line), (t.path.clone(), Some(10)));
    let o = i.origin("h2", "port");
    assert_eq!(o.line, Some(7));
    let o = i.origin("h3", "port");
    assert!(o.file.ends_with("host_vars/h3.yml"));
    assert_eq!(o.line, Some(2));
    assert_eq!(i.origin("h1", "missing").line, None);
    assert_eq!(i.source(), t.path.as_path());
}

#[test]
fn targets_from_connection_variables() {
    let inv = "
all:
  vars: {ansible_user: admin, ansible_become: yes}
  hosts:
    h1:
      ansible_host: 198.18.0.5
      ansible_port: '2200'
      ansible_ssh_private_key_file: /keys/id
      ansible_ssh_common_args: \"-o ProxyJump=bastion -o 'UserKnownHostsFile=/dev/null'\"
    h2: {ansible_become: 'off'}
    'h3:2022':
    h4: {ansible_port: abc}
";
    let (_t, i) = load(inv, &[]);
    let t = i.connection("h1");
    assert_eq!(t.address, "198.18.0.5");
    assert_eq!(t.port, 2200);
    assert_eq!(t.user.as_deref(), Some("admin"));
    assert_eq!(
        t.private_key_file.as_deref(),
        Some(std::path::Path::new("/keys/id"))
    );
    assert!(t.become_);
    assert_eq!(
        t.ssh_common_args,
        [
            "-o",
            "ProxyJump=bastion",
            "-o",
            "UserKnownHostsFile=/dev/null"
        ]
    );
    assert!(!i.connection("h2").become_);
    let t3 = i.connection("h3");
    assert_eq!((t3.address.as_str(), t3.port), ("h3", 2022));
    let e = i.try_connection("h4").unwrap_err();
    assert_eq!(
        (e.host.as_str(), e.variable.as_str()),
        ("h4", "ansible_port")
    );
    assert!(e.to_string().contains("expected an integer 1-65535"), "{e}");
    assert_eq!(i.connection("h4").port, 22);
}

#[test]
fn empty_and_null_inventories() {
    let (_t, i) = load("", &[]);
    assert_eq!(i.hosts().count(), 0);
    let (_t, i) = load("all:\n", &[]);
    assert_eq!(i.hosts().count(), 0);
    let (_t, i) = load("all:\n  hosts:\n  children:\n    g:\n", &[]);
    assert_eq!(i.hosts().count(), 0);
}

#[test]
fn missing_file_is_a_read_error() {
    let e = Inventory::load(std::path::Path::new("/nonexistent/inv.yaml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/inv.yaml"), "{e}");
}

#[test]
fn a_range_past_the_cap_names_file_line_and_count() {
    let e = load_err(
        "all:\n  vars:\n    big: [1, 2, 3]\n  hosts:\n    node[000000:199999]:\n",
        &[],
    );
    let msg = e.to_string();
    assert!(msg.contains("inventory.yaml:5:"), "{msg}");
    assert!(msg.contains("200000 hosts"), "{msg}");
}

#[test]
fn many_ranges_past_the_inventory_cap_are_refused_at_the_range_that_crosses_it() {
    let e = load_err(
        "a:\n  hosts:\n    a[00000:59999]:\nb:\n  hosts:\n    b[00000:59999]:\n",
        &[],
    );
    let msg = e.to_string();
    assert!(msg.contains("inventory.yaml:6:"), "{msg}");
    assert!(msg.contains("120000 hosts"), "{msg}");
    assert!(msg.contains("100000"), "{msg}");
}

#[test]
fn shared_group_vars_still_give_each_host_its_own_overrides_in_order() {
    // Two hosts of the same groups (their group variables are one shared map) with different
    // host variables, and a host_vars file on one of them.
    let (_t, i) = load(
        "all:\n  vars:\n    a: all\n    b: all\n  children:\n    rack:\n      vars:\n        b: rack\n        c: rack\n      hosts:\n        h1:\n          c: h1\n          d: h1\n        h2:\n",
        &[("host_vars/h2.yaml", "a: h2-file\n")],
    );
    let keys =
        |h: &str| -> Vec<String> { i.host(h).unwrap().vars.keys().map(str::to_owned).collect() };
    assert_eq!(keys("h1"), ["a", "b", "c", "d"]);
    assert_eq!(keys("h2"), ["a", "b", "c"]);
    assert_eq!(s(var(&i, "h1", "a")), "all");
    assert_eq!(s(var(&i, "h1", "b")), "rack");
    assert_eq!(s(var(&i, "h1", "c")), "h1");
    assert_eq!(s(var(&i, "h2", "c")), "rack");
    assert_eq!(s(var(&i, "h2", "a")), "h2-file");
    assert_eq!(i.host("h1").unwrap().vars.len(), 4);
    assert!(i.origin("h2", "a").file.ends_with("host_vars/h2.yaml"));
    assert_eq!(i.origin("h1", "c").line, Some(12));
}
