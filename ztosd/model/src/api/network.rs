//! Kernel interfaces as `GET /api/v1/interfaces` reports them, with their DHCP leases, and
//! `POST /api/v1/network/configure`'s request.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One kernel interface, as `ztos interfaces` and `GET /api/v1/interfaces` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InterfaceStatus {
    pub name: String,
    pub index: u32,
    /// `bridge`, `vxlan`, `vrf`, `dummy`, `veth`, or `device` for hardware and `lo`.
    pub kind: String,
    pub admin_up: bool,
    /// RFC 2863 operational state: `up`, `down`, `unknown`, `lowerlayerdown`, ...
    pub oper_state: String,
    pub mtu: u32,
    pub mac: Option<String>,
    /// Addresses with prefix length.
    pub addresses: Vec<String>,
    /// The bridge or VRF this interface is a port of.
    pub master: Option<String>,
    /// Whether ZTOS created this interface.
    pub managed: bool,
    /// The DHCP lease in force on this interface (`dhcp = true`), if any.
    pub dhcp: Option<DhcpLeaseStatus>,
}

/// A lease as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DhcpLeaseStatus {
    /// Address with prefix length (`10.0.2.15/24`).
    pub address: String,
    pub router: Option<String>,
    pub dns: Vec<String>,
    /// The DHCP server that granted it.
    pub server: String,
    /// When the lease ends unless renewed (RFC 3339, UTC).
    pub expires: String,
}

/// The spec's `network configure`: the common changes without writing TOML.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfigureRequest {
    pub bgp: Option<BgpPeerRequest>,
    pub vxlan: Option<VxlanRequest>,
    pub wireguard: Option<WireguardPeerRequest>,
    pub comment: Option<String>,
}

/// Add a BGP neighbor, or change the AS of an existing one.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BgpPeerRequest {
    #[schema(value_type = String)]
    pub peer: IpAddr,
    pub remote_as: u32,
    /// Used only when `[bgp]` does not exist yet; defaults to `remote_as` (iBGP).
    pub local_as: Option<u32>,
    pub description: Option<String>,
}

/// Add or replace a VXLAN segment.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VxlanRequest {
    pub vni: u32,
    #[schema(value_type = String)]
    pub local_vtep: IpAddr,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub remote_vteps: Vec<IpAddr>,
    pub bridge: Option<String>,
    pub port: Option<u16>,
}

/// Add or replace a WireGuard peer on an existing WireGuard interface.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WireguardPeerRequest {
    pub interface: String,
    pub public_key: String,
    pub endpoint: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub allowed_ips: Vec<IpNet>,
}
