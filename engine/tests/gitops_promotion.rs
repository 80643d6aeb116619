//! GitOps writes end to end on a real bare env repo, driven by a real configuration
//! directory: several images promoted atomically in one commit and one change request, and
//! the forge chosen per environment (`forge: github` against an HTTP fake of the GitHub REST
//! API that replays octokit's pull request shapes; the branch itself is pushed to the bare
//! repository).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use gantry_engine::forge::{Forge, LocalForge};
use gantry_engine::git::{Signature, init_bare_repo};
use gantry_engine::repos::RepoCatalog;
use gantry_engine::steps::{StepContext, StepError, StepOutcome, StepRegistry};
use gantry_engine::store::{NewRun, RunOrigin};
use gantry_engine::{Capabilities, SqliteStore, Store};
use gantry_workflows::{Config, Plan};
use serde_json::{Map, Value, json};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DIGEST: &str = "sha256:6f11ad3c94505e2f1b6c3a8e7d9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b";
const BRANCH: &str = "gantry/prod/web/6f11ad3c9450";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "ghp_gantryGitopsTest000000000000000000";

const KUSTOMIZATION: &str = "\
# web in prod; tags are pinned by gantry
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
images:
  - name: ghcr.io/acme/web
    newTag: prod-1.4.2   # the app
  - name: ghcr.io/acme/web-migrations
    newTag: prod-1.4.2
  - name: ghcr.io/acme/web-docs
    newTag: prod-1.5.0
";

const WORKER_VALUES: &str = "\
# worker released with web
replicaCount: 3
image:
  repository: ghcr.io/acme/worker
  tag: \"prod-1.4.2\"
resources:
  limits: { cpu: 500m }
";

