//! The WireGuard plugin's answers: its status (what `ztos security status` shows), `wireguard
//! show` (a `wg show`-like view: public keys, endpoints, handshakes, transfer, policy counters;
//! never a private key) and the key requests (`genkey`, `rotate-key`, `preshared-key`).
//! ztos-wireguard builds these types; ztosd passes them through; the CLI and the web UI read them.

use std::net::SocketAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::config::PolicyAction;

/// The status ztos-wireguard reports to ztosd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WireguardStatus {
    /// The configuration revision the datapath runs.
    pub applied_revision: Option<u64>,
    /// `userspace` (boringtun over TUN).
    pub backend: String,
    pub interfaces: Vec<WireguardInterface>,
    pub policy: PolicyCounters,
}

/// `wireguard show [--interface NAME]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WireguardShow {
    pub interfaces: Vec<WireguardInterface>,
    /// Absent when an unconfigured interface that only has a key was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyCounters>,
}

/// One interface. An interface that has a key but is not in the running configuration carries
/// only its name, public key, `configured: false` and no peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WireguardInterface {
    pub name: String,
    /// Base64, as `wg` prints it.
    pub public_key: String,
    #[serde(default = "configured_default")]
    pub configured: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    #[serde(default)]
    pub peers: Vec<WireguardPeer>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<InterfaceCounters>,
}

fn configured_default() -> bool {
    true
}

/// An interface's drop and flow counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InterfaceCounters {
    pub dropped_no_route: u64,
    pub dropped_no_endpoint: u64,
    pub invalid_datagrams: u64,
    pub unknown_peer: u64,
    pub cookies_sent: u64,
    /// Flows in the policy's reply table.
    pub flows: u64,
}

/// One peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WireguardPeer {
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The endpoint in use (configured or learned by roaming).
    #[schema(value_type = Option<String>)]
    pub endpoint: Option<SocketAddr>,
    #[schema(value_type = Vec<String>)]
    pub allowed_ips: Vec<IpNet>,
    /// Unix time of the latest handshake, if any.
    pub latest_handshake: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub persistent_keepalive: Option<u16>,
    /// Whether a preshared key is in use (the key itself is never shown here).
    pub preshared_key: bool,
    pub policy_allowed: u64,
    pub policy_denied_in: u64,
    pub policy_denied_out: u64,
    /// Packets whose inner source was outside the peer's allowed IPs.
    pub invalid_source: u64,
}

/// Zero-trust policy counters: each rule's, in order, and the default deny's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyCounters {
    pub rules: Vec<PolicyRuleCounter>,
    pub default_deny: PacketCounter,
}

/// One `[[policy.rules]]` entry's counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyRuleCounter {
    pub name: String,
    pub action: PolicyAction,
    pub packets: u64,
    pub bytes: u64,
}

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PacketCounter {
    pub packets: u64,
    pub bytes: u64,
}

/// `wireguard genkey`: the interface's new public key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WireguardKey {
    pub interface: String,
    pub public_key: String,
}

/// `wireguard rotate-key`: the new public key, the one it replaced, and what to do next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WireguardRotatedKey {
    pub interface: String,
    /// `null` when the interface had no key before.
    pub old_public_key: Option<String>,
    pub public_key: String,
    /// What the operator must do next: the peers need the new key.
    pub notice: String,
}

/// `wireguard preshared-key`: the one answer that carries a secret, asked for explicitly and
/// recorded as an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WireguardPresharedKey {
    pub interface: String,
    pub peer: String,
    pub preshared_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfigured_interface_has_no_counters() {
        let json = serde_json::json!({"name": "wg0", "public_key": "k", "configured": false,
            "peers": []});
        let interface: WireguardInterface = serde_json::from_value(json.clone()).unwrap();
        assert!(!interface.configured);
        assert!(interface.counters.is_none() && interface.listen_port.is_none());
        assert_eq!(serde_json::to_value(&interface).unwrap(), json);
    }

    #[test]
    fn configured_interface_round_trips() {
        let json = serde_json::json!({"name": "wg0", "public_key": "k", "configured": true,
            "listen_port": 51820, "peers": [{"public_key": "p", "endpoint": "192.0.2.1:51820",
            "allowed_ips": ["10.0.0.2/32"], "latest_handshake": null, "rx_bytes": 1,
            "tx_bytes": 2, "rx_packets": 1, "tx_packets": 1, "persistent_keepalive": 25,
            "preshared_key": false, "policy_allowed": 0, "policy_denied_in": 0,
            "policy_denied_out": 0, "invalid_source": 0}],
            "dropped_no_route": 0, "dropped_no_endpoint": 0, "invalid_datagrams": 0,
            "unknown_peer": 0, "cookies_sent": 0, "flows": 3});
        let interface: WireguardInterface = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(interface.counters.unwrap().flows, 3);
        assert_eq!(serde_json::to_value(&interface).unwrap(), json);
    }

    #[test]
    fn rotated_key_keeps_a_null_old_key() {
        let json = serde_json::json!({"interface": "wg0", "public_key": "n",
            "old_public_key": null, "notice": "tell the peers"});
        let key: WireguardRotatedKey = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(key.old_public_key, None);
        assert_eq!(serde_json::to_value(&key).unwrap(), json);
    }
}
