//! The netlink side of the EVPN kernel code: one request and its replies, link and FDB dumps,
//! parsing the few fields EVPN needs, and building every message it sends (FDB entries, flood
//! entries, VTEP neighbours, type 5 routes).

use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_core::{NLM_F_DUMP, NLM_F_REQUEST};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
    RouteVia,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

pub(super) use ztos_netlink::{family_of, flood_message, is_gone, neighbour_ip, request};

use crate::kernel::{BGP_METRIC, RTPROT_ZTOS_BGP};

use super::{EvpnKernelError, L2Segment, NUD_NOARP, NUD_PERMANENT, NUD_REACHABLE, ZERO_MAC};

pub(super) async fn link_by_name(
    handle: &rtnetlink::Handle,
    name: &str,
) -> Result<Option<Link>, io::Error> {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    match request(handle, RouteNetlinkMessage::GetLink(message), NLM_F_REQUEST).await {
        Ok(replies) => Ok(replies.iter().find_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(parse_link(link)),
            _ => None,
        })),
        Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) async fn dump_links(handle: &rtnetlink::Handle) -> Result<Vec<Link>, EvpnKernelError> {
    let replies = request(
        handle,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_REQUEST | NLM_F_DUMP,
    )
    .await
    .map_err(|source| EvpnKernelError::Dump {
        what: "links",
        source,
    })?;
    Ok(replies
        .iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(parse_link(link)),
            _ => None,
        })
        .collect())
}

pub(super) async fn dump_fdb(
    handle: &rtnetlink::Handle,
) -> Result<Vec<NeighbourMessage>, EvpnKernelError> {
    let mut request_message = NeighbourMessage::default();
    request_message.header.family = AddressFamily::Bridge;
    let replies = request(
        handle,
        RouteNetlinkMessage::GetNeighbour(request_message),
        NLM_F_REQUEST | NLM_F_DUMP,
    )
    .await
    .map_err(|source| EvpnKernelError::Dump {
        what: "FDB entries",
        source,
    })?;
    Ok(replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewNeighbour(message) => Some(message),
            _ => None,
        })
        .collect())
}

/// The little ztos-bgp needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Link {
    pub(super) index: u32,
    pub(super) name: String,
    pub(super) master: Option<u32>,
    pub(super) vxlan: bool,
    pub(super) mac: Option<[u8; 6]>,
}

pub(super) fn parse_link(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        master: None,
        vxlan: false,
        mac: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Controller(index) if *index != 0 => link.master = Some(*index),
            LinkAttribute::Address(mac) => link.mac = <[u8; 6]>::try_from(mac.as_slice()).ok(),
            LinkAttribute::LinkInfo(infos) => {
                link.vxlan = infos
                    .iter()
                    .any(|info| matches!(info, LinkInfo::Kind(InfoKind::Vxlan)))
            }
            _ => {}
        }
    }
    link
}

/// One AF_BRIDGE FDB entry, as far as EVPN cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FdbEntry {
    /// The port (or, for the bridge's own entries, the bridge; for vxlan `self` entries, the
    /// VXLAN device).
    pub(super) port: u32,
    /// NDA_MASTER: the bridge, for bridge entries.
    pub(super) master: Option<u32>,
    pub(super) mac: Option<[u8; 6]>,
    pub(super) vlan: u16,
    pub(super) state: u16,
    pub(super) flags: NeighbourFlags,
    pub(super) destination: Option<IpAddr>,
}

pub(super) fn parse_fdb(message: &NeighbourMessage) -> Option<FdbEntry> {
    if message.header.family != AddressFamily::Bridge {
        return None;
    }
    let mut entry = FdbEntry {
        port: message.header.ifindex,
        master: None,
        mac: None,
        vlan: 0,
        state: u16::from(message.header.state),
        flags: message.header.flags,
        destination: None,
    };
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::LinkLayerAddress(mac) => {
                entry.mac = <[u8; 6]>::try_from(mac.as_slice()).ok()
            }
            NeighbourAttribute::Controller(index) if *index != 0 => entry.master = Some(*index),
            NeighbourAttribute::Vlan(vlan) => entry.vlan = *vlan,
            NeighbourAttribute::Destination(_) => {
                entry.destination = neighbour_address(attribute_address(attribute))
            }
            _ => {}
        }
    }
    Some(entry)
}

pub(super) fn attribute_address(attribute: &NeighbourAttribute) -> Option<&NeighbourAddress> {
    match attribute {
        NeighbourAttribute::Destination(address) => Some(address),
        _ => None,
    }
}

