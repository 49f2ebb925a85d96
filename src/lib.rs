//! netdump-provision: provisions network kernel crash dumps (netdump and kdump over ssh) on lab
//! fleets, runs the embedded dump receiver, and proves the setup with real test crashes.
//!
//! The binary `provision` (src/main.rs) is a thin clap front end over this library.

mod apply;
pub mod cli;
mod crashes;
mod crashtest;
mod facts;
mod fleet;
pub mod lab;
pub mod receiver_binary;
pub mod receiver_cmd;
mod report;
pub mod resources;
pub mod roles;
pub mod secret;
pub mod settings;
pub mod sink;
pub mod ssh;
pub mod templates;
mod triage_cmd;
mod verify;
