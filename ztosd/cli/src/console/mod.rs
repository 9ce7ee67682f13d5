//! The serial and VGA console (`ztos console --tty /dev/ttyS0`): a login prompt in front of an
//! interactive `ztos` shell with line editing, in-memory history and tab completion of the
//! command tree. Never an unauthenticated shell: every failure leads back to the login prompt.
//!
//! ```text
//!  tty ──▶ attach (setsid, TIOCSCTTY, dup2 onto 0/1/2)
//!      ──▶ wait for ztosd on the unix socket
//!      ──▶ first boot: set the admin password (POST /api/v1/users/setup)
//!      ──▶ login prompt ──POST /api/v1/auth/login──▶ session secret
//!      ──▶ shell: each line is `ztos <words>` through `crate::run`, over the unix socket
//!          with `Authorization: Bearer <session>`, so the API enforces the user's role
//!      ──▶ logout / Ctrl-D / 15 minutes idle: POST /api/v1/auth/logout, back to the login
//! ```
//!
//! The line editor (rustyline) blocks, so it runs on its own thread and hands lines to the
//! async side, which applies the idle limit. An idle logout cannot interrupt a blocked
//! terminal read, so after ending the session the console replaces itself with a fresh copy
//! of the same program (`exec`), which starts at the login prompt.
//!
//! `login` holds the prompts (first-boot admin password, login, password input) and `shell`
//! the logged-in command loop with its line editor and completion.

pub mod login;
mod shell;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use hyper::{Method, StatusCode};
use ztos_model::api::users::{LoginRequest, LoginResponse};

use crate::args::ConsoleArgs;
use crate::client::{Client, ClientError};
use login::{first_boot, perm_degraded_banner, read_line, read_password, wait_for_api};
use shell::{shell, ShellEnd};

/// A logged-in console with no input for this long is logged out.
pub const IDLE_LOGOUT: Duration = Duration::from_secs(15 * 60);

/// The terminal's mode when the console started, restored before an idle restart.
static TERMINAL_MODE: std::sync::OnceLock<rustix::termios::Termios> = std::sync::OnceLock::new();

/// How often the console retries reaching ztosd while waiting for it.
const API_RETRY: Duration = Duration::from_secs(2);

/// Runs the console until standard input ends (or forever on a terminal). `socket` is the
/// local API socket.
pub async fn run(args: ConsoleArgs, socket: PathBuf) -> anyhow::Result<()> {
    let source = match &args.tty {
        Some(tty) => {
            attach_tty(tty)?;
            tty.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "tty".into())
        }
        None => "console".to_string(),
    };
    if let Ok(mode) = rustix::termios::tcgetattr(std::io::stdin()) {
        let _ = TERMINAL_MODE.set(mode);
    }
    // Ctrl-C must never end the console (that would be a way out of a command into nothing);
    // it interrupts the running command instead. Registering the handler replaces the default
    // action for the rest of the process's life.
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the Ctrl-C handler")?;
    let hostname = args.hostname.clone().unwrap_or_else(kernel_hostname);
    let client = Client::unix(&socket);
    let mut out = std::io::stdout();

    loop {
        let setup = wait_for_api(&client, &socket, &mut out).await;
        if setup.needs_admin_password {
            first_boot(&client, &mut out).await?;
            continue;
        }
        write!(out, "\n{hostname} login: ")?;
        out.flush()?;
        let Some(name) = read_line()? else {
            // Standard input ended (or the terminal hung up): the supervisor starts a
            // fresh console.
            return Ok(());
        };
        let name = name.trim().to_string();
        if name.is_empty() {
            continue;
        }
        let Some(password) = read_password("Password: ")? else {
            return Ok(());
        };
        let login = client
            .json(
                Method::POST,
                "/api/v1/auth/login",
                Some(&serde_json::to_value(LoginRequest {
                    name: name.clone(),
                    password,
                    source: Some(source.clone()),
                })?),
            )
            .await;
        let login = login.map(serde_json::from_value::<LoginResponse>);
        let (session, role) = match login {
            Ok(Err(err)) => {
                writeln!(out, "login failed: {err}")?;
                continue;
            }
            Ok(Ok(answer)) => match answer.session {
                Some(session) => (session, crate::format::role_name(answer.role)),
                None => {
                    writeln!(out, "login failed: ztosd opened no session")?;
                    continue;
                }
            },
            Err(ClientError::Api {
                status: StatusCode::UNAUTHORIZED,
                ..
            }) => {
                writeln!(out, "Login incorrect")?;
                continue;
            }
            Err(err) => {
                writeln!(out, "login failed: {err}")?;
                continue;
            }
        };
        writeln!(
            out,
            "Logged in as {name} ({role}). Type `help` for commands."
        )?;
        if let Some(banner) =
            perm_degraded_banner(Path::new(ztos_image::layout::PERM_DEGRADED_FILE))
        {
            write!(out, "{banner}")?;
        }
        let end = shell(&session, &hostname, &socket, &mut interrupts, &mut out).await;
        let _ = client_with_session(&socket, &session)
            .send(Method::POST, "/api/v1/auth/logout", None)
            .await;
        match end {
            ShellEnd::Logout => writeln!(out, "logged out")?,
            ShellEnd::SessionGone(message) => writeln!(out, "{message}: logged out")?,
            ShellEnd::Idle => {
                writeln!(
                    out,
                    "\nno input for {} minutes: logged out",
                    IDLE_LOGOUT.as_secs() / 60
                )?;
                out.flush()?;
                return Err(restart_self());
            }
        }
    }
}

fn client_with_session(socket: &Path, session: &str) -> Client {
    Client::unix(socket).with_session(Some(session.to_string()))
}

/// Makes `tty` this process's controlling terminal in a new session and its standard input,
/// output and error. rustix wraps `setsid(2)` and the `TIOCSCTTY` ioctl safely.
fn attach_tty(tty: &Path) -> anyhow::Result<()> {
    match rustix::process::setsid() {
        Ok(_) => {}
        // Already a session leader (after an idle logout restarted the console in place).
        Err(rustix::io::Errno::PERM) => {}
        Err(err) => return Err(err).context("setsid"),
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(tty)
        .with_context(|| format!("opening {}", tty.display()))?;
    if let Err(err) = rustix::process::ioctl_tiocsctty(&file) {
        // Still usable for logins, but Ctrl-C and hangups will not reach us.
        eprintln!(
            "warning: {} cannot become the controlling terminal: {err}",
            tty.display()
        );
    }
    rustix::stdio::dup2_stdin(&file).with_context(|| format!("{} as stdin", tty.display()))?;
    rustix::stdio::dup2_stdout(&file).with_context(|| format!("{} as stdout", tty.display()))?;
    rustix::stdio::dup2_stderr(&file).with_context(|| format!("{} as stderr", tty.display()))?;
    Ok(())
}

/// Replaces this process with a fresh copy of itself (same arguments), which starts at the
/// login prompt. Only returns on failure; the caller then exits and the supervisor restarts
/// the console.
fn restart_self() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    // The editor thread left the terminal in raw mode; a fresh start must not inherit it.
    if let Some(mode) = TERMINAL_MODE.get() {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            mode,
        );
    }
    let error = std::process::Command::new("/proc/self/exe")
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow::Error::from(error).context("restarting the console after the idle logout")
}

fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "ztos".to_string())
}
