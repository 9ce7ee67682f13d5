//! What can go wrong on the wire. [`DecodeError`] is a session reset: it carries the
//! NOTIFICATION the RFCs require. The softer RFC 7606 outcomes (treat-as-withdraw, attribute
//! discard) are not errors; they are [`super::Received`] variants listing [`AttributeProblem`]s.

use serde::Serialize;

use super::notification::{code, Notification};
use super::Family;

/// NOTIFICATION data is cut to this length so the NOTIFICATION fits a 4096-byte message.
pub const MAX_NOTIFICATION_DATA: usize = super::MAX_MESSAGE_LEN - 21;

/// A message the session cannot survive: send `notification` and close (RFC 4271 §6,
/// RFC 7606 "session reset").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{reason} (NOTIFICATION {notification})")]
pub struct DecodeError {
    pub notification: Notification,
    /// What was wrong, naming the offending value.
    pub reason: String,
}

impl DecodeError {
    pub(crate) fn new(code: u8, subcode: u8, mut data: Vec<u8>, reason: String) -> DecodeError {
        data.truncate(MAX_NOTIFICATION_DATA);
        DecodeError {
            notification: Notification::new(code, subcode, data),
            reason,
        }
    }

    pub(crate) fn header(subcode: u8, data: Vec<u8>, reason: String) -> DecodeError {
        DecodeError::new(code::MESSAGE_HEADER, subcode, data, reason)
    }

    pub(crate) fn open(subcode: u8, data: Vec<u8>, reason: String) -> DecodeError {
        DecodeError::new(code::OPEN_MESSAGE, subcode, data, reason)
    }

    pub(crate) fn update(subcode: u8, data: Vec<u8>, reason: String) -> DecodeError {
        DecodeError::new(code::UPDATE_MESSAGE, subcode, data, reason)
    }
}

/// One malformed path attribute that did not need a session reset (RFC 7606 §2): the update
/// was either accepted without the attribute (attribute discard) or its routes withdrawn
/// (treat-as-withdraw).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AttributeProblem {
    /// The attribute's type code (0 when the problem is the attribute list itself).
    pub type_code: u8,
    pub reason: String,
}

impl std::fmt::Display for AttributeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attribute {}: {}", self.type_code, self.reason)
    }
}

/// A message that cannot be put on the wire as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {length} bytes exceeds the {limit}-byte limit")]
    MessageTooLong { length: usize, limit: usize },
    #[error("attribute {type_code} is {length} bytes, more than 65535")]
    AttributeTooLong { type_code: u8, length: usize },
    #[error("AS {asn} does not fit two octets; use AsPath::to_two_octet for a peer without four-octet AS")]
    AsnNeedsFourOctets { asn: u32 },
    #[error("AS_SET of {count} AS numbers does not fit one segment (at most 255)")]
    AsSetTooLong { count: usize },
    #[error("{family} NLRI {with} a path identifier, but add-path is {negotiated} for it in this direction")]
    PathIdMismatch {
        family: Family,
        with: &'static str,
        negotiated: &'static str,
    },
    #[error("one {family} route with these attributes does not fit a {limit}-byte UPDATE")]
    RouteDoesNotFit { family: Family, limit: usize },
    #[error("optional parameters of {length} bytes do not fit the OPEN's one-byte length")]
    OptionalParametersTooLong { length: usize },
    #[error("capability {code} is {length} bytes, more than 255")]
    CapabilityTooLong { code: u8, length: usize },
    #[error("{field} of {length} bytes does not fit its one-byte length")]
    FieldTooLong { field: &'static str, length: usize },
    #[error("EVPN type 5 prefix {prefix} and gateway {gateway} are of different families")]
    GatewayFamilyMismatch {
        prefix: super::IpPrefix,
        gateway: std::net::IpAddr,
    },
    #[error("{family} routes need a next hop for MP_REACH_NLRI")]
    MissingNextHop { family: Family },
}

impl EncodeError {
    pub(crate) fn path_id_mismatch(family: Family, has_path_id: bool) -> EncodeError {
        if has_path_id {
            EncodeError::PathIdMismatch {
                family,
                with: "carries",
                negotiated: "not negotiated",
            }
        } else {
            EncodeError::PathIdMismatch {
                family,
                with: "lacks",
                negotiated: "negotiated",
            }
        }
    }
}
