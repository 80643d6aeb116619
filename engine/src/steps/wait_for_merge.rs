//! `wait-for-merge`: waits until the promotion's change request is merged, on the forge the
//! environment's `config_repo.forge` names.
//!
//! The merged-PR webhook is the fast path: it wakes the parked step, which then reads the
//! request's state once. Without a webhook (or when one is lost) the step polls the forge
//! itself, backing off from `poll` to `max_poll`, so a quiet forge costs a request every few
//! minutes rather than every few seconds. A request closed without being merged fails the step
//! with that reason; a transient forge error (rate limit, 5xx) just means looking again later,
//! after whatever wait the forge asked for.
//!
//! Settings (`with:`), all optional:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `poll` | `30s` | first polling interval |
//! | `max_poll` | `10m` | longest polling interval |
//! | `timeout` | `168h` | fail when not merged this long after the step first ran |
//! | `merge` | `false` | merge it now instead of waiting for a person (`merge`, `squash`, `rebase`, or `true` for `merge`) |

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Step, StepContext, StepError, StepOutcome};
use crate::forge::{ChangeRequestState, ForgeError, MergeMethod};
use crate::model::now_millis;
use gantry_workflows::config::parse_duration;

/// See the module documentation.
pub struct WaitForMerge;

/// Settings of `wait-for-merge`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitForMergeConfig {
    poll: Option<String>,
    max_poll: Option<String>,
    timeout: Option<String>,
    merge: Option<Value>,
}

/// The settings, checked and with defaults applied.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    poll: Duration,
    max_poll: Duration,
    timeout: Duration,
    merge: Option<MergeMethod>,
}

fn settings(config: &Value) -> Result<Settings, Vec<(String, String)>> {
    let parsed: WaitForMergeConfig = match config {
        Value::Null => WaitForMergeConfig::default(),
        other => serde_json::from_value(other.clone()).map_err(|error| vec![(String::new(), error.to_string())])?,
    };
    let mut problems = Vec::new();
    let mut duration = |key: &str, value: Option<&String>, default: Duration| match value {
        None => default,
        Some(text) => parse_duration(text).unwrap_or_else(|error| {
            problems.push((key.to_owned(), error));
            default
        }),
    };
    let poll = duration("poll", parsed.poll.as_ref(), Duration::from_secs(30));
    let max_poll = duration("max_poll", parsed.max_poll.as_ref(), Duration::from_secs(600));
    let timeout = duration("timeout", parsed.timeout.as_ref(), Duration::from_secs(7 * 24 * 3600));
    let merge = match &parsed.merge {
        None | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(MergeMethod::Merge),
        Some(Value::String(method)) => match method.as_str() {
            "merge" => Some(MergeMethod::Merge),
            "squash" => Some(MergeMethod::Squash),
            "rebase" => Some(MergeMethod::Rebase),
            _ => {
                problems.push((
                    "merge".to_owned(),
                    format!("unknown merge method {method:?} (use merge, squash or rebase)"),
                ));
                None
            }
        },
        Some(_) => {
            problems.push(("merge".to_owned(), "expected true, false, or a merge method".to_owned()));
            None
        }
    };
    if poll.is_zero() {
        problems.push(("poll".to_owned(), "must be longer than zero".to_owned()));
    }
    if max_poll < poll {
        problems.push(("max_poll".to_owned(), "must not be shorter than `poll`".to_owned()));
    }
    if problems.is_empty() { Ok(Settings { poll, max_poll, timeout, merge }) } else { Err(problems) }
}

/// The polling interval for the `attempt`-th look: `poll`, doubling up to `max_poll`.
fn poll_interval(settings: &Settings, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(20);
    settings.poll.saturating_mul(1 << doublings).min(settings.max_poll)
}

/// A forge error while waiting: transient ones mean looking again later (never sooner than the
/// forge asked), permanent ones fail the step.
fn waiting_through(
    error: &ForgeError,
    interval: Duration,
    branch: &str,
    reason: &str,
) -> Result<StepOutcome, StepError> {
    let message = super::chain(error);
    if !error.is_transient() {
        return Err(StepError::terminal(message));
    }
    let retry_in = error.retry_after().map_or(interval, |after| after.max(interval));
    Ok(StepOutcome::Waiting {
        wake_on: Some(wake_key(branch)),
        retry_in,
        reason: reason.to_owned(),
        progress: Some(json!({ "last_error": message })),
    })
}

/// The event that wakes a `wait-for-merge` step parked on `branch`: the merged-PR webhook
/// sends it for the PR's head branch (promotion branches are unique per environment, app
/// and digest).
pub fn wake_key(branch: &str) -> String {
    format!("merge:{branch}")
}

