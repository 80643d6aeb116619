//! `verify-argocd`: after the merge, waits until the environment's Argo CD Application has
//! synced the merged revision and is Healthy.
//!
//! It reads the Application through the Argo CD REST API (`GET /api/v1/applications/{name}`,
//! bearer token) and looks at `status.sync` (status and revision; `revisions` for
//! multi-source apps), `status.health` and `status.operationState`. Healthy at the merged
//! revision succeeds. Degraded at the merged revision, or a sync operation of it that failed,
//! fails at once, naming the app's conditions and its degraded resources; so does a timeout,
//! with the state it was stuck in. Anything else (OutOfSync, Progressing, an older revision)
//! means looking again after `poll`.
//!
//! The revision is the merge commit reported by a `wait-for-merge` step before this one, else
//! the head commit `open-pr` pushed, else the `revision` setting; with none of them only sync
//! and health are checked.
//!
//! Settings (`with:`):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `server` | (required) | Argo CD base URL, e.g. `https://argocd.example.com` |
//! | `application` | `{app}-{env}` | Application name; `{app}` and `{env}` are filled in |
//! | `token_env` | `ARGOCD_TOKEN` | environment variable that holds the API token |
//! | `poll` | `10s` | interval between looks |
//! | `timeout` | `10m` | fail when not Healthy this long after the step first ran |
//! | `revision` | — | the revision to expect, when no earlier step reports one |

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Step, StepContext, StepError, StepOutcome};
use crate::model::{Millis, now_millis};
use gantry_workflows::config::parse_duration;

/// See the module documentation.
pub struct VerifyArgocd;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyArgocdConfig {
    server: Option<String>,
    application: Option<String>,
    token_env: Option<String>,
    poll: Option<String>,
    timeout: Option<String>,
    revision: Option<String>,
}

/// Checked settings with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    server: String,
    application: String,
    token_env: String,
    poll: Duration,
    timeout: Duration,
    revision: Option<String>,
}

fn settings(config: &Value) -> Result<Settings, Vec<(String, String)>> {
    let parsed: VerifyArgocdConfig = serde_json::from_value(match config {
        Value::Null => json!({}),
        other => other.clone(),
    })
    .map_err(|error| vec![(String::new(), error.to_string())])?;
    let mut problems = Vec::new();
    let server = match parsed.server {
        Some(server) if server.starts_with("http://") || server.starts_with("https://") => {
            server.trim_end_matches('/').to_owned()
        }
        Some(server) => {
            problems.push(("server".to_owned(), format!("{server:?} is not an http(s) URL")));
            String::new()
        }
        None => {
            problems.push(("server".to_owned(), "the Argo CD URL is required".to_owned()));
            String::new()
        }
    };
    let mut duration = |key: &str, value: Option<String>, default: Duration| match value {
        None => default,
        Some(text) => parse_duration(&text).unwrap_or_else(|error| {
            problems.push((key.to_owned(), error));
            default
        }),
    };
    let poll = duration("poll", parsed.poll, Duration::from_secs(10));
    let timeout = duration("timeout", parsed.timeout, Duration::from_secs(600));
    if poll.is_zero() {
        problems.push(("poll".to_owned(), "must be longer than zero".to_owned()));
    }
    if problems.is_empty() {
        Ok(Settings {
            server,
            application: parsed.application.unwrap_or_else(|| "{app}-{env}".to_owned()),
            token_env: parsed.token_env.unwrap_or_else(|| "ARGOCD_TOKEN".to_owned()),
            poll,
            timeout,
            revision: parsed.revision,
        })
    } else {
        Err(problems)
    }
}

/// What the Application's status says about the promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Assessment {
    /// Synced to the expected revision and Healthy.
    Ready {
        /// The revision it runs.
        revision: String,
    },
    /// Not there yet.
    Pending {
        /// Where it stands, for people.
        state: String,
    },
    /// Degraded at the expected revision, or its sync failed.
    Failed {
        /// Why, with conditions and degraded resources.
        reason: String,
    },
}

