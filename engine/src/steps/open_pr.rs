//! `open-pr`: pushes the promotion branch and opens (or finds) its change request.
//!
//! Idempotent by construction: the branch name is deterministic, a push of a branch already
//! at the commit (or at a commit with the same tree) changes nothing, and the forge returns
//! the request already open for the branch instead of opening a second one.

use async_trait::async_trait;
use serde_json::json;

use super::{Step, StepContext, StepError, StepOutcome, blocking, chain, classify};
use crate::forge::ChangeRequestDraft;
use crate::git::PushOutcome;

/// See the module documentation.
pub struct OpenPr;

#[async_trait]
impl Step for OpenPr {
    fn kind(&self) -> &'static str {
        "open-pr"
    }

    fn summary(&self) -> &'static str {
        "push the promotion branch and open its change request on the environment's forge"
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let change = ctx
            .outputs
            .values()
            .find(|o| o.get("branch").is_some() && o.get("changed").is_some())
            .cloned()
            .ok_or_else(|| {
                StepError::terminal(format!(
                    "step {} needs an update-config step before it (add it to `needs`)",
                    ctx.step
                ))
            })?;
        let text = |key: &str| change.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let branch = text("branch");
        if change.get("changed") == Some(&json!(false)) {
            return Ok(StepOutcome::Succeeded {
                outputs: json!({ "opened": false, "reason": "the environment already runs this tag" }),
                pin_digest: None,
            });
        }
        let (commit, repo_url, base, diff) =
            (text("commit"), ctx.plan.target.repo_url.clone(), text("base"), text("diff"));
        let capabilities = ctx.capabilities.clone();
        let (push_branch, push_commit) = (branch.clone(), commit.clone());
        let pushed = blocking(move || {
            let repo = capabilities.env_repo(&repo_url).map_err(|e| classify(e.is_transient(), chain(&e)))?;
            repo.push_branch(&push_commit, &push_branch).map_err(|e| classify(e.is_transient(), chain(&e)))
        })
        .await?;
        ctx.failpoint("after-side-effect");
        let (push, head) = match pushed {
            PushOutcome::Created { commit } => ("created", commit),
            PushOutcome::Updated { commit, .. } => ("updated", commit),
            PushOutcome::Unchanged { commit } => ("unchanged", commit),
        };
        let plan = &ctx.plan;
        let data = json!({
            "app": plan.app,
            "environment": plan.target.environment,
            "version": plan.version,
            "tag": plan.target.tag,
            "digest": ctx.digest,
            "image": format!("{}@{}", plan.artifact.repository, ctx.digest.as_deref().unwrap_or_default()),
            "source_repo": plan.event.repo,
            "sha": plan.event.sha,
            "trigger": plan.trigger,
            "diff": diff.trim_end(),
            "run_url": ctx.capabilities.run_url(&ctx.run_id),
        });
        let templates = ctx.capabilities.templates();
        let render =
            |name: &str| templates.render(name, &data).map_err(|e| StepError::terminal(format!("render {name}: {e}")));
        let draft = ChangeRequestDraft {
            repo: ctx.capabilities.repo_url(&plan.target.repo_url),
            branch: branch.clone(),
            base,
            head_commit: head.clone(),
            title: render("pr_title")?.trim().to_string(),
            body: render("pr_body")?,
            run_id: ctx.run_id.clone(),
            review: Default::default(),
        };
        let forge = ctx.capabilities.forge();
        let (request, opened) = forge.open_change_request(&draft).await.map_err(|e| match e.is_transient() {
            true => StepError::Transient { message: chain(&e), retry_after: e.retry_after() },
            false => StepError::terminal(chain(&e)),
        })?;
        Ok(StepOutcome::Succeeded {
            outputs: json!({
                "forge": forge.name(),
                "branch": branch,
                "commit": head,
                "push": push,
                "change_request": request.id,
                "opened": opened,
                "title": request.title,
            }),
            pin_digest: None,
        })
    }
}
