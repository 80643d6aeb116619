//! `gantry plan`: what a webhook event would start, printed instead of started.
//!
//! The event is read from a file (the body a forge would POST), parsed by the same code as
//! `/hooks/github` and `/hooks/gitlab`, and matched against the configuration. Nothing is
//! stored, pushed or tagged. Three output formats:
//!
//! - `json` (default): `{"event": {…}, "triggers": [{…}, …], "runs": [{…}, …]}`. `event` is
//!   the normalized event (`forge`, `repo`, `kind`, `ref`, `sha`, `deleted`, `merged`, `actor`,
//!   `changed_paths`, …) plus the `event_type` it was read as; an event gantry ignores has
//!   `kind: "other"` and says why in `ignored`. `triggers` holds every trigger of the apps of
//!   the event's repository with its verdict: `matched`, and the `reason` it did not match
//!   (a ref glob, forge, actor or path filter) or the `notes` of what a match assumed. Each run
//!   is a whole plan (`app`, `environment`, `pipeline`, `steps` with their `name`, `kind` and
//!   `needs`, `notes`, and `action: remove-preview` for a deleted branch's preview, …), which
//!   `gantry step --plan` reads back.
//! - `dot`: one Graphviz digraph, a cluster per run (`… | dot -Tsvg > plan.svg`).
//! - `argo`: one Argo Workflows `Workflow` per run, as a multi-document YAML stream
//!   (`… | kubectl create -f -` or `argo submit -`); nothing at all when no run starts.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use gantry_webhooks::{Parsed, github, gitlab};
use gantry_workflows::argo::{self, ArgoOptions};
use gantry_workflows::{Config, Plan};
use serde_json::{Value, json};

/// Arguments of `gantry plan`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Config directory.
    #[arg(long, env = "GANTRY_CONFIG", default_value = "environments")]
    pub config: PathBuf,
    /// The webhook body, as the forge sends it (`-` reads standard input).
    #[arg(long, value_name = "FILE")]
    pub event: PathBuf,
    /// Forge that sent the event.
    #[arg(long, value_enum)]
    pub forge: ForgeArg,
    /// The `X-GitHub-Event` / `X-Gitlab-Event` header value; guessed from the body when absent.
    #[arg(long, value_name = "NAME")]
    pub event_type: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// `--format argo`: image of the step containers.
    #[arg(long, env = "GANTRY_IMAGE", default_value = argo::DEFAULT_IMAGE)]
    pub image: String,
    /// `--format argo`: namespace of the workflows.
    #[arg(long)]
    pub namespace: Option<String>,
    /// `--format argo`: service account of the step pods.
    #[arg(long)]
    pub service_account: Option<String>,
}

/// Forges `gantry plan` reads events of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForgeArg {
    /// GitHub (`X-GitHub-Event`).
    Github,
    /// GitLab (`X-Gitlab-Event`).
    Gitlab,
}

/// Output formats of `gantry plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The event and the runs it starts, as JSON.
    Json,
    /// The runs' step DAGs as one Graphviz digraph.
    Dot,
    /// One Argo Workflows `Workflow` per run, as multi-document YAML.
    Argo,
}

/// Runs `gantry plan` against an already loaded config, writing the result to `out`.
///
/// An event that cannot be read or parsed is an error (the binary exits 2); an event that
/// starts nothing is not.
pub fn run(args: &PlanArgs, config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    let body = read_event(&args.event)?;
    let event_type = match &args.event_type {
        Some(event_type) => event_type.clone(),
        None => infer_event_type(args.forge, &body)?,
    };
    let parsed = match args.forge {
        ForgeArg::Github => github::parse(&event_type, &body),
        ForgeArg::Gitlab => gitlab::parse(&event_type, &body),
    }
    .with_context(|| format!("parse the event as a {} `{event_type}` delivery", args.forge.name()))?;

    let (event, triggers, plans) = match parsed {
        Parsed::Event(event) => {
            let plans = gantry_workflows::plan(config, &event).context("plan the runs the event starts")?;
            let triggers = gantry_workflows::explain(config, &event);
            let mut value = serde_json::to_value(&event).context("describe the event")?;
            value["event_type"] = json!(event_type);
            (value, triggers, plans)
        }
        Parsed::Ignored { event_type, reason } => {
            let value = json!({
                "forge": args.forge.name(),
                "event_type": event_type,
                "kind": "other",
                "repo": null,
                "ref": null,
                "sha": null,
                "deleted": false,
                "merged": false,
                "actor": null,
                "ignored": reason,
            });
            (value, Vec::new(), Vec::new())
        }
    };

    let text = match args.format {
        Format::Json => {
            let document = json!({ "event": event, "triggers": triggers, "runs": plans });
            let mut text = serde_json::to_string_pretty(&document).context("render the plan")?;
            text.push('\n');
            text
        }
        Format::Dot => gantry_workflows::dot::render(&plans),
        Format::Argo => {
            let options = ArgoOptions {
                image: args.image.clone(),
                namespace: args.namespace.clone(),
                service_account: args.service_account.clone(),
                ..ArgoOptions::default()
            };
            argo_yaml(&plans, &options)?
        }
    };
    out.write_all(text.as_bytes()).context("write the plan")?;
    Ok(())
}

