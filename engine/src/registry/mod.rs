//! OCI registries: where promoted images live and where environment tags are written.
//!
//! Promotion never rebuilds an image. The same manifest digest moves from environment to
//! environment, and tags such as `dev-sha-abc1234` or `prod-v1.2.3` are labels pointing at
//! it. How the digest gets to its destination depends on where that is ([`promote`]):
//!
//! - the same repository: a retag, one manifest written by digest, no blob traffic;
//! - another repository of the same registry: blobs are mounted across repositories
//!   (`POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repository>`), falling back to a
//!   streamed copy when the registry refuses the mount;
//! - another registry: every missing blob is streamed from source to destination and checked
//!   against its digest on the way, then the manifests are written, children first.
//!
//! Image indexes (multi-platform images) move with all their child manifests, and any OCI
//! artifact (Helm charts, SBOMs, signatures) moves the same way: only the manifest media
//! types matter, never the config or layer types.
//!
//! Three kinds of registry sit behind the [`Registry`] trait:
//!
//! - [`DistributionRegistry`]: any registry that speaks the OCI distribution API (Docker Hub,
//!   Harbor, `docker-registry`, ...), with basic or bearer-token authentication and retries;
//! - [`LayoutRegistry`]: a directory holding one OCI image layout per repository, the
//!   embedded default that needs no server at all;
//! - [`EcrRegistry`]: Amazon ECR through its own API (retags only).
//!
//! [`open`] and [`open_with`] turn a configured registry URL into the right implementation,
//! with the credentials, plain-HTTP hosts and immutable repositories of [`RegistryOptions`]
//! ([`settings`] derives those from the configuration); [`ImageReference`] parses the
//! references the CLI takes.

pub mod copy;
pub mod distribution;
pub mod ecr;
mod http;
pub mod image;
pub mod layout;
pub mod reference;
pub mod settings;

use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use copy::{Location, Promotion, Strategy, promote, promote_tag};
pub use distribution::{DistributionRegistry, Scheme};
pub use ecr::EcrRegistry;
pub use http::RetryPolicy;
pub use image::{Image, Manifest, sample_image};
pub use layout::LayoutRegistry;
pub use reference::ImageReference;

/// Media type of an OCI image manifest.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index (a multi-platform image).
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of a Docker image manifest, schema 2.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker manifest list (the Docker flavour of an image index).
pub const DOCKER_MANIFEST_LIST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest media type gantry reads, tags and pushes.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] =
    [OCI_MANIFEST_MEDIA_TYPE, OCI_INDEX_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_LIST_MEDIA_TYPE];

/// A content digest of the form `sha256:<64 lowercase hex digits>`.
///
/// Only SHA-256 is accepted: it is the algorithm every registry and the OCI image layout use,
/// and accepting anything else would let two spellings name the same content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        let valid = s.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if valid { Ok(Self(s.to_owned())) } else { Err(RegistryError::InvalidDigest { value: s.to_owned() }) }
    }

    /// The whole digest, `sha256:…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits without the algorithm prefix (the blob's file name in a layout).
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The SHA-256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Digest {
    type Error = RegistryError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> Self {
        digest.0
    }
}

/// What [`Registry::tag`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagOutcome {
    /// The tag did not exist and now points at the digest.
    Created,
    /// The tag pointed at another digest and was moved.
    Moved {
        /// The digest the tag pointed at before.
        from: Digest,
    },
    /// The tag already pointed at the digest; nothing was written.
    AlreadyPresent,
}

/// Credentials for a distribution registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum RegistryAuth {
    /// No credentials; token registries still hand out anonymous pull tokens.
    #[default]
    Anonymous,
    /// HTTP basic credentials, also used to obtain bearer tokens from token registries.
    Basic {
        /// User name.
        username: String,
        /// Password or access token.
        password: String,
    },
}

impl fmt::Debug for RegistryAuth {
    // The password must never end up in logs or error reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => {
                f.debug_struct("Basic").field("username", username).field("password", &"<redacted>").finish()
            }
        }
    }
}

