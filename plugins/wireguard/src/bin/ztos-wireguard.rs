//! `ztos-wireguard`: the WireGuard plugin process (docs/wireguard.md).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ztos_plugin::protocol::DEFAULT_SOCKET_PATH;
use ztos_plugin::PluginClient;
use ztos_wireguard::plugin::WireguardPlugin;

#[derive(Debug, Parser)]
#[command(
    name = "ztos-wireguard",
    version,
    about = "ZTOS WireGuard plugin (userspace datapath)"
)]
struct Args {
    /// ztosd's plugin socket.
    #[arg(long, default_value = DEFAULT_SOCKET_PATH)]
    socket: PathBuf,
    /// Where the interfaces' private keys are kept (`<dir>/keys/<interface>.key`, mode 0600).
    #[arg(long, default_value = "/perm/ztos/wireguard")]
    state_dir: PathBuf,
    /// Seconds between status and metrics reports.
    #[arg(long, default_value_t = 5)]
    report_interval: u64,
    /// Print this interface's public key (generating its private key first if it has none)
    /// and exit, without connecting to ztosd. For provisioning before the first commit.
    #[arg(long, value_name = "INTERFACE")]
    print_public_key: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(interface) = &args.print_public_key {
        let store = ztos_wireguard::keys::KeyStore::new(&args.state_dir);
        return match store.load_or_generate(interface) {
            Ok((key, _)) => {
                println!("{}", key.public_base64());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ztos-wireguard: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let client = PluginClient::new("ztos-wireguard", env!("CARGO_PKG_VERSION"))
        .socket_path(&args.socket)
        .owns("wireguard")
        .owns("policy");
    let plugin = match WireguardPlugin::new(args.state_dir, client.sender()) {
        Ok(plugin) => plugin,
        Err(e) => {
            eprintln!("ztos-wireguard: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    plugin.spawn_reporter(Duration::from_secs(args.report_interval.max(1)));
    let shutdown = client.run(plugin).await;
    tracing::info!("shutting down: {}", shutdown.reason);
    std::process::ExitCode::SUCCESS
}
