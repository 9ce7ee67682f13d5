//! Client of ztos-init's status socket (`/run/ztos/init.sock`): the services init supervises,
//! their captured output, restarts, reboot, poweroff and the reformat of a degraded perm. One
//! request per connection, newline-delimited JSON as documented in `docs/supervisor.md`, sent
//! and parsed as the protocol's own types ([`ztos_model::init`], which ztos-init serves), so a
//! field renamed on one side is a compile error on the other. ztosd also runs without a
//! supervisor (development, some labs); then every call says so with
//! [`InitClientError::NotRunning`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use ztos_model::init::{LogEntry, Request, Response, ShutdownKind};

/// The GPT label of the persistent partition, re-exported for the CLI's reformat messages.
pub use ztos_image::layout::PERM_LABEL;

/// How long one exchange with init may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why init did not answer a request.
#[derive(Debug, thiserror::Error)]
pub enum InitClientError {
    #[error("ztos-init is not running (no socket at {}): ztosd runs without a supervisor", socket.display())]
    NotRunning { socket: PathBuf },
    #[error("talking to ztos-init at {}: {reason}", socket.display())]
    Io {
        socket: PathBuf,
        reason: std::io::Error,
    },
    #[error("ztos-init at {} did not answer within {} s", socket.display(), EXCHANGE_TIMEOUT.as_secs())]
    Timeout { socket: PathBuf },
    #[error("ztos-init at {} answered something that is not its protocol: {line:?}", socket.display())]
    Protocol { socket: PathBuf, line: String },
    /// Init understood the request and refused it; the message is init's own.
    #[error("ztos-init: {0}")]
    Refused(String),
}

/// Init's services answer and boot assessment are API answers (`ztos_model::api::system`).
pub use ztos_model::api::system::{BootAssessment, InitServices};

/// What a shutdown request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    Reboot,
    Poweroff,
}

impl Shutdown {
    pub fn as_str(self) -> &'static str {
        ShutdownKind::from(self).as_str()
    }
}

impl From<Shutdown> for ShutdownKind {
    fn from(shutdown: Shutdown) -> ShutdownKind {
        match shutdown {
            Shutdown::Reboot => ShutdownKind::Reboot,
            Shutdown::Poweroff => ShutdownKind::Poweroff,
        }
    }
}

/// The client. Cheap to clone; holds only the socket path.
#[derive(Debug, Clone)]
pub struct InitClient {
    socket: PathBuf,
}

