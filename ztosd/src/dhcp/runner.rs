//! Runs a [`Client`] on an interface: a UDP socket bound to 0.0.0.0:68 on that interface
//! (`SO_BINDTODEVICE`, `SO_BROADCAST`, `SO_REUSEADDR` so one socket per interface can
//! coexist), which works before the interface has an address because requests carry the
//! BROADCAST flag and servers answer to 255.255.255.255. Leases are reported as
//! [`LeaseEvent`]s; the receiver installs and removes them.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::client::{Action, Client, Destination, Lease};
use super::packet::Mac;

pub const CLIENT_PORT: u16 = 68;
pub const SERVER_PORT: u16 = 67;
/// How long the runner waits before trying again when the interface is missing or the
/// socket cannot be opened.
const RETRY: Duration = Duration::from_secs(5);

/// What a runner reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// A lease was obtained or extended: install (or refresh) it.
    Bound { interface: String, lease: Lease },
    /// A lease ended (expired, refused by a NAK, replaced): remove it.
    Lost { interface: String, lease: Lease },
}

/// The interface's Ethernet address, from getifaddrs(3) (the calling thread's network
/// namespace; sysfs would show the namespace that mounted it).
pub fn interface_mac(interface: &str) -> io::Result<Mac> {
    let addresses = nix::ifaddrs::getifaddrs()?;
    for entry in addresses.filter(|entry| entry.interface_name == interface) {
        if let Some(link) = entry.address.as_ref().and_then(|a| a.as_link_addr()) {
            if let Some(mac) = link.addr() {
                return Ok(mac);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no Ethernet interface named {interface}"),
    ))
}

/// The client's socket on `interface`.
pub fn open_socket(interface: &str) -> io::Result<UdpSocket> {
    let fd: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::Broadcast, &true)?;
    setsockopt(
        &fd,
        sockopt::BindToDevice,
        &std::ffi::OsString::from(interface),
    )
    .map_err(|errno| io::Error::other(format!("SO_BINDTODEVICE {interface}: {errno}")))?;
    let any = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT));
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &any)
        .map_err(|errno| io::Error::other(format!("bind 0.0.0.0:{CLIENT_PORT}: {errno}")))?;
    let socket = std::net::UdpSocket::from(fd);
    UdpSocket::from_std(socket)
}

/// Runs the client on `interface` until `stop` turns true or its sender is dropped. On the
/// way out a lease still held is reported [`LeaseEvent::Lost`], so its address is removed
/// when the configuration no longer asks for DHCP. Errors (a missing interface, a socket
/// that cannot be opened, a send that fails) are logged and retried; bad packets are logged
/// and dropped.
pub async fn run(
    interface: String,
    events: mpsc::Sender<LeaseEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let origin = Instant::now();
    let now = move || Instant::now().duration_since(origin);
    let mut held: Option<Lease> = None;
    'restart: loop {
        if *stop.borrow() {
            break;
        }
        let opened = interface_mac(&interface).and_then(|mac| Ok((mac, open_socket(&interface)?)));
        let (mac, socket) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                tracing::warn!(%interface, %error, "DHCP cannot start on this interface yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => continue 'restart,
                    changed = stop.changed() => if changed.is_err() { break 'restart } else { continue 'restart },
                }
            }
        };
        let (mut client, actions) = Client::start(mac, rand::random(), now());
        tracing::info!(%interface, "DHCP: DISCOVER");
        let mut buffer = vec![0u8; 1500];
        let mut pending = actions;
        loop {
            for action in pending.drain(..) {
                match action {
                    Action::Send { packet, to } => {
                        let target = match to {
                            Destination::Broadcast => Ipv4Addr::BROADCAST,
                            Destination::Server(server) => server,
                        };
                        let target = SocketAddr::from((target, SERVER_PORT));
                        if let Err(error) = socket.send_to(&packet, target).await {
                            // Retransmission timers try again; a dead link is not fatal.
                            tracing::warn!(%interface, %error, %target, "DHCP send failed");
                        }
                    }
                    Action::Install(lease) => {
                        tracing::info!(
                            %interface,
                            address = %lease.offer.address,
                            prefix = lease.offer.prefix_len,
                            server = %lease.offer.server,
                            lease_secs = lease.offer.lease_time.as_secs(),
                            "DHCP: bound"
                        );
                        held = Some(lease.clone());
                        let _ = events
                            .send(LeaseEvent::Bound {
                                interface: interface.clone(),
                                lease,
                            })
                            .await;
                    }
                    Action::Remove(lease) => {
                        tracing::warn!(%interface, address = %lease.offer.address, "DHCP: lease lost");
                        held = None;
                        let _ = events
                            .send(LeaseEvent::Lost {
                                interface: interface.clone(),
                                lease,
                            })
                            .await;
                    }
                }
            }
            let deadline = origin + client.deadline();
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    pending = client.on_tick(now(), rand::random());
                }
                received = socket.recv_from(&mut buffer) => match received {
                    Ok((len, from)) => match client.on_packet(now(), &buffer[..len], rand::random()) {
                        Ok(actions) => pending = actions,
                        Err(reason) => tracing::debug!(%interface, %from, %reason, "DHCP packet dropped"),
                    },
                    Err(error) => {
                        tracing::warn!(%interface, %error, "DHCP receive failed; restarting");
                        break;
                    }
                },
                changed = stop.changed() => {
                    // A dropped sender is a stop too.
                    if changed.is_err() || *stop.borrow() {
                        break 'restart;
                    }
                }
            }
            if *stop.borrow() {
                break 'restart;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {},
            changed = stop.changed() => if changed.is_err() { break 'restart },
        }
    }
    if let Some(lease) = held {
        let _ = events
            .send(LeaseEvent::Lost {
                interface: interface.clone(),
                lease,
            })
            .await;
    }
}
