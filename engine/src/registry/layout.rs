//! A registry kept on the local filesystem as OCI image layouts.
//!
//! The registry root holds one directory per repository (`<root>/team/app`), and each of those
//! is a complete OCI image layout that `skopeo`, `umoci` or `oras` can read as `oci:<dir>`:
//!
//! ```text
//! <root>/<repository>/oci-layout      {"imageLayoutVersion":"1.0.0"}
//! <root>/<repository>/index.json      one descriptor per tag
//! <root>/<repository>/blobs/sha256/…  manifests, configs and layers by digest
//! ```
//!
//! A tag is the `org.opencontainers.image.ref.name` annotation of a manifest descriptor in
//! `index.json`, so retagging rewrites that one small file and never touches a blob.
//!
//! What must stay true:
//! - every file is written to a temporary name in its own directory, flushed, and renamed into
//!   place, so readers never see half a file and a crash never leaves one behind;
//! - blobs are checked against their digest before they are stored;
//! - read-modify-write cycles of `index.json` run under an async mutex per repository
//!   (so waiting tasks do not hold threads) and an exclusive lock on `index.json.lock`
//!   (so other processes, such as a second gantry, do not lose updates).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::image::parse_manifest;
use super::{
    Blob, BlobStream, Digest, Image, ImmutableTags, Manifest, Registry, RegistryError, TagOutcome, join_reference,
    validate_repository, validate_tag,
};

/// Bytes read from a blob file at a time when streaming it.
const READ_CHUNK: usize = 1 << 20;

/// The annotation that names a tag in an OCI image layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

const OCI_LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LOCK_FILE: &str = "index.json.lock";

/// A registry stored as one OCI image layout per repository under a root directory.
///
/// The root does not have to exist: it and each repository's layout are created by the first
/// [`Registry::push_image`] into them.
#[derive(Debug, Clone)]
pub struct LayoutRegistry {
    root: PathBuf,
    immutable_tags: ImmutableTags,
}

impl LayoutRegistry {
    /// A registry rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), immutable_tags: ImmutableTags::None }
    }

    /// The same registry, refusing to move a tag to another digest in the repositories
    /// `immutable` covers.
    pub fn with_immutable_tags(mut self, immutable: ImmutableTags) -> Self {
        self.immutable_tags = immutable;
        self
    }

    /// The reference to name in [`RegistryError::TagImmutable`] when the repository's tags are
    /// immutable.
    fn immutable_reference(&self, repository: &str, tag: &str) -> Option<String> {
        self.immutable_tags.applies_to(repository).then(|| self.reference(repository, tag))
    }

    /// The directory holding the repositories.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image layout directory of `repository`, after checking the name so that it cannot
    /// point outside the root.
    pub fn repository_dir(&self, repository: &str) -> Result<PathBuf, RegistryError> {
        validate_repository(repository)?;
        Ok(self.root.join(repository))
    }
}

#[async_trait::async_trait]
impl Registry for LayoutRegistry {
    async fn resolve(&self, repository: &str, tag: &str) -> Result<Option<Digest>, RegistryError> {
        let dir = self.repository_dir(repository)?;
        validate_tag(tag)?;
        let tag = tag.to_owned();
        // No lock: index.json is only ever replaced by rename, so a read sees a whole file.
        run_blocking(dir.clone(), move || match read_index(&dir)? {
            Some(index) => Ok(tagged_entries(&dir, &index, &tag)?.first().map(|(_, digest)| digest.clone())),
            None => Ok(None),
        })
        .await
    }

