//! The embedded dump receiver (`provision receiver`): netdump UDP protocol and netconsole logs.

pub mod console;
pub mod events;
pub mod netconsole;
