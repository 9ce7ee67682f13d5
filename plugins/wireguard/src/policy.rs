//! The zero-trust policy of `[policy]` in the datapath.
//!
//! Semantics (docs/wireguard.md): rules are tried in order and the first match decides; traffic
//! arriving from a peer that no rule allows is dropped (default deny), except replies to flows
//! this box started. Traffic to a peer is checked before encryption: it is dropped when its
//! reverse (the peer talking back on the same flow) hits an explicit `deny` rule; otherwise it
//! is sent and, unless it answers an allowed flow, recorded in the [`FlowTable`] so the peer's
//! replies are let in.
//!
//! [`Classifier`] is the interface a batch backend (the GPU offload) implements later;
//! [`CpuClassifier`] indexes rules by peer identity, protocol and destination port, so a packet
//! is only compared with the few rules that can match it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::config::{self, Action, Protocol};
use crate::keys::decode_key;
use crate::packet::{FlowTuple, PROTO_TCP, PROTO_UDP};

/// Which rule sets a peer is subject to: an index given out by the classifier, or
/// [`Identity::ANONYMOUS`] for a peer no rule or group names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity(pub u32);

impl Identity {
    pub const ANONYMOUS: Identity = Identity(u32::MAX);
}

/// The outcome for one packet: the first matching rule (index into `[policy].rules`) or none
/// (the default applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    pub rule: Option<u32>,
    pub allow: bool,
}

/// One packet header to classify.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    pub identity: Identity,
    pub tuple: FlowTuple,
}

/// A policy classifier. Implementations must give the same answer as the reference semantics:
/// the lowest-numbered rule whose peer, prefixes, protocol and port all match.
pub trait Classifier: Send + Sync {
    /// The identity of the peer with this public key.
    fn identity(&self, public_key: &[u8; 32]) -> Identity;
    fn classify(&self, query: &Query) -> Verdict;
    /// Classifies a batch (`out` is cleared and gets one verdict per query). The CPU
    /// implementation loops; an offload backend overrides this.
    fn classify_batch(&self, queries: &[Query], out: &mut Vec<Verdict>) {
        out.clear();
        out.extend(queries.iter().map(|q| self.classify(q)));
    }
}

#[derive(Debug, Clone)]
struct CompiledRule {
    action: Action,
    source: Vec<IpNet>,
    destination: Vec<IpNet>,
}

impl CompiledRule {
    fn matches(&self, t: &FlowTuple) -> bool {
        (self.source.is_empty() || self.source.iter().any(|p| p.contains(&t.src)))
            && (self.destination.is_empty() || self.destination.iter().any(|p| p.contains(&t.dst)))
    }
}

/// Rules with destination ports, by elementary port interval.
#[derive(Debug, Clone, Default)]
struct PortIndex {
    any_port: Vec<u32>,
    /// Sorted starts of the elementary intervals; `starts[0] == 0`.
    starts: Vec<u32>,
    buckets: Vec<Vec<u32>>,
}

