//! Update groups: peers whose exported routes would be identical (same eBGP/iBGP role, route
//! reflector client flag, next-hop-self addresses, negotiated encoding and families) share one
//! group. A group keeps the Adj-RIB-Out its members were sent; a change of the Loc-RIB is
//! exported and encoded with [`pack_announcements`] once per group and the same bytes are sent
//! to every member.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::policy::{export, ExportTarget};
use crate::rib::{Candidate, Path, SourceInfo};
use crate::session::SessionCommand;
use ztos_bgp_codec::{
    pack_announcements, pack_withdrawals, Context, EvpnRoute, Family, IpPrefix, Message, NextHop,
    NlriEntry, NlriList, Update,
};

use super::evpn::encode_evpn;
use super::{family_of, Speaker};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct GroupKey {
    pub(super) target: ExportTarget,
    pub(super) context: Context,
    pub(super) families: Vec<Family>,
}

/// Prefixes whose best route changed since the last flush, each with the best route it had
/// before its first change: what the groups were last sent was exported from that one, so no
/// per-prefix Adj-RIB-Out is kept (as BIRD keeps none): the flush exports old and new and
/// sends the difference.
#[derive(Default)]
pub(super) struct Dirty {
    /// Per prefix: the best route when the prefix was first noted (what the groups were sent
    /// from) and the best route now (so the flush does not look the prefix up again).
    pub(super) changes: crate::rib::FastMap<IpPrefix, (Option<Candidate>, Option<Candidate>)>,
}

/// A flush's changed prefixes with their first and last best routes ([`Dirty`]).
pub(super) type Changes = Vec<(IpPrefix, (Option<Candidate>, Option<Candidate>))>;