/// A registry that holds images and lets gantry point tags at manifest digests.
///
/// Every write is idempotent: repeating a call after a crash leaves the registry as one
/// successful call would.
#[async_trait::async_trait]
pub trait Registry: Send + Sync {
    /// Digest the tag points at, or None when the tag does not exist (CI has not pushed yet).
    async fn resolve(&self, repository: &str, tag: &str) -> Result<Option<Digest>, RegistryError>;

    /// Points `tag` at the manifest `digest` in the same repository without moving blobs; idempotent.
    ///
    /// Fails with [`RegistryError::NotFound`] when the repository holds no manifest with
    /// that digest.
    async fn tag(&self, repository: &str, digest: &Digest, tag: &str) -> Result<TagOutcome, RegistryError>;

    /// Pushes a whole image (blobs then manifest) under `tag`; blobs already present are not re-sent.
    ///
    /// Returns the manifest digest, which is [`Image::digest`].
    async fn push_image(&self, repository: &str, tag: &str, image: &Image) -> Result<Digest, RegistryError>;

    /// All tags of the repository, sorted; [`RegistryError::NotFound`] when the repository
    /// does not exist.
    async fn list_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError>;

    /// Human-readable reference for messages and PR bodies, e.g. `127.0.0.1:5000/app` or `oci-layout:/path/app`.
    ///
    /// `tag_or_digest` is appended after `@` when it is a digest and after `:` otherwise;
    /// an empty string names the repository itself.
    fn reference(&self, repository: &str, tag_or_digest: &str) -> String;

    /// What two handles share when they reach the same storage, e.g. `http://127.0.0.1:5000`
    /// or `oci-layout:/srv/oci`: blobs can be mounted between repositories of one identity.
    fn identity(&self) -> String;

    /// The repository's name as the storage knows it (a configured namespace included); the
    /// `from` of a cross-repository mount.
    fn repository_path(&self, repository: &str) -> String {
        repository.to_owned()
    }

    /// Whether a tag of `repository`, once written, may never point at another digest. Writes
    /// check before they write and fail with [`RegistryError::TagImmutable`].
    fn immutable_tags(&self, repository: &str) -> bool {
        let _ = repository;
        false
    }

    /// Retry policy for whole-blob transfers, which cannot be replayed request by request.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }

    /// Reads the manifest with `digest`, checking that its bytes hash to it.
    ///
    /// Fails with [`RegistryError::NotFound`] when the repository holds no such manifest.
    async fn fetch_manifest(&self, repository: &str, digest: &Digest) -> Result<Manifest, RegistryError>;

    /// Reads the manifest `tag` points at, or None when the tag does not exist. Its digest is
    /// [`Manifest::digest`].
    async fn fetch_tagged(&self, repository: &str, tag: &str) -> Result<Option<Manifest>, RegistryError> {
        match self.resolve(repository, tag).await? {
            Some(digest) => match self.fetch_manifest(repository, &digest).await {
                Ok(manifest) => Ok(Some(manifest)),
                // Moved or deleted between the two requests: as good as not there.
                Err(RegistryError::NotFound { .. }) => Ok(None),
                Err(error) => Err(error),
            },
            None => Ok(None),
        }
    }

    /// Whether the repository holds the manifest with `digest`.
    async fn manifest_exists(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError>;

    /// Stores a manifest whose blobs and child manifests are already in the repository: under
    /// `tag` when one is given, otherwise by digest only (the children of an index).
    async fn put_manifest(&self, repository: &str, manifest: &Manifest, tag: Option<&str>)
    -> Result<(), RegistryError>;

    /// Whether the repository holds the blob with `digest`.
    async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError>;

    /// Opens the blob with `digest` for streaming. The stream is not checked against the digest
    /// here; [`copy::verified`] does that on the way to the destination.
    async fn read_blob(&self, repository: &str, digest: &Digest) -> Result<Blob, RegistryError>;

    /// Stores a blob from a stream of `size` bytes. Implementations must not make the blob
    /// visible unless the stream ends without an error, so a verifying stream that fails
    /// leaves nothing behind.
    async fn write_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        blob: BlobStream,
    ) -> Result<(), RegistryError>;

    /// Makes the blob `digest` of repository `from` (a [`Registry::repository_path`] on this
    /// same storage) available in `repository` without moving its bytes.
    ///
    /// Returns false when the registry declines, so that the caller copies instead.
    async fn mount_blob(&self, repository: &str, from: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let _ = (repository, from, digest);
        Ok(false)
    }

