//! A rack crashes at once (tests/support/storm.rs replays kdump-tools' ssh sequence from every
//! client at the same moment, through the dump sink, against the server's real sshd).
//!
//! First against sshd's stock limit (`MaxStartups 10:30:100`, forced after apply's drop-in):
//! connections are dropped at key exchange, which the test requires to see, so it proves the
//! problem exists here. Then with the configuration apply wrote: every dump arrives intact.
//! `CRASH_STORM_CLIENTS` (default 64) sets the fleet size.

use crate::support;

use support::nshost::require_root_tools;
use support::storm;

#[test]
fn every_dump_of_a_rack_that_crashes_at_once_arrives() {
    if !require_root_tools() {
        return;
    }
    let n: usize = std::env::var("CRASH_STORM_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
        .max(2);
    let dir = tempfile::tempdir().unwrap();
    let fleet = storm::applied_fleet(
        n,
        std::path::Path::new(env!("CARGO_BIN_EXE_provision")),
        dir.path(),
    );
    let srv = fleet.host("srv");
    let dropin = String::from_utf8(
        srv.read_file("/etc/ssh/sshd_config.d/netdump-provision.conf")
            .unwrap(),
    )
    .unwrap();
    let want = format!("\nMaxStartups {}:30:{}\n", 2 * n.max(5), 4 * n.max(25));
    assert!(dropin.contains(&want), "expected {want:?} in {dropin}");

    let files = storm::client_files(&fleet, dir.path());

    // sshd's stock limit: the storm loses connections at key exchange.
    storm::restart_server_sshd(srv, true);
    let stock = storm::storm(&fleet, "202612020700", &files);
    let stock_drops: usize = stock.iter().map(|(_, r)| r.failed_attempts).sum();
    let stock_complete = storm::complete(&fleet, "202612020700", &files).len();
    eprintln!(
        "stock MaxStartups 10:30:100: {stock_complete} of {n} dumps complete, {stock_drops} failed ssh attempts"
    );
    assert!(
        stock_drops > 0,
        "the stock limit dropped nothing: this storm does not reproduce the problem"
    );

    // apply's configuration: nothing dropped, every dump whole.
    storm::restart_server_sshd(srv, false);
    let fixed = storm::storm(&fleet, "202612020701", &files);
    let failures: Vec<String> = fixed
        .iter()
        .filter(|(_, r)| !r.steps_ok || r.failed_attempts != 0)
        .map(|(name, r)| {
            let err = std::fs::read_to_string(format!("/tmp/storm-{name}.err")).unwrap_or_default();
            format!(
                "{name}: {} {}",
                r.log.trim(),
                err.lines().last().unwrap_or("")
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "with apply's sshd settings: {failures:#?}"
    );
    let got = storm::complete(&fleet, "202612020701", &files);
    assert_eq!(got.len(), n, "complete dumps: {got:?}");
    eprintln!("apply's MaxStartups: {n} of {n} dumps complete, 0 failed ssh attempts");
    storm::cleanup(&files);
}
