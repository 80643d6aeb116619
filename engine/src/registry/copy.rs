//! Promotion between repositories and registries: one digest moves to a destination tag, and
//! the cheapest way that keeps the digest is chosen.
//!
//! What must stay true:
//! - the digest never changes: manifests are written byte for byte, blobs are checked
//!   against their digest and size while they stream;
//! - the tag is written last, after every blob and child manifest it needs, so a failure at
//!   any point leaves no tag pointing at an incomplete image;
//! - repeating a promotion writes nothing when the tag is already at the digest, and a tag at
//!   another digest on an immutable registry is an error before anything is written.

use std::collections::HashSet;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use sha2::{Digest as _, Sha256};

use super::http::retry_whole;
use super::image::{Descriptor, ManifestKind};
use super::{BlobStream, Digest, Manifest, Registry, RegistryError, TagOutcome, validate_tag};

/// Blobs transferred at the same time; enough to overlap round trips, few enough not to
/// flood a registry.
const PARALLEL_BLOBS: usize = 4;

/// A repository in a registry: one end of a promotion.
#[derive(Clone, Copy)]
pub struct Location<'a> {
    /// The registry.
    pub registry: &'a dyn Registry,
    /// The repository inside it.
    pub repository: &'a str,
}

impl<'a> Location<'a> {
    /// The repository `repository` of `registry`.
    pub fn new(registry: &'a dyn Registry, repository: &'a str) -> Self {
        Self { registry, repository }
    }

    /// The reference of a tag or digest here, as [`Registry::reference`] prints it.
    pub fn reference(&self, tag_or_digest: &str) -> String {
        self.registry.reference(self.repository, tag_or_digest)
    }
}

impl std::fmt::Debug for Location<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reference(""))
    }
}

/// How a promotion moved its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The same repository: the manifest was written again under the tag.
    Retag,
    /// Another repository of the same registry: blobs were mounted (copied where the
    /// registry declined a mount).
    Mount,
    /// Another registry: blobs were streamed across.
    Copy,
}

impl Strategy {
    /// `retag`, `mount` or `copy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Retag => "retag",
            Strategy::Mount => "mount",
            Strategy::Copy => "copy",
        }
    }
}

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// The digest now at the destination tag.
    pub digest: Digest,
    /// What happened to the tag.
    pub outcome: TagOutcome,
    /// How the digest was moved.
    pub strategy: Strategy,
    /// Manifests written: the tagged one plus any child manifests of an index.
    pub manifests_written: usize,
    /// Blobs the destination already held (found by a copy; a mount does not ask first).
    pub blobs_present: usize,
    /// Blobs mounted from the source repository, including any the destination already held.
    pub blobs_mounted: usize,
    /// Blobs streamed from the source.
    pub blobs_copied: usize,
    /// Bytes streamed from the source.
    pub bytes_copied: u64,
}

impl Promotion {
    fn nothing(digest: &Digest, strategy: Strategy) -> Self {
        Self {
            digest: digest.clone(),
            outcome: TagOutcome::AlreadyPresent,
            strategy,
            manifests_written: 0,
            blobs_present: 0,
            blobs_mounted: 0,
            blobs_copied: 0,
            bytes_copied: 0,
        }
    }
}

/// Points `tag` in `destination` at the manifest `digest` of `source`, bringing along whatever
/// the destination lacks: child manifests of an index, config and layer blobs.
///
/// The same repository is a retag, another repository of the same registry a mount, another
/// registry a streamed copy. Idempotent: a tag already at `digest` returns
/// [`TagOutcome::AlreadyPresent`] without a write.
pub async fn promote(
    source: &Location<'_>,
    destination: &Location<'_>,
    digest: &Digest,
    tag: &str,
) -> Result<Promotion, RegistryError> {
    validate_tag(tag)?;
    // Independent reads, so they go out together: where the tag points now, and the manifest.
    let (current, top) = tokio::join!(
        destination.registry.resolve(destination.repository, tag),
        source.registry.fetch_manifest(source.repository, digest),
    );
    finish(source, destination, digest, current?, top, tag).await
}

