//! Rendering a planned run as an Argo Workflows `Workflow`, for teams that let Argo run the DAG.
//!
//! The rendered `Workflow` has one `dag` template (the entrypoint, `promote`) whose tasks mirror
//! the plan's steps, and one template per step. A step template runs the gantry image as
//! `gantry step <kind> --plan … --step <name> --outputs …`, which is the contract between this
//! module and the `gantry step` command:
//!
//! - the plan travels as the workflow parameter `plan` and reaches each container as a `raw`
//!   input artifact at [`PLAN_PATH`], so no artifact repository is needed;
//! - a step writes its outputs to [`OUTPUTS_DIR`]: all of them in [`OUTPUTS_FILE`], and the
//!   run's pinned digest (if known) in [`DIGEST_FILE`]; both become output parameters
//!   (`outputs`, `digest`) that later tasks receive as `--input <step>=…` and `--digest …`;
//! - exit codes say what happened: 0 succeeded, [`EXIT_WAITING`] waiting (retry later),
//!   [`EXIT_TRANSIENT`] transient failure, anything else a failure retrying cannot fix. The
//!   template's `retryStrategy` retries only the first two, so a waiting step polls through
//!   Argo's retries and gives up when the step itself decides its wait is over;
//! - steps of kind [`APPROVAL_KIND`] become `suspend` templates: someone resumes the workflow;
//! - every step container mounts one volume per workflow at [`ArgoOptions::data_dir`] (its
//!   gantry data directory): `update-config` commits into an environment repository's mirror
//!   there and `open-pr` pushes that commit, and the `local` forge keeps its store there, so
//!   steps in different pods must see the same directory.
//!
//! `if:` conditions become Argo `depends` expressions. A task only receives the outputs of
//! steps that are certain to have succeeded when it starts (its needs, and theirs, along
//! unconditional edges), because Argo cannot substitute the outputs of a task that did not run.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::condition::{Condition, Outcome};
use crate::plan::{Plan, PlannedStep};

/// Image the step containers run unless [`ArgoOptions::image`] says otherwise.
pub const DEFAULT_IMAGE: &str = "ghcr.io/gantry-dev/gantry:latest";

/// Where a step container finds the plan.
pub const PLAN_PATH: &str = "/tmp/gantry/plan.json";

/// Where a step container writes its outputs.
pub const OUTPUTS_DIR: &str = "/tmp/gantry/outputs";

/// File in the outputs directory holding all of a step's outputs as one JSON object.
pub const OUTPUTS_FILE: &str = "outputs.json";

/// File in the outputs directory holding the run's pinned artifact digest (empty when none).
pub const DIGEST_FILE: &str = "run-digest";

/// Exit code of a step that is waiting (for CI, a merge, a soak time): run it again later.
pub const EXIT_WAITING: u8 = 3;

/// Exit code of a step that failed in a way worth retrying (`EX_TEMPFAIL`).
pub const EXIT_TRANSIENT: u8 = 75;

/// Step kind rendered as an Argo `suspend` template rather than a container.
pub const APPROVAL_KIND: &str = "approval";

/// Name of the workflow's volume that holds the gantry data directory.
pub const DATA_VOLUME: &str = "gantry-data";

/// Name of the entrypoint `dag` template.
pub const ENTRYPOINT: &str = "promote";

/// Longest delay Argo waits between two attempts of a step, like the engine's own cap.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Kubernetes caps names and label values at 63 characters; Argo appends 5 to `generateName`.
const MAX_LABEL_LEN: usize = 63;
const MAX_GENERATE_NAME_LEN: usize = 58;

/// How to render: the image and cluster settings, and defaults for steps that set none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgoOptions {
    /// Image of the step containers; it must have `gantry` on its `PATH`.
    pub image: String,
    /// Namespace of the workflow (`None`: the one it is submitted to).
    pub namespace: Option<String>,
    /// Service account of the step pods (`None`: the namespace default).
    pub service_account: Option<String>,
    /// Where the step containers mount the shared data directory.
    pub data_dir: String,
    /// Size of the data directory's volume, a Kubernetes quantity such as `1Gi`.
    pub data_volume_size: String,
    /// Storage class of that volume (`None`: the cluster default). The volume is
    /// `ReadWriteOnce`, so steps running at the same time need a node in common, or a class
    /// whose volumes attach to several nodes.
    pub storage_class: Option<String>,
    /// Longest one attempt of a step may take when the step sets no `timeout`.
    pub step_timeout: Duration,
    /// Attempts in all for transient errors when the step sets no `retry`.
    pub attempts: u32,
    /// First delay between attempts when the step sets no `retry.backoff`.
    pub backoff: Duration,
}

