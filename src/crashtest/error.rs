//! Why a host's crash test failed. Every message names the host, the step and what to do; the
//! text is what the human output, the JSON `error` and the JUnit failure message show.

use crate::ssh::SshError;

#[derive(Debug, thiserror::Error)]
pub enum CrashTestError {
    /// Transport failures (connect, host keys, timeouts) already name host, step and fix.
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(
        "{host}: step '{step}' failed (exit {status}): {stderr}; fix what it says on {host} (steps run as the inventory's user, through sudo with ansible_become) and run test-crash again"
    )]
    StepFailed {
        host: String,
        step: String,
        status: String,
        stderr: String,
    },
    #[error(
        "{host}: preflight: cannot read the host's facts: {reason}; check that `sh` and coreutils work there"
    )]
    Facts { host: String, reason: String },
    #[error(
        "{host}: preflight: the netdump service is not running; run `provision apply` and check `service netdump status`"
    )]
    NetdumpNotRunning { host: String },
    #[error(
        "{host}: preflight: kdump is not armed (/sys/kernel/kexec_crash_loaded is not 1; crashkernel reserved: {reserved} bytes); run `provision apply` (a reboot may be required for crashkernel=)"
    )]
    KdumpNotArmed { host: String, reserved: u64 },
    #[error(
        "{host}: preflight: no route to the server {server_address}; check the client's network and `netdump_server_address`"
    )]
    NoRoute {
        host: String,
        server_address: String,
    },
    #[error(
        "{host}: preflight: the client reports source address {reported:?}, which is not an IP address; check `ip route get` on it"
    )]
    BadSourceAddress { host: String, reported: String },
    #[error(
        "{server}: preflight: only {free_kb} KiB free in {dump_dir}; free space before crashing clients"
    )]
    LowSpace {
        server: String,
        free_kb: u64,
        dump_dir: String,
    },
    #[error(
        "{host}: preflight: --kind {kind} needs lkdtm, and kernel {kernel} has none ({why}); use a kernel built with CONFIG_LKDTM (=m or =y), or one of --kind {others}"
    )]
    NoLkdtm {
        host: String,
        kind: &'static str,
        kernel: String,
        why: String,
        others: String,
    },
    #[error(
        "{host}: preflight: lkdtm on kernel {kernel} has no crash point {point} (needed by --kind {kind}); it offers: {offered}"
    )]
    NoLkdtmPoint {
        host: String,
        kind: &'static str,
        kernel: String,
        point: &'static str,
        offered: String,
    },
    #[error(
        "{host}: console: the receiver on {server} logged no crash from {ip} within {secs}s; check netconsole on the client and the receiver service (or raise --crash-timeout)"
    )]
    NoCrashSeen {
        host: String,
        server: String,
        ip: String,
        secs: u64,
    },
    #[error(
        "{host}: dump: no complete dump for {ip} appeared in {server}:{dump_dir} within {secs}s; check the client's capture kernel (kdump-tools / makedumpfile) and its ssh access to the server"
    )]
    NoDump {
        host: String,
        server: String,
        ip: String,
        dump_dir: String,
        secs: u64,
    },
    #[error(
        "{host}: dump: {server}:{dir} is still incomplete after {secs}s ({incomplete}): the transfer broke or is too slow; check the capture kernel's console and free space on the server, or raise --dump-timeout"
    )]
    DumpIncomplete {
        host: String,
        server: String,
        dir: String,
        incomplete: String,
        secs: u64,
    },
    #[error(
        "{host}: verify: cannot read the header of {path}: {reason}; check that `od` (coreutils) works on the server"
    )]
    Header {
        host: String,
        path: String,
        reason: String,
    },
    #[error("{host}: verify: {path} is not a dump (unknown header); look at it with `file`")]
    NotADump { host: String, path: String },
    #[error(
        "{host}: verify: {path} is only {size} bytes: truncated; check free space on the server and the capture kernel's log"
    )]
    Truncated {
        host: String,
        path: String,
        size: u64,
    },
    #[error(
        "{host}: verify: {dir} holds no kernel log (dmesg); check the dump tool's configuration"
    )]
    NoKernelLog { host: String, dir: String },
    #[error(
        "{host}: verify: {path} does not contain the {expected} line; the dump may be of another crash"
    )]
    NoCrashInLog {
        host: String,
        path: String,
        expected: &'static str,
    },
    #[error(
        "{host}: verify: --kind {kind} expects a crash titled `{expected_title}…` ({expected_kind}), but {path} shows `{title}` ({got_kind}); the kernel crashed some other way — read that log"
    )]
    UnexpectedCrash {
        host: String,
        kind: &'static str,
        expected_title: &'static str,
        expected_kind: &'static str,
        path: String,
        title: String,
        got_kind: String,
        signature: String,
    },
    #[error(
        "{host}: verify: --kind {kind} expects a crash titled `{expected_title}…`, but triage finds no crash report in {path}; read that log"
    )]
    NoCrashReport {
        host: String,
        kind: &'static str,
        expected_title: &'static str,
        path: String,
    },
    #[error(
        "{host}: reboot: did not come back with a new boot id within {secs}s; look at its console (the capture kernel may hang, or the machine may not reboot after a dump), or raise --reboot-timeout"
    )]
    NoReboot { host: String, secs: u64 },
}