    /// Removes `tag` and nothing else: the manifest it pointed at stays, as do the other tags
    /// pointing at it. Returns false when the tag did not exist.
    ///
    /// Registries without a tag-deletion API (`docker-registry` 2.x deletes by digest only)
    /// get the tag pointed at a manifest of its own first, which is then deleted by digest.
    /// ECR is the exception to "nothing else": it deletes an image together with its last tag.
    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, RegistryError>;

    /// Deletes the manifest `digest`, and with it every tag pointing at it. Returns false when
    /// the repository did not hold it. The blobs it referenced are left to the registry's
    /// garbage collection.
    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError>;
}

/// A stream of blob bytes.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>;

/// An open blob: its bytes as a stream and, when the source said, its length.
pub struct Blob {
    /// The length the source announced, if any.
    pub size: Option<u64>,
    /// The bytes.
    pub stream: BlobStream,
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob").field("size", &self.size).finish_non_exhaustive()
    }
}

/// How to reach registries: credentials, which hosts may be spoken to over plain HTTP, whether
/// tags are immutable, and how failed requests are retried.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Credentials for the registry. For ECR, basic credentials are an AWS access key id
    /// and secret; anonymous means the AWS default credential chain.
    pub auth: RegistryAuth,
    /// Hosts (`host` or `host:port`) reached over plain HTTP although they are not on
    /// loopback, like docker's `--insecure-registry`.
    pub insecure_hosts: Vec<String>,
    /// Repositories whose tags are immutable: a tag at another digest is an error, never
    /// moved. `docker-registry` has no such setting, so gantry checks before it writes.
    pub immutable_tags: ImmutableTags,
    /// Retries of requests that failed with 5xx, 408, 429 or a network error.
    pub retry: RetryPolicy,
}

impl RegistryOptions {
    /// Options with these credentials and defaults otherwise.
    pub fn with_auth(auth: RegistryAuth) -> Self {
        Self { auth, ..Self::default() }
    }

    /// Whether `host` (`name[:port]`) was named as an insecure registry, with or without its port.
    fn is_insecure(&self, host: &str) -> bool {
        let name = host_name(host);
        self.insecure_hosts
            .iter()
            .map(|entry| entry.trim())
            .any(|entry| entry.eq_ignore_ascii_case(host) || entry.eq_ignore_ascii_case(name))
    }
}

/// Which repositories of a registry have immutable tags.
///
/// Patterns are matched against the repository name as configured (without a registry
/// namespace): `*` stands for any characters but `/`, `**` for any characters including `/`,
/// `?` for one character but `/`; anything else matches itself. `team/*` covers `team/app`
/// but not `team/sub/app`; `**` covers every repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ImmutableTags {
    /// Tags may move (the default).
    #[default]
    None,
    /// Every tag of every repository is immutable.
    All,
    /// The tags of repositories matching any of these patterns are immutable.
    Matching(Vec<String>),
}

impl ImmutableTags {
    /// Immutable everywhere (`true`) or nowhere (`false`).
    pub fn all(immutable: bool) -> Self {
        if immutable { Self::All } else { Self::None }
    }

    /// Immutable in the repositories matching `patterns`, after checking each pattern.
    pub fn matching(patterns: &[String]) -> Result<Self, String> {
        for pattern in patterns {
            check_repository_pattern(pattern)?;
        }
        Ok(if patterns.is_empty() { Self::None } else { Self::Matching(patterns.to_vec()) })
    }

    /// Whether the tags of `repository` are immutable.
    pub fn applies_to(&self, repository: &str) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Matching(patterns) => {
                patterns.iter().any(|pattern| glob_match(pattern.as_bytes(), repository.as_bytes()))
            }
        }
    }
}

/// Checks a repository pattern of [`ImmutableTags::matching`]: a repository name in which
/// `*`, `**` and `?` may stand for parts of components.
pub fn check_repository_pattern(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("the pattern is empty".to_owned());
    }
    if pattern.contains("***") {
        return Err(format!("pattern {pattern:?}: use `*` for a name component and `**` for any depth"));
    }
    // With the wildcards taken for letters, what is left must be a valid repository name.
    let probe: String = pattern.chars().map(|c| if c == '*' || c == '?' { 'x' } else { c }).collect();
    validate_repository(&probe).map_err(|error| format!("pattern {pattern:?} is not a repository name: {error}"))
}