    async fn tag(&self, repository: &str, digest: &Digest, tag: &str) -> Result<TagOutcome, RegistryError> {
        let dir = self.repository_dir(repository)?;
        validate_tag(tag)?;
        let reference = self.reference(repository, digest.as_str());
        let has_layout = tokio::fs::metadata(dir.join(INDEX_FILE)).await.is_ok_and(|metadata| metadata.is_file());
        if !has_layout {
            return Err(RegistryError::NotFound { reference });
        }
        let digest = digest.clone();
        let immutable = self.immutable_reference(repository, tag);
        let tag = tag.to_owned();
        with_index_lock(dir, move |dir| {
            let manifest = match fs::read(blob_path(dir, &digest)) {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    return Err(RegistryError::NotFound { reference });
                }
                Err(source) => {
                    return Err(RegistryError::Io { path: blob_path(dir, &digest), source });
                }
            };
            // A blob damaged on disk must not get a new tag pointing at it.
            let actual = Digest::of(&manifest);
            if actual != digest {
                return Err(RegistryError::DigestMismatch { expected: digest.to_string(), actual: actual.to_string() });
            }
            let parsed = parse_manifest(&manifest, None)
                .map_err(|reason| RegistryError::InvalidManifest { reference: reference.clone(), reason })?;
            set_tag(dir, &tag, &digest, &parsed.media_type, manifest.len() as u64, immutable.as_deref())
        })
        .await
    }

    async fn push_image(&self, repository: &str, tag: &str, image: &Image) -> Result<Digest, RegistryError> {
        let dir = self.repository_dir(repository)?;
        validate_tag(tag)?;
        let digest = image.digest();
        let blobs: Vec<(Digest, Vec<u8>)> = image
            .checked_blobs(&self.reference(repository, tag))?
            .into_iter()
            .map(|(digest, bytes)| (digest, bytes.to_vec()))
            .collect();
        let manifest = image.manifest.clone();
        let media_type = image.manifest_media_type.clone();
        let immutable = self.immutable_reference(repository, tag);
        let tag = tag.to_owned();
        let manifest_digest = digest.clone();
        create_dir_all(&dir).await?;
        with_index_lock(dir, move |dir| {
            init_layout(dir)?;
            for (digest, bytes) in &blobs {
                put_blob(dir, digest, bytes)?;
            }
            // The manifest goes last: once it is stored, everything it names is there.
            put_blob(dir, &manifest_digest, &manifest)?;
            set_tag(dir, &tag, &manifest_digest, &media_type, manifest.len() as u64, immutable.as_deref())
        })
        .await?;
        Ok(digest)
    }

    async fn list_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        let dir = self.repository_dir(repository)?;
        let reference = self.reference(repository, "");
        run_blocking(dir.clone(), move || {
            let Some(index) = read_index(&dir)? else {
                return Err(RegistryError::NotFound { reference });
            };
            let mut tags: Vec<String> =
                manifest_entries(&dir, &index)?.iter().filter_map(ref_name).map(str::to_owned).collect();
            tags.sort();
            tags.dedup();
            Ok(tags)
        })
        .await
    }

    fn reference(&self, repository: &str, tag_or_digest: &str) -> String {
        join_reference(format!("oci-layout:{}/{repository}", self.root.display()), tag_or_digest)
    }

    fn identity(&self) -> String {
        let root = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
        format!("oci-layout:{}", root.display())
    }

    fn immutable_tags(&self, repository: &str) -> bool {
        self.immutable_tags.applies_to(repository)
    }

    async fn fetch_manifest(&self, repository: &str, digest: &Digest) -> Result<Manifest, RegistryError> {
        let dir = self.repository_dir(repository)?;
        let reference = self.reference(repository, digest.as_str());
        let digest = digest.clone();
        run_blocking(dir.clone(), move || {
            let path = blob_path(&dir, &digest);
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    return Err(RegistryError::NotFound { reference });
                }
                Err(source) => return Err(RegistryError::Io { path, source }),
            };
            let actual = Digest::of(&bytes);
            if actual != digest {
                return Err(RegistryError::DigestMismatch { expected: digest.to_string(), actual: actual.to_string() });
            }
            // A layout stores manifests as plain blobs; the media type comes from the
            // manifest itself, as it does when the layout is read by other tools.
            let parsed =
                parse_manifest(&bytes, None).map_err(|reason| RegistryError::InvalidManifest { reference, reason })?;
            Ok(Manifest { bytes, media_type: parsed.media_type })
        })
        .await
    }

    async fn manifest_exists(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        self.blob_exists(repository, digest).await
    }

    async fn put_manifest(
        &self,
        repository: &str,
        manifest: &Manifest,
        tag: Option<&str>,
    ) -> Result<(), RegistryError> {
        let dir = self.repository_dir(repository)?;
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        let reference = self.reference(repository, tag.unwrap_or(""));
        let parsed = manifest.parse(&reference)?;
        if parsed.media_type != manifest.media_type {
            return Err(RegistryError::InvalidManifest {
                reference,
                reason: format!("the manifest is {} but was given as {}", parsed.media_type, manifest.media_type),
            });
        }
        let immutable = tag.and_then(|tag| self.immutable_reference(repository, tag));
        let tag = tag.map(str::to_owned);
        let bytes = manifest.bytes.clone();
        let media_type = manifest.media_type.clone();
        let digest = manifest.digest();
        create_dir_all(&dir).await?;
        with_index_lock(dir, move |dir| {
            init_layout(dir)?;
            put_blob(dir, &digest, &bytes)?;
            if let Some(tag) = tag {
                set_tag(dir, &tag, &digest, &media_type, bytes.len() as u64, immutable.as_deref())?;
            }
            Ok(())
        })
        .await
    }

    async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let path = blob_path(&self.repository_dir(repository)?, digest);
        match tokio::fs::metadata(&path).await {
            Ok(metadata) => Ok(metadata.is_file()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(RegistryError::Io { path, source }),
        }
    }

    async fn read_blob(&self, repository: &str, digest: &Digest) -> Result<Blob, RegistryError> {
        let path = blob_path(&self.repository_dir(repository)?, digest);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(RegistryError::NotFound { reference: self.reference(repository, digest.as_str()) });
            }
            Err(source) => return Err(RegistryError::Io { path, source }),
        };
        let size = file.metadata().await.map_err(|source| RegistryError::Io { path: path.clone(), source })?.len();
        let stream = futures_util::stream::unfold(Some((file, path)), |state| async move {
            let (mut file, path) = state?;
            let mut buffer = BytesMut::zeroed(READ_CHUNK);
            match file.read(&mut buffer).await {
                Ok(0) => None,
                Ok(read) => {
                    buffer.truncate(read);
                    Some((Ok(buffer.freeze()), Some((file, path))))
                }
                Err(source) => Some((Err(RegistryError::Io { path, source }), None)),
            }
        });
        Ok(Blob { size: Some(size), stream: Box::pin(stream) })
    }

    async fn write_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        blob: BlobStream,
    ) -> Result<(), RegistryError> {
        let dir = self.repository_dir(repository)?;
        let blobs = dir.join("blobs").join("sha256");
        create_dir_all(&blobs).await?;
        let target = blob_path(&dir, digest);
        let temp = blobs.join(format!(".{}.tmp-{}-{}", digest.hex(), std::process::id(), next_temp_number()));
        let written = stream_to_file(&temp, digest, size, blob).await;
        let renamed = match written {
            Ok(()) => tokio::fs::rename(&temp, &target)
                .await
                .map_err(|source| RegistryError::Io { path: target.clone(), source }),
            Err(error) => Err(error),
        };
        if renamed.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        renamed
    }

    async fn mount_blob(&self, repository: &str, from: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let source = blob_path(&self.repository_dir(from)?, digest);
        let dir = self.repository_dir(repository)?;
        let blobs = dir.join("blobs").join("sha256");
        create_dir_all(&blobs).await?;
        let target = blob_path(&dir, digest);
        // A hard link shares the bytes, as a registry's mount does. Where links are not
        // possible (another filesystem), the caller copies instead.
        match tokio::fs::hard_link(&source, &target).await {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(true),
            Err(_) => Ok(false),
        }
    }

    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, RegistryError> {
        let dir = self.repository_dir(repository)?;
        validate_tag(tag)?;
        if !tokio::fs::try_exists(dir.join(INDEX_FILE)).await.unwrap_or(false) {
            return Ok(false);
        }
        let tag = tag.to_owned();
        // The manifest blob stays: other tags, or an index, may still name it.
        with_index_lock(dir, move |dir| remove_entries(dir, |entry| ref_name(entry) == Some(tag.as_str()))).await
    }

    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let dir = self.repository_dir(repository)?;
        if !tokio::fs::try_exists(dir.join(INDEX_FILE)).await.unwrap_or(false) {
            return Ok(false);
        }
        let digest = digest.clone();
        with_index_lock(dir, move |dir| {
            let untagged =
                remove_entries(dir, |entry| entry.get("digest").and_then(Value::as_str) == Some(digest.as_str()))?;
            // Removing the manifest blob is what makes the digest unknown to readers; the
            // config and layer blobs it referenced may be shared and are left alone.
            let path = blob_path(dir, &digest);
            let removed = match fs::remove_file(&path) {
                Ok(()) => true,
                Err(error) if error.kind() == io::ErrorKind::NotFound => false,
                Err(source) => return Err(RegistryError::Io { path, source }),
            };
            Ok(untagged || removed)
        })
        .await
    }
}

