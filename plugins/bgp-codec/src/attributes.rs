//! Path attributes (RFC 4271 §5 and the RFCs that add attributes), decoded once into
//! [`PathAttributes`]: a value that can be hashed and interned by the RIB. MP_REACH_NLRI and
//! MP_UNREACH_NLRI are not part of it: they carry routes, not route attributes, and live in
//! [`super::Update`].
//!
//! Each attribute's RFC 7606 §7 rule sits next to its decoder in [`PathAttributes::decode_known`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Serialize, Serializer};

use super::as_path::{AsPath, Asn};
use super::evpn::Label;
use super::ext_community::ExtendedCommunity;
use super::{Context, EncodeError};

/// Attribute flag bits (RFC 4271 §4.3).
pub mod flags {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Attribute type codes (IANA "BGP Path Attributes").
pub mod type_code {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const PMSI_TUNNEL: u8 = 22;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// The known attributes in the order they are encoded (ascending type code, as RFC 4271 §5
/// recommends and RFC 7606 §5.1 relies on for MP_REACH_NLRI coming early).
pub(crate) const ENCODE_ORDER: [u8; 17] =
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 22, 32];

/// The Optional and Transitive bits a known attribute must carry; `None` for unknown codes.
pub(crate) fn expected_flags(code: u8) -> Option<u8> {
    use flags::{OPTIONAL, TRANSITIVE};
    use type_code::*;
    Some(match code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => TRANSITIVE,
        MULTI_EXIT_DISC | ORIGINATOR_ID | CLUSTER_LIST | MP_REACH_NLRI | MP_UNREACH_NLRI => {
            OPTIONAL
        }
        AGGREGATOR | COMMUNITIES | EXTENDED_COMMUNITIES | AS4_PATH | AS4_AGGREGATOR
        | PMSI_TUNNEL | LARGE_COMMUNITIES => OPTIONAL | TRANSITIVE,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Igp,
    Egp,
    Incomplete,
}

/// AGGREGATOR / AS4_AGGREGATOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Aggregator {
    pub asn: Asn,
    pub address: Ipv4Addr,
}

/// A standard community (RFC 1997), printed `AS:VALUE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    pub const NO_EXPORT: Community = Community(0xffff_ff01);
    pub const NO_ADVERTISE: Community = Community(0xffff_ff02);
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xffff_ff03);
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff)
    }
}

/// A large community (RFC 8092), printed `GLOBAL:LOCAL1:LOCAL2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global_admin: u32,
    pub local_data1: u32,
    pub local_data2: u32,
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.global_admin, self.local_data1, self.local_data2
        )
    }
}

macro_rules! serialize_as_display {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    )*};
}
serialize_as_display!(Community, LargeCommunity);

/// RFC 6514 §5 tunnel type for ingress replication, what EVPN over VXLAN uses (RFC 8365 §9).
pub const PMSI_TUNNEL_INGRESS_REPLICATION: u8 = 6;

/// The PMSI tunnel attribute (RFC 6514 §5) of an EVPN type 3 route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PmsiTunnel {
    /// Flags; bit 0 is Leaf Information Required.
    pub flags: u8,
    /// The VNI under VXLAN (RFC 8365 §5.1.3).
    pub label: Label,
    pub tunnel: PmsiTunnelId,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "tunnel_type", rename_all = "snake_case")]
pub enum PmsiTunnelId {
    /// Type 6: the address to replicate BUM traffic to (the originating VTEP).
    IngressReplication { endpoint: IpAddr },
    /// Any other type, its identifier kept as bytes.
    Other {
        code: u8,
        #[serde(serialize_with = "crate::hex::serialize_hex")]
        identifier: Vec<u8>,
    },
}

/// An attribute the codec does not parse, kept with its flags as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RawAttribute {
    /// The flags as received, without the Extended Length bit (the encoder sets it by length).
    pub flags: u8,
    pub type_code: u8,
    #[serde(serialize_with = "crate::hex::serialize_hex")]
    pub value: Vec<u8>,
}

/// The attributes of a route. An absent optional attribute is `None` or empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct PathAttributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_path: Option<AsPath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    #[serde(skip_serializing_if = "is_false")]
    pub atomic_aggregate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregator: Option<Aggregator>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub originator_id: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster_list: Vec<Ipv4Addr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extended_communities: Vec<ExtendedCommunity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as4_path: Option<AsPath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as4_aggregator: Option<Aggregator>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pmsi_tunnel: Option<PmsiTunnel>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub large_communities: Vec<LargeCommunity>,
    /// Unrecognized optional attributes in type-code order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<RawAttribute>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Why a known attribute could not be taken (RFC 7606 §2 approaches other than session reset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Malformed {
    TreatAsWithdraw(String),
    Discard(String),
}

