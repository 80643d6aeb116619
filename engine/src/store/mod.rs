//! Persistence of deliveries, runs, steps and change requests.
//!
//! The executor persists intent before every side effect through this trait, so that a crash
//! at any point can be resumed. SQLite ([`SqliteStore`]) is the embedded default;
//! PostgreSQL ([`PostgresStore`]) shares the trait and the semantics, and lets several
//! replicas share one database. [`open`] picks one by URL.

mod admission;
mod body;
mod common;
mod journal;
mod postgres;
mod ref_order;
mod sqlite;

pub use admission::{AdmissionDecision, QueuedRun, decide_admission};
pub use ref_order::{REF_HISTORY, RefObservation, RefOrder, SeenRefEvent, judge as judge_ref_event};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use std::sync::Arc;

use async_trait::async_trait;
use gantry_workflows::Plan;

use crate::error::StoreError;
use crate::model::{ChangeRequest, Delivery, Millis, Run};

/// A delivery as received, before it is stored.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    /// Source (`github`).
    pub source: &'a str,
    /// The sender's delivery id; the inbox keeps one row per (source, delivery id).
    pub delivery_id: &'a str,
    /// Event type header.
    pub event_type: &'a str,
    /// Raw body.
    pub body: &'a [u8],
    /// The body packed by [`pack_body`], when the caller packed it already (a store that
    /// [keeps packed bodies](Store::keeps_packed_bodies) uses it instead of packing again;
    /// `None` also when packing did not make it smaller).
    pub packed_body: Option<&'a [u8]>,
    /// Status to store it with: `received` (to process) or `ignored`.
    pub status: DeliveryStatus,
    /// Why it is ignored, if it is.
    pub detail: Option<&'a str>,
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Stored, not processed yet.
    Received,
    /// Processed; its runs exist.
    Processed,
    /// Means nothing to gantry; kept for the record.
    Ignored,
    /// Could not be processed (the detail says why).
    Failed,
}

impl DeliveryStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Processed => "processed",
            Self::Ignored => "ignored",
            Self::Failed => "failed",
        }
    }
}

/// Result of storing a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// First time this delivery id was seen.
    New(i64),
    /// A redelivery: the first copy is kept, nothing else happens.
    Duplicate(i64),
}

/// How a step attempt ended, as the executor records it.
#[derive(Debug, Clone, PartialEq)]
pub enum StepRecord {
    /// Done; dependents may become ready.
    Succeeded {
        /// The step's outputs.
        outputs: serde_json::Value,
        /// Pins the run's artifact to this digest.
        pin_digest: Option<String>,
    },
    /// Parked until `until` (or an event).
    Waiting {
        /// When to look again.
        until: Millis,
        /// Event that wakes it earlier.
        wake_on: Option<String>,
        /// Progress to show while waiting.
        outputs: Option<serde_json::Value>,
        /// Why it waits.
        reason: String,
    },
    /// Try again at `at`.
    Retry {
        /// When.
        at: Millis,
        /// The transient error.
        error: String,
    },
    /// Failed for good; the run fails.
    Failed {
        /// Why.
        error: String,
    },
}

/// A step handed to an executor, with what it needs to run.
#[derive(Debug, Clone)]
pub struct ClaimedStep {
    /// Run id.
    pub run_id: String,
    /// Step name.
    pub name: String,
    /// Step kind.
    pub kind: String,
    /// Step settings.
    pub config: serde_json::Value,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// The run's plan.
    pub plan: Plan,
    /// The run's pinned digest, if resolved.
    pub digest: Option<String>,
    /// When the run was created.
    pub run_created_at: Millis,
    /// Outputs of the run's succeeded steps, by step name.
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// The step's own outputs so far (progress of a waiting step, an approval).
    pub progress: Option<serde_json::Value>,
    /// Attempts in all for transient errors, if the pipeline says.
    pub max_attempts: Option<u32>,
    /// First retry delay, if the pipeline says.
    pub backoff_ms: Option<u64>,
    /// Longest attempt, if the pipeline says.
    pub timeout_ms: Option<u64>,
    /// When the step first started.
    pub started_at: Millis,
}

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOrigin {
    /// A webhook event.
    Promotion,
    /// The next environment in the graph after a successful run.
    FollowUp,
    /// An operator's rollback.
    Rollback,
    /// An operator's promotion.
    Manual,
}

impl RunOrigin {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promotion => "promotion",
            Self::FollowUp => "follow-up",
            Self::Rollback => "rollback",
            Self::Manual => "manual",
        }
    }
}

/// A run to create outside intake.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// Its plan.
    pub plan: &'a Plan,
    /// The digest, when already known (follow-ups, rollbacks).
    pub digest: Option<&'a str>,
    /// Why it exists.
    pub origin: RunOrigin,
    /// Admitted even into a held environment.
    pub bypass_hold: bool,
}

/// What one admission pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// Runs that may now execute.
    pub admitted: Vec<String>,
    /// Queued runs cancelled because a newer artifact arrived.
    pub superseded: Vec<String>,
}

