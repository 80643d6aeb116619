//! Keyless (Fulcio + Rekor) verification, offline, against a configured trust root.
//!
//! A keyless signature carries a short-lived Fulcio certificate for an OIDC identity and a
//! Rekor transparency-log entry proving when it was made. Verifying one offline means:
//!
//! 1. the certificate chains to a Fulcio CA of the trust root, at the time it was issued;
//! 2. its embedded SCT is signed by a CT log of the trust root;
//! 3. its subject (SAN) and OIDC issuer are the ones the policy names;
//! 4. the signature verifies under the certificate's key;
//! 5. the Rekor entry describes exactly this signature, certificate and artifact;
//! 6. the entry's signed entry timestamp (SET) is signed by a Rekor key of the trust root;
//! 7. the entry was integrated while the certificate was valid.
//!
//! For message signatures, steps 1–5 and 7 are the `sigstore` crate's bundle verifier; it does
//! not check SETs yet, so step 6 is done here. Bundles holding a DSSE envelope (attestations)
//! are verified entirely by [`super::keyless_dsse`], because the crate's Rekor entry check
//! cannot match the envelope bytes cosign logged. Inclusion proofs against a signed checkpoint
//! are not checked: offline verification relies on the SET, which is why a bundle without one
//! is rejected.
//!
//! Two inputs are understood: a Sigstore bundle (`*.sigstore.json`, media types v0.1–v0.3,
//! message signature or DSSE envelope), and the legacy layer annotations cosign writes on a
//! keyless `.sig` layer (certificate plus `dev.sigstore.cosign/bundle`), which are turned into
//! a v0.1 bundle first.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sigstore::bundle::verify::policy::Identity;
use sigstore::bundle::verify::{ArtifactDigest, Verifier};
use sigstore::crypto::{CosignVerificationKey, Signature};
use sigstore::trust::ManualTrustRoot;

use super::keys::pem_body;
use super::{BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, SupplyChainError};
use crate::registry::Digest;

