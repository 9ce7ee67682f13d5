//! The fuzz target's seed corpus, `fuzz/corpus/bgp_decode/`: valid messages of every kind, made
//! by the encoder, one file each. `ZTOS_UPDATE_GOLDEN=1` (`just update-golden`) rewrites the
//! directory; otherwise the test fails when the checked-in files are not exactly these, so the
//! seeds follow the codec. Every seed must decode cleanly under the context it was encoded for
//! and re-encode to the same bytes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::{four_octet, hex, round_trip};
use crate::{
    AddPathDirection, AddPathFamilies, Aggregator, AsPath, AsSegment, AsSegmentKind, Asn,
    Capability, Community, Context, EthernetAutoDiscovery, EthernetSegment, EthernetSegmentId,
    EvpnRoute, ExtendedCommunity, Family, GracefulRestart, InclusiveMulticast, IpPrefix,
    IpPrefixRoute, Ipv4Prefix, Ipv6Prefix, Label, LargeCommunity, MacAddress, MacIpAdvertisement,
    Message, MpReach, MpUnreach, NextHop, NlriEntry, NlriList, Notification, Open,
    OptionalParameter, Origin, PathAttributes, PathId, PmsiTunnel, PmsiTunnelId, RawAttribute,
    RouteDistinguisher, RouteRefresh, Update, Vni, AS_TRANS,
};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/bgp_decode")
}

fn v4(text: &str, len: u8) -> Ipv4Prefix {
    Ipv4Prefix::new(text.parse().expect("IPv4 literal"), len).expect("IPv4 prefix")
}

fn v6(text: &str, len: u8) -> Ipv6Prefix {
    Ipv6Prefix::new(text.parse().expect("IPv6 literal"), len).expect("IPv6 prefix")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("IP literal")
}

fn vni(value: u32) -> Label {
    Label::from_vni(Vni::new(value).expect("24-bit VNI"))
}

fn rd_ipv4(addr: [u8; 4], assigned: u16) -> RouteDistinguisher {
    RouteDistinguisher::Ipv4 {
        addr: Ipv4Addr::from(addr),
        assigned,
    }
}

const ESI: EthernetSegmentId =
    EthernetSegmentId([0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99]);
const MAC: MacAddress = MacAddress([0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc]);

fn base_attributes(asns: &[u32]) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(asns.iter().map(|&a| Asn(a)).collect())),
        ..PathAttributes::default()
    }
}

/// EVPN over VXLAN's communities: a route target, the VXLAN encapsulation, the router's MAC.
fn evpn_communities(asn: u16, assigned: u32) -> Vec<ExtendedCommunity> {
    vec![
        ExtendedCommunity::RouteTargetAs2 { asn, assigned },
        ExtendedCommunity::Encapsulation { tunnel_type: 8 },
        ExtendedCommunity::RouterMac { mac: MAC },
    ]
}

fn evpn_update(routes: Vec<EvpnRoute>, attributes: PathAttributes, path_ids: bool) -> Message {
    let nlri = routes
        .into_iter()
        .enumerate()
        .map(|(i, nlri)| NlriEntry {
            path_id: path_ids.then_some(PathId(i as u32 + 1)),
            nlri,
        })
        .collect();
    Message::Update(Update {
        attributes,
        mp_reach: Some(MpReach {
            next_hop: NextHop::Ipv4(Ipv4Addr::new(10, 0, 0, 1)),
            nlri: NlriList::Evpn(nlri),
        }),
        ..Update::default()
    })
}

fn mac_ip(ip: Option<IpAddr>, label2: Option<Label>) -> EvpnRoute {
    EvpnRoute::MacIp(MacIpAdvertisement {
        rd: rd_ipv4([10, 0, 0, 1], 2),
        esi: EthernetSegmentId([0; 10]),
        ethernet_tag: 0,
        mac: MAC,
        ip,
        label1: vni(100),
        label2,
    })
}

