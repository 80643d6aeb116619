//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go through a single connection (SQLite has one writer anyway, and this keeps our
//! own transactions from ever seeing `SQLITE_BUSY`), taken in turn behind an async mutex;
//! reads use a small pool. WAL with
//! `synchronous=NORMAL` makes every commit survive a crash of the process (kill -9) before
//! the call returns; only a power loss can take back the last commits.
//!
//! Webhook deliveries take a shorter way in: they are appended to the inbox journal (see
//! [`super::journal`]), with the same guarantee, and move into the `inbox` table as intake
//! asks for them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gantry_workflows::Plan;
use sqlx::sqlite::SqliteRow;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection, SqlitePool};
use tokio::sync::{Mutex, MutexGuard};

use super::admission::{QueuedRun, decide_admission};
use super::common::{
    PendingDecision, SettleStep, decide_pending, decode_change_request, decode_delivery, decode_hold, decode_run,
    decode_step, derive_run_state, failed_steps_error,
};
use super::journal::Journal;
use super::ref_order::decode_seen;
use super::{
    Admission, ClaimedStep, DeliveryStatus, Hold, Inserted, NewChangeRequest, NewDelivery, NewRun, REF_HISTORY,
    RefObservation, RefOrder, RunOrigin, StepRecord, Store, judge_ref_event,
};
use crate::error::StoreError;
use crate::model::{ChangeRequest, Delivery, Millis, Run, RunState, StepRun, StepState, now_millis};

/// The claim statement, with the parameter numbers of the owner, the time and the lease's end
/// (so that it can follow other statements in one round trip).
macro_rules! claim_statement {
    ($owner:literal, $now:literal, $lease_until:literal) => {
        concat!(
            "UPDATE steps SET state = 'running', attempts = attempts + 1, lease_owner = ", $owner, ", lease_until = ", $lease_until, ", \
             started_at = COALESCE(started_at, ", $now, ") \
             WHERE rowid = (SELECT s.rowid FROM steps s INDEXED BY steps_claimable JOIN runs r ON r.id = s.run_id \
                            WHERE s.state IN ('ready', 'waiting') AND s.not_before <= ", $now, " \
                              AND r.admitted = 1 AND r.state NOT IN ('succeeded', 'failed', 'cancelled') \
                            ORDER BY s.not_before LIMIT 1) \
             RETURNING run_id, name, kind, config, attempts, outputs, max_attempts, backoff_ms, timeout_ms, started_at, \
               (SELECT state FROM runs WHERE id = run_id) AS run_state, \
               (SELECT plan FROM runs WHERE id = run_id) AS plan, \
               (SELECT digest FROM runs WHERE id = run_id) AS digest, \
               (SELECT created_at FROM runs WHERE id = run_id) AS run_created_at, \
               (SELECT json_group_object(done.name, json(done.outputs)) FROM steps done \
                WHERE done.run_id = steps.run_id AND done.state = 'succeeded') AS done"
        )
    };
}

/// The columns `settle` reads about run `?1`: its steps as a JSON array of `[name, needs,
/// state, condition, attempts]`, and its state. A statement that changes a step returns them
/// (`RETURNING`), which spares the transaction a round trip.
macro_rules! settle_columns {
    () => {
        "(SELECT json_group_array(json_array(name, needs, state, condition, attempts)) FROM steps \
          WHERE run_id = ?1) AS settle_steps, (SELECT state FROM runs WHERE id = ?1) AS settle_run_state"
    };
}

/// SQLite-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: Writer,
    reader: SqlitePool,
    /// Where deliveries are written before they are answered; `None` when another process
    /// owns this database's journal.
    journal: Option<Arc<Journal>>,
    path: PathBuf,
}

/// The one write connection, handed out in turn (FIFO) by an async mutex rather than a pool
/// of one: sqlx's pool pings a connection each time it is returned, and by default each time
/// it is handed out — a round trip to the connection's thread per use, which on the
/// executor's and the webhook inbox's paths cost more than their statements. A transaction
/// dropped unfinished still rolls back first: sqlx's queues its rollback on the connection
/// ahead of the next holder's statements, and one begun in SQL ([`WriterGuard::begin_in_sql`])
/// is rolled back by the next `lock`.
#[derive(Debug, Clone)]
struct Writer(Arc<Mutex<WriterState>>);

#[derive(Debug)]
struct WriterState {
    conn: SqliteConnection,
    /// A transaction begun in SQL (`BEGIN; …` sent with its first statements, one round trip
    /// instead of two) and not yet known to be finished.
    open_in_sql: bool,
}

impl Writer {
    fn new(conn: SqliteConnection) -> Self {
        Self(Arc::new(Mutex::new(WriterState { conn, open_in_sql: false })))
    }

    async fn lock(&self) -> WriterGuard<'_> {
        let mut state = self.0.lock().await;
        if state.open_in_sql {
            // Its holder was cancelled or failed before COMMIT: none of it may reach the next
            // holder's transaction.
            if let Err(error) = sqlx::query("ROLLBACK").execute(&mut state.conn).await {
                tracing::warn!(%error, "rolling back an unfinished write transaction failed");
            }
            state.open_in_sql = false;
        }
        WriterGuard(state)
    }
}

/// The write connection, held.
struct WriterGuard<'a>(MutexGuard<'a, WriterState>);

impl WriterGuard<'_> {
    /// Marks a transaction begun in SQL: until [`Self::finished_in_sql`], the next holder
    /// rolls it back first.
    fn begin_in_sql(&mut self) {
        self.0.open_in_sql = true;
    }

    /// The transaction begun in SQL was committed (or rolled back) in SQL.
    fn finished_in_sql(&mut self) {
        self.0.open_in_sql = false;
    }
}

impl std::ops::Deref for WriterGuard<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.0.conn
    }
}

