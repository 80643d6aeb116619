//! GitHub deliveries: `X-Hub-Signature-256` verification and payload normalization.
//!
//! GitHub signs the raw body with HMAC-SHA256 keyed by the hook's secret and sends the hex digest
//! as `sha256=<hex>`. Payloads are read as loose JSON (see the `payload` module): only the fields
//! gantry relies on are required, and each missing or mistyped one is reported by name.
//!
//! What each `X-GitHub-Event` becomes:
//!
//! | event | becomes |
//! |---|---|
//! | `push` | [`EventKind::Push`] (branch), [`EventKind::Tag`], or [`EventKind::Delete`] |
//! | `create` | [`EventKind::Push`] (branch) or [`EventKind::Tag`], without a commit |
//! | `delete` | [`EventKind::Delete`] |
//! | `pull_request` | [`EventKind::Merge`] when closed by merging, [`EventKind::Other`] otherwise |
//! | `ping` | [`EventKind::Ping`] |
//! | `package`, `registry_package` (`published`) | [`EventKind::Package`] |
//! | `workflow_run` (`completed`) | [`EventKind::Ci`] |
//! | anything else | [`Parsed::Ignored`] |

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::payload::{self, Payload, is_commit_id, is_image_digest, is_zero_id, split_ref};
use crate::{
    ChangeRequest, CiConclusion, CiRun, EventKind, Forge, GitEvent, PackageRef, ParseError, Parsed, RefKind,
    SignatureError,
};

type HmacSha256 = Hmac<Sha256>;

/// The scheme prefix of `X-Hub-Signature-256` values.
const SIGNATURE_PREFIX: &str = "sha256=";

/// Length of a hex-encoded SHA-256 digest.
const SIGNATURE_HEX_LEN: usize = 64;

/// Top-level keys that mark an event type [`parse`] ignores even when the payload also embeds a
/// workflow run or pull request.
const OTHER_EVENT_KEYS: [&str; 10] = [
    "deployment",
    "deployment_status",
    "workflow_job",
    "check_run",
    "check_suite",
    "release",
    "review",
    "comment",
    "issue",
    "thread",
];

/// The OCI image label that build tools set to the commit an image was built from.
const REVISION_LABEL: &str = "org.opencontainers.image.revision";

