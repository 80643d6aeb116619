//! The ECR adapter against `moto_server` (PyPI `moto[server]`) on loopback: retag through
//! `BatchGetImage` + `PutImage`, a tag that already exists, an immutable tag conflict, and deletes.

#[path = "../../tests/support/registry.rs"]
mod registry_support;

use std::path::Path;

use aws_sdk_ecr::types::ImageTagMutability;
use gantry_engine::registry::{
    self, EcrRegistry, Image, Location, Manifest, OCI_MANIFEST_MEDIA_TYPE, Registry, RegistryAuth, RegistryError,
    RegistryOptions, Strategy, TagOutcome, promote, promote_tag, sample_image,
};
use registry_support::MotoServer;

/// The account moto puts every repository in.
const ACCOUNT: &str = "123456789012";

fn url(moto: &MotoServer) -> String {
    format!("ecr://{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com?endpoint={}", moto.url())
}

fn options() -> RegistryOptions {
    RegistryOptions::with_auth(RegistryAuth::Basic { username: "test".into(), password: "test".into() })
}

fn manifest_of(image: &Image) -> Manifest {
    Manifest { bytes: image.manifest.clone(), media_type: image.manifest_media_type.clone() }
}

fn revision(sha: &str) -> Image {
    sample_image("app", &[("org.opencontainers.image.revision", sha)])
}

