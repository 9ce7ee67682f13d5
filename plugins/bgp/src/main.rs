//! `ztos-bgp`: the BGP speaker plugin process. It connects to ztosd's plugin socket, owns the
//! `[bgp]` section (validates and applies it), answers `bgp summary`, `bgp neighbors` and
//! `bgp routes`, reports per-neighbor status and metrics, and installs best routes into the
//! kernel. See docs/bgp.md.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use ipnet::IpNet;
use serde_json::Value;
use tokio::sync::mpsc;
use ztos_bgp::codec::Family;
use ztos_bgp::config::{self, BgpConfig};
use ztos_bgp::evpn_kernel::{self, EvpnKernel};
use ztos_bgp::kernel::{self, Kernel};
use ztos_bgp::speaker::{EvpnIo, Query, Report, SpeakerHandle};
use ztos_plugin::client::UnknownMethod;
use ztos_plugin::protocol::DEFAULT_SOCKET_PATH;
use ztos_plugin::{FieldError, Handler, LogLevel, Metric, PluginClient, PluginSender, Sections};

#[derive(Debug, Parser)]
#[command(name = "ztos-bgp", version, about = "The ZTOS BGP speaker plugin")]
struct Args {
    /// ztosd's plugin socket.
    #[arg(long, default_value = DEFAULT_SOCKET_PATH)]
    socket: PathBuf,
    /// Do not touch the kernel's routing tables (route-server use and benchmarks): learned
    /// routes stay in the RIB only, and stale routes of an earlier run are not swept.
    #[arg(long)]
    no_kernel: bool,
    /// Where runtime state that must not outlive a reboot goes (the EVPN flood journal).
    #[arg(long, default_value = "/run/ztos")]
    run_dir: PathBuf,
}

struct Reporter(PluginSender);

impl Report for Reporter {
    fn event(&self, kind: &str, message: String) {
        tracing::info!("{kind}: {message}");
        self.0.event(kind, message);
    }
    fn log(&self, warn: bool, message: String) {
        if warn {
            tracing::warn!("{message}");
        } else {
            tracing::info!("{message}");
        }
        self.0
            .log(if warn { LogLevel::Warn } else { LogLevel::Info }, message);
    }
    fn status(&self, status: Value) {
        self.0.status(status);
    }
    fn metrics(&self, metrics: Vec<Metric>) {
        self.0.metrics(metrics);
    }
}

/// Why an apply or a request of the BGP plugin failed; the text is what the operator sees.
#[derive(Debug, thiserror::Error)]
enum BgpPluginError {
    #[error("{}", joined(.0))]
    Config(Vec<FieldError>),
    #[error("cannot read the node's addresses for the router id: {0}")]
    RouterIdLookup(String),
    #[error("bgp.router_id is not set and this node has no IPv4 address to take it from")]
    NoRouterId,
    /// The speaker refused the configuration or the query.
    #[error("{0}")]
    Speaker(String),
    /// A request parameter that is not what the method takes.
    #[error("{0}")]
    BadParam(String),
    #[error(transparent)]
    UnknownMethod(#[from] UnknownMethod),
}

struct Bgp {
    speaker: SpeakerHandle,
    kernel: Option<Kernel>,
}

impl Bgp {
    /// The section with its router id filled in from the kernel's addresses when not set.
    async fn resolve(&self, mut config: BgpConfig) -> Result<BgpConfig, BgpPluginError> {
        if config.router_id.is_none() {
            if let Some(kernel) = &self.kernel {
                config.router_id = kernel
                    .default_router_id()
                    .await
                    .map_err(BgpPluginError::RouterIdLookup)?;
            }
        }
        if config.router_id.is_none() {
            return Err(BgpPluginError::NoRouterId);
        }
        Ok(config)
    }
}

fn section<'a>(sections: &'a Sections, name: &str) -> &'a Value {
    sections.get(name).unwrap_or(&Value::Null)
}

