//! The op task: applies [`EvpnOp`]s in order, remembers what it installed, and re-installs it
//! on a VXLAN device or bridge that was deleted and re-created.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use futures::StreamExt;
use ipnet::IpNet;
use rtnetlink::packet_core::{NetlinkPayload, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE};
use rtnetlink::packet_route::neighbour::NeighbourFlags;
use rtnetlink::packet_route::RouteNetlinkMessage;
use tokio::sync::mpsc;

use super::journal::{write_journal, Journal};
use super::messages::{
    bridge_fdb_message, flood_message, parse_fdb, parse_link, prefix_route_message,
    vtep_neighbour_message, vxlan_fdb_message, Link,
};
use super::{mac_text, EvpnKernel, EvpnKernelError, EvpnOp, Unsolicited, ZERO_MAC};

/// One installed type 5 prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Prefix {
    pub(super) vrf: String,
    pub(super) vtep: IpAddr,
    pub(super) router_mac: [u8; 6],
    l3_bridge: String,
    l3_vxlan: String,
}

/// What the op task has installed (or wants installed), so that it can re-install on a
/// re-created device.
#[derive(Debug, Default)]
pub(super) struct Wanted {
    /// Remote MACs per VXLAN device.
    pub(super) macs: BTreeMap<String, BTreeMap<[u8; 6], IpAddr>>,
    /// Flood remotes per VXLAN device; `true` when ztos-bgp added the kernel entry (it was
    /// not ztosd's already).
    pub(super) floods: BTreeMap<String, BTreeMap<IpAddr, bool>>,
    /// The MAC address of each VXLAN device with flood remotes, when last installed on.
    pub(super) device_macs: BTreeMap<String, [u8; 6]>,
    pub(super) prefixes: BTreeMap<(u32, IpNet), Prefix>,
}

