//! `/api/v1/auth` and `/api/v1/users`: console logins and the users behind them.
//!
//! `POST /auth/login` checks a user's password. Its job is the console's login prompt, which
//! reaches ztosd over the unix socket (root, so admin, without a token); over HTTPS it needs an
//! admin token, because otherwise it would be an unauthenticated password oracle on the
//! network, rate limit or not. Only over the unix socket does a login open a session: the
//! console sends its secret as a bearer token on the unix socket, and the API then treats the
//! caller as that user with that user's role (see `api::auth`). Every change is logged.

use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};

use crate::api::auth::{role_name, AdminScope, Auth, ReadScope, Transport};
use crate::api::error::{ApiError, ApiJson, ApiPath, ErrorBody, ErrorDetail};
use crate::api::ApiState;
use crate::users::{LoginError, UserError, UserInfo};

pub use ztos_model::api::users::LoginRequest;
pub use ztos_model::api::users::LoginResponse;

pub use ztos_model::api::users::Setup;
pub use ztos_model::api::users::{FirstAdmin, SetPassword};

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "users", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse),
              (status = 401, description = "Invalid user name or password", body = ErrorBody),
              (status = 429, description = "Too many failed logins; see Retry-After", body = ErrorBody)))]
pub async fn login(
    auth: Auth<AdminScope>,
    transport: Option<Extension<Transport>>,
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let local = matches!(transport, Some(Extension(Transport::Local { .. })));
    let source = match transport {
        Some(Extension(Transport::Remote { peer })) => peer.ip().to_string(),
        Some(Extension(Transport::Local { .. })) => body
            .source
            .filter(|s| !s.is_empty() && s.len() <= 64)
            .unwrap_or_else(|| "local".to_string()),
        None => "unknown".to_string(),
    };
    let daemon = state.daemon.clone();
    let (name, password, from) = (body.name.clone(), body.password, source.clone());
    // Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let result =
        tokio::task::spawn_blocking(move || daemon.users().verify(&name, &password, &from))
            .await
            .map_err(|e| ApiError::Internal(format!("login task: {e}")))?;
    let role = match result {
        Ok(role) => role,
        Err(err) => {
            tracing::warn!(
                "login of {:?} from {source} refused: {err} (asked by {})",
                body.name,
                auth.caller.author
            );
            return Err(match err {
                LoginError::Invalid => ApiError::Unauthorized(err.to_string()),
                LoginError::RateLimited { wait, .. } => ApiError::TooManyRequests {
                    message: err.to_string(),
                    retry_after_secs: crate::users::seconds_rounded_up(wait),
                },
            });
        }
    };
    tracing::info!(
        "login of {} ({}) from {source} accepted (asked by {})",
        body.name,
        role_name(role),
        auth.caller.author
    );
    let session = local.then(|| state.daemon.users().open_session(&body.name, role));
    Ok(Json(LoginResponse {
        name: body.name,
        role,
        session,
    }))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "users",
    responses((status = 204, description = "Session ended"),
              (status = 400, description = "The request carries no login session", body = ErrorBody)))]
pub async fn logout(
    auth: Auth<ReadScope>,
    transport: Option<Extension<Transport>>,
    headers: HeaderMap,
    State(state): State<ApiState>,
) -> Result<StatusCode, ApiError> {
    let secret = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, secret)| secret.trim())
        .filter(|_| matches!(transport, Some(Extension(Transport::Local { .. }))))
        .ok_or_else(|| ApiError::bad_request("no login session to end"))?;
    match state.daemon.users().close_session(secret) {
        Some(user) => {
            tracing::info!("{user} logged out ({})", auth.caller.author);
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::bad_request("no login session to end")),
    }
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<UserInfo>)))]
pub async fn list(_auth: Auth<AdminScope>, State(state): State<ApiState>) -> Json<Vec<UserInfo>> {
    Json(state.daemon.users().list())
}

#[utoipa::path(put, path = "/api/v1/users/{name}/password", tag = "users", request_body = SetPassword,
    params(("name" = String, Path, description = "User name")),
    responses((status = 200, description = "The user, created if new", body = UserInfo),
              (status = 400, description = "Invalid name or password too short", body = ErrorBody),
              (status = 409, description = "Would leave no admin", body = ErrorBody)))]
pub async fn set_password(
    auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<SetPassword>,
) -> Result<Json<UserInfo>, ApiError> {
    let daemon = state.daemon.clone();
    let user = name.clone();
    let info = tokio::task::spawn_blocking(move || {
        daemon
            .users()
            .set_password(&user, &body.password, body.role)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("password task: {e}")))??;
    tracing::info!(
        "password of user {name} ({}) set by {}",
        role_name(info.role),
        auth.caller.author
    );
    Ok(Json(info))
}

