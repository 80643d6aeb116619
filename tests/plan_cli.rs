//! `gantry plan` as a user runs it: real forge payloads in, the runs they would start out, as
//! JSON, Graphviz (checked by `dot` itself) and Argo Workflows (checked against Argo's schema).

#[path = "support/gantry.rs"]
mod gantry_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gantry_support::run;
use serde::Deserialize;
use serde_json::Value;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(path: &str) -> String {
    repo_root().join("tests/fixtures").join(path).display().to_string()
}

/// A config for the repositories of the real payloads below: `master` of the GitHub and GitLab
/// example repositories promotes into dev, and their `v*` tags into prod.
const CONFIG: &str = r#"
registries:
  - name: local
    url: oci-layout:registry
apps:
  - name: hello
    source_repo: Codertocat/Hello-World
    registry: local
    repository: hello
  - name: diaspora
    source_repo: mike/diaspora
    registry: local
    repository: diaspora
  - name: example
    source_repo: jsmith/example
    registry: local
    repository: example
environments:
  - name: dev
    order: 1
    config_repo: { url: repos/dev.git, path: "apps/{app}/kustomization.yaml" }
  - name: prod
    order: 2
    config_repo: { url: repos/prod.git, path: "apps/{app}/values.yaml", yaml_path: image.tag }
pipelines:
  - name: default
    triggers:
      - { on: branch, pattern: master, environment: dev, artifact_tag: "sha-{sha7}" }
      - { on: tag, pattern: "v*", environment: prod, artifact_tag: "{tag}" }
    steps:
      - { name: resolve, kind: resolve-artifact }
      - { name: retag, kind: retag, needs: [resolve] }
      - { name: update-config, kind: update-config, needs: [resolve] }
      - { name: open-pr, kind: open-pr, needs: [retag, update-config] }
"#;

fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gantry.yaml"), CONFIG).unwrap();
    dir
}

/// `gantry plan` with `extra` arguments; (exit code, stdout, stderr).
fn plan(config: &Path, forge: &str, event: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["plan", "--config", config.to_str().unwrap(), "--forge", forge, "--event", event];
    args.extend_from_slice(extra);
    run(&args)
}

fn plan_json(config: &Path, forge: &str, event: &str, extra: &[&str]) -> Value {
    let (code, stdout, stderr) = plan(config, forge, event, extra);
    assert_eq!(code, 0, "{stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn step_shape(run: &Value) -> Vec<(String, String, Vec<String>)> {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let needs = s["needs"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
            (s["name"].as_str().unwrap().to_string(), s["kind"].as_str().unwrap().to_string(), needs)
        })
        .collect()
}

#[test]
fn a_github_push_plans_one_run_into_dev() {
    let config = config_dir();
    let event = fixture("github/octokit-examples/push.4.json");
    let inferred = plan_json(config.path(), "github", &event, &[]);
    let explicit = plan_json(config.path(), "github", &event, &["--event-type", "push", "--format", "json"]);
    assert_eq!(inferred, explicit);

    let e = &inferred["event"];
    assert_eq!(e["forge"], "github");
    assert_eq!(e["event_type"], "push");
    assert_eq!(e["repo"], "Codertocat/Hello-World");
    assert_eq!(e["kind"], "push");
    assert_eq!(e["ref"], "master");
    assert_eq!(e["sha"], "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(e["deleted"], false);
    assert_eq!(e["merged"], false);
    assert_eq!(e["actor"], "Codertocat");

    let runs = inferred["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{inferred:#}");
    assert_eq!(runs[0]["app"], "hello");
    assert_eq!(runs[0]["environment"], "dev");
    assert_eq!(runs[0]["pipeline"], "default");
    let steps = step_shape(&runs[0]);
    let names: Vec<&str> = steps.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names.len(), 4);
    for (name, kind, needs) in &steps {
        let expected: (&str, &[&str]) = match name.as_str() {
            "resolve" => ("resolve-artifact", &[]),
            "retag" => ("retag", &["resolve"]),
            "update-config" => ("update-config", &["resolve"]),
            "open-pr" => ("open-pr", &["retag", "update-config"]),
            other => panic!("unexpected step {other}"),
        };
        let needs: Vec<&str> = needs.iter().map(String::as_str).collect();
        assert_eq!((kind.as_str(), needs.as_slice()), expected, "{name}");
        // Steps come after what they need.
        for need in &needs {
            let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
            assert!(at(need) < at(name), "{need} after {name}");
        }
    }
}

