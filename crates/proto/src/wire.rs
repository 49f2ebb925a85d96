//! netdump wire format (docs/netdump-wire.md, "Frames"): the 24-byte server→client request, the 13-byte-header
//! client→server reply, START text fields, and the datagram classifier for port 6666.
//! Pure code: no IO, no allocation on the decode path.

use thiserror::Error;

/// Size of a request on the wire: u64 magic, u32 nr, command, from, to.
pub const REQ_LEN: usize = 24;
/// Size of a reply header: u8 version, u32 nr, code, info.
pub const HEADER_LEN: usize = 13;
/// Largest netdump reply payload (RHEL 4 caps messages at header + 1024).
pub const MAX_PAYLOAD: usize = 1024;
/// Largest netlog payload we accept (RHEL 3 sends up to 1447 bytes).
pub const MAX_LOG_PAYLOAD: usize = 1447;
/// Protocol version announced in the START ACK's `from` (must be non-zero for 64-bit clients).
pub const SERVER_VERSION: u32 = 5;
/// Size of one memory chunk in a `REPLY_MEM` frame.
pub const CHUNK: usize = 1024;

/// Server → client commands (docs/netdump-wire.md, "Frames").
pub mod cmd {
    pub const NONE: u32 = 0;
    pub const SEND_MEM: u32 = 1;
    pub const EXIT: u32 = 2;
    pub const REBOOT: u32 = 3;
    pub const HELLO: u32 = 4;
    pub const GET_NR_PAGES: u32 = 5;
    pub const GET_PAGE_SIZE: u32 = 6;
    pub const START_NETDUMP_ACK: u32 = 7;
    pub const GET_REGS: u32 = 8;
    pub const SHOW_STATE: u32 = 9;
}

/// Client → server reply codes (docs/netdump-wire.md, "Frames").
pub mod code {
    pub const NONE: u32 = 0;
    pub const ERROR: u32 = 1;
    pub const LOG: u32 = 2;
    pub const MEM: u32 = 3;
    pub const RESERVED: u32 = 4;
    pub const HELLO: u32 = 5;
    pub const NR_PAGES: u32 = 6;
    pub const PAGE_SIZE: u32 = 7;
    pub const START_NETDUMP: u32 = 8;
    pub const END_NETDUMP: u32 = 9;
    pub const REGS: u32 = 10;
    pub const MAGIC: u32 = 11;
    pub const SHOW_STATE: u32 = 12;
    /// Highest code a Red Hat client sends.
    pub const MAX: u32 = 12;
}

/// ELF machine numbers a START may announce.
pub mod machine {
    pub const I386: u16 = 3;
    pub const PPC64: u16 = 21;
    pub const IA64: u16 = 50;
    pub const X86_64: u16 = 62;
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("netdump datagram of {len} bytes is too short: need at least {need}; drop it")]
    TooShort { len: usize, need: usize },
    #[error("netdump reply payload of {len} bytes exceeds {max}; drop it")]
    TooLong { len: usize, max: usize },
    #[error("netdump reply version byte {0} is not 3, 4 or 5; not a Red Hat netdump frame")]
    BadVersion(u8),
    #[error("netdump reply code {0} is unknown (max 12); drop it")]
    BadCode(u32),
}

/// Server → client request (24 bytes, big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub magic: u64,
    pub nr: u32,
    pub command: u32,
    pub from: u32,
    pub to: u32,
}

impl Request {
    pub fn encode(&self) -> [u8; REQ_LEN] {
        let mut b = [0u8; REQ_LEN];
        b[0..8].copy_from_slice(&self.magic.to_be_bytes());
        b[8..12].copy_from_slice(&self.nr.to_be_bytes());
        b[12..16].copy_from_slice(&self.command.to_be_bytes());
        b[16..20].copy_from_slice(&self.from.to_be_bytes());
        b[20..24].copy_from_slice(&self.to.to_be_bytes());
        b
    }

