//! `GET /api/v1/security/status`: the seed's security API. Encryption status of WireGuard and
//! MACsec: what is configured and whether the owning plugin is running.

use axum::extract::State;
use axum::Json;

use crate::api::auth::{Auth, ReadScope};
use crate::api::ApiState;
use crate::daemon::SecurityStatus;

#[utoipa::path(get, path = "/api/v1/security/status", tag = "security",
    responses((status = 200, body = SecurityStatus)))]
pub async fn status(_auth: Auth<ReadScope>, State(state): State<ApiState>) -> Json<SecurityStatus> {
    Json(state.daemon.security_status().await)
}
