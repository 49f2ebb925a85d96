//! What happened to a client, as the events file (`<dumpdir>/events.jsonl`, docs/receiver.md)
//! names it. Sessions and the netconsole crash detector report these; the receiver writes them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Crash,
    /// A console crash record closed and was triaged.
    CrashTriaged,
    DumpStarted,
    DumpComplete,
    DumpFailed,
}
