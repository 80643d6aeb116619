//! `approval`: waits until a person approves the promotion (API, CLI or a Slack link).
//!
//! The step parks itself — holding no worker — with the wake-up event `approval:<run>:<step>`;
//! an approval records who approved in the step's progress and wakes it, and the next attempt
//! succeeds with the approval as its outputs. Settings: `approvers` (optional list of names
//! allowed to approve) and `timeout` (optional, e.g. `72h`, after which the step fails).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{Step, StepContext, StepError, StepOutcome, typed_settings};
use crate::model::now_millis;

/// See the module documentation.
pub struct Approval;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    approvers: Vec<String>,
    #[serde(default)]
    timeout: Option<String>,
}

/// The event that wakes an approval step.
pub fn wake_key(run_id: &str, step: &str) -> String {
    format!("approval:{run_id}:{step}")
}

/// How long a parked approval sleeps before looking again by itself (the event normally wakes it).
const RECHECK: Duration = Duration::from_secs(3600);

#[async_trait]
impl Step for Approval {
    fn kind(&self) -> &'static str {
        "approval"
    }

    fn summary(&self) -> &'static str {
        "wait until a person approves the promotion"
    }

    fn check_config(&self, config: &serde_json::Value) -> Vec<(String, String)> {
        match typed_settings::<Settings>(config) {
            Ok(settings) => match settings.timeout.as_deref().map(gantry_workflows::config::parse_duration) {
                Some(Err(message)) => vec![("timeout".into(), message)],
                _ => Vec::new(),
            },
            Err(problem) => vec![problem],
        }
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings: Settings = typed_settings(&ctx.config).map_err(|(_, message)| StepError::terminal(message))?;
        let progress = ctx.progress.clone().unwrap_or(serde_json::Value::Null);
        if let Some(approver) = progress.get("approved_by").and_then(|v| v.as_str()) {
            if !settings.approvers.is_empty() && !settings.approvers.iter().any(|a| a == approver) {
                return Err(StepError::terminal(format!(
                    "{approver} may not approve this promotion (approvers: {})",
                    settings.approvers.join(", ")
                )));
            }
            return Ok(StepOutcome::Succeeded {
                outputs: json!({
                    "approved_by": approver,
                    "approved_at": progress.get("approved_at"),
                    "comment": progress.get("comment"),
                }),
                pin_digest: None,
            });
        }
        let mut retry_in = RECHECK;
        if let Some(timeout) = settings.timeout.as_deref() {
            let limit = gantry_workflows::config::parse_duration(timeout).map_err(StepError::terminal)?;
            let waited = Duration::from_millis((now_millis() - ctx.started_at).max(0) as u64);
            if waited >= limit {
                return Err(StepError::terminal(format!("nobody approved within {timeout}")));
            }
            retry_in = retry_in.min(limit - waited);
        }
        Ok(StepOutcome::Waiting {
            retry_in,
            wake_on: Some(wake_key(&ctx.run_id, &ctx.step)),
            reason: format!("approval of {} {} into {}", ctx.plan.app, ctx.plan.version, ctx.plan.environment),
            progress: Some(json!({ "approvers": settings.approvers })),
        })
    }
}
