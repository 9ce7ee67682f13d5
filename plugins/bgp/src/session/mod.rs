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
//!   identifier, hold time), capabilities negotiated through [`ztos_bgp_codec::negotiate`], KEEPALIVE
//!   exchanged. Two connections at once are resolved as RFC 4271 §6.8 says: the one initiated
//!   by the speaker with the higher BGP identifier stays, and the other is closed with
//!   NOTIFICATION Cease / Connection Collision Resolution (6/7), also when it is still in
//!   OpenSent.
//! - Established: the hold timer is reset by every message; KEEPALIVEs go out every third of
//!   the negotiated hold time; errors send the NOTIFICATION the codec names and go back to Idle.
//!
//! The decisions are [`fsm`]'s, a pure state machine fed events and answering with actions;
//! `tasks` owns the sockets, the read and write loops and the timers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::md5::Md5Error;
use ztos_bgp_codec::{
    Asn, Capability, EncodeError, Family, GracefulRestart, Negotiated, NlriList, Notification,
    Open, Update,
};

pub mod fsm;
mod tasks;

/// Why a connection of a session did not reach Established: connecting failed, the OPEN or
/// KEEPALIVE could not be written, or the state machine closed it. The text is the reason of
/// the [`SessionEvent::Down`] the speaker logs and shows as the neighbor's last error.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot create a socket for {address}: {source}")]
    Socket {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The TCP MD5 key could not be set on the outgoing socket.
    #[error(transparent)]
    Md5(#[from] Md5Error),
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {address}: no answer in {} s", .after.as_secs())]
    ConnectTimeout {
        address: SocketAddr,
        after: Duration,
    },
    #[error("connection lost: {0}")]
    Lost(#[source] std::io::Error),
    #[error("cannot encode our OPEN: {0}")]
    EncodeOpen(#[source] EncodeError),
    #[error("cannot send OPEN: {0}")]
    SendOpen(#[source] std::io::Error),
    #[error("cannot send KEEPALIVE: {0}")]
    SendKeepalive(#[source] std::io::Error),
    /// The state machine closed the connection; the reason is its own (see [`fsm::Action`]).
    #[error("{0}")]
    Closed(String),
}

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
        let task = tokio::spawn(tasks::run(id, config, receiver, events));
        SessionHandle { commands, task }
    }

    pub fn send(&self, command: SessionCommand) {
        // The task only ends after Stop; a send after that has nothing to do.
        let _ = self.commands.send(command);
    }

    /// Stops the session with `notification` and waits (briefly) for it to go out.
    pub async fn stop(self, notification: Notification) {
        self.send(SessionCommand::Stop(notification));
        if timeout(tasks::CLOSE_TIMEOUT * 2, self.task).await.is_err() {
            tracing::warn!("a BGP session task did not stop in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use ztos_bgp_codec::notification::{code, subcode};
    use ztos_bgp_codec::{decode_message, message_length, Context, Message, Received};

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

    #[test]
    fn session_errors_read_as_the_reasons_operators_saw() {
        let address: std::net::SocketAddr = "192.0.2.1:179".parse().unwrap();
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            SessionError::Connect {
                address,
                source: refused
            }
            .to_string(),
            "cannot connect to 192.0.2.1:179: connection refused"
        );
        assert_eq!(
            SessionError::ConnectTimeout {
                address,
                after: Duration::from_secs(10)
            }
            .to_string(),
            "cannot connect to 192.0.2.1:179: no answer in 10 s"
        );
        let lost = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(
            SessionError::SendOpen(lost).to_string(),
            "cannot send OPEN: broken pipe"
        );
        assert_eq!(
            SessionError::Closed("hold timer expired".to_string()).to_string(),
            "hold timer expired"
        );
    }
}
