//! Trigger matching on real payloads: the five branch patterns of
//! `tests/fixtures/branch_patterns` (previews included), path and actor filters, and the
//! validation of what triggers and previews may say, with file and line.
//!
//! Payloads are GitHub's and GitLab's own examples with the ref, commits and changed files
//! set to what each case needs.

use std::path::{Path, PathBuf};

use gantry_webhooks::{GitEvent, Parsed, github, gitlab};
use gantry_workflows::{Config, Plan, PlanAction, StepCatalog};
use serde_json::{Value, json};

/// Step kinds the configs use; the engine's real catalog is not a dependency here.
struct Kinds(Vec<&'static str>);

impl Kinds {
    fn all() -> Self {
        Kinds(vec![
            "resolve-artifact",
            "approval",
            "retag",
            "update-config",
            "open-pr",
            "scan",
            "gate",
            gantry_workflows::REMOVE_PREVIEW_KIND,
        ])
    }
}

impl StepCatalog for Kinds {
    fn kinds(&self) -> Vec<&'static str> {
        self.0.clone()
    }

    fn check(&self, _kind: &str, _with: &Value) -> Vec<(String, String)> {
        Vec::new()
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn branch_patterns() -> Config {
    let dir = repo_root().join("tests/fixtures/branch_patterns");
    gantry_workflows::load_dir(&dir, &Kinds::all()).unwrap_or_else(|errors| panic!("{errors:#?}"))
}

fn fixture(relative: &str) -> Value {
    serde_json::from_slice(&std::fs::read(repo_root().join("tests/fixtures").join(relative)).unwrap()).unwrap()
}

const BEFORE: &str = "4544205a385319fd846d5df4ed2e3b8173529d78";

/// GitHub's `push` example (a branch created with one commit) pushed to `full_ref` instead,
/// with its commit changing `modified`.
fn github_push(full_ref: &str, modified: &[&str]) -> GitEvent {
    let mut payload = fixture("github/octokit-examples/push.4.json");
    payload["ref"] = json!(full_ref);
    payload["before"] = json!(BEFORE);
    payload["created"] = json!(false);
    payload["commits"][0]["added"] = json!([]);
    payload["commits"][0]["modified"] = json!(modified);
    payload["head_commit"]["added"] = json!([]);
    payload["head_commit"]["modified"] = json!(modified);
    parse_github("push", &payload)
}

fn parse_github(event_type: &str, payload: &Value) -> GitEvent {
    match github::parse(event_type, payload.to_string().as_bytes()).unwrap() {
        Parsed::Event(event) => event,
        Parsed::Ignored { reason, .. } => panic!("ignored: {reason}"),
    }
}

fn only(plans: Vec<Plan>) -> Plan {
    assert_eq!(plans.len(), 1, "{plans:#?}");
    plans.into_iter().next().unwrap()
}

/// The plan's step names, sorted (their order is the DAG's, not the list's).
fn step_names(plan: &Plan) -> Vec<&str> {
    let mut names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    names
}

#[test]
fn feature_branches_promote_into_a_preview_of_dev() {
    let config = branch_patterns();
    let plan =
        only(gantry_workflows::plan(&config, &github_push("refs/heads/feature/Login_Page", &["src/app.rs"])).unwrap());
    assert_eq!(plan.environment, "dev-feature-login-page");
    assert_eq!(plan.action, PlanAction::Promote);
    assert_eq!(plan.target.environment, "dev-feature-login-page");
    assert_eq!(plan.target.path, "previews/feature-login-page/kustomization.yaml");
    assert_eq!(plan.target.tag, "dev-feature-login-page-sha-6113728");
    assert_eq!(plan.target.yaml_path, None);
    let preview = plan.target.preview.as_ref().unwrap();
    assert_eq!(preview.environment, "dev");
    assert_eq!(preview.branch, "feature/Login_Page");
    assert_eq!(preview.directory, "previews/feature-login-page");
    assert_eq!(preview.template.as_deref(), Some("previews/_template"));
    // dev's steps: no approval there.
    assert_eq!(step_names(&plan), ["open-pr", "resolve", "retag", "update-config"]);
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);
}

#[test]
fn develop_main_tags_and_hotfixes_enter_their_environments() {
    let config = branch_patterns();
    let develop = only(gantry_workflows::plan(&config, &github_push("refs/heads/develop", &["src/app.rs"])).unwrap());
    assert_eq!((develop.environment.as_str(), develop.pipeline.as_str()), ("staging", "branches"));
    assert_eq!(step_names(&develop), ["open-pr", "resolve", "retag", "update-config"]);
    assert_eq!(develop.target.preview, None);

    let main = only(gantry_workflows::plan(&config, &github_push("refs/heads/main", &["src/app.rs"])).unwrap());
    assert_eq!(main.environment, "uat");
    assert_eq!(step_names(&main), ["approve", "open-pr", "resolve", "retag", "update-config"]);
    assert_eq!(main.target.tag, "uat-sha-6113728");

    let tag = only(gantry_workflows::plan(&config, &github_push("refs/tags/v1.2.3", &[])).unwrap());
    assert_eq!(tag.environment, "prod");
    assert_eq!(tag.artifact.tag, "v1.2.3");
    assert_eq!(tag.target.tag, "prod-v1.2.3");
    assert!(step_names(&tag).contains(&"approve"));

    let hotfix =
        only(gantry_workflows::plan(&config, &github_push("refs/heads/hotfix/urgent", &["src/app.rs"])).unwrap());
    assert_eq!((hotfix.environment.as_str(), hotfix.pipeline.as_str()), ("uat", "hotfix"));
    assert_eq!(step_names(&hotfix), ["gate", "open-pr", "resolve", "retag", "scan", "update-config"]);
    assert_eq!(hotfix.trigger, "branch hotfix/*");

    // Anything else starts nothing, and says why per trigger.
    let other = github_push("refs/heads/experiment", &["src/app.rs"]);
    assert!(gantry_workflows::plan(&config, &other).unwrap().is_empty());
    let checks = gantry_workflows::explain(&config, &other);
    assert_eq!(checks.len(), 5);
    assert!(checks.iter().all(|c| !c.matched));
    assert_eq!(checks[1].reason.as_deref(), Some("branch `experiment` does not match `develop`"));
}

#[test]
fn deleting_a_feature_branch_plans_the_removal_of_its_preview() {
    let config = branch_patterns();
    // GitHub's `delete` event, for a branch.
    let mut deleted = fixture("github/octokit-examples/delete.0.json");
    deleted["ref"] = json!("feature/Login_Page");
    deleted["ref_type"] = json!("branch");
    let removal = only(gantry_workflows::plan(&config, &parse_github("delete", &deleted)).unwrap());
    assert_eq!(removal.action, PlanAction::RemovePreview);
    assert_eq!(removal.environment, "dev-feature-login-page");
    assert_eq!(removal.target.preview.as_ref().unwrap().directory, "previews/feature-login-page");
    assert_eq!(step_names(&removal), [gantry_workflows::REMOVE_PREVIEW_KIND]);
    assert_eq!(removal.artifact.tag, "");

    // GitHub's `push` with `deleted: true`: the same removal.
    let mut pushed = fixture("github/octokit-examples/push.1.json");
    pushed["ref"] = json!("refs/heads/feature/Login_Page");
    let same = only(gantry_workflows::plan(&config, &parse_github("push", &pushed)).unwrap());
    assert_eq!((same.action, same.environment.as_str()), (PlanAction::RemovePreview, "dev-feature-login-page"));

    // Deleting develop removes nothing: only previews end with their branch.
    deleted["ref"] = json!("develop");
    let event = parse_github("delete", &deleted);
    assert!(gantry_workflows::plan(&config, &event).unwrap().is_empty());
    let checks = gantry_workflows::explain(&config, &event);
    assert!(checks[1].reason.as_deref().unwrap().contains("only ends preview environments"), "{checks:#?}");
}

#[test]
fn gitlab_pushes_and_deletions_follow_the_same_patterns() {
    let mut config = branch_patterns();
    // GitLab's example project.
    config.apps[0].0.source_repo = "mike/diaspora".into();
    let mut payload = fixture("gitlab/docs-examples/push.0.json");
    payload["ref"] = json!("refs/heads/feature/login");
    let parse = |payload: &Value| match gitlab::parse("Push Hook", payload.to_string().as_bytes()).unwrap() {
        Parsed::Event(event) => event,
        Parsed::Ignored { reason, .. } => panic!("{reason}"),
    };
    let event = parse(&payload);
    assert!(!event.changed_paths_complete, "GitLab listed 2 of its 4 commits");
    let plan = only(gantry_workflows::plan(&config, &event).unwrap());
    assert_eq!(plan.environment, "dev-feature-login");
    assert_eq!(plan.event.sha.as_deref(), Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7"));

    // A GitLab deletion is a push to the all-zero commit.
    payload["after"] = json!("0000000000000000000000000000000000000000");
    payload["checkout_sha"] = json!(null);
    let removal = only(gantry_workflows::plan(&config, &parse(&payload)).unwrap());
    assert_eq!((removal.action, removal.environment.as_str()), (PlanAction::RemovePreview, "dev-feature-login"));
}

#[test]
fn path_filters_drop_docs_only_pushes_and_match_unknown_lists_with_a_note() {
    let config = branch_patterns();
    let docs = github_push("refs/heads/feature/login", &["docs/guide.md", "README.md"]);
    assert!(docs.changed_paths_complete);
    assert!(gantry_workflows::plan(&config, &docs).unwrap().is_empty());
    let check = &gantry_workflows::explain(&config, &docs)[0];
    assert_eq!(check.environment, "dev-feature-login");
    assert_eq!(
        check.reason.as_deref(),
        Some("every changed file is ignored by ignore_paths [`docs/**`, `**/*.md`]"),
        "{check:#?}"
    );

    // A new branch at an existing commit lists no files: promoted, with a note in the plan.
    let mut created = fixture("github/octokit-examples/push.4.json");
    created["ref"] = json!("refs/heads/feature/login");
    created["commits"] = json!([]);
    let plan = only(gantry_workflows::plan(&config, &parse_github("push", &created)).unwrap());
    assert_eq!(plan.notes.len(), 1);
    assert!(plan.notes[0].contains("lists no changed files"), "{:?}", plan.notes);
    let rendered = serde_json::to_value(&plan).unwrap();
    assert_eq!(rendered["notes"], json!(plan.notes));
}

#[test]
fn actor_and_forge_filters_narrow_a_trigger() {
    let mut config = branch_patterns();
    let develop = &mut config.pipelines[0].0.triggers[1];
    develop.actors = vec!["release-*".into(), "Codertocat".into()];
    develop.ignore_actors = vec!["dependabot[bot]".into()];
    develop.forge = Some(gantry_workflows::SourceForge::Github);
    let mut payload = fixture("github/octokit-examples/push.4.json");
    payload["ref"] = json!("refs/heads/develop");
    assert_eq!(only(gantry_workflows::plan(&config, &parse_github("push", &payload)).unwrap()).environment, "staging");
    payload["pusher"]["name"] = json!("mallory");
    let event = parse_github("push", &payload);
    assert!(gantry_workflows::plan(&config, &event).unwrap().is_empty());
    let reason = gantry_workflows::explain(&config, &event)[1].reason.clone().unwrap();
    assert_eq!(reason, "actor `mallory` is not one of [`release-*`, `Codertocat`]");
    payload["pusher"]["name"] = json!("dependabot[bot]");
    let reason = gantry_workflows::explain(&config, &parse_github("push", &payload))[1].reason.clone().unwrap();
    assert!(reason.contains("not one of"), "the allow list comes first: {reason}");
}

/// Writes `files` into a fresh config directory and returns the validation errors.
fn errors_of(files: &[(&str, &str)], catalog: &Kinds) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let errors = gantry_workflows::validate_dir(dir.path(), catalog).iter().map(|e| e.to_string()).collect();
    (dir, errors)
}

const APPS: &str = "\
registries:
  - { name: ci, url: oci-layout:registry }
apps:
  - { name: shop, source_repo: acme/shop, registry: ci, repository: acme/shop }
";

#[test]
fn mistakes_in_triggers_and_previews_are_reported_with_file_and_line() {
    let environments = "\
environments:
  - name: dev
    order: 1
    config_repo: { url: repos/dev.git, path: \"apps/{app}/k.yaml\" }
    previews:
      directory: previews/{app}
      template: ../outside
  - name: prod
    order: 2
    config_repo: { url: repos/prod.git, path: \"apps/{app}/k.yaml\" }
";
    let pipelines = "\
pipelines:
  - name: default
    triggers:
      - on: tag
        pattern: v*
        environment: prod
        artifact_tag: \"{tag}\"
        paths: [src/**]
        preview: true
      - on: branch
        pattern: feature/*
        environment: prod
        artifact_tag: sha-{sha7}
        preview: true
        pipeline: expedite
        ignore_paths: [\"a[\"]
        actors: [\"\"]
    steps:
      - { name: resolve, kind: resolve-artifact }
";
    let (dir, errors) = errors_of(
        &[("apps.yaml", APPS), ("environments.yaml", environments), ("pipelines.yaml", pipelines)],
        &Kinds::all(),
    );
    // The line of the `nth` (from 0) line of `file` holding `needle`.
    let at_nth = |file: &str, needle: &str, nth: usize| {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        let line = text.lines().enumerate().filter(|(_, l)| l.contains(needle)).nth(nth).unwrap().0 + 1;
        format!("{}:{line}: ", dir.path().join(file).display())
    };
    let at = |file: &str, needle: &str| at_nth(file, needle, 0);
    let expect = [
        (at("environments.yaml", "directory: previews/{app}"), "must use {slug}"),
        (at("environments.yaml", "template: ../outside"), "must not have empty, `.` or `..` components"),
        (at("pipelines.yaml", "paths: [src/**]"), "`paths` filters branch pushes"),
        (at_nth("pipelines.yaml", "preview: true", 0), "`preview: true` needs `on: branch`"),
        (at_nth("pipelines.yaml", "preview: true", 1), "environment `prod` has no `previews` section"),
        (at("pipelines.yaml", "pipeline: expedite"), "unknown pipeline `expedite`"),
        (at("pipelines.yaml", "ignore_paths:"), "invalid pattern `a[`"),
        (at("pipelines.yaml", "actors: [\"\"]"), "an empty actor name matches nobody"),
    ];
    for (location, message) in &expect {
        assert!(
            errors.iter().any(|e| e.starts_with(location.as_str()) && e.contains(message)),
            "expected {location}{message} in:\n{}",
            errors.join("\n")
        );
    }
}

#[test]
fn previews_need_an_engine_that_can_remove_them() {
    let environments = "\
environments:
  - name: dev
    order: 1
    config_repo: { url: repos/dev.git, path: \"apps/{app}/k.yaml\" }
    previews: { directory: \"previews/{slug}\" }
";
    let pipelines = "\
pipelines:
  - name: default
    triggers:
      - { on: branch, pattern: feature/*, environment: dev, artifact_tag: \"sha-{sha7}\", preview: true }
    steps:
      - { name: resolve, kind: resolve-artifact }
";
    let files = [("apps.yaml", APPS), ("environments.yaml", environments), ("pipelines.yaml", pipelines)];
    let (_dir, errors) = errors_of(&files, &Kinds::all());
    assert!(errors.is_empty(), "{errors:#?}");
    let (_dir, errors) = errors_of(&files, &Kinds(vec!["resolve-artifact"]));
    assert_eq!(errors, ["preview environments need the `remove-preview` step kind, which this build lacks"]);
}
