//! One multiplexed OpenSSH connection per host (openssh crate, native mux) and [`Remote`] over it.
//!
//! The master is the system `ssh` (`-M -f -N`, BatchMode, ControlPersist idle timeout,
//! ServerAliveInterval, ConnectTimeout) with a generated `-F` config that carries the honoured
//! `ansible_ssh_common_args` and then includes the user's config. Steps are sent as one command
//! line to the login shell of the remote user, which must be a POSIX shell (sh, bash, dash, ksh,
//! zsh), as for Ansible.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{RwLock, Semaphore};

use super::command::{become_failure, killed_by_remote_timeout, local_deadline, remote_line};
use super::errors::classify_connect_failure;
use super::options::{CommonArgs, SshOptions, parse_common_args};
use super::remote::{
    CommandOutput, MAX_MEMO_BYTES, MemoKey, Remote, RemoteCommand, SshError, Target,
};

/// An idle master exits after this long. Masters outlive the run that started them, so that the
/// next run within this time reuses them instead of connecting anew (as Ansible's ControlPersist
/// does); [`SshHost`] reconnects transparently when a step finds its master gone.
const CONTROL_PERSIST_SECS: usize = 600;
/// Longest unix socket path (`sun_path` is 104 bytes on BSDs/macOS, 108 on Linux; keep to the
/// smaller one, including the terminating NUL).
const MAX_SOCKET_PATH: usize = 103;
/// What the openssh crate and ssh append to the control directory:
/// `/.ssh-connectionXXXXXX/master.XXXXXXXXXXXXXXXX` while ssh binds the socket.
const SOCKET_SUFFIX_LEN: usize = "/.ssh-connectionXXXXXX/master.XXXXXXXXXXXXXXXX".len();

/// A connected host: one ssh master, at most `max_channels` steps at a time.
pub struct SshHost {
    target: Target,
    opts: SshOptions,
    common: CommonArgs,
    control_dir: PathBuf,
    session: RwLock<Arc<Session>>,
    /// The kept master's directory (inside the private control directory) while this host's
    /// master is one a later run can reuse; [`Remote::remember`] writes there.
    memo_dir: std::sync::Mutex<Option<PathBuf>>,
    channels: Semaphore,
}

/// Connects to `target`: starts one ssh master (host keys checked per `opts`), ready for steps.
pub async fn connect(target: &Target, opts: &SshOptions) -> Result<SshHost, SshError> {
    let other = |reason: String| SshError::Other {
        host: target.name.clone(),
        step: "connect".into(),
        reason,
    };
    if target.address.is_empty() || target.address.starts_with('-') {
        return Err(other(format!(
            "ansible_host {:?} is not a host name or address",
            target.address
        )));
    }
    if target
        .user
        .as_deref()
        .is_some_and(|u| u.is_empty() || u.starts_with('-'))
    {
        return Err(other(format!(
            "ansible_user {:?} is not a user name",
            target.user.as_deref().unwrap_or("")
        )));
    }
    let common = parse_common_args(&target.ssh_common_args).map_err(other)?;
    // `-o UserKnownHostsFile=` in the inventory pins this host's keys in that file.
    let mut opts = opts.clone();
    if let Some(kh) = &common.known_hosts {
        opts.known_hosts = Some(kh.clone());
    }
    let opts = &opts;
    let control_dir = prepare_control_dir(opts).map_err(other)?;
    sweep_dead_masters_once(&control_dir);
    let (session, memo_dir) = launch(target, opts, &common, &control_dir).await?;
    tracing::debug!(host = %target.name, address = %target.address, port = target.port, "ssh master up");
    Ok(SshHost {
        target: target.clone(),
        opts: opts.clone(),
        common,
        control_dir,
        session: RwLock::new(Arc::new(session)),
        memo_dir: std::sync::Mutex::new(memo_dir),
        channels: Semaphore::new(opts.max_channels.max(1)),
    })
}

/// `$XDG_RUNTIME_DIR/provision`, else `/tmp/provision-<uid>`.
fn default_control_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p.join("provision"),
        _ => PathBuf::from(format!("/tmp/provision-{}", nix::unistd::geteuid())),
    }
}

