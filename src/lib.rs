//! netdump-provision: provisions network kernel crash dumps (netdump and kdump over ssh) on lab
//! fleets, runs the embedded dump receiver, and proves the setup with real test crashes.
//!
//! The binary `provision` (src/main.rs) is a thin clap front end over this library.

pub mod apply;
pub mod cli;
pub mod crashes;
pub mod crashtest;
pub mod facts;
pub mod fleet;
pub mod lab;
pub mod receiver_binary;
pub mod receiver_cmd;
pub mod report;
pub mod resources;
pub mod roles;
pub mod secret;
pub mod settings;
pub mod sink;
pub mod ssh;
pub mod templates;
pub mod triage_cmd;
pub mod verify;
