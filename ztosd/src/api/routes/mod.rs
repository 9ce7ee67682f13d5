//! The route handlers, one module per subject. Each handler names the [`Scope`] it needs
//! through its `Auth<..>` argument and carries its own `#[utoipa::path]` documentation.
//!
//! [`Scope`]: super::auth::Scope

pub mod bgp;
pub mod config;
pub mod monitoring;
pub mod network;
pub mod plugins;
pub mod security;
pub mod system;
pub mod system_services;
pub mod tokens;
pub mod update;
pub mod users;
