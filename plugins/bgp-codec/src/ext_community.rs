//! Extended communities (RFC 4360) with the ones EVPN needs decoded: route targets of the three
//! kinds, the encapsulation community (RFC 9012 §4.1, VXLAN = 8), the router's MAC
//! (RFC 9135 §8.1) and MAC mobility with its sticky bit (RFC 7432 §7.7). Anything else, and any
//! of these with reserved bits set, is kept as the eight bytes it came as, so it round-trips.

use std::fmt;
use std::net::Ipv4Addr;

use serde::Serialize;

use super::evpn::MacAddress;

/// RFC 9012 §14.5 tunnel type for VXLAN.
pub const TUNNEL_TYPE_VXLAN: u16 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExtendedCommunity {
    /// Type 0x00, subtype 0x02.
    RouteTargetAs2 { asn: u16, assigned: u32 },
    /// Type 0x01, subtype 0x02.
    RouteTargetIpv4 { addr: Ipv4Addr, assigned: u16 },
    /// Type 0x02, subtype 0x02.
    RouteTargetAs4 { asn: u32, assigned: u16 },
    /// Type 0x03, subtype 0x0c, four reserved zero bytes and the tunnel type.
    Encapsulation { tunnel_type: u16 },
    /// Type 0x06, subtype 0x03.
    RouterMac { mac: MacAddress },
    /// Type 0x06, subtype 0x00: flags (bit 0 = sticky/static MAC), reserved, sequence number.
    MacMobility { sticky: bool, sequence: u32 },
    /// Any other community, as its eight bytes.
    Unknown {
        #[serde(serialize_with = "crate::hex::serialize_hex")]
        bytes: [u8; 8],
    },
}

impl ExtendedCommunity {
    pub const LEN: usize = 8;

    pub fn from_bytes(bytes: [u8; 8]) -> ExtendedCommunity {
        let [t, s, a, b, c, d, e, f] = bytes;
        match (t, s) {
            (0x00, 0x02) => ExtendedCommunity::RouteTargetAs2 {
                asn: u16::from_be_bytes([a, b]),
                assigned: u32::from_be_bytes([c, d, e, f]),
            },
            (0x01, 0x02) => ExtendedCommunity::RouteTargetIpv4 {
                addr: Ipv4Addr::new(a, b, c, d),
                assigned: u16::from_be_bytes([e, f]),
            },
            (0x02, 0x02) => ExtendedCommunity::RouteTargetAs4 {
                asn: u32::from_be_bytes([a, b, c, d]),
                assigned: u16::from_be_bytes([e, f]),
            },
            (0x03, 0x0c) if [a, b, c, d] == [0; 4] => ExtendedCommunity::Encapsulation {
                tunnel_type: u16::from_be_bytes([e, f]),
            },
            (0x06, 0x03) => ExtendedCommunity::RouterMac {
                mac: MacAddress([a, b, c, d, e, f]),
            },
            (0x06, 0x00) if a & !1 == 0 && b == 0 => ExtendedCommunity::MacMobility {
                sticky: a & 1 == 1,
                sequence: u32::from_be_bytes([c, d, e, f]),
            },
            _ => ExtendedCommunity::Unknown { bytes },
        }
    }

    pub fn to_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        match *self {
            ExtendedCommunity::RouteTargetAs2 { asn, assigned } => {
                out[..2].copy_from_slice(&[0x00, 0x02]);
                out[2..4].copy_from_slice(&asn.to_be_bytes());
                out[4..].copy_from_slice(&assigned.to_be_bytes());
            }
            ExtendedCommunity::RouteTargetIpv4 { addr, assigned } => {
                out[..2].copy_from_slice(&[0x01, 0x02]);
                out[2..6].copy_from_slice(&addr.octets());
                out[6..].copy_from_slice(&assigned.to_be_bytes());
            }
            ExtendedCommunity::RouteTargetAs4 { asn, assigned } => {
                out[..2].copy_from_slice(&[0x02, 0x02]);
                out[2..6].copy_from_slice(&asn.to_be_bytes());
                out[6..].copy_from_slice(&assigned.to_be_bytes());
            }
            ExtendedCommunity::Encapsulation { tunnel_type } => {
                out[..2].copy_from_slice(&[0x03, 0x0c]);
                out[6..].copy_from_slice(&tunnel_type.to_be_bytes());
            }
            ExtendedCommunity::RouterMac { mac } => {
                out[..2].copy_from_slice(&[0x06, 0x03]);
                out[2..].copy_from_slice(&mac.0);
            }
            ExtendedCommunity::MacMobility { sticky, sequence } => {
                out[..2].copy_from_slice(&[0x06, 0x00]);
                out[2] = u8::from(sticky);
                out[4..].copy_from_slice(&sequence.to_be_bytes());
            }
            ExtendedCommunity::Unknown { bytes } => out = bytes,
        }
        out
    }

    /// Whether the community is transitive across AS boundaries (RFC 4360 §2: bit 6 of the type).
    pub fn is_transitive(&self) -> bool {
        self.to_bytes()[0] & 0x40 == 0
    }
}

