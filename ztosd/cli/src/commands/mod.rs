//! One module per area of the command line. Each `run` makes the API calls of one command
//! and prints the answer, read as its `ztos-model` type, through `crate::format`.

pub mod bgp;
pub mod config;
pub mod monitoring;
pub mod network;
pub mod plugins;
pub mod security;
pub mod system;
pub mod tokens;
pub mod update;
pub mod users;
pub mod wireguard;
