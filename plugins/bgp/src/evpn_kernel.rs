//! EVPN to the kernel: remote MACs and ingress-replication flood lists on the VXLAN devices
//! of ztosd's `[[vxlan]]` segments, type 5 prefixes into tenant VRF tables, and the MACs the
//! kernel bridges learn on local ports (which the speaker originates as type 2 routes).
//!
//! Every message is built here from `netlink-packet-route` types and sent through the
//! rtnetlink handle, as ztosd's reconciler does, so that every flag is under control
//! (`NLM_F_APPEND` for flood entries, `NTF_EXT_LEARNED` on FDB entries).
//!
//! # What marks ztos-bgp's kernel state
//!
//! [`EvpnKernel::sweep`] must find exactly what an earlier ztos-bgp installed and nothing of
//! ztosd's or the kernel's. Verified on Linux 6.18 (and in the tests of this module):
//!
//! - IPv4/IPv6 neighbours and routes keep `NDA_PROTOCOL` / `rtm_protocol`: they carry
//!   [`RTPROT_ZTOS_BGP`] (197). Routes in the main table are [`crate::kernel`]'s; this module
//!   sweeps protocol-197 routes of the other tables (the tenant VRF tables).
//! - Neither the bridge nor the vxlan driver stores `NDA_PROTOCOL` on FDB entries (checked:
//!   an entry added with `NDA_PROTOCOL` 197, on either, dumps without it), so FDB entries carry `NTF_EXT_LEARNED` (`extern_learn`), as FRR's
//!   zebra installs remote MACs. ztosd's static entries never use it, the bridge never ages
//!   such entries, and a bridge entry the bridge itself re-learns on a local port loses the
//!   flag (a MAC that moved back to a local port is the bridge's again). The sweep removes
//!   `extern_learn` entries on VXLAN devices only (switchdev entries on other ports stay).
//! - The all-zero-MAC flood entries have no marker at all: the vxlan driver keeps one set of
//!   flags per MAC, not per remote, and it drops `NTF_EXT_LEARNED` on the all-zero MAC (checked:
//!   `bridge fdb append 00:00:00:00:00:00 ... self extern_learn` shows `self permanent`). ztosd's
//!   static flood list shares that entry. So the flood remotes ztos-bgp added (and only those
//!   it added: a remote ztosd already had is left alone, and never removed by ztos-bgp) are
//!   recorded in a journal file under `/run/ztos` (tmpfs: gone at reboot, like the kernel
//!   state it describes), one per network namespace (named by its inode number), which
//!   `sweep` reads. Each line also records the VXLAN device's MAC address, which the kernel
//!   picks at random when ztosd creates the device: `sweep` removes a remote only from the
//!   same device instance (a re-created device lost its entries anyway), so a journal left
//!   by a deleted namespace whose inode number the kernel gives to a new one removes nothing
//!   there.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use ipnet::IpNet;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
    RouteVia,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::SocketAddr;
use rtnetlink::MulticastGroup;
use tokio::sync::{mpsc, watch};

use crate::kernel::{BGP_METRIC, RTPROT_ZTOS_BGP};

/// One L2 VNI: its VXLAN device, the bridge that device is a port of, and the local VTEP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct L2Segment {
    pub vni: u32,
    pub vxlan: String,
    pub bridge: String,
    pub local_vtep: IpAddr,
}

/// A MAC the kernel bridge learned on a local (non-VXLAN) port of a segment's bridge, or forgot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalMac {
    Learned { vni: u32, mac: [u8; 6] },
    Gone { vni: u32, mac: [u8; 6] },
}

/// What the speaker asks of the kernel; applied in order by the task [`spawn`] starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvpnOp {
    /// A remote MAC behind `vtep`: an FDB entry on the VXLAN device (and its bridge, so the
    /// bridge forwards it to the VXLAN port instead of flooding), replacing any older one.
    InstallMac {
        vxlan: String,
        mac: [u8; 6],
        vtep: IpAddr,
    },
    RemoveMac {
        vxlan: String,
        mac: [u8; 6],
    },
    /// Ingress replication: BUM traffic of the segment also goes to `vtep`
    /// (an appended all-zero-MAC entry).
    AddFlood {
        vxlan: String,
        vtep: IpAddr,
    },
    RemoveFlood {
        vxlan: String,
        vtep: IpAddr,
    },
    /// An EVPN type 5 prefix into a tenant's VRF table (RFC 9136 symmetric IRB): route
    /// `prefix` in `table` via `vtep` onlink on the L3 VNI's bridge `l3_bridge`, a permanent
    /// neighbour `vtep` -> `router_mac` on `l3_bridge`, and the FDB entry `router_mac` -> `vtep`
    /// on `l3_vxlan`. When the VRF device `vrf` does not exist (a kernel without VRF), nothing
    /// is installed and the error channel gets one clear message naming the tenant's VRF
    /// device and the missing kernel support (once per VRF, not per route). The prefix is
    /// installed when the VRF device appears.
    InstallPrefix {
        vrf: String,
        table: u32,
        prefix: IpNet,
        vtep: IpAddr,
        router_mac: [u8; 6],
        l3_bridge: String,
        l3_vxlan: String,
    },
    RemovePrefix {
        vrf: String,
        table: u32,
        prefix: IpNet,
    },
}

impl fmt::Display for EvpnOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvpnOp::InstallMac { vxlan, mac, vtep } => write!(
                f,
                "installing MAC {} via VTEP {vtep} on {vxlan}",
                mac_text(mac)
            ),
            EvpnOp::RemoveMac { vxlan, mac } => {
                write!(f, "removing MAC {} from {vxlan}", mac_text(mac))
            }
            EvpnOp::AddFlood { vxlan, vtep } => {
                write!(f, "adding flood VTEP {vtep} on {vxlan}")
            }
            EvpnOp::RemoveFlood { vxlan, vtep } => {
                write!(f, "removing flood VTEP {vtep} from {vxlan}")
            }
            EvpnOp::InstallPrefix {
                vrf,
                table,
                prefix,
                vtep,
                router_mac,
                l3_bridge,
                ..
            } => write!(
                f,
                "installing EVPN prefix {prefix} in VRF {vrf} (table {table}) via VTEP {vtep} \
                 (router MAC {}) on {l3_bridge}",
                mac_text(router_mac)
            ),
            EvpnOp::RemovePrefix { vrf, table, prefix } => write!(
                f,
                "removing EVPN prefix {prefix} from VRF {vrf} (table {table})"
            ),
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

const NUD_REACHABLE: u16 = 0x02;
const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;
const MAIN_TABLE: u32 = 254;
const LOCAL_TABLE: u32 = 255;
const ZERO_MAC: [u8; 6] = [0; 6];
const JOURNAL_DIR: &str = "/run/ztos";

type Unsolicited = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

/// The kernel side of EVPN over rtnetlink.
pub struct EvpnKernel {
    handle: rtnetlink::Handle,
    /// RTM_NEWLINK/DELLINK notifications, for re-installing on re-created devices; taken by
    /// [`spawn`].
    links: Option<Unsolicited>,
    /// Keeps the notification connection open.
    _links_handle: rtnetlink::Handle,
    journal: PathBuf,
}