/// Drops the descriptors of `index.json` for which `remove` holds; returns whether there were
/// any. Must run under the index lock.
fn remove_entries(dir: &Path, remove: impl Fn(&Value) -> bool) -> Result<bool, RegistryError> {
    let index_path = dir.join(INDEX_FILE);
    let Some(mut index) = read_index(dir)? else {
        return Ok(false);
    };
    let before = manifest_entries(dir, &index)?.len();
    if let Some(Value::Array(entries)) = index.get_mut("manifests") {
        entries.retain(|entry| !remove(entry));
    }
    let after = manifest_entries(dir, &index)?.len();
    if after == before {
        return Ok(false);
    }
    write_atomic(&index_path, index.to_string().as_bytes())?;
    Ok(true)
}

fn next_temp_number() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Writes a blob stream to `temp`, hashing as it goes, and flushes it to disk; fails unless
/// the bytes are exactly `size` long and hash to `digest`.
async fn stream_to_file(temp: &Path, digest: &Digest, size: u64, mut blob: BlobStream) -> Result<(), RegistryError> {
    let io_error = |source| RegistryError::Io { path: temp.to_path_buf(), source };
    let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(temp).await.map_err(io_error)?;
    let mut hasher = Sha256::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = blob.next().await {
        let chunk: Bytes = chunk?;
        seen += chunk.len() as u64;
        if seen > size {
            return Err(RegistryError::SizeMismatch { digest: digest.to_string(), expected: size, actual: seen });
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io_error)?;
    }
    if seen != size {
        return Err(RegistryError::SizeMismatch { digest: digest.to_string(), expected: size, actual: seen });
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != digest.as_str() {
        return Err(RegistryError::DigestMismatch { expected: digest.to_string(), actual });
    }
    file.sync_all().await.map_err(io_error)
}

/// Where a blob with `digest` lives in the layout at `dir`.
fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

/// Runs filesystem work on the blocking pool so it never stalls the async runtime.
async fn run_blocking<T, F>(dir: PathBuf, work: F) -> Result<T, RegistryError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, RegistryError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join_error| RegistryError::Io { path: dir, source: io::Error::other(join_error.to_string()) })?
}

