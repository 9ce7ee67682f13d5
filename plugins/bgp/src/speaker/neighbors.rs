//! Neighbors: adding and removing them, their sessions' events, a session coming up or going
//! down, and the UPDATEs they send (import policy, RFC 7606 handling, max-prefix).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{canonical, BgpConfig, NeighborConfig};
use crate::evpn::route_key;
use crate::policy::{import, ExportTarget};
use crate::rib::{AdjIn, SourceInfo};
use crate::session::{
    Established, SessionCommand, SessionConfig, SessionEvent, SessionHandle, State,
};
use ztos_bgp_codec::notification::{code, subcode};
use ztos_bgp_codec::GracefulRestart;
use ztos_bgp_codec::{Family, IpPrefix, NextHop, NlriList, Notification, PathAttributes, Update};

use super::update_groups::{Dirty, Group, GroupKey};
use super::{family_of, Neighbor, Speaker, Up, CONNECT_RETRY, STALE_TIME};

pub(super) fn prefixes(list: &NlriList) -> Vec<IpPrefix> {
    match list {
        NlriList::Ipv4(v) => v.iter().map(|e| IpPrefix::V4(e.nlri)).collect(),
        NlriList::Ipv6(v) => v.iter().map(|e| IpPrefix::V6(e.nlri)).collect(),
        // EVPN is handled by the EVPN part of the speaker, not yet built; others are opaque.
        NlriList::Evpn(_) | NlriList::Other { .. } => Vec::new(),
    }
}

impl Speaker {
    pub(super) fn add_neighbor(&mut self, config: NeighborConfig, bgp: &BgpConfig) {
        let id = self.next_session;
        self.next_session += 1;
        let address = canonical(config.address);
        let session = SessionConfig {
            local_as: bgp.local_as,
            router_id: self.router_id,
            peer: address,
            remote_as: config.remote_as,
            port: bgp.port(),
            passive: config.passive,
            hold_time: config.hold_time(),
            families: config.families(),
            password: config.password.clone(),
            connect_retry: CONNECT_RETRY,
            graceful_restart: Some(self.restart_capability(&config.families())),
        };
        let handle = SessionHandle::spawn(id, session, self.events_tx.clone());
        self.sessions.insert(id, address);
        self.neighbors.insert(
            address,
            Neighbor {
                config,
                session: id,
                handle,
                state: State::Idle,
                up: None,
                updates_received: 0,
                updates_sent: 0,
                last_error: None,
                established_count: 0,
            },
        );
    }

    pub(super) async fn remove_neighbor(&mut self, address: IpAddr, cease: u8, dirty: &mut Dirty) {
        let Some(mut neighbor) = self.neighbors.remove(&address) else {
            return;
        };
        self.sessions.remove(&neighbor.session);
        self.flush_stale(address, None, dirty);
        if let Some(up) = neighbor.up.take() {
            self.session_down(address, up, dirty);
            self.report.event(
                "neighbor_down",
                format!(
                    "neighbor {address} went down: removed from the configuration or reconfigured"
                ),
            );
        }
        neighbor
            .handle
            .stop(Notification::new(code::CEASE, cease, Vec::new()))
            .await;
    }