impl fmt::Debug for EvpnKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvpnKernel")
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

/// The flood journal of the calling thread's network namespace, in `dir`.
fn journal_in(dir: &Path) -> Result<PathBuf, String> {
    let namespace = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| format!("cannot identify the network namespace: {e}"))?;
    Ok(dir.join(format!("bgp-evpn-flood-{}", namespace.ino())))
}

impl EvpnKernel {
    /// Opens an rtnetlink connection in the current network namespace, with the flood journal
    /// in `/run/ztos`.
    pub fn open() -> Result<EvpnKernel, String> {
        EvpnKernel::open_in(Path::new(JOURNAL_DIR))
    }

    /// [`EvpnKernel::open`] with the flood journal in `run_dir` (a lab node's directory).
    pub fn open_in(run_dir: &Path) -> Result<EvpnKernel, String> {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| format!("cannot open an rtnetlink socket: {e}"))?;
        tokio::spawn(connection);
        let (connection, links_handle, links) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(|e| format!("cannot subscribe to link changes over rtnetlink: {e}"))?;
        tokio::spawn(connection);
        Ok(EvpnKernel {
            handle,
            links: Some(links),
            _links_handle: links_handle,
            journal: journal_in(run_dir)?,
        })
    }

    /// Sends one request and collects the replies; an error reply becomes the error.
    async fn request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, io::Error> {
        request(&self.handle, message, flags).await
    }

    async fn change(&self, message: RouteNetlinkMessage, flags: u16) -> Result<(), io::Error> {
        self.request(message, NLM_F_REQUEST | NLM_F_ACK | flags)
            .await
            .map(drop)
    }

    /// Like [`Self::change`] for a deletion: what is already gone is not an error.
    async fn delete(&self, message: RouteNetlinkMessage) -> Result<(), io::Error> {
        match self.change(message, 0).await {
            Err(e) if is_gone(&e) => Ok(()),
            other => other,
        }
    }

    /// A link's index and master, by name; `None` when there is no such link.
    async fn link(&self, name: &str) -> Result<Option<Link>, io::Error> {
        link_by_name(&self.handle, name).await
    }

    async fn links(&self) -> Result<Vec<Link>, String> {
        dump_links(&self.handle).await
    }

    async fn fdb(&self) -> Result<Vec<NeighbourMessage>, String> {
        dump_fdb(&self.handle).await
    }

    /// Removes every FDB entry, neighbour and route ZTOS's BGP put there earlier (what a
    /// crashed or restarted ztos-bgp left behind); the number removed. Entries ztosd or the
    /// kernel made (static flood list, learned MACs, local addresses) are never touched.
    pub async fn sweep(&self) -> Result<usize, String> {
        let mut removed = 0;
        let links = self.links().await?;
        let vxlan_name = |index: u32| {
            links
                .iter()
                .find(|link| link.index == index && link.vxlan)
                .map(|link| link.name.clone())
        };
        for message in self.fdb().await? {
            let Some(entry) = parse_fdb(&message) else {
                continue;
            };
            let Some(device) = vxlan_name(entry.port) else {
                continue;
            };
            if !entry.flags.contains(NeighbourFlags::ExtLearned) {
                continue;
            }
            let Some(mac) = entry.mac else { continue };
            let master = !entry.flags.contains(NeighbourFlags::Own) && entry.master.is_some();
            let mut delete = if master {
                bridge_fdb_message(entry.port, &mac)
            } else {
                vxlan_fdb_message(entry.port, &mac, None)
            };
            if entry.vlan != 0 {
                delete.attributes.push(NeighbourAttribute::Vlan(entry.vlan));
            }
            self.delete(RouteNetlinkMessage::DelNeighbour(delete))
                .await
                .map_err(|e| {
                    format!(
                        "cannot remove stale EVPN MAC {} from {device}{}: {e}",
                        mac_text(&mac),
                        if master { " (bridge entry)" } else { "" }
                    )
                })?;
            removed += 1;
        }

        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut request = NeighbourMessage::default();
            request.header.family = family;
            let replies = self
                .request(
                    RouteNetlinkMessage::GetNeighbour(request),
                    NLM_F_REQUEST | NLM_F_DUMP,
                )
                .await
                .map_err(|e| format!("cannot list neighbours: {e}"))?;
            for reply in replies {
                let RouteNetlinkMessage::NewNeighbour(neighbour) = reply else {
                    continue;
                };
                let ours = neighbour.attributes.iter().any(|a| {
                    matches!(a, NeighbourAttribute::Protocol(p) if u8::from(*p) == RTPROT_ZTOS_BGP)
                });
                if !ours {
                    continue;
                }
                let what = neighbour_destination(&neighbour)
                    .map_or_else(|| "?".to_string(), |ip| ip.to_string());
                let index = neighbour.header.ifindex;
                let mut delete = NeighbourMessage::default();
                delete.header = neighbour.header.clone();
                delete.attributes = neighbour
                    .attributes
                    .into_iter()
                    .filter(|a| matches!(a, NeighbourAttribute::Destination(_)))
                    .collect();
                self.delete(RouteNetlinkMessage::DelNeighbour(delete))
                    .await
                    .map_err(|e| {
                        format!("cannot remove stale EVPN neighbour {what} (link {index}): {e}")
                    })?;
                removed += 1;
            }
        }

        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut request = RouteMessage::default();
            request.header.address_family = family;
            let replies = self
                .request(
                    RouteNetlinkMessage::GetRoute(request),
                    NLM_F_REQUEST | NLM_F_DUMP,
                )
                .await
                .map_err(|e| format!("cannot list routes: {e}"))?;
            for reply in replies {
                let RouteNetlinkMessage::NewRoute(route) = reply else {
                    continue;
                };
                if u8::from(route.header.protocol) != RTPROT_ZTOS_BGP {
                    continue;
                }
                let table = route_table(&route);
                if table == MAIN_TABLE || table == LOCAL_TABLE {
                    continue;
                }
                self.delete(RouteNetlinkMessage::DelRoute(route))
                    .await
                    .map_err(|e| {
                        format!("cannot remove a stale EVPN route in table {table}: {e}")
                    })?;
                removed += 1;
            }
        }

        let journal = read_journal(&self.journal)?;
        for (device, device_mac, vtep) in &journal {
            let link = self
                .link(device)
                .await
                .map_err(|e| format!("cannot look up {device}: {e}"))?;
            let Some(link) = link.filter(|link| link.mac == Some(*device_mac)) else {
                // Gone, or re-created since (its entries went with the old device).
                continue;
            };
            self.delete(RouteNetlinkMessage::DelNeighbour(flood_message(
                link.index, *vtep,
            )))
            .await
            .map_err(|e| format!("cannot remove stale flood VTEP {vtep} from {device}: {e}"))?;
            removed += 1;
        }
        write_journal(&self.journal, &BTreeSet::new())?;
        Ok(removed)
    }

    /// The MACs learned right now on local ports of `segment`'s bridge (for a (re)start).
    pub async fn local_macs(&self, segment: &L2Segment) -> Result<Vec<[u8; 6]>, String> {
        let links = self.links().await?;
        let Some(ports) = SegmentPorts::resolve(segment, &links) else {
            return Ok(Vec::new());
        };
        let macs: BTreeSet<[u8; 6]> = self
            .fdb()
            .await?
            .iter()
            .filter_map(parse_fdb)
            .filter(|entry| is_local_mac(entry, &ports))
            .filter_map(|entry| entry.mac)
            .collect();
        Ok(macs.into_iter().collect())
    }
}

