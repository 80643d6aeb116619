//! Errors for verifying and parsing webhook deliveries.
//!
//! Messages may be shown to whoever sent the request, so they name headers and payload fields
//! but never a secret or a computed signature.

use thiserror::Error;

/// Why a delivery's signature was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The request carried no signature header.
    #[error("verify the webhook signature: the request has no signature header")]
    Missing,
    /// The signature header is present but not in the expected form.
    #[error("read the webhook signature header: {reason}")]
    Malformed {
        /// What is wrong with the header value.
        reason: String,
    },
    /// The signature is well formed but matches the body under none of the configured secrets.
    #[error("verify the webhook signature: it does not match the request body")]
    Mismatch,
    /// There is no (non-empty) secret to verify against, so nothing can be accepted.
    #[error("verify the webhook signature: no webhook secret is configured")]
    NoSecretConfigured,
    /// The request carried no shared-secret token header (GitLab's `X-Gitlab-Token`).
    #[error("verify the webhook token: the request has no token header")]
    TokenMissing,
    /// The token header matches none of the configured tokens.
    #[error("verify the webhook token: it matches none of the configured tokens")]
    TokenMismatch,
}

/// Why a delivery's deduplication key could not be read from its headers.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DeliveryKeyError {
    /// A delivery-id header is present but unusable as a key.
    #[error("read the `{header}` header: {reason}")]
    Invalid {
        /// The header's name, e.g. `Idempotency-Key`.
        header: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
}

/// Why a delivery's body could not be turned into an event.
#[derive(Debug, Error)]
pub enum ParseError {
    /// The event type header was empty.
    #[error("identify the webhook event: the event type is empty")]
    MissingEventType,
    /// The body is not valid JSON.
    #[error("parse the `{event_type}` payload as JSON")]
    InvalidJson {
        /// The event type the delivery claimed to be.
        event_type: String,
        /// What the JSON parser reported.
        #[source]
        source: serde_json::Error,
    },
    /// The body is valid JSON but not an object.
    #[error("read the `{event_type}` payload: expected a JSON object at the top level")]
    NotAnObject {
        /// The event type the delivery claimed to be.
        event_type: String,
    },
    /// A field this event type needs is absent (or `null`).
    #[error("read the `{event_type}` payload: field `{field}` is missing")]
    MissingField {
        /// The event type the delivery claimed to be.
        event_type: String,
        /// Dotted path of the missing field, e.g. `repository.full_name`.
        field: String,
    },
    /// A field is present but holds a value of the wrong type or form.
    #[error("read the `{event_type}` payload: field `{field}` {reason}")]
    InvalidField {
        /// The event type the delivery claimed to be.
        event_type: String,
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong with it, phrased to follow the field name (e.g. "is not a string").
        reason: String,
    },
}