async fn create_dir_all(dir: &Path) -> Result<(), RegistryError> {
    tokio::fs::create_dir_all(dir).await.map_err(|source| RegistryError::Io { path: dir.to_path_buf(), source })
}

/// The in-process half of the index lock: one async mutex per repository directory.
fn process_lock(dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let key = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        // The map holds no invariant a panic could break, so a poisoned lock is still usable.
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Arc::clone(locks.entry(key).or_default())
}

/// Runs `work` with the repository's `index.json` locked against this process and others.
async fn with_index_lock<T, F>(dir: PathBuf, work: F) -> Result<T, RegistryError>
where
    T: Send + 'static,
    F: FnOnce(&Path) -> Result<T, RegistryError> + Send + 'static,
{
    let mutex = process_lock(&dir);
    let _in_process = mutex.lock().await;
    run_blocking(dir.clone(), move || {
        let lock_path = dir.join(LOCK_FILE);
        let io_error = |source| RegistryError::Io { path: lock_path.clone(), source };
        // The lock file is never removed: deleting it would let two processes lock two
        // different files of the same name.
        let lock_file =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_error)?;
        lock_file.lock().map_err(io_error)?;
        let result = work(&dir);
        // Closing the file releases the lock; unlocking first just makes the order explicit.
        let _ = lock_file.unlock();
        result
    })
    .await
}

/// Creates the parts of an image layout that are missing; existing files are left alone.
fn init_layout(dir: &Path) -> Result<(), RegistryError> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(|source| RegistryError::Io { path: blobs.clone(), source })?;
    let layout = dir.join(OCI_LAYOUT_FILE);
    if !layout.is_file() {
        write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    let index = dir.join(INDEX_FILE);
    if !index.is_file() {
        let empty = json!({
            "schemaVersion": 2,
            "mediaType": super::OCI_INDEX_MEDIA_TYPE,
            "manifests": [],
        });
        write_atomic(&index, empty.to_string().as_bytes())?;
    }
    Ok(())
}

