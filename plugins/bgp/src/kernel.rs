//! Best routes into the kernel's main table over rtnetlink. Every route ztos-bgp installs
//! carries its own routing protocol id, [`RTPROT_ZTOS_BGP`] (197; ztosd's static and DHCP
//! routes carry 196 and its reconciler removes only those), so ownership never depends on the
//! metric. ztos-bgp removes every protocol-197 route in the main table when it starts (a stale
//! route from an earlier run must not outlive the session that taught it).
//!
//! The plugin opens its own rtnetlink socket in its own network namespace; see ARCHITECTURE.md.

use std::net::{IpAddr, Ipv4Addr};

use futures::StreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;
use tokio::sync::mpsc;

use ztos_bgp_codec::{IpPrefix, Ipv4Prefix, Ipv6Prefix};

/// The routing protocol id of ztos-bgp's routes (`proto 197` in `ip route`), next to ztosd's
/// `RTPROT_ZTOS` (196), both in `ztos_plugin::kernel_ids`.
pub use ztos_plugin::kernel_ids::RTPROT_ZTOS_BGP;
/// The metric of BGP routes, as FRR installs them. Not an ownership marker: the protocol is.
pub const BGP_METRIC: u32 = 20;
const MAIN_TABLE: u8 = 254;

/// One change to the kernel's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelOp {
    Replace { prefix: IpPrefix, gateway: IpAddr },
    Remove { prefix: IpPrefix },
}

/// Why a kernel route operation failed; the text is what the operator sees in the log.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot open an rtnetlink socket: {0}")]
    Open(#[source] std::io::Error),
    #[error("cannot install route {prefix} via {gateway}: {source}")]
    Install {
        prefix: IpPrefix,
        gateway: IpAddr,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot remove route {prefix}: {source}")]
    Remove {
        prefix: IpPrefix,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot list routes: {0}")]
    ListRoutes(#[source] rtnetlink::Error),
    #[error("cannot list addresses: {0}")]
    ListAddresses(#[source] rtnetlink::Error),
}

#[derive(Debug, Clone)]
pub struct Kernel {
    handle: rtnetlink::Handle,
}

fn message(prefix: &IpPrefix, gateway: Option<IpAddr>) -> RouteMessage {
    let mut message = RouteMessage::default();
    let (family, addr, len): (AddressFamily, IpAddr, u8) = match prefix {
        IpPrefix::V4(p) => (AddressFamily::Inet, IpAddr::V4(p.addr()), p.len()),
        IpPrefix::V6(p) => (AddressFamily::Inet6, IpAddr::V6(p.addr()), p.len()),
    };
    message.header.address_family = family;
    message.header.destination_prefix_length = len;
    message.header.table = MAIN_TABLE;
    message.header.protocol = RouteProtocol::from(RTPROT_ZTOS_BGP);
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message
        .attributes
        .push(RouteAttribute::Table(u32::from(MAIN_TABLE)));
    if len > 0 {
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::from(addr)));
    }
    if let Some(gateway) = gateway {
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
    }
    message
        .attributes
        .push(RouteAttribute::Priority(BGP_METRIC));
    message
}

impl Kernel {
    /// Opens an rtnetlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Kernel, KernelError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(KernelError::Open)?;
        tokio::spawn(connection);
        Ok(Kernel { handle })
    }

    pub async fn apply(&self, op: &KernelOp) -> Result<(), KernelError> {
        match op {
            KernelOp::Replace { prefix, gateway } => self
                .handle
                .route()
                .add(message(prefix, Some(*gateway)))
                .replace()
                .execute()
                .await
                .map_err(|source| KernelError::Install {
                    prefix: *prefix,
                    gateway: *gateway,
                    source,
                }),
            KernelOp::Remove { prefix } => {
                // Without a metric, scope or type, the kernel deletes our (protocol 197)
                // route to the prefix whatever those are: a previous run's may differ.
                let mut request = message(prefix, None);
                request
                    .attributes
                    .retain(|a| !matches!(a, RouteAttribute::Priority(_)));
                request.header.scope = RouteScope::NoWhere;
                request.header.kind = RouteType::Unspec;
                match self.handle.route().del(request).execute().await {
                    Ok(()) => Ok(()),
                    // Already gone (removed by hand, or with its interface).
                    Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_esrch() => {
                        Ok(())
                    }
                    Err(source) => Err(KernelError::Remove {
                        prefix: *prefix,
                        source,
                    }),
                }
            }
        }
    }

    /// ztos-bgp's routes (protocol 197, main table) now in the kernel, whatever their metric.
    pub async fn bgp_routes(&self) -> Result<Vec<RouteMessage>, KernelError> {
        let mut found = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut request = RouteMessage::default();
            request.header.address_family = family;
            let mut stream = self.handle.route().get(request).execute();
            while let Some(route) = stream.next().await {
                let route = route.map_err(KernelError::ListRoutes)?;
                let main_table = route.header.table == MAIN_TABLE
                    || route.attributes.iter().any(
                        |a| matches!(a, RouteAttribute::Table(t) if *t == u32::from(MAIN_TABLE)),
                    );
                let ours = u8::from(route.header.protocol) == RTPROT_ZTOS_BGP && main_table;
                if ours {
                    found.push(route);
                }
            }
        }
        Ok(found)
    }

    /// The prefixes of the BGP routes an earlier run left (for a graceful restart: they stay
    /// until peers have sent their routes again).
    pub async fn stale_prefixes(&self) -> Result<Vec<IpPrefix>, KernelError> {
        Ok(self
            .bgp_routes()
            .await?
            .iter()
            .filter_map(prefix_of_route)
            .collect())
    }

    /// RFC 4271 leaves the BGP identifier to the operator; ZTOS's default is the highest
    /// IPv4 address on the loopback interface that is not in 127/8, else the highest IPv4
    /// address on any other interface.
    pub async fn default_router_id(&self) -> Result<Option<Ipv4Addr>, KernelError> {
        let mut loopback = Vec::new();
        let mut other = Vec::new();
        let mut stream = self.handle.address().get().execute();
        let lo_index = {
            let mut links = self
                .handle
                .link()
                .get()
                .match_name("lo".to_string())
                .execute();
            match links.next().await {
                Some(Ok(link)) => Some(link.header.index),
                _ => None,
            }
        };
        while let Some(address) = stream.next().await {
            let address = address.map_err(KernelError::ListAddresses)?;
            for attribute in &address.attributes {
                if let AddressAttribute::Address(IpAddr::V4(v4)) = attribute {
                    if v4.is_loopback() || v4.is_unspecified() {
                        continue;
                    }
                    if Some(address.header.index) == lo_index {
                        loopback.push(*v4);
                    } else {
                        other.push(*v4);
                    }
                }
            }
        }
        Ok(loopback
            .into_iter()
            .max()
            .or_else(|| other.into_iter().max()))
    }
}

