//! Software updates: when to reboot into a written update, and the update API's bodies
//! (progress, slots, history).

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::api::system::BootAssessment;

/// When to reboot into a written update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootWhen {
    Now,
    /// Not at all: the new version boots at the next reboot, whoever makes it.
    Never,
    At(OffsetDateTime),
}

/// A `reboot` option that is none of `now`, `never` or an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reboot {0:?}: expected now, never or an RFC 3339 time such as 2026-01-01T22:00:00Z")]
pub struct BadRebootTime(pub String);

impl RebootWhen {
    /// `now`, `never` (or `later`), or an RFC 3339 time.
    pub fn parse(text: &str) -> Result<RebootWhen, BadRebootTime> {
        match text {
            "now" => Ok(RebootWhen::Now),
            "never" | "later" => Ok(RebootWhen::Never),
            _ => OffsetDateTime::parse(text, &Rfc3339)
                .map(RebootWhen::At)
                .map_err(|_| BadRebootTime(text.to_string())),
        }
    }
}

/// Where an update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpdatePhase {
    Idle,
    /// Waiting for the bundle's header, manifest and signatures.
    Receiving,
    /// Checking signatures and the version policy; staging the kernel and initramfs.
    Verifying,
    /// Receiving the root image whole into memory (and checking its size and sha256), before
    /// the slot is touched.
    ReceivingRoot,
    /// Writing the root image into the slot: from memory, or streamed as it arrives when it
    /// is larger than the memory budget.
    WritingRoot,
    /// Re-reading the written root and comparing its sha256.
    Checking,
    WritingBoot,
    Written,
    Rebooting,
    Failed,
}

/// `GET /api/v1/system/update`: the update running now, or the last one.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpdateProgress {
    pub state: UpdatePhase,
    /// Bytes of the current step done: received (receiving, verifying, receiving-root),
    /// written (writing-root), re-read (checking).
    pub bytes_done: u64,
    /// Bytes of the current step in all; 0 when unknown.
    pub bytes_total: u64,
    /// Bytes of the bundle received so far.
    pub bytes_received: u64,
    /// The version being installed, once the manifest is read.
    pub version: Option<String>,
    /// The slot being written.
    pub slot: Option<String>,
    /// RFC 3339 time the update started.
    pub started: Option<String>,
    /// Where the bundle comes from (`upload by admin`, a URL).
    pub source: Option<String>,
    /// What happened last: the reason of a failure, when the reboot is.
    pub message: String,
}

impl UpdateProgress {
    /// No update since ztosd started.
    pub fn idle() -> UpdateProgress {
        UpdateProgress {
            state: UpdatePhase::Idle,
            bytes_done: 0,
            bytes_total: 0,
            bytes_received: 0,
            version: None,
            slot: None,
            started: None,
            source: None,
            message: String::new(),
        }
    }
}

/// What a successful update did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpdateOutcome {
    pub version: String,
    /// The slot that was written (`a` or `b`).
    pub slot: String,
    /// The boot entry installed, such as `ztos-2-b+3.conf`.
    pub entry: String,
    /// `now`, `never` or the RFC 3339 time of the reboot.
    pub reboot: String,
    /// Bytes of the root image written into the slot.
    pub root_bytes: u64,
    /// Seconds the writing-root step took, from its first byte written to the slot to its
    /// data synced (the re-read comes after). For a root received into memory first
    /// (`root_streamed` false) that is the disk write alone; for a streamed root it includes
    /// receiving and hashing it, which the write overlaps.
    pub root_write_seconds: f64,
    /// Whether the root was streamed into the slot as it arrived (larger than the memory
    /// budget) rather than received whole first.
    pub root_streamed: bool,
}

/// One slot in `GET /api/v1/system/slots`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlotView {
    /// `a` or `b`.
    pub slot: String,
    /// The version its boot entry names.
    pub version: Option<String>,
    /// `good`, `trial`, `bad` or `no-entry`.
    pub status: String,
    /// Boot tries left while on trial.
    pub tries_left: Option<u32>,
    /// The boot entry's file name.
    pub entry: Option<String>,
    /// Running now.
    pub active: bool,
    /// What systemd-boot boots next.
    pub next_boot: bool,
    /// `being-written`, `overwritten` or `written` when an update touched its root.
    pub root: Option<String>,
    /// Why the slot cannot be switched to by hand, if it cannot.
    pub unavailable: Option<String>,
}

