//! The update service: signed A/B updates of the whole inactive slot, pushed
//! (`POST /api/v1/system/update`) or pulled ([`pull`]), with progress, history, the slots'
//! state and manual rollback.
//!
//! The write path, in this order (docs/update.md, "Pushing an update"):
//!
//! ```text
//!  body ──channel──▶ BundleReader::open (signatures) ─▶ version policy ─▶ kernel + initramfs
//!  to <state>/update/staging ─▶ root into memory (size, sha256; nothing may follow it) ─▶
//!  state.json: slot "being written" ─▶ root ──▶ inactive root partition at disk speed ─▶
//!  re-read + sha256 ─▶ ESP: slots::install_trial ─▶ history "written" ─▶ reboot now / at a
//!  time / not at all
//! ```
//!
//! A root larger than the memory budget ([`root_memory_budget`]) is streamed instead: the
//! slot is marked "being written" first and the root goes to the partition as it arrives,
//! hashed on the way. Nothing touches the ESP before the root is written and verified, so
//! any failure before that leaves it byte-for-byte as it was; the active slot's partition and
//! entry and the bootloader are never written. One update (or rollback) runs at a time.
//!
//! - [`history`]: the persisted event history; [`state`]: what the ESP does not say (slots
//!   being written or overwritten, the device id, boot assessments already recorded).
//! - [`writer`]: streams the root image into the partition and re-reads it.
//! - [`schedule`]: when pull mode checks its server (spread, maintenance window); [`pull`]:
//!   the index, the download and the periodic task.

pub mod history;
pub mod pull;
pub mod schedule;
pub mod state;
#[cfg(test)]
pub(crate) mod tests;
pub mod writer;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use ztos_image::bundle::{BundleError, BundleReader, Manifest};
use ztos_image::esp_mount::{EspMount, EspMountError};
use ztos_image::layout::{Slot, SlotLayout, CMDLINE_SLOT};
use ztos_image::slots::{self, SlotError, SlotStatus, DEFAULT_TRIES, MAX_TRIES};
use ztos_image::trust::TrustStore;
use ztos_image::version::{check_update, Version};
use ztos_model::init::AssessmentState;

use crate::init_client::{BootAssessment, InitClient, Shutdown};
use history::{entry_now, now_rfc3339, History, HistoryEntry, UpdateEvent};
use state::{SlotRecord, UpdateState};

/// Where the public keys that may sign bundles are, in the root filesystem.
pub const DEFAULT_TRUST_DIR: &str = "/etc/ztos/trust";

/// How long an upload may stall (no byte arriving) before it counts as cut off.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The kind of error [`ChannelReader`] reports when the upload or download itself failed
/// (the client went away, the connection broke): the client's problem, not the disk's.
const UPLOAD_FAILED: io::ErrorKind = io::ErrorKind::ConnectionAborted;

/// Body chunks buffered between the network and the writing thread.
const CHANNEL_CHUNKS: usize = 64;

/// The largest root image received whole into memory when no budget is configured, whatever
/// the machine's memory.
pub const ROOT_IN_MEMORY_DEFAULT_CAP: u64 = 1 << 30;

/// How many bytes of root image may be received whole into memory before it is written:
/// `configured_mib` MiB when set (0: always stream), otherwise a quarter of MemAvailable in
/// /proc/meminfo, at most [`ROOT_IN_MEMORY_DEFAULT_CAP`] (0 when /proc/meminfo cannot be
/// read: stream).
pub fn root_memory_budget(configured_mib: Option<u32>) -> u64 {
    match configured_mib {
        Some(mib) => u64::from(mib) << 20,
        None => match std::fs::read_to_string("/proc/meminfo") {
            Ok(text) => budget_from_meminfo(&text).unwrap_or_else(|| {
                tracing::warn!("update: no MemAvailable in /proc/meminfo; the root is streamed");
                0
            }),
            Err(err) => {
                tracing::warn!("update: reading /proc/meminfo: {err}; the root is streamed");
                0
            }
        },
    }
}

/// A quarter of MemAvailable (`MemAvailable:  123456 kB`), capped.
fn budget_from_meminfo(meminfo: &str) -> Option<u64> {
    let kib: u64 = meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemAvailable:")?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })?;
    Some((kib.saturating_mul(1024) / 4).min(ROOT_IN_MEMORY_DEFAULT_CAP))
}

/// How an update reaches the disk.
#[derive(Debug, Clone)]
pub enum DiskAccess {
    /// The appliance: root partitions by GPT label (`ztos-root-a`, `ztos-root-b`), the ESP
    /// mounted under /run/ztos while it is written.
    Appliance,
    /// Plain files as root partitions and a directory as the ESP (tests, development).
    Paths {
        root_a: PathBuf,
        root_b: PathBuf,
        esp_dir: PathBuf,
    },
}

/// How to build the service.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// ztosd's state directory; the updater keeps its files in `update/` inside it.
    pub state_dir: PathBuf,
    /// Public keys trusted to sign bundles ([`DEFAULT_TRUST_DIR`]).
    pub trust_dir: PathBuf,
    pub disk: DiskAccess,
    /// The running slot; `None` reads `ztos.slot=` from /proc/cmdline.
    pub booted_slot: Option<Slot>,
    /// The running version; `None` reads VERSION_ID from /etc/os-release.
    pub current_version: Option<String>,
}

