//! Tests on console text written for them (the shapes the kernel prints, with made-up
//! functions), never copied from a corpus.

use proptest::prelude::*;

use super::*;

/// How each line of a synthetic log is prefixed.
#[derive(Debug, Clone, Copy)]
enum Prefix {
    None,
    Time,
    TimeCaller,
    Netconsole,
    Syslog,
}

/// Renders message lines as a console would: prefix, timestamps from `t0`, CRLF if asked.
fn render(msgs: &[String], prefix: Prefix, t0: f64, crlf: bool) -> String {
    let mut out = String::new();
    for (i, m) in msgs.iter().enumerate() {
        let t = t0 + i as f64 * 0.000137;
        let line = match prefix {
            Prefix::None => m.clone(),
            Prefix::Time => format!("[{t:>12.6}] {m}"),
            Prefix::TimeCaller => format!("[{t:>12.6}][  T4242] {m}"),
            Prefix::Netconsole => format!("4,{},{},-;{m}", 1000 + i, (t * 1e6) as u64),
            Prefix::Syslog => format!("<4>[{t:>12.6}] {m}"),
        };
        out.push_str(&line);
        out.push_str(if crlf { "\r\n" } else { "\n" });
    }
    out
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A NULL dereference as x86-64 kernels of the 5.x/6.x era print it; `base` stands in for the
/// KASLR-shifted kernel addresses, `pid`/`comm` for the task.
fn null_deref(base: u64, pid: u32, comm: &str) -> Vec<String> {
    let a = |off: u64| format!("{:016x}", base + off);
    vec![
        "BUG: kernel NULL pointer dereference, address: 0000000000000010".into(),
        "#PF: supervisor read access in kernel mode".into(),
        "#PF: error_code(0x0000) - not-present page".into(),
        "PGD 0 P4D 0 ".into(),
        "Oops: 0000 [#1] PREEMPT SMP NOPTI".into(),
        format!("CPU: 3 PID: {pid} Comm: {comm} Tainted: G        W  OE     6.1.0-18-amd64 #1  Debian 6.1.76-1"),
        "Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014".into(),
        "RIP: 0010:widget_ioctl+0x2a/0x90 [widget]".into(),
        "Code: 48 8b 47 10 <48> 8b 40 08 c3 cc cc cc cc".into(),
        format!("RSP: 0018:ffffb2c1c0a4fd98 EFLAGS: 00010246"),
        format!("RAX: 0000000000000000 RBX: {} RCX: 0000000000000000", a(0x1234)),
        "Call Trace:".into(),
        " <TASK>".into(),
        " ? __die+0x23/0x70".into(),
        " ? page_fault_oops+0x171/0x4e0".into(),
        " ? exc_page_fault+0x7f/0x180".into(),
        " ? asm_exc_page_fault+0x26/0x30".into(),
        " ? widget_ioctl+0x2a/0x90 [widget]".into(),
        " widget_dispatch+0x51/0x120 [widget]".into(),
        " __x64_sys_ioctl+0x97/0xd0".into(),
        " do_syscall_64+0x5b/0xc0".into(),
        " entry_SYSCALL_64_after_hwframe+0x6e/0xd8".into(),
        format!("RIP: 0033:0x7f{:010x}", base & 0xffff_ffff),
        " </TASK>".into(),
        "Modules linked in: widget(OE) nfnetlink".into(),
        "CR2: 0000000000000010".into(),
        format!("---[ end trace {:016x} ]---", base ^ 0x5a5a),
        "Kernel panic - not syncing: Fatal exception".into(),
        format!("Kernel Offset: 0x{:x} from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)", base & 0xfff_ffff),
        "---[ end Kernel panic - not syncing: Fatal exception ]---".into(),
    ]
}

fn quiet(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("e1000e: eth{i} NIC Link is Up 1000 Mbps Full Duplex"))
        .collect()
}

fn one(text: &str) -> CrashReport {
    let r = analyze(text);
    assert_eq!(r.len(), 1, "{r:#?}");
    r.into_iter().next().unwrap()
}

