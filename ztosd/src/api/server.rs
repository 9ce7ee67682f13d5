//! The two listeners of the API: the local unix socket (root only; the caller's uid comes
//! from `SO_PEERCRED`) and HTTPS. Each accepted connection is served on its own task with the
//! request's [`Transport`] attached, so a connection that misbehaves (a failed TLS handshake,
//! a client that stalls or sends garbage) ends only itself.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tower::ServiceExt;

use super::auth::Transport;

/// A client has this long to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client has this long to send a request's headers (slowloris protection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed `accept` (such as running out of file descriptors) before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on the unix socket at `path` until an unrecoverable error. A stale socket
/// file is replaced; the new one has mode 0600, so only its owner (root on the appliance) can
/// connect. Connections from any other uid are refused even if the mode were wrong.
pub async fn serve_unix(path: &Path, router: Router) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!("removed stale socket {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("removing stale socket {}", path.display()))
        }
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating socket directory {}", parent.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding unix socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
    let own_uid = nix::unistd::geteuid().as_raw();
    tracing::info!("api listening on unix socket {}", path.display());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!("accepting on {}: {err}", path.display());
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let uid = match stream.peer_cred() {
            Ok(cred) => cred.uid(),
            Err(err) => {
                tracing::warn!("reading the peer credentials of a unix client: {err}");
                continue;
            }
        };
        if uid != 0 && uid != own_uid {
            tracing::warn!("refused unix socket client with uid {uid}");
            continue;
        }
        let router = router.clone();
        tokio::spawn(serve_connection(stream, Transport::Local { uid }, router));
    }
}

/// Serves `router` over HTTPS on `addr` until an unrecoverable error. HTTP/2 and HTTP/1.1 are
/// offered through ALPN (see `crate::tls`).
pub async fn serve_https(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding https on {addr}"))?;
    tracing::info!("api listening on https://{}", listener.local_addr()?);
    serve_https_on(listener, tls, router).await
}

/// [`serve_https`] on a listener that is already bound (tests bind port 0).
pub async fn serve_https_on(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!("accepting https connection: {err}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::debug!("tls handshake with {peer} failed: {err}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("tls handshake with {peer} timed out");
                        return;
                    }
                };
            serve_connection(stream, Transport::Remote { peer }, router).await;
        });
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection, attaching `transport` to every request.
async fn serve_connection<I>(io: I, transport: Transport, router: Router)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(transport);
        router.clone().oneshot(request)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    if let Err(err) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await
    {
        tracing::debug!("api connection ({transport:?}) ended with an error: {err}");
    }
}
