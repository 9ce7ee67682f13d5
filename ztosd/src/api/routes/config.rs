//! `/api/v1/config/*`: the running configuration, the candidate, diffs, commits (plain and
//! confirmed), confirmation, rollback, the revision history and the document's JSON Schema.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use crate::api::auth::{AdminScope, Auth, OperateScope, ReadScope};
use crate::api::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody, ErrorDetail};
use crate::api::openapi::RevisionMetaSchema;
use crate::api::ApiState;
use crate::daemon::{CommitOutcome, CommitRequest, RunningConfig};
use crate::store::RevisionMeta;

pub use ztos_model::api::config::CandidateResponse;

pub use ztos_model::api::config::{CandidateEdit, CandidateText};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DiffParams {
    /// Revision to diff from; without `from` and `to`, running is diffed against the candidate.
    pub from: Option<u64>,
    /// Revision to diff to; running when only `from` is given.
    pub to: Option<u64>,
}

pub use ztos_model::api::config::DiffResponse;

pub use ztos_model::api::config::RevisionResponse;
pub use ztos_model::api::config::{CommitBody, RollbackBody};

#[utoipa::path(get, path = "/api/v1/config", tag = "config",
    responses((status = 200, description = "The running configuration", body = RunningConfig)))]
pub async fn running(_auth: Auth<ReadScope>, State(state): State<ApiState>) -> Json<RunningConfig> {
    Json(state.daemon.running().await)
}

#[utoipa::path(get, path = "/api/v1/config/candidate", tag = "config",
    responses((status = 200, body = CandidateResponse)))]
pub async fn get_candidate(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<CandidateResponse>, ApiError> {
    let response = match state.daemon.candidate().await? {
        Some(text) => CandidateResponse {
            text,
            modified: true,
        },
        None => CandidateResponse {
            text: state.daemon.running().await.text,
            modified: false,
        },
    };
    Ok(Json(response))
}

#[utoipa::path(put, path = "/api/v1/config/candidate", tag = "config", request_body = CandidateText,
    responses((status = 200, description = "The candidate was replaced", body = CandidateResponse),
              (status = 400, body = ErrorBody), (status = 422, description = "The document is invalid", body = ErrorBody)))]
pub async fn put_candidate(
    _auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<CandidateText>,
) -> Result<Json<CandidateResponse>, ApiError> {
    state.daemon.set_candidate(body.text.clone()).await?;
    Ok(Json(CandidateResponse {
        text: body.text,
        modified: true,
    }))
}

#[utoipa::path(patch, path = "/api/v1/config/candidate", tag = "config", request_body = CandidateEdit,
    responses((status = 200, description = "The edited candidate", body = CandidateResponse),
              (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch_candidate(
    _auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    ApiJson(edit): ApiJson<CandidateEdit>,
) -> Result<Json<CandidateResponse>, ApiError> {
    let text = match (edit.value, edit.delete) {
        (Some(value), false) => state.daemon.set_candidate_value(&edit.path, &value).await?,
        (None, true) => state.daemon.delete_candidate_value(&edit.path).await?,
        (Some(_), true) => {
            return Err(edit_error(
                "delete",
                "give either value or \"delete\": true, not both",
            ))
        }
        (None, false) => {
            return Err(edit_error(
                "value",
                "missing value: give a value or \"delete\": true",
            ))
        }
    };
    Ok(Json(CandidateResponse {
        text,
        modified: true,
    }))
}

fn edit_error(path: &str, message: &str) -> ApiError {
    ApiError::BadRequest {
        message: format!("invalid request body: {message}"),
        details: vec![ErrorDetail {
            path: path.to_string(),
            message: message.to_string(),
        }],
    }
}

#[utoipa::path(delete, path = "/api/v1/config/candidate", tag = "config",
    responses((status = 204, description = "The candidate was discarded")))]
pub async fn discard_candidate(
    _auth: Auth<AdminScope>,
    State(state): State<ApiState>,
) -> Result<StatusCode, ApiError> {
    state.daemon.discard_candidate().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/config/diff", tag = "config", params(DiffParams),
    responses((status = 200, body = DiffResponse), (status = 404, description = "No such revision", body = ErrorBody)))]
pub async fn diff(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<DiffParams>,
) -> Result<Json<DiffResponse>, ApiError> {
    let diff = state.daemon.diff(params.from, params.to).await?;
    Ok(Json(DiffResponse { diff }))
}

#[utoipa::path(post, path = "/api/v1/config/commit", tag = "config", request_body = CommitBody,
    responses((status = 200, description = "Committed and applied", body = CommitOutcome),
              (status = 400, body = ErrorBody),
              (status = 409, description = "Nothing to commit, or a confirmed commit is pending", body = ErrorBody),
              (status = 422, description = "Invalid configuration or plugin veto; `details` name the paths", body = ErrorBody),
              (status = 500, description = "The kernel refused the change; nothing was committed", body = ErrorBody)))]
pub async fn commit(
    auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<CommitBody>,
) -> Result<Json<CommitOutcome>, ApiError> {
    let outcome = state
        .daemon
        .commit(CommitRequest {
            text: body.text,
            author: auth.caller.author,
            comment: body.comment,
            confirm_minutes: body.confirm_minutes,
        })
        .await?;
    Ok(Json(outcome))
}

#[utoipa::path(post, path = "/api/v1/config/confirm", tag = "config",
    responses((status = 200, description = "The confirmed revision", body = RevisionMetaSchema),
              (status = 409, description = "No commit is waiting for confirmation", body = ErrorBody)))]
pub async fn confirm(
    auth: Auth<OperateScope>,
    State(state): State<ApiState>,
) -> Result<Json<RevisionMeta>, ApiError> {
    Ok(Json(state.daemon.confirm(&auth.caller.author).await?))
}

#[utoipa::path(post, path = "/api/v1/config/rollback", tag = "config", request_body = RollbackBody,
    responses((status = 200, description = "The old content committed as a new revision", body = CommitOutcome),
              (status = 404, description = "No such revision", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rollback(
    auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<RollbackBody>,
) -> Result<Json<CommitOutcome>, ApiError> {
    let outcome = state
        .daemon
        .rollback(body.revision, &auth.caller.author, body.comment)
        .await?;
    Ok(Json(outcome))
}

#[utoipa::path(get, path = "/api/v1/config/revisions", tag = "config",
    responses((status = 200, description = "Stored revisions, newest first", body = Vec<RevisionMetaSchema>)))]
pub async fn revisions(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<Vec<RevisionMeta>>, ApiError> {
    Ok(Json(state.daemon.revisions().await?))
}

#[utoipa::path(get, path = "/api/v1/config/revisions/{n}", tag = "config",
    params(("n" = u64, Path, description = "Revision number")),
    responses((status = 200, body = RevisionResponse), (status = 404, body = ErrorBody)))]
pub async fn revision(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(n): ApiPath<u64>,
) -> Result<Json<RevisionResponse>, ApiError> {
    let (revision, text) = state.daemon.revision(n).await?;
    Ok(Json(RevisionResponse { revision, text }))
}

#[utoipa::path(get, path = "/api/v1/config/schema", tag = "config",
    responses((status = 200, description = "JSON Schema of the configuration document", body = Object)))]
pub async fn schema(_auth: Auth<ReadScope>) -> Json<serde_json::Value> {
    Json(crate::config::json_schema())
}