impl Default for ArgoOptions {
    /// The engine's own defaults: 10 minutes per attempt, six attempts, 0.5 s first backoff.
    fn default() -> Self {
        Self {
            image: DEFAULT_IMAGE.to_string(),
            namespace: None,
            service_account: None,
            data_dir: "/var/lib/gantry".to_string(),
            data_volume_size: "1Gi".to_string(),
            storage_class: None,
            step_timeout: Duration::from_secs(600),
            attempts: 6,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Renders `plan` as one Argo `Workflow` object.
pub fn render(plan: &Plan, options: &ArgoOptions) -> Value {
    let tasks = TaskNames::new(&plan.steps);
    let graph = Graph::new(plan, &tasks);
    let mut templates = vec![dag_template(plan, &tasks, &graph)];
    for (index, step) in plan.steps.iter().enumerate() {
        templates.push(step_template(plan, index, step, &tasks, &graph, options));
    }

    let mut metadata = json!({
        "generateName": generate_name(plan),
        "labels": {
            "app.kubernetes.io/managed-by": "gantry",
            "gantry.dev/app": label_value(&plan.app),
            "gantry.dev/environment": label_value(&plan.environment),
            "gantry.dev/pipeline": label_value(&plan.pipeline),
        },
        "annotations": annotations(plan),
    });
    if let Some(namespace) = &options.namespace {
        metadata["namespace"] = json!(namespace);
    }
    let mut spec = json!({
        "entrypoint": ENTRYPOINT,
        "arguments": { "parameters": [{ "name": "plan", "value": plan_parameter(plan) }] },
        // One promotion per app and environment at a time, as the engine guarantees.
        "synchronization": {
            "mutexes": [{ "name": format!("gantry-{}-{}", slug(&plan.app), slug(&plan.environment)) }],
        },
        "templates": templates,
    });
    if let Some(account) = &options.service_account {
        spec["serviceAccountName"] = json!(account);
    }
    if plan.steps.iter().any(|s| s.kind != APPROVAL_KIND) {
        let mut claim = json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": options.data_volume_size } },
        });
        if let Some(class) = &options.storage_class {
            claim["storageClassName"] = json!(class);
        }
        spec["volumeClaimTemplates"] = json!([{ "metadata": { "name": DATA_VOLUME }, "spec": claim }]);
    }
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": metadata,
        "spec": spec,
    })
}

/// The plan as the `plan` workflow parameter's value: compact JSON that Argo leaves alone.
fn plan_parameter(plan: &Plan) -> String {
    // A plan holds only strings, numbers, booleans and string-keyed maps, so serializing it
    // cannot fail; "null" would make every step report an unreadable plan if it ever did.
    let text = serde_json::to_string(plan).unwrap_or_else(|_| "null".to_string());
    // Argo substitutes `{{…}}` everywhere, including inside parameter values, and a plan may
    // carry such text (a PR title template, say). In compact JSON `{{` can only occur inside a
    // string, where `\u007b` is the same character, so escaping it changes nothing for gantry.
    text.replace("{{", "{\\u007b")
}

fn annotations(plan: &Plan) -> Value {
    let mut annotations = json!({
        "gantry.dev/trigger": plan.trigger,
        "gantry.dev/artifact": format!("{}/{}:{}", plan.artifact.registry, plan.artifact.repository, plan.artifact.tag),
        "gantry.dev/target-tag": plan.target.tag,
    });
    if let Some(sha) = &plan.event.sha {
        annotations["gantry.dev/commit"] = json!(sha);
    }
    annotations["gantry.dev/repository"] = json!(plan.event.repo);
    annotations
}

