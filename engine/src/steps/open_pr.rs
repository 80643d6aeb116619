//! `open-pr`: pushes the promotion branch and opens (or finds) its change request on the
//! environment's forge (`config_repo.forge`: the local forge, a GitHub pull request or a GitLab
//! merge request).
//!
//! Idempotent by construction: the branch name is deterministic, a push of a branch already
//! at the commit (or at a commit with the same tree) changes nothing, and the forge returns
//! the request already open for the branch instead of opening a second one.
//!
//! The request's body (`templates/pr_body.hbs`) tells a reviewer what is promoted and why it
//! may be: app, environment, version, digest, a link to the source commit, the verdicts of the
//! run's gate steps, its signatures and attestations, the images edited, the diff, and a link
//! to the run.
//!
//! Settings (`with:`), all optional:
//!
//! | key | meaning |
//! |---|---|
//! | `labels` | labels to put on the request |
//! | `reviewers` | reviewers to request (`user`, or `org/team` on GitHub) |
//! | `draft` | open it as a draft |
//! | `auto_merge` | let the forge merge it once approved and green: `merge`, `squash` or `rebase` |
//! | `source_commit_url` | link to the source commit, with `{repo}` and `{sha}`; by default the source forge's (github.com, gitlab.com) |

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Step, StepContext, StepError, StepOutcome, blocking, chain, classify, typed_settings};
use crate::forge::{ChangeRequestDraft, MergeMethod, ReviewOptions};
use crate::git::PushOutcome;
use gantry_workflows::Plan;

/// See the module documentation.
pub struct OpenPr;

/// Settings of `open-pr`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenPrSettings {
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    reviewers: Vec<String>,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    auto_merge: Option<MergeMethod>,
    #[serde(default)]
    source_commit_url: Option<String>,
}

/// The longest diff put into a request body; forges cap bodies (GitHub at 65,536 characters).
const DIFF_LIMIT: usize = 40_000;

fn check(config: &Value) -> Vec<(String, String)> {
    let settings: OpenPrSettings = match typed_settings(config) {
        Ok(settings) => settings,
        Err(problem) => return vec![problem],
    };
    let mut problems = Vec::new();
    for (key, values) in [("labels", &settings.labels), ("reviewers", &settings.reviewers)] {
        if values.iter().any(|value| value.trim().is_empty()) {
            problems.push((key.to_owned(), format!("{key} must not hold an empty name")));
        }
    }
    if let Some(template) = &settings.source_commit_url {
        let unknown = placeholders(template).into_iter().find(|name| !matches!(name.as_str(), "repo" | "sha"));
        if let Some(name) = unknown {
            problems.push((
                "source_commit_url".to_owned(),
                format!("unknown placeholder {{{name}}} (use {{repo}} and {{sha}})"),
            ));
        }
    }
    problems
}

/// The `{name}` placeholders of a template.
fn placeholders(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(length) = rest[start..].find('}') else { break };
        names.push(rest[start + 1..start + length].to_owned());
        rest = &rest[start + length + 1..];
    }
    names
}