#[test]
fn nothing_in_a_quiet_log() {
    let mut msgs = lines(&[
        "Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) #1 SMP",
        "Command line: BOOT_IMAGE=/vmlinuz root=/dev/vda1 console=ttyS0",
        "WARNING: /etc/ssh/moduli does not exist, using fixed modulus",
        "EXT4-fs (vda1): warning: mounting fs with errors, running e2fsck is recommended",
        "myprog[812]: segfault at 10 ip 000055d4c3a1b2c0 sp 00007ffc8 error 4 in myprog[55d4c3a1b000+2000]",
        "audit: type=1400 audit(1700000000.123:42): apparmor=\"DENIED\" operation=\"open\"",
        "rcu: Hierarchical RCU implementation.",
        "INFO: lockdep is turned off.",
    ]);
    msgs.extend(quiet(50));
    for p in [
        Prefix::None,
        Prefix::Time,
        Prefix::TimeCaller,
        Prefix::Netconsole,
    ] {
        assert!(analyze(&render(&msgs, p, 1.0, false)).is_empty(), "{p:?}");
    }
    assert!(analyze("").is_empty());
}

#[test]
fn null_dereference_fields() {
    let mut msgs = quiet(3);
    msgs.extend(null_deref(0xffffffff9a000000, 4321, "widgetd"));
    let r = one(&render(&msgs, Prefix::Time, 72.15, false));
    assert_eq!(
        r.title,
        "BUG: unable to handle kernel NULL pointer dereference in widget_ioctl"
    );
    assert_eq!(r.kind, "NULL-POINTER-DEREFERENCE");
    assert_eq!(r.guilty.as_deref(), Some("widget_ioctl"));
    assert_eq!(
        r.frames,
        [
            "widget_dispatch",
            "__x64_sys_ioctl",
            "do_syscall_64",
            "entry_SYSCALL_64_after_hwframe"
        ]
    );
    assert_eq!(r.kernel.as_deref(), Some("6.1.0-18-amd64"));
    assert_eq!(r.taint.as_deref(), Some("G        W  OE"));
    assert_eq!(
        (r.cpu, r.pid, r.comm.as_deref()),
        (Some(3), Some(4321), Some("widgetd"))
    );
    assert_eq!(r.line, 4, "the header is the 4th line");
    assert!(!r.corrupted);
    assert_eq!(r.signature.len(), 32);
}

#[test]
fn warning_with_panic_on_warn_is_one_crash() {
    let msgs = lines(&[
        "------------[ cut here ]------------",
        "WARNING: CPU: 0 PID: 77 at drivers/net/gizmo/core.c:412 gizmo_reset+0x1c4/0x200 [gizmo]",
        "Modules linked in: gizmo",
        "CPU: 0 PID: 77 Comm: kworker/0:2 Not tainted 6.6.9 #3",
        "Kernel panic - not syncing: kernel: panic_on_warn set ...",
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x48/0x70",
        " panic+0x340/0x3a0",
        " check_panic_on_warn+0x4e/0x60",
        " __warn+0xa1/0x160",
        " report_bug+0x17e/0x1b0",
        " handle_bug+0x3c/0x80",
        " exc_invalid_op+0x17/0x70",
        " asm_exc_invalid_op+0x1a/0x20",
        "RIP: 0010:gizmo_reset+0x1c4/0x200 [gizmo]",
        " gizmo_watchdog_work+0x33/0x60 [gizmo]",
        " process_one_work+0x171/0x340",
        " worker_thread+0x27b/0x3a0",
        " kthread+0xe5/0x120",
        " ret_from_fork+0x31/0x50",
        " </TASK>",
        "---[ end Kernel panic - not syncing: kernel: panic_on_warn set ... ]---",
    ]);
    let r = one(&render(&msgs, Prefix::TimeCaller, 30.02, true));
    assert_eq!(r.title, "WARNING in gizmo_reset");
    assert_eq!(r.kind, "WARNING");
    assert_eq!(r.kernel.as_deref(), Some("6.6.9"));
    assert_eq!(r.taint.as_deref(), Some(""));
    assert_eq!(r.line, 2);
}

