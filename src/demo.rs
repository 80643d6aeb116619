//! `gantry demo`: plays CI and GitHub for the quickstart's sample app.
//!
//! `demo push` does what CI and GitHub would do after a `git push`: CI builds an image for
//! the new commit and pushes it under the tag the trigger expects (`sha-<sha7>`), then GitHub
//! sends a signed `push` webhook. The image differs per commit (its config records the
//! revision), so every demo push promotes a new digest.

use std::path::Path;

use anyhow::{Context, bail};
use chrono::{SecondsFormat, Utc};
use gantry_engine::registry::{self, RegistryAuth};
use gantry_webhooks::{Parsed, github};
use gantry_workflows::{AppSpec, Config};
use rand::RngCore;
use serde_json::json;

/// A push the demo pretends happened.
#[derive(Debug, Clone)]
pub struct DemoPush {
    /// The GitHub `X-GitHub-Event` value.
    pub event_type: &'static str,
    /// The payload, exactly as sent.
    pub body: Vec<u8>,
    /// The new commit.
    pub sha: String,
}

fn random_sha() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Builds a GitHub `push` payload for `reference` (`main`, `refs/heads/main`, `v1.2.3`,
/// `refs/tags/v1.2.3`) of the app's source repository, for a fresh commit.
pub fn push_event(app: &AppSpec, reference: &str) -> DemoPush {
    let full_ref = if reference.starts_with("refs/") {
        reference.to_string()
    } else if reference.starts_with('v') && reference[1..].starts_with(|c: char| c.is_ascii_digit()) {
        format!("refs/tags/{reference}")
    } else {
        format!("refs/heads/{reference}")
    };
    let is_tag = full_ref.starts_with("refs/tags/");
    let (sha, before) = (random_sha(), random_sha());
    let repo = &app.source_repo;
    let (owner, name) = repo.split_once('/').unwrap_or(("acme", repo.as_str()));
    let now = Utc::now();
    let commit = json!({
        "id": sha,
        "tree_id": random_sha(),
        "distinct": true,
        "message": format!("Change {} (gantry demo)", app.name),
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Secs, true),
        "url": format!("https://github.com/{repo}/commit/{sha}"),
        "author": { "name": "Demo Developer", "email": "dev@example.com", "username": "demo-dev" },
        "committer": { "name": "Demo Developer", "email": "dev@example.com", "username": "demo-dev" },
        "added": [], "removed": [], "modified": ["src/main.rs"],
    });
    let body = json!({
        "ref": full_ref,
        "before": if is_tag { "0".repeat(40) } else { before.clone() },
        "after": sha,
        "created": is_tag,
        "deleted": false,
        "forced": false,
        "base_ref": if is_tag { json!("refs/heads/main") } else { json!(null) },
        "compare": format!("https://github.com/{repo}/compare/{}...{}", &before[..12], &sha[..12]),
        "commits": if is_tag { json!([]) } else { json!([commit.clone()]) },
        "head_commit": commit,
        "repository": {
            "id": 424242, "node_id": "R_kgDOdemo", "name": name, "full_name": repo, "private": true,
            "owner": { "name": owner, "login": owner, "type": "Organization" },
            "html_url": format!("https://github.com/{repo}"),
            "clone_url": format!("https://github.com/{repo}.git"),
            "default_branch": "main", "master_branch": "main",
            "pushed_at": now.timestamp(),
        },
        "pusher": { "name": "demo-dev", "email": "dev@example.com" },
        "sender": { "login": "demo-dev", "id": 4242, "type": "User" },
    });
    DemoPush { event_type: "push", body: serde_json::to_vec_pretty(&body).unwrap_or_default(), sha }
}

/// Picks the app to demo: the named one, or the first configured.
pub fn pick_app<'a>(config: &'a Config, name: Option<&str>) -> anyhow::Result<&'a AppSpec> {
    match name {
        Some(name) => config.app(name).with_context(|| format!("no app named {name} in the config")),
        None => config.apps.first().map(|(a, _)| a).context("the config defines no apps"),
    }
}

/// Pushes the image CI would build for `push` into the registry the trigger looks in.
pub async fn publish_image(
    data_dir: &Path,
    config: &Config,
    app: &AppSpec,
    push: &DemoPush,
) -> anyhow::Result<Vec<String>> {
    let event = match github::parse(push.event_type, &push.body)? {
        Parsed::Event(event) => event,
        Parsed::Ignored { reason, .. } => bail!("the demo event would be ignored: {reason}"),
    };
    let plans = gantry_workflows::plan(config, &event)?;
    if plans.is_empty() {
        bail!(
            "no trigger of app {} matches {} — pick a --ref that a trigger in the config watches",
            app.name,
            event.ref_name.as_deref().unwrap_or("this ref")
        );
    }
    let image = registry::sample_image(
        &app.name,
        &[
            ("org.opencontainers.image.revision", &push.sha),
            ("org.opencontainers.image.source", &format!("https://github.com/{}", app.source_repo)),
        ],
    );
    let mut pushed = Vec::new();
    for plan in &plans {
        let registry = registry::open(&plan.artifact.registry_url, data_dir, RegistryAuth::Anonymous)?;
        let digest = registry.push_image(&plan.artifact.repository, &plan.artifact.tag, &image).await?;
        pushed.push(format!(
            "{}@{}",
            registry.reference(&plan.artifact.repository, &plan.artifact.tag),
            digest.as_str()
        ));
    }
    Ok(pushed)
}

/// Sends `push` to a gantry server as GitHub would, signed with `secret`; returns the status
/// and response body.
pub async fn send(server: &str, secret: &[u8], push: &DemoPush) -> anyhow::Result<(u16, String)> {
    send_delivery(server, secret, push, &uuid::Uuid::new_v4().to_string()).await
}

/// Like [`send`], with the delivery id given: a redelivery of the same event reuses it.
pub async fn send_delivery(
    server: &str,
    secret: &[u8],
    push: &DemoPush,
    delivery: &str,
) -> anyhow::Result<(u16, String)> {
    let url = format!("{}/hooks/github", server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/gantry-demo")
        .header("x-github-event", push.event_type)
        .header("x-github-delivery", delivery)
        .header("x-github-hook-id", "424242")
        .header("x-hub-signature-256", github::sign(secret, &push.body))
        .body(push.body.clone())
        .send()
        .await
        .with_context(|| format!("send the webhook to {url} (is `gantry up` running?)"))?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default()))
}
