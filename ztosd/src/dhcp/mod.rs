//! The DHCPv4 client for management interfaces (`dhcp = true` on an interface): the packet
//! codec (`packet.rs`), the RFC 2131 state machine without I/O
//! (`client.rs`), and the task that runs it on a UDP socket bound to the interface
//! (`runner.rs`). Leases are handed to the daemon, which installs them through the reconciler.

pub mod client;
pub mod manager;
pub mod packet;
pub mod runner;

pub use client::{Action, Client, Destination, Lease, State};
pub use manager::{manage, DhcpLeaseStatus, LeaseSink, LeaseTable};
pub use packet::{Dropped, Mac, MessageType, Offer, Reply, RequestKind};
pub use runner::{run, LeaseEvent};

#[cfg(test)]
mod tests;
