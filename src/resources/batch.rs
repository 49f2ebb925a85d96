//! One remote script observes every resource of a host; its output is split back per resource.

use super::{Observed, Resource};

/// A fresh random marker for one batched script.
pub fn nonce() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

/// One resource's observation snippet, and whether it may run in the script's own shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    pub script: String,
    /// See [`Resource::observation_in_place`]; otherwise it runs in a subshell of its own.
    pub in_place: bool,
}

impl Snippet {
    pub fn of(r: &dyn Resource) -> Snippet {
        Snippet {
            script: r.observe_script(),
            in_place: r.observation_in_place(),
        }
    }

    /// A snippet run in a subshell of its own.
    pub fn subshell(script: impl Into<String>) -> Snippet {
        Snippet {
            script: script.into(),
            in_place: false,
        }
    }
}

/// What one round trip observes: each resource's snippet in order, the paths whose attributes
/// the script reads up front with one `stat`, and whether a snippet may wait on something.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub snippets: Vec<Snippet>,
    pub stat_paths: Vec<String>,
    /// Some snippet may wait without a bound of its own (rpm's database lock, a SysV init
    /// script, an arbitrary command): then the round trip keeps its remote bound.
    pub may_wait: bool,
}

impl Observation {
    pub fn of(resources: &[Box<dyn Resource>]) -> Observation {
        let mut o = Observation::default();
        for r in resources {
            o.push(r.as_ref());
        }
        o
    }

    pub fn push(&mut self, r: &dyn Resource) {
        self.snippets.push(Snippet::of(r));
        if let Some(p) = r.observed_path() {
            self.add_stat_path(p);
        }
        self.may_wait |= r.observation_may_wait();
    }

    /// `other`'s snippets after these.
    pub fn extend(&mut self, other: &Observation) {
        self.snippets.extend(other.snippets.iter().cloned());
        for p in &other.stat_paths {
            self.add_stat_path(p);
        }
        self.may_wait |= other.may_wait;
    }

    /// Each path once: `stat` would print a line per mention.
    fn add_stat_path(&mut self, p: &str) {
        if !self.stat_paths.iter().any(|q| q == p) {
            self.stat_paths.push(p.to_string());
        }
    }

    pub fn len(&self) -> usize {
        self.snippets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.snippets.is_empty()
    }

    /// The batched script (see [`observe_script`]).
    pub fn script(&self, nonce: &str) -> String {
        observe_script(&self.snippets, &self.stat_paths, nonce)
    }
}

/// Builds the batched observation script: the path functions with the attributes of
/// `stat_paths` (see [`super::file::path_prelude`]), then each snippet in its own section, in a
/// subshell unless it may run in place. Sections are delimited by marker lines carrying a
/// per-run nonce, so resource output can never forge a boundary.
pub fn observe_script(snippets: &[Snippet], stat_paths: &[String], nonce: &str) -> String {
    let mut s = String::from("exec 2>&1\n");
    s.push_str(&super::file::path_prelude(stat_paths));
    for (i, snippet) in snippets.iter().enumerate() {
        let (open, close) = if snippet.in_place {
            ("{", "}")
        } else {
            ("(", ")")
        };
        s.push_str(&format!(
            "printf '\\n@@NDP-{nonce} {i} begin\\n'\n{open} {}\n{close}\nprintf '\\n@@NDP-{nonce} {i} end %s\\n' \"$?\"\n",
            snippet.script
        ));
    }
    s
}

/// Stdin bigger than this makes a change its own round trip: in a batch each change's bytes
/// are cut from the shared stdin one read(2) per byte (see [`converge_script`]).
pub const MAX_BATCHED_STDIN: usize = 16 * 1024;

/// One change inside a batched converge script.
pub struct Step<'a> {
    pub script: &'a str,
    /// Bytes of the shared stdin that are this step's (`None`: it reads /dev/null).
    pub stdin_len: Option<usize>,
}

/// Consecutive changes that may share one round trip: a change with more stdin than
/// [`MAX_BATCHED_STDIN`] (a binary upload) runs alone, the others together, in order.
pub fn converge_groups(changes: &[(String, super::Change)]) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    for (i, (_, c)) in changes.iter().enumerate() {
        if c.stdin
            .as_ref()
            .is_some_and(|s| s.len() > MAX_BATCHED_STDIN)
        {
            if start < i {
                groups.push(start..i);
            }
            groups.push(i..i + 1);
            start = i + 1;
        }
    }
    if start < changes.len() {
        groups.push(start..changes.len());
    }
    groups
}

