//! The routing information bases (RFC 4271 §3.2): an Adj-RIB-In per peer, the Loc-RIB with the
//! §9.1 decision process, and interned path attribute sets.
//!
//! Memory: an IPv4 route is 12 bytes in a map of its own (a 5-byte key, a 4-byte slot); other
//! keys are stored whole in a second map. A slot is a handle to an interned (source, [`Path`])
//! pair, which every route from that source with those attributes shares, or, for the few
//! keys with more than one candidate, the index of a list of handles, best first.
//! Adj-RIBs-In are the candidates of each peer in these maps.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use smallvec::SmallVec;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ztos_bgp_codec::{EvpnRoute, IpPrefix, Ipv4Prefix, NextHop, Origin, PathAttributes};

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

/// A key the RIB can hold. IPv4 unicast prefixes, nearly all of a full table, go to a map of
/// their own with 5-byte keys; every other key is stored as it is.
pub trait RibKey: Clone + Eq + Hash {
    /// This key as an IPv4 prefix, when it is one.
    fn to_v4(&self) -> Option<Ipv4Prefix> {
        None
    }
    /// The key of an IPv4 prefix (`None` for kinds of key that have no IPv4 prefixes).
    fn from_v4(_prefix: Ipv4Prefix) -> Option<Self> {
        None
    }
}

impl RibKey for IpPrefix {
    fn to_v4(&self) -> Option<Ipv4Prefix> {
        match self {
            IpPrefix::V4(p) => Some(*p),
            IpPrefix::V6(_) => None,
        }
    }
    fn from_v4(prefix: Ipv4Prefix) -> Option<IpPrefix> {
        Some(IpPrefix::V4(prefix))
    }
}

impl RibKey for EvpnRoute {}

/// An IPv4 prefix as the key of the IPv4 map: 5 bytes, hashed as one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct V4Key(Ipv4Prefix);

impl Hash for V4Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64((u64::from(u32::from(self.0.addr())) << 8) | u64::from(self.0.len()));
    }
}

/// The candidates of one key, in four bytes: with the top bit clear, the one candidate (a
/// [`Pairs`] handle); with it set, the index of a list of handles in [`Store::lists`].
#[derive(Clone, Copy, Debug)]
struct Slot(u32);

const LIST: u32 = 1 << 31;

/// One (source, path) pair, shared by every route that has it: a table has few.
#[derive(Debug)]
struct Pair {
    candidate: Candidate,
    refs: u32,
}

/// Interned candidates and the lists of keys that have more than one.
#[derive(Debug, Default)]
struct Store {
    pairs: Vec<Option<Pair>>,
    free_pairs: Vec<u32>,
    index: FastMap<(usize, usize), u32>,
    /// The last pair asked for: the routes of an UPDATE share their pair.
    last: Option<((usize, usize), u32)>,
    lists: Vec<SmallVec<[u32; 3]>>,
    free_lists: Vec<u32>,
}

impl Store {
    /// A handle to the pair (`source`, `path`), counted once more.
    fn acquire(&mut self, source: &Arc<SourceInfo>, path: &Arc<Path>) -> u32 {
        let key = (
            Arc::as_ptr(source) as usize,
            Arc::as_ptr(path) as *const u8 as usize,
        );
        let handle = match self.last {
            Some((k, h)) if k == key => h,
            _ => match self.index.get(&key) {
                Some(h) => *h,
                None => {
                    let pair = Pair {
                        candidate: Candidate {
                            source: source.clone(),
                            path: path.clone(),
                        },
                        refs: 0,
                    };
                    let h = match self.free_pairs.pop() {
                        Some(h) => {
                            self.pairs[h as usize] = Some(pair);
                            h
                        }
                        None => {
                            self.pairs.push(Some(pair));
                            (self.pairs.len() - 1) as u32
                        }
                    };
                    self.index.insert(key, h);
                    h
                }
            },
        };
        self.last = Some((key, handle));
        if let Some(pair) = &mut self.pairs[handle as usize] {
            pair.refs += 1;
        }
        handle
    }

    /// Counts `handle` once less, forgetting the pair at zero.
    fn release(&mut self, handle: u32) {
        let slot = &mut self.pairs[handle as usize];
        let Some(pair) = slot else { return };
        pair.refs -= 1;
        if pair.refs > 0 {
            return;
        }
        let key = (
            Arc::as_ptr(&pair.candidate.source) as usize,
            Arc::as_ptr(&pair.candidate.path) as *const u8 as usize,
        );
        *slot = None;
        self.index.remove(&key);
        if self.last.is_some_and(|(k, _)| k == key) {
            self.last = None;
        }
        self.free_pairs.push(handle);
    }

