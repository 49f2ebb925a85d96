//! Session tests without sockets: a pure model of the RHEL 4 client and a lossy, duplicating,
//! reordering "network" driven in virtual time.

use super::*;
use crate::wire::{Reply, Request, cmd, code};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

/// The RHEL 4 client: START until ACK, then answers each request once, never retransmits.
struct Client {
    nr_pages: u32,
    page_size: u32,
    /// pfn ranges that are not RAM
    holes: Vec<(u32, u32)>,
    magic: u64,
    in_loop: bool,
    rebooted: u32,
    show_state_seen: u32,
    log_offset: u32,
}

const REGS_TEXT: &[u8] = b"Sending register info.\n";

impl Client {
    fn new(nr_pages: u32) -> Client {
        Client {
            nr_pages,
            page_size: 4096,
            holes: vec![],
            magic: 0x1234_5678_9abc_def0,
            in_loop: false,
            rebooted: 0,
            show_state_seen: 0,
            log_offset: 0,
        }
    }

    fn is_ram(&self, pfn: u32) -> bool {
        !self.holes.iter().any(|&(a, b)| pfn >= a && pfn < b)
    }

    fn page(&self, pfn: u32) -> Vec<u8> {
        let mut p = vec![0u8; self.page_size as usize];
        if !pfn.is_multiple_of(3) {
            for (i, b) in p.iter_mut().enumerate() {
                *b = (pfn as usize * 31 + i * 7) as u8;
            }
        }
        p
    }

    fn start(&self) -> Vec<u8> {
        let text = format!(
            "task_struct:0xffff810012345678 page_offset:0xffff810000000000 netdump_magic:0x{:x}\n",
            self.magic
        );
        reply(4, 62, code::START_NETDUMP, 5, text.as_bytes())
    }

    fn on_request(&mut self, b: &[u8]) -> Vec<Vec<u8>> {
        let r = Request::decode(b).unwrap();
        if !self.in_loop {
            if r.command == cmd::START_NETDUMP_ACK {
                self.in_loop = true;
            }
            return vec![];
        }
        match r.command {
            cmd::SEND_MEM => {
                let pfn = r.from;
                if pfn >= self.nr_pages {
                    return vec![reply(5, r.nr, code::ERROR, 0, b"page too big\n")];
                }
                if !self.is_ram(pfn) {
                    let next = (pfn + 1..self.nr_pages)
                        .find(|&p| self.is_ram(p))
                        .unwrap_or(0);
                    return vec![reply(5, r.nr, code::RESERVED, next, b"")];
                }
                let page = self.page(pfn);
                page.chunks(1024)
                    .enumerate()
                    .map(|(i, c)| reply(5, r.nr, code::MEM, (i * 1024) as u32, c))
                    .collect()
            }
            cmd::GET_PAGE_SIZE => vec![reply(5, r.nr, code::PAGE_SIZE, self.page_size, b"")],
            cmd::GET_NR_PAGES => vec![reply(5, r.nr, code::NR_PAGES, self.nr_pages, b"")],
            cmd::GET_REGS => {
                let mut p = REGS_TEXT.to_vec();
                p.extend((0..216).map(|i| i as u8));
                vec![reply(5, r.nr, code::REGS, 1000, &p)]
            }
            cmd::SHOW_STATE => {
                self.show_state_seen += 1;
                let mut v = vec![reply(5, r.nr, code::SHOW_STATE, 0, b"")];
                for _ in 0..3 {
                    let t = b"task list line\n";
                    v.push(reply(4, 0, code::LOG, self.log_offset, t));
                    self.log_offset += t.len() as u32;
                }
                v
            }
            cmd::REBOOT => {
                self.rebooted += 1;
                vec![]
            }
            c => vec![reply(5, r.nr, code::ERROR, c, b"unknown\n")],
        }
    }
}

fn reply(version: u8, nr: u32, c: u32, info: u32, payload: &[u8]) -> Vec<u8> {
    Reply {
        version,
        nr,
        code: c,
        info,
        payload,
    }
    .encode()
}

#[derive(Clone, Copy, Default)]
struct Net {
    loss: f64,
    dup: f64,
    reorder: f64,
}

