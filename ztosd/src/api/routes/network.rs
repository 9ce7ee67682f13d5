//! `POST /api/v1/network/configure`: the seed's network API. Adds or changes a BGP peer, a
//! VXLAN segment or a WireGuard peer without writing TOML, committed as one new revision.

use axum::extract::State;
use axum::Json;

use crate::api::auth::{AdminScope, Auth};
use crate::api::error::{ApiError, ApiJson, ErrorBody};
use crate::api::ApiState;
use crate::daemon::{CommitOutcome, NetworkConfigureRequest};

#[utoipa::path(post, path = "/api/v1/network/configure", tag = "network",
    request_body = NetworkConfigureRequest,
    responses((status = 200, description = "Committed and applied as a new revision", body = CommitOutcome),
              (status = 400, description = "Malformed body; the message names the field", body = ErrorBody),
              (status = 422, description = "The resulting configuration is invalid or a plugin vetoed it", body = ErrorBody),
              (status = 500, description = "The kernel refused the change; nothing was committed", body = ErrorBody)))]
pub async fn configure(
    auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<NetworkConfigureRequest>,
) -> Result<Json<CommitOutcome>, ApiError> {
    let outcome = state
        .daemon
        .network_configure(request, &auth.caller.author)
        .await?;
    Ok(Json(outcome))
}
