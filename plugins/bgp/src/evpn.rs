//! EVPN in the speaker (RFC 7432 in the VXLAN flavour of RFC 8365): the routes this node
//! originates for its L2 segments, what a received route means for the kernel, and the
//! kernel state derived from the EVPN Loc-RIB. Pure: the speaker feeds it route changes and
//! sends the [`EvpnOp`]s it returns to the kernel task of [`crate::evpn_kernel`].
//!
//! - Every L2 segment (a `[[vxlan]]` entry with a bridge) is advertised with a type 3
//!   (inclusive multicast Ethernet tag) route: PMSI tunnel type 6 (ingress replication) to the
//!   local VTEP, the VNI as its label (RFC 8365 §5.1.3), and a type 2 (MAC/IP advertisement)
//!   route for every MAC the segment's bridge learns on a local port.
//! - Route distinguisher: type 1, `router-id:N` with N the low 16 bits of the VNI (RFC 7432
//!   §7.9 auto-derivation uses the router id and a per-EVI number). Route target: `AS:VNI`
//!   (type 0; type 2 with the VNI's low 16 bits when the AS needs four octets), the encapsulation
//!   community says VXLAN (RFC 9012, tunnel type 8).
//! - Import: a type 2 or 3 route is for a local segment when its VNI (type 2: label 1; type 3:
//!   the PMSI label, or the Ethernet tag when the route has no PMSI attribute) is one of this
//!   node's L2 VNIs and it carries a route target whose assigned number is that VNI, from any
//!   AS (what FRR's `route-target import *:VNI` does: in an eBGP fabric every leaf has its own
//!   AS). Type 2 routes become FDB entries towards the advertising VTEP (the route's next hop),
//!   type 3 routes flood-list entries towards the PMSI tunnel endpoint.
//! - MAC mobility (RFC 7432 §15): a MAC learned locally while a remote VTEP advertises it is
//!   advertised with that route's sequence number plus one; a remote route with a higher
//!   sequence number than ours wins the MAC back.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::L3Tenant;
use crate::evpn_kernel::{EvpnOp, L2Segment};
use crate::rib::Path;
use ztos_bgp_codec::ext_community::TUNNEL_TYPE_VXLAN;
use ztos_bgp_codec::{
    AsPath, EthernetSegmentId, EvpnRoute, ExtendedCommunity, InclusiveMulticast, IpPrefix,
    IpPrefixRoute, Label, MacAddress, MacIpAdvertisement, NextHop, Origin, PathAttributes,
    PmsiTunnel, PmsiTunnelId, RouteDistinguisher, Vni,
};

use ipnet::IpNet;

/// The key of an EVPN route: the NLRI with the fields that are not part of the route's
/// identity zeroed (RFC 7432 §7.1-7.4, RFC 9136 §3.1), so that a re-advertisement with new
/// labels replaces the old route instead of standing beside it.
pub fn route_key(route: &EvpnRoute) -> EvpnRoute {
    let zero = Label::from_vni(Vni::new(0).expect("0 fits 24 bits"));
    match route {
        EvpnRoute::EthernetAutoDiscovery(r) => {
            let mut r = r.clone();
            r.label = zero;
            EvpnRoute::EthernetAutoDiscovery(r)
        }
        EvpnRoute::MacIp(r) => EvpnRoute::MacIp(MacIpAdvertisement {
            esi: EthernetSegmentId::default(),
            label1: zero,
            label2: None,
            ..r.clone()
        }),
        EvpnRoute::IpPrefix(r) => EvpnRoute::IpPrefix(IpPrefixRoute {
            esi: EthernetSegmentId::default(),
            gateway: match r.gateway {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            },
            label: zero,
            ..r.clone()
        }),
        other => other.clone(),
    }
}

/// The route distinguisher of a segment's routes.
pub fn segment_rd(router_id: Ipv4Addr, vni: u32) -> RouteDistinguisher {
    RouteDistinguisher::Ipv4 {
        addr: router_id,
        assigned: (vni & 0xffff) as u16,
    }
}

/// The route target of a segment's routes: `AS:VNI`.
pub fn route_target(local_as: u32, vni: u32) -> ExtendedCommunity {
    match u16::try_from(local_as) {
        Ok(asn) => ExtendedCommunity::RouteTargetAs2 { asn, assigned: vni },
        Err(_) => ExtendedCommunity::RouteTargetAs4 {
            asn: local_as,
            assigned: (vni & 0xffff) as u16,
        },
    }
}

