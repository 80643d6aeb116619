//! Promotion between repositories and registries against real `docker-registry` processes on
//! loopback: retag, cross-repository mount (and its fallback), cross-registry copy with digest
//! checks, multi-platform indexes, OCI artifacts, immutable tags, retries through a fault
//! proxy, and basic and bearer-token authentication.

#[path = "../../tests/support/registry.rs"]
mod registry_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_engine::registry::{
    self, Digest, Image, ImmutableTags, LayoutRegistry, Location, Manifest, OCI_INDEX_MEDIA_TYPE,
    OCI_MANIFEST_MEDIA_TYPE, Registry, RegistryAuth, RegistryError, RegistryOptions, RetryPolicy, Strategy, TagOutcome,
    promote, promote_tag, sample_image,
};
use registry_support::{FaultProxy, TestRegistry, TokenServer};
use serde_json::json;

fn revision(sha: &str) -> Image {
    sample_image("app", &[("org.opencontainers.image.revision", sha)])
}

fn connect(url: &str) -> Arc<dyn Registry> {
    registry::open(url, Path::new("."), RegistryAuth::Anonymous).unwrap()
}

fn connect_with(url: &str, options: RegistryOptions) -> Arc<dyn Registry> {
    registry::open_with(url, Path::new("."), &options).unwrap()
}

/// Retries quick enough for tests, and enough of them to outlast the injected faults.
fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
    }
}

fn at<'a>(registry: &'a Arc<dyn Registry>, repository: &'a str) -> Location<'a> {
    Location::new(registry.as_ref(), repository)
}

/// Fetches a manifest the way a container runtime would: content type and bytes.
async fn raw_manifest(base_url: &str, repository: &str, reference: &str) -> (String, Vec<u8>) {
    let response = reqwest::Client::new()
        .get(format!("{base_url}/v2/{repository}/manifests/{reference}"))
        .header(
            "Accept",
            format!(
                "{}, {}",
                registry::MANIFEST_MEDIA_TYPES.join(", "),
                "application/vnd.oci.artifact.manifest.v1+json"
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{repository}:{reference}");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    (content_type, response.bytes().await.unwrap().to_vec())
}

/// Requests logged since `seen`.
fn since(server: &TestRegistry, seen: usize) -> Vec<String> {
    server.requests()[seen..].to_vec()
}

/// An OCI index over `images`, one platform each.
fn index_of(images: &[(&Image, &str)]) -> Manifest {
    let manifests: Vec<_> = images
        .iter()
        .map(|(image, architecture)| {
            json!({
                "mediaType": OCI_MANIFEST_MEDIA_TYPE,
                "digest": image.digest(),
                "size": image.manifest.len(),
                "platform": {"architecture": architecture, "os": "linux"},
            })
        })
        .collect();
    Manifest {
        bytes: json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX_MEDIA_TYPE,
            "manifests": manifests,
        })
        .to_string()
        .into_bytes(),
        media_type: OCI_INDEX_MEDIA_TYPE.to_owned(),
    }
}

fn platform(architecture: &str) -> Image {
    sample_image("app", &[("platform", architecture)])
}

/// Pushes two platform images and an index over them; returns the index.
async fn push_multi_arch(registry: &dyn Registry, repository: &str, tag: &str) -> Manifest {
    let amd64 = platform("amd64");
    let arm64 = platform("arm64");
    registry.push_image(repository, "amd64", &amd64).await.unwrap();
    registry.push_image(repository, "arm64", &arm64).await.unwrap();
    let index = index_of(&[(&amd64, "amd64"), (&arm64, "arm64")]);
    registry.put_manifest(repository, &index, Some(tag)).await.unwrap();
    index
}