impl std::ops::DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.0.conn
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|source| StoreError::Open { url: url.clone(), source })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            // The executor's statements and a delivery batch's per size (see
            // `insert_deliveries`) stay prepared.
            .statement_cache_capacity(256)
            .foreign_keys(true);
        let mut writer = options.connect().await.map_err(|source| StoreError::Open { url: url.clone(), source })?;
        sqlx::migrate!("./migrations/sqlite").run(&mut writer).await.map_err(StoreError::Migrate)?;
        let journal = Journal::open(path, &mut writer).await?.map(Arc::new);
        // A local file does not need the network-minded check before each use.
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await
            .map_err(|source| StoreError::Open { url, source })?;
        Ok(Self { writer: Writer::new(writer), reader, journal, path: path.to_path_buf() })
    }

    /// Records a claimed step's outcome and settles its run; with `claim` (owner, lease end),
    /// also claims the next step in the same round trip as the commit.
    async fn finish(
        &self,
        run_id: &str,
        step: &str,
        record: StepRecord,
        now: Millis,
        claim: Option<(&str, Millis)>,
    ) -> Result<Option<ClaimedStep>, StoreError> {
        // Two round trips to the connection's thread in the common case: BEGIN with the step's
        // update (which returns what `settle` reads), then the settling updates with COMMIT.
        // An error or a cancellation in between leaves the transaction to the next `lock`,
        // which rolls it back.
        let mut tx = self.writer.lock().await;
        // The next step is claimed at the time of the claim: waiting for the connection may
        // have taken a while since `now`.
        let claim = claim.map(|(owner, lease_until)| {
            let lag = (now_millis() - now).max(0);
            (owner, now + lag, lease_until + lag)
        });
        tx.begin_in_sql();
        // Every update below applies only to a step still running: one cancelled or recovered
        // meanwhile makes this attempt's result stale, and it is dropped.
        let recorded: Option<(Option<String>, Option<String>)> = match &record {
            StepRecord::Succeeded { outputs, .. } => sqlx::query_as(concat!(
                "BEGIN; UPDATE steps SET state = 'succeeded', outputs = ?3, error = NULL, wait_key = NULL, finished_at = ?4, \
                     lease_owner = NULL, lease_until = NULL WHERE run_id = ?1 AND name = ?2 AND state = 'running' RETURNING ", settle_columns!()),
            )
            .bind(run_id)
            .bind(step)
            .bind(outputs.to_string())
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::query("record step success"))?
            .pop(),
            StepRecord::Waiting { until, wake_on, outputs, reason } => {
                let mut progress = match outputs {
                    Some(serde_json::Value::Object(map)) => map.clone(),
                    _ => serde_json::Map::new(),
                };
                progress.insert("waiting_for".into(), serde_json::Value::String(reason.clone()));
                sqlx::query_as(concat!(
                    "BEGIN; UPDATE steps SET state = 'waiting', not_before = ?3, outputs = ?4, wait_key = ?5, lease_owner = NULL, \
                     lease_until = NULL WHERE run_id = ?1 AND name = ?2 AND state = 'running' RETURNING ", settle_columns!()),
                )
                .bind(run_id)
                .bind(step)
                .bind(until)
                .bind(serde_json::Value::Object(progress).to_string())
                .bind(wake_on.as_deref())
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::query("record step wait"))?
                    .pop()
            }
            StepRecord::Retry { at, error } => sqlx::query_as(concat!(
                "BEGIN; UPDATE steps SET state = 'ready', not_before = ?3, error = ?4, lease_owner = NULL, \
                     lease_until = NULL WHERE run_id = ?1 AND name = ?2 AND state = 'running' RETURNING ", settle_columns!()),
            )
            .bind(run_id)
            .bind(step)
            .bind(at)
            .bind(error)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::query("record step retry"))?
            .pop(),
            StepRecord::Failed { error } => sqlx::query_as(concat!(
                "BEGIN; UPDATE steps SET state = 'failed', error = ?3, wait_key = NULL, finished_at = ?4, lease_owner = NULL, \
                     lease_until = NULL WHERE run_id = ?1 AND name = ?2 AND state = 'running' RETURNING ", settle_columns!()),
            )
            .bind(run_id)
            .bind(step)
            .bind(error)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::query("record step failure"))?
            .pop(),
        };
        // The step was not running (any more): nothing to settle.
        let Some(settle_data) = recorded else {
            let claimed = match claim {
                Some((owner, at, lease_until)) => sqlx::query(concat!("COMMIT; ", claim_statement!("?1", "?2", "?3")))
                    .bind(owner)
                    .bind(at)
                    .bind(lease_until)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(StoreError::query("end step record"))?
                    .pop(),
                None => {
                    sqlx::query("COMMIT").execute(&mut *tx).await.map_err(StoreError::query("end step record"))?;
                    None
                }
            };
            tx.finished_in_sql();
            return match (claimed, claim) {
                (Some(row), Some((_, at, _))) => claimed_step(&mut tx, &row, at).await.map(Some),
                _ => Ok(None),
            };
        };
        let new_state = match &record {
            StepRecord::Succeeded { .. } => StepState::Succeeded,
            StepRecord::Waiting { .. } => StepState::Waiting,
            StepRecord::Retry { .. } => StepState::Ready,
            StepRecord::Failed { .. } => StepState::Failed,
        };
        match &record {
            StepRecord::Succeeded { pin_digest: Some(digest), .. } => {
                sqlx::query("UPDATE runs SET digest = ?2 WHERE id = ?1 AND digest IS NULL")
                    .bind(run_id)
                    .bind(digest)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query("pin digest"))?;
            }
            StepRecord::Failed { error } => {
                sqlx::query("UPDATE runs SET error = COALESCE(error, ?2) WHERE id = ?1")
                    .bind(run_id)
                    .bind(format!("step {step} failed: {error}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query("record run error"))?;
            }
            _ => {}
        }
        let commit = match claim {
            Some((owner, at, lease_until)) => Commit::InSqlThenClaim { owner, at, lease_until },
            None => Commit::InSql,
        };
        let (_, claimed) = settle_from(&mut tx, run_id, now, settle_data, Some((step, new_state)), commit).await?;
        tx.finished_in_sql();
        match (claimed, claim) {
            (Some(row), Some((_, at, _))) => claimed_step(&mut tx, &row, at).await.map(Some),
            _ => Ok(None),
        }
    }

    async fn runs_by_ids(&self, ids: &[String]) -> Result<Vec<Run>, StoreError> {
        let json = serde_json::to_string(ids).map_err(|e| StoreError::corrupt("run ids", e))?;
        let rows = sqlx::query("SELECT * FROM runs WHERE id IN (SELECT value FROM json_each(?1))")
            .bind(json)
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::query("load runs"))?;
        let mut runs = self.decode_runs(&rows).await?;
        // Keep the callers' order (newest first, oldest first…).
        let position: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        runs.sort_by_key(|run| position.get(run.id.as_str()).copied().unwrap_or(usize::MAX));
        Ok(runs)
    }

    /// Runs from `SELECT * FROM runs` rows, with their steps.
    async fn decode_runs(&self, rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<Run>, StoreError> {
        let ids: Vec<String> = rows.iter().map(|r| r.get("id")).collect();
        let mut steps = self.load_steps(&ids).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.get("id");
                decode_run(row, steps.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    /// The steps of several runs, in one query.
    async fn load_steps(&self, run_ids: &[String]) -> Result<HashMap<String, Vec<StepRun>>, StoreError> {
        let mut by_run: HashMap<String, Vec<StepRun>> = HashMap::with_capacity(run_ids.len());
        if run_ids.is_empty() {
            return Ok(by_run);
        }
        let ids = serde_json::to_string(run_ids).map_err(|e| StoreError::corrupt("run ids", e))?;
        let rows = sqlx::query(
            "SELECT run_id, name, kind, needs, config, state, attempts, not_before, outputs, error, note, \
             started_at, finished_at FROM steps WHERE run_id IN (SELECT value FROM json_each(?1)) \
             ORDER BY run_id, position",
        )
        .bind(ids)
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::query("load steps"))?;
        for row in &rows {
            by_run.entry(row.get("run_id")).or_default().push(decode_step(row)?);
        }
        Ok(by_run)
    }
}

struct RunInsert<'a> {
    inbox_id: Option<i64>,
    plan: &'a Plan,
    digest: Option<&'a str>,
    origin: RunOrigin,
    bypass_hold: bool,
}