    fn candidate(&self, handle: u32) -> &Candidate {
        match &self.pairs[handle as usize] {
            Some(pair) => &pair.candidate,
            None => unreachable!("a released pair handle is still in the RIB"),
        }
    }

    /// The handles of a slot, best first.
    fn handles<'a>(&'a self, slot: &'a Slot) -> &'a [u32] {
        if slot.0 & LIST == 0 {
            std::slice::from_ref(&slot.0)
        } else {
            &self.lists[(slot.0 & !LIST) as usize]
        }
    }

    /// Stores `handles` (at least one) in place of `old` (a slot being rewritten or `None`).
    fn slot_for(&mut self, old: Option<Slot>, handles: &[u32]) -> Slot {
        let old_list = old.filter(|s| s.0 & LIST != 0).map(|s| s.0 & !LIST);
        if handles.len() == 1 {
            if let Some(i) = old_list {
                self.lists[i as usize] = SmallVec::new();
                self.free_lists.push(i);
            }
            return Slot(handles[0]);
        }
        let i = match old_list.or_else(|| self.free_lists.pop()) {
            Some(i) => {
                self.lists[i as usize] = SmallVec::from_slice(handles);
                i
            }
            None => {
                self.lists.push(SmallVec::from_slice(handles));
                (self.lists.len() - 1) as u32
            }
        };
        Slot(i | LIST)
    }

    /// Frees a removed slot's list, if it had one.
    fn forget(&mut self, slot: Slot) {
        if slot.0 & LIST != 0 {
            let i = slot.0 & !LIST;
            self.lists[i as usize] = SmallVec::new();
            self.free_lists.push(i);
        }
    }

    /// Moves the best of `handles` to the front.
    fn select_best(&self, handles: &mut [u32]) {
        let mut best = 0;
        for i in 1..handles.len() {
            if compare(self.candidate(handles[i]), self.candidate(handles[best])) == Ordering::Less
            {
                best = i;
            }
        }
        handles.swap(0, best);
    }

    /// Sets or removes `peer`'s candidate for `key` in `map` (`candidate`: an acquired handle).
    /// Returns the change of the best route and the change of `peer`'s accepted count.
    fn set_in<Q: Eq + Hash + Clone>(
        &mut self,
        map: &mut FastMap<Q, Slot>,
        key: Q,
        peer: Option<u64>,
        candidate: Option<u32>,
    ) -> (Option<BestChange<Q>>, isize) {
        match map.entry(key) {
            Entry::Vacant(vacant) => {
                let Some(h) = candidate else {
                    return (None, 0);
                };
                let key = vacant.key().clone();
                vacant.insert(Slot(h));
                let new = Some(self.candidate(h).clone());
                (
                    Some(BestChange {
                        prefix: key,
                        old: None,
                        new,
                    }),
                    1,
                )
            }
            Entry::Occupied(mut occupied) => {
                let slot = *occupied.get();
                let mut handles: SmallVec<[u32; 4]> = SmallVec::from_slice(self.handles(&slot));
                let old = handles[0];
                let at = handles
                    .iter()
                    .position(|h| self.candidate(*h).source.peer == peer);
                let (released, delta) = match (at, candidate) {
                    (Some(i), Some(h)) => (Some(std::mem::replace(&mut handles[i], h)), 0),
                    (Some(i), None) => (Some(handles.remove(i)), -1),
                    (None, Some(h)) => {
                        handles.push(h);
                        (None, 1)
                    }
                    (None, None) => return (None, 0),
                };
                let change = if handles.is_empty() {
                    let (prefix, _) = occupied.remove_entry();
                    self.forget(slot);
                    let old = Some(self.candidate(old).clone());
                    Some(BestChange {
                        prefix,
                        old,
                        new: None,
                    })
                } else {
                    // Unless the best route was replaced or removed, it stays best when the new
                    // candidate is not better: select_best keeps it at the front then.
                    self.select_best(&mut handles);
                    *occupied.get_mut() = self.slot_for(Some(slot), &handles);
                    let new = handles[0];
                    (new != old).then(|| BestChange {
                        prefix: occupied.key().clone(),
                        old: Some(self.candidate(old).clone()),
                        new: Some(self.candidate(new).clone()),
                    })
                };
                if let Some(h) = released {
                    self.release(h);
                }
                (change, delta)
            }
        }
    }

