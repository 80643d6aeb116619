//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go through a single connection (SQLite has one writer anyway, and this keeps our
//! own transactions from ever seeing `SQLITE_BUSY`); reads use a small pool. WAL with
//! `synchronous=NORMAL` makes every commit survive a crash of the process (kill -9) before
//! the call returns; only a power loss can take back the last commits.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use gantry_workflows::Plan;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{
    ClaimedStep, DeliveryStatus, Inserted, NewChangeRequest, NewDelivery, StepRecord, Store,
};
use crate::error::StoreError;
use crate::model::{
    ChangeRequest, Delivery, Millis, Run, RunState, StepRun, StepState, now_millis,
};

/// SQLite-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|source| StoreError::Open {
                url: url.clone(),
                source,
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|source| StoreError::Open {
                url: url.clone(),
                source,
            })?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(StoreError::Migrate)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(|source| StoreError::Open { url, source })?;
        Ok(Self { writer, reader })
    }

    async fn load_steps(
        &self,
        run_ids: &[String],
    ) -> Result<HashMap<String, Vec<StepRun>>, StoreError> {
        let mut by_run: HashMap<String, Vec<StepRun>> = HashMap::new();
        for run_id in run_ids {
            let rows = sqlx::query(
                "SELECT run_id, name, kind, needs, config, state, attempts, not_before, outputs, error, \
                 started_at, finished_at FROM steps WHERE run_id = ?1 ORDER BY position",
            )
            .bind(run_id)
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::query("load steps"))?;
            let steps = rows
                .iter()
                .map(decode_step)
                .collect::<Result<Vec<_>, _>>()?;
            by_run.insert(run_id.clone(), steps);
        }
        Ok(by_run)
    }
}

fn decode_step(row: &sqlx::sqlite::SqliteRow) -> Result<StepRun, StoreError> {
    let state: String = row.get("state");
    Ok(StepRun {
        name: row.get("name"),
        kind: row.get("kind"),
        needs: serde_json::from_str(row.get::<&str, _>("needs"))
            .map_err(|e| StoreError::corrupt("step needs", e))?,
        config: serde_json::from_str(row.get::<&str, _>("config"))
            .map_err(|e| StoreError::corrupt("step config", e))?,
        state: StepState::parse(&state).ok_or_else(|| StoreError::corrupt("step state", &state))?,
        attempts: row.get::<i64, _>("attempts") as u32,
        not_before: row.get("not_before"),
        outputs: row
            .get::<Option<&str>, _>("outputs")
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| StoreError::corrupt("step outputs", e))?,
        error: row.get("error"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
    })
}

