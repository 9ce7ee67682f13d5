//! `/api/v1/system/update` (streamed bundle upload, progress), `/api/v1/system/update/url`
//! (download and install), `/api/v1/system/update/history`, `/api/v1/system/slots` and
//! `/api/v1/system/rollback`.
//!
//! The upload is the one route whose body is not read whole before the handler runs
//! (`read_body_first` in `api/mod.rs` lets it through): the bundle streams into the update
//! service. So this handler checks the caller itself, and on any refusal reads and drops
//! the rest of the body (bounded) before answering, so the client sees the answer rather
//! than a connection reset.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use futures::{Stream, StreamExt};
use serde::Deserialize;

use crate::api::auth::{AdminScope, Auth, ReadScope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::ApiState;
use crate::update::history::HistoryEntry;
use crate::update::pull::HttpGetter;
use crate::update::{
    RebootWhen, RollbackOutcome, SlotsView, UpdateError, UpdateOutcome, UpdateRequest,
};

/// How long the rest of a refused upload is read before the answer goes out anyway.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The one conversion of updater errors to API errors.
pub fn api_error(err: UpdateError) -> ApiError {
    match err {
        UpdateError::Busy(message) | UpdateError::Refused(message) => ApiError::Conflict(message),
        UpdateError::Rejected(message) => ApiError::Unprocessable {
            message,
            details: Vec::new(),
        },
        UpdateError::BadRequest(message) => ApiError::bad_request(message),
        UpdateError::Unavailable(message) => ApiError::Unavailable(message),
        UpdateError::Failed(message) => ApiError::Internal(message),
    }
}

/// Query options of an upload.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UpdateQuery {
    /// Install an older (or the same) version.
    #[serde(default)]
    pub allow_downgrade: bool,
    /// `now` (default), `later` (or `never`: the new version boots at the next reboot), or an
    /// RFC 3339 time.
    pub reboot: Option<String>,
    /// Boot tries the new slot gets to prove itself, 1 to 10 (default 3).
    pub tries: Option<u32>,
}

impl UpdateQuery {
    fn request(&self, source: String) -> Result<UpdateRequest, ApiError> {
        let mut request = UpdateRequest::new(source);
        request.allow_downgrade = self.allow_downgrade;
        if let Some(reboot) = &self.reboot {
            request.reboot =
                RebootWhen::parse(reboot).map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        if let Some(tries) = self.tries {
            request.tries = tries;
        }
        // Checked here too (the service checks again), so a refused upload is drained.
        request
            .check()
            .map_err(|err| ApiError::bad_request(err.to_string()))?;
        Ok(request)
    }
}

pub use ztos_model::api::update::UpdateStatus;

pub use ztos_model::api::update::UpdateFromUrl;

/// `POST /api/v1/system/rollback` options.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RollbackQuery {
    /// `false`: switch the next boot only, do not reboot now.
    pub reboot: Option<bool>,
}

fn body_stream(body: Body) -> impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin {
    body.into_data_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other))
}

