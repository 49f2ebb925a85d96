//! What `test-crash --kind` provokes, and what the crash that arrives must look like (pure).
//!
//! Each kind maps to a way of provoking it (the kernel's sysrq, a point of lkdtm — the kernel's
//! own crash test module, `/sys/kernel/debug/provoke-crash/DIRECT` — or something any kernel
//! does), the sysctls that turn its report into a panic (so kdump runs), and the title and
//! kind `netdump_triage` gives the report. The sysctls are written live only: they are gone after
//! the reboot the crash causes, nothing persists.

use serde::Serialize;

use crate::resources::sh_quote;

/// A kind of kernel crash `test-crash` can provoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrashKind {
    /// `echo c > /proc/sysrq-trigger` (every kernel; the default).
    #[default]
    Sysrq,
    /// lkdtm PANIC: `panic("dumptest")`.
    Panic,
    /// lkdtm BUG: a `BUG()`, panicking through `kernel.panic_on_oops`.
    Bug,
    /// lkdtm EXCEPTION: a NULL pointer write, panicking through `kernel.panic_on_oops`.
    Oops,
    /// lkdtm WARNING: a `WARN_ON()`, panicking through `kernel.panic_on_warn`.
    Warning,
    /// A task stuck in uninterruptible sleep past `kernel.hung_task_timeout_secs`, panicking
    /// through `kernel.hung_task_panic`: lkdtm HUNG_TASK when the kernel has lkdtm, else a
    /// write to a frozen loop-mounted filesystem (any kernel with loop and ext4).
    HungTask,
    /// lkdtm SOFTLOCKUP: a CPU spinning with preemption off, panicking through
    /// `kernel.softlockup_panic`.
    SoftLockup,
    /// Memory exhausted with `vm.panic_on_oom` set (any kernel).
    Oom,
}

/// How a kind is provoked on the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provoke {
    Sysrq,
    /// Write this crash point to lkdtm's `DIRECT`; the kernel must have lkdtm.
    Lkdtm(&'static str),
    /// This lkdtm point when lkdtm is there, else a writer blocked on a frozen filesystem.
    LkdtmOrFrozenFs(&'static str),
    /// A process that allocates memory until the OOM killer runs.
    MemoryHog,
}

/// How the crash is provoked on one host, once preflight knows whether it has lkdtm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Sysrq,
    Lkdtm(&'static str),
    FrozenFs,
    MemoryHog,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Sysrq => write!(f, "sysrq crash"),
            Method::Lkdtm(p) => write!(f, "lkdtm {p}"),
            Method::FrozenFs => write!(f, "writer blocked on a frozen filesystem"),
            Method::MemoryHog => write!(f, "memory exhausted"),
        }
    }
}

/// The crash triage must find in the dump's kernel log for a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The triage title starts with this.
    pub title_prefix: &'static str,
    /// The triage kind, exactly.
    pub kind: &'static str,
}

/// Where lkdtm's direct trigger lives (debugfs).
pub const LKDTM_DIRECT: &str = "/sys/kernel/debug/provoke-crash/DIRECT";

/// How long a hung task waits before the kernel reports it. Short, so a test run does not wait
/// the kernel's default two minutes; it is a live setting only.
pub const HUNG_TASK_TIMEOUT_SECS: u32 = 10;

/// When the crash did not happen, the provoking script puts the old sysctl values back (and
/// thaws its filesystem) after this long, so a failed run does not leave a host set to panic.
pub const RESTORE_AFTER_SECS: u32 = 900;

/// Loop image and mount point of the frozen-filesystem hung task: on `/run` (a tmpfs, gone at
/// the reboot), under names only root can create.
const HUNG_IMG: &str = "/run/netdump-provision-hung.img";
const HUNG_MNT: &str = "/run/netdump-provision-hung";