#[test]
fn kasan_skips_the_reporting_machinery_and_string_helpers() {
    let msgs = lines(&[
        "==================================================================",
        "BUG: KASAN: slab-use-after-free in memcpy+0x20/0x60",
        "Read of size 8 at addr ffff888012345678 by task frobd/900",
        "",
        "CPU: 1 PID: 900 Comm: frobd Not tainted 6.8.0-rc1 #1",
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0xd9/0x1b0",
        " print_report+0xc4/0x620",
        " kasan_report+0xda/0x110",
        " kasan_check_range+0x100/0x1c0",
        " __asan_memcpy+0x23/0x60",
        " frob_copy_state.isra.0+0x8c/0x1d0",
        " frob_ioctl+0x2f1/0x4a0",
        " </TASK>",
        "",
        "Allocated by task 899:",
        " kasan_save_stack+0x33/0x50",
        " frob_open+0x41/0x90",
        "==================================================================",
    ]);
    let r = one(&render(&msgs, Prefix::Time, 5.0, false));
    assert_eq!(
        r.title,
        "KASAN: slab-use-after-free Read in frob_copy_state"
    );
    assert_eq!(r.kind, "KASAN-USE-AFTER-FREE-READ");
    assert!(
        !r.frames.contains(&"frob_open".to_string()),
        "allocation stack kept out"
    );
}

#[test]
fn sysrq_crash_has_its_own_title() {
    let msgs = lines(&[
        "sysrq: Trigger a crash",
        "Kernel panic - not syncing: sysrq triggered crash",
        "CPU: 2 PID: 1501 Comm: bash Not tainted 6.1.0-18-amd64 #1  Debian 6.1.76-1",
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x44/0x5c",
        " panic+0x118/0x2ed",
        " sysrq_handle_crash+0x16/0x20",
        " __handle_sysrq.cold+0x43/0x11b",
        " write_sysrq_trigger+0x24/0x40",
        " proc_reg_write+0x56/0xa0",
        " vfs_write+0xee/0x3d0",
        " ksys_write+0x6b/0xf0",
        " do_syscall_64+0x58/0xc0",
        " </TASK>",
        "Kernel Offset: 0x1a000000 from 0xffffffff81000000",
        "---[ end Kernel panic - not syncing: sysrq triggered crash ]---",
    ]);
    let r = one(&render(&msgs, Prefix::Time, 100.0, false));
    assert_eq!(r.title, "sysrq: Trigger a crash");
    assert_eq!(r.kind, "SYSRQ");
    assert_eq!(r.guilty.as_deref(), Some("sysrq_handle_crash"));
    assert_eq!(r.line, 1);
    // A sysrq-c of an older kernel (a NULL write in the handler) is still the sysrq crash.
    let old = lines(&[
        "SysRq : Trigger a crash",
        "BUG: unable to handle kernel NULL pointer dereference at           (null)",
        "IP: [<ffffffff8137e0a6>] sysrq_handle_crash+0x16/0x20",
        "Oops: 0002 [#1] SMP",
        "Call Trace:",
        " [<ffffffff8137e842>] __handle_sysrq+0x102/0x160",
        " [<ffffffff8137e8ef>] write_sysrq_trigger+0x4f/0x60",
    ]);
    let r = one(&render(&old, Prefix::Time, 9.0, false));
    assert_eq!(r.title, "sysrq: Trigger a crash");
}

#[test]
fn hung_task_names_the_waiter_not_the_scheduler() {
    let msgs = lines(&[
        "INFO: task ifup:2291 blocked for more than 122 seconds.",
        "      Not tainted 6.6.0 #1",
        "\"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message.",
        "task:ifup            state:D stack:0     pid:2291  ppid:1      flags:0x00004002",
        "Call Trace:",
        " <TASK>",
        " __schedule+0x3c1/0xbc0",
        " schedule+0x5d/0xe0",
        " schedule_preempt_disabled+0x15/0x30",
        " __mutex_lock.constprop.0+0x3a1/0x6c0",
        " netcfg_lock+0x12/0x20",
        " netcfg_apply+0x31/0x200",
        " __x64_sys_ioctl+0x97/0xd0",
        " </TASK>",
    ]);
    let r = one(&render(&msgs, Prefix::Time, 300.0, false));
    assert_eq!(r.title, "INFO: task hung in netcfg_lock");
    assert_eq!(r.kind, "HANG");
}

