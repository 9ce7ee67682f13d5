//! Operational answers: summary, neighbors, routes and EVPN routes as the model's answer
//! types (`ztos_model::bgp`, the JSON the CLI and API read), and the metrics.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use ztos_model::bgp::{
    AsPathSegment, AsSegmentKind, BgpNeighbor, BgpNeighborConfigured, BgpNeighborSession,
    BgpNeighbors, BgpOrigin, BgpPath, BgpPeerGracefulRestart, BgpRoute, BgpRouteCounts, BgpRoutes,
    BgpSessionState, BgpSpeaker, BgpSummary, EvpnRouteEntry, EvpnRouteKey, EvpnRoutes, EvpnSegment,
    EvpnSummary, EvpnTenant, PmsiTunnel, PmsiTunnelId, RouteDistinguisher,
};
use ztos_plugin::{Metric, MetricKind};

use crate::config::canonical;
use crate::evpn;
use crate::evpn_kernel::L2Segment;
use crate::session::State;
use ztos_bgp_codec::{self as codec, EvpnRoute, Family, GracefulRestart, IpPrefix};

use super::{family_of, net_of, Answer, Neighbor, Query, Speaker, SpeakerError, ROUTES_LIMIT};

/// Bytes as lowercase hex, as the codec writes them.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn state_of(state: State) -> BgpSessionState {
    match state {
        State::Idle => BgpSessionState::Idle,
        State::Connect => BgpSessionState::Connect,
        State::Active => BgpSessionState::Active,
        State::OpenSent => BgpSessionState::OpenSent,
        State::OpenConfirm => BgpSessionState::OpenConfirm,
        State::Established => BgpSessionState::Established,
    }
}

fn origin_of(origin: codec::Origin) -> BgpOrigin {
    match origin {
        codec::Origin::Igp => BgpOrigin::Igp,
        codec::Origin::Egp => BgpOrigin::Egp,
        codec::Origin::Incomplete => BgpOrigin::Incomplete,
    }
}

fn as_path_of(path: &codec::AsPath) -> Vec<AsPathSegment> {
    path.segments
        .iter()
        .map(|s| AsPathSegment {
            kind: match s.kind {
                codec::AsSegmentKind::Set => AsSegmentKind::Set,
                codec::AsSegmentKind::Sequence => AsSegmentKind::Sequence,
                codec::AsSegmentKind::ConfedSequence => AsSegmentKind::ConfedSequence,
                codec::AsSegmentKind::ConfedSet => AsSegmentKind::ConfedSet,
            },
            asns: s.asns.iter().map(|a| a.0).collect(),
        })
        .collect()
}

fn pmsi_of(pmsi: &codec::PmsiTunnel) -> PmsiTunnel {
    PmsiTunnel {
        flags: pmsi.flags,
        label: pmsi.label.raw(),
        tunnel: match &pmsi.tunnel {
            codec::PmsiTunnelId::IngressReplication { endpoint } => {
                PmsiTunnelId::IngressReplication {
                    endpoint: *endpoint,
                }
            }
            codec::PmsiTunnelId::Other { code, identifier } => PmsiTunnelId::Other {
                code: *code,
                identifier: hex(identifier),
            },
        },
    }
}

fn rd_of(rd: &codec::RouteDistinguisher) -> RouteDistinguisher {
    RouteDistinguisher {
        rd_type: rd.rd_type(),
        value: rd.to_string(),
    }
}

fn prefix_net(prefix: &IpPrefix) -> IpNet {
    net_of(prefix)
}

