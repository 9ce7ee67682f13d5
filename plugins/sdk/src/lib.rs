//! ztos-plugin: the ZTOS plugin protocol and the client library plugins are written with.
//!
//! - [`protocol`]: message types and the pure newline-delimited JSON codec (no I/O).
//! - [`transport`]: reading and writing those messages on an async stream.
//! - [`client`]: [`client::PluginClient`], which connects to ztosd, reconnects with backoff
//!   and hands host requests to a [`client::Handler`].
//! - [`config_path`]: looking up values by full config path (`bgp.neighbors[0].remote_as`),
//!   the form [`protocol::FieldError`] paths take.
//! - [`kernel_ids`]: the routing protocol ids ztosd and the plugins mark their kernel routes with.
//! - [`prom_text`]: the Prometheus text format writer behind ztosd's `/metrics`.
//!
//! The wire protocol is described in `docs/plugin-protocol.md`.

pub mod client;
pub mod config_path;
pub mod kernel_ids;
pub mod prom_text;
pub mod protocol;
pub mod transport;

pub use client::{Handler, PluginClient, PluginSender, Shutdown};
pub use protocol::{FieldError, LogLevel, Metric, MetricKind, Sections, PROTOCOL_VERSION};
