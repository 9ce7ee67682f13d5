//! Log rings: a byte-bounded ring of recent log lines per service (ztosd and each plugin),
//! read by `ztos monitoring logs`, followed live through a broadcast channel, and persisted
//! (the tail of each ring) in the state directory so that logs survive a restart.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Bytes of log text kept per service by default.
pub const DEFAULT_RING_BYTES: usize = 256 * 1024;

/// Bytes of each ring written to the state directory on persist.
const PERSISTED_TAIL_BYTES: usize = 64 * 1024;

/// The name ztosd's own log lines are filed under.
pub const ZTOSD_SERVICE: &str = "ztosd";

/// Log levels and lines are API answers (`ztos_model::api::monitoring`).
pub use ztos_model::api::monitoring::{Level, LogEntry};

/// The log level of a tracing event.
fn level_of(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::ERROR => Level::Error,
        tracing::Level::WARN => Level::Warn,
        tracing::Level::INFO => Level::Info,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::TRACE => Level::Trace,
    }
}

/// An estimate of the memory one entry holds, so the ring is bounded in bytes.
fn entry_cost(entry: &LogEntry) -> usize {
    entry.message.len() + entry.service.len() + entry.time.len() + 48
}

/// A filter over the rings.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub service: Option<String>,
    pub since: Option<OffsetDateTime>,
    /// At most this many entries, the newest ones; 0 means no limit.
    pub limit: usize,
}

impl LogQuery {
    pub fn matches(&self, entry: &LogEntry) -> bool {
        if let Some(service) = &self.service {
            if &entry.service != service {
                return false;
            }
        }
        if let Some(since) = self.since {
            if entry.unix_nanos < since.unix_timestamp_nanos() {
                return false;
            }
        }
        true
    }
}

#[derive(Default)]
struct Ring {
    entries: VecDeque<LogEntry>,
    bytes: usize,
}

impl Ring {
    fn push(&mut self, entry: LogEntry, max_bytes: usize) {
        self.bytes += entry_cost(&entry);
        self.entries.push_back(entry);
        while self.bytes > max_bytes && self.entries.len() > 1 {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= entry_cost(&old);
            }
        }
    }
}

struct Inner {
    rings: Mutex<BTreeMap<String, Ring>>,
    ring_bytes: usize,
    persist_dir: Option<PathBuf>,
    sender: broadcast::Sender<LogEntry>,
}

/// The log rings of all services. Cheap to clone.
#[derive(Clone)]
pub struct LogHub {
    inner: Arc<Inner>,
}

impl fmt::Debug for LogHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogHub")
            .field("ring_bytes", &self.inner.ring_bytes)
            .finish()
    }
}

impl LogHub {
    /// Makes the rings; with a `persist_dir`, loads the tails a previous run persisted there.
    pub fn new(ring_bytes: usize, persist_dir: Option<&Path>) -> LogHub {
        let (sender, _) = broadcast::channel(4096);
        let hub = LogHub {
            inner: Arc::new(Inner {
                rings: Mutex::new(BTreeMap::new()),
                ring_bytes,
                persist_dir: persist_dir.map(Path::to_path_buf),
                sender,
            }),
        };
        if let Some(dir) = persist_dir {
            hub.load(dir);
        }
        hub
    }

