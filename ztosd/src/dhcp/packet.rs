//! DHCPv4 messages (RFC 2131/2132): the client's DISCOVER and REQUEST, and the server's
//! replies read into [`Reply`]. Hand-written: the client needs a fixed header and a dozen
//! options, and `dhcproto` 0.15 (the candidate crate) panics on some malformed packets: its
//! `chaddr()` slices by the packet's hlen (a panic above 16) and option lengths are checked
//! with `debug_assert!`; the no-panic test below found both within seconds. Everything from the network is untrusted: a
//! packet that does not decode, is not a reply to us, or lacks what RFC 2131 requires is a
//! [`Dropped`] with the reason, never a panic.
//!
//! No DHCPRELEASE is sent: a box that goes down keeps its lease until it expires, so a reboot
//! gets the same address back; and no DHCPDECLINE (no ARP probe of the offered address).

use std::net::Ipv4Addr;
use std::time::Duration;

/// An Ethernet hardware address.
pub type Mac = [u8; 6];

/// The DHCP message types (RFC 2132 option 53) a client sends or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
    Other(u8),
}

impl MessageType {
    fn from_byte(byte: u8) -> MessageType {
        match byte {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            other => MessageType::Other(other),
        }
    }
}

// Field offsets of the fixed BOOTP header (RFC 2131 figure 1).
const OP: usize = 0;
const HTYPE: usize = 1;
const HLEN: usize = 2;
const XID: usize = 4;
const FLAGS: usize = 10;
const CIADDR: usize = 12;
const YIADDR: usize = 16;
const CHADDR: usize = 28;
const COOKIE: usize = 236;
const OPTIONS: usize = 240;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
const FLAG_BROADCAST: u16 = 0x8000;

// Option codes (RFC 2132).
const OPT_PAD: u8 = 0;
const OPT_SUBNET_MASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_REQUESTED_ADDRESS: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_OVERLOAD: u8 = 52;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMETER_LIST: u8 = 55;
const OPT_MAX_SIZE: u8 = 57;
const OPT_RENEWAL: u8 = 58;
const OPT_REBINDING: u8 = 59;
const OPT_CLIENT_ID: u8 = 61;
const OPT_END: u8 = 255;

/// What the client asks the server to include.
const REQUESTED_OPTIONS: [u8; 6] = [
    OPT_SUBNET_MASK,
    OPT_ROUTER,
    OPT_DNS,
    OPT_LEASE_TIME,
    OPT_RENEWAL,
    OPT_REBINDING,
];

/// The largest DHCP message the client accepts (RFC 2132 option 57): what fits an
/// unfragmented Ethernet frame.
pub const MAX_MESSAGE_SIZE: u16 = 1500 - 20 - 8;

/// Why a received packet was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    #[error("not a DHCP message: {0}")]
    Malformed(String),
    #[error("a BOOTREQUEST, not a reply")]
    NotAReply,
    #[error("transaction id {got:#010x} is not ours ({want:#010x})")]
    OtherTransaction { got: u32, want: u32 },
    #[error("for hardware address {0}, not ours")]
    OtherClient(String),
    #[error("no DHCP message type option")]
    NoMessageType,
    #[error("message type {0:?} is not an OFFER, ACK or NAK")]
    UnexpectedType(MessageType),
    #[error("{0:?} without a server identifier")]
    NoServerIdentifier(MessageType),
    #[error("{kind:?} offers the unusable address {address}")]
    BadAddress {
        kind: MessageType,
        address: Ipv4Addr,
    },
    #[error("{0:?} without a lease time")]
    NoLeaseTime(MessageType),
    #[error("subnet mask {0} is not a contiguous prefix")]
    BadSubnetMask(Ipv4Addr),
    #[error("unexpected {0}")]
    Unexpected(String),
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Offer(Offer),
    Ack(Offer),
    Nak { server: Ipv4Addr },
}

/// What an OFFER or ACK carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub server: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_time: Duration,
    /// T1 and T2 as the server sent them (RFC 2132 options 58 and 59), if it did.
    pub renewal: Option<Duration>,
    pub rebinding: Option<Duration>,
}

/// How a REQUEST is made (RFC 2131 table 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// SELECTING: requested address and server identifier options, ciaddr 0.
    Selecting { address: Ipv4Addr, server: Ipv4Addr },
    /// RENEWING (unicast) or REBINDING (broadcast): ciaddr set, no such options.
    Extending { address: Ipv4Addr },
}

