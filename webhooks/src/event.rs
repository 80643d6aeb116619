//! The forge-neutral event model.
//!
//! Every forge module turns its own payloads into a [`GitEvent`]; nothing outside this crate ever
//! sees a forge's payload shape. Fields a forge does not send stay `None` (or empty) rather than
//! being guessed, so consumers can tell "unknown" from "known to be empty".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The forge an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    /// github.com or GitHub Enterprise Server.
    Github,
    /// gitlab.com or a self-managed GitLab.
    Gitlab,
}

/// What happened, independent of how the forge names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Commits were pushed to a branch (including the push that creates the branch). A branch
    /// creation reported without its commit (GitHub's `create`) is also a push, with no
    /// [`GitEvent::sha`].
    Push,
    /// A tag was pushed or created (with no [`GitEvent::sha`] when reported without its commit).
    Tag,
    /// A branch or tag was deleted.
    Delete,
    /// A change request (pull or merge request) was merged.
    Merge,
    /// The forge checked that the hook is reachable; nothing to do but answer.
    Ping,
    /// An image or other package was published to the forge's registry.
    Package,
    /// A CI run finished.
    Ci,
    /// Anything else a forge module chose to pass on, such as a change request being opened,
    /// updated or closed without merging.
    Other,
}

/// Whether a ref is a branch or a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefKind {
    /// A ref under `refs/heads/`.
    Branch,
    /// A ref under `refs/tags/`.
    Tag,
}

/// A merged (or otherwise referenced) pull/merge request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequest {
    /// The request's number as the forge shows it (`#42` on GitHub, `!42` on GitLab).
    pub number: u64,
    /// The request's title, when the payload carries it.
    pub title: Option<String>,
    /// A link to the request for humans.
    pub url: Option<String>,
    /// Whether the request has been merged.
    pub merged: bool,
    /// The branch the request targets, without `refs/heads/`.
    pub base: Option<String>,
    /// The branch the request comes from, without `refs/heads/`.
    pub head: Option<String>,
}

/// An image (or other package) that was published to a forge's registry.
///
/// For an image, [`PackageRef::image`], [`PackageRef::tag`] and [`PackageRef::digest`] say
/// what to promote; a digest is only ever filled in when it is a well-formed OCI digest, so a
/// consumer never pins an image by a value the forge truncated or garbled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRef {
    /// The package type as the forge names it, lowercased: `container`, `docker`, `npm`, …
    pub package_type: String,
    /// The package's name, e.g. `hello-world`.
    pub name: String,
    /// The version the forge lists, when it is not just the digest again (e.g. `1.0.0`).
    pub version: Option<String>,
    /// For an image: the repository to pull it from, without tag or digest, e.g.
    /// `ghcr.io/octo-org/app`.
    pub image: Option<String>,
    /// For an image: the tag that was pushed; `None` for an untagged push.
    pub tag: Option<String>,
    /// For an image: the manifest digest, e.g. `sha256:3da1…`.
    pub digest: Option<String>,
    /// A link to the package for humans.
    pub url: Option<String>,
}

impl PackageRef {
    /// Whether this is a container image gantry could promote.
    pub fn is_image(&self) -> bool {
        self.image.is_some()
    }
}

/// How a finished CI run ended, in the same words for every forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CiConclusion {
    /// Every required job passed.
    Success,
    /// A job failed, timed out, or the run could not start.
    Failure,
    /// Someone or something cancelled the run.
    Cancelled,
    /// The run was skipped.
    Skipped,
    /// The run ended without passing or failing (GitHub's `neutral`, `stale`,
    /// `action_required`, or a word gantry does not know yet).
    Neutral,
}

impl CiConclusion {
    /// Whether a gate that needs green CI may pass on this conclusion.
    pub fn is_success(self) -> bool {
        self == Self::Success
    }
}

/// A CI run (a GitHub Actions workflow run, a GitLab pipeline) that finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiRun {
    /// The forge's id for the run.
    pub id: u64,
    /// The workflow or pipeline name, when it has one.
    pub name: Option<String>,
    /// How the run ended; `None` when the forge said the run completed but gave no result.
    pub conclusion: Option<CiConclusion>,
    /// The forge's own word for the result (`success`, `timed_out`, `canceled`, …), kept for
    /// display because [`CiRun::conclusion`] folds several of them together.
    pub outcome: Option<String>,
    /// What started the run, in the forge's words (`push`, `merge_request_event`, …).
    pub trigger: Option<String>,
    /// A link to the run for humans.
    pub url: Option<String>,
}