/// Verifies `X-Hub-Signature-256` (`sha256=<hex>`) over the raw body with any of the given secrets
/// (several are accepted so secrets can be rotated). Constant-time comparison (hmac's verify_slice).
///
/// Empty secrets are skipped: an empty HMAC key is something anyone can guess, so a list holding
/// only empty secrets counts as [`SignatureError::NoSecretConfigured`].
pub fn verify_signature(secrets: &[&[u8]], signature_header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let mut usable_secrets = secrets.iter().filter(|secret| !secret.is_empty()).peekable();
    if usable_secrets.peek().is_none() {
        return Err(SignatureError::NoSecretConfigured);
    }
    let header = signature_header.map(str::trim).filter(|value| !value.is_empty()).ok_or(SignatureError::Missing)?;
    let expected = decode_signature(header)?;

    // Every secret is tried even after a match so the response time does not reveal which
    // secret (old or new) the sender used.
    let mut matched = false;
    for secret in usable_secrets {
        let mut mac = keyed_mac(secret);
        mac.update(body);
        matched |= mac.verify_slice(&expected).is_ok();
    }
    if matched { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// Computes the header value GitHub would send for this body (used by the demo sender and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = keyed_mac(secret);
    mac.update(body);
    format!("{SIGNATURE_PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// Parses one delivery given its `X-GitHub-Event` value and body.
///
/// The table in the module documentation says what each event type becomes. Event types and
/// actions gantry has no use for are [`Parsed::Ignored`], as is a push to a ref outside
/// `refs/heads/` and `refs/tags/`. The body must be JSON whatever the event type (hooks must be
/// configured with content type `application/json`).
///
/// GitHub sends a `push` alongside every `create` and `delete` of a branch or tag. Only the push
/// carries the commit, so a `create` never names one ([`GitEvent::sha`] is `None`) and cannot
/// start a promotion on its own; a deletion arrives twice (as a `push` and as a `delete`), so
/// whatever reacts to deletions must be idempotent.
pub fn parse(event_type: &str, body: &[u8]) -> Result<Parsed, ParseError> {
    let event_type = event_type.trim();
    if event_type.is_empty() {
        return Err(ParseError::MissingEventType);
    }
    let root = payload::decode(event_type, body)?;
    let payload = Payload::new(event_type, &root);
    match event_type {
        "push" => parse_push(&payload),
        "ping" => parse_ping(&payload).map(Parsed::Event),
        "create" => parse_ref_change(&payload, false),
        "delete" => parse_ref_change(&payload, true),
        "pull_request" => parse_pull_request(&payload).map(Parsed::Event),
        "package" | "registry_package" => parse_package(&payload, event_type),
        "workflow_run" => parse_workflow_run(&payload),
        other => Ok(ignored(other, &format!("gantry does not act on GitHub `{other}` events"))),
    }
}

/// Guesses the `X-GitHub-Event` value from a body's top-level keys, for tools that replay a
/// saved payload without its headers. Only the event types [`parse`] turns into events are
/// recognized; `None` means "say which one it is".
pub fn infer_event_type(body: &[u8]) -> Option<&'static str> {
    let Ok(Value::Object(root)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let has = |key: &str| root.contains_key(key);
    if has("zen") && has("hook_id") {
        Some("ping")
    } else if has("ref") && has("before") && has("after") {
        Some("push")
    } else if has("ref") && has("ref_type") {
        // Only `create` payloads carry the repository's default branch.
        if has("master_branch") { Some("create") } else { Some("delete") }
    } else if OTHER_EVENT_KEYS.iter().any(|key| has(key)) {
        // Deployment, check and review payloads embed workflow runs and pull requests too;
        // their own object says what they are.
        None
    } else if has("workflow_run") && has("workflow") {
        Some("workflow_run")
    } else if has("registry_package") {
        Some("registry_package")
    } else if has("package") && has("action") {
        Some("package")
    } else if has("pull_request") && has("action") {
        Some("pull_request")
    } else {
        None
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
        return Err(malformed(format!("the digest after `{SIGNATURE_PREFIX}` is not hexadecimal")));
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
    Parsed::Ignored { event_type: event_type.to_owned(), reason: reason.to_owned() }
}

/// The repository's full name, which every repository event carries.
fn repository(payload: &Payload<'_>) -> Result<String, ParseError> {
    payload.required_nonempty_str("repository.full_name").map(str::to_owned)
}

fn sender(payload: &Payload<'_>) -> Result<Option<String>, ParseError> {
    Ok(payload.optional_nonempty_str("sender.login")?.map(str::to_owned))
}

/// The most commits a GitHub push payload lists.
const MAX_LISTED_COMMITS: usize = 2048;
/// The most changed files a GitHub push payload lists for one commit.
const MAX_LISTED_FILES_PER_COMMIT: usize = 3000;

/// Normalizes a `push` delivery: a branch push, a tag push, or the deletion of either.
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
    let head_commit_id = payload.optional_commit("head_commit.id")?;
    let repo = repository(payload)?;

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
    let actor = payload.first_nonempty_str(&["pusher.name", "sender.login"])?;
    let timestamp = payload.first_timestamp(&["head_commit.timestamp", "repository.pushed_at"])?;
    let changed = payload.changed_paths("commits")?;
    // GitHub lists at most 2048 commits of a push and at most 3000 files of one commit; a list
    // at either limit may have been cut.
    let changed_paths_complete = changed.commits > 0
        && changed.commits < MAX_LISTED_COMMITS
        && changed.most_files_in_a_commit < MAX_LISTED_FILES_PER_COMMIT;

    Ok(Parsed::Event(GitEvent {
        ref_kind: Some(ref_kind),
        ref_name: Some(ref_name.to_owned()),
        before: before.filter(|id| !is_zero_id(id)).map(str::to_owned),
        sha,
        deleted,
        actor: actor.map(str::to_owned),
        timestamp,
        changed_paths: changed.paths,
        changed_paths_complete,
        ..GitEvent::new(Forge::Github, kind, repo)
    }))
}

/// Normalizes a `ping`, sent once when a hook is created and on demand.
fn parse_ping(payload: &Payload<'_>) -> Result<GitEvent, ParseError> {
    // Organization and app hooks are not attached to a repository, so fall back to the owner.
    let repo = payload.first_nonempty_str(&["repository.full_name", "organization.login"])?;
    Ok(GitEvent { actor: sender(payload)?, ..GitEvent::new(Forge::Github, EventKind::Ping, repo.unwrap_or_default()) })
}

/// Normalizes a `create` or `delete` of a branch or tag. These name the ref but no commit.
fn parse_ref_change(payload: &Payload<'_>, deleted: bool) -> Result<Parsed, ParseError> {
    let ref_type = payload.required_str("ref_type")?;
    let ref_kind = match ref_type {
        "branch" => RefKind::Branch,
        "tag" => RefKind::Tag,
        other => {
            return Ok(ignored(
                payload.event_type,
                &format!("the created or deleted `{other}` is neither a branch nor a tag"),
            ));
        }
    };
    let ref_name = payload.required_nonempty_str("ref")?;
    let kind = match (deleted, ref_kind) {
        (true, _) => EventKind::Delete,
        (false, RefKind::Branch) => EventKind::Push,
        (false, RefKind::Tag) => EventKind::Tag,
    };
    Ok(Parsed::Event(GitEvent {
        ref_kind: Some(ref_kind),
        ref_name: Some(ref_name.to_owned()),
        deleted,
        actor: sender(payload)?,
        timestamp: payload.optional_timestamp("repository.pushed_at")?,
        ..GitEvent::new(Forge::Github, kind, repository(payload)?)
    }))
}

/// Normalizes a `pull_request` delivery. Only `closed` with `merged: true` is a merge; every
/// other action is passed on as [`EventKind::Other`] so it can be recorded.
///
/// A merge points at the base branch and the merge commit (what the base now holds); any other
/// action points at the head branch and its tip.
fn parse_pull_request(payload: &Payload<'_>) -> Result<GitEvent, ParseError> {
    let action = payload.required_str("action")?;
    let number = match payload.optional_u64("number")? {
        Some(number) => number,
        None => payload.required_u64("pull_request.number")?,
    };
    let base = payload.required_nonempty_str("pull_request.base.ref")?;
    let head = payload.required_nonempty_str("pull_request.head.ref")?;
    let head_sha = payload.required_commit("pull_request.head.sha")?;
    let request_merged = payload.optional_bool("pull_request.merged")?.unwrap_or(false);
    let change_request = ChangeRequest {
        number,
        title: payload.optional_str("pull_request.title")?.map(str::to_owned),
        url: payload.optional_str("pull_request.html_url")?.map(str::to_owned),
        merged: request_merged,
        base: Some(base.to_owned()),
        head: Some(head.to_owned()),
    };
    let repo = repository(payload)?;

    // A later action on an already merged request (a label, say) also says `merged: true`;
    // only the `closed` delivery is the merge itself.
    if action == "closed" && request_merged {
        let merge_commit = payload.required_commit("pull_request.merge_commit_sha")?;
        let actor = payload.first_nonempty_str(&["pull_request.merged_by.login", "sender.login"])?;
        return Ok(GitEvent {
            ref_kind: Some(RefKind::Branch),
            ref_name: Some(base.to_owned()),
            sha: Some(merge_commit.to_owned()),
            merged: true,
            actor: actor.map(str::to_owned),
            change_request: Some(change_request),
            timestamp: payload.first_timestamp(&["pull_request.merged_at", "pull_request.closed_at"])?,
            ..GitEvent::new(Forge::Github, EventKind::Merge, repo)
        });
    }
    Ok(GitEvent {
        ref_kind: Some(RefKind::Branch),
        ref_name: Some(head.to_owned()),
        sha: Some(head_sha.to_owned()),
        actor: sender(payload)?,
        change_request: Some(change_request),
        timestamp: payload.optional_timestamp("pull_request.updated_at")?,
        ..GitEvent::new(Forge::Github, EventKind::Other, repo)
    })
}

/// Normalizes a `package` or `registry_package` delivery (the object sits under a key named
/// like the event). Only `published` is an event; for an image it names the image, its tag and
/// its digest.
fn parse_package(payload: &Payload<'_>, root_key: &str) -> Result<Parsed, ParseError> {
    let action = payload.required_str("action")?;
    if action != "published" {
        return Ok(ignored(
            payload.event_type,
            &format!("only published packages are promoted; this delivery is `{action}`"),
        ));
    }
    let field = |name: &str| format!("{root_key}.{name}");
    let name = payload.required_nonempty_str(&field("name"))?;
    let package_type = payload.required_str(&field("package_type"))?.to_ascii_lowercase();
    let registry_type = payload.optional_str(&field("registry.type"))?.map(str::to_ascii_lowercase);
    let container_metadata = payload.lookup(&field("package_version.container_metadata"))?;
    // GitHub's own examples disagree with themselves (an image with `package_type: npm`), so
    // any of the three signs makes it an image.
    let is_image = matches!(package_type.as_str(), "container" | "docker")
        || matches!(registry_type.as_deref(), Some("container" | "docker"))
        || container_metadata.is_some();

    let version = payload.optional_nonempty_str(&field("package_version.version"))?;
    let mut package = PackageRef {
        package_type,
        name: name.to_owned(),
        version: version.map(str::to_owned),
        image: None,
        tag: None,
        digest: None,
        url: payload.first_nonempty_str(&[&field("package_version.html_url"), &field("html_url")])?.map(str::to_owned),
    };
    let mut sha = None;
    if is_image {
        let package_url = payload.optional_nonempty_str(&field("package_version.package_url"))?;
        let (image, url_tag) = match package_url {
            Some(url) => split_image_reference(payload, &field("package_version.package_url"), url)?,
            None => {
                // Without a URL the image is GitHub's registry, the owner, and the name; both
                // parts come from the payload, so both must be checked before forming a name.
                let owner_fields =
                    [field("owner.login"), "organization.login".to_owned(), "repository.owner.login".to_owned()];
                let mut owner = None;
                for owner_field in &owner_fields {
                    if let Some(login) = payload.optional_nonempty_str(owner_field)? {
                        owner = Some((owner_field.as_str(), login));
                        break;
                    }
                }
                let (owner_field, owner) = owner.ok_or_else(|| payload.missing(&owner_fields[0]))?;
                check_image_path(payload, owner_field, owner)?;
                check_image_path(payload, &field("name"), name)?;
                (format!("ghcr.io/{owner}/{name}").to_ascii_lowercase(), None)
            }
        };
        let tag_field = field("package_version.container_metadata.tag.name");
        let tag = match payload.optional_nonempty_str(&tag_field)? {
            Some(tag) => Some(check_image_tag(payload, &tag_field, tag)?),
            None => url_tag,
        };
        // The first well-formed digest wins; GitHub's examples carry truncated ones, which must
        // never be used to pin an image.
        let digest_fields = [
            field("package_version.container_metadata.tag.digest"),
            field("package_version.container_metadata.manifest.digest"),
            field("package_version.version"),
            field("package_version.name"),
        ];
        let mut digest = None;
        for digest_field in &digest_fields {
            if let Some(candidate) = payload.optional_str(digest_field)?
                && is_image_digest(candidate)
            {
                digest = Some(candidate.to_owned());
                break;
            }
        }
        // For an image the version is usually the digest again, which says nothing new.
        if package.version.as_deref().is_some_and(|v| v.contains(':')) {
            package.version = None;
        }
        package.image = Some(image);
        package.tag = tag;
        package.digest = digest;
        sha = image_revision(payload, &field("package_version.container_metadata.labels"))?;
    }

    let repo = payload.first_nonempty_str(&["repository.full_name", "organization.login", &field("owner.login")])?;
    Ok(Parsed::Event(GitEvent {
        sha,
        actor: sender(payload)?,
        timestamp: payload.first_timestamp(&[&field("updated_at"), &field("created_at")])?,
        package: Some(package),
        ..GitEvent::new(Forge::Github, EventKind::Package, repo.unwrap_or_default())
    }))
}

/// Splits `ghcr.io/owner/name:tag` (or `…@sha256:…`) into the lowercased repository and the
/// tag, if any. GitHub writes `ghcr.io/owner/name:` with nothing after the colon for untagged
/// pushes.
fn split_image_reference(
    payload: &Payload<'_>,
    field: &str,
    reference: &str,
) -> Result<(String, Option<String>), ParseError> {
    if reference.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(payload.invalid(field, "holds whitespace or characters outside ASCII"));
    }
    let without_digest = reference.split_once('@').map_or(reference, |(name, _)| name);
    // A colon after the last slash starts the tag; one before it belongs to a registry port.
    let last_slash = without_digest.rfind('/').unwrap_or(0);
    let (repository, tag) = match without_digest[last_slash..].find(':') {
        Some(offset) => {
            let colon = last_slash + offset;
            (&without_digest[..colon], &without_digest[colon + 1..])
        }
        None => (without_digest, ""),
    };
    if repository.is_empty() || repository.ends_with('/') {
        return Err(payload.invalid(field, "names no image repository"));
    }
    let tag = if tag.is_empty() { None } else { Some(check_image_tag(payload, field, tag)?) };
    // Registries reject upper case in repository names, and GitHub's URLs keep the owner's case.
    Ok((repository.to_ascii_lowercase(), tag))
}

/// A part of an image repository name: letters, digits, `.`, `_`, `-`, and `/` between parts.
fn check_image_path(payload: &Payload<'_>, field: &str, part: &str) -> Result<(), ParseError> {
    let valid = !part.starts_with('/')
        && !part.ends_with('/')
        && !part.contains("//")
        && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if valid { Ok(()) } else { Err(payload.invalid(field, "cannot be part of an image name")) }
}

/// An OCI tag: up to 128 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
fn check_image_tag(payload: &Payload<'_>, field: &str, tag: &str) -> Result<String, ParseError> {
    let valid = tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid { Ok(tag.to_owned()) } else { Err(payload.invalid(field, "is not a valid image tag")) }
}

/// The commit an image was built from, from its `org.opencontainers.image.revision` label.
/// The label's name holds dots, so it is looked up by hand rather than by dotted path.
fn image_revision(payload: &Payload<'_>, labels_field: &str) -> Result<Option<String>, ParseError> {
    let all_labels = format!("{labels_field}.all_labels");
    let from_all_labels = match payload.lookup(&all_labels)? {
        None => None,
        Some(Value::Object(labels)) => match labels.get(REVISION_LABEL) {
            None | Some(Value::Null) => None,
            Some(Value::String(revision)) => Some(revision.as_str()),
            Some(_) => {
                return Err(payload.invalid(&format!("{all_labels}.{REVISION_LABEL}"), "is not a string"));
            }
        },
        Some(_) => return Err(payload.invalid(&all_labels, "is not an object")),
    };
    let revision = match from_all_labels.filter(|r| !r.is_empty()) {
        Some(revision) => Some(revision),
        None => payload.optional_nonempty_str(&format!("{labels_field}.revision"))?,
    };
    // A label is whatever the build wrote; only a real commit id is worth passing on.
    Ok(revision.filter(|r| is_commit_id(r)).map(str::to_owned))
}

/// Normalizes a `workflow_run` delivery. Only `completed` runs carry a result.
fn parse_workflow_run(payload: &Payload<'_>) -> Result<Parsed, ParseError> {
    let action = payload.required_str("action")?;
    if action != "completed" {
        return Ok(ignored(
            payload.event_type,
            &format!("only completed workflow runs carry a result; this delivery is `{action}`"),
        ));
    }
    let outcome = payload.optional_nonempty_str("workflow_run.conclusion")?;
    let conclusion = outcome.map(|word| match word {
        "success" => CiConclusion::Success,
        "failure" | "timed_out" | "startup_failure" => CiConclusion::Failure,
        "cancelled" => CiConclusion::Cancelled,
        "skipped" => CiConclusion::Skipped,
        _ => CiConclusion::Neutral,
    });
    let run = CiRun {
        id: payload.required_u64("workflow_run.id")?,
        name: payload.optional_nonempty_str("workflow_run.name")?.map(str::to_owned),
        conclusion,
        outcome: match outcome {
            Some(word) => Some(word),
            None => payload.optional_nonempty_str("workflow_run.status")?,
        }
        .map(str::to_owned),
        trigger: payload.optional_nonempty_str("workflow_run.event")?.map(str::to_owned),
        url: payload.optional_nonempty_str("workflow_run.html_url")?.map(str::to_owned),
    };
    let actor = payload.first_nonempty_str(&[
        "workflow_run.triggering_actor.login",
        "workflow_run.actor.login",
        "sender.login",
    ])?;
    Ok(Parsed::Event(GitEvent {
        // `head_branch` holds a tag's name for runs started by a tag, and nothing in the
        // payload says which it is, so the ref kind stays unknown.
        ref_name: payload.optional_nonempty_str("workflow_run.head_branch")?.map(str::to_owned),
        sha: Some(payload.required_commit("workflow_run.head_sha")?.to_owned()),
        actor: actor.map(str::to_owned),
        timestamp: payload.optional_timestamp("workflow_run.updated_at")?,
        ci: Some(run),
        ..GitEvent::new(Forge::Github, EventKind::Ci, repository(payload)?)
    }))
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
        assert_eq!(sign(b"key", b""), "sha256=5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0");
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
        assert_eq!(verify_signature(&[b""], Some(&header), b"body"), Err(SignatureError::NoSecretConfigured));
        assert_eq!(verify_signature(&[], Some(&header), b"body"), Err(SignatureError::NoSecretConfigured));
    }

    #[test]
    fn surrounding_whitespace_in_the_header_is_tolerated() {
        let header = format!(" {} ", sign(b"s3cret", b"body"));
        assert_eq!(verify_signature(&[b"s3cret"], Some(&header), b"body"), Ok(()));
    }

    #[test]
    fn blank_header_counts_as_missing() {
        assert_eq!(verify_signature(&[b"s3cret"], Some("  "), b"body"), Err(SignatureError::Missing));
    }

    #[test]
    fn short_digest_is_malformed() {
        let error = verify_signature(&[b"s3cret"], Some("sha256=abcd"), b"body").unwrap_err();
        assert!(matches!(&error, SignatureError::Malformed { reason } if reason.contains("found 4")), "{error:?}");
    }

    #[test]
    fn sha1_header_is_malformed_with_a_hint() {
        let error =
            verify_signature(&[b"s3cret"], Some("sha1=7d38cdd689735b008b3c702edd92eea23791c5f6"), b"body").unwrap_err();
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
        assert_eq!(event.timestamp.map(|t| t.to_rfc3339()), Some("2024-03-01T09:00:00+00:00".to_owned()));
    }

    #[test]
    fn branch_names_keep_their_slashes() {
        let event = parse_event("push", &minimal_push("refs/heads/release/2024.03"));
        assert_eq!(event.kind, EventKind::Push);
        assert_eq!(event.ref_name.as_deref(), Some("release/2024.03"));
        assert_eq!(event.before, None, "an all-zero before means the branch is new");
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
        assert!(matches!(&error, ParseError::InvalidField { field, .. } if field == "ref"), "{error:?}");
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
        assert_eq!(event.changed_paths, ["a.txt", "b.txt", "c/d.yaml", "old.txt"]);
        assert!(event.changed_paths_complete);
    }

    #[test]
    fn changed_paths_at_the_listing_limits_may_be_incomplete() {
        let mut payload = minimal_push("refs/heads/main");
        assert!(!parse_event("push", &payload).changed_paths_complete, "no commits listed");
        payload["commits"] = json!(vec![json!({ "modified": ["a.txt"] }); MAX_LISTED_COMMITS]);
        assert!(!parse_event("push", &payload).changed_paths_complete, "as many commits as GitHub lists");
        let files: Vec<String> = (0..MAX_LISTED_FILES_PER_COMMIT).map(|i| format!("f{i}")).collect();
        payload["commits"] = json!([{ "added": files, "modified": [], "removed": [] }]);
        assert!(!parse_event("push", &payload).changed_paths_complete, "as many files as GitHub lists");
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
        assert_eq!(event.timestamp.map(|t| t.to_rfc3339()), Some("2019-05-15T15:20:57+00:00".to_owned()));

        payload["repository"]["pushed_at"] = json!("2019-05-15T15:20:33Z");
        let event = parse_event("push", &payload);
        assert_eq!(event.timestamp.map(|t| t.to_rfc3339()), Some("2019-05-15T15:20:33+00:00".to_owned()));
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
        assert_eq!(parse_event("push", &payload).actor.as_deref(), Some("octocat"));

        payload["pusher"] = json!({ "name": "hubot" });
        assert_eq!(parse_event("push", &payload).actor.as_deref(), Some("hubot"));
    }

    #[test]
    fn non_hex_commit_ids_are_rejected() {
        let mut payload = minimal_push("refs/heads/main");
        payload["after"] = json!("not-a-commit");
        let error = parse_value("push", &payload).unwrap_err();
        assert!(matches!(&error, ParseError::InvalidField { field, .. } if field == "after"), "{error:?}");
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
        assert_eq!(error.to_string(), "read the `push` payload: field `repository.full_name` is missing");
    }

    #[test]
    fn non_object_parent_is_reported_at_the_parent() {
        let mut payload = minimal_push("refs/heads/main");
        payload["repository"] = json!("octo-org/app");
        let error = parse_value("push", &payload).unwrap_err();
        assert!(matches!(&error, ParseError::InvalidField { field, .. } if field == "repository"), "{error:?}");
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

    fn ref_change(ref_type: &str, name: &str) -> Value {
        json!({
            "ref": name,
            "ref_type": ref_type,
            "master_branch": "main",
            "repository": { "full_name": "octo-org/app", "pushed_at": "2024-03-01T10:00:00Z" },
            "sender": { "login": "octocat" },
        })
    }

    #[test]
    fn created_branches_and_tags_carry_no_commit() {
        let event = parse_event("create", &ref_change("branch", "feature/login"));
        assert_eq!(event.kind, EventKind::Push);
        assert_eq!(event.ref_kind, Some(RefKind::Branch));
        assert_eq!(event.ref_name.as_deref(), Some("feature/login"));
        assert_eq!(event.sha, None);
        assert!(!event.deleted);
        assert_eq!(event.actor.as_deref(), Some("octocat"));
        assert!(event.timestamp.is_some());

        let event = parse_event("create", &ref_change("tag", "v1.0.0"));
        assert_eq!(event.kind, EventKind::Tag);
        assert_eq!(event.ref_kind, Some(RefKind::Tag));
    }

    #[test]
    fn deleted_branches_and_tags_are_deletions() {
        for (ref_type, ref_kind) in [("branch", RefKind::Branch), ("tag", RefKind::Tag)] {
            let event = parse_event("delete", &ref_change(ref_type, "feature/login"));
            assert_eq!(event.kind, EventKind::Delete, "{ref_type}");
            assert_eq!(event.ref_kind, Some(ref_kind), "{ref_type}");
            assert!(event.deleted, "{ref_type}");
            assert_eq!(event.sha, None, "{ref_type}");
        }
    }

    #[test]
    fn created_repositories_are_ignored() {
        let parsed = parse_value("create", &ref_change("repository", "app")).unwrap();
        assert!(matches!(&parsed, Parsed::Ignored { reason, .. } if reason.contains("repository")), "{parsed:?}");
    }

    #[test]
    fn empty_created_ref_is_invalid() {
        let error = parse_value("create", &ref_change("branch", "")).unwrap_err();
        assert!(matches!(&error, ParseError::InvalidField { field, .. } if field == "ref"), "{error:?}");
    }

    fn pull_request(action: &str, merged: bool) -> Value {
        json!({
            "action": action,
            "number": 42,
            "pull_request": {
                "number": 42,
                "title": "Add login",
                "html_url": "https://github.com/octo-org/app/pull/42",
                "merged": merged,
                "merged_at": if merged { json!("2024-03-01T10:00:00Z") } else { Value::Null },
                "merge_commit_sha": TAG_OBJECT,
                "merged_by": if merged { json!({ "login": "hubot" }) } else { Value::Null },
                "updated_at": "2024-03-01T09:00:00Z",
                "base": { "ref": "develop" },
                "head": { "ref": "feature/login", "sha": COMMIT },
            },
            "repository": { "full_name": "octo-org/app" },
            "sender": { "login": "octocat" },
        })
    }

    #[test]
    fn merged_pull_request_is_a_merge_into_the_base() {
        let event = parse_event("pull_request", &pull_request("closed", true));
        assert_eq!(event.kind, EventKind::Merge);
        assert!(event.merged);
        assert_eq!(event.ref_kind, Some(RefKind::Branch));
        assert_eq!(event.ref_name.as_deref(), Some("develop"));
        assert_eq!(event.sha.as_deref(), Some(TAG_OBJECT));
        assert_eq!(event.actor.as_deref(), Some("hubot"));
        assert_eq!(event.timestamp.map(|t| t.to_rfc3339()), Some("2024-03-01T10:00:00+00:00".to_owned()));
        let request = event.change_request.unwrap();
        assert_eq!(request.number, 42);
        assert!(request.merged);
        assert_eq!(request.base.as_deref(), Some("develop"));
        assert_eq!(request.head.as_deref(), Some("feature/login"));
        assert_eq!(request.title.as_deref(), Some("Add login"));
    }

    #[test]
    fn merged_pull_request_needs_its_merge_commit() {
        let mut payload = pull_request("closed", true);
        payload["pull_request"]["merge_commit_sha"] = Value::Null;
        let error = parse_value("pull_request", &payload).unwrap_err();
        assert!(
            matches!(&error, ParseError::MissingField { field, .. } if field == "pull_request.merge_commit_sha"),
            "{error:?}"
        );
    }

    #[test]
    fn other_pull_request_actions_are_recorded_as_other() {
        for (action, merged) in [("opened", false), ("closed", false), ("labeled", true)] {
            let event = parse_event("pull_request", &pull_request(action, merged));
            assert_eq!(event.kind, EventKind::Other, "{action}");
            assert!(!event.merged, "{action}: only the merge itself is a merge");
            assert_eq!(event.ref_name.as_deref(), Some("feature/login"), "{action}");
            assert_eq!(event.sha.as_deref(), Some(COMMIT), "{action}");
            assert_eq!(event.actor.as_deref(), Some("octocat"), "{action}");
            let request = event.change_request.unwrap();
            assert_eq!(request.merged, merged, "{action}");
        }
    }

    const DIGEST: &str = "sha256:3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498";

    fn container_package(package_url: Value, tag: &str) -> Value {
        json!({
            "action": "published",
            "package": {
                "name": "app",
                "package_type": "CONTAINER",
                "html_url": "https://github.com/orgs/octo-org/packages/container/package/app",
                "updated_at": "2024-03-01T10:00:00Z",
                "owner": { "login": "Octo-Org" },
                "package_version": {
                    "version": DIGEST,
                    "name": DIGEST,
                    "package_url": package_url,
                    "container_metadata": {
                        "tag": { "name": tag, "digest": DIGEST },
                        "labels": { "all_labels": { "org.opencontainers.image.revision": COMMIT } },
                    },
                },
            },
            "repository": { "full_name": "octo-org/app" },
            "sender": { "login": "octocat" },
        })
    }

    #[test]
    fn published_image_names_image_tag_and_digest() {
        let event = parse_event("package", &container_package(json!("ghcr.io/Octo-Org/app:1.2.3"), "1.2.3"));
        assert_eq!(event.kind, EventKind::Package);
        assert_eq!(event.repo, "octo-org/app");
        assert_eq!(event.sha.as_deref(), Some(COMMIT), "from the revision label");
        let package = event.package.unwrap();
        assert!(package.is_image());
        assert_eq!(package.package_type, "container");
        assert_eq!(package.image.as_deref(), Some("ghcr.io/octo-org/app"));
        assert_eq!(package.tag.as_deref(), Some("1.2.3"));
        assert_eq!(package.digest.as_deref(), Some(DIGEST));
        assert_eq!(package.version, None, "the version is only the digest again");
    }

    #[test]
    fn image_name_without_package_url_is_built_from_the_owner() {
        let event = parse_event("package", &container_package(Value::Null, ""));
        let package = event.package.unwrap();
        assert_eq!(package.image.as_deref(), Some("ghcr.io/octo-org/app"));
        assert_eq!(package.tag, None, "an untagged push has no tag");
    }

    #[test]
    fn image_references_split_at_the_tag_not_the_port() {
        let event = parse_event("package", &container_package(json!("registry.local:5000/team/app:rc-1"), ""));
        let package = event.package.unwrap();
        assert_eq!(package.image.as_deref(), Some("registry.local:5000/team/app"));
        assert_eq!(package.tag.as_deref(), Some("rc-1"));

        let event =
            parse_event("package", &container_package(json!(format!("registry.local:5000/team/app@{DIGEST}")), ""));
        let package = event.package.unwrap();
        assert_eq!(package.image.as_deref(), Some("registry.local:5000/team/app"));
        assert_eq!(package.tag, None);
    }

    #[test]
    fn bad_image_tags_and_references_are_invalid() {
        let payload = container_package(json!("ghcr.io/octo-org/app"), "-bad tag");
        let error = parse_value("package", &payload).unwrap_err();
        assert!(matches!(&error, ParseError::InvalidField { field, .. } if field.ends_with("tag.name")), "{error:?}");
        let payload = container_package(json!("ghcr.io/octo org/app:1"), "");
        let error = parse_value("package", &payload).unwrap_err();
        assert!(
            matches!(&error, ParseError::InvalidField { field, .. } if field.ends_with("package_url")),
            "{error:?}"
        );
        let payload = container_package(json!(":1"), "");
        assert!(parse_value("package", &payload).is_err());
    }

    #[test]
    fn owner_and_name_must_form_an_image_name() {
        let mut payload = container_package(Value::Null, "");
        payload["package"]["owner"]["login"] = json!("Octo Org");
        let error = parse_value("package", &payload).unwrap_err();
        assert!(
            matches!(&error, ParseError::InvalidField { field, .. } if field == "package.owner.login"),
            "{error:?}"
        );
        let mut payload = container_package(Value::Null, "");
        payload["package"]["name"] = json!("app:latest");
        let error = parse_value("package", &payload).unwrap_err();
        assert!(matches!(&error, ParseError::InvalidField { field, .. } if field == "package.name"), "{error:?}");
        // Organization hooks may name the owner elsewhere.
        let mut payload = container_package(Value::Null, "");
        payload["package"].as_object_mut().unwrap().remove("owner");
        payload["organization"] = json!({ "login": "Octo-Org" });
        let package = parse_event("package", &payload).package.unwrap();
        assert_eq!(package.image.as_deref(), Some("ghcr.io/octo-org/app"));
    }

    #[test]
    fn truncated_digests_are_never_used() {
        let mut payload = container_package(json!("ghcr.io/octo-org/app:1"), "1");
        let short = "sha256:6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b";
        for field in ["version", "name"] {
            payload["package"]["package_version"][field] = json!(short);
        }
        payload["package"]["package_version"]["container_metadata"]["tag"]["digest"] = json!(short);
        let package = parse_event("package", &payload).package.unwrap();
        assert_eq!(package.digest, None);
    }

    #[test]
    fn packages_that_are_not_published_are_ignored() {
        let mut payload = container_package(json!("ghcr.io/octo-org/app:1"), "1");
        payload["action"] = json!("updated");
        let parsed = parse_value("registry_package", &payload).unwrap();
        assert!(matches!(&parsed, Parsed::Ignored { reason, .. } if reason.contains("updated")), "{parsed:?}");
    }

    fn workflow_run(action: &str, conclusion: Value) -> Value {
        json!({
            "action": action,
            "workflow": { "id": 1 },
            "workflow_run": {
                "id": 30433642,
                "name": "Build",
                "head_branch": "main",
                "head_sha": COMMIT,
                "status": "completed",
                "conclusion": conclusion,
                "event": "push",
                "html_url": "https://github.com/octo-org/app/actions/runs/30433642",
                "updated_at": "2024-03-01T10:00:00Z",
                "actor": { "login": "octocat" },
            },
            "repository": { "full_name": "octo-org/app" },
        })
    }

    #[test]
    fn completed_workflow_runs_are_ci_results() {
        for (word, conclusion) in [
            ("success", CiConclusion::Success),
            ("failure", CiConclusion::Failure),
            ("timed_out", CiConclusion::Failure),
            ("cancelled", CiConclusion::Cancelled),
            ("skipped", CiConclusion::Skipped),
            ("action_required", CiConclusion::Neutral),
            ("something_new", CiConclusion::Neutral),
        ] {
            let event = parse_event("workflow_run", &workflow_run("completed", json!(word)));
            assert_eq!(event.kind, EventKind::Ci, "{word}");
            assert_eq!(event.ref_kind, None, "{word}");
            assert_eq!(event.ref_name.as_deref(), Some("main"), "{word}");
            assert_eq!(event.sha.as_deref(), Some(COMMIT), "{word}");
            assert_eq!(event.actor.as_deref(), Some("octocat"), "{word}");
            let run = event.ci.unwrap();
            assert_eq!(run.id, 30433642);
            assert_eq!(run.conclusion, Some(conclusion), "{word}");
            assert_eq!(run.outcome.as_deref(), Some(word));
            assert_eq!(run.trigger.as_deref(), Some("push"));
        }
    }

    #[test]
    fn completed_run_without_conclusion_keeps_its_status() {
        let event = parse_event("workflow_run", &workflow_run("completed", Value::Null));
        let run = event.ci.unwrap();
        assert_eq!(run.conclusion, None);
        assert_eq!(run.outcome.as_deref(), Some("completed"));
    }

    #[test]
    fn unfinished_workflow_runs_are_ignored() {
        for action in ["requested", "in_progress"] {
            let parsed = parse_value("workflow_run", &workflow_run(action, Value::Null)).unwrap();
            assert!(matches!(&parsed, Parsed::Ignored { reason, .. } if reason.contains(action)), "{parsed:?}");
        }
    }

    #[test]
    fn event_types_are_inferred_from_the_body() {
        let cases = [
            (minimal_push("refs/heads/main"), Some("push")),
            (ref_change("branch", "x"), Some("create")),
            (json!({ "ref": "x", "ref_type": "tag", "pusher_type": "user" }), Some("delete")),
            (pull_request("closed", true), Some("pull_request")),
            (workflow_run("completed", json!("success")), Some("workflow_run")),
            (container_package(Value::Null, ""), Some("package")),
            (json!({ "zen": "Keep it logically awesome.", "hook_id": 1 }), Some("ping")),
            (json!({ "action": "created", "pull_request": {}, "comment": {} }), None),
            (json!({ "action": "started" }), None),
        ];
        for (payload, expected) in cases {
            let body = serde_json::to_vec(&payload).unwrap();
            assert_eq!(infer_event_type(&body), expected, "{payload}");
        }
        assert_eq!(infer_event_type(b"[]"), None);
    }

    #[test]
    fn ping_without_repository_names_the_organization() {
        let event =
            parse_event("ping", &json!({ "zen": "Design for failure.", "organization": { "login": "octo-org" } }));
        assert_eq!(event.kind, EventKind::Ping);
        assert_eq!(event.repo, "octo-org");
    }
}