/// Matches `name` against a pattern of [`ImmutableTags`].
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match pattern {
        [] => name.is_empty(),
        [b'*', b'*', rest @ ..] => {
            // `**/` may also match nothing at all, so that `team/**/app` covers `team/app`.
            let rest_after_slash = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=name.len()).any(|skip| glob_match(rest, &name[skip..]))
                || (rest.first() == Some(&b'/') && glob_match(rest_after_slash, name))
        }
        [b'*', rest @ ..] => {
            let limit = name.iter().position(|&b| b == b'/').unwrap_or(name.len());
            (0..=limit).any(|skip| glob_match(rest, &name[skip..]))
        }
        [b'?', rest @ ..] => name.first().is_some_and(|&b| b != b'/') && glob_match(rest, &name[1..]),
        [literal, rest @ ..] => name.first() == Some(literal) && glob_match(rest, &name[1..]),
    }
}

/// The host name of `host[:port]` or `[ipv6]:port`, without the port.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        host.split(':').next().unwrap_or(host)
    }
}

/// Opens a registry from its configured URL with default options and the given credentials;
/// see [`open_with`].
pub fn open(url: &str, base_dir: &Path, auth: RegistryAuth) -> Result<Arc<dyn Registry>, RegistryError> {
    open_with(url, base_dir, &RegistryOptions::with_auth(auth))
}

/// Opens a registry from its configured URL:
///
/// - `oci-layout:<dir>`: an image layout per repository under `dir` (relative dirs resolve
///   against `base_dir`);
/// - `https://host[:port]` or a bare `host[:port]`: a distribution registry over HTTPS;
/// - `http://host[:port]` or a bare `host[:port]` over plain HTTP, only for `localhost`,
///   `127.0.0.1` and `[::1]` (as docker does) or a host listed in
///   [`RegistryOptions::insecure_hosts`];
/// - `ecr://<account>.dkr.ecr.<region>.amazonaws.com[?endpoint=<url>]`: Amazon ECR through
///   its API, optionally at another endpoint such as a local emulator (see [`EcrRegistry`]).
///
/// A path after a distribution host (`https://harbor.example.com/team`) is a namespace put in
/// front of every repository name, so `app` becomes `team/app` on that registry.
pub fn open_with(url: &str, base_dir: &Path, options: &RegistryOptions) -> Result<Arc<dyn Registry>, RegistryError> {
    let trimmed = url.trim();
    let invalid = |reason: &str| RegistryError::InvalidUrl { url: url.to_owned(), reason: reason.to_owned() };
    if trimmed.is_empty() {
        return Err(invalid("the registry URL is empty"));
    }
    if let Some(dir) = trimmed.strip_prefix("oci-layout:") {
        if dir.is_empty() {
            return Err(invalid("`oci-layout:` needs a directory after the colon"));
        }
        let dir = Path::new(dir);
        let root = if dir.is_absolute() { dir.to_path_buf() } else { base_dir.join(dir) };
        return Ok(Arc::new(LayoutRegistry::new(root).with_immutable_tags(options.immutable_tags.clone())));
    }
    if trimmed.starts_with("ecr://") {
        return Ok(Arc::new(EcrRegistry::from_url(trimmed, options)?));
    }

    let (scheme, rest) = if let Some(rest) = trimmed.strip_prefix("http://") {
        (Some(Scheme::Http), rest)
    } else if let Some(rest) = trimmed.strip_prefix("https://") {
        (Some(Scheme::Https), rest)
    } else if trimmed.contains("://") {
        return Err(invalid("unsupported scheme; use http://, https://, ecr://, oci-layout: or a bare host:port"));
    } else {
        (None, trimmed)
    };
    if rest.contains(['?', '#', '@']) {
        return Err(invalid("query strings, fragments and user info are not supported; pass credentials separately"));
    }
    let (host, path) = match rest.split_once('/') {
        Some((host, path)) => (host, path.trim_end_matches('/')),
        None => (rest, ""),
    };
    validate_host(host).map_err(invalid)?;
    let namespace = if path.is_empty() {
        None
    } else {
        validate_repository(path).map_err(|_| {
            invalid("the path after the host must be a repository namespace such as `team` or `org/team`")
        })?;
        Some(path.to_owned())
    };
    let plain_http_allowed = is_loopback_host(host) || options.is_insecure(host);
    let scheme = match scheme {
        Some(Scheme::Http) if !plain_http_allowed => {
            return Err(invalid(&format!(
                "plain HTTP is only used for localhost, 127.0.0.1 and [::1]; \
                 list the host as an insecure registry (`--insecure-registry {host}`) to allow it"
            )));
        }
        Some(scheme) => scheme,
        None if plain_http_allowed => Scheme::Http,
        None => Scheme::Https,
    };
    let registry = DistributionRegistry::with_options(host, scheme, namespace, options)?;
    Ok(Arc::new(registry))
}

