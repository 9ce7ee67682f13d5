//! EVPN byte vectors for every route type, laid out as RFC 7432 / RFC 9136 describe and as FRR
//! and GoBGP put them on the wire for VXLAN (RFC 8365: the VNI is the whole 3-byte label).

use std::net::{IpAddr, Ipv4Addr};

use super::{four_octet, hex, round_trip, update};
use crate::attributes::PMSI_TUNNEL_INGRESS_REPLICATION;
use crate::{
    EthernetSegmentId, EvpnRoute, ExtendedCommunity, IpPrefix, Label, MacAddress, Message, NextHop,
    NlriList, PmsiTunnel, PmsiTunnelId, RouteDistinguisher, Vni,
};

const RD: &str = "0001 0a000001 0002   # RD type 1, 10.0.0.1:2";
const ESI0: &str = "00000000000000000000  # ESI 0 (single-homed)";

/// One of each route type (2 in three shapes, 5 in both families) and an unknown type.
fn all_route_types() -> Vec<u8> {
    let mut nlri = Vec::new();
    for route in [
        // Type 1, Ethernet auto-discovery per ES: tag MAX-ET, label 0. 25 bytes.
        format!("01 19 {RD}\n00112233445566778899 ffffffff 000000"),
        // Type 2, MAC only, VNI 100. 33 bytes.
        format!("02 21 {RD}\n{ESI0}\n00000000 30 525400aabbcc 00 000064"),
        // Type 2, MAC + IPv4, L2 VNI 100 and L3 VNI 5000 (symmetric IRB). 40 bytes.
        format!("02 28 {RD}\n{ESI0}\n00000000 30 525400aabbcc 20 c0a80a05 000064 001388"),
        // Type 2, MAC + IPv6. 49 bytes.
        format!(
            "02 31 {RD}\n{ESI0}\n00000000 30 525400aabbcc 80 20010db8000000000000000000000005 000064"
        ),
        // Type 3, originator 10.0.0.1. 17 bytes.
        format!("03 11 {RD}\n00000000 20 0a000001"),
        // Type 4, ES route. 23 bytes.
        format!("04 17 {RD}\n00112233445566778899 20 0a000001"),
        // Type 5, IPv4 192.168.20.0/24, gateway 0.0.0.0, L3 VNI 5000. 34 bytes.
        format!("05 22 {RD}\n{ESI0}\n00000000 18 c0a81400 00000000 001388"),
        // Type 5, IPv6 2001:db8:1::/48, gateway ::, L3 VNI 5000. 58 bytes.
        format!(
            "05 3a {RD}\n{ESI0}\n00000000 30 20010db8000100000000000000000000 00000000000000000000000000000000 001388"
        ),
        // Type 9: not defined here, kept as it came.
        "09 03 010203".to_string(),
    ] {
        nlri.extend(hex(&route));
    }
    let mut reach = hex("0019 46 04 0a000001 00   # L2VPN EVPN, next hop 10.0.0.1");
    reach.extend(nlri);
    assert!(reach.len() > 255);
    let mut attributes = hex("40 01 01 00  40 02 00");
    attributes.extend(hex("90 0e"));
    attributes.extend(u16::try_from(reach.len()).unwrap().to_be_bytes());
    attributes.extend(reach);
    attributes.extend(hex(
        "c0 10 10 0002fde900000064 030c000000000008   # RT 65001:100, VXLAN",
    ));
    update(&[], &attributes, &[])
}

