//! Signatures and attestations on real registries — the embedded OCI layout and a real
//! `docker-registry` — checked by independent tools: `openssl` verifies the stored signatures
//! over the stored bytes, and JSON Schemas written from the in-toto and SLSA specifications
//! check the attestation payloads. Keyless verification runs offline against the pinned
//! public-good trust root, on real cosign output.

#[path = "../../tests/support/registry.rs"]
mod registry_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gantry_engine::registry::{Digest, Image, LayoutRegistry, Registry, RegistryAuth, sample_image};
use gantry_engine::supply_chain::attest::{IN_TOTO_PAYLOAD_TYPE, pae};
use gantry_engine::supply_chain::keyless::{verify_bundle, verify_cosign_layer};
use gantry_engine::supply_chain::{
    AttestOutcome, Envelope, KeylessPolicy, PROVENANCE_PREDICATE_TYPE, Promotion, SignOutcome, SignatureCheck,
    SigningKey, SupplyChainError, TrustRoot, VerificationKey, attest_image, attestation_tag, promotion_provenance,
    sign_image, signature_tag, verify_attestations, verify_signatures,
};
use registry_support::TestRegistry;
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cosign").join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// A P-256 key pair made by openssl, not by gantry, in PKCS#8 / SPKI PEM files.
struct OpensslKey {
    _dir: tempfile::TempDir,
    private_pem: PathBuf,
    public_pem: PathBuf,
}

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl").args(args).output().expect("openssl is installed (Debian package `openssl`)")
}

fn openssl_key() -> OpensslKey {
    let dir = tempfile::tempdir().unwrap();
    let private_pem = dir.path().join("key.pem");
    let public_pem = dir.path().join("key.pub");
    let made = openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        private_pem.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{made:?}");
    let public =
        openssl(&["pkey", "-in", private_pem.to_str().unwrap(), "-pubout", "-out", public_pem.to_str().unwrap()]);
    assert!(public.status.success(), "{public:?}");
    OpensslKey { _dir: dir, private_pem, public_pem }
}

/// `openssl dgst -sha256 -verify PUB -signature SIG FILE` over `payload`: the check a user
/// without gantry or cosign can run.
fn openssl_verifies(public_pem: &Path, payload: &[u8], signature_der: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let payload_path = dir.path().join("payload");
    let signature_path = dir.path().join("signature.der");
    std::fs::write(&payload_path, payload).unwrap();
    std::fs::write(&signature_path, signature_der).unwrap();
    let output = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        public_pem.to_str().unwrap(),
        "-signature",
        signature_path.to_str().unwrap(),
        payload_path.to_str().unwrap(),
    ]);
    let verified = String::from_utf8_lossy(&output.stdout).contains("Verified OK");
    assert_eq!(verified, output.status.success(), "{output:?}");
    verified
}

/// Reads the `.sig`/`.att` manifest and its layer blobs straight from the layout's files,
/// without any gantry code: index.json → manifest blob → layer blobs.
fn layout_attachment(root: &Path, repository: &str, tag: &str) -> Vec<(Value, Vec<u8>)> {
    let dir = root.join(repository);
    let blob = |digest: &str| {
        let hex = digest.strip_prefix("sha256:").unwrap();
        std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()
    };
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {index}"));
    let manifest: Value = serde_json::from_slice(&blob(entry["digest"].as_str().unwrap())).unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| (layer.clone(), blob(layer["digest"].as_str().unwrap())))
        .collect()
}

async fn layout_with_image(app: &str) -> (tempfile::TempDir, LayoutRegistry, Digest) {
    let dir = tempfile::tempdir().unwrap();
    let registry = LayoutRegistry::new(dir.path().join("oci"));
    let digest = registry
        .push_image("app", "sha-1111111", &sample_image(app, &[("org.opencontainers.image.revision", "1")]))
        .await
        .unwrap();
    (dir, registry, digest)
}

