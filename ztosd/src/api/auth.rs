//! Who is calling and what they may do. The transport a request came in on is attached as a
//! [`Transport`] extension by the server: the unix socket (root only, so admin) or HTTPS,
//! where every request carries `Authorization: Bearer <token>` and the token's role is
//! checked against the route's [`Scope`]. On the unix socket, a bearer secret is a console
//! login session and lowers the caller to that user's role. A request without a transport is treated as
//! remote, so forgetting to attach one can only deny access, never grant it.

use std::marker::PhantomData;
use std::net::SocketAddr;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;
use super::ApiState;
use crate::config::Role;

/// How a request reached the API. Added per connection by the servers in `api::server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The unix socket, which only root can open; `uid` comes from `SO_PEERCRED`.
    Local { uid: u32 },
    /// HTTPS from `peer`.
    Remote { peer: SocketAddr },
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Recorded as a revision's author: `root`, `uid:<n>` or `token:<name>`.
    pub author: String,
    pub role: Role,
}

/// The role a route needs.
pub trait Scope: Send + Sync + 'static {
    const ROLE: Role;
}

/// Read configuration, status, logs and metrics.
#[derive(Debug)]
pub enum ReadScope {}
/// Confirm commits and other operational actions.
#[derive(Debug)]
pub enum OperateScope {}
/// Change configuration and manage tokens.
#[derive(Debug)]
pub enum AdminScope {}

impl Scope for ReadScope {
    const ROLE: Role = Role::Read;
}
impl Scope for OperateScope {
    const ROLE: Role = Role::Operate;
}
impl Scope for AdminScope {
    const ROLE: Role = Role::Admin;
}

/// Extracting `Auth<S>` authenticates the request and checks that its role is at least
/// `S::ROLE`: 401 without valid credentials, 403 with a role that is too low. Handlers list it
/// before any body extractor, so an unauthenticated request never has its body parsed.
#[derive(Debug)]
pub struct Auth<S: Scope> {
    pub caller: Caller,
    scope: PhantomData<S>,
}

impl<S: Scope> FromRequestParts<ApiState> for Auth<S> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, state)?;
        if caller.role < S::ROLE {
            return Err(ApiError::Forbidden(format!(
                "{} has role {}, this needs {}",
                caller.author,
                role_name(caller.role),
                role_name(S::ROLE)
            )));
        }
        Ok(Auth {
            caller,
            scope: PhantomData,
        })
    }
}

fn authenticate(parts: &Parts, state: &ApiState) -> Result<Caller, ApiError> {
    match parts.extensions.get::<Transport>() {
        Some(Transport::Local { .. }) if parts.headers.contains_key(AUTHORIZATION) => {
            // A console login session (`crate::users`): the console runs as root but acts for
            // the user who logged in, so the session's role replaces root's. A session that
            // is not valid is refused, never treated as root.
            let header = &parts.headers[AUTHORIZATION];
            let secret = header
                .to_str()
                .ok()
                .and_then(|value| {
                    let (scheme, token) = value.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                })
                .unwrap_or_default();
            let (user, role) = state.daemon.users().session(secret).ok_or_else(|| {
                ApiError::Unauthorized("invalid or expired login session: log in again".into())
            })?;
            Ok(Caller {
                author: format!("user:{user}"),
                role,
            })
        }
        Some(Transport::Local { uid }) => Ok(Caller {
            author: if *uid == 0 {
                "root".to_string()
            } else {
                format!("uid:{uid}")
            },
            role: Role::Admin,
        }),
        Some(Transport::Remote { .. }) | None => {
            let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
                ApiError::Unauthorized(
                    "missing Authorization header: send \"Authorization: Bearer <token>\""
                        .to_string(),
                )
            })?;
            let secret = header
                .to_str()
                .ok()
                .and_then(|value| {
                    let (scheme, token) = value.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                })
                .filter(|token| !token.is_empty())
                .ok_or_else(|| {
                    ApiError::Unauthorized(
                        "Authorization header is not \"Bearer <token>\"".to_string(),
                    )
                })?;
            let token = state.daemon.tokens().verify(secret).ok_or_else(|| {
                // The presented secret is deliberately not echoed.
                ApiError::Unauthorized("invalid or revoked API token".to_string())
            })?;
            Ok(Caller {
                author: format!("token:{}", token.name),
                role: token.role,
            })
        }
    }
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Read => "read",
        Role::Operate => "operate",
        Role::Admin => "admin",
    }
}
