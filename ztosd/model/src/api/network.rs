//! Kernel interfaces as `GET /api/v1/interfaces` reports them, with their DHCP leases.

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
