//! `update-config`: edits the environment's config repo so it deploys the new tag.
//!
//! The file is edited in place of the one scalar that holds the tag (a kustomization's
//! `images[].newTag`, or a YAML path such as `image.tag`), keeping comments, quoting and
//! layout, so the diff is the changed line only. The commit is made in gantry's warm mirror
//! on the promotion branch, not pushed (that is `open-pr`'s job). The commit time is the run's
//! creation time, so a re-run after a crash makes the identical commit.
//!
//! **Several images at once.** With `with: edits:`, one promotion pins several images (the
//! app's sidecars, or several apps released together) in one commit, and so in one change
//! request that lands atomically. Each edit names a file and one place in it:
//!
//! | key | meaning |
//! |---|---|
//! | `path` | file to edit, with `{app}` and `{env}`; default the environment's `config_repo.path` |
//! | `image` | a kustomization `images:` entry by name (sets `newTag`, and `digest` if given) |
//! | `yaml_path` | a scalar (YAML or JSON) that holds a tag, e.g. `worker.image.tag` |
//! | `helm` | a Helm values mapping such as `image` (sets `tag`, and `digest` if given) |
//! | `tag` | the value to pin, default `{env_tag}` |
//! | `digest` | a digest to pin too (with `image` or `helm`), e.g. `{digest}` |
//!
//! An edit naming none of `image`, `yaml_path` and `helm` edits the environment's own place
//! (its `yaml_path`, else the app's image in the kustomization). Values may use `{env_tag}`
//! (the environment's tag for this artifact), `{version}`, `{digest}`, `{app}`, `{env}`,
//! `{sha}` and `{sha7}`. Edits that change nothing are skipped; when none changes anything the
//! step succeeds with `changed: false` and no commit.

use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Step, StepContext, StepError, StepOutcome, blocking, chain, classify, promotion_branch, typed_settings};
use crate::edit::{self, Edit, Format};
use gantry_workflows::Plan;
use gantry_workflows::spans::YamlPath;

/// See the module documentation.
pub struct UpdateConfig;

/// Settings of `update-config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateConfigSettings {
    #[serde(default)]
    edits: Option<Vec<EditSpec>>,
}

/// One image to pin, as written in `with: edits:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditSpec {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    yaml_path: Option<String>,
    #[serde(default)]
    helm: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    digest: Option<String>,
}

/// Placeholders of edit values.
const VALUE_PLACEHOLDERS: &[&str] = &["env_tag", "version", "digest", "app", "env", "sha", "sha7"];
/// Placeholders of edit paths (as in `config_repo.path`).
const PATH_PLACEHOLDERS: &[&str] = &["app", "env"];

/// The `{name}` placeholders of `text`, or why it is malformed.
fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(['{', '}']) {
        if rest[start..].starts_with('}') {
            return Err(format!("`{text}` has a `}}` without its `{{`"));
        }
        let Some(length) = rest[start..].find('}') else {
            return Err(format!("`{text}` has a `{{` without its `}}`"));
        };
        names.push(&rest[start + 1..start + length]);
        rest = &rest[start + length + 1..];
    }
    Ok(names)
}

fn check_template(text: &str, allowed: &[&str]) -> Result<(), String> {
    match placeholders(text)?.into_iter().find(|name| !allowed.contains(name)) {
        Some(name) => Err(format!(
            "unknown placeholder {{{name}}} in `{text}` (use {})",
            allowed.iter().map(|name| format!("{{{name}}}")).collect::<Vec<_>>().join(", ")
        )),
        None => Ok(()),
    }
}

fn render(text: &str, values: &[(&str, &str)]) -> String {
    let mut rendered = text.to_owned();
    for (name, value) in values {
        rendered = rendered.replace(&format!("{{{name}}}"), value);
    }
    rendered
}

