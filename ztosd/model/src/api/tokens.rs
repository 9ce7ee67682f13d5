//! API tokens: what the API shows about a token, and a new token with its secret.

use serde::{Deserialize, Serialize};

use crate::config::Role;

/// What the API shows about a token. The secret and its hash are never part of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub name: String,
    /// `read`, `operate` or `admin`.
    #[schema(value_type = String, example = "read")]
    pub role: Role,
    /// RFC 3339 time of creation.
    pub created: String,
    /// RFC 3339 time the token was last accepted since ztosd started; not persisted.
    pub last_used: Option<String>,
}

/// A new token and its secret, which cannot be retrieved again.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub token: TokenInfo,
    /// Send as `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// 1 to 64 letters, digits, `.`, `_` or `-`.
    pub name: String,
    /// `read` (default), `operate` or `admin`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "read")]
    pub role: Role,
}
