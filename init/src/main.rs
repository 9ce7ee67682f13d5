//! `ztos-init`: PID 1 of the appliance, or `ztos-init supervise --manifest FILE` anywhere.
//! This file parses arguments and wires the library together; the logic is in
//! `ztos_init::supervisor` (and `ztos_init::boot` for PID 1).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ztos_image::layout::INIT_SOCKET;
use ztos_init::supervisor::{
    self, BackoffPolicy, Manifest, ShutdownKind, SupervisorOptions, DEFAULT_RING_BYTES,
};

#[derive(Debug, Parser)]
#[command(
    name = "ztos-init",
    version,
    about = "PID 1 of the ZTOS appliance, and its service supervisor"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service supervisor as an ordinary process (any Linux; the netns labs use it).
    Supervise {
        /// The services manifest (see docs/supervisor.md).
        #[arg(long, default_value = "/etc/ztos/services.toml")]
        manifest: PathBuf,
        /// Status socket for ztosd and `ztos system ...` (mode 0600).
        #[arg(long, default_value = INIT_SOCKET)]
        status_socket: PathBuf,
        /// Bytes kept per service log ring.
        #[arg(long, default_value_t = DEFAULT_RING_BYTES)]
        ring_bytes: usize,
        /// Also capture the kernel log (/dev/kmsg) into the ring `kernel`.
        #[arg(long)]
        kernel_log: bool,
        /// Do not copy service output to this process's stderr.
        #[arg(long)]
        quiet: bool,
        /// Log filter (tracing's EnvFilter syntax).
        #[arg(long, env = "ZTOS_LOG", default_value = "info")]
        log: String,
    },
}

fn main() -> anyhow::Result<()> {
    // As PID 1 the kernel hands us the command-line words it did not recognise as arguments;
    // nothing may parse them (a clap error would exit, and PID 1 exiting panics the kernel).
    if std::process::id() == 1 {
        ztos_init::boot::run_pid1();
    }
    let args = Args::parse();
    match args.command {
        Some(Command::Supervise {
            manifest,
            status_socket,
            ring_bytes,
            kernel_log,
            quiet,
            log,
        }) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_new(&log)
                        .with_context(|| format!("--log {log}"))?,
                )
                .with_writer(std::io::stderr)
                .init();
            let manifest = Manifest::load(&manifest)?;
            let options = SupervisorOptions {
                status_socket,
                ring_bytes,
                kernel_log,
                backoff: BackoffPolicy::default(),
                healthy: Arc::new(AtomicBool::new(true)),
                echo_output: !quiet,
                // Not PID 1: `reformat-perm` is refused, `boot` answers "unknown".
                perm: None,
                boot: None,
            };
            // Orphans of the services come to us, as they would to PID 1, and are reaped.
            nix::sys::prctl::set_child_subreaper(true).context("prctl(PR_SET_CHILD_SUBREAPER)")?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            let kind = runtime.block_on(supervisor::supervise(manifest, options))?;
            match kind {
                ShutdownKind::Exit => eprintln!("ztos-init: all services stopped"),
                ShutdownKind::Reboot | ShutdownKind::Poweroff => eprintln!(
                    "ztos-init: all services stopped for {}; as an ordinary process the {} itself is the host's business",
                    kind.as_str(),
                    kind.as_str()
                ),
            }
            Ok(())
        }
        None => anyhow::bail!(
            "ztos-init runs as PID 1 on the appliance (process {} is not PID 1); elsewhere use `ztos-init supervise --manifest FILE`",
            std::process::id()
        ),
    }
}
