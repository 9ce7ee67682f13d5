//! `ztosd`: the ZTOS network daemon. Parses arguments, sets up logging, and wires the daemon
//! core to its three sockets: the plugin socket, the local API socket and HTTPS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;
use ztos_image::layout;
use ztos_plugin::protocol::DEFAULT_SOCKET_PATH;
use ztosd::daemon::{Daemon, DaemonOptions};

#[derive(Debug, Parser)]
#[command(name = "ztosd", version, about = "The ZTOS network daemon")]
struct Args {
    /// Persistent state: config revisions, tokens, TLS keys, log tails.
    #[arg(long, env = "ZTOS_STATE_DIR", default_value = layout::ZTOSD_STATE_DIR)]
    state_dir: PathBuf,
    /// Local API socket for the `ztos` CLI (mode 0600: root only).
    #[arg(long, default_value = layout::API_SOCKET)]
    api_socket: PathBuf,
    /// Socket plugins connect to.
    #[arg(long, default_value = DEFAULT_SOCKET_PATH)]
    plugin_socket: PathBuf,
    /// ztos-init's status socket (services, reboot, poweroff); ztosd runs without a
    /// supervisor when nothing listens there.
    #[arg(long, default_value = layout::INIT_SOCKET)]
    init_socket: PathBuf,
    /// HTTPS listen address (`none` to disable); default from system.management_address and
    /// system.https_port, else all addresses on port 443.
    #[arg(long)]
    https_listen: Option<String>,
    /// Operator's TLS certificate (PEM); a self-signed one is generated otherwise.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Operator's TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Configuration committed as revision 1 when the store is empty (first boot).
    #[arg(long)]
    initial_config: Option<PathBuf>,
    /// Revisions kept in the store.
    #[arg(long, default_value_t = 50)]
    revisions: usize,
    /// Set the kernel's hostname from system.hostname on every commit (the appliance does;
    /// ztosd in a netns lab must not, as it shares the host's UTS namespace).
    #[arg(long)]
    set_hostname: bool,
    /// Where the DNS servers of DHCP leases are written (`/etc/resolv.conf` links to it in
    /// the appliance). Only written while an interface has `dhcp = true`.
    #[arg(long, default_value = "/run/resolv.conf")]
    resolv_conf: PathBuf,
    /// Public keys trusted to sign update bundles.
    #[arg(long, default_value = ztosd::update::DEFAULT_TRUST_DIR)]
    trust_dir: PathBuf,
    /// Test mode of the updater: this file is slot A's root partition (with
    /// --update-root-b and --update-esp-dir; the appliance finds partitions by GPT label).
    #[arg(long, hide = true, requires_all = ["update_root_b", "update_esp_dir"])]
    update_root_a: Option<PathBuf>,
    #[arg(long, hide = true, requires = "update_root_a")]
    update_root_b: Option<PathBuf>,
    /// Test mode: a directory standing in for the mounted ESP.
    #[arg(long, hide = true, requires = "update_root_a")]
    update_esp_dir: Option<PathBuf>,
    /// Test mode: the running slot (the appliance reads ztos.slot= from /proc/cmdline).
    #[arg(long, hide = true)]
    booted_slot: Option<String>,
    /// Test mode: the running version (the appliance reads /etc/os-release).
    #[arg(long, hide = true)]
    current_version: Option<String>,
    /// Log filter (tracing's EnvFilter syntax).
    #[arg(long, env = "ZTOS_LOG", default_value = "info")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let kernel = ztosd::netlink::RtnetlinkKernel::new().context("opening rtnetlink")?;
    let daemon = Daemon::new(DaemonOptions {
        state_dir: args.state_dir.clone(),
        retention: args.revisions,
        kernel: Box::new(kernel),
        init_socket: args.init_socket.clone(),
    })?;
    daemon.manage_system_hostname(args.set_hostname);
    daemon.configure_update(update_options(&args)?)?;
    tracing_subscriber::registry()
        .with(EnvFilter::try_new(&args.log).with_context(|| format!("--log {}", args.log))?)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(daemon.logs().tracing_layer())
        .init();
    // An image built with an admin password ships its hash; it seeds the first user only.
    let seed = std::path::Path::new(ztosd::users::INITIAL_ADMIN_HASH_PATH);
    match daemon.users().import_initial_admin(seed) {
        Ok(true) => tracing::info!("admin password imported from {}", seed.display()),
        Ok(false) => {}
        Err(err) => tracing::error!("{}: {err}", seed.display()),
    }
    tracing::info!(
        "ztosd {} starting, state in {}",
        env!("CARGO_PKG_VERSION"),
        args.state_dir.display()
    );