fn capabilities_open() -> Message {
    Message::Open(Open::new(
        Asn(4_200_000_000),
        180,
        Ipv4Addr::new(10, 0, 0, 1),
        vec![
            Capability::Multiprotocol {
                family: Family::IPV4_UNICAST,
            },
            Capability::Multiprotocol {
                family: Family::IPV6_UNICAST,
            },
            Capability::Multiprotocol {
                family: Family::L2VPN_EVPN,
            },
            Capability::RouteRefresh,
            Capability::ExtendedMessage,
            Capability::GracefulRestart(GracefulRestart {
                flags: GracefulRestart::RESTART_STATE | GracefulRestart::NOTIFICATION,
                restart_time: 120,
                families: vec![
                    (Family::IPV4_UNICAST, GracefulRestart::FORWARDING_PRESERVED),
                    (Family::L2VPN_EVPN, 0),
                ],
            }),
            Capability::AddPath {
                families: vec![
                    (Family::IPV4_UNICAST, AddPathDirection::Both),
                    (Family::IPV6_UNICAST, AddPathDirection::Receive),
                    (Family::L2VPN_EVPN, AddPathDirection::Send),
                ],
            },
            Capability::Unknown {
                code: 70,
                value: Vec::new(),
            },
            Capability::Unknown {
                code: 73,
                value: b"\x04leaf".to_vec(),
            },
        ],
    ))
}

/// Capabilities one per optional parameter (how older speakers send them), two-octet AS.
fn split_parameters_open() -> Message {
    let capabilities = [
        Capability::Multiprotocol {
            family: Family::IPV4_UNICAST,
        },
        Capability::RouteRefresh,
        Capability::GracefulRestart(GracefulRestart {
            flags: 0,
            restart_time: 90,
            families: Vec::new(),
        }),
    ];
    Message::Open(Open {
        my_as: 65001,
        hold_time: 90,
        bgp_identifier: Ipv4Addr::new(192, 0, 2, 1),
        parameters: capabilities
            .into_iter()
            .map(|c| OptionalParameter::Capabilities(vec![c]))
            .collect(),
    })
}

fn full_ipv4_update() -> Message {
    Message::Update(Update {
        withdrawn: vec![
            NlriEntry::new(v4("10.9.0.0", 16)),
            NlriEntry::new(v4("0.0.0.0", 0)),
        ],
        attributes: PathAttributes {
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            med: Some(10),
            local_pref: Some(200),
            communities: vec![Community(0xfde9_0064), Community(0xffff_ff01)],
            originator_id: Some(Ipv4Addr::new(10, 0, 0, 9)),
            cluster_list: vec![Ipv4Addr::new(10, 0, 0, 8), Ipv4Addr::new(10, 0, 0, 7)],
            large_communities: vec![LargeCommunity {
                global_admin: 4_200_000_000,
                local_data1: 1,
                local_data2: 2,
            }],
            unknown: vec![
                RawAttribute {
                    flags: 0xc0,
                    type_code: 99,
                    value: vec![0xab, 0xcd],
                },
                RawAttribute {
                    flags: 0x80,
                    type_code: 200,
                    value: vec![0x01; 300],
                },
            ],
            ..base_attributes(&[4_200_000_001, 65002])
        },
        nlri: vec![
            NlriEntry::new(v4("192.168.10.0", 24)),
            NlriEntry::new(v4("10.1.2.3", 32)),
            NlriEntry::new(v4("172.16.0.0", 12)),
        ],
        ..Update::default()
    })
}

