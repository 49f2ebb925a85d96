//! The report kinds the kernel prints, how each one's first line looks, and how its title is
//! made (syzbot's convention: `<what happened> in <guilty function>`). docs/triage.md describes
//! the rules in prose.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use super::frames::{self, Frame};

/// What the first line of a report says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Sysrq,
    Panic,
    KasanOld,
    Kasan,
    Kmsan,
    Kcsan,
    Kfence,
    NullDeref,
    Paging,
    Gpf,
    StackSegment,
    KernelBug,
    ListCorrupt,
    StackBadBp,
    StackBadFp,
    Warning,
    WarningNew,
    Deadlock,
    Inconsistent,
    BadUnlock,
    HeldFreed,
    StillLocks,
    LockUser,
    SuspiciousRcu,
    LockdepLimit,
    TaskHung,
    TaskCantDie,
    RcuStall,
    SoftLockup,
    HardLockup,
    Spinlock,
    SleepInvalid,
    SchedAtomic,
    Preemptible,
    WqLeak,
    WqLockup,
    Leak,
    WaitContext,
    UbsanOld,
    Ubsan,
    DivideError,
    InvalidOpcode,
    GuardPage,
    NonStaticKey,
    SlubInfo,
    Dentry,
    BusyInodes,
    ArmUnhandled,
    ArmInternal,
    ArmPaging,
    RustPanic,
    SyzFail,
    BadPage,
    Oops,
    BugOther,
}

/// Header patterns, most specific first (the first that matches a line wins).
const TABLE: &[(Rule, &str)] = &[
    (Rule::Sysrq, r"^(?:sysrq|SysRq) ?: Trigger a crash"),
    (Rule::Panic, r"^Kernel panic - not syncing: ?(.*)"),
    (
        Rule::KasanOld,
        r"^BUG: KASAN: ([a-z-]+) in ([^\s+]+)\S* at addr",
    ),
    (Rule::Kasan, r"^BUG: KASAN: ([a-z- ]+?) in ([^\s+]+)"),
    (Rule::Kmsan, r"^BUG: KMSAN: ([a-z-]+) in ([^\s+]+)"),
    (
        Rule::Kcsan,
        r"^BUG: KCSAN: ([a-z-]+) in ([^\s+]+)\S*(?: / ([^\s+]+))?",
    ),
    (Rule::Kfence, r"^BUG: KFENCE: ([a-z -]+?) in ([^\s+]+)"),
    (
        Rule::NullDeref,
        r"^BUG: (?:unable to handle kernel NULL pointer dereference|kernel NULL pointer dereference)",
    ),
    (
        Rule::Paging,
        r"^BUG: unable to handle (?:kernel paging request|page fault|kernel at)",
    ),
    (Rule::Gpf, r"general protection fault(?:[:,]| for)"),
    (
        Rule::StackSegment,
        r"^(?:Oops: )?stack segment: [0-9a-f]+ \[",
    ),
    (Rule::KernelBug, r"^kernel BUG at "),
    (
        Rule::ListCorrupt,
        r"^(?:list_add corruption|list_del corruption|list_add double add|list_del_entry corruption|list_add_rcu corruption)",
    ),
    (
        Rule::StackBadBp,
        r"^WARNING: kernel stack regs at \S+ in .* has bad '(\w+)' value",
    ),
    (
        Rule::StackBadFp,
        r"^WARNING: kernel stack frame pointer at \S+ in .* has bad value",
    ),
    (
        Rule::Warning,
        r"^WARNING: (?:CPU: (\d+) PID: (\d+) )?at (\S+) ([A-Za-z_][\w.]*)?",
    ),
    (Rule::WarningNew, r"^WARNING: \S+:\d+ at ([^\s+,]+)"),
    (
        Rule::Deadlock,
        r"^(?:WARNING|\[ INFO): (?:possible (?:circular locking dependency|recursive locking|irq lock inversion dependency) detected|\S+-safe -> \S+-unsafe lock order detected)",
    ),
    (
        Rule::Inconsistent,
        r"^(?:WARNING|\[ INFO): inconsistent lock state",
    ),
    (
        Rule::BadUnlock,
        r"^(WARNING|\[ BUG): bad unlock balance detected",
    ),
    (Rule::HeldFreed, r"^(WARNING|\[ BUG): held lock freed"),
    (
        Rule::StillLocks,
        r"^(WARNING|\[ BUG|BUG): (?:.* )?still has locks held",
    ),
    (
        Rule::LockUser,
        r"^(WARNING|\[ BUG): lock held when returning to user space",
    ),
    (
        Rule::SuspiciousRcu,
        r"^(WARNING|\[ INFO): suspicious RCU usage",
    ),
    (Rule::LockdepLimit, r"^BUG: (MAX_\w+ too low!)"),
    (
        Rule::TaskHung,
        r"^INFO: task .*:\d+ blocked .*for more than \d+ seconds",
    ),
    (
        Rule::TaskCantDie,
        r"^INFO: task .*:\d+ can't die for more than",
    ),
    (
        Rule::RcuStall,
        r"^(?:rcu: )?INFO: rcu[_ ]?\w* (?:self-)?detected (?:expedited )?stall",
    ),
    (Rule::SoftLockup, r"BUG: soft lockup - CPU#\d+ stuck"),
    (Rule::HardLockup, r"Watchdog detected hard LOCKUP on cpu"),
    (
        Rule::Spinlock,
        r"^BUG: (spinlock|rwlock) (lockup suspected|recursion|bad magic|already unlocked|wrong owner|wrong CPU|cpu recursion)",
    ),
    (
        Rule::SleepInvalid,
        r"^BUG: sleeping function called from invalid context",
    ),
    (Rule::SchedAtomic, r"^BUG: scheduling while atomic"),
    (Rule::Preemptible, r"^BUG: using (\w+\(\)) in preemptible"),
    (
        Rule::WqLeak,
        r"^BUG: workqueue leaked (?:lock or atomic|atomic, lock or RCU)",
    ),
    (Rule::WqLockup, r"^BUG: workqueue lockup"),
    (Rule::Leak, r"BUG: memory leak\s*$"),
    (
        Rule::WaitContext,
        r"^(?:\[ BUG|BUG|WARNING): Invalid wait context",
    ),
    (Rule::UbsanOld, r"^UBSAN: Undefined behaviour in"),
    (Rule::Ubsan, r"^UBSAN: ([a-z-]+) in"),
    (Rule::DivideError, r"^(?:Oops: )?divide error: [0-9a-f]+ \["),
    (
        Rule::InvalidOpcode,
        r"^(?:Oops: )?invalid opcode: [0-9a-f]+ \[",
    ),
    (
        Rule::GuardPage,
        r"^BUG: (?:TASK |IRQ )?stack guard page was hit",
    ),
    (
        Rule::NonStaticKey,
        r"^INFO: trying to register non-static key",
    ),
    (
        Rule::SlubInfo,
        r"^INFO: (Allocated|Freed) in ([^\s+]+)\S* age=\d+ cpu=\d+ pid=\d+",
    ),
    (
        Rule::Dentry,
        r"^BUG: Dentry .* still in use .*(\[unmount of [^\]]*\])",
    ),
    (Rule::BusyInodes, r"^VFS: Busy inodes after unmount"),
    (Rule::ArmUnhandled, r"^Unhandled fault: "),
    (Rule::ArmInternal, r"^Internal error: "),
    (
        Rule::ArmPaging,
        r"^Unable to handle kernel (NULL pointer dereference|paging request) at ",
    ),
    (Rule::RustPanic, r"^rust_kernel: panicked at "),
    (Rule::SyzFail, r"(SYZFAIL|SYZFATAL): ?(.*)"),
    (Rule::BadPage, r"^BUG: Bad page (state|map)"),
    (Rule::Oops, r"^Oops(?: - \w+)?: [0-9a-f]+ \[#\d+\]"),
    (Rule::BugOther, r"^BUG: ([A-Za-z].*)"),
];