/// An EVPN NLRI's fields as the answer names them.
fn evpn_key_of(route: &EvpnRoute) -> EvpnRouteKey {
    match route {
        EvpnRoute::EthernetAutoDiscovery(r) => EvpnRouteKey::EthernetAutoDiscovery {
            rd: rd_of(&r.rd),
            esi: r.esi.to_string(),
            ethernet_tag: r.ethernet_tag,
            label: r.label.raw(),
        },
        EvpnRoute::MacIp(r) => EvpnRouteKey::MacIp {
            rd: rd_of(&r.rd),
            esi: r.esi.to_string(),
            ethernet_tag: r.ethernet_tag,
            mac: r.mac.to_string(),
            ip: r.ip,
            label1: r.label1.raw(),
            label2: r.label2.map(|l| l.raw()),
        },
        EvpnRoute::InclusiveMulticast(r) => EvpnRouteKey::InclusiveMulticast {
            rd: rd_of(&r.rd),
            ethernet_tag: r.ethernet_tag,
            originator: r.originator,
        },
        EvpnRoute::EthernetSegment(r) => EvpnRouteKey::EthernetSegment {
            rd: rd_of(&r.rd),
            esi: r.esi.to_string(),
            originator: r.originator,
        },
        EvpnRoute::IpPrefix(r) => EvpnRouteKey::IpPrefix {
            rd: rd_of(&r.rd),
            esi: r.esi.to_string(),
            ethernet_tag: r.ethernet_tag,
            prefix: prefix_net(&r.prefix),
            gateway: r.gateway,
            label: r.label.raw(),
        },
        EvpnRoute::Unknown { code, value } => EvpnRouteKey::Unknown {
            code: *code,
            value: hex(value),
        },
    }
}

pub(super) fn paths_json(candidates: &[&crate::rib::Candidate]) -> Vec<BgpPath> {
    candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let a = &c.path.attributes;
            BgpPath {
                best: i == 0,
                from: c
                    .source
                    .peer
                    .map(|_| c.source.address.to_string())
                    .unwrap_or_else(|| "local".to_string()),
                next_hop: c.path.next_hop_address(),
                as_path: a.as_path.as_ref().map(as_path_of),
                origin: a.origin.map(origin_of),
                local_pref: a.local_pref,
                med: a.med,
                communities: a.communities.iter().map(|c| c.to_string()).collect(),
                extended_communities: a
                    .extended_communities
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
                originator_id: a.originator_id,
                cluster_list: a.cluster_list.clone(),
                vni: None,
                pmsi_tunnel: None,
            }
        })
        .collect()
}

pub(super) fn evpn_route_json(
    key: &EvpnRoute,
    candidates: &[&crate::rib::Candidate],
) -> EvpnRouteEntry {
    let best = candidates.first();
    let route = best
        .and_then(|c| c.path.evpn.clone())
        .unwrap_or_else(|| key.clone());
    let mut paths = paths_json(candidates);
    for (path, c) in paths.iter_mut().zip(candidates) {
        path.vni = evpn::vni_of(&c.path);
        path.pmsi_tunnel = c.path.attributes.pmsi_tunnel.as_ref().map(pmsi_of);
    }
    EvpnRouteEntry {
        family: Family::L2VPN_EVPN.to_string(),
        route_type: route.route_type(),
        rd: route.rd().map(|rd| rd.to_string()),
        route: evpn_key_of(&route),
        paths,
    }
}

pub(super) fn route_json(prefix: &IpPrefix, candidates: &[&crate::rib::Candidate]) -> BgpRoute {
    BgpRoute {
        prefix: prefix_net(prefix),
        family: family_of(prefix).to_string(),
        paths: paths_json(candidates),
    }
}