impl UpdateOptions {
    /// The appliance's settings.
    pub fn appliance(state_dir: &Path) -> UpdateOptions {
        UpdateOptions {
            state_dir: state_dir.to_path_buf(),
            trust_dir: PathBuf::from(DEFAULT_TRUST_DIR),
            disk: DiskAccess::Appliance,
            booted_slot: None,
            current_version: None,
        }
    }
}

/// Update progress: API answers (`ztos_model::api::update`).
pub use ztos_model::api::update::{UpdatePhase, UpdateProgress};

/// When to reboot into a written update; shared with the CLI, which checks the option first.
pub use ztos_model::api::update::RebootWhen;

/// One update asked for.
#[derive(Debug, Clone)]
pub struct UpdateRequest {
    pub allow_downgrade: bool,
    pub reboot: RebootWhen,
    /// Boot tries the new slot gets to prove itself (1 to 10).
    pub tries: u32,
    /// Where the bundle comes from, for the history (`upload by admin`, a URL).
    pub source: String,
    /// The upload's Content-Length, when known (for progress only).
    pub expected_bytes: Option<u64>,
    /// `system.update.root_in_memory_max_mib`: the largest root image received whole before
    /// it is written, in MiB (0: always stream); `None`: the default ([`root_memory_budget`]).
    pub root_in_memory_max_mib: Option<u32>,
}

impl UpdateRequest {
    pub fn new(source: impl Into<String>) -> UpdateRequest {
        UpdateRequest {
            allow_downgrade: false,
            reboot: RebootWhen::Now,
            tries: DEFAULT_TRIES,
            source: source.into(),
            expected_bytes: None,
            root_in_memory_max_mib: None,
        }
    }
}

impl UpdateRequest {
    /// The options' ranges: tries 1 to 10, a reboot time in the future.
    pub fn check(&self) -> Result<(), UpdateError> {
        if !(1..=MAX_TRIES).contains(&self.tries) {
            return Err(UpdateError::BadRequest(format!(
                "tries must be between 1 and {MAX_TRIES}, not {}",
                self.tries
            )));
        }
        if let RebootWhen::At(time) = self.reboot {
            if time <= OffsetDateTime::now_utc() {
                return Err(UpdateError::BadRequest(format!(
                    "reboot time {} is in the past",
                    time.format(&Rfc3339).unwrap_or_default()
                )));
            }
        }
        Ok(())
    }
}

/// What a successful update did: an API answer (`ztos_model::api::update`).
pub use ztos_model::api::update::UpdateOutcome;

/// Why an update, or a rollback, did not happen. Each variant is one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// 409: another update or rollback runs.
    #[error("{0}")]
    Busy(String),
    /// 422: the bundle was refused: signatures, version policy, hashes, sizes.
    #[error("{0}")]
    Rejected(String),
    /// 400: the upload ended before the bundle did, or a request option is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 409: a rollback the slots' state does not allow.
    #[error("{0}")]
    Refused(String),
    /// 503: this box cannot be updated as it is (no slot on the kernel command line, no
    /// trust store, no ESP).
    #[error("{0}")]
    Unavailable(String),
    /// 500: writing failed (I/O). The message is in the history and the logs.
    #[error("{0}")]
    Failed(String),
}

impl UpdateError {
    fn from_bundle(err: BundleError) -> UpdateError {
        match err {
            BundleError::Truncated { .. } | BundleError::TruncatedHeader { .. } => {
                UpdateError::BadRequest(err.to_string())
            }
            BundleError::Read { ref source, .. } if source.kind() == UPLOAD_FAILED => {
                UpdateError::BadRequest(err.to_string())
            }
            BundleError::Read { .. } | BundleError::Write(_) => {
                UpdateError::Failed(err.to_string())
            }
            _ => UpdateError::Rejected(err.to_string()),
        }
    }

    fn from_io(context: &str, err: io::Error) -> UpdateError {
        match BundleError::from_io(&err) {
            Some(BundleError::Truncated { .. }) => UpdateError::BadRequest(err.to_string()),
            _ if err.kind() == UPLOAD_FAILED => UpdateError::BadRequest(err.to_string()),
            Some(BundleError::Read { source, .. }) if source.kind() == UPLOAD_FAILED => {
                UpdateError::BadRequest(err.to_string())
            }
            Some(BundleError::Read { .. }) | None => {
                UpdateError::Failed(format!("{context}: {err}"))
            }
            Some(_) => UpdateError::Rejected(err.to_string()),
        }
    }

    fn from_write(err: writer::WriteError) -> UpdateError {
        match err {
            writer::WriteError::Source(io) => UpdateError::from_io("reading the root image", io),
            writer::WriteError::DoesNotFit { .. } => UpdateError::Rejected(err.to_string()),
            writer::WriteError::Short { .. } => UpdateError::BadRequest(err.to_string()),
            other => UpdateError::Failed(other.to_string()),
        }
    }

    fn history_event(&self) -> UpdateEvent {
        match self {
            UpdateError::Rejected(_) | UpdateError::BadRequest(_) => UpdateEvent::Rejected,
            _ => UpdateEvent::Failed,
        }
    }
}

/// The slots and a rollback: API answers (`ztos_model::api::update`).
pub use ztos_model::api::update::{RollbackOutcome, SlotView, SlotsView};