/// A client message: the BOOTP header, the cookie, our options, END, padded to the 300 bytes
/// old BOOTP relays expect.
fn client_message(
    xid: u32,
    mac: &Mac,
    ciaddr: Ipv4Addr,
    kind: u8,
    extra: &[(u8, &[u8])],
) -> Vec<u8> {
    let mut packet = vec![0u8; OPTIONS];
    packet[OP] = BOOTREQUEST;
    packet[HTYPE] = HTYPE_ETHERNET;
    packet[HLEN] = 6;
    packet[XID..XID + 4].copy_from_slice(&xid.to_be_bytes());
    // Without an address yet, the server must broadcast its answer (RFC 2131 4.1).
    if ciaddr.is_unspecified() {
        packet[FLAGS..FLAGS + 2].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
    }
    packet[CIADDR..CIADDR + 4].copy_from_slice(&ciaddr.octets());
    packet[CHADDR..CHADDR + 6].copy_from_slice(mac);
    packet[COOKIE..OPTIONS].copy_from_slice(&MAGIC_COOKIE);
    let mut client_id = vec![HTYPE_ETHERNET];
    client_id.extend_from_slice(mac);
    let max_size = MAX_MESSAGE_SIZE.to_be_bytes();
    let kind = [kind];
    let options: Vec<(u8, &[u8])> = [
        (OPT_MESSAGE_TYPE, &kind[..]),
        (OPT_CLIENT_ID, &client_id[..]),
        (OPT_PARAMETER_LIST, &REQUESTED_OPTIONS[..]),
        (OPT_MAX_SIZE, &max_size[..]),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .collect();
    for (code, value) in options {
        packet.push(code);
        packet.push(value.len() as u8);
        packet.extend_from_slice(value);
    }
    packet.push(OPT_END);
    if packet.len() < 300 {
        packet.resize(300, OPT_PAD);
    }
    packet
}

/// A DHCPDISCOVER.
pub fn discover(xid: u32, mac: &Mac) -> Vec<u8> {
    client_message(xid, mac, Ipv4Addr::UNSPECIFIED, 1, &[])
}

/// A DHCPREQUEST.
pub fn request(xid: u32, mac: &Mac, kind: RequestKind) -> Vec<u8> {
    match kind {
        RequestKind::Selecting { address, server } => client_message(
            xid,
            mac,
            Ipv4Addr::UNSPECIFIED,
            3,
            &[
                (OPT_REQUESTED_ADDRESS, &address.octets()),
                (OPT_SERVER_ID, &server.octets()),
            ],
        ),
        RequestKind::Extending { address } => client_message(xid, mac, address, 3, &[]),
    }
}

/// The options of a message (RFC 2132 section 2): code, length, value, until END or the end
/// of the packet; PAD skipped. A later copy of an option wins. An option running past the end
/// of the packet is an error. Option overload (52: options continued in `file`/`sname`) is
/// not supported and reported.
fn read_options(bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, Dropped> {
    let mut options = Vec::new();
    let mut at = OPTIONS;
    while at < bytes.len() {
        let code = bytes[at];
        match code {
            OPT_PAD => {
                at += 1;
                continue;
            }
            OPT_END => break,
            _ => {}
        }
        let len = *bytes
            .get(at + 1)
            .ok_or_else(|| Dropped::Malformed(format!("option {code} has no length")))?
            as usize;
        let value = bytes.get(at + 2..at + 2 + len).ok_or_else(|| {
            Dropped::Malformed(format!("option {code} ({len} bytes) runs past the packet"))
        })?;
        if code == OPT_OVERLOAD {
            return Err(Dropped::Malformed(
                "option overload (52) is not supported".to_string(),
            ));
        }
        options.push((code, value));
        at += 2 + len;
    }
    Ok(options)
}

fn ipv4(value: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(value).ok().map(Ipv4Addr::from)
}

/// Addresses in an option that lists them (routers, DNS servers): a length that is not a
/// multiple of 4 is malformed.
fn ipv4_list(code: u8, value: &[u8]) -> Result<Vec<Ipv4Addr>, Dropped> {
    if value.is_empty() || value.len() % 4 != 0 {
        return Err(Dropped::Malformed(format!(
            "option {code} has {} bytes, not a list of addresses",
            value.len()
        )));
    }
    Ok(value
        .chunks_exact(4)
        .filter_map(ipv4)
        .filter(|a| !a.is_unspecified() && !a.is_broadcast())
        .collect())
}

fn seconds(code: u8, value: &[u8]) -> Result<Duration, Dropped> {
    <[u8; 4]>::try_from(value)
        .map(|b| Duration::from_secs(u64::from(u32::from_be_bytes(b))))
        .map_err(|_| Dropped::Malformed(format!("option {code} has {} bytes, not 4", value.len())))
}

/// Reads a server's reply to transaction `xid` of the client `mac`.
pub fn parse_reply(bytes: &[u8], xid: u32, mac: &Mac) -> Result<Reply, Dropped> {
    if bytes.len() < OPTIONS {
        return Err(Dropped::Malformed(format!(
            "{} bytes, shorter than a DHCP header",
            bytes.len()
        )));
    }
    if bytes[COOKIE..OPTIONS] != MAGIC_COOKIE {
        return Err(Dropped::Malformed("no DHCP magic cookie".to_string()));
    }
    if bytes[OP] != BOOTREPLY {
        return Err(Dropped::NotAReply);
    }
    let got = u32::from_be_bytes([bytes[XID], bytes[XID + 1], bytes[XID + 2], bytes[XID + 3]]);
    if got != xid {
        return Err(Dropped::OtherTransaction { got, want: xid });
    }
    if bytes[HTYPE] != HTYPE_ETHERNET || bytes[HLEN] != 6 || bytes[CHADDR..CHADDR + 6] != mac[..] {
        return Err(Dropped::OtherClient(
            bytes[CHADDR..CHADDR + 6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        ));
    }
    let options = read_options(bytes)?;
    let find = |code: u8| {
        options
            .iter()
            .rev()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| *v)
    };
    let kind = match find(OPT_MESSAGE_TYPE) {
        Some([byte]) => MessageType::from_byte(*byte),
        Some(_) => return Err(Dropped::Malformed("option 53 is not 1 byte".to_string())),
        None => return Err(Dropped::NoMessageType),
    };
    let server = find(OPT_SERVER_ID)
        .and_then(ipv4)
        .ok_or(Dropped::NoServerIdentifier(kind))?;
    match kind {
        MessageType::Nak => return Ok(Reply::Nak { server }),
        MessageType::Offer | MessageType::Ack => {}
        other => return Err(Dropped::UnexpectedType(other)),
    }
    let address = Ipv4Addr::new(
        bytes[YIADDR],
        bytes[YIADDR + 1],
        bytes[YIADDR + 2],
        bytes[YIADDR + 3],
    );
    if address.is_unspecified()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_loopback()
    {
        return Err(Dropped::BadAddress { kind, address });
    }
    let lease_time = match find(OPT_LEASE_TIME) {
        Some(value) => seconds(OPT_LEASE_TIME, value)?,
        None => return Err(Dropped::NoLeaseTime(kind)),
    };
    let prefix_len = match find(OPT_SUBNET_MASK) {
        Some(value) => {
            let mask = ipv4(value).ok_or_else(|| {
                Dropped::Malformed(format!("option 1 has {} bytes, not 4", value.len()))
            })?;
            let bits = u32::from(mask);
            if bits.leading_ones() + bits.trailing_zeros() != 32 || bits.leading_ones() == 0 {
                return Err(Dropped::BadSubnetMask(mask));
            }
            bits.leading_ones() as u8
        }
        // RFC 2131 leaves it to the client; the class of the address is the classic default.
        None => match address.octets()[0] {
            0..=127 => 8,
            128..=191 => 16,
            _ => 24,
        },
    };
    let router = match find(OPT_ROUTER) {
        Some(value) => ipv4_list(OPT_ROUTER, value)?.into_iter().next(),
        None => None,
    };
    let dns = match find(OPT_DNS) {
        Some(value) => ipv4_list(OPT_DNS, value)?,
        None => Vec::new(),
    };
    let renewal = find(OPT_RENEWAL)
        .map(|v| seconds(OPT_RENEWAL, v))
        .transpose()?;
    let rebinding = find(OPT_REBINDING)
        .map(|v| seconds(OPT_REBINDING, v))
        .transpose()?;
    let offer = Offer {
        address,
        prefix_len,
        server,
        router,
        dns,
        lease_time,
        renewal,
        rebinding,
    };
    Ok(if kind == MessageType::Offer {
        Reply::Offer(offer)
    } else {
        Reply::Ack(offer)
    })
}
