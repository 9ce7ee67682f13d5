//! The BGP wire codec (`ztos-bgp-codec`): a pure library that turns bytes into messages and
//! back. It does no I/O, keeps no session state beyond the [`Context`] the caller passes in,
//! never panics on input and never allocates based on a length it has not checked against the
//! bytes it holds. It depends on serde and thiserror only (no tokio), so the speaker (`ztos-bgp`),
//! `ztos bgp decode` and the fuzz targets share it without building the speaker.
//!
//! Decoding an UPDATE follows RFC 7606: see [`Received`] for the outcomes and
//! `docs/bgp-codec.md` for the per-attribute table. [`decode_hex`] turns one message captured as
//! hex into a serializable value for `ztos bgp decode HEX`.

pub mod as_path;
pub mod attributes;
pub mod error;
pub mod evpn;
pub mod ext_community;
mod hex;
pub mod message;
pub mod nlri;
pub mod notification;
pub mod open;
pub mod rd;
mod reader;
pub mod update;

#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Serialize, Serializer};

pub use as_path::{AsPath, AsSegment, AsSegmentKind, Asn, AS_TRANS};
pub use attributes::{
    Aggregator, Community, LargeCommunity, Origin, PathAttributes, PmsiTunnel, PmsiTunnelId,
    RawAttribute,
};
pub use error::{AttributeProblem, DecodeError, EncodeError};
pub use evpn::{
    EthernetAutoDiscovery, EthernetSegment, EthernetSegmentId, EvpnRoute, InclusiveMulticast,
    IpPrefixRoute, Label, MacAddress, MacIpAdvertisement, Vni,
};
pub use ext_community::ExtendedCommunity;
pub use hex::{decode_hex, decode_hex_with, HexDecodeError};
pub use message::{decode_message, message_length, Message, Received, RouteRefresh};
pub use nlri::{IpPrefix, Ipv4Prefix, Ipv6Prefix, NlriEntry, NlriList, PathId};
pub use notification::Notification;
pub use open::{
    negotiate, AddPathDirection, Capability, GracefulRestart, Negotiated, Open, OptionalParameter,
};
pub use rd::RouteDistinguisher;
pub use update::{
    pack_announcements, pack_withdrawals, MpReach, MpUnreach, NextHop, TreatAsWithdraw, Update,
};

/// Length of the BGP message header (marker, length, type).
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended message capability (RFC 4271 §4.1).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Largest message once both sides advertised extended messages (RFC 8654).
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;

/// An address family and subsequent address family (RFC 4760), e.g. L2VPN EVPN = 25/70.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    pub afi: u16,
    pub safi: u8,
}

impl Family {
    pub const IPV4_UNICAST: Family = Family { afi: 1, safi: 1 };
    pub const IPV6_UNICAST: Family = Family { afi: 2, safi: 1 };
    /// RFC 7432: AFI 25 (L2VPN), SAFI 70 (EVPN).
    pub const L2VPN_EVPN: Family = Family { afi: 25, safi: 70 };

    pub const fn new(afi: u16, safi: u8) -> Family {
        Family { afi, safi }
    }

    /// The bit this family has in [`AddPathFamilies`]; `None` for families the codec keeps opaque.
    fn add_path_bit(self) -> Option<u8> {
        match self {
            Family::IPV4_UNICAST => Some(1),
            Family::IPV6_UNICAST => Some(2),
            Family::L2VPN_EVPN => Some(4),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Family::IPV4_UNICAST => f.write_str("ipv4-unicast"),
            Family::IPV6_UNICAST => f.write_str("ipv6-unicast"),
            Family::L2VPN_EVPN => f.write_str("l2vpn-evpn"),
            Family { afi, safi } => write!(f, "afi-{afi}-safi-{safi}"),
        }
    }
}

impl Serialize for Family {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The families whose NLRI carry an add-path identifier (RFC 7911) in the direction a
/// [`Context`] describes. Only the families the codec parses can be named; others stay opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AddPathFamilies(u8);

impl AddPathFamilies {
    pub const NONE: AddPathFamilies = AddPathFamilies(0);

    /// This set plus `family`; a family the codec keeps opaque is ignored.
    #[must_use]
    pub fn with(self, family: Family) -> AddPathFamilies {
        AddPathFamilies(self.0 | family.add_path_bit().unwrap_or(0))
    }

    pub fn contains(self, family: Family) -> bool {
        family.add_path_bit().is_some_and(|bit| self.0 & bit != 0)
    }
}

impl Serialize for AddPathFamilies {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let families: Vec<Family> = [
            Family::IPV4_UNICAST,
            Family::IPV6_UNICAST,
            Family::L2VPN_EVPN,
        ]
        .into_iter()
        .filter(|family| self.contains(*family))
        .collect();
        families.serialize(serializer)
    }
}

/// What the wire format depends on, as negotiated in the OPEN exchange. A session uses one
/// context to decode what it receives and another to encode what it sends: add-path is
/// negotiated per direction, so `add_path` names the families whose NLRI carry a path identifier
/// in the messages this context applies to.
///
/// The default is the state before negotiation: two-octet AS numbers, 4096-byte messages, no
/// add-path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Context {
    /// Both sides advertised the four-octet AS capability (RFC 6793): AS_PATH and AGGREGATOR
    /// carry four-octet AS numbers.
    pub four_octet_as: bool,
    /// Both sides advertised the extended message capability (RFC 8654): UPDATE, NOTIFICATION
    /// and ROUTE-REFRESH may be up to 65535 bytes.
    pub extended_message: bool,
    pub add_path: AddPathFamilies,
}

impl Context {
    /// What a modern session negotiates: four-octet AS numbers and extended messages, no
    /// add-path. `ztos bgp decode` uses it for captures.
    pub const MODERN: Context = Context {
        four_octet_as: true,
        extended_message: true,
        add_path: AddPathFamilies::NONE,
    };

    /// The largest UPDATE, NOTIFICATION or ROUTE-REFRESH this context allows.
    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }
}