/// Held while an update or rollback runs; dropping it frees the service.
#[derive(Debug)]
pub struct UpdateTicket {
    busy: Arc<AtomicBool>,
}

impl Drop for UpdateTicket {
    fn drop(&mut self) {
        self.busy.store(false, Ordering::Release);
    }
}

/// The update service. Cheap to clone.
#[derive(Clone)]
pub struct UpdateService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for UpdateService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateService")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    options: UpdateOptions,
    /// `<state>/update`.
    dir: PathBuf,
    init: InitClient,
    busy: Arc<AtomicBool>,
    progress: StdMutex<UpdateProgress>,
    history: StdMutex<History>,
    state: StdMutex<UpdateState>,
    /// The last boot assessment init gave.
    boot: StdMutex<Option<BootAssessment>>,
    /// A reboot scheduled for later by the last update.
    scheduled_reboot: StdMutex<Option<tokio::task::JoinHandle<()>>>,
    /// Pull mode's last and next check, while it is configured.
    pull: StdMutex<Option<pull::PullStatus>>,
}

impl UpdateService {
    /// Opens the updater's files under `<state>/update`. Settles what a previous run left:
    /// a slot marked as being written is marked overwritten (and the history says so), the
    /// staging directory is removed. A corrupt history or state file is set aside (renamed
    /// `.corrupt`) and logged, never a reason not to start.
    pub fn new(options: UpdateOptions, init: InitClient) -> io::Result<UpdateService> {
        let dir = options.state_dir.join("update");
        std::fs::create_dir_all(&dir)?;
        let history_path = dir.join("history.json");
        let mut history = History::load(&history_path).unwrap_or_else(|err| {
            tracing::error!("update: {err}; starting a new history");
            let _ = std::fs::rename(&history_path, dir.join("history.json.corrupt"));
            History::empty(&history_path)
        });
        let state_path = dir.join("state.json");
        let mut state = UpdateState::load(&state_path).unwrap_or_else(|err| {
            tracing::error!("update: {err}; starting afresh");
            let _ = std::fs::rename(&state_path, dir.join("state.json.corrupt"));
            UpdateState {
                device_id: hex::encode(rand::random::<[u8; 16]>()),
                ..UpdateState::default()
            }
        });
        for slot in state.settle_interrupted_writes() {
            let entry = entry_now(
                UpdateEvent::Failed,
                "interrupted while writing the root (power cut or crash); the running slot was not touched",
            )
            .slot(slot.letter());
            if let Err(err) = history.record(entry) {
                tracing::error!("update: {err}");
            }
        }
        if let Err(err) = state.save(&state_path) {
            tracing::error!("update: {err}");
        }
        let staging = dir.join("staging");
        if staging.exists() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Ok(UpdateService {
            inner: Arc::new(Inner {
                options,
                dir,
                init,
                busy: Arc::new(AtomicBool::new(false)),
                progress: StdMutex::new(UpdateProgress::idle()),
                history: StdMutex::new(history),
                state: StdMutex::new(state),
                boot: StdMutex::new(None),
                scheduled_reboot: StdMutex::new(None),
                pull: StdMutex::new(None),
            }),
        })
    }

    /// Claims the service for one update or rollback; 409 while another runs.
    pub fn try_begin(&self) -> Result<UpdateTicket, UpdateError> {
        if self
            .inner
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            let progress = self.progress();
            return Err(UpdateError::Busy(format!(
                "an update is already running ({}{}); wait for it to finish",
                serde_json::to_value(progress.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                progress
                    .version
                    .map(|v| format!(", version {v}"))
                    .unwrap_or_default()
            )));
        }
        Ok(UpdateTicket {
            busy: self.inner.busy.clone(),
        })
    }

    pub fn progress(&self) -> UpdateProgress {
        lock(&self.inner.progress).clone()
    }

    /// Oldest first.
    pub fn history(&self) -> Vec<HistoryEntry> {
        lock(&self.inner.history).entries().to_vec()
    }

    /// The device id pull mode spreads its checks with.
    pub fn device_id(&self) -> String {
        lock(&self.inner.state).device_id.clone()
    }