    pub(super) fn handle_event(&mut self, id: u64, event: SessionEvent, dirty: &mut Dirty) {
        let Some(&address) = self.sessions.get(&id) else {
            return;
        };
        match event {
            SessionEvent::State(state) => {
                if let Some(n) = self.neighbors.get_mut(&address) {
                    n.state = state;
                }
            }
            SessionEvent::Log { warn, message } => self.report.log(warn, message),
            SessionEvent::Established(info) => self.session_up(address, info, dirty),
            SessionEvent::Down {
                reason,
                was_established,
                graceful,
            } => {
                let Some(neighbor) = self.neighbors.get_mut(&address) else {
                    return;
                };
                let repeated = neighbor.last_error.as_deref() == Some(reason.as_str());
                neighbor.last_error = Some(reason.clone());
                if was_established {
                    let mut kept = None;
                    if let Some(up) = neighbor.up.take() {
                        // RFC 4724 §4.2: only the families the peer listed in its capability
                        // (FRR's default helper-only capability lists none).
                        let restart = up
                            .info
                            .peer_restart
                            .as_ref()
                            .filter(|gr| gr.restart_time > 0 && !gr.families.is_empty())
                            .map(|gr| {
                                (
                                    gr.restart_time,
                                    gr.families.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
                                )
                            });
                        match restart {
                            Some((restart_time, families)) if graceful => {
                                let routes =
                                    self.keep_stale(address, up, restart_time, &families, dirty);
                                kept = Some((routes, restart_time));
                            }
                            _ => self.session_down(address, up, dirty),
                        }
                    }
                    let message = match kept {
                        Some((routes, seconds)) => format!(
                            "neighbor {address} went down: {reason}; its {routes} routes are kept as stale for up to {seconds} s while it restarts (graceful restart)"
                        ),
                        None => format!("neighbor {address} went down: {reason}"),
                    };
                    self.report.event("neighbor_down", message);
                } else if !repeated {
                    self.report
                        .log(false, format!("neighbor {address}: {reason}"));
                }
            }
            SessionEvent::Update(update, _slot) => {
                if let Some(n) = self.neighbors.get_mut(&address) {
                    n.updates_received += 1;
                }
                self.receive_update(address, *update, dirty);
            }
            SessionEvent::Withdraw(lists) => {
                if let Some(n) = self.neighbors.get_mut(&address) {
                    n.updates_received += 1;
                }
                let Some(source) = self.source_of(address) else {
                    return;
                };
                for list in lists {
                    if let NlriList::Evpn(routes) = &list {
                        for entry in routes {
                            if let Some(change) =
                                self.evpn_rib.set(&source, route_key(&entry.nlri), None)
                            {
                                self.record_evpn(change);
                            }
                        }
                    }
                    for prefix in prefixes(&list) {
                        let change = self.rib.set(&source, prefix, None);
                        self.record(change, dirty);
                    }
                }
            }
            SessionEvent::RouteRefresh(family) => {
                let Some(group) = self
                    .neighbors
                    .get(&address)
                    .and_then(|n| n.up.as_ref())
                    .map(|u| u.group)
                else {
                    return;
                };
                self.replay(group, address, Some(family), false);
            }
        }
    }

    pub(super) fn source_of(&self, address: IpAddr) -> Option<Arc<SourceInfo>> {
        self.neighbors
            .get(&address)?
            .up
            .as_ref()
            .map(|u| u.source.clone())
    }