fn exact<const N: usize>(value: &[u8], name: &str) -> Result<[u8; N], Malformed> {
    value.try_into().map_err(|_| {
        Malformed::TreatAsWithdraw(format!("{name} length {} is not {N}", value.len()))
    })
}

fn multiple_of(value: &[u8], unit: usize, name: &str) -> Result<(), Malformed> {
    if value.is_empty() || value.len() % unit != 0 {
        return Err(Malformed::TreatAsWithdraw(format!(
            "{name} length {} is not a non-zero multiple of {unit}",
            value.len()
        )));
    }
    Ok(())
}

fn be32(chunk: &[u8]) -> u32 {
    chunk.try_into().map(u32::from_be_bytes).unwrap_or_default()
}

fn decode_aggregator(value: &[u8], four_octet: bool, name: &str) -> Result<Aggregator, Malformed> {
    // RFC 7606 §7.7 (AGGREGATOR) and RFC 6793 §6 (AS4_AGGREGATOR): attribute discard.
    match (value, four_octet) {
        ([a, b, w, x, y, z], false) => Ok(Aggregator {
            asn: Asn(u32::from(u16::from_be_bytes([*a, *b]))),
            address: Ipv4Addr::new(*w, *x, *y, *z),
        }),
        ([a, b, c, d, w, x, y, z], true) => Ok(Aggregator {
            asn: Asn(u32::from_be_bytes([*a, *b, *c, *d])),
            address: Ipv4Addr::new(*w, *x, *y, *z),
        }),
        _ => Err(Malformed::Discard(format!(
            "{name} length {} is not {}",
            value.len(),
            if four_octet { 8 } else { 6 }
        ))),
    }
}

