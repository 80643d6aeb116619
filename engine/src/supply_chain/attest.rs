//! Attestations: in-toto Statements about an image digest, signed as DSSE envelopes and stored
//! as layers of the image's `sha256-<hex>.att` manifest (cosign's attestation layout).
//!
//! gantry attests its own work with a SLSA provenance v1 predicate describing the promotion
//! ([`promotion_provenance`]); any other predicate (an SBOM, a vulnerability report) can be
//! attached the same way with its own predicate type.
//!
//! The promotion build type, `https://github.com/gantry-dev/gantry/promotion/v1`, records:
//! - `externalParameters`: the app, target environment, pipeline and trigger, the Git event
//!   that started the promotion (forge, kind, repository, ref, commit, actor) and the artifact
//!   (image, digest, environment tag, version);
//! - `internalParameters`: none today (an empty object), kept for gantry-side settings;
//! - `resolvedDependencies`: the source commit (`gitCommit` digest) and the promoted image;
//! - `runDetails.metadata.invocationId`: the run id; `startedOn`: when the run was created;
//! - `runDetails.byproducts`: one descriptor per gate step (`name: gate/<step>`), holding the
//!   gate's verdict as JSON `content` and, readably, under `annotations.verdict`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::attachments::{self, AttachedLayer};
use super::keys::{SigningKey, VerificationKey};
use super::{DSSE_MEDIA_TYPE, PREDICATE_TYPE_ANNOTATION, SupplyChainError, attestation_tag};
use crate::model::Millis;
use crate::registry::{Digest, Registry, RegistryError};

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// `_type` of the older in-toto Statement v0.1, still written by older cosign releases.
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";
/// DSSE `payloadType` of an in-toto Statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Predicate type of SLSA provenance v1.
pub const PROVENANCE_PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The SLSA build type of a gantry promotion (see the module documentation).
pub const PROMOTION_BUILD_TYPE: &str = "https://github.com/gantry-dev/gantry/promotion/v1";
/// The SLSA builder id of gantry.
pub const BUILDER_ID: &str = "https://github.com/gantry-dev/gantry";

/// An in-toto Statement: `predicate` of type `predicate_type` about each subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// [`STATEMENT_V1`] (or [`STATEMENT_V01`] when read from older tools).
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The artifacts the statement is about.
    pub subject: Vec<Subject>,
    /// A URI naming the predicate's schema.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The claim itself.
    #[serde(default)]
    pub predicate: Value,
}

/// One subject of a Statement: a name and its digests by algorithm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// The artifact's name (for an image, its repository reference).
    #[serde(default)]
    pub name: String,
    /// Digests by algorithm, lowercase hex, e.g. `{"sha256": "…"}`.
    pub digest: BTreeMap<String, String>,
}

impl Statement {
    /// A v1 Statement about the image `name` with manifest digest `digest`.
    pub fn about_image(name: &str, digest: &Digest, predicate_type: &str, predicate: Value) -> Self {
        Self {
            statement_type: STATEMENT_V1.to_owned(),
            subject: vec![Subject {
                name: name.to_owned(),
                digest: BTreeMap::from([("sha256".to_owned(), digest.hex().to_owned())]),
            }],
            predicate_type: predicate_type.to_owned(),
            predicate,
        }
    }

    /// Whether one of the subjects is `digest`.
    pub fn is_about(&self, digest: &Digest) -> bool {
        self.subject.iter().any(|subject| subject.digest.get("sha256").map(String::as_str) == Some(digest.hex()))
    }
}

/// A DSSE envelope: a signed payload of a declared type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// What the payload is, [`IN_TOTO_PAYLOAD_TYPE`] for attestations.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    /// Signatures over the PAE of type and payload.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of a DSSE envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// A hint naming the key; cosign leaves it empty.
    #[serde(default)]
    pub keyid: String,
    /// The signature, base64.
    pub sig: String,
}

/// DSSE's pre-authentication encoding, what is actually signed:
/// `"DSSEv1" SP len(type) SP type SP len(body) SP body`, lengths in ASCII decimal bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut encoded = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    encoded.extend_from_slice(payload);
    encoded
}

