//! `/api/v1/tokens`: API tokens for remote clients. Admin only. The secret of a new token is
//! in the creation response and nowhere else.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::api::auth::{AdminScope, Auth};
use crate::api::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::api::ApiState;
use crate::tokens::TokenInfo;

pub use ztos_model::api::tokens::CreateToken;
pub use ztos_model::api::tokens::CreatedToken;

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list(_auth: Auth<AdminScope>, State(state): State<ApiState>) -> Json<Vec<TokenInfo>> {
    Json(state.daemon.tokens().list())
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken),
              (status = 400, description = "Invalid name or role", body = ErrorBody),
              (status = 409, description = "A token with that name exists", body = ErrorBody)))]
pub async fn create(
    auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let (token, secret) = state.daemon.tokens().create(&body.name, body.role)?;
    tracing::info!(
        "api token {} ({}) created by {}",
        token.name,
        crate::api::auth::role_name(token.role),
        auth.caller.author
    );
    Ok((StatusCode::CREATED, Json(CreatedToken { token, secret })))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens",
    params(("name" = String, Path, description = "Token name")),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.daemon.tokens().revoke(&name)?;
    tracing::info!("api token {name} revoked by {}", auth.caller.author);
    Ok(StatusCode::NO_CONTENT)
}
