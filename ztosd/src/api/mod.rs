//! The REST API (`/api/v1`, plus `/health` and `/metrics`), used by the `ztos` CLI over the
//! unix socket, by the web UI and by automation over HTTPS.
//!
//! - [`app`] builds the router; tests drive it with `oneshot`, no socket needed.
//! - [`auth`] decides who the caller is and what they may do; [`error`] turns every failure
//!   into one JSON error format in exactly one place.
//! - [`server`] runs the unix-socket and HTTPS listeners; [`openapi`] describes it all.

pub mod auth;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod server;

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

pub use auth::{Caller, Transport};
pub use error::{ApiError, ErrorBody, ErrorDetail, MAX_BODY_BYTES};
pub use openapi::ApiDoc;
pub use server::{serve_https, serve_unix};

use crate::daemon::Daemon;
use metrics::HttpMetrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub daemon: Daemon,
    pub http: Arc<HttpMetrics>,
}

/// The whole API as a router with its state applied.
pub fn app(daemon: Daemon) -> Router {
    let state = ApiState {
        daemon,
        http: Arc::new(HttpMetrics::default()),
    };
    use routes::{bgp, config, monitoring, network, plugins, security, system, tokens};
    let api = Router::new()
        .route("/network/configure", post(network::configure))
        .route("/security/status", get(security::status))
        .route("/security/wireguard", get(security::wireguard_show))
        .route(
            "/security/wireguard/{interface}",
            get(security::wireguard_show_interface),
        )
        .route(
            "/security/wireguard/{interface}/genkey",
            post(security::wireguard_genkey),
        )
        .route(
            "/security/wireguard/{interface}/rotate-key",
            post(security::wireguard_rotate_key),
        )
        .route(
            "/security/wireguard/{interface}/preshared-key",
            post(security::wireguard_preshared_key),
        )
        .route("/monitoring/logs", get(monitoring::logs))
        .route("/config", get(config::running))
        .route(
            "/config/candidate",
            get(config::get_candidate)
                .put(config::put_candidate)
                .patch(config::patch_candidate)
                .delete(config::discard_candidate),
        )
        .route("/config/diff", get(config::diff))
        .route("/config/commit", post(config::commit))
        .route("/config/confirm", post(config::confirm))
        .route("/config/rollback", post(config::rollback))
        .route("/config/revisions", get(config::revisions))
        .route("/config/revisions/{n}", get(config::revision))
        .route("/config/schema", get(config::schema))
        .route("/interfaces", get(system::interfaces))
        .route("/system/services", get(routes::system_services::services))
        .route("/system/reboot", post(routes::system_services::reboot))
        .route("/system/poweroff", post(routes::system_services::poweroff))
        .route(
            "/system/perm/reformat",
            post(routes::system_services::reformat_perm),
        )
        .route(
            "/system/update",
            get(routes::update::status).post(routes::update::upload),
        )
        .route("/system/update/url", post(routes::update::from_url))
        .route("/system/update/history", get(routes::update::history))
        .route("/system/slots", get(routes::update::slots))
        .route("/system/rollback", post(routes::update::rollback))
        .route("/bgp/summary", get(bgp::summary))
        .route("/bgp/neighbors", get(bgp::neighbors))
        .route("/bgp/neighbors/{address}", get(bgp::neighbor))
        .route("/bgp/routes", get(bgp::routes))
        .route("/bgp/decode", get(bgp::decode))
        .route("/plugins", get(plugins::list))
        .route("/plugins/{name}", get(plugins::get))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{name}", delete(tokens::revoke))
        .route("/auth/login", post(routes::users::login))
        .route("/auth/logout", post(routes::users::logout))
        .route("/users", get(routes::users::list))
        .route(
            "/users/setup",
            get(routes::users::setup).post(routes::users::create_first_admin),
        )
        .route("/users/{name}", delete(routes::users::delete))
        .route(
            "/users/{name}/password",
            axum::routing::put(routes::users::set_password),
        )
        .route("/openapi.json", get(system::openapi));
    Router::new()
        .nest("/api/v1", api)
        .route("/health", get(system::health))
        .route("/metrics", get(system::metrics))
        .method_not_allowed_fallback(error::method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(read_body_first))
        .with_state(state)
}

/// The one route whose body is streamed rather than read first.
const STREAMED_UPLOAD: &str = "/api/v1/system/update";

/// Reads the whole request body (at most [`MAX_BODY_BYTES`]) before anything answers. A
/// handler that rejects early (401, 403) would otherwise leave the body unread; closing a TCP
/// connection with unread bytes makes the kernel send a reset, which can reach the client
/// before the error response does (seen with TLS, where the body arrives in its own record).
/// The streamed bundle upload ([`STREAMED_UPLOAD`]) bypasses this: its handler enforces its
/// own limits and drains a refused body itself (`routes::update`).
async fn read_body_first(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if request.method() == axum::http::Method::POST && request.uri().path() == STREAMED_UPLOAD {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
        Err(err) => {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
                || err.to_string().contains("length limit exceeded");
            if too_large {
                ApiError::PayloadTooLarge {
                    limit: MAX_BODY_BYTES,
                }
                .into_response()
            } else {
                ApiError::bad_request(format!("reading the request body: {err}")).into_response()
            }
        }
    }
}
