//! Argo Workflows rendering: every rendered `Workflow` must be one Argo accepts.
//!
//! The published Argo schema (`tests/fixtures/argo/workflows/schema.json`) allows unknown
//! fields everywhere, so a misspelt key would pass it. The tests therefore also check against
//! a strict reading of the same schema, in which objects may hold only the properties their
//! definition lists; that strict reading must still accept Argo's own example workflows.
//! Argo's other rules that the schema cannot express (a task may only read outputs of its
//! ancestors; every parameter a template reads is declared) are checked by hand.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use gantry_webhooks::{Parsed, github};
use gantry_workflows::argo::{self, ArgoOptions};
use gantry_workflows::{Config, Plan, StepCatalog};
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/argo")
}

/// Step kinds the test configs use; the engine's real catalog is not a dependency here.
struct Kinds;

impl StepCatalog for Kinds {
    fn kinds(&self) -> Vec<&'static str> {
        vec!["resolve-artifact", "retag", "update-config", "open-pr", "scan", "approval", "notify"]
    }

    fn check(&self, _kind: &str, _with: &Value) -> Vec<(String, String)> {
        Vec::new()
    }
}

fn load(dir: &Path) -> Config {
    gantry_workflows::load_dir(dir, &Kinds)
        .unwrap_or_else(|errors| panic!("{} does not load: {errors:#?}", dir.display()))
}

fn reference_config() -> Config {
    load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../environments"))
}

fn fan_out_config() -> Config {
    load(&fixtures().join("fan-out"))
}

/// The plans a GitHub push of `full_ref` in `repo` starts.
fn plans(config: &Config, repo: &str, full_ref: &str) -> Vec<Plan> {
    let sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    let body = json!({
        "ref": full_ref,
        "before": "0000000000000000000000000000000000000000",
        "after": sha,
        "deleted": false,
        "head_commit": { "id": sha },
        "repository": { "full_name": repo },
        "pusher": { "name": "octocat" },
    });
    let event = match github::parse("push", body.to_string().as_bytes()).unwrap() {
        Parsed::Event(event) => event,
        Parsed::Ignored { reason, .. } => panic!("push ignored: {reason}"),
    };
    let plans = gantry_workflows::plan(config, &event).unwrap();
    assert!(!plans.is_empty(), "{full_ref} of {repo} starts nothing");
    plans
}

fn reference_plan() -> Plan {
    plans(&reference_config(), "acme/sample-app", "refs/heads/main").remove(0)
}

fn fan_out_plan() -> Plan {
    plans(&fan_out_config(), "acme/checkout", "refs/tags/v1.4.0").remove(0)
}

struct Schemas {
    /// The schema exactly as Argo publishes it.
    published: jsonschema::Validator,
    /// The `Workflow` definition with unknown properties forbidden.
    strict_workflow: jsonschema::Validator,
}

