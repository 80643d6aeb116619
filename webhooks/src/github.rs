//! GitHub deliveries: `X-Hub-Signature-256` verification and payload normalization.
//!
//! GitHub signs the raw body with HMAC-SHA256 keyed by the hook's secret and sends the hex digest
//! as `sha256=<hex>`. Payloads are read as loose JSON rather than typed structs because their
//! shape varies across event versions, GitHub Enterprise releases and hook kinds; only the
//! fields gantry relies on are required, and each missing or mistyped one is reported by name.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::{EventKind, Forge, GitEvent, ParseError, Parsed, RefKind, SignatureError};

type HmacSha256 = Hmac<Sha256>;

/// The scheme prefix of `X-Hub-Signature-256` values.
const SIGNATURE_PREFIX: &str = "sha256=";

/// Length of a hex-encoded SHA-256 digest.
const SIGNATURE_HEX_LEN: usize = 64;

/// Verifies `X-Hub-Signature-256` (`sha256=<hex>`) over the raw body with any of the given secrets
/// (several are accepted so secrets can be rotated). Constant-time comparison (hmac's verify_slice).
///
/// Empty secrets are skipped: an empty HMAC key is something anyone can guess, so a list holding
/// only empty secrets counts as [`SignatureError::NoSecretConfigured`].
pub fn verify_signature(
    secrets: &[&[u8]],
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let mut usable_secrets = secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .peekable();
    if usable_secrets.peek().is_none() {
        return Err(SignatureError::NoSecretConfigured);
    }
    let header = signature_header
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or(SignatureError::Missing)?;
    let expected = decode_signature(header)?;

    // Every secret is tried even after a match so the response time does not reveal which
    // secret (old or new) the sender used.
    let mut matched = false;
    for secret in usable_secrets {
        let mut mac = keyed_mac(secret);
        mac.update(body);
        matched |= mac.verify_slice(&expected).is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Computes the header value GitHub would send for this body (used by the demo sender and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = keyed_mac(secret);
    mac.update(body);
    format!(
        "{SIGNATURE_PREFIX}{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Parses one delivery given its `X-GitHub-Event` value and body.
///
/// `push` and `ping` become events. Every other event type is [`Parsed::Ignored`], as is a push
/// to a ref outside `refs/heads/` and `refs/tags/`. The body must be JSON whatever the event type
/// (hooks must be configured with content type `application/json`).
pub fn parse(event_type: &str, body: &[u8]) -> Result<Parsed, ParseError> {
    let event_type = event_type.trim();
    if event_type.is_empty() {
        return Err(ParseError::MissingEventType);
    }
    let value: Value = serde_json::from_slice(body).map_err(|source| ParseError::InvalidJson {
        event_type: event_type.to_owned(),
        source,
    })?;
    let Value::Object(root) = value else {
        return Err(ParseError::NotAnObject {
            event_type: event_type.to_owned(),
        });
    };
    let payload = Payload {
        event_type,
        root: &root,
    };
    match event_type {
        "push" => parse_push(&payload),
        "ping" => parse_ping(&payload).map(Parsed::Event),
        // GitHub sends a `push` alongside every `create` and `delete` of a branch or tag, and
        // the push carries the commit ids, so acting on both would double every event.
        "create" | "delete" => Ok(ignored(
            event_type,
            "branch and tag creation and deletion are handled through the matching `push` event",
        )),
        other => Ok(ignored(
            other,
            &format!("gantry does not act on GitHub `{other}` events"),
        )),
    }
}

/// Builds the HMAC for a secret.
fn keyed_mac(secret: &[u8]) -> HmacSha256 {
    // HMAC hashes or pads the key to the block size, so every key length is valid and this
    // cannot fail whatever the secret is.
    HmacSha256::new_from_slice(secret).expect("HMAC-SHA256 accepts keys of any length")
}

/// Turns a `sha256=<hex>` header value into the digest bytes.
fn decode_signature(header: &str) -> Result<Vec<u8>, SignatureError> {
    let malformed = |reason: String| SignatureError::Malformed { reason };
    let Some(hex_digest) = header.strip_prefix(SIGNATURE_PREFIX) else {
        let reason = if header.starts_with("sha1=") {
            "SHA-1 signatures (`sha1=`) are not accepted; send `X-Hub-Signature-256`".to_owned()
        } else {
            format!("expected a value starting with `{SIGNATURE_PREFIX}`")
        };
        return Err(malformed(reason));
    };
    if !hex_digest.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(malformed(format!(
            "the digest after `{SIGNATURE_PREFIX}` is not hexadecimal"
        )));
    }
    if hex_digest.len() != SIGNATURE_HEX_LEN {
        return Err(malformed(format!(
            "expected {SIGNATURE_HEX_LEN} hexadecimal digits after `{SIGNATURE_PREFIX}`, found {}",
            hex_digest.len()
        )));
    }
    hex::decode(hex_digest).map_err(|error| malformed(format!("decode the digest: {error}")))
}

fn ignored(event_type: &str, reason: &str) -> Parsed {
    Parsed::Ignored {
        event_type: event_type.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Normalizes a `push` delivery: a branch push, a tag push, or the deletion of either.
fn parse_push(payload: &Payload<'_>) -> Result<Parsed, ParseError> {
    let full_ref = payload.required_str("ref")?;
    let (ref_kind, ref_name) = if let Some(name) = full_ref.strip_prefix("refs/heads/") {
        (RefKind::Branch, name)
    } else if let Some(name) = full_ref.strip_prefix("refs/tags/") {
        (RefKind::Tag, name)
    } else {
        return Ok(ignored(
            payload.event_type,
            &format!("`{full_ref}` is neither a branch nor a tag"),
        ));
    };
    if ref_name.is_empty() {
        return Err(payload.invalid("ref", "names no branch or tag"));
    }

    let after = payload.required_str("after")?;
    check_commit_id(payload, "after", after)?;
    let before = payload.optional_str("before")?;
    if let Some(before) = before {
        check_commit_id(payload, "before", before)?;
    }
    let head_commit_id = payload.optional_str("head_commit.id")?;
    if let Some(id) = head_commit_id {
        check_commit_id(payload, "head_commit.id", id)?;
    }
    let repo = payload.required_str("repository.full_name")?;
    if repo.is_empty() {
        return Err(payload.invalid("repository.full_name", "is empty"));
    }

    // GitHub marks a deletion both ways; trust either so a payload missing `deleted` still
    // never yields the all-zero id as a commit to promote.
    let deleted = payload.optional_bool("deleted")?.unwrap_or(false) || is_zero_id(after);
    let sha = if deleted {
        None
    } else {
        // For an annotated tag `after` is the tag object; `head_commit` is the commit it tags,
        // which is what gets built and promoted.
        Some(head_commit_id.unwrap_or(after).to_owned())
    };
    let kind = match (deleted, ref_kind) {
        (true, _) => EventKind::Delete,
        (false, RefKind::Branch) => EventKind::Push,
        (false, RefKind::Tag) => EventKind::Tag,
    };
    let actor = match payload.optional_str("pusher.name")? {
        Some(name) if !name.is_empty() => Some(name),
        _ => payload.optional_str("sender.login")?,
    };
    let timestamp = match payload.optional_timestamp("head_commit.timestamp")? {
        Some(timestamp) => Some(timestamp),
        None => payload.optional_timestamp("repository.pushed_at")?,
    };

    Ok(Parsed::Event(GitEvent {
        forge: Forge::Github,
        kind,
        repo: repo.to_owned(),
        ref_kind: Some(ref_kind),
        ref_name: Some(ref_name.to_owned()),
        before: before.filter(|id| !is_zero_id(id)).map(str::to_owned),
        sha,
        deleted,
        merged: false,
        actor: actor.map(str::to_owned),
        change_request: None,
        timestamp,
        changed_paths: changed_paths(payload)?,
    }))
}

/// Normalizes a `ping`, sent once when a hook is created and on demand.
fn parse_ping(payload: &Payload<'_>) -> Result<GitEvent, ParseError> {
    // Organization and app hooks are not attached to a repository, so fall back to the owner.
    let repo = match payload.optional_str("repository.full_name")? {
        Some(name) => Some(name),
        None => payload.optional_str("organization.login")?,
    };
    Ok(GitEvent {
        forge: Forge::Github,
        kind: EventKind::Ping,
        repo: repo.unwrap_or_default().to_owned(),
        ref_kind: None,
        ref_name: None,
        before: None,
        sha: None,
        deleted: false,
        merged: false,
        actor: payload.optional_str("sender.login")?.map(str::to_owned),
        change_request: None,
        timestamp: None,
        changed_paths: Vec::new(),
    })
}

/// Collects the paths touched by the pushed commits.
fn changed_paths(payload: &Payload<'_>) -> Result<Vec<String>, ParseError> {
    let Some(commits) = payload.lookup("commits")? else {
        return Ok(Vec::new());
    };
    let Value::Array(commits) = commits else {
        return Err(payload.invalid("commits", "is not an array"));
    };
    let mut paths = BTreeSet::new();
    for (index, commit) in commits.iter().enumerate() {
        let Value::Object(commit) = commit else {
            return Err(payload.invalid(&format!("commits[{index}]"), "is not an object"));
        };
        for list in ["added", "modified", "removed"] {
            let field = || format!("commits[{index}].{list}");
            match commit.get(list) {
                None | Some(Value::Null) => {}
                Some(Value::Array(entries)) => {
                    for entry in entries {
                        let Value::String(path) = entry else {
                            return Err(
                                payload.invalid(&field(), "holds a value that is not a string")
                            );
                        };
                        paths.insert(path.clone());
                    }
                }
                Some(_) => return Err(payload.invalid(&field(), "is not an array")),
            }
        }
    }
    Ok(paths.into_iter().collect())
}

/// Git object ids are 40 (SHA-1) or 64 (SHA-256) hex digits.
fn check_commit_id(payload: &Payload<'_>, field: &str, id: &str) -> Result<(), ParseError> {
    if matches!(id.len(), 40 | 64) && id.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(payload.invalid(field, "is not a 40 or 64 digit hexadecimal commit id"))
    }
}

/// GitHub writes an all-zero id for the missing side of a ref creation or deletion.
fn is_zero_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b == b'0')
}

/// Typed, error-reporting access to a payload's fields by dotted path.
struct Payload<'a> {
    event_type: &'a str,
    root: &'a Map<String, Value>,
}

impl<'a> Payload<'a> {
    /// Finds the value at a dotted path; `null` counts as absent because GitHub sends `null`
    /// for fields that do not apply (e.g. `head_commit` of a deletion).
    fn lookup(&self, path: &str) -> Result<Option<&'a Value>, ParseError> {
        let mut current = self.root;
        let mut segments = path.split('.').peekable();
        let mut walked = 0;
        while let Some(segment) = segments.next() {
            walked += segment.len();
            let value = match current.get(segment) {
                None | Some(Value::Null) => return Ok(None),
                Some(value) => value,
            };
            if segments.peek().is_none() {
                return Ok(Some(value));
            }
            let Value::Object(object) = value else {
                return Err(self.invalid(&path[..walked], "is not an object"));
            };
            current = object;
            walked += 1;
        }
        Ok(None)
    }

    fn optional_str(&self, path: &str) -> Result<Option<&'a str>, ParseError> {
        match self.lookup(path)? {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(self.invalid(path, "is not a string")),
        }
    }

    fn required_str(&self, path: &str) -> Result<&'a str, ParseError> {
        self.optional_str(path)?
            .ok_or_else(|| ParseError::MissingField {
                event_type: self.event_type.to_owned(),
                field: path.to_owned(),
            })
    }

    fn optional_bool(&self, path: &str) -> Result<Option<bool>, ParseError> {
        match self.lookup(path)? {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(_) => Err(self.invalid(path, "is not a boolean")),
        }
    }

    /// Reads an RFC 3339 string or, as `repository.pushed_at` is in push payloads, a Unix time
    /// in seconds.
    fn optional_timestamp(&self, path: &str) -> Result<Option<DateTime<Utc>>, ParseError> {
        match self.lookup(path)? {
            None => Ok(None),
            Some(Value::String(text)) => DateTime::parse_from_rfc3339(text)
                .map(|timestamp| Some(timestamp.with_timezone(&Utc)))
                .map_err(|_| self.invalid(path, "is not an RFC 3339 timestamp")),
            Some(Value::Number(number)) => number
                .as_i64()
                .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
                .map(Some)
                .ok_or_else(|| self.invalid(path, "is not a Unix time in whole seconds")),
            Some(_) => Err(self.invalid(path, "is neither a timestamp string nor a number")),
        }
    }

    fn invalid(&self, field: &str, reason: &str) -> ParseError {
        ParseError::InvalidField {
            event_type: self.event_type.to_owned(),
            field: field.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const COMMIT: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    const TAG_OBJECT: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn parse_value(event_type: &str, value: &Value) -> Result<Parsed, ParseError> {
        parse(event_type, &serde_json::to_vec(value).unwrap())
    }

    fn parse_event(event_type: &str, value: &Value) -> GitEvent {
        match parse_value(event_type, value).unwrap() {
            Parsed::Event(event) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn minimal_push(full_ref: &str) -> Value {
        json!({
            "ref": full_ref,
            "before": ZERO,
            "after": COMMIT,
            "repository": { "full_name": "octo-org/app" },
        })
    }

    #[test]
    fn sign_matches_a_known_digest() {
        // HMAC-SHA256 of an empty message under key "key", a widely published value.
        assert_eq!(
            sign(b"key", b""),
            "sha256=5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0"
        );
    }

    #[test]
    fn long_secrets_are_accepted() {
        let secret = [7_u8; 200];
        let header = sign(&secret, b"body");
        assert_eq!(verify_signature(&[&secret], Some(&header), b"body"), Ok(()));
    }

    #[test]
    fn empty_secrets_are_not_secrets() {
        let header = sign(b"", b"body");
        assert_eq!(
            verify_signature(&[b""], Some(&header), b"body"),
            Err(SignatureError::NoSecretConfigured)
        );
        assert_eq!(
            verify_signature(&[], Some(&header), b"body"),
            Err(SignatureError::NoSecretConfigured)
        );
    }

    #[test]
    fn surrounding_whitespace_in_the_header_is_tolerated() {
        let header = format!(" {} ", sign(b"s3cret", b"body"));
        assert_eq!(
            verify_signature(&[b"s3cret"], Some(&header), b"body"),
            Ok(())
        );
    }

    #[test]
    fn blank_header_counts_as_missing() {
        assert_eq!(
            verify_signature(&[b"s3cret"], Some("  "), b"body"),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn short_digest_is_malformed() {
        let error = verify_signature(&[b"s3cret"], Some("sha256=abcd"), b"body").unwrap_err();
        assert!(
            matches!(&error, SignatureError::Malformed { reason } if reason.contains("found 4")),
            "{error:?}"
        );
    }

    #[test]
    fn sha1_header_is_malformed_with_a_hint() {
        let error = verify_signature(
            &[b"s3cret"],
            Some("sha1=7d38cdd689735b008b3c702edd92eea23791c5f6"),
            b"body",
        )
        .unwrap_err();
        assert!(
            matches!(&error, SignatureError::Malformed { reason } if reason.contains("X-Hub-Signature-256")),
            "{error:?}"
        );
    }

    #[test]
    fn annotated_tag_points_at_the_tagged_commit() {
        let mut payload = minimal_push("refs/tags/v1.2.3");
        payload["after"] = json!(TAG_OBJECT);
        payload["head_commit"] = json!({ "id": COMMIT, "timestamp": "2024-03-01T10:00:00+01:00" });
        let event = parse_event("push", &payload);
        assert_eq!(event.kind, EventKind::Tag);
        assert_eq!(event.ref_kind, Some(RefKind::Tag));
        assert_eq!(event.ref_name.as_deref(), Some("v1.2.3"));
        assert_eq!(event.sha.as_deref(), Some(COMMIT));
        assert_eq!(
            event.timestamp.map(|t| t.to_rfc3339()),
            Some("2024-03-01T09:00:00+00:00".to_owned())
        );
    }

    #[test]
    fn branch_names_keep_their_slashes() {
        let event = parse_event("push", &minimal_push("refs/heads/release/2024.03"));
        assert_eq!(event.kind, EventKind::Push);
        assert_eq!(event.ref_name.as_deref(), Some("release/2024.03"));
        assert_eq!(
            event.before, None,
            "an all-zero before means the branch is new"
        );
        assert_eq!(event.sha.as_deref(), Some(COMMIT));
        assert_eq!(event.actor, None);
        assert_eq!(event.timestamp, None);
        assert!(event.changed_paths.is_empty());
    }

    #[test]
    fn zero_after_is_a_deletion_even_without_the_flag() {
        let mut payload = minimal_push("refs/heads/feature");
        payload["before"] = json!(COMMIT);
        payload["after"] = json!(ZERO);
        let event = parse_event("push", &payload);
        assert_eq!(event.kind, EventKind::Delete);
        assert!(event.deleted);
        assert_eq!(event.sha, None);
        assert_eq!(event.before.as_deref(), Some(COMMIT));
    }

    #[test]
    fn pushes_outside_heads_and_tags_are_ignored() {
        let parsed = parse_value("push", &minimal_push("refs/notes/commits")).unwrap();
        assert!(
            matches!(&parsed, Parsed::Ignored { event_type, reason } if event_type == "push" && reason.contains("refs/notes/commits")),
            "{parsed:?}"
        );
    }

    #[test]
    fn bare_ref_prefix_is_invalid() {
        let error = parse_value("push", &minimal_push("refs/heads/")).unwrap_err();
        assert!(
            matches!(&error, ParseError::InvalidField { field, .. } if field == "ref"),
            "{error:?}"
        );
    }

    #[test]
    fn changed_paths_are_the_sorted_union_over_commits() {
        let mut payload = minimal_push("refs/heads/main");
        payload["commits"] = json!([
            { "added": ["b.txt"], "modified": ["a.txt"], "removed": [] },
            { "added": [], "modified": ["a.txt", "c/d.yaml"], "removed": ["old.txt"] },
            { "added": null },
        ]);
        let event = parse_event("push", &payload);
        assert_eq!(
            event.changed_paths,
            ["a.txt", "b.txt", "c/d.yaml", "old.txt"]
        );
    }

    #[test]
    fn mistyped_commit_lists_are_reported_by_path() {
        let mut payload = minimal_push("refs/heads/main");
        payload["commits"] = json!([{ "added": [] }, { "modified": "a.txt" }]);
        let error = parse_value("push", &payload).unwrap_err();
        assert!(
            matches!(&error, ParseError::InvalidField { field, .. } if field == "commits[1].modified"),
            "{error:?}"
        );
    }

    #[test]
    fn pushed_at_may_be_epoch_seconds_or_a_string() {
        let mut payload = minimal_push("refs/heads/main");
        payload["repository"]["pushed_at"] = json!(1_557_933_657);
        let event = parse_event("push", &payload);
        assert_eq!(
            event.timestamp.map(|t| t.to_rfc3339()),
            Some("2019-05-15T15:20:57+00:00".to_owned())
        );

        payload["repository"]["pushed_at"] = json!("2019-05-15T15:20:33Z");
        let event = parse_event("push", &payload);
        assert_eq!(
            event.timestamp.map(|t| t.to_rfc3339()),
            Some("2019-05-15T15:20:33+00:00".to_owned())
        );
    }

    #[test]
    fn unreadable_timestamps_are_errors() {
        let mut payload = minimal_push("refs/heads/main");
        payload["head_commit"] = json!({ "id": COMMIT, "timestamp": "yesterday" });
        let error = parse_value("push", &payload).unwrap_err();
        assert!(
            matches!(&error, ParseError::InvalidField { field, .. } if field == "head_commit.timestamp"),
            "{error:?}"
        );
    }

    #[test]
    fn actor_falls_back_to_the_sender() {
        let mut payload = minimal_push("refs/heads/main");
        payload["sender"] = json!({ "login": "octocat" });
        assert_eq!(
            parse_event("push", &payload).actor.as_deref(),
            Some("octocat")
        );

        payload["pusher"] = json!({ "name": "hubot" });
        assert_eq!(
            parse_event("push", &payload).actor.as_deref(),
            Some("hubot")
        );
    }

    #[test]
    fn non_hex_commit_ids_are_rejected() {
        let mut payload = minimal_push("refs/heads/main");
        payload["after"] = json!("not-a-commit");
        let error = parse_value("push", &payload).unwrap_err();
        assert!(
            matches!(&error, ParseError::InvalidField { field, .. } if field == "after"),
            "{error:?}"
        );
    }

    #[test]
    fn missing_nested_field_is_named_by_its_path() {
        let mut payload = minimal_push("refs/heads/main");
        payload["repository"] = json!({ "name": "app" });
        let error = parse_value("push", &payload).unwrap_err();
        assert!(
            matches!(&error, ParseError::MissingField { event_type, field } if event_type == "push" && field == "repository.full_name"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "read the `push` payload: field `repository.full_name` is missing"
        );
    }

    #[test]
    fn non_object_parent_is_reported_at_the_parent() {
        let mut payload = minimal_push("refs/heads/main");
        payload["repository"] = json!("octo-org/app");
        let error = parse_value("push", &payload).unwrap_err();
        assert!(
            matches!(&error, ParseError::InvalidField { field, .. } if field == "repository"),
            "{error:?}"
        );
    }

    #[test]
    fn body_must_be_an_object() {
        let error = parse("ping", b"[1, 2]").unwrap_err();
        assert!(matches!(error, ParseError::NotAnObject { .. }), "{error:?}");
    }

    #[test]
    fn empty_event_type_is_an_error() {
        let error = parse(" ", b"{}").unwrap_err();
        assert!(matches!(error, ParseError::MissingEventType), "{error:?}");
    }

    #[test]
    fn create_and_delete_defer_to_push() {
        for event_type in ["create", "delete"] {
            let parsed = parse(event_type, b"{}").unwrap();
            assert!(
                matches!(&parsed, Parsed::Ignored { reason, .. } if reason.contains("`push`")),
                "{parsed:?}"
            );
        }
    }

    #[test]
    fn ping_without_repository_names_the_organization() {
        let event = parse_event(
            "ping",
            &json!({ "zen": "Design for failure.", "organization": { "login": "octo-org" } }),
        );
        assert_eq!(event.kind, EventKind::Ping);
        assert_eq!(event.repo, "octo-org");
    }
}