    let initial = match &args.initial_config {
        Some(path) => Some((
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
        )),
        None => None,
    };
    // The plugin socket first, so plugins can validate the initial commit.
    for socket in [&args.api_socket, &args.plugin_socket] {
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    let plugins = daemon.plugins().clone();
    let plugin_socket = args.plugin_socket.clone();
    tokio::spawn(async move {
        if let Err(err) = plugins.serve(&plugin_socket).await {
            tracing::error!("plugin socket {}: {err:#}", plugin_socket.display());
        }
    });
    if let Err(err) = daemon.start(initial).await {
        // Keep serving so the operator can fix the configuration through the API.
        tracing::error!("start: {err}");
    }
    // DHCP follows the running configuration from here on (interfaces with dhcp = true).
    daemon.start_dhcp(args.resolv_conf.clone());

    let router = ztosd::api::app(daemon.clone());
    let unix_router = router.clone();
    let api_socket = args.api_socket.clone();
    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(async move {
        ztosd::api::serve_unix(&api_socket, unix_router)
            .await
            .with_context(|| format!("api socket {}", api_socket.display()))
    });
    if let Some(addr) = https_address(&args, &daemon).await? {
        let hostname = daemon.running().await.config.system.hostname;
        let tls = ztosd::tls::load_or_generate(
            &args.state_dir,
            args.tls_cert.as_deref(),
            args.tls_key.as_deref(),
            &hostname,
        )?;
        servers.spawn(async move {
            ztosd::api::serve_https(addr, tls, router)
                .await
                .with_context(|| format!("https on {addr}"))
        });
        tracing::info!("https api on {addr}");
    }

    // Pull mode, and the boot assessment (blessed, rolled back) into the update history.
    let update = daemon.update();
    let config_source = daemon.clone();
    tokio::spawn(update.run_pull(move || {
        let daemon = config_source.clone();
        async move { daemon.running().await.config.system.update }
    }));

    // Persist the log tails now and then, and on the way out.
    let logs = daemon.logs().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            if let Err(err) = logs.persist() {
                tracing::warn!("persisting logs: {err}");
            }
        }
    });

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
        Some(result) = servers.join_next() => match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err),
            Err(join) => Err(anyhow::anyhow!("server task failed: {join}")),
        },
    };
    tracing::info!("ztosd stopping");
    if let Err(err) = daemon.logs().persist() {
        eprintln!("persisting logs: {err}");
    }
    let _ = std::fs::remove_file(&args.api_socket);
    let _ = std::fs::remove_file(&args.plugin_socket);
    outcome
}

fn update_options(args: &Args) -> anyhow::Result<ztosd::update::UpdateOptions> {
    let mut options = ztosd::update::UpdateOptions::appliance(&args.state_dir);
    options.trust_dir = args.trust_dir.clone();
    if let (Some(root_a), Some(root_b), Some(esp_dir)) = (
        &args.update_root_a,
        &args.update_root_b,
        &args.update_esp_dir,
    ) {
        options.disk = ztosd::update::DiskAccess::Paths {
            root_a: root_a.clone(),
            root_b: root_b.clone(),
            esp_dir: esp_dir.clone(),
        };
    }
    if let Some(slot) = &args.booted_slot {
        options.booted_slot = Some(
            ztos_image::layout::Slot::parse(slot)
                .with_context(|| format!("--booted-slot {slot}: expected a or b"))?,
        );
    }
    options.current_version = args.current_version.clone();
    Ok(options)
}

async fn https_address(args: &Args, daemon: &Daemon) -> anyhow::Result<Option<SocketAddr>> {
    match args.https_listen.as_deref() {
        Some("none") => Ok(None),
        Some(text) => Ok(Some(
            text.parse()
                .with_context(|| format!("--https-listen {text}"))?,
        )),
        None => {
            let system = daemon.running().await.config.system;
            let ip = system
                .management_address
                .map(|net| net.addr())
                .unwrap_or(std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
            Ok(Some(SocketAddr::new(ip, system.https_port)))
        }
    }
}
