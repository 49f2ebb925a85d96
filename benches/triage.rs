//! On-demand crash-triage benchmark: `cargo bench --bench triage`.
//! Runs `triage::analyze` over a corpus of real kernel crash reports whose expected titles are
//! known and prints: titles right (the expected TITLE or any ALT) out of the files with a
//! crash, crashes missed, crashes invented in files without one, and the time per MB of log,
//! with the same figures for a named peer measured in the same run: `naive-grep`, a
//! first-matching-line extractor (`BUG:|WARNING:|Kernel panic`, the line's text is the title).
//! Also times both on a generated 16 MB crash-free console log (the common case for a receiver).
//! Corpus: the directory named by env TRIAGE_CORPUS (a loud SKIP line when it is unset or absent).
//! Each file there: header lines (`TITLE:`, `ALT:`, others), one blank line, the console text;
//! no TITLE (or an empty one) means the file holds no crash. TRIAGE_VERBOSE=1 lists misses.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netdump_triage as triage;

struct Case {
    name: String,
    titles: Vec<String>,
    body: String,
}

fn load(dir: &Path) -> std::io::Result<Vec<Case>> {
    let mut cases = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    paths.sort();
    for p in paths {
        let bytes = std::fs::read(&p)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        // The header is every line up to the first blank one.
        let mut end = 0;
        let mut body_start = text.len();
        for l in text.split_inclusive('\n') {
            if l.trim().is_empty() {
                body_start = end + l.len();
                break;
            }
            end += l.len();
        }
        let (head, body) = (&text[..end.min(body_start)], &text[body_start..]);
        let mut titles = Vec::new();
        for l in head.lines() {
            if let Some(t) = l.strip_prefix("TITLE:").or_else(|| l.strip_prefix("ALT:")) {
                let t = t.trim();
                if !t.is_empty() {
                    titles.push(t.to_string());
                }
            }
        }
        cases.push(Case {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            titles,
            body: body.to_string(),
        });
    }
    Ok(cases)
}

/// The named peer: the first line matching `BUG:|WARNING:|Kernel panic`, text from the match.
fn naive_grep(text: &str) -> Vec<String> {
    for l in text.lines() {
        for key in ["BUG:", "WARNING:", "Kernel panic"] {
            if let Some(i) = l.find(key) {
                return vec![l[i..].trim_end().to_string()];
            }
        }
    }
    Vec::new()
}

#[derive(Default)]
struct Score {
    with_crash: usize,
    right: usize,
    missed: usize,
    without_crash: usize,
    invented: usize,
    wrong: Vec<String>,
}

fn score(cases: &[Case], f: &dyn Fn(&str) -> Vec<String>) -> Score {
    let mut s = Score::default();
    for c in cases {
        let got = f(&c.body);
        if c.titles.is_empty() {
            s.without_crash += 1;
            if !got.is_empty() {
                s.invented += 1;
                s.wrong.push(format!("{}: invented {:?}", c.name, got[0]));
            }
            continue;
        }
        s.with_crash += 1;
        match got.first() {
            None => {
                s.missed += 1;
                s.wrong
                    .push(format!("{}: missed, want {:?}", c.name, c.titles[0]));
            }
            Some(t) if c.titles.contains(t) => s.right += 1,
            Some(t) => s
                .wrong
                .push(format!("{}: got {t:?}, want {:?}", c.name, c.titles[0])),
        }
    }
    s
}

/// Seconds per MB of log, running the extractor over the whole corpus for at least ~1 s.
fn time_per_mb(cases: &[Case], f: &dyn Fn(&str) -> Vec<String>) -> f64 {
    let bytes: usize = cases.iter().map(|c| c.body.len()).sum();
    let start = Instant::now();
    let mut rounds = 0u32;
    while start.elapsed() < Duration::from_secs(1) || rounds < 3 {
        for c in cases {
            std::hint::black_box(f(std::hint::black_box(&c.body)));
        }
        rounds += 1;
    }
    start.elapsed().as_secs_f64() / (bytes as f64 * rounds as f64 / 1e6)
}