/// Whether `attributes` carry a route target for `vni` (any AS, any route target type).
pub fn has_target(attributes: &PathAttributes, vni: u32) -> bool {
    attributes.extended_communities.iter().any(|c| match *c {
        ExtendedCommunity::RouteTargetAs2 { assigned, .. } => assigned == vni,
        ExtendedCommunity::RouteTargetIpv4 { assigned, .. }
        | ExtendedCommunity::RouteTargetAs4 { assigned, .. } => u32::from(assigned) == vni,
        _ => false,
    })
}

fn next_hop_of(vtep: IpAddr) -> NextHop {
    match vtep {
        IpAddr::V4(a) => NextHop::Ipv4(a),
        IpAddr::V6(global) => NextHop::Ipv6 {
            global,
            link_local: None,
        },
    }
}

fn label_of(vni: u32) -> Label {
    Label::from_vni(Vni::new(vni & Vni::MAX).expect("masked to 24 bits"))
}

fn base_attributes(local_as: u32, vni: u32) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(Vec::new())),
        extended_communities: vec![
            route_target(local_as, vni),
            ExtendedCommunity::Encapsulation {
                tunnel_type: TUNNEL_TYPE_VXLAN,
            },
        ],
        ..PathAttributes::default()
    }
}

/// The type 3 route advertising `segment` (its key is the route itself).
pub fn inclusive_multicast(segment: &L2Segment, router_id: Ipv4Addr, local_as: u32) -> Path {
    let route = EvpnRoute::InclusiveMulticast(InclusiveMulticast {
        rd: segment_rd(router_id, segment.vni),
        ethernet_tag: 0,
        originator: segment.local_vtep,
    });
    let mut attributes = base_attributes(local_as, segment.vni);
    attributes.pmsi_tunnel = Some(PmsiTunnel {
        flags: 0,
        label: label_of(segment.vni),
        tunnel: PmsiTunnelId::IngressReplication {
            endpoint: segment.local_vtep,
        },
    });
    Path {
        attributes,
        next_hop: next_hop_of(segment.local_vtep),
        evpn: Some(route),
    }
}

/// The type 2 route advertising a MAC learned on a local port of `segment`, with a MAC
/// mobility sequence number when the MAC was advertised by another VTEP before.
pub fn mac_advertisement(
    segment: &L2Segment,
    mac: [u8; 6],
    sequence: Option<u32>,
    router_id: Ipv4Addr,
    local_as: u32,
) -> Path {
    let route = EvpnRoute::MacIp(MacIpAdvertisement {
        rd: segment_rd(router_id, segment.vni),
        esi: EthernetSegmentId::default(),
        ethernet_tag: 0,
        mac: MacAddress(mac),
        ip: None,
        label1: label_of(segment.vni),
        label2: None,
    });
    let mut attributes = base_attributes(local_as, segment.vni);
    if let Some(sequence) = sequence {
        attributes
            .extended_communities
            .push(ExtendedCommunity::MacMobility {
                sticky: false,
                sequence,
            });
    }
    Path {
        attributes,
        next_hop: next_hop_of(segment.local_vtep),
        evpn: Some(route),
    }
}

/// The type 5 route (RFC 9136 §3.1, interface-less symmetric IRB) advertising `prefix` of
/// `tenant`: the L3 VNI as label, the router's MAC (of the L3 VNI's bridge) in the Router's MAC
/// community, the gateway IP zero, next hop the local VTEP.
pub fn ip_prefix_route(
    tenant: &L3Tenant,
    prefix: IpNet,
    router_mac: [u8; 6],
    router_id: Ipv4Addr,
    local_as: u32,
) -> Option<Path> {
    let (prefix, gateway) = match prefix.trunc() {
        IpNet::V4(n) => (
            IpPrefix::V4(ztos_bgp_codec::Ipv4Prefix::new(n.addr(), n.prefix_len())?),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ),
        IpNet::V6(n) => (
            IpPrefix::V6(ztos_bgp_codec::Ipv6Prefix::new(n.addr(), n.prefix_len())?),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ),
    };
    let route = EvpnRoute::IpPrefix(IpPrefixRoute {
        rd: segment_rd(router_id, tenant.l3_vni),
        esi: EthernetSegmentId::default(),
        ethernet_tag: 0,
        prefix,
        gateway,
        label: label_of(tenant.l3_vni),
    });
    let mut attributes = base_attributes(local_as, tenant.l3_vni);
    attributes
        .extended_communities
        .push(ExtendedCommunity::RouterMac {
            mac: MacAddress(router_mac),
        });
    Some(Path {
        attributes,
        next_hop: next_hop_of(tenant.local_vtep),
        evpn: Some(route),
    })
}

