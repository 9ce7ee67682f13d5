//! The `[bgp]` section as the plugin runs it, and the checks the plugin adds to ztosd's own
//! validation: what only the speaker knows (a password it cannot use, an iBGP neighbor that is
//! also a route reflector client of an eBGP AS, an originated network that is not a network
//! address).
//!
//! The sections are read as the model's types (`ztos_model::config::{Bgp, Vxlan, Tenant}`),
//! the same ones ztosd parses and documents, so there is one schema; [`BgpConfig`] is the
//! speaker's resolved view of them (defaults filled, the EVPN segments and tenants joined in).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde_json::Value;
use ztos_model::config as model;
use ztos_plugin::FieldError;

use crate::codec::Family;
use crate::evpn_kernel::L2Segment;

/// The well-known BGP port.
pub const DEFAULT_PORT: u16 = 179;
/// Hold time offered when a neighbor does not set one (RFC 4271 §10 suggests 90 s).
pub const DEFAULT_HOLD_TIME: u16 = 90;

/// The speaker's view of `[bgp]`: the model's section with AS numbers as plain numbers, plus
/// what the plugin joins in from other sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    pub local_as: u32,
    pub router_id: Option<Ipv4Addr>,
    pub port: Option<u16>,
    pub networks: Vec<IpNet>,
    pub neighbors: Vec<NeighborConfig>,
    /// The L2 segments EVPN advertises: filled by the plugin from the `[[vxlan]]` section
    /// (see [`segments`]) when a neighbor negotiates L2VPN EVPN; not part of `[bgp]`.
    pub segments: Vec<L2Segment>,
    /// The tenants with an L3 VNI, for EVPN type 5 (see [`tenants`]); not part of `[bgp]`.
    pub tenants: Vec<L3Tenant>,
}

impl From<model::Bgp> for BgpConfig {
    fn from(section: model::Bgp) -> Self {
        BgpConfig {
            local_as: section.local_as.get(),
            router_id: section.router_id,
            port: section.port,
            networks: section.networks,
            neighbors: section
                .neighbors
                .into_iter()
                .map(NeighborConfig::from)
                .collect(),
            segments: Vec::new(),
            tenants: Vec::new(),
        }
    }
}

/// A tenant's L3 VNI as EVPN type 5 routes use it (RFC 9136 symmetric IRB): its VRF device and
/// table, the VXLAN device and bridge of the L3 VNI, the local VTEP, and the prefixes it
/// originates (the networks of its gateways).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L3Tenant {
    pub name: String,
    pub vrf: String,
    pub table: u32,
    pub l3_vni: u32,
    pub l3_vxlan: String,
    pub l3_bridge: String,
    pub local_vtep: IpAddr,
    pub prefixes: Vec<IpNet>,
}

/// A neighbor's address families, as the configuration names them.
pub type FamilyName = model::AddressFamily;

/// The codec's AFI/SAFI pair of a configured family.
pub fn family(name: FamilyName) -> Family {
    match name {
        FamilyName::Ipv4Unicast => Family::IPV4_UNICAST,
        FamilyName::Ipv6Unicast => Family::IPV6_UNICAST,
        FamilyName::L2vpnEvpn => Family::L2VPN_EVPN,
    }
}

/// One `[[bgp.neighbors]]` entry as the speaker runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborConfig {
    pub address: IpAddr,
    pub remote_as: u32,
    pub description: Option<String>,
    pub families: Vec<FamilyName>,
    pub passive: bool,
    pub hold_time: Option<u16>,
    pub max_prefixes: Option<u32>,
    pub route_reflector_client: bool,
    pub password: Option<String>,
}

impl From<model::BgpNeighbor> for NeighborConfig {
    fn from(n: model::BgpNeighbor) -> Self {
        NeighborConfig {
            address: n.address,
            remote_as: n.remote_as.get(),
            description: n.description,
            families: n.families,
            passive: n.passive,
            hold_time: n.hold_time,
            max_prefixes: n.max_prefixes,
            route_reflector_client: n.route_reflector_client,
            password: n.password,
        }
    }
}

