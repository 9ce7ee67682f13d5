//! `RtnetlinkKernel`: the real kernel, over an rtnetlink socket. Messages are built here
//! from `netlink-packet-route` types and sent through the connection handle, so that every
//! flag is under our control (the static flood list needs `NLM_F_APPEND`, which the
//! rtnetlink crate's neighbour builder cannot send).
//!
//! The socket belongs to the network namespace of the thread that opens it, which is how the
//! kernel tests run a reconciler inside a test namespace.

use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVrf, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use ztos_netlink::{family_of, flood_message};

use super::model::{
    FloodEntry, KernelLink, KernelRoute, KernelState, LinkChange, LinkKind, Op, Route, VxlanParams,
    MANAGED_ALIAS, RTPROT_ZTOS,
};
use super::{creation_refused, Kernel, KernelFuture, ReconcileError};

/// NUD_NOARP | NUD_PERMANENT: a static FDB entry, as `bridge fdb append` installs it.
/// The local routing table, whose routes the kernel derives from addresses.
const LOCAL_TABLE: u32 = 255;

/// The kernel over rtnetlink.
#[derive(Debug, Clone)]
pub struct RtnetlinkKernel {
    handle: rtnetlink::Handle,
}

impl RtnetlinkKernel {
    /// Opens an rtnetlink socket in the calling thread's network namespace and spawns its
    /// connection task on the current tokio runtime (which must exist).
    pub fn new() -> Result<RtnetlinkKernel, ReconcileError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|error| ReconcileError::Connection(io::Error::other(error)))?;
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(ReconcileError::Connection)?;
        runtime.spawn(connection);
        Ok(RtnetlinkKernel { handle })
    }

    /// Sends one request and collects the replies; an error reply becomes the error.
    async fn request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, io::Error> {
        ztos_netlink::request(&self.handle, message, flags).await
    }

    async fn dump(
        &self,
        what: &'static str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, ReconcileError> {
        ztos_netlink::dump(&self.handle, message)
            .await
            .map_err(|source| ReconcileError::Read { what, source })
    }

    async fn change(&self, message: RouteNetlinkMessage, flags: u16) -> Result<(), io::Error> {
        ztos_netlink::change(&self.handle, message, flags).await
    }

    /// The index of a link, by name.
    async fn index_of(&self, name: &str) -> Result<u32, io::Error> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        let replies = self
            .request(RouteNetlinkMessage::GetLink(message), NLM_F_REQUEST)
            .await
            .map_err(|error| io::Error::new(error.kind(), format!("link {name}: {error}")))?;
        replies
            .into_iter()
            .find_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })
            .ok_or_else(|| io::Error::other(format!("link {name}: no reply from the kernel")))
    }

    async fn read(&self) -> Result<KernelState, ReconcileError> {
        let mut state = KernelState::default();
        let mut raw_links = Vec::new();
        for reply in self
            .dump(
                "links",
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
            )
            .await?
        {
            if let RouteNetlinkMessage::NewLink(message) = reply {
                raw_links.push(parse_link(&message));
            }
        }
        let name_of = |index: u32| {
            raw_links
                .iter()
                .find(|(link, _, _)| link.index == index)
                .map(|(link, _, _)| link.name.clone())
        };
        for (mut link, master, underlay) in raw_links.clone() {
            link.master = master.and_then(name_of);
            if let LinkKind::Vxlan(params) = &mut link.kind {
                params.underlay = underlay.and_then(name_of);
            }
            state.links.push(link);
        }

        for reply in self
            .dump(
                "addresses",
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            )
            .await?
        {
            if let RouteNetlinkMessage::NewAddress(message) = reply {
                if let Some(address) = parse_address(&message) {
                    if let Some(link) = name_of(message.header.index) {
                        state.addresses.push((link, address));
                    }
                }
            }
        }

        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut request = RouteMessage::default();
            request.header.address_family = family;
            for reply in self
                .dump("routes", RouteNetlinkMessage::GetRoute(request))
                .await?
            {
                if let RouteNetlinkMessage::NewRoute(message) = reply {
                    if let Some(route) = parse_route(&message, &name_of) {
                        state.routes.push(route);
                    }
                }
            }
        }

        let mut request = NeighbourMessage::default();
        request.header.family = AddressFamily::Bridge;
        for reply in self
            .dump("fdb entries", RouteNetlinkMessage::GetNeighbour(request))
            .await?
        {
            if let RouteNetlinkMessage::NewNeighbour(message) = reply {
                let on_vxlan = state.links.iter().find(|link| {
                    link.index == message.header.ifindex && matches!(link.kind, LinkKind::Vxlan(_))
                });
                if let (Some(link), Some(remote)) = (on_vxlan, parse_flood_remote(&message)) {
                    state.flood.push(FloodEntry {
                        link: link.name.clone(),
                        remote,
                    });
                }
            }
        }
        Ok(state)
    }

    async fn run(&self, op: &Op) -> Result<(), ReconcileError> {
        let fail = |source: io::Error| ReconcileError::Kernel {
            op: op.to_string(),
            source,
        };
        match op {
            Op::CreateLink { name, kind } => {
                let message = self
                    .create_message(name, kind)
                    .await
                    .map_err(|source| creation_refused(name, kind, source))?;
                self.change(
                    RouteNetlinkMessage::NewLink(message),
                    NLM_F_CREATE | NLM_F_EXCL,
                )
                .await
                .map_err(|source| creation_refused(name, kind, source))?;
                // The kernel ignores IFLA_IFALIAS when creating a link; set it afterwards.
                let mut message = LinkMessage::default();
                message.header.index = self.index_of(name).await.map_err(fail)?;
                message
                    .attributes
                    .push(LinkAttribute::IfAlias(MANAGED_ALIAS.to_string()));
                self.change(RouteNetlinkMessage::SetLink(message), 0)
                    .await
                    .map_err(fail)
            }
            Op::SetLink { name, change } => {
                let mut message = LinkMessage::default();
                message.header.index = self.index_of(name).await.map_err(fail)?;
                match change {
                    LinkChange::Mtu(mtu) => message.attributes.push(LinkAttribute::Mtu(*mtu)),
                    LinkChange::Up => {
                        message.header.flags = LinkFlags::Up;
                        message.header.change_mask = LinkFlags::Up;
                    }
                    LinkChange::Down => message.header.change_mask = LinkFlags::Up,
                    LinkChange::Master(master) => {
                        let index = match master {
                            Some(master) => self.index_of(master).await.map_err(fail)?,
                            None => 0,
                        };
                        message.attributes.push(LinkAttribute::Controller(index));
                    }
                }
                self.change(RouteNetlinkMessage::SetLink(message), 0)
                    .await
                    .map_err(fail)
            }
            Op::DeleteLink { name } => {
                let mut message = LinkMessage::default();
                message.header.index = self.index_of(name).await.map_err(fail)?;
                self.change(RouteNetlinkMessage::DelLink(message), 0)
                    .await
                    .map_err(fail)
            }
            Op::AddAddress { link, address } | Op::DelAddress { link, address } => {
                let message = address_message(self.index_of(link).await.map_err(fail)?, address);
                let (message, flags) = match op {
                    Op::AddAddress { .. } => (
                        RouteNetlinkMessage::NewAddress(message),
                        NLM_F_CREATE | NLM_F_EXCL,
                    ),
                    _ => (RouteNetlinkMessage::DelAddress(message), 0),
                };
                self.change(message, flags).await.map_err(fail)
            }
            Op::AddRoute(route) | Op::DelRoute(route) => {
                let device = match &route.device {
                    Some(device) => Some(self.index_of(device).await.map_err(fail)?),
                    None => None,
                };
                let message = route_message(route, device);
                let (message, flags) = match op {
                    Op::AddRoute(_) => (
                        RouteNetlinkMessage::NewRoute(message),
                        NLM_F_CREATE | NLM_F_EXCL,
                    ),
                    _ => (RouteNetlinkMessage::DelRoute(message), 0),
                };
                self.change(message, flags).await.map_err(fail)
            }
            Op::AddFlood(entry) | Op::DelFlood(entry) => {
                let index = self.index_of(&entry.link).await.map_err(fail)?;
                let message = flood_message(index, entry.remote);
                let (message, flags) = match op {
                    // `bridge fdb append`: several entries for the same (all-zeros) MAC.
                    Op::AddFlood(_) => (
                        RouteNetlinkMessage::NewNeighbour(message),
                        NLM_F_CREATE | NLM_F_APPEND,
                    ),
                    _ => (RouteNetlinkMessage::DelNeighbour(message), 0),
                };
                self.change(message, flags).await.map_err(fail)
            }
        }
    }

    async fn create_message(&self, name: &str, kind: &LinkKind) -> Result<LinkMessage, io::Error> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        let info = match kind {
            LinkKind::Dummy => vec![LinkInfo::Kind(InfoKind::Dummy)],
            LinkKind::Bridge => vec![LinkInfo::Kind(InfoKind::Bridge)],
            LinkKind::Vrf { table } => vec![
                LinkInfo::Kind(InfoKind::Vrf),
                LinkInfo::Data(InfoData::Vrf(vec![InfoVrf::TableId(*table)])),
            ],
            LinkKind::Vxlan(params) => {
                let mut data = vec![
                    InfoVxlan::Id(params.vni),
                    InfoVxlan::Port(params.port),
                    InfoVxlan::Learning(params.learning),
                ];
                data.push(match params.local {
                    IpAddr::V4(local) => InfoVxlan::Local(local),
                    IpAddr::V6(local) => InfoVxlan::Local6(local),
                });
                if let Some(underlay) = &params.underlay {
                    data.push(InfoVxlan::Link(self.index_of(underlay).await?));
                }
                vec![
                    LinkInfo::Kind(InfoKind::Vxlan),
                    LinkInfo::Data(InfoData::Vxlan(data)),
                ]
            }
            LinkKind::Other(kind) => {
                return Err(io::Error::other(format!(
                    "ztos does not create links of kind {kind}"
                )))
            }
        };
        message.attributes.push(LinkAttribute::LinkInfo(info));
        Ok(message)
    }
}

