//! `ztos`: the command line for a ZTOS box. Everything lives in `ztosd::cli`.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = ztosd::cli::Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match ztosd::cli::run(cli, &mut stdout).await {
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
