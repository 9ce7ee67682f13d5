//! Malformed input and its outcome: a NOTIFICATION (session reset) where RFC 4271 / RFC 7606
//! require one, treat-as-withdraw or attribute discard where RFC 7606 allows the session to live.

use super::{four_octet, hex, message, update};
use crate::{
    decode_message, Context, DecodeError, Family, Ipv4Prefix, Message, NlriEntry, NlriList,
    Received,
};

const MANDATORY: &str = "40 01 01 00  40 02 00  40 03 04 0a000001";
const NLRI: &str = "18 0a0101   # 10.1.1.0/24";

fn reset(bytes: &[u8], ctx: &Context) -> DecodeError {
    match decode_message(bytes, ctx) {
        Err(e) => e,
        Ok(r) => panic!("expected a session reset, got {r:?}"),
    }
}

fn code(bytes: &[u8], ctx: &Context) -> (u8, u8) {
    let e = reset(bytes, ctx);
    (e.notification.code, e.notification.subcode)
}

/// Expects treat-as-withdraw; returns the withdrawn lists and the problem texts.
fn withdraw(bytes: &[u8]) -> (Vec<NlriList>, Vec<String>) {
    match decode_message(bytes, &four_octet()) {
        Ok(Received::TreatAsWithdraw(t)) => (
            t.withdrawn,
            t.problems.iter().map(ToString::to_string).collect(),
        ),
        other => panic!("expected treat-as-withdraw, got {other:?}"),
    }
}

fn with_attributes(attributes: &str) -> Vec<u8> {
    update(&[], &hex(attributes), &hex(NLRI))
}

fn nlri_list() -> NlriList {
    NlriList::Ipv4(vec![NlriEntry::new(
        Ipv4Prefix::new("10.1.1.0".parse().unwrap(), 24).unwrap(),
    )])
}

#[test]
fn header_errors_are_message_header_notifications() {
    let ctx = Context::default();
    let mut bad_marker = message(4, &[]);
    bad_marker[3] = 0;
    assert_eq!(code(&bad_marker, &ctx), (1, 1));
    // Length field 18, shorter than a header; data is the length field.
    let mut short = message(4, &[]);
    short[17] = 18;
    let e = reset(&short, &ctx);
    assert_eq!((e.notification.code, e.notification.subcode), (1, 2));
    assert_eq!(e.notification.data, vec![0, 18]);
    // An UPDATE of 5000 bytes without the extended message capability, and with it.
    let big = update(&[], &[], &[0; 5000 - 23]);
    assert_eq!(code(&big, &ctx), (1, 2));
    let extended = Context {
        extended_message: true,
        ..Context::default()
    };
    assert!(decode_message(&big, &extended).is_ok());
    // ... but an OPEN never exceeds 4096 (RFC 8654 §3).
    let big_open = message(1, &vec![0; 4200]);
    assert_eq!(code(&big_open, &extended), (1, 2));
    assert_eq!(code(&message(9, &[]), &ctx), (1, 3));
    assert_eq!(code(&message(4, &[0]), &ctx), (1, 2));
    assert_eq!(code(&message(2, &[0, 0]), &ctx), (1, 2));
    assert_eq!(code(&message(3, &[6]), &ctx), (1, 2));
    // ROUTE-REFRESH of the wrong length: RFC 7313 §5, data is the whole message.
    let rr = message(5, &[0, 1, 0, 1, 0]);
    let e = reset(&rr, &ctx);
    assert_eq!((e.notification.code, e.notification.subcode), (7, 1));
    assert_eq!(e.notification.data, rr);
    // Fewer bytes than the length field says.
    let mut truncated = message(4, &[]);
    truncated.pop();
    assert_eq!(code(&truncated, &ctx), (1, 2));
}

