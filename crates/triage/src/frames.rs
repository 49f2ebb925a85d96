//! Stack frames: reading a function name out of a trace line or an instruction-pointer line,
//! finding a report's call trace, and telling the kernel's generic helpers (reporting
//! machinery, allocators, locks, string functions, scheduler waits) from the code that crashed.

use std::sync::LazyLock;

use regex::Regex;

/// Frames kept per call trace (the top of the stack is what matters; the cap bounds memory).
pub const MAX_FRAMES: usize = 64;

/// A frame of a call trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub name: String,
    /// Printed after the interrupt part of the stack ended (`</IRQ>`, `<EOI>`): the code the
    /// interrupt (timer, NMI) found running.
    pub after_irq: bool,
}

/// A function name normalized: compiler clone suffixes (`.constprop.0`, `.isra.3`, `.cold`)
/// dropped so the same function is named the same in every build.
pub fn normalize(name: &str) -> &str {
    if name.starts_with('<') {
        return name; // Rust paths: `<T as Trait>::f`
    }
    match name.find('.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

fn valid_name(name: &str) -> bool {
    let Some(first) = name.chars().next() else {
        return false;
    };
    if name.len() > 200 || !(first.is_ascii_alphabetic() || first == '_' || first == '<') {
        return false;
    }
    if first == '<' {
        return name.contains("::");
    }
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'$')
}

/// Splits `name+0x1f/0x40 ...` into the name; `None` when the offset is not there.
fn name_before_offset(s: &str) -> Option<&str> {
    let plus = s.find("+0x")?;
    let after = &s[plus + 3..];
    let hex_end = after
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(after.len());
    if hex_end == 0 {
        return None;
    }
    let after = &after[hex_end..];
    if !(after.is_empty() || after.starts_with("/0x") || after.starts_with(' ')) {
        return None;
    }
    Some(s[..plus].trim())
}

/// Reads a call-trace line: ` func+0x1f/0x40`, ` ? func+0x1f/0x40` (unreliable),
/// `[<ffffffff81234567>] func+0x1f/0x40`, ` func file.c:12 [inline]`,
/// `[<c0123456>] (func) from [<c0123400>] (caller)`. Returns the name and whether the kernel
/// trusted it (`?` frames are leftovers found on the stack, not callers).
pub fn parse_frame(msg: &str) -> Option<(&str, bool)> {
    let mut s = msg.trim_start();
    let mut reliable = true;
    while let Some(rest) = s.strip_prefix("[<") {
        let end = rest.find(">]")?;
        s = rest[end + 2..].trim_start();
    }
    // powerpc: `[c00000003ae5b800] [c00000000135c19c] func+0x128/0x1cc (unreliable)`,
    // `--- interrupt: 700 at func+0x2c/0x70`
    while let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        if !rest[..end].bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        s = rest[end + 1..].trim_start();
    }
    if let Some(rest) = s.strip_prefix("--- interrupt: ") {
        s = rest.split_once(" at ")?.1;
    }
    if s.ends_with("(unreliable)") {
        reliable = false;
    }
    if let Some(rest) = s.strip_prefix("? ") {
        reliable = false;
        s = rest.trim_start();
    }
    // arm32: `[<c0123456>] (func+0x10/0x20) from [<...>] (caller+0x...)`
    if let Some(rest) = s.strip_prefix('(') {
        let end = rest.find(')')?;
        let inner = &rest[..end];
        let name = name_before_offset(inner).unwrap_or(inner);
        return valid_name(name).then_some((name, reliable));
    }
    if let Some(name) = name_before_offset(s) {
        return (valid_name(name) && !name.contains(' ')).then_some((name, reliable));
    }
    // Symbolized inline frames: `func path/file.c:123 [inline]`
    let mut words = s.split_whitespace();
    let name = words.next()?;
    let loc = words.next()?;
    let inline = loc == "[inline]" || words.next() == Some("[inline]");
    let is_loc = loc.contains(".c:") || loc.contains(".h:") || loc.contains(".rs:");
    (valid_name(name) && (inline || is_loc)).then_some((name, reliable))
}