#[tokio::test]
async fn same_repository_promotion_is_a_retag_without_blob_traffic() {
    let server = TestRegistry::start();
    let registry = connect(&server.url());
    let digest = registry.push_image("app", "dev-sha-1111111", &revision("1111111")).await.unwrap();

    let seen = server.requests().len();
    let promotion = promote(&at(&registry, "app"), &at(&registry, "app"), &digest, "staging").await.unwrap();
    assert_eq!(promotion.strategy, Strategy::Retag);
    assert_eq!(promotion.outcome, TagOutcome::Created);
    assert_eq!(promotion.manifests_written, 1);
    assert!(server.wait_for_request("PUT /v2/app/manifests/staging"));
    let during = since(&server, seen);
    assert!(during.iter().all(|request| !request.contains("/blobs/")), "{during:#?}");
    assert_eq!(registry.resolve("app", "staging").await.unwrap(), Some(digest.clone()));

    // Named by tag, the source is read in one request and the digest is what the tag holds.
    let promotion = promote_tag(&at(&registry, "app"), "dev-sha-1111111", &at(&registry, "app"), "qa").await.unwrap();
    assert_eq!(promotion.digest, digest);
    assert_eq!(promotion.outcome, TagOutcome::Created);
    let error = promote_tag(&at(&registry, "app"), "nope", &at(&registry, "app"), "qa").await.unwrap_err();
    assert!(
        matches!(&error, RegistryError::NotFound { reference } if reference == &format!("{}/app:nope", server.addr)),
        "{error:?}"
    );
}

#[tokio::test]
async fn cross_repository_promotion_mounts_blobs() {
    let server = TestRegistry::start();
    let registry = connect(&server.url());
    let image = revision("1111111");
    let digest = registry.push_image("app", "dev", &image).await.unwrap();

    let seen = server.requests().len();
    let promotion = promote(&at(&registry, "app"), &at(&registry, "prod/app"), &digest, "prod-v1.0.0").await.unwrap();
    assert_eq!(promotion.strategy, Strategy::Mount);
    assert_eq!(promotion.outcome, TagOutcome::Created);
    assert_eq!(promotion.blobs_mounted, 2, "config and layer");
    assert_eq!(promotion.blobs_copied, 0);
    assert_eq!(promotion.bytes_copied, 0);
    assert!(server.wait_for_request("PUT /v2/prod/app/manifests/prod-v1.0.0"));

    let during = since(&server, seen);
    let mounts: Vec<&String> =
        during.iter().filter(|request| request.starts_with("POST /v2/prod/app/blobs/uploads/?mount=")).collect();
    assert_eq!(mounts.len(), 2, "{during:#?}");
    assert!(mounts.iter().all(|request| request.ends_with("&from=app")));
    assert!(
        during.iter().all(|request| !request.starts_with("PATCH") && !request.starts_with("PUT /v2/prod/app/blobs")),
        "a mount moves no bytes: {during:#?}"
    );
    let (content_type, bytes) = raw_manifest(&server.url(), "prod/app", "prod-v1.0.0").await;
    assert_eq!(content_type, OCI_MANIFEST_MEDIA_TYPE);
    assert_eq!(bytes, image.manifest);

    // Again: the tag is already there, so nothing at all is written.
    let seen = server.requests().len();
    let again = promote(&at(&registry, "app"), &at(&registry, "prod/app"), &digest, "prod-v1.0.0").await.unwrap();
    assert_eq!(again.outcome, TagOutcome::AlreadyPresent);
    assert_eq!(again.manifests_written, 0);
    let during = since(&server, seen);
    assert!(during.iter().all(|request| request.starts_with("HEAD") || request.starts_with("GET")), "{during:#?}");
}

