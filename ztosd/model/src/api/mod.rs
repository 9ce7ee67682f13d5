//! The REST API's request and response bodies, one module per area. ztosd serves them, the
//! `ztos` CLI reads its answers as them, and the OpenAPI document is generated from them: a
//! field renamed here is renamed for every consumer, and a consumer that still reads the old
//! name stops compiling.

pub mod bgp;
pub mod config;
pub mod error;
pub mod monitoring;
pub mod network;
pub mod plugins;
pub mod security;
pub mod system;
pub mod tokens;
pub mod update;
pub mod users;
