//! ztos-init's status socket protocol (`/run/ztos/init.sock`): newline-delimited JSON, one
//! request per line answered by one response per line. Pure serde types and their codec; no
//! I/O. Documented in `docs/supervisor.md`. ztos-init serves it
//! (`ztos_init::supervisor::protocol` re-exports these types) and ztosd's `init_client` sends
//! and parses the same values, so the two cannot drift apart.
//!
//! [`Slot`] lives here because the boot answer names slots; `ztos_image::layout` re-exports it
//! with the partition labels and ESP directories that go with each slot.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the two root slots.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The slot's letter as it appears in labels, directories and the kernel command line.
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    pub fn parse(text: &str) -> Option<Slot> {
        match text {
            "a" | "A" => Some(Slot::A),
            "b" | "B" => Some(Slot::B),
            _ => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.letter())
    }
}

/// What a client asks. `{"request":"services"}`, `{"request":"logs","service":"x","limit":50}`,
/// `{"request":"restart","service":"x"}`, `{"request":"shutdown","kind":"reboot"}`,
/// `{"request":"reformat-perm"}`, `{"request":"boot"}`.
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
    /// The boot assessment: which slot booted, whether it is on trial, blessed or a
    /// rollback, and both slots as the ESP described them.
    Boot {},
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

impl ServiceState {
    /// The state as the protocol writes it: `crash-loop`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Running => "running",
            ServiceState::Backoff => "backoff",
            ServiceState::CrashLoop => "crash-loop",
            ServiceState::Stopped => "stopped",
            ServiceState::Exited => "exited",
        }
    }
}

/// One service in a `services` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// A crash-looping critical service makes the box unhealthy.
    pub critical: bool,
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The answer to `boot`: the object itself, flat (told apart by `booted_slot` and
    /// `state`).
    Boot(BootStatus),
}

/// Where the boot assessment of the running boot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AssessmentState {
    /// A trial boot (the booted slot's entry has a tries counter): waiting for ztosd to be
    /// healthy for `bless_after_secs`.
    Assessing,
    /// This trial boot was blessed: the entry lost its counter.
    Blessed,
    /// The booted slot's entry had no counter: nothing to assess.
    Good,
    /// The newer slot's entry ran out of tries and this, older slot booted instead.
    RolledBack,
    /// The trial failed (ztosd crash-looped or was not healthy in time): rebooting so the
    /// bootloader spends a try.
    Failed,
    /// Not known: not PID 1 (`ztos-init supervise`), or the ESP could not be read
    /// (`message` says why).
    Unknown,
}

impl AssessmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AssessmentState::Assessing => "assessing",
            AssessmentState::Blessed => "blessed",
            AssessmentState::Good => "good",
            AssessmentState::RolledBack => "rolled-back",
            AssessmentState::Failed => "failed",
            AssessmentState::Unknown => "unknown",
        }
    }
}

/// One slot in a `boot` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlotReport {
    pub slot: Slot,
    /// The entry's file name (`ztos-2-b+2-1.conf`), if the slot has one.
    pub entry: Option<String>,
    /// The entry's `version` line.
    pub version: Option<String>,
    /// `good`, `trial`, `bad` or `no-entry`.
    pub status: String,
    /// The entry's counter, when it has one.
    pub tries_left: Option<u32>,
    /// The tries the entry's counter has used.
    pub tries_done: Option<u32>,
    /// The slot this system runs from.
    pub booted: bool,
    /// The slot systemd-boot boots next.
    pub next_boot: bool,
}

