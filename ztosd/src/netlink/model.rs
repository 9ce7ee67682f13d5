//! The two states the reconciler compares: `DesiredState`, computed purely from a `Config`,
//! and `KernelState`, read from the kernel (or kept in memory by the recording kernel); and
//! `Op`, one change that moves the kernel from one towards the other.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::ReconcileError;
use crate::config::{Config, InterfaceKind};

/// The routing protocol ids (`ztos_plugin::kernel_ids`): ZTOS puts [`RTPROT_ZTOS`] (`proto 196`
/// in `ip route`) on the routes it installs, and only routes carrying it are ever removed by the
/// reconciler. The routes the ztos-bgp plugin installs carry [`RTPROT_ZTOS_BGP`] (`proto 197`):
/// they are the plugin's to add and remove, and the reconciler never touches them, whatever
/// their metric.
pub use ztos_plugin::kernel_ids::{RTPROT_ZTOS, RTPROT_ZTOS_BGP};

/// The interface alias (IFLA_IFALIAS) put on every link ZTOS creates. Only links carrying it
/// are ever deleted by the reconciler.
pub const MANAGED_ALIAS: &str = "ztos-managed";

/// The kernel's main routing table.
pub const MAIN_TABLE: u32 = 254;

/// A link type ZTOS knows how to create, or `Other` for anything else found in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    Dummy,
    Bridge,
    Vxlan(VxlanParams),
    Vrf {
        table: u32,
    },
    /// A link ZTOS does not create: its IFLA_INFO_KIND (`veth`, ...) or `device` when the
    /// kernel reports none (physical NICs, `lo`).
    Other(String),
}

impl LinkKind {
    /// The kind as `ip -d link` names it.
    pub fn name(&self) -> &str {
        match self {
            LinkKind::Dummy => "dummy",
            LinkKind::Bridge => "bridge",
            LinkKind::Vxlan(_) => "vxlan",
            LinkKind::Vrf { .. } => "vrf",
            LinkKind::Other(kind) => kind,
        }
    }
}

/// The attributes of a VXLAN device that can only be set when it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanParams {
    pub vni: u32,
    pub local: IpAddr,
    /// UDP destination port.
    pub port: u16,
    /// Name of the underlay link the tunnel is bound to.
    pub underlay: Option<String>,
    pub learning: bool,
}

/// One link as the configuration wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredLink {
    pub name: String,
    /// `None`: an existing interface (physical, veth end, `lo`) that ZTOS configures but
    /// never creates or deletes. `Some`: a link ZTOS creates and marks as managed.
    pub create: Option<LinkKind>,
    /// Administrative state; `None` leaves it as it is (a bridge port not otherwise listed).
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    /// The bridge or VRF this link is a port of.
    pub master: Option<String>,
}

/// A static route as the configuration wants it. `metric` is normalized to the kernel's
/// default (0 for IPv4, 1024 for IPv6) so that it compares equal to what the kernel reports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub destination: IpNet,
    pub gateway: Option<IpAddr>,
    pub device: Option<String>,
    pub table: u32,
    pub metric: u32,
}

impl Route {
    /// What identifies a route in the kernel: two routes with the same key cannot coexist.
    pub fn key(&self) -> (u32, IpNet, u32) {
        (self.table, self.destination, self.metric)
    }
}

/// A static flood-list entry: the all-zeros MAC on a VXLAN device pointing at a remote VTEP,
/// so that broadcast, unknown unicast and multicast frames are replicated to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FloodEntry {
    pub link: String,
    pub remote: IpAddr,
}

/// Everything the configuration asks of the kernel, computed without touching it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// In configuration order; `plan` sorts creations itself.
    pub links: Vec<DesiredLink>,
    pub addresses: BTreeSet<(String, IpNet)>,
    pub routes: BTreeSet<Route>,
    pub flood: BTreeSet<FloodEntry>,
}

