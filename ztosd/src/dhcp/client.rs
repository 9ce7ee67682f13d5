//! The DHCPv4 client state machine of RFC 2131 (section 4.4, figure 5), without I/O: it is
//! fed the time and the packets received, and answers with [`Action`]s (packets to send,
//! leases to install or remove). Time is a monotonic [`Duration`] since any fixed origin.
//!
//! INIT -> SELECTING (DISCOVER) -> REQUESTING (REQUEST) -> BOUND; at T1 RENEWING (REQUEST
//! unicast to the server), at T2 REBINDING (REQUEST broadcast), at the lease's end the address
//! is removed and the client starts over. A NAK while requesting or extending starts over too.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::packet::{discover, parse_reply, request, Dropped, Mac, Offer, Reply, RequestKind};

/// Retransmission delays while selecting or requesting: 4, 8, 16, 32, then 64 s (RFC 2131
/// 4.1, without the random +-1 s).
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(4u64 << attempt.min(4))
}

/// Requests sent while REQUESTING before going back to INIT.
const REQUEST_ATTEMPTS: u32 = 4;
/// The shortest wait between retransmissions while RENEWING or REBINDING. RFC 2131 says
/// 60 s; a shorter floor keeps short leases (minutes) renewable, at a negligible cost.
const MIN_EXTEND_RETRY: Duration = Duration::from_secs(5);

/// A lease in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub offer: Offer,
    /// When the ACK arrived.
    pub acquired: Duration,
    /// When RENEWING starts (T1), REBINDING starts (T2), and the lease ends.
    pub renew_at: Duration,
    pub rebind_at: Duration,
    pub expires_at: Duration,
}

impl Lease {
    fn new(offer: Offer, now: Duration) -> Lease {
        let lease = offer.lease_time;
        // T1 = 0.5 and T2 = 0.875 of the lease unless the server sent sane ones.
        let mut t2 = offer.rebinding.unwrap_or(lease * 7 / 8);
        if t2 > lease {
            t2 = lease * 7 / 8;
        }
        let mut t1 = offer.renewal.unwrap_or(lease / 2);
        if t1 > t2 {
            t1 = lease / 2;
        }
        Lease {
            acquired: now,
            renew_at: now + t1,
            rebind_at: now + t2.max(t1),
            expires_at: now + lease,
            offer,
        }
    }
}

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255:67 on the interface.
    Broadcast,
    /// The server's address, port 67 (RENEWING).
    Server(Ipv4Addr),
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        packet: Vec<u8>,
        to: Destination,
    },
    /// Install (or refresh) the lease's address, route and DNS servers.
    Install(Lease),
    /// Remove the address, route and DNS servers of a lease that ended or was refused.
    Remove(Lease),
}

/// The client's state (RFC 2131 figure 5; INIT and INIT-REBOOT are not kept: the client
/// sends its DISCOVER at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Selecting {
        attempt: u32,
        next: Duration,
    },
    Requesting {
        offer: Offer,
        attempt: u32,
        next: Duration,
    },
    Bound {
        lease: Lease,
    },
    Renewing {
        lease: Lease,
        next: Duration,
    },
    Rebinding {
        lease: Lease,
        next: Duration,
    },
}

/// One interface's DHCP client.
#[derive(Debug, Clone)]
pub struct Client {
    mac: Mac,
    xid: u32,
    state: State,
}

