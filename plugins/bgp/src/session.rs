//! One BGP session (RFC 4271 §8): the finite state machine of a neighbor, its TCP connections
//! and timers. A session runs as a task; the speaker talks to it through [`SessionHandle`] and
//! hears from it through [`SessionEvent`]s. The session knows nothing of routes: it turns bytes
//! into decoded messages (with the codec's RFC 7606 outcomes) and sends what it is given.
//!
//! - Idle → Connect/Active: an active session connects at once, and after a failure again
//!   after the ConnectRetry wait, which doubles with every failure up to a cap, with jitter
//!   ([`ConnectRetry`]), and starts over once a session is established; every session
//!   (passive or not) takes connections the speaker's listener hands it.
//! - OpenSent → OpenConfirm → Established: OPEN exchanged and checked (peer AS, BGP
//!   identifier, hold time), capabilities negotiated through [`codec::negotiate`], KEEPALIVE
//!   exchanged. Two connections at once are resolved as RFC 4271 §6.8 says: the one initiated
//!   by the speaker with the higher BGP identifier stays, and the other is closed with
//!   NOTIFICATION Cease / Connection Collision Resolution (6/7), also when it is still in
//!   OpenSent.
//! - Established: the hold timer is reset by every message; KEEPALIVEs go out every third of
//!   the negotiated hold time; errors send the NOTIFICATION the codec names and go back to Idle.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};

use crate::codec::notification::{code, subcode};
use crate::codec::{
    self, decode_message, message_length, Asn, Capability, Context, DecodeError, Family,
    GracefulRestart, Message, Negotiated, NlriList, Notification, Open, Received, Update,
};

/// Hold time while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);
/// How long a TCP connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing session waits for its NOTIFICATION to be written.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// FSM error subcodes (RFC 6608).
const FSM_UNEXPECTED_IN_OPENSENT: u8 = 1;
const FSM_UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
const FSM_UNEXPECTED_IN_ESTABLISHED: u8 = 3;

/// The RFC 4271 §8.2.2 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connect => "connect",
            State::Active => "active",
            State::OpenSent => "open_sent",
            State::OpenConfirm => "open_confirm",
            State::Established => "established",
        }
    }
}

/// What a session needs to know about its neighbor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub peer: IpAddr,
    pub remote_as: u32,
    /// The TCP port connected to.
    pub port: u16,
    pub passive: bool,
    /// The hold time offered; 0 turns hold timer and keepalives off if the peer agrees.
    pub hold_time: u16,
    pub families: Vec<Family>,
    pub password: Option<String>,
    pub connect_retry: ConnectRetry,
    /// The graceful restart capability we advertise (RFC 4724), `None` for none.
    pub graceful_restart: Option<GracefulRestart>,
}

/// The ConnectRetry timer (RFC 4271 §8, §10) as a capped exponential backoff: after the n-th
/// failure in a row the next attempt waits `first * 2^(n-1)`, at most `cap`, scaled by a random
/// factor between 0.75 and 1 (RFC 4271 §10's jitter, so that two speakers restarted together
/// do not keep colliding). An established session starts the sequence over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRetry {
    pub first: Duration,
    pub cap: Duration,
}

impl ConnectRetry {
    /// The wait after `failures` (at least 1) failures in a row, for `jitter` in [0, 1].
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        let base = self
            .first
            .checked_mul(1 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap);
        base.mul_f64(0.75 + 0.25 * jitter.clamp(0.0, 1.0))
    }
}

/// Failures in a row and the next ConnectRetry wait.
#[derive(Debug)]
struct Backoff {
    retry: ConnectRetry,
    failures: u32,
}

impl Backoff {
    fn new(retry: ConnectRetry) -> Backoff {
        Backoff { retry, failures: 0 }
    }

