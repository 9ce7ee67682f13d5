//! Fuzzes the BGP decoder. Any bytes, under every kind of session context (two- and four-octet
//! AS, with and without extended messages and add-path), must frame and decode without
//! panicking. A message that decodes cleanly must encode, and that encoding must decode to the
//! same message; an UPDATE accepted with attributes discarded (RFC 7606) must do the same once
//! the discarded attributes are gone. The operator's `ztos bgp decode HEX` path gets both the
//! bytes as hex and the bytes as text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ztos_bgp_codec::{
    decode_message, message_length, AddPathFamilies, Context, Family, Message, Received,
};

const ALL_ADD_PATH: AddPathFamilies = AddPathFamilies::NONE;

fn contexts() -> [Context; 5] {
    let all = ALL_ADD_PATH
        .with(Family::IPV4_UNICAST)
        .with(Family::IPV6_UNICAST)
        .with(Family::L2VPN_EVPN);
    [
        // Before negotiation: two-octet AS, 4096 bytes, no add-path.
        Context::default(),
        // Two-octet AS with add-path on every family.
        Context {
            four_octet_as: false,
            extended_message: false,
            add_path: all,
        },
        // Four-octet AS, extended messages, no add-path.
        Context::MODERN,
        // Four-octet AS, 4096 bytes, add-path on IPv4 only (mixed per-family contexts).
        Context {
            four_octet_as: true,
            extended_message: false,
            add_path: ALL_ADD_PATH.with(Family::IPV4_UNICAST),
        },
        // Everything on.
        Context {
            four_octet_as: true,
            extended_message: true,
            add_path: all,
        },
    ]
}

/// `message` encodes under `ctx`, and the encoding decodes cleanly to `message` again.
fn check_round_trip(message: &Message, ctx: &Context) {
    let encoded = match message.to_bytes(ctx) {
        Ok(encoded) => encoded,
        Err(e) => panic!("{message:?} decoded under {ctx:?} but does not encode: {e}"),
    };
    match decode_message(&encoded, ctx) {
        Ok(Received::Message(again)) => assert_eq!(&again, message, "round trip under {ctx:?}"),
        other => panic!("re-encoding {message:?} under {ctx:?} decodes to {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    for ctx in contexts() {
        // Framing agrees with decoding: a message that decodes had its length framed right.
        let framed = message_length(data, &ctx);
        let decoded = decode_message(data, &ctx);
        if decoded.is_ok() {
            assert_eq!(framed.ok(), Some(Some(data.len())), "framing under {ctx:?}");
        }
        match decoded {
            Ok(Received::Message(message)) => check_round_trip(&message, &ctx),
            Ok(Received::UpdateWithDiscards { update, discarded }) => {
                assert!(!discarded.is_empty(), "attribute discard without a problem");
                check_round_trip(&Message::Update(update), &ctx);
            }
            Ok(Received::TreatAsWithdraw(withdraw)) => {
                assert!(
                    !withdraw.problems.is_empty(),
                    "treat-as-withdraw without a problem"
                );
            }
            Err(e) => assert!(!e.reason.is_empty(), "session reset without a reason"),
        }
    }
    // The operator path: hex text in, never a panic; and arbitrary text, never a panic.
    let text: String = data.iter().map(|b| format!("{b:02x}")).collect();
    let _ = ztos_bgp_codec::decode_hex(&text);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ztos_bgp_codec::decode_hex(text);
    }
});
