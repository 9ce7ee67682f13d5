//! ztos-wireguard: WireGuard for ZTOS on boringtun's noise protocol, driven by our own loop on
//! TUN devices, with the zero-trust policy of `[policy]` enforced in the datapath.
//!
//! - [`keys`]: interface private keys in the state directory (mode 0600), public keys out.
//! - [`trie`]: the longest-prefix-match trie used for cryptokey routing and policy prefixes.
//! - [`packet`]: IPv4/IPv6 header parsing into the 5-tuple the policy classifies.
//! - [`policy`]: the [`policy::Classifier`] trait, its CPU implementation, counters and the
//!   flow table that lets replies to locally started flows back in.
//! - [`config`]: the `[wireguard]` and `[policy]` sections as this plugin reads them.
//! - [`datapath`]: one TUN device and one UDP socket per interface, one `Tunn` per peer.
//! - [`plugin`]: the ztosd plugin handler (validate, apply, requests, status, metrics).
//!
//! Documented in `docs/wireguard.md`.

pub mod config;
pub mod datapath;
pub mod keys;
pub mod packet;
pub mod plugin;
pub mod policy;
pub mod trie;
