use super::*;

#[test]
fn nothing_in_a_quiet_log() {
    assert!(analyze("[    0.000000] Linux version 6.1.0 (x@y) #1\n[    1.0] hello\n").is_empty());
}