/// Stores a blob after checking it hashes to `digest`; a blob already present is kept as is,
/// since a content-addressed file can only ever hold those bytes.
fn put_blob(dir: &Path, digest: &Digest, bytes: &[u8]) -> Result<(), RegistryError> {
    let actual = Digest::of(bytes);
    if &actual != digest {
        return Err(RegistryError::DigestMismatch { expected: digest.to_string(), actual: actual.to_string() });
    }
    let path = blob_path(dir, digest);
    if path.is_file() {
        return Ok(());
    }
    write_atomic(&path, bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same directory: write, flush to
/// disk, rename over `path`, then flush the directory so the rename itself survives a crash.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RegistryError::Io { path, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();

    let (temp_path, mut file) = loop {
        let candidate =
            dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        match OpenOptions::new().write(true).create_new(true).open(&candidate) {
            Ok(file) => break (candidate, file),
            // Left over from a crashed process that had the same pid; pick the next name.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(io_error(&candidate)(source)),
        }
    };
    let written = file.write_all(bytes).and_then(|()| file.sync_all()).and_then(|()| fs::rename(&temp_path, path));
    if let Err(source) = written {
        let _ = fs::remove_file(&temp_path);
        return Err(io_error(path)(source));
    }
    File::open(dir).and_then(|dir| dir.sync_all()).map_err(io_error(dir))
}

/// Reads `index.json`, or None when the layout does not exist yet.
fn read_index(dir: &Path) -> Result<Option<Value>, RegistryError> {
    let path = dir.join(INDEX_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RegistryError::Io { path, source }),
    };
    let index: Value = serde_json::from_slice(&bytes).map_err(|error| RegistryError::InvalidLayout {
        path: path.clone(),
        reason: format!("index.json is not valid JSON: {error}"),
    })?;
    if !index.is_object() {
        return Err(RegistryError::InvalidLayout { path, reason: "index.json is not a JSON object".to_owned() });
    }
    Ok(Some(index))
}

/// The descriptors of `index.json`; a missing `manifests` array counts as empty.
fn manifest_entries<'a>(dir: &Path, index: &'a Value) -> Result<&'a [Value], RegistryError> {
    match index.get("manifests") {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(entries)) => Ok(entries),
        Some(_) => Err(RegistryError::InvalidLayout {
            path: dir.join(INDEX_FILE),
            reason: "`manifests` in index.json is not an array".to_owned(),
        }),
    }
}

fn ref_name(entry: &Value) -> Option<&str> {
    entry.get("annotations")?.get(REF_NAME_ANNOTATION)?.as_str()
}

/// Positions and digests of the descriptors carrying `tag`, in index order.
fn tagged_entries(dir: &Path, index: &Value, tag: &str) -> Result<Vec<(usize, Digest)>, RegistryError> {
    manifest_entries(dir, index)?
        .iter()
        .enumerate()
        .filter(|(_, entry)| ref_name(entry) == Some(tag))
        .map(|(position, entry)| {
            let value = entry.get("digest").and_then(Value::as_str).unwrap_or("");
            Digest::parse(value).map(|digest| (position, digest)).map_err(|_| RegistryError::InvalidLayout {
                path: dir.join(INDEX_FILE),
                reason: format!("the descriptor of tag {tag:?} has digest {value:?}"),
            })
        })
        .collect()
}