/// One normalized Git event, the same shape for every forge. No forge payload type leaks past this crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitEvent {
    /// The forge that sent the event.
    pub forge: Forge,
    /// What happened.
    pub kind: EventKind,
    /// The repository's full path, e.g. `octo-org/app`. For a hook that is not attached to a
    /// repository (an organization ping, say) this is the owning account, or empty when the
    /// payload names none.
    pub repo: String,
    /// Whether [`GitEvent::ref_name`] is a branch or a tag, when the event concerns a ref and
    /// the forge says which (a GitHub workflow run does not).
    pub ref_kind: Option<RefKind>,
    /// The short ref name, without `refs/heads/` or `refs/tags/`. For a merge it is the branch
    /// merged into; for any other change request event, the branch the request comes from; for
    /// a CI run, the branch or tag it ran on.
    #[serde(rename = "ref")]
    pub ref_name: Option<String>,
    /// The commit the ref pointed at before the event; `None` when the ref did not exist yet or
    /// the forge did not say.
    pub before: Option<String>,
    /// The commit the event points at, always a full 40 or 64 digit id: the pushed commit (for
    /// an annotated tag the tagged commit, not the tag object), the commit a merge left on the
    /// target branch, the commit a CI run tested, or the commit an image was built from (its
    /// `org.opencontainers.image.revision` label). `None` for deletions, for branch and tag
    /// creations reported without a commit (GitHub's `create`), and when the forge names none.
    pub sha: Option<String>,
    /// Whether the ref was deleted.
    pub deleted: bool,
    /// Whether a change request was merged by this event.
    pub merged: bool,
    /// Who caused the event (the pusher or the sender), as the forge names them.
    pub actor: Option<String>,
    /// The change request this event is about, if any.
    pub change_request: Option<ChangeRequest>,
    /// When the event happened, as reported by the forge.
    pub timestamp: Option<DateTime<Utc>>,
    /// The union of added, modified and removed paths of the pushed commits, sorted and without
    /// duplicates; empty when the forge did not say. Forges truncate long commit lists, so this
    /// is a hint for path filters, not an exhaustive diff.
    pub changed_paths: Vec<String>,
    /// Whether [`GitEvent::changed_paths`] covers every commit of the push: false when the
    /// payload listed no commits (a new branch at an existing commit, a tag) or fewer than the
    /// push holds (the forge truncated the list). Path filters match conservatively when it is
    /// false. Absent from events stored before the field existed, hence the serde default.
    #[serde(default)]
    pub changed_paths_complete: bool,
    /// The package a [`EventKind::Package`] event published. Absent from events stored before
    /// the field existed, hence the serde default.
    #[serde(default)]
    pub package: Option<PackageRef>,
    /// The finished CI run of a [`EventKind::Ci`] event. Absent from events stored before the
    /// field existed, hence the serde default.
    #[serde(default)]
    pub ci: Option<CiRun>,
}

impl GitEvent {
    /// An event of `kind` in `repo` with nothing else known yet; callers fill in the rest.
    pub fn new(forge: Forge, kind: EventKind, repo: impl Into<String>) -> Self {
        Self {
            forge,
            kind,
            repo: repo.into(),
            ref_kind: None,
            ref_name: None,
            before: None,
            sha: None,
            deleted: false,
            merged: false,
            actor: None,
            change_request: None,
            timestamp: None,
            changed_paths: Vec::new(),
            changed_paths_complete: false,
            package: None,
            ci: None,
        }
    }

    /// The first seven characters of [`GitEvent::sha`] (all of it if shorter), for display.
    pub fn short_sha(&self) -> Option<&str> {
        let sha = self.sha.as_deref()?;
        // Cut on a character boundary: events can be deserialized from anywhere, so the
        // value is not guaranteed to be ASCII hex.
        let end = sha.char_indices().nth(7).map_or(sha.len(), |(index, _)| index);
        Some(&sha[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_with_sha(sha: Option<&str>) -> GitEvent {
        GitEvent {
            ref_kind: Some(RefKind::Branch),
            ref_name: Some("main".to_owned()),
            sha: sha.map(str::to_owned),
            ..GitEvent::new(Forge::Github, EventKind::Push, "octo-org/app")
        }
    }

    #[test]
    fn short_sha_takes_seven_characters() {
        let event = event_with_sha(Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246"));
        assert_eq!(event.short_sha(), Some("6113728"));
    }

    #[test]
    fn short_sha_keeps_short_values_whole() {
        assert_eq!(event_with_sha(Some("abc")).short_sha(), Some("abc"));
        assert_eq!(event_with_sha(Some("")).short_sha(), Some(""));
        assert_eq!(event_with_sha(None).short_sha(), None);
    }

    #[test]
    fn short_sha_never_splits_a_character() {
        assert_eq!(event_with_sha(Some("ééééééééé")).short_sha(), Some("ééééééé"));
    }

    #[test]
    fn serializes_with_wire_names() {
        let value = serde_json::to_value(event_with_sha(Some("abc"))).unwrap();
        assert_eq!(value["forge"], "github");
        assert_eq!(value["kind"], "push");
        assert_eq!(value["ref_kind"], "branch");
        assert_eq!(value["ref"], "main");
        assert!(value.get("ref_name").is_none());

        let back: GitEvent = serde_json::from_value(value).unwrap();
        assert_eq!(back, event_with_sha(Some("abc")));
    }

    #[test]
    fn events_stored_before_package_and_ci_existed_still_load() {
        let mut value = serde_json::to_value(event_with_sha(Some("abc"))).unwrap();
        let object = value.as_object_mut().unwrap();
        object.remove("package");
        object.remove("ci");
        let back: GitEvent = serde_json::from_value(value).unwrap();
        assert_eq!(back, event_with_sha(Some("abc")));
    }

    #[test]
    fn ci_conclusions_serialize_in_snake_case() {
        assert_eq!(serde_json::to_value(CiConclusion::Cancelled).unwrap(), "cancelled");
        assert!(CiConclusion::Success.is_success());
        assert!(!CiConclusion::Neutral.is_success());
    }
}