impl Net {
    fn carry(&self, rng: &mut SmallRng, q: &mut VecDeque<Vec<u8>>, pkts: Vec<Vec<u8>>) {
        for p in pkts {
            if rng.random_bool(self.loss) {
                continue;
            }
            if rng.random_bool(self.dup) {
                q.push_back(p.clone());
            }
            if rng.random_bool(self.reorder) && !q.is_empty() {
                let at = rng.random_range(0..q.len());
                q.insert(at, p);
            } else {
                q.push_back(p);
            }
        }
    }
}

struct Outcome {
    pages: BTreeMap<u32, Vec<u8>>,
    opened: Option<CoreHeader>,
    finished: Vec<bool>,
    events: Vec<EventKind>,
    hooks: Vec<(&'static str, Vec<String>)>,
    closed: bool,
    space_asked: bool,
    client: Client,
    progress: Progress,
}

fn tuning() -> Tuning {
    Tuning {
        window: 16,
        log_idle_timeout: Duration::from_millis(300),
        ..Tuning::default()
    }
}

/// Runs a session against the model client until it closes (or 120 s of virtual time).
fn drive(
    client: Client,
    security: Security,
    admission: Admission,
    t: Tuning,
    net: Net,
    space_ok: bool,
    seed: u64,
) -> Outcome {
    drive_ext(
        client,
        security,
        admission,
        t,
        net,
        space_ok,
        seed,
        &mut Ctl::default(),
    )
}

/// What the server side does besides carrying packets, for the writer/space/timer tests.
#[derive(Default)]
struct Ctl {
    /// Tick only when `poll_timeout` says so (else every virtual millisecond).
    tick_on_deadline: bool,
    /// Never answer the space check.
    no_space_answer: bool,
    /// Write backlog the "writer" reports, from (pages written so far, ms since start).
    backlog: Option<Box<dyn FnMut(usize, u64) -> usize>>,
    /// Report a failed write once this many pages were written.
    fail_at_page: Option<usize>,
    /// SEND_MEM requests sent while the backlog was at or above the limit.
    sent_while_paused: usize,
    ticks: u64,
}

#[allow(clippy::too_many_arguments)]
fn drive_ext(
    mut client: Client,
    security: Security,
    admission: Admission,
    t: Tuning,
    net: Net,
    space_ok: bool,
    seed: u64,
    ctl: &mut Ctl,
) -> Outcome {
    let backlog_max = t.write_backlog_max;
    let mut rng = SmallRng::seed_from_u64(seed);
    let t0 = Instant::now();
    let mut now = t0;
    let mut s = Session::new(
        Ipv4Addr::new(198, 18, 0, 9),
        PathBuf::from("/var/crash/198.18.0.9-x"),
        security,
        admission,
        t,
        now,
    );
    let mut to_client: VecDeque<Vec<u8>> = VecDeque::new();
    let mut to_server: VecDeque<Vec<u8>> = VecDeque::new();
    let mut out = Outcome {
        pages: BTreeMap::new(),
        opened: None,
        finished: vec![],
        events: vec![],
        hooks: vec![],
        closed: false,
        space_asked: false,
        client: Client::new(0),
        progress: Progress::default(),
    };
    let mut last_start = None::<Instant>;
    let mut pending_space = false;
    let mut actions = Vec::new();
    while now < t0 + Duration::from_secs(120) && !out.closed {
        // The client sends START about once a second until ACKed.
        if !client.in_loop && last_start.is_none_or(|l| now >= l + Duration::from_secs(1)) {
            last_start = Some(now);
            let st = client.start();
            net.carry(&mut rng, &mut to_server, vec![st]);
        }
        if pending_space && !ctl.no_space_answer {
            pending_space = false;
            s.handle_into(Input::SpaceChecked { ok: space_ok }, now, &mut actions);
        }
        let ms = now.duration_since(t0).as_millis() as u64;
        let backlog = ctl.backlog.as_mut().map_or(0, |f| f(out.pages.len(), ms));
        s.set_write_backlog(backlog);
        if ctl.fail_at_page.is_some_and(|n| out.pages.len() >= n) {
            ctl.fail_at_page = None;
            s.handle_into(Input::WriteFailed("disk full"), now, &mut actions);
        }
        // deliver a few packets each way per step
        for _ in 0..64 {
            let Some(p) = to_server.pop_front() else {
                break;
            };
            match crate::wire::classify(&p) {
                crate::wire::Datagram::Netdump(r) => {
                    s.handle_into(Input::Reply(r), now, &mut actions)
                }
                crate::wire::Datagram::NetLog { .. } => {
                    s.handle_into(Input::Log, now, &mut actions)
                }
                _ => panic!("client sent console text"),
            }
        }
        if !ctl.tick_on_deadline || s.poll_timeout().is_some_and(|d| d <= now) {
            ctl.ticks += 1;
            s.handle_into(Input::Tick, now, &mut actions);
        }
        for a in actions.drain(..) {
            match a {
                Action::Send(r) => {
                    if r.command == cmd::SEND_MEM && backlog >= backlog_max {
                        ctl.sent_while_paused += 1;
                    }
                    let b = r.encode();
                    let mut delivered = VecDeque::new();
                    net.carry(&mut rng, &mut delivered, vec![b.to_vec()]);
                    for d in delivered {
                        to_client.push_back(d);
                    }
                }
                Action::OpenDump(h) => out.opened = Some(h),
                Action::WritePage { pfn, data } => {
                    out.pages.insert(pfn, data);
                }
                Action::CheckSpace { .. } => {
                    out.space_asked = true;
                    pending_space = true;
                }
                Action::FinishDump { complete } => out.finished.push(complete),
                Action::RunHook { name, args } => out.hooks.push((name, args)),
                Action::Emit { kind, .. } => out.events.push(kind),
                Action::Log { .. } => {}
                Action::Restart => panic!("unexpected restart"),
                Action::Close => out.closed = true,
            }
        }
        while let Some(req) = to_client.pop_front() {
            let replies = client.on_request(&req);
            net.carry(&mut rng, &mut to_server, replies);
        }
        now += Duration::from_millis(1);
    }
    out.progress = s.progress();
    out.client = client;
    out
}

fn expect_identical(o: &Outcome, c: &Client, skip_zero: bool) {
    assert_eq!(o.finished, vec![true], "dump must finish complete");
    for pfn in 0..c.nr_pages {
        let want = c.page(pfn);
        let zero = want.iter().all(|&b| b == 0);
        match o.pages.get(&pfn) {
            Some(got) => {
                assert!(c.is_ram(pfn), "hole pfn {pfn} written");
                assert_eq!(got, &want, "pfn {pfn} differs");
            }
            None => assert!(
                !c.is_ram(pfn) || (skip_zero && zero),
                "pfn {pfn} missing (ram {}, zero {zero})",
                c.is_ram(pfn)
            ),
        }
    }
    assert!(o.closed);
    assert!(o.client.rebooted >= 1);
    assert_eq!(
        o.events,
        vec![
            EventKind::Crash,
            EventKind::DumpStarted,
            EventKind::DumpComplete
        ]
    );
}

#[test]
fn clean_dump_is_complete_and_identical() {
    let c = Client::new(200);
    let o = drive(
        Client::new(200),
        Security::Insecure,
        Admission::Dump,
        tuning(),
        Net::default(),
        true,
        1,
    );
    expect_identical(&o, &c, false);
    assert_eq!(o.client.show_state_seen, 1, "SHOW_STATE sent once");
    assert_eq!(o.client.rebooted, 5, "REBOOT repeated 5 times");
    let h = o.opened.unwrap();
    assert_eq!(h.page_size, 4096);
    assert_eq!(o.progress.retransmits, 0);
    let names: Vec<_> = o.hooks.iter().map(|h| h.0).collect();
    assert_eq!(names, vec!["netdump-crash", "netdump-reboot"]);
    assert_eq!(o.hooks[0].1[0], "198.18.0.9");
    assert_eq!(o.hooks[0].1[1], "/var/crash/198.18.0.9-x");
}

#[test]
fn loss_duplicates_and_reordering_still_give_identical_pages() {
    for seed in 0..6 {
        let mut c = Client::new(300);
        c.holes = vec![(10, 20), (100, 150)];
        let mut model = Client::new(300);
        model.holes = c.holes.clone();
        let o = drive(
            c,
            Security::Insecure,
            Admission::Dump,
            tuning(),
            Net {
                loss: 0.05,
                dup: 0.05,
                reorder: 0.05,
            },
            true,
            seed,
        );
        expect_identical(&o, &model, false);
        assert!(
            o.progress.retransmits > 0,
            "seed {seed}: loss must cause retransmits"
        );
    }
}

#[test]
fn reserved_holes_jump_and_trailing_hole_ends_dump() {
    let mut c = Client::new(400);
    c.holes = vec![(0, 5), (50, 250), (300, 400)];
    let mut model = Client::new(400);
    model.holes = c.holes.clone();
    let o = drive(
        c,
        Security::Insecure,
        Admission::Dump,
        tuning(),
        Net::default(),
        true,
        3,
    );
    expect_identical(&o, &model, false);
    assert_eq!(o.pages.len(), 45 + 50);
}

#[test]
fn skip_zero_leaves_zero_pages_out() {
    let c = Client::new(60);
    let o = drive(
        Client::new(60),
        Security::Insecure,
        Admission::Dump,
        Tuning {
            skip_zero: true,
            ..tuning()
        },
        Net::default(),
        true,
        4,
    );
    expect_identical(&o, &c, true);
    assert_eq!(o.pages.len(), 40);
    assert_eq!(o.progress.zero_pages, 20);
}

#[test]
fn error_reply_ends_memory_phase() {
    // The client has fewer pages than it claims: pfns ≥ 80 answer ERROR.
    let mut c = Client::new(80);
    let mut t = tuning();
    t.window = 4;
    let now = Instant::now();
    let mut s = Session::new(
        Ipv4Addr::new(198, 18, 0, 9),
        PathBuf::from("/d"),
        Security::Insecure,
        Admission::Dump,
        t,
        now,
    );
    let st = c.start();
    let mut acts = s.handle(Input::Reply(Reply::decode(&st).unwrap()), now);
    c.in_loop = true;
    let mut writes = 0;
    let mut finished = vec![];
    for _ in 0..10_000 {
        let mut next = Vec::new();
        for a in acts.drain(..) {
            match a {
                Action::Send(r) => {
                    let b = r.encode();
                    if r.command == cmd::GET_NR_PAGES {
                        // overstated: the session will ask for pfns up to 120
                        let rep = reply(5, r.nr, code::NR_PAGES, 120, b"");
                        next.push(rep);
                        continue;
                    }
                    if r.command == cmd::START_NETDUMP_ACK {
                        continue;
                    }
                    next.extend(c.on_request(&b));
                }
                Action::CheckSpace { .. } => {
                    next.push(vec![]); // marker: space ok
                }
                Action::WritePage { .. } => writes += 1,
                Action::FinishDump { complete } => finished.push(complete),
                _ => {}
            }
        }
        if next.is_empty() {
            break;
        }
        for p in next {
            if p.is_empty() {
                acts.extend(s.handle(Input::SpaceChecked { ok: true }, now));
            } else {
                acts.extend(s.handle(Input::Reply(Reply::decode(&p).unwrap()), now));
            }
        }
    }
    assert_eq!(finished, vec![true]);
    assert_eq!(writes, 80);
}

#[test]
fn client_silent_mid_dump_gives_up_and_keeps_incomplete() {
    let now = Instant::now();
    let mut t = tuning();
    t.silence_timeout = Duration::from_secs(5);
    let mut s = Session::new(
        Ipv4Addr::new(198, 18, 0, 9),
        PathBuf::from("/d"),
        Security::Insecure,
        Admission::Dump,
        t,
        now,
    );
    let c = Client::new(100);
    s.handle(Input::Reply(Reply::decode(&c.start()).unwrap()), now);
    for (cd, info, p) in [
        (code::PAGE_SIZE, 4096u32, vec![]),
        (code::NR_PAGES, 100, vec![]),
        (code::REGS, 0, b"Sending register info.\nxx".to_vec()),
    ] {
        s.handle(
            Input::Reply(Reply::decode(&reply(5, 1, cd, info, &p)).unwrap()),
            now,
        );
    }
    let a = s.handle(Input::SpaceChecked { ok: true }, now);
    assert!(a.iter().any(|a| matches!(a, Action::OpenDump(_))));
    let sends = a.iter().filter(|a| matches!(a, Action::Send(_))).count();
    assert_eq!(sends, 16, "window of SEND_MEM requests");
    let mut all = vec![];
    for ms in (0..8000).step_by(10) {
        all.extend(s.handle(Input::Tick, now + Duration::from_millis(ms)));
    }
    assert!(all.contains(&Action::FinishDump { complete: false }));
    assert!(all.iter().any(|a| matches!(
        a,
        Action::Emit {
            kind: EventKind::DumpFailed,
            ..
        }
    )));
    assert_eq!(all.last(), Some(&Action::Close));
    assert!(
        all.iter()
            .any(|a| matches!(a, Action::Send(r) if r.command == cmd::SEND_MEM))
    );
}

#[test]
fn handshake_repeats_ack_on_repeated_start_and_timeout() {
    let now = Instant::now();
    let mut s = Session::new(
        Ipv4Addr::new(198, 18, 0, 9),
        PathBuf::from("/d"),
        Security::Insecure,
        Admission::Dump,
        tuning(),
        now,
    );
    let c = Client::new(10);
    let st = c.start();
    let a = s.handle(Input::Reply(Reply::decode(&st).unwrap()), now);
    let acks: Vec<Request> = a
        .iter()
        .filter_map(|a| match a {
            Action::Send(r) if r.command == cmd::START_NETDUMP_ACK => Some(*r),
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].from, 5, "ACK carries protocol version 5");
    assert_eq!(acks[0].magic, 0x1234_5678_9abc_def0, "magic echoed");
    let a = s.handle(Input::Reply(Reply::decode(&st).unwrap()), now);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Send(r) if r.command == cmd::START_NETDUMP_ACK))
    );
    assert_eq!(a.iter().filter(|a| matches!(a, Action::Send(_))).count(), 4);
    let a = s.handle(Input::Tick, now + Duration::from_millis(1500));
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Send(r) if r.command == cmd::START_NETDUMP_ACK))
    );
}

