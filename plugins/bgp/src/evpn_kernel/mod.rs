//! EVPN to the kernel: remote MACs and ingress-replication flood lists on the VXLAN devices
//! of ztosd's `[[vxlan]]` segments, type 5 prefixes into tenant VRF tables, and the MACs the
//! kernel bridges learn on local ports (which the speaker originates as type 2 routes).
//!
//! The files: this one holds the ops and the [`EvpnKernel`] handle; `messages` the netlink
//! requests, dumps, parsing and message builders; `apply` the op task ([`spawn`]); `sweep`
//! [`EvpnKernel::sweep`]; `journal` the flood journal; `local_macs` the local MAC watcher
//! ([`watch_local_macs`]); `error` [`EvpnKernelError`], what every fallible call returns.
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
//!   [`RTPROT_ZTOS_BGP`](crate::kernel::RTPROT_ZTOS_BGP) (197). Routes in the main table are
//!   [`crate::kernel`]'s; this module sweeps protocol-197 routes of the other tables (the
//!   tenant VRF tables).
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

mod apply;
mod error;
mod journal;
mod local_macs;
mod messages;
mod sweep;

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use futures::channel::mpsc::UnboundedReceiver;
use ipnet::IpNet;
use rtnetlink::packet_core::{NetlinkMessage, NLM_F_ACK, NLM_F_REQUEST};
use rtnetlink::packet_route::neighbour::NeighbourMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::SocketAddr;
use rtnetlink::MulticastGroup;
use ztos_netlink::{NUD_NOARP, NUD_PERMANENT, NUD_REACHABLE};

use journal::journal_in;
use messages::{dump_fdb, dump_links, is_gone, link_by_name, request, Link};

pub use apply::spawn;
pub use error::{EvpnKernelError, JournalError};
pub use local_macs::watch_local_macs;

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

impl EvpnKernel {
    /// Opens an rtnetlink connection in the current network namespace, with the flood journal
    /// in `/run/ztos`.
    pub fn open() -> Result<EvpnKernel, EvpnKernelError> {
        EvpnKernel::open_in(Path::new(JOURNAL_DIR))
    }

    /// [`EvpnKernel::open`] with the flood journal in `run_dir` (a lab node's directory).
    pub fn open_in(run_dir: &Path) -> Result<EvpnKernel, EvpnKernelError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(EvpnKernelError::Socket)?;
        tokio::spawn(connection);
        let (connection, links_handle, links) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(EvpnKernelError::Subscribe)?;
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

    async fn links(&self) -> Result<Vec<Link>, EvpnKernelError> {
        dump_links(&self.handle).await
    }

    async fn fdb(&self) -> Result<Vec<NeighbourMessage>, EvpnKernelError> {
        dump_fdb(&self.handle).await
    }
}

#[cfg(test)]
mod tests {
    use super::journal::*;
    use super::local_macs::*;
    use super::messages::*;
    use super::*;
    use crate::kernel::BGP_METRIC;
    use rtnetlink::packet_core::{Emitable, NlaBuffer, Parseable};
    use rtnetlink::packet_route::neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourState};
    use rtnetlink::packet_route::route::{
        RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteVia,
    };
    use rtnetlink::packet_route::AddressFamily;
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
            parse_journal("vx100 02:00:00:00:00:01 10.0.0.2\nvx100 10.0.0.2\n")
                .unwrap_err()
                .to_string(),
            "line 2: expected `device device-mac vtep`, found `vx100 10.0.0.2`"
        );
        assert_eq!(
            parse_journal("vx100 02:00:00:00:01 10.0.0.2")
                .unwrap_err()
                .to_string(),
            "line 1: bad MAC address `02:00:00:00:01`"
        );
        assert_eq!(parse_mac("02:00:00:00:00:1"), None);
        assert_eq!(parse_mac("02:00:00:00:00:01:02"), None);
        assert_eq!(parse_mac("02:00:00:00:00:zz"), None);
        assert!(parse_journal("vx100 02:00:00:00:00:01 10.0.0.300")
            .unwrap_err()
            .to_string()
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
