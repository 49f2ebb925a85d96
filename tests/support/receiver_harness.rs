//! Runs the real receiver on loopback for integration tests, and checks vmcores the way
//! `crash` reads netdump dumps (docs/vmcore.md), independently of the receiver's own code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netdump_receiver::config::ReceiverConfig;
use netdump_receiver::events::{Event, EventKind, EventLog};
use netdump_receiver::server::{Server, ServerError};

use netdump_test_support::netdump_client::Image;

pub struct Harness {
    pub dir: Option<tempfile::TempDir>,
    pub addr: SocketAddr,
    pub dump_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServerError>>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

/// How to run the receiver under test.
#[derive(Default)]
pub struct Opts {
    /// Run it on its own OS thread and current-thread runtime (as in production, where no
    /// simulated clients compete with it for the runtime).
    pub dedicated: bool,
    /// Serve on this pre-bound socket instead of 127.0.0.1:0.
    pub socket: Option<std::net::UdpSocket>,
}

/// Test tuning: short idle timeouts so a dump ends in well under a second after its last page.
pub fn test_config(dump_dir: PathBuf) -> ReceiverConfig {
    let mut c = ReceiverConfig::new(dump_dir);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.secure = false;
    c.space_check = false;
    c.tuning.log_idle_timeout = Duration::from_millis(300);
    c.tuning.show_state_timeout = Duration::from_millis(500);
    c.tuning.reboot_interval = Duration::from_millis(100);
    c.tuning.reject_hold = Duration::from_secs(2);
    c.hook_timeout = Duration::from_secs(10);
    c
}

impl Harness {
    pub async fn start(configure: impl FnOnce(&mut ReceiverConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, configure).await
    }

    pub async fn start_in(
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut ReceiverConfig),
    ) -> Harness {
        Self::start_opts(dir, configure, Opts::default()).await
    }

