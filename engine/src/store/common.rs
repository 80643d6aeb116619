//! What every store shares beyond the SQL: decoding rows into the model, the decision of which
//! pending steps a finished step unblocks, and the run state that follows from its steps.
//!
//! The stores keep the same columns under the same names, so one set of decoders serves both;
//! each store only says in which SQL dialect it reads and writes them.

use std::collections::HashMap;

use gantry_workflows::condition::{Condition, Outcome};
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::Hold;
use crate::error::StoreError;
use crate::model::{ChangeRequest, Delivery, Millis, Run, RunState, StepRun, StepState};

/// Typed column access on a row of either database, with decoding errors as [`StoreError`]s
/// that name the column.
pub(crate) trait Columns {
    /// A `TEXT` column.
    fn text(&self, column: &str) -> Result<String, StoreError>;
    /// A nullable `TEXT` column.
    fn text_opt(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// An integer column (`INTEGER` in SQLite, `BIGINT` in PostgreSQL).
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn int_opt(&self, column: &str) -> Result<Option<i64>, StoreError>;
    /// A flag (`INTEGER` 0/1 in SQLite, `BOOLEAN` in PostgreSQL).
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
    /// A binary column.
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError>;
}

fn column_error(column: &str, error: sqlx::Error) -> StoreError {
    StoreError::corrupt("column", format!("{column}: {error}"))
}

impl<R> Columns for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.try_get(column).map_err(|e| column_error(column, e))
    }

    fn text_opt(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.try_get(column).map_err(|e| column_error(column, e))
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.try_get(column).map_err(|e| column_error(column, e))
    }

    fn int_opt(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.try_get(column).map_err(|e| column_error(column, e))
    }

    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        self.try_get(column).map_err(|e| column_error(column, e))
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        self.try_get(column).map_err(|e| column_error(column, e))
    }
}

/// Parses a stored JSON document.
pub(crate) fn json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, e))
}

/// Parses a nullable stored JSON document.
pub(crate) fn json_opt<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: Option<String>,
) -> Result<Option<T>, StoreError> {
    text.as_deref().map(|text| json(what, text)).transpose()
}

/// A step from a row with the columns of `steps` that [`StepRun`] shows.
pub(crate) fn decode_step(row: &impl Columns) -> Result<StepRun, StoreError> {
    let state = row.text("state")?;
    Ok(StepRun {
        name: row.text("name")?,
        kind: row.text("kind")?,
        needs: json("step needs", &row.text("needs")?)?,
        config: json("step config", &row.text("config")?)?,
        state: StepState::parse(&state).ok_or_else(|| StoreError::corrupt("step state", &state))?,
        attempts: row.int("attempts")? as u32,
        not_before: row.int("not_before")?,
        outputs: json_opt("step outputs", row.text_opt("outputs")?)?,
        error: row.text_opt("error")?,
        note: row.text_opt("note")?,
        started_at: row.int_opt("started_at")?,
        finished_at: row.int_opt("finished_at")?,
    })
}

/// A run from a `SELECT * FROM runs` row, with its steps.
pub(crate) fn decode_run(row: &impl Columns, steps: Vec<StepRun>) -> Result<Run, StoreError> {
    let state = row.text("state")?;
    Ok(Run {
        id: row.text("id")?,
        app: row.text("app")?,
        environment: row.text("environment")?,
        pipeline: row.text("pipeline")?,
        state: RunState::parse(&state).ok_or_else(|| StoreError::corrupt("run state", &state))?,
        digest: row.text_opt("digest")?,
        plan: json("run plan", &row.text("plan")?)?,
        error: row.text_opt("error")?,
        origin: row.text("origin")?,
        admitted: row.flag("admitted")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        finished_at: row.int_opt("finished_at")?,
        steps,
    })
}

/// A change request from a `SELECT * FROM change_requests` row.
pub(crate) fn decode_change_request(row: &impl Columns) -> Result<ChangeRequest, StoreError> {
    Ok(ChangeRequest {
        id: row.int("id")?,
        forge: row.text("forge")?,
        repo: row.text("repo")?,
        branch: row.text("branch")?,
        base: row.text("base")?,
        head_commit: row.text("head_commit")?,
        title: row.text("title")?,
        body: row.text("body")?,
        run_id: row.text("run_id")?,
        state: row.text("state")?,
        created_at: row.int("created_at")?,
    })
}