impl fmt::Display for ExtendedCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtendedCommunity::RouteTargetAs2 { asn, assigned } => write!(f, "rt {asn}:{assigned}"),
            ExtendedCommunity::RouteTargetIpv4 { addr, assigned } => {
                write!(f, "rt {addr}:{assigned}")
            }
            ExtendedCommunity::RouteTargetAs4 { asn, assigned } => write!(f, "rt {asn}:{assigned}"),
            ExtendedCommunity::Encapsulation { tunnel_type } => write!(f, "encap {tunnel_type}"),
            ExtendedCommunity::RouterMac { mac } => write!(f, "router-mac {mac}"),
            ExtendedCommunity::MacMobility { sticky, sequence } => {
                write!(
                    f,
                    "mac-mobility {sequence}{}",
                    if *sticky { " sticky" } else { "" }
                )
            }
            ExtendedCommunity::Unknown { bytes } => write!(f, "{}", crate::hex::to_hex(bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_vectors_decode_and_encode_both_ways() {
        let cases: [([u8; 8], ExtendedCommunity); 8] = [
            // RT 65000:100 (type 0x00 subtype 0x02).
            (
                [0x00, 0x02, 0xfd, 0xe8, 0, 0, 0, 100],
                ExtendedCommunity::RouteTargetAs2 {
                    asn: 65000,
                    assigned: 100,
                },
            ),
            // RT 10.0.0.1:5.
            (
                [0x01, 0x02, 10, 0, 0, 1, 0, 5],
                ExtendedCommunity::RouteTargetIpv4 {
                    addr: Ipv4Addr::new(10, 0, 0, 1),
                    assigned: 5,
                },
            ),
            // RT 4200000000:7.
            (
                [0x02, 0x02, 0xfa, 0x56, 0xea, 0x00, 0, 7],
                ExtendedCommunity::RouteTargetAs4 {
                    asn: 4_200_000_000,
                    assigned: 7,
                },
            ),
            // Encapsulation VXLAN: what FRR attaches to every EVPN route.
            (
                [0x03, 0x0c, 0, 0, 0, 0, 0, 8],
                ExtendedCommunity::Encapsulation { tunnel_type: 8 },
            ),
            // Router's MAC 52:54:00:12:34:56.
            (
                [0x06, 0x03, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
                ExtendedCommunity::RouterMac {
                    mac: MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
                },
            ),
            // MAC mobility, sticky, sequence 3.
            (
                [0x06, 0x00, 0x01, 0x00, 0, 0, 0, 3],
                ExtendedCommunity::MacMobility {
                    sticky: true,
                    sequence: 3,
                },
            ),
            // MAC mobility with a reserved flag bit set: kept as bytes.
            (
                [0x06, 0x00, 0x02, 0x00, 0, 0, 0, 3],
                ExtendedCommunity::Unknown {
                    bytes: [0x06, 0x00, 0x02, 0x00, 0, 0, 0, 3],
                },
            ),
            // Non-transitive opaque (0x43): unknown, kept.
            (
                [0x43, 0x01, 1, 2, 3, 4, 5, 6],
                ExtendedCommunity::Unknown {
                    bytes: [0x43, 0x01, 1, 2, 3, 4, 5, 6],
                },
            ),
        ];
        for (bytes, community) in cases {
            assert_eq!(
                ExtendedCommunity::from_bytes(bytes),
                community,
                "{bytes:02x?}"
            );
            assert_eq!(community.to_bytes(), bytes);
        }
        assert!(!ExtendedCommunity::from_bytes(cases[7].0).is_transitive());
        assert!(cases[3].1.is_transitive());
    }
}
