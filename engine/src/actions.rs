//! Operator actions that take more than one store call: rolling back.

use std::sync::Arc;

use crate::error::StoreError;
use crate::model::now_millis;
use crate::store::{Hold, NewRun, RunOrigin, Store};

/// What a rollback started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// The run that promotes the earlier digest again.
    pub run_id: String,
    /// The digest rolled back to.
    pub digest: String,
    /// The digest rolled back from.
    pub from_digest: String,
}

/// Promotes the digest that was in `environment` before the current one again, and holds the
/// app in that environment so that the next automatic promotion does not undo the rollback
/// (release the hold to resume promotions).
pub async fn rollback(
    store: &Arc<dyn Store>,
    app: &str,
    environment: &str,
    reason: &str,
) -> Result<Rollback, StoreError> {
    let runs = store.succeeded_runs(app, environment, 50).await?;
    let current = runs
        .first()
        .and_then(|r| r.digest.clone())
        .ok_or_else(|| StoreError::Conflict { message: format!("{app} was never promoted into {environment}") })?;
    let previous = runs.iter().find(|r| r.digest.as_deref().is_some_and(|d| d != current)).ok_or_else(|| {
        StoreError::Conflict { message: format!("no earlier digest of {app} in {environment} to roll back to") }
    })?;
    let digest = previous.digest.clone().unwrap_or_default();
    let mut plan = previous.plan.clone();
    plan.trigger = format!("rollback from {current}");
    store
        .hold(&Hold {
            environment: environment.to_string(),
            app: Some(app.to_string()),
            reason: format!("rolled back to {digest}: {reason}"),
            digest: Some(digest.clone()),
            created_at: now_millis(),
        })
        .await?;
    let run_id = store
        .create_run(NewRun { plan: &plan, digest: Some(&digest), origin: RunOrigin::Rollback, bypass_hold: true })
        .await?
        .ok_or_else(|| StoreError::Conflict { message: "the rollback run could not be created".into() })?;
    Ok(Rollback { run_id, digest, from_digest: current })
}