impl Kernel for RtnetlinkKernel {
    fn read_state(&self) -> KernelFuture<'_, KernelState> {
        Box::pin(self.read())
    }

    fn execute<'a>(&'a self, op: &'a Op) -> KernelFuture<'a, ()> {
        Box::pin(self.run(op))
    }
}

/// A link, its master's index and (for VXLAN) its underlay's index; the indexes are
/// resolved to names once all links are known.
fn parse_link(message: &LinkMessage) -> (KernelLink, Option<u32>, Option<u32>) {
    let mut link = KernelLink {
        index: message.header.index,
        name: String::new(),
        kind: LinkKind::Other("device".into()),
        alias: None,
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        oper_state: "unknown".into(),
        mac: None,
        master: None,
    };
    let mut master = None;
    let mut underlay = None;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::IfAlias(alias) => link.alias = Some(alias.clone()),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::OperState(state) => link.oper_state = state.to_string().to_lowercase(),
            LinkAttribute::Address(mac) if mac.len() == 6 => {
                link.mac = Some(
                    mac.iter()
                        .map(|byte| format!("{byte:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                )
            }
            LinkAttribute::Controller(index) if *index != 0 => master = Some(*index),
            LinkAttribute::LinkInfo(infos) => {
                let (kind, vxlan_underlay) = parse_link_info(infos);
                link.kind = kind;
                underlay = vxlan_underlay;
            }
            _ => {}
        }
    }
    (link, master, underlay)
}

fn parse_link_info(infos: &[LinkInfo]) -> (LinkKind, Option<u32>) {
    let mut kind = None;
    let mut data = None;
    for info in infos {
        match info {
            LinkInfo::Kind(k) => kind = Some(k),
            LinkInfo::Data(d) => data = Some(d),
            _ => {}
        }
    }
    match (kind, data) {
        (Some(InfoKind::Dummy), _) => (LinkKind::Dummy, None),
        (Some(InfoKind::Bridge), _) => (LinkKind::Bridge, None),
        (Some(InfoKind::Vrf), Some(InfoData::Vrf(attributes))) => {
            let table = attributes
                .iter()
                .find_map(|attribute| match attribute {
                    InfoVrf::TableId(table) => Some(*table),
                    _ => None,
                })
                .unwrap_or(0);
            (LinkKind::Vrf { table }, None)
        }
        (Some(InfoKind::Vxlan), Some(InfoData::Vxlan(attributes))) => {
            let mut params = VxlanParams {
                vni: 0,
                local: IpAddr::from([0, 0, 0, 0]),
                port: 0,
                underlay: None,
                learning: true,
            };
            let mut underlay = None;
            for attribute in attributes {
                match attribute {
                    InfoVxlan::Id(vni) => params.vni = *vni,
                    InfoVxlan::Local(local) => params.local = IpAddr::V4(*local),
                    InfoVxlan::Local6(local) => params.local = IpAddr::V6(*local),
                    InfoVxlan::Port(port) => params.port = *port,
                    InfoVxlan::Learning(learning) => params.learning = *learning,
                    InfoVxlan::Link(index) if *index != 0 => underlay = Some(*index),
                    _ => {}
                }
            }
            (LinkKind::Vxlan(params), underlay)
        }
        (Some(other), _) => (LinkKind::Other(other.to_string()), None),
        (None, _) => (LinkKind::Other("device".into()), None),
    }
}

fn parse_address(message: &AddressMessage) -> Option<IpNet> {
    let mut local = None;
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours when present.
    IpNet::new(local.or(address)?, message.header.prefix_len).ok()
}

fn route_address(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

fn parse_route(
    message: &RouteMessage,
    name_of: &dyn Fn(u32) -> Option<String>,
) -> Option<KernelRoute> {
    if message.header.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(message.header.table);
    let mut destination = None;
    let mut gateway = None;
    let mut device = None;
    let mut metric = 0;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(address) => destination = route_address(address),
            RouteAttribute::Gateway(address) => gateway = route_address(address),
            RouteAttribute::Oif(index) => device = name_of(*index),
            RouteAttribute::Priority(priority) => metric = *priority,
            _ => {}
        }
    }
    if table == LOCAL_TABLE {
        return None;
    }
    let destination = destination.unwrap_or(match message.header.address_family {
        AddressFamily::Inet6 => IpAddr::from([0u16; 8]),
        _ => IpAddr::from([0u8; 4]),
    });
    Some(KernelRoute {
        route: Route {
            destination: IpNet::new(destination, message.header.destination_prefix_length).ok()?,
            gateway,
            device,
            table,
            metric,
        },
        protocol: u8::from(message.header.protocol),
    })
}