static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| {
    let text = std::fs::read_to_string(fixtures().join("workflows/schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let published = jsonschema::validator_for(&schema).unwrap();
    let mut definitions = schema["definitions"].clone();
    for definition in definitions.as_object_mut().unwrap().values_mut() {
        let Some(object) = definition.as_object_mut() else {
            continue;
        };
        if object.contains_key("properties") && !object.contains_key("additionalProperties") {
            object.insert("additionalProperties".into(), json!(false));
        }
    }
    let strict = json!({
        "$schema": schema["$schema"],
        "$ref": "#/definitions/io.argoproj.workflow.v1alpha1.Workflow",
        "definitions": definitions,
    });
    let strict_workflow = jsonschema::validator_for(&strict).unwrap();
    Schemas { published, strict_workflow }
});

/// Problems the schemas find in `workflow`, one per line.
fn schema_problems(workflow: &Value) -> Vec<String> {
    let mut problems: Vec<String> =
        SCHEMAS.strict_workflow.iter_errors(workflow).map(|e| format!("strict: {}: {e}", e.instance_path())).collect();
    problems.extend(SCHEMAS.published.iter_errors(workflow).map(|e| format!("published: {}: {e}", e.instance_path())));
    problems
}

#[test]
fn rendered_workflows_validate_against_the_argo_schema() {
    // The strict reading must not reject what Argo itself ships, or its verdicts mean nothing.
    let examples = fixtures().join("workflows/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let example: Value = yaml_serde::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let problems = schema_problems(&example);
        assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} Argo examples found");

    // ... and it must catch what the published schema lets through.
    let mut misspelt = argo::render(&reference_plan(), &ArgoOptions::default());
    misspelt["spec"]["templates"][0]["dag"]["tasks"][1]["dependencis"] = json!(["resolve"]);
    assert!(SCHEMAS.published.is_valid(&misspelt));
    assert!(!SCHEMAS.strict_workflow.is_valid(&misspelt));

    let reference = reference_config();
    let cases = [
        plans(&reference, "acme/sample-app", "refs/heads/main"),
        // staging and uat are entered after the environment before them, not by a trigger.
        reference
            .environments
            .iter()
            .filter_map(|(env, _)| {
                let dev = plans(&reference, "acme/sample-app", "refs/heads/main").remove(0);
                gantry_workflows::follow_up(&reference, &dev, env).unwrap()
            })
            .collect(),
        plans(&reference, "acme/sample-app", "refs/tags/v2.0.1"),
        plans(&fan_out_config(), "acme/checkout", "refs/tags/v1.4.0"),
    ];
    let options = [
        ArgoOptions::default(),
        ArgoOptions {
            image: "registry.example.com/gantry:1.2.3".into(),
            namespace: Some("promotions".into()),
            service_account: Some("gantry-steps".into()),
            data_dir: "/data".into(),
            storage_class: Some("fast".into()),
            ..ArgoOptions::default()
        },
    ];
    for plan in cases.iter().flatten() {
        for options in &options {
            let workflow = argo::render(plan, options);
            let problems = schema_problems(&workflow);
            assert!(problems.is_empty(), "{} → {}: {problems:#?}", plan.app, plan.environment);
            check_argo_rules(&workflow);
        }
    }
}

/// The rules Argo's validation enforces beyond the schema, for a rendered workflow.
fn check_argo_rules(workflow: &Value) {
    let templates: HashMap<&str, &Value> =
        workflow["spec"]["templates"].as_array().unwrap().iter().map(|t| (t["name"].as_str().unwrap(), t)).collect();
    let entry = templates[workflow["spec"]["entrypoint"].as_str().unwrap()];
    let tasks = entry["dag"]["tasks"].as_array().unwrap();
    let mut parents: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for task in tasks {
        let name = task["name"].as_str().unwrap();
        let mut direct: BTreeSet<String> =
            task["dependencies"].as_array().into_iter().flatten().map(|d| d.as_str().unwrap().to_string()).collect();
        if let Some(depends) = task["depends"].as_str() {
            direct.extend(depends_names(depends));
        }
        parents.insert(name, direct);
    }
    let ancestors = |task: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![task.to_string()];
        while let Some(next) = todo.pop() {
            for parent in &parents[next.as_str()] {
                if seen.insert(parent.clone()) {
                    todo.push(parent.clone());
                }
            }
        }
        seen
    };
    for task in tasks {
        let name = task["name"].as_str().unwrap();
        for parent in &parents[name] {
            assert!(parents.contains_key(parent.as_str()), "{name} depends on unknown {parent}");
        }
        let template = templates[task["template"].as_str().unwrap()];
        let declared: BTreeSet<&str> = template["inputs"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let passed: BTreeSet<&str> = task["arguments"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(declared, passed, "{name}: arguments and inputs differ");
        let ancestors = ancestors(name);
        for argument in task["arguments"]["parameters"].as_array().into_iter().flatten() {
            let value = argument["value"].as_str().unwrap();
            let source = value
                .strip_prefix("{{tasks.")
                .and_then(|rest| rest.split_once(".outputs.parameters."))
                .map(|(task, _)| task)
                .unwrap_or_else(|| panic!("{name}: unexpected argument {value}"));
            assert!(ancestors.contains(source), "{name} reads outputs of {source}, which is not an ancestor");
            let source_template =
                templates[tasks.iter().find(|t| t["name"] == source).unwrap()["template"].as_str().unwrap()];
            assert!(source_template.get("container").is_some(), "{name} reads outputs of {source}, which has none");
        }
        // Every `{{inputs.parameters.x}}` the container reads is declared.
        for arg in template["container"]["args"].as_array().into_iter().flatten() {
            let arg = arg.as_str().unwrap();
            let mut text = arg;
            while let Some(start) = text.find("{{inputs.parameters.") {
                let rest = &text[start + "{{inputs.parameters.".len()..];
                let end = rest.find("}}").unwrap();
                assert!(declared.contains(&rest[..end]), "{name}: args read undeclared {}", &rest[..end]);
                text = &rest[end..];
            }
        }
    }
}

/// Task names in an Argo `depends` expression.
fn depends_names(depends: &str) -> Vec<String> {
    depends
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .filter(|word| !word.is_empty())
        .map(|word| word.split('.').next().unwrap().to_string())
        .collect()
}

fn task<'a>(workflow: &'a Value, name: &str) -> &'a Value {
    workflow["spec"]["templates"][0]["dag"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name}"))
}

