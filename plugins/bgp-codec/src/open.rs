//! OPEN messages (RFC 4271 §4.2) with capabilities (RFC 5492): multiprotocol (RFC 4760), route
//! refresh (RFC 2918), extended message (RFC 8654), graceful restart (RFC 4724), four-octet AS
//! (RFC 6793) and add-path (RFC 7911) decoded; any other capability kept as its bytes.
//! [`negotiate`] turns the two OPENs of a session into the [`Context`]s of its two directions.

use std::net::Ipv4Addr;

use serde::Serialize;

use super::as_path::Asn;
use super::notification::subcode;
use super::reader::Reader;
use super::{AddPathFamilies, Context, DecodeError, EncodeError, Family};

pub mod capability_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const EXTENDED_MESSAGE: u8 = 6;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
    pub const ADD_PATH: u8 = 69;
}

/// Optional parameter type 2 (RFC 5492 §4).
const PARAMETER_CAPABILITIES: u8 = 2;

/// Add-path Send/Receive field (RFC 7911 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddPathDirection {
    Receive,
    Send,
    Both,
}

impl AddPathDirection {
    fn code(self) -> u8 {
        match self {
            AddPathDirection::Receive => 1,
            AddPathDirection::Send => 2,
            AddPathDirection::Both => 3,
        }
    }

    pub fn receives(self) -> bool {
        matches!(self, AddPathDirection::Receive | AddPathDirection::Both)
    }

    pub fn sends(self) -> bool {
        matches!(self, AddPathDirection::Send | AddPathDirection::Both)
    }
}

/// The graceful restart capability (RFC 4724 §3, the N bit of RFC 8538).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct GracefulRestart {
    /// The four flag bits: 0x8 Restart State (R), 0x4 Graceful Notification (N).
    pub flags: u8,
    /// Seconds, 12 bits.
    pub restart_time: u16,
    /// Each family with its flags byte (0x80: forwarding state preserved).
    pub families: Vec<(Family, u8)>,
}

impl GracefulRestart {
    pub const RESTART_STATE: u8 = 0x8;
    pub const NOTIFICATION: u8 = 0x4;
    pub const FORWARDING_PRESERVED: u8 = 0x80;
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "capability", rename_all = "snake_case")]
pub enum Capability {
    Multiprotocol {
        family: Family,
    },
    RouteRefresh,
    ExtendedMessage,
    GracefulRestart(GracefulRestart),
    FourOctetAs {
        asn: Asn,
    },
    AddPath {
        families: Vec<(Family, AddPathDirection)>,
    },
    Unknown {
        code: u8,
        #[serde(serialize_with = "crate::hex::serialize_hex")]
        value: Vec<u8>,
    },
}

impl Capability {
    pub fn code(&self) -> u8 {
        use capability_code::*;
        match self {
            Capability::Multiprotocol { .. } => MULTIPROTOCOL,
            Capability::RouteRefresh => ROUTE_REFRESH,
            Capability::ExtendedMessage => EXTENDED_MESSAGE,
            Capability::GracefulRestart(_) => GRACEFUL_RESTART,
            Capability::FourOctetAs { .. } => FOUR_OCTET_AS,
            Capability::AddPath { .. } => ADD_PATH,
            Capability::Unknown { code, .. } => *code,
        }
    }

    fn decode(code: u8, value: &[u8]) -> Result<Capability, DecodeError> {
        use capability_code::*;
        let malformed = |what: String| {
            DecodeError::open(
                subcode::UNSPECIFIC,
                Vec::new(),
                format!("capability {code}: {what}"),
            )
        };
        Ok(match code {
            MULTIPROTOCOL => match value {
                [a, b, _reserved, safi] => Capability::Multiprotocol {
                    family: Family::new(u16::from_be_bytes([*a, *b]), *safi),
                },
                _ => return Err(malformed(format!("length {} is not 4", value.len()))),
            },
            ROUTE_REFRESH | EXTENDED_MESSAGE => {
                if !value.is_empty() {
                    return Err(malformed(format!("length {} is not 0", value.len())));
                }
                if code == ROUTE_REFRESH {
                    Capability::RouteRefresh
                } else {
                    Capability::ExtendedMessage
                }
            }
            GRACEFUL_RESTART => {
                if value.len() < 2 || (value.len() - 2) % 4 != 0 {
                    return Err(malformed(format!(
                        "length {} is not 2 plus a multiple of 4",
                        value.len()
                    )));
                }
                let head = u16::from_be_bytes([value[0], value[1]]);
                Capability::GracefulRestart(GracefulRestart {
                    // The top four bits are flags, the low twelve the restart time.
                    flags: (head >> 12) as u8,
                    restart_time: head & 0x0fff,
                    families: value[2..]
                        .chunks_exact(4)
                        .map(|c| {
                            let family = Family::new(u16::from_be_bytes([c[0], c[1]]), c[2]);
                            (family, c[3])
                        })
                        .collect(),
                })
            }
            FOUR_OCTET_AS => match <[u8; 4]>::try_from(value) {
                Ok(bytes) => Capability::FourOctetAs {
                    asn: Asn(u32::from_be_bytes(bytes)),
                },
                Err(_) => return Err(malformed(format!("length {} is not 4", value.len()))),
            },
            ADD_PATH => {
                if value.is_empty() || value.len() % 4 != 0 {
                    return Err(malformed(format!(
                        "length {} is not a non-zero multiple of 4",
                        value.len()
                    )));
                }
                let mut families = Vec::new();
                for c in value.chunks_exact(4) {
                    let direction = match c[3] {
                        1 => AddPathDirection::Receive,
                        2 => AddPathDirection::Send,
                        3 => AddPathDirection::Both,
                        other => {
                            return Err(malformed(format!(
                                "send/receive value {other} is not 1, 2 or 3"
                            )))
                        }
                    };
                    let family = Family::new(u16::from_be_bytes([c[0], c[1]]), c[2]);
                    families.push((family, direction));
                }
                Capability::AddPath { families }
            }
            _ => Capability::Unknown {
                code,
                value: value.to_vec(),
            },
        })
    }

