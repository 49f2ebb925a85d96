//! Running the host tools the lab shells out to (debootstrap, qemu, ip, ssh-keygen, mkfs).

use std::ffi::OsStr;
use std::process::Stdio;

use tokio::process::Command;

use super::LabError;

/// A command with the step it belongs to, for error messages.
pub struct Tool {
    step: String,
    cmd: Command,
    shown: String,
}

impl Tool {
    pub fn new(step: impl Into<String>, program: &str) -> Self {
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        Tool {
            step: step.into(),
            cmd,
            shown: program.to_string(),
        }
    }

    /// The same tool run inside network namespace `ns` (`ip netns exec NS PROGRAM ...`).
    pub fn in_netns(step: impl Into<String>, ns: &str, program: &str) -> Self {
        let mut t = Tool::new(step, "ip");
        t.args(["netns", "exec", ns, program]);
        t
    }

    pub fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.shown.push(' ');
        self.shown.push_str(&a.as_ref().to_string_lossy());
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// Runs to completion; non-zero exit is an error carrying stderr.
    pub async fn run(&mut self) -> Result<String, LabError> {
        let out = self.output().await?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(self.failed(&out))
        }
    }

    /// Runs to completion and returns whether it exited 0 (stderr is discarded).
    pub async fn succeeds(&mut self) -> Result<bool, LabError> {
        Ok(self.output().await?.status.success())
    }

    async fn output(&mut self) -> Result<std::process::Output, LabError> {
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.cmd.output().await.map_err(|e| LabError::Spawn {
            step: self.step.clone(),
            command: self.shown.clone(),
            source: e,
        })
    }

    fn failed(&self, out: &std::process::Output) -> LabError {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        LabError::ToolFailed {
            step: self.step.clone(),
            command: self.shown.clone(),
            status: out.status.code(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        }
    }
}

/// Whether `program` is on PATH.
pub fn have(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(Into::into))
        .any(|d: std::path::PathBuf| d.join(program).is_file())
}
