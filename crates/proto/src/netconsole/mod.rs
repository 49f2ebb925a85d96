//! netconsole log collection, sans-IO: datagrams and time in, [`ConsoleEvent`]s out.
//!
//! Two wire formats arrive on the console port (default 6666, also 1514 for netconsd parity):
//!
//! * **plain** netconsole (any kernel): raw console text, one or several lines per datagram, or a
//!   partial line continued in the next datagram;
//! * **extended** netconsole (`netconsole=+…` or configfs `extended=1`): one `/dev/kmsg`-style
//!   record per datagram, `[<release>,]<prefix>,<seq>,<ts_usec>,<flags>[,caller=…][,ncfrag=<off>/<total>];<text>`
//!   then optional continuation lines ` key=value` (dictionary, userdata, sysdata `cpu=`,
//!   `taskname=`, `release=`, `msgid=`). Records over 1000 bytes are split into fragments that
//!   repeat the header with `ncfrag=<byte offset>/<total bytes>`.
//!
//! Per source address a [`Stream`] reassembles fragments (in any order, bounded in memory, with a
//! timeout that emits what arrived), orders records by `seq` in a small window, drops duplicates,
//! counts lost records (from `msgid` gaps when the sender provides them, else from `seq` gaps),
//! notices reboots (`seq`/timestamps restarting) and flags crash lines ([`is_crash_line`]).
//!
//! Nothing here does IO or reads the clock: callers pass `now`, so every path is unit-testable.
//! Nothing here panics on any input (see the proptests).
//!
//! ## Wiring (server.rs)
//!
//! ```text
//! on datagram (buf, from) that is not a netdump frame (docs/netdump-wire.md, "Frames"):
//!     for (ip, ev) in collector.ingest(from.ip(), buf, Instant::now()) {
//!         store.handle(ip, ev, Utc::now());          // console::ConsoleStore; errors are
//!     }                                              // already logged and counted
//! on a netdump REPLY_LOG frame (info = byte offset, payload = text):
//!     collector.ingest_netlog(from.ip(), info, payload, now) → store.handle(...)
//! every 100–200 ms:
//!     collector.tick(now) → store.handle(...); then store.tick(Utc::now())
//! when a netdump dump starts for ip:
//!     store.crash_dir_for(ip) gives the console's crash directory to put vmcore in, if any;
//!     otherwise create one and pass it to store.adopt_crash_dir(ip, dir).
//! ```

//! ## Layout
//!
//! - `parse`: one datagram's header, body and fields; crash-line patterns (pure functions).
//! - `stream`: one source's [`Stream`]: reassembly, reordering, duplicates, loss, reboots.
//! - `collector`: the [`Collector`] of all sources, bounded, with the earliest deadline.

mod collector;
mod parse;
mod stream;
#[cfg(test)]
mod tests;

pub use collector::Collector;
pub use parse::{ExtHeader, is_crash_line, parse_extended, sanitize, split_body};
pub use stream::Stream;

use std::time::Duration;

/// What the collector reports for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// One console line. Extended records carry `seq`, `level` (0–7) and `ts_usec`; plain
    /// netconsole text carries none. `fields` holds the record's ` key=value` continuation lines
    /// (dictionary, userdata and sysdata such as `cpu`, `taskname`, `release`, `msgid`).
    Line {
        seq: Option<u64>,
        level: Option<u8>,
        ts_usec: Option<u64>,
        text: String,
        fields: Vec<(String, String)>,
    },
    /// `count` records never arrived (a gap in `msgid`, or in `seq` when there is no `msgid`).
    Lost { count: u64 },
    /// The sender restarted its sequence numbers: it rebooted (or its console was reloaded).
    Rebooted,
    /// The line just reported (always emitted right after its `Line`) shows a kernel crash.
    /// One crash usually yields several (`sysrq: Trigger a crash`, `Kernel panic - not syncing`);
    /// consumers keep one record open per host (see `console::ConsoleStore`).
    Crash { text: String },
}

/// Tunables; [`Limits::default`] suits a lab fleet and matches netconsd's timings.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most sources tracked at once; the least recently heard one is evicted beyond this.
    pub max_sources: usize,
    /// How long a record waits for a missing lower `seq` before the gap is declared lost.
    pub reorder_timeout: Duration,
    /// Most records held back waiting for a gap to fill.
    pub reorder_window: usize,
    /// How long an incomplete fragmented record waits for its missing fragments.
    pub fragment_timeout: Duration,
    /// Largest `ncfrag` total accepted (bytes); larger claims are dropped as malformed.
    pub max_record: usize,
    /// Most incomplete fragmented records per source.
    pub max_fragmented: usize,
    /// Most bytes held in incomplete fragmented records per source.
    pub max_fragment_bytes: usize,
    /// Longest partial plain-text line kept before it is emitted as is.
    pub max_partial_line: usize,
    /// How long a partial plain-text line waits for its newline.
    pub partial_line_timeout: Duration,
    /// A source silent this long is forgotten by `tick`.
    pub idle_forget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sources: 1024,
            reorder_timeout: Duration::from_millis(200),
            reorder_window: 256,
            fragment_timeout: Duration::from_millis(1000),
            max_record: 64 * 1024,
            max_fragmented: 32,
            max_fragment_bytes: 128 * 1024,
            max_partial_line: 4096,
            partial_line_timeout: Duration::from_millis(1000),
            idle_forget: Duration::from_secs(6 * 3600),
        }
    }
}

/// Counters for one source, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub datagrams: u64,
    pub records: u64,
    pub plain_lines: u64,
    pub duplicates: u64,
    pub lost: u64,
    /// Records that arrived after their gap had already been declared lost (still emitted).
    pub late: u64,
    pub reboots: u64,
    /// Fragmented records emitted with missing pieces after the fragment timeout.
    pub incomplete: u64,
    /// Fragments dropped: bad offsets, oversize totals, or over the per-source bound.
    pub bad_fragments: u64,
    /// netlog bytes skipped as already received (duplicate or overlapping `REPLY_LOG` frames).
    pub netlog_dup_bytes: u64,
    /// netlog bytes that never arrived (gaps in the `REPLY_LOG` offsets).
    pub netlog_gap_bytes: u64,
}
