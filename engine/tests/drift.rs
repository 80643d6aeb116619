//! Drift on real env repos: four bare repositories (dev, staging, uat, prod), a config
//! directory naming them, and commits made with the git command line the way a person would
//! edit prod by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use gantry_engine::StepRegistry;
use gantry_engine::drift::{self, Promotion, PromotionState};
use gantry_engine::git::{Signature, init_bare_repo};
use gantry_workflows::Config;

const ENVIRONMENTS: [&str; 4] = ["dev", "staging", "uat", "prod"];

fn kustomization(app: &str, tag: &str) -> String {
    format!(
        "# {app} overlay; gantry pins the image below.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\n\
         kind: Kustomization\n\
         resources:\n  - ../../base/{app}\n\
         images:\n  - name: ghcr.io/acme/{app}\n    newTag: {tag}   # pinned by gantry\n"
    )
}

fn values(app: &str, tag: &str) -> String {
    format!("# Helm values of {app}\nimage:\n  repository: ghcr.io/acme/{app}\n  tag: \"{tag}\"\nreplicaCount: 2\n")
}

/// Runs git in `dir`, isolated from the machine's configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Ops Person", "-c", "user.email=ops@example.com"])
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
    config: Config,
}

impl World {
    /// Env repos where `versions[env]` says which version each app runs; dev and staging use
    /// kustomizations, uat and prod Helm values (as the reference config does).
    fn new(apps: &[&str], versions: &[(&str, &str)]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let author = Signature { name: "gantry".into(), email: "gantry@example.com".into() };
        for env in ENVIRONMENTS {
            let version = versions.iter().find(|(name, _)| *name == env).map(|(_, version)| *version).unwrap();
            let files: Vec<(String, Vec<u8>)> = apps
                .iter()
                .map(|app| {
                    let tag = format!("{env}-{version}");
                    if matches!(env, "dev" | "staging") {
                        (format!("apps/{app}/kustomization.yaml"), kustomization(app, &tag).into_bytes())
                    } else {
                        (format!("apps/{app}/values.yaml"), values(app, &tag).into_bytes())
                    }
                })
                .collect();
            let files: Vec<(&str, &[u8])> =
                files.iter().map(|(path, content)| (path.as_str(), content.as_slice())).collect();
            init_bare_repo(&dir.path().join(format!("repos/{env}.git")), "main", &files, &author).unwrap();
        }
        let config_dir = dir.path().join("config");
        std::fs::create_dir_all(&config_dir).unwrap();
        let mut yaml = String::from("registries:\n  - name: local\n    url: oci-layout:registry\napps:\n");
        for app in apps {
            yaml.push_str(&format!(
                "  - name: {app}\n    source_repo: acme/{app}\n    registry: local\n    repository: ghcr.io/acme/{app}\n"
            ));
        }
        yaml.push_str("environments:\n");
        for (order, env) in ENVIRONMENTS.iter().enumerate() {
            let (path, yaml_path) = if matches!(*env, "dev" | "staging") {
                ("apps/{app}/kustomization.yaml", "")
            } else {
                ("apps/{app}/values.yaml", "\n      yaml_path: image.tag")
            };
            // Each environment follows the one before it, as dev → staging → uat → prod.
            let after = match order {
                0 => String::new(),
                _ => format!("    after: [{}]\n", ENVIRONMENTS[order - 1]),
            };
            yaml.push_str(&format!(
                "  - name: {env}\n    order: {}\n{after}    config_repo:\n      url: repos/{env}.git\n      path: {path}{yaml_path}\n    tag_template: \"{{env}}-{{version}}\"\n",
                order + 1
            ));
        }
        yaml.push_str(
            "pipelines:\n  - name: default\n    triggers:\n      - on: branch\n        pattern: main\n        environment: dev\n        artifact_tag: sha-{sha7}\n    steps:\n      - name: update-config\n        kind: update-config\n",
        );
        std::fs::write(config_dir.join("gantry.yaml"), yaml).unwrap();
        let config = gantry_workflows::load_dir(&config_dir, &StepRegistry::builtin())
            .unwrap_or_else(|errors| panic!("config: {errors:?}"));
        World { dir, config }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("mirrors")
    }

    fn repo(&self, env: &str) -> PathBuf {
        self.dir.path().join(format!("repos/{env}.git"))
    }

