//! `/api/v1/plugins`: the plugin processes ztosd knows of, their state and what they own.

use axum::extract::State;
use axum::Json;

use crate::api::auth::{Auth, ReadScope};
use crate::api::error::{ApiError, ApiPath, ErrorBody};
use crate::api::ApiState;
use crate::plugin_host::PluginInfo;

#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins",
    responses((status = 200, body = Vec<PluginInfo>)))]
pub async fn list(_auth: Auth<ReadScope>, State(state): State<ApiState>) -> Json<Vec<PluginInfo>> {
    Json(state.daemon.plugins().list())
}

#[utoipa::path(get, path = "/api/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name, such as ztos-bgp")),
    responses((status = 200, body = PluginInfo), (status = 404, body = ErrorBody)))]
pub async fn get(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PluginInfo>, ApiError> {
    state
        .daemon
        .plugins()
        .get(&name)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no plugin named {name:?}")))
}
