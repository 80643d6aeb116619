//! Branch-based development end to end: each of the five branch patterns of
//! `tests/fixtures/branch_patterns` from a signed GitHub webhook to the right environment's
//! config repo and registry tag, through `gantry serve` with real bare repositories and a
//! real `docker-registry`:
//!
//! - `feature/*` → a preview of dev of its own (a directory started from the template), and
//!   the branch's deletion removes it through a change request;
//! - `develop` → staging; an older push of `develop` delivered late starts nothing;
//! - `main` → uat, once a person approves;
//! - `v*` tags → prod, once a person approves;
//! - `hotfix/*` → uat at once, through the hotfix pipeline's mandatory scan and gate.
//!
//! And, in process against a real SQLite store: a newer push supersedes queued work for the
//! same app and environment, and an older one is recorded as ignored.
//!
//! Payloads are GitHub's own examples (`push`, `delete`) with the ref, commits and changed
//! files set to what each case needs.

#[path = "support/gantry.rs"]
mod gantry_support;
#[path = "support/registry.rs"]
mod registry_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_engine::git::{Signature, init_bare_repo};
use gantry_engine::intake::process_inbox;
use gantry_engine::registry::{self, Digest, RegistryAuth, sample_image};
use gantry_engine::store::{DeliveryStatus, NewDelivery};
use gantry_engine::{SqliteStore, StepRegistry, Store};
use gantry_support::{Gantry, changed_lines, git};
use registry_support::TestRegistry;
use serde_json::{Value, json};

const SECRET: &str = "it's a secret to everybody";
const APP_KUSTOMIZATION: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
images:
  - name: hello-world
    newTag: \"0.0.1\"
";
const PREVIEW_KUSTOMIZATION: &str = "\
# Preview of {{app}} for branch {{branch}} ({{preview}})
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: preview-{{slug}}
resources:
  - namespace.yaml
  - ../../apps/hello-world
images:
  - name: hello-world
    newTag: \"none-yet\"
";
const PREVIEW_NAMESPACE: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: preview-{{slug}}
";
const VALUES: &str = "\
image:
  repository: acme/hello-world
  tag: \"0.0.1\"
";

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn fixture(relative: &str) -> Value {
    serde_json::from_slice(&std::fs::read(repo_file("tests/fixtures").join(relative)).unwrap()).unwrap()
}

/// A commit id made of one repeated hex digit, e.g. `sha('b')`.
fn sha(digit: char) -> String {
    std::iter::repeat_n(digit, 40).collect()
}

/// GitHub's `push` example, pushed to `full_ref` from `before` to `after`, its commit made at
/// `timestamp` and changing `modified`.
fn push_payload(full_ref: &str, before: &str, after: &str, timestamp: &str, modified: &[&str]) -> Vec<u8> {
    let mut payload = fixture("github/octokit-examples/push.4.json");
    payload["ref"] = json!(full_ref);
    payload["before"] = json!(before);
    payload["after"] = json!(after);
    payload["created"] = json!(false);
    let mut commit = payload["head_commit"].take();
    commit["id"] = json!(after);
    commit["timestamp"] = json!(timestamp);
    commit["added"] = json!([]);
    commit["modified"] = json!(modified);
    payload["commits"] = json!([commit.clone()]);
    payload["head_commit"] = commit;
    serde_json::to_vec(&payload).unwrap()
}

/// GitHub's `delete` example, for branch `branch`.
fn delete_payload(branch: &str) -> Vec<u8> {
    let mut payload = fixture("github/octokit-examples/delete.0.json");
    payload["ref"] = json!(branch);
    payload["ref_type"] = json!("branch");
    serde_json::to_vec(&payload).unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    config_dir: PathBuf,
    registry: TestRegistry,
}

