//! The RFC 4271 §8 finite state machine of one BGP connection, with no I/O: [`Fsm::event`]
//! takes an [`Event`] (named as RFC 4271 §8.1 names them) and returns the [`Action`]s the
//! caller performs (send a message, set a timer, report). Everything the session decides is
//! decided here: the checks of the peer's OPEN (peer AS, BGP identifier; version and hold time
//! are refused by the codec's decoder, which [`Event::from_received`] turns into
//! `BGPOpenMsgErr`), the negotiated hold time, families, route refresh and graceful restart,
//! which NOTIFICATION an error sends, RFC 7606's treat-as-withdraw (the session stays up) and
//! which of two colliding connections stays ([`collision_keeps`], RFC 4271 §6.8).
//!
//! As RFC 4271 §8 allows while a collision is unresolved, there is one `Fsm` per TCP
//! connection; [`super::tasks`] runs them, owns the sockets and timers, and retries
//! connections with the ConnectRetry backoff. `plugins/bgp/tests/conformance` replays event
//! sequences through this machine without a socket (see `fsm_tests.rs`).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ztos_bgp_codec::notification::{code, subcode};
use ztos_bgp_codec::{
    self as codec, Capability, Context, DecodeError, Family, Message, NlriList, Notification, Open,
    Received, Update,
};

use super::{Established, SessionConfig, State};

/// Hold time while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);
/// FSM error subcodes (RFC 6608).
const FSM_UNEXPECTED_IN_OPENSENT: u8 = 1;
const FSM_UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
const FSM_UNEXPECTED_IN_ESTABLISHED: u8 = 3;

/// Which side opened a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Origin {
    /// We connected to the peer.
    Outgoing,
    /// The peer connected to our listener.
    Incoming,
}

/// RFC 4271 §6.8: of two connections that both reached OpenConfirm, the one initiated by the
/// speaker with the higher BGP identifier stays. True when the connection of `origin` stays.
pub fn collision_keeps(origin: Origin, local_id: Ipv4Addr, remote_id: Ipv4Addr) -> bool {
    let keep_outgoing = u32::from(local_id) > u32::from(remote_id);
    (origin == Origin::Outgoing) == keep_outgoing
}

/// The NOTIFICATION that closes the connection losing a collision (Cease 6/7).
pub fn collision_cease() -> Notification {
    Notification::new(
        code::CEASE,
        subcode::CONNECTION_COLLISION_RESOLUTION,
        Vec::new(),
    )
}

/// An input of the machine (RFC 4271 §8.1 names; the RFC 7606 outcomes of an UPDATE are
/// events of their own).
#[derive(Debug, Clone)]
pub enum Event {
    /// Event 1: start. An active connection goes to Connect and connects; a passive one waits
    /// in Active for the peer's connection.
    ManualStart { passive: bool },
    /// Event 2: stop, closing the connection with this NOTIFICATION when there is one.
    ManualStop(Notification),
    /// Event 8: the speaker resets the session (max-prefix, a configuration change) with this
    /// NOTIFICATION; `reason` is for the log.
    AutomaticStop {
        notification: Notification,
        reason: String,
    },
    /// Event 9: the ConnectRetry wait is over: connect again.
    ConnectRetryTimerExpires,
    /// Event 10.
    HoldTimerExpires,
    /// Event 11.
    KeepaliveTimerExpires,
    /// Events 16 and 17 (Tcp_CR_Acked, TcpConnectionConfirmed): the TCP connection is up, on
    /// our `local_address`.
    TcpConnectionConfirmed { local_address: IpAddr },
    /// Event 18: the connection closed or failed (`reason` for the log).
    TcpConnectionFails(String),
    /// Event 19.
    BGPOpen(Open),
    /// Event 21: a message header error (framing: marker, length, type).
    BGPHeaderErr(DecodeError),
    /// Event 22: an OPEN the decoder refused (version, hold time, capabilities).
    BGPOpenMsgErr(DecodeError),
    /// Event 23: the connection lost a collision.
    OpenCollisionDump,
    /// Events 24 and 25.
    NotifMsg(Notification),
    /// Event 26.
    KeepAliveMsg,
    /// Event 27.
    UpdateMsg(Box<Update>),
    /// Event 28: an UPDATE error that resets the session.
    UpdateMsgErr(DecodeError),
    /// RFC 7606 §2 attribute discard: the UPDATE is accepted without the listed attributes.
    UpdateMsgDiscards {
        update: Box<Update>,
        discarded: Vec<String>,
    },
    /// RFC 7606 §2 treat-as-withdraw: these routes are withdrawn and the session stays up.
    UpdateMsgTreatAsWithdraw {
        withdrawn: Vec<NlriList>,
        problems: Vec<String>,
    },
    /// RFC 2918: a ROUTE-REFRESH for this family.
    RouteRefreshMsg(Family),
}

