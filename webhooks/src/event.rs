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
    /// Commits were pushed to a branch (including the push that creates the branch).
    Push,
    /// A tag was pushed or created.
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
    /// Anything else a forge module chose to pass on.
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
    /// Whether [`GitEvent::ref_name`] is a branch or a tag, when the event concerns a ref.
    pub ref_kind: Option<RefKind>,
    /// The short ref name, without `refs/heads/` or `refs/tags/`.
    #[serde(rename = "ref")]
    pub ref_name: Option<String>,
    /// The commit the ref pointed at before the event; `None` when the ref did not exist yet.
    pub before: Option<String>,
    /// The commit the event points at; `None` for deletions. For an annotated tag this is the
    /// tagged commit, not the tag object.
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
}

impl GitEvent {
    /// The first seven characters of [`GitEvent::sha`] (all of it if shorter), for display.
    pub fn short_sha(&self) -> Option<&str> {
        let sha = self.sha.as_deref()?;
        // Cut on a character boundary: events can be deserialized from anywhere, so the
        // value is not guaranteed to be ASCII hex.
        let end = sha
            .char_indices()
            .nth(7)
            .map_or(sha.len(), |(index, _)| index);
        Some(&sha[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_with_sha(sha: Option<&str>) -> GitEvent {
        GitEvent {
            forge: Forge::Github,
            kind: EventKind::Push,
            repo: "octo-org/app".to_owned(),
            ref_kind: Some(RefKind::Branch),
            ref_name: Some("main".to_owned()),
            before: None,
            sha: sha.map(str::to_owned),
            deleted: false,
            merged: false,
            actor: None,
            change_request: None,
            timestamp: None,
            changed_paths: Vec::new(),
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
        assert_eq!(
            event_with_sha(Some("ééééééééé")).short_sha(),
            Some("ééééééé")
        );
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
}
