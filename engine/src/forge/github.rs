//! The GitHub forge: pull requests through the GitHub REST API, with octocrab as the
//! authenticated HTTP client (personal tokens, and GitHub App installation tokens that it
//! mints and refreshes itself).
//!
//! Requests go through octocrab's raw methods so that status codes and headers reach this
//! module: GitHub signals rate limits with `403`/`429` plus `Retry-After` (secondary limits)
//! or `x-ratelimit-remaining: 0` and `x-ratelimit-reset` (primary limits), and both become
//! [`ForgeError::RateLimited`] with the wait the server asked for. Octocrab's own retry layer
//! is not used: the executor owns retries.

use std::time::Duration;

use async_trait::async_trait;
use octocrab::Octocrab;
use serde_json::{Value, json};

use super::{
    ChangeRequestDraft, ChangeRequestState, ChangeRequestStatus, CommitState, CommitStatus, Forge, ForgeError,
    MergeMethod, encode_segment, millis_of, parse_retry_after, repository_path, wait_until_epoch,
};
use crate::model::ChangeRequest;

const FORGE: &str = "github";

/// How gantry authenticates to GitHub.
#[derive(Clone)]
pub enum GitHubAuth {
    /// A personal access token (classic or fine-grained).
    Token(String),
    /// A GitHub App installation: octocrab signs a JWT with the app's key and exchanges it
    /// for installation tokens, renewed before they expire.
    App {
        /// The app's id.
        app_id: u64,
        /// The app's RSA private key, PEM.
        private_key_pem: Vec<u8>,
        /// The installation on the organisation that owns the env repos.
        installation_id: u64,
    },
}

impl std::fmt::Debug for GitHubAuth {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens and keys must never reach logs through a derived Debug.
        match self {
            GitHubAuth::Token(_) => formatter.write_str("GitHubAuth::Token(..)"),
            GitHubAuth::App { app_id, installation_id, .. } => formatter
                .debug_struct("GitHubAuth::App")
                .field("app_id", app_id)
                .field("installation_id", installation_id)
                .finish_non_exhaustive(),
        }
    }
}

/// Pull requests on GitHub (or GitHub Enterprise Server).
#[derive(Debug, Clone)]
pub struct GitHubForge {
    client: Octocrab,
}

/// One answer of the API: status, the rate-limit headers, and the JSON body.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    rate_limit_reset: Option<Duration>,
    rate_limit_exhausted: bool,
    body: Value,
}

