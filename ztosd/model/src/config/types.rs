//! The configuration document: one TOML file whose sections map one-to-one onto these types.
//!
//! Every struct denies unknown keys, so a typo is an error rather than a silently ignored
//! setting. Value types that have a valid range (AS numbers, VNIs, MTUs) are newtypes that
//! refuse out-of-range values while deserializing, so the error carries the path of the key.

use std::net::IpAddr;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole configuration document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub system: System,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<StaticRoute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bridges: Vec<Bridge>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vxlan: Vec<Vxlan>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<Tenant>,
    /// Owned by the `ztos-bgp` plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<Bgp>,
    /// Owned by the `ztos-wireguard` plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<Wireguard>,
    /// Owned by the `ztos-macsec` plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macsec: Option<Macsec>,
    /// Owned by the `ztos-wireguard` plugin, which enforces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// Owned by the `ztos-gpu-offload` plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_offload: Option<GpuOffload>,
}

/// System-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct System {
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Address (with prefix length) the management API listens on, if not all addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_address: Option<IpNet>,
    /// `auto`: when no interface has `dhcp = true`, run DHCP on the first Ethernet interface
    /// the kernel has (lowest index), so a new box is reachable without the console. `off`
    /// (the default): DHCP only where `dhcp = true`.
    #[serde(default, skip_serializing_if = "ManagementDhcp::is_off")]
    pub management_dhcp: ManagementDhcp,
    /// TCP port of the HTTPS API and web UI.
    #[serde(default = "default_https_port")]
    pub https_port: u16,
    /// Operator accounts. Password hashes are kept in the state directory, never here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<User>,
    /// Pull-mode updates (`[system.update]`); without it, updates are pushed only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<super::update::UpdateConfig>,
}

impl Default for System {
    fn default() -> Self {
        System {
            hostname: default_hostname(),
            management_address: None,
            management_dhcp: ManagementDhcp::Off,
            https_port: default_https_port(),
            users: Vec::new(),
            update: None,
        }
    }
}

fn default_hostname() -> String {
    "ztos".to_string()
}

fn default_https_port() -> u16 {
    443
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub role: Role,
}

/// What a user or an API token may do. Ordered: each role includes the ones before it.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read configuration, status, logs and metrics.
    #[default]
    Read,
    /// Also operate: clear counters, restart sessions, confirm commits.
    Operate,
    /// Also change configuration and manage tokens.
    Admin,
}

/// A kernel interface ZTOS configures. Physical interfaces must exist; ZTOS never creates
/// or deletes them, it only sets their state, MTU and addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: String,
    #[serde(default)]
    pub kind: InterfaceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<Mtu>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpNet>,
    /// Obtain an IPv4 address, default route and DNS servers by DHCP (RFC 2131). The lease's
    /// address is installed next to any static `addresses`; its default route only when no
    /// static route has destination 0.0.0.0/0 in the main table. Not on loopback interfaces.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dhcp: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Whether ZTOS picks a management interface for DHCP by itself (`system.management_dhcp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ManagementDhcp {
    #[default]
    Off,
    Auto,
}

impl ManagementDhcp {
    fn is_off(&self) -> bool {
        *self == ManagementDhcp::Off
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceKind {
    /// An existing interface (NIC, veth end): configured, never created or removed.
    #[default]
    Physical,
    /// `lo`, or a dummy interface ZTOS creates to hold loopback addresses (router ID, VTEP).
    Loopback,
}

/// A static route in the main table, or in a tenant's VRF table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    pub destination: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Tenant whose VRF table the route goes into; the main table if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

/// A Linux bridge ZTOS creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bridge {
    pub name: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<Mtu>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpNet>,
    /// Existing interfaces enslaved to the bridge (host ports). VXLAN devices name their
    /// bridge themselves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

/// A VXLAN device ZTOS creates: one VNI, learning off, enslaved to a bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vxlan {
    pub vni: Vni,
    /// Device name; `vx<vni>` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The local VTEP address (source of encapsulated packets).
    pub local_vtep: IpAddr,
    #[serde(default = "default_vxlan_port")]
    pub port: u16,
    /// The bridge this VXLAN device is a port of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// Underlay interface the tunnel is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay_interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<Mtu>,
    /// Static flood list: BUM traffic is replicated to each of these VTEPs. With EVPN this
    /// list is usually empty and the flood list is learned from type 3 routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_vteps: Vec<IpAddr>,
}

impl Vxlan {
    /// The kernel device name of this VXLAN interface.
    pub fn device_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("vx{}", self.vni.get()))
    }
}

fn default_vxlan_port() -> u16 {
    4789
}

/// A tenant: one VRF with its own routing table, an L3 VNI for routed EVPN traffic, and the
/// L2 networks (VNIs from `[[vxlan]]`) that belong to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub name: String,
    /// Kernel routing table of the tenant's VRF device (`vrf-<name>`).
    pub vrf_table: RouteTable,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l3_vni: Option<Vni>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<TenantNetwork>,
}

