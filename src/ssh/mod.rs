//! Remote execution over ssh: one multiplexed OpenSSH master per host (openssh crate, native-mux).
//!
//! Everything above this module (facts, resources, roles, apply, test-crash) talks to hosts only
//! through the [`Remote`] trait in `remote.rs`, so planning logic never sees ssh details.
//!
//! - [`connect`] starts the master for one host ([`SshHost`]), with the host-key policy of
//!   [`SshOptions`] (strict unless new keys are accepted; changed keys always refused).
//! - [`SshHost`] runs each step as `sh -c SCRIPT` (through `sudo -n` for become), bounded on the
//!   host by coreutils `timeout` and locally by a deadline, at most `max_channels` at once.
//! - [`shell::quote`] is how other modules put data into scripts; [`RemoteFile`] writes a file
//!   atomically with its content on stdin.

pub mod command;
pub mod errors;
pub mod options;
pub mod remote;
pub mod session;
pub mod shell;
pub mod upload;

pub use options::SshOptions;
pub use remote::{CommandOutput, MemoKey, Remote, RemoteCommand, SshError, Target};
pub use session::{SshHost, close_kept_masters, connect};
pub use upload::RemoteFile;
