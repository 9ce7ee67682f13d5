//! The client library plugins are written with: it connects to ztosd's plugin socket, says
//! Hello, hands validate/apply/request calls to a [`Handler`], and keeps reconnecting with
//! exponential backoff when ztosd goes away.
//!
//! ```text
//!             PluginSender (cloneable: status, events, metrics, logs)
//!                  |
//!                  v
//!   Handler <-- run loop --reads--  unix socket  --writes-- writer task <-- replies
//! ```
//!
//! The run loop owns the handler and calls it for one host message at a time. The plugin's
//! own state (its datapath, sessions, tunnels) lives in the handler and is never touched by a
//! reconnect: after reconnecting, the host sends the current configuration again with an
//! `apply`, and the handler decides what, if anything, changed. The latest status and metrics
//! are sent again after every reconnect; events and log lines produced while disconnected
//! are queued (at most [`QUEUE_LIMIT`], oldest dropped first).

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Notify};

use crate::protocol::{
    FieldError, HostMessage, LogLevel, Metric, PluginMessage, Sections, DEFAULT_SOCKET_PATH,
    PROTOCOL_VERSION,
};
use crate::transport::{write_message, MessageReader, ReadError};

/// How many events and log lines are kept while the host is unreachable.
pub const QUEUE_LIMIT: usize = 1024;

/// How long the client waits for `welcome` after sending `hello`.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// What a plugin does when the host asks. Calls come one at a time, in the order the host sent
/// them; while one runs, no other starts.
pub trait Handler: Send + 'static {
    /// Why an apply or a request failed; its text is what ztosd and the operator see.
    type Error: std::fmt::Display + Send + From<UnknownMethod>;

    /// Checks candidate sections (owned and read; `null` when absent) and returns one error
    /// per bad value with its full config path. No errors means the candidate is acceptable.
    /// Must not change the running state.
    fn validate(&mut self, sections: Sections) -> impl Future<Output = Vec<FieldError>> + Send;

    /// Makes the sections of committed revision `revision` effective. Called after every
    /// (re)connect with the current configuration, so it must be idempotent.
    fn apply(
        &mut self,
        revision: u64,
        sections: Sections,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Answers an operational query such as `bgp summary`. The default knows no method.
    fn request(
        &mut self,
        method: String,
        params: Value,
    ) -> impl Future<Output = Result<Value, Self::Error>> + Send {
        let _ = params;
        async move { Err(UnknownMethod(method).into()) }
    }
}

/// A request for a method the plugin does not answer; every plugin's error type converts
/// from it, so [`Handler::request`]'s default can answer with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown method {0}")]
pub struct UnknownMethod(pub String);

/// Why one connection to ztosd ended; [`PluginClient::run`] logs it and reconnects.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot send hello: {0}")]
    Hello(std::io::Error),
    #[error("no welcome within {0:?}")]
    WelcomeTimeout(Duration),
    #[error("ztosd rejected the plugin: {0}")]
    Rejected(String),
    #[error("expected welcome, got {0}")]
    NotWelcome(String),
    #[error("ztosd closed the connection before welcome")]
    ClosedBeforeWelcome,
    #[error("ztosd closed the connection")]
    Closed,
    #[error("ztosd closed the connection: {0}")]
    ClosedWithReason(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("protocol error: second welcome")]
    SecondWelcome,
    #[error("{0}")]
    Read(ReadError),
    #[error("writing to ztosd failed")]
    Write,
}

/// Why [`PluginClient::run`] returned: the host asked the plugin to exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shutdown {
    pub reason: String,
}

/// Reconnect delays: 100 ms, doubling up to 5 s, back to 100 ms after a successful welcome.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const INITIAL: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Backoff {
            next: Self::INITIAL,
        }
    }

    /// The delay before the next attempt; each call doubles the following one up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = Self::INITIAL;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Messages waiting to be written, shared by all [`PluginSender`] clones and the writer.
#[derive(Debug, Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct OutboxState {
    /// The latest status; `status_pending` says whether the host has not seen it yet.
    status: Option<Value>,
    status_pending: bool,
    metrics: Option<Vec<Metric>>,
    metrics_pending: bool,
    /// Events and log lines, in order.
    queue: VecDeque<PluginMessage>,
    /// Queue entries dropped because the queue was full, reported after reconnecting.
    dropped: u64,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        // A panic while holding this lock leaves the state consistent (plain field writes),
        // so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn enqueue(&self, message: PluginMessage) {
        {
            let mut state = self.lock();
            if state.queue.len() >= QUEUE_LIMIT {
                state.queue.pop_front();
                state.dropped += 1;
            }
            state.queue.push_back(message);
        }
        self.notify.notify_one();
    }

    /// Marks the latest status and metrics as unsent, for a fresh connection.
    fn resend_latest(&self) {
        let mut state = self.lock();
        state.status_pending = state.status.is_some();
        state.metrics_pending = state.metrics.is_some();
    }

    /// Everything that should be written now, in order: status, metrics, then the queue.
    fn take_pending(&self) -> Vec<PluginMessage> {
        let mut state = self.lock();
        let mut out = Vec::new();
        if state.status_pending {
            state.status_pending = false;
            if let Some(status) = &state.status {
                out.push(PluginMessage::Status {
                    status: status.clone(),
                });
            }
        }
        if state.metrics_pending {
            state.metrics_pending = false;
            if let Some(metrics) = &state.metrics {
                out.push(PluginMessage::Metrics {
                    metrics: metrics.clone(),
                });
            }
        }
        if state.dropped > 0 {
            out.push(PluginMessage::Log {
                level: LogLevel::Warn,
                message: format!(
                    "{} events and log lines were dropped while ztosd was unreachable",
                    state.dropped
                ),
            });
            state.dropped = 0;
        }
        out.extend(state.queue.drain(..));
        out
    }
}

