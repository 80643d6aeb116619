//! Keyless verification of Sigstore bundles whose content is a DSSE envelope: the attestations
//! `cosign attest --new-bundle-format` and `cosign attest-blob --bundle` write.
//!
//! The `sigstore` crate verifies message-signature bundles fully, but rejects every DSSE bundle
//! cosign makes: it compares the Rekor entry's `envelopeHash` with the hash of its own
//! re-serialization of the envelope, while Rekor hashed the bytes cosign sent (another field
//! order, an empty `keyid` kept), which the bundle does not carry (sigstore-rs issues #608, #609).
//! So the whole check is done here, with the crates the crate itself builds on:
//!
//! 1. the signing certificate chains to a Fulcio CA of the trust root (`rustls-webpki`, code
//!    signing usage), at the time it was issued;
//! 2. one of its embedded SCTs is signed by a CT log of the trust root (RFC 6962: the
//!    precertificate's TBS, the leaf's without the SCT extension, and the issuer's key hash);
//! 3. its SAN and OIDC issuer are the policy's (`sigstore`'s `Identity` policy);
//! 4. the envelope's one signature verifies over the DSSE PAE under the certificate's key;
//! 5. the in-toto statement has the artifact among its subjects;
//! 6. the Rekor entry (whose signed entry timestamp the caller has checked) is a `dsse` v0.0.1
//!    entry for exactly this payload, signature and certificate;
//! 7. the entry was integrated while the certificate was valid.
//!
//! `envelopeHash` is not compared: it hashes a serialization the bundle does not keep, and the
//! entry is bound to the envelope anyway by the payload hash, the signature and the verifier
//! certificate (step 6), with type and payload bound to the signature by the PAE (step 4).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use sigstore::bundle::verify::policy::{Identity, VerificationPolicy as _};
use sigstore::crypto::{CosignVerificationKey, Signature};
use x509_cert::Certificate;
use x509_cert::der::Decode as _;

use super::SupplyChainError;
use super::attest::{IN_TOTO_PAYLOAD_TYPE, pae};
use super::keyless::KeylessPolicy;
use super::keys::pem_body;
use crate::registry::Digest;

