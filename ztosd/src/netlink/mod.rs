//! The netlink reconciler: applies the committed configuration to the kernel's links,
//! addresses, routes and VXLAN flood lists.
//!
//! ```text
//!   Config ──DesiredState::from_config──▶ DesiredState ─┐
//!                                                       ├─ plan() ──▶ Vec<Op> ──▶ Kernel::execute
//!   Kernel::read_state ─────────────────▶ KernelState ──┘
//! ```
//!
//! `model` and `plan` are pure; all I/O sits behind the `Kernel` trait, implemented by
//! `RtnetlinkKernel` (the real one) and `RecordingKernel` (in memory, for tests).
//!
//! Architecture invariant: only this module opens netlink sockets for links, addresses,
//! routes and the static flood list; plugins program their own objects (EVPN-learned FDB
//! entries, WireGuard devices) and the reconciler leaves them alone.

mod model;
mod plan;
mod recording;
mod rtnetlink_kernel;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::pin::Pin;

use serde::Serialize;

use crate::config::Config;

pub use model::{
    DesiredLink, DesiredState, FloodEntry, KernelLink, KernelRoute, KernelState, LinkChange,
    LinkKind, Op, Route, VxlanParams, MAIN_TABLE, MANAGED_ALIAS, RTPROT_ZTOS, RTPROT_ZTOS_BGP,
};
pub use plan::{plan, route_matches};
pub use recording::RecordingKernel;
pub use rtnetlink_kernel::RtnetlinkKernel;

/// Why the configuration could not be applied to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("interface {name} does not exist")]
    MissingInterface { name: String },
    #[error("link {name} already exists as a {kind} link that ztos does not manage")]
    NameTaken { name: String, kind: String },
    #[error("link {name} is defined more than once in the configuration")]
    DuplicateLink { name: String },
    #[error("{owner}: bridge {bridge} is not configured")]
    UnknownBridge { owner: String, bridge: String },
    #[error("route {route}: tenant {tenant} is not configured")]
    UnknownTenant { route: String, tenant: String },
    #[error("tenant {tenant}: network vni {vni} has no [[vxlan]] entry with a bridge")]
    TenantNetworkWithoutBridge { tenant: String, vni: u32 },
    /// The kernel lacks the module of a link type (no `vrf` on many stock kernels).
    #[error("creating {name}: the kernel has no {what} support (module {module} not available)")]
    UnsupportedLinkKind {
        name: String,
        what: &'static str,
        module: &'static str,
    },
    #[error("opening the rtnetlink socket: {0}")]
    Connection(#[source] io::Error),
    #[error("reading {what} from the kernel: {source}")]
    Read {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{op}: {source}")]
    Kernel {
        op: String,
        #[source]
        source: io::Error,
    },
}

/// Maps the kernel's refusal to create a link to an error; a missing link-type module is
/// reported as such, since "operation not supported" alone does not say what to do.
fn creation_refused(name: &str, kind: &LinkKind, source: io::Error) -> ReconcileError {
    // The kernel answers EOPNOTSUPP ("Unknown device type") when no module provides a kind.
    const EOPNOTSUPP: i32 = 95;
    let missing = match kind {
        LinkKind::Vrf { .. } => Some(("VRF", "vrf")),
        LinkKind::Dummy => Some(("dummy interface", "dummy")),
        LinkKind::Bridge => Some(("bridge", "bridge")),
        LinkKind::Vxlan(_) => Some(("VXLAN", "vxlan")),
        LinkKind::Other(_) => None,
    };
    match missing {
        Some((what, module)) if source.raw_os_error() == Some(EOPNOTSUPP) => {
            ReconcileError::UnsupportedLinkKind {
                name: name.to_string(),
                what,
                module,
            }
        }
        _ => ReconcileError::Kernel {
            op: Op::CreateLink {
                name: name.to_string(),
                kind: kind.clone(),
            }
            .to_string(),
            source,
        },
    }
}

/// The future returned by `Kernel` methods.
pub type KernelFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ReconcileError>> + Send + 'a>>;

/// The kernel as the reconciler sees it: a state to read and operations to execute.
pub trait Kernel: Send + Sync {
    /// Reads links, addresses, routes and VXLAN flood entries.
    fn read_state(&self) -> KernelFuture<'_, KernelState>;
    /// Executes one operation; the error names the operation.
    fn execute<'a>(&'a self, op: &'a Op) -> KernelFuture<'a, ()>;
}

/// What an apply changed: one human-readable line per operation, in execution order.
/// Empty when the kernel already matched the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApplyReport {
    pub changes: Vec<String>,
}

