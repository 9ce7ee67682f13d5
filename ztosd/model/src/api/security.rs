//! `GET /api/v1/security/status`: encryption status of WireGuard and MACsec.

use serde::{Deserialize, Serialize};

/// Encryption status of one datapath.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatapathSecurity {
    /// Whether the running configuration has this section.
    pub configured: bool,
    /// Interfaces configured.
    pub interfaces: usize,
    /// Peers (WireGuard) configured.
    pub peers: usize,
    /// The owning plugin's name.
    pub plugin: String,
    /// `up`, `down` or `absent` (never connected).
    pub plugin_state: String,
    /// The plugin's own status report, if it is connected.
    #[schema(value_type = Object)]
    pub status: serde_json::Value,
}

/// `GET /api/v1/security/status`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecurityStatus {
    pub wireguard: DatapathSecurity,
    pub macsec: DatapathSecurity,
    /// Zero-trust policy rules configured (enforced by the WireGuard plugin).
    pub policy_rules: usize,
    /// `rolled back from <version>` when this boot is an automatic rollback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
}

/// Which peer's preshared key to export.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresharedKeyRequest {
    /// The peer's public key (base64), as in `wireguard.interfaces[].peers[].public_key`.
    pub peer: String,
}
