//! The wire protocols of network crash dumps as pure code (sans-IO).
//!
//! Bytes and time come in, actions and events go out; nothing here opens a socket or a file or
//! reads a clock, and this crate depends on neither tokio nor a filesystem API, so the compiler
//! keeps it that way. The receiver crate drives it.
//!
//! - [`wire`]: netdump frames and the classifier of datagrams arriving on the netdump port
//!   (docs/netdump-wire.md).
//! - [`session`]: one crashing netdump client as a state machine, `(input, now) -> actions`,
//!   with [`session::Session::poll_timeout`] telling the driver when it next needs a tick.
//! - [`vmcore`]: the ELF core header `crash` recognises as a netdump dump (docs/vmcore.md).
//! - [`netconsole`]: netconsole datagrams (plain and extended) and per-source streams
//!   (docs/netconsole.md).
//! - [`event`]: the kinds of event both report (the receiver writes them to `events.jsonl`).

pub mod event;
pub mod netconsole;
pub mod session;
pub mod vmcore;
pub mod wire;