/// [`promote`] for a source named by tag: the digest is whatever the tag points at when the
/// source manifest is read, which takes one request instead of a lookup and a read.
///
/// Fails with [`RegistryError::NotFound`] when the source tag does not exist.
pub async fn promote_tag(
    source: &Location<'_>,
    source_tag: &str,
    destination: &Location<'_>,
    tag: &str,
) -> Result<Promotion, RegistryError> {
    validate_tag(tag)?;
    let (current, top) = tokio::join!(
        destination.registry.resolve(destination.repository, tag),
        source.registry.fetch_tagged(source.repository, source_tag),
    );
    let top = top?.ok_or_else(|| RegistryError::NotFound { reference: source.reference(source_tag) })?;
    let digest = top.digest();
    finish(source, destination, &digest, current?, Ok(top), tag).await
}

fn strategy(source: &Location<'_>, destination: &Location<'_>) -> Strategy {
    let same_storage = source.registry.identity() == destination.registry.identity();
    let same_repository = same_storage
        && source.registry.repository_path(source.repository)
            == destination.registry.repository_path(destination.repository);
    if same_repository {
        Strategy::Retag
    } else if same_storage {
        Strategy::Mount
    } else {
        Strategy::Copy
    }
}

/// The rest of a promotion once the destination tag and the source manifest were read.
async fn finish(
    source: &Location<'_>,
    destination: &Location<'_>,
    digest: &Digest,
    current: Option<Digest>,
    top: Result<Manifest, RegistryError>,
    tag: &str,
) -> Result<Promotion, RegistryError> {
    let strategy = strategy(source, destination);
    if current.as_ref() == Some(digest) {
        return Ok(Promotion::nothing(digest, strategy));
    }
    if let Some(current) = &current
        && destination.registry.immutable_tags(destination.repository)
    {
        return Err(RegistryError::TagImmutable {
            reference: destination.reference(tag),
            current: current.clone(),
            requested: digest.clone(),
        });
    }

    let top = top?;
    let mut promotion = Promotion::nothing(digest, strategy);
    // A retag finds everything in place. A copy first asks whether the destination already
    // has the manifest, and with it everything it references (registries refuse manifests
    // whose blobs or children are missing). A mount does not ask: mounting what is already
    // there costs the same request and succeeds.
    let complete = match strategy {
        Strategy::Retag => true,
        Strategy::Mount => false,
        Strategy::Copy => destination.registry.manifest_exists(destination.repository, digest).await?,
    };
    if !complete {
        let (children, blobs) = plan(source, destination, &top).await?;
        transfer_blobs(source, destination, strategy, &blobs, &mut promotion).await?;
        // Children were found parents first; written in reverse, every manifest goes in
        // after the manifests it references.
        for child in children.iter().rev() {
            destination.registry.put_manifest(destination.repository, child, None).await?;
            promotion.manifests_written += 1;
        }
    }
    destination.registry.put_manifest(destination.repository, &top, Some(tag)).await?;
    promotion.manifests_written += 1;
    promotion.outcome = match current {
        None => TagOutcome::Created,
        Some(from) => TagOutcome::Moved { from },
    };
    Ok(promotion)
}

/// Walks the manifest tree from `top` and returns the child manifests the destination lacks
/// (parents before children) and the blobs they and `top` reference, each once.
async fn plan(
    source: &Location<'_>,
    destination: &Location<'_>,
    top: &Manifest,
) -> Result<(Vec<Manifest>, Vec<Descriptor>), RegistryError> {
    let mut children: Vec<Manifest> = Vec::new();
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut seen_blobs: HashSet<Digest> = HashSet::new();
    let mut seen_manifests: HashSet<Digest> = HashSet::new();
    let mut pending: Vec<Manifest> = vec![top.clone()];
    while let Some(manifest) = pending.pop() {
        let parsed = manifest.parse(&source.reference(manifest.digest().as_str()))?;
        match parsed.kind {
            ManifestKind::Image { config, layers } => {
                for descriptor in std::iter::once(config).chain(layers) {
                    if seen_blobs.insert(descriptor.digest.clone()) {
                        blobs.push(descriptor);
                    }
                }
            }
            ManifestKind::Index { manifests } => {
                for child in manifests {
                    if !seen_manifests.insert(child.digest.clone())
                        || destination.registry.manifest_exists(destination.repository, &child.digest).await?
                    {
                        continue;
                    }
                    let fetched = source.registry.fetch_manifest(source.repository, &child.digest).await?;
                    children.push(fetched.clone());
                    pending.push(fetched);
                }
            }
        }
    }
    Ok((children, blobs))
}