static SET: LazyLock<RegexSet> =
    LazyLock::new(|| RegexSet::new(TABLE.iter().map(|(_, r)| *r)).unwrap());
static RES: LazyLock<Vec<Regex>> =
    LazyLock::new(|| TABLE.iter().map(|(_, r)| Regex::new(r).unwrap()).collect());

/// The first line of a crash report: which rule matched and what it captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub rule: Rule,
    pub caps: Vec<String>,
}

/// Recognizes the first line of a report (message text, prefixes already stripped).
pub fn header(msg: &str) -> Option<Header> {
    let t = msg.trim();
    // A cheap filter first (one literal search): every header pattern holds one of these.
    static PRE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"BUG|WARNING: |INFO|Kernel panic|Trigger a crash|general protection fault|stack segment|list_|UBSAN: |divide error|invalid opcode|VFS: Busy|Unhandled fault|Internal error|Unable to handle kernel|rust_kernel: panicked|SYZF|Oops|hard LOCKUP|Invalid wait context",
        )
        .unwrap()
    });
    if t.len() < 6 || !PRE.is_match(t) {
        return None;
    }
    let idx = SET.matches(t).into_iter().next()?;
    let caps = RES[idx].captures(t)?;
    Some(Header {
        rule: TABLE[idx].0,
        caps: caps
            .iter()
            .skip(1)
            .map(|m| m.map(|m| m.as_str().to_string()).unwrap_or_default())
            .collect(),
    })
}

impl Header {
    fn cap(&self, i: usize) -> &str {
        self.caps.get(i).map(String::as_str).unwrap_or("")
    }

    /// A `Kernel panic - not syncing` line.
    pub fn is_panic(&self) -> bool {
        self.rule == Rule::Panic
    }

    /// Panics that are the consequence of a report printed just before (the oops or warning
    /// is the crash; the panic only says the kernel gave up), not a crash of their own.
    pub fn is_consequence(&self) -> bool {
        match self.rule {
            Rule::Panic => {
                let m = self.cap(0);
                m.starts_with("Fatal exception")
                    || m.starts_with("panic_on_warn")
                    || m.starts_with("panic_on_oops")
                    || m.starts_with("kernel: panic_on_warn")
                    || m.starts_with("hung_task")
                    || m.starts_with("softlockup")
                    || m.starts_with("hardlockup")
                    || m.starts_with("Hard LOCKUP")
                    || m.starts_with("RCU Stall")
                    || m.starts_with("Attempted to kill the idle task")
                    || m.starts_with("sysrq triggered crash")
                    || m.starts_with("UBSAN")
                    || m.starts_with("KASAN")
            }
            Rule::Oops | Rule::InvalidOpcode => true,
            _ => false,
        }
    }
}

/// A report's title, kind and guilty function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub title: String,
    pub kind: String,
    pub guilty: Option<String>,
}

/// The placeholder syzbot puts where the guilty function cannot be found.
pub const CORRUPTED: &str = "corrupted";

