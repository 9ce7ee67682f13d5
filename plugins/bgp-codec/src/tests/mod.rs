//! Byte-vector tests, one file per message kind, checked in both directions; the RFC 7606
//! outcome of each kind of malformed input; UPDATE packing; and a no-panic run over mutated
//! messages with a fixed seed.

mod corpus;
mod evpn;
mod malformed;
mod open;
mod packing;
mod random;
mod simple;
mod update;

use super::{decode_message, Context, Message, Received};

/// Bytes from hex text; whitespace is ignored and `#` starts a comment running to the line end,
/// so each field of a vector can be named where it is written.
pub(crate) fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.chars())
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_digit(16).expect("test vector hex digit") as u8)
        .collect();
    assert!(
        digits.len() % 2 == 0,
        "odd number of hex digits in a test vector"
    );
    digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
}

/// A whole message: marker, length, type, then `body`.
pub(crate) fn message(message_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&u16::try_from(body.len() + 19).unwrap().to_be_bytes());
    out.push(message_type);
    out.extend_from_slice(body);
    out
}

/// An UPDATE message from its three parts, lengths filled in.
pub(crate) fn update(withdrawn: &[u8], attributes: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&u16::try_from(withdrawn.len()).unwrap().to_be_bytes());
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&u16::try_from(attributes.len()).unwrap().to_be_bytes());
    body.extend_from_slice(attributes);
    body.extend_from_slice(nlri);
    message(2, &body)
}

/// Decodes `bytes`, expects a clean message, checks it re-encodes to the same bytes.
pub(crate) fn round_trip(bytes: &[u8], ctx: &Context) -> Message {
    let received = decode_message(bytes, ctx).unwrap_or_else(|e| panic!("decode failed: {e}"));
    let Received::Message(message) = received else {
        panic!("expected a clean message, got {received:?}")
    };
    let encoded = message.to_bytes(ctx).expect("re-encode");
    assert_eq!(
        crate::hex::to_hex(&encoded),
        crate::hex::to_hex(bytes),
        "re-encoding differs"
    );
    message
}

pub(crate) fn four_octet() -> Context {
    Context {
        four_octet_as: true,
        ..Context::default()
    }
}
