//! The `ztos` command line as clap types: every command, subcommand and option. Parsing only;
//! what each command does is in `commands/`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

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
        default_value = ztos_image::layout::API_SOCKET
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
    User(UserCommand),
    /// The login prompt and interactive shell on a terminal (run by init on ttyS0 and tty1).
    Console(ConsoleArgs),
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
    /// The model's role.
    pub fn role(self) -> ztos_model::config::Role {
        use ztos_model::config::Role;
        match self {
            RoleArg::Read => Role::Read,
            RoleArg::Operate => Role::Operate,
            RoleArg::Admin => Role::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RoleArg::Read => "read",
            RoleArg::Operate => "operate",
            RoleArg::Admin => "admin",
        }
    }
}

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