    pub async fn start_opts(
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut ReceiverConfig),
        opts: Opts,
    ) -> Harness {
        let mut cfg = test_config(dir.path().to_path_buf());
        configure(&mut cfg);
        let dump_dir = cfg.dump_dir.clone();
        let sock = match opts.socket {
            Some(s) => s,
            None => std::net::UdpSocket::bind(cfg.listen).expect("bind receiver"),
        };
        let addr = sock.local_addr().unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let (task, thread) = if opts.dedicated {
            let t = std::thread::Builder::new()
                .name("receiver".into())
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("receiver runtime");
                    rt.block_on(async move { Server::with_socket(cfg, sock)?.run(shutdown).await })
                });
            let t = t.expect("spawn receiver thread");
            (None, Some(t))
        } else {
            let server = Server::with_socket(cfg, sock).expect("start receiver");
            (Some(tokio::spawn(server.run(shutdown))), None)
        };
        Harness {
            dir: Some(dir),
            addr,
            dump_dir,
            stop: Some(stop),
            task,
            thread,
        }
    }

    pub fn root(&self) -> &Path {
        &self.dump_dir
    }

    pub fn events(&self) -> Vec<Event> {
        std::fs::read_to_string(self.root().join("events.jsonl"))
            .map(|t| EventLog::parse(&t))
            .unwrap_or_default()
    }

    /// Waits (bounded, for correctness, not speed) until `host` has an event of `kind`.
    pub async fn wait_event(&self, host: &str, kind: EventKind) -> Event {
        for _ in 0..600 {
            if let Some(e) = self
                .events()
                .into_iter()
                .find(|e| e.host == host && e.event == kind)
            {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no {kind:?} event for {host} after 60 s; events: {:?}",
            self.events()
        );
    }

    /// Stops the receiver and waits for its files to be closed.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        if let Some(t) = self.thread.take() {
            tokio::task::spawn_blocking(move || t.join())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
        self.dir.take().expect("dir")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn rd<const N: usize>(b: &[u8], o: usize, little: bool) -> u64 {
    let mut a = [0u8; 8];
    if little {
        a[..N].copy_from_slice(&b[o..o + N]);
        u64::from_le_bytes(a)
    } else {
        a[8 - N..].copy_from_slice(&b[o..o + N]);
        u64::from_be_bytes(a)
    }
}

/// What the crash-style check found.
#[derive(Debug)]
pub struct CoreView {
    pub elf64: bool,
    pub little: bool,
    pub machine: u16,
    pub header_size: u64,
    pub page_size: u64,
    pub prstatus_len: usize,
    pub pr_reg: Vec<u8>,
    pub task_struct: u64,
}

/// Applies crash's `is_netdump()` rules and reads the notes like `crash` does.
pub fn crash_view(b: &[u8]) -> CoreView {
    assert_eq!(&b[0..4], b"\x7fELF", "not ELF");
    let elf64 = match b[4] {
        1 => false,
        2 => true,
        c => panic!("bad class {c}"),
    };
    let little = match b[5] {
        1 => true,
        2 => false,
        d => panic!("bad data {d}"),
    };
    assert_eq!(b[6], 1, "EI_VERSION");
    let e_type = rd::<2>(b, 16, little);
    assert_eq!(e_type, 4, "ET_CORE");
    let machine = rd::<2>(b, 18, little) as u16;
    assert_eq!(rd::<4>(b, 20, little), 1, "e_version");
    let (phoff, phentsize, phnum) = if elf64 {
        (
            rd::<8>(b, 32, little),
            rd::<2>(b, 54, little),
            rd::<2>(b, 56, little),
        )
    } else {
        (
            rd::<4>(b, 28, little),
            rd::<2>(b, 42, little),
            rd::<2>(b, 44, little),
        )
    };
    assert!(phnum >= 2, "e_phnum {phnum} < 2");
    assert_eq!(phoff, if elf64 { 64 } else { 52 }, "e_phoff = sizeof(Ehdr)");
    let ph = |i: u64| (phoff + i * phentsize) as usize;
    // (type, offset, filesz, align)
    let phdr = |i: u64| -> (u64, u64, u64, u64) {
        let o = ph(i);
        if elf64 {
            (
                rd::<4>(b, o, little),
                rd::<8>(b, o + 8, little),
                rd::<8>(b, o + 32, little),
                rd::<8>(b, o + 48, little),
            )
        } else {
            (
                rd::<4>(b, o, little),
                rd::<4>(b, o + 4, little),
                rd::<4>(b, o + 16, little),
                rd::<4>(b, o + 28, little),
            )
        }
    };
    let (t0, note_off, note_len, _) = phdr(0);
    assert_eq!(t0, 4, "phdr[0] must be PT_NOTE");
    let (t1, load_off, _, align) = phdr(1);
    assert_eq!(t1, 1, "phdr[1] must be PT_LOAD");
    assert!(
        load_off % 4096 == 0 && align != 0,
        "crash would call this a kdump: p_offset {load_off:#x}, p_align {align}"
    );
    let header_size = (1..phnum)
        .map(phdr)
        .filter(|p| p.0 == 1 && p.1 != 0)
        .map(|p| p.1)
        .min()
        .unwrap();
    assert!(
        note_off + note_len <= header_size,
        "notes must precede the first PT_LOAD"
    );
    // Notes, read as crash does: desc at name + n_namesz (no rounding for the 4-byte name).
    let mut o = note_off as usize;
    let end = (note_off + note_len) as usize;
    let mut view = CoreView {
        elf64,
        little,
        machine,
        header_size,
        page_size: align,
        prstatus_len: 0,
        pr_reg: vec![],
        task_struct: 0,
    };
    while o + 12 <= end {
        let namesz = rd::<4>(b, o, little) as usize;
        let descsz = rd::<4>(b, o + 4, little) as usize;
        let ntype = rd::<4>(b, o + 8, little);
        assert_eq!(namesz, 4, "n_namesz must be 4 (\"CORE\" without NUL)");
        assert_eq!(&b[o + 12..o + 16], b"CORE");
        let desc = o + 12 + namesz;
        match ntype {
            1 => {
                view.prstatus_len = descsz;
                let reg_len = match machine {
                    3 => 68,
                    62 => 216,
                    21 => 384,
                    _ => 0,
                };
                // i386 rule: pr_reg = desc_end - sizeof(user_regs_struct) - sizeof(int)
                let r = if elf64 {
                    desc + 112
                } else {
                    desc + descsz - reg_len - 4
                };
                view.pr_reg = b[r..r + reg_len].to_vec();
            }
            4 => {
                view.task_struct =
                    rd::<8>(b, desc, little) & if elf64 { u64::MAX } else { 0xffff_ffff }
            }
            _ => {}
        }
        o = desc + descsz.div_ceil(4) * 4;
    }
    view
}

/// Asserts that the vmcore holds exactly `img`, read as crash reads physical addresses
/// (file offset = header_size + paddr, holes read as zeros, no short reads).
pub fn assert_core_matches(path: &Path, img: &Image) -> CoreView {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let v = crash_view(&b);
    assert_eq!(v.page_size, img.page_size as u64);
    let ps = img.page_size as usize;
    let need = v.header_size as usize + img.nr_pages as usize * ps;
    assert!(
        b.len() >= need,
        "short file: {} < {need} (crash fails on short reads)",
        b.len()
    );
    for pfn in 0..img.nr_pages {
        let at = v.header_size as usize + pfn as usize * ps;
        let got = &b[at..at + ps];
        if img.is_ram(pfn) {
            assert!(got == img.page(pfn), "pfn {pfn} differs from the image");
        } else {
            assert!(got.iter().all(|&x| x == 0), "hole pfn {pfn} is not zero");
        }
    }
    v
}

/// The single crash directory of `ip` under `root`.
pub fn crash_dir(root: &Path, ip: &str) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{ip}-")))
        })
        .collect();
    assert_eq!(dirs.len(), 1, "crash dirs for {ip}: {dirs:?}");
    dirs.into_iter().next().unwrap()
}

pub fn tool_exists(name: &str) -> bool {
    std::process::Command::new(name)
        .arg("--version")
        .output()
        .is_ok()
}

/// Mounts a tmpfs of `size` at `at` for `test`; false (with a loud SKIP, a failure under CI) if
/// this host cannot.
pub fn mount_tmpfs(at: &Path, size: &str, test: &str) -> bool {
    let ok = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
        ])
        .arg(at)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        netdump_test_support::skip(test, "mounting a tmpfs failed (needs root and mount)");
    }
    ok
}

/// Unmounts on drop, also when the test panics.
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
