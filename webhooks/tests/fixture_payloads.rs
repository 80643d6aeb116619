//! Every GitHub and GitLab payload under `tests/fixtures/{github,gitlab}` goes through its forge's
//! parser, and the normalized outcome is checked against a table: kind, ref, sha, repo, merged
//! and deleted for each event, or that the payload was classified as ignored. None may fail to
//! parse: these are real deliveries, and one gantry has no use for is classified, not an error.
//!
//! File names are `event[.action].N.json` (GitHub: the `X-GitHub-Event` value) and
//! `object_kind[.action].N.json` (GitLab), which is how each file's event type is found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use gantry_webhooks::EventKind::{self, Ci, Delete, Merge, Other, Package, Ping, Push, Tag};
use gantry_webhooks::{CiConclusion, Forge, GitEvent, Parsed, RefKind, github, gitlab};
use serde_json::{Value, json};

const GITHUB_DIRS: [&str; 4] = ["octokit-examples", "go-playground-webhooks", "octokit-repo", "derived"];
const GITLAB_DIRS: [&str; 2] = ["docs-examples", "drone-go-scm"];

/// What one payload must normalize to.
#[derive(Debug)]
enum Expected {
    Event {
        kind: EventKind,
        ref_name: Option<&'static str>,
        sha: Option<&'static str>,
        repo: &'static str,
        merged: bool,
        deleted: bool,
    },
    Ignored,
}

