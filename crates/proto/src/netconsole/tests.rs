use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;
use proptest::prelude::*;

fn ip() -> IpAddr {
    "198.18.0.2".parse().unwrap()
}

fn lines(ev: &[(IpAddr, ConsoleEvent)]) -> Vec<String> {
    ev.iter()
        .filter_map(|(_, e)| match e {
            ConsoleEvent::Line { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn seqs(ev: &[(IpAddr, ConsoleEvent)]) -> Vec<u64> {
    ev.iter()
        .filter_map(|(_, e)| match e {
            ConsoleEvent::Line { seq, .. } => *seq,
            _ => None,
        })
        .collect()
}

fn lost(ev: &[(IpAddr, ConsoleEvent)]) -> u64 {
    ev.iter()
        .map(|(_, e)| match e {
            ConsoleEvent::Lost { count } => *count,
            _ => 0,
        })
        .sum()
}

fn ext(seq: u64, ts: u64, text: &str) -> Vec<u8> {
    format!("6,{seq},{ts},-;{text}\n").into_bytes()
}

#[test]
fn parses_extended_header_variants() {
    let (h, body) =
        parse_extended(b"6,444,501151268,-;netconsole: network logging started\n").unwrap();
    assert_eq!(
        (h.prefix, h.seq, h.ts_usec, h.flags),
        (6, 444, 501151268, "-")
    );
    assert_eq!(h.release, None);
    assert_eq!(body, b"netconsole: network logging started\n");

    let (h, _) = parse_extended(b"6.4.0,6,444,501151268,-;netconsole: started").unwrap();
    assert_eq!(h.release, Some("6.4.0"));
    assert_eq!(h.seq, 444);

    let (h, body) = parse_extended(b"6,416,1758426,-,ncfrag=16/31; the 2nd chunk.").unwrap();
    assert_eq!(h.frag, Some((16, 31)));
    assert_eq!(body, b" the 2nd chunk.");

    let (h, _) = parse_extended(b"12,339,5140900,-,caller=T1;sysrq: x").unwrap();
    assert_eq!((h.prefix, h.level()), (12, 4));

    // Plain console text, even with commas and semicolons, is not extended.
    assert!(parse_extended(b"[   12.345678] foo, bar; baz\n").is_none());
    assert!(parse_extended(b"hello; world").is_none());
    assert!(parse_extended(b"a,b,c,d;x").is_none());
    assert!(parse_extended(b"6,1,2;x").is_none());
    assert!(parse_extended(b"").is_none());
}

#[test]
fn splits_text_and_fields() {
    let (text, fields) = split_body(
        b"sysrq: Trigger a crash\n cpu=0\n taskname=sh\n release=6.1.0-28-amd64\n msgid=77\n",
    );
    assert_eq!(text, "sysrq: Trigger a crash");
    assert_eq!(
        fields,
        vec![
            ("cpu".into(), "0".into()),
            ("taskname".into(), "sh".into()),
            ("release".into(), "6.1.0-28-amd64".into()),
            ("msgid".into(), "77".into()),
        ]
    );
    let (text, _) = split_body(b"evil \x1b[31mred\r");
    assert_eq!(text, "evil \\x1b[31mred");
}

#[test]
fn plain_text_lines_and_partial_lines() {
    let mut c = Collector::default();
    let t = Instant::now();
    let ev = c.ingest(ip(), b"[    1.000000] first\n[    1.000001] sec", t);
    assert_eq!(lines(&ev), vec!["[    1.000000] first"]);
    let ev = c.ingest(ip(), b"ond\nthird\n", t);
    assert_eq!(lines(&ev), vec!["[    1.000001] second", "third"]);
    if let (_, ConsoleEvent::Line { seq, level, .. }) = &ev[0] {
        assert_eq!((*seq, *level), (None, None));
    }
    // A partial line is flushed after the timeout.
    // The boot banner over plain netconsole marks a reboot.
    let ev = c.ingest(
        ip(),
        b"[    0.000000] Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org)\n",
        t,
    );
    assert_eq!(ev[0].1, ConsoleEvent::Rebooted);
    assert_eq!(lines(&ev).len(), 1);
    let ev = c.ingest(ip(), b"no newline", t);
    assert!(ev.is_empty());
    assert!(c.tick(t + Duration::from_millis(10)).is_empty());
    let ev = c.tick(t + Duration::from_secs(2));
    assert_eq!(lines(&ev), vec!["no newline"]);
}

#[test]
fn netlog_offsets_drop_duplicates_and_mark_gaps_and_restarts() {
    let mut c = Collector::default();
    let t = Instant::now();
    let start = b"[...network console startup...]\n";
    let mut all = c.ingest_netlog(ip(), 0, start, t);
    let off = start.len() as u32;
    all.extend(c.ingest_netlog(ip(), off, b"eth0: link up\nsysrq: ", t));
    // Retransmitted/overlapping frame: only the new tail counts.
    all.extend(c.ingest_netlog(
        ip(),
        off,
        b"eth0: link up\nsysrq: SysRq : Trigger a crash\n",
        t,
    ));
    all.extend(c.ingest_netlog(ip(), off, b"eth0: link up\n", t));
    let next = off + 45;
    // 10 bytes never arrive.
    all.extend(c.ingest_netlog(ip(), next + 10, b"tail\n", t));
    assert_eq!(
        lines(&all),
        vec![
            "[...network console startup...]",
            "eth0: link up",
            "sysrq: SysRq : Trigger a crash",
            " [... 10 bytes of console log lost ...] tail"
        ]
    );
    assert!(
        all.iter()
            .any(|(_, e)| matches!(e, ConsoleEvent::Crash { .. }))
    );
    let st = c.stats(ip()).unwrap();
    assert_eq!((st.netlog_dup_bytes, st.netlog_gap_bytes), (21 + 14, 10));
    // Offset 0 again: the module was reloaded (the host rebooted).
    let ev = c.ingest_netlog(ip(), 0, start, t);
    assert_eq!(ev[0].1, ConsoleEvent::Rebooted);
    // u32 wrap-around is continuous, not a reboot.
    let mut c = Collector::default();
    c.ingest_netlog(ip(), u32::MAX - 2, b"ab", t);
    let ev = c.ingest_netlog(ip(), u32::MAX, b"c\nd\n", t);
    assert_eq!(lines(&ev), vec!["abc", "d"]);
    let ev = c.ingest_netlog(ip(), 3, b"e\n", t);
    assert_eq!(lines(&ev), vec!["e"]);
}

#[test]
fn in_order_records_come_out_at_once() {
    let mut c = Collector::default();
    let t = Instant::now();
    let mut all = Vec::new();
    for s in 10..15 {
        all.extend(c.ingest(ip(), &ext(s, s * 1000, &format!("m{s}")), t));
    }
    assert_eq!(seqs(&all), vec![10, 11, 12, 13, 14]);
    assert_eq!(lost(&all), 0);
}

#[test]
fn reorders_within_window_and_counts_gaps() {
    let mut c = Collector::default();
    let t = Instant::now();
    let mut all = c.ingest(ip(), &ext(1, 1000, "a"), t);
    all.extend(c.ingest(ip(), &ext(3, 3000, "c"), t));
    assert_eq!(seqs(&all), vec![1], "3 waits for 2");
    all.extend(c.ingest(ip(), &ext(2, 2000, "b"), t));
    assert_eq!(seqs(&all), vec![1, 2, 3]);
    // 4 never comes: 5 waits, then the gap is declared lost by tick.
    all.extend(c.ingest(ip(), &ext(5, 5000, "e"), t));
    assert_eq!(seqs(&all), vec![1, 2, 3]);
    all.extend(c.tick(t + Duration::from_millis(50)));
    assert_eq!(seqs(&all), vec![1, 2, 3]);
    all.extend(c.tick(t + Duration::from_millis(300)));
    assert_eq!(seqs(&all), vec![1, 2, 3, 5]);
    assert_eq!(lost(&all), 1);
    // 4 turns up late: emitted, not a reboot, not counted again.
    let late = c.ingest(ip(), &ext(4, 4000, "d"), t + Duration::from_millis(400));
    assert_eq!(seqs(&late), vec![4]);
    assert!(!late.iter().any(|(_, e)| *e == ConsoleEvent::Rebooted));
    let st = c.stats(ip()).unwrap();
    assert_eq!((st.lost, st.late, st.reboots), (1, 1, 0));
}

#[test]
fn msgid_tells_filtered_seqs_from_lost_ones() {
    let mut c = Collector::default();
    let t = Instant::now();
    let m = |seq: u64, id: u32| format!("6,{seq},{seq}000,-;m{seq}\n msgid={id}\n").into_bytes();
    let mut all = c.ingest(ip(), &m(100, 7), t);
    // seq jumps by 5 (debug messages below the console loglevel) but msgid is contiguous:
    // emitted at once and nothing is lost.
    all.extend(c.ingest(ip(), &m(105, 8), t));
    assert_eq!(seqs(&all), vec![100, 105]);
    assert_eq!(lost(&all), 0);
    // msgid jumps by 3: two messages were lost, whatever the seq gap says.
    all.extend(c.ingest(ip(), &m(106, 11), t));
    all.extend(c.tick(t + Duration::from_secs(1)));
    assert_eq!(seqs(&all), vec![100, 105, 106]);
    assert_eq!(lost(&all), 2);
}

#[test]
fn reordering_at_stream_start_is_not_a_reboot() {
    let mut c = Collector::default();
    let t = Instant::now();
    let mut all = c.ingest(ip(), &ext(5, 5000, "e"), t);
    all.extend(c.ingest(ip(), &ext(4, 4000, "d"), t));
    all.extend(c.ingest(ip(), &ext(6, 6000, "f"), t));
    assert_eq!(seqs(&all), vec![5, 4, 6]);
    assert!(!all.iter().any(|(_, e)| *e == ConsoleEvent::Rebooted));
    // The late record repeated is a duplicate.
    assert!(c.ingest(ip(), &ext(4, 4000, "d"), t).is_empty());
    assert_eq!(c.stats(ip()).unwrap().duplicates, 1);
    // Later on, a lower seq that was never skipped is a new boot.
    for s in 7..40 {
        all.extend(c.ingest(ip(), &ext(s, s * 1000, "x"), t));
    }
    let ev = c.ingest(ip(), &ext(30, 90_000, "new boot, further in time"), t);
    assert_eq!(ev[0].1, ConsoleEvent::Rebooted);
}

#[test]
fn drops_duplicates() {
    let mut c = Collector::default();
    let t = Instant::now();
    let mut all = Vec::new();
    for s in [1, 2, 2, 3, 1, 3] {
        all.extend(c.ingest(ip(), &ext(s, s * 10, "x"), t));
    }
    assert_eq!(seqs(&all), vec![1, 2, 3]);
    assert_eq!(c.stats(ip()).unwrap().duplicates, 3);
    assert!(!all.iter().any(|(_, e)| *e == ConsoleEvent::Rebooted));
    // A duplicate of a record still waiting in the reorder window is dropped too.
    let mut all = c.ingest(ip(), &ext(5, 50, "y"), t);
    all.extend(c.ingest(ip(), &ext(5, 50, "y"), t));
    all.extend(c.tick(t + Duration::from_secs(1)));
    assert_eq!(seqs(&all), vec![5]);
}

#[test]
fn detects_reboot_when_seq_restarts() {
    let mut c = Collector::default();
    let t = Instant::now();
    let mut all = Vec::new();
    for s in 900..905 {
        all.extend(c.ingest(ip(), &ext(s, 40_000_000 + s, "old boot"), t));
    }
    all.extend(c.ingest(ip(), &ext(0, 0, "Linux version 6.1.0-28-amd64"), t));
    all.extend(c.ingest(ip(), &ext(1, 10, "Command line: ..."), t));
    let kinds: Vec<_> = all.iter().map(|(_, e)| e.clone()).collect();
    let r = kinds
        .iter()
        .position(|e| *e == ConsoleEvent::Rebooted)
        .expect("reboot noticed");
    assert_eq!(seqs(&all), vec![900, 901, 902, 903, 904, 0, 1]);
    assert!(matches!(
        &kinds[r + 1],
        ConsoleEvent::Line { seq: Some(0), .. }
    ));
    assert_eq!(lost(&all), 0);

    // New boot whose first record has a *higher* seq but an older timestamp.
    let mut c = Collector::default();
    let mut all = c.ingest(ip(), &ext(300, 20_000_000, "crashing"), t);
    all.extend(c.ingest(
        ip(),
        &ext(800, 5_000_000, "netconsole: network logging started"),
        t,
    ));
    assert!(all.iter().any(|(_, e)| *e == ConsoleEvent::Rebooted));
    assert_eq!(lost(&all), 0);
}

#[test]
fn reassembles_fragments_in_order_and_out_of_order() {
    let text = "x".repeat(1500) + "END";
    let body = format!("{text}\n cpu=1\n");
    let total = body.len();
    let frag = |off: usize, end: usize| {
        let mut d = format!("4,416,1758426,-,ncfrag={off}/{total};").into_bytes();
        d.extend_from_slice(&body.as_bytes()[off..end]);
        d
    };
    let t = Instant::now();
    for order in [[0usize, 1, 2], [2, 0, 1], [1, 2, 0]] {
        let cuts = [(0, 1000), (1000, 1400), (1400, total)];
        let mut c = Collector::default();
        let mut all = Vec::new();
        for i in order {
            all.extend(c.ingest(ip(), &frag(cuts[i].0, cuts[i].1), t));
        }
        assert_eq!(all.len(), 1, "{order:?}");
        match &all[0].1 {
            ConsoleEvent::Line {
                seq,
                level,
                text: got,
                fields,
                ..
            } => {
                assert_eq!((*seq, *level), (Some(416), Some(4)));
                assert_eq!(got, &text);
                assert_eq!(fields, &vec![("cpu".to_string(), "1".to_string())]);
            }
            e => panic!("unexpected {e:?}"),
        }
        // A repeated fragment after completion is a duplicate.
        assert!(c.ingest(ip(), &frag(0, 1000), t).is_empty());
    }
}

#[test]
fn reassembles_the_kernel_documentation_example() {
    // Documentation/networking/netconsole.rst, "Extended console".
    let mut c = Collector::default();
    let t = Instant::now();
    let mut all = c.ingest(ip(), b"6,416,1758426,-,ncfrag=16/31; the 2nd chunk.", t);
    all.extend(c.ingest(ip(), b"6,416,1758426,-,ncfrag=0/31;the first chunk,", t));
    assert_eq!(lines(&all), vec!["the first chunk, the 2nd chunk."]);
    assert_eq!(seqs(&all), vec![416]);
}

#[test]
fn missing_fragment_times_out_with_what_arrived() {
    let mut c = Collector::default();
    let t = Instant::now();
    let ev = c.ingest(ip(), b"6,7,100,-,ncfrag=0/20;0123456789", t);
    assert!(ev.is_empty());
    assert!(c.tick(t + Duration::from_millis(500)).is_empty());
    let ev = c.tick(t + Duration::from_secs(2));
    assert_eq!(lines(&ev), vec!["0123456789 [...]"]);
    assert_eq!(c.stats(ip()).unwrap().incomplete, 1);
    // Fragments with impossible offsets or huge totals are dropped and counted.
    assert!(
        c.ingest(ip(), b"6,8,100,-,ncfrag=15/20;0123456789", t)
            .is_empty()
    );
    assert!(
        c.ingest(ip(), b"6,8,100,-,ncfrag=0/99999999;x", t)
            .is_empty()
    );
    assert_eq!(c.stats(ip()).unwrap().bad_fragments, 2);
}

#[test]
fn fragment_memory_is_bounded() {
    let limits = Limits {
        max_fragmented: 4,
        ..Limits::default()
    };
    let mut c = Collector::new(limits);
    let t = Instant::now();
    let mut all = Vec::new();
    for s in 0..20u64 {
        all.extend(c.ingest(ip(), format!("6,{s},{s},-,ncfrag=0/10;abc").as_bytes(), t));
    }
    // Older incomplete records were pushed out (emitted incomplete) to stay within 4.
    assert_eq!(c.stats(ip()).unwrap().incomplete, 16);
    all.extend(c.tick(t + Duration::from_secs(5)));
    assert_eq!(seqs(&all).len(), 20);
}

#[test]
fn sources_are_bounded_and_kept_apart() {
    let limits = Limits {
        max_sources: 3,
        ..Limits::default()
    };
    let mut c = Collector::new(limits);
    let t = Instant::now();
    for i in 0..10u8 {
        let src = IpAddr::from([198, 18, 0, i]);
        c.ingest(src, b"partial", t + Duration::from_millis(u64::from(i)));
    }
    assert_eq!(c.sources(), 3);
    assert_eq!(c.evicted, 7);
    // IPv4-mapped IPv6 names the same host.
    let mapped: IpAddr = "::ffff:198.18.0.9".parse().unwrap();
    let ev = c.ingest(mapped, b"!\n", t);
    assert_eq!(ev[0].0, IpAddr::from([198, 18, 0, 9]));
    assert_eq!(lines(&ev), vec!["partial!"]);
}

#[test]
fn crash_patterns_match_word_level() {
    for yes in [
        "sysrq: Trigger a crash",
        "[  110.123456] sysrq: Trigger a crash",
        "SysRq : Trigger a crash",
        "sysrq: SysRq : Trigger a crash",
        "Kernel panic - not syncing: sysrq triggered crash",
        "Oops: 0002 [#1] PREEMPT SMP NOPTI",
        "<4>[   3.1] BUG: kernel NULL pointer dereference, address: 0000000000000000",
        "kernel BUG at mm/slub.c:123!",
        "Internal error: Oops: 96000045 [#1] SMP",
        "general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] PREEMPT SMP NOPTI",
    ] {
        assert!(is_crash_line(yes), "{yes}");
    }
    for no in [
        "debug: fixed a bug in foo",
        "BUGS: none",
        "usb 1-1: this is not a BUG: really",
        "oops: lowercase is not the kernel's",
        "systemd[1]: Started Kernel panic handler",
        "sysrq: HELP : loglevel(0-9) reboot(b) crash(c)",
        "sysrq: Trigger",
        "traps: a.out[123] general protection fault ip:401136 sp:7ffd error:0 in a.out",
        "",
    ] {
        assert!(!is_crash_line(no), "{no}");
    }
}

#[test]
fn debian_sysrq_crash_block_yields_crash_events() {
    // The console text of `echo c > /proc/sysrq-trigger` on Debian 12 (linux 6.1).
    let block = [
        "sysrq: Trigger a crash",
        "Kernel panic - not syncing: sysrq triggered crash",
        "CPU: 0 PID: 612 Comm: sh Not tainted 6.1.0-28-amd64 #1  Debian 6.1.119-1",
        "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014",
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x44/0x5c",
        " panic+0x118/0x2ed",
        " sysrq_handle_crash+0x16/0x20",
        " __handle_sysrq.cold+0x43/0x11b",
        " write_sysrq_trigger+0x24/0x40",
        " proc_reg_write+0x56/0xa0",
        " vfs_write+0xc9/0x3f0",
        " ksys_write+0x6b/0xf0",
        " do_syscall_64+0x55/0xb0",
        " entry_SYSCALL_64_after_hwframe+0x6e/0xd8",
        " </TASK>",
        "Kernel Offset: 0x2a00000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)",
        "---[ end Kernel panic - not syncing: sysrq triggered crash ]---",
    ];
    let mut c = Collector::default();
    let t = Instant::now();
    let mut all = Vec::new();
    for (i, l) in block.iter().enumerate() {
        let seq = 1200 + i as u64;
        let lvl = if i < 2 { 0 } else { 4 };
        let d = format!(
            "{lvl},{seq},{},-;{l}\n cpu=0\n taskname=sh\n",
            95_000_000 + i
        );
        all.extend(c.ingest(ip(), d.as_bytes(), t));
    }
    let crashes: Vec<_> = all
        .iter()
        .filter_map(|(_, e)| match e {
            ConsoleEvent::Crash { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        crashes,
        vec![
            "sysrq: Trigger a crash",
            "Kernel panic - not syncing: sysrq triggered crash"
        ]
    );
    assert_eq!(lines(&all).len(), block.len());
    // The same block over plain netconsole, in arbitrary datagram cuts.
    let text: String = block
        .iter()
        .enumerate()
        .map(|(i, l)| format!("[   95.{:06}] {l}\n", i))
        .collect();
    let mut c = Collector::default();
    let mut all = Vec::new();
    for chunk in text.as_bytes().chunks(37) {
        all.extend(c.ingest(ip(), chunk, t));
    }
    assert_eq!(lines(&all).len(), block.len());
    let n = all
        .iter()
        .filter(|(_, e)| matches!(e, ConsoleEvent::Crash { .. }))
        .count();
    assert_eq!(n, 2);
}

proptest! {
    #[test]
    fn never_panics_on_any_datagram(
        dgrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1200), 0..30),
        steps in proptest::collection::vec(0u64..3000, 0..30),
    ) {
        let mut c = Collector::new(Limits { max_sources: 2, max_fragmented: 3, ..Limits::default() });
        let t = Instant::now();
        for (i, d) in dgrams.iter().enumerate() {
            let src = IpAddr::from([198, 18, 0, (i % 3) as u8]);
            let now = t + Duration::from_millis(steps.get(i).copied().unwrap_or(0));
            let _ = c.ingest(src, d, now);
            let _ = c.tick(now);
        }
    }

    #[test]
    fn never_panics_on_header_like_datagrams(
        pre in "[0-9.]{0,6}", prefix in "[0-9]{0,5}", seq in "[0-9]{0,21}", ts in "[0-9]{0,21}",
        flag in "[-c+]{0,2}", off in 0usize..3000, total in 0usize..3000, body in ".{0,40}",
        with_frag in any::<bool>(),
    ) {
        let mut c = Collector::default();
        let t = Instant::now();
        let frag = if with_frag { format!(",ncfrag={off}/{total}") } else { String::new() };
        let d = format!("{pre},{prefix},{seq},{ts},{flag}{frag};{body}\n msgid={off}\n");
        let _ = c.ingest(ip(), d.as_bytes(), t);
        let d = format!("{prefix},{seq},{ts},{flag}{frag};{body}");
        let _ = c.ingest(ip(), d.as_bytes(), t);
        let _ = c.tick(t + Duration::from_secs(10));
    }

    #[test]
    fn drops_swaps_and_duplicates_account_exactly(
        n in 3usize..120,
        drop_mask in proptest::collection::vec(any::<bool>(), 120),
        swap_mask in proptest::collection::vec(any::<bool>(), 120),
        dup_mask in proptest::collection::vec(any::<bool>(), 120),
        with_msgid in any::<bool>(),
    ) {
        // Keep the first and last record so every loss is a gap between two records.
        let kept: Vec<u64> = (0..n as u64)
            .filter(|&i| i == 0 || i == n as u64 - 1 || !drop_mask[i as usize])
            .collect();
        let mut wire: Vec<u64> = Vec::new();
        for (k, &s) in kept.iter().enumerate() {
            wire.push(s);
            if dup_mask[k] {
                wire.push(s);
            }
        }
        for (k, &swap) in swap_mask.iter().enumerate().take(wire.len() - 1).skip(1) {
            if swap {
                wire.swap(k, k + 1);
            }
        }
        // The first record on the wire must stay the lowest (a stream starts where it starts).
        let first = wire.iter().position(|&s| s == 0).unwrap();
        wire.swap(0, first);
        let mut c = Collector::default();
        let t = Instant::now();
        let mut all = Vec::new();
        for &s in &wire {
            let d = if with_msgid {
                format!("6,{},{},-;m\n msgid={}\n", 500 + s, 1000 + s, s).into_bytes()
            } else {
                ext(500 + s, 1000 + s, "m")
            };
            all.extend(c.ingest(ip(), &d, t));
        }
        all.extend(c.tick(t + Duration::from_secs(1)));
        let expect: Vec<u64> = kept.iter().map(|s| 500 + s).collect();
        prop_assert_eq!(seqs(&all), expect);
        prop_assert_eq!(lost(&all), (n - kept.len()) as u64);
        prop_assert!(!all.iter().any(|(_, e)| *e == ConsoleEvent::Rebooted));
        prop_assert_eq!(c.stats(ip()).unwrap().duplicates, (wire.len() - kept.len()) as u64);
    }

    #[test]
    fn every_record_comes_out_once_in_any_order(perm in Just((0u64..40).collect::<Vec<_>>()).prop_shuffle()) {
        let mut c = Collector::default();
        let t = Instant::now();
        let mut all = c.ingest(ip(), &ext(1000, 1, "first"), t);
        for s in &perm {
            all.extend(c.ingest(ip(), &ext(1001 + s, 2 + s, "m"), t));
        }
        all.extend(c.tick(t + Duration::from_secs(1)));
        let got = seqs(&all);
        prop_assert_eq!(got, (1000..1041).collect::<Vec<_>>());
        prop_assert_eq!(lost(&all), 0);
    }
}
