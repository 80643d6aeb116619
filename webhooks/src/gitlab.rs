//! GitLab deliveries: `X-Gitlab-Token` verification, delivery keys and payload normalization.
//!
//! GitLab does not sign the body: it echoes the hook's secret token verbatim in `X-Gitlab-Token`,
//! so verification is a constant-time comparison against the configured tokens. Payloads are
//! read as loose JSON (see the `payload` module); GitLab publishes no schema, and its payloads
//! have changed shape and timestamp format across releases.
//!
//! What each `X-Gitlab-Event` becomes:
//!
//! | event | becomes |
//! |---|---|
//! | `Push Hook` | [`EventKind::Push`] or [`EventKind::Delete`] of a branch |
//! | `Tag Push Hook` | [`EventKind::Tag`] or [`EventKind::Delete`] of a tag |
//! | `Merge Request Hook` | [`EventKind::Merge`] for action `merge`, [`EventKind::Other`] otherwise |
//! | `Pipeline Hook` (finished) | [`EventKind::Ci`] |
//! | `System Hook` | as the hook its `object_kind` names |
//! | anything else | [`Parsed::Ignored`] |

use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::payload::{self, Payload, is_zero_id, parse_timestamp, split_ref};
use crate::{
    ChangeRequest, CiConclusion, CiRun, DeliveryKeyError, EventKind, Forge, GitEvent, ParseError, Parsed, RefKind,
    SignatureError,
};

/// The header naming the event type, e.g. `Push Hook`.
pub const EVENT_HEADER: &str = "X-Gitlab-Event";
/// The header carrying the hook's secret token.
pub const TOKEN_HEADER: &str = "X-Gitlab-Token";
/// The header that stays the same across retries of one delivery (GitLab 17.4 and later).
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// The header identifying the event (GitLab 14.8 and later); hooks triggered by an earlier
/// hook share it.
pub const EVENT_UUID_HEADER: &str = "X-Gitlab-Event-UUID";

/// The longest delivery-id header value accepted as a key; GitLab sends 36-character UUIDs.
const MAX_DELIVERY_KEY_LEN: usize = 128;

/// How many hex digits of the body's SHA-256 tell apart deliveries that share an event UUID.
const BODY_DIGEST_PREFIX_LEN: usize = 16;

/// Checks `X-Gitlab-Token` against any of the expected tokens (several are accepted so tokens can
/// be rotated).
///
/// The comparison takes the same time whichever token matches, wherever the first differing byte
/// is, and whatever the lengths: both sides are hashed with SHA-256 and the digests compared
/// with `subtle`, and every token is tried even after a match. Empty tokens are skipped, so a
/// list holding only empty tokens is [`SignatureError::NoSecretConfigured`]; a missing or blank
/// header is [`SignatureError::TokenMissing`].
pub fn verify_token(expected_tokens: &[&[u8]], header: Option<&str>) -> Result<(), SignatureError> {
    let mut usable_tokens = expected_tokens.iter().filter(|token| !token.is_empty()).peekable();
    if usable_tokens.peek().is_none() {
        return Err(SignatureError::NoSecretConfigured);
    }
    let presented = header.filter(|value| !value.trim().is_empty()).ok_or(SignatureError::TokenMissing)?;
    let presented_digest = Sha256::digest(presented.as_bytes());
    let mut matched = Choice::from(0);
    for token in usable_tokens {
        matched |= Sha256::digest(token).as_slice().ct_eq(presented_digest.as_slice());
    }
    if bool::from(matched) { Ok(()) } else { Err(SignatureError::TokenMismatch) }
}

