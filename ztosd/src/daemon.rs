//! The daemon's core: the one place where configuration changes. Every change, from the CLI,
//! the web UI or automation, goes through [`Daemon::commit`]:
//!
//! ```text
//!  text ──parse+validate──▶ Config ──plugins validate──▶ kernel apply ──▶ store commit ──▶ plugins apply
//!            │ 422                     │ 422 (veto)          │ error: kernel back      │
//!            ▼                         ▼                     ▼ to previous revision    ▼ new revision
//! ```
//!
//! The kernel is changed before the revision is written, so the running revision on disk is
//! always one that applied cleanly; a power cut between the two re-applies the old revision
//! at the next start. Commits are serialised by one async mutex.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{watch, Mutex};
use ztos_plugin::prom_text::{PromText, PromType};

use crate::config::{self, Config, ConfigErrors};
use crate::init_client::InitClient;
use crate::logs::{LogHub, DEFAULT_RING_BYTES};
use crate::netlink::{InterfaceStatus, Kernel, Reconciler};
use crate::plugin_host::{CurrentConfig, PluginHost, PluginVeto};
use crate::store::{ConfigStore, PendingConfirm, Revision, RevisionMeta};
use crate::tokens::TokenStore;
use crate::users::UserStore;

/// The file in the state directory holding the configured hostname, for ztos-init to set
/// at boot before ztosd runs.
pub const HOSTNAME_FILE: &str = "hostname";

/// Written by ztos-init when the persistent partition could not be used and /perm is a tmpfs;
/// re-exported for the console's banner.
pub use ztos_image::layout::PERM_DEGRADED_FILE;

/// Why a daemon operation failed. The API turns each variant into one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("invalid configuration: {0}")]
    Invalid(ConfigErrors),
    #[error("vetoed by plugins: {}", describe_vetoes(.0))]
    Vetoed(Vec<PluginVeto>),
    #[error("the kernel rejected the configuration: {0}")]
    Kernel(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

fn describe_vetoes(vetoes: &[PluginVeto]) -> String {
    vetoes
        .iter()
        .flat_map(|v| {
            v.errors
                .iter()
                .map(move |e| format!("{}: {}: {}", v.plugin, e.path, e.message))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<crate::store::StoreError> for DaemonError {
    fn from(err: crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::NotFound(rev) => {
                DaemonError::NotFound(format!("revision {rev} does not exist"))
            }
            other => DaemonError::Internal(format!("config store: {other}")),
        }
    }
}

/// A commit asked for through the API.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// The whole document to commit; `None` commits the candidate.
    pub text: Option<String>,
    pub author: String,
    pub comment: Option<String>,
    /// Revert by itself unless confirmed within this many minutes.
    pub confirm_minutes: Option<u32>,
}

/// What a commit did: an API answer (`ztos_model::api::config`).
pub use ztos_model::api::config::CommitOutcome;

/// The running configuration: an API answer (`ztos_model::api::config`).
pub use ztos_model::api::config::RunningConfig;

/// `network configure`'s request: an API type (`ztos_model::api::network`).
pub use ztos_model::api::network::{
    BgpPeerRequest, NetworkConfigureRequest, VxlanRequest, WireguardPeerRequest,
};

/// The security status and health answers live in the model (`ztos_model::api`).
pub use ztos_model::api::security::{DatapathSecurity, SecurityStatus};
pub use ztos_model::api::system::{ComponentHealth, Health};

/// How to build a daemon.
pub struct DaemonOptions {
    pub state_dir: PathBuf,
    /// Revisions kept in the store.
    pub retention: usize,
    pub kernel: Box<dyn Kernel>,
    /// ztos-init's status socket ([`ztos_image::layout::INIT_SOCKET`]); ztosd runs
    /// without a supervisor when nothing listens there.
    pub init_socket: PathBuf,
}

/// What the commit mutex guards.
struct State {
    store: ConfigStore,
    reconciler: Reconciler,
    running: Option<RevisionMeta>,
    running_text: String,
    running_config: Config,
}

#[derive(Default)]
struct Counters {
    commits_ok: AtomicU64,
    commits_invalid: AtomicU64,
    commits_vetoed: AtomicU64,
    commits_kernel_error: AtomicU64,
    auto_rollbacks: AtomicU64,
    last_apply_micros: AtomicU64,
}

struct Inner {
    state: Mutex<State>,
    logs: LogHub,
    plugins: PluginHost,
    tokens: TokenStore,
    users: UserStore,
    current: watch::Sender<Arc<CurrentConfig>>,
    /// The last error applying the running revision at start, if it did not apply.
    apply_error: StdMutex<Option<String>>,
    counters: Counters,
    started: Instant,
    state_dir: PathBuf,
    init: InitClient,
    /// Whether ztosd also sets the kernel's hostname (the appliance; not in netns labs, which
    /// share the host's UTS namespace).
    manage_hostname: std::sync::atomic::AtomicBool,
    /// The update service; [`Daemon::configure_update`] replaces the appliance default.
    update: StdMutex<crate::update::UpdateService>,
    /// The DHCP leases in force, by interface (see [`Daemon::start_dhcp`]).
    dhcp_leases: crate::dhcp::LeaseTable,
}

/// The daemon. Cheap to clone; every clone is the same daemon.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("state_dir", &self.inner.state_dir)
            .finish()
    }
}