impl GitHubForge {
    /// A client for the API at `api_url` (`https://api.github.com`, or
    /// `https://ghe.example/api/v3`). Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`ForgeError::Setup`] for a malformed URL or private key.
    pub fn new(api_url: &str, auth: GitHubAuth) -> Result<GitHubForge, ForgeError> {
        let setup = |reason: String| ForgeError::Setup { forge: FORGE, reason };
        let builder = Octocrab::builder()
            .base_uri(api_url)
            .map_err(|error| setup(format!("use API url {api_url:?}: {error}")))?
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)));
        let client = match auth {
            GitHubAuth::Token(token) => {
                builder.personal_token(token).build().map_err(|error| setup(error.to_string()))?
            }
            GitHubAuth::App { app_id, private_key_pem, installation_id } => {
                let key = octocrab::EncodingKey::from_rsa_pem(&private_key_pem)
                    .map_err(|error| setup(format!("read the app's private key: {error}")))?;
                builder
                    .app(octocrab::models::AppId(app_id), key)
                    .build()
                    .and_then(|app| app.installation(octocrab::models::InstallationId(installation_id)))
                    .map_err(|error| setup(error.to_string()))?
            }
        };
        Ok(GitHubForge { client })
    }

    async fn send(
        &self,
        operation: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ForgeError> {
        let transport = |error: octocrab::Error| ForgeError::Transport {
            forge: FORGE,
            operation: operation.to_owned(),
            source: Box::new(error),
        };
        let response = match method {
            "GET" => self.client._get(path).await,
            "POST" => self.client._post(path, body).await,
            "PUT" => self.client._put(path, body).await,
            "PATCH" => self.client._patch(path, body).await,
            _ => self.client._delete(path, body).await,
        }
        .map_err(transport)?;
        let now = chrono::Utc::now();
        let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let status = response.status().as_u16();
        let retry_after = header("retry-after").and_then(|value| parse_retry_after(&value, now));
        let rate_limit_reset = header("x-ratelimit-reset").and_then(|value| wait_until_epoch(&value, now));
        let rate_limit_exhausted = header("x-ratelimit-remaining").as_deref() == Some("0");
        let text = self.client.body_to_string(response).await.map_err(transport)?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Answer { status, retry_after, rate_limit_reset, rate_limit_exhausted, body })
    }

    /// Sends a request and turns anything but a 2xx answer into an error.
    async fn call(&self, operation: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ForgeError> {
        let answer = self.send(operation, method, path, body).await?;
        if (200..300).contains(&answer.status) { Ok(answer.body) } else { Err(error_of(operation, answer)) }
    }

    async fn pull_request(&self, repo: &str, number: i64) -> Result<Value, ForgeError> {
        let path = repository_path(FORGE, repo)?;
        self.call("read pull request", "GET", &format!("/repos/{path}/pulls/{number}"), None).await
    }

    async fn add_review_options(&self, path: &str, pull: &Value, draft: &ChangeRequestDraft) -> Result<(), ForgeError> {
        let number = pull_number(pull, "open pull request")?;
        let review = &draft.review;
        if !review.labels.is_empty() {
            self.call(
                "label pull request",
                "POST",
                &format!("/repos/{path}/issues/{number}/labels"),
                Some(&json!({ "labels": review.labels })),
            )
            .await?;
        }
        if !review.reviewers.is_empty() {
            let (teams, users): (Vec<&String>, Vec<&String>) =
                review.reviewers.iter().partition(|reviewer| reviewer.contains('/'));
            let team_slugs: Vec<&str> =
                teams.iter().filter_map(|team| team.split_once('/').map(|(_, slug)| slug)).collect();
            self.call(
                "request reviewers",
                "POST",
                &format!("/repos/{path}/pulls/{number}/requested_reviewers"),
                Some(&json!({ "reviewers": users, "team_reviewers": team_slugs })),
            )
            .await?;
        }
        if let Some(method) = review.auto_merge {
            // Auto-merge exists only in the GraphQL API.
            let node_id = pull
                .get("node_id")
                .and_then(Value::as_str)
                .ok_or_else(|| decode("enable auto-merge", "the pull request has no node_id"))?;
            let mutation = "mutation($id: ID!, $method: PullRequestMergeMethod!) { \
                enablePullRequestAutoMerge(input: {pullRequestId: $id, mergeMethod: $method}) \
                { clientMutationId } }";
            let answer = self
                .call(
                    "enable auto-merge",
                    "POST",
                    "/graphql",
                    Some(&json!({
                        "query": mutation,
                        "variables": { "id": node_id, "method": method.as_str().to_ascii_uppercase() },
                    })),
                )
                .await?;
            if let Some(errors) = answer.get("errors").and_then(Value::as_array)
                && let Some(first) = errors.first()
            {
                let message = first.get("message").and_then(Value::as_str).unwrap_or("GraphQL error");
                return Err(ForgeError::Status {
                    forge: FORGE,
                    operation: "enable auto-merge".into(),
                    status: 200,
                    message: message.to_owned(),
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Forge for GitHubForge {
    fn name(&self) -> &'static str {
        FORGE
    }

    async fn find_change_request(&self, repo: &str, branch: &str) -> Result<Option<ChangeRequest>, ForgeError> {
        let path = repository_path(FORGE, repo)?;
        let owner = path.split('/').next().unwrap_or_default();
        // `head` filters by `owner:branch`; the newest comes first.
        let pulls = self
            .call(
                "find pull request",
                "GET",
                &format!(
                    "/repos/{path}/pulls?state=all&sort=created&direction=desc&per_page=10&head={}",
                    encode_segment(&format!("{owner}:{branch}"))
                ),
                None,
            )
            .await?;
        let pulls = pulls.as_array().ok_or_else(|| decode("find pull request", "expected a list of pull requests"))?;
        pulls
            .iter()
            .find(|pull| pull.pointer("/head/ref").and_then(Value::as_str) == Some(branch))
            .map(|pull| change_request_of(repo, pull, None))
            .transpose()
    }

    async fn open_change_request(&self, draft: &ChangeRequestDraft) -> Result<(ChangeRequest, bool), ForgeError> {
        let path = repository_path(FORGE, &draft.repo)?;
        if let Some(existing) = self.find_change_request(&draft.repo, &draft.branch).await? {
            let reusable =
                existing.state == "open" || (existing.state == "merged" && existing.head_commit == draft.head_commit);
            if reusable {
                return Ok((with_run(existing, draft), false));
            }
        }
        let request = json!({
            "title": draft.title,
            "head": draft.branch,
            "base": draft.base,
            "body": draft.body,
            "draft": draft.review.draft,
            "maintainer_can_modify": false,
        });
        let answer = self.send("open pull request", "POST", &format!("/repos/{path}/pulls"), Some(&request)).await?;
        if answer.status == 422 && already_exists(&answer.body) {
            // Another writer opened it between the lookup and the create.
            let existing = self.find_change_request(&draft.repo, &draft.branch).await?.ok_or_else(|| {
                ForgeError::NotFound { forge: FORGE, repo: draft.repo.clone(), branch: draft.branch.clone() }
            })?;
            return Ok((with_run(existing, draft), false));
        }
        if !(200..300).contains(&answer.status) {
            return Err(error_of("open pull request", answer));
        }
        self.add_review_options(&path, &answer.body, draft).await?;
        let created = change_request_of(&draft.repo, &answer.body, Some(&draft.run_id))?;
        Ok((created, true))
    }

    async fn change_request_status(&self, request: &ChangeRequest) -> Result<ChangeRequestStatus, ForgeError> {
        let pull = self.pull_request(&request.repo, request.id).await?;
        status_of(&pull)
    }

    async fn merge_change_request(
        &self,
        request: &ChangeRequest,
        method: MergeMethod,
    ) -> Result<ChangeRequestStatus, ForgeError> {
        let path = repository_path(FORGE, &request.repo)?;
        let current = status_of(&self.pull_request(&request.repo, request.id).await?)?;
        match current.state {
            ChangeRequestState::Merged => return Ok(current),
            ChangeRequestState::Closed => {
                return Err(ForgeError::NotMergeable {
                    forge: FORGE,
                    operation: "merge pull request".into(),
                    message: format!("pull request #{} is closed", request.id),
                });
            }
            ChangeRequestState::Open => {}
        }
        // `sha` makes GitHub refuse (409) if the head moved since it was reviewed.
        let answer = self
            .send(
                "merge pull request",
                "PUT",
                &format!("/repos/{path}/pulls/{}/merge", request.id),
                Some(&json!({ "merge_method": method.as_str(), "sha": request.head_commit })),
            )
            .await?;
        match answer.status {
            200..=299 => {}
            405 => {
                return Err(ForgeError::NotMergeable {
                    forge: FORGE,
                    operation: "merge pull request".into(),
                    message: message_of(&answer.body),
                });
            }
            _ => return Err(error_of("merge pull request", answer)),
        }
        let merged = status_of(&self.pull_request(&request.repo, request.id).await?)?;
        if merged.state == ChangeRequestState::Merged {
            return Ok(merged);
        }
        // The merge endpoint answered; the pull request may lag behind it for a moment.
        let merge_commit = answer.body.get("sha").and_then(Value::as_str).map(str::to_owned);
        Ok(ChangeRequestStatus { state: ChangeRequestState::Merged, merge_commit, ..merged })
    }

    async fn set_commit_status(&self, repo: &str, commit: &str, status: &CommitStatus) -> Result<(), ForgeError> {
        let path = repository_path(FORGE, repo)?;
        let state = match status.state {
            CommitState::Pending => "pending",
            CommitState::Success => "success",
            CommitState::Failure => "failure",
            CommitState::Error => "error",
        };
        // GitHub cuts descriptions at 140 characters and refuses longer ones.
        let description: String = status.description.chars().take(140).collect();
        self.call(
            "set commit status",
            "POST",
            &format!("/repos/{path}/statuses/{}", encode_segment(commit)),
            Some(&json!({
                "state": state,
                "context": status.context,
                "description": description,
                "target_url": status.target_url,
            })),
        )
        .await?;
        Ok(())
    }
}

fn decode(operation: &str, reason: &str) -> ForgeError {
    ForgeError::Decode { forge: FORGE, operation: operation.to_owned(), reason: reason.to_owned() }
}

/// The error body's `message`, with the `errors[].message` details GitHub adds for 422s.
fn message_of(body: &Value) -> String {
    let mut message = body.get("message").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| match body {
        Value::String(text) => text.chars().take(200).collect(),
        _ => "no message".to_owned(),
    });
    if let Some(errors) = body.get("errors").and_then(Value::as_array) {
        for detail in errors {
            if let Some(text) = detail.get("message").and_then(Value::as_str) {
                message.push_str("; ");
                message.push_str(text);
            }
        }
    }
    message
}

/// Whether a 422 says that a pull request for the branch exists already.
fn already_exists(body: &Value) -> bool {
    message_of(body).to_ascii_lowercase().contains("a pull request already exists")
}

/// Maps a non-2xx answer to an error. Rate limits come in two kinds (both as 403 or 429):
/// secondary limits carry `Retry-After`; primary limits say `x-ratelimit-remaining: 0` and
/// when the window resets. A 403 that is neither is a permission problem.
fn error_of(operation: &str, answer: Answer) -> ForgeError {
    let message = message_of(&answer.body);
    let limited_by_text = message.to_ascii_lowercase().contains("rate limit");
    let rate_limited = matches!(answer.status, 403 | 429)
        && (answer.retry_after.is_some() || answer.rate_limit_exhausted || limited_by_text);
    if rate_limited {
        let retry_after = answer
            .retry_after
            .or(answer.rate_limit_exhausted.then_some(answer.rate_limit_reset).flatten())
            // GitHub asks for at least a minute when a secondary limit names no time.
            .or(Some(Duration::from_secs(60)));
        return ForgeError::RateLimited { forge: FORGE, operation: operation.to_owned(), retry_after, message };
    }
    if answer.status == 409 {
        return ForgeError::Conflict { forge: FORGE, operation: operation.to_owned(), message };
    }
    ForgeError::Status { forge: FORGE, operation: operation.to_owned(), status: answer.status, message }
}

fn pull_number(pull: &Value, operation: &str) -> Result<i64, ForgeError> {
    pull.get("number").and_then(Value::as_i64).ok_or_else(|| decode(operation, "the pull request has no number"))
}

fn pull_state(pull: &Value) -> Result<ChangeRequestState, ForgeError> {
    let merged = pull.get("merged").and_then(Value::as_bool) == Some(true) || pull["merged_at"].is_string();
    match pull.get("state").and_then(Value::as_str) {
        Some("open") => Ok(ChangeRequestState::Open),
        Some("closed") if merged => Ok(ChangeRequestState::Merged),
        Some("closed") => Ok(ChangeRequestState::Closed),
        _ => Err(decode("read pull request", "unknown pull request state")),
    }
}

fn status_of(pull: &Value) -> Result<ChangeRequestStatus, ForgeError> {
    let text = |pointer: &str| pull.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    let state = pull_state(pull)?;
    Ok(ChangeRequestStatus {
        id: pull_number(pull, "read pull request")?,
        state,
        head_commit: text("/head/sha")
            .ok_or_else(|| decode("read pull request", "the pull request has no head sha"))?,
        merge_commit: if state == ChangeRequestState::Merged { text("/merge_commit_sha") } else { None },
        approved: None,
        checks: None,
        url: text("/html_url"),
    })
}

fn change_request_of(repo: &str, pull: &Value, run_id: Option<&str>) -> Result<ChangeRequest, ForgeError> {
    let text = |pointer: &str| pull.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(ChangeRequest {
        id: pull_number(pull, "read pull request")?,
        forge: FORGE.to_owned(),
        repo: repo.to_owned(),
        branch: text("/head/ref"),
        base: text("/base/ref"),
        head_commit: text("/head/sha"),
        title: text("/title"),
        body: text("/body"),
        run_id: run_id.unwrap_or_default().to_owned(),
        state: pull_state(pull)?.as_str().to_owned(),
        created_at: millis_of(pull.get("created_at").and_then(Value::as_str)),
    })
}

/// A found request as the caller's run sees it (GitHub does not know gantry's run ids).
fn with_run(mut request: ChangeRequest, draft: &ChangeRequestDraft) -> ChangeRequest {
    request.run_id = draft.run_id.clone();
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: Value) -> Answer {
        Answer { status, retry_after: None, rate_limit_reset: None, rate_limit_exhausted: false, body }
    }

    #[test]
    fn a_403_is_a_rate_limit_only_when_it_says_so() {
        let forbidden =
            error_of("open pull request", answer(403, json!({"message": "Resource not accessible by integration"})));
        assert!(matches!(forbidden, ForgeError::Status { status: 403, .. }));
        assert!(!forbidden.is_transient());

        let mut primary = answer(403, json!({"message": "API rate limit exceeded for user ID 1."}));
        primary.rate_limit_exhausted = true;
        primary.rate_limit_reset = Some(Duration::from_secs(120));
        let primary = error_of("open pull request", primary);
        assert_eq!(primary.retry_after(), Some(Duration::from_secs(120)));

        let secondary = error_of(
            "open pull request",
            answer(
                403,
                json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}),
            ),
        );
        assert_eq!(secondary.retry_after(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn merged_closed_and_open_states() {
        let pull = |state: &str, merged: bool| {
            json!({"number": 7, "state": state, "merged": merged, "head": {"sha": "abc"},
                   "merge_commit_sha": "def"})
        };
        assert_eq!(status_of(&pull("open", false)).unwrap().state, ChangeRequestState::Open);
        let merged = status_of(&pull("closed", true)).unwrap();
        assert_eq!(merged.state, ChangeRequestState::Merged);
        assert_eq!(merged.merge_commit.as_deref(), Some("def"));
        let closed = status_of(&pull("closed", false)).unwrap();
        assert_eq!(closed.state, ChangeRequestState::Closed);
        assert_eq!(closed.merge_commit, None);
        assert!(status_of(&json!({"number": 1})).is_err());
    }
}