#[tokio::test]
async fn a_declined_mount_falls_back_to_a_streamed_copy() {
    let server = TestRegistry::start();
    let proxy = FaultProxy::start(&server.addr);
    proxy.decline_mounts();
    let registry = connect(&proxy.url());
    let image = revision("1111111");
    let digest = registry.push_image("app", "dev", &image).await.unwrap();

    let promotion = promote(&at(&registry, "app"), &at(&registry, "prod/app"), &digest, "v1").await.unwrap();
    assert_eq!(promotion.strategy, Strategy::Mount);
    assert_eq!(promotion.blobs_mounted, 0);
    assert_eq!(promotion.blobs_copied, 2);
    assert_eq!(promotion.bytes_copied, (image.config.len() + image.layers[0].len()) as u64);
    let requests = proxy.requests();
    assert_eq!(requests.iter().filter(|request| request.contains("mount=")).count(), 2, "{requests:#?}");
    // The upload sessions the registry opened instead of mounting are cancelled.
    assert_eq!(
        requests.iter().filter(|request| request.starts_with("DELETE /v2/prod/app/blobs/uploads/")).count(),
        2,
        "{requests:#?}"
    );
    assert_eq!(registry.resolve("prod/app", "v1").await.unwrap(), Some(digest));
}

#[tokio::test]
async fn cross_registry_copy_streams_every_missing_blob() {
    let source_server = TestRegistry::start();
    let target_server = TestRegistry::start();
    let source = connect(&source_server.url());
    let target = connect(&target_server.url());
    let image = revision("1111111");
    let digest = source.push_image("app", "dev", &image).await.unwrap();

    let promotion = promote(&at(&source, "app"), &at(&target, "prod/app"), &digest, "v1").await.unwrap();
    assert_eq!(promotion.strategy, Strategy::Copy);
    assert_eq!(promotion.outcome, TagOutcome::Created);
    assert_eq!(promotion.blobs_copied, 2);
    assert_eq!(promotion.manifests_written, 1);
    assert_eq!(target_server.blobs(), source_server.blobs());
    let (content_type, bytes) = raw_manifest(&target_server.url(), "prod/app", "v1").await;
    assert_eq!(content_type, OCI_MANIFEST_MEDIA_TYPE);
    assert_eq!(bytes, image.manifest);

    // A new revision shares the layer: only its config crosses over.
    let second = revision("2222222");
    let second_digest = source.push_image("app", "dev", &second).await.unwrap();
    let promotion = promote(&at(&source, "app"), &at(&target, "prod/app"), &second_digest, "v1").await.unwrap();
    assert_eq!(promotion.outcome, TagOutcome::Moved { from: digest });
    assert_eq!(promotion.blobs_present, 1);
    assert_eq!(promotion.blobs_copied, 1);
    assert_eq!(promotion.bytes_copied, second.config.len() as u64);
}

#[tokio::test]
async fn blobs_served_from_elsewhere_are_followed_without_credentials() {
    let source_server = TestRegistry::start();
    let target_server = TestRegistry::start();
    let proxy = FaultProxy::start(&source_server.addr);
    proxy.redirect_blobs();
    let source = connect(&proxy.url());
    let target = connect(&target_server.url());
    let image = revision("1111111");
    let digest = source.push_image("app", "dev", &image).await.unwrap();

    let promotion = promote(&at(&source, "app"), &at(&target, "app"), &digest, "v1").await.unwrap();
    assert_eq!(promotion.blobs_copied, 2);
    assert_eq!(target_server.blobs(), source_server.blobs());
    let redirected = proxy.requests().iter().filter(|request| request.starts_with("GET /v2/app/blobs/")).count();
    assert_eq!(redirected, 2, "{:#?}", proxy.requests());
    // The downloads themselves reached the registry directly.
    assert!(source_server.wait_for_request(&format!("GET /v2/app/blobs/{}", Digest::of(&image.layers[0]))));
}

#[tokio::test]
async fn a_corrupted_source_blob_is_not_copied() {
    let source_server = TestRegistry::start();
    let target_server = TestRegistry::start();
    let source = connect(&source_server.url());
    let target = connect(&target_server.url());
    let image = revision("1111111");
    let digest = source.push_image("app", "dev", &image).await.unwrap();

    // Same length, different bytes: only the digest can tell.
    let layer = Digest::of(&image.layers[0]);
    let path = source_server.blob_file(layer.as_str());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let error = promote(&at(&source, "app"), &at(&target, "app"), &digest, "v1").await.unwrap_err();
    assert!(
        matches!(&error, RegistryError::DigestMismatch { expected, .. } if expected == layer.as_str()),
        "{error:?}"
    );
    assert!(!target_server.blobs().contains(&layer.to_string()));
    assert_eq!(target.resolve("app", "v1").await.unwrap(), None);
}