/// Reads and drops what is left of a refused upload, within bounds, then returns `err`.
async fn refuse(body: Body, err: ApiError) -> ApiError {
    let mut stream = body_stream(body);
    let mut dropped = 0u64;
    let drain = async {
        while let Some(Ok(chunk)) = stream.next().await {
            dropped += chunk.len() as u64;
            if dropped > 64 << 30 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    err
}

#[utoipa::path(post, path = "/api/v1/system/update", tag = "system",
    params(UpdateQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The bundle (`ztos-image bundle`), streamed"),
    responses((status = 200, description = "Written and verified; the new slot's boot entry counts tries", body = UpdateOutcome),
              (status = 400, description = "The upload ended before the bundle did, or a bad option", body = ErrorBody),
              (status = 409, description = "Another update or a rollback is running", body = ErrorBody),
              (status = 422, description = "The bundle was refused: signatures, version policy, hashes, sizes; nothing was written to the ESP", body = ErrorBody),
              (status = 503, description = "This box cannot be updated as it runs (no slot on the kernel command line, no trust store, no ESP)", body = ErrorBody)))]
pub async fn upload(
    auth: Result<Auth<AdminScope>, ApiError>,
    State(state): State<ApiState>,
    query: Result<Query<UpdateQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UpdateOutcome>, ApiError> {
    let auth = match auth {
        Ok(auth) => auth,
        Err(err) => return Err(refuse(body, err).await),
    };
    let query = match query {
        Ok(Query(query)) => query,
        Err(err) => return Err(refuse(body, ApiError::bad_request(err.body_text())).await),
    };
    if let Some(kind) = headers.get(header::CONTENT_TYPE) {
        let kind = kind.to_str().unwrap_or_default();
        if !kind.starts_with("application/octet-stream") {
            return Err(refuse(
                body,
                ApiError::bad_request(format!(
                    "content type {kind:?}: send the bundle as application/octet-stream"
                )),
            )
            .await);
        }
    }
    let mut request = match query.request(format!("upload by {}", auth.caller.author)) {
        Ok(request) => request,
        Err(err) => return Err(refuse(body, err).await),
    };
    request.expected_bytes = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    request.root_in_memory_max_mib = state
        .daemon
        .running()
        .await
        .config
        .system
        .update
        .and_then(|u| u.root_in_memory_max_mib);
    let service = state.daemon.update();
    let ticket = match service.try_begin() {
        Ok(ticket) => ticket,
        Err(err) => return Err(refuse(body, api_error(err)).await),
    };
    service
        .update_from_stream(ticket, body_stream(body), request)
        .await
        .map(Json)
        .map_err(api_error)
}

#[utoipa::path(post, path = "/api/v1/system/update/url", tag = "system",
    request_body = UpdateFromUrl,
    responses((status = 200, description = "Downloaded, written and verified", body = UpdateOutcome),
              (status = 400, description = "The download failed or ended early, or a bad option", body = ErrorBody),
              (status = 409, description = "Another update or a rollback is running", body = ErrorBody),
              (status = 422, description = "The bundle was refused; nothing was written to the ESP", body = ErrorBody),
              (status = 503, description = "This box cannot be updated as it runs", body = ErrorBody)))]
pub async fn from_url(
    auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    Json(body): Json<UpdateFromUrl>,
) -> Result<Json<UpdateOutcome>, ApiError> {
    let query = UpdateQuery {
        allow_downgrade: body.allow_downgrade,
        reboot: body.reboot.clone(),
        tries: body.tries,
    };
    let mut request = query.request(format!("{} (asked by {})", body.url, auth.caller.author))?;
    let settings = state.daemon.running().await.config.system.update;
    request.root_in_memory_max_mib = settings.as_ref().and_then(|u| u.root_in_memory_max_mib);
    let ca_cert = settings.and_then(|u| u.ca_cert);
    let getter = HttpGetter::new(ca_cert.as_deref().map(std::path::Path::new))
        .map_err(|err| ApiError::Unavailable(format!("system.update.ca_cert: {err}")))?;
    state
        .daemon
        .update()
        .update_from_url(&body.url, &getter, None, request)
        .await
        .map(Json)
        .map_err(api_error)
}

#[utoipa::path(get, path = "/api/v1/system/update", tag = "system",
    responses((status = 200, description = "The update running now, or the last one; pull mode's checks", body = UpdateStatus)))]
pub async fn status(_auth: Auth<ReadScope>, State(state): State<ApiState>) -> Json<UpdateStatus> {
    let service = state.daemon.update();
    Json(UpdateStatus {
        progress: service.progress(),
        pull: service.pull_status(),
    })
}

#[utoipa::path(get, path = "/api/v1/system/update/history", tag = "system",
    responses((status = 200, description = "Update events, oldest first (the last 50)", body = Vec<HistoryEntry>)))]
pub async fn history(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
) -> Json<Vec<HistoryEntry>> {
    Json(state.daemon.update().history())
}