/// What happened to one blob.
enum BlobResult {
    Present,
    Mounted,
    Copied(u64),
}

async fn transfer_blobs(
    source: &Location<'_>,
    destination: &Location<'_>,
    strategy: Strategy,
    blobs: &[Descriptor],
    promotion: &mut Promotion,
) -> Result<(), RegistryError> {
    // The transfers are made up front rather than in a stream's closure, which would make the
    // future of a promotion not `Send` (a higher-ranked closure lifetime), and steps need it to be.
    let transfers: Vec<_> =
        blobs.iter().map(|descriptor| transfer_blob(source, destination, strategy, descriptor)).collect();
    let results: Vec<BlobResult> = stream::iter(transfers).buffer_unordered(PARALLEL_BLOBS).try_collect().await?;
    for result in results {
        match result {
            BlobResult::Present => promotion.blobs_present += 1,
            BlobResult::Mounted => promotion.blobs_mounted += 1,
            BlobResult::Copied(bytes) => {
                promotion.blobs_copied += 1;
                promotion.bytes_copied += bytes;
            }
        }
    }
    Ok(())
}

async fn transfer_blob(
    source: &Location<'_>,
    destination: &Location<'_>,
    strategy: Strategy,
    descriptor: &Descriptor,
) -> Result<BlobResult, RegistryError> {
    let digest = &descriptor.digest;
    // Within one registry the mount is tried first: it succeeds for a blob already in the
    // destination too, so asking whether it is there would only add a round trip.
    if strategy == Strategy::Mount {
        let from = source.registry.repository_path(source.repository);
        if destination.registry.mount_blob(destination.repository, &from, digest).await? {
            return Ok(BlobResult::Mounted);
        }
    }
    if destination.registry.blob_exists(destination.repository, digest).await? {
        return Ok(BlobResult::Present);
    }
    retry_whole(&destination.registry.retry_policy(), || copy_blob(source, destination, descriptor)).await?;
    Ok(BlobResult::Copied(descriptor.size))
}

async fn copy_blob(
    source: &Location<'_>,
    destination: &Location<'_>,
    descriptor: &Descriptor,
) -> Result<(), RegistryError> {
    let blob = source.registry.read_blob(source.repository, &descriptor.digest).await?;
    if let Some(announced) = blob.size
        && announced != descriptor.size
    {
        return Err(RegistryError::SizeMismatch {
            digest: descriptor.digest.to_string(),
            expected: descriptor.size,
            actual: announced,
        });
    }
    let stream = verified(blob.stream, descriptor.digest.clone(), descriptor.size);
    destination.registry.write_blob(destination.repository, &descriptor.digest, descriptor.size, stream).await
}