#[tokio::test]
async fn a_multi_platform_index_moves_with_its_children() {
    let source_server = TestRegistry::start();
    let target_server = TestRegistry::start();
    let source = connect(&source_server.url());
    let target = connect(&target_server.url());
    let index = push_multi_arch(source.as_ref(), "app", "v1").await;
    let digest = index.digest();

    let promotion = promote(&at(&source, "app"), &at(&target, "app"), &digest, "prod").await.unwrap();
    assert_eq!(promotion.strategy, Strategy::Copy);
    assert_eq!(promotion.manifests_written, 3, "two children and the index");
    assert_eq!(promotion.blobs_copied, 3, "two configs and the shared layer");
    for architecture in ["amd64", "arm64"] {
        let child = platform(architecture).digest();
        assert!(target.manifest_exists("app", &child).await.unwrap());
        let (_, bytes) = raw_manifest(&target_server.url(), "app", child.as_str()).await;
        assert_eq!(bytes, platform(architecture).manifest);
    }
    let (content_type, bytes) = raw_manifest(&target_server.url(), "app", "prod").await;
    assert_eq!(content_type, OCI_INDEX_MEDIA_TYPE);
    assert_eq!(bytes, index.bytes);

    // Within one registry the children are mounted along.
    let promotion = promote(&at(&source, "app"), &at(&source, "prod/app"), &digest, "v1").await.unwrap();
    assert_eq!(promotion.strategy, Strategy::Mount);
    assert_eq!(promotion.manifests_written, 3);
    assert_eq!(promotion.blobs_mounted, 3);
    assert_eq!(source.resolve("prod/app", "v1").await.unwrap(), Some(digest));

    // A child the destination already holds is not fetched or written again.
    let riscv = platform("riscv64");
    source.push_image("app", "riscv64", &riscv).await.unwrap();
    let amd64 = platform("amd64");
    let wider = index_of(&[(&amd64, "amd64"), (&riscv, "riscv64")]);
    source.put_manifest("app", &wider, Some("v2")).await.unwrap();
    let promotion = promote(&at(&source, "app"), &at(&target, "app"), &wider.digest(), "prod").await.unwrap();
    assert_eq!(promotion.manifests_written, 2, "the new child and the index");
    assert_eq!(promotion.blobs_copied, 1, "the new config");
    assert_eq!(promotion.blobs_present, 1, "the shared layer");
}

#[tokio::test]
async fn helm_charts_and_sboms_move_like_images() {
    let source_server = TestRegistry::start();
    let target_server = TestRegistry::start();
    let source = connect(&source_server.url());
    let target = connect(&target_server.url());

    let chart_config = br#"{"apiVersion":"v2","name":"app","version":"1.2.3"}"#.to_vec();
    let chart_layer = b"\x1f\x8b not really a chart, but registries never look".to_vec();
    let chart = artifact(
        None,
        ("application/vnd.cncf.helm.config.v1+json", &chart_config),
        ("application/vnd.cncf.helm.chart.content.v1.tar+gzip", &chart_layer),
    );
    let image_digest = source.push_image("app", "v1", &revision("1111111")).await.unwrap();
    let spdx = br#"{"spdxVersion":"SPDX-2.3","name":"app","packages":[]}"#.to_vec();
    let sbom = artifact(
        Some(("application/spdx+json", &image_digest)),
        ("application/vnd.oci.empty.v1+json", b"{}"),
        ("application/spdx+json", &spdx),
    );

    for (repository, artifact) in [("charts/app", &chart), ("app", &sbom)] {
        let digest = source.push_image(repository, "1.2.3", artifact).await.unwrap();
        let promotion = promote(&at(&source, repository), &at(&target, repository), &digest, "prod").await.unwrap();
        assert_eq!(promotion.blobs_copied, 2, "{repository}");
        let (content_type, bytes) = raw_manifest(&target_server.url(), repository, "prod").await;
        assert_eq!(content_type, OCI_MANIFEST_MEDIA_TYPE);
        assert_eq!(bytes, artifact.manifest, "{repository}");
        assert_eq!(target.resolve(repository, "prod").await.unwrap(), Some(digest));
    }
    let served = reqwest::get(format!("{}/v2/app/blobs/{}", target_server.url(), Digest::of(&spdx)))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(served.as_ref(), spdx.as_slice());
}