impl Dirty {
    pub(super) fn note(
        &mut self,
        prefix: IpPrefix,
        old: Option<Candidate>,
        new: Option<Candidate>,
    ) {
        match self.changes.entry(prefix) {
            std::collections::hash_map::Entry::Occupied(mut o) => o.get_mut().1 = new,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((old, new));
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.changes.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// One flush's exports: each (best path, source) pair is exported and interned once, not
/// once per prefix; the pairs are held so that their addresses stay unique meanwhile.
#[derive(Default)]
pub(super) struct ExportMemo {
    pub(super) exported: HashMap<(usize, usize), Option<Arc<Path>>>,
    pub(super) held: Vec<(Arc<Path>, Arc<SourceInfo>)>,
}

/// What exporting to one group depends on.
pub(super) struct ExportTo<'a> {
    pub(super) target: &'a ExportTarget,
    pub(super) local_as: u32,
    pub(super) cluster_id: Ipv4Addr,
    /// The only member, when there is one: its own routes are not sent back to it.
    pub(super) single: Option<IpAddr>,
}

impl ExportMemo {
    pub(super) fn export(
        &mut self,
        candidate: &Candidate,
        to: &ExportTo<'_>,
        interner: &mut crate::rib::Interner,
    ) -> Option<Arc<Path>> {
        if candidate.source.peer.is_some() && to.single == Some(candidate.source.address) {
            return None;
        }
        let key = (
            Arc::as_ptr(&candidate.path) as usize,
            Arc::as_ptr(&candidate.source) as usize,
        );
        if let Some(out) = self.exported.get(&key) {
            return out.clone();
        }
        let out = export(
            &candidate.path,
            &candidate.source,
            to.target,
            to.local_as,
            to.cluster_id,
        )
        .map(|p| interner.intern(p));
        self.held
            .push((candidate.path.clone(), candidate.source.clone()));
        self.exported.insert(key, out.clone());
        out
    }
}

/// Announcements batched by exported path (by address: the batch holds the path).
#[derive(Default)]
pub(super) struct Batches {
    pub(super) slot: HashMap<usize, usize>,
    pub(super) list: Vec<(Arc<Path>, Vec<IpPrefix>)>,
}

impl Batches {
    pub(super) fn push(&mut self, path: Arc<Path>, prefix: IpPrefix) {
        let list = &mut self.list;
        let at = *self
            .slot
            .entry(Arc::as_ptr(&path) as usize)
            .or_insert_with(|| {
                list.push((path, Vec::new()));
                list.len() - 1
            });
        self.list[at].1.push(prefix);
    }
}

pub(super) struct Group {
    pub(super) key: GroupKey,
    pub(super) members: Vec<IpAddr>,
    /// Prefixes the group's members were sent (and not withdrawn since).
    pub(super) advertised: usize,
    /// EVPN routes sent, by route key (the path carries the whole NLRI).
    pub(super) evpn_out: HashMap<EvpnRoute, Arc<Path>>,
}

/// UPDATEs announcing `announce` (grouped by path) and withdrawing `withdraw`.
pub(super) fn encode(
    context: &Context,
    announce: &[(Arc<Path>, Vec<IpPrefix>)],
    withdraw: &[IpPrefix],
    on_error: &mut dyn FnMut(String),
) -> Vec<Arc<Vec<u8>>> {
    let mut out = Vec::new();
    let (mut w4, mut w6) = (Vec::new(), Vec::new());
    for p in withdraw {
        match p {
            IpPrefix::V4(p) => w4.push(NlriEntry::new(*p)),
            IpPrefix::V6(p) => w6.push(NlriEntry::new(*p)),
        }
    }
    for list in [NlriList::Ipv4(w4), NlriList::Ipv6(w6)] {
        if list.is_empty() {
            continue;
        }
        match pack_withdrawals(context, &list) {
            Ok(messages) => out.extend(messages.into_iter().map(Arc::new)),
            Err(e) => on_error(format!("cannot encode withdrawals: {e}")),
        }
    }
    for (path, list) in announce {
        let (mut a4, mut a6) = (Vec::new(), Vec::new());
        for p in list {
            match p {
                IpPrefix::V4(p) => a4.push(NlriEntry::new(*p)),
                IpPrefix::V6(p) => a6.push(NlriEntry::new(*p)),
            }
        }
        if !a4.is_empty() {
            // IPv4 routes with an IPv4 next hop go in the NLRI field.
            let mp = match path.next_hop {
                NextHop::Ipv4(_) => None,
                _ => Some(&path.next_hop),
            };
            match pack_announcements(context, &path.attributes, mp, &NlriList::Ipv4(a4)) {
                Ok(messages) => out.extend(messages.into_iter().map(Arc::new)),
                Err(e) => on_error(format!("cannot encode an IPv4 announcement: {e}")),
            }
        }
        if !a6.is_empty() {
            match pack_announcements(
                context,
                &path.attributes,
                Some(&path.next_hop),
                &NlriList::Ipv6(a6),
            ) {
                Ok(messages) => out.extend(messages.into_iter().map(Arc::new)),
                Err(e) => on_error(format!("cannot encode an IPv6 announcement: {e}")),
            }
        }
    }
    out
}

impl Speaker {
    /// Exports the changed prefixes to every group and sends the encoded differences.
    pub(super) fn flush(&mut self, dirty: &mut Dirty) {
        if dirty.is_empty() && self.evpn_dirty.is_empty() {
            return;
        }
        let changes: Changes = dirty.changes.drain().collect();
        let mut evpn_dirty = std::mem::take(&mut self.evpn_dirty);
        let mut seen = HashSet::with_capacity(evpn_dirty.len());
        evpn_dirty.retain(|k| seen.insert(k.clone()));
        let group_ids: Vec<u64> = self.groups.keys().copied().collect();
        for id in group_ids {
            let mut messages = self.export_group(id, &changes);
            messages.extend(self.export_evpn(id, &evpn_dirty));
            self.send_to_group(id, messages, None);
        }
    }

    /// The UPDATEs that bring group `id`'s members from what they were sent (exported from
    /// each change's old best route) to the current best routes.
    pub(super) fn export_group(&mut self, id: u64, changes: &Changes) -> Vec<Arc<Vec<u8>>> {
        let Some(config) = self.config.as_ref() else {
            return Vec::new();
        };
        let local_as = config.local_as;
        let cluster_id = self.router_id;
        let Some(group) = self.groups.get_mut(&id) else {
            return Vec::new();
        };
        let to = ExportTo {
            target: &group.key.target,
            local_as,
            cluster_id,
            single: (group.members.len() == 1).then(|| group.members[0]),
        };
        let mut memo = ExportMemo::default();
        let mut batches = Batches::default();
        let mut withdraw: Vec<IpPrefix> = Vec::new();
        // Out of the RIB for the loop, so that interning does not conflict with reading it.
        let mut interner = std::mem::take(&mut self.rib.interner);
        for (prefix, (old, new)) in changes {
            if !group.key.families.contains(&family_of(prefix)) {
                continue;
            }
            let new = new
                .as_ref()
                .and_then(|best| memo.export(best, &to, &mut interner));
            let sent = old
                .as_ref()
                .and_then(|old| memo.export(old, &to, &mut interner));
            match (sent, new) {
                (Some(sent), Some(new)) if Arc::ptr_eq(&sent, &new) => {}
                (sent, Some(new)) => {
                    if sent.is_none() {
                        group.advertised += 1;
                    }
                    batches.push(new, *prefix);
                }
                (Some(_), None) => {
                    group.advertised = group.advertised.saturating_sub(1);
                    withdraw.push(*prefix);
                }
                (None, None) => {}
            }
        }
        drop(memo);
        self.rib.interner = interner;
        encode(&group.key.context, &batches.list, &withdraw, &mut |e| {
            self.report.log(true, e)
        })
    }

    /// Every best route as group `id` gets it (of `family`, or all): the UPDATEs and how many
    /// prefixes they carry.
    pub(super) fn export_all(
        &mut self,
        id: u64,
        family: Option<Family>,
    ) -> (Vec<Arc<Vec<u8>>>, usize) {
        let Some(config) = self.config.as_ref() else {
            return (Vec::new(), 0);
        };
        let local_as = config.local_as;
        let cluster_id = self.router_id;
        let Some(group) = self.groups.get(&id) else {
            return (Vec::new(), 0);
        };
        let to = ExportTo {
            target: &group.key.target,
            local_as,
            cluster_id,
            single: (group.members.len() == 1).then(|| group.members[0]),
        };
        let mut memo = ExportMemo::default();
        let mut batches = Batches::default();
        let mut count = 0;
        let mut interner = std::mem::take(&mut self.rib.interner);
        for (prefix, candidates) in self.rib.entries() {
            let f = family_of(&prefix);
            if !group.key.families.contains(&f) || family.is_some_and(|want| want != f) {
                continue;
            }
            if let Some(path) = candidates
                .first()
                .and_then(|best| memo.export(best, &to, &mut interner))
            {
                batches.push(path, prefix);
                count += 1;
            }
        }
        drop(memo);
        self.rib.interner = interner;
        let context = group.key.context;
        let messages = encode(&context, &batches.list, &[], &mut |e| {
            self.report.log(true, e)
        });
        (messages, count)
    }

    /// Sends a group's whole Adj-RIB-Out (computed first for a `fresh` group) to one member,
    /// then End-of-RIB.
    pub(super) fn replay(&mut self, group: u64, to: IpAddr, family: Option<Family>, fresh: bool) {
        let (mut messages, count) = self.export_all(group, family);
        if fresh {
            if let Some(g) = self.groups.get_mut(&group) {
                g.advertised = count;
            }
        }
        if family.is_none_or(|f| f == Family::L2VPN_EVPN) {
            if fresh {
                let keys: Vec<EvpnRoute> = self.evpn_rib.entries().map(|(k, _)| k).collect();
                messages.extend(self.export_evpn(group, &keys));
            } else if let Some(g) = self.groups.get(&group) {
                let mut announce: HashMap<Path, Vec<EvpnRoute>> = HashMap::new();
                for (key, path) in &g.evpn_out {
                    let route = path.evpn.clone().unwrap_or_else(|| key.clone());
                    let shared = Path {
                        evpn: None,
                        ..(**path).clone()
                    };
                    announce.entry(shared).or_default().push(route);
                }
                let context = g.key.context;
                messages.extend(encode_evpn(&context, announce, Vec::new(), &mut |e| {
                    self.report.log(true, e)
                }));
            }
        }
        if let Some(g) = self.groups.get(&group) {
            for f in &g.key.families {
                if family.is_none_or(|wanted| wanted == *f) {
                    if let Ok(bytes) =
                        Message::Update(Update::end_of_rib(*f)).to_bytes(&g.key.context)
                    {
                        messages.push(Arc::new(bytes));
                    }
                }
            }
        }
        self.send_to_group(group, messages, Some(to));
    }

    pub(super) fn send_to_group(
        &mut self,
        group: u64,
        messages: Vec<Arc<Vec<u8>>>,
        only: Option<IpAddr>,
    ) {
        if messages.is_empty() {
            return;
        }
        let Some(g) = self.groups.get(&group) else {
            return;
        };
        for member in &g.members {
            if only.is_some_and(|o| o != *member) {
                continue;
            }
            if let Some(n) = self.neighbors.get_mut(member) {
                for m in &messages {
                    n.handle.send(SessionCommand::Send(m.clone()));
                }
                n.updates_sent += messages.len() as u64;
            }
        }
    }
}
