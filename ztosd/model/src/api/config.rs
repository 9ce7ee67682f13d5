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

/// `PUT /api/v1/config/candidate`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CandidateText {
    /// The whole TOML document.
    pub text: String,
}

/// `PATCH /api/v1/config/candidate`: set one value, or delete it with `"delete": true`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CandidateEdit {
    /// Dotted key path with array indexes, such as `bgp.neighbors[0].remote_as`.
    pub path: String,
    /// A TOML value: `64512`, `"leaf1"`, `["10.0.0.1"]`, `{ address = "10.1.1.1", remote_as = 64512 }`.
    pub value: Option<String>,
    #[serde(default)]
    pub delete: bool,
}

/// `POST /api/v1/config/commit`.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    /// The whole document to commit; the candidate when absent.
    pub text: Option<String>,
    pub comment: Option<String>,
    /// Revert by itself unless `POST /api/v1/config/confirm` comes within this many minutes.
    pub confirm_minutes: Option<u32>,
}

/// `POST /api/v1/config/rollback`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The revision whose content becomes a new revision.
    pub revision: u64,
    pub comment: Option<String>,
}