#[test]
fn wrong_or_missing_magic_in_secure_mode_is_refused() {
    for expected in [Some(0xdead_beefu64), None] {
        let o = drive(
            Client::new(20),
            Security::Expect(expected),
            Admission::Dump,
            tuning(),
            Net::default(),
            true,
            5,
        );
        assert!(o.opened.is_none());
        assert!(o.pages.is_empty());
        assert!(o.events.is_empty());
        assert!(o.hooks.is_empty());
        assert!(!o.client.in_loop, "client left alone: never ACKed");
        assert!(o.closed, "rejected session closes after the hold time");
    }
    let o = drive(
        Client::new(20),
        Security::Expect(Some(0x1234_5678_9abc_def0)),
        Admission::Dump,
        tuning(),
        Net::default(),
        true,
        5,
    );
    expect_identical(&o, &Client::new(20), false);
}

#[test]
fn over_concurrency_limit_reboots_without_dump() {
    let o = drive(
        Client::new(20),
        Security::Insecure,
        Admission::RebootOnly,
        tuning(),
        Net::default(),
        true,
        6,
    );
    assert!(o.opened.is_none() && o.pages.is_empty() && !o.space_asked);
    assert_eq!(o.events, vec![EventKind::Crash, EventKind::DumpFailed]);
    assert_eq!(o.client.show_state_seen, 1);
    assert_eq!(o.client.rebooted, 5);
}