#[test]
fn rcu_stall_names_the_handler_the_syscall_dispatched_to() {
    let msgs = lines(&[
        "rcu: INFO: rcu_preempt self-detected stall on CPU",
        "rcu: \t0-....: (10500 ticks this GP) idle=7a4/1/0x4000000000000000",
        "NMI backtrace for cpu 0",
        "CPU: 0 PID: 3100 Comm: looper Not tainted 6.5.0 #2",
        "Call Trace:",
        " <IRQ>",
        " dump_stack_lvl+0x48/0x70",
        " nmi_cpu_backtrace+0xc8/0x100",
        " rcu_dump_cpu_stacks+0xe8/0x160",
        " rcu_sched_clock_irq+0x9a0/0xc40",
        " update_process_times+0x5f/0x90",
        " tick_sched_timer+0x74/0x90",
        " __hrtimer_run_queues+0x10e/0x2b0",
        " hrtimer_interrupt+0xf8/0x230",
        " __sysvec_apic_timer_interrupt+0x50/0x140",
        " sysvec_apic_timer_interrupt+0x6d/0x90",
        " </IRQ>",
        " <TASK>",
        " asm_sysvec_apic_timer_interrupt+0x1a/0x20",
        "RIP: 0010:ring_walk+0x21/0x40",
        "RSP: 0018:ffffb1c2c1d0bd40 EFLAGS: 00000246",
        " ring_scan+0x88/0x120",
        " ringdev_ioctl+0x3a/0x90",
        " __x64_sys_ioctl+0x97/0xd0",
        " do_syscall_64+0x5b/0xc0",
        " entry_SYSCALL_64_after_hwframe+0x6e/0xd8",
        " </TASK>",
    ]);
    let r = one(&render(&msgs, Prefix::Time, 400.0, false));
    assert_eq!(r.title, "INFO: rcu detected stall in ringdev_ioctl");
    assert!(r.frames.iter().any(|f| f == "ring_walk"), "{:?}", r.frames);
}

#[test]
fn memory_leak_names_the_owner_not_the_allocator() {
    let msgs = lines(&[
        "BUG: memory leak",
        "unreferenced object 0xffff888104b7a400 (size 512):",
        "  comm \"syncd\", pid 812, jiffies 4295020416 (age 12.410s)",
        "  hex dump (first 32 bytes):",
        "    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................",
        "  backtrace:",
        "    [<ffffffff8150a2f1>] kmalloc_trace+0x25/0x90",
        "    [<ffffffff8240ee10>] blob_alloc_ctx+0x30/0x90",
        "    [<ffffffff8240f101>] blob_attach+0x81/0x140",
        "    [<ffffffff8100e4a2>] do_syscall_64+0x35/0x80",
    ]);
    let r = one(&render(&msgs, Prefix::None, 0.0, false));
    assert_eq!(r.title, "memory leak in blob_attach");
    assert_eq!(
        r.frames[0], "kmalloc_trace",
        "the allocation backtrace is the trace"
    );
    assert_eq!(r.kind, "LEAK");
}

#[test]
fn lockdep_deadlock_names_the_lock_taker() {
    let msgs = lines(&[
        "======================================================",
        "WARNING: possible circular locking dependency detected",
        "6.6.0 #1 Not tainted",
        "------------------------------------------------------",
        "applier/501 is trying to acquire lock:",
        "ffff8881003c1230 (&cfg->mutex){+.+.}-{3:3}, at: cfg_commit+0x2a/0x130",
        "",
        "but task is already holding lock:",
        "ffff8881003c9870 (&tbl->lock){+.+.}-{3:3}, at: tbl_update+0x51/0x200",
    ]);
    let r = one(&render(&msgs, Prefix::Time, 1.0, false));
    assert_eq!(r.title, "possible deadlock in cfg_commit");
    assert_eq!(r.kind, "LOCKDEP");
}