/// Whether `host` (with or without a port) names this machine, which docker reaches over
/// plain HTTP without being told to.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(bracketed) = host.strip_prefix('[') {
        bracketed.split(']').next().map(|ip| format!("[{ip}]"))
    } else {
        host.split(':').next().map(str::to_owned)
    };
    matches!(name.as_deref(), Some("localhost") | Some("127.0.0.1") | Some("[::1]"))
}

fn validate_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("the host is missing");
    }
    let (name, port) = if let Some(bracketed) = host.strip_prefix('[') {
        let (ip, after) = bracketed.split_once(']').ok_or("an IPv6 host needs a closing `]`")?;
        if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err("the IPv6 address is not valid");
        }
        match after {
            "" => (ip, None),
            _ => (ip, Some(after.strip_prefix(':').ok_or("junk after the IPv6 address")?)),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let name_ok = !name.is_empty()
        && (host.starts_with('[') || name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    if !name_ok {
        return Err("the host name may only hold letters, digits, `.` and `-`");
    }
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err("the port must be a number from 1 to 65535");
    }
    Ok(())
}

/// Checks a repository name against the OCI distribution grammar: `/`-separated components of
/// lowercase letters and digits joined by `.`, `_`, `__` or runs of `-`.
///
/// Besides sparing a round trip, this is what keeps a repository name from escaping a layout
/// root (`..` and absolute paths never pass).
pub(crate) fn validate_repository(name: &str) -> Result<(), RegistryError> {
    let invalid =
        |reason: &'static str| RegistryError::InvalidName { what: "repository", value: name.to_owned(), reason };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name.len() > 255 {
        return Err(invalid("the name is longer than 255 characters"));
    }
    for component in name.split('/') {
        validate_repository_component(component).map_err(invalid)?;
    }
    Ok(())
}

fn validate_repository_component(component: &str) -> Result<(), &'static str> {
    let bytes = component.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) if is_alnum(first) && is_alnum(last) => {}
        (None, _) | (_, None) => return Err("a path component is empty"),
        _ => return Err("each path component must start and end with a lowercase letter or digit"),
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let allowed = separator == "." || separator == "_" || separator == "__" || separator.bytes().all(|b| b == b'-');
        if !allowed {
            return Err("only lowercase letters, digits and the separators `.`, `_`, `__` and `-` are allowed");
        }
    }
    Ok(())
}

/// Checks a tag against the OCI grammar `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub(crate) fn validate_tag(tag: &str) -> Result<(), RegistryError> {
    let invalid = |reason: &'static str| RegistryError::InvalidName { what: "tag", value: tag.to_owned(), reason };
    let bytes = tag.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(invalid("the tag is empty"));
    };
    if bytes.len() > 128 {
        return Err(invalid("the tag is longer than 128 characters"));
    }
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err(invalid("a tag must start with a letter, a digit or `_`"));
    }
    if !bytes.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(invalid("a tag may only hold letters, digits, `_`, `.` and `-`"));
    }
    Ok(())
}

