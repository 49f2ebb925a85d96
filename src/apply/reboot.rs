//! `apply --reboot`: a kdump client that needs a boot for its crashkernel reservation is
//! rebooted and waited for until it is back with a capture kernel loaded.

use std::time::{Duration, Instant};

use super::Connector;
use super::stop::Stop;
use crate::ssh::{Remote, RemoteCommand, Target};

/// Reboots a host (detached, so the ssh step returns), waits for it to come back with a new boot
/// id, then waits for the capture kernel to be loaded. Returns `kexec_crash_loaded`.
pub(super) async fn reboot_and_wait(
    host: &str,
    target: &Target,
    remote: &dyn Remote,
    old_boot_id: &str,
    connector: &dyn Connector,
    deadline: Duration,
) -> Result<bool, Stop> {
    let script = "if command -v systemd-run >/dev/null 2>&1; then \
                    systemd-run --quiet --no-block --collect sh -c 'sleep 2; reboot'; \
                  else nohup sh -c 'sleep 2; reboot' >/dev/null 2>&1 & fi";
    remote.run(RemoteCommand::new("reboot", script)).await?;
    let end = Instant::now() + deadline;
    tokio::time::sleep(Duration::from_secs(5)).await;
    while Instant::now() < end {
        if let Ok(r) = connector.connect(target).await {
            let probe = "cat /proc/sys/kernel/random/boot_id; cat /sys/kernel/kexec_crash_loaded 2>/dev/null || echo 0";
            if let Ok(out) = r.run(RemoteCommand::new("boot id", probe)).await {
                let text = out.stdout_str();
                let mut lines = text.lines();
                let id = lines.next().unwrap_or("").trim();
                if !id.is_empty() && id != old_boot_id {
                    if lines.next().map(str::trim) == Some("1") {
                        return Ok(true);
                    }
                    // kdump may still be loading its capture kernel (first boot builds an initrd).
                    if Instant::now() + Duration::from_secs(10) >= end {
                        return Ok(false);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    Err(Stop::RebootTimeout {
        host: host.to_string(),
        secs: deadline.as_secs(),
    })
}
