//! TCP MD5 signatures (RFC 2385) through the kernel's `TCP_MD5SIG` socket option.
//!
//! Neither nix, rustix nor socket2 wraps `TCP_MD5SIG`, so the option is declared here with nix's
//! own `setsockopt_impl!` (nix's documented way to add a socket option: the FFI call lives in
//! nix, this crate only provides the `#[repr(C)]` value). The layout is Linux's
//! `struct tcp_md5sig` (include/uapi/linux/tcp.h): a 128-byte `__kernel_sockaddr_storage`,
//! flags, prefix length, key length, interface index and an 80-byte key.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use nix::libc;
use nix::sys::socket::setsockopt;

/// The longest key the kernel accepts (`TCP_MD5SIG_MAXKEYLEN`).
pub const MAX_KEY_LEN: usize = 80;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Linux's `struct tcp_md5sig`, 216 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TcpMd5SigValue {
    addr: [u8; 128],
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: i32,
    key: [u8; MAX_KEY_LEN],
}

impl std::fmt::Debug for TcpMd5SigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("TcpMd5SigValue")
            .field("keylen", &self.keylen)
            .finish_non_exhaustive()
    }
}

impl TcpMd5SigValue {
    /// The option value that sets (a non-empty `key`) or removes (an empty one) the key for
    /// segments to and from `peer`. The address is written the way a socket of family
    /// `socket_v6` sees the peer: IPv4 peers of an IPv6 socket as IPv4-mapped addresses.
    pub fn new(peer: IpAddr, socket_v6: bool, key: &[u8]) -> Result<TcpMd5SigValue, Md5Error> {
        if key.len() > MAX_KEY_LEN {
            return Err(Md5Error::KeyTooLong(key.len()));
        }
        let mut addr = [0u8; 128];
        match (peer, socket_v6) {
            (IpAddr::V4(v4), false) => {
                addr[..2].copy_from_slice(&AF_INET.to_ne_bytes());
                addr[4..8].copy_from_slice(&v4.octets());
            }
            (peer, _) => {
                let v6 = match peer {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                addr[..2].copy_from_slice(&AF_INET6.to_ne_bytes());
                // sin6_port (2), sin6_flowinfo (4), then the address.
                addr[8..24].copy_from_slice(&v6.octets());
            }
        }
        let mut bytes = [0u8; MAX_KEY_LEN];
        bytes[..key.len()].copy_from_slice(key);
        Ok(TcpMd5SigValue {
            addr,
            flags: 0,
            prefixlen: 0,
            // key.len() <= 80.
            keylen: key.len() as u16,
            ifindex: 0,
            key: bytes,
        })
    }
}

/// The `TCP_MD5SIG` socket option.
#[derive(Debug, Clone, Copy)]
pub struct TcpMd5Sig;

nix::setsockopt_impl!(
    TcpMd5Sig,
    libc::IPPROTO_TCP,
    libc::TCP_MD5SIG,
    TcpMd5SigValue,
    nix::sys::socket::sockopt::SetStruct<TcpMd5SigValue>
);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Md5Error {
    #[error("the TCP MD5 key is {0} bytes; at most 80 are allowed")]
    KeyTooLong(usize),
    #[error("cannot set the TCP MD5 key for {peer}: {errno}")]
    Kernel { peer: IpAddr, errno: nix::Error },
}

/// Sets (or with an empty `key`, removes) the MD5 key for `peer` on `socket`: a listening
/// socket (then it applies to connections from `peer`) or one about to connect to `peer`.
pub fn set_key<F: AsFd>(
    socket: &F,
    local: SocketAddr,
    peer: IpAddr,
    key: &[u8],
) -> Result<(), Md5Error> {
    let value = TcpMd5SigValue::new(peer, local.is_ipv6(), key)?;
    setsockopt(socket, TcpMd5Sig, &value).map_err(|errno| Md5Error::Kernel { peer, errno })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn layout_matches_the_kernel_struct() {
        assert_eq!(std::mem::size_of::<TcpMd5SigValue>(), 216);
    }

    #[test]
    fn addresses_are_written_as_sockaddrs() {
        let v = TcpMd5SigValue::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), false, b"k").unwrap();
        assert_eq!(&v.addr[..8], &[2, 0, 0, 0, 10, 0, 0, 2]);
        assert_eq!(v.keylen, 1);
        let mapped =
            TcpMd5SigValue::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), true, b"k").unwrap();
        assert_eq!(&mapped.addr[..2], &10u16.to_ne_bytes());
        assert_eq!(
            &mapped.addr[8..24],
            &Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped().octets()
        );
        let v6 = TcpMd5SigValue::new(IpAddr::V6(Ipv6Addr::LOCALHOST), true, b"").unwrap();
        assert_eq!(v6.addr[23], 1);
        assert_eq!(v6.keylen, 0);
    }

    #[test]
    fn long_keys_are_refused() {
        let key = [b'x'; 81];
        assert_eq!(
            TcpMd5SigValue::new(IpAddr::V4(Ipv4Addr::LOCALHOST), false, &key).unwrap_err(),
            Md5Error::KeyTooLong(81)
        );
    }

    #[test]
    fn the_kernel_accepts_a_key_on_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        match set_key(
            &listener,
            local,
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            b"secret",
        ) {
            Ok(()) => {}
            // Kernels built without CONFIG_TCP_MD5SIG refuse the option.
            Err(Md5Error::Kernel {
                errno: nix::Error::ENOPROTOOPT,
                ..
            }) => {}
            Err(e) => panic!("{e}"),
        }
    }
}
