//! The userspace WireGuard datapath: per interface one TUN device, one UDP socket and one
//! boringtun [`Tunn`] per peer, driven by three threads of our own:
//!
//! - **tun**: reads a packet from the TUN device, finds the peer by longest-prefix match of the
//!   destination on the allowed IPs, checks the outgoing policy, encrypts and sends it;
//! - **udp**: receives a datagram, checks MACs and the handshake load through the interface's
//!   [`RateLimiter`] (answering with a cookie under load), finds the peer (by the static key in a
//!   handshake initiation, else by the receiver index), decrypts, checks that the inner source is
//!   one of that peer's allowed IPs, checks the incoming policy and writes it to the TUN device;
//!   an authenticated datagram moves the peer's endpoint to its source address (roaming);
//! - **timers**: every 100 ms calls each peer's `update_timers` (handshake retries, rekey,
//!   keepalives, session expiry), resets the rate limiter's count every second and expires
//!   flows.
//!
//! Buffers are allocated once per thread; the udp thread takes datagrams in batches with
//! `recvmmsg`, the tun thread sends what it has encrypted in batches with `sendmmsg`. Configuration changes swap the peer table; peers whose
//! key stays keep their `Tunn` (and so their session).

use std::collections::{HashMap, HashSet};
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::PublicKey;
use ipnet::IpNet;
use nix::errno::Errno;
use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders,
    SockaddrStorage,
};
use ztos_model::wireguard::{self, WireguardInterface, WireguardPeer};

use crate::config;
use crate::keys::{decode_key, encode_key, PrivateKey};
use crate::packet;
use crate::policy::{Decision, Enforcer, FlowTable, Identity, VerdictCache};
use crate::trie::PrefixTrie;

/// Handshake messages per second an interface takes before it answers with cookies. Each
/// handshake passes the limiter twice (our routing check and `Tunn::decapsulate`).
pub const HANDSHAKES_PER_SECOND: u64 = 50;
const BUFFER: usize = 65536 + 256;
/// Datagrams taken per `recvmmsg`.
const RECV_BATCH: usize = 32;
/// Packets the tun thread takes before it sends what it has encrypted.
const SEND_BATCH: usize = 32;
/// Datagrams per UDP GSO send (the kernel takes up to 64 on every version that has it).
const GSO_SEGMENTS: usize = 32;
/// Bytes per UDP GSO send: the run must fit one UDP datagram's length field, headers
/// included (large MTUs make shorter runs).
const GSO_BYTES: usize = 65000;
/// The largest datagram received: a data message for the largest MTU (65535) plus its
/// 32 bytes of header and tag. Anything longer is not WireGuard.
const DATAGRAM: usize = 65535 + 32;
/// Requested socket buffer sizes (bytes), for bursts at high rates.
const SOCKET_BUFFER: usize = 4 << 20;
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("cannot create TUN device {name}: {reason}")]
    Tun { name: String, reason: String },
    #[error("cannot bind UDP port {port} for {name}: {source}")]
    Bind {
        name: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// One peer at run time.
pub struct PeerState {
    pub index: u32,
    pub public_key: [u8; 32],
    pub name: Option<String>,
    pub keepalive: Option<u16>,
    pub configured_endpoint: Option<SocketAddr>,
    preshared: Option<[u8; 32]>,
    tunn: Mutex<Tunn>,
    endpoint: Mutex<Option<SocketAddr>>,
    identity: AtomicU32,
    pub rx_packets: AtomicU64,
    pub tx_packets: AtomicU64,
    pub allowed_in: AtomicU64,
    pub denied_in: AtomicU64,
    pub denied_out: AtomicU64,
    pub invalid_source: AtomicU64,
}

impl std::fmt::Debug for PeerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerState")
            .field("index", &self.index)
            .field("public_key", &encode_key(&self.public_key))
            .finish_non_exhaustive()
    }
}

impl PeerState {
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint.lock().ok().and_then(|e| *e)
    }

    fn set_endpoint(&self, addr: SocketAddr) {
        if let Ok(mut endpoint) = self.endpoint.lock() {
            if *endpoint != Some(addr) {
                *endpoint = Some(addr);
            }
        }
    }

    fn identity(&self) -> Identity {
        Identity(self.identity.load(Ordering::Relaxed))
    }
}

#[derive(Default)]
struct PeerTable {
    by_index: HashMap<u32, Arc<PeerState>>,
    by_key: HashMap<[u8; 32], Arc<PeerState>>,
    routes: PrefixTrie<u32>,
}

struct Keys {
    private: PrivateKey,
    public: PublicKey,
    limiter: Arc<RateLimiter>,
}