/// One kernel interface: an API answer (`ztos_model::api::network`).
pub use ztos_model::api::network::InterfaceStatus;

/// What a DHCP lease asks of the kernel (see `crate::dhcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpAddressing {
    pub address: std::net::Ipv4Addr,
    pub prefix_len: u8,
    pub router: Option<std::net::Ipv4Addr>,
}

/// The desired state of `config` with the DHCP leases in force: each lease's address on its
/// interface, and its router as the default route of the main table unless the
/// configuration has a static 0.0.0.0/0 there (the first lease, by interface name, wins when
/// several have a router). An interface with a lease that the configuration does not list
/// (the one `system.management_dhcp = "auto"` picked) is also set up.
pub fn desired_with_leases(
    config: &Config,
    leases: &std::collections::BTreeMap<String, DhcpAddressing>,
) -> Result<DesiredState, ReconcileError> {
    let mut state = DesiredState::from_config(config)?;
    let default = ipnet::IpNet::V4(ipnet::Ipv4Net::default());
    let mut has_default = state
        .routes
        .iter()
        .any(|route| route.table == MAIN_TABLE && route.destination == default);
    for (interface, lease) in leases {
        if state.link(interface).is_none() {
            state.links.push(DesiredLink {
                name: interface.clone(),
                create: None,
                up: Some(true),
                mtu: None,
                master: None,
            });
        }
        let Ok(net) = ipnet::Ipv4Net::new(lease.address, lease.prefix_len) else {
            continue;
        };
        state
            .addresses
            .insert((interface.clone(), ipnet::IpNet::V4(net)));
        if let (Some(router), false) = (lease.router, has_default) {
            state.routes.insert(Route {
                destination: default,
                gateway: Some(std::net::IpAddr::V4(router)),
                device: Some(interface.clone()),
                table: MAIN_TABLE,
                metric: 0,
            });
            has_default = true;
        }
    }
    Ok(state)
}

/// Applies configurations to the kernel, one at a time.
pub struct Reconciler {
    kernel: Box<dyn Kernel>,
    /// The DHCP leases in force, by interface; part of every desired state.
    leases: std::collections::BTreeMap<String, DhcpAddressing>,
    /// Interfaces a DHCP client runs on; set up even when the configuration does not list
    /// them (`system.management_dhcp = "auto"`), so the client can talk before its lease.
    dhcp_links: std::collections::BTreeSet<String>,
}

/// Adds an up link for each DHCP interface the desired state does not have yet.
fn with_dhcp_links(
    mut state: DesiredState,
    links: &std::collections::BTreeSet<String>,
) -> DesiredState {
    for name in links {
        if state.link(name).is_none() {
            state.links.push(DesiredLink {
                name: name.clone(),
                create: None,
                up: Some(true),
                mtu: None,
                master: None,
            });
        }
    }
    state
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler").finish_non_exhaustive()
    }
}

impl Reconciler {
    pub fn new(kernel: Box<dyn Kernel>) -> Reconciler {
        Reconciler {
            kernel,
            leases: std::collections::BTreeMap::new(),
            dhcp_links: std::collections::BTreeSet::new(),
        }
    }

