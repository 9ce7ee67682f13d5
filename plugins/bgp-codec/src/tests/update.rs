//! UPDATE byte vectors: IPv4 unicast with every attribute the codec knows, IPv6 unicast in
//! MP_REACH/MP_UNREACH, add-path, a two-octet AS session with AS4_PATH, End-of-RIB.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{four_octet, hex, round_trip, update};
use crate::attributes::flags;
use crate::{
    AddPathFamilies, Aggregator, AsPath, Asn, Community, Context, ExtendedCommunity, Family,
    Ipv4Prefix, Ipv6Prefix, LargeCommunity, Message, NextHop, NlriEntry, NlriList, Origin, PathId,
    RawAttribute, Update, AS_TRANS,
};

fn v4(text: &str) -> NlriEntry<Ipv4Prefix> {
    let (addr, len) = text.split_once('/').unwrap();
    NlriEntry::new(Ipv4Prefix::new(addr.parse().unwrap(), len.parse().unwrap()).unwrap())
}

/// Every IPv4 attribute the codec decodes, in type-code order, four-octet AS session.
pub(crate) fn full_ipv4_update() -> Vec<u8> {
    update(
        &hex("10 0a09   # withdrawn 10.9.0.0/16"),
        &hex("40 01 01 00                          # ORIGIN IGP
             40 02 0a 02 02 0000fde9 0000fdea     # AS_PATH sequence 65001 65002
             40 03 04 0a000001                    # NEXT_HOP 10.0.0.1
             80 04 04 00000064                    # MED 100
             40 05 04 000000c8                    # LOCAL_PREF 200
             40 06 00                             # ATOMIC_AGGREGATE
             c0 07 08 0000fde9 0a000001           # AGGREGATOR 65001 10.0.0.1
             c0 08 08 fde90064 ffffff01           # COMMUNITIES 65001:100 NO_EXPORT
             80 09 04 0a000009                    # ORIGINATOR_ID 10.0.0.9
             80 0a 04 0a00000a                    # CLUSTER_LIST 10.0.0.10
             c0 10 08 0002fde900000064            # EXTENDED_COMMUNITIES RT 65001:100
             c0 20 0c 0000fde9 00000001 00000002  # LARGE_COMMUNITIES 65001:1:2
             e0 63 02 abcd                        # unknown 99, optional transitive partial"),
        &hex("10 c0a8  18 0a0101   # NLRI 192.168.0.0/16, 10.1.1.0/24"),
    )
}

#[test]
fn ipv4_update_with_every_attribute() {
    let Message::Update(u) = round_trip(&full_ipv4_update(), &four_octet()) else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.withdrawn, vec![v4("10.9.0.0/16")]);
    assert_eq!(u.nlri, vec![v4("192.168.0.0/16"), v4("10.1.1.0/24")]);
    let a = &u.attributes;
    assert_eq!(a.origin, Some(Origin::Igp));
    assert_eq!(
        a.as_path,
        Some(AsPath::sequence(vec![Asn(65001), Asn(65002)]))
    );
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!((a.med, a.local_pref), (Some(100), Some(200)));
    assert!(a.atomic_aggregate);
    assert_eq!(
        a.aggregator,
        Some(Aggregator {
            asn: Asn(65001),
            address: Ipv4Addr::new(10, 0, 0, 1)
        })
    );
    assert_eq!(
        a.communities,
        vec![Community(0xfde9_0064), Community::NO_EXPORT]
    );
    assert_eq!(a.communities[0].to_string(), "65001:100");
    assert_eq!(a.originator_id, Some(Ipv4Addr::new(10, 0, 0, 9)));
    assert_eq!(a.cluster_list, vec![Ipv4Addr::new(10, 0, 0, 10)]);
    assert_eq!(
        a.extended_communities,
        vec![ExtendedCommunity::RouteTargetAs2 {
            asn: 65001,
            assigned: 100
        }]
    );
    assert_eq!(
        a.large_communities,
        vec![LargeCommunity {
            global_admin: 65001,
            local_data1: 1,
            local_data2: 2
        }]
    );
    assert_eq!(
        a.unknown,
        vec![RawAttribute {
            flags: 0xe0,
            type_code: 99,
            value: vec![0xab, 0xcd]
        }]
    );
}

#[test]
fn unknown_attributes_for_propagation() {
    let Message::Update(mut u) = round_trip(&full_ipv4_update(), &four_octet()) else {
        panic!("not an UPDATE")
    };
    u.attributes.unknown.push(RawAttribute {
        flags: flags::OPTIONAL,
        type_code: 100,
        value: vec![1],
    });
    u.attributes.unknown[0].flags = flags::OPTIONAL | flags::TRANSITIVE;
    u.attributes.prepare_unknown_for_propagation();
    // The non-transitive one is dropped, the transitive one gets the Partial bit.
    assert_eq!(u.attributes.unknown.len(), 1);
    assert_eq!(u.attributes.unknown[0].flags, 0xe0);
}

