//! Trigger matching: a normalized event in, the promotions it starts out.

use gantry_webhooks::GitEvent;
use serde::{Deserialize, Serialize};

use crate::config::{
    AppSpec, Concurrency, Config, EnvironmentSpec, ForgeKind, PipelineSpec, PreviewSpec, PromotionMode, TriggerOn,
    parse_duration,
};
use crate::dag;
use crate::error::TemplateError;
use crate::template::{self, Vars};
use crate::trigger::{self, Candidate, Verdict};

/// The step kind that removes a preview environment; the engine provides it, and validation
/// checks that it does when an environment has previews.
pub const REMOVE_PREVIEW_KIND: &str = "remove-preview";

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
    /// The preview this target is, when it is one; `environment` is then the preview's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<PreviewTarget>,
}

/// A preview instance of an environment: a directory of its config repo, for one branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewTarget {
    /// The environment it is a preview of.
    pub environment: String,
    /// The branch it shows.
    pub branch: String,
    /// The branch name made safe (see [`crate::trigger::slug`]).
    pub slug: String,
    /// Its directory in the config repo.
    pub directory: String,
    /// Directory of the config repo that a new preview's files are copied from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// What a run does to its environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanAction {
    /// Promote the artifact into it.
    #[default]
    Promote,
    /// Remove the preview environment (its branch was deleted); no artifact moves.
    RemovePreview,
}