impl PathAttributes {
    /// Decodes the value of known attribute `code` into `self`; returns `Ok(false)` for codes it
    /// does not know (and for MP_REACH_NLRI / MP_UNREACH_NLRI, which [`super::Update`] handles).
    pub(crate) fn decode_known(
        &mut self,
        code: u8,
        value: &[u8],
        ctx: &Context,
    ) -> Result<bool, Malformed> {
        use type_code::*;
        match code {
            ORIGIN => {
                // RFC 7606 §7.1: a bad length or an undefined value is treat-as-withdraw.
                self.origin = Some(match exact::<1>(value, "ORIGIN")? {
                    [0] => Origin::Igp,
                    [1] => Origin::Egp,
                    [2] => Origin::Incomplete,
                    [other] => {
                        return Err(Malformed::TreatAsWithdraw(format!(
                            "ORIGIN value {other} is not 0, 1 or 2"
                        )))
                    }
                });
            }
            AS_PATH => {
                // RFC 7606 §7.2: a malformed AS_PATH is treat-as-withdraw.
                self.as_path = Some(
                    AsPath::decode(value, ctx.four_octet_as).map_err(Malformed::TreatAsWithdraw)?,
                );
            }
            NEXT_HOP => {
                // RFC 7606 §7.3: a length other than 4 is treat-as-withdraw; whether the address
                // is usable is the speaker's check (it knows its own addresses).
                self.next_hop = Some(Ipv4Addr::from(exact::<4>(value, "NEXT_HOP")?));
            }
            MULTI_EXIT_DISC => {
                // RFC 7606 §7.4.
                self.med = Some(u32::from_be_bytes(exact::<4>(value, "MULTI_EXIT_DISC")?));
            }
            LOCAL_PREF => {
                // RFC 7606 §7.5 (ignoring it on eBGP sessions is the speaker's job).
                self.local_pref = Some(u32::from_be_bytes(exact::<4>(value, "LOCAL_PREF")?));
            }
            ATOMIC_AGGREGATE => {
                // RFC 7606 §7.6: a length other than 0 is attribute discard.
                if !value.is_empty() {
                    return Err(Malformed::Discard(format!(
                        "ATOMIC_AGGREGATE length {} is not 0",
                        value.len()
                    )));
                }
                self.atomic_aggregate = true;
            }
            AGGREGATOR => {
                self.aggregator = Some(decode_aggregator(value, ctx.four_octet_as, "AGGREGATOR")?);
            }
            COMMUNITIES => {
                // RFC 7606 §7.8.
                multiple_of(value, 4, "COMMUNITIES")?;
                self.communities = value.chunks_exact(4).map(|c| Community(be32(c))).collect();
            }
            ORIGINATOR_ID => {
                // RFC 7606 §7.9.
                self.originator_id = Some(Ipv4Addr::from(exact::<4>(value, "ORIGINATOR_ID")?));
            }
            CLUSTER_LIST => {
                // RFC 7606 §7.10.
                multiple_of(value, 4, "CLUSTER_LIST")?;
                self.cluster_list = value
                    .chunks_exact(4)
                    .map(|c| Ipv4Addr::from(be32(c)))
                    .collect();
            }
            EXTENDED_COMMUNITIES => {
                // RFC 7606 §7.14.
                multiple_of(value, 8, "EXTENDED_COMMUNITIES")?;
                self.extended_communities = value
                    .chunks_exact(8)
                    .map(|c| ExtendedCommunity::from_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect();
            }
            AS4_PATH => {
                // RFC 6793 §3: a four-octet speaker never sends AS4_PATH to another, and §6:
                // a malformed AS4_PATH is attribute discard.
                if ctx.four_octet_as {
                    return Err(Malformed::Discard(
                        "AS4_PATH on a four-octet AS session".to_string(),
                    ));
                }
                self.as4_path = Some(AsPath::decode(value, true).map_err(Malformed::Discard)?);
            }
            AS4_AGGREGATOR => {
                if ctx.four_octet_as {
                    return Err(Malformed::Discard(
                        "AS4_AGGREGATOR on a four-octet AS session".to_string(),
                    ));
                }
                self.as4_aggregator = Some(decode_aggregator(value, true, "AS4_AGGREGATOR")?);
            }
            PMSI_TUNNEL => {
                // RFC 7606 names no rule for PMSI_TUNNEL; it decides where BUM traffic goes, so
                // its §2 default for route-affecting attributes applies: treat-as-withdraw.
                let [flags, tunnel_type, l0, l1, l2] = match value.get(..5) {
                    Some(&[a, b, c, d, e]) => [a, b, c, d, e],
                    _ => {
                        return Err(Malformed::TreatAsWithdraw(format!(
                            "PMSI_TUNNEL length {} is less than 5",
                            value.len()
                        )))
                    }
                };
                let identifier = &value[5..];
                let tunnel = if tunnel_type == PMSI_TUNNEL_INGRESS_REPLICATION {
                    let endpoint = if let Ok(v4) = <[u8; 4]>::try_from(identifier) {
                        IpAddr::from(v4)
                    } else if let Ok(v6) = <[u8; 16]>::try_from(identifier) {
                        IpAddr::from(v6)
                    } else {
                        return Err(Malformed::TreatAsWithdraw(format!(
                            "PMSI_TUNNEL ingress replication endpoint of {} bytes is not 4 or 16",
                            identifier.len()
                        )));
                    };
                    PmsiTunnelId::IngressReplication { endpoint }
                } else {
                    PmsiTunnelId::Other {
                        code: tunnel_type,
                        identifier: identifier.to_vec(),
                    }
                };
                self.pmsi_tunnel = Some(PmsiTunnel {
                    flags,
                    label: Label::from_wire(u32::from_be_bytes([0, l0, l1, l2])),
                    tunnel,
                });
            }
            LARGE_COMMUNITIES => {
                // RFC 8092 §6: treat-as-withdraw.
                multiple_of(value, 12, "LARGE_COMMUNITIES")?;
                self.large_communities = value
                    .chunks_exact(12)
                    .map(|c| LargeCommunity {
                        global_admin: be32(&c[0..4]),
                        local_data1: be32(&c[4..8]),
                        local_data2: be32(&c[8..12]),
                    })
                    .collect();
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Encodes known attribute `code` when present; codes it does not hold are skipped.
    pub(crate) fn encode_known(
        &self,
        code: u8,
        ctx: &Context,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        use type_code::*;
        let attr_flags = expected_flags(code).unwrap_or(0);
        let mut put = |value: &dyn Fn(&mut Vec<u8>) -> Result<(), EncodeError>| {
            write_attribute(out, attr_flags, code, value)
        };
        match code {
            ORIGIN => {
                if let Some(origin) = self.origin {
                    put(&|o| {
                        o.push(origin as u8);
                        Ok(())
                    })?;
                }
            }
            AS_PATH => {
                if let Some(path) = &self.as_path {
                    put(&|o| path.encode(ctx.four_octet_as, o))?;
                }
            }
            NEXT_HOP => {
                if let Some(nh) = self.next_hop {
                    put(&|o| {
                        o.extend_from_slice(&nh.octets());
                        Ok(())
                    })?;
                }
            }
            MULTI_EXIT_DISC => {
                if let Some(med) = self.med {
                    put(&|o| {
                        o.extend_from_slice(&med.to_be_bytes());
                        Ok(())
                    })?;
                }
            }
            LOCAL_PREF => {
                if let Some(lp) = self.local_pref {
                    put(&|o| {
                        o.extend_from_slice(&lp.to_be_bytes());
                        Ok(())
                    })?;
                }
            }
            ATOMIC_AGGREGATE if self.atomic_aggregate => {
                put(&|_| Ok(()))?;
            }
            AGGREGATOR => {
                if let Some(agg) = self.aggregator {
                    put(&|o| encode_aggregator(&agg, ctx.four_octet_as, o))?;
                }
            }
            COMMUNITIES if !self.communities.is_empty() => {
                put(&|o| {
                    for c in &self.communities {
                        o.extend_from_slice(&c.0.to_be_bytes());
                    }
                    Ok(())
                })?;
            }
            ORIGINATOR_ID => {
                if let Some(id) = self.originator_id {
                    put(&|o| {
                        o.extend_from_slice(&id.octets());
                        Ok(())
                    })?;
                }
            }
            CLUSTER_LIST if !self.cluster_list.is_empty() => {
                put(&|o| {
                    for id in &self.cluster_list {
                        o.extend_from_slice(&id.octets());
                    }
                    Ok(())
                })?;
            }
            EXTENDED_COMMUNITIES if !self.extended_communities.is_empty() => {
                put(&|o| {
                    for c in &self.extended_communities {
                        o.extend_from_slice(&c.to_bytes());
                    }
                    Ok(())
                })?;
            }
            AS4_PATH => {
                if let Some(path) = &self.as4_path {
                    put(&|o| path.encode(true, o))?;
                }
            }
            AS4_AGGREGATOR => {
                if let Some(agg) = self.as4_aggregator {
                    put(&|o| encode_aggregator(&agg, true, o))?;
                }
            }
            PMSI_TUNNEL => {
                if let Some(pmsi) = &self.pmsi_tunnel {
                    put(&|o| {
                        o.push(pmsi.flags);
                        match &pmsi.tunnel {
                            PmsiTunnelId::IngressReplication { endpoint } => {
                                o.push(PMSI_TUNNEL_INGRESS_REPLICATION);
                                o.extend_from_slice(&pmsi.label.raw().to_be_bytes()[1..]);
                                super::nlri::encode_ip(endpoint, o);
                            }
                            PmsiTunnelId::Other { code, identifier } => {
                                o.push(*code);
                                o.extend_from_slice(&pmsi.label.raw().to_be_bytes()[1..]);
                                o.extend_from_slice(identifier);
                            }
                        }
                        Ok(())
                    })?;
                }
            }
            LARGE_COMMUNITIES if !self.large_communities.is_empty() => {
                put(&|o| {
                    for c in &self.large_communities {
                        o.extend_from_slice(&c.global_admin.to_be_bytes());
                        o.extend_from_slice(&c.local_data1.to_be_bytes());
                        o.extend_from_slice(&c.local_data2.to_be_bytes());
                    }
                    Ok(())
                })?;
            }
            _ => {}
        }
        Ok(())
    }

    /// What RFC 4271 §5 asks before passing a route on: unrecognized optional non-transitive
    /// attributes are dropped, unrecognized optional transitive ones are kept with the Partial
    /// bit set. Changes memory only; decoding keeps attributes exactly as received.
    pub fn prepare_unknown_for_propagation(&mut self) {
        self.unknown
            .retain(|a| a.flags & flags::OPTIONAL != 0 && a.flags & flags::TRANSITIVE != 0);
        for attribute in &mut self.unknown {
            attribute.flags |= flags::PARTIAL;
        }
    }
}

fn encode_aggregator(
    agg: &Aggregator,
    four_octet: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if four_octet {
        out.extend_from_slice(&agg.asn.0.to_be_bytes());
    } else {
        let two = u16::try_from(agg.asn.0)
            .map_err(|_| EncodeError::AsnNeedsFourOctets { asn: agg.asn.0 })?;
        out.extend_from_slice(&two.to_be_bytes());
    }
    out.extend_from_slice(&agg.address.octets());
    Ok(())
}

/// Writes one attribute: flags, type, length (one byte, or two with Extended Length when the
/// value exceeds 255 bytes) and the value `value` writes. On error nothing is left in `out`.
pub(crate) fn write_attribute(
    out: &mut Vec<u8>,
    attr_flags: u8,
    code: u8,
    value: &dyn Fn(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[attr_flags | flags::EXTENDED_LENGTH, code, 0, 0]);
    if let Err(e) = value(out) {
        out.truncate(start);
        return Err(e);
    }
    let length = out.len() - start - 4;
    if let Ok(short) = u8::try_from(length) {
        out[start] = attr_flags & !flags::EXTENDED_LENGTH;
        out[start + 2] = short;
        out.copy_within(start + 4.., start + 3);
        out.pop();
    } else if let Ok(long) = u16::try_from(length) {
        out[start + 2..start + 4].copy_from_slice(&long.to_be_bytes());
    } else {
        out.truncate(start);
        return Err(EncodeError::AttributeTooLong {
            type_code: code,
            length,
        });
    }
    Ok(())
}