impl ForgeArg {
    fn name(self) -> &'static str {
        match self {
            ForgeArg::Github => "github",
            ForgeArg::Gitlab => "gitlab",
        }
    }
}

fn read_event(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::stdin().read_to_end(&mut body).context("read the event from standard input")?;
        return Ok(body);
    }
    std::fs::read(path).with_context(|| format!("read the event {}", path.display()))
}

/// The event type header a forge would have sent with `body`, judged by the fields only that
/// event's payload has.
fn infer_event_type(forge: ForgeArg, body: &[u8]) -> anyhow::Result<String> {
    let value: Value =
        serde_json::from_slice(body).context("read the event: it is not JSON (pass --event-type to say what it is)")?;
    let Some(root) = value.as_object() else {
        bail!("read the event: expected a JSON object at the top level");
    };
    let has = |key: &str| root.get(key).is_some_and(|v| !v.is_null());
    let inferred = match forge {
        ForgeArg::Github => {
            // Most specific first: review payloads carry `pull_request` too, and `create` and
            // `delete` carry `ref` like a push does.
            if has("zen") && has("hook_id") {
                Some("ping")
            } else if has("pull_request") && has("review") {
                Some("pull_request_review")
            } else if has("pull_request") && has("comment") {
                Some("pull_request_review_comment")
            } else if has("pull_request") {
                Some("pull_request")
            } else if has("workflow_run") {
                Some("workflow_run")
            } else if has("registry_package") {
                Some("registry_package")
            } else if has("package") {
                Some("package")
            } else if has("ref") && has("after") && has("before") {
                Some("push")
            } else if has("ref") && has("ref_type") && has("master_branch") {
                Some("create")
            } else if has("ref") && has("ref_type") {
                Some("delete")
            } else if has("release") {
                Some("release")
            } else {
                None
            }
        }
        ForgeArg::Gitlab => match root.get("object_kind").and_then(Value::as_str) {
            Some("push") => Some("Push Hook"),
            Some("tag_push") => Some("Tag Push Hook"),
            Some("merge_request") => Some("Merge Request Hook"),
            Some("pipeline") => Some("Pipeline Hook"),
            Some("build") => Some("Job Hook"),
            Some("deployment") => Some("Deployment Hook"),
            Some("release") => Some("Release Hook"),
            Some("note") => Some("Note Hook"),
            Some("issue") => Some("Issue Hook"),
            Some("wiki_page") => Some("Wiki Page Hook"),
            _ => None,
        },
    };
    inferred.map(str::to_string).with_context(|| {
        format!(
            "tell the {} event type from the payload: pass --event-type (the {} header value)",
            forge.name(),
            match forge {
                ForgeArg::Github => "X-GitHub-Event",
                ForgeArg::Gitlab => "X-Gitlab-Event",
            }
        )
    })
}

/// One YAML document per run, keys in the order Kubernetes manifests are usually written.
fn argo_yaml(plans: &[Plan], options: &ArgoOptions) -> anyhow::Result<String> {
    let mut text = String::new();
    for plan in plans {
        let workflow = ordered(&argo::render(plan, options));
        text.push_str("---\n");
        text.push_str(&yaml_serde::to_string(&workflow).context("render the workflow as YAML")?);
    }
    Ok(text)
}

