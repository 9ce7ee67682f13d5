//! ZTOS's BGP speaker plugin (`ztos-bgp`).
//!
//! - [`codec`]: the wire codec, which is its own crate (`ztos-bgp-codec`, no tokio) so that
//!   `ztos bgp decode` and the fuzz targets need not build the speaker; re-exported here so the
//!   speaker's modules keep their `ztos_bgp_codec::` paths.
//! - [`session`]: one neighbor's RFC 4271 state machine (pure, [`session::fsm`]) and the tasks
//!   that own its TCP connections and timers.
//! - [`rib`]: Adj-RIB-In, Loc-RIB and the decision process; [`policy`]: what is imported and
//!   exported; [`speaker`]: the task that ties sessions, RIB, update groups and the kernel.
//! - [`kernel`]: best routes into the kernel over rtnetlink with ZTOS's protocol id;
//!   [`evpn`] and [`evpn_kernel`]: EVPN's routes and the FDB, flood and VRF state they program.
//! - [`config`]: the `[bgp]` section as the plugin reads and validates it.

pub mod config;
pub mod evpn;
pub mod evpn_kernel;
pub mod kernel;
pub mod md5;
pub mod policy;
pub mod rib;
pub mod session;
pub mod speaker;