impl DesiredState {
    /// Computes the desired kernel state of a configuration. Pure: reads nothing but `config`.
    pub fn from_config(config: &Config) -> Result<DesiredState, ReconcileError> {
        let mut links: BTreeMap<String, DesiredLink> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut state = DesiredState::default();

        let mut define = |link: DesiredLink,
                          links: &mut BTreeMap<String, DesiredLink>|
         -> Result<(), ReconcileError> {
            if links.contains_key(&link.name) {
                return Err(ReconcileError::DuplicateLink { name: link.name });
            }
            order.push(link.name.clone());
            links.insert(link.name.clone(), link);
            Ok(())
        };

        for interface in &config.interfaces {
            let create = match interface.kind {
                InterfaceKind::Physical => None,
                InterfaceKind::Loopback if interface.name == "lo" => None,
                InterfaceKind::Loopback => Some(LinkKind::Dummy),
            };
            define(
                DesiredLink {
                    name: interface.name.clone(),
                    create,
                    up: Some(interface.enabled),
                    mtu: interface.mtu.map(|mtu| mtu.get()),
                    master: None,
                },
                &mut links,
            )?;
            for address in &interface.addresses {
                state.addresses.insert((interface.name.clone(), *address));
            }
        }

        for bridge in &config.bridges {
            define(
                DesiredLink {
                    name: bridge.name.clone(),
                    create: Some(LinkKind::Bridge),
                    up: Some(bridge.enabled),
                    mtu: bridge.mtu.map(|mtu| mtu.get()),
                    master: None,
                },
                &mut links,
            )?;
            for address in &bridge.addresses {
                state.addresses.insert((bridge.name.clone(), *address));
            }
        }

        for vxlan in &config.vxlan {
            let name = vxlan.device_name();
            define(
                DesiredLink {
                    name: name.clone(),
                    create: Some(LinkKind::Vxlan(VxlanParams {
                        vni: vxlan.vni.get(),
                        local: vxlan.local_vtep,
                        port: vxlan.port,
                        underlay: vxlan.underlay_interface.clone(),
                        learning: false,
                    })),
                    up: Some(true),
                    mtu: vxlan.mtu.map(|mtu| mtu.get()),
                    master: vxlan.bridge.clone(),
                },
                &mut links,
            )?;
            if let Some(bridge) = &vxlan.bridge {
                if !config.bridges.iter().any(|b| &b.name == bridge) {
                    return Err(ReconcileError::UnknownBridge {
                        owner: format!("vxlan {name}"),
                        bridge: bridge.clone(),
                    });
                }
            }
            for remote in &vxlan.remote_vteps {
                state.flood.insert(FloodEntry {
                    link: name.clone(),
                    remote: *remote,
                });
            }
        }

        for tenant in &config.tenants {
            let vrf = tenant.vrf_device_name();
            define(
                DesiredLink {
                    name: vrf.clone(),
                    create: Some(LinkKind::Vrf {
                        table: tenant.vrf_table.get(),
                    }),
                    up: Some(true),
                    mtu: None,
                    master: None,
                },
                &mut links,
            )?;
            for network in &tenant.networks {
                let bridge = config
                    .vxlan
                    .iter()
                    .find(|vxlan| vxlan.vni == network.vni)
                    .and_then(|vxlan| vxlan.bridge.clone())
                    .ok_or_else(|| ReconcileError::TenantNetworkWithoutBridge {
                        tenant: tenant.name.clone(),
                        vni: network.vni.get(),
                    })?;
                let link = links
                    .get_mut(&bridge)
                    .expect("a vxlan's bridge was checked to be configured");
                link.master = Some(vrf.clone());
                if let Some(gateway) = network.gateway {
                    state.addresses.insert((bridge.clone(), gateway));
                }
            }
        }

        // Bridge ports are existing interfaces; the ones not listed under [[interfaces]] are
        // enslaved without touching anything else about them.
        for bridge in &config.bridges {
            for port in &bridge.ports {
                match links.get_mut(port) {
                    Some(link) => link.master = Some(bridge.name.clone()),
                    None => {
                        order.push(port.clone());
                        links.insert(
                            port.clone(),
                            DesiredLink {
                                name: port.clone(),
                                create: None,
                                up: None,
                                mtu: None,
                                master: Some(bridge.name.clone()),
                            },
                        );
                    }
                }
            }
        }

        for route in &config.routes {
            let table = match &route.tenant {
                None => MAIN_TABLE,
                Some(name) => config
                    .tenants
                    .iter()
                    .find(|tenant| &tenant.name == name)
                    .map(|tenant| tenant.vrf_table.get())
                    .ok_or_else(|| ReconcileError::UnknownTenant {
                        route: route.destination.to_string(),
                        tenant: name.clone(),
                    })?,
            };
            let default_metric = match route.destination {
                IpNet::V4(_) => 0,
                IpNet::V6(_) => 1024,
            };
            state.routes.insert(Route {
                destination: route.destination.trunc(),
                gateway: route.gateway,
                device: route.interface.clone(),
                table,
                metric: route.metric.unwrap_or(default_metric),
            });
        }

        state.links = order
            .into_iter()
            .map(|name| {
                links
                    .remove(&name)
                    .expect("every ordered name was inserted")
            })
            .collect();
        Ok(state)
    }

