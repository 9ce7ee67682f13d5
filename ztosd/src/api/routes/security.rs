//! `/api/v1/security`: the seed's security API. `status`: encryption status of WireGuard and
//! MACsec (what is configured and whether the owning plugin is running). `wireguard`: the
//! WireGuard interfaces' public keys and peers, key generation and rotation, asked of the
//! ztos-wireguard plugin with the plugin protocol's `request` (`wireguard show`, `wireguard
//! genkey`, `wireguard rotate-key`). Private keys stay in the plugin's state dir: no route
//! returns one.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use ztos_model::wireguard::{
    WireguardKey, WireguardPresharedKey, WireguardRotatedKey, WireguardShow,
};

use crate::api::auth::{AdminScope, Auth, ReadScope};
use crate::api::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::api::ApiState;
use crate::daemon::SecurityStatus;
use crate::plugin_host::PluginError;

const WIREGUARD: &str = "ztos-wireguard";

#[utoipa::path(get, path = "/api/v1/security/status", tag = "security",
    responses((status = 200, body = SecurityStatus)))]
pub async fn status(_auth: Auth<ReadScope>, State(state): State<ApiState>) -> Json<SecurityStatus> {
    Json(state.daemon.security_status().await)
}

/// A WireGuard interface name as Linux takes it: 1 to 15 letters, digits, `-`, `_` or `.`.
fn check_interface(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != "..";
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{name:?} is not a valid interface name (1 to 15 letters, digits, '-', '_' or '.')"
        )))
    }
}

async fn ask_wireguard(
    state: &ApiState,
    method: &str,
    params: Value,
) -> Result<Json<Value>, ApiError> {
    match state
        .daemon
        .plugins()
        .request(WIREGUARD, method, params)
        .await
    {
        Ok(value) => Ok(Json(value)),
        Err(e @ (PluginError::Unknown(_) | PluginError::Down(_))) => Err(ApiError::Unavailable(
            format!("{e}: WireGuard keys and peers are only reachable while ztos-wireguard runs"),
        )),
        Err(PluginError::Failed { message, .. }) => Err(ApiError::bad_request(message)),
        Err(e) => Err(ApiError::BadGateway(e.to_string())),
    }
}

#[utoipa::path(get, path = "/api/v1/security/wireguard", tag = "security",
    responses((status = 200, description = "Every WireGuard interface (public key, listen port, \
        peers with endpoint, latest handshake, transfer and policy counters) and the policy \
        counters; like `wg show`, without private keys", body = WireguardShow),
              (status = 503, description = "ztos-wireguard is not connected", body = ErrorBody)))]
pub async fn wireguard_show(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<Value>, ApiError> {
    ask_wireguard(&state, "wireguard show", Value::Null).await
}

#[utoipa::path(get, path = "/api/v1/security/wireguard/{interface}", tag = "security",
    params(("interface" = String, Path, description = "The WireGuard interface, e.g. `wg0`")),
    responses((status = 200, description = "The interface as in `GET /api/v1/security/wireguard`; \
        an interface with a key but no configuration shows its public key with `configured: false`", body = WireguardShow),
              (status = 400, description = "Not an interface name, or an interface with neither configuration nor key", body = ErrorBody),
              (status = 503, description = "ztos-wireguard is not connected", body = ErrorBody)))]
pub async fn wireguard_show_interface(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(interface): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    check_interface(&interface)?;
    ask_wireguard(&state, "wireguard show", json!({ "interface": interface })).await
}

#[utoipa::path(post, path = "/api/v1/security/wireguard/{interface}/genkey", tag = "security",
    params(("interface" = String, Path, description = "The WireGuard interface, e.g. `wg0`")),
    responses((status = 200, description = "`{interface, public_key}`: a private key was generated \
        and stored on the box (mode 0600); only its public key is returned", body = WireguardKey),
              (status = 400, description = "Not an interface name, or the interface already has a key (use rotate-key)", body = ErrorBody),
              (status = 503, description = "ztos-wireguard is not connected", body = ErrorBody)))]
