//! L2VPN EVPN NLRI (AFI 25 / SAFI 70): RFC 7432 route types 1 to 4 and RFC 9136 type 5, in the
//! VXLAN flavour of RFC 8365, where the 3-byte label field carries the 24-bit VNI whole (not
//! shifted by 4 as an MPLS label is). Unknown route types are kept as their bytes (RFC 7432 §7:
//! a speaker passes on route types it does not understand).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Serialize, Serializer};

use super::nlri::{
    decode_ip_by_bits, encode_ip, ip_bits, IpPrefix, Ipv4Prefix, Ipv6Prefix, WireNlri,
};
use super::rd::RouteDistinguisher;
use super::reader::Reader;
use super::{EncodeError, Family};

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddress(pub [u8; 6]);

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// An Ethernet segment identifier (RFC 7432 §5); all zero for a single-homed site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetSegmentId(pub [u8; 10]);

impl fmt::Display for EthernetSegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A VXLAN network identifier: 24 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Vni(u32);

impl Vni {
    pub const MAX: u32 = 0x00ff_ffff;

    /// `None` when `value` does not fit 24 bits.
    pub fn new(value: u32) -> Option<Vni> {
        (value <= Vni::MAX).then_some(Vni(value))
    }

    pub fn get(&self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The raw 3-byte label field of an EVPN route. Under VXLAN (RFC 8365 §5.1.3) it is the VNI,
/// all 24 bits; under MPLS the label is the high 20 bits. The codec keeps the field as it came
/// and lets the user of the route say which reading applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Label(u32);

impl Label {
    /// The field carrying `vni`, as RFC 8365 encodes it.
    pub fn from_vni(vni: Vni) -> Label {
        Label(vni.0)
    }

    /// The field carrying an MPLS label (20 bits, `None` when larger) with the bottom-of-stack bit.
    pub fn from_mpls(label: u32, bottom_of_stack: bool) -> Option<Label> {
        (label < 1 << 20).then(|| Label(label << 4 | u32::from(bottom_of_stack)))
    }

    /// The field with this 24-bit value; `None` when `value` does not fit 24 bits.
    pub fn from_raw(value: u32) -> Option<Label> {
        (value <= 0x00ff_ffff).then_some(Label(value))
    }

    /// The 24-bit value read from the wire (the caller read three bytes).
    pub(crate) fn from_wire(value: u32) -> Label {
        Label(value & 0x00ff_ffff)
    }

    /// The 24-bit field as it is on the wire.
    pub fn raw(&self) -> u32 {
        self.0
    }

    /// The VNI this field carries under VXLAN.
    pub fn vni(&self) -> Vni {
        Vni(self.0)
    }

    /// The MPLS label this field carries under MPLS encapsulation.
    pub fn mpls_label(&self) -> u32 {
        self.0 >> 4
    }

    fn decode(reader: &mut Reader<'_>) -> Option<Label> {
        reader.u24().map(Label)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_be_bytes()[1..]);
    }
}

/// Type 1 (RFC 7432 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EthernetAutoDiscovery {
    pub rd: RouteDistinguisher,
    pub esi: EthernetSegmentId,
    pub ethernet_tag: u32,
    pub label: Label,
}

/// Type 2 (RFC 7432 §7.2): a MAC, optionally with its IP, behind the advertising VTEP.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct MacIpAdvertisement {
    pub rd: RouteDistinguisher,
    pub esi: EthernetSegmentId,
    pub ethernet_tag: u32,
    pub mac: MacAddress,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The L2 VNI.
    pub label1: Label,
    /// The L3 VNI for symmetric IRB (RFC 9135), when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label2: Option<Label>,
}

/// Type 3 (RFC 7432 §7.3): "send BUM traffic for this VNI to me"; the VNI and the tunnel
/// type ride in the PMSI tunnel attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct InclusiveMulticast {
    pub rd: RouteDistinguisher,
    pub ethernet_tag: u32,
    pub originator: IpAddr,
}

/// Type 4 (RFC 7432 §7.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EthernetSegment {
    pub rd: RouteDistinguisher,
    pub esi: EthernetSegmentId,
    pub originator: IpAddr,
}

/// Type 5 (RFC 9136 §3.1): an IP prefix in a tenant VRF; the prefix and gateway share a family.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct IpPrefixRoute {
    pub rd: RouteDistinguisher,
    pub esi: EthernetSegmentId,
    pub ethernet_tag: u32,
    pub prefix: IpPrefix,
    pub gateway: IpAddr,
    /// The L3 VNI.
    pub label: Label,
}

/// One EVPN route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "route_type", rename_all = "snake_case")]
pub enum EvpnRoute {
    EthernetAutoDiscovery(EthernetAutoDiscovery),
    MacIp(MacIpAdvertisement),
    InclusiveMulticast(InclusiveMulticast),
    EthernetSegment(EthernetSegment),
    IpPrefix(IpPrefixRoute),
    Unknown {
        code: u8,
        #[serde(serialize_with = "crate::hex::serialize_hex")]
        value: Vec<u8>,
    },
}