    /// Decodes a request as a client would: at least 24 bytes, extra bytes ignored.
    pub fn decode(b: &[u8]) -> Result<Request, WireError> {
        if b.len() < REQ_LEN {
            return Err(WireError::TooShort {
                len: b.len(),
                need: REQ_LEN,
            });
        }
        Ok(Request {
            magic: u64::from_be_bytes(b[0..8].try_into().unwrap()),
            nr: be32(&b[8..12]),
            command: be32(&b[12..16]),
            from: be32(&b[16..20]),
            to: be32(&b[20..24]),
        })
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Client → server reply; the payload borrows from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    pub version: u8,
    pub nr: u32,
    pub code: u32,
    pub info: u32,
    pub payload: &'a [u8],
}

impl<'a> Reply<'a> {
    /// Strict decode of a netdump reply: header present, version 3–5, known code, payload bound
    /// (1024 bytes, or 1447 for `REPLY_LOG`).
    pub fn decode(b: &'a [u8]) -> Result<Reply<'a>, WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError::TooShort {
                len: b.len(),
                need: HEADER_LEN,
            });
        }
        let version = b[0];
        if !(3..=5).contains(&version) {
            return Err(WireError::BadVersion(version));
        }
        let code = be32(&b[5..9]);
        if code > code::MAX {
            return Err(WireError::BadCode(code));
        }
        let payload = &b[HEADER_LEN..];
        let max = if code == code::LOG {
            MAX_LOG_PAYLOAD
        } else {
            MAX_PAYLOAD
        };
        if payload.len() > max {
            return Err(WireError::TooLong {
                len: payload.len(),
                max,
            });
        }
        Ok(Reply {
            version,
            nr: be32(&b[1..5]),
            code,
            info: be32(&b[9..13]),
            payload,
        })
    }

    /// Encodes into `out` (cleared first); used by the client simulator and tests.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(self.version);
        out.extend_from_slice(&self.nr.to_be_bytes());
        out.extend_from_slice(&self.code.to_be_bytes());
        out.extend_from_slice(&self.info.to_be_bytes());
        out.extend_from_slice(self.payload);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.payload.len());
        self.encode_into(&mut v);
        v
    }
}

/// What a datagram arriving on port 6666 is (docs/netdump-wire.md, "Frames").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// A netdump frame other than LOG (START, replies to requests).
    Netdump(Reply<'a>),
    /// A netlog console frame: `info` = running byte offset of the log stream.
    NetLog { offset: u32, text: &'a [u8] },
    /// Anything else: plain or extended netconsole text.
    Console(&'a [u8]),
}

/// Classifies a datagram: a netdump frame iff it decodes strictly (version 3–5, code ≤ 12, bounded
/// payload) and is not an empty LOG; everything else is console text.
pub fn classify(b: &[u8]) -> Datagram<'_> {
    match Reply::decode(b) {
        Ok(r) if r.code == code::LOG => {
            if r.payload.is_empty() {
                Datagram::Console(b)
            } else {
                Datagram::NetLog {
                    offset: r.info,
                    text: r.payload,
                }
            }
        }
        Ok(r) => Datagram::Netdump(r),
        Err(_) => Datagram::Console(b),
    }
}

/// Fields of a `REPLY_START_NETDUMP` (docs/netdump-wire.md, "A dump, step by step", step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StartInfo {
    /// ELF `e_machine` (the START's `nr`; i386 for legacy clients).
    pub machine: u16,
    /// Client's maximum protocol version (the START's `info`; 0 for legacy RHEL 3).
    pub version: u32,
    pub task_struct: Option<u64>,
    pub page_offset: Option<u64>,
    pub magic: Option<u64>,
    /// Old RHEL 3 form ("NETDUMP start, waiting for start-ACK."): no magic, no task.
    pub legacy: bool,
}

impl StartInfo {
    /// Parses a START reply. Unknown or malformed text fields are left `None`.
    pub fn parse(r: &Reply<'_>) -> StartInfo {
        let legacy = r.info == 0;
        let machine = if legacy || r.nr == 0 || r.nr > u16::MAX as u32 {
            machine::I386
        } else {
            r.nr as u16
        };
        let mut s = StartInfo {
            machine,
            version: r.info,
            legacy,
            ..Default::default()
        };
        if legacy {
            return s;
        }
        for tok in r
            .payload
            .split(|c| c.is_ascii_whitespace() || *c == 0)
            .filter(|t| !t.is_empty())
        {
            let Some(colon) = tok.iter().position(|&c| c == b':') else {
                continue;
            };
            let (key, val) = (&tok[..colon], &tok[colon + 1..]);
            let val = parse_hex_u64(val);
            match key {
                b"task_struct" => s.task_struct = val,
                b"page_offset" => s.page_offset = val,
                b"netdump_magic" => s.magic = val,
                _ => {}
            }
        }
        s
    }
}

