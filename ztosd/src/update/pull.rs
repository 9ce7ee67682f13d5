//! Pull mode: the box checks an index of bundles on a server (`[system.update]`) at its own
//! moment in each interval ([`super::schedule`]), and installs the newest bundle that is newer
//! than what runs, through the same write path as an upload.
//!
//! ```text
//!  pull task ──every ≤ 60 s──▶ due? (schedule::next_check) ──▶ GET index ──▶ paused? newer?
//!      ──▶ GET bundle (streamed) ──▶ UpdateService::update_from_stream ──▶ reboot if auto_reboot
//! ```
//!
//! The index is JSON (docs/update.md, "Running a pull server"):
//! `{"paused": false, "bundles": [{"version": "0.2.0", "url": "ztos-0.2.0.ztosb",
//! "size": 123, "sha256": "..."}]}`. `url` is absolute or relative to the index; `size` and
//! `sha256` (of the whole bundle file) are optional transport checks: the bundle's own
//! signatures are what is trusted.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ztos_image::version::Version;

use super::history::now_rfc3339;
use super::schedule;
use super::{RebootWhen, UpdateError, UpdateRequest, UpdateService};
use crate::config::UpdateConfig;

/// The largest index accepted.
const MAX_INDEX_BYTES: usize = 1 << 20;
/// How long connecting and receiving the response head may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The pull task looks at its configuration and the clock this often.
const TICK: Duration = Duration::from_secs(60);

/// The index a pull server serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleIndex {
    /// When true, no device installs anything (a fleet-wide stop).
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub bundles: Vec<IndexedBundle>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedBundle {
    pub version: String,
    /// Absolute, or relative to the index's URL.
    pub url: String,
    /// Size of the bundle file in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// sha256 of the bundle file, lowercase hex.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// What a check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The server paused updates.
    Paused,
    /// Nothing newer than `current` in the index.
    UpToDate,
    Install(IndexedBundle),
}

impl BundleIndex {
    pub fn parse(bytes: &[u8]) -> Result<BundleIndex, String> {
        serde_json::from_slice(bytes).map_err(|err| format!("the index is not valid: {err}"))
    }

    /// Pure: what a device running `current` does with this index. Entries whose version
    /// does not parse are skipped (and named in the returned warnings).
    pub fn decide(&self, current: &Version) -> (Decision, Vec<String>) {
        let mut warnings = Vec::new();
        if self.paused {
            return (Decision::Paused, warnings);
        }
        let mut best: Option<(Version, &IndexedBundle)> = None;
        for bundle in &self.bundles {
            match Version::parse(&bundle.version) {
                Ok(version) => {
                    if version > *current && best.as_ref().is_none_or(|(b, _)| version > *b) {
                        best = Some((version, bundle));
                    }
                }
                Err(err) => warnings.push(format!("index entry {:?}: {err}", bundle.version)),
            }
        }
        match best {
            Some((_, bundle)) => (Decision::Install(bundle.clone()), warnings),
            None => (Decision::UpToDate, warnings),
        }
    }
}

/// The last check: an API answer (`ztos_model::api::update`).
pub use ztos_model::api::update::PullStatus;

/// Resolves a bundle's `url` against the index's.
pub fn resolve_url(index: &str, url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        return url.to_string();
    }
    let scheme_end = index.find("://").map(|i| i + 3).unwrap_or(0);
    if let Some(path) = url.strip_prefix('/') {
        let authority_end = index[scheme_end..]
            .find('/')
            .map(|i| scheme_end + i)
            .unwrap_or(index.len());
        return format!("{}/{path}", &index[..authority_end]);
    }
    let base = match index[scheme_end..].rfind('/') {
        Some(i) => &index[..scheme_end + i + 1],
        None => return format!("{index}/{url}"),
    };
    format!("{base}{url}")
}

/// A small HTTP/1.1 GET client (http and https through rustls), streaming the body.
#[derive(Clone)]
pub struct HttpGetter {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for HttpGetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGetter")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl HttpGetter {
    /// `ca_cert`: PEM certificates trusted for https (the box has no web roots).
    pub fn new(ca_cert: Option<&Path>) -> Result<HttpGetter, String> {
        let Some(path) = ca_cert else {
            return Ok(HttpGetter { tls: None });
        };
        let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("{} holds no certificate", path.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpGetter {
            tls: Some(Arc::new(config)),
        })
    }

