//! Every real GitHub payload under `tests/fixtures/github` goes through `github::parse`.
//!
//! File names are `event[.action].N.json`, so the `X-GitHub-Event` value is the part before the
//! first dot.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gantry_webhooks::github::parse;
use gantry_webhooks::{EventKind, Forge, GitEvent, ParseError, Parsed, RefKind};
use serde_json::Value;

/// Folders whose every `*.json` file is a delivery body.
const PAYLOAD_DIRS: [&str; 2] = ["octokit-examples", "go-playground-webhooks"];

const OCTOKIT_SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const PLAYGROUND_SHA: &str = "fd489864e7642b48eaad6e3f155c10e46810ec72";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/github")
}

/// All payload files as (`dir/file.json`, event type, body), in a stable order.
fn payloads() -> Vec<(String, String, Vec<u8>)> {
    let mut found = Vec::new();
    for dir in PAYLOAD_DIRS {
        for entry in std::fs::read_dir(fixtures().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let file_name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let event_type = file_name.split('.').next().unwrap().to_owned();
            found.push((
                format!("{dir}/{file_name}"),
                event_type,
                std::fs::read(&path).unwrap(),
            ));
        }
    }
    found.sort();
    assert!(
        found.len() >= 100,
        "expected the full fixture set, found {}",
        found.len()
    );
    found
}

/// What each push fixture must normalize to.
struct PushExpectation {
    kind: EventKind,
    ref_kind: RefKind,
    ref_name: &'static str,
    sha: Option<&'static str>,
    repo: &'static str,
    deleted: bool,
}

fn push_expectations() -> BTreeMap<&'static str, PushExpectation> {
    let tag_created = || PushExpectation {
        kind: EventKind::Tag,
        ref_kind: RefKind::Tag,
        ref_name: "simple-tag",
        sha: Some(OCTOKIT_SHA),
        repo: "Codertocat/Hello-World",
        deleted: false,
    };
    let tag_deleted = || PushExpectation {
        kind: EventKind::Delete,
        ref_kind: RefKind::Tag,
        ref_name: "simple-tag",
        sha: None,
        repo: "Codertocat/Hello-World",
        deleted: true,
    };
    let branch_created = || PushExpectation {
        kind: EventKind::Push,
        ref_kind: RefKind::Branch,
        ref_name: "master",
        sha: Some(OCTOKIT_SHA),
        repo: "Codertocat/Hello-World",
        deleted: false,
    };
    BTreeMap::from([
        (
            "go-playground-webhooks/push.0.json",
            PushExpectation {
                kind: EventKind::Push,
                ref_kind: RefKind::Branch,
                ref_name: "master",
                sha: Some(PLAYGROUND_SHA),
                repo: "binkkatal/sample_app",
                deleted: false,
            },
        ),
        ("octokit-examples/push.0.json", tag_created()),
        ("octokit-examples/push.1.json", tag_deleted()),
        ("octokit-examples/push.2.json", tag_deleted()),
        ("octokit-examples/push.3.json", tag_deleted()),
        ("octokit-examples/push.4.json", branch_created()),
        ("octokit-examples/push.5.json", branch_created()),
        ("octokit-examples/push.6.json", tag_deleted()),
    ])
}

fn check_push(name: &str, event: &GitEvent, expected: &PushExpectation) {
    assert_eq!(event.forge, Forge::Github, "{name}");
    assert_eq!(event.kind, expected.kind, "{name}");
    assert_eq!(event.ref_kind, Some(expected.ref_kind), "{name}");
    assert_eq!(event.ref_name.as_deref(), Some(expected.ref_name), "{name}");
    assert_eq!(event.sha.as_deref(), expected.sha, "{name}");
    assert_eq!(event.repo, expected.repo, "{name}");
    assert_eq!(event.deleted, expected.deleted, "{name}");
    assert!(!event.merged, "{name}");
    assert!(
        event.timestamp.is_some(),
        "{name}: every push fixture dates itself"
    );
}

#[test]
fn every_fixture_parses_to_the_expected_outcome() {
    let expectations = push_expectations();
    let mut pushes_seen = Vec::new();
    let mut events = BTreeMap::new();

    for (name, event_type, body) in payloads() {
        let parsed = parse(&event_type, &body)
            .unwrap_or_else(|error| panic!("{name}: real payload rejected: {error}"));
        match (event_type.as_str(), parsed) {
            ("push", Parsed::Event(event)) => {
                let expected = expectations
                    .get(name.as_str())
                    .unwrap_or_else(|| panic!("{name}: add an expectation for this push fixture"));
                check_push(&name, &event, expected);
                pushes_seen.push(name.clone());
                events.insert(name, event);
            }
            ("ping", Parsed::Event(event)) => {
                assert_eq!(event.kind, EventKind::Ping, "{name}");
                assert_eq!(event.sha, None, "{name}");
                events.insert(name, event);
            }
            ("push" | "ping", other) => panic!("{name}: expected an event, got {other:?}"),
            (
                _,
                Parsed::Ignored {
                    event_type: ignored_type,
                    reason,
                },
            ) => {
                assert_eq!(ignored_type, event_type, "{name}");
                assert!(!reason.is_empty(), "{name}");
            }
            (_, Parsed::Event(event)) => {
                panic!("{name}: `{event_type}` is not handled yet, got {event:?}")
            }
        }
    }

    let expected_pushes: Vec<_> = expectations.keys().map(|name| name.to_string()).collect();
    assert_eq!(
        pushes_seen, expected_pushes,
        "every expected push fixture was parsed"
    );
    // The whole normalized event (actor, timestamp, changed paths, before) for pushes and pings.
    insta::assert_json_snapshot!("github_fixture_events", events);
}

