//! The plugin host: ztosd's side of the plugin protocol (`ztos_plugin::protocol`). Plugins
//! connect to a unix socket, say which config sections they own and read, and from then on
//! get those sections on every commit and after every (re)connect, validate candidates (their
//! errors block a commit), answer operational requests, and stream status, events, metrics and
//! log lines back.
//!
//! ```text
//!   serve(): accept loop ──spawn──> one task per connection
//!                                     │ hello (5 s) -> welcome | reject
//!                                     │ apply(current) now, and on every new revision (watch)
//!                                     │ reads plugin messages -> HostState, LogHub, waiters
//!                                     └─> writer task <── mpsc ── validate() / request()
//! ```
//!
//! All per-plugin state lives in one `HostState` behind a mutex; a plugin is up exactly while
//! its record holds a `Connection`. Nothing here blocks on a plugin while holding the lock:
//! requests go out through the connection's channel and answers come back on oneshots.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use ztos_plugin::prom_text::{PromText, PromType};
use ztos_plugin::protocol::{
    FieldError, HostMessage, LogLevel, Metric, MetricKind, PluginMessage, Sections,
    PROTOCOL_VERSION,
};
use ztos_plugin::transport::{write_message, MessageReader, ReadError};

use crate::config::Config;
use crate::logs::{Level, LogHub};

/// Which plugin owns which config section. A section in this table is validated and applied
/// only by a plugin; no other section can be owned by one.
pub const SECTION_OWNERS: &[(&str, &str)] = &[
    ("bgp", "ztos-bgp"),
    ("wireguard", "ztos-wireguard"),
    ("policy", "ztos-wireguard"),
    ("macsec", "ztos-macsec"),
    ("gpu_offload", "ztos-gpu-offload"),
];

/// The plugin that owns `section`, if a plugin owns it.
pub fn owner_of(section: &str) -> Option<&'static str> {
    SECTION_OWNERS
        .iter()
        .find(|(owned, _)| *owned == section)
        .map(|(_, owner)| *owner)
}

/// The log service name of the host's own messages about plugins.
const HOST_SERVICE: &str = "plugin-host";

/// Events kept per plugin, and how many of them [`PluginHost::list`] shows.
const EVENTS_KEPT: usize = 100;
const EVENTS_LISTED: usize = 10;

/// The committed configuration the host hands to plugins.
#[derive(Debug, Clone, Default)]
pub struct CurrentConfig {
    pub revision: u64,
    pub config: Config,
}

/// How long the host waits for plugins.
#[derive(Debug, Clone, Copy)]
pub struct HostTimeouts {
    /// From accepting a connection to its `hello`.
    pub hello: Duration,
    /// For a `validate_result`.
    pub validate: Duration,
    /// For a `response` to a request.
    pub request: Duration,
}

impl Default for HostTimeouts {
    fn default() -> Self {
        HostTimeouts {
            hello: Duration::from_secs(5),
            validate: Duration::from_secs(10),
            request: Duration::from_secs(10),
        }
    }
}

/// A plugin's objection to a candidate configuration; it blocks the commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginVeto {
    pub plugin: String,
    pub errors: Vec<FieldError>,
}

/// Why a request to a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {0} is not known")]
    Unknown(String),
    #[error("plugin {0} is not connected")]
    Down(String),
    #[error("plugin {plugin} did not answer {method} within {seconds} s")]
    Timeout {
        plugin: String,
        method: String,
        seconds: f64,
    },
    #[error("plugin {plugin} disconnected before answering {method}")]
    Disconnected { plugin: String, method: String },
    #[error("plugin {plugin} answered {method} with an unexpected {answer} message")]
    UnexpectedAnswer {
        plugin: String,
        method: String,
        answer: String,
    },
    #[error("plugin {plugin} failed {method}: {message}")]
    Failed {
        plugin: String,
        method: String,
        message: String,
    },
}

/// What ztosd reports about its plugins: API answers (`ztos_model::api::plugins`).
pub use ztos_model::api::plugins::{PluginEvent, PluginInfo, PluginState};

/// ztosd's plugin host. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost").finish_non_exhaustive()
    }
}

struct Inner {
    logs: LogHub,
    current: watch::Receiver<Arc<CurrentConfig>>,
    timeouts: HostTimeouts,
    state: Mutex<HostState>,
}

#[derive(Default)]
struct HostState {
    plugins: BTreeMap<String, PluginRecord>,
    /// Source of message ids and connection ids; never reused.
    next_id: u64,
}

impl HostState {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

struct PluginRecord {
    version: String,
    owns: Vec<String>,
    reads: Vec<String>,
    /// Present exactly while the plugin is connected.
    connection: Option<Connection>,
    last_applied_revision: Option<u64>,
    last_apply_error: Option<String>,
    status: Value,
    events: VecDeque<PluginEvent>,
    metrics: Vec<Metric>,
}

struct Connection {
    id: u64,
    since: OffsetDateTime,
    outgoing: mpsc::UnboundedSender<HostMessage>,
    /// Waiters for `validate_result` and `response` messages, by message id.
    pending: HashMap<u64, oneshot::Sender<PluginMessage>>,
}

/// The fields of a `hello` message.
struct Hello {
    protocol_version: u32,
    name: String,
    version: String,
    owns: Vec<String>,
    reads: Vec<String>,
}

/// A registered connection, as the connection task knows it.
struct Registration {
    name: String,
    connection_id: u64,
    sections: Vec<String>,
}

impl PluginHost {
    /// A host handing out the configuration in `current` (and every later revision sent
    /// there), logging into `logs`.
    pub fn new(logs: LogHub, current: watch::Receiver<Arc<CurrentConfig>>) -> PluginHost {
        PluginHost::with_timeouts(logs, current, HostTimeouts::default())
    }

