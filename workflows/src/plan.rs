//! Trigger matching: a normalized event in, the promotions it starts out.

use gantry_webhooks::{EventKind, GitEvent, RefKind};
use serde::{Deserialize, Serialize};

use crate::config::{
    Concurrency, Config, EnvironmentSpec, ForgeKind, PipelineSpec, PromotionMode, TriggerOn, parse_duration,
};
use crate::dag;
use crate::error::TemplateError;
use crate::template::{self, Vars};

/// The image a promotion moves, as found by its CI tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    /// Registry name in the config.
    pub registry: String,
    /// Registry URL (see [`crate::RegistrySpec::url`]).
    pub registry_url: String,
    /// Repository inside the registry.
    pub repository: String,
    /// Tag CI pushes for this event; the artifact is pinned by digest once found.
    pub tag: String,
}

/// Where the promotion lands: the environment's config repo and the tag it gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentTarget {
    /// Environment name.
    pub environment: String,
    /// Config repo URL as configured (relative paths resolve against the data directory).
    pub repo_url: String,
    /// Base branch of the config repo.
    pub branch: String,
    /// File to edit, rendered for this app and environment.
    pub path: String,
    /// YAML path of the tag scalar, or `None` for a kustomization `images:` entry.
    pub yaml_path: Option<String>,
    /// Image name in the config file (kustomization `images[].name`).
    pub image_name: String,
    /// Tag the artifact gets in this environment.
    pub tag: String,
    /// Forge that reviews the change.
    pub forge: ForgeKind,
    /// Policy for queued promotions into this environment.
    #[serde(default)]
    pub concurrency: Concurrency,
}

/// One step of a planned run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// Step name, unique in the run.
    pub name: String,
    /// Step kind.
    pub kind: String,
    /// Names of the steps it needs.
    pub needs: Vec<String>,
    /// The step's settings (`null` when none).
    pub with: serde_json::Value,
    /// `if:` condition (`None` = `success()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Attempts in all for transient errors (`None` = the executor's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// First retry delay in milliseconds (`None` = the executor's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// Longest one attempt may take, in milliseconds (`None` = the executor's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// One promotion an event starts: an app, into an environment, through a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// App name.
    pub app: String,
    /// Entry environment.
    pub environment: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Which trigger matched, e.g. `branch main`.
    pub trigger: String,
    /// Artifact to resolve.
    pub artifact: ArtifactRef,
    /// How long to wait for CI to push the artifact, in milliseconds.
    pub artifact_wait_ms: u64,
    /// Version used in environment tags.
    pub version: String,
    /// Where the promotion lands.
    pub target: EnvironmentTarget,
    /// Steps in topological order.
    pub steps: Vec<PlannedStep>,
    /// The event that started it.
    pub event: GitEvent,
}

/// Every promotion `event` starts under `config` (none for events that trigger nothing).
pub fn plan(config: &Config, event: &GitEvent) -> Result<Vec<Plan>, TemplateError> {
    let (on, name) = match (event.kind, event.ref_kind, event.ref_name.as_deref(), event.deleted) {
        (EventKind::Push, Some(RefKind::Branch), Some(name), false) => (TriggerOn::Branch, name),
        (EventKind::Tag, Some(RefKind::Tag), Some(name), false) => (TriggerOn::Tag, name),
        _ => return Ok(Vec::new()),
    };
    let Some(sha) = event.sha.as_deref() else {
        return Ok(Vec::new());
    };
    let sha7 = &sha[..sha.len().min(7)];
    let mut plans = Vec::new();
    for (app, _) in &config.apps {
        if !app.source_repo.eq_ignore_ascii_case(&event.repo) {
            continue;
        }
        let (Some(pipeline), Some(registry)) = (config.pipeline(&app.pipeline), config.registry(&app.registry)) else {
            continue;
        };
        for trigger in &pipeline.triggers {
            if trigger.on != on || !glob_matches(&trigger.pattern, name) {
                continue;
            }
            let Some(env) = config.environment(&trigger.environment) else {
                continue;
            };
            let (branch, tag) = match on {
                TriggerOn::Branch => (Some(name), None),
                TriggerOn::Tag => (None, Some(name)),
            };
            let vars = Vars::new()
                .set("app", Some(&app.name))
                .set("env", Some(&env.name))
                .set("sha", Some(sha))
                .set("sha7", Some(sha7))
                .set("branch", branch)
                .set("tag", tag)
                .set("ref", Some(name));
            let artifact_tag = template::render(&trigger.artifact_tag, &vars)?;
            let version = match &trigger.version {
                Some(version) => template::render(version, &vars)?,
                None => artifact_tag.clone(),
            };
            let artifact = ArtifactRef {
                registry: registry.name.clone(),
                registry_url: registry.url.clone(),
                repository: app.repository.clone(),
                tag: artifact_tag,
            };
            let trigger_name = format!(
                "{} {}",
                match on {
                    TriggerOn::Branch => "branch",
                    TriggerOn::Tag => "tag",
                },
                trigger.pattern
            );
            let wait_ms = parse_duration(&trigger.artifact_wait).map(|d| d.as_millis() as u64).unwrap_or(600_000);
            plans.push(build_plan(app, env, pipeline, trigger_name, artifact, wait_ms, version, event, &vars)?);
        }
    }
    Ok(plans)
}