#[test]
fn no_space_skips_memory_but_collects_log_and_reboots() {
    let o = drive(
        Client::new(20),
        Security::Insecure,
        Admission::Dump,
        tuning(),
        Net::default(),
        false,
        7,
    );
    assert!(o.space_asked);
    assert!(o.opened.is_none() && o.pages.is_empty());
    assert_eq!(o.events, vec![EventKind::Crash, EventKind::DumpFailed]);
    assert_eq!(o.client.show_state_seen, 1);
    assert_eq!(o.client.rebooted, 5);
}

#[test]
fn start_mid_dump_after_silence_restarts_but_late_duplicate_is_ignored() {
    let now = Instant::now();
    let mut s = Session::new(
        Ipv4Addr::new(198, 18, 0, 9),
        PathBuf::from("/d"),
        Security::Insecure,
        Admission::Dump,
        tuning(),
        now,
    );
    let c = Client::new(100);
    let st = c.start();
    s.handle(Input::Reply(Reply::decode(&st).unwrap()), now);
    for (cd, info) in [
        (code::PAGE_SIZE, 4096u32),
        (code::NR_PAGES, 100),
        (code::REGS, 0),
    ] {
        s.handle(
            Input::Reply(Reply::decode(&reply(5, 1, cd, info, b"x\n")).unwrap()),
            now,
        );
    }
    s.handle(Input::SpaceChecked { ok: true }, now);
    assert!(s.holds_dump_slot());
    // a late duplicate START while replies flow: ignored
    let a = s.handle(
        Input::Reply(Reply::decode(&st).unwrap()),
        now + Duration::from_millis(10),
    );
    assert!(a.is_empty(), "{a:?}");
    // silence, then START: the box crashed again
    let a = s.handle(
        Input::Reply(Reply::decode(&st).unwrap()),
        now + Duration::from_secs(3),
    );
    assert!(a.contains(&Action::FinishDump { complete: false }));
    assert_eq!(a.last(), Some(&Action::Restart));
    assert!(s.is_done());
}

