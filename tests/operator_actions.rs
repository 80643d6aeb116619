//! Operator actions through the HTTP API against the real binary: supersede, hold and
//! release, rollback that holds, cancel, retry, skip — and approvals, which several of these
//! use to keep a run busy.

#[path = "support/gantry.rs"]
mod gantry_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gantry_support::{Gantry, run};
use serde_json::{Value, json};

struct Env {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    config_dir: PathBuf,
    markers: PathBuf,
    gantry: Gantry,
}

/// dev: resolve → mark (a noop that records each execution). staging: resolve → approve →
/// mark, entered by `release/*` pushes. `mark` writes into `markers`, which a test may remove
/// to make the step fail.
fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config_dir = dir.path().join("config");
    let markers = dir.path().join("markers");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::create_dir_all(&markers).unwrap();
    let config = format!(
        r#"
registries:
  - {{ name: local, url: "oci-layout:registry" }}
apps:
  - {{ name: shop, source_repo: acme/shop, registry: local, repository: shop }}
environments:
  - name: dev
    order: 1
    config_repo: {{ url: repos/dev.git, path: "apps/{{app}}/kustomization.yaml" }}
  - name: staging
    order: 2
    config_repo: {{ url: repos/staging.git, path: "apps/{{app}}/kustomization.yaml" }}
pipelines:
  - name: default
    triggers:
      - {{ on: branch, pattern: main, environment: dev, artifact_tag: "sha-{{sha7}}", artifact_wait: 20s }}
      - {{ on: branch, pattern: "release/*", environment: staging, artifact_tag: "sha-{{sha7}}", artifact_wait: 20s }}
    steps:
      - {{ name: resolve, kind: resolve-artifact }}
      - {{ name: approve, kind: approval, needs: [resolve], environments: [staging] }}
      - {{ name: mark, kind: noop, needs: [approve], with: {{ marker_dir: "{markers}" }} }}
"#,
        markers = markers.display()
    );
    std::fs::write(config_dir.join("gantry.yaml"), config).unwrap();
    let gantry = Gantry::start("up", &data_dir, &config_dir, &[]);
    Env { _dir: dir, data_dir, config_dir, markers, gantry }
}

