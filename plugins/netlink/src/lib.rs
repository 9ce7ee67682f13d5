//! ztos-netlink: the rtnetlink helpers that ztosd's reconciler (`ztosd/src/netlink/`), ztos-bgp's
//! EVPN kernel code (`plugins/bgp/src/evpn_kernel/`) and ztos-wireguard share, written once.
//!
//! rtnetlink's builders cannot set every header flag ZTOS needs (the static flood list is an
//! FDB entry sent with `NLM_F_APPEND`), so these processes send some messages themselves:
//! [`request`] sends one message with the flags given and collects the replies, an error reply
//! becoming the `io::Error`; [`dump`] and [`change`] are its two uses. The message builders here
//! are the ones more than one process sends. Opening the socket stays with each caller (the
//! netlink invariant in ARCHITECTURE.md says who may), so this crate never opens one.

use std::io;
use std::net::IpAddr;

use futures::StreamExt;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

/// `NUD_NOARP`: a neighbour entry that needs no resolution.
pub const NUD_NOARP: u16 = 0x40;
/// `NUD_PERMANENT`: a neighbour or FDB entry that never ages.
pub const NUD_PERMANENT: u16 = 0x80;
/// `NUD_REACHABLE`.
pub const NUD_REACHABLE: u16 = 0x02;

/// Sends `message` with exactly `flags` in its header and collects the replies; an error reply
/// (one with a code) is returned as the `io::Error` it carries.
pub async fn request(
    handle: &rtnetlink::Handle,
    message: RouteNetlinkMessage,
    flags: u16,
) -> Result<Vec<RouteNetlinkMessage>, io::Error> {
    let mut request = NetlinkMessage::from(message);
    request.header.flags = flags;
    let mut handle = handle.clone();
    let mut replies = handle
        .request(request)
        .map_err(|error| io::Error::other(error.to_string()))?;
    let mut messages = Vec::new();
    while let Some(reply) = replies.next().await {
        match reply.payload {
            NetlinkPayload::InnerMessage(message) => messages.push(message),
            NetlinkPayload::Error(error) if error.code.is_some() => return Err(error.to_io()),
            _ => {}
        }
    }
    Ok(messages)
}

/// A dump request (`NLM_F_REQUEST | NLM_F_DUMP`): every object of the message's kind.
pub async fn dump(
    handle: &rtnetlink::Handle,
    message: RouteNetlinkMessage,
) -> Result<Vec<RouteNetlinkMessage>, io::Error> {
    request(handle, message, NLM_F_REQUEST | NLM_F_DUMP).await
}

/// A change the kernel acknowledges (`NLM_F_REQUEST | NLM_F_ACK | flags`, such as
/// `NLM_F_CREATE | NLM_F_REPLACE`).
pub async fn change(
    handle: &rtnetlink::Handle,
    message: RouteNetlinkMessage,
    flags: u16,
) -> Result<(), io::Error> {
    request(handle, message, NLM_F_REQUEST | NLM_F_ACK | flags)
        .await
        .map(drop)
}

/// Whether an error says the object (or its device) is already gone: deleting it is then done.
pub fn is_gone(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(nix::libc::ENOENT) | Some(nix::libc::ESRCH) | Some(nix::libc::ENODEV)
    )
}

/// Whether one of rtnetlink's builder requests failed because the object exists already.
pub fn already_exists(error: &rtnetlink::Error) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -(nix::libc::EEXIST))
}

/// The address family of an address.
pub fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// An address as a neighbour or FDB entry's destination.
pub fn neighbour_ip(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(ip) => NeighbourAddress::Inet(ip),
        IpAddr::V6(ip) => NeighbourAddress::Inet6(ip),
    }
}

/// A VXLAN device's ingress-replication entry towards `remote` (`bridge fdb append
/// 00:00:00:00:00:00 dev VX dst REMOTE self permanent`): ztosd's static flood list and the
/// flood entries ztos-bgp learns from EVPN type 3 routes. Sent with `NLM_F_CREATE |
/// NLM_F_APPEND` (several entries share the all-zero MAC); deleted with the same message.
pub fn flood_message(vxlan: u32, remote: IpAddr) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    message.header.ifindex = vxlan;
    message.header.state = NeighbourState::from(NUD_PERMANENT | NUD_NOARP);
    message.header.flags = NeighbourFlags::Own;
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(vec![0; 6]));
    message
        .attributes
        .push(NeighbourAttribute::Destination(neighbour_ip(remote)));
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_entries_are_permanent_all_zero_macs_on_the_vxlan_device() {
        let message = flood_message(7, "192.0.2.9".parse().unwrap());
        assert_eq!(message.header.family, AddressFamily::Bridge);
        assert_eq!(message.header.ifindex, 7);
        assert_eq!(u16::from(message.header.state), 0xc0);
        assert_eq!(message.header.flags, NeighbourFlags::Own);
        assert_eq!(
            message.attributes,
            vec![
                NeighbourAttribute::LinkLayerAddress(vec![0; 6]),
                NeighbourAttribute::Destination(NeighbourAddress::Inet(
                    "192.0.2.9".parse().unwrap()
                )),
            ]
        );
        let v6 = flood_message(7, "2001:db8::9".parse().unwrap());
        assert!(matches!(
            v6.attributes[1],
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(_))
        ));
    }

    #[test]
    fn families_and_gone_errors() {
        assert_eq!(family_of("10.0.0.1".parse().unwrap()), AddressFamily::Inet);
        assert_eq!(family_of("::1".parse().unwrap()), AddressFamily::Inet6);
        for errno in [nix::libc::ENOENT, nix::libc::ESRCH, nix::libc::ENODEV] {
            assert!(is_gone(&io::Error::from_raw_os_error(errno)));
        }
        assert!(!is_gone(&io::Error::from_raw_os_error(nix::libc::EEXIST)));
        assert!(!is_gone(&io::Error::other("no errno")));
    }
}
