//! The GitLab forge: merge requests through the GitLab REST API (v4), over reqwest.
//!
//! Plain REST rather than the `gitlab` crate: it keeps status codes and the `Retry-After` /
//! `RateLimit-Reset` headers of every answer, which rate limiting needs, and costs no extra
//! dependency. Projects are addressed by their URL-encoded path (`group%2Fsub%2Fenv-prod`).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use super::{
    ChangeRequestDraft, ChangeRequestState, ChangeRequestStatus, CommitState, CommitStatus, Forge, ForgeError,
    MergeMethod, encode_segment, millis_of, parse_retry_after, repository_path, wait_until_epoch,
};
use crate::model::ChangeRequest;

const FORGE: &str = "gitlab";

/// Merge requests on a GitLab instance.
#[derive(Clone)]
pub struct GitLabForge {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl std::fmt::Debug for GitLabForge {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("GitLabForge").field("api", &self.api).finish_non_exhaustive()
    }
}

struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Value,
}

impl GitLabForge {
    /// A client for the instance at `base_url` (`https://gitlab.com`; `/api/v4` is added)
    /// authenticating with a personal, project or group access token.
    ///
    /// # Errors
    /// [`ForgeError::Setup`] for a URL that is not http(s) or a token that cannot be sent.
    pub fn new(base_url: &str, token: &str) -> Result<GitLabForge, ForgeError> {
        let setup = |reason: String| ForgeError::Setup { forge: FORGE, reason };
        let base = base_url.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(setup(format!("use url {base_url:?}: expected http(s)://")));
        }
        if reqwest::header::HeaderValue::from_str(token).is_err() {
            return Err(setup("the token holds characters a header cannot".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| setup(error.to_string()))?;
        let api = if base.ends_with("/api/v4") { base.to_owned() } else { format!("{base}/api/v4") };
        Ok(GitLabForge { http, api, token: token.to_owned() })
    }

    async fn send(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ForgeError> {
        let transport = |error: reqwest::Error| ForgeError::Transport {
            forge: FORGE,
            operation: operation.to_owned(),
            source: Box::new(error.without_url()),
        };
        let mut request = self.http.request(method, format!("{}{path}", self.api)).header("PRIVATE-TOKEN", &self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport)?;
        let now = chrono::Utc::now();
        let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let status = response.status().as_u16();
        let retry_after = header("retry-after")
            .and_then(|value| parse_retry_after(&value, now))
            .or_else(|| header("ratelimit-reset").and_then(|value| wait_until_epoch(&value, now)));
        let text = response.text().await.map_err(transport)?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Answer { status, retry_after, body })
    }

    async fn call(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ForgeError> {
        let answer = self.send(operation, method, path, body).await?;
        if (200..300).contains(&answer.status) { Ok(answer.body) } else { Err(error_of(operation, answer)) }
    }

    fn project(repo: &str) -> Result<String, ForgeError> {
        Ok(encode_segment(&repository_path(FORGE, repo)?))
    }

    async fn merge_request(&self, repo: &str, iid: i64) -> Result<Value, ForgeError> {
        let project = Self::project(repo)?;
        self.call("read merge request", Method::GET, &format!("/projects/{project}/merge_requests/{iid}"), None).await
    }

    /// User ids for user names (GitLab assigns reviewers by id).
    async fn user_ids(&self, names: &[String]) -> Result<Vec<i64>, ForgeError> {
        let mut ids = Vec::with_capacity(names.len());
        for name in names {
            let users = self
                .call("look up reviewer", Method::GET, &format!("/users?username={}", encode_segment(name)), None)
                .await?;
            let id = users
                .as_array()
                .and_then(|users| users.first())
                .and_then(|user| user.get("id"))
                .and_then(Value::as_i64)
                .ok_or_else(|| ForgeError::Status {
                    forge: FORGE,
                    operation: "look up reviewer".into(),
                    status: 404,
                    message: format!("no user named {name:?}"),
                })?;
            ids.push(id);
        }
        Ok(ids)
    }

    async fn approval_state(&self, repo: &str, iid: i64) -> Result<Option<bool>, ForgeError> {
        let project = Self::project(repo)?;
        let approvals = self
            .call("read approvals", Method::GET, &format!("/projects/{project}/merge_requests/{iid}/approvals"), None)
            .await?;
        Ok(approvals.get("approved").and_then(Value::as_bool))
    }

    /// Approves a merge request as the token's user (GitLab's approval rules then decide
    /// whether it may merge).
    ///
    /// # Errors
    /// The forge's answer as a [`ForgeError`] (401 when the user may not approve).
    pub async fn approve(&self, request: &ChangeRequest) -> Result<(), ForgeError> {
        let project = Self::project(&request.repo)?;
        self.call(
            "approve merge request",
            Method::POST,
            &format!("/projects/{project}/merge_requests/{}/approve", request.id),
            Some(&json!({ "sha": request.head_commit })),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Forge for GitLabForge {
    fn name(&self) -> &'static str {
        FORGE
    }

    async fn find_change_request(&self, repo: &str, branch: &str) -> Result<Option<ChangeRequest>, ForgeError> {
        let project = Self::project(repo)?;
        let requests = self
            .call(
                "find merge request",
                Method::GET,
                &format!(
                    "/projects/{project}/merge_requests?source_branch={}&state=all&order_by=created_at&sort=desc&per_page=10",
                    encode_segment(branch)
                ),
                None,
            )
            .await?;
        let requests =
            requests.as_array().ok_or_else(|| decode("find merge request", "expected a list of merge requests"))?;
        requests
            .iter()
            .find(|request| request.get("source_branch").and_then(Value::as_str) == Some(branch))
            .map(|request| change_request_of(repo, request, None))
            .transpose()
    }

    async fn open_change_request(&self, draft: &ChangeRequestDraft) -> Result<(ChangeRequest, bool), ForgeError> {
        let project = Self::project(&draft.repo)?;
        if let Some(existing) = self.find_change_request(&draft.repo, &draft.branch).await? {
            let reusable =
                existing.state == "open" || (existing.state == "merged" && existing.head_commit == draft.head_commit);
            if reusable {
                return Ok((with_run(existing, draft), false));
            }
        }
        let review = &draft.review;
        let title = if review.draft { format!("Draft: {}", draft.title) } else { draft.title.clone() };
        let mut request = json!({
            "source_branch": draft.branch,
            "target_branch": draft.base,
            "title": title,
            "description": draft.body,
            "remove_source_branch": true,
        });
        if !review.labels.is_empty() {
            request["labels"] = json!(review.labels.join(","));
        }
        if !review.reviewers.is_empty() {
            request["reviewer_ids"] = json!(self.user_ids(&review.reviewers).await?);
        }
        if review.auto_merge == Some(MergeMethod::Squash) {
            request["squash"] = json!(true);
        }
        let answer = self
            .send("open merge request", Method::POST, &format!("/projects/{project}/merge_requests"), Some(&request))
            .await?;
        if answer.status == 409 {
            // "Another open merge request already exists for this source branch": another
            // writer won the race; use theirs.
            let existing = self.find_change_request(&draft.repo, &draft.branch).await?.ok_or_else(|| {
                ForgeError::NotFound { forge: FORGE, repo: draft.repo.clone(), branch: draft.branch.clone() }
            })?;
            return Ok((with_run(existing, draft), false));
        }
        if !(200..300).contains(&answer.status) {
            return Err(error_of("open merge request", answer));
        }
        let created = change_request_of(&draft.repo, &answer.body, Some(&draft.run_id))?;
        if let Some(method) = review.auto_merge {
            // GitLab merges by itself once the pipeline succeeds.
            self.call(
                "enable auto-merge",
                Method::PUT,
                &format!("/projects/{project}/merge_requests/{}/merge", created.id),
                Some(&json!({
                    "merge_when_pipeline_succeeds": true,
                    "squash": method == MergeMethod::Squash,
                    "sha": created.head_commit,
                })),
            )
            .await?;
        }
        Ok((created, true))
    }

    async fn change_request_status(&self, request: &ChangeRequest) -> Result<ChangeRequestStatus, ForgeError> {
        let merge_request = self.merge_request(&request.repo, request.id).await?;
        let mut status = status_of(&merge_request)?;
        if status.state == ChangeRequestState::Open {
            status.approved = self.approval_state(&request.repo, request.id).await?;
        }
        Ok(status)
    }

    async fn merge_change_request(
        &self,
        request: &ChangeRequest,
        method: MergeMethod,
    ) -> Result<ChangeRequestStatus, ForgeError> {
        let project = Self::project(&request.repo)?;
        let current = status_of(&self.merge_request(&request.repo, request.id).await?)?;
        match current.state {
            ChangeRequestState::Merged => return Ok(current),
            ChangeRequestState::Closed => {
                return Err(ForgeError::NotMergeable {
                    forge: FORGE,
                    operation: "merge merge request".into(),
                    message: format!("merge request !{} is closed", request.id),
                });
            }
            ChangeRequestState::Open => {}
        }
        let answer = self
            .send(
                "merge merge request",
                Method::PUT,
                &format!("/projects/{project}/merge_requests/{}/merge", request.id),
                Some(&json!({
                    "sha": request.head_commit,
                    "squash": method == MergeMethod::Squash,
                })),
            )
            .await?;
        match answer.status {
            200..=299 => status_of(&answer.body),
            // 405: not mergeable (draft, pipeline, approvals, discussions); 406: conflicts;
            // 422: the branch cannot be merged as it is.
            405 | 406 | 422 => Err(ForgeError::NotMergeable {
                forge: FORGE,
                operation: "merge merge request".into(),
                message: message_of(&answer.body),
            }),
            _ => Err(error_of("merge merge request", answer)),
        }
    }

    async fn set_commit_status(&self, repo: &str, commit: &str, status: &CommitStatus) -> Result<(), ForgeError> {
        let project = Self::project(repo)?;
        let state = match status.state {
            CommitState::Pending => "pending",
            CommitState::Success => "success",
            CommitState::Failure | CommitState::Error => "failed",
        };
        self.call(
            "set commit status",
            Method::POST,
            &format!("/projects/{project}/statuses/{}", encode_segment(commit)),
            Some(&json!({
                "state": state,
                "name": status.context,
                "description": status.description,
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

/// GitLab's `message` is a string, a list, or a map of field → list; `error` is used too.
fn message_of(body: &Value) -> String {
    fn flatten(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(text) => out.push(text.clone()),
            Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
            Value::Object(fields) => {
                for (field, value) in fields {
                    let mut inner = Vec::new();
                    flatten(value, &mut inner);
                    out.push(format!("{field} {}", inner.join(", ")));
                }
            }
            _ => {}
        }
    }
    let mut parts = Vec::new();
    for key in ["message", "error"] {
        if let Some(value) = body.get(key) {
            flatten(value, &mut parts);
        }
    }
    if parts.is_empty()
        && let Value::String(text) = body
    {
        parts.push(text.chars().take(200).collect());
    }
    if parts.is_empty() { "no message".to_owned() } else { parts.join("; ") }
}

fn error_of(operation: &str, answer: Answer) -> ForgeError {
    let message = message_of(&answer.body);
    match answer.status {
        429 => ForgeError::RateLimited {
            forge: FORGE,
            operation: operation.to_owned(),
            retry_after: answer.retry_after.or(Some(Duration::from_secs(60))),
            message,
        },
        409 => ForgeError::Conflict { forge: FORGE, operation: operation.to_owned(), message },
        status => ForgeError::Status { forge: FORGE, operation: operation.to_owned(), status, message },
    }
}

fn state_of(request: &Value) -> Result<ChangeRequestState, ForgeError> {
    match request.get("state").and_then(Value::as_str) {
        Some("opened" | "locked") => Ok(ChangeRequestState::Open),
        Some("merged") => Ok(ChangeRequestState::Merged),
        Some("closed") => Ok(ChangeRequestState::Closed),
        _ => Err(decode("read merge request", "unknown merge request state")),
    }
}

fn status_of(request: &Value) -> Result<ChangeRequestStatus, ForgeError> {
    let text = |pointer: &str| request.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    let state = state_of(request)?;
    Ok(ChangeRequestStatus {
        id: request
            .get("iid")
            .and_then(Value::as_i64)
            .ok_or_else(|| decode("read merge request", "the merge request has no iid"))?,
        state,
        head_commit: text("/sha").ok_or_else(|| decode("read merge request", "the merge request has no sha"))?,
        merge_commit: if state == ChangeRequestState::Merged {
            text("/merge_commit_sha").or_else(|| text("/squash_commit_sha"))
        } else {
            None
        },
        approved: None,
        checks: text("/head_pipeline/status"),
        url: text("/web_url"),
    })
}

fn change_request_of(repo: &str, request: &Value, run_id: Option<&str>) -> Result<ChangeRequest, ForgeError> {
    let text = |pointer: &str| request.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned();
    let status = status_of(request)?;
    Ok(ChangeRequest {
        id: status.id,
        forge: FORGE.to_owned(),
        repo: repo.to_owned(),
        branch: text("/source_branch"),
        base: text("/target_branch"),
        head_commit: status.head_commit,
        title: text("/title"),
        body: text("/description"),
        run_id: run_id.unwrap_or_default().to_owned(),
        state: status.state.as_str().to_owned(),
        created_at: millis_of(request.get("created_at").and_then(Value::as_str)),
    })
}

fn with_run(mut request: ChangeRequest, draft: &ChangeRequestDraft) -> ChangeRequest {
    request.run_id = draft.run_id.clone();
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_of_every_documented_shape() {
        assert_eq!(message_of(&json!({"message": "404 Not found"})), "404 Not found");
        assert_eq!(
            message_of(&json!({"message": ["Another open merge request already exists for this source branch: !7"]})),
            "Another open merge request already exists for this source branch: !7"
        );
        assert_eq!(message_of(&json!({"message": {"title": ["can't be blank"]}})), "title can't be blank");
        assert_eq!(message_of(&json!({"error": "insufficient_scope"})), "insufficient_scope");
        assert_eq!(message_of(&Value::Null), "no message");
    }

    #[test]
    fn states() {
        for (state, expected) in [
            ("opened", ChangeRequestState::Open),
            ("locked", ChangeRequestState::Open),
            ("merged", ChangeRequestState::Merged),
            ("closed", ChangeRequestState::Closed),
        ] {
            assert_eq!(state_of(&json!({ "state": state })).unwrap(), expected);
        }
        assert!(state_of(&json!({"state": "weird"})).is_err());
    }
}
