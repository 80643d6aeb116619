//! `update-config`: edits the environment's config repo so it deploys the new tag.
//!
//! The file is edited in place of the one scalar that holds the tag (a kustomization's
//! `images[].newTag`, or a YAML path such as `image.tag`), keeping comments, quoting and
//! layout, so the diff is the changed line only. The commit is made in gantry's warm mirror
//! on the promotion branch, not pushed (that is `open-pr`'s job). The commit time is the run's
//! creation time, so a re-run after a crash makes the identical commit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Step, StepContext, StepError, StepOutcome, blocking, chain, classify, promotion_branch};
use crate::edit;
use gantry_workflows::spans::YamlPath;

/// See the module documentation.
pub struct UpdateConfig;

#[async_trait]
impl Step for UpdateConfig {
    fn kind(&self) -> &'static str {
        "update-config"
    }

    fn summary(&self) -> &'static str {
        "edit the environment's config file to the new tag, as a one-line commit on the promotion branch"
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let digest = ctx.require_digest()?;
        let plan = &ctx.plan;
        let target = plan.target.clone();
        let branch = promotion_branch(&target.environment, &plan.app, &digest);
        let time = DateTime::<Utc>::from_timestamp_millis(ctx.run_created_at).unwrap_or_else(Utc::now);
        let message = ctx
            .capabilities
            .templates()
            .render(
                "commit_message",
                &json!({
                    "app": plan.app,
                    "environment": target.environment,
                    "tag": target.tag,
                    "digest": digest.as_str(),
                    "source_repo": plan.event.repo,
                    "sha": plan.event.sha,
                    "trigger": plan.trigger,
                    "run_id": ctx.run_id,
                }),
            )
            .map_err(|e| StepError::terminal(format!("render commit message: {e}")))?;
        let capabilities = ctx.capabilities.clone();
        let after_commit = format!("after-side-effect:{}", ctx.step);
        blocking(move || {
            let repo = capabilities.env_repo(&target.repo_url).map_err(|e| classify(e.is_transient(), chain(&e)))?;
            let base_commit =
                repo.branch_head(&target.branch).map_err(|e| classify(e.is_transient(), chain(&e)))?.ok_or_else(
                    || StepError::terminal(format!("branch {} does not exist in {}", target.branch, target.repo_url)),
                )?;
            let content = repo
                .read_file(&base_commit, &target.path)
                .map_err(|e| classify(e.is_transient(), chain(&e)))?
                .ok_or_else(|| {
                    StepError::terminal(format!(
                        "{} does not exist in {} at {}",
                        target.path, target.repo_url, target.branch
                    ))
                })?;
            let text = String::from_utf8(content)
                .map_err(|_| StepError::terminal(format!("{} is not UTF-8 text", target.path)))?;
            let edited = match &target.yaml_path {
                Some(path) => {
                    let path =
                        YamlPath::parse(path).map_err(|e| StepError::terminal(format!("yaml_path {path}: {e}")))?;
                    edit::set_scalar(&text, &path, &target.tag)
                }
                None => edit::set_kustomize_image(&text, &target.image_name, Some(&target.tag), None),
            }
            .map_err(|e| StepError::terminal(format!("edit {}: {e}", target.path)))?;
            let mut outputs = json!({
                "repo": target.repo_url,
                "base": target.branch,
                "base_commit": base_commit,
                "path": target.path,
                "branch": branch,
            });
            if edited == text {
                outputs["changed"] = json!(false);
                return Ok(StepOutcome::Succeeded { outputs, pin_digest: None });
            }
            let commit = repo
                .commit_files(
                    &base_commit,
                    &[(target.path.as_str(), edited.as_bytes())],
                    &message,
                    capabilities.committer(),
                    time,
                    &branch,
                )
                .map_err(|e| classify(e.is_transient(), chain(&e)))?;
            crate::failpoint::hit(&after_commit);
            let diff = repo.diff(&base_commit, &commit).map_err(|e| classify(e.is_transient(), chain(&e)))?;
            outputs["changed"] = json!(true);
            outputs["commit"] = json!(commit);
            outputs["diff"] = json!(diff);
            Ok(StepOutcome::Succeeded { outputs, pin_digest: None })
        })
        .await
    }
}