/// First non-generic frame.
fn pick<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Option<String> {
    frames
        .into_iter()
        .find(|f| !frames::is_generic(&f.name))
        .map(|f| f.name.clone())
}

/// The function of the first instruction-pointer line of the report, unless generic.
fn ip_function(lines: &[String]) -> Option<String> {
    lines
        .iter()
        .take(120)
        .filter_map(|l| frames::parse_ip(l))
        .map(frames::normalize)
        .next()
        .filter(|n| !frames::is_generic(n))
        .map(str::to_string)
}

/// The first `..., at: func+0x..` lockdep prints after a lock (the lock the report is about).
fn lock_at(lines: &[String]) -> Option<String> {
    static AT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?:, at: |^\s*at: )(?:\[<[0-9a-f]+>\]\s*)?([A-Za-z_][\w.]*)\+0x").unwrap()
    });
    let mut first = None;
    for (i, l) in lines.iter().enumerate().take(200) {
        let name = if let Some(c) = AT.captures(l) {
            Some(c[1].to_string())
        } else if l.trim_end().ends_with(" at:") {
            lines
                .get(i + 1)
                .and_then(|n| frames::parse_frame(n))
                .map(|(n, _)| n.to_string())
        } else {
            None
        };
        if let Some(n) = name {
            let n = frames::normalize(&n).to_string();
            if !frames::is_generic(&n) {
                return Some(n);
            }
            first.get_or_insert(n);
        }
    }
    first
}

/// The first message line after the header matching `re`, captured group 1.
fn line_cap(lines: &[String], re: &Regex, within: usize) -> Option<String> {
    lines
        .iter()
        .take(within)
        .find_map(|l| re.captures(l.trim()).map(|c| c[1].to_string()))
}

fn with_guilty(what: &str, guilty: &Option<String>) -> String {
    format!("{what} in {}", guilty.as_deref().unwrap_or(CORRUPTED))
}

fn or_stack(first: Option<String>, trace: &[Frame]) -> Option<String> {
    first.or_else(|| pick(trace))
}

/// The trace of the stalled CPU: the first one with an interrupt part (the watchdog's
/// interrupt on top of the looping code); stall reports print other stacks first (the RCU
/// grace-period kthread).
fn stall_trace(lines: &[String], first: &[Frame]) -> Vec<Frame> {
    // Newer kernels print the looping instruction (RIP) above the first trace.
    let first_start = lines.iter().position(|l| frames::is_trace_start(l));
    if let Some(start) = first_start
        && let Some(rip) = lines[..start].iter().find_map(|l| frames::parse_ip(l))
    {
        let mut t = vec![Frame {
            name: frames::normalize(rip).to_string(),
            after_irq: false,
        }];
        t.extend(first.iter().filter(|f| !f.after_irq).cloned());
        return t;
    }
    frames::all_traces(lines)
        .into_iter()
        .find(|t| t.iter().any(|f| f.after_irq))
        .unwrap_or_else(|| first.to_vec())
}

/// Stalls and lockups: the kernel loops somewhere in a call chain, and where the watchdog
/// interrupt lands in that loop is chance. The title names a representative function further
/// down instead: the work function a dispatcher (kthread, workqueue, task work, timer) ran, or
/// the system call — for multiplexing calls (ioctl, sendmsg, read, ...) the handler they
/// dispatched to. Falls back to the top of the interrupted code.
fn stall_guilty(trace: &[Frame], lines: &[String]) -> Option<String> {
    static SYSCALL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:__x64_|__ia32_|__arm64_|__se_|__do_|__|compat_)?(?:sys|SyS|compat_sys|compat_SyS)_(\w+)$").unwrap()
    });
    static MULTIPLEX: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:ioctl|compat_ioctl|sendmsg|sendmmsg|recvmsg|sendto|recvfrom|write|read|writev|readv|pwrite64|pread64|pwritev\w*|preadv\w*|setsockopt|getsockopt|splice|sendfile\w*)$").unwrap()
    });
    static DISPATCH: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:ksys_\w+|do_vfs_ioctl|vfs_ioctl|do_ioctl|\w*compat_\w*ioctl\w*|__?_*sys_\w+|sock_sendmsg\w*|sock_recvmsg\w*|sock_write_iter|sock_read_iter|sock_ioctl|sock_do_ioctl|vfs_\w+|__vfs_\w+|new_sync_\w+|call_\w+_iter|do_iter_\w+|do_loop_readv_writev|do_readv|do_writev|do_sendfile|do_splice\w*|sock_common_\w+|sock_setsockopt|security_\w+|sock_sendpage|kernel_sendpage)$").unwrap()
    });
    static RUNNER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:kthread|process_one_work|process_scheduled_works|worker_thread|task_work_run|call_timer_fn|expire_timers|__run_timers|run_timer_softirq|rcu_do_batch|rcu_core|smpboot_thread_fn)$").unwrap()
    });
    let part: Vec<&Frame> = if trace.iter().any(|f| f.after_irq) {
        trace.iter().filter(|f| f.after_irq).collect()
    } else {
        trace.iter().collect()
    };
    let usable = |f: &&&Frame| {
        !frames::is_generic(&f.name) && !DISPATCH.is_match(&f.name) && !RUNNER.is_match(&f.name)
    };
    // A stall inside a cross-CPU call is about the call.
    if let Some(top) = part.iter().find(|f| !frames::is_generic(&f.name))
        && top.name.starts_with("smp_call_function")
    {
        return Some("smp_call_function".to_string());
    }
    for i in (0..part.len()).rev() {
        let name = &part[i].name;
        if RUNNER.is_match(name) {
            if let Some(f) = part[..i].iter().rev().find(usable) {
                return Some(f.name.clone());
            }
        } else if let Some(c) = SYSCALL.captures(name) {
            if MULTIPLEX.is_match(&c[1]) {
                if let Some(f) = part[..i].iter().rev().find(usable) {
                    return Some(f.name.clone());
                }
            } else {
                return Some(name.clone());
            }
        }
    }
    pick(part.iter().copied()).or_else(|| ip_function(lines))
}