impl Event {
    /// The event for a message read off the connection as the codec decoded it.
    pub fn from_received(received: Result<Received, DecodeError>) -> Event {
        match received {
            Ok(Received::Message(Message::Open(open))) => Event::BGPOpen(open),
            Ok(Received::Message(Message::Update(update))) => Event::UpdateMsg(Box::new(update)),
            Ok(Received::Message(Message::Notification(n))) => Event::NotifMsg(n),
            Ok(Received::Message(Message::Keepalive)) => Event::KeepAliveMsg,
            Ok(Received::Message(Message::RouteRefresh(rr))) => Event::RouteRefreshMsg(rr.family),
            Ok(Received::UpdateWithDiscards { update, discarded }) => Event::UpdateMsgDiscards {
                update: Box::new(update),
                discarded: discarded.iter().map(|p| p.to_string()).collect(),
            },
            Ok(Received::TreatAsWithdraw(t)) => Event::UpdateMsgTreatAsWithdraw {
                withdrawn: t.withdrawn,
                problems: t.problems.iter().map(|p| p.to_string()).collect(),
            },
            Err(e) => Event::from_decode_error(e),
        }
    }

    /// A decode error as the event its NOTIFICATION's code names.
    pub fn from_decode_error(e: DecodeError) -> Event {
        match e.notification.code {
            code::OPEN_MESSAGE => Event::BGPOpenMsgErr(e),
            code::UPDATE_MESSAGE => Event::UpdateMsgErr(e),
            _ => Event::BGPHeaderErr(e),
        }
    }

    /// The event's RFC name, for logs and the conformance files.
    pub fn name(&self) -> &'static str {
        match self {
            Event::ManualStart { .. } => "ManualStart",
            Event::ManualStop(_) => "ManualStop",
            Event::AutomaticStop { .. } => "AutomaticStop",
            Event::ConnectRetryTimerExpires => "ConnectRetryTimerExpires",
            Event::HoldTimerExpires => "HoldTimerExpires",
            Event::KeepaliveTimerExpires => "KeepaliveTimerExpires",
            Event::TcpConnectionConfirmed { .. } => "TcpConnectionConfirmed",
            Event::TcpConnectionFails(_) => "TcpConnectionFails",
            Event::BGPOpen(_) => "BGPOpen",
            Event::BGPHeaderErr(_) => "BGPHeaderErr",
            Event::BGPOpenMsgErr(_) => "BGPOpenMsgErr",
            Event::OpenCollisionDump => "OpenCollisionDump",
            Event::NotifMsg(_) => "NotifMsg",
            Event::KeepAliveMsg => "KeepAliveMsg",
            Event::UpdateMsg(_) => "UpdateMsg",
            Event::UpdateMsgErr(_) => "UpdateMsgErr",
            Event::UpdateMsgDiscards { .. } => "UpdateMsgDiscards",
            Event::UpdateMsgTreatAsWithdraw { .. } => "UpdateMsgTreatAsWithdraw",
            Event::RouteRefreshMsg(_) => "RouteRefreshMsg",
        }
    }
}