/// 2.6-era x86_64 frames, several per line: `<ffffffff8021b6d7>{__handle_sysrq+115}`.
/// Yields each name with whether it was trusted (no `?`... these kernels print none).
pub fn brace_frames(s: &str) -> impl Iterator<Item = (&str, bool)> {
    s.split(">{").skip(1).filter_map(|part| {
        let inner = part.split('}').next()?;
        let name = inner.split('+').next()?.trim();
        valid_name(name).then_some((name, true))
    })
}

/// Reads the function an instruction-pointer line names: `RIP: 0010:func+0x1/0x2`,
/// `IP: [<ffffffff81234567>] func+0x1/0x2`, `EIP: func+..`, `pc : func+0x1/0x2`,
/// `PC is at func+0x1/0x2`, `NIP [c000] func+0x1/0x2`. `None` for a bare address.
pub fn parse_ip(msg: &str) -> Option<&str> {
    static IP: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^\s*(?:RIP:? +(?:[0-9a-f]{4}:)?|EIP: (?:[0-9a-f]{4}:)?|EIP is at |IP: |pc : |PC is at |NIP \[[0-9a-f]+\] |epc\s*: [0-9a-f]+ )(?:\[<[0-9a-f]+>\]\s*)*(.*)$").unwrap()
    });
    let caps = IP.captures(msg)?;
    let rest = caps.get(1)?.as_str();
    // 2.6-era x86_64: `RIP: 0010:[<ffffffff8021b4d3>] <ffffffff8021b4d3>{func+0}`
    if let Some((name, _)) = brace_frames(rest).next() {
        return Some(name);
    }
    let name = name_before_offset(rest)?;
    valid_name(name).then_some(name)
}

/// Lines that start a call trace.
pub fn is_trace_start(msg: &str) -> bool {
    let t = msg.trim();
    matches!(
        t,
        "Call Trace:" | "Call trace:" | "Backtrace:" | "backtrace:" | "Stack backtrace:"
    ) || t.starts_with("Call Trace:")
        || t.starts_with("backtrace (crc")
}

/// Lines after which the first call trace is over (the next one belongs to something else:
/// the allocation stack of a KASAN report, another CPU, the panic path).
pub fn is_trace_end(msg: &str) -> bool {
    let t = msg.trim_start();
    t.is_empty()
        || t.starts_with("---[ end")
        || t.starts_with("Kernel Offset")
        || t.starts_with("Kernel panic")
        || t.starts_with("Allocated by task")
        || t.starts_with("Freed by task")
        || t.starts_with("Freed:")
        || t.starts_with("Memory state around")
        || t.starts_with("The buggy address")
        || t.starts_with("Uninit was ")
        || t.starts_with("Local variable")
        || t.starts_with("Bytes ")
        || t.starts_with("Last potentially related")
        || t.starts_with("Second to last")
        || t.starts_with("NMI backtrace for cpu")
        || t.starts_with("Sending NMI")
        || t.starts_with("Showing all locks")
        || t.starts_with("Dumping ftrace")
        || t.starts_with("Rebooting in")
        || t.starts_with("Modules linked in")
        || t.starts_with("irq event stamp")
        || t.starts_with("=====")
        || t.starts_with("read to ")
        || t.starts_with("write to ")
        || t.starts_with("value changed")
        || t.starts_with("Reported by")
        || t.starts_with("Mem-Info")
        || t.starts_with("unreferenced object")
        || t.starts_with("INFO: task ")
}

/// Lines that may sit inside a trace without ending it: registers and code bytes printed
/// between the interrupt and task parts, stack markers.
pub fn is_trace_filler(msg: &str) -> bool {
    static FILLER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^\s*(?:<[/A-Z#]+>\s*$|RIP: |RSP: |R[A-Z0-9]{1,2}: |Code: |FS: |CS: |DS: |CR[0-9]: |DR[0-9]: |PKRU: |ORIG_RAX|EFLAGS|EIP: |EAX: |ESI: |sp : |pc : |lr : |x[0-9]+ ?: |pstate: |Exception stack|Stack: |[0-9a-f]{8,16}(?: [0-9a-f]{8,16})+\s*$|Hardware name|task: |CPU: |Workqueue: )").unwrap()
    });
    FILLER.is_match(msg)
}

