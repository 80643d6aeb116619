//! Trigger matching: a normalized event in, the promotions it starts out.

use gantry_webhooks::{EventKind, GitEvent, RefKind};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ForgeKind, TriggerOn, parse_duration};
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
    let (on, name) = match (
        event.kind,
        event.ref_kind,
        event.ref_name.as_deref(),
        event.deleted,
    ) {
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
        let (Some(pipeline), Some(registry)) = (
            config.pipeline(&app.pipeline),
            config.registry(&app.registry),
        ) else {
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
            let vars = vars.set("version", Some(&version));
            let env_tag = template::render(&env.tag_template, &vars)?;
            let path = template::render(&env.config_repo.path, &vars)?;
            let steps = ordered_steps(pipeline);
            plans.push(Plan {
                app: app.name.clone(),
                environment: env.name.clone(),
                pipeline: pipeline.name.clone(),
                trigger: format!(
                    "{} {}",
                    match on {
                        TriggerOn::Branch => "branch",
                        TriggerOn::Tag => "tag",
                    },
                    trigger.pattern
                ),
                artifact: ArtifactRef {
                    registry: registry.name.clone(),
                    registry_url: registry.url.clone(),
                    repository: app.repository.clone(),
                    tag: artifact_tag,
                },
                artifact_wait_ms: parse_duration(&trigger.artifact_wait)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(600_000),
                version,
                target: EnvironmentTarget {
                    environment: env.name.clone(),
                    repo_url: env.config_repo.url.clone(),
                    branch: env.config_repo.branch.clone(),
                    path,
                    yaml_path: env.config_repo.yaml_path.clone(),
                    image_name: app.image_name().to_string(),
                    tag: env_tag,
                    forge: env.config_repo.forge,
                },
                steps,
                event: event.clone(),
            });
        }
    }
    Ok(plans)
}

fn glob_matches(pattern: &str, name: &str) -> bool {
    // `*` must not cross `/` so that `feature/*` does not match `feature/a/b` unless asked to.
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|glob| glob.compile_matcher().is_match(name))
        .unwrap_or(false)
}

fn ordered_steps(pipeline: &crate::config::PipelineSpec) -> Vec<PlannedStep> {
    let to_planned = |i: usize| {
        let step = &pipeline.steps[i];
        PlannedStep {
            name: step.name.clone(),
            kind: step.kind.clone(),
            needs: step.needs.clone(),
            with: step
                .with
                .clone()
                .map(serde_json::Value::Object)
                .unwrap_or(serde_json::Value::Null),
        }
    };
    match dag::compile(&pipeline.steps) {
        Ok(graph) => graph
            .topological_order()
            .iter()
            .map(|i| to_planned(*i))
            .collect(),
        // A validated config always compiles; keep declaration order otherwise.
        Err(_) => (0..pipeline.steps.len()).map(to_planned).collect(),
    }
}