/// Creates the control directory (0700) and checks that it is ours, private and short enough.
fn prepare_control_dir(opts: &SshOptions) -> Result<PathBuf, String> {
    let dir = opts.control_dir.clone().unwrap_or_else(default_control_dir);
    if dir.as_os_str().len() + SOCKET_SUFFIX_LEN > MAX_SOCKET_PATH {
        return Err(format!(
            "the ssh control directory {} is too long for a unix socket path (at most {} characters); choose a shorter one",
            dir.display(),
            MAX_SOCKET_PATH - SOCKET_SUFFIX_LEN
        ));
    }
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(&dir)
            .map_err(|e| {
                format!(
                    "cannot create the ssh control directory {}: {e}",
                    dir.display()
                )
            })?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot chmod {}: {e}", dir.display()))?;
    }
    let meta = std::fs::symlink_metadata(&dir)
        .map_err(|e| format!("ssh control directory {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "ssh control directory {} is not a directory",
            dir.display()
        ));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "ssh control directory {} must belong to this user with mode 0700 (others could take over the connections); fix it or remove it",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The `-F` file for the master: the honoured `ansible_ssh_common_args` (first value wins in
/// ssh), our defaults, then the user's config. Options provision sets on the command line
/// (host-key policy, batch mode, control master, timeouts) override anything in it.
fn ssh_config_text(opts: &SshOptions, common: &CommonArgs) -> Result<String, String> {
    let mut text =
        String::from("# written by provision for one ssh master; removed after connecting\n");
    for (k, v) in &common.options {
        text.push_str(&format!("{k} {v}\n"));
    }
    text.push_str("ServerAliveCountMax 3\n");
    match &opts.ssh_config {
        Some(p) => {
            let p =
                std::path::absolute(p).map_err(|e| format!("ssh config {}: {e}", p.display()))?;
            if !p.is_file() {
                return Err(format!("ssh config file {} does not exist", p.display()));
            }
            text.push_str(&format!("Include \"{}\"\n", p.display()));
        }
        None => {
            // -F replaces both default files; bring them back.
            text.push_str("Include ~/.ssh/config\nInclude /etc/ssh/ssh_config\n");
        }
    }
    Ok(text)
}

fn known_hosts_display(opts: &SshOptions) -> String {
    opts.known_hosts
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.ssh/known_hosts".into())
}

async fn launch(
    target: &Target,
    opts: &SshOptions,
    common: &CommonArgs,
    control_dir: &Path,
) -> Result<(Session, Option<PathBuf>), SshError> {
    let other = |reason: String| SshError::Other {
        host: target.name.clone(),
        step: "connect".into(),
        reason,
    };
    let config = ssh_config_text(opts, common).map_err(other)?;
    let mut config_file = tempfile::Builder::new()
        .prefix("cfg")
        .tempfile_in(control_dir)
        .map_err(|e| {
            other(format!(
                "cannot write a temporary ssh config in {}: {e}",
                control_dir.display()
            ))
        })?;
    config_file
        .write_all(config.as_bytes())
        .map_err(|e| other(format!("cannot write a temporary ssh config: {e}")))?;

    let mut b = SessionBuilder::default();
    b.known_hosts_check(if opts.accept_new_host_keys && !common.strict {
        KnownHosts::Add
    } else {
        KnownHosts::Strict
    })
    .connect_timeout(opts.connect_timeout.max(Duration::from_secs(1)))
    .server_alive_interval(opts.keepalive_interval.max(Duration::from_secs(1)))
    .control_directory(control_dir)
    .control_persist(ControlPersist::IdleFor(
        std::num::NonZeroUsize::new(CONTROL_PERSIST_SECS).expect("non-zero"),
    ))
    .config_file(config_file.path())
    .port(target.port);
    if let Some(user) = &target.user {
        b.user(user.clone());
    }
    if let Some(key) = &target.private_key_file {
        b.keyfile(key);
    }
    if let Some(kh) = &opts.known_hosts {
        b.user_known_hosts_file(kh);
    }

    // A master left by an earlier run to the same destination with the same settings (see
    // master_name) is used again: its host key was checked and the user authenticated.
    let reuse_dir = control_dir.join(master_name(target, opts, &config));
    if let Some(session) = resume_master(&reuse_dir, opts.connect_timeout).await {
        tracing::debug!(host = %target.name, "ssh master of an earlier run reused");
        return Ok((session, Some(reuse_dir)));
    }

    // ConnectTimeout bounds TCP connect and the banner; this bounds the rest (kex, auth).
    let bound = opts.connect_timeout * 3 + Duration::from_secs(5);
    let (b, destination) = b.resolve(&target.address);
    match tokio::time::timeout(bound, b.launch_master(destination)).await {
        Err(_) => Err(SshError::Connect {
            host: target.name.clone(),
            address: format!("{}:{}", target.address, target.port),
            reason: format!("no ssh session after {}s", bound.as_secs()),
            hint: "The host accepted TCP but did not finish the ssh handshake: overloaded, or not an ssh server on that port?".into(),
        }),
        Ok(Ok(dir)) => Ok(keep_master(
            dir,
            &reuse_dir,
            &about_master(target, opts, &config),
        )),
        Ok(Err(openssh::Error::Connect(e))) => Err(classify_connect_failure(
            target,
            &known_hosts_display(opts),
            &e.to_string(),
        )),
        Ok(Err(e)) => Err(other(format!(
            "cannot start the ssh master ({e}{}); is the `ssh` client installed?",
            std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        ))),
    }
}

/// The directory name under which a master is kept for later runs: a digest of everything that
/// decides where it connects and what it trusts — user, address, port, key file, known_hosts file
/// and host-key policy, the keepalive interval, the generated ssh config (inventory options and
/// the included config) —
/// and of the identity and modification time of the files among those, so that editing
/// known_hosts, the key or an ssh config makes the next run connect anew.
fn master_name(target: &Target, opts: &SshOptions, config: &str) -> String {
    use sha2::Digest;
    fn file_stamp(path: &Path) -> String {
        match std::fs::metadata(path) {
            Ok(m) => format!(
                "{}:{}:{}:{}.{}",
                m.dev(),
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec()
            ),
            Err(_) => "absent".into(),
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut files: Vec<PathBuf> = Vec::new();
    files.extend(target.private_key_file.clone());
    match &opts.known_hosts {
        Some(kh) => files.push(kh.clone()),
        None => files.extend(home.as_ref().map(|h| h.join(".ssh/known_hosts"))),
    }
    match &opts.ssh_config {
        Some(c) => files.push(c.clone()),
        None => {
            files.extend(home.as_ref().map(|h| h.join(".ssh/config")));
            files.push(PathBuf::from("/etc/ssh/ssh_config"));
        }
    }
    let mut h = sha2::Sha256::new();
    let mut field = |v: &[u8]| {
        h.update((v.len() as u64).to_le_bytes());
        h.update(v);
    };
    field(b"provision ssh master v1");
    field(target.user.as_deref().unwrap_or("").as_bytes());
    field(target.address.as_bytes());
    field(&target.port.to_le_bytes());
    field(&[u8::from(opts.accept_new_host_keys)]);
    // The keepalive interval is fixed when a master starts, and decides how soon a dead host is
    // noticed.
    field(&opts.keepalive_interval.as_secs().to_le_bytes());
    field(config.as_bytes());
    for f in &files {
        field(f.as_os_str().as_encoded_bytes());
        field(file_stamp(f).as_bytes());
    }
    let digest = h.finalize();
    format!("m-{}", hex::encode(&digest[..8]))
}

/// A live master kept in `dir` by an earlier run, or `None` (then whatever is left there is
/// removed: the master exited, its socket is stale).
async fn resume_master(dir: &Path, timeout: Duration) -> Option<Session> {
    let ctl = dir.join("master");
    if std::fs::symlink_metadata(&ctl).is_err() {
        return None;
    }
    let session = Session::resume_mux(ctl.into_boxed_path(), Some(dir.join("log").into()));
    match tokio::time::timeout(timeout.max(Duration::from_secs(1)), session.check()).await {
        Ok(Ok(())) => Some(session),
        _ => {
            // Resumed sessions are not shut down on drop; this one is dead anyway.
            drop(session);
            let _ = std::fs::remove_dir_all(dir);
            None
        }
    }
}

/// The file in a kept master's directory that says where it connects (no secrets: the
/// destination and the generated ssh config, which names files but holds no key material).
const ABOUT: &str = "about";

fn about_master(target: &Target, opts: &SshOptions, config: &str) -> String {
    format!(
        "destination {}@{}:{}\nknown_hosts {}\n{config}",
        target.user.as_deref().unwrap_or(""),
        target.address,
        target.port,
        opts.known_hosts
            .as_ref()
            .map_or_else(String::new, |p| p.display().to_string()),
    )
}

/// Closes the masters kept by earlier runs (in `control_dir`, default the user's) whose
/// destination or ssh configuration mentions `needle`, e.g. the known_hosts file of a lab that
/// is being torn down: their hosts are gone, and a master must not outlive them until its idle
/// timeout. Returns how many were closed.
pub async fn close_kept_masters(control_dir: Option<&Path>, needle: &str) -> usize {
    let control_dir = control_dir.map_or_else(default_control_dir, Path::to_path_buf);
    let Ok(entries) = std::fs::read_dir(control_dir) else {
        return 0;
    };
    let mut closed = 0;
    for entry in entries.flatten() {
        let kept = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("m-"));
        let about = std::fs::read_to_string(entry.path().join(ABOUT)).unwrap_or_default();
        if !kept || needle.is_empty() || !about.contains(needle) {
            continue;
        }
        // `-O exit` asks the master to stop; the destination argument is required but unused.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::process::Command::new("ssh")
                .arg("-S")
                .arg(entry.path().join("master"))
                .args(["-O", "exit", "kept-master"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status(),
        )
        .await;
        let _ = std::fs::remove_dir_all(entry.path());
        closed += 1;
    }
    closed
}

/// Removes, once per process and control directory, the kept-master directories whose master has
/// exited (nothing accepts on the socket any more), so they do not pile up run after run.
fn sweep_dead_masters_once(control_dir: &Path) {
    static SWEPT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|p| p.into_inner());
        if swept.iter().any(|d| d == control_dir) {
            return;
        }
        swept.push(control_dir.to_path_buf());
    }
    sweep_dead_masters(control_dir);
}

fn sweep_dead_masters(control_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(control_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_kept = name.to_str().is_some_and(|n| n.starts_with("m-"));
        if !is_kept || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let socket = entry.path().join("master");
        let dead = match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ),
        };
        if dead {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Turns a freshly launched master into one the next run can find: its directory is renamed to
/// `reuse_dir` (inside the same private control directory) and the master is left running when
/// this process ends, until it has been idle for [`CONTROL_PERSIST_SECS`]. When the name is
/// taken (another provision run connected to the same host at the same moment), the master stays
/// private to this run and ends with it, as masters always did.
fn keep_master(
    dir: tempfile::TempDir,
    reuse_dir: &Path,
    about: &str,
) -> (Session, Option<PathBuf>) {
    // What the master is for, so that whoever tears the hosts down can close their masters
    // (close_kept_masters). Written before the rename: a kept directory always has it.
    let _ = std::fs::write(dir.path().join(ABOUT), about);
    // rename(2) does not replace a non-empty directory: a master another run just kept there
    // stays.
    match std::fs::rename(dir.path(), reuse_dir) {
        Ok(()) => {
            let _ = dir.keep();
            (
                Session::resume_mux(
                    reuse_dir.join("master").into_boxed_path(),
                    Some(reuse_dir.join("log").into_boxed_path()),
                ),
                Some(reuse_dir.to_path_buf()),
            )
        }
        Err(_) => (Session::new_native_mux(dir), None),
    }
}

impl std::fmt::Debug for SshHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshHost")
            .field("host", &self.target.name)
            .field("address", &self.target.address)
            .field("port", &self.target.port)
            .field("user", &self.target.user)
            .field("become", &self.target.become_)
            .finish_non_exhaustive()
    }
}