/// The destination of a route message as a prefix (`None` for a malformed one).
fn prefix_of_route(route: &RouteMessage) -> Option<IpPrefix> {
    let len = route.header.destination_prefix_length;
    let destination = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    });
    match (route.header.address_family, destination) {
        (AddressFamily::Inet, Some(IpAddr::V4(a))) => Ipv4Prefix::new(a, len).map(IpPrefix::V4),
        (AddressFamily::Inet, None) => {
            Ipv4Prefix::new(Ipv4Addr::UNSPECIFIED, len).map(IpPrefix::V4)
        }
        (AddressFamily::Inet6, Some(IpAddr::V6(a))) => Ipv6Prefix::new(a, len).map(IpPrefix::V6),
        (AddressFamily::Inet6, None) => {
            Ipv6Prefix::new(std::net::Ipv6Addr::UNSPECIFIED, len).map(IpPrefix::V6)
        }
        _ => None,
    }
}

fn libc_esrch() -> i32 {
    nix::libc::ESRCH
}

/// Applies kernel operations in order on a task of their own, so that a slow kernel never
/// stalls the speaker. Failures are reported on `errors`.
pub fn spawn(
    kernel: Kernel,
    errors: mpsc::UnboundedSender<KernelError>,
) -> mpsc::UnboundedSender<KernelOp> {
    let (ops, mut receiver) = mpsc::unbounded_channel::<KernelOp>();
    tokio::spawn(async move {
        while let Some(op) = receiver.recv().await {
            if let Err(e) = kernel.apply(&op).await {
                let _ = errors.send(e);
            }
        }
    });
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use ztos_bgp_codec::{Ipv4Prefix, Ipv6Prefix};

    #[test]
    fn stale_route_messages_read_back_as_prefixes() {
        for p in ["192.0.2.0/24", "0.0.0.0/0", "2001:db8::/32", "10.1.2.3/32"] {
            let net: ipnet::IpNet = p.parse().unwrap();
            let prefix = match net {
                ipnet::IpNet::V4(n) => {
                    IpPrefix::V4(Ipv4Prefix::new(n.addr(), n.prefix_len()).unwrap())
                }
                ipnet::IpNet::V6(n) => {
                    IpPrefix::V6(Ipv6Prefix::new(n.addr(), n.prefix_len()).unwrap())
                }
            };
            let m = message(&prefix, Some("10.0.0.1".parse().unwrap()));
            assert_eq!(prefix_of_route(&m), Some(prefix), "{p}");
        }
    }

    #[test]
    fn route_messages_carry_protocol_metric_and_table() {
        let prefix = IpPrefix::V4(Ipv4Prefix::new(Ipv4Addr::new(192, 0, 2, 0), 24).unwrap());
        let m = message(&prefix, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))));
        assert_eq!(u8::from(m.header.protocol), 197);
        assert_eq!(m.header.destination_prefix_length, 24);
        assert_eq!(m.header.table, MAIN_TABLE);
        assert!(m.attributes.contains(&RouteAttribute::Priority(BGP_METRIC)));
        assert!(m
            .attributes
            .contains(&RouteAttribute::Gateway(RouteAddress::from(IpAddr::V4(
                Ipv4Addr::new(10, 0, 0, 2)
            )))));
        let v6 = IpPrefix::V6(Ipv6Prefix::new("2001:db8::".parse().unwrap(), 32).unwrap());
        let m = message(&v6, None);
        assert_eq!(m.header.address_family, AddressFamily::Inet6);
        assert!(!m
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Gateway(_))));
    }
}