/// Decides the title of a report. `before` are the few message lines printed just before the
/// header (a `cut here` line, an ODEBUG or refcount message), `lines` the report itself,
/// header first; `trace` its first call trace.
/// Returns the verdict and the call trace the report is about (for stalls the stalled CPU's,
/// for leaks the allocation backtrace; otherwise `trace`).
pub fn verdict(
    h: &Header,
    before: &[String],
    lines: &[String],
    trace: &[Frame],
) -> (Verdict, Vec<Frame>) {
    let v = verdict_checked(h, before, lines, trace);
    let about = match h.rule {
        Rule::RcuStall | Rule::SoftLockup | Rule::HardLockup => stall_trace(lines, trace),
        Rule::Leak => lines
            .iter()
            .position(|l| l.trim_start().starts_with("backtrace"))
            .map(|s| frames::trace_from(&lines[s + 1..]))
            .unwrap_or_default(),
        _ => trace.to_vec(),
    };
    (v, about)
}

fn verdict_checked(h: &Header, before: &[String], lines: &[String], trace: &[Frame]) -> Verdict {
    let mut v = verdict_inner(h, before, lines, trace);
    // Reports of these kinds always print a call trace; without one that shows more than the
    // reporting machinery the report is damaged, and syzbot's convention names no function.
    let needs_stack = matches!(
        h.rule,
        Rule::Warning
            | Rule::WarningNew
            | Rule::GuardPage
            | Rule::SuspiciousRcu
            | Rule::ArmInternal
            | Rule::ArmUnhandled
    );
    if needs_stack
        && !trace.iter().any(|f| !frames::is_generic(&f.name))
        && let Some((what, tail)) = v.title.rsplit_once(" in ")
    {
        if tail.ends_with("/usb_submit_urb") {
            v.title = format!("{what} in {CORRUPTED}/usb_submit_urb");
            v.guilty = None;
            return v;
        }
        v.title = format!("{what} in {CORRUPTED}");
        v.guilty = None;
    }
    v
}