/// OID 1.3.6.1.5.5.7.3.3 (id-kp-codeSigning), the extended key usage of Fulcio certificates, as
/// the DER content bytes webpki compares.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// OID 1.3.6.1.4.1.11129.2.4.2, the embedded SCT list extension, as DER content bytes.
const SCT_LIST_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    verification_material: Material,
    dsse_envelope: EnvelopeView,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Material {
    certificate: Option<RawCertificate>,
    x509_certificate_chain: Option<CertificateChain>,
    #[serde(default)]
    tlog_entries: Vec<EntryView>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCertificate {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct CertificateChain {
    #[serde(default)]
    certificates: Vec<RawCertificate>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryView {
    canonicalized_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeView {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<SignatureView>,
}

#[derive(Deserialize)]
struct SignatureView {
    sig: String,
}

/// Verifies a DSSE bundle (steps 1–7 of the module documentation) whose one transparency log
/// entry, integrated at `integrated_time` (Unix seconds), has a checked signed entry timestamp.
pub(super) fn verify(
    bundle_json: &[u8],
    artifact: &Digest,
    policy: &KeylessPolicy,
    integrated_time: i64,
) -> Result<(), SupplyChainError> {
    let bundle: Bundle = serde_json::from_slice(bundle_json)
        .map_err(|error| failed(format!("the bundle is not a Sigstore DSSE bundle: {error}")))?;
    let envelope = &bundle.dsse_envelope;
    let [signature] = envelope.signatures.as_slice() else {
        return Err(failed(format!(
            "the DSSE envelope holds {} signatures; a bundle's envelope must hold exactly one",
            envelope.signatures.len()
        )));
    };
    let signature = decode("the envelope signature", &signature.sig)?;
    let payload = decode("the envelope payload", &envelope.payload)?;

    // 1. The certificate chain.
    let chain: Vec<Vec<u8>> =
        match (&bundle.verification_material.certificate, &bundle.verification_material.x509_certificate_chain) {
            (Some(certificate), _) => vec![decode("the certificate", &certificate.raw_bytes)?],
            (None, Some(chain)) => chain
                .certificates
                .iter()
                .map(|certificate| decode("a chain certificate", &certificate.raw_bytes))
                .collect::<Result<_, _>>()?,
            (None, None) => return Err(failed("the bundle holds no signing certificate".to_owned())),
        };
    let Some((leaf_der, intermediates)) = chain.split_first() else {
        return Err(failed("the bundle's certificate chain is empty".to_owned()));
    };
    let leaf = Certificate::from_der(leaf_der)
        .map_err(|error| failed(format!("the signing certificate is not X.509: {error}")))?;
    let validity = leaf.tbs_certificate().validity();
    let not_before = validity.not_before.to_unix_duration().as_secs();
    let not_after = validity.not_after.to_unix_duration().as_secs();
    let issuer_spki = verify_chain(leaf_der, intermediates, policy, not_before)?;

    // 2. The certificate was logged in certificate transparency.
    verify_embedded_sct(&leaf, leaf_der, &issuer_spki, policy)?;

    // 3. Issued to the identity the policy names.
    Identity::new(&policy.identity, &policy.issuer).verify(&leaf).map_err(|error| {
        failed(format!("the certificate is not issued to {} by {}: {error}", policy.identity, policy.issuer))
    })?;

    // 4. The signature over the PAE, under the certificate's key.
    let key = CosignVerificationKey::try_from(leaf.tbs_certificate().subject_public_key_info())
        .map_err(|error| failed(format!("the certificate's key cannot verify signatures: {error}")))?;
    key.verify_signature(Signature::Raw(&signature), &pae(&envelope.payload_type, &payload))
        .map_err(|_| failed("the envelope's signature does not verify under the signing certificate".to_owned()))?;

    // 5. A statement about the artifact.
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(failed(format!("the envelope carries {}, not an in-toto statement", envelope.payload_type)));
    }
    let statement: Value = serde_json::from_slice(&payload)
        .map_err(|error| failed(format!("the payload is not an in-toto statement: {error}")))?;
    let about_artifact = statement.get("subject").and_then(Value::as_array).is_some_and(|subjects| {
        subjects.iter().any(|subject| {
            subject
                .pointer("/digest/sha256")
                .and_then(Value::as_str)
                .is_some_and(|hex| hex.eq_ignore_ascii_case(artifact.hex()))
        })
    });
    if !about_artifact {
        return Err(failed(format!("the statement has no subject with digest {artifact}")));
    }

    // 6. The log entry is this envelope's.
    let [entry] = bundle.verification_material.tlog_entries.as_slice() else {
        return Err(failed("the bundle must hold exactly one transparency log entry".to_owned()));
    };
    let body = decode("the log entry body", &entry.canonicalized_body)?;
    check_entry(&body, &payload, &signature, leaf_der)?;

    // 7. Logged while the certificate was valid.
    let integrated = u64::try_from(integrated_time).unwrap_or(0);
    if integrated < not_before || integrated > not_after {
        return Err(failed(format!(
            "the entry was logged at {integrated}, outside the certificate's validity ({not_before}..{not_after})"
        )));
    }
    Ok(())
}

fn failed(reason: String) -> SupplyChainError {
    SupplyChainError::Keyless { reason }
}

fn decode(what: &str, text: &str) -> Result<Vec<u8>, SupplyChainError> {
    BASE64.decode(text).map_err(|error| failed(format!("{what} is not base64: {error}")))
}

/// Chains `leaf` to a Fulcio CA of the trust root at `issued_at` (Unix seconds) and returns the
/// SubjectPublicKeyInfo (DER) of the certificate that issued it.
fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    policy: &KeylessPolicy,
    issued_at: u64,
) -> Result<Vec<u8>, SupplyChainError> {
    let roots: Vec<CertificateDer<'_>> =
        policy.trust_root.fulcio_certificates().iter().map(|der| CertificateDer::from(der.as_slice())).collect();
    let anchors: Vec<TrustAnchor<'_>> = roots
        .iter()
        .map(webpki::anchor_from_trusted_cert)
        .collect::<Result<_, _>>()
        .map_err(|error| failed(format!("a Fulcio certificate of the trust root is unusable: {error}")))?;
    // Certificates the bundle brings are candidates for the path, never anchors.
    let intermediates: Vec<CertificateDer<'_>> =
        intermediates.iter().map(|der| CertificateDer::from(der.as_slice())).collect();
    let leaf_der = CertificateDer::from(leaf);
    let end_entity = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|error| failed(format!("the signing certificate cannot be parsed: {error}")))?;
    let path = end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(issued_at)),
            webpki::KeyUsage::required(CODE_SIGNING),
            None,
            None,
        )
        .map_err(|error| {
            failed(format!("the signing certificate does not chain to a Fulcio CA of the trust root: {error}"))
        })?;
    Ok(match path.intermediate_certificates().next() {
        Some(issuer) => issuer.subject_public_key_info().as_ref().to_vec(),
        // An anchor keeps its key info without the outer SEQUENCE.
        None => der_element(0x30, path.anchor().subject_public_key_info.as_ref()),
    })
}

