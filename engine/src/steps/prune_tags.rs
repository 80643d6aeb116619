//! `prune-tags`: retention. Keeps the environment's last `keep` tags of the app and deletes the
//! older ones gantry wrote, never taking along a digest another tag still points at.
//!
//! Settings (`with:`):
//!
//! | setting | meaning |
//! |---|---|
//! | `keep` | how many environment tags to keep, newest promotion first (at least 1; the tag of the running promotion counts) |
//! | `registry` | registry holding the tags, by its name in `registries:` (default: the artifact's; give the `retag` step's when it promotes elsewhere) |
//! | `repository` | repository holding the tags (default: the artifact's) |
//!
//! Which tags are the environment's comes from gantry's own history (the tags its succeeded
//! promotions of the app into the environment wrote, newest first), never from guessing at
//! tag names, so CI's tags and other environments' tags are never candidates. For each
//! expired tag:
//!
//! - when another tag of the repository (kept, another environment's, CI's) points at the same
//!   digest, only the tag is deleted and the image stays;
//! - otherwise the manifest is deleted by digest, which removes the expired tags pointing at
//!   it, and its `sha256-<hex>.sig` / `.att` tags go with it (unless something else names
//!   their manifests). The blobs are left to the registry's garbage collection.
//!
//! Idempotent: a tag already gone is not a candidate again. The registry must allow deletes
//! (`docker-registry`: `storage.delete.enabled: true`).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use serde::Deserialize;
use serde_json::{Value, json};

use super::retag::{check_destination, registry};
use super::sign::{parse_settings, settings};
use super::{Step, StepContext, StepError, StepOutcome, chain, classify};
use crate::registry::{Digest, Registry, RegistryError};
use crate::supply_chain::{attestation_tag, signature_tag};

/// Earlier promotions looked at; older tags were pruned by the runs of their time.
const HISTORY_LIMIT: u32 = 1000;
/// Tags resolved at the same time while finding which digests are still referenced.
const PARALLEL_LOOKUPS: usize = 8;

/// See the module documentation.
pub struct PruneTags;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneTagsSettings {
    keep: u32,
    registry: Option<String>,
    repository: Option<String>,
}

#[async_trait]
impl Step for PruneTags {
    fn kind(&self) -> &'static str {
        "prune-tags"
    }

    fn summary(&self) -> &'static str {
        "keep the environment's last N tags, delete older ones (never a digest another tag still names)"
    }

    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        match parse_settings::<PruneTagsSettings>(config) {
            Ok(settings) => {
                let mut problems = check_destination(settings.registry.as_deref(), settings.repository.as_deref());
                if settings.keep == 0 {
                    problems.push((
                        "keep".to_owned(),
                        "keep at least 1 tag: the running promotion's own tag is one of them".to_owned(),
                    ));
                }
                problems
            }
            Err(problems) => problems,
        }
    }

    fn registry_references(&self, config: &Value) -> Vec<(String, String)> {
        parse_settings::<PruneTagsSettings>(config)
            .ok()
            .and_then(|settings| settings.registry)
            .map(|name| vec![("registry".to_owned(), name)])
            .unwrap_or_default()
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings: PruneTagsSettings = settings(ctx)?;
        let history = ctx.capabilities.history().ok_or_else(|| {
            StepError::terminal(format!(
                "step {} needs gantry's promotion history, which only the server's store has (run it under `gantry serve`)",
                ctx.step
            ))
        })?;
        let plan = &ctx.plan;
        let past = history
            .promotions(&plan.app, &plan.environment, HISTORY_LIMIT)
            .await
            .map_err(|error| StepError::transient(format!("read the promotion history: {error}")))?;
        let mut newest_first: Vec<String> = vec![plan.target.tag.clone()];
        for promotion in past {
            if !newest_first.contains(&promotion.tag) {
                newest_first.push(promotion.tag);
            }
        }
        let keep = (settings.keep as usize).min(newest_first.len());
        let (kept, expired) = newest_first.split_at(keep);

        let registry = match &settings.registry {
            Some(name) => registry(ctx, name)?,
            None => ctx
                .capabilities
                .registry(&plan.artifact.registry_url)
                .map_err(|e| classify(e.is_transient(), chain(&e)))?,
        };
        let repository = settings.repository.as_deref().unwrap_or(&plan.artifact.repository);
        let failed = |e: RegistryError| classify(e.is_transient(), chain(&e));
        let existing = match registry.list_tags(repository).await {
            Ok(tags) => tags,
            Err(RegistryError::NotFound { .. }) => Vec::new(),
            Err(error) => return Err(failed(error)),
        };
        let candidates: BTreeSet<&str> =
            expired.iter().map(String::as_str).filter(|tag| existing.iter().any(|e| e == tag)).collect();

        let mut pruned = Pruned::default();
        if !candidates.is_empty() {
            ctx.failpoint("before-side-effect");
            let digests = resolve_all(registry.as_ref(), repository, &existing).await.map_err(failed)?;
            prune(registry.as_ref(), repository, &candidates, &digests, &mut pruned).await.map_err(failed)?;
            ctx.failpoint("after-side-effect");
        }
        Ok(StepOutcome::Succeeded {
            outputs: json!({
                "repository": registry.reference(repository, ""),
                "kept": kept,
                "deleted_tags": pruned.deleted_tags,
                "deleted_digests": pruned.deleted_digests,
                "untagged_only": pruned.untagged_only,
            }),
            pin_digest: None,
        })
    }
}