impl NeighborConfig {
    /// The families to negotiate: IPv4 unicast when none are listed.
    pub fn families(&self) -> Vec<Family> {
        if self.families.is_empty() {
            vec![Family::IPV4_UNICAST]
        } else {
            self.families.iter().map(|f| family(*f)).collect()
        }
    }

    pub fn hold_time(&self) -> u16 {
        self.hold_time.unwrap_or(DEFAULT_HOLD_TIME)
    }
}

impl BgpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }

    /// Whether some neighbor is configured for L2VPN EVPN (then the L2 segments are
    /// advertised and routes for them imported).
    pub fn evpn(&self) -> bool {
        self.neighbors
            .iter()
            .any(|n| n.families.contains(&FamilyName::L2vpnEvpn))
    }

    /// The neighbor with `address` (IPv4-mapped IPv6 addresses match their IPv4 form).
    pub fn neighbor(&self, address: IpAddr) -> Option<&NeighborConfig> {
        let address = canonical(address);
        self.neighbors.iter().find(|n| n.address == address)
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; any other address as it is.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Parses the `bgp` section (`null` when absent) into the plugin's view, or the errors with
/// their full paths.
pub fn parse(section: &Value) -> Result<Option<BgpConfig>, Vec<FieldError>> {
    if section.is_null() {
        return Ok(None);
    }
    let config: BgpConfig = read::<model::Bgp>(section)
        .map_err(|e| vec![error("bgp", format!("not a valid bgp section: {e}"))])?
        .into();
    let errors = validate(&config);
    if errors.is_empty() {
        Ok(Some(config))
    } else {
        Err(errors)
    }
}

/// A section or an entry of one as the model's type; the error keeps serde's path and reason.
fn read<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(value)
}

