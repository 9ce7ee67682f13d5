//! Graceful restart (RFC 4724): a restarting peer's routes kept as stale, flushed on its
//! End-of-RIB or when the deadline passes, the capability we advertise, and the sweep of the
//! kernel routes a previous run of the speaker left.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::kernel::KernelOp;
use crate::rib::SourceInfo;
use ztos_bgp_codec::GracefulRestart;
use ztos_bgp_codec::{EvpnRoute, Family, IpPrefix};

use super::update_groups::Dirty;
use super::{family_of, Speaker, Up, RESTART_TIME};

/// A restarting peer's routes, kept as stale (RFC 4724 §4.2) until it sends them again and
/// End-of-RIB, or the deadline passes.
pub(super) struct Stale {
    pub(super) source: Arc<SourceInfo>,
    pub(super) prefixes: HashSet<IpPrefix>,
    pub(super) evpn: HashSet<EvpnRoute>,
    pub(super) deadline: Instant,
}

impl Speaker {
    /// Graceful restart helper (RFC 4724 §4.2): the session with a peer that advertised the
    /// capability ended without a NOTIFICATION, so its routes of the `families` it listed stay
    /// (still installed, still advertised) as stale for `restart_time` seconds; its other
    /// routes go now. Returns how many routes were kept.
    pub(super) fn keep_stale(
        &mut self,
        address: IpAddr,
        up: Up,
        restart_time: u16,
        families: &[Family],
        dirty: &mut Dirty,
    ) -> usize {
        self.leave_group(address, up.group);
        let peer = up.source.peer.unwrap_or_default();
        let all: Vec<IpPrefix> = self.rib.keys_of(peer);
        let (kept, gone): (Vec<IpPrefix>, Vec<IpPrefix>) = all
            .into_iter()
            .partition(|p| families.contains(&family_of(p)));
        let prefixes: HashSet<IpPrefix> = kept.into_iter().collect();
        for prefix in gone {
            let change = self.rib.set(&up.source, prefix, None);
            self.record(change, dirty);
        }
        let all_evpn: Vec<EvpnRoute> = self.evpn_rib.keys_of(peer);
        let mut evpn = HashSet::new();
        if families.contains(&Family::L2VPN_EVPN) {
            evpn.extend(all_evpn);
        } else {
            for key in all_evpn {
                if let Some(change) = self.evpn_rib.set(&up.source, key, None) {
                    self.record_evpn(change);
                }
            }
        }
        let count = prefixes.len() + evpn.len();
        let stale = self.stale.entry(address).or_insert_with(|| Stale {
            source: up.source.clone(),
            prefixes: HashSet::new(),
            evpn: HashSet::new(),
            deadline: Instant::now(),
        });
        stale.source = up.source;
        stale.prefixes.extend(prefixes);
        stale.evpn.extend(evpn);
        stale.deadline = Instant::now() + Duration::from_secs(u64::from(restart_time));
        count
    }

    /// Removes the stale routes of `address` (of `family` only, if given); the number removed.
    pub(super) fn flush_stale(
        &mut self,
        address: IpAddr,
        family: Option<Family>,
        dirty: &mut Dirty,
    ) -> usize {
        let Some(stale) = self.stale.get_mut(&address) else {
            return 0;
        };
        let source = stale.source.clone();
        let prefixes: Vec<IpPrefix> = stale
            .prefixes
            .iter()
            .filter(|p| family.is_none_or(|f| family_of(p) == f))
            .copied()
            .collect();
        for p in &prefixes {
            stale.prefixes.remove(p);
        }
        let evpn: Vec<EvpnRoute> = if family.is_none_or(|f| f == Family::L2VPN_EVPN) {
            stale.evpn.drain().collect()
        } else {
            Vec::new()
        };
        if stale.prefixes.is_empty() && stale.evpn.is_empty() {
            self.stale.remove(&address);
        }
        let removed = prefixes.len() + evpn.len();
        for prefix in prefixes {
            let change = self.rib.set(&source, prefix, None);
            self.record(change, dirty);
        }
        for key in evpn {
            if let Some(change) = self.evpn_rib.set(&source, key, None) {
                self.record_evpn(change);
            }
        }
        removed
    }

    /// The capability we advertise: the restart time, the R bit while we are restarting, and
    /// forwarding preserved for the unicast families whose kernel routes outlive us.
    pub(super) fn restart_capability(&self, families: &[Family]) -> GracefulRestart {
        let restarting = self.restarting
            && self.started.elapsed() < Duration::from_secs(u64::from(RESTART_TIME));
        GracefulRestart {
            flags: if restarting {
                GracefulRestart::RESTART_STATE
            } else {
                0
            },
            restart_time: RESTART_TIME,
            families: families
                .iter()
                .map(|f| {
                    let preserved = self.kernel.is_some() && *f != Family::L2VPN_EVPN;
                    (
                        *f,
                        if preserved {
                            GracefulRestart::FORWARDING_PRESERVED
                        } else {
                            0
                        },
                    )
                })
                .collect(),
        }
    }

    /// Every second: stale routes of peers that did not come back (or did not finish) in
    /// time go, and after our own restart the kernel routes no peer sent again are removed
    /// once every neighbor has sent End-of-RIB, or [`RESTART_TIME`] after the start.
    pub(super) fn graceful_restart_timers(&mut self, dirty: &mut Dirty) {
        let now = Instant::now();
        let expired: Vec<IpAddr> = self
            .stale
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(a, _)| *a)
            .collect();
        for address in expired {
            let removed = self.flush_stale(address, None, dirty);
            self.report.log(
                true,
                format!("neighbor {address}: graceful restart time over; {removed} stale routes removed"),
            );
        }
        if self.stale_kernel.is_empty() {
            return;
        }
        let all_done = self.config.is_some()
            && self.neighbors.values().all(|n| {
                n.up.as_ref()
                    .is_some_and(|u| u.info.families.iter().all(|f| u.end_of_rib.contains(f)))
            });
        let timed_out = self.started.elapsed() >= Duration::from_secs(u64::from(RESTART_TIME));
        if !(all_done || timed_out) {
            return;
        }
        let stale: Vec<IpPrefix> = self.stale_kernel.drain().collect();
        if let Some(kernel) = &self.kernel {
            for prefix in &stale {
                let _ = kernel.send(KernelOp::Remove { prefix: *prefix });
            }
        }
        self.report.log(
            false,
            format!(
                "graceful restart done ({}): removed {} kernel routes of the previous run that no peer sent again",
                if all_done { "End-of-RIB from every neighbor" } else { "restart time over" },
                stale.len()
            ),
        );
    }
}