/// The key a delivery is deduplicated by, from its `Idempotency-Key` and `X-Gitlab-Event-UUID`
/// header values (pass `None` for an absent header).
///
/// - `Idempotency-Key` is the same for every retry of one delivery and unique otherwise, so it
///   is the key as it stands.
/// - Without it, `X-Gitlab-Event-UUID` is used, followed by a colon and the first 16 hex digits
///   of the body's SHA-256: a retry repeats the body, but a hook triggered by an earlier hook
///   (gantry pushing to a repository GitLab also watches, say) shares the UUID with a different
///   body, and must not be dropped as a duplicate.
/// - GitLab before 14.8 sends neither; the key is then `sha256:` and the body's whole SHA-256.
///
/// A header that is present but longer than 128 bytes or holding anything but visible ASCII is
/// an error rather than a key.
pub fn delivery_key(
    idempotency_key: Option<&str>,
    event_uuid: Option<&str>,
    body: &[u8],
) -> Result<String, DeliveryKeyError> {
    if let Some(key) = usable_key(IDEMPOTENCY_KEY_HEADER, idempotency_key)? {
        return Ok(key.to_owned());
    }
    let body_digest = hex::encode(Sha256::digest(body));
    if let Some(uuid) = usable_key(EVENT_UUID_HEADER, event_uuid)? {
        return Ok(format!("{uuid}:{}", &body_digest[..BODY_DIGEST_PREFIX_LEN]));
    }
    Ok(format!("sha256:{body_digest}"))
}

/// Parses one delivery given its `X-Gitlab-Event` value and body.
///
/// The table in the module documentation says what each event type becomes. The body's
/// `object_kind`, when present, must agree with the event type; for a `System Hook` it decides
/// the event type.
pub fn parse(event_type: &str, body: &[u8]) -> Result<Parsed, ParseError> {
    let event_type = event_type.trim();
    if event_type.is_empty() {
        return Err(ParseError::MissingEventType);
    }
    let root = payload::decode(event_type, body)?;
    let payload = Payload::new(event_type, &root);
    let object_kind = payload.optional_str("object_kind")?;
    let kind = if event_type == "System Hook" {
        object_kind.ok_or_else(|| payload.missing("object_kind"))?
    } else {
        let Some(expected) = object_kind_of(event_type) else {
            return Ok(ignored(event_type, &format!("gantry does not act on GitLab `{event_type}` events")));
        };
        if let Some(found) = object_kind
            && found != expected
        {
            return Err(
                payload.invalid("object_kind", &format!("is `{found}`, but the delivery says it is a `{event_type}`"))
            );
        }
        expected
    };
    match kind {
        "push" | "tag_push" => parse_push(&payload),
        "merge_request" => parse_merge_request(&payload).map(Parsed::Event),
        "pipeline" => parse_pipeline(&payload),
        other => Ok(ignored(event_type, &format!("gantry does not act on GitLab `{other}` system hooks"))),
    }
}

/// The `X-Gitlab-Event` value for a body, from its `object_kind`, for tools that replay a saved
/// payload without its headers. `None` when the body names no kind GitLab is known to send.
pub fn infer_event_type(body: &[u8]) -> Option<&'static str> {
    let Ok(Value::Object(root)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let object_kind = root.get("object_kind")?.as_str()?;
    let event_type = match object_kind {
        "push" => "Push Hook",
        "tag_push" => "Tag Push Hook",
        "merge_request" => "Merge Request Hook",
        "pipeline" => "Pipeline Hook",
        "build" => "Job Hook",
        "deployment" => "Deployment Hook",
        "release" => "Release Hook",
        "note" => "Note Hook",
        "issue" => "Issue Hook",
        "wiki_page" => "Wiki Page Hook",
        "feature_flag" => "Feature Flag Hook",
        "emoji" => "Emoji Hook",
        _ => return None,
    };
    Some(event_type)
}

/// The `object_kind` a hook's payload has, for the hooks gantry acts on.
fn object_kind_of(event_type: &str) -> Option<&'static str> {
    match event_type {
        "Push Hook" => Some("push"),
        "Tag Push Hook" => Some("tag_push"),
        "Merge Request Hook" => Some("merge_request"),
        "Pipeline Hook" => Some("pipeline"),
        _ => None,
    }
}

/// A delivery-id header value that can serve as a key; `None` when absent or blank.
fn usable_key<'a>(header: &'static str, value: Option<&'a str>) -> Result<Option<&'a str>, DeliveryKeyError> {
    let Some(value) = value.map(str::trim).filter(|value| !value.is_empty()) else {
        return Ok(None);
    };
    let invalid = |reason: String| DeliveryKeyError::Invalid { header, reason };
    if value.len() > MAX_DELIVERY_KEY_LEN {
        return Err(invalid(format!("expected at most {MAX_DELIVERY_KEY_LEN} bytes, found {}", value.len())));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("expected visible ASCII characters without spaces".to_owned()));
    }
    Ok(Some(value))
}

