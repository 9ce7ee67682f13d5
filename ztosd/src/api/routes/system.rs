//! Whole-system routes: `/health` (no authentication, for load balancers and init),
//! `/metrics` (Prometheus), `/api/v1/interfaces` and `/api/v1/openapi.json`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use utoipa::OpenApi;

use crate::api::auth::{Auth, ReadScope};
use crate::api::error::ApiError;
use crate::api::openapi::ApiDoc;
use crate::api::ApiState;
use crate::daemon::Health;
use crate::netlink::InterfaceStatus;

#[utoipa::path(get, path = "/health", tag = "system", security(()),
    responses((status = 200, description = "Healthy", body = Health),
              (status = 503, description = "Not healthy; `components` say why", body = Health)))]
pub async fn health(State(state): State<ApiState>) -> (StatusCode, Json<Health>) {
    let health = state.daemon.health().await;
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(_auth: Auth<ReadScope>, State(state): State<ApiState>) -> impl IntoResponse {
    let mut out = String::new();
    state.daemon.render_metrics(&mut out);
    state.http.render(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

#[utoipa::path(get, path = "/api/v1/interfaces", tag = "system",
    responses((status = 200, description = "Kernel interfaces and their state", body = Vec<InterfaceStatus>)))]
pub async fn interfaces(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<Vec<InterfaceStatus>>, ApiError> {
    Ok(Json(state.daemon.interfaces().await?))
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "This document", body = Object)))]
pub async fn openapi(_auth: Auth<ReadScope>) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