/// NDA_DST as an IP address; in AF_BRIDGE messages the parser cannot know its family.
pub(super) fn neighbour_address(address: Option<&NeighbourAddress>) -> Option<IpAddr> {
    match address? {
        NeighbourAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        NeighbourAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        NeighbourAddress::Other(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(bytes.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(bytes.as_slice())
                .ok()
                .map(IpAddr::from),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn neighbour_destination(message: &NeighbourMessage) -> Option<IpAddr> {
    neighbour_address(message.attributes.iter().find_map(attribute_address))
}

pub(super) fn route_table(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

/// The indexes of one segment's devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SegmentPorts {
    pub(super) vni: u32,
    pub(super) bridge: u32,
    pub(super) vxlan: Option<u32>,
}

impl SegmentPorts {
    pub(super) fn resolve(segment: &L2Segment, links: &[Link]) -> Option<SegmentPorts> {
        let index = |name: &str| links.iter().find(|l| l.name == name).map(|l| l.index);
        Some(SegmentPorts {
            vni: segment.vni,
            bridge: index(&segment.bridge)?,
            vxlan: index(&segment.vxlan),
        })
    }
}

/// A MAC the bridge learned on a local port: a bridge entry of the segment's bridge, on a
/// port that is neither the VXLAN device nor the bridge itself, not permanent (the ports'
/// and the bridge's own addresses) and not `extern_learn` (what EVPN installed).
pub(super) fn is_local_mac(entry: &FdbEntry, ports: &SegmentPorts) -> bool {
    entry.master == Some(ports.bridge)
        && !entry.flags.contains(NeighbourFlags::Own)
        && entry.port != ports.bridge
        && Some(entry.port) != ports.vxlan
        && entry.state & NUD_PERMANENT == 0
        && !entry.flags.contains(NeighbourFlags::ExtLearned)
        && entry
            .mac
            .is_some_and(|mac| mac != ZERO_MAC && mac[0] & 1 == 0)
}

/// A remote MAC on a VXLAN device (`bridge fdb replace MAC dev VX dst VTEP self extern_learn
/// permanent`); without `vtep`, the message that deletes the MAC's entry.
pub(super) fn vxlan_fdb_message(
    vxlan: u32,
    mac: &[u8; 6],
    vtep: Option<IpAddr>,
) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    message.header.ifindex = vxlan;
    message.header.state = NeighbourState::from(NUD_PERMANENT | NUD_NOARP);
    message.header.flags = NeighbourFlags::Own | NeighbourFlags::ExtLearned;
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    if let Some(vtep) = vtep {
        message
            .attributes
            .push(NeighbourAttribute::Destination(neighbour_ip(vtep)));
    }
    message
}

/// The bridge's entry for a remote MAC: on the VXLAN port, `extern_learn` (never aged,
/// `bridge fdb replace MAC dev VX master extern_learn`).
pub(super) fn bridge_fdb_message(port: u32, mac: &[u8; 6]) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    message.header.ifindex = port;
    message.header.state = NeighbourState::from(NUD_REACHABLE);
    message.header.flags = NeighbourFlags::Controller | NeighbourFlags::ExtLearned;
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    message
}

/// The router MAC of a remote VTEP on the L3 VNI's bridge (`ip neigh replace VTEP lladdr RMAC
/// dev BR nud permanent protocol 197`); without `router_mac`, the deletion.
pub(super) fn vtep_neighbour_message(
    bridge: u32,
    vtep: IpAddr,
    router_mac: Option<&[u8; 6]>,
) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = family_of(vtep);
    message.header.ifindex = bridge;
    message.header.state = NeighbourState::from(NUD_PERMANENT);
    message
        .attributes
        .push(NeighbourAttribute::Destination(neighbour_ip(vtep)));
    if let Some(mac) = router_mac {
        message
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        message
            .attributes
            .push(NeighbourAttribute::Protocol(RouteProtocol::from(
                RTPROT_ZTOS_BGP,
            )));
    }
    message
}

/// A type 5 route: `prefix` in `table` via `vtep` onlink on the L3 bridge (`bridge` index),
/// protocol 197, metric 20; a VTEP of the other family goes in RTA_VIA. Without `next hop`,
/// the deletion.
pub(super) fn prefix_route_message(
    table: u32,
    prefix: &IpNet,
    next_hop: Option<(IpAddr, u32)>,
) -> RouteMessage {
    let mut message = RouteMessage::default();
    let header = &mut message.header;
    header.address_family = family_of(prefix.addr());
    header.destination_prefix_length = prefix.prefix_len();
    header.table = u8::try_from(table).unwrap_or(0);
    header.protocol = RouteProtocol::from(RTPROT_ZTOS_BGP);
    header.scope = RouteScope::Universe;
    header.kind = RouteType::Unicast;
    message.attributes.push(RouteAttribute::Table(table));
    if prefix.prefix_len() > 0 {
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                prefix.addr(),
            )));
    }
    if let Some((vtep, bridge)) = next_hop {
        message.header.flags = RouteFlags::Onlink;
        if vtep.is_ipv4() == prefix.addr().is_ipv4() {
            message
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(vtep)));
        } else {
            message.attributes.push(RouteAttribute::Via(match vtep {
                IpAddr::V4(ip) => RouteVia::Inet(ip),
                IpAddr::V6(ip) => RouteVia::Inet6(ip),
            }));
        }
        message.attributes.push(RouteAttribute::Oif(bridge));
        message
            .attributes
            .push(RouteAttribute::Priority(BGP_METRIC));
    }
    message
}
