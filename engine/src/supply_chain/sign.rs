//! Key-based signing: a Simple Signing payload naming the digest, signed with ECDSA P-256 and
//! stored as one more layer of the image's `sha256-<hex>.sig` manifest.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::attachments::{self, AttachedLayer};
use super::keys::{SigningKey, VerificationKey};
use super::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, SIMPLE_SIGNING_TYPE};
use super::{SupplyChainError, signature_tag};
use crate::registry::{Digest, Registry, RegistryError};

/// The document a cosign signature signs (the "Simple Signing" format of containers/image).
///
/// Fields are declared in the order cosign writes them, so gantry's payloads are byte for byte
/// what cosign would produce for the same image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleSigningPayload {
    /// What the signature vouches for.
    pub critical: Critical,
    /// Free-form claims (`cosign sign -a key=value`); `null` when there are none.
    #[serde(default)]
    pub optional: Option<BTreeMap<String, Value>>,
}

/// The part of a Simple Signing payload a verifier must check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Critical {
    /// Where the image was when it was signed.
    pub identity: Identity,
    /// The signed image.
    pub image: SignedImage,
    /// Always [`SIMPLE_SIGNING_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
}

/// `critical.identity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The repository reference the signer saw, without tag or digest.
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedImage {
    /// The manifest digest the signature is about. The spec example capitalises the key;
    /// cosign writes it in lowercase, and both are read.
    #[serde(rename = "docker-manifest-digest", alias = "Docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl SimpleSigningPayload {
    /// The payload cosign writes for `digest` seen at `docker_reference`.
    pub fn new(docker_reference: &str, digest: &Digest, optional: Option<BTreeMap<String, Value>>) -> Self {
        Self {
            critical: Critical {
                identity: Identity { docker_reference: docker_reference.to_owned() },
                image: SignedImage { docker_manifest_digest: digest.to_string() },
                kind: SIMPLE_SIGNING_TYPE.to_owned(),
            },
            optional: optional.filter(|claims| !claims.is_empty()),
        }
    }

    /// The payload bytes as they are stored and signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain strings and JSON values into memory cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a payload, checking it is a cosign image signature.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let payload: Self = serde_json::from_slice(bytes)
            .map_err(|error| format!("the payload is not a Simple Signing document: {error}"))?;
        if payload.critical.kind != SIMPLE_SIGNING_TYPE {
            return Err(format!(
                "the payload's critical.type is {:?}, not {SIMPLE_SIGNING_TYPE:?}",
                payload.critical.kind
            ));
        }
        Ok(payload)
    }

    /// Whether the payload is about `digest`.
    pub fn names(&self, digest: &Digest) -> bool {
        self.critical.image.docker_manifest_digest == digest.as_str()
    }

    fn claims(&self) -> BTreeMap<String, Value> {
        self.optional.clone().unwrap_or_default()
    }
}

/// What [`sign_image`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignOutcome {
    /// A signature layer was added; the `.sig` tag now points at `manifest`.
    Signed {
        /// The `sha256-<hex>.sig` tag.
        tag: String,
        /// The digest of the rewritten signature manifest.
        manifest: Digest,
    },
    /// The key had already signed this digest with the same claims; nothing was written.
    AlreadySigned {
        /// The `sha256-<hex>.sig` tag.
        tag: String,
    },
}

/// Signs `repository@digest` with `key`, adding one layer to its `.sig` manifest.
///
/// Idempotent: when a layer already carries a valid signature by this key over a payload for
/// this digest with the same `optional` claims, nothing is written. Other layers — other keys,
/// keyless signatures — are kept as they are.
///
/// Two signers writing the same `.sig` tag at the same moment can lose one signature (the tag
/// is read, extended and rewritten, as cosign does too); run signing for one image from one
/// place at a time.
pub async fn sign_image(
    registry: &dyn Registry,
    repository: &str,
    digest: &Digest,
    key: &SigningKey,
    optional: Option<BTreeMap<String, Value>>,
) -> Result<SignOutcome, SupplyChainError> {
    let image = registry.reference(repository, digest.as_str());
    // Signing a digest the repository does not hold would vouch for nothing anyone can pull.
    let exists = registry
        .manifest_exists(repository, digest)
        .await
        .map_err(SupplyChainError::registry("read", image.clone()))?;
    if !exists {
        return Err(SupplyChainError::Registry {
            action: "sign",
            reference: image.clone(),
            source: RegistryError::NotFound { reference: image },
        });
    }

    let tag = signature_tag(digest);
    let payload = SimpleSigningPayload::new(&registry.reference(repository, ""), digest, optional);
    let payload_bytes = payload.to_bytes();
    let existing = attachments::read_layers(registry, repository, &tag).await?.unwrap_or_default();
    for layer in &existing {
        if is_same_signature(registry, repository, layer, key.public_key(), &payload).await? {
            return Ok(SignOutcome::AlreadySigned { tag });
        }
    }

    let signature = key.sign(&payload_bytes)?;
    let annotations = BTreeMap::from([(
        SIGNATURE_ANNOTATION.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(signature),
    )]);
    let manifest = attachments::append_layer(
        registry,
        repository,
        &tag,
        &existing,
        payload_bytes,
        SIMPLE_SIGNING_MEDIA_TYPE,
        annotations,
    )
    .await?;
    Ok(SignOutcome::Signed { tag, manifest })
}

