//! End to end on real parts: a signed GitHub push (a real payload from GitHub's examples)
//! reaches `gantry serve`, which finds the image in a real `docker-registry`, tags it for the
//! environment, and pushes a one-line promotion branch to a real bare repository. Then the
//! same with the process killed at every dangerous moment and restarted.

#[path = "support/gantry.rs"]
mod gantry_support;
#[path = "support/registry.rs"]
mod registry_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gantry_engine::git::{Signature, init_bare_repo};
use gantry_engine::registry::{self, Digest, RegistryAuth, sample_image};
use gantry_support::{Gantry, changed_lines, git};
use registry_support::TestRegistry;
use serde_json::Value;

const FIXTURE: &str = "tests/fixtures/github/octokit-examples/push.4.json";
const SECRET: &str = "it's a secret to everybody";
const KUSTOMIZATION: &str = "\
# hello-world in dev
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
images:
  - name: hello-world   # the app's image
    newTag: \"0.0.1\"
";

struct Setup {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    config_dir: PathBuf,
    env_repo: PathBuf,
    registry: TestRegistry,
    body: Vec<u8>,
    sha: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start();
    let env_repo = dir.path().join("dev.git");
    let author = Signature { name: "platform".into(), email: "platform@example.com".into() };
    init_bare_repo(&env_repo, "main", &[("apps/hello-world/kustomization.yaml", KUSTOMIZATION.as_bytes())], &author)
        .unwrap();
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("gantry.yaml"),
        format!(
            "registries:\n  - name: ci\n    url: http://{registry}\n\
             apps:\n  - name: hello-world\n    source_repo: Codertocat/Hello-World\n    registry: ci\n    repository: acme/hello-world\n    image_name: hello-world\n\
             environments:\n  - name: dev\n    order: 1\n    config_repo:\n      url: file://{repo}\n      path: apps/{{app}}/kustomization.yaml\n\
             pipelines:\n  - name: default\n    triggers:\n      - on: branch\n        pattern: master\n        environment: dev\n        artifact_tag: sha-{{sha7}}\n        artifact_wait: 30s\n\
             \x20   steps:\n      - {{ name: resolve, kind: resolve-artifact }}\n      - {{ name: retag, kind: retag, needs: [resolve] }}\n\
             \x20     - {{ name: update-config, kind: update-config, needs: [resolve] }}\n      - {{ name: open-pr, kind: open-pr, needs: [retag, update-config] }}\n",
            registry = registry.addr,
            repo = env_repo.display(),
        ),
    )
    .unwrap();
    let body = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)).unwrap();
    let payload: Value = serde_json::from_slice(&body).unwrap();
    let sha = payload["after"].as_str().unwrap().to_string();
    Setup { data_dir: dir.path().join("data"), config_dir, env_repo, registry, body, sha, _dir: dir }
}

impl Setup {
    fn start(&self, failpoints: Option<&str>) -> Gantry {
        let mut env = vec![("GANTRY_GITHUB_SECRET", SECRET)];
        if let Some(points) = failpoints {
            env.push(("GANTRY_FAILPOINTS", points));
        }
        std::fs::create_dir_all(&self.data_dir).unwrap();
        Gantry::start("serve", &self.data_dir, &self.config_dir, &env)
    }

    /// CI pushes the image for the fixture's commit, as `sha-<sha7>`.
    async fn ci_push(&self) -> Digest {
        let registry = registry::open(&self.registry.url(), Path::new("."), RegistryAuth::Anonymous).unwrap();
        let image = sample_image("hello-world", &[("org.opencontainers.image.revision", &self.sha)]);
        registry.push_image("acme/hello-world", &format!("sha-{}", &self.sha[..7]), &image).await.unwrap()
    }

    async fn send(&self, gantry: &Gantry, delivery: &str) -> reqwest::StatusCode {
        reqwest::Client::new()
            .post(format!("{}/hooks/github", gantry.url))
            .header("x-github-event", "push")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", gantry_webhooks::github::sign(SECRET.as_bytes(), &self.body))
            .header("content-type", "application/json")
            .body(self.body.clone())
            .send()
            .await
            .unwrap()
            .status()
    }