impl PortIndex {
    fn build(rules: &[(u32, Vec<(u16, u16)>)]) -> PortIndex {
        let mut index = PortIndex::default();
        let mut starts = vec![0u32];
        for (rule, ranges) in rules {
            if ranges.is_empty() {
                index.any_port.push(*rule);
            }
            for (low, high) in ranges {
                starts.push(u32::from(*low));
                starts.push(u32::from(*high) + 1);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        starts.retain(|s| *s <= 65535);
        index.buckets = vec![Vec::new(); starts.len()];
        for (rule, ranges) in rules {
            for (low, high) in ranges {
                let first = starts.partition_point(|s| *s < u32::from(*low));
                for (i, start) in starts.iter().enumerate().skip(first) {
                    if *start > u32::from(*high) {
                        break;
                    }
                    if index.buckets[i].last() != Some(rule) {
                        index.buckets[i].push(*rule);
                    }
                }
            }
        }
        for bucket in &mut index.buckets {
            bucket.sort_unstable();
            bucket.dedup();
        }
        index.starts = starts;
        index
    }

    fn bucket(&self, port: u16) -> &[u32] {
        let i = self.starts.partition_point(|s| *s <= u32::from(port));
        match i.checked_sub(1) {
            Some(i) => &self.buckets[i],
            None => &[],
        }
    }
}

/// A rule's protocol and destination port ranges.
type ProtocolPorts = (Option<Protocol>, Vec<(u16, u16)>);

/// The rules that apply to one identity (or to every peer), by protocol.
#[derive(Debug, Clone, Default)]
struct RuleSet {
    any_protocol: Vec<u32>,
    icmp: Vec<u32>,
    tcp: PortIndex,
    udp: PortIndex,
}

impl RuleSet {
    fn build(rules: &[u32], parsed: &[ProtocolPorts]) -> RuleSet {
        let mut set = RuleSet::default();
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for &rule in rules {
            let (protocol, ports) = &parsed[rule as usize];
            match protocol {
                None => set.any_protocol.push(rule),
                Some(Protocol::Icmp) => set.icmp.push(rule),
                Some(Protocol::Tcp) => tcp.push((rule, ports.clone())),
                Some(Protocol::Udp) => udp.push((rule, ports.clone())),
            }
        }
        set.tcp = PortIndex::build(&tcp);
        set.udp = PortIndex::build(&udp);
        set
    }

    /// The candidate lists for a packet, each sorted by rule index.
    fn candidates<'a>(&'a self, t: &FlowTuple, out: &mut [&'a [u32]; 3]) {
        out[0] = &self.any_protocol;
        let (a, b): (&[u32], &[u32]) = if t.is_icmp() {
            (&self.icmp, &[])
        } else if t.proto == PROTO_TCP {
            (&self.tcp.any_port, self.tcp.bucket(t.dst_port))
        } else if t.proto == PROTO_UDP {
            (&self.udp.any_port, self.udp.bucket(t.dst_port))
        } else {
            (&[], &[])
        };
        out[1] = a;
        out[2] = b;
    }
}

/// The CPU classifier: per-identity and global rule sets indexed by protocol and destination
/// port; only rules in the packet's buckets are compared, lowest index first.
#[derive(Debug, Clone, Default)]
pub struct CpuClassifier {
    rules: Vec<CompiledRule>,
    global: RuleSet,
    per_identity: Vec<RuleSet>,
    identities: HashMap<[u8; 32], Identity>,
}

impl CpuClassifier {
    /// Compiles a checked `[policy]` (see [`config::Sections::parse`]).
    pub fn compile(policy: &config::Policy) -> Result<CpuClassifier, String> {
        let mut groups: HashMap<&str, Vec<[u8; 32]>> = HashMap::new();
        for group in &policy.groups {
            let members = group
                .members
                .iter()
                .map(|m| decode_key(m))
                .collect::<Result<Vec<_>, _>>()?;
            groups.insert(group.name.as_str(), members);
        }
        let mut global = Vec::new();
        let mut by_key: HashMap<[u8; 32], Vec<u32>> = HashMap::new();
        let mut parsed = Vec::new();
        let mut rules = Vec::new();
        for (i, rule) in policy.rules.iter().enumerate() {
            let index = i as u32;
            let ports = rule
                .ports
                .iter()
                .map(|p| config::parse_port_range(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("policy.rules[{i}].ports: {e}"))?;
            parsed.push((rule.protocol, ports));
            rules.push(CompiledRule {
                action: rule.action,
                source: rule.source.iter().map(|p| p.trunc()).collect(),
                destination: rule.destination.iter().map(|p| p.trunc()).collect(),
            });
            if rule.from.is_empty() {
                global.push(index);
                continue;
            }
            for from in &rule.from {
                let keys = match from.strip_prefix("group:") {
                    Some(group) => groups
                        .get(group)
                        .cloned()
                        .ok_or_else(|| format!("policy.rules[{i}]: no group {group:?}"))?,
                    None => vec![decode_key(from)?],
                };
                for key in keys {
                    let list = by_key.entry(key).or_default();
                    if list.last() != Some(&index) {
                        list.push(index);
                    }
                }
            }
        }
        let mut classifier = CpuClassifier {
            global: RuleSet::build(&global, &parsed),
            rules,
            ..CpuClassifier::default()
        };
        // Peers with identical rule lists share one rule set.
        let mut shared: HashMap<Vec<u32>, Identity> = HashMap::new();
        for (key, list) in by_key {
            let identity = *shared.entry(list.clone()).or_insert_with(|| {
                classifier.per_identity.push(RuleSet::build(&list, &parsed));
                Identity(classifier.per_identity.len() as u32 - 1)
            });
            classifier.identities.insert(key, identity);
        }
        Ok(classifier)
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

impl Classifier for CpuClassifier {
    fn identity(&self, public_key: &[u8; 32]) -> Identity {
        self.identities
            .get(public_key)
            .copied()
            .unwrap_or(Identity::ANONYMOUS)
    }

    fn classify(&self, query: &Query) -> Verdict {
        let t = &query.tuple;
        let mut lists: [&[u32]; 6] = [&[]; 6];
        let (global, own) = lists.split_at_mut(3);
        self.global
            .candidates(t, <&mut [&[u32]; 3]>::try_from(global).expect("3 lists"));
        if let Some(set) = self.per_identity.get(query.identity.0 as usize) {
            set.candidates(t, <&mut [&[u32]; 3]>::try_from(own).expect("3 lists"));
        }
        let mut best = u32::MAX;
        for list in lists {
            for &rule in list {
                if rule >= best {
                    break;
                }
                if self.rules[rule as usize].matches(t) {
                    best = rule;
                    break;
                }
            }
        }
        match self.rules.get(best as usize) {
            Some(rule) => Verdict {
                rule: Some(best),
                allow: rule.action == Action::Allow,
            },
            None => Verdict::default(),
        }
    }
}

/// Packet and byte counters of one rule (or of the default deny).
#[derive(Debug, Default)]
pub struct Counter {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
}

impl Counter {
    pub fn add(&self, bytes: usize) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub fn get(&self) -> (u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Flows this box started towards peers, so that their replies pass the default deny. Keys are
/// (peer index, the flow as sent); entries expire after [`FlowTable::IDLE`] without traffic.
#[derive(Debug, Default)]
pub struct FlowTable {
    flows: Mutex<HashMap<(u32, FlowTuple), Instant>>,
}

impl FlowTable {
    pub const IDLE: Duration = Duration::from_secs(180);
    pub const CAPACITY: usize = 65536;

    /// Records an outgoing flow; `false` when the table is full of live flows.
    pub fn record(&self, peer: u32, tuple: FlowTuple, now: Instant) -> bool {
        let Ok(mut flows) = self.flows.lock() else {
            return false;
        };
        if flows.len() >= Self::CAPACITY && !flows.contains_key(&(peer, tuple)) {
            flows.retain(|_, seen| now.duration_since(*seen) < Self::IDLE);
            if flows.len() >= Self::CAPACITY {
                return false;
            }
        }
        flows.insert((peer, tuple), now);
        true
    }

    /// Whether an incoming packet answers a live recorded flow.
    pub fn is_reply(&self, peer: u32, incoming: &FlowTuple, now: Instant) -> bool {
        let Ok(mut flows) = self.flows.lock() else {
            return false;
        };
        match flows.get_mut(&(peer, incoming.reversed())) {
            Some(seen) if now.duration_since(*seen) < Self::IDLE => {
                *seen = now;
                true
            }
            _ => false,
        }
    }

    /// Drops expired flows and those of peers that are gone.
    pub fn expire(&self, now: Instant, keep_peer: impl Fn(u32) -> bool) {
        if let Ok(mut flows) = self.flows.lock() {
            flows.retain(|(peer, _), seen| {
                keep_peer(*peer) && now.duration_since(*seen) < Self::IDLE
            });
        }
    }

    pub fn len(&self) -> usize {
        self.flows.lock().map_or(0, |f| f.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Allows `per_second` denied-flow log lines a second and counts the rest.
#[derive(Debug)]
pub struct LogLimiter {
    per_second: u32,
    state: Mutex<(Instant, u32, u64)>,
}

impl LogLimiter {
    pub fn new(per_second: u32) -> Self {
        LogLimiter {
            per_second,
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    /// `Some(suppressed since the last line)` when a line may be logged now.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().ok()?;
        if now.duration_since(state.0) >= Duration::from_secs(1) {
            state.0 = now;
            state.1 = 0;
        }
        if state.1 < self.per_second {
            state.1 += 1;
            let suppressed = state.2;
            state.2 = 0;
            Some(suppressed)
        } else {
            state.2 += 1;
            None
        }
    }
}

/// A compiled policy with its counters: what the datapath consults.
pub struct Enforcer {
    pub classifier: Box<dyn Classifier>,
    pub names: Vec<String>,
    pub actions: Vec<Action>,
    pub counters: Vec<Counter>,
    pub default_deny: Counter,
    pub log: LogLimiter,
    /// Unique per enforcer: a [`VerdictCache`] filled under another policy is void.
    generation: u64,
}

impl std::fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforcer")
            .field("rules", &self.names)
            .finish_non_exhaustive()
    }
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by this rule.
    Allow(Option<u32>),
    /// Allowed as a reply to a flow this box started.
    Reply,
    /// Denied by this rule, or by the default deny (`None`).
    Deny(Option<u32>),
}

/// How long a cached flow-table answer stands before the table is consulted again: a reply
/// seen to match a recorded flow, or an outgoing flow recorded. Far below
/// [`FlowTable::IDLE`], so refreshing a flow this often keeps it alive.
const FLOW_RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct CacheEntry {
    generation: u64,
    outbound: bool,
    peer: u32,
    identity: Identity,
    tuple: FlowTuple,
    verdict: Verdict,
    /// Until when the flow-table answer stands (see [`FLOW_RECHECK`]).
    flow_until: Option<Instant>,
}

/// A per-thread memo of classifier verdicts by (policy, direction, peer, identity, flow),
/// direct-mapped: a packet of a flow seen before costs one hash and one compare instead of a
/// classification, however many rules the policy has, and skips the shared flow table's lock
/// for up to [`FLOW_RECHECK`]. Verdicts are a pure function of the policy and the header
/// fields, so a hit gives exactly the classifier's answer; counters are still kept per packet.
#[derive(Debug)]
pub struct VerdictCache {
    entries: Vec<Option<CacheEntry>>,
}

impl Default for VerdictCache {
    fn default() -> Self {
        VerdictCache::new()
    }
}

impl VerdictCache {
    /// Entries (a power of two).
    pub const SIZE: usize = 4096;

    pub fn new() -> VerdictCache {
        VerdictCache {
            entries: vec![None; Self::SIZE],
        }
    }

    fn slot(outbound: bool, peer: u32, identity: Identity, tuple: &FlowTuple) -> usize {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default()
            .hash_one((outbound, peer, identity, tuple));
        (hash as usize) & (Self::SIZE - 1)
    }

    /// The entry for this packet, classified (and the slot taken over) on a miss.
    fn entry(
        &mut self,
        enforcer: &Enforcer,
        outbound: bool,
        peer: u32,
        identity: Identity,
        tuple: &FlowTuple,
    ) -> &mut CacheEntry {
        let slot = Self::slot(outbound, peer, identity, tuple);
        let cell = &mut self.entries[slot];
        let hit = matches!(cell, Some(e)
            if e.generation == enforcer.generation
                && e.outbound == outbound
                && e.peer == peer
                && e.identity == identity
                && e.tuple == *tuple);
        if !hit {
            *cell = None;
        }
        cell.get_or_insert_with(|| {
            // Outgoing packets are judged by their reverse: the peer talking back.
            let query = Query {
                identity,
                tuple: if outbound { tuple.reversed() } else { *tuple },
            };
            CacheEntry {
                generation: enforcer.generation,
                outbound,
                peer,
                identity,
                tuple: *tuple,
                verdict: enforcer.classifier.classify(&query),
                flow_until: None,
            }
        })
    }
}

impl Enforcer {
    pub fn new(policy: &config::Policy) -> Result<Enforcer, String> {
        static GENERATION: AtomicU64 = AtomicU64::new(1);
        let classifier = CpuClassifier::compile(policy)?;
        Ok(Enforcer {
            names: policy.rules.iter().map(|r| r.name.clone()).collect(),
            actions: policy.rules.iter().map(|r| r.action).collect(),
            counters: policy.rules.iter().map(|_| Counter::default()).collect(),
            classifier: Box::new(classifier),
            default_deny: Counter::default(),
            log: LogLimiter::new(10),
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// A packet from peer `peer` (identity `identity`), after decryption. `cache` is the
    /// calling thread's.
    #[allow(clippy::too_many_arguments)]
    pub fn inbound(
        &self,
        cache: &mut VerdictCache,
        peer: u32,
        identity: Identity,
        tuple: &FlowTuple,
        len: usize,
        flows: &FlowTable,
        now: Instant,
    ) -> Decision {
        let entry = cache.entry(self, false, peer, identity, tuple);
        match entry.verdict.rule {
            Some(rule) => {
                self.counters[rule as usize].add(len);
                if entry.verdict.allow {
                    return Decision::Allow(Some(rule));
                }
                Decision::Deny(Some(rule))
            }
            None if entry.flow_until.is_some_and(|until| now < until) => Decision::Reply,
            None if flows.is_reply(peer, tuple, now) => {
                entry.flow_until = Some(now + FLOW_RECHECK);
                Decision::Reply
            }
            None => {
                entry.flow_until = None;
                self.default_deny.add(len);
                Decision::Deny(None)
            }
        }
    }

    /// A packet to peer `peer`, before encryption. `cache` is the calling thread's.
    #[allow(clippy::too_many_arguments)]
    pub fn outbound(
        &self,
        cache: &mut VerdictCache,
        peer: u32,
        identity: Identity,
        tuple: &FlowTuple,
        len: usize,
        flows: &FlowTable,
        now: Instant,
    ) -> Decision {
        let entry = cache.entry(self, true, peer, identity, tuple);
        match entry.verdict.rule {
            Some(rule) if !entry.verdict.allow => {
                self.counters[rule as usize].add(len);
                Decision::Deny(Some(rule))
            }
            // A reply to traffic the policy lets in.
            Some(rule) => Decision::Allow(Some(rule)),
            None => {
                if entry.flow_until.is_none_or(|until| now >= until) {
                    entry.flow_until = flows
                        .record(peer, *tuple, now)
                        .then_some(now + FLOW_RECHECK);
                }
                Decision::Allow(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Group, Policy, Rule};
    use crate::packet::PROTO_ICMP;
    use std::net::IpAddr;

    const A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

    fn rule(name: &str, action: Action, from: &[&str]) -> Rule {
        Rule {
            name: name.into(),
            action,
            from: from.iter().map(|s| s.to_string()).collect(),
            source: vec![],
            destination: vec![],
            protocol: None,
            ports: vec![],
        }
    }

    fn tcp(src: &str, dst: &str, dport: u16) -> FlowTuple {
        FlowTuple {
            src: src.parse::<IpAddr>().unwrap(),
            dst: dst.parse::<IpAddr>().unwrap(),
            proto: PROTO_TCP,
            src_port: 40000,
            dst_port: dport,
        }
    }

    fn key(k: &str) -> [u8; 32] {
        decode_key(k).unwrap()
    }

    /// The reference semantics: a linear scan.
    fn reference(policy: &Policy, peer: &[u8; 32], t: &FlowTuple) -> Verdict {
        for (i, r) in policy.rules.iter().enumerate() {
            let peer_ok = r.from.is_empty()
                || r.from.iter().any(|f| match f.strip_prefix("group:") {
                    Some(g) => policy
                        .groups
                        .iter()
                        .any(|gr| gr.name == g && gr.members.iter().any(|m| key(m) == *peer)),
                    None => key(f) == *peer,
                });
            let proto_ok = match r.protocol {
                None => true,
                Some(Protocol::Tcp) => t.proto == PROTO_TCP,
                Some(Protocol::Udp) => t.proto == PROTO_UDP,
                Some(Protocol::Icmp) => t.is_icmp(),
            };
            let port_ok = r.ports.is_empty()
                || r.ports.iter().any(|p| {
                    let (lo, hi) = config::parse_port_range(p).unwrap();
                    (lo..=hi).contains(&t.dst_port)
                });
            let src_ok = r.source.is_empty() || r.source.iter().any(|p| p.contains(&t.src));
            let dst_ok =
                r.destination.is_empty() || r.destination.iter().any(|p| p.contains(&t.dst));
            if peer_ok && proto_ok && port_ok && src_ok && dst_ok {
                return Verdict {
                    rule: Some(i as u32),
                    allow: r.action == Action::Allow,
                };
            }
        }
        Verdict::default()
    }

    #[test]
    fn first_match_wins_and_default_is_deny() {
        let mut https = rule("https-from-a", Action::Allow, &[A]);
        https.protocol = Some(Protocol::Tcp);
        https.ports = vec!["443".into()];
        let mut deny_ssh = rule("no-ssh", Action::Deny, &[]);
        deny_ssh.protocol = Some(Protocol::Tcp);
        deny_ssh.ports = vec!["22".into()];
        let mut ops = rule("ops-anything", Action::Allow, &["group:ops"]);
        ops.destination = vec!["10.1.0.0/16".parse().unwrap()];
        let policy = Policy {
            groups: vec![Group {
                name: "ops".into(),
                members: vec![B.into()],
            }],
            rules: vec![https, deny_ssh, ops],
        };
        let c = CpuClassifier::compile(&policy).unwrap();
        let (a, b) = (c.identity(&key(A)), c.identity(&key(B)));
        let q = |identity, tuple| c.classify(&Query { identity, tuple });
        let allow0 = Verdict {
            rule: Some(0),
            allow: true,
        };
        assert_eq!(q(a, tcp("10.9.0.2", "10.1.0.1", 443)), allow0);
        assert_eq!(q(a, tcp("10.9.0.2", "10.1.0.1", 22)).rule, Some(1));
        assert!(!q(a, tcp("10.9.0.2", "10.1.0.1", 22)).allow);
        assert_eq!(q(a, tcp("10.9.0.2", "10.1.0.1", 80)), Verdict::default());
        // B reaches 10.1/16 on anything but 22 (rule 1 comes first).
        assert_eq!(q(b, tcp("10.9.0.3", "10.1.0.1", 443)).rule, Some(2));
        assert_eq!(q(b, tcp("10.9.0.3", "10.1.0.1", 22)).rule, Some(1));
        assert_eq!(q(b, tcp("10.9.0.3", "10.2.0.1", 443)), Verdict::default());
        // A peer no rule names only meets the global rules.
        let other = c.identity(&[7; 32]);
        assert_eq!(other, Identity::ANONYMOUS);
        assert_eq!(
            q(other, tcp("10.9.0.4", "10.1.0.1", 443)),
            Verdict::default()
        );
        assert_eq!(q(other, tcp("10.9.0.4", "10.1.0.1", 22)).rule, Some(1));
    }

    #[test]
    fn agrees_with_a_linear_scan_on_many_random_rules() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let keys = [A, B];
        let mut rules = Vec::new();
        for i in 0..2000 {
            let mut r = rule(
                &format!("r{i}"),
                if next() % 3 == 0 {
                    Action::Deny
                } else {
                    Action::Allow
                },
                &[],
            );
            match next() % 4 {
                0 => {}
                1 => r.from = vec![A.into()],
                2 => r.from = vec![B.into()],
                _ => r.from = vec!["group:g".into()],
            }
            r.protocol = match next() % 5 {
                0 => None,
                1 => Some(Protocol::Icmp),
                2 | 3 => Some(Protocol::Tcp),
                _ => Some(Protocol::Udp),
            };
            if matches!(r.protocol, Some(Protocol::Tcp | Protocol::Udp)) && next() % 4 != 0 {
                let low = (next() % 2000) as u16 + 1;
                let high = low + (next() % 3) as u16 * (next() % 50) as u16;
                r.ports = vec![if low == high {
                    low.to_string()
                } else {
                    format!("{low}-{high}")
                }];
            }
            if next() % 3 == 0 {
                r.destination = vec![format!("10.{}.0.0/16", next() % 4).parse().unwrap()];
            }
            if next() % 4 == 0 {
                r.source = vec![format!("10.9.{}.0/24", next() % 3).parse().unwrap()];
            }
            rules.push(r);
        }
        let policy = Policy {
            groups: vec![Group {
                name: "g".into(),
                members: vec![A.into()],
            }],
            rules,
        };
        let c = CpuClassifier::compile(&policy).unwrap();
        for _ in 0..20000 {
            let peer = key(keys[(next() % 2) as usize]);
            let mut t = tcp(
                &format!("10.9.{}.7", next() % 3),
                &format!("10.{}.0.1", next() % 4),
                (next() % 2100) as u16,
            );
            t.proto = [PROTO_TCP, PROTO_UDP, PROTO_ICMP, 47][(next() % 4) as usize];
            let expect = reference(&policy, &peer, &t);
            let got = c.classify(&Query {
                identity: c.identity(&peer),
                tuple: t,
            });
            assert_eq!(got, expect, "{t:?}");
        }
        let mut out = Vec::new();
        let queries = [Query {
            identity: c.identity(&key(A)),
            tuple: tcp("10.9.0.1", "10.0.0.1", 80),
        }];
        c.classify_batch(&queries, &mut out);
        assert_eq!(out, vec![c.classify(&queries[0])]);
    }

    #[test]
    fn enforcer_counts_and_lets_replies_in() {
        let mut https = rule("https-from-a", Action::Allow, &[A]);
        https.protocol = Some(Protocol::Tcp);
        https.ports = vec!["443".into()];
        let policy = Policy {
            groups: vec![],
            rules: vec![https],
        };
        let e = Enforcer::new(&policy).unwrap();
        let mut cache = VerdictCache::new();
        let flows = FlowTable::default();
        let now = Instant::now();
        let a = e.classifier.identity(&key(A));
        let b = e.classifier.identity(&key(B));
        let syn = tcp("10.9.0.2", "10.9.0.1", 443);
        assert_eq!(
            e.inbound(&mut cache, 1, a, &syn, 60, &flows, now),
            Decision::Allow(Some(0))
        );
        assert_eq!(
            e.inbound(&mut cache, 2, b, &syn, 60, &flows, now),
            Decision::Deny(None)
        );
        let ssh = tcp("10.9.0.2", "10.9.0.1", 22);
        assert_eq!(
            e.inbound(&mut cache, 1, a, &ssh, 60, &flows, now),
            Decision::Deny(None)
        );
        assert_eq!(e.counters[0].get(), (1, 60));
        assert_eq!(e.default_deny.get(), (2, 120));
        // The answer to A's allowed flow goes out without recording a flow.
        assert_eq!(
            e.outbound(&mut cache, 1, a, &syn.reversed(), 60, &flows, now),
            Decision::Allow(Some(0))
        );
        assert!(flows.is_empty());
        // This box connects to B: recorded, and B's reply comes in.
        let out = tcp("10.9.0.1", "10.9.0.3", 8080);
        assert_eq!(
            e.outbound(&mut cache, 2, b, &out, 60, &flows, now),
            Decision::Allow(None)
        );
        assert_eq!(
            e.inbound(&mut cache, 2, b, &out.reversed(), 60, &flows, now),
            Decision::Reply
        );
        // ... but only from that peer, and not after the idle time.
        assert_eq!(
            e.inbound(&mut cache, 1, a, &out.reversed(), 60, &flows, now),
            Decision::Deny(None)
        );
        let later = now + FlowTable::IDLE + Duration::from_secs(1);
        assert_eq!(
            e.inbound(&mut cache, 2, b, &out.reversed(), 60, &flows, later),
            Decision::Deny(None)
        );
        flows.expire(later, |_| true);
        assert!(flows.is_empty());
    }

    #[test]
    fn explicit_deny_applies_to_outgoing_traffic() {
        let mut deny = rule("no-b", Action::Deny, &[B]);
        deny.protocol = Some(Protocol::Tcp);
        let e = Enforcer::new(&Policy {
            groups: vec![],
            rules: vec![deny],
        })
        .unwrap();
        let mut cache = VerdictCache::new();
        let flows = FlowTable::default();
        let b = e.classifier.identity(&key(B));
        let out = tcp("10.9.0.1", "10.9.0.3", 8080);
        assert_eq!(
            e.outbound(&mut cache, 2, b, &out, 60, &flows, Instant::now()),
            Decision::Deny(Some(0))
        );
        assert!(flows.is_empty());
    }

    #[test]
    fn verdict_cache_answers_like_the_classifier_and_dies_with_its_policy() {
        let mut rules = Vec::new();
        for i in 0..200u16 {
            let mut r = rule(&format!("r{i}"), Action::Allow, &[A]);
            r.protocol = Some(Protocol::Tcp);
            r.ports = vec![format!("{}", 1000 + i)];
            if i % 3 == 0 {
                r.action = Action::Deny;
            }
            rules.push(r);
        }
        let policy = Policy {
            groups: vec![],
            rules,
        };
        let e = Enforcer::new(&policy).unwrap();
        let mut cache = VerdictCache::new();
        let flows = FlowTable::default();
        let a = e.classifier.identity(&key(A));
        let now = Instant::now();
        // Twice over, so the second round is answered from the cache.
        for _ in 0..2 {
            for port in 990..1210u16 {
                let t = tcp("10.9.0.2", "10.9.0.1", port);
                let expected = e.classifier.classify(&Query {
                    identity: a,
                    tuple: t,
                });
                let expected = match (expected.rule, expected.allow) {
                    (Some(r), true) => Decision::Allow(Some(r)),
                    (Some(r), false) => Decision::Deny(Some(r)),
                    (None, _) => Decision::Deny(None),
                };
                assert_eq!(e.inbound(&mut cache, 1, a, &t, 10, &flows, now), expected);
            }
        }
        // Counted per packet, hit or miss: r1 (port 1001) twice.
        assert_eq!(e.counters[1].get(), (2, 20));
        // The same cache under another policy: the old verdicts are not used.
        let none = Enforcer::new(&Policy::default()).unwrap();
        let t = tcp("10.9.0.2", "10.9.0.1", 1001);
        assert_eq!(
            none.inbound(&mut cache, 1, a, &t, 10, &flows, now),
            Decision::Deny(None)
        );
        // An outgoing flow is recorded once per FLOW_RECHECK, not per packet, and stays
        // recorded for replies.
        let out = tcp("10.9.0.1", "10.9.0.3", 8080);
        for _ in 0..3 {
            assert_eq!(
                none.outbound(&mut cache, 2, a, &out, 10, &flows, now),
                Decision::Allow(None)
            );
        }
        assert_eq!(flows.len(), 1);
        flows.expire(now + FlowTable::IDLE, |_| true);
        assert!(flows.is_empty());
        // Past the recheck time the flow is recorded again.
        let later = now + FLOW_RECHECK;
        none.outbound(&mut cache, 2, a, &out, 10, &flows, later);
        assert_eq!(flows.len(), 1);
        // A reply is checked against the table once, then cached until the recheck time.
        let reply = out.reversed();
        assert_eq!(
            none.inbound(&mut cache, 2, a, &reply, 10, &flows, later),
            Decision::Reply
        );
        flows.expire(later + FlowTable::IDLE, |_| true);
        assert_eq!(
            none.inbound(&mut cache, 2, a, &reply, 10, &flows, later),
            Decision::Reply
        );
        assert_eq!(
            none.inbound(&mut cache, 2, a, &reply, 10, &flows, later + FLOW_RECHECK),
            Decision::Deny(None)
        );
    }

    #[test]
    fn log_limiter_counts_suppressed_lines() {
        let l = LogLimiter::new(2);
        let now = Instant::now();
        assert_eq!(l.allow(now), Some(0));
        assert_eq!(l.allow(now), Some(0));
        assert_eq!(l.allow(now), None);
        assert_eq!(l.allow(now), None);
        assert_eq!(l.allow(now + Duration::from_secs(1)), Some(2));
    }
}