/// Points `tag` at a manifest that is already stored. Must run under the index lock.
fn set_tag(
    dir: &Path,
    tag: &str,
    digest: &Digest,
    media_type: &str,
    size: u64,
    immutable: Option<&str>,
) -> Result<TagOutcome, RegistryError> {
    let index_path = dir.join(INDEX_FILE);
    let mut index = read_index(dir)?.ok_or_else(|| RegistryError::InvalidLayout {
        path: index_path.clone(),
        reason: "index.json is missing".to_owned(),
    })?;
    let tagged = tagged_entries(dir, &index, tag)?;
    if let [(_, current)] = tagged.as_slice()
        && current == digest
    {
        return Ok(TagOutcome::AlreadyPresent);
    }
    // Checked under the index lock, so no other writer can move the tag in between.
    if let Some(reference) = immutable
        && let Some((_, current)) = tagged.iter().find(|(_, current)| current != digest)
    {
        return Err(RegistryError::TagImmutable {
            reference: reference.to_owned(),
            current: current.clone(),
            requested: digest.clone(),
        });
    }

    let descriptor = json!({
        "mediaType": media_type,
        "digest": digest,
        "size": size,
        "annotations": {REF_NAME_ANNOTATION: tag},
    });
    let Some(object) = index.as_object_mut() else {
        return Err(RegistryError::InvalidLayout {
            path: index_path,
            reason: "index.json is not a JSON object".to_owned(),
        });
    };
    let entries = object.entry("manifests").or_insert_with(|| Value::Array(Vec::new()));
    if entries.is_null() {
        *entries = Value::Array(Vec::new());
    }
    let Some(entries) = entries.as_array_mut() else {
        return Err(RegistryError::InvalidLayout {
            path: index_path,
            reason: "`manifests` in index.json is not an array".to_owned(),
        });
    };

    let outcome = match tagged.first() {
        None => {
            entries.push(descriptor);
            TagOutcome::Created
        }
        Some((first, previous)) => {
            // The tag keeps its place in the index; duplicates of it (which other tools may
            // leave behind) are dropped so the tag names exactly one manifest again.
            entries[*first] = descriptor;
            for (position, _) in tagged.iter().skip(1).rev() {
                entries.remove(*position);
            }
            if previous == digest { TagOutcome::AlreadyPresent } else { TagOutcome::Moved { from: previous.clone() } }
        }
    };
    write_atomic(&index_path, index.to_string().as_bytes())?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, sample_image};

    fn revision(sha: &str) -> Image {
        sample_image("app", &[("org.opencontainers.image.revision", sha)])
    }

    fn blob_names(registry: &LayoutRegistry, repository: &str) -> Vec<String> {
        let dir = registry.root().join(repository).join("blobs").join("sha256");
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    fn read_index_json(registry: &LayoutRegistry, repository: &str) -> Value {
        let bytes = fs::read(registry.root().join(repository).join(INDEX_FILE)).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn push_writes_a_complete_layout() {
        let root = tempfile::tempdir().unwrap();
        let registry = LayoutRegistry::new(root.path().join("registry"));
        let image = revision("1111111");

        let digest = registry.push_image("team/app", "dev-sha-1111111", &image).await.unwrap();
        assert_eq!(digest, image.digest());

        let dir = registry.root().join("team/app");
        let layout: Value = serde_json::from_slice(&fs::read(dir.join(OCI_LAYOUT_FILE)).unwrap()).unwrap();
        assert_eq!(layout, json!({"imageLayoutVersion": "1.0.0"}));
        let index = read_index_json(&registry, "team/app");
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(
            index["manifests"],
            json!([{
                "mediaType": OCI_MANIFEST_MEDIA_TYPE,
                "digest": digest,
                "size": image.manifest.len(),
                "annotations": {REF_NAME_ANNOTATION: "dev-sha-1111111"},
            }])
        );
        // Every blob is stored under its own digest: manifest, config, layer.
        for bytes in [&image.manifest, &image.config, &image.layers[0]] {
            let digest = Digest::of(bytes);
            assert_eq!(&fs::read(blob_path(&dir, &digest)).unwrap(), bytes);
        }
        assert_eq!(blob_names(&registry, "team/app").len(), 3);

        // No temporary file survives a successful write.
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["blobs", "index.json", "index.json.lock", "oci-layout"]);
    }

    #[tokio::test]
    async fn retag_keeps_the_digest_and_writes_no_blob() {
        let root = tempfile::tempdir().unwrap();
        let registry = LayoutRegistry::new(root.path());
        let digest = registry.push_image("app", "dev-sha-1111111", &revision("1111111")).await.unwrap();
        let blobs_before = blob_names(&registry, "app");

        let outcome = registry.tag("app", &digest, "staging-v1.0.0").await.unwrap();
        assert_eq!(outcome, TagOutcome::Created);
        assert_eq!(registry.resolve("app", "staging-v1.0.0").await.unwrap(), Some(digest.clone()));
        assert_eq!(registry.resolve("app", "dev-sha-1111111").await.unwrap(), Some(digest.clone()));
        assert_eq!(blob_names(&registry, "app"), blobs_before);

        let index_before = fs::read(root.path().join("app").join(INDEX_FILE)).unwrap();
        let again = registry.tag("app", &digest, "staging-v1.0.0").await.unwrap();
        assert_eq!(again, TagOutcome::AlreadyPresent);
        let index_after = fs::read(root.path().join("app").join(INDEX_FILE)).unwrap();
        assert_eq!(index_before, index_after);

        assert_eq!(registry.list_tags("app").await.unwrap(), ["dev-sha-1111111", "staging-v1.0.0"]);
    }

    #[tokio::test]
    async fn moving_a_tag_reports_where_it_pointed() {
        let root = tempfile::tempdir().unwrap();
        let registry = LayoutRegistry::new(root.path());
        let first = registry.push_image("app", "dev-sha-1111111", &revision("1111111")).await.unwrap();
        let second = registry.push_image("app", "dev-sha-2222222", &revision("2222222")).await.unwrap();
        assert_ne!(first, second);
        // The shared layer is stored once: one layer, two configs, two manifests.
        assert_eq!(blob_names(&registry, "app").len(), 5);

        assert_eq!(registry.tag("app", &first, "prod").await.unwrap(), TagOutcome::Created);
        assert_eq!(registry.tag("app", &second, "prod").await.unwrap(), TagOutcome::Moved { from: first.clone() });
        assert_eq!(registry.resolve("app", "prod").await.unwrap(), Some(second.clone()));
        let index = read_index_json(&registry, "app");
        let prod_entries =
            index["manifests"].as_array().unwrap().iter().filter(|entry| ref_name(entry) == Some("prod")).count();
        assert_eq!(prod_entries, 1);
    }

    #[tokio::test]
    async fn missing_tags_and_repositories() {
        let root = tempfile::tempdir().unwrap();
        let registry = LayoutRegistry::new(root.path());
        assert_eq!(registry.resolve("app", "dev").await.unwrap(), None);
        assert!(matches!(registry.list_tags("app").await, Err(RegistryError::NotFound { .. })));
        let digest = revision("1").digest();
        assert!(matches!(registry.tag("app", &digest, "dev").await, Err(RegistryError::NotFound { .. })));

        registry.push_image("app", "dev", &revision("1111111")).await.unwrap();
        assert_eq!(registry.resolve("app", "prod").await.unwrap(), None);
        let unknown = Digest::of(b"no such manifest");
        let error = registry.tag("app", &unknown, "prod").await.unwrap_err();
        assert!(
            matches!(&error, RegistryError::NotFound { reference } if reference.ends_with(unknown.as_str())),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn names_cannot_escape_the_root() {
        let root = tempfile::tempdir().unwrap();
        let registry = LayoutRegistry::new(root.path().join("registry"));
        let image = revision("1111111");
        for repository in ["../outside", "/etc", "app/../../x", ""] {
            assert!(matches!(
                registry.push_image(repository, "dev", &image).await,
                Err(RegistryError::InvalidName { .. })
            ));
            assert!(matches!(registry.resolve(repository, "dev").await, Err(RegistryError::InvalidName { .. })));
        }
        for tag in ["../dev", "a/b", ""] {
            assert!(matches!(registry.push_image("app", tag, &image).await, Err(RegistryError::InvalidName { .. })));
        }
        assert!(!root.path().join("outside").exists());
    }

    #[tokio::test]
    async fn a_damaged_manifest_blob_is_not_tagged() {
        let root = tempfile::tempdir().unwrap();
        let registry = LayoutRegistry::new(root.path());
        let digest = registry.push_image("app", "dev", &revision("1111111")).await.unwrap();
        fs::write(blob_path(&root.path().join("app"), &digest), b"{}").unwrap();
        assert!(matches!(registry.tag("app", &digest, "prod").await, Err(RegistryError::DigestMismatch { .. })));
        assert_eq!(registry.resolve("app", "prod").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_damaged_index_is_reported() {
        let root = tempfile::tempdir().unwrap();
        let registry = LayoutRegistry::new(root.path());
        registry.push_image("app", "dev", &revision("1111111")).await.unwrap();
        fs::write(root.path().join("app").join(INDEX_FILE), b"[not json").unwrap();
        assert!(matches!(registry.resolve("app", "dev").await, Err(RegistryError::InvalidLayout { .. })));
        assert!(matches!(registry.list_tags("app").await, Err(RegistryError::InvalidLayout { .. })));
    }

    #[tokio::test]
    async fn an_index_can_be_tagged_and_foreign_entries_survive() {
        let root = tempfile::tempdir().unwrap();
        let registry = LayoutRegistry::new(root.path());
        let image = revision("1111111");
        let image_digest = registry.push_image("app", "dev", &image).await.unwrap();
        let dir = root.path().join("app");

        // An image index over the pushed image, stored the way another tool would store it.
        let index_manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX_MEDIA_TYPE,
            "manifests": [{
                "mediaType": OCI_MANIFEST_MEDIA_TYPE,
                "digest": image_digest,
                "size": image.manifest.len(),
                "platform": {"architecture": "amd64", "os": "linux"},
            }],
        })
        .to_string()
        .into_bytes();
        let index_digest = Digest::of(&index_manifest);
        put_blob(&dir, &index_digest, &index_manifest).unwrap();

        // An untagged descriptor with fields gantry does not write itself.
        let mut index = read_index_json(&registry, "app");
        index["manifests"].as_array_mut().unwrap().push(json!({
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "digest": image_digest,
            "size": image.manifest.len(),
            "platform": {"architecture": "arm64", "os": "linux"},
        }));
        index["annotations"] = json!({"made.by": "another tool"});
        fs::write(dir.join(INDEX_FILE), index.to_string()).unwrap();

        assert_eq!(registry.tag("app", &index_digest, "multi").await.unwrap(), TagOutcome::Created);
        let index = read_index_json(&registry, "app");
        let entries = index["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1]["platform"]["architecture"], "arm64");
        assert_eq!(index["annotations"]["made.by"], "another tool");
        assert_eq!(entries[2]["mediaType"], OCI_INDEX_MEDIA_TYPE);
        assert_eq!(registry.resolve("app", "multi").await.unwrap(), Some(index_digest));
    }

    #[tokio::test]
    async fn blobs_are_checked_before_they_are_stored() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("app");
        init_layout(&dir).unwrap();
        let claimed = Digest::of(b"one thing");
        assert!(matches!(put_blob(&dir, &claimed, b"another thing"), Err(RegistryError::DigestMismatch { .. })));
        assert!(!blob_path(&dir, &claimed).exists());

        let mut image = revision("1111111");
        image.config.push(b' ');
        let registry = LayoutRegistry::new(root.path());
        assert!(matches!(registry.push_image("other", "dev", &image).await, Err(RegistryError::DigestMismatch { .. })));
        assert_eq!(registry.resolve("other", "dev").await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_tags_are_all_kept() {
        let root = tempfile::tempdir().unwrap();
        let registry = LayoutRegistry::new(root.path().join("registry"));
        let digest = registry.push_image("app", "dev", &revision("1111111")).await.unwrap();
        // A second path to the same directory gets its own in-process mutex, so tags written
        // through it are kept apart from the others only by the lock file, as they would be
        // in a second process.
        let alias = root.path().join("alias");
        std::os::unix::fs::symlink(root.path().join("registry"), &alias).unwrap();
        let aliased = LayoutRegistry::new(alias);

        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..20 {
            let registry = if n % 2 == 0 { registry.clone() } else { aliased.clone() };
            let digest = digest.clone();
            tasks.spawn(async move { registry.tag("app", &digest, &format!("env-{n}")).await });
        }
        while let Some(result) = tasks.join_next().await {
            assert_eq!(result.unwrap().unwrap(), TagOutcome::Created);
        }

        let tags = registry.list_tags("app").await.unwrap();
        assert_eq!(tags.len(), 21, "{tags:?}");
        for n in 0..20 {
            assert_eq!(registry.resolve("app", &format!("env-{n}")).await.unwrap(), Some(digest.clone()));
        }
    }

    #[test]
    fn references_name_the_layout_directory() {
        let registry = LayoutRegistry::new("/srv/oci");
        let digest = Digest::of(b"x");
        assert_eq!(registry.reference("team/app", "prod-v1.2.3"), "oci-layout:/srv/oci/team/app:prod-v1.2.3");
        assert_eq!(registry.reference("app", digest.as_str()), format!("oci-layout:/srv/oci/app@{digest}"));
    }
}