fn check(config: &Value) -> Vec<(String, String)> {
    let settings: UpdateConfigSettings = match typed_settings(config) {
        Ok(settings) => settings,
        Err(problem) => return vec![problem],
    };
    let Some(edits) = settings.edits else { return Vec::new() };
    let mut problems = Vec::new();
    if edits.is_empty() {
        problems.push(("edits".to_owned(), "list at least one edit (or leave `edits` out)".to_owned()));
    }
    for (index, edit) in edits.iter().enumerate() {
        let mut problem = |field: &str, message: String| {
            let at = if field.is_empty() { format!("edits[{index}]") } else { format!("edits[{index}].{field}") };
            problems.push((at, message));
        };
        let places = [edit.image.is_some(), edit.yaml_path.is_some(), edit.helm.is_some()];
        if places.iter().filter(|set| **set).count() > 1 {
            problem("", "name one of image, yaml_path and helm".to_owned());
        }
        for (field, path) in [("yaml_path", &edit.yaml_path), ("helm", &edit.helm)] {
            if let Some(path) = path
                && let Err(error) = YamlPath::parse(path)
            {
                problem(field, format!("invalid path `{path}`: {error}"));
            }
        }
        if edit.image.as_deref().is_some_and(|image| image.trim().is_empty()) {
            problem("image", "image must name a kustomization image".to_owned());
        }
        if edit.digest.is_some() && edit.yaml_path.is_some() {
            problem(
                "digest",
                "a digest is pinned with `image` or `helm`; a yaml_path holds one value (`tag`)".to_owned(),
            );
        }
        if let Some(path) = &edit.path {
            if path.trim().is_empty() {
                problem("path", "path must not be empty".to_owned());
            } else if let Err(message) = check_template(path, PATH_PLACEHOLDERS) {
                problem("path", message);
            }
        }
        for (field, value) in [("tag", &edit.tag), ("digest", &edit.digest)] {
            match value {
                Some(value) if value.trim().is_empty() => problem(field, format!("{field} must not be empty")),
                Some(value) => {
                    if let Err(message) = check_template(value, VALUE_PLACEHOLDERS) {
                        problem(field, message);
                    }
                }
                None => {}
            }
        }
    }
    problems
}

/// One edit with its placeholders filled in.
#[derive(Debug, Clone)]
struct PlannedEdit {
    path: String,
    /// What it pins, for people: `image ghcr.io/acme/web`, `yaml_path image.tag`.
    target: String,
    tag: Option<String>,
    digest: Option<String>,
    edit: Edit,
}

/// The edits a run makes: the configured list, or the environment's one place.
fn planned_edits(edits: Option<&[EditSpec]>, plan: &Plan, digest: &str) -> Result<Vec<PlannedEdit>, String> {
    let target = &plan.target;
    let sha = plan.event.sha.clone().unwrap_or_default();
    let sha7: String = sha.chars().take(7).collect();
    let values = [
        ("env_tag", target.tag.as_str()),
        ("version", plan.version.as_str()),
        ("digest", digest),
        ("app", plan.app.as_str()),
        ("env", target.environment.as_str()),
        ("sha", sha.as_str()),
        ("sha7", sha7.as_str()),
    ];
    let default_edit = [EditSpec::default()];
    let specs = edits.unwrap_or(&default_edit);
    let mut planned = Vec::with_capacity(specs.len());
    for spec in specs {
        let path = match &spec.path {
            Some(path) => render(path, &values[3..5]),
            None => target.path.clone(),
        };
        let tag = render(spec.tag.as_deref().unwrap_or("{env_tag}"), &values);
        let digest = spec.digest.as_deref().map(|text| render(text, &values));
        let parse = |path: &str| YamlPath::parse(path).map_err(|error| format!("invalid path `{path}`: {error}"));
        let (target_text, edit) = match (&spec.image, &spec.yaml_path, &spec.helm) {
            (Some(image), None, None) => (
                format!("image {image}"),
                Edit::KustomizeImage { name: image.clone(), new_tag: Some(tag.clone()), digest: digest.clone() },
            ),
            (None, Some(yaml_path), None) => {
                (format!("yaml_path {yaml_path}"), Edit::SetScalar { path: parse(yaml_path)?, value: tag.clone() })
            }
            (None, None, Some(helm)) => (
                format!("helm {helm}"),
                Edit::HelmImage { path: parse(helm)?, tag: Some(tag.clone()), digest: digest.clone() },
            ),
            (None, None, None) => match &target.yaml_path {
                Some(yaml_path) => {
                    (format!("yaml_path {yaml_path}"), Edit::SetScalar { path: parse(yaml_path)?, value: tag.clone() })
                }
                None => (
                    format!("image {}", target.image_name),
                    Edit::KustomizeImage {
                        name: target.image_name.clone(),
                        new_tag: Some(tag.clone()),
                        digest: digest.clone(),
                    },
                ),
            },
            _ => return Err("an edit names more than one of image, yaml_path and helm".to_owned()),
        };
        planned.push(PlannedEdit { path, target: target_text, tag: Some(tag), digest, edit });
    }
    Ok(planned)
}