async fn insert_run(
    tx: &mut sqlx::SqliteConnection,
    run: RunInsert<'_>,
    now: Millis,
) -> Result<Option<String>, StoreError> {
    let id = uuid::Uuid::now_v7().to_string();
    let plan = run.plan;
    let plan_json = serde_json::to_string(plan).map_err(|e| StoreError::corrupt("run plan", e))?;
    let concurrency = match plan.target.concurrency {
        gantry_workflows::config::Concurrency::Supersede => "supersede",
        gantry_workflows::config::Concurrency::Queue => "queue",
    };
    let inserted = sqlx::query(
        "INSERT INTO runs (id, inbox_id, app, environment, pipeline, state, digest, plan, origin, bypass_hold, concurrency, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8, ?9, ?10, ?11, ?11) ON CONFLICT DO NOTHING",
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
    .bind(concurrency)
    .bind(now)
    .execute(&mut *tx)
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
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
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
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("insert step"))?;
    }
    Ok(Some(id))
}

/// Decides every pending step whose needs have all finished (ready, or cancelled when its
/// condition is false — which may decide further steps), then derives the run's state.
async fn settle(tx: &mut sqlx::SqliteConnection, run_id: &str, now: Millis) -> Result<RunState, StoreError> {
    let settle_data: (Option<String>, Option<String>) = sqlx::query_as(concat!("SELECT ", settle_columns!()))
        .bind(run_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::query("read run steps"))?;
    settle_from(tx, run_id, now, settle_data, None, Commit::ByCaller).await.map(|(state, _)| state)
}

/// Who ends the transaction `settle_from` writes in.
#[derive(Debug, Clone, Copy)]
enum Commit<'a> {
    /// The caller (a sqlx transaction).
    ByCaller,
    /// `settle_from`, with its last statements: the transaction was begun in SQL.
    InSql,
    /// The same, and in the same round trip a claim of the next step for `owner`, whose row
    /// `settle_from` returns.
    InSqlThenClaim { owner: &'a str, at: Millis, lease_until: Millis },
}

/// `settle` on steps and run state already read (`settle_columns!`); `changed` is a step whose
/// new state the reading may predate (it was read by the statement that changed it).
async fn settle_from(
    tx: &mut sqlx::SqliteConnection,
    run_id: &str,
    now: Millis,
    (steps_json, run_state): (Option<String>, Option<String>),
    changed: Option<(&str, StepState)>,
    commit: Commit<'_>,
) -> Result<(RunState, Option<SqliteRow>), StoreError> {
    let current = run_state.ok_or_else(|| StoreError::NotFound { what: format!("run {run_id}") })?;
    let current = RunState::parse(&current).ok_or_else(|| StoreError::corrupt("run state", &current))?;
    let rows: Vec<(String, String, String, Option<String>, i64)> =
        serde_json::from_str(steps_json.as_deref().unwrap_or("[]")).map_err(|e| StoreError::corrupt("run steps", e))?;
    let mut steps = Vec::with_capacity(rows.len());
    let mut started = false;
    for (name, needs, state, condition, attempts) in rows {
        let mut state = StepState::parse(&state).ok_or_else(|| StoreError::corrupt("step state", &state))?;
        if let Some((changed, new_state)) = changed
            && changed == name
        {
            state = new_state;
        }
        let needs: Vec<String> = serde_json::from_str(&needs).map_err(|e| StoreError::corrupt("step needs", e))?;
        started |= attempts > 0 || !matches!(state, StepState::Pending | StepState::Ready);
        steps.push(SettleStep { name, needs, state, condition });
    }
    let mut ready = Vec::new();
    for decision in decide_pending(&mut steps) {
        match decision {
            PendingDecision::Ready { name } => ready.push(name),
            PendingDecision::NotRun { name, note } => {
                sqlx::query(
                    "UPDATE steps SET state = 'cancelled', note = ?3, finished_at = ?4 WHERE run_id = ?1 AND name = ?2",
                )
                .bind(run_id)
                .bind(&name)
                .bind(note)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("mark step not run"))?;
            }
        }
    }
    let state = derive_run_state(current, started, steps.iter().map(|step| step.state));
    let error = (state == RunState::Failed).then(|| failed_steps_error(&steps));
    let ready = serde_json::to_string(&ready).map_err(|e| StoreError::corrupt("ready steps", e))?;
    // Both statements in one round trip: the steps now ready, and the run's state (and the
    // COMMIT of a transaction begun in SQL).
    macro_rules! settle_updates {
        () => {
            "UPDATE steps SET state = 'ready', not_before = ?3 \
             WHERE run_id = ?1 AND name IN (SELECT value FROM json_each(?5)); \
             UPDATE runs SET state = ?2, updated_at = ?3, \
             error = CASE WHEN ?2 = 'failed' THEN COALESCE(error, ?4) WHEN ?2 = 'cancelled' THEN error ELSE NULL END, \
             finished_at = CASE WHEN ?2 IN ('succeeded', 'failed', 'cancelled') THEN COALESCE(finished_at, ?3) \
             ELSE NULL END WHERE id = ?1"
        };
    }
    let updates = match commit {
        Commit::ByCaller => sqlx::query(settle_updates!()),
        Commit::InSql => sqlx::query(concat!(settle_updates!(), "; COMMIT")),
        Commit::InSqlThenClaim { .. } => {
            sqlx::query(concat!(settle_updates!(), "; COMMIT; ", claim_statement!("?6", "?8", "?7")))
        }
    };
    let mut updates = updates.bind(run_id).bind(state.as_str()).bind(now).bind(error).bind(ready);
    if let Commit::InSqlThenClaim { owner, at, lease_until } = commit {
        updates = updates.bind(owner).bind(lease_until).bind(at);
    }
    let claimed = updates.fetch_all(&mut *tx).await.map_err(StoreError::query("update run state"))?.pop();
    Ok((state, claimed))
}

