//! The store for several replicas: PostgreSQL.
//!
//! Every `gantry serve` replica opens the same database and runs the same loops (intake,
//! admission, executor); the database keeps them from stepping on each other:
//!
//! - a ready step is claimed with `FOR UPDATE SKIP LOCKED`, so concurrent claims never hand
//!   out one step twice and never wait on each other;
//! - a claimed step carries a lease (`lease_owner`, `lease_until`) that its executor renews;
//!   [`Store::recover`] only takes over steps whose lease has expired — those of a dead
//!   replica — never those of a live one;
//! - admission runs under a transaction-level advisory lock, so two replicas never both admit
//!   a run into the same (app, environment);
//! - everything that moves a run along (recording an attempt, settling the DAG, operator
//!   actions) locks the run's row first, so replicas advance one run one at a time;
//! - runs from deliveries and follow-ups are created once, by unique indexes, however many
//!   replicas process the same delivery or advance the same run.
//!
//! Leases are compared with the replicas' own clocks, which must agree (NTP) to well within
//! the lease. Decoding and the DAG decisions are shared with [`super::SqliteStore`]
//! (`common.rs`); only the SQL differs.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use gantry_workflows::Plan;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool};

use super::admission::{QueuedRun, decide_admission};
use super::common::{
    Columns, PendingDecision, SettleStep, approved_progress, concurrency_name, decide_pending, decode_change_request,
    decode_delivery, decode_hold, decode_run, decode_step, derive_run_state, failed_steps_error, json, json_opt,
    superseded_error, waiting_progress,
};
use super::ref_order::decode_seen;
use super::{
    Admission, ClaimedStep, DeliveryStatus, Hold, Inserted, NewChangeRequest, NewDelivery, NewRun, REF_HISTORY,
    RefObservation, RefOrder, RunOrigin, StepRecord, Store, judge_ref_event,
};
use crate::error::StoreError;
use crate::model::{ChangeRequest, Delivery, Millis, Run, RunState, StepState, now_millis};

/// Key of the advisory lock that admission holds for its transaction ("gantry" + 1).
const ADMISSION_LOCK: i64 = 0x6761_6e74_7279_0001;

/// Class of the advisory locks that serialize judging the events of one ref (`"gant"`).
const REF_EVENTS_LOCK_CLASS: i32 = 0x6761_6e74;

/// Connections per replica: the executor's workers, admission, heartbeat, intake and HTTP.
const MAX_CONNECTIONS: u32 = 10;

/// PostgreSQL-backed [`Store`], safe to share one database between several replicas.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