#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name")),
    responses((status = 204, description = "Deleted"),
              (status = 404, body = ErrorBody),
              (status = 409, description = "The last admin", body = ErrorBody)))]
pub async fn delete(
    auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.daemon.users().delete(&name)?;
    tracing::info!("user {name} deleted by {}", auth.caller.author);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/users/setup", tag = "users",
    responses((status = 200, body = Setup)))]
pub async fn setup(_auth: Auth<ReadScope>, State(state): State<ApiState>) -> Json<Setup> {
    Json(Setup {
        needs_admin_password: !state.daemon.users().has_any(),
    })
}

#[utoipa::path(post, path = "/api/v1/users/setup", tag = "users", request_body = FirstAdmin,
    responses((status = 201, description = "User admin created", body = UserInfo),
              (status = 400, description = "Password too short", body = ErrorBody),
              (status = 409, description = "Users exist already", body = ErrorBody)))]
pub async fn create_first_admin(
    auth: Auth<AdminScope>,
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<FirstAdmin>,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    let daemon = state.daemon.clone();
    let info =
        tokio::task::spawn_blocking(move || daemon.users().create_first_admin(&body.password))
            .await
            .map_err(|e| ApiError::Internal(format!("password task: {e}")))??;
    tracing::info!(
        "first admin password set for user {} by {}",
        info.name,
        auth.caller.author
    );
    Ok((StatusCode::CREATED, Json(info)))
}

