//! pack_announcements / pack_withdrawals: many routes with one attribute set split into
//! UPDATEs that each fit the negotiated size and decode back to the same routes.

use std::net::Ipv4Addr;

use super::four_octet;
use crate::{
    decode_message, pack_announcements, pack_withdrawals, AddPathFamilies, AsPath, Asn, Context,
    EncodeError, EthernetSegmentId, EvpnRoute, Family, Ipv4Prefix, Ipv6Prefix, Label, MacAddress,
    MacIpAdvertisement, Message, NextHop, NlriEntry, NlriList, Origin, PathAttributes, PathId,
    RawAttribute, Received, RouteDistinguisher, Update, Vni, MAX_MESSAGE_LEN,
};

fn attributes() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(vec![Asn(65001)])),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        ..PathAttributes::default()
    }
}

fn decode_all(messages: &[Vec<u8>], ctx: &Context, limit: usize) -> Vec<Update> {
    messages
        .iter()
        .map(|m| {
            assert!(m.len() <= limit, "message of {} bytes", m.len());
            match decode_message(m, ctx) {
                Ok(Received::Message(Message::Update(u))) => u,
                other => panic!("packed UPDATE does not decode cleanly: {other:?}"),
            }
        })
        .collect()
}

#[test]
fn ipv4_prefixes_fill_each_update_to_the_limit() {
    let ctx = four_octet();
    let prefixes: Vec<NlriEntry<Ipv4Prefix>> = (0..2000u32)
        .map(|i| NlriEntry::new(Ipv4Prefix::new(Ipv4Addr::from(0x0a00_0000 | i << 8), 24).unwrap()))
        .collect();
    let messages =
        pack_announcements(&ctx, &attributes(), None, &NlriList::Ipv4(prefixes.clone())).unwrap();
    // 19 header + 4 length fields + 20 attribute bytes leave 4053 for 4-byte /24 prefixes.
    assert_eq!(messages.len(), 2000usize.div_ceil(4053 / 4));
    let updates = decode_all(&messages, &ctx, MAX_MESSAGE_LEN);
    assert!(updates.iter().all(|u| u.attributes == attributes()));
    let back: Vec<_> = updates.into_iter().flat_map(|u| u.nlri).collect();
    assert_eq!(back, prefixes);
}

#[test]
fn evpn_routes_go_in_mp_reach_and_use_extended_messages() {
    let ctx = Context {
        extended_message: true,
        ..four_octet()
    };
    let routes: Vec<NlriEntry<EvpnRoute>> = (0..3000u32)
        .map(|i| {
            let b = i.to_be_bytes();
            NlriEntry::new(EvpnRoute::MacIp(MacIpAdvertisement {
                rd: RouteDistinguisher::Ipv4 {
                    addr: Ipv4Addr::new(10, 0, 0, 1),
                    assigned: 100,
                },
                esi: EthernetSegmentId::default(),
                ethernet_tag: 0,
                mac: MacAddress([0x52, 0x54, b[0], b[1], b[2], b[3]]),
                ip: None,
                label1: Label::from_vni(Vni::new(100).unwrap()),
                label2: None,
            }))
        })
        .collect();
    let mut attrs = attributes();
    attrs.next_hop = None;
    attrs.extended_communities = vec![crate::ExtendedCommunity::Encapsulation { tunnel_type: 8 }];
    // An unknown attribute below MP_REACH_NLRI's code and one above keep their order.
    attrs.unknown = vec![
        RawAttribute {
            flags: 0xe0,
            type_code: 12,
            value: vec![1],
        },
        RawAttribute {
            flags: 0xe0,
            type_code: 99,
            value: vec![2],
        },
    ];
    let next_hop = NextHop::Ipv4(Ipv4Addr::new(10, 0, 0, 1));
    let list = NlriList::Evpn(routes.clone());
    let messages = pack_announcements(&ctx, &attrs, Some(&next_hop), &list).unwrap();
    // 35 bytes per route: 3000 routes take two 64 KiB messages.
    assert_eq!(messages.len(), 2);
    let updates = decode_all(&messages, &ctx, 65535);
    let mut back = Vec::new();
    for u in updates {
        assert_eq!(u.attributes, attrs);
        let reach = u.mp_reach.unwrap();
        assert_eq!(reach.next_hop, next_hop);
        let NlriList::Evpn(part) = reach.nlri else {
            panic!()
        };
        back.extend(part);
    }
    assert_eq!(back, routes);
    // Each packed message is what encoding the decoded UPDATE gives: canonical order.
    let Ok(Received::Message(m)) = decode_message(&messages[1], &ctx) else {
        panic!()
    };
    assert_eq!(m.to_bytes(&ctx).unwrap(), messages[1]);
    assert_eq!(
        pack_announcements(&ctx, &attrs, None, &list),
        Err(EncodeError::MissingNextHop {
            family: Family::L2VPN_EVPN
        })
    );
}

#[test]
fn ipv6_withdrawals_with_path_ids() {
    let ctx = Context {
        add_path: AddPathFamilies::NONE.with(Family::IPV6_UNICAST),
        ..four_octet()
    };
    let withdrawn: Vec<NlriEntry<Ipv6Prefix>> = (0..1000u32)
        .map(|i| NlriEntry {
            path_id: Some(PathId(i)),
            nlri: Ipv6Prefix::new((0x2001_0db8_u128 << 96 | u128::from(i) << 64).into(), 64)
                .unwrap(),
        })
        .collect();
    let list = NlriList::Ipv6(withdrawn.clone());
    let messages = pack_withdrawals(&ctx, &list).unwrap();
    // 4 + 1 + 8 = 13 bytes each; 4096 - 30 leaves room for 312 per message.
    assert_eq!(messages.len(), 1000usize.div_ceil(4066 / 13));
    let mut back = Vec::new();
    for u in decode_all(&messages, &ctx, MAX_MESSAGE_LEN) {
        let NlriList::Ipv6(part) = u.mp_unreach.unwrap().withdrawn else {
            panic!()
        };
        back.extend(part);
    }
    assert_eq!(back, withdrawn);
    // Without add-path in this direction, entries with path ids are refused.
    assert!(matches!(
        pack_withdrawals(&four_octet(), &list),
        Err(EncodeError::PathIdMismatch { .. })
    ));
    // IPv4 withdrawals use the withdrawn routes field.
    let ipv4 = NlriList::Ipv4(vec![NlriEntry::new(
        Ipv4Prefix::new(Ipv4Addr::new(10, 0, 0, 0), 8).unwrap(),
    )]);
    let messages = pack_withdrawals(&four_octet(), &ipv4).unwrap();
    assert_eq!(messages, vec![super::update(&[8, 10], &[], &[])]);
}

#[test]
fn attributes_too_large_for_any_route_are_an_error() {
    let mut attrs = attributes();
    attrs.unknown = vec![RawAttribute {
        flags: 0xc0,
        type_code: 99,
        value: vec![0; 4040],
    }];
    let list = NlriList::Ipv4(vec![NlriEntry::new(
        Ipv4Prefix::new(Ipv4Addr::new(10, 0, 0, 0), 8).unwrap(),
    )]);
    assert!(pack_announcements(&four_octet(), &attrs, None, &list).is_ok());
    attrs.unknown[0].value = vec![0; 4060];
    assert_eq!(
        pack_announcements(&four_octet(), &attrs, None, &list),
        Err(EncodeError::RouteDoesNotFit {
            family: Family::IPV4_UNICAST,
            limit: 4096
        })
    );
}
