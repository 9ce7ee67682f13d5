//! The update history: the last [`HISTORY_LEN`] update events (started, rejected, failed,
//! written, rebooted, blessed, rolled back), newest last, persisted atomically in
//! `<state-dir>/update/history.json` so it survives the reboot that an update ends with.

use std::path::{Path, PathBuf};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::store::atomic_write;

/// How many events are kept; older ones are dropped.
pub const HISTORY_LEN: usize = 50;

/// The history's events are API answers (`ztos_model::api::update`).
pub use ztos_model::api::update::{HistoryEntry, UpdateEvent};

/// A history entry about `event` at the current time.
pub fn entry_now(event: UpdateEvent, message: impl Into<String>) -> HistoryEntry {
    HistoryEntry::new(now_rfc3339(), event, message)
}

/// The current UTC time in RFC 3339.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("reading {}: {reason}", path.display())]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("{} is not an update history: {reason}", path.display())]
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

/// The history file. Not synchronised: [`super::UpdateService`] holds it behind a mutex.
#[derive(Debug)]
pub struct History {
    path: PathBuf,
    entries: Vec<HistoryEntry>,
}

impl History {
    /// Loads `path`; a missing file is an empty history. A corrupt file is an error rather
    /// than silently emptied, so nobody loses the record of a failed update unnoticed.
    pub fn load(path: &Path) -> Result<History, HistoryError> {
        let entries = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|reason| HistoryError::Corrupt {
                    path: path.to_path_buf(),
                    reason,
                })?
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(reason) => {
                return Err(HistoryError::Read {
                    path: path.to_path_buf(),
                    reason,
                })
            }
        };
        Ok(History {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// An empty history written to `path` on the next [`History::record`] (used when the
    /// file on disk was corrupt: the corrupt file is kept aside by the caller).
    pub fn empty(path: &Path) -> History {
        History {
            path: path.to_path_buf(),
            entries: Vec::new(),
        }
    }

    /// Appends `entry`, drops the oldest beyond [`HISTORY_LEN`] and persists the result.
    pub fn record(&mut self, entry: HistoryEntry) -> Result<(), HistoryError> {
        self.entries.push(entry);
        if self.entries.len() > HISTORY_LEN {
            let excess = self.entries.len() - HISTORY_LEN;
            self.entries.drain(..excess);
        }
        let bytes = serde_json::to_vec_pretty(&self.entries).unwrap_or_default();
        atomic_write(&self.path, &bytes, 0o644).map_err(|reason| HistoryError::Write {
            path: self.path.clone(),
            reason,
        })
    }

    /// Oldest first.
    pub fn entries(&self) -> &[HistoryEntry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_persists_and_keeps_the_newest_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.json");
        let mut history = History::load(&path).unwrap();
        assert!(history.entries().is_empty());
        for n in 0..HISTORY_LEN + 5 {
            history
                .record(entry_now(UpdateEvent::Rejected, format!("reason {n}")).version("2"))
                .unwrap();
        }
        let reloaded = History::load(&path).unwrap();
        assert_eq!(reloaded.entries().len(), HISTORY_LEN);
        assert_eq!(reloaded.entries()[0].message, "reason 5");
        assert_eq!(
            reloaded.entries().last().unwrap().message,
            format!("reason {}", HISTORY_LEN + 4)
        );
        assert_eq!(reloaded.entries(), history.entries());
    }

    #[test]
    fn history_entries_serialize_with_kebab_case_events() {
        let entry = HistoryEntry {
            time: "2026-01-01T00:00:00Z".into(),
            event: UpdateEvent::RolledBack,
            version: Some("1.2.0".into()),
            slot: Some("b".into()),
            message: "rolled back from 1.2.0".into(),
        };
        let text = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            text,
            r#"{"time":"2026-01-01T00:00:00Z","event":"rolled-back","version":"1.2.0","slot":"b","message":"rolled back from 1.2.0"}"#
        );
        assert_eq!(serde_json::from_str::<HistoryEntry>(&text).unwrap(), entry);
    }

    #[test]
    fn a_corrupt_history_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = History::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("history.json is not an update history"),
            "{err}"
        );
    }
}
