//! Forges: where a promotion's change is reviewed and merged.

mod local;

pub use local::LocalForge;

use async_trait::async_trait;

use crate::model::ChangeRequest;

/// A change to review: a pushed branch and the text that explains it.
#[derive(Debug, Clone)]
pub struct ChangeRequestDraft {
    /// Repository URL.
    pub repo: String,
    /// Head branch (deterministic, so re-opening finds the same request).
    pub branch: String,
    /// Base branch.
    pub base: String,
    /// Head commit.
    pub head_commit: String,
    /// Title.
    pub title: String,
    /// Body (Markdown).
    pub body: String,
    /// Run that opens it.
    pub run_id: String,
}

/// A forge failed.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// The local forge's store failed.
    #[error("record change request for {branch}")]
    Store {
        /// Branch.
        branch: String,
        /// Cause.
        #[source]
        source: crate::error::StoreError,
    },
}

/// Opens change requests. Implementations must be idempotent per (repo, branch): opening the
/// same branch twice yields the same request, never a second one.
#[async_trait]
pub trait Forge: Send + Sync {
    /// Forge name (`local`, `github`, `gitlab`).
    fn name(&self) -> &'static str;
    /// Opens the change request for `draft.branch`, or finds the one already open.
    async fn open_change_request(
        &self,
        draft: &ChangeRequestDraft,
    ) -> Result<(ChangeRequest, bool), ForgeError>;
}