fn verdict_inner(h: &Header, before: &[String], lines: &[String], trace: &[Frame]) -> Verdict {
    let v = |title: String, kind: &str, guilty: Option<String>| Verdict {
        title,
        kind: kind.to_string(),
        guilty,
    };
    let access = || {
        lines
            .iter()
            .take(6)
            .find_map(|l| {
                let t = l.trim_start();
                if t.starts_with("Read of size") || t.starts_with("Read at addr") {
                    Some("Read")
                } else if t.starts_with("Write of size") || t.starts_with("Write at addr") {
                    Some("Write")
                } else {
                    None
                }
            })
            .unwrap_or("")
    };
    match h.rule {
        Rule::Sysrq => v(
            "sysrq: Trigger a crash".into(),
            "SYSRQ",
            or_stack(ip_function(lines), trace),
        ),
        Rule::Panic => panic_verdict(h.cap(0), lines, trace),
        Rule::KasanOld if !access().is_empty() => {
            let g = pick(trace).or_else(|| nongeneric(h.cap(1)));
            let what = format!("KASAN: {} {}", h.cap(0), access());
            v(with_guilty(&what, &g), &kasan_kind(h.cap(0), access()), g)
        }
        Rule::KasanOld => {
            let g = Some(frames::normalize(h.cap(1)).to_string());
            v(
                format!(
                    "KASAN: {} in {} at addr ADDR",
                    h.cap(0),
                    g.as_deref().unwrap_or("")
                ),
                &kasan_kind(h.cap(0), access()),
                g,
            )
        }
        Rule::Kasan => {
            let kind = h.cap(0);
            let kind = if kind.contains("invalid-free") || kind == "double-free" {
                "invalid-free"
            } else {
                kind
            };
            let g = pick(trace).or_else(|| nongeneric(h.cap(1)));
            let acc = access();
            let what = if acc.is_empty() || kind == "invalid-free" || kind == "double-free" {
                format!("KASAN: {kind}")
            } else {
                format!("KASAN: {kind} {acc}")
            };
            v(with_guilty(&what, &g), &kasan_kind(kind, acc), g)
        }
        Rule::Kmsan => {
            let g = pick(trace).or_else(|| nongeneric(h.cap(1)));
            let kind = format!("KMSAN-{}", h.cap(0).to_uppercase());
            v(with_guilty(&format!("KMSAN: {}", h.cap(0)), &g), &kind, g)
        }
        Rule::Kcsan => {
            let a = frames::normalize(h.cap(1)).to_string();
            let title = if h.cap(2).is_empty() {
                format!("KCSAN: {} in {a}", h.cap(0))
            } else {
                format!(
                    "KCSAN: {} in {a} / {}",
                    h.cap(0),
                    frames::normalize(h.cap(2))
                )
            };
            v(title, "KCSAN-DATARACE", Some(a))
        }
        Rule::Kfence => {
            let g = nongeneric(h.cap(1)).or_else(|| pick(trace));
            let kind = format!("KFENCE-{}", h.cap(0).to_uppercase().replace(' ', "-"));
            v(with_guilty(&format!("KFENCE: {}", h.cap(0)), &g), &kind, g)
        }
        Rule::NullDeref => {
            let g = or_stack(ip_function(lines), trace);
            v(
                with_guilty("BUG: unable to handle kernel NULL pointer dereference", &g),
                "NULL-POINTER-DEREFERENCE",
                g,
            )
        }
        Rule::Paging => {
            // Newer kernels say "page fault for address" and then "#PF: supervisor read access
            // in kernel mode" / "#PF: error_code(0x0000) - not-present page"; a NULL address is
            // still a NULL dereference.
            let g = or_stack(ip_function(lines), trace);
            v(
                with_guilty("BUG: unable to handle kernel paging request", &g),
                "MEMORY-SAFETY-BUG",
                g,
            )
        }
        Rule::ArmPaging => {
            let g = or_stack(ip_function(lines), trace);
            let (what, kind) = if h.cap(0).starts_with("NULL") {
                (
                    "BUG: unable to handle kernel NULL pointer dereference",
                    "NULL-POINTER-DEREFERENCE",
                )
            } else {
                (
                    "BUG: unable to handle kernel paging request",
                    "MEMORY-SAFETY-BUG",
                )
            };
            v(with_guilty(what, &g), kind, g)
        }
        Rule::Gpf => {
            let g = or_stack(ip_function(lines), trace);
            v(
                with_guilty("general protection fault", &g),
                "GENERAL-PROTECTION-FAULT",
                g,
            )
        }
        Rule::StackSegment => {
            let g = or_stack(ip_function(lines), trace);
            v(with_guilty("stack segment fault", &g), "BUG", g)
        }
        Rule::KernelBug => {
            if lines.iter().chain(before).any(|l| is_list_corruption(l)) {
                let g = list_guilty(lines, trace);
                return v(
                    with_guilty("BUG: corrupted list", &g),
                    "MEMORY-SAFETY-BUG",
                    g,
                );
            }
            let g = or_stack(ip_function(lines), trace);
            v(with_guilty("kernel BUG", &g), "BUG", g)
        }
        Rule::ListCorrupt => {
            let g = list_guilty(lines, trace);
            v(
                with_guilty("BUG: corrupted list", &g),
                "MEMORY-SAFETY-BUG",
                g,
            )
        }
        Rule::StackBadBp => v(
            format!("WARNING: kernel stack regs has bad '{}' value", h.cap(0)),
            "WARNING",
            None,
        ),
        Rule::StackBadFp => v(
            "WARNING: kernel stack frame pointer has bad value".into(),
            "WARNING",
            None,
        ),
        Rule::Warning | Rule::WarningNew => {
            let func = if h.rule == Rule::Warning {
                h.cap(3)
            } else {
                h.cap(0)
            };
            let file = match h.rule {
                Rule::Warning => h.cap(2),
                _ => "",
            };
            warning_verdict(func, file, before, lines, trace)
        }
        Rule::Deadlock => {
            let g = lock_at(lines);
            if g.is_none() {
                let t = h_text(lines)
                    .trim_start_matches("[ ")
                    .trim_end_matches(" ]");
                return v(t.to_string(), "LOCKDEP", None);
            }
            v(with_guilty("possible deadlock", &g), "LOCKDEP", g)
        }
        Rule::Inconsistent => {
            let g = lock_at(lines).or_else(|| pick(trace));
            v(with_guilty("inconsistent lock state", &g), "LOCKDEP", g)
        }
        Rule::BadUnlock | Rule::HeldFreed | Rule::LockUser | Rule::StillLocks => {
            let level = if h.cap(0).contains("BUG") {
                "BUG"
            } else {
                "WARNING"
            };
            let what = match h.rule {
                Rule::BadUnlock => "bad unlock balance",
                Rule::HeldFreed => "held lock freed",
                Rule::LockUser => "lock held when returning to user space",
                _ => "still has locks held",
            };
            let g = lock_at(lines).or_else(|| pick(trace));
            v(with_guilty(&format!("{level}: {what}"), &g), "LOCKDEP", g)
        }
        Rule::SuspiciousRcu => {
            let level = if h.cap(0).contains("INFO") {
                "INFO"
            } else {
                "WARNING"
            };
            let g = pick(trace);
            v(
                with_guilty(&format!("{level}: suspicious RCU usage"), &g),
                "LOCKDEP",
                g,
            )
        }
        Rule::LockdepLimit => v(format!("BUG: {}", h.cap(0)), "LOCKDEP", None),
        Rule::TaskHung => {
            let g = pick(trace);
            v(with_guilty("INFO: task hung", &g), "HANG", g)
        }
        Rule::TaskCantDie => {
            let g = pick(trace);
            v(with_guilty("INFO: task can't die", &g), "HANG", g)
        }
        Rule::RcuStall => {
            let g = stall_guilty(&stall_trace(lines, trace), lines);
            v(with_guilty("INFO: rcu detected stall", &g), "HANG", g)
        }
        Rule::SoftLockup => {
            let g = stall_guilty(&stall_trace(lines, trace), lines);
            v(with_guilty("BUG: soft lockup", &g), "HANG", g)
        }
        Rule::HardLockup => {
            let g = stall_guilty(trace, lines);
            v(with_guilty("BUG: hard lockup", &g), "HANG", g)
        }
        Rule::Spinlock => {
            let g = pick(trace);
            v(
                with_guilty(&format!("BUG: {} {}", h.cap(0), h.cap(1)), &g),
                "LOCKDEP",
                g,
            )
        }
        Rule::SleepInvalid => {
            let g = pick(trace);
            v(
                with_guilty("BUG: sleeping function called from invalid context", &g),
                "ATOMIC-SLEEP",
                g,
            )
        }
        Rule::SchedAtomic => {
            let g = pick(trace);
            v(
                with_guilty("BUG: scheduling while atomic", &g),
                "ATOMIC-SLEEP",
                g,
            )
        }
        Rule::Preemptible => {
            static CALLER: LazyLock<Regex> =
                LazyLock::new(|| Regex::new(r"^caller is ([A-Za-z_][\w.]*)\+0x").unwrap());
            let g = line_cap(lines, &CALLER, 4)
                .map(|c| frames::normalize(&c).to_string())
                .filter(|c| !frames::is_generic(c))
                .or_else(|| pick(trace));
            v(
                with_guilty(&format!("BUG: using {} in preemptible code", h.cap(0)), &g),
                "LOCKDEP",
                g,
            )
        }
        Rule::WqLeak => {
            static LAST: LazyLock<Regex> =
                LazyLock::new(|| Regex::new(r"^last function: ([A-Za-z_][\w.]*)").unwrap());
            let g = line_cap(lines, &LAST, 4).map(|c| frames::normalize(&c).to_string());
            v(
                with_guilty("BUG: workqueue leaked lock or atomic", &g),
                "LOCKDEP",
                g,
            )
        }
        Rule::WaitContext => {
            let g = pick(trace);
            v(with_guilty("WARNING: locking bug", &g), "LOCKDEP", g)
        }
        Rule::WqLockup => v("BUG: workqueue lockup".into(), "HANG", None),
        Rule::Leak => {
            let start = lines
                .iter()
                .position(|l| l.trim_start().starts_with("backtrace"));
            // Everything that allocates on the leaker's behalf is skipped, so the title names
            // the code that owns the object.
            static ALLOC: LazyLock<Regex> = LazyLock::new(|| {
                Regex::new(r"alloc|^pcpu_|^kmem|^kstrdup|^kmemdup|^slab|^__slab|^idr_|^ida_|^kzalloc|^kcalloc").unwrap()
            });
            let g = start.and_then(|s| {
                frames::trace_from(&lines[s + 1..])
                    .into_iter()
                    .find(|f| !frames::is_generic(&f.name) && !ALLOC.is_match(&f.name))
                    .map(|f| f.name)
            });
            v(with_guilty("memory leak", &g), "LEAK", g)
        }
        Rule::UbsanOld => {
            let g = pick(trace);
            v(with_guilty("UBSAN: undefined-behaviour", &g), "UBSAN", g)
        }
        Rule::Ubsan => {
            let g = pick(trace);
            v(with_guilty(&format!("UBSAN: {}", h.cap(0)), &g), "UBSAN", g)
        }
        Rule::DivideError => {
            let g = or_stack(ip_function(lines), trace);
            v(with_guilty("divide error", &g), "BUG", g)
        }
        Rule::InvalidOpcode => {
            let g = or_stack(ip_function(lines), trace);
            v(with_guilty("invalid opcode", &g), "BUG", g)
        }
        Rule::NonStaticKey => {
            let g = pick(trace);
            v(
                with_guilty("INFO: trying to register non-static key", &g),
                "LOCKDEP",
                g,
            )
        }
        Rule::GuardPage => {
            let g = or_stack(ip_function(lines), trace);
            v(with_guilty("BUG: stack guard page was hit", &g), "BUG", g)
        }
        Rule::SlubInfo => v(
            normalize_numbers(&format!(
                "INFO: {} in {}",
                h.cap(0),
                strip_offset_in(
                    h_text(lines).trim_start_matches(&format!("INFO: {} in ", h.cap(0)))
                )
            )),
            "MEMORY-SAFETY-BUG",
            Some(frames::normalize(h.cap(1)).to_string()),
        ),
        Rule::Dentry => v(
            format!("BUG: Dentry still in use {}", h.cap(0)),
            "BUG",
            None,
        ),
        Rule::BusyInodes => v(
            "VFS: Busy inodes after unmount (use-after-free)".into(),
            "MEMORY-SAFETY-BUG",
            None,
        ),
        Rule::ArmUnhandled => {
            let g = or_stack(ip_function(lines), trace);
            v(with_guilty("Unhandled fault", &g), "BUG", g)
        }
        Rule::ArmInternal => {
            let g = or_stack(ip_function(lines), trace);
            v(with_guilty("Internal error", &g), "BUG", g)
        }
        Rule::RustPanic => {
            let msg = lines.get(1).map(|l| l.trim()).unwrap_or("rust panic");
            let g = pick(trace);
            v(with_guilty(msg, &g), "PANIC", g)
        }
        Rule::SyzFail => v(
            normalize_numbers(&format!("{}: {}", h.cap(0), h.cap(1).trim())),
            "SYZ-FAILURE",
            None,
        ),
        Rule::BadPage => {
            let g = pick(trace);
            v(
                with_guilty(&format!("BUG: Bad page {}", h.cap(0)), &g),
                "BUG",
                g,
            )
        }
        Rule::Oops => {
            let g = or_stack(ip_function(lines), trace);
            v(with_guilty("Oops", &g), "BUG", g)
        }
        Rule::BugOther => {
            let g = pick(trace);
            // The message up to its first detail (`: `, ` - `, `!`): the details are
            // addresses, counters and task names that differ between occurrences.
            let msg = h.cap(0);
            let cut = [": ", " - ", "!"]
                .iter()
                .filter_map(|p| msg.find(p))
                .min()
                .unwrap_or(msg.len());
            let what = normalize_numbers(msg[..cut].trim_end_matches(['.', ':', ' ']));
            v(with_guilty(&format!("BUG: {what}"), &g), "BUG", g)
        }
    }
}