/// Appends `tag_or_digest` to a repository reference with the separator docker uses.
pub(crate) fn join_reference(repository_reference: String, tag_or_digest: &str) -> String {
    if tag_or_digest.is_empty() {
        repository_reference
    } else if tag_or_digest.contains(':') {
        format!("{repository_reference}@{tag_or_digest}")
    } else {
        format!("{repository_reference}:{tag_or_digest}")
    }
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The repository, tag or manifest does not exist.
    #[error("find {reference}")]
    NotFound {
        /// What was looked for, as [`Registry::reference`] prints it.
        reference: String,
    },
    /// A file or directory of an image layout could not be read or written.
    #[error("access {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A request to a distribution registry failed.
    #[error("{action} {reference}{}", status.map(|code| format!(" (http status {code})")).unwrap_or_default())]
    Distribution {
        /// What was being done, e.g. `push manifest`.
        action: &'static str,
        /// The image reference the request was about.
        reference: String,
        /// The HTTP status, when the registry answered at all. Registries that send an OCI
        /// error body are mapped from its error code (`TOOMANYREQUESTS` is 429, unknown
        /// names and manifests are 404).
        status: Option<u16>,
        /// The client's error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A string that should be a digest is not `sha256:<64 lowercase hex digits>`.
    #[error("parse digest {value:?}: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest {
        /// The rejected value.
        value: String,
    },
    /// The configured registry URL cannot be used.
    #[error("open registry {url:?}: {reason}")]
    InvalidUrl {
        /// The configured URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Content does not hash to the digest it was announced with.
    #[error("verify content digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The announced digest.
        expected: String,
        /// The digest of the bytes actually seen.
        actual: String,
    },
    /// A repository name or tag breaks the OCI naming rules.
    #[error("use {value:?} as a {what} name: {reason}")]
    InvalidName {
        /// `repository` or `tag`.
        what: &'static str,
        /// The rejected value.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A manifest is not one gantry can handle, or does not match the blobs sent with it.
    #[error("use manifest {reference}: {reason}")]
    InvalidManifest {
        /// The manifest's reference.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image layout on disk is damaged.
    #[error("read image layout {}: {reason}", path.display())]
    InvalidLayout {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A blob is not as long as its descriptor says.
    #[error("verify the size of blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob's digest.
        digest: String,
        /// The size the manifest gives.
        expected: u64,
        /// The bytes actually seen (at least; counting stops at the first byte too many).
        actual: u64,
    },
    /// The tag already points at another digest and tags on this registry are immutable.
    #[error("point {reference} at {requested}: the tag is immutable and already points at {current}")]
    TagImmutable {
        /// The tag, as [`Registry::reference`] prints it.
        reference: String,
        /// Where the tag points.
        current: Digest,
        /// Where it was asked to point.
        requested: Digest,
    },
    /// The credentials configured for a registry cannot be read.
    #[error("read the credentials of registry {registry}: {reason}")]
    Credentials {
        /// The registry's configured name.
        registry: String,
        /// What is wrong (a variable not set, a file not readable).
        reason: String,
    },
    /// The registry cannot do this at all.
    #[error("{operation} {reference}: {reason}")]
    Unsupported {
        /// What was asked, e.g. `upload blobs to`.
        operation: &'static str,
        /// The registry or image.
        reference: String,
        /// Why it cannot be done, and what to do instead.
        reason: &'static str,
    },
}

impl RegistryError {
    /// Whether retrying later may succeed: 5xx, 408 and 429 answers, connection failures and
    /// timeouts. Everything else (bad names, missing manifests, denied access) stays failed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Distribution { status: Some(code), .. } => *code >= 500 || *code == 429 || *code == 408,
            Self::Distribution { status: None, source, .. } => is_transient_source(source.as_ref()),
            Self::Io { source, .. } => {
                matches!(source.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut)
            }
            _ => false,
        }
    }
}