/// Parses hex with optional `0x`/`0X`, at most 16 digits.
pub fn parse_hex_u64(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// The register block of a `REPLY_REGS`: everything after the first `\n` of the text prefix
/// ("Sending register info.\n"). Without a newline the whole payload is taken as registers.
pub fn regs_block(payload: &[u8]) -> &[u8] {
    match payload.iter().position(|&c| c == b'\n') {
        Some(i) => &payload[i + 1..],
        None => payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_is_big_endian() {
        let r = Request {
            magic: 0x1122_3344_5566_7788,
            nr: 7,
            command: cmd::SEND_MEM,
            from: 0x01020304,
            to: 0,
        };
        let b = r.encode();
        assert_eq!(&b[0..8], &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        assert_eq!(&b[12..16], &[0, 0, 0, 1]);
        assert_eq!(&b[16..20], &[1, 2, 3, 4]);
        assert_eq!(Request::decode(&b).unwrap(), r);
        assert!(Request::decode(&b[..23]).is_err());
    }

    #[test]
    fn reply_round_trip_and_limits() {
        let data = [0xabu8; 1024];
        let r = Reply {
            version: 5,
            nr: 9,
            code: code::MEM,
            info: 2048,
            payload: &data,
        };
        let b = r.encode();
        assert_eq!(b.len(), 13 + 1024);
        assert_eq!(&b[1..5], &[0, 0, 0, 9]);
        assert_eq!(&b[9..13], &[0, 0, 8, 0]);
        assert_eq!(Reply::decode(&b).unwrap(), r);
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(
            Reply::decode(&long),
            Err(WireError::TooLong { .. })
        ));
        let mut bad = b.clone();
        bad[0] = 6;
        assert_eq!(Reply::decode(&bad), Err(WireError::BadVersion(6)));
        bad[0] = 4;
        bad[8] = 13;
        assert_eq!(Reply::decode(&bad), Err(WireError::BadCode(13)));
    }

    #[test]
    fn classify_separates_netdump_netlog_and_text() {
        let log = Reply {
            version: 4,
            nr: 0,
            code: code::LOG,
            info: 100,
            payload: b"Oops\n",
        }
        .encode();
        assert_eq!(
            classify(&log),
            Datagram::NetLog {
                offset: 100,
                text: b"Oops\n"
            }
        );
        let empty_log = Reply {
            version: 4,
            nr: 0,
            code: code::LOG,
            info: 0,
            payload: b"",
        }
        .encode();
        assert!(matches!(classify(&empty_log), Datagram::Console(_)));
        assert!(matches!(
            classify(b"<4>[  1.0] hello\n"),
            Datagram::Console(_)
        ));
        assert!(matches!(
            classify(b"6,123,456,-;kernel: line\n"),
            Datagram::Console(_)
        ));
        let start = Reply {
            version: 5,
            nr: 62,
            code: code::START_NETDUMP,
            info: 5,
            payload: b"task_struct:0xffff810001 page_offset:0xffff810000000000 netdump_magic:0x1234abcd5678ef00\n",
        }
        .encode();
        let Datagram::Netdump(r) = classify(&start) else {
            panic!("START not classified as netdump")
        };
        let s = StartInfo::parse(&r);
        assert_eq!(s.machine, machine::X86_64);
        assert_eq!(s.task_struct, Some(0xffff810001));
        assert_eq!(s.page_offset, Some(0xffff810000000000));
        assert_eq!(s.magic, Some(0x1234abcd5678ef00));
        assert!(!s.legacy);
    }

    #[test]
    fn legacy_start_is_i386_without_magic() {
        let r = Reply {
            version: 4,
            nr: 0,
            code: code::START_NETDUMP,
            info: 0,
            payload: b"NETDUMP start, waiting for start-ACK.\n",
        };
        let s = StartInfo::parse(&r);
        assert!(s.legacy);
        assert_eq!(s.machine, machine::I386);
        assert_eq!(s.magic, None);
    }

    #[test]
    fn regs_block_skips_text_prefix() {
        let mut p = b"Sending register info.\n".to_vec();
        p.extend_from_slice(&[1, 2, 3]);
        assert_eq!(regs_block(&p), &[1, 2, 3]);
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoders_never_panic_and_classify_is_total(b in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = Request::decode(&b);
            if let Ok(r) = Reply::decode(&b) {
                prop_assert_eq!(r.encode(), b.clone());
                let _ = StartInfo::parse(&r);
            }
            match classify(&b) {
                Datagram::Netdump(r) => prop_assert!(r.code != code::LOG && r.payload.len() <= MAX_PAYLOAD),
                Datagram::NetLog { text, .. } => prop_assert!(!text.is_empty()),
                Datagram::Console(t) => prop_assert_eq!(t, &b[..]),
            }
            let _ = regs_block(&b);
            let _ = parse_hex_u64(&b);
        }

        #[test]
        fn request_round_trips(m in any::<u64>(), nr in any::<u32>(), c in any::<u32>(), f in any::<u32>(), t in any::<u32>()) {
            let r = Request { magic: m, nr, command: c, from: f, to: t };
            prop_assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        }

        #[test]
        fn start_text_fields_parse(task in any::<u64>(), po in any::<u64>(), magic in any::<u64>(), m in 1u32..200) {
            let text = format!("task_struct:0x{task:x} page_offset:0x{po:x} netdump_magic:0x{magic:x}\n");
            let b = Reply { version: 5, nr: m, code: code::START_NETDUMP, info: 5, payload: text.as_bytes() }.encode();
            let Datagram::Netdump(r) = classify(&b) else { panic!("not netdump") };
            let s = StartInfo::parse(&r);
            prop_assert_eq!(s.task_struct, Some(task));
            prop_assert_eq!(s.page_offset, Some(po));
            prop_assert_eq!(s.magic, Some(magic));
            prop_assert_eq!(s.machine as u32, m);
        }
    }
}