    fn load(&self, dir: &Path) {
        let Ok(read_dir) = std::fs::read_dir(dir) else {
            return;
        };
        let mut rings = self.lock();
        for file in read_dir.flatten() {
            let path = file.path();
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for line in text.lines() {
                // A torn last line (power cut) is skipped, not fatal.
                if let Ok(entry) = serde_json::from_str::<LogEntry>(line) {
                    rings
                        .entry(entry.service.clone())
                        .or_default()
                        .push(entry, self.inner.ring_bytes);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Ring>> {
        // A panic while holding the lock cannot leave a ring inconsistent enough to matter.
        self.inner.rings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a line for `service` and hands it to followers.
    pub fn push(&self, service: &str, level: Level, message: impl Into<String>) {
        let now = OffsetDateTime::now_utc();
        let entry = LogEntry {
            time: now.format(&Rfc3339).unwrap_or_default(),
            unix_nanos: now.unix_timestamp_nanos(),
            level,
            service: service.to_string(),
            message: message.into(),
        };
        self.lock()
            .entry(entry.service.clone())
            .or_default()
            .push(entry.clone(), self.inner.ring_bytes);
        // No followers is not an error.
        let _ = self.inner.sender.send(entry);
    }

    /// Entries matching `query`, oldest first, across services in time order.
    pub fn query(&self, query: &LogQuery) -> Vec<LogEntry> {
        let rings = self.lock();
        let mut entries: Vec<LogEntry> = rings
            .iter()
            .filter(|(name, _)| query.service.as_ref().is_none_or(|s| s == *name))
            .flat_map(|(_, ring)| ring.entries.iter().filter(|e| query.matches(e)).cloned())
            .collect();
        entries.sort_by_key(|e| e.unix_nanos);
        if query.limit > 0 && entries.len() > query.limit {
            entries.drain(..entries.len() - query.limit);
        }
        entries
    }

    /// The names of the services that have logged.
    pub fn services(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// New entries as they are pushed.
    pub fn subscribe(&self) -> broadcast::Receiver<LogEntry> {
        self.inner.sender.subscribe()
    }

    /// Writes the tail of every ring to the persist directory (one `<service>.jsonl` each).
    pub fn persist(&self) -> std::io::Result<()> {
        let Some(dir) = &self.inner.persist_dir else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)?;
        let snapshot: Vec<(String, Vec<LogEntry>)> = self
            .lock()
            .iter()
            .map(|(name, ring)| (name.clone(), ring.entries.iter().cloned().collect()))
            .collect();
        for (service, entries) in snapshot {
            let mut lines = Vec::new();
            let mut bytes = 0;
            for entry in entries.iter().rev() {
                let line = serde_json::to_string(entry).unwrap_or_default();
                bytes += line.len() + 1;
                if bytes > PERSISTED_TAIL_BYTES {
                    break;
                }
                lines.push(line);
            }
            lines.reverse();
            let mut text = lines.join("\n");
            text.push('\n');
            let file_name = format!("{}.jsonl", sanitize_file_name(&service));
            crate::store::atomic_write(&dir.join(file_name), text.as_bytes(), 0o600)?;
        }
        Ok(())
    }

    /// A tracing layer that files ztosd's own events into its ring.
    pub fn tracing_layer(&self) -> LogHubLayer {
        LogHubLayer { hub: self.clone() }
    }
}

fn sanitize_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Files tracing events into the `ztosd` ring.
pub struct LogHubLayer {
    hub: LogHub,
}

struct MessageVisitor {
    message: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .push_str(&format!(" {}={:?}", field.name(), value));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields
                .push_str(&format!(" {}={}", field.name(), value));
        }
    }
}

impl<S: Subscriber> Layer<S> for LogHubLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        // Only ztosd's own crates: dependencies' chatter (hyper, rustls) stays out of the ring.
        if !metadata.target().starts_with("ztos") {
            return;
        }
        let mut visitor = MessageVisitor {
            message: String::new(),
            fields: String::new(),
        };
        event.record(&mut visitor);
        self.hub.push(
            ZTOSD_SERVICE,
            level_of(metadata.level()),
            format!("{}{}", visitor.message, visitor.fields),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_in_bytes_and_keeps_the_newest() {
        let hub = LogHub::new(1000, None);
        for i in 0..100 {
            hub.push(
                "bgp",
                Level::Info,
                format!("line {i:03} {}", "x".repeat(40)),
            );
        }
        let all = hub.query(&LogQuery::default());
        assert!(
            all.len() < 100 && all.len() > 5,
            "kept {} entries",
            all.len()
        );
        assert!(all.last().unwrap().message.starts_with("line 099"));
    }

    #[test]
    fn query_filters_by_service_since_and_limit() {
        let hub = LogHub::new(DEFAULT_RING_BYTES, None);
        hub.push("ztosd", Level::Info, "a");
        let middle = OffsetDateTime::now_utc();
        std::thread::sleep(std::time::Duration::from_millis(2));
        hub.push("bgp", Level::Warn, "b");
        hub.push("ztosd", Level::Error, "c");
        let only_bgp = hub.query(&LogQuery {
            service: Some("bgp".into()),
            ..Default::default()
        });
        assert_eq!(
            only_bgp
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        let since = hub.query(&LogQuery {
            since: Some(middle),
            ..Default::default()
        });
        assert_eq!(
            since.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        let last = hub.query(&LogQuery {
            limit: 1,
            ..Default::default()
        });
        assert_eq!(last[0].message, "c");
    }

    #[test]
    fn persisted_tail_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LogHub::new(DEFAULT_RING_BYTES, Some(dir.path()));
        hub.push("ztosd", Level::Info, "before restart");
        hub.persist().unwrap();
        let again = LogHub::new(DEFAULT_RING_BYTES, Some(dir.path()));
        let entries = again.query(&LogQuery::default());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].message, "before restart");
    }

    #[tokio::test]
    async fn followers_receive_new_lines() {
        let hub = LogHub::new(DEFAULT_RING_BYTES, None);
        let mut rx = hub.subscribe();
        hub.push("macsec", Level::Debug, "hello");
        let entry = rx.recv().await.unwrap();
        assert_eq!(
            (entry.service.as_str(), entry.message.as_str()),
            ("macsec", "hello")
        );
    }
}