/// The step a claim statement returned (`row`), the run marked running when it is not yet.
///
/// The claim is one statement, returning with it what the step needs to run (its run's
/// plan, the outputs of the run's finished steps) and the run's state, so that the run
/// is marked running by a second statement only when it is not already. Between the two
/// the run may show its earlier state; nothing depends on it (admission counts pending,
/// running and waiting runs alike, and `settle` derives the state again), and a crash
/// there leaves a running step that `recover` hands out again.
async fn claimed_step(
    conn: &mut SqliteConnection,
    row: &sqlx::sqlite::SqliteRow,
    now: Millis,
) -> Result<ClaimedStep, StoreError> {
    let run_id: String = row.get("run_id");
    if matches!(row.get::<&str, _>("run_state"), "pending" | "waiting") {
        sqlx::query(
            "UPDATE runs SET state = 'running', updated_at = ?2 WHERE id = ?1 AND state IN ('pending', 'waiting')",
        )
        .bind(&run_id)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::query("mark run running"))?;
    }
    let outputs: serde_json::Map<String, serde_json::Value> = match row.get::<Option<&str>, _>("done") {
        Some(done) => serde_json::from_str(done).map_err(|e| StoreError::corrupt("step outputs", e))?,
        None => serde_json::Map::new(),
    };
    Ok(ClaimedStep {
        run_id,
        name: row.get("name"),
        kind: row.get("kind"),
        config: serde_json::from_str(row.get::<&str, _>("config"))
            .map_err(|e| StoreError::corrupt("step config", e))?,
        attempt: row.get::<i64, _>("attempts") as u32,
        plan: serde_json::from_str(row.get::<&str, _>("plan")).map_err(|e| StoreError::corrupt("run plan", e))?,
        digest: row.get("digest"),
        run_created_at: row.get("run_created_at"),
        outputs,
        progress: row
            .get::<Option<&str>, _>("outputs")
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| StoreError::corrupt("step outputs", e))?,
        max_attempts: row.get::<Option<i64>, _>("max_attempts").map(|v| v as u32),
        backoff_ms: row.get::<Option<i64>, _>("backoff_ms").map(|v| v as u64),
        timeout_ms: row.get::<Option<i64>, _>("timeout_ms").map(|v| v as u64),
        started_at: row.get::<Option<i64>, _>("started_at").unwrap_or(now),
    })
}

async fn step_state(tx: &mut sqlx::SqliteConnection, run_id: &str, step: &str) -> Result<StepState, StoreError> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM steps WHERE run_id = ?1 AND name = ?2")
        .bind(run_id)
        .bind(step)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query("read step"))?;
    let state = state.ok_or_else(|| StoreError::NotFound { what: format!("step {step} of run {run_id}") })?;
    StepState::parse(&state).ok_or_else(|| StoreError::corrupt("step state", &state))
}

async fn run_state(tx: &mut sqlx::SqliteConnection, run_id: &str) -> Result<RunState, StoreError> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM runs WHERE id = ?1")
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query("read run"))?;
    let state = state.ok_or_else(|| StoreError::NotFound { what: format!("run {run_id}") })?;
    RunState::parse(&state).ok_or_else(|| StoreError::corrupt("run state", &state))
}