/// Stack markers and what they say about the interrupt context.
fn irq_marker(t: &str) -> Option<(&str, Option<bool>)> {
    for (m, after) in [
        ("<IRQ>", Some(false)),
        ("<NMI>", Some(false)),
        ("<SOFTIRQ>", Some(false)),
        ("</IRQ>", Some(true)),
        ("</NMI>", Some(true)),
        ("</SOFTIRQ>", Some(true)),
        ("<EOI>", Some(true)),
        ("<TASK>", None),
        ("</TASK>", None),
    ] {
        if let Some(rest) = t.strip_prefix(m) {
            return Some((rest, after));
        }
    }
    None
}

/// The first call trace in `lines` (each the message text of one report line): frames in
/// order, `?` frames left out. Stops at the first line that ends a trace, or after `MAX_FRAMES`.
pub fn first_trace(lines: &[String]) -> Vec<Frame> {
    // Sanitizer reports (KMSAN, KCSAN, newer KASAN) print frames right under the header.
    if lines.get(1).is_some_and(|l| parse_frame(l).is_some()) {
        return trace_from(&lines[1..]);
    }
    let Some(start) = lines.iter().position(|l| is_trace_start(l)) else {
        return Vec::new();
    };
    // 2.6-era x86_64 puts the first frames on the `Call Trace:` line itself.
    let from = if lines[start].contains(">{") {
        start
    } else {
        start + 1
    };
    trace_from(&lines[from..])
}

/// Every call trace in `lines`, in order.
pub fn all_traces(lines: &[String]) -> Vec<Vec<Frame>> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_trace_start(l))
        .take(16)
        .map(|(i, _)| trace_from(&lines[i + 1..]))
        .collect()
}

/// arm32 `[<c0123456>] (func) from [<c0123400>] (caller+0x10/0x20)`: the caller.
fn arm_caller(t: &str) -> Option<&str> {
    let (_, rest) = t.split_once(") from [<")?;
    let open = rest.find("] (")?;
    let inner = rest[open + 3..].split(')').next()?;
    let name = name_before_offset(inner).unwrap_or(inner).trim();
    valid_name(name).then_some(name)
}

/// Frames from the start of `lines` until the trace ends.
pub fn trace_from(lines: &[String]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut after_irq = false;
    let mut junk = 0;
    // The caller named by the last arm32 `from` line (printed as a frame of its own only if
    // the trace goes on).
    let mut arm_from: Option<String> = None;
    for l in lines {
        let mut t = l.trim_start();
        while let Some((rest, after)) = irq_marker(t) {
            if let Some(a) = after {
                after_irq = a;
            }
            t = rest.trim_start();
        }
        if t.is_empty() && l.trim().len() != l.len() {
            continue; // a marker alone on its line
        }
        if is_trace_start(t) && !frames.is_empty() {
            break; // the next trace (another task or CPU)
        }
        let t = t.strip_prefix("Call Trace:").unwrap_or(t);
        if t.contains(">{") {
            junk = 0;
            for (name, _) in brace_frames(t) {
                if frames.len() < MAX_FRAMES {
                    frames.push(Frame {
                        name: normalize(name).to_string(),
                        after_irq,
                    });
                }
            }
            continue;
        }
        if let Some((name, reliable)) = parse_frame(t) {
            junk = 0;
            arm_from = arm_caller(t).map(|c| normalize(c).to_string());
            // arm64 prints no <IRQ> markers: the interrupt vector's frame separates the
            // interrupt from the code it interrupted.
            if matches!(normalize(name), "el1h_64_irq" | "el1_irq" | "el1_interrupt") && !after_irq
            {
                after_irq = true;
                continue;
            }
            if reliable {
                frames.push(Frame {
                    name: normalize(name).to_string(),
                    after_irq,
                });
                if frames.len() >= MAX_FRAMES {
                    break;
                }
            }
            continue;
        }
        if is_trace_end(t) && !(t.is_empty() && frames.is_empty()) {
            break;
        }
        if let Some(c) = arm_from.take()
            && frames.len() < MAX_FRAMES
        {
            frames.push(Frame { name: c, after_irq });
        }
        if let Some(name) = parse_ip(t) {
            // The interrupted instruction of the task part (printed between `</IRQ>` and the
            // task's frames): the innermost frame of that part.
            if after_irq {
                frames.push(Frame {
                    name: normalize(name).to_string(),
                    after_irq,
                });
            }
            continue;
        }
        if is_trace_filler(t) {
            continue;
        }
        // Other output may sit between a trace's header and its first frame (console lines
        // of other CPUs); once frames flow, a run of non-frame lines ends the trace.
        junk += 1;
        if junk > if frames.is_empty() { 60 } else { 8 } {
            break;
        }
    }
    frames
}