/// An environment (or one app in it) closed to new promotions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hold {
    /// Environment.
    pub environment: String,
    /// App, or `None` for every app.
    pub app: Option<String>,
    /// Why.
    pub reason: String,
    /// The digest pinned by a rollback, if that is what holds it.
    pub digest: Option<String>,
    /// When.
    pub created_at: Millis,
}

/// A change request to record.
#[derive(Debug, Clone)]
pub struct NewChangeRequest<'a> {
    /// Forge name.
    pub forge: &'a str,
    /// Repository URL.
    pub repo: &'a str,
    /// Head branch.
    pub branch: &'a str,
    /// Base branch.
    pub base: &'a str,
    /// Head commit.
    pub head_commit: &'a str,
    /// Title.
    pub title: &'a str,
    /// Body.
    pub body: &'a str,
    /// Run opening it.
    pub run_id: &'a str,
}

/// Storage used by the server and the executor.
/// `body` packed the way a store that [keeps packed bodies](Store::keeps_packed_bodies) stores
/// it, or `None` when packing does not make it smaller. Webhook endpoints pack on their own
/// threads, so that the store's single writer only writes.
pub fn pack_body(body: &[u8]) -> Option<Vec<u8>> {
    body::pack(body)
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Whether this store keeps delivery bodies packed by [`pack_body`] (and so can use a
    /// [`NewDelivery::packed_body`]).
    fn keeps_packed_bodies(&self) -> bool {
        false
    }
    /// Stores a delivery unless one with the same (source, delivery id) exists.
    async fn insert_delivery(&self, delivery: NewDelivery<'_>) -> Result<Inserted, StoreError>;
    /// Stores several deliveries (group commit of the webhook endpoints); the answers are in
    /// the order of `deliveries`. Each is stored unless one with the same (source, delivery id)
    /// exists, including an earlier one in the same slice, which makes the later one a
    /// [`Inserted::Duplicate`] of it.
    ///
    /// A store that can should write them at once (one transaction, one write): then an error
    /// means none of them was stored. This default stores them one by one, so after an error
    /// some may be stored; that is safe, because the sender's redelivery of a stored one is a
    /// duplicate.
    async fn insert_deliveries(&self, deliveries: &[NewDelivery<'_>]) -> Result<Vec<Inserted>, StoreError> {
        let mut inserted = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            inserted.push(self.insert_delivery(delivery.clone()).await?);
        }
        Ok(inserted)
    }
    /// Deliveries not processed yet, oldest first. Records that refer to a delivery's id (its
    /// runs, its ref's events) may be written once this has returned it: a store may keep new
    /// deliveries apart until then (SQLite's inbox journal).
    async fn received_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError>;
    /// Marks a delivery done and creates its runs, in one transaction; returns the run ids.
    async fn complete_delivery(
        &self,
        delivery_id: i64,
        status: DeliveryStatus,
        detail: Option<&str>,
        plans: &[Plan],
    ) -> Result<Vec<String>, StoreError>;
    /// Status and detail of a delivery, by the sender's id.
    async fn delivery_status(
        &self,
        source: &str,
        delivery_id: &str,
    ) -> Result<Option<(String, Option<String>)>, StoreError>;
    /// Creates a run that no delivery started (a follow-up, a rollback, an operator's
    /// promotion). `None` when an identical follow-up already exists.
    async fn create_run(&self, run: NewRun<'_>) -> Result<Option<String>, StoreError>;
    /// Admits queued runs where the concurrency rules allow: one non-final admitted run per
    /// (app, environment), newest-wins (`supersede`) or oldest-first (`queue`), none into a
    /// held environment unless the run bypasses holds.
    async fn admit(&self, now: Millis) -> Result<Admission, StoreError>;
    /// Extends the leases of `owner`'s running steps.
    async fn heartbeat(&self, owner: &str, lease_until: Millis) -> Result<u64, StoreError>;
    /// Wakes steps waiting for the event `wait_key`.
    async fn wake(&self, wait_key: &str, now: Millis) -> Result<u64, StoreError>;
    /// Succeeded runs whose follow-ups were not created yet.
    async fn runs_to_advance(&self, limit: u32) -> Result<Vec<Run>, StoreError>;
    /// Creates a run's follow-ups (digest pinned) and marks it advanced, in one transaction.
    async fn advance(&self, run_id: &str, digest: &str, follow_ups: &[Plan]) -> Result<Vec<String>, StoreError>;
    /// Environments where `digest` of `app` was promoted successfully.
    async fn promoted_environments(&self, app: &str, digest: &str) -> Result<Vec<String>, StoreError>;
    /// Succeeded runs of `app` into `environment`, newest first.
    async fn succeeded_runs(&self, app: &str, environment: &str, limit: u32) -> Result<Vec<Run>, StoreError>;

    /// Cancels a run that has not finished.
    async fn cancel_run(&self, run_id: &str, reason: &str, now: Millis) -> Result<(), StoreError>;
    /// Runs a failed step again (and the steps its failure kept from running).
    async fn retry_step(&self, run_id: &str, step: &str, now: Millis) -> Result<(), StoreError>;
    /// Skips a step that has not succeeded, recording why; the steps after it proceed.
    async fn skip_step(&self, run_id: &str, step: &str, reason: &str, now: Millis) -> Result<(), StoreError>;
    /// Records an approval of a step and wakes it.
    async fn approve_step(
        &self,
        run_id: &str,
        step: &str,
        approver: &str,
        comment: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError>;
    /// Holds an environment (or one app in it): nothing new is admitted until released.
    async fn hold(&self, hold: &Hold) -> Result<(), StoreError>;
    /// Releases a hold; false when there was none.
    async fn release(&self, environment: &str, app: Option<&str>) -> Result<bool, StoreError>;
    /// Every hold.
    async fn holds(&self) -> Result<Vec<Hold>, StoreError>;

    /// Hands out steps that left `running` without a record (a crashed executor) again.
    /// SQLite, with one process, takes every step not leased to `owner` (and `owner`'s own
    /// expired ones); PostgreSQL, shared by replicas, only steps whose lease has expired.
    async fn recover(&self, owner: &str, now: Millis) -> Result<u64, StoreError>;
    /// Claims one step whose time has come, marking it running for `owner` until `lease_until`.
    async fn claim_step(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Option<ClaimedStep>, StoreError>;
    /// Records how a claimed step attempt ended and moves the run along.
    async fn finish_step(&self, run_id: &str, step: &str, record: StepRecord, now: Millis) -> Result<(), StoreError>;
    /// Like [`Store::finish_step`], for the executor that claimed the step as `owner`: a store
    /// shared by replicas drops the record when the lease has passed to another executor
    /// (this one stalled past its lease and the step was handed out again), so that only the
    /// current attempt's outcome counts. By default, the same as `finish_step`.
    async fn finish_claimed_step(
        &self,
        owner: &str,
        run_id: &str,
        step: &str,
        record: StepRecord,
        now: Millis,
    ) -> Result<(), StoreError> {
        let _ = owner;
        self.finish_step(run_id, step, record, now).await
    }
    /// [`Store::finish_claimed_step`], then [`Store::claim_step`] for the same `owner`: the
    /// executor's loop. A store that can does both in fewer round trips. `now` is when the
    /// outcome was reached; the claim is made at the time it happens (later, if recording
    /// waited), its lease moved on by the same lag.
    async fn finish_and_claim(
        &self,
        owner: &str,
        run_id: &str,
        step: &str,
        record: StepRecord,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Option<ClaimedStep>, StoreError> {
        self.finish_claimed_step(owner, run_id, step, record, now).await?;
        let lag = (crate::model::now_millis() - now).max(0);
        self.claim_step(owner, now + lag, lease_until + lag).await
    }
    /// The earliest `not_before` of any claimable step, to sleep until.
    async fn next_wakeup(&self) -> Result<Option<Millis>, StoreError>;

    /// Newest runs first.
    async fn list_runs(&self, limit: u32) -> Result<Vec<Run>, StoreError>;
    /// One run.
    async fn get_run(&self, id: &str) -> Result<Option<Run>, StoreError>;

    /// Records a change request once per (forge, repo, branch); returns it and whether it is new.
    async fn upsert_change_request(&self, request: NewChangeRequest<'_>) -> Result<(ChangeRequest, bool), StoreError>;
    /// Change requests opened by a run.
    async fn change_requests(&self, run_id: &str) -> Result<Vec<ChangeRequest>, StoreError>;
    /// The change request recorded for (forge, repo, branch), if any.
    async fn find_change_request(
        &self,
        forge: &str,
        repo: &str,
        branch: &str,
    ) -> Result<Option<ChangeRequest>, StoreError>;
    /// Moves a change request to `state` (`open`, `merged`, `closed`), and to `head_commit`
    /// when given (the commit that landed on the base branch, for a merge).
    async fn set_change_request_state(&self, id: i64, state: &str, head_commit: Option<&str>)
    -> Result<(), StoreError>;
    /// For every (app, environment), the newest run that succeeded: what gantry last promoted
    /// there. Sorted by app, then environment.
    async fn last_succeeded_runs(&self) -> Result<Vec<Run>, StoreError>;
    /// Judges a branch or tag event against the events accepted earlier for the same ref
    /// ([`judge_ref_event`]) and records it when it is the ref's newest, in one transaction
    /// that no other replica's judgement of the same ref can interleave with.
    async fn observe_ref(&self, event: &RefObservation) -> Result<RefOrder, StoreError>;
}

/// Opens the store a database URL names — `sqlite://PATH` or `sqlite:PATH` (the file is created
/// if missing, its directory is not), `postgres://…` or `postgresql://…` — and applies the
/// migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() {
            return Err(StoreError::UnsupportedUrl { url: url.to_string(), reason: "the URL names no file" });
        }
        return Ok(Arc::new(SqliteStore::open(std::path::Path::new(path)).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::connect(url).await?));
    }
    Err(StoreError::UnsupportedUrl {
        url: postgres::redact_url(url),
        reason: "use sqlite://PATH or postgres://USER@HOST/DATABASE",
    })
}