    fn encode_value(&self, out: &mut Vec<u8>) {
        match self {
            Capability::Multiprotocol { family } => {
                out.extend_from_slice(&family.afi.to_be_bytes());
                out.extend_from_slice(&[0, family.safi]);
            }
            Capability::RouteRefresh | Capability::ExtendedMessage => {}
            Capability::GracefulRestart(gr) => {
                let head = u16::from(gr.flags & 0xf) << 12 | (gr.restart_time & 0x0fff);
                out.extend_from_slice(&head.to_be_bytes());
                for (family, flags) in &gr.families {
                    out.extend_from_slice(&family.afi.to_be_bytes());
                    out.extend_from_slice(&[family.safi, *flags]);
                }
            }
            Capability::FourOctetAs { asn } => out.extend_from_slice(&asn.0.to_be_bytes()),
            Capability::AddPath { families } => {
                for (family, direction) in families {
                    out.extend_from_slice(&family.afi.to_be_bytes());
                    out.extend_from_slice(&[family.safi, direction.code()]);
                }
            }
            Capability::Unknown { value, .. } => out.extend_from_slice(value),
        }
    }
}

/// An optional parameter of an OPEN. Only capabilities (type 2) are defined today; RFC 5492
/// lets a speaker put several capabilities in one parameter or one in each, and the codec keeps
/// the grouping so a decoded OPEN re-encodes to the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "parameter", content = "list", rename_all = "snake_case")]
pub enum OptionalParameter {
    Capabilities(Vec<Capability>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Open {
    /// The two-octet "My Autonomous System" field (AS_TRANS when the AS needs four octets).
    pub my_as: u16,
    /// Seconds; 0 or at least 3.
    pub hold_time: u16,
    pub bgp_identifier: Ipv4Addr,
    pub parameters: Vec<OptionalParameter>,
}

impl Open {
    /// An OPEN for `asn` with the four-octet AS capability first and `capabilities` after it,
    /// all in one optional parameter.
    pub fn new(
        asn: Asn,
        hold_time: u16,
        bgp_identifier: Ipv4Addr,
        capabilities: Vec<Capability>,
    ) -> Open {
        let mut all = vec![Capability::FourOctetAs { asn }];
        all.extend(
            capabilities
                .into_iter()
                .filter(|c| !matches!(c, Capability::FourOctetAs { .. })),
        );
        Open {
            my_as: asn.to_two_octet(),
            hold_time,
            bgp_identifier,
            parameters: vec![OptionalParameter::Capabilities(all)],
        }
    }

    pub fn capabilities(&self) -> impl Iterator<Item = &Capability> {
        self.parameters.iter().flat_map(|p| match p {
            OptionalParameter::Capabilities(list) => list.iter(),
        })
    }

    /// The speaker's AS: the four-octet AS capability's when present (RFC 6793 §4.1).
    pub fn asn(&self) -> Asn {
        self.capabilities()
            .find_map(|c| match c {
                Capability::FourOctetAs { asn } => Some(*asn),
                _ => None,
            })
            .unwrap_or(Asn(u32::from(self.my_as)))
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Open, DecodeError> {
        let mut r = Reader::new(body);
        let short = || {
            DecodeError::header(
                subcode::BAD_MESSAGE_LENGTH,
                Vec::new(),
                "OPEN shorter than 10 bytes".to_string(),
            )
        };
        let version = r.u8().ok_or_else(short)?;
        if version != 4 {
            // RFC 4271 §6.2: the data is the largest version we support.
            return Err(DecodeError::open(
                subcode::UNSUPPORTED_VERSION_NUMBER,
                vec![0, 4],
                format!("BGP version {version} is not 4"),
            ));
        }
        let my_as = r.u16().ok_or_else(short)?;
        let hold_time = r.u16().ok_or_else(short)?;
        if hold_time == 1 || hold_time == 2 {
            return Err(DecodeError::open(
                subcode::UNACCEPTABLE_HOLD_TIME,
                Vec::new(),
                format!("hold time {hold_time} is neither 0 nor at least 3"),
            ));
        }
        let bgp_identifier = Ipv4Addr::from(r.u32().ok_or_else(short)?);
        if bgp_identifier.is_unspecified() {
            // RFC 6286 §2.1: any non-zero four-octet value is a valid identifier.
            return Err(DecodeError::open(
                subcode::BAD_BGP_IDENTIFIER,
                Vec::new(),
                "BGP identifier 0.0.0.0".to_string(),
            ));
        }
        let params_len = r.u8().ok_or_else(short)?;
        if usize::from(params_len) != r.remaining() {
            return Err(DecodeError::open(
                subcode::UNSPECIFIC,
                Vec::new(),
                format!(
                    "optional parameters length {params_len} does not match the {} bytes left",
                    r.remaining()
                ),
            ));
        }
        let mut parameters = Vec::new();
        while !r.is_empty() {
            let (Some(code), Some(len)) = (r.u8(), r.u8()) else {
                return Err(DecodeError::open(
                    subcode::UNSPECIFIC,
                    Vec::new(),
                    "optional parameter header truncated".to_string(),
                ));
            };
            let value = r.take(usize::from(len)).ok_or_else(|| {
                DecodeError::open(
                    subcode::UNSPECIFIC,
                    Vec::new(),
                    format!("optional parameter {code} of length {len} overruns the OPEN"),
                )
            })?;
            if code != PARAMETER_CAPABILITIES {
                return Err(DecodeError::open(
                    subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
                    Vec::new(),
                    format!("optional parameter type {code} is not supported"),
                ));
            }
            let mut caps = Reader::new(value);
            let mut list = Vec::new();
            while !caps.is_empty() {
                let (Some(cap_code), Some(cap_len)) = (caps.u8(), caps.u8()) else {
                    return Err(DecodeError::open(
                        subcode::UNSPECIFIC,
                        Vec::new(),
                        "capability header truncated".to_string(),
                    ));
                };
                let cap_value = caps.take(usize::from(cap_len)).ok_or_else(|| {
                    DecodeError::open(
                        subcode::UNSPECIFIC,
                        Vec::new(),
                        format!("capability {cap_code} of length {cap_len} overruns its parameter"),
                    )
                })?;
                list.push(Capability::decode(cap_code, cap_value)?);
            }
            parameters.push(OptionalParameter::Capabilities(list));
        }
        Ok(Open {
            my_as,
            hold_time,
            bgp_identifier,
            parameters,
        })
    }

    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(4);
        out.extend_from_slice(&self.my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.bgp_identifier.octets());
        let params_at = out.len();
        out.push(0);
        for OptionalParameter::Capabilities(list) in &self.parameters {
            out.push(PARAMETER_CAPABILITIES);
            let param_len_at = out.len();
            out.push(0);
            for capability in list {
                out.push(capability.code());
                let cap_len_at = out.len();
                out.push(0);
                capability.encode_value(out);
                let length = out.len() - cap_len_at - 1;
                out[cap_len_at] =
                    u8::try_from(length).map_err(|_| EncodeError::CapabilityTooLong {
                        code: capability.code(),
                        length,
                    })?;
            }
            let length = out.len() - param_len_at - 1;
            out[param_len_at] = u8::try_from(length).map_err(|_| EncodeError::FieldTooLong {
                field: "capabilities parameter",
                length,
            })?;
        }
        let length = out.len() - params_at - 1;
        out[params_at] =
            u8::try_from(length).map_err(|_| EncodeError::OptionalParametersTooLong { length })?;
        Ok(())
    }
}

/// The contexts of a session's two directions after the OPEN exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// For decoding what the peer sends.
    pub receive: Context,
    /// For encoding what we send.
    pub send: Context,
}

/// RFC 6793 §4, RFC 8654 §3 and RFC 7911 §4: four-octet AS and extended messages apply when
/// both OPENs carry the capability; path identifiers flow from us to the peer for a family when
/// we advertised send and the peer receive, and the other way round.
pub fn negotiate(local: &Open, remote: &Open) -> Negotiated {
    let both = |code: u8| {
        local.capabilities().any(|c| c.code() == code)
            && remote.capabilities().any(|c| c.code() == code)
    };
    let four_octet_as = both(capability_code::FOUR_OCTET_AS);
    let extended_message = both(capability_code::EXTENDED_MESSAGE);
    let add_path_of = |open: &Open| -> Vec<(Family, AddPathDirection)> {
        open.capabilities()
            .filter_map(|c| match c {
                Capability::AddPath { families } => Some(families.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    };
    let (ours, theirs) = (add_path_of(local), add_path_of(remote));
    let mut receive = AddPathFamilies::NONE;
    let mut send = AddPathFamilies::NONE;
    for (family, direction) in &ours {
        let peer = theirs.iter().find(|(f, _)| f == family).map(|(_, d)| *d);
        if let Some(peer) = peer {
            if direction.receives() && peer.sends() {
                receive = receive.with(*family);
            }
            if direction.sends() && peer.receives() {
                send = send.with(*family);
            }
        }
    }
    Negotiated {
        receive: Context {
            four_octet_as,
            extended_message,
            add_path: receive,
        },
        send: Context {
            four_octet_as,
            extended_message,
            add_path: send,
        },
    }
}