    /// Counts a failure and returns the wait before the next attempt.
    fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.retry.delay(self.failures, rand::random::<f64>())
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

impl SessionConfig {
    /// Our OPEN: four-octet AS, one multiprotocol capability per family, route refresh,
    /// extended messages.
    pub fn open(&self) -> Open {
        let mut capabilities: Vec<Capability> = self
            .families
            .iter()
            .map(|family| Capability::Multiprotocol { family: *family })
            .collect();
        capabilities.push(Capability::RouteRefresh);
        capabilities.push(Capability::ExtendedMessage);
        if let Some(gr) = &self.graceful_restart {
            capabilities.push(Capability::GracefulRestart(gr.clone()));
        }
        Open::new(
            Asn(self.local_as),
            self.hold_time,
            self.router_id,
            capabilities,
        )
    }
}

/// What the session established with.
#[derive(Debug, Clone)]
pub struct Established {
    pub local_address: IpAddr,
    pub remote_router_id: Ipv4Addr,
    pub remote_as: u32,
    pub hold_time: u16,
    pub negotiated: Negotiated,
    /// Families both sides advertised (IPv4 unicast for a peer without multiprotocol).
    pub families: Vec<Family>,
    pub route_refresh: bool,
    /// The peer's graceful restart capability, if it advertised one.
    pub peer_restart: Option<GracefulRestart>,
}

/// How many of one session's UPDATEs may wait for the speaker: the session reads no further
/// while that many are queued, so a peer sending faster than the speaker handles its routes is
/// slowed by TCP flow control instead of filling memory with decoded UPDATEs.
pub const UPDATE_BACKLOG: usize = 32;

/// One of a session's [`UPDATE_BACKLOG`] slots, held by an UPDATE until the speaker has
/// handled it (dropped).
#[derive(Debug)]
pub struct Slot {
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// What a session tells the speaker.
#[derive(Debug)]
pub enum SessionEvent {
    State(State),
    Established(Established),
    /// A well-formed UPDATE, or one accepted without discarded attributes (logged).
    Update(Box<Update>, Slot),
    /// RFC 7606 treat-as-withdraw: these routes are withdrawn.
    Withdraw(Vec<NlriList>),
    RouteRefresh(Family),
    /// The session left Established, or a connection attempt failed; why, for the log.
    Down {
        reason: String,
        was_established: bool,
        /// The session ended without a NOTIFICATION (see [`Closed`]).
        graceful: bool,
    },
    Log {
        warn: bool,
        message: String,
    },
}

/// What the speaker tells a session.
#[derive(Debug)]
pub enum SessionCommand {
    /// Encoded messages to send when Established (dropped otherwise).
    Send(Arc<Vec<u8>>),
    /// A connection the listener accepted from this neighbor.
    Incoming(TcpStream),
    /// Send this NOTIFICATION and go back to Idle (the session restarts after ConnectRetry).
    Reset(Notification, String),
    /// Send this NOTIFICATION (if Established) and end the task.
    Stop(Notification),
}

/// The speaker's end of a session task.
#[derive(Debug)]
pub struct SessionHandle {
    commands: mpsc::UnboundedSender<SessionCommand>,
    task: tokio::task::JoinHandle<()>,
}

impl SessionHandle {
    /// Starts the session task; its events arrive on `events` tagged with `id`.
    pub fn spawn(
        id: u64,
        config: SessionConfig,
        events: mpsc::UnboundedSender<(u64, SessionEvent)>,
    ) -> SessionHandle {
        let (commands, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(id, config, receiver, events));
        SessionHandle { commands, task }
    }

    pub fn send(&self, command: SessionCommand) {
        // The task only ends after Stop; a send after that has nothing to do.
        let _ = self.commands.send(command);
    }

