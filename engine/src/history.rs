//! What was promoted before: the one read-only view of the store that steps may use, through
//! [`crate::Capabilities::history`]. Retention (`prune-tags`) needs to know which environment
//! tags gantry wrote, newest first; registries cannot say when a tag was written.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::store::Store;

/// One earlier promotion of an app into an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastPromotion {
    /// The environment tag the run gave the artifact.
    pub tag: String,
    /// The digest it promoted, when the run pinned one.
    pub digest: Option<String>,
}

/// Earlier promotions, newest first.
#[async_trait]
pub trait PromotionHistory: Send + Sync {
    /// The last `limit` succeeded promotions of `app` into `environment`, newest first.
    async fn promotions(&self, app: &str, environment: &str, limit: u32) -> Result<Vec<PastPromotion>, StoreError>;
}

/// The history kept by a [`Store`]: its succeeded runs.
pub struct StoreHistory {
    store: Arc<dyn Store>,
}

impl StoreHistory {
    /// The history of the runs in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl PromotionHistory for StoreHistory {
    async fn promotions(&self, app: &str, environment: &str, limit: u32) -> Result<Vec<PastPromotion>, StoreError> {
        let runs = self.store.succeeded_runs(app, environment, limit).await?;
        Ok(runs.into_iter().map(|run| PastPromotion { tag: run.plan.target.tag, digest: run.digest }).collect())
    }
}