#[test]
fn open_errors() {
    let ctx = Context::default();
    let open = |body: &str| message(1, &hex(body));
    let e = reset(&open("03 fde9 005a 0a000001 00"), &ctx);
    assert_eq!((e.notification.code, e.notification.subcode), (2, 1));
    assert_eq!(e.notification.data, vec![0, 4]);
    assert_eq!(e.reason, "BGP version 3 is not 4");
    assert_eq!(code(&open("04 fde9 0002 0a000001 00"), &ctx), (2, 6));
    assert_eq!(code(&open("04 fde9 005a 00000000 00"), &ctx), (2, 3));
    assert_eq!(
        code(&open("04 fde9 005a 0a000001 03 01 01 00"), &ctx),
        (2, 4)
    );
    // Parameter length running past the OPEN, capability length running past its parameter.
    assert_eq!(
        code(&open("04 fde9 005a 0a000001 04 02 05 0200"), &ctx),
        (2, 0)
    );
    assert_eq!(
        code(&open("04 fde9 005a 0a000001 04 02 02 4104"), &ctx),
        (2, 0)
    );
    // Four-octet AS capability of length 2.
    let e = reset(&open("04 fde9 005a 0a000001 06 02 04 4102 fde9"), &ctx);
    assert_eq!(e.reason, "capability 65: length 2 is not 4");
    // Add-path with send/receive 4.
    assert_eq!(
        code(
            &open("04 fde9 005a 0a000001 08 02 06 4504 0001 01 04"),
            &ctx
        ),
        (2, 0)
    );
}

#[test]
fn update_lengths_that_contradict_the_message_reset_the_session() {
    let ctx = four_octet();
    // Withdrawn routes length 10 with 4 bytes of body left.
    assert_eq!(code(&message(2, &hex("000a 0000 0000")), &ctx), (3, 1));
    // Total path attribute length 9 with 3 bytes left.
    assert_eq!(code(&message(2, &hex("0000 0009 400101")), &ctx), (3, 1));
    // NLRI /33 and truncated NLRI: Invalid Network Field.
    assert_eq!(
        code(&update(&[], &hex(MANDATORY), &hex("21 0a010101 01")), &ctx),
        (3, 10)
    );
    assert_eq!(
        code(&update(&[], &hex(MANDATORY), &hex("18 0a01")), &ctx),
        (3, 10)
    );
    assert_eq!(code(&update(&hex("20 0a"), &[], &[]), &ctx), (3, 10));
}

#[test]
fn per_attribute_treat_as_withdraw() {
    let cases = [
        (
            "40 01 01 03  40 02 00  40 03 04 0a000001",
            "attribute 1: ORIGIN value 3 is not 0, 1 or 2",
        ),
        (
            "40 01 02 0000  40 02 00  40 03 04 0a000001",
            "attribute 1: ORIGIN length 2 is not 1",
        ),
        (
            "40 01 01 00  40 02 04 07 01 0001  40 03 04 0a000001",
            "attribute 2: AS path segment type 7 is not 1 to 4",
        ),
        (
            "40 01 01 00  40 02 03 02 01 00  40 03 04 0a000001",
            "attribute 2: AS path segment of 1 AS numbers needs 4 bytes, 1 left",
        ),
        (
            "40 01 01 00  40 02 00  40 03 05 0a00000100",
            "attribute 3: NEXT_HOP length 5 is not 4",
        ),
        (
            &format!("{MANDATORY} 80 04 03 000001"),
            "attribute 4: MULTI_EXIT_DISC length 3 is not 4",
        ),
        (
            &format!("{MANDATORY} 40 05 02 0001"),
            "attribute 5: LOCAL_PREF length 2 is not 4",
        ),
        (
            &format!("{MANDATORY} c0 08 05 0000000001"),
            "attribute 8: COMMUNITIES length 5 is not a non-zero multiple of 4",
        ),
        (
            &format!("{MANDATORY} c0 08 00"),
            "attribute 8: COMMUNITIES length 0 is not a non-zero multiple of 4",
        ),
        (
            &format!("{MANDATORY} 80 09 03 0a0000"),
            "attribute 9: ORIGINATOR_ID length 3 is not 4",
        ),
        (
            &format!("{MANDATORY} 80 0a 06 0a0000010a00"),
            "attribute 10: CLUSTER_LIST length 6 is not a non-zero multiple of 4",
        ),
        (
            &format!("{MANDATORY} c0 10 07 00020000000001"),
            "attribute 16: EXTENDED_COMMUNITIES length 7 is not a non-zero multiple of 8",
        ),
        (
            &format!("{MANDATORY} c0 16 03 000600"),
            "attribute 22: PMSI_TUNNEL length 3 is less than 5",
        ),
        (
            &format!("{MANDATORY} c0 16 07 0006000064 0a00"),
            "attribute 22: PMSI_TUNNEL ingress replication endpoint of 2 bytes is not 4 or 16",
        ),
        (
            &format!("{MANDATORY} c0 20 0b 0000fde900000001000000"),
            "attribute 32: LARGE_COMMUNITIES length 11 is not a non-zero multiple of 12",
        ),
        // Wrong flags: ORIGIN marked optional, MED marked transitive.
        (
            "c0 01 01 00  40 02 00  40 03 04 0a000001",
            "attribute 1: flags 0xc0 conflict with the attribute's definition (0x40)",
        ),
        (
            &format!("{MANDATORY} c0 04 04 00000001"),
            "attribute 4: flags 0xc0 conflict with the attribute's definition (0x80)",
        ),
        // Missing well-known mandatory attributes.
        (
            "40 02 00  40 03 04 0a000001",
            "attribute 1: well-known mandatory attribute ORIGIN missing",
        ),
        (
            "40 01 01 00  40 03 04 0a000001",
            "attribute 2: well-known mandatory attribute AS_PATH missing",
        ),
        (
            "40 01 01 00  40 02 00",
            "attribute 3: well-known mandatory attribute NEXT_HOP missing",
        ),
        // The last attribute runs past the attribute list (RFC 7606 §4).
        (
            "40 01 01 00  40 02 00  40 03 08 0a000001",
            "attribute 3: attribute length 8 exceeds the 4 bytes left in the attribute list",
        ),
        (
            "40 01 01 00  40 02 00  40 03 04 0a000001 40",
            "attribute 0: attribute header truncated",
        ),
    ];
    for (attributes, problem) in cases {
        let (withdrawn, problems) = withdraw(&with_attributes(attributes));
        assert_eq!(withdrawn, vec![nlri_list()], "{problem}");
        assert_eq!(problems, vec![problem.to_string()]);
    }
}