    /// Removes `peer`'s candidates from `map`, pushing the best-route changes.
    fn drop_in<Q: Eq + Hash + Clone>(
        &mut self,
        map: &mut FastMap<Q, Slot>,
        peer: u64,
        mut changed: impl FnMut(Q, Option<Candidate>, Option<Candidate>),
    ) {
        map.retain(|key, slot| {
            let handles = self.handles(slot);
            let Some(i) = handles
                .iter()
                .position(|h| self.candidate(*h).source.peer == Some(peer))
            else {
                return true;
            };
            let mut handles: SmallVec<[u32; 4]> = SmallVec::from_slice(handles);
            let removed = handles.remove(i);
            let keep = if handles.is_empty() {
                self.forget(*slot);
                changed(key.clone(), Some(self.candidate(removed).clone()), None);
                false
            } else {
                if i == 0 {
                    self.select_best(&mut handles);
                    changed(
                        key.clone(),
                        Some(self.candidate(removed).clone()),
                        Some(self.candidate(handles[0]).clone()),
                    );
                }
                *slot = self.slot_for(Some(*slot), &handles);
                true
            };
            self.release(removed);
            keep
        });
    }
}

/// A key's candidates, best first, as [`Rib::entries`] yields them.
#[derive(Clone, Copy)]
pub struct Route<'a> {
    store: &'a Store,
    handles: &'a [u32],
}

impl<'a> Route<'a> {
    /// The best candidate.
    pub fn first(&self) -> Option<&'a Candidate> {
        self.handles.first().map(|h| self.store.candidate(*h))
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a Candidate> + 'a {
        let store = self.store;
        self.handles.iter().map(move |h| store.candidate(*h))
    }

    pub fn to_vec(&self) -> Vec<&'a Candidate> {
        self.iter().collect()
    }
}

/// A RIB of one kind of route key: [`IpPrefix`] for unicast, the EVPN route key for EVPN.
///
/// One map holds every accepted route: the Loc-RIB entry of a key is the candidates of every
/// source, so a peer's Adj-RIB-In is its candidates there (no second per-route map), and
/// only refused routes, which are rare, are kept apart. Per-peer counts are kept as counters.
///
/// Memory: an IPv4 route is 12 bytes in its map (a 5-byte key and a 4-byte slot) plus the
/// map's control byte; its candidate is a handle to an interned (source, path) pair, and only
/// keys with more than one candidate have a list. Other keys are stored whole.
#[derive(Debug)]
pub struct Rib<K = IpPrefix> {
    pub interner: Interner,
    v4: FastMap<V4Key, Slot>,
    other: FastMap<K, Slot>,
    store: Store,
    refused: FastMap<u64, FastMap<K, Arc<Path>>>,
    accepted: FastMap<u64, usize>,
}

impl<K> Default for Rib<K> {
    fn default() -> Rib<K> {
        Rib {
            interner: Interner::default(),
            v4: FastMap::default(),
            other: FastMap::default(),
            store: Store::default(),
            refused: FastMap::default(),
            accepted: FastMap::default(),
        }
    }
}