#[test]
fn gitlab_pushes_and_tags_plan_runs_too() {
    let config = config_dir();
    let push = plan_json(config.path(), "gitlab", &fixture("gitlab/docs-examples/push.0.json"), &[]);
    assert_eq!(push["event"]["forge"], "gitlab");
    assert_eq!(push["event"]["event_type"], "Push Hook");
    assert_eq!(push["event"]["repo"], "mike/diaspora");
    assert_eq!(push["event"]["kind"], "push");
    assert_eq!(push["event"]["ref"], "master");
    assert_eq!(push["event"]["sha"], "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
    assert_eq!(push["runs"][0]["app"], "diaspora");
    assert_eq!(push["runs"][0]["environment"], "dev");

    let tag = plan_json(config.path(), "gitlab", &fixture("gitlab/docs-examples/tag_push.0.json"), &[]);
    assert_eq!(tag["event"]["kind"], "tag");
    assert_eq!(tag["event"]["ref"], "v1.0.0");
    assert_eq!(tag["runs"][0]["app"], "example");
    assert_eq!(tag["runs"][0]["environment"], "prod");
    assert_eq!(tag["runs"][0]["artifact"]["tag"], "v1.0.0");
}

#[test]
fn events_that_start_nothing_exit_zero_with_no_runs() {
    let config = config_dir();
    for (event, event_type, kind) in [
        ("github/octokit-examples/ping.0.json", "ping", "ping"),
        // A tag deletion: a delete, with no commit to promote.
        ("github/octokit-examples/push.1.json", "push", "delete"),
        ("github/octokit-examples/pull_request.opened.0.json", "pull_request", "other"),
        ("github/octokit-examples/workflow_run.completed.0.json", "workflow_run", ""),
    ] {
        let value = plan_json(config.path(), "github", &fixture(event), &[]);
        assert_eq!(value["event"]["event_type"], event_type, "{event}");
        if !kind.is_empty() {
            assert_eq!(value["event"]["kind"], kind, "{event}: {value:#}");
        }
        assert_eq!(value["runs"], serde_json::json!([]), "{event}");
    }
    let deleted = plan_json(config.path(), "github", &fixture("github/octokit-examples/push.1.json"), &[]);
    assert_eq!(deleted["event"]["deleted"], true);
    assert_eq!(deleted["event"]["sha"], Value::Null);
}

#[test]
fn unreadable_events_exit_two_with_the_reason() {
    let config = config_dir();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };

    let garbage = write("garbage.json", "ref=refs/heads/master");
    let (code, _, stderr) = plan(config.path(), "github", &garbage, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not JSON"), "{stderr}");

    let (code, _, stderr) = plan(config.path(), "github", &garbage, &["--event-type", "push"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("push"), "{stderr}");

    // A push without a repository cannot be matched to an app.
    let incomplete = write(
        "incomplete.json",
        r#"{"ref": "refs/heads/master", "before": "0000000000000000000000000000000000000000", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246"}"#,
    );
    let (code, _, stderr) = plan(config.path(), "github", &incomplete, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("repository"), "{stderr}");

    let unknown = write("unknown.json", r#"{"issue": {"number": 1}}"#);
    let (code, _, stderr) = plan(config.path(), "github", &unknown, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--event-type"), "{stderr}");

    let missing = dir.path().join("missing.json").display().to_string();
    let (code, _, stderr) = plan(config.path(), "gitlab", &missing, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("missing.json"), "{stderr}");
}

#[test]
fn dot_output_is_a_graph_graphviz_draws() {
    let config = config_dir();
    let (code, stdout, stderr) =
        plan(config.path(), "github", &fixture("github/octokit-examples/push.4.json"), &["--format", "dot"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("digraph"), "{stdout}");
    assert!(stdout.contains("\"0/resolve\" -> \"0/retag\""), "{stdout}");
    assert!(stdout.contains("\"0/update-config\" -> \"0/open-pr\""), "{stdout}");

    // Graphviz itself must read it and lay out every node and edge.
    let mut dot = Command::new("dot")
        .arg("-Tplain")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run Graphviz `dot` (scripts/test-deps.sh installs it)");
    use std::io::Write;
    dot.stdin.take().unwrap().write_all(stdout.as_bytes()).unwrap();
    let output = dot.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "dot warned: {stderr}");
    let layout = String::from_utf8_lossy(&output.stdout);
    let nodes = layout.lines().filter(|l| l.starts_with("node ")).count();
    let edges: Vec<&str> = layout.lines().filter(|l| l.starts_with("edge ")).collect();
    assert_eq!(nodes, 4, "{layout}");
    assert_eq!(edges.len(), 4, "{layout}");
    assert!(edges.iter().any(|e| e.starts_with("edge \"0/update-config\" \"0/open-pr\"")), "{layout}");
}

fn argo_schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(fixture("argo/workflows/schema.json")).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

#[test]
fn argo_output_is_one_valid_workflow_per_run() {
    let config = config_dir();
    let event = fixture("github/octokit-examples/push.4.json");
    let json = plan_json(config.path(), "github", &event, &[]);
    let (code, stdout, stderr) = plan(
        config.path(),
        "github",
        &event,
        &["--format", "argo", "--image", "registry.example.com/gantry:9.9.9", "--namespace", "promotions"],
    );
    assert_eq!(code, 0, "{stderr}");
    let documents: Vec<Value> =
        yaml_serde::Deserializer::from_str(&stdout).map(|doc| Value::deserialize(doc).unwrap()).collect();
    assert_eq!(documents.len(), 1, "{stdout}");
    let workflow = &documents[0];
    let schema = argo_schema();
    let problems: Vec<String> = schema.iter_errors(workflow).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(problems.is_empty(), "{problems:#?}\n{stdout}");
    // Reads as a manifest: apiVersion and kind first.
    assert!(stdout.starts_with("---\napiVersion: argoproj.io/v1alpha1\nkind: Workflow\n"), "{stdout}");
    assert_eq!(workflow["metadata"]["namespace"], "promotions");
    let templates = workflow["spec"]["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 1 + 4);
    assert!(templates[1..].iter().all(|t| t["container"]["image"] == "registry.example.com/gantry:9.9.9"));
    // The plan a step container reads is the run `--format json` printed.
    let parameter = workflow["spec"]["arguments"]["parameters"][0]["value"].as_str().unwrap();
    let travelled: Value = serde_json::from_str(parameter).unwrap();
    assert_eq!(travelled, json["runs"][0]);

    // No run, no workflow.
    let (code, stdout, stderr) =
        plan(config.path(), "github", &fixture("github/octokit-examples/ping.0.json"), &["--format", "argo"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "");
}

#[test]
fn reference_config_plans_the_demo_event() {
    let environments: PathBuf = repo_root().join("environments");
    let (code, payload, stderr) = run(&["demo", "event", "--config", environments.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("push.json");
    std::fs::write(&event, &payload).unwrap();
    let value = plan_json(&environments, "github", event.to_str().unwrap(), &[]);
    assert_eq!(value["event"]["repo"], "acme/sample-app");
    assert_eq!(value["runs"].as_array().unwrap().len(), 1, "{value:#}");
    assert_eq!(value["runs"][0]["environment"], "dev");
}
