//! `/api/v1/bgp`: the BGP speaker's sessions and routes, asked of the ztos-bgp plugin with the
//! plugin protocol's `request` (`bgp summary`, `bgp neighbors`, `bgp routes`). `decode`
//! needs no plugin: it runs the codec here.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use ztos_model::api::bgp::BgpRoutesAnswer;
use ztos_model::bgp::{BgpNeighbors, BgpSummary};

use crate::api::auth::{Auth, ReadScope};
use crate::api::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::api::ApiState;
use crate::plugin_host::PluginError;

const PLUGIN: &str = "ztos-bgp";

async fn ask(state: &ApiState, method: &str, params: Value) -> Result<Json<Value>, ApiError> {
    match state.daemon.plugins().request(PLUGIN, method, params).await {
        Ok(value) => Ok(Json(value)),
        Err(e @ (PluginError::Unknown(_) | PluginError::Down(_))) => Err(ApiError::Unavailable(
            format!("{e}: BGP state is only known while ztos-bgp runs"),
        )),
        Err(PluginError::Failed { message, .. }) => Err(ApiError::bad_request(message)),
        Err(e) => Err(ApiError::BadGateway(e.to_string())),
    }
}

#[utoipa::path(get, path = "/api/v1/bgp/summary", tag = "bgp",
    responses((status = 200, description = "Local AS, router id, route counts and one line per neighbor", body = BgpSummary),
              (status = 503, description = "ztos-bgp is not connected", body = ErrorBody)))]
pub async fn summary(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<Value>, ApiError> {
    ask(&state, "bgp summary", Value::Null).await
}

#[utoipa::path(get, path = "/api/v1/bgp/neighbors", tag = "bgp",
    responses((status = 200, description = "Every neighbor in detail", body = BgpNeighbors),
              (status = 503, description = "ztos-bgp is not connected", body = ErrorBody)))]
pub async fn neighbors(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<Value>, ApiError> {
    ask(&state, "bgp neighbors", Value::Null).await
}

#[utoipa::path(get, path = "/api/v1/bgp/neighbors/{address}", tag = "bgp",
    params(("address" = String, Path, description = "The neighbor's address")),
    responses((status = 200, description = "The neighbor in detail (a list of one)", body = BgpNeighbors),
              (status = 400, description = "Not an address, or not a configured neighbor", body = ErrorBody),
              (status = 503, description = "ztos-bgp is not connected", body = ErrorBody)))]
pub async fn neighbor(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(address): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    ask(&state, "bgp neighbors", json!({ "address": address })).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RoutesParams {
    /// `ipv4`, `ipv6` or `evpn`; all when absent.
    pub family: Option<String>,
    /// Only routes within this prefix (`192.0.2.0/24`), or covering this address.
    pub prefix: Option<String>,
    /// Only EVPN routes of this VNI (implies `family=evpn`).
    pub vni: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/bgp/routes", tag = "bgp", params(RoutesParams),
    responses((status = 200, description = "Loc-RIB entries with every candidate path, best first; EVPN routes with `family=evpn` or `vni`", body = BgpRoutesAnswer),
              (status = 400, description = "A bad family, prefix or VNI", body = ErrorBody),
              (status = 503, description = "ztos-bgp is not connected", body = ErrorBody)))]
pub async fn routes(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<RoutesParams>,
) -> Result<Json<Value>, ApiError> {
    ask(
        &state,
        "bgp routes",
        json!({ "family": params.family, "prefix": params.prefix, "vni": params.vni }),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DecodeParams {
    /// One BGP message in hex, with or without the 16-byte marker.
    pub hex: String,
}

#[utoipa::path(get, path = "/api/v1/bgp/decode", tag = "bgp", params(DecodeParams),
    responses((status = 200, description = "The message as JSON, with its RFC 7606 outcome", body = Object),
              (status = 400, description = "Not hex, or not one BGP message", body = ErrorBody)))]
pub async fn decode(
    _auth: Auth<ReadScope>,
    ApiQuery(params): ApiQuery<DecodeParams>,
) -> Result<Json<Value>, ApiError> {
    let message = ztos_bgp_codec::decode_hex(&params.hex)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    serde_json::to_value(message)
        .map(Json)
        .map_err(|e| ApiError::Internal(format!("cannot render a decoded BGP message: {e}")))
}