fn ignored(event_type: &str, reason: &str) -> Parsed {
    Parsed::Ignored { event_type: event_type.to_owned(), reason: reason.to_owned() }
}

/// The project's full path (`group/subgroup/project`), which every project hook carries.
fn project(payload: &Payload<'_>) -> Result<String, ParseError> {
    payload.required_nonempty_str("project.path_with_namespace").map(str::to_owned)
}

/// The user behind a merge request or pipeline hook.
fn user(payload: &Payload<'_>) -> Result<Option<String>, ParseError> {
    Ok(payload.first_nonempty_str(&["user.username", "user.name"])?.map(str::to_owned))
}

/// Normalizes a `Push Hook` or `Tag Push Hook`: a push, or the deletion of a branch or tag.
fn parse_push(payload: &Payload<'_>) -> Result<Parsed, ParseError> {
    let full_ref = payload.required_str("ref")?;
    let Some((ref_kind, ref_name)) = split_ref(full_ref) else {
        return Ok(ignored(payload.event_type, &format!("`{full_ref}` is neither a branch nor a tag")));
    };
    if ref_name.is_empty() {
        return Err(payload.invalid("ref", "names no branch or tag"));
    }
    let after = payload.required_commit("after")?;
    let before = payload.optional_commit("before")?;
    // For an annotated tag `after` is the tag object and `checkout_sha` the commit it tags.
    let checkout_sha = payload.optional_commit("checkout_sha")?;
    let repo = project(payload)?;

    let deleted = is_zero_id(after);
    let sha = if deleted { None } else { Some(checkout_sha.unwrap_or(after)) };
    let kind = match (deleted, ref_kind) {
        (true, _) => EventKind::Delete,
        (false, RefKind::Branch) => EventKind::Push,
        (false, RefKind::Tag) => EventKind::Tag,
    };
    let actor = payload.first_nonempty_str(&["user_username", "user_name"])?;
    let timestamp = match sha {
        Some(sha) => commit_timestamp(payload, sha)?,
        None => None,
    };
    // GitLab lists at most the 20 newest commits of a push and says how many it holds.
    let changed = payload.changed_paths("commits")?;
    let total_commits = payload.optional_u64("total_commits_count")?;
    let changed_paths_complete = changed.commits > 0 && total_commits == Some(changed.commits as u64);

    Ok(Parsed::Event(GitEvent {
        ref_kind: Some(ref_kind),
        ref_name: Some(ref_name.to_owned()),
        before: before.filter(|id| !is_zero_id(id)).map(str::to_owned),
        sha: sha.map(str::to_owned),
        deleted,
        actor: actor.map(str::to_owned),
        timestamp,
        changed_paths: changed.paths,
        changed_paths_complete,
        ..GitEvent::new(Forge::Gitlab, kind, repo)
    }))
}

/// The timestamp of the listed commit with id `sha`; push hooks carry no push time of their
/// own, and list at most the 20 newest commits, so this is `None` when the commit is not there.
fn commit_timestamp(payload: &Payload<'_>, sha: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, ParseError> {
    for (index, commit) in payload.optional_array("commits")?.iter().enumerate() {
        let Some(commit) = commit.as_object() else {
            return Err(payload.invalid(&format!("commits[{index}]"), "is not an object"));
        };
        if commit.get("id").and_then(Value::as_str) != Some(sha) {
            continue;
        }
        return match commit.get("timestamp") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => parse_timestamp(text).map(Some).ok_or_else(|| {
                payload.invalid(&format!("commits[{index}].timestamp"), "is not a timestamp in a known format")
            }),
            Some(_) => Err(payload.invalid(&format!("commits[{index}].timestamp"), "is not a string")),
        };
    }
    Ok(None)
}

