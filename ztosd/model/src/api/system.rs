//! `GET /health` (ztosd and the plugins that own configured sections), and ztos-init's
//! services and boot assessment as the API passes them on.

use serde::{Deserialize, Serialize};

use crate::init::{AssessmentState, BootStatus, ServiceStatus, Slot, SlotReport};

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

/// The answer to a `services` request: init's own `ServiceStatus` per service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InitServices {
    pub services: Vec<ServiceStatus>,
    /// False while a critical service crash-loops.
    pub healthy: bool,
}

/// The part of init's answer to a `boot` request (`BootStatus` in docs/supervisor.md) that
/// ztosd keeps and shows in the update status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BootAssessment {
    /// Absent when init does not know (not PID 1, no `ztos.slot=`).
    #[serde(default)]
    pub booted_slot: Option<Slot>,
    /// The boot entry file that booted, such as `ztos-2-b+2-1.conf`.
    #[serde(default)]
    pub entry: Option<String>,
    pub state: AssessmentState,
    /// The version whose entry ran out of tries, when this boot is a rollback.
    #[serde(default)]
    pub rolled_back_from: Option<String>,
    /// Both slots as init saw them on the ESP.
    #[serde(default)]
    pub slots: Vec<SlotReport>,
}

impl From<BootStatus> for BootAssessment {
    fn from(status: BootStatus) -> BootAssessment {
        BootAssessment {
            booted_slot: status.booted_slot,
            entry: status.entry,
            state: status.state,
            rolled_back_from: status.rolled_back_from,
            slots: status.slots,
        }
    }
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
