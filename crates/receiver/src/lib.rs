//! The embedded dump receiver (`provision receiver`): the IO around netdump-proto's netdump
//! sessions and netconsole streams (docs/receiver.md).
//!
//! - `store`: dump directories, log and vmcore files, magic files, hooks, space checks.
//! - `server`: the tokio UDP loop that feeds sessions and performs their actions.
//! - `config`: `ReceiverArgs` (clap), netdump.conf, resolved `ReceiverConfig`.
//! - `events`: `<dumpdir>/events.jsonl`.
//! - `files`: opening files that must be regular, without following links or blocking.
//! - `limits`: caps and counters on what senders can make the receiver hold.
//! - `writer`: the threads doing file IO off the packet loop.

pub mod config;
pub mod console;
pub mod events;
pub mod files;
pub mod limits;
pub mod server;
pub mod store;
pub mod writer;

pub use config::{ReceiverArgs, ReceiverConfig};
