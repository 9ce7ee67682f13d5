//! Route distinguishers (RFC 4364 §4.2): eight bytes that make a VPN route unique, in the three
//! defined types; any other type is kept as it came.

use std::fmt;
use std::net::Ipv4Addr;

use serde::Serialize;

/// A route distinguisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteDistinguisher {
    /// Type 0: two-octet AS number and a four-octet assigned number.
    As2 { asn: u16, assigned: u32 },
    /// Type 1: IPv4 address and a two-octet assigned number (what EVPN auto-derives, RFC 7432 §7.9).
    Ipv4 { addr: Ipv4Addr, assigned: u16 },
    /// Type 2: four-octet AS number and a two-octet assigned number.
    As4 { asn: u32, assigned: u16 },
    /// Any other type, kept so the route can be passed on.
    Other { rd_type: u16, value: [u8; 6] },
}

impl RouteDistinguisher {
    pub const LEN: usize = 8;

    pub fn from_bytes(bytes: [u8; 8]) -> RouteDistinguisher {
        let [t0, t1, a, b, c, d, e, f] = bytes;
        match u16::from_be_bytes([t0, t1]) {
            0 => RouteDistinguisher::As2 {
                asn: u16::from_be_bytes([a, b]),
                assigned: u32::from_be_bytes([c, d, e, f]),
            },
            1 => RouteDistinguisher::Ipv4 {
                addr: Ipv4Addr::new(a, b, c, d),
                assigned: u16::from_be_bytes([e, f]),
            },
            2 => RouteDistinguisher::As4 {
                asn: u32::from_be_bytes([a, b, c, d]),
                assigned: u16::from_be_bytes([e, f]),
            },
            rd_type => RouteDistinguisher::Other {
                rd_type,
                value: [a, b, c, d, e, f],
            },
        }
    }

    pub fn to_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        match *self {
            RouteDistinguisher::As2 { asn, assigned } => {
                out[2..4].copy_from_slice(&asn.to_be_bytes());
                out[4..8].copy_from_slice(&assigned.to_be_bytes());
            }
            RouteDistinguisher::Ipv4 { addr, assigned } => {
                out[1] = 1;
                out[2..6].copy_from_slice(&addr.octets());
                out[6..8].copy_from_slice(&assigned.to_be_bytes());
            }
            RouteDistinguisher::As4 { asn, assigned } => {
                out[1] = 2;
                out[2..6].copy_from_slice(&asn.to_be_bytes());
                out[6..8].copy_from_slice(&assigned.to_be_bytes());
            }
            RouteDistinguisher::Other { rd_type, value } => {
                out[0..2].copy_from_slice(&rd_type.to_be_bytes());
                out[2..8].copy_from_slice(&value);
            }
        }
        out
    }

    /// The RD type field.
    pub fn rd_type(&self) -> u16 {
        match self {
            RouteDistinguisher::As2 { .. } => 0,
            RouteDistinguisher::Ipv4 { .. } => 1,
            RouteDistinguisher::As4 { .. } => 2,
            RouteDistinguisher::Other { rd_type, .. } => *rd_type,
        }
    }
}

/// `ADMIN:ASSIGNED` as operators write it (`65000:100`, `192.0.2.1:7`); types 0 and 2 look the
/// same here, [`RouteDistinguisher::rd_type`] tells them apart. Other types print as
/// `TYPE:HEX`.
impl fmt::Display for RouteDistinguisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteDistinguisher::As2 { asn, assigned } => write!(f, "{asn}:{assigned}"),
            RouteDistinguisher::Ipv4 { addr, assigned } => write!(f, "{addr}:{assigned}"),
            RouteDistinguisher::As4 { asn, assigned } => write!(f, "{asn}:{assigned}"),
            RouteDistinguisher::Other { rd_type, value } => {
                write!(f, "{rd_type}:{}", crate::hex::to_hex(value))
            }
        }
    }
}

/// JSON: `{"type": 0, "value": "65000:100"}`.
impl Serialize for RouteDistinguisher {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("RouteDistinguisher", 2)?;
        s.serialize_field("type", &self.rd_type())?;
        s.serialize_field("value", &self.to_string())?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_three_types_and_an_unknown_round_trip() {
        let cases: [([u8; 8], RouteDistinguisher, &str); 4] = [
            (
                // Type 0, AS 65000, assigned 100.
                [0, 0, 0xfd, 0xe8, 0, 0, 0, 100],
                RouteDistinguisher::As2 {
                    asn: 65000,
                    assigned: 100,
                },
                "65000:100",
            ),
            (
                // Type 1, 192.0.2.1, assigned 7.
                [0, 1, 192, 0, 2, 1, 0, 7],
                RouteDistinguisher::Ipv4 {
                    addr: Ipv4Addr::new(192, 0, 2, 1),
                    assigned: 7,
                },
                "192.0.2.1:7",
            ),
            (
                // Type 2, AS 4200000000 (0xfa56ea00), assigned 9.
                [0, 2, 0xfa, 0x56, 0xea, 0x00, 0, 9],
                RouteDistinguisher::As4 {
                    asn: 4_200_000_000,
                    assigned: 9,
                },
                "4200000000:9",
            ),
            (
                [0, 7, 1, 2, 3, 4, 5, 6],
                RouteDistinguisher::Other {
                    rd_type: 7,
                    value: [1, 2, 3, 4, 5, 6],
                },
                "7:010203040506",
            ),
        ];
        for (bytes, rd, text) in cases {
            assert_eq!(RouteDistinguisher::from_bytes(bytes), rd);
            assert_eq!(rd.to_bytes(), bytes);
            assert_eq!(rd.to_string(), text);
        }
    }
}
