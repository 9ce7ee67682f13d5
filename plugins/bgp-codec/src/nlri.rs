//! NLRI: compact prefix types usable directly as RIB keys (`Ipv4Prefix` is a `u32` and a length,
//! no heap), the optional add-path identifier (RFC 7911), and per-family NLRI lists. Decoding a
//! list allocates only the list itself, never per prefix.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Serialize, Serializer};

use super::evpn::EvpnRoute;
use super::reader::Reader;
use super::{Context, EncodeError, Family};

/// An add-path identifier (RFC 7911 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PathId(pub u32);

/// An IPv4 prefix; host bits beyond the length are always zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix {
    /// Network byte order: one-byte alignment keeps [`IpPrefix`] at 18 bytes, which every
    /// per-route map of the RIB pays.
    addr: [u8; 4],
    len: u8,
}

impl Ipv4Prefix {
    /// `None` when `len` exceeds 32; host bits are cleared.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Ipv4Prefix> {
        (len <= 32).then(|| Ipv4Prefix {
            addr: (u32::from(addr) & mask_u32(len)).to_be_bytes(),
            len,
        })
    }

    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }

    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether this is the default route 0.0.0.0/0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An IPv6 prefix; host bits beyond the length are always zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv6Prefix {
    /// Network byte order (see [`Ipv4Prefix`]).
    addr: [u8; 16],
    len: u8,
}

impl Ipv6Prefix {
    /// `None` when `len` exceeds 128; host bits are cleared.
    pub fn new(addr: Ipv6Addr, len: u8) -> Option<Ipv6Prefix> {
        (len <= 128).then(|| Ipv6Prefix {
            addr: (u128::from(addr) & mask_u128(len)).to_be_bytes(),
            len,
        })
    }

    pub fn addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.addr)
    }

    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether this is the default route ::/0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An IPv4 or IPv6 prefix (EVPN type 5 carries either).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpPrefix {
    V4(Ipv4Prefix),
    V6(Ipv6Prefix),
}

fn mask_u32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask_u128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

impl fmt::Display for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpPrefix::V4(p) => p.fmt(f),
            IpPrefix::V6(p) => p.fmt(f),
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
serialize_as_display!(Ipv4Prefix, Ipv6Prefix, IpPrefix);

/// One NLRI with its add-path identifier, present exactly when add-path was negotiated for the
/// family in that direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NlriEntry<T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_id: Option<PathId>,
    pub nlri: T,
}

impl<T> NlriEntry<T> {
    /// An entry without a path identifier (no add-path).
    pub fn new(nlri: T) -> NlriEntry<T> {
        NlriEntry {
            path_id: None,
            nlri,
        }
    }
}

/// The NLRI of one family, as carried in MP_REACH_NLRI / MP_UNREACH_NLRI (or the IPv4 fields of
/// an UPDATE). Families the codec does not parse are kept as their bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NlriList {
    Ipv4(Vec<NlriEntry<Ipv4Prefix>>),
    Ipv6(Vec<NlriEntry<Ipv6Prefix>>),
    Evpn(Vec<NlriEntry<EvpnRoute>>),
    Other { family: Family, bytes: Vec<u8> },
}

impl NlriList {
    pub fn family(&self) -> Family {
        match self {
            NlriList::Ipv4(_) => Family::IPV4_UNICAST,
            NlriList::Ipv6(_) => Family::IPV6_UNICAST,
            NlriList::Evpn(_) => Family::L2VPN_EVPN,
            NlriList::Other { family, .. } => *family,
        }
    }

    /// An empty list of `family` (an End-of-RIB marker in MP_UNREACH_NLRI, RFC 4724 §2).
    pub fn empty(family: Family) -> NlriList {
        match family {
            Family::IPV4_UNICAST => NlriList::Ipv4(Vec::new()),
            Family::IPV6_UNICAST => NlriList::Ipv6(Vec::new()),
            Family::L2VPN_EVPN => NlriList::Evpn(Vec::new()),
            family => NlriList::Other {
                family,
                bytes: Vec::new(),
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            NlriList::Ipv4(v) => v.is_empty(),
            NlriList::Ipv6(v) => v.is_empty(),
            NlriList::Evpn(v) => v.is_empty(),
            NlriList::Other { bytes, .. } => bytes.is_empty(),
        }
    }

    /// Decodes the NLRI of `family` from `bytes`; the error says what was wrong.
    pub(crate) fn decode(family: Family, bytes: &[u8], ctx: &Context) -> Result<NlriList, String> {
        let add_path = ctx.add_path.contains(family);
        Ok(match family {
            Family::IPV4_UNICAST => NlriList::Ipv4(decode_list(bytes, add_path)?),
            Family::IPV6_UNICAST => NlriList::Ipv6(decode_list(bytes, add_path)?),
            Family::L2VPN_EVPN => NlriList::Evpn(decode_list(bytes, add_path)?),
            family => NlriList::Other {
                family,
                bytes: bytes.to_vec(),
            },
        })
    }

    pub(crate) fn encode(&self, ctx: &Context, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let add_path = ctx.add_path.contains(self.family());
        match self {
            NlriList::Ipv4(v) => encode_list(v, add_path, out),
            NlriList::Ipv6(v) => encode_list(v, add_path, out),
            NlriList::Evpn(v) => encode_list(v, add_path, out),
            NlriList::Other { bytes, .. } => {
                out.extend_from_slice(bytes);
                Ok(())
            }
        }
    }
}

/// JSON: `{"family": "l2vpn-evpn", "routes": [...]}`; other families carry `"bytes"` in hex.
impl Serialize for NlriList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("NlriList", 2)?;
        s.serialize_field("family", &self.family())?;
        match self {
            NlriList::Ipv4(v) => s.serialize_field("routes", v)?,
            NlriList::Ipv6(v) => s.serialize_field("routes", v)?,
            NlriList::Evpn(v) => s.serialize_field("routes", v)?,
            NlriList::Other { bytes, .. } => {
                s.serialize_field("bytes", &crate::hex::to_hex(bytes))?
            }
        }
        s.end()
    }
}