/// What a received EVPN route asks of the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// A MAC of segment `vni` behind `vtep`, with its MAC mobility sequence number.
    Mac {
        vni: u32,
        mac: [u8; 6],
        vtep: IpAddr,
        sequence: u32,
    },
    /// `vtep` wants the BUM traffic of segment `vni`.
    Flood { vni: u32, vtep: IpAddr },
    /// A tenant prefix behind `vtep`, whose router MAC is `router_mac`, for the tenant with L3
    /// VNI `l3_vni`.
    Prefix {
        l3_vni: u32,
        prefix: IpNet,
        vtep: IpAddr,
        router_mac: [u8; 6],
    },
}

impl Imported {
    pub fn vni(&self) -> u32 {
        match self {
            Imported::Mac { vni, .. } | Imported::Flood { vni, .. } => *vni,
            Imported::Prefix { l3_vni, .. } => *l3_vni,
        }
    }
}

fn sequence_of(attributes: &PathAttributes) -> u32 {
    attributes
        .extended_communities
        .iter()
        .filter_map(|c| match c {
            ExtendedCommunity::MacMobility { sequence, .. } => Some(*sequence),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// What the route in `path` (a received best route, with its NLRI in `path.evpn`) means for
/// the local segments; `None` when it is not for one of them (no segment with its VNI, no
/// matching route target, a tunnel type other than ingress replication, our own VTEP).
pub fn classify(path: &Path, segments: &HashMap<u32, L2Segment>) -> Option<Imported> {
    let route = path.evpn.as_ref()?;
    let next_hop = path.next_hop_address()?;
    let (vni, imported) = match route {
        EvpnRoute::MacIp(r) => {
            let vni = r.label1.vni().get();
            (
                vni,
                Imported::Mac {
                    vni,
                    mac: r.mac.0,
                    vtep: next_hop,
                    sequence: sequence_of(&path.attributes),
                },
            )
        }
        EvpnRoute::InclusiveMulticast(r) => match &path.attributes.pmsi_tunnel {
            Some(PmsiTunnel {
                label,
                tunnel: PmsiTunnelId::IngressReplication { endpoint },
                ..
            }) => {
                let vni = label.vni().get();
                (
                    vni,
                    Imported::Flood {
                        vni,
                        vtep: *endpoint,
                    },
                )
            }
            Some(_) => return None,
            None => (
                r.ethernet_tag,
                Imported::Flood {
                    vni: r.ethernet_tag,
                    vtep: next_hop,
                },
            ),
        },
        _ => return None,
    };
    let segment = segments.get(&vni)?;
    let vtep = match &imported {
        Imported::Mac { vtep, .. }
        | Imported::Flood { vtep, .. }
        | Imported::Prefix { vtep, .. } => *vtep,
    };
    if vtep.is_unspecified() || vtep == segment.local_vtep || !has_target(&path.attributes, vni) {
        return None;
    }
    Some(imported)
}

/// What a received type 5 route means for the tenants: `None` unless its label is a tenant's
/// L3 VNI, it carries a route target for that VNI and a Router's MAC community (symmetric IRB
/// needs the remote router's MAC), and its next hop is another VTEP.
pub fn classify_prefix(path: &Path, tenants: &HashMap<u32, L3Tenant>) -> Option<Imported> {
    let EvpnRoute::IpPrefix(route) = path.evpn.as_ref()? else {
        return None;
    };
    let l3_vni = route.label.vni().get();
    let tenant = tenants.get(&l3_vni)?;
    let vtep = path.next_hop_address()?;
    let router_mac = path
        .attributes
        .extended_communities
        .iter()
        .find_map(|c| match c {
            ExtendedCommunity::RouterMac { mac } => Some(mac.0),
            _ => None,
        })?;
    if vtep.is_unspecified() || vtep == tenant.local_vtep || !has_target(&path.attributes, l3_vni) {
        return None;
    }
    let prefix = match route.prefix {
        IpPrefix::V4(p) => IpNet::V4(ipnet::Ipv4Net::new(p.addr(), p.len()).ok()?),
        IpPrefix::V6(p) => IpNet::V6(ipnet::Ipv6Net::new(p.addr(), p.len()).ok()?),
    };
    Some(Imported::Prefix {
        l3_vni,
        prefix,
        vtep,
        router_mac,
    })
}

/// Remote routes for one MAC: route key -> (VTEP, MAC mobility sequence number).
type Candidates = HashMap<EvpnRoute, (IpAddr, u32)>;

/// Remote type 5 routes for one tenant prefix: route key -> (VTEP, router MAC).
type PrefixCandidates = HashMap<EvpnRoute, (IpAddr, [u8; 6])>;

/// The kernel's EVPN entries as the Loc-RIB and the locally learned MACs want them, and as
/// they were last asked for. Each change returns the ops that bring the kernel along.
#[derive(Debug, Default)]
pub struct KernelView {
    segments: HashMap<u32, L2Segment>,
    /// How each best received route was read, by route key.
    imported: HashMap<EvpnRoute, Imported>,
    /// Remote candidates per (VNI, MAC): route key -> (VTEP, sequence number).
    macs: HashMap<(u32, [u8; 6]), Candidates>,
    installed_macs: HashMap<(u32, [u8; 6]), IpAddr>,
    /// Flood candidates per VNI: route key -> VTEP.
    floods: HashMap<u32, HashMap<EvpnRoute, IpAddr>>,
    installed_floods: HashMap<u32, BTreeSet<IpAddr>>,
    /// MACs learned on local ports, with the sequence number we advertise them with.
    local: HashMap<(u32, [u8; 6]), u32>,
    tenants: HashMap<u32, L3Tenant>,
    /// Type 5 candidates per (L3 VNI, prefix): route key -> (VTEP, router MAC).
    prefixes: HashMap<(u32, IpNet), PrefixCandidates>,
    installed_prefixes: HashMap<(u32, IpNet), (IpAddr, [u8; 6])>,
}

impl KernelView {
    pub fn segments(&self) -> &HashMap<u32, L2Segment> {
        &self.segments
    }

    pub fn tenants(&self) -> &HashMap<u32, L3Tenant> {
        &self.tenants
    }

    /// What a best received route means here ([`classify`], or [`classify_prefix`] for type 5).
    pub fn read(&self, path: &Path) -> Option<Imported> {
        classify(path, &self.segments).or_else(|| classify_prefix(path, &self.tenants))
    }

    /// New tenants: prefixes of removed tenants (or of a tenant whose VRF or devices changed)
    /// are removed from the kernel. The caller then re-reads every best route.
    pub fn set_tenants(&mut self, tenants: &[L3Tenant], ops: &mut Vec<EvpnOp>) {
        let new: HashMap<u32, L3Tenant> = tenants.iter().map(|t| (t.l3_vni, t.clone())).collect();
        let old = std::mem::replace(&mut self.tenants, new);
        for (vni, tenant) in old {
            if self.tenants.get(&vni) == Some(&tenant) {
                continue;
            }
            let gone: Vec<(u32, IpNet)> = self
                .installed_prefixes
                .keys()
                .filter(|(v, _)| *v == vni)
                .copied()
                .collect();
            for key in gone {
                self.installed_prefixes.remove(&key);
                ops.push(EvpnOp::RemovePrefix {
                    vrf: tenant.vrf.clone(),
                    table: tenant.table,
                    prefix: key.1,
                });
            }
            self.imported
                .retain(|_, i| !matches!(i, Imported::Prefix { l3_vni, .. } if *l3_vni == vni));
            self.prefixes.retain(|(v, _), _| *v != vni);
        }
    }

    /// New segments. Entries of removed segments are forgotten without ops (ztosd deletes
    /// their devices, and the FDB entries with them); entries of a segment whose device
    /// changed are moved to the new device. The caller then re-reads every best route with
    /// [`classify`] and [`KernelView::change`], so routes for new segments get imported.
    pub fn set_segments(&mut self, segments: &[L2Segment], ops: &mut Vec<EvpnOp>) {
        let new: HashMap<u32, L2Segment> = segments.iter().map(|s| (s.vni, s.clone())).collect();
        let old = std::mem::replace(&mut self.segments, new);
        for (vni, segment) in &old {
            match self.segments.get(vni) {
                None => {
                    self.imported.retain(|_, i| i.vni() != *vni);
                    self.macs.retain(|(v, _), _| v != vni);
                    self.installed_macs.retain(|(v, _), _| v != vni);
                    self.floods.remove(vni);
                    self.installed_floods.remove(vni);
                    self.local.retain(|(v, _), _| v != vni);
                }
                Some(now) if now.vxlan != segment.vxlan => {
                    // Re-install everything on the new device.
                    let macs: Vec<(u32, [u8; 6])> = self
                        .installed_macs
                        .keys()
                        .filter(|(v, _)| v == vni)
                        .copied()
                        .collect();
                    for key in macs {
                        self.installed_macs.remove(&key);
                        self.resync_mac(key.0, key.1, ops);
                    }
                    self.installed_floods.remove(vni);
                    self.resync_flood(*vni, ops);
                }
                Some(_) => {}
            }
        }
    }

    /// The best route `key` is now read as `new` ([`classify`] of the best received route;
    /// `None`: no route, or one that is not for a local segment).
    pub fn change(&mut self, key: &EvpnRoute, new: Option<Imported>, ops: &mut Vec<EvpnOp>) {
        let old = match &new {
            Some(new) => self.imported.insert(key.clone(), new.clone()),
            None => self.imported.remove(key),
        };
        if old == new {
            return;
        }
        let mut touched_macs = Vec::new();
        let mut touched_floods = Vec::new();
        let mut touched_prefixes = Vec::new();
        if let Some(old) = old {
            match old {
                Imported::Mac { vni, mac, .. } => {
                    if let Some(c) = self.macs.get_mut(&(vni, mac)) {
                        c.remove(key);
                        if c.is_empty() {
                            self.macs.remove(&(vni, mac));
                        }
                    }
                    touched_macs.push((vni, mac));
                }
                Imported::Flood { vni, .. } => {
                    if let Some(c) = self.floods.get_mut(&vni) {
                        c.remove(key);
                        if c.is_empty() {
                            self.floods.remove(&vni);
                        }
                    }
                    touched_floods.push(vni);
                }
                Imported::Prefix { l3_vni, prefix, .. } => {
                    if let Some(c) = self.prefixes.get_mut(&(l3_vni, prefix)) {
                        c.remove(key);
                        if c.is_empty() {
                            self.prefixes.remove(&(l3_vni, prefix));
                        }
                    }
                    touched_prefixes.push((l3_vni, prefix));
                }
            }
        }
        if let Some(new) = new {
            match new {
                Imported::Mac {
                    vni,
                    mac,
                    vtep,
                    sequence,
                } => {
                    self.macs
                        .entry((vni, mac))
                        .or_default()
                        .insert(key.clone(), (vtep, sequence));
                    touched_macs.push((vni, mac));
                }
                Imported::Flood { vni, vtep } => {
                    self.floods
                        .entry(vni)
                        .or_default()
                        .insert(key.clone(), vtep);
                    touched_floods.push(vni);
                }
                Imported::Prefix {
                    l3_vni,
                    prefix,
                    vtep,
                    router_mac,
                } => {
                    self.prefixes
                        .entry((l3_vni, prefix))
                        .or_default()
                        .insert(key.clone(), (vtep, router_mac));
                    touched_prefixes.push((l3_vni, prefix));
                }
            }
        }
        for (vni, mac) in touched_macs {
            self.resync_mac(vni, mac, ops);
        }
        for vni in touched_floods {
            self.resync_flood(vni, ops);
        }
        for (vni, prefix) in touched_prefixes {
            self.resync_prefix(vni, prefix, ops);
        }
    }

    fn resync_prefix(&mut self, vni: u32, prefix: IpNet, ops: &mut Vec<EvpnOp>) {
        let Some(tenant) = self.tenants.get(&vni) else {
            return;
        };
        // Several VTEPs may advertise one prefix: the lowest VTEP, for determinism.
        let wanted = self
            .prefixes
            .get(&(vni, prefix))
            .and_then(|c| c.values().copied().min());
        let installed = self.installed_prefixes.get(&(vni, prefix)).copied();
        if wanted == installed {
            return;
        }
        match wanted {
            Some((vtep, router_mac)) => {
                ops.push(EvpnOp::InstallPrefix {
                    vrf: tenant.vrf.clone(),
                    table: tenant.table,
                    prefix,
                    vtep,
                    router_mac,
                    l3_bridge: tenant.l3_bridge.clone(),
                    l3_vxlan: tenant.l3_vxlan.clone(),
                });
                self.installed_prefixes
                    .insert((vni, prefix), (vtep, router_mac));
            }
            None => {
                ops.push(EvpnOp::RemovePrefix {
                    vrf: tenant.vrf.clone(),
                    table: tenant.table,
                    prefix,
                });
                self.installed_prefixes.remove(&(vni, prefix));
            }
        }
    }

    /// The highest sequence number a remote VTEP advertises `mac` with, if any does.
    pub fn remote_sequence(&self, vni: u32, mac: [u8; 6]) -> Option<u32> {
        self.macs
            .get(&(vni, mac))
            .and_then(|c| c.values().map(|(_, s)| *s).max())
    }

    /// `mac` was learned on a local port of segment `vni` (advertised with `sequence`), or
    /// (`None`) is gone from there.
    pub fn set_local(
        &mut self,
        vni: u32,
        mac: [u8; 6],
        sequence: Option<u32>,
        ops: &mut Vec<EvpnOp>,
    ) {
        match sequence {
            Some(s) => {
                self.local.insert((vni, mac), s);
            }
            None => {
                self.local.remove(&(vni, mac));
            }
        }
        self.resync_mac(vni, mac, ops);
    }

    fn resync_mac(&mut self, vni: u32, mac: [u8; 6], ops: &mut Vec<EvpnOp>) {
        let Some(segment) = self.segments.get(&vni) else {
            return;
        };
        // The highest sequence number wins; among equals the lowest VTEP, for determinism.
        let winner = self.macs.get(&(vni, mac)).and_then(|c| {
            c.values()
                .copied()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        });
        let wanted = match (winner, self.local.get(&(vni, mac))) {
            (Some((vtep, remote)), Some(local)) if remote > *local => Some(vtep),
            (_, Some(_)) => None,
            (winner, None) => winner.map(|(vtep, _)| vtep),
        };
        let installed = self.installed_macs.get(&(vni, mac)).copied();
        if wanted == installed {
            return;
        }
        match wanted {
            Some(vtep) => {
                ops.push(EvpnOp::InstallMac {
                    vxlan: segment.vxlan.clone(),
                    mac,
                    vtep,
                });
                self.installed_macs.insert((vni, mac), vtep);
            }
            None => {
                ops.push(EvpnOp::RemoveMac {
                    vxlan: segment.vxlan.clone(),
                    mac,
                });
                self.installed_macs.remove(&(vni, mac));
            }
        }
    }

    fn resync_flood(&mut self, vni: u32, ops: &mut Vec<EvpnOp>) {
        let Some(segment) = self.segments.get(&vni) else {
            return;
        };
        let wanted: BTreeSet<IpAddr> = self
            .floods
            .get(&vni)
            .map(|c| c.values().copied().collect())
            .unwrap_or_default();
        let installed = self.installed_floods.remove(&vni).unwrap_or_default();
        for vtep in installed.difference(&wanted) {
            ops.push(EvpnOp::RemoveFlood {
                vxlan: segment.vxlan.clone(),
                vtep: *vtep,
            });
        }
        for vtep in wanted.difference(&installed) {
            ops.push(EvpnOp::AddFlood {
                vxlan: segment.vxlan.clone(),
                vtep: *vtep,
            });
        }
        if !wanted.is_empty() {
            self.installed_floods.insert(vni, wanted);
        }
    }

    /// Remote MACs, flood entries and tenant prefixes installed now, for the status.
    pub fn installed(&self) -> (usize, usize, usize) {
        (
            self.installed_macs.len(),
            self.installed_floods.values().map(BTreeSet::len).sum(),
            self.installed_prefixes.len(),
        )
    }
}

/// The family of an EVPN type 5 prefix, for filters.
pub fn prefix_of(route: &EvpnRoute) -> Option<IpPrefix> {
    match route {
        EvpnRoute::IpPrefix(r) => Some(r.prefix),
        _ => None,
    }
}

/// The VNI a route is about, for `--vni` filters: type 2 label 1, type 5 the label, type 3 the
/// PMSI label (in the path) or its Ethernet tag.
pub fn vni_of(path: &Path) -> Option<u32> {
    match path.evpn.as_ref()? {
        EvpnRoute::MacIp(r) => Some(r.label1.vni().get()),
        EvpnRoute::IpPrefix(r) => Some(r.label.vni().get()),
        EvpnRoute::EthernetAutoDiscovery(r) => Some(r.label.vni().get()),
        EvpnRoute::InclusiveMulticast(r) => Some(
            path.attributes
                .pmsi_tunnel
                .as_ref()
                .map_or(r.ethernet_tag, |p| p.label.vni().get()),
        ),
        _ => None,
    }
}

#[cfg(test)]
#[path = "evpn_tests.rs"]
mod tests;