/// A cloneable handle to push status, events, metrics and log lines to the host at any time,
/// connected or not.
#[derive(Debug, Clone)]
pub struct PluginSender {
    outbox: Arc<Outbox>,
}

impl PluginSender {
    /// Replaces the plugin's status (shown by `ztos show plugins`).
    pub fn status(&self, status: Value) {
        {
            let mut state = self.outbox.lock();
            state.status = Some(status);
            state.status_pending = true;
        }
        self.outbox.notify.notify_one();
    }

    /// Reports something that happened.
    pub fn event(&self, kind: impl Into<String>, message: impl Into<String>) {
        self.outbox.enqueue(PluginMessage::Event {
            kind: kind.into(),
            message: message.into(),
        });
    }

    /// Replaces the plugin's complete set of metrics.
    pub fn metrics(&self, metrics: Vec<Metric>) {
        {
            let mut state = self.outbox.lock();
            state.metrics = Some(metrics);
            state.metrics_pending = true;
        }
        self.outbox.notify.notify_one();
    }

    /// Sends a log line to ztosd's log.
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        self.outbox.enqueue(PluginMessage::Log {
            level,
            message: message.into(),
        });
    }
}

/// A plugin's connection to ztosd. Build it, take a [`PluginSender`] if needed, then
/// [`run`](PluginClient::run) it with a handler.
///
/// ```no_run
/// # use ztos_plugin::client::{Handler, PluginClient, UnknownMethod};
/// # use ztos_plugin::protocol::{FieldError, Sections};
/// #[derive(Debug, thiserror::Error)]
/// enum BgpError {
///     #[error(transparent)]
///     UnknownMethod(#[from] UnknownMethod),
/// }
/// struct Bgp;
/// impl Handler for Bgp {
///     type Error = BgpError;
///     async fn validate(&mut self, _sections: Sections) -> Vec<FieldError> { Vec::new() }
///     async fn apply(&mut self, _revision: u64, _sections: Sections) -> Result<(), BgpError> { Ok(()) }
/// }
/// # async fn example() {
/// let client = PluginClient::new("ztos-bgp", env!("CARGO_PKG_VERSION"))
///     .owns("bgp")
///     .reads("tenants");
/// let shutdown = client.run(Bgp).await;
/// # }
/// ```
#[derive(Debug)]
pub struct PluginClient {
    socket_path: PathBuf,
    name: String,
    version: String,
    owns: Vec<String>,
    reads: Vec<String>,
    outbox: Arc<Outbox>,
}