    pub fn link(&self, name: &str) -> Option<&DesiredLink> {
        self.links.iter().find(|link| link.name == name)
    }
}

/// One link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelLink {
    pub index: u32,
    pub name: String,
    pub kind: LinkKind,
    pub alias: Option<String>,
    pub mtu: u32,
    pub up: bool,
    /// RFC 2863 operational state as `ip link` prints it (`up`, `down`, `unknown`, ...).
    pub oper_state: String,
    pub mac: Option<String>,
    pub master: Option<String>,
}

impl KernelLink {
    /// Whether ZTOS created this link (it carries the `ztos-managed` alias).
    pub fn managed(&self) -> bool {
        self.alias.as_deref() == Some(MANAGED_ALIAS)
    }
}

/// A route as the kernel reports it, with the protocol that installed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub route: Route,
    pub protocol: u8,
}

/// What the reconciler reads from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelState {
    pub links: Vec<KernelLink>,
    /// (link name, address with prefix length).
    pub addresses: Vec<(String, IpNet)>,
    pub routes: Vec<KernelRoute>,
    /// All-zeros-MAC FDB entries on VXLAN devices.
    pub flood: Vec<FloodEntry>,
}

impl KernelState {
    pub fn link(&self, name: &str) -> Option<&KernelLink> {
        self.links.iter().find(|link| link.name == name)
    }
}

/// A change to one attribute of an existing link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    Mtu(u32),
    Up,
    Down,
    /// Enslave to this bridge or VRF, or release (`None`).
    Master(Option<String>),
}

/// One kernel change. `plan` produces them in an order the kernel accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create a link and mark it with the `ztos-managed` alias.
    CreateLink {
        name: String,
        kind: LinkKind,
    },
    SetLink {
        name: String,
        change: LinkChange,
    },
    DeleteLink {
        name: String,
    },
    AddAddress {
        link: String,
        address: IpNet,
    },
    DelAddress {
        link: String,
        address: IpNet,
    },
    AddRoute(Route),
    DelRoute(Route),
    AddFlood(FloodEntry),
    DelFlood(FloodEntry),
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.destination)?;
        if let Some(gateway) = self.gateway {
            write!(f, " via {gateway}")?;
        }
        if let Some(device) = &self.device {
            write!(f, " dev {device}")?;
        }
        if self.table != MAIN_TABLE {
            write!(f, " table {}", self.table)?;
        }
        if self.metric != 0 {
            write!(f, " metric {}", self.metric)?;
        }
        Ok(())
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::CreateLink { name, kind } => match kind {
                LinkKind::Vxlan(params) => {
                    write!(
                        f,
                        "create vxlan {name} vni {} local {} dstport {}",
                        params.vni, params.local, params.port
                    )?;
                    if let Some(underlay) = &params.underlay {
                        write!(f, " dev {underlay}")?;
                    }
                    Ok(())
                }
                LinkKind::Vrf { table } => write!(f, "create vrf {name} table {table}"),
                other => write!(f, "create {} {name}", other.name()),
            },
            Op::SetLink { name, change } => match change {
                LinkChange::Mtu(mtu) => write!(f, "set {name} mtu {mtu}"),
                LinkChange::Up => write!(f, "set {name} up"),
                LinkChange::Down => write!(f, "set {name} down"),
                LinkChange::Master(Some(master)) => write!(f, "set {name} master {master}"),
                LinkChange::Master(None) => write!(f, "set {name} nomaster"),
            },
            Op::DeleteLink { name } => write!(f, "delete link {name}"),
            Op::AddAddress { link, address } => write!(f, "add address {address} dev {link}"),
            Op::DelAddress { link, address } => write!(f, "delete address {address} dev {link}"),
            Op::AddRoute(route) => write!(f, "add route {route}"),
            Op::DelRoute(route) => write!(f, "delete route {route}"),
            Op::AddFlood(entry) => write!(
                f,
                "add fdb 00:00:00:00:00:00 dst {} dev {}",
                entry.remote, entry.link
            ),
            Op::DelFlood(entry) => write!(
                f,
                "delete fdb 00:00:00:00:00:00 dst {} dev {}",
                entry.remote, entry.link
            ),
        }
    }
}