fn now_rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl Daemon {
    /// Opens the store, token store and log rings in the state directory. Touches no kernel
    /// state and opens no sockets; [`Daemon::start`] does the first apply.
    pub fn new(options: DaemonOptions) -> anyhow::Result<Daemon> {
        use anyhow::Context;
        let state_dir = options.state_dir;
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating state directory {}", state_dir.display()))?;
        set_mode(&state_dir, 0o700);
        let store = ConfigStore::open(&state_dir, options.retention)
            .with_context(|| format!("opening config store in {}", state_dir.display()))?;
        let logs = LogHub::new(DEFAULT_RING_BYTES, Some(&state_dir.join("logs")));
        let tokens = TokenStore::open(&state_dir)
            .with_context(|| format!("opening token store in {}", state_dir.display()))?;
        let users = UserStore::open(&state_dir)
            .with_context(|| format!("opening user store in {}", state_dir.display()))?;
        let (running, running_text) = match store.running()? {
            Some((meta, text)) => (Some(meta), text),
            None => (None, String::new()),
        };
        let running_config = if running.is_some() {
            config::parse(&running_text).map_err(|e| {
                anyhow::anyhow!(
                    "running revision in {} does not parse: {e}",
                    state_dir.display()
                )
            })?
        } else {
            Config::default()
        };
        let (current, current_rx) = watch::channel(Arc::new(CurrentConfig {
            revision: running.as_ref().map_or(0, |m| m.number.0),
            config: running_config.clone(),
        }));
        let plugins = PluginHost::new(logs.clone(), current_rx);
        let init = InitClient::new(&options.init_socket);
        let update = crate::update::UpdateService::new(
            crate::update::UpdateOptions::appliance(&state_dir),
            init.clone(),
        )
        .with_context(|| format!("opening the updater's state in {}", state_dir.display()))?;
        Ok(Daemon {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    store,
                    reconciler: Reconciler::new(options.kernel),
                    running,
                    running_text,
                    running_config,
                }),
                logs,
                plugins,
                tokens,
                users,
                current,
                apply_error: StdMutex::new(None),
                counters: Counters::default(),
                started: Instant::now(),
                state_dir,
                init,
                manage_hostname: std::sync::atomic::AtomicBool::new(false),
                update: StdMutex::new(update),
                dhcp_leases: Default::default(),
            }),
        })
    }

    /// A daemon over an in-memory kernel ([`crate::netlink::RecordingKernel`]) in
    /// `state_dir`: for tests that drive the API without root and without touching the host.
    pub fn for_tests(state_dir: &Path) -> Daemon {
        Daemon::new(DaemonOptions {
            state_dir: state_dir.to_path_buf(),
            retention: 50,
            kernel: Box::new(crate::netlink::RecordingKernel::default()),
            init_socket: state_dir.join("init.sock"),
        })
        .expect("test daemon state directory must be usable")
    }

    /// Brings the kernel to the running revision (after a reboot it has none of it), or, when
    /// there is no revision yet, commits `initial` as revision 1. Resumes or finishes a
    /// pending `commit confirmed`.
    pub async fn start(&self, initial: Option<(String, String)>) -> Result<(), DaemonError> {
        let has_running = self.inner.state.lock().await.running.is_some();
        if !has_running {
            if let Some((text, origin)) = initial {
                let outcome = self
                    .commit(CommitRequest {
                        text: Some(text),
                        author: "ztosd".into(),
                        comment: Some(format!("initial configuration from {origin}")),
                        confirm_minutes: None,
                    })
                    .await?;
                tracing::info!(revision = %outcome.revision.number, "initial configuration committed");
            }
        } else {
            let mut state = self.inner.state.lock().await;
            let config = state.running_config.clone();
            let result = state.reconciler.apply(&config, &config).await;
            drop(state);
            match result {
                Ok(report) => {
                    tracing::info!(changes = report.changes.len(), "running revision applied");
                }
                Err(err) => {
                    // The box must stay manageable: report it in health, keep serving.
                    tracing::error!("applying the running revision failed: {err}");
                    *self.apply_error_slot() = Some(err.to_string());
                }
            }
        }
        let pending = self.inner.state.lock().await.store.pending_confirm()?;
        if let Some(pending) = pending {
            self.schedule_confirm_deadline(pending);
        }
        Ok(())
    }

    fn apply_error_slot(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.inner
            .apply_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Makes ztosd set the kernel's hostname on every commit, as the appliance wants. Off by
    /// default: ztosd in a netns lab shares the host's UTS namespace and must not rename it.
    pub fn manage_system_hostname(&self, on: bool) {
        self.inner.manage_hostname.store(on, Ordering::Relaxed);
    }

    /// Keeps `<state_dir>/hostname` (read by ztos-init at boot, before ztosd runs) in step
    /// with the configuration, and sets the kernel's hostname when asked to. Best effort: a
    /// hostname that cannot be set is logged, the commit stands.
    fn apply_hostname(&self, hostname: &str) {
        let path = self.inner.state_dir.join(HOSTNAME_FILE);
        let wanted = format!("{hostname}\n");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(wanted.as_str()) {
            if let Err(err) = crate::store::atomic_write(&path, wanted.as_bytes(), 0o644) {
                tracing::warn!("writing {}: {err}", path.display());
            }
        }
        if self.inner.manage_hostname.load(Ordering::Relaxed) {
            if let Err(err) = nix::unistd::sethostname(hostname) {
                tracing::warn!("setting the hostname to {hostname}: {err}");
            }
        }
    }

    pub fn logs(&self) -> &LogHub {
        &self.inner.logs
    }

    pub fn plugins(&self) -> &PluginHost {
        &self.inner.plugins
    }

    pub fn tokens(&self) -> &TokenStore {
        &self.inner.tokens
    }

    /// Console users, login rate limit and login sessions.
    pub fn users(&self) -> &UserStore {
        &self.inner.users
    }

    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// The client of ztos-init's status socket (services, reboot, poweroff).
    /// The update service.
    pub fn update(&self) -> crate::update::UpdateService {
        self.inner
            .update
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the update service's settings (test mode: files as partitions, a directory
    /// as the ESP). Call before serving the API.
    pub fn configure_update(&self, options: crate::update::UpdateOptions) -> anyhow::Result<()> {
        let service = crate::update::UpdateService::new(options, self.inner.init.clone())
            .map_err(|e| anyhow::anyhow!("opening the updater's state: {e}"))?;
        *self.inner.update.lock().unwrap_or_else(|p| p.into_inner()) = service;
        Ok(())
    }

    pub fn init(&self) -> &InitClient {
        &self.inner.init
    }

    pub async fn running(&self) -> RunningConfig {
        let state = self.inner.state.lock().await;
        RunningConfig {
            revision: state.running.clone(),
            text: state.running_text.clone(),
            config: state.running_config.clone(),
        }
    }

    pub async fn candidate(&self) -> Result<Option<String>, DaemonError> {
        Ok(self.inner.state.lock().await.store.candidate()?)
    }

    /// Replaces the candidate with `text` after checking that it parses and validates.
    pub async fn set_candidate(&self, text: String) -> Result<(), DaemonError> {
        config::parse(&text).map_err(DaemonError::Invalid)?;
        self.inner.state.lock().await.store.set_candidate(&text)?;
        Ok(())
    }

    /// Sets one value in the candidate (made from the running revision if there is none).
    pub async fn set_candidate_value(
        &self,
        path: &str,
        value: &str,
    ) -> Result<String, DaemonError> {
        self.edit_candidate(|text| config::set_value(text, path, value))
            .await
    }

    /// Deletes one value from the candidate (made from the running revision if there is none).
    pub async fn delete_candidate_value(&self, path: &str) -> Result<String, DaemonError> {
        self.edit_candidate(|text| config::delete_value(text, path))
            .await
    }

    async fn edit_candidate(
        &self,
        edit: impl FnOnce(&str) -> Result<String, ConfigErrors>,
    ) -> Result<String, DaemonError> {
        let mut state = self.inner.state.lock().await;
        let base = match state.store.candidate()? {
            Some(text) => text,
            None => state.running_text.clone(),
        };
        let edited = edit(&base).map_err(DaemonError::Invalid)?;
        state.store.set_candidate(&edited)?;
        Ok(edited)
    }

    pub async fn discard_candidate(&self) -> Result<(), DaemonError> {
        self.inner.state.lock().await.store.clear_candidate()?;
        Ok(())
    }

    /// A unified diff. With neither revision: running against the candidate; with `from`
    /// only: that revision against running; with both: between the two revisions.
    pub async fn diff(&self, from: Option<u64>, to: Option<u64>) -> Result<String, DaemonError> {
        let state = self.inner.state.lock().await;
        let running_label = match &state.running {
            Some(meta) => format!("revision {} (running)", meta.number),
            None => "empty (no revision yet)".to_string(),
        };
        let (old, old_label) = match from {
            Some(n) => (state.store.load(Revision(n))?.1, format!("revision {n}")),
            None => (state.running_text.clone(), running_label.clone()),
        };
        let (new, new_label) = match (from, to) {
            (_, Some(n)) => (state.store.load(Revision(n))?.1, format!("revision {n}")),
            (Some(_), None) => (state.running_text.clone(), running_label),
            (None, None) => match state.store.candidate()? {
                Some(text) => (text, "candidate".to_string()),
                None => (
                    state.running_text.clone(),
                    "candidate (same as running)".to_string(),
                ),
            },
        };
        Ok(crate::store::diff_text(&old, &new, &old_label, &new_label))
    }

    /// Validates, applies and records a new revision. See the module documentation.
    pub async fn commit(&self, request: CommitRequest) -> Result<CommitOutcome, DaemonError> {
        let mut state = self.inner.state.lock().await;
        if let Some(pending) = state.store.pending_confirm()? {
            return Err(DaemonError::Conflict(format!(
                "revision {} is waiting for confirmation until {}: confirm it or let it roll back first",
                pending.revision,
                deadline_text(pending.deadline_unix)
            )));
        }
        let from_candidate = request.text.is_none();
        let text = match request.text {
            Some(text) => text,
            None => state.store.candidate()?.ok_or_else(|| {
                DaemonError::Conflict("there is no candidate configuration to commit".into())
            })?,
        };
        let comment = request.comment.unwrap_or_default();
        let mut outcome = self
            .commit_locked(&mut state, &text, &request.author, &comment)
            .await?;
        if from_candidate {
            state.store.clear_candidate()?;
        }
        if let Some(minutes) = request.confirm_minutes {
            if minutes == 0 {
                return Err(DaemonError::Conflict(
                    "confirm_minutes: 0 is not a valid confirmation window".into(),
                ));
            }
            let rollback_to = match state.store.revisions()?.get(1) {
                Some(previous) => previous.number,
                None => {
                    return Err(DaemonError::Conflict(
                        "commit confirmed needs a previous revision to roll back to".into(),
                    ))
                }
            };
            let deadline = OffsetDateTime::now_utc() + Duration::from_secs(u64::from(minutes) * 60);
            let pending = PendingConfirm {
                revision: outcome.revision.number,
                rollback_to,
                deadline_unix: deadline.unix_timestamp(),
            };
            state.store.set_pending_confirm(Some(pending.clone()))?;
            outcome.confirm_deadline = Some(now_rfc3339(deadline));
            self.inner.logs.push(
                crate::logs::ZTOSD_SERVICE,
                crate::logs::Level::Warn,
                format!(
                    "revision {} reverts to revision {} at {} unless confirmed",
                    pending.revision,
                    rollback_to,
                    now_rfc3339(deadline)
                ),
            );
            drop(state);
            self.schedule_confirm_deadline(pending);
        }
        Ok(outcome)
    }

    /// The commit pipeline, with the state lock held.
    async fn commit_locked(
        &self,
        state: &mut State,
        text: &str,
        author: &str,
        comment: &str,
    ) -> Result<CommitOutcome, DaemonError> {
        let config = config::parse(text).map_err(|e| {
            self.inner
                .counters
                .commits_invalid
                .fetch_add(1, Ordering::Relaxed);
            DaemonError::Invalid(e)
        })?;
        let warnings = self
            .inner
            .plugins
            .validate(&config)
            .await
            .map_err(|vetoes| {
                self.inner
                    .counters
                    .commits_vetoed
                    .fetch_add(1, Ordering::Relaxed);
                DaemonError::Vetoed(vetoes)
            })?;
        let started = Instant::now();
        let previous = state.running_config.clone();
        // The reconciler brings the kernel back to `previous` itself when an operation fails.
        let report = state
            .reconciler
            .apply(&previous, &config)
            .await
            .map_err(|e| {
                self.inner
                    .counters
                    .commits_kernel_error
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("commit by {author} failed in the kernel: {e}");
                DaemonError::Kernel(e.to_string())
            })?;
        self.inner
            .counters
            .last_apply_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let meta = match state.store.commit(text, author, comment) {
            Ok(meta) => meta,
            Err(err) => {
                // Not recorded, so not applied either: undo the kernel change.
                if let Err(undo) = state.reconciler.apply(&config, &previous).await {
                    tracing::error!("undoing a kernel change after a store failure: {undo}");
                }
                return Err(err.into());
            }
        };
        state.running = Some(meta.clone());
        state.running_text = text.to_string();
        state.running_config = config.clone();
        self.apply_hostname(&config.system.hostname);
        *self.apply_error_slot() = None;
        self.inner
            .counters
            .commits_ok
            .fetch_add(1, Ordering::Relaxed);
        self.inner.current.send_replace(Arc::new(CurrentConfig {
            revision: meta.number.0,
            config,
        }));
        tracing::info!(
            "commit revision {} by {}{} ({} kernel changes)",
            meta.number,
            author,
            if comment.is_empty() {
                String::new()
            } else {
                format!(": {comment}")
            },
            report.changes.len()
        );
        Ok(CommitOutcome {
            revision: meta,
            changes: report.changes,
            warnings,
            confirm_deadline: None,
        })
    }

    /// Confirms a `commit confirmed`, so it no longer reverts.
    pub async fn confirm(&self, author: &str) -> Result<RevisionMeta, DaemonError> {
        let mut state = self.inner.state.lock().await;
        let pending = state
            .store
            .pending_confirm()?
            .ok_or_else(|| DaemonError::Conflict("no commit is waiting for confirmation".into()))?;
        state.store.set_pending_confirm(None)?;
        let (meta, _) = state.store.load(pending.revision)?;
        tracing::info!("revision {} confirmed by {author}", pending.revision);
        Ok(meta)
    }

    fn schedule_confirm_deadline(&self, pending: PendingConfirm) {
        let daemon = self.clone();
        tokio::spawn(async move {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let wait = u64::try_from(pending.deadline_unix - now).unwrap_or(0);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            if let Err(err) = daemon.revert_unconfirmed(&pending).await {
                tracing::error!("reverting unconfirmed revision {}: {err}", pending.revision);
            }
        });
    }

    /// Rolls back `pending` if it is still waiting for confirmation.
    async fn revert_unconfirmed(&self, pending: &PendingConfirm) -> Result<(), DaemonError> {
        let mut state = self.inner.state.lock().await;
        match state.store.pending_confirm()? {
            Some(current) if current.revision == pending.revision => {}
            // Confirmed (or replaced) in the meantime.
            _ => return Ok(()),
        }
        let (_, text) = state.store.load(pending.rollback_to)?;
        let comment = format!(
            "automatic rollback to revision {}: revision {} was not confirmed",
            pending.rollback_to, pending.revision
        );
        let outcome = self
            .commit_locked(&mut state, &text, "ztosd", &comment)
            .await?;
        state.store.set_pending_confirm(None)?;
        self.inner
            .counters
            .auto_rollbacks
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "{comment}; now running revision {}",
            outcome.revision.number
        );
        Ok(())
    }

    /// Commits the content of revision `to` as a new revision.
    pub async fn rollback(
        &self,
        to: u64,
        author: &str,
        comment: Option<String>,
    ) -> Result<CommitOutcome, DaemonError> {
        let text = self.inner.state.lock().await.store.load(Revision(to))?.1;
        self.commit(CommitRequest {
            text: Some(text),
            author: author.to_string(),
            comment: Some(comment.unwrap_or_else(|| format!("rollback to revision {to}"))),
            confirm_minutes: None,
        })
        .await
    }

    pub async fn revisions(&self) -> Result<Vec<RevisionMeta>, DaemonError> {
        Ok(self.inner.state.lock().await.store.revisions()?)
    }

    pub async fn revision(&self, n: u64) -> Result<(RevisionMeta, String), DaemonError> {
        Ok(self.inner.state.lock().await.store.load(Revision(n))?)
    }

    /// Applies the spec's `network configure` as an edit of the running text (comments and
    /// layout are kept) and commits it.
    pub async fn network_configure(
        &self,
        request: NetworkConfigureRequest,
        author: &str,
    ) -> Result<CommitOutcome, DaemonError> {
        if request.bgp.is_none() && request.vxlan.is_none() && request.wireguard.is_none() {
            return Err(DaemonError::Invalid(single_error(
                "",
                "nothing to configure: give bgp, vxlan or wireguard",
            )));
        }
        let running = self.running().await;
        let mut text = running.text;
        let mut what = Vec::new();
        let invalid = DaemonError::Invalid;
        if let Some(bgp) = &request.bgp {
            let neighbors = running
                .config
                .bgp
                .as_ref()
                .map_or(&[][..], |b| &b.neighbors[..]);
            if running.config.bgp.is_none() {
                let local_as = bgp.local_as.unwrap_or(bgp.remote_as);
                text = config::set_value(&text, "bgp.local_as", &local_as.to_string())
                    .map_err(invalid)?;
            }
            match neighbors.iter().position(|n| n.address == bgp.peer) {
                // An existing neighbor keeps its other settings (families, password, ...).
                Some(index) => {
                    let path = format!("bgp.neighbors[{index}]");
                    text = config::set_value(
                        &text,
                        &format!("{path}.remote_as"),
                        &bgp.remote_as.to_string(),
                    )
                    .map_err(invalid)?;
                    if let Some(description) = &bgp.description {
                        text = config::set_value(
                            &text,
                            &format!("{path}.description"),
                            &toml_string(description),
                        )
                        .map_err(invalid)?;
                    }
                }
                None => {
                    let mut entry = format!(
                        "{{ address = \"{}\", remote_as = {}",
                        bgp.peer, bgp.remote_as
                    );
                    if let Some(description) = &bgp.description {
                        entry.push_str(&format!(", description = {}", toml_string(description)));
                    }
                    entry.push_str(" }");
                    let path = format!("bgp.neighbors[{}]", neighbors.len());
                    text = config::set_value(&text, &path, &entry).map_err(invalid)?;
                }
            }
            what.push(format!("bgp peer {} AS {}", bgp.peer, bgp.remote_as));
        }
        if let Some(vxlan) = &request.vxlan {
            let index = running
                .config
                .vxlan
                .iter()
                .position(|v| v.vni.get() == vxlan.vni);
            let remotes: Vec<String> = vxlan
                .remote_vteps
                .iter()
                .map(|r| format!("\"{r}\""))
                .collect();
            let mut entry = format!(
                "{{ vni = {}, local_vtep = \"{}\", remote_vteps = [{}]",
                vxlan.vni,
                vxlan.local_vtep,
                remotes.join(", ")
            );
            if let Some(bridge) = &vxlan.bridge {
                entry.push_str(&format!(", bridge = {}", toml_string(bridge)));
            }
            if let Some(port) = vxlan.port {
                entry.push_str(&format!(", port = {port}"));
            }
            entry.push_str(" }");
            let path = format!("vxlan[{}]", index.unwrap_or(running.config.vxlan.len()));
            text = config::set_value(&text, &path, &entry).map_err(invalid)?;
            what.push(format!("vxlan vni {}", vxlan.vni));
        }
        if let Some(wg) = &request.wireguard {
            let interfaces = running
                .config
                .wireguard
                .as_ref()
                .map_or(&[][..], |w| &w.interfaces[..]);
            let iface_index = interfaces
                .iter()
                .position(|i| i.name == wg.interface)
                .ok_or_else(|| {
                    DaemonError::Invalid(single_error(
                        "wireguard.interface",
                        &format!("{} is not a configured wireguard interface", wg.interface),
                    ))
                })?;
            let peers = &interfaces[iface_index].peers;
            let index = peers.iter().position(|p| p.public_key == wg.public_key);
            let allowed: Vec<String> = wg.allowed_ips.iter().map(|a| format!("\"{a}\"")).collect();
            let mut entry = format!(
                "{{ public_key = {}, allowed_ips = [{}]",
                toml_string(&wg.public_key),
                allowed.join(", ")
            );
            if let Some(endpoint) = &wg.endpoint {
                entry.push_str(&format!(", endpoint = {}", toml_string(endpoint)));
            }
            entry.push_str(" }");
            let path = format!(
                "wireguard.interfaces[{iface_index}].peers[{}]",
                index.unwrap_or(peers.len())
            );
            text = config::set_value(&text, &path, &entry).map_err(invalid)?;
            what.push(format!("wireguard peer on {}", wg.interface));
        }
        let comment = request
            .comment
            .unwrap_or_else(|| format!("network configure: {}", what.join(", ")));
        self.commit(CommitRequest {
            text: Some(text),
            author: author.to_string(),
            comment: Some(comment),
            confirm_minutes: None,
        })
        .await
    }

    pub async fn security_status(&self) -> SecurityStatus {
        let config = self.running().await.config;
        let wireguard = config.wireguard.as_ref();
        let macsec = config.macsec.as_ref();
        SecurityStatus {
            wireguard: self.datapath_security(
                "wireguard",
                wireguard.is_some(),
                wireguard.map_or(0, |w| w.interfaces.len()),
                wireguard.map_or(0, |w| w.interfaces.iter().map(|i| i.peers.len()).sum()),
            ),
            macsec: self.datapath_security(
                "macsec",
                macsec.is_some(),
                macsec.map_or(0, |m| m.interfaces.len()),
                0,
            ),
            policy_rules: config.policy.as_ref().map_or(0, |p| p.rules.len()),
            update: self.update().rollback_notice(),
        }
    }

    fn datapath_security(
        &self,
        section: &str,
        configured: bool,
        interfaces: usize,
        peers: usize,
    ) -> DatapathSecurity {
        let plugin = crate::plugin_host::owner_of(section)
            .unwrap_or(section)
            .to_string();
        let info = self.inner.plugins.get(&plugin);
        let (plugin_state, status) = match info {
            Some(info) => (info.state.to_string(), info.status),
            None => ("absent".to_string(), serde_json::Value::Null),
        };
        DatapathSecurity {
            configured,
            interfaces,
            peers,
            plugin,
            plugin_state,
            status,
        }
    }

    pub async fn interfaces(&self) -> Result<Vec<InterfaceStatus>, DaemonError> {
        let state = self.inner.state.lock().await;
        let mut interfaces = state
            .reconciler
            .interfaces()
            .await
            .map_err(|e| DaemonError::Kernel(e.to_string()))?;
        drop(state);
        let leases = self
            .inner
            .dhcp_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for interface in &mut interfaces {
            interface.dhcp = leases.get(&interface.name).cloned();
        }
        Ok(interfaces)
    }

    /// Starts DHCP on the `dhcp = true` interfaces of the running configuration (and of every
    /// later revision): leases are installed through the reconciler on top of the running
    /// revision, shown in [`Daemon::interfaces`], and their DNS servers written to
    /// `resolv_conf`. Returns the manager's task.
    pub fn start_dhcp(&self, resolv_conf: PathBuf) -> tokio::task::JoinHandle<()> {
        tokio::spawn(crate::dhcp::manage(
            self.inner.current.subscribe(),
            Arc::new(self.clone()),
            Arc::clone(&self.inner.dhcp_leases),
            resolv_conf,
        ))
    }

    /// Healthy when the running revision is applied and every plugin that owns a configured
    /// section is connected.
    pub async fn health(&self) -> Health {
        let running = self.running().await;
        let mut components = Vec::new();
        let apply_error = self.apply_error_slot().clone();
        components.push(ComponentHealth {
            name: "config".into(),
            healthy: apply_error.is_none(),
            detail: match (&apply_error, &running.revision) {
                (Some(err), _) => format!("running revision not applied: {err}"),
                (None, Some(meta)) => format!("revision {} applied", meta.number),
                (None, None) => "no configuration committed yet".into(),
            },
        });
        if let Ok(reason) = std::fs::read_to_string(PERM_DEGRADED_FILE) {
            components.push(ComponentHealth {
                name: "perm".into(),
                healthy: false,
                detail: format!(
                    "persistent storage unusable, running on tmpfs (changes are lost at reboot): {}",
                    reason.trim()
                ),
            });
        }
        for section in config::SECTIONS {
            let Some(owner) = crate::plugin_host::owner_of(section) else {
                continue;
            };
            if config::section_value(&running.config, section).is_none() {
                continue;
            }
            if components.iter().any(|c| c.name == owner) {
                continue;
            }
            let state = self.inner.plugins.get(owner).map(|i| i.state.to_string());
            let up = state.as_deref() == Some("up");
            components.push(ComponentHealth {
                name: owner.to_string(),
                healthy: up,
                detail: format!(
                    "owns configured section {section}; plugin is {}",
                    state.as_deref().unwrap_or("absent")
                ),
            });
        }
        if let Some(notice) = self.update().rollback_notice() {
            // The box runs (the previous slot), so this does not make it unhealthy.
            components.push(ComponentHealth {
                name: "update".into(),
                healthy: true,
                detail: notice,
            });
        }
        Health {
            healthy: components.iter().all(|c| c.healthy),
            components,
        }
    }

    /// ztosd's own metrics and every plugin's, in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let c = &self.inner.counters;
        let revision = self.inner.current.borrow().revision;
        let mut text = PromText::new(out);
        text.family(
            "ztos_config_revision",
            PromType::Gauge,
            "The running configuration revision.",
        )
        .sample(&[], revision);
        let mut commits = text.family(
            "ztos_commits_total",
            PromType::Counter,
            "Commits by result.",
        );
        for (result, counter) in [
            ("ok", &c.commits_ok),
            ("invalid", &c.commits_invalid),
            ("vetoed", &c.commits_vetoed),
            ("kernel_error", &c.commits_kernel_error),
        ] {
            commits.sample(&[("result", result)], counter.load(Ordering::Relaxed));
        }
        text.family(
            "ztos_confirm_rollbacks_total",
            PromType::Counter,
            "Unconfirmed commits reverted.",
        )
        .sample(&[], c.auto_rollbacks.load(Ordering::Relaxed));
        text.family(
            "ztos_last_apply_seconds",
            PromType::Gauge,
            "Duration of the last kernel apply.",
        )
        .sample(
            &[],
            c.last_apply_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        text.family(
            "ztos_uptime_seconds",
            PromType::Gauge,
            "Seconds since ztosd started.",
        )
        .sample(&[], self.inner.started.elapsed().as_secs());
        self.inner.plugins.render_metrics(out);
    }
}

