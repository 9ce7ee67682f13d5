//! ZTOS's BGP speaker plugin (`ztos-bgp`). This session of the crate holds the wire codec:
//! [`codec`] decodes and encodes BGP messages with no I/O, and [`decode_hex`] turns one message
//! captured as hex into a serializable value for `ztos bgp decode HEX`.

pub mod codec;
mod hex;

pub use hex::{decode_hex, decode_hex_with, HexDecodeError};
