//! Tests of the API as a client sees it: the router driven with `oneshot` over a test daemon
//! (recording kernel, no sockets), plus the unix-socket and HTTPS servers on real sockets.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;
use crate::config::Role;
use crate::daemon::Daemon;
use crate::logs::Level;

/// A daemon over the recording kernel and its router, driven with `oneshot`; shared by the
/// route modules' tests.
pub(crate) struct Harness {
    _dir: tempfile::TempDir,
    pub(crate) daemon: Daemon,
    pub(crate) router: Router,
}

impl Harness {
    pub(crate) fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::for_tests(dir.path());
        let router = app(daemon.clone());
        Harness {
            _dir: dir,
            daemon,
            router,
        }
    }

    fn token(&self, name: &str, role: Role) -> String {
        self.daemon.tokens().create(name, role).unwrap().1
    }

    /// Sends `body` (JSON) as `transport`, with `bearer` as the Authorization token if any.
    pub(crate) async fn send_as(
        &self,
        transport: Transport,
        method: Method,
        uri: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string());
        self.send(request(
            method,
            uri,
            Some(transport),
            bearer,
            body.as_deref(),
        ))
        .await
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    /// A request over HTTPS with `token` (if any).
    async fn remote(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        self.send(request(method, uri, Some(remote()), token, body))
            .await
    }

    /// A request over the unix socket as root.
    async fn local(&self, method: Method, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
        self.send(request(
            method,
            uri,
            Some(Transport::Local { uid: 0 }),
            None,
            body,
        ))
        .await
    }
}

fn remote() -> Transport {
    Transport::Remote {
        peer: SocketAddr::from(([192, 0, 2, 10], 40000)),
    }
}

pub(crate) fn request(
    method: Method,
    uri: &str,
    transport: Option<Transport>,
    token: Option<&str>,
    body: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    let mut request = builder
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    if let Some(transport) = transport {
        request.extensions_mut().insert(transport);
    }
    request
}

fn running_revision(config: &Value) -> Option<u64> {
    config["revision"]["number"].as_u64()
}