/// Normalizes a `Merge Request Hook`. Action `merge` is a merge; every other action is passed
/// on as [`EventKind::Other`] so it can be recorded.
///
/// A merge points at the target branch and the commit it now holds: the merge commit, else the
/// squash commit, else (a fast-forward merge) the source branch's last commit. Any other action
/// points at the source branch and its last commit.
fn parse_merge_request(payload: &Payload<'_>) -> Result<GitEvent, ParseError> {
    let action = payload.optional_str("object_attributes.action")?;
    let target = payload.required_nonempty_str("object_attributes.target_branch")?;
    let source = payload.required_nonempty_str("object_attributes.source_branch")?;
    let last_commit = payload.optional_commit("object_attributes.last_commit.id")?;
    let state = payload.optional_str("object_attributes.state")?;
    let change_request = ChangeRequest {
        number: payload.required_u64("object_attributes.iid")?,
        title: payload.optional_str("object_attributes.title")?.map(str::to_owned),
        url: payload.optional_str("object_attributes.url")?.map(str::to_owned),
        merged: state == Some("merged"),
        base: Some(target.to_owned()),
        head: Some(source.to_owned()),
    };
    let repo = project(payload)?;
    let timestamp = payload.optional_timestamp("object_attributes.updated_at")?;

    if action == Some("merge") {
        let merged_commit = match payload.optional_commit("object_attributes.merge_commit_sha")? {
            Some(sha) => Some(sha),
            None => match payload.optional_commit("object_attributes.squash_commit_sha")? {
                Some(sha) => Some(sha),
                None => last_commit,
            },
        };
        let merged_commit = merged_commit.ok_or_else(|| payload.missing("object_attributes.merge_commit_sha"))?;
        return Ok(GitEvent {
            ref_kind: Some(RefKind::Branch),
            ref_name: Some(target.to_owned()),
            sha: Some(merged_commit.to_owned()),
            merged: true,
            actor: user(payload)?,
            change_request: Some(ChangeRequest { merged: true, ..change_request }),
            timestamp,
            ..GitEvent::new(Forge::Gitlab, EventKind::Merge, repo)
        });
    }
    Ok(GitEvent {
        ref_kind: Some(RefKind::Branch),
        ref_name: Some(source.to_owned()),
        sha: last_commit.map(str::to_owned),
        actor: user(payload)?,
        change_request: Some(change_request),
        timestamp,
        ..GitEvent::new(Forge::Gitlab, EventKind::Other, repo)
    })
}

