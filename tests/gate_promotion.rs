//! End to end through `gantry serve`: a signed GitHub push starts a promotion into staging
//! whose `scan` step takes a real Trivy report (Spring4Shell, CVSS 9.8) and whose `gate` step
//! judges it against the staging threshold. Without an exception the run stops at the gate with
//! the reasons and the verdict visible through the API, and nothing is promoted; with a valid
//! exception it goes on to open the promotion branch.

#[path = "support/gantry.rs"]
mod gantry_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gantry_engine::git::{Signature, init_bare_repo};
use gantry_engine::registry::{self, RegistryAuth, sample_image};
use gantry_support::{Gantry, git};
use serde_json::Value;

const PUSH: &str = "tests/fixtures/github/octokit-examples/push.4.json";
const REPORT: &str = "tests/fixtures/scans/trivy/trivy-golden.spring4shell-jre11.json";
const SECRET: &str = "it's a secret to everybody";
const KUSTOMIZATION: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
images:
  - name: hello-world
    newTag: \"0.0.1\"
";
const POLICY: &str = "\
default:
  max_score: 9.9
environments:
  staging:
    max_score: 7.0
";
const EXCEPTION: &str = "\
exceptions:
  - id: CVE-2022-22965
    package: org.springframework:spring-beans
    environments: [staging]
    justification: the service never binds request data to beans
    approver: security@example.com
    expires: 2999-01-01
";

struct Setup {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    config_dir: PathBuf,
    env_repo: PathBuf,
    layout: PathBuf,
    body: Vec<u8>,
    sha: String,
}

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A staging environment fed by `master`, with `scan_settings` for the scan step and the gate
/// policy `policy` next to the config.
fn setup(scan_settings: &str, policy: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let env_repo = dir.path().join("staging.git");
    let author = Signature { name: "platform".into(), email: "platform@example.com".into() };
    init_bare_repo(&env_repo, "main", &[("apps/hello-world/kustomization.yaml", KUSTOMIZATION.as_bytes())], &author)
        .unwrap();
    let layout = dir.path().join("registry");
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(config_dir.join("gates")).unwrap();
    std::fs::create_dir_all(config_dir.join("reports")).unwrap();
    std::fs::copy(repo_file(REPORT), config_dir.join("reports/trivy.json")).unwrap();
    std::fs::write(config_dir.join("gates/policy.yaml"), policy).unwrap();
    std::fs::write(
        config_dir.join("gantry.yaml"),
        format!(
            "registries:\n  - name: ci\n    url: oci-layout:{layout}\n\
             apps:\n  - name: hello-world\n    source_repo: Codertocat/Hello-World\n    registry: ci\n    repository: acme/hello-world\n    image_name: hello-world\n\
             environments:\n  - name: staging\n    order: 1\n    config_repo:\n      url: file://{repo}\n      path: apps/{{app}}/kustomization.yaml\n\
             pipelines:\n  - name: default\n    triggers:\n      - {{ on: branch, pattern: master, environment: staging, artifact_tag: \"sha-{{sha7}}\", artifact_wait: 30s }}\n\
             \x20   steps:\n\
             \x20     - {{ name: resolve, kind: resolve-artifact }}\n\
             \x20     - {{ name: scan, kind: scan, needs: [resolve], with: {scan_settings} }}\n\
             \x20     - {{ name: gate, kind: gate, needs: [scan], with: {{ policy: gates/policy.yaml }} }}\n\
             \x20     - {{ name: retag, kind: retag, needs: [gate] }}\n\
             \x20     - {{ name: update-config, kind: update-config, needs: [gate] }}\n\
             \x20     - {{ name: open-pr, kind: open-pr, needs: [retag, update-config] }}\n",
            layout = layout.display(),
            repo = env_repo.display(),
        ),
    )
    .unwrap();
    let body = std::fs::read(repo_file(PUSH)).unwrap();
    let payload: Value = serde_json::from_slice(&body).unwrap();
    let sha = payload["after"].as_str().unwrap().to_string();
    Setup { data_dir: dir.path().join("data"), config_dir, env_repo, layout, body, sha, _dir: dir }
}

