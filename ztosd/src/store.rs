//! The versioned configuration store in the state directory: numbered revisions with author,
//! time and comment, the candidate, and the pending `commit confirmed` record.
//!
//! Layout under `<state-dir>/config/` (directories mode 0700, files 0600):
//!
//! ```text
//! running                  number of the running revision: the commit point
//! sequence                 highest revision number ever allocated
//! revisions/<n>.toml       text of revision n
//! revisions/<n>.json       RevisionMeta of revision n
//! candidate.toml           the candidate being edited, if any
//! pending-confirm.json     PendingConfirm while a confirmed commit awaits confirmation
//! ```
//!
//! Every file is replaced with [`atomic_write`]. A commit writes the revision's files first and
//! switches `running` last, so a crash at any point leaves the old or the new revision
//! running; revision files newer than `running` and leftover temporary files are debris of
//! an interrupted commit and are removed on open.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Mode of every file the store writes: configuration may name key files and users.
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;
/// Temporary files of [`atomic_write`] start with this, so the store can recognize debris.
const TEMP_PREFIX: &str = ".tmp-";

/// Replaces `path` with `bytes` atomically: readers see the old or the new content, never
/// a mix, even across a power cut.
///
/// Writes a temporary file in the same directory, fsyncs it, sets `mode`, renames it over
/// `path` and fsyncs the directory so the rename itself is durable.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let temp = dir.join(format!(
        "{TEMP_PREFIX}{}.{}.{}",
        file_name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        // The umask may have cleared bits of `mode` at creation; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Revision numbers and their metadata are API types (`ztos_model::api::config`).
pub use ztos_model::api::config::{Revision, RevisionMeta};

/// A `commit confirmed` that reverts to `rollback_to` unless confirmed before the deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingConfirm {
    pub revision: Revision,
    pub rollback_to: Revision,
    /// Seconds since the Unix epoch.
    pub deadline_unix: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("revision {0} not found")]
    NotFound(Revision),
    #[error("{}: corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The configuration store of one state directory. Only ztosd holds one; methods that
/// write take `&mut self`.
#[derive(Debug)]
pub struct ConfigStore {
    dir: PathBuf,
    retention: usize,
}

impl ConfigStore {
    /// Opens (creating if needed) the store under `state_dir/config/`, keeping the newest
    /// `retention` revisions (at least 1). Removes debris of an interrupted commit.
    pub fn open(state_dir: &Path, retention: usize) -> Result<ConfigStore, StoreError> {
        let store = ConfigStore {
            dir: state_dir.join("config"),
            retention: retention.max(1),
        };
        for dir in [
            state_dir,
            store.dir.as_path(),
            store.revisions_dir().as_path(),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(io_error(dir))?;
        }
        for dir in [&store.dir, &store.revisions_dir()] {
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                .map_err(io_error(dir))?;
        }
        store.remove_debris()?;
        Ok(store)
    }

    /// The `config/` directory of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The running revision and its text; `None` before the first commit.
    pub fn running(&self) -> Result<Option<(RevisionMeta, String)>, StoreError> {
        match self.running_number()? {
            Some(number) => self.load(number).map(Some),
            None => Ok(None),
        }
    }

    /// Stores `text` as a new revision and makes it the running one, then prunes old
    /// revisions. Does not touch the candidate.
    pub fn commit(
        &mut self,
        text: &str,
        author: &str,
        comment: &str,
    ) -> Result<RevisionMeta, StoreError> {
        let previous = self.running_number()?;
        let number = Revision(self.highest_allocated()?.0 + 1);
        // Allocate the number first, so it is never handed out twice even if this commit
        // is interrupted and its files are removed as debris.
        self.write(&self.sequence_path(), format!("{number}\n").as_bytes())?;
        let meta = RevisionMeta {
            number,
            author: author.to_string(),
            time: now_rfc3339(),
            comment: comment.to_string(),
        };
        self.write(&self.text_path(number), text.as_bytes())?;
        let meta_json = serde_json::to_vec_pretty(&meta).expect("RevisionMeta serializes to JSON");
        self.write(&self.meta_path(number), &meta_json)?;
        // The commit point.
        self.write(&self.running_path(), format!("{number}\n").as_bytes())?;
        self.prune(previous)?;
        Ok(meta)
    }

    /// Stored revisions, newest first.
    pub fn revisions(&self) -> Result<Vec<RevisionMeta>, StoreError> {
        self.revision_numbers()?
            .into_iter()
            .rev()
            .map(|number| self.load_meta(number))
            .collect()
    }