#[test]
fn holds_slot_only_while_dumping() {
    let now = Instant::now();
    let s = Session::new(
        Ipv4Addr::LOCALHOST,
        PathBuf::from("/d"),
        Security::Insecure,
        Admission::RebootOnly,
        tuning(),
        now,
    );
    assert!(!s.holds_dump_slot());
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Regression seeds live beside this file (crates/proto/src/session/tests.proptest-regressions).
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
            )),
            ..ProptestConfig::default()
        })]

        /// Arbitrary datagrams and ticks never panic the session, in any phase.
        #[test]
        fn arbitrary_input_never_panics(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1100), 0..40),
            headers in proptest::collection::vec((3u8..=5, any::<u32>(), 0u32..=12, any::<u32>(), 0usize..1100), 0..80),
            secure in any::<bool>(),
        ) {
            let now = Instant::now();
            let sec = if secure { Security::Expect(Some(1)) } else { Security::Insecure };
            let mut s = Session::new(Ipv4Addr::LOCALHOST, PathBuf::from("/d"), sec, Admission::Dump, tuning(), now);
            let c = Client::new(8);
            s.handle(Input::Reply(Reply::decode(&c.start()).unwrap()), now);
            let mut t = now;
            for (v, nr, cd, info, len) in headers {
                let payload = vec![0x41u8; len.min(1024)];
                let b = reply(v, nr, cd, info, &payload);
                if let Ok(r) = Reply::decode(&b) {
                    s.handle(Input::Reply(r), t);
                }
                s.handle(Input::SpaceChecked { ok: true }, t);
                t += Duration::from_millis(7);
                s.handle(Input::Tick, t);
            }
            for f in frames {
                if let crate::wire::Datagram::Netdump(r) = crate::wire::classify(&f) {
                    s.handle(Input::Reply(r), t);
                }
                s.handle(Input::Log, t);
                t += Duration::from_millis(300);
                s.handle(Input::Tick, t);
            }
        }
    }
}