    /// The version running now.
    pub fn current_version(&self) -> String {
        if let Some(version) = &self.inner.options.current_version {
            return version.clone();
        }
        std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|line| {
                    line.strip_prefix("VERSION_ID=")
                        .map(|v| v.trim_matches('"').to_string())
                })
            })
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
    }

    /// The running slot.
    pub fn booted_slot(&self) -> Result<Slot, UpdateError> {
        if let Some(slot) = self.inner.options.booted_slot {
            return Ok(slot);
        }
        let cmdline = std::fs::read_to_string("/proc/cmdline")
            .map_err(|err| UpdateError::Unavailable(format!("reading /proc/cmdline: {err}")))?;
        let prefix = format!("{CMDLINE_SLOT}=");
        cmdline
            .split_whitespace()
            .find_map(|word| word.strip_prefix(&prefix).and_then(Slot::parse))
            .ok_or_else(|| {
                UpdateError::Unavailable(format!(
                    "cannot tell which slot is running: no {CMDLINE_SLOT}=a|b on the kernel command line (is this the ZTOS appliance?)"
                ))
            })
    }

    /// "rolled back from <version>" when init says this boot is a rollback.
    pub fn rollback_notice(&self) -> Option<String> {
        let boot = lock(&self.inner.boot).clone()?;
        if boot.state != AssessmentState::RolledBack {
            return None;
        }
        Some(match boot.rolled_back_from {
            Some(version) => format!("rolled back from {version}"),
            None => "rolled back".to_string(),
        })
    }

    fn record(&self, entry: HistoryEntry) {
        let line = format!(
            "update: {}{}{}{}",
            serde_json::to_value(entry.event)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            entry
                .version
                .as_deref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default(),
            entry
                .slot
                .as_deref()
                .map(|s| format!(" (slot {s})"))
                .unwrap_or_default(),
            if entry.message.is_empty() {
                String::new()
            } else {
                format!(": {}", entry.message)
            }
        );
        match entry.event {
            UpdateEvent::Rejected | UpdateEvent::Failed | UpdateEvent::RolledBack => {
                tracing::warn!("{line}")
            }
            _ => tracing::info!("{line}"),
        }
        if let Err(err) = lock(&self.inner.history).record(entry) {
            tracing::error!("update: {err}");
        }
    }

    fn set_progress(&self, change: impl FnOnce(&mut UpdateProgress)) {
        change(&mut lock(&self.inner.progress));
    }

    fn save_state(&self, change: impl FnOnce(&mut UpdateState)) -> Result<(), UpdateError> {
        let mut state = lock(&self.inner.state);
        change(&mut state);
        state
            .save(&self.inner.dir.join("state.json"))
            .map_err(|err| UpdateError::Failed(err.to_string()))
    }

    /// Runs one update from a stream of body chunks (an upload or a download): the bundle is
    /// passed through a bounded channel to a blocking thread that verifies and writes it, so
    /// it is never held whole in memory. On a refusal the rest of the stream is read and
    /// dropped (bounded by the same limits), so the client sees the answer rather than a
    /// connection reset.
    pub async fn update_from_stream<S>(
        &self,
        ticket: UpdateTicket,
        mut body: S,
        request: UpdateRequest,
    ) -> Result<UpdateOutcome, UpdateError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Unpin + Send,
    {
        request.check()?;
        let started = now_rfc3339();
        self.set_progress(|p| {
            *p = UpdateProgress {
                state: UpdatePhase::Receiving,
                bytes_total: request.expected_bytes.unwrap_or(0),
                started: Some(started.clone()),
                source: Some(request.source.clone()),
                ..UpdateProgress::idle()
            }
        });
        self.record(entry_now(UpdateEvent::Started, request.source.clone()));
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
        let service = self.clone();
        let blocking_request = request.clone();
        let mut writer = tokio::task::spawn_blocking(move || {
            let mut source = ChannelReader::new(rx);
            service.write_bundle(&mut source, &blocking_request)
        });
        // Feed the writer until the body ends or the writer stops taking chunks.
        let mut received = 0u64;
        let mut writer_result = None;
        let mut tx = Some(tx);
        loop {
            let next = tokio::select! {
                result = &mut writer, if writer_result.is_none() => {
                    writer_result = Some(result);
                    tx = None;
                    continue;
                }
                next = tokio::time::timeout(STALL_TIMEOUT, body.next()) => next,
            };
            let chunk = match next {
                Err(_) => Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no data for {} s", STALL_TIMEOUT.as_secs()),
                ))),
                Ok(chunk) => chunk,
            };
            let Some(chunk) = chunk else { break };
            let failed = chunk.is_err();
            if let Ok(bytes) = &chunk {
                received += bytes.len() as u64;
                self.set_progress(|p| p.bytes_received = received);
            }
            match &tx {
                Some(sender) if sender.send(chunk).await.is_err() => tx = None,
                Some(_) => {}
                // The writer is done (it refused the bundle): drop the rest, bounded.
                None if received > drain_limit() => break,
                None => {}
            }
            if failed {
                break;
            }
        }
        drop(tx);
        let result = match writer_result {
            Some(result) => result,
            None => writer.await,
        };
        let result = result.unwrap_or_else(|join| {
            Err(UpdateError::Failed(format!(
                "the update thread failed: {join}"
            )))
        });
        let staging = self.inner.dir.join("staging");
        let _ = std::fs::remove_dir_all(&staging);
        let written = match result {
            Ok(written) => written,
            Err(err) => {
                let message = err.to_string();
                let version = self.progress().version;
                let slot = self.progress().slot;
                let mut entry = entry_now(err.history_event(), message.clone());
                entry.version = version;
                entry.slot = slot;
                self.record(entry);
                self.set_progress(|p| {
                    p.state = UpdatePhase::Failed;
                    p.message = message;
                });
                drop(ticket);
                return Err(err);
            }
        };
        self.record(
            entry_now(
                UpdateEvent::Written,
                format!(
                    "boot entry {}; root image {:.1} MiB {} in {:.2} s",
                    written.entry,
                    written.root_bytes as f64 / 1_048_576.0,
                    if written.root_streamed {
                        "streamed into the slot"
                    } else {
                        "received, then written"
                    },
                    written.root_write_seconds
                ),
            )
            .version(written.version.clone())
            .slot(written.slot.letter()),
        );
        let reboot = self.after_write(&written, request.reboot).await;
        drop(ticket);
        Ok(UpdateOutcome {
            version: written.version,
            slot: written.slot.letter().to_string(),
            entry: written.entry,
            reboot,
            root_bytes: written.root_bytes,
            root_write_seconds: written.root_write_seconds,
            root_streamed: written.root_streamed,
        })
    }

    /// Reboots now, schedules the reboot, or leaves it; returns what was done.
    async fn after_write(&self, written: &Written, when: RebootWhen) -> String {
        if let Some(handle) = lock(&self.inner.scheduled_reboot).take() {
            handle.abort();
        }
        match when {
            RebootWhen::Never => {
                self.set_progress(|p| {
                    p.state = UpdatePhase::Written;
                    p.message = format!(
                        "{} is written to slot {}; it boots at the next reboot",
                        written.version, written.slot
                    );
                });
                "never".to_string()
            }
            RebootWhen::Now => {
                self.reboot_into(
                    written.version.clone(),
                    written.slot,
                    Duration::from_secs(1),
                );
                "now".to_string()
            }
            RebootWhen::At(time) => {
                let text = time.format(&Rfc3339).unwrap_or_default();
                self.set_progress(|p| {
                    p.state = UpdatePhase::Written;
                    p.message = format!(
                        "{} is written to slot {}; reboot scheduled at {text}",
                        written.version, written.slot
                    );
                });
                let wait = (time - OffsetDateTime::now_utc())
                    .try_into()
                    .unwrap_or(Duration::ZERO);
                self.reboot_into(written.version.clone(), written.slot, wait);
                text
            }
        }
    }

    /// Asks init to reboot after `delay` (a moment for the HTTP answer to leave, or the
    /// scheduled time), recording it in the history.
    fn reboot_into(&self, version: String, slot: Slot, delay: Duration) {
        let service = self.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            service.set_progress(|p| {
                p.state = UpdatePhase::Rebooting;
                p.message = format!("rebooting into {version} (slot {slot})");
            });
            service.record(
                entry_now(UpdateEvent::Rebooted, "reboot asked of ztos-init")
                    .version(version.clone())
                    .slot(slot.letter()),
            );
            if let Err(err) = service.inner.init.shutdown(Shutdown::Reboot).await {
                let message =
                    format!("the reboot failed: {err}; {version} boots at the next reboot");
                tracing::error!("update: {message}");
                service.set_progress(|p| {
                    p.state = UpdatePhase::Written;
                    p.message = message;
                });
            }
        });
        *lock(&self.inner.scheduled_reboot) = Some(handle);
    }

    /// The blocking write path (module documentation). `source` yields the bundle.
    fn write_bundle(
        &self,
        source: &mut dyn Read,
        request: &UpdateRequest,
    ) -> Result<Written, UpdateError> {
        let trust = TrustStore::load_dir(&self.inner.options.trust_dir)
            .map_err(|err| UpdateError::Unavailable(format!("trust store: {err}")))?;
        let booted = self.booted_slot()?;
        let target = booted.other();
        let current_text = self.current_version();
        let current = Version::parse(&current_text)
            .map_err(|err| UpdateError::Unavailable(format!("the running version: {err}")))?;
        let mut bundle = BundleReader::open(source, &trust).map_err(UpdateError::from_bundle)?;
        let manifest: Manifest = bundle.manifest().clone();
        let version = manifest.version.to_string();
        self.set_progress(|p| {
            p.state = UpdatePhase::Verifying;
            p.version = Some(version.clone());
            p.slot = Some(target.letter().to_string());
        });
        check_update(&current, &manifest, request.allow_downgrade)
            .map_err(|err| UpdateError::Rejected(err.to_string()))?;
        let root_target = self.root_partition(target)?;
        let capacity = writer::capacity(&root_target).map_err(UpdateError::from_write)?;
        if manifest.root.size > capacity {
            return Err(UpdateError::Rejected(
                writer::WriteError::DoesNotFit {
                    target: root_target,
                    size: manifest.root.size,
                    capacity,
                }
                .to_string(),
            ));
        }

        // Kernel and initramfs to staging: the reader checks their size and sha256.
        let staging = self.inner.dir.join("staging");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .map_err(|err| UpdateError::Failed(format!("creating {}: {err}", staging.display())))?;
        let kernel = staging.join("vmlinuz");
        let initramfs = staging.join("initramfs");
        for path in [&kernel, &initramfs] {
            let mut artifact = bundle
                .next_artifact()
                .map_err(UpdateError::from_bundle)?
                .ok_or_else(|| {
                    UpdateError::Rejected("the bundle ends before its root image".into())
                })?;
            let what = artifact.kind().to_string();
            let mut file = File::create(path).map_err(|err| {
                UpdateError::Failed(format!("creating {}: {err}", path.display()))
            })?;
            io::copy(&mut artifact, &mut file)
                .map_err(|err| UpdateError::from_io(&format!("staging the {what}"), err))?;
            file.sync_all()
                .map_err(|err| UpdateError::Failed(format!("syncing {}: {err}", path.display())))?;
        }

        // The root whole into memory when it fits the budget: received, its size and sha256
        // checked, and the end of the bundle reached before the slot is touched.
        let budget = root_memory_budget(request.root_in_memory_max_mib);
        let in_memory = if manifest.root.size <= budget {
            match writer::RootInMemory::reserve(manifest.root.size) {
                Ok(image) => Some(image),
                Err(err) => {
                    tracing::warn!("update: {err}; streaming the root into the slot instead");
                    None
                }
            }
        } else {
            None
        };
        let root_streamed = in_memory.is_none();
        let root = match in_memory {
            Some(image) => RootSource::Memory(self.receive_root(bundle, image, &manifest)?),
            None => RootSource::Stream(Box::new(bundle)),
        };

        // From here the root partition changes: say so first.
        self.save_state(|state| {
            state.slots.insert(
                target,
                SlotRecord::BeingWritten {
                    version: version.clone(),
                    since: now_rfc3339(),
                },
            );
        })?;
        let result = match root {
            RootSource::Memory(image) => self.write_root_from_memory(&image, &root_target),
            RootSource::Stream(bundle) => {
                self.write_root_streamed(*bundle, &manifest, &root_target)
            }
        }
        .and_then(|seconds| {
            self.check_root(&manifest, &root_target)?;
            Ok(seconds)
        });
        let root_write_seconds = match result {
            Ok(seconds) => seconds,
            Err(err) => {
                let reason = err.to_string();
                let _ = self.save_state(|state| {
                    state.slots.insert(
                        target,
                        SlotRecord::Overwritten {
                            version: version.clone(),
                            reason,
                        },
                    );
                });
                return Err(err);
            }
        };

        // Only now the ESP.
        self.set_progress(|p| {
            p.state = UpdatePhase::WritingBoot;
            p.bytes_done = 0;
            p.bytes_total = 0;
        });
        let entry = self
            .with_esp(|esp| {
                slots::install_trial(
                    esp,
                    booted,
                    target,
                    &version,
                    &kernel,
                    &initramfs,
                    request.tries,
                )
            })
            .inspect_err(|err| {
                let reason = err.to_string();
                let _ = self.save_state(|state| {
                    state.slots.insert(
                        target,
                        SlotRecord::Overwritten {
                            version: version.clone(),
                            reason,
                        },
                    );
                });
            })?;
        self.save_state(|state| {
            state.slots.insert(
                target,
                SlotRecord::Written {
                    version: version.clone(),
                    since: now_rfc3339(),
                },
            );
        })?;
        Ok(Written {
            version,
            slot: target,
            entry: entry.file_name(),
            root_bytes: manifest.root.size,
            root_write_seconds,
            root_streamed,
        })
    }

    /// Receives the root image whole into `image` (the artifact reader checks its size and
    /// sha256) and makes sure nothing follows it in the bundle. Nothing is written.
    fn receive_root<R: Read>(
        &self,
        mut bundle: BundleReader<R>,
        mut image: writer::RootInMemory,
        manifest: &Manifest,
    ) -> Result<writer::RootInMemory, UpdateError> {
        self.set_progress(|p| {
            p.state = UpdatePhase::ReceivingRoot;
            p.bytes_done = 0;
            p.bytes_total = manifest.root.size;
        });
        {
            let mut root = bundle
                .next_artifact()
                .map_err(UpdateError::from_bundle)?
                .ok_or_else(|| UpdateError::Rejected("the bundle has no root image".into()))?;
            let service = self.clone();
            image
                .receive(&mut root, &move |done| {
                    service.set_progress(|p| p.bytes_done = done)
                })
                .map_err(UpdateError::from_write)?;
        }
        bundle.finish().map_err(UpdateError::from_bundle)?;
        Ok(image)
    }

    /// Writes a root received whole into the partition; returns the seconds from the first
    /// byte written to the data synced.
    fn write_root_from_memory(
        &self,
        image: &writer::RootInMemory,
        target: &Path,
    ) -> Result<f64, UpdateError> {
        self.set_progress(|p| {
            p.state = UpdatePhase::WritingRoot;
            p.bytes_done = 0;
            p.bytes_total = image.len();
        });
        let service = self.clone();
        let started = std::time::Instant::now();
        writer::write_root_from_memory(image, target, &move |done| {
            service.set_progress(|p| p.bytes_done = done)
        })
        .map_err(UpdateError::from_write)?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// Streams the root into the partition as it arrives, then makes sure nothing follows it
    /// in the bundle; returns the seconds from the start of the write (which waits for the
    /// network) to the data synced.
    fn write_root_streamed<R: Read>(
        &self,
        mut bundle: BundleReader<R>,
        manifest: &Manifest,
        target: &Path,
    ) -> Result<f64, UpdateError> {
        let size = manifest.root.size;
        self.set_progress(|p| {
            p.state = UpdatePhase::WritingRoot;
            p.bytes_done = 0;
            p.bytes_total = size;
        });
        let started = std::time::Instant::now();
        {
            let mut root = bundle
                .next_artifact()
                .map_err(UpdateError::from_bundle)?
                .ok_or_else(|| UpdateError::Rejected("the bundle has no root image".into()))?;
            let service = self.clone();
            writer::write_root(&mut root, target, size, &move |done| {
                service.set_progress(|p| p.bytes_done = done)
            })
            .map_err(UpdateError::from_write)?;
        }
        let write_seconds = started.elapsed().as_secs_f64();
        bundle.finish().map_err(UpdateError::from_bundle)?;
        Ok(write_seconds)
    }

    /// Re-reads the written root from the disk and compares its sha256 with the manifest's.
    fn check_root(&self, manifest: &Manifest, target: &Path) -> Result<(), UpdateError> {
        let size = manifest.root.size;
        self.set_progress(|p| {
            p.state = UpdatePhase::Checking;
            p.bytes_done = 0;
        });
        let service = self.clone();
        writer::verify_root(
            target,
            size,
            &hex::encode(manifest.root.sha256),
            &move |done| service.set_progress(|p| p.bytes_done = done),
        )
        .map_err(UpdateError::from_write)
    }

    /// The device node (or file) of `slot`'s root partition.
    fn root_partition(&self, slot: Slot) -> Result<PathBuf, UpdateError> {
        match &self.inner.options.disk {
            DiskAccess::Paths { root_a, root_b, .. } => Ok(match slot {
                Slot::A => root_a.clone(),
                Slot::B => root_b.clone(),
            }),
            DiskAccess::Appliance => {
                let found = ztos_image::esp_mount::find_partitions(
                    Path::new(ztos_image::esp_mount::SYS_CLASS_BLOCK),
                    slot.root_label(),
                )
                .map_err(|err| UpdateError::Unavailable(err.to_string()))?;
                match found.as_slice() {
                    [one] => Ok(one.clone()),
                    [] => Err(UpdateError::Unavailable(format!(
                        "no partition labelled {} on this machine",
                        slot.root_label()
                    ))),
                    several => Err(UpdateError::Unavailable(format!(
                        "{} partitions are labelled {} ({}); refusing to guess which one to write",
                        several.len(),
                        slot.root_label(),
                        several
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))),
                }
            }
        }
    }

    /// Runs `f` on the ESP's root directory, locked (and mounted on the appliance).
    fn with_esp<T>(&self, f: impl FnOnce(&Path) -> Result<T, SlotError>) -> Result<T, UpdateError> {
        let esp = match &self.inner.options.disk {
            DiskAccess::Appliance => EspMount::mount(),
            DiskAccess::Paths { esp_dir, .. } => EspMount::lock_dir(
                esp_dir,
                &self.inner.dir.join("esp.lock"),
                ztos_image::esp_mount::DEFAULT_LOCK_TIMEOUT,
            ),
        }
        .map_err(|err: EspMountError| UpdateError::Unavailable(format!("the ESP: {err}")))?;
        let result = f(esp.path()).map_err(|err| match err {
            SlotError::NoEntry { .. } | SlotError::Bad { .. } | SlotError::Booted { .. } => {
                UpdateError::Refused(err.to_string())
            }
            SlotError::Tries { .. } | SlotError::Version { .. } => {
                UpdateError::Rejected(err.to_string())
            }
            other => UpdateError::Failed(format!("the ESP: {other}")),
        });
        if let Err(err) = esp.unmount() {
            tracing::warn!("update: unmounting the ESP: {err}");
        }
        result
    }

    /// Both slots as the ESP and the updater's state describe them.
    pub async fn slots(&self) -> Result<SlotsView, UpdateError> {
        let service = self.clone();
        let boot_state =
            tokio::task::spawn_blocking(move || service.with_esp(slots::read_boot_state))
                .await
                .map_err(|err| UpdateError::Failed(format!("reading the ESP: {err}")))??;
        let booted = self.booted_slot().ok();
        let next = boot_state.next_boot();
        let state = lock(&self.inner.state).clone();
        let slots = [Slot::A, Slot::B]
            .into_iter()
            .map(|slot| {
                let described = boot_state.slot(slot);
                let record = state.slots.get(&slot);
                SlotView {
                    slot: slot.letter().to_string(),
                    version: described.version.clone(),
                    status: described.status.as_str().to_string(),
                    tries_left: match described.status {
                        SlotStatus::Trial { left, .. } => Some(left),
                        _ => None,
                    },
                    entry: described.entry.map(|e| e.file_name()),
                    active: booted == Some(slot),
                    next_boot: next == Some(slot),
                    root: record.map(|r| match r {
                        SlotRecord::BeingWritten { .. } => "being-written".to_string(),
                        SlotRecord::Overwritten { .. } => "overwritten".to_string(),
                        SlotRecord::Written { .. } => "written".to_string(),
                    }),
                    unavailable: if booted == Some(slot) {
                        None
                    } else {
                        rollback_refusal(&state, slot, &described.status)
                    },
                }
            })
            .collect();
        Ok(SlotsView {
            slots,
            booted: booted.map(|s| s.letter().to_string()),
            next_boot: next.map(|s| s.letter().to_string()),
            current_version: self.current_version(),
            boot: lock(&self.inner.boot).clone(),
        })
    }

    /// Switches to the other slot by hand (its entry first in systemd-boot's order, without a
    /// counter: it booted before), and reboots unless `reboot` is false. Refused when the other
    /// slot is bad, has no entry, or its root was overwritten by an update that did not
    /// finish.
    pub async fn rollback(
        &self,
        ticket: UpdateTicket,
        author: &str,
        reboot: bool,
    ) -> Result<RollbackOutcome, UpdateError> {
        let booted = self.booted_slot()?;
        let other = booted.other();
        if let Some(reason) = lock(&self.inner.state).refuse_reason(other) {
            return Err(UpdateError::Refused(format!(
                "cannot switch to slot {other}: {reason}"
            )));
        }
        let service = self.clone();
        let (entry, version) = tokio::task::spawn_blocking(move || {
            service.with_esp(|esp| {
                let state = slots::read_boot_state(esp)?;
                let version = state.slot(other).version.clone();
                // A slot still on trial keeps proving itself; a good one is trusted as is.
                let tries = match state.slot(other).status {
                    SlotStatus::Trial { left, .. } => Some(left),
                    _ => None,
                };
                let entry = slots::prefer(esp, other, tries)?;
                Ok((entry, version))
            })
        })
        .await
        .map_err(|err| UpdateError::Failed(format!("writing the ESP: {err}")))?
        .map_err(|err| match err {
            UpdateError::Refused(reason) => {
                UpdateError::Refused(format!("cannot switch to slot {other}: {reason}"))
            }
            other => other,
        })?;
        let mut history = entry_now(
            UpdateEvent::ManualRollback,
            format!("switched to slot {other} by {author}"),
        )
        .slot(other.letter());
        history.version = version.clone();
        self.record(history);
        drop(ticket);
        if reboot {
            if let Some(handle) = lock(&self.inner.scheduled_reboot).take() {
                handle.abort();
            }
            self.inner
                .init
                .shutdown(Shutdown::Reboot)
                .await
                .map_err(|err| {
                    UpdateError::Unavailable(format!(
                        "slot {other} boots next, but the reboot failed: {err}"
                    ))
                })?;
        }
        Ok(RollbackOutcome {
            slot: other.letter().to_string(),
            version,
            entry: entry.file_name(),
            rebooting: reboot,
        })
    }

    /// Asks init for its boot assessment and records "blessed" or "rolled back from X" in
    /// the history, once per boot. Quietly does nothing without init.
    pub async fn refresh_boot(&self) {
        let boot = match self.inner.init.boot().await {
            Ok(boot) => boot,
            Err(err) => {
                tracing::debug!("update: boot assessment: {err}");
                return;
            }
        };
        *lock(&self.inner.boot) = Some(boot.clone());
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| id.trim().to_string())
            .unwrap_or_default();
        let slot = boot.booted_slot;
        let entry = match boot.state {
            AssessmentState::Blessed => {
                let mut entry = entry_now(
                    UpdateEvent::Blessed,
                    format!(
                        "boot entry {} proved healthy",
                        boot.entry.as_deref().unwrap_or("?")
                    ),
                );
                entry.version = Some(self.current_version());
                entry.slot = slot.map(|s| s.letter().to_string());
                entry
            }
            AssessmentState::RolledBack => {
                let from = boot.rolled_back_from.clone().unwrap_or_else(|| "?".into());
                let mut entry = entry_now(
                    UpdateEvent::RolledBack,
                    format!(
                        "rolled back from {from}: it did not prove healthy within its boot tries"
                    ),
                );
                entry.version = boot.rolled_back_from.clone();
                entry.slot = slot.map(|s| s.other().letter().to_string());
                entry
            }
            _ => return,
        };
        let key = format!(
            "{boot_id}:{}:{}",
            boot.state.as_str(),
            boot.entry.as_deref().unwrap_or_default()
        );
        let mut first = false;
        if let Err(err) = self.save_state(|state| first = state.first_time_boot_key(&key)) {
            tracing::error!("update: {err}");
        }
        if first {
            self.record(entry);
        }
    }
}