impl From<UserError> for ApiError {
    fn from(err: UserError) -> Self {
        let field = |path: &str| ApiError::BadRequest {
            message: err.to_string(),
            details: vec![ErrorDetail {
                path: path.to_string(),
                message: err.to_string(),
            }],
        };
        match &err {
            UserError::InvalidName(_) => field("name"),
            UserError::PasswordTooShort(_) | UserError::PasswordTooLong(_) => field("password"),
            UserError::NotFound(_) => ApiError::NotFound(err.to_string()),
            UserError::LastAdmin(_) | UserError::AlreadySetUp => {
                ApiError::Conflict(err.to_string())
            }
            UserError::Read { .. }
            | UserError::Write { .. }
            | UserError::Corrupt { .. }
            | UserError::BadHash { .. }
            | UserError::Hash(_) => ApiError::Internal(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::body::Body;
    use axum::http::{header, Method, Request, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    use crate::api::tests::Harness;
    use crate::api::Transport;
    use crate::config::Role;

    fn harness() -> Harness {
        Harness::new()
    }

    const REMOTE: Transport = Transport::Remote {
        peer: SocketAddr::new(
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9)),
            4000,
        ),
    };
    const LOCAL: Transport = Transport::Local { uid: 0 };

    #[tokio::test]
    async fn first_boot_setup_then_login_over_the_unix_socket_opens_a_session() {
        let h = harness();
        let (status, body) = h
            .send_as(LOCAL, Method::GET, "/api/v1/users/setup", None, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"needs_admin_password": true}));

        let (status, body) = h
            .send_as(
                LOCAL,
                Method::POST,
                "/api/v1/users/setup",
                None,
                Some(json!({"password": "short"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["details"][0]["path"], "password");

        let (status, body) = h
            .send_as(
                LOCAL,
                Method::POST,
                "/api/v1/users/setup",
                None,
                Some(json!({"password": "first boot pw"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["name"], "admin");
        assert!(body.get("password_hash").is_none());
        // A second setup must not overwrite the password.
        let (status, _) = h
            .send_as(
                LOCAL,
                Method::POST,
                "/api/v1/users/setup",
                None,
                Some(json!({"password": "someone else"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);

        let (status, body) = h
            .send_as(
                LOCAL,
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"name": "admin", "password": "wrong password", "source": "ttyS0"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "invalid user name or password");

        let (status, body) = h
            .send_as(
                LOCAL,
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"name": "admin", "password": "first boot pw", "source": "ttyS0"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["role"], "admin");
        let session = body["session"].as_str().unwrap().to_string();
        let (status, body) = h
            .send_as(LOCAL, Method::GET, "/api/v1/users", Some(&session), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body[0]["name"], "admin");
        assert!(!body.to_string().contains("argon2"), "{body}");
    }

    #[tokio::test]
    async fn a_read_session_on_the_unix_socket_cannot_change_anything() {
        let h = harness();
        h.daemon
            .users()
            .set_password("viewer", "only looking", Some(Role::Read))
            .unwrap();
        let (status, body) = h
            .send_as(
                LOCAL,
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"name": "viewer", "password": "only looking"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["role"], "read");
        let session = body["session"].as_str().unwrap().to_string();

        let (status, _) = h
            .send_as(LOCAL, Method::GET, "/api/v1/config", Some(&session), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = h
            .send_as(
                LOCAL,
                Method::PUT,
                "/api/v1/config/candidate",
                Some(&session),
                Some(json!({"text": ""})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("user:viewer"),
            "{body}"
        );
        let (status, _) = h
            .send_as(
                LOCAL,
                Method::PUT,
                "/api/v1/users/viewer/password",
                Some(&session),
                Some(json!({"password": "now admin!", "role": "admin"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Logout ends the session; a stale session is refused, never treated as root.
        let (status, _) = h
            .send_as(
                LOCAL,
                Method::POST,
                "/api/v1/auth/logout",
                Some(&session),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = h
            .send_as(LOCAL, Method::GET, "/api/v1/config", Some(&session), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (status, _) = h
            .send_as(LOCAL, Method::GET, "/api/v1/config", Some("garbage"), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn over_https_login_needs_an_admin_token_and_opens_no_session() {
        let h = harness();
        h.daemon
            .users()
            .set_password("admin", "remote check", Some(Role::Admin))
            .unwrap();
        let login = json!({"name": "admin", "password": "remote check"});
        let (status, _) = h
            .send_as(
                REMOTE,
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(login.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (_, read) = h.daemon.tokens().create("reader", Role::Read).unwrap();
        let (status, _) = h
            .send_as(
                REMOTE,
                Method::POST,
                "/api/v1/auth/login",
                Some(&read),
                Some(login.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Read tokens may ask whether setup is needed, not list users.
        let (status, _) = h
            .send_as(
                REMOTE,
                Method::GET,
                "/api/v1/users/setup",
                Some(&read),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = h
            .send_as(REMOTE, Method::GET, "/api/v1/users", Some(&read), None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let (_, admin) = h.daemon.tokens().create("automation", Role::Admin).unwrap();
        let (status, body) = h
            .send_as(
                REMOTE,
                Method::POST,
                "/api/v1/auth/login",
                Some(&admin),
                Some(login),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["session"], Value::Null);
        // A session secret is not accepted over HTTPS.
        let session = h.daemon.users().open_session("admin", Role::Admin);
        let (status, _) = h
            .send_as(REMOTE, Method::GET, "/api/v1/users", Some(&session), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn repeated_failures_are_429_with_retry_after() {
        let h = harness();
        h.daemon
            .users()
            .set_password("admin", "the password", Some(Role::Admin))
            .unwrap();
        let wrong = json!({"name": "admin", "password": "not it at all", "source": "ttyS0"});
        for _ in 0..crate::users::FREE_FAILURES {
            let (status, _) = h
                .send_as(
                    LOCAL,
                    Method::POST,
                    "/api/v1/auth/login",
                    None,
                    Some(wrong.clone()),
                )
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"name": "admin", "password": "the password"}).to_string(),
            ))
            .unwrap();
        request.extensions_mut().insert(LOCAL);
        let response = h.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body["error"],
            "too many failed logins for admin: try again in 2 s"
        );
    }

    #[tokio::test]
    async fn admin_manages_users_and_cannot_remove_the_last_admin() {
        let h = harness();
        h.daemon
            .users()
            .set_password("admin", "admin password", Some(Role::Admin))
            .unwrap();
        let (status, body) = h
            .send_as(
                LOCAL,
                Method::PUT,
                "/api/v1/users/ops/password",
                None,
                Some(json!({"password": "ops password", "role": "operate"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["role"], "operate");
        let (status, body) = h
            .send_as(
                LOCAL,
                Method::PUT,
                "/api/v1/users/Bad%20Name/password",
                None,
                Some(json!({"password": "ops password"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"].as_str().unwrap().contains("\"Bad Name\""),
            "{body}"
        );
        let (status, body) = h
            .send_as(LOCAL, Method::DELETE, "/api/v1/users/admin", None, None)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let (status, _) = h
            .send_as(LOCAL, Method::DELETE, "/api/v1/users/ops", None, None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = h
            .send_as(LOCAL, Method::DELETE, "/api/v1/users/ops", None, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "no user named \"ops\"");
    }
}