/// What the speaker is handed from an Established connection.
#[derive(Debug, Clone)]
pub enum Delivery {
    Update(Box<Update>),
    /// RFC 7606 treat-as-withdraw: these routes are withdrawn.
    Withdraw(Vec<NlriList>),
    RouteRefresh(Family),
    Log {
        warn: bool,
        message: String,
    },
}

/// What the caller of [`Fsm::event`] does, in order.
#[derive(Debug, Clone)]
pub enum Action {
    /// Open a TCP connection to the peer.
    Connect,
    /// Send our OPEN.
    SendOpen(Open),
    SendKeepalive,
    /// Send this NOTIFICATION and close the connection.
    SendNotification(Notification),
    /// Start the hold timer over with this wait, or stop it (`None`).
    HoldTimer(Option<Duration>),
    /// Start the keepalive timer over with this wait, or stop it (`None`).
    KeepaliveTimer(Option<Duration>),
    /// The connection is Established with this outcome of the OPEN exchange.
    Established(Box<Established>),
    /// Hand this to the speaker.
    Deliver(Delivery),
    /// The connection is over (the machine is back in Idle): `reason` for the log, and
    /// `graceful` when it ended without a NOTIFICATION either way (the connection was closed
    /// or lost), which is when a graceful restart helper keeps the peer's routes (RFC 4724
    /// §4.2).
    Close {
        reason: String,
        graceful: bool,
    },
}

/// One connection's state machine.
#[derive(Debug, Clone)]
pub struct Fsm {
    state: State,
    local_as: u32,
    router_id: Ipv4Addr,
    remote_as: u32,
    peer: IpAddr,
    families: Vec<Family>,
    ours: Open,
    local_address: Option<IpAddr>,
    /// Set once the peer's OPEN was accepted.
    established: Option<Established>,
}

