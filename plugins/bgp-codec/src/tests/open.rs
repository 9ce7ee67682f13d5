//! OPEN messages as FRR and GoBGP send them.

use std::net::Ipv4Addr;

use super::{hex, round_trip};
use crate::{
    negotiate, AddPathDirection, Asn, Capability, Context, EncodeError, Family, GracefulRestart,
    Message, Open, OptionalParameter, AS_TRANS,
};

/// FRR style: every capability in one optional parameter.
pub(crate) const FRR_OPEN_FOR_FUZZ: &str = FRR_OPEN;

const FRR_OPEN: &str = "
    ffffffffffffffffffffffffffffffff
    004e                # length 78
    01                  # OPEN
    04                  # version 4
    5ba0                # my AS: AS_TRANS (23456), the real AS is in capability 65
    00b4                # hold time 180
    0a000001            # BGP identifier 10.0.0.1
    31                  # optional parameters length 49
    02 2f               # parameter 2 (capabilities), length 47
      01 04 0001 00 01  # multiprotocol IPv4 unicast
      01 04 0019 00 46  # multiprotocol L2VPN EVPN
      02 00             # route refresh
      41 04 fa56ea00    # four-octet AS 4200000000
      45 04 0001 01 03  # add-path IPv4 unicast, send and receive
      40 06 4078        # graceful restart: N bit, restart time 120
            0001 01 80  #   IPv4 unicast, forwarding preserved
      06 00             # extended message
      46 00             # enhanced route refresh (70): kept as unknown
      49 07 05 6c656166 31 00  # FQDN (73): hostname leaf1, no domain: kept as unknown
";

#[test]
fn frr_open_decodes_and_re_encodes() {
    let bytes = hex(FRR_OPEN);
    let Message::Open(open) = round_trip(&bytes, &Context::default()) else {
        panic!("not an OPEN")
    };
    assert_eq!(open.my_as, AS_TRANS.0 as u16);
    assert_eq!(open.asn(), Asn(4_200_000_000));
    assert_eq!(open.hold_time, 180);
    assert_eq!(open.bgp_identifier, Ipv4Addr::new(10, 0, 0, 1));
    let caps: Vec<&Capability> = open.capabilities().collect();
    assert_eq!(caps.len(), 9);
    assert_eq!(
        caps[1],
        &Capability::Multiprotocol {
            family: Family::L2VPN_EVPN
        }
    );
    assert_eq!(
        caps[4],
        &Capability::AddPath {
            families: vec![(Family::IPV4_UNICAST, AddPathDirection::Both)]
        }
    );
    assert_eq!(
        caps[5],
        &Capability::GracefulRestart(GracefulRestart {
            flags: GracefulRestart::NOTIFICATION,
            restart_time: 120,
            families: vec![(Family::IPV4_UNICAST, GracefulRestart::FORWARDING_PRESERVED)],
        })
    );
    assert_eq!(
        caps[7],
        &Capability::Unknown {
            code: 70,
            value: vec![]
        }
    );
    assert_eq!(
        caps[8],
        &Capability::Unknown {
            code: 73,
            value: hex("05 6c656166 31 00")
        }
    );
}

#[test]
fn gobgp_style_one_capability_per_parameter_round_trips() {
    let bytes = hex("ffffffffffffffffffffffffffffffff
         0031                # length 49
         01 04 fde9 005a c0000201
         14                  # optional parameters length 20
         02 06 01 04 0002 00 01   # parameter: multiprotocol IPv6 unicast
         02 06 41 04 0000fde9     # parameter: four-octet AS 65001
         02 02 02 00              # parameter: route refresh");
    let Message::Open(open) = round_trip(&bytes, &Context::default()) else {
        panic!("not an OPEN")
    };
    assert_eq!(open.parameters.len(), 3);
    assert_eq!(open.asn(), Asn(65001));
    assert_eq!(open.hold_time, 90);
}

#[test]
fn negotiation_sets_the_context_of_each_direction() {
    let ours = Open::new(
        Asn(65001),
        90,
        Ipv4Addr::new(10, 0, 0, 1),
        vec![
            Capability::Multiprotocol {
                family: Family::L2VPN_EVPN,
            },
            Capability::ExtendedMessage,
            Capability::AddPath {
                families: vec![
                    (Family::IPV4_UNICAST, AddPathDirection::Receive),
                    (Family::IPV6_UNICAST, AddPathDirection::Both),
                ],
            },
        ],
    );
    let Message::Open(theirs) = round_trip(&hex(FRR_OPEN), &Context::default()) else {
        panic!("not an OPEN")
    };
    let n = negotiate(&ours, &theirs);
    assert!(n.receive.four_octet_as && n.send.four_octet_as);
    assert!(n.receive.extended_message);
    // We receive IPv4 paths (they send both ways); they did not offer IPv6 add-path.
    assert!(n.receive.add_path.contains(Family::IPV4_UNICAST));
    assert!(!n.send.add_path.contains(Family::IPV4_UNICAST));
    assert!(!n.receive.add_path.contains(Family::IPV6_UNICAST));
    // Without the capability on one side, nothing extended.
    let plain = Open::new(Asn(65002), 90, Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let n = negotiate(&plain, &theirs);
    assert!(!n.send.extended_message && n.send.four_octet_as);
}

#[test]
fn open_new_puts_as_trans_in_my_as_and_an_oversized_open_is_refused() {
    let open = Open::new(Asn(4_200_000_000), 90, Ipv4Addr::new(1, 1, 1, 1), vec![]);
    assert_eq!(open.my_as, 23456);
    let bytes = Message::Open(open.clone())
        .to_bytes(&Context::default())
        .unwrap();
    assert_eq!(bytes.len(), 19 + 10 + 2 + 6);
    let big = Open {
        parameters: vec![OptionalParameter::Capabilities(vec![Capability::Unknown {
            code: 200,
            value: vec![0; 254],
        }])],
        ..open
    };
    assert_eq!(
        Message::Open(big).to_bytes(&Context::default()),
        Err(EncodeError::FieldTooLong {
            field: "capabilities parameter",
            length: 256
        })
    );
}