fn dag_template(plan: &Plan, tasks: &TaskNames, graph: &Graph) -> Value {
    let mut any_condition = false;
    let dag_tasks: Vec<Value> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let mut task = json!({
                "name": tasks.task(index),
                "template": tasks.template(index),
            });
            let declared: Vec<&str> = step.needs.iter().filter_map(|need| tasks.by_step_name(need)).collect();
            match step.condition.as_deref().map(Condition::parse) {
                Some(Ok(condition)) if condition != Condition::Success => {
                    any_condition = true;
                    if let Some(expression) = task_depends(&condition, &declared, tasks) {
                        task["depends"] = json!(expression);
                    }
                }
                // `success()` is what plain `dependencies` mean. A condition that does not
                // parse cannot come from a validated config; treating it as the default keeps
                // the needs, which is the safe reading.
                _ => {
                    if !declared.is_empty() {
                        task["dependencies"] = json!(declared);
                    }
                }
            }
            // A suspend template reads nothing; only containers are passed upstream outputs.
            let parameters = if step.kind == APPROVAL_KIND { Vec::new() } else { task_arguments(index, tasks, graph) };
            if !parameters.is_empty() {
                task["arguments"] = json!({ "parameters": parameters });
            }
            task
        })
        .collect();
    let mut dag = json!({ "tasks": dag_tasks });
    if any_condition {
        // By default Argo schedules nothing new once a task fails, which would starve the
        // `failure()` and `always()` steps that exist precisely for that case.
        dag["failFast"] = json!(false);
    }
    json!({ "name": ENTRYPOINT, "dag": dag })
}

/// The arguments a task passes its template: outputs and digests of settled upstream steps.
fn task_arguments(index: usize, tasks: &TaskNames, graph: &Graph) -> Vec<Value> {
    let mut parameters = Vec::new();
    for source in &graph.inputs[index] {
        let task = tasks.task(*source);
        parameters.push(json!({
            "name": format!("outputs-{task}"),
            "value": format!("{{{{tasks.{task}.outputs.parameters.outputs}}}}"),
        }));
    }
    for source in &graph.digests[index] {
        let task = tasks.task(*source);
        parameters.push(json!({
            "name": format!("digest-{task}"),
            "value": format!("{{{{tasks.{task}.outputs.parameters.digest}}}}"),
        }));
    }
    parameters
}

fn step_template(
    plan: &Plan,
    index: usize,
    step: &PlannedStep,
    tasks: &TaskNames,
    graph: &Graph,
    options: &ArgoOptions,
) -> Value {
    let name = tasks.template(index);
    if step.kind == APPROVAL_KIND {
        return json!({ "name": name, "suspend": {} });
    }
    let mut args = vec![
        "step".to_string(),
        step.kind.clone(),
        "--plan".to_string(),
        PLAN_PATH.to_string(),
        "--step".to_string(),
        step.name.clone(),
        "--outputs".to_string(),
        OUTPUTS_DIR.to_string(),
        "--run-id".to_string(),
        "{{workflow.uid}}".to_string(),
        // Waits (for CI to push the image, say) are bounded from the run's start, which must
        // not move from one attempt to the next.
        "--run-created-at".to_string(),
        "{{workflow.creationTimestamp}}".to_string(),
        "--retries".to_string(),
        "{{retries}}".to_string(),
    ];
    let mut input_parameters = Vec::new();
    for source in &graph.inputs[index] {
        let task = tasks.task(*source);
        args.push("--input".to_string());
        args.push(format!("{}={{{{inputs.parameters.outputs-{task}}}}}", plan.steps[*source].name));
        input_parameters.push(json!({ "name": format!("outputs-{task}") }));
    }
    for source in &graph.digests[index] {
        let task = tasks.task(*source);
        args.push("--digest".to_string());
        args.push(format!("{{{{inputs.parameters.digest-{task}}}}}"));
        input_parameters.push(json!({ "name": format!("digest-{task}") }));
    }

    let mut inputs = json!({
        "artifacts": [{
            "name": "plan",
            "path": PLAN_PATH,
            "raw": { "data": "{{workflow.parameters.plan}}" },
        }],
    });
    if !input_parameters.is_empty() {
        inputs["parameters"] = json!(input_parameters);
    }

    let attempts = step.max_attempts.unwrap_or(options.attempts).max(1);
    let backoff = step.backoff_ms.map(Duration::from_millis).unwrap_or(options.backoff);
    let timeout = step.timeout_ms.map(Duration::from_millis).unwrap_or(options.step_timeout);
    // Argo counts every retry alike, so the limit covers both the transient retries the step
    // allows and a waiting step's polls for as long as the plan lets it wait for the artifact
    // (about one poll per backoff cap). The step enforces its own deadline and exits 1 when
    // it passes, which ends the retries earlier.
    let polls = plan.artifact_wait_ms.div_ceil(MAX_BACKOFF.as_millis() as u64);
    let limit = u64::from(attempts - 1) + polls;

    json!({
        "name": name,
        "inputs": inputs,
        "container": {
            "image": options.image,
            "command": ["gantry"],
            "args": args,
            "env": [{ "name": "GANTRY_DATA_DIR", "value": options.data_dir }],
            "volumeMounts": [{ "name": DATA_VOLUME, "mountPath": options.data_dir }],
        },
        "outputs": {
            "parameters": [
                {
                    "name": "outputs",
                    "valueFrom": { "path": format!("{OUTPUTS_DIR}/{OUTPUTS_FILE}") },
                },
                {
                    "name": "digest",
                    "valueFrom": { "path": format!("{OUTPUTS_DIR}/{DIGEST_FILE}"), "default": "" },
                },
            ],
        },
        // Argo's int-or-string fields are strings in its published schema; Argo reads both.
        "retryStrategy": {
            "limit": limit.to_string(),
            "retryPolicy": "Always",
            "expression": format!(
                "asInt(lastRetry.exitCode) == {EXIT_WAITING} || asInt(lastRetry.exitCode) == {EXIT_TRANSIENT} || lastRetry.status == \"Error\""
            ),
            "backoff": {
                "duration": go_duration(backoff),
                "factor": "2",
                "cap": go_duration(MAX_BACKOFF),
            },
        },
        "activeDeadlineSeconds": timeout.as_millis().div_ceil(1000).max(1).to_string(),
    })
}

