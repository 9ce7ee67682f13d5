//! The `ztos` command line: the spec's commands (`ztos network configure --bgp --peer
//! 10.1.1.1 --as 64512`, `ztos security status`, `ztos monitoring logs`) and configuration,
//! interface, plugin and token management. Every command is one or two API calls; the CLI
//! holds no state and never touches the config files itself, so it cannot disagree with the
//! web UI or automation.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use http_body_util::BodyExt;
use hyper::Method;
use ipnet::IpNet;
use serde_json::{json, Value};

use crate::client::Client;
use crate::init_client::PERM_LABEL;

#[derive(Debug, Parser)]
#[command(
    name = "ztos",
    version,
    about = "Manage a ZTOS box: configuration, security, monitoring"
)]
pub struct Cli {
    /// The local API socket (root only).
    #[arg(
        long,
        global = true,
        env = "ZTOS_SOCKET",
        default_value = "/run/ztos/api.sock"
    )]
    pub socket: PathBuf,
    /// A remote box, `https://HOST[:PORT]`; needs --token.
    #[arg(long, global = true, env = "ZTOS_HOST")]
    pub host: Option<String>,
    /// API token for --host.
    #[arg(long, global = true, env = "ZTOS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) the remote box's certificate is signed with.
    #[arg(long, global = true, env = "ZTOS_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Skip certificate verification for --host (first contact only).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// A console login session for the local socket (set by `ztos console`).
    #[arg(
        long,
        global = true,
        env = "ZTOS_SESSION",
        hide = true,
        hide_env_values = true
    )]
    pub session: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum BgpCommand {
    /// Local AS, router id, route counts and one line per neighbor.
    Summary,
    /// Neighbors in detail: state, negotiated session, counters, last error.
    Neighbors {
        /// Only this neighbor.
        address: Option<String>,
    },
    /// The Loc-RIB: every prefix with its candidate paths, best first.
    Routes {
        /// ipv4, ipv6 or evpn.
        #[arg(long)]
        family: Option<String>,
        /// Only routes within this prefix (or covering this address).
        #[arg(long)]
        prefix: Option<String>,
        /// Only EVPN routes of this VNI (implies --family evpn).
        #[arg(long)]
        vni: Option<u32>,
    },
    /// One BGP message in hex (with or without the marker) as JSON; needs no running plugin.
    Decode {
        /// The message's bytes in hex; spaces, `:` and `-` between digits are ignored.
        hex: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Network services: BGP, VXLAN, WireGuard.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Encryption status and keys (MACsec, WireGuard).
    #[command(subcommand)]
    Security(SecurityCommand),
    /// Logs and metrics.
    #[command(subcommand)]
    Monitoring(MonitoringCommand),
    /// The versioned configuration: show, change, commit, roll back.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Kernel interfaces and their state.
    Interfaces,
    /// BGP sessions and routes (plugin ztos-bgp); decoding captured BGP messages.
    #[command(subcommand)]
    Bgp(BgpCommand),
    /// Plugin processes and their state.
    Plugins {
        /// One plugin in detail.
        name: Option<String>,
    },
    /// API tokens for remote access.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Health of ztosd and the plugins that own configured sections.
    Health,
    /// Console users (passwords for the serial and screen console).
    #[command(subcommand)]
    User(crate::console::UserCommand),
    /// The login prompt and interactive shell on a terminal (run by init on ttyS0 and tty1).
    Console(crate::console::ConsoleArgs),
    /// Prints shell completions.
    Completions { shell: clap_complete::Shell },
    /// The services ztos-init supervises; reboot, power off, reformat a degraded perm.
    #[command(subcommand)]
    System(SystemCommand),
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Services supervised by ztos-init: state, pid, restarts, last exit.
    Services,
    /// Stop every service and reboot.
    Reboot {
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Stop every service and power off.
    Poweroff {
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Erase the persistent partition when it is degraded (health shows `perm` unhealthy):
    /// a new, empty filesystem, then a reboot. Configuration, users, tokens and logs are lost.
    ReformatPerm {
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Install a signed bundle into the inactive slot (`update FILE|URL`), or show the
    /// running update (`update status`) and the update history (`update history`).
    Update(UpdateArgs),
    /// Both slots: versions, which runs, which boots next, good/trial/bad.
    Slots,
    /// Switch to the other slot by hand (refused when it is bad, empty or overwritten).
    Rollback {
        /// Make the other slot boot next, but do not reboot now.
        #[arg(long)]
        no_reboot: bool,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct UpdateArgs {
    #[command(subcommand)]
    pub action: Option<UpdateAction>,
    /// A bundle file (streamed to the box), or an http(s):// URL the box downloads itself.
    pub source: Option<String>,
    /// Install an older (or the same) version.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// `now`, `never` (boots at the next reboot) or an RFC 3339 time.
    #[arg(long, default_value = "now")]
    pub reboot: String,
    /// Boot tries the new slot gets to prove itself (1 to 10; default 3).
    #[arg(long)]
    pub tries: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum UpdateAction {
    /// The update running now, or the last one; pull mode's checks.
    Status,
    /// The last update events: started, written, rebooted, blessed, rolled back, rejected.
    History,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Configure BGP, VXLAN or WireGuard and commit at once.
    Configure(NetworkConfigureArgs),
}

#[derive(Debug, Args)]
pub struct NetworkConfigureArgs {
    /// Add or change a BGP neighbor (--peer, --as).
    #[arg(long, requires_all = ["peer", "remote_as"])]
    pub bgp: bool,
    /// The neighbor's address.
    #[arg(long)]
    pub peer: Option<IpAddr>,
    /// The neighbor's AS number.
    #[arg(long = "as", id = "remote_as")]
    pub remote_as: Option<u32>,
    /// This box's AS, when BGP is not configured yet (default: the neighbor's AS, iBGP).
    #[arg(long)]
    pub local_as: Option<u32>,
    #[arg(long)]
    pub description: Option<String>,
    /// Add or replace a VXLAN segment (--vni, --local-vtep, --remote-vtep).
    #[arg(long, requires_all = ["vni", "local_vtep"])]
    pub vxlan: bool,
    #[arg(long)]
    pub vni: Option<u32>,
    #[arg(long)]
    pub local_vtep: Option<IpAddr>,
    /// A remote VTEP for the static flood list; repeat for more.
    #[arg(long = "remote-vtep")]
    pub remote_vteps: Vec<IpAddr>,
    /// Bridge the VXLAN device joins.
    #[arg(long)]
    pub bridge: Option<String>,
    #[arg(long)]
    pub port: Option<u16>,
    /// Add or replace a WireGuard peer (--interface, --public-key, --allowed-ip).
    #[arg(long, requires_all = ["interface", "public_key"])]
    pub wireguard: bool,
    #[arg(long)]
    pub interface: Option<String>,
    #[arg(long)]
    pub public_key: Option<String>,
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long = "allowed-ip")]
    pub allowed_ips: Vec<IpNet>,
    /// Revision comment.
    #[arg(long, short = 'm')]
    pub comment: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SecurityCommand {
    /// Encryption status of WireGuard and MACsec.
    Status,
    /// WireGuard keys and peers (plugin ztos-wireguard); private keys never leave the box.
    #[command(subcommand)]
    Wireguard(WireguardCommand),
}

#[derive(Debug, Subcommand)]
pub enum WireguardCommand {
    /// Generate the interface's private key on the box (it must have none) and print its
    /// public key.
    Genkey {
        /// The WireGuard interface, e.g. wg0.
        interface: String,
    },
    /// Interfaces and peers like `wg show`: public keys, endpoints, handshakes, transfer.
    Show {
        /// Only this interface.
        interface: Option<String>,
    },
    /// Replace the interface's private key; prints the new public key and what every peer
    /// must then be told.
    RotateKey {
        /// The WireGuard interface, e.g. wg0.
        interface: String,
    },
    /// Print the preshared key of a peer configured with `preshared_key = true`, to give to
    /// that peer (a shared secret: handle it like a password).
    PresharedKey {
        /// The WireGuard interface, e.g. wg0.
        interface: String,
        /// The peer's public key.
        peer: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MonitoringCommand {
    /// Log lines of ztosd and the plugins.
    Logs {
        /// Keep printing new lines as they arrive.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only lines since an RFC 3339 time or a duration ago (`10m`, `2h`, `1d`).
        #[arg(long)]
        since: Option<String>,
        /// Only this service (`ztosd`, or a plugin such as `ztos-bgp`).
        #[arg(long)]
        service: Option<String>,
        /// At most this many lines (the newest).
        #[arg(long, short = 'n')]
        limit: Option<usize>,
    },
    /// Prometheus metrics.
    Metrics,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// The running configuration (or a revision's).
    Show {
        #[arg(long, short = 'r')]
        revision: Option<u64>,
        /// Show the candidate instead.
        #[arg(long, conflicts_with = "revision")]
        candidate: bool,
    },
    /// Set one value in the candidate: `ztos config set bgp.local_as 65001`.
    Set { path: String, value: String },
    /// Delete one value from the candidate.
    Delete { path: String },
    /// Replace the candidate with a file (`-` for standard input).
    Load { file: PathBuf },
    /// Edit the candidate in $EDITOR.
    Edit,
    /// Forget the candidate.
    Discard,
    /// Running against candidate; `diff N`: revision N against running; `diff N M`.
    Diff { from: Option<u64>, to: Option<u64> },
    /// Commit the candidate (or --file) as a new revision.
    Commit {
        #[arg(long, short = 'm')]
        comment: Option<String>,
        /// Revert by itself unless `ztos config confirm` is run within MINUTES.
        #[arg(long, value_name = "MINUTES")]
        confirmed: Option<u32>,
        /// Commit this file instead of the candidate.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Keep a `commit --confirmed`.
    Confirm,
    /// Commit revision N's content as a new revision.
    Rollback {
        revision: u64,
        #[arg(long, short = 'm')]
        comment: Option<String>,
    },
    /// The revision history.
    Revisions,
    /// The JSON Schema of the configuration document.
    Schema,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        name: String,
        #[arg(long, value_enum, default_value_t = RoleArg::Read)]
        role: RoleArg,
    },
    List,
    Revoke {
        name: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Read,
    Operate,
    Admin,
}

impl RoleArg {
    fn as_str(self) -> &'static str {
        match self {
            RoleArg::Read => "read",
            RoleArg::Operate => "operate",
            RoleArg::Admin => "admin",
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
    let json_output = cli.json;
    let print = |out: &mut dyn Write,
                 value: &Value,
                 human: &dyn Fn(&Value) -> String|
     -> anyhow::Result<()> {
        if json_output {
            writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
        } else {
            write!(out, "{}", human(value))?;
        }
        Ok(())
    };
    match cli.command {
        Command::Completions { .. } => {}
        Command::User(command) => {
            crate::console::run_user(&client, command, json_output, out).await?
        }
        Command::Console(args) => {
            // Boxed: the console runs command lines through this function.
            Box::pin(crate::console::run(args, cli.socket.clone())).await?
        }
        Command::Network(NetworkCommand::Configure(args)) => {
            let body = network_configure_body(&args)?;
            let outcome = client
                .json(Method::POST, "/api/v1/network/configure", Some(&body))
                .await?;
            print(out, &outcome, &format_commit)?;
        }
        Command::Security(SecurityCommand::Status) => {
            let status = client
                .json(Method::GET, "/api/v1/security/status", None)
                .await?;
            print(out, &status, &format_security)?;
        }
        Command::Security(SecurityCommand::Wireguard(command)) => {
            let mut body = None;
            let (method, path, human): (_, _, fn(&Value) -> String) = match &command {
                WireguardCommand::PresharedKey { interface, peer } => {
                    body = Some(json!({ "peer": peer }));
                    (
                        Method::POST,
                        format!(
                            "/api/v1/security/wireguard/{}/preshared-key",
                            url_escape(interface)
                        ),
                        |v: &Value| format!("{}\n", field(v, "preshared_key")),
                    )
                }
                WireguardCommand::Genkey { interface } => (
                    Method::POST,
                    format!(
                        "/api/v1/security/wireguard/{}/genkey",
                        url_escape(interface)
                    ),
                    format_wireguard_key,
                ),
                WireguardCommand::RotateKey { interface } => (
                    Method::POST,
                    format!(
                        "/api/v1/security/wireguard/{}/rotate-key",
                        url_escape(interface)
                    ),
                    format_wireguard_key,
                ),
                WireguardCommand::Show { interface } => (
                    Method::GET,
                    match interface {
                        Some(i) => format!("/api/v1/security/wireguard/{}", url_escape(i)),
                        None => "/api/v1/security/wireguard".to_string(),
                    },
                    format_wireguard_show,
                ),
            };
            let value = client.json(method, &path, body.as_ref()).await?;
            print(out, &value, &human)?;
        }
        Command::Monitoring(MonitoringCommand::Logs {
            follow,
            since,
            service,
            limit,
        }) => {
            let mut query = Vec::new();
            if let Some(since) = &since {
                query.push(format!("since={}", url_escape(since)));
            }
            if let Some(service) = &service {
                query.push(format!("service={}", url_escape(service)));
            }
            if let Some(limit) = limit {
                query.push(format!("limit={limit}"));
            }
            if follow {
                query.push("follow=true".into());
            }
            let path = format!("/api/v1/monitoring/logs?{}", query.join("&"));
            if follow {
                follow_logs(&client, &path, json_output, out).await?;
            } else {
                let entries = client.json(Method::GET, &path, None).await?;
                print(out, &entries, &|v| {
                    v.as_array()
                        .map_or(String::new(), |a| a.iter().map(format_log_line).collect())
                })?;
            }
        }
        Command::Monitoring(MonitoringCommand::Metrics) => {
            write!(out, "{}", client.text(Method::GET, "/metrics").await?)?;
        }
        Command::Config(command) => run_config(&client, command, json_output, out).await?,
        Command::System(command) => {
            let target = cli.host.clone().unwrap_or_else(|| "this box".to_string());
            run_system(&client, command, &target, json_output, out).await?
        }
        Command::Interfaces => {
            let list = client.json(Method::GET, "/api/v1/interfaces", None).await?;
            print(out, &list, &format_interfaces)?;
        }
        Command::Bgp(command) => {
            let value = match command {
                BgpCommand::Decode { hex } => {
                    let message = ztos_bgp::decode_hex(&hex.join(" "))
                        .map_err(|e| anyhow::anyhow!("cannot decode the message: {e}"))?;
                    // A decoded message is printed as JSON, with or without --json.
                    serde_json::to_value(message)?
                }
                BgpCommand::Summary => {
                    let value = client
                        .json(Method::GET, "/api/v1/bgp/summary", None)
                        .await?;
                    return print(out, &value, &format_bgp_summary);
                }
                BgpCommand::Neighbors { address } => {
                    let path = match &address {
                        Some(a) => format!("/api/v1/bgp/neighbors/{}", url_escape(a)),
                        None => "/api/v1/bgp/neighbors".to_string(),
                    };
                    let value = client.json(Method::GET, &path, None).await?;
                    return if address.is_some() {
                        print(out, &value, &format_bgp_neighbor_detail)
                    } else {
                        print(out, &value, &|v| format_bgp_neighbors(&v["neighbors"]))
                    };
                }
                BgpCommand::Routes {
                    family,
                    prefix,
                    vni,
                } => {
                    let evpn = vni.is_some() || family.as_deref() == Some("evpn");
                    let mut query = Vec::new();
                    if let Some(vni) = vni {
                        query.push(format!("vni={vni}"));
                    }
                    if let Some(family) = family {
                        query.push(format!("family={}", url_escape(&family)));
                    }
                    if let Some(prefix) = prefix {
                        query.push(format!("prefix={}", url_escape(&prefix)));
                    }
                    let path = if query.is_empty() {
                        "/api/v1/bgp/routes".to_string()
                    } else {
                        format!("/api/v1/bgp/routes?{}", query.join("&"))
                    };
                    let value = client.json(Method::GET, &path, None).await?;
                    return if evpn {
                        print(out, &value, &format_evpn_routes)
                    } else {
                        print(out, &value, &format_bgp_routes)
                    };
                }
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        }
        Command::Plugins { name } => match name {
            Some(name) => {
                let info = client
                    .json(
                        Method::GET,
                        &format!("/api/v1/plugins/{}", url_escape(&name)),
                        None,
                    )
                    .await?;
                writeln!(out, "{}", serde_json::to_string_pretty(&info)?)?;
            }
            None => {
                let list = client.json(Method::GET, "/api/v1/plugins", None).await?;
                print(out, &list, &format_plugins)?;
            }
        },
        Command::Token(TokenCommand::Create { name, role }) => {
            let body = json!({ "name": name, "role": role.as_str() });
            let created = client
                .json(Method::POST, "/api/v1/tokens", Some(&body))
                .await?;
            print(out, &created, &|v| {
                format!(
                    "token {} ({}) created; its secret is shown only now:\n{}\n",
                    field(v.get("token").unwrap_or(v), "name"),
                    field(v.get("token").unwrap_or(v), "role"),
                    field(v, "secret")
                )
            })?;
        }
        Command::Token(TokenCommand::List) => {
            let list = client.json(Method::GET, "/api/v1/tokens", None).await?;
            print(out, &list, &|v| {
                table(
                    &["NAME", "ROLE", "CREATED", "LAST USED"],
                    rows(v, &["name", "role", "created", "last_used"]),
                )
            })?;
        }
        Command::Token(TokenCommand::Revoke { name }) => {
            client
                .json(
                    Method::DELETE,
                    &format!("/api/v1/tokens/{}", url_escape(&name)),
                    None,
                )
                .await?;
            if !json_output {
                writeln!(out, "token {name} revoked")?;
            }
        }
        Command::Health => {
            // /health answers 503 with the same JSON when unhealthy; show it either way.
            let health = match client.json(Method::GET, "/health", None).await {
                Ok(value) => value,
                Err(crate::client::ClientError::Api { body, .. })
                    if body.get("components").is_some() =>
                {
                    body
                }
                Err(err) => return Err(err.into()),
            };
            print(out, &health, &|v| {
                let mut text = format!(
                    "{}\n",
                    if v.get("healthy").and_then(Value::as_bool) == Some(true) {
                        "healthy"
                    } else {
                        "UNHEALTHY"
                    }
                );
                text.push_str(&table(
                    &["COMPONENT", "HEALTHY", "DETAIL"],
                    rows(&v["components"], &["name", "healthy", "detail"]),
                ));
                text
            })?;
            if health.get("healthy").and_then(Value::as_bool) != Some(true) {
                bail!("not healthy");
            }
        }
    }
    Ok(())
}

async fn run_config(
    client: &Client,
    command: ConfigCommand,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show {
            revision,
            candidate,
        } => {
            let value = if candidate {
                client
                    .json(Method::GET, "/api/v1/config/candidate", None)
                    .await?
            } else if let Some(n) = revision {
                client
                    .json(Method::GET, &format!("/api/v1/config/revisions/{n}"), None)
                    .await?
            } else {
                client.json(Method::GET, "/api/v1/config", None).await?
            };
            if json_output {
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                let text = value
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                write!(out, "{text}")?;
            }
        }
        ConfigCommand::Set { path, value } => {
            let body = json!({ "path": path, "value": value });
            client
                .json(Method::PATCH, "/api/v1/config/candidate", Some(&body))
                .await?;
            if !json_output {
                writeln!(out, "candidate: {path} set; `ztos config diff` to review, `ztos config commit` to apply")?;
            }
        }
        ConfigCommand::Delete { path } => {
            let body = json!({ "path": path, "delete": true });
            client
                .json(Method::PATCH, "/api/v1/config/candidate", Some(&body))
                .await?;
            if !json_output {
                writeln!(out, "candidate: {path} deleted")?;
            }
        }
        ConfigCommand::Load { file } => {
            let text = read_file_or_stdin(&file)?;
            client
                .json(
                    Method::PUT,
                    "/api/v1/config/candidate",
                    Some(&json!({ "text": text })),
                )
                .await?;
            if !json_output {
                writeln!(out, "candidate loaded from {}", file.display())?;
            }
        }
        ConfigCommand::Edit => {
            let current = client
                .json(Method::GET, "/api/v1/config/candidate", None)
                .await?;
            let text = current
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let edited = edit_in_editor(&text)?;
            if edited == text {
                writeln!(out, "no change")?;
                return Ok(());
            }
            client
                .json(
                    Method::PUT,
                    "/api/v1/config/candidate",
                    Some(&json!({ "text": edited })),
                )
                .await?;
            writeln!(
                out,
                "candidate updated; `ztos config diff` to review, `ztos config commit` to apply"
            )?;
        }
        ConfigCommand::Discard => {
            client
                .json(Method::DELETE, "/api/v1/config/candidate", None)
                .await?;
            if !json_output {
                writeln!(out, "candidate discarded")?;
            }
        }
        ConfigCommand::Diff { from, to } => {
            let mut query = Vec::new();
            if let Some(from) = from {
                query.push(format!("from={from}"));
            }
            if let Some(to) = to {
                query.push(format!("to={to}"));
            }
            let value = client
                .json(
                    Method::GET,
                    &format!("/api/v1/config/diff?{}", query.join("&")),
                    None,
                )
                .await?;
            if json_output {
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                let diff = value
                    .get("diff")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if diff.is_empty() {
                    writeln!(out, "no differences")?;
                } else {
                    write!(out, "{diff}")?;
                }
            }
        }
        ConfigCommand::Commit {
            comment,
            confirmed,
            file,
        } => {
            let mut body = json!({});
            if let Some(file) = &file {
                body["text"] = Value::String(read_file_or_stdin(file)?);
            }
            if let Some(comment) = comment {
                body["comment"] = Value::String(comment);
            }
            if let Some(minutes) = confirmed {
                body["confirm_minutes"] = json!(minutes);
            }
            let outcome = client
                .json(Method::POST, "/api/v1/config/commit", Some(&body))
                .await?;
            print_value(out, &outcome, json_output, format_commit)?;
        }
        ConfigCommand::Confirm => {
            let meta = client
                .json(Method::POST, "/api/v1/config/confirm", Some(&json!({})))
                .await?;
            print_value(out, &meta, json_output, |v| {
                format!(
                    "revision {} confirmed\n",
                    field(v.get("revision").unwrap_or(v), "number")
                )
            })?;
        }
        ConfigCommand::Rollback { revision, comment } => {
            let mut body = json!({ "revision": revision });
            if let Some(comment) = comment {
                body["comment"] = Value::String(comment);
            }
            let outcome = client
                .json(Method::POST, "/api/v1/config/rollback", Some(&body))
                .await?;
            print_value(out, &outcome, json_output, format_commit)?;
        }
        ConfigCommand::Revisions => {
            let list = client
                .json(Method::GET, "/api/v1/config/revisions", None)
                .await?;
            print_value(out, &list, json_output, |v| {
                table(
                    &["REVISION", "TIME", "AUTHOR", "COMMENT"],
                    rows(v, &["number", "time", "author", "comment"]),
                )
            })?;
        }
        ConfigCommand::Schema => {
            let schema = client
                .json(Method::GET, "/api/v1/config/schema", None)
                .await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&schema)?)?;
        }
    }
    Ok(())
}

async fn run_system(
    client: &Client,
    command: SystemCommand,
    target: &str,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (action, path, yes) = match command {
        SystemCommand::Update(args) => return run_update(client, args, json_output, out).await,
        SystemCommand::Slots => {
            let value = client
                .json(Method::GET, "/api/v1/system/slots", None)
                .await?;
            return print_value(
                out,
                &value,
                json_output,
                crate::update::commands::format_slots,
            );
        }
        SystemCommand::Rollback { no_reboot, yes } => {
            if !yes && !no_reboot {
                use std::io::IsTerminal;
                if !std::io::stdin().is_terminal() {
                    bail!("rollback needs confirmation: pass --yes (no terminal to ask on)");
                }
                eprint!("switch {target} to its other slot and reboot? [y/N] ");
                std::io::stderr().flush()?;
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    bail!("rollback cancelled");
                }
            }
            return crate::update::commands::rollback(client, !no_reboot, json_output, out).await;
        }
        SystemCommand::Services => {
            let value = client
                .json(Method::GET, "/api/v1/system/services", None)
                .await?;
            return print_value(out, &value, json_output, format_services);
        }
        SystemCommand::Reboot { yes } => ("reboot", "/api/v1/system/reboot", yes),
        SystemCommand::Poweroff { yes } => ("poweroff", "/api/v1/system/poweroff", yes),
        SystemCommand::ReformatPerm { yes } => {
            ("reformat-perm", "/api/v1/system/perm/reformat", yes)
        }
    };
    let reformat = action == "reformat-perm";
    if !yes {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            bail!("{action} needs confirmation: pass --yes (no terminal to ask on)");
        }
        if reformat {
            eprint!("{}", reformat_warning(target));
        } else {
            eprint!("{action} {target}? every service stops [y/N] ");
        }
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("{action} cancelled");
        }
    }
    let value = client.json(Method::POST, path, Some(&json!({}))).await?;
    print_value(out, &value, json_output, |_| {
        if reformat {
            format!(
                "reformat of {PERM_LABEL} on {target} under way: ztos-init stops every service, makes a new filesystem and reboots; at the next boot the console asks for a new admin password\n"
            )
        } else {
            format!("{action} of {target} under way: ztos-init is stopping every service\n")
        }
    })
}

async fn run_update(
    client: &Client,
    args: UpdateArgs,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    use crate::update::commands;
    match (args.action, args.source) {
        (Some(UpdateAction::Status), _) => {
            let value = client
                .json(Method::GET, "/api/v1/system/update", None)
                .await?;
            print_value(out, &value, json_output, commands::format_status)
        }
        (Some(UpdateAction::History), _) => {
            let value = client
                .json(Method::GET, "/api/v1/system/update/history", None)
                .await?;
            print_value(out, &value, json_output, commands::format_history)
        }
        (None, Some(source)) => {
            let command = commands::UpdateCommand {
                source,
                allow_downgrade: args.allow_downgrade,
                reboot: args.reboot,
                tries: args.tries,
            };
            commands::update(client, command, json_output, out).await
        }
        (None, None) => bail!("give a bundle FILE or URL, or `status` or `history`"),
    }
}

/// The question `system reformat-perm` asks on a terminal.
fn reformat_warning(target: &str) -> String {
    format!(
        "reformat-perm erases the persistent partition ({PERM_LABEL}) of {target}: the configuration and its revisions, \
         the console users, the API tokens, the TLS keys and the logs are lost, and the box reboots \
         with its factory configuration. Reformat? [y/N] "
    )
}

fn format_services(v: &Value) -> String {
    let mut text = table(
        &[
            "NAME",
            "STATE",
            "PID",
            "RESTARTS",
            "SINCE",
            "CRITICAL",
            "LAST EXIT",
        ],
        rows(
            &v["services"],
            &[
                "name",
                "state",
                "pid",
                "restarts",
                "since",
                "critical",
                "last_exit",
            ],
        ),
    );
    if v.get("healthy").and_then(Value::as_bool) == Some(false) {
        text.push_str("UNHEALTHY: a critical service is crash-looping\n");
    }
    text
}

fn print_value(
    out: &mut dyn Write,
    value: &Value,
    json_output: bool,
    human: impl Fn(&Value) -> String,
) -> anyhow::Result<()> {
    if json_output {
        writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    } else {
        write!(out, "{}", human(value))?;
    }
    Ok(())
}

fn network_configure_body(args: &NetworkConfigureArgs) -> anyhow::Result<Value> {
    if !(args.bgp || args.vxlan || args.wireguard) {
        bail!("say what to configure: --bgp, --vxlan or --wireguard");
    }
    let mut body = json!({});
    if args.bgp {
        let (Some(peer), Some(remote_as)) = (args.peer, args.remote_as) else {
            bail!("--bgp needs --peer and --as");
        };
        body["bgp"] = json!({
            "peer": peer.to_string(),
            "remote_as": remote_as,
            "local_as": args.local_as,
            "description": args.description,
        });
    }
    if args.vxlan {
        let (Some(vni), Some(local_vtep)) = (args.vni, args.local_vtep) else {
            bail!("--vxlan needs --vni and --local-vtep");
        };
        body["vxlan"] = json!({
            "vni": vni,
            "local_vtep": local_vtep.to_string(),
            "remote_vteps": args.remote_vteps.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "bridge": args.bridge,
            "port": args.port,
        });
    }
    if args.wireguard {
        let (Some(interface), Some(public_key)) = (&args.interface, &args.public_key) else {
            bail!("--wireguard needs --interface and --public-key");
        };
        body["wireguard"] = json!({
            "interface": interface,
            "public_key": public_key,
            "endpoint": args.endpoint,
            "allowed_ips": args.allowed_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
    }
    if let Some(comment) = &args.comment {
        body["comment"] = Value::String(comment.clone());
    }
    Ok(body)
}

async fn follow_logs(
    client: &Client,
    path: &str,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let response = client.send(Method::GET, path, None).await?;
    let mut body = response.into_body();
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the log stream")?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(newline) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=newline).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if json_output {
                writeln!(out, "{line}")?;
            } else if let Ok(entry) = serde_json::from_str::<Value>(line) {
                write!(out, "{}", format_log_line(&entry))?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

fn read_file_or_stdin(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

fn edit_in_editor(text: &str) -> anyhow::Result<String> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let dir = std::env::temp_dir().join(format!("ztos-edit-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("candidate.toml");
    std::fs::write(&path, text)?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .with_context(|| format!("starting editor {editor}"))?;
    let edited = std::fs::read_to_string(&path);
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        bail!("editor {editor} exited with {status}; candidate unchanged");
    }
    Ok(edited?)
}

fn url_escape(s: &str) -> String {
    let mut escaped = String::new();
    for byte in s.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                escaped.push(byte as char)
            }
            _ => escaped.push_str(&format!("%{byte:02X}")),
        }
    }
    escaped
}

/// A JSON field as display text: strings bare, null as `-`, everything else as JSON.
fn field(value: &Value, key: &str) -> String {
    display(value.get(key).unwrap_or(&Value::Null))
}

fn display(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn rows(list: &Value, keys: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| keys.iter().map(|k| field(item, k)).collect())
                .collect()
        })
        .unwrap_or_default()
}

/// An aligned table with a header row.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut text = String::new();
    let mut push_row = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.push('\n');
    };
    push_row(header.to_vec());
    for row in &rows {
        push_row(row.iter().map(String::as_str).collect());
    }
    text
}

fn format_commit(v: &Value) -> String {
    let revision = v
        .get("revision")
        .map(|r| field(r, "number"))
        .unwrap_or_else(|| "-".into());
    let mut text = format!("committed revision {revision}");
    let changes = v
        .get("changes")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    text.push_str(&format!(
        " ({changes} kernel change{})\n",
        if changes == 1 { "" } else { "s" }
    ));
    for change in v
        .get("changes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        text.push_str(&format!("  {}\n", display(change)));
    }
    for warning in v
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        text.push_str(&format!("warning: {}\n", display(warning)));
    }
    if let Some(deadline) = v.get("confirm_deadline").and_then(Value::as_str) {
        text.push_str(&format!(
            "reverts at {deadline} unless confirmed with `ztos config confirm`\n"
        ));
    }
    text
}

fn format_security(v: &Value) -> String {
    let mut rows = Vec::new();
    for name in ["wireguard", "macsec"] {
        let s = &v[name];
        let configured = if s.get("configured").and_then(Value::as_bool) == Some(true) {
            "configured"
        } else {
            "not configured"
        };
        rows.push(vec![
            name.to_string(),
            configured.to_string(),
            field(s, "interfaces"),
            field(s, "peers"),
            format!("{} ({})", field(s, "plugin"), field(s, "plugin_state")),
        ]);
    }
    let mut text = table(&["SERVICE", "STATE", "INTERFACES", "PEERS", "PLUGIN"], rows);
    text.push_str(&format!("policy rules: {}\n", field(v, "policy_rules")));
    if let Some(update) = v.get("update").and_then(Value::as_str) {
        text.push_str(&format!("update: {update}\n"));
    }
    text
}

/// `genkey` and `rotate-key` answers: the public key, and after a rotation the old one and
/// what the peers must be told.
fn format_wireguard_key(v: &Value) -> String {
    let mut text = format!(
        "interface: {}\npublic key: {}\n",
        field(v, "interface"),
        field(v, "public_key")
    );
    if v.get("old_public_key").is_some() {
        text.push_str(&format!("old public key: {}\n", field(v, "old_public_key")));
    }
    if let Some(notice) = v.get("notice").and_then(Value::as_str) {
        text.push_str(&format!("\n{notice}\n"));
    }
    text
}

/// Seconds since a Unix time as `1h 2m 3s ago`.
fn ago(unix: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut left = now.saturating_sub(unix);
    let mut parts = Vec::new();
    for (unit, seconds) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if left >= seconds {
            parts.push(format!("{}{unit}", left / seconds));
            left %= seconds;
        }
    }
    if left > 0 || parts.is_empty() {
        parts.push(format!("{left}s"));
    }
    format!("{} ago", parts.join(" "))
}

