//! Intake: turns stored webhook deliveries into runs.
//!
//! The HTTP handler only verifies and stores a delivery; this loop parses it, matches the
//! triggers and creates the runs in the same transaction that marks the delivery processed,
//! so a crash at any point neither loses a delivery nor starts its promotions twice.

use std::sync::Arc;

use gantry_webhooks::{Parsed, github};
use gantry_workflows::Config;

use crate::error::StoreError;
use crate::store::{DeliveryStatus, Store};

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intake {
    /// Inbox id.
    pub delivery: i64,
    /// Final status.
    pub status: DeliveryStatus,
    /// Runs created.
    pub runs: Vec<String>,
}

/// Processes every received delivery; returns what happened to each.
pub async fn process_inbox(
    store: &Arc<dyn Store>,
    config: &Config,
) -> Result<Vec<Intake>, StoreError> {
    let mut done = Vec::new();
    loop {
        let deliveries = store.received_deliveries(64).await?;
        if deliveries.is_empty() {
            return Ok(done);
        }
        for delivery in deliveries {
            let parsed = match delivery.source.as_str() {
                "github" => {
                    github::parse(&delivery.event_type, &delivery.body).map_err(|e| e.to_string())
                }
                other => Err(format!("no parser for source {other}")),
            };
            let (status, detail, plans) = match parsed {
                Ok(Parsed::Event(event)) => match gantry_workflows::plan(config, &event) {
                    Ok(plans) if plans.is_empty() => (
                        DeliveryStatus::Processed,
                        Some(format!(
                            "no trigger matches {:?} {} of {}",
                            event.kind,
                            event.ref_name.as_deref().unwrap_or("-"),
                            event.repo
                        )),
                        plans,
                    ),
                    Ok(plans) => (DeliveryStatus::Processed, None, plans),
                    Err(error) => (
                        DeliveryStatus::Failed,
                        Some(format!("plan: {error}")),
                        Vec::new(),
                    ),
                },
                Ok(Parsed::Ignored { reason, .. }) => {
                    (DeliveryStatus::Ignored, Some(reason), Vec::new())
                }
                Err(error) => (DeliveryStatus::Failed, Some(error), Vec::new()),
            };
            let runs = store
                .complete_delivery(delivery.id, status, detail.as_deref(), &plans)
                .await?;
            for run in &runs {
                tracing::info!(run, delivery = %delivery.delivery_id, "run created");
            }
            done.push(Intake {
                delivery: delivery.id,
                status,
                runs,
            });
        }
    }
}