impl EvpnRoute {
    /// The route type code on the wire.
    pub fn route_type(&self) -> u8 {
        match self {
            EvpnRoute::EthernetAutoDiscovery(_) => 1,
            EvpnRoute::MacIp(_) => 2,
            EvpnRoute::InclusiveMulticast(_) => 3,
            EvpnRoute::EthernetSegment(_) => 4,
            EvpnRoute::IpPrefix(_) => 5,
            EvpnRoute::Unknown { code, .. } => *code,
        }
    }

    /// The route distinguisher, `None` for unknown route types.
    pub fn rd(&self) -> Option<RouteDistinguisher> {
        match self {
            EvpnRoute::EthernetAutoDiscovery(r) => Some(r.rd),
            EvpnRoute::MacIp(r) => Some(r.rd),
            EvpnRoute::InclusiveMulticast(r) => Some(r.rd),
            EvpnRoute::EthernetSegment(r) => Some(r.rd),
            EvpnRoute::IpPrefix(r) => Some(r.rd),
            EvpnRoute::Unknown { .. } => None,
        }
    }
}

fn need<T>(value: Option<T>, route_type: u8, field: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("EVPN route type {route_type}: {field} truncated"))
}

fn rd(reader: &mut Reader<'_>, t: u8) -> Result<RouteDistinguisher, String> {
    need(reader.array::<8>(), t, "route distinguisher").map(RouteDistinguisher::from_bytes)
}

fn esi(reader: &mut Reader<'_>, t: u8) -> Result<EthernetSegmentId, String> {
    need(reader.array::<10>(), t, "ESI").map(EthernetSegmentId)
}

fn originator(reader: &mut Reader<'_>, t: u8) -> Result<IpAddr, String> {
    let bits = need(reader.u8(), t, "originator IP length")?;
    match decode_ip_by_bits(reader, bits, "originator IP") {
        Ok(Some(ip)) => Ok(ip),
        Ok(None) => Err(format!("EVPN route type {t}: originator IP length 0")),
        Err(e) => Err(format!("EVPN route type {t}: {e}")),
    }
}

fn decode_route(code: u8, value: &[u8]) -> Result<EvpnRoute, String> {
    let mut r = Reader::new(value);
    let t = code;
    let route = match code {
        1 => EvpnRoute::EthernetAutoDiscovery(EthernetAutoDiscovery {
            rd: rd(&mut r, t)?,
            esi: esi(&mut r, t)?,
            ethernet_tag: need(r.u32(), t, "Ethernet tag")?,
            label: need(Label::decode(&mut r), t, "label")?,
        }),
        2 => {
            let rd = rd(&mut r, t)?;
            let esi = esi(&mut r, t)?;
            let ethernet_tag = need(r.u32(), t, "Ethernet tag")?;
            let mac_bits = need(r.u8(), t, "MAC length")?;
            if mac_bits != 48 {
                return Err(format!(
                    "EVPN route type 2: MAC length {mac_bits} bits is not 48"
                ));
            }
            let mac = MacAddress(need(r.array::<6>(), t, "MAC")?);
            let ip_bits = need(r.u8(), t, "IP length")?;
            let ip = decode_ip_by_bits(&mut r, ip_bits, "IP")
                .map_err(|e| format!("EVPN route type 2: {e}"))?;
            let label1 = need(Label::decode(&mut r), t, "label 1")?;
            let label2 = if r.is_empty() {
                None
            } else {
                Some(need(Label::decode(&mut r), t, "label 2")?)
            };
            EvpnRoute::MacIp(MacIpAdvertisement {
                rd,
                esi,
                ethernet_tag,
                mac,
                ip,
                label1,
                label2,
            })
        }
        3 => EvpnRoute::InclusiveMulticast(InclusiveMulticast {
            rd: rd(&mut r, t)?,
            ethernet_tag: need(r.u32(), t, "Ethernet tag")?,
            originator: originator(&mut r, t)?,
        }),
        4 => EvpnRoute::EthernetSegment(EthernetSegment {
            rd: rd(&mut r, t)?,
            esi: esi(&mut r, t)?,
            originator: originator(&mut r, t)?,
        }),
        5 => {
            // RFC 9136 §3.1: 34 bytes for IPv4, 58 for IPv6; the length tells the family.
            let ipv6 = match value.len() {
                34 => false,
                58 => true,
                other => {
                    return Err(format!(
                        "EVPN route type 5 is {other} bytes, not 34 (IPv4) or 58 (IPv6)"
                    ))
                }
            };
            let rd = rd(&mut r, t)?;
            let esi = esi(&mut r, t)?;
            let ethernet_tag = need(r.u32(), t, "Ethernet tag")?;
            let len = need(r.u8(), t, "IP prefix length")?;
            let (prefix, gateway) = if ipv6 {
                let addr = Ipv6Addr::from(need(r.array::<16>(), t, "IP prefix")?);
                let prefix = Ipv6Prefix::new(addr, len)
                    .filter(|p| p.addr() == addr)
                    .ok_or_else(|| format!("EVPN route type 5: bad IPv6 prefix {addr}/{len}"))?;
                let gw = Ipv6Addr::from(need(r.array::<16>(), t, "gateway IP")?);
                (IpPrefix::V6(prefix), IpAddr::V6(gw))
            } else {
                let addr = Ipv4Addr::from(need(r.array::<4>(), t, "IP prefix")?);
                let prefix = Ipv4Prefix::new(addr, len)
                    .filter(|p| p.addr() == addr)
                    .ok_or_else(|| format!("EVPN route type 5: bad IPv4 prefix {addr}/{len}"))?;
                let gw = Ipv4Addr::from(need(r.array::<4>(), t, "gateway IP")?);
                (IpPrefix::V4(prefix), IpAddr::V4(gw))
            };
            EvpnRoute::IpPrefix(IpPrefixRoute {
                rd,
                esi,
                ethernet_tag,
                prefix,
                gateway,
                label: need(Label::decode(&mut r), t, "label")?,
            })
        }
        code => {
            return Ok(EvpnRoute::Unknown {
                code,
                value: value.to_vec(),
            })
        }
    };
    if !r.is_empty() {
        return Err(format!(
            "EVPN route type {code}: {} bytes after the last field",
            r.remaining()
        ));
    }
    Ok(route)
}

