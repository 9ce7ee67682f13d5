//! Plugin processes as ztosd sees them: state, ownership, last apply, status and events.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Whether a plugin is connected now (`up`), was connected before (`down`), or has never
/// connected since ztosd started (`absent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    Up,
    Down,
    Absent,
}

impl std::fmt::Display for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginState::Up => "up",
            PluginState::Down => "down",
            PluginState::Absent => "absent",
        })
    }
}

/// Something a plugin reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginEvent {
    /// RFC 3339 UTC time ztosd received it.
    pub time: String,
    pub kind: String,
    pub message: String,
}

/// What ztosd knows about one plugin (`ztos show plugins`, `GET /api/v1/plugins`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginInfo {
    pub name: String,
    /// The version it announced; absent if it never connected.
    pub version: Option<String>,
    /// Sections it owns (for an absent well-known plugin: the sections it will own).
    pub owns: Vec<String>,
    pub reads: Vec<String>,
    pub state: PluginState,
    /// RFC 3339 UTC time of the current connection; absent while not connected.
    pub connected_since: Option<String>,
    /// The last revision it applied successfully.
    pub last_applied_revision: Option<u64>,
    /// The error of its last apply, if that apply failed.
    pub last_apply_error: Option<String>,
    /// Its latest status report (free-form), `null` if none.
    #[schema(value_type = Object)]
    pub status: Value,
    /// Its most recent events, oldest first (at most 10).
    pub events: Vec<PluginEvent>,
}
