//! Every netdump datagram decoder: classification, replies, requests, START text, magic files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netdump_receiver::store::parse_magic;
use netdump_proto::wire::{self, Datagram, Reply, Request, StartInfo};

fuzz_target!(|data: &[u8]| {
    if let Datagram::Netdump(r) = wire::classify(data) {
        let _ = StartInfo::parse(&r);
        let _ = wire::regs_block(r.payload);
    }
    if let Ok(r) = Reply::decode(data) {
        let again = r.encode();
        assert!(Reply::decode(&again).is_ok());
    }
    if let Ok(q) = Request::decode(data) {
        assert_eq!(Request::decode(&q.encode()).ok(), Some(q));
    }
    let _ = wire::parse_hex_u64(data);
    let _ = parse_magic(&String::from_utf8_lossy(data));
});