/// The branch-pattern config against a fresh registry, and the four environments' config
/// repos under the data directory, where the config's relative URLs point.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start();
    let data_dir = dir.path().join("data");
    let author = Signature { name: "platform".into(), email: "platform@example.com".into() };
    let repos = data_dir.join("repos");
    let kustomization = ("apps/hello-world/kustomization.yaml", APP_KUSTOMIZATION.as_bytes());
    let values = ("apps/hello-world/values.yaml", VALUES.as_bytes());
    let dev = [
        kustomization,
        ("previews/_template/kustomization.yaml", PREVIEW_KUSTOMIZATION.as_bytes()),
        ("previews/_template/namespace.yaml", PREVIEW_NAMESPACE.as_bytes()),
    ];
    init_bare_repo(&repos.join("dev.git"), "main", &dev, &author).unwrap();
    init_bare_repo(&repos.join("staging.git"), "main", &[kustomization], &author).unwrap();
    init_bare_repo(&repos.join("uat.git"), "main", &[values], &author).unwrap();
    init_bare_repo(&repos.join("prod.git"), "main", &[values], &author).unwrap();

    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(config_dir.join("reports")).unwrap();
    let source = repo_file("tests/fixtures/branch_patterns");
    for file in ["environments.yaml", "pipelines.yaml", "reports/hotfix-trivy.json"] {
        std::fs::copy(source.join(file), config_dir.join(file)).unwrap();
    }
    let registries = std::fs::read_to_string(source.join("registries.yaml")).unwrap();
    assert!(registries.contains("url: oci-layout:registry"));
    let registries = registries.replace("url: oci-layout:registry", &format!("url: {}", registry.url()));
    std::fs::write(config_dir.join("registries.yaml"), registries).unwrap();
    Setup { data_dir, config_dir, registry, _dir: dir }
}

impl Setup {
    fn start(&self) -> Gantry {
        Gantry::start("serve", &self.data_dir, &self.config_dir, &[("GANTRY_GITHUB_SECRET", SECRET)])
    }

    fn repo(&self, environment: &str) -> PathBuf {
        self.data_dir.join("repos").join(format!("{environment}.git"))
    }

    fn registry(&self) -> Arc<dyn registry::Registry> {
        registry::open(&self.registry.url(), Path::new("."), RegistryAuth::Anonymous).unwrap()
    }

    /// CI builds the commit `sha` and pushes it as `tag`.
    async fn ci_push(&self, sha: &str, tag: &str) -> Digest {
        let image = sample_image("hello-world", &[("org.opencontainers.image.revision", sha)]);
        self.registry().push_image("acme/hello-world", tag, &image).await.unwrap()
    }

    async fn tag(&self, tag: &str) -> Option<Digest> {
        self.registry().resolve("acme/hello-world", tag).await.unwrap()
    }

