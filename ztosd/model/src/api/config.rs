//! `/api/v1/config/*`: revisions, commits, the candidate and diffs.

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// A configuration revision number; numbers start at 1 and are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(pub u64);

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Who committed a revision, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionMeta {
    pub number: Revision,
    pub author: String,
    /// RFC 3339 UTC time of the commit.
    pub time: String,
    pub comment: String,
}

/// How a revision is described in the OpenAPI document (the JSON form of [`RevisionMeta`]).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = RevisionMeta)]
pub struct RevisionMetaSchema {
    pub number: u64,
    /// `root`, `uid:<n>`, `token:<name>` or `ztosd` (automatic changes).
    pub author: String,
    /// RFC 3339 time of the commit.
    pub time: String,
    pub comment: String,
}

/// What a commit did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommitOutcome {
    #[schema(value_type = Object)]
    pub revision: RevisionMeta,
    /// One line per kernel change; empty when the kernel already matched.
    pub changes: Vec<String>,
    pub warnings: Vec<String>,
    /// RFC 3339 time at which the commit reverts unless confirmed.
    pub confirm_deadline: Option<String>,
}

/// The candidate configuration: the running document plus uncommitted changes.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CandidateResponse {
    /// The candidate document; the running document when nothing has been changed.
    pub text: String,
    /// Whether a candidate with uncommitted changes exists (`false`: `text` is the running
    /// document).
    pub modified: bool,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DiffResponse {
    /// A unified diff; empty when there is no difference.
    pub diff: String,
}

/// The running configuration.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunningConfig {
    /// `None` before the first commit.
    #[schema(value_type = Option<Object>)]
    pub revision: Option<RevisionMeta>,
    pub text: String,
    #[schema(value_type = Object)]
    pub config: Config,
}

/// One stored revision with its document.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RevisionResponse {
    #[schema(value_type = RevisionMetaSchema)]
    pub revision: RevisionMeta,
    pub text: String,
}