#[test]
fn two_boots_two_crashes_in_order() {
    let mut msgs = lines(&["Linux version 6.1.0-18-amd64 (x@y) #1 SMP"]);
    msgs.extend(null_deref(0xffffffff9a000000, 10, "a"));
    msgs.push("Linux version 6.1.0-19-amd64 (x@y) #1 SMP".into());
    msgs.extend(quiet(5));
    msgs.extend(lines(&[
        "kernel BUG at fs/blobfs/inode.c:99!",
        "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
        "CPU: 0 PID: 9 Comm: b Not tainted 6.1.0-19-amd64 #1",
        "RIP: 0010:blobfs_evict+0x99/0xa0",
        "Call Trace:",
        " evict+0xcc/0x1d0",
        " blobfs_umount+0x31/0x60",
    ]));
    let r = analyze(&render(&msgs, Prefix::Time, 1.0, false));
    assert_eq!(r.len(), 2, "{r:#?}");
    assert!(r[0].title.ends_with("in widget_ioctl"));
    assert_eq!(r[1].title, "kernel BUG in blobfs_evict");
    assert_eq!(r[1].kernel.as_deref(), Some("6.1.0-19-amd64"));
    assert!(r[0].line < r[1].line);
}

#[test]
fn interleaved_cpus_keep_their_own_lines() {
    // Task T10 warns while task T20 oopses; their lines alternate on the console.
    let a = [
        "WARNING: CPU: 0 PID: 10 at net/x.c:1 alpha_send+0x1/0x2",
        "CPU: 0 PID: 10 Comm: a Not tainted 6.6.0 #1",
        "Call Trace:",
        " alpha_caller+0x1/0x2",
        " alpha_root+0x1/0x2",
    ];
    let b = [
        "general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1]",
        "CPU: 1 PID: 20 Comm: b Not tainted 6.6.0 #1",
        "RIP: 0010:beta_parse+0x1/0x2",
        "Call Trace:",
        " beta_caller+0x1/0x2",
    ];
    let mut text = String::new();
    for i in 0..5 {
        text.push_str(&format!("[   10.{i:06}][   T10] {}\n", a[i]));
        text.push_str(&format!("[   10.{i:06}][   T20] {}\n", b[i]));
    }
    let r = analyze(&text);
    assert_eq!(r[0].title, "WARNING in alpha_send");
    assert_eq!(r[0].frames, ["alpha_caller", "alpha_root"]);
    assert!(r[0].corrupted, "another report was interleaved");
}

#[test]
fn damaged_report_is_corrupted() {
    let msgs = lines(&[
        "------------[ cut here ]------------",
        "WARNING: CPU: 0 PID: 1 at mm/x.c:1 gamma_check+0x1/0x2",
    ]);
    let r = one(&render(&msgs, Prefix::Time, 1.0, false));
    assert_eq!(r.title, "WARNING in corrupted");
    assert!(r.corrupted);
}

#[test]
fn bounded_on_huge_and_hostile_input() {
    // Many crashes: only MAX_REPORTS are kept.
    let mut text = String::new();
    for i in 0..(MAX_REPORTS * 2) {
        text.push_str(&format!("Linux version 6.1.{i} (x@y)\n"));
        text.push_str(&render(
            &null_deref(0xffffffff80000000, i as u32, "x"),
            Prefix::Time,
            1.0,
            false,
        ));
    }
    let mut t = Triage::new();
    for l in text.lines() {
        t.feed_line(l);
    }
    assert_eq!(t.dropped, MAX_REPORTS);
    assert_eq!(t.finish().len(), MAX_REPORTS);
    // One endless report: kept lines are capped, the report is marked truncated.
    let mut text = String::from("BUG: sleeping function called from invalid context at x.c:1\n");
    for _ in 0..50_000 {
        text.push_str(" ? noise+0x1/0x2\n");
    }
    let r = analyze(&text);
    assert_eq!(r.len(), 1);
    assert!(r[0].corrupted);
    // A 4 MB line without a newline, and binary junk.
    let long = "A".repeat(4 << 20);
    assert!(analyze(&long).is_empty());
    let junk: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let _ = analyze_bytes(&junk);
}

fn arb_prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        Just(Prefix::None),
        Just(Prefix::Time),
        Just(Prefix::TimeCaller),
        Just(Prefix::Netconsole),
        Just(Prefix::Syslog),
    ]
}