struct Shared {
    name: String,
    tun: tun::Device,
    udp: UdpSocket,
    /// Whether `udp` is an IPv6 (dual-stack) socket: IPv4 destinations are then mapped.
    udp_v6: bool,
    peers: RwLock<Arc<PeerTable>>,
    keys: RwLock<Arc<Keys>>,
    policy: RwLock<Arc<Enforcer>>,
    flows: FlowTable,
    stop: AtomicBool,
    next_index: AtomicU32,
    stats: InterfaceCounters,
}

/// Datagrams and packets the interface dropped, by reason.
#[derive(Debug, Default)]
pub struct InterfaceCounters {
    pub no_route: AtomicU64,
    pub no_endpoint: AtomicU64,
    pub invalid_datagrams: AtomicU64,
    pub unknown_peer: AtomicU64,
    pub cookies_sent: AtomicU64,
}

/// A running WireGuard interface. Dropping it stops its threads and removes the TUN device.
pub struct Interface {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    pub listen_port: u16,
    pub config: config::Interface,
}

impl std::fmt::Debug for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interface")
            .field("name", &self.shared.name)
            .field("listen_port", &self.listen_port)
            .finish_non_exhaustive()
    }
}

fn bind_udp(name: &str, port: u16) -> Result<UdpSocket, DatapathError> {
    // Dual-stack where IPv6 exists, IPv4 only where it does not.
    let socket = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port))
        .or_else(|_| UdpSocket::bind(("0.0.0.0", port)))
        .map_err(|source| DatapathError::Bind {
            name: name.to_string(),
            port,
            source,
        })?;
    socket
        .set_read_timeout(Some(POLL))
        .map_err(|e| DatapathError::Other(format!("{name}: cannot set a read timeout: {e}")))?;
    // Room for bursts: the forced variants pass net.core.[rw]mem_max (they need
    // CAP_NET_ADMIN, which the appliance's plugin has); without it the plain ones are capped
    // by those limits. A refusal leaves the kernel's defaults, which work, only slower.
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(&socket, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(&socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(&socket, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(&socket, sockopt::SndBuf, &SOCKET_BUFFER);
    }
    // UDP GRO: the kernel may hand over runs of datagrams from one sender glued together,
    // with their size in a control message (see `udp_loop`). Without it, one at a time.
    if let Err(e) = setsockopt(&socket, sockopt::UdpGroSegment, &true) {
        tracing::info!("{name}: no UDP GRO ({e}); receiving datagrams one by one");
    }
    Ok(socket)
}

/// Encrypted datagrams waiting to be sent: packed back to back in the tun thread's buffer
/// (datagram `i` at `starts[i]`, `lens[i]` long), their destinations, and preallocated
/// message headers: `plain` for `sendmmsg` without control messages, `gso` with room for a
/// `UDP_SEGMENT` one (a header's control buffer keeps what was last encoded in it, so the two
/// are never mixed).
struct SendBatch {
    len: usize,
    /// Bytes of the buffer in use.
    used: usize,
    starts: [usize; SEND_BATCH],
    lens: [usize; SEND_BATCH],
    addresses: [Option<SockaddrStorage>; SEND_BATCH],
    plain: MultiHeaders<SockaddrStorage>,
    gso: MultiHeaders<SockaddrStorage>,
    /// Whether the socket takes `UDP_SEGMENT` (cleared for good at its first refusal).
    use_gso: bool,
}

/// One message of a `sendmmsg`: datagrams `first..next` of the batch, bytes `bytes` of the
/// buffer.
#[derive(Debug, Clone, Copy, Default)]
struct Message {
    first: usize,
    next: usize,
    bytes: (usize, usize),
}

impl SendBatch {
    fn new() -> SendBatch {
        SendBatch {
            len: 0,
            used: 0,
            starts: [0; SEND_BATCH],
            lens: [0; SEND_BATCH],
            addresses: [None; SEND_BATCH],
            plain: MultiHeaders::preallocate(SEND_BATCH, None),
            gso: MultiHeaders::preallocate(SEND_BATCH, Some(nix::cmsg_space!(u16))),
            use_gso: true,
        }
    }

    /// Whether another datagram of up to [`DATAGRAM`] bytes fits.
    fn has_room(&self, capacity: usize) -> bool {
        self.len < SEND_BATCH && self.used + DATAGRAM <= capacity
    }

    fn push(&mut self, len: usize, to: SockaddrStorage) {
        self.starts[self.len] = self.used;
        self.lens[self.len] = len;
        self.addresses[self.len] = Some(to);
        self.used += len;
        self.len += 1;
    }

    /// The messages of one `sendmmsg` from datagram `first` on, in `messages`, and the
    /// segment size they share. With GSO, a message is a
    /// run of datagrams to one destination, all `segment` bytes long but the last, which may
    /// be shorter (the kernel cuts it back into datagrams at `segment`); a datagram longer
    /// than `segment` starts the next call. Without GSO each message is one datagram.
    fn plan(&self, first: usize, messages: &mut [Message; SEND_BATCH]) -> (usize, u16) {
        let segment = self.lens[first];
        let mut count = 0;
        let mut i = first;
        while i < self.len {
            if self.use_gso && self.lens[i] > segment {
                break;
            }
            let mut end = i + 1;
            if self.use_gso && self.lens[i] == segment {
                while end < self.len
                    && end - i < GSO_SEGMENTS
                    && (end - i + 1) * segment <= GSO_BYTES
                    && self.addresses[end] == self.addresses[i]
                    && self.lens[end] <= segment
                {
                    end += 1;
                    if self.lens[end - 1] < segment {
                        break;
                    }
                }
            }
            messages[count] = Message {
                first: i,
                next: end,
                bytes: (self.starts[i], self.starts[end - 1] + self.lens[end - 1]),
            };
            count += 1;
            i = end;
        }
        (count, u16::try_from(segment).unwrap_or(u16::MAX))
    }
}

/// A datagram's source from `recvmmsg`, as a std address (IPv4-mapped shown as IPv4).
fn source_of(address: Option<SockaddrStorage>) -> Option<SocketAddr> {
    let address = address?;
    if let Some(v6) = address.as_sockaddr_in6() {
        Some(canonical(SocketAddr::V6(SocketAddrV6::from(*v6))))
    } else {
        address
            .as_sockaddr_in()
            .map(|v4| SocketAddr::V4(SocketAddrV4::from(*v4)))
    }
}

/// IPv4-mapped IPv6 addresses (what a dual-stack socket reports) as plain IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

impl Shared {
    fn send_to(&self, data: &[u8], to: SocketAddr) {
        let target = match (to, self.udp_v6) {
            (SocketAddr::V4(v4), true) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => to,
        };
        if let Err(e) = self.udp.send_to(data, target) {
            tracing::debug!(interface = %self.name, "send to {to}: {e}");
        }
    }

    fn peers(&self) -> Arc<PeerTable> {
        self.peers.read().map(|p| p.clone()).unwrap_or_default()
    }

    fn keys(&self) -> Option<Arc<Keys>> {
        self.keys.read().ok().map(|k| k.clone())
    }

    fn policy(&self) -> Option<Arc<Enforcer>> {
        self.policy.read().ok().map(|p| p.clone())
    }

    fn log_denied(
        &self,
        policy: &Enforcer,
        direction: &str,
        peer: &PeerState,
        decision: Decision,
        t: &packet::FlowTuple,
    ) {
        if let Some(suppressed) = policy.log.allow(Instant::now()) {
            let rule = match decision {
                Decision::Deny(Some(rule)) => format!(
                    "rule {:?}",
                    policy.names.get(rule as usize).map_or("?", String::as_str)
                ),
                _ => "default deny".to_string(),
            };
            let who = peer
                .name
                .clone()
                .unwrap_or_else(|| encode_key(&peer.public_key));
            tracing::warn!(
                interface = %self.name,
                "policy denied {direction} {who}: proto {} {}:{} -> {}:{} by {rule}{}",
                t.proto,
                t.src,
                t.src_port,
                t.dst,
                t.dst_port,
                if suppressed > 0 {
                    format!(" ({suppressed} more denials not logged)")
                } else {
                    String::new()
                }
            );
        }
    }

    /// tun thread: plaintext from the kernel to peers. It waits for a packet, then takes the
    /// ones already queued (up to [`SEND_BATCH`]), encrypts each into its own slot and sends
    /// them with one `sendmmsg`. Buffers and message headers are allocated once.
    fn tun_loop(self: Arc<Self>) {
        let mut src = vec![0u8; BUFFER];
        let mut out = vec![0u8; DATAGRAM * SEND_BATCH];
        let mut batch = SendBatch::new();
        let mut cache = VerdictCache::new();
        while !self.stop.load(Ordering::Relaxed) {
            // The device is non-blocking: while packets are queued each costs one read; when
            // none is, the batch goes out and the thread waits (poll, then read).
            let read = match self.tun.recv(&mut src) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.flush(&mut batch, &out);
                    self.tun.recv_timeout(&mut src, POLL)
                }
                read => read,
            };
            let len = match read {
                Ok(len) => len,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted
                            | std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    tracing::error!(interface = %self.name, "reading the TUN device: {e}");
                    self.flush(&mut batch, &out);
                    std::thread::sleep(POLL);
                    continue;
                }
            };
            let slot = batch.used;
            if let Some((out_len, endpoint)) =
                self.outgoing(&src[..len], &mut out[slot..slot + DATAGRAM], &mut cache)
            {
                batch.push(out_len, self.target(endpoint));
                if !batch.has_room(out.len()) {
                    self.flush(&mut batch, &out);
                }
            }
        }
    }

    /// One packet from the TUN device: routes it to a peer, checks the outgoing policy and
    /// encrypts it into `out`. The datagram's length and where to send it, unless dropped.
    fn outgoing(
        &self,
        packet: &[u8],
        out: &mut [u8],
        cache: &mut VerdictCache,
    ) -> Option<(usize, SocketAddr)> {
        let tuple = packet::parse(packet)?;
        let peers = self.peers();
        let Some(peer) = peers
            .routes
            .longest_match(tuple.dst)
            .and_then(|index| peers.by_index.get(index))
        else {
            self.stats.no_route.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if let Some(policy) = self.policy() {
            let decision = policy.outbound(
                cache,
                peer.index,
                peer.identity(),
                &tuple,
                packet.len(),
                &self.flows,
                Instant::now(),
            );
            if let Decision::Deny(_) = decision {
                peer.denied_out.fetch_add(1, Ordering::Relaxed);
                self.log_denied(&policy, "to", peer, decision, &tuple);
                return None;
            }
        }
        let Some(endpoint) = peer.endpoint() else {
            self.stats.no_endpoint.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let mut tunn = peer.tunn.lock().ok()?;
        match tunn.encapsulate(packet, out) {
            TunnResult::WriteToNetwork(datagram) => {
                peer.tx_packets.fetch_add(1, Ordering::Relaxed);
                Some((datagram.len(), endpoint))
            }
            TunnResult::Err(e) => {
                tracing::debug!(interface = %self.name, "encapsulate: {e:?}");
                None
            }
            _ => None,
        }
    }

    /// The socket address to send to: IPv4 mapped into IPv6 on a dual-stack socket.
    fn target(&self, to: SocketAddr) -> SockaddrStorage {
        let to = match (to, self.udp_v6) {
            (SocketAddr::V4(v4), true) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => to,
        };
        SockaddrStorage::from(to)
    }

    /// Sends the batch's datagrams with `sendmmsg`, runs of equal-sized datagrams to one
    /// peer as one UDP GSO message each where the kernel supports it, again from the first
    /// datagram not sent when the kernel takes only part; empties the batch.
    fn flush(&self, batch: &mut SendBatch, out: &[u8]) {
        let fd = self.udp.as_raw_fd();
        let mut first = 0;
        let mut messages = [Message::default(); SEND_BATCH];
        while first < batch.len {
            let (count, segment) = batch.plan(first, &mut messages);
            let iovs: [[IoSlice; 1]; SEND_BATCH] = std::array::from_fn(|m| {
                [IoSlice::new(if m < count {
                    &out[messages[m].bytes.0..messages[m].bytes.1]
                } else {
                    &[]
                })]
            });
            let mut addresses = [None; SEND_BATCH];
            for (address, message) in addresses.iter_mut().zip(&messages[..count]) {
                *address = batch.addresses[message.first];
            }
            let gso = [ControlMessage::UdpGsoSegments(&segment)];
            let sent = if batch.use_gso {
                sendmmsg(
                    fd,
                    &mut batch.gso,
                    &iovs[..count],
                    &addresses[..count],
                    &gso[..],
                    MsgFlags::empty(),
                )
            } else {
                sendmmsg(
                    fd,
                    &mut batch.plain,
                    &iovs[..count],
                    &addresses[..count],
                    &[][..],
                    MsgFlags::empty(),
                )
            };
            match sent.map(Iterator::count) {
                Ok(0) => break,
                Ok(n) => first = messages[n.min(count) - 1].next,
                Err(Errno::EINTR) => {}
                Err(e @ (Errno::EIO | Errno::EINVAL | Errno::EOPNOTSUPP | Errno::ENOPROTOOPT))
                    if batch.use_gso =>
                {
                    // No UDP GSO here (or not on this path): datagram by datagram from now on.
                    tracing::info!(interface = %self.name, "UDP GSO refused ({e}); sending datagrams one by one");
                    batch.use_gso = false;
                }
                Err(e) => {
                    // The first message not sent is dropped (like lost packets, which the
                    // protocol tolerates); the rest are tried again.
                    tracing::debug!(interface = %self.name, "sendmmsg: {e}");
                    first = messages[0].next;
                }
            }
        }
        batch.len = 0;
        batch.used = 0;
    }

    /// udp thread: datagrams from peers to the kernel, up to [`RECV_BATCH`] per `recvmmsg`
    /// (it waits for the first, then takes what is queued). Buffers and message headers are
    /// allocated once.
    fn udp_loop(self: Arc<Self>) {
        let mut bufs = vec![0u8; DATAGRAM * RECV_BATCH];
        // Length, source and GRO segment size (0: a single datagram) of each message.
        let mut received: [(usize, Option<SocketAddr>, usize); RECV_BATCH] =
            [(0, None, 0); RECV_BATCH];
        let mut dst = vec![0u8; BUFFER];
        let mut cookie = [0u8; 64];
        let mut cache = VerdictCache::new();
        let fd = self.udp.as_raw_fd();
        while !self.stop.load(Ordering::Relaxed) {
            let count = {
                // Fresh headers for every call: the kernel shrinks each header's control
                // length to what it wrote, and nix's recvmmsg does not restore it, so a
                // reused header would lose the GRO segment size (one allocation per batch).
                let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
                    RECV_BATCH,
                    Some(nix::cmsg_space!(i32)),
                );
                let mut chunks = bufs.chunks_exact_mut(DATAGRAM);
                let mut iovs: [[IoSliceMut; 1]; RECV_BATCH] =
                    std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
                match recvmmsg(
                    fd,
                    &mut headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(results) => {
                        let mut count = 0;
                        for (slot, message) in received.iter_mut().zip(results) {
                            let segment = message
                                .cmsgs()
                                .ok()
                                .and_then(|mut cmsgs| {
                                    cmsgs.find_map(|c| match c {
                                        ControlMessageOwned::UdpGroSegments(size) => {
                                            usize::try_from(size).ok()
                                        }
                                        _ => None,
                                    })
                                })
                                .unwrap_or(0);
                            *slot = (message.bytes, source_of(message.address), segment);
                            count += 1;
                        }
                        count
                    }
                    Err(Errno::EAGAIN | Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::error!(interface = %self.name, "receiving: {e}");
                        std::thread::sleep(POLL);
                        continue;
                    }
                }
            };
            // A datagram longer than DATAGRAM arrives truncated and fails authentication:
            // no WireGuard message is that long.
            for (buf, &(len, from, segment)) in bufs.chunks_exact(DATAGRAM).zip(&received[..count])
            {
                match from {
                    Some(from) => {
                        // A GRO message is datagrams of `segment` bytes, the last maybe
                        // shorter.
                        if segment == 0 || len <= segment {
                            self.datagram(&buf[..len], from, &mut dst, &mut cookie, &mut cache);
                        } else {
                            for datagram in buf[..len].chunks(segment) {
                                self.datagram(datagram, from, &mut dst, &mut cookie, &mut cache);
                            }
                        }
                    }
                    None => {
                        self.stats.invalid_datagrams.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    fn datagram(
        &self,
        datagram: &[u8],
        from: SocketAddr,
        dst: &mut [u8],
        cookie: &mut [u8],
        cache: &mut VerdictCache,
    ) {
        let Some(keys) = self.keys() else { return };
        let packet = match keys
            .limiter
            .verify_packet(Some(from.ip()), datagram, cookie)
        {
            Ok(packet) => packet,
            Err(TunnResult::WriteToNetwork(reply)) => {
                self.stats.cookies_sent.fetch_add(1, Ordering::Relaxed);
                self.send_to(reply, from);
                return;
            }
            Err(_) => {
                self.stats.invalid_datagrams.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let peers = self.peers();
        let (peer, authenticates_on_done) = match &packet {
            Packet::HandshakeInit(init) => {
                let Ok(half) = parse_handshake_anon(&keys.private.secret(), &keys.public, init)
                else {
                    self.stats.invalid_datagrams.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                (peers.by_key.get(&half.peer_static_public), false)
            }
            Packet::HandshakeResponse(r) => (peers.by_index.get(&(r.receiver_idx >> 8)), false),
            Packet::PacketCookieReply(c) => (peers.by_index.get(&(c.receiver_idx >> 8)), false),
            Packet::PacketData(d) => (peers.by_index.get(&(d.receiver_idx >> 8)), true),
        };
        let Some(peer) = peer else {
            self.stats.unknown_peer.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Ok(mut tunn) = peer.tunn.lock() else {
            return;
        };
        let mut first = true;
        loop {
            let input: &[u8] = if first { datagram } else { &[] };
            let source = if first { Some(from.ip()) } else { None };
            match tunn.decapsulate(source, input, dst) {
                TunnResult::Done => {
                    if first && authenticates_on_done {
                        // An authenticated keepalive.
                        peer.set_endpoint(from);
                    }
                    break;
                }
                TunnResult::Err(e) => {
                    if first {
                        self.stats.invalid_datagrams.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(interface = %self.name, "datagram from {from}: {e:?}");
                    }
                    break;
                }
                TunnResult::WriteToNetwork(out) => {
                    if first {
                        peer.set_endpoint(from);
                    }
                    let to = peer.endpoint().unwrap_or(from);
                    self.send_to(out, to);
                }
                TunnResult::WriteToTunnelV4(inner, addr) => {
                    peer.set_endpoint(from);
                    self.deliver(&peers, peer, inner, IpAddr::V4(addr), cache);
                    break;
                }
                TunnResult::WriteToTunnelV6(inner, addr) => {
                    peer.set_endpoint(from);
                    self.deliver(&peers, peer, inner, IpAddr::V6(addr), cache);
                    break;
                }
            }
            first = false;
        }
    }

    fn deliver(
        &self,
        peers: &PeerTable,
        peer: &PeerState,
        inner: &[u8],
        source: IpAddr,
        cache: &mut VerdictCache,
    ) {
        peer.rx_packets.fetch_add(1, Ordering::Relaxed);
        // Cryptokey routing, inbound: the peer may only send from its allowed IPs.
        if peers.routes.longest_match(source) != Some(&peer.index) {
            peer.invalid_source.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(tuple) = packet::parse(inner) else {
            return;
        };
        if let Some(policy) = self.policy() {
            let decision = policy.inbound(
                cache,
                peer.index,
                peer.identity(),
                &tuple,
                inner.len(),
                &self.flows,
                Instant::now(),
            );
            if let Decision::Deny(_) = decision {
                peer.denied_in.fetch_add(1, Ordering::Relaxed);
                self.log_denied(&policy, "from", peer, decision, &tuple);
                return;
            }
        }
        peer.allowed_in.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.tun.send(inner) {
            tracing::debug!(interface = %self.name, "writing to the TUN device: {e}");
        }
    }

    /// timers thread.
    fn timer_loop(self: Arc<Self>) {
        let mut dst = vec![0u8; BUFFER];
        let mut last_reset = Instant::now();
        let mut last_expire = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let now = Instant::now();
            if now.duration_since(last_reset) >= Duration::from_secs(1) {
                if let Some(keys) = self.keys() {
                    keys.limiter.reset_count();
                }
                last_reset = now;
            }
            let peers = self.peers();
            if now.duration_since(last_expire) >= Duration::from_secs(10) {
                self.flows
                    .expire(now, |index| peers.by_index.contains_key(&index));
                last_expire = now;
            }
            for peer in peers.by_index.values() {
                let Ok(mut tunn) = peer.tunn.lock() else {
                    continue;
                };
                match tunn.update_timers(&mut dst) {
                    TunnResult::WriteToNetwork(out) => {
                        if let Some(endpoint) = peer.endpoint() {
                            self.send_to(out, endpoint);
                        }
                    }
                    TunnResult::Err(e) => {
                        tracing::trace!(interface = %self.name, "timers: {e:?}");
                    }
                    _ => {}
                }
            }
        }
    }
}

impl Interface {
    /// Creates the TUN device and the socket and starts the threads.
    pub fn start(
        spec: &config::Interface,
        key: PrivateKey,
        psks: &HashMap<[u8; 32], [u8; 32]>,
        policy: Arc<Enforcer>,
    ) -> Result<Interface, DatapathError> {
        let mut tun_config = tun::Configuration::default();
        tun_config
            .tun_name(&spec.name)
            .mtu(
                spec.mtu
                    .map_or(1420, ztos_model::config::Mtu::get)
                    .min(65535) as u16,
            )
            .up();
        let device = tun::create(&tun_config).map_err(|e| DatapathError::Tun {
            name: spec.name.clone(),
            reason: e.to_string(),
        })?;
        // Reads that find the queue empty return at once (see `tun_loop`); writes to a TUN
        // device never block anyway.
        device.set_nonblock().map_err(|e| DatapathError::Tun {
            name: spec.name.clone(),
            reason: format!("cannot make it non-blocking: {e}"),
        })?;
        let udp = bind_udp(&spec.name, spec.listen_port)?;
        let listen_port = udp.local_addr().map(|a| a.port()).unwrap_or(0);
        let public = key.public();
        let shared = Arc::new(Shared {
            name: spec.name.clone(),
            tun: device,
            udp_v6: matches!(udp.local_addr(), Ok(SocketAddr::V6(_))),
            udp,
            peers: RwLock::new(Arc::new(PeerTable::default())),
            keys: RwLock::new(Arc::new(Keys {
                limiter: Arc::new(RateLimiter::new(&public, 2 * HANDSHAKES_PER_SECOND)),
                private: key,
                public,
            })),
            policy: RwLock::new(policy),
            flows: FlowTable::default(),
            stop: AtomicBool::new(false),
            next_index: AtomicU32::new(1),
            stats: InterfaceCounters::default(),
        });
        let mut interface = Interface {
            shared: shared.clone(),
            threads: Vec::new(),
            listen_port,
            config: spec.clone(),
        };
        interface.set_peers(&spec.peers, psks)?;
        for (role, run) in [
            ("tun", Shared::tun_loop as fn(Arc<Shared>)),
            ("udp", Shared::udp_loop),
            ("timers", Shared::timer_loop),
        ] {
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("{}-{role}", spec.name))
                .spawn(move || run(shared))
                .map_err(|e| DatapathError::Other(format!("cannot start a thread: {e}")))?;
            interface.threads.push(thread);
        }
        Ok(interface)
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn public_key(&self) -> String {
        self.shared
            .keys()
            .map(|k| encode_key(k.public.as_bytes()))
            .unwrap_or_default()
    }

    /// Replaces the peer set. Peers whose public key stays keep their tunnel state (and their
    /// current session); a changed keepalive or a new configured endpoint is applied in place;
    /// a changed preshared key starts a new session. `psks` holds the preshared key of every
    /// peer with `preshared_key = true` (by public key); such a peer without one is an error.
    pub fn set_peers(
        &mut self,
        peers: &[config::Peer],
        psks: &HashMap<[u8; 32], [u8; 32]>,
    ) -> Result<(), DatapathError> {
        let Some(keys) = self.shared.keys() else {
            return Err(DatapathError::Other("key lock poisoned".into()));
        };
        let policy = self.shared.policy();
        let old = self.shared.peers();
        let mut table = PeerTable::default();
        for spec in peers {
            let public_key = decode_key(&spec.public_key).map_err(DatapathError::Other)?;
            let configured_endpoint = match &spec.endpoint {
                Some(e) => Some(config::resolve_endpoint(e).map_err(DatapathError::Other)?),
                None => None,
            };
            let preshared = match (spec.preshared_key, psks.get(&public_key)) {
                (false, _) => None,
                (true, Some(psk)) => Some(*psk),
                (true, None) => {
                    return Err(DatapathError::Other(format!(
                        "peer {} has preshared_key = true but no preshared key was loaded",
                        spec.public_key
                    )))
                }
            };
            let peer = match old.by_key.get(&public_key) {
                Some(existing)
                    if existing.keepalive == spec.persistent_keepalive
                        && existing.configured_endpoint == configured_endpoint
                        && existing.name == spec.name
                        && existing.preshared == preshared =>
                {
                    existing.clone()
                }
                existing => {
                    let index = match existing {
                        Some(e) => e.index,
                        None => {
                            self.shared.next_index.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff
                        }
                    };
                    let tunn = match existing {
                        // Same key: keep the session; the settings below are re-read.
                        Some(e)
                            if e.keepalive == spec.persistent_keepalive
                                && e.preshared == preshared =>
                        {
                            // Tunn has no keepalive setter; take the old one over as is.
                            let placeholder = Tunn::new(
                                keys.private.secret(),
                                PublicKey::from(public_key),
                                preshared,
                                spec.persistent_keepalive,
                                index,
                                Some(keys.limiter.clone()),
                            );
                            let mut guard = e
                                .tunn
                                .lock()
                                .map_err(|_| DatapathError::Other("peer lock poisoned".into()))?;
                            std::mem::replace(&mut *guard, placeholder)
                        }
                        _ => Tunn::new(
                            keys.private.secret(),
                            PublicKey::from(public_key),
                            preshared,
                            spec.persistent_keepalive,
                            index,
                            Some(keys.limiter.clone()),
                        ),
                    };
                    let endpoint =
                        configured_endpoint.or_else(|| existing.and_then(|e| e.endpoint()));
                    Arc::new(PeerState {
                        index,
                        public_key,
                        name: spec.name.clone(),
                        keepalive: spec.persistent_keepalive,
                        configured_endpoint,
                        preshared,
                        tunn: Mutex::new(tunn),
                        endpoint: Mutex::new(endpoint),
                        identity: AtomicU32::new(
                            policy
                                .as_ref()
                                .map_or(Identity::ANONYMOUS, |p| p.classifier.identity(&public_key))
                                .0,
                        ),
                        rx_packets: AtomicU64::new(
                            existing.map_or(0, |e| e.rx_packets.load(Ordering::Relaxed)),
                        ),
                        tx_packets: AtomicU64::new(
                            existing.map_or(0, |e| e.tx_packets.load(Ordering::Relaxed)),
                        ),
                        allowed_in: AtomicU64::new(
                            existing.map_or(0, |e| e.allowed_in.load(Ordering::Relaxed)),
                        ),
                        denied_in: AtomicU64::new(
                            existing.map_or(0, |e| e.denied_in.load(Ordering::Relaxed)),
                        ),
                        denied_out: AtomicU64::new(
                            existing.map_or(0, |e| e.denied_out.load(Ordering::Relaxed)),
                        ),
                        invalid_source: AtomicU64::new(
                            existing.map_or(0, |e| e.invalid_source.load(Ordering::Relaxed)),
                        ),
                    })
                }
            };
            for prefix in &spec.allowed_ips {
                table.routes.insert(*prefix, peer.index);
            }
            table.by_index.insert(peer.index, peer.clone());
            table.by_key.insert(public_key, peer);
        }
        if let Ok(mut slot) = self.shared.peers.write() {
            *slot = Arc::new(table);
        }
        self.config.peers = peers.to_vec();
        Ok(())
    }

    /// Swaps in a new policy; peers are re-mapped to their identities in it.
    pub fn set_policy(&self, policy: Arc<Enforcer>) {
        for peer in self.shared.peers().by_index.values() {
            peer.identity.store(
                policy.classifier.identity(&peer.public_key).0,
                Ordering::Relaxed,
            );
        }
        if let Ok(mut slot) = self.shared.policy.write() {
            *slot = policy;
        }
    }

    /// Replaces the private key: every session is dropped and new handshakes start.
    pub fn set_key(&self, key: PrivateKey) {
        let public = key.public();
        let limiter = Arc::new(RateLimiter::new(&public, 2 * HANDSHAKES_PER_SECOND));
        for peer in self.shared.peers().by_index.values() {
            if let Ok(mut tunn) = peer.tunn.lock() {
                tunn.set_static_private(key.secret(), public, Some(limiter.clone()));
            }
        }
        if let Ok(mut slot) = self.shared.keys.write() {
            *slot = Arc::new(Keys {
                private: key,
                public,
                limiter,
            });
        }
    }

    /// The interface's status: what `ztos security status` and `wireguard show` display.
    pub fn status(&self) -> WireguardInterface {
        let now = SystemTime::now();
        let mut peers: Vec<WireguardPeer> = self
            .config
            .peers
            .iter()
            .filter_map(|spec| {
                let key = decode_key(&spec.public_key).ok()?;
                let table = self.shared.peers();
                let peer = table.by_key.get(&key)?;
                let (since, tx_bytes, rx_bytes, _, _) = peer.tunn.lock().ok()?.stats();
                Some(WireguardPeer {
                    public_key: spec.public_key.clone(),
                    name: spec.name.clone(),
                    endpoint: peer.endpoint(),
                    allowed_ips: spec.allowed_ips.clone(),
                    latest_handshake: since
                        .and_then(|d| now.checked_sub(d))
                        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs()),
                    rx_bytes: rx_bytes as u64,
                    tx_bytes: tx_bytes as u64,
                    rx_packets: peer.rx_packets.load(Ordering::Relaxed),
                    tx_packets: peer.tx_packets.load(Ordering::Relaxed),
                    persistent_keepalive: peer.keepalive,
                    preshared_key: peer.preshared.is_some(),
                    policy_allowed: peer.allowed_in.load(Ordering::Relaxed),
                    policy_denied_in: peer.denied_in.load(Ordering::Relaxed),
                    policy_denied_out: peer.denied_out.load(Ordering::Relaxed),
                    invalid_source: peer.invalid_source.load(Ordering::Relaxed),
                })
            })
            .collect();
        peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        let s = &self.shared.stats;
        WireguardInterface {
            name: self.shared.name.clone(),
            public_key: self.public_key(),
            configured: true,
            listen_port: Some(self.listen_port),
            peers,
            counters: Some(wireguard::InterfaceCounters {
                dropped_no_route: s.no_route.load(Ordering::Relaxed),
                dropped_no_endpoint: s.no_endpoint.load(Ordering::Relaxed),
                invalid_datagrams: s.invalid_datagrams.load(Ordering::Relaxed),
                unknown_peer: s.unknown_peer.load(Ordering::Relaxed),
                cookies_sent: s.cookies_sent.load(Ordering::Relaxed),
                flows: self.shared.flows.len() as u64,
            }),
        }
    }

    /// The peers' allowed IPs (the routes the interface needs).
    pub fn allowed_ips(&self) -> HashSet<IpNet> {
        self.config
            .peers
            .iter()
            .flat_map(|p| p.allowed_ips.iter().map(|a| a.trunc()))
            .collect()
    }
}

impl Drop for Interface {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