/// Whether `layer` is a valid signature by `key` for the same digest and claims as `wanted`.
/// Layers that cannot be read are simply not a match; a registry outage is an error, so that
/// a retry decides instead of a duplicate being written.
async fn is_same_signature(
    registry: &dyn Registry,
    repository: &str,
    layer: &AttachedLayer,
    key: &VerificationKey,
    wanted: &SimpleSigningPayload,
) -> Result<bool, SupplyChainError> {
    if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
        return Ok(false);
    }
    let Some(signature) = layer.annotation(SIGNATURE_ANNOTATION).and_then(decode_signature) else {
        return Ok(false);
    };
    let payload = match attachments::read_blob(registry, repository, layer).await {
        Ok(payload) => payload,
        Err(error) if error.is_transient() => return Err(error),
        Err(_) => return Ok(false),
    };
    if !key.verify(&payload, &signature) {
        return Ok(false);
    }
    Ok(SimpleSigningPayload::parse(&payload)
        .is_ok_and(|found| found.critical.image == wanted.critical.image && found.claims() == wanted.claims()))
}

/// Decodes a base64 signature annotation; cosign tolerates line breaks inside it, so does this.
pub(crate) fn decode_signature(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(compact).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_bytes_match_what_cosign_writes() {
        // The field order and the `null` optional are cosign's; the digest is an example.
        let digest = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        let payload = SimpleSigningPayload::new("registry.example/app", &digest, None);
        assert_eq!(
            String::from_utf8(payload.to_bytes()).unwrap(),
            format!(
                "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"registry.example/app\"}},\
                 \"image\":{{\"docker-manifest-digest\":\"{digest}\"}},\
                 \"type\":\"cosign container image signature\"}},\"optional\":null}}"
            )
        );
        let empty_claims = SimpleSigningPayload::new("r/app", &digest, Some(BTreeMap::new()));
        assert_eq!(empty_claims.optional, None);
    }

    #[test]
    fn real_cosign_payloads_parse() {
        // `cosign verify` output from a real registry (see tests/fixtures/cosign/SOURCES.md).
        let printed: Vec<Value> = serde_json::from_str(include_str!(
            "../../../tests/fixtures/cosign/simple-signing-payload.cosign-verify-output.keyless.json"
        ))
        .unwrap();
        let bytes = serde_json::to_vec(&printed[0]).unwrap();
        let payload = SimpleSigningPayload::parse(&bytes).unwrap();
        let digest = Digest::parse("sha256:a2b109fb9baea555556561317fdd13cef9c3dfac22c8f8fea0c5a0b06ece9d00").unwrap();
        assert!(payload.names(&digest));
        assert!(!payload.names(&Digest::of(b"other")));
        assert!(payload.claims().contains_key("Subject"));
    }

    #[test]
    fn the_spec_examples_capitalised_key_is_read() {
        let bytes = br#"{"critical":{"identity":{"docker-reference":"r/app"},
            "image":{"Docker-manifest-digest":"sha256:20be"},"type":"cosign container image signature"},
            "optional":{"k":"v"}}"#;
        let payload = SimpleSigningPayload::parse(bytes).unwrap();
        assert_eq!(payload.critical.image.docker_manifest_digest, "sha256:20be");
    }

    #[test]
    fn other_documents_are_not_cosign_payloads() {
        let wrong_type = br#"{"critical":{"identity":{"docker-reference":"r"},
            "image":{"docker-manifest-digest":"sha256:1"},"type":"atomic container signature"}}"#;
        assert!(SimpleSigningPayload::parse(wrong_type).is_err());
        assert!(SimpleSigningPayload::parse(b"{}").is_err());
        assert!(SimpleSigningPayload::parse(b"\xff").is_err());
    }

    #[test]
    fn signatures_with_line_breaks_decode() {
        assert_eq!(decode_signature("AQID\nBA==").unwrap(), vec![1, 2, 3, 4]);
        assert!(decode_signature("not base64!").is_none());
    }
}