#[async_trait]
impl Step for OpenPr {
    fn kind(&self) -> &'static str {
        "open-pr"
    }

    fn summary(&self) -> &'static str {
        "push the promotion branch and open its change request on the environment's forge"
    }

    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        check(config)
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings: OpenPrSettings = typed_settings(&ctx.config).map_err(|(path, message)| {
            StepError::terminal(format!("step {} has invalid settings: {path}: {message}", ctx.step))
        })?;
        let change = ctx
            .outputs
            .values()
            .find(|o| o.get("branch").is_some() && o.get("changed").is_some())
            .cloned()
            .ok_or_else(|| {
                StepError::terminal(format!(
                    "step {} needs an update-config step before it (add it to `needs`)",
                    ctx.step
                ))
            })?;
        let text = |key: &str| change.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let branch = text("branch");
        if change.get("changed") == Some(&json!(false)) {
            return Ok(StepOutcome::Succeeded {
                outputs: json!({ "opened": false, "reason": "the environment already runs this tag" }),
                pin_digest: None,
            });
        }
        let plan = &ctx.plan;
        // The forge first: a missing token fails the step before anything is pushed.
        let handle = ctx
            .capabilities
            .forge_for(&plan.target.repo_url, plan.target.forge)
            .map_err(|e| classify(e.is_transient(), chain(&e)))?;
        let (commit, repo_url, base) = (text("commit"), plan.target.repo_url.clone(), text("base"));
        let capabilities = ctx.capabilities.clone();
        let (push_branch, push_commit) = (branch.clone(), commit.clone());
        let pushed = blocking(move || {
            let repo = capabilities.env_repo(&repo_url).map_err(|e| classify(e.is_transient(), chain(&e)))?;
            repo.push_branch(&push_commit, &push_branch).map_err(|e| classify(e.is_transient(), chain(&e)))
        })
        .await?;
        ctx.failpoint("after-side-effect");
        let (push, head) = match pushed {
            PushOutcome::Created { commit } => ("created", commit),
            PushOutcome::Updated { commit, .. } => ("updated", commit),
            PushOutcome::Unchanged { commit } => ("unchanged", commit),
        };
        let data = body_data(&BodyInputs {
            plan,
            run_id: &ctx.run_id,
            digest: ctx.digest.as_deref(),
            outputs: &ctx.outputs,
            change: &change,
            run_url: ctx.capabilities.run_url(&ctx.run_id),
            source_commit_url: settings.source_commit_url.as_deref(),
        });
        let templates = ctx.capabilities.templates();
        let render =
            |name: &str| templates.render(name, &data).map_err(|e| StepError::terminal(format!("render {name}: {e}")));
        let draft = ChangeRequestDraft {
            repo: handle.repo.clone(),
            branch: branch.clone(),
            base,
            head_commit: head.clone(),
            title: render("pr_title")?.trim().to_string(),
            body: render("pr_body")?,
            run_id: ctx.run_id.clone(),
            review: ReviewOptions {
                labels: settings.labels,
                reviewers: settings.reviewers,
                draft: settings.draft,
                auto_merge: settings.auto_merge,
            },
        };
        let forge = &handle.forge;
        let (request, opened) = forge.open_change_request(&draft).await.map_err(|e| match e.is_transient() {
            true => StepError::Transient { message: chain(&e), retry_after: e.retry_after() },
            false => StepError::terminal(chain(&e)),
        })?;
        Ok(StepOutcome::Succeeded {
            outputs: json!({
                "forge": forge.name(),
                "repo": handle.repo,
                "branch": branch,
                "commit": head,
                "push": push,
                "change_request": request.id,
                "opened": opened,
                "title": request.title,
            }),
            pin_digest: None,
        })
    }
}

/// What the change request's text is made from.
struct BodyInputs<'a> {
    plan: &'a Plan,
    run_id: &'a str,
    digest: Option<&'a str>,
    /// Outputs of the run's succeeded steps, by step name.
    outputs: &'a Map<String, Value>,
    /// The outputs of the update-config step that made the change.
    change: &'a Value,
    run_url: Option<String>,
    source_commit_url: Option<&'a str>,
}

/// The data `pr_title.hbs` and `pr_body.hbs` render. Every key is always present (strict
/// templates): absent facts are `null` or empty lists.
fn body_data(inputs: &BodyInputs<'_>) -> Value {
    let plan = inputs.plan;
    let sha = plan.event.sha.clone();
    let source_url = sha.as_deref().map(|sha| source_commit_link(plan, sha, inputs.source_commit_url));
    let (diff, diff_truncated) = bounded_diff(inputs.change.get("diff").and_then(Value::as_str).unwrap_or_default());
    json!({
        "app": plan.app,
        "environment": plan.target.environment,
        "version": plan.version,
        "tag": plan.target.tag,
        "digest": inputs.digest,
        "image": format!("{}@{}", plan.artifact.repository, inputs.digest.unwrap_or_default()),
        "source_repo": plan.event.repo,
        "sha": sha,
        "sha7": sha.as_deref().map(|sha| &sha[..sha.len().min(7)]),
        "source_url": source_url,
        "trigger": plan.trigger,
        "run_id": inputs.run_id,
        "run_url": inputs.run_url,
        "edits": edits(inputs.change),
        "gates": gates(inputs.outputs),
        "gate_notes": gate_notes(inputs.outputs),
        "supply_chain": supply_chain(inputs.outputs),
        "diff": diff,
        "diff_truncated": diff_truncated,
    })
}

