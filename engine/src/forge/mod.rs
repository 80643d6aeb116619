//! Forges: where a promotion's change is reviewed and merged.
//!
//! One trait, three implementations: [`GitHubForge`] (pull requests through the GitHub REST
//! API), [`GitLabForge`] (merge requests through the GitLab REST API) and [`LocalForge`] (a
//! plain git remote; gantry records the change request and merges it itself). Every
//! operation is idempotent per (repository, branch): the branch name is deterministic, and a
//! forge looks for the request already open for it before opening another.
//!
//! Errors say whether retrying can help ([`ForgeError::is_transient`]) and how long the forge
//! asked to wait ([`ForgeError::retry_after`], from `Retry-After` or rate-limit reset
//! headers); the step that called decides what to do with that.

mod github;
mod gitlab;
mod local;

pub use github::{GitHubAuth, GitHubForge};
pub use gitlab::GitLabForge;
pub use local::LocalForge;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::ChangeRequest;

/// A change to review: a pushed branch and the text that explains it.
#[derive(Debug, Clone)]
pub struct ChangeRequestDraft {
    /// Repository URL.
    pub repo: String,
    /// Head branch (deterministic, so re-opening finds the same request).
    pub branch: String,
    /// Base branch.
    pub base: String,
    /// Head commit.
    pub head_commit: String,
    /// Title.
    pub title: String,
    /// Body (Markdown).
    pub body: String,
    /// Run that opens it.
    pub run_id: String,
    /// Labels, reviewers, draft and auto-merge.
    pub review: ReviewOptions,
}

/// How a new change request is set up for review.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewOptions {
    /// Labels to add.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Reviewers to request: user names, or `org/team` for a GitHub team.
    #[serde(default)]
    pub reviewers: Vec<String>,
    /// Open it as a draft.
    #[serde(default)]
    pub draft: bool,
    /// Let the forge merge it by itself once its checks pass and it is approved.
    #[serde(default)]
    pub auto_merge: Option<MergeMethod>,
}

/// How a change request is merged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMethod {
    /// A merge commit.
    #[default]
    Merge,
    /// One squashed commit.
    Squash,
    /// The commits replayed onto the base.
    Rebase,
}

impl MergeMethod {
    /// The name forges use: `merge`, `squash`, `rebase`.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

/// Where a change request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeRequestState {
    /// Waiting for review or merge.
    Open,
    /// Merged into its base.
    Merged,
    /// Closed without being merged.
    Closed,
}

impl ChangeRequestState {
    /// `open`, `merged` or `closed`, as the store keeps it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeRequestState::Open => "open",
            ChangeRequestState::Merged => "merged",
            ChangeRequestState::Closed => "closed",
        }
    }
}

/// A change request as its forge reports it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequestStatus {
    /// Number (GitHub PR number, GitLab MR iid, local store id).
    pub id: i64,
    /// Open, merged or closed.
    pub state: ChangeRequestState,
    /// Commit the head branch points at.
    pub head_commit: String,
    /// The commit that landed on the base branch, once merged.
    pub merge_commit: Option<String>,
    /// Whether the required approvals are given, when the forge says.
    pub approved: Option<bool>,
    /// Combined state of the head commit's checks or pipeline (`success`, `pending`,
    /// `failed`, …), when the forge says.
    pub checks: Option<String>,
    /// Where people see it.
    pub url: Option<String>,
}

/// State of a commit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitState {
    /// Still running.
    Pending,
    /// Passed.
    Success,
    /// Failed.
    Failure,
    /// Could not run.
    Error,
}

/// A status to attach to a commit (a check that the promotion reports on the env repo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    /// Passed, failed, …
    pub state: CommitState,
    /// Name of the check, e.g. `gantry/gates`.
    pub context: String,
    /// One line for people.
    pub description: String,
    /// Link to details (the run's page).
    pub target_url: Option<String>,
}