/// Steps that a failure kept from running are decided again (after a retry or a skip).
async fn reopen(tx: &mut sqlx::SqliteConnection, run_id: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE steps SET state = 'pending', note = NULL, finished_at = NULL \
         WHERE run_id = ?1 AND state = 'cancelled' AND note LIKE 'not run: condition%'",
    )
    .bind(run_id)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::query("reopen steps"))?;
    sqlx::query(
        "UPDATE runs SET error = NULL, finished_at = NULL, advanced = 0 WHERE id = ?1 AND state != 'cancelled'",
    )
    .bind(run_id)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::query("reopen run"))?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn keeps_packed_bodies(&self) -> bool {
        true
    }

    async fn insert_delivery(&self, delivery: NewDelivery<'_>) -> Result<Inserted, StoreError> {
        // A batch of one: the same statement, the same packing, the same duplicate look-up.
        let mut answers = self.insert_deliveries(std::slice::from_ref(&delivery)).await?;
        answers.pop().ok_or_else(|| StoreError::corrupt("delivery", "no answer for a stored delivery"))
    }

    async fn insert_deliveries(&self, deliveries: &[NewDelivery<'_>]) -> Result<Vec<Inserted>, StoreError> {
        // Into the inbox journal, one write for the batch; `received_deliveries` moves them
        // into `inbox`.
        match &self.journal {
            Some(journal) => journal.append(&self.reader, deliveries).await,
            None => Err(Journal::not_owned(&self.path)),
        }
    }

    async fn received_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let mut conn = self.writer.lock().await;
        // As many journaled deliveries as one pass takes, so the import keeps intake's pace.
        if let Some(journal) = &self.journal {
            journal.import(&mut conn, limit as usize).await?;
        }
        let rows = sqlx::query(
            "SELECT id, source, delivery_id, event_type, body, body_encoding, received_at FROM inbox \
             WHERE status = 'received' ORDER BY id LIMIT ?1",
        )
        .bind(limit as i64)
        .fetch_all(&mut *conn)
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
        let mut conn = self.writer.lock().await;
        let mut tx = conn.begin().await.map_err(StoreError::query("begin"))?;
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
        sqlx::query("UPDATE inbox SET status = ?2, detail = ?3, processed_at = ?4 WHERE id = ?1")
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
        if let Some(journal) = &self.journal
            && let Some(pending) = journal.pending_status(source, delivery_id).await
        {
            return Ok(Some(pending));
        }
        let row = sqlx::query("SELECT status, detail FROM inbox WHERE source = ?1 AND delivery_id = ?2")
            .bind(source)
            .bind(delivery_id)
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::query("read delivery"))?;
        Ok(row.map(|row| (row.get("status"), row.get("detail"))))
    }

    async fn create_run(&self, run: NewRun<'_>) -> Result<Option<String>, StoreError> {
        let mut conn = self.writer.lock().await;
        let mut tx = conn.begin().await.map_err(StoreError::query("begin"))?;
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

    async fn recover(&self, owner: &str, now: Millis) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE steps SET state = 'ready', lease_owner = NULL, lease_until = NULL, not_before = ?2 \
             WHERE state = 'running' AND (lease_owner IS NULL OR lease_owner != ?1 OR lease_until < ?2)",
        )
        .bind(owner)
        .bind(now)
        .execute(&mut *self.writer.lock().await)
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
        let mut conn = self.writer.lock().await;
        let claimed = sqlx::query(claim_statement!("?1", "?2", "?3"))
            .bind(owner)
            .bind(now)
            .bind(lease_until)
            .fetch_optional(&mut *conn)
            .await
            .map_err(StoreError::query("claim step"))?;
        match claimed {
            Some(row) => claimed_step(&mut conn, &row, now).await.map(Some),
            None => Ok(None),
        }
    }

    async fn finish_step(&self, run_id: &str, step: &str, record: StepRecord, now: Millis) -> Result<(), StoreError> {
        self.finish(run_id, step, record, now, None).await.map(|_| ())
    }

    async fn finish_and_claim(
        &self,
        owner: &str,
        run_id: &str,
        step: &str,
        record: StepRecord,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Option<ClaimedStep>, StoreError> {
        self.finish(run_id, step, record, now, Some((owner, lease_until))).await
    }

    async fn next_wakeup(&self) -> Result<Option<Millis>, StoreError> {
        sqlx::query_scalar(
            "SELECT MIN(not_before) FROM steps INDEXED BY steps_claimable WHERE state IN ('ready', 'waiting')",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(StoreError::query("next wakeup"))
    }

    async fn list_runs(&self, limit: u32) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query("SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT ?1")
            .bind(limit as i64)
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::query("list runs"))?;
        self.decode_runs(&rows).await
    }

    async fn get_run(&self, id: &str) -> Result<Option<Run>, StoreError> {
        let Some(row) = sqlx::query("SELECT * FROM runs WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::query("get run"))?
        else {
            return Ok(None);
        };
        let mut steps = self.load_steps(&[id.to_string()]).await?;
        decode_run(&row, steps.remove(id).unwrap_or_default()).map(Some)
    }

    async fn admit(&self, now: Millis) -> Result<Admission, StoreError> {
        // Most passes find nothing to do: look without taking the writer.
        let anything_queued: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM runs WHERE admitted = 0 AND state = 'pending')")
                .fetch_one(&self.reader)
                .await
                .map_err(StoreError::query("look for queued runs"))?;
        if !anything_queued {
            return Ok(Admission::default());
        }
        let mut conn = self.writer.lock().await;
        let mut tx = conn.begin().await.map_err(StoreError::query("begin"))?;
        // Only the runs the decision can act on, so that a pass costs the number of (app,
        // environment) queues, not their length: every run of a `supersede` queue (all but the
        // newest are cancelled, once), and of a `queue` queue its oldest run and any rollbacks.
        let queued = sqlx::query(
            "SELECT id, app, environment, concurrency, bypass_hold, created_at FROM runs \
             WHERE admitted = 0 AND state = 'pending' AND (concurrency = 'supersede' OR bypass_hold = 1) \
             UNION \
             SELECT r.id, r.app, r.environment, r.concurrency, r.bypass_hold, r.created_at \
             FROM (SELECT DISTINCT app, environment FROM runs WHERE admitted = 0 AND state = 'pending') g \
             JOIN runs r ON r.id = (SELECT h.id FROM runs h WHERE h.admitted = 0 AND h.state = 'pending' \
                                      AND h.app = g.app AND h.environment = g.environment \
                                    ORDER BY h.created_at, h.id LIMIT 1) \
             ORDER BY created_at, id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::query("list queued runs"))?;
        let mut admission = Admission::default();
        if queued.is_empty() {
            return Ok(admission);
        }
        let busy: std::collections::HashSet<(String, String)> = sqlx::query(
            "SELECT DISTINCT app, environment FROM runs WHERE admitted = 1 AND state IN ('pending', 'running', 'waiting')",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::query("list busy environments"))?
        .iter()
        .map(|row| (row.get("app"), row.get("environment")))
        .collect();
        let holds: Vec<(String, String)> = sqlx::query("SELECT environment, app FROM holds")
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::query("list holds"))?
            .iter()
            .map(|row| (row.get("environment"), row.get("app")))
            .collect();
        let queued: Vec<QueuedRun> = queued
            .iter()
            .map(|row| QueuedRun {
                id: row.get("id"),
                app: row.get("app"),
                environment: row.get("environment"),
                supersede: row.get::<&str, _>("concurrency") == "supersede",
                bypass_hold: row.get("bypass_hold"),
            })
            .collect();
        let decision = decide_admission(queued, &busy, &holds);
        for (id, newest) in &decision.superseded {
            sqlx::query(
                "UPDATE runs SET state = 'cancelled', error = ?2, updated_at = ?3, finished_at = ?3 WHERE id = ?1",
            )
            .bind(id)
            .bind(format!("superseded by run {newest}: a newer artifact arrived before this one started"))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("supersede run"))?;
            sqlx::query(
                "UPDATE steps SET state = 'cancelled', note = 'superseded', finished_at = ?2 WHERE run_id = ?1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("supersede steps"))?;
            admission.superseded.push(id.clone());
        }
        for id in &decision.admitted {
            sqlx::query("UPDATE runs SET admitted = 1, updated_at = ?2 WHERE id = ?1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("admit run"))?;
            sqlx::query(
                "UPDATE steps SET state = 'ready', not_before = ?2 WHERE run_id = ?1 AND state = 'pending' AND needs = '[]'",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("start admitted run"))?;
            admission.admitted.push(id.clone());
        }
        tx.commit().await.map_err(StoreError::query("commit admission"))?;
        Ok(admission)
    }

    async fn heartbeat(&self, owner: &str, lease_until: Millis) -> Result<u64, StoreError> {
        let result = sqlx::query("UPDATE steps SET lease_until = ?2 WHERE state = 'running' AND lease_owner = ?1")
            .bind(owner)
            .bind(lease_until)
            .execute(&mut *self.writer.lock().await)
            .await
            .map_err(StoreError::query("renew leases"))?;
        Ok(result.rows_affected())
    }

    async fn wake(&self, wait_key: &str, now: Millis) -> Result<u64, StoreError> {
        let result = sqlx::query("UPDATE steps SET not_before = ?2 WHERE state = 'waiting' AND wait_key = ?1")
            .bind(wait_key)
            .bind(now)
            .execute(&mut *self.writer.lock().await)
            .await
            .map_err(StoreError::query("wake steps"))?;
        Ok(result.rows_affected())
    }

    async fn runs_to_advance(&self, limit: u32) -> Result<Vec<Run>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE state = 'succeeded' AND advanced = 0 ORDER BY finished_at LIMIT ?1",
        )
        .bind(limit as i64)
        .fetch_all(&mut *self.writer.lock().await)
        .await
        .map_err(StoreError::query("list runs to advance"))?;
        self.runs_by_ids(&ids).await
    }

    async fn advance(&self, run_id: &str, digest: &str, follow_ups: &[Plan]) -> Result<Vec<String>, StoreError> {
        let now = now_millis();
        let mut conn = self.writer.lock().await;
        let mut tx = conn.begin().await.map_err(StoreError::query("begin"))?;
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
        sqlx::query("UPDATE runs SET advanced = 1 WHERE id = ?1")
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("mark run advanced"))?;
        tx.commit().await.map_err(StoreError::query("commit follow-ups"))?;
        Ok(ids)
    }

    async fn promoted_environments(&self, app: &str, digest: &str) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT DISTINCT environment FROM runs WHERE app = ?1 AND digest = ?2 AND state = 'succeeded'",
        )
        .bind(app)
        .bind(digest)
        .fetch_all(&mut *self.writer.lock().await)
        .await
        .map_err(StoreError::query("list promoted environments"))
    }

    async fn succeeded_runs(&self, app: &str, environment: &str, limit: u32) -> Result<Vec<Run>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE app = ?1 AND environment = ?2 AND state = 'succeeded' ORDER BY finished_at DESC, id DESC LIMIT ?3",
        )
        .bind(app)
        .bind(environment)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::query("list succeeded runs"))?;
        self.runs_by_ids(&ids).await
    }

    async fn cancel_run(&self, run_id: &str, reason: &str, now: Millis) -> Result<(), StoreError> {
        let mut conn = self.writer.lock().await;
        let mut tx = conn.begin().await.map_err(StoreError::query("begin"))?;
        let state = run_state(&mut tx, run_id).await?;
        if state.is_final() {
            return Err(StoreError::Conflict { message: format!("run {run_id} already {state}") });
        }
        sqlx::query("UPDATE runs SET state = 'cancelled', error = ?2, updated_at = ?3, finished_at = ?3 WHERE id = ?1")
            .bind(run_id)
            .bind(format!("cancelled: {reason}"))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("cancel run"))?;
        // A running attempt finishes and records its outcome; nothing else starts.
        sqlx::query(
            "UPDATE steps SET state = 'cancelled', note = ?2, finished_at = ?3 WHERE run_id = ?1 AND state IN ('pending', 'ready', 'waiting')",
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
        let mut conn = self.writer.lock().await;
        let mut tx = conn.begin().await.map_err(StoreError::query("begin"))?;
        if run_state(&mut tx, run_id).await? == RunState::Cancelled {
            return Err(StoreError::Conflict { message: format!("run {run_id} is cancelled") });
        }
        let state = step_state(&mut tx, run_id, step).await?;
        if state != StepState::Failed {
            return Err(StoreError::Conflict {
                message: format!("step {step} is {state}; only a failed step can be retried"),
            });
        }
        sqlx::query("UPDATE steps SET state = 'ready', not_before = ?3, error = NULL, finished_at = NULL WHERE run_id = ?1 AND name = ?2")
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
        let mut conn = self.writer.lock().await;
        let mut tx = conn.begin().await.map_err(StoreError::query("begin"))?;
        let run = run_state(&mut tx, run_id).await?;
        if run == RunState::Cancelled || run == RunState::Succeeded {
            return Err(StoreError::Conflict { message: format!("run {run_id} is {run}") });
        }
        let state = step_state(&mut tx, run_id, step).await?;
        if matches!(state, StepState::Running | StepState::Succeeded | StepState::Skipped) {
            return Err(StoreError::Conflict { message: format!("step {step} is {state}; it cannot be skipped") });
        }
        sqlx::query("UPDATE steps SET state = 'skipped', note = ?3, wait_key = NULL, finished_at = ?4 WHERE run_id = ?1 AND name = ?2")
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
        let mut conn = self.writer.lock().await;
        let mut tx = conn.begin().await.map_err(StoreError::query("begin"))?;
        let state = step_state(&mut tx, run_id, step).await?;
        if !matches!(state, StepState::Pending | StepState::Ready | StepState::Waiting) {
            return Err(StoreError::Conflict {
                message: format!("step {step} is {state}; there is nothing to approve"),
            });
        }
        let outputs: Option<String> = sqlx::query_scalar("SELECT outputs FROM steps WHERE run_id = ?1 AND name = ?2")
            .bind(run_id)
            .bind(step)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::query("read step outputs"))?;
        let mut progress = match outputs.as_deref().map(serde_json::from_str::<serde_json::Value>) {
            Some(Ok(serde_json::Value::Object(map))) => map,
            _ => serde_json::Map::new(),
        };
        progress.insert("approved_by".into(), approver.into());
        progress.insert("approved_at".into(), now.into());
        if let Some(comment) = comment {
            progress.insert("comment".into(), comment.into());
        }
        sqlx::query("UPDATE steps SET outputs = ?3, not_before = MIN(not_before, ?4) WHERE run_id = ?1 AND name = ?2")
            .bind(run_id)
            .bind(step)
            .bind(serde_json::Value::Object(progress).to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("record approval"))?;
        tx.commit().await.map_err(StoreError::query("commit approval"))?;
        Ok(())
    }

    async fn hold(&self, hold: &Hold) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO holds (environment, app, reason, digest, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (environment, app) DO UPDATE SET reason = excluded.reason, digest = excluded.digest, created_at = excluded.created_at",
        )
        .bind(&hold.environment)
        .bind(hold.app.as_deref().unwrap_or(""))
        .bind(&hold.reason)
        .bind(hold.digest.as_deref())
        .bind(hold.created_at)
        .execute(&mut *self.writer.lock().await)
        .await
        .map_err(StoreError::query("hold environment"))?;
        Ok(())
    }

    async fn release(&self, environment: &str, app: Option<&str>) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM holds WHERE environment = ?1 AND app = ?2")
            .bind(environment)
            .bind(app.unwrap_or(""))
            .execute(&mut *self.writer.lock().await)
            .await
            .map_err(StoreError::query("release environment"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn holds(&self) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query("SELECT * FROM holds ORDER BY environment, app")
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::query("list holds"))?;
        rows.iter().map(decode_hold).collect()
    }

    async fn upsert_change_request(&self, request: NewChangeRequest<'_>) -> Result<(ChangeRequest, bool), StoreError> {
        let now = now_millis();
        let inserted = sqlx::query(
            "INSERT INTO change_requests (forge, repo, branch, base, head_commit, title, body, run_id, state, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9, ?9) ON CONFLICT (forge, repo, branch) DO NOTHING",
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
        .execute(&mut *self.writer.lock().await)
        .await
        .map_err(StoreError::query("insert change request"))?;
        if inserted.rows_affected() == 0 {
            // Already open: keep its number, follow the branch to its current head.
            sqlx::query("UPDATE change_requests SET head_commit = ?4, updated_at = ?5 WHERE forge = ?1 AND repo = ?2 AND branch = ?3")
                .bind(request.forge)
                .bind(request.repo)
                .bind(request.branch)
                .bind(request.head_commit)
                .bind(now)
                .execute(&mut *self.writer.lock().await)
                .await
                .map_err(StoreError::query("update change request"))?;
        }
        let row = sqlx::query("SELECT * FROM change_requests WHERE forge = ?1 AND repo = ?2 AND branch = ?3")
            .bind(request.forge)
            .bind(request.repo)
            .bind(request.branch)
            .fetch_one(&mut *self.writer.lock().await)
            .await
            .map_err(StoreError::query("read change request"))?;
        Ok((decode_change_request(&row)?, inserted.rows_affected() == 1))
    }

    async fn change_requests(&self, run_id: &str) -> Result<Vec<ChangeRequest>, StoreError> {
        let rows = sqlx::query("SELECT * FROM change_requests WHERE run_id = ?1 ORDER BY id")
            .bind(run_id)
            .fetch_all(&self.reader)
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
        let row = sqlx::query("SELECT * FROM change_requests WHERE forge = ?1 AND repo = ?2 AND branch = ?3")
            .bind(forge)
            .bind(repo)
            .bind(branch)
            .fetch_optional(&mut *self.writer.lock().await)
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
            "UPDATE change_requests SET state = ?2, head_commit = COALESCE(?3, head_commit), \
             updated_at = ?4 WHERE id = ?1",
        )
        .bind(id)
        .bind(state)
        .bind(head_commit)
        .bind(now_millis())
        .execute(&mut *self.writer.lock().await)
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
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::query("list last succeeded runs"))?;
        self.decode_runs(&rows).await
    }

    async fn observe_ref(&self, event: &RefObservation) -> Result<RefOrder, StoreError> {
        // The single writer connection serializes this transaction with every other write.
        let mut conn = self.writer.lock().await;
        let mut tx = conn.begin().await.map_err(StoreError::query("begin"))?;
        let rows = sqlx::query(
            "SELECT inbox_id, delivery, sha, before_sha, deleted, event_time FROM ref_events \
             WHERE forge = ?1 AND repo = ?2 AND git_ref = ?3 ORDER BY id DESC LIMIT ?4",
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
                 event_time, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
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
                "DELETE FROM ref_events WHERE forge = ?1 AND repo = ?2 AND git_ref = ?3 AND id NOT IN ( \
                 SELECT id FROM ref_events WHERE forge = ?1 AND repo = ?2 AND git_ref = ?3 ORDER BY id DESC LIMIT ?4)",
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

    async fn holds_in(store: &SqliteStore) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM holds").fetch_one(&mut *store.writer.lock().await).await.unwrap()
    }

    fn pushes(ids: &[String]) -> Vec<NewDelivery<'_>> {
        ids.iter()
            .map(|id| NewDelivery {
                source: "github",
                delivery_id: id,
                event_type: "push",
                body: br#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567"}"#,
                packed_body: None,
                status: DeliveryStatus::Received,
                detail: None,
            })
            .collect()
    }

    fn new_ids(answers: &[Inserted]) -> Vec<i64> {
        answers
            .iter()
            .map(|answer| match answer {
                Inserted::New(id) => *id,
                other => panic!("a fresh delivery was answered {other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn an_import_the_database_refuses_keeps_every_delivery_journaled_until_it_goes_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("gantry.db")).await.unwrap();
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON inbox WHEN NEW.delivery_id = 'd-140' \
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .execute(&mut *store.writer.lock().await)
        .await
        .unwrap();
        let ids: Vec<String> = (0..150).map(|i| format!("d-{i}")).collect();
        let journaled = new_ids(&store.insert_deliveries(&pushes(&ids)).await.unwrap());
        // Rows 0..128 went in by the first two commands before the third was refused.
        assert!(store.received_deliveries(200).await.is_err());
        let rows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM inbox").fetch_one(&mut *store.writer.lock().await).await.unwrap();
        assert_eq!(rows, 0, "part of a refused import was kept");
        let status = store.delivery_status("github", "d-3").await.unwrap();
        assert_eq!(status, Some(("received".to_string(), None)), "a journaled delivery is received");
        sqlx::query("DROP TRIGGER refuse").execute(&mut *store.writer.lock().await).await.unwrap();
        let received = store.received_deliveries(200).await.unwrap();
        assert_eq!(received.iter().map(|d| d.id).collect::<Vec<_>>(), journaled, "each row has its journaled id");
        assert_eq!(received[140].delivery_id, "d-140");
        // Once in `inbox`, a copy is a duplicate of the row.
        let again = store.insert_deliveries(&pushes(&ids[3..4])).await.unwrap();
        assert_eq!(again, [Inserted::Duplicate(journaled[3])]);
    }

    #[tokio::test]
    async fn deliveries_journaled_before_a_crash_are_in_the_inbox_after_reopening_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("gantry.db");
        let ids: Vec<String> = (0..10).map(|i| format!("c-{i}")).collect();
        let store = SqliteStore::open(&database).await.unwrap();
        let journaled = new_ids(&store.insert_deliveries(&pushes(&ids)).await.unwrap());
        // Half of them imported, the rest only journaled, then a write cut short.
        assert_eq!(store.received_deliveries(5).await.unwrap().len(), 5);
        drop(store);
        let journal = journal_files(dir.path());
        assert_eq!(journal.len(), 1, "{journal:?}");
        let mut file = std::fs::OpenOptions::new().append(true).open(&journal[0]).unwrap();
        // A header cut short: a write a crash interrupted, never answered.
        std::io::Write::write_all(&mut file, &[200, 1, 0, 0, 9, 9]).unwrap();
        drop(file);

        let store = SqliteStore::open(&database).await.unwrap();
        let received = store.received_deliveries(100).await.unwrap();
        assert_eq!(received.iter().map(|d| d.id).collect::<Vec<_>>(), journaled, "each delivery once, in order");
        assert!(!journal[0].exists(), "the imported generation was deleted");
        // New deliveries continue the ids; old ones are duplicates.
        let more: Vec<String> = vec!["c-3".into(), "c-10".into()];
        let answers = store.insert_deliveries(&pushes(&more)).await.unwrap();
        assert_eq!(answers, [Inserted::Duplicate(journaled[3]), Inserted::New(journaled[9] + 1)]);
    }

    #[tokio::test]
    async fn a_journaled_delivery_reports_the_status_it_was_stored_with() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("gantry.db")).await.unwrap();
        let ids = vec!["i-1".to_string()];
        let ignored = NewDelivery {
            status: DeliveryStatus::Ignored,
            detail: Some("no parser for this event"),
            ..pushes(&ids)[0].clone()
        };
        assert!(matches!(store.insert_delivery(ignored).await.unwrap(), Inserted::New(_)));
        let expected = Some(("ignored".to_string(), Some("no parser for this event".to_string())));
        assert_eq!(store.delivery_status("github", "i-1").await.unwrap(), expected, "journaled");
        assert!(store.received_deliveries(10).await.unwrap().is_empty(), "an ignored delivery is not for intake");
        assert_eq!(store.delivery_status("github", "i-1").await.unwrap(), expected, "in the inbox");
    }

    #[tokio::test]
    async fn a_second_store_on_the_same_database_reads_but_stores_no_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("gantry.db");
        let owner = SqliteStore::open(&database).await.unwrap();
        let ids: Vec<String> = vec!["o-1".into()];
        owner.insert_deliveries(&pushes(&ids)).await.unwrap();
        let other = SqliteStore::open(&database).await.unwrap();
        let error = other.insert_deliveries(&pushes(&ids)).await.unwrap_err().to_string();
        assert!(error.contains("another gantry process"), "{error}");
        assert!(other.list_runs(10).await.unwrap().is_empty());
        assert_eq!(owner.received_deliveries(10).await.unwrap().len(), 1, "the owner's journal was left alone");
    }

    #[tokio::test]
    async fn a_wholly_imported_generation_gives_way_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("gantry.db");
        let store = SqliteStore::open(&database).await.unwrap();
        store.journal.as_ref().unwrap().rotate_at(1);
        let first = journal_files(dir.path());
        let ids: Vec<String> = (0..4).map(|i| format!("r-{i}")).collect();
        let journaled = new_ids(&store.insert_deliveries(&pushes(&ids[..2])).await.unwrap());
        // Not all imported yet: the generation stays.
        assert_eq!(store.received_deliveries(1).await.unwrap().len(), 1);
        assert_eq!(journal_files(dir.path()), first);
        assert_eq!(store.received_deliveries(10).await.unwrap().len(), 2);
        let second = journal_files(dir.path());
        assert_ne!(second, first, "a new generation started");
        assert_eq!(second.len(), 1);
        let answers = store.insert_deliveries(&pushes(&ids)).await.unwrap();
        assert_eq!(answers[..2], [Inserted::Duplicate(journaled[0]), Inserted::Duplicate(journaled[1])]);
        drop(store);
        let store = SqliteStore::open(&database).await.unwrap();
        let received = store.received_deliveries(10).await.unwrap();
        let names: Vec<&str> = received.iter().map(|d| d.delivery_id.as_str()).collect();
        assert_eq!(names, ["r-0", "r-1", "r-2", "r-3"]);
    }

    fn journal_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("-inbox.0"))
            .collect();
        files.sort();
        files
    }

    #[tokio::test]
    async fn a_transaction_begun_in_sql_and_left_open_is_rolled_back_by_the_next_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("gantry.db")).await.unwrap();
        {
            let mut conn = store.writer.lock().await;
            conn.begin_in_sql();
            sqlx::query("BEGIN; INSERT INTO holds (environment, reason, created_at) VALUES ('prod', 'half', 1)")
                .execute(&mut *conn)
                .await
                .unwrap();
            // Dropped here without COMMIT, as by an error or a cancelled future.
        }
        assert_eq!(holds_in(&store).await, 0, "the unfinished insert reached the next holder");
        // The connection is usable again: a new transaction begins and commits.
        let mut conn = store.writer.lock().await;
        conn.begin_in_sql();
        sqlx::query("BEGIN; INSERT INTO holds (environment, reason, created_at) VALUES ('prod', 'whole', 1); COMMIT")
            .execute(&mut *conn)
            .await
            .unwrap();
        conn.finished_in_sql();
        drop(conn);
        assert_eq!(holds_in(&store).await, 1);
        let reason: String = sqlx::query_scalar("SELECT reason FROM holds").fetch_one(&store.reader).await.unwrap();
        assert_eq!(reason, "whole");
    }
}