pub async fn wireguard_genkey(
    _auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(interface): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    check_interface(&interface)?;
    ask_wireguard(
        &state,
        "wireguard genkey",
        json!({ "interface": interface }),
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/security/wireguard/{interface}/rotate-key", tag = "security",
    params(("interface" = String, Path, description = "The WireGuard interface, e.g. `wg0`")),
    responses((status = 200, description = "`{interface, old_public_key, public_key, notice}`: \
        the interface's private key was replaced and its sessions dropped; `notice` says what \
        every peer must now be told", body = WireguardRotatedKey),
              (status = 400, description = "Not an interface name", body = ErrorBody),
              (status = 503, description = "ztos-wireguard is not connected", body = ErrorBody)))]
pub async fn wireguard_rotate_key(
    _auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(interface): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    check_interface(&interface)?;
    ask_wireguard(
        &state,
        "wireguard rotate-key",
        json!({ "interface": interface }),
    )
    .await
}

pub use ztos_model::api::security::PresharedKeyRequest;

#[utoipa::path(post, path = "/api/v1/security/wireguard/{interface}/preshared-key", tag = "security",
    params(("interface" = String, Path, description = "The WireGuard interface, e.g. `wg0`")),
    request_body = PresharedKeyRequest,
    responses((status = 200, description = "`{interface, peer, preshared_key}`: the preshared key \
        of a peer configured with `preshared_key = true`, to be given to that peer (it is a \
        shared secret: handle it like a password)", body = WireguardPresharedKey),
              (status = 400, description = "Not an interface name, not a key, or not a peer of the interface with preshared_key = true", body = ErrorBody),
              (status = 503, description = "ztos-wireguard is not connected", body = ErrorBody)))]
pub async fn wireguard_preshared_key(
    _auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(interface): ApiPath<String>,
    ApiJson(request): ApiJson<PresharedKeyRequest>,
) -> Result<Json<Value>, ApiError> {
    check_interface(&interface)?;
    ask_wireguard(
        &state,
        "wireguard preshared-key",
        json!({ "interface": interface, "peer": request.peer }),
    )
    .await
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::json;

    use crate::api::tests::Harness;
    use crate::api::Transport;
    use crate::config::Role;

    const LOCAL: Transport = Transport::Local { uid: 0 };

    #[tokio::test]
    async fn key_routes_need_admin_and_a_running_plugin() {
        let h = Harness::new();
        let (_, reader) = h.daemon.tokens().create("reader", Role::Read).unwrap();
        let remote = Transport::Remote {
            peer: "192.0.2.7:4000".parse().unwrap(),
        };
        for path in [
            "/api/v1/security/wireguard/wg0/genkey",
            "/api/v1/security/wireguard/wg0/rotate-key",
            "/api/v1/security/wireguard/wg0/preshared-key",
        ] {
            let body = Some(json!({"peer": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="}));
            let (status, answer) = h
                .send_as(remote, Method::POST, path, Some(&reader), body.clone())
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
            // Admin, but no plugin: 503 naming the plugin.
            let (status, body) = h.send_as(LOCAL, Method::POST, path, None, body).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
            assert!(
                body["error"].as_str().unwrap().contains("ztos-wireguard"),
                "{body}"
            );
        }
        // Reading is allowed to a read token; without the plugin it is 503 too.
        for path in [
            "/api/v1/security/wireguard",
            "/api/v1/security/wireguard/wg0",
        ] {
            let (status, body) = h
                .send_as(remote, Method::GET, path, Some(&reader), None)
                .await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        }
    }

    #[tokio::test]
    async fn bad_interface_names_are_refused_before_the_plugin_is_asked() {
        let h = Harness::new();
        for (method, path) in [
            (
                Method::GET,
                "/api/v1/security/wireguard/this-name-is-too-long",
            ),
            (Method::POST, "/api/v1/security/wireguard/wg%2F0/genkey"),
            (Method::POST, "/api/v1/security/wireguard/../rotate-key"),
        ] {
            let (status, body) = h.send_as(LOCAL, method, path, None, None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            let message = body["error"].as_str().unwrap();
            assert!(message.contains("not a valid interface name"), "{body}");
        }
        // The preshared-key body names the peer and nothing else.
        for body in [json!({}), json!({"peer": "K", "extra": 1})] {
            let (status, answer) = h
                .send_as(
                    LOCAL,
                    Method::POST,
                    "/api/v1/security/wireguard/wg0/preshared-key",
                    None,
                    Some(body.clone()),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        }
    }
}
