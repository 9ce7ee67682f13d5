//! Why an EVPN kernel operation failed. The messages name the device, MAC, VTEP or table
//! concerned; the op task reports them as `"{op}: {error}"` lines.

use std::io;
use std::net::{AddrParseError, IpAddr};
use std::path::PathBuf;

/// An EVPN kernel operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum EvpnKernelError {
    #[error("cannot open an rtnetlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot subscribe to link changes over rtnetlink: {0}")]
    Subscribe(#[source] io::Error),
    #[error("cannot identify the network namespace: {0}")]
    Namespace(#[source] io::Error),
    /// A dump of `what` (links, FDB entries, neighbours, routes) failed.
    #[error("cannot list {what}: {source}")]
    Dump {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot look up device {device}: {source}")]
    LookUp {
        device: String,
        #[source]
        source: io::Error,
    },
    #[error("device {device} does not exist")]
    NoDevice { device: String },
    #[error(
        "the tenant's VRF device {vrf} does not exist: {why}; its EVPN type 5 routes are not \
         installed until it does"
    )]
    NoVrf { vrf: String, why: &'static str },
    /// Adding or removing one kernel entry (`what`: "FDB entry on vx100", "route 10.0.0.0/24
    /// in table 100", ...) failed.
    #[error("{what}: {source}")]
    Change {
        what: String,
        #[source]
        source: io::Error,
    },
    /// `entry` is empty or ` (bridge entry)`.
    #[error("cannot remove stale EVPN MAC {mac} from {device}{entry}: {source}")]
    StaleMac {
        mac: String,
        device: String,
        entry: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove stale EVPN neighbour {what} (link {index}): {source}")]
    StaleNeighbour {
        what: String,
        index: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove a stale EVPN route in table {table}: {source}")]
    StaleRoute {
        table: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove stale flood VTEP {vtep} from {device}: {source}")]
    StaleFlood {
        vtep: IpAddr,
        device: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the flood journal {}: {source}", path.display())]
    JournalRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the flood journal {}: {source}", path.display())]
    JournalWrite {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("flood journal {}: {source}", path.display())]
    JournalSyntax {
        path: PathBuf,
        #[source]
        source: JournalError,
    },
}

/// A line of the flood journal that is not `device device-mac vtep`.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("line {line}: expected `device device-mac vtep`, found `{text}`")]
    Fields { line: usize, text: String },
    #[error("line {line}: bad MAC address `{mac}`")]
    Mac { line: usize, mac: String },
    #[error("line {line}: bad VTEP address `{vtep}`: {source}")]
    Vtep {
        line: usize,
        vtep: String,
        #[source]
        source: AddrParseError,
    },
}