#[test]
fn every_route_type_both_ways() {
    let Message::Update(u) = round_trip(&all_route_types(), &four_octet()) else {
        panic!("not an UPDATE")
    };
    let reach = u.mp_reach.unwrap();
    assert_eq!(reach.next_hop, NextHop::Ipv4(Ipv4Addr::new(10, 0, 0, 1)));
    let NlriList::Evpn(routes) = reach.nlri else {
        panic!("not EVPN")
    };
    let routes: Vec<EvpnRoute> = routes.into_iter().map(|e| e.nlri).collect();
    let types: Vec<u8> = routes.iter().map(EvpnRoute::route_type).collect();
    assert_eq!(types, [1, 2, 2, 2, 3, 4, 5, 5, 9]);
    let rd = RouteDistinguisher::Ipv4 {
        addr: Ipv4Addr::new(10, 0, 0, 1),
        assigned: 2,
    };
    let EvpnRoute::EthernetAutoDiscovery(ad) = &routes[0] else {
        panic!()
    };
    assert_eq!(ad.ethernet_tag, u32::MAX);
    assert_eq!(ad.esi.to_string(), "00:11:22:33:44:55:66:77:88:99");
    let EvpnRoute::MacIp(mac_only) = &routes[1] else {
        panic!()
    };
    assert_eq!(mac_only.rd, rd);
    assert_eq!(mac_only.mac, MacAddress([0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]));
    assert_eq!(mac_only.ip, None);
    assert_eq!(mac_only.label1.vni(), Vni::new(100).unwrap());
    assert_eq!(mac_only.esi, EthernetSegmentId::default());
    let EvpnRoute::MacIp(mac_ip) = &routes[2] else {
        panic!()
    };
    assert_eq!(mac_ip.ip, Some(IpAddr::V4(Ipv4Addr::new(192, 168, 10, 5))));
    assert_eq!(
        mac_ip.label2,
        Some(Label::from_vni(Vni::new(5000).unwrap()))
    );
    let EvpnRoute::MacIp(mac_ip6) = &routes[3] else {
        panic!()
    };
    assert_eq!(mac_ip6.ip, Some("2001:db8::5".parse().unwrap()));
    let EvpnRoute::InclusiveMulticast(imet) = &routes[4] else {
        panic!()
    };
    assert_eq!(imet.originator, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    let EvpnRoute::EthernetSegment(es) = &routes[5] else {
        panic!()
    };
    assert_eq!(es.rd, rd);
    let EvpnRoute::IpPrefix(p4) = &routes[6] else {
        panic!()
    };
    assert_eq!(p4.prefix.to_string(), "192.168.20.0/24");
    assert_eq!(p4.label.vni().get(), 5000);
    let EvpnRoute::IpPrefix(p6) = &routes[7] else {
        panic!()
    };
    assert!(matches!(p6.prefix, IpPrefix::V6(_)));
    assert_eq!(p6.prefix.to_string(), "2001:db8:1::/48");
    assert_eq!(
        routes[8],
        EvpnRoute::Unknown {
            code: 9,
            value: vec![1, 2, 3]
        }
    );
    assert_eq!(
        u.attributes.extended_communities[1],
        ExtendedCommunity::Encapsulation { tunnel_type: 8 }
    );
}

#[test]
fn type_3_with_pmsi_ingress_replication() {
    // What FRR sends for an L2 VNI 100 on VTEP 10.0.0.1.
    let bytes = update(
        &[],
        &hex(&format!(
            "40 01 01 00                 # ORIGIN IGP
             40 02 00                    # AS_PATH empty (iBGP)
             80 0e 1c                    # MP_REACH_NLRI, length 28
               0019 46 04 0a000001 00
               03 11 {RD}
               00000000 20 0a000001      #   type 3, originator 10.0.0.1
             c0 10 10 0002fde900000064 030c000000000008
             c0 16 09                    # PMSI_TUNNEL, length 9
               00                        #   flags
               06                        #   ingress replication
               000064                    #   VNI 100, the whole label field (RFC 8365 §5.1.3)
               0a000001                  #   replicate to 10.0.0.1"
        )),
        &[],
    );
    let Message::Update(u) = round_trip(&bytes, &four_octet()) else {
        panic!("not an UPDATE")
    };
    let pmsi = u.attributes.pmsi_tunnel.unwrap();
    assert_eq!(
        pmsi,
        PmsiTunnel {
            flags: 0,
            label: Label::from_vni(Vni::new(100).unwrap()),
            tunnel: PmsiTunnelId::IngressReplication {
                endpoint: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
            },
        }
    );
    assert_eq!(PMSI_TUNNEL_INGRESS_REPLICATION, 6);
    // The label field is the VNI, not an MPLS label shifted by 4.
    assert_eq!(pmsi.label.raw(), 100);
    assert_eq!(pmsi.label.mpls_label(), 6);
}

#[test]
fn json_of_an_evpn_update_is_stable() {
    let received = crate::decode_hex(&crate::hex::to_hex(&all_route_types())).unwrap();
    let json = serde_json::to_value(&received).unwrap();
    assert_eq!(json["outcome"], "accepted");
    assert_eq!(json["type"], "update");
    assert_eq!(json["attributes"]["origin"], "igp");
    let reach = &json["mp_reach"];
    assert_eq!(reach["next_hop"], "10.0.0.1");
    assert_eq!(reach["nlri"]["family"], "l2vpn-evpn");
    let route = &reach["nlri"]["routes"][2]["nlri"];
    assert_eq!(
        route,
        &serde_json::json!({
            "route_type": "mac_ip",
            "rd": {"type": 1, "value": "10.0.0.1:2"},
            "esi": "00:00:00:00:00:00:00:00:00:00",
            "ethernet_tag": 0,
            "mac": "52:54:00:aa:bb:cc",
            "ip": "192.168.10.5",
            "label1": 100,
            "label2": 5000
        })
    );
    assert_eq!(
        json["attributes"]["extended_communities"][1],
        serde_json::json!({"type": "encapsulation", "tunnel_type": 8})
    );
    assert_eq!(
        reach["nlri"]["routes"][8]["nlri"],
        serde_json::json!({"route_type": "unknown", "code": 9, "value": "010203"})
    );
}