/// Builds one script running `steps` in order, each in its own subshell with stdout and stderr
/// in its own marked section, stopping at the first that fails. A step's stdin is exactly its
/// own bytes of the script's stdin: `dd bs=1` reads one byte per read(2), so it never takes the
/// next step's bytes from the pipe, with any `dd` (block-sized reads may return short or, with
/// some tools, read ahead).
pub fn converge_script(steps: &[Step<'_>], nonce: &str) -> String {
    let mut s = String::from("exec 2>&1\n");
    for (i, step) in steps.iter().enumerate() {
        let run = match step.stdin_len {
            Some(n) if n > 0 => format!("dd bs=1 count={n} 2>/dev/null | (\n{}\n)", step.script),
            _ => format!("(\n{}\n) </dev/null", step.script),
        };
        s.push_str(&format!(
            "printf '\\n@@NDP-{nonce} {i} begin\\n'\n{run}\nrc=$?\n\
             printf '\\n@@NDP-{nonce} {i} end %s\\n' \"$rc\"\n\
             [ \"$rc\" = 0 ] || exit \"$rc\"\n"
        ));
    }
    s
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the observation output of section {section} is incomplete (the remote script was cut short?)"
)]
pub struct SplitError {
    pub section: usize,
}

/// What a script printed before its first batched section (e.g. the facts probe's lines).
pub fn preamble(output: &str) -> &str {
    output.split("\n@@NDP-").next().unwrap_or("")
}

/// Splits the batched output into `count` observations, in order.
pub fn split(output: &str, nonce: &str, count: usize) -> Result<Vec<Observed>, SplitError> {
    match read_sections(output, nonce, count) {
        (sections, None) => Ok(sections),
        (_, Some(e)) => Err(e),
    }
}

/// The sections of a batched script's output that finished, in order, up to `count`: fewer
/// when the script stopped early.
pub fn split_ran(output: &str, nonce: &str, count: usize) -> Vec<Observed> {
    read_sections(output, nonce, count).0
}

/// Reads sections 0, 1, ... in order, up to `count`; stops at the first that is missing or
/// incomplete and says which.
fn read_sections(output: &str, nonce: &str, count: usize) -> (Vec<Observed>, Option<SplitError>) {
    let mut result = Vec::with_capacity(count);
    let mut rest = output;
    for i in 0..count {
        match read_section(rest, nonce, i) {
            Some((observed, after)) => {
                result.push(observed);
                rest = after;
            }
            None => return (result, Some(SplitError { section: i })),
        }
    }
    (result, None)
}

