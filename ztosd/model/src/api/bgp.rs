//! `GET /api/v1/bgp/routes` answers one of two shapes, by family: IP routes (prefix and paths)
//! or EVPN routes (route type, RD, route key and paths). The shapes themselves are the
//! speaker's answers in [`crate::bgp`].

use serde::{Deserialize, Serialize};

use crate::bgp::{BgpRoutes, EvpnRoutes};

/// `GET /api/v1/bgp/routes`: EVPN routes with `family=evpn` or `vni`, IP routes otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BgpRoutesAnswer {
    Ip(BgpRoutes),
    Evpn(EvpnRoutes),
}