proptest! {
    /// The signature of a crash does not depend on the host (pid, task name), the boot
    /// (KASLR base, timestamps), the console's line prefixes or line ends, or noise around it.
    #[test]
    fn signature_is_stable(
        base in (0u64..0x3f000u64).prop_map(|s| 0xffffffff80000000u64 + (s << 12)),
        pid in 1u32..4_000_000,
        comm in "[a-z][a-z0-9_-]{0,14}",
        prefix in arb_prefix(),
        t0 in 0.0f64..100000.0,
        crlf in any::<bool>(),
        noise in 0usize..20,
    ) {
        let reference = one(&render(&null_deref(0xffffffff81000000, 1, "init"), Prefix::Time, 1.0, false));
        let mut msgs = quiet(noise);
        msgs.extend(null_deref(base, pid, &comm));
        let r = one(&render(&msgs, prefix, t0, crlf));
        prop_assert_eq!(&r.title, &reference.title);
        prop_assert_eq!(&r.frames, &reference.frames);
        prop_assert_eq!(&r.signature, &reference.signature);
        prop_assert_eq!(r.line, noise + 1);
    }

    /// A different guilty function is a different crash.
    #[test]
    fn signature_separates_functions(name in "[a-z]{3,12}_[a-z]{3,12}") {
        prop_assume!(name != "widget_ioctl" && !is_generic(&name));
        let a = one(&render(&null_deref(0xffffffff81000000, 1, "x"), Prefix::Time, 1.0, false));
        let msgs: Vec<String> = null_deref(0xffffffff81000000, 1, "x")
            .into_iter()
            .map(|l| l.replace("widget_ioctl", &name))
            .collect();
        let b = one(&render(&msgs, Prefix::Time, 1.0, false));
        prop_assert_eq!(b.title, format!("BUG: unable to handle kernel NULL pointer dereference in {name}"));
        prop_assert_ne!(a.signature, b.signature);
    }

    /// Arbitrary bytes (not UTF-8, NULs, lone CRs) never panic either.
    #[test]
    fn arbitrary_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..4000)) {
        let r = analyze_bytes(&bytes);
        prop_assert!(r.len() <= MAX_REPORTS);
    }

    /// Crash headers with arbitrary tails never panic and always yield one report.
    #[test]
    fn headers_with_arbitrary_tails(
        head in prop::sample::select(vec![
            "BUG: KASAN: ", "WARNING: CPU: 1 PID: 2 at ", "Kernel panic - not syncing: ",
            "INFO: task ", "BUG: ", "general protection fault", "kernel BUG at ",
            "rcu: INFO: rcu_sched self-detected stall", "BUG: memory leak",
        ]),
        tail in "[ -~]{0,80}",
        body in proptest::collection::vec("[ -~]{0,60}", 0..30),
    ) {
        let mut text = format!("[ 1.000000] {head}{tail}\n");
        for l in body {
            text.push_str(&format!("[ 1.000001] {l}\n"));
        }
        let r = analyze(&text);
        prop_assert!(r.len() <= 2, "{:?}", r);
    }

    /// Arbitrary text never panics, and what comes out is bounded.
    #[test]
    fn arbitrary_text_is_safe(text in "(?s).{0,2000}") {
        let r = analyze(&text);
        prop_assert!(r.len() <= MAX_REPORTS);
    }
}

