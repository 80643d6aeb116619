//! `attest`: attaches a signed in-toto attestation about the pinned digest, stored as a DSSE
//! layer of the `sha256-<hex>.att` tag (cosign's attestation layout).
//!
//! By default the predicate is SLSA provenance v1 describing this promotion: source repository
//! and commit, the event, the pipeline and trigger, and the verdict of every `gate` step the run
//! has passed so far (list them in `needs` so they run first). With `predicate_step`, the
//! outputs of another step become the predicate instead (e.g. a scan summary), under
//! `predicate_type`.
//!
//! Settings (`with:`), exactly one of `key` / `key_env`:
//!
//! | setting | meaning |
//! |---|---|
//! | `key`, `key_env`, `password_env` | the signing key, as for `sign` |
//! | `predicate_step` | a step whose outputs are the predicate (default: SLSA provenance of the promotion) |
//! | `predicate_type` | the predicate type URI; required with `predicate_step` |
//!
//! Idempotent: the provenance of a run is deterministic, so a resumed run finds its own
//! attestation and writes nothing.

use std::collections::BTreeMap;

use async_trait::async_trait;
use gantry_webhooks::{Forge, RefKind};
use serde::Deserialize;
use serde_json::{Value, json};

use super::sign::{check_one_key, parse_settings, settings, signing_key, supply_chain_error};
use super::{Step, StepContext, StepError, StepOutcome, chain, classify};
use crate::supply_chain::{AttestOutcome, PROVENANCE_PREDICATE_TYPE, Promotion, attest_image, promotion_provenance};

/// See the module documentation.
pub struct Attest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttestSettings {
    key: Option<String>,
    key_env: Option<String>,
    password_env: Option<String>,
    predicate_step: Option<String>,
    predicate_type: Option<String>,
}

#[async_trait]
impl Step for Attest {
    fn kind(&self) -> &'static str {
        "attest"
    }

    fn summary(&self) -> &'static str {
        "attach a signed in-toto attestation (SLSA provenance of the promotion by default)"
    }

    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        let settings = match parse_settings::<AttestSettings>(config) {
            Ok(settings) => settings,
            Err(problems) => return problems,
        };
        let mut problems = check_one_key(settings.key.as_deref(), settings.key_env.as_deref());
        match (&settings.predicate_step, &settings.predicate_type) {
            (Some(_), None) => problems.push((
                "predicate_type".to_owned(),
                "a predicate taken from `predicate_step` needs its `predicate_type` URI".to_owned(),
            )),
            (None, Some(kind)) if kind != PROVENANCE_PREDICATE_TYPE => problems.push((
                "predicate_type".to_owned(),
                format!(
                    "without `predicate_step` the predicate is SLSA provenance \
                     ({PROVENANCE_PREDICATE_TYPE}); name the step whose outputs are a {kind} \
                     predicate"
                ),
            )),
            (_, Some(kind)) if !kind.contains(':') => {
                problems.push(("predicate_type".to_owned(), format!("{kind:?} is not a URI")))
            }
            _ => {}
        }
        problems
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings: AttestSettings = settings(ctx)?;
        let digest = ctx.require_digest()?;
        let key =
            signing_key(ctx, settings.key.as_deref(), settings.key_env.as_deref(), settings.password_env.as_deref())?;
        let artifact = &ctx.plan.artifact;
        let registry =
            ctx.capabilities.registry(&artifact.registry_url).map_err(|e| classify(e.is_transient(), chain(&e)))?;
        let image = registry.reference(&artifact.repository, "");
        let (predicate_type, predicate) = match &settings.predicate_step {
            Some(step) => {
                let outputs = ctx.outputs.get(step).cloned().ok_or_else(|| {
                    StepError::terminal(format!(
                        "step {} has no outputs of step {step} to attest (is it in `needs`, and did it succeed?)",
                        ctx.step
                    ))
                })?;
                let predicate_type =
                    settings.predicate_type.clone().unwrap_or_else(|| PROVENANCE_PREDICATE_TYPE.to_owned());
                (predicate_type, outputs)
            }
            None => (PROVENANCE_PREDICATE_TYPE.to_owned(), promotion_provenance(&promotion(ctx, &image, &digest))),
        };
        ctx.failpoint("before-side-effect");
        let outcome = attest_image(registry.as_ref(), &artifact.repository, &digest, &key, &predicate_type, predicate)
            .await
            .map_err(supply_chain_error)?;
        ctx.failpoint("after-side-effect");
        let (result, tag, manifest) = match outcome {
            AttestOutcome::Attached { tag, manifest } => ("attached", tag, Some(manifest.to_string())),
            AttestOutcome::AlreadyPresent { tag } => ("already-present", tag, None),
        };
        Ok(StepOutcome::Succeeded {
            outputs: json!({
                "image": registry.reference(&artifact.repository, digest.as_str()),
                "digest": digest.as_str(),
                "attestation_tag": tag,
                "attestation_manifest": manifest,
                "predicate_type": predicate_type,
                "key": key.public_key().id(),
                "result": result,
            }),
            pin_digest: None,
        })
    }
}