/// An OCI artifact: one config and one layer of any media type, optionally about a subject.
fn artifact(subject: Option<(&str, &Digest)>, config: (&str, &[u8]), layer: (&str, &[u8])) -> Image {
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": config.0, "digest": Digest::of(config.1), "size": config.1.len()},
        "layers": [{"mediaType": layer.0, "digest": Digest::of(layer.1), "size": layer.1.len()}],
        "annotations": {"org.opencontainers.image.title": "gantry test artifact"},
    });
    if let Some((artifact_type, subject)) = subject {
        manifest["artifactType"] = json!(artifact_type);
        manifest["subject"] = json!({
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "digest": subject,
            "size": revision("1111111").manifest.len(),
        });
    }
    Image {
        manifest: manifest.to_string().into_bytes(),
        manifest_media_type: OCI_MANIFEST_MEDIA_TYPE.to_owned(),
        config: config.1.to_vec(),
        layers: vec![layer.1.to_vec()],
    }
}

#[tokio::test]
async fn immutable_tags_are_never_moved() {
    let source_server = TestRegistry::start();
    let server = TestRegistry::start();
    let mutable = connect(&server.url());
    let immutable = connect_with(
        &server.url(),
        RegistryOptions { immutable_tags: ImmutableTags::All, ..RegistryOptions::default() },
    );
    let first = mutable.push_image("app", "prod", &revision("1111111")).await.unwrap();
    let second = mutable.push_image("app", "dev", &revision("2222222")).await.unwrap();

    let seen = server.requests().len();
    let error = promote(&at(&immutable, "app"), &at(&immutable, "app"), &second, "prod").await.unwrap_err();
    match &error {
        RegistryError::TagImmutable { reference, current, requested } => {
            assert_eq!(reference, &format!("{}/app:prod", server.addr));
            assert_eq!(current, &first);
            assert_eq!(requested, &second);
        }
        other => panic!("expected an immutability error, got {other:?}"),
    }
    assert!(error.to_string().contains("immutable"), "{error}");
    assert!(!error.is_transient());
    let during = since(&server, seen);
    assert!(during.iter().all(|request| !request.starts_with("PUT")), "{during:#?}");

    // The same digest again is fine: promotion is idempotent.
    let again = promote(&at(&immutable, "app"), &at(&immutable, "app"), &first, "prod").await.unwrap();
    assert_eq!(again.outcome, TagOutcome::AlreadyPresent);
    // The registry-level operations refuse too.
    assert!(matches!(immutable.tag("app", &second, "prod").await, Err(RegistryError::TagImmutable { .. })));
    assert!(matches!(
        immutable.push_image("app", "prod", &revision("3333333")).await,
        Err(RegistryError::TagImmutable { .. })
    ));
    assert_eq!(mutable.resolve("app", "prod").await.unwrap(), Some(first.clone()));

    // A copy from elsewhere is refused before a single blob is uploaded.
    let source = connect(&source_server.url());
    let third = source.push_image("app", "dev", &revision("4444444")).await.unwrap();
    let blobs_before = server.blobs();
    assert!(matches!(
        promote(&at(&source, "app"), &at(&immutable, "app"), &third, "prod").await,
        Err(RegistryError::TagImmutable { .. })
    ));
    assert_eq!(server.blobs(), blobs_before);
}