fn joined(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Handler for Bgp {
    type Error = BgpPluginError;

    async fn validate(&mut self, sections: Sections) -> Vec<FieldError> {
        let mut errors = match config::parse(section(&sections, "bgp")) {
            Ok(_) => Vec::new(),
            Err(errors) => errors,
        };
        if let Err(more) = config::segments(section(&sections, "vxlan")) {
            errors.extend(more);
        } else if let Err(more) =
            config::tenants(section(&sections, "tenants"), section(&sections, "vxlan"))
        {
            errors.extend(more);
        }
        errors
    }

    async fn apply(&mut self, _revision: u64, sections: Sections) -> Result<(), BgpPluginError> {
        let parsed = config::parse(section(&sections, "bgp")).map_err(BgpPluginError::Config)?;
        let segments =
            config::segments(section(&sections, "vxlan")).map_err(BgpPluginError::Config)?;
        let tenants = config::tenants(section(&sections, "tenants"), section(&sections, "vxlan"))
            .map_err(BgpPluginError::Config)?;
        let resolved = match parsed {
            Some(mut config) => {
                config.segments = segments;
                config.tenants = tenants;
                Some(self.resolve(config).await?)
            }
            None => None,
        };
        self.speaker
            .apply(resolved)
            .await
            .map_err(BgpPluginError::Speaker)
    }

    async fn request(&mut self, method: String, params: Value) -> Result<Value, BgpPluginError> {
        let query = parse_query(&method, &params)?;
        self.speaker
            .query(query)
            .await
            .map_err(BgpPluginError::Speaker)
    }
}

/// `bgp summary`, `bgp neighbors` (`{"address": A}` optional) and `bgp routes`
/// (`{"family": "ipv4"|"ipv6"|"evpn", "prefix": P}` both optional).
fn parse_query(method: &str, params: &Value) -> Result<Query, BgpPluginError> {
    parse_params(method, params).map_err(|e| match e {
        ParamError::UnknownMethod => UnknownMethod(method.to_string()).into(),
        ParamError::Bad(text) => BgpPluginError::BadParam(text),
    })
}

enum ParamError {
    UnknownMethod,
    Bad(String),
}

impl From<String> for ParamError {
    fn from(text: String) -> Self {
        ParamError::Bad(text)
    }
}

fn parse_params(method: &str, params: &Value) -> Result<Query, ParamError> {
    let string = |key: &str| -> Result<Option<&str>, String> {
        match params.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!("{method}: {key} must be a string, not {other}")),
        }
    };
    match method {
        "bgp summary" => Ok(Query::Summary),
        "bgp neighbors" => {
            let address = string("address")?
                .map(|a| {
                    a.parse::<IpAddr>()
                        .map_err(|_| format!("{a:?} is not an IP address"))
                })
                .transpose()?;
            Ok(Query::Neighbors(address))
        }
        "bgp routes" => {
            let family = string("family")?
                .map(|f| match f {
                    "ipv4" => Ok(Family::IPV4_UNICAST),
                    "ipv6" => Ok(Family::IPV6_UNICAST),
                    "evpn" => Ok(Family::L2VPN_EVPN),
                    other => Err(format!("{other:?} is not a family; use ipv4, ipv6 or evpn")),
                })
                .transpose()?;
            let prefix = string("prefix")?
                .map(|p| {
                    p.parse::<IpNet>()
                        .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| format!("{p:?} is not a prefix such as 192.0.2.0/24"))
                })
                .transpose()?;
            let vni = match params.get("vni") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => Some(
                    n.as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .filter(|v| *v <= 0x00ff_ffff)
                        .ok_or_else(|| format!("vni {n} is not a VNI (0 to 16777215)"))?,
                ),
                Some(Value::String(text)) => Some(
                    text.parse::<u32>()
                        .ok()
                        .filter(|v| *v <= 0x00ff_ffff)
                        .ok_or_else(|| format!("vni {text:?} is not a VNI (0 to 16777215)"))?,
                ),
                Some(other) => {
                    return Err(ParamError::Bad(format!(
                        "{method}: vni must be a number, not {other}"
                    )))
                }
            };
            Ok(Query::Routes {
                family,
                prefix,
                vni,
            })
        }
        _ => Err(ParamError::UnknownMethod),
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let client = PluginClient::new("ztos-bgp", env!("CARGO_PKG_VERSION"))
        .socket_path(args.socket)
        .owns("bgp")
        .reads("tenants")
        .reads("vxlan");
    let report: Arc<dyn Report> = Arc::new(Reporter(client.sender()));

    let opened = if args.no_kernel {
        Err("started with --no-kernel".to_string())
    } else {
        Kernel::open()
    };
    let mut stale = Vec::new();
    let (kernel, ops) = match opened {
        Ok(kernel) => {
            // Routes an earlier run left stay while peers send theirs again (graceful
            // restart); the speaker removes the ones nobody sends.
            match kernel.stale_prefixes().await {
                Ok(found) => stale = found,
                Err(e) => report.log(true, e),
            }
            if !stale.is_empty() {
                report.log(
                    false,
                    format!(
                        "{} BGP routes of a previous run are in the kernel: kept while peers resend their routes (graceful restart)",
                        stale.len()
                    ),
                );
            }
            let (errors_tx, mut errors) = mpsc::unbounded_channel::<String>();
            let ops = kernel::spawn(kernel.clone(), errors_tx);
            let forward = report.clone();
            tokio::spawn(async move {
                while let Some(e) = errors.recv().await {
                    forward.log(true, e);
                }
            });
            (Some(kernel), Some(ops))
        }
        Err(e) => {
            report.log(true, format!("{e}; learned routes will not be installed"));
            (None, None)
        }
    };
    let evpn = if args.no_kernel {
        None
    } else {
        start_evpn(&report, &args.run_dir).await
    };
    let speaker = SpeakerHandle::spawn_restarted(report, ops, evpn, stale);
    let shutdown = client.run(Bgp { speaker, kernel }).await;
    tracing::info!("ztos-bgp: {}", shutdown.reason);
}