/// A Go `time.Duration` string, which is what Argo parses.
fn go_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) { format!("{}s", millis / 1000) } else { format!("{millis}ms") }
}

/// The `depends` of a task with a condition: the condition, and every need it does not
/// mention having finished, since gantry reads a condition only once all needs are done.
fn task_depends(condition: &Condition, needs: &[&str], tasks: &TaskNames) -> Option<String> {
    let mut mentioned = HashSet::new();
    mentions(condition, needs, tasks, &mut mentioned);
    let mut terms = Vec::new();
    let expression = depends(condition, needs, tasks);
    if !expression.is_empty() {
        terms.push(expression);
    }
    terms.extend(needs.iter().filter(|need| !mentioned.contains(**need)).map(|need| finished(need)));
    (!terms.is_empty()).then(|| terms.join(" && "))
}

/// Task names an expression from [`depends`] refers to.
fn mentions<'a>(condition: &'a Condition, needs: &[&'a str], tasks: &'a TaskNames, into: &mut HashSet<&'a str>) {
    match condition {
        Condition::Success | Condition::Failure | Condition::Always => {
            into.extend(needs.iter().copied());
        }
        Condition::Step { name, .. } => {
            into.insert(tasks.by_step_name(name).unwrap_or(name.as_str()));
        }
        Condition::Not(inner) => mentions(inner, needs, tasks, into),
        Condition::And(a, b) | Condition::Or(a, b) => {
            mentions(a, needs, tasks, into);
            mentions(b, needs, tasks, into);
        }
    }
}

/// The task ended, whichever way.
fn finished(task: &str) -> String {
    format!("({task}.Succeeded || {task}.Skipped || {task}.Failed || {task}.Errored || {task}.Omitted)")
}

/// An Argo `depends` expression equivalent to a gantry condition over a step's needs.
fn depends(condition: &Condition, needs: &[&str], tasks: &TaskNames) -> String {
    match condition {
        // Plain `A` means "A succeeded or was skipped" in Argo, as `success()` does here.
        Condition::Success => all_of(needs.iter().map(|n| n.to_string())),
        Condition::Failure => any_of(needs.iter().map(|n| format!("{n}.Failed || {n}.Errored"))),
        Condition::Always => all_of(needs.iter().map(|n| finished(n))),
        Condition::Step { name, outcome } => {
            // Conditions are checked against the pipeline; an unknown name cannot reach here
            // from a validated config, and stays visible in the expression if it does.
            let task = tasks.by_step_name(name).unwrap_or(name.as_str());
            match outcome {
                Outcome::Succeeded => format!("{task}.Succeeded"),
                Outcome::Failed => format!("({task}.Failed || {task}.Errored)"),
                // Argo has no operator skip; a task skipped by `when` is the nearest thing.
                Outcome::Skipped => format!("{task}.Skipped"),
                // Not run because its condition was false: Argo calls that omitted.
                Outcome::Cancelled => format!("{task}.Omitted"),
            }
        }
        Condition::Not(inner) => format!("!({})", depends(inner, needs, tasks)),
        Condition::And(a, b) => format!("({} && {})", depends(a, needs, tasks), depends(b, needs, tasks)),
        Condition::Or(a, b) => format!("({} || {})", depends(a, needs, tasks), depends(b, needs, tasks)),
    }
}