impl Wanted {
    pub(super) fn journal(&self) -> Journal {
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

pub(super) struct Applier {
    pub(super) kernel: EvpnKernel,
    pub(super) wanted: Wanted,
    /// The last index and master seen per link name, to notice re-created devices.
    pub(super) links: HashMap<String, (u32, Option<u32>)>,
    /// VRFs whose absence was reported.
    pub(super) missing_vrfs: HashSet<String>,
    pub(super) errors: mpsc::UnboundedSender<String>,
}

impl Applier {
    pub(super) fn report(&self, error: String) {
        let _ = self.errors.send(error);
    }

    /// The index of a device that must exist, remembered for re-install decisions.
    pub(super) async fn index(&mut self, name: &str) -> Result<u32, EvpnKernelError> {
        Ok(self.resolve(name).await?.index)
    }

    /// A device that must exist, remembered for re-install decisions.
    pub(super) async fn resolve(&mut self, name: &str) -> Result<Link, EvpnKernelError> {
        match self.kernel.link(name).await {
            Ok(Some(link)) => {
                self.links
                    .insert(name.to_string(), (link.index, link.master));
                Ok(link)
            }
            Ok(None) => Err(EvpnKernelError::NoDevice {
                device: name.to_string(),
            }),
            Err(source) => Err(EvpnKernelError::LookUp {
                device: name.to_string(),
                source,
            }),
        }
    }

    pub(super) async fn apply(&mut self, op: EvpnOp) {
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

    pub(super) async fn install_mac(
        &mut self,
        vxlan: &str,
        mac: &[u8; 6],
        vtep: IpAddr,
    ) -> Result<(), EvpnKernelError> {
        let index = self.index(vxlan).await?;
        self.kernel
            .change(
                RouteNetlinkMessage::NewNeighbour(vxlan_fdb_message(index, mac, Some(vtep))),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .await
            .map_err(|source| EvpnKernelError::Change {
                what: format!("FDB entry on {vxlan}"),
                source,
            })?;
        self.install_bridge_entry(vxlan, index, mac).await
    }

    /// The bridge's entry pointing at the VXLAN port; nothing when the device is not (yet)
    /// a bridge port (it is installed when the device is enslaved).
    pub(super) async fn install_bridge_entry(
        &self,
        vxlan: &str,
        index: u32,
        mac: &[u8; 6],
    ) -> Result<(), EvpnKernelError> {
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
            .map_err(|source| EvpnKernelError::Change {
                what: format!("bridge FDB entry on port {vxlan}"),
                source,
            })
    }

    pub(super) async fn remove_mac(
        &mut self,
        vxlan: &str,
        mac: &[u8; 6],
    ) -> Result<(), EvpnKernelError> {
        let Some(Link { index, master, .. }) =
            self.kernel
                .link(vxlan)
                .await
                .map_err(|source| EvpnKernelError::LookUp {
                    device: vxlan.to_string(),
                    source,
                })?
        else {
            return Ok(());
        };
        if master.is_some() {
            self.kernel
                .delete(RouteNetlinkMessage::DelNeighbour(bridge_fdb_message(
                    index, mac,
                )))
                .await
                .map_err(|source| EvpnKernelError::Change {
                    what: format!("bridge FDB entry on port {vxlan}"),
                    source,
                })?;
        }
        self.kernel
            .delete(RouteNetlinkMessage::DelNeighbour(vxlan_fdb_message(
                index, mac, None,
            )))
            .await
            .map_err(|source| EvpnKernelError::Change {
                what: format!("FDB entry on {vxlan}"),
                source,
            })
    }

    /// Whether the kernel has the flood remote `vtep` on the device `index`.
    pub(super) async fn has_flood(
        &self,
        index: u32,
        vtep: IpAddr,
    ) -> Result<bool, EvpnKernelError> {
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

    pub(super) async fn add_flood(
        &mut self,
        vxlan: &str,
        vtep: IpAddr,
    ) -> Result<(), EvpnKernelError> {
        let remotes = self.wanted.floods.entry(vxlan.to_string()).or_default();
        if remotes.contains_key(&vtep) {
            return Ok(());
        }
        remotes.insert(vtep, false);
        self.install_flood(vxlan, vtep).await
    }

    /// Appends the flood remote unless the kernel has it already (ztosd's static list).
    /// (Also on a re-created device: whatever was there before went with the old one.)
    pub(super) async fn install_flood(
        &mut self,
        vxlan: &str,
        vtep: IpAddr,
    ) -> Result<(), EvpnKernelError> {
        let link = self.resolve(vxlan).await?;
        let present = self.has_flood(link.index, vtep).await?;
        if !present {
            self.kernel
                .change(
                    RouteNetlinkMessage::NewNeighbour(flood_message(link.index, vtep)),
                    NLM_F_CREATE | NLM_F_APPEND,
                )
                .await
                .map_err(|source| EvpnKernelError::Change {
                    what: format!("flood entry on {vxlan}"),
                    source,
                })?;
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

    pub(super) async fn remove_flood(
        &mut self,
        vxlan: &str,
        vtep: IpAddr,
    ) -> Result<(), EvpnKernelError> {
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
        if let Some(Link { index, .. }) =
            self.kernel
                .link(vxlan)
                .await
                .map_err(|source| EvpnKernelError::LookUp {
                    device: vxlan.to_string(),
                    source,
                })?
        {
            self.kernel
                .delete(RouteNetlinkMessage::DelNeighbour(flood_message(
                    index, vtep,
                )))
                .await
                .map_err(|source| EvpnKernelError::Change {
                    what: format!("flood entry on {vxlan}"),
                    source,
                })?;
        }
        write_journal(&self.kernel.journal, &self.wanted.journal())
    }

    pub(super) async fn install_prefix(
        &mut self,
        table: u32,
        prefix: &IpNet,
        entry: &Prefix,
    ) -> Result<(), EvpnKernelError> {
        if self.kernel.link(&entry.vrf).await.ok().flatten().is_none() {
            if self.missing_vrfs.insert(entry.vrf.clone()) {
                let why = if Path::new("/sys/module/vrf").exists() {
                    "ztosd has not created it"
                } else {
                    "this kernel has no VRF support (module vrf not available)"
                };
                return Err(EvpnKernelError::NoVrf {
                    vrf: entry.vrf.clone(),
                    why,
                });
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
            .map_err(|source| EvpnKernelError::Change {
                what: format!("router MAC FDB entry on {}", entry.l3_vxlan),
                source,
            })?;
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
            .map_err(|source| EvpnKernelError::Change {
                what: format!("neighbour {} on {}", entry.vtep, entry.l3_bridge),
                source,
            })?;
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
            .map_err(|source| EvpnKernelError::Change {
                what: format!("route {prefix} in table {table}"),
                source,
            })
    }

    pub(super) async fn remove_route(
        &self,
        table: u32,
        prefix: &IpNet,
    ) -> Result<(), EvpnKernelError> {
        self.kernel
            .delete(RouteNetlinkMessage::DelRoute(prefix_route_message(
                table, prefix, None,
            )))
            .await
            .map_err(|source| EvpnKernelError::Change {
                what: format!("route {prefix} in table {table}"),
                source,
            })
    }

    pub(super) async fn remove_prefix(
        &mut self,
        table: u32,
        prefix: &IpNet,
        old: &Prefix,
    ) -> Result<(), EvpnKernelError> {
        self.remove_route(table, prefix).await?;
        self.release_prefix_parts(old).await
    }

    /// Removes the neighbour and router MAC of a prefix no longer wanted, unless another
    /// prefix still uses them.
    pub(super) async fn release_prefix_parts(
        &mut self,
        old: &Prefix,
    ) -> Result<(), EvpnKernelError> {
        let prefixes = &self.wanted.prefixes;
        let neighbour_used = prefixes
            .values()
            .any(|p| p.l3_bridge == old.l3_bridge && p.vtep == old.vtep);
        let mac_used = prefixes
            .values()
            .any(|p| p.l3_vxlan == old.l3_vxlan && p.router_mac == old.router_mac);
        if !neighbour_used {
            if let Some(Link { index: bridge, .. }) =
                self.kernel.link(&old.l3_bridge).await.map_err(|source| {
                    EvpnKernelError::LookUp {
                        device: old.l3_bridge.clone(),
                        source,
                    }
                })?
            {
                self.kernel
                    .delete(RouteNetlinkMessage::DelNeighbour(vtep_neighbour_message(
                        bridge, old.vtep, None,
                    )))
                    .await
                    .map_err(|source| EvpnKernelError::Change {
                        what: format!("neighbour {} on {}", old.vtep, old.l3_bridge),
                        source,
                    })?;
            }
        }
        if !mac_used {
            self.remove_mac(&old.l3_vxlan, &old.router_mac).await?;
        }
        Ok(())
    }

    /// A link appeared or changed: re-install what belongs on it when it is a new device
    /// (deleted and re-created) or newly a bridge port.
    pub(super) async fn link_changed(&mut self, link: Link) {
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
pub(super) async fn next_message(
    subscription: &mut Option<Unsolicited>,
) -> Option<RouteNetlinkMessage> {
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
