//! Operational answers: summary, neighbors, routes and EVPN routes as JSON, and the metrics.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Value};
use ztos_plugin::{Metric, MetricKind};

use crate::codec::GracefulRestart;
use crate::codec::{EvpnRoute, Family, IpPrefix};
use crate::config::canonical;
use crate::evpn::{self};
use crate::evpn_kernel::L2Segment;

use super::{family_of, net_of, Neighbor, Query, Speaker, ROUTES_LIMIT};

pub(super) fn paths_json(candidates: &[&crate::rib::Candidate]) -> Vec<Value> {
    candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let a = &c.path.attributes;
            json!({
                "best": i == 0,
                "from": c.source.peer.map(|_| c.source.address.to_string()).unwrap_or_else(|| "local".to_string()),
                "next_hop": c.path.next_hop_address().map(|a| a.to_string()),
                "as_path": a.as_path.as_ref().map(|p| serde_json::to_value(p).unwrap_or(Value::Null)),
                "origin": a.origin,
                "local_pref": a.local_pref,
                "med": a.med,
                "communities": a.communities.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "extended_communities": a.extended_communities.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "originator_id": a.originator_id.map(|i| i.to_string()),
                "cluster_list": a.cluster_list.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect()
}

pub(super) fn evpn_route_json(key: &EvpnRoute, candidates: &[&crate::rib::Candidate]) -> Value {
    let best = candidates.first();
    let route = best
        .and_then(|c| c.path.evpn.clone())
        .unwrap_or_else(|| key.clone());
    let mut paths = paths_json(candidates);
    for (path, c) in paths.iter_mut().zip(candidates) {
        path["vni"] = json!(evpn::vni_of(&c.path));
        if let Some(pmsi) = &c.path.attributes.pmsi_tunnel {
            path["pmsi_tunnel"] = serde_json::to_value(pmsi).unwrap_or(Value::Null);
        }
    }
    json!({
        "family": Family::L2VPN_EVPN.to_string(),
        "route_type": route.route_type(),
        "rd": route.rd().map(|rd| rd.to_string()),
        "route": serde_json::to_value(&route).unwrap_or(Value::Null),
        "paths": paths,
    })
}

pub(super) fn route_json(prefix: &IpPrefix, candidates: &[&crate::rib::Candidate]) -> Value {
    json!({
        "prefix": prefix.to_string(),
        "family": family_of(prefix).to_string(),
        "paths": paths_json(candidates),
    })
}

impl Speaker {
    pub(super) fn neighbor_json(&self, address: IpAddr, n: &Neighbor, detail: bool) -> Value {
        let (received, accepted) = n.up.as_ref().map_or((0, 0), |u| {
            self.rib.counts(u.source.peer.unwrap_or_default())
        });
        let advertised =
            n.up.as_ref()
                .and_then(|u| self.groups.get(&u.group))
                .map_or(0, |g| g.advertised);
        let mut value = json!({
            "address": address.to_string(),
            "remote_as": n.config.remote_as,
            "description": n.config.description,
            "state": n.state.as_str(),
            "uptime_seconds": n.up.as_ref().map(|u| u.since.elapsed().as_secs()),
            "prefixes_received": received,
            "prefixes_accepted": accepted,
            "prefixes_advertised": advertised,
            "updates_received": n.updates_received,
            "updates_sent": n.updates_sent,
            "last_error": n.last_error,
            "stale_routes": self.stale.get(&address).map_or(0, |st| st.prefixes.len() + st.evpn.len()),
        });
        if detail {
            let families: Vec<String> = n.config.families().iter().map(|f| f.to_string()).collect();
            value["configured"] = json!({
                "families": families,
                "passive": n.config.passive,
                "hold_time": n.config.hold_time(),
                "max_prefixes": n.config.max_prefixes,
                "route_reflector_client": n.config.route_reflector_client,
                "md5": n.config.password.is_some(),
            });
            value["established_count"] = json!(n.established_count);
            if let Some(up) = &n.up {
                let families: Vec<String> =
                    up.info.families.iter().map(|f| f.to_string()).collect();
                value["session"] = json!({
                    "local_address": up.info.local_address.to_string(),
                    "remote_router_id": up.info.remote_router_id.to_string(),
                    "hold_time": up.info.hold_time,
                    "families": families,
                    "four_octet_as": up.info.negotiated.send.four_octet_as,
                    "extended_message": up.info.negotiated.send.extended_message,
                    "route_refresh": up.info.route_refresh,
                    "peer_graceful_restart": up.info.peer_restart.as_ref().map(|gr| json!({
                        "restart_time": gr.restart_time,
                        "restarted": gr.flags & GracefulRestart::RESTART_STATE != 0,
                        "forwarding_preserved": gr.families.iter()
                            .filter(|(_, flags)| flags & GracefulRestart::FORWARDING_PRESERVED != 0)
                            .map(|(f, _)| f.to_string()).collect::<Vec<_>>(),
                    })),
                    "ebgp": up.source.ebgp,
                    "update_group": up.group,
                });
            }
        }
        value
    }

    pub(super) fn sorted_neighbors(&self) -> Vec<(&IpAddr, &Neighbor)> {
        let mut list: Vec<(&IpAddr, &Neighbor)> = self.neighbors.iter().collect();
        list.sort_by_key(|(a, _)| **a);
        list
    }

    pub(super) fn summary(&self) -> Value {
        let Some(config) = &self.config else {
            return json!({"configured": false, "neighbors": []});
        };
        let v4 = self.rib.len_v4();
        let v6 = self.rib.len() - v4;
        let neighbors: Vec<Value> = self
            .sorted_neighbors()
            .into_iter()
            .map(|(a, n)| self.neighbor_json(*a, n, false))
            .collect();
        json!({
            "configured": true,
            "local_as": config.local_as,
            "router_id": self.router_id.to_string(),
            "port": config.port(),
            "neighbors_established": self.neighbors.values().filter(|n| n.up.is_some()).count(),
            "routes": {"ipv4-unicast": v4, "ipv6-unicast": v6, "l2vpn-evpn": self.evpn_rib.len()},
            "evpn": self.evpn_json(),
            "update_groups": self.groups.len(),
            "attribute_sets": self.rib.interner.len(),
            "neighbors": neighbors,
        })
    }

    pub(super) fn query(&self, query: &Query) -> Result<Value, String> {
        match query {
            Query::Summary => Ok(self.summary()),
            Query::Neighbors(None) => Ok(json!({
                "neighbors": self.sorted_neighbors().into_iter().map(|(a, n)| self.neighbor_json(*a, n, true)).collect::<Vec<_>>()
            })),
            Query::Neighbors(Some(address)) => {
                let address = canonical(*address);
                self.neighbors
                    .get(&address)
                    .map(|n| json!({"neighbors": [self.neighbor_json(address, n, true)]}))
                    .ok_or_else(|| format!("{address} is not a configured BGP neighbor"))
            }
            Query::Routes {
                family,
                prefix,
                vni,
            } => {
                if family.is_some_and(|f| f == Family::L2VPN_EVPN) || vni.is_some() {
                    return Ok(self.evpn_routes(*prefix, *vni));
                }
                let mut entries: Vec<(IpPrefix, crate::rib::Route)> = self
                    .rib
                    .entries()
                    .filter(|(p, _)| family.is_none_or(|f| f == family_of(p)))
                    .filter(|(p, _)| prefix.is_none_or(|want| want.contains(&net_of(p))))
                    .collect();
                entries.sort_by_key(|(p, _)| *p);
                let truncated = entries.len() > ROUTES_LIMIT;
                let routes: Vec<Value> = entries
                    .into_iter()
                    .take(ROUTES_LIMIT)
                    .map(|(p, candidates)| route_json(&p, &candidates.to_vec()))
                    .collect();
                Ok(json!({"routes": routes, "truncated": truncated}))
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

    pub(super) fn evpn_json(&self) -> Value {
        let (remote_macs, flood, prefixes) = self.evpn_view.installed();
        let mut segments: Vec<&L2Segment> = self.evpn_view.segments().values().collect();
        segments.sort_by_key(|s| s.vni);
        json!({
            "segments": segments.iter().map(|s| json!({
                "vni": s.vni,
                "vxlan": s.vxlan,
                "bridge": s.bridge,
                "local_vtep": s.local_vtep.to_string(),
                "local_macs": self.local_macs.keys().filter(|(v, _)| *v == s.vni).count(),
            })).collect::<Vec<_>>(),
            "local_macs": self.local_macs.len(),
            "remote_macs": remote_macs,
            "flood_entries": flood,
            "tenant_prefixes": prefixes,
            "tenants": self.evpn_view.tenants().values().map(|t| json!({
                "name": t.name,
                "l3_vni": t.l3_vni,
                "vrf": t.vrf,
                "table": t.table,
                "prefixes": t.prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "kernel": self.evpn_ops.is_some(),
        })
    }

    /// `bgp routes --family evpn [--vni N] [--prefix P]` (a prefix matches type 5 routes and
    /// type 2 routes with an IP inside it).
    pub(super) fn evpn_routes(&self, prefix: Option<IpNet>, vni: Option<u32>) -> Value {
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
        let routes: Vec<Value> = entries
            .into_iter()
            .take(ROUTES_LIMIT)
            .map(|(key, candidates)| evpn_route_json(&key, &candidates.to_vec()))
            .collect();
        json!({"routes": routes, "truncated": truncated})
    }
}