/// A two-octet session carrying a four-octet path: AS_TRANS in AS_PATH, the real ASes in
/// AS4_PATH, an aggregator pair, sets and confederation segments.
fn two_octet_as4_update() -> Message {
    let trans = AS_TRANS;
    Message::Update(Update {
        attributes: PathAttributes {
            origin: Some(Origin::Incomplete),
            as_path: Some(AsPath {
                segments: vec![
                    AsSegment {
                        kind: AsSegmentKind::ConfedSequence,
                        asns: vec![Asn(65100)],
                    },
                    AsSegment {
                        kind: AsSegmentKind::Sequence,
                        asns: vec![Asn(65001), trans],
                    },
                    AsSegment {
                        kind: AsSegmentKind::Set,
                        asns: vec![Asn(65003), Asn(65004)],
                    },
                    AsSegment {
                        kind: AsSegmentKind::ConfedSet,
                        asns: vec![Asn(65101)],
                    },
                ],
            }),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 2)),
            atomic_aggregate: true,
            aggregator: Some(Aggregator {
                asn: trans,
                address: Ipv4Addr::new(10, 0, 0, 2),
            }),
            as4_path: Some(AsPath::sequence(vec![Asn(65001), Asn(4_200_000_000)])),
            as4_aggregator: Some(Aggregator {
                asn: Asn(4_200_000_000),
                address: Ipv4Addr::new(10, 0, 0, 2),
            }),
            ..PathAttributes::default()
        },
        nlri: vec![NlriEntry::new(v4("198.51.100.0", 24))],
        ..Update::default()
    })
}

fn add_path_ipv4_update() -> Message {
    Message::Update(Update {
        withdrawn: vec![NlriEntry {
            path_id: Some(PathId(7)),
            nlri: v4("10.9.0.0", 16),
        }],
        attributes: PathAttributes {
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..base_attributes(&[65001])
        },
        nlri: (1..=3)
            .map(|id| NlriEntry {
                path_id: Some(PathId(id)),
                nlri: v4("192.168.10.0", 24),
            })
            .collect(),
        ..Update::default()
    })
}

fn ipv6_update(path_ids: bool) -> Message {
    let entry = |id: u32, nlri: Ipv6Prefix| NlriEntry {
        path_id: path_ids.then_some(PathId(id)),
        nlri,
    };
    Message::Update(Update {
        attributes: PathAttributes {
            med: Some(0),
            ..base_attributes(&[65001, 65002, 65003])
        },
        mp_reach: Some(MpReach {
            next_hop: NextHop::Ipv6 {
                global: "2001:db8::1".parse().expect("IPv6 literal"),
                link_local: Some("fe80::1".parse().expect("IPv6 literal")),
            },
            nlri: NlriList::Ipv6(vec![
                entry(1, v6("2001:db8:1::", 48)),
                entry(2, v6("2001:db8:2:3::", 64)),
                entry(3, v6("::", 0)),
                entry(4, v6("2001:db8::5", 128)),
            ]),
        }),
        mp_unreach: Some(MpUnreach {
            withdrawn: NlriList::Ipv6(vec![entry(9, v6("2001:db8:9::", 48))]),
        }),
        ..Update::default()
    })
}

fn ipv6_withdraw() -> Message {
    Message::Update(Update {
        mp_unreach: Some(MpUnreach {
            withdrawn: NlriList::Ipv6(vec![
                NlriEntry::new(v6("2001:db8:1::", 48)),
                NlriEntry::new(v6("2001:db8:ffff::", 47)),
            ]),
        }),
        ..Update::default()
    })
}

/// RFC 8950: IPv4 routes with an IPv6 next hop, in MP_REACH.
fn ipv4_over_ipv6_next_hop() -> Message {
    Message::Update(Update {
        attributes: base_attributes(&[65001]),
        mp_reach: Some(MpReach {
            next_hop: NextHop::Ipv6 {
                global: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
                link_local: None,
            },
            nlri: NlriList::Ipv4(vec![NlriEntry::new(v4("10.20.0.0", 16))]),
        }),
        ..Update::default()
    })
}