impl Tenant {
    /// The kernel device name of this tenant's VRF.
    pub fn vrf_device_name(&self) -> String {
        format!("vrf-{}", self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantNetwork {
    /// The VNI of a `[[vxlan]]` entry with a bridge; that bridge joins the tenant's VRF.
    pub vni: Vni,
    /// Anycast gateway address (with prefix length) put on the network's bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpNet>,
}

/// BGP speaker settings (plugin `ztos-bgp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bgp {
    pub local_as: Asn,
    /// Defaults to the highest loopback IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_id: Option<std::net::Ipv4Addr>,
    /// TCP port the speaker listens on and connects to; 179 unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Prefixes this node originates to its neighbors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neighbors: Vec<BgpNeighbor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BgpNeighbor {
    pub address: IpAddr,
    pub remote_as: Asn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Address families to negotiate; IPv4 unicast if empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<AddressFamily>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prefixes: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub route_reflector_client: bool,
    /// TCP MD5 signature key (RFC 2385), 1 to 80 bytes, shared with the neighbor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AddressFamily {
    Ipv4Unicast,
    Ipv6Unicast,
    L2vpnEvpn,
}

/// WireGuard interfaces (plugin `ztos-wireguard`). Private keys are generated on the box and
/// kept in the state directory; only public keys appear in configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wireguard {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<WireguardInterface>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WireguardInterface {
    pub name: String,
    pub listen_port: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<Mtu>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<WireguardPeer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WireguardPeer {
    /// Base64 Curve25519 public key (44 characters).
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `host:port` of the peer, if it is reachable at a known address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_keepalive: Option<u16>,
    /// Mix a preshared key into this peer's handshakes (an extra symmetric layer). The key is
    /// generated on the box and kept in ztos-wireguard's state directory, never in this
    /// document; hand it to the peer with `ztos security wireguard preshared-key IFACE KEY`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preshared_key: bool,
}

/// MACsec on Ethernet links (plugin `ztos-macsec`). Connectivity association keys are
/// stored in the state directory and named here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Macsec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<MacsecInterface>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MacsecInterface {
    /// The Ethernet interface MACsec protects.
    pub parent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub cipher_suite: MacsecCipherSuite,
    /// Name of the CAK in the state directory's key store.
    pub cak: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MacsecCipherSuite {
    #[default]
    #[serde(rename = "gcm-aes-128")]
    GcmAes128,
    #[serde(rename = "gcm-aes-256")]
    GcmAes256,
    #[serde(rename = "gcm-aes-xpn-128")]
    GcmAesXpn128,
    #[serde(rename = "gcm-aes-xpn-256")]
    GcmAesXpn256,
}

/// Zero-trust policy for traffic from WireGuard peers: default deny, first matching rule wins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<PolicyGroup>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyGroup {
    pub name: String,
    /// Public keys of the group's members.
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    pub name: String,
    pub action: PolicyAction,
    /// Peer public keys or `group:<name>`; any peer if empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<PolicyProtocol>,
    /// Destination ports or ranges such as `443` or `8000-8100`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyProtocol {
    Tcp,
    Udp,
    Icmp,
}

/// GPU offload engine (plugin `ztos-gpu-offload`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuOffload {
    #[serde(default)]
    pub enabled: bool,
    /// CUDA device ordinal.
    #[serde(default)]
    pub device: u32,
    /// Packets per batch handed to the GPU.
    #[serde(default = "default_gpu_batch")]
    pub batch_size: u32,
}

fn default_gpu_batch() -> u32 {
    4096
}

fn default_true() -> bool {
    true
}

/// Defines a `u32` newtype whose deserialization refuses values outside a range, with a
/// message that names the value (the caller's error adds the path).
macro_rules! checked_u32 {
    ($(#[$doc:meta])* $name:ident, $min:literal..=$max:expr, $check:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(#[schemars(range(min = $min, max = $max))] u32);

        impl $name {
            pub fn new(value: u32) -> Result<Self, String> {
                let check: fn(u32) -> bool = $check;
                if check(value) {
                    Ok($name(value))
                } else {
                    Err(format!(concat!("{} is not a valid ", $what), value))
                }
            }

            pub fn get(self) -> u32 {
                self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = i64::deserialize(d)?;
                let value = u32::try_from(value)
                    .map_err(|_| serde::de::Error::custom(format!(concat!("{} is not a valid ", $what), value)))?;
                $name::new(value).map_err(serde::de::Error::custom)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

checked_u32!(
    /// A 4-byte AS number (RFC 6793). 0 (RFC 7607) and AS_TRANS 23456 are not valid here.
    Asn,
    1..=u32::MAX,
    |v| v != 0 && v != 23456,
    "AS number"
);
checked_u32!(
    /// A 24-bit VXLAN network identifier (RFC 7348), 1 to 16777215.
    Vni,
    1..=16777215,
    |v| (1..=0x00ff_ffff).contains(&v),
    "VNI (1 to 16777215)"
);
checked_u32!(
    /// An interface MTU in bytes, 68 (RFC 791) to 65535.
    Mtu,
    68..=65535,
    |v| (68..=65535).contains(&v),
    "MTU (68 to 65535)"
);
checked_u32!(
    /// A kernel routing table id usable for a VRF: not 0 (unspec), 253 (default), 254 (main)
    /// or 255 (local).
    RouteTable,
    1..=u32::MAX,
    |v| v != 0 && !(253..=255).contains(&v),
    "VRF table (not 0, 253, 254 or 255)"
);
