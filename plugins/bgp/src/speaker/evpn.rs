//! The speaker's EVPN part: the L2 segments and L3 tenants it originates routes for, local
//! MACs, EVPN best-route changes into kernel ops, and EVPN routes encoded for groups.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::config::L3Tenant;
use crate::evpn::{self, route_key};
use crate::evpn_kernel::{EvpnOp, L2Segment, LocalMac};
use crate::policy::export;
use crate::rib::{AdjIn, Path};
use ztos_bgp_codec::{
    pack_announcements, pack_withdrawals, Context, EvpnRoute, Family, NlriEntry, NlriList,
};

use super::Speaker;

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub(super) fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// UPDATEs announcing EVPN routes (grouped by their shared attributes and next hop) and
/// withdrawing others.
pub(super) fn encode_evpn(
    context: &Context,
    announce: HashMap<Path, Vec<EvpnRoute>>,
    withdraw: Vec<EvpnRoute>,
    on_error: &mut dyn FnMut(String),
) -> Vec<Arc<Vec<u8>>> {
    let mut out = Vec::new();
    if !withdraw.is_empty() {
        let list = NlriList::Evpn(withdraw.into_iter().map(NlriEntry::new).collect());
        match pack_withdrawals(context, &list) {
            Ok(messages) => out.extend(messages.into_iter().map(Arc::new)),
            Err(e) => on_error(format!("cannot encode EVPN withdrawals: {e}")),
        }
    }
    for (path, routes) in announce {
        let list = NlriList::Evpn(routes.into_iter().map(NlriEntry::new).collect());
        match pack_announcements(context, &path.attributes, Some(&path.next_hop), &list) {
            Ok(messages) => out.extend(messages.into_iter().map(Arc::new)),
            Err(e) => on_error(format!("cannot encode an EVPN announcement: {e}")),
        }
    }
    out
}

impl Speaker {
    /// Brings group `id`'s EVPN Adj-RIB-Out up to date for `keys`; the UPDATEs to send. EVPN
    /// routes keep their next hop (the originating VTEP) towards every peer, as FRR and GoBGP
    /// do: the next hop is the tunnel endpoint, not the BGP session's address.
    pub(super) fn export_evpn(&mut self, id: u64, keys: &[EvpnRoute]) -> Vec<Arc<Vec<u8>>> {
        let Some(config) = self.config.as_ref() else {
            return Vec::new();
        };
        let local_as = config.local_as;
        let cluster_id = self.router_id;
        let Some(group) = self.groups.get_mut(&id) else {
            return Vec::new();
        };
        if !group.key.families.contains(&Family::L2VPN_EVPN) {
            return Vec::new();
        }
        let mut announce: HashMap<Path, Vec<EvpnRoute>> = HashMap::new();
        let mut withdraw: Vec<EvpnRoute> = Vec::new();
        for key in keys {
            let desired = self.evpn_rib.best(key).and_then(|best| {
                if best.source.peer.is_some()
                    && group.members.len() == 1
                    && group.members[0] == best.source.address
                {
                    return None;
                }
                let mut path = export(
                    &best.path,
                    &best.source,
                    &group.key.target,
                    local_as,
                    cluster_id,
                )?;
                path.next_hop = best.path.next_hop.clone();
                path.attributes.next_hop = None;
                Some(path)
            });
            match desired {
                Some(path) => {
                    let path = self.evpn_rib.interner.intern(path);
                    if group
                        .evpn_out
                        .get(key)
                        .is_some_and(|p| Arc::ptr_eq(p, &path))
                    {
                        continue;
                    }
                    group.evpn_out.insert(key.clone(), path.clone());
                    let route = path.evpn.clone().unwrap_or_else(|| key.clone());
                    let shared = Path {
                        evpn: None,
                        ..(*path).clone()
                    };
                    announce.entry(shared).or_default().push(route);
                }
                None => {
                    if let Some(old) = group.evpn_out.remove(key) {
                        withdraw.push(old.evpn.clone().unwrap_or_else(|| key.clone()));
                    }
                }
            }
        }
        let context = group.key.context;
        encode_evpn(&context, announce, withdraw, &mut |e| {
            self.report.log(true, e)
        })
    }

    /// New L2 segments and tenants (from a commit): the kernel view follows, the local MAC watcher is
    /// told, every best EVPN route is read again (a new segment imports routes that were
    /// already there), and the originated routes are brought up to date.
    pub(super) fn set_evpn(&mut self, segments: &[L2Segment], tenants: &[L3Tenant]) {
        let mut ops = Vec::new();
        self.evpn_view.set_segments(segments, &mut ops);
        self.evpn_view.set_tenants(tenants, &mut ops);
        let keys: Vec<EvpnRoute> = self.evpn_rib.entries().map(|(k, _)| k).collect();
        for key in keys {
            let imported = self
                .evpn_rib
                .best(&key)
                .filter(|c| c.source.peer.is_some())
                .and_then(|c| self.evpn_view.read(&c.path));
            self.evpn_view.change(&key, imported, &mut ops);
        }
        self.send_evpn(ops);
        let vnis: HashSet<u32> = segments.iter().map(|s| s.vni).collect();
        self.local_macs.retain(|(vni, _), _| vnis.contains(vni));
        if let Some(tx) = &self.evpn_segments {
            tx.send_if_modified(|current| {
                if current.as_slice() == segments {
                    false
                } else {
                    *current = segments.to_vec();
                    true
                }
            });
        }
        self.originate_evpn();
    }

