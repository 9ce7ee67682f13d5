//! [`EvpnKernel::sweep`]: removing what an earlier ztos-bgp left in the kernel (see the module
//! doc of [`super`] for what marks it).

use std::collections::BTreeSet;

use rtnetlink::packet_core::{NLM_F_DUMP, NLM_F_REQUEST};
use rtnetlink::packet_route::neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourMessage};
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::kernel::RTPROT_ZTOS_BGP;

use super::journal::{read_journal, write_journal};
use super::messages::{
    bridge_fdb_message, flood_message, neighbour_destination, parse_fdb, route_table,
    vxlan_fdb_message,
};
use super::{mac_text, EvpnKernel, EvpnKernelError, LOCAL_TABLE, MAIN_TABLE};

impl EvpnKernel {
    /// Removes every FDB entry, neighbour and route ZTOS's BGP put there earlier (what a
    /// crashed or restarted ztos-bgp left behind); the number removed. Entries ztosd or the
    /// kernel made (static flood list, learned MACs, local addresses) are never touched.
    pub async fn sweep(&self) -> Result<usize, EvpnKernelError> {
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
                .map_err(|source| EvpnKernelError::StaleMac {
                    mac: mac_text(&mac),
                    device: device.clone(),
                    entry: if master { " (bridge entry)" } else { "" },
                    source,
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
                .map_err(|source| EvpnKernelError::Dump {
                    what: "neighbours",
                    source,
                })?;
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
                    .map_err(|source| EvpnKernelError::StaleNeighbour {
                        what,
                        index,
                        source,
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
                .map_err(|source| EvpnKernelError::Dump {
                    what: "routes",
                    source,
                })?;
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
                    .map_err(|source| EvpnKernelError::StaleRoute { table, source })?;
                removed += 1;
            }
        }

        let journal = read_journal(&self.journal)?;
        for (device, device_mac, vtep) in &journal {
            let link = self
                .link(device)
                .await
                .map_err(|source| EvpnKernelError::LookUp {
                    device: device.clone(),
                    source,
                })?;
            let Some(link) = link.filter(|link| link.mac == Some(*device_mac)) else {
                // Gone, or re-created since (its entries went with the old device).
                continue;
            };
            self.delete(RouteNetlinkMessage::DelNeighbour(flood_message(
                link.index, *vtep,
            )))
            .await
            .map_err(|source| EvpnKernelError::StaleFlood {
                vtep: *vtep,
                device: device.clone(),
                source,
            })?;
            removed += 1;
        }
        write_journal(&self.journal, &BTreeSet::new())?;
        Ok(removed)
    }
}
