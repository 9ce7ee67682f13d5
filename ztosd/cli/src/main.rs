//! `ztos`: the command line for a ZTOS box: the spec's commands (`ztos network configure --bgp
//! --peer 10.1.1.1 --as 64512`, `ztos security status`, `ztos monitoring logs`) and
//! configuration, interface, plugin and token management. Every command is one or two API
//! calls; the CLI holds no state and never touches the config files itself, so it cannot
//! disagree with the web UI or automation. This crate does not depend on ztosd: it shares only
//! the answer types of `ztos-model` with it, so the compiler keeps it off the state directory.
//!
//! `args` parses, this file dispatches, `commands/<area>` call the API and print its answers
//! (through `format`), `console` is the login prompt and shell on a terminal.

mod args;
mod client;
mod commands;
mod console;
mod format;
#[cfg(test)]
mod tests;

use std::io::Write;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};
use crate::client::Client;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match run(cli, &mut stdout).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A closed pipe (`ztos monitoring logs | head`) is the reader's choice, not an error.
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            // One clear line (plus the API's per-field details, if any).
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the parsed command line; output goes to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    if let Command::Completions { shell } = cli.command {
        // Generated into memory first: clap_complete panics on a write error (`| head`).
        let mut command = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "ztos", &mut script);
        out.write_all(&script)?;
        return Ok(());
    }
    let client = match &cli.host {
        Some(host) => {
            if cli.insecure {
                eprintln!("warning: --insecure: the server certificate is not verified");
            }
            Client::https(
                host,
                cli.token.clone(),
                cli.ca_cert.as_deref(),
                cli.insecure,
            )?
        }
        None => Client::unix(&cli.socket).with_session(cli.session.clone()),
    };
    let json = cli.json;
    match cli.command {
        Command::Completions { .. } => Ok(()),
        Command::User(command) => commands::users::run(&client, command, json, out).await,
        Command::Console(args) => {
            // Boxed: the console runs command lines through this function.
            Box::pin(console::run(args, cli.socket.clone())).await
        }
        Command::Network(command) => commands::network::run(&client, command, json, out).await,
        Command::Interfaces => commands::network::interfaces(&client, json, out).await,
        Command::Security(command) => commands::security::run(&client, command, json, out).await,
        Command::Monitoring(command) => {
            commands::monitoring::run(&client, command, json, out).await
        }
        Command::Config(command) => commands::config::run(&client, command, json, out).await,
        Command::System(command) => {
            let target = cli.host.clone().unwrap_or_else(|| "this box".to_string());
            commands::system::run(&client, command, &target, json, out).await
        }
        Command::Bgp(command) => commands::bgp::run(&client, command, json, out).await,
        Command::Plugins { name } => commands::plugins::run(&client, name, json, out).await,
        Command::Token(command) => commands::tokens::run(&client, command, json, out).await,
        Command::Health => commands::system::health(&client, json, out).await,
    }
}