fn deadline_text(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .map(now_rfc3339)
        .unwrap_or_else(|_| unix.to_string())
}

fn single_error(path: &str, message: &str) -> ConfigErrors {
    ConfigErrors(vec![config::ConfigError {
        path: path.into(),
        message: message.into(),
    }])
}

/// A TOML basic string with quotes and escapes.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(err) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        tracing::warn!("setting mode {mode:o} on {}: {err}", path.display());
    }
}

impl crate::dhcp::LeaseSink for Daemon {
    fn apply(
        &self,
        interface: String,
        lease: Option<crate::netlink::DhcpAddressing>,
    ) -> crate::dhcp::manager::SinkFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut state = self.inner.state.lock().await;
            let config = state.running_config.clone();
            state
                .reconciler
                .set_lease(&config, &interface, lease)
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
    }

    fn activate(
        &self,
        interface: String,
        active: bool,
    ) -> crate::dhcp::manager::SinkFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut state = self.inner.state.lock().await;
            let config = state.running_config.clone();
            state
                .reconciler
                .set_dhcp_link(&config, &interface, active)
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
    }

    fn first_ethernet(&self) -> crate::dhcp::manager::SinkFuture<'_, Option<String>> {
        Box::pin(async move {
            let state = self.inner.state.lock().await;
            let interfaces = state.reconciler.interfaces().await.ok()?;
            interfaces
                .into_iter()
                .filter(|i| i.kind == "device" && i.name != "lo" && i.mac.is_some())
                .min_by_key(|i| i.index)
                .map(|i| i.name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[system]\nhostname = \"leaf1\"\n\n[[bridges]]\nname = \"br0\"\n";

    async fn daemon_with_base() -> (tempfile::TempDir, Daemon) {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::for_tests(dir.path());
        daemon
            .start(Some((BASE.to_string(), "test".to_string())))
            .await
            .unwrap();
        (dir, daemon)
    }

    fn commit_text(text: &str) -> CommitRequest {
        CommitRequest {
            text: Some(text.into()),
            author: "tester".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn initial_config_becomes_revision_one_and_an_unchanged_recommit_changes_nothing() {
        let (_dir, daemon) = daemon_with_base().await;
        let running = daemon.running().await;
        assert_eq!(running.revision.unwrap().number, Revision(1));
        assert_eq!(running.config.system.hostname, "leaf1");
        let again = daemon.commit(commit_text(BASE)).await.unwrap();
        assert_eq!(again.revision.number, Revision(2));
        assert!(
            again.changes.is_empty(),
            "unchanged config touched the kernel: {:?}",
            again.changes
        );
    }

    #[tokio::test]
    async fn an_invalid_commit_leaves_the_running_revision() {
        let (_dir, daemon) = daemon_with_base().await;
        let err = daemon
            .commit(commit_text("[bgp]\nlocal_as = 0\n"))
            .await
            .unwrap_err();
        let DaemonError::Invalid(errors) = err else {
            panic!("expected Invalid, got {err}")
        };
        assert_eq!(errors.0[0].path, "bgp.local_as");
        assert_eq!(daemon.revisions().await.unwrap().len(), 1);
        assert_eq!(daemon.running().await.config.system.hostname, "leaf1");
    }

    #[tokio::test]
    async fn candidate_edits_commit_and_clear_the_candidate() {
        let (_dir, daemon) = daemon_with_base().await;
        daemon
            .set_candidate_value("system.hostname", "leaf9")
            .await
            .unwrap();
        let diff = daemon.diff(None, None).await.unwrap();
        assert!(diff.contains("+hostname = \"leaf9\""), "{diff}");
        let outcome = daemon
            .commit(CommitRequest {
                author: "tester".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(outcome.revision.number, Revision(2));
        assert_eq!(daemon.running().await.config.system.hostname, "leaf9");
        assert_eq!(daemon.candidate().await.unwrap(), None);
        let err = daemon.commit(CommitRequest::default()).await.unwrap_err();
        assert!(matches!(err, DaemonError::Conflict(_)), "{err}");
    }

    #[tokio::test]
    async fn the_hostname_file_follows_commits_for_init_to_read_at_boot() {
        let (dir, daemon) = daemon_with_base().await;
        let file = dir.path().join(HOSTNAME_FILE);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "leaf1\n");
        daemon
            .commit(commit_text("[system]\nhostname = \"spine7\"\n"))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "spine7\n");
    }

    #[tokio::test]
    async fn rollback_commits_an_old_revision_as_a_new_one() {
        let (_dir, daemon) = daemon_with_base().await;
        daemon
            .commit(commit_text("[system]\nhostname = \"other\"\n"))
            .await
            .unwrap();
        let outcome = daemon.rollback(1, "tester", None).await.unwrap();
        assert_eq!(outcome.revision.number, Revision(3));
        assert_eq!(outcome.revision.comment, "rollback to revision 1");
        assert_eq!(daemon.running().await.text, BASE);
        let err = daemon.rollback(99, "tester", None).await.unwrap_err();
        assert_eq!(err.to_string(), "revision 99 does not exist");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unconfirmed_commit_reverts_by_itself() {
        let (_dir, daemon) = daemon_with_base().await;
        let outcome = daemon
            .commit(CommitRequest {
                text: Some("[system]\nhostname = \"risky\"\n".into()),
                author: "tester".into(),
                confirm_minutes: Some(2),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(outcome.confirm_deadline.is_some());
        let err = daemon.commit(commit_text(BASE)).await.unwrap_err();
        assert!(
            err.to_string().contains("waiting for confirmation"),
            "{err}"
        );
        tokio::time::sleep(Duration::from_secs(119)).await;
        assert_eq!(daemon.running().await.config.system.hostname, "risky");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let running = daemon.running().await;
        assert_eq!(running.config.system.hostname, "leaf1");
        let meta = running.revision.unwrap();
        assert_eq!((meta.number, meta.author.as_str()), (Revision(3), "ztosd"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirmed_commit_stays() {
        let (_dir, daemon) = daemon_with_base().await;
        daemon
            .commit(CommitRequest {
                text: Some("[system]\nhostname = \"kept\"\n".into()),
                author: "tester".into(),
                confirm_minutes: Some(1),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(daemon.confirm("tester").await.unwrap().number, Revision(2));
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(daemon.running().await.config.system.hostname, "kept");
        assert!(matches!(
            daemon.confirm("tester").await,
            Err(DaemonError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn a_pending_confirm_whose_deadline_passed_while_down_reverts_at_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let daemon = Daemon::for_tests(dir.path());
            daemon
                .start(Some((BASE.to_string(), "test".to_string())))
                .await
                .unwrap();
            daemon
                .commit(commit_text("[system]\nhostname = \"risky\"\n"))
                .await
                .unwrap();
            // As if ztosd stopped right after a confirmed commit whose window then passed.
            let mut state = daemon.inner.state.lock().await;
            state
                .store
                .set_pending_confirm(Some(PendingConfirm {
                    revision: Revision(2),
                    rollback_to: Revision(1),
                    deadline_unix: OffsetDateTime::now_utc().unix_timestamp() - 5,
                }))
                .unwrap();
        }
        let daemon = Daemon::for_tests(dir.path());
        daemon.start(None).await.unwrap();
        for _ in 0..100 {
            if daemon.running().await.config.system.hostname == "leaf1" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the expired commit was not reverted at start");
    }

    #[tokio::test]
    async fn network_configure_adds_then_updates_a_bgp_neighbor() {
        let (_dir, daemon) = daemon_with_base().await;
        let request = |remote_as| NetworkConfigureRequest {
            bgp: Some(BgpPeerRequest {
                peer: "10.1.1.1".parse().unwrap(),
                remote_as,
                local_as: None,
                description: None,
            }),
            ..Default::default()
        };
        let outcome = daemon
            .network_configure(request(64512), "tester")
            .await
            .unwrap();
        assert_eq!(
            outcome.revision.comment,
            "network configure: bgp peer 10.1.1.1 AS 64512"
        );
        let bgp = daemon.running().await.config.bgp.unwrap();
        assert_eq!(
            bgp.local_as.get(),
            64512,
            "iBGP by default when bgp was absent"
        );
        assert_eq!(bgp.neighbors.len(), 1);
        // Settings network configure does not know stay when the AS changes.
        let text = daemon.running().await.text;
        let text = config::set_value(&text, "bgp.neighbors[0].passive", "true").unwrap();
        let text = config::set_value(&text, "bgp.neighbors[0].hold_time", "30").unwrap();
        daemon
            .commit(CommitRequest {
                text: Some(text),
                author: "tester".into(),
                comment: None,
                confirm_minutes: None,
            })
            .await
            .unwrap();
        daemon
            .network_configure(request(64513), "tester")
            .await
            .unwrap();
        let bgp = daemon.running().await.config.bgp.unwrap();
        assert_eq!(bgp.neighbors.len(), 1);
        assert_eq!(bgp.neighbors[0].remote_as.get(), 64513);
        assert!(bgp.neighbors[0].passive, "passive kept");
        assert_eq!(bgp.neighbors[0].hold_time, Some(30));
        // The operator's text is edited, not regenerated: the bridge stays as written.
        assert!(daemon.running().await.text.starts_with(BASE));
        let err = daemon
            .network_configure(request(0), "tester")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("0 is not a valid AS number"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn security_status_reports_absent_plugins_and_health_follows_configured_sections() {
        let (_dir, daemon) = daemon_with_base().await;
        let status = daemon.security_status().await;
        assert!(!status.wireguard.configured && !status.macsec.configured);
        assert_eq!(status.wireguard.plugin, "ztos-wireguard");
        assert_eq!(status.wireguard.plugin_state, "absent");
        assert!(daemon.health().await.healthy);
        let with_bgp = format!("{BASE}\n[bgp]\nlocal_as = 65000\n");
        daemon.commit(commit_text(&with_bgp)).await.unwrap();
        let health = daemon.health().await;
        assert!(
            !health.healthy,
            "bgp is configured but ztos-bgp is not connected"
        );
        assert!(health
            .components
            .iter()
            .any(|c| c.name == "ztos-bgp" && !c.healthy));
    }
}