/// The keys and certificates keyless signatures are checked against: a Sigstore
/// `trusted_root.json` (for the public-good instance, the one `cosign` and the TUF root ship).
#[derive(Debug, Clone)]
pub struct TrustRoot {
    fulcio_certs: Vec<Vec<u8>>,
    ctlog_keys: BTreeMap<String, Vec<u8>>,
    /// Rekor public keys (SPKI DER) by log id, the SHA-256 of the key.
    rekor_keys: BTreeMap<[u8; 32], Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrustedRootDocument {
    #[serde(default)]
    tlogs: Vec<LogDocument>,
    #[serde(default)]
    certificate_authorities: Vec<AuthorityDocument>,
    #[serde(default)]
    ctlogs: Vec<LogDocument>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogDocument {
    public_key: PublicKeyDocument,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyDocument {
    raw_bytes: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorityDocument {
    cert_chain: ChainDocument,
}

#[derive(Deserialize)]
struct ChainDocument {
    #[serde(default)]
    certificates: Vec<CertificateDocument>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertificateDocument {
    raw_bytes: String,
}

impl TrustRoot {
    /// Reads a Sigstore `trusted_root.json`.
    ///
    /// Every CA and log is kept whatever its validity window: a certificate is checked at the
    /// time it was issued and an entry at the time it was logged, so retired CAs and logs are
    /// still needed for old signatures.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SupplyChainError> {
        let invalid = |reason: String| SupplyChainError::InvalidDocument { what: "trust root", reason };
        let document: TrustedRootDocument = serde_json::from_slice(bytes)
            .map_err(|error| invalid(format!("it is not a trusted_root.json: {error}")))?;
        let decode = |what: &str, text: &str| {
            BASE64.decode(text).map_err(|error| invalid(format!("a {what} is not base64: {error}")))
        };
        let mut fulcio_certs = Vec::new();
        for authority in &document.certificate_authorities {
            for certificate in &authority.cert_chain.certificates {
                fulcio_certs.push(decode("certificate", &certificate.raw_bytes)?);
            }
        }
        let mut ctlog_keys = BTreeMap::new();
        for log in &document.ctlogs {
            if let Some(raw) = &log.public_key.raw_bytes {
                let key = decode("CT log key", raw)?;
                ctlog_keys.insert(hex::encode(Sha256::digest(&key)), key);
            }
        }
        let mut rekor_keys = BTreeMap::new();
        for log in &document.tlogs {
            if let Some(raw) = &log.public_key.raw_bytes {
                let key = decode("Rekor key", raw)?;
                rekor_keys.insert(Sha256::digest(&key).into(), key);
            }
        }
        if fulcio_certs.is_empty() {
            return Err(invalid("it names no certificate authority".to_owned()));
        }
        if rekor_keys.is_empty() {
            return Err(invalid("it names no transparency log".to_owned()));
        }
        Ok(Self { fulcio_certs, ctlog_keys, rekor_keys })
    }

    /// Reads a `trusted_root.json` file.
    pub fn from_file(path: &Path) -> Result<Self, SupplyChainError> {
        let bytes = std::fs::read(path).map_err(|source| SupplyChainError::ReadFile {
            what: "trust root",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&bytes)
    }

    /// The Fulcio CA certificates (DER), roots and intermediates alike.
    pub(crate) fn fulcio_certificates(&self) -> &[Vec<u8>] {
        &self.fulcio_certs
    }

    /// The key (SubjectPublicKeyInfo DER) of the CT log whose id (SHA-256 of the key) is `log_id`.
    pub(crate) fn ctlog_key(&self, log_id: &[u8]) -> Option<&[u8]> {
        self.ctlog_keys.get(&hex::encode(log_id)).map(Vec::as_slice)
    }

    fn manual(&self) -> ManualTrustRoot<'_> {
        ManualTrustRoot {
            fulcio_certs: self.fulcio_certs.iter().map(|der| CertificateDer::from(der.as_slice())).collect(),
            rekor_keys: self.rekor_keys.iter().map(|(id, key)| (hex::encode(id), key.clone())).collect(),
            ctfe_keys: self.ctlog_keys.clone(),
        }
    }
}

/// Which keyless signer is trusted: a trust root plus the certificate identity (the SAN: an
/// email, or a workflow URI for CI) and the OIDC issuer that vouched for it.
#[derive(Debug, Clone)]
pub struct KeylessPolicy {
    /// Fulcio CAs, CT logs and Rekor keys.
    pub trust_root: TrustRoot,
    /// The identity the certificate must be issued to, e.g.
    /// `https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main`.
    pub identity: String,
    /// The OIDC issuer, e.g. `https://token.actions.githubusercontent.com`.
    pub issuer: String,
}

/// A keyless signer that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeylessIdentity {
    /// The certificate identity.
    pub identity: String,
    /// The OIDC issuer.
    pub issuer: String,
    /// The Rekor log index of the entry.
    pub log_index: i64,
    /// When Rekor logged it, in Unix seconds.
    pub integrated_time: i64,
}

/// Verifies a Sigstore bundle for the artifact with SHA-256 `artifact` under `policy`.
///
/// For a message-signature bundle the artifact is what was signed (for a cosign signature,
/// the Simple Signing payload); for a DSSE bundle it must be a subject of the in-toto
/// statement (for an attestation, the image digest).
pub async fn verify_bundle(
    bundle_json: &[u8],
    artifact: &Digest,
    policy: &KeylessPolicy,
) -> Result<KeylessIdentity, SupplyChainError> {
    let failed = |reason: String| SupplyChainError::Keyless { reason };
    let view: BundleView = serde_json::from_slice(bundle_json)
        .map_err(|error| failed(format!("the bundle is not a Sigstore bundle: {error}")))?;
    let [entry] = view.verification_material.tlog_entries.as_slice() else {
        return Err(failed(format!(
            "the bundle holds {} transparency log entries; exactly one is supported",
            view.verification_material.tlog_entries.len()
        )));
    };
    let (log_index, integrated_time) = verify_signed_entry_timestamp(entry, policy)?;
    let identity = || KeylessIdentity {
        identity: policy.identity.clone(),
        issuer: policy.issuer.clone(),
        log_index,
        integrated_time,
    };

    let is_dsse =
        serde_json::from_slice::<Value>(bundle_json).is_ok_and(|document| document.get("dsseEnvelope").is_some());
    if is_dsse {
        super::keyless_dsse::verify(bundle_json, artifact, policy, integrated_time)?;
        return Ok(identity());
    }
    let bundle: sigstore::bundle::Bundle = serde_json::from_slice(bundle_json)
        .map_err(|error| failed(format!("the bundle is not a Sigstore bundle: {error}")))?;
    let digest: [u8; 32] = hex::decode(artifact.hex())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| failed(format!("{artifact} is not a SHA-256 digest")))?;
    let verifier = Verifier::new(Default::default(), policy.trust_root.manual())
        .map_err(|error| failed(format!("load the trust root: {error}")))?;
    let policy_identity = Identity::new(&policy.identity, &policy.issuer);
    verifier
        .verify_digest_with(ArtifactDigest::Sha256(digest), bundle, &policy_identity, true)
        .await
        .map_err(|error| failed(error.to_string()))?;
    Ok(identity())
}

/// Verifies a keyless cosign signature layer: `annotations` of the layer whose blob (the
/// payload) has digest `payload`, signed with `signature`.
pub async fn verify_cosign_layer(
    annotations: &BTreeMap<String, String>,
    payload: &Digest,
    signature: &[u8],
    policy: &KeylessPolicy,
) -> Result<KeylessIdentity, SupplyChainError> {
    let bundle = cosign_layer_bundle(annotations, payload, signature)?;
    verify_bundle(&bundle, payload, policy).await
}

/// The cosign Rekor bundle annotation: the SET and the entry it signs.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RekorBundle {
    signed_entry_timestamp: String,
    payload: RekorPayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RekorPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

/// Turns the annotations of a keyless cosign layer into an equivalent v0.1 Sigstore bundle.
fn cosign_layer_bundle(
    annotations: &BTreeMap<String, String>,
    payload: &Digest,
    signature: &[u8],
) -> Result<Vec<u8>, SupplyChainError> {
    let failed = |reason: String| SupplyChainError::Keyless { reason };
    let certificate = annotations
        .get(CERTIFICATE_ANNOTATION)
        .ok_or_else(|| failed(format!("the layer has no {CERTIFICATE_ANNOTATION} annotation")))?;
    let certificate =
        pem_body(certificate.as_bytes()).ok_or_else(|| failed("the signing certificate is not PEM".to_owned()))?;
    let rekor = annotations.get(BUNDLE_ANNOTATION).ok_or_else(|| {
        failed(format!(
            "the layer has no {BUNDLE_ANNOTATION} annotation (offline verification needs the \
             Rekor entry that cosign stores there)"
        ))
    })?;
    let rekor: RekorBundle = serde_json::from_str(rekor)
        .map_err(|error| failed(format!("the Rekor bundle annotation is malformed: {error}")))?;
    let body = BASE64
        .decode(&rekor.payload.body)
        .map_err(|error| failed(format!("the Rekor entry is not base64: {error}")))?;
    let entry: Value =
        serde_json::from_slice(&body).map_err(|error| failed(format!("the Rekor entry is not JSON: {error}")))?;
    let kind = entry.get("kind").and_then(Value::as_str).unwrap_or("");
    let version = entry.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let log_id = hex::decode(&rekor.payload.log_id).map_err(|_| failed("the Rekor log id is not hex".to_owned()))?;
    let payload_digest =
        hex::decode(payload.hex()).map_err(|_| failed(format!("{payload} is not a SHA-256 digest")))?;
    let bundle = json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": {
            "x509CertificateChain": {"certificates": [{"rawBytes": BASE64.encode(certificate)}]},
            "tlogEntries": [{
                "logIndex": rekor.payload.log_index.to_string(),
                "logId": {"keyId": BASE64.encode(log_id)},
                "kindVersion": {"kind": kind, "version": version},
                "integratedTime": rekor.payload.integrated_time.to_string(),
                "inclusionPromise": {"signedEntryTimestamp": rekor.signed_entry_timestamp},
                "canonicalizedBody": BASE64.encode(body),
            }],
        },
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": BASE64.encode(payload_digest)},
            "signature": BASE64.encode(signature),
        },
    });
    Ok(bundle.to_string().into_bytes())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleView {
    verification_material: MaterialView,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MaterialView {
    #[serde(default)]
    tlog_entries: Vec<EntryView>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryView {
    log_index: Value,
    log_id: LogIdView,
    integrated_time: Value,
    inclusion_promise: Option<PromiseView>,
    canonicalized_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogIdView {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromiseView {
    signed_entry_timestamp: String,
}

/// Checks Rekor's signed entry timestamp: its signature, by the log the entry names, over the
/// canonical JSON of body, integrated time, log id and log index. Returns (index, time).
fn verify_signed_entry_timestamp(entry: &EntryView, policy: &KeylessPolicy) -> Result<(i64, i64), SupplyChainError> {
    let failed = |reason: String| SupplyChainError::Keyless { reason };
    let promise = entry.inclusion_promise.as_ref().ok_or_else(|| {
        failed(
            "the transparency log entry has no signed entry timestamp, which offline \
             verification needs"
                .to_owned(),
        )
    })?;
    let number = |value: &Value, what: &str| {
        value
            .as_i64()
            .or_else(|| value.as_str()?.parse().ok())
            .ok_or_else(|| failed(format!("the entry's {what} is not a number")))
    };
    let log_index = number(&entry.log_index, "logIndex")?;
    let integrated_time = number(&entry.integrated_time, "integratedTime")?;
    let log_id: [u8; 32] = BASE64
        .decode(&entry.log_id.key_id)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| failed("the entry's log id is not a base64 SHA-256".to_owned()))?;
    let key = policy.trust_root.rekor_keys.get(&log_id).ok_or_else(|| {
        failed(format!(
            "the entry was logged by {}, a transparency log the trust root does not name",
            hex::encode(log_id)
        ))
    })?;
    let body = BASE64
        .decode(&entry.canonicalized_body)
        .map_err(|error| failed(format!("the entry body is not base64: {error}")))?;
    let set = BASE64
        .decode(&promise.signed_entry_timestamp)
        .map_err(|error| failed(format!("the signed entry timestamp is not base64: {error}")))?;
    // serde_json keeps object keys sorted and writes no whitespace: the canonical form Rekor
    // signed (RFC 8785 for these plain strings and integers).
    let signed = json!({
        "body": BASE64.encode(&body),
        "integratedTime": integrated_time,
        "logID": hex::encode(log_id),
        "logIndex": log_index,
    })
    .to_string();
    let key =
        CosignVerificationKey::try_from_der(key).map_err(|error| failed(format!("read the Rekor key: {error}")))?;
    key.verify_signature(Signature::Raw(&set), signed.as_bytes()).map_err(|_| {
        failed("the signed entry timestamp does not verify under the transparency log's key".to_owned())
    })?;
    Ok((log_index, integrated_time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_roots_need_authorities_and_logs() {
        let error = TrustRoot::from_json(b"{}").unwrap_err();
        assert!(error.to_string().contains("no certificate authority"), "{error}");
        let error = TrustRoot::from_json(b"\"a string\"").unwrap_err();
        assert!(error.to_string().contains("not a trusted_root.json"), "{error}");
        let bad_base64 = br#"{"certificateAuthorities":[{"certChain":{"certificates":[{"rawBytes":"!"}]}}]}"#;
        assert!(TrustRoot::from_json(bad_base64).is_err());
    }

    #[test]
    fn layers_without_rekor_entries_are_refused_with_a_reason() {
        let annotations = BTreeMap::from([(
            CERTIFICATE_ANNOTATION.to_owned(),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
        )]);
        let error = cosign_layer_bundle(&annotations, &Digest::of(b"p"), b"sig").unwrap_err();
        assert!(error.to_string().contains("offline verification needs"), "{error}");
        let error = cosign_layer_bundle(&BTreeMap::new(), &Digest::of(b"p"), b"sig").unwrap_err();
        assert!(error.to_string().contains(CERTIFICATE_ANNOTATION), "{error}");
    }
}