#[test]
fn branch_push_collects_changed_paths_and_commit_time() {
    let body = std::fs::read(fixtures().join("go-playground-webhooks/push.0.json")).unwrap();
    let Parsed::Event(event) = parse("push", &body).unwrap() else {
        panic!("expected an event");
    };
    assert_eq!(
        event.changed_paths,
        [
            ".razorops.yaml",
            "app/controllers/application_controller.rb"
        ]
    );
    assert_eq!(
        event.before.as_deref(),
        Some("737d38c599c1b2991664dfc6155d6bf516fcce36")
    );
    assert_eq!(event.actor.as_deref(), Some("binkkatal"));
    assert_eq!(event.short_sha(), Some("fd48986"));
    // head_commit.timestamp is 2018-06-29T19:34:13+05:30.
    assert_eq!(
        event.timestamp.map(|t| t.to_rfc3339()),
        Some("2018-06-29T14:04:13+00:00".to_owned())
    );
}

#[test]
fn deletion_is_dated_by_the_epoch_pushed_at() {
    let body = std::fs::read(fixtures().join("octokit-examples/push.1.json")).unwrap();
    let Parsed::Event(event) = parse("push", &body).unwrap() else {
        panic!("expected an event");
    };
    assert_eq!(event.before.as_deref(), Some(OCTOKIT_SHA));
    assert!(event.changed_paths.is_empty());
    // repository.pushed_at is the integer 1557933657 and head_commit is null.
    assert_eq!(
        event.timestamp.map(|t| t.to_rfc3339()),
        Some("2019-05-15T15:20:57+00:00".to_owned())
    );
}

fn fixture_value(relative: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(relative)).unwrap()).unwrap()
}

fn reparse(event_type: &str, value: &Value) -> Result<Parsed, ParseError> {
    parse(event_type, &serde_json::to_vec(value).unwrap())
}

#[test]
fn push_without_ref_names_the_field() {
    let mut value = fixture_value("go-playground-webhooks/push.0.json");
    value.as_object_mut().unwrap().remove("ref");
    let error = reparse("push", &value).unwrap_err();
    assert!(
        matches!(&error, ParseError::MissingField { event_type, field } if event_type == "push" && field == "ref"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "read the `push` payload: field `ref` is missing"
    );
}

#[test]
fn push_without_after_names_the_field() {
    let mut value = fixture_value("octokit-examples/push.4.json");
    value.as_object_mut().unwrap().remove("after");
    let error = reparse("push", &value).unwrap_err();
    assert!(
        matches!(&error, ParseError::MissingField { field, .. } if field == "after"),
        "{error:?}"
    );
}

#[test]
fn push_with_a_numeric_ref_is_invalid() {
    let mut value = fixture_value("octokit-examples/push.4.json");
    value["ref"] = Value::from(42);
    let error = reparse("push", &value).unwrap_err();
    assert!(
        matches!(&error, ParseError::InvalidField { field, reason, .. } if field == "ref" && reason == "is not a string"),
        "{error:?}"
    );
}

#[test]
fn truncated_body_is_invalid_json_for_any_event_type() {
    for (relative, event_type) in [
        ("octokit-examples/push.4.json", "push"),
        ("octokit-examples/ping.0.json", "ping"),
        (
            "octokit-examples/pull_request.closed.0.json",
            "pull_request",
        ),
    ] {
        let body = std::fs::read(fixtures().join(relative)).unwrap();
        let error = parse(event_type, &body[..body.len() / 2]).unwrap_err();
        let ParseError::InvalidJson {
            event_type: reported,
            ..
        } = &error
        else {
            panic!("{relative}: expected invalid JSON, got {error:?}");
        };
        assert_eq!(reported, event_type);
        assert!(std::error::Error::source(&error).is_some(), "{relative}");
    }
}

#[test]
fn form_encoded_body_is_invalid_json() {
    // A hook left on content type `application/x-www-form-urlencoded` sends `payload=<json>`.
    let body = b"payload=%7B%22zen%22%3A%22x%22%7D";
    let error = parse("ping", body).unwrap_err();
    assert!(matches!(error, ParseError::InvalidJson { .. }), "{error:?}");
}

#[test]
fn ping_reports_repository_and_sender() {
    let value = fixture_value("octokit-examples/ping.0.json");
    let Parsed::Event(event) = reparse("ping", &value).unwrap() else {
        panic!("expected an event");
    };
    assert_eq!(event.repo, "Octocoders/Hello-World");
    assert_eq!(event.actor.as_deref(), Some("Codertocat"));
    assert_eq!(event.ref_name, None);
}