async fn request(
    handle: &rtnetlink::Handle,
    message: RouteNetlinkMessage,
    flags: u16,
) -> Result<Vec<RouteNetlinkMessage>, io::Error> {
    let mut request = NetlinkMessage::from(message);
    request.header.flags = flags;
    let mut handle = handle.clone();
    let mut replies = handle
        .request(request)
        .map_err(|error| io::Error::other(error.to_string()))?;
    let mut messages = Vec::new();
    while let Some(reply) = replies.next().await {
        match reply.payload {
            NetlinkPayload::InnerMessage(message) => messages.push(message),
            NetlinkPayload::Error(error) if error.code.is_some() => return Err(error.to_io()),
            _ => {}
        }
    }
    Ok(messages)
}

fn is_gone(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(nix::libc::ENOENT) | Some(nix::libc::ESRCH) | Some(nix::libc::ENODEV)
    )
}

async fn link_by_name(handle: &rtnetlink::Handle, name: &str) -> Result<Option<Link>, io::Error> {
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

async fn dump_links(handle: &rtnetlink::Handle) -> Result<Vec<Link>, String> {
    let replies = request(
        handle,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_REQUEST | NLM_F_DUMP,
    )
    .await
    .map_err(|e| format!("cannot list links: {e}"))?;
    Ok(replies
        .iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(parse_link(link)),
            _ => None,
        })
        .collect())
}

