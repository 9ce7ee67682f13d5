//! The ZTOS plugin protocol: message types and a pure codec (no I/O, no tokio).
//!
//! Plugins talk to ztosd over a unix stream socket with newline-delimited JSON, one message
//! per line, at most [`MAX_LINE_BYTES`] bytes per line (newline excluded). Every message is a
//! JSON object whose `type` field names the message. The wire format is documented message by
//! message in `docs/plugin-protocol.md`; the byte-level tests in `tests/protocol_codec.rs`
//! pin it down in both directions.
//!
//! Framing ([`LineSplitter`]) and message coding ([`encode`], [`decode`]) are separate so that
//! both sides (the client library and ztosd's plugin host) share exactly one implementation.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this crate speaks. A plugin announces it in [`PluginMessage::Hello`];
/// the host refuses versions it does not support. Adding optional fields or new message types
/// does not change the version; changing or removing anything does.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest line (one message, without its newline) either side accepts: 16 MiB. A longer
/// line is a protocol error and the connection is closed.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// The default path of the host's socket on the appliance.
pub const DEFAULT_SOCKET_PATH: &str = "/run/ztos/plugin.sock";

/// Configuration sections by name (`bgp`, `tenants`, ...), each a JSON value; `null` when the
/// section is absent from the configuration.
pub type Sections = BTreeMap<String, Value>;

/// A problem with one configuration value, found by a plugin while validating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The full config path of the offending value, e.g. `bgp.neighbors[0].remote_as`.
    pub path: String,
    /// What is wrong with it, lowercase, naming the value.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Whether a metric only ever goes up (counter) or can go both ways (gauge), as in the
/// Prometheus exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// One sample of a metric the plugin exports through ztosd's `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Prometheus metric name, e.g. `ztos_bgp_updates_received_total`.
    pub name: String,
    /// One line of help text.
    pub help: String,
    pub kind: MetricKind,
    /// Label names and values; the host adds `plugin="<name>"`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Severity of a plugin's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// The outcome of a [`HostMessage::Request`]: exactly one of `ok` and `error` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<Result<Value, String>> for RequestResult {
    fn from(result: Result<Value, String>) -> Self {
        match result {
            Ok(value) => RequestResult {
                ok: Some(value),
                error: None,
            },
            Err(message) => RequestResult {
                ok: None,
                error: Some(message),
            },
        }
    }
}

impl From<RequestResult> for Result<Value, String> {
    /// An `error` wins over `ok`; neither set reads as a `null` result.
    fn from(result: RequestResult) -> Self {
        match (result.ok, result.error) {
            (_, Some(error)) => Err(error),
            (Some(value), None) => Ok(value),
            (None, None) => Ok(Value::Null),
        }
    }
}

/// Messages a plugin sends to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PluginMessage {
    /// The first message on every connection: who the plugin is and which config sections it
    /// owns (validates and applies) and only reads.
    Hello {
        protocol_version: u32,
        name: String,
        version: String,
        #[serde(default)]
        owns: Vec<String>,
        #[serde(default)]
        reads: Vec<String>,
    },
    /// The answer to [`HostMessage::Validate`] with the same `id`; no errors means accepted.
    ValidateResult {
        id: u64,
        #[serde(default)]
        errors: Vec<FieldError>,
    },
    /// The answer to [`HostMessage::Apply`] with the same `id`.
    ApplyResult {
        id: u64,
        revision: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The plugin's current status (free-form JSON); the latest one wins.
    Status { status: Value },
    /// Something that happened (a BGP session went down, a peer handshake failed).
    Event { kind: String, message: String },
    /// The plugin's complete current set of metrics; replaces the previous set.
    Metrics { metrics: Vec<Metric> },
    /// A log line, shown in ztosd's log under the plugin's name.
    Log { level: LogLevel, message: String },
    /// The answer to [`HostMessage::Request`] with the same `id`.
    Response { id: u64, result: RequestResult },
}

/// Messages the host sends to a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    /// The host accepted the plugin's [`PluginMessage::Hello`].
    Welcome {
        protocol_version: u32,
        host_version: String,
    },
    /// The host refuses the connection and closes it: in place of `Welcome`, or later when
    /// the plugin broke the protocol.
    Reject { reason: String },
    /// Check candidate sections (owned and read ones) and answer with `ValidateResult`.
    Validate { id: u64, sections: Sections },
    /// Make these sections of committed revision `revision` effective and answer with
    /// `ApplyResult`. Sent after every `Welcome` and on every commit.
    Apply {
        id: u64,
        revision: u64,
        sections: Sections,
    },
    /// An operational query (`bgp summary`); answer with `Response`.
    Request {
        id: u64,
        method: String,
        #[serde(default)]
        params: Value,
    },
    /// The plugin should exit: the host is going away for good or the box shuts down.
    Shutdown { reason: String },
}