#[test]
fn rhel4_era_x86_64_sysrq_crash() {
    // What a 2.6.9 x86_64 netdump client prints for sysrq-c: a NULL write in the handler,
    // frames in braces, several per line.
    let msgs = lines(&[
        "SysRq : Trigger a crashdump",
        "Unable to handle kernel NULL pointer dereference at 0000000000000000 RIP: ",
        "<ffffffff8021b4d3>{sysrq_handle_crash+0}",
        "PML4 3f5a1067 PGD 3f594067 PMD 0 ",
        "Oops: 0002 [1] SMP ",
        "CPU 0 ",
        "Modules linked in: netconsole netdump md5 ipv6",
        "Pid: 3131, comm: bash Not tainted 2.6.9-89.ELsmp",
        "RIP: 0010:[<ffffffff8021b4d3>] <ffffffff8021b4d3>{sysrq_handle_crash+0}",
        "RSP: 0018:000001003e4b9eb8  EFLAGS: 00010012",
        "Call Trace:<ffffffff8021b6d7>{__handle_sysrq+115} <ffffffff801b12b0>{write_sysrq_trigger+43} ",
        "       <ffffffff8017b9c2>{vfs_write+207} <ffffffff8017baaa>{sys_write+69} ",
        "       <ffffffff8011026a>{system_call+126} ",
        "",
        "Code: c6 04 25 00 00 00 00 00 c3 e9 48 9f f7 ff e9 d3 39 f8 ff 48 ",
    ]);
    let r = one(&render(&msgs, Prefix::None, 0.0, true));
    assert_eq!(r.title, "sysrq: Trigger a crash");
    assert_eq!(r.guilty.as_deref(), Some("sysrq_handle_crash"));
    assert_eq!(
        r.frames,
        [
            "__handle_sysrq",
            "write_sysrq_trigger",
            "vfs_write",
            "sys_write",
            "system_call"
        ]
    );
    assert_eq!(r.kernel.as_deref(), Some("2.6.9-89.ELsmp"));
    assert_eq!((r.pid, r.comm.as_deref()), (Some(3131), Some("bash")));
}

#[test]
fn rhel4_era_i386_oops() {
    let msgs = lines(&[
        "Unable to handle kernel NULL pointer dereference at virtual address 00000000",
        " printing eip:",
        "f8a3c0b5",
        "*pde = 00000000",
        "Oops: 0002 [#1]",
        "SMP ",
        "Modules linked in: frobnic(U) netdump",
        "CPU:    0",
        "EIP:    0060:[<f8a3c0b5>]    Not tainted VLI",
        "EFLAGS: 00010246   (2.6.9-89.EL) ",
        "EIP is at frob_rx+0x15/0x40 [frobnic]",
        "eax: 00000000   ebx: f6a6bf6c   ecx: 00000000   edx: f8a3c0a0",
        "Process ksoftirqd/0 (pid: 3, threadinfo=c1a1e000 task=f7f0c0b0)",
        "Stack: f6a6bf6c c0283a4e 00000000 f7e1a000 ",
        "Call Trace:",
        " [<c0283a4e>] net_rx_action+0xae/0x160",
        " [<c0126f2b>] __do_softirq+0x4b/0xa0",
        "Code: 8b 44 24 04 c7 00 00 00 00 00 c3 ",
        " <0>Kernel panic - not syncing: Fatal exception in interrupt",
    ]);
    let r = one(&render(&msgs, Prefix::None, 0.0, false));
    assert_eq!(
        r.title,
        "BUG: unable to handle kernel NULL pointer dereference in frob_rx"
    );
    assert_eq!(r.kernel.as_deref(), Some("2.6.9-89.EL"));
    assert_eq!((r.pid, r.comm.as_deref()), (Some(3), Some("ksoftirqd/0")));
    assert_eq!(r.frames, ["net_rx_action", "__do_softirq"]);
}

#[test]
fn the_fatal_crash_is_the_one_that_panicked() {
    let mut msgs = lines(&[
        "WARNING: CPU: 0 PID: 1 at drivers/x.c:1 early_probe+0x1/0x2",
        "CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0 #1",
        "Call Trace:",
        " early_init+0x1/0x2",
        "---[ end trace 0000000000000000 ]---",
    ]);
    msgs.extend(quiet(400));
    msgs.extend(null_deref(0xffffffff81000000, 5, "x"));
    msgs.extend(quiet(3));
    let r = analyze(&render(&msgs, Prefix::Time, 1.0, false));
    assert_eq!(r.len(), 2);
    assert!(!r[0].panicked);
    assert!(r[1].panicked, "a Fatal exception panic followed it");
    assert_eq!(fatal(&r).unwrap().title, r[1].title);
    // Without any panic: the last report.
    let r = analyze(&render(&msgs[..5], Prefix::Time, 1.0, false));
    assert_eq!(fatal(&r).unwrap().title, "WARNING in early_probe");
    assert!(fatal(&[]).is_none());
}