/// Passes `inner` through while hashing and counting it, and fails instead of yielding the
/// last chunk when the bytes do not hash to `digest` or are not `size` long.
///
/// Holding the last chunk back until the check is done means a destination never receives a
/// complete blob with the wrong content, whatever it does with what it received.
pub fn verified(inner: BlobStream, digest: Digest, size: u64) -> BlobStream {
    struct State {
        inner: BlobStream,
        hasher: Sha256,
        seen: u64,
        held: Option<Bytes>,
        digest: Digest,
        size: u64,
        done: bool,
    }

    let state = State { inner, hasher: Sha256::new(), seen: 0, held: None, digest, size, done: false };
    Box::pin(stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        loop {
            match state.inner.next().await {
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    state.seen += chunk.len() as u64;
                    if state.seen > state.size {
                        state.done = true;
                        let error = RegistryError::SizeMismatch {
                            digest: state.digest.to_string(),
                            expected: state.size,
                            actual: state.seen,
                        };
                        return Some((Err(error), state));
                    }
                    state.hasher.update(&chunk);
                    if let Some(previous) = state.held.replace(chunk) {
                        return Some((Ok(previous), state));
                    }
                }
                Some(Err(error)) => {
                    state.done = true;
                    return Some((Err(error), state));
                }
                None => {
                    state.done = true;
                    if state.seen != state.size {
                        let error = RegistryError::SizeMismatch {
                            digest: state.digest.to_string(),
                            expected: state.size,
                            actual: state.seen,
                        };
                        return Some((Err(error), state));
                    }
                    let hash = std::mem::take(&mut state.hasher).finalize();
                    let actual = format!("sha256:{}", hex::encode(hash));
                    if actual != state.digest.as_str() {
                        let error = RegistryError::DigestMismatch { expected: state.digest.to_string(), actual };
                        return Some((Err(error), state));
                    }
                    let last = state.held.take()?;
                    return Some((Ok(last), state));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> BlobStream {
        let items: Vec<Result<Bytes, RegistryError>> = parts.iter().map(|part| Ok(Bytes::from_static(part))).collect();
        Box::pin(stream::iter(items))
    }

    async fn collect(stream: BlobStream) -> (Vec<u8>, Option<RegistryError>) {
        let mut stream = stream;
        let mut bytes = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(error) => return (bytes, Some(error)),
            }
        }
        (bytes, None)
    }

    #[tokio::test]
    async fn a_matching_blob_passes_through_whole() {
        let digest = Digest::of(b"hello world");
        let (bytes, error) = collect(verified(chunks(&[b"hello", b"", b" world"]), digest, 11)).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(bytes, b"hello world");

        let (bytes, error) = collect(verified(chunks(&[]), Digest::of(b""), 0)).await;
        assert!(error.is_none());
        assert!(bytes.is_empty());
    }

    #[tokio::test]
    async fn a_wrong_blob_fails_before_its_last_chunk() {
        let digest = Digest::of(b"hello world");
        let (bytes, error) = collect(verified(chunks(&[b"hello", b" there"]), digest, 11)).await;
        assert!(matches!(error, Some(RegistryError::DigestMismatch { .. })));
        // The last chunk was never handed on.
        assert_eq!(bytes, b"hello");
    }

    #[tokio::test]
    async fn a_blob_of_the_wrong_size_fails() {
        let digest = Digest::of(b"hello");
        let (_, error) = collect(verified(chunks(&[b"hel", b"lo!"]), digest.clone(), 5)).await;
        assert!(matches!(error, Some(RegistryError::SizeMismatch { expected: 5, actual: 6, .. })));
        let (_, error) = collect(verified(chunks(&[b"hel"]), digest, 5)).await;
        assert!(matches!(error, Some(RegistryError::SizeMismatch { expected: 5, actual: 3, .. })));
    }

    #[tokio::test]
    async fn a_source_error_ends_the_stream() {
        let items: Vec<Result<Bytes, RegistryError>> = vec![
            Ok(Bytes::from_static(b"a")),
            Err(RegistryError::NotFound { reference: "x".into() }),
            Ok(Bytes::from_static(b"b")),
        ];
        let (_, error) = collect(verified(Box::pin(stream::iter(items)), Digest::of(b"ab"), 2)).await;
        assert!(matches!(error, Some(RegistryError::NotFound { .. })));
    }

    #[test]
    fn strategies_have_short_names() {
        assert_eq!(Strategy::Retag.as_str(), "retag");
        assert_eq!(Strategy::Mount.as_str(), "mount");
        assert_eq!(Strategy::Copy.as_str(), "copy");
    }
}
