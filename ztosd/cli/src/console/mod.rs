//! The serial and VGA console (`ztos console --tty /dev/ttyS0`): a login prompt in front of an
//! interactive `ztos` shell with line editing, in-memory history and tab completion of the
//! command tree. Never an unauthenticated shell: every failure leads back to the login prompt.
//!
//! ```text
//!  tty ──▶ attach (setsid, TIOCSCTTY, dup2 onto 0/1/2)
//!      ──▶ wait for ztosd on the unix socket
//!      ──▶ first boot: set the admin password (POST /api/v1/users/setup)
//!      ──▶ login prompt ──POST /api/v1/auth/login──▶ session secret
//!      ──▶ shell: each line is `ztos <words>` through `crate::cli::run`, over the unix socket
//!          with `Authorization: Bearer <session>`, so the API enforces the user's role
//!      ──▶ logout / Ctrl-D / 15 minutes idle: POST /api/v1/auth/logout, back to the login
//! ```
//!
//! The line editor (rustyline) blocks, so it runs on its own thread and hands lines to the
//! async side, which applies the idle limit. An idle logout cannot interrupt a blocked
//! terminal read, so after ending the session the console replaces itself with a fresh copy
//! of the same program (`exec`), which starts at the login prompt.
//!
//! This module also holds the `ztos user ...` commands, which share the password prompt.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, CommandFactory, Parser, Subcommand};
use futures::FutureExt;
use hyper::{Method, StatusCode};
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use serde_json::{json, Value};

use crate::cli::{Cli, RoleArg};
use crate::client::{Client, ClientError};

/// A logged-in console with no input for this long is logged out.
pub const IDLE_LOGOUT: Duration = Duration::from_secs(15 * 60);
/// The terminal's mode when the console started, restored before an idle restart.
static TERMINAL_MODE: std::sync::OnceLock<rustix::termios::Termios> = std::sync::OnceLock::new();
/// How often the console retries reaching ztosd while waiting for it.
const API_RETRY: Duration = Duration::from_secs(2);
/// History lines kept in memory per login.
const HISTORY_LINES: usize = 500;

/// `ztos console`.
#[derive(Debug, Clone, Args)]
pub struct ConsoleArgs {
    /// The terminal to run on (`/dev/ttyS0`, `/dev/tty1`); it becomes the controlling
    /// terminal of a new session.
    #[arg(long, conflicts_with = "stdio", required_unless_present = "stdio")]
    pub tty: Option<PathBuf>,
    /// Run on standard input and output instead (tests, or a terminal that is already set
    /// up); passwords are not hidden when standard input is not a terminal.
    #[arg(long)]
    pub stdio: bool,
    /// The name in the prompts (default: the kernel's host name).
    #[arg(long)]
    pub hostname: Option<String>,
}

/// `ztos user ...`: console users.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// The console users and their roles.
    List,
    /// Set a user's password (asked twice, without echo), creating the user if needed.
    Passwd {
        name: String,
        /// The user's role; a new user without it gets `read`.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
    },
    /// Delete a user (not the last admin).
    Delete { name: String },
}

/// Runs a `ztos user` command against `client`.
pub async fn run_user(
    client: &Client,
    command: UserCommand,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        UserCommand::List => {
            let list = client.json(Method::GET, "/api/v1/users", None).await?;
            if json_output {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                let rows = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| {
                        ["name", "role", "created", "changed"]
                            .iter()
                            .map(|k| u.get(*k).and_then(Value::as_str).unwrap_or("-").to_string())
                            .collect()
                    })
                    .collect();
                write!(
                    out,
                    "{}",
                    crate::cli::table(&["NAME", "ROLE", "CREATED", "CHANGED"], rows)
                )?;
            }
        }
        UserCommand::Passwd { name, role } => {
            let password = read_new_password(&name)?;
            let mut body = json!({ "password": password });
            if let Some(role) = role {
                body["role"] = json!(role_str(role));
            }
            let info = client
                .json(
                    Method::PUT,
                    &format!("/api/v1/users/{}/password", path_segment(&name)),
                    Some(&body),
                )
                .await?;
            if json_output {
                writeln!(out, "{}", serde_json::to_string_pretty(&info)?)?;
            } else {
                let role = info.get("role").and_then(Value::as_str).unwrap_or("-");
                writeln!(out, "password of {name} ({role}) set")?;
            }
        }
        UserCommand::Delete { name } => {
            client
                .json(
                    Method::DELETE,
                    &format!("/api/v1/users/{}", path_segment(&name)),
                    None,
                )
                .await?;
            if !json_output {
                writeln!(out, "user {name} deleted")?;
            }
        }
    }
    Ok(())
}