/// A forge failed.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// The local forge's store failed.
    #[error("record change request for {branch}")]
    Store {
        /// Branch.
        branch: String,
        /// Cause.
        #[source]
        source: Box<crate::error::StoreError>,
    },
    /// The forge refused because a rate limit was hit; try again after `retry_after`.
    #[error(
        "{operation} on {forge}: rate limited{}: {message}",
        retry_after.map(|after| format!(" (retry after {}s)", after.as_secs())).unwrap_or_default()
    )]
    RateLimited {
        /// Forge name.
        forge: &'static str,
        /// What was being done.
        operation: String,
        /// How long the forge asked to wait.
        retry_after: Option<Duration>,
        /// The forge's message.
        message: String,
    },
    /// The forge answered with an error status.
    #[error("{operation} on {forge}: HTTP {status}: {message}")]
    Status {
        /// Forge name.
        forge: &'static str,
        /// What was being done.
        operation: String,
        /// HTTP status.
        status: u16,
        /// The forge's message.
        message: String,
    },
    /// The request raced with another change (the head moved, a conflicting request exists);
    /// reading the state again and retrying may succeed.
    #[error("{operation} on {forge}: conflict: {message}")]
    Conflict {
        /// Forge name.
        forge: &'static str,
        /// What was being done.
        operation: String,
        /// The forge's message.
        message: String,
    },
    /// The change request cannot be merged as it is (conflicts, failed checks, missing
    /// approvals, or it is closed).
    #[error("{operation} on {forge}: not mergeable: {message}")]
    NotMergeable {
        /// Forge name.
        forge: &'static str,
        /// What was being done.
        operation: String,
        /// Why.
        message: String,
    },
    /// The forge could not be reached, or the connection broke.
    #[error("{operation} on {forge}: {source}")]
    Transport {
        /// Forge name.
        forge: &'static str,
        /// What was being done.
        operation: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The forge answered something that does not have the documented shape.
    #[error("{operation} on {forge}: unexpected response: {reason}")]
    Decode {
        /// Forge name.
        forge: &'static str,
        /// What was being done.
        operation: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The repository URL does not name a repository on this forge.
    #[error("use repository {repo:?} on {forge}: {reason}")]
    InvalidRepo {
        /// Forge name.
        forge: &'static str,
        /// The URL given.
        repo: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The forge was set up wrongly (bad token, key or URL).
    #[error("set up the {forge} client: {reason}")]
    Setup {
        /// Forge name.
        forge: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No change request exists for the branch.
    #[error("find the change request for branch {branch} of {repo} on {forge}")]
    NotFound {
        /// Forge name.
        forge: &'static str,
        /// Repository.
        repo: String,
        /// Branch.
        branch: String,
    },
    /// Landing the change on the base branch failed (local forge).
    #[error("merge branch {branch} into {base}")]
    Git {
        /// Head branch.
        branch: String,
        /// Base branch.
        base: String,
        /// Cause.
        #[source]
        source: Box<crate::git::GitError>,
    },
}

impl ForgeError {
    /// Whether retrying later may succeed: rate limits, 5xx, timeouts, transport failures,
    /// races. Bad credentials, missing permissions, bad input and unmergeable requests are
    /// permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            ForgeError::RateLimited { .. } | ForgeError::Transport { .. } | ForgeError::Conflict { .. } => true,
            ForgeError::Status { status, .. } => *status == 408 || *status >= 500,
            ForgeError::Store { .. } => true,
            ForgeError::Git { source, .. } => source.is_transient(),
            ForgeError::NotMergeable { .. }
            | ForgeError::Decode { .. }
            | ForgeError::InvalidRepo { .. }
            | ForgeError::Setup { .. }
            | ForgeError::NotFound { .. } => false,
        }
    }

    /// How long the forge asked to wait before the next request, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ForgeError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Reviews and merges changes. Implementations must be idempotent per (repo, branch):
/// opening the same branch twice yields the same request, never a second one.
#[async_trait]
pub trait Forge: Send + Sync {
    /// Forge name (`local`, `github`, `gitlab`).
    fn name(&self) -> &'static str;

    /// The newest change request for `branch` of `repo` in any state, if there is one.
    async fn find_change_request(&self, repo: &str, branch: &str) -> Result<Option<ChangeRequest>, ForgeError>;

    /// Opens the change request for `draft.branch`, or finds the one already open (or already
    /// merged at the same head commit); returns it and whether it was opened now.
    async fn open_change_request(&self, draft: &ChangeRequestDraft) -> Result<(ChangeRequest, bool), ForgeError>;

    /// Where `request` stands now.
    async fn change_request_status(&self, request: &ChangeRequest) -> Result<ChangeRequestStatus, ForgeError>;

    /// Merges `request` if its head is still `request.head_commit` (a head that moved is a
    /// [`ForgeError::Conflict`]); merging one already merged reports it as it is.
    async fn merge_change_request(
        &self,
        request: &ChangeRequest,
        method: MergeMethod,
    ) -> Result<ChangeRequestStatus, ForgeError>;

    /// Attaches a status to `commit` of `repo`. Forges without statuses ignore it.
    async fn set_commit_status(&self, repo: &str, commit: &str, status: &CommitStatus) -> Result<(), ForgeError>;
}

/// Decodes the `Retry-After` header (seconds, or an HTTP date) into a wait from `now`.
pub(crate) fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A wait until an epoch-seconds reset time (`x-ratelimit-reset`, `RateLimit-Reset`), at
/// least one second so that a clock skew never makes it zero.
pub(crate) fn wait_until_epoch(reset: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let reset: i64 = reset.trim().parse().ok()?;
    let wait = reset.saturating_sub(now.timestamp()).max(1);
    Some(Duration::from_secs(wait.unsigned_abs()))
}

/// The path of a repository on a forge from any of the URL shapes people configure:
/// `https://host/group/name(.git)`, `ssh://git@host/group/name.git`, `git@host:group/name.git`
/// or a bare `group/name`.
pub(crate) fn repository_path(forge: &'static str, repo: &str) -> Result<String, ForgeError> {
    let invalid = |reason: &str| ForgeError::InvalidRepo { forge, repo: repo.to_owned(), reason: reason.to_owned() };
    let trimmed = repo.trim();
    let path = if let Some((_, rest)) = trimmed.split_once("://") {
        // Drop the authority (with any user information) and keep the path.
        rest.split_once('/').map(|(_, path)| path).unwrap_or_default()
    } else if let Some((host, path)) = trimmed.split_once(':')
        && !host.contains('/')
    {
        path
    } else {
        trimmed
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() < 2 || segments.iter().any(|segment| segment.is_empty()) {
        return Err(invalid("expected a URL or path ending in <owner>/<name>"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if segments.iter().any(|segment| !segment.chars().all(allowed) || *segment == "." || *segment == "..") {
        return Err(invalid("the path holds characters a repository name cannot"));
    }
    Ok(segments.join("/"))
}

/// Percent-encodes one URL path segment (branch names and GitLab project paths hold `/`).
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Milliseconds since the epoch of an RFC 3339 time, or now when it is absent or malformed.
pub(crate) fn millis_of(time: Option<&str>) -> crate::model::Millis {
    time.and_then(|time| chrono::DateTime::parse_from_rfc3339(time).ok())
        .map_or_else(crate::model::now_millis, |time| time.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn repository_paths_from_every_url_shape() {
        for (url, path) in [
            ("https://github.com/acme/env-prod.git", "acme/env-prod"),
            ("https://bot:token@github.com/acme/env-prod", "acme/env-prod"),
            ("ssh://git@github.com/acme/env-prod.git", "acme/env-prod"),
            ("git@github.com:acme/env-prod.git", "acme/env-prod"),
            ("acme/env-prod", "acme/env-prod"),
            ("https://gitlab.example/platform/envs/prod.git/", "platform/envs/prod"),
        ] {
            assert_eq!(repository_path("github", url).unwrap(), path, "{url}");
        }
        for bad in ["", "env-prod", "https://github.com/", "a//b", "a/b c", "a/../b"] {
            assert!(repository_path("github", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(parse_retry_after("60", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Fri, 02 Jan 2026 03:05:05 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("soon", now), None);
        let reset = (now.timestamp() + 90).to_string();
        assert_eq!(wait_until_epoch(&reset, now), Some(Duration::from_secs(90)));
        assert_eq!(wait_until_epoch(&(now.timestamp() - 5).to_string(), now), Some(Duration::from_secs(1)));
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("gantry/prod/web/0123"), "gantry%2Fprod%2Fweb%2F0123");
        assert_eq!(encode_segment("a b+c"), "a%20b%2Bc");
    }

    #[test]
    fn transient_errors_are_told_apart() {
        let status = |status| ForgeError::Status {
            forge: "github",
            operation: "open pull request".into(),
            status,
            message: "x".into(),
        };
        assert!(status(502).is_transient());
        assert!(!status(404).is_transient());
        let limited = ForgeError::RateLimited {
            forge: "github",
            operation: "open pull request".into(),
            retry_after: Some(Duration::from_secs(30)),
            message: "secondary rate limit".into(),
        };
        assert!(limited.is_transient());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(
            limited.to_string(),
            "open pull request on github: rate limited (retry after 30s): secondary rate limit"
        );
    }
}