/// A hold from a `SELECT * FROM holds` row (an empty app holds every app).
pub(crate) fn decode_hold(row: &impl Columns) -> Result<Hold, StoreError> {
    let app = row.text("app")?;
    Ok(Hold {
        environment: row.text("environment")?,
        app: (!app.is_empty()).then_some(app),
        reason: row.text("reason")?,
        digest: row.text_opt("digest")?,
        created_at: row.int("created_at")?,
    })
}

/// A delivery from an `inbox` row.
pub(crate) fn decode_delivery(row: &impl Columns) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: row.int("id")?,
        source: row.text("source")?,
        delivery_id: row.text("delivery_id")?,
        event_type: row.text("event_type")?,
        body: super::body::unpack(row.text_opt("body_encoding")?.as_deref(), row.bytes("body")?)?,
        received_at: row.int("received_at")?,
    })
}

/// One step of a run as [`decide_pending`] sees it.
#[derive(Debug, Clone)]
pub(crate) struct SettleStep {
    /// Step name.
    pub name: String,
    /// The steps it needs.
    pub needs: Vec<String>,
    /// Current state; updated as decisions are taken.
    pub state: StepState,
    /// Its `if:` condition, if any.
    pub condition: Option<String>,
}

/// What settling decided for one pending step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PendingDecision {
    /// Its needs are final and its condition holds: it may run now.
    Ready {
        /// Step name.
        name: String,
    },
    /// Its needs are final and its condition is false: it is cancelled with this note.
    NotRun {
        /// Step name.
        name: String,
        /// Why (`not run: condition … is false`).
        note: String,
    },
}

/// Decides every pending step whose needs have all finished: ready when its condition holds,
/// cancelled when not — which may in turn decide further steps, so this repeats until nothing
/// changes. `steps` is updated to the decided states; the decisions come in the order taken.
pub(crate) fn decide_pending(steps: &mut [SettleStep]) -> Vec<PendingDecision> {
    let mut decided = Vec::new();
    loop {
        let outcomes: HashMap<&str, Outcome> = steps
            .iter()
            .filter_map(|step| {
                let outcome = match step.state {
                    StepState::Succeeded => Outcome::Succeeded,
                    StepState::Failed => Outcome::Failed,
                    StepState::Skipped => Outcome::Skipped,
                    StepState::Cancelled => Outcome::Cancelled,
                    _ => return None,
                };
                Some((step.name.as_str(), outcome))
            })
            .collect();
        let mut round = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            if step.state != StepState::Pending || !step.needs.iter().all(|n| outcomes.contains_key(n.as_str())) {
                continue;
            }
            let needs: Vec<&str> = step.needs.iter().map(String::as_str).collect();
            let (parsed, text) = match &step.condition {
                Some(text) => (Condition::parse(text).unwrap_or(Condition::Success), text.as_str()),
                None => (Condition::Success, "success()"),
            };
            round.push((i, parsed.evaluate(&needs, &outcomes), text.to_string()));
        }
        if round.is_empty() {
            return decided;
        }
        for (i, run_it, condition) in round {
            let name = steps[i].name.clone();
            if run_it {
                steps[i].state = StepState::Ready;
                decided.push(PendingDecision::Ready { name });
            } else {
                steps[i].state = StepState::Cancelled;
                decided
                    .push(PendingDecision::NotRun { name, note: format!("not run: condition {condition} is false") });
            }
        }
    }
}

/// The error a failed run records: which steps failed.
pub(crate) fn failed_steps_error(steps: &[SettleStep]) -> String {
    let failed: Vec<&str> = steps.iter().filter(|s| s.state == StepState::Failed).map(|s| s.name.as_str()).collect();
    format!("step {} failed", failed.join(", "))
}

/// A run's state follows from its steps' states (a cancelled run stays cancelled).
pub(crate) fn derive_run_state(current: RunState, started: bool, states: impl Iterator<Item = StepState>) -> RunState {
    if current == RunState::Cancelled {
        return RunState::Cancelled;
    }
    let (mut failed, mut active, mut waiting, mut unfinished) = (false, false, false, false);
    for state in states {
        match state {
            StepState::Failed => failed = true,
            StepState::Running | StepState::Ready => active = true,
            StepState::Waiting => waiting = true,
            StepState::Pending => unfinished = true,
            StepState::Succeeded | StepState::Skipped | StepState::Cancelled => {}
        }
    }
    if !started {
        current
    } else if active {
        RunState::Running
    } else if waiting {
        RunState::Waiting
    } else if unfinished {
        RunState::Running
    } else if failed {
        RunState::Failed
    } else {
        RunState::Succeeded
    }
}