impl CrashKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [CrashKind; 8] = [
        CrashKind::Sysrq,
        CrashKind::Panic,
        CrashKind::Bug,
        CrashKind::Oops,
        CrashKind::Warning,
        CrashKind::HungTask,
        CrashKind::SoftLockup,
        CrashKind::Oom,
    ];

    /// The name on the command line (`hung-task`).
    pub fn name(self) -> &'static str {
        match self {
            CrashKind::Sysrq => "sysrq",
            CrashKind::Panic => "panic",
            CrashKind::Bug => "bug",
            CrashKind::Oops => "oops",
            CrashKind::Warning => "warning",
            CrashKind::HungTask => "hung-task",
            CrashKind::SoftLockup => "soft-lockup",
            CrashKind::Oom => "oom",
        }
    }

    pub fn provoke(self) -> Provoke {
        match self {
            CrashKind::Sysrq => Provoke::Sysrq,
            CrashKind::Panic => Provoke::Lkdtm("PANIC"),
            CrashKind::Bug => Provoke::Lkdtm("BUG"),
            CrashKind::Oops => Provoke::Lkdtm("EXCEPTION"),
            CrashKind::Warning => Provoke::Lkdtm("WARNING"),
            CrashKind::HungTask => Provoke::LkdtmOrFrozenFs("HUNG_TASK"),
            CrashKind::SoftLockup => Provoke::Lkdtm("SOFTLOCKUP"),
            CrashKind::Oom => Provoke::MemoryHog,
        }
    }

    /// The lkdtm point this kind uses, if any.
    pub fn lkdtm_point(self) -> Option<&'static str> {
        match self.provoke() {
            Provoke::Lkdtm(p) | Provoke::LkdtmOrFrozenFs(p) => Some(p),
            _ => None,
        }
    }

    /// The kind cannot be provoked without lkdtm.
    pub fn needs_lkdtm(self) -> bool {
        matches!(self.provoke(), Provoke::Lkdtm(_))
    }

    /// The kinds that work on a kernel without lkdtm (for error messages).
    pub fn without_lkdtm() -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|k| !k.needs_lkdtm())
            .map(|k| k.name())
            .collect()
    }

    /// How to provoke it on a host that has (`Some`, with its points) or lacks (`None`) lkdtm;
    /// `None` when it cannot be provoked there.
    pub fn method(self, lkdtm_points: Option<&[String]>) -> Option<Method> {
        let has = |p: &str| lkdtm_points.is_some_and(|ps| ps.iter().any(|x| x == p));
        match self.provoke() {
            Provoke::Sysrq => Some(Method::Sysrq),
            Provoke::MemoryHog => Some(Method::MemoryHog),
            Provoke::Lkdtm(p) => has(p).then_some(Method::Lkdtm(p)),
            Provoke::LkdtmOrFrozenFs(p) if has(p) => Some(Method::Lkdtm(p)),
            Provoke::LkdtmOrFrozenFs(_) => Some(Method::FrozenFs),
        }
    }

    /// Sysctls (`/proc/sys` paths relative to it, value) set for the run so the report ends in
    /// a panic, which is what starts the capture kernel. Not persisted.
    pub fn sysctls(self) -> Vec<(&'static str, String)> {
        match self {
            CrashKind::Sysrq | CrashKind::Panic => vec![],
            CrashKind::Bug | CrashKind::Oops => vec![("kernel/panic_on_oops", "1".into())],
            CrashKind::Warning => vec![("kernel/panic_on_warn", "1".into())],
            // Whichever way the task hangs, the kernel's default two minutes would outlast
            // the console wait.
            CrashKind::HungTask => vec![
                ("kernel/hung_task_panic", "1".into()),
                (
                    "kernel/hung_task_timeout_secs",
                    HUNG_TASK_TIMEOUT_SECS.to_string(),
                ),
            ],
            CrashKind::SoftLockup => vec![("kernel/softlockup_panic", "1".into())],
            CrashKind::Oom => vec![("vm/panic_on_oom", "1".into())],
        }
    }

    /// What triage calls the crash this kind provokes (docs/triage.md's convention).
    pub fn expected(self) -> Expected {
        let e = |title_prefix, kind| Expected { title_prefix, kind };
        match self {
            CrashKind::Sysrq => e("sysrq: Trigger a crash", "SYSRQ"),
            CrashKind::Panic => e("kernel panic: dumptest", "PANIC"),
            CrashKind::Bug => e("kernel BUG", "BUG"),
            CrashKind::Oops => e(
                "BUG: unable to handle kernel NULL pointer dereference",
                "NULL-POINTER-DEREFERENCE",
            ),
            CrashKind::Warning => e("WARNING in ", "WARNING"),
            CrashKind::HungTask => e("INFO: task hung", "HANG"),
            CrashKind::SoftLockup => e("BUG: soft lockup", "HANG"),
            CrashKind::Oom => e("kernel panic: Out of memory", "PANIC"),
        }
    }

    /// The crash that arrived is the one this kind provokes.
    pub fn matches(self, title: &str, kind: &str) -> bool {
        let e = self.expected();
        title.starts_with(e.title_prefix) && kind == e.kind
    }
}