impl Speaker {
    pub(super) fn neighbor_json(&self, address: IpAddr, n: &Neighbor, detail: bool) -> BgpNeighbor {
        let (received, accepted) = n.up.as_ref().map_or((0, 0), |u| {
            self.rib.counts(u.source.peer.unwrap_or_default())
        });
        let advertised =
            n.up.as_ref()
                .and_then(|u| self.groups.get(&u.group))
                .map_or(0, |g| g.advertised);
        let mut neighbor = BgpNeighbor {
            address,
            remote_as: n.config.remote_as,
            description: n.config.description.clone(),
            state: state_of(n.state),
            uptime_seconds: n.up.as_ref().map(|u| u.since.elapsed().as_secs()),
            prefixes_received: count(received),
            prefixes_accepted: count(accepted),
            prefixes_advertised: count(advertised),
            updates_received: n.updates_received,
            updates_sent: n.updates_sent,
            last_error: n.last_error.clone(),
            stale_routes: count(
                self.stale
                    .get(&address)
                    .map_or(0, |st| st.prefixes.len() + st.evpn.len()),
            ),
            configured: None,
            established_count: None,
            session: None,
        };
        if detail {
            neighbor.configured = Some(BgpNeighborConfigured {
                families: n.config.families().iter().map(|f| f.to_string()).collect(),
                passive: n.config.passive,
                hold_time: n.config.hold_time(),
                max_prefixes: n.config.max_prefixes,
                route_reflector_client: n.config.route_reflector_client,
                md5: n.config.password.is_some(),
            });
            neighbor.established_count = Some(n.established_count);
            neighbor.session = n.up.as_ref().map(|up| BgpNeighborSession {
                local_address: up.info.local_address,
                remote_router_id: up.info.remote_router_id,
                hold_time: up.info.hold_time,
                families: up.info.families.iter().map(|f| f.to_string()).collect(),
                four_octet_as: up.info.negotiated.send.four_octet_as,
                extended_message: up.info.negotiated.send.extended_message,
                route_refresh: up.info.route_refresh,
                peer_graceful_restart: up.info.peer_restart.as_ref().map(|gr| {
                    BgpPeerGracefulRestart {
                        restart_time: gr.restart_time,
                        restarted: gr.flags & GracefulRestart::RESTART_STATE != 0,
                        forwarding_preserved: gr
                            .families
                            .iter()
                            .filter(|(_, flags)| flags & GracefulRestart::FORWARDING_PRESERVED != 0)
                            .map(|(f, _)| f.to_string())
                            .collect(),
                    }
                }),
                ebgp: up.source.ebgp,
                update_group: up.group,
            });
        }
        neighbor
    }

    pub(super) fn sorted_neighbors(&self) -> Vec<(&IpAddr, &Neighbor)> {
        let mut list: Vec<(&IpAddr, &Neighbor)> = self.neighbors.iter().collect();
        list.sort_by_key(|(a, _)| **a);
        list
    }

    pub(super) fn summary(&self) -> BgpSummary {
        let Some(config) = &self.config else {
            return BgpSummary {
                configured: false,
                speaker: None,
                neighbors: Vec::new(),
            };
        };
        let neighbors: Vec<BgpNeighbor> = self
            .sorted_neighbors()
            .into_iter()
            .map(|(a, n)| self.neighbor_json(*a, n, false))
            .collect();
        let v4 = self.rib.len_v4();
        let v6 = self.rib.len() - v4;
        BgpSummary {
            configured: true,
            speaker: Some(BgpSpeaker {
                local_as: config.local_as,
                router_id: self.router_id,
                port: config.port(),
                neighbors_established: count(
                    self.neighbors.values().filter(|n| n.up.is_some()).count(),
                ),
                routes: BgpRouteCounts {
                    ipv4_unicast: count(v4),
                    ipv6_unicast: count(v6),
                    l2vpn_evpn: count(self.evpn_rib.len()),
                },
                evpn: self.evpn_json(),
                update_groups: count(self.groups.len()),
                attribute_sets: count(self.rib.interner.len()),
            }),
            neighbors,
        }
    }