#[test]
fn ipv6_unicast_in_mp_reach_and_mp_unreach() {
    let bytes = update(
        &[],
        &hex("40 01 01 00                 # ORIGIN IGP
             40 02 06 02 01 0000fde9     # AS_PATH 65001
             80 0e 2c                    # MP_REACH_NLRI, length 44
               0002 01                   #   IPv6 unicast
               20                        #   next hop length 32
               20010db8000000000000000000000001   # global 2001:db8::1
               fe800000000000000000000000000001   # link-local fe80::1
               00                        #   reserved
               30 20010db80001           #   2001:db8:1::/48
             80 0f 0b                    # MP_UNREACH_NLRI, length 11
               0002 01                   #   IPv6 unicast
               30 20010db80002           #   2001:db8:2::/48
               00                        #   ::/0"),
        &[],
    );
    let Message::Update(u) = round_trip(&bytes, &four_octet()) else {
        panic!("not an UPDATE")
    };
    let reach = u.mp_reach.unwrap();
    assert_eq!(
        reach.next_hop,
        NextHop::Ipv6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: Some("fe80::1".parse().unwrap()),
        }
    );
    let prefix =
        |a: &str, l| NlriEntry::new(Ipv6Prefix::new(a.parse::<Ipv6Addr>().unwrap(), l).unwrap());
    assert_eq!(reach.nlri, NlriList::Ipv6(vec![prefix("2001:db8:1::", 48)]));
    assert_eq!(
        u.mp_unreach.unwrap().withdrawn,
        NlriList::Ipv6(vec![prefix("2001:db8:2::", 48), prefix("::", 0)])
    );
}

#[test]
fn add_path_ipv4_update() {
    let ctx = Context {
        four_octet_as: true,
        add_path: AddPathFamilies::NONE.with(Family::IPV4_UNICAST),
        ..Context::default()
    };
    let bytes = update(
        &hex("00000007 18 0a0202        # path 7: withdraw 10.2.2.0/24"),
        &hex("40 01 01 02  40 02 00  40 03 04 0a000001   # INCOMPLETE, empty AS_PATH, NEXT_HOP"),
        &hex("00000001 18 0a0101  00000002 18 0a0101   # 10.1.1.0/24 as paths 1 and 2"),
    );
    let Message::Update(u) = round_trip(&bytes, &ctx) else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.withdrawn[0].path_id, Some(PathId(7)));
    assert_eq!(u.nlri.len(), 2);
    assert_eq!(u.nlri[1].path_id, Some(PathId(2)));
    assert_eq!(u.attributes.origin, Some(Origin::Incomplete));
    assert_eq!(u.attributes.as_path, Some(AsPath::default()));
    // The same bytes without add-path negotiated mean something else entirely.
    assert_ne!(
        crate::decode_message(&bytes, &four_octet()),
        Ok(crate::Received::Message(Message::Update(u)))
    );
}

#[test]
fn two_octet_session_with_as4_path_and_as4_aggregator() {
    let bytes = update(
        &[],
        &hex("40 01 01 00
             40 02 06 02 02 fde9 5ba0             # AS_PATH 65001 AS_TRANS (two-octet)
             40 03 04 0a000001
             c0 07 06 5ba0 0a000001               # AGGREGATOR AS_TRANS 10.0.0.1
             c0 11 0a 02 02 0000fde9 fa56ea01     # AS4_PATH 65001 4200000001
             c0 12 08 fa56ea01 0a000001           # AS4_AGGREGATOR 4200000001 10.0.0.1"),
        &hex("18 c63364   # 198.51.100.0/24"),
    );
    let Message::Update(u) = round_trip(&bytes, &Context::default()) else {
        panic!("not an UPDATE")
    };
    let a = &u.attributes;
    let as_path = a.as_path.as_ref().unwrap();
    assert_eq!(as_path, &AsPath::sequence(vec![Asn(65001), AS_TRANS]));
    let merged = as_path.merge_as4(a.as4_path.as_ref().unwrap());
    assert_eq!(
        merged,
        AsPath::sequence(vec![Asn(65001), Asn(4_200_000_001)])
    );
    assert_eq!(a.aggregator.unwrap().asn, AS_TRANS);
    assert_eq!(a.as4_aggregator.unwrap().asn, Asn(4_200_000_001));
}

#[test]
fn end_of_rib_markers() {
    let ipv4 = update(&[], &[], &[]);
    let Message::Update(u) = round_trip(&ipv4, &four_octet()) else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.end_of_rib_family(), Some(Family::IPV4_UNICAST));
    let evpn = update(&[], &hex("80 0f 03 0019 46"), &[]);
    let Message::Update(u) = round_trip(&evpn, &four_octet()) else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.end_of_rib_family(), Some(Family::L2VPN_EVPN));
    assert_eq!(
        Message::Update(Update::end_of_rib(Family::L2VPN_EVPN)).to_bytes(&four_octet()),
        Ok(evpn)
    );
    let Message::Update(full) = round_trip(&full_ipv4_update(), &four_octet()) else {
        panic!("not an UPDATE")
    };
    assert_eq!(full.end_of_rib_family(), None);
}

#[test]
fn long_attributes_use_the_extended_length_form() {
    // 70 communities = 280 bytes: flags 0xd0 (optional, transitive, extended length).
    let mut attributes = hex("40 01 01 00 40 02 00 40 03 04 0a000001 d0 08 0118");
    for i in 0..70u32 {
        attributes.extend_from_slice(&(0xfde9_0000 | i).to_be_bytes());
    }
    let bytes = update(&[], &attributes, &hex("08 0a"));
    let Message::Update(u) = round_trip(&bytes, &four_octet()) else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.attributes.communities.len(), 70);
}
