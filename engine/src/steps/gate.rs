//! `gate`: judges the reports of the run's `scan` steps against the gate policy for the run's
//! environment. An allowed artifact goes on, with the verdict in the step's outputs; a denied
//! one stops the run, with the reasons in the step's error and the verdict in its outputs.
//!
//! Settings (`with:`), at least one of `policy` and `max_score`:
//!
//! | setting | meaning |
//! |---|---|
//! | `policy` | a gate policy file (YAML, see `gantry_gates::policy`): thresholds under `default:` and under `environments: { <env>: … }`, exceptions, VEX documents, Rego modules; relative to the config directory, or absolute |
//! | `max_score` | deny any unsuppressed finding scoring at or above this, in every environment (over the policy's own `max_score`) |
//! | `scans` | names of the `scan` steps whose reports to judge (default: every earlier step that produced a scan report) |
//!
//! One policy file serves every environment, so a pipeline's steps stay the same from dev to
//! prod while each environment's section sets its own limits. The policy is read when the step
//! runs, so a new exception takes effect on the next promotion without a restart; exceptions
//! expire against the clock at that moment.
//!
//! A denial is recorded in two moves: the step first parks for an instant with the verdict as
//! its progress (so the API and the status page show the verdict and its evidence), then fails
//! for good with the reasons. Retrying cannot change a denial; a new report, exception or VEX
//! statement comes with a new promotion.

use async_trait::async_trait;
use gantry_gates::{Artifact, Decision, GateInput, Policy, evaluate, reports};
use serde::Deserialize;
use serde_json::{Value, json};

use super::scan::{parse, settings_path};
use super::{Step, StepContext, StepError, StepOutcome, blocking};

/// See the module documentation.
pub struct Gate;

/// Settings of `gate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateSettings {
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    max_score: Option<f64>,
    #[serde(default)]
    scans: Option<Vec<String>>,
}

/// How many reasons the step's error spells out; the outputs keep them all.
const REASONS_IN_ERROR: usize = 20;

#[async_trait]
impl Step for Gate {
    fn kind(&self) -> &'static str {
        "gate"
    }

    fn summary(&self) -> &'static str {
        "judge the scan reports against the environment's gate policy; a denial stops the run"
    }

    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        let settings: GateSettings = match parse(config) {
            Ok(settings) => settings,
            Err(error) => return vec![(String::new(), error)],
        };
        let mut problems = Vec::new();
        if settings.policy.is_none() && settings.max_score.is_none() {
            problems.push(("policy".into(), "name a gate policy file (`policy`) or a `max_score`".into()));
        }
        if let Some(score) = settings.max_score
            && !(0.0..=10.0).contains(&score)
        {
            problems.push(("max_score".into(), format!("{score} is not a CVSS score (0.0 to 10.0)")));
        }
        if settings.scans.as_ref().is_some_and(Vec::is_empty) {
            problems.push(("scans".into(), "the list of scan steps is empty".into()));
        }
        problems
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        if let Some(denied) = recorded_denial(ctx) {
            return Err(denied);
        }
        let settings: GateSettings = parse(&ctx.config)
            .map_err(|e| StepError::terminal(format!("step {} has invalid settings: {e}", ctx.step)))?;
        let stored = scan_reports(ctx, settings.scans.as_deref())?;
        let policy_path = settings.policy.as_deref().map(|p| settings_path(ctx, p));
        let max_score = settings.max_score;
        let environment = ctx.plan.target.environment.clone();
        let artifact = Artifact {
            repository: ctx.plan.artifact.repository.clone(),
            digest: ctx.digest.clone(),
            tag: Some(ctx.plan.artifact.tag.clone()),
        };
        let event = serde_json::to_value(&ctx.plan.event).unwrap_or(Value::Null);
        let verdict = blocking(move || {
            let mut policy = match &policy_path {
                Some(path) => Policy::load(path).map_err(|e| StepError::terminal(super::chain(&e)))?,
                None => Policy::default(),
            };
            if let Some(score) = max_score {
                policy.default.max_score = Some(score);
                for thresholds in policy.environments.values_mut() {
                    thresholds.max_score = Some(score);
                }
            }
            let mut documents = Vec::new();
            for path in &stored {
                let document =
                    reports::read(std::path::Path::new(path)).map_err(|e| StepError::terminal(super::chain(&e)))?;
                documents.push(document);
            }
            let findings: Vec<_> = documents.iter().flat_map(|d| d.findings.clone()).collect();
            let vex: Vec<_> = documents.iter().flat_map(|d| d.vex.clone()).collect();
            let summaries: Vec<_> = documents.iter().map(|d| d.summary()).collect();
            let input = GateInput {
                findings: &findings,
                vex: &vex,
                reports: &summaries,
                environment: Some(&environment),
                artifact: Some(&artifact),
                event: Some(&event),
                now: chrono::Utc::now(),
            };
            evaluate(&policy, &input).map_err(|e| StepError::terminal(super::chain(&e)))
        })
        .await?;
        let verdict_json =
            serde_json::to_value(&verdict).map_err(|e| StepError::terminal(format!("record the verdict: {e}")))?;
        let outputs = json!({
            "decision": verdict.decision.as_str(),
            "reasons": verdict.reasons,
            "notes": verdict.notes,
            "verdict": verdict_json,
        });
        match verdict.decision {
            Decision::Allow => Ok(StepOutcome::Succeeded { outputs, pin_digest: None }),
            // Park for an instant so the verdict is stored as this step's progress; the next
            // attempt finds it there and fails with its reasons.
            Decision::Deny => Ok(StepOutcome::Waiting {
                retry_in: std::time::Duration::ZERO,
                wake_on: None,
                reason: "recording the gate's denial".into(),
                progress: Some(outputs),
            }),
        }
    }
}