/// A link to the source commit: the configured template, else the source forge's public host.
fn source_commit_link(plan: &Plan, sha: &str, template: Option<&str>) -> String {
    let repo = &plan.event.repo;
    match template {
        Some(template) => template.replace("{repo}", repo).replace("{sha}", sha),
        None => match plan.event.forge {
            gantry_webhooks::Forge::Github => format!("https://github.com/{repo}/commit/{sha}"),
            gantry_webhooks::Forge::Gitlab => format!("https://gitlab.com/{repo}/-/commit/{sha}"),
        },
    }
}

/// The diff, cut at a line boundary when it is longer than a body can hold.
fn bounded_diff(diff: &str) -> (String, bool) {
    let diff = diff.trim_end();
    if diff.len() <= DIFF_LIMIT {
        return (diff.to_owned(), false);
    }
    let mut cut = DIFF_LIMIT;
    while !diff.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = diff[..cut].rfind('\n').unwrap_or(cut);
    (diff[..cut].to_owned(), true)
}

/// The images a multi-artifact change pinned, as update-config reports them (empty for a
/// single edit, which the summary table already shows).
fn edits(change: &Value) -> Vec<Value> {
    let Some(edits) = change.get("edits").and_then(Value::as_array) else { return Vec::new() };
    if edits.len() < 2 {
        return Vec::new();
    }
    edits
        .iter()
        .filter(|edit| edit.get("changed") != Some(&json!(false)))
        .map(|edit| {
            let field = |key: &str| edit.get(key).cloned().unwrap_or(Value::Null);
            json!({ "path": field("path"), "target": field("target"), "tag": field("tag"), "digest": field("digest") })
        })
        .collect()
}

/// One row per gate step: its decision, unsuppressed findings per severity, policy and
/// reports, read from the step's recorded verdict.
fn gates(outputs: &Map<String, Value>) -> Vec<Value> {
    outputs
        .iter()
        .filter(|(_, output)| output.get("decision").is_some() && output.get("verdict").is_some())
        .map(|(step, output)| {
            let verdict = &output["verdict"];
            let count =
                |severity: &str| verdict.pointer(&format!("/counts/{severity}")).and_then(Value::as_u64).unwrap_or(0);
            let reports: Vec<&str> = verdict
                .pointer("/evidence/reports")
                .and_then(Value::as_array)
                .map(|reports| reports.iter().filter_map(|report| report.get("name").and_then(Value::as_str)).collect())
                .unwrap_or_default();
            json!({
                "step": step,
                "decision": output["decision"],
                "critical": count("critical"),
                "high": count("high"),
                "medium": count("medium"),
                "low": count("low"),
                "policy": verdict.pointer("/evidence/policy").cloned().unwrap_or(Value::Null),
                "reports": reports.join(", "),
            })
        })
        .collect()
}

/// What the gates noted without denying (expired exceptions, say), each with its step.
fn gate_notes(outputs: &Map<String, Value>) -> Vec<String> {
    outputs
        .iter()
        .filter(|(_, output)| output.get("decision").is_some() && output.get("verdict").is_some())
        .flat_map(|(step, output)| {
            let notes = output.get("notes").and_then(Value::as_array).cloned().unwrap_or_default();
            notes.into_iter().filter_map(move |note| note.as_str().map(|note| format!("{step}: {note}")))
        })
        .collect()
}

