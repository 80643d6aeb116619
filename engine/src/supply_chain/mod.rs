//! Supply chain: cosign-compatible signatures and in-toto attestations of promoted images.
//!
//! Everything here is stored the way cosign stores it, so `cosign verify` and
//! `cosign verify-attestation` read what gantry writes and the other way round:
//!
//! - a signature of `repo@sha256:<hex>` is one layer of the OCI image manifest tagged
//!   `sha256-<hex>.sig` in the same repository: the layer blob is the Simple Signing payload
//!   naming the digest, and the layer annotation `dev.cosignproject.cosign/signature` holds the
//!   base64 ECDSA P-256 / SHA-256 signature over exactly those bytes;
//! - an attestation is one layer of the manifest tagged `sha256-<hex>.att`: the blob is a DSSE
//!   envelope around an in-toto Statement whose subject is the digest, annotated with its
//!   `predicateType`.
//!
//! What must stay true:
//! - writes are idempotent: signing or attesting again with the same key (after a crash, or a
//!   second promotion of the same content) never adds a duplicate layer, because ECDSA
//!   signatures are randomised and a byte comparison would not notice the duplicate — the
//!   existing layers are verified with the key instead;
//! - existing layers (other keys, keyless signatures) are carried over untouched when a layer
//!   is added;
//! - verification never trusts a payload's claims before its signature checks out, and a
//!   payload must name the very digest being verified, so a signature cannot be replayed onto
//!   another image.
//!
//! Why the `sigstore` crate rather than bare RustCrypto `p256`/`ecdsa`: it reads cosign's own
//! encrypted key format (`ENCRYPTED SIGSTORE PRIVATE KEY`: scrypt + NaCl secretbox) exactly as
//! cosign writes it, and it verifies keyless material (Fulcio certificate chains, embedded SCTs,
//! Rekor entry consistency) offline against a trust root; with `rustls-tls` it signs through
//! aws-lc, the crypto provider the rest of gantry already uses, and needs no OpenSSL. Its own
//! OCI client is not used: gantry's registries include the embedded OCI layout, which that
//! client cannot reach, and the no-duplicate rule above is gantry's own.

mod attachments;
pub mod attest;
pub mod keyless;
mod keyless_dsse;
pub mod keys;
pub mod sign;
pub mod verify;

use crate::registry::{Digest, RegistryError};

pub use attachments::{AttachmentCopy, copy_attachments};
pub use attest::{
    AttestOutcome, Envelope, PROVENANCE_PREDICATE_TYPE, Promotion, Statement, VerifiedAttestation, attest_image,
    promotion_provenance, verify_attestations,
};
pub use keyless::{KeylessIdentity, KeylessPolicy, TrustRoot};
pub use keys::{SigningKey, VerificationKey};
pub use sign::{SignOutcome, SimpleSigningPayload, sign_image};
pub use verify::{SignatureCheck, VerifiedSignature, verify_signatures};

/// Media type of a cosign signature layer: the blob is a Simple Signing payload.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Media type of a cosign attestation layer: the blob is a DSSE envelope.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Layer annotation holding the base64 signature over the layer blob.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Layer annotation holding the PEM signing certificate of a keyless signature.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Layer annotation holding the PEM chain above the signing certificate.
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Layer annotation holding the Rekor bundle (signed entry timestamp and entry).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// Layer annotation naming an attestation's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// The `critical.type` of every cosign Simple Signing payload.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// The tag holding the signatures of `digest`: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// The tag holding the attestations of `digest`: `sha256-<hex>.att`.
pub fn attestation_tag(digest: &Digest) -> String {
    format!("sha256-{}.att", digest.hex())
}

