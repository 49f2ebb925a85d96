//! The `provision` package's integration tests: one binary (autotests = false), one module per
//! area, the harnesses in `support` compiled once. Tests that need root, sshd or qemu skip only
//! with a loud `SKIP:` line, and never under CI (netdump_test_support::skip).

mod support;

mod apply_fleet;
mod ci_setup;
mod cli_inventory;
mod crash_storm;
mod crashes_fleet;
mod inventory_settings;
mod lab_crash_kinds;
mod lab_demo;
mod lab_e2e;
mod lab_kdump_recipe;
mod lab_templates;
mod lab_verify;
mod receiver_console;
mod receiver_dump;
mod receiver_fleet;
mod receiver_hostile;
mod receiver_ipv6;
mod receiver_netconsole;
mod receiver_policy;
mod receiver_storm;
mod sink_fleet;
mod ssh_engine;
mod ssh_nshost;
mod triage_cli;
mod verify_fleet;
