//! ztosd: the ZTOS network daemon. It is the only writer of configuration: it keeps the
//! versioned config store, applies committed configuration to the kernel over netlink, hosts
//! the plugin processes, and serves the REST API that the `ztos` CLI (crate ztos-cli) and the web
//! UI use.

pub mod api;
pub mod daemon;
pub mod dhcp;
pub mod init_client;
pub mod logs;
pub mod netlink;
pub mod plugin_host;
pub mod store;
pub mod tls;
pub mod tokens;
pub mod update;
pub mod users;

/// The configuration document lives in the model crate; `ztosd::config` is kept as its path here.
pub use ztos_model::config;