#[tokio::test]
async fn missing_or_bad_token_is_401_with_the_error_format() {
    let h = Harness::new();
    h.token("reader", Role::Read);

    let response = h
        .router
        .clone()
        .oneshot(request(
            Method::GET,
            "/api/v1/config",
            Some(remote()),
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));

    let (status, body) = h.remote(Method::GET, "/api/v1/config", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"].as_str().unwrap().contains("Authorization"),
        "{body}"
    );
    assert_eq!(body["details"], json!([]));

    let bad = "ztos_0000000000000000000000000000000000000000000000000000000000000000";
    let (status, body) = h
        .remote(Method::GET, "/api/v1/config", Some(bad), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!body["error"].as_str().unwrap().contains(bad), "{body}");

    // A request that says nothing about its transport is treated as remote.
    let (status, _) = h
        .send(request(Method::GET, "/api/v1/config", None, None, None))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn read_token_cannot_commit_and_body_is_not_even_parsed() {
    let h = Harness::new();
    let read = h.token("reader", Role::Read);
    let operate = h.token("operator", Role::Operate);

    let (status, body) = h
        .remote(
            Method::POST,
            "/api/v1/config/commit",
            Some(&read),
            Some("{oops"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("token:reader"), "{message}");
    assert!(message.contains("admin"), "{message}");

    let (status, _) = h
        .remote(
            Method::POST,
            "/api/v1/network/configure",
            Some(&operate),
            Some("{}"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h
        .remote(Method::GET, "/api/v1/tokens", Some(&read), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Confirm needs operate: with nothing pending, an operator gets past auth to a 409.
    let (status, _) = h
        .remote(Method::POST, "/api/v1/config/confirm", Some(&read), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = h
        .remote(Method::POST, "/api/v1/config/confirm", Some(&operate), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Reading is fine for both.
    let (status, _) = h
        .remote(Method::GET, "/api/v1/config", Some(&read), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn admin_token_and_local_socket_can_read_and_write() {
    let h = Harness::new();
    let admin = h.token("automation", Role::Admin);
    let (status, body) = h
        .remote(Method::GET, "/api/v1/config", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["text"].is_string());
    assert!(body["config"].is_object());

    let (status, body) = h
        .local(
            Method::POST,
            "/api/v1/config/commit",
            Some(r#"{"text": "[system]\nhostname = \"leaf1\"\n", "comment": "first"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"]["author"], "root");
    assert_eq!(body["revision"]["comment"], "first");

    let (status, body) = h
        .remote(
            Method::POST,
            "/api/v1/config/commit",
            Some(&admin),
            Some(r#"{"text": "[system]\nhostname = \"leaf2\"\n"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"]["author"], "token:automation");

    let (status, body) = h.local(Method::GET, "/api/v1/config/revisions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().unwrap().len(), 2, "{body}");
    assert_eq!(body[0]["number"], 2, "newest first: {body}");
    assert_eq!(body[1]["author"], "root");
    let (status, body) = h
        .local(Method::GET, "/api/v1/config/revisions/1", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["text"].as_str().unwrap().contains("leaf1"), "{body}");
    let (status, body) = h
        .local(Method::GET, "/api/v1/config/revisions/99", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = h
        .local(Method::GET, "/api/v1/config/revisions/abc", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn malformed_bodies_are_400_naming_the_problem() {
    let h = Harness::new();
    let (status, body) = h
        .local(
            Method::POST,
            "/api/v1/network/configure",
            Some(r#"{"bgp": {"peer": "not-an-address", "remote_as": 64512}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("bgp.peer"),
        "{body}"
    );
    assert_eq!(body["details"][0]["path"], "bgp.peer");

    let (status, body) = h
        .local(
            Method::POST,
            "/api/v1/network/configure",
            Some(r#"{"bgp": "#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );

    let (status, body) = h
        .local(
            Method::POST,
            "/api/v1/network/configure",
            Some(r#"{"bpg": {}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("bpg"), "{body}");

    let (status, body) = h
        .local(
            Method::PATCH,
            "/api/v1/config/candidate",
            Some(r#"{"path": "system.hostname"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["details"][0]["path"], "value", "{body}");

    let mut wrong_type = request(
        Method::PUT,
        "/api/v1/config/candidate",
        Some(Transport::Local { uid: 0 }),
        None,
        None,
    );
    wrong_type
        .headers_mut()
        .insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
    *wrong_type.body_mut() = Body::from("[system]");
    let (status, _) = h.send(wrong_type).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let h = Harness::new();
    let huge = format!(r#"{{"text": "{}"}}"#, "x".repeat(MAX_BODY_BYTES + 1));
    let (status, body) = h
        .local(Method::PUT, "/api/v1/config/candidate", Some(&huge))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("4194304"),
        "{body}"
    );
}

#[tokio::test]
async fn invalid_commit_is_422_with_paths_and_running_is_unchanged() {
    let h = Harness::new();
    let (status, body) = h
        .local(
            Method::POST,
            "/api/v1/config/commit",
            Some(r#"{"text": "[system]\nhostname = \"leaf1\"\n"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, before) = h.local(Method::GET, "/api/v1/config", None).await;
    assert_eq!(running_revision(&before), Some(1));

    let invalid = json!({ "text": "[bgp]\nlocal_as = 0\n" }).to_string();
    let (status, body) = h
        .local(Method::POST, "/api/v1/config/commit", Some(&invalid))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let details = body["details"].as_array().unwrap();
    assert!(
        details.iter().any(|d| d["path"] == "bgp.local_as"),
        "{body}"
    );
    let (_, after) = h.local(Method::GET, "/api/v1/config", None).await;
    assert_eq!(running_revision(&after), Some(1));
    assert_eq!(after["text"], before["text"]);

    // The candidate path refuses it too, before anything is stored.
    let (status, body) = h
        .local(Method::PUT, "/api/v1/config/candidate", Some(&invalid))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn candidate_edit_diff_commit_and_rollback() {
    let h = Harness::new();
    let (status, body) = h.local(Method::GET, "/api/v1/config/candidate", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["modified"], false);

    let (status, body) = h
        .local(
            Method::PATCH,
            "/api/v1/config/candidate",
            Some(r#"{"path": "system.hostname", "value": "\"spine1\""}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["text"].as_str().unwrap().contains("spine1"), "{body}");
    let (_, body) = h.local(Method::GET, "/api/v1/config/diff", None).await;
    assert!(body["diff"].as_str().unwrap().contains("spine1"), "{body}");

    let (status, body) = h
        .local(Method::POST, "/api/v1/config/commit", Some("{}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, running) = h.local(Method::GET, "/api/v1/config", None).await;
    assert_eq!(running["config"]["system"]["hostname"], "spine1");

    let (status, _) = h
        .local(
            Method::PATCH,
            "/api/v1/config/candidate",
            Some(r#"{"path": "system.hostname", "value": "\"spine2\""}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .local(Method::DELETE, "/api/v1/config/candidate", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = h.local(Method::GET, "/api/v1/config/candidate", None).await;
    assert_eq!(body["modified"], false);
    assert!(body["text"].as_str().unwrap().contains("spine1"), "{body}");

    let (status, body) = h
        .local(
            Method::POST,
            "/api/v1/config/rollback",
            Some(r#"{"revision": 99}"#),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn network_configure_adds_the_neighbor_as_a_new_revision() {
    let h = Harness::new();
    let admin = h.token("admin", Role::Admin);
    let (_, before) = h.local(Method::GET, "/api/v1/config", None).await;
    let before_revision = running_revision(&before).unwrap_or(0);

    let (status, body) = h
        .remote(
            Method::POST,
            "/api/v1/network/configure",
            Some(&admin),
            Some(r#"{"bgp": {"peer": "10.1.1.1", "remote_as": 64512}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"]["author"], "token:admin");

    let (_, after) = h.local(Method::GET, "/api/v1/config", None).await;
    assert_eq!(
        running_revision(&after),
        Some(before_revision + 1),
        "{after}"
    );
    let neighbors = &after["config"]["bgp"]["neighbors"];
    assert_eq!(neighbors[0]["address"], "10.1.1.1", "{after}");
    assert_eq!(neighbors[0]["remote_as"], 64512);

    // An invalid AS is refused with its path and commits nothing.
    let (status, body) = h
        .remote(
            Method::POST,
            "/api/v1/network/configure",
            Some(&admin),
            Some(r#"{"bgp": {"peer": "10.1.1.2", "remote_as": 0}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(!body["details"].as_array().unwrap().is_empty(), "{body}");
    let (_, last) = h.local(Method::GET, "/api/v1/config", None).await;
    assert_eq!(running_revision(&last), running_revision(&after));
}

#[tokio::test]
async fn security_status_reports_unconfigured_datapaths_and_absent_plugins() {
    let h = Harness::new();
    let read = h.token("reader", Role::Read);
    let (status, body) = h
        .remote(Method::GET, "/api/v1/security/status", Some(&read), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for datapath in ["wireguard", "macsec"] {
        let section = &body[datapath];
        assert_eq!(section["configured"], false, "{body}");
        assert_eq!(section["plugin_state"], "absent", "{body}");
        assert!(
            section["plugin"].as_str().unwrap().contains(datapath),
            "{body}"
        );
        assert_eq!(section["interfaces"], 0);
    }
    assert_eq!(body["policy_rules"], 0);
}

#[tokio::test]
async fn logs_filter_by_service_and_reject_bad_since() {
    let h = Harness::new();
    h.daemon
        .logs()
        .push("ztos-bgp", Level::Info, "session 10.1.1.1 established");
    h.daemon
        .logs()
        .push("ztos-macsec", Level::Warn, "no cak for eth1");
    h.daemon
        .logs()
        .push("ztos-bgp", Level::Error, "hold timer expired");

    let (status, body) = h
        .local(
            Method::GET,
            "/api/v1/monitoring/logs?service=ztos-bgp",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let entries = body.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{body}");
    assert!(entries.iter().all(|e| e["service"] == "ztos-bgp"));
    assert_eq!(entries[1]["message"], "hold timer expired");
    assert_eq!(entries[1]["level"], "error");

    let (_, body) = h
        .local(
            Method::GET,
            "/api/v1/monitoring/logs?service=ztos-bgp&limit=1",
            None,
        )
        .await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    let (_, body) = h
        .local(
            Method::GET,
            "/api/v1/monitoring/logs?since=10m&service=ztos-macsec",
            None,
        )
        .await;
    assert_eq!(body.as_array().unwrap().len(), 1, "{body}");
    let (_, body) = h
        .local(
            Method::GET,
            "/api/v1/monitoring/logs?since=2999-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(body, json!([]));

    let (status, body) = h
        .local(Method::GET, "/api/v1/monitoring/logs?since=lately", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("\"lately\""),
        "{body}"
    );
    let (status, _) = h
        .local(Method::GET, "/api/v1/monitoring/logs?limit=0", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn logs_follow_streams_history_then_new_entries_as_ndjson() {
    let h = Harness::new();
    h.daemon.logs().push("ztos-bgp", Level::Info, "old line");
    let response = h
        .router
        .clone()
        .oneshot(request(
            Method::GET,
            "/api/v1/monitoring/logs?service=ztos-bgp&follow=true",
            Some(Transport::Local { uid: 0 }),
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/x-ndjson"
    );
    let mut body = response.into_body();
    assert_eq!(next_line(&mut body).await["message"], "old line");
    h.daemon.logs().push("ztosd", Level::Info, "filtered out");
    h.daemon.logs().push("ztos-bgp", Level::Info, "new line");
    assert_eq!(next_line(&mut body).await["message"], "new line");
}

async fn next_line(body: &mut Body) -> Value {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a line arrives")
        .unwrap()
        .unwrap();
    let data = frame.into_data().unwrap();
    assert!(data.ends_with(b"\n"));
    serde_json::from_slice(&data).unwrap()
}

#[tokio::test]
async fn health_needs_no_token_and_matches_its_status() {
    let h = Harness::new();
    let (status, body) = h.remote(Method::GET, "/health", None, None).await;
    let healthy = body["healthy"].as_bool().expect("healthy is a boolean");
    assert_eq!(status == StatusCode::OK, healthy, "{status} {body}");
    if !healthy {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert!(body["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "config"));
}

#[tokio::test]
async fn metrics_need_read_and_count_requests_by_route() {
    let h = Harness::new();
    let read = h.token("prometheus", Role::Read);
    let (status, _) = h.remote(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    h.local(Method::GET, "/api/v1/config/revisions/7", None)
        .await;
    let (status, body) = h.remote(Method::GET, "/metrics", Some(&read), None).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert!(text.contains("ztos_config_revision"), "{text}");
    assert!(
        text.contains(
            "ztosd_http_requests_total{method=\"GET\",route=\"/api/v1/config/revisions/{n}\",status=\"404\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("route=\"/metrics\",status=\"401\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn tokens_are_created_once_used_and_revoked() {
    let h = Harness::new();
    let (status, body) = h
        .local(
            Method::POST,
            "/api/v1/tokens",
            Some(r#"{"name": "ci", "role": "operate"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().unwrap().to_string();
    assert_eq!(body["token"]["role"], "operate");

    let (status, _) = h
        .remote(Method::GET, "/api/v1/config", Some(&secret), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = h.local(Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(list[0]["name"], "ci");
    assert!(list[0]["last_used"].is_string(), "{list}");
    assert!(!list.to_string().contains(&secret));

    let (status, body) = h
        .local(Method::POST, "/api/v1/tokens", Some(r#"{"name": "ci"}"#))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = h
        .local(
            Method::POST,
            "/api/v1/tokens",
            Some(r#"{"name": "x", "role": "root"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["details"][0]["path"], "role");

    let (status, _) = h.local(Method::DELETE, "/api/v1/tokens/ci", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .remote(Method::GET, "/api/v1/config", Some(&secret), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = h.local(Method::DELETE, "/api/v1/tokens/ci", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("\"ci\""), "{body}");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_format() {
    let h = Harness::new();
    let (status, body) = h.local(Method::GET, "/api/v1/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"].as_str().unwrap().contains("/api/v1/nope"),
        "{body}"
    );
    let (status, body) = h
        .local(Method::DELETE, "/api/v1/security/status", None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn interfaces_plugins_schema_and_openapi_are_served() {
    let h = Harness::new();
    let (status, body) = h.local(Method::GET, "/api/v1/interfaces", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.is_array());
    let (status, body) = h.local(Method::GET, "/api/v1/plugins", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.is_array());
    let (status, body) = h
        .local(Method::GET, "/api/v1/plugins/ztos-nothing", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = h.local(Method::GET, "/api/v1/config/schema", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["properties"]["bgp"].is_object(), "{body}");
    let (status, body) = h.local(Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap()
    );
}

/// Sends one HTTP/1.1 request over `io` and returns the status.
async fn http1_get<I>(io: I, uri: &str) -> StatusCode
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .uri(uri)
        .header(header::HOST, "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    sender.send_request(request).await.unwrap().status()
}

#[tokio::test]
async fn unix_socket_is_private_and_needs_no_token() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    std::fs::write(&path, b"stale").unwrap();
    let server = tokio::spawn(serve_unix_owned(path.clone(), h.router.clone()));
    wait_for(|| {
        path.metadata()
            .is_ok_and(|m| m.permissions().mode() & 0o777 == 0o600)
    })
    .await;

    // A client that sends garbage does not take the server down.
    let mut garbage = tokio::net::UnixStream::connect(&path).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut garbage, b"\x00\x01 not http\r\n\r\n")
        .await
        .unwrap();
    drop(garbage);

    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    assert_eq!(http1_get(stream, "/api/v1/config").await, StatusCode::OK);
    server.abort();
}

async fn serve_unix_owned(path: std::path::PathBuf, router: Router) -> anyhow::Result<()> {
    serve_unix(&path, router).await
}

async fn wait_for(mut ready: impl FnMut() -> bool) {
    for _ in 0..200 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 2 s");
}

#[tokio::test]
async fn https_survives_a_failed_handshake_and_demands_tokens() {
    crate::tls::install_crypto_provider();
    let h = Harness::new();
    let state = tempfile::tempdir().unwrap();
    let tls = crate::tls::load_or_generate(state.path(), None, None, "leaf1").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(server::serve_https_on(listener, tls, h.router.clone()));

    // Plain HTTP on the TLS port fails the handshake; that connection alone is dropped.
    let plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(plain))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .uri("/health")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert!(sender.send_request(request).await.is_err());

    let connector = tls_connector(state.path());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector
        .connect(
            name.clone(),
            tokio::net::TcpStream::connect(addr).await.unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        http1_get(stream, "/api/v1/config").await,
        StatusCode::UNAUTHORIZED
    );
    let stream = connector
        .connect(name, tokio::net::TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    let health = http1_get(stream, "/health").await;
    assert!(
        health == StatusCode::OK || health == StatusCode::SERVICE_UNAVAILABLE,
        "{health}"
    );
    server.abort();
}

fn tls_connector(state_dir: &Path) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(state_dir.join("tls/ca.pem")).unwrap();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}
