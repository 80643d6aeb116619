//! Details of real GitHub payloads beyond the fixture table in `fixture_payloads.rs`: commit
//! times, changed paths, and how a damaged real payload is reported.

use std::path::PathBuf;

use gantry_webhooks::github::parse;
use gantry_webhooks::{ParseError, Parsed};
use serde_json::Value;

const OCTOKIT_SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/github")
}

#[test]
fn branch_push_collects_changed_paths_and_commit_time() {
    let body = std::fs::read(fixtures().join("go-playground-webhooks/push.0.json")).unwrap();
    let Parsed::Event(event) = parse("push", &body).unwrap() else {
        panic!("expected an event");
    };
    assert_eq!(event.changed_paths, [".razorops.yaml", "app/controllers/application_controller.rb"]);
    assert_eq!(event.before.as_deref(), Some("737d38c599c1b2991664dfc6155d6bf516fcce36"));
    assert_eq!(event.actor.as_deref(), Some("binkkatal"));
    assert_eq!(event.short_sha(), Some("fd48986"));
    // head_commit.timestamp is 2018-06-29T19:34:13+05:30.
    assert_eq!(event.timestamp.map(|t| t.to_rfc3339()), Some("2018-06-29T14:04:13+00:00".to_owned()));
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
    assert_eq!(event.timestamp.map(|t| t.to_rfc3339()), Some("2019-05-15T15:20:57+00:00".to_owned()));
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
    assert_eq!(error.to_string(), "read the `push` payload: field `ref` is missing");
}

#[test]
fn push_without_after_names_the_field() {
    let mut value = fixture_value("octokit-examples/push.4.json");
    value.as_object_mut().unwrap().remove("after");
    let error = reparse("push", &value).unwrap_err();
    assert!(matches!(&error, ParseError::MissingField { field, .. } if field == "after"), "{error:?}");
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
        ("octokit-examples/pull_request.closed.0.json", "pull_request"),
    ] {
        let body = std::fs::read(fixtures().join(relative)).unwrap();
        let error = parse(event_type, &body[..body.len() / 2]).unwrap_err();
        let ParseError::InvalidJson { event_type: reported, .. } = &error else {
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