/// A family the codec keeps opaque (VPNv4, SAFI 128) and other route distinguisher and
/// extended community kinds.
fn opaque_family_update() -> Message {
    Message::Update(Update {
        attributes: PathAttributes {
            extended_communities: vec![
                ExtendedCommunity::RouteTargetIpv4 {
                    addr: Ipv4Addr::new(10, 0, 0, 1),
                    assigned: 5,
                },
                ExtendedCommunity::RouteTargetAs4 {
                    asn: 4_200_000_000,
                    assigned: 6,
                },
                ExtendedCommunity::Unknown {
                    bytes: [0x80, 0x06, 0, 0, 0, 0, 0, 1],
                },
            ],
            ..base_attributes(&[65001])
        },
        mp_reach: Some(MpReach {
            next_hop: NextHop::Other(hex("0000000000000000 0a000001")),
            nlri: NlriList::Other {
                family: Family::new(1, 128),
                bytes: hex("70 000641 0000fde900000001 0a0a00"),
            },
        }),
        ..Update::default()
    })
}

fn evpn_type1() -> Message {
    evpn_update(
        vec![EvpnRoute::EthernetAutoDiscovery(EthernetAutoDiscovery {
            rd: RouteDistinguisher::As2 {
                asn: 65001,
                assigned: 1,
            },
            esi: ESI,
            ethernet_tag: u32::MAX,
            label: vni(0),
        })],
        PathAttributes {
            extended_communities: vec![
                ExtendedCommunity::RouteTargetAs2 {
                    asn: 65001,
                    assigned: 100,
                },
                ExtendedCommunity::Encapsulation { tunnel_type: 8 },
            ],
            ..base_attributes(&[65001])
        },
        false,
    )
}

fn evpn_type2(path_ids: bool) -> Message {
    evpn_update(
        vec![
            mac_ip(None, None),
            mac_ip(Some(ip("192.168.10.5")), None),
            mac_ip(Some(ip("192.168.10.6")), Some(vni(5000))),
            mac_ip(Some(ip("2001:db8::6")), Some(vni(5000))),
        ],
        PathAttributes {
            extended_communities: {
                let mut c = evpn_communities(65001, 100);
                c.push(ExtendedCommunity::MacMobility {
                    sticky: true,
                    sequence: 3,
                });
                c
            },
            ..base_attributes(&[65001])
        },
        path_ids,
    )
}

fn evpn_type3(originator: &str, endpoint: &str) -> Message {
    evpn_update(
        vec![EvpnRoute::InclusiveMulticast(InclusiveMulticast {
            rd: rd_ipv4([10, 0, 0, 1], 2),
            ethernet_tag: 0,
            originator: ip(originator),
        })],
        PathAttributes {
            extended_communities: evpn_communities(65001, 100),
            pmsi_tunnel: Some(PmsiTunnel {
                flags: 0,
                label: vni(100),
                tunnel: PmsiTunnelId::IngressReplication {
                    endpoint: ip(endpoint),
                },
            }),
            ..base_attributes(&[65001])
        },
        false,
    )
}

fn evpn_type3_other_tunnel() -> Message {
    evpn_update(
        vec![EvpnRoute::InclusiveMulticast(InclusiveMulticast {
            rd: RouteDistinguisher::As4 {
                asn: 4_200_000_000,
                assigned: 100,
            },
            ethernet_tag: 100,
            originator: ip("10.0.0.1"),
        })],
        PathAttributes {
            pmsi_tunnel: Some(PmsiTunnel {
                flags: 1,
                label: vni(100),
                tunnel: PmsiTunnelId::Other {
                    code: 3,
                    identifier: hex("0a000001 e8000001"),
                },
            }),
            ..base_attributes(&[65001])
        },
        false,
    )
}

fn evpn_type4() -> Message {
    evpn_update(
        vec![
            EvpnRoute::EthernetSegment(EthernetSegment {
                rd: rd_ipv4([10, 0, 0, 1], 0),
                esi: ESI,
                originator: ip("10.0.0.1"),
            }),
            EvpnRoute::EthernetSegment(EthernetSegment {
                rd: rd_ipv4([10, 0, 0, 1], 0),
                esi: ESI,
                originator: ip("2001:db8::1"),
            }),
        ],
        PathAttributes {
            extended_communities: vec![ExtendedCommunity::Unknown {
                bytes: [0x06, 0x02, 0, 0x11, 0x22, 0x33, 0x44, 0x55],
            }],
            ..base_attributes(&[65001])
        },
        false,
    )
}

