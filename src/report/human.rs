//! Human output: a progress bar on stderr when it is a terminal, result lines on stdout, and
//! the recap table.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Event, HostOutcome, Recap, Reporter, ResourceStatus};

pub struct HumanReporter {
    bar: Option<ProgressBar>,
    verbose: bool,
    show_diff: bool,
    out: Mutex<Box<dyn Write + Send>>,
}

impl HumanReporter {
    /// `total_hosts` sizes the progress bar, which is drawn only when stderr is a terminal.
    pub fn new(total_hosts: usize, verbose: bool, show_diff: bool) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let pb = ProgressBar::with_draw_target(
                Some(total_hosts as u64),
                ProgressDrawTarget::stderr(),
            );
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} hosts  {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        });
        HumanReporter {
            bar,
            verbose,
            show_diff,
            out: Mutex::new(Box::new(std::io::stdout())),
        }
    }

    /// A reporter writing plain lines into `out` (tests, non-terminal use).
    #[cfg(test)]
    pub fn plain(out: Box<dyn Write + Send>, verbose: bool, show_diff: bool) -> Self {
        HumanReporter {
            bar: None,
            verbose,
            show_diff,
            out: Mutex::new(out),
        }
    }

    fn print(&self, text: &str) {
        let write = || {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            let _ = out.write_all(text.as_bytes());
            if !text.ends_with('\n') {
                let _ = out.write_all(b"\n");
            }
            let _ = out.flush();
        };
        match &self.bar {
            Some(pb) => pb.suspend(write),
            None => write(),
        }
    }
}

impl Reporter for HumanReporter {
    fn event(&self, event: &Event) {
        match event {
            Event::Phase { host, phase } => {
                if let Some(pb) = &self.bar {
                    pb.set_message(format!("{host}: {phase}"));
                }
            }
            Event::Resource {
                host,
                resource,
                status,
                summary,
                diff,
                check,
            } => {
                let word = match (status, check) {
                    (ResourceStatus::Ok, _) if !self.verbose => return,
                    (ResourceStatus::Ok, _) => "ok",
                    (ResourceStatus::Changed, true) => "would change",
                    (ResourceStatus::Changed, false) => "changed",
                    (ResourceStatus::Failed, _) => "FAILED",
                };
                let mut text = format!("{word}: [{host}] {resource}");
                if !summary.is_empty() {
                    text.push_str(&format!(" ({summary})"));
                }
                if self.show_diff
                    && let Some(d) = diff
                {
                    text.push('\n');
                    text.push_str(d);
                }
                self.print(&text);
            }
            Event::Warning { host, message } => self.print(&format!("warning: [{host}] {message}")),
            Event::HostDone { host, outcome } => {
                if let Some(pb) = &self.bar {
                    pb.inc(1);
                }
                match outcome {
                    HostOutcome::Failed(m) => self.print(&format!("FAILED: [{host}] {m}")),
                    HostOutcome::Unreachable(m) => {
                        self.print(&format!("UNREACHABLE: [{host}] {m}"))
                    }
                    HostOutcome::Skipped(m) => self.print(&format!("skipped: [{host}] {m}")),
                    HostOutcome::Ok | HostOutcome::Changed => {}
                }
            }
        }
    }

    fn finish(&self, recap: &Recap) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
        self.print(&render_recap(recap));
    }
}

/// The recap table.
pub fn render_recap(recap: &Recap) -> String {
    let width = recap
        .hosts
        .iter()
        .map(|h| h.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut s = format!(
        "\nRECAP{} ({:.1}s)\n",
        if recap.check {
            " (check mode: nothing was changed)"
        } else {
            ""
        },
        recap.elapsed_secs
    );
    for h in &recap.hosts {
        s.push_str(&format!(
            "{:width$}  ok={:<4} changed={:<4} failed={:<2} unreachable={:<2} skipped={}\n",
            h.host, h.ok, h.changed, h.failed, h.unreachable, h.skipped
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::HostRecap;
    use std::sync::{Arc, Mutex as M};

    #[derive(Clone, Default)]
    struct Buf(Arc<M<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_and_recap() {
        let buf = Buf::default();
        let r = HumanReporter::plain(Box::new(buf.clone()), false, true);
        r.event(&Event::Resource {
            host: "c1".into(),
            resource: "file:/a".into(),
            status: ResourceStatus::Ok,
            summary: String::new(),
            diff: None,
            check: false,
        });
        r.event(&Event::Resource {
            host: "c1".into(),
            resource: "file:/b".into(),
            status: ResourceStatus::Changed,
            summary: "create".into(),
            diff: Some("+x\n".into()),
            check: true,
        });
        r.finish(&Recap {
            hosts: vec![HostRecap {
                host: "c1".into(),
                ok: 1,
                changed: 1,
                ..Default::default()
            }],
            check: true,
            elapsed_secs: 0.5,
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("file:/a"), "ok lines only in verbose mode");
        assert!(text.contains("would change: [c1] file:/b (create)\n+x\n"));
        assert!(text.contains("check mode"));
        assert!(text.contains("c1    ok=1    changed=1"));
    }
}