/// The terminal error for a denial recorded by an earlier attempt.
fn recorded_denial(ctx: &StepContext) -> Option<StepError> {
    let progress = ctx.progress.as_ref()?;
    if progress.get("decision").and_then(Value::as_str) != Some("deny") {
        return None;
    }
    let reasons: Vec<&str> = progress
        .get("reasons")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut message = format!(
        "gate denied the promotion into {}: {}",
        ctx.plan.target.environment,
        reasons.iter().take(REASONS_IN_ERROR).copied().collect::<Vec<_>>().join("; ")
    );
    if reasons.len() > REASONS_IN_ERROR {
        message.push_str(&format!("; and {} more (see the step's verdict)", reasons.len() - REASONS_IN_ERROR));
    }
    Some(StepError::terminal(message))
}

/// Stored report paths from the outputs of the named scan steps (or of every scan step).
fn scan_reports(ctx: &StepContext, names: Option<&[String]>) -> Result<Vec<String>, StepError> {
    let stored = |output: &Value| {
        output.get("scan").and_then(|scan| scan.get("stored")).and_then(Value::as_str).map(str::to_string)
    };
    let paths: Vec<String> = match names {
        Some(names) => names
            .iter()
            .map(|name| {
                ctx.outputs.get(name).and_then(stored).ok_or_else(|| {
                    StepError::terminal(format!(
                        "step {} judges the report of step {name}, which produced none (is it a `scan` step in `needs`?)",
                        ctx.step
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        None => ctx.outputs.values().filter_map(stored).collect(),
    };
    if paths.is_empty() {
        return Err(StepError::terminal(format!(
            "step {} has no scan report to judge: add a `scan` step to its `needs`",
            ctx.step
        )));
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: Value) -> Vec<String> {
        Gate.check_config(&config).into_iter().map(|(path, message)| format!("{path}: {message}")).collect()
    }

    #[test]
    fn settings_are_checked() {
        assert!(check(json!({"policy": "gates/policy.yaml"})).is_empty());
        assert!(check(json!({"max_score": 7.0, "scans": ["trivy"]})).is_empty());
        assert_eq!(check(json!({})), ["policy: name a gate policy file (`policy`) or a `max_score`"]);
        assert_eq!(check(json!({"max_score": 12})), ["max_score: 12 is not a CVSS score (0.0 to 10.0)"]);
        assert_eq!(check(json!({"policy": "p.yaml", "scans": []})), ["scans: the list of scan steps is empty"]);
        assert!(check(json!({"polcy": "p.yaml"}))[0].contains("unknown field `polcy`"));
    }
}