#[async_trait]
impl Step for UpdateConfig {
    fn kind(&self) -> &'static str {
        "update-config"
    }

    fn summary(&self) -> &'static str {
        "edit the environment's config files to the new tag, as one commit on the promotion branch"
    }

    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        check(config)
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings: UpdateConfigSettings = typed_settings(&ctx.config).map_err(|(path, message)| {
            StepError::terminal(format!("step {} has invalid settings: {path}: {message}", ctx.step))
        })?;
        let digest = ctx.require_digest()?;
        let plan = &ctx.plan;
        let target = plan.target.clone();
        let edits = planned_edits(settings.edits.as_deref(), plan, digest.as_str())
            .map_err(|message| StepError::terminal(format!("step {}: {message}", ctx.step)))?;
        let branch = promotion_branch(&target.environment, &plan.app, &digest);
        let time = DateTime::<Utc>::from_timestamp_millis(ctx.run_created_at).unwrap_or_else(Utc::now);
        let message = ctx
            .capabilities
            .templates()
            .render(
                "commit_message",
                &json!({
                    "app": plan.app,
                    "environment": target.environment,
                    "tag": target.tag,
                    "digest": digest.as_str(),
                    "source_repo": plan.event.repo,
                    "sha": plan.event.sha,
                    "trigger": plan.trigger,
                    "run_id": ctx.run_id,
                }),
            )
            .map_err(|e| StepError::terminal(format!("render commit message: {e}")))?;
        let capabilities = ctx.capabilities.clone();
        let after_commit = format!("after-side-effect:{}", ctx.step);
        let app = plan.app.clone();
        blocking(move || {
            let repo = capabilities.env_repo(&target.repo_url).map_err(|e| classify(e.is_transient(), chain(&e)))?;
            let base_commit =
                repo.branch_head(&target.branch).map_err(|e| classify(e.is_transient(), chain(&e)))?.ok_or_else(
                    || StepError::terminal(format!("branch {} does not exist in {}", target.branch, target.repo_url)),
                )?;
            // A new preview starts as its template: the edits start from the template's files,
            // and all of them join the commit.
            let seeded = super::preview::seed_files(&repo, &base_commit, &target, &app)?;
            // Files in the order edits first name them; each file gets its edits in order.
            let mut files: Vec<(String, String, String)> = Vec::new();
            let mut reports = Vec::with_capacity(edits.len());
            for planned in &edits {
                let position = match files.iter().position(|(path, _, _)| *path == planned.path) {
                    Some(position) => position,
                    None => {
                        let content = match seeded.iter().find(|(path, _)| *path == planned.path) {
                            Some((_, content)) => Some(content.clone()),
                            None => repo
                                .read_file(&base_commit, &planned.path)
                                .map_err(|e| classify(e.is_transient(), chain(&e)))?,
                        }
                        .ok_or_else(|| {
                            StepError::terminal(format!(
                                "{} does not exist in {} at {}",
                                planned.path, target.repo_url, target.branch
                            ))
                        })?;
                        let text = String::from_utf8(content)
                            .map_err(|_| StepError::terminal(format!("{} is not UTF-8 text", planned.path)))?;
                        files.push((planned.path.clone(), text.clone(), text));
                        files.len() - 1
                    }
                };
                let (path, _, current) = &mut files[position];
                let format = Format::from_path(Path::new(path.as_str()));
                let edited = edit::apply_format(format, current, std::slice::from_ref(&planned.edit))
                    .map_err(|e| StepError::terminal(format!("edit {} ({}): {e}", planned.path, planned.target)))?;
                let changed = edited != *current;
                *current = edited;
                reports.push(json!({
                    "path": planned.path,
                    "target": planned.target,
                    "tag": planned.tag,
                    "digest": planned.digest,
                    "changed": changed,
                }));
            }
            let is_seeded = |path: &str| seeded.iter().any(|(seeded, _)| seeded == path);
            let mut changed_files: Vec<(&str, &[u8])> = files
                .iter()
                .filter(|(path, original, edited)| original != edited || is_seeded(path))
                .map(|(path, _, edited)| (path.as_str(), edited.as_bytes()))
                .collect();
            for (path, content) in &seeded {
                if !files.iter().any(|(edited, _, _)| edited == path) {
                    changed_files.push((path.as_str(), content.as_slice()));
                }
            }
            let paths: Vec<&str> = changed_files.iter().map(|(path, _)| *path).collect();
            let mut outputs = json!({
                "repo": target.repo_url,
                "base": target.branch,
                "base_commit": base_commit,
                "path": edits.first().map_or(target.path.as_str(), |edit| edit.path.as_str()),
                "paths": paths,
                "branch": branch,
                "edits": reports,
            });
            if changed_files.is_empty() {
                outputs["changed"] = json!(false);
                return Ok(StepOutcome::Succeeded { outputs, pin_digest: None });
            }
            let commit = repo
                .commit_files(&base_commit, &changed_files, &message, capabilities.committer(), time, &branch)
                .map_err(|e| classify(e.is_transient(), chain(&e)))?;
            crate::failpoint::hit(&after_commit);
            let diff = repo.diff(&base_commit, &commit).map_err(|e| classify(e.is_transient(), chain(&e)))?;
            outputs["changed"] = json!(true);
            outputs["commit"] = json!(commit);
            outputs["diff"] = json!(diff);
            Ok(StepOutcome::Succeeded { outputs, pin_digest: None })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_with_their_place() {
        assert!(check(&Value::Null).is_empty());
        assert!(
            check(&json!({"edits": [
                {"image": "ghcr.io/acme/web", "digest": "{digest}"},
                {"path": "apps/worker/values.yaml", "yaml_path": "image.tag", "tag": "{env}-{version}"},
                {"path": "apps/{app}/values.json", "helm": "sidecar.image"},
            ]}))
            .is_empty()
        );
        let problems = check(&json!({"edits": [
            {"image": "a", "yaml_path": "b"},
            {"yaml_path": "image.tag", "digest": "{digest}"},
            {"path": "apps/{branch}/x.yaml", "tag": "{tag}"},
            {"helm": "a..b"},
        ]}));
        let fields: Vec<&str> = problems.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(fields, ["edits[0]", "edits[1].digest", "edits[2].path", "edits[2].tag", "edits[3].helm"]);
        assert_eq!(check(&json!({"edits": []}))[0].0, "edits");
        assert!(check(&json!({"edit": []}))[0].1.contains("unknown field"));
    }

    #[test]
    fn placeholders_are_filled_in() {
        let plan: Plan = serde_json::from_value(json!({
            "app": "web", "environment": "prod", "pipeline": "default", "trigger": "tag v2.0.0",
            "artifact": { "registry": "r", "registry_url": "oci-layout:r", "repository": "acme/web", "tag": "v2.0.0" },
            "artifact_wait_ms": 0, "version": "2.0.0",
            "target": {
                "environment": "prod", "repo_url": "repos/prod.git", "branch": "main",
                "path": "apps/web/kustomization.yaml", "yaml_path": null, "image_name": "ghcr.io/acme/web",
                "tag": "prod-2.0.0", "forge": "local",
            },
            "steps": [],
            "event": {
                "forge": "github", "kind": "tag", "repo": "acme/web", "ref_kind": "tag", "ref": "v2.0.0",
                "before": null, "sha": "0123456789abcdef0123456789abcdef01234567", "deleted": false, "merged": false,
                "actor": null, "change_request": null, "timestamp": null, "changed_paths": [],
            },
        }))
        .unwrap();
        let specs = vec![
            EditSpec::default(),
            EditSpec {
                path: Some("apps/{app}-worker/values.yaml".into()),
                helm: Some("image".into()),
                tag: Some("{version}-{sha7}".into()),
                digest: Some("{digest}".into()),
                ..EditSpec::default()
            },
        ];
        let edits = planned_edits(Some(&specs), &plan, "sha256:abc").unwrap();
        assert_eq!(edits[0].path, "apps/web/kustomization.yaml");
        assert_eq!(edits[0].target, "image ghcr.io/acme/web");
        assert_eq!(edits[0].tag.as_deref(), Some("prod-2.0.0"));
        assert_eq!(edits[1].path, "apps/web-worker/values.yaml");
        assert_eq!(edits[1].tag.as_deref(), Some("2.0.0-0123456"));
        assert_eq!(edits[1].digest.as_deref(), Some("sha256:abc"));
        assert_eq!(planned_edits(None, &plan, "sha256:abc").unwrap().len(), 1);
    }
}