/// Checks that one of the leaf's embedded SCTs is signed by a CT log of the trust root.
fn verify_embedded_sct(
    leaf: &Certificate,
    leaf_der: &[u8],
    issuer_spki: &[u8],
    policy: &KeylessPolicy,
) -> Result<(), SupplyChainError> {
    let extension = leaf
        .tbs_certificate()
        .extensions()
        .and_then(|extensions| extensions.iter().find(|extension| extension.extn_id.as_bytes() == SCT_LIST_OID))
        .ok_or_else(|| failed("the signing certificate has no embedded SCT".to_owned()))?;
    let malformed = || failed("the signing certificate's SCT list is malformed".to_owned());
    // The extension value is an OCTET STRING holding the TLS-encoded list.
    let (tag, list, _) = der_split(extension.extn_value.as_bytes()).ok_or_else(malformed)?;
    if tag != 0x04 {
        return Err(malformed());
    }
    let tbs =
        precertificate_tbs(leaf_der).ok_or_else(|| failed("the signing certificate is malformed DER".to_owned()))?;
    let issuer_key_hash: [u8; 32] = Sha256::digest(issuer_spki).into();
    let mut reader = TlsReader(list);
    let mut entries = TlsReader(reader.vector(2).ok_or_else(malformed)?);
    let mut reasons = Vec::new();
    while !entries.0.is_empty() {
        let mut sct = TlsReader(entries.vector(2).ok_or_else(malformed)?);
        let version = sct.bytes(1).ok_or_else(malformed)?[0];
        let log_id = sct.bytes(32).ok_or_else(malformed)?;
        let timestamp = sct.bytes(8).ok_or_else(malformed)?;
        let extensions = sct.vector(2).ok_or_else(malformed)?;
        let _algorithms = sct.bytes(2).ok_or_else(malformed)?;
        let signature = sct.vector(2).ok_or_else(malformed)?;
        let Some(key) = policy.trust_root.ctlog_key(log_id) else {
            reasons.push(format!("an SCT from CT log {} the trust root does not name", hex::encode(log_id)));
            continue;
        };
        // RFC 6962 §3.2: what the log signed for a precertificate entry.
        let mut signed = vec![version, 0];
        signed.extend_from_slice(timestamp);
        signed.extend_from_slice(&[0, 1]);
        signed.extend_from_slice(&issuer_key_hash);
        let length = u32::try_from(tbs.len()).map_err(|_| malformed())?.to_be_bytes();
        signed.extend_from_slice(&length[1..]);
        signed.extend_from_slice(&tbs);
        signed.extend_from_slice(&u16::try_from(extensions.len()).map_err(|_| malformed())?.to_be_bytes());
        signed.extend_from_slice(extensions);
        let verified = CosignVerificationKey::try_from_der(key)
            .is_ok_and(|key| key.verify_signature(Signature::Raw(signature), &signed).is_ok());
        if verified {
            return Ok(());
        }
        reasons.push(format!("the SCT of CT log {} does not verify", hex::encode(log_id)));
    }
    if reasons.is_empty() {
        reasons.push("the SCT list is empty".to_owned());
    }
    Err(failed(format!("the signing certificate was not logged in certificate transparency: {}", reasons.join("; "))))
}

/// The TBSCertificate of `certificate` without the embedded SCT list extension: what the CT log
/// signed. Works on the DER as it is, since re-encoding a parsed certificate need not give back
/// the same bytes.
fn precertificate_tbs(certificate: &[u8]) -> Option<Vec<u8>> {
    let (0x30, certificate, _) = der_split(certificate)? else {
        return None;
    };
    let (0x30, mut fields, _) = der_split(certificate)? else {
        return None;
    };
    let mut rebuilt = Vec::with_capacity(fields.len());
    while !fields.is_empty() {
        let (tag, content, rest) = der_split(fields)?;
        let whole = &fields[..fields.len() - rest.len()];
        fields = rest;
        // [3] EXPLICIT Extensions: a SEQUENCE of extensions, each starting with its OID.
        if tag != 0xa3 {
            rebuilt.extend_from_slice(whole);
            continue;
        }
        let (0x30, mut extensions, _) = der_split(content)? else {
            return None;
        };
        let mut kept = Vec::with_capacity(extensions.len());
        while !extensions.is_empty() {
            let (_, extension, rest) = der_split(extensions)?;
            let encoded = &extensions[..extensions.len() - rest.len()];
            extensions = rest;
            let (0x06, oid, _) = der_split(extension)? else {
                return None;
            };
            if oid != SCT_LIST_OID {
                kept.extend_from_slice(encoded);
            }
        }
        rebuilt.extend_from_slice(&der_element(0xa3, &der_element(0x30, &kept)));
    }
    Some(der_element(0x30, &rebuilt))
}