/// The remote VTEP of an all-zeros-MAC FDB entry, or `None` for any other entry.
fn parse_flood_remote(message: &NeighbourMessage) -> Option<IpAddr> {
    let mut zero_mac = false;
    let mut remote = None;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::LinkLayerAddress(mac) => {
                zero_mac = mac.len() == 6 && mac.iter().all(|byte| *byte == 0)
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                remote = Some(IpAddr::V4(*ip))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                remote = Some(IpAddr::V6(*ip))
            }
            // In AF_BRIDGE messages the parser cannot know the address family of NDA_DST.
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                remote = match bytes.len() {
                    4 => <[u8; 4]>::try_from(bytes.as_slice()).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(bytes.as_slice())
                        .ok()
                        .map(IpAddr::from),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    remote.filter(|_| zero_mac)
}

fn address_message(index: u32, address: &IpNet) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.index = index;
    message.header.prefix_len = address.prefix_len();
    let ip = address.addr();
    message.header.family = family_of(ip);
    // Like `ip address add`: loopback addresses get host scope.
    message.header.scope = if ip.is_loopback() {
        AddressScope::Host
    } else {
        AddressScope::Universe
    };
    if ip.is_ipv4() {
        message.attributes.push(AddressAttribute::Local(ip));
    }
    message.attributes.push(AddressAttribute::Address(ip));
    message
}

fn route_message(route: &Route, device: Option<u32>) -> RouteMessage {
    let mut message = RouteMessage::default();
    let header = &mut message.header;
    header.address_family = family_of(route.destination.addr());
    header.destination_prefix_length = route.destination.prefix_len();
    header.table = u8::try_from(route.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    header.protocol = RouteProtocol::from(RTPROT_ZTOS);
    header.scope = if route.gateway.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    header.kind = RouteType::Unicast;
    message.attributes.push(RouteAttribute::Table(route.table));
    message
        .attributes
        .push(RouteAttribute::Destination(route.destination.addr().into()));
    if let Some(gateway) = route.gateway {
        message
            .attributes
            .push(RouteAttribute::Gateway(gateway.into()));
    }
    if let Some(index) = device {
        message.attributes.push(RouteAttribute::Oif(index));
    }
    if route.metric != 0 {
        message
            .attributes
            .push(RouteAttribute::Priority(route.metric));
    }
    message
}
