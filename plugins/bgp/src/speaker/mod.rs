//! The speaker: one task that owns the neighbors' sessions, the RIB, the update groups and the
//! kernel's BGP routes. Everything reaches it as a message (sessions' events, accepted
//! connections, configuration, queries), so no state is shared or locked.
//!
//! Update groups: peers whose exported routes would be identical (same eBGP/iBGP role, route
//! reflector client flag, next-hop-self addresses, negotiated encoding and families) share one
//! group. A group keeps the Adj-RIB-Out its members were sent; a change of the Loc-RIB is
//! exported and encoded with [`pack_announcements`] once per group and the same bytes are sent
//! to every member.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use ztos_plugin::{Metric, MetricKind};

use crate::codec::notification::{code, subcode};
use crate::codec::GracefulRestart;
use crate::codec::{
    pack_announcements, pack_withdrawals, AsPath, Context, EvpnRoute, Family, IpPrefix, Ipv4Prefix,
    Ipv6Prefix, Message, NextHop, NlriEntry, NlriList, Notification, Origin, PathAttributes,
    Update,
};
use crate::config::{canonical, BgpConfig, L3Tenant, NeighborConfig};
use crate::evpn::{self, route_key, KernelView};
use crate::evpn_kernel::{EvpnOp, L2Segment, LocalMac};
use crate::kernel::KernelOp;
use crate::policy::{export, import, ExportTarget};
use crate::rib::{AdjIn, BestChange, Candidate, Path, Rib, SourceInfo};
use crate::session::{
    ConnectRetry, Established, SessionCommand, SessionConfig, SessionEvent, SessionHandle, State,
};

/// How long after a failure an active session connects again: 2 s after the first failure,
/// doubling up to 60 s (with jitter); see [`ConnectRetry`].
pub const CONNECT_RETRY: ConnectRetry = ConnectRetry {
    first: Duration::from_secs(2),
    cap: Duration::from_secs(60),
};
/// The restart time we advertise (RFC 4724 §3): how long peers keep our routes while we
/// restart, and how long after our own start we wait for peers' End-of-RIB before the kernel
/// routes a previous run left are swept.
pub const RESTART_TIME: u16 = 120;
/// How long a restarted peer's stale routes are kept once its session is back, waiting for its
/// End-of-RIB (FRR's stalepath-time default).
const STALE_TIME: Duration = Duration::from_secs(360);
/// Most routes `routes` answers with.
const ROUTES_LIMIT: usize = 10_000;
/// How many queued events are handled before changes are flushed to peers and kernel.
const BATCH: usize = 512;
/// Changed prefixes that end a batch early: a large table streams out to peers in steps
/// instead of after the last UPDATE, and the list of changes stays small enough to stay in
/// the CPU's cache (`just bench-bgp`, 1M routes: 0.54 s at 2,048, 0.59 at 4,096 and 8,192,
/// 0.66 at 16,384; 1,024 was no faster and packs fewer prefixes per UPDATE).
const FLUSH_AT: usize = 2_048;

/// Where the speaker's reports go (the plugin client in `ztos-bgp`, a collector in tests).
pub trait Report: Send + Sync + 'static {
    fn event(&self, kind: &str, message: String);
    fn log(&self, warn: bool, message: String);
    fn status(&self, status: Value);
    fn metrics(&self, metrics: Vec<Metric>);
}

/// An operational query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Summary,
    Neighbors(Option<IpAddr>),
    Routes {
        family: Option<Family>,
        prefix: Option<IpNet>,
        /// EVPN routes of this VNI only.
        vni: Option<u32>,
    },
}

/// The speaker's EVPN link to the kernel: where FDB and flood-list ops go, where the current
/// L2 segments are published (for the local MAC watcher), and the MACs it reports.
pub struct EvpnIo {
    pub ops: mpsc::UnboundedSender<EvpnOp>,
    pub segments: watch::Sender<Vec<L2Segment>>,
    pub local_macs: mpsc::UnboundedReceiver<LocalMac>,
}

enum Command {
    Apply(Option<BgpConfig>, oneshot::Sender<Result<(), String>>),
    Query(Query, oneshot::Sender<Result<Value, String>>),
}

