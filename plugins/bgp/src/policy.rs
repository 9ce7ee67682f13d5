//! What is imported from and exported to a peer (RFC 4271 §9.1.1 and §9.1.3, RFC 4456):
//! the AS path loop check, route reflection, next hop self and attribute rewriting for eBGP.
//! Pure functions: the speaker calls them for each route.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::rib::{Path, SourceInfo, DEFAULT_LOCAL_PREF};
use ztos_bgp_codec::{AsPath, Asn, NextHop, PathAttributes};

/// Why a received route is not a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// eBGP: our AS is in the AS path.
    AsPathLoop,
    /// iBGP: the ORIGINATOR_ID is our router id (RFC 4456 §8).
    OriginatorIsUs,
    /// iBGP: our cluster id is in the CLUSTER_LIST (RFC 4456 §8).
    ClusterLoop,
}

/// Import of one received route: `Err` when it must not become a candidate. LOCAL_PREF from an
/// eBGP peer is ignored (RFC 4271 §5.1.5).
pub fn import(
    mut attributes: PathAttributes,
    next_hop: NextHop,
    from: &SourceInfo,
    local_as: u32,
    cluster_id: Ipv4Addr,
    router_id: Ipv4Addr,
) -> (Path, Result<(), Refusal>) {
    let verdict = if from.ebgp {
        attributes.local_pref = None;
        if attributes
            .as_path
            .as_ref()
            .is_some_and(|p| p.contains(Asn(local_as)))
        {
            Err(Refusal::AsPathLoop)
        } else {
            Ok(())
        }
    } else if attributes.originator_id == Some(router_id) {
        Err(Refusal::OriginatorIsUs)
    } else if attributes.cluster_list.contains(&cluster_id) {
        Err(Refusal::ClusterLoop)
    } else {
        Ok(())
    };
    (
        Path {
            attributes,
            next_hop,
            evpn: None,
        },
        verdict,
    )
}

/// The peers a route is exported to in one update group share this.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExportTarget {
    pub ebgp: bool,
    pub rr_client: bool,
    /// The addresses next hop self uses: the local end of the session, per family.
    pub local_v4: Option<Ipv4Addr>,
    pub local_v6: Option<Ipv6Addr>,
}

