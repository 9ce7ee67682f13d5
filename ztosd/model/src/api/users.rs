//! Console users and login: the password rules both the console (before it sends anything)
//! and ztosd (before it hashes) apply, and the user API's bodies.

use serde::{Deserialize, Serialize};

use crate::config::Role;

/// The user an image build or the first-boot console creates.
pub const ADMIN_USER: &str = "admin";

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in bytes (bounds the hashing work one request can cause).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A password that breaks the rules; the string is the user's name, for the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password for {0} is too short: use at least {MIN_PASSWORD_CHARS} characters")]
    TooShort(String),
    #[error("password for {0} is too long: use at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong(String),
}

/// Checks the password rules: at least [`MIN_PASSWORD_CHARS`] characters, at most
/// [`MAX_PASSWORD_BYTES`] bytes. `name` is only for the message.
pub fn validate_password(name: &str, password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort(name.to_string()));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong(name.to_string()));
    }
    Ok(())
}

/// What the API shows about a user. The password hash is never part of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub name: String,
    /// `read`, `operate` or `admin`.
    #[schema(value_type = String, example = "admin")]
    pub role: Role,
    /// RFC 3339 time the user was created.
    pub created: String,
    /// RFC 3339 time the password or role last changed.
    pub changed: String,
}

/// A successful login.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub name: String,
    /// `read`, `operate` or `admin`.
    #[schema(value_type = String, example = "admin")]
    pub role: Role,
    /// Only over the unix socket: a session secret, sent as `Authorization: Bearer <session>`
    /// on the unix socket to act as this user with this role until `POST /api/v1/auth/logout`.
    pub session: Option<String>,
}

/// Whether the box still needs its first admin password.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Setup {
    /// True while no user exists: the console then asks for the admin password.
    pub needs_admin_password: bool,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
    /// Where the attempt comes from, for the per-source rate limit (the console sends its
    /// tty). Only honoured on the unix socket; over HTTPS the peer address is the source.
    #[serde(default)]
    pub source: Option<String>,
}

/// `PUT /api/v1/users/{name}/password`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    /// At least 8 characters.
    pub password: String,
    /// `read`, `operate` or `admin`; a new user without it gets `read`, an existing user
    /// keeps their role.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "read")]
    pub role: Option<Role>,
}

/// `POST /api/v1/users/setup`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FirstAdmin {
    /// The password of user `admin`; at least 8 characters.
    pub password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules_bound_both_ends() {
        assert_eq!(
            validate_password("admin", "short"),
            Err(PasswordError::TooShort("admin".into()))
        );
        assert!(validate_password("admin", "long enough").is_ok());
        let huge = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert_eq!(
            validate_password("admin", &huge),
            Err(PasswordError::TooLong("admin".into()))
        );
    }
}