fn h_text(lines: &[String]) -> &str {
    lines.first().map(|s| s.trim()).unwrap_or("")
}

fn nongeneric(name: &str) -> Option<String> {
    let n = frames::normalize(name);
    (!n.is_empty() && !frames::is_generic(n)).then(|| n.to_string())
}

fn kasan_kind(kind: &str, access: &str) -> String {
    let acc = access.to_uppercase();
    if kind.contains("use-after-free") {
        format!(
            "KASAN-USE-AFTER-FREE-{}",
            if acc.is_empty() { "READ" } else { &acc }
        )
    } else if kind.contains("free") {
        "KASAN-INVALID-FREE".into()
    } else if acc.is_empty() {
        "KASAN-READ".into()
    } else {
        format!("KASAN-{acc}")
    }
}

fn is_list_corruption(l: &str) -> bool {
    let t = l.trim_start();
    t.starts_with("list_add corruption")
        || t.starts_with("list_del corruption")
        || t.starts_with("list_add double add")
        || t.starts_with("list_del_entry corruption")
}

fn list_guilty(lines: &[String], trace: &[Frame]) -> Option<String> {
    or_stack(ip_function(lines), trace)
}

/// `func+0x1/0x2` → `func` inside free text.
fn strip_offset_in(s: &str) -> String {
    static OFF: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\+0x[0-9a-f]+(?:/0x[0-9a-f]+)?").unwrap());
    OFF.replace_all(s, "").into_owned()
}