    pub(super) fn query(&self, query: &Query) -> Result<Answer, SpeakerError> {
        match query {
            Query::Summary => Ok(Answer::Summary(self.summary())),
            Query::Neighbors(None) => Ok(Answer::Neighbors(BgpNeighbors {
                neighbors: self
                    .sorted_neighbors()
                    .into_iter()
                    .map(|(a, n)| self.neighbor_json(*a, n, true))
                    .collect(),
            })),
            Query::Neighbors(Some(address)) => {
                let address = canonical(*address);
                self.neighbors
                    .get(&address)
                    .map(|n| {
                        Answer::Neighbors(BgpNeighbors {
                            neighbors: vec![self.neighbor_json(address, n, true)],
                        })
                    })
                    .ok_or(SpeakerError::UnknownNeighbor(address))
            }
            Query::Routes {
                family,
                prefix,
                vni,
            } => {
                if family.is_some_and(|f| f == Family::L2VPN_EVPN) || vni.is_some() {
                    return Ok(Answer::EvpnRoutes(self.evpn_routes(*prefix, *vni)));
                }
                let mut entries: Vec<(IpPrefix, crate::rib::Route)> = self
                    .rib
                    .entries()
                    .filter(|(p, _)| family.is_none_or(|f| f == family_of(p)))
                    .filter(|(p, _)| prefix.is_none_or(|want| want.contains(&net_of(p))))
                    .collect();
                entries.sort_by_key(|(p, _)| *p);
                let truncated = entries.len() > ROUTES_LIMIT;
                let routes: Vec<BgpRoute> = entries
                    .into_iter()
                    .take(ROUTES_LIMIT)
                    .map(|(p, candidates)| route_json(&p, &candidates.to_vec()))
                    .collect();
                Ok(Answer::Routes(BgpRoutes { routes, truncated }))
            }
        }
    }

