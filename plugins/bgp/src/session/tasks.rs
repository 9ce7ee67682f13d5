//! A session's I/O: the task that runs one neighbor's connections through [`Fsm`]s, the TCP
//! connects, the read and write loops and the timers. Nothing here decides anything about BGP:
//! bytes become [`Event`]s, and the machine's [`Action`]s become writes, timers and
//! [`SessionEvent`]s.
//!
//! ```text
//!   speaker ──SessionCommand──► run (one task per neighbor)
//!      ▲                          │ Idle: ConnectRetry wait (Backoff), or the peer's connection
//!      │                          ▼
//!      │                       establish ── connect() ──► handshake (Origin::Outgoing) ─┐
//!      │                          │  ◄── Incoming(TcpStream) ─► handshake (Incoming) ───┤ one Fsm
//!      │                          │      (FuturesUnordered; the first to reach           │ each
//!      │                          │       Established wins, collision_keeps decides;     │
//!      │                          │       `abandon` closes the others with Cease 6/7) ◄─┘
//!      │                          ▼
//!      │                       established ── reader.next() ─► Event ─► Fsm ─► Actions
//!      │                          │   hold / keepalive deadlines ─► Event      │
//!      └──(id, SessionEvent)──────┘   Send(bytes) ──► mpsc ──► write_loop ─► TCP (BufWriter)
//!                                      Slot: UPDATE_BACKLOG permits, held until the speaker
//!                                      has handled an UPDATE (TCP flow control beyond that)
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};

use ztos_bgp_codec::notification::{code, subcode};
use ztos_bgp_codec::{decode_message, message_length, Context, DecodeError, Message, Notification};

use super::fsm::{collision_keeps, Action, Delivery, Event, Fsm, Origin, OPEN_HOLD_TIME};
use super::{
    Backoff, Established, SessionCommand, SessionConfig, SessionError, SessionEvent, Slot, State,
    UPDATE_BACKLOG,
};

/// How long a TCP connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing session waits for its NOTIFICATION to be written.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

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

/// The session task: connections until one is Established, Established until it ends, the
/// Idle wait, and again; until Stop.
pub(super) async fn run(
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
            Some(connection) => connection,
            None => return,
        };
        backoff.reset();
        emitter.emit(SessionEvent::Established(connection.established.clone()));
        emitter.state(State::Established);
        match established(connection, &mut commands, &emitter).await {
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
    fsm: Fsm,
    established: Established,
    /// The hold and keepalive waits the machine set on reaching Established.
    hold: Option<Duration>,
    keepalive: Option<Duration>,
}

type Handshake = BoxFuture<'static, (Origin, Result<Connection, SessionError>)>;