/// Numbers that differ between runs of the same crash (pids, counters, addresses) become
/// `NUM` / `ADDR` so titles compare equal.
pub fn normalize_numbers(s: &str) -> String {
    static ADDR: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b(?:0x)?[0-9a-f]{8,16}\b").unwrap());
    static NUM: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d+").unwrap());
    let s = ADDR.replace_all(s, "ADDR");
    NUM.replace_all(&s, "NUM").into_owned()
}

fn panic_verdict(msg: &str, lines: &[String], trace: &[Frame]) -> Verdict {
    static PROT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"stack-protector: Kernel stack is corrupted in: ([A-Za-z_][\w.]*)").unwrap()
    });
    let v = |title: String, kind: &str, guilty: Option<String>| Verdict {
        title,
        kind: kind.to_string(),
        guilty,
    };
    if msg.starts_with("sysrq triggered crash") {
        return v("sysrq: Trigger a crash".into(), "SYSRQ", pick(trace));
    }
    if let Some(c) = PROT.captures(msg) {
        let g = nongeneric(&c[1]).or_else(|| pick(trace));
        return v(
            with_guilty("kernel panic: stack is corrupted", &g),
            "PANIC",
            g,
        );
    }
    if msg.starts_with("corrupted stack end detected") {
        let g = stall_guilty(trace, lines);
        return v(
            with_guilty("kernel panic: corrupted stack end", &g),
            "PANIC",
            g,
        );
    }
    let text = msg.trim_end_matches(['.', ' ']);
    let text = text.strip_suffix(" in interrupt").unwrap_or(text);
    let text = text.split(" - ").next().unwrap_or(text);
    v(
        format!("kernel panic: {}", normalize_numbers(text)),
        "PANIC",
        pick(trace),
    )
}