impl SshHost {
    /// How this host is reached.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Ends the master connection.
    pub async fn close(self) {
        let session = self.session.into_inner();
        if let Ok(session) = Arc::try_unwrap(session) {
            let _ = session.close().await;
        }
    }

    /// The kept master's directory, if this host's master is kept.
    fn memo_dir(&self) -> Option<PathBuf> {
        self.memo_dir
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the master when it is gone (idle timeout, network blip, host reboot).
    async fn reconnect(&self, stale: &Arc<Session>) -> Result<(), SshError> {
        let mut current = self.session.write().await;
        if Arc::ptr_eq(&current, stale) {
            tracing::info!(host = %self.target.name, "ssh master gone; reconnecting");
            let (fresh, memo_dir) =
                launch(&self.target, &self.opts, &self.common, &self.control_dir).await?;
            *current = Arc::new(fresh);
            *self.memo_dir.lock().unwrap_or_else(|p| p.into_inner()) = memo_dir;
        }
        Ok(())
    }

    fn err_other(&self, step: &str, reason: String) -> SshError {
        SshError::Other {
            host: self.target.name.clone(),
            step: step.into(),
            reason,
        }
    }

    fn err_disconnected(&self, step: &str, reason: String) -> SshError {
        SshError::Disconnected {
            host: self.target.name.clone(),
            step: step.into(),
            reason,
        }
    }

    /// Starts the command on the current master, reconnecting once if the master is gone.
    async fn exec(&self, cmd: &RemoteCommand, line: &str) -> Result<CommandOutput, SshError> {
        let mut reconnected = false;
        loop {
            let session = self.session.read().await.clone();
            let spawned = session
                .raw_command(line)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .await;
            match spawned {
                Ok(child) => return self.collect(child, cmd, &session).await,
                Err(openssh::Error::InvalidCommand) => {
                    return Err(self.err_other(
                        &cmd.step,
                        "the script contains a NUL byte; pass binary data on stdin".into(),
                    ));
                }
                Err(e)
                    if matches!(e, openssh::Error::Disconnected)
                        || session.check().await.is_err() =>
                {
                    // Nothing ran: the master is gone (idle timeout, network, reboot). Start a new
                    // one and try once more.
                    if reconnected {
                        return Err(self.err_disconnected(
                            &cmd.step,
                            format!("the ssh master connection is gone ({e})"),
                        ));
                    }
                    reconnected = true;
                    self.reconnect(&session).await?;
                }
                Err(e) => {
                    let detail = std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    return Err(self.err_other(
                        &cmd.step,
                        format!(
                            "cannot open an ssh channel: {e}: {detail}. If sshd refused the session, its MaxSessions is below max_channels ({})",
                            self.opts.max_channels
                        ),
                    ));
                }
            }
        }
    }

    async fn collect(
        &self,
        mut child: openssh::Child<&Session>,
        cmd: &RemoteCommand,
        session: &Session,
    ) -> Result<CommandOutput, SshError> {
        let stdin = child.stdin().take();
        let stdout = child.stdout().take();
        let stderr = child.stderr().take();
        let write = async {
            if let Some(mut pipe) = stdin {
                if let Some(bytes) = &cmd.stdin {
                    // A script that exits without reading its stdin closes the pipe: not an error.
                    let _ = pipe.write_all(bytes).await;
                }
                let _ = pipe.shutdown().await;
            }
        };
        let read_out = async {
            let mut buf = Vec::new();
            let mut err = None;
            if let Some(mut pipe) = stdout {
                err = pipe.read_to_end(&mut buf).await.err();
            }
            (buf, err)
        };
        let read_err = async {
            let mut buf = Vec::new();
            if let Some(mut pipe) = stderr {
                let _ = pipe.read_to_end(&mut buf).await;
            }
            buf
        };
        let ((), (stdout, read_error), stderr, waited) =
            tokio::join!(write, read_out, read_err, child.wait());
        if let Some(e) = read_error {
            // Output cut short must never pass for the whole output.
            return Err(self.err_other(
                &cmd.step,
                format!(
                    "reading the step's output failed after {} bytes: {e}",
                    stdout.len()
                ),
            ));
        }
        let status = match waited {
            Ok(st) => st.code(),
            // The crate turns exit status 127 into an error; it is an ordinary status here.
            Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => Some(127),
            Err(e) => {
                // Killed by a signal, or the connection died: only the master can tell.
                if let Err(check) = session.check().await {
                    return Err(self.err_disconnected(
                        &cmd.step,
                        format!("{e}; the ssh master reports: {check}"),
                    ));
                }
                match e {
                    openssh::Error::RemoteProcessTerminated => None,
                    other => {
                        return Err(
                            self.err_other(&cmd.step, format!("ssh channel failed: {other}"))
                        );
                    }
                }
            }
        };
        Ok(CommandOutput {
            status,
            stdout,
            stderr,
        })
    }
}

#[async_trait]
impl Remote for SshHost {
    fn host(&self) -> &str {
        &self.target.name
    }

