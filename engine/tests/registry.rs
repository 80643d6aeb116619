//! The registry adapters against real registries: a `docker-registry` process on loopback and
//! OCI image layouts on disk, read back by `skopeo`.

#[path = "../../tests/support/registry.rs"]
mod registry_support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use gantry_engine::registry::{
    self, DOCKER_MANIFEST_MEDIA_TYPE, Digest, Image, LayoutRegistry, OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE,
    Registry, RegistryAuth, RegistryError, TagOutcome, sample_image,
};
use registry_support::TestRegistry;
use serde_json::json;

fn revision(sha: &str) -> Image {
    sample_image("app", &[("org.opencontainers.image.revision", sha)])
}

fn connect(server: &TestRegistry) -> Arc<dyn Registry> {
    registry::open(&server.url(), Path::new("."), RegistryAuth::Anonymous).unwrap()
}

/// Fetches a manifest the way a container runtime would, returning its content type and bytes.
async fn raw_manifest(server: &TestRegistry, repository: &str, reference: &str) -> (String, Vec<u8>) {
    let response = reqwest::Client::new()
        .get(format!("{}/v2/{repository}/manifests/{reference}", server.url()))
        .header("Accept", registry::MANIFEST_MEDIA_TYPES.join(", "))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
    (content_type, response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn retag_keeps_the_digest_and_uploads_no_blob() {
    let server = TestRegistry::start();
    let registry = connect(&server);
    let image = revision("1111111");

    let digest = registry.push_image("app", "dev-sha-1111111", &image).await.unwrap();
    assert_eq!(digest, image.digest());
    assert_eq!(registry.resolve("app", "dev-sha-1111111").await.unwrap(), Some(digest.clone()));

    let blobs_before = server.blobs();
    let seen_before = server.requests().len();
    let outcome = registry.tag("app", &digest, "staging-v1.0.0").await.unwrap();
    assert_eq!(outcome, TagOutcome::Created);
    assert!(server.wait_for_request("PUT /v2/app/manifests/staging-v1.0.0"));

    let during_tag = &server.requests()[seen_before..];
    assert!(
        during_tag.iter().all(|request| !request.contains("/blobs/")),
        "a retag must not touch blobs: {during_tag:#?}"
    );
    assert!(
        during_tag.contains(&format!("GET /v2/app/manifests/{digest}")),
        "the manifest is read by digest: {during_tag:#?}"
    );
    assert_eq!(server.blobs(), blobs_before);
    assert_eq!(registry.resolve("app", "staging-v1.0.0").await.unwrap(), Some(digest.clone()));
    let (_, served) = raw_manifest(&server, "app", "staging-v1.0.0").await;
    assert_eq!(served, image.manifest);

    let seen_before = server.requests().len();
    let again = registry.tag("app", &digest, "staging-v1.0.0").await.unwrap();
    assert_eq!(again, TagOutcome::AlreadyPresent);
    let during_retry = &server.requests()[seen_before..];
    assert!(
        during_retry.iter().all(|request| !request.starts_with("PUT") && !request.starts_with("POST")),
        "an idempotent retag writes nothing: {during_retry:#?}"
    );

    assert_eq!(registry.list_tags("app").await.unwrap(), ["dev-sha-1111111", "staging-v1.0.0"]);
}

#[tokio::test]
async fn a_new_revision_uploads_only_what_changed() {
    let server = TestRegistry::start();
    let registry = connect(&server);
    registry.push_image("app", "dev-sha-1111111", &revision("1111111")).await.unwrap();
    assert_eq!(server.blobs().len(), 3, "manifest, config and layer");

    let seen_before = server.requests().len();
    let second = revision("2222222");
    registry.push_image("app", "dev-sha-2222222", &second).await.unwrap();
    assert!(server.wait_for_request("PUT /v2/app/manifests/dev-sha-2222222"));
    let uploads = server.requests()[seen_before..]
        .iter()
        .filter(|request| request.starts_with("POST /v2/app/blobs/uploads/"))
        .count();
    assert_eq!(uploads, 1, "only the new config is uploaded; the layer is shared");
    assert_eq!(server.blobs().len(), 5);
    assert!(server.blobs().contains(&Digest::of(&second.config).to_string()));
}

#[tokio::test]
async fn moving_a_tag_reports_the_previous_digest() {
    let server = TestRegistry::start();
    let registry = connect(&server);
    let first = registry.push_image("app", "dev-sha-1111111", &revision("1111111")).await.unwrap();
    let second = registry.push_image("app", "dev-sha-2222222", &revision("2222222")).await.unwrap();

    assert_eq!(registry.tag("app", &first, "prod").await.unwrap(), TagOutcome::Created);
    assert_eq!(registry.tag("app", &second, "prod").await.unwrap(), TagOutcome::Moved { from: first.clone() });
    assert_eq!(registry.resolve("app", "prod").await.unwrap(), Some(second));
    // The older revision is still reachable under its own tag.
    assert_eq!(registry.resolve("app", "dev-sha-1111111").await.unwrap(), Some(first));
}

#[tokio::test]
async fn missing_things_are_none_or_not_found() {
    let server = TestRegistry::start();
    let registry = connect(&server);
    assert_eq!(registry.resolve("app", "dev").await.unwrap(), None);
    assert!(matches!(registry.list_tags("app").await, Err(RegistryError::NotFound { .. })));

    registry.push_image("app", "dev", &revision("1111111")).await.unwrap();
    assert_eq!(registry.resolve("app", "prod").await.unwrap(), None);

    let unknown = revision("9999999").digest();
    let error = registry.tag("app", &unknown, "prod").await.unwrap_err();
    assert!(
        matches!(&error, RegistryError::NotFound { reference } if reference.ends_with(unknown.as_str())),
        "{error:?}"
    );
    assert!(!error.is_transient());
    assert_eq!(registry.resolve("app", "prod").await.unwrap(), None);
}

#[tokio::test]
async fn docker_manifests_and_indexes_keep_type_and_digest() {
    let server = TestRegistry::start();
    let registry = connect(&server);

    // The sample image's blobs under a Docker schema 2 manifest.
    let oci = revision("1111111");
    let docker_manifest = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": Digest::of(&oci.config),
            "size": oci.config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "digest": Digest::of(&oci.layers[0]),
            "size": oci.layers[0].len(),
        }],
    })
    .to_string()
    .into_bytes();
    let docker = Image {
        manifest: docker_manifest,
        manifest_media_type: DOCKER_MANIFEST_MEDIA_TYPE.to_owned(),
        config: oci.config.clone(),
        layers: oci.layers.clone(),
    };
    let docker_digest = registry.push_image("app", "docker", &docker).await.unwrap();
    assert_eq!(registry.tag("app", &docker_digest, "docker-prod").await.unwrap(), TagOutcome::Created);
    let (content_type, bytes) = raw_manifest(&server, "app", "docker-prod").await;
    assert_eq!(content_type, DOCKER_MANIFEST_MEDIA_TYPE);
    assert_eq!(Digest::of(&bytes), docker_digest);

    // An OCI index over the OCI flavour of the image, pushed by another client.
    let image_digest = registry.push_image("app", "oci", &oci).await.unwrap();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "digest": image_digest,
            "size": oci.manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    })
    .to_string()
    .into_bytes();
    let index_digest = Digest::of(&index);
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    client
        .push_manifest_raw(
            &oci_client::Reference::with_tag(server.addr.clone(), "app".into(), "multi".into()),
            index.clone(),
            OCI_INDEX_MEDIA_TYPE.parse().unwrap(),
        )
        .await
        .unwrap();

    assert_eq!(registry.tag("app", &index_digest, "multi-prod").await.unwrap(), TagOutcome::Created);
    assert_eq!(registry.resolve("app", "multi-prod").await.unwrap(), Some(index_digest));
    let (content_type, bytes) = raw_manifest(&server, "app", "multi-prod").await;
    assert_eq!(content_type, OCI_INDEX_MEDIA_TYPE);
    assert_eq!(bytes, index);
}