/// The EVPN kernel link: stale entries of an earlier run swept, the op task and the local MAC
/// watcher started. `None` (with a warning) when rtnetlink cannot be opened.
async fn start_evpn(report: &Arc<dyn Report>, run_dir: &std::path::Path) -> Option<EvpnIo> {
    let kernel = match EvpnKernel::open_in(run_dir) {
        Ok(kernel) => kernel,
        Err(e) => {
            report.log(
                true,
                format!("{e}; EVPN routes will not be installed and local MACs not advertised"),
            );
            return None;
        }
    };
    match kernel.sweep().await {
        Ok(0) => {}
        Ok(n) => report.log(
            false,
            format!("removed {n} stale EVPN FDB, neighbour and route entries from the kernel"),
        ),
        Err(e) => report.log(true, e),
    }
    let (errors_tx, mut errors) = mpsc::unbounded_channel::<String>();
    let ops = evpn_kernel::spawn(kernel, errors_tx);
    let forward = report.clone();
    tokio::spawn(async move {
        while let Some(e) = errors.recv().await {
            forward.log(true, e);
        }
    });
    let (segments, segments_rx) = tokio::sync::watch::channel(Vec::new());
    let (macs_tx, local_macs) = mpsc::unbounded_channel();
    evpn_kernel::watch_local_macs(segments_rx, macs_tx);
    Some(EvpnIo {
        ops,
        segments,
        local_macs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queries_parse_and_bad_parameters_are_named() {
        assert_eq!(
            parse_query("bgp summary", &Value::Null).unwrap(),
            Query::Summary
        );
        assert_eq!(
            parse_query("bgp neighbors", &json!({"address": "10.0.0.2"})).unwrap(),
            Query::Neighbors(Some("10.0.0.2".parse().unwrap()))
        );
        assert_eq!(
            parse_query(
                "bgp routes",
                &json!({"family": "ipv6", "prefix": "2001:db8::/32"})
            )
            .unwrap(),
            Query::Routes {
                family: Some(Family::IPV6_UNICAST),
                prefix: Some("2001:db8::/32".parse().unwrap()),
                vni: None,
            }
        );
        assert!(parse_query("bgp routes", &json!({"family": "ipx"}))
            .unwrap_err()
            .to_string()
            .contains("ipx"));
        assert!(parse_query("bgp neighbors", &json!({"address": 5}))
            .unwrap_err()
            .to_string()
            .contains("must be a string"));
        let unknown = parse_query("bgp frobnicate", &Value::Null).unwrap_err();
        assert!(matches!(unknown, BgpPluginError::UnknownMethod(_)));
        assert_eq!(unknown.to_string(), "unknown method bgp frobnicate");
    }
}
