//! ztos-model: the contracts between ZTOS's processes, as types. The configuration document
//! ([`config`]: types, parsing, validation that needs no kernel, text editing, JSON Schema) and
//! the requests, responses and status answers that ztosd, the `ztos` CLI, the plugins and the
//! web UI exchange. It does no I/O and has no async runtime, so every consumer can depend on it
//! without pulling in the daemon.

pub mod api;
pub mod bgp;
pub mod config;
pub mod init;
pub mod wireguard;
