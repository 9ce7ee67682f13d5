//! The `[wireguard]` and `[policy]` sections as ztosd sends them (JSON renderings of the TOML;
//! ztosd has already checked types, duplicates and key syntax, see
//! `ztosd/model/src/config/validate.rs`). This plugin checks what only it can: that everything it
//! will build from them is usable.

use std::net::SocketAddr;

use serde::Deserialize;
use serde_json::Value;
use ztos_plugin::FieldError;

use crate::keys::{decode_key, valid_interface_name};

/// The sections' types are the model's: ztosd and this plugin read the same document.
pub use ztos_model::config::{
    Policy, PolicyAction as Action, PolicyGroup as Group, PolicyProtocol as Protocol,
    PolicyRule as Rule, Wireguard, WireguardInterface as Interface, WireguardPeer as Peer,
};

/// Both sections of one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sections {
    pub wireguard: Wireguard,
    pub policy: Policy,
}

fn section<T: for<'de> Deserialize<'de> + Default>(
    sections: &ztos_plugin::Sections,
    name: &str,
) -> Result<T, FieldError> {
    match sections.get(name) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(value) => serde_json::from_value(value.clone()).map_err(|e| FieldError {
            path: name.to_string(),
            message: format!("cannot read the section: {e}"),
        }),
    }
}

/// Parses `N` or `N-M` with 1 <= N <= M <= 65535.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let parse = |part: &str| match part.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{part:?} is not a port 1 to 65535")),
        Ok(port) => Ok(port),
    };
    let (low, high) = (parse(low)?, parse(high)?);
    if low > high {
        return Err(format!("{low} is above {high}"));
    }
    Ok((low, high))
}