/// `url` with its password, if any, replaced by `***`, for messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let authority_end = url[scheme_end..].find(['/', '?']).map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{}{user}:***@{host}{}", &url[..scheme_end], &url[authority_end..]),
        None => url.to_string(),
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/database`)
    /// and applies migrations. Replicas starting together are safe: migrations run under
    /// an advisory lock.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let options = PgConnectOptions::from_str(url)
            .map_err(|source| StoreError::Open { url: shown.clone(), source })?
            .application_name("gantry");
        // One connection first, so that a wrong URL or an unreachable server is reported as
        // such at once (the pool would retry a refused connection until its timeout).
        let probe = PgConnection::connect_with(&options)
            .await
            .map_err(|source| StoreError::Open { url: shown.clone(), source })?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(options);
        sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Self { pool })
    }

    /// Runs from `SELECT * FROM runs` rows, with their steps (one query for all of them).
    async fn decode_runs(&self, rows: &[PgRow]) -> Result<Vec<Run>, StoreError> {
        let ids = rows.iter().map(|row| row.text("id")).collect::<Result<Vec<_>, _>>()?;
        let mut steps: HashMap<String, Vec<_>> = HashMap::new();
        if !ids.is_empty() {
            let step_rows = sqlx::query(
                "SELECT run_id, name, kind, needs, config, state, attempts, not_before, outputs, error, note, \
                 started_at, finished_at FROM steps WHERE run_id = ANY($1) ORDER BY run_id, position",
            )
            .bind(&ids)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("load steps"))?;
            for row in &step_rows {
                steps.entry(row.text("run_id")?).or_default().push(decode_step(row)?);
            }
        }
        rows.iter().zip(ids).map(|(row, id)| decode_run(row, steps.remove(&id).unwrap_or_default())).collect()
    }

    /// The runs with these ids, in this order.
    async fn runs_by_ids(&self, ids: &[String]) -> Result<Vec<Run>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query("SELECT * FROM runs WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("load runs"))?;
        let mut by_id: HashMap<String, Run> =
            self.decode_runs(&rows).await?.into_iter().map(|run| (run.id.clone(), run)).collect();
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool.begin().await.map_err(StoreError::query("begin"))
    }

    /// Records an attempt's outcome if the step is still running — and, with `owner`, still
    /// leased to that executor — then settles the run.
    async fn record(
        &self,
        owner: Option<&str>,
        run_id: &str,
        step: &str,
        record: StepRecord,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // The run's row first: replicas finishing steps of one run settle it one at a time.
        if lock_run(&mut tx, run_id).await?.is_none() {
            return Ok(());
        }
        let current = sqlx::query("SELECT state, lease_owner FROM steps WHERE run_id = $1 AND name = $2 FOR UPDATE")
            .bind(run_id)
            .bind(step)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query("read step"))?;
        let Some(current) = current else { return Ok(()) };
        if current.text("state")? != StepState::Running.as_str() {
            // The step was cancelled or recovered meanwhile; this attempt's result is stale.
            return Ok(());
        }
        if let Some(owner) = owner {
            let holder = current.text_opt("lease_owner")?;
            if holder.as_deref() != Some(owner) {
                // Its lease expired and another executor runs the step now; that attempt's
                // outcome is the one to record.
                tracing::warn!(run = run_id, step, owner, holder = ?holder, "lease lost; outcome not recorded");
                return Ok(());
            }
        }
        match &record {
            StepRecord::Succeeded { outputs, pin_digest } => {
                sqlx::query(
                    "UPDATE steps SET state = 'succeeded', outputs = $3, error = NULL, wait_key = NULL, finished_at = $4, \
                     lease_owner = NULL, lease_until = NULL WHERE run_id = $1 AND name = $2",
                )
                .bind(run_id)
                .bind(step)
                .bind(outputs.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("record step success"))?;
                if let Some(digest) = pin_digest {
                    sqlx::query("UPDATE runs SET digest = $2 WHERE id = $1 AND digest IS NULL")
                        .bind(run_id)
                        .bind(digest)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::query("pin digest"))?;
                }
            }
            StepRecord::Waiting { until, wake_on, outputs, reason } => {
                sqlx::query(
                    "UPDATE steps SET state = 'waiting', not_before = $3, outputs = $4, wait_key = $5, lease_owner = NULL, \
                     lease_until = NULL WHERE run_id = $1 AND name = $2",
                )
                .bind(run_id)
                .bind(step)
                .bind(until)
                .bind(waiting_progress(outputs.as_ref(), reason))
                .bind(wake_on.as_deref())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("record step wait"))?;
            }
            StepRecord::Retry { at, error } => {
                sqlx::query(
                    "UPDATE steps SET state = 'ready', not_before = $3, error = $4, lease_owner = NULL, \
                     lease_until = NULL WHERE run_id = $1 AND name = $2",
                )
                .bind(run_id)
                .bind(step)
                .bind(at)
                .bind(error)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("record step retry"))?;
            }
            StepRecord::Failed { error } => {
                sqlx::query(
                    "UPDATE steps SET state = 'failed', error = $3, wait_key = NULL, finished_at = $4, lease_owner = NULL, \
                     lease_until = NULL WHERE run_id = $1 AND name = $2",
                )
                .bind(run_id)
                .bind(step)
                .bind(error)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("record step failure"))?;
                sqlx::query("UPDATE runs SET error = COALESCE(error, $2) WHERE id = $1")
                    .bind(run_id)
                    .bind(format!("step {step} failed: {error}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query("record run error"))?;
            }
        }
        settle(&mut tx, run_id, now).await?;
        tx.commit().await.map_err(StoreError::query("commit step record"))?;
        Ok(())
    }
}

struct RunInsert<'a> {
    inbox_id: Option<i64>,
    plan: &'a Plan,
    digest: Option<&'a str>,
    origin: RunOrigin,
    bypass_hold: bool,
}

/// Inserts a run and its steps; `None` when a unique index says it exists already (the same
/// delivery's run, the same follow-up).
async fn insert_run(conn: &mut PgConnection, run: RunInsert<'_>, now: Millis) -> Result<Option<String>, StoreError> {
    let id = uuid::Uuid::now_v7().to_string();
    let plan = run.plan;
    let plan_json = serde_json::to_string(plan).map_err(|e| StoreError::corrupt("run plan", e))?;
    let inserted = sqlx::query(
        "INSERT INTO runs (id, inbox_id, app, environment, pipeline, state, digest, plan, origin, bypass_hold, concurrency, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $11) ON CONFLICT DO NOTHING",
    )
    .bind(&id)
    .bind(run.inbox_id)
    .bind(&plan.app)
    .bind(&plan.environment)
    .bind(&plan.pipeline)
    .bind(run.digest)
    .bind(&plan_json)
    .bind(run.origin.as_str())
    .bind(run.bypass_hold)
    .bind(concurrency_name(plan))
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("insert run"))?;
    if inserted.rows_affected() == 0 {
        return Ok(None);
    }
    for (position, step) in plan.steps.iter().enumerate() {
        // Every step starts pending; admission makes the first ones ready, so that the steps of
        // queued runs are never looked at by claims.
        let state = StepState::Pending;
        sqlx::query(
            "INSERT INTO steps (run_id, name, kind, position, needs, config, state, not_before, condition, max_attempts, backoff_ms, timeout_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&id)
        .bind(&step.name)
        .bind(&step.kind)
        .bind(position as i64)
        .bind(serde_json::to_string(&step.needs).map_err(|e| StoreError::corrupt("step needs", e))?)
        .bind(step.with.to_string())
        .bind(state.as_str())
        .bind(now)
        .bind(step.condition.as_deref())
        .bind(step.max_attempts.map(i64::from))
        .bind(step.backoff_ms.map(|v| v as i64))
        .bind(step.timeout_ms.map(|v| v as i64))
        .execute(&mut *conn)
        .await
        .map_err(StoreError::query("insert step"))?;
    }
    Ok(Some(id))
}

/// Locks a run's row for the transaction and returns its state; `None` if there is no such run.
/// Stores a delivery unless its (source, delivery id) is there already; answers which.
async fn insert_delivery(
    conn: &mut PgConnection,
    delivery: &NewDelivery<'_>,
    now: Millis,
) -> Result<Inserted, StoreError> {
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO inbox (source, delivery_id, event_type, body, received_at, status, detail, processed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $6 = 'received' THEN NULL ELSE $5 END) \
         ON CONFLICT (source, delivery_id) DO NOTHING RETURNING id",
    )
    .bind(delivery.source)
    .bind(delivery.delivery_id)
    .bind(delivery.event_type)
    .bind(delivery.body)
    .bind(now)
    .bind(delivery.status.as_str())
    .bind(delivery.detail)
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::query("insert delivery"))?;
    if let Some(id) = inserted {
        return Ok(Inserted::New(id));
    }
    let existing: i64 = sqlx::query_scalar("SELECT id FROM inbox WHERE source = $1 AND delivery_id = $2")
        .bind(delivery.source)
        .bind(delivery.delivery_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::query("find delivery"))?;
    Ok(Inserted::Duplicate(existing))
}

async fn lock_run(conn: &mut PgConnection, run_id: &str) -> Result<Option<RunState>, StoreError> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM runs WHERE id = $1 FOR UPDATE")
        .bind(run_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::query("lock run"))?;
    state.map(|state| RunState::parse(&state).ok_or_else(|| StoreError::corrupt("run state", &state))).transpose()
}

/// Like [`lock_run`], for actions on a run that must exist.
async fn lock_existing_run(conn: &mut PgConnection, run_id: &str) -> Result<RunState, StoreError> {
    lock_run(conn, run_id).await?.ok_or_else(|| StoreError::NotFound { what: format!("run {run_id}") })
}

/// Locks a step's row and returns its state.
async fn lock_step(conn: &mut PgConnection, run_id: &str, step: &str) -> Result<StepState, StoreError> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM steps WHERE run_id = $1 AND name = $2 FOR UPDATE")
            .bind(run_id)
            .bind(step)
            .fetch_optional(&mut *conn)
            .await
            .map_err(StoreError::query("read step"))?;
    let state = state.ok_or_else(|| StoreError::NotFound { what: format!("step {step} of run {run_id}") })?;
    StepState::parse(&state).ok_or_else(|| StoreError::corrupt("step state", &state))
}

/// Decides every pending step whose needs have all finished, then derives the run's state.
/// The caller holds the run's row lock.
async fn settle(conn: &mut PgConnection, run_id: &str, now: Millis) -> Result<RunState, StoreError> {
    let rows =
        sqlx::query("SELECT name, needs, state, condition, attempts FROM steps WHERE run_id = $1 ORDER BY position")
            .bind(run_id)
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::query("read run steps"))?;
    let mut steps = Vec::with_capacity(rows.len());
    let mut started = false;
    for row in &rows {
        let state = row.text("state")?;
        let state = StepState::parse(&state).ok_or_else(|| StoreError::corrupt("step state", &state))?;
        started |= row.int("attempts")? > 0 || !matches!(state, StepState::Pending | StepState::Ready);
        steps.push(SettleStep {
            name: row.text("name")?,
            needs: json("step needs", &row.text("needs")?)?,
            state,
            condition: row.text_opt("condition")?,
        });
    }
    for decision in decide_pending(&mut steps) {
        match decision {
            PendingDecision::Ready { name } => {
                sqlx::query("UPDATE steps SET state = 'ready', not_before = $3 WHERE run_id = $1 AND name = $2")
                    .bind(run_id)
                    .bind(&name)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::query("mark step ready"))?;
            }
            PendingDecision::NotRun { name, note } => {
                sqlx::query(
                    "UPDATE steps SET state = 'cancelled', note = $3, finished_at = $4 WHERE run_id = $1 AND name = $2",
                )
                .bind(run_id)
                .bind(&name)
                .bind(note)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::query("mark step not run"))?;
            }
        }
    }
    let current: String = sqlx::query_scalar("SELECT state FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::query("read run state"))?;
    let current = RunState::parse(&current).ok_or_else(|| StoreError::corrupt("run state", &current))?;
    let state = derive_run_state(current, started, steps.iter().map(|step| step.state));
    let error = (state == RunState::Failed).then(|| failed_steps_error(&steps));
    sqlx::query(
        "UPDATE runs SET state = $2, updated_at = $3, \
         error = CASE WHEN $2 = 'failed' THEN COALESCE(error, $4) WHEN $2 = 'cancelled' THEN error ELSE NULL END, \
         finished_at = CASE WHEN $2 IN ('succeeded', 'failed', 'cancelled') THEN COALESCE(finished_at, $3) ELSE NULL END \
         WHERE id = $1",
    )
    .bind(run_id)
    .bind(state.as_str())
    .bind(now)
    .bind(error)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("update run state"))?;
    Ok(state)
}

/// Steps that a failure kept from running are decided again (after a retry or a skip).
async fn reopen(conn: &mut PgConnection, run_id: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE steps SET state = 'pending', note = NULL, finished_at = NULL \
         WHERE run_id = $1 AND state = 'cancelled' AND note LIKE 'not run: condition%'",
    )
    .bind(run_id)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("reopen steps"))?;
    sqlx::query(
        "UPDATE runs SET error = NULL, finished_at = NULL, advanced = FALSE WHERE id = $1 AND state != 'cancelled'",
    )
    .bind(run_id)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("reopen run"))?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert_delivery(&self, delivery: NewDelivery<'_>) -> Result<Inserted, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(StoreError::query("connect"))?;
        insert_delivery(&mut conn, &delivery, now_millis()).await
    }

    async fn insert_deliveries(&self, deliveries: &[NewDelivery<'_>]) -> Result<Vec<Inserted>, StoreError> {
        // One transaction, one commit for the whole batch; an error rolls every row back.
        let now = now_millis();
        let mut tx = self.pool.begin().await.map_err(StoreError::query("begin delivery batch"))?;
        let mut answers = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            answers.push(insert_delivery(&mut tx, delivery, now).await?);
        }
        tx.commit().await.map_err(StoreError::query("commit delivery batch"))?;
        Ok(answers)
    }

    async fn received_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, source, delivery_id, event_type, body, body_encoding, received_at FROM inbox \
             WHERE status = 'received' ORDER BY id LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list received deliveries"))?;
        rows.iter().map(decode_delivery).collect()
    }

    async fn complete_delivery(
        &self,
        delivery_id: i64,
        status: DeliveryStatus,
        detail: Option<&str>,
        plans: &[Plan],
    ) -> Result<Vec<String>, StoreError> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        // Every replica's intake reads the same inbox; the first to lock a delivery completes
        // it, the others find it done.
        let current: Option<String> = sqlx::query_scalar("SELECT status FROM inbox WHERE id = $1 FOR UPDATE")
            .bind(delivery_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query("lock delivery"))?;
        if current.as_deref().is_some_and(|current| current != DeliveryStatus::Received.as_str()) {
            return Ok(Vec::new());
        }
        let mut ids = Vec::new();
        for plan in plans {
            let run = RunInsert {
                inbox_id: Some(delivery_id),
                plan,
                digest: None,
                origin: RunOrigin::Promotion,
                bypass_hold: false,
            };
            if let Some(id) = insert_run(&mut tx, run, now).await? {
                ids.push(id);
            }
        }
        sqlx::query("UPDATE inbox SET status = $2, detail = $3, processed_at = $4 WHERE id = $1")
            .bind(delivery_id)
            .bind(status.as_str())
            .bind(detail)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("complete delivery"))?;
        tx.commit().await.map_err(StoreError::query("commit delivery"))?;
        Ok(ids)
    }

    async fn delivery_status(
        &self,
        source: &str,
        delivery_id: &str,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let row = sqlx::query("SELECT status, detail FROM inbox WHERE source = $1 AND delivery_id = $2")
            .bind(source)
            .bind(delivery_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("read delivery"))?;
        row.map(|row| Ok((row.text("status")?, row.text_opt("detail")?))).transpose()
    }

    async fn create_run(&self, run: NewRun<'_>) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin().await?;
        let insert = RunInsert {
            inbox_id: None,
            plan: run.plan,
            digest: run.digest,
            origin: run.origin,
            bypass_hold: run.bypass_hold,
        };
        let id = insert_run(&mut tx, insert, now_millis()).await?;
        tx.commit().await.map_err(StoreError::query("commit run"))?;
        Ok(id)
    }

    async fn admit(&self, now: Millis) -> Result<Admission, StoreError> {
        let mut admission = Admission::default();
        // Cheap check first, so that idle replicas do not queue up on the lock.
        let any_queued: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM runs WHERE admitted = FALSE AND state = 'pending')")
                .fetch_one(&self.pool)
                .await
                .map_err(StoreError::query("look for queued runs"))?;
        if !any_queued {
            return Ok(admission);
        }
        let mut tx = self.begin().await?;
        // One admission pass at a time across replicas: each sees what the previous admitted.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ADMISSION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("take the admission lock"))?;
        // Only the runs the decision can act on, so that a pass costs the number of (app,
        // environment) queues, not their length: every run of a `supersede` queue (all but the
        // newest are cancelled, once), and of a `queue` queue its oldest run and any rollbacks.
        let queued = sqlx::query(
            "SELECT id, app, environment, concurrency, bypass_hold, created_at FROM runs \
             WHERE admitted = FALSE AND state = 'pending' AND (concurrency = 'supersede' OR bypass_hold) \
             UNION \
             SELECT r.id, r.app, r.environment, r.concurrency, r.bypass_hold, r.created_at \
             FROM (SELECT DISTINCT app, environment FROM runs WHERE admitted = FALSE AND state = 'pending') g \
             JOIN runs r ON r.id = (SELECT h.id FROM runs h WHERE h.admitted = FALSE AND h.state = 'pending' \
                                      AND h.app = g.app AND h.environment = g.environment \
                                    ORDER BY h.created_at, h.id LIMIT 1) \
             ORDER BY created_at, id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::query("list queued runs"))?;
        if queued.is_empty() {
            return Ok(admission);
        }
        let busy = sqlx::query(
            "SELECT DISTINCT app, environment FROM runs WHERE admitted = TRUE AND state IN ('pending', 'running', 'waiting')",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::query("list busy environments"))?
        .iter()
        .map(|row| Ok((row.text("app")?, row.text("environment")?)))
        .collect::<Result<std::collections::HashSet<_>, StoreError>>()?;
        let holds = sqlx::query("SELECT environment, app FROM holds")
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::query("list holds"))?
            .iter()
            .map(|row| Ok((row.text("environment")?, row.text("app")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let queued = queued
            .iter()
            .map(|row| {
                Ok(QueuedRun {
                    id: row.text("id")?,
                    app: row.text("app")?,
                    environment: row.text("environment")?,
                    supersede: row.text("concurrency")? == "supersede",
                    bypass_hold: row.flag("bypass_hold")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let decision = decide_admission(queued, &busy, &holds);
        // The updates check the state again: an operator may have cancelled a queued run since
        // it was read (the admission lock keeps out other admissions, not other actions).
        for (id, newest) in &decision.superseded {
            let superseded = sqlx::query(
                "UPDATE runs SET state = 'cancelled', error = $2, updated_at = $3, finished_at = $3 \
                 WHERE id = $1 AND state = 'pending' AND NOT admitted",
            )
            .bind(id)
            .bind(superseded_error(newest))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("supersede run"))?;
            if superseded.rows_affected() == 0 {
                continue;
            }
            sqlx::query(
                "UPDATE steps SET state = 'cancelled', note = 'superseded', finished_at = $2 WHERE run_id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("supersede steps"))?;
            admission.superseded.push(id.clone());
        }
        if !decision.admitted.is_empty() {
            let admitted: Vec<String> = sqlx::query_scalar(
                "UPDATE runs SET admitted = TRUE, updated_at = $2 \
                 WHERE id = ANY($1) AND state = 'pending' AND NOT admitted RETURNING id",
            )
            .bind(&decision.admitted)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::query("admit runs"))?;
            sqlx::query(
                "UPDATE steps SET state = 'ready', not_before = $2 WHERE run_id = ANY($1) AND state = 'pending' AND needs = '[]'",
            )
            .bind(&admitted)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("start admitted runs"))?;
            // In the order decided (RETURNING does not keep it).
            admission.admitted = decision.admitted.into_iter().filter(|id| admitted.contains(id)).collect();
        }
        tx.commit().await.map_err(StoreError::query("commit admission"))?;
        Ok(admission)
    }

    async fn heartbeat(&self, owner: &str, lease_until: Millis) -> Result<u64, StoreError> {
        let result = sqlx::query("UPDATE steps SET lease_until = $2 WHERE state = 'running' AND lease_owner = $1")
            .bind(owner)
            .bind(lease_until)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("renew leases"))?;
        Ok(result.rows_affected())
    }

    async fn wake(&self, wait_key: &str, now: Millis) -> Result<u64, StoreError> {
        let result = sqlx::query("UPDATE steps SET not_before = $2 WHERE state = 'waiting' AND wait_key = $1")
            .bind(wait_key)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("wake steps"))?;
        Ok(result.rows_affected())
    }

    async fn runs_to_advance(&self, limit: u32) -> Result<Vec<Run>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE state = 'succeeded' AND advanced = FALSE ORDER BY finished_at LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list runs to advance"))?;
        self.runs_by_ids(&ids).await
    }

    async fn advance(&self, run_id: &str, digest: &str, follow_ups: &[Plan]) -> Result<Vec<String>, StoreError> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let advanced: Option<bool> = sqlx::query_scalar("SELECT advanced FROM runs WHERE id = $1 FOR UPDATE")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query("lock run"))?;
        if advanced == Some(true) {
            // Another replica advanced it first.
            return Ok(Vec::new());
        }
        let mut ids = Vec::new();
        for plan in follow_ups {
            let run = RunInsert {
                inbox_id: None,
                plan,
                digest: Some(digest),
                origin: RunOrigin::FollowUp,
                bypass_hold: false,
            };
            if let Some(id) = insert_run(&mut tx, run, now).await? {
                ids.push(id);
            }
        }
        sqlx::query("UPDATE runs SET advanced = TRUE WHERE id = $1")
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("mark run advanced"))?;
        tx.commit().await.map_err(StoreError::query("commit follow-ups"))?;
        Ok(ids)
    }

    async fn promoted_environments(&self, app: &str, digest: &str) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT DISTINCT environment FROM runs WHERE app = $1 AND digest = $2 AND state = 'succeeded'",
        )
        .bind(app)
        .bind(digest)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list promoted environments"))
    }

    async fn succeeded_runs(&self, app: &str, environment: &str, limit: u32) -> Result<Vec<Run>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE app = $1 AND environment = $2 AND state = 'succeeded' ORDER BY finished_at DESC, id DESC LIMIT $3",
        )
        .bind(app)
        .bind(environment)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list succeeded runs"))?;
        self.runs_by_ids(&ids).await
    }

    async fn cancel_run(&self, run_id: &str, reason: &str, now: Millis) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let state = lock_existing_run(&mut tx, run_id).await?;
        if state.is_final() {
            return Err(StoreError::Conflict { message: format!("run {run_id} already {state}") });
        }
        sqlx::query("UPDATE runs SET state = 'cancelled', error = $2, updated_at = $3, finished_at = $3 WHERE id = $1")
            .bind(run_id)
            .bind(format!("cancelled: {reason}"))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("cancel run"))?;
        // A running attempt finishes and records its outcome; nothing else starts.
        sqlx::query(
            "UPDATE steps SET state = 'cancelled', note = $2, finished_at = $3 WHERE run_id = $1 AND state IN ('pending', 'ready', 'waiting')",
        )
        .bind(run_id)
        .bind(format!("run cancelled: {reason}"))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("cancel steps"))?;
        tx.commit().await.map_err(StoreError::query("commit cancel"))?;
        Ok(())
    }

    async fn retry_step(&self, run_id: &str, step: &str, now: Millis) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        if lock_existing_run(&mut tx, run_id).await? == RunState::Cancelled {
            return Err(StoreError::Conflict { message: format!("run {run_id} is cancelled") });
        }
        let state = lock_step(&mut tx, run_id, step).await?;
        if state != StepState::Failed {
            return Err(StoreError::Conflict {
                message: format!("step {step} is {state}; only a failed step can be retried"),
            });
        }
        sqlx::query("UPDATE steps SET state = 'ready', not_before = $3, error = NULL, finished_at = NULL WHERE run_id = $1 AND name = $2")
            .bind(run_id)
            .bind(step)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("retry step"))?;
        reopen(&mut tx, run_id).await?;
        settle(&mut tx, run_id, now).await?;
        tx.commit().await.map_err(StoreError::query("commit retry"))?;
        Ok(())
    }

    async fn skip_step(&self, run_id: &str, step: &str, reason: &str, now: Millis) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let run = lock_existing_run(&mut tx, run_id).await?;
        if run == RunState::Cancelled || run == RunState::Succeeded {
            return Err(StoreError::Conflict { message: format!("run {run_id} is {run}") });
        }
        let state = lock_step(&mut tx, run_id, step).await?;
        if matches!(state, StepState::Running | StepState::Succeeded | StepState::Skipped) {
            return Err(StoreError::Conflict { message: format!("step {step} is {state}; it cannot be skipped") });
        }
        sqlx::query("UPDATE steps SET state = 'skipped', note = $3, wait_key = NULL, finished_at = $4 WHERE run_id = $1 AND name = $2")
            .bind(run_id)
            .bind(step)
            .bind(format!("skipped: {reason}"))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("skip step"))?;
        reopen(&mut tx, run_id).await?;
        settle(&mut tx, run_id, now).await?;
        tx.commit().await.map_err(StoreError::query("commit skip"))?;
        Ok(())
    }

    async fn approve_step(
        &self,
        run_id: &str,
        step: &str,
        approver: &str,
        comment: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let state = lock_step(&mut tx, run_id, step).await?;
        if !matches!(state, StepState::Pending | StepState::Ready | StepState::Waiting) {
            return Err(StoreError::Conflict {
                message: format!("step {step} is {state}; there is nothing to approve"),
            });
        }
        let outputs: Option<String> = sqlx::query_scalar("SELECT outputs FROM steps WHERE run_id = $1 AND name = $2")
            .bind(run_id)
            .bind(step)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::query("read step outputs"))?;
        sqlx::query(
            "UPDATE steps SET outputs = $3, not_before = LEAST(not_before, $4) WHERE run_id = $1 AND name = $2",
        )
        .bind(run_id)
        .bind(step)
        .bind(approved_progress(outputs.as_deref(), approver, comment, now))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("record approval"))?;
        tx.commit().await.map_err(StoreError::query("commit approval"))?;
        Ok(())
    }

    async fn hold(&self, hold: &Hold) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO holds (environment, app, reason, digest, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (environment, app) DO UPDATE SET reason = excluded.reason, digest = excluded.digest, created_at = excluded.created_at",
        )
        .bind(&hold.environment)
        .bind(hold.app.as_deref().unwrap_or(""))
        .bind(&hold.reason)
        .bind(hold.digest.as_deref())
        .bind(hold.created_at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("hold environment"))?;
        Ok(())
    }

    async fn release(&self, environment: &str, app: Option<&str>) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM holds WHERE environment = $1 AND app = $2")
            .bind(environment)
            .bind(app.unwrap_or(""))
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("release environment"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn holds(&self) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query("SELECT * FROM holds ORDER BY environment, app")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("list holds"))?;
        rows.iter().map(decode_hold).collect()
    }

    /// Takes over steps whose lease has expired: their executor died (or stopped renewing).
    /// Unlike the single-process SQLite store, steps leased to other executors are left
    /// alone while their lease holds — those executors are other, live replicas.
    async fn recover(&self, _owner: &str, now: Millis) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE steps SET state = 'ready', lease_owner = NULL, lease_until = NULL, not_before = $1 \
             WHERE state = 'running' AND (lease_until IS NULL OR lease_until < $1)",
        )
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("recover steps"))?;
        Ok(result.rows_affected())
    }

    async fn claim_step(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Option<ClaimedStep>, StoreError> {
        // SKIP LOCKED: a step another replica is claiming right now is passed over, not waited
        // for, and is never handed out twice. The claim commits before the run's row is
        // touched: a claim must never hold a step's lock while it waits for its run's, because
        // actions on a run (cancel, skip) lock the run first and its steps second.
        let claimed = sqlx::query(
            "UPDATE steps SET state = 'running', attempts = attempts + 1, lease_owner = $1, lease_until = $3, \
             started_at = COALESCE(started_at, $2) \
             WHERE (run_id, name) = (SELECT s.run_id, s.name FROM steps s JOIN runs r ON r.id = s.run_id \
                                     WHERE s.state IN ('ready', 'waiting') AND s.not_before <= $2 \
                                       AND r.admitted AND r.state NOT IN ('succeeded', 'failed', 'cancelled') \
                                     ORDER BY s.not_before LIMIT 1 FOR UPDATE OF s SKIP LOCKED) \
             RETURNING run_id, name, kind, config, attempts, outputs, max_attempts, backoff_ms, timeout_ms, started_at",
        )
        .bind(owner)
        .bind(now)
        .bind(lease_until)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("claim step"))?;
        let Some(row) = claimed else { return Ok(None) };
        let run_id = row.text("run_id")?;
        sqlx::query(
            "UPDATE runs SET state = 'running', updated_at = $2 WHERE id = $1 AND state IN ('pending', 'waiting')",
        )
        .bind(&run_id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("mark run running"))?;
        let run = sqlx::query("SELECT plan, digest, created_at FROM runs WHERE id = $1")
            .bind(&run_id)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query("load run of claimed step"))?;
        let done = sqlx::query("SELECT name, outputs FROM steps WHERE run_id = $1 AND state = 'succeeded'")
            .bind(&run_id)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("load outputs"))?;
        let mut outputs = serde_json::Map::new();
        for step in &done {
            let value = json_opt("step outputs", step.text_opt("outputs")?)?.unwrap_or(serde_json::Value::Null);
            outputs.insert(step.text("name")?, value);
        }
        Ok(Some(ClaimedStep {
            run_id,
            name: row.text("name")?,
            kind: row.text("kind")?,
            config: json("step config", &row.text("config")?)?,
            attempt: row.int("attempts")? as u32,
            plan: json("run plan", &run.text("plan")?)?,
            digest: run.text_opt("digest")?,
            run_created_at: run.int("created_at")?,
            outputs,
            progress: json_opt("step outputs", row.text_opt("outputs")?)?,
            max_attempts: row.int_opt("max_attempts")?.map(|v| v as u32),
            backoff_ms: row.int_opt("backoff_ms")?.map(|v| v as u64),
            timeout_ms: row.int_opt("timeout_ms")?.map(|v| v as u64),
            started_at: row.int_opt("started_at")?.unwrap_or(now),
        }))
    }

    async fn finish_step(&self, run_id: &str, step: &str, record: StepRecord, now: Millis) -> Result<(), StoreError> {
        self.record(None, run_id, step, record, now).await
    }

    async fn finish_claimed_step(
        &self,
        owner: &str,
        run_id: &str,
        step: &str,
        record: StepRecord,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.record(Some(owner), run_id, step, record, now).await
    }

    async fn next_wakeup(&self) -> Result<Option<Millis>, StoreError> {
        sqlx::query_scalar("SELECT MIN(not_before) FROM steps WHERE state IN ('ready', 'waiting')")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query("next wakeup"))
    }

    async fn list_runs(&self, limit: u32) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query("SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT $1")
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("list runs"))?;
        self.decode_runs(&rows).await
    }

    async fn get_run(&self, id: &str) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("get run"))?;
        match row {
            Some(row) => Ok(self.decode_runs(&[row]).await?.pop()),
            None => Ok(None),
        }
    }

    async fn upsert_change_request(&self, request: NewChangeRequest<'_>) -> Result<(ChangeRequest, bool), StoreError> {
        let now = now_millis();
        let inserted = sqlx::query(
            "INSERT INTO change_requests (forge, repo, branch, base, head_commit, title, body, run_id, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, $9) ON CONFLICT (forge, repo, branch) DO NOTHING",
        )
        .bind(request.forge)
        .bind(request.repo)
        .bind(request.branch)
        .bind(request.base)
        .bind(request.head_commit)
        .bind(request.title)
        .bind(request.body)
        .bind(request.run_id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("insert change request"))?;
        if inserted.rows_affected() == 0 {
            // Already open: keep its number, follow the branch to its current head.
            sqlx::query(
                "UPDATE change_requests SET head_commit = $4, updated_at = $5 WHERE forge = $1 AND repo = $2 AND branch = $3",
            )
            .bind(request.forge)
            .bind(request.repo)
            .bind(request.branch)
            .bind(request.head_commit)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("update change request"))?;
        }
        let row = sqlx::query("SELECT * FROM change_requests WHERE forge = $1 AND repo = $2 AND branch = $3")
            .bind(request.forge)
            .bind(request.repo)
            .bind(request.branch)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query("read change request"))?;
        Ok((decode_change_request(&row)?, inserted.rows_affected() == 1))
    }

    async fn change_requests(&self, run_id: &str) -> Result<Vec<ChangeRequest>, StoreError> {
        let rows = sqlx::query("SELECT * FROM change_requests WHERE run_id = $1 ORDER BY id")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("list change requests"))?;
        rows.iter().map(decode_change_request).collect()
    }

    async fn find_change_request(
        &self,
        forge: &str,
        repo: &str,
        branch: &str,
    ) -> Result<Option<ChangeRequest>, StoreError> {
        let row = sqlx::query("SELECT * FROM change_requests WHERE forge = $1 AND repo = $2 AND branch = $3")
            .bind(forge)
            .bind(repo)
            .bind(branch)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("find change request"))?;
        row.as_ref().map(decode_change_request).transpose()
    }

    async fn set_change_request_state(
        &self,
        id: i64,
        state: &str,
        head_commit: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE change_requests SET state = $2, head_commit = COALESCE($3, head_commit), \
             updated_at = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(head_commit)
        .bind(now_millis())
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("update change request state"))?;
        Ok(())
    }

    async fn last_succeeded_runs(&self) -> Result<Vec<Run>, StoreError> {
        // The newest succeeded run per (app, environment); ids are UUIDv7, so they break ties
        // between runs created in the same millisecond in creation order.
        let rows = sqlx::query(
            "SELECT * FROM runs AS r WHERE r.state = 'succeeded' AND r.id = ( \
                 SELECT n.id FROM runs AS n WHERE n.app = r.app AND n.environment = r.environment \
                 AND n.state = 'succeeded' ORDER BY n.created_at DESC, n.id DESC LIMIT 1) \
             ORDER BY r.app, r.environment",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list last succeeded runs"))?;
        self.decode_runs(&rows).await
    }

    async fn observe_ref(&self, event: &RefObservation) -> Result<RefOrder, StoreError> {
        let mut tx = self.begin().await?;
        // One judge per ref at a time, across replicas; other refs are not held up.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(REF_EVENTS_LOCK_CLASS)
            .bind(format!("{}\n{}\n{}", event.forge, event.repo, event.git_ref))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("lock the ref"))?;
        let rows = sqlx::query(
            "SELECT inbox_id, delivery, sha, before_sha, deleted, event_time FROM ref_events \
             WHERE forge = $1 AND repo = $2 AND git_ref = $3 ORDER BY id DESC LIMIT $4",
        )
        .bind(&event.forge)
        .bind(&event.repo)
        .bind(&event.git_ref)
        .bind(REF_HISTORY as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::query("read the ref's events"))?;
        let history = rows.iter().map(decode_seen).collect::<Result<Vec<_>, _>>()?;
        let order = judge_ref_event(&history, event);
        if order == RefOrder::Newest {
            sqlx::query(
                "INSERT INTO ref_events (forge, repo, git_ref, inbox_id, delivery, sha, before_sha, deleted, \
                 event_time, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (forge, repo, git_ref, inbox_id) DO NOTHING",
            )
            .bind(&event.forge)
            .bind(&event.repo)
            .bind(&event.git_ref)
            .bind(event.inbox_id)
            .bind(&event.delivery)
            .bind(&event.sha)
            .bind(&event.before)
            .bind(event.deleted)
            .bind(event.event_time)
            .bind(now_millis())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("record the ref's event"))?;
            sqlx::query(
                "DELETE FROM ref_events WHERE forge = $1 AND repo = $2 AND git_ref = $3 AND id NOT IN ( \
                 SELECT id FROM ref_events WHERE forge = $1 AND repo = $2 AND git_ref = $3 ORDER BY id DESC LIMIT $4)",
            )
            .bind(&event.forge)
            .bind(&event.repo)
            .bind(&event.git_ref)
            .bind(REF_HISTORY as i64)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("prune the ref's events"))?;
        }
        tx.commit().await.map_err(StoreError::query("commit the ref's event"))?;
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://gantry:s3cret@db:5432/gantry"), "postgres://gantry:***@db:5432/gantry");
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/x?sslmode=disable"),
            "postgres://postgres@127.0.0.1/x?sslmode=disable"
        );
        assert_eq!(redact_url("postgres://a:b@h"), "postgres://a:***@h");
        assert_eq!(redact_url("postgres:///gantry"), "postgres:///gantry");
    }
}