#[test]
fn treat_as_withdraw_withdraws_every_family_in_the_update() {
    // A bad ORIGIN on an UPDATE carrying withdrawn IPv4, IPv4 NLRI and an EVPN type 3 route.
    let bytes = update(
        &hex("10 0a09"),
        &hex("40 01 01 09  40 02 00  40 03 04 0a000001
             80 0e 1c 0019 46 04 0a000001 00 03 11 0001 0a000001 0002 00000000 20 0a000001"),
        &hex(NLRI),
    );
    let (withdrawn, _) = withdraw(&bytes);
    let families: Vec<Family> = withdrawn.iter().map(NlriList::family).collect();
    assert_eq!(families, [Family::IPV4_UNICAST, Family::L2VPN_EVPN]);
    let NlriList::Ipv4(ipv4) = &withdrawn[0] else {
        panic!()
    };
    assert_eq!(ipv4.len(), 2);
    // MP_REACH_NLRI with wrong flags is still parsed so its routes can be withdrawn.
    let bytes = update(
        &[],
        &hex("40 01 01 00  40 02 00  c0 0e 1c 0019 46 04 0a000001 00 03 11 0001 0a000001 0002 00000000 20 0a000001"),
        &[],
    );
    let (withdrawn, problems) = withdraw(&bytes);
    assert_eq!(withdrawn[0].family(), Family::L2VPN_EVPN);
    assert!(problems[0].starts_with("attribute 14: flags 0xc0"));
}

#[test]
fn attribute_discard() {
    let cases = [
        (
            format!("{MANDATORY} 40 06 01 00"),
            6,
            "ATOMIC_AGGREGATE length 1 is not 0",
        ),
        (
            format!("{MANDATORY} c0 07 07 0000fde90a0000"),
            7,
            "AGGREGATOR length 7 is not 8",
        ),
        (
            format!("{MANDATORY} c0 11 06 02 01 0000fde9"),
            17,
            "AS4_PATH on a four-octet AS session",
        ),
        (
            format!("{MANDATORY} c0 12 08 0000fde9 0a000001"),
            18,
            "AS4_AGGREGATOR on a four-octet AS session",
        ),
        // A repeated attribute: the first MED stays, the second is dropped (RFC 7606 §3 g).
        (
            format!("{MANDATORY} 80 04 04 00000001 80 04 04 00000002"),
            4,
            "repeated attribute discarded",
        ),
    ];
    for (attributes, type_code, reason) in cases {
        match decode_message(&with_attributes(&attributes), &four_octet()) {
            Ok(Received::UpdateWithDiscards { update, discarded }) => {
                assert_eq!(discarded.len(), 1, "{reason}");
                assert_eq!(discarded[0].type_code, type_code);
                assert_eq!(discarded[0].reason, reason);
                assert_eq!(update.nlri.len(), 1);
                assert!(!update.attributes.atomic_aggregate);
                assert!(update.attributes.aggregator.is_none());
                assert!(update.attributes.as4_path.is_none());
                if type_code == 4 {
                    assert_eq!(update.attributes.med, Some(1));
                }
            }
            other => panic!("{reason}: expected attribute discard, got {other:?}"),
        }
    }
    // A malformed AS4_PATH on a two-octet session is discarded too (RFC 6793 §6).
    let bytes = with_attributes("40 01 01 00 40 02 00 40 03 04 0a000001 c0 11 03 02 01 00");
    assert!(matches!(
        decode_message(&bytes, &Context::default()),
        Ok(Received::UpdateWithDiscards { .. })
    ));
}

#[test]
fn session_resets_inside_updates() {
    let ctx = four_octet();
    let evpn_reach =
        "80 0e 1c 0019 46 04 0a000001 00 03 11 0001 0a000001 0002 00000000 20 0a000001";
    // MP_REACH_NLRI twice (RFC 7606 §3 g).
    let twice = update(
        &[],
        &hex(&format!("40 01 01 00 40 02 00 {evpn_reach} {evpn_reach}")),
        &[],
    );
    assert_eq!(code(&twice, &ctx), (3, 1));
    // An unrecognized well-known attribute (RFC 4271 §6.3); data is the attribute.
    let e = reset(&with_attributes(&format!("{MANDATORY} 40 63 01 00")), &ctx);
    assert_eq!((e.notification.code, e.notification.subcode), (3, 2));
    assert_eq!(e.notification.data, hex("40 63 01 00"));
    // An IPv6 MP_REACH_NLRI with a 4-byte next hop: the NLRI cannot be located (RFC 7606 §7.11).
    let bad_nh = update(
        &[],
        &hex("40 01 01 00 40 02 00 80 0e 0a 0002 01 04 0a000001 00 00"),
        &[],
    );
    let e = reset(&bad_nh, &ctx);
    assert_eq!((e.notification.code, e.notification.subcode), (3, 9));
    assert_eq!(
        e.reason,
        "MP_REACH_NLRI next hop length 4 is not valid for ipv6-unicast"
    );
    // EVPN type 2 whose MAC length is 40 bits; type 5 of 35 bytes; a route running past the end.
    for (route, reason) in [
        (
            "02 21 0001 0a000001 0002 00000000000000000000 00000000 28 525400aabbcc 00 000064",
            "EVPN route type 2: MAC length 40 bits is not 48",
        ),
        (
            "05 23 0001 0a000001 0002 00000000000000000000 00000000 18 c0a81400 00000000 001388 00",
            "EVPN route type 5 is 35 bytes, not 34 (IPv4) or 58 (IPv6)",
        ),
        (
            "05 22 0001 0a000001 0002 00000000000000000000 00000000 21 c0a81400 00000000 001388",
            "EVPN route type 5: bad IPv4 prefix 192.168.20.0/33",
        ),
        (
            "03 40 0001 0a000001",
            "EVPN route type 3: length 64 exceeds the 6 bytes left",
        ),
        (
            "03 11 0001 0a000001 0002 00000000 18 0a000001",
            "EVPN route type 3: originator IP length 24 bits is not 0, 32 or 128",
        ),
    ] {
        let mut reach = hex("0019 46 04 0a000001 00");
        reach.extend(hex(route));
        let mut attributes = hex("40 01 01 00 40 02 00 80 0e");
        attributes.push(u8::try_from(reach.len()).unwrap());
        attributes.extend(reach);
        let e = reset(&update(&[], &attributes, &[]), &ctx);
        assert_eq!(
            (e.notification.code, e.notification.subcode),
            (3, 9),
            "{reason}"
        );
        assert_eq!(e.reason, reason);
    }
    // An overrun with no route located anywhere: nothing to withdraw, so the session resets.
    let nothing = update(&[], &hex("40 01 01 00 40 02 09 02"), &[]);
    assert_eq!(code(&nothing, &ctx), (3, 1));
}

#[test]
fn withdraw_only_updates_need_no_mandatory_attributes() {
    let bytes = update(&hex("18 0a0101"), &[], &[]);
    let Ok(Received::Message(Message::Update(u))) = decode_message(&bytes, &four_octet()) else {
        panic!("withdraw-only UPDATE rejected")
    };
    assert_eq!(u.withdrawn.len(), 1);
}

#[test]
fn errors_name_the_notification_in_their_text() {
    let e = reset(&message(9, &[]), &Context::default());
    assert_eq!(
        e.to_string(),
        "message type 9 is not 1 to 5 (NOTIFICATION 1/3 (Message Header Error / Bad Message Type))"
    );
}
