//! The logged-in console shell: each line is a `ztos` command line run through `crate::run`
//! on the session's socket, with rustyline editing, history and completion from the clap tree.

use std::io::Write;
use std::path::Path;

use clap::{CommandFactory, Parser};
use futures::FutureExt;
use hyper::StatusCode;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;

use super::IDLE_LOGOUT;
use crate::args::Cli;
use crate::client::ClientError;
use crate::format::table;

/// History lines kept in memory per login.
const HISTORY_LINES: usize = 500;

/// Why the shell loop ended.
pub(super) enum ShellEnd {
    /// `exit`, `logout` or Ctrl-D.
    Logout,
    /// The session is no longer valid (revoked, user deleted, ztosd restarted).
    SessionGone(String),
    /// No input for [`IDLE_LOGOUT`].
    Idle,
}

/// The logged-in shell. Returns when the user logs out, the session ends, or input stops.
pub(super) async fn shell(
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
            result = crate::run(cli, out) => result,
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
    text.push_str(&table(&["COMMAND", "WHAT"], rows));
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
        let crate::args::Command::Config(crate::args::ConfigCommand::Set { path, value }) =
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
