//! `gantry retag SRC DST`: gives an image another tag in its own repository. Only the
//! manifest is written again, by digest, so no layer moves and the digest cannot change.
//!
//! `DST` is the new tag alone (`staging-v1.2.3`) or a full reference in the same repository.
//! Moving the image to another repository or registry is `gantry copy`.

use std::io::Write;

use anyhow::bail;
use gantry_engine::registry::ImageReference;

use super::copy::{RegistryArgs, transfer};

/// Arguments of `gantry retag`.
#[derive(Debug, Clone, clap::Args)]
pub struct RetagArgs {
    /// The image: `host[:port]/repo:tag`, `…@sha256:…`, `oci-layout:DIR/repo:tag` or
    /// `ecr://ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo:tag`.
    pub source: String,
    /// The new tag, alone or as a reference in the same repository.
    pub destination: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Runs `gantry retag`, reporting what it did on `out`.
pub async fn run(args: &RetagArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let source = ImageReference::parse(&args.source)?;
    let (destination, tag) = destination(&source, &args.destination)?;
    transfer(&source, &destination, &tag, &args.registry, out).await?;
    Ok(())
}

/// The destination repository and tag: `DST` is a bare tag or a reference that must name the
/// source's repository.
fn destination(source: &ImageReference, argument: &str) -> anyhow::Result<(ImageReference, String)> {
    // A tag cannot hold `/`, `:` or `@`; anything with them is a reference.
    if !argument.contains(['/', ':', '@']) {
        let reference = ImageReference { tag: Some(argument.to_owned()), digest: None, ..source.clone() };
        // Checks the tag grammar with the same rules as any reference.
        let checked = ImageReference::parse(&reference.to_string())?;
        return Ok((checked, argument.to_owned()));
    }
    let reference = ImageReference::parse(argument)?;
    if reference.registry != source.registry || reference.repository != source.repository {
        bail!(
            "{reference} is not in the repository of {source}; retag stays in one repository, \
             use `gantry copy` to promote to another repository or registry"
        );
    }
    let Some(tag) = reference.tag.clone() else {
        bail!("name the new tag: {argument} has none");
    };
    if reference.digest.is_some() {
        bail!("the new tag {argument} must not carry a digest; the digest is the source's");
    }
    Ok((reference, tag))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use gantry_engine::registry::{self, RegistryAuth, sample_image};

    use super::super::copy::registry_support::TestRegistry;
    use super::*;

    fn args(source: String, destination: &str) -> RetagArgs {
        RetagArgs { source, destination: destination.to_owned(), registry: RegistryArgs::default() }
    }

    #[tokio::test]
    async fn retag_writes_the_manifest_only_and_guards_immutable_tags() {
        let server = TestRegistry::start();
        let registry = registry::open(&server.addr, Path::new("."), RegistryAuth::Anonymous).unwrap();
        let first = registry.push_image("app", "dev-1", &sample_image("app", &[("rev", "1")])).await.unwrap();
        let second = registry.push_image("app", "dev-2", &sample_image("app", &[("rev", "2")])).await.unwrap();
        let blobs_before = server.blobs();

        let mut out = Vec::new();
        run(&args(format!("{}/app:dev-1", server.addr), "staging"), &mut out).await.unwrap();
        let printed = String::from_utf8(out).unwrap();
        assert!(printed.contains("created by retag"), "{printed}");
        assert_eq!(registry.resolve("app", "staging").await.unwrap(), Some(first.clone()));
        assert_eq!(server.blobs(), blobs_before);

        // A full reference in the same repository works too, and moves a mutable tag.
        let full = format!("{}/app:staging", server.addr);
        run(&args(format!("{}/app:dev-2", server.addr), &full), &mut Vec::new()).await.unwrap();
        assert_eq!(registry.resolve("app", "staging").await.unwrap(), Some(second.clone()));

        // With immutable tags the tag stays where it is.
        let mut immutable = args(format!("{}/app:dev-1", server.addr), "staging");
        immutable.registry.immutable_tags = true;
        let error = run(&immutable, &mut Vec::new()).await.unwrap_err();
        assert!(format!("{error:#}").contains("immutable"), "{error:#}");
        assert_eq!(registry.resolve("app", "staging").await.unwrap(), Some(second));
    }

    #[test]
    fn the_destination_stays_in_the_source_repository() {
        let source = ImageReference::parse("127.0.0.1:5000/app:dev").unwrap();
        let (reference, tag) = destination(&source, "prod-v1").unwrap();
        assert_eq!(tag, "prod-v1");
        assert_eq!(reference.repository, "app");
        assert_eq!(reference.registry, "127.0.0.1:5000");

        assert!(destination(&source, "-bad").is_err());
        let error = destination(&source, "127.0.0.1:5000/other:prod").unwrap_err();
        assert!(error.to_string().contains("gantry copy"), "{error}");
        assert!(destination(&source, "127.0.0.1:5001/app:prod").is_err());
        assert!(destination(&source, "127.0.0.1:5000/app").is_err());
    }
}