/// The progress a waiting step stores: its own progress, plus what it waits for.
pub(crate) fn waiting_progress(outputs: Option<&serde_json::Value>, reason: &str) -> String {
    let mut progress = match outputs {
        Some(serde_json::Value::Object(map)) => map.clone(),
        _ => serde_json::Map::new(),
    };
    progress.insert("waiting_for".into(), serde_json::Value::String(reason.to_string()));
    serde_json::Value::Object(progress).to_string()
}

/// A step's stored outputs with an approval added.
pub(crate) fn approved_progress(outputs: Option<&str>, approver: &str, comment: Option<&str>, now: Millis) -> String {
    let mut progress = match outputs.map(serde_json::from_str::<serde_json::Value>) {
        Some(Ok(serde_json::Value::Object(map))) => map,
        _ => serde_json::Map::new(),
    };
    progress.insert("approved_by".into(), approver.into());
    progress.insert("approved_at".into(), now.into());
    if let Some(comment) = comment {
        progress.insert("comment".into(), comment.into());
    }
    serde_json::Value::Object(progress).to_string()
}

/// The stored name of a plan's concurrency policy.
pub(crate) fn concurrency_name(plan: &gantry_workflows::Plan) -> &'static str {
    match plan.target.concurrency {
        gantry_workflows::config::Concurrency::Supersede => "supersede",
        gantry_workflows::config::Concurrency::Queue => "queue",
    }
}

/// The error a superseded run records.
pub(crate) fn superseded_error(newest: &str) -> String {
    format!("superseded by run {newest}: a newer artifact arrived before this one started")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, needs: &[&str], state: StepState, condition: Option<&str>) -> SettleStep {
        SettleStep {
            name: name.into(),
            needs: needs.iter().map(|n| n.to_string()).collect(),
            state,
            condition: condition.map(str::to_string),
        }
    }

    #[test]
    fn a_finished_need_makes_its_dependents_ready() {
        let mut steps = vec![
            step("a", &[], StepState::Succeeded, None),
            step("b", &["a"], StepState::Pending, None),
            step("c", &["b"], StepState::Pending, None),
        ];
        assert_eq!(decide_pending(&mut steps), [PendingDecision::Ready { name: "b".into() }]);
        assert_eq!(steps[2].state, StepState::Pending);
    }

    #[test]
    fn a_false_condition_cancels_and_cascades() {
        let mut steps = vec![
            step("a", &[], StepState::Failed, None),
            step("b", &["a"], StepState::Pending, None),
            step("cleanup", &["b"], StepState::Pending, Some("always()")),
        ];
        let decisions = decide_pending(&mut steps);
        assert_eq!(
            decisions,
            [
                PendingDecision::NotRun { name: "b".into(), note: "not run: condition success() is false".into() },
                PendingDecision::Ready { name: "cleanup".into() },
            ]
        );
        assert_eq!(failed_steps_error(&steps), "step a failed");
    }

    #[test]
    fn run_state_follows_the_steps() {
        use StepState::*;
        let derive = |states: &[StepState]| derive_run_state(RunState::Running, true, states.iter().copied());
        assert_eq!(derive(&[Succeeded, Running]), RunState::Running);
        assert_eq!(derive(&[Succeeded, Waiting]), RunState::Waiting);
        assert_eq!(derive(&[Failed, Cancelled]), RunState::Failed);
        assert_eq!(derive(&[Succeeded, Skipped]), RunState::Succeeded);
        assert_eq!(derive_run_state(RunState::Cancelled, true, [Succeeded].into_iter()), RunState::Cancelled);
        assert_eq!(derive_run_state(RunState::Pending, false, [Ready].into_iter()), RunState::Pending);
    }

    #[test]
    fn approvals_keep_earlier_progress() {
        let stored = approved_progress(Some(r#"{"waiting_for":"approval"}"#), "alice", Some("ok"), 5);
        let value: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(value["waiting_for"], "approval");
        assert_eq!(value["approved_by"], "alice");
        assert_eq!(value["approved_at"], 5);
        assert_eq!(value["comment"], "ok");
    }
}
