//! Byte-level packet tests, the state machine through a whole lease life, and a no-panic test
//! over random and mutated packets.

use std::net::Ipv4Addr;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use super::packet::MessageType;
use super::*;

const MAC: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A server message, byte by byte: BOOTREPLY header, cookie, options, END.
fn server_message(xid: u32, yiaddr: Ipv4Addr, options: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = vec![0u8; 240];
    bytes[0] = 2; // BOOTREPLY
    bytes[1] = 1; // Ethernet
    bytes[2] = 6;
    bytes[4..8].copy_from_slice(&xid.to_be_bytes());
    bytes[16..20].copy_from_slice(&yiaddr.octets());
    bytes[20..24].copy_from_slice(&SERVER.octets());
    bytes[28..34].copy_from_slice(&MAC);
    bytes[236..240].copy_from_slice(&[99, 130, 83, 99]);
    for (code, value) in options {
        bytes.push(*code);
        bytes.push(value.len() as u8);
        bytes.extend_from_slice(value);
    }
    bytes.push(255);
    bytes
}

/// An OFFER (2), ACK (5) or NAK (6) as a DHCP server would send it.
fn reply(xid: u32, kind: u8, lease: Option<u32>) -> Vec<u8> {
    let mut options = vec![(53, vec![kind]), (54, SERVER.octets().to_vec())];
    if kind == NAK {
        return server_message(xid, Ipv4Addr::UNSPECIFIED, &options);
    }
    options.push((1, vec![255, 255, 255, 0]));
    options.push((3, SERVER.octets().to_vec()));
    options.push((6, vec![10, 0, 2, 3]));
    if let Some(lease) = lease {
        options.push((51, lease.to_be_bytes().to_vec()));
    }
    server_message(xid, ADDRESS, &options)
}

const OFFER: u8 = 2;
const ACK: u8 = 5;
const NAK: u8 = 6;

/// The options of a client packet, read independently of the codec: (code, value) in order.
fn options_of(packet: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut options = Vec::new();
    let mut at = 240;
    while packet[at] != 255 {
        if packet[at] == 0 {
            at += 1;
            continue;
        }
        let len = packet[at + 1] as usize;
        options.push((packet[at], packet[at + 2..at + 2 + len].to_vec()));
        at += 2 + len;
    }
    options
}

fn option(packet: &[u8], code: u8) -> Option<Vec<u8>> {
    options_of(packet)
        .into_iter()
        .find(|(c, _)| *c == code)
        .map(|(_, v)| v)
}

fn xid_of(packet: &[u8]) -> u32 {
    u32::from_be_bytes(packet[4..8].try_into().unwrap())
}

fn ciaddr_of(packet: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15])
}

