//! Validation of the `registries:` section (credentials, `insecure`, `immutable_tags`, URL forms)
//! and of step settings that name a registry, each problem reported with file and line.

use gantry_workflows::StepCatalog;
use serde_json::Value;

/// The step kinds the configs use; `retag` names a registry in `with.registry`, as the
/// engine's real catalog says.
struct Kinds;

impl StepCatalog for Kinds {
    fn kinds(&self) -> Vec<&'static str> {
        vec!["retag"]
    }

    fn check(&self, _kind: &str, _with: &Value) -> Vec<(String, String)> {
        Vec::new()
    }

    fn registry_references(&self, _kind: &str, with: &Value) -> Vec<(String, String)> {
        with.get("registry")
            .and_then(Value::as_str)
            .map(|name| vec![("registry".to_owned(), name.to_owned())])
            .unwrap_or_default()
    }
}

const REST: &str = "\
apps:
  - name: web
    source_repo: acme/web
    registry: dev
    repository: team/web
environments:
  - name: prod
    order: 1
    config_repo:
      url: repos/prod.git
      path: apps/{app}/values.yaml
pipelines:
  - name: default
    triggers:
      - on: tag
        pattern: v*
        environment: prod
        artifact_tag: \"{tag}\"
    steps:
      - name: promote
        kind: retag
        with:
          registry: prod
";

fn problems(registries: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registries.yaml"), registries).unwrap();
    std::fs::write(dir.path().join("rest.yaml"), REST).unwrap();
    gantry_workflows::validate_dir(dir.path(), &Kinds).iter().map(ToString::to_string).collect()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|line| line.contains(needle)).unwrap() + 1
}

#[test]
fn registry_settings_that_make_sense_pass() {
    let registries = "\
registries:
  - name: dev
    url: http://127.0.0.1:5000
  - name: prod
    url: https://registry.example.com/team
    credentials:
      username: ci
      password_env: PROD_REGISTRY_TOKEN
    immutable_tags: [\"web\", \"team/*\", \"**\"]
  - name: internal
    url: registry.internal:5000
    insecure: true
    credentials:
      username: robot
      password_file: secrets/internal-token
  - name: ecr
    url: ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com
";
    assert_eq!(problems(registries), Vec::<String>::new());
}

#[test]
fn every_registry_mistake_is_reported_with_its_line() {
    let registries = "\
registries:
  - name: dev
    url: http://127.0.0.1:5000
  - name: both
    url: https://registry.example.com
    credentials:
      username: ci
      password_env: TOKEN
      password_file: token.txt
  - name: neither
    url: https://registry.example.com
    credentials:
      username: ci
  - name: contradiction
    url: https://registry.example.com
    insecure: true
  - name: cleartext
    url: http://registry.internal:5000
  - name: pattern
    url: https://registry.example.com
    immutable_tags: [\"Team/*\"]
  - name: layout
    url: oci-layout:images
    credentials:
      username: ci
      password_env: TOKEN
  - name: scheme
    url: ftp://registry.example.com
  - name: typo
    url: https://registry.example.com
    credentails: {}
";
    let found = problems(registries);
    let expect = [
        (line_of(registries, "password_file: token.txt"), "either `password_env` or `password_file`"),
        (line_of(registries, "name: neither") + 2, "`password_env` or `password_file`"),
        (line_of(registries, "insecure: true"), "asks for plain HTTP"),
        (line_of(registries, "http://registry.internal:5000"), "needs `insecure: true`"),
        (line_of(registries, "Team/*"), "not a repository name or glob"),
        (line_of(registries, "name: layout") + 2, "takes no credentials"),
        (line_of(registries, "ftp://"), "must be oci-layout:"),
        (line_of(registries, "credentails"), "credentails"),
        // A step naming a registry that does not exist (here: `prod`).
        (line_of(REST, "registry: prod"), "unknown registry `prod`"),
    ];
    for (line, message) in expect {
        let file = if message.contains("unknown registry") { "rest.yaml" } else { "registries.yaml" };
        assert!(
            found.iter().any(|problem| problem.contains(&format!("{file}:{line}:")) && problem.contains(message)),
            "expected {file}:{line} {message} in:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(found.len(), expect.len(), "{}", found.join("\n"));
}