/// Why signing, attesting or verifying failed.
#[derive(Debug, thiserror::Error)]
pub enum SupplyChainError {
    /// A key or trust root file could not be read.
    #[error("read {what} {}", path.display())]
    ReadFile {
        /// `key`, `predicate`, `trust root`, …
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key could not be loaded or cannot be used.
    #[error("load key {origin}: {reason}")]
    Key {
        /// Where the key came from (a path or `env:VARIABLE`).
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The signing operation itself failed.
    #[error("sign with key {key}: {reason}")]
    Sign {
        /// The key's id.
        key: String,
        /// What the crypto backend said.
        reason: String,
    },
    /// The registry failed while reading or writing signatures or attestations.
    #[error("{action} {reference}")]
    Registry {
        /// What was being done, e.g. `read signatures of`.
        action: &'static str,
        /// The image or tag concerned.
        reference: String,
        /// The registry's error.
        #[source]
        source: RegistryError,
    },
    /// A stored signature or attestation manifest cannot be used at all.
    #[error("read {reference}: {reason}")]
    InvalidAttachment {
        /// The `.sig` / `.att` tag's reference.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The image has no signature tag at all.
    #[error("verify signatures of {image}: the image is not signed (there is no {tag} signature tag)")]
    Unsigned {
        /// The image.
        image: String,
        /// The tag that would hold its signatures.
        tag: String,
    },
    /// Signatures exist, but none verifies under the configured keys or identities.
    #[error("verify signatures of {image}: no signature is valid ({})", reasons.join("; "))]
    NoValidSignature {
        /// The image.
        image: String,
        /// Why each signature was rejected.
        reasons: Vec<String>,
    },
    /// The image has no attestation tag at all.
    #[error("verify attestations of {image}: the image has no attestations (there is no {tag} tag)")]
    NoAttestations {
        /// The image.
        image: String,
        /// The tag that would hold its attestations.
        tag: String,
    },
    /// Attestations exist, but none is a valid one of the wanted predicate type.
    #[error("verify attestations of {image}: no valid {predicate_type} attestation ({})", reasons.join("; "))]
    NoValidAttestation {
        /// The image.
        image: String,
        /// The predicate type that was required.
        predicate_type: String,
        /// Why each attestation was rejected.
        reasons: Vec<String>,
    },
    /// A trust root, bundle or predicate document is malformed.
    #[error("parse {what}: {reason}")]
    InvalidDocument {
        /// What was being parsed.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A Sigstore bundle did not verify.
    #[error("verify sigstore bundle: {reason}")]
    Keyless {
        /// Why it did not verify.
        reason: String,
    },
}

impl SupplyChainError {
    /// Whether retrying later may help: only registry failures that are themselves transient.
    /// A missing or invalid signature stays missing until someone signs.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Registry { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    pub(crate) fn registry(action: &'static str, reference: impl Into<String>) -> impl FnOnce(RegistryError) -> Self {
        let reference = reference.into();
        move |source| Self::Registry { action, reference, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_cosign_naming() {
        let digest = Digest::of(b"image");
        assert_eq!(signature_tag(&digest), format!("sha256-{}.sig", digest.hex()));
        assert_eq!(attestation_tag(&digest), format!("sha256-{}.att", digest.hex()));
        // Both must be valid OCI tags, or no registry would store them.
        crate::registry::validate_tag(&signature_tag(&digest)).unwrap();
        crate::registry::validate_tag(&attestation_tag(&digest)).unwrap();
    }

    #[test]
    fn only_transient_registry_failures_are_retried() {
        let unavailable = SupplyChainError::Registry {
            action: "read signatures of",
            reference: "r/app".into(),
            source: RegistryError::Distribution {
                action: "pull manifest",
                reference: "r/app:x".into(),
                status: Some(503),
                source: "unavailable".into(),
            },
        };
        assert!(unavailable.is_transient());
        let unsigned = SupplyChainError::Unsigned { image: "r/app@sha256:x".into(), tag: "sha256-x.sig".into() };
        assert!(!unsigned.is_transient());
        assert_eq!(
            unsigned.to_string(),
            "verify signatures of r/app@sha256:x: the image is not signed (there is no sha256-x.sig signature tag)"
        );
    }
}