/// Connect, Active, OpenSent and OpenConfirm: returns the connection that reached
/// Established, `None` when stopped. An active session first connects after
/// `first_attempt`, and after each failure after `backoff`'s next wait.
async fn establish(
    config: &SessionConfig,
    commands: &mut mpsc::UnboundedReceiver<SessionCommand>,
    emitter: &Arc<Emitter>,
    backoff: &mut Backoff,
    first_attempt: Duration,
    incoming: Option<TcpStream>,
) -> Option<Connection> {
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
            stream,
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
                    let stream = connecting.await;
                    handshake(Origin::Outgoing, stream, &config, &emitter, abandoned).await
                }));
            }
            command = commands.recv() => match command {
                None | Some(SessionCommand::Stop(_)) => return None,
                Some(SessionCommand::Incoming(stream)) => {
                    handshakes.push(start_handshake(Origin::Incoming, stream, config, emitter, &abandoned));
                }
                Some(SessionCommand::Reset(..)) | Some(SessionCommand::Send(_)) => {}
            },
            Some((origin, result)) = handshakes.next(), if !handshakes.is_empty() => {
                if origin == Origin::Outgoing {
                    outgoing_pending = false;
                }
                match result {
                    Ok(mut connection) => {
                        if handshakes.is_empty() {
                            return Some(connection);
                        }
                        let remote_id = connection.established.remote_router_id;
                        if collision_keeps(origin, config.router_id, remote_id) {
                            abandon_others(handshakes, abandon);
                            return Some(connection);
                        }
                        for action in connection.fsm.event(Event::OpenCollisionDump) {
                            if let Action::SendNotification(n) = action {
                                send_notification(&mut connection.writer, &n).await;
                            }
                        }
                    }
                    Err(reason) => {
                        emitter.emit(SessionEvent::Down { reason: reason.to_string(), was_established: false, graceful: false });
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
    stream: TcpStream,
    config: &SessionConfig,
    emitter: &Arc<Emitter>,
    abandoned: &watch::Receiver<bool>,
) -> Handshake {
    let config = config.clone();
    let emitter = emitter.clone();
    let abandoned = abandoned.clone();
    Box::pin(async move { handshake(origin, Ok(stream), &config, &emitter, abandoned).await })
}

async fn connect(config: SessionConfig) -> Result<TcpStream, SessionError> {
    let address = SocketAddr::new(config.peer, config.port);
    let socket = match config.peer {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|source| SessionError::Socket { address, source })?;
    if let Some(password) = &config.password {
        let local = match config.peer {
            IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
        };
        crate::md5::set_key(&socket, local, config.peer, password.as_bytes())?;
    }
    match timeout(CONNECT_TIMEOUT, socket.connect(address)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(SessionError::Connect { address, source }),
        Err(_) => Err(SessionError::ConnectTimeout {
            address,
            after: CONNECT_TIMEOUT,
        }),
    }
}

/// One connection's machine from its start to Established (or its end): `stream` is the
/// connection, or why connecting failed.
async fn handshake(
    origin: Origin,
    stream: Result<TcpStream, SessionError>,
    config: &SessionConfig,
    emitter: &Emitter,
    mut abandoned: watch::Receiver<bool>,
) -> (Origin, Result<Connection, SessionError>) {
    let mut fsm = Fsm::new(config);
    // Connect (whose action the caller has taken) or Active.
    fsm.event(Event::ManualStart {
        passive: origin == Origin::Incoming,
    });
    let result = match stream {
        Ok(stream) => handshake_inner(stream, fsm, emitter, &mut abandoned).await,
        Err(e) => Err(SessionError::Closed(close_reason(
            fsm.event(Event::TcpConnectionFails(e.to_string())),
        ))),
    };
    (origin, result)
}

/// The reason of the `Close` among `actions`.
fn close_reason(actions: Vec<Action>) -> String {
    actions
        .into_iter()
        .find_map(|a| match a {
            Action::Close { reason, .. } => Some(reason),
            _ => None,
        })
        .unwrap_or_default()
}

/// OpenSent and OpenConfirm on one connection.
async fn handshake_inner(
    stream: TcpStream,
    mut fsm: Fsm,
    emitter: &Emitter,
    abandoned: &mut watch::Receiver<bool>,
) -> Result<Connection, SessionError> {
    let _ = stream.set_nodelay(true);
    let local_address = stream
        .local_addr()
        .map(|a| crate::config::canonical(a.ip()))
        .map_err(SessionError::Lost)?;
    let (read, mut writer) = stream.into_split();
    let mut reader = MessageReader::new(read);
    // Connected after another connection won: closed at once.
    let mut event = if *abandoned.borrow() {
        Event::OpenCollisionDump
    } else {
        Event::TcpConnectionConfirmed { local_address }
    };
    let mut hold = Some(OPEN_HOLD_TIME);
    let mut keepalive = None;
    loop {
        let before = fsm.state();
        for action in fsm.event(event) {
            match action {
                Action::SendOpen(open) => {
                    let bytes = Message::Open(open)
                        .to_bytes(&Context::default())
                        .map_err(SessionError::EncodeOpen)?;
                    writer
                        .write_all(&bytes)
                        .await
                        .map_err(SessionError::SendOpen)?;
                }
                Action::SendKeepalive => writer
                    .write_all(&keepalive_bytes())
                    .await
                    .map_err(SessionError::SendKeepalive)?,
                Action::SendNotification(n) => send_notification(&mut writer, &n).await,
                Action::HoldTimer(wait) => hold = wait,
                Action::KeepaliveTimer(every) => keepalive = every,
                Action::Established(established) => {
                    return Ok(Connection {
                        reader,
                        writer,
                        fsm,
                        established: *established,
                        hold,
                        keepalive,
                    })
                }
                Action::Close { reason, .. } => return Err(SessionError::Closed(reason)),
                Action::Connect | Action::Deliver(_) => {}
            }
        }
        let now = fsm.state();
        if now != before
            && matches!(now, State::OpenSent | State::OpenConfirm)
            && !*abandoned.borrow()
        {
            emitter.state(now);
        }
        let wait = hold.unwrap_or(OPEN_HOLD_TIME);
        event = read_event(&mut reader, fsm.receive_context(), wait, abandoned).await;
    }
}

/// Reads one message before Established as an event: a timeout is the hold timer, and
/// another connection winning a collision is `OpenCollisionDump`.
async fn read_event(
    reader: &mut MessageReader,
    ctx: Context,
    wait: Duration,
    abandoned: &mut watch::Receiver<bool>,
) -> Event {
    let read = tokio::select! {
        read = timeout(wait, reader.next(&ctx)) => read,
        // Also when the sender is gone: nothing waits for this handshake any more.
        () = async {
            // The guard `wait_for` returns is not Send: drop it here.
            let _ = abandoned.wait_for(|abandoned| *abandoned).await;
        } => return Event::OpenCollisionDump,
    };
    match read {
        Err(_) => Event::HoldTimerExpires,
        Ok(read) => read_to_event(read, &ctx),
    }
}

/// What was read as the machine's event.
fn read_to_event(read: Result<Vec<u8>, ReadError>, ctx: &Context) -> Event {
    match read {
        Ok(bytes) => Event::from_received(decode_message(&bytes, ctx)),
        Err(ReadError::Closed) => Event::TcpConnectionFails("peer closed the connection".into()),
        Err(ReadError::Io(e)) => Event::TcpConnectionFails(SessionError::Lost(e).to_string()),
        Err(ReadError::Framing(e)) => Event::BGPHeaderErr(e),
    }
}

async fn send_notification(writer: &mut OwnedWriteHalf, notification: &Notification) {
    if let Ok(bytes) = Message::Notification(notification.clone()).to_bytes(&Context::default()) {
        let _ = timeout(CLOSE_TIMEOUT, writer.write_all(&bytes)).await;
        let _ = timeout(CLOSE_TIMEOUT, writer.shutdown()).await;
    }
}

fn keepalive_bytes() -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&[0, 19, 4]);
    out
}