/// The facts of this run that its provenance records.
fn promotion(ctx: &StepContext, image: &str, digest: &crate::registry::Digest) -> Promotion {
    let plan = &ctx.plan;
    let event = &plan.event;
    let wire_name = |value: Value| value.as_str().unwrap_or_default().to_owned();
    let git_ref = match (event.ref_kind, &event.ref_name) {
        (Some(RefKind::Branch), Some(name)) => Some(format!("refs/heads/{name}")),
        (Some(RefKind::Tag), Some(name)) => Some(format!("refs/tags/{name}")),
        _ => None,
    };
    // Only github.com has a URL that follows from the repository name alone; a GitLab or
    // GitHub Enterprise host is not known here, and a wrong URL would be worse than none.
    let source_url = match event.forge {
        Forge::Github if !event.repo.is_empty() => Some(format!("https://github.com/{}", event.repo)),
        _ => None,
    };
    let gates: BTreeMap<String, Value> = plan
        .steps
        .iter()
        .filter(|step| step.kind == "gate" || step.kind.starts_with("gate-"))
        .filter_map(|step| {
            let outputs = ctx.outputs.get(&step.name)?;
            let verdict = outputs.get("verdict").unwrap_or(outputs).clone();
            Some((step.name.clone(), verdict))
        })
        .collect();
    Promotion {
        run_id: ctx.run_id.clone(),
        started_at: ctx.run_created_at,
        app: plan.app.clone(),
        environment: plan.target.environment.clone(),
        pipeline: plan.pipeline.clone(),
        trigger: plan.trigger.clone(),
        forge: wire_name(serde_json::to_value(event.forge).unwrap_or_default()),
        event_kind: wire_name(serde_json::to_value(event.kind).unwrap_or_default()),
        source_repo: event.repo.clone(),
        source_url,
        git_ref,
        commit: event.sha.clone(),
        actor: event.actor.clone(),
        image: image.to_owned(),
        digest: digest.clone(),
        tag: plan.target.tag.clone(),
        version: plan.version.clone(),
        gates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_together() {
        let step = Attest;
        assert!(step.check_config(&json!({"key": "k"})).is_empty());
        assert!(
            step.check_config(&json!({
                "key": "k",
                "predicate_step": "scan",
                "predicate_type": "https://cosign.sigstore.dev/attestation/vuln/v1",
            }))
            .is_empty()
        );
        let problems = step.check_config(&json!({"key": "k", "predicate_step": "scan"}));
        assert_eq!(problems[0].0, "predicate_type");
        let problems = step.check_config(&json!({"key": "k", "predicate_type": "https://x/y"}));
        assert!(problems[0].1.contains("predicate_step"), "{problems:?}");
        let problems = step.check_config(&json!({
            "key": "k", "predicate_step": "scan", "predicate_type": "vuln",
        }));
        assert!(problems[0].1.contains("not a URI"), "{problems:?}");
        // Both problems at once: no key, and a type without a step.
        assert_eq!(step.check_config(&json!({"predicate_type": "https://x/y"})).len(), 2);
    }
}
