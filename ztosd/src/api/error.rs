//! The API's one error type and the one place errors become HTTP responses, plus the body,
//! path and query extractors whose rejections are turned into that type.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::daemon::DaemonError;
use crate::tokens::TokenError;

/// Largest accepted request body. Configuration documents are a few KiB; this leaves room
/// for very large fabrics while bounding what one request can make the daemon buffer.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The JSON body of every error response: an API type (`ztos_model::api::error`).
pub use ztos_model::api::error::{ErrorBody, ErrorDetail};

/// Everything a handler can fail with. Converted to a response only in [`IntoResponse`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request itself is malformed (JSON syntax, a field of the wrong type, a bad
    /// query parameter).
    #[error("{message}")]
    BadRequest {
        message: String,
        details: Vec<ErrorDetail>,
    },
    /// 401: no credentials, or credentials that are not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid credentials whose role is too low for the route.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 429: too many failed logins; the client may retry after `retry_after_secs`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    #[error("unsupported content type {0:?}: send application/json")]
    UnsupportedMediaType(String),
    /// 422: the request is well-formed but the configuration it leads to is invalid, or a
    /// plugin vetoed it. `details` carries the configuration paths.
    #[error("{message}")]
    Unprocessable {
        message: String,
        details: Vec<ErrorDetail>,
    },
    /// 500 because the kernel refused a change that validated. The message is the kernel's
    /// answer about the operator's own configuration, so it is shown.
    #[error("the kernel rejected the configuration: {0}")]
    Kernel(String),
    /// 502: a component ztosd relies on (ztos-init) answered, but refused the request.
    #[error("{0}")]
    BadGateway(String),
    /// 503: a component ztosd relies on (ztos-init) cannot be reached; the box itself works.
    #[error("{0}")]
    Unavailable(String),
    /// 500 for everything else. The message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Kernel(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        let body = match self {
            ApiError::Internal(message) => {
                tracing::error!("api: internal error: {message}");
                ErrorBody {
                    error: "internal error".to_string(),
                    details: Vec::new(),
                }
            }
            ApiError::BadRequest { message, details }
            | ApiError::Unprocessable { message, details } => ErrorBody {
                error: message,
                details,
            },
            other => ErrorBody {
                error: other.to_string(),
                details: Vec::new(),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"ztos\""),
            );
        }
        response
    }
}

impl From<DaemonError> for ApiError {
    fn from(err: DaemonError) -> Self {
        match err {
            DaemonError::Invalid(errors) => {
                let details: Vec<ErrorDetail> = errors
                    .0
                    .iter()
                    .map(|e| ErrorDetail {
                        path: e.path.clone(),
                        message: e.message.clone(),
                    })
                    .collect();
                let message = match errors.0.as_slice() {
                    [only] => format!("invalid configuration: {only}"),
                    many => format!("invalid configuration: {} problems", many.len()),
                };
                ApiError::Unprocessable { message, details }
            }
            DaemonError::Vetoed(vetoes) => {
                let plugins: Vec<&str> = vetoes.iter().map(|v| v.plugin.as_str()).collect();
                let details = vetoes
                    .iter()
                    .flat_map(|v| {
                        v.errors.iter().map(move |e| ErrorDetail {
                            path: e.path.clone(),
                            message: format!("{}: {}", v.plugin, e.message),
                        })
                    })
                    .collect();
                ApiError::Unprocessable {
                    message: format!("configuration rejected by {}", plugins.join(", ")),
                    details,
                }
            }
            DaemonError::Kernel(message) => ApiError::Kernel(message),
            DaemonError::NotFound(message) => ApiError::NotFound(message),
            DaemonError::Conflict(message) => ApiError::Conflict(message),
            DaemonError::Internal(message) => ApiError::Internal(message),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::InvalidName(_) => ApiError::BadRequest {
                message: err.to_string(),
                details: vec![ErrorDetail {
                    path: "name".to_string(),
                    message: err.to_string(),
                }],
            },
            TokenError::Duplicate(_) => ApiError::Conflict(err.to_string()),
            TokenError::NotFound(_) => ApiError::NotFound(err.to_string()),
            TokenError::Read { .. } | TokenError::Write { .. } | TokenError::Corrupt { .. } => {
                ApiError::Internal(err.to_string())
            }
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(format!("invalid path parameter: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(format!("invalid query string: {}", rejection.body_text()))
    }
}

/// A JSON request body. Unlike `axum::Json`, a rejection is an [`ApiError`] whose message and
/// details name the offending field (through `serde_path_to_error`), and a body over
/// [`MAX_BODY_BYTES`] is a 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
            let text = content_type.to_str().unwrap_or("");
            let essence = text.split(';').next().unwrap_or("").trim();
            let json = essence.eq_ignore_ascii_case("application/json")
                || essence.to_ascii_lowercase().ends_with("+json");
            if !json {
                return Err(ApiError::UnsupportedMediaType(text.to_string()));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: MAX_BODY_BYTES,
                }
            } else {
                ApiError::bad_request(format!(
                    "cannot read request body: {}",
                    rejection.body_text()
                ))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserializes a JSON body, naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty: a JSON object is required",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => value,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            return Err(json_error(&path, &inner));
        }
    };
    deserializer.end().map_err(|err| json_error(".", &err))?;
    Ok(value)
}

