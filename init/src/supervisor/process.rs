//! Starting service processes and reaping every child of this process. Each service runs in
//! its own session (so it has its own process group, and a console service may take a
//! controlling terminal). Children are reaped here with `waitpid(-1, WNOHANG)` rather than by
//! `tokio::process`, because as PID 1 (or a child subreaper) orphans of any service become
//! our children too, and one reaper must see them all.
//!
//! The pid registry is process-wide: whichever supervisor notices SIGCHLD reaps for all and
//! hands each exit to the channel that registered the pid. Unknown pids are orphans.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::mpsc::UnboundedSender;

use super::manifest::ServiceSpec;

/// A registered child that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildExit {
    pub pid: Pid,
    /// `Some(code)` for a normal exit, `None` when a signal ended it.
    pub code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<nix::sys::signal::Signal>,
}

impl ChildExit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// `exited with status 1`, `killed by SIGKILL`.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("killed by {}", signal.as_str()),
            (None, None) => "ended".to_string(),
        }
    }
}

/// A started service process.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

static REGISTRY: LazyLock<Mutex<HashMap<Pid, UnboundedSender<ChildExit>>>> =
    LazyLock::new(Mutex::default);
static ORPHANS_REAPED: AtomicU64 = AtomicU64::new(0);

fn registry() -> MutexGuard<'static, HashMap<Pid, UnboundedSender<ChildExit>>> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts `spec`'s command in a new session with stdin from /dev/null and stdout/stderr
/// piped; its exit will be sent to `exits`.
pub fn spawn(spec: &ServiceSpec, exits: &UnboundedSender<ChildExit>) -> std::io::Result<Spawned> {
    let mut command = Command::new(&spec.command[0]);
    command
        .args(&spec.command[1..])
        .envs(&spec.environment)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &spec.working_directory {
        command.current_dir(dir);
    }
    in_new_session(&mut command);
    // The registry stays locked from before the fork until the pid is in it, and `reap`
    // holds it around waitpid: an exit can never be reaped before its pid is known.
    let mut registry = registry();
    let mut child = command.spawn()?;
    let pid = Pid::from_raw(child.id() as i32);
    registry.insert(pid, exits.clone());
    drop(registry);
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    // `child` is dropped without waiting: `reap` collects its exit status.
    Ok(Spawned {
        pid,
        stdout,
        stderr,
    })
}

/// Starts `program` with `args` (stdin from /dev/null, stdout and stderr inherited: the
/// console as PID 1) for the supervisor itself, not as a service; its exit is reaped by
/// [`reap`] like any registered child and sent to `exits`. `std::process::Command::status`
/// must not be used while the supervisor runs: its `waitpid(pid)` and our `waitpid(-1)` race
/// for the same exit.
pub fn spawn_command(
    program: &std::path::Path,
    args: &[String],
    exits: &UnboundedSender<ChildExit>,
) -> std::io::Result<Pid> {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null());
    let mut registry = registry();
    let child = command.spawn()?;
    let pid = Pid::from_raw(child.id() as i32);
    registry.insert(pid, exits.clone());
    Ok(pid)
}

#[allow(unsafe_code)]
fn in_new_session(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2),
    // which is async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

/// Collects every child that has ended: registered ones are reported to their supervisor,
/// others (orphans reparented to us) are counted. Returns how many orphans it reaped.
pub fn reap() -> u64 {
    let mut orphans = 0;
    let mut registry = registry();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Err(Errno::EINTR) => continue,
            Err(err) => {
                tracing::warn!("waitpid: {err}");
                break;
            }
            Ok(status) => {
                let (pid, code, signal) = match status {
                    WaitStatus::Exited(pid, code) => (pid, Some(code), None),
                    WaitStatus::Signaled(pid, signal, _) => (pid, None, Some(signal)),
                    // Stops and continues are not exits (we do not ask for them anyway).
                    _ => continue,
                };
                match registry.remove(&pid) {
                    Some(sender) => {
                        // A supervisor that is gone no longer cares.
                        let _ = sender.send(ChildExit { pid, code, signal });
                    }
                    None => orphans += 1,
                }
            }
        }
    }
    ORPHANS_REAPED.fetch_add(orphans, Ordering::Relaxed);
    orphans
}

/// Orphans reaped by this process so far.
pub fn orphans_reaped() -> u64 {
    ORPHANS_REAPED.load(Ordering::Relaxed)
}
