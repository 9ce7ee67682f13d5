//! Fuzzes the BGP decoder: any bytes, under each kind of session context, must decode without
//! panicking; a message that decodes cleanly must encode, and that encoding must decode to the
//! same message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ztos_bgp::codec::{decode_message, AddPathFamilies, Context, Family, Received};

fuzz_target!(|data: &[u8]| {
    let contexts = [
        Context::default(),
        Context::MODERN,
        Context {
            four_octet_as: true,
            extended_message: true,
            add_path: AddPathFamilies::NONE
                .with(Family::IPV4_UNICAST)
                .with(Family::IPV6_UNICAST)
                .with(Family::L2VPN_EVPN),
        },
    ];
    for ctx in contexts {
        if let Ok(Received::Message(message)) = decode_message(data, &ctx) {
            let encoded = message
                .to_bytes(&ctx)
                .expect("a decoded message must encode");
            match decode_message(&encoded, &ctx) {
                Ok(Received::Message(again)) => assert_eq!(again, message),
                other => panic!("re-encoding changed the message: {other:?}"),
            }
        }
    }
    // The operator path: hex text in, never a panic.
    let text: String = data.iter().map(|b| format!("{b:02x}")).collect();
    let _ = ztos_bgp::decode_hex(&text);
});
