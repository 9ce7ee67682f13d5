//! The EVPN speaker logic: route keys, originated routes, import rules and the kernel view.

use super::*;
use crate::config::L3Tenant;
use ztos_bgp_codec::{Context, Family, Message, NlriEntry, NlriList, Update};

const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];

fn segment(vni: u32, vxlan: &str, vtep: [u8; 4]) -> L2Segment {
    L2Segment {
        vni,
        vxlan: vxlan.to_string(),
        bridge: format!("br{vni}"),
        local_vtep: IpAddr::from(vtep),
    }
}

fn segments() -> HashMap<u32, L2Segment> {
    [(100, segment(100, "vx100", [10, 0, 0, 1]))]
        .into_iter()
        .collect()
}

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

/// A remote VTEP's type 2 route for `mac` in `vni`, as a received path.
fn remote_mac(vni: u32, mac: [u8; 6], vtep: [u8; 4], asn: u32, sequence: Option<u32>) -> Path {
    let remote = segment(vni, "x", vtep);
    let mut path = mac_advertisement(&remote, mac, sequence, Ipv4Addr::from(vtep), asn);
    path.attributes.as_path = Some(AsPath::sequence(vec![ztos_bgp_codec::Asn(asn)]));
    path
}

fn remote_imet(vni: u32, vtep: [u8; 4], asn: u32) -> Path {
    inclusive_multicast(&segment(vni, "x", vtep), Ipv4Addr::from(vtep), asn)
}

#[test]
fn keys_leave_out_labels_esi_and_gateway() {
    let a = mac_advertisement(
        &segment(100, "vx100", [10, 0, 0, 1]),
        MAC_A,
        None,
        ROUTER,
        65001,
    );
    let b = mac_advertisement(
        &segment(200, "vx200", [10, 0, 0, 1]),
        MAC_A,
        None,
        ROUTER,
        65001,
    );
    let (ra, rb) = (a.evpn.unwrap(), b.evpn.unwrap());
    assert_ne!(ra, rb, "the labels differ");
    // VNI 100 and 200 have different RDs, so the keys differ too; same RD and MAC with another
    // label is the same route.
    let mut rc = rb.clone();
    if let EvpnRoute::MacIp(r) = &mut rc {
        r.rd = segment_rd(ROUTER, 100);
    }
    assert_eq!(route_key(&ra), route_key(&rc));
    let imet = remote_imet(100, [10, 0, 0, 2], 65002).evpn.unwrap();
    assert_eq!(route_key(&imet), imet, "a type 3 route is all key");
}