fn gantry() -> Signature {
    Signature { name: "gantry".into(), email: "gantry@example.com".into() }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

struct World {
    dir: tempfile::TempDir,
    remote: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("repos/prod.git");
        init_bare_repo(
            &remote,
            "main",
            &[
                ("apps/web/kustomization.yaml", KUSTOMIZATION.as_bytes()),
                ("apps/worker/values.yaml", WORKER_VALUES.as_bytes()),
                ("README.md", b"prod\n"),
            ],
            &gantry(),
        )
        .unwrap();
        World { dir, remote }
    }

    /// Writes `environment` (YAML lines of one environment item) into a config directory
    /// with one app and a pipeline whose `update-config` step has `edits`; loads it.
    fn config(&self, environment: &str, update_config_with: &str) -> Config {
        let config_dir = self.dir.path().join("config");
        std::fs::create_dir_all(&config_dir).unwrap();
        let yaml = format!(
            "registries:\n  - name: local\n    url: oci-layout:registry\n\
             apps:\n  - name: web\n    source_repo: acme/web\n    registry: local\n    repository: ghcr.io/acme/web\n\
             environments:\n{environment}\
             pipelines:\n  - name: default\n    triggers:\n      - on: tag\n        pattern: \"*\"\n        environment: prod\n        artifact_tag: \"{{tag}}\"\n\
             \x20   steps:\n      - name: update-config\n        kind: update-config\n{update_config_with}\
             \x20     - name: open-pr\n        kind: open-pr\n        needs: [update-config]\n        with:\n          labels: [promotion]\n\
             \x20     - name: wait\n        kind: wait-for-merge\n        needs: [open-pr]\n"
        );
        std::fs::write(config_dir.join("gantry.yaml"), yaml).unwrap();
        gantry_workflows::load_dir(&config_dir, &StepRegistry::builtin()).unwrap_or_else(|errors| {
            panic!("config: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        })
    }

    fn show(&self, rev: &str, path: &str) -> String {
        git(&self.remote, &["show", &format!("{rev}:{path}")])
    }
}

fn plan(config: &Config) -> Plan {
    let event: gantry_webhooks::GitEvent = serde_json::from_value(json!({
        "forge": "github", "kind": "tag", "repo": "acme/web", "ref_kind": "tag", "ref": "1.5.0",
        "before": null, "sha": SHA, "deleted": false, "merged": false, "actor": "octocat",
        "change_request": null, "timestamp": null, "changed_paths": []
    }))
    .unwrap();
    gantry_workflows::plan(config, &event).unwrap().into_iter().next().expect("the tag plans a promotion into prod")
}

/// Runs the planned step `name` once, with the outputs of the steps before it.
async fn run_step(
    plan: &Plan,
    name: &str,
    run_id: &str,
    outputs: &Map<String, Value>,
    capabilities: &Arc<Capabilities>,
) -> Result<StepOutcome, StepError> {
    let planned = plan.steps.iter().find(|step| step.name == name).unwrap();
    let registry = StepRegistry::builtin();
    let kind = registry.get(&planned.kind).unwrap();
    let ctx = StepContext {
        run_id: run_id.to_owned(),
        step: name.to_owned(),
        attempt: 1,
        config: planned.with.clone(),
        plan: plan.clone(),
        digest: Some(DIGEST.to_owned()),
        run_created_at: 1_767_323_045_000,
        outputs: outputs.clone(),
        progress: None,
        started_at: gantry_engine::model::now_millis(),
        capabilities: capabilities.clone(),
    };
    kind.run(&ctx).await
}

fn succeeded(outcome: Result<StepOutcome, StepError>) -> Value {
    match outcome {
        Ok(StepOutcome::Succeeded { outputs, .. }) => outputs,
        other => panic!("expected success, got {other:?}"),
    }
}

async fn store_with_run(world: &World, plan: &Plan) -> (Arc<SqliteStore>, String) {
    let store = Arc::new(SqliteStore::open(&world.dir.path().join("gantry.db")).await.unwrap());
    let run_id = store
        .create_run(NewRun { plan, digest: Some(DIGEST), origin: RunOrigin::Manual, bypass_hold: true })
        .await
        .unwrap()
        .expect("the run is created");
    (store, run_id)
}

const LOCAL_PROD: &str = "  - name: prod\n    order: 1\n    config_repo:\n      url: repos/prod.git\n      path: apps/{app}/kustomization.yaml\n";

/// The promotion's edits: both images of the web kustomization, the worker's Helm values
/// pinned by tag and digest, and the docs image that already runs the version.
const EDITS: &str = "        with:\n          edits:\n\
    \x20           - image: ghcr.io/acme/web\n\
    \x20           - image: ghcr.io/acme/web-migrations\n\
    \x20           - path: apps/worker/values.yaml\n              helm: image\n              digest: \"{digest}\"\n\
    \x20           - image: ghcr.io/acme/web-docs\n              tag: prod-1.5.0\n";

#[tokio::test]
async fn several_images_are_promoted_in_one_commit_and_one_change_request() {
    let world = World::new();
    let config = world.config(LOCAL_PROD, EDITS);
    let plan = plan(&config);
    let (store, run_id) = store_with_run(&world, &plan).await;
    let data_dir = world.dir.path();
    let repos = Arc::new(RepoCatalog::from_config(&config, data_dir));
    let forge: Arc<dyn Forge> =
        Arc::new(LocalForge::new(store.clone()).with_mirrors(data_dir.join("mirrors")).with_repos(repos.clone()));
    let capabilities = Arc::new(Capabilities::new(data_dir, forge, None).with_repos(repos));
    let main_before = git(&world.remote, &["rev-parse", "main"]).trim().to_owned();

    let mut outputs = Map::new();
    let update = succeeded(run_step(&plan, "update-config", &run_id, &outputs, &capabilities).await);
    assert_eq!(update["changed"], json!(true));
    assert_eq!(update["branch"], json!(BRANCH));
    assert_eq!(update["paths"], json!(["apps/web/kustomization.yaml", "apps/worker/values.yaml"]));
    let changed: Vec<bool> =
        update["edits"].as_array().unwrap().iter().map(|edit| edit["changed"].as_bool().unwrap()).collect();
    assert_eq!(changed, [true, true, true, false], "the docs image already runs prod-1.5.0");
    outputs.insert("update-config".into(), update.clone());

    // A re-run after a crash makes the identical commit.
    let again = succeeded(run_step(&plan, "update-config", &run_id, &Map::new(), &capabilities).await);
    assert_eq!(again["commit"], update["commit"]);

    let opened = succeeded(run_step(&plan, "open-pr", &run_id, &outputs, &capabilities).await);
    assert_eq!(opened["forge"], json!("local"));
    assert_eq!(opened["opened"], json!(true));
    let commit = update["commit"].as_str().unwrap();
    assert_eq!(git(&world.remote, &["rev-parse", BRANCH]).trim(), commit);

    // One commit on top of main, and its diff is exactly the changed scalars.
    assert_eq!(git(&world.remote, &["rev-list", "--count", &format!("main..{BRANCH}")]).trim(), "1");
    assert_eq!(git(&world.remote, &["rev-parse", &format!("{BRANCH}^")]).trim(), main_before);
    let diff = git(&world.remote, &["diff", "--unified=0", "main", BRANCH]);
    let changes: Vec<&str> = diff
        .lines()
        .filter(|line| {
            (line.starts_with('+') || line.starts_with('-')) && !line.starts_with("+++") && !line.starts_with("---")
        })
        .collect();
    assert_eq!(
        changes,
        [
            "-    newTag: prod-1.4.2   # the app",
            "+    newTag: prod-1.5.0   # the app",
            "-    newTag: prod-1.4.2",
            "+    newTag: prod-1.5.0",
            "-  tag: \"prod-1.4.2\"",
            "+  tag: \"prod-1.5.0\"",
            &format!("+  digest: {DIGEST}"),
        ],
        "{diff}"
    );
    assert!(world.show(BRANCH, "apps/web/kustomization.yaml").contains("# web in prod; tags are pinned by gantry"));

    // One change request, whose body lists every image that moved.
    let requests = store.change_requests(&run_id).await.unwrap();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let body = &requests[0].body;
    for expected in ["image ghcr.io/acme/web ", "image ghcr.io/acme/web-migrations", "helm image", DIGEST] {
        assert!(body.contains(expected), "{expected:?} missing from\n{body}");
    }
    assert!(!body.contains("image ghcr.io/acme/web-docs"), "unchanged images are not listed:\n{body}");

    // Opening again finds the same request; merging lands the one commit on main.
    let reopened = succeeded(run_step(&plan, "open-pr", &run_id, &outputs, &capabilities).await);
    assert_eq!(reopened["opened"], json!(false));
    assert_eq!(reopened["change_request"], opened["change_request"]);
    let local = capabilities.forge().clone();
    let request = local.find_change_request(&capabilities.repo_url("repos/prod.git"), BRANCH).await.unwrap().unwrap();
    local.merge_change_request(&request, gantry_engine::forge::MergeMethod::Merge).await.unwrap();
    assert!(world.show("main", "apps/worker/values.yaml").contains(DIGEST));
    assert!(
        world
            .show("main", "apps/web/kustomization.yaml")
            .contains("ghcr.io/acme/web-migrations\n    newTag: prod-1.5.0")
    );
}

/// The pull request octokit's example shows, as GitHub would answer for gantry's branch.
fn pull(number: i64, head_sha: &str, merged: bool) -> Value {
    let file =
        format!("{}/../tests/fixtures/github/octokit-examples/pull_request.opened.0.json", env!("CARGO_MANIFEST_DIR"));
    let payload: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut pull = payload["pull_request"].clone();
    pull["number"] = json!(number);
    pull["head"]["ref"] = json!(BRANCH);
    pull["head"]["sha"] = json!(head_sha);
    pull["base"]["ref"] = json!("main");
    if merged {
        // Derived the way GitHub reports a merge (no licensed merged example exists).
        pull["state"] = json!("closed");
        pull["merged"] = json!(true);
        pull["merged_at"] = json!("2026-01-02T03:04:05Z");
        pull["merge_commit_sha"] = json!("6dcb09b5b57875f334f61aebed695e2e4193db5e");
    }
    pull
}

#[tokio::test]
async fn the_environment_s_forge_setting_opens_a_github_pull_request() {
    let world = World::new();
    let server = MockServer::start().await;
    let token_file = world.dir.path().join("config-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let environment = format!(
        "  - name: prod\n    order: 1\n    config_repo:\n      url: repos/prod.git\n      path: apps/{{app}}/kustomization.yaml\n\
         \x20     forge: github\n      github:\n        repository: acme/env-prod\n        api_url: {}\n        token_file: {}\n",
        server.uri(),
        token_file.display()
    );
    let config = world.config(&environment, "");
    let plan = plan(&config);
    let (store, run_id) = store_with_run(&world, &plan).await;
    let data_dir = world.dir.path();
    let repos = Arc::new(RepoCatalog::from_config(&config, data_dir));
    let local: Arc<dyn Forge> = Arc::new(LocalForge::new(store.clone()).with_mirrors(data_dir.join("mirrors")));

    // Without the environment's settings the plan's `github` cannot be served: nothing is
    // pushed, and the error says what is missing.
    let bare = Arc::new(Capabilities::new(data_dir, local.clone(), None));
    let mut outputs = Map::new();
    let update = succeeded(run_step(&plan, "update-config", &run_id, &outputs, &bare).await);
    outputs.insert("update-config".into(), update.clone());
    let error = run_step(&plan, "open-pr", &run_id, &outputs, &bare).await.unwrap_err();
    assert!(matches!(&error, StepError::Terminal { message } if message.contains("no github settings")), "{error:?}");
    assert!(git(&world.remote, &["branch", "--list", BRANCH]).trim().is_empty());

    let capabilities =
        Arc::new(Capabilities::new(data_dir, local, Some("https://gantry.example.com".to_owned())).with_repos(repos));
    let commit = update["commit"].as_str().unwrap().to_owned();
    let pulls = "/repos/acme/env-prod/pulls";
    let authorization = format!("Bearer {TOKEN}");
    Mock::given(method("GET"))
        .and(path(pulls))
        .and(query_param("head", format!("acme:{BRANCH}").as_str()))
        .and(header("authorization", authorization.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(pulls))
        .and(header("authorization", authorization.as_str()))
        .and(body_partial_json(json!({ "head": BRANCH, "base": "main", "title": "Promote web 1.5.0 to prod" })))
        .respond_with(ResponseTemplate::new(201).set_body_json(pull(7, &commit, false)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/env-prod/issues/7/labels"))
        .and(body_partial_json(json!({ "labels": ["promotion"] })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{ "name": "promotion" }])))
        .expect(1)
        .mount(&server)
        .await;

    let opened = succeeded(run_step(&plan, "open-pr", &run_id, &outputs, &capabilities).await);
    assert_eq!(opened["forge"], json!("github"));
    assert_eq!(opened["repo"], json!("acme/env-prod"));
    assert_eq!(opened["change_request"], json!(7));
    assert_eq!(git(&world.remote, &["rev-parse", BRANCH]).trim(), commit, "the branch went to the env repo");
    assert!(store.change_requests(&run_id).await.unwrap().is_empty(), "GitHub, not the store, holds it");

    let requests = server.received_requests().await.unwrap();
    let create =
        requests.iter().find(|request| request.method.as_str() == "POST" && request.url.path() == pulls).unwrap();
    let sent: Value = serde_json::from_slice(&create.body).unwrap();
    let body = sent["body"].as_str().unwrap();
    for expected in [
        format!("https://github.com/acme/web/commit/{SHA}"),
        format!("https://gantry.example.com/runs/{run_id}"),
        format!("`{DIGEST}`"),
        "+    newTag: prod-1.5.0   # the app".to_owned(),
    ] {
        assert!(body.contains(&expected), "{expected:?} missing from\n{body}");
    }

    // wait-for-merge asks the same forge, under the same repository name.
    outputs.insert("open-pr".into(), opened);
    Mock::given(method("GET"))
        .and(path(pulls))
        .and(query_param("head", format!("acme:{BRANCH}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([pull(7, &commit, true)])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{pulls}/7")))
        .respond_with(ResponseTemplate::new(200).set_body_json(pull(7, &commit, true)))
        .mount(&server)
        .await;
    let merged = succeeded(run_step(&plan, "wait", &run_id, &outputs, &capabilities).await);
    assert_eq!(merged["forge"], json!("github"));
    assert_eq!(merged["merged"], json!(true));
    assert_eq!(merged["merge_commit"], json!("6dcb09b5b57875f334f61aebed695e2e4193db5e"));
}

#[tokio::test]
async fn an_unreadable_forge_token_fails_the_step_with_its_source() {
    let world = World::new();
    let server = MockServer::start().await;
    let environment = format!(
        "  - name: prod\n    order: 1\n    config_repo:\n      url: repos/prod.git\n      path: apps/{{app}}/kustomization.yaml\n\
         \x20     forge: github\n      github:\n        api_url: {}\n        token_env: GANTRY_TEST_UNSET_GITHUB_TOKEN\n",
        server.uri()
    );
    let config = world.config(&environment, "");
    let plan = plan(&config);
    let (store, run_id) = store_with_run(&world, &plan).await;
    let data_dir = world.dir.path();
    let local: Arc<dyn Forge> = Arc::new(LocalForge::new(store).with_mirrors(data_dir.join("mirrors")));
    let capabilities = Arc::new(
        Capabilities::new(data_dir, local, None).with_repos(Arc::new(RepoCatalog::from_config(&config, data_dir))),
    );
    let mut outputs = Map::new();
    let update = succeeded(run_step(&plan, "update-config", &run_id, &outputs, &capabilities).await);
    outputs.insert("update-config".into(), update);
    let error = run_step(&plan, "open-pr", &run_id, &outputs, &capabilities).await.unwrap_err();
    let StepError::Terminal { message } = error else { panic!("a missing token is not retried: {error:?}") };
    assert!(message.contains("environment variable GANTRY_TEST_UNSET_GITHUB_TOKEN is not set"), "{message}");
    assert!(server.received_requests().await.unwrap().is_empty());
    assert!(git(&world.remote, &["branch", "--list", BRANCH]).trim().is_empty(), "nothing was pushed");
}
