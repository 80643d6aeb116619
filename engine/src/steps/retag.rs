//! `retag`: gives the pinned artifact its environment tag (`dev-sha-abc1234`), in the
//! artifact's own repository or in another repository or registry (dev registry → prod
//! registry), always under the same digest.
//!
//! Settings (`with:`), all optional:
//!
//! | setting | meaning |
//! |---|---|
//! | `registry` | destination registry, by its name in `registries:` (default: the artifact's) |
//! | `repository` | destination repository (default: the artifact's) |
//! | `attachments` | also bring the digest's `sha256-<hex>.sig` / `.att` tags along when they exist (default `true`) |
//!
//! How the digest moves is [`promote`]'s choice: inside its repository only the manifest is
//! written again; to another repository of the same registry blobs are mounted; to another
//! registry missing blobs are streamed and checked against their digests. Signatures and
//! attestations go first and the environment tag last, so the tag never points at an image
//! whose signatures are still on their way; a destination that already holds signatures of
//! its own keeps them, with the source's added.
//!
//! Idempotent: a tag already at the digest is success without a write, and attachments already
//! complete at the destination are not written again.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::sign::{parse_settings, settings, supply_chain_error};
use super::{Step, StepContext, StepError, StepOutcome, chain, classify};
use crate::registry::{Location, Registry, TagOutcome, promote, validate_repository};
use crate::supply_chain::copy_attachments;

/// See the module documentation.
pub struct Retag;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetagSettings {
    registry: Option<String>,
    repository: Option<String>,
    #[serde(default = "enabled")]
    attachments: bool,
}

fn enabled() -> bool {
    true
}

#[async_trait]
impl Step for Retag {
    fn kind(&self) -> &'static str {
        "retag"
    }

    fn summary(&self) -> &'static str {
        "tag the pinned digest for the environment, here or in another repository or registry (same digest)"
    }

    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        match parse_settings::<RetagSettings>(config) {
            Ok(settings) => check_destination(settings.registry.as_deref(), settings.repository.as_deref()),
            Err(problems) => problems,
        }
    }

    fn registry_references(&self, config: &Value) -> Vec<(String, String)> {
        parse_settings::<RetagSettings>(config)
            .ok()
            .and_then(|settings| settings.registry)
            .map(|name| vec![("registry".to_owned(), name)])
            .unwrap_or_default()
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings: RetagSettings = settings(ctx)?;
        let digest = ctx.require_digest()?;
        let artifact = &ctx.plan.artifact;
        let tag = &ctx.plan.target.tag;
        let source_registry =
            ctx.capabilities.registry(&artifact.registry_url).map_err(|e| classify(e.is_transient(), chain(&e)))?;
        let destination_registry = match &settings.registry {
            Some(name) => registry(ctx, name)?,
            None => source_registry.clone(),
        };
        let destination_repository = settings.repository.as_deref().unwrap_or(&artifact.repository);
        let source = Location::new(source_registry.as_ref(), &artifact.repository);
        let destination = Location::new(destination_registry.as_ref(), destination_repository);
        let elsewhere = source.registry.identity() != destination.registry.identity()
            || source.registry.repository_path(source.repository)
                != destination.registry.repository_path(destination.repository);

        ctx.failpoint("before-side-effect");
        let attachments = if settings.attachments && elsewhere {
            copy_attachments(&source, &destination, &digest).await.map_err(supply_chain_error)?
        } else {
            Vec::new()
        };
        let promotion = promote(&source, &destination, &digest, tag).await.map_err(|e| {
            classify(e.is_transient(), format!("promote {}: {}", destination.reference(tag), chain(&e)))
        })?;
        ctx.failpoint("after-side-effect");
        let (result, previous) = match promotion.outcome {
            TagOutcome::Created => ("created", None),
            TagOutcome::Moved { from } => ("moved", Some(from.as_str().to_string())),
            TagOutcome::AlreadyPresent => ("already-present", None),
        };
        Ok(StepOutcome::Succeeded {
            outputs: json!({
                "image": destination.reference(tag),
                "registry": settings.registry.as_deref().unwrap_or(&artifact.registry),
                "repository": destination_repository,
                "tag": tag,
                "digest": digest.as_str(),
                "result": result,
                "previous_digest": previous,
                "strategy": promotion.strategy.as_str(),
                "blobs_copied": promotion.blobs_copied,
                "bytes_copied": promotion.bytes_copied,
                "blobs_mounted": promotion.blobs_mounted,
                "attachments": attachments,
            }),
            pin_digest: None,
        })
    }
}

/// `check_config` rule shared with the steps that name a destination: a valid repository name,
/// and a registry name that is not blank (whether it exists is checked against `registries:`).
pub(super) fn check_destination(registry: Option<&str>, repository: Option<&str>) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if registry.is_some_and(|name| name.trim().is_empty()) {
        problems
            .push(("registry".to_owned(), "name a registry from `registries:`, or leave `registry` out".to_owned()));
    }
    if let Some(repository) = repository
        && let Err(error) = validate_repository(repository)
    {
        problems.push(("repository".to_owned(), error.to_string()));
    }
    problems
}

/// The registry named `name`: a configured one, or the run's artifact registry by the name
/// its plan recorded (so that a step run on its own, without the configuration, still reaches
/// the artifact's registry).
pub(super) fn registry(ctx: &StepContext, name: &str) -> Result<std::sync::Arc<dyn Registry>, StepError> {
    let url = match ctx.capabilities.registry_url(name) {
        Some(url) => url.to_owned(),
        None if name == ctx.plan.artifact.registry => ctx.plan.artifact.registry_url.clone(),
        None => {
            return Err(StepError::terminal(format!(
                "step {} names registry `{name}`, which is not in the configuration gantry runs with",
                ctx.step
            )));
        }
    };
    ctx.capabilities.registry(&url).map_err(|e| classify(e.is_transient(), chain(&e)))
}
