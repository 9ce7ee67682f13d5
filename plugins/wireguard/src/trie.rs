//! A longest-prefix-match trie over IPv4 and IPv6 prefixes (one binary trie per family, nodes
//! in a vector). Lookups walk at most 32 or 128 bits, whatever the number of prefixes.

use std::net::IpAddr;

use ipnet::IpNet;

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node<T> {
    children: [u32; 2],
    value: Option<T>,
}

#[derive(Debug, Clone)]
struct Family<T> {
    nodes: Vec<Node<T>>,
}

impl<T> Family<T> {
    fn new() -> Self {
        Family {
            nodes: vec![Node {
                children: [NONE, NONE],
                value: None,
            }],
        }
    }

    /// `key` holds the address left-aligned in 128 bits.
    fn insert(&mut self, key: u128, len: u8, value: T) -> Option<T> {
        let mut at = 0usize;
        for i in 0..len {
            let bit = ((key >> (127 - i)) & 1) as usize;
            let next = self.nodes[at].children[bit];
            at = if next == NONE {
                let index = self.nodes.len();
                self.nodes.push(Node {
                    children: [NONE, NONE],
                    value: None,
                });
                self.nodes[at].children[bit] = index as u32;
                index
            } else {
                next as usize
            };
        }
        self.nodes[at].value.replace(value)
    }

    fn longest_match(&self, key: u128, max: u8) -> Option<&T> {
        let mut at = 0usize;
        let mut best = self.nodes[0].value.as_ref();
        for i in 0..max {
            let bit = ((key >> (127 - i)) & 1) as usize;
            let next = self.nodes[at].children[bit];
            if next == NONE {
                break;
            }
            at = next as usize;
            if let Some(value) = self.nodes[at].value.as_ref() {
                best = Some(value);
            }
        }
        best
    }
}

/// Maps prefixes to values; [`PrefixTrie::longest_match`] finds the most specific one.
#[derive(Debug, Clone)]
pub struct PrefixTrie<T> {
    v4: Family<T>,
    v6: Family<T>,
    len: usize,
}

impl<T> Default for PrefixTrie<T> {
    fn default() -> Self {
        Self::new()
    }
}

fn key_of(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(a) => ((u32::from(a) as u128) << 96, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

impl<T> PrefixTrie<T> {
    pub fn new() -> Self {
        PrefixTrie {
            v4: Family::new(),
            v6: Family::new(),
            len: 0,
        }
    }

    /// Inserts (host bits ignored); returns the value the same prefix had before.
    pub fn insert(&mut self, prefix: IpNet, value: T) -> Option<T> {
        let prefix = prefix.trunc();
        let (key, _) = key_of(prefix.addr());
        let old = match prefix {
            IpNet::V4(p) => self.v4.insert(key, p.prefix_len(), value),
            IpNet::V6(p) => self.v6.insert(key, p.prefix_len(), value),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn longest_match(&self, addr: IpAddr) -> Option<&T> {
        let (key, max) = key_of(addr);
        match addr {
            IpAddr::V4(_) => self.v4.longest_match(key, max),
            IpAddr::V6(_) => self.v6.longest_match(key, max),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_per_family() {
        let mut t = PrefixTrie::new();
        assert!(t.insert(net("10.0.0.0/8"), 1).is_none());
        t.insert(net("10.1.0.0/16"), 2);
        t.insert(net("10.1.2.3/32"), 3);
        t.insert(net("10.1.9.9/16"), 4); // same prefix as 10.1.0.0/16: replaces it
        t.insert(net("fd00::/8"), 5);
        t.insert(net("::/0"), 6);
        assert_eq!(t.len(), 5);
        assert_eq!(t.longest_match(ip("10.9.9.9")), Some(&1));
        assert_eq!(t.longest_match(ip("10.1.7.7")), Some(&4));
        assert_eq!(t.longest_match(ip("10.1.2.3")), Some(&3));
        assert_eq!(t.longest_match(ip("11.0.0.1")), None);
        assert_eq!(t.longest_match(ip("fd12::1")), Some(&5));
        assert_eq!(t.longest_match(ip("2001:db8::1")), Some(&6));
        // IPv4 never falls into the IPv6 default route.
        assert_eq!(t.longest_match(ip("192.0.2.1")), None);
        t.insert(net("0.0.0.0/0"), 7);
        assert_eq!(t.longest_match(ip("192.0.2.1")), Some(&7));
    }

    #[test]
    fn agrees_with_a_linear_scan() {
        // Deterministic pseudo-random prefixes and addresses.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut t = PrefixTrie::new();
        let mut prefixes = Vec::new();
        for i in 0..500 {
            let addr = std::net::Ipv4Addr::from((next() as u32) & 0xff0f_ffff);
            let len = (next() % 33) as u8;
            let p = IpNet::V4(ipnet::Ipv4Net::new(addr, len).unwrap()).trunc();
            match prefixes.iter_mut().find(|(q, _)| *q == p) {
                Some(entry) => entry.1 = i,
                None => prefixes.push((p, i)),
            }
            t.insert(p, i);
        }
        for _ in 0..5000 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from((next() as u32) & 0xff0f_ffff));
            let linear = prefixes
                .iter()
                .filter(|(p, _)| p.contains(&a))
                .max_by_key(|(p, _)| p.prefix_len())
                .map(|(_, value)| value);
            assert_eq!(t.longest_match(a), linear, "{a}");
        }
    }
}
