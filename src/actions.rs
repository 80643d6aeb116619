//! HTTP handlers of operator actions: cancel, retry, skip, approve, hold/release, rollback.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use gantry_engine::model::now_millis;
use gantry_engine::store::Hold;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::{ApiError, AppState};

/// Body of actions that take a reason.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why the operator acts.
    #[serde(default)]
    pub reason: Option<String>,
}

fn reason(body: Option<Json<ReasonBody>>, required: bool) -> Result<String, ApiError> {
    match body.and_then(|Json(b)| b.reason).map(|r| r.trim().to_string()).filter(|r| !r.is_empty()) {
        Some(reason) => Ok(reason),
        None if required => Err(ApiError::BadRequest("a non-empty \"reason\" is required".into())),
        None => Ok("operator request".into()),
    }
}

fn done(state: &AppState, body: Value) -> (StatusCode, Json<Value>) {
    state.executor_wake.notify_waiters();
    (StatusCode::OK, Json(body))
}

/// `POST /api/runs/{id}/cancel`
pub async fn cancel_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Option<Json<ReasonBody>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let reason = reason(body, false)?;
    state.store.cancel_run(&id, &reason, now_millis()).await.map_err(ApiError::from_store)?;
    Ok(done(&state, json!({ "run": id, "state": "cancelled", "reason": reason })))
}

/// `POST /api/runs/{id}/steps/{step}/retry`
pub async fn retry_step(
    State(state): State<AppState>,
    Path((id, step)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    state.store.retry_step(&id, &step, now_millis()).await.map_err(ApiError::from_store)?;
    Ok(done(&state, json!({ "run": id, "step": step, "state": "ready" })))
}

/// `POST /api/runs/{id}/steps/{step}/skip` with `{"reason": …}` (required).
pub async fn skip_step(
    State(state): State<AppState>,
    Path((id, step)): Path<(String, String)>,
    body: Option<Json<ReasonBody>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let reason = reason(body, true)?;
    state.store.skip_step(&id, &step, &reason, now_millis()).await.map_err(ApiError::from_store)?;
    Ok(done(&state, json!({ "run": id, "step": step, "state": "skipped", "reason": reason })))
}

/// Body of an approval.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Who approves.
    pub approver: String,
    /// Optional comment.
    #[serde(default)]
    pub comment: Option<String>,
}

/// `POST /api/runs/{id}/steps/{step}/approve` with `{"approver": …, "comment": …}`.
pub async fn approve_step(
    State(state): State<AppState>,
    Path((id, step)): Path<(String, String)>,
    Json(body): Json<ApproveBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if body.approver.trim().is_empty() {
        return Err(ApiError::BadRequest("\"approver\" must not be empty".into()));
    }
    let now = now_millis();
    state
        .store
        .approve_step(&id, &step, body.approver.trim(), body.comment.as_deref(), now)
        .await
        .map_err(ApiError::from_store)?;
    state.store.wake(&gantry_engine::steps::approval_wake_key(&id, &step), now).await?;
    Ok(done(&state, json!({ "run": id, "step": step, "approved_by": body.approver.trim() })))
}

/// `GET /api/holds`
pub async fn list_holds(State(state): State<AppState>) -> Result<Json<Vec<Hold>>, ApiError> {
    Ok(Json(state.store.holds().await?))
}

/// Body of a hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// Only this app (default: every app).
    #[serde(default)]
    pub app: Option<String>,
    /// Why.
    pub reason: String,
}

/// The `?app=` of a release.
#[derive(Debug, Deserialize)]
pub struct AppQuery {
    /// Only this app's hold.
    pub app: Option<String>,
}

/// `PUT /api/holds/{environment}` with `{"reason": …, "app": …}`.
pub async fn hold(
    State(state): State<AppState>,
    Path(environment): Path<String>,
    Json(body): Json<HoldBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if body.reason.trim().is_empty() {
        return Err(ApiError::BadRequest("a non-empty \"reason\" is required".into()));
    }
    let hold = Hold {
        environment: environment.clone(),
        app: body.app.clone(),
        reason: body.reason.trim().to_string(),
        digest: None,
        created_at: now_millis(),
    };
    state.store.hold(&hold).await?;
    Ok(done(&state, json!({ "environment": environment, "app": body.app, "held": true })))
}

/// `DELETE /api/holds/{environment}?app=…`
pub async fn release(
    State(state): State<AppState>,
    Path(environment): Path<String>,
    Query(query): Query<AppQuery>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !state.store.release(&environment, query.app.as_deref()).await? {
        return Err(ApiError::NotFound(format!(
            "no hold on {environment}{}",
            query.app.map(|a| format!(" for {a}")).unwrap_or_default()
        )));
    }
    Ok(done(&state, json!({ "environment": environment, "held": false })))
}

/// Body of a rollback.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// App.
    pub app: String,
    /// Environment.
    pub environment: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/rollbacks` with `{"app": …, "environment": …, "reason": …}`.
pub async fn rollback(
    State(state): State<AppState>,
    Json(body): Json<RollbackBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let reason = body.reason.as_deref().unwrap_or("operator rollback");
    let rollback = gantry_engine::actions::rollback(&state.store, &body.app, &body.environment, reason)
        .await
        .map_err(ApiError::from_store)?;
    let (status, body) = done(
        &state,
        json!({ "run": rollback.run_id, "digest": rollback.digest, "from_digest": rollback.from_digest, "held": true }),
    );
    Ok((if status == StatusCode::OK { StatusCode::CREATED } else { status }, body))
}