/// `GET /api/v1/system/slots`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlotsView {
    pub slots: Vec<SlotView>,
    /// The running slot.
    pub booted: Option<String>,
    /// The slot systemd-boot boots next.
    pub next_boot: Option<String>,
    /// The running version.
    pub current_version: String,
    /// ztos-init's assessment of this boot, when init runs.
    pub boot: Option<BootAssessment>,
}

/// What a manual rollback did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RollbackOutcome {
    /// The slot that boots next.
    pub slot: String,
    pub version: Option<String>,
    /// The entry now first in systemd-boot's order.
    pub entry: String,
    /// Whether a reboot was asked of init.
    pub rebooting: bool,
}

/// `GET /api/v1/system/update`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpdateStatus {
    #[serde(flatten)]
    pub progress: UpdateProgress,
    /// Pull mode's last and next check, when `[system.update]` is configured.
    pub pull: Option<PullStatus>,
}

/// The last check, for `GET /api/v1/system/update`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PullStatus {
    /// The index URL.
    pub server: String,
    /// RFC 3339 time of the last check.
    pub last_check: Option<String>,
    /// What it found: `paused`, `up to date`, `installed X`, or the error.
    pub last_result: Option<String>,
    /// RFC 3339 time of the next check.
    pub next_check: Option<String>,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateEvent {
    /// A bundle started arriving (upload or pull).
    Started,
    /// The bundle was refused before anything was written: bad signature, untrusted key,
    /// version policy, a manifest that does not fit. The message says why.
    Rejected,
    /// Writing failed part way (I/O error, hash mismatch on the re-read, truncated stream).
    /// The old slot still boots; the message says why.
    Failed,
    /// The inactive slot holds the new version and its boot entry counts tries.
    Written,
    /// A reboot into the new slot was asked of init.
    Rebooted,
    /// The booted slot was blessed: it proved healthy and keeps booting.
    Blessed,
    /// The bootloader gave up on a slot that did not prove healthy and booted the other one.
    RolledBack,
    /// An operator switched slots by hand (`ztos system rollback`).
    ManualRollback,
}

/// One event in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// RFC 3339 UTC time.
    pub time: String,
    pub event: UpdateEvent,
    /// The version concerned, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The slot concerned (`a` or `b`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// Why, or what: the reason of a rejection, the source of a bundle.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl HistoryEntry {
    /// An entry at `time` (RFC 3339) about `event`.
    pub fn new(time: String, event: UpdateEvent, message: impl Into<String>) -> HistoryEntry {
        HistoryEntry {
            time,
            event,
            version: None,
            slot: None,
            message: message.into(),
        }
    }

    /// The version concerned.
    pub fn version(mut self, version: impl Into<String>) -> HistoryEntry {
        self.version = Some(version.into());
        self
    }

    /// The slot concerned, `a` or `b`.
    pub fn slot(mut self, slot: impl Into<String>) -> HistoryEntry {
        self.slot = Some(slot.into());
        self
    }
}

/// `POST /api/v1/system/update/url`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateFromUrl {
    /// `http://` or `https://` URL of a bundle; https is checked against
    /// `system.update.ca_cert`.
    pub url: String,
    #[serde(default)]
    pub allow_downgrade: bool,
    /// As for the upload: `now`, `later`/`never` or an RFC 3339 time.
    pub reboot: Option<String>,
    pub tries: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reboot_when_parses_words_and_times_and_names_a_bad_one() {
        assert_eq!(RebootWhen::parse("now").unwrap(), RebootWhen::Now);
        assert_eq!(RebootWhen::parse("later").unwrap(), RebootWhen::Never);
        assert!(matches!(
            RebootWhen::parse("2026-01-01T22:00:00Z").unwrap(),
            RebootWhen::At(_)
        ));
        let err = RebootWhen::parse("tomorrow").unwrap_err().to_string();
        assert!(
            err.contains("expected now, never or an RFC 3339 time"),
            "{err}"
        );
    }

    #[test]
    fn update_status_flattens_the_progress_and_round_trips() {
        let json = serde_json::json!({"state": "writing-root", "bytes_done": 1, "bytes_total": 2,
            "bytes_received": 3, "version": "0.2.0", "slot": "b", "started": null,
            "source": null, "message": "", "pull": null});
        let status: UpdateStatus = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(status.progress.state, UpdatePhase::WritingRoot);
        assert_eq!(serde_json::to_value(&status).unwrap(), json);
    }
}