impl PlanAction {
    fn is_promote(&self) -> bool {
        *self == PlanAction::Promote
    }
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
    /// What the run does; a promotion unless it removes a preview.
    #[serde(default, skip_serializing_if = "PlanAction::is_promote")]
    pub action: PlanAction,
    /// What trigger matching assumed, e.g. that a push whose payload lists no files changed a
    /// path the trigger watches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Every run `event` starts under `config` (none for events that trigger nothing): a promotion
/// per matching trigger of every app whose source repository sent it, or, for a deleted
/// branch, the removal of each preview that its preview triggers made. Why each trigger did
/// or did not match is [`crate::trigger::explain`].
pub fn plan(config: &Config, event: &GitEvent) -> Result<Vec<Plan>, TemplateError> {
    let mut plans = Vec::new();
    for candidate in trigger::candidates(config, event) {
        let Verdict::Match { notes } = &candidate.verdict else {
            continue;
        };
        if let Some(plan) = plan_candidate(config, &candidate, notes, event)? {
            plans.push(plan);
        }
    }
    Ok(plans)
}

fn plan_candidate(
    config: &Config,
    candidate: &Candidate<'_>,
    notes: &[String],
    event: &GitEvent,
) -> Result<Option<Plan>, TemplateError> {
    let (app, trigger_spec) = (candidate.app, candidate.trigger);
    let Ok(target) = trigger::ref_event(event) else {
        return Ok(None);
    };
    let (Some(env), Some(registry)) = (candidate.environment, config.registry(&app.registry)) else {
        return Ok(None);
    };
    let pipeline = match &trigger_spec.pipeline {
        Some(name) => config.pipeline(name),
        None => Some(candidate.pipeline),
    };
    let Some(pipeline) = pipeline else {
        return Ok(None);
    };
    let preview = match (trigger_spec.preview, env.previews.as_ref()) {
        (true, Some(previews)) => Some(preview_target(app, env, previews, target.name)?),
        (true, None) => return Ok(None),
        (false, _) => None,
    };
    let trigger_name = candidate.description();
    if target.deleted {
        let Some(preview) = preview else {
            return Ok(None);
        };
        return removal_plan(app, registry, env, pipeline, trigger_name, preview, event).map(Some);
    }
    let Some(sha) = target.sha else {
        return Ok(None);
    };
    let sha7 = &sha[..sha.len().min(7)];
    let (branch, tag) = match target.on {
        TriggerOn::Branch => (Some(target.name), None),
        TriggerOn::Tag => (None, Some(target.name)),
    };
    let slug = trigger::slug(target.name);
    let vars = Vars::new()
        .set("app", Some(&app.name))
        .set("env", Some(&env.name))
        .set("sha", Some(sha))
        .set("sha7", Some(sha7))
        .set("branch", branch)
        .set("tag", tag)
        .set("ref", Some(target.name))
        .set("slug", Some(&slug));
    let artifact_tag = template::render(&trigger_spec.artifact_tag, &vars)?;
    let version = match &trigger_spec.version {
        Some(version) => template::render(version, &vars)?,
        None => artifact_tag.clone(),
    };
    let artifact = ArtifactRef {
        registry: registry.name.clone(),
        registry_url: registry.url.clone(),
        repository: app.repository.clone(),
        tag: artifact_tag,
    };
    let wait_ms = parse_duration(&trigger_spec.artifact_wait).map(|d| d.as_millis() as u64).unwrap_or(600_000);
    let mut plan = build_plan(app, env, preview, pipeline, trigger_name, artifact, wait_ms, version, event, &vars)?;
    plan.notes = notes.to_vec();
    Ok(Some(plan))
}

/// The preview of `env` for `branch`, with its paths rendered for `app`.
fn preview_target(
    app: &AppSpec,
    env: &EnvironmentSpec,
    previews: &PreviewSpec,
    branch: &str,
) -> Result<PreviewTarget, TemplateError> {
    let slug = trigger::slug(branch);
    let vars = Vars::new().set("app", Some(&app.name)).set("env", Some(&env.name)).set("slug", Some(&slug));
    let directory = template::render(&previews.directory, &vars)?.trim_end_matches('/').to_string();
    let template = previews.template.as_deref().map(|t| template::render(t, &vars)).transpose()?;
    Ok(PreviewTarget {
        environment: env.name.clone(),
        branch: branch.to_string(),
        slug,
        directory,
        template: template.map(|t| t.trim_end_matches('/').to_string()),
    })
}

/// The run that removes `preview` through a change request: one step, no artifact.
fn removal_plan(
    app: &AppSpec,
    registry: &crate::config::RegistrySpec,
    env: &EnvironmentSpec,
    pipeline: &PipelineSpec,
    trigger: String,
    preview: PreviewTarget,
    event: &GitEvent,
) -> Result<Plan, TemplateError> {
    let name = trigger::preview_name(&env.name, &preview.slug);
    let path = preview_file(app, env, &preview)?;
    let yaml_path = env.previews.as_ref().and_then(|p| p.yaml_path.clone());
    Ok(Plan {
        app: app.name.clone(),
        environment: name.clone(),
        pipeline: pipeline.name.clone(),
        trigger,
        artifact: ArtifactRef {
            registry: registry.name.clone(),
            registry_url: registry.url.clone(),
            repository: app.repository.clone(),
            tag: String::new(),
        },
        artifact_wait_ms: 0,
        version: String::new(),
        target: EnvironmentTarget {
            environment: name,
            repo_url: env.config_repo.url.clone(),
            branch: env.config_repo.branch.clone(),
            path,
            yaml_path,
            image_name: app.image_name().to_string(),
            tag: String::new(),
            forge: env.config_repo.forge,
            concurrency: env.concurrency,
            preview: Some(preview),
        },
        steps: vec![PlannedStep {
            name: REMOVE_PREVIEW_KIND.to_string(),
            kind: REMOVE_PREVIEW_KIND.to_string(),
            needs: Vec::new(),
            with: serde_json::Value::Null,
            condition: None,
            max_attempts: None,
            backoff_ms: None,
            timeout_ms: None,
        }],
        event: event.clone(),
        action: PlanAction::RemovePreview,
        notes: Vec::new(),
    })
}

/// The file a promotion into `preview` edits: the preview's `file` inside its directory.
fn preview_file(app: &AppSpec, env: &EnvironmentSpec, preview: &PreviewTarget) -> Result<String, TemplateError> {
    let file = env.previews.as_ref().map(|p| p.file.as_str()).unwrap_or("kustomization.yaml");
    let vars = Vars::new().set("app", Some(&app.name)).set("env", Some(&env.name));
    Ok(format!("{}/{}", preview.directory, template::render(file, &vars)?.trim_start_matches('/')))
}

/// The plan for promoting what `previous` promoted into `env`, next in the environment graph.
pub fn follow_up(config: &Config, previous: &Plan, env: &EnvironmentSpec) -> Result<Option<Plan>, TemplateError> {
    // The pipeline the previous run went through (a trigger may have chosen one other than
    // the app's), so that an expedited path keeps its mandatory steps all the way.
    let app = config.app(&previous.app);
    let pipeline = config.pipeline(&previous.pipeline).or_else(|| app.and_then(|a| config.pipeline(&a.pipeline)));
    let (Some(app), Some(pipeline)) = (app, pipeline) else {
        return Ok(None);
    };
    if previous.action != PlanAction::Promote || previous.target.preview.is_some() {
        return Ok(None);
    }
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
        .set("ref", event.ref_name.as_deref())
        .set("slug", event.ref_name.as_deref().map(trigger::slug).as_deref());
    let trigger = format!("after {}", previous.environment);
    build_plan(
        app,
        env,
        None,
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
    app: &AppSpec,
    env: &EnvironmentSpec,
    preview: Option<PreviewTarget>,
    pipeline: &PipelineSpec,
    trigger: String,
    artifact: ArtifactRef,
    artifact_wait_ms: u64,
    version: String,
    event: &GitEvent,
    vars: &Vars,
) -> Result<Plan, TemplateError> {
    let vars = vars.clone().set("version", Some(&version));
    // A preview is an environment of its own: `{env}` in its tags is the preview's name.
    let name = match &preview {
        Some(preview) => trigger::preview_name(&env.name, &preview.slug),
        None => env.name.clone(),
    };
    let env_tag = template::render(&env.tag_template, &vars.clone().set("env", Some(&name)))?;
    let (path, yaml_path) = match &preview {
        Some(preview) => (preview_file(app, env, preview)?, env.previews.as_ref().and_then(|p| p.yaml_path.clone())),
        None => (template::render(&env.config_repo.path, &vars)?, env.config_repo.yaml_path.clone()),
    };
    Ok(Plan {
        app: app.name.clone(),
        environment: name.clone(),
        pipeline: pipeline.name.clone(),
        trigger,
        artifact,
        artifact_wait_ms,
        version: version.clone(),
        target: EnvironmentTarget {
            environment: name,
            repo_url: env.config_repo.url.clone(),
            branch: env.config_repo.branch.clone(),
            path,
            yaml_path,
            image_name: app.image_name().to_string(),
            tag: env_tag,
            forge: env.config_repo.forge,
            concurrency: env.concurrency,
            preview,
        },
        steps: steps_for(pipeline, &env.name),
        event: event.clone(),
        action: PlanAction::Promote,
        notes: Vec::new(),
    })
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