impl Setup {
    /// CI pushes the image of the pushed commit, then GitHub sends the push; returns the run
    /// as `GET /api/runs/{id}` shows it once it has finished.
    async fn promote(&self) -> (Gantry, Value) {
        let registry =
            registry::open(&format!("oci-layout:{}", self.layout.display()), Path::new("."), RegistryAuth::Anonymous)
                .unwrap();
        let image = sample_image("hello-world", &[("org.opencontainers.image.revision", &self.sha)]);
        registry.push_image("acme/hello-world", &format!("sha-{}", &self.sha[..7]), &image).await.unwrap();
        std::fs::create_dir_all(&self.data_dir).unwrap();
        let gantry = Gantry::start("serve", &self.data_dir, &self.config_dir, &[("GANTRY_GITHUB_SECRET", SECRET)]);
        let status = reqwest::Client::new()
            .post(format!("{}/hooks/github", gantry.url))
            .header("x-github-event", "push")
            .header("x-github-delivery", "gate-delivery")
            .header("x-hub-signature-256", gantry_webhooks::github::sign(SECRET.as_bytes(), &self.body))
            .header("content-type", "application/json")
            .body(self.body.clone())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202);
        let run = finished_run(&gantry).await;
        (gantry, run)
    }

    fn promotion_branches(&self) -> Vec<String> {
        git(&self.env_repo, &["for-each-ref", "--format=%(refname:short)", "refs/heads/gantry/"])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

async fn finished_run(gantry: &Gantry) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs: Vec<Value> = reqwest::get(format!("{}/api/runs", gantry.url)).await.unwrap().json().await.unwrap();
        if let Some(run) = runs.first() {
            let state = run["state"].as_str().unwrap_or_default();
            if ["succeeded", "failed", "cancelled"].contains(&state) {
                let id = run["id"].as_str().unwrap();
                return reqwest::get(format!("{}/api/runs/{id}", gantry.url)).await.unwrap().json().await.unwrap();
            }
        }
        assert!(Instant::now() < deadline, "no finished run within 60s:\n{}", gantry.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn step<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {run:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_above_the_staging_threshold_stops_at_the_gate_with_its_reasons() {
    let setup = setup("{ report: reports/trivy.json }", POLICY);
    let (gantry, run) = setup.promote().await;
    assert_eq!(run["state"], "failed", "{run:#}\n{}", gantry.output());

    let scan = step(&run, "scan");
    assert_eq!(scan["state"], "succeeded", "{scan:#}");
    assert_eq!(scan["outputs"]["scan"]["format"], "trivy");
    assert_eq!(scan["outputs"]["scan"]["findings"], 1);
    assert_eq!(scan["outputs"]["scan"]["by_severity"]["critical"], 1);
    let stored = scan["outputs"]["scan"]["stored"].as_str().unwrap();
    assert_eq!(
        std::fs::read(stored).unwrap(),
        std::fs::read(repo_file(REPORT)).unwrap(),
        "the report is kept as evidence, byte for byte"
    );

    let gate = step(&run, "gate");
    assert_eq!(gate["state"], "failed", "{gate:#}");
    let reason = "CVE-2022-22965 in org.springframework:spring-beans@5.3.15 scores 9.8 (critical, nvd), at or above the limit 7.0 in staging";
    assert_eq!(gate["error"], format!("gate denied the promotion into staging: {reason}"));
    assert_eq!(gate["outputs"]["decision"], "deny");
    let verdict = &gate["outputs"]["verdict"];
    assert_eq!(verdict["reasons"][0], reason);
    assert_eq!(verdict["environment"], "staging");
    assert_eq!(verdict["evidence"]["thresholds"]["max_score"], 7.0);
    assert_eq!(verdict["evidence"]["reports"][0]["sha256"], scan["outputs"]["scan"]["sha256"]);
    assert_eq!(verdict["evidence"]["artifact"]["digest"], run["digest"], "the verdict names the digest it judged");
    assert!(run["error"].as_str().unwrap_or_default().contains(reason), "{run:#}");
    // Nothing after the gate ran: no tag, no branch.
    assert_ne!(step(&run, "retag")["state"], "succeeded");
    assert!(setup.promotion_branches().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_exception_lets_the_promotion_proceed() {
    // The scanner here is a command whose standard output is the report.
    let report = repo_file(REPORT);
    let setup =
        setup(&format!("{{ command: \"cat {}\", timeout: 30s }}", report.display()), &format!("{POLICY}{EXCEPTION}"));
    let (gantry, run) = setup.promote().await;
    assert_eq!(run["state"], "succeeded", "{run:#}\n{}", gantry.output());
    assert_eq!(step(&run, "scan")["outputs"]["scan"]["source"], "command");
    let gate = step(&run, "gate");
    assert_eq!(gate["outputs"]["decision"], "allow");
    let verdict = &gate["outputs"]["verdict"];
    let finding = &verdict["findings"][0];
    assert_eq!(finding["id"], "CVE-2022-22965");
    assert_eq!(finding["suppressed"]["kind"], "exception");
    assert_eq!(finding["suppressed"]["exception"]["approver"], "security@example.com");
    assert_eq!(verdict["evidence"]["exceptions_applied"][0]["findings"], 1, "{verdict:#}");
    let digest = run["digest"].as_str().unwrap();
    let hex = digest.trim_start_matches("sha256:");
    assert_eq!(setup.promotion_branches(), [format!("gantry/staging/hello-world/{}", &hex[..12])]);
}
