//! The routing information bases (RFC 4271 §3.2): an Adj-RIB-In per peer, the Loc-RIB with the
//! §9.1 decision process, and interned path attribute sets.
//!
//! Memory: a route is a compact [`IpPrefix`] (18 bytes, byte-aligned) in one map whose value
//! holds its candidates (one per source, best first, the first inline), each an `Arc` to its
//! source and to an interned [`Path`]; thousands of routes sharing attributes share one
//! `Path`. Adj-RIBs-In are the candidates of each peer in that map.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use smallvec::SmallVec;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::codec::{EvpnRoute, IpPrefix, NextHop, Origin, PathAttributes};

/// The LOCAL_PREF a route without one is ranked with (the common default).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// A route's attributes and next hop, as received (after import) or exported. For IPv4
/// unicast the next hop is also in `attributes.next_hop`; for other families it is only here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    pub attributes: PathAttributes,
    pub next_hop: NextHop,
    /// For an EVPN route, the whole NLRI: the EVPN Loc-RIB is keyed by the route's key fields
    /// only (RFC 7432 §7: labels and, for types 2 and 5, the ESI and gateway are not part of
    /// the key), so the labels that came with the best route live here.
    pub evpn: Option<EvpnRoute>,
}

impl Path {
    /// The next hop as an address, for the kernel (the global address of an IPv6 next hop).
    pub fn next_hop_address(&self) -> Option<IpAddr> {
        match &self.next_hop {
            NextHop::Ipv4(a) => Some(IpAddr::V4(*a)),
            NextHop::Ipv6 { global, .. } => Some(IpAddr::V6(*global)),
            NextHop::Other(_) => None,
        }
    }
}

/// Shares equal [`Path`]s: one allocation per distinct attribute set.
#[derive(Debug, Default)]
pub struct Interner {
    set: HashSet<Arc<Path>>,
}

impl Interner {
    pub fn intern(&mut self, path: Path) -> Arc<Path> {
        if let Some(existing) = self.set.get(&path) {
            return existing.clone();
        }
        let path = Arc::new(path);
        self.set.insert(path.clone());
        path
    }

    /// Forgets paths nothing else refers to.
    pub fn sweep(&mut self) {
        self.set.retain(|p| Arc::strong_count(p) > 1);
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Where a route came from: a peer's session (one `SourceInfo` per established session) or
/// this node (`peer: None`, originated networks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// The session id; `None` for routes this node originates.
    pub peer: Option<u64>,
    pub address: IpAddr,
    pub router_id: Ipv4Addr,
    pub ebgp: bool,
    pub rr_client: bool,
}

impl SourceInfo {
    pub fn local(router_id: Ipv4Addr) -> SourceInfo {
        SourceInfo {
            peer: None,
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            router_id,
            ebgp: false,
            rr_client: false,
        }
    }
}

/// One route to a prefix from one source.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub source: Arc<SourceInfo>,
    pub path: Arc<Path>,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Candidate) -> bool {
        self.source.peer == other.source.peer && Arc::ptr_eq(&self.path, &other.path)
    }
}

/// The Loc-RIB's best route to a prefix changed (`None`: no route any more).
#[derive(Debug, Clone)]
pub struct BestChange<K = IpPrefix> {
    pub prefix: K,
    pub old: Option<Candidate>,
    pub new: Option<Candidate>,
}

/// A route in a peer's Adj-RIB-In: refused routes (AS path loop, reflected back to us) are
/// kept so `received` counts them, but are not candidates.
#[derive(Debug, Clone)]
pub struct AdjIn {
    pub path: Arc<Path>,
    pub accepted: bool,
}

/// The per-route maps hash with foldhash, seeded at random per map (peers choose the keys, so
/// the hash must not be predictable; SipHash was 15 % of the speaker's time at a million routes).
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A route's candidates, best first: one inline (the common case), more on the heap.
pub type Candidates = SmallVec<[Candidate; 1]>;