#[tokio::test]
async fn a_bare_loopback_address_uses_plain_http() {
    let server = TestRegistry::start();
    let registry = registry::open(&server.addr, Path::new("."), RegistryAuth::Anonymous).unwrap();
    let digest = registry.push_image("team/app", "dev", &revision("1111111")).await.unwrap();
    assert_eq!(registry.resolve("team/app", "dev").await.unwrap(), Some(digest));
    assert_eq!(registry.reference("team/app", "dev"), format!("{}/team/app:dev", server.addr));

    // A namespace in the URL prefixes every repository.
    let namespaced =
        registry::open(&format!("{}/team", server.url()), Path::new("."), RegistryAuth::Anonymous).unwrap();
    assert_eq!(namespaced.list_tags("app").await.unwrap(), ["dev"]);
}

#[tokio::test]
async fn an_unreachable_registry_is_a_transient_error() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let registry =
        registry::open(&format!("http://127.0.0.1:{port}"), Path::new("."), RegistryAuth::Anonymous).unwrap();
    let error = registry.resolve("app", "dev").await.unwrap_err();
    assert!(matches!(error, RegistryError::Distribution { status: None, .. }), "{error:?}");
    assert!(error.is_transient(), "{error:?}");
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    assert!(Path::new("/usr/bin/skopeo").is_file(), "/usr/bin/skopeo is missing: install the Debian package `skopeo`");
    let output = Command::new("/usr/bin/skopeo").args(args).output().unwrap();
    assert!(output.status.success(), "skopeo {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

#[tokio::test]
async fn skopeo_reads_the_image_layout_and_copies_it_unchanged() {
    let root = tempfile::tempdir().unwrap();
    let layout = LayoutRegistry::new(root.path());
    let image = revision("1111111");
    let digest = layout.push_image("app", "dev", &image).await.unwrap();
    layout.tag("app", &digest, "prod-v1.2.3").await.unwrap();

    let reference = format!("oci:{}/app:prod-v1.2.3", root.path().display());
    let inspected: serde_json::Value = serde_json::from_slice(&skopeo(&["inspect", &reference])).unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(inspected["Labels"]["org.opencontainers.image.revision"], "1111111");
    assert_eq!(skopeo(&["inspect", "--raw", &reference]), image.manifest);

    // The same image in a distribution registry keeps its digest.
    let server = TestRegistry::start();
    skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &reference,
        &format!("docker://{}/copied:prod-v1.2.3", server.addr),
    ]);
    let remote = connect(&server);
    assert_eq!(remote.resolve("copied", "prod-v1.2.3").await.unwrap(), Some(digest));
}