#[test]
fn ticking_only_at_poll_timeout_still_recovers_losses() {
    for seed in 0..3 {
        let mut c = Client::new(300);
        c.holes = vec![(40, 60)];
        let mut model = Client::new(300);
        model.holes = c.holes.clone();
        let mut ctl = Ctl {
            tick_on_deadline: true,
            ..Ctl::default()
        };
        let o = drive_ext(
            c,
            Security::Insecure,
            Admission::Dump,
            tuning(),
            Net {
                loss: 0.05,
                dup: 0.02,
                reorder: 0.05,
            },
            true,
            seed,
            &mut ctl,
        );
        expect_identical(&o, &model, false);
        // Far fewer wake-ups than one per virtual millisecond.
        assert!(ctl.ticks < 20_000, "ticks {}", ctl.ticks);
    }
}

#[test]
fn lone_start_draws_few_datagrams_and_is_dropped_quickly() {
    let t0 = Instant::now();
    let mut s = Session::new(
        Ipv4Addr::new(198, 18, 0, 9),
        PathBuf::from("/d"),
        Security::Insecure,
        Admission::Dump,
        tuning(),
        t0,
    );
    let st = Client::new(10).start();
    let mut sent = 0;
    let mut other = vec![];
    let mut closed_at = None;
    // A spoofer repeats the START every 100 ms for 20 s; the "client" never answers.
    for ms in 0..20_000u64 {
        let now = t0 + Duration::from_millis(ms);
        let mut a = vec![];
        if ms % 100 == 0 {
            s.handle_into(Input::Reply(Reply::decode(&st).unwrap()), now, &mut a);
        }
        s.handle_into(Input::Tick, now, &mut a);
        for x in a {
            match x {
                Action::Send(_) => sent += 1,
                Action::Close => closed_at = closed_at.or(Some(ms)),
                x => other.push(x),
            }
        }
        if s.is_done() {
            break;
        }
    }
    assert!(
        sent <= 4 * 3,
        "{sent} datagrams answered an unanswered START"
    );
    let closed = closed_at.expect("reclaimed");
    assert!(
        closed <= 5_000,
        "reclaimed after {closed} ms of virtual time"
    );
    assert!(
        !other
            .iter()
            .any(|a| matches!(a, Action::Emit { .. } | Action::RunHook { .. })),
        "a lone START must not emit events or run hooks: {other:?}"
    );
}