fn signature_of(layer: &Value) -> Vec<u8> {
    BASE64.decode(layer["annotations"]["dev.cosignproject.cosign/signature"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_gantry_signature_verifies_with_openssl_and_a_tampered_payload_does_not() {
    let (dir, registry, digest) = layout_with_image("app").await;
    let openssl_key = openssl_key();
    let key = SigningKey::from_file(&openssl_key.private_pem, None).unwrap();

    let outcome = sign_image(&registry, "app", &digest, &key, None).await.unwrap();
    assert!(matches!(outcome, SignOutcome::Signed { .. }), "{outcome:?}");

    let layers = layout_attachment(&dir.path().join("oci"), "app", &signature_tag(&digest));
    assert_eq!(layers.len(), 1);
    let (layer, payload) = &layers[0];
    assert_eq!(layer["mediaType"], "application/vnd.dev.cosign.simplesigning.v1+json");
    let document: Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(document["critical"]["image"]["docker-manifest-digest"], digest.as_str());
    assert_eq!(document["critical"]["type"], "cosign container image signature");

    let signature = signature_of(layer);
    assert!(openssl_verifies(&openssl_key.public_pem, payload, &signature));

    // One changed byte (the digest the payload vouches for) and the signature no longer holds.
    let mut tampered = payload.clone();
    let at = tampered.windows(7).position(|window| window == b"sha256:").unwrap() + 7;
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    assert!(!openssl_verifies(&openssl_key.public_pem, &tampered, &signature));
}

#[tokio::test]
async fn signing_again_with_the_same_key_adds_no_layer_and_keeps_other_signers() {
    let (dir, registry, digest) = layout_with_image("app").await;
    let ci = SigningKey::generate().unwrap();
    let release = SigningKey::generate().unwrap();
    let tag = signature_tag(&digest);

    let first = sign_image(&registry, "app", &digest, &ci, None).await.unwrap();
    let SignOutcome::Signed { manifest, .. } = first else {
        panic!("{first:?}");
    };
    let again = sign_image(&registry, "app", &digest, &ci, None).await.unwrap();
    assert_eq!(again, SignOutcome::AlreadySigned { tag: tag.clone() });
    assert_eq!(registry.resolve("app", &tag).await.unwrap(), Some(manifest));

    sign_image(&registry, "app", &digest, &release, None).await.unwrap();
    let root = dir.path().join("oci");
    assert_eq!(layout_attachment(&root, "app", &tag).len(), 2);
    assert!(matches!(
        sign_image(&registry, "app", &digest, &ci, None).await.unwrap(),
        SignOutcome::AlreadySigned { .. }
    ));
    // Different claims are a different statement, not a duplicate.
    let claims = BTreeMap::from([("env".to_owned(), json!("prod"))]);
    assert!(matches!(
        sign_image(&registry, "app", &digest, &ci, Some(claims)).await.unwrap(),
        SignOutcome::Signed { .. }
    ));
    assert_eq!(layout_attachment(&root, "app", &tag).len(), 3);

    let check = SignatureCheck { keys: vec![release.public_key().clone(), ci.public_key().clone()], keyless: None };
    let verified = verify_signatures(&registry, "app", &digest, &check).await.unwrap();
    assert_eq!(verified.len(), 3);
    assert!(verified.iter().any(|signature| signature.claims.get("env") == Some(&json!("prod"))));
}

#[tokio::test]
async fn verification_rejects_unsigned_foreign_and_replayed_signatures() {
    let (_dir, registry, digest) = layout_with_image("app").await;
    let ci = SigningKey::generate().unwrap();
    let stranger = SigningKey::generate().unwrap();
    let check = SignatureCheck { keys: vec![ci.public_key().clone()], keyless: None };

    let error = verify_signatures(&registry, "app", &digest, &check).await.unwrap_err();
    assert!(matches!(error, SupplyChainError::Unsigned { .. }), "{error}");
    assert!(error.to_string().contains("is not signed"), "{error}");

    sign_image(&registry, "app", &digest, &stranger, None).await.unwrap();
    let error = verify_signatures(&registry, "app", &digest, &check).await.unwrap_err();
    let SupplyChainError::NoValidSignature { reasons, .. } = &error else {
        panic!("{error}");
    };
    assert!(reasons[0].contains(&ci.public_key().id()), "{reasons:?}");

    // A valid signature of another image, copied under this image's .sig tag, is a replay.
    let other = registry
        .push_image("app", "sha-2222222", &sample_image("app", &[("org.opencontainers.image.revision", "2")]))
        .await
        .unwrap();
    sign_image(&registry, "app", &other, &ci, None).await.unwrap();
    let stolen = registry.resolve("app", &signature_tag(&other)).await.unwrap().unwrap();
    registry.tag("app", &stolen, &signature_tag(&digest)).await.unwrap();
    let error = verify_signatures(&registry, "app", &digest, &check).await.unwrap_err();
    assert!(error.to_string().contains("a signature of another image"), "{error}");
}

#[tokio::test]
async fn cosign_encrypted_keys_sign_and_wrong_passwords_are_refused() {
    let (_dir, registry, digest) = layout_with_image("app").await;
    // Written by `cosign generate-key-pair` with an empty password.
    let cosign_key = SigningKey::from_file(&fixture("cosign_generated_encrypted_empty_private.key"), None).unwrap();
    sign_image(&registry, "app", &digest, &cosign_key, None).await.unwrap();
    let check = SignatureCheck {
        keys: vec![VerificationKey::from_pem(cosign_key.public_key().to_pem().as_bytes(), "cosign.pub").unwrap()],
        keyless: None,
    };
    assert_eq!(verify_signatures(&registry, "app", &digest, &check).await.unwrap().len(), 1);

    // The older label, with a password.
    let older = fixture("ecdsa_encrypted_private.key");
    assert!(SigningKey::from_file(&older, Some(b"123")).is_ok());
    let error = SigningKey::from_file(&older, Some(b"wrong")).unwrap_err();
    assert!(error.to_string().contains("wrong password"), "{error}");
}

fn schema(name: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_slice(&read_fixture(&format!("schemas/{name}"))).unwrap();
    jsonschema::draft202012::new(&schema).unwrap()
}

fn schema_errors(validator: &jsonschema::Validator, document: &Value) -> Vec<String> {
    validator.iter_errors(document).map(|error| format!("{} at {}", error, error.instance_path())).collect()
}

#[test]
fn the_schemas_accept_real_provenance_and_catch_what_the_specs_require() {
    let statement = schema("in-toto-statement-v1.schema.json");
    let provenance = schema("slsa-provenance-v1.schema.json");

    let github: Value =
        serde_json::from_slice(&read_fixture("github-actions-workflow-v1.provenance.example.json")).unwrap();
    assert_eq!(schema_errors(&statement, &github), Vec::<String>::new());
    assert_eq!(schema_errors(&provenance, &github["predicate"]), Vec::<String>::new());

    // The published GCB example leaves out runDetails.builder, which SLSA requires.
    let gcb: Value = serde_json::from_slice(&read_fixture("gcb-triggered-build-v1.provenance.example.json")).unwrap();
    assert_eq!(schema_errors(&statement, &gcb), Vec::<String>::new());
    let problems = schema_errors(&provenance, &gcb["predicate"]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("builder"), "{problems:?}");

    let mut no_digest = github.clone();
    no_digest["subject"][0].as_object_mut().unwrap().remove("digest");
    assert!(!schema_errors(&statement, &no_digest).is_empty());
    let mut old_type = github;
    old_type["_type"] = json!("https://in-toto.io/Statement/v0.1");
    assert!(!schema_errors(&statement, &old_type).is_empty());
}

fn promotion(digest: &Digest) -> Promotion {
    Promotion {
        run_id: "0192f0c1-0000-7000-8000-000000000001".into(),
        started_at: 1_732_233_600_000,
        app: "app".into(),
        environment: "staging".into(),
        pipeline: "default".into(),
        trigger: "branch develop".into(),
        forge: "github".into(),
        event_kind: "push".into(),
        source_repo: "octo-org/app".into(),
        source_url: Some("https://github.com/octo-org/app".into()),
        git_ref: Some("refs/heads/develop".into()),
        commit: Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into()),
        actor: Some("octocat".into()),
        image: "oci-layout:/srv/oci/app".into(),
        digest: digest.clone(),
        tag: "staging-0d1a26e".into(),
        version: "0d1a26e".into(),
        gates: BTreeMap::from([(
            "gate".to_owned(),
            json!({"allowed": true, "reasons": [], "counts": {"critical": 0}}),
        )]),
    }
}

#[tokio::test]
async fn provenance_attestations_are_dsse_signed_and_match_the_in_toto_and_slsa_shapes() {
    let (dir, registry, digest) = layout_with_image("app").await;
    let openssl_key = openssl_key();
    let key = SigningKey::from_file(&openssl_key.private_pem, None).unwrap();
    let predicate = promotion_provenance(&promotion(&digest));

    let outcome =
        attest_image(&registry, "app", &digest, &key, PROVENANCE_PREDICATE_TYPE, predicate.clone()).await.unwrap();
    assert!(matches!(outcome, AttestOutcome::Attached { .. }), "{outcome:?}");
    // A resumed run attests the very same provenance: nothing new is written.
    let again = attest_image(&registry, "app", &digest, &key, PROVENANCE_PREDICATE_TYPE, predicate).await.unwrap();
    assert!(matches!(again, AttestOutcome::AlreadyPresent { .. }), "{again:?}");

    let layers = layout_attachment(&dir.path().join("oci"), "app", &attestation_tag(&digest));
    assert_eq!(layers.len(), 1);
    let (layer, blob) = &layers[0];
    assert_eq!(layer["mediaType"], "application/vnd.dsse.envelope.v1+json");
    assert_eq!(layer["annotations"]["predicateType"], PROVENANCE_PREDICATE_TYPE);
    let envelope: Value = serde_json::from_slice(blob).unwrap();
    assert_eq!(envelope["payloadType"], IN_TOTO_PAYLOAD_TYPE);
    let payload = BASE64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let signature = BASE64.decode(envelope["signatures"][0]["sig"].as_str().unwrap()).unwrap();
    // openssl checks the DSSE signature over the pre-authentication encoding.
    let signed = pae(IN_TOTO_PAYLOAD_TYPE, &payload);
    assert!(signed.starts_with(format!("DSSEv1 28 {IN_TOTO_PAYLOAD_TYPE} ").as_bytes()));
    assert!(openssl_verifies(&openssl_key.public_pem, &signed, &signature));
    assert!(!openssl_verifies(&openssl_key.public_pem, &payload, &signature));

    let statement: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(schema_errors(&schema("in-toto-statement-v1.schema.json"), &statement), Vec::<String>::new());
    assert_eq!(schema_errors(&schema("slsa-provenance-v1.schema.json"), &statement["predicate"]), Vec::<String>::new());
    assert_eq!(statement["subject"][0]["digest"]["sha256"], digest.hex());
    assert_eq!(statement["predicate"]["runDetails"]["byproducts"][0]["annotations"]["verdict"]["allowed"], true);

    let verified = verify_attestations(
        &registry,
        "app",
        &digest,
        std::slice::from_ref(key.public_key()),
        PROVENANCE_PREDICATE_TYPE,
    )
    .await
    .unwrap();
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0].statement.predicate["buildDefinition"]["externalParameters"]["environment"], "staging");

    let error = verify_attestations(
        &registry,
        "app",
        &digest,
        std::slice::from_ref(key.public_key()),
        "https://cosign.sigstore.dev/attestation/vuln/v1",
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("predicate type https://slsa.dev/provenance/v1 is not"), "{error}");
    let stranger = SigningKey::generate().unwrap();
    let error = verify_attestations(
        &registry,
        "app",
        &digest,
        std::slice::from_ref(stranger.public_key()),
        PROVENANCE_PREDICATE_TYPE,
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("signed by none"), "{error}");
}

