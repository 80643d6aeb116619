//! The `local` forge: a plain git remote with no review API. The pushed branch is the change;
//! gantry records the request itself so it can be listed, approved and merged later.
//!
//! Merging lands the change on the base branch linearly (fast-forward, or replayed onto a base
//! that moved, see [`crate::git::EnvRepo::land`]); a local forge has no merge commits, so the
//! merge method is not used.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::{
    ChangeRequestDraft, ChangeRequestState, ChangeRequestStatus, CommitStatus, Forge, ForgeError, MergeMethod,
};
use crate::git::EnvRepo;
use crate::model::ChangeRequest;
use crate::repos::RepoCatalog;
use crate::store::{NewChangeRequest, Store};

/// How often landing a change is tried when the base branch keeps moving under it.
const LAND_ATTEMPTS: u32 = 5;

/// Change requests kept in gantry's store.
pub struct LocalForge {
    store: Arc<dyn Store>,
    mirrors: Option<PathBuf>,
    repos: Option<Arc<RepoCatalog>>,
}

impl LocalForge {
    /// A local forge recording into `store`. It can open and track change requests; merging
    /// needs [`LocalForge::with_mirrors`].
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, mirrors: None, repos: None }
    }

    /// The same forge, merging through warm mirrors kept under `cache_dir` (the directory
    /// the engine's other git work uses, so mirrors are shared).
    #[must_use]
    pub fn with_mirrors(mut self, cache_dir: PathBuf) -> Self {
        self.mirrors = Some(cache_dir);
        self
    }

    /// The same forge, pushing merges with the credentials `repos` holds for each repository
    /// (an https token, an ssh key).
    #[must_use]
    pub fn with_repos(mut self, repos: Arc<RepoCatalog>) -> Self {
        self.repos = Some(repos);
        self
    }

    fn store_error(branch: &str) -> impl FnOnce(crate::error::StoreError) -> ForgeError + '_ {
        move |source| ForgeError::Store { branch: branch.to_owned(), source: Box::new(source) }
    }

    async fn current(&self, request: &ChangeRequest) -> Result<ChangeRequest, ForgeError> {
        self.store
            .find_change_request(self.name(), &request.repo, &request.branch)
            .await
            .map_err(Self::store_error(&request.branch))?
            .ok_or_else(|| ForgeError::NotFound {
                forge: "local",
                repo: request.repo.clone(),
                branch: request.branch.clone(),
            })
    }
}

fn status_of(request: &ChangeRequest) -> ChangeRequestStatus {
    let state = match request.state.as_str() {
        "merged" => ChangeRequestState::Merged,
        "closed" => ChangeRequestState::Closed,
        _ => ChangeRequestState::Open,
    };
    ChangeRequestStatus {
        id: request.id,
        state,
        head_commit: request.head_commit.clone(),
        // A merged local request records the commit that landed as its head.
        merge_commit: (state == ChangeRequestState::Merged).then(|| request.head_commit.clone()),
        approved: None,
        checks: None,
        url: None,
    }
}

#[async_trait]
impl Forge for LocalForge {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn find_change_request(&self, repo: &str, branch: &str) -> Result<Option<ChangeRequest>, ForgeError> {
        self.store.find_change_request(self.name(), repo, branch).await.map_err(Self::store_error(branch))
    }

    async fn open_change_request(&self, draft: &ChangeRequestDraft) -> Result<(ChangeRequest, bool), ForgeError> {
        self.store
            .upsert_change_request(NewChangeRequest {
                forge: self.name(),
                repo: &draft.repo,
                branch: &draft.branch,
                base: &draft.base,
                head_commit: &draft.head_commit,
                title: &draft.title,
                body: &draft.body,
                run_id: &draft.run_id,
            })
            .await
            .map_err(|source| ForgeError::Store { branch: draft.branch.clone(), source: Box::new(source) })
    }

    async fn change_request_status(&self, request: &ChangeRequest) -> Result<ChangeRequestStatus, ForgeError> {
        Ok(status_of(&self.current(request).await?))
    }

    async fn merge_change_request(
        &self,
        request: &ChangeRequest,
        _method: MergeMethod,
    ) -> Result<ChangeRequestStatus, ForgeError> {
        let current = self.current(request).await?;
        match current.state.as_str() {
            "merged" => return Ok(status_of(&current)),
            "closed" => {
                return Err(ForgeError::NotMergeable {
                    forge: "local",
                    operation: "merge change request".into(),
                    message: format!("change request {} is closed", current.id),
                });
            }
            _ => {}
        }
        if current.head_commit != request.head_commit {
            return Err(ForgeError::Conflict {
                forge: "local",
                operation: "merge change request".into(),
                message: format!(
                    "the branch moved to {} since {} was reviewed",
                    current.head_commit, request.head_commit
                ),
            });
        }
        let Some(mirrors) = self.mirrors.clone() else {
            return Err(ForgeError::Setup {
                forge: "local",
                reason: "merging needs a mirror directory (LocalForge::with_mirrors)".into(),
            });
        };
        let (repo, branch, base, head) =
            (current.repo.clone(), current.branch.clone(), current.base.clone(), current.head_commit.clone());
        let git_error = {
            let (branch, base) = (branch.clone(), base.clone());
            move |source| ForgeError::Git { branch, base, source: Box::new(source) }
        };
        let repos = self.repos.clone();
        let landed = tokio::task::spawn_blocking(move || {
            let env_repo = match &repos {
                Some(repos) => repos.open(&mirrors, &repo)?,
                None => EnvRepo::open(&mirrors, &repo)?,
            };
            env_repo.land(&head, &base, LAND_ATTEMPTS)
        })
        .await
        .map_err(|join| ForgeError::Setup { forge: "local", reason: format!("merge work panicked: {join}") })?
        .map_err(git_error)?;
        self.store
            .set_change_request_state(current.id, ChangeRequestState::Merged.as_str(), Some(landed.commit()))
            .await
            .map_err(Self::store_error(&branch))?;
        Ok(status_of(&self.current(&current).await?))
    }

    async fn set_commit_status(&self, _repo: &str, _commit: &str, _status: &CommitStatus) -> Result<(), ForgeError> {
        // A plain git remote has nowhere to show statuses; the status page shows the run.
        Ok(())
    }
}