    pub(super) fn session_up(&mut self, address: IpAddr, info: Established, dirty: &mut Dirty) {
        let Some(config) = self.config.clone() else {
            return;
        };
        if self.stale.contains_key(&address) {
            // RFC 4724 §4.2: the restarted peer's stale routes wait for its End-of-RIB,
            // except the families it did not preserve forwarding for (or all of them, when
            // it no longer does graceful restart).
            match &info.peer_restart {
                None => {
                    self.flush_stale(address, None, dirty);
                }
                Some(gr) => {
                    for family in [
                        Family::IPV4_UNICAST,
                        Family::IPV6_UNICAST,
                        Family::L2VPN_EVPN,
                    ] {
                        let preserved = gr.families.iter().any(|(f, flags)| {
                            *f == family && flags & GracefulRestart::FORWARDING_PRESERVED != 0
                        });
                        if !preserved {
                            self.flush_stale(address, Some(family), dirty);
                        }
                    }
                    if let Some(stale) = self.stale.get_mut(&address) {
                        stale.deadline = Instant::now() + STALE_TIME;
                    }
                }
            }
        }
        let Some(neighbor) = self.neighbors.get(&address) else {
            return;
        };
        let ebgp = neighbor.config.remote_as != config.local_as;
        let rr_client = neighbor.config.route_reflector_client;
        let source = Arc::new(SourceInfo {
            peer: Some(neighbor.session),
            address,
            router_id: info.remote_router_id,
            ebgp,
            rr_client,
        });
        let (local_v4, local_v6) = match info.local_address {
            IpAddr::V4(v4) => (Some(v4), None),
            IpAddr::V6(v6) => (None, Some(v6)),
        };
        let mut families = info.families.clone();
        families.sort();
        let key = GroupKey {
            target: ExportTarget {
                ebgp,
                rr_client,
                local_v4,
                local_v6,
            },
            context: info.negotiated.send,
            families,
        };
        let existing = self
            .groups
            .iter()
            .find(|(_, g)| g.key == key)
            .map(|(id, _)| *id);
        let (group, fresh) = match existing {
            Some(id) => (id, false),
            None => {
                let id = self.next_group;
                self.next_group += 1;
                self.groups.insert(
                    id,
                    Group {
                        key,
                        members: Vec::new(),
                        advertised: 0,
                        evpn_out: HashMap::new(),
                    },
                );
                (id, true)
            }
        };
        if let Some(g) = self.groups.get_mut(&group) {
            g.members.push(address);
        }
        let families = info.families.clone();
        let description = format!(
            "neighbor {address} (AS {}, router id {}) is up: hold time {} s, families {}",
            info.remote_as,
            info.remote_router_id,
            info.hold_time,
            families
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(n) = self.neighbors.get_mut(&address) {
            n.up = Some(Up {
                since: Instant::now(),
                info,
                source,
                group,
                end_of_rib: HashSet::new(),
            });
            n.last_error = None;
            n.established_count += 1;
        }
        self.report.event("neighbor_up", description);
        // The initial table: computed for a new group, the group's Adj-RIB-Out otherwise.
        self.replay(group, address, None, fresh);
    }

    pub(super) fn session_down(&mut self, address: IpAddr, up: Up, dirty: &mut Dirty) {
        // Stale routes of an earlier restart go with the rest.
        self.stale.remove(&address);
        for change in self.rib.drop_peer(&up.source) {
            self.record(Some(change), dirty);
        }
        for change in self.evpn_rib.drop_peer(&up.source) {
            self.record_evpn(change);
        }
        self.leave_group(address, up.group);
    }

    pub(super) fn leave_group(&mut self, address: IpAddr, group: u64) {
        if let Some(g) = self.groups.get_mut(&group) {
            g.members.retain(|m| *m != address);
            if g.members.is_empty() {
                self.groups.remove(&group);
            }
        }
    }

    pub(super) fn receive_update(&mut self, address: IpAddr, update: Update, dirty: &mut Dirty) {
        let Some(config) = self.config.clone() else {
            return;
        };
        let Some(neighbor) = self.neighbors.get(&address) else {
            return;
        };
        let Some(up) = neighbor.up.as_ref() else {
            return;
        };
        let source = up.source.clone();
        let families = up.info.families.clone();
        let max_prefixes = neighbor.config.max_prefixes;
        if let Some(family) = update.end_of_rib_family() {
            tracing::debug!("neighbor {address}: End-of-RIB for {family}");
            if let Some(up) = self.neighbors.get_mut(&address).and_then(|n| n.up.as_mut()) {
                up.end_of_rib.insert(family);
            }
            let removed = self.flush_stale(address, Some(family), dirty);
            if removed > 0 {
                self.report.log(
                    false,
                    format!("neighbor {address}: End-of-RIB for {family} after its restart; {removed} stale routes it did not send again removed"),
                );
            }
            return;
        }
        let Update {
            withdrawn,
            attributes,
            mp_reach,
            mp_unreach,
            nlri,
        } = update;
        if let Some(NlriList::Evpn(routes)) = mp_unreach.as_ref().map(|u| &u.withdrawn) {
            for entry in routes {
                if let Some(change) = self.evpn_rib.set(&source, route_key(&entry.nlri), None) {
                    self.record_evpn(change);
                }
            }
        }
        if let Some(reach) = mp_reach.as_ref() {
            if let NlriList::Evpn(routes) = &reach.nlri {
                if families.contains(&Family::L2VPN_EVPN) {
                    let mut evpn_attributes = attributes.clone();
                    evpn_attributes.next_hop = None;
                    let (path, verdict) = import(
                        evpn_attributes,
                        reach.next_hop.clone(),
                        &source,
                        config.local_as,
                        self.router_id,
                        self.router_id,
                    );
                    for entry in routes {
                        if let Some(stale) = self.stale.get_mut(&address) {
                            stale.evpn.remove(&route_key(&entry.nlri));
                        }
                        let mut path = path.clone();
                        path.evpn = Some(entry.nlri.clone());
                        let path = self.evpn_rib.interner.intern(path);
                        let change = self.evpn_rib.set(
                            &source,
                            route_key(&entry.nlri),
                            Some(AdjIn {
                                path,
                                accepted: verdict.is_ok(),
                            }),
                        );
                        if let Some(change) = change {
                            self.record_evpn(change);
                        }
                    }
                }
            }
        }
        for entry in withdrawn {
            let change = self.rib.set(&source, IpPrefix::V4(entry.nlri), None);
            self.record(change, dirty);
        }
        if let Some(unreach) = mp_unreach {
            for prefix in prefixes(&unreach.withdrawn) {
                let change = self.rib.set(&source, prefix, None);
                self.record(change, dirty);
            }
        }
        let mut announce = |speaker: &mut Speaker,
                            list: Vec<IpPrefix>,
                            next_hop: NextHop,
                            attributes: PathAttributes| {
            if list.is_empty() {
                return;
            }
            let (path, verdict) = import(
                attributes,
                next_hop,
                &source,
                config.local_as,
                speaker.router_id,
                speaker.router_id,
            );
            let path = speaker.rib.interner.intern(path);
            let accepted = verdict.is_ok();
            for prefix in list {
                if !families.contains(&family_of(&prefix)) {
                    continue;
                }
                if !speaker.stale.is_empty() {
                    if let Some(stale) = speaker.stale.get_mut(&address) {
                        stale.prefixes.remove(&prefix);
                    }
                }
                let change = speaker.rib.set(
                    &source,
                    prefix,
                    Some(AdjIn {
                        path: path.clone(),
                        accepted,
                    }),
                );
                speaker.record(change, dirty);
            }
        };
        if !nlri.is_empty() {
            if let Some(next_hop) = attributes.next_hop {
                let list = nlri.into_iter().map(|e| IpPrefix::V4(e.nlri)).collect();
                announce(self, list, NextHop::Ipv4(next_hop), attributes.clone());
            }
        }
        if let Some(reach) = mp_reach {
            let list = prefixes(&reach.nlri);
            let mut attributes = attributes;
            attributes.next_hop = match reach.next_hop {
                NextHop::Ipv4(a) if reach.nlri.family() == Family::IPV4_UNICAST => Some(a),
                _ => None,
            };
            announce(self, list, reach.next_hop, attributes);
        }
        if let Some(limit) = max_prefixes {
            let (received, _) = self.rib.counts(source.peer.unwrap_or_default());
            if received > limit as usize {
                // RFC 4486 §4: AFI, SAFI and the limit.
                let mut data = Family::IPV4_UNICAST.afi.to_be_bytes().to_vec();
                data.push(Family::IPV4_UNICAST.safi);
                data.extend_from_slice(&limit.to_be_bytes());
                let reason = format!(
                    "neighbor {address} sent {received} prefixes, more than max_prefixes {limit}"
                );
                self.report.log(true, reason.clone());
                if let Some(n) = self.neighbors.get(&address) {
                    n.handle.send(SessionCommand::Reset(
                        Notification::new(
                            code::CEASE,
                            subcode::MAXIMUM_NUMBER_OF_PREFIXES_REACHED,
                            data,
                        ),
                        reason,
                    ));
                }
            }
        }
    }
}