/// The handle the plugin (or a test) drives the speaker with.
#[derive(Debug, Clone)]
pub struct SpeakerHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl SpeakerHandle {
    /// Starts the speaker task. `kernel`: where best routes go (`None`: not installed);
    /// `evpn`: the EVPN kernel link (`None`: EVPN routes are exchanged but not installed, and
    /// no local MACs are advertised).
    pub fn spawn(
        report: Arc<dyn Report>,
        kernel: Option<mpsc::UnboundedSender<KernelOp>>,
        evpn: Option<EvpnIo>,
    ) -> SpeakerHandle {
        SpeakerHandle::spawn_restarted(report, kernel, evpn, Vec::new())
    }

    /// [`SpeakerHandle::spawn`] after a restart that left `stale_kernel` routes of the previous
    /// run in the kernel: they stay (forwarding goes on) while peers resend their routes, and
    /// the ones no peer sent again are removed once every neighbor has sent End-of-RIB, or
    /// [`RESTART_TIME`] after the start. Our OPENs say we restarted (RFC 4724's R bit) and
    /// preserved forwarding.
    pub fn spawn_restarted(
        report: Arc<dyn Report>,
        kernel: Option<mpsc::UnboundedSender<KernelOp>>,
        evpn: Option<EvpnIo>,
        stale_kernel: Vec<IpPrefix>,
    ) -> SpeakerHandle {
        let (evpn_ops, evpn_segments, local_macs) = match evpn {
            Some(io) => (Some(io.ops), Some(io.segments), Some(io.local_macs)),
            None => (None, None, None),
        };
        let (commands, receiver) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (accepted_tx, accepted) = mpsc::unbounded_channel();
        let speaker = Speaker {
            config: None,
            router_id: Ipv4Addr::UNSPECIFIED,
            neighbors: HashMap::new(),
            sessions: HashMap::new(),
            next_session: 1,
            rib: Rib::new(),
            groups: HashMap::new(),
            next_group: 1,
            local: Arc::new(SourceInfo::local(Ipv4Addr::UNSPECIFIED)),
            networks: HashSet::new(),
            kernel,
            listener: None,
            events_tx,
            accepted_tx,
            report,
            last_status: Value::Null,
            evpn_rib: Rib::new(),
            evpn_view: KernelView::default(),
            evpn_originated: HashSet::new(),
            evpn_dirty: Vec::new(),
            evpn_ops,
            evpn_segments,
            local_macs: HashMap::new(),
            started: Instant::now(),
            restarting: !stale_kernel.is_empty(),
            stale_kernel: stale_kernel.into_iter().collect(),
            stale: HashMap::new(),
        };
        tokio::spawn(speaker.run(receiver, events, accepted, local_macs));
        SpeakerHandle { commands }
    }

    /// Makes `config` the running configuration (idempotent); sessions whose neighbor did not
    /// change stay up. The router id must be resolved already.
    pub async fn apply(&self, config: Option<BgpConfig>) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Apply(config, tx))
            .map_err(|_| "the BGP speaker has stopped".to_string())?;
        rx.await
            .map_err(|_| "the BGP speaker has stopped".to_string())?
    }

    pub async fn query(&self, query: Query) -> Result<Value, String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Query(query, tx))
            .map_err(|_| "the BGP speaker has stopped".to_string())?;
        rx.await
            .map_err(|_| "the BGP speaker has stopped".to_string())?
    }
}

struct Up {
    since: Instant,
    info: Established,
    source: Arc<SourceInfo>,
    group: u64,
    /// Families the peer has sent End-of-RIB for in this session.
    end_of_rib: HashSet<Family>,
}

/// A restarting peer's routes, kept as stale (RFC 4724 §4.2) until it sends them again and
/// End-of-RIB, or the deadline passes.
struct Stale {
    source: Arc<SourceInfo>,
    prefixes: HashSet<IpPrefix>,
    evpn: HashSet<EvpnRoute>,
    deadline: Instant,
}

struct Neighbor {
    config: NeighborConfig,
    session: u64,
    handle: SessionHandle,
    state: State,
    up: Option<Up>,
    updates_received: u64,
    updates_sent: u64,
    last_error: Option<String>,
    established_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    target: ExportTarget,
    context: Context,
    families: Vec<Family>,
}

/// Prefixes whose best route changed since the last flush, each with the best route it had
/// before its first change: what the groups were last sent was exported from that one, so no
/// per-prefix Adj-RIB-Out is kept (as BIRD keeps none): the flush exports old and new and
/// sends the difference.
#[derive(Default)]
struct Dirty {
    /// Per prefix: the best route when the prefix was first noted (what the groups were sent
    /// from) and the best route now (so the flush does not look the prefix up again).
    changes: crate::rib::FastMap<IpPrefix, (Option<Candidate>, Option<Candidate>)>,
}