async fn dump_fdb(handle: &rtnetlink::Handle) -> Result<Vec<NeighbourMessage>, String> {
    let mut request_message = NeighbourMessage::default();
    request_message.header.family = AddressFamily::Bridge;
    let replies = request(
        handle,
        RouteNetlinkMessage::GetNeighbour(request_message),
        NLM_F_REQUEST | NLM_F_DUMP,
    )
    .await
    .map_err(|e| format!("cannot list FDB entries: {e}"))?;
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
struct Link {
    index: u32,
    name: String,
    master: Option<u32>,
    vxlan: bool,
    mac: Option<[u8; 6]>,
}

fn parse_link(message: &LinkMessage) -> Link {
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
struct FdbEntry {
    /// The port (or, for the bridge's own entries, the bridge; for vxlan `self` entries, the
    /// VXLAN device).
    port: u32,
    /// NDA_MASTER: the bridge, for bridge entries.
    master: Option<u32>,
    mac: Option<[u8; 6]>,
    vlan: u16,
    state: u16,
    flags: NeighbourFlags,
    destination: Option<IpAddr>,
}

fn parse_fdb(message: &NeighbourMessage) -> Option<FdbEntry> {
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

fn attribute_address(attribute: &NeighbourAttribute) -> Option<&NeighbourAddress> {
    match attribute {
        NeighbourAttribute::Destination(address) => Some(address),
        _ => None,
    }
}

/// NDA_DST as an IP address; in AF_BRIDGE messages the parser cannot know its family.
fn neighbour_address(address: Option<&NeighbourAddress>) -> Option<IpAddr> {
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

fn neighbour_destination(message: &NeighbourMessage) -> Option<IpAddr> {
    neighbour_address(message.attributes.iter().find_map(attribute_address))
}

fn route_table(route: &RouteMessage) -> u32 {
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
struct SegmentPorts {
    vni: u32,
    bridge: u32,
    vxlan: Option<u32>,
}

impl SegmentPorts {
    fn resolve(segment: &L2Segment, links: &[Link]) -> Option<SegmentPorts> {
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
fn is_local_mac(entry: &FdbEntry, ports: &SegmentPorts) -> bool {
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

fn neighbour_ip(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(ip) => NeighbourAddress::Inet(ip),
        IpAddr::V6(ip) => NeighbourAddress::Inet6(ip),
    }
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// A remote MAC on a VXLAN device (`bridge fdb replace MAC dev VX dst VTEP self extern_learn
/// permanent`); without `vtep`, the message that deletes the MAC's entry.
fn vxlan_fdb_message(vxlan: u32, mac: &[u8; 6], vtep: Option<IpAddr>) -> NeighbourMessage {
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
fn bridge_fdb_message(port: u32, mac: &[u8; 6]) -> NeighbourMessage {
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

/// An ingress-replication entry, as ztosd's static flood list (`bridge fdb append
/// 00:00:00:00:00:00 dev VX dst VTEP self permanent`); sent with `NLM_F_APPEND`.
fn flood_message(vxlan: u32, vtep: IpAddr) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    message.header.ifindex = vxlan;
    message.header.state = NeighbourState::from(NUD_PERMANENT | NUD_NOARP);
    message.header.flags = NeighbourFlags::Own;
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(ZERO_MAC.to_vec()));
    message
        .attributes
        .push(NeighbourAttribute::Destination(neighbour_ip(vtep)));
    message
}

/// The router MAC of a remote VTEP on the L3 VNI's bridge (`ip neigh replace VTEP lladdr RMAC
/// dev BR nud permanent protocol 197`); without `router_mac`, the deletion.
fn vtep_neighbour_message(
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
fn prefix_route_message(
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

/// The flood remotes ztos-bgp added: (VXLAN device, its MAC address, VTEP).
type Journal = BTreeSet<(String, [u8; 6], IpAddr)>;

/// The journal: one `device device-mac vtep` line per flood remote ztos-bgp added.
fn render_journal(entries: &Journal) -> String {
    entries
        .iter()
        .map(|(device, mac, vtep)| format!("{device} {} {vtep}\n", mac_text(mac)))
        .collect()
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn parse_journal(text: &str) -> Result<Journal, String> {
    let mut entries = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [device, mac, vtep] = fields.as_slice() else {
            return Err(format!(
                "line {}: expected `device device-mac vtep`, found `{line}`",
                number + 1
            ));
        };
        let mac = parse_mac(mac)
            .ok_or_else(|| format!("line {}: bad MAC address `{mac}`", number + 1))?;
        let vtep = vtep
            .parse::<IpAddr>()
            .map_err(|e| format!("line {}: bad VTEP address `{vtep}`: {e}", number + 1))?;
        entries.insert((device.to_string(), mac, vtep));
    }
    Ok(entries)
}

fn read_journal(path: &Path) -> Result<Journal, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            parse_journal(&text).map_err(|e| format!("flood journal {}: {e}", path.display()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(format!(
            "cannot read the flood journal {}: {e}",
            path.display()
        )),
    }
}

/// Replaces the journal atomically (write, then rename); an empty journal is no file.
fn write_journal(path: &Path, entries: &Journal) -> Result<(), String> {
    let fail = |e: io::Error| format!("cannot write the flood journal {}: {e}", path.display());
    if entries.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(fail(e)),
            _ => Ok(()),
        };
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, render_journal(entries)).map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)
}

/// One installed type 5 prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prefix {
    vrf: String,
    vtep: IpAddr,
    router_mac: [u8; 6],
    l3_bridge: String,
    l3_vxlan: String,
}

/// What the op task has installed (or wants installed), so that it can re-install on a
/// re-created device.
#[derive(Debug, Default)]
struct Wanted {
    /// Remote MACs per VXLAN device.
    macs: BTreeMap<String, BTreeMap<[u8; 6], IpAddr>>,
    /// Flood remotes per VXLAN device; `true` when ztos-bgp added the kernel entry (it was
    /// not ztosd's already).
    floods: BTreeMap<String, BTreeMap<IpAddr, bool>>,
    /// The MAC address of each VXLAN device with flood remotes, when last installed on.
    device_macs: BTreeMap<String, [u8; 6]>,
    prefixes: BTreeMap<(u32, IpNet), Prefix>,
}

impl Wanted {
    fn journal(&self) -> Journal {
        self.floods
            .iter()
            .filter_map(|(device, remotes)| Some((device, self.device_macs.get(device)?, remotes)))
            .flat_map(|(device, mac, remotes)| {
                remotes
                    .iter()
                    .filter(|(_, owned)| **owned)
                    .map(move |(vtep, _)| (device.clone(), *mac, *vtep))
            })
            .collect()
    }
}

struct Applier {
    kernel: EvpnKernel,
    wanted: Wanted,
    /// The last index and master seen per link name, to notice re-created devices.
    links: HashMap<String, (u32, Option<u32>)>,
    /// VRFs whose absence was reported.
    missing_vrfs: HashSet<String>,
    errors: mpsc::UnboundedSender<String>,
}

impl Applier {
    fn report(&self, error: String) {
        let _ = self.errors.send(error);
    }

    /// The index of a device that must exist, remembered for re-install decisions.
    async fn index(&mut self, name: &str) -> Result<u32, String> {
        Ok(self.resolve(name).await?.index)
    }

    /// A device that must exist, remembered for re-install decisions.
    async fn resolve(&mut self, name: &str) -> Result<Link, String> {
        match self.kernel.link(name).await {
            Ok(Some(link)) => {
                self.links
                    .insert(name.to_string(), (link.index, link.master));
                Ok(link)
            }
            Ok(None) => Err(format!("device {name} does not exist")),
            Err(e) => Err(format!("cannot look up device {name}: {e}")),
        }
    }

    async fn apply(&mut self, op: EvpnOp) {
        let result = match &op {
            EvpnOp::InstallMac { vxlan, mac, vtep } => {
                self.wanted
                    .macs
                    .entry(vxlan.clone())
                    .or_default()
                    .insert(*mac, *vtep);
                self.install_mac(vxlan, mac, *vtep).await
            }
            EvpnOp::RemoveMac { vxlan, mac } => {
                if let Some(macs) = self.wanted.macs.get_mut(vxlan) {
                    macs.remove(mac);
                    if macs.is_empty() {
                        self.wanted.macs.remove(vxlan);
                    }
                }
                self.remove_mac(vxlan, mac).await
            }
            EvpnOp::AddFlood { vxlan, vtep } => self.add_flood(vxlan, *vtep).await,
            EvpnOp::RemoveFlood { vxlan, vtep } => self.remove_flood(vxlan, *vtep).await,
            EvpnOp::InstallPrefix {
                vrf,
                table,
                prefix,
                vtep,
                router_mac,
                l3_bridge,
                l3_vxlan,
            } => {
                let entry = Prefix {
                    vrf: vrf.clone(),
                    vtep: *vtep,
                    router_mac: *router_mac,
                    l3_bridge: l3_bridge.clone(),
                    l3_vxlan: l3_vxlan.clone(),
                };
                let old = self
                    .wanted
                    .prefixes
                    .insert((*table, *prefix), entry.clone());
                let mut result = Ok(());
                if let Some(old) = old.filter(|old| *old != entry) {
                    result = self.release_prefix_parts(&old).await;
                }
                let installed = self.install_prefix(*table, prefix, &entry).await;
                result.and(installed)
            }
            EvpnOp::RemovePrefix { table, prefix, .. } => {
                match self.wanted.prefixes.remove(&(*table, *prefix)) {
                    Some(old) => self.remove_prefix(*table, prefix, &old).await,
                    None => self.remove_route(*table, prefix).await,
                }
            }
        };
        if let Err(e) = result {
            self.report(format!("{op}: {e}"));
        }
    }

    async fn install_mac(
        &mut self,
        vxlan: &str,
        mac: &[u8; 6],
        vtep: IpAddr,
    ) -> Result<(), String> {
        let index = self.index(vxlan).await?;
        self.kernel
            .change(
                RouteNetlinkMessage::NewNeighbour(vxlan_fdb_message(index, mac, Some(vtep))),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .await
            .map_err(|e| format!("FDB entry on {vxlan}: {e}"))?;
        self.install_bridge_entry(vxlan, index, mac).await
    }

    /// The bridge's entry pointing at the VXLAN port; nothing when the device is not (yet)
    /// a bridge port (it is installed when the device is enslaved).
    async fn install_bridge_entry(
        &self,
        vxlan: &str,
        index: u32,
        mac: &[u8; 6],
    ) -> Result<(), String> {
        if self
            .links
            .get(vxlan)
            .and_then(|(_, master)| *master)
            .is_none()
        {
            return Ok(());
        }
        self.kernel
            .change(
                RouteNetlinkMessage::NewNeighbour(bridge_fdb_message(index, mac)),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .await
            .map_err(|e| format!("bridge FDB entry on port {vxlan}: {e}"))
    }

    async fn remove_mac(&mut self, vxlan: &str, mac: &[u8; 6]) -> Result<(), String> {
        let Some(Link { index, master, .. }) = self
            .kernel
            .link(vxlan)
            .await
            .map_err(|e| format!("cannot look up device {vxlan}: {e}"))?
        else {
            return Ok(());
        };
        if master.is_some() {
            self.kernel
                .delete(RouteNetlinkMessage::DelNeighbour(bridge_fdb_message(
                    index, mac,
                )))
                .await
                .map_err(|e| format!("bridge FDB entry on port {vxlan}: {e}"))?;
        }
        self.kernel
            .delete(RouteNetlinkMessage::DelNeighbour(vxlan_fdb_message(
                index, mac, None,
            )))
            .await
            .map_err(|e| format!("FDB entry on {vxlan}: {e}"))
    }

    /// Whether the kernel has the flood remote `vtep` on the device `index`.
    async fn has_flood(&self, index: u32, vtep: IpAddr) -> Result<bool, String> {
        Ok(self
            .kernel
            .fdb()
            .await?
            .iter()
            .filter_map(parse_fdb)
            .any(|entry| {
                entry.port == index
                    && entry.flags.contains(NeighbourFlags::Own)
                    && entry.mac == Some(ZERO_MAC)
                    && entry.destination == Some(vtep)
            }))
    }

    async fn add_flood(&mut self, vxlan: &str, vtep: IpAddr) -> Result<(), String> {
        let remotes = self.wanted.floods.entry(vxlan.to_string()).or_default();
        if remotes.contains_key(&vtep) {
            return Ok(());
        }
        remotes.insert(vtep, false);
        self.install_flood(vxlan, vtep).await
    }

    /// Appends the flood remote unless the kernel has it already (ztosd's static list).
    /// (Also on a re-created device: whatever was there before went with the old one.)
    async fn install_flood(&mut self, vxlan: &str, vtep: IpAddr) -> Result<(), String> {
        let link = self.resolve(vxlan).await?;
        let present = self.has_flood(link.index, vtep).await?;
        if !present {
            self.kernel
                .change(
                    RouteNetlinkMessage::NewNeighbour(flood_message(link.index, vtep)),
                    NLM_F_CREATE | NLM_F_APPEND,
                )
                .await
                .map_err(|e| format!("flood entry on {vxlan}: {e}"))?;
        }
        if let Some(owned) = self
            .wanted
            .floods
            .get_mut(vxlan)
            .and_then(|remotes| remotes.get_mut(&vtep))
        {
            *owned = !present;
        }
        if let Some(mac) = link.mac {
            self.wanted.device_macs.insert(vxlan.to_string(), mac);
        }
        write_journal(&self.kernel.journal, &self.wanted.journal())
    }

    async fn remove_flood(&mut self, vxlan: &str, vtep: IpAddr) -> Result<(), String> {
        let Some(remotes) = self.wanted.floods.get_mut(vxlan) else {
            return Ok(());
        };
        let owned = remotes.remove(&vtep).unwrap_or(false);
        if remotes.is_empty() {
            self.wanted.floods.remove(vxlan);
            self.wanted.device_macs.remove(vxlan);
        }
        if !owned {
            // ztosd's entry (or never installed): not ours to remove.
            return Ok(());
        }
        if let Some(Link { index, .. }) = self
            .kernel
            .link(vxlan)
            .await
            .map_err(|e| format!("cannot look up device {vxlan}: {e}"))?
        {
            self.kernel
                .delete(RouteNetlinkMessage::DelNeighbour(flood_message(
                    index, vtep,
                )))
                .await
                .map_err(|e| format!("flood entry on {vxlan}: {e}"))?;
        }
        write_journal(&self.kernel.journal, &self.wanted.journal())
    }

    async fn install_prefix(
        &mut self,
        table: u32,
        prefix: &IpNet,
        entry: &Prefix,
    ) -> Result<(), String> {
        if self.kernel.link(&entry.vrf).await.ok().flatten().is_none() {
            if self.missing_vrfs.insert(entry.vrf.clone()) {
                let why = if Path::new("/sys/module/vrf").exists() {
                    "ztosd has not created it"
                } else {
                    "this kernel has no VRF support (module vrf not available)"
                };
                return Err(format!(
                    "the tenant's VRF device {} does not exist: {why}; its EVPN type 5 \
                     routes are not installed until it does",
                    entry.vrf
                ));
            }
            return Ok(());
        }
        self.missing_vrfs.remove(&entry.vrf);
        let vxlan = self.index(&entry.l3_vxlan).await?;
        self.kernel
            .change(
                RouteNetlinkMessage::NewNeighbour(vxlan_fdb_message(
                    vxlan,
                    &entry.router_mac,
                    Some(entry.vtep),
                )),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .await
            .map_err(|e| format!("router MAC FDB entry on {}: {e}", entry.l3_vxlan))?;
        self.install_bridge_entry(&entry.l3_vxlan, vxlan, &entry.router_mac)
            .await?;
        let bridge = self.index(&entry.l3_bridge).await?;
        self.kernel
            .change(
                RouteNetlinkMessage::NewNeighbour(vtep_neighbour_message(
                    bridge,
                    entry.vtep,
                    Some(&entry.router_mac),
                )),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .await
            .map_err(|e| format!("neighbour {} on {}: {e}", entry.vtep, entry.l3_bridge))?;
        self.kernel
            .change(
                RouteNetlinkMessage::NewRoute(prefix_route_message(
                    table,
                    prefix,
                    Some((entry.vtep, bridge)),
                )),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .await
            .map_err(|e| format!("route {prefix} in table {table}: {e}"))
    }

    async fn remove_route(&self, table: u32, prefix: &IpNet) -> Result<(), String> {
        self.kernel
            .delete(RouteNetlinkMessage::DelRoute(prefix_route_message(
                table, prefix, None,
            )))
            .await
            .map_err(|e| format!("route {prefix} in table {table}: {e}"))
    }

    async fn remove_prefix(
        &mut self,
        table: u32,
        prefix: &IpNet,
        old: &Prefix,
    ) -> Result<(), String> {
        self.remove_route(table, prefix).await?;
        self.release_prefix_parts(old).await
    }

    /// Removes the neighbour and router MAC of a prefix no longer wanted, unless another
    /// prefix still uses them.
    async fn release_prefix_parts(&mut self, old: &Prefix) -> Result<(), String> {
        let prefixes = &self.wanted.prefixes;
        let neighbour_used = prefixes
            .values()
            .any(|p| p.l3_bridge == old.l3_bridge && p.vtep == old.vtep);
        let mac_used = prefixes
            .values()
            .any(|p| p.l3_vxlan == old.l3_vxlan && p.router_mac == old.router_mac);
        if !neighbour_used {
            if let Some(Link { index: bridge, .. }) = self
                .kernel
                .link(&old.l3_bridge)
                .await
                .map_err(|e| format!("cannot look up device {}: {e}", old.l3_bridge))?
            {
                self.kernel
                    .delete(RouteNetlinkMessage::DelNeighbour(vtep_neighbour_message(
                        bridge, old.vtep, None,
                    )))
                    .await
                    .map_err(|e| format!("neighbour {} on {}: {e}", old.vtep, old.l3_bridge))?;
            }
        }
        if !mac_used {
            self.remove_mac(&old.l3_vxlan, &old.router_mac).await?;
        }
        Ok(())
    }

    /// A link appeared or changed: re-install what belongs on it when it is a new device
    /// (deleted and re-created) or newly a bridge port.
    async fn link_changed(&mut self, link: Link) {
        let previous = self
            .links
            .insert(link.name.clone(), (link.index, link.master));
        let recreated = previous.is_none_or(|(index, _)| index != link.index);
        let enslaved =
            link.master.is_some() && previous.is_some_and(|(_, master)| master != link.master);
        if !recreated && !enslaved {
            return;
        }
        let name = link.name.as_str();
        let mut failures = Vec::new();
        if let Some(macs) = self.wanted.macs.get(name).cloned() {
            for (mac, vtep) in macs {
                let result = if recreated {
                    self.install_mac(name, &mac, vtep).await
                } else {
                    self.install_bridge_entry(name, link.index, &mac).await
                };
                if let Err(e) = result {
                    failures.push(format!(
                        "re-installing MAC {} via VTEP {vtep} on {name}: {e}",
                        mac_text(&mac)
                    ));
                }
            }
        }
        if recreated {
            if let Some(remotes) = self.wanted.floods.get(name).cloned() {
                for vtep in remotes.keys() {
                    if let Err(e) = self.install_flood(name, *vtep).await {
                        failures.push(format!("re-adding flood VTEP {vtep} on {name}: {e}"));
                    }
                }
            }
        }
        let prefixes: Vec<((u32, IpNet), Prefix)> = self
            .wanted
            .prefixes
            .iter()
            .filter(|(_, p)| {
                p.l3_vxlan == name || (recreated && (p.l3_bridge == name || p.vrf == name))
            })
            .map(|(key, p)| (*key, p.clone()))
            .collect();
        for ((table, prefix), entry) in prefixes {
            if let Err(e) = self.install_prefix(table, &prefix, &entry).await {
                failures.push(format!(
                    "re-installing EVPN prefix {prefix} in VRF {} (table {table}): {e}",
                    entry.vrf
                ));
            }
        }
        for failure in failures {
            self.report(failure);
        }
    }
}

/// Applies ops in order; failures go to `errors` as one line naming the op and the device.
/// The task also watches the kernel's links and re-installs what it installed on a device
/// that was deleted and re-created (or re-enslaved to its bridge).
pub fn spawn(
    mut kernel: EvpnKernel,
    errors: mpsc::UnboundedSender<String>,
) -> mpsc::UnboundedSender<EvpnOp> {
    let (ops, mut receiver) = mpsc::unbounded_channel::<EvpnOp>();
    let mut links = kernel.links.take();
    let mut applier = Applier {
        kernel,
        wanted: Wanted::default(),
        links: HashMap::new(),
        missing_vrfs: HashSet::new(),
        errors,
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                op = receiver.recv() => match op {
                    Some(op) => applier.apply(op).await,
                    None => break,
                },
                message = next_message(&mut links) => match message {
                    Some(RouteNetlinkMessage::NewLink(link)) => {
                        applier.link_changed(parse_link(&link)).await
                    }
                    Some(RouteNetlinkMessage::DelLink(link)) => {
                        applier.links.remove(&parse_link(&link).name);
                    }
                    Some(_) => {}
                    None => {
                        applier.report(
                            "the rtnetlink link notifications ended: EVPN entries are no \
                             longer re-installed on re-created devices"
                                .to_string(),
                        );
                        links = None;
                    }
                },
            }
        }
    });
    ops
}

/// The next notification; pending forever when there is no subscription.
async fn next_message(subscription: &mut Option<Unsolicited>) -> Option<RouteNetlinkMessage> {
    let Some(stream) = subscription else {
        return std::future::pending().await;
    };
    loop {
        let (message, _) = stream.next().await?;
        if let NetlinkPayload::InnerMessage(message) = message.payload {
            return Some(message);
        }
    }
}

/// The local MACs of the current segments, kept from FDB notifications.
#[derive(Debug, Default)]
struct LocalMacs {
    /// The resolved segments, by bridge index.
    ports: Vec<SegmentPorts>,
    /// Per (vni, mac) the VLANs of the bridge entries that make it local.
    present: BTreeMap<(u32, [u8; 6]), BTreeSet<u16>>,
}

impl LocalMacs {
    /// Applies one FDB notification; the change to report, if any.
    fn update(&mut self, message: &NeighbourMessage, deleted: bool) -> Option<LocalMac> {
        let entry = parse_fdb(message)?;
        let mac = entry.mac?;
        let ports = *self
            .ports
            .iter()
            .find(|ports| Some(ports.bridge) == entry.master)?;
        let key = (ports.vni, mac);
        if !deleted && is_local_mac(&entry, &ports) {
            let vlans = self.present.entry(key).or_default();
            let new = vlans.is_empty();
            vlans.insert(entry.vlan);
            new.then_some(LocalMac::Learned {
                vni: ports.vni,
                mac,
            })
        } else {
            let vlans = self.present.get_mut(&key)?;
            vlans.remove(&entry.vlan);
            if !vlans.is_empty() {
                return None;
            }
            self.present.remove(&key);
            Some(LocalMac::Gone {
                vni: ports.vni,
                mac,
            })
        }
    }

    /// Replaces everything with a fresh dump; the changes to report.
    fn resync(&mut self, ports: Vec<SegmentPorts>, fdb: &[NeighbourMessage]) -> Vec<LocalMac> {
        let old = std::mem::take(&mut self.present);
        self.ports = ports;
        for message in fdb {
            let _ = self.update(message, false);
        }
        let mut changes = Vec::new();
        for (vni, mac) in old.keys() {
            if !self.present.contains_key(&(*vni, *mac)) {
                changes.push(LocalMac::Gone {
                    vni: *vni,
                    mac: *mac,
                });
            }
        }
        for (vni, mac) in self.present.keys() {
            if !old.contains_key(&(*vni, *mac)) {
                changes.push(LocalMac::Learned {
                    vni: *vni,
                    mac: *mac,
                });
            }
        }
        changes
    }
}

/// Watches the kernel's FDB (RTNLGRP_NEIGH, AF_BRIDGE) and reports local MACs of the current
/// segments as they are learned and forgotten (aged out, deleted, moved to the VXLAN port).
/// `segments` can change at any time (config commits): on a change, report `Learned` for the
/// MACs already on new segments and `Gone` for those of removed segments. Ends when `events`
/// is closed. Must be called inside a tokio runtime in the network namespace to watch.
pub fn watch_local_macs(
    segments: watch::Receiver<Vec<L2Segment>>,
    events: mpsc::UnboundedSender<LocalMac>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut segments = segments;
        let mut state = LocalMacs::default();
        let mut segments_open = true;
        loop {
            let connection =
                rtnetlink::new_multicast_connection(&[MulticastGroup::Link, MulticastGroup::Neigh]);
            let (connection, handle, mut messages) = match connection {
                Ok(parts) => parts,
                Err(e) => {
                    tracing::warn!("cannot subscribe to FDB changes: {e}; retrying");
                    tokio::select! {
                        _ = events.closed() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    }
                }
            };
            let task = tokio::spawn(connection);
            // Names of the segments' devices and their last known indexes.
            let mut names: HashMap<String, Option<u32>> = HashMap::new();
            let mut resync = true;
            loop {
                if resync {
                    resync = false;
                    let current = segments.borrow_and_update().clone();
                    match resync_local_macs(&handle, &current, &mut state, &mut names).await {
                        Ok(changes) => {
                            for change in changes {
                                if events.send(change).is_err() {
                                    task.abort();
                                    return;
                                }
                            }
                        }
                        Err(e) => tracing::warn!("cannot read the FDB of the EVPN segments: {e}"),
                    }
                }
                tokio::select! {
                    _ = events.closed() => {
                        task.abort();
                        return;
                    }
                    changed = segments.changed(), if segments_open => {
                        match changed {
                            Ok(()) => resync = true,
                            Err(_) => segments_open = false,
                        }
                    }
                    message = messages.next() => {
                        let Some((message, _)) = message else { break };
                        let NetlinkPayload::InnerMessage(message) = message.payload else {
                            continue;
                        };
                        let change = match &message {
                            RouteNetlinkMessage::NewNeighbour(m) => state.update(m, false),
                            RouteNetlinkMessage::DelNeighbour(m) => state.update(m, true),
                            RouteNetlinkMessage::NewLink(link) => {
                                let link = parse_link(link);
                                if names.get(&link.name).is_some_and(|i| *i != Some(link.index)) {
                                    resync = true;
                                }
                                None
                            }
                            RouteNetlinkMessage::DelLink(link) => {
                                let link = parse_link(link);
                                if names.get(&link.name).is_some_and(Option::is_some) {
                                    resync = true;
                                }
                                None
                            }
                            _ => None,
                        };
                        if let Some(change) = change {
                            if events.send(change).is_err() {
                                task.abort();
                                return;
                            }
                        }
                    }
                }
            }
            // The notification stream ended (socket error): start over with a fresh dump.
            task.abort();
            tracing::warn!("FDB notifications ended; resubscribing");
        }
    })
}

async fn resync_local_macs(
    handle: &rtnetlink::Handle,
    segments: &[L2Segment],
    state: &mut LocalMacs,
    names: &mut HashMap<String, Option<u32>>,
) -> Result<Vec<LocalMac>, String> {
    let links = dump_links(handle).await?;
    names.clear();
    for segment in segments {
        for name in [&segment.bridge, &segment.vxlan] {
            names.insert(
                name.clone(),
                links.iter().find(|l| &l.name == name).map(|l| l.index),
            );
        }
    }
    let ports = segments
        .iter()
        .filter_map(|segment| SegmentPorts::resolve(segment, &links))
        .collect();
    let fdb = dump_fdb(handle).await?;
    Ok(state.resync(ports, &fdb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::{Emitable, NlaBuffer, Parseable};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

    fn bytes_of<T: Emitable>(message: &T) -> Vec<u8> {
        let mut buffer = vec![0; message.buffer_len()];
        message.emit(&mut buffer);
        buffer
    }

    fn round_trip(message: &NeighbourMessage) -> NeighbourMessage {
        let bytes = bytes_of(message);
        NeighbourMessage::parse(bytes.as_slice()).expect("parses")
    }

    /// The NLA with `kind` in the bytes after the 12-byte ndmsg header.
    fn nla(bytes: &[u8], kind: u16) -> Option<Vec<u8>> {
        let mut offset = 12;
        while offset + 4 <= bytes.len() {
            let buffer = NlaBuffer::new(&bytes[offset..]);
            let length = usize::from(buffer.length());
            if buffer.kind() == kind {
                return Some(buffer.value().to_vec());
            }
            offset += (length + 3) & !3;
        }
        None
    }

    #[test]
    fn vxlan_fdb_entries_are_self_extern_learn_permanent() {
        let vtep = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let message = vxlan_fdb_message(7, &MAC, Some(vtep));
        let bytes = bytes_of(&message);
        // struct ndmsg: family, pad x3, ifindex, state (u16), flags (u8), type (u8).
        assert_eq!(bytes[0], 7, "AF_BRIDGE");
        assert_eq!(u32::from_ne_bytes(bytes[4..8].try_into().unwrap()), 7);
        assert_eq!(u16::from_ne_bytes(bytes[8..10].try_into().unwrap()), 0xc0);
        assert_eq!(bytes[10], 0x02 | 0x10, "NTF_SELF | NTF_EXT_LEARNED");
        assert_eq!(nla(&bytes, 2), Some(MAC.to_vec()), "NDA_LLADDR");
        assert_eq!(nla(&bytes, 1), Some(vec![10, 0, 0, 2]), "NDA_DST");
        let parsed = parse_fdb(&round_trip(&message)).unwrap();
        assert_eq!(parsed.mac, Some(MAC));
        assert_eq!(parsed.destination, Some(vtep));
        assert_eq!(parsed.port, 7);
        // The deletion names the MAC only (the whole entry goes).
        assert_eq!(nla(&bytes_of(&vxlan_fdb_message(7, &MAC, None)), 1), None);
    }

    #[test]
    fn bridge_entries_are_master_extern_learn_and_flood_entries_self_static() {
        let bytes = bytes_of(&bridge_fdb_message(9, &MAC));
        assert_eq!(bytes[10], 0x04 | 0x10, "NTF_MASTER | NTF_EXT_LEARNED");
        assert_eq!(
            u16::from_ne_bytes(bytes[8..10].try_into().unwrap()) & 0x80,
            0
        );
        let vtep = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let flood = flood_message(9, vtep);
        let bytes = bytes_of(&flood);
        assert_eq!(bytes[10], 0x02, "NTF_SELF only");
        assert_eq!(u16::from_ne_bytes(bytes[8..10].try_into().unwrap()), 0xc0);
        assert_eq!(nla(&bytes, 2), Some(vec![0; 6]));
        assert_eq!(nla(&bytes, 1).map(|v| v.len()), Some(16));
        assert_eq!(
            parse_fdb(&round_trip(&flood)).unwrap().destination,
            Some(vtep)
        );
    }

    #[test]
    fn vtep_neighbours_carry_protocol_197() {
        let vtep = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let rmac = [0x02, 0xaa, 0, 0, 0, 0x07];
        let message = vtep_neighbour_message(4, vtep, Some(&rmac));
        let bytes = bytes_of(&message);
        assert_eq!(bytes[0], 2, "AF_INET");
        assert_eq!(u16::from_ne_bytes(bytes[8..10].try_into().unwrap()), 0x80);
        assert_eq!(nla(&bytes, 12), Some(vec![197]), "NDA_PROTOCOL");
        assert_eq!(nla(&bytes, 2), Some(rmac.to_vec()));
        let parsed = round_trip(&message);
        assert_eq!(neighbour_destination(&parsed), Some(vtep));
        assert!(parsed
            .attributes
            .contains(&NeighbourAttribute::Protocol(RouteProtocol::from(197))));
    }

    #[test]
    fn type5_routes_are_onlink_in_the_vrf_table() {
        let prefix: IpNet = "198.51.100.0/24".parse().unwrap();
        let vtep = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let message = prefix_route_message(1010, &prefix, Some((vtep, 12)));
        let bytes = bytes_of(&message);
        let parsed = RouteMessage::parse(bytes.as_slice()).unwrap();
        assert_eq!(u8::from(parsed.header.protocol), 197);
        assert_eq!(parsed.header.destination_prefix_length, 24);
        assert_eq!(parsed.header.table, 0, "tables above 255 go in RTA_TABLE");
        assert!(parsed.header.flags.contains(RouteFlags::Onlink));
        assert_eq!(route_table(&parsed), 1010);
        for attribute in [
            RouteAttribute::Gateway(RouteAddress::from(vtep)),
            RouteAttribute::Oif(12),
            RouteAttribute::Priority(BGP_METRIC),
            RouteAttribute::Destination(RouteAddress::from(prefix.addr())),
        ] {
            assert!(parsed.attributes.contains(&attribute), "{attribute:?}");
        }
        // An IPv6 prefix behind an IPv4 VTEP: RTA_VIA.
        let v6: IpNet = "2001:db8:1::/48".parse().unwrap();
        let message = prefix_route_message(10, &v6, Some((vtep, 12)));
        assert_eq!(message.header.table, 10);
        assert!(message
            .attributes
            .contains(&RouteAttribute::Via(RouteVia::Inet(Ipv4Addr::new(
                192, 0, 2, 7
            )))));
        assert!(!message
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Gateway(_))));
        // The deletion: destination and table, no next hop.
        let delete = prefix_route_message(10, &prefix, None);
        assert!(!delete
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Oif(_) | RouteAttribute::Gateway(_))));
    }

    fn bridge_entry(
        port: u32,
        master: Option<u32>,
        state: u16,
        flags: NeighbourFlags,
    ) -> NeighbourMessage {
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Bridge;
        message.header.ifindex = port;
        message.header.state = NeighbourState::from(state);
        message.header.flags = flags;
        message
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(MAC.to_vec()));
        if let Some(master) = master {
            message
                .attributes
                .push(NeighbourAttribute::Controller(master));
        }
        message
    }

    const PORTS: SegmentPorts = SegmentPorts {
        vni: 100,
        bridge: 10,
        vxlan: Some(11),
    };

    #[test]
    fn local_mac_filter() {
        let local = |m: &NeighbourMessage| is_local_mac(&parse_fdb(m).unwrap(), &PORTS);
        let none = NeighbourFlags::empty();
        assert!(local(&bridge_entry(12, Some(10), NUD_REACHABLE, none)));
        // `bridge fdb add ... master static` on a local port: static, not permanent.
        assert!(local(&bridge_entry(12, Some(10), NUD_NOARP, none)));
        // On the VXLAN port, on the bridge itself, on another bridge, without a master.
        assert!(!local(&bridge_entry(11, Some(10), NUD_REACHABLE, none)));
        assert!(!local(&bridge_entry(10, Some(10), NUD_PERMANENT, none)));
        assert!(!local(&bridge_entry(12, Some(20), NUD_REACHABLE, none)));
        assert!(!local(&bridge_entry(12, None, NUD_REACHABLE, none)));
        // A port's own address, an EVPN entry, a port's `self` entry.
        assert!(!local(&bridge_entry(12, Some(10), NUD_PERMANENT, none)));
        assert!(!local(&bridge_entry(
            12,
            Some(10),
            NUD_REACHABLE,
            NeighbourFlags::ExtLearned
        )));
        assert!(!local(&bridge_entry(
            12,
            Some(10),
            NUD_PERMANENT,
            NeighbourFlags::Own
        )));
        // A multicast address.
        let mut multicast = bridge_entry(12, Some(10), NUD_REACHABLE, none);
        multicast.attributes[0] = NeighbourAttribute::LinkLayerAddress(vec![1, 0, 0x5e, 0, 0, 1]);
        assert!(!local(&multicast));
        // Not AF_BRIDGE.
        let mut inet = bridge_entry(12, Some(10), NUD_REACHABLE, none);
        inet.header.family = AddressFamily::Inet;
        assert_eq!(parse_fdb(&inet), None);
    }

    #[test]
    fn local_macs_are_deduplicated_across_vlans_and_gone_when_moved() {
        let mut state = LocalMacs::default();
        assert_eq!(state.resync(vec![PORTS], &[]), vec![]);
        let on_vlan = |vlan: u16, port: u32| {
            let mut m = bridge_entry(port, Some(10), NUD_REACHABLE, NeighbourFlags::empty());
            if vlan != 0 {
                m.attributes.push(NeighbourAttribute::Vlan(vlan));
            }
            m
        };
        let learned = LocalMac::Learned { vni: 100, mac: MAC };
        let gone = LocalMac::Gone { vni: 100, mac: MAC };
        assert_eq!(state.update(&on_vlan(0, 12), false), Some(learned.clone()));
        assert_eq!(state.update(&on_vlan(5, 12), false), None);
        assert_eq!(state.update(&on_vlan(0, 12), true), None);
        // Moved to the VXLAN port on VLAN 5: an update of the same (mac, vlan) entry.
        assert_eq!(state.update(&on_vlan(5, 11), false), Some(gone.clone()));
        assert_eq!(state.update(&on_vlan(5, 11), true), None);
        assert_eq!(state.update(&on_vlan(0, 13), false), Some(learned.clone()));
        // The segment goes away.
        assert_eq!(state.resync(vec![], &[on_vlan(0, 13)]), vec![gone]);
        // And comes back.
        assert_eq!(state.resync(vec![PORTS], &[on_vlan(0, 13)]), vec![learned]);
        // Other bridges' entries are ignored.
        let other = bridge_entry(30, Some(31), NUD_REACHABLE, NeighbourFlags::empty());
        assert_eq!(state.update(&other, false), None);
        assert_eq!(state.update(&other, true), None);
    }

    #[test]
    fn journal_round_trip_and_errors() {
        let entries: Journal = [
            ("vx100".to_string(), MAC, "10.0.0.2".parse().unwrap()),
            (
                "vx200".to_string(),
                [0xfe; 6],
                "2001:db8::2".parse().unwrap(),
            ),
        ]
        .into_iter()
        .collect();
        let text = render_journal(&entries);
        assert_eq!(
            text,
            "vx100 02:00:00:00:00:01 10.0.0.2\nvx200 fe:fe:fe:fe:fe:fe 2001:db8::2\n"
        );
        assert_eq!(parse_journal(&text).unwrap(), entries);
        assert_eq!(parse_journal("").unwrap(), Journal::new());
        assert_eq!(
            parse_journal("vx100 02:00:00:00:00:01 10.0.0.2\nvx100 10.0.0.2\n").unwrap_err(),
            "line 2: expected `device device-mac vtep`, found `vx100 10.0.0.2`"
        );
        assert_eq!(
            parse_journal("vx100 02:00:00:00:01 10.0.0.2").unwrap_err(),
            "line 1: bad MAC address `02:00:00:00:01`"
        );
        assert_eq!(parse_mac("02:00:00:00:00:1"), None);
        assert_eq!(parse_mac("02:00:00:00:00:01:02"), None);
        assert_eq!(parse_mac("02:00:00:00:00:zz"), None);
        assert!(parse_journal("vx100 02:00:00:00:00:01 10.0.0.300")
            .unwrap_err()
            .starts_with("line 1: bad VTEP address `10.0.0.300`"));
    }

    #[test]
    fn ops_name_device_mac_and_vtep() {
        let op = EvpnOp::InstallMac {
            vxlan: "vx100".into(),
            mac: MAC,
            vtep: "10.0.0.2".parse().unwrap(),
        };
        assert_eq!(
            op.to_string(),
            "installing MAC 02:00:00:00:00:01 via VTEP 10.0.0.2 on vx100"
        );
        let op = EvpnOp::RemoveFlood {
            vxlan: "vx100".into(),
            vtep: "10.0.0.2".parse().unwrap(),
        };
        assert_eq!(op.to_string(), "removing flood VTEP 10.0.0.2 from vx100");
    }
}