impl PluginClient {
    /// A client for plugin `name` at `version`, connecting to [`DEFAULT_SOCKET_PATH`].
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        PluginClient {
            socket_path: PathBuf::from(DEFAULT_SOCKET_PATH),
            name: name.into(),
            version: version.into(),
            owns: Vec::new(),
            reads: Vec::new(),
            outbox: Arc::default(),
        }
    }

    /// Connects to another socket path.
    pub fn socket_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket_path = path.into();
        self
    }

    /// Adds a config section this plugin owns: it validates and applies it.
    pub fn owns(mut self, section: impl Into<String>) -> Self {
        self.owns.push(section.into());
        self
    }

    /// Adds a config section this plugin only reads.
    pub fn reads(mut self, section: impl Into<String>) -> Self {
        self.reads.push(section.into());
        self
    }

    /// A handle to push status, events, metrics and log lines.
    pub fn sender(&self) -> PluginSender {
        PluginSender {
            outbox: self.outbox.clone(),
        }
    }

    /// Connects and serves the host until it sends `shutdown`, reconnecting with
    /// [`Backoff`] whenever the connection fails, is refused or is lost. Never returns
    /// otherwise.
    pub async fn run<H: Handler>(self, mut handler: H) -> Shutdown {
        let mut backoff = Backoff::new();
        loop {
            match self.run_connection(&mut handler, &mut backoff).await {
                Ok(shutdown) => return shutdown,
                Err(reason) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        socket = %self.socket_path.display(),
                        "plugin connection ended: {reason}; retrying in {delay:?}"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One connection: hello, welcome, then serve until shutdown (`Ok`) or failure (`Err`
    /// with the reason).
    async fn run_connection<H: Handler>(
        &self,
        handler: &mut H,
        backoff: &mut Backoff,
    ) -> Result<Shutdown, ConnectionError> {
        let stream = UnixStream::connect(&self.socket_path)
            .await
            .map_err(|source| ConnectionError::Connect {
                path: self.socket_path.display().to_string(),
                source,
            })?;
        let (read_half, mut write_half) = stream.into_split();
        let mut reader = MessageReader::new(read_half);
        let hello = PluginMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            name: self.name.clone(),
            version: self.version.clone(),
            owns: self.owns.clone(),
            reads: self.reads.clone(),
        };
        write_message(&mut write_half, &hello)
            .await
            .map_err(ConnectionError::Hello)?;
        let first = tokio::time::timeout(WELCOME_TIMEOUT, reader.next_message::<HostMessage>())
            .await
            .map_err(|_| ConnectionError::WelcomeTimeout(WELCOME_TIMEOUT))?;
        match first {
            Ok(Some(HostMessage::Welcome { host_version, .. })) => {
                tracing::info!(%host_version, "connected to ztosd");
                backoff.reset();
            }
            Ok(Some(HostMessage::Reject { reason })) => {
                return Err(ConnectionError::Rejected(reason))
            }
            Ok(Some(other)) => return Err(ConnectionError::NotWelcome(format!("{other:?}"))),
            Ok(None) => return Err(ConnectionError::ClosedBeforeWelcome),
            Err(e) => return Err(ConnectionError::Read(e)),
        }

        self.outbox.resend_latest();
        let (replies, replies_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(write_half, replies_rx, self.outbox.clone()));
        // Aborts the writer whichever way this connection ends.
        let _writer_guard = AbortOnDrop(writer);

        loop {
            let message = match reader.next_message::<HostMessage>().await {
                Ok(Some(message)) => message,
                Ok(None) => return Err(ConnectionError::Closed),
                Err(ReadError::Decode(e)) => return Err(ConnectionError::Protocol(e.to_string())),
                Err(e) => return Err(ConnectionError::Read(e)),
            };
            let reply = match message {
                HostMessage::Validate { id, sections } => {
                    let errors = handler.validate(sections).await;
                    PluginMessage::ValidateResult { id, errors }
                }
                HostMessage::Apply {
                    id,
                    revision,
                    sections,
                } => {
                    let error = handler
                        .apply(revision, sections)
                        .await
                        .err()
                        .map(|e| e.to_string());
                    PluginMessage::ApplyResult {
                        id,
                        revision,
                        error,
                    }
                }
                HostMessage::Request { id, method, params } => {
                    let result = handler
                        .request(method, params)
                        .await
                        .map_err(|e| e.to_string());
                    PluginMessage::Response {
                        id,
                        result: result.into(),
                    }
                }
                HostMessage::Shutdown { reason } => return Ok(Shutdown { reason }),
                HostMessage::Reject { reason } => {
                    return Err(ConnectionError::ClosedWithReason(reason))
                }
                HostMessage::Welcome { .. } => return Err(ConnectionError::SecondWelcome),
            };
            if replies.send(reply).is_err() {
                return Err(ConnectionError::Write);
            }
        }
    }

    /// The socket path this client connects to.
    pub fn path(&self) -> &Path {
        &self.socket_path
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<std::io::Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes replies and outbox messages to the host until the connection ends.
async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut replies: mpsc::UnboundedReceiver<PluginMessage>,
    outbox: Arc<Outbox>,
) -> std::io::Result<()> {
    loop {
        for message in outbox.take_pending() {
            write_message(&mut writer, &message).await?;
        }
        // A notification that fires while a reply wins this select is not lost: the loop
        // takes the outbox again before waiting.
        tokio::select! {
            reply = replies.recv() => match reply {
                Some(message) => write_message(&mut writer, &message).await?,
                None => return Ok(()),
            },
            () = outbox.notify.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_seconds_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<u64> = (0..9)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn outbox_sends_latest_status_and_keeps_queue_bounded() {
        let client = PluginClient::new("p", "1");
        let sender = client.sender();
        sender.status(serde_json::json!({"n": 1}));
        sender.status(serde_json::json!({"n": 2}));
        for i in 0..QUEUE_LIMIT + 3 {
            sender.event("tick", format!("tick {i}"));
        }
        let pending = client.outbox.take_pending();
        assert_eq!(
            pending[0],
            PluginMessage::Status {
                status: serde_json::json!({"n": 2})
            }
        );
        assert_eq!(
            pending[1],
            PluginMessage::Log {
                level: LogLevel::Warn,
                message: "3 events and log lines were dropped while ztosd was unreachable"
                    .to_string()
            }
        );
        assert_eq!(
            pending[2],
            PluginMessage::Event {
                kind: "tick".into(),
                message: "tick 3".into()
            }
        );
        assert_eq!(pending.len(), 2 + QUEUE_LIMIT);
        assert!(client.outbox.take_pending().is_empty());
        // A new connection gets the latest status again, but not old events.
        client.outbox.resend_latest();
        assert_eq!(
            client.outbox.take_pending(),
            vec![PluginMessage::Status {
                status: serde_json::json!({"n": 2})
            }]
        );
    }
}
