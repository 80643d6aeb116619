//! `gantry drift` as a user runs it: env repos on disk, a config directory naming them, the
//! report printed as text or JSON.

#[path = "support/gantry.rs"]
mod gantry_support;

use std::path::Path;

use gantry_engine::git::{Signature, init_bare_repo};
use gantry_support::run;

fn kustomization(app: &str, tag: &str) -> String {
    format!("images:\n  - name: ghcr.io/acme/{app}\n    newTag: {tag}\n")
}

/// dev runs web 1.1.0 and api 2.0.0; staging runs web 1.0.0 and api 2.0.0.
fn world(dir: &Path) {
    let author = Signature { name: "gantry".into(), email: "gantry@example.com".into() };
    for (env, web) in [("dev", "1.1.0"), ("staging", "1.0.0")] {
        let web = kustomization("web", &format!("{env}-{web}"));
        let api = kustomization("api", &format!("{env}-2.0.0"));
        init_bare_repo(
            &dir.join(format!("data/repos/{env}.git")),
            "main",
            &[("apps/web/kustomization.yaml", web.as_bytes()), ("apps/api/kustomization.yaml", api.as_bytes())],
            &author,
        )
        .unwrap();
    }
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("gantry.yaml"),
        "registries:\n  - name: local\n    url: oci-layout:registry\n\
         apps:\n\
         \x20 - {name: web, source_repo: acme/web, registry: local, repository: ghcr.io/acme/web}\n\
         \x20 - {name: api, source_repo: acme/api, registry: local, repository: ghcr.io/acme/api}\n\
         environments:\n\
         \x20 - name: dev\n    order: 1\n    config_repo: {url: repos/dev.git, path: 'apps/{app}/kustomization.yaml'}\n\
         \x20 - name: staging\n    order: 2\n    after: [dev]\n    config_repo: {url: repos/staging.git, path: 'apps/{app}/kustomization.yaml'}\n\
         pipelines:\n  - name: default\n    triggers:\n      - {on: branch, pattern: main, environment: dev, artifact_tag: 'sha-{sha7}'}\n\
         \x20   steps:\n      - {name: update-config, kind: update-config}\n",
    )
    .unwrap();
}

#[test]
fn text_and_json_reports_list_the_apps_that_differ() {
    let dir = tempfile::tempdir().unwrap();
    world(dir.path());
    let data = dir.path().join("data");
    let config = dir.path().join("config");
    let (data, config) = (data.to_str().unwrap(), config.to_str().unwrap());

    let (code, stdout, stderr) = run(&["--data-dir", data, "drift", "--config", config]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("only comparing environments"), "{stdout}");
    assert!(stdout.contains("environment vs environment: 1 app(s) differ"), "{stdout}");
    assert!(stdout.contains("web: dev runs 1.1.0, staging runs 1.0.0"), "{stdout}");
    assert!(
        stdout.contains(
            "--- staging/apps/web/kustomization.yaml\n+++ dev/apps/web/kustomization.yaml\n\
             @@ -1,3 +1,3 @@\n images:\n   - name: ghcr.io/acme/web\n-    newTag: staging-1.0.0\n+    newTag: dev-1.1.0\n"
        ),
        "{stdout}"
    );

    let (code, stdout, stderr) =
        run(&["--data-dir", data, "drift", "--config", config, "--format", "json", "--fail-on-drift"]);
    assert_eq!(code, 0, "no promotion drifted: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let environments = report["environments"].as_array().unwrap();
    assert_eq!(environments.len(), 1);
    assert_eq!(environments[0]["app"], "web");
    assert_eq!(environments[0]["from_version"], "1.1.0");
    assert_eq!(environments[0]["to_version"], "1.0.0");
    assert_eq!(report["problems"], serde_json::json!([]));
}

#[test]
fn an_unreadable_environment_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    world(dir.path());
    std::fs::remove_dir_all(dir.path().join("data/repos/staging.git")).unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("config");
    let (code, stdout, stderr) =
        run(&["--data-dir", data.to_str().unwrap(), "drift", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("problem: staging: "), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