impl Fsm {
    /// A machine in Idle for a neighbor configured as `config`.
    pub fn new(config: &SessionConfig) -> Fsm {
        Fsm {
            state: State::Idle,
            local_as: config.local_as,
            router_id: config.router_id,
            remote_as: config.remote_as,
            peer: config.peer,
            families: config.families.clone(),
            ours: config.open(),
            local_address: None,
            established: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// How to decode what the peer sends now: the negotiated context once the peer's OPEN
    /// was accepted, the default before.
    pub fn receive_context(&self) -> Context {
        self.established
            .as_ref()
            .map(|e| e.negotiated.receive)
            .unwrap_or_default()
    }

    /// Feeds one event; returns what to do.
    pub fn event(&mut self, event: Event) -> Vec<Action> {
        let (state, actions) = step(self, event);
        self.state = state;
        if state == State::Idle {
            self.established = None;
        }
        actions
    }
}

/// Sends `notification` and closes: the actions of every error after the connection is up.
fn fail(notification: Notification, reason: impl std::fmt::Display) -> (State, Vec<Action>) {
    let reason = format!("{reason} (sent NOTIFICATION {notification})");
    (
        State::Idle,
        vec![
            Action::SendNotification(notification),
            Action::Close {
                reason,
                graceful: false,
            },
        ],
    )
}

fn close(reason: String, graceful: bool) -> (State, Vec<Action>) {
    (State::Idle, vec![Action::Close { reason, graceful }])
}

/// The message type an event stands for, when it is a well-formed message.
fn message_kind(event: &Event) -> Option<&'static str> {
    Some(match event {
        Event::BGPOpen(_) => "OPEN",
        Event::UpdateMsg(_) => "UPDATE",
        Event::KeepAliveMsg => "KEEPALIVE",
        Event::RouteRefreshMsg(_) => "ROUTE-REFRESH",
        _ => return None,
    })
}

/// The transition function: the state after `event` and what to do.
fn step(fsm: &mut Fsm, event: Event) -> (State, Vec<Action>) {
    use State::*;
    let state = fsm.state;
    match (state, event) {
        (Idle, Event::ManualStart { passive: true }) => (Active, Vec::new()),
        (Idle, Event::ManualStart { passive: false } | Event::ConnectRetryTimerExpires) => {
            (Connect, vec![Action::Connect])
        }
        (Idle | Connect | Active, Event::TcpConnectionConfirmed { local_address }) => {
            fsm.local_address = Some(local_address);
            (
                OpenSent,
                vec![
                    Action::SendOpen(fsm.ours.clone()),
                    Action::HoldTimer(Some(OPEN_HOLD_TIME)),
                ],
            )
        }
        (Idle, _) => (Idle, Vec::new()),
        (Connect | Active, Event::TcpConnectionFails(reason)) => close(reason, false),
        (Connect | Active, Event::ManualStop(_)) => close("stopped".to_string(), false),
        // A connection that came up after another one won is closed at once.
        (Connect | Active, Event::OpenCollisionDump) => fail(
            collision_cease(),
            "connection collision: another connection was kept",
        ),
        (Connect | Active, _) => (state, Vec::new()),

        // Every state with a connection.
        (_, Event::ManualStop(n)) => fail(n, "stopped"),
        (_, Event::OpenCollisionDump) => fail(
            collision_cease(),
            "connection collision: another connection was kept",
        ),
        (_, Event::TcpConnectionFails(reason)) => close(reason, state == Established),
        (_, Event::HoldTimerExpires) => fail(
            Notification::new(code::HOLD_TIMER_EXPIRED, 0, Vec::new()),
            "hold timer expired",
        ),
        (_, Event::NotifMsg(n)) => close(format!("peer sent NOTIFICATION {n}"), false),
        (_, Event::BGPHeaderErr(e) | Event::BGPOpenMsgErr(e) | Event::UpdateMsgErr(e)) => {
            fail(e.notification, e.reason)
        }

        (OpenSent, Event::BGPOpen(theirs)) => open_received(fsm, theirs),
        (OpenConfirm, Event::KeepAliveMsg) => {
            let established = fsm
                .established
                .clone()
                .expect("OpenConfirm is only reached with the peer's OPEN accepted");
            let hold = (established.hold_time > 0)
                .then(|| Duration::from_secs(u64::from(established.hold_time)));
            (
                Established,
                vec![
                    Action::HoldTimer(hold),
                    Action::KeepaliveTimer(hold.map(|h| h / 3)),
                    Action::Established(Box::new(established)),
                ],
            )
        }
        (OpenSent | OpenConfirm, Event::UpdateMsgDiscards { .. })
        | (OpenSent | OpenConfirm, Event::UpdateMsgTreatAsWithdraw { .. }) => fail(
            Notification::new(code::FINITE_STATE_MACHINE, 0, Vec::new()),
            "UPDATE before the session was established",
        ),
        (OpenSent | OpenConfirm, other) => {
            let Some(got) = message_kind(&other) else {
                // Timers and stops not armed in these states: nothing to do.
                return (state, Vec::new());
            };
            let (subcode, expected) = if state == OpenSent {
                (FSM_UNEXPECTED_IN_OPENSENT, "OPEN")
            } else {
                (FSM_UNEXPECTED_IN_OPENCONFIRM, "KEEPALIVE")
            };
            fail(
                Notification::new(code::FINITE_STATE_MACHINE, subcode, Vec::new()),
                format!("expected {expected}, got {got}"),
            )
        }

        (Established, event) => established(fsm, event),
    }
}

/// OpenSent and the peer's OPEN: check it, negotiate, and confirm with a KEEPALIVE.
fn open_received(fsm: &mut Fsm, theirs: Open) -> (State, Vec<Action>) {
    let remote_as = theirs.asn().0;
    if remote_as != fsm.remote_as {
        return fail(
            Notification::new(
                code::OPEN_MESSAGE,
                subcode::BAD_PEER_AS,
                theirs.my_as.to_be_bytes().to_vec(),
            ),
            format!(
                "peer says it is AS {remote_as}; configured remote_as is {}",
                fsm.remote_as
            ),
        );
    }
    let id = theirs.bgp_identifier;
    if id.is_unspecified() || (remote_as == fsm.local_as && id == fsm.router_id) {
        return fail(
            Notification::new(
                code::OPEN_MESSAGE,
                subcode::BAD_BGP_IDENTIFIER,
                id.octets().to_vec(),
            ),
            format!("peer's BGP identifier {id} is not valid here"),
        );
    }
    let negotiated = codec::negotiate(&fsm.ours, &theirs);
    let hold_time = fsm.ours.hold_time.min(theirs.hold_time);
    let their_families: Vec<Family> = theirs
        .capabilities()
        .filter_map(|c| match c {
            Capability::Multiprotocol { family } => Some(*family),
            _ => None,
        })
        .collect();
    let families: Vec<Family> = fsm
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
    let local_address = fsm
        .local_address
        .expect("OpenSent is only reached with a connection");
    fsm.established = Some(Established {
        local_address,
        remote_router_id: id,
        remote_as,
        hold_time,
        negotiated,
        families,
        route_refresh,
        peer_restart,
    });
    let wait = if hold_time == 0 {
        OPEN_HOLD_TIME
    } else {
        Duration::from_secs(u64::from(hold_time))
    };
    (
        State::OpenConfirm,
        vec![Action::SendKeepalive, Action::HoldTimer(Some(wait))],
    )
}

/// Established: messages restart the hold timer; UPDATEs go to the speaker.
fn established(fsm: &mut Fsm, event: Event) -> (State, Vec<Action>) {
    let hold_time = fsm.established.as_ref().map_or(0, |e| e.hold_time);
    let hold = (hold_time > 0).then(|| Duration::from_secs(u64::from(hold_time)));
    let peer = fsm.peer;
    let received = |mut then: Vec<Action>| {
        let mut actions = vec![Action::HoldTimer(hold)];
        actions.append(&mut then);
        (State::Established, actions)
    };
    match event {
        Event::KeepaliveTimerExpires => (
            State::Established,
            vec![
                Action::SendKeepalive,
                Action::KeepaliveTimer(hold.map(|h| h / 3)),
            ],
        ),
        Event::AutomaticStop {
            notification,
            reason,
        } => fail(notification, reason),
        Event::KeepAliveMsg => received(Vec::new()),
        Event::UpdateMsg(update) => received(vec![Action::Deliver(Delivery::Update(update))]),
        Event::UpdateMsgDiscards { update, discarded } => received(vec![
            Action::Deliver(Delivery::Log {
                warn: true,
                message: format!(
                    "neighbor {peer} sent a malformed UPDATE; attributes discarded (RFC 7606): {}",
                    discarded.join("; ")
                ),
            }),
            Action::Deliver(Delivery::Update(update)),
        ]),
        Event::UpdateMsgTreatAsWithdraw {
            withdrawn,
            problems,
        } => received(vec![
            Action::Deliver(Delivery::Log {
                warn: true,
                message: format!(
                    "neighbor {peer} sent a malformed UPDATE; its routes are treated as withdrawn (RFC 7606): {}",
                    problems.join("; ")
                ),
            }),
            Action::Deliver(Delivery::Withdraw(withdrawn)),
        ]),
        Event::RouteRefreshMsg(family) => {
            received(vec![Action::Deliver(Delivery::RouteRefresh(family))])
        }
        Event::BGPOpen(_) => fail(
            Notification::new(
                code::FINITE_STATE_MACHINE,
                FSM_UNEXPECTED_IN_ESTABLISHED,
                Vec::new(),
            ),
            "OPEN while established",
        ),
        // Handled for every state with a connection in `step`; a second start is ignored.
        Event::ManualStart { .. }
        | Event::ManualStop(_)
        | Event::ConnectRetryTimerExpires
        | Event::HoldTimerExpires
        | Event::TcpConnectionConfirmed { .. }
        | Event::TcpConnectionFails(_)
        | Event::BGPHeaderErr(_)
        | Event::BGPOpenMsgErr(_)
        | Event::OpenCollisionDump
        | Event::NotifMsg(_)
        | Event::UpdateMsgErr(_) => (State::Established, Vec::new()),
    }
}

#[cfg(test)]
#[path = "fsm_tests.rs"]
mod tests;
