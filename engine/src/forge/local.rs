//! The `local` forge: a plain git remote with no review API. The pushed branch is the change;
//! gantry records the request itself so it can be listed, approved and merged later.

use std::sync::Arc;

use async_trait::async_trait;

use super::{ChangeRequestDraft, Forge, ForgeError};
use crate::model::ChangeRequest;
use crate::store::{NewChangeRequest, Store};

/// Change requests kept in gantry's store.
pub struct LocalForge {
    store: Arc<dyn Store>,
}

impl LocalForge {
    /// A local forge recording into `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Forge for LocalForge {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn open_change_request(
        &self,
        draft: &ChangeRequestDraft,
    ) -> Result<(ChangeRequest, bool), ForgeError> {
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
            .map_err(|source| ForgeError::Store {
                branch: draft.branch.clone(),
                source,
            })
    }
}