    /// GETs `url`; an answer other than 200 is an error naming the status.
    pub async fn get(&self, url: &str) -> Result<Response<Incoming>, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url:?}: only http:// and https:// are supported")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("{url:?} has no host"))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| host.clone());
        let request = Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(
                hyper::header::USER_AGENT,
                concat!("ztosd/", env!("CARGO_PKG_VERSION")),
            )
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
            if https {
                let tls = self.tls.clone().ok_or_else(|| {
                    format!("{url}: https needs system.update.ca_cert (the CA that signs the server's certificate)")
                })?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| format!("{host}: {e}"))?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("tls handshake with {host}:{port}: {e}"))?;
                send(stream, request).await
            } else {
                send(tcp, request).await
            }
        };
        let response = tokio::time::timeout(CONNECT_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{url}: no answer within {} s", CONNECT_TIMEOUT.as_secs()))??;
        if response.status() != StatusCode::OK {
            return Err(format!(
                "GET {url}: the server answered {}",
                response.status()
            ));
        }
        Ok(response)
    }

    /// GETs a small document (at most `limit` bytes).
    pub async fn get_small(&self, url: &str, limit: usize) -> Result<Vec<u8>, String> {
        let response = self.get(url).await?;
        let body = http_body_util::Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok(body.to_bytes().to_vec())
    }
}

async fn send<S>(
    stream: S,
    request: Request<http_body_util::Empty<Bytes>>,
) -> Result<Response<Incoming>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}

/// The body of a download as a stream of chunks, checked against the index's size and
/// sha256 when it ends: a mismatch becomes an error in place of the end.
pub struct CheckedBody {
    body: Incoming,
    url: String,
    received: u64,
    hasher: Sha256,
    size: Option<u64>,
    sha256: Option<String>,
    done: bool,
}

impl CheckedBody {
    pub fn new(body: Incoming, url: &str, bundle: &IndexedBundle) -> CheckedBody {
        CheckedBody {
            body,
            url: url.to_string(),
            received: 0,
            hasher: Sha256::new(),
            size: bundle.size,
            sha256: bundle.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
            done: false,
        }
    }

    fn mismatch(&self, what: String) -> Option<io::Result<Bytes>> {
        Some(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", self.url),
        )))
    }
}

