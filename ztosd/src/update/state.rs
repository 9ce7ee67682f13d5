//! `<state-dir>/update/state.json`: what the updater knows that the ESP does not say.
//!
//! - Per slot, whether its root partition is being written or was overwritten by an update
//!   that did not finish, so `ztos system rollback` never switches to a slot whose root no
//!   longer matches its boot entry.
//! - A random device id, persisted, from which pull mode derives this device's spread.
//! - The boots whose assessment (blessed, rolled back) is already in the history, so each is
//!   recorded once.
//!
//! Methods change memory only; [`UpdateState::save`] writes the file (atomically).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ztos_image::layout::Slot;

use crate::store::atomic_write;

/// What the updater did to a slot's root partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", tag = "root")]
pub enum SlotRecord {
    /// An update is writing this slot's root right now (or ztosd died while it did: at the
    /// next start this becomes [`SlotRecord::Overwritten`]).
    BeingWritten { version: String, since: String },
    /// An update started writing the root and did not finish: the partition no longer holds
    /// what the slot's old boot entry (if any) describes.
    Overwritten { version: String, reason: String },
    /// An update wrote and verified the root and installed the slot's boot entry.
    Written { version: String, since: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateState {
    /// A random id, made once; only pull mode's spread uses it.
    #[serde(default)]
    pub device_id: String,
    #[serde(default)]
    pub slots: BTreeMap<Slot, SlotRecord>,
    /// Keys of the boot assessments already recorded in the history (newest last, bounded).
    #[serde(default)]
    pub recorded_boots: Vec<String>,
}

/// Boot assessment keys remembered for dedupe.
const RECORDED_BOOTS_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading {}: {reason}", path.display())]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("{} is not the updater's state: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        reason: serde_json::Error,
    },
    #[error("writing {}: {reason}", path.display())]
    Write {
        path: PathBuf,
        reason: std::io::Error,
    },
}

impl UpdateState {
    /// Loads `path` (missing: a fresh state with a new device id, not yet saved).
    pub fn load(path: &Path) -> Result<UpdateState, StateError> {
        let mut state: UpdateState = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|reason| StateError::Corrupt {
                path: path.to_path_buf(),
                reason,
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => UpdateState::default(),
            Err(reason) => {
                return Err(StateError::Read {
                    path: path.to_path_buf(),
                    reason,
                })
            }
        };
        if state.device_id.is_empty() {
            state.device_id = hex::encode(rand::random::<[u8; 16]>());
        }
        Ok(state)
    }

    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        atomic_write(path, &bytes, 0o644).map_err(|reason| StateError::Write {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// At start no write can be running: a slot still marked as being written was cut off
    /// (power cut, crash). Returns the slots this changed. Does not write to the disk.
    pub fn settle_interrupted_writes(&mut self) -> Vec<Slot> {
        let mut changed = Vec::new();
        for (slot, record) in self.slots.iter_mut() {
            if let SlotRecord::BeingWritten { version, .. } = record {
                *record = SlotRecord::Overwritten {
                    version: version.clone(),
                    reason: "the update writing it was interrupted".into(),
                };
                changed.push(*slot);
            }
        }
        changed
    }

    /// Why `slot` must not be booted by hand, if it must not.
    pub fn refuse_reason(&self, slot: Slot) -> Option<String> {
        match self.slots.get(&slot)? {
            SlotRecord::BeingWritten { version, .. } => Some(format!(
                "slot {slot} is being written by the update to {version}"
            )),
            SlotRecord::Overwritten { version, reason } => Some(format!(
                "slot {slot} was overwritten by an update to {version} that did not finish ({reason})"
            )),
            SlotRecord::Written { .. } => None,
        }
    }

    /// Whether the assessment `key` was recorded already; remembers it if not. Does not
    /// write to the disk.
    pub fn first_time_boot_key(&mut self, key: &str) -> bool {
        if self.recorded_boots.iter().any(|k| k == key) {
            return false;
        }
        self.recorded_boots.push(key.to_string());
        if self.recorded_boots.len() > RECORDED_BOOTS_LEN {
            let excess = self.recorded_boots.len() - RECORDED_BOOTS_LEN;
            self.recorded_boots.drain(..excess);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_keeps_its_device_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut state = UpdateState::load(&path).unwrap();
        assert_eq!(state.device_id.len(), 32);
        state.slots.insert(
            Slot::B,
            SlotRecord::BeingWritten {
                version: "2.0.0".into(),
                since: "2026-01-01T00:00:00Z".into(),
            },
        );
        state.save(&path).unwrap();
        let reloaded = UpdateState::load(&path).unwrap();
        assert_eq!(reloaded, state);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""root": "being-written""#), "{text}");
    }

    #[test]
    fn an_interrupted_write_becomes_overwritten_and_blocks_rollback() {
        let mut state = UpdateState::default();
        state.slots.insert(
            Slot::B,
            SlotRecord::BeingWritten {
                version: "2.0.0".into(),
                since: "t".into(),
            },
        );
        state.slots.insert(
            Slot::A,
            SlotRecord::Written {
                version: "1.0.0".into(),
                since: "t".into(),
            },
        );
        assert_eq!(state.settle_interrupted_writes(), vec![Slot::B]);
        assert!(state.refuse_reason(Slot::A).is_none());
        let reason = state.refuse_reason(Slot::B).unwrap();
        assert!(
            reason.contains("slot b was overwritten by an update to 2.0.0"),
            "{reason}"
        );
        assert!(state.settle_interrupted_writes().is_empty());
    }

    #[test]
    fn boot_keys_are_recorded_once() {
        let mut state = UpdateState::default();
        assert!(state.first_time_boot_key("boot1:blessed"));
        assert!(!state.first_time_boot_key("boot1:blessed"));
        for n in 0..RECORDED_BOOTS_LEN {
            assert!(state.first_time_boot_key(&format!("k{n}")));
        }
        assert_eq!(state.recorded_boots.len(), RECORDED_BOOTS_LEN);
        assert!(state.first_time_boot_key("boot1:blessed"));
    }
}