    /// What gantry promoted into `env` for `app` (as the store would report it).
    fn promotion(&self, app: &str, env: &str, tag: &str, awaiting_merge: bool) -> Promotion {
        let helm = matches!(env, "uat" | "prod");
        Promotion {
            run_id: format!("run-{app}-{env}"),
            app: app.into(),
            environment: env.into(),
            repo_url: format!("repos/{env}.git"),
            branch: "main".into(),
            path: if helm { format!("apps/{app}/values.yaml") } else { format!("apps/{app}/kustomization.yaml") },
            yaml_path: helm.then(|| "image.tag".to_owned()),
            image_name: format!("ghcr.io/acme/{app}"),
            tag: tag.into(),
            digest: Some(format!("sha256:{}", "ab".repeat(32))),
            awaiting_merge,
        }
    }

    /// Clones `env`'s repo, applies `edit` to one file, commits and pushes, as a person would.
    fn manual_commit(&self, env: &str, file: &str, edit: impl Fn(&str) -> String, message: &str) {
        let work = self.dir.path().join(format!("work-{env}"));
        let _ = std::fs::remove_dir_all(&work);
        let output = Command::new("git")
            .args(["clone", "-q"])
            .arg(self.repo(env))
            .arg(&work)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let path = work.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(&text)).unwrap();
        git(&work, &["commit", "-q", "-am", message]);
        git(&work, &["push", "-q", "origin", "HEAD:main"]);
    }
}

#[test]
fn a_manual_commit_to_prod_is_drift_with_its_diff() {
    let versions = [("dev", "1.5.0"), ("staging", "1.5.0"), ("uat", "1.5.0"), ("prod", "1.4.2")];
    let world = World::new(&["web", "api"], &versions);
    let promotions = vec![
        world.promotion("web", "prod", "prod-1.4.2", false),
        world.promotion("api", "prod", "prod-1.4.2", false),
        world.promotion("web", "staging", "staging-1.5.0", false),
    ];
    let report = drift::check(&world.config, &promotions, world.data_dir(), &world.cache_dir());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.drifted(), 0);
    assert!(report.promoted.iter().all(|drift| drift.state == PromotionState::InSync));

    // Someone hot-fixes prod's web by hand.
    world.manual_commit(
        "prod",
        "apps/web/values.yaml",
        |text| text.replace("tag: \"prod-1.4.2\"", "tag: \"hotfix-1.4.3\""),
        "hotfix web directly in prod",
    );
    let report = drift::check(&world.config, &promotions, world.data_dir(), &world.cache_dir());
    assert_eq!(report.drifted(), 1, "{report:#?}");
    let drifted = report.promoted.iter().find(|drift| drift.state == PromotionState::Drifted).unwrap();
    assert_eq!((drifted.app.as_str(), drifted.environment.as_str()), ("web", "prod"));
    assert_eq!(drifted.actual.tag.as_deref(), Some("hotfix-1.4.3"));
    assert_eq!(drifted.promoted_tag, "prod-1.4.2");
    assert_eq!(
        drifted.diff.as_deref(),
        Some(
            "--- promoted/apps/web/values.yaml\n+++ actual/apps/web/values.yaml\n\
             @@ -1,5 +1,5 @@\n # Helm values of web\n image:\n   repository: ghcr.io/acme/web\n\
             -  tag: \"prod-1.4.2\"\n+  tag: \"hotfix-1.4.3\"\n replicaCount: 2\n"
        )
    );
    // The commit read is the one the person pushed.
    assert_eq!(drifted.commit, git(&world.repo("prod"), &["rev-parse", "main"]).trim());
    let text = report.to_text();
    assert!(text.contains("DRIFT web in prod: gantry promoted prod-1.4.2"), "{text}");
    assert!(text.contains("+  tag: \"hotfix-1.4.3\""), "{text}");
    // The JSON form carries the same facts.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["promoted"].as_array().unwrap().len(), 3);

    // A promotion whose change request is still open is not drift.
    let awaiting = vec![world.promotion("web", "prod", "prod-1.5.0", true)];
    let report = drift::check(&world.config, &awaiting, world.data_dir(), &world.cache_dir());
    assert_eq!(report.promoted[0].state, PromotionState::AwaitingMerge);
    assert_eq!(report.drifted(), 0);

    // An unrelated manual edit (replicas) is not version drift.
    world.manual_commit(
        "prod",
        "apps/api/values.yaml",
        |text| text.replace("replicaCount: 2", "replicaCount: 5"),
        "scale api",
    );
    let report = drift::check(&world.config, &promotions, world.data_dir(), &world.cache_dir());
    assert_eq!(report.drifted(), 1);
}