fn all_of(terms: impl Iterator<Item = String>) -> String {
    let terms: Vec<String> = terms.collect();
    match terms.len() {
        // No needs: the condition holds, and a task with an always-true dependency runs first.
        0 => String::new(),
        1 => terms.into_iter().collect(),
        _ => format!("({})", terms.join(" && ")),
    }
}

fn any_of(terms: impl Iterator<Item = String>) -> String {
    let terms: Vec<String> = terms.collect();
    match terms.len() {
        0 => String::new(),
        _ => format!("({})", terms.join(" || ")),
    }
}

/// Argo names of the plan's steps: tasks keep the step's name where Argo allows it.
struct TaskNames {
    tasks: Vec<String>,
    templates: Vec<String>,
    by_step: HashMap<String, usize>,
}

impl TaskNames {
    fn new(steps: &[PlannedStep]) -> Self {
        let mut used = HashSet::new();
        let mut tasks = Vec::with_capacity(steps.len());
        for (index, step) in steps.iter().enumerate() {
            // Argo task names are letters, digits and `-`, starting with a letter or digit.
            let mut base: String =
                step.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
            base = base.trim_matches('-').to_string();
            base.truncate(MAX_LABEL_LEN - 4);
            if base.is_empty() {
                base = format!("step{index}");
            }
            let mut name = base.clone();
            let mut suffix = 2;
            while !used.insert(name.to_ascii_lowercase()) {
                name = format!("{base}-{suffix}");
                suffix += 1;
            }
            tasks.push(name);
        }
        let templates = tasks.iter().map(|t| format!("step-{t}")).collect();
        let by_step = steps.iter().enumerate().map(|(index, step)| (step.name.clone(), index)).collect();
        Self { tasks, templates, by_step }
    }

    fn task(&self, index: usize) -> &str {
        &self.tasks[index]
    }

    fn template(&self, index: usize) -> &str {
        &self.templates[index]
    }

    fn by_step_name(&self, name: &str) -> Option<&str> {
        self.by_step.get(name).map(|index| self.task(*index))
    }
}

/// Which upstream steps feed each step.
struct Graph {
    /// Container steps whose outputs a step receives: certain to have succeeded.
    inputs: Vec<BTreeSet<usize>>,
    /// The nearest such steps, each of which knows the run's digest if anyone does.
    digests: Vec<BTreeSet<usize>>,
}

impl Graph {
    fn new(plan: &Plan, tasks: &TaskNames) -> Self {
        let steps = &plan.steps;
        let index_of = |name: &str| tasks.by_step.get(name).copied();
        let conditions: Vec<Option<Condition>> =
            steps.iter().map(|s| s.condition.as_deref().and_then(|c| Condition::parse(c).ok())).collect();
        let needs: Vec<Vec<usize>> = steps
            .iter()
            .enumerate()
            .map(|(index, step)| {
                let mut needs: Vec<usize> = step.needs.iter().filter_map(|n| index_of(n)).collect();
                // A step a condition names must have finished before the condition is read.
                if let Some(condition) = &conditions[index] {
                    for name in condition.step_names() {
                        if let Some(other) = index_of(name)
                            && !needs.contains(&other)
                            && other != index
                        {
                            needs.push(other);
                        }
                    }
                }
                needs.retain(|n| *n != index);
                needs
            })
            .collect();

        // Walking in topological order, every need's sets are final when read. A
        // conditional step may run after a need failed or never ran, so it passes nothing
        // on from further up; its own outputs exist whenever it succeeded.
        let container = |index: usize| steps[index].kind != APPROVAL_KIND;
        let mut inputs: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); steps.len()];
        let mut digests: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); steps.len()];
        let order = topological(&needs);
        for index in order {
            let unconditional = match &conditions[index] {
                None => true,
                Some(condition) => *condition == Condition::Success,
            };
            if !unconditional {
                continue;
            }
            let mut own_inputs = BTreeSet::new();
            let mut own_digests = BTreeSet::new();
            for need in &needs[index] {
                own_inputs.extend(inputs[*need].iter().copied());
                if container(*need) {
                    own_inputs.insert(*need);
                    own_digests.insert(*need);
                } else {
                    own_digests.extend(digests[*need].iter().copied());
                }
            }
            inputs[index] = own_inputs;
            digests[index] = own_digests;
        }
        Self { inputs, digests }
    }
}

