//! The BGP speaker's answers: what ztos-bgp reports as its status (the summary) and answers to
//! the `bgp summary`, `bgp neighbors` and `bgp routes` queries. ztos-bgp builds these types,
//! ztosd passes them through `/api/v1/bgp/*`, and the CLI and the web UI deserialize them, so a
//! renamed field is a compile error on both sides instead of a blank column.
//!
//! The JSON shapes are those the speaker has always sent: optional parts that only some answers
//! carry (a neighbor's `configured` block, a session that is down) are left out, not `null`.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The speaker's summary: `GET /api/v1/bgp/summary`, `ztos bgp summary`, and the status the
/// plugin reports to ztosd. Without a `[bgp]` section only `configured: false` and an empty
/// neighbor list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BgpSummary {
    pub configured: bool,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<BgpSpeaker>,
    /// Every configured neighbor, sorted by address, without the detail blocks.
    pub neighbors: Vec<BgpNeighbor>,
}

/// The running speaker's identity and counters, part of [`BgpSummary`] when BGP is configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BgpSpeaker {
    pub local_as: u32,
    #[schema(value_type = String)]
    pub router_id: Ipv4Addr,
    pub port: u16,
    pub neighbors_established: u64,
    pub routes: BgpRouteCounts,
    pub evpn: EvpnSummary,
    /// Neighbors that share an export policy share an update group.
    pub update_groups: u64,
    /// Distinct interned attribute sets in the Loc-RIB.
    pub attribute_sets: u64,
}

/// Loc-RIB sizes per address family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BgpRouteCounts {
    #[serde(rename = "ipv4-unicast")]
    pub ipv4_unicast: u64,
    #[serde(rename = "ipv6-unicast")]
    pub ipv6_unicast: u64,
    #[serde(rename = "l2vpn-evpn")]
    pub l2vpn_evpn: u64,
}

/// RFC 4271 §8.2.2 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BgpSessionState {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl BgpSessionState {
    /// The state as the API writes it: `open_sent`.
    pub fn as_str(self) -> &'static str {
        match self {
            BgpSessionState::Idle => "idle",
            BgpSessionState::Connect => "connect",
            BgpSessionState::Active => "active",
            BgpSessionState::OpenSent => "open_sent",
            BgpSessionState::OpenConfirm => "open_confirm",
            BgpSessionState::Established => "established",
        }
    }
}

impl std::fmt::Display for BgpSessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One neighbor. The summary carries the counters only; `bgp neighbors` adds `configured`,
/// `established_count` and, while the session is up, `session`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BgpNeighbor {
    #[schema(value_type = String)]
    pub address: IpAddr,
    pub remote_as: u32,
    pub description: Option<String>,
    pub state: BgpSessionState,
    /// Seconds since the session came up; `null` while it is down.
    pub uptime_seconds: Option<u64>,
    pub prefixes_received: u64,
    pub prefixes_accepted: u64,
    pub prefixes_advertised: u64,
    pub updates_received: u64,
    pub updates_sent: u64,
    /// Why the last session ended or failed, as the speaker logged it.
    pub last_error: Option<String>,
    /// Routes kept stale for a graceful restart (RFC 4724) of this neighbor.
    pub stale_routes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured: Option<BgpNeighborConfigured>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<BgpNeighborSession>,
}

/// A neighbor's configuration as the speaker applies it (defaults filled in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BgpNeighborConfigured {
    /// Address families, as `ipv4-unicast`, `ipv6-unicast`, `l2vpn-evpn`.
    pub families: Vec<String>,
    pub passive: bool,
    pub hold_time: u16,
    pub max_prefixes: Option<u32>,
    pub route_reflector_client: bool,
    /// Whether TCP MD5 (RFC 2385) protects the session; the password is never shown.
    pub md5: bool,
}

/// What an established session negotiated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BgpNeighborSession {
    #[schema(value_type = String)]
    pub local_address: IpAddr,
    #[schema(value_type = String)]
    pub remote_router_id: Ipv4Addr,
    pub hold_time: u16,
    pub families: Vec<String>,
    pub four_octet_as: bool,
    pub extended_message: bool,
    pub route_refresh: bool,
    /// The peer's graceful restart capability (RFC 4724), if it sent one.
    pub peer_graceful_restart: Option<BgpPeerGracefulRestart>,
    pub ebgp: bool,
    pub update_group: u64,
}