fn template<'a>(workflow: &'a Value, name: &str) -> &'a Value {
    workflow["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no template {name}"))
}

fn args(template: &Value) -> Vec<&str> {
    template["container"]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect()
}

/// The values following each occurrence of `flag`, sorted (their order carries no meaning).
fn flag_values<'a>(args: &[&'a str], flag: &str) -> Vec<&'a str> {
    let mut values: Vec<&str> = args.windows(2).filter(|pair| pair[0] == flag).map(|pair| pair[1]).collect();
    values.sort_unstable();
    values
}

#[test]
fn tasks_mirror_the_reference_pipeline() {
    let plan = reference_plan();
    let workflow = argo::render(&plan, &ArgoOptions::default());
    assert_eq!(workflow["kind"], "Workflow");
    assert_eq!(workflow["metadata"]["generateName"], "gantry-sample-app-dev-");
    assert_eq!(workflow["spec"]["entrypoint"], argo::ENTRYPOINT);
    assert_eq!(workflow["spec"]["templates"][0]["name"], argo::ENTRYPOINT);

    assert_eq!(workflow["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], argo::DATA_VOLUME);
    let tasks = workflow["spec"]["templates"][0]["dag"]["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), plan.steps.len());
    for step in &plan.steps {
        let task = task(&workflow, &step.name);
        let dependencies: Vec<&str> =
            task["dependencies"].as_array().into_iter().flatten().map(|d| d.as_str().unwrap()).collect();
        assert_eq!(dependencies, step.needs, "dependencies of {}", step.name);

        let template = template(&workflow, task["template"].as_str().unwrap());
        assert_eq!(template["container"]["image"], argo::DEFAULT_IMAGE);
        let args = args(template);
        assert_eq!(&args[..2], ["step", step.kind.as_str()]);
        assert_eq!(flag_values(&args, "--step"), [step.name.as_str()]);
        assert_eq!(flag_values(&args, "--plan"), [argo::PLAN_PATH]);
        assert_eq!(flag_values(&args, "--outputs"), [argo::OUTPUTS_DIR]);
        assert_eq!(template["inputs"]["artifacts"][0]["path"], argo::PLAN_PATH);
        // Steps in different pods share one data directory (mirrors, the local forge's store).
        assert_eq!(
            template["container"]["volumeMounts"],
            json!([{ "name": argo::DATA_VOLUME, "mountPath": "/var/lib/gantry" }])
        );
        assert_eq!(template["container"]["env"], json!([{ "name": "GANTRY_DATA_DIR", "value": "/var/lib/gantry" }]));
        // Per attempt: the step's own timeout, or the engine's ten minutes.
        let deadline = step.timeout_ms.map_or(600, |ms| ms.div_ceil(1000));
        assert_eq!(template["activeDeadlineSeconds"], deadline.to_string(), "{}", step.name);
        // The step's transient retries (five by default) plus one poll a minute for the
        // trigger's 10-minute artifact wait.
        let retries = step.max_attempts.unwrap_or(6) - 1;
        assert_eq!(template["retryStrategy"]["limit"], (retries + 10).to_string(), "{}", step.name);
        let outputs: Vec<&str> = template["outputs"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["valueFrom"]["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            outputs,
            [
                format!("{}/{}", argo::OUTPUTS_DIR, argo::OUTPUTS_FILE),
                format!("{}/{}", argo::OUTPUTS_DIR, argo::DIGEST_FILE)
            ]
        );
    }

    // open-pr needs retag and update-config: it reads all three upstream outputs, and the
    // digest from the two it needs directly.
    let open_pr = args(template(&workflow, "step-open-pr"));
    assert_eq!(
        flag_values(&open_pr, "--input"),
        [
            "resolve={{inputs.parameters.outputs-resolve}}",
            "retag={{inputs.parameters.outputs-retag}}",
            "update-config={{inputs.parameters.outputs-update-config}}",
        ]
    );
    assert_eq!(
        flag_values(&open_pr, "--digest"),
        ["{{inputs.parameters.digest-retag}}", "{{inputs.parameters.digest-update-config}}",]
    );
    assert!(flag_values(&args(template(&workflow, "step-resolve")), "--input").is_empty());

    // Into prod the reference pipeline waits for a person: the approval is a suspend step,
    // and what follows it still gets resolve's outputs and digest through it.
    let prod = plans(&reference_config(), "acme/sample-app", "refs/tags/v2.0.1").remove(0);
    assert_eq!(prod.environment, "prod");
    let prod_workflow = argo::render(&prod, &ArgoOptions::default());
    assert_eq!(template(&prod_workflow, "step-approve"), &json!({ "name": "step-approve", "suspend": {} }));
    assert_eq!(task(&prod_workflow, "retag")["dependencies"], json!(["approve"]));
    let retag = args(template(&prod_workflow, "step-retag"));
    assert_eq!(flag_values(&retag, "--input"), ["resolve={{inputs.parameters.outputs-resolve}}"]);
    assert_eq!(flag_values(&retag, "--digest"), ["{{inputs.parameters.digest-resolve}}"]);

    // The plan travels whole: the parameter is the plan.
    let parameter = workflow["spec"]["arguments"]["parameters"][0]["value"].as_str().unwrap();
    let travelled: Plan = serde_json::from_str(parameter).unwrap();
    assert_eq!(travelled, plan);
}

#[test]
fn fan_out_fan_in_approval_and_failure_handler() {
    let plan = fan_out_plan();
    let workflow = argo::render(&plan, &ArgoOptions::default());

    for branch in ["retag", "update-config", "scan"] {
        assert_eq!(task(&workflow, branch)["dependencies"], json!(["resolve"]));
    }
    assert_eq!(task(&workflow, "approve")["dependencies"], json!(["retag", "update-config", "scan"]));
    assert_eq!(template(&workflow, "step-approve"), &json!({ "name": "step-approve", "suspend": {} }));
    // Behind the approval, open-pr still gets everything the fan-out produced.
    let open_pr = args(template(&workflow, "step-open-pr"));
    assert_eq!(flag_values(&open_pr, "--input").len(), 4);
    assert_eq!(
        flag_values(&open_pr, "--digest"),
        [
            "{{inputs.parameters.digest-retag}}",
            "{{inputs.parameters.digest-scan}}",
            "{{inputs.parameters.digest-update-config}}",
        ]
    );

    // The failure handler runs on a failure upstream, after open-pr ended either way, and
    // reads no outputs (the steps it would read may not have run).
    let notify = task(&workflow, "notify");
    assert!(notify.get("dependencies").is_none());
    assert_eq!(notify["depends"], "((open-pr.Failed || open-pr.Errored) || (scan.Failed || scan.Errored))");
    assert!(notify.get("arguments").is_none());
    assert_eq!(workflow["spec"]["templates"][0]["dag"]["failFast"], false);

    // Per-step retry and timeout settings win over the defaults.
    let retag = template(&workflow, "step-retag");
    assert_eq!(retag["retryStrategy"]["backoff"]["duration"], "2s");
    // Three attempts (two retries) plus one poll a minute for the 30-minute artifact wait.
    assert_eq!(retag["retryStrategy"]["limit"], "32");
    assert_eq!(template(&workflow, "step-resolve")["activeDeadlineSeconds"], "90");
}

#[test]
fn template_braces_in_the_plan_do_not_reach_argo() {
    let plan = fan_out_plan();
    let scan = plan.steps.iter().find(|s| s.name == "scan").unwrap();
    assert_eq!(scan.with["title"], "scan {{app}} before {{env}}");

    let workflow = argo::render(&plan, &ArgoOptions::default());
    let parameter = workflow["spec"]["arguments"]["parameters"][0]["value"].as_str().unwrap();
    assert!(!parameter.contains("{{"), "{parameter}");
    let travelled: Plan = serde_json::from_str(parameter).unwrap();
    assert_eq!(travelled, plan);
}

#[test]
fn reference_workflow_snapshot() {
    let mut workflow = argo::render(&reference_plan(), &ArgoOptions::default());
    // The plan's own shape belongs to the planner; keep this snapshot about Argo.
    workflow["spec"]["arguments"]["parameters"][0]["value"] = json!("[plan]");
    insta::assert_yaml_snapshot!(workflow);
}