/// Signatures and attestations the run pushed for the image, as their steps report them.
fn supply_chain(outputs: &Map<String, Value>) -> Vec<Value> {
    let mut entries = Vec::new();
    for (step, output) in outputs {
        let field = |key: &str| output.get(key).cloned().unwrap_or(Value::Null);
        if output.get("signature_tag").is_some() {
            entries.push(json!({
                "step": step,
                "kind": "signature",
                "what": "cosign signature",
                "tag": field("signature_tag"),
                "manifest": field("signature_manifest"),
                "key": field("key"),
            }));
        } else if output.get("attestation_tag").is_some() {
            entries.push(json!({
                "step": step,
                "kind": "attestation",
                "what": field("predicate_type"),
                "tag": field("attestation_tag"),
                "manifest": field("attestation_manifest"),
                "key": field("key"),
            }));
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::Templates;

    const DIGEST: &str = "sha256:7d3c9a51c0e4f8b2a6d1e9f03b5c7a8d2e4f6a1b3c5d7e9f0a2b4c6d8e0f1a3b";

    fn plan() -> Plan {
        serde_json::from_value(json!({
            "app": "checkout",
            "environment": "prod",
            "pipeline": "default",
            "trigger": "tag v1.4.2",
            "artifact": { "registry": "ghcr", "registry_url": "https://ghcr.io", "repository": "acme/checkout", "tag": "v1.4.2" },
            "artifact_wait_ms": 600000,
            "version": "1.4.2",
            "target": {
                "environment": "prod",
                "repo_url": "https://github.com/acme/env-prod.git",
                "branch": "main",
                "path": "apps/checkout/kustomization.yaml",
                "yaml_path": null,
                "image_name": "ghcr.io/acme/checkout",
                "tag": "prod-1.4.2",
                "forge": "github",
            },
            "steps": [],
            "event": {
                "forge": "github", "kind": "tag", "repo": "acme/checkout", "ref_kind": "tag", "ref": "v1.4.2",
                "before": null, "sha": "9f1c2e3d4b5a69788796a5b4c3d2e1f0a9b8c7d6", "deleted": false, "merged": false,
                "actor": "alice", "change_request": null, "timestamp": null, "changed_paths": [],
            },
        }))
        .unwrap()
    }

    /// The outputs a run with a scan, a gate, a signature, an attestation and a two-image
    /// update-config leaves behind, in the shapes those steps write.
    fn outputs() -> Map<String, Value> {
        let outputs = json!({
            "gate": {
                "decision": "allow",
                "reasons": [],
                "notes": ["exception CVE-2024-0001 expired on 2026-10-01"],
                "verdict": {
                    "decision": "allow",
                    "environment": "prod",
                    "counts": { "high": 2, "medium": 5, "low": 11 },
                    "evidence": {
                        "policy": "prod-baseline",
                        "reports": [
                            { "name": "trivy", "format": "trivy", "sha256": "ab", "findings": 18, "vex_statements": 0 },
                            { "name": "grype", "format": "grype", "sha256": "cd", "findings": 16, "vex_statements": 0 },
                        ],
                    },
                },
            },
            "sign": {
                "image": format!("ghcr.io/acme/checkout@{DIGEST}"),
                "digest": DIGEST,
                "signature_tag": "sha256-7d3c9a51c0e4f8b2a6d1e9f03b5c7a8d2e4f6a1b3c5d7e9f0a2b4c6d8e0f1a3b.sig",
                "signature_manifest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
                "key": "SHA256:k3yId",
                "result": "created",
            },
            "attest": {
                "image": format!("ghcr.io/acme/checkout@{DIGEST}"),
                "digest": DIGEST,
                "attestation_tag": "sha256-7d3c9a51c0e4f8b2a6d1e9f03b5c7a8d2e4f6a1b3c5d7e9f0a2b4c6d8e0f1a3b.att",
                "attestation_manifest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
                "predicate_type": "https://slsa.dev/provenance/v1",
                "key": "SHA256:k3yId",
                "result": "created",
            },
        });
        outputs.as_object().unwrap().clone()
    }

    fn change() -> Value {
        json!({
            "branch": "gantry/prod/checkout/7d3c9a51c0e4",
            "changed": true,
            "diff": "diff --git a/apps/checkout/kustomization.yaml b/apps/checkout/kustomization.yaml\n\
                     --- a/apps/checkout/kustomization.yaml\n+++ b/apps/checkout/kustomization.yaml\n\
                     @@ -6,3 +6,3 @@ images:\n   - name: ghcr.io/acme/checkout\n-    newTag: prod-1.4.1\n+    newTag: prod-1.4.2\n\
                     \x20\x20\x20- name: ghcr.io/acme/checkout-migrations\n-    newTag: prod-1.4.1\n+    newTag: prod-1.4.2\n",
            "edits": [
                { "path": "apps/checkout/kustomization.yaml", "target": "image ghcr.io/acme/checkout", "tag": "prod-1.4.2", "digest": null, "changed": true },
                { "path": "apps/checkout/kustomization.yaml", "target": "image ghcr.io/acme/checkout-migrations", "tag": "prod-1.4.2", "digest": null, "changed": true },
            ],
        })
    }

    #[test]
    fn the_body_tells_a_reviewer_everything() {
        let (plan, outputs, change) = (plan(), outputs(), change());
        let data = body_data(&BodyInputs {
            plan: &plan,
            run_id: "0190f0c2-6a7b-7c3d-9e1f-2a3b4c5d6e7f",
            digest: Some(DIGEST),
            outputs: &outputs,
            change: &change,
            run_url: Some("https://gantry.example.com/runs/0190f0c2-6a7b-7c3d-9e1f-2a3b4c5d6e7f".to_owned()),
            source_commit_url: None,
        });
        let templates = Templates::builtin();
        let title = templates.render("pr_title", &data).unwrap();
        let body = templates.render("pr_body", &data).unwrap();
        insta::assert_snapshot!("pr_body", format!("{}\n\n{body}", title.trim()));
        assert!(body.contains("https://github.com/acme/checkout/commit/9f1c2e3d4b5a69788796a5b4c3d2e1f0a9b8c7d6"));
    }

    #[test]
    fn a_bare_run_renders_without_the_optional_sections() {
        let (plan, change) = (plan(), json!({ "branch": "b", "changed": true, "diff": "-a\n+b\n" }));
        let data = body_data(&BodyInputs {
            plan: &plan,
            run_id: "r1",
            digest: Some(DIGEST),
            outputs: &Map::new(),
            change: &change,
            run_url: None,
            source_commit_url: Some("https://git.internal/{repo}/commit/{sha}"),
        });
        let body = Templates::builtin().render("pr_body", &data).unwrap();
        for absent in ["### Gates", "### Signatures", "### Images", "| Run |"] {
            assert!(!body.contains(absent), "{absent} in\n{body}");
        }
        assert!(body.contains("https://git.internal/acme/checkout/commit/9f1c2e3d"), "{body}");
    }

    #[test]
    fn long_diffs_are_cut_at_a_line() {
        let diff: String = (0..10_000).map(|line| format!("+line {line}\n")).collect();
        let (cut, truncated) = bounded_diff(&diff);
        assert!(truncated && cut.len() <= DIFF_LIMIT && cut.ends_with(|c: char| c.is_ascii_digit()));
        assert_eq!(bounded_diff("-a\n+b\n"), ("-a\n+b".to_owned(), false));
    }

    #[test]
    fn settings_are_checked() {
        assert!(check(&Value::Null).is_empty());
        assert!(
            check(
                &json!({"labels": ["promotion"], "auto_merge": "squash", "source_commit_url": "https://x/{repo}/{sha}"})
            )
            .is_empty()
        );
        assert_eq!(check(&json!({"auto_merge": "octopus"}))[0].0, "auto_merge");
        assert_eq!(check(&json!({"source_commit_url": "https://x/{branch}"}))[0].0, "source_commit_url");
        assert_eq!(check(&json!({"reviewers": [" "]}))[0].0, "reviewers");
        assert!(check(&json!({"lables": []}))[0].1.contains("unknown field"));
    }
}