impl WireNlri for EvpnRoute {
    const FAMILY: Family = Family::L2VPN_EVPN;

    fn decode(reader: &mut Reader<'_>) -> Result<Self, String> {
        let code = reader
            .u8()
            .ok_or_else(|| "EVPN route type missing".to_string())?;
        let len = reader
            .u8()
            .ok_or_else(|| format!("EVPN route type {code}: length missing"))?;
        let value = reader.take(usize::from(len)).ok_or_else(|| {
            format!(
                "EVPN route type {code}: length {len} exceeds the {} bytes left",
                reader.remaining()
            )
        })?;
        decode_route(code, value)
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.route_type());
        let len_at = out.len();
        out.push(0);
        match self {
            EvpnRoute::EthernetAutoDiscovery(r) => {
                out.extend_from_slice(&r.rd.to_bytes());
                out.extend_from_slice(&r.esi.0);
                out.extend_from_slice(&r.ethernet_tag.to_be_bytes());
                r.label.encode(out);
            }
            EvpnRoute::MacIp(r) => {
                out.extend_from_slice(&r.rd.to_bytes());
                out.extend_from_slice(&r.esi.0);
                out.extend_from_slice(&r.ethernet_tag.to_be_bytes());
                out.push(48);
                out.extend_from_slice(&r.mac.0);
                match &r.ip {
                    None => out.push(0),
                    Some(ip) => {
                        out.push(ip_bits(ip));
                        encode_ip(ip, out);
                    }
                }
                r.label1.encode(out);
                if let Some(label2) = &r.label2 {
                    label2.encode(out);
                }
            }
            EvpnRoute::InclusiveMulticast(r) => {
                out.extend_from_slice(&r.rd.to_bytes());
                out.extend_from_slice(&r.ethernet_tag.to_be_bytes());
                out.push(ip_bits(&r.originator));
                encode_ip(&r.originator, out);
            }
            EvpnRoute::EthernetSegment(r) => {
                out.extend_from_slice(&r.rd.to_bytes());
                out.extend_from_slice(&r.esi.0);
                out.push(ip_bits(&r.originator));
                encode_ip(&r.originator, out);
            }
            EvpnRoute::IpPrefix(r) => {
                out.extend_from_slice(&r.rd.to_bytes());
                out.extend_from_slice(&r.esi.0);
                out.extend_from_slice(&r.ethernet_tag.to_be_bytes());
                // RFC 9136 §3.1: the prefix field is a full address, and the prefix and the
                // gateway share a family (the route's length tells which).
                match (r.prefix, r.gateway) {
                    (IpPrefix::V4(p), IpAddr::V4(gw)) => {
                        out.push(p.len());
                        out.extend_from_slice(&p.addr().octets());
                        out.extend_from_slice(&gw.octets());
                    }
                    (IpPrefix::V6(p), IpAddr::V6(gw)) => {
                        out.push(p.len());
                        out.extend_from_slice(&p.addr().octets());
                        out.extend_from_slice(&gw.octets());
                    }
                    (prefix, gateway) => {
                        out.truncate(len_at - 1);
                        return Err(EncodeError::GatewayFamilyMismatch { prefix, gateway });
                    }
                }
                r.label.encode(out);
            }
            EvpnRoute::Unknown { value, .. } => out.extend_from_slice(value),
        }
        let length = out.len() - len_at - 1;
        match u8::try_from(length) {
            Ok(len) => {
                out[len_at] = len;
                Ok(())
            }
            Err(_) => {
                out.truncate(len_at - 1);
                Err(EncodeError::FieldTooLong {
                    field: "EVPN route",
                    length,
                })
            }
        }
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
serialize_as_display!(MacAddress, EthernetSegmentId);