/// What preflight learns about lkdtm on a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LkdtmProbe {
    /// `DIRECT` is there (already, or after mounting debugfs / loading the module): its points.
    Available(Vec<String>),
    /// Not there. `module`: `modinfo lkdtm` found a module (so loading it failed);
    /// `debugfs`: debugfs is mounted.
    Absent { module: bool, debugfs: bool },
}

/// Mounts debugfs when it is not, loads lkdtm when its trigger is missing, and prints what is
/// there. Only for kinds that may use lkdtm.
pub fn lkdtm_probe_script() -> String {
    let direct = sh_quote(LKDTM_DIRECT);
    format!(
        "exec 2>/dev/null\n\
         if [ ! -e {direct} ]; then\n\
           if ! awk '$3 == \"debugfs\" {{ f = 1 }} END {{ exit !f }}' /proc/mounts; then\n\
             mount -t debugfs debugfs /sys/kernel/debug\n\
           fi\n\
           modprobe lkdtm\n\
         fi\n\
         awk '$3 == \"debugfs\" {{ f = 1 }} END {{ exit !f }}' /proc/mounts && echo debugfs=1\n\
         if [ -e {direct} ]; then\n\
           echo lkdtm=1\n\
           sed -n 's/^\\([A-Z][A-Z0-9_]*\\)$/point=\\1/p' {direct}\n\
         else\n\
           echo lkdtm=0\n\
           modinfo lkdtm >/dev/null && echo module=1\n\
         fi\n\
         true\n"
    )
}

/// Parses [`lkdtm_probe_script`]'s output.
pub fn parse_lkdtm_probe(text: &str) -> LkdtmProbe {
    let has = |k: &str| text.lines().any(|l| l.trim() == k);
    if has("lkdtm=1") {
        LkdtmProbe::Available(
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("point="))
                .map(str::to_string)
                .collect(),
        )
    } else {
        LkdtmProbe::Absent {
            module: has("module=1"),
            debugfs: has("debugfs=1"),
        }
    }
}