impl Envelope {
    /// Signs `statement` with `key` into an envelope.
    pub fn sign(statement: &Statement, key: &SigningKey) -> Result<Self, SupplyChainError> {
        // Serializing a Statement (strings, maps, JSON values) into memory cannot fail.
        let payload = serde_json::to_vec(statement).unwrap_or_default();
        let signature = key.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &payload))?;
        Ok(Self {
            payload_type: IN_TOTO_PAYLOAD_TYPE.to_owned(),
            payload: BASE64.encode(payload),
            signatures: vec![EnvelopeSignature { keyid: String::new(), sig: BASE64.encode(signature) }],
        })
    }

    /// The decoded payload.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, String> {
        BASE64.decode(&self.payload).map_err(|error| format!("the envelope payload is not base64: {error}"))
    }

    /// The first of `keys` that signed this envelope, if any.
    pub fn signed_by<'k>(&self, keys: &'k [VerificationKey]) -> Option<&'k VerificationKey> {
        let payload = self.payload_bytes().ok()?;
        let message = pae(&self.payload_type, &payload);
        self.signatures.iter().find_map(|signature| {
            let signature = super::sign::decode_signature(&signature.sig)?;
            keys.iter().find(|key| key.verify(&message, &signature))
        })
    }
}

/// Facts about one promotion, the input of [`promotion_provenance`].
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    /// The run's id.
    pub run_id: String,
    /// When the run was created.
    pub started_at: Millis,
    /// App name.
    pub app: String,
    /// Target environment.
    pub environment: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Which trigger matched, e.g. `branch main`.
    pub trigger: String,
    /// The forge that sent the event (`github`, `gitlab`, …).
    pub forge: String,
    /// The event kind (`push`, `tag`, …).
    pub event_kind: String,
    /// The source repository, e.g. `octo-org/app`.
    pub source_repo: String,
    /// Where the source repository lives, e.g. `https://github.com/octo-org/app`, when known.
    pub source_url: Option<String>,
    /// The full Git ref, e.g. `refs/heads/main`.
    pub git_ref: Option<String>,
    /// The source commit.
    pub commit: Option<String>,
    /// Who caused the event.
    pub actor: Option<String>,
    /// The image's repository reference.
    pub image: String,
    /// The promoted digest.
    pub digest: Digest,
    /// The environment tag the image gets.
    pub tag: String,
    /// The version used in tags.
    pub version: String,
    /// Gate verdicts by gate step name.
    pub gates: BTreeMap<String, Value>,
}

/// The SLSA provenance v1 predicate describing `promotion` (see the module documentation).
/// Deterministic: the same promotion always gives the same predicate, so attesting it again
/// after a crash is recognised as already done.
pub fn promotion_provenance(promotion: &Promotion) -> Value {
    let started_on = chrono::DateTime::from_timestamp_millis(promotion.started_at)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut source = json!({"name": "source"});
    if let Some(commit) = &promotion.commit {
        source["digest"] = json!({"gitCommit": commit});
    }
    if let Some(url) = &promotion.source_url {
        source["uri"] = match &promotion.git_ref {
            Some(git_ref) => json!(format!("git+{url}@{git_ref}")),
            None => json!(format!("git+{url}")),
        };
    }
    let mut dependencies = Vec::new();
    // A descriptor needs a uri or a digest; without either the source is only in the event.
    if source.get("digest").is_some() || source.get("uri").is_some() {
        dependencies.push(source);
    }
    dependencies.push(json!({
        "name": "artifact",
        "uri": promotion.image,
        "digest": {"sha256": promotion.digest.hex()},
    }));
    let byproducts: Vec<Value> = promotion
        .gates
        .iter()
        .map(|(step, verdict)| {
            // A ResourceDescriptor needs a uri, a digest or content: the verdict itself is the
            // content (base64 JSON); the annotation repeats it readably.
            let content = serde_json::to_vec(verdict).unwrap_or_default();
            json!({
                "name": format!("gate/{step}"),
                "mediaType": "application/json",
                "content": BASE64.encode(content),
                "annotations": {"verdict": verdict},
            })
        })
        .collect();
    let mut metadata = json!({"invocationId": promotion.run_id});
    if let Some(started_on) = started_on {
        metadata["startedOn"] = json!(started_on);
    }
    json!({
        "buildDefinition": {
            "buildType": PROMOTION_BUILD_TYPE,
            "externalParameters": {
                "app": promotion.app,
                "environment": promotion.environment,
                "pipeline": promotion.pipeline,
                "trigger": promotion.trigger,
                "event": {
                    "forge": promotion.forge,
                    "kind": promotion.event_kind,
                    "repository": promotion.source_repo,
                    "ref": promotion.git_ref,
                    "commit": promotion.commit,
                    "actor": promotion.actor,
                },
                "artifact": {
                    "image": promotion.image,
                    "digest": promotion.digest,
                    "tag": promotion.tag,
                    "version": promotion.version,
                },
            },
            "internalParameters": {},
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {
                "id": BUILDER_ID,
                "version": {"gantry": env!("CARGO_PKG_VERSION")},
            },
            "metadata": metadata,
            "byproducts": byproducts,
        },
    })
}

