//! Runs the real `provision receiver` binary as a child process, so tests can measure what it
//! holds (RSS, threads, open files from /proc) and stop it with SIGTERM as systemd does.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct ReceiverProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every output line (the receiver logs to stdout), drained by a thread so a full pipe can
    /// never stall the receiver.
    pub lines: Arc<Mutex<Vec<String>>>,
}

/// What /proc says the receiver holds.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    pub threads: u64,
    pub fds: u64,
}

impl ReceiverProcess {
    /// Starts `provision receiver --listen 127.0.0.1:0 --dump-dir DIR EXTRA...` and waits for
    /// its "listening" line.
    pub fn start(dump_dir: &Path, extra: &[&str]) -> ReceiverProcess {
        Self::start_on(dump_dir, "127.0.0.1:0", extra)
    }

    pub fn start_on(dump_dir: &Path, listen: &str, extra: &[&str]) -> ReceiverProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_provision"))
            .arg("receiver")
            .args(["--listen", listen, "--dump-dir"])
            .arg(dump_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn provision receiver");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(l.clone());
                    let mut v = lines.lock().unwrap();
                    if v.len() < 100_000 {
                        v.push(l);
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let l = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!(
                        "receiver never said it was listening: {:?}",
                        lines.lock().unwrap()
                    )
                });
            if let Some(rest) = l.split("receiver listening on ").nth(1) {
                let a = rest.split_whitespace().next().unwrap();
                break a.parse::<SocketAddr>().unwrap();
            }
        };
        ReceiverProcess { child, addr, lines }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn usage(&self) -> Usage {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count() as u64;
        Usage {
            rss_kib: field("VmRSS:"),
            peak_rss_kib: field("VmHWM:"),
            threads: field("Threads:"),
            fds,
        }
    }

    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// SIGTERM, then waits for the exit (a hang detector of `limit`, not a speed check).
    pub fn terminate(mut self, limit: Duration) -> (std::process::ExitStatus, Vec<String>) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let until = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (st, self.output());
            }
            if Instant::now() >= until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "receiver did not exit within {limit:?} of SIGTERM; output: {:?}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ReceiverProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
