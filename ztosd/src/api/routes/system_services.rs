//! `/api/v1/system/services`, `/api/v1/system/reboot`, `/api/v1/system/poweroff`,
//! `/api/v1/system/perm/reformat`: the services ztos-init supervises, shutting the box down
//! through init, and erasing a degraded perm partition. Without init
//! (ztosd started on its own) these answer 503 with a message saying so.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::auth::{AdminScope, Auth, ReadScope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::ApiState;
use crate::init_client::{InitClientError, InitServices, Shutdown};
use ztos_image::layout::PERM_LABEL;

pub use ztos_model::api::system::{PermReformatAccepted, ShutdownAccepted};

/// Init could not be asked: 503 when it is not there (the box works, only its supervisor
/// cannot be reached), 502 when it answered with a refusal.
fn unavailable(err: InitClientError) -> ApiError {
    tracing::warn!("system: {err}");
    match err {
        InitClientError::Refused(_) => ApiError::BadGateway(err.to_string()),
        _ => ApiError::Unavailable(err.to_string()),
    }
}

#[utoipa::path(get, path = "/api/v1/system/services", tag = "system",
    responses((status = 200, description = "The services ztos-init supervises", body = InitServices),
              (status = 503, description = "ztos-init is not running: ztosd runs without a supervisor", body = ErrorBody)))]
pub async fn services(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<InitServices>, ApiError> {
    state
        .daemon
        .init()
        .services()
        .await
        .map(Json)
        .map_err(unavailable)
}

async fn shutdown(state: &ApiState, author: &str, kind: Shutdown) -> Result<Response, ApiError> {
    tracing::warn!("{} requested by {author}", kind.as_str());
    state
        .daemon
        .init()
        .shutdown(kind)
        .await
        .map_err(unavailable)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ShutdownAccepted {
            shutdown: kind.as_str().to_string(),
        }),
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/v1/system/reboot", tag = "system",
    responses((status = 202, description = "ztos-init stops every service and reboots", body = ShutdownAccepted),
              (status = 503, description = "ztos-init is not running: ztosd runs without a supervisor", body = ErrorBody)))]
pub async fn reboot(
    auth: Auth<AdminScope>,
    State(state): State<ApiState>,
) -> Result<Response, ApiError> {
    shutdown(&state, &auth.caller.author, Shutdown::Reboot).await
}

#[utoipa::path(post, path = "/api/v1/system/poweroff", tag = "system",
    responses((status = 202, description = "ztos-init stops every service and powers off", body = ShutdownAccepted),
              (status = 503, description = "ztos-init is not running: ztosd runs without a supervisor", body = ErrorBody)))]
pub async fn poweroff(
    auth: Auth<AdminScope>,
    State(state): State<ApiState>,
) -> Result<Response, ApiError> {
    shutdown(&state, &auth.caller.author, Shutdown::Poweroff).await
}

#[utoipa::path(post, path = "/api/v1/system/perm/reformat", tag = "system",
    responses((status = 202, description = "ztos-init stops every service, erases the perm partition (configuration, users, tokens, logs) with a new empty filesystem, and reboots", body = PermReformatAccepted),
              (status = 502, description = "ztos-init refused: perm is healthy (nothing was done), there is no partition, or ztos-init is not PID 1", body = ErrorBody),
              (status = 503, description = "ztos-init is not running: ztosd runs without a supervisor", body = ErrorBody)))]