impl Client {
    /// A client in SELECTING with its first DISCOVER to send.
    pub fn start(mac: Mac, xid: u32, now: Duration) -> (Client, Vec<Action>) {
        let client = Client {
            mac,
            xid,
            state: State::Selecting {
                attempt: 0,
                next: now + backoff(0),
            },
        };
        let send = client.send_discover();
        (client, vec![send])
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The transaction id replies must carry.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// The lease in force, if any.
    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            State::Bound { lease }
            | State::Renewing { lease, .. }
            | State::Rebinding { lease, .. } => Some(lease),
            _ => None,
        }
    }

    /// When [`Client::on_tick`] has something to do next.
    pub fn deadline(&self) -> Duration {
        match &self.state {
            State::Selecting { next, .. } | State::Requesting { next, .. } => *next,
            State::Bound { lease } => lease.renew_at,
            State::Renewing { lease, next } => (*next).min(lease.rebind_at),
            State::Rebinding { lease, next } => (*next).min(lease.expires_at),
        }
    }

    fn send_discover(&self) -> Action {
        Action::Send {
            packet: discover(self.xid, &self.mac),
            to: Destination::Broadcast,
        }
    }

    fn send_request(&self, kind: RequestKind, to: Destination) -> Action {
        Action::Send {
            packet: request(self.xid, &self.mac, kind),
            to,
        }
    }

    /// Back to the start with a new transaction: the lease (if any) is removed.
    fn restart(&mut self, now: Duration, new_xid: u32, actions: &mut Vec<Action>) {
        if let Some(lease) = self.lease().cloned() {
            actions.push(Action::Remove(lease));
        }
        self.xid = new_xid;
        self.state = State::Selecting {
            attempt: 0,
            next: now + backoff(0),
        };
        actions.push(self.send_discover());
    }

    /// Runs the timers due at `now`. `new_xid` is used when a new transaction starts.
    pub fn on_tick(&mut self, now: Duration, new_xid: u32) -> Vec<Action> {
        let mut actions = Vec::new();
        match self.state.clone() {
            State::Selecting { attempt, next } if now >= next => {
                self.state = State::Selecting {
                    attempt: attempt + 1,
                    next: now + backoff(attempt + 1),
                };
                actions.push(self.send_discover());
            }
            State::Requesting {
                offer,
                attempt,
                next,
            } if now >= next => {
                if attempt + 1 >= REQUEST_ATTEMPTS {
                    self.restart(now, new_xid, &mut actions);
                } else {
                    actions.push(self.send_request(
                        RequestKind::Selecting {
                            address: offer.address,
                            server: offer.server,
                        },
                        Destination::Broadcast,
                    ));
                    self.state = State::Requesting {
                        offer,
                        attempt: attempt + 1,
                        next: now + backoff(attempt + 1),
                    };
                }
            }
            State::Bound { lease }
            | State::Renewing { lease, .. }
            | State::Rebinding { lease, .. }
                if now >= lease.expires_at =>
            {
                self.restart(now, new_xid, &mut actions);
            }
            State::Rebinding { lease, next } if now >= next => {
                actions.push(self.send_request(
                    RequestKind::Extending {
                        address: lease.offer.address,
                    },
                    Destination::Broadcast,
                ));
                let wait = ((lease.expires_at - now) / 2).max(MIN_EXTEND_RETRY);
                self.state = State::Rebinding {
                    lease,
                    next: now + wait,
                };
            }
            State::Renewing { lease, .. } | State::Bound { lease } if now >= lease.rebind_at => {
                self.xid = new_xid;
                actions.push(self.send_request(
                    RequestKind::Extending {
                        address: lease.offer.address,
                    },
                    Destination::Broadcast,
                ));
                let wait = ((lease.expires_at - now) / 2).max(MIN_EXTEND_RETRY);
                self.state = State::Rebinding {
                    lease,
                    next: now + wait,
                };
            }
            State::Renewing { lease, next } if now >= next => {
                actions.push(self.send_request(
                    RequestKind::Extending {
                        address: lease.offer.address,
                    },
                    Destination::Server(lease.offer.server),
                ));
                let wait = ((lease.rebind_at - now) / 2).max(MIN_EXTEND_RETRY);
                self.state = State::Renewing {
                    lease,
                    next: now + wait,
                };
            }
            State::Bound { lease } if now >= lease.renew_at => {
                self.xid = new_xid;
                actions.push(self.send_request(
                    RequestKind::Extending {
                        address: lease.offer.address,
                    },
                    Destination::Server(lease.offer.server),
                ));
                let wait = ((lease.rebind_at - now) / 2).max(MIN_EXTEND_RETRY);
                self.state = State::Renewing {
                    lease,
                    next: now + wait,
                };
            }
            _ => {}
        }
        actions
    }

    /// Handles a received packet. A packet that is not for this client, or not expected in
    /// this state, is an `Err` with the reason (the caller logs it); nothing changes.
    pub fn on_packet(
        &mut self,
        now: Duration,
        bytes: &[u8],
        new_xid: u32,
    ) -> Result<Vec<Action>, Dropped> {
        let reply = parse_reply(bytes, self.xid, &self.mac)?;
        let mut actions = Vec::new();
        match (self.state.clone(), reply) {
            (State::Selecting { .. }, Reply::Offer(offer)) => {
                actions.push(self.send_request(
                    RequestKind::Selecting {
                        address: offer.address,
                        server: offer.server,
                    },
                    Destination::Broadcast,
                ));
                self.state = State::Requesting {
                    offer,
                    attempt: 0,
                    next: now + backoff(0),
                };
            }
            (State::Requesting { offer, .. }, Reply::Ack(ack)) => {
                if ack.address != offer.address {
                    return Err(Dropped::BadAddress {
                        kind: super::packet::MessageType::Ack,
                        address: ack.address,
                    });
                }
                let lease = Lease::new(ack, now);
                actions.push(Action::Install(lease.clone()));
                self.state = State::Bound { lease };
            }
            (
                State::Renewing { lease: old, .. } | State::Rebinding { lease: old, .. },
                Reply::Ack(ack),
            ) => {
                let lease = Lease::new(ack, now);
                if lease.offer.address != old.offer.address {
                    actions.push(Action::Remove(old));
                }
                actions.push(Action::Install(lease.clone()));
                self.state = State::Bound { lease };
            }
            (
                State::Requesting { .. } | State::Renewing { .. } | State::Rebinding { .. },
                Reply::Nak { .. },
            ) => {
                self.restart(now, new_xid, &mut actions);
            }
            (_, reply) => {
                return Err(Dropped::Unexpected(format!(
                    "{} while {}",
                    match reply {
                        Reply::Offer(_) => "OFFER",
                        Reply::Ack(_) => "ACK",
                        Reply::Nak { .. } => "NAK",
                    },
                    self.state_name()
                )))
            }
        }
        Ok(actions)
    }

    /// The RFC's name of the current state.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Selecting { .. } => "SELECTING",
            State::Requesting { .. } => "REQUESTING",
            State::Bound { .. } => "BOUND",
            State::Renewing { .. } => "RENEWING",
            State::Rebinding { .. } => "REBINDING",
        }
    }
}
