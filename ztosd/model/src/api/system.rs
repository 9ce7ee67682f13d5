//! `GET /health` (ztosd and the plugins that own configured sections), and ztos-init's
//! services and boot assessment as the API passes them on.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentHealth {
    pub name: String,
    pub healthy: bool,
    pub detail: String,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    pub healthy: bool,
    pub components: Vec<ComponentHealth>,
}

/// A service init supervises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InitService {
    pub name: String,
    /// `running`, `backoff`, `crash-loop`, `stopped` or `exited`.
    pub state: String,
    /// The process id while it runs.
    pub pid: Option<u32>,
    /// Times it was started again after its first start.
    pub restarts: u64,
    /// RFC 3339 time of its last state change.
    pub since: String,
    /// How its last run ended, such as `exited with status 1` or `killed by SIGKILL`.
    pub last_exit: Option<String>,
    /// A crash-looping critical service makes the box unhealthy.
    pub critical: bool,
}

/// The answer to a `services` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InitServices {
    pub services: Vec<InitService>,
    /// False while a critical service crash-loops.
    pub healthy: bool,
}

/// The answer to a `boot` request: init's assessment of this boot (docs/supervisor.md).
/// Fields init may add later are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BootAssessment {
    /// `a` or `b`; absent when init does not know (not PID 1, no `ztos.slot=`).
    #[serde(default)]
    pub booted_slot: Option<String>,
    /// The boot entry file that booted, such as `ztos-2-b+2-1.conf`.
    #[serde(default)]
    pub entry: Option<String>,
    /// `assessing` (trial boot, not blessed yet), `blessed` (blessed during this boot),
    /// `good` (booted an entry without a counter), `rolled-back` or `unknown`.
    pub state: String,
    /// The version whose entry ran out of tries, when this boot is a rollback.
    #[serde(default)]
    pub rolled_back_from: Option<String>,
    /// Both slots as init sees them (entry, version, status), as init sends them.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub slots: Vec<Value>,
}

/// The answer to a reboot or poweroff request.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShutdownAccepted {
    /// `reboot` or `poweroff`: init stops every service, then does it.
    pub shutdown: String,
}

/// The answer to a perm reformat request.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PermReformatAccepted {
    /// The partition label that is reformatted: `ztos-perm`.
    pub reformat: String,
    /// `reboot`: init stops every service, makes a new filesystem on the partition, then
    /// reboots onto it.
    pub shutdown: String,
}
