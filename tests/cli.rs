//! The command line as a user runs it: validate, schema, and the quickstart (`up` + `demo push`).

#[path = "support/gantry.rs"]
mod gantry_support;

use std::path::Path;
use std::time::{Duration, Instant};

use gantry_support::{Gantry, changed_lines, git, run};

#[test]
fn the_reference_config_is_valid() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/environments");
    let (code, stdout, stderr) = run(&["validate", "--config", config]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("4 environments"), "{stdout}");
}

#[test]
fn validate_reports_every_mistake_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("environments");
    for entry in std::fs::read_dir(&reference).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    // Three mistakes in two files: a trigger into an unknown environment, a step kind that
    // does not exist, and a typo'd field in an environment.
    let pipeline = dir.path().join("pipeline.yaml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    let text = text.replacen("environment: dev", "environment: dve", 1).replacen("kind: retag", "kind: re-tag", 1);
    std::fs::write(&pipeline, text).unwrap();
    let environments = dir.path().join("environments.yaml");
    let text = std::fs::read_to_string(&environments).unwrap().replacen("tag_template", "tag_tempalte", 1);
    std::fs::write(&environments, text).unwrap();

    let (code, _, stderr) = run(&["validate", "--config", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    let located: Vec<&str> = stderr.lines().filter(|l| l.contains(".yaml:")).collect();
    assert_eq!(located.len(), 3, "{stderr}");
    let line_of = |file: &Path, needle: &str| {
        std::fs::read_to_string(file).unwrap().lines().position(|l| l.contains(needle)).unwrap() + 1
    };
    let expect = [
        (format!("pipeline.yaml:{}:", line_of(&pipeline, "dve")), "unknown environment `dve`"),
        (format!("pipeline.yaml:{}:", line_of(&pipeline, "re-tag")), "unknown step kind `re-tag`"),
        (format!("environments.yaml:{}:", line_of(&environments, "tag_tempalte")), "tag_tempalte"),
    ];
    for (location, message) in expect {
        assert!(
            located.iter().any(|l| l.contains(&location) && l.contains(message)),
            "expected {location} {message} in:\n{stderr}"
        );
    }
}

#[test]
fn the_shipped_json_schema_is_the_generated_one() {
    let (code, stdout, stderr) = run(&["schema"]);
    assert_eq!(code, 0, "{stderr}");
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/environments/gantry.schema.json")).unwrap();
    let generated: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let shipped: serde_json::Value = serde_json::from_str(&shipped).unwrap();
    assert_eq!(generated, shipped, "regenerate with `gantry schema > environments/gantry.schema.json`");
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_promotes_a_demo_push_into_dev() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("environments");
    let gantry = Gantry::start("up", &data_dir, &config, &[]);
    let started = Instant::now();
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let (data_dir, url, config) = (data_dir.clone(), gantry.url.clone(), config.clone());
        move || {
            run(&[
                "--data-dir",
                data_dir.to_str().unwrap(),
                "demo",
                "push",
                "--server",
                &url,
                "--config",
                config.to_str().unwrap(),
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    let finished = loop {
        let runs: Vec<serde_json::Value> =
            reqwest::get(format!("{}/api/runs", gantry.url)).await.unwrap().json().await.unwrap();
        if let Some(run) = runs
            .into_iter()
            .find(|r| r["environment"] == "dev" && (r["state"] == "succeeded" || r["state"] == "failed"))
        {
            break run;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no finished run within 10 s:\n{}", gantry.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(finished["state"], "succeeded", "{finished:#}\n{}", gantry.output());
    let digest = finished["digest"].as_str().unwrap();
    let version = finished["version"].as_str().unwrap();

    // The dev env repo has the promotion branch, one changed line against main.
    let repo = data_dir.join("repos/dev.git");
    let branch = format!("gantry/dev/sample-app/{}", &digest["sha256:".len()..]["".len()..12]);
    let diff = git(&repo, &["diff", "main", &branch]);
    assert_eq!(changed_lines(&diff).len(), 2, "{diff}");
    assert!(changed_lines(&diff)[1].contains(&format!("newTag: dev-{version}")), "{diff}");

    // The embedded registry holds the env tag at the source tag's digest.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("registry/sample-app/index.json")).unwrap()).unwrap();
    let digest_of = |tag: &str| {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .map(|m| m["digest"].clone())
    };
    assert_eq!(digest_of(version), Some(serde_json::json!(digest)));
    assert_eq!(digest_of(&format!("dev-{version}")), Some(serde_json::json!(digest)));

    // The same digest moves on by itself: staging follows dev, and uat waits for an approval.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let runs: Vec<serde_json::Value> =
            reqwest::get(format!("{}/api/runs", gantry.url)).await.unwrap().json().await.unwrap();
        let in_env = |env: &str| runs.iter().find(|r| r["environment"] == env).cloned();
        if let (Some(staging), Some(uat)) = (in_env("staging"), in_env("uat")) {
            if staging["state"] == "succeeded" && uat["state"] == "waiting" {
                assert_eq!(staging["digest"], digest);
                assert_eq!(staging["origin"], "follow-up");
                assert_eq!(uat["digest"], digest);
                let approve = uat["steps"].as_array().unwrap().iter().find(|s| s["name"] == "approve").unwrap();
                assert_eq!(approve["state"], "waiting");
                break;
            }
        }
        assert!(Instant::now() < deadline, "no staging/uat follow-up: {runs:#?}\n{}", gantry.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // `gantry status` shows it.
    let (code, stdout, _) = run(&["--data-dir", data_dir.to_str().unwrap(), "status"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("succeeded") && stdout.contains(&format!("dev-{version}")), "{stdout}");
}
