//! The diff: `plan` compares the desired state with what the kernel has and lists the
//! operations that close the gap, in an order the kernel accepts. Pure: no I/O.
//!
//! What the plan may touch is deliberately narrow, so that ZTOS can share a kernel with
//! anything else running on the host:
//! - links are deleted only if they carry the `ztos-managed` alias;
//! - routes are deleted only if they carry the ZTOS routing protocol (`RTPROT_ZTOS`, 196);
//!   ztos-bgp's learned routes carry their own (`RTPROT_ZTOS_BGP`, 197) and are never touched;
//! - addresses are deleted on managed links, and on existing interfaces only if the previous
//!   configuration listed them;
//! - flood-list entries are deleted on managed VXLAN devices only if the previous
//!   configuration listed them (entries learned by the BGP plugin from EVPN type 3 routes
//!   live on the same devices and are not ours to remove).

use std::collections::BTreeSet;

use ipnet::IpNet;

use super::model::{
    DesiredState, FloodEntry, KernelRoute, KernelState, LinkChange, LinkKind, Op, Route,
    RTPROT_ZTOS,
};
use super::ReconcileError;

/// Lists the operations that move `actual` to `desired`. `previous` is the desired state of
/// the configuration that was applied before (empty on first boot); it decides which
/// addresses and flood entries on existing interfaces ZTOS put there and may remove.
/// Returns no operations when the kernel already matches.
pub fn plan(
    desired: &DesiredState,
    previous: &DesiredState,
    actual: &KernelState,
) -> Result<Vec<Op>, ReconcileError> {
    // Links that exist must exist; links ZTOS creates must not clash with foreign ones.
    let mut create: Vec<(String, LinkKind)> = Vec::new();
    let mut gone: BTreeSet<String> = BTreeSet::new();
    for link in &desired.links {
        let existing = actual.link(&link.name);
        match (&link.create, existing) {
            (None, None) => {
                return Err(ReconcileError::MissingInterface {
                    name: link.name.clone(),
                })
            }
            (None, Some(_)) => {}
            (Some(kind), None) => create.push((link.name.clone(), kind.clone())),
            (Some(kind), Some(existing)) => {
                if !existing.managed() {
                    return Err(ReconcileError::NameTaken {
                        name: link.name.clone(),
                        kind: existing.kind.name().to_string(),
                    });
                }
                if &existing.kind != kind {
                    // VNI, VTEP address, port and VRF table can only be set at creation.
                    gone.insert(link.name.clone());
                    create.push((link.name.clone(), kind.clone()));
                }
            }
        }
        if let Some(LinkKind::Vxlan(params)) = &link.create {
            if let Some(underlay) = &params.underlay {
                if actual.link(underlay).is_none() && desired.link(underlay).is_none() {
                    return Err(ReconcileError::MissingInterface {
                        name: underlay.clone(),
                    });
                }
            }
        }
    }
    let mut deletes: Vec<(String, LinkKind)> = Vec::new();
    for link in &actual.links {
        let wanted = desired.link(&link.name).is_some();
        if link.managed() && (!wanted || gone.contains(&link.name)) {
            gone.insert(link.name.clone());
            deletes.push((link.name.clone(), link.kind.clone()));
        }
    }
    // Ports go before the devices they belong to; VRFs last.
    deletes.sort_by_key(|(name, kind)| (std::cmp::Reverse(creation_rank(kind)), name.clone()));
    create.sort_by_key(|(name, kind)| (creation_rank(kind), name.clone()));
    let created: BTreeSet<&str> = create.iter().map(|(name, _)| name.as_str()).collect();

    // The kernel state as it will be once the deletes are done: objects on deleted links
    // disappear with them.
    let alive = |link: &str| !gone.contains(link);
    let actual_addresses: BTreeSet<(String, IpNet)> = actual
        .addresses
        .iter()
        .filter(|(link, _)| alive(link))
        .cloned()
        .collect();
    let actual_flood: BTreeSet<FloodEntry> = actual
        .flood
        .iter()
        .filter(|entry| alive(&entry.link))
        .cloned()
        .collect();
    let actual_routes: Vec<&KernelRoute> = actual
        .routes
        .iter()
        .filter(|route| route.protocol == RTPROT_ZTOS)
        .filter(|route| route.route.device.as_deref().is_none_or(alive))
        .collect();

    let mut ops = Vec::new();

    // 1. Stale routes, flood entries and addresses.
    for kernel_route in &actual_routes {
        if !desired
            .routes
            .iter()
            .any(|route| route_matches(route, &kernel_route.route))
        {
            ops.push(Op::DelRoute(kernel_route.route.clone()));
        }
    }
    for entry in &actual_flood {
        let on_managed = actual.link(&entry.link).is_some_and(|link| link.managed());
        if on_managed && !desired.flood.contains(entry) && previous.flood.contains(entry) {
            ops.push(Op::DelFlood(entry.clone()));
        }
    }
    for (link, address) in &actual_addresses {
        if desired.addresses.contains(&(link.clone(), *address)) {
            continue;
        }
        let managed = actual.link(link).is_some_and(|l| l.managed());
        let ours = if managed {
            !is_ipv6_link_local(address)
        } else {
            previous.addresses.contains(&(link.clone(), *address))
        };
        if ours {
            ops.push(Op::DelAddress {
                link: link.clone(),
                address: *address,
            });
        }
    }

    // 2. Ports ZTOS enslaved that must be released (deleting a master releases its ports).
    for link in &actual.links {
        let Some(current) = &link.master else {
            continue;
        };
        if !alive(&link.name) || !alive(current) {
            continue;
        }
        let wanted = desired.link(&link.name);
        if wanted.is_some_and(|l| l.master.is_some()) {
            continue; // Re-enslaved below.
        }
        let master_managed = actual.link(current).is_some_and(|m| m.managed());
        let previously = previous
            .link(&link.name)
            .is_some_and(|l| l.master.as_ref() == Some(current));
        if previously || (wanted.is_some() && master_managed) {
            ops.push(Op::SetLink {
                name: link.name.clone(),
                change: LinkChange::Master(None),
            });
        }
    }

    // 3. Deletes, then creates.
    for (name, _) in &deletes {
        ops.push(Op::DeleteLink { name: name.clone() });
    }
    for (name, kind) in &create {
        ops.push(Op::CreateLink {
            name: name.clone(),
            kind: kind.clone(),
        });
    }

    // 4. MTU, then masters (a bridge joins its VRF before ports join the bridge).
    let current = |name: &str| {
        if created.contains(name) {
            None
        } else {
            actual.link(name)
        }
    };
    for link in &desired.links {
        if let Some(mtu) = link.mtu {
            if current(&link.name).is_none_or(|l| l.mtu != mtu) {
                ops.push(Op::SetLink {
                    name: link.name.clone(),
                    change: LinkChange::Mtu(mtu),
                });
            }
        }
    }
    let mut enslave: Vec<(u8, &str, &str)> = Vec::new();
    for link in &desired.links {
        if let Some(master) = &link.master {
            let master_changes = created.contains(master.as_str());
            if master_changes
                || current(&link.name).is_none_or(|l| l.master.as_ref() != Some(master))
            {
                let rank = match desired.link(master).and_then(|m| m.create.as_ref()) {
                    Some(LinkKind::Vrf { .. }) => 0,
                    _ => 1,
                };
                enslave.push((rank, &link.name, master));
            }
        }
    }
    enslave.sort();
    for (_, name, master) in enslave {
        ops.push(Op::SetLink {
            name: name.to_string(),
            change: LinkChange::Master(Some(master.to_string())),
        });
    }

    // 5. Addresses, then links up (or down).
    for (link, address) in &desired.addresses {
        if !actual_addresses.contains(&(link.clone(), *address)) {
            ops.push(Op::AddAddress {
                link: link.clone(),
                address: *address,
            });
        }
    }
    for link in &desired.links {
        let Some(up) = link.up else {
            continue;
        };
        let is_up = current(&link.name).is_some_and(|l| l.up);
        if up != is_up {
            ops.push(Op::SetLink {
                name: link.name.clone(),
                change: if up { LinkChange::Up } else { LinkChange::Down },
            });
        }
    }

    // 6. Flood entries and routes, once their devices are up.
    for entry in &desired.flood {
        if !actual_flood.contains(entry) {
            ops.push(Op::AddFlood(entry.clone()));
        }
    }
    for route in &desired.routes {
        let present = actual_routes
            .iter()
            .any(|kernel_route| route_matches(route, &kernel_route.route));
        if !present {
            ops.push(Op::AddRoute(route.clone()));
        }
    }
    Ok(ops)
}

/// Whether a kernel route is the configured one. The kernel always reports the output
/// device, the configuration names it only when it has to.
pub fn route_matches(desired: &Route, kernel: &Route) -> bool {
    desired.key() == kernel.key()
        && desired.gateway == kernel.gateway
        && (desired.device.is_none() || desired.device == kernel.device)
}

/// Order of creation: VRFs, then devices that hold addresses, then bridges, then the VXLAN
/// devices that are their ports.
fn creation_rank(kind: &LinkKind) -> u8 {
    match kind {
        LinkKind::Vrf { .. } => 0,
        LinkKind::Dummy => 1,
        LinkKind::Bridge => 2,
        LinkKind::Vxlan(_) => 3,
        LinkKind::Other(_) => 4,
    }
}

fn is_ipv6_link_local(address: &IpNet) -> bool {
    match address {
        IpNet::V6(net) => net.addr().segments()[0] & 0xffc0 == 0xfe80,
        IpNet::V4(_) => false,
    }
}
