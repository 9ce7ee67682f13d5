//! Golden replay of the session FSM without a socket: each directory under
//! `plugins/bgp/tests/conformance/` holds a neighbor's `config.json`, the `events.jsonl` fed
//! to [`Fsm::event`] one line at a time (messages are encoded and decoded by the codec, as the
//! session task reads them), and the `expected.jsonl` the machine answered: per event, the
//! state after it and the actions. `ZTOS_UPDATE_GOLDEN=1 cargo test -p ztos-bgp --lib fsm`
//! rewrites the expected files; they are not edited by hand. [`key_outcomes`] pins what each
//! case is about, so that a regenerated file that changed the outcome still fails.
//!
//! An events line is one input (`{"receive_open": {...}}`, `"hold_timer_expires"`, ...), or
//! `{"connection": "incoming", "input": ...}` for a second connection's machine (collision
//! cases); `"resolve_collision"` asks [`collision_keeps`] which of the two Established
//! connections stays and dumps the other (`OpenCollisionDump`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use super::*;
use crate::session::{ConnectRetry, SessionConfig};
use ztos_bgp_codec::{decode_message, Asn, Capability, GracefulRestart, Message};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseConfig {
    local_as: u32,
    router_id: Ipv4Addr,
    peer: IpAddr,
    remote_as: u32,
    hold_time: u16,
    families: Vec<String>,
    #[serde(default)]
    graceful_restart: Option<GrSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrSpec {
    #[serde(default)]
    flags: u8,
    restart_time: u16,
    /// Each family with its flags byte (0x80: forwarding state preserved).
    families: Vec<(String, u8)>,
}

/// The peer's OPEN, encoded with the codec (and then patched where a field is wrong on purpose).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenSpec {
    asn: u32,
    hold_time: u16,
    router_id: Ipv4Addr,
    #[serde(default)]
    families: Vec<String>,
    #[serde(default)]
    route_refresh: bool,
    #[serde(default)]
    graceful_restart: Option<GrSpec>,
    /// Written over the version octet.
    #[serde(default)]
    version: Option<u8>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Input {
    ManualStart {
        passive: bool,
    },
    ManualStop {
        code: u8,
        subcode: u8,
    },
    AutomaticStop {
        code: u8,
        subcode: u8,
        reason: String,
    },
    ConnectRetryTimerExpires,
    HoldTimerExpires,
    KeepaliveTimerExpires,
    TcpConnectionConfirmed {
        local_address: IpAddr,
    },
    TcpConnectionFails {
        reason: String,
    },
    OpenCollisionDump,
    ReceiveOpen(OpenSpec),
    ReceiveKeepalive,
    ReceiveNotification {
        code: u8,
        subcode: u8,
    },
    /// A whole message as hex, decoded as the session would.
    ReceiveHex(String),
    ResolveCollision,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    On { connection: Conn, input: Input },
    Plain(Input),
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[serde(rename_all = "snake_case")]
enum Conn {
    Outgoing,
    Incoming,
}

fn family(name: &str) -> Family {
    match name {
        "ipv4-unicast" => Family::IPV4_UNICAST,
        "ipv6-unicast" => Family::IPV6_UNICAST,
        "l2vpn-evpn" => Family::L2VPN_EVPN,
        other => panic!("unknown family {other}"),
    }
}

fn graceful_restart(spec: &GrSpec) -> GracefulRestart {
    GracefulRestart {
        flags: spec.flags,
        restart_time: spec.restart_time,
        families: spec
            .families
            .iter()
            .map(|(f, flags)| (family(f), *flags))
            .collect(),
    }
}

fn session_config(config: &CaseConfig) -> SessionConfig {
    SessionConfig {
        local_as: config.local_as,
        router_id: config.router_id,
        peer: config.peer,
        remote_as: config.remote_as,
        port: 179,
        passive: false,
        hold_time: config.hold_time,
        families: config.families.iter().map(|f| family(f)).collect(),
        password: None,
        connect_retry: ConnectRetry {
            first: Duration::from_secs(2),
            cap: Duration::from_secs(60),
        },
        graceful_restart: config.graceful_restart.as_ref().map(graceful_restart),
    }
}

fn open_bytes(spec: &OpenSpec) -> Vec<u8> {
    let mut capabilities: Vec<Capability> = spec
        .families
        .iter()
        .map(|f| Capability::Multiprotocol { family: family(f) })
        .collect();
    if spec.route_refresh {
        capabilities.push(Capability::RouteRefresh);
    }
    if let Some(gr) = &spec.graceful_restart {
        capabilities.push(Capability::GracefulRestart(graceful_restart(gr)));
    }
    let open = Open::new(Asn(spec.asn), spec.hold_time, spec.router_id, capabilities);
    let mut bytes = Message::Open(open)
        .to_bytes(&Context::default())
        .expect("the OPEN encodes");
    if let Some(version) = spec.version {
        bytes[19] = version;
    }
    bytes
}

fn hex_bytes(text: &str) -> Vec<u8> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The event an input stands for, given the machine it goes to.
fn event_of(input: Input, fsm: &Fsm) -> Event {
    let receive =
        |bytes: Vec<u8>| Event::from_received(decode_message(&bytes, &fsm.receive_context()));
    match input {
        Input::ManualStart { passive } => Event::ManualStart { passive },
        Input::ManualStop { code, subcode } => {
            Event::ManualStop(Notification::new(code, subcode, Vec::new()))
        }
        Input::AutomaticStop {
            code,
            subcode,
            reason,
        } => Event::AutomaticStop {
            notification: Notification::new(code, subcode, Vec::new()),
            reason,
        },
        Input::ConnectRetryTimerExpires => Event::ConnectRetryTimerExpires,
        Input::HoldTimerExpires => Event::HoldTimerExpires,
        Input::KeepaliveTimerExpires => Event::KeepaliveTimerExpires,
        Input::TcpConnectionConfirmed { local_address } => {
            Event::TcpConnectionConfirmed { local_address }
        }
        Input::TcpConnectionFails { reason } => Event::TcpConnectionFails(reason),
        Input::OpenCollisionDump => Event::OpenCollisionDump,
        Input::ReceiveOpen(spec) => receive(open_bytes(&spec)),
        Input::ReceiveKeepalive => receive(
            Message::Keepalive
                .to_bytes(&Context::default())
                .expect("a KEEPALIVE encodes"),
        ),
        Input::ReceiveNotification { code, subcode } => receive(
            Message::Notification(Notification::new(code, subcode, Vec::new()))
                .to_bytes(&Context::default())
                .expect("a NOTIFICATION encodes"),
        ),
        Input::ReceiveHex(hex) => receive(hex_bytes(&hex)),
        Input::ResolveCollision => unreachable!("handled by the replay"),
    }
}

fn secs(wait: Option<Duration>) -> Value {
    wait.map_or(Value::Null, |w| json!(w.as_secs()))
}

fn action_json(action: &Action) -> Value {
    match action {
        Action::Connect => json!("connect"),
        Action::SendOpen(open) => json!({ "send_open": open }),
        Action::SendKeepalive => json!("send_keepalive"),
        Action::SendNotification(n) => json!({ "send_notification": n }),
        Action::HoldTimer(wait) => json!({ "hold_timer": secs(*wait) }),
        Action::KeepaliveTimer(wait) => json!({ "keepalive_timer": secs(*wait) }),
        Action::Established(e) => json!({ "established": {
            "local_address": e.local_address,
            "remote_router_id": e.remote_router_id,
            "remote_as": e.remote_as,
            "hold_time": e.hold_time,
            "receive": e.negotiated.receive,
            "send": e.negotiated.send,
            "families": e.families,
            "route_refresh": e.route_refresh,
            "peer_restart": e.peer_restart,
        }}),
        Action::Deliver(Delivery::Update(update)) => json!({ "deliver_update": update }),
        Action::Deliver(Delivery::Withdraw(withdrawn)) => json!({ "deliver_withdraw": withdrawn }),
        Action::Deliver(Delivery::RouteRefresh(family)) => {
            json!({ "deliver_route_refresh": family })
        }
        Action::Deliver(Delivery::Log { warn, message }) => {
            json!({ "deliver_log": { "warn": warn, "message": message } })
        }
        Action::Close { reason, graceful } => {
            json!({ "close": { "reason": reason, "graceful": graceful } })
        }
    }
}

fn conn_name(conn: Conn) -> &'static str {
    match conn {
        Conn::Outgoing => "outgoing",
        Conn::Incoming => "incoming",
    }
}

/// Replays one case; returns its expected.jsonl text.
fn replay(case: &Path) -> String {
    let read = |name: &str| {
        std::fs::read_to_string(case.join(name))
            .unwrap_or_else(|e| panic!("{}/{name}: {e}", case.display()))
    };
    let config: CaseConfig = serde_json::from_str(&read("config.json"))
        .unwrap_or_else(|e| panic!("{}/config.json: {e}", case.display()));
    let session = session_config(&config);
    let mut machines: BTreeMap<Conn, Fsm> = BTreeMap::new();
    let mut out = String::new();
    for (n, line) in read("events.jsonl").lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}/events.jsonl:{}: {e}", case.display(), n + 1));
        let (conn, input) = match parsed {
            Line::On { connection, input } => (connection, input),
            Line::Plain(input) => (Conn::Outgoing, input),
        };
        let record = if let Input::ResolveCollision = input {
            let remote_id = |conn: Conn| {
                let fsm = machines.get(&conn).expect("both connections were started");
                assert_eq!(fsm.state(), State::Established, "{}", case.display());
                fsm.established
                    .as_ref()
                    .expect("Established has the peer's OPEN")
                    .remote_router_id
            };
            let keeps = collision_keeps(
                Origin::Outgoing,
                session.router_id,
                remote_id(Conn::Outgoing),
            );
            let (kept, dumped) = if keeps {
                (Conn::Outgoing, Conn::Incoming)
            } else {
                (Conn::Incoming, Conn::Outgoing)
            };
            let fsm = machines.get_mut(&dumped).expect("both connections exist");
            let actions = fsm.event(Event::OpenCollisionDump);
            json!({
                "collision_keeps": conn_name(kept),
                "connection": conn_name(dumped),
                "event": "OpenCollisionDump",
                "state": fsm.state(),
                "actions": actions.iter().map(action_json).collect::<Vec<_>>(),
            })
        } else {
            let fsm = machines.entry(conn).or_insert_with(|| Fsm::new(&session));
            let event = event_of(input, fsm);
            let name = event.name();
            let actions = fsm.event(event);
            json!({
                "connection": conn_name(conn),
                "event": name,
                "state": fsm.state(),
                "actions": actions.iter().map(action_json).collect::<Vec<_>>(),
            })
        };
        out.push_str(&serde_json::to_string(&record).expect("JSON values serialize"));
        out.push('\n');
    }
    out
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    cases
}

