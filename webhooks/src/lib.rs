//! Webhook request verification and payload normalization for gantry.
//!
//! This crate owns two things: deciding whether a delivery really comes from the forge (GitHub's
//! HMAC signatures in [`github`], GitLab's shared tokens in [`gitlab`]), and turning a forge's
//! payload into the forge-neutral [`GitEvent`]. Both forge modules offer the same functions:
//! `parse(event_type, body)`, `infer_event_type(body)`, and their own verification.
//! It is pure: it does no I/O, never touches the store, and knows nothing about HTTP frameworks.
//! Callers hand it header values as `&str` and the raw body as `&[u8]`, and decide themselves
//! what status code an error becomes.
//!
//! **Architecture invariant:** no forge payload type is public; everything past this crate sees
//! only [`GitEvent`] and [`Parsed`].

pub mod error;
pub mod event;
pub mod github;
pub mod gitlab;
mod payload;

pub use error::{DeliveryKeyError, ParseError, SignatureError};
pub use event::{ChangeRequest, CiConclusion, CiRun, EventKind, Forge, GitEvent, PackageRef, RefKind};

/// Checks that a delivery's body is one well-formed JSON value, without building it: what an
/// endpoint answers 400 for before it accepts a delivery (parsing comes later, from the inbox).
pub fn check_json(body: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).map(|_| ())
}

/// The outcome of parsing one delivery.
///
/// Deliveries gantry has no use for are not errors: the forge should see them accepted, and the
/// reason is kept so the delivery log can say why nothing happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per delivery; boxing would only make every caller dereference"
)]
pub enum Parsed {
    /// The delivery became an event gantry may act on.
    Event(GitEvent),
    /// The delivery was understood but deliberately not turned into an event.
    Ignored {
        /// The event type the forge named, e.g. `pull_request`.
        event_type: String,
        /// Why it was ignored, as a sentence fragment for logs and responses.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::check_json;

    #[test]
    fn check_json_takes_one_value_and_refuses_anything_else() {
        assert!(check_json(br#"{"ref": "refs/heads/main", "commits": [1, 2.5, null, "x"]}"#).is_ok());
        assert!(check_json(b" [] ").is_ok());
        for body in [&b""[..], b"{", b"ref=main", br#"{"a": 1} {"b": 2}"#, b"\xff"] {
            assert!(check_json(body).is_err(), "{:?} passed", String::from_utf8_lossy(body));
        }
    }
}