    /// One stored revision and its text.
    pub fn load(&self, revision: Revision) -> Result<(RevisionMeta, String), StoreError> {
        let meta = self.load_meta(revision)?;
        let path = self.text_path(revision);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(revision))
            }
            Err(error) => return Err(io_error(&path)(error)),
        };
        Ok((meta, text))
    }

    /// The candidate text, if one is being edited.
    pub fn candidate(&self) -> Result<Option<String>, StoreError> {
        read_optional(&self.candidate_path())
    }

    pub fn set_candidate(&mut self, text: &str) -> Result<(), StoreError> {
        self.write(&self.candidate_path(), text.as_bytes())
    }

    pub fn clear_candidate(&mut self) -> Result<(), StoreError> {
        self.remove(&self.candidate_path())
    }

    /// The pending `commit confirmed`, if any.
    pub fn pending_confirm(&self) -> Result<Option<PendingConfirm>, StoreError> {
        let path = self.pending_path();
        match read_optional(&path)? {
            Some(json) => {
                serde_json::from_str(&json)
                    .map(Some)
                    .map_err(|error| StoreError::Corrupt {
                        path,
                        reason: error.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    pub fn set_pending_confirm(
        &mut self,
        pending: Option<PendingConfirm>,
    ) -> Result<(), StoreError> {
        match pending {
            Some(pending) => {
                let json =
                    serde_json::to_vec_pretty(&pending).expect("PendingConfirm serializes to JSON");
                self.write(&self.pending_path(), &json)
            }
            None => self.remove(&self.pending_path()),
        }
    }

    fn revisions_dir(&self) -> PathBuf {
        self.dir.join("revisions")
    }

    fn running_path(&self) -> PathBuf {
        self.dir.join("running")
    }

    fn sequence_path(&self) -> PathBuf {
        self.dir.join("sequence")
    }

    fn candidate_path(&self) -> PathBuf {
        self.dir.join("candidate.toml")
    }

    fn pending_path(&self) -> PathBuf {
        self.dir.join("pending-confirm.json")
    }

    fn text_path(&self, revision: Revision) -> PathBuf {
        self.revisions_dir().join(format!("{revision}.toml"))
    }

    fn meta_path(&self, revision: Revision) -> PathBuf {
        self.revisions_dir().join(format!("{revision}.json"))
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        atomic_write(path, bytes, FILE_MODE).map_err(io_error(path))
    }

    fn remove(&self, path: &Path) -> Result<(), StoreError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io_error(path)(error)),
        }
    }

    /// Reads a file holding one revision number, such as `running`.
    fn read_number(&self, path: &Path) -> Result<Option<Revision>, StoreError> {
        match read_optional(path)? {
            Some(text) => {
                text.trim()
                    .parse()
                    .map(|n| Some(Revision(n)))
                    .map_err(|_| StoreError::Corrupt {
                        path: path.to_path_buf(),
                        reason: format!("{:?} is not a revision number", text.trim()),
                    })
            }
            None => Ok(None),
        }
    }

    fn running_number(&self) -> Result<Option<Revision>, StoreError> {
        self.read_number(&self.running_path())
    }

    /// The highest number ever allocated, from `sequence` and the files present (a store
    /// written before `sequence` existed, or a lost `sequence` file, still never reuses).
    fn highest_allocated(&self) -> Result<Revision, StoreError> {
        let sequence = self
            .read_number(&self.sequence_path())?
            .unwrap_or(Revision(0));
        let newest = self
            .revision_numbers()?
            .last()
            .copied()
            .unwrap_or(Revision(0));
        let running = self.running_number()?.unwrap_or(Revision(0));
        Ok(sequence.max(newest).max(running))
    }

    /// Numbers of complete revisions (both files present), oldest first.
    fn revision_numbers(&self) -> Result<Vec<Revision>, StoreError> {
        let dir = self.revisions_dir();
        let mut numbers = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|name| name.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let number = Revision(number);
            if self.text_path(number).exists() {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    fn load_meta(&self, revision: Revision) -> Result<RevisionMeta, StoreError> {
        let path = self.meta_path(revision);
        let json = read_optional(&path)?.ok_or(StoreError::NotFound(revision))?;
        let meta: RevisionMeta =
            serde_json::from_str(&json).map_err(|error| StoreError::Corrupt {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        if meta.number != revision {
            return Err(StoreError::Corrupt {
                path,
                reason: format!("holds revision {} instead of {revision}", meta.number),
            });
        }
        Ok(meta)
    }

    /// Removes revisions beyond the newest `retention`, except the running one, `previous`
    /// (the revision the commit being made replaced: the target of a `commit confirmed`
    /// that the caller records right after the commit) and the rollback target of a
    /// pending confirmed commit.
    fn prune(&mut self, previous: Option<Revision>) -> Result<(), StoreError> {
        let numbers = self.revision_numbers()?;
        let keep_running = self.running_number()?;
        let keep_rollback = self.pending_confirm()?.map(|p| p.rollback_to);
        let excess = numbers.len().saturating_sub(self.retention);
        for number in numbers.into_iter().take(excess) {
            if [keep_running, previous, keep_rollback].contains(&Some(number)) {
                continue;
            }
            // Meta first: a revision without its meta file is not listed any more.
            self.remove(&self.meta_path(number))?;
            self.remove(&self.text_path(number))?;
        }
        Ok(())
    }

    /// Removes temporary files, revisions newer than the running one (written by a commit
    /// that never reached its commit point) and half-removed revisions.
    fn remove_debris(&self) -> Result<(), StoreError> {
        let running = self.running_number()?.unwrap_or(Revision(0));
        for dir in [self.dir.clone(), self.revisions_dir()] {
            for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
                let entry = entry.map_err(io_error(&dir))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let path = entry.path();
                if name.starts_with(TEMP_PREFIX) {
                    self.remove(&path)?;
                    continue;
                }
                if dir != self.revisions_dir() {
                    continue;
                }
                let Some((number, extension)) = name.split_once('.') else {
                    continue;
                };
                let Ok(number) = number.parse::<u64>() else {
                    continue;
                };
                let number = Revision(number);
                let complete = self.text_path(number).exists() && self.meta_path(number).exists();
                if (extension == "toml" || extension == "json") && (number > running || !complete) {
                    self.remove(&path)?;
                }
            }
        }
        Ok(())
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, StoreError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(path)(error)),
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC time between years 0 and 9999 formats as RFC 3339")
}

/// A unified diff of two texts with 3 lines of context; empty when they are equal.
pub fn diff_text(old: &str, new: &str, old_label: &str, new_label: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_label, new_label)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(store: &ConfigStore) -> Vec<u64> {
        store
            .revisions()
            .unwrap()
            .iter()
            .map(|m| m.number.0)
            .collect()
    }

    #[test]
    fn empty_store_has_no_running_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConfigStore::open(dir.path(), 5).unwrap();
        assert!(store.running().unwrap().is_none());
        assert!(store.revisions().unwrap().is_empty());
        assert!(store.candidate().unwrap().is_none());
        assert!(store.pending_confirm().unwrap().is_none());
        assert_eq!(store.dir(), dir.path().join("config"));
        let mode = fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn commits_are_numbered_and_running() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ConfigStore::open(dir.path(), 5).unwrap();
        let first = store.commit("a = 1\n", "alice", "first").unwrap();
        assert_eq!(first.number, Revision(1));
        let second = store.commit("a = 2\n", "bob", "second").unwrap();
        assert_eq!(second.number, Revision(2));
        let (meta, text) = store.running().unwrap().unwrap();
        assert_eq!(meta, second);
        assert_eq!(text, "a = 2\n");
        assert_eq!(meta.author, "bob");
        assert_eq!(meta.comment, "second");
        let time =
            time::OffsetDateTime::parse(&meta.time, &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert_eq!(time.offset(), time::UtcOffset::UTC);
        assert!(meta.time.ends_with('Z'), "{}", meta.time);
        assert_eq!(numbers(&store), vec![2, 1]);
        assert_eq!(
            store.load(Revision(1)).unwrap(),
            (first, "a = 1\n".to_string())
        );
        let error = store.load(Revision(9)).unwrap_err();
        assert!(matches!(error, StoreError::NotFound(Revision(9))));
        assert_eq!(error.to_string(), "revision 9 not found");
        let mode = fs::metadata(store.text_path(Revision(1)))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn retention_prunes_oldest_and_numbers_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ConfigStore::open(dir.path(), 3).unwrap();
        for i in 1..=5 {
            store.commit(&format!("a = {i}\n"), "alice", "").unwrap();
        }
        assert_eq!(numbers(&store), vec![5, 4, 3]);
        assert!(matches!(
            store.load(Revision(1)),
            Err(StoreError::NotFound(_))
        ));
        drop(store);

        // A reopened store with a smaller retention prunes on the next commit and still
        // continues after the highest number ever used. The revision a commit replaces is
        // kept for that commit, as the rollback target of a `commit confirmed`.
        let mut store = ConfigStore::open(dir.path(), 1).unwrap();
        let meta = store.commit("a = 6\n", "alice", "").unwrap();
        assert_eq!(meta.number, Revision(6));
        assert_eq!(numbers(&store), vec![6, 5]);
        // Even if every revision file were lost, the sequence keeps numbers unique.
        for number in [5, 6] {
            fs::remove_file(store.meta_path(Revision(number))).unwrap();
            fs::remove_file(store.text_path(Revision(number))).unwrap();
        }
        fs::remove_file(store.running_path()).unwrap();
        let meta = store.commit("a = 7\n", "alice", "").unwrap();
        assert_eq!(meta.number, Revision(7));
        assert_eq!(numbers(&store), vec![7]);
    }

    #[test]
    fn pending_rollback_target_is_not_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ConfigStore::open(dir.path(), 2).unwrap();
        store.commit("a = 1\n", "alice", "").unwrap();
        let pending = PendingConfirm {
            revision: Revision(2),
            rollback_to: Revision(1),
            deadline_unix: 1_900_000_000,
        };
        store.set_pending_confirm(Some(pending.clone())).unwrap();
        for i in 2..=4 {
            store.commit(&format!("a = {i}\n"), "alice", "").unwrap();
        }
        assert_eq!(numbers(&store), vec![4, 3, 1]);
        assert_eq!(store.load(Revision(1)).unwrap().1, "a = 1\n");
        store.set_pending_confirm(None).unwrap();
        store.commit("a = 5\n", "alice", "").unwrap();
        assert_eq!(numbers(&store), vec![5, 4]);
    }

    #[test]
    fn pending_confirm_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ConfigStore::open(dir.path(), 5).unwrap();
        let pending = PendingConfirm {
            revision: Revision(3),
            rollback_to: Revision(2),
            deadline_unix: 1_700_000_600,
        };
        store.set_pending_confirm(Some(pending.clone())).unwrap();
        let store = ConfigStore::open(dir.path(), 5).unwrap();
        assert_eq!(store.pending_confirm().unwrap(), Some(pending));
        let mut store = store;
        store.set_pending_confirm(None).unwrap();
        store.set_pending_confirm(None).unwrap();
        assert_eq!(
            ConfigStore::open(dir.path(), 5)
                .unwrap()
                .pending_confirm()
                .unwrap(),
            None
        );

        fs::write(store.pending_path(), "{").unwrap();
        let error = store.pending_confirm().unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    }

    #[test]
    fn candidate_is_kept_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ConfigStore::open(dir.path(), 5).unwrap();
        store.set_candidate("a = 1\n").unwrap();
        store.commit("a = 1\n", "alice", "").unwrap();
        let mut store = ConfigStore::open(dir.path(), 5).unwrap();
        assert_eq!(store.candidate().unwrap().as_deref(), Some("a = 1\n"));
        store.clear_candidate().unwrap();
        assert!(store.candidate().unwrap().is_none());
        store.clear_candidate().unwrap();
    }

    #[test]
    fn interrupted_commit_leaves_old_revision_running() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ConfigStore::open(dir.path(), 5).unwrap();
        store.commit("a = 1\n", "alice", "").unwrap();
        // A crash after writing revision 2's files but before switching `running`, with
        // temporary files of writes in flight.
        let revisions = store.revisions_dir();
        fs::write(store.text_path(Revision(2)), "a = 2\n").unwrap();
        fs::write(store.meta_path(Revision(2)), "{\"half\":").unwrap();
        fs::write(revisions.join(".tmp-3.toml.1.0"), "a = ").unwrap();
        fs::write(store.dir().join(".tmp-running.1.1"), "3").unwrap();
        fs::write(store.sequence_path(), "3\n").unwrap();
        drop(store);

        let mut store = ConfigStore::open(dir.path(), 5).unwrap();
        let (meta, text) = store.running().unwrap().unwrap();
        assert_eq!((meta.number, text.as_str()), (Revision(1), "a = 1\n"));
        assert_eq!(numbers(&store), vec![1]);
        let mut left: Vec<String> = fs::read_dir(&revisions)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec!["1.json", "1.toml"]);
        assert!(!store.dir().join(".tmp-running.1.1").exists());
        // Number 3 was allocated before the crash, so the next commit is 4.
        assert_eq!(
            store.commit("a = 4\n", "alice", "").unwrap().number,
            Revision(4)
        );
    }

    #[test]
    fn corrupt_running_pointer_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConfigStore::open(dir.path(), 5).unwrap();
        fs::write(store.running_path(), "seven").unwrap();
        let error = store.running().unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("running: corrupt: \"seven\" is not a revision number"),
            "{error}"
        );
    }

    #[test]
    fn atomic_write_replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        atomic_write(&path, b"one", 0o640).unwrap();
        atomic_write(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let entries = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 1, "no temporary files are left");
        let error = atomic_write(&dir.path().join("missing/x"), b"", 0o600).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn diff_is_unified_and_empty_when_equal() {
        assert_eq!(diff_text("a\n", "a\n", "running", "candidate"), "");
        let diff = diff_text(
            "a = 1\nb = 2\n",
            "a = 1\nb = 3\n",
            "revision 1",
            "candidate",
        );
        assert_eq!(
            diff,
            "--- revision 1\n+++ candidate\n@@ -1,2 +1,2 @@\n a = 1\n-b = 2\n+b = 3\n"
        );
    }
}
