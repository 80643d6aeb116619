//! `remove-preview`: removes a preview environment whose branch was deleted, through a change
//! request in its config repo.
//!
//! The planner gives a deleted branch's preview a run with this one step; pipelines do not
//! list it. The step commits the removal of the preview's directory on
//! `gantry/<preview>/<app>/remove-<run>`, pushes that branch and opens (or finds) its change
//! request. Idempotent like `update-config` and `open-pr` together: the commit time is the
//! run's creation time, the branch name is fixed for the run, a push of a branch already at the
//! commit changes nothing, and the forge finds the request already open for the branch. A
//! preview that is not (or no longer) in the config repo leaves nothing to do.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Step, StepContext, StepError, StepOutcome, blocking, chain, classify};
use crate::forge::ChangeRequestDraft;
use crate::git::PushOutcome;

/// See the module documentation.
pub struct RemovePreview;

/// What the git half of the step found or did.
enum Removal {
    /// The directory is not on the base branch.
    Absent { base_commit: String },
    /// The removal is committed and pushed.
    Pushed { base_commit: String, files: usize, push: PushOutcome, diff_stat: String },
}

#[async_trait]
impl Step for RemovePreview {
    fn kind(&self) -> &'static str {
        gantry_workflows::REMOVE_PREVIEW_KIND
    }

    fn summary(&self) -> &'static str {
        "remove a deleted branch's preview directory from the config repo, through a change request"
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let plan = &ctx.plan;
        let target = plan.target.clone();
        let preview = target.preview.clone().ok_or_else(|| {
            StepError::terminal(format!(
                "step {} removes a preview, but run {} promotes into {}, which is none",
                ctx.step, ctx.run_id, target.environment
            ))
        })?;
        let branch = removal_branch(&target.environment, &plan.app, &ctx.run_id);
        let time = DateTime::<Utc>::from_timestamp_millis(ctx.run_created_at).unwrap_or_else(Utc::now);
        let message = format!(
            "remove preview {} of {}\n\nBranch {} of {} was deleted; its preview directory {} goes with it.\n\nRun: {}\n",
            target.environment, plan.app, preview.branch, plan.event.repo, preview.directory, ctx.run_id
        );
        let capabilities = ctx.capabilities.clone();
        let (repo_url, base, directory, push_branch) =
            (target.repo_url.clone(), target.branch.clone(), preview.directory.clone(), branch.clone());
        let removal = blocking(move || {
            let git = |e: crate::git::GitError| classify(e.is_transient(), chain(&e));
            let repo = capabilities.env_repo(&repo_url).map_err(git)?;
            let base_commit = repo
                .branch_head(&base)
                .map_err(git)?
                .ok_or_else(|| StepError::terminal(format!("branch {base} does not exist in {repo_url}")))?;
            let Some(files) = repo.read_dir(&base_commit, &directory).map_err(git)? else {
                return Ok(Removal::Absent { base_commit });
            };
            let commit = repo
                .commit_changes(
                    &base_commit,
                    &[],
                    &[directory.as_str()],
                    &message,
                    capabilities.committer(),
                    time,
                    &push_branch,
                )
                .map_err(git)?;
            let diff = repo.diff(&base_commit, &commit).map_err(git)?;
            let push = repo.push_branch(&commit, &push_branch).map_err(git)?;
            Ok(Removal::Pushed { base_commit, files: files.len(), push, diff_stat: removed_files(&diff) })
        })
        .await?;
        let (base_commit, files, push, removed) = match removal {
            Removal::Absent { base_commit } => {
                return Ok(StepOutcome::Succeeded {
                    outputs: json!({
                        "removed": false,
                        "directory": preview.directory,
                        "base_commit": base_commit,
                        "reason": format!(
                            "{} is not in {} at {}: the preview was never merged, or is gone already",
                            preview.directory, target.repo_url, target.branch
                        ),
                    }),
                    pin_digest: None,
                });
            }
            Removal::Pushed { base_commit, files, push, diff_stat } => (base_commit, files, push, diff_stat),
        };
        ctx.failpoint("after-side-effect");
        let (push, head) = match push {
            PushOutcome::Created { commit } => ("created", commit),
            PushOutcome::Updated { commit, .. } => ("updated", commit),
            PushOutcome::Unchanged { commit } => ("unchanged", commit),
        };
        let handle =
            ctx.capabilities.forge_for(&target.repo_url, target.forge).map_err(|e| StepError::terminal(chain(&e)))?;
        let title = format!("Remove preview {} of {}", target.environment, plan.app);
        let body = format!(
            "## Remove preview `{}` of `{}`\n\n\
             Branch `{}` of `{}` was deleted, so its preview environment goes too: this removes `{}/` \
             ({files} file{}).\n\n```\n{removed}```\n{}",
            target.environment,
            plan.app,
            preview.branch,
            plan.event.repo,
            preview.directory,
            if files == 1 { "" } else { "s" },
            ctx.capabilities.run_url(&ctx.run_id).map(|url| format!("\nRun: {url}\n")).unwrap_or_default(),
        );
        let draft = ChangeRequestDraft {
            repo: handle.repo.clone(),
            branch: branch.clone(),
            base: target.branch.clone(),
            head_commit: head.clone(),
            title,
            body,
            run_id: ctx.run_id.clone(),
            review: Default::default(),
        };
        let (request, opened) = handle.forge.open_change_request(&draft).await.map_err(|e| match e.is_transient() {
            true => StepError::Transient { message: chain(&e), retry_after: e.retry_after() },
            false => StepError::terminal(chain(&e)),
        })?;
        Ok(StepOutcome::Succeeded {
            outputs: json!({
                "removed": true,
                "directory": preview.directory,
                "files": files,
                "base_commit": base_commit,
                "forge": handle.forge.name(),
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

/// The branch a preview's removal lives on: `gantry/<preview>/<app>/remove-<run12>`. The run's
/// id (its random tail) keeps a preview that is created and removed again apart from the last
/// time, while a retried or resumed run finds its own branch.
pub fn removal_branch(preview: &str, app: &str, run_id: &str) -> String {
    let hex: String = run_id.chars().filter(char::is_ascii_hexdigit).collect();
    let tail = &hex[hex.len().saturating_sub(12)..];
    format!("gantry/{preview}/{app}/remove-{tail}")
}

/// The `--- a/<path>` lines of a diff that deletes files, one removed path a line.
fn removed_files(diff: &str) -> String {
    diff.lines().filter_map(|line| line.strip_prefix("--- a/")).fold(String::new(), |mut text, path| {
        text.push_str(path);
        text.push('\n');
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_branches_are_per_run_and_valid() {
        let branch = removal_branch("dev-feature-login", "shop", "0190f3a2-7b1c-7d4e-9f00-1234567890ab");
        assert_eq!(branch, "gantry/dev-feature-login/shop/remove-1234567890ab");
        assert_ne!(branch, removal_branch("dev-feature-login", "shop", "0190f3a2-7b1c-7d4e-9f00-ba0987654321"));
    }

    #[test]
    fn removed_files_are_listed_from_the_diff() {
        let diff = "diff --git a/p/x.yaml b/p/x.yaml\ndeleted file mode 100644\n--- a/p/x.yaml\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n";
        assert_eq!(removed_files(diff), "p/x.yaml\n");
    }
}