    /// Stops the session with `notification` and waits (briefly) for it to go out.
    pub async fn stop(self, notification: Notification) {
        self.send(SessionCommand::Stop(notification));
        if timeout(CLOSE_TIMEOUT * 2, self.task).await.is_err() {
            tracing::warn!("a BGP session task did not stop in time");
        }
    }
}

struct Emitter {
    id: u64,
    events: mpsc::UnboundedSender<(u64, SessionEvent)>,
}

impl Emitter {
    fn emit(&self, event: SessionEvent) {
        let _ = self.events.send((self.id, event));
    }
    fn state(&self, state: State) {
        self.emit(SessionEvent::State(state));
    }
}

async fn run(
    id: u64,
    config: SessionConfig,
    mut commands: mpsc::UnboundedReceiver<SessionCommand>,
    events: mpsc::UnboundedSender<(u64, SessionEvent)>,
) {
    let emitter = Arc::new(Emitter { id, events });
    let mut backoff = Backoff::new(config.connect_retry);
    let mut incoming: Option<TcpStream> = None;
    loop {
        // After the Idle wait an active session connects at once, unless the peer's own
        // connection ended the wait: then that one goes first.
        let first_attempt = if incoming.is_some() {
            backoff.next_delay()
        } else {
            Duration::ZERO
        };
        let connection = match establish(
            &config,
            &mut commands,
            &emitter,
            &mut backoff,
            first_attempt,
            incoming.take(),
        )
        .await
        {
            Ok(Some(connection)) => connection,
            Ok(None) => return,
            Err(reason) => {
                emitter.emit(SessionEvent::Down {
                    reason,
                    was_established: false,
                    graceful: false,
                });
                return;
            }
        };
        backoff.reset();
        emitter.emit(SessionEvent::Established(connection.established.clone()));
        emitter.state(State::Established);
        match established(connection, &config, &mut commands, &emitter).await {
            Closed::Stopped => return,
            Closed::Down { reason, graceful } => {
                emitter.state(State::Idle);
                emitter.emit(SessionEvent::Down {
                    reason,
                    was_established: true,
                    graceful,
                });
            }
        }
        // Idle until the ConnectRetry timer fires; a connection from the peer ends the wait.
        let deadline = Instant::now() + backoff.next_delay();
        loop {
            tokio::select! {
                () = sleep_until(deadline) => break,
                command = commands.recv() => match command {
                    None | Some(SessionCommand::Stop(_)) => return,
                    Some(SessionCommand::Incoming(stream)) => { incoming = Some(stream); break; }
                    Some(_) => {}
                }
            }
        }
    }
}

/// A connection that finished the OPEN/KEEPALIVE exchange.
struct Connection {
    reader: MessageReader,
    writer: OwnedWriteHalf,
    established: Established,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Origin {
    Outgoing,
    Incoming,
}

type Handshake = BoxFuture<'static, (Origin, Result<Connection, String>)>;

/// Connect, Active, OpenSent and OpenConfirm: returns the connection that reached
/// Established, `Ok(None)` when stopped. An active session first connects after
/// `first_attempt`, and after each failure after `backoff`'s next wait.
async fn establish(
    config: &SessionConfig,
    commands: &mut mpsc::UnboundedReceiver<SessionCommand>,
    emitter: &Arc<Emitter>,
    backoff: &mut Backoff,
    first_attempt: Duration,
    incoming: Option<TcpStream>,
) -> Result<Option<Connection>, String> {
    let mut handshakes: FuturesUnordered<Handshake> = FuturesUnordered::new();
    // Set when a connection wins: the handshakes still running close with Cease 6/7.
    let (abandon, abandoned) = watch::channel(false);
    let mut outgoing_pending = false;
    let mut retry_at: Option<Instant> = if config.passive {
        None
    } else {
        Some(Instant::now() + first_attempt)
    };
    if let Some(stream) = incoming {
        handshakes.push(start_handshake(
            Origin::Incoming,
            Ok(stream),
            config,
            emitter,
            &abandoned,
        ));
    }
    emitter.state(
        if config.passive || handshakes.is_empty() && retry_at.is_none() {
            State::Active
        } else {
            State::Connect
        },
    );
    loop {
        let retry = retry_at.filter(|_| !outgoing_pending);
        tokio::select! {
            () = async { sleep_until(retry.unwrap_or_else(Instant::now)).await }, if retry.is_some() => {
                retry_at = None;
                outgoing_pending = true;
                emitter.state(State::Connect);
                let connecting = connect(config.clone());
                let config = config.clone();
                let emitter = emitter.clone();
                let abandoned = abandoned.clone();
                handshakes.push(Box::pin(async move {
                    match connecting.await {
                        Ok(stream) => handshake(Origin::Outgoing, stream, &config, &emitter, abandoned).await,
                        Err(e) => (Origin::Outgoing, Err(e)),
                    }
                }));
            }
            command = commands.recv() => match command {
                None | Some(SessionCommand::Stop(_)) => return Ok(None),
                Some(SessionCommand::Incoming(stream)) => {
                    handshakes.push(start_handshake(Origin::Incoming, Ok(stream), config, emitter, &abandoned));
                }
                Some(SessionCommand::Reset(..)) | Some(SessionCommand::Send(_)) => {}
            },
            Some((origin, result)) = handshakes.next(), if !handshakes.is_empty() => {
                if origin == Origin::Outgoing {
                    outgoing_pending = false;
                }
                match result {
                    Ok(connection) => {
                        if handshakes.is_empty() {
                            return Ok(Some(connection));
                        }
                        // RFC 4271 §6.8: keep the connection opened by the higher identifier.
                        let keep_outgoing = u32::from(config.router_id)
                            > u32::from(connection.established.remote_router_id);
                        if (origin == Origin::Outgoing) == keep_outgoing {
                            abandon_others(handshakes, abandon);
                            return Ok(Some(connection));
                        }
                        let mut writer = connection.writer;
                        send_notification(&mut writer, &collision_cease()).await;
                    }
                    Err(reason) => {
                        emitter.emit(SessionEvent::Down { reason, was_established: false, graceful: false });
                        if !config.passive && retry_at.is_none() && !outgoing_pending {
                            retry_at = Some(Instant::now() + backoff.next_delay());
                        }
                        if handshakes.is_empty() {
                            emitter.state(if config.passive { State::Active } else { State::Connect });
                        }
                    }
                }
            }
        }
    }
}

fn collision_cease() -> Notification {
    Notification::new(
        code::CEASE,
        subcode::CONNECTION_COLLISION_RESOLUTION,
        Vec::new(),
    )
}

/// A connection won the collision: the handshakes still running close their connections with
/// Cease 6/7 (on a task of their own, so the winner does not wait for them); their outcomes
/// are not the session's any more and are not reported.
fn abandon_others(mut handshakes: FuturesUnordered<Handshake>, abandon: watch::Sender<bool>) {
    let _ = abandon.send(true);
    tokio::spawn(async move {
        let drain = async { while handshakes.next().await.is_some() {} };
        let _ = timeout(CLOSE_TIMEOUT * 2, drain).await;
        drop(abandon);
    });
}

fn start_handshake(
    origin: Origin,
    stream: Result<TcpStream, String>,
    config: &SessionConfig,
    emitter: &Arc<Emitter>,
    abandoned: &watch::Receiver<bool>,
) -> Handshake {
    let config = config.clone();
    let emitter = emitter.clone();
    let abandoned = abandoned.clone();
    Box::pin(async move {
        match stream {
            Ok(stream) => handshake(origin, stream, &config, &emitter, abandoned).await,
            Err(e) => (origin, Err(e)),
        }
    })
}

async fn connect(config: SessionConfig) -> Result<TcpStream, String> {
    let address = SocketAddr::new(config.peer, config.port);
    let socket = match config.peer {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("cannot create a socket for {address}: {e}"))?;
    if let Some(password) = &config.password {
        let local = match config.peer {
            IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
        };
        crate::md5::set_key(&socket, local, config.peer, password.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    match timeout(CONNECT_TIMEOUT, socket.connect(address)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("cannot connect to {address}: {e}")),
        Err(_) => Err(format!(
            "cannot connect to {address}: no answer in {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// OpenSent and OpenConfirm on one connection.
async fn handshake(
    origin: Origin,
    stream: TcpStream,
    config: &SessionConfig,
    emitter: &Emitter,
    mut abandoned: watch::Receiver<bool>,
) -> (Origin, Result<Connection, String>) {
    (
        origin,
        handshake_inner(stream, config, emitter, &mut abandoned).await,
    )
}

async fn handshake_inner(
    stream: TcpStream,
    config: &SessionConfig,
    emitter: &Emitter,
    abandoned: &mut watch::Receiver<bool>,
) -> Result<Connection, String> {
    let _ = stream.set_nodelay(true);
    let local_address = stream
        .local_addr()
        .map(|a| crate::config::canonical(a.ip()))
        .map_err(|e| format!("connection lost: {e}"))?;
    let (read, mut writer) = stream.into_split();
    if *abandoned.borrow() {
        // Connected after another connection won.
        return Err(fail(
            &mut writer,
            collision_cease(),
            "connection collision: another connection was kept".to_string(),
        )
        .await);
    }
    let mut reader = MessageReader::new(read);
    let ours = config.open();
    let bytes = Message::Open(ours.clone())
        .to_bytes(&Context::default())
        .map_err(|e| format!("cannot encode our OPEN: {e}"))?;
    writer
        .write_all(&bytes)
        .await
        .map_err(|e| format!("cannot send OPEN: {e}"))?;
    if !*abandoned.borrow() {
        emitter.state(State::OpenSent);
    }

    let theirs = match read_one(
        &mut reader,
        &Context::default(),
        OPEN_HOLD_TIME,
        &mut writer,
        abandoned,
    )
    .await?
    {
        Message::Open(open) => open,
        other => {
            return Err(fail(
                &mut writer,
                Notification::new(
                    code::FINITE_STATE_MACHINE,
                    FSM_UNEXPECTED_IN_OPENSENT,
                    Vec::new(),
                ),
                format!("expected OPEN, got {}", kind(&other)),
            )
            .await)
        }
    };
    let remote_as = theirs.asn().0;
    if remote_as != config.remote_as {
        return Err(fail(
            &mut writer,
            Notification::new(
                code::OPEN_MESSAGE,
                subcode::BAD_PEER_AS,
                theirs.my_as.to_be_bytes().to_vec(),
            ),
            format!(
                "peer says it is AS {remote_as}; configured remote_as is {}",
                config.remote_as
            ),
        )
        .await);
    }
    let id = theirs.bgp_identifier;
    if id.is_unspecified() || (remote_as == config.local_as && id == config.router_id) {
        return Err(fail(
            &mut writer,
            Notification::new(
                code::OPEN_MESSAGE,
                subcode::BAD_BGP_IDENTIFIER,
                id.octets().to_vec(),
            ),
            format!("peer's BGP identifier {id} is not valid here"),
        )
        .await);
    }
    let negotiated = codec::negotiate(&ours, &theirs);
    let hold_time = ours.hold_time.min(theirs.hold_time);
    let their_families: Vec<Family> = theirs
        .capabilities()
        .filter_map(|c| match c {
            Capability::Multiprotocol { family } => Some(*family),
            _ => None,
        })
        .collect();
    let families: Vec<Family> = config
        .families
        .iter()
        .copied()
        .filter(|f| {
            if their_families.is_empty() {
                // RFC 4760 §8: without the capability, a speaker does IPv4 unicast only.
                *f == Family::IPV4_UNICAST
            } else {
                their_families.contains(f)
            }
        })
        .collect();
    let route_refresh = theirs
        .capabilities()
        .any(|c| matches!(c, Capability::RouteRefresh));
    let peer_restart = theirs.capabilities().find_map(|c| match c {
        Capability::GracefulRestart(gr) => Some(gr.clone()),
        _ => None,
    });

    writer
        .write_all(&keepalive())
        .await
        .map_err(|e| format!("cannot send KEEPALIVE: {e}"))?;
    if !*abandoned.borrow() {
        emitter.state(State::OpenConfirm);
    }
    let wait = if hold_time == 0 {
        OPEN_HOLD_TIME
    } else {
        Duration::from_secs(u64::from(hold_time))
    };
    match read_one(
        &mut reader,
        &negotiated.receive,
        wait,
        &mut writer,
        abandoned,
    )
    .await?
    {
        Message::Keepalive => {}
        other => {
            return Err(fail(
                &mut writer,
                Notification::new(
                    code::FINITE_STATE_MACHINE,
                    FSM_UNEXPECTED_IN_OPENCONFIRM,
                    Vec::new(),
                ),
                format!("expected KEEPALIVE, got {}", kind(&other)),
            )
            .await)
        }
    }
    Ok(Connection {
        reader,
        writer,
        established: Established {
            local_address,
            remote_router_id: id,
            remote_as,
            hold_time,
            negotiated,
            families,
            route_refresh,
            peer_restart,
        },
    })
}

/// Reads one message before Established: NOTIFICATIONs and decode errors end the handshake,
/// and so does another connection winning a collision (Cease 6/7 on this one).
async fn read_one(
    reader: &mut MessageReader,
    ctx: &Context,
    wait: Duration,
    writer: &mut OwnedWriteHalf,
    abandoned: &mut watch::Receiver<bool>,
) -> Result<Message, String> {
    let read = tokio::select! {
        read = timeout(wait, reader.next(ctx)) => read,
        // Also when the sender is gone: nothing waits for this handshake any more.
        () = async {
            // The guard `wait_for` returns is not Send: drop it here.
            let _ = abandoned.wait_for(|abandoned| *abandoned).await;
        } => {
            return Err(fail(
                writer,
                collision_cease(),
                "connection collision: another connection was kept".to_string(),
            )
            .await)
        }
    };
    let read = match read {
        Ok(read) => read,
        Err(_) => {
            return Err(fail(
                writer,
                Notification::new(code::HOLD_TIMER_EXPIRED, 0, Vec::new()),
                "hold timer expired".to_string(),
            )
            .await)
        }
    };
    match read {
        Ok(bytes) => match decode_message(&bytes, ctx) {
            Ok(Received::Message(Message::Notification(n))) => {
                Err(format!("peer sent NOTIFICATION {n}"))
            }
            Ok(Received::Message(message)) => Ok(message),
            Ok(_) => Err(fail(
                writer,
                Notification::new(code::FINITE_STATE_MACHINE, 0, Vec::new()),
                "UPDATE before the session was established".to_string(),
            )
            .await),
            Err(e) => Err(fail(writer, e.notification.clone(), e.reason).await),
        },
        Err(ReadError::Closed) => Err("peer closed the connection".to_string()),
        Err(ReadError::Io(e)) => Err(format!("connection lost: {e}")),
        Err(ReadError::Framing(e)) => Err(fail(writer, e.notification.clone(), e.reason).await),
    }
}

async fn fail(writer: &mut OwnedWriteHalf, notification: Notification, reason: String) -> String {
    send_notification(writer, &notification).await;
    format!("{reason} (sent NOTIFICATION {notification})")
}

async fn send_notification(writer: &mut OwnedWriteHalf, notification: &Notification) {
    if let Ok(bytes) = Message::Notification(notification.clone()).to_bytes(&Context::default()) {
        let _ = timeout(CLOSE_TIMEOUT, writer.write_all(&bytes)).await;
        let _ = timeout(CLOSE_TIMEOUT, writer.shutdown()).await;
    }
}

fn keepalive() -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&[0, 19, 4]);
    out
}

fn kind(message: &Message) -> &'static str {
    match message {
        Message::Open(_) => "OPEN",
        Message::Update(_) => "UPDATE",
        Message::Notification(_) => "NOTIFICATION",
        Message::Keepalive => "KEEPALIVE",
        Message::RouteRefresh(_) => "ROUTE-REFRESH",
    }
}

enum Closed {
    Stopped,
    /// The session ended; `graceful`: without a NOTIFICATION either way (the connection was
    /// closed or lost), which is when a graceful restart helper keeps the peer's routes
    /// (RFC 4724 §4.2).
    Down {
        reason: String,
        graceful: bool,
    },
}

fn down(reason: String) -> Closed {
    Closed::Down {
        reason,
        graceful: false,
    }
}

enum Outgoing {
    Bytes(Arc<Vec<u8>>),
    Close(Notification),
}

/// Established until an error, a NOTIFICATION, the hold timer or a command ends it.
async fn established(
    connection: Connection,
    config: &SessionConfig,
    commands: &mut mpsc::UnboundedReceiver<SessionCommand>,
    emitter: &Emitter,
) -> Closed {
    let Connection {
        mut reader,
        writer,
        established,
    } = connection;
    let receive = established.negotiated.receive;
    let hold =
        (established.hold_time > 0).then(|| Duration::from_secs(u64::from(established.hold_time)));
    let keepalive_every = hold.map(|h| h / 3);
    let (out, out_rx) = mpsc::unbounded_channel();
    let writer_task = tokio::spawn(write_loop(writer, out_rx));
    let keepalive = Arc::new(keepalive());
    let backlog = Arc::new(tokio::sync::Semaphore::new(UPDATE_BACKLOG));
    let mut hold_deadline = hold.map(|h| Instant::now() + h);
    let mut keepalive_deadline = keepalive_every.map(|k| Instant::now() + k);
    let close = |out: mpsc::UnboundedSender<Outgoing>,
                 writer_task: tokio::task::JoinHandle<()>,
                 notification: Notification| async move {
        let _ = out.send(Outgoing::Close(notification));
        drop(out);
        let _ = timeout(CLOSE_TIMEOUT, writer_task).await;
    };
    loop {
        tokio::select! {
            () = async { sleep_until(hold_deadline.unwrap_or_else(Instant::now)).await }, if hold_deadline.is_some() => {
                let n = Notification::new(code::HOLD_TIMER_EXPIRED, 0, Vec::new());
                close(out, writer_task, n.clone()).await;
                return down(format!("hold timer expired (sent NOTIFICATION {n})"));
            }
            () = async { sleep_until(keepalive_deadline.unwrap_or_else(Instant::now)).await }, if keepalive_deadline.is_some() => {
                let _ = out.send(Outgoing::Bytes(keepalive.clone()));
                keepalive_deadline = keepalive_every.map(|k| Instant::now() + k);
            }
            command = commands.recv() => match command {
                Some(SessionCommand::Send(bytes)) => {
                    let _ = out.send(Outgoing::Bytes(bytes));
                }
                Some(SessionCommand::Incoming(stream)) => {
                    // RFC 4271 §6.8: a new connection while Established is closed.
                    tokio::spawn(async move {
                        let (_, mut writer) = stream.into_split();
                        send_notification(&mut writer, &Notification::new(code::CEASE, subcode::CONNECTION_REJECTED, Vec::new())).await;
                    });
                }
                Some(SessionCommand::Reset(n, reason)) => {
                    close(out, writer_task, n.clone()).await;
                    return down(format!("{reason} (sent NOTIFICATION {n})"));
                }
                Some(SessionCommand::Stop(n)) => {
                    close(out, writer_task, n).await;
                    return Closed::Stopped;
                }
                None => {
                    close(out, writer_task, Notification::new(code::CEASE, subcode::ADMINISTRATIVE_SHUTDOWN, Vec::new())).await;
                    return Closed::Stopped;
                }
            },
            read = reader.next(&receive) => {
                let bytes = match read {
                    Ok(bytes) => bytes,
                    Err(ReadError::Closed) => return Closed::Down { reason: "peer closed the connection".to_string(), graceful: true },
                    Err(ReadError::Io(e)) => return Closed::Down { reason: format!("connection lost: {e}"), graceful: true },
                    Err(ReadError::Framing(e)) => {
                        close(out, writer_task, e.notification.clone()).await;
                        return down(format!("{} (sent NOTIFICATION {})", e.reason, e.notification));
                    }
                };
                hold_deadline = hold.map(|h| Instant::now() + h);
                // Wait for a free slot before taking another message: the speaker is behind.
                let slot = Slot { _permit: backlog.clone().acquire_owned().await.ok() };
                match decode_message(&bytes, &receive) {
                    Ok(Received::Message(Message::Update(update))) => {
                        emitter.emit(SessionEvent::Update(Box::new(update), slot));
                    }
                    Ok(Received::UpdateWithDiscards { update, discarded }) => {
                        let list: Vec<String> = discarded.iter().map(|p| p.to_string()).collect();
                        emitter.emit(SessionEvent::Log {
                            warn: true,
                            message: format!("neighbor {} sent a malformed UPDATE; attributes discarded (RFC 7606): {}", config.peer, list.join("; ")),
                        });
                        emitter.emit(SessionEvent::Update(Box::new(update), slot));
                    }
                    Ok(Received::TreatAsWithdraw(t)) => {
                        let list: Vec<String> = t.problems.iter().map(|p| p.to_string()).collect();
                        emitter.emit(SessionEvent::Log {
                            warn: true,
                            message: format!("neighbor {} sent a malformed UPDATE; its routes are treated as withdrawn (RFC 7606): {}", config.peer, list.join("; ")),
                        });
                        emitter.emit(SessionEvent::Withdraw(t.withdrawn));
                    }
                    Ok(Received::Message(Message::Keepalive)) => {}
                    Ok(Received::Message(Message::RouteRefresh(rr))) => {
                        emitter.emit(SessionEvent::RouteRefresh(rr.family));
                    }
                    Ok(Received::Message(Message::Notification(n))) => {
                        return down(format!("peer sent NOTIFICATION {n}"));
                    }
                    Ok(Received::Message(Message::Open(_))) => {
                        let n = Notification::new(code::FINITE_STATE_MACHINE, FSM_UNEXPECTED_IN_ESTABLISHED, Vec::new());
                        close(out, writer_task, n.clone()).await;
                        return down(format!("OPEN while established (sent NOTIFICATION {n})"));
                    }
                    Err(DecodeError { notification, reason }) => {
                        close(out, writer_task, notification.clone()).await;
                        return down(format!("{reason} (sent NOTIFICATION {notification})"));
                    }
                }
            }
        }
    }
}

async fn write_loop(writer: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(item) = rx.recv().await {
        match item {
            Outgoing::Bytes(bytes) => {
                if writer.write_all(&bytes).await.is_err() {
                    return;
                }
                if rx.is_empty() && writer.flush().await.is_err() {
                    return;
                }
            }
            Outgoing::Close(notification) => {
                let _ = writer.flush().await;
                let mut inner = writer.into_inner();
                send_notification(&mut inner, &notification).await;
                return;
            }
        }
    }
    let _ = writer.flush().await;
}

#[derive(Debug)]
enum ReadError {
    Closed,
    Io(std::io::Error),
    Framing(DecodeError),
}

/// Splits the byte stream into messages with the codec's [`message_length`].
struct MessageReader {
    read: OwnedReadHalf,
    buffer: Vec<u8>,
    start: usize,
}

impl MessageReader {
    fn new(read: OwnedReadHalf) -> MessageReader {
        MessageReader {
            read,
            buffer: Vec::with_capacity(64 * 1024),
            start: 0,
        }
    }

    /// The next whole message. Cancel-safe: bytes read stay in the buffer.
    async fn next(&mut self, ctx: &Context) -> Result<Vec<u8>, ReadError> {
        loop {
            let pending = &self.buffer[self.start..];
            if let Some(length) = message_length(pending, ctx).map_err(ReadError::Framing)? {
                if pending.len() >= length {
                    let message = pending[..length].to_vec();
                    self.start += length;
                    if self.start == self.buffer.len() {
                        self.buffer.clear();
                        self.start = 0;
                    }
                    return Ok(message);
                }
            }
            if self.start > 0 {
                self.buffer.drain(..self.start);
                self.start = 0;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.read.read(&mut chunk).await.map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn connect_retry_doubles_up_to_the_cap_with_jitter_down_to_three_quarters() {
        let retry = ConnectRetry {
            first: Duration::from_secs(2),
            cap: Duration::from_secs(60),
        };
        let secs = |failures, jitter| retry.delay(failures, jitter).as_secs_f64();
        assert_eq!(secs(1, 1.0), 2.0);
        assert_eq!(secs(2, 1.0), 4.0);
        assert_eq!(secs(5, 1.0), 32.0);
        assert_eq!(secs(6, 1.0), 60.0, "64 s is capped");
        assert_eq!(secs(u32::MAX, 1.0), 60.0);
        assert_eq!(secs(0, 1.0), 2.0, "no failure yet waits like the first");
        assert_eq!(secs(1, 0.0), 1.5);
        assert_eq!(secs(6, 0.0), 45.0);
        assert_eq!(secs(1, 7.0), 2.0, "jitter is clamped to [0, 1]");
        assert_eq!(secs(1, -1.0), 1.5);
        let mut backoff = Backoff::new(retry);
        let waits: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        for (n, wait) in waits.iter().enumerate() {
            let full = retry.delay(n as u32 + 1, 1.0);
            assert!(
                *wait <= full && *wait >= full.mul_f64(0.75),
                "{n}: {wait:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_secs(2));
    }

    async fn receive(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Message> {
        loop {
            if let Some(length) = message_length(buffer, &Context::default()).unwrap() {
                if buffer.len() >= length {
                    let bytes: Vec<u8> = buffer.drain(..length).collect();
                    return match decode_message(&bytes, &Context::default()).unwrap() {
                        Received::Message(message) => Some(message),
                        other => panic!("unexpected {other:?}"),
                    };
                }
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(Duration::from_secs(10), stream.read(&mut chunk))
                .await
                .expect("the session said nothing for 10 s")
                .unwrap();
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send(stream: &mut TcpStream, message: Message) {
        let bytes = message.to_bytes(&Context::default()).unwrap();
        stream.write_all(&bytes).await.unwrap();
    }

    #[tokio::test]
    async fn the_connection_losing_a_collision_gets_cease_connection_collision_resolution() {
        let outgoing = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let incoming = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = SessionConfig {
            local_as: 65001,
            // Higher than the peer's: our own (outgoing) connection wins.
            router_id: Ipv4Addr::new(10, 0, 0, 2),
            peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
            remote_as: 65002,
            port: outgoing.local_addr().unwrap().port(),
            passive: false,
            hold_time: 9,
            families: vec![Family::IPV4_UNICAST],
            password: None,
            connect_retry: ConnectRetry {
                first: Duration::from_secs(2),
                cap: Duration::from_secs(60),
            },
            graceful_restart: None,
        };
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let session = SessionHandle::spawn(7, config, events_tx);

        // The peer's connection reaches the session first and stays in OpenSent.
        let mut peer_side = TcpStream::connect(incoming.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = incoming.accept().await.unwrap();
        session.send(SessionCommand::Incoming(accepted));
        let mut peer_buffer = Vec::new();
        assert!(matches!(
            receive(&mut peer_side, &mut peer_buffer).await,
            Some(Message::Open(_))
        ));

        // Our connection completes the handshake and wins.
        let (mut ours, _) = outgoing.accept().await.unwrap();
        let mut our_buffer = Vec::new();
        assert!(matches!(
            receive(&mut ours, &mut our_buffer).await,
            Some(Message::Open(_))
        ));
        let open = Open::new(
            Asn(65002),
            9,
            Ipv4Addr::new(10, 0, 0, 1),
            vec![Capability::Multiprotocol {
                family: Family::IPV4_UNICAST,
            }],
        );
        send(&mut ours, Message::Open(open)).await;
        assert_eq!(
            receive(&mut ours, &mut our_buffer).await,
            Some(Message::Keepalive)
        );
        send(&mut ours, Message::Keepalive).await;

        // The other connection is closed with Cease / Connection Collision Resolution.
        match receive(&mut peer_side, &mut peer_buffer).await {
            Some(Message::Notification(n)) => {
                assert_eq!((n.code, n.subcode), (6, 7), "{n}");
            }
            other => panic!("expected NOTIFICATION 6/7, got {other:?}"),
        }
        assert_eq!(receive(&mut peer_side, &mut peer_buffer).await, None);

        // The session is up on our connection, and the loser was never reported as a failure.
        loop {
            let (id, event) = timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("no Established event")
                .expect("events end");
            assert_eq!(id, 7);
            match event {
                SessionEvent::Established(e) => {
                    assert_eq!(e.remote_router_id, Ipv4Addr::new(10, 0, 0, 1));
                    break;
                }
                SessionEvent::Down { reason, .. } => panic!("unexpected Down: {reason}"),
                _ => {}
            }
        }
        session
            .stop(Notification::new(
                code::CEASE,
                subcode::ADMINISTRATIVE_SHUTDOWN,
                Vec::new(),
            ))
            .await;
    }
}