/// What [`attest_image`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestOutcome {
    /// An attestation layer was added; the `.att` tag now points at `manifest`.
    Attached {
        /// The `sha256-<hex>.att` tag.
        tag: String,
        /// The digest of the rewritten attestation manifest.
        manifest: Digest,
    },
    /// The key had already attested this predicate about this digest; nothing was written.
    AlreadyPresent {
        /// The `sha256-<hex>.att` tag.
        tag: String,
    },
}

/// Attests `predicate` (of type `predicate_type`) about `repository@digest`, signed by `key`.
///
/// Idempotent: when a layer already holds an envelope signed by this key whose statement is
/// about this digest with the same predicate type and an equal predicate, nothing is written.
pub async fn attest_image(
    registry: &dyn Registry,
    repository: &str,
    digest: &Digest,
    key: &SigningKey,
    predicate_type: &str,
    predicate: Value,
) -> Result<AttestOutcome, SupplyChainError> {
    let image = registry.reference(repository, digest.as_str());
    if predicate_type.trim().is_empty() || !predicate_type.contains(':') {
        return Err(SupplyChainError::InvalidDocument {
            what: "predicate type",
            reason: format!("{predicate_type:?} is not a URI"),
        });
    }
    let exists = registry
        .manifest_exists(repository, digest)
        .await
        .map_err(SupplyChainError::registry("read", image.clone()))?;
    if !exists {
        return Err(SupplyChainError::Registry {
            action: "attest",
            reference: image.clone(),
            source: RegistryError::NotFound { reference: image },
        });
    }
    let tag = attestation_tag(digest);
    let statement = Statement::about_image(&registry.reference(repository, ""), digest, predicate_type, predicate);
    let existing = attachments::read_layers(registry, repository, &tag).await?.unwrap_or_default();
    let keys = std::slice::from_ref(key.public_key());
    for layer in &existing {
        match read_envelope(registry, repository, layer).await {
            Ok(envelope) => {
                let same = envelope.signed_by(keys).is_some()
                    && statement_of(&envelope).is_ok_and(|found| {
                        found.is_about(digest)
                            && found.predicate_type == statement.predicate_type
                            && found.predicate == statement.predicate
                    });
                if same {
                    return Ok(AttestOutcome::AlreadyPresent { tag });
                }
            }
            Err(LayerError::Fatal(error)) => return Err(error),
            Err(LayerError::Unusable(_)) => {}
        }
    }

    let envelope = Envelope::sign(&statement, key)?;
    // Serializing the envelope's strings into memory cannot fail.
    let blob = serde_json::to_vec(&envelope).unwrap_or_default();
    let annotations = BTreeMap::from([(PREDICATE_TYPE_ANNOTATION.to_owned(), predicate_type.to_owned())]);
    let manifest =
        attachments::append_layer(registry, repository, &tag, &existing, blob, DSSE_MEDIA_TYPE, annotations).await?;
    Ok(AttestOutcome::Attached { tag, manifest })
}

/// One attestation that checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedAttestation {
    /// The digest of the attestation layer (the envelope).
    pub layer: Digest,
    /// `key <id> (<origin>)` of the key that signed it.
    pub signer: String,
    /// The verified statement.
    pub statement: Statement,
}