#[test]
fn originated_routes_carry_what_rfc_8365_asks() {
    let seg = segment(100, "vx100", [10, 0, 0, 1]);
    let imet = inclusive_multicast(&seg, ROUTER, 65001);
    assert_eq!(imet.next_hop, NextHop::Ipv4(Ipv4Addr::new(10, 0, 0, 1)));
    let pmsi = imet.attributes.pmsi_tunnel.as_ref().unwrap();
    assert_eq!(pmsi.label.raw(), 100, "the VNI whole in the label field");
    assert_eq!(
        pmsi.tunnel,
        PmsiTunnelId::IngressReplication {
            endpoint: ip([10, 0, 0, 1])
        }
    );
    assert_eq!(
        imet.attributes.extended_communities,
        vec![
            ExtendedCommunity::RouteTargetAs2 {
                asn: 65001,
                assigned: 100
            },
            ExtendedCommunity::Encapsulation { tunnel_type: 8 },
        ]
    );
    match imet.evpn.as_ref().unwrap() {
        EvpnRoute::InclusiveMulticast(r) => {
            assert_eq!(r.rd.to_string(), "10.255.0.1:100");
            assert_eq!(r.originator, ip([10, 0, 0, 1]));
            assert_eq!(r.ethernet_tag, 0);
        }
        other => panic!("not type 3: {other:?}"),
    }
    let mac = mac_advertisement(&seg, MAC_A, Some(3), ROUTER, 4_200_000_000);
    assert!(mac
        .attributes
        .extended_communities
        .contains(&ExtendedCommunity::MacMobility {
            sticky: false,
            sequence: 3
        }));
    assert!(mac
        .attributes
        .extended_communities
        .contains(&ExtendedCommunity::RouteTargetAs4 {
            asn: 4_200_000_000,
            assigned: 100
        }));
    // Both encode as an UPDATE a peer can read back.
    for path in [&imet, &mac] {
        let list = NlriList::Evpn(vec![NlriEntry::new(path.evpn.clone().unwrap())]);
        let messages = ztos_bgp_codec::pack_announcements(
            &Context::MODERN,
            &path.attributes,
            Some(&path.next_hop),
            &list,
        )
        .unwrap();
        assert_eq!(messages.len(), 1);
        let decoded = ztos_bgp_codec::decode_message(&messages[0], &Context::MODERN).unwrap();
        match decoded {
            ztos_bgp_codec::Received::Message(Message::Update(Update {
                mp_reach: Some(reach),
                ..
            })) => {
                assert_eq!(reach.nlri.family(), Family::L2VPN_EVPN);
                assert_eq!(reach.nlri, list);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn import_needs_a_local_vni_a_matching_target_and_another_vtep() {
    let segs = segments();
    let path = remote_mac(100, MAC_A, [10, 0, 0, 2], 65002, None);
    assert_eq!(
        classify(&path, &segs),
        Some(Imported::Mac {
            vni: 100,
            mac: MAC_A,
            vtep: ip([10, 0, 0, 2]),
            sequence: 0
        }),
        "another AS's route target for the VNI is imported"
    );
    assert_eq!(
        classify(&remote_mac(200, MAC_A, [10, 0, 0, 2], 65002, None), &segs),
        None
    );
    let mut no_target = path.clone();
    no_target
        .attributes
        .extended_communities
        .retain(|c| !matches!(c, ExtendedCommunity::RouteTargetAs2 { .. }));
    assert_eq!(classify(&no_target, &segs), None, "no route target");
    let mut wrong_target = path.clone();
    wrong_target.attributes.extended_communities = vec![ExtendedCommunity::RouteTargetAs2 {
        asn: 65002,
        assigned: 101,
    }];
    assert_eq!(
        classify(&wrong_target, &segs),
        None,
        "a target of another VNI"
    );
    assert_eq!(
        classify(&remote_mac(100, MAC_A, [10, 0, 0, 1], 65002, None), &segs),
        None,
        "our own VTEP"
    );

    let imet = remote_imet(100, [10, 0, 0, 3], 65003);
    assert_eq!(
        classify(&imet, &segs),
        Some(Imported::Flood {
            vni: 100,
            vtep: ip([10, 0, 0, 3])
        })
    );
    // Without a PMSI attribute the Ethernet tag names the VNI (some speakers send it so).
    let mut bare = imet.clone();
    bare.attributes.pmsi_tunnel = None;
    if let Some(EvpnRoute::InclusiveMulticast(r)) = &mut bare.evpn {
        r.ethernet_tag = 100;
    }
    assert_eq!(
        classify(&bare, &segs),
        Some(Imported::Flood {
            vni: 100,
            vtep: ip([10, 0, 0, 3])
        })
    );
    // Another tunnel type than ingress replication is not for us.
    let mut other = imet.clone();
    if let Some(p) = &mut other.attributes.pmsi_tunnel {
        p.tunnel = PmsiTunnelId::Other {
            code: 3,
            identifier: vec![1, 2, 3, 4],
        };
    }
    assert_eq!(classify(&other, &segs), None);
}

fn key_of(path: &Path) -> EvpnRoute {
    route_key(path.evpn.as_ref().unwrap())
}

#[test]
fn the_kernel_view_installs_the_winner_and_floods_to_every_vtep() {
    let segs = segments();
    let mut view = KernelView::default();
    let mut ops = Vec::new();
    view.set_segments(&segs.values().cloned().collect::<Vec<_>>(), &mut ops);
    assert!(ops.is_empty());

    let a2 = remote_mac(100, MAC_A, [10, 0, 0, 2], 65002, None);
    view.change(&key_of(&a2), classify(&a2, &segs), &mut ops);
    assert_eq!(
        std::mem::take(&mut ops),
        vec![EvpnOp::InstallMac {
            vxlan: "vx100".into(),
            mac: MAC_A,
            vtep: ip([10, 0, 0, 2])
        }]
    );
    // The same again changes nothing.
    view.change(&key_of(&a2), classify(&a2, &segs), &mut ops);
    assert!(ops.is_empty());
    // The MAC moves to 10.0.0.3 with a higher sequence number: replaced.
    let a3 = remote_mac(100, MAC_A, [10, 0, 0, 3], 65003, Some(1));
    view.change(&key_of(&a3), classify(&a3, &segs), &mut ops);
    assert_eq!(
        std::mem::take(&mut ops),
        vec![EvpnOp::InstallMac {
            vxlan: "vx100".into(),
            mac: MAC_A,
            vtep: ip([10, 0, 0, 3])
        }]
    );
    assert_eq!(view.remote_sequence(100, MAC_A), Some(1));
    // Learned here now: advertised with sequence 2, and the remote entry goes.
    view.set_local(100, MAC_A, Some(2), &mut ops);
    assert_eq!(
        std::mem::take(&mut ops),
        vec![EvpnOp::RemoveMac {
            vxlan: "vx100".into(),
            mac: MAC_A
        }]
    );
    // A remote route with sequence 5 wins it back.
    let a2b = remote_mac(100, MAC_A, [10, 0, 0, 2], 65002, Some(5));
    view.change(&key_of(&a2b), classify(&a2b, &segs), &mut ops);
    assert_eq!(
        std::mem::take(&mut ops),
        vec![EvpnOp::InstallMac {
            vxlan: "vx100".into(),
            mac: MAC_A,
            vtep: ip([10, 0, 0, 2])
        }]
    );
    view.set_local(100, MAC_A, None, &mut ops);
    assert!(ops.is_empty(), "already pointing at the winner");
    // Withdrawals: the other candidate takes over, then nothing is left.
    view.change(&key_of(&a2b), None, &mut ops);
    assert_eq!(
        std::mem::take(&mut ops),
        vec![EvpnOp::InstallMac {
            vxlan: "vx100".into(),
            mac: MAC_A,
            vtep: ip([10, 0, 0, 3])
        }]
    );
    view.change(&key_of(&a3), None, &mut ops);
    assert_eq!(
        std::mem::take(&mut ops),
        vec![EvpnOp::RemoveMac {
            vxlan: "vx100".into(),
            mac: MAC_A
        }]
    );

    // Flood list: one entry per VTEP with a type 3 route.
    let f2 = remote_imet(100, [10, 0, 0, 2], 65002);
    let f3 = remote_imet(100, [10, 0, 0, 3], 65003);
    view.change(&key_of(&f2), classify(&f2, &segs), &mut ops);
    view.change(&key_of(&f3), classify(&f3, &segs), &mut ops);
    assert_eq!(
        std::mem::take(&mut ops),
        vec![
            EvpnOp::AddFlood {
                vxlan: "vx100".into(),
                vtep: ip([10, 0, 0, 2])
            },
            EvpnOp::AddFlood {
                vxlan: "vx100".into(),
                vtep: ip([10, 0, 0, 3])
            },
        ]
    );
    assert_eq!(view.installed(), (0, 2, 0));
    view.change(&key_of(&f2), None, &mut ops);
    assert_eq!(
        std::mem::take(&mut ops),
        vec![EvpnOp::RemoveFlood {
            vxlan: "vx100".into(),
            vtep: ip([10, 0, 0, 2])
        }]
    );

    // The segment's device is renamed: its entries move; removed: forgotten without ops.
    view.set_segments(&[segment(100, "vxlan-a", [10, 0, 0, 1])], &mut ops);
    assert_eq!(
        std::mem::take(&mut ops),
        vec![EvpnOp::AddFlood {
            vxlan: "vxlan-a".into(),
            vtep: ip([10, 0, 0, 3])
        }]
    );
    view.set_segments(&[], &mut ops);
    assert!(ops.is_empty());
    assert_eq!(view.installed(), (0, 0, 0));
}

fn tenant() -> L3Tenant {
    L3Tenant {
        name: "red".into(),
        vrf: "vrf-red".into(),
        table: 10,
        l3_vni: 5000,
        l3_vxlan: "vx5000".into(),
        l3_bridge: "br5000".into(),
        local_vtep: ip([10, 0, 0, 1]),
        prefixes: vec!["10.10.0.0/24".parse().unwrap()],
    }
}

const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x50, 0x01];

#[test]
fn type_5_routes_carry_the_router_mac_and_install_into_the_tenant_table() {
    let mut remote = tenant();
    remote.local_vtep = ip([10, 0, 0, 2]);
    let net: IpNet = "10.20.0.0/24".parse().unwrap();
    let path =
        ip_prefix_route(&remote, net, ROUTER_MAC, Ipv4Addr::new(10, 0, 0, 2), 65002).unwrap();
    match path.evpn.as_ref().unwrap() {
        EvpnRoute::IpPrefix(r) => {
            assert_eq!(r.label.raw(), 5000);
            assert_eq!(r.prefix.to_string(), "10.20.0.0/24");
            assert_eq!(r.gateway, ip([0, 0, 0, 0]));
            assert_eq!(r.rd.to_string(), "10.0.0.2:5000");
        }
        other => panic!("not type 5: {other:?}"),
    }
    assert!(path
        .attributes
        .extended_communities
        .contains(&ExtendedCommunity::RouterMac {
            mac: MacAddress(ROUTER_MAC)
        }));

    let mut view = KernelView::default();
    let mut ops = Vec::new();
    view.set_tenants(&[tenant()], &mut ops);
    let imported = view.read(&path);
    assert_eq!(
        imported,
        Some(Imported::Prefix {
            l3_vni: 5000,
            prefix: net,
            vtep: ip([10, 0, 0, 2]),
            router_mac: ROUTER_MAC
        })
    );
    // No router MAC: symmetric IRB cannot use it.
    let mut bare = path.clone();
    bare.attributes
        .extended_communities
        .retain(|c| !matches!(c, ExtendedCommunity::RouterMac { .. }));
    assert_eq!(view.read(&bare), None);
    // Our own route back: not imported.
    let own = ip_prefix_route(&tenant(), net, ROUTER_MAC, ROUTER, 65001).unwrap();
    assert_eq!(view.read(&own), None);

    let key = key_of(&path);
    view.change(&key, imported, &mut ops);
    assert_eq!(
        std::mem::take(&mut ops),
        vec![EvpnOp::InstallPrefix {
            vrf: "vrf-red".into(),
            table: 10,
            prefix: net,
            vtep: ip([10, 0, 0, 2]),
            router_mac: ROUTER_MAC,
            l3_bridge: "br5000".into(),
            l3_vxlan: "vx5000".into(),
        }]
    );
    assert_eq!(view.installed(), (0, 0, 1));
    view.change(&key, None, &mut ops);
    assert_eq!(
        std::mem::take(&mut ops),
        vec![EvpnOp::RemovePrefix {
            vrf: "vrf-red".into(),
            table: 10,
            prefix: net
        }]
    );
    // A tenant removed takes its prefixes out of the kernel.
    view.change(&key, view.read(&path), &mut ops);
    ops.clear();
    view.set_tenants(&[], &mut ops);
    assert_eq!(
        ops,
        vec![EvpnOp::RemovePrefix {
            vrf: "vrf-red".into(),
            table: 10,
            prefix: net
        }]
    );
}