/// One NLRI of a parsed family: how it is read from and written to the wire.
pub(crate) trait WireNlri: Sized {
    const FAMILY: Family;
    fn decode(reader: &mut Reader<'_>) -> Result<Self, String>;
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

pub(crate) fn decode_list<T: WireNlri>(
    bytes: &[u8],
    add_path: bool,
) -> Result<Vec<NlriEntry<T>>, String> {
    let mut reader = Reader::new(bytes);
    let mut list = Vec::new();
    while !reader.is_empty() {
        let path_id = if add_path {
            let id = reader.u32().ok_or_else(|| {
                format!(
                    "{} add-path identifier truncated: {} bytes left",
                    T::FAMILY,
                    reader.remaining()
                )
            })?;
            Some(PathId(id))
        } else {
            None
        };
        list.push(NlriEntry {
            path_id,
            nlri: T::decode(&mut reader)?,
        });
    }
    Ok(list)
}

pub(crate) fn encode_list<T: WireNlri>(
    list: &[NlriEntry<T>],
    add_path: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    for entry in list {
        encode_entry(entry, add_path, out)?;
    }
    Ok(())
}

pub(crate) fn encode_entry<T: WireNlri>(
    entry: &NlriEntry<T>,
    add_path: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    match (entry.path_id, add_path) {
        (Some(id), true) => out.extend_from_slice(&id.0.to_be_bytes()),
        (None, false) => {}
        (path_id, _) => return Err(EncodeError::path_id_mismatch(T::FAMILY, path_id.is_some())),
    }
    entry.nlri.encode(out)
}

/// Reads a (length, prefix) pair (RFC 4271 §4.3) into a zero-padded array of `N` bytes.
fn decode_prefix_bytes<const N: usize>(
    reader: &mut Reader<'_>,
    family: Family,
) -> Result<([u8; N], u8), String> {
    let max = N * 8;
    let len = reader
        .u8()
        .ok_or_else(|| format!("{family} prefix length missing"))?;
    if usize::from(len) > max {
        return Err(format!("{family} prefix length {len} exceeds {max}"));
    }
    let byte_count = usize::from(len).div_ceil(8);
    let bytes = reader.take(byte_count).ok_or_else(|| {
        format!(
            "{family} prefix of length {len} needs {byte_count} bytes, {} left",
            reader.remaining()
        )
    })?;
    let mut addr = [0u8; N];
    addr[..byte_count].copy_from_slice(bytes);
    Ok((addr, len))
}

fn encode_prefix_bytes(addr: &[u8], len: u8, out: &mut Vec<u8>) {
    out.push(len);
    out.extend_from_slice(&addr[..usize::from(len).div_ceil(8)]);
}

impl WireNlri for Ipv4Prefix {
    const FAMILY: Family = Family::IPV4_UNICAST;

    fn decode(reader: &mut Reader<'_>) -> Result<Self, String> {
        let (addr, len) = decode_prefix_bytes::<4>(reader, Self::FAMILY)?;
        Ok(Ipv4Prefix {
            addr: (u32::from_be_bytes(addr) & mask_u32(len)).to_be_bytes(),
            len,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_prefix_bytes(&self.addr, self.len, out);
        Ok(())
    }
}

impl WireNlri for Ipv6Prefix {
    const FAMILY: Family = Family::IPV6_UNICAST;

    fn decode(reader: &mut Reader<'_>) -> Result<Self, String> {
        let (addr, len) = decode_prefix_bytes::<16>(reader, Self::FAMILY)?;
        Ok(Ipv6Prefix {
            addr: (u128::from_be_bytes(addr) & mask_u128(len)).to_be_bytes(),
            len,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_prefix_bytes(&self.addr, self.len, out);
        Ok(())
    }
}

/// An IP address whose length in bits was given by the wire (0 meaning absent).
pub(crate) fn decode_ip_by_bits(
    reader: &mut Reader<'_>,
    bits: u8,
    what: &str,
) -> Result<Option<IpAddr>, String> {
    match bits {
        0 => Ok(None),
        32 => reader
            .array::<4>()
            .map(|a| Some(IpAddr::from(a)))
            .ok_or_else(|| format!("{what} truncated")),
        128 => reader
            .array::<16>()
            .map(|a| Some(IpAddr::from(a)))
            .ok_or_else(|| format!("{what} truncated")),
        other => Err(format!("{what} length {other} bits is not 0, 32 or 128")),
    }
}

pub(crate) fn encode_ip(ip: &IpAddr, out: &mut Vec<u8>) {
    match ip {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
}

pub(crate) fn ip_bits(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], len: u8) -> NlriEntry<Ipv4Prefix> {
        NlriEntry::new(Ipv4Prefix::new(Ipv4Addr::from(a), len).unwrap())
    }

    #[test]
    fn ipv4_list_both_ways() {
        // 10.0.0.0/8, 192.168.1.0/24, 0.0.0.0/0, 203.0.113.7/32.
        let bytes = [8, 10, 24, 192, 168, 1, 0, 32, 203, 0, 113, 7];
        let list = vec![
            v4([10, 0, 0, 0], 8),
            v4([192, 168, 1, 0], 24),
            v4([0, 0, 0, 0], 0),
            v4([203, 0, 113, 7], 32),
        ];
        assert_eq!(decode_list::<Ipv4Prefix>(&bytes, false).unwrap(), list);
        let mut out = Vec::new();
        encode_list(&list, false, &mut out).unwrap();
        assert_eq!(out, bytes);
        assert_eq!(list[1].nlri.to_string(), "192.168.1.0/24");
    }

    #[test]
    fn add_path_identifiers_precede_each_prefix() {
        let bytes = [0, 0, 0, 1, 24, 10, 1, 2, 0, 0, 0, 2, 24, 10, 1, 2];
        let list = decode_list::<Ipv4Prefix>(&bytes, true).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].path_id, Some(PathId(2)));
        let mut out = Vec::new();
        encode_list(&list, true, &mut out).unwrap();
        assert_eq!(out, bytes);
        assert!(matches!(
            encode_list(&list, false, &mut Vec::new()),
            Err(EncodeError::PathIdMismatch { .. })
        ));
    }

    #[test]
    fn host_bits_are_cleared_and_ipv6_round_trips() {
        // 10.1.2.3/16 on the wire is 10.1.0.0/16.
        let list = decode_list::<Ipv4Prefix>(&[16, 10, 1], false).unwrap();
        assert_eq!(list[0].nlri.to_string(), "10.1.0.0/16");
        let p = Ipv4Prefix::new(Ipv4Addr::new(10, 1, 2, 3), 16).unwrap();
        assert_eq!(p.addr(), Ipv4Addr::new(10, 1, 0, 0));
        // The RIB keeps one per route per map: byte-aligned and small.
        assert_eq!(std::mem::size_of::<IpPrefix>(), 18);
        assert_eq!(std::mem::align_of::<IpPrefix>(), 1);
        // 2001:db8::/32 and ::/0.
        let bytes = [32, 0x20, 0x01, 0x0d, 0xb8, 0];
        let list = decode_list::<Ipv6Prefix>(&bytes, false).unwrap();
        assert_eq!(list[0].nlri.to_string(), "2001:db8::/32");
        assert_eq!(list[1].nlri.to_string(), "::/0");
        let mut out = Vec::new();
        encode_list(&list, false, &mut out).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn bad_prefixes_are_named() {
        assert_eq!(
            decode_list::<Ipv4Prefix>(&[33, 1, 2, 3, 4, 5], false).unwrap_err(),
            "ipv4-unicast prefix length 33 exceeds 32"
        );
        assert_eq!(
            decode_list::<Ipv4Prefix>(&[24, 10, 0], false).unwrap_err(),
            "ipv4-unicast prefix of length 24 needs 3 bytes, 2 left"
        );
        assert_eq!(
            decode_list::<Ipv6Prefix>(&[129], false).unwrap_err(),
            "ipv6-unicast prefix length 129 exceeds 128"
        );
        assert_eq!(
            decode_list::<Ipv4Prefix>(&[0, 0, 1], true).unwrap_err(),
            "ipv4-unicast add-path identifier truncated: 3 bytes left"
        );
        assert!(Ipv4Prefix::new(Ipv4Addr::UNSPECIFIED, 33).is_none());
    }
}
