//! `soak`: lets time pass before the next step, e.g. "30 minutes in staging" before UAT.
//!
//! The first attempt records when the soak ends and parks the step (no worker held); the
//! attempt after that time succeeds. Settings: `duration` (e.g. `30m`).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{Step, StepContext, StepError, StepOutcome, typed_settings};
use crate::model::now_millis;

/// See the module documentation.
pub struct Soak;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    duration: String,
}

#[async_trait]
impl Step for Soak {
    fn kind(&self) -> &'static str {
        "soak"
    }

    fn summary(&self) -> &'static str {
        "wait a set time (settings: duration) before the steps after it"
    }

    fn check_config(&self, config: &serde_json::Value) -> Vec<(String, String)> {
        match typed_settings::<Settings>(config) {
            Ok(settings) => match gantry_workflows::config::parse_duration(&settings.duration) {
                Ok(_) => Vec::new(),
                Err(message) => vec![("duration".into(), message)],
            },
            Err(problem) => vec![problem],
        }
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings: Settings = typed_settings(&ctx.config).map_err(|(_, message)| StepError::terminal(message))?;
        let duration = gantry_workflows::config::parse_duration(&settings.duration).map_err(StepError::terminal)?;
        let until = ctx.started_at + duration.as_millis() as i64;
        let now = now_millis();
        if now >= until {
            return Ok(StepOutcome::Succeeded {
                outputs: json!({ "soaked": settings.duration, "until": until }),
                pin_digest: None,
            });
        }
        Ok(StepOutcome::Waiting {
            retry_in: Duration::from_millis((until - now) as u64),
            wake_on: None,
            reason: format!("{} to pass in {}", settings.duration, ctx.plan.environment),
            progress: Some(json!({ "until": until })),
        })
    }
}
