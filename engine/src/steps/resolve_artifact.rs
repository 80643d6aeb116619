//! `resolve-artifact`: finds the image CI pushed for the event and pins it by digest.
//!
//! The image is looked up under the trigger's artifact tag (e.g. `sha-{sha7}`). When CI has
//! not pushed it yet, the step waits — polling with growing intervals, holding no worker —
//! until the trigger's `artifact_wait` runs out, then fails with a clear message. Once found,
//! the digest is pinned on the run: every later step promotes exactly that digest, even if
//! the CI tag moves afterwards.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::{Step, StepContext, StepError, StepOutcome, chain, classify};
use crate::model::now_millis;

/// See the module documentation.
pub struct ResolveArtifact;

const FIRST_POLL: Duration = Duration::from_millis(500);
const MAX_POLL: Duration = Duration::from_secs(15);

#[async_trait]
impl Step for ResolveArtifact {
    fn kind(&self) -> &'static str {
        "resolve-artifact"
    }

    fn summary(&self) -> &'static str {
        "find the image CI pushed for the event and pin it by digest, waiting for CI if needed"
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let artifact = &ctx.plan.artifact;
        let registry =
            ctx.capabilities.registry(&artifact.registry_url).map_err(|e| classify(e.is_transient(), chain(&e)))?;
        let reference = registry.reference(&artifact.repository, &artifact.tag);
        if let Some(digest) = &ctx.digest {
            // Pinned by an earlier attempt: never re-resolve, the tag may have moved since.
            return Ok(found(&reference, digest));
        }
        let resolved = registry
            .resolve(&artifact.repository, &artifact.tag)
            .await
            .map_err(|e| classify(e.is_transient(), chain(&e)))?;
        if let Some(digest) = resolved {
            return Ok(found(&reference, digest.as_str()));
        }
        let waited = Duration::from_millis((now_millis() - ctx.run_created_at).max(0) as u64);
        let limit = Duration::from_millis(ctx.plan.artifact_wait_ms);
        if waited >= limit {
            return Err(StepError::terminal(format!(
                "artifact {reference} did not appear within {}s: CI has not pushed the image for {} (check the CI run, or the trigger's artifact_tag)",
                limit.as_secs(),
                ctx.plan.event.short_sha().unwrap_or("this commit"),
            )));
        }
        let backoff = FIRST_POLL.saturating_mul(1 << ctx.attempt.saturating_sub(1).min(8)).min(MAX_POLL);
        Ok(StepOutcome::Waiting {
            retry_in: backoff.min(limit - waited),
            wake_on: None,
            reason: format!("CI to push {reference}"),
            progress: Some(json!({ "image": reference, "waited_ms": waited.as_millis() as u64 })),
        })
    }
}

fn found(reference: &str, digest: &str) -> StepOutcome {
    StepOutcome::Succeeded {
        outputs: json!({ "image": reference, "digest": digest }),
        pin_digest: Some(digest.to_string()),
    }
}