fn evpn_type5() -> Message {
    let route = |prefix: IpPrefix, gateway: &str| {
        EvpnRoute::IpPrefix(IpPrefixRoute {
            rd: rd_ipv4([10, 0, 0, 1], 5),
            esi: EthernetSegmentId([0; 10]),
            ethernet_tag: 0,
            prefix,
            gateway: ip(gateway),
            label: vni(5000),
        })
    };
    evpn_update(
        vec![
            route(IpPrefix::V4(v4("192.168.20.0", 24)), "0.0.0.0"),
            route(IpPrefix::V6(v6("2001:db8:20::", 64)), "::"),
        ],
        PathAttributes {
            extended_communities: evpn_communities(65001, 5000),
            ..base_attributes(&[65001])
        },
        false,
    )
}

fn evpn_unknown_type() -> Message {
    evpn_update(
        vec![EvpnRoute::Unknown {
            code: 11,
            value: hex("0001 0a000001 0002 00000064"),
        }],
        base_attributes(&[65001]),
        false,
    )
}

fn evpn_withdraw() -> Message {
    Message::Update(Update {
        mp_unreach: Some(MpUnreach {
            withdrawn: NlriList::Evpn(vec![
                NlriEntry::new(mac_ip(Some(ip("192.168.10.5")), None)),
                NlriEntry::new(EvpnRoute::InclusiveMulticast(InclusiveMulticast {
                    rd: rd_ipv4([10, 0, 0, 1], 2),
                    ethernet_tag: 0,
                    originator: ip("10.0.0.1"),
                })),
            ]),
        }),
        ..Update::default()
    })
}

/// An UPDATE over 4096 bytes: only valid with the extended message capability.
fn extended_update() -> Message {
    let nlri = (0..1100u32)
        .map(|i| {
            NlriEntry::new(Ipv4Prefix::new(Ipv4Addr::from(0x0a00_0000 | i << 8), 24).expect("/24"))
        })
        .collect();
    Message::Update(Update {
        attributes: PathAttributes {
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..base_attributes(&[65001])
        },
        nlri,
        ..Update::default()
    })
}