/// The L2 segments of ztosd's `[[vxlan]]` section (`null` when absent): the entries with a
/// bridge. ztosd validates the section itself; the check here is EVPN's own: two segments
/// whose VNIs share their low 16 bits would share a route distinguisher.
pub fn segments(section: &Value) -> Result<Vec<L2Segment>, Vec<FieldError>> {
    if section.is_null() {
        return Ok(Vec::new());
    }
    let entries: Vec<Value> = read(section)
        .map_err(|e| vec![error("vxlan", format!("not a list of VXLAN entries: {e}"))])?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut by_rd: std::collections::HashMap<u16, usize> = std::collections::HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry: model::Vxlan = match read(entry) {
            Ok(e) => e,
            Err(e) => {
                errors.push(error(
                    format!("vxlan[{i}]"),
                    format!("not a VXLAN entry: {e}"),
                ));
                continue;
            }
        };
        let Some(bridge) = entry.bridge.clone() else {
            continue;
        };
        let vni = entry.vni.get();
        let low = (vni & 0xffff) as u16;
        if let Some(first) = by_rd.insert(low, i) {
            errors.push(error(
                format!("vxlan[{i}].vni"),
                format!(
                    "VNI {vni} and vxlan[{first}]'s VNI share their low 16 bits ({low}), which EVPN's route distinguisher (router-id:{low}) is made of",
                ),
            ));
        }
        out.push(L2Segment {
            vni,
            vxlan: entry.device_name(),
            bridge,
            local_vtep: entry.local_vtep,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The tenants of ztosd's `[[tenants]]` section that have an L3 VNI, joined with the
/// `[[vxlan]]` entry of that VNI (which must have a bridge: the tenant's L3 interface). ztosd
/// validates both sections; the errors here are what type 5 needs on top.
pub fn tenants(tenants: &Value, vxlan: &Value) -> Result<Vec<L3Tenant>, Vec<FieldError>> {
    if tenants.is_null() {
        return Ok(Vec::new());
    }
    let segments = segments(vxlan)?;
    let entries: Vec<Value> =
        read(tenants).map_err(|e| vec![error("tenants", format!("not a list of tenants: {e}"))])?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let tenant: model::Tenant = match read(entry) {
            Ok(t) => t,
            Err(e) => {
                errors.push(error(format!("tenants[{i}]"), format!("not a tenant: {e}")));
                continue;
            }
        };
        let Some(l3_vni) = tenant.l3_vni.map(model::Vni::get) else {
            continue;
        };
        let Some(segment) = segments.iter().find(|s| s.vni == l3_vni) else {
            errors.push(error(
                format!("tenants[{i}].l3_vni"),
                format!("EVPN type 5 needs a [[vxlan]] entry with a bridge for L3 VNI {l3_vni}"),
            ));
            continue;
        };
        out.push(L3Tenant {
            vrf: tenant.vrf_device_name(),
            name: tenant.name,
            table: tenant.vrf_table.get(),
            l3_vni,
            l3_vxlan: segment.vxlan.clone(),
            l3_bridge: segment.bridge.clone(),
            local_vtep: segment.local_vtep,
            prefixes: tenant
                .networks
                .iter()
                .filter_map(|n| n.gateway.map(|g| g.trunc()))
                .collect(),
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn error(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

/// The speaker's own checks of a parsed section.
pub fn validate(config: &BgpConfig) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if config.local_as == 0 {
        errors.push(error("bgp.local_as", "0 is not a valid AS number"));
    }
    if config.port == Some(0) {
        errors.push(error("bgp.port", "0 is not a valid TCP port"));
    }
    if config.router_id.is_some_and(|id| id.is_unspecified()) {
        errors.push(error("bgp.router_id", "0.0.0.0 is not a valid router ID"));
    }
    let mut networks = HashSet::new();
    for (i, network) in config.networks.iter().enumerate() {
        let path = format!("bgp.networks[{i}]");
        if network.trunc() != *network {
            errors.push(error(
                &path,
                format!(
                    "{network} has host bits set; the network is {}",
                    network.trunc()
                ),
            ));
        } else if !networks.insert(*network) {
            errors.push(error(&path, format!("duplicate network {network}")));
        }
    }
    let mut addresses = HashSet::new();
    for (i, neighbor) in config.neighbors.iter().enumerate() {
        let path = format!("bgp.neighbors[{i}]");
        if !addresses.insert(canonical(neighbor.address)) {
            errors.push(error(
                format!("{path}.address"),
                format!("duplicate neighbor {}", neighbor.address),
            ));
        }
        if neighbor.address.is_unspecified() || neighbor.address.is_multicast() {
            errors.push(error(
                format!("{path}.address"),
                format!("{} is not a valid neighbor address", neighbor.address),
            ));
        }
        if neighbor.remote_as == 0 {
            errors.push(error(
                format!("{path}.remote_as"),
                "0 is not a valid AS number",
            ));
        }
        if let Some(hold_time) = neighbor.hold_time {
            if hold_time == 1 || hold_time == 2 {
                errors.push(error(
                    format!("{path}.hold_time"),
                    format!("{hold_time} is not a valid hold time (0 or at least 3 seconds)"),
                ));
            }
        }
        if neighbor.max_prefixes == Some(0) {
            errors.push(error(
                format!("{path}.max_prefixes"),
                "0 would refuse every route; leave max_prefixes out for no limit",
            ));
        }
        if neighbor.route_reflector_client && neighbor.remote_as != config.local_as {
            errors.push(error(
                format!("{path}.route_reflector_client"),
                format!(
                    "route reflector clients are iBGP neighbors; AS {} is not the local AS {}",
                    neighbor.remote_as, config.local_as
                ),
            ));
        }
        if let Some(password) = &neighbor.password {
            if password.is_empty() || password.len() > crate::md5::MAX_KEY_LEN {
                errors.push(error(
                    format!("{path}.password"),
                    format!(
                        "a TCP MD5 key must be 1 to {} bytes, not {}",
                        crate::md5::MAX_KEY_LEN,
                        password.len()
                    ),
                ));
            }
        }
        let mut seen = HashSet::new();
        for (j, family) in neighbor.families.iter().enumerate() {
            if !seen.insert(*family) {
                errors.push(error(
                    format!("{path}.families[{j}]"),
                    "duplicate address family",
                ));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_section_is_none() {
        assert_eq!(parse(&Value::Null).unwrap(), None);
    }

    #[test]
    fn a_full_section_parses() {
        let config = parse(&json!({
            "local_as": 65001,
            "router_id": "10.0.0.1",
            "port": 1179,
            "networks": ["192.0.2.0/24", "2001:db8::/48"],
            "neighbors": [{"address": "10.0.0.2", "remote_as": 65002, "families": ["ipv4-unicast", "ipv6-unicast"],
                           "hold_time": 30, "max_prefixes": 1000, "password": "s3cret"}]
        }))
        .unwrap()
        .unwrap();
        assert_eq!(config.port(), 1179);
        assert_eq!(
            config.neighbors[0].families(),
            vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
        );
        assert!(config
            .neighbor("::ffff:10.0.0.2".parse().unwrap())
            .is_some());
    }

    #[test]
    fn bad_values_are_named_by_path() {
        let errors = parse(&json!({
            "local_as": 65001,
            "networks": ["192.0.2.1/24"],
            "neighbors": [
                {"address": "10.0.0.2", "remote_as": 65002, "route_reflector_client": true, "max_prefixes": 0},
                {"address": "10.0.0.2", "remote_as": 65001, "password": "", "hold_time": 2}
            ]
        }))
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "bgp.networks[0]",
                "bgp.neighbors[0].max_prefixes",
                "bgp.neighbors[0].route_reflector_client",
                "bgp.neighbors[1].address",
                "bgp.neighbors[1].hold_time",
                "bgp.neighbors[1].password",
            ]
        );
        assert!(
            errors[0].message.contains("192.0.2.0/24"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let errors = parse(&json!({"local_as": 1, "bogus": 1})).unwrap_err();
        assert_eq!(errors[0].path, "bgp");
        assert!(errors[0].message.contains("bogus"), "{}", errors[0].message);
    }

    #[test]
    fn segments_and_tenants_come_from_ztosds_sections() {
        let vxlan = serde_json::json!([
            {"vni": 100, "local_vtep": "10.0.0.1", "bridge": "br100", "port": 4789},
            {"vni": 200, "name": "vx-b", "local_vtep": "10.0.0.1"},
            {"vni": 5000, "local_vtep": "10.0.0.1", "bridge": "br5000"},
        ]);
        let segments = segments(&vxlan).unwrap();
        assert_eq!(
            segments.len(),
            2,
            "VNI 200 has no bridge: not an L2 segment"
        );
        assert_eq!(segments[0].vxlan, "vx100");
        let tenants_section = serde_json::json!([
            {"name": "red", "vrf_table": 10, "l3_vni": 5000,
             "networks": [{"vni": 100, "gateway": "10.10.0.1/24"}]},
            {"name": "blue", "vrf_table": 11},
        ]);
        let tenants = tenants(&tenants_section, &vxlan).unwrap();
        assert_eq!(tenants.len(), 1, "blue has no L3 VNI");
        assert_eq!(tenants[0].vrf, "vrf-red");
        assert_eq!(tenants[0].l3_bridge, "br5000");
        assert_eq!(
            tenants[0].prefixes,
            vec!["10.10.0.0/24".parse::<IpNet>().unwrap()]
        );

        let missing = serde_json::json!([{"name": "red", "vrf_table": 10, "l3_vni": 6000}]);
        let errors = self::tenants(&missing, &vxlan).unwrap_err();
        assert_eq!(errors[0].path, "tenants[0].l3_vni");
        let clash = serde_json::json!([
            {"vni": 100, "local_vtep": "10.0.0.1", "bridge": "br100"},
            {"vni": 65636, "local_vtep": "10.0.0.1", "bridge": "br2"},
        ]);
        let errors = self::segments(&clash).unwrap_err();
        assert_eq!(errors[0].path, "vxlan[1].vni");
        assert!(
            errors[0].message.contains("low 16 bits"),
            "{}",
            errors[0].message
        );
    }
}
