//! The JSON body of every error response: one line, and per-field problems.

use serde::{Deserialize, Serialize};

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// One line saying what went wrong, naming the offending value.
    pub error: String,
    /// Per-field problems (configuration paths, request body fields); may be empty.
    pub details: Vec<ErrorDetail>,
}

/// One problem at one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Dotted path such as `bgp.neighbors[0].remote_as` or `bgp.peer`; empty for the whole input.
    pub path: String,
    pub message: String,
}