#[async_trait]
impl Step for WaitForMerge {
    fn kind(&self) -> &'static str {
        "wait-for-merge"
    }

    fn summary(&self) -> &'static str {
        "wait until the promotion's change request is merged (woken by the merge webhook, polling as a fallback)"
    }

    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        settings(config).err().unwrap_or_default()
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings = settings(&ctx.config).map_err(|problems| {
            let text: Vec<String> = problems.iter().map(|(key, message)| format!("{key}: {message}")).collect();
            StepError::terminal(format!("invalid settings: {}", text.join("; ")))
        })?;
        let opened = ctx
            .outputs
            .values()
            .find(|outputs| outputs.get("opened").is_some() && outputs.get("forge").is_some())
            .cloned();
        let Some(opened) = opened else {
            // open-pr found nothing to change, or there is no open-pr step before this one.
            let nothing = ctx.outputs.values().any(|outputs| outputs.get("opened") == Some(&json!(false)));
            if nothing {
                return Ok(StepOutcome::Succeeded {
                    outputs: json!({ "merged": false, "reason": "there was no change to merge" }),
                    pin_digest: None,
                });
            }
            return Err(StepError::terminal(format!(
                "step {} needs an open-pr step before it (add it to `needs`)",
                ctx.step
            )));
        };
        let branch = opened.get("branch").and_then(Value::as_str).unwrap_or_default().to_owned();
        let handle = ctx
            .capabilities
            .forge_for(&ctx.plan.target.repo_url, ctx.plan.target.forge)
            .map_err(|error| super::classify(error.is_transient(), super::chain(&error)))?;
        // The name open-pr used, so a request opened before a settings change is still found.
        let repo = opened.get("repo").and_then(Value::as_str).map_or(handle.repo.clone(), str::to_owned);
        let forge = &handle.forge;
        let interval = poll_interval(&settings, ctx.attempt);
        let waiting_for = format!("change request for {branch} to be merged");

        let request = match forge.find_change_request(&repo, &branch).await {
            Ok(Some(request)) => request,
            Ok(None) => {
                return Err(StepError::terminal(format!(
                    "no change request exists for branch {branch} of {repo} on {}",
                    forge.name()
                )));
            }
            Err(error) => return waiting_through(&error, interval, &branch, &waiting_for),
        };
        let mut status = match forge.change_request_status(&request).await {
            Ok(status) => status,
            Err(error) => return waiting_through(&error, interval, &branch, &waiting_for),
        };
        if status.state == ChangeRequestState::Open
            && let Some(method) = settings.merge
        {
            status = match forge.merge_change_request(&request, method).await {
                Ok(status) => status,
                Err(error) => return waiting_through(&error, interval, &branch, &waiting_for),
            };
        }
        let described = json!({
            "forge": forge.name(),
            "change_request": status.id,
            "url": status.url,
            "head_commit": status.head_commit,
            "approved": status.approved,
            "checks": status.checks,
        });
        match status.state {
            ChangeRequestState::Merged => {
                let mut outputs = described;
                outputs["merged"] = json!(true);
                outputs["merge_commit"] = json!(status.merge_commit);
                outputs["merged_at"] = json!(now_millis());
                Ok(StepOutcome::Succeeded { outputs, pin_digest: None })
            }
            ChangeRequestState::Closed => Err(StepError::terminal(format!(
                "change request {} on {} for branch {branch} was closed without being merged",
                status.id,
                forge.name()
            ))),
            ChangeRequestState::Open => {
                let waited =
                    Duration::from_millis(u64::try_from(now_millis().saturating_sub(ctx.started_at)).unwrap_or(0));
                if waited > settings.timeout {
                    return Err(StepError::terminal(format!(
                        "change request {} on {} was not merged within {}s",
                        status.id,
                        forge.name(),
                        settings.timeout.as_secs()
                    )));
                }
                Ok(StepOutcome::Waiting {
                    wake_on: Some(wake_key(&branch)),
                    retry_in: interval,
                    reason: waiting_for,
                    progress: Some(described),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_have_defaults_and_report_every_problem() {
        let defaults = settings(&Value::Null).unwrap();
        assert_eq!(defaults.poll, Duration::from_secs(30));
        assert_eq!(defaults.max_poll, Duration::from_secs(600));
        assert_eq!(defaults.merge, None);
        let custom = settings(&json!({"poll": "1s", "max_poll": "4s", "merge": "squash"})).unwrap();
        assert_eq!(custom.merge, Some(MergeMethod::Squash));
        let problems = settings(&json!({"poll": "x", "max_poll": "1ms", "merge": "octopus"})).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["poll", "merge", "max_poll"]);
        assert!(settings(&json!({"pol": "1s"})).is_err());
    }

    #[test]
    fn polling_backs_off_to_the_cap() {
        let settings = settings(&json!({"poll": "1s", "max_poll": "5s"})).unwrap();
        let intervals: Vec<u64> = (1..=5).map(|attempt| poll_interval(&settings, attempt).as_secs()).collect();
        assert_eq!(intervals, [1, 2, 4, 5, 5]);
        assert_eq!(poll_interval(&settings, 400), Duration::from_secs(5));
    }

    #[test]
    fn forge_errors_while_waiting() {
        let limited = ForgeError::RateLimited {
            forge: "github",
            operation: "read pull request".into(),
            retry_after: Some(Duration::from_secs(90)),
            message: "secondary rate limit".into(),
        };
        let outcome = waiting_through(&limited, Duration::from_secs(30), "gantry/prod/web/0123", "merge").unwrap();
        assert!(matches!(outcome, StepOutcome::Waiting { retry_in, .. } if retry_in == Duration::from_secs(90)));
        let denied = ForgeError::Status {
            forge: "github",
            operation: "read pull request".into(),
            status: 404,
            message: "Not Found".into(),
        };
        assert!(matches!(
            waiting_through(&denied, Duration::from_secs(30), "gantry/prod/web/0123", "merge"),
            Err(StepError::Terminal { .. })
        ));
    }
}