/// Whether a function is generic machinery rather than the code a crash is about: the
/// reporting and exception paths, sanitizer runtimes, allocators, string and copy helpers,
/// locks, waits and the scheduler, list and refcount checks, syscall and interrupt entry.
/// docs/triage.md lists the groups.
pub fn is_generic(name: &str) -> bool {
    static GENERIC: LazyLock<Regex> = LazyLock::new(|| {
        let groups = [
            // reporting, oops and exception paths
            r"dump_stack\w*|__dump_stack|show_stack\w*|show_trace\w*|show_regs\w*|print_\w+|printk\w*|_printk|vprintk\w*|__warn\w*|warn_slowpath\w*|warn_alloc\w*|__warn_printk|report_bug|fixup_bug|do_error_trap|do_trap\w*|do_invalid_op|invalid_op|handle_bug|exc_\w+|asm_exc_\w+|asm_sysvec_\w+|sysvec_\w+|die|__die\w*|oops_\w+|no_context|__bad_area\w*|bad_area\w*|do_page_fault|__do_page_fault|page_fault|async_page_fault|do_user_addr_fault|do_kern_addr_fault|kernelmode_fixup_or_oops|page_fault_oops|spurious_kernel_fault|do_general_protection|general_protection|panic|nmi_\w+|__nmi\w*|do_nmi|default_do_nmi|arch_trigger_\w+|trigger_\w+backtrace\w*|rcu_dump_cpu_stacks|rcu_check_gp_kthread_starvation|check_cpu_stall|print_cpu_stall|rcu_sched_clock_irq|rcu_pending|rcu_check_callbacks|update_process_times|tick_sched_\w+|tick_nohz_\w+|tick_do_update_jiffies64|tick_periodic|tick_handle_periodic|hrtimer_\w+|__hrtimer_\w+|watchdog_timer_fn|lockup_detector\w*|apic_timer_interrupt|smp_apic_timer_interrupt|local_apic_timer_interrupt|__sysvec_\w+|irq_exit\w*|__irq_exit_rcu|irq_enter\w*|__do_softirq|do_softirq\w*|handle_softirqs|invoke_softirq|__local_bh_enable_ip|local_bh_enable|instrument_\w+|ret_from_intr|common_interrupt|arch_stack_walk|stack_trace_\w+|save_stack\w*|__save_stack_trace|el1_\w+|el0_\w+|el1h_\w+|do_mem_abort|do_translation_fault|do_bad_area|__do_kernel_fault|die_kernel_fault|bug_handler|call_break_hook|brk_handler|do_debug_exception|arm64_\w*notify_die|notify_die|__arm64_\w*_exception|kernel_fault",
            // sanitizers and debug objects
            r"kasan_\w+|__kasan_\w+|____kasan_\w+|__asan_\w+|asan_\w+|check_memory_region\w*|kmsan_\w+|__kmsan_\w+|__msan_\w+|kcsan_\w+|__kcsan_\w+|__tsan_\w+|kfence_\w+|__kfence_\w+|ubsan_\w+|__ubsan_\w+|handle_overflow|debug_\w+|__debug_\w+|check_\w*object\w*|__check_object_size|check_heap_object|check_stack_object|usercopy_\w+|__virt_addr_valid|object_err|slab_err|should_fail\w*|fail_dump",
            // lockdep and lock/wait primitives
            r"lockdep_\w+|__lockdep_\w+|lock_acquire\w*|__lock_acquire\w*|lock_release|__lock_release|lock_acquired|lock_contended|lock_is_held\w*|mark_lock\w*|mark_held_locks|mark_usage|validate_chain|check_prev_add|check_prevs_add|check_noncircular|check_deadlock|check_flags|valid_state|__lock_is_held|lock_downgrade|_raw_\w+|__raw_\w+|do_raw_\w+|raw_spin_\w+|spin_\w+|__spin_\w+|queued_\w+|native_queued_\w+|__pv_queued_\w+|pv_queued_\w+|arch_spin_\w+|mutex_lock\w*|__mutex_\w+|mutex_unlock\w*|mutex_trylock\w*|down|down_\w+|__down\w*|up|up_\w+|__up\w*|rwsem_\w+|__rwsem_\w+|rt_mutex\w*|__rt_mutex\w*|rt_spin_\w+|percpu_down_\w+|__percpu_down_\w+|percpu_up_\w+|preempt_count_\w+|__might_sleep|___might_sleep|__might_fault|might_fault|__might_resched|__cant_sleep|__cant_migrate|lock_sock\w*|release_sock|read_lock\w*|write_lock\w*|_read_lock\w*|_write_lock\w*|seqcount_\w+|__seqprop_\w+|check_preemption_disabled|debug_smp_processor_id|__this_cpu_preempt_check",
            // scheduler and waiting
            r"schedule|__schedule|schedule_\w+|__schedule_\w+|io_schedule\w*|preempt_schedule\w*|context_switch|__switch_to\w*|switch_to|finish_task_switch\w*|wait_for_completion\w*|__wait_for_common|wait_for_common\w*|do_wait_for_common|__wait_on_\w+|wait_on_\w+|out_of_line_wait_on_\w+|bit_wait\w*|__wait_event\w*|wait_event\w*|prepare_to_wait\w*|finish_wait|__flush_work|flush_work|wait_woken|rcu_gp_kthread|rcu_gp_fqs_loop|ret_from_fork\w*|secondary_startup\w*|start_secondary|cpu_startup_entry|do_idle|default_idle\w*|arch_cpu_idle|cpuidle_\w+|native_safe_halt|native_irq_enable|arch_local_irq_\w+|__sanitizer_\w+|write_comp_data",
            // allocation and freeing
            r"kmalloc\w*|__kmalloc\w*|kzalloc\w*|kcalloc\w*|krealloc\w*|__krealloc|kvmalloc\w*|kvzalloc\w*|kvfree\w*|kmem_cache_\w+|__kmem_cache_\w+|slab_\w+|__slab_\w+|___slab_\w+|kfree\w*|__kfree\w*|kfree_rcu\w*|kmemdup\w*|kstrdup\w*|kmemleak_\w+|__alloc_pages\w*|alloc_pages\w*|__get_free_pages|get_free_pages\w*|alloc_page\w*|vmalloc\w*|__vmalloc\w*|vzalloc\w*|vfree|__vfree|memdup_user\w*|__do_kmalloc\w*|do_kmalloc\w*|trace_kmalloc\w*|kmem_\w+|__kmem_\w+|setup_object|alloc_debug_processing|free_debug_processing|__free_pages\w*|free_pages\w*|__free_\w+_pages\w*|free_unref_\w+|__put_page|put_page|folio_put|__folio_put|stack_depot_\w+|__stack_depot_\w+",
            // string, copy and list helpers
            r"(?:__)?mem(?:cpy|move|set|cmp|chr|chr_inv|scan|dup)\w*|bcmp|(?:__)?str(?:len|nlen|cpy|ncpy|lcpy|scpy|cat|ncat|lcat|cmp|ncmp|casecmp|ncasecmp|chr|nchr|rchr|str|sep|dup|ndup|to\w+)|sized_strscpy|__fortify_\w+|fortify_\w+|copy_to_user\w*|_copy_to_user|__copy_to_user\w*|copy_from_user\w*|_copy_from_user|__copy_from_user\w*|copy_user_\w+|raw_copy_\w+|copyout|copyin|_copy_to_iter|copy_to_iter|copy_page_to_iter|copy_page_from_iter|copy_from_iter\w*|_copy_from_iter\w*|get_user\w*|put_user\w*|__get_user\w*|__put_user\w*|csum_partial\w*|__list_\w+|list_(?:add|del|move|splice|replace)\w*|__hlist_\w+|hlist_(?:add|del)\w*|refcount_\w+|__refcount_\w+|atomic_\w+|arch_atomic_\w+|bitmap_\w+|find_\w+_bit|__bitmap_\w+|sprintf|snprintf|vsnprintf|scnprintf|vscnprintf|bug_\w+",
            // stack walking, tracing and indirect-call thunks
            r"walk_stackframe|dump_backtrace|unwind_frame|__x86_indirect_thunk_\w+|__x86_return_thunk|perf_trace_\w+|trace_event_raw_event_\w+|__traceiter_\w+|__bpf_trace_\w+|trace_hardirqs_\w+|trace_irq_\w+|__sanitizer_cov_trace_\w+",
            // generic data structures and core-kernel APIs the buggy code calls into
            r"(?:__)?rb_\w+|xa_\w+|__xa_\w+|xas_\w+|idr_\w+|ida_\w+|kobject_\w+|kobj_\w+|kref_\w+|add_uevent_var|device_(?:add|del|register|unregister|release)|put_device|get_device|ref_tracker_\w+|kthread_\w+|(?:__)?cancel_\w*work\w*|flush_\w*work\w*|__queue_work|queue_work\w*|lock_timer_base|(?:__)?mod_timer\w*|add_timer\w*|(?:__)?del_timer\w*|try_to_del_timer_sync|fast_dput|dput|__dput|iput|__iput|skb_(?:panic|over_panic|under_panic|put|push|pull)|\w+_panic|assertfail|osq_lock|mutex_optimistic_spin|\w+_write_lock|\w+_read_lock|task_rq_lock|__task_rq_lock|rq_lock\w*|raw_spin_rq_lock\w*|rollback_registered\w*|unregister_netdevice\w*|find_lock_entries|find_get_entries|truncate_inode_pages\w*|rcu_barrier\w*|call_rwsem_\w+|string|string_nocheck|widen_string|pointer|number|format_decode|_?dev_(?:printk|info|warn|err|notice|dbg|emerg|crit|alert)\w*|dev_vprintk_emit|__dev_printk|nstr|strnstr|get_device_parent|(?:__)?call_rcu\w*|kfree_call_rcu|free_large_kmalloc|(?:__)?folio_wait\w*|(?:__)?folio_lock\w*|wait_on_page\w*|(?:__)?lock_page\w*|_cond_resched|__cond_resched\w*|___preempt_schedule\w*|logic_\w+|do_tag_check_fault|do_tag_recovery|do_sea|mte_\w+",
            // syscall entry
            r"entry_SYSCALL\w*|do_syscall_\w+|do_fast_syscall_\w+|__do_fast_syscall_\w+|syscall_\w+|__syscall_\w+|x64_sys_call|x86_64_sys_call|ia32_sys_call|invoke_syscall|el0_svc\w*|do_el0_svc\w*|__invoke_syscall|ret_fast_syscall|vector_swi",
        ];
        Regex::new(&format!("(?-u)^(?:{})$", groups.join("|"))).unwrap()
    });
    GENERIC.is_match(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_formats() {
        assert_eq!(parse_frame(" foo_bar+0x1f/0x40"), Some(("foo_bar", true)));
        assert_eq!(parse_frame(" ? foo+0x1f/0x40"), Some(("foo", false)));
        assert_eq!(
            parse_frame("[<ffffffff81234567>] foo.isra.3+0x1f/0x40 [mymod]"),
            Some(("foo.isra.3", true))
        );
        assert_eq!(
            parse_frame(" [<ffffffff81234567>] ? foo+0x1f/0x40"),
            Some(("foo", false))
        );
        assert_eq!(
            parse_frame(" __dump_stack lib/dump_stack.c:17 [inline]"),
            Some(("__dump_stack", true))
        );
        assert_eq!(
            parse_frame(" bar+0x10/0x20 net/core/dev.c:123"),
            Some(("bar", true))
        );
        assert_eq!(
            parse_frame("[<c0123456>] (baz+0x10/0x20) from [<c0123400>] (qux+0x1/0x2)"),
            Some(("baz", true))
        );
        assert_eq!(parse_frame("RIP: 0010:foo+0x1/0x2"), None);
        assert_eq!(parse_frame("Modules linked in: a b c"), None);
        assert_eq!(parse_frame("hello world"), None);
    }

    #[test]
    fn ip_formats() {
        assert_eq!(parse_ip("RIP: 0010:foo+0x1/0x2"), Some("foo"));
        assert_eq!(parse_ip("RIP: 0010:foo+0x1/0x2 net/x.c:12"), Some("foo"));
        assert_eq!(
            parse_ip("IP: [<ffffffff81234567>] foo+0x1/0x2"),
            Some("foo")
        );
        assert_eq!(parse_ip("pc : foo+0x1/0x2"), Some("foo"));
        assert_eq!(parse_ip("PC is at foo+0x1/0x2"), Some("foo"));
        assert_eq!(parse_ip("RIP: 0010:0x286"), None);
        assert_eq!(parse_ip("RIP: 0033:0x7f0000001234"), None);
    }

    #[test]
    fn clone_suffixes_dropped() {
        assert_eq!(normalize("foo.constprop.0"), "foo");
        assert_eq!(normalize("foo.cold"), "foo");
        assert_eq!(normalize("<a::B>::c"), "<a::B>::c");
    }

    #[test]
    fn generic_helpers() {
        for g in [
            "dump_stack",
            "kasan_report",
            "__asan_load8",
            "memcmp",
            "_raw_spin_lock_irqsave",
            "mutex_lock_nested",
            "schedule",
            "kmem_cache_alloc_trace",
            "__warn",
        ] {
            assert!(is_generic(g), "{g}");
        }
        for s in [
            "ext4_find_entry",
            "tcp_sendmsg",
            "rtnl_lock",
            "sysrq_handle_crash",
        ] {
            assert!(!is_generic(s), "{s}");
        }
    }

    #[test]
    fn trace_with_irq_part_and_registers() {
        let lines: Vec<String> = [
            "Call Trace:",
            " <IRQ>",
            " dump_stack+0x1/0x2",
            " rcu_dump_cpu_stacks+0x1/0x2",
            " </IRQ>",
            " <TASK>",
            "RIP: 0010:my_loop+0x1/0x2",
            "RSP: 0018:ffffc900 EFLAGS: 00000246",
            " my_caller+0x1/0x2",
            " ? junk+0x1/0x2",
            " </TASK>",
            "---[ end trace 0000000000000000 ]---",
            " not_this+0x1/0x2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let f = first_trace(&lines);
        let names: Vec<_> = f.iter().map(|f| (f.name.as_str(), f.after_irq)).collect();
        assert_eq!(
            names,
            [
                ("dump_stack", false),
                ("rcu_dump_cpu_stacks", false),
                ("my_loop", true),
                ("my_caller", true)
            ]
        );
    }
}
