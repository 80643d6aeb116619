//! Intake: turns stored webhook deliveries into runs.
//!
//! The HTTP handler only verifies and stores a delivery; this loop parses it, matches the
//! triggers and creates the runs in the same transaction that marks the delivery processed,
//! so a crash at any point neither loses a delivery nor starts its promotions twice.
//!
//! Before planning, a push, tag or deletion is put in order with the earlier events of its
//! ref ([`Store::observe_ref`]): one older than the newest already seen (or a deletion of a
//! branch already deleted) is recorded as ignored with the reason and starts nothing, so a
//! late delivery never moves an environment back to an older commit. Among the runs that do
//! start, a newer one for the same app and environment supersedes queued older ones at
//! admission.

use std::sync::Arc;

use gantry_webhooks::{EventKind, Forge, GitEvent, Parsed, RefKind, github, gitlab};
use gantry_workflows::Config;

use crate::error::StoreError;
use crate::model::Delivery;
use crate::store::{DeliveryStatus, RefObservation, RefOrder, Store};

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

/// Deliveries one intake pass takes.
pub const INTAKE_PASS: u32 = 64;

/// Processes every received delivery; returns what happened to each.
pub async fn process_inbox(store: &Arc<dyn Store>, config: &Config) -> Result<Vec<Intake>, StoreError> {
    let mut done = Vec::new();
    loop {
        let pass = process_received(store, config, INTAKE_PASS).await?;
        if pass.is_empty() {
            return Ok(done);
        }
        done.extend(pass);
    }
}

/// One pass: processes up to `limit` received deliveries, oldest first; returns what happened
/// to each (fewer than `limit` means the inbox is empty for now).
pub async fn process_received(store: &Arc<dyn Store>, config: &Config, limit: u32) -> Result<Vec<Intake>, StoreError> {
    let deliveries = store.received_deliveries(limit).await?;
    let mut done = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let parsed = match delivery.source.as_str() {
            "github" => github::parse(&delivery.event_type, &delivery.body).map_err(|e| e.to_string()),
            "gitlab" => gitlab::parse(&delivery.event_type, &delivery.body).map_err(|e| e.to_string()),
            other => Err(format!("no parser for source {other}")),
        };
        if let Ok(Parsed::Event(event)) = &parsed {
            wake_waiting_steps(store, event).await?;
        }
        let order = match &parsed {
            Ok(Parsed::Event(event)) => match ref_observation(&delivery, event) {
                Some(observation) => Some(store.observe_ref(&observation).await?),
                None => None,
            },
            _ => None,
        };
        let (status, detail, plans) = match (parsed, order) {
            (Ok(Parsed::Event(_)), Some(RefOrder::Older { reason })) => {
                tracing::info!(delivery = %delivery.delivery_id, %reason, "older event ignored");
                (DeliveryStatus::Ignored, Some(format!("older than what gantry has seen: {reason}")), Vec::new())
            }
            // A branch deleted twice (GitHub's `delete` and `push` for one deletion) ends its
            // preview once; the same commit pushed again is promoted again, as asked.
            (Ok(Parsed::Event(event)), Some(RefOrder::Repeat { reason })) if event.kind == EventKind::Delete => {
                (DeliveryStatus::Ignored, Some(format!("nothing new: {reason}")), Vec::new())
            }
            (Ok(Parsed::Event(event)), _) => match gantry_workflows::plan(config, &event) {
                Ok(plans) if plans.is_empty() => {
                    (DeliveryStatus::Processed, Some(no_match_detail(config, &event)), plans)
                }
                Ok(plans) => (DeliveryStatus::Processed, None, plans),
                Err(error) => (DeliveryStatus::Failed, Some(format!("plan: {error}")), Vec::new()),
            },
            (Ok(Parsed::Ignored { reason, .. }), _) => (DeliveryStatus::Ignored, Some(reason), Vec::new()),
            (Err(error), _) => (DeliveryStatus::Failed, Some(error), Vec::new()),
        };
        let runs = store.complete_delivery(delivery.id, status, detail.as_deref(), &plans).await?;
        for run in &runs {
            tracing::info!(run, delivery = %delivery.delivery_id, "run created");
        }
        done.push(Intake { delivery: delivery.id, status, runs });
    }
    Ok(done)
}