/// What pruning did.
#[derive(Debug, Default)]
struct Pruned {
    /// Every tag that is gone, attachments included.
    deleted_tags: Vec<String>,
    /// Manifests deleted by digest.
    deleted_digests: Vec<String>,
    /// Expired tags removed while their digest stays for another tag, as `tag: digest kept for other`.
    untagged_only: Vec<String>,
}

/// Where every tag of the repository points (tags deleted meanwhile are left out).
async fn resolve_all(
    registry: &dyn Registry,
    repository: &str,
    tags: &[String],
) -> Result<BTreeMap<String, Digest>, RegistryError> {
    let lookups: Vec<_> = tags
        .iter()
        .map(|tag| async move { registry.resolve(repository, tag).await.map(|digest| (tag.clone(), digest)) })
        .collect();
    let resolved: Vec<(String, Option<Digest>)> =
        stream::iter(lookups).buffer_unordered(PARALLEL_LOOKUPS).try_collect().await?;
    Ok(resolved.into_iter().filter_map(|(tag, digest)| Some((tag, digest?))).collect())
}

/// Deletes the `candidates` (tags of the repository) by the rules of the module documentation.
async fn prune(
    registry: &dyn Registry,
    repository: &str,
    candidates: &BTreeSet<&str>,
    digests: &BTreeMap<String, Digest>,
    pruned: &mut Pruned,
) -> Result<(), RegistryError> {
    // Tags that stay, by digest: what keeps a digest alive.
    let staying = |digest: &Digest, leaving: &BTreeSet<&str>| -> Vec<String> {
        digests
            .iter()
            .filter(|(tag, at)| *at == digest && !leaving.contains(tag.as_str()))
            .map(|(tag, _)| tag.clone())
            .collect()
    };
    let mut by_digest: BTreeMap<&Digest, Vec<&str>> = BTreeMap::new();
    for tag in candidates {
        if let Some(digest) = digests.get(*tag) {
            by_digest.entry(digest).or_default().push(tag);
        }
    }
    for (digest, tags) in by_digest {
        let others = staying(digest, candidates);
        if let Some(other) = others.first() {
            for tag in tags {
                registry.delete_tag(repository, tag).await?;
                pruned.deleted_tags.push(tag.to_owned());
                pruned.untagged_only.push(format!("{tag}: {digest} kept for {other}"));
            }
            continue;
        }
        // Nothing else names the digest: the manifest goes, and its expired tags with it.
        registry.delete_manifest(repository, digest).await?;
        pruned.deleted_digests.push(digest.to_string());
        pruned.deleted_tags.extend(tags.iter().map(|tag| (*tag).to_owned()));
        for attachment in [signature_tag(digest), attestation_tag(digest)] {
            let Some(attached) = digests.get(&attachment) else {
                continue;
            };
            let leaving: BTreeSet<&str> = candidates.iter().copied().chain([attachment.as_str()]).collect();
            if staying(attached, &leaving).is_empty() {
                registry.delete_manifest(repository, attached).await?;
                pruned.deleted_digests.push(attached.to_string());
            } else {
                registry.delete_tag(repository, &attachment).await?;
            }
            pruned.deleted_tags.push(attachment);
        }
    }
    Ok(())
}