#[test]
fn write_failure_ends_the_dump_as_failed_never_complete() {
    let mut ctl = Ctl {
        fail_at_page: Some(50),
        ..Ctl::default()
    };
    let o = drive_ext(
        Client::new(200),
        Security::Insecure,
        Admission::Dump,
        tuning(),
        Net::default(),
        true,
        3,
        &mut ctl,
    );
    assert_eq!(o.finished, vec![false], "vmcore-incomplete kept");
    assert_eq!(
        o.events,
        vec![
            EventKind::Crash,
            EventKind::DumpStarted,
            EventKind::DumpFailed
        ]
    );
    assert!(!o.progress.complete);
    assert!(o.closed && o.client.rebooted >= 1, "client still rebooted");
    assert!(o.pages.len() < 200);
}

#[test]
fn slow_writer_pauses_requests_then_the_dump_completes() {
    // The writer is "behind" from 30 to 60 virtual seconds: no page is requested then.
    let mut ctl = Ctl {
        backlog: Some(Box::new(|_, ms| {
            if (30..60_000).contains(&ms) {
                10_000
            } else {
                0
            }
        })),
        ..Ctl::default()
    };
    let c = Client::new(3000);
    let mut t = tuning();
    t.silence_timeout = Duration::from_secs(5);
    let o = drive_ext(
        Client::new(3000),
        Security::Insecure,
        Admission::Dump,
        t,
        Net::default(),
        true,
        4,
        &mut ctl,
    );
    expect_identical(&o, &c, false);
    assert_eq!(ctl.sent_while_paused, 0);
}

#[test]
fn stuck_writer_fails_the_dump_after_its_deadline() {
    let mut ctl = Ctl {
        backlog: Some(Box::new(|pages, _| if pages >= 20 { 10_000 } else { 0 })),
        ..Ctl::default()
    };
    let mut t = tuning();
    t.write_stall_timeout = Duration::from_secs(10);
    let o = drive_ext(
        Client::new(500),
        Security::Insecure,
        Admission::Dump,
        t,
        Net::default(),
        true,
        5,
        &mut ctl,
    );
    assert_eq!(o.finished, vec![false]);
    assert_eq!(o.events.last(), Some(&EventKind::DumpFailed));
    assert!(o.closed);
    assert_eq!(ctl.sent_while_paused, 0);
}

#[test]
fn unanswered_space_check_has_a_deadline() {
    let mut ctl = Ctl {
        no_space_answer: true,
        ..Ctl::default()
    };
    let mut t = tuning();
    t.space_timeout = Duration::from_secs(3);
    let o = drive_ext(
        Client::new(20),
        Security::Insecure,
        Admission::Dump,
        t,
        Net::default(),
        true,
        6,
        &mut ctl,
    );
    assert!(o.space_asked && o.opened.is_none());
    assert_eq!(o.events, vec![EventKind::Crash, EventKind::DumpFailed]);
    assert!(o.closed && o.client.rebooted >= 1);
}