/// The route as advertised to `to`, or `None` when it must not be advertised.
pub fn export(
    path: &Path,
    from: &SourceInfo,
    to: &ExportTarget,
    local_as: u32,
    cluster_id: Ipv4Addr,
) -> Option<Path> {
    let originated = from.peer.is_none();
    let mut attributes = path.attributes.clone();
    attributes.prepare_unknown_for_propagation();
    let self_hop = || -> Option<NextHop> {
        match path.next_hop {
            NextHop::Ipv4(_) => to.local_v4.map(NextHop::Ipv4).or_else(|| {
                to.local_v6.map(|global| NextHop::Ipv6 {
                    global,
                    link_local: None,
                })
            }),
            NextHop::Ipv6 { .. } => to
                .local_v6
                .or_else(|| to.local_v4.map(|v4| v4.to_ipv6_mapped()))
                .map(|global| NextHop::Ipv6 {
                    global,
                    link_local: None,
                }),
            NextHop::Other(_) => None,
        }
    };
    let next_hop = if to.ebgp {
        let as_path = attributes
            .as_path
            .take()
            .unwrap_or_else(|| AsPath::sequence(Vec::new()));
        attributes.as_path = Some(as_path.prepend(Asn(local_as), 1));
        attributes.local_pref = None;
        // MULTI_EXIT_DISC is not passed on to other neighboring ASes (RFC 4271 §5.1.4).
        if !originated {
            attributes.med = None;
        }
        attributes.originator_id = None;
        attributes.cluster_list.clear();
        self_hop()?
    } else {
        if !originated && !from.ebgp {
            // iBGP-learned: only a route reflector passes it on (RFC 4456 §6).
            if !(from.rr_client || to.rr_client) {
                return None;
            }
            attributes.originator_id = Some(attributes.originator_id.unwrap_or(from.router_id));
            attributes.cluster_list.insert(0, cluster_id);
        }
        attributes.local_pref = Some(attributes.local_pref.unwrap_or(DEFAULT_LOCAL_PREF));
        if attributes.as_path.is_none() {
            attributes.as_path = Some(AsPath::sequence(Vec::new()));
        }
        if originated {
            self_hop()?
        } else {
            path.next_hop.clone()
        }
    };
    attributes.next_hop = match next_hop {
        NextHop::Ipv4(a) if matches!(path.next_hop, NextHop::Ipv4(_)) => Some(a),
        _ => None,
    };
    Some(Path {
        attributes,
        next_hop,
        evpn: path.evpn.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use ztos_bgp_codec::Origin;

    fn learned(ebgp: bool, rr_client: bool) -> SourceInfo {
        SourceInfo {
            peer: Some(1),
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            router_id: Ipv4Addr::new(2, 2, 2, 2),
            ebgp,
            rr_client,
        }
    }

    fn route(asns: &[u32]) -> Path {
        let attributes = PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(asns.iter().map(|a| Asn(*a)).collect())),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 2)),
            med: Some(50),
            local_pref: Some(300),
            ..PathAttributes::default()
        };
        Path {
            attributes,
            next_hop: NextHop::Ipv4(Ipv4Addr::new(10, 0, 0, 2)),
            evpn: None,
        }
    }

    fn target(ebgp: bool, rr_client: bool) -> ExportTarget {
        ExportTarget {
            ebgp,
            rr_client,
            local_v4: Some(Ipv4Addr::new(10, 0, 1, 1)),
            local_v6: None,
        }
    }

    const ID: Ipv4Addr = Ipv4Addr::new(1, 1, 1, 1);

    #[test]
    fn import_checks() {
        let r = route(&[65002, 65001]);
        let (path, verdict) = import(
            r.attributes.clone(),
            r.next_hop.clone(),
            &learned(true, false),
            65001,
            ID,
            ID,
        );
        assert_eq!(verdict, Err(Refusal::AsPathLoop));
        assert_eq!(
            path.attributes.local_pref, None,
            "eBGP LOCAL_PREF is ignored"
        );
        let (_, verdict) = import(
            r.attributes.clone(),
            r.next_hop.clone(),
            &learned(true, false),
            65003,
            ID,
            ID,
        );
        assert_eq!(verdict, Ok(()));
        let mut reflected = r.attributes.clone();
        reflected.originator_id = Some(ID);
        let (_, verdict) = import(
            reflected,
            r.next_hop.clone(),
            &learned(false, false),
            65001,
            ID,
            ID,
        );
        assert_eq!(verdict, Err(Refusal::OriginatorIsUs));
        let mut looped = r.attributes.clone();
        looped.cluster_list = vec![Ipv4Addr::new(9, 9, 9, 9), ID];
        let (_, verdict) = import(looped, r.next_hop, &learned(false, false), 65001, ID, ID);
        assert_eq!(verdict, Err(Refusal::ClusterLoop));
    }

    #[test]
    fn ebgp_export_prepends_sets_next_hop_self_and_strips_ibgp_attributes() {
        let out = export(
            &route(&[65002]),
            &learned(true, false),
            &target(true, false),
            65001,
            ID,
        )
        .unwrap();
        assert_eq!(
            out.attributes.as_path,
            Some(AsPath::sequence(vec![Asn(65001), Asn(65002)]))
        );
        assert_eq!(out.attributes.next_hop, Some(Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(out.next_hop, NextHop::Ipv4(Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(out.attributes.local_pref, None);
        assert_eq!(out.attributes.med, None);
    }

    #[test]
    fn ibgp_export_keeps_next_hop_and_reflects_only_for_clients() {
        let ebgp_learned = export(
            &route(&[65002]),
            &learned(true, false),
            &target(false, false),
            65001,
            ID,
        )
        .unwrap();
        assert_eq!(
            ebgp_learned.next_hop,
            NextHop::Ipv4(Ipv4Addr::new(10, 0, 0, 2))
        );
        assert_eq!(ebgp_learned.attributes.local_pref, Some(300));
        assert_eq!(
            ebgp_learned.attributes.as_path,
            Some(AsPath::sequence(vec![Asn(65002)]))
        );
        assert!(export(
            &route(&[]),
            &learned(false, false),
            &target(false, false),
            65001,
            ID
        )
        .is_none());
        let reflected = export(
            &route(&[]),
            &learned(false, true),
            &target(false, false),
            65001,
            ID,
        )
        .unwrap();
        assert_eq!(
            reflected.attributes.originator_id,
            Some(Ipv4Addr::new(2, 2, 2, 2))
        );
        assert_eq!(reflected.attributes.cluster_list, vec![ID]);
        let to_client = export(
            &route(&[]),
            &learned(false, false),
            &target(false, true),
            65001,
            ID,
        )
        .unwrap();
        assert_eq!(to_client.attributes.cluster_list, vec![ID]);
    }

    #[test]
    fn originated_routes_get_next_hop_self_on_ibgp_too() {
        let local = SourceInfo::local(ID);
        let mut r = route(&[]);
        r.attributes.med = None;
        let out = export(&r, &local, &target(false, false), 65001, ID).unwrap();
        assert_eq!(out.next_hop, NextHop::Ipv4(Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(out.attributes.local_pref, Some(300));
    }
}