fn text<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// Whether `found` names the same commit as `expected` (either may be abbreviated).
fn same_revision(found: &str, expected: &str) -> bool {
    !found.is_empty() && !expected.is_empty() && (found.starts_with(expected) || expected.starts_with(found))
}

/// The app's conditions and its resources that are not healthy, one line each.
fn problems_of(app: &Value) -> String {
    let mut lines = Vec::new();
    for condition in app.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten() {
        lines.push(format!(
            "condition {}: {}",
            text(condition, "/type").unwrap_or("Unknown"),
            text(condition, "/message").unwrap_or("").trim()
        ));
    }
    for resource in app.pointer("/status/resources").and_then(Value::as_array).into_iter().flatten() {
        let health = text(resource, "/health/status").unwrap_or("");
        if matches!(health, "Degraded" | "Missing") {
            let namespace = text(resource, "/namespace").map(|namespace| format!("{namespace}/")).unwrap_or_default();
            let message = text(resource, "/health/message").map(|message| format!(": {message}")).unwrap_or_default();
            lines.push(format!(
                "{} {namespace}{} is {health}{message}",
                text(resource, "/kind").unwrap_or("resource"),
                text(resource, "/name").unwrap_or("?"),
            ));
        }
    }
    lines.join("; ")
}

/// Reads an Application object (the shape `kubectl get application -o json` and the Argo CD
/// API return) against the revision the promotion merged.
pub(crate) fn assess(app: &Value, expected: Option<&str>) -> Assessment {
    let sync = text(app, "/status/sync/status").unwrap_or("Unknown");
    let health = text(app, "/status/health/status").unwrap_or("Unknown");
    let mut revisions: Vec<&str> = app
        .pointer("/status/sync/revisions")
        .and_then(Value::as_array)
        .map(|revisions| revisions.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(revision) = text(app, "/status/sync/revision") {
        revisions.insert(0, revision);
    }
    let at_expected = match expected {
        Some(expected) => revisions.iter().any(|revision| same_revision(revision, expected)),
        None => true,
    };
    let shown_revision = revisions.first().copied().unwrap_or("none");
    let with_problems = |headline: String| {
        let problems = problems_of(app);
        if problems.is_empty() { headline } else { format!("{headline}: {problems}") }
    };

    let operation_phase = text(app, "/status/operationState/phase").unwrap_or("");
    let operation_revision = text(app, "/status/operationState/operation/sync/revision")
        .or_else(|| text(app, "/status/operationState/syncResult/revision"))
        .unwrap_or("");
    let operation_is_ours = expected.is_none_or(|expected| same_revision(operation_revision, expected));
    if matches!(operation_phase, "Failed" | "Error") && operation_is_ours {
        let message = text(app, "/status/operationState/message").unwrap_or("no message");
        return Assessment::Failed { reason: with_problems(format!("sync operation {operation_phase}: {message}")) };
    }
    if at_expected && health == "Degraded" {
        return Assessment::Failed {
            reason: with_problems(format!("application is Degraded at revision {shown_revision}")),
        };
    }
    if at_expected && sync == "Synced" && health == "Healthy" {
        return Assessment::Ready { revision: shown_revision.to_owned() };
    }
    Assessment::Pending { state: format!("sync {sync} at revision {shown_revision}, health {health}") }
}

/// A client for one Argo CD server.
pub(crate) struct ArgoCd {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
}

impl ArgoCd {
    pub(crate) fn new(server: &str, token: Option<String>) -> Result<ArgoCd, StepError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|error| StepError::terminal(format!("set up the Argo CD client: {error}")))?;
        Ok(ArgoCd { http, server: server.trim_end_matches('/').to_owned(), token })
    }

    /// Reads the Application; errors are classified for the retry policy.
    pub(crate) async fn application(&self, name: &str) -> Result<Value, StepError> {
        let url = format!("{}/api/v1/applications/{}", self.server, crate::forge::encode_segment(name));
        let mut request = self.http.get(&url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|error| {
            StepError::transient(format!("read Argo CD application {name}: {}", error.without_url()))
        })?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|error| StepError::transient(format!("read Argo CD application {name}: {error}")))?;
        match status {
            200 => serde_json::from_str(&body).map_err(|error| {
                StepError::terminal(format!(
                    "read Argo CD application {name}: the answer is not an Application: {error}"
                ))
            }),
            401 | 403 => Err(StepError::terminal(format!(
                "read Argo CD application {name}: HTTP {status}: the token was refused (check the token and the account's RBAC)"
            ))),
            404 => Err(StepError::terminal(format!(
                "read Argo CD application {name}: HTTP 404: no such application on {}",
                self.server
            ))),
            status if status == 429 || status >= 500 => {
                Err(StepError::transient(format!("read Argo CD application {name}: HTTP {status}")))
            }
            status => Err(StepError::terminal(format!(
                "read Argo CD application {name}: HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            ))),
        }
    }
}

/// One look at the Application: succeeds, waits, or fails (also on timeout, counted from
/// `since`).
pub(crate) async fn look(
    argocd: &ArgoCd,
    application: &str,
    expected: Option<&str>,
    poll: Duration,
    timeout: Duration,
    since: Millis,
) -> Result<StepOutcome, StepError> {
    let app = argocd.application(application).await?;
    match assess(&app, expected) {
        Assessment::Ready { revision } => Ok(StepOutcome::Succeeded {
            outputs: json!({
                "application": application,
                "revision": revision,
                "health": "Healthy",
                "sync": "Synced",
            }),
            pin_digest: None,
        }),
        Assessment::Failed { reason } => {
            Err(StepError::terminal(format!("Argo CD application {application}: {reason}")))
        }
        Assessment::Pending { state } => {
            let waited = now_millis().saturating_sub(since);
            if u128::try_from(waited).unwrap_or(0) > timeout.as_millis() {
                let problems = problems_of(&app);
                let details = if problems.is_empty() { String::new() } else { format!(": {problems}") };
                return Err(StepError::terminal(format!(
                    "Argo CD application {application} was not synced and Healthy{} within {}s ({state}){details}",
                    expected.map(|revision| format!(" at {revision}")).unwrap_or_default(),
                    timeout.as_secs()
                )));
            }
            Ok(StepOutcome::Waiting {
                wake_on: None,
                retry_in: poll,
                reason: format!("Argo CD application {application} to be synced and Healthy"),
                progress: Some(json!({ "application": application, "state": state })),
            })
        }
    }
}

#[async_trait]
impl Step for VerifyArgocd {
    fn kind(&self) -> &'static str {
        "verify-argocd"
    }

    fn summary(&self) -> &'static str {
        "wait until the environment's Argo CD application runs the merged revision and is Healthy"
    }

    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        settings(config).err().unwrap_or_default()
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings = settings(&ctx.config).map_err(|problems| {
            let text: Vec<String> = problems.iter().map(|(key, message)| format!("{key}: {message}")).collect();
            StepError::terminal(format!("invalid settings: {}", text.join("; ")))
        })?;
        let application =
            settings.application.replace("{app}", &ctx.plan.app).replace("{env}", &ctx.plan.target.environment);
        let merged = ctx.outputs.values().find(|outputs| outputs.get("merge_commit").is_some());
        let pushed =
            ctx.outputs.values().find(|outputs| outputs.get("opened").is_some() && outputs.get("commit").is_some());
        let expected = merged
            .and_then(|outputs| outputs.get("merge_commit"))
            .and_then(Value::as_str)
            .or_else(|| pushed.and_then(|outputs| text(outputs, "/commit")))
            .or(settings.revision.as_deref())
            .map(str::to_owned);
        // The clock starts when this step first ran, which is after the merge.
        let since = ctx.started_at;
        let token = std::env::var(&settings.token_env).ok().filter(|token| !token.is_empty());
        let argocd = ArgoCd::new(&settings.server, token)?;
        look(&argocd, &application, expected.as_deref(), settings.poll, settings.timeout, since).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/../tests/fixtures/argocd/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {path}: {error}"))
    }

    fn healthy() -> Value {
        serde_json::from_str(&fixture("application-with-status.diff-cache.json")).unwrap()
    }

    fn degraded() -> Value {
        yaml_serde::from_str(&fixture("application-health-degraded.yaml")).unwrap()
    }

    /// The captured healthy Application, moved to another state the way the controller
    /// would write it (the fixture itself stays as captured).
    fn with_state(sync: &str, health: &str, revision: &str) -> Value {
        let mut app = healthy();
        app["status"]["sync"]["status"] = json!(sync);
        app["status"]["sync"]["revision"] = json!(revision);
        app["status"]["health"]["status"] = json!(health);
        app
    }

    #[test]
    fn the_captured_application_is_ready_at_its_revision() {
        assert_eq!(assess(&healthy(), Some("rev1")), Assessment::Ready { revision: "rev1".into() });
        assert_eq!(assess(&healthy(), None), Assessment::Ready { revision: "rev1".into() });
        // Healthy, but still at the revision before the merge.
        assert!(matches!(assess(&healthy(), Some("0123456789abcdef")), Assessment::Pending { .. }));
    }

    #[test]
    fn degraded_fails_only_at_the_expected_revision() {
        let Assessment::Failed { reason } = assess(&degraded(), None) else {
            panic!("degraded must fail");
        };
        assert!(reason.contains("Degraded"), "{reason}");
        assert!(matches!(assess(&degraded(), Some("abc123")), Assessment::Pending { .. }));

        let mut app = with_state("Synced", "Degraded", "abc123");
        app["status"]["resources"][1]["health"] =
            json!({"status": "Degraded", "message": "Deployment \"test-lla\" exceeded its progress deadline"});
        app["status"]["conditions"] = json!([{"type": "SyncError", "message": "one or more objects failed to apply"}]);
        let Assessment::Failed { reason } = assess(&app, Some("abc1")) else {
            panic!("degraded at the merged revision must fail");
        };
        assert_eq!(
            reason,
            "application is Degraded at revision abc123: condition SyncError: one or more objects failed to apply; \
             Deployment test-lla/test-lla is Degraded: Deployment \"test-lla\" exceeded its progress deadline"
        );
    }

    #[test]
    fn progressing_and_out_of_sync_wait() {
        for (sync, health) in [("OutOfSync", "Healthy"), ("Synced", "Progressing")] {
            assert_eq!(
                assess(&with_state(sync, health, "abc123"), Some("abc123")),
                Assessment::Pending { state: format!("sync {sync} at revision abc123, health {health}") }
            );
        }
    }

    #[test]
    fn a_failed_sync_of_the_merged_revision_fails() {
        let mut app = with_state("OutOfSync", "Healthy", "old");
        app["status"]["operationState"]["phase"] = json!("Failed");
        app["status"]["operationState"]["message"] = json!("one or more tasks are running");
        app["status"]["operationState"]["operation"]["sync"]["revision"] = json!("abc123");
        assert!(matches!(assess(&app, Some("abc123")), Assessment::Failed { .. }));
        // A failed sync of some other revision is not this promotion's failure.
        assert!(matches!(assess(&app, Some("def456")), Assessment::Pending { .. }));
    }

    #[test]
    fn settings_are_checked() {
        assert!(settings(&Value::Null).is_err());
        let ok = settings(&json!({"server": "https://argocd.example/"})).unwrap();
        assert_eq!(ok.server, "https://argocd.example");
        assert_eq!(ok.application, "{app}-{env}");
        let problems = settings(&json!({"server": "argocd", "poll": "0s"})).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(settings(&json!({"server": "https://a", "servr": "x"})).is_err());
    }

    mod against_an_http_fake {
        use super::*;
        use wiremock::matchers::{header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        async fn server_with(responses: Vec<ResponseTemplate>) -> MockServer {
            let server = MockServer::start().await;
            let count = responses.len();
            for (index, response) in responses.into_iter().enumerate() {
                let mock = Mock::given(method("GET"))
                    .and(path("/api/v1/applications/web-prod"))
                    .and(header("authorization", "Bearer token-1"))
                    .respond_with(response);
                // Each answer is served once, in order; the last one from then on.
                let mock = if index + 1 < count { mock.up_to_n_times(1) } else { mock };
                server.register(mock).await;
            }
            server
        }

        #[tokio::test]
        async fn waits_while_progressing_then_succeeds_when_healthy() {
            let server = server_with(vec![
                ResponseTemplate::new(200).set_body_json(with_state("Synced", "Progressing", "rev1")),
                ResponseTemplate::new(200).set_body_json(healthy()),
            ])
            .await;
            let argocd = ArgoCd::new(&server.uri(), Some("token-1".into())).unwrap();
            let poll = Duration::from_secs(5);
            let first =
                look(&argocd, "web-prod", Some("rev1"), poll, Duration::from_secs(600), now_millis()).await.unwrap();
            assert!(matches!(first, StepOutcome::Waiting { retry_in, .. } if retry_in == poll));
            let second =
                look(&argocd, "web-prod", Some("rev1"), poll, Duration::from_secs(600), now_millis()).await.unwrap();
            let StepOutcome::Succeeded { outputs, .. } = second else {
                panic!("expected success, got {second:?}");
            };
            assert_eq!(outputs["revision"], "rev1");
        }

        #[tokio::test]
        async fn degraded_fails_and_timeouts_name_the_state() {
            let server = server_with(vec![ResponseTemplate::new(200).set_body_json(degraded())]).await;
            let argocd = ArgoCd::new(&server.uri(), Some("token-1".into())).unwrap();
            let error = look(&argocd, "web-prod", None, Duration::from_secs(1), Duration::from_secs(60), now_millis())
                .await
                .unwrap_err();
            assert!(matches!(&error, StepError::Terminal { message } if message.contains("Degraded")), "{error:?}");

            let server =
                server_with(vec![ResponseTemplate::new(200).set_body_json(with_state("OutOfSync", "Healthy", "old"))])
                    .await;
            let argocd = ArgoCd::new(&server.uri(), Some("token-1".into())).unwrap();
            let long_ago = now_millis() - 3_600_000;
            let error =
                look(&argocd, "web-prod", Some("abc123"), Duration::from_secs(1), Duration::from_secs(600), long_ago)
                    .await
                    .unwrap_err();
            let StepError::Terminal { message } = error else {
                panic!("a timeout is terminal");
            };
            assert!(message.contains("within 600s (sync OutOfSync at revision old, health Healthy)"), "{message}");
        }

        #[tokio::test]
        async fn http_errors_are_classified() {
            let server = server_with(vec![ResponseTemplate::new(503)]).await;
            let argocd = ArgoCd::new(&server.uri(), Some("token-1".into())).unwrap();
            let error = argocd.application("web-prod").await.unwrap_err();
            assert!(matches!(error, StepError::Transient { .. }), "{error:?}");
            // No token: the fake only answers requests that carry it, so this is a 404.
            let argocd = ArgoCd::new(&server.uri(), None).unwrap();
            let error = argocd.application("web-prod").await.unwrap_err();
            assert!(matches!(error, StepError::Terminal { .. }), "{error:?}");
        }
    }
}
