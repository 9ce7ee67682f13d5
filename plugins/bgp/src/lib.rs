//! ZTOS's BGP speaker plugin (`ztos-bgp`).
//!
//! - [`codec`] decodes and encodes BGP messages with no I/O, and [`decode_hex`] turns one
//!   message captured as hex into a serializable value for `ztos bgp decode HEX`.
//! - [`session`]: one neighbor's RFC 4271 state machine, timers and TCP connections.
//! - [`rib`]: Adj-RIB-In, Loc-RIB and the decision process; [`policy`]: what is imported and
//!   exported; [`speaker`]: the task that ties sessions, RIB, update groups and the kernel.
//! - [`kernel`]: best routes into the kernel over rtnetlink with ZTOS's protocol id.
//! - [`config`]: the `[bgp]` section as the plugin reads and validates it.

pub mod codec;
pub mod config;
pub mod evpn;
pub mod evpn_kernel;
mod hex;
pub mod kernel;
pub mod md5;
pub mod policy;
pub mod rib;
pub mod session;
pub mod speaker;

pub use hex::{decode_hex, decode_hex_with, HexDecodeError};
