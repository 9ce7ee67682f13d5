//! The API client the `ztos` CLI uses: HTTP/1.1 over the local unix socket (root only, no
//! token), or over HTTPS with a bearer token for remote use. One request per connection keeps
//! it simple; the CLI makes one or two requests per command.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use ztos_model::api::error::ErrorBody;

/// Why a request did not produce an answer from the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    // Not a `#[source]`: the reason is in the one-line message already.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        target: String,
        reason: std::io::Error,
    },
    #[error("tls: {0}")]
    Tls(String),
    #[error("http: {0}")]
    Http(String),
    /// The API answered with an error status; the message is the API's own.
    #[error("{message}")]
    Api {
        status: StatusCode,
        message: String,
        body: Value,
    },
    #[error("invalid --host {0}: expected https://HOST[:PORT]")]
    BadHost(String),
}

/// Where the API is.
#[derive(Clone)]
pub enum Target {
    Unix(PathBuf),
    Https {
        host: String,
        port: u16,
        token: Option<String>,
        tls: Arc<rustls::ClientConfig>,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
            Target::Https { host, port, .. } => write!(f, "https://{host}:{port}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    target: Target,
    /// A console login session (`crate::users`), sent as a bearer token on the unix socket so
    /// that the API acts with the logged-in user's role instead of root's.
    session: Option<String>,
}

impl Client {
    pub fn unix(path: &Path) -> Client {
        Client {
            target: Target::Unix(path.to_path_buf()),
            session: None,
        }
    }

    /// Sends `session` (a console login session) with every request on the unix socket.
    pub fn with_session(mut self, session: Option<String>) -> Client {
        self.session = session;
        self
    }

    /// A client for `https://HOST[:PORT]`, trusting the CA in `ca_cert` (PEM) if given, or
    /// the platform's usual roots otherwise; `insecure` skips certificate checks entirely.
    pub fn https(
        url: &str,
        token: Option<String>,
        ca_cert: Option<&Path>,
        insecure: bool,
    ) -> Result<Client, ClientError> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| ClientError::BadHost(url.into()))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) =
            split_host_port(authority).ok_or_else(|| ClientError::BadHost(url.into()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let tls = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            if let Some(path) = ca_cert {
                let pem = std::fs::read(path)
                    .map_err(|e| ClientError::Tls(format!("reading {}: {e}", path.display())))?;
                for cert in rustls_pemfile::certs(&mut &pem[..]) {
                    let cert =
                        cert.map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
                    roots
                        .add(cert)
                        .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(ClientError::Tls(format!(
                        "{} holds no certificate",
                        path.display()
                    )));
                }
            } else {
                return Err(ClientError::Tls(
                    "give --ca-cert (the appliance's CA, state dir tls/ca.pem) or --insecure"
                        .into(),
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        Ok(Client {
            target: Target::Https {
                host,
                port,
                token,
                tls: Arc::new(tls),
            },
            session: None,
        })
    }

    /// Sends one request and returns the JSON body of a successful answer.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let response = self.send(method, path, body).await?;
        let bytes = read_body(response).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .or_else(|_| Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned())))
    }

    /// Sends one request and returns the body as text (for /metrics and diffs).
    pub async fn text(&self, method: Method, path: &str) -> Result<String, ClientError> {
        let response = self.send(method, path, None).await?;
        let bytes = read_body(response).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Sends one request; an error status becomes [`ClientError::Api`] with the API's message.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response<Incoming>, ClientError> {
        let payload = match body {
            Some(value) => Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
            None => Bytes::new(),
        };
        let content_type = body.map(|_| "application/json");
        self.send_body(method, path, content_type, None, Full::new(payload))
            .await
    }

    /// Sends one request with any body (a streamed upload: `content_length` tells the server
    /// its size up front); an error status becomes [`ClientError::Api`].
    pub async fn send_body<B>(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        content_length: Option<u64>,
        body: B,
    ) -> Result<Response<Incoming>, ClientError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut builder = Request::builder().method(method).uri(path);
        builder = match &self.target {
            Target::Unix(_) => {
                let builder = builder.header(hyper::header::HOST, "localhost");
                match &self.session {
                    Some(session) => {
                        builder.header(hyper::header::AUTHORIZATION, format!("Bearer {session}"))
                    }
                    None => builder,
                }
            }
            Target::Https {
                host, port, token, ..
            } => {
                let builder = builder.header(hyper::header::HOST, format!("{host}:{port}"));
                match token {
                    Some(token) => {
                        builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
                    }
                    None => builder,
                }
            }
        };
        if let Some(content_type) = content_type {
            builder = builder.header(hyper::header::CONTENT_TYPE, content_type);
        }
        if let Some(length) = content_length {
            builder = builder.header(hyper::header::CONTENT_LENGTH, length);
        }
        let request = builder
            .body(body)
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let response = match &self.target {
            Target::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|reason| ClientError::Connect {
                        target: format!("{} (is ztosd running?)", path.display()),
                        reason,
                    })?;
                exchange(stream, request).await?
            }
            Target::Https {
                host, port, tls, ..
            } => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|reason| ClientError::Connect {
                        target: format!("{host}:{port}"),
                        reason,
                    })?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| ClientError::Tls(format!("{host}: {e}")))?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| ClientError::Tls(format!("handshake with {host}:{port}: {e}")))?;
                exchange(stream, request).await?
            }
        };
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let bytes = read_body(response).await?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let error = serde_json::from_value::<ErrorBody>(body.clone()).ok();
        let mut message = error.as_ref().map_or_else(
            || format!("{status}: {}", String::from_utf8_lossy(&bytes).trim()),
            |e| e.error.clone(),
        );
        for detail in error.iter().flat_map(|e| &e.details) {
            let line = if detail.path.is_empty() {
                detail.message.clone()
            } else {
                format!("{}: {}", detail.path, detail.message)
            };
            if !message.contains(&line) {
                message.push_str("\n  ");
                message.push_str(&line);
            }
        }
        Err(ClientError::Api {
            status,
            message,
            body,
        })
    }
}

async fn exchange<S, B>(stream: S, request: Request<B>) -> Result<Response<Incoming>, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(async move {
        // The connection ends when the response body has been read or the server hangs up.
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))
}

async fn read_body(response: Response<Incoming>) -> Result<Bytes, ClientError> {
    Ok(response
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes())
}

fn split_host_port(authority: &str) -> Option<(String, u16)> {
    if authority.is_empty() {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 443,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((authority.to_string(), 443)),
    }
}

/// `--insecure`: accepts any server certificate. Only for first contact with a box whose CA
/// the operator has not fetched yet; the CLI warns when it is used.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_and_port_are_split() {
        assert_eq!(split_host_port("box:8443"), Some(("box".into(), 8443)));
        assert_eq!(split_host_port("box"), Some(("box".into(), 443)));
        assert_eq!(split_host_port("[::1]:8443"), Some(("::1".into(), 8443)));
        assert_eq!(split_host_port("box:notaport"), None);
        assert_eq!(split_host_port(""), None);
    }
}