impl<K: RibKey> Rib<K> {
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
        let candidate = route
            .filter(|r| r.accepted)
            .map(|r| self.store.acquire(source, &r.path));
        let (change, delta) = match prefix.to_v4() {
            Some(v4) => {
                let (change, delta) = self.store.set_in(&mut self.v4, V4Key(v4), peer, candidate);
                let change = change.and_then(|c| {
                    Some(BestChange {
                        prefix: K::from_v4(c.prefix.0)?,
                        old: c.old,
                        new: c.new,
                    })
                });
                (change, delta)
            }
            None => self.store.set_in(&mut self.other, prefix, peer, candidate),
        };
        if let Some(p) = peer {
            if delta != 0 {
                let count = self.accepted.entry(p).or_default();
                *count = count.saturating_add_signed(delta);
            }
        }
        change
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
        self.store.drop_in(&mut self.v4, peer, |key, old, new| {
            if let Some(prefix) = K::from_v4(key.0) {
                changes.push(BestChange { prefix, old, new });
            }
        });
        self.store
            .drop_in(&mut self.other, peer, |prefix, old, new| {
                changes.push(BestChange { prefix, old, new });
            });
        changes
    }

    /// The keys `peer` sent (accepted or refused): its Adj-RIB-In's keys.
    pub fn keys_of(&self, peer: u64) -> Vec<K> {
        let mut keys: Vec<K> = self
            .entries()
            .filter(|(_, route)| route.iter().any(|c| c.source.peer == Some(peer)))
            .map(|(k, _)| k)
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
        let slot = match prefix.to_v4() {
            Some(v4) => self.v4.get(&V4Key(v4)),
            None => self.other.get(prefix),
        }?;
        self.store
            .handles(slot)
            .first()
            .map(|h| self.store.candidate(*h))
    }

    /// Every Loc-RIB entry: key and candidates, best first.
    pub fn entries(&self) -> impl Iterator<Item = (K, Route<'_>)> + '_ {
        let store = &self.store;
        let route = move |slot| Route {
            store,
            handles: store.handles(slot),
        };
        self.v4
            .iter()
            .filter_map(move |(k, slot)| Some((K::from_v4(k.0)?, route(slot))))
            .chain(
                self.other
                    .iter()
                    .map(move |(k, slot)| (k.clone(), route(slot))),
            )
    }

    /// The number of IPv4 keys (IPv4 unicast prefixes).
    pub fn len_v4(&self) -> usize {
        self.v4.len()
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.other.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Interned (source, path) pairs in use.
    pub fn pairs(&self) -> usize {
        self.store.index.len()
    }
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
    use ztos_bgp_codec::{AsPath, Asn, Ipv4Prefix};

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
    fn shared_candidates_and_lists_are_freed_with_their_routes() {
        let s1 = source(1, [10, 0, 0, 1], [1, 1, 1, 1], true);
        let s2 = source(2, [10, 0, 0, 2], [2, 2, 2, 2], true);
        let s3 = source(3, [10, 0, 0, 3], [3, 3, 3, 3], true);
        let mut rib = Rib::new();
        let short = path(&mut rib, &[1], |_| {});
        let long = path(&mut rib, &[1, 2], |_| {});
        let v6: IpPrefix = IpPrefix::V6(
            ztos_bgp_codec::Ipv6Prefix::new("2001:db8::".parse().unwrap(), 32).unwrap(),
        );
        let v4 = |i: u8| IpPrefix::V4(Ipv4Prefix::new(Ipv4Addr::new(20, 0, i, 0), 24).unwrap());
        // A thousand routes of one source and path share one pair.
        for i in 0..=255 {
            assert!(rib.set(&s1, v4(i), accepted(long.clone())).is_some());
        }
        assert!(rib.set(&s1, v6, accepted(long.clone())).is_some());
        assert_eq!((rib.len(), rib.len_v4(), rib.pairs()), (257, 256, 1));
        // More sources for some keys: the best moves to the shortest AS path, then falls back.
        let change = rib.set(&s2, v4(7), accepted(short.clone())).unwrap();
        assert_eq!(change.old.unwrap().source.peer, Some(1));
        assert_eq!(change.new.unwrap().source.peer, Some(2));
        assert!(rib.set(&s3, v4(7), accepted(long.clone())).is_none());
        assert!(rib.set(&s2, v6, accepted(short.clone())).is_some());
        assert_eq!(rib.pairs(), 3);
        let route: Vec<Option<u64>> = rib
            .entries()
            .find(|(k, _)| *k == v4(7))
            .map(|(_, r)| r.iter().map(|c| c.source.peer).collect())
            .unwrap();
        assert_eq!(route.len(), 3);
        assert_eq!(route[0], Some(2));
        let change = rib.set(&s2, v4(7), None).unwrap();
        assert_eq!(change.new.unwrap().source.peer, Some(1));
        // The same route again changes nothing; a new path from the same source does.
        assert!(rib.set(&s1, v4(7), accepted(long.clone())).is_none());
        assert!(rib.set(&s1, v4(7), accepted(short.clone())).is_some());
        assert_eq!(rib.counts(1), (257, 257));
        assert_eq!(rib.keys_of(3), vec![v4(7)]);
        // Dropping a peer reports the keys whose best it was, and frees its pairs.
        let changes = rib.drop_peer(&s1);
        assert_eq!(changes.len(), 256, "not the IPv6 key, where s2 is best");
        assert_eq!(rib.len(), 2);
        assert_eq!(rib.best(&v4(7)).unwrap().source.peer, Some(3));
        assert_eq!(rib.best(&v6).unwrap().source.peer, Some(2));
        assert_eq!(rib.pairs(), 2);
        rib.set(&s3, v4(7), None).unwrap();
        rib.set(&s2, v6, None).unwrap();
        assert!(rib.is_empty());
        assert_eq!(rib.pairs(), 0);
        assert_eq!(rib.counts(2), (0, 0));
        // Freed lists and pairs are reused.
        rib.set(&s1, v6, accepted(long.clone()));
        rib.set(&s2, v6, accepted(short.clone()));
        assert_eq!((rib.store.lists.len(), rib.store.free_lists.len()), (2, 1));
        assert_eq!((rib.store.pairs.len(), rib.store.free_pairs.len()), (4, 2));
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
