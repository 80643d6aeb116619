//! Wire types of the HTTP API, kept apart from the domain model so either can change
//! without silently changing the other.

use chrono::{DateTime, SecondsFormat, Utc};
use gantry_engine::model::{ChangeRequest, Millis, Run, StepRun};
use serde::Serialize;

fn time(millis: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A run as `GET /api/runs` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunDto {
    pub id: String,
    pub app: String,
    pub environment: String,
    pub pipeline: String,
    pub state: String,
    pub digest: Option<String>,
    pub version: String,
    pub tag: String,
    pub image: String,
    pub trigger: String,
    pub source: SourceDto,
    pub error: Option<String>,
    pub origin: String,
    pub admitted: bool,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    pub steps: Vec<StepDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_requests: Option<Vec<ChangeRequestDto>>,
}

/// The event a run came from.
#[derive(Debug, Clone, Serialize)]
pub struct SourceDto {
    pub repo: String,
    #[serde(rename = "ref")]
    pub ref_name: Option<String>,
    pub sha: Option<String>,
    pub actor: Option<String>,
}

/// One step of a run.
#[derive(Debug, Clone, Serialize)]
pub struct StepDto {
    pub name: String,
    pub kind: String,
    pub needs: Vec<String>,
    pub state: String,
    pub attempts: u32,
    pub outputs: serde_json::Value,
    pub error: Option<String>,
    pub note: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// A change request a run opened.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeRequestDto {
    pub id: i64,
    pub forge: String,
    pub repo: String,
    pub branch: String,
    pub base: String,
    pub head_commit: String,
    pub title: String,
    pub state: String,
    pub created_at: String,
}

impl From<&StepRun> for StepDto {
    fn from(step: &StepRun) -> Self {
        Self {
            name: step.name.clone(),
            kind: step.kind.clone(),
            needs: step.needs.clone(),
            state: step.state.to_string(),
            attempts: step.attempts,
            outputs: step.outputs.clone().unwrap_or(serde_json::Value::Null),
            error: step.error.clone(),
            note: step.note.clone(),
            started_at: step.started_at.map(time),
            finished_at: step.finished_at.map(time),
        }
    }
}

impl From<&ChangeRequest> for ChangeRequestDto {
    fn from(request: &ChangeRequest) -> Self {
        Self {
            id: request.id,
            forge: request.forge.clone(),
            repo: request.repo.clone(),
            branch: request.branch.clone(),
            base: request.base.clone(),
            head_commit: request.head_commit.clone(),
            title: request.title.clone(),
            state: request.state.clone(),
            created_at: time(request.created_at),
        }
    }
}

impl From<&Run> for RunDto {
    fn from(run: &Run) -> Self {
        let plan = &run.plan;
        Self {
            id: run.id.clone(),
            app: run.app.clone(),
            environment: run.environment.clone(),
            pipeline: run.pipeline.clone(),
            state: run.state.to_string(),
            digest: run.digest.clone(),
            version: plan.version.clone(),
            tag: plan.target.tag.clone(),
            image: format!("{}:{}", plan.artifact.repository, plan.artifact.tag),
            trigger: plan.trigger.clone(),
            source: SourceDto {
                repo: plan.event.repo.clone(),
                ref_name: plan.event.ref_name.clone(),
                sha: plan.event.sha.clone(),
                actor: plan.event.actor.clone(),
            },
            error: run.error.clone(),
            origin: run.origin.clone(),
            admitted: run.admitted,
            created_at: time(run.created_at),
            updated_at: time(run.updated_at),
            finished_at: run.finished_at.map(time),
            steps: run.steps.iter().map(StepDto::from).collect(),
            change_requests: None,
        }
    }
}