#[tokio::test]
async fn a_tampered_attestation_payload_fails_verification() {
    let (_dir, registry, digest) = layout_with_image("app").await;
    let key = SigningKey::generate().unwrap();
    let predicate = promotion_provenance(&promotion(&digest));
    attest_image(&registry, "app", &digest, &key, PROVENANCE_PREDICATE_TYPE, predicate).await.unwrap();

    // Rewrite the stored envelope with a changed predicate but the old signature, as an
    // attacker with registry write access could, and store it as the only layer.
    let tag = attestation_tag(&digest);
    let manifest_digest = registry.resolve("app", &tag).await.unwrap().unwrap();
    let manifest = registry.fetch_manifest("app", &manifest_digest).await.unwrap();
    let document: Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let layer = &document["layers"][0];
    let blob = read_blob(&registry, "app", layer["digest"].as_str().unwrap()).await;
    let mut envelope: Envelope = serde_json::from_slice(&blob).unwrap();
    let mut statement: Value = serde_json::from_slice(&envelope.payload_bytes().unwrap()).unwrap();
    statement["predicate"]["buildDefinition"]["externalParameters"]["environment"] = json!("prod");
    envelope.payload = BASE64.encode(serde_json::to_vec(&statement).unwrap());
    push_single_layer(
        &registry,
        &tag,
        serde_json::to_vec(&envelope).unwrap(),
        layer["mediaType"].as_str().unwrap(),
        layer["annotations"].clone(),
    )
    .await;

    let error = verify_attestations(
        &registry,
        "app",
        &digest,
        std::slice::from_ref(key.public_key()),
        PROVENANCE_PREDICATE_TYPE,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, SupplyChainError::NoValidAttestation { .. }), "{error}");
}