/// The ref event `event` is, for ordering; `None` for events about no ref, or that name
/// neither a commit nor a deletion (GitHub's `create`: the push that follows carries the commit).
fn ref_observation(delivery: &Delivery, event: &GitEvent) -> Option<RefObservation> {
    let name = event.ref_name.as_deref()?;
    let deleted = match event.kind {
        EventKind::Push | EventKind::Tag => event.deleted,
        EventKind::Delete => true,
        _ => return None,
    };
    if !deleted && event.sha.is_none() {
        return None;
    }
    let git_ref = match event.ref_kind? {
        RefKind::Branch => format!("refs/heads/{name}"),
        RefKind::Tag => format!("refs/tags/{name}"),
    };
    Some(RefObservation {
        forge: match event.forge {
            Forge::Github => "github",
            Forge::Gitlab => "gitlab",
        }
        .to_string(),
        repo: event.repo.to_lowercase(),
        git_ref,
        inbox_id: delivery.id,
        delivery: delivery.delivery_id.clone(),
        sha: if deleted { None } else { event.sha.clone() },
        before: event.before.clone(),
        deleted,
        event_time: event.timestamp.map(|time| time.timestamp_millis()),
    })
}

/// Why an event started nothing, trigger by trigger, for the delivery log.
fn no_match_detail(config: &Config, event: &GitEvent) -> String {
    let what = format!("{} {} of {}", kind_name(event.kind), event.ref_name.as_deref().unwrap_or("-"), event.repo);
    let checks = gantry_workflows::explain(config, event);
    if checks.is_empty() {
        return format!("no trigger matches {what}: no app has source_repo {}", event.repo);
    }
    let reasons: Vec<String> = checks
        .iter()
        .map(|check| format!("{} {}: {}", check.app, check.trigger, check.reason.as_deref().unwrap_or("matched")))
        .collect();
    format!("no trigger matches {what} ({})", reasons.join("; "))
}

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Push => "push",
        EventKind::Tag => "tag",
        EventKind::Delete => "deletion",
        EventKind::Merge => "merge",
        EventKind::Ping => "ping",
        EventKind::Package => "package",
        EventKind::Ci => "ci run",
        EventKind::Other => "event",
    }
}

/// Starts the follow-up promotions of succeeded runs: every environment that comes `after`
/// the run's environment, once all the environments it waits for have the same digest
/// (fan-in). Created in the transaction that marks the run advanced, and at most once per
/// (app, environment, digest), so a crash or a second replica cannot start one twice.
pub async fn advance_runs(store: &Arc<dyn Store>, config: &Config) -> Result<Vec<String>, StoreError> {
    let mut created = Vec::new();
    loop {
        let runs = store.runs_to_advance(64).await?;
        if runs.is_empty() {
            return Ok(created);
        }
        for run in runs {
            let Some(digest) = run.digest.clone() else {
                store.advance(&run.id, "", &[]).await?;
                continue;
            };
            let mut plans = Vec::new();
            // A rollback restores an environment; it does not promote onwards.
            if run.origin != "rollback" {
                let promoted = store.promoted_environments(&run.app, &digest).await?;
                for env in gantry_workflows::next_environments(config, &run.environment) {
                    if !env.after.iter().all(|a| promoted.contains(a)) {
                        continue;
                    }
                    match gantry_workflows::follow_up(config, &run.plan, env) {
                        Ok(Some(plan)) => plans.push(plan),
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(run = %run.id, environment = %env.name, %error, "cannot plan the follow-up")
                        }
                    }
                }
            }
            let ids = store.advance(&run.id, &digest, &plans).await?;
            for id in &ids {
                tracing::info!(run = %id, after = %run.id, "follow-up run created");
            }
            created.extend(ids);
        }
    }
}

/// A merged change request wakes the `wait-for-merge` steps of its branch at once, instead of
/// at their next poll.
async fn wake_waiting_steps(store: &Arc<dyn Store>, event: &gantry_webhooks::GitEvent) -> Result<(), StoreError> {
    if event.kind != EventKind::Merge {
        return Ok(());
    }
    if let Some(head) = event.change_request.as_ref().and_then(|cr| cr.head.as_deref()) {
        let woken = store.wake(&crate::steps::merge_wake_key(head), crate::model::now_millis()).await?;
        if woken > 0 {
            tracing::info!(branch = head, woken, "merge woke waiting steps");
        }
    }
    Ok(())
}