/// The seeds: file name, the context the message is encoded under, the message.
fn seeds() -> Vec<(&'static str, Context, Message)> {
    let default = Context::default();
    let modern = Context::MODERN;
    let add_path = Context {
        add_path: AddPathFamilies::NONE
            .with(Family::IPV4_UNICAST)
            .with(Family::IPV6_UNICAST)
            .with(Family::L2VPN_EVPN),
        ..four_octet()
    };
    let notification = |code, subcode, data: &[u8]| {
        Message::Notification(Notification::new(code, subcode, data.to_vec()))
    };
    let route_refresh = |family, subtype| Message::RouteRefresh(RouteRefresh { family, subtype });
    vec![
        ("keepalive", default, Message::Keepalive),
        (
            "notification-cease-shutdown",
            default,
            notification(6, 2, b"\x08shutdown"),
        ),
        (
            "notification-bad-length",
            default,
            notification(1, 2, &[0x10, 0x01]),
        ),
        (
            "notification-update-error",
            default,
            notification(3, 9, &hex("800e03000101")),
        ),
        ("notification-hold-timer", default, notification(4, 0, &[])),
        (
            "route-refresh-ipv4",
            default,
            route_refresh(Family::IPV4_UNICAST, 0),
        ),
        (
            "route-refresh-ipv6-borr",
            default,
            route_refresh(Family::IPV6_UNICAST, 1),
        ),
        (
            "route-refresh-evpn-eorr",
            default,
            route_refresh(Family::L2VPN_EVPN, 2),
        ),
        (
            "open-no-parameters",
            default,
            Message::Open(Open {
                my_as: 65001,
                hold_time: 0,
                bgp_identifier: Ipv4Addr::new(10, 0, 0, 2),
                parameters: Vec::new(),
            }),
        ),
        ("open-capabilities", default, capabilities_open()),
        ("open-split-parameters", default, split_parameters_open()),
        ("update-ipv4-full", modern, full_ipv4_update()),
        ("update-ipv4-two-octet-as4", default, two_octet_as4_update()),
        ("update-ipv4-add-path", add_path, add_path_ipv4_update()),
        (
            "update-ipv4-ipv6-next-hop",
            modern,
            ipv4_over_ipv6_next_hop(),
        ),
        (
            "update-ipv4-end-of-rib",
            default,
            Message::Update(Update::end_of_rib(Family::IPV4_UNICAST)),
        ),
        ("update-ipv6", modern, ipv6_update(false)),
        ("update-ipv6-add-path", add_path, ipv6_update(true)),
        ("update-ipv6-withdraw", modern, ipv6_withdraw()),
        (
            "update-ipv6-end-of-rib",
            modern,
            Message::Update(Update::end_of_rib(Family::IPV6_UNICAST)),
        ),
        ("update-vpnv4-opaque", modern, opaque_family_update()),
        ("update-evpn-type1", modern, evpn_type1()),
        ("update-evpn-type2", modern, evpn_type2(false)),
        ("update-evpn-type2-add-path", add_path, evpn_type2(true)),
        (
            "update-evpn-type3-pmsi-v4",
            modern,
            evpn_type3("10.0.0.1", "10.0.0.1"),
        ),
        (
            "update-evpn-type3-pmsi-v6",
            modern,
            evpn_type3("2001:db8::1", "2001:db8::1"),
        ),
        (
            "update-evpn-type3-pmsi-other",
            modern,
            evpn_type3_other_tunnel(),
        ),
        ("update-evpn-type4", modern, evpn_type4()),
        ("update-evpn-type5", modern, evpn_type5()),
        ("update-evpn-unknown-type", modern, evpn_unknown_type()),
        ("update-evpn-withdraw", modern, evpn_withdraw()),
        (
            "update-evpn-end-of-rib",
            modern,
            Message::Update(Update::end_of_rib(Family::L2VPN_EVPN)),
        ),
        ("update-extended-message", modern, extended_update()),
    ]
}

/// Every seed as (file name, bytes), each checked to decode back to itself.
fn corpus() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (name, ctx, message) in seeds() {
        let bytes = message
            .to_bytes(&ctx)
            .unwrap_or_else(|e| panic!("seed {name} does not encode: {e}"));
        assert_eq!(round_trip(&bytes, &ctx), message, "seed {name}");
        assert!(
            files.insert(format!("{name}.bin"), bytes).is_none(),
            "two seeds named {name}"
        );
    }
    // A real OPEN as FRR sends it, captured from the wire.
    files.insert(
        "open-frr-captured.bin".to_string(),
        hex(super::open::FRR_OPEN_FOR_FUZZ),
    );
    files
}

#[test]
fn golden_fuzz_corpus_is_current() {
    let dir = corpus_dir();
    let files = corpus();
    if std::env::var_os("ZTOS_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove the old corpus");
        }
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
        for (name, bytes) in &files {
            std::fs::write(dir.join(name), bytes).expect("write a corpus file");
        }
        return;
    }
    let stale = || {
        format!(
            "{} is out of date: run `ZTOS_UPDATE_GOLDEN=1 cargo test -p ztos-bgp --lib golden_fuzz_corpus` and commit it",
            dir.display()
        )
    };
    let mut on_disk = BTreeMap::new();
    for entry in
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}; {}", dir.display(), stale()))
    {
        let path = entry.expect("corpus directory entry").path();
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        on_disk.insert(name, std::fs::read(&path).expect("read a corpus file"));
    }
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&on_disk), names(&files), "{}", stale());
    for (name, bytes) in &files {
        assert!(on_disk[name] == *bytes, "{name} differs; {}", stale());
    }
}