fn role_str(role: RoleArg) -> &'static str {
    match role {
        RoleArg::Read => "read",
        RoleArg::Operate => "operate",
        RoleArg::Admin => "admin",
    }
}

/// User names are `[a-z0-9._-]`; anything else is escaped so it reaches the API's name check.
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

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
        if setup.get("needs_admin_password").and_then(Value::as_bool) == Some(true) {
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
                Some(&json!({ "name": name, "password": password, "source": source })),
            )
            .await;
        let (session, role) = match login {
            Ok(answer) => match answer.get("session").and_then(Value::as_str) {
                Some(session) => (
                    session.to_string(),
                    answer
                        .get("role")
                        .and_then(Value::as_str)
                        .unwrap_or("read")
                        .to_string(),
                ),
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
        if let Some(banner) = perm_degraded_banner(Path::new(crate::daemon::PERM_DEGRADED_FILE)) {
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

/// The warning shown after login while ztos-init runs /perm on a tmpfs: `file` (ztos-init's
/// `/run/ztos/perm-degraded`) holds the reason. `None` when the file is absent (perm is fine).
fn perm_degraded_banner(file: &Path) -> Option<String> {
    let reason = std::fs::read_to_string(file).ok()?;
    let reason = reason.trim();
    let reason = if reason.is_empty() {
        "no reason recorded"
    } else {
        reason
    };
    Some(format!(
        "\n\
         WARNING: persistent storage is degraded: /perm is a tmpfs, nothing persists across a reboot.\n\
         \x20 reason: {reason}\n\
         \x20 to recover, an admin runs `system reformat-perm`: it erases the perm partition\n\
         \x20 (configuration, users, tokens, logs) and reboots with the factory configuration.\n\n"
    ))
}

/// Why the shell loop ended.
enum ShellEnd {
    /// `exit`, `logout` or Ctrl-D.
    Logout,
    /// The session is no longer valid (revoked, user deleted, ztosd restarted).
    SessionGone(String),
    /// No input for [`IDLE_LOGOUT`].
    Idle,
}

/// The logged-in shell. Returns when the user logs out, the session ends, or input stops.
async fn shell(
    session: &str,
    hostname: &str,
    socket: &Path,
    interrupts: &mut tokio::signal::unix::Signal,
    out: &mut std::io::Stdout,
) -> ShellEnd {
    let editor = LineEditor::start();
    let prompt = format!("{hostname}> ");
    loop {
        let line = match tokio::time::timeout(IDLE_LOGOUT, editor.read_line(&prompt)).await {
            Err(_) => return ShellEnd::Idle,
            Ok(None) => return ShellEnd::Logout,
            Ok(Some(Err(ReadlineError::Interrupted))) => continue,
            Ok(Some(Err(_))) => return ShellEnd::Logout,
            Ok(Some(Ok(line))) => line,
        };
        let line = line.trim();
        match line {
            "" => continue,
            "exit" | "logout" | "quit" => return ShellEnd::Logout,
            "help" | "?" => {
                let _ = write!(out, "{}", help_text());
                continue;
            }
            _ => {}
        }
        let cli = match parse_line(line, socket, session) {
            Ok(cli) => cli,
            Err(message) => {
                let _ = writeln!(out, "{}", message.trim_end());
                continue;
            }
        };
        // Forget Ctrl-C presses from before this command.
        while interrupts.recv().now_or_never().is_some() {}
        let result = tokio::select! {
            result = crate::cli::run(cli, out) => result,
            _ = interrupts.recv() => Err(anyhow::anyhow!("interrupted")),
        };
        if let Err(err) = result {
            if let Some(ClientError::Api {
                status: StatusCode::UNAUTHORIZED,
                message,
                ..
            }) = err.downcast_ref::<ClientError>()
            {
                return ShellEnd::SessionGone(message.clone());
            }
            let _ = writeln!(out, "error: {err:#}");
        }
        let _ = out.flush();
    }
}

/// Options that would leave the session's socket (and so the user's role) behind.
const FORBIDDEN_OPTIONS: &[&str] = &[
    "--socket",
    "--host",
    "--token",
    "--ca-cert",
    "--insecure",
    "--session",
];

/// Turns a console line into the command line it stands for: `ztos <words>` on the local
/// socket with the session. Returns the message to print when it is not one.
fn parse_line(line: &str, socket: &Path, session: &str) -> Result<Cli, String> {
    let words = shlex::split(line).ok_or_else(|| format!("unbalanced quotes in: {line}"))?;
    let words: Vec<String> = match words.first().map(String::as_str) {
        Some("ztos") => words[1..].to_vec(),
        _ => words,
    };
    for word in &words {
        let option = word.split('=').next().unwrap_or_default();
        if FORBIDDEN_OPTIONS.contains(&option) {
            return Err(format!("{option} is not available on the console"));
        }
    }
    match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["console", ..] => return Err("already on the console".into()),
        // An editor can start a shell, and the console never offers one.
        ["config", "edit", ..] => {
            return Err("config edit is not available on the console: use config set, config delete or config load".into())
        }
        _ => {}
    }
    let mut argv = vec!["ztos".to_string()];
    argv.extend(words);
    let mut cli = Cli::try_parse_from(&argv).map_err(|e| e.to_string())?;
    cli.socket = socket.to_path_buf();
    cli.host = None;
    cli.token = None;
    cli.session = Some(session.to_string());
    Ok(cli)
}

fn help_text() -> String {
    let mut text = String::from(
        "Commands are those of `ztos` (without the word ztos), for example:\n  \
         security status\n  config show\n  config set bgp.local_as 65001\n  config commit -m \"why\"\n\n",
    );
    let command = Cli::command();
    let rows = command
        .get_subcommands()
        .filter(|c| c.get_name() != "console" && !c.is_hide_set())
        .map(|c| {
            vec![
                c.get_name().to_string(),
                c.get_about().map(|a| a.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    text.push_str(&crate::cli::table(&["COMMAND", "WHAT"], rows));
    text.push_str(
        "\nAdd --help to any command for its options. Tab completes commands and options;\n\
         exit, logout or Ctrl-D logs out.\n",
    );
    text
}

/// The line editor on its own thread: rustyline blocks on the terminal, and the async side
/// must stay free to apply the idle limit.
struct LineEditor {
    terminal: bool,
    requests: std::sync::mpsc::Sender<(String, tokio::sync::oneshot::Sender<ReadResult>)>,
}

type ReadResult = Result<String, ReadlineError>;

impl LineEditor {
    fn start() -> LineEditor {
        let (requests, receiver) =
            std::sync::mpsc::channel::<(String, tokio::sync::oneshot::Sender<ReadResult>)>();
        std::thread::spawn(move || {
            let config = rustyline::Config::builder()
                .max_history_size(HISTORY_LINES)
                .map(|b| b.auto_add_history(true))
                .unwrap_or_else(|_| rustyline::Config::builder().auto_add_history(true))
                .completion_type(rustyline::CompletionType::List)
                .build();
            let mut editor =
                match rustyline::Editor::<CommandCompleter, DefaultHistory>::with_config(config) {
                    Ok(editor) => editor,
                    Err(err) => {
                        // Answer every request with the error; the shell then logs out.
                        while let Ok((_, reply)) = receiver.recv() {
                            let _ = reply.send(Err(ReadlineError::Io(std::io::Error::other(
                                err.to_string(),
                            ))));
                        }
                        return;
                    }
                };
            editor.set_helper(Some(CommandCompleter::new()));
            // Ends when the shell drops the sender (logout).
            while let Ok((prompt, reply)) = receiver.recv() {
                let _ = reply.send(editor.readline(&prompt));
            }
        });
        LineEditor {
            terminal: rustix::termios::isatty(std::io::stdin()),
            requests,
        }
    }

    /// The next line; `None` if the editor thread is gone.
    async fn read_line(&self, prompt: &str) -> Option<ReadResult> {
        if !self.terminal {
            // rustyline prints no prompt when it is not editing a terminal. Printed from
            // here: `ztos` holds the stdout lock on this thread for its whole run.
            let mut out = std::io::stdout();
            let _ = out.write_all(prompt.as_bytes());
            let _ = out.flush();
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.requests.send((prompt.to_string(), reply)).ok()?;
        answer.await.ok()
    }
}

/// Tab completion of command words and options from the clap command tree.
struct CommandCompleter {
    command: clap::Command,
}

impl CommandCompleter {
    fn new() -> CommandCompleter {
        CommandCompleter {
            command: Cli::command(),
        }
    }
}

impl Completer for CommandCompleter {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        Ok(complete(&self.command, &line[..pos]))
    }
}

impl Hinter for CommandCompleter {
    type Hint = String;
}
impl Highlighter for CommandCompleter {}
impl Validator for CommandCompleter {}
impl rustyline::Helper for CommandCompleter {}

/// Completes the last word of `line` (the text before the cursor): subcommand names after
/// the subcommands already typed, or `--options` of that command (and the global ones the
/// console allows). Returns the byte offset where the word starts and the candidates,
/// each followed by a space.
pub fn complete(root: &clap::Command, line: &str) -> (usize, Vec<String>) {
    let start = line.rfind(char::is_whitespace).map_or(0, |index| index + 1);
    let partial = &line[start..];
    let mut command = root;
    let mut words = line[..start].split_whitespace().peekable();
    if words.peek() == Some(&"ztos") {
        words.next();
    }
    for word in words {
        if let Some(sub) = command.find_subcommand(word) {
            command = sub;
        }
    }
    let mut candidates: Vec<String> = Vec::new();
    if partial.starts_with('-') {
        let globals = root.get_arguments().filter(|a| a.is_global_set());
        for arg in command.get_arguments().chain(globals) {
            if let Some(long) = arg.get_long() {
                let flag = format!("--{long}");
                if !FORBIDDEN_OPTIONS.contains(&flag.as_str()) && !arg.is_hide_set() {
                    candidates.push(flag);
                }
            }
        }
    } else {
        candidates.extend(
            command
                .get_subcommands()
                .filter(|c| !c.is_hide_set() && c.get_name() != "console")
                .map(|c| c.get_name().to_string()),
        );
        if std::ptr::eq(command, root) {
            candidates.extend(["help", "exit", "logout"].map(String::from));
        }
    }
    let mut matching: Vec<String> = candidates
        .into_iter()
        .filter(|c| c.starts_with(partial))
        .map(|c| format!("{c} "))
        .collect();
    matching.sort();
    matching.dedup();
    (start, matching)
}

/// First boot: no user exists yet. Asks for the admin password twice and creates user
/// `admin` through the API, which refuses if another console got there first.
async fn first_boot(client: &Client, out: &mut std::io::Stdout) -> anyhow::Result<()> {
    writeln!(
        out,
        "\nThis box has no admin password yet. Choose one for user admin (at least {} characters).",
        crate::users::MIN_PASSWORD_CHARS
    )?;
    let password = match read_new_password(crate::users::ADMIN_USER) {
        Ok(password) => password,
        Err(err) => {
            writeln!(out, "{err:#}")?;
            if err.downcast_ref::<InputEnded>().is_some() {
                bail!("standard input ended before the admin password was set");
            }
            return Ok(());
        }
    };
    match client
        .json(
            Method::POST,
            "/api/v1/users/setup",
            Some(&json!({ "password": password })),
        )
        .await
    {
        Ok(_) => writeln!(out, "admin password set; log in as admin")?,
        Err(err) => writeln!(out, "admin password not set: {err}")?,
    }
    Ok(())
}

/// Standard input ended while a password was being asked for.
#[derive(Debug, thiserror::Error)]
#[error("standard input ended")]
struct InputEnded;

/// Asks for a new password twice (without echo on a terminal) and checks the password rules
/// before anything is sent. Without a terminal, the two lines are read from standard input
/// (`printf '%s\n%s\n' "$pw" "$pw" | ztos user passwd NAME`).
pub fn read_new_password(user: &str) -> anyhow::Result<String> {
    let first = read_password(&format!("new password for {user}: "))?.ok_or(InputEnded)?;
    crate::users::validate_password(user, &first)?;
    let second =
        read_password(&format!("repeat the new password for {user}: "))?.ok_or(InputEnded)?;
    if first != second {
        bail!("the passwords differ; nothing changed");
    }
    Ok(first)
}

/// Prints `prompt` and reads one line with echo off when standard input is a terminal.
/// `None` when standard input has ended.
fn read_password(prompt: &str) -> anyhow::Result<Option<String>> {
    let mut out = std::io::stdout();
    write!(out, "{prompt}")?;
    out.flush()?;
    let stdin = std::io::stdin();
    let saved = rustix::termios::tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        quiet
            .local_modes
            .insert(rustix::termios::LocalModes::ECHONL);
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)
            .context("turning off echo")?;
    }
    let line = read_line();
    if let Some(saved) = &saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, saved);
    } else {
        // No echo to suppress, so no newline was echoed either.
        writeln!(out)?;
    }
    line
}

/// One line from standard input without its line end; `None` at the end of input.
fn read_line() -> anyhow::Result<Option<String>> {
    let mut line = String::new();
    if std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading standard input")?
        == 0
    {
        return Ok(None);
    }
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// Waits until ztosd answers on its socket, saying so once, and returns the setup state.
async fn wait_for_api(client: &Client, socket: &Path, out: &mut std::io::Stdout) -> Value {
    let mut said = false;
    loop {
        match client.json(Method::GET, "/api/v1/users/setup", None).await {
            Ok(value) => return value,
            Err(err) => {
                if !said {
                    let _ = writeln!(
                        out,
                        "waiting for ztosd on {} ({err}); retrying every {} s",
                        socket.display(),
                        API_RETRY.as_secs()
                    );
                    let _ = out.flush();
                    said = true;
                }
                tokio::time::sleep(API_RETRY).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(candidates: &[String]) -> Vec<&str> {
        candidates.iter().map(|c| c.trim_end()).collect()
    }

    #[test]
    fn completes_commands_subcommands_and_options() {
        let root = Cli::command();
        let (start, candidates) = complete(&root, "sec");
        assert_eq!(start, 0);
        assert_eq!(names(&candidates), ["security"]);
        let (start, candidates) = complete(&root, "config s");
        assert_eq!(start, 7);
        assert_eq!(names(&candidates), ["schema", "set", "show"]);
        let (_, candidates) = complete(&root, "config show --");
        let candidates = names(&candidates);
        assert!(candidates.contains(&"--revision"), "{candidates:?}");
        assert!(candidates.contains(&"--json"), "{candidates:?}");
        // Options that would leave the session behind are not offered.
        assert!(!candidates.contains(&"--socket"), "{candidates:?}");
        assert!(!candidates.contains(&"--host"), "{candidates:?}");
        let (_, candidates) = complete(&root, "");
        let candidates = names(&candidates);
        assert!(candidates.contains(&"logout"), "{candidates:?}");
        assert!(!candidates.contains(&"console"), "{candidates:?}");
    }

    #[test]
    fn lines_become_command_lines_on_the_session_socket() {
        let socket = Path::new("/run/ztos/api.sock");
        let cli = parse_line("config set bgp.description 'two words'", socket, "s").unwrap();
        let crate::cli::Command::Config(crate::cli::ConfigCommand::Set { path, value }) =
            &cli.command
        else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(
            (path.as_str(), value.as_str()),
            ("bgp.description", "two words")
        );
        assert_eq!(cli.session.as_deref(), Some("s"));
        assert_eq!(cli.socket, socket);
        // A leading `ztos` is allowed.
        assert!(parse_line("ztos security status", socket, "s").is_ok());
    }

    #[test]
    fn the_perm_banner_names_the_reason_and_the_command_only_when_degraded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("perm-degraded");
        assert_eq!(perm_degraded_banner(&file), None);
        std::fs::write(&file, "e2fsck -p /dev/vda4 exited with code 8: the filesystem needs manual repair or a reformat\n").unwrap();
        let banner = perm_degraded_banner(&file).unwrap();
        assert!(
            banner.contains("WARNING: persistent storage is degraded"),
            "{banner}"
        );
        assert!(
            banner.contains("  reason: e2fsck -p /dev/vda4 exited with code 8: the filesystem needs manual repair or a reformat\n"),
            "{banner}"
        );
        assert!(banner.contains("`system reformat-perm`"), "{banner}");
        std::fs::write(&file, "").unwrap();
        assert!(perm_degraded_banner(&file)
            .unwrap()
            .contains("reason: no reason recorded"));
    }

    #[test]
    fn escapes_from_the_session_are_refused() {
        let socket = Path::new("/run/ztos/api.sock");
        for (line, message) in [
            (
                "config show --socket /tmp/other.sock",
                "--socket is not available",
            ),
            (
                "security status --host=https://x",
                "--host is not available",
            ),
            ("config edit", "config edit is not available"),
            ("console --stdio", "already on the console"),
            ("config set a 'b", "unbalanced quotes"),
            ("no-such-command", "unrecognized subcommand"),
        ] {
            let err = parse_line(line, socket, "s").unwrap_err();
            assert!(err.contains(message), "{line}: {err}");
        }
    }
}