/// Keys that read best first; the rest follow alphabetically.
const LEADING_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "generateName",
    "namespace",
    "entrypoint",
    "template",
    "dependencies",
    "depends",
    "inputs",
    "container",
    "image",
    "command",
    "args",
];

/// A YAML value with `LEADING_KEYS` first in every mapping (JSON objects here are sorted).
fn ordered(value: &Value) -> yaml_serde::Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|key| {
                (LEADING_KEYS.iter().position(|leading| leading == key).unwrap_or(LEADING_KEYS.len()), key.as_str())
            });
            let mut mapping = yaml_serde::Mapping::new();
            for key in keys {
                mapping.insert(yaml_serde::Value::String(key.clone()), ordered(&map[key]));
            }
            yaml_serde::Value::Mapping(mapping)
        }
        Value::Array(items) => yaml_serde::Value::Sequence(items.iter().map(ordered).collect()),
        Value::String(text) => yaml_serde::Value::String(text.clone()),
        Value::Bool(flag) => yaml_serde::Value::Bool(*flag),
        Value::Number(number) => {
            if let Some(n) = number.as_u64() {
                yaml_serde::Value::Number(n.into())
            } else if let Some(n) = number.as_i64() {
                yaml_serde::Value::Number(n.into())
            } else {
                yaml_serde::Value::Number(number.as_f64().unwrap_or(0.0).into())
            }
        }
        Value::Null => yaml_serde::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(forge: ForgeArg, body: Value) -> Option<String> {
        infer_event_type(forge, body.to_string().as_bytes()).ok()
    }

    #[test]
    fn github_event_types_follow_from_their_fields() {
        let github = |body| infer(ForgeArg::Github, body);
        assert_eq!(github(json!({"ref": "refs/heads/main", "before": "a", "after": "b"})).as_deref(), Some("push"));
        assert_eq!(github(json!({"zen": "Keep it logically awesome.", "hook_id": 1})).as_deref(), Some("ping"));
        assert_eq!(github(json!({"action": "closed", "pull_request": {}})).as_deref(), Some("pull_request"));
        assert_eq!(
            github(json!({"action": "submitted", "pull_request": {}, "review": {}})).as_deref(),
            Some("pull_request_review")
        );
        assert_eq!(github(json!({"registry_package": {}})).as_deref(), Some("registry_package"));
        assert_eq!(github(json!({"package": {}})).as_deref(), Some("package"));
        assert_eq!(github(json!({"workflow_run": {}, "workflow": {}})).as_deref(), Some("workflow_run"));
        assert_eq!(github(json!({"ref": "v1", "ref_type": "tag", "master_branch": "main"})).as_deref(), Some("create"));
        assert_eq!(github(json!({"ref": "v1", "ref_type": "tag"})).as_deref(), Some("delete"));
        assert_eq!(github(json!({"issue": {}})), None);
    }

    #[test]
    fn gitlab_event_types_follow_from_object_kind() {
        let gitlab = |body| infer(ForgeArg::Gitlab, body);
        assert_eq!(gitlab(json!({"object_kind": "push"})).as_deref(), Some("Push Hook"));
        assert_eq!(gitlab(json!({"object_kind": "tag_push"})).as_deref(), Some("Tag Push Hook"));
        assert_eq!(gitlab(json!({"object_kind": "merge_request"})).as_deref(), Some("Merge Request Hook"));
        assert_eq!(gitlab(json!({"object_kind": "pipeline"})).as_deref(), Some("Pipeline Hook"));
        assert_eq!(gitlab(json!({"object_kind": "something_new"})), None);
        assert_eq!(gitlab(json!({})), None);
    }

    #[test]
    fn non_json_events_say_so() {
        let error = infer_event_type(ForgeArg::Github, b"ref=main").unwrap_err();
        assert!(format!("{error:#}").contains("not JSON"), "{error:#}");
    }

    #[test]
    fn yaml_keys_lead_with_kind_and_name() {
        let value = json!({"spec": {"b": 1, "a": 2, "name": "x"}, "kind": "Workflow", "apiVersion": "v1"});
        let text = yaml_serde::to_string(&ordered(&value)).unwrap();
        assert_eq!(text, "apiVersion: v1\nkind: Workflow\nspec:\n  name: x\n  a: 2\n  b: 1\n");
    }
}