#[tokio::test]
async fn server_errors_are_retried_and_never_leave_a_partial_tag() {
    let source_server = TestRegistry::start();
    let target_server = TestRegistry::start();
    let proxy = FaultProxy::start(&target_server.addr);
    let source = connect(&source_server.url());
    let direct = connect(&target_server.url());
    let target = connect_with(&proxy.url(), RegistryOptions { retry: quick_retries(), ..RegistryOptions::default() });
    let index = push_multi_arch(source.as_ref(), "app", "v1").await;

    // The first two manifest writes fail with 503 and are retried.
    proxy.fail("PUT", "/manifests/", 2, 503, None);
    let promotion = promote(&at(&source, "app"), &at(&target, "app"), &index.digest(), "v1").await.unwrap();
    assert_eq!(proxy.faults_served(), 2);
    assert_eq!(promotion.manifests_written, 3);
    assert_eq!(direct.resolve("app", "v1").await.unwrap(), Some(index.digest()));

    // When the tag write keeps failing, the promotion fails as transient and no tag points
    // at anything; the children written by digest are harmless and reused later.
    let riscv = platform("riscv64");
    source.push_image("app", "riscv64", &riscv).await.unwrap();
    let wider = index_of(&[(&platform("amd64"), "amd64"), (&riscv, "riscv64")]);
    source.put_manifest("app", &wider, Some("v2")).await.unwrap();
    proxy.fail("PUT", "/manifests/v2", usize::MAX, 503, None);
    let error = promote(&at(&source, "app"), &at(&target, "app"), &wider.digest(), "v2").await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(matches!(error, RegistryError::Distribution { status: Some(503), .. }), "{error:?}");
    assert_eq!(direct.resolve("app", "v2").await.unwrap(), None);

    proxy.heal();
    let promotion = promote(&at(&source, "app"), &at(&target, "app"), &wider.digest(), "v2").await.unwrap();
    assert_eq!(promotion.outcome, TagOutcome::Created);
    assert_eq!(promotion.manifests_written, 1, "the child went in before");
    assert_eq!(direct.resolve("app", "v2").await.unwrap(), Some(wider.digest()));
}

#[tokio::test]
async fn retry_after_is_waited_out_unless_it_is_too_long() {
    let server = TestRegistry::start();
    let proxy = FaultProxy::start(&server.addr);
    let registry = connect_with(&proxy.url(), RegistryOptions { retry: quick_retries(), ..RegistryOptions::default() });
    let digest = registry.push_image("app", "dev", &revision("1111111")).await.unwrap();

    proxy.fail("PUT", "/manifests/staging", 1, 429, Some(1));
    let started = Instant::now();
    let promotion = promote(&at(&registry, "app"), &at(&registry, "app"), &digest, "staging").await.unwrap();
    assert_eq!(promotion.outcome, TagOutcome::Created);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was not waited out ({:?})", started.elapsed());
    assert_eq!(proxy.faults_served(), 1);

    // An hour is longer than the policy waits: the error comes back at once, as transient,
    // for the caller to retry later.
    proxy.fail("PUT", "/manifests/prod", 1, 503, Some(3600));
    let started = Instant::now();
    let error = promote(&at(&registry, "app"), &at(&registry, "app"), &digest, "prod").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(registry.resolve("app", "prod").await.unwrap(), None);
}