/// A peer's graceful restart capability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BgpPeerGracefulRestart {
    pub restart_time: u16,
    /// The R bit: the peer has restarted.
    pub restarted: bool,
    /// Families whose forwarding state the peer kept across its restart.
    pub forwarding_preserved: Vec<String>,
}

/// `bgp neighbors [ADDR]`: every neighbor, or the one asked for, with the detail blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BgpNeighbors {
    pub neighbors: Vec<BgpNeighbor>,
}

/// The EVPN part of the summary: local segments, tenants, and what is installed in the kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvpnSummary {
    pub segments: Vec<EvpnSegment>,
    pub local_macs: u64,
    pub remote_macs: u64,
    pub flood_entries: u64,
    pub tenant_prefixes: u64,
    pub tenants: Vec<EvpnTenant>,
    /// Whether the speaker programs the kernel (false under `--no-kernel`).
    pub kernel: bool,
}

/// A local L2 segment: a VXLAN device in a bridge, advertised while a neighbor has EVPN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvpnSegment {
    pub vni: u32,
    pub vxlan: String,
    pub bridge: String,
    #[schema(value_type = String)]
    pub local_vtep: IpAddr,
    pub local_macs: u64,
}

/// A tenant with an L3 VNI: its VRF and the networks it originates as type 5 routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvpnTenant {
    pub name: String,
    pub l3_vni: u32,
    pub vrf: String,
    pub table: u32,
    #[schema(value_type = Vec<String>)]
    pub prefixes: Vec<IpNet>,
}

/// `bgp routes`: unicast routes, sorted by prefix, at most the speaker's limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BgpRoutes {
    pub routes: Vec<BgpRoute>,
    /// More routes matched than the answer holds.
    pub truncated: bool,
}

/// One unicast prefix and its candidate paths, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BgpRoute {
    #[schema(value_type = String)]
    pub prefix: IpNet,
    pub family: String,
    pub paths: Vec<BgpPath>,
}

/// One candidate path and its attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BgpPath {
    pub best: bool,
    /// The neighbor's address, or `local` for an originated route.
    pub from: String,
    #[schema(value_type = Option<String>)]
    pub next_hop: Option<IpAddr>,
    pub as_path: Option<Vec<AsPathSegment>>,
    pub origin: Option<BgpOrigin>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    /// RFC 1997 communities as `65000:100` or their well-known names.
    pub communities: Vec<String>,
    /// RFC 4360 extended communities as text, such as `rt:65000:100`.
    pub extended_communities: Vec<String>,
    #[schema(value_type = Option<String>)]
    pub originator_id: Option<Ipv4Addr>,
    #[schema(value_type = Vec<String>)]
    pub cluster_list: Vec<Ipv4Addr>,
    /// EVPN paths: the VNI the path's label or route target names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// EVPN type 3 paths: the PMSI tunnel attribute (RFC 6514 §5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pmsi_tunnel: Option<PmsiTunnel>,
}

/// ORIGIN (RFC 4271 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BgpOrigin {
    Igp,
    Egp,
    Incomplete,
}

impl std::fmt::Display for BgpOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BgpOrigin::Igp => "igp",
            BgpOrigin::Egp => "egp",
            BgpOrigin::Incomplete => "incomplete",
        })
    }
}

/// One AS_PATH segment (RFC 4271 §4.3, RFC 5065).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AsPathSegment {
    pub kind: AsSegmentKind,
    pub asns: Vec<u32>,
}

/// AS_PATH segment types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AsSegmentKind {
    Set,
    Sequence,
    ConfedSequence,
    ConfedSet,
}

/// The PMSI tunnel attribute of an EVPN type 3 route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PmsiTunnel {
    /// Bit 0 is Leaf Information Required.
    pub flags: u8,
    /// The raw 24-bit label field: the VNI under VXLAN.
    pub label: u32,
    pub tunnel: PmsiTunnelId,
}

/// The tunnel of a PMSI tunnel attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "tunnel_type", rename_all = "snake_case")]
pub enum PmsiTunnelId {
    /// Type 6: ingress replication to the originating VTEP.
    IngressReplication {
        #[schema(value_type = String)]
        endpoint: IpAddr,
    },
    /// Any other type, its identifier in hex.
    Other { code: u8, identifier: String },
}