    /// Moves the kernel from `previous` to `next`:
    /// 1. computes the desired state of both configurations (fails before touching anything
    ///    if `next` cannot be applied, e.g. it names a missing interface);
    /// 2. reads the kernel and plans the operations;
    /// 3. executes them in order. If one fails, re-reads the kernel, plans back to
    ///    `previous` and executes that best effort (failures are logged), then returns the
    ///    original error: the kernel is left at the previous revision.
    pub async fn apply(
        &mut self,
        previous: &Config,
        next: &Config,
    ) -> Result<ApplyReport, ReconcileError> {
        let desired = with_dhcp_links(desired_with_leases(next, &self.leases)?, &self.dhcp_links);
        let before = desired_with_leases(previous, &self.leases)
            .map(|state| with_dhcp_links(state, &self.dhcp_links))
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "the previous configuration cannot be applied; not using it");
                DesiredState::default()
            });
        self.execute_plan(&before, &desired).await
    }

    /// Installs (`Some`) or removes (`None`) the DHCP lease of `interface` on top of the
    /// running `config`. On a kernel failure the kernel is brought back and the lease is not
    /// recorded.
    pub async fn set_lease(
        &mut self,
        config: &Config,
        interface: &str,
        lease: Option<DhcpAddressing>,
    ) -> Result<ApplyReport, ReconcileError> {
        let before = with_dhcp_links(desired_with_leases(config, &self.leases)?, &self.dhcp_links);
        let mut leases = self.leases.clone();
        match lease {
            Some(lease) => leases.insert(interface.to_string(), lease),
            None => leases.remove(interface),
        };
        let desired = with_dhcp_links(desired_with_leases(config, &leases)?, &self.dhcp_links);
        let report = self.execute_plan(&before, &desired).await?;
        self.leases = leases;
        Ok(report)
    }

    /// Marks `interface` as running a DHCP client (`active`) or not: an active interface is
    /// set up, even when the running `config` does not list it. Leaving it does not set it
    /// down.
    pub async fn set_dhcp_link(
        &mut self,
        config: &Config,
        interface: &str,
        active: bool,
    ) -> Result<ApplyReport, ReconcileError> {
        let mut links = self.dhcp_links.clone();
        if active {
            links.insert(interface.to_string());
        } else {
            links.remove(interface);
        }
        let state = desired_with_leases(config, &self.leases)?;
        let before = with_dhcp_links(state.clone(), &self.dhcp_links);
        let desired = with_dhcp_links(state, &links);
        let report = self.execute_plan(&before, &desired).await?;
        self.dhcp_links = links;
        Ok(report)
    }

    async fn execute_plan(
        &mut self,
        before: &DesiredState,
        desired: &DesiredState,
    ) -> Result<ApplyReport, ReconcileError> {
        let actual = self.kernel.read_state().await?;
        let ops = plan(desired, before, &actual)?;
        let mut report = ApplyReport::default();
        for op in &ops {
            if let Err(error) = self.kernel.execute(op).await {
                tracing::error!(%error, "applying the configuration failed; reverting");
                self.revert(before, desired).await;
                return Err(error);
            }
            tracing::info!(change = %op, "kernel changed");
            report.changes.push(op.to_string());
        }
        Ok(report)
    }

    /// Best-effort return to `target` after a failed apply of `failed`.
    async fn revert(&self, target: &DesiredState, failed: &DesiredState) {
        let actual = match self.kernel.read_state().await {
            Ok(actual) => actual,
            Err(error) => {
                tracing::error!(%error, "cannot read the kernel to revert");
                return;
            }
        };
        let ops = match plan(target, failed, &actual) {
            Ok(ops) => ops,
            Err(error) => {
                tracing::error!(%error, "cannot plan the revert");
                return;
            }
        };
        for op in &ops {
            match self.kernel.execute(op).await {
                Ok(()) => tracing::info!(change = %op, "reverted"),
                Err(error) => tracing::warn!(%error, "revert step failed; continuing"),
            }
        }
    }

    /// The kernel's interfaces with their addresses, sorted by index.
    pub async fn interfaces(&self) -> Result<Vec<InterfaceStatus>, ReconcileError> {
        let state = self.kernel.read_state().await?;
        let mut interfaces: Vec<InterfaceStatus> = state
            .links
            .iter()
            .map(|link| InterfaceStatus {
                name: link.name.clone(),
                index: link.index,
                kind: link.kind.name().to_string(),
                admin_up: link.up,
                oper_state: link.oper_state.clone(),
                mtu: link.mtu,
                mac: link.mac.clone(),
                addresses: state
                    .addresses
                    .iter()
                    .filter(|(name, _)| name == &link.name)
                    .map(|(_, address)| address.to_string())
                    .collect(),
                master: link.master.clone(),
                managed: link.managed(),
                dhcp: None,
            })
            .collect();
        interfaces.sort_by_key(|interface| interface.index);
        Ok(interfaces)
    }
}