enum Closed {
    Stopped,
    /// The session ended; `graceful`: without a NOTIFICATION either way (see
    /// [`Action::Close`]).
    Down {
        reason: String,
        graceful: bool,
    },
}

enum Outgoing {
    Bytes(Arc<Vec<u8>>),
    Close(Notification),
}

/// Established until an error, a NOTIFICATION, the hold timer or a command ends it.
async fn established(
    connection: Connection,
    commands: &mut mpsc::UnboundedReceiver<SessionCommand>,
    emitter: &Emitter,
) -> Closed {
    let Connection {
        mut reader,
        writer,
        mut fsm,
        hold,
        keepalive: keepalive_every,
        ..
    } = connection;
    let receive = fsm.receive_context();
    let (out, out_rx) = mpsc::unbounded_channel();
    let writer_task = tokio::spawn(write_loop(writer, out_rx));
    let mut link = Some((out, writer_task));
    let keepalive = Arc::new(keepalive_bytes());
    let backlog = Arc::new(tokio::sync::Semaphore::new(UPDATE_BACKLOG));
    let mut hold_deadline = hold.map(|h| Instant::now() + h);
    let mut keepalive_deadline = keepalive_every.map(|k| Instant::now() + k);
    let mut stopping = false;
    loop {
        let mut slot = None;
        // When the event happened: timers set by its actions count from then.
        let mut at = Instant::now();
        let event = tokio::select! {
            () = async { sleep_until(hold_deadline.unwrap_or_else(Instant::now)).await }, if hold_deadline.is_some() => {
                Event::HoldTimerExpires
            }
            () = async { sleep_until(keepalive_deadline.unwrap_or_else(Instant::now)).await }, if keepalive_deadline.is_some() => {
                Event::KeepaliveTimerExpires
            }
            command = commands.recv() => match command {
                Some(SessionCommand::Send(bytes)) => {
                    if let Some((out, _)) = &link {
                        let _ = out.send(Outgoing::Bytes(bytes));
                    }
                    continue;
                }
                Some(SessionCommand::Incoming(stream)) => {
                    // RFC 4271 §6.8: a new connection while Established is closed.
                    tokio::spawn(async move {
                        let (_, mut writer) = stream.into_split();
                        send_notification(&mut writer, &Notification::new(code::CEASE, subcode::CONNECTION_REJECTED, Vec::new())).await;
                    });
                    continue;
                }
                Some(SessionCommand::Reset(notification, reason)) => Event::AutomaticStop { notification, reason },
                Some(SessionCommand::Stop(n)) => {
                    stopping = true;
                    Event::ManualStop(n)
                }
                None => {
                    stopping = true;
                    Event::ManualStop(Notification::new(code::CEASE, subcode::ADMINISTRATIVE_SHUTDOWN, Vec::new()))
                }
            },
            read = reader.next(&receive) => {
                at = Instant::now();
                if read.is_ok() {
                    // Wait for a free slot before taking another message: the speaker is behind.
                    slot = Some(Slot { _permit: backlog.clone().acquire_owned().await.ok() });
                }
                read_to_event(read, &receive)
            }
        };
        for action in fsm.event(event) {
            match action {
                Action::SendKeepalive => {
                    if let Some((out, _)) = &link {
                        let _ = out.send(Outgoing::Bytes(keepalive.clone()));
                    }
                }
                Action::SendNotification(n) => {
                    if let Some((out, writer_task)) = link.take() {
                        let _ = out.send(Outgoing::Close(n));
                        drop(out);
                        let _ = timeout(CLOSE_TIMEOUT, writer_task).await;
                    }
                }
                Action::HoldTimer(wait) => hold_deadline = wait.map(|h| at + h),
                Action::KeepaliveTimer(wait) => {
                    keepalive_deadline = wait.map(|k| Instant::now() + k);
                }
                Action::Deliver(Delivery::Update(update)) => {
                    let slot = slot.take().unwrap_or(Slot { _permit: None });
                    emitter.emit(SessionEvent::Update(update, slot));
                }
                Action::Deliver(Delivery::Withdraw(withdrawn)) => {
                    emitter.emit(SessionEvent::Withdraw(withdrawn));
                }
                Action::Deliver(Delivery::RouteRefresh(family)) => {
                    emitter.emit(SessionEvent::RouteRefresh(family));
                }
                Action::Deliver(Delivery::Log { warn, message }) => {
                    emitter.emit(SessionEvent::Log { warn, message });
                }
                Action::Close { reason, graceful } => {
                    return if stopping {
                        Closed::Stopped
                    } else {
                        Closed::Down { reason, graceful }
                    };
                }
                Action::Connect | Action::SendOpen(_) | Action::Established(_) => {}
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