/// Resolves `host:port` (a literal address, or a name through the system resolver).
pub fn resolve_endpoint(endpoint: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = endpoint.parse::<SocketAddr>() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs;
    endpoint
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {endpoint:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{endpoint:?} resolves to no address"))
}

impl Sections {
    /// Reads and checks both sections; every problem is one [`FieldError`] with its full path.
    pub fn parse(sections: &ztos_plugin::Sections) -> Result<Sections, Vec<FieldError>> {
        let mut errors = Vec::new();
        let wireguard = section::<Wireguard>(sections, "wireguard").unwrap_or_else(|e| {
            errors.push(e);
            Wireguard::default()
        });
        let policy = section::<Policy>(sections, "policy").unwrap_or_else(|e| {
            errors.push(e);
            Policy::default()
        });
        let parsed = Sections { wireguard, policy };
        parsed.check(&mut errors);
        if errors.is_empty() {
            Ok(parsed)
        } else {
            Err(errors)
        }
    }

    fn check(&self, errors: &mut Vec<FieldError>) {
        let mut error = |path: String, message: String| errors.push(FieldError { path, message });
        for (i, iface) in self.wireguard.interfaces.iter().enumerate() {
            let path = format!("wireguard.interfaces[{i}]");
            if !valid_interface_name(&iface.name) {
                error(
                    format!("{path}.name"),
                    format!(
                        "{:?} is not a valid interface name (1 to 15 letters, digits, '-', '_' or '.')",
                        iface.name
                    ),
                );
            }
            if let Some(mtu) = iface.mtu.map(ztos_model::config::Mtu::get) {
                if !(1280..=65535).contains(&mtu)
                    && iface.addresses.iter().any(|a| a.addr().is_ipv6())
                {
                    error(format!("{path}.mtu"), format!("{mtu} is below 1280, the IPv6 minimum, and the interface has IPv6 addresses"));
                } else if mtu < 576 {
                    error(format!("{path}.mtu"), format!("{mtu} is below 576"));
                }
            }
            for (j, peer) in iface.peers.iter().enumerate() {
                let peer_path = format!("{path}.peers[{j}]");
                if let Err(problem) = decode_key(&peer.public_key) {
                    error(format!("{peer_path}.public_key"), problem);
                }
                if let Some(endpoint) = &peer.endpoint {
                    if let Err(problem) = resolve_endpoint(endpoint) {
                        error(format!("{peer_path}.endpoint"), problem);
                    }
                }
            }
        }
        for (i, group) in self.policy.groups.iter().enumerate() {
            for (j, member) in group.members.iter().enumerate() {
                if let Err(problem) = decode_key(member) {
                    error(format!("policy.groups[{i}].members[{j}]"), problem);
                }
            }
        }
        for (i, rule) in self.policy.rules.iter().enumerate() {
            let path = format!("policy.rules[{i}]");
            for (j, from) in rule.from.iter().enumerate() {
                if let Some(group) = from.strip_prefix("group:") {
                    if !self.policy.groups.iter().any(|g| g.name == group) {
                        error(
                            format!("{path}.from[{j}]"),
                            format!("group {group:?} is not defined in [[policy.groups]]"),
                        );
                    }
                } else if let Err(problem) = decode_key(from) {
                    error(format!("{path}.from[{j}]"), problem);
                }
            }
            for (j, ports) in rule.ports.iter().enumerate() {
                if let Err(problem) = parse_port_range(ports) {
                    error(format!("{path}.ports[{j}]"), problem);
                }
            }
            if !rule.ports.is_empty()
                && !matches!(rule.protocol, Some(Protocol::Tcp | Protocol::Udp))
            {
                error(
                    format!("{path}.ports"),
                    "ports need protocol \"tcp\" or \"udp\"".to_string(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn sections(value: Value) -> ztos_plugin::Sections {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn absent_sections_are_empty() {
        let parsed =
            Sections::parse(&sections(json!({"wireguard": null, "policy": null}))).unwrap();
        assert_eq!(parsed, Sections::default());
    }

    #[test]
    fn reads_a_full_configuration() {
        let parsed = Sections::parse(&sections(json!({
            "wireguard": {"interfaces": [{"name": "wg0", "listen_port": 51820,
                "addresses": ["10.9.0.1/24"], "mtu": 1420,
                "peers": [{"public_key": KEY, "endpoint": "192.0.2.1:51820",
                           "allowed_ips": ["10.9.0.2/32"], "persistent_keepalive": 25,
                           "preshared_key": true}]}]},
            "policy": {"groups": [{"name": "ops", "members": [KEY]}],
                       "rules": [{"name": "https", "action": "allow", "from": ["group:ops"],
                                  "protocol": "tcp", "ports": ["443", "8000-8100"]}]}
        })))
        .unwrap();
        assert_eq!(
            parsed.wireguard.interfaces[0].peers[0].persistent_keepalive,
            Some(25)
        );
        assert!(parsed.wireguard.interfaces[0].peers[0].preshared_key);
        assert_eq!(parsed.policy.rules[0].action, Action::Allow);
    }

    #[test]
    fn errors_name_their_paths() {
        let errors = Sections::parse(&sections(json!({
            "wireguard": {"interfaces": [{"name": "this-name-is-too-long", "listen_port": 1,
                "peers": [{"public_key": "AAAA", "endpoint": "no-port"}]}]},
            "policy": {"rules": [{"name": "r", "action": "allow", "from": ["group:nope"],
                                  "protocol": "icmp", "ports": ["0"]}]}
        })))
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "wireguard.interfaces[0].name",
                "wireguard.interfaces[0].peers[0].public_key",
                "wireguard.interfaces[0].peers[0].endpoint",
                "policy.rules[0].from[0]",
                "policy.rules[0].ports[0]",
                "policy.rules[0].ports",
            ]
        );
        let bad = Sections::parse(&sections(json!({"wireguard": {"interfaces": 3}}))).unwrap_err();
        assert_eq!(bad[0].path, "wireguard");
        assert!(bad[0].message.starts_with("cannot read the section"));
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("443"), Ok((443, 443)));
        assert_eq!(parse_port_range("8000-8100"), Ok((8000, 8100)));
        assert!(parse_port_range("9-1").is_err());
        assert!(parse_port_range("0").is_err());
        assert!(parse_port_range("x").is_err());
    }
}