/// `bgp routes --family evpn`: EVPN routes, sorted by key, at most the speaker's limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvpnRoutes {
    pub routes: Vec<EvpnRouteEntry>,
    pub truncated: bool,
}

/// One EVPN route (its key fields as the best path carries them) and its candidate paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvpnRouteEntry {
    /// Always `l2vpn-evpn`.
    pub family: String,
    /// RFC 7432 route type: 1 to 5.
    pub route_type: u8,
    /// The route distinguisher as text, such as `192.0.2.1:100`.
    pub rd: Option<String>,
    pub route: EvpnRouteKey,
    pub paths: Vec<BgpPath>,
}

/// An EVPN NLRI's fields (RFC 7432 §7, RFC 9136 for type 5), tagged by `route_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "route_type", rename_all = "snake_case")]
pub enum EvpnRouteKey {
    EthernetAutoDiscovery {
        rd: RouteDistinguisher,
        esi: String,
        ethernet_tag: u32,
        label: u32,
    },
    MacIp {
        rd: RouteDistinguisher,
        esi: String,
        ethernet_tag: u32,
        mac: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        ip: Option<IpAddr>,
        label1: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label2: Option<u32>,
    },
    InclusiveMulticast {
        rd: RouteDistinguisher,
        ethernet_tag: u32,
        #[schema(value_type = String)]
        originator: IpAddr,
    },
    EthernetSegment {
        rd: RouteDistinguisher,
        esi: String,
        #[schema(value_type = String)]
        originator: IpAddr,
    },
    IpPrefix {
        rd: RouteDistinguisher,
        esi: String,
        ethernet_tag: u32,
        #[schema(value_type = String)]
        prefix: IpNet,
        #[schema(value_type = String)]
        gateway: IpAddr,
        label: u32,
    },
    /// A route type the codec does not parse, its value in hex.
    Unknown { code: u8, value: String },
}

/// A route distinguisher (RFC 4364 §4.2): its type and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteDistinguisher {
    #[serde(rename = "type")]
    pub rd_type: u16,
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfigured_summary_is_two_keys() {
        let summary = BgpSummary {
            configured: false,
            speaker: None,
            neighbors: Vec::new(),
        };
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"configured": false, "neighbors": []})
        );
        assert_eq!(serde_json::from_value::<BgpSummary>(json).unwrap(), summary);
    }

    #[test]
    fn configured_summary_flattens_the_speaker() {
        let json = serde_json::json!({
            "configured": true, "local_as": 65001, "router_id": "192.0.2.1", "port": 179,
            "neighbors_established": 1,
            "routes": {"ipv4-unicast": 3, "ipv6-unicast": 0, "l2vpn-evpn": 2},
            "evpn": {"segments": [], "local_macs": 0, "remote_macs": 0, "flood_entries": 0,
                     "tenant_prefixes": 0, "tenants": [], "kernel": true},
            "update_groups": 1, "attribute_sets": 2,
            "neighbors": [{"address": "192.0.2.2", "remote_as": 65002, "description": null,
                "state": "open_sent", "uptime_seconds": null, "prefixes_received": 0,
                "prefixes_accepted": 0, "prefixes_advertised": 0, "updates_received": 0,
                "updates_sent": 0, "last_error": null, "stale_routes": 0}]
        });
        let summary: BgpSummary = serde_json::from_value(json.clone()).unwrap();
        let speaker = summary.speaker.as_ref().unwrap();
        assert_eq!(speaker.routes.ipv4_unicast, 3);
        assert_eq!(summary.neighbors[0].state, BgpSessionState::OpenSent);
        assert!(summary.neighbors[0].configured.is_none());
        assert_eq!(serde_json::to_value(&summary).unwrap(), json);
    }

    #[test]
    fn evpn_route_keys_are_tagged_by_route_type() {
        let json = serde_json::json!({
            "route_type": "mac_ip", "rd": {"type": 1, "value": "192.0.2.1:100"},
            "esi": "00:00:00:00:00:00:00:00:00:00", "ethernet_tag": 0,
            "mac": "02:00:00:00:00:01", "label1": 100
        });
        let key: EvpnRouteKey = serde_json::from_value(json.clone()).unwrap();
        assert!(matches!(key, EvpnRouteKey::MacIp { ip: None, .. }));
        assert_eq!(serde_json::to_value(&key).unwrap(), json);
    }
}