fn warning_verdict(
    func: &str,
    file: &str,
    before: &[String],
    lines: &[String],
    trace: &[Frame],
) -> Verdict {
    let near: Vec<&str> = before
        .iter()
        .chain(lines.iter().skip(1).take(3))
        .map(|s| s.trim())
        .collect();
    let has = |p: &str| near.iter().any(|l| l.starts_with(p));
    let func = frames::normalize(func);
    let header_guilty = (!func.is_empty() && !frames::is_generic(func)).then(|| func.to_string());
    let stack_guilty = || pick(trace);
    let v = |what: &str, kind: &str, g: Option<String>| Verdict {
        title: with_guilty(what, &g),
        kind: kind.to_string(),
        guilty: g,
    };
    if has("ODEBUG:") {
        return v("WARNING: ODEBUG bug", "WARNING", stack_guilty());
    }
    if has("refcount_t:") {
        return v("WARNING: refcount bug", "REFCOUNT-WARNING", stack_guilty());
    }
    if has("DEBUG_LOCKS_WARN_ON") || file.starts_with("kernel/locking/") {
        return v("WARNING: locking bug", "LOCKDEP", stack_guilty());
    }
    if near.iter().any(|l| is_list_corruption(l)) {
        return v("BUG: corrupted list", "MEMORY-SAFETY-BUG", stack_guilty());
    }
    if ["kmalloc", "__kmalloc", "kvmalloc"]
        .iter()
        .any(|p| func.starts_with(p))
    {
        return v("WARNING: kmalloc bug", "WARNING", stack_guilty());
    }
    let g = header_guilty
        .or_else(|| ip_function(lines))
        .or_else(stack_guilty);
    // A warning in the USB core's URB submission is about the driver that submitted the URB:
    // name both.
    if g.as_deref() == Some("usb_submit_urb") {
        let caller = trace
            .iter()
            .find(|f| !frames::is_generic(&f.name) && f.name != "usb_submit_urb")
            .map(|f| f.name.clone());
        let title = format!(
            "WARNING in {}/usb_submit_urb",
            caller.as_deref().unwrap_or(CORRUPTED)
        );
        return Verdict {
            title,
            kind: "WARNING".into(),
            guilty: g,
        };
    }
    v("WARNING", "WARNING", g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_recognized() {
        let h = header("WARNING: CPU: 1 PID: 77 at net/core/x.c:12 foo_bar+0x1/0x2").unwrap();
        assert_eq!(h.rule, Rule::Warning);
        assert_eq!(h.caps[3], "foo_bar");
        assert_eq!(h.caps[2], "net/core/x.c:12");
        assert_eq!(
            header("BUG: KASAN: use-after-free in foo+0x1/0x2")
                .unwrap()
                .rule,
            Rule::Kasan
        );
        assert_eq!(header("WARNING: /etc/ssh/moduli does not exist"), None);
        assert_eq!(
            header("WARNING: at fs/x.c:12 old_fn()").unwrap().caps[3],
            "old_fn"
        );
        assert_eq!(header("the mand mount option is deprecated"), None);
        assert_eq!(
            header("watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [x:1]")
                .unwrap()
                .rule,
            Rule::SoftLockup
        );
    }

    #[test]
    fn every_rule_has_a_header_that_passes_the_filter() {
        let samples = [
            "sysrq: Trigger a crash",
            "Kernel panic - not syncing: VFS: Unable to mount root fs",
            "BUG: KASAN: slab-out-of-bounds in f+0x1/0x2 at addr ffff8800",
            "BUG: KASAN: use-after-free in f+0x1/0x2",
            "BUG: KMSAN: uninit-value in f+0x1/0x2",
            "BUG: KCSAN: data-race in f / g",
            "BUG: KFENCE: out-of-bounds read in f+0x1/0x2",
            "BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "BUG: unable to handle page fault for address: ffffc90000000000",
            "Oops: general protection fault, probably for non-canonical address 0xdffffc0000000000: 0000 [#1]",
            "Oops: stack segment: 0000 [#1] PREEMPT SMP",
            "kernel BUG at mm/slub.c:100!",
            "list_del corruption, ffff888000000000->next is NULL",
            "WARNING: kernel stack regs at ffffc900 in x:1 has bad 'bp' value 0000",
            "WARNING: kernel stack frame pointer at ffffc900 in x:1 has bad value 0000",
            "WARNING: CPU: 0 PID: 1 at a/b.c:1 f+0x1/0x2",
            "WARNING: a/b.c:1 at f+0x1/0x2, CPU#0: x/1",
            "WARNING: possible circular locking dependency detected",
            "WARNING: inconsistent lock state",
            "WARNING: bad unlock balance detected!",
            "WARNING: held lock freed!",
            "WARNING: x/1 still has locks held!",
            "WARNING: lock held when returning to user space!",
            "WARNING: suspicious RCU usage",
            "BUG: MAX_LOCKDEP_CHAINS too low!",
            "INFO: task x:1 blocked for more than 120 seconds.",
            "INFO: task x:1 can't die for more than 120 seconds.",
            "rcu: INFO: rcu_preempt self-detected stall on CPU",
            "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [x:1]",
            "NMI watchdog: Watchdog detected hard LOCKUP on cpu 1",
            "BUG: spinlock recursion on CPU#0, x/1",
            "BUG: sleeping function called from invalid context at a.c:1",
            "BUG: scheduling while atomic: x/1/0x00000002",
            "BUG: using smp_processor_id() in preemptible [00000000] code: x/1",
            "BUG: workqueue leaked atomic, lock or RCU: kworker/0:1[1]",
            "BUG: workqueue lockup - pool cpus=0 node=0",
            "BUG: memory leak",
            "BUG: Invalid wait context",
            "UBSAN: Undefined behaviour in a.c:1:2",
            "UBSAN: shift-out-of-bounds in a.c:1:2",
            "Oops: divide error: 0000 [#1] SMP",
            "invalid opcode: 0000 [#1] SMP",
            "BUG: TASK stack guard page was hit at ffffc900 (stack is ffffc900..ffffc900)",
            "INFO: trying to register non-static key.",
            "INFO: Allocated in f+0x1/0x2 age=1 cpu=0 pid=1",
            "BUG: Dentry ffff{i=0,n=x}  still in use (1) [unmount of tmpfs tmpfs]",
            "VFS: Busy inodes after unmount of sda1",
            "Unhandled fault: page domain fault (0x01b) at 0x00000e30",
            "Internal error: Oops: 96000005 [#1] PREEMPT SMP",
            "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000",
            "rust_kernel: panicked at a.rs:1:2:",
            "SYZFAIL: x",
            "BUG: Bad page state in process x  pfn:12345",
            "Oops: 0000 [#1] SMP",
            "BUG: Bad rss-counter state mm:ffff8880 type:MM_FILEPAGES val:1",
        ];
        let mut seen = std::collections::HashSet::new();
        for s in samples {
            let h = header(s).unwrap_or_else(|| panic!("no header: {s}"));
            seen.insert(format!("{:?}", h.rule));
        }
        assert_eq!(seen.len(), TABLE.len(), "a sample per rule: {seen:?}");
    }

    #[test]
    fn numbers_normalized() {
        assert_eq!(
            normalize_numbers("pid=12 at ffff888012345678"),
            "pid=NUM at ADDR"
        );
    }
}