/// Why bytes from the peer could not be turned into a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("line of {length} bytes exceeds the limit of {limit} bytes", limit = MAX_LINE_BYTES)]
    LineTooLong { length: usize },
    #[error("message {excerpt:?} is not valid: {source}")]
    InvalidMessage {
        /// The start of the offending line, for the log.
        excerpt: String,
        source: serde_json::Error,
    },
}

/// Encodes one message as a line: compact JSON followed by `\n`.
pub fn encode<M: Serialize>(message: &M) -> Vec<u8> {
    // Serializing these types cannot fail: every map key is a string and no Serialize impl
    // returns an error. A failure would be a bug in this module, not bad input.
    let mut line = serde_json::to_vec(message).expect("protocol messages always serialize");
    line.push(b'\n');
    line
}

/// Decodes one line (with or without its trailing `\n`) into a message.
pub fn decode<M: DeserializeOwned>(line: &[u8]) -> Result<M, DecodeError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE_BYTES {
        return Err(DecodeError::LineTooLong { length: line.len() });
    }
    serde_json::from_slice(line).map_err(|source| DecodeError::InvalidMessage {
        excerpt: excerpt(line),
        source,
    })
}

/// The first 80 characters of a line, lossily decoded, for error messages.
fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(320)]);
    let mut short: String = text.chars().take(80).collect();
    if short.len() < text.len() || line.len() > 320 {
        short.push_str("...");
    }
    short
}

/// Splits a byte stream into lines, refusing lines longer than [`MAX_LINE_BYTES`] as soon as
/// that many bytes have arrived without a newline (so a peer cannot make us buffer more).
#[derive(Debug)]
pub struct LineSplitter {
    buffer: Vec<u8>,
    /// How far `buffer` has been searched for a newline already.
    scanned: usize,
    limit: usize,
}

impl Default for LineSplitter {
    fn default() -> Self {
        LineSplitter::new()
    }
}

impl LineSplitter {
    /// A splitter with the protocol's line limit.
    pub fn new() -> Self {
        LineSplitter::with_limit(MAX_LINE_BYTES)
    }

    /// A splitter with another line limit (tests use a small one).
    pub fn with_limit(limit: usize) -> Self {
        LineSplitter {
            buffer: Vec::new(),
            scanned: 0,
            limit,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete line without its newline, `None` if no complete line is buffered,
    /// or an error if the line being received is already longer than the limit.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.buffer[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(offset) => {
                let end = self.scanned + offset;
                if end > self.limit {
                    return Err(DecodeError::LineTooLong { length: end });
                }
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.scanned = 0;
                Ok(Some(line))
            }
            None => {
                self.scanned = self.buffer.len();
                if self.buffer.len() > self.limit {
                    return Err(DecodeError::LineTooLong {
                        length: self.buffer.len(),
                    });
                }
                Ok(None)
            }
        }
    }

    /// Bytes received after the last complete line.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_yields_lines_across_chunks() {
        let mut splitter = LineSplitter::new();
        splitter.push(b"{\"a\":1}\n{\"b\"");
        assert_eq!(splitter.next_line().unwrap(), Some(b"{\"a\":1}".to_vec()));
        assert_eq!(splitter.next_line().unwrap(), None);
        splitter.push(b":2}\r\n");
        assert_eq!(splitter.next_line().unwrap(), Some(b"{\"b\":2}".to_vec()));
        assert_eq!(splitter.next_line().unwrap(), None);
        assert_eq!(splitter.pending(), 0);
    }

    #[test]
    fn splitter_refuses_long_line_before_newline_arrives() {
        let mut splitter = LineSplitter::with_limit(8);
        splitter.push(b"12345678");
        assert_eq!(splitter.next_line().unwrap(), None);
        splitter.push(b"9");
        let error = splitter.next_line().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("line of 9 bytes exceeds the limit of {MAX_LINE_BYTES} bytes")
        );
    }

    #[test]
    fn splitter_refuses_long_complete_line() {
        let mut splitter = LineSplitter::with_limit(4);
        splitter.push(b"123456\n");
        assert!(matches!(
            splitter.next_line(),
            Err(DecodeError::LineTooLong { length: 6 })
        ));
    }

    #[test]
    fn decode_names_the_bad_line() {
        let error = decode::<PluginMessage>(b"{\"type\":\"bogus\"}\n").unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with(
                "message \"{\\\"type\\\":\\\"bogus\\\"}\" is not valid: unknown variant `bogus`"
            ),
            "{text}"
        );
    }

    #[test]
    fn request_result_round_trips_through_result() {
        let ok: RequestResult = Ok(serde_json::json!({"peers": 2})).into();
        assert_eq!(
            Result::<Value, String>::from(ok),
            Ok(serde_json::json!({"peers": 2}))
        );
        let err: RequestResult = Err("unknown method bgp summary".to_string()).into();
        assert_eq!(
            Result::<Value, String>::from(err),
            Err("unknown method bgp summary".to_string())
        );
    }
}