    pub(super) fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        let mut push =
            |name: &str, help: &str, kind: MetricKind, address: Option<IpAddr>, value: f64| {
                let mut labels = BTreeMap::new();
                if let Some(address) = address {
                    labels.insert("neighbor".to_string(), address.to_string());
                }
                out.push(Metric {
                    name: name.to_string(),
                    help: help.to_string(),
                    kind,
                    labels,
                    value,
                });
            };
        for (address, n) in self.sorted_neighbors() {
            let a = Some(*address);
            let (received, accepted) = n.up.as_ref().map_or((0, 0), |u| {
                self.rib.counts(u.source.peer.unwrap_or_default())
            });
            let advertised =
                n.up.as_ref()
                    .and_then(|u| self.groups.get(&u.group))
                    .map_or(0, |g| g.advertised);
            push(
                "ztos_bgp_neighbor_up",
                "1 while the BGP session is established.",
                MetricKind::Gauge,
                a,
                if n.up.is_some() { 1.0 } else { 0.0 },
            );
            push(
                "ztos_bgp_neighbor_uptime_seconds",
                "Seconds since the session was established (0 when down).",
                MetricKind::Gauge,
                a,
                n.up.as_ref()
                    .map_or(0.0, |u| u.since.elapsed().as_secs_f64().floor()),
            );
            push(
                "ztos_bgp_prefixes_received",
                "Prefixes in the neighbor's Adj-RIB-In.",
                MetricKind::Gauge,
                a,
                received as f64,
            );
            push(
                "ztos_bgp_prefixes_accepted",
                "Prefixes from the neighbor that passed import.",
                MetricKind::Gauge,
                a,
                accepted as f64,
            );
            push(
                "ztos_bgp_prefixes_advertised",
                "Prefixes advertised to the neighbor.",
                MetricKind::Gauge,
                a,
                advertised as f64,
            );
            push(
                "ztos_bgp_updates_received_total",
                "BGP UPDATE messages received.",
                MetricKind::Counter,
                a,
                n.updates_received as f64,
            );
            push(
                "ztos_bgp_updates_sent_total",
                "BGP UPDATE messages sent.",
                MetricKind::Counter,
                a,
                n.updates_sent as f64,
            );
            push(
                "ztos_bgp_established_total",
                "Times the session reached Established.",
                MetricKind::Counter,
                a,
                n.established_count as f64,
            );
        }
        push(
            "ztos_bgp_routes",
            "Prefixes in the Loc-RIB.",
            MetricKind::Gauge,
            None,
            self.rib.len() as f64,
        );
        let (remote_macs, flood, prefixes) = self.evpn_view.installed();
        push(
            "ztos_bgp_evpn_routes",
            "EVPN routes in the Loc-RIB.",
            MetricKind::Gauge,
            None,
            self.evpn_rib.len() as f64,
        );
        push(
            "ztos_bgp_evpn_local_macs",
            "MACs learned on local ports of EVPN segments and advertised.",
            MetricKind::Gauge,
            None,
            self.local_macs.len() as f64,
        );
        push(
            "ztos_bgp_evpn_remote_macs",
            "Remote MACs installed as FDB entries on VXLAN devices.",
            MetricKind::Gauge,
            None,
            remote_macs as f64,
        );
        push(
            "ztos_bgp_evpn_flood_entries",
            "Flood-list entries (remote VTEPs) installed on VXLAN devices.",
            MetricKind::Gauge,
            None,
            flood as f64,
        );
        push(
            "ztos_bgp_evpn_tenant_prefixes",
            "EVPN type 5 prefixes installed into tenant VRF tables.",
            MetricKind::Gauge,
            None,
            prefixes as f64,
        );
        out
    }

    pub(super) fn evpn_json(&self) -> EvpnSummary {
        let (remote_macs, flood, prefixes) = self.evpn_view.installed();
        let mut segments: Vec<&L2Segment> = self.evpn_view.segments().values().collect();
        segments.sort_by_key(|s| s.vni);
        EvpnSummary {
            segments: segments
                .iter()
                .map(|s| EvpnSegment {
                    vni: s.vni,
                    vxlan: s.vxlan.clone(),
                    bridge: s.bridge.clone(),
                    local_vtep: s.local_vtep,
                    local_macs: count(self.local_macs.keys().filter(|(v, _)| *v == s.vni).count()),
                })
                .collect(),
            local_macs: count(self.local_macs.len()),
            remote_macs: count(remote_macs),
            flood_entries: count(flood),
            tenant_prefixes: count(prefixes),
            tenants: self
                .evpn_view
                .tenants()
                .values()
                .map(|t| EvpnTenant {
                    name: t.name.clone(),
                    l3_vni: t.l3_vni,
                    vrf: t.vrf.clone(),
                    table: t.table,
                    prefixes: t.prefixes.clone(),
                })
                .collect(),
            kernel: self.evpn_ops.is_some(),
        }
    }

    /// `bgp routes --family evpn [--vni N] [--prefix P]` (a prefix matches type 5 routes and
    /// type 2 routes with an IP inside it).
    pub(super) fn evpn_routes(&self, prefix: Option<IpNet>, vni: Option<u32>) -> EvpnRoutes {
        let mut entries: Vec<(EvpnRoute, crate::rib::Route)> = self
            .evpn_rib
            .entries()
            .filter(|(_, candidates)| {
                vni.is_none_or(|want| {
                    candidates
                        .first()
                        .is_some_and(|c| evpn::vni_of(&c.path) == Some(want))
                })
            })
            .filter(|(route, _)| {
                prefix.is_none_or(|want| match route {
                    EvpnRoute::IpPrefix(r) => want.contains(&net_of(&r.prefix)),
                    EvpnRoute::MacIp(r) => r.ip.is_some_and(|ip| want.contains(&ip)),
                    _ => false,
                })
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let truncated = entries.len() > ROUTES_LIMIT;
        let routes: Vec<EvpnRouteEntry> = entries
            .into_iter()
            .take(ROUTES_LIMIT)
            .map(|(key, candidates)| evpn_route_json(&key, &candidates.to_vec()))
            .collect();
        EvpnRoutes { routes, truncated }
    }
}

#[cfg(test)]
mod tests {
    //! The answers' parts that mirror codec types serialize exactly as the codec's own
    //! `Serialize` writes them (the JSON the speaker sent before the model's types).

    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use ztos_bgp_codec::{
        AsSegment, Asn, EthernetAutoDiscovery, EthernetSegment, EthernetSegmentId,
        InclusiveMulticast, IpPrefixRoute, Ipv4Prefix, Label, MacAddress, MacIpAdvertisement, Vni,
    };

    fn same<A: serde::Serialize, B: serde::Serialize>(ours: A, codec: B) {
        assert_eq!(
            serde_json::to_value(ours).unwrap(),
            serde_json::to_value(codec).unwrap()
        );
    }

    #[test]
    fn evpn_keys_pmsi_as_paths_and_origins_serialize_as_the_codec_does() {
        let rd = codec::RouteDistinguisher::from_bytes([0, 1, 192, 0, 2, 1, 0, 100]);
        let esi = EthernetSegmentId([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let label = Label::from_vni(Vni::new(100).unwrap());
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let routes = [
            EvpnRoute::EthernetAutoDiscovery(EthernetAutoDiscovery {
                rd,
                esi,
                ethernet_tag: 7,
                label,
            }),
            EvpnRoute::MacIp(MacIpAdvertisement {
                rd,
                esi,
                ethernet_tag: 0,
                mac: MacAddress([2, 0, 0, 0, 0, 1]),
                ip: None,
                label1: label,
                label2: None,
            }),
            EvpnRoute::MacIp(MacIpAdvertisement {
                rd,
                esi,
                ethernet_tag: 0,
                mac: MacAddress([2, 0, 0, 0, 0, 1]),
                ip: Some(v4),
                label1: label,
                label2: Some(Label::from_vni(Vni::new(5000).unwrap())),
            }),
            EvpnRoute::InclusiveMulticast(InclusiveMulticast {
                rd,
                ethernet_tag: 0,
                originator: v4,
            }),
            EvpnRoute::EthernetSegment(EthernetSegment {
                rd,
                esi,
                originator: v4,
            }),
            EvpnRoute::IpPrefix(IpPrefixRoute {
                rd,
                esi,
                ethernet_tag: 0,
                prefix: IpPrefix::V4(Ipv4Prefix::new(Ipv4Addr::new(10, 1, 0, 0), 16).unwrap()),
                gateway: v4,
                label,
            }),
            EvpnRoute::Unknown {
                code: 9,
                value: vec![0xde, 0xad],
            },
        ];
        for route in &routes {
            same(evpn_key_of(route), route);
        }
        for tunnel in [
            codec::PmsiTunnelId::IngressReplication { endpoint: v4 },
            codec::PmsiTunnelId::Other {
                code: 3,
                identifier: vec![1, 0xab],
            },
        ] {
            let pmsi = codec::PmsiTunnel {
                flags: 1,
                label,
                tunnel,
            };
            same(pmsi_of(&pmsi), &pmsi);
        }
        let path = codec::AsPath {
            segments: vec![
                AsSegment {
                    kind: codec::AsSegmentKind::Sequence,
                    asns: vec![Asn(65002), Asn(4_200_000_000)],
                },
                AsSegment {
                    kind: codec::AsSegmentKind::Set,
                    asns: vec![Asn(1)],
                },
                AsSegment {
                    kind: codec::AsSegmentKind::ConfedSequence,
                    asns: vec![Asn(2)],
                },
                AsSegment {
                    kind: codec::AsSegmentKind::ConfedSet,
                    asns: vec![Asn(3)],
                },
            ],
        };
        same(as_path_of(&path), &path);
        for origin in [
            codec::Origin::Igp,
            codec::Origin::Egp,
            codec::Origin::Incomplete,
        ] {
            same(origin_of(origin), origin);
        }
        let prefix = IpPrefix::V4(Ipv4Prefix::new(Ipv4Addr::new(10, 1, 0, 0), 16).unwrap());
        same(prefix_net(&prefix), prefix.to_string());
        for state in [
            State::Idle,
            State::Connect,
            State::Active,
            State::OpenSent,
            State::OpenConfirm,
            State::Established,
        ] {
            same(state_of(state), state.as_str());
        }
    }
}