/// Walks an error chain looking for a network failure that may go away by itself.
fn is_transient_source(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(http) = error.downcast_ref::<reqwest::Error>() {
            if http.is_connect() || http.is_timeout() || http.is_request() || http.is_body() {
                return true;
            }
            if let Some(status) = http.status() {
                let code = status.as_u16();
                return code >= 500 || code == 429 || code == 408;
            }
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | TimedOut
                    | UnexpectedEof
                    | Interrupted
            ) {
                return true;
            }
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_parse_accepts_sha256_only() {
        let hex = "a".repeat(64);
        let digest = Digest::parse(&format!("sha256:{hex}")).unwrap();
        assert_eq!(digest.hex(), hex);
        assert_eq!(digest.as_str(), format!("sha256:{hex}"));

        for bad in [
            String::new(),
            hex.clone(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}", "a".repeat(65)),
            format!("sha512:{hex}"),
            format!("sha256:{}g", "a".repeat(63)),
        ] {
            assert!(
                matches!(Digest::parse(&bad), Err(RegistryError::InvalidDigest { .. })),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn digest_of_empty_input_is_the_well_known_value() {
        assert_eq!(Digest::of(b"").as_str(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn digest_deserialization_validates() {
        let good = format!("\"sha256:{}\"", "0".repeat(64));
        let digest: Digest = serde_json::from_str(&good).unwrap();
        assert_eq!(serde_json::to_string(&digest).unwrap(), good);
        assert!(serde_json::from_str::<Digest>("\"sha256:nope\"").is_err());
    }

    #[test]
    fn repository_names_follow_the_oci_grammar() {
        for good in ["app", "team/app", "a.b_c__d---e/f0", "0", "org/team/app-1"] {
            assert!(validate_repository(good).is_ok(), "{good:?} must pass");
        }
        for bad in
            ["", "App", "../app", "app/..", "/app", "app/", "a//b", "a..b", "a___b", "-a", "a-", "a b", ".", "a/./b"]
        {
            assert!(validate_repository(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn tags_follow_the_oci_grammar() {
        for good in ["latest", "dev-sha-abc1234", "prod-v1.2.3", "_x", "A"] {
            assert!(validate_tag(good).is_ok(), "{good:?} must pass");
        }
        let too_long = "a".repeat(129);
        for bad in ["", ".x", "-x", "a/b", "a:b", "a@b", too_long.as_str()] {
            assert!(validate_tag(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn references_use_colon_for_tags_and_at_for_digests() {
        let digest = format!("sha256:{}", "1".repeat(64));
        assert_eq!(join_reference("h/app".into(), "v1"), "h/app:v1");
        assert_eq!(join_reference("h/app".into(), &digest), format!("h/app@{digest}"));
        assert_eq!(join_reference("h/app".into(), ""), "h/app");
    }

    #[test]
    fn loopback_detection_matches_docker() {
        for host in ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000", "[::1]", "[::1]:5000"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["registry.example.com", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn open_picks_the_registry_kind_from_the_url() {
        let base = Path::new("/data");
        let anonymous = || RegistryAuth::Anonymous;

        let layout = open("oci-layout:images", base, anonymous()).unwrap();
        assert_eq!(layout.reference("app", "v1"), "oci-layout:/data/images/app:v1");
        let layout = open("oci-layout:/srv/oci", base, anonymous()).unwrap();
        assert_eq!(layout.reference("app", ""), "oci-layout:/srv/oci/app");

        let bare = open("127.0.0.1:5000", base, anonymous()).unwrap();
        assert_eq!(bare.reference("app", "v1"), "127.0.0.1:5000/app:v1");
        let namespaced = open("https://harbor.example.com/team/", base, anonymous()).unwrap();
        assert_eq!(namespaced.reference("app", "v1"), "harbor.example.com/team/app:v1");
    }

    #[test]
    fn open_rejects_unusable_urls() {
        let base = Path::new("/data");
        for bad in [
            "",
            "   ",
            "oci-layout:",
            "ftp://host",
            "http://",
            "http://user:pw@host",
            "https://host:99999",
            "https://host:0",
            "https://ho st",
            "https://host/Team",
            "host:5000?x=1",
            "[::1",
        ] {
            let result = open(bad, base, RegistryAuth::Anonymous);
            assert!(matches!(result, Err(RegistryError::InvalidUrl { .. })), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn plain_http_is_only_for_loopback_or_insecure_hosts() {
        let base = Path::new(".");
        let refused = open("http://registry.internal:5000", base, RegistryAuth::Anonymous)
            .err()
            .expect("plain HTTP to a remote host must be refused");
        assert!(refused.to_string().contains("--insecure-registry registry.internal:5000"), "{refused}");

        let insecure =
            |host: &str| RegistryOptions { insecure_hosts: vec![host.to_owned()], ..RegistryOptions::default() };
        let by_name = open_with("http://registry.internal:5000", base, &insecure("registry.internal")).unwrap();
        assert_eq!(by_name.identity(), "http://registry.internal:5000");
        let bare = open_with("registry.internal:5000", base, &insecure("registry.internal:5000")).unwrap();
        assert_eq!(bare.identity(), "http://registry.internal:5000");
        let other_port = open_with("registry.internal:5001", base, &insecure("registry.internal:5000")).unwrap();
        assert_eq!(other_port.identity(), "https://registry.internal:5001");
        let secure = open("registry.internal:5000", base, RegistryAuth::Anonymous).unwrap();
        assert_eq!(secure.identity(), "https://registry.internal:5000");
        for loopback in ["http://127.0.0.1:5000", "localhost:5000", "http://[::1]:5000"] {
            assert!(open(loopback, base, RegistryAuth::Anonymous).unwrap().identity().starts_with("http://"));
        }
    }

    #[test]
    fn ecr_urls_open_the_ecr_adapter() {
        let registry =
            open("ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com", Path::new("."), RegistryAuth::Anonymous)
                .unwrap();
        assert_eq!(registry.identity(), "ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com");
        assert!(open("ecr://eu-west-1", Path::new("."), RegistryAuth::Anonymous).is_err());
    }

    #[test]
    fn immutable_tag_patterns_match_repositories() {
        let immutable = ImmutableTags::matching(&["web".into(), "prod/*".into(), "release/**/app".into()]).unwrap();
        for repository in ["web", "prod/app", "prod/api", "release/app", "release/eu/west/app"] {
            assert!(immutable.applies_to(repository), "{repository} must be immutable");
        }
        for repository in ["web2", "team/web", "prod", "prod/app/sub", "release/app2", "dev/app"] {
            assert!(!immutable.applies_to(repository), "{repository} must stay mutable");
        }
        let everything = ImmutableTags::matching(&["**".into()]).unwrap();
        assert!(everything.applies_to("a/b/c") && everything.applies_to("a"));
        let single = ImmutableTags::matching(&["a?p".into()]).unwrap();
        assert!(single.applies_to("app") && !single.applies_to("ap") && !single.applies_to("a/p"));
        assert_eq!(ImmutableTags::matching(&[]).unwrap(), ImmutableTags::None);
        assert!(ImmutableTags::All.applies_to("anything"));
        assert!(!ImmutableTags::None.applies_to("anything"));
        for bad in ["", "Team/*", "a//b", "***", "/app"] {
            assert!(ImmutableTags::matching(&[bad.to_owned()]).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn auth_debug_hides_the_password() {
        let auth = RegistryAuth::Basic { username: "ci".into(), password: "hunter2".into() };
        let printed = format!("{auth:?}");
        assert!(printed.contains("ci"));
        assert!(!printed.contains("hunter2"));
    }

    #[test]
    fn transient_errors_are_server_side_or_network() {
        let distribution = |status| RegistryError::Distribution {
            action: "resolve",
            reference: "h/app:v1".into(),
            status,
            source: "boom".into(),
        };
        assert!(distribution(Some(503)).is_transient());
        assert!(distribution(Some(429)).is_transient());
        assert!(!distribution(Some(404)).is_transient());
        assert!(!distribution(Some(401)).is_transient());
        assert!(!distribution(None).is_transient());

        let refused = RegistryError::Distribution {
            action: "resolve",
            reference: "h/app:v1".into(),
            status: None,
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        assert!(refused.is_transient());
        assert!(!RegistryError::NotFound { reference: "x".into() }.is_transient());
    }

    #[test]
    fn error_messages_read_after_failed_to() {
        let error = RegistryError::Distribution {
            action: "push manifest",
            reference: "h/app:v1".into(),
            status: Some(500),
            source: "boom".into(),
        };
        assert_eq!(error.to_string(), "push manifest h/app:v1 (http status 500)");
        let error = RegistryError::NotFound { reference: "h/app:v1".into() };
        assert_eq!(error.to_string(), "find h/app:v1");
    }
}