    /// Branches gantry pushed to an environment's repo.
    fn gantry_branches(&self, environment: &str) -> Vec<String> {
        git(&self.repo(environment), &["for-each-ref", "--format=%(refname:short)", "refs/heads/gantry/"])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Sends a delivery as GitHub does, signed with the configured secret.
async fn send(gantry: &Gantry, event: &str, delivery: &str, body: &[u8]) {
    let status = reqwest::Client::new()
        .post(format!("{}/hooks/github", gantry.url))
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", gantry_webhooks::github::sign(SECRET.as_bytes(), body))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202, "{event} {delivery}");
}

async fn runs(gantry: &Gantry) -> Vec<Value> {
    reqwest::get(format!("{}/api/runs", gantry.url)).await.unwrap().json().await.unwrap()
}

async fn run(gantry: &Gantry, id: &str) -> Value {
    reqwest::get(format!("{}/api/runs/{id}", gantry.url)).await.unwrap().json().await.unwrap()
}

/// Waits until the run into `environment` satisfies `ready`, and returns it in full.
async fn wait_for(gantry: &Gantry, environment: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = runs(gantry).await.into_iter().find(|r| r["environment"] == environment) {
            let found = run(gantry, found["id"].as_str().unwrap()).await;
            if ready(&found) {
                return found;
            }
        }
        assert!(Instant::now() < deadline, "no matching run into {environment} within 60s:\n{}", gantry.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_final(run: &Value) -> bool {
    ["succeeded", "failed", "cancelled"].contains(&run["state"].as_str().unwrap_or_default())
}

fn step<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no {name}: {run:#}"))
}

async fn approve(gantry: &Gantry, environment: &str) -> Value {
    let waiting = wait_for(gantry, environment, |r| step(r, "approve")["state"] == "waiting").await;
    let id = waiting["id"].as_str().unwrap();
    let status = reqwest::Client::new()
        .post(format!("{}/api/runs/{id}/steps/approve/approve", gantry.url))
        .json(&json!({ "approver": "release-manager" }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    wait_for(gantry, environment, is_final).await
}

/// What became of a delivery, once intake has handled it.
async fn delivery(gantry: &Gantry, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = reqwest::get(format!("{}/api/deliveries/github/{id}", gantry.url)).await.unwrap();
        if response.status() == 200 {
            let value: Value = response.json().await.unwrap();
            if value["status"] != "received" {
                return value;
            }
        }
        assert!(Instant::now() < deadline, "delivery {id} not handled within 30s:\n{}", gantry.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A promotion that must have reached `environment`: its repo holds exactly the promotion
/// branch with `expected` lines changed, the registry has `tag` at `digest`, and no other
/// environment was touched.
async fn assert_promoted(setup: &Setup, run: &Value, environment: &str, digest: &Digest, tag: &str, expected: &[&str]) {
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(run["environment"], environment);
    assert_eq!(run["digest"], digest.as_str());
    let branch = format!("gantry/{environment}/hello-world/{}", &digest.hex()[..12]);
    assert_eq!(setup.gantry_branches(environment), std::slice::from_ref(&branch));
    let diff = git(&setup.repo(environment), &["diff", "main", &branch]);
    assert_eq!(changed_lines(&diff), expected, "{diff}");
    assert_eq!(setup.tag(tag).await.as_ref(), Some(digest));
    for other in ["dev", "staging", "uat", "prod"].into_iter().filter(|e| *e != environment) {
        assert!(setup.gantry_branches(other).is_empty(), "{other} was touched");
    }
    let requests = run["change_requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0]["branch"], branch.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn feature_branch_push_creates_a_preview_and_its_deletion_removes_it() {
    let setup = setup();
    let commit = sha('f');
    let digest = setup.ci_push(&commit, "sha-fffffff").await;
    let gantry = setup.start();

    // A change to the docs alone builds no preview.
    let docs = push_payload("refs/heads/feature/Login", &sha('e'), &sha('d'), "2026-01-05T10:00:00Z", &["docs/a.md"]);
    send(&gantry, "push", "docs-only", &docs).await;
    let handled = delivery(&gantry, "docs-only").await;
    assert_eq!(handled["status"], "processed");
    assert!(handled["detail"].as_str().unwrap().contains("every changed file is ignored"), "{handled:#}");

    let body = push_payload("refs/heads/feature/Login", &sha('d'), &commit, "2026-01-05T11:00:00Z", &["src/login.rs"]);
    send(&gantry, "push", "feature-push", &body).await;
    let preview = wait_for(&gantry, "dev-feature-login", is_final).await;
    assert_eq!(preview["state"], "succeeded", "{preview:#}");
    assert_eq!(preview["digest"], digest.as_str());
    assert_eq!(runs(&gantry).await.len(), 1, "the docs-only push started nothing");

    // The promotion branch adds the preview, made from the template, with the preview's tag.
    let dev = setup.repo("dev");
    let branch = format!("gantry/dev-feature-login/hello-world/{}", &digest.hex()[..12]);
    assert_eq!(setup.gantry_branches("dev"), std::slice::from_ref(&branch));
    let added = git(&dev, &["diff", "--name-status", "main", &branch]);
    assert_eq!(
        added.lines().collect::<Vec<_>>(),
        ["A\tpreviews/feature-login/kustomization.yaml", "A\tpreviews/feature-login/namespace.yaml"]
    );
    let kustomization = git(&dev, &["show", &format!("{branch}:previews/feature-login/kustomization.yaml")]);
    assert!(kustomization.contains("# Preview of hello-world for branch feature/Login (dev-feature-login)"));
    assert!(kustomization.contains("namespace: preview-feature-login\n"), "{kustomization}");
    assert!(kustomization.contains("newTag: \"dev-feature-login-sha-fffffff\""), "{kustomization}");
    let namespace = git(&dev, &["show", &format!("{branch}:previews/feature-login/namespace.yaml")]);
    assert!(namespace.contains("name: preview-feature-login"), "{namespace}");
    assert_eq!(setup.tag("dev-feature-login-sha-fffffff").await, Some(digest.clone()));
    assert_eq!(preview["change_requests"][0]["branch"], branch.as_str());

    // A reviewer merges it: the preview now lives on dev's main.
    let merged = git(&dev, &["rev-parse", &branch]);
    git(&dev, &["update-ref", "refs/heads/main", merged.trim()]);

    // The branch is deleted: a change request removes the preview's directory, and only it.
    send(&gantry, "delete", "feature-delete", &delete_payload("feature/Login")).await;
    let removal = wait_for(&gantry, "dev-feature-login", |r| {
        r["trigger"] == "branch feature/*" && r["id"] != preview["id"] && is_final(r)
    })
    .await;
    assert_eq!(removal["state"], "succeeded", "{removal:#}");
    assert_eq!(removal["digest"], Value::Null);
    let removed = step(&removal, "remove-preview");
    assert_eq!(removed["outputs"]["removed"], true, "{removed:#}");
    assert_eq!(removed["outputs"]["files"], 2);
    let removal_branch = removed["outputs"]["branch"].as_str().unwrap().to_string();
    assert!(removal_branch.starts_with("gantry/dev-feature-login/hello-world/remove-"), "{removal_branch}");
    let deleted = git(&dev, &["diff", "--name-status", "main", &removal_branch]);
    assert_eq!(
        deleted.lines().collect::<Vec<_>>(),
        ["D\tpreviews/feature-login/kustomization.yaml", "D\tpreviews/feature-login/namespace.yaml"]
    );
    let left = git(&dev, &["ls-tree", "-r", "--name-only", &removal_branch]);
    assert!(left.contains("previews/_template/kustomization.yaml"), "the template stays: {left}");
    assert!(left.contains("apps/hello-world/kustomization.yaml"), "{left}");
    let requests = removal["change_requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0]["branch"], removal_branch.as_str());
    assert_eq!(requests[0]["title"], "Remove preview dev-feature-login of hello-world");

    // GitHub also sends a `push` with `deleted: true` for the same deletion: nothing new.
    let mut deleted_push = fixture("github/octokit-examples/push.1.json");
    deleted_push["ref"] = json!("refs/heads/feature/Login");
    deleted_push["before"] = json!(commit);
    send(&gantry, "push", "feature-delete-push", &serde_json::to_vec(&deleted_push).unwrap()).await;
    let repeated = delivery(&gantry, "feature-delete-push").await;
    assert_eq!(repeated["status"], "ignored", "{repeated:#}");
    assert!(repeated["detail"].as_str().unwrap().contains("deleted already"), "{repeated:#}");
    assert_eq!(runs(&gantry).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn develop_promotes_into_staging_and_an_older_push_delivered_late_does_not() {
    let setup = setup();
    let (older, newer) = (sha('a'), sha('b'));
    let digest = setup.ci_push(&newer, "sha-bbbbbbb").await;
    setup.ci_push(&older, "sha-aaaaaaa").await;
    let gantry = setup.start();

    let body = push_payload("refs/heads/develop", &older, &newer, "2026-01-05T12:00:00Z", &["src/lib.rs"]);
    send(&gantry, "push", "develop-b", &body).await;
    let promoted = wait_for(&gantry, "staging", is_final).await;
    assert_promoted(
        &setup,
        &promoted,
        "staging",
        &digest,
        "staging-sha-bbbbbbb",
        &["-    newTag: \"0.0.1\"", "+    newTag: \"staging-sha-bbbbbbb\""],
    )
    .await;

    // The push that made `develop` point at the older commit arrives only now.
    let late = push_payload("refs/heads/develop", &sha('9'), &older, "2026-01-05T11:00:00Z", &["src/lib.rs"]);
    send(&gantry, "push", "develop-a-late", &late).await;
    let ignored = delivery(&gantry, "develop-a-late").await;
    assert_eq!(ignored["status"], "ignored", "{ignored:#}");
    let detail = ignored["detail"].as_str().unwrap();
    assert!(detail.contains("older than") && detail.contains("develop-b"), "{detail}");
    assert_eq!(runs(&gantry).await.len(), 1);
    assert_eq!(setup.tag("staging-sha-aaaaaaa").await, None, "staging never went back");
}

#[tokio::test(flavor = "multi_thread")]
async fn main_promotes_into_uat_once_approved() {
    let setup = setup();
    let commit = sha('c');
    let digest = setup.ci_push(&commit, "sha-ccccccc").await;
    let gantry = setup.start();
    let body = push_payload("refs/heads/main", &sha('b'), &commit, "2026-01-05T12:00:00Z", &["src/lib.rs"]);
    send(&gantry, "push", "main-push", &body).await;
    let waiting = wait_for(&gantry, "uat", |r| step(r, "approve")["state"] == "waiting").await;
    assert_eq!(step(&waiting, "update-config")["state"], "pending", "nothing moves before the approval");
    assert_eq!(setup.tag("uat-sha-ccccccc").await, None);
    let promoted = approve(&gantry, "uat").await;
    assert_eq!(step(&promoted, "approve")["outputs"]["approved_by"], "release-manager");
    assert_promoted(
        &setup,
        &promoted,
        "uat",
        &digest,
        "uat-sha-ccccccc",
        &["-  tag: \"0.0.1\"", "+  tag: \"uat-sha-ccccccc\""],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn release_tags_promote_into_prod_once_approved() {
    let setup = setup();
    let commit = sha('c');
    let digest = setup.ci_push(&commit, "v1.2.3").await;
    let gantry = setup.start();
    let body = push_payload("refs/tags/v1.2.3", &"0".repeat(40), &commit, "2026-01-06T09:00:00Z", &[]);
    send(&gantry, "push", "tag-push", &body).await;
    let promoted = approve(&gantry, "prod").await;
    assert_promoted(
        &setup,
        &promoted,
        "prod",
        &digest,
        "prod-v1.2.3",
        &["-  tag: \"0.0.1\"", "+  tag: \"prod-v1.2.3\""],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hotfix_branches_take_the_expedited_path_through_a_mandatory_scan() {
    let setup = setup();
    let commit = sha('7');
    let digest = setup.ci_push(&commit, "sha-7777777").await;
    let gantry = setup.start();
    let body = push_payload("refs/heads/hotfix/urgent", &sha('6'), &commit, "2026-01-06T03:00:00Z", &["src/fix.rs"]);
    send(&gantry, "push", "hotfix-push", &body).await;
    let promoted = wait_for(&gantry, "uat", is_final).await;
    assert_eq!(promoted["pipeline"], "hotfix");
    let names: Vec<&str> = promoted["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(!names.contains(&"approve"), "expedited: no approval wait ({names:?})");
    let scan = step(&promoted, "scan");
    assert_eq!(scan["state"], "succeeded", "{scan:#}");
    assert!(scan["outputs"]["scan"]["sha256"].is_string(), "the report is kept as evidence: {scan:#}");
    assert_eq!(scan["outputs"]["scan"]["findings"], 4, "{scan:#}");
    let gate = step(&promoted, "gate");
    assert_eq!(gate["state"], "succeeded", "{gate:#}");
    assert_eq!(gate["outputs"]["decision"], "allow", "{gate:#}");
    assert_promoted(
        &setup,
        &promoted,
        "uat",
        &digest,
        "uat-sha-7777777",
        &["-  tag: \"0.0.1\"", "+  tag: \"uat-sha-7777777\""],
    )
    .await;
}

/// `gantry plan` shows what each trigger made of an event, and what a match assumed.
#[test]
fn plan_shows_the_trigger_filters_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo_file("tests/fixtures/branch_patterns");
    let plan = |name: &str, body: Vec<u8>| {
        let event = dir.path().join(name);
        std::fs::write(&event, body).unwrap();
        let (code, stdout, stderr) = gantry_support::run(&[
            "plan",
            "--config",
            config.to_str().unwrap(),
            "--forge",
            "github",
            "--event",
            event.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str::<Value>(&stdout).unwrap()
    };
    let docs = plan(
        "docs.json",
        push_payload("refs/heads/feature/login", &sha('1'), &sha('2'), "2026-01-05T10:00:00Z", &["docs/a.md"]),
    );
    assert_eq!(docs["runs"], json!([]));
    let feature = &docs["triggers"][0];
    assert_eq!(feature["trigger"], "branch feature/*");
    assert_eq!(feature["environment"], "dev-feature-login");
    assert_eq!(feature["matched"], false);
    assert!(feature["reason"].as_str().unwrap().contains("ignored by ignore_paths"), "{docs:#}");
    assert_eq!(docs["triggers"][1]["reason"], "branch `feature/login` does not match `develop`");

    // A branch pushed without new commits lists no files: it matches, and the run says why.
    let mut created = fixture("github/octokit-examples/push.4.json");
    created["ref"] = json!("refs/heads/feature/login");
    created["commits"] = json!([]);
    let created = plan("created.json", serde_json::to_vec(&created).unwrap());
    assert_eq!(created["triggers"][0]["matched"], true);
    let run = &created["runs"][0];
    assert_eq!(run["environment"], "dev-feature-login");
    assert_eq!(run["target"]["preview"]["directory"], "previews/feature-login");
    assert!(run["notes"][0].as_str().unwrap().contains("lists no changed files"), "{run:#}");

    let deleted = plan("deleted.json", delete_payload("feature/login"));
    assert_eq!(deleted["runs"][0]["action"], "remove-preview");
    assert_eq!(deleted["runs"][0]["steps"][0]["kind"], "remove-preview");
}

/// In process, against a real SQLite store: deliveries stored as the webhook endpoint stores
/// them, then handled by intake and admission as the server's loops do.
#[tokio::test]
async fn a_newer_push_supersedes_queued_work_and_an_older_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("gantry.db")).await.unwrap());
    let config =
        gantry_workflows::load_dir(&repo_file("tests/fixtures/branch_patterns"), &StepRegistry::builtin()).unwrap();
    let deliver = |id: &'static str, body: Vec<u8>| {
        let store = store.clone();
        async move {
            store
                .insert_delivery(NewDelivery {
                    source: "github",
                    delivery_id: id,
                    event_type: "push",
                    body: &body,
                    packed_body: None,
                    status: DeliveryStatus::Received,
                    detail: None,
                })
                .await
                .unwrap();
        }
    };
    let (a, b, c) = (sha('a'), sha('b'), sha('c'));
    deliver("to-b", push_payload("refs/heads/develop", &a, &b, "2026-01-05T10:00:00Z", &["src/lib.rs"])).await;
    deliver("to-c", push_payload("refs/heads/develop", &b, &c, "2026-01-05T10:05:00Z", &["src/lib.rs"])).await;
    let handled = process_inbox(&store, &config).await.unwrap();
    let created: Vec<String> = handled.iter().flat_map(|h| h.runs.clone()).collect();
    assert_eq!(created.len(), 2, "{handled:#?}");

    let admission = store.admit(gantry_engine::model::now_millis()).await.unwrap();
    assert_eq!(admission.admitted, [created[1].clone()], "the newest commit goes into staging");
    assert_eq!(admission.superseded, [created[0].clone()], "the queued older one is superseded");
    let superseded = store.get_run(&created[0]).await.unwrap().unwrap();
    assert_eq!(superseded.state.as_str(), "cancelled");

    // The push that moved develop to `b` is delivered again under another id, after `c`.
    deliver("to-b-again", push_payload("refs/heads/develop", &a, &b, "2026-01-05T10:00:00Z", &["src/lib.rs"])).await;
    let handled = process_inbox(&store, &config).await.unwrap();
    assert_eq!(handled.len(), 1);
    assert!(handled[0].runs.is_empty());
    let (status, detail) = store.delivery_status("github", "to-b-again").await.unwrap().unwrap();
    assert_eq!(status, "ignored");
    assert!(detail.as_deref().unwrap().contains("(delivery to-b)"), "{detail:?}");
    assert_eq!(store.list_runs(10).await.unwrap().len(), 2);
}
