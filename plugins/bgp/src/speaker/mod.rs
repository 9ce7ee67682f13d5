//! The speaker: one task that owns the neighbors' sessions, the RIB, the update groups and the
//! kernel's BGP routes. Everything reaches it as a message (sessions' events, accepted
//! connections, configuration, queries), so no state is shared or locked.
//!
//! This module holds the handle, the task's loop and configuration; the rest of `impl Speaker`
//! lives in child modules: [`neighbors`] (sessions' events and UPDATEs), [`update_groups`]
//! (exporting and sending), [`graceful_restart`] (stale routes and timers), [`evpn`] (the
//! EVPN routes and kernel view) and [`query`] (answers and metrics).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::Serialize;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use ztos_model::bgp::{BgpNeighbors, BgpRoutes, BgpSummary, EvpnRoutes};
use ztos_plugin::Metric;

use crate::config::{canonical, BgpConfig, NeighborConfig};
use crate::evpn::KernelView;
use ztos_bgp_codec::notification::subcode;
use ztos_bgp_codec::{
    AsPath, EvpnRoute, Family, IpPrefix, Ipv4Prefix, Ipv6Prefix, NextHop, Origin, PathAttributes,
};

mod evpn;
mod graceful_restart;
mod neighbors;
mod query;
mod update_groups;

use crate::evpn_kernel::{EvpnOp, L2Segment, LocalMac};
use crate::kernel::KernelOp;
use crate::md5::Md5Error;
use crate::rib::{AdjIn, BestChange, Path, Rib, SourceInfo};
use crate::session::{
    ConnectRetry, Established, SessionCommand, SessionEvent, SessionHandle, State,
};
use graceful_restart::Stale;
use update_groups::{Dirty, Group};

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
    /// The summary, sent when it changed (uptimes aside).
    fn status(&self, status: &BgpSummary);
    fn metrics(&self, metrics: Vec<Metric>);
}

/// Why the speaker refused a configuration or a query; the text is what the operator sees.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    /// The speaker task is gone (it ends only when every handle is dropped, or panicked).
    #[error("the BGP speaker has stopped")]
    Stopped,
    #[error("bgp.router_id is not set and no IPv4 address was found to take it from")]
    NoRouterId,
    #[error("{0} is not a configured BGP neighbor")]
    UnknownNeighbor(IpAddr),
    #[error("cannot create the BGP listening socket: {0}")]
    ListenSocket(#[source] std::io::Error),
    #[error("cannot set SO_REUSEADDR on the BGP socket: {0}")]
    ReuseAddr(#[source] std::io::Error),
    #[error("cannot listen on port {port}: {source}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// A neighbor's TCP MD5 key could not be set (or removed) on the listening socket.
    #[error(transparent)]
    Md5(#[from] Md5Error),
}

/// An answer to a [`Query`]. Serialized untagged it is the answer type's own JSON, which is
/// what the plugin passes on to ztosd (the CLI and API read it as those types).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Summary(BgpSummary),
    Neighbors(BgpNeighbors),
    Routes(BgpRoutes),
    EvpnRoutes(EvpnRoutes),
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
    Apply(Option<BgpConfig>, oneshot::Sender<Result<(), SpeakerError>>),
    Query(Query, oneshot::Sender<Result<Answer, SpeakerError>>),
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
            last_status: None,
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
    pub async fn apply(&self, config: Option<BgpConfig>) -> Result<(), SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Apply(config, tx))
            .map_err(|_| SpeakerError::Stopped)?;
        rx.await.map_err(|_| SpeakerError::Stopped)?
    }

    pub async fn query(&self, query: Query) -> Result<Answer, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Query(query, tx))
            .map_err(|_| SpeakerError::Stopped)?;
        rx.await.map_err(|_| SpeakerError::Stopped)?
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
    last_status: Option<BgpSummary>,
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

    async fn apply(
        &mut self,
        config: Option<BgpConfig>,
        dirty: &mut Dirty,
    ) -> Result<(), SpeakerError> {
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
        let router_id = config.router_id.ok_or(SpeakerError::NoRouterId)?;
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

    async fn ensure_listener(&mut self, config: &BgpConfig) -> Result<(), SpeakerError> {
        if config.neighbors.is_empty() {
            self.listener = None;
            return Ok(());
        }
        let port = config.port();
        if self.listener.as_ref().is_none_or(|l| l.port != port) {
            self.listener = None;
            let address = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            let socket = TcpSocket::new_v6().map_err(SpeakerError::ListenSocket)?;
            socket
                .set_reuseaddr(true)
                .map_err(SpeakerError::ReuseAddr)?;
            socket
                .bind(address)
                .map_err(|source| SpeakerError::Listen { port, source })?;
            let listener = Arc::new(
                socket
                    .listen(128)
                    .map_err(|source| SpeakerError::Listen { port, source })?,
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
                crate::md5::set_key(listener.socket.as_ref(), local, *address, key.as_bytes())?;
            }
        }
        for address in listener.keys.keys() {
            if !wanted.contains_key(address) {
                crate::md5::set_key(listener.socket.as_ref(), local, *address, b"")?;
            }
        }
        listener.keys = wanted;
        Ok(())
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

    /// Sends status and metrics when they changed.
    fn publish(&mut self) {
        let status = self.summary();
        // Uptimes change every second; the status shows them but does not resend for them.
        let mut stable = status.clone();
        for n in &mut stable.neighbors {
            n.uptime_seconds = n.uptime_seconds.map(|_| 0);
        }
        if self.last_status.as_ref() != Some(&stable) {
            self.last_status = Some(stable);
            self.report.status(&status);
        }
        self.report.metrics(self.metrics());
    }
}

#[cfg(test)]
mod tests;
