//! Properties every parsed delivery must have, whatever bytes arrived. A violated one aborts the
//! fuzzer with the input that caused it, like a panic would.

use gantry_webhooks::{EventKind, GitEvent, ParseError, Parsed};

/// Checks one parser outcome.
pub fn check_outcome(outcome: Result<Parsed, ParseError>) {
    match outcome {
        Ok(Parsed::Event(event)) => check_event(&event),
        Ok(Parsed::Ignored { event_type, reason }) => {
            assert!(!event_type.trim().is_empty(), "ignored without an event type");
            assert!(!reason.is_empty(), "ignored without a reason");
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.is_empty() && !message.ends_with('.'), "{message}");
        }
    }
}

fn is_commit_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_event(event: &GitEvent) {
    assert_eq!(event.deleted, event.kind == EventKind::Delete, "{event:?}");
    if event.deleted {
        assert_eq!(event.sha, None, "a deletion names no commit: {event:?}");
    }
    for id in [&event.sha, &event.before].into_iter().flatten() {
        assert!(is_commit_id(id), "not a commit id: {id:?}");
        assert!(!id.bytes().all(|b| b == b'0'), "all-zero id passed on: {event:?}");
    }
    assert_eq!(event.merged, event.kind == EventKind::Merge, "{event:?}");
    if event.merged {
        let request = event.change_request.as_ref().expect("a merge names its request");
        assert!(request.merged, "{event:?}");
        assert!(event.sha.is_some(), "a merge names the merged commit: {event:?}");
    }
    if let Some(name) = &event.ref_name {
        assert!(!name.is_empty(), "empty ref name: {event:?}");
    }
    assert_eq!(event.package.is_some(), event.kind == EventKind::Package, "{event:?}");
    assert_eq!(event.ci.is_some(), event.kind == EventKind::Ci, "{event:?}");
    if let Some(package) = &event.package {
        if let Some(digest) = &package.digest {
            let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
            assert!(hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        }
        if let Some(image) = &package.image {
            assert!(!image.is_empty() && image.bytes().all(|b| b.is_ascii_graphic()), "{image:?}");
            assert_eq!(image, &image.to_ascii_lowercase());
        }
        if let Some(tag) = &package.tag {
            assert!(!tag.is_empty() && tag.len() <= 128, "{tag:?}");
        }
    }
    let _ = event.short_sha();
    // Whatever was parsed must survive the inbox and the plan output unchanged.
    let json = serde_json::to_string(event).expect("events serialize");
    let back: GitEvent = serde_json::from_str(&json).expect("events deserialize");
    assert_eq!(&back, event);
}