/// Verifies the attestations of `repository@digest` and returns every valid one of type
/// `predicate_type`: signed by one of `keys`, with a statement about `digest`.
///
/// Fails with [`SupplyChainError::NoAttestations`] when there is no `.att` tag and with
/// [`SupplyChainError::NoValidAttestation`], listing the reasons, when none qualifies.
pub async fn verify_attestations(
    registry: &dyn Registry,
    repository: &str,
    digest: &Digest,
    keys: &[VerificationKey],
    predicate_type: &str,
) -> Result<Vec<VerifiedAttestation>, SupplyChainError> {
    let image = registry.reference(repository, digest.as_str());
    let tag = attestation_tag(digest);
    let Some(layers) = attachments::read_layers(registry, repository, &tag).await? else {
        return Err(SupplyChainError::NoAttestations { image, tag });
    };
    let mut verified = Vec::new();
    let mut reasons = Vec::new();
    for (index, layer) in layers.iter().enumerate() {
        let envelope = match read_envelope(registry, repository, layer).await {
            Ok(envelope) => envelope,
            Err(LayerError::Fatal(error)) => return Err(error),
            Err(LayerError::Unusable(reason)) => {
                reasons.push(format!("layer {index}: {reason}"));
                continue;
            }
        };
        let Some(key) = envelope.signed_by(keys) else {
            let ids: Vec<String> = keys.iter().map(VerificationKey::id).collect();
            reasons.push(format!("layer {index}: the envelope is signed by none of the keys {}", ids.join(", ")));
            continue;
        };
        // Only now, with the signature checked, is the statement worth reading.
        let statement = match statement_of(&envelope) {
            Ok(statement) => statement,
            Err(reason) => {
                reasons.push(format!("layer {index}: {reason}"));
                continue;
            }
        };
        if !statement.is_about(digest) {
            reasons
                .push(format!("layer {index}: the statement is not about {digest} (an attestation of another image)"));
            continue;
        }
        if statement.predicate_type != predicate_type {
            reasons.push(format!("layer {index}: predicate type {} is not {predicate_type}", statement.predicate_type));
            continue;
        }
        verified.push(VerifiedAttestation {
            layer: layer.digest.clone(),
            signer: format!("key {} ({})", key.id(), key.origin()),
            statement,
        });
    }
    if verified.is_empty() {
        if reasons.is_empty() {
            reasons.push(format!("{tag} has no layers"));
        }
        return Err(SupplyChainError::NoValidAttestation { image, predicate_type: predicate_type.to_owned(), reasons });
    }
    Ok(verified)
}

enum LayerError {
    Unusable(String),
    Fatal(SupplyChainError),
}

async fn read_envelope(
    registry: &dyn Registry,
    repository: &str,
    layer: &AttachedLayer,
) -> Result<Envelope, LayerError> {
    if layer.media_type != DSSE_MEDIA_TYPE {
        return Err(LayerError::Unusable(format!("{} is not a DSSE envelope layer", layer.media_type)));
    }
    let blob = match attachments::read_blob(registry, repository, layer).await {
        Ok(blob) => blob,
        Err(error) if error.is_transient() => return Err(LayerError::Fatal(error)),
        Err(error) => return Err(LayerError::Unusable(crate::steps::chain(&error))),
    };
    serde_json::from_slice(&blob)
        .map_err(|error| LayerError::Unusable(format!("the layer is not a DSSE envelope: {error}")))
}