impl InitClient {
    pub fn new(socket: &Path) -> InitClient {
        InitClient {
            socket: socket.to_path_buf(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The supervised services and whether init is healthy.
    pub async fn services(&self) -> Result<InitServices, InitClientError> {
        match self.request(Request::Services {}).await? {
            Response::Services { services, healthy } => Ok(InitServices { services, healthy }),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The newest `limit` captured lines of `service` (all services merged by time when
    /// `None`).
    pub async fn logs(
        &self,
        service: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<LogEntry>, InitClientError> {
        let request = Request::Logs {
            service: service.map(str::to_string),
            limit,
        };
        match self.request(request).await? {
            Response::Logs { entries } => Ok(entries),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Restarts one service (SIGTERM, then started again at once).
    pub async fn restart(&self, service: &str) -> Result<(), InitClientError> {
        let request = Request::Restart {
            service: service.to_string(),
        };
        self.request_ok(request).await
    }

    /// Asks init to stop every service and reboot or power off. Init answers before it
    /// begins, so this returns while ztosd still runs.
    pub async fn shutdown(&self, kind: Shutdown) -> Result<(), InitClientError> {
        let request = Request::Shutdown { kind: kind.into() };
        self.request_ok(request).await
    }

    /// Asks init to erase the perm partition (`mkfs.ext4 -F -L ztos-perm`) and reboot. Init
    /// accepts it only as PID 1 and only while perm is degraded (a tmpfs), and refuses with its
    /// reason otherwise; it answers before stopping the services, so this returns while ztosd
    /// still runs.
    pub async fn reformat_perm(&self) -> Result<(), InitClientError> {
        self.request_ok(Request::ReformatPerm {}).await
    }

    /// The boot assessment: which slot booted, whether it was blessed or is still on trial,
    /// and whether this boot is a rollback.
    pub async fn boot(&self) -> Result<BootAssessment, InitClientError> {
        match self.request(Request::Boot {}).await? {
            Response::Boot(status) => Ok(status.into()),
            other => Err(self.unexpected(&other)),
        }
    }

    /// A request init answers with `{"ok":true}`.
    async fn request_ok(&self, request: Request) -> Result<(), InitClientError> {
        match self.request(request).await? {
            Response::Ok { ok: true } => Ok(()),
            other => Err(self.unexpected(&other)),
        }
    }

    /// An answer of the protocol, but not one to the request asked.
    fn unexpected(&self, answer: &Response) -> InitClientError {
        InitClientError::Protocol {
            socket: self.socket.clone(),
            line: answer.encode().trim_end().to_string(),
        }
    }

    /// One request on a fresh connection; an `{"error": ...}` answer becomes
    /// [`InitClientError::Refused`].
    async fn request(&self, request: Request) -> Result<Response, InitClientError> {
        match tokio::time::timeout(EXCHANGE_TIMEOUT, self.exchange(&request)).await {
            Ok(Ok(Response::Error { error })) => Err(InitClientError::Refused(error)),
            Ok(result) => result,
            Err(_) => Err(InitClientError::Timeout {
                socket: self.socket.clone(),
            }),
        }
    }

    async fn exchange(&self, request: &Request) -> Result<Response, InitClientError> {
        let io = |reason| InitClientError::Io {
            socket: self.socket.clone(),
            reason,
        };
        let stream = UnixStream::connect(&self.socket).await.map_err(|reason| {
            use std::io::ErrorKind;
            match reason.kind() {
                // No socket, or a socket file left by an init that is gone.
                ErrorKind::NotFound | ErrorKind::ConnectionRefused => InitClientError::NotRunning {
                    socket: self.socket.clone(),
                },
                _ => io(reason),
            }
        })?;
        let (read, mut write) = stream.into_split();
        write
            .write_all(request.encode().as_bytes())
            .await
            .map_err(io)?;
        let mut answer = String::new();
        BufReader::new(read)
            .read_line(&mut answer)
            .await
            .map_err(io)?;
        Response::decode(&answer).map_err(|_| InitClientError::Protocol {
            socket: self.socket.clone(),
            line: answer.trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;
    use ztos_model::init::{AssessmentState, Slot};

    /// A fake init answering each request line with the next canned answer, and recording
    /// the requests.
    async fn fake_init(
        socket: &Path,
        answers: Vec<&'static str>,
    ) -> tokio::task::JoinHandle<Vec<String>> {
        let listener = UnixListener::bind(socket).unwrap();
        tokio::spawn(async move {
            let mut requests = Vec::new();
            for answer in answers {
                let (stream, _) = listener.accept().await.unwrap();
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                BufReader::new(read).read_line(&mut line).await.unwrap();
                requests.push(line.trim().to_string());
                write.write_all(answer.as_bytes()).await.unwrap();
                write.write_all(b"\n").await.unwrap();
            }
            requests
        })
    }

    #[tokio::test]
    async fn without_init_the_error_says_so_naming_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("init.sock");
        let err = InitClient::new(&socket).services().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "ztos-init is not running (no socket at {}): ztosd runs without a supervisor",
                socket.display()
            )
        );
        // A stale socket file of an init that is gone reads the same.
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let err = InitClient::new(&socket).services().await.unwrap_err();
        assert!(matches!(err, InitClientError::NotRunning { .. }), "{err}");
    }

    #[tokio::test]
    async fn requests_and_answers_follow_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("init.sock");
        let init = fake_init(
            &socket,
            vec![
                r#"{"services":[{"name":"ztosd","state":"running","pid":42,"restarts":1,"since":"2025-01-01T00:00:00Z","last_exit":"killed by SIGKILL","critical":true}],"healthy":true}"#,
                r#"{"entries":[{"time":"2025-01-01T00:00:00Z","service":"ztos-bgp","stream":"stdout","message":"hello"}]}"#,
                r#"{"ok":true}"#,
                r#"{"error":"unknown service \"nope\""}"#,
                "garbage",
                r#"{"ok":true}"#,
                r#"{"error":"perm is healthy (/dev/vda4 is mounted on /perm); nothing was done"}"#,
                concat!(
                    r#"{"booted_slot":"a","entry":"ztos-1-a.conf","version":"0.1.0","state":"rolled-back","#,
                    r#""rolled_back_from":"0.2.0","healthy_since":null,"bless_after_secs":60,"#,
                    r#""health_deadline_secs":300,"slots":["#,
                    r#"{"slot":"a","entry":"ztos-1-a.conf","version":"0.1.0","status":"good","tries_left":null,"tries_done":null,"booted":true,"next_boot":true},"#,
                    r#"{"slot":"b","entry":"ztos-2-b+0-3.conf","version":"0.2.0","status":"bad","tries_left":0,"tries_done":3,"booted":false,"next_boot":false}"#,
                    r#"],"slots_read_at":"2025-01-01T00:00:05Z","message":null}"#
                ),
            ],
        )
        .await;
        let client = InitClient::new(&socket);
        let services = client.services().await.unwrap();
        assert!(services.healthy);
        assert_eq!(services.services[0].name, "ztosd");
        assert_eq!(services.services[0].pid, Some(42));
        let logs = client.logs(Some("ztos-bgp"), Some(10)).await.unwrap();
        assert_eq!(logs[0].message, "hello");
        client.shutdown(Shutdown::Poweroff).await.unwrap();
        let err = client.restart("nope").await.unwrap_err();
        assert_eq!(err.to_string(), "ztos-init: unknown service \"nope\"");
        let err = client.services().await.unwrap_err();
        assert!(err.to_string().contains("\"garbage\""), "{err}");
        client.reformat_perm().await.unwrap();
        let err = client.reformat_perm().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "ztos-init: perm is healthy (/dev/vda4 is mounted on /perm); nothing was done"
        );
        let boot = client.boot().await.unwrap();
        assert_eq!(boot.booted_slot, Some(Slot::A));
        assert_eq!(boot.state, AssessmentState::RolledBack);
        assert_eq!(boot.rolled_back_from.as_deref(), Some("0.2.0"));
        assert_eq!(boot.slots.len(), 2);
        assert_eq!(boot.slots[1].tries_done, Some(3));
        let requests = init.await.unwrap();
        assert_eq!(
            requests,
            [
                r#"{"request":"services"}"#,
                r#"{"request":"logs","service":"ztos-bgp","limit":10}"#,
                r#"{"request":"shutdown","kind":"poweroff"}"#,
                r#"{"request":"restart","service":"nope"}"#,
                r#"{"request":"services"}"#,
                r#"{"request":"reformat-perm"}"#,
                r#"{"request":"reformat-perm"}"#,
                r#"{"request":"boot"}"#,
            ]
        );
    }
}