#[test]
fn dhcp_discover_bytes() {
    let bytes = packet::discover(0x1234_5678, &MAC);
    // BOOTP header: op 1, htype 1 (Ethernet), hlen 6, hops 0, xid, secs 0, flags BROADCAST.
    assert_eq!(&bytes[0..4], &[1, 1, 6, 0]);
    assert_eq!(&bytes[4..8], &[0x12, 0x34, 0x56, 0x78]);
    assert_eq!(&bytes[10..12], &[0x80, 0x00]);
    // ciaddr, yiaddr, siaddr, giaddr all zero; chaddr is the MAC.
    assert!(bytes[12..28].iter().all(|&b| b == 0));
    assert_eq!(&bytes[28..34], &MAC);
    assert_eq!(&bytes[236..240], &[99, 130, 83, 99]);
    assert_eq!(
        options_of(&bytes),
        vec![
            (53, vec![1]),
            (61, vec![1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            (55, vec![1, 3, 6, 51, 58, 59]),
            (57, vec![0x05, 0xc0]), // 1472: an Ethernet frame less IP and UDP headers
        ]
    );
    // Padded to the BOOTP minimum of 300 bytes.
    assert_eq!(bytes.len(), 300);
}

#[test]
fn dhcp_request_selecting_and_extending() {
    let selecting = packet::request(
        7,
        &MAC,
        RequestKind::Selecting {
            address: ADDRESS,
            server: SERVER,
        },
    );
    assert_eq!(option(&selecting, 53), Some(vec![3]));
    assert_eq!(ciaddr_of(&selecting), Ipv4Addr::UNSPECIFIED);
    assert_eq!(&selecting[10..12], &[0x80, 0]);
    assert_eq!(option(&selecting, 50), Some(ADDRESS.octets().to_vec()));
    assert_eq!(option(&selecting, 54), Some(SERVER.octets().to_vec()));

    let renewing = packet::request(8, &MAC, RequestKind::Extending { address: ADDRESS });
    assert_eq!(ciaddr_of(&renewing), ADDRESS);
    assert_eq!(&renewing[10..12], &[0, 0]);
    assert_eq!(option(&renewing, 50), None);
    assert_eq!(option(&renewing, 54), None);
}

#[test]
fn dhcp_parse_reply_reads_the_lease_and_drops_what_is_not_ours() {
    let ack = packet::parse_reply(&reply(9, ACK, Some(3600)), 9, &MAC).unwrap();
    assert_eq!(
        ack,
        Reply::Ack(Offer {
            address: ADDRESS,
            prefix_len: 24,
            server: SERVER,
            router: Some(SERVER),
            dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            lease_time: secs(3600),
            renewal: None,
            rebinding: None,
        })
    );
    assert_eq!(
        packet::parse_reply(&reply(9, ACK, Some(3600)), 10, &MAC),
        Err(Dropped::OtherTransaction { got: 9, want: 10 })
    );
    let other_mac = [2, 0, 0, 0, 0, 1];
    assert!(matches!(
        packet::parse_reply(&reply(9, ACK, Some(3600)), 9, &other_mac),
        Err(Dropped::OtherClient(_))
    ));
    assert_eq!(
        packet::parse_reply(&reply(9, OFFER, None), 9, &MAC),
        Err(Dropped::NoLeaseTime(MessageType::Offer))
    );
    assert_eq!(
        packet::parse_reply(&reply(9, NAK, None), 9, &MAC),
        Ok(Reply::Nak { server: SERVER })
    );
    // Our own broadcast DISCOVER, looped back: a request, not a reply.
    assert_eq!(
        packet::parse_reply(&packet::discover(9, &MAC), 9, &MAC),
        Err(Dropped::NotAReply)
    );
    assert!(matches!(
        packet::parse_reply(&[1, 2, 3], 9, &MAC),
        Err(Dropped::Malformed(_))
    ));
}

#[test]
fn dhcp_a_whole_lease_life() {
    let (mut client, actions) = Client::start(MAC, 100, secs(0));
    assert!(matches!(
        &actions[..],
        [Action::Send {
            to: Destination::Broadcast,
            ..
        }]
    ));
    // No answer: the DISCOVER is repeated after 4 s, then 8 s.
    assert!(client.on_tick(secs(3), 0).is_empty());
    assert_eq!(client.on_tick(secs(4), 0).len(), 1);
    assert_eq!(client.deadline(), secs(12));

    let actions = client
        .on_packet(secs(5), &reply(100, OFFER, Some(600)), 0)
        .unwrap();
    assert_eq!(client.state_name(), "REQUESTING");
    let Action::Send { packet, to } = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(*to, Destination::Broadcast);
    assert_eq!(option(packet, 53), Some(vec![3]));

    let actions = client
        .on_packet(secs(6), &reply(100, ACK, Some(600)), 0)
        .unwrap();
    let [Action::Install(lease)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(lease.offer.address, ADDRESS);
    assert_eq!(lease.renew_at, secs(6 + 300));
    assert_eq!(lease.rebind_at, secs(6 + 525));
    assert_eq!(lease.expires_at, secs(606));
    assert_eq!(client.state_name(), "BOUND");
    assert_eq!(client.deadline(), secs(306));

    // T1: a REQUEST unicast to the server, with a new transaction id.
    let actions = client.on_tick(secs(306), 200);
    assert_eq!(client.state_name(), "RENEWING");
    let Action::Send { packet, to } = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(*to, Destination::Server(SERVER));
    assert_eq!(ciaddr_of(packet), ADDRESS);
    assert_eq!(xid_of(packet), 200);
    // The server answers: bound again with a fresh lease.
    let actions = client
        .on_packet(secs(307), &reply(200, ACK, Some(600)), 0)
        .unwrap();
    assert!(matches!(&actions[..], [Action::Install(l)] if l.expires_at == secs(907)));
    assert_eq!(client.state_name(), "BOUND");

    // Then the server goes away: T1 renewing, retries, T2 rebinding (broadcast), expiry.
    client.on_tick(secs(607), 300);
    assert_eq!(client.state_name(), "RENEWING");
    let mut now = 607;
    let mut removed = None;
    while now < 1000 {
        now += 1;
        for action in client.on_tick(secs(now), 400) {
            if let Action::Remove(lease) = action {
                removed = Some((now, lease));
            }
        }
        if now == 832 {
            assert_eq!(client.state_name(), "REBINDING");
        }
    }
    let (when, lease) = removed.expect("the lease expires");
    assert_eq!(when, 907);
    assert_eq!(lease.offer.address, ADDRESS);
    assert_eq!(client.state_name(), "SELECTING");
    assert!(client.lease().is_none());
}

#[test]
fn dhcp_nak_starts_over_and_removes_the_lease() {
    let (mut client, _) = Client::start(MAC, 1, secs(0));
    client
        .on_packet(secs(1), &reply(1, OFFER, Some(100)), 0)
        .unwrap();
    client
        .on_packet(secs(1), &reply(1, ACK, Some(100)), 0)
        .unwrap();
    client.on_tick(secs(51), 2);
    let actions = client.on_packet(secs(52), &reply(2, NAK, None), 3).unwrap();
    assert!(matches!(&actions[0], Action::Remove(l) if l.offer.address == ADDRESS));
    assert!(matches!(&actions[1], Action::Send { .. }));
    assert_eq!(client.state_name(), "SELECTING");
    assert_eq!(client.xid(), 3);
    // An ACK out of place is dropped with a reason, and nothing changes.
    let error = client
        .on_packet(secs(53), &reply(3, ACK, Some(100)), 4)
        .unwrap_err();
    assert_eq!(error.to_string(), "unexpected ACK while SELECTING");
}

#[test]
fn dhcp_requesting_gives_up_after_four_requests() {
    let (mut client, _) = Client::start(MAC, 1, secs(0));
    client
        .on_packet(secs(0), &reply(1, OFFER, Some(100)), 0)
        .unwrap();
    let mut now = 0;
    while client.state_name() == "REQUESTING" {
        now = client.deadline().as_secs();
        client.on_tick(secs(now), 9);
    }
    assert_eq!(now, 4 + 8 + 16 + 32);
    assert_eq!(client.state_name(), "SELECTING");
    assert_eq!(client.xid(), 9);
}

/// An ACK with a 1000 s lease and the given T1/T2 options.
fn ack_with_timers(renewal: Option<u32>, rebinding: Option<u32>) -> Vec<u8> {
    let mut options = vec![
        (53, vec![ACK]),
        (54, SERVER.octets().to_vec()),
        (1, vec![255, 255, 255, 0]),
        (51, 1000u32.to_be_bytes().to_vec()),
    ];
    if let Some(t1) = renewal {
        options.push((58, t1.to_be_bytes().to_vec()));
    }
    if let Some(t2) = rebinding {
        options.push((59, t2.to_be_bytes().to_vec()));
    }
    server_message(1, ADDRESS, &options)
}

fn bound_with(ack: &[u8]) -> Lease {
    let (mut client, _) = Client::start(MAC, 1, secs(0));
    client
        .on_packet(secs(0), &reply(1, OFFER, Some(1000)), 0)
        .unwrap();
    let actions = client.on_packet(secs(0), ack, 0).unwrap();
    match &actions[..] {
        [Action::Install(lease)] => lease.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dhcp_server_timers_are_used_when_sane() {
    let lease = bound_with(&ack_with_timers(Some(100), Some(200)));
    assert_eq!(lease.offer.renewal, Some(secs(100)));
    assert_eq!(lease.offer.router, None);
    assert_eq!((lease.renew_at, lease.rebind_at), (secs(100), secs(200)));
    // Insane ones (T1 past the lease) fall back to the defaults 0.5 and 0.875.
    let lease = bound_with(&ack_with_timers(Some(5000), None));
    assert_eq!((lease.renew_at, lease.rebind_at), (secs(500), secs(875)));
    let lease = bound_with(&ack_with_timers(Some(300), Some(200)));
    assert_eq!((lease.renew_at, lease.rebind_at), (secs(500), secs(500)));
}

#[test]
fn dhcp_malformed_replies_name_the_problem() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            vec![2; 100],
            "not a DHCP message: 100 bytes, shorter than a DHCP header",
        ),
        (
            {
                let mut bytes = reply(1, ACK, Some(60));
                bytes[236] = 0;
                bytes
            },
            "not a DHCP message: no DHCP magic cookie",
        ),
        (
            {
                let mut bytes = reply(1, ACK, Some(60));
                let len = bytes.len();
                bytes.truncate(len - 3); // inside the lease time option, no END
                bytes
            },
            "not a DHCP message: option 51 (4 bytes) runs past the packet",
        ),
        (
            server_message(1, ADDRESS, &[(53, vec![ACK]), (54, vec![10, 0, 2])]),
            "Ack without a server identifier",
        ),
        (
            server_message(
                1,
                ADDRESS,
                &[
                    (53, vec![ACK]),
                    (54, SERVER.octets().to_vec()),
                    (51, vec![0, 0, 1, 0]),
                    (1, vec![255, 0, 255, 0]),
                ],
            ),
            "subnet mask 255.0.255.0 is not a contiguous prefix",
        ),
        (
            server_message(
                1,
                ADDRESS,
                &[
                    (53, vec![ACK]),
                    (54, SERVER.octets().to_vec()),
                    (51, vec![0, 0, 1, 0]),
                    (3, vec![10, 0, 2]),
                ],
            ),
            "not a DHCP message: option 3 has 3 bytes, not a list of addresses",
        ),
        (
            server_message(
                1,
                Ipv4Addr::BROADCAST,
                &[(53, vec![OFFER]), (54, SERVER.octets().to_vec())],
            ),
            "Offer offers the unusable address 255.255.255.255",
        ),
        (
            server_message(1, ADDRESS, &[(53, vec![3]), (54, SERVER.octets().to_vec())]),
            "message type Request is not an OFFER, ACK or NAK",
        ),
        (
            {
                let mut bytes = reply(1, ACK, Some(60));
                bytes[2] = 200; // hlen
                bytes
            },
            "for hardware address 52:54:00:12:34:56, not ours",
        ),
    ];
    for (bytes, expected) in cases {
        let error = packet::parse_reply(&bytes, 1, &MAC).unwrap_err();
        assert_eq!(error.to_string(), expected);
    }
}

#[test]
fn dhcp_random_and_mutated_packets_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let valid = [
        reply(1, OFFER, Some(100)),
        reply(1, ACK, Some(100)),
        reply(1, NAK, None),
    ];
    let mut accepted = 0;
    for round in 0..20_000 {
        let bytes: Vec<u8> = if round % 4 == 0 {
            let len = rng.random_range(0..600);
            (0..len).map(|_| rng.random()).collect()
        } else {
            let mut bytes = valid[round % 3].clone();
            for _ in 0..rng.random_range(1..8) {
                match rng.random_range(0..3) {
                    0 => {
                        let i = rng.random_range(0..bytes.len());
                        bytes[i] = rng.random();
                    }
                    1 => bytes.truncate(rng.random_range(0..bytes.len())),
                    _ => {
                        let i = rng.random_range(0..=bytes.len());
                        bytes.insert(i, rng.random());
                    }
                }
                if bytes.is_empty() {
                    break;
                }
            }
            bytes
        };
        // Through the state machine in each state that reads packets.
        let (mut selecting, _) = Client::start(MAC, 1, secs(0));
        if selecting.on_packet(secs(1), &bytes, 2).is_ok() {
            accepted += 1;
        }
        let (mut requesting, _) = Client::start(MAC, 1, secs(0));
        requesting
            .on_packet(secs(0), &valid[0], 0)
            .expect("a valid offer");
        let _ = requesting.on_packet(secs(1), &bytes, 2);
    }
    // Some mutations leave a valid packet (a changed padding byte): the test saw both kinds.
    assert!(accepted > 0);
}