pub async fn reformat_perm(
    auth: Auth<AdminScope>,
    State(state): State<ApiState>,
) -> Result<Response, ApiError> {
    tracing::warn!("perm reformat requested by {}", auth.caller.author);
    state
        .daemon
        .init()
        .reformat_perm()
        .await
        .map_err(unavailable)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(PermReformatAccepted {
            reformat: PERM_LABEL.to_string(),
            shutdown: Shutdown::Reboot.as_str().to_string(),
        }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Method, Request};
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tower::ServiceExt;

    use super::*;
    use crate::api::{app, Transport};
    use crate::config::Role;
    use crate::daemon::Daemon;

    async fn call(
        daemon: &Daemon,
        method: Method,
        uri: &str,
        transport: Transport,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let mut request = request.body(Body::empty()).unwrap();
        request.extensions_mut().insert(transport);
        let response = app(daemon.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    const ROOT: Transport = Transport::Local { uid: 0 };

    /// A fake ztos-init on the test daemon's init socket answering each connection with the
    /// next answer; returns the requests it saw.
    fn fake_init(
        daemon: &Daemon,
        answers: Vec<&'static str>,
    ) -> tokio::task::JoinHandle<Vec<String>> {
        let listener = tokio::net::UnixListener::bind(daemon.init().socket()).unwrap();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for answer in answers {
                let (stream, _) = listener.accept().await.unwrap();
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                BufReader::new(read).read_line(&mut line).await.unwrap();
                seen.push(line.trim().to_string());
                write
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .unwrap();
            }
            seen
        })
    }

    #[tokio::test]
    async fn without_init_every_route_answers_503_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::for_tests(dir.path());
        for (method, uri) in [
            (Method::GET, "/api/v1/system/services"),
            (Method::POST, "/api/v1/system/reboot"),
            (Method::POST, "/api/v1/system/poweroff"),
            (Method::POST, "/api/v1/system/perm/reformat"),
        ] {
            let (status, body) = call(&daemon, method, uri, ROOT, None).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
            let error = body["error"].as_str().unwrap();
            assert!(
                error.starts_with("ztos-init is not running (no socket at ")
                    && error.ends_with("): ztosd runs without a supervisor"),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn services_come_from_init_and_shutdown_goes_to_init() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::for_tests(dir.path());
        let init = fake_init(
            &daemon,
            vec![
                r#"{"services":[{"name":"ztosd","state":"running","pid":7,"restarts":0,"since":"2025-01-01T00:00:00Z","last_exit":null,"critical":true}],"healthy":true}"#,
                r#"{"ok":true}"#,
                r#"{"ok":true}"#,
            ],
        );
        let (status, body) =
            call(&daemon, Method::GET, "/api/v1/system/services", ROOT, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["healthy"], true);
        assert_eq!(body["services"][0]["name"], "ztosd");
        assert_eq!(body["services"][0]["state"], "running");
        let (status, body) = call(&daemon, Method::POST, "/api/v1/system/reboot", ROOT, None).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body["shutdown"], "reboot");
        let (status, _) = call(&daemon, Method::POST, "/api/v1/system/poweroff", ROOT, None).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(
            init.await.unwrap(),
            [
                r#"{"request":"services"}"#,
                r#"{"request":"shutdown","kind":"reboot"}"#,
                r#"{"request":"shutdown","kind":"poweroff"}"#,
            ]
        );
    }

    #[tokio::test]
    async fn reboot_needs_admin_and_services_needs_read() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::for_tests(dir.path());
        let operate = daemon.tokens().create("ops", Role::Operate).unwrap().1;
        let remote = Transport::Remote {
            peer: "192.0.2.1:40000".parse().unwrap(),
        };
        for uri in [
            "/api/v1/system/reboot",
            "/api/v1/system/poweroff",
            "/api/v1/system/perm/reformat",
        ] {
            let (status, _) = call(&daemon, Method::POST, uri, remote, Some(&operate)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
        }
        let (status, _) = call(
            &daemon,
            Method::GET,
            "/api/v1/system/services",
            remote,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn perm_reformat_goes_to_init_and_its_refusal_is_a_502_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::for_tests(dir.path());
        let init = fake_init(
            &daemon,
            vec![
                r#"{"ok":true}"#,
                r#"{"error":"perm is healthy (/dev/vda4 is mounted on /perm); nothing was done"}"#,
            ],
        );
        let uri = "/api/v1/system/perm/reformat";
        let (status, body) = call(&daemon, Method::POST, uri, ROOT, None).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body["reformat"], "ztos-perm");
        assert_eq!(body["shutdown"], "reboot");
        let (status, body) = call(&daemon, Method::POST, uri, ROOT, None).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(
            body["error"],
            "ztos-init: perm is healthy (/dev/vda4 is mounted on /perm); nothing was done"
        );
        assert_eq!(
            init.await.unwrap(),
            [
                r#"{"request":"reformat-perm"}"#,
                r#"{"request":"reformat-perm"}"#
            ]
        );
    }

    #[tokio::test]
    async fn monitoring_logs_fall_back_to_init_for_services_ztosd_does_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::for_tests(dir.path());
        let init = fake_init(
            &daemon,
            vec![
                r#"{"entries":[{"time":"2025-01-01T00:00:00Z","service":"ztos-bgp","stream":"stdout","message":"bgp says hi"}]}"#,
            ],
        );
        let (status, body) = call(
            &daemon,
            Method::GET,
            "/api/v1/monitoring/logs?service=ztos-bgp&limit=5",
            ROOT,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body[0]["message"], "bgp says hi");
        assert_eq!(body[0]["service"], "ztos-bgp");
        assert_eq!(
            init.await.unwrap(),
            [r#"{"request":"logs","service":"ztos-bgp","limit":5}"#]
        );
    }
}