/// A flush's changed prefixes with their first and last best routes ([`Dirty`]).
type Changes = Vec<(IpPrefix, (Option<Candidate>, Option<Candidate>))>;

impl Dirty {
    fn note(&mut self, prefix: IpPrefix, old: Option<Candidate>, new: Option<Candidate>) {
        match self.changes.entry(prefix) {
            std::collections::hash_map::Entry::Occupied(mut o) => o.get_mut().1 = new,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((old, new));
            }
        }
    }

    fn len(&self) -> usize {
        self.changes.len()
    }

    fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// One flush's exports: each (best path, source) pair is exported and interned once, not
/// once per prefix; the pairs are held so that their addresses stay unique meanwhile.
#[derive(Default)]
struct ExportMemo {
    exported: HashMap<(usize, usize), Option<Arc<Path>>>,
    held: Vec<(Arc<Path>, Arc<SourceInfo>)>,
}

/// What exporting to one group depends on.
struct ExportTo<'a> {
    target: &'a ExportTarget,
    local_as: u32,
    cluster_id: Ipv4Addr,
    /// The only member, when there is one: its own routes are not sent back to it.
    single: Option<IpAddr>,
}

impl ExportMemo {
    fn export(
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
struct Batches {
    slot: HashMap<usize, usize>,
    list: Vec<(Arc<Path>, Vec<IpPrefix>)>,
}

impl Batches {
    fn push(&mut self, path: Arc<Path>, prefix: IpPrefix) {
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

struct Group {
    key: GroupKey,
    members: Vec<IpAddr>,
    /// Prefixes the group's members were sent (and not withdrawn since).
    advertised: usize,
    /// EVPN routes sent, by route key (the path carries the whole NLRI).
    evpn_out: HashMap<EvpnRoute, Arc<Path>>,
}

struct Listener {
    port: u16,
    socket: Arc<TcpListener>,
    task: tokio::task::JoinHandle<()>,
    keys: HashMap<IpAddr, String>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Speaker {
    config: Option<BgpConfig>,
    router_id: Ipv4Addr,
    neighbors: HashMap<IpAddr, Neighbor>,
    sessions: HashMap<u64, IpAddr>,
    next_session: u64,
    rib: Rib,
    groups: HashMap<u64, Group>,
    next_group: u64,
    local: Arc<SourceInfo>,
    networks: HashSet<IpNet>,
    kernel: Option<mpsc::UnboundedSender<KernelOp>>,
    listener: Option<Listener>,
    events_tx: mpsc::UnboundedSender<(u64, SessionEvent)>,
    accepted_tx: mpsc::UnboundedSender<(TcpStream, SocketAddr)>,
    report: Arc<dyn Report>,
    last_status: Value,
    /// The EVPN Loc-RIB, by route key ([`route_key`]).
    evpn_rib: Rib<EvpnRoute>,
    /// The kernel's EVPN entries as the Loc-RIB wants them.
    evpn_view: KernelView,
    /// Keys of the EVPN routes this node originates.
    evpn_originated: HashSet<EvpnRoute>,
    evpn_dirty: Vec<EvpnRoute>,
    evpn_ops: Option<mpsc::UnboundedSender<EvpnOp>>,
    evpn_segments: Option<watch::Sender<Vec<L2Segment>>>,
    /// MACs learned on local ports, by (VNI, MAC), with the MAC mobility sequence number
    /// they are advertised with.
    local_macs: HashMap<(u32, [u8; 6]), u32>,
    started: Instant,
    /// A previous run left routes in the kernel (see [`SpeakerHandle::spawn_restarted`]).
    restarting: bool,
    /// Kernel routes of the previous run not installed again yet.
    stale_kernel: HashSet<IpPrefix>,
    /// Restarting peers' routes, by neighbor address.
    stale: HashMap<IpAddr, Stale>,
}

fn family_of(prefix: &IpPrefix) -> Family {
    match prefix {
        IpPrefix::V4(_) => Family::IPV4_UNICAST,
        IpPrefix::V6(_) => Family::IPV6_UNICAST,
    }
}

fn prefix_of(net: &IpNet) -> Option<IpPrefix> {
    match net {
        IpNet::V4(n) => Ipv4Prefix::new(n.addr(), n.prefix_len()).map(IpPrefix::V4),
        IpNet::V6(n) => Ipv6Prefix::new(n.addr(), n.prefix_len()).map(IpPrefix::V6),
    }
}

fn net_of(prefix: &IpPrefix) -> IpNet {
    match prefix {
        IpPrefix::V4(p) => IpNet::V4(ipnet::Ipv4Net::new(p.addr(), p.len()).unwrap_or_default()),
        IpPrefix::V6(p) => IpNet::V6(ipnet::Ipv6Net::new(p.addr(), p.len()).unwrap_or_default()),
    }
}

/// Neighbor configs equal but for the description, which changes no session.
fn same_session(a: &NeighborConfig, b: &NeighborConfig) -> bool {
    let mut a = a.clone();
    a.description = b.description.clone();
    a == *b
}

impl Speaker {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut events: mpsc::UnboundedReceiver<(u64, SessionEvent)>,
        mut accepted: mpsc::UnboundedReceiver<(TcpStream, SocketAddr)>,
        mut local_macs: Option<mpsc::UnboundedReceiver<LocalMac>>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut dirty = Dirty::default();
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None => {
                        self.shutdown().await;
                        return;
                    }
                    Some(Command::Apply(config, reply)) => {
                        let result = self.apply(config, &mut dirty).await;
                        self.flush(&mut dirty);
                        self.publish();
                        let _ = reply.send(result);
                    }
                    Some(Command::Query(query, reply)) => {
                        let _ = reply.send(self.query(&query));
                    }
                },
                Some((id, event)) = events.recv() => {
                    self.handle_event(id, event, &mut dirty);
                    let mut handled = 1;
                    while handled < BATCH && dirty.len() < FLUSH_AT {
                        match events.try_recv() {
                            Ok((id, event)) => self.handle_event(id, event, &mut dirty),
                            Err(_) => break,
                        }
                        handled += 1;
                    }
                    self.flush(&mut dirty);
                }
                Some(event) = async {
                    match local_macs.as_mut() {
                        Some(receiver) => receiver.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.local_mac(event);
                    if let Some(receiver) = local_macs.as_mut() {
                        let mut handled = 1;
                        while handled < BATCH {
                            match receiver.try_recv() {
                                Ok(event) => self.local_mac(event),
                                Err(_) => break,
                            }
                            handled += 1;
                        }
                    }
                    self.flush(&mut dirty);
                }
                Some((stream, address)) = accepted.recv() => {
                    let address = canonical(address.ip());
                    match self.neighbors.get(&address) {
                        Some(neighbor) => neighbor.handle.send(SessionCommand::Incoming(stream)),
                        None => self.report.log(false, format!("refused a BGP connection from {address}: not a configured neighbor")),
                    }
                }
                _ = tick.tick() => {
                    self.graceful_restart_timers(&mut dirty);
                    self.flush(&mut dirty);
                    self.rib.interner.sweep();
                    self.evpn_rib.interner.sweep();
                    self.publish();
                }
            }
        }
    }

    async fn shutdown(&mut self) {
        let addresses: Vec<IpAddr> = self.neighbors.keys().copied().collect();
        for address in addresses {
            self.remove_neighbor(
                address,
                subcode::ADMINISTRATIVE_SHUTDOWN,
                &mut Dirty::default(),
            )
            .await;
        }
    }

    async fn apply(&mut self, config: Option<BgpConfig>, dirty: &mut Dirty) -> Result<(), String> {
        let Some(config) = config else {
            if self.config.is_some() {
                self.report.log(
                    false,
                    "bgp removed from the configuration: stopping every session".to_string(),
                );
            }
            let addresses: Vec<IpAddr> = self.neighbors.keys().copied().collect();
            for address in addresses {
                self.remove_neighbor(address, subcode::PEER_DECONFIGURED, dirty)
                    .await;
            }
            self.set_networks(&[], dirty);
            self.listener = None;
            self.config = None;
            self.set_evpn(&[], &[]);
            return Ok(());
        };
        let router_id = config.router_id.ok_or_else(|| {
            "bgp.router_id is not set and no IPv4 address was found to take it from".to_string()
        })?;
        // A new identity or port restarts every session.
        let restart = self.config.as_ref().is_some_and(|old| {
            old.local_as != config.local_as
                || self.router_id != router_id
                || old.port() != config.port()
        });
        if restart {
            self.report.log(
                false,
                "local AS, router id or port changed: restarting every BGP session".to_string(),
            );
            let addresses: Vec<IpAddr> = self.neighbors.keys().copied().collect();
            for address in addresses {
                self.remove_neighbor(address, subcode::OTHER_CONFIGURATION_CHANGE, dirty)
                    .await;
            }
            self.set_networks(&[], dirty);
            self.listener = None;
        }
        self.router_id = router_id;
        self.local = Arc::new(SourceInfo::local(router_id));
        self.config = Some(config.clone());

        // The listener first, so that keys are in place before sessions start.
        self.ensure_listener(&config).await?;

        let wanted: HashMap<IpAddr, &NeighborConfig> = config
            .neighbors
            .iter()
            .map(|n| (canonical(n.address), n))
            .collect();
        let running: Vec<IpAddr> = self.neighbors.keys().copied().collect();
        for address in running {
            match wanted.get(&address) {
                None => {
                    self.remove_neighbor(address, subcode::PEER_DECONFIGURED, dirty)
                        .await
                }
                Some(new) => {
                    let neighbor = &mut self.neighbors.get_mut(&address).expect("listed above");
                    if !same_session(&neighbor.config, new) {
                        self.remove_neighbor(address, subcode::OTHER_CONFIGURATION_CHANGE, dirty)
                            .await;
                    } else {
                        neighbor.config = (*new).clone();
                    }
                }
            }
        }
        for neighbor in &config.neighbors {
            let address = canonical(neighbor.address);
            if !self.neighbors.contains_key(&address) {
                self.add_neighbor(neighbor.clone(), &config);
            }
        }
        self.set_networks(&config.networks, dirty);
        if config.evpn() {
            self.set_evpn(&config.segments, &config.tenants);
        } else {
            self.set_evpn(&[], &[]);
        }
        Ok(())
    }

    async fn ensure_listener(&mut self, config: &BgpConfig) -> Result<(), String> {
        if config.neighbors.is_empty() {
            self.listener = None;
            return Ok(());
        }
        let port = config.port();
        if self.listener.as_ref().is_none_or(|l| l.port != port) {
            self.listener = None;
            let address = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            let socket = TcpSocket::new_v6()
                .map_err(|e| format!("cannot create the BGP listening socket: {e}"))?;
            socket
                .set_reuseaddr(true)
                .map_err(|e| format!("cannot set SO_REUSEADDR on the BGP socket: {e}"))?;
            socket
                .bind(address)
                .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
            let listener = Arc::new(
                socket
                    .listen(128)
                    .map_err(|e| format!("cannot listen on port {port}: {e}"))?,
            );
            let accept = listener.clone();
            let accepted = self.accepted_tx.clone();
            let task = tokio::spawn(async move {
                loop {
                    match accept.accept().await {
                        Ok(connection) => {
                            if accepted.send(connection).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!("accepting a BGP connection failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
            self.listener = Some(Listener {
                port,
                socket: listener,
                task,
                keys: HashMap::new(),
            });
        }
        let Some(listener) = self.listener.as_mut() else {
            return Ok(());
        };
        let wanted: HashMap<IpAddr, String> = config
            .neighbors
            .iter()
            .filter_map(|n| n.password.clone().map(|p| (canonical(n.address), p)))
            .collect();
        let local = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        for (address, key) in &wanted {
            if listener.keys.get(address) != Some(key) {
                crate::md5::set_key(listener.socket.as_ref(), local, *address, key.as_bytes())
                    .map_err(|e| e.to_string())?;
            }
        }
        for address in listener.keys.keys() {
            if !wanted.contains_key(address) {
                crate::md5::set_key(listener.socket.as_ref(), local, *address, b"")
                    .map_err(|e| e.to_string())?;
            }
        }
        listener.keys = wanted;
        Ok(())
    }

    fn add_neighbor(&mut self, config: NeighborConfig, bgp: &BgpConfig) {
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

    async fn remove_neighbor(&mut self, address: IpAddr, cease: u8, dirty: &mut Dirty) {
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

    fn set_networks(&mut self, networks: &[IpNet], dirty: &mut Dirty) {
        let wanted: HashSet<IpNet> = networks.iter().copied().collect();
        let old: Vec<IpNet> = self.networks.iter().copied().collect();
        for net in old {
            if !wanted.contains(&net) {
                if let Some(prefix) = prefix_of(&net) {
                    let local = self.local.clone();
                    let change = self.rib.set(&local, prefix, None);
                    self.record(change, dirty);
                }
                self.networks.remove(&net);
            }
        }
        for net in wanted {
            let Some(prefix) = prefix_of(&net) else {
                continue;
            };
            let next_hop = match net {
                IpNet::V4(_) => NextHop::Ipv4(Ipv4Addr::UNSPECIFIED),
                IpNet::V6(_) => NextHop::Ipv6 {
                    global: Ipv6Addr::UNSPECIFIED,
                    link_local: None,
                },
            };
            let attributes = PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::sequence(Vec::new())),
                next_hop: matches!(net, IpNet::V4(_)).then_some(Ipv4Addr::UNSPECIFIED),
                ..PathAttributes::default()
            };
            let path = self.rib.interner.intern(Path {
                attributes,
                next_hop,
                evpn: None,
            });
            let local = self.local.clone();
            let change = self.rib.set(
                &local,
                prefix,
                Some(AdjIn {
                    path,
                    accepted: true,
                }),
            );
            self.record(change, dirty);
            self.networks.insert(net);
        }
    }

    /// Notes a best-route change: the kernel is told at once, peers at the next flush.
    fn record(&mut self, change: Option<BestChange>, dirty: &mut Dirty) {
        let Some(change) = change else { return };
        let learned = |c: &Option<crate::rib::Candidate>| {
            c.as_ref()
                .filter(|c| c.source.peer.is_some())
                .and_then(|c| c.path.next_hop_address())
                .filter(|a| !a.is_unspecified())
        };
        if let Some(kernel) = &self.kernel {
            match (learned(&change.old), learned(&change.new)) {
                (_, Some(gateway)) => {
                    if self.stale_kernel.remove(&change.prefix)
                        || learned(&change.old) != Some(gateway)
                    {
                        let _ = kernel.send(KernelOp::Replace {
                            prefix: change.prefix,
                            gateway,
                        });
                    }
                }
                (Some(_), None) => {
                    let _ = kernel.send(KernelOp::Remove {
                        prefix: change.prefix,
                    });
                }
                (None, None) => {
                    if self.stale_kernel.remove(&change.prefix) {
                        let _ = kernel.send(KernelOp::Remove {
                            prefix: change.prefix,
                        });
                    }
                }
            }
        }
        dirty.note(change.prefix, change.old, change.new);
    }

    fn handle_event(&mut self, id: u64, event: SessionEvent, dirty: &mut Dirty) {
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

    fn source_of(&self, address: IpAddr) -> Option<Arc<SourceInfo>> {
        self.neighbors
            .get(&address)?
            .up
            .as_ref()
            .map(|u| u.source.clone())
    }

    fn session_up(&mut self, address: IpAddr, info: Established, dirty: &mut Dirty) {
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

    fn session_down(&mut self, address: IpAddr, up: Up, dirty: &mut Dirty) {
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

    fn leave_group(&mut self, address: IpAddr, group: u64) {
        if let Some(g) = self.groups.get_mut(&group) {
            g.members.retain(|m| *m != address);
            if g.members.is_empty() {
                self.groups.remove(&group);
            }
        }
    }

    /// Graceful restart helper (RFC 4724 §4.2): the session with a peer that advertised the
    /// capability ended without a NOTIFICATION, so its routes of the `families` it listed stay
    /// (still installed, still advertised) as stale for `restart_time` seconds; its other
    /// routes go now. Returns how many routes were kept.
    fn keep_stale(
        &mut self,
        address: IpAddr,
        up: Up,
        restart_time: u16,
        families: &[Family],
        dirty: &mut Dirty,
    ) -> usize {
        self.leave_group(address, up.group);
        let peer = up.source.peer.unwrap_or_default();
        let all: Vec<IpPrefix> = self.rib.keys_of(peer);
        let (kept, gone): (Vec<IpPrefix>, Vec<IpPrefix>) = all
            .into_iter()
            .partition(|p| families.contains(&family_of(p)));
        let prefixes: HashSet<IpPrefix> = kept.into_iter().collect();
        for prefix in gone {
            let change = self.rib.set(&up.source, prefix, None);
            self.record(change, dirty);
        }
        let all_evpn: Vec<EvpnRoute> = self.evpn_rib.keys_of(peer);
        let mut evpn = HashSet::new();
        if families.contains(&Family::L2VPN_EVPN) {
            evpn.extend(all_evpn);
        } else {
            for key in all_evpn {
                if let Some(change) = self.evpn_rib.set(&up.source, key, None) {
                    self.record_evpn(change);
                }
            }
        }
        let count = prefixes.len() + evpn.len();
        let stale = self.stale.entry(address).or_insert_with(|| Stale {
            source: up.source.clone(),
            prefixes: HashSet::new(),
            evpn: HashSet::new(),
            deadline: Instant::now(),
        });
        stale.source = up.source;
        stale.prefixes.extend(prefixes);
        stale.evpn.extend(evpn);
        stale.deadline = Instant::now() + Duration::from_secs(u64::from(restart_time));
        count
    }

    /// Removes the stale routes of `address` (of `family` only, if given); the number removed.
    fn flush_stale(&mut self, address: IpAddr, family: Option<Family>, dirty: &mut Dirty) -> usize {
        let Some(stale) = self.stale.get_mut(&address) else {
            return 0;
        };
        let source = stale.source.clone();
        let prefixes: Vec<IpPrefix> = stale
            .prefixes
            .iter()
            .filter(|p| family.is_none_or(|f| family_of(p) == f))
            .copied()
            .collect();
        for p in &prefixes {
            stale.prefixes.remove(p);
        }
        let evpn: Vec<EvpnRoute> = if family.is_none_or(|f| f == Family::L2VPN_EVPN) {
            stale.evpn.drain().collect()
        } else {
            Vec::new()
        };
        if stale.prefixes.is_empty() && stale.evpn.is_empty() {
            self.stale.remove(&address);
        }
        let removed = prefixes.len() + evpn.len();
        for prefix in prefixes {
            let change = self.rib.set(&source, prefix, None);
            self.record(change, dirty);
        }
        for key in evpn {
            if let Some(change) = self.evpn_rib.set(&source, key, None) {
                self.record_evpn(change);
            }
        }
        removed
    }

    /// The capability we advertise: the restart time, the R bit while we are restarting, and
    /// forwarding preserved for the unicast families whose kernel routes outlive us.
    fn restart_capability(&self, families: &[Family]) -> GracefulRestart {
        let restarting = self.restarting
            && self.started.elapsed() < Duration::from_secs(u64::from(RESTART_TIME));
        GracefulRestart {
            flags: if restarting {
                GracefulRestart::RESTART_STATE
            } else {
                0
            },
            restart_time: RESTART_TIME,
            families: families
                .iter()
                .map(|f| {
                    let preserved = self.kernel.is_some() && *f != Family::L2VPN_EVPN;
                    (
                        *f,
                        if preserved {
                            GracefulRestart::FORWARDING_PRESERVED
                        } else {
                            0
                        },
                    )
                })
                .collect(),
        }
    }

    /// Every second: stale routes of peers that did not come back (or did not finish) in
    /// time go, and after our own restart the kernel routes no peer sent again are removed
    /// once every neighbor has sent End-of-RIB, or [`RESTART_TIME`] after the start.
    fn graceful_restart_timers(&mut self, dirty: &mut Dirty) {
        let now = Instant::now();
        let expired: Vec<IpAddr> = self
            .stale
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(a, _)| *a)
            .collect();
        for address in expired {
            let removed = self.flush_stale(address, None, dirty);
            self.report.log(
                true,
                format!("neighbor {address}: graceful restart time over; {removed} stale routes removed"),
            );
        }
        if self.stale_kernel.is_empty() {
            return;
        }
        let all_done = self.config.is_some()
            && self.neighbors.values().all(|n| {
                n.up.as_ref()
                    .is_some_and(|u| u.info.families.iter().all(|f| u.end_of_rib.contains(f)))
            });
        let timed_out = self.started.elapsed() >= Duration::from_secs(u64::from(RESTART_TIME));
        if !(all_done || timed_out) {
            return;
        }
        let stale: Vec<IpPrefix> = self.stale_kernel.drain().collect();
        if let Some(kernel) = &self.kernel {
            for prefix in &stale {
                let _ = kernel.send(KernelOp::Remove { prefix: *prefix });
            }
        }
        self.report.log(
            false,
            format!(
                "graceful restart done ({}): removed {} kernel routes of the previous run that no peer sent again",
                if all_done { "End-of-RIB from every neighbor" } else { "restart time over" },
                stale.len()
            ),
        );
    }

    fn receive_update(&mut self, address: IpAddr, update: Update, dirty: &mut Dirty) {
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

    /// Exports the changed prefixes to every group and sends the encoded differences.
    fn flush(&mut self, dirty: &mut Dirty) {
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

    /// Brings group `id`'s EVPN Adj-RIB-Out up to date for `keys`; the UPDATEs to send. EVPN
    /// routes keep their next hop (the originating VTEP) towards every peer, as FRR and GoBGP
    /// do: the next hop is the tunnel endpoint, not the BGP session's address.
    fn export_evpn(&mut self, id: u64, keys: &[EvpnRoute]) -> Vec<Arc<Vec<u8>>> {
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

    /// The UPDATEs that bring group `id`'s members from what they were sent (exported from
    /// each change's old best route) to the current best routes.
    fn export_group(&mut self, id: u64, changes: &Changes) -> Vec<Arc<Vec<u8>>> {
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
    fn export_all(&mut self, id: u64, family: Option<Family>) -> (Vec<Arc<Vec<u8>>>, usize) {
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
    fn replay(&mut self, group: u64, to: IpAddr, family: Option<Family>, fresh: bool) {
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

    fn send_to_group(&mut self, group: u64, messages: Vec<Arc<Vec<u8>>>, only: Option<IpAddr>) {
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

    fn neighbor_json(&self, address: IpAddr, n: &Neighbor, detail: bool) -> Value {
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

    fn sorted_neighbors(&self) -> Vec<(&IpAddr, &Neighbor)> {
        let mut list: Vec<(&IpAddr, &Neighbor)> = self.neighbors.iter().collect();
        list.sort_by_key(|(a, _)| **a);
        list
    }

    fn summary(&self) -> Value {
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

    fn query(&self, query: &Query) -> Result<Value, String> {
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

    fn metrics(&self) -> Vec<Metric> {
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

    /// New L2 segments and tenants (from a commit): the kernel view follows, the local MAC watcher is
    /// told, every best EVPN route is read again (a new segment imports routes that were
    /// already there), and the originated routes are brought up to date.
    fn set_evpn(&mut self, segments: &[L2Segment], tenants: &[L3Tenant]) {
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
    fn originate_evpn(&mut self) {
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
    fn local_mac(&mut self, event: LocalMac) {
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
    fn record_evpn(&mut self, change: crate::rib::BestChange<EvpnRoute>) {
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

    fn send_evpn(&self, ops: Vec<EvpnOp>) {
        if let Some(sender) = &self.evpn_ops {
            for op in ops {
                let _ = sender.send(op);
            }
        }
    }

    fn evpn_json(&self) -> Value {
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
    fn evpn_routes(&self, prefix: Option<IpNet>, vni: Option<u32>) -> Value {
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

    /// Sends status and metrics when they changed.
    fn publish(&mut self) {
        let mut status = self.summary();
        // Uptimes change every second; the status shows them but does not resend for them.
        let stable = {
            let mut s = status.clone();
            if let Some(list) = s["neighbors"].as_array_mut() {
                for n in list {
                    n["uptime_seconds"] = json!(n["uptime_seconds"].is_number());
                }
            }
            s
        };
        if stable != self.last_status {
            self.last_status = stable;
            self.report.status(std::mem::take(&mut status));
        }
        self.report.metrics(self.metrics());
    }
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn prefixes(list: &NlriList) -> Vec<IpPrefix> {
    match list {
        NlriList::Ipv4(v) => v.iter().map(|e| IpPrefix::V4(e.nlri)).collect(),
        NlriList::Ipv6(v) => v.iter().map(|e| IpPrefix::V6(e.nlri)).collect(),
        // EVPN is handled by the EVPN part of the speaker, not yet built; others are opaque.
        NlriList::Evpn(_) | NlriList::Other { .. } => Vec::new(),
    }
}

/// UPDATEs announcing `announce` (grouped by path) and withdrawing `withdraw`.
fn encode(
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

/// UPDATEs announcing EVPN routes (grouped by their shared attributes and next hop) and
/// withdrawing others.
fn encode_evpn(
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

fn paths_json(candidates: &[&crate::rib::Candidate]) -> Vec<Value> {
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

fn evpn_route_json(key: &EvpnRoute, candidates: &[&crate::rib::Candidate]) -> Value {
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

fn route_json(prefix: &IpPrefix, candidates: &[&crate::rib::Candidate]) -> Value {
    json!({
        "prefix": prefix.to_string(),
        "family": family_of(prefix).to_string(),
        "paths": paths_json(candidates),
    })
}

#[cfg(test)]
mod tests;
