//! The status socket's protocol: newline-delimited JSON, one request per line answered by one
//! response per line. Pure serde types and their codec; no I/O. Documented in
//! `docs/supervisor.md`; ztosd's `init_client` speaks the same JSON.

use serde::{Deserialize, Serialize};

/// What a client asks. `{"request":"services"}`, `{"request":"logs","service":"x","limit":50}`,
/// `{"request":"restart","service":"x"}`, `{"request":"shutdown","kind":"reboot"}`,
/// `{"request":"reformat-perm"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// A struct variant, so that unknown keys are rejected like in every other request.
    Services {},
    Logs {
        /// One service's ring, or all rings merged by time when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// The newest `limit` entries; all of them when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    Restart {
        service: String,
    },
    Shutdown {
        kind: ShutdownKind,
    },
    /// Make a new, empty filesystem on the perm partition and reboot. Accepted only by PID 1
    /// and only while perm is degraded (a tmpfs); answered before the services stop.
    ReformatPerm {},
}

/// How the supervisor ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShutdownKind {
    /// SIGTERM or SIGINT: stop the services and exit (never sent over the socket by ZTOS
    /// itself, but accepted).
    Exit,
    Reboot,
    Poweroff,
}

impl ShutdownKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownKind::Exit => "exit",
            ShutdownKind::Reboot => "reboot",
            ShutdownKind::Poweroff => "poweroff",
        }
    }
}

/// A service's state as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceState {
    /// Its process runs.
    Running,
    /// It exited and waits for its restart delay.
    Backoff,
    /// It exits too often; it is still retried, at the longest delay.
    CrashLoop,
    /// The supervisor stopped it (shutdown).
    Stopped,
    /// It exited and its restart policy says not to start it again.
    Exited,
}

/// One service in a `services` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub state: ServiceState,
    /// The process id while it runs.
    pub pid: Option<u32>,
    /// How many times it was started again after the first start.
    pub restarts: u64,
    /// RFC 3339 time of the last state change.
    pub since: String,
    /// How its last run ended (`exited with status 1`, `killed by SIGKILL`), if it ended.
    pub last_exit: Option<String>,
    pub critical: bool,
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// RFC 3339 UTC time the line was captured.
    pub time: String,
    pub service: String,
    /// `stdout`, `stderr`, `supervisor` (the supervisor's own events) or `kernel`.
    pub stream: String,
    pub message: String,
}

/// What the supervisor answers. Exactly one of the shapes, told apart by their keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    Services {
        services: Vec<ServiceStatus>,
        /// False while a critical service crash-loops.
        healthy: bool,
    },
    Logs {
        entries: Vec<LogEntry>,
    },
    Ok {
        ok: bool,
    },
    Error {
        error: String,
    },
}

/// Why a line is not a request.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid request {line:?}: {message}")]
    InvalidRequest { line: String, message: String },
}

impl Request {
    /// Decodes one request line (without or with its newline).
    pub fn decode(line: &str) -> Result<Request, ProtocolError> {
        serde_json::from_str(line.trim()).map_err(|err| ProtocolError::InvalidRequest {
            line: line.trim().chars().take(200).collect(),
            message: err.to_string(),
        })
    }

    /// The request as one line, newline included.
    pub fn encode(&self) -> String {
        let mut line = serde_json::to_string(self).expect("requests always serialize");
        line.push('\n');
        line
    }
}

impl Response {
    /// The response as one line, newline included.
    pub fn encode(&self) -> String {
        let mut line = serde_json::to_string(self).expect("responses always serialize");
        line.push('\n');
        line
    }

    pub fn decode(line: &str) -> Result<Response, serde_json::Error> {
        serde_json::from_str(line.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both_ways_request(line: &str, request: Request) {
        assert_eq!(Request::decode(line).unwrap(), request, "{line}");
        assert_eq!(request.encode(), format!("{line}\n"));
    }

    fn both_ways_response(line: &str, response: Response) {
        assert_eq!(Response::decode(line).unwrap(), response, "{line}");
        assert_eq!(response.encode(), format!("{line}\n"));
    }

    #[test]
    fn requests_in_both_directions() {
        both_ways_request(r#"{"request":"services"}"#, Request::Services {});
        both_ways_request(
            r#"{"request":"logs","service":"ztosd","limit":20}"#,
            Request::Logs {
                service: Some("ztosd".into()),
                limit: Some(20),
            },
        );
        both_ways_request(
            r#"{"request":"logs"}"#,
            Request::Logs {
                service: None,
                limit: None,
            },
        );
        both_ways_request(
            r#"{"request":"restart","service":"ztos-bgp"}"#,
            Request::Restart {
                service: "ztos-bgp".into(),
            },
        );
        both_ways_request(
            r#"{"request":"shutdown","kind":"reboot"}"#,
            Request::Shutdown {
                kind: ShutdownKind::Reboot,
            },
        );
        both_ways_request(
            r#"{"request":"shutdown","kind":"poweroff"}"#,
            Request::Shutdown {
                kind: ShutdownKind::Poweroff,
            },
        );
        both_ways_request(r#"{"request":"reformat-perm"}"#, Request::ReformatPerm {});
    }

    #[test]
    fn bad_requests_are_named() {
        for bad in [
            r#"{"request":"dance"}"#,
            r#"{"request":"shutdown","kind":"halt"}"#,
            r#"{"request":"restart"}"#,
            r#"{"request":"services","extra":1}"#,
            r#"{"request":"reformat-perm","device":"/dev/sda"}"#,
            r#"{"request":"reformat_perm"}"#,
            "not json",
        ] {
            let err = Request::decode(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn responses_in_both_directions() {
        both_ways_response(
            r#"{"services":[{"name":"ztosd","state":"crash-loop","pid":null,"restarts":5,"since":"2025-01-01T00:00:00Z","last_exit":"exited with status 1","critical":true}],"healthy":false}"#,
            Response::Services {
                services: vec![ServiceStatus {
                    name: "ztosd".into(),
                    state: ServiceState::CrashLoop,
                    pid: None,
                    restarts: 5,
                    since: "2025-01-01T00:00:00Z".into(),
                    last_exit: Some("exited with status 1".into()),
                    critical: true,
                }],
                healthy: false,
            },
        );
        both_ways_response(
            r#"{"entries":[{"time":"2025-01-01T00:00:00Z","service":"ztosd","stream":"stderr","message":"hello"}]}"#,
            Response::Logs {
                entries: vec![LogEntry {
                    time: "2025-01-01T00:00:00Z".into(),
                    service: "ztosd".into(),
                    stream: "stderr".into(),
                    message: "hello".into(),
                }],
            },
        );
        both_ways_response(r#"{"ok":true}"#, Response::Ok { ok: true });
        both_ways_response(
            r#"{"error":"unknown service \"x\""}"#,
            Response::Error {
                error: "unknown service \"x\"".into(),
            },
        );
    }
}
