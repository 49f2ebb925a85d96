//! The netconsole collector: datagrams (plain, extended, fragmented) from a few sources, with
//! ticks in between; the first byte of each chunk picks the source and the time step.
#![no_main]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netdump_proto::netconsole::{Collector, Limits};

fuzz_target!(|data: &[u8]| {
    let mut c = Collector::new(Limits {
        max_sources: 4,
        ..Limits::default()
    });
    let mut now = Instant::now();
    for chunk in data.split(|&b| b == 0xff) {
        let Some((&ctl, dgram)) = chunk.split_first() else {
            continue;
        };
        let src = IpAddr::from([127, 0, 0, ctl & 7]);
        let _ = c.ingest(src, dgram, now);
        now += Duration::from_millis(u64::from(ctl >> 3) * 50);
        if ctl & 0x80 != 0 {
            let _ = c.tick(now);
        }
    }
    let _ = c.tick(now + Duration::from_secs(3600));
});