/// Bytes as `wg show` prints them: `1.50 MiB`.
fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// `ztos security wireguard show`: a `wg show`-like view (no private keys).
fn format_wireguard_show(v: &Value) -> String {
    let mut text = String::new();
    let interfaces = v["interfaces"].as_array().cloned().unwrap_or_default();
    if interfaces.is_empty() {
        return "no WireGuard interfaces\n".into();
    }
    for (n, interface) in interfaces.iter().enumerate() {
        if n > 0 {
            text.push('\n');
        }
        text.push_str(&format!("interface: {}\n", field(interface, "name")));
        text.push_str(&format!(
            "  public key: {}\n",
            field(interface, "public_key")
        ));
        if interface.get("configured").and_then(Value::as_bool) == Some(false) {
            text.push_str("  (has a key but is not configured)\n");
            continue;
        }
        text.push_str(&format!(
            "  listening port: {}\n",
            field(interface, "listen_port")
        ));
        for peer in interface["peers"].as_array().into_iter().flatten() {
            text.push('\n');
            text.push_str(&format!("peer: {}", field(peer, "public_key")));
            if let Some(name) = peer.get("name").and_then(Value::as_str) {
                text.push_str(&format!(" ({name})"));
            }
            text.push('\n');
            if peer.get("preshared_key").and_then(Value::as_bool) == Some(true) {
                text.push_str("  preshared key: (hidden)\n");
            }
            if !peer["endpoint"].is_null() {
                text.push_str(&format!("  endpoint: {}\n", field(peer, "endpoint")));
            }
            text.push_str(&format!("  allowed ips: {}\n", field(peer, "allowed_ips")));
            if let Some(time) = peer["latest_handshake"].as_u64() {
                text.push_str(&format!("  latest handshake: {}\n", ago(time)));
            }
            let rx = peer["rx_bytes"].as_u64().unwrap_or(0);
            let tx = peer["tx_bytes"].as_u64().unwrap_or(0);
            if rx > 0 || tx > 0 {
                text.push_str(&format!(
                    "  transfer: {} received, {} sent\n",
                    bytes_text(rx),
                    bytes_text(tx)
                ));
            }
            if let Some(keepalive) = peer["persistent_keepalive"].as_u64() {
                text.push_str(&format!(
                    "  persistent keepalive: every {keepalive} seconds\n"
                ));
            }
            text.push_str(&format!(
                "  policy: {} allowed, {} denied in, {} denied out\n",
                field(peer, "policy_allowed"),
                field(peer, "policy_denied_in"),
                field(peer, "policy_denied_out")
            ));
        }
    }
    text
}