#[test]
fn conformance_cases_replay_to_their_expected_actions() {
    let update = std::env::var_os("ZTOS_UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cases = cases();
    assert!(cases.len() >= 10, "conformance cases missing: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let got = replay(case);
        let path = case.join("expected.jsonl");
        if update {
            std::fs::write(&path, &got).expect("the expected file is writable");
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        if got != expected {
            let line = got
                .lines()
                .zip(expected.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| got.lines().count().min(expected.lines().count()));
            failures.push(format!(
                "{}: differs at line {}\n  got:      {}\n  expected: {}",
                case.display(),
                line + 1,
                got.lines().nth(line).unwrap_or("(nothing)"),
                expected.lines().nth(line).unwrap_or("(nothing)"),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(run `ZTOS_UPDATE_GOLDEN=1 cargo test -p ztos-bgp --lib fsm` if the change is meant)",
        failures.join("\n")
    );
}

/// What each case is about, checked on the replay itself: the last line's state, and the
/// NOTIFICATION (code, subcode) sent in it, if any.
/// A case, the state its last event leaves, and the NOTIFICATION (code, subcode) sent then.
type Outcome = (&'static str, State, Option<(u8, u8)>);

#[test]
fn key_outcomes() {
    let table: &[Outcome] = &[
        ("established", State::Established, None),
        ("bad_version", State::Idle, Some((2, 1))),
        ("bad_peer_as", State::Idle, Some((2, 2))),
        ("unacceptable_hold_time", State::Idle, Some((2, 6))),
        ("bad_bgp_identifier", State::Idle, Some((2, 3))),
        ("bad_bgp_identifier_ibgp", State::Idle, Some((2, 3))),
        ("peer_closes_connection", State::Idle, None),
        ("keepalive_in_open_sent", State::Idle, Some((5, 1))),
        ("hold_timer_expires", State::Idle, Some((4, 0))),
        ("collision_local_id_higher", State::Idle, Some((6, 7))),
        ("collision_remote_id_higher", State::Idle, Some((6, 7))),
        ("graceful_restart", State::Established, None),
        ("notification_received", State::Idle, None),
        ("update_error_resets", State::Idle, Some((3, 1))),
        ("update_treat_as_withdraw", State::Established, None),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    for (name, state, notification) in table {
        let out = replay(&root.join(name));
        let last: Value = serde_json::from_str(out.lines().last().expect("events"))
            .expect("replay lines are JSON");
        assert_eq!(last["state"], json!(state), "{name}: {last}");
        let sent = last["actions"].as_array().and_then(|actions| {
            actions.iter().find_map(|a| {
                let n = a.get("send_notification")?;
                Some((n["code"].as_u64()? as u8, n["subcode"].as_u64()? as u8))
            })
        });
        assert_eq!(sent, *notification, "{name}: {last}");
    }
}

#[test]
fn collision_keeps_the_connection_of_the_higher_identifier() {
    let low = Ipv4Addr::new(10, 0, 0, 1);
    let high = Ipv4Addr::new(10, 0, 0, 2);
    assert!(collision_keeps(Origin::Outgoing, high, low));
    assert!(!collision_keeps(Origin::Incoming, high, low));
    assert!(collision_keeps(Origin::Incoming, low, high));
    assert!(!collision_keeps(Origin::Outgoing, low, high));
}