/// Creates a repository and puts `images` into it under their tags, the way CI would.
async fn seed(registry: &EcrRegistry, repository: &str, mutability: ImageTagMutability, images: &[(&Image, &str)]) {
    let client = registry.client().await;
    client.create_repository().repository_name(repository).image_tag_mutability(mutability).send().await.unwrap();
    for (image, tag) in images {
        client
            .put_image()
            .repository_name(repository)
            .image_manifest(String::from_utf8(image.manifest.clone()).unwrap())
            .image_manifest_media_type(&image.manifest_media_type)
            .image_digest(image.digest().as_str())
            .image_tag(*tag)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn retag_writes_the_same_manifest_under_the_new_tag() {
    let moto = MotoServer::start();
    let ecr = EcrRegistry::from_url(&url(&moto), &options()).unwrap();
    let first = revision("1111111");
    let second = revision("2222222");
    seed(&ecr, "team/app", ImageTagMutability::Mutable, &[(&first, "dev-1111111"), (&second, "dev-2222222")]).await;

    assert_eq!(ecr.resolve("team/app", "dev-1111111").await.unwrap(), Some(first.digest()));
    assert_eq!(ecr.tag("team/app", &first.digest(), "prod").await.unwrap(), TagOutcome::Created);
    assert_eq!(ecr.resolve("team/app", "prod").await.unwrap(), Some(first.digest()));
    // ECR hands back exactly the bytes that were put, so the digest is unchanged.
    let stored = ecr.fetch_manifest("team/app", &first.digest()).await.unwrap();
    assert_eq!(stored.bytes, first.manifest);
    assert_eq!(stored.media_type, OCI_MANIFEST_MEDIA_TYPE);

    assert_eq!(ecr.tag("team/app", &first.digest(), "prod").await.unwrap(), TagOutcome::AlreadyPresent);
    assert_eq!(
        ecr.tag("team/app", &second.digest(), "prod").await.unwrap(),
        TagOutcome::Moved { from: first.digest() }
    );
    assert_eq!(ecr.list_tags("team/app").await.unwrap(), ["dev-1111111", "dev-2222222", "prod"]);

    // Opened from its URL like any registry, and promoted within one repository.
    let opened = registry::open_with(&url(&moto), Path::new("."), &options()).unwrap();
    let here = Location::new(opened.as_ref(), "team/app");
    let promotion = promote(&here, &here, &first.digest(), "staging").await.unwrap();
    assert_eq!(promotion.strategy, Strategy::Retag);
    assert_eq!(promotion.outcome, TagOutcome::Created);
    let promotion = promote_tag(&here, "dev-2222222", &here, "qa").await.unwrap();
    assert_eq!(promotion.digest, second.digest());
    assert_eq!(opened.resolve("team/app", "qa").await.unwrap(), Some(second.digest()));
    assert_eq!(
        opened.reference("team/app", "staging"),
        format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/team/app:staging")
    );
}

#[tokio::test]
async fn a_tag_that_already_exists_at_the_digest_is_success() {
    let moto = MotoServer::start();
    let ecr = EcrRegistry::from_url(&url(&moto), &options()).unwrap();
    let image = revision("1111111");
    seed(&ecr, "app", ImageTagMutability::Mutable, &[(&image, "v1")]).await;

    // Written without looking first, ECR answers ImageAlreadyExistsException: success.
    let written = ecr.put_tag("app", &manifest_of(&image), Some("v1")).await.unwrap();
    assert!(!written);
    // A new tag for the same manifest is an ordinary write.
    let written = ecr.put_tag("app", &manifest_of(&image), Some("v1-again")).await.unwrap();
    assert!(written);
    assert_eq!(ecr.resolve("app", "v1-again").await.unwrap(), Some(image.digest()));
}

#[tokio::test]
async fn an_immutable_tag_held_by_another_digest_is_a_clear_error() {
    let moto = MotoServer::start();
    let ecr = EcrRegistry::from_url(&url(&moto), &options()).unwrap();
    let released = revision("1111111");
    let candidate = revision("2222222");
    seed(&ecr, "app", ImageTagMutability::Immutable, &[(&released, "prod"), (&candidate, "dev")]).await;

    // gantry does not know the repository is immutable: ECR's refusal is what it reports.
    let error = ecr.tag("app", &candidate.digest(), "prod").await.unwrap_err();
    match &error {
        RegistryError::TagImmutable { reference, current, requested } => {
            assert_eq!(reference, &format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/app:prod"));
            assert_eq!(current, &released.digest());
            assert_eq!(requested, &candidate.digest());
        }
        other => panic!("expected an immutability error, got {other:?}"),
    }
    assert!(error.to_string().contains("immutable"), "{error}");
    assert!(!error.is_transient());
    assert_eq!(ecr.resolve("app", "prod").await.unwrap(), Some(released.digest()));
    // The digest already there is still fine to promote again.
    assert_eq!(ecr.tag("app", &released.digest(), "prod").await.unwrap(), TagOutcome::AlreadyPresent);
}

#[tokio::test]
async fn missing_repositories_and_images_are_reported_plainly() {
    let moto = MotoServer::start();
    let ecr = EcrRegistry::from_url(&url(&moto), &options()).unwrap();
    let image = revision("1111111");

    assert_eq!(ecr.resolve("nothing", "v1").await.unwrap(), None);
    assert!(matches!(ecr.list_tags("nothing").await, Err(RegistryError::NotFound { .. })));
    assert!(matches!(ecr.tag("nothing", &image.digest(), "v1").await, Err(RegistryError::NotFound { .. })));

    seed(&ecr, "app", ImageTagMutability::Mutable, &[(&image, "v1")]).await;
    assert_eq!(ecr.resolve("app", "v2").await.unwrap(), None);
    let unknown = revision("9999999").digest();
    assert!(matches!(ecr.tag("app", &unknown, "v2").await, Err(RegistryError::NotFound { .. })));
    let error = ecr.push_image("app", "v2", &image).await.unwrap_err();
    assert!(matches!(error, RegistryError::Unsupported { .. }), "{error:?}");
}

#[tokio::test]
async fn tags_and_images_are_deleted_through_batch_delete_image() {
    let moto = MotoServer::start();
    let ecr = EcrRegistry::from_url(&url(&moto), &options()).unwrap();
    let first = revision("1111111");
    let second = revision("2222222");
    seed(&ecr, "team/app", ImageTagMutability::Mutable, &[(&first, "dev-1"), (&second, "dev-2")]).await;
    ecr.tag("team/app", &first.digest(), "prod-1").await.unwrap();

    // The image keeps its other tag when one goes.
    assert!(ecr.delete_tag("team/app", "dev-1").await.unwrap());
    assert_eq!(ecr.resolve("team/app", "dev-1").await.unwrap(), None);
    assert_eq!(ecr.resolve("team/app", "prod-1").await.unwrap(), Some(first.digest()));
    assert!(!ecr.delete_tag("team/app", "dev-1").await.unwrap());

    // Deleting by digest takes the image and all of its tags.
    assert!(ecr.delete_manifest("team/app", &second.digest()).await.unwrap());
    assert_eq!(ecr.resolve("team/app", "dev-2").await.unwrap(), None);
    assert!(!ecr.delete_manifest("team/app", &second.digest()).await.unwrap());
    assert_eq!(ecr.list_tags("team/app").await.unwrap(), ["prod-1"]);
    assert!(!ecr.delete_tag("missing/repo", "x").await.unwrap());
}