fn json_error(path: &str, err: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::bad_request(format!("request body is not valid JSON: {err}"))
        }
        Category::Data => {
            // serde_path_to_error writes "." for the document root.
            let path = if path == "." { "" } else { path };
            let message = strip_position(&err.to_string());
            ApiError::BadRequest {
                message: if path.is_empty() {
                    format!("invalid request body: {message}")
                } else {
                    format!("invalid request body at {path}: {message}")
                },
                details: vec![ErrorDetail {
                    path: path.to_string(),
                    message,
                }],
            }
        }
    }
}

/// serde_json appends " at line L column C", which means little once the path is named.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

/// `axum::extract::Path` with rejections as [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` with rejections as [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The fallback for unknown paths, so that they too answer with the error format.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

/// The answer for a known path with a method it does not have.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    fn bad(bytes: &str) -> (String, Vec<ErrorDetail>) {
        match parse_json::<Body>(bytes.as_bytes()).unwrap_err() {
            ApiError::BadRequest { message, details } => (message, details),
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn field_errors_name_the_path() {
        let (message, details) = bad(r#"{"name": "a", "inner": {"port": 70000}}"#);
        assert!(
            message.starts_with("invalid request body at inner.port: "),
            "{message}"
        );
        assert!(message.contains("70000"), "{message}");
        assert_eq!(details[0].path, "inner.port");

        let (message, _) = bad(r#"{"name": "a", "inner": {"port": 1}, "extra": 1}"#);
        assert!(message.contains("unknown field `extra`"), "{message}");

        let (message, _) = bad(r#"{"inner": {"port": 1}}"#);
        assert!(message.contains("missing field `name`"), "{message}");
    }

    #[test]
    fn syntax_errors_and_trailing_garbage_are_bad_json() {
        let (message, details) = bad(r#"{"name": "#);
        assert!(
            message.starts_with("request body is not valid JSON"),
            "{message}"
        );
        assert!(details.is_empty());
        let (message, _) = bad(r#"{"name": "a", "inner": {"port": 1}} x"#);
        assert!(
            message.starts_with("request body is not valid JSON"),
            "{message}"
        );
        let (message, _) = bad("  ");
        assert!(message.contains("empty"), "{message}");
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let response = ApiError::Internal("/perm/ztos/secret: disk on fire".into()).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body =
            futures::executor::block_on(axum::body::to_bytes(response.into_body(), 1024)).unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error, "internal error");
    }
}