/// The plan for promoting what `previous` promoted into `env`, next in the environment graph.
pub fn follow_up(config: &Config, previous: &Plan, env: &EnvironmentSpec) -> Result<Option<Plan>, TemplateError> {
    let (Some(app), Some(pipeline)) =
        (config.app(&previous.app), config.app(&previous.app).and_then(|a| config.pipeline(&a.pipeline)))
    else {
        return Ok(None);
    };
    let event = &previous.event;
    let sha = event.sha.as_deref().unwrap_or_default();
    let (branch, tag) = match event.ref_kind {
        Some(gantry_webhooks::RefKind::Tag) => (None, event.ref_name.as_deref()),
        _ => (event.ref_name.as_deref(), None),
    };
    let vars = Vars::new()
        .set("app", Some(&app.name))
        .set("env", Some(&env.name))
        .set("sha", Some(sha))
        .set("sha7", Some(&sha[..sha.len().min(7)]))
        .set("branch", branch)
        .set("tag", tag)
        .set("ref", event.ref_name.as_deref());
    let trigger = format!("after {}", previous.environment);
    build_plan(
        app,
        env,
        pipeline,
        trigger,
        previous.artifact.clone(),
        previous.artifact_wait_ms,
        previous.version.clone(),
        event,
        &vars,
    )
    .map(Some)
}

/// Environments that follow `environment` in the promotion graph and start by themselves.
pub fn next_environments<'a>(config: &'a Config, environment: &str) -> Vec<&'a EnvironmentSpec> {
    config
        .environments
        .iter()
        .map(|(e, _)| e)
        .filter(|e| e.promotion == PromotionMode::Auto && e.after.iter().any(|a| a == environment))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn build_plan(
    app: &crate::config::AppSpec,
    env: &EnvironmentSpec,
    pipeline: &PipelineSpec,
    trigger: String,
    artifact: ArtifactRef,
    artifact_wait_ms: u64,
    version: String,
    event: &GitEvent,
    vars: &Vars,
) -> Result<Plan, TemplateError> {
    let vars = vars.clone().set("version", Some(&version));
    let env_tag = template::render(&env.tag_template, &vars)?;
    let path = template::render(&env.config_repo.path, &vars)?;
    Ok(Plan {
        app: app.name.clone(),
        environment: env.name.clone(),
        pipeline: pipeline.name.clone(),
        trigger,
        artifact,
        artifact_wait_ms,
        version: version.clone(),
        target: EnvironmentTarget {
            environment: env.name.clone(),
            repo_url: env.config_repo.url.clone(),
            branch: env.config_repo.branch.clone(),
            path,
            yaml_path: env.config_repo.yaml_path.clone(),
            image_name: app.image_name().to_string(),
            tag: env_tag,
            forge: env.config_repo.forge,
            concurrency: env.concurrency,
        },
        steps: steps_for(pipeline, &env.name),
        event: event.clone(),
    })
}

fn glob_matches(pattern: &str, name: &str) -> bool {
    // `*` must not cross `/` so that `feature/*` does not match `feature/a/b` unless asked to.
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|glob| glob.compile_matcher().is_match(name))
        .unwrap_or(false)
}

/// The pipeline's steps that run in `environment`, in topological order; a step left out
/// passes its own needs on to the steps that needed it.
fn steps_for(pipeline: &PipelineSpec, environment: &str) -> Vec<PlannedStep> {
    let runs_here = |name: &str| {
        pipeline
            .steps
            .iter()
            .find(|s| s.name == name)
            .is_some_and(|s| s.environments.is_empty() || s.environments.iter().any(|e| e == environment))
    };
    let mut steps = ordered_steps(pipeline);
    let removed: std::collections::HashMap<String, Vec<String>> =
        steps.iter().filter(|s| !runs_here(&s.name)).map(|s| (s.name.clone(), s.needs.clone())).collect();
    steps.retain(|s| runs_here(&s.name));
    for step in &mut steps {
        let mut needs = Vec::new();
        let mut pending: Vec<String> = step.needs.iter().rev().cloned().collect();
        while let Some(need) = pending.pop() {
            match removed.get(&need) {
                Some(inherited) => pending.extend(inherited.iter().rev().cloned()),
                None if !needs.contains(&need) => needs.push(need),
                None => {}
            }
        }
        step.needs = needs;
    }
    steps
}

fn ordered_steps(pipeline: &PipelineSpec) -> Vec<PlannedStep> {
    let to_planned = |i: usize| {
        let step = &pipeline.steps[i];
        PlannedStep {
            name: step.name.clone(),
            kind: step.kind.clone(),
            needs: step.needs.clone(),
            with: step.with.clone().map(serde_json::Value::Object).unwrap_or(serde_json::Value::Null),
            condition: step.condition.clone(),
            max_attempts: step.retry.as_ref().map(|r| r.attempts),
            backoff_ms: step.retry.as_ref().and_then(|r| parse_duration(&r.backoff).ok()).map(|d| d.as_millis() as u64),
            timeout_ms: step.timeout.as_deref().and_then(|t| parse_duration(t).ok()).map(|d| d.as_millis() as u64),
        }
    };
    match dag::compile(&pipeline.steps) {
        Ok(graph) => graph.topological_order().iter().map(|i| to_planned(*i)).collect(),
        // A validated config always compiles; keep declaration order otherwise.
        Err(_) => (0..pipeline.steps.len()).map(to_planned).collect(),
    }
}