impl Stream for CheckedBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        use hyper::body::Body;
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers
                    };
                    self.received += data.len() as u64;
                    self.hasher.update(&data);
                    if let Some(size) = self.size {
                        if self.received > size {
                            self.done = true;
                            let what = format!("longer than the index's {size} bytes");
                            return Poll::Ready(self.mismatch(what));
                        }
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Poll::Ready(Some(Err(err))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(io::Error::other(format!(
                        "downloading {}: {err}",
                        self.url
                    )))));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    if let Some(size) = self.size {
                        if self.received != size {
                            let what = format!(
                                "the download ended after {} of {size} bytes",
                                self.received
                            );
                            return Poll::Ready(self.mismatch(what));
                        }
                    }
                    if let Some(expected) = self.sha256.clone() {
                        let found = hex::encode(std::mem::take(&mut self.hasher).finalize());
                        if found != expected {
                            let what = format!(
                                "sha256 of the download is {found}, the index says {expected}"
                            );
                            return Poll::Ready(self.mismatch(what));
                        }
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl UpdateService {
    /// Downloads the bundle at `url` (streaming) and installs it through the same write path
    /// as an upload. `ztos system update URL` and pull mode use it.
    pub async fn update_from_url(
        &self,
        url: &str,
        getter: &HttpGetter,
        bundle: Option<&IndexedBundle>,
        mut request: UpdateRequest,
    ) -> Result<super::UpdateOutcome, UpdateError> {
        let ticket = self.try_begin()?;
        let response = getter
            .get(url)
            .await
            .map_err(|err| UpdateError::BadRequest(format!("downloading the bundle: {err}")))?;
        request.expected_bytes = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let described = bundle.cloned().unwrap_or(IndexedBundle {
            version: String::new(),
            url: url.to_string(),
            size: None,
            sha256: None,
        });
        let body = CheckedBody::new(response.into_body(), url, &described);
        self.update_from_stream(ticket, body, request).await
    }

    /// One pull check: fetch the index, decide, install. Returns a line for the status.
    pub async fn pull_once(&self, config: &UpdateConfig) -> Result<String, String> {
        let server = config
            .server
            .as_deref()
            .ok_or("system.update.server is not set: pull mode is off")?;
        let getter = HttpGetter::new(config.ca_cert.as_deref().map(Path::new))?;
        let text = getter.get_small(server, MAX_INDEX_BYTES).await?;
        let index = BundleIndex::parse(&text)?;
        let current_text = self.current_version();
        let current = Version::parse(&current_text).map_err(|e| e.to_string())?;
        let (decision, warnings) = index.decide(&current);
        for warning in warnings {
            tracing::warn!("update: {server}: {warning}");
        }
        match decision {
            Decision::Paused => Ok("paused by the server".into()),
            Decision::UpToDate => Ok(format!("up to date ({current_text})")),
            Decision::Install(bundle) => {
                let url = resolve_url(server, &bundle.url);
                let mut request = UpdateRequest::new(url.clone());
                request.root_in_memory_max_mib = config.root_in_memory_max_mib;
                request.reboot = if config.auto_reboot {
                    RebootWhen::Now
                } else {
                    RebootWhen::Never
                };
                let outcome = self
                    .update_from_url(&url, &getter, Some(&bundle), request)
                    .await
                    .map_err(|err| format!("installing {} from {url}: {err}", bundle.version))?;
                Ok(format!(
                    "installed {} into slot {} (reboot: {})",
                    outcome.version, outcome.slot, outcome.reboot
                ))
            }
        }
    }

    /// The pull status, when pull mode is configured.
    pub fn pull_status(&self) -> Option<PullStatus> {
        super::lock(&self.inner.pull).clone()
    }

    /// Runs pull mode for as long as ztosd runs: `config` gives the current `[system.update]`
    /// (it may change with every commit); pull mode is on while it names a `server`. Checks
    /// happen at [`schedule::next_check`].
    pub async fn run_pull<F, Fut>(self, config: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<UpdateConfig>>,
    {
        let mut due: Option<(UpdateConfig, u64)> = None;
        loop {
            self.refresh_boot().await;
            let now = unix_now();
            let current = config().await.and_then(|c| {
                let server = c.server.clone()?;
                Some((c, server))
            });
            match current {
                None => {
                    due = None;
                    *super::lock(&self.inner.pull) = None;
                }
                Some((current, server)) => {
                    let device = self.device_id();
                    let interval = u64::from(current.check_interval_mins) * 60;
                    let next = match &due {
                        Some((seen, at)) if *seen == current => *at,
                        _ => schedule::next_check(now, &device, interval, current.window.as_ref()),
                    };
                    if now >= next {
                        let result = match self.pull_once(&current).await {
                            Ok(line) => line,
                            Err(err) => {
                                tracing::warn!("update: pull from {server}: {err}");
                                err
                            }
                        };
                        let after = schedule::next_check(
                            unix_now() + 1,
                            &device,
                            interval,
                            current.window.as_ref(),
                        );
                        *super::lock(&self.inner.pull) = Some(PullStatus {
                            server: server.clone(),
                            last_check: Some(now_rfc3339()),
                            last_result: Some(result),
                            next_check: rfc3339(after),
                        });
                        due = Some((current, after));
                    } else {
                        let mut status = super::lock(&self.inner.pull);
                        let entry = status.get_or_insert_with(|| PullStatus {
                            server: server.clone(),
                            last_check: None,
                            last_result: None,
                            next_check: None,
                        });
                        entry.server = server;
                        entry.next_check = rfc3339(next);
                        drop(status);
                        due = Some((current, next));
                    }
                }
            }
            let wait = due
                .as_ref()
                .map(|(_, at)| Duration::from_secs(at.saturating_sub(unix_now())))
                .unwrap_or(TICK)
                .clamp(Duration::from_secs(1), TICK);
            tokio::time::sleep(wait).await;
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn rfc3339(unix_secs: u64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix_secs as i64)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::tests::{appliance, bundle};

    fn index(text: &str) -> BundleIndex {
        BundleIndex::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn the_newest_newer_bundle_is_chosen() {
        let index = index(
            r#"{"bundles":[{"version":"0.2.0","url":"a"},{"version":"0.10.0","url":"b"},{"version":"0.1.0","url":"c"},{"version":"bad!","url":"d"}]}"#,
        );
        let (decision, warnings) = index.decide(&Version::parse("0.1.0").unwrap());
        match decision {
            Decision::Install(bundle) => assert_eq!(bundle.url, "b"),
            other => panic!("{other:?}"),
        }
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("\"bad!\""), "{warnings:?}");
        let (decision, _) = index.decide(&Version::parse("0.10.0").unwrap());
        assert_eq!(decision, Decision::UpToDate);
    }

    #[test]
    fn a_paused_index_installs_nothing() {
        let index = index(r#"{"paused":true,"bundles":[{"version":"9.0.0","url":"a"}]}"#);
        let (decision, _) = index.decide(&Version::parse("0.1.0").unwrap());
        assert_eq!(decision, Decision::Paused);
        assert_eq!(
            self::index("{}")
                .decide(&Version::parse("0.1.0").unwrap())
                .0,
            Decision::UpToDate
        );
    }

    #[test]
    fn a_bad_index_is_an_error() {
        let err = BundleIndex::parse(b"{\"bundles\": 3}").unwrap_err();
        assert!(err.starts_with("the index is not valid:"), "{err}");
    }

    #[test]
    fn bundle_urls_resolve_against_the_index() {
        let base = "https://updates.example:8443/ztos/stable/index.json";
        assert_eq!(
            resolve_url(base, "ztos-0.2.0.ztosb"),
            "https://updates.example:8443/ztos/stable/ztos-0.2.0.ztosb"
        );
        assert_eq!(
            resolve_url(base, "/b/x.ztosb"),
            "https://updates.example:8443/b/x.ztosb"
        );
        assert_eq!(resolve_url(base, "http://other/x"), "http://other/x");
        assert_eq!(resolve_url("http://h:1", "x.ztosb"), "http://h:1/x.ztosb");
    }

    /// Serves `files` (path -> body) over plain HTTP/1.1, one request per connection.
    async fn serve(files: Vec<(&'static str, Vec<u8>)>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let files = Arc::new(files);
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let files = files.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let response = match files.iter().find(|(p, _)| *p == path) {
                        Some((_, body)) => {
                            let mut out = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            out.extend_from_slice(body);
                            out
                        }
                        None => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = stream.write_all(&response).await;
                });
            }
        });
        format!("http://{addr}")
    }

    fn config(server: String) -> UpdateConfig {
        UpdateConfig {
            server: Some(server),
            check_interval_mins: 60,
            window: None,
            ca_cert: None,
            auto_reboot: false,
            root_in_memory_max_mib: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pull_installs_the_newest_bundle_from_a_local_server() {
        let node = appliance();
        let root: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
        let file = bundle(&node.key, "0.2.0", &root);
        let index = serde_json::json!({
            "paused": false,
            "bundles": [
                {"version": "0.2.0", "url": "b/ztos-0.2.0.ztosb", "size": file.len(),
                 "sha256": hex::encode(Sha256::digest(&file))},
                {"version": "0.0.1", "url": "old.ztosb"}
            ]
        });
        let base = serve(vec![
            ("/u/index.json", serde_json::to_vec(&index).unwrap()),
            ("/u/b/ztos-0.2.0.ztosb", file.clone()),
        ])
        .await;
        let line = node
            .service
            .pull_once(&config(format!("{base}/u/index.json")))
            .await
            .unwrap();
        assert_eq!(line, "installed 0.2.0 into slot b (reboot: never)");
        assert_eq!(
            &std::fs::read(&node.root_b).unwrap()[..root.len()],
            &root[..]
        );
        assert!(node.esp.join("loader/entries/ztos-2-b+3.conf").exists());
        let history = node.service.history();
        assert_eq!(history[0].message, format!("{base}/u/b/ztos-0.2.0.ztosb"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paused_server_or_a_bad_download_writes_nothing() {
        let node = appliance();
        let root = vec![7u8; 5000];
        let file = bundle(&node.key, "0.2.0", &root);
        let paused = serde_json::json!({"paused": true,
            "bundles": [{"version": "0.2.0", "url": "x.ztosb"}]});
        let wrong_sha = serde_json::json!({"bundles": [{"version": "0.2.0", "url": "x.ztosb",
            "sha256": "00".repeat(32)}]});
        let base = serve(vec![
            ("/paused.json", serde_json::to_vec(&paused).unwrap()),
            ("/wrong.json", serde_json::to_vec(&wrong_sha).unwrap()),
            ("/x.ztosb", file),
        ])
        .await;
        let line = node
            .service
            .pull_once(&config(format!("{base}/paused.json")))
            .await
            .unwrap();
        assert_eq!(line, "paused by the server");
        assert!(node.service.history().is_empty());
        let err = node
            .service
            .pull_once(&config(format!("{base}/wrong.json")))
            .await
            .unwrap_err();
        assert!(err.contains("sha256 of the download is"), "{err}");
        assert!(!node.esp.join("ztos-b").exists());
        let entries: Vec<_> = std::fs::read_dir(node.esp.join("loader/entries"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, ["ztos-1-a.conf"]);
        let err = node
            .service
            .pull_once(&config(format!("{base}/missing.json")))
            .await
            .unwrap_err();
        assert!(err.contains("404"), "{err}");
    }
}