    fn promotion_branches(&self) -> Vec<String> {
        git(&self.env_repo, &["for-each-ref", "--format=%(refname:short)", "refs/heads/gantry/"])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

async fn runs(gantry: &Gantry) -> Vec<Value> {
    reqwest::get(format!("{}/api/runs", gantry.url)).await.unwrap().json().await.unwrap()
}

async fn wait_for_final_run(gantry: &Gantry) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(run) = runs(gantry).await.into_iter().next() {
            if ["succeeded", "failed", "cancelled"].contains(&run["state"].as_str().unwrap_or_default()) {
                let id = run["id"].as_str().unwrap();
                return reqwest::get(format!("{}/api/runs/{id}", gantry.url)).await.unwrap().json().await.unwrap();
            }
        }
        assert!(Instant::now() < deadline, "no finished run within 30s:\n{}", gantry.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn step<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()
}

/// Everything a finished promotion must have left behind, exactly once.
async fn assert_promoted_once(setup: &Setup, run: &Value, digest: &Digest) {
    assert_eq!(run["state"], "succeeded", "run: {run:#}");
    assert_eq!(run["digest"], digest.as_str());
    let branches = setup.promotion_branches();
    assert_eq!(branches, [format!("gantry/dev/hello-world/{}", &digest.hex()[..12])]);
    let diff = git(&setup.env_repo, &["diff", "main", &branches[0]]);
    assert_eq!(
        changed_lines(&diff),
        ["-    newTag: \"0.0.1\"", &format!("+    newTag: \"dev-sha-{}\"", &setup.sha[..7])],
        "{diff}"
    );
    let registry = registry::open(&setup.registry.url(), Path::new("."), RegistryAuth::Anonymous).unwrap();
    let tag = format!("dev-sha-{}", &setup.sha[..7]);
    assert_eq!(registry.resolve("acme/hello-world", &tag).await.unwrap().as_ref(), Some(digest));
    let requests = run["change_requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0]["branch"], branches[0].as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_github_push_becomes_a_one_line_promotion_branch_and_an_env_tag() {
    let setup = setup();
    let digest = setup.ci_push().await;
    let gantry = setup.start(None);
    assert_eq!(setup.send(&gantry, "delivery-1").await, 202);
    // A redelivery of the same event is accepted and changes nothing.
    assert_eq!(setup.send(&gantry, "delivery-1").await, 202);
    let run = wait_for_final_run(&gantry).await;
    assert_promoted_once(&setup, &run, &digest).await;
    assert_eq!(runs(&gantry).await.len(), 1);
    assert_eq!(step(&run, "retag")["outputs"]["result"], "created");
    // The retag moved no layer: the registry saw manifest requests only after CI's push.
    let blob_uploads_after_ci = setup
        .registry
        .requests()
        .iter()
        .skip_while(|r| !r.contains("/manifests/sha-"))
        .filter(|r| r.contains("/blobs/uploads"))
        .count();
    assert_eq!(blob_uploads_after_ci, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_waits_for_ci_to_push_the_image() {
    let setup = setup();
    let gantry = setup.start(None);
    assert_eq!(setup.send(&gantry, "early-delivery").await, 202);
    // Between its polls of the registry the resolve step is parked: the run waits, holding no
    // worker. (While a poll is in flight the run shows `running`, so look more than once.)
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let run = runs(&gantry).await.into_iter().next();
        if let Some(run) = &run {
            assert!(run["digest"].is_null(), "the run pinned a digest CI never pushed: {run:#}");
            if run["state"] == "waiting" && step(run, "resolve")["state"] == "waiting" {
                assert!(step(run, "resolve")["attempts"].as_u64().unwrap_or(0) >= 1, "{run:#}");
                break;
            }
        }
        assert!(Instant::now() < deadline, "the run never waited for the image: {run:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let digest = setup.ci_push().await;
    let run = wait_for_final_run(&gantry).await;
    assert_promoted_once(&setup, &run, &digest).await;
}

/// Kills the engine at `failpoint`, restarts it, and checks the run finishes with no duplicate.
async fn crash_and_resume(failpoint: &str) -> Value {
    let setup = setup();
    let digest = setup.ci_push().await;
    let mut crashing = setup.start(Some(failpoint));
    assert_eq!(setup.send(&crashing, "delivery-crash").await, 202);
    let status = crashing.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "gantry should have died at {failpoint}");
    assert!(crashing.output().contains(&format!("failpoint {failpoint} reached")), "{}", crashing.output());
    let resumed = setup.start(None);
    let run = wait_for_final_run(&resumed).await;
    assert_promoted_once(&setup, &run, &digest).await;
    assert_eq!(runs(&resumed).await.len(), 1, "a restart must not start the delivery's run twice");
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_retag_and_its_record_resumes_without_a_second_tag_write() {
    let run = crash_and_resume("after-side-effect:retag").await;
    let retag = step(&run, "retag");
    assert_eq!(retag["attempts"], 2);
    assert_eq!(retag["outputs"]["result"], "already-present");
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_steps_resumes_at_the_next_step() {
    let run = crash_and_resume("after-finish:update-config").await;
    assert_eq!(step(&run, "update-config")["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_push_and_change_request_resumes_without_a_duplicate() {
    let run = crash_and_resume("after-side-effect:open-pr").await;
    let open_pr = step(&run, "open-pr");
    assert_eq!(open_pr["attempts"], 2);
    assert_eq!(open_pr["outputs"]["push"], "unchanged");
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_the_commit_but_before_its_record_makes_the_same_commit() {
    let run = crash_and_resume("after-side-effect:update-config").await;
    assert_eq!(step(&run, "update-config")["attempts"], 2);
}