async fn read_blob(registry: &dyn Registry, repository: &str, digest: &str) -> Vec<u8> {
    use futures_util::StreamExt as _;
    let blob = registry.read_blob(repository, &Digest::parse(digest).unwrap()).await.unwrap();
    let mut stream = blob.stream;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    bytes
}

/// Stores a one-layer attachment manifest under `tag`, the way any registry client could.
async fn push_single_layer(registry: &dyn Registry, tag: &str, blob: Vec<u8>, media_type: &str, annotations: Value) {
    let config = b"{}".to_vec();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": Digest::of(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": media_type,
            "digest": Digest::of(&blob),
            "size": blob.len(),
            "annotations": annotations,
        }],
    });
    let image = Image {
        manifest: manifest.to_string().into_bytes(),
        manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        config,
        layers: vec![blob],
    };
    registry.push_image("app", tag, &image).await.unwrap();
}

#[tokio::test]
async fn signatures_on_a_real_docker_registry_verify_with_openssl() {
    let server = TestRegistry::start();
    let registry = gantry_engine::registry::open(&server.url(), Path::new("."), RegistryAuth::Anonymous).unwrap();
    let digest = registry.push_image("team/app", "sha-1111111", &sample_image("app", &[])).await.unwrap();
    let openssl_key = openssl_key();
    let key = SigningKey::from_file(&openssl_key.private_pem, None).unwrap();

    sign_image(registry.as_ref(), "team/app", &digest, &key, None).await.unwrap();
    assert!(matches!(
        sign_image(registry.as_ref(), "team/app", &digest, &key, None).await.unwrap(),
        SignOutcome::AlreadySigned { .. }
    ));

    // Read it back over plain HTTP, as any registry client would.
    let http = reqwest::Client::new();
    let base = format!("{}/v2/team/app", server.url());
    let manifest: Value = http
        .get(format!("{base}/manifests/{}", signature_tag(&digest)))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let payload = http
        .get(format!("{base}/blobs/{}", layers[0]["digest"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(Digest::of(&payload).as_str(), layers[0]["digest"]);
    let document: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(document["critical"]["identity"]["docker-reference"], format!("{}/team/app", server.addr));
    assert!(openssl_verifies(&openssl_key.public_pem, &payload, &signature_of(&layers[0])));

    let check =
        SignatureCheck { keys: vec![VerificationKey::from_file(&openssl_key.public_pem).unwrap()], keyless: None };
    let verified = verify_signatures(registry.as_ref(), "team/app", &digest, &check).await.unwrap();
    assert_eq!(verified.len(), 1);

    let unsigned = registry
        .push_image("team/app", "sha-2222222", &sample_image("app", &[("org.opencontainers.image.revision", "2")]))
        .await
        .unwrap();
    let error = verify_signatures(registry.as_ref(), "team/app", &unsigned, &check).await.unwrap_err();
    assert!(matches!(error, SupplyChainError::Unsigned { .. }), "{error}");
}

fn public_good(identity: &str, issuer: &str) -> KeylessPolicy {
    KeylessPolicy {
        trust_root: TrustRoot::from_json(&read_fixture("sigstore-trusted-root.public-good.json")).unwrap(),
        identity: identity.to_owned(),
        issuer: issuer.to_owned(),
    }
}

/// The keyless layer of a real `.sig` manifest (Artifact Registry, May 2023).
fn keyless_layer() -> (BTreeMap<String, String>, Digest, Vec<u8>) {
    let manifest: Value = serde_json::from_slice(&read_fixture("oci-manifest.sig-tag.two-signatures.json")).unwrap();
    let layer = &manifest["layers"][1];
    let annotations: BTreeMap<String, String> = serde_json::from_value(layer["annotations"].clone()).unwrap();
    let digest = Digest::parse(layer["digest"].as_str().unwrap()).unwrap();
    let signature = signature_of(layer);
    (annotations, digest, signature)
}

const GOOGLE_IDENTITY: &str = "cosign-svc-account@mineral-minutia-820.iam.gserviceaccount.com";
const GOOGLE_ISSUER: &str = "https://accounts.google.com";

#[tokio::test]
async fn a_real_keyless_cosign_signature_verifies_offline_against_the_public_good_root() {
    let (annotations, payload_digest, signature) = keyless_layer();
    let identity =
        verify_cosign_layer(&annotations, &payload_digest, &signature, &public_good(GOOGLE_IDENTITY, GOOGLE_ISSUER))
            .await
            .unwrap();
    assert_eq!(identity.identity, GOOGLE_IDENTITY);
    assert_eq!(identity.log_index, 19_941_761);
    assert_eq!(identity.integrated_time, 1_683_465_314);
}

#[tokio::test]
async fn keyless_verification_fails_for_another_identity_payload_or_log_entry() {
    let (annotations, payload_digest, signature) = keyless_layer();
    let policy = public_good(GOOGLE_IDENTITY, GOOGLE_ISSUER);

    let someone_else = public_good("mallory@example.com", GOOGLE_ISSUER);
    let error = verify_cosign_layer(&annotations, &payload_digest, &signature, &someone_else).await.unwrap_err();
    assert!(error.to_string().contains("mallory@example.com"), "{error}");

    // Another payload: the signature does not cover it.
    let error = verify_cosign_layer(&annotations, &Digest::of(b"other"), &signature, &policy).await.unwrap_err();
    assert!(matches!(error, SupplyChainError::Keyless { .. }), "{error}");

    // A log entry whose index was changed: Rekor's signed entry timestamp no longer holds.
    let mut forged = annotations.clone();
    let mut bundle: Value = serde_json::from_str(&annotations["dev.sigstore.cosign/bundle"]).unwrap();
    bundle["Payload"]["logIndex"] = json!(19_941_762);
    forged.insert("dev.sigstore.cosign/bundle".into(), bundle.to_string());
    let error = verify_cosign_layer(&forged, &payload_digest, &signature, &policy).await.unwrap_err();
    assert!(error.to_string().contains("signed entry timestamp"), "{error}");

    // A trust root without the public-good CAs and logs trusts none of it.
    let mut root: Value = serde_json::from_slice(&read_fixture("sigstore-trusted-root.public-good.json")).unwrap();
    root["tlogs"].as_array_mut().unwrap().remove(0);
    let other_root = KeylessPolicy { trust_root: TrustRoot::from_json(root.to_string().as_bytes()).unwrap(), ..policy };
    let error = verify_cosign_layer(&annotations, &payload_digest, &signature, &other_root).await.unwrap_err();
    assert!(error.to_string().contains("does not name"), "{error}");
}

/// A real keyless attestation bundle made by cosign (DSSE envelope, Rekor `dsse` entry),
/// verified offline against the pinned public-good trust root.
#[tokio::test]
async fn a_real_cosign_dsse_bundle_verifies_offline_for_its_subject_and_signer_only() {
    let bundle = read_fixture("sigstore-bundle-v0.3.oci-attestation.cosign-testdata.json");
    let policy = public_good("cody@soyland.com", "https://github.com/login/oauth");
    let subject = Digest::parse("sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4").unwrap();
    let identity = verify_bundle(&bundle, &subject, &policy).await.unwrap();
    assert_eq!(identity.identity, "cody@soyland.com");
    assert_eq!((identity.log_index, identity.integrated_time), (175_508_996, 1_740_770_291));

    let reason = |result: Result<_, SupplyChainError>| match result {
        Err(SupplyChainError::Keyless { reason }) => reason,
        other => panic!("expected a keyless refusal, got {other:?}"),
    };
    // Not a statement about another image.
    let other = Digest::of(b"another image");
    assert!(reason(verify_bundle(&bundle, &other, &policy).await).contains("no subject"));
    // Not someone else's signature.
    let someone_else = public_good("mallory@example.com", "https://github.com/login/oauth");
    assert!(reason(verify_bundle(&bundle, &subject, &someone_else).await).contains("mallory@example.com"));
    let other_issuer = public_good("cody@soyland.com", "https://accounts.google.com");
    assert!(reason(verify_bundle(&bundle, &subject, &other_issuer).await).contains("not issued to"));

    let document: Value = serde_json::from_slice(&bundle).unwrap();
    let tampered = |edit: &dyn Fn(&mut Value)| {
        let mut copy = document.clone();
        edit(&mut copy);
        copy.to_string().into_bytes()
    };
    // A statement edited after signing: the signature no longer holds.
    let payload = BASE64.decode(document["dsseEnvelope"]["payload"].as_str().unwrap()).unwrap();
    let edited = String::from_utf8(payload).unwrap().replace("bar", "baz");
    let forged = tampered(&|bundle| bundle["dsseEnvelope"]["payload"] = json!(BASE64.encode(&edited)));
    assert!(reason(verify_bundle(&forged, &subject, &policy).await).contains("signature does not verify"));
    // The log index changed: Rekor's signed entry timestamp no longer holds.
    let forged = tampered(&|bundle| bundle["verificationMaterial"]["tlogEntries"][0]["logIndex"] = json!("175508997"));
    assert!(reason(verify_bundle(&forged, &subject, &policy).await).contains("signed entry timestamp"));
    // Two signatures in the envelope: a bundle's envelope must hold exactly one.
    let forged = tampered(&|bundle| {
        let first = bundle["dsseEnvelope"]["signatures"][0].clone();
        bundle["dsseEnvelope"]["signatures"].as_array_mut().unwrap().push(first);
    });
    assert!(reason(verify_bundle(&forged, &subject, &policy).await).contains("exactly one"));

    // A trust root without the CT logs cannot vouch for the certificate; without the Fulcio CAs
    // (another instance's root) it does not trust the chain.
    let mut root: Value = serde_json::from_slice(&read_fixture("sigstore-trusted-root.public-good.json")).unwrap();
    root["ctlogs"] = json!([]);
    let no_ct =
        KeylessPolicy { trust_root: TrustRoot::from_json(root.to_string().as_bytes()).unwrap(), ..policy.clone() };
    assert!(reason(verify_bundle(&bundle, &subject, &no_ct).await).contains("certificate transparency"));
    let mut root: Value = serde_json::from_slice(&read_fixture("sigstore-trusted-root.public-good.json")).unwrap();
    let authorities = root["certificateAuthorities"].as_array_mut().unwrap();
    let first = authorities.remove(0);
    authorities.clear();
    authorities.push(first);
    let old_ca = KeylessPolicy { trust_root: TrustRoot::from_json(root.to_string().as_bytes()).unwrap(), ..policy };
    assert!(reason(verify_bundle(&bundle, &subject, &old_ca).await).contains("does not chain"));
}

/// The legacy keyless layer rebuilt as a v0.1 Sigstore bundle file verifies through the same
/// bundle path `gantry verify --bundle` uses.
#[tokio::test]
async fn a_message_signature_bundle_verifies_offline_for_its_artifact_only() {
    let (annotations, payload_digest, signature) = keyless_layer();
    let rekor: Value = serde_json::from_str(&annotations["dev.sigstore.cosign/bundle"]).unwrap();
    let certificate = annotations["dev.sigstore.cosign/certificate"]
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<String>();
    let body = rekor["Payload"]["body"].as_str().unwrap();
    let entry: Value = serde_json::from_slice(&BASE64.decode(body).unwrap()).unwrap();
    let log_id = hex_decode(rekor["Payload"]["logID"].as_str().unwrap());
    let bundle = json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": {
            "x509CertificateChain": {"certificates": [{"rawBytes": certificate}]},
            "tlogEntries": [{
                "logIndex": rekor["Payload"]["logIndex"].to_string(),
                "logId": {"keyId": BASE64.encode(log_id)},
                "kindVersion": {"kind": entry["kind"], "version": entry["apiVersion"]},
                "integratedTime": rekor["Payload"]["integratedTime"].to_string(),
                "inclusionPromise": {"signedEntryTimestamp": rekor["SignedEntryTimestamp"]},
                "canonicalizedBody": body,
            }],
        },
        "messageSignature": {
            "messageDigest": {
                "algorithm": "SHA2_256",
                "digest": BASE64.encode(hex_decode(payload_digest.hex())),
            },
            "signature": BASE64.encode(&signature),
        },
    })
    .to_string();
    let policy = public_good(GOOGLE_IDENTITY, GOOGLE_ISSUER);
    let identity = verify_bundle(bundle.as_bytes(), &payload_digest, &policy).await.unwrap();
    assert_eq!(identity.issuer, GOOGLE_ISSUER);
    let error = verify_bundle(bundle.as_bytes(), &Digest::of(b"other"), &policy).await.unwrap_err();
    assert!(matches!(error, SupplyChainError::Keyless { .. }), "{error}");
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}