impl Env {
    /// CI pushes an image for a fresh commit on `reference`, GitHub sends the push; returns the
    /// new run's id.
    async fn push(&self, reference: &str) -> String {
        let before: Vec<String> = self.runs().await.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        let (data, config, url, reference) = (
            self.data_dir.display().to_string(),
            self.config_dir.display().to_string(),
            self.gantry.url.clone(),
            reference.to_string(),
        );
        let (code, out, err) = tokio::task::spawn_blocking(move || {
            run(&[
                "--data-dir",
                &data,
                "demo",
                "push",
                "--app",
                "shop",
                "--ref",
                &reference,
                "--server",
                &url,
                "--config",
                &config,
            ])
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{out}{err}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(run) =
                self.runs().await.into_iter().find(|r| !before.contains(&r["id"].as_str().unwrap().to_string()))
            {
                return run["id"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "the push started no run:\n{}", self.gantry.output());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn runs(&self) -> Vec<Value> {
        reqwest::get(format!("{}/api/runs", self.gantry.url)).await.unwrap().json().await.unwrap()
    }

    async fn get(&self, id: &str) -> Value {
        reqwest::get(format!("{}/api/runs/{id}", self.gantry.url)).await.unwrap().json().await.unwrap()
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .request(method, format!("{}{path}", self.gantry.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, body).await
    }

    /// Waits until the run satisfies `done` (10 s at most) and returns it.
    async fn wait(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let run = self.get(id).await;
            if done(&run) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} never got {what}: {run:#}\n{}", self.gantry.output());
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    async fn wait_state(&self, id: &str, state: &str) -> Value {
        self.wait(id, state, |r| r["state"] == state).await
    }

    fn marker_count(&self) -> usize {
        std::fs::read_dir(&self.markers).map(|d| d.count()).unwrap_or(0)
    }
}

fn step<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_artifact_supersedes_queued_ones_but_not_the_running_one() {
    let env = start();
    let first = env.push("release/1").await;
    env.wait_state(&first, "waiting").await;
    let second = env.push("release/1").await;
    let third = env.push("release/1").await;
    let second_run = env.wait_state(&second, "cancelled").await;
    assert!(second_run["error"].as_str().unwrap().contains(&format!("superseded by run {third}")), "{second_run:#}");
    // The running promotion is not touched, and the newest waits for it.
    assert_eq!(env.get(&first).await["state"], "waiting");
    assert_eq!(env.get(&third).await["state"], "pending");
    let (status, _) = env.post(&format!("/api/runs/{first}/steps/approve/approve"), json!({"approver": "alice"})).await;
    assert_eq!(status, 200);
    let first_run = env.wait_state(&first, "succeeded").await;
    assert_eq!(step(&first_run, "approve")["outputs"]["approved_by"], "alice");
    // The newest runs its own gate: it waits for its own approval, nothing is skipped.
    env.wait_state(&third, "waiting").await;
    env.post(&format!("/api/runs/{third}/steps/approve/approve"), json!({"approver": "bob"})).await;
    env.wait_state(&third, "succeeded").await;
    assert_eq!(env.marker_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_environment_admits_nothing_until_released() {
    let env = start();
    let (status, _) = env.call(reqwest::Method::PUT, "/api/holds/dev", json!({"reason": "freeze for the audit"})).await;
    assert_eq!(status, 200);
    let run = env.push("main").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = env.get(&run).await;
    assert_eq!(held["state"], "pending", "{held:#}");
    let (_, holds) = env.call(reqwest::Method::GET, "/api/holds", Value::Null).await;
    assert_eq!(holds[0]["reason"], "freeze for the audit");
    let (status, _) = env.call(reqwest::Method::DELETE, "/api/holds/dev", Value::Null).await;
    assert_eq!(status, 200);
    env.wait_state(&run, "succeeded").await;
    let (status, _) = env.call(reqwest::Method::DELETE, "/api/holds/dev", Value::Null).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_promotes_the_previous_digest_and_holds_the_environment() {
    let env = start();
    let first = env.push("main").await;
    let first_digest = env.wait_state(&first, "succeeded").await["digest"].clone();
    let second = env.push("main").await;
    let second_digest = env.wait_state(&second, "succeeded").await["digest"].clone();
    assert_ne!(first_digest, second_digest);

    let (status, rollback) =
        env.post("/api/rollbacks", json!({"app": "shop", "environment": "dev", "reason": "bad release"})).await;
    assert_eq!(status, 201, "{rollback:#}");
    assert_eq!(rollback["digest"], first_digest);
    let id = rollback["run"].as_str().unwrap();
    let rolled_back = env.wait_state(id, "succeeded").await;
    assert_eq!(rolled_back["digest"], first_digest);

    // The next push does not undo the rollback while the hold stands.
    let next = env.push("main").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.get(&next).await["state"], "pending");
    let (_, holds) = env.call(reqwest::Method::GET, "/api/holds", Value::Null).await;
    assert_eq!(holds[0]["app"], "shop");
    assert_eq!(holds[0]["digest"], first_digest);
    env.call(reqwest::Method::DELETE, "/api/holds/dev?app=shop", Value::Null).await;
    env.wait_state(&next, "succeeded").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_waiting_run_stops_it() {
    let env = start();
    let run = env.push("release/2").await;
    env.wait_state(&run, "waiting").await;
    let (status, _) = env.post(&format!("/api/runs/{run}/cancel"), json!({"reason": "wrong branch"})).await;
    assert_eq!(status, 200);
    let cancelled = env.get(&run).await;
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(step(&cancelled, "approve")["state"], "cancelled");
    assert_eq!(step(&cancelled, "mark")["state"], "cancelled");
    let (status, body) = env.post(&format!("/api/runs/{run}/cancel"), json!({})).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = env.post("/api/runs/no-such-run/cancel", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(env.marker_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_step_can_be_retried_once_the_cause_is_fixed() {
    let env = start();
    std::fs::remove_dir(&env.markers).unwrap();
    let run = env.push("main").await;
    let failed = env.wait_state(&run, "failed").await;
    assert!(step(&failed, "mark")["error"].as_str().unwrap().contains("marker"), "{failed:#}");
    std::fs::create_dir(&env.markers).unwrap();
    let (status, _) = env.post(&format!("/api/runs/{run}/steps/mark/retry"), json!({})).await;
    assert_eq!(status, 200);
    let retried = env.wait_state(&run, "succeeded").await;
    assert_eq!(step(&retried, "mark")["attempts"], 2);
    assert_eq!(env.marker_count(), 1);
    let (status, _) = env.post(&format!("/api/runs/{run}/steps/mark/retry"), json!({})).await;
    assert_eq!(status, 409, "a succeeded step cannot be retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_can_be_skipped_with_a_recorded_reason() {
    let env = start();
    let run = env.push("release/3").await;
    env.wait_state(&run, "waiting").await;
    let (status, body) = env.post(&format!("/api/runs/{run}/steps/approve/skip"), json!({})).await;
    assert_eq!(status, 400, "a skip needs a reason: {body}");
    let (status, _) = env
        .post(&format!("/api/runs/{run}/steps/approve/skip"), json!({"reason": "approved in the change board"}))
        .await;
    assert_eq!(status, 200);
    let done = env.wait_state(&run, "succeeded").await;
    assert_eq!(step(&done, "approve")["state"], "skipped");
    assert_eq!(step(&done, "approve")["note"], "skipped: approved in the change board");
    assert_eq!(step(&done, "mark")["state"], "succeeded");
}

#[test]
fn the_cli_reports_an_unreachable_server() {
    let (code, _, stderr) = run(&["cancel", "some-run", "--server", "http://127.0.0.1:9"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
}