/// Normalizes a `Pipeline Hook`. Only a finished pipeline carries a result.
fn parse_pipeline(payload: &Payload<'_>) -> Result<Parsed, ParseError> {
    let status = payload.required_str("object_attributes.status")?;
    let conclusion = match status {
        "success" => CiConclusion::Success,
        "failed" => CiConclusion::Failure,
        "canceled" | "cancelled" => CiConclusion::Cancelled,
        "skipped" => CiConclusion::Skipped,
        other => {
            return Ok(ignored(
                payload.event_type,
                &format!("only finished pipelines carry a result; this one is `{other}`"),
            ));
        }
    };
    let run = CiRun {
        id: payload.required_u64("object_attributes.id")?,
        name: payload.optional_nonempty_str("object_attributes.name")?.map(str::to_owned),
        conclusion: Some(conclusion),
        outcome: Some(status.to_owned()),
        trigger: payload.optional_nonempty_str("object_attributes.source")?.map(str::to_owned),
        url: payload.optional_nonempty_str("object_attributes.url")?.map(str::to_owned),
    };

    let pipeline_ref = payload.required_nonempty_str("object_attributes.ref")?;
    // Usually a short branch or tag name with `tag` saying which; merge request pipelines run
    // on `refs/merge-requests/<iid>/head`, which is neither.
    let (ref_kind, ref_name) = if pipeline_ref.starts_with("refs/") {
        match split_ref(pipeline_ref) {
            Some((kind, name)) => (Some(kind), name),
            None => (None, pipeline_ref),
        }
    } else if payload.optional_bool("object_attributes.tag")?.unwrap_or(false) {
        (Some(RefKind::Tag), pipeline_ref)
    } else {
        (Some(RefKind::Branch), pipeline_ref)
    };
    let change_request = match payload.optional_u64("merge_request.iid")? {
        None => None,
        Some(number) => Some(ChangeRequest {
            number,
            title: payload.optional_str("merge_request.title")?.map(str::to_owned),
            url: payload.optional_str("merge_request.url")?.map(str::to_owned),
            merged: payload.optional_str("merge_request.state")? == Some("merged"),
            base: payload.optional_nonempty_str("merge_request.target_branch")?.map(str::to_owned),
            head: payload.optional_nonempty_str("merge_request.source_branch")?.map(str::to_owned),
        }),
    };
    Ok(Parsed::Event(GitEvent {
        ref_kind,
        ref_name: Some(ref_name.to_owned()),
        before: payload
            .optional_commit("object_attributes.before_sha")?
            .filter(|id| !is_zero_id(id))
            .map(str::to_owned),
        sha: Some(payload.required_commit("object_attributes.sha")?.to_owned()),
        actor: user(payload)?,
        change_request,
        timestamp: payload.first_timestamp(&["object_attributes.finished_at", "object_attributes.created_at"])?,
        ci: Some(run),
        ..GitEvent::new(Forge::Gitlab, EventKind::Ci, project(payload)?)
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const COMMIT: &str = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7";
    const OTHER: &str = "95790bf891e76fee5e1747ab589903a6a1f80f22";
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
            "object_kind": "push",
            "ref": full_ref,
            "before": OTHER,
            "after": COMMIT,
            "project": { "path_with_namespace": "group/sub/app" },
        })
    }

    fn minimal_merge_request(action: &str) -> Value {
        json!({
            "object_kind": "merge_request",
            "project": { "path_with_namespace": "group/app" },
            "user": { "username": "jsmith", "name": "John Smith" },
            "object_attributes": {
                "iid": 7,
                "action": action,
                "state": if action == "merge" { "merged" } else { "opened" },
                "target_branch": "develop",
                "source_branch": "feature/login",
                "last_commit": { "id": COMMIT },
                "updated_at": "2024-03-01 09:00:00 UTC",
            },
        })
    }

    fn minimal_pipeline(status: &str) -> Value {
        json!({
            "object_kind": "pipeline",
            "project": { "path_with_namespace": "group/app" },
            "object_attributes": {
                "id": 31,
                "ref": "main",
                "tag": false,
                "sha": COMMIT,
                "before_sha": ZERO,
                "status": status,
            },
        })
    }

    #[test]
    fn token_matches_exactly() {
        assert_eq!(verify_token(&[b"s3cret"], Some("s3cret")), Ok(()));
        for wrong in ["s3cre", "s3cret ", "S3CRET", "s3cret\0", "s3crets3cret"] {
            assert_eq!(verify_token(&[b"s3cret"], Some(wrong)), Err(SignatureError::TokenMismatch), "{wrong:?}");
        }
    }

    #[test]
    fn any_rotated_token_is_accepted() {
        let tokens: [&[u8]; 2] = [b"new-token", b"old-token"];
        assert_eq!(verify_token(&tokens, Some("old-token")), Ok(()));
        assert_eq!(verify_token(&tokens, Some("new-token")), Ok(()));
        assert_eq!(verify_token(&tokens, Some("older-token")), Err(SignatureError::TokenMismatch));
    }

    #[test]
    fn missing_or_blank_token_header() {
        assert_eq!(verify_token(&[b"s3cret"], None), Err(SignatureError::TokenMissing));
        assert_eq!(verify_token(&[b"s3cret"], Some("  ")), Err(SignatureError::TokenMissing));
    }

    #[test]
    fn empty_tokens_are_not_tokens() {
        assert_eq!(verify_token(&[b""], Some("")), Err(SignatureError::NoSecretConfigured));
        assert_eq!(verify_token(&[], Some("anything")), Err(SignatureError::NoSecretConfigured));
        // An empty entry next to a real one is skipped, not matched by an empty header.
        let tokens: [&[u8]; 2] = [b"", b"s3cret"];
        assert_eq!(verify_token(&tokens, Some("")), Err(SignatureError::TokenMissing));
    }

    #[test]
    fn token_errors_never_echo_the_token() {
        let error = verify_token(&[b"s3cret"], Some("guess")).unwrap_err();
        let message = error.to_string();
        assert!(!message.contains("s3cret") && !message.contains("guess"), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }

    #[test]
    fn idempotency_key_wins() {
        let key = delivery_key(
            Some("f5e5f430-f57b-4e6e-9fac-d9128cd7232f"),
            Some("13792a34-cac6-4fda-95a8-c58e00a3954e"),
            b"{}",
        )
        .unwrap();
        assert_eq!(key, "f5e5f430-f57b-4e6e-9fac-d9128cd7232f");
    }

    #[test]
    fn event_uuid_is_qualified_by_the_body() {
        let uuid = "13792a34-cac6-4fda-95a8-c58e00a3954e";
        let first = delivery_key(None, Some(uuid), b"{\"a\":1}").unwrap();
        let retry = delivery_key(Some(" "), Some(uuid), b"{\"a\":1}").unwrap();
        let recursive = delivery_key(None, Some(uuid), b"{\"a\":2}").unwrap();
        assert_eq!(first, retry);
        assert_ne!(first, recursive);
        assert!(first.starts_with(&format!("{uuid}:")), "{first}");
        assert_eq!(first.len(), uuid.len() + 1 + BODY_DIGEST_PREFIX_LEN);
    }

    #[test]
    fn without_headers_the_body_digest_is_the_key() {
        let key = delivery_key(None, None, b"").unwrap();
        // SHA-256 of the empty string.
        assert_eq!(key, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn unusable_delivery_headers_are_errors() {
        let long = "a".repeat(MAX_DELIVERY_KEY_LEN + 1);
        let error = delivery_key(Some(&long), None, b"").unwrap_err();
        assert!(
            matches!(&error, DeliveryKeyError::Invalid { header, .. } if *header == IDEMPOTENCY_KEY_HEADER),
            "{error:?}"
        );
        let error = delivery_key(None, Some("two words"), b"").unwrap_err();
        assert_eq!(
            error.to_string(),
            "read the `X-Gitlab-Event-UUID` header: expected visible ASCII characters without spaces"
        );
    }

    #[test]
    fn branch_push_points_at_checkout_sha() {
        let mut payload = minimal_push("refs/heads/feature/x");
        payload["checkout_sha"] = json!(COMMIT);
        payload["user_username"] = json!("jsmith");
        payload["commits"] = json!([
            { "id": OTHER, "timestamp": "2011-12-12T14:27:31+02:00", "added": ["a"], "modified": [], "removed": [] },
            { "id": COMMIT, "timestamp": "2012-01-03T23:36:29+02:00", "added": ["b"], "modified": ["a"], "removed": [] },
        ]);
        let event = parse_event("Push Hook", &payload);
        assert_eq!(event.forge, Forge::Gitlab);
        assert_eq!(event.kind, EventKind::Push);
        assert_eq!(event.repo, "group/sub/app");
        assert_eq!(event.ref_name.as_deref(), Some("feature/x"));
        assert_eq!(event.sha.as_deref(), Some(COMMIT));
        assert_eq!(event.before.as_deref(), Some(OTHER));
        assert_eq!(event.actor.as_deref(), Some("jsmith"));
        assert_eq!(event.changed_paths, ["a", "b"]);
        assert!(!event.changed_paths_complete, "the payload does not say how many commits the push holds");
        payload["total_commits_count"] = json!(2);
        assert!(parse_event("Push Hook", &payload).changed_paths_complete);
        payload["total_commits_count"] = json!(25);
        assert!(!parse_event("Push Hook", &payload).changed_paths_complete, "GitLab listed 2 of 25 commits");
        assert_eq!(event.timestamp.map(|t| t.to_rfc3339()), Some("2012-01-03T21:36:29+00:00".to_owned()));
    }

    #[test]
    fn annotated_tag_points_at_the_tagged_commit() {
        let mut payload = minimal_push("refs/tags/v2.0.0");
        payload["object_kind"] = json!("tag_push");
        payload["before"] = json!(ZERO);
        payload["after"] = json!(OTHER);
        payload["checkout_sha"] = json!(COMMIT);
        let event = parse_event("Tag Push Hook", &payload);
        assert_eq!(event.kind, EventKind::Tag);
        assert_eq!(event.ref_kind, Some(RefKind::Tag));
        assert_eq!(event.sha.as_deref(), Some(COMMIT));
        assert_eq!(event.before, None);
    }

    #[test]
    fn zero_after_is_a_deletion() {
        let mut payload = minimal_push("refs/heads/feature/x");
        payload["after"] = json!(ZERO);
        let event = parse_event("Push Hook", &payload);
        assert_eq!(event.kind, EventKind::Delete);
        assert!(event.deleted);
        assert_eq!(event.sha, None);
        assert_eq!(event.before.as_deref(), Some(OTHER));
    }

    #[test]
    fn object_kind_must_agree_with_the_header() {
        let error = parse_value("Tag Push Hook", &minimal_push("refs/heads/main")).unwrap_err();
        assert!(
            matches!(&error, ParseError::InvalidField { field, reason, .. } if field == "object_kind" && reason.contains("Tag Push Hook")),
            "{error:?}"
        );
    }

    #[test]
    fn system_hooks_dispatch_on_object_kind() {
        let event = parse_event("System Hook", &minimal_push("refs/heads/main"));
        assert_eq!(event.kind, EventKind::Push);

        let parsed = parse_value("System Hook", &json!({ "object_kind": "repository_update" })).unwrap();
        assert!(
            matches!(&parsed, Parsed::Ignored { reason, .. } if reason.contains("repository_update")),
            "{parsed:?}"
        );
        let error = parse_value("System Hook", &json!({ "event_name": "project_create" })).unwrap_err();
        assert!(matches!(&error, ParseError::MissingField { field, .. } if field == "object_kind"), "{error:?}");
    }

    #[test]
    fn other_hooks_are_ignored_with_their_name() {
        let parsed = parse("Note Hook", b"{\"object_kind\":\"note\"}").unwrap();
        assert!(
            matches!(&parsed, Parsed::Ignored { event_type, reason } if event_type == "Note Hook" && reason.contains("Note Hook")),
            "{parsed:?}"
        );
    }

    #[test]
    fn merge_action_is_a_merge_into_the_target() {
        let mut payload = minimal_merge_request("merge");
        payload["object_attributes"]["merge_commit_sha"] = json!(OTHER);
        let event = parse_event("Merge Request Hook", &payload);
        assert_eq!(event.kind, EventKind::Merge);
        assert!(event.merged);
        assert_eq!(event.ref_name.as_deref(), Some("develop"));
        assert_eq!(event.sha.as_deref(), Some(OTHER));
        assert_eq!(event.actor.as_deref(), Some("jsmith"));
        let request = event.change_request.unwrap();
        assert_eq!(request.number, 7);
        assert!(request.merged);
        assert_eq!(request.head.as_deref(), Some("feature/login"));
        assert_eq!(event.timestamp.map(|t| t.to_rfc3339()), Some("2024-03-01T09:00:00+00:00".to_owned()));
    }

    #[test]
    fn fast_forward_merge_points_at_the_last_commit() {
        let mut payload = minimal_merge_request("merge");
        payload["object_attributes"]["merge_commit_sha"] = Value::Null;
        assert_eq!(parse_event("Merge Request Hook", &payload).sha.as_deref(), Some(COMMIT));
        payload["object_attributes"]["squash_commit_sha"] = json!(OTHER);
        assert_eq!(parse_event("Merge Request Hook", &payload).sha.as_deref(), Some(OTHER));
    }

    #[test]
    fn merge_without_any_commit_is_an_error() {
        let mut payload = minimal_merge_request("merge");
        payload["object_attributes"].as_object_mut().unwrap().remove("last_commit");
        let error = parse_value("Merge Request Hook", &payload).unwrap_err();
        assert!(
            matches!(&error, ParseError::MissingField { field, .. } if field == "object_attributes.merge_commit_sha"),
            "{error:?}"
        );
    }

    #[test]
    fn other_merge_request_actions_are_recorded_as_other() {
        for action in ["open", "update", "close", "approved"] {
            let event = parse_event("Merge Request Hook", &minimal_merge_request(action));
            assert_eq!(event.kind, EventKind::Other, "{action}");
            assert!(!event.merged, "{action}");
            assert_eq!(event.ref_name.as_deref(), Some("feature/login"), "{action}");
            assert_eq!(event.sha.as_deref(), Some(COMMIT), "{action}");
            assert_eq!(event.change_request.map(|r| r.number), Some(7), "{action}");
        }
    }

    #[test]
    fn finished_pipelines_are_ci_results() {
        for (status, conclusion) in [
            ("success", CiConclusion::Success),
            ("failed", CiConclusion::Failure),
            ("canceled", CiConclusion::Cancelled),
            ("skipped", CiConclusion::Skipped),
        ] {
            let event = parse_event("Pipeline Hook", &minimal_pipeline(status));
            assert_eq!(event.kind, EventKind::Ci, "{status}");
            assert_eq!(event.ref_kind, Some(RefKind::Branch), "{status}");
            assert_eq!(event.ref_name.as_deref(), Some("main"), "{status}");
            assert_eq!(event.before, None, "{status}");
            let run = event.ci.unwrap();
            assert_eq!(run.id, 31);
            assert_eq!(run.conclusion, Some(conclusion), "{status}");
            assert_eq!(run.outcome.as_deref(), Some(status));
        }
    }

    #[test]
    fn unfinished_pipelines_are_ignored() {
        for status in ["created", "pending", "running", "manual"] {
            let parsed = parse_value("Pipeline Hook", &minimal_pipeline(status)).unwrap();
            assert!(matches!(&parsed, Parsed::Ignored { reason, .. } if reason.contains(status)), "{parsed:?}");
        }
    }

    #[test]
    fn pipeline_refs_keep_their_kind() {
        let mut payload = minimal_pipeline("success");
        payload["object_attributes"]["tag"] = json!(true);
        payload["object_attributes"]["ref"] = json!("v1.0.0");
        let event = parse_event("Pipeline Hook", &payload);
        assert_eq!(event.ref_kind, Some(RefKind::Tag));

        payload["object_attributes"]["ref"] = json!("refs/merge-requests/3/head");
        let event = parse_event("Pipeline Hook", &payload);
        assert_eq!(event.ref_kind, None);
        assert_eq!(event.ref_name.as_deref(), Some("refs/merge-requests/3/head"));
    }

    #[test]
    fn missing_project_is_named() {
        let mut payload = minimal_push("refs/heads/main");
        payload.as_object_mut().unwrap().remove("project");
        let error = parse_value("Push Hook", &payload).unwrap_err();
        assert_eq!(error.to_string(), "read the `Push Hook` payload: field `project.path_with_namespace` is missing");
    }

    #[test]
    fn garbled_commit_timestamp_is_reported() {
        let mut payload = minimal_push("refs/heads/main");
        payload["commits"] = json!([{ "id": COMMIT, "timestamp": "last tuesday" }]);
        let error = parse_value("Push Hook", &payload).unwrap_err();
        assert!(
            matches!(&error, ParseError::InvalidField { field, .. } if field == "commits[0].timestamp"),
            "{error:?}"
        );
    }

    #[test]
    fn event_type_inference_follows_object_kind() {
        assert_eq!(infer_event_type(b"{\"object_kind\":\"tag_push\"}"), Some("Tag Push Hook"));
        assert_eq!(infer_event_type(b"{\"object_kind\":\"pipeline\"}"), Some("Pipeline Hook"));
        assert_eq!(infer_event_type(b"{\"object_kind\":\"unheard_of\"}"), None);
        assert_eq!(infer_event_type(b"{}"), None);
        assert_eq!(infer_event_type(b"not json"), None);
    }

    #[test]
    fn non_json_and_non_objects_are_errors() {
        assert!(matches!(parse("Push Hook", b"token=abc"), Err(ParseError::InvalidJson { .. })));
        assert!(matches!(parse("Push Hook", b"\"push\""), Err(ParseError::NotAnObject { .. })));
        assert!(matches!(parse("", b"{}"), Err(ParseError::MissingEventType)));
    }
}