    async fn run(&self, cmd: RemoteCommand) -> Result<CommandOutput, SshError> {
        let _permit = self
            .channels
            .acquire()
            .await
            .map_err(|_| self.err_other(&cmd.step, "the host connection is closing".into()))?;
        let line = remote_line(
            &cmd.script,
            cmd.timeout,
            self.target.become_,
            cmd.remote_bound,
        );
        let started = Instant::now();
        // The step name and sizes only: scripts can be long, stdin may hold secrets.
        tracing::debug!(
            host = %self.target.name,
            step = %cmd.step,
            script_bytes = cmd.script.len(),
            stdin_bytes = cmd.stdin.as_ref().map_or(0, Vec::len),
            "run"
        );
        let out =
            match tokio::time::timeout(local_deadline(cmd.timeout), self.exec(&cmd, &line)).await {
                Err(_) => {
                    return Err(SshError::Timeout {
                        host: self.target.name.clone(),
                        step: cmd.step.clone(),
                        secs: cmd.timeout.as_secs(),
                    });
                }
                Ok(result) => result?,
            };
        if self.target.become_
            && let Some(reason) = become_failure(out.status, &out.stdout, &out.stderr)
        {
            return Err(SshError::Become {
                host: self.target.name.clone(),
                step: cmd.step.clone(),
                user: self
                    .target
                    .user
                    .clone()
                    .unwrap_or_else(|| "the ssh user".into()),
                reason,
            });
        }
        if cmd.remote_bound && killed_by_remote_timeout(out.status, started.elapsed(), cmd.timeout)
        {
            return Err(SshError::Timeout {
                host: self.target.name.clone(),
                step: cmd.step.clone(),
                secs: cmd.timeout.as_secs(),
            });
        }
        Ok(out)
    }