/// Why `slot` (not the running one) cannot be switched to, if it cannot.
fn rollback_refusal(state: &UpdateState, slot: Slot, status: &SlotStatus) -> Option<String> {
    if let Some(reason) = state.refuse_reason(slot) {
        return Some(reason);
    }
    match status {
        SlotStatus::NoEntry => Some(format!("slot {slot} has no boot entry")),
        SlotStatus::Bad { .. } => Some(format!(
            "slot {slot} used up its boot tries without proving healthy"
        )),
        _ => None,
    }
}

/// Where the root image comes from when the slot is written.
enum RootSource<R: Read> {
    /// Received whole and checked; the bundle has been read to its end.
    Memory(writer::RootInMemory),
    /// Still in the bundle, to be streamed into the slot.
    Stream(Box<BundleReader<R>>),
}

/// A verified, written slot.
#[derive(Debug)]
struct Written {
    version: String,
    slot: Slot,
    entry: String,
    root_bytes: u64,
    root_write_seconds: f64,
    root_streamed: bool,
}

/// Upper bound on what is read and dropped after a refusal: the largest bundle there can
/// be (two boot artifacts, the root, and the header).
fn drain_limit() -> u64 {
    use ztos_image::bundle::{ArtifactKind, MAX_MANIFEST_LENGTH};
    ArtifactKind::ALL.iter().map(|k| k.max_size()).sum::<u64>()
        + u64::from(MAX_MANIFEST_LENGTH)
        + 4096
}

fn lock<T>(mutex: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A blocking `Read` over the chunks an async task sends; the end of the channel is the end
/// of the stream.
struct ChannelReader {
    chunks: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(chunks: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> ChannelReader {
        ChannelReader {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(err)) => {
                    return Err(io::Error::new(
                        UPLOAD_FAILED,
                        format!("the upload failed: {err}"),
                    ))
                }
                None => return Ok(0),
            }
        }
        let n = buffer.len().min(self.current.len());
        buffer[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}