/// A RIB of one kind of route key: [`IpPrefix`] for unicast, the EVPN route key for EVPN.
///
/// One map holds every accepted route: the Loc-RIB entry of a key is the candidates of every
/// source, so a peer's Adj-RIB-In is its candidates there (no second per-route map), and
/// only refused routes, which are rare, are kept apart. Per-peer counts are kept as counters.
#[derive(Debug)]
pub struct Rib<K = IpPrefix> {
    pub interner: Interner,
    loc: FastMap<K, Candidates>,
    refused: FastMap<u64, FastMap<K, Arc<Path>>>,
    accepted: FastMap<u64, usize>,
}

impl<K> Default for Rib<K> {
    fn default() -> Rib<K> {
        Rib {
            interner: Interner::default(),
            loc: FastMap::default(),
            refused: FastMap::default(),
            accepted: FastMap::default(),
        }
    }
}

fn same(a: Option<&Candidate>, b: Option<&Candidate>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

impl<K: Clone + Eq + Hash> Rib<K> {
    pub fn new() -> Rib<K> {
        Rib::default()
    }

    /// Sets (or with `None`, removes) the route to `prefix` from `source` and runs the decision
    /// process for it. Returns the change of the best route, if it changed.
    pub fn set(
        &mut self,
        source: &Arc<SourceInfo>,
        prefix: K,
        route: Option<AdjIn>,
    ) -> Option<BestChange<K>> {
        let peer = source.peer;
        if let Some(p) = peer {
            match &route {
                Some(r) if !r.accepted => {
                    self.refused
                        .entry(p)
                        .or_default()
                        .insert(prefix.clone(), r.path.clone());
                }
                _ => {
                    if let Some(table) = self.refused.get_mut(&p) {
                        table.remove(&prefix);
                    }
                }
            }
        }
        let candidate = route.filter(|r| r.accepted).map(|r| Candidate {
            source: source.clone(),
            path: r.path,
        });
        let counted = peer.map(|p| self.accepted.entry(p).or_default());
        match self.loc.entry(prefix) {
            Entry::Vacant(vacant) => {
                let candidate = candidate?;
                if let Some(count) = counted {
                    *count += 1;
                }
                let prefix = vacant.key().clone();
                vacant.insert(smallvec::smallvec![candidate.clone()]);
                Some(BestChange {
                    prefix,
                    old: None,
                    new: Some(candidate),
                })
            }
            Entry::Occupied(mut occupied) => {
                let entry = occupied.get_mut();
                let at = entry.iter().position(|c| c.source.peer == peer);
                // Unless the best route is replaced or removed, it stays best when a new
                // candidate is not better: only then does the order need computing.
                let old = entry.first().cloned();
                match (at, candidate) {
                    (Some(i), Some(c)) => entry[i] = c,
                    (Some(i), None) => {
                        entry.remove(i);
                        if let Some(count) = counted {
                            *count = count.saturating_sub(1);
                        }
                    }
                    (None, Some(c)) => {
                        entry.push(c);
                        if let Some(count) = counted {
                            *count += 1;
                        }
                    }
                    (None, None) => return None,
                }
                if entry.is_empty() {
                    let (prefix, _) = occupied.remove_entry();
                    return Some(BestChange {
                        prefix,
                        old,
                        new: None,
                    });
                }
                select_best(entry);
                let new = entry.first();
                if same(old.as_ref(), new) {
                    return None;
                }
                let new = new.cloned();
                Some(BestChange {
                    prefix: occupied.key().clone(),
                    old,
                    new,
                })
            }
        }
    }

    /// Removes every route of `peer` (its session went down); the best-route changes. Scans
    /// the Loc-RIB once (the price of not keeping a second per-route map).
    pub fn drop_peer(&mut self, source: &Arc<SourceInfo>) -> Vec<BestChange<K>> {
        let Some(peer) = source.peer else {
            return Vec::new();
        };
        self.refused.remove(&peer);
        if self.accepted.remove(&peer).unwrap_or(0) == 0 {
            return Vec::new();
        }
        let mut changes = Vec::new();
        self.loc.retain(|prefix, entry| {
            let Some(i) = entry.iter().position(|c| c.source.peer == Some(peer)) else {
                return true;
            };
            let removed = entry.remove(i);
            if i != 0 {
                return true;
            }
            if entry.is_empty() {
                changes.push(BestChange {
                    prefix: prefix.clone(),
                    old: Some(removed),
                    new: None,
                });
                return false;
            }
            select_best(entry);
            changes.push(BestChange {
                prefix: prefix.clone(),
                old: Some(removed),
                new: entry.first().cloned(),
            });
            true
        });
        changes
    }

    /// The keys `peer` sent (accepted or refused): its Adj-RIB-In's keys.
    pub fn keys_of(&self, peer: u64) -> Vec<K> {
        let mut keys: Vec<K> = self
            .loc
            .iter()
            .filter(|(_, entry)| entry.iter().any(|c| c.source.peer == Some(peer)))
            .map(|(k, _)| k.clone())
            .collect();
        if let Some(refused) = self.refused.get(&peer) {
            keys.extend(refused.keys().cloned());
        }
        keys
    }

    /// (received, accepted) prefix counts of `peer`.
    pub fn counts(&self, peer: u64) -> (usize, usize) {
        let accepted = self.accepted.get(&peer).copied().unwrap_or(0);
        let refused = self.refused.get(&peer).map_or(0, |t| t.len());
        (accepted + refused, accepted)
    }

    pub fn best(&self, prefix: &K) -> Option<&Candidate> {
        self.loc.get(prefix).and_then(|e| e.first())
    }

    /// Every Loc-RIB entry: prefix and candidates, best first.
    pub fn entries(&self) -> impl Iterator<Item = (&K, &[Candidate])> {
        self.loc.iter().map(|(k, e)| (k, e.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.loc.len()
    }

    pub fn is_empty(&self) -> bool {
        self.loc.is_empty()
    }
}

/// Moves the best candidate to the front.
fn select_best(entry: &mut [Candidate]) {
    let mut best = 0;
    for i in 1..entry.len() {
        if compare(&entry[i], &entry[best]) == Ordering::Less {
            best = i;
        }
    }
    entry.swap(0, best);
}

fn local_pref(c: &Candidate) -> u32 {
    c.path.attributes.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
}

fn as_path_len(c: &Candidate) -> usize {
    c.path
        .attributes
        .as_path
        .as_ref()
        .map_or(0, |p| p.route_selection_len())
}

fn origin_rank(c: &Candidate) -> u8 {
    match c.path.attributes.origin {
        Some(Origin::Igp) => 0,
        Some(Origin::Egp) => 1,
        Some(Origin::Incomplete) | None => 2,
    }
}

fn neighbor_as(c: &Candidate) -> Option<u32> {
    c.path
        .attributes
        .as_path
        .as_ref()
        .and_then(|p| p.first_asn())
        .map(|a| a.0)
}

/// RFC 4456 §9: a reflected route is ranked by its ORIGINATOR_ID instead of the router id.
fn originator(c: &Candidate) -> u32 {
    u32::from(
        c.path
            .attributes
            .originator_id
            .unwrap_or(c.source.router_id),
    )
}

/// The RFC 4271 §9.1.2.2 order (with RFC 4456's additions): `Less` means `a` is preferred.
/// Routes this node originates come first.
pub fn compare(a: &Candidate, b: &Candidate) -> Ordering {
    let local = |c: &Candidate| c.source.peer.is_some();
    local(a)
        .cmp(&local(b))
        // Higher degree of preference.
        .then_with(|| local_pref(b).cmp(&local_pref(a)))
        // a) Shortest AS path.
        .then_with(|| as_path_len(a).cmp(&as_path_len(b)))
        // b) Lowest origin.
        .then_with(|| origin_rank(a).cmp(&origin_rank(b)))
        // c) Lowest MED among routes from the same neighbor AS.
        .then_with(|| {
            if neighbor_as(a) == neighbor_as(b) {
                let med = |c: &Candidate| c.path.attributes.med.unwrap_or(0);
                med(a).cmp(&med(b))
            } else {
                Ordering::Equal
            }
        })
        // d) eBGP over iBGP.
        .then_with(|| b.source.ebgp.cmp(&a.source.ebgp))
        // e) interior cost: not known to this speaker (no IGP).
        // f) Lowest BGP identifier (ORIGINATOR_ID for reflected routes).
        .then_with(|| originator(a).cmp(&originator(b)))
        // RFC 4456 §9: shortest CLUSTER_LIST.
        .then_with(|| {
            a.path
                .attributes
                .cluster_list
                .len()
                .cmp(&b.path.attributes.cluster_list.len())
        })
        // g) Lowest peer address.
        .then_with(|| a.source.address.cmp(&b.source.address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{AsPath, Asn, Ipv4Prefix};

    fn source(peer: u64, address: [u8; 4], router_id: [u8; 4], ebgp: bool) -> Arc<SourceInfo> {
        Arc::new(SourceInfo {
            peer: Some(peer),
            address: IpAddr::V4(address.into()),
            router_id: router_id.into(),
            ebgp,
            rr_client: false,
        })
    }

    fn path(rib: &mut Rib, asns: &[u32], f: impl FnOnce(&mut PathAttributes)) -> Arc<Path> {
        let mut attributes = PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(asns.iter().map(|a| Asn(*a)).collect())),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..PathAttributes::default()
        };
        f(&mut attributes);
        rib.interner.intern(Path {
            next_hop: NextHop::Ipv4(attributes.next_hop.unwrap_or(Ipv4Addr::UNSPECIFIED)),
            evpn: None,
            attributes,
        })
    }

    fn prefix() -> IpPrefix {
        IpPrefix::V4(Ipv4Prefix::new(Ipv4Addr::new(192, 0, 2, 0), 24).unwrap())
    }

    fn accepted(path: Arc<Path>) -> Option<AdjIn> {
        Some(AdjIn {
            path,
            accepted: true,
        })
    }

    /// Installs `a` then `b` and returns which source is best.
    fn winner(
        a: (Arc<SourceInfo>, Arc<Path>),
        b: (Arc<SourceInfo>, Arc<Path>),
        rib: &mut Rib,
    ) -> Option<u64> {
        rib.set(&a.0, prefix(), accepted(a.1));
        rib.set(&b.0, prefix(), accepted(b.1));
        rib.best(&prefix()).and_then(|c| c.source.peer)
    }

    #[test]
    fn interning_shares_equal_paths_and_sweeps_unused_ones() {
        let mut rib = Rib::new();
        let a = path(&mut rib, &[65001], |_| {});
        let b = path(&mut rib, &[65001], |_| {});
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(rib.interner.len(), 1);
        drop((a, b));
        rib.interner.sweep();
        assert!(rib.interner.is_empty());
    }

    #[test]
    fn decision_process_steps() {
        let s1 = source(1, [10, 0, 0, 1], [1, 1, 1, 1], true);
        let s2 = source(2, [10, 0, 0, 2], [2, 2, 2, 2], true);
        let mut rib = Rib::new();
        // Local preference beats AS path length.
        let long_pref = path(&mut rib, &[1, 2, 3], |a| a.local_pref = Some(200));
        let short = path(&mut rib, &[1], |_| {});
        assert_eq!(
            winner(
                (s1.clone(), short.clone()),
                (s2.clone(), long_pref),
                &mut Rib::new()
            ),
            Some(2)
        );
        // Shorter AS path.
        let long = path(&mut rib, &[1, 2], |_| {});
        assert_eq!(
            winner(
                (s1.clone(), long.clone()),
                (s2.clone(), short.clone()),
                &mut Rib::new()
            ),
            Some(2)
        );
        // Lower origin.
        let egp = path(&mut rib, &[1], |a| a.origin = Some(Origin::Egp));
        assert_eq!(
            winner(
                (s1.clone(), egp),
                (s2.clone(), short.clone()),
                &mut Rib::new()
            ),
            Some(2)
        );
        // MED compared within the same neighbor AS...
        let med10 = path(&mut rib, &[7], |a| a.med = Some(10));
        let med5 = path(&mut rib, &[7], |a| a.med = Some(5));
        assert_eq!(
            winner(
                (s1.clone(), med10.clone()),
                (s2.clone(), med5),
                &mut Rib::new()
            ),
            Some(2)
        );
        // ...and not across neighbor ASes: the router id decides.
        let other_as_med5 = path(&mut rib, &[8], |a| a.med = Some(5));
        assert_eq!(
            winner(
                (s1.clone(), med10),
                (s2.clone(), other_as_med5),
                &mut Rib::new()
            ),
            Some(1)
        );
        // eBGP over iBGP.
        let ibgp = source(3, [10, 0, 0, 3], [0, 0, 0, 1], false);
        assert_eq!(
            winner(
                (ibgp, short.clone()),
                (s2.clone(), short.clone()),
                &mut Rib::new()
            ),
            Some(2)
        );
        // Lowest router id, then lowest address.
        let same_id = source(4, [10, 0, 0, 0], [2, 2, 2, 2], true);
        assert_eq!(
            winner(
                (s2.clone(), short.clone()),
                (same_id, short.clone()),
                &mut Rib::new()
            ),
            Some(4)
        );
        // Shorter cluster list (same originator).
        let i1 = source(5, [10, 0, 0, 5], [5, 5, 5, 5], false);
        let i2 = source(6, [10, 0, 0, 6], [6, 6, 6, 6], false);
        let two = path(&mut rib, &[], |a| {
            a.originator_id = Some(Ipv4Addr::new(9, 9, 9, 9));
            a.cluster_list = vec![Ipv4Addr::new(1, 0, 0, 0), Ipv4Addr::new(2, 0, 0, 0)];
        });
        let one = path(&mut rib, &[], |a| {
            a.originator_id = Some(Ipv4Addr::new(9, 9, 9, 9));
            a.cluster_list = vec![Ipv4Addr::new(3, 0, 0, 0)];
        });
        assert_eq!(winner((i1, two), (i2, one), &mut Rib::new()), Some(6));
    }

    #[test]
    fn changes_are_reported_once_and_withdrawals_fall_back() {
        let s1 = source(1, [10, 0, 0, 1], [1, 1, 1, 1], true);
        let s2 = source(2, [10, 0, 0, 2], [2, 2, 2, 2], true);
        let mut rib = Rib::new();
        let short = path(&mut rib, &[1], |_| {});
        let long = path(&mut rib, &[1, 2], |_| {});
        let change = rib.set(&s2, prefix(), accepted(long.clone())).unwrap();
        assert!(change.old.is_none());
        let change = rib.set(&s1, prefix(), accepted(short.clone())).unwrap();
        assert_eq!(change.new.unwrap().source.peer, Some(1));
        // The same route again changes nothing.
        assert!(rib.set(&s1, prefix(), accepted(short)).is_none());
        // A worse route from another peer changes nothing either.
        assert!(rib.set(&s2, prefix(), accepted(long)).is_none());
        let changes = rib.drop_peer(&s1);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].new.as_ref().unwrap().source.peer, Some(2));
        let change = rib.set(&s2, prefix(), None).unwrap();
        assert!(change.new.is_none());
        assert!(rib.is_empty());
        assert!(rib.set(&s2, prefix(), None).is_none());
    }

    #[test]
    fn refused_routes_count_as_received_only() {
        let s1 = source(1, [10, 0, 0, 1], [1, 1, 1, 1], true);
        let mut rib = Rib::new();
        let p = path(&mut rib, &[1], |_| {});
        assert!(rib
            .set(
                &s1,
                prefix(),
                Some(AdjIn {
                    path: p,
                    accepted: false
                })
            )
            .is_none());
        assert_eq!(rib.counts(1), (1, 0));
        assert!(rib.best(&prefix()).is_none());
    }
}
