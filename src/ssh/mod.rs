//! Remote execution over ssh: one multiplexed OpenSSH master per host (openssh crate, native-mux).
//!
//! Everything above this module (facts, resources, roles, apply, test-crash) talks to hosts only
//! through the [`Remote`] trait in `remote.rs`, so planning logic never sees ssh details.

pub mod options;
pub mod remote;

pub use options::SshOptions;
pub use remote::{CommandOutput, Remote, RemoteCommand, SshError, Target};
