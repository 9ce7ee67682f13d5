//! Just enough IPv4/IPv6 parsing to classify a packet: addresses, protocol and ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// The header fields policy and flow tracking look at. For ICMP echo request/reply, the
/// identifier is given as both ports so a reply can be matched to its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

impl FlowTuple {
    /// The same flow seen from the other end.
    pub fn reversed(&self) -> FlowTuple {
        FlowTuple {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }

    /// ICMP and ICMPv6 count as one protocol for policy.
    pub fn is_icmp(&self) -> bool {
        self.proto == PROTO_ICMP || self.proto == PROTO_ICMPV6
    }
}

/// Parses an IP packet; `None` when it is not a well-formed IPv4 or IPv6 header.
pub fn parse(packet: &[u8]) -> Option<FlowTuple> {
    match packet.first()? >> 4 {
        4 => parse_v4(packet),
        6 => parse_v6(packet),
        _ => None,
    }
}

fn ports(proto: u8, l4: &[u8], first_fragment: bool) -> (u16, u16) {
    if !first_fragment {
        return (0, 0);
    }
    match proto {
        PROTO_TCP | PROTO_UDP if l4.len() >= 4 => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        // Echo request/reply (v4: 8/0, v6: 128/129): the identifier.
        PROTO_ICMP if l4.len() >= 6 && (l4[0] == 8 || l4[0] == 0) => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            (id, id)
        }
        PROTO_ICMPV6 if l4.len() >= 6 && (l4[0] == 128 || l4[0] == 129) => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            (id, id)
        }
        _ => (0, 0),
    }
}

fn parse_v4(p: &[u8]) -> Option<FlowTuple> {
    if p.len() < 20 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return None;
    }
    let proto = p[9];
    let fragment_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let (src_port, dst_port) = ports(proto, &p[ihl..], fragment_offset == 0);
    Some(FlowTuple {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        proto,
        src_port,
        dst_port,
    })
}

fn parse_v6(p: &[u8]) -> Option<FlowTuple> {
    if p.len() < 40 {
        return None;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).ok()?);
    let mut next = p[6];
    let mut at = 40usize;
    let mut first_fragment = true;
    // Skip the extension headers that may precede the transport header (at most 8).
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let header = p.get(at..at + 2)?;
                next = header[0];
                at += (usize::from(header[1]) + 1) * 8;
            }
            44 => {
                let header = p.get(at..at + 8)?;
                next = header[0];
                first_fragment = u16::from_be_bytes([header[2], header[3]]) >> 3 == 0;
                at += 8;
            }
            _ => break,
        }
    }
    let (src_port, dst_port) = ports(next, p.get(at..).unwrap_or(&[]), first_fragment);
    Some(FlowTuple {
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        proto: next,
        src_port,
        dst_port,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IPv4 TCP SYN from `src:sport` to `dst:dport` (checksums left zero).
    pub(crate) fn ipv4_tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, PROTO_TCP, 0, 0, src[0], src[1], src[2], src[3],
            dst[0], dst[1], dst[2], dst[3],
        ];
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn ipv4_tcp_and_icmp() {
        let p = ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443);
        let t = parse(&p).unwrap();
        assert_eq!(t.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(t.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((t.proto, t.src_port, t.dst_port), (PROTO_TCP, 40000, 443));
        assert_eq!(t.reversed().dst_port, 40000);
        // ICMP echo request, identifier 0x1234.
        let icmp = [
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 8, 0, 0, 0, 0x12,
            0x34, 0, 1,
        ];
        let t = parse(&icmp).unwrap();
        assert!(t.is_icmp());
        assert_eq!((t.src_port, t.dst_port), (0x1234, 0x1234));
    }

    #[test]
    fn ipv4_non_first_fragment_has_no_ports() {
        let mut p = ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443);
        p[6] = 0x00;
        p[7] = 0x10;
        let t = parse(&p).unwrap();
        assert_eq!((t.src_port, t.dst_port), (0, 0));
    }

    #[test]
    fn ipv6_udp_after_a_hop_by_hop_header() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
        p.extend_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[PROTO_UDP, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0, 8, 0, 0]);
        let t = parse(&p).unwrap();
        assert_eq!((t.proto, t.src_port, t.dst_port), (PROTO_UDP, 5000, 53));
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for p in [
            &[][..],
            &[0x45][..],
            &[
                0x4f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ][..],
            &[0x60; 39][..],
            &[0x12; 64][..],
        ] {
            assert!(parse(p).is_none(), "{p:?}");
        }
        // A hop-by-hop header cut off by the end of the packet is malformed.
        let mut p = vec![0x60, 0, 0, 0, 0, 0, 0, 64];
        p.extend_from_slice(&[0; 32]);
        assert!(parse(&p).is_none());
        // A transport header cut short only loses the ports.
        let mut p = vec![0x60, 0, 0, 0, 0, 0, PROTO_TCP, 64];
        p.extend_from_slice(&[0; 32]);
        p.push(1);
        assert_eq!(parse(&p).unwrap().dst_port, 0);
    }
}