/// Splits one DER element off `input`: (tag, content, the rest). Single-byte tags only, which
/// is all X.509 uses.
fn der_split(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count].iter().fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, &rest[count..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// Encodes one DER element.
fn der_element(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut encoded = vec![tag];
    let length = content.len();
    if length < 0x80 {
        encoded.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let skip = bytes.iter().take_while(|&&byte| byte == 0).count();
        encoded.push(0x80 | (bytes.len() - skip) as u8);
        encoded.extend_from_slice(&bytes[skip..]);
    }
    encoded.extend_from_slice(content);
    encoded
}

/// Reads TLS presentation-language structures (RFC 8446 §3) off a byte slice.
struct TlsReader<'a>(&'a [u8]);

impl<'a> TlsReader<'a> {
    fn bytes(&mut self, count: usize) -> Option<&'a [u8]> {
        (self.0.len() >= count).then(|| {
            let (taken, rest) = self.0.split_at(count);
            self.0 = rest;
            taken
        })
    }

    /// A vector with a `width`-byte length prefix.
    fn vector(&mut self, width: usize) -> Option<&'a [u8]> {
        let length = self.bytes(width)?.iter().fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
        self.bytes(length)
    }
}

/// Checks that a Rekor `dsse` v0.0.1 entry body describes this payload, signature and signing
/// certificate.
fn check_entry(body: &[u8], payload: &[u8], signature: &[u8], leaf: &[u8]) -> Result<(), SupplyChainError> {
    let entry: Value =
        serde_json::from_slice(body).map_err(|error| failed(format!("the log entry is not JSON: {error}")))?;
    let kind = entry.get("kind").and_then(Value::as_str).unwrap_or_default();
    let version = entry.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    if (kind, version) != ("dsse", "0.0.1") {
        return Err(failed(format!("the log entry is a {kind} {version} entry, not a dsse 0.0.1 one")));
    }
    let hash = |field: &str| {
        let algorithm = entry.pointer(&format!("/spec/{field}/algorithm")).and_then(Value::as_str);
        let value = entry.pointer(&format!("/spec/{field}/value")).and_then(Value::as_str);
        (algorithm == Some("sha256")).then_some(value).flatten()
    };
    if hash("payloadHash") != Some(hex::encode(Sha256::digest(payload)).as_str()) {
        return Err(failed("the log entry is about another payload".to_owned()));
    }
    let signatures = entry.pointer("/spec/signatures").and_then(Value::as_array).cloned().unwrap_or_default();
    let this_one = signatures.iter().any(|logged| {
        let same_signature = logged
            .get("signature")
            .and_then(Value::as_str)
            .and_then(|text| BASE64.decode(text).ok())
            .is_some_and(|bytes| bytes == signature);
        let same_certificate = logged
            .get("verifier")
            .and_then(Value::as_str)
            .and_then(|text| BASE64.decode(text).ok())
            .and_then(|pem| pem_body(&pem))
            .is_some_and(|der| der == leaf);
        same_signature && same_certificate
    });
    if !this_one {
        return Err(failed("the log entry records another signature or signing certificate".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_elements_round_trip_short_and_long_lengths() {
        for length in [0usize, 5, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; length];
            let encoded = der_element(0x30, &content);
            let (tag, decoded, rest) = der_split(&encoded).unwrap();
            assert_eq!((tag, decoded.len(), rest.len()), (0x30, length, 0));
        }
        assert!(der_split(&[0x30, 0x05, 1, 2]).is_none(), "a length past the end");
        assert!(der_split(&[0x30, 0x80]).is_none(), "indefinite lengths are not DER");
    }

    #[test]
    fn tls_vectors_stop_at_the_end() {
        let mut reader = TlsReader(&[0, 2, 0xaa, 0xbb, 0, 3, 1]);
        assert_eq!(reader.vector(2), Some(&[0xaa, 0xbb][..]));
        assert_eq!(reader.vector(2), None);
    }

    #[test]
    fn only_dsse_entries_for_this_payload_and_signer_match() {
        let leaf = b"leaf".to_vec();
        let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", BASE64.encode(&leaf));
        let entry = |kind: &str, payload: &[u8], signature: &[u8]| {
            serde_json::json!({
                "apiVersion": "0.0.1",
                "kind": kind,
                "spec": {
                    "payloadHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))},
                    "signatures": [{"signature": BASE64.encode(signature), "verifier": BASE64.encode(&pem)}],
                },
            })
            .to_string()
            .into_bytes()
        };
        check_entry(&entry("dsse", b"p", b"s"), b"p", b"s", &leaf).unwrap();
        assert!(check_entry(&entry("intoto", b"p", b"s"), b"p", b"s", &leaf).is_err());
        assert!(check_entry(&entry("dsse", b"other", b"s"), b"p", b"s", &leaf).is_err());
        assert!(check_entry(&entry("dsse", b"p", b"other"), b"p", b"s", &leaf).is_err());
        assert!(check_entry(&entry("dsse", b"p", b"s"), b"p", b"s", b"another leaf").is_err());
    }
}