    fn recall(&self, key: MemoKey) -> Option<String> {
        read_memo(&self.memo_dir()?, key)
    }

    fn remember(&self, key: MemoKey, value: &str) {
        if let Some(dir) = self.memo_dir()
            && let Err(e) = write_memo(&dir, key, value)
        {
            // Only a hint for the next run: it then asks the host twice, as without it.
            tracing::debug!(host = %self.target.name, "cannot keep {}: {e}", key.file_name());
        }
    }
}

/// Reads a remembered value: a regular file of at most [`MAX_MEMO_BYTES`], not followed
/// through a symlink. The directory is the kept master's, inside the control directory that
/// prepare_control_dir checked is this user's and private.
fn read_memo(dir: &Path, key: MemoKey) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dir.join(key.file_name()))
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_MEMO_BYTES {
        return None;
    }
    let mut text = String::new();
    f.take(MAX_MEMO_BYTES).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Writes a remembered value atomically (a 0600 temporary file in the same directory, renamed
/// over the old one), so a run killed mid-write leaves the old value or none.
fn write_memo(dir: &Path, key: MemoKey, value: &str) -> std::io::Result<()> {
    if value.len() as u64 > MAX_MEMO_BYTES {
        return Err(std::io::Error::other("too large"));
    }
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(value.as_bytes())?;
    tmp.persist(dir.join(key.file_name()))
        .map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memos_round_trip_within_their_bound_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read_memo(dir.path(), MemoKey::Facts),
            None,
            "nothing kept yet"
        );
        write_memo(dir.path(), MemoKey::Facts, "os_id=debian\nprobe_end=1\n").unwrap();
        write_memo(dir.path(), MemoKey::Facts, "os_id=rhel\nprobe_end=1\n").unwrap();
        assert_eq!(
            read_memo(dir.path(), MemoKey::Facts).as_deref(),
            Some("os_id=rhel\nprobe_end=1\n"),
            "the newer value replaces the older"
        );
        let file = dir.path().join(MemoKey::Facts.file_name());
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );

        let big = "x".repeat(MAX_MEMO_BYTES as usize + 1);
        assert!(write_memo(dir.path(), MemoKey::Facts, &big).is_err());
        std::fs::write(&file, &big).unwrap();
        assert_eq!(
            read_memo(dir.path(), MemoKey::Facts),
            None,
            "over the bound: ignored"
        );

        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "os_id=planted\n").unwrap();
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        assert_eq!(
            read_memo(dir.path(), MemoKey::Facts),
            None,
            "a symlink is not followed"
        );
    }

    #[test]
    fn dead_kept_masters_are_swept_and_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = tmp.path().join("m-dead");
        let live = tmp.path().join("m-live");
        let other = tmp.path().join(".ssh-connection1234");
        for d in [&dead, &live, &other] {
            std::fs::create_dir(d).unwrap();
        }
        // A socket nobody listens on any more, one that still accepts, and a directory that is
        // not a kept master (left alone whatever it holds).
        drop(std::os::unix::net::UnixListener::bind(dead.join("master")).unwrap());
        let _listener = std::os::unix::net::UnixListener::bind(live.join("master")).unwrap();
        drop(std::os::unix::net::UnixListener::bind(other.join("master")).unwrap());
        sweep_dead_masters(tmp.path());
        assert!(!dead.exists(), "dead master kept");
        assert!(live.join("master").exists(), "live master removed");
        assert!(other.exists(), "not ours to sweep");
    }

    #[test]
    fn control_dir_length_is_checked() {
        let opts = SshOptions {
            control_dir: Some(PathBuf::from(format!("/tmp/{}", "x".repeat(60)))),
            ..SshOptions::default()
        };
        let e = prepare_control_dir(&opts).unwrap_err();
        assert!(e.contains("too long"), "{e}");
    }

    #[test]
    fn control_dir_must_be_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ctl");
        let opts = SshOptions {
            control_dir: Some(dir.clone()),
            ..SshOptions::default()
        };
        assert_eq!(prepare_control_dir(&opts).unwrap(), dir);
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            prepare_control_dir(&opts)
                .unwrap_err()
                .contains("mode 0700")
        );
    }

    /// `ssh -G` resolves a config without connecting: check that ssh accepts the generated file
    /// and that the honoured options take effect, for both the default and an explicit config.
    #[test]
    fn generated_config_is_what_ssh_resolves() {
        if std::process::Command::new("ssh")
            .arg("-V")
            .output()
            .is_err()
        {
            netdump_test_support::skip(
                "generated_config_is_what_ssh_resolves",
                "ssh is not installed",
            );
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let user_cfg = tmp.path().join("user_config");
        std::fs::write(
            &user_cfg,
            "Host *\n  ConnectionAttempts 3\n  ServerAliveCountMax 9\n",
        )
        .unwrap();
        let common = parse_common_args(&[
            "-o".to_string(),
            "ProxyJump=gw.example".to_string(),
            "-oServerAliveCountMax=5".to_string(),
        ])
        .unwrap();
        for ssh_config in [None, Some(user_cfg.clone())] {
            let opts = SshOptions {
                ssh_config: ssh_config.clone(),
                ..SshOptions::default()
            };
            let cfg = tmp.path().join("generated");
            std::fs::write(&cfg, ssh_config_text(&opts, &common).unwrap()).unwrap();
            let out = std::process::Command::new("ssh")
                .arg("-G")
                .arg("-F")
                .arg(&cfg)
                .arg("198.18.0.10")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
            assert!(
                out.status.success(),
                "ssh rejected the generated config: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("\nproxyjump gw.example\n"), "{text}");
            // The inventory's value wins over both our default and the user's config.
            assert!(text.contains("\nserveralivecountmax 5\n"), "{text}");
            if ssh_config.is_some() {
                assert!(text.contains("\nconnectionattempts 3\n"), "{text}");
            }
        }
    }

    #[test]
    fn config_puts_common_args_first_and_includes_user_config() {
        let common = parse_common_args(&["-oProxyJump=gw".to_string()]).unwrap();
        let text = ssh_config_text(&SshOptions::default(), &common).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "ProxyJump gw");
        assert!(text.contains("Include ~/.ssh/config\n"));
        let missing = SshOptions {
            ssh_config: Some("/nonexistent/cfg".into()),
            ..SshOptions::default()
        };
        assert!(
            ssh_config_text(&missing, &common)
                .unwrap_err()
                .contains("does not exist")
        );
    }
}
