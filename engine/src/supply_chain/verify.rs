//! Signature verification: does `repo@digest` carry a valid signature by a trusted key (or a
//! trusted keyless identity)?

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::attachments::{self, AttachedLayer};
use super::keyless::{self, KeylessPolicy};
use super::keys::VerificationKey;
use super::sign::{SimpleSigningPayload, decode_signature};
use super::{CERTIFICATE_ANNOTATION, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, SupplyChainError, signature_tag};
use crate::registry::{Digest, Registry};

/// Who may have signed: any of `keys`, or a keyless identity accepted by `keyless`.
#[derive(Debug, Default)]
pub struct SignatureCheck {
    /// Trusted public keys.
    pub keys: Vec<VerificationKey>,
    /// Trust root and identity for keyless (Fulcio certificate + Rekor) signatures.
    pub keyless: Option<KeylessPolicy>,
}

/// One signature that checked out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifiedSignature {
    /// The digest of the signature layer (the payload's digest).
    pub layer: Digest,
    /// Who signed: `key <id> (<origin>)` or `keyless <identity> (<issuer>)`.
    pub signer: String,
    /// The repository the signer named in the payload; it may differ from where the image is
    /// now, since promotion moves the same digest between repositories.
    pub docker_reference: String,
    /// The payload's optional claims.
    pub claims: BTreeMap<String, Value>,
}

/// Verifies the signatures of `repository@digest` and returns every one that is valid.
///
/// Fails with [`SupplyChainError::Unsigned`] when there is no signature tag at all and with
/// [`SupplyChainError::NoValidSignature`] (listing why each layer was rejected) when none of
/// the signatures verifies. A signature only counts when it verifies over the payload *and*
/// the payload names `digest`: a valid signature copied from another image is rejected.
pub async fn verify_signatures(
    registry: &dyn Registry,
    repository: &str,
    digest: &Digest,
    check: &SignatureCheck,
) -> Result<Vec<VerifiedSignature>, SupplyChainError> {
    let image = registry.reference(repository, digest.as_str());
    if check.keys.is_empty() && check.keyless.is_none() {
        return Err(SupplyChainError::NoValidSignature {
            image,
            reasons: vec!["no trusted key or keyless identity is configured".to_owned()],
        });
    }
    let tag = signature_tag(digest);
    let Some(layers) = attachments::read_layers(registry, repository, &tag).await? else {
        return Err(SupplyChainError::Unsigned { image, tag });
    };
    let mut verified = Vec::new();
    let mut reasons = Vec::new();
    for (index, layer) in layers.iter().enumerate() {
        match verify_layer(registry, repository, digest, layer, check).await {
            Ok(signature) => verified.push(signature),
            Err(LayerRejection::Fatal(error)) => return Err(error),
            Err(LayerRejection::Reason(reason)) => reasons.push(format!("layer {index}: {reason}")),
        }
    }
    if verified.is_empty() {
        if reasons.is_empty() {
            reasons.push(format!("{tag} has no layers"));
        }
        return Err(SupplyChainError::NoValidSignature { image, reasons });
    }
    Ok(verified)
}

enum LayerRejection {
    /// The layer is not a valid signature; say why and look at the next one.
    Reason(String),
    /// The registry failed; retrying may give another answer, so stop here.
    Fatal(SupplyChainError),
}

async fn verify_layer(
    registry: &dyn Registry,
    repository: &str,
    digest: &Digest,
    layer: &AttachedLayer,
    check: &SignatureCheck,
) -> Result<VerifiedSignature, LayerRejection> {
    use LayerRejection::{Fatal, Reason};
    if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
        return Err(Reason(format!("{} is not a signature layer", layer.media_type)));
    }
    let encoded = layer
        .annotation(SIGNATURE_ANNOTATION)
        .ok_or_else(|| Reason(format!("no {SIGNATURE_ANNOTATION} annotation")))?;
    let signature =
        decode_signature(encoded).ok_or_else(|| Reason("the signature annotation is not base64".to_owned()))?;
    let payload_bytes = match attachments::read_blob(registry, repository, layer).await {
        Ok(bytes) => bytes,
        Err(error) if error.is_transient() => return Err(Fatal(error)),
        Err(error) => return Err(Reason(crate::steps::chain(&error))),
    };

    let signer = if let Some(key) = check.keys.iter().find(|key| key.verify(&payload_bytes, &signature)) {
        format!("key {} ({})", key.id(), key.origin())
    } else if layer.annotation(CERTIFICATE_ANNOTATION).is_some() {
        let Some(policy) = &check.keyless else {
            return Err(Reason(
                "a keyless signature, but no trust root is configured for keyless verification".to_owned(),
            ));
        };
        let identity = keyless::verify_cosign_layer(&layer.annotations, &layer.digest, &signature, policy)
            .await
            .map_err(|error| Reason(crate::steps::chain(&error)))?;
        format!("keyless {} ({})", identity.identity, identity.issuer)
    } else {
        let keys: Vec<String> = check.keys.iter().map(VerificationKey::id).collect();
        return Err(Reason(if keys.is_empty() {
            "a key-based signature, but only keyless identities are trusted".to_owned()
        } else {
            format!("the signature matches none of the keys {}", keys.join(", "))
        }));
    };

    // Only now, with the signature checked, is the payload's content worth believing.
    let payload = SimpleSigningPayload::parse(&payload_bytes).map_err(Reason)?;
    if !payload.names(digest) {
        return Err(Reason(format!(
            "signed by {signer}, but the payload is about {} (a signature of another image)",
            payload.critical.image.docker_manifest_digest
        )));
    }
    Ok(VerifiedSignature {
        layer: layer.digest.clone(),
        signer,
        docker_reference: payload.critical.identity.docker_reference.clone(),
        claims: payload.optional.unwrap_or_default(),
    })
}