/// The answer to `{"request":"boot"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BootStatus {
    /// From `ztos.slot=` on the kernel command line; `null` when not PID 1.
    pub booted_slot: Option<Slot>,
    /// The booted slot's entry file as this boot found it (after systemd-boot's rename).
    pub entry: Option<String>,
    /// The booted slot's version, from its entry.
    pub version: Option<String>,
    pub state: AssessmentState,
    /// With `rolled-back`: the version of the newer slot that failed.
    pub rolled_back_from: Option<String>,
    /// RFC 3339 time since when ztosd has answered /health with 200 without interruption,
    /// while assessing.
    pub healthy_since: Option<String>,
    pub bless_after_secs: u64,
    pub health_deadline_secs: u64,
    /// Both slots, as the ESP described them when it was last read (at boot and after a
    /// bless; ztosd's updates change it later: read the ESP for the current entries).
    pub slots: Vec<SlotReport>,
    /// RFC 3339 time the ESP was last read.
    pub slots_read_at: Option<String>,
    /// Why the state is `unknown` or `failed`, or a problem met while assessing.
    pub message: Option<String>,
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
    #[test]
    fn service_state_text_is_its_wire_name() {
        for state in [
            super::ServiceState::Running,
            super::ServiceState::Backoff,
            super::ServiceState::CrashLoop,
            super::ServiceState::Stopped,
            super::ServiceState::Exited,
        ] {
            let wire = serde_json::to_value(state).unwrap();
            assert_eq!(wire.as_str(), Some(state.as_str()));
        }
    }

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
        both_ways_request(r#"{"request":"boot"}"#, Request::Boot {});
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
            r#"{"request":"boot","slot":"a"}"#,
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

    #[test]
    fn boot_answers_in_both_directions() {
        both_ways_response(
            concat!(
                r#"{"booted_slot":"b","entry":"ztos-2-b+2-1.conf","version":"0.2.0","state":"assessing","#,
                r#""rolled_back_from":null,"healthy_since":"2025-01-01T00:00:10Z","bless_after_secs":60,"#,
                r#""health_deadline_secs":300,"slots":["#,
                r#"{"slot":"a","entry":"ztos-1-a.conf","version":"0.1.0","status":"good","tries_left":null,"tries_done":null,"booted":false,"next_boot":false},"#,
                r#"{"slot":"b","entry":"ztos-2-b+2-1.conf","version":"0.2.0","status":"trial","tries_left":2,"tries_done":1,"booted":true,"next_boot":true}"#,
                r#"],"slots_read_at":"2025-01-01T00:00:05Z","message":null}"#
            ),
            Response::Boot(BootStatus {
                booted_slot: Some(Slot::B),
                entry: Some("ztos-2-b+2-1.conf".into()),
                version: Some("0.2.0".into()),
                state: AssessmentState::Assessing,
                rolled_back_from: None,
                healthy_since: Some("2025-01-01T00:00:10Z".into()),
                bless_after_secs: 60,
                health_deadline_secs: 300,
                slots: vec![
                    SlotReport {
                        slot: Slot::A,
                        entry: Some("ztos-1-a.conf".into()),
                        version: Some("0.1.0".into()),
                        status: "good".into(),
                        tries_left: None,
                        tries_done: None,
                        booted: false,
                        next_boot: false,
                    },
                    SlotReport {
                        slot: Slot::B,
                        entry: Some("ztos-2-b+2-1.conf".into()),
                        version: Some("0.2.0".into()),
                        status: "trial".into(),
                        tries_left: Some(2),
                        tries_done: Some(1),
                        booted: true,
                        next_boot: true,
                    },
                ],
                slots_read_at: Some("2025-01-01T00:00:05Z".into()),
                message: None,
            }),
        );
        let unknown = r#"{"booted_slot":null,"entry":null,"version":null,"state":"unknown","rolled_back_from":null,"healthy_since":null,"bless_after_secs":60,"health_deadline_secs":300,"slots":[],"slots_read_at":null,"message":"not PID 1"}"#;
        let Response::Boot(status) = Response::decode(unknown).unwrap() else {
            panic!("not a boot answer");
        };
        assert_eq!(status.state, AssessmentState::Unknown);
        assert_eq!(Response::Boot(status).encode(), format!("{unknown}\n"));
        // The other answers still decode as themselves.
        assert_eq!(
            Response::decode(r#"{"ok":true}"#).unwrap(),
            Response::Ok { ok: true }
        );
        for state in [
            "assessing",
            "blessed",
            "good",
            "rolled-back",
            "failed",
            "unknown",
        ] {
            let parsed: AssessmentState = serde_json::from_str(&format!("\"{state}\"")).unwrap();
            assert_eq!(parsed.as_str(), state);
        }
    }
}
