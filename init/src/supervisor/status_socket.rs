//! The status socket (`/run/ztos/init.sock`, mode 0600): accepts connections, decodes one
//! request per line, hands it to the supervisor loop and writes its answer as one line.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::protocol::{Request, Response};

/// A request on its way to the supervisor loop, with where its answer goes.
#[derive(Debug)]
pub struct Incoming {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// Longest request line accepted.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// Binds `path` (replacing a stale socket file) with mode 0600.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("removing stale {}", path.display())),
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding status socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(listener)
}

/// Accepts connections forever; each is served on its own task.
pub async fn serve(listener: UnixListener, requests: mpsc::UnboundedSender<Incoming>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, requests.clone()));
            }
            Err(err) => {
                tracing::warn!("status socket: accept: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(stream: UnixStream, requests: mpsc::UnboundedSender<Incoming>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_REQUEST_BYTES);
        match limited.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let response = match Request::decode(&line) {
            Err(err) => Response::Error {
                error: err.to_string(),
            },
            Ok(request) => {
                let (reply, answer) = oneshot::channel();
                if requests.send(Incoming { request, reply }).is_err() {
                    return;
                }
                match answer.await {
                    Ok(response) => response,
                    Err(_) => Response::Error {
                        error: "the supervisor is shutting down".to_string(),
                    },
                }
            }
        };
        if write.write_all(response.encode().as_bytes()).await.is_err() {
            return;
        }
    }
}