    /// The routes this node originates for its segments and local MACs, in the Loc-RIB.
    pub(super) fn originate_evpn(&mut self) {
        let mut wanted: HashMap<EvpnRoute, Path> = HashMap::new();
        if let Some(config) = &self.config {
            let segments = self.evpn_view.segments();
            for segment in segments.values() {
                let path = evpn::inclusive_multicast(segment, self.router_id, config.local_as);
                if let Some(route) = &path.evpn {
                    wanted.insert(route_key(route), path);
                }
            }
            for tenant in self.evpn_view.tenants().values() {
                // Symmetric IRB: the router MAC is the L3 VNI bridge's, which ztosd created.
                let mac =
                    std::fs::read_to_string(format!("/sys/class/net/{}/address", tenant.l3_bridge))
                        .ok()
                        .and_then(|text| parse_mac(text.trim()));
                let Some(mac) = mac else {
                    self.report.log(
                        true,
                        format!(
                            "tenant {}: no MAC address for its L3 bridge {}; its prefixes are not advertised as EVPN type 5 routes",
                            tenant.name, tenant.l3_bridge
                        ),
                    );
                    continue;
                };
                for prefix in &tenant.prefixes {
                    if let Some(path) =
                        evpn::ip_prefix_route(tenant, *prefix, mac, self.router_id, config.local_as)
                    {
                        if let Some(route) = &path.evpn {
                            wanted.insert(route_key(route), path);
                        }
                    }
                }
            }
            for ((vni, mac), sequence) in &self.local_macs {
                if let Some(segment) = segments.get(vni) {
                    let path = evpn::mac_advertisement(
                        segment,
                        *mac,
                        (*sequence > 0).then_some(*sequence),
                        self.router_id,
                        config.local_as,
                    );
                    if let Some(route) = &path.evpn {
                        wanted.insert(route_key(route), path);
                    }
                }
            }
        }
        let local = self.local.clone();
        let old: Vec<EvpnRoute> = self.evpn_originated.iter().cloned().collect();
        for key in old {
            if !wanted.contains_key(&key) {
                if let Some(change) = self.evpn_rib.set(&local, key.clone(), None) {
                    self.record_evpn(change);
                }
                self.evpn_originated.remove(&key);
            }
        }
        for (key, path) in wanted {
            let path = self.evpn_rib.interner.intern(path);
            let change = self.evpn_rib.set(
                &local,
                key.clone(),
                Some(AdjIn {
                    path,
                    accepted: true,
                }),
            );
            if let Some(change) = change {
                self.record_evpn(change);
            }
            self.evpn_originated.insert(key);
        }
    }

    /// A MAC learned on (or gone from) a local port of a segment.
    pub(super) fn local_mac(&mut self, event: LocalMac) {
        let (vni, mac, learned) = match event {
            LocalMac::Learned { vni, mac } => (vni, mac, true),
            LocalMac::Gone { vni, mac } => (vni, mac, false),
        };
        let Some(config) = &self.config else {
            return;
        };
        let Some(segment) = self.evpn_view.segments().get(&vni).cloned() else {
            return;
        };
        let local_as = config.local_as;
        let mut ops = Vec::new();
        let path = if learned {
            if self.local_macs.contains_key(&(vni, mac)) {
                return;
            }
            // RFC 7432 §15.1: a MAC that moved here from a remote VTEP is advertised with a
            // higher sequence number than that VTEP's.
            let sequence = self
                .evpn_view
                .remote_sequence(vni, mac)
                .map_or(0, |s| s.saturating_add(1));
            self.local_macs.insert((vni, mac), sequence);
            self.evpn_view.set_local(vni, mac, Some(sequence), &mut ops);
            evpn::mac_advertisement(
                &segment,
                mac,
                (sequence > 0).then_some(sequence),
                self.router_id,
                local_as,
            )
        } else {
            if self.local_macs.remove(&(vni, mac)).is_none() {
                return;
            }
            self.evpn_view.set_local(vni, mac, None, &mut ops);
            evpn::mac_advertisement(&segment, mac, None, self.router_id, local_as)
        };
        self.send_evpn(ops);
        let Some(key) = path.evpn.as_ref().map(route_key) else {
            return;
        };
        let local = self.local.clone();
        let route = if learned {
            self.evpn_originated.insert(key.clone());
            Some(AdjIn {
                path: self.evpn_rib.interner.intern(path),
                accepted: true,
            })
        } else {
            self.evpn_originated.remove(&key);
            None
        };
        if let Some(change) = self.evpn_rib.set(&local, key, route) {
            self.record_evpn(change);
        }
    }

    /// Notes a change of the best EVPN route: the kernel view follows at once, peers at the
    /// next flush.
    pub(super) fn record_evpn(&mut self, change: crate::rib::BestChange<EvpnRoute>) {
        let imported = change
            .new
            .as_ref()
            .filter(|c| c.source.peer.is_some())
            .and_then(|c| self.evpn_view.read(&c.path));
        let mut ops = Vec::new();
        self.evpn_view.change(&change.prefix, imported, &mut ops);
        self.send_evpn(ops);
        self.evpn_dirty.push(change.prefix);
    }

    pub(super) fn send_evpn(&self, ops: Vec<EvpnOp>) {
        if let Some(sender) = &self.evpn_ops {
            for op in ops {
                let _ = sender.send(op);
            }
        }
    }
}
