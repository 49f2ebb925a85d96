//! netdump.conf: any bytes parse or fail with a line number, never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use netdump_receiver::config::FileConfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = FileConfig::parse(&text, Path::new("/etc/netdump.conf")) {
        assert!(e.to_string().contains("line "));
    }
});