/// An interface's DHCP lease for the table: `10.0.2.15/24 via 10.0.2.2 from 10.0.2.2 until
/// <time>`, or `-`.
fn dhcp_cell(interface: &Value) -> String {
    let Some(lease) = interface.get("dhcp").filter(|l| l.is_object()) else {
        return "-".into();
    };
    let text = |key: &str| {
        lease
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let mut cell = text("address");
    if let Some(router) = lease.get("router").and_then(Value::as_str) {
        cell.push_str(&format!(" via {router}"));
    }
    cell.push_str(&format!(
        " from {} until {}",
        text("server"),
        text("expires")
    ));
    cell
}

/// `3725` as `1h02m05s`, `59` as `59s`; `-` when absent (the session is down).
fn format_uptime(seconds: Option<u64>) -> String {
    let Some(s) = seconds else {
        return "-".into();
    };
    let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `ztos bgp neighbors` (and the summary's neighbor list) as a table.
fn format_bgp_neighbors(list: &Value) -> String {
    let rows = list
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|n| {
                    vec![
                        field(n, "address"),
                        field(n, "remote_as"),
                        field(n, "state"),
                        format_uptime(n["uptime_seconds"].as_u64()),
                        field(n, "prefixes_received"),
                        field(n, "prefixes_accepted"),
                        field(n, "prefixes_advertised"),
                        field(n, "description"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &[
            "NEIGHBOR",
            "AS",
            "STATE",
            "UP",
            "RECEIVED",
            "ACCEPTED",
            "ADVERTISED",
            "DESCRIPTION",
        ],
        rows,
    )
}

fn format_bgp_summary(v: &Value) -> String {
    if v["configured"] != Value::Bool(true) {
        return "BGP is not configured\n".into();
    }
    let total = v["neighbors"].as_array().map_or(0, Vec::len);
    let mut text = format!(
        "BGP AS {}, router id {}, port {}\nroutes: {} IPv4, {} IPv6; {} of {} neighbors established\n",
        field(v, "local_as"),
        field(v, "router_id"),
        field(v, "port"),
        display(&v["routes"]["ipv4-unicast"]),
        display(&v["routes"]["ipv6-unicast"]),
        field(v, "neighbors_established"),
        total,
    );
    if total > 0 {
        text.push('\n');
        text.push_str(&format_bgp_neighbors(&v["neighbors"]));
    }
    text
}

/// `ztos bgp neighbors ADDR`: one neighbor, one `key: value` per line.
fn format_bgp_neighbor_detail(v: &Value) -> String {
    let n = &v["neighbors"][0];
    let mut lines = vec![
        ("neighbor", field(n, "address")),
        ("remote AS", field(n, "remote_as")),
        ("description", field(n, "description")),
        ("state", field(n, "state")),
        ("up for", format_uptime(n["uptime_seconds"].as_u64())),
        (
            "established",
            format!("{} times", display(&n["established_count"])),
        ),
        (
            "prefixes",
            format!(
                "{} received, {} accepted, {} advertised",
                display(&n["prefixes_received"]),
                display(&n["prefixes_accepted"]),
                display(&n["prefixes_advertised"])
            ),
        ),
        (
            "updates",
            format!(
                "{} received, {} sent",
                display(&n["updates_received"]),
                display(&n["updates_sent"])
            ),
        ),
        ("last error", field(n, "last_error")),
    ];
    let c = &n["configured"];
    lines.push(("configured families", field(c, "families")));
    lines.push(("hold time", field(c, "hold_time")));
    lines.push(("passive", field(c, "passive")));
    lines.push(("max prefixes", field(c, "max_prefixes")));
    lines.push(("route reflector client", field(c, "route_reflector_client")));
    lines.push(("TCP MD5", field(c, "md5")));
    let session = &n["session"];
    if session.is_object() {
        lines.push(("local address", field(session, "local_address")));
        lines.push(("remote router id", field(session, "remote_router_id")));
        lines.push(("negotiated hold time", field(session, "hold_time")));
        lines.push(("families", field(session, "families")));
        lines.push(("eBGP", field(session, "ebgp")));
        lines.push(("four-octet AS", field(session, "four_octet_as")));
        lines.push(("route refresh", field(session, "route_refresh")));
        lines.push(("extended message", field(session, "extended_message")));
        lines.push(("update group", field(session, "update_group")));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    lines
        .into_iter()
        .map(|(k, v)| format!("{:<width$}  {v}\n", format!("{k}:"), width = width + 1))
        .collect()
}

/// An AS_PATH as the API gives it (segments of `kind` and `asns`) the way routers print
/// it: `65001 65002 {65003,65004} (65010)`.
fn format_as_path(path: &Value) -> String {
    let Some(segments) = path.as_array() else {
        return "-".into();
    };
    if segments.is_empty() {
        return "(empty)".into();
    }
    segments
        .iter()
        .map(|segment| {
            let asns: Vec<String> = segment["asns"]
                .as_array()
                .map(|a| a.iter().map(display).collect())
                .unwrap_or_default();
            match segment["kind"].as_str() {
                Some("set") => format!("{{{}}}", asns.join(",")),
                Some("confed_sequence") => format!("({})", asns.join(" ")),
                Some("confed_set") => format!("[{}]", asns.join(",")),
                _ => asns.join(" "),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ztos bgp routes --family evpn`: one line per path, `*` on the best; the route (type, RD
/// and its key fields) on its first path.
fn format_evpn_routes(v: &Value) -> String {
    let mut rows = Vec::new();
    for route in v["routes"].as_array().into_iter().flatten() {
        let r = &route["route"];
        let what = match route["route_type"].as_u64() {
            Some(2) => format!(
                "[2] {}{}",
                field(r, "mac"),
                r.get("ip")
                    .map(|ip| format!(" {}", display(ip)))
                    .unwrap_or_default()
            ),
            Some(3) => format!("[3] {}", field(r, "originator")),
            Some(5) => format!("[5] {}", field(r, "prefix")),
            Some(t) => format!("[{t}]"),
            None => String::new(),
        };
        for (i, path) in route["paths"].as_array().into_iter().flatten().enumerate() {
            rows.push(vec![
                if path["best"] == Value::Bool(true) {
                    "*"
                } else {
                    ""
                }
                .to_string(),
                if i == 0 {
                    field(route, "rd")
                } else {
                    String::new()
                },
                if i == 0 { what.clone() } else { String::new() },
                field(path, "vni"),
                field(path, "next_hop"),
                field(path, "from"),
                path["extended_communities"]
                    .as_array()
                    .map(|c| c.iter().map(display).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default(),
            ]);
        }
    }
    let mut text = table(
        &[
            "",
            "RD",
            "ROUTE",
            "VNI",
            "NEXT HOP",
            "FROM",
            "EXTENDED COMMUNITIES",
        ],
        rows,
    );
    if v["truncated"] == Value::Bool(true) {
        text.push_str("(more routes: narrow with --vni or --prefix, or use --json)\n");
    }
    text
}

/// `ztos bgp routes`: one line per path, `*` on the best, the prefix on its first path.
fn format_bgp_routes(v: &Value) -> String {
    let mut rows = Vec::new();
    for route in v["routes"].as_array().into_iter().flatten() {
        for (i, path) in route["paths"].as_array().into_iter().flatten().enumerate() {
            rows.push(vec![
                if path["best"] == Value::Bool(true) {
                    "*"
                } else {
                    ""
                }
                .to_string(),
                if i == 0 {
                    field(route, "prefix")
                } else {
                    String::new()
                },
                field(path, "next_hop"),
                field(path, "from"),
                field(path, "local_pref"),
                field(path, "med"),
                field(path, "origin"),
                format_as_path(&path["as_path"]),
            ]);
        }
    }
    let mut text = table(
        &[
            "",
            "PREFIX",
            "NEXT HOP",
            "FROM",
            "LOCAL PREF",
            "MED",
            "ORIGIN",
            "AS PATH",
        ],
        rows,
    );
    if v["truncated"] == Value::Bool(true) {
        text.push_str("(more routes: narrow with --prefix or --family, or use --json)\n");
    }
    text
}

fn format_interfaces(v: &Value) -> String {
    let rows = v
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    vec![
                        field(i, "name"),
                        field(i, "kind"),
                        if i.get("admin_up").and_then(Value::as_bool) == Some(true) {
                            "up".into()
                        } else {
                            "down".into()
                        },
                        field(i, "oper_state"),
                        field(i, "mtu"),
                        field(i, "master"),
                        field(i, "addresses"),
                        dhcp_cell(i),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &[
            "NAME",
            "KIND",
            "ADMIN",
            "OPER",
            "MTU",
            "MASTER",
            "ADDRESSES",
            "DHCP",
        ],
        rows,
    )
}

fn format_plugins(v: &Value) -> String {
    table(
        &["NAME", "STATE", "VERSION", "OWNS", "REVISION"],
        rows(
            v,
            &["name", "state", "version", "owns", "last_applied_revision"],
        ),
    )
}

fn format_log_line(entry: &Value) -> String {
    format!(
        "{} {:<5} {:<16} {}\n",
        field(entry, "time"),
        field(entry, "level"),
        field(entry, "service"),
        field(entry, "message")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_commands_parse_exactly_as_written() {
        let cli = Cli::try_parse_from([
            "ztos",
            "network",
            "configure",
            "--bgp",
            "--peer",
            "10.1.1.1",
            "--as",
            "64512",
        ])
        .unwrap();
        let Command::Network(NetworkCommand::Configure(args)) = cli.command else {
            panic!("wrong command")
        };
        let body = network_configure_body(&args).unwrap();
        assert_eq!(body["bgp"]["peer"], "10.1.1.1");
        assert_eq!(body["bgp"]["remote_as"], 64512);
        assert!(matches!(
            Cli::try_parse_from(["ztos", "security", "status"])
                .unwrap()
                .command,
            Command::Security(SecurityCommand::Status)
        ));
        assert!(matches!(
            Cli::try_parse_from(["ztos", "monitoring", "logs"])
                .unwrap()
                .command,
            Command::Monitoring(MonitoringCommand::Logs { follow: false, .. })
        ));
    }

    #[test]
    fn bgp_without_peer_is_refused_by_the_parser() {
        let err = Cli::try_parse_from(["ztos", "network", "configure", "--bgp", "--as", "64512"])
            .unwrap_err();
        assert!(err.to_string().contains("--peer"), "{err}");
    }

    #[test]
    fn system_commands_parse_and_services_render_as_a_table() {
        let cli = Cli::try_parse_from(["ztos", "system", "poweroff", "--yes"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::System(SystemCommand::Poweroff { yes: true })
        ));
        let cli = Cli::try_parse_from(["ztos", "system", "reboot"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::System(SystemCommand::Reboot { yes: false })
        ));
        let cli = Cli::try_parse_from(["ztos", "system", "reformat-perm", "--yes"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::System(SystemCommand::ReformatPerm { yes: true })
        ));
        let warning = reformat_warning("the box");
        assert!(
            warning.contains("ztos-perm")
                && warning.contains("configuration")
                && warning.contains("users")
                && warning.contains("reboots"),
            "{warning}"
        );
        let text = format_services(&json!({
            "healthy": false,
            "services": [
                {"name": "ztosd", "state": "running", "pid": 42, "restarts": 1,
                 "since": "2025-01-01T00:00:00Z", "critical": true, "last_exit": "killed by SIGKILL"},
                {"name": "flaky", "state": "crash-loop", "pid": null, "restarts": 7,
                 "since": "2025-01-01T00:00:01Z", "critical": false, "last_exit": "exited with status 1"}
            ]
        }));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("NAME   STATE       PID  RESTARTS"),
            "{text}"
        );
        assert!(lines[1].starts_with("ztosd  running     42   1"), "{text}");
        assert!(lines[2].starts_with("flaky  crash-loop  -    7"), "{text}");
        assert_eq!(lines[3], "UNHEALTHY: a critical service is crash-looping");
    }

    #[test]
    fn wireguard_commands_parse() {
        let cli =
            Cli::try_parse_from(["ztos", "security", "wireguard", "rotate-key", "wg0"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Security(SecurityCommand::Wireguard(WireguardCommand::RotateKey { ref interface }))
                if interface == "wg0"
        ));
        let cli = Cli::try_parse_from(["ztos", "security", "wireguard", "show"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Security(SecurityCommand::Wireguard(WireguardCommand::Show {
                interface: None
            }))
        ));
        assert!(Cli::try_parse_from(["ztos", "security", "wireguard", "genkey"]).is_err());
    }

    #[test]
    fn wireguard_show_reads_like_wg_show() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let v = json!({"interfaces": [
            {"name": "wg0", "public_key": "PUB0", "listen_port": 51820, "configured": true,
             "peers": [{"public_key": "PEER", "name": "laptop", "endpoint": "192.0.2.1:51820",
                        "allowed_ips": ["10.9.0.2/32", "10.9.1.0/24"], "latest_handshake": now - 75,
                        "rx_bytes": 1536, "tx_bytes": 3 * 1024 * 1024, "persistent_keepalive": 25,
                        "preshared_key": true,
                        "policy_allowed": 4, "policy_denied_in": 1, "policy_denied_out": 0}]},
            {"name": "wg1", "public_key": "PUB1", "configured": false, "peers": []}]});
        assert_eq!(
            format_wireguard_show(&v),
            "interface: wg0\n  public key: PUB0\n  listening port: 51820\n\n\
             peer: PEER (laptop)\n  preshared key: (hidden)\n  endpoint: 192.0.2.1:51820\n\
             \x20 allowed ips: 10.9.0.2/32,10.9.1.0/24\n  latest handshake: 1m 15s ago\n\
             \x20 transfer: 1.50 KiB received, 3.00 MiB sent\n\
             \x20 persistent keepalive: every 25 seconds\n\
             \x20 policy: 4 allowed, 1 denied in, 0 denied out\n\n\
             interface: wg1\n  public key: PUB1\n  (has a key but is not configured)\n"
        );
        assert_eq!(
            format_wireguard_show(&json!({"interfaces": []})),
            "no WireGuard interfaces\n"
        );
        assert_eq!(bytes_text(512), "512 B");
    }

    #[test]
    fn rotate_key_prints_the_notice() {
        let text = format_wireguard_key(&json!({"interface": "wg0", "public_key": "NEW",
            "old_public_key": "OLD", "notice": "Tell the peers."}));
        assert_eq!(
            text,
            "interface: wg0\npublic key: NEW\nold public key: OLD\n\nTell the peers.\n"
        );
        let text = format_wireguard_key(&json!({"interface": "wg0", "public_key": "NEW"}));
        assert_eq!(text, "interface: wg0\npublic key: NEW\n");
    }

    #[test]
    fn security_status_shows_a_rollback() {
        let status = json!({"wireguard": {}, "macsec": {}, "policy_rules": 0,
            "update": "rolled back from 0.2.0"});
        assert!(format_security(&status).ends_with("update: rolled back from 0.2.0\n"));
        let status = json!({"wireguard": {}, "macsec": {}, "policy_rules": 0});
        assert!(!format_security(&status).contains("update:"));
    }

    #[test]
    fn evpn_routes_print_type_rd_key_and_communities() {
        let routes = json!({"truncated": false, "routes": [{
            "family": "l2vpn-evpn", "route_type": 2, "rd": "10.0.0.2:100",
            "route": {"route_type": "mac_ip", "mac": "02:00:00:00:00:aa"},
            "paths": [{"best": true, "vni": 100, "next_hop": "10.0.0.2", "from": "10.0.0.2",
                       "extended_communities": ["rt 65002:100", "encap 8"]}]
        }, {
            "family": "l2vpn-evpn", "route_type": 3, "rd": "10.0.0.1:100",
            "route": {"route_type": "inclusive_multicast", "originator": "10.0.0.1"},
            "paths": [{"best": true, "vni": 100, "next_hop": "10.0.0.1", "from": "local",
                       "extended_communities": ["rt 65001:100"]}]
        }]});
        let text = format_evpn_routes(&routes);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("RD") && lines[0].contains("EXTENDED COMMUNITIES"),
            "{text}"
        );
        assert!(
            lines[1].starts_with('*')
                && lines[1].contains("10.0.0.2:100")
                && lines[1].contains("[2] 02:00:00:00:00:aa")
                && lines[1].contains("rt 65002:100, encap 8"),
            "{text}"
        );
        assert!(
            lines[2].contains("[3] 10.0.0.1") && lines[2].contains("local"),
            "{text}"
        );
    }

    #[test]
    fn bgp_summary_neighbors_and_routes_print_as_tables() {
        let neighbor = json!({
            "address": "10.0.0.2", "remote_as": 65002, "description": "bird",
            "state": "established", "uptime_seconds": 3725, "prefixes_received": 3,
            "prefixes_accepted": 2, "prefixes_advertised": 1, "updates_received": 4,
            "updates_sent": 1, "last_error": null,
        });
        let summary = json!({
            "configured": true, "local_as": 65001, "router_id": "10.0.0.1", "port": 179,
            "neighbors_established": 1, "routes": {"ipv4-unicast": 3, "ipv6-unicast": 0},
            "neighbors": [neighbor.clone()],
        });
        assert_eq!(
            format_bgp_summary(&summary),
            "BGP AS 65001, router id 10.0.0.1, port 179\n\
             routes: 3 IPv4, 0 IPv6; 1 of 1 neighbors established\n\n\
             NEIGHBOR  AS     STATE        UP        RECEIVED  ACCEPTED  ADVERTISED  DESCRIPTION\n\
             10.0.0.2  65002  established  1h02m05s  3         2         1           bird\n"
        );
        assert_eq!(
            format_bgp_summary(&json!({"configured": false, "neighbors": []})),
            "BGP is not configured\n"
        );
        let mut detail = neighbor;
        detail["established_count"] = json!(2);
        detail["configured"] = json!({"families": ["ipv4-unicast"], "hold_time": 90,
            "passive": false, "max_prefixes": null, "route_reflector_client": false, "md5": true});
        let text = format_bgp_neighbor_detail(&json!({"neighbors": [detail]}));
        assert!(
            text.starts_with("neighbor:                10.0.0.2\n"),
            "{text}"
        );
        assert!(
            text.contains("established:             2 times\n"),
            "{text}"
        );
        assert!(
            text.contains("prefixes:                3 received, 2 accepted, 1 advertised\n"),
            "{text}"
        );
        assert!(text.contains("max prefixes:            -\n"), "{text}");
        assert!(
            !text.contains("local address"),
            "no session, no session lines: {text}"
        );

        let routes = json!({"truncated": true, "routes": [{
        "prefix": "198.51.100.0/24", "family": "ipv4-unicast", "paths": [
            {"best": true, "from": "10.0.0.2", "next_hop": "10.0.0.2", "origin": "igp",
             "local_pref": null, "med": 5, "as_path": [
                {"kind": "sequence", "asns": [65002, 65003]},
                {"kind": "set", "asns": [65004, 65005]}]},
            {"best": false, "from": "local", "next_hop": null, "origin": "incomplete",
             "local_pref": 100, "med": null, "as_path": []},
        ]}]});
        assert_eq!(
            format_bgp_routes(&routes),
            "   PREFIX           NEXT HOP  FROM      LOCAL PREF  MED  ORIGIN      AS PATH\n\
             *  198.51.100.0/24  10.0.0.2  10.0.0.2  -           5    igp         65002 65003 {65004,65005}\n\
             \x20                   -         local     100         -    incomplete  (empty)\n\
             (more routes: narrow with --prefix or --family, or use --json)\n"
        );
        assert_eq!(
            format_as_path(&json!([{"kind": "confed_sequence", "asns": [1, 2]},
                {"kind": "confed_set", "asns": [3]}])),
            "(1 2) [3]"
        );
        assert_eq!(format_uptime(None), "-");
        assert_eq!(format_uptime(Some(59)), "59s");
        assert_eq!(format_uptime(Some(90061)), "1d01h01m");
    }

    #[test]
    fn tables_are_aligned() {
        let text = table(&["A", "LONGER"], vec![vec!["value".into(), "x".into()]]);
        assert_eq!(text, "A      LONGER\nvalue  x\n");
    }

    #[test]
    fn url_escape_escapes_reserved_characters() {
        assert_eq!(
            url_escape("2026-11-20T10:00:00+01:00"),
            "2026-11-20T10%3A00%3A00%2B01%3A00"
        );
    }
}