/// Section `i` at the start of `rest` (after anything before its begin marker), and what
/// follows its end line.
fn read_section<'a>(rest: &'a str, nonce: &str, i: usize) -> Option<(Observed, &'a str)> {
    let begin = format!("\n@@NDP-{nonce} {i} begin\n");
    let end_prefix = format!("\n@@NDP-{nonce} {i} end ");
    let body_start = rest.find(&begin)? + begin.len();
    let e = rest[body_start..].find(&end_prefix)? + body_start;
    let after = &rest[e + end_prefix.len()..];
    let line_end = after.find('\n')?;
    let status: i32 = after[..line_end].trim().parse().ok()?;
    Some((
        Observed {
            text: rest[body_start..e].to_string(),
            status,
        },
        &after[line_end..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_sh(script: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn batch_round_trips_through_a_real_shell() {
        let snippets = [
            Snippet::subshell("echo type=file; echo owner=root"),
            Snippet::subshell("echo oops >&2; exit 3"),
            Snippet::subshell("printf 'no newline'"),
            Snippet::subshell("true"),
        ];
        let out = run_sh(&observe_script(&snippets, &[], "abc123"));
        let obs = split(&out, "abc123", 4).unwrap();
        assert_eq!(preamble(&format!("facts=1\n{out}")), "facts=1\n");
        assert_eq!(obs[0].text, "type=file\nowner=root\n");
        assert_eq!(obs[0].status, 0);
        assert_eq!(obs[1].text, "oops\n");
        assert_eq!(obs[1].status, 3);
        assert_eq!(obs[2].text, "no newline");
        assert_eq!(obs[3].text, "");
    }

    #[test]
    fn an_observation_knows_its_paths_and_whether_it_may_wait() {
        use crate::resources::{File, Package, Sysctl};
        let file = |p: &str| {
            Box::new(File {
                path: p.into(),
                content: Vec::new(),
                owner: "root".into(),
                group: "root".into(),
                mode: 0o644,
                secret: false,
            }) as Box<dyn Resource>
        };
        let sysctl = Box::new(Sysctl {
            key: "kernel.sysrq".into(),
            value: "1".into(),
        }) as Box<dyn Resource>;
        let quiet = Observation::of(&[file("/a"), sysctl, file("/b"), file("/a")]);
        assert_eq!(quiet.len(), 4);
        assert_eq!(quiet.stat_paths, ["/a", "/b"]);
        assert!(!quiet.may_wait, "files and /proc only");
        assert!(
            quiet.snippets.iter().all(|s| s.in_place),
            "none needs a subshell"
        );
        let package = |manager| {
            Box::new(Package {
                name: "netdump".into(),
                manager,
                opt_out: "",
            }) as Box<dyn Resource>
        };
        let mut waits = Observation::of(&[file("/c")]);
        waits.extend(&Observation::of(&[package(
            crate::facts::PackageManager::Apt,
        )]));
        assert!(!waits.may_wait, "dpkg-query takes no lock");
        waits.extend(&Observation::of(&[package(
            crate::facts::PackageManager::Yum,
        )]));
        assert_eq!(waits.stat_paths, ["/c"]);
        assert!(waits.may_wait, "rpm may wait on its database's lock");
        let service = |init| {
            Box::new(crate::resources::Service {
                name: "netdump".into(),
                init,
                enabled: Some(true),
                running: true,
                restart_on: Vec::new(),
                daemon_reload_on: Vec::new(),
                reload: false,
                opt_out: "",
                validate: None,
            }) as Box<dyn Resource>
        };
        use crate::facts::InitSystem;
        assert!(!Observation::of(&[service(InitSystem::Systemd)]).may_wait);
        assert!(
            Observation::of(&[service(InitSystem::Sysv)]).may_wait,
            "an init script may wait on anything"
        );
    }

    #[test]
    fn forged_markers_with_another_nonce_do_not_split() {
        let snippets = [
            Snippet::subshell("echo '@@NDP-evil 1 begin'"),
            Snippet::subshell("echo two"),
        ];
        let out = run_sh(&observe_script(&snippets, &[], "n0nce"));
        let obs = split(&out, "n0nce", 2).unwrap();
        assert_eq!(obs[0].text, "@@NDP-evil 1 begin\n");
        assert_eq!(obs[1].text, "two\n");
    }

    fn run_sh_with_stdin(script: &str, stdin: &[u8]) -> (String, Option<i32>) {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Written in pieces, as ssh delivers it: the split must not depend on one read.
        let mut pipe = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            for piece in data.chunks(7) {
                if pipe.write_all(piece).is_err() {
                    break;
                }
            }
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        (String::from_utf8(out.stdout).unwrap(), out.status.code())
    }

    #[test]
    fn batched_changes_get_exactly_their_own_stdin_and_stop_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let a = format!("cat > {d}/a");
        let b = format!("echo none; cat > {d}/b");
        let c = format!("cat > {d}/c; echo 'no space' >&2; exit 4");
        let never = format!("touch {d}/never");
        let steps = [
            Step {
                script: &a,
                stdin_len: Some(5),
            },
            Step {
                script: &b,
                stdin_len: None,
            },
            Step {
                script: &c,
                stdin_len: Some(3),
            },
            Step {
                script: &never,
                stdin_len: Some(2),
            },
        ];
        let (out, code) = run_sh_with_stdin(&converge_script(&steps, "n1"), b"hello\0\nxyz");
        assert_eq!(code, Some(4));
        let ran = split_ran(&out, "n1", 4);
        assert_eq!(ran.len(), 3, "{out}");
        assert_eq!(ran.iter().map(|o| o.status).collect::<Vec<_>>(), [0, 0, 4]);
        assert_eq!(ran[1].text, "none\n");
        assert_eq!(ran[2].text, "no space\n");
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read(dir.path().join("b")).unwrap(),
            b"",
            "no stdin: /dev/null"
        );
        assert_eq!(std::fs::read(dir.path().join("c")).unwrap(), b"\0\nx");
        assert!(!dir.path().join("never").exists());
    }

    #[test]
    fn big_stdin_runs_alone_and_the_rest_stays_together() {
        let change = |n: Option<usize>| {
            let c = super::super::Change::new("x", "true");
            match n {
                Some(n) => ("id".to_string(), c.with_stdin(vec![0; n])),
                None => ("id".to_string(), c),
            }
        };
        let big = Some(MAX_BATCHED_STDIN + 1);
        let v = vec![
            change(Some(3)),
            change(None),
            change(big),
            change(None),
            change(big),
        ];
        assert_eq!(converge_groups(&v), vec![0..2, 2..3, 3..4, 4..5]);
        assert_eq!(converge_groups(&v[..2]), vec![0..2]);
        assert_eq!(converge_groups(&[]), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn truncated_output_is_an_error_not_a_panic() {
        let snippets = [Snippet::subshell("echo a"), Snippet::subshell("echo b")];
        let out = run_sh(&observe_script(&snippets, &[], "x"));
        let cut = &out[..out.len() - 10];
        assert_eq!(split(cut, "x", 2), Err(SplitError { section: 1 }));
        assert!(split("", "x", 1).is_err());
    }
}
