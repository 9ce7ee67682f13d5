//! The speaker against a scripted peer on the loopback: OPEN exchange, our originated
//! network arriving with eBGP attributes, routes learned and withdrawn, RFC 7606
//! treat-as-withdraw keeping the session up, the AS path loop check, max-prefix, and
//! configuration changes that leave unaffected sessions alone.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use ztos_bgp_codec::notification::code;
use ztos_bgp_codec::{
    decode_message, message_length, Asn, Capability, Context, GracefulRestart, Message, NlriEntry,
    Notification, Open, Received, Update,
};

#[derive(Default)]
struct Collect {
    events: Mutex<Vec<String>>,
    logs: Mutex<Vec<String>>,
}

impl Report for Collect {
    fn event(&self, kind: &str, message: String) {
        self.events
            .lock()
            .unwrap()
            .push(format!("{kind}: {message}"));
    }
    fn log(&self, _warn: bool, message: String) {
        self.logs.lock().unwrap().push(message);
    }
    fn status(&self, _status: &BgpSummary) {}
    fn metrics(&self, _metrics: Vec<Metric>) {}
}

struct Peer {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Peer {
    async fn send(&mut self, message: &Message) {
        let bytes = message.to_bytes(&Context::MODERN).unwrap();
        self.stream.write_all(&bytes).await.unwrap();
    }