    /// Like [`PluginHost::new`] with other timeouts (tests use short ones).
    pub fn with_timeouts(
        logs: LogHub,
        current: watch::Receiver<Arc<CurrentConfig>>,
        timeouts: HostTimeouts,
    ) -> PluginHost {
        PluginHost {
            inner: Arc::new(Inner {
                logs,
                current,
                timeouts,
                state: Mutex::new(HostState::default()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, HostState> {
        // Every update under this lock is a handful of plain assignments, so the state is
        // consistent even if a holder panicked.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Listens on `socket_path` (replacing a stale socket, mode 0600) and serves plugins
    /// until the listener fails.
    pub async fn serve(&self, socket_path: &Path) -> anyhow::Result<()> {
        let listener = bind(socket_path)?;
        self.inner.logs.push(
            HOST_SERVICE,
            Level::Info,
            format!("listening for plugins on {}", socket_path.display()),
        );
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let host = self.clone();
                    tokio::spawn(async move { host.handle_connection(stream).await });
                }
                Err(e) => {
                    // Usually EMFILE: wait a little instead of spinning.
                    self.inner.logs.push(
                        HOST_SERVICE,
                        Level::Warn,
                        format!("accepting a plugin connection failed: {e}"),
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Serves one plugin connection from hello to close.
    async fn handle_connection(&self, stream: UnixStream) {
        let (read_half, mut write_half) = stream.into_split();
        let mut reader = MessageReader::new(read_half);
        let hello = tokio::time::timeout(
            self.inner.timeouts.hello,
            reader.next_message::<PluginMessage>(),
        )
        .await;
        let hello = match hello {
            Ok(Ok(Some(PluginMessage::Hello {
                protocol_version,
                name,
                version,
                owns,
                reads,
            }))) => Hello {
                protocol_version,
                name,
                version,
                owns,
                reads,
            },
            Ok(Ok(None)) => return,
            Ok(Ok(Some(other))) => {
                let reason = format!("expected hello, got {}", message_type(&other));
                self.refuse(&mut write_half, None, reason).await;
                return;
            }
            Ok(Err(e)) => {
                self.refuse(&mut write_half, None, e.to_string()).await;
                return;
            }
            Err(_) => {
                let reason = format!(
                    "no hello within {} s",
                    self.inner.timeouts.hello.as_secs_f64()
                );
                self.refuse(&mut write_half, None, reason).await;
                return;
            }
        };
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let registration = match self.register(hello, outgoing.clone()) {
            Ok(registration) => registration,
            Err((name, reason)) => {
                self.refuse(&mut write_half, Some(&name), reason).await;
                return;
            }
        };
        // The record holds the other sender; once it is dropped at unregister, the writer
        // flushes what is queued (a final reject included) and closes the socket.
        let writer = tokio::spawn(write_loop(write_half, outgoing_rx));
        let _ = outgoing.send(HostMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            host_version: env!("CARGO_PKG_VERSION").to_string(),
        });
        drop(outgoing);

        let mut current = self.inner.current.clone();
        let mut sent_revision = {
            let config = current.borrow_and_update().clone();
            self.send_apply(&registration, &config);
            config.revision
        };
        let mut watching = true;
        let closing_reason = loop {
            tokio::select! {
                message = reader.next_message::<PluginMessage>() => match message {
                    Ok(Some(message)) => {
                        if let Err(reason) = self.handle_message(&registration, message) {
                            break Some(reason);
                        }
                    }
                    Ok(None) => break None,
                    Err(ReadError::Io(e)) => {
                        self.inner.logs.push(&registration.name, Level::Warn, format!("connection lost: {e}"));
                        break None;
                    }
                    Err(e) => break Some(e.to_string()),
                },
                changed = current.changed(), if watching => {
                    if changed.is_err() {
                        // The config store is gone (ztosd is stopping); keep serving the plugin.
                        watching = false;
                        continue;
                    }
                    let config = current.borrow_and_update().clone();
                    if config.revision != sent_revision {
                        sent_revision = config.revision;
                        self.send_apply(&registration, &config);
                    }
                }
            }
        };
        if let Some(reason) = &closing_reason {
            self.inner.logs.push(
                &registration.name,
                Level::Warn,
                format!("closing the connection: {reason}"),
            );
            self.send_to(
                &registration,
                HostMessage::Reject {
                    reason: reason.clone(),
                },
            );
        }
        self.unregister(&registration);
        // Let the writer deliver the reject before the read half goes away.
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    }

    /// Logs why a connection is refused and tells the plugin.
    async fn refuse(
        &self,
        writer: &mut tokio::net::unix::OwnedWriteHalf,
        name: Option<&str>,
        reason: String,
    ) {
        let who = name.map_or_else(|| "a plugin".to_string(), |name| format!("plugin {name}"));
        self.inner.logs.push(
            HOST_SERVICE,
            Level::Warn,
            format!("refused {who}: {reason}"),
        );
        let _ = write_message(writer, &HostMessage::Reject { reason }).await;
    }

    /// Checks a hello and records the plugin as connected; on refusal returns the plugin's
    /// name and the reason.
    fn register(
        &self,
        hello: Hello,
        outgoing: mpsc::UnboundedSender<HostMessage>,
    ) -> Result<Registration, (String, String)> {
        let Hello {
            protocol_version,
            name,
            version,
            owns,
            reads,
        } = hello;
        let refuse = |reason: String| Err((name.clone(), reason));
        if protocol_version != PROTOCOL_VERSION {
            return refuse(format!(
                "protocol version {protocol_version} is not supported (this ztosd speaks {PROTOCOL_VERSION})"
            ));
        }
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return refuse(format!(
                "plugin name {name:?} is not valid (1 to 64 letters, digits, - and _)"
            ));
        }
        for section in owns.iter().chain(&reads) {
            if !crate::config::SECTIONS.contains(&section.as_str()) {
                return refuse(format!("unknown config section {section:?}"));
            }
        }
        if let Some(section) = owns.iter().find(|s| owner_of(s).is_none()) {
            return refuse(format!(
                "section {section} is managed by ztosd and cannot be owned by a plugin"
            ));
        }
        let mut state = self.state();
        if state
            .plugins
            .get(&name)
            .is_some_and(|r| r.connection.is_some())
        {
            return refuse(format!("a plugin named {name} is already connected"));
        }
        for (other, record) in &state.plugins {
            if record.connection.is_none() {
                continue;
            }
            if let Some(section) = owns.iter().find(|s| record.owns.contains(s)) {
                return refuse(format!(
                    "section {section} is already owned by connected plugin {other}"
                ));
            }
        }
        let connection_id = state.next_id();
        let connection = Connection {
            id: connection_id,
            since: OffsetDateTime::now_utc(),
            outgoing,
            pending: HashMap::new(),
        };
        let record = state
            .plugins
            .entry(name.clone())
            .or_insert_with(|| PluginRecord {
                version: String::new(),
                owns: Vec::new(),
                reads: Vec::new(),
                connection: None,
                last_applied_revision: None,
                last_apply_error: None,
                status: Value::Null,
                events: VecDeque::new(),
                metrics: Vec::new(),
            });
        record.version = version.clone();
        record.owns = owns.clone();
        record.reads = reads.clone();
        record.connection = Some(connection);
        drop(state);
        self.inner.logs.push(
            &name,
            Level::Info,
            format!(
                "connected: version {version}, owns [{}], reads [{}]",
                owns.join(", "),
                reads.join(", ")
            ),
        );
        let mut sections = owns;
        sections.extend(reads);
        Ok(Registration {
            name,
            connection_id,
            sections,
        })
    }

    /// Marks the plugin down; waiters for its answers see the connection gone.
    fn unregister(&self, registration: &Registration) {
        let mut state = self.state();
        if let Some(record) = state.plugins.get_mut(&registration.name) {
            if record
                .connection
                .as_ref()
                .is_some_and(|c| c.id == registration.connection_id)
            {
                record.connection = None;
                // Metrics of a plugin that is down would be stale; `ztos_plugin_up` says why
                // they are gone.
                record.metrics.clear();
            }
        }
        drop(state);
        self.inner
            .logs
            .push(&registration.name, Level::Warn, "disconnected");
    }

    /// Queues a message on this registration's connection, if it is still the current one.
    fn send_to(&self, registration: &Registration, message: HostMessage) {
        let state = self.state();
        if let Some(connection) = state
            .plugins
            .get(&registration.name)
            .and_then(|r| r.connection.as_ref())
            .filter(|c| c.id == registration.connection_id)
        {
            let _ = connection.outgoing.send(message);
        }
    }

    fn send_apply(&self, registration: &Registration, current: &CurrentConfig) {
        let id = self.state().next_id();
        let message = HostMessage::Apply {
            id,
            revision: current.revision,
            sections: sections_of(&current.config, &registration.sections),
        };
        self.send_to(registration, message);
    }

    /// Handles one message from a registered plugin; `Err` is a protocol violation that
    /// closes the connection.
    fn handle_message(
        &self,
        registration: &Registration,
        message: PluginMessage,
    ) -> Result<(), String> {
        let name = registration.name.as_str();
        let logs = &self.inner.logs;
        let mut state = self.state();
        let Some(record) = state.plugins.get_mut(name).filter(|r| {
            r.connection
                .as_ref()
                .is_some_and(|c| c.id == registration.connection_id)
        }) else {
            return Err("connection is no longer registered".to_string());
        };
        match message {
            PluginMessage::Hello { .. } => return Err("second hello on one connection".to_string()),
            PluginMessage::ValidateResult { id, .. } | PluginMessage::Response { id, .. } => {
                let waiter = record
                    .connection
                    .as_mut()
                    .and_then(|c| c.pending.remove(&id));
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.send(message);
                    }
                    // An answer after its timeout: the caller has given up already.
                    None => {
                        drop(state);
                        logs.push(
                            name,
                            Level::Debug,
                            format!("ignoring late or unsolicited answer to message {id}"),
                        );
                    }
                }
            }
            PluginMessage::ApplyResult {
                revision, error, ..
            } => {
                if error.is_none() {
                    record.last_applied_revision = Some(revision);
                }
                record.last_apply_error = error.clone();
                drop(state);
                match error {
                    None => logs.push(name, Level::Info, format!("applied revision {revision}")),
                    Some(error) => logs.push(
                        name,
                        Level::Error,
                        format!("applying revision {revision} failed: {error}"),
                    ),
                }
            }
            PluginMessage::Status { status } => record.status = status,
            PluginMessage::Event { kind, message } => {
                if record.events.len() >= EVENTS_KEPT {
                    record.events.pop_front();
                }
                record.events.push_back(PluginEvent {
                    time: now_rfc3339(),
                    kind: kind.clone(),
                    message: message.clone(),
                });
                drop(state);
                logs.push(name, Level::Info, format!("{kind}: {message}"));
            }
            PluginMessage::Metrics { metrics } => {
                let mut problems = Vec::new();
                record.metrics = metrics
                    .into_iter()
                    .filter(|metric| match check_metric(metric) {
                        Ok(()) => true,
                        Err(problem) => {
                            problems.push(problem);
                            false
                        }
                    })
                    .collect();
                drop(state);
                for problem in problems {
                    logs.push(name, Level::Warn, format!("dropping metric: {problem}"));
                }
            }
            PluginMessage::Log { level, message } => {
                drop(state);
                logs.push(name, log_level(level), message);
            }
        }
        Ok(())
    }

    /// Sends a message built from a fresh id to a connected plugin and returns the id and
    /// the receiver of its answer.
    fn start_call(
        &self,
        plugin: &str,
        build: impl FnOnce(u64) -> HostMessage,
    ) -> Result<(u64, oneshot::Receiver<PluginMessage>), PluginError> {
        let mut state = self.state();
        let id = state.next_id();
        let known = owner_of_any(plugin);
        let record = match state.plugins.get_mut(plugin) {
            Some(record) => record,
            None if known => return Err(PluginError::Down(plugin.to_string())),
            None => return Err(PluginError::Unknown(plugin.to_string())),
        };
        let connection = record
            .connection
            .as_mut()
            .ok_or_else(|| PluginError::Down(plugin.to_string()))?;
        let (sender, receiver) = oneshot::channel();
        connection.pending.insert(id, sender);
        if connection.outgoing.send(build(id)).is_err() {
            connection.pending.remove(&id);
            return Err(PluginError::Down(plugin.to_string()));
        }
        Ok((id, receiver))
    }

    /// Forgets a waiter whose caller gave up.
    fn cancel_call(&self, plugin: &str, id: u64) {
        let mut state = self.state();
        if let Some(connection) = state
            .plugins
            .get_mut(plugin)
            .and_then(|r| r.connection.as_mut())
        {
            connection.pending.remove(&id);
        }
    }

    /// Asks every connected plugin that owns a section to validate `candidate`. `Ok` holds
    /// warnings (plugin-owned sections nobody validated); `Err` the vetoes that block the
    /// commit. A plugin that does not answer in time vetoes.
    pub async fn validate(&self, candidate: &Config) -> Result<Vec<String>, Vec<PluginVeto>> {
        let mut warnings = Vec::new();
        let targets: Vec<(String, Vec<String>, Vec<String>)> = {
            let state = self.state();
            state
                .plugins
                .iter()
                .filter(|(_, r)| r.connection.is_some() && !r.owns.is_empty())
                .map(|(name, r)| (name.clone(), r.owns.clone(), r.reads.clone()))
                .collect()
        };
        for (section, owner) in SECTION_OWNERS {
            let validated = targets
                .iter()
                .any(|(_, owns, _)| owns.iter().any(|s| s == section));
            if !validated && crate::config::section_value(candidate, section).is_some() {
                warnings.push(format!(
                    "{section} is not validated by its plugin: {owner} is not connected"
                ));
            }
        }
        let timeout = self.inner.timeouts.validate;
        let calls = targets.into_iter().map(|(plugin, owns, reads)| async move {
            let mut names = owns.clone();
            names.extend(reads);
            let sections = sections_of(candidate, &names);
            let started = self.start_call(&plugin, |id| HostMessage::Validate { id, sections });
            let outcome = match started {
                Ok((id, receiver)) => match tokio::time::timeout(timeout, receiver).await {
                    Ok(Ok(answer)) => Ok(answer),
                    Ok(Err(_)) => Err(None),
                    Err(_) => {
                        self.cancel_call(&plugin, id);
                        Err(Some(format!(
                            "{plugin} did not answer validation within {} s",
                            timeout.as_secs_f64()
                        )))
                    }
                },
                Err(_) => Err(None),
            };
            (plugin, owns, outcome)
        });
        let mut vetoes = Vec::new();
        for (plugin, owns, outcome) in futures::future::join_all(calls).await {
            let first_section = owns.first().cloned().unwrap_or_default();
            match outcome {
                Ok(PluginMessage::ValidateResult { errors, .. }) => {
                    if !errors.is_empty() {
                        vetoes.push(PluginVeto { plugin, errors });
                    }
                }
                Ok(other) => vetoes.push(PluginVeto {
                    errors: vec![FieldError {
                        path: first_section,
                        message: format!(
                            "{plugin} answered validation with an unexpected {} message",
                            message_type(&other)
                        ),
                    }],
                    plugin,
                }),
                Err(Some(message)) => vetoes.push(PluginVeto {
                    errors: vec![FieldError {
                        path: first_section,
                        message,
                    }],
                    plugin,
                }),
                // It went away while validating: like a plugin that is not connected.
                Err(None) => {
                    for section in owns {
                        if crate::config::section_value(candidate, &section).is_some() {
                            warnings.push(format!(
                                "{section} is not validated by its plugin: {plugin} disconnected during validation"
                            ));
                        }
                    }
                }
            }
        }
        if vetoes.is_empty() {
            Ok(warnings)
        } else {
            Err(vetoes)
        }
    }

    /// Every plugin seen since ztosd started, plus the well-known ones that never connected
    /// (`absent`), sorted by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        let state = self.state();
        let mut infos: BTreeMap<String, PluginInfo> = state
            .plugins
            .iter()
            .map(|(name, record)| (name.clone(), info_of(name, record)))
            .collect();
        drop(state);
        for (_, owner) in SECTION_OWNERS {
            infos
                .entry(owner.to_string())
                .or_insert_with(|| PluginInfo {
                    name: owner.to_string(),
                    version: None,
                    // The sections it will own once it connects.
                    owns: SECTION_OWNERS
                        .iter()
                        .filter(|(_, o)| o == owner)
                        .map(|(section, _)| section.to_string())
                        .collect(),
                    reads: Vec::new(),
                    state: PluginState::Absent,
                    connected_since: None,
                    last_applied_revision: None,
                    last_apply_error: None,
                    status: Value::Null,
                    events: Vec::new(),
                });
        }
        infos.into_values().collect()
    }

    /// One plugin by name, as in [`PluginHost::list`].
    pub fn get(&self, name: &str) -> Option<PluginInfo> {
        self.list().into_iter().find(|info| info.name == name)
    }

    /// Sends an operational request to a connected plugin and waits for its answer.
    pub async fn request(
        &self,
        plugin: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, PluginError> {
        let (id, receiver) = self.start_call(plugin, |id| HostMessage::Request {
            id,
            method: method.to_string(),
            params,
        })?;
        let timeout = self.inner.timeouts.request;
        let answer = match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => {
                return Err(PluginError::Disconnected {
                    plugin: plugin.to_string(),
                    method: method.to_string(),
                })
            }
            Err(_) => {
                self.cancel_call(plugin, id);
                return Err(PluginError::Timeout {
                    plugin: plugin.to_string(),
                    method: method.to_string(),
                    seconds: timeout.as_secs_f64(),
                });
            }
        };
        match answer {
            PluginMessage::Response { result, .. } => Result::<Value, String>::from(result)
                .map_err(|message| PluginError::Failed {
                    plugin: plugin.to_string(),
                    method: method.to_string(),
                    message,
                }),
            other => Err(PluginError::UnexpectedAnswer {
                plugin: plugin.to_string(),
                method: method.to_string(),
                answer: message_type(&other).to_string(),
            }),
        }
    }

    /// Appends the Prometheus text exposition of every connected plugin's metrics (each with
    /// a `plugin` label) and `ztos_plugin_up` for every plugin in [`PluginHost::list`].
    pub fn render_metrics(&self, out: &mut String) {
        // name -> (help, kind, samples as (plugin, metric)), in name order.
        /// The samples of one metric name, from all plugins.
        struct Family {
            help: String,
            kind: MetricKind,
            samples: Vec<(String, Metric)>,
        }
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        {
            let state = self.state();
            for (plugin, record) in &state.plugins {
                for metric in &record.metrics {
                    let family = families
                        .entry(metric.name.clone())
                        .or_insert_with(|| Family {
                            help: metric.help.clone(),
                            kind: metric.kind,
                            samples: Vec::new(),
                        });
                    // A second plugin using the name with another type would make the
                    // family invalid; the first type wins and the odd samples are left out.
                    if family.kind == metric.kind {
                        family.samples.push((plugin.clone(), metric.clone()));
                    }
                }
            }
        }
        let mut text = PromText::new(out);
        for (name, family) in &families {
            let mut samples = text.family(name, family.kind.into(), &family.help);
            for (plugin, metric) in &family.samples {
                let labels: Vec<(&str, &str)> = std::iter::once(("plugin", plugin.as_str()))
                    .chain(metric.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .collect();
                samples.sample(&labels, metric.value);
            }
        }
        let mut up = text.family(
            "ztos_plugin_up",
            PromType::Gauge,
            "Whether the plugin is connected to ztosd (1) or not (0).",
        );
        for info in self.list() {
            up.sample(
                &[("plugin", &info.name)],
                u8::from(info.state == PluginState::Up),
            );
        }
    }
}

/// Whether `plugin` is one of the well-known plugins of [`SECTION_OWNERS`].
fn owner_of_any(plugin: &str) -> bool {
    SECTION_OWNERS.iter().any(|(_, owner)| *owner == plugin)
}

fn info_of(name: &str, record: &PluginRecord) -> PluginInfo {
    let skip = record.events.len().saturating_sub(EVENTS_LISTED);
    PluginInfo {
        name: name.to_string(),
        version: Some(record.version.clone()),
        owns: record.owns.clone(),
        reads: record.reads.clone(),
        state: if record.connection.is_some() {
            PluginState::Up
        } else {
            PluginState::Down
        },
        connected_since: record
            .connection
            .as_ref()
            .and_then(|c| c.since.format(&Rfc3339).ok()),
        last_applied_revision: record.last_applied_revision,
        last_apply_error: record.last_apply_error.clone(),
        status: record.status.clone(),
        events: record.events.iter().skip(skip).cloned().collect(),
    }
}

/// The named sections of `config` as JSON; `null` for absent or empty ones.
fn sections_of(config: &Config, names: &[String]) -> Sections {
    names
        .iter()
        .map(|name| {
            let value = crate::config::section_value(config, name).unwrap_or(Value::Null);
            (name.clone(), value)
        })
        .collect()
}

/// Removes a stale socket at `path` (refusing to remove anything else), binds, and makes the
/// socket owner-only.
fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?,
        Ok(_) => anyhow::bail!("{} exists and is not a socket", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to mode 0600", path.display()))?;
    Ok(listener)
}

async fn write_loop(
    mut writer: tokio::net::unix::OwnedWriteHalf,
    mut outgoing: mpsc::UnboundedReceiver<HostMessage>,
) {
    while let Some(message) = outgoing.recv().await {
        if write_message(&mut writer, &message).await.is_err() {
            // The reader side notices the broken connection and unregisters.
            return;
        }
    }
}

/// The wire name of a plugin message, for error messages.
fn message_type(message: &PluginMessage) -> &'static str {
    match message {
        PluginMessage::Hello { .. } => "hello",
        PluginMessage::ValidateResult { .. } => "validate_result",
        PluginMessage::ApplyResult { .. } => "apply_result",
        PluginMessage::Status { .. } => "status",
        PluginMessage::Event { .. } => "event",
        PluginMessage::Metrics { .. } => "metrics",
        PluginMessage::Log { .. } => "log",
        PluginMessage::Response { .. } => "response",
    }
}

fn log_level(level: LogLevel) -> Level {
    match level {
        LogLevel::Error => Level::Error,
        LogLevel::Warn => Level::Warn,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
        LogLevel::Trace => Level::Trace,
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Checks that a plugin's metric can be exposed as is: valid Prometheus names, and neither
/// the `plugin` label nor the `ztos_plugin_up` name, which the host sets itself.
fn check_metric(metric: &Metric) -> Result<(), String> {
    fn valid_name(name: &str, colon: bool) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    if !valid_name(&metric.name, true) {
        return Err(format!("metric name {:?} is not valid", metric.name));
    }
    if metric.name == "ztos_plugin_up" {
        return Err("metric name ztos_plugin_up is reserved for ztosd".to_string());
    }
    for key in metric.labels.keys() {
        if !valid_name(key, false) || key.starts_with("__") {
            return Err(format!(
                "label name {key:?} of metric {} is not valid",
                metric.name
            ));
        }
        if key == "plugin" {
            return Err(format!(
                "label name plugin of metric {} is reserved for ztosd",
                metric.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogQuery, DEFAULT_RING_BYTES};
    use serde_json::json;
    use tokio::io::AsyncWriteExt;
    use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

    const STEP: Duration = Duration::from_secs(10);

    struct Fixture {
        host: PluginHost,
        logs: LogHub,
        commits: watch::Sender<Arc<CurrentConfig>>,
        socket: std::path::PathBuf,
        _dir: tempfile::TempDir,
    }

    fn config(value: Value) -> Config {
        serde_json::from_value(value).expect("test config is valid")
    }

    async fn fixture(timeouts: HostTimeouts) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/plugin.sock");
        let logs = LogHub::new(DEFAULT_RING_BYTES, None);
        let (commits, current) = watch::channel(Arc::new(CurrentConfig {
            revision: 1,
            config: config(json!({"bgp": {"local_as": 65001}})),
        }));
        let host = PluginHost::with_timeouts(logs.clone(), current, timeouts);
        let server = host.clone();
        let path = socket.clone();
        tokio::spawn(async move { server.serve(&path).await });
        for _ in 0..200 {
            if UnixStream::connect(&socket).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Fixture {
            host,
            logs,
            commits,
            socket,
            _dir: dir,
        }
    }

    fn commit(fixture: &Fixture, revision: u64, value: Value) {
        fixture.commits.send_replace(Arc::new(CurrentConfig {
            revision,
            config: config(value),
        }));
    }

    /// A plugin speaking the raw protocol, so tests control every byte.
    struct FakePlugin {
        reader: MessageReader<OwnedReadHalf>,
        writer: OwnedWriteHalf,
    }

    impl FakePlugin {
        async fn connect(socket: &Path) -> FakePlugin {
            let (read, writer) = UnixStream::connect(socket).await.unwrap().into_split();
            FakePlugin {
                reader: MessageReader::new(read),
                writer,
            }
        }

        async fn hello(socket: &Path, name: &str, owns: &[&str], reads: &[&str]) -> FakePlugin {
            let mut plugin = FakePlugin::connect(socket).await;
            plugin
                .send(PluginMessage::Hello {
                    protocol_version: PROTOCOL_VERSION,
                    name: name.into(),
                    version: "9.9.9".into(),
                    owns: owns.iter().map(|s| s.to_string()).collect(),
                    reads: reads.iter().map(|s| s.to_string()).collect(),
                })
                .await;
            plugin
        }

        /// Connects and consumes welcome; returns the first apply.
        async fn up(
            socket: &Path,
            name: &str,
            owns: &[&str],
            reads: &[&str],
        ) -> (FakePlugin, HostMessage) {
            let mut plugin = FakePlugin::hello(socket, name, owns, reads).await;
            assert!(matches!(
                plugin.receive().await,
                Some(HostMessage::Welcome {
                    protocol_version: PROTOCOL_VERSION,
                    ..
                })
            ));
            let apply = plugin.receive().await.expect("apply after welcome");
            (plugin, apply)
        }

        async fn send(&mut self, message: PluginMessage) {
            write_message(&mut self.writer, &message).await.unwrap();
        }

        async fn receive(&mut self) -> Option<HostMessage> {
            tokio::time::timeout(STEP, self.reader.next_message::<HostMessage>())
                .await
                .expect("the host answers in time")
                .unwrap()
        }
    }

    async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        for _ in 0..500 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    fn log_lines(logs: &LogHub, service: &str) -> Vec<String> {
        logs.query(&LogQuery {
            service: Some(service.to_string()),
            ..Default::default()
        })
        .into_iter()
        .map(|entry| entry.message)
        .collect()
    }

    fn apply_of(revision: u64, sections: Value) -> impl Fn(&HostMessage) -> bool {
        let sections: Sections = serde_json::from_value(sections).unwrap();
        move |m| matches!(m, HostMessage::Apply { revision: r, sections: s, .. } if *r == revision && *s == sections)
    }

    #[test]
    fn the_plugin_socket_is_in_the_runtime_directory() {
        // The SDK defines it (plugins do not depend on ztos-image); the layout names the
        // directory init creates for it.
        assert_eq!(
            std::path::Path::new(ztos_plugin::protocol::DEFAULT_SOCKET_PATH).parent(),
            Some(std::path::Path::new(ztos_image::layout::RUN_DIR))
        );
    }

    #[test]
    fn owner_table_names_plugin_sections_of_the_config() {
        assert_eq!(owner_of("bgp"), Some("ztos-bgp"));
        assert_eq!(owner_of("policy"), Some("ztos-wireguard"));
        assert_eq!(owner_of("interfaces"), None);
        for (section, _) in SECTION_OWNERS {
            assert!(crate::config::SECTIONS.contains(section), "{section}");
        }
    }

    #[tokio::test]
    async fn hello_gets_welcome_and_the_current_config() {
        let f = fixture(HostTimeouts::default()).await;
        let (mut plugin, apply) =
            FakePlugin::up(&f.socket, "ztos-bgp", &["bgp"], &["tenants"]).await;
        assert!(
            apply_of(1, json!({"bgp": {"local_as": 65001}, "tenants": null}))(&apply),
            "{apply:?}"
        );
        let HostMessage::Apply { id, .. } = apply else {
            unreachable!()
        };
        plugin
            .send(PluginMessage::ApplyResult {
                id,
                revision: 1,
                error: None,
            })
            .await;
        plugin
            .send(PluginMessage::Status {
                status: json!({"neighbors": 0}),
            })
            .await;
        eventually("the apply is recorded", || {
            f.host.get("ztos-bgp").is_some_and(|p| {
                p.last_applied_revision == Some(1) && p.status == json!({"neighbors": 0})
            })
        })
        .await;
        let info = f.host.get("ztos-bgp").unwrap();
        assert_eq!(info.state, PluginState::Up);
        assert_eq!(info.version.as_deref(), Some("9.9.9"));
        assert_eq!(info.owns, vec!["bgp"]);
        assert_eq!(info.reads, vec!["tenants"]);
        assert!(info.connected_since.is_some());
        // The well-known plugins that never connected are listed as absent.
        let absent = f.host.get("ztos-wireguard").unwrap();
        assert_eq!(absent.state, PluginState::Absent);
        assert_eq!(absent.owns, vec!["wireguard", "policy"]);
        assert_eq!(
            f.host
                .list()
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            [
                "ztos-bgp",
                "ztos-gpu-offload",
                "ztos-macsec",
                "ztos-wireguard"
            ]
        );
        assert!(log_lines(&f.logs, "ztos-bgp").contains(&"applied revision 1".to_string()));
    }

    #[tokio::test]
    async fn every_new_revision_is_applied_and_apply_errors_are_kept() {
        let f = fixture(HostTimeouts::default()).await;
        let (mut plugin, _) = FakePlugin::up(&f.socket, "ztos-bgp", &["bgp"], &[]).await;
        commit(&f, 2, json!({"bgp": {"local_as": 65002}}));
        let apply = plugin.receive().await.unwrap();
        assert!(
            apply_of(2, json!({"bgp": {"local_as": 65002}}))(&apply),
            "{apply:?}"
        );
        let HostMessage::Apply { id, .. } = apply else {
            unreachable!()
        };
        plugin
            .send(PluginMessage::ApplyResult {
                id,
                revision: 2,
                error: Some("cannot bind 0.0.0.0:179".into()),
            })
            .await;
        eventually("the apply error is recorded", || {
            f.host.get("ztos-bgp").unwrap().last_apply_error.as_deref()
                == Some("cannot bind 0.0.0.0:179")
        })
        .await;
        assert!(log_lines(&f.logs, "ztos-bgp")
            .contains(&"applying revision 2 failed: cannot bind 0.0.0.0:179".to_string()));
        // Removing the section hands the plugin null.
        commit(&f, 3, json!({}));
        let apply = plugin.receive().await.unwrap();
        assert!(apply_of(3, json!({"bgp": null}))(&apply), "{apply:?}");
    }

    #[tokio::test]
    async fn plugin_veto_blocks_and_acceptance_passes() {
        let f = fixture(HostTimeouts::default()).await;
        let (mut plugin, _) = FakePlugin::up(&f.socket, "ztos-bgp", &["bgp"], &["tenants"]).await;
        let answering = tokio::spawn(async move {
            for round in 0..2 {
                let Some(HostMessage::Validate { id, sections }) = plugin.receive().await else {
                    panic!("expected validate");
                };
                assert_eq!(sections["bgp"]["local_as"], json!(65010));
                assert_eq!(sections["tenants"], Value::Null);
                let errors = if round == 0 {
                    vec![FieldError {
                        path: "bgp.local_as".into(),
                        message: "65010 is reserved in this lab".into(),
                    }]
                } else {
                    vec![]
                };
                plugin
                    .send(PluginMessage::ValidateResult { id, errors })
                    .await;
            }
            plugin
        });
        let candidate = config(json!({"bgp": {"local_as": 65010}, "wireguard": {}}));
        let vetoes = f.host.validate(&candidate).await.unwrap_err();
        assert_eq!(
            vetoes,
            vec![PluginVeto {
                plugin: "ztos-bgp".into(),
                errors: vec![FieldError {
                    path: "bgp.local_as".into(),
                    message: "65010 is reserved in this lab".into()
                }],
            }]
        );
        // The wireguard section has no plugin connected: a warning, not a veto.
        assert_eq!(
            f.host.validate(&candidate).await.unwrap(),
            vec!["wireguard is not validated by its plugin: ztos-wireguard is not connected"]
        );
        answering.await.unwrap();
    }

    #[tokio::test]
    async fn silent_plugin_vetoes_with_a_timeout() {
        let f = fixture(HostTimeouts {
            validate: Duration::from_millis(200),
            ..Default::default()
        })
        .await;
        let (_plugin, _) = FakePlugin::up(&f.socket, "ztos-macsec", &["macsec"], &[]).await;
        let vetoes = f.host.validate(&Config::default()).await.unwrap_err();
        assert_eq!(
            vetoes,
            vec![PluginVeto {
                plugin: "ztos-macsec".into(),
                errors: vec![FieldError {
                    path: "macsec".into(),
                    message: "ztos-macsec did not answer validation within 0.2 s".into()
                }],
            }]
        );
    }

    #[tokio::test]
    async fn disconnect_shows_down_and_reconnect_gets_the_current_config() {
        let f = fixture(HostTimeouts::default()).await;
        let (plugin, _) = FakePlugin::up(&f.socket, "ztos-bgp", &["bgp"], &[]).await;
        drop(plugin);
        eventually("the plugin shows down", || {
            f.host.get("ztos-bgp").unwrap().state == PluginState::Down
        })
        .await;
        assert_eq!(f.host.get("ztos-bgp").unwrap().connected_since, None);
        let error = f
            .host
            .request("ztos-bgp", "bgp summary", Value::Null)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "plugin ztos-bgp is not connected");
        commit(&f, 7, json!({"bgp": {"local_as": 65007}}));
        let (_plugin, apply) = FakePlugin::up(&f.socket, "ztos-bgp", &["bgp"], &[]).await;
        assert!(
            apply_of(7, json!({"bgp": {"local_as": 65007}}))(&apply),
            "{apply:?}"
        );
        assert_eq!(f.host.get("ztos-bgp").unwrap().state, PluginState::Up);
    }

    #[tokio::test]
    async fn conflicting_or_invalid_hellos_are_rejected() {
        let f = fixture(HostTimeouts::default()).await;
        let (_bgp, _) = FakePlugin::up(&f.socket, "ztos-bgp", &["bgp"], &[]).await;
        let cases: [(&str, &[&str], &[&str], &str); 5] = [
            (
                "other-bgp",
                &["bgp"],
                &[],
                "section bgp is already owned by connected plugin ztos-bgp",
            ),
            (
                "ztos-bgp",
                &[],
                &[],
                "a plugin named ztos-bgp is already connected",
            ),
            (
                "ztos-x",
                &["nosuch"],
                &[],
                "unknown config section \"nosuch\"",
            ),
            (
                "ztos-x",
                &[],
                &["nosuch"],
                "unknown config section \"nosuch\"",
            ),
            (
                "ztos-x",
                &["interfaces"],
                &[],
                "section interfaces is managed by ztosd and cannot be owned by a plugin",
            ),
        ];
        for (name, owns, reads, reason) in cases {
            let mut plugin = FakePlugin::hello(&f.socket, name, owns, reads).await;
            assert_eq!(
                plugin.receive().await,
                Some(HostMessage::Reject {
                    reason: reason.into()
                })
            );
            assert_eq!(
                plugin.receive().await,
                None,
                "the connection is closed after a reject"
            );
        }
        let mut plugin = FakePlugin::connect(&f.socket).await;
        plugin
            .send(PluginMessage::Hello {
                protocol_version: 2,
                name: "ztos-x".into(),
                version: "1".into(),
                owns: vec![],
                reads: vec![],
            })
            .await;
        assert_eq!(
            plugin.receive().await,
            Some(HostMessage::Reject {
                reason: "protocol version 2 is not supported (this ztosd speaks 1)".into()
            })
        );
        assert!(log_lines(&f.logs, HOST_SERVICE).contains(
            &"refused plugin other-bgp: section bgp is already owned by connected plugin ztos-bgp"
                .to_string()
        ));
        // The first plugin is unaffected.
        assert_eq!(f.host.get("ztos-bgp").unwrap().state, PluginState::Up);
    }

    #[tokio::test]
    async fn a_connection_must_start_with_hello_in_time() {
        let f = fixture(HostTimeouts {
            hello: Duration::from_millis(200),
            ..Default::default()
        })
        .await;
        let mut silent = FakePlugin::connect(&f.socket).await;
        assert_eq!(
            silent.receive().await,
            Some(HostMessage::Reject {
                reason: "no hello within 0.2 s".into()
            })
        );
        assert_eq!(silent.receive().await, None);
        let mut rude = FakePlugin::connect(&f.socket).await;
        rude.send(PluginMessage::Status { status: json!({}) }).await;
        assert_eq!(
            rude.receive().await,
            Some(HostMessage::Reject {
                reason: "expected hello, got status".into()
            })
        );
        assert!(log_lines(&f.logs, HOST_SERVICE)
            .contains(&"refused a plugin: expected hello, got status".to_string()));
        assert_eq!(
            f.host
                .list()
                .iter()
                .filter(|p| p.state != PluginState::Absent)
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn garbage_and_oversized_lines_close_only_that_connection() {
        let f = fixture(HostTimeouts::default()).await;
        let (mut good, _) = FakePlugin::up(&f.socket, "ztos-bgp", &["bgp"], &[]).await;

        let (mut garbage, _) = FakePlugin::up(&f.socket, "ztos-macsec", &["macsec"], &[]).await;
        garbage
            .writer
            .write_all(b"this is not json\n")
            .await
            .unwrap();
        let Some(HostMessage::Reject { reason }) = garbage.receive().await else {
            panic!("expected a reject");
        };
        assert!(
            reason.starts_with("message \"this is not json\" is not valid"),
            "{reason}"
        );
        assert_eq!(garbage.receive().await, None);
        assert!(log_lines(&f.logs, "ztos-macsec")
            .contains(&format!("closing the connection: {reason}")));

        let (oversized, _) =
            FakePlugin::up(&f.socket, "ztos-gpu-offload", &["gpu_offload"], &[]).await;
        let FakePlugin { reader, mut writer } = oversized;
        let mut oversized_reader = reader;
        // Written from another task: the host stops reading once the line is too long.
        let flood = tokio::spawn(async move {
            let chunk = vec![b'x'; 1024 * 1024];
            for _ in 0..17 {
                if writer.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let answer = tokio::time::timeout(STEP, oversized_reader.next_message::<HostMessage>())
            .await
            .unwrap()
            .unwrap();
        let Some(HostMessage::Reject { reason }) = answer else {
            panic!("expected a reject");
        };
        assert!(
            reason.contains("exceeds the limit of 16777216 bytes"),
            "{reason}"
        );
        flood.await.unwrap();
        eventually("the oversized plugin shows down", || {
            f.host.get("ztos-gpu-offload").unwrap().state == PluginState::Down
        })
        .await;

        // The well-behaved plugin still answers.
        let request = {
            let host = f.host.clone();
            tokio::spawn(async move { host.request("ztos-bgp", "echo", json!([1])).await })
        };
        let Some(HostMessage::Request { id, method, params }) = good.receive().await else {
            panic!("expected a request");
        };
        assert_eq!((method.as_str(), &params), ("echo", &json!([1])));
        good.send(PluginMessage::Response {
            id,
            result: Ok(params).into(),
        })
        .await;
        assert_eq!(request.await.unwrap().unwrap(), json!([1]));
        assert_eq!(f.host.get("ztos-bgp").unwrap().state, PluginState::Up);
    }

    #[tokio::test]
    async fn requests_report_failures_and_timeouts() {
        let f = fixture(HostTimeouts {
            request: Duration::from_millis(200),
            ..Default::default()
        })
        .await;
        let (mut plugin, _) = FakePlugin::up(&f.socket, "ztos-bgp", &["bgp"], &[]).await;
        let host = f.host.clone();
        let request = tokio::spawn(async move {
            host.request("ztos-bgp", "bgp frobnicate", Value::Null)
                .await
        });
        let Some(HostMessage::Request { id, .. }) = plugin.receive().await else {
            panic!("expected a request")
        };
        plugin
            .send(PluginMessage::Response {
                id,
                result: Err("unknown method bgp frobnicate".to_string()).into(),
            })
            .await;
        assert_eq!(
            request.await.unwrap().unwrap_err().to_string(),
            "plugin ztos-bgp failed bgp frobnicate: unknown method bgp frobnicate"
        );
        let error = f
            .host
            .request("ztos-bgp", "bgp summary", Value::Null)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "plugin ztos-bgp did not answer bgp summary within 0.2 s"
        );
        let error = f
            .host
            .request("nosuch", "x", Value::Null)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "plugin nosuch is not known");
    }

    #[tokio::test]
    async fn logs_events_and_metrics_are_collected_and_rendered() {
        let f = fixture(HostTimeouts::default()).await;
        let (mut bgp, _) = FakePlugin::up(&f.socket, "ztos-bgp", &["bgp"], &[]).await;
        let (mut wg, _) =
            FakePlugin::up(&f.socket, "ztos-wireguard", &["wireguard", "policy"], &[]).await;
        bgp.send(PluginMessage::Log {
            level: LogLevel::Warn,
            message: "neighbor 10.0.0.2 is flapping".into(),
        })
        .await;
        for i in 0..12 {
            bgp.send(PluginMessage::Event {
                kind: "neighbor_down".into(),
                message: format!("flap {i}"),
            })
            .await;
        }
        let metric = |name: &str, help: &str, labels: &[(&str, &str)], value: f64| Metric {
            name: name.into(),
            help: help.into(),
            kind: MetricKind::Counter,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        };
        bgp.send(PluginMessage::Metrics {
            metrics: vec![
                metric(
                    "ztos_packets_total",
                    "Packets handled.\nBy plugin",
                    &[("peer", "a\"b\\c\nd")],
                    5.0,
                ),
                metric("bad name", "x", &[], 1.0),
                metric("ztos_x_total", "x", &[("plugin", "spoof")], 1.0),
            ],
        })
        .await;
        wg.send(PluginMessage::Metrics {
            metrics: vec![metric("ztos_packets_total", "Other help", &[], 7.5)],
        })
        .await;
        eventually("all messages are handled", || {
            let mut out = String::new();
            f.host.render_metrics(&mut out);
            out.contains("7.5") && f.host.get("ztos-bgp").unwrap().events.len() == 10
        })
        .await;
        let mut out = String::new();
        f.host.render_metrics(&mut out);
        assert_eq!(
            out,
            concat!(
                "# HELP ztos_packets_total Packets handled.\\nBy plugin\n",
                "# TYPE ztos_packets_total counter\n",
                "ztos_packets_total{plugin=\"ztos-bgp\",peer=\"a\\\"b\\\\c\\nd\"} 5\n",
                "ztos_packets_total{plugin=\"ztos-wireguard\"} 7.5\n",
                "# HELP ztos_plugin_up Whether the plugin is connected to ztosd (1) or not (0).\n",
                "# TYPE ztos_plugin_up gauge\n",
                "ztos_plugin_up{plugin=\"ztos-bgp\"} 1\n",
                "ztos_plugin_up{plugin=\"ztos-gpu-offload\"} 0\n",
                "ztos_plugin_up{plugin=\"ztos-macsec\"} 0\n",
                "ztos_plugin_up{plugin=\"ztos-wireguard\"} 1\n",
            )
        );
        let events = f.host.get("ztos-bgp").unwrap().events;
        assert_eq!(events.first().unwrap().message, "flap 2");
        assert_eq!(events.last().unwrap().message, "flap 11");
        let lines = log_lines(&f.logs, "ztos-bgp");
        assert!(lines.contains(&"neighbor 10.0.0.2 is flapping".to_string()));
        assert!(lines.contains(&"neighbor_down: flap 11".to_string()));
        assert!(
            lines.contains(&"dropping metric: metric name \"bad name\" is not valid".to_string())
        );
        assert!(lines.contains(
            &"dropping metric: label name plugin of metric ztos_x_total is reserved for ztosd"
                .to_string()
        ));
        // A plugin that goes down takes its metrics with it.
        drop(wg);
        eventually("wireguard shows down", || {
            f.host.get("ztos-wireguard").unwrap().state == PluginState::Down
        })
        .await;
        let mut out = String::new();
        f.host.render_metrics(&mut out);
        assert!(!out.contains("7.5"));
        assert!(out.contains("ztos_plugin_up{plugin=\"ztos-wireguard\"} 0\n"));
    }

    #[tokio::test]
    async fn serve_replaces_a_stale_socket_and_restricts_it() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("plugin.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let listener = bind(&socket).unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(listener);
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, b"keep me").unwrap();
        let error = bind(&file).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{} exists and is not a socket", file.display())
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    }
}