/// The trigger step: sets the sysctls (failing, before anything is provoked, when one is
/// missing), prepares what the method needs, then starts the crash detached — through
/// `systemd-run` or `nohup` — so the ssh command returns before the kernel dies. Prints
/// `triggered` last.
pub fn trigger_script(kind: CrashKind, method: Method) -> String {
    let sysctls = kind.sysctls();
    let mut s = String::from("set -e\n");
    let mut restore = String::new();
    // The old values reach the detached shell as its positional parameters ($1, $2, ...):
    // `systemd-run` starts it with a clean environment, so shell variables would not.
    let mut old_args = String::new();
    for (i, (path, _)) in sysctls.iter().enumerate() {
        let p = sh_quote(&format!("/proc/sys/{path}"));
        s.push_str(&format!(
            "[ -w {p} ] || {{ echo \"no sysctl {name}: this kernel lacks it\" >&2; exit 3; }}\n\
             old{i}=$(cat {p})\n",
            name = path.replace('/', ".")
        ));
        restore.push_str(&format!("echo \"${}\" > {p}; ", i + 1));
        old_args.push_str(&format!(" \"$old{i}\""));
    }
    // The values are this module's own numbers: nothing to quote.
    for (path, v) in &sysctls {
        debug_assert!(v.bytes().all(|b| b.is_ascii_digit()));
        let p = sh_quote(&format!("/proc/sys/{path}"));
        s.push_str(&format!(
            "echo {v} > {p}\necho \"sysctl {name}={v}\"\n",
            name = path.replace('/', ".")
        ));
    }
    let provoke = match method {
        Method::Sysrq => "echo c > /proc/sysrq-trigger".to_string(),
        Method::Lkdtm(point) => format!("echo {point} > {LKDTM_DIRECT}"),
        Method::FrozenFs => {
            let (img, mnt) = (sh_quote(HUNG_IMG), sh_quote(HUNG_MNT));
            s.push_str(&format!(
                "if grep -qs \" {HUNG_MNT} \" /proc/mounts; then fsfreeze -u {mnt} 2>/dev/null || true; umount {mnt}; fi\n\
                 rm -f {img}; mkdir -p {mnt}\n\
                 truncate -s 16M {img}\n\
                 mkfs.ext4 -q -F {img} >/dev/null\n\
                 mount -o loop {img} {mnt}\n\
                 fsfreeze -f {mnt}\n\
                 echo \"froze {HUNG_MNT}\"\n"
            ));
            restore.push_str(&format!("fsfreeze -u {mnt}; "));
            format!("echo blocked > {mnt}/write")
        }
        Method::MemoryHog => "tail /dev/zero".to_string(),
    };
    // The restore runs only when the crash did not happen (the kernel is still up).
    let body = format!("sleep 2; {provoke} & sleep {RESTORE_AFTER_SECS}; {restore}true");
    let body = format!("{} sh{old_args}", sh_quote(&body));
    s.push_str(&format!(
        "if command -v systemd-run >/dev/null 2>&1; then\n\
           systemd-run --quiet --no-block --collect sh -c {body}\n\
         else\n\
           nohup sh -c {body} >/dev/null 2>&1 &\n\
         fi\n\
         echo triggered\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_name_clap_accepts() {
        use clap::ValueEnum;
        for k in CrashKind::ALL {
            assert_eq!(CrashKind::from_str(k.name(), false), Ok(k), "{k:?}");
        }
        assert_eq!(CrashKind::default(), CrashKind::Sysrq);
    }

    #[test]
    fn lkdtm_points() {
        let points: Vec<_> = CrashKind::ALL.iter().map(|k| k.lkdtm_point()).collect();
        assert_eq!(
            points,
            [
                None,
                Some("PANIC"),
                Some("BUG"),
                Some("EXCEPTION"),
                Some("WARNING"),
                Some("HUNG_TASK"),
                Some("SOFTLOCKUP"),
                None
            ]
        );
        assert_eq!(CrashKind::without_lkdtm(), ["sysrq", "hung-task", "oom"]);
    }

    #[test]
    fn method_depends_on_lkdtm() {
        let all: Vec<String> = ["PANIC", "BUG", "EXCEPTION", "WARNING", "HUNG_TASK"]
            .map(String::from)
            .into();
        assert_eq!(
            CrashKind::Warning.method(Some(&all)),
            Some(Method::Lkdtm("WARNING"))
        );
        assert_eq!(CrashKind::Warning.method(None), None);
        assert_eq!(
            CrashKind::SoftLockup.method(Some(&all)),
            None,
            "a kernel whose lkdtm lacks the point"
        );
        assert_eq!(
            CrashKind::HungTask.method(Some(&all)),
            Some(Method::Lkdtm("HUNG_TASK"))
        );
        assert_eq!(CrashKind::HungTask.method(None), Some(Method::FrozenFs));
        assert_eq!(CrashKind::Sysrq.method(None), Some(Method::Sysrq));
        assert_eq!(CrashKind::Oom.method(None), Some(Method::MemoryHog));
    }

    #[test]
    fn sysctls_make_each_report_a_panic() {
        let names: Vec<(CrashKind, Vec<String>)> = CrashKind::ALL
            .iter()
            .map(|&k| {
                let v = k.sysctls().into_iter().map(|(p, v)| format!("{p}={v}"));
                (k, v.collect())
            })
            .collect();
        let want: [(CrashKind, &[&str]); 8] = [
            (CrashKind::Sysrq, &[]),
            (CrashKind::Panic, &[]),
            (CrashKind::Bug, &["kernel/panic_on_oops=1"]),
            (CrashKind::Oops, &["kernel/panic_on_oops=1"]),
            (CrashKind::Warning, &["kernel/panic_on_warn=1"]),
            (
                CrashKind::HungTask,
                &[
                    "kernel/hung_task_panic=1",
                    "kernel/hung_task_timeout_secs=10",
                ],
            ),
            (CrashKind::SoftLockup, &["kernel/softlockup_panic=1"]),
            (CrashKind::Oom, &["vm/panic_on_oom=1"]),
        ];
        for ((k, got), (wk, w)) in names.iter().zip(want) {
            assert_eq!(*k, wk);
            assert_eq!(got, w, "{k:?}");
        }
    }

    /// The expected titles are what triage really names such reports (logs shaped like a
    /// Debian 6.1 kernel prints them; the lab's own captures are in tests/fixtures/triage/lab/).
    #[test]
    fn expected_titles_match_triage() {
        let cases: [(CrashKind, &str); 7] = [
            (
                CrashKind::Panic,
                "[  50.1] lkdtm: Performing direct entry PANIC\n[  50.1] Kernel panic - not syncing: dumptest\n[  50.1] CPU: 0 PID: 7 Comm: sh Not tainted 6.1.0-50-amd64 #1  Debian 6.1.158-1\n[  50.1] Call Trace:\n[  50.1]  <TASK>\n[  50.1]  dump_stack_lvl+0x44/0x5c\n[  50.1]  panic+0x118/0x2ed\n[  50.1]  lkdtm_PANIC+0x16/0x20 [lkdtm]\n[  50.1]  lkdtm_do_action+0x11/0x20 [lkdtm]\n[  50.1]  direct_entry+0x8d/0xd0 [lkdtm]\n[  50.1]  full_proxy_write+0x5c/0x80\n[  50.1]  vfs_write+0xe5/0x400\n",
            ),
            (
                CrashKind::Bug,
                "[  50.1] lkdtm: Performing direct entry BUG\n[  50.1] ------------[ cut here ]------------\n[  50.1] kernel BUG at drivers/misc/lkdtm/bugs.c:78!\n[  50.1] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n[  50.1] CPU: 0 PID: 7 Comm: sh Not tainted 6.1.0-50-amd64 #1  Debian 6.1.158-1\n[  50.1] RIP: 0010:lkdtm_BUG+0x5/0x10 [lkdtm]\n[  50.1] Call Trace:\n[  50.1]  <TASK>\n[  50.1]  lkdtm_do_action+0x11/0x20 [lkdtm]\n[  50.1]  direct_entry+0x8d/0xd0 [lkdtm]\n[  50.1]  full_proxy_write+0x5c/0x80\n[  50.1]  vfs_write+0xe5/0x400\n[  50.2] Kernel panic - not syncing: Fatal exception\n",
            ),
            (
                CrashKind::Oops,
                "[  50.1] lkdtm: Performing direct entry EXCEPTION\n[  50.1] BUG: kernel NULL pointer dereference, address: 0000000000000000\n[  50.1] #PF: supervisor write access in kernel mode\n[  50.1] Oops: 0002 [#1] PREEMPT SMP NOPTI\n[  50.1] CPU: 0 PID: 7 Comm: sh Not tainted 6.1.0-50-amd64 #1  Debian 6.1.158-1\n[  50.1] RIP: 0010:lkdtm_EXCEPTION+0x6/0x10 [lkdtm]\n[  50.1] Call Trace:\n[  50.1]  <TASK>\n[  50.1]  lkdtm_do_action+0x11/0x20 [lkdtm]\n[  50.1]  direct_entry+0x8d/0xd0 [lkdtm]\n[  50.1]  full_proxy_write+0x5c/0x80\n[  50.1]  vfs_write+0xe5/0x400\n[  50.2] Kernel panic - not syncing: Fatal exception\n",
            ),
            (
                CrashKind::Warning,
                "[  50.1] lkdtm: Performing direct entry WARNING\n[  50.1] ------------[ cut here ]------------\n[  50.1] WARNING: CPU: 0 PID: 7 at drivers/misc/lkdtm/bugs.c:93 lkdtm_WARNING+0x9/0x10 [lkdtm]\n[  50.1] CPU: 0 PID: 7 Comm: sh Not tainted 6.1.0-50-amd64 #1  Debian 6.1.158-1\n[  50.1] RIP: 0010:lkdtm_WARNING+0x9/0x10 [lkdtm]\n[  50.1] Call Trace:\n[  50.1]  <TASK>\n[  50.1]  lkdtm_do_action+0x11/0x20 [lkdtm]\n[  50.1]  direct_entry+0x8d/0xd0 [lkdtm]\n[  50.1]  full_proxy_write+0x5c/0x80\n[  50.2] Kernel panic - not syncing: kernel: panic_on_warn set ...\n",
            ),
            (
                CrashKind::HungTask,
                "[ 200.1] INFO: task sh:812 blocked for more than 10 seconds.\n[ 200.1]       Not tainted 6.1.0-50-amd64 #1 Debian 6.1.158-1\n[ 200.1] task:sh              state:D stack:0     pid:812   ppid:1      flags:0x00004002\n[ 200.1] Call Trace:\n[ 200.1]  <TASK>\n[ 200.1]  __schedule+0x34d/0x9e0\n[ 200.1]  schedule+0x5a/0xd0\n[ 200.1]  percpu_rwsem_wait+0x113/0x130\n[ 200.1]  __percpu_down_read+0x6d/0xb0\n[ 200.1]  mnt_want_write+0x8b/0xa0\n[ 200.1]  path_openat+0x9a2/0x1000\n[ 200.1]  do_filp_open+0xaf/0x160\n[ 200.2] Kernel panic - not syncing: hung_task: blocked tasks\n",
            ),
            (
                CrashKind::SoftLockup,
                "[  80.1] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [sh:7]\n[  80.1] CPU: 0 PID: 7 Comm: sh Tainted: G             L     6.1.0-50-amd64 #1  Debian 6.1.158-1\n[  80.1] RIP: 0010:lkdtm_SOFTLOCKUP+0x15/0x20 [lkdtm]\n[  80.1] Call Trace:\n[  80.1]  <TASK>\n[  80.1]  lkdtm_do_action+0x11/0x20 [lkdtm]\n[  80.1]  direct_entry+0x8d/0xd0 [lkdtm]\n[  80.1]  full_proxy_write+0x5c/0x80\n[  80.2] Kernel panic - not syncing: softlockup: hung tasks\n",
            ),
            (
                CrashKind::Oom,
                "[  90.1] tail invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), order=0, oom_score_adj=0\n[  90.1] CPU: 0 PID: 700 Comm: tail Not tainted 6.1.0-50-amd64 #1  Debian 6.1.158-1\n[  90.1] Call Trace:\n[  90.1]  <TASK>\n[  90.1]  dump_stack_lvl+0x44/0x5c\n[  90.1]  dump_header+0x4a/0x211\n[  90.1]  out_of_memory.cold+0xa/0x5e\n[  90.1]  __alloc_pages_slowpath.constprop.0+0xc9b/0xe20\n[  90.2] Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled\n",
            ),
        ];
        for (kind, log) in cases {
            let reports = netdump_triage::analyze(log);
            let fatal = netdump_triage::fatal(&reports).expect("a crash");
            assert!(
                kind.matches(&fatal.title, &fatal.kind),
                "{kind:?}: triage says {:?} ({})",
                fatal.title,
                fatal.kind
            );
            for other in CrashKind::ALL.into_iter().filter(|k| *k != kind) {
                assert!(
                    !other.matches(&fatal.title, &fatal.kind),
                    "{other:?} also matches {kind:?}'s {:?}",
                    fatal.title
                );
            }
        }
        let sysrq = "[ 9.0] sysrq: Trigger a crash\n[ 9.0] Kernel panic - not syncing: sysrq triggered crash\n";
        let r = netdump_triage::analyze(sysrq);
        let f = netdump_triage::fatal(&r).unwrap();
        assert!(CrashKind::Sysrq.matches(&f.title, &f.kind));
        assert!(!CrashKind::Panic.matches(&f.title, &f.kind));
    }

    #[test]
    fn parses_lkdtm_probe() {
        assert_eq!(
            parse_lkdtm_probe("debugfs=1\nlkdtm=1\npoint=PANIC\npoint=BUG\n"),
            LkdtmProbe::Available(vec!["PANIC".into(), "BUG".into()])
        );
        assert_eq!(
            parse_lkdtm_probe("debugfs=1\nlkdtm=0\n"),
            LkdtmProbe::Absent {
                module: false,
                debugfs: true
            }
        );
        assert_eq!(
            parse_lkdtm_probe("lkdtm=0\nmodule=1\n"),
            LkdtmProbe::Absent {
                module: true,
                debugfs: false
            }
        );
        assert_eq!(
            parse_lkdtm_probe(""),
            LkdtmProbe::Absent {
                module: false,
                debugfs: false
            }
        );
    }

    #[test]
    fn trigger_scripts() {
        let sysrq = trigger_script(CrashKind::Sysrq, Method::Sysrq);
        assert!(sysrq.contains("echo c > /proc/sysrq-trigger"), "{sysrq}");
        assert!(!sysrq.contains("/proc/sys/kernel/"), "{sysrq}");
        assert!(sysrq.trim_end().ends_with("echo triggered"));

        let warn = trigger_script(CrashKind::Warning, Method::Lkdtm("WARNING"));
        assert!(
            warn.contains("echo 1 > '/proc/sys/kernel/panic_on_warn'"),
            "{warn}"
        );
        assert!(
            warn.contains("no sysctl kernel.panic_on_warn: this kernel lacks it"),
            "{warn}"
        );
        assert!(
            warn.contains("echo WARNING > /sys/kernel/debug/provoke-crash/DIRECT"),
            "{warn}"
        );
        // The sysctl is set before the detached crash starts, and restored if it never came.
        let set = warn.find("> '/proc/sys/kernel/panic_on_warn'").unwrap();
        let run = warn.find("systemd-run").unwrap();
        assert!(set < run);
        assert!(
            warn.contains(
                r#"echo "$1" > '\''/proc/sys/kernel/panic_on_warn'\''; true' sh "$old0""#
            ),
            "{warn}"
        );

        let hung = trigger_script(CrashKind::HungTask, Method::FrozenFs);
        assert!(
            hung.contains("fsfreeze -f '/run/netdump-provision-hung'"),
            "{hung}"
        );
        assert!(hung.contains("fsfreeze -u "), "thawed if no crash: {hung}");
        assert!(hung.contains("hung_task_timeout_secs"), "{hung}");

        let oom = trigger_script(CrashKind::Oom, Method::MemoryHog);
        assert!(oom.contains("tail /dev/zero"), "{oom}");
        assert!(oom.contains("/proc/sys/vm/panic_on_oom"), "{oom}");
    }

    /// A crash that never comes leaves the host as it was: the detached shell puts the old
    /// sysctl value back. Run for real with `/proc/sys` moved to a temporary directory, the
    /// crash point replaced by `true` and no waiting.
    #[test]
    fn sysctls_are_restored_when_no_crash_comes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sys");
        std::fs::create_dir_all(root.join("kernel")).unwrap();
        let file = root.join("kernel/panic_on_warn");
        std::fs::write(&file, "0\n").unwrap();
        let script = trigger_script(CrashKind::Warning, Method::Lkdtm("WARNING"))
            .replace("/proc/sys/", &format!("{}/", root.display()))
            .replace(
                "echo WARNING > /sys/kernel/debug/provoke-crash/DIRECT",
                "true",
            )
            .replace(&format!("sleep {RESTORE_AFTER_SECS}"), "sleep 0")
            .replace("sleep 2", "sleep 0")
            .replace("command -v systemd-run", "false");
        assert!(!script.contains("provoke-crash"), "{script}");
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "sysctl kernel.panic_on_warn=1\ntriggered\n"
        );
        // The detached shell restores "0"; wait for it (bounded), then check.
        let mut value = String::new();
        for _ in 0..500 {
            value = std::fs::read_to_string(&file).unwrap();
            if value == "0\n" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(value, "0\n", "the old value is back");
    }

    /// The scripts are valid POSIX shell (`sh -n`), whatever the kind.
    #[test]
    fn scripts_parse_as_sh() {
        let mut scripts = vec![lkdtm_probe_script()];
        for k in CrashKind::ALL {
            for m in [
                k.method(Some(
                    &[
                        "PANIC",
                        "BUG",
                        "EXCEPTION",
                        "WARNING",
                        "HUNG_TASK",
                        "SOFTLOCKUP",
                    ]
                    .map(String::from),
                )),
                k.method(None),
            ]
            .into_iter()
            .flatten()
            {
                scripts.push(trigger_script(k, m));
            }
        }
        for s in scripts {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", &s])
                .output()
                .expect("sh");
            assert!(
                out.status.success(),
                "{s}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The lab's real crashes (tests/fixtures/triage/lab/README.md): the kdump `dmesg.<stamp>` and
/// the receiver's console crash record `log` that arrived for each kind test-crash provoked,
/// triaged the way test-crash and triage on arrival do.
#[cfg(test)]
mod lab_fixtures {
    use super::CrashKind;

    /// (directory, kind provoked, exact title triage gives).
    const CASES: &[(&str, CrashKind, &str)] = &[(
        "hung-task",
        CrashKind::HungTask,
        "INFO: task hung in percpu_rwsem_wait",
    )];

    fn read(dir: &str, file: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/triage/lab")
            .join(dir)
            .join(file);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn each_lab_crash_is_the_kind_it_was_provoked_as() {
        for &(dir, kind, title) in CASES {
            // The dump's kernel log, as test-crash's verify phase reads it.
            let c = crate::crashtest::verify::crash_summary(&read(dir, "dmesg.txt"), "")
                .unwrap_or_else(|| panic!("{dir}: no crash in dmesg.txt"));
            assert_eq!(c.title, title, "{dir}: dmesg.txt");
            assert!(kind.matches(&c.title, &c.kind), "{dir}: {c:?}");
            // The console crash record (receiver prefixes and all), as the receiver triages it
            // when the record closes: the same crash, the same signature.
            let reports = netdump_triage::analyze(&read(dir, "console-record.log"));
            let r = netdump_triage::fatal(&reports)
                .unwrap_or_else(|| panic!("{dir}: no crash in console-record.log"));
            assert_eq!(r.title, title, "{dir}: console-record.log");
            assert_eq!(r.kind, c.kind, "{dir}");
            assert_eq!(r.signature, c.signature, "{dir}: one crash, one signature");
            assert!(r.panicked, "{dir}");
            // The lab's guest kernel (from the report or the dump log's boot banner).
            let dmesg = netdump_triage::analyze(&read(dir, "dmesg.txt"));
            let kernel = netdump_triage::fatal(&dmesg).and_then(|r| r.kernel.clone());
            assert_eq!(kernel.as_deref(), Some("6.1.0-50-amd64"), "{dir}");
        }
    }
}