/// Indices in an order where each comes after its needs (plans are usually in that order
/// already; this does not rely on it). Steps on a cycle, which a validated config cannot
/// have, come last in their given order.
fn topological(needs: &[Vec<usize>]) -> Vec<usize> {
    let mut order = Vec::with_capacity(needs.len());
    let mut placed = vec![false; needs.len()];
    loop {
        let before = order.len();
        for index in 0..needs.len() {
            if !placed[index] && needs[index].iter().all(|n| placed[*n]) {
                placed[index] = true;
                order.push(index);
            }
        }
        if order.len() == before {
            break;
        }
    }
    order.extend((0..needs.len()).filter(|i| !placed[*i]));
    order
}

/// `gantry-<app>-<env>-`, lowercase and short enough for Argo's random suffix.
fn generate_name(plan: &Plan) -> String {
    let mut name = format!("gantry-{}-{}", slug(&plan.app), slug(&plan.environment));
    name.truncate(MAX_GENERATE_NAME_LEN - 1);
    let name = name.trim_end_matches('-');
    format!("{name}-")
}

/// Lowercase letters, digits and single `-`: safe in names of every Kubernetes kind.
fn slug(text: &str) -> String {
    let mut slug = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() { "x".to_string() } else { slug.to_string() }
}

/// A Kubernetes label value: at most 63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
        .take(MAX_LABEL_LEN)
        .collect();
    mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_keep_whole_seconds_short() {
        assert_eq!(go_duration(Duration::from_secs(60)), "60s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn slugs_are_safe_kubernetes_names() {
        assert_eq!(slug("Sample_App"), "sample-app");
        assert_eq!(slug("--prod/eu--"), "prod-eu");
        assert_eq!(slug("€"), "x");
    }

    #[test]
    fn label_values_are_trimmed_to_alphanumeric_ends() {
        assert_eq!(label_value("_app.v1_"), "app.v1");
        assert_eq!(label_value(&"a".repeat(80)).len(), 63);
        assert_eq!(label_value("a/b"), "a-b");
    }

    fn planned(name: &str, needs: &[&str]) -> PlannedStep {
        serde_json::from_value(json!({
            "name": name,
            "kind": "noop",
            "needs": needs,
            "with": null,
        }))
        .unwrap()
    }

    #[test]
    fn task_names_are_unique_and_argo_safe() {
        let names = TaskNames::new(&[planned("open_pr", &[]), planned("open-pr", &[]), planned("__", &[])]);
        assert_eq!(names.task(0), "open-pr");
        assert_eq!(names.task(1), "open-pr-2");
        assert_eq!(names.task(2), "step2");
        assert_eq!(names.template(1), "step-open-pr-2");
        assert_eq!(names.by_step_name("open_pr"), Some("open-pr"));
    }

    #[test]
    fn topological_order_puts_needs_first_whatever_the_input_order() {
        let order = topological(&[vec![2], vec![], vec![1]]);
        assert_eq!(order, [1, 2, 0]);
        // A cycle cannot come from a validated config; it still yields every index once.
        let order = topological(&[vec![1], vec![0]]);
        assert_eq!(order, [0, 1]);
    }

    #[test]
    fn conditions_become_depends_expressions() {
        let names = TaskNames::new(&[planned("a", &[]), planned("b-1", &[])]);
        let needs = ["a", "b-1"];
        let render = |text: &str| depends(&Condition::parse(text).unwrap(), &needs, &names);
        assert_eq!(render("success()"), "(a && b-1)");
        assert_eq!(render("failure()"), "(a.Failed || a.Errored || b-1.Failed || b-1.Errored)");
        assert_eq!(render("steps.a.succeeded && !steps.b-1.cancelled"), "(a.Succeeded && !(b-1.Omitted))");
        assert!(render("always()").contains("a.Omitted"));
    }

    #[test]
    fn needs_a_condition_does_not_mention_must_still_finish() {
        let names = TaskNames::new(&[planned("a", &[]), planned("b", &[]), planned("c", &[])]);
        let condition = Condition::parse("steps.a.failed").unwrap();
        assert_eq!(
            task_depends(&condition, &["a", "b"], &names).unwrap(),
            "(a.Failed || a.Errored) && (b.Succeeded || b.Skipped || b.Failed || b.Errored || b.Omitted)"
        );
        // always() of a step without needs places no constraint at all.
        let always = Condition::parse("always()").unwrap();
        assert_eq!(task_depends(&always, &[], &names), None);
    }
}