type Row = (&'static str, Expected);

fn event(
    name: &'static str,
    kind: EventKind,
    ref_name: Option<&'static str>,
    sha: Option<&'static str>,
    repo: &'static str,
    merged: bool,
    deleted: bool,
) -> Row {
    let expected = Expected::Event { kind, ref_name, sha, repo, merged, deleted };
    (name, expected)
}

fn ignored(name: &'static str) -> Row {
    (name, Expected::Ignored)
}

fn github_table() -> Vec<Row> {
    vec![
        ignored("octokit-examples/check_suite.completed.0.json"),
        ignored("octokit-examples/check_suite.completed.1.json"),
        ignored("octokit-examples/check_suite.completed.2.json"),
        ignored("octokit-examples/check_suite.completed.3.json"),
        ignored("octokit-examples/check_suite.requested.0.json"),
        ignored("octokit-examples/check_suite.requested.1.json"),
        ignored("octokit-examples/check_suite.requested.2.json"),
        ignored("octokit-examples/check_suite.rerequested.0.json"),
        ignored("octokit-examples/check_suite.rerequested.1.json"),
        event("octokit-examples/create.0.json", Tag, Some("simple-tag"), None, "Codertocat/Hello-World", false, false),
        event("octokit-examples/create.1.json", Tag, Some("simple-tag"), None, "Codertocat/Hello-World", false, false),
        event("octokit-examples/create.2.json", Tag, Some("simple-tag"), None, "Codertocat/Hello-World", false, false),
        event("octokit-examples/create.3.json", Tag, Some("simple-tag"), None, "Codertocat/Hello-World", false, false),
        event("octokit-examples/create.4.json", Tag, Some("simple-tag"), None, "Codertocat/Hello-World", false, false),
        event(
            "octokit-examples/delete.0.json",
            Delete,
            Some("simple-tag"),
            None,
            "Codertocat/Hello-World",
            false,
            true,
        ),
        event(
            "octokit-examples/delete.1.json",
            Delete,
            Some("simple-tag"),
            None,
            "Codertocat/Hello-World",
            false,
            true,
        ),
        event(
            "octokit-examples/delete.2.json",
            Delete,
            Some("simple-tag"),
            None,
            "Codertocat/Hello-World",
            false,
            true,
        ),
        event(
            "octokit-examples/delete.3.json",
            Delete,
            Some("simple-tag"),
            None,
            "Codertocat/Hello-World",
            false,
            true,
        ),
        ignored("octokit-examples/deployment.created.0.json"),
        ignored("octokit-examples/deployment.created.1.json"),
        ignored("octokit-examples/deployment.created.2.json"),
        ignored("octokit-examples/deployment.created.3.json"),
        ignored("octokit-examples/deployment_status.created.0.json"),
        ignored("octokit-examples/deployment_status.created.1.json"),
        ignored("octokit-examples/deployment_status.created.2.json"),
        ignored("octokit-examples/deployment_status.created.3.json"),
        event(
            "octokit-examples/package.published.0.json",
            Package,
            None,
            None,
            "Codertocat/hello-world-npm",
            false,
            false,
        ),
        event(
            "octokit-examples/package.published.1.json",
            Package,
            None,
            Some("6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b"),
            "Codertocat/hello-world-npm",
            false,
            false,
        ),
        event(
            "octokit-examples/package.published.2.json",
            Package,
            None,
            None,
            "Codertocat/hello-world-npm",
            false,
            false,
        ),
        event("octokit-examples/ping.0.json", Ping, None, None, "Octocoders/Hello-World", false, false),
        event("octokit-examples/ping.1.json", Ping, None, None, "Octocoders/Hello-World", false, false),
        event("octokit-examples/ping.2.json", Ping, None, None, "Octocoders/Hello-World", false, false),
        event("octokit-examples/ping.3.json", Ping, None, None, "Octocoders", false, false),
        event(
            "octokit-examples/pull_request.assigned.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.assigned.1.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.closed.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.closed.1.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.converted_to_draft.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.converted_to_draft.1.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.converted_to_draft.2.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.labeled.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.labeled.1.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.locked.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.locked.1.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.opened.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.opened.1.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.opened.2.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.opened.3.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.ready_for_review.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.ready_for_review.1.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.ready_for_review.2.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.reopened.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.reopened.1.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.review_request_removed.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.review_requested.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.synchronize.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.unassigned.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.unassigned.1.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.unlabeled.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.unlabeled.1.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.unlocked.0.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/pull_request.unlocked.1.json",
            Other,
            Some("changes"),
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/push.0.json",
            Tag,
            Some("simple-tag"),
            Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event("octokit-examples/push.1.json", Delete, Some("simple-tag"), None, "Codertocat/Hello-World", false, true),
        event("octokit-examples/push.2.json", Delete, Some("simple-tag"), None, "Codertocat/Hello-World", false, true),
        event("octokit-examples/push.3.json", Delete, Some("simple-tag"), None, "Codertocat/Hello-World", false, true),
        event(
            "octokit-examples/push.4.json",
            Push,
            Some("master"),
            Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/push.5.json",
            Push,
            Some("master"),
            Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event("octokit-examples/push.6.json", Delete, Some("simple-tag"), None, "Codertocat/Hello-World", false, true),
        ignored("octokit-examples/release.created.0.json"),
        ignored("octokit-examples/release.created.1.json"),
        ignored("octokit-examples/release.created.2.json"),
        ignored("octokit-examples/release.deleted.0.json"),
        ignored("octokit-examples/release.deleted.1.json"),
        ignored("octokit-examples/release.edited.0.json"),
        ignored("octokit-examples/release.edited.1.json"),
        ignored("octokit-examples/release.prereleased.0.json"),
        ignored("octokit-examples/release.prereleased.1.json"),
        ignored("octokit-examples/release.published.0.json"),
        ignored("octokit-examples/release.published.1.json"),
        ignored("octokit-examples/release.published.2.json"),
        ignored("octokit-examples/release.released.0.json"),
        ignored("octokit-examples/workflow_job.completed.0.json"),
        ignored("octokit-examples/workflow_job.completed.1.json"),
        ignored("octokit-examples/workflow_job.in_progress.0.json"),
        ignored("octokit-examples/workflow_job.in_progress.1.json"),
        ignored("octokit-examples/workflow_job.in_progress.2.json"),
        ignored("octokit-examples/workflow_job.queued.0.json"),
        ignored("octokit-examples/workflow_job.queued.1.json"),
        ignored("octokit-examples/workflow_job.waiting.0.json"),
        event(
            "octokit-examples/workflow_run.completed.0.json",
            Ci,
            Some("main"),
            Some("5779607b49aab1200488439f02372c57b4f75444"),
            "Codertocat/Hello-World",
            false,
            false,
        ),
        event(
            "octokit-examples/workflow_run.completed.1.json",
            Ci,
            Some("master"),
            Some("3484a3fb816e0859fd6e1cea078d76385ff50625"),
            "octo-org/octo-repo",
            false,
            false,
        ),
        event(
            "octokit-examples/workflow_run.completed.2.json",
            Ci,
            Some("master"),
            Some("3484a3fb816e0859fd6e1cea078d76385ff50625"),
            "octo-org/octo-repo",
            false,
            false,
        ),
        ignored("octokit-examples/workflow_run.requested.0.json"),
        ignored("octokit-examples/workflow_run.requested.1.json"),
        event(
            "go-playground-webhooks/create.0.json",
            Tag,
            Some("0.0.1"),
            None,
            "baxterthehacker/public-repo",
            false,
            false,
        ),
        event(
            "go-playground-webhooks/delete.0.json",
            Delete,
            Some("simple-tag"),
            None,
            "baxterthehacker/public-repo",
            false,
            true,
        ),
        event("go-playground-webhooks/ping.0.json", Ping, None, None, "", false, false),
        event(
            "go-playground-webhooks/pull_request.opened.0.json",
            Other,
            Some("changes"),
            Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"),
            "baxterthehacker/public-repo",
            false,
            false,
        ),
        event(
            "go-playground-webhooks/push.0.json",
            Push,
            Some("master"),
            Some("fd489864e7642b48eaad6e3f155c10e46810ec72"),
            "binkkatal/sample_app",
            false,
            false,
        ),
        ignored("go-playground-webhooks/release.published.0.json"),
        event(
            "octokit-repo/registry_package.published.0.json",
            Package,
            None,
            Some("6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b"),
            "Codertocat/hello-world-npm",
            false,
            false,
        ),
        event(
            "derived/pull_request.closed.0.json",
            Merge,
            Some("master"),
            Some("c4295bd74fb0f4fda03689c3df3f2803b658fd85"),
            "Codertocat/Hello-World",
            true,
            false,
        ),
    ]
}

fn gitlab_table() -> Vec<Row> {
    vec![
        ignored("docs-examples/deployment.0.json"),
        event(
            "docs-examples/merge_request.open.0.json",
            Other,
            Some("ms-viewport"),
            Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7"),
            "gitlabhq/gitlab-test",
            false,
            false,
        ),
        event(
            "docs-examples/pipeline.0.json",
            Ci,
            Some("master"),
            Some("bcbb5ec396a2c0f828686f14fac9b80b780504f2"),
            "gitlab-org/gitlab-test",
            false,
            false,
        ),
        event(
            "docs-examples/push.0.json",
            Push,
            Some("master"),
            Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7"),
            "mike/diaspora",
            false,
            false,
        ),
        event(
            "docs-examples/tag_push.0.json",
            Tag,
            Some("v1.0.0"),
            Some("82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"),
            "jsmith/example",
            false,
            false,
        ),
        event(
            "drone-go-scm/merge_request.merge.0.json",
            Merge,
            Some("master"),
            Some("78a76ee6b4992a6baf64c59fc4c44c7323d60438"),
            "gitlab-org/hello-world",
            true,
            false,
        ),
        event(
            "drone-go-scm/push.0.json",
            Push,
            Some("master"),
            Some("2adc9465c4edfc33834e173fe89436a7cb899a1d"),
            "gitlab-org/hello-world",
            false,
            false,
        ),
        event("drone-go-scm/push.1.json", Delete, Some("feature"), None, "gitlab-org/hello-world", false, true),
        event(
            "drone-go-scm/tag_push.0.json",
            Tag,
            Some("v1.0.0"),
            Some("2adc9465c4edfc33834e173fe89436a7cb899a1d"),
            "gitlab-org/hello-world",
            false,
            false,
        ),
        event(
            "drone-go-scm/tag_push.1.json",
            Delete,
            Some("v1.0.0"),
            None,
            "group1/group2/group3/grp2repo",
            false,
            true,
        ),
    ]
}

fn fixtures(forge: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(forge)
}

/// Every payload file of a forge as `dir/file.json`, in a stable order.
fn payload_files(forge: &str, dirs: &[&str]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for dir in dirs {
        for entry in std::fs::read_dir(fixtures(forge).join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) == Some("json") {
                let file = path.file_name().unwrap().to_str().unwrap();
                found.insert(format!("{dir}/{file}"));
            }
        }
    }
    found
}

/// The `X-GitHub-Event` value: the file name up to the first dot.
fn github_event_type(name: &str) -> String {
    let file = name.rsplit('/').next().unwrap();
    file.split('.').next().unwrap().to_owned()
}

/// The `X-Gitlab-Event` value for the file's `object_kind`.
fn gitlab_event_type(name: &str) -> String {
    let file = name.rsplit('/').next().unwrap();
    let hook = match file.split('.').next().unwrap() {
        "push" => "Push Hook",
        "tag_push" => "Tag Push Hook",
        "merge_request" => "Merge Request Hook",
        "pipeline" => "Pipeline Hook",
        "deployment" => "Deployment Hook",
        other => panic!("{name}: no event type known for object_kind `{other}`"),
    };
    hook.to_owned()
}

fn check(forge: Forge, name: &str, parsed: &Parsed, expected: &Expected) {
    match (parsed, expected) {
        (Parsed::Event(event), Expected::Event { kind, ref_name, sha, repo, merged, deleted }) => {
            assert_eq!(event.forge, forge, "{name}");
            assert_eq!(event.kind, *kind, "{name}: kind");
            assert_eq!(event.ref_name.as_deref(), *ref_name, "{name}: ref");
            assert_eq!(event.sha.as_deref(), *sha, "{name}: sha");
            assert_eq!(event.repo, *repo, "{name}: repo");
            assert_eq!(event.merged, *merged, "{name}: merged");
            assert_eq!(event.deleted, *deleted, "{name}: deleted");
            assert_eq!(event.package.is_some(), *kind == Package, "{name}: a package exactly on package events");
            assert_eq!(event.ci.is_some(), *kind == Ci, "{name}: a CI run exactly on CI events");
        }
        (Parsed::Ignored { reason, .. }, Expected::Ignored) => {
            assert!(!reason.is_empty(), "{name}: an ignored payload says why");
        }
        (parsed, expected) => panic!("{name}: expected {expected:?}, got {parsed:?}"),
    }
}

/// Runs one forge's table; returns every outcome for the snapshot.
fn run_table(
    forge: Forge,
    dirs: &[&str],
    table: Vec<Row>,
    event_type: fn(&str) -> String,
    parse: fn(&str, &[u8]) -> Result<Parsed, gantry_webhooks::ParseError>,
) -> BTreeMap<String, Value> {
    let forge_dir = match forge {
        Forge::Github => "github",
        Forge::Gitlab => "gitlab",
    };
    let files = payload_files(forge_dir, dirs);
    let listed: BTreeSet<String> = table.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(listed.len(), table.len(), "{forge_dir}: a file is listed twice");
    assert_eq!(files, listed, "{forge_dir}: every fixture file has exactly one row, and every row a file");

    let mut outcomes = BTreeMap::new();
    for (name, expected) in &table {
        let event_type = event_type(name);
        let body = std::fs::read(fixtures(forge_dir).join(name)).unwrap();
        let parsed = parse(&event_type, &body).unwrap_or_else(|error| panic!("{name}: real payload rejected: {error}"));
        check(forge, name, &parsed, expected);
        if let Parsed::Ignored { event_type: reported, .. } = &parsed {
            assert_eq!(*reported, event_type, "{name}");
        }
        let outcome = match parsed {
            Parsed::Event(event) => serde_json::to_value(event).unwrap(),
            Parsed::Ignored { reason, .. } => json!({ "ignored": reason }),
        };
        outcomes.insert(format!("{forge_dir}/{name}"), outcome);
    }
    outcomes
}

#[test]
fn every_fixture_normalizes_as_the_table_says() {
    let mut outcomes = run_table(Forge::Github, &GITHUB_DIRS, github_table(), github_event_type, github::parse);
    outcomes.extend(run_table(Forge::Gitlab, &GITLAB_DIRS, gitlab_table(), gitlab_event_type, gitlab::parse));
    // The whole normalized event (actor, timestamp, changed paths, before, change request,
    // package, CI run) of every fixture, reviewed when it changes.
    insta::assert_json_snapshot!("fixture_outcomes", outcomes);
}

#[test]
fn event_types_are_inferred_for_every_fixture_gantry_acts_on() {
    for (name, expected) in github_table() {
        let body = std::fs::read(fixtures("github").join(name)).unwrap();
        let inferred = github::infer_event_type(&body);
        match expected {
            Expected::Event { .. } => {
                assert_eq!(inferred.map(str::to_owned), Some(github_event_type(name)), "{name}");
            }
            // Nothing to infer for types gantry ignores, but a guess must never be wrong.
            Expected::Ignored => {
                if let Some(inferred) = inferred {
                    assert_eq!(inferred, github_event_type(name), "{name}");
                }
            }
        }
    }
    for (name, _) in gitlab_table() {
        let body = std::fs::read(fixtures("gitlab").join(name)).unwrap();
        assert_eq!(gitlab::infer_event_type(&body).map(str::to_owned), Some(gitlab_event_type(name)), "{name}");
    }
}

fn parsed_event(forge: Forge, name: &str) -> GitEvent {
    let (dir, event_type, parse): (_, _, fn(&str, &[u8]) -> _) = match forge {
        Forge::Github => ("github", github_event_type(name), github::parse),
        Forge::Gitlab => ("gitlab", gitlab_event_type(name), gitlab::parse),
    };
    let body = std::fs::read(fixtures(dir).join(name)).unwrap();
    match parse(&event_type, &body).unwrap() {
        Parsed::Event(event) => event,
        other => panic!("{name}: expected an event, got {other:?}"),
    }
}

#[test]
fn registry_package_names_the_image_and_its_full_digest() {
    let event = parsed_event(Forge::Github, "octokit-repo/registry_package.published.0.json");
    let package = event.package.unwrap();
    assert!(package.is_image());
    assert_eq!(package.name, "hello-world-npm");
    assert_eq!(package.image.as_deref(), Some("ghcr.io/codertocat/hello-world"));
    // `package_url` ends in a bare colon: the push had no tag.
    assert_eq!(package.tag, None);
    // The container metadata's digests are truncated to 40 digits in this example; the
    // version's full digest is the one that may pin an image.
    assert_eq!(
        package.digest.as_deref(),
        Some("sha256:3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498")
    );
    assert_eq!(event.actor.as_deref(), Some("github-actions[bot]"));
    assert_eq!(event.timestamp.map(|t| t.to_rfc3339()), Some("2019-05-09T23:28:29+00:00".to_owned()));
}

#[test]
fn npm_package_is_a_package_but_not_an_image() {
    let event = parsed_event(Forge::Github, "octokit-examples/package.published.0.json");
    let package = event.package.unwrap();
    assert!(!package.is_image());
    assert_eq!(package.package_type, "npm");
    assert_eq!(package.version.as_deref(), Some("1.0.0"));
    assert_eq!(package.digest, None);
}

#[test]
fn workflow_runs_carry_their_conclusion() {
    let event = parsed_event(Forge::Github, "octokit-examples/workflow_run.completed.1.json");
    let run = event.ci.unwrap();
    assert_eq!(run.conclusion, Some(CiConclusion::Success));
    assert_eq!(run.id, 289782451);
    // This example says `completed` while its run is still `queued` with no conclusion.
    let event = parsed_event(Forge::Github, "octokit-examples/workflow_run.completed.0.json");
    let run = event.ci.unwrap();
    assert_eq!(run.conclusion, None);
    assert_eq!(run.outcome.as_deref(), Some("queued"));
    assert_eq!(run.name.as_deref(), Some("Manually triggered workflow"));
}

#[test]
fn merged_pull_request_carries_the_change_request() {
    let event = parsed_event(Forge::Github, "derived/pull_request.closed.0.json");
    assert_eq!(event.ref_kind, Some(RefKind::Branch));
    assert_eq!(event.actor.as_deref(), Some("Codertocat"));
    let request = event.change_request.unwrap();
    assert_eq!(request.number, 2);
    assert!(request.merged);
    assert_eq!(request.base.as_deref(), Some("master"));
    assert_eq!(request.head.as_deref(), Some("changes"));
    assert_eq!(request.url.as_deref(), Some("https://github.com/Codertocat/Hello-World/pull/2"));
}

#[test]
fn gitlab_merge_carries_the_merge_request() {
    let event = parsed_event(Forge::Gitlab, "drone-go-scm/merge_request.merge.0.json");
    assert_eq!(event.actor.as_deref(), Some("sytses"));
    let request = event.change_request.unwrap();
    assert_eq!(request.number, 1);
    assert!(request.merged);
    assert_eq!(request.base.as_deref(), Some("master"));
    assert_eq!(request.head.as_deref(), Some("feature"));
    // `updated_at` is in GitLab's older `2017-12-10 17:08:07 UTC` form.
    assert_eq!(event.timestamp.map(|t| t.to_rfc3339()), Some("2017-12-10T17:08:07+00:00".to_owned()));
}

#[test]
fn gitlab_pipeline_for_a_merge_request() {
    let event = parsed_event(Forge::Gitlab, "docs-examples/pipeline.0.json");
    assert_eq!(event.ref_kind, Some(RefKind::Branch));
    let run = event.ci.unwrap();
    assert_eq!(run.id, 31);
    assert_eq!(run.conclusion, Some(CiConclusion::Success));
    assert_eq!(run.trigger.as_deref(), Some("merge_request_event"));
    let request = event.change_request.unwrap();
    assert_eq!(request.number, 1);
    assert!(!request.merged);
    assert_eq!(event.timestamp.map(|t| t.to_rfc3339()), Some("2016-08-12T15:26:29+00:00".to_owned()));
}

#[test]
fn gitlab_push_dates_itself_by_its_head_commit() {
    let event = parsed_event(Forge::Gitlab, "docs-examples/push.0.json");
    assert_eq!(event.actor.as_deref(), Some("jsmith"));
    assert_eq!(event.before.as_deref(), Some("95790bf891e76fee5e1747ab589903a6a1f80f22"));
    assert_eq!(event.changed_paths, ["CHANGELOG", "app/controller/application.rb"]);
    // The head commit da15608 is dated 2012-01-03T23:36:29+02:00.
    assert_eq!(event.timestamp.map(|t| t.to_rfc3339()), Some("2012-01-03T21:36:29+00:00".to_owned()));
}

#[test]
fn gitlab_branch_creation_has_no_before() {
    let event = parsed_event(Forge::Gitlab, "drone-go-scm/push.0.json");
    assert_eq!(event.before, None);
    assert_eq!(event.changed_paths, ["README.md"]);
}