fn decode_run(row: &sqlx::sqlite::SqliteRow, steps: Vec<StepRun>) -> Result<Run, StoreError> {
    let state: String = row.get("state");
    Ok(Run {
        id: row.get("id"),
        app: row.get("app"),
        environment: row.get("environment"),
        pipeline: row.get("pipeline"),
        state: RunState::parse(&state).ok_or_else(|| StoreError::corrupt("run state", &state))?,
        digest: row.get("digest"),
        plan: serde_json::from_str(row.get::<&str, _>("plan"))
            .map_err(|e| StoreError::corrupt("run plan", e))?,
        error: row.get("error"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        finished_at: row.get("finished_at"),
        steps,
    })
}

fn decode_change_request(row: &sqlx::sqlite::SqliteRow) -> ChangeRequest {
    ChangeRequest {
        id: row.get("id"),
        forge: row.get("forge"),
        repo: row.get("repo"),
        branch: row.get("branch"),
        base: row.get("base"),
        head_commit: row.get("head_commit"),
        title: row.get("title"),
        body: row.get("body"),
        run_id: row.get("run_id"),
        state: row.get("state"),
        created_at: row.get("created_at"),
    }
}

async fn insert_run(
    tx: &mut sqlx::SqliteConnection,
    inbox_id: Option<i64>,
    plan: &Plan,
    now: Millis,
) -> Result<Option<String>, StoreError> {
    let id = uuid::Uuid::now_v7().to_string();
    let plan_json = serde_json::to_string(plan).map_err(|e| StoreError::corrupt("run plan", e))?;
    let inserted = sqlx::query(
        "INSERT INTO runs (id, inbox_id, app, environment, pipeline, state, plan, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?7) ON CONFLICT DO NOTHING",
    )
    .bind(&id)
    .bind(inbox_id)
    .bind(&plan.app)
    .bind(&plan.environment)
    .bind(&plan.pipeline)
    .bind(&plan_json)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::query("insert run"))?;
    if inserted.rows_affected() == 0 {
        return Ok(None);
    }
    for (position, step) in plan.steps.iter().enumerate() {
        let state = if step.needs.is_empty() {
            StepState::Ready
        } else {
            StepState::Pending
        };
        sqlx::query(
            "INSERT INTO steps (run_id, name, kind, position, needs, config, state, not_before) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(&id)
        .bind(&step.name)
        .bind(&step.kind)
        .bind(position as i64)
        .bind(serde_json::to_string(&step.needs).map_err(|e| StoreError::corrupt("step needs", e))?)
        .bind(step.with.to_string())
        .bind(state.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("insert step"))?;
    }
    Ok(Some(id))
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_delivery(&self, delivery: NewDelivery<'_>) -> Result<Inserted, StoreError> {
        let now = now_millis();
        let inserted = sqlx::query(
            "INSERT INTO inbox (source, delivery_id, event_type, body, received_at, status, detail, processed_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE WHEN ?6 = 'received' THEN NULL ELSE ?5 END) \
             ON CONFLICT (source, delivery_id) DO NOTHING RETURNING id",
        )
        .bind(delivery.source)
        .bind(delivery.delivery_id)
        .bind(delivery.event_type)
        .bind(delivery.body)
        .bind(now)
        .bind(delivery.status.as_str())
        .bind(delivery.detail)
        .fetch_optional(&self.writer)
        .await
        .map_err(StoreError::query("insert delivery"))?;
        if let Some(row) = inserted {
            return Ok(Inserted::New(row.get("id")));
        }
        let existing: i64 =
            sqlx::query_scalar("SELECT id FROM inbox WHERE source = ?1 AND delivery_id = ?2")
                .bind(delivery.source)
                .bind(delivery.delivery_id)
                .fetch_one(&self.writer)
                .await
                .map_err(StoreError::query("find delivery"))?;
        Ok(Inserted::Duplicate(existing))
    }

    async fn received_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, source, delivery_id, event_type, body, received_at FROM inbox \
             WHERE status = 'received' ORDER BY id LIMIT ?1",
        )
        .bind(limit as i64)
        .fetch_all(&self.writer)
        .await
        .map_err(StoreError::query("list received deliveries"))?;
        Ok(rows
            .iter()
            .map(|row| Delivery {
                id: row.get("id"),
                source: row.get("source"),
                delivery_id: row.get("delivery_id"),
                event_type: row.get("event_type"),
                body: row.get("body"),
                received_at: row.get("received_at"),
            })
            .collect())
    }

    async fn complete_delivery(
        &self,
        delivery_id: i64,
        status: DeliveryStatus,
        detail: Option<&str>,
        plans: &[Plan],
    ) -> Result<Vec<String>, StoreError> {
        let now = now_millis();
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(StoreError::query("begin"))?;
        let mut ids = Vec::new();
        for plan in plans {
            if let Some(id) = insert_run(&mut tx, Some(delivery_id), plan, now).await? {
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
        tx.commit()
            .await
            .map_err(StoreError::query("commit delivery"))?;
        Ok(ids)
    }

    async fn delivery_status(
        &self,
        source: &str,
        delivery_id: &str,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let row =
            sqlx::query("SELECT status, detail FROM inbox WHERE source = ?1 AND delivery_id = ?2")
                .bind(source)
                .bind(delivery_id)
                .fetch_optional(&self.reader)
                .await
                .map_err(StoreError::query("read delivery"))?;
        Ok(row.map(|row| (row.get("status"), row.get("detail"))))
    }

    async fn create_run(&self, plan: &Plan) -> Result<String, StoreError> {
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(StoreError::query("begin"))?;
        let id = insert_run(&mut tx, None, plan, now_millis())
            .await?
            .ok_or_else(|| StoreError::corrupt("run", "insert without delivery conflicted"))?;
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
        .execute(&self.writer)
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
        let claimed = sqlx::query(
            "UPDATE steps SET state = 'running', attempts = attempts + 1, lease_owner = ?1, lease_until = ?3, \
             started_at = COALESCE(started_at, ?2) \
             WHERE rowid = (SELECT rowid FROM steps WHERE state IN ('ready', 'waiting') AND not_before <= ?2 \
                            ORDER BY not_before LIMIT 1) \
             RETURNING run_id, name, kind, config, attempts",
        )
        .bind(owner)
        .bind(now)
        .bind(lease_until)
        .fetch_optional(&self.writer)
        .await
        .map_err(StoreError::query("claim step"))?;
        let Some(row) = claimed else { return Ok(None) };
        let run_id: String = row.get("run_id");
        sqlx::query("UPDATE runs SET state = 'running', updated_at = ?2 WHERE id = ?1 AND state IN ('pending', 'waiting')")
            .bind(&run_id)
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(StoreError::query("mark run running"))?;
        let run = sqlx::query("SELECT plan, digest, created_at FROM runs WHERE id = ?1")
            .bind(&run_id)
            .fetch_one(&self.writer)
            .await
            .map_err(StoreError::query("load run of claimed step"))?;
        let done = sqlx::query(
            "SELECT name, outputs FROM steps WHERE run_id = ?1 AND state = 'succeeded'",
        )
        .bind(&run_id)
        .fetch_all(&self.writer)
        .await
        .map_err(StoreError::query("load outputs"))?;
        let mut outputs = serde_json::Map::new();
        for step in &done {
            let value = step
                .get::<Option<&str>, _>("outputs")
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| StoreError::corrupt("step outputs", e))?
                .unwrap_or(serde_json::Value::Null);
            outputs.insert(step.get("name"), value);
        }
        Ok(Some(ClaimedStep {
            run_id,
            name: row.get("name"),
            kind: row.get("kind"),
            config: serde_json::from_str(row.get::<&str, _>("config"))
                .map_err(|e| StoreError::corrupt("step config", e))?,
            attempt: row.get::<i64, _>("attempts") as u32,
            plan: serde_json::from_str(run.get::<&str, _>("plan"))
                .map_err(|e| StoreError::corrupt("run plan", e))?,
            digest: run.get("digest"),
            run_created_at: run.get("created_at"),
            outputs,
        }))
    }

    async fn finish_step(
        &self,
        run_id: &str,
        step: &str,
        record: StepRecord,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(StoreError::query("begin"))?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT state FROM steps WHERE run_id = ?1 AND name = ?2")
                .bind(run_id)
                .bind(step)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query("read step"))?;
        if current.as_deref() != Some(StepState::Running.as_str()) {
            // The step was cancelled or recovered meanwhile; this attempt's result is stale.
            return Ok(());
        }
        let mut run_error = None;
        match &record {
            StepRecord::Succeeded {
                outputs,
                pin_digest,
            } => {
                sqlx::query(
                    "UPDATE steps SET state = 'succeeded', outputs = ?3, error = NULL, finished_at = ?4, \
                     lease_owner = NULL, lease_until = NULL WHERE run_id = ?1 AND name = ?2",
                )
                .bind(run_id)
                .bind(step)
                .bind(outputs.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("record step success"))?;
                if let Some(digest) = pin_digest {
                    sqlx::query("UPDATE runs SET digest = ?2 WHERE id = ?1 AND digest IS NULL")
                        .bind(run_id)
                        .bind(digest)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::query("pin digest"))?;
                }
            }
            StepRecord::Waiting {
                until,
                outputs,
                reason,
            } => {
                let mut progress = match outputs {
                    Some(serde_json::Value::Object(map)) => map.clone(),
                    _ => serde_json::Map::new(),
                };
                progress.insert(
                    "waiting_for".into(),
                    serde_json::Value::String(reason.clone()),
                );
                sqlx::query(
                    "UPDATE steps SET state = 'waiting', not_before = ?3, outputs = ?4, lease_owner = NULL, \
                     lease_until = NULL WHERE run_id = ?1 AND name = ?2",
                )
                .bind(run_id)
                .bind(step)
                .bind(until)
                .bind(serde_json::Value::Object(progress).to_string())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("record step wait"))?;
            }
            StepRecord::Retry { at, error } => {
                sqlx::query(
                    "UPDATE steps SET state = 'ready', not_before = ?3, error = ?4, lease_owner = NULL, \
                     lease_until = NULL WHERE run_id = ?1 AND name = ?2",
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
                    "UPDATE steps SET state = 'failed', error = ?3, finished_at = ?4, lease_owner = NULL, \
                     lease_until = NULL WHERE run_id = ?1 AND name = ?2",
                )
                .bind(run_id)
                .bind(step)
                .bind(error)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("record step failure"))?;
                sqlx::query(
                    "UPDATE steps SET state = 'cancelled', finished_at = ?2 \
                     WHERE run_id = ?1 AND state IN ('pending', 'ready', 'waiting')",
                )
                .bind(run_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("cancel remaining steps"))?;
                run_error = Some(format!("step {step} failed: {error}"));
            }
        }
        // Promote pending steps whose needs are all done, then derive the run's state.
        let rows = sqlx::query("SELECT name, needs, state FROM steps WHERE run_id = ?1")
            .bind(run_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::query("read run steps"))?;
        let mut states: HashMap<String, StepState> = HashMap::new();
        let mut needs: HashMap<String, Vec<String>> = HashMap::new();
        for row in &rows {
            let name: String = row.get("name");
            let state: String = row.get("state");
            states.insert(
                name.clone(),
                StepState::parse(&state)
                    .ok_or_else(|| StoreError::corrupt("step state", &state))?,
            );
            needs.insert(
                name,
                serde_json::from_str(row.get::<&str, _>("needs"))
                    .map_err(|e| StoreError::corrupt("step needs", e))?,
            );
        }
        let done = |name: &str| {
            matches!(
                states.get(name),
                Some(StepState::Succeeded | StepState::Skipped)
            )
        };
        let newly_ready: Vec<String> = states
            .iter()
            .filter(|(name, state)| {
                **state == StepState::Pending && needs[*name].iter().all(|n| done(n))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &newly_ready {
            sqlx::query(
                "UPDATE steps SET state = 'ready', not_before = ?3 WHERE run_id = ?1 AND name = ?2",
            )
            .bind(run_id)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("mark step ready"))?;
            states.insert(name.clone(), StepState::Ready);
        }
        let run_state = derive_run_state(states.values().copied());
        sqlx::query(
            "UPDATE runs SET state = ?2, updated_at = ?3, error = COALESCE(?4, error), \
             finished_at = CASE WHEN ?2 IN ('succeeded', 'failed', 'cancelled') THEN ?3 ELSE NULL END \
             WHERE id = ?1",
        )
        .bind(run_id)
        .bind(run_state.as_str())
        .bind(now)
        .bind(run_error)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("update run state"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit step record"))?;
        Ok(())
    }

    async fn next_wakeup(&self) -> Result<Option<Millis>, StoreError> {
        sqlx::query_scalar("SELECT MIN(not_before) FROM steps WHERE state IN ('ready', 'waiting')")
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
        let ids: Vec<String> = rows.iter().map(|r| r.get("id")).collect();
        let mut steps = self.load_steps(&ids).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.get("id");
                decode_run(row, steps.remove(&id).unwrap_or_default())
            })
            .collect()
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

    async fn upsert_change_request(
        &self,
        request: NewChangeRequest<'_>,
    ) -> Result<(ChangeRequest, bool), StoreError> {
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
        .execute(&self.writer)
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
                .execute(&self.writer)
                .await
                .map_err(StoreError::query("update change request"))?;
        }
        let row = sqlx::query(
            "SELECT * FROM change_requests WHERE forge = ?1 AND repo = ?2 AND branch = ?3",
        )
        .bind(request.forge)
        .bind(request.repo)
        .bind(request.branch)
        .fetch_one(&self.writer)
        .await
        .map_err(StoreError::query("read change request"))?;
        Ok((decode_change_request(&row), inserted.rows_affected() == 1))
    }

    async fn change_requests(&self, run_id: &str) -> Result<Vec<ChangeRequest>, StoreError> {
        let rows = sqlx::query("SELECT * FROM change_requests WHERE run_id = ?1 ORDER BY id")
            .bind(run_id)
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::query("list change requests"))?;
        Ok(rows.iter().map(decode_change_request).collect())
    }
}

/// A run's state follows from its steps' states.
pub(crate) fn derive_run_state(states: impl Iterator<Item = StepState>) -> RunState {
    let (mut any, mut failed, mut active, mut waiting, mut unfinished, mut cancelled) =
        (false, false, false, false, false, false);
    for state in states {
        any = true;
        match state {
            StepState::Failed => failed = true,
            StepState::Running | StepState::Ready => active = true,
            StepState::Waiting => waiting = true,
            StepState::Pending => unfinished = true,
            StepState::Cancelled => cancelled = true,
            StepState::Succeeded | StepState::Skipped => {}
        }
    }
    if failed {
        RunState::Failed
    } else if cancelled {
        RunState::Cancelled
    } else if active {
        RunState::Running
    } else if waiting {
        RunState::Waiting
    } else if unfinished || !any {
        RunState::Pending
    } else {
        RunState::Succeeded
    }
}