#[tokio::test]
async fn basic_credentials_are_sent_when_the_registry_asks() {
    let server = TestRegistry::start();
    let proxy = FaultProxy::start(&server.addr);
    proxy.require_basic("ci", "s3cret");
    let registry = connect_with(
        &proxy.url(),
        RegistryOptions::with_auth(RegistryAuth::Basic { username: "ci".into(), password: "s3cret".into() }),
    );
    let digest = registry.push_image("app", "dev", &revision("1111111")).await.unwrap();
    promote(&at(&registry, "app"), &at(&registry, "prod/app"), &digest, "v1").await.unwrap();
    assert_eq!(registry.resolve("prod/app", "v1").await.unwrap(), Some(digest));

    let anonymous = connect(&proxy.url());
    let error = anonymous.resolve("app", "dev").await.unwrap_err();
    assert!(matches!(error, RegistryError::Distribution { status: Some(401), .. }), "{error:?}");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn bearer_tokens_are_fetched_for_the_scopes_needed() {
    let tokens = TokenServer::start("ci", "s3cret");
    let server = TestRegistry::start_with_token_auth(&tokens);
    let registry = connect_with(
        &server.url(),
        RegistryOptions::with_auth(RegistryAuth::Basic { username: "ci".into(), password: "s3cret".into() }),
    );
    let digest = registry.push_image("app", "dev", &revision("1111111")).await.unwrap();
    let promotion = promote(&at(&registry, "app"), &at(&registry, "prod/app"), &digest, "v1").await.unwrap();
    assert_eq!(promotion.blobs_mounted, 2);
    assert_eq!(registry.resolve("prod/app", "v1").await.unwrap(), Some(digest));
    // The mount's token covers reading the source as well as writing the destination.
    let scopes = tokens.scopes();
    assert!(
        scopes.iter().any(|granted| {
            granted.contains(&"repository:app:pull".to_owned())
                && granted.contains(&"repository:prod/app:pull,push".to_owned())
        }),
        "{scopes:#?}"
    );

    let wrong = connect_with(
        &server.url(),
        RegistryOptions::with_auth(RegistryAuth::Basic { username: "ci".into(), password: "wrong".into() }),
    );
    let error = wrong.resolve("app", "dev").await.unwrap_err();
    assert!(matches!(error, RegistryError::Distribution { status: Some(401), .. }), "{error:?}");
    assert!(error.to_string().contains("token"), "{error}");
    assert!(tokens.refused() >= 1);
}

#[tokio::test]
async fn layouts_and_registries_exchange_images() {
    let root = tempfile::tempdir().unwrap();
    let layout: Arc<dyn Registry> = Arc::new(LayoutRegistry::new(root.path().join("oci")));
    let server = TestRegistry::start();
    let remote = connect(&server.url());
    let image = revision("1111111");
    let digest = layout.push_image("app", "dev", &image).await.unwrap();

    let promotion = promote(&at(&layout, "app"), &at(&remote, "app"), &digest, "v1").await.unwrap();
    assert_eq!(promotion.strategy, Strategy::Copy);
    assert_eq!(promotion.blobs_copied, 2);
    assert_eq!(remote.resolve("app", "v1").await.unwrap(), Some(digest.clone()));

    let mirror: Arc<dyn Registry> = Arc::new(LayoutRegistry::new(root.path().join("mirror")));
    let promotion = promote(&at(&remote, "app"), &at(&mirror, "app"), &digest, "prod").await.unwrap();
    assert_eq!(promotion.strategy, Strategy::Copy);
    assert_eq!(mirror.resolve("app", "prod").await.unwrap(), Some(digest.clone()));

    // Inside one layout root a mount is a hard link: the bytes are stored once.
    let promotion = promote(&at(&layout, "app"), &at(&layout, "prod/app"), &digest, "v1").await.unwrap();
    assert_eq!(promotion.strategy, Strategy::Mount);
    assert_eq!(promotion.blobs_mounted, 2);
    let layer = Digest::of(&image.layers[0]);
    let blob = |repository: &str| root.path().join("oci").join(repository).join("blobs/sha256").join(layer.hex());
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(std::fs::metadata(blob("app")).unwrap().ino(), std::fs::metadata(blob("prod/app")).unwrap().ino());
    assert_eq!(layout.resolve("prod/app", "v1").await.unwrap(), Some(digest));
}