/// A crash-free console log of about `mb` MB, from typical boot and runtime lines: the common
/// case for a receiver that triages every console line it gets.
fn quiet_log(mb: usize) -> String {
    const LINES: &[&str] = &[
        "e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx",
        "EXT4-fs (vda1): mounted filesystem with ordered data mode. Quota mode: none.",
        "systemd[1]: Started Journal Service.",
        "audit: type=1400 audit(1764583200.123:42): apparmor=\"STATUS\" operation=\"profile_load\"",
        "IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready",
        "usb 1-1: new high-speed USB device number 2 using xhci_hcd",
        "random: crng init done",
        "kvm: already loaded vendor module 'kvm_intel'",
        "device-mapper: uevent: version 1.0.3",
        "nf_conntrack: default automatic helper assignment has been turned off for security reasons",
    ];
    let mut s = String::with_capacity(mb << 20);
    let mut i = 0usize;
    while s.len() < mb << 20 {
        let t = i as f64 * 0.0137;
        s.push_str(&format!("[{t:>12.6}] {}\n", LINES[i % LINES.len()]));
        i += 1;
    }
    s
}

fn main() {
    let Some(dir) = std::env::var_os("TRIAGE_CORPUS").map(PathBuf::from) else {
        println!("SKIP: TRIAGE_CORPUS is not set (a directory of crash reports with their titles)");
        return;
    };
    if !dir.is_dir() {
        println!(
            "SKIP: triage corpus not found at {} (set TRIAGE_CORPUS to a directory of crash reports)",
            dir.display()
        );
        return;
    }
    let cases = match load(&dir) {
        Ok(c) => c,
        Err(e) => {
            println!(
                "SKIP: cannot read the triage corpus at {}: {e}",
                dir.display()
            );
            return;
        }
    };
    let ours =
        |t: &str| -> Vec<String> { triage::analyze(t).into_iter().map(|r| r.title).collect() };
    let peer = |t: &str| naive_grep(t);
    let a = score(&cases, &ours);
    let b = score(&cases, &peer);
    let ta = time_per_mb(&cases, &ours);
    let tb = time_per_mb(&cases, &peer);
    let mb: f64 = cases.iter().map(|c| c.body.len()).sum::<usize>() as f64 / 1e6;
    println!(
        "corpus: {} ({} files, {:.2} MB; {} with a crash, {} without)",
        dir.display(),
        cases.len(),
        mb,
        a.with_crash,
        a.without_crash
    );
    println!(
        "{:<14} {:>14} {:>7} {:>9} {:>12}",
        "extractor", "titles right", "missed", "invented", "ms per MB"
    );
    for (name, s, t) in [("triage", &a, ta), ("naive-grep", &b, tb)] {
        println!(
            "{:<14} {:>7}/{:<3} {:>3.0}% {:>5} {:>9} {:>12.2}",
            name,
            s.right,
            s.with_crash,
            100.0 * s.right as f64 / s.with_crash.max(1) as f64,
            s.missed,
            s.invented,
            t * 1e3
        );
    }
    println!(
        "ratio triage/naive-grep: titles right {:.1}x, time per MB {:.1}x",
        a.right as f64 / b.right.max(1) as f64,
        ta / tb
    );
    let quiet = vec![Case {
        name: "quiet".into(),
        titles: Vec::new(),
        body: quiet_log(16),
    }];
    let found = triage::analyze(&quiet[0].body).len();
    let qa = time_per_mb(&quiet, &ours);
    let qb = time_per_mb(&quiet, &peer);
    println!(
        "crash-free console log (16 MB): triage {:.2} ms per MB ({:.0} MB/s, {found} crashes found), naive-grep {:.2} ms per MB; ratio {:.1}x",
        qa * 1e3,
        1.0 / qa,
        qb * 1e3,
        qa / qb
    );
    if std::env::var_os("TRIAGE_VERBOSE").is_some() {
        for w in &a.wrong {
            println!("  {w}");
        }
    }
}