fn statement_of(envelope: &Envelope) -> Result<Statement, String> {
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(format!("the envelope carries {}, not an in-toto statement", envelope.payload_type));
    }
    let statement: Statement = serde_json::from_slice(&envelope.payload_bytes()?)
        .map_err(|error| format!("the payload is not an in-toto statement: {error}"))?;
    if statement.statement_type != STATEMENT_V1 && statement.statement_type != STATEMENT_V01 {
        return Err(format!("statement type {} is not an in-toto Statement v1 or v0.1", statement.statement_type));
    }
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_specification() {
        // The worked example of the DSSE protocol description.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn envelopes_verify_only_under_the_signing_key() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let digest = Digest::of(b"image");
        let statement = Statement::about_image("r/app", &digest, "https://x/y", json!({"a": 1}));
        let envelope = Envelope::sign(&statement, &key).unwrap();
        let keys = [other.public_key().clone(), key.public_key().clone()];
        assert_eq!(envelope.signed_by(&keys).map(VerificationKey::id), Some(key.public_key().id()));
        assert!(envelope.signed_by(&keys[..1]).is_none());
        assert_eq!(statement_of(&envelope).unwrap(), statement);

        let mut tampered = envelope.clone();
        let mut forged = statement.clone();
        forged.predicate = json!({"a": 2});
        tampered.payload = BASE64.encode(serde_json::to_vec(&forged).unwrap());
        assert!(tampered.signed_by(&keys).is_none());

        // Changing the declared type changes the PAE, so the signature no longer holds.
        let mut retyped = envelope;
        retyped.payload_type = "text/plain".into();
        assert!(retyped.signed_by(&keys).is_none());
    }

    #[test]
    fn real_v01_envelopes_are_read() {
        // A `cosign verify-attestation` envelope from a real registry (tests/fixtures/cosign).
        let envelope: Envelope = serde_json::from_str(include_str!(
            "../../../tests/fixtures/cosign/dsse-envelope.in-toto-statement-v0.1.kms.json"
        ))
        .unwrap();
        let statement = statement_of(&envelope).unwrap();
        assert_eq!(statement.statement_type, STATEMENT_V01);
        // cosign wrote this type without a scheme; reading must not insist on one.
        assert_eq!(statement.predicate_type, "cosign.sigstore.dev/attestation/v1");
        assert!(!statement.subject.is_empty());
    }

    fn promotion() -> Promotion {
        Promotion {
            run_id: "run-1".into(),
            started_at: 1_700_000_000_000,
            app: "app".into(),
            environment: "prod".into(),
            pipeline: "default".into(),
            trigger: "tag v*".into(),
            forge: "github".into(),
            event_kind: "tag".into(),
            source_repo: "octo-org/app".into(),
            source_url: Some("https://github.com/octo-org/app".into()),
            git_ref: Some("refs/tags/v1.2.3".into()),
            commit: Some("a".repeat(40)),
            actor: Some("octocat".into()),
            image: "127.0.0.1:5000/app".into(),
            digest: Digest::of(b"image"),
            tag: "prod-v1.2.3".into(),
            version: "v1.2.3".into(),
            gates: BTreeMap::from([("gate".to_owned(), json!({"allowed": true}))]),
        }
    }

    #[test]
    fn provenance_describes_the_promotion() {
        let promotion = promotion();
        let predicate = promotion_provenance(&promotion);
        let definition = &predicate["buildDefinition"];
        assert_eq!(definition["buildType"], PROMOTION_BUILD_TYPE);
        assert_eq!(definition["externalParameters"]["environment"], "prod");
        assert_eq!(definition["externalParameters"]["event"]["commit"], "a".repeat(40));
        let source = &definition["resolvedDependencies"][0];
        assert_eq!(source["uri"], "git+https://github.com/octo-org/app@refs/tags/v1.2.3");
        assert_eq!(source["digest"]["gitCommit"], "a".repeat(40));
        assert_eq!(definition["resolvedDependencies"][1]["digest"]["sha256"], promotion.digest.hex());
        let run = &predicate["runDetails"];
        assert_eq!(run["metadata"]["invocationId"], "run-1");
        assert_eq!(run["metadata"]["startedOn"], "2023-11-14T22:13:20Z");
        assert_eq!(run["byproducts"][0]["name"], "gate/gate");
        assert_eq!(run["byproducts"][0]["annotations"]["verdict"]["allowed"], true);
        // Deterministic, so that a resumed attest step recognises its own attestation.
        assert_eq!(predicate, promotion_provenance(&promotion));
    }

    #[test]
    fn provenance_without_source_details_still_names_the_artifact() {
        let mut promotion = promotion();
        promotion.commit = None;
        promotion.source_url = None;
        let predicate = promotion_provenance(&promotion);
        let dependencies = predicate["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
        assert_eq!(dependencies.len(), 1);
        assert_eq!(dependencies[0]["name"], "artifact");
    }
}