    async fn receive(&mut self) -> Received {
        loop {
            if let Some(length) = message_length(&self.buffer, &Context::MODERN).unwrap() {
                if self.buffer.len() >= length {
                    let bytes: Vec<u8> = self.buffer.drain(..length).collect();
                    return decode_message(&bytes, &Context::MODERN).unwrap();
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("the speaker said nothing for 10 s")
                .unwrap();
            assert!(n > 0, "the speaker closed the connection");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next UPDATE, skipping KEEPALIVEs.
    async fn update(&mut self) -> Update {
        loop {
            match self.receive().await {
                Received::Message(Message::Keepalive) => continue,
                Received::Message(Message::Update(u)) => return u,
                other => panic!("expected UPDATE, got {other:?}"),
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(port: u16, extra_neighbor: bool, max_prefixes: Option<u32>) -> BgpConfig {
    let mut neighbors = vec![
        json!({"address": "127.0.0.1", "remote_as": 65002, "passive": true,
                                    "hold_time": 9, "max_prefixes": max_prefixes}),
    ];
    if extra_neighbor {
        neighbors.push(json!({"address": "127.0.0.9", "remote_as": 65009, "passive": true}));
    }
    crate::config::parse(&json!({
        "local_as": 65001, "router_id": "1.1.1.1", "port": port,
        "networks": ["192.0.2.0/24"], "neighbors": neighbors,
    }))
    .unwrap()
    .unwrap()
}

async fn connect(port: u16) -> Peer {
    connect_with(port, Vec::new()).await.0
}

/// Connects as AS 65002 with IPv4 unicast, extended messages and `extra` capabilities;
/// the session and the speaker's OPEN.
async fn connect_with(port: u16, extra: Vec<Capability>) -> (Peer, Open) {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut peer = Peer {
        stream,
        buffer: Vec::new(),
    };
    let open = Open::new(
        Asn(65002),
        9,
        Ipv4Addr::new(2, 2, 2, 2),
        [
            Capability::Multiprotocol {
                family: Family::IPV4_UNICAST,
            },
            Capability::ExtendedMessage,
        ]
        .into_iter()
        .chain(extra)
        .collect(),
    );
    peer.send(&Message::Open(open)).await;
    let theirs = match peer.receive().await {
        Received::Message(Message::Open(open)) => {
            assert_eq!(open.asn(), Asn(65001));
            assert_eq!(open.bgp_identifier, Ipv4Addr::new(1, 1, 1, 1));
            open
        }
        other => panic!("expected OPEN, got {other:?}"),
    };
    assert_eq!(peer.receive().await, Received::Message(Message::Keepalive));
    peer.send(&Message::Keepalive).await;
    (peer, theirs)
}

fn announce(prefix: [u8; 4], len: u8, asns: &[u32]) -> Message {
    Message::Update(Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(asns.iter().map(|a| Asn(*a)).collect())),
            next_hop: Some(Ipv4Addr::new(127, 0, 0, 1)),
            ..PathAttributes::default()
        },
        nlri: vec![NlriEntry::new(Ipv4Prefix::new(prefix.into(), len).unwrap())],
        ..Update::default()
    })
}

/// A query's answer as the JSON the plugin sends.
async fn ask(speaker: &SpeakerHandle, query: Query) -> Value {
    serde_json::to_value(speaker.query(query).await.unwrap()).unwrap()
}

async fn wait_for(
    speaker: &SpeakerHandle,
    query: Query,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let value = ask(speaker, query.clone()).await;
        if check(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn routes_query() -> Query {
    Query::Routes {
        family: Some(Family::IPV4_UNICAST),
        prefix: None,
        vni: None,
    }
}

fn has_route(value: &Value, prefix: &str) -> bool {
    value["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["prefix"] == prefix)
}

#[tokio::test]
async fn a_peer_learns_and_teaches_routes_and_survives_a_malformed_update() {
    let report = Arc::new(Collect::default());
    let speaker = SpeakerHandle::spawn(report.clone(), None, None);
    let port = free_port();
    speaker
        .apply(Some(config(port, false, None)))
        .await
        .unwrap();
    let mut peer = connect(port).await;

    // Our network, as eBGP sends it: our AS prepended, next hop self.
    let update = peer.update().await;
    assert_eq!(
        update.nlri,
        vec![NlriEntry::new(
            Ipv4Prefix::new(Ipv4Addr::new(192, 0, 2, 0), 24).unwrap()
        )]
    );
    assert_eq!(
        update.attributes.as_path,
        Some(AsPath::sequence(vec![Asn(65001)]))
    );
    assert_eq!(
        update.attributes.next_hop,
        Some(Ipv4Addr::new(127, 0, 0, 1))
    );
    assert_eq!(update.attributes.local_pref, None);
    assert_eq!(
        peer.update().await.end_of_rib_family(),
        Some(Family::IPV4_UNICAST)
    );

    // A route from the peer reaches the Loc-RIB.
    peer.send(&announce([198, 51, 100, 0], 24, &[65002])).await;
    wait_for(&speaker, routes_query(), "198.51.100.0/24", |v| {
        has_route(v, "198.51.100.0/24")
    })
    .await;

    // A route with our own AS in its path is received but not accepted.
    peer.send(&announce([203, 0, 113, 0], 24, &[65002, 65001]))
        .await;
    let summary = wait_for(&speaker, Query::Summary, "two prefixes received", |v| {
        v["neighbors"][0]["prefixes_received"] == 2
    })
    .await;
    assert_eq!(summary["neighbors"][0]["prefixes_accepted"], 1);
    assert!(!has_route(
        &ask(&speaker, routes_query()).await,
        "203.0.113.0/24"
    ));

    // An ORIGIN of 5 is malformed: RFC 7606 §7.1 treat-as-withdraw, the session stays up.
    let mut bad = vec![0xff; 16];
    bad.extend_from_slice(&[0, 0, 2, 0, 0]);
    let attributes: Vec<u8> = [
        &[0x40, 1, 1, 5][..],
        &[0x40, 2, 6, 2, 1, 0, 0, 0xfe, 0x02],
        &[0x40, 3, 4, 127, 0, 0, 1],
    ]
    .concat();
    bad.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
    bad.extend_from_slice(&attributes);
    bad.extend_from_slice(&[24, 198, 51, 100]);
    let length = bad.len() as u16;
    bad[16..18].copy_from_slice(&length.to_be_bytes());
    peer.stream.write_all(&bad).await.unwrap();
    wait_for(&speaker, routes_query(), "treat-as-withdraw", |v| {
        !has_route(v, "198.51.100.0/24")
    })
    .await;
    peer.send(&Message::Keepalive).await;
    let summary = ask(&speaker, Query::Summary).await;
    assert_eq!(summary["neighbors"][0]["state"], "established", "{summary}");
    assert!(report
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("treated as withdrawn")));

    // Adding a neighbor leaves this session alone.
    speaker.apply(Some(config(port, true, None))).await.unwrap();
    peer.send(&announce([198, 51, 100, 0], 24, &[65002])).await;
    wait_for(&speaker, routes_query(), "the route again", |v| {
        has_route(v, "198.51.100.0/24")
    })
    .await;
    let neighbors = ask(
        &speaker,
        Query::Neighbors(Some("127.0.0.1".parse().unwrap())),
    )
    .await;
    assert_eq!(neighbors["neighbors"][0]["established_count"], 1);

    // Removing the neighbor sends Cease / peer de-configured and drops its routes.
    speaker
        .apply(Some(config(port, true, None)).map(|mut c| {
            c.neighbors.remove(0);
            c
        }))
        .await
        .unwrap();
    loop {
        match peer.receive().await {
            Received::Message(Message::Notification(n)) => {
                assert_eq!(
                    (n.code, n.subcode),
                    (code::CEASE, subcode::PEER_DECONFIGURED)
                );
                break;
            }
            Received::Message(_) => continue,
            other => panic!("{other:?}"),
        }
    }
    wait_for(&speaker, routes_query(), "routes dropped", |v| {
        !has_route(v, "198.51.100.0/24")
    })
    .await;
    assert!(report
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.starts_with("neighbor_up: neighbor 127.0.0.1")));
}

#[tokio::test]
async fn max_prefixes_resets_the_session_with_cease() {
    let report = Arc::new(Collect::default());
    let speaker = SpeakerHandle::spawn(report.clone(), None, None);
    let port = free_port();
    speaker
        .apply(Some(config(port, false, Some(1))))
        .await
        .unwrap();
    let mut peer = connect(port).await;
    peer.send(&announce([198, 51, 100, 0], 24, &[65002])).await;
    peer.send(&announce([198, 51, 101, 0], 24, &[65002])).await;
    loop {
        match peer.receive().await {
            Received::Message(Message::Notification(n)) => {
                assert_eq!(
                    (n.code, n.subcode),
                    (code::CEASE, subcode::MAXIMUM_NUMBER_OF_PREFIXES_REACHED)
                );
                assert_eq!(n.data, vec![0, 1, 1, 0, 0, 0, 1]);
                break;
            }
            Received::Message(_) => continue,
            other => panic!("{other:?}"),
        }
    }
    wait_for(&speaker, Query::Summary, "session down", |v| {
        v["neighbors"][0]["state"] != "established"
    })
    .await;
    wait_for(&speaker, routes_query(), "routes dropped", |v| {
        !has_route(v, "198.51.100.0/24")
    })
    .await;
}

#[tokio::test]
async fn a_wrong_peer_as_gets_bad_peer_as() {
    let speaker = SpeakerHandle::spawn(Arc::new(Collect::default()), None, None);
    let port = free_port();
    speaker
        .apply(Some(config(port, false, None)))
        .await
        .unwrap();
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut peer = Peer {
        stream,
        buffer: Vec::new(),
    };
    peer.send(&Message::Open(Open::new(
        Asn(65003),
        9,
        Ipv4Addr::new(2, 2, 2, 2),
        vec![],
    )))
    .await;
    loop {
        match peer.receive().await {
            Received::Message(Message::Notification(n)) => {
                assert_eq!(
                    (n.code, n.subcode),
                    (code::OPEN_MESSAGE, subcode::BAD_PEER_AS)
                );
                break;
            }
            Received::Message(_) => continue,
            other => panic!("{other:?}"),
        }
    }
    let summary = wait_for(&speaker, Query::Summary, "the error", |v| {
        v["neighbors"][0]["last_error"].is_string()
    })
    .await;
    assert!(summary["neighbors"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("65003"));
}

fn graceful(restart_time: u16) -> Capability {
    Capability::GracefulRestart(GracefulRestart {
        flags: 0,
        restart_time,
        families: vec![(Family::IPV4_UNICAST, GracefulRestart::FORWARDING_PRESERVED)],
    })
}

/// Reads UPDATEs until the End-of-RIB for IPv4 unicast.
async fn until_end_of_rib(peer: &mut Peer) {
    loop {
        if peer.update().await.end_of_rib_family() == Some(Family::IPV4_UNICAST) {
            return;
        }
    }
}

#[tokio::test]
async fn graceful_restart_keeps_a_restarting_peers_routes_until_its_end_of_rib() {
    let report = Arc::new(Collect::default());
    let speaker = SpeakerHandle::spawn(report.clone(), None, None);
    let port = free_port();
    speaker
        .apply(Some(config(port, false, None)))
        .await
        .unwrap();
    let (mut peer, open) = connect_with(port, vec![graceful(60)]).await;
    let ours = open
        .capabilities()
        .find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr.clone()),
            _ => None,
        })
        .expect("our OPEN advertises graceful restart");
    assert_eq!(ours.restart_time, RESTART_TIME);
    assert_eq!(
        ours.flags & GracefulRestart::RESTART_STATE,
        0,
        "not restarting"
    );
    until_end_of_rib(&mut peer).await;
    peer.send(&announce([10, 9, 0, 0], 16, &[65002])).await;
    peer.send(&announce([10, 8, 0, 0], 16, &[65002])).await;
    wait_for(&speaker, routes_query(), "both routes", |v| {
        has_route(v, "10.9.0.0/16") && has_route(v, "10.8.0.0/16")
    })
    .await;

    // The peer's process dies: the connection closes without a NOTIFICATION. Its routes stay.
    drop(peer);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !report
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.contains("kept as stale"))
    {
        assert!(tokio::time::Instant::now() < deadline, "no stale event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let routes = ask(&speaker, routes_query()).await;
    assert!(has_route(&routes, "10.9.0.0/16") && has_route(&routes, "10.8.0.0/16"));

    // It comes back, sends one of the two again and End-of-RIB: the other goes.
    let (mut peer, _) = connect_with(port, vec![graceful(60)]).await;
    until_end_of_rib(&mut peer).await;
    peer.send(&announce([10, 8, 0, 0], 16, &[65002])).await;
    peer.send(&Message::Update(Update::end_of_rib(Family::IPV4_UNICAST)))
        .await;
    wait_for(&speaker, routes_query(), "the stale route removed", |v| {
        has_route(v, "10.8.0.0/16") && !has_route(v, "10.9.0.0/16")
    })
    .await;

    // A peer that ends the session with a NOTIFICATION gets no grace.
    peer.send(&Message::Notification(Notification::new(
        code::CEASE,
        subcode::ADMINISTRATIVE_RESET,
        Vec::new(),
    )))
    .await;
    wait_for(&speaker, routes_query(), "routes gone at once", |v| {
        !has_route(v, "10.8.0.0/16")
    })
    .await;
}

#[tokio::test]
async fn without_the_capability_a_lost_connection_drops_the_routes() {
    // No capability, or FRR's helper-only one that lists no family (RFC 4724 §4.2: only the
    // listed families are kept).
    let helper_only = Capability::GracefulRestart(GracefulRestart {
        flags: 0,
        restart_time: 120,
        families: Vec::new(),
    });
    for extra in [Vec::new(), vec![helper_only]] {
        let report = Arc::new(Collect::default());
        let speaker = SpeakerHandle::spawn(report.clone(), None, None);
        let port = free_port();
        speaker
            .apply(Some(config(port, false, None)))
            .await
            .unwrap();
        let (mut peer, _) = connect_with(port, extra).await;
        until_end_of_rib(&mut peer).await;
        peer.send(&announce([10, 9, 0, 0], 16, &[65002])).await;
        wait_for(&speaker, routes_query(), "the route", |v| {
            has_route(v, "10.9.0.0/16")
        })
        .await;
        drop(peer);
        wait_for(&speaker, routes_query(), "the route gone", |v| {
            !has_route(v, "10.9.0.0/16")
        })
        .await;
    }
}

#[tokio::test]
async fn refusals_are_typed_and_keep_their_text() {
    let report = Arc::new(Collect::default());
    let speaker = SpeakerHandle::spawn(report, None, None);
    let unknown = speaker
        .query(Query::Neighbors(Some("192.0.2.9".parse().unwrap())))
        .await
        .unwrap_err();
    assert!(matches!(unknown, SpeakerError::UnknownNeighbor(_)));
    assert_eq!(
        unknown.to_string(),
        "192.0.2.9 is not a configured BGP neighbor"
    );
    let mut no_id = config(free_port(), false, None);
    no_id.router_id = None;
    let refused = speaker.apply(Some(no_id)).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "bgp.router_id is not set and no IPv4 address was found to take it from"
    );
    assert_eq!(
        SpeakerError::Stopped.to_string(),
        "the BGP speaker has stopped"
    );
}

#[tokio::test]
async fn answers_serialize_as_their_own_types() {
    let report = Arc::new(Collect::default());
    let speaker = SpeakerHandle::spawn(report, None, None);
    let Answer::Summary(summary) = speaker.query(Query::Summary).await.unwrap() else {
        panic!("a summary query answers with a summary");
    };
    assert_eq!(
        serde_json::to_value(Answer::Summary(summary.clone())).unwrap(),
        serde_json::to_value(&summary).unwrap()
    );
    let Answer::Routes(routes) = speaker.query(routes_query()).await.unwrap() else {
        panic!("a unicast routes query answers with routes");
    };
    assert_eq!(
        serde_json::to_value(Answer::Routes(routes)).unwrap(),
        json!({"routes": [], "truncated": false})
    );
}