#[utoipa::path(get, path = "/api/v1/system/slots", tag = "system",
    responses((status = 200, description = "Both slots: versions, active, next boot, good/trial/bad/no-entry", body = SlotsView),
              (status = 503, description = "The ESP cannot be read (not the appliance)", body = ErrorBody)))]
pub async fn slots(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<SlotsView>, ApiError> {
    let service = state.daemon.update();
    service.refresh_boot().await;
    service.slots().await.map(Json).map_err(api_error)
}

#[utoipa::path(post, path = "/api/v1/system/rollback", tag = "system",
    params(RollbackQuery),
    responses((status = 200, description = "The other slot boots next (and init reboots unless reboot=false)", body = RollbackOutcome),
              (status = 409, description = "The other slot is bad, has no entry or was overwritten; or an update runs", body = ErrorBody),
              (status = 503, description = "Not the appliance, or init could not reboot", body = ErrorBody)))]
pub async fn rollback(
    auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    Query(query): Query<RollbackQuery>,
) -> Result<Json<RollbackOutcome>, ApiError> {
    let service = state.daemon.update();
    let ticket = service.try_begin().map_err(api_error)?;
    service
        .rollback(ticket, &auth.caller.author, query.reboot.unwrap_or(true))
        .await
        .map(Json)
        .map_err(api_error)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::body::Body;
    use axum::http::{header, Method, Request, StatusCode};

    use crate::api::tests::Harness;
    use crate::api::Transport;
    use crate::config::Role;

    fn upload(token: Option<&str>, uri: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let mut request = builder.body(Body::from(body)).unwrap();
        let transport = match token {
            Some(_) => Transport::Remote {
                peer: SocketAddr::from(([192, 0, 2, 10], 40000)),
            },
            None => Transport::Local { uid: 0 },
        };
        request.extensions_mut().insert(transport);
        request
    }

    #[tokio::test]
    async fn uploads_need_admin_and_a_refused_large_body_is_answered_not_cut() {
        let h = Harness::new();
        let (_, read) = h.daemon.tokens().create("reader", Role::Read).unwrap();
        // Larger than the 4 MiB every other route is capped at: still a 403, not a 413.
        let body = vec![0u8; 5 << 20];
        let (status, answer) = h
            .send(upload(
                Some(&read),
                "/api/v1/system/update",
                "application/octet-stream",
                body,
            ))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("admin"),
            "{answer}"
        );

        let (status, answer) = h
            .send(upload(
                None,
                "/api/v1/system/update",
                "text/plain",
                b"x".to_vec(),
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("send the bundle as application/octet-stream"),
            "{answer}"
        );
        for (query, reason) in [
            ("reboot=soon", "expected now, never or an RFC 3339 time"),
            ("tries=many", "tries"),
            ("tries=11", "tries must be between 1 and 10, not 11"),
            ("color=blue", "color"),
        ] {
            let (status, answer) = h
                .send(upload(
                    None,
                    &format!("/api/v1/system/update?{query}"),
                    "application/octet-stream",
                    b"ZTOSBNDL".to_vec(),
                ))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
            assert!(
                answer["error"].as_str().unwrap().contains(reason),
                "{query}: {answer}"
            );
        }
    }

    #[tokio::test]
    async fn progress_and_history_are_readable_with_a_read_token() {
        let h = Harness::new();
        let (_, read) = h.daemon.tokens().create("reader", Role::Read).unwrap();
        let request = |uri: &str| {
            let mut request = Request::builder()
                .uri(uri)
                .header(header::AUTHORIZATION, format!("Bearer {read}"))
                .body(Body::empty())
                .unwrap();
            request.extensions_mut().insert(Transport::Remote {
                peer: SocketAddr::from(([192, 0, 2, 10], 40000)),
            });
            request
        };
        let (status, progress) = h.send(request("/api/v1/system/update")).await;
        assert_eq!(status, StatusCode::OK, "{progress}");
        assert_eq!(progress["state"], "idle");
        assert_eq!(progress["pull"], serde_json::Value::Null);
        let (status, history) = h.send(request("/api/v1/system/update/history")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(history, serde_json::json!([]));
    }
}
