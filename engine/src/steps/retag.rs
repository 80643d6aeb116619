//! `retag`: gives the pinned artifact its environment tag (`dev-sha-abc1234`) in the registry.
//!
//! Manifest only: the manifest is written again by digest under the new tag in the same
//! repository, so no layer moves and the digest cannot change. Idempotent: a tag already at
//! the digest is success without a write.

use async_trait::async_trait;
use serde_json::json;

use super::{Step, StepContext, StepError, StepOutcome, chain, classify};
use crate::registry::TagOutcome;

/// See the module documentation.
pub struct Retag;

#[async_trait]
impl Step for Retag {
    fn kind(&self) -> &'static str {
        "retag"
    }

    fn summary(&self) -> &'static str {
        "tag the pinned digest for the environment (manifest write, no layer copy)"
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let digest = ctx.require_digest()?;
        let artifact = &ctx.plan.artifact;
        let tag = &ctx.plan.target.tag;
        let registry =
            ctx.capabilities.registry(&artifact.registry_url).map_err(|e| classify(e.is_transient(), chain(&e)))?;
        ctx.failpoint("before-side-effect");
        let outcome = registry
            .tag(&artifact.repository, &digest, tag)
            .await
            .map_err(|e| classify(e.is_transient(), chain(&e)))?;
        ctx.failpoint("after-side-effect");
        let (result, previous) = match outcome {
            TagOutcome::Created => ("created", None),
            TagOutcome::Moved { from } => ("moved", Some(from.as_str().to_string())),
            TagOutcome::AlreadyPresent => ("already-present", None),
        };
        Ok(StepOutcome::Succeeded {
            outputs: json!({
                "image": registry.reference(&artifact.repository, tag),
                "tag": tag,
                "digest": digest.as_str(),
                "result": result,
                "previous_digest": previous,
            }),
            pin_digest: None,
        })
    }
}