#[test]
fn env_vs_env_lists_the_apps_whose_versions_differ() {
    let versions = [("dev", "1.6.0"), ("staging", "1.5.0"), ("uat", "1.5.0"), ("prod", "1.5.0")];
    let world = World::new(&["web", "api", "worker"], &versions);
    // uat gets a newer api; everything else is equal between staging, uat and prod.
    world.manual_commit(
        "uat",
        "apps/api/values.yaml",
        |text| text.replace("uat-1.5.0", "uat-1.5.1"),
        "promote api 1.5.1 to uat",
    );
    let report = drift::check(&world.config, &[], world.data_dir(), &world.cache_dir());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    type Listed<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);
    let listed: Vec<Listed<'_>> = report
        .environments
        .iter()
        .map(|difference| {
            (
                difference.app.as_str(),
                difference.from.as_str(),
                difference.to.as_str(),
                difference.from_version.as_deref(),
                difference.to_version.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("web", "dev", "staging", Some("1.6.0"), Some("1.5.0")),
            ("api", "dev", "staging", Some("1.6.0"), Some("1.5.0")),
            ("worker", "dev", "staging", Some("1.6.0"), Some("1.5.0")),
            ("api", "staging", "uat", Some("1.5.0"), Some("1.5.1")),
            ("api", "uat", "prod", Some("1.5.1"), Some("1.5.0")),
        ]
    );
    let api_to_prod = &report.environments[4];
    assert_eq!(
        api_to_prod.diff,
        "--- prod/apps/api/values.yaml\n+++ uat/apps/api/values.yaml\n@@ -1,5 +1,5 @@\n \
         # Helm values of api\n image:\n   repository: ghcr.io/acme/api\n\
         -  tag: \"prod-1.5.0\"\n+  tag: \"uat-1.5.1\"\n replicaCount: 2\n"
    );
    let text = report.to_text();
    assert!(text.contains("environment vs environment: 5 app(s) differ"), "{text}");
    assert!(text.contains("api: uat runs 1.5.1, prod runs 1.5.0"), "{text}");
}

#[test]
fn an_app_not_deployed_to_an_environment_is_skipped() {
    let versions = [("dev", "2.0.0"), ("staging", "1.0.0"), ("uat", "1.0.0"), ("prod", "1.0.0")];
    let world = World::new(&["web", "api"], &versions);
    // api was never deployed to staging: its directory does not exist there.
    let work = world.data_dir().join("work-staging");
    let output = Command::new("git")
        .args(["clone", "-q"])
        .arg(world.repo("staging"))
        .arg(&work)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    git(&work, &["rm", "-q", "-r", "apps/api"]);
    git(&work, &["commit", "-q", "-m", "api is not in staging"]);
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
    let report = drift::check(&world.config, &[], world.data_dir(), &world.cache_dir());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let pairs: Vec<(&str, &str, &str)> = report
        .environments
        .iter()
        .map(|difference| (difference.app.as_str(), difference.from.as_str(), difference.to.as_str()))
        .collect();
    assert_eq!(pairs, [("web", "dev", "staging")]);
}

#[test]
fn broken_environments_are_problems_not_failures() {
    let versions = [("dev", "1.0.0"), ("staging", "1.0.0"), ("uat", "1.0.0"), ("prod", "1.0.0")];
    let world = World::new(&["web"], &versions);
    std::fs::remove_dir_all(world.repo("uat")).unwrap();
    let mut missing_file = world.promotion("web", "prod", "prod-1.0.0", false);
    missing_file.path = "apps/nope/values.yaml".into();
    let report = drift::check(&world.config, &[missing_file], world.data_dir(), &world.cache_dir());
    let messages: Vec<String> =
        report.problems.iter().map(|problem| format!("{}: {}", problem.environment, problem.message)).collect();
    assert!(messages.iter().any(|m| m.starts_with("prod: apps/nope/values.yaml no longer exists")), "{messages:?}");
    assert!(messages.iter().any(|m| m.starts_with("uat: ")), "{messages:?}");
    // dev and staging can still be compared.
    assert!(report.environments.is_empty());
}
