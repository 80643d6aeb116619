//! Crash campaign: 100 promotions while the server is killed with SIGKILL at random moments
//! and restarted each time. Every promotion must succeed, with exactly one environment tag,
//! one promotion branch and one change request each — no duplicates.

#[path = "support/gantry.rs"]
mod gantry_support;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use gantry_support::{Gantry, git};
use rand::Rng;
use serde_json::Value;

const PROMOTIONS: usize = 100;

fn config(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("gantry.yaml"),
        r#"
registries:
  - { name: local, url: "oci-layout:registry" }
apps:
  - { name: shop, source_repo: acme/shop, registry: local, repository: shop }
environments:
  - name: dev
    order: 1
    concurrency: queue
    config_repo: { url: repos/dev.git, path: "apps/{app}/kustomization.yaml" }
pipelines:
  - name: default
    triggers:
      - { on: branch, pattern: main, environment: dev, artifact_tag: "sha-{sha7}", artifact_wait: 60s }
    steps:
      - { name: resolve, kind: resolve-artifact }
      - { name: retag, kind: retag, needs: [resolve] }
      - { name: update-config, kind: update-config, needs: [resolve] }
      - { name: open-pr, kind: open-pr, needs: [retag, update-config] }
"#,
    )
    .unwrap();
}

async fn runs(url: &str) -> Option<Vec<Value>> {
    reqwest::get(format!("{url}/api/runs?limit=1000")).await.ok()?.json().await.ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_promotions_survive_random_sigkills_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, config_dir) = (dir.path().join("data"), dir.path().join("config"));
    config(&config_dir);
    let mut gantry = Gantry::start("up", &data_dir, &config_dir, &[]);
    let loaded = gantry_workflows::load_dir(&config_dir, &gantry_engine::StepRegistry::builtin()).unwrap();
    let app = loaded.app("shop").unwrap().clone();
    let secret = std::fs::read_to_string(data_dir.join(gantry::bootstrap::SECRET_FILE)).unwrap();

    let mut kills = 0;
    // Kill after every few accepted deliveries, a random moment later, so that kills land in
    // every phase of the work (intake, steps, records) however fast the machine is.
    let mut kill_after = rand::rng().random_range(3..12);
    let mut sent = 0;
    let mut pending: Option<(gantry::demo::DemoPush, String)> = None;
    let started = Instant::now();
    let mut all_done = false;
    while !all_done {
        assert!(started.elapsed() < Duration::from_secs(240), "campaign did not finish:\n{}", gantry.output());
        if sent >= kill_after && sent < PROMOTIONS {
            // SIGKILL at an arbitrary moment, then start again on the same data.
            tokio::time::sleep(Duration::from_millis(rand::rng().random_range(0..80))).await;
            gantry.kill();
            kills += 1;
            gantry = Gantry::start("serve", &data_dir, &config_dir, &[]);
            kill_after = sent + rand::rng().random_range(3..12);
            continue;
        }
        if sent < PROMOTIONS {
            // CI pushes the image, then GitHub delivers the webhook (redelivering with the
            // same delivery id until it is accepted, as GitHub does).
            let (push, delivery) = pending.take().unwrap_or_else(|| {
                let push = gantry::demo::push_event(&app, "main");
                (push, uuid::Uuid::new_v4().to_string())
            });
            gantry::demo::publish_image(&data_dir, &loaded, &app, &push).await.unwrap();
            match gantry::demo::send_delivery(&gantry.url, secret.trim().as_bytes(), &push, &delivery).await {
                Ok((202, _)) => sent += 1,
                _ => pending = Some((push, delivery)),
            }
            continue;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(runs) = runs(&gantry.url).await {
            all_done = runs.len() == PROMOTIONS && runs.iter().all(|r| r["state"] == "succeeded");
            assert!(runs.iter().all(|r| r["state"] != "failed"), "a run failed: {runs:#?}");
        }
    }
    eprintln!("crash campaign: {PROMOTIONS} promotions, {kills} SIGKILLs, {:?}", started.elapsed());
    assert!(kills >= 5, "the campaign should kill the server several times (killed {kills})");

    let runs = runs(&gantry.url).await.unwrap();
    let digests: HashSet<&str> = runs.iter().map(|r| r["digest"].as_str().unwrap()).collect();
    assert_eq!(digests.len(), PROMOTIONS, "one run per pushed image");
    // One branch per promotion.
    let branches =
        git(&data_dir.join("repos/dev.git"), &["for-each-ref", "--format=%(refname:short)", "refs/heads/gantry/"]);
    assert_eq!(branches.lines().count(), PROMOTIONS, "{branches}");
    // One change request per run, and per branch.
    let mut change_request_branches = HashSet::new();
    for run in &runs {
        let id = run["id"].as_str().unwrap();
        let detail: Value = reqwest::get(format!("{}/api/runs/{id}", gantry.url)).await.unwrap().json().await.unwrap();
        let requests = detail["change_requests"].as_array().unwrap();
        assert_eq!(requests.len(), 1, "{detail:#}");
        assert!(change_request_branches.insert(requests[0]["branch"].as_str().unwrap().to_string()));
    }
    // One environment tag per promotion, each at its run's digest, none written twice.
    let index: Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("registry/shop/index.json")).unwrap()).unwrap();
    let tags: Vec<(&str, &str)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| Some((m["annotations"]["org.opencontainers.image.ref.name"].as_str()?, m["digest"].as_str()?)))
        .filter(|(tag, _)| tag.starts_with("dev-"))
        .collect();
    assert_eq!(tags.len(), PROMOTIONS);
    for run in &runs {
        let tag = run["tag"].as_str().unwrap();
        assert_eq!(tags.iter().filter(|(t, _)| *t == tag).count(), 1);
        assert!(tags.contains(&(tag, run["digest"].as_str().unwrap())));
    }
}
