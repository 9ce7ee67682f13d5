//! The MACs the kernel bridges learn on local ports: read once at a (re)start
//! ([`EvpnKernel::local_macs`]) and watched from FDB notifications ([`watch_local_macs`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::neighbour::NeighbourMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;
use tokio::sync::{mpsc, watch};

use super::messages::{dump_fdb, dump_links, is_local_mac, parse_fdb, parse_link, SegmentPorts};
use super::{EvpnKernel, EvpnKernelError, L2Segment, LocalMac};

impl EvpnKernel {
    /// The MACs learned right now on local ports of `segment`'s bridge (for a (re)start).
    pub async fn local_macs(&self, segment: &L2Segment) -> Result<Vec<[u8; 6]>, EvpnKernelError> {
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

/// The local MACs of the current segments, kept from FDB notifications.
#[derive(Debug, Default)]
pub(super) struct LocalMacs {
    /// The resolved segments, by bridge index.
    pub(super) ports: Vec<SegmentPorts>,
    /// Per (vni, mac) the VLANs of the bridge entries that make it local.
    pub(super) present: BTreeMap<(u32, [u8; 6]), BTreeSet<u16>>,
}

impl LocalMacs {
    /// Applies one FDB notification; the change to report, if any.
    pub(super) fn update(&mut self, message: &NeighbourMessage, deleted: bool) -> Option<LocalMac> {
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
    pub(super) fn resync(
        &mut self,
        ports: Vec<SegmentPorts>,
        fdb: &[NeighbourMessage],
    ) -> Vec<LocalMac> {
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

pub(super) async fn resync_local_macs(
    handle: &rtnetlink::Handle,
    segments: &[L2Segment],
    state: &mut LocalMacs,
    names: &mut HashMap<String, Option<u32>>,
) -> Result<Vec<LocalMac>, EvpnKernelError> {
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
