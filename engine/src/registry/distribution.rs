//! A registry reached over the OCI distribution API: Docker Hub, Harbor, `docker-registry`,
//! or anything else that serves `/v2/`.
//!
//! A retag never re-uploads anything: gantry reads the manifest by digest and writes the very
//! same bytes, with the same media type, under the new tag. The registry stores it under the
//! same digest, and the layers stay where they are because they are already in the repository.
//!
//! Requests go through [`Transport`](super::http), which answers authentication challenges
//! (basic, or the bearer token flow) and retries `5xx`/`408`/`429` answers, honouring
//! `Retry-After`.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode};

use super::http::{Context, Request, ResponseError, RetryPolicy, Transport, retry_whole};
use super::image::OCI_EMPTY_MEDIA_TYPE;
use super::image::parse_manifest;
use super::{
    Blob, BlobStream, Digest, Image, ImmutableTags, MANIFEST_MEDIA_TYPES, Manifest, OCI_MANIFEST_MEDIA_TYPE, Registry,
    RegistryAuth, RegistryError, RegistryOptions, TagOutcome, join_reference, validate_repository, validate_tag,
};

/// How long to wait for a TCP (and TLS) connection before calling the registry unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a response may stall before the request is given up as transient.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Tags asked for per page when listing; registries may return fewer.
const TAGS_PAGE_SIZE: usize = 1000;
/// The header in which registries return the digest of what they store or serve.
const DIGEST_HEADER: &str = "docker-content-digest";
/// Redirects followed when a blob is served from elsewhere.
const MAX_REDIRECTS: usize = 5;

/// Whether to talk to the registry over plain HTTP or HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP, for registries on loopback or on a trusted network.
    Http,
    /// HTTPS with the system's trusted roots.
    Https,
}

/// A registry reached over the OCI distribution API.
pub struct DistributionRegistry {
    transport: Transport,
    host: String,
    namespace: Option<String>,
    immutable_tags: ImmutableTags,
}

impl fmt::Debug for DistributionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistributionRegistry")
            .field("host", &self.host)
            .field("namespace", &self.namespace)
            .field("transport", &self.transport)
            .field("immutable_tags", &self.immutable_tags)
            .finish()
    }
}

impl DistributionRegistry {
    /// A registry at `host` (`host[:port]`), with every repository name prefixed by
    /// `namespace` when one is given, and default options otherwise.
    pub fn new(
        host: &str,
        scheme: Scheme,
        namespace: Option<String>,
        auth: RegistryAuth,
    ) -> Result<Self, RegistryError> {
        Self::with_options(host, scheme, namespace, &RegistryOptions::with_auth(auth))
    }

    /// A registry at `host` with the given credentials, immutability and retry policy.
    /// [`super::open_with`] decides the scheme; this constructor trusts it.
    pub fn with_options(
        host: &str,
        scheme: Scheme,
        namespace: Option<String>,
        options: &RegistryOptions,
    ) -> Result<Self, RegistryError> {
        if let Some(namespace) = &namespace {
            validate_repository(namespace)?;
        }
        let client = shared_client(scheme).map_err(|error| RegistryError::InvalidUrl {
            url: host.to_owned(),
            reason: format!("the HTTP client cannot be built: {error}"),
        })?;
        let base_url = match scheme {
            Scheme::Http => format!("http://{host}"),
            Scheme::Https => format!("https://{host}"),
        };
        let credentials = match &options.auth {
            RegistryAuth::Anonymous => None,
            RegistryAuth::Basic { username, password } => Some((username.clone(), password.clone())),
        };
        Ok(Self {
            transport: Transport::new(client, base_url, credentials, options.retry.clone()),
            host: host.to_owned(),
            namespace,
            immutable_tags: options.immutable_tags.clone(),
        })
    }

    /// The repository's full name on the registry, namespace included, after checking it.
    fn path(&self, repository: &str) -> Result<String, RegistryError> {
        validate_repository(repository)?;
        Ok(self.repository_path(repository))
    }

    fn url(&self, path: &str, kind: &str, reference: &str) -> String {
        format!("{}/v2/{path}/{kind}/{reference}", self.transport.base_url())
    }

    /// The absolute URL of an upload location, which registries may send as a path.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') { format!("{}{location}", self.transport.base_url()) } else { location.to_owned() }
    }

    async fn head_manifest(
        &self,
        path: &str,
        reference: &str,
        context: &Context,
    ) -> Result<Option<Response>, RegistryError> {
        let scopes = pull_scope(path);
        let request = Request::new(Method::HEAD, self.url(path, "manifests", reference), &scopes)
            .header(ACCEPT, accept_manifests());
        let response = self.transport.send(&request, context).await?;
        match response.status() {
            StatusCode::OK => Ok(Some(response)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(context.unexpected(response).await),
        }
    }

    async fn get_manifest(
        &self,
        path: &str,
        reference: &str,
        context: &Context,
    ) -> Result<Option<Fetched>, RegistryError> {
        let scopes = pull_scope(path);
        let request = Request::new(Method::GET, self.url(path, "manifests", reference), &scopes)
            .header(ACCEPT, accept_manifests());
        let response = self.transport.send(&request, context).await?;
        match response.status() {
            StatusCode::OK => {
                let header =
                    |name| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
                let content_type =
                    header(CONTENT_TYPE.as_str()).map(|value| value.split(';').next().unwrap_or("").trim().to_owned());
                let digest = header(DIGEST_HEADER).map(|value| value.trim().to_owned());
                let body = response.bytes().await.map_err(|error| context.error(error))?;
                Ok(Some(Fetched { content_type, digest, body }))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(context.unexpected(response).await),
        }
    }

    /// Opens an upload session and returns its absolute location.
    async fn start_upload(&self, path: &str, context: &Context) -> Result<String, RegistryError> {
        let scopes = push_scope(path);
        let request =
            Request::new(Method::POST, format!("{}/v2/{path}/blobs/uploads/", self.transport.base_url()), &scopes)
                .header(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let response = self.transport.send(&request, context).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(context.unexpected(response).await);
        }
        upload_location(&response).map(|location| self.absolute(&location)).ok_or_else(|| {
            context.error(ResponseError {
                status: 202,
                code: None,
                message: "the upload session has no Location".to_owned(),
            })
        })
    }

    /// Uploads a blob held in memory: one session, one `PUT`, retried whole.
    async fn upload_bytes(
        &self,
        path: &str,
        digest: &Digest,
        bytes: Bytes,
        context: &Context,
    ) -> Result<(), RegistryError> {
        let scopes = push_scope(path);
        retry_whole(self.transport.retry_policy(), || {
            let bytes = bytes.clone();
            let scopes = &scopes;
            async move {
                let location = self.start_upload(path, context).await?;
                let request = Request::new(Method::PUT, with_digest(&location, digest), scopes)
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))
                    .body(bytes);
                // The session is single-use, so no request-level retry: a failure starts over.
                let response = self.transport.send(&request, context).await?;
                if response.status() != StatusCode::CREATED {
                    return Err(context.unexpected(response).await);
                }
                Ok(())
            }
        })
        .await
    }

    /// Follows a redirect of a plain-HTTP registry, whose own client neither follows redirects
    /// nor trusts any certificate, to where the blob is stored (often HTTPS object storage).
    /// Credentials stay behind: they belong to the registry, not to the storage.
    async fn follow_redirect(&self, mut response: Response, context: &Context) -> Result<Response, RegistryError> {
        let client = shared_client(Scheme::Https).map_err(|error| context.error(error))?;
        for _ in 0..MAX_REDIRECTS {
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let Some(location) = upload_location(&response) else {
                return Ok(response);
            };
            let target = response.url().join(&location).map_err(|error| {
                context.error(ResponseError {
                    status: response.status().as_u16(),
                    code: None,
                    message: format!("the redirect to {location:?} is not a usable URL: {error}"),
                })
            })?;
            response = client.get(target).send().await.map_err(|error| context.error(error))?;
        }
        Ok(response)
    }

    /// Cancels an upload session that will not be used, so that it does not linger until
    /// the registry purges it. Failures do not matter.
    async fn cancel_upload(&self, path: &str, location: &str, context: &Context) {
        let scopes = push_scope(path);
        let request = Request::new(Method::DELETE, location.to_owned(), &scopes);
        let _ = self.transport.send(&request, context).await;
    }
}

#[async_trait::async_trait]
impl Registry for DistributionRegistry {
    async fn resolve(&self, repository: &str, tag: &str) -> Result<Option<Digest>, RegistryError> {
        let path = self.path(repository)?;
        validate_tag(tag)?;
        let context = Context::new("resolve", self.reference(repository, tag));
        let Some(response) = self.head_manifest(&path, tag, &context).await? else {
            return Ok(None);
        };
        if let Some(digest) = response.headers().get(DIGEST_HEADER).and_then(|value| value.to_str().ok()) {
            return Digest::parse(digest.trim()).map(Some);
        }
        // Not every registry sends the digest header; the digest of the bytes is the truth.
        Ok(self.get_manifest(&path, tag, &context).await?.map(|fetched| Digest::of(&fetched.body)))
    }

    async fn tag(&self, repository: &str, digest: &Digest, tag: &str) -> Result<TagOutcome, RegistryError> {
        self.path(repository)?;
        validate_tag(tag)?;
        // Checking first keeps a repeated promotion from writing anything at all.
        let previous = self.resolve(repository, tag).await?;
        if previous.as_ref() == Some(digest) {
            return Ok(TagOutcome::AlreadyPresent);
        }
        if let Some(current) = &previous
            && self.immutable_tags.applies_to(repository)
        {
            return Err(RegistryError::TagImmutable {
                reference: self.reference(repository, tag),
                current: current.clone(),
                requested: digest.clone(),
            });
        }
        let manifest = self.fetch_manifest(repository, digest).await?;
        self.put_manifest(repository, &manifest, Some(tag)).await?;
        Ok(match previous {
            None => TagOutcome::Created,
            Some(from) => TagOutcome::Moved { from },
        })
    }

    async fn push_image(&self, repository: &str, tag: &str, image: &Image) -> Result<Digest, RegistryError> {
        let path = self.path(repository)?;
        validate_tag(tag)?;
        let name = self.reference(repository, tag);
        let blobs = image.checked_blobs(&name)?;
        let digest = image.digest();
        if self.immutable_tags.applies_to(repository)
            && let Some(current) = self.resolve(repository, tag).await?
            && current != digest
        {
            return Err(RegistryError::TagImmutable { reference: name, current, requested: digest });
        }

        let mut sent: Vec<&Digest> = Vec::new();
        for (blob_digest, bytes) in &blobs {
            if sent.contains(&blob_digest) {
                continue;
            }
            if !self.blob_exists(repository, blob_digest).await? {
                let context = Context::new("upload blob to", self.reference(repository, blob_digest.as_str()));
                self.upload_bytes(&path, blob_digest, Bytes::copy_from_slice(bytes), &context).await?;
            }
            sent.push(blob_digest);
        }
        let manifest = Manifest { bytes: image.manifest.clone(), media_type: image.manifest_media_type.clone() };
        self.put_manifest(repository, &manifest, Some(tag)).await?;
        Ok(digest)
    }

    async fn list_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }

        let path = self.path(repository)?;
        let name = self.reference(repository, "");
        let context = Context::new("list tags of", name.clone());
        let scopes = pull_scope(&path);
        let mut tags: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let mut url = format!("{}/v2/{path}/tags/list?n={TAGS_PAGE_SIZE}", self.transport.base_url());
            if let Some(last) = &last {
                url.push_str("&last=");
                url.push_str(last);
            }
            let request = Request::new(Method::GET, url, &scopes);
            let response = self.transport.send(&request, &context).await?;
            match response.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => {
                    return Err(RegistryError::NotFound { reference: name });
                }
                _ => return Err(context.unexpected(response).await),
            }
            let body = response.bytes().await.map_err(|error| context.error(error))?;
            let page: TagList = serde_json::from_slice(&body).map_err(|error| {
                context.error(ResponseError {
                    status: 200,
                    code: None,
                    message: format!("the tag list is not valid JSON: {error}"),
                })
            })?;
            let before = tags.len();
            tags.extend(
                page.tags
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|tag| Some(tag) != last.as_ref() && validate_tag(tag).is_ok()),
            );
            tags.sort();
            tags.dedup();
            // Stop on an empty page, and also when a registry ignores `last` and sends the
            // same page again, which would otherwise loop forever.
            if tags.len() == before {
                break;
            }
            last = tags.last().cloned();
        }
        Ok(tags)
    }

    fn reference(&self, repository: &str, tag_or_digest: &str) -> String {
        join_reference(format!("{}/{}", self.host, self.repository_path(repository)), tag_or_digest)
    }

    fn identity(&self) -> String {
        self.transport.base_url().to_owned()
    }

    fn repository_path(&self, repository: &str) -> String {
        match &self.namespace {
            Some(namespace) => format!("{namespace}/{repository}"),
            None => repository.to_owned(),
        }
    }

    fn immutable_tags(&self, repository: &str) -> bool {
        self.immutable_tags.applies_to(repository)
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.transport.retry_policy().clone()
    }

    async fn fetch_manifest(&self, repository: &str, digest: &Digest) -> Result<Manifest, RegistryError> {
        let path = self.path(repository)?;
        let name = self.reference(repository, digest.as_str());
        let context = Context::new("pull manifest", name.clone());
        let Some(fetched) = self.get_manifest(&path, digest.as_str(), &context).await? else {
            return Err(RegistryError::NotFound { reference: name });
        };
        // Hashing ties the bytes to the digest that was asked for, whatever the registry sent.
        let actual = Digest::of(&fetched.body);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch { expected: digest.to_string(), actual: actual.to_string() });
        }
        fetched.into_manifest(name)
    }

    async fn fetch_tagged(&self, repository: &str, tag: &str) -> Result<Option<Manifest>, RegistryError> {
        let path = self.path(repository)?;
        validate_tag(tag)?;
        let name = self.reference(repository, tag);
        let context = Context::new("pull manifest", name.clone());
        let Some(fetched) = self.get_manifest(&path, tag, &context).await? else {
            return Ok(None);
        };
        // The digest is the hash of the bytes; a registry that names another one is not trusted.
        let actual = Digest::of(&fetched.body);
        if let Some(announced) = &fetched.digest
            && announced != actual.as_str()
        {
            return Err(RegistryError::DigestMismatch { expected: announced.clone(), actual: actual.to_string() });
        }
        fetched.into_manifest(name).map(Some)
    }

    async fn manifest_exists(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let path = self.path(repository)?;
        let context = Context::new("look up", self.reference(repository, digest.as_str()));
        Ok(self.head_manifest(&path, digest.as_str(), &context).await?.is_some())
    }

    async fn put_manifest(
        &self,
        repository: &str,
        manifest: &Manifest,
        tag: Option<&str>,
    ) -> Result<(), RegistryError> {
        let path = self.path(repository)?;
        let digest = manifest.digest();
        let reference = match tag {
            Some(tag) => {
                validate_tag(tag)?;
                tag.to_owned()
            }
            None => digest.to_string(),
        };
        let context = Context::new("push manifest", self.reference(repository, &reference));
        let content_type = HeaderValue::from_str(&manifest.media_type).map_err(|_| RegistryError::InvalidManifest {
            reference: context.reference.clone(),
            reason: format!("media type {:?} cannot be sent as a Content-Type", manifest.media_type),
        })?;
        let scopes = push_scope(&path);
        let request = Request::new(Method::PUT, self.url(&path, "manifests", &reference), &scopes)
            .header(CONTENT_TYPE, content_type)
            .body(Bytes::copy_from_slice(&manifest.bytes));
        let response = self.transport.send(&request, &context).await?;
        if !response.status().is_success() {
            return Err(context.unexpected(response).await);
        }
        // A registry that stored something else (re-serialised the manifest) would break the
        // promise that the digest never changes.
        if let Some(stored) = response.headers().get(DIGEST_HEADER).and_then(|value| value.to_str().ok())
            && stored.trim() != digest.as_str()
        {
            return Err(RegistryError::DigestMismatch {
                expected: digest.to_string(),
                actual: stored.trim().to_owned(),
            });
        }
        Ok(())
    }

    async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let path = self.path(repository)?;
        let context = Context::new("check blob", self.reference(repository, digest.as_str()));
        let scopes = pull_scope(&path);
        let request = Request::new(Method::HEAD, self.url(&path, "blobs", digest.as_str()), &scopes);
        let response = self.transport.send(&request, &context).await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            // Served from elsewhere (object storage), so it is there.
            status if status.is_redirection() => Ok(true),
            _ => Err(context.unexpected(response).await),
        }
    }

    async fn read_blob(&self, repository: &str, digest: &Digest) -> Result<Blob, RegistryError> {
        let path = self.path(repository)?;
        let name = self.reference(repository, digest.as_str());
        let context = Context::new("download blob", name.clone());
        let scopes = pull_scope(&path);
        let request = Request::new(Method::GET, self.url(&path, "blobs", digest.as_str()), &scopes);
        let mut response = self.transport.send(&request, &context).await?;
        if response.status().is_redirection() {
            response = self.follow_redirect(response, &context).await?;
        }
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(RegistryError::NotFound { reference: name }),
            _ => return Err(context.unexpected(response).await),
        }
        let size = response.content_length();
        let stream_context = context.clone();
        let stream: BlobStream = Box::pin(response.bytes_stream().map_err(move |error| stream_context.error(error)));
        Ok(Blob { size, stream })
    }

    async fn write_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        blob: BlobStream,
    ) -> Result<(), RegistryError> {
        let path = self.path(repository)?;
        let context = Context::new("upload blob to", self.reference(repository, digest.as_str()));
        let location = self.start_upload(&path, &context).await?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        let scopes = push_scope(&path);
        // The HTTP client only sees that the body failed; the stream's own error (a digest
        // mismatch, the source going away) is kept aside because it says what happened.
        let failure: Arc<Mutex<Option<RegistryError>>> = Arc::default();
        let slot = Arc::clone(&failure);
        let body = blob.map_err(move |error| {
            let message = error.to_string();
            *slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error);
            std::io::Error::other(message)
        });
        // One monolithic PUT: the registry checks the digest before it commits the blob, and
        // a stream that fails aborts the request before its last bytes are sent.
        let response = self
            .transport
            .send_stream(
                Method::PUT,
                &with_digest(&location, digest),
                headers,
                reqwest::Body::wrap_stream(body),
                &scopes,
                &context,
            )
            .await;
        let stream_error = failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let error = match response {
            Ok(response) if response.status() == StatusCode::CREATED && stream_error.is_none() => {
                return Ok(());
            }
            Ok(response) => context.unexpected(response).await,
            Err(error) => error,
        };
        self.cancel_upload(&path, &location, &context).await;
        Err(stream_error.unwrap_or(error))
    }

    async fn mount_blob(&self, repository: &str, from: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let path = self.path(repository)?;
        validate_repository(from)?;
        let context = Context::new("mount blob into", self.reference(repository, digest.as_str()));
        // The token must allow reading the source as well as writing the destination.
        let mut scopes = push_scope(&path);
        scopes.push(format!("repository:{from}:pull"));
        let request = Request::new(
            Method::POST,
            format!(
                "{}/v2/{path}/blobs/uploads/?mount={}&from={from}",
                self.transport.base_url(),
                encode_digest(digest)
            ),
            &scopes,
        )
        .header(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let response = self.transport.send(&request, &context).await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            // The registry declined and opened an ordinary upload session instead.
            StatusCode::ACCEPTED => {
                if let Some(location) = upload_location(&response) {
                    self.cancel_upload(&path, &self.absolute(&location), &context).await;
                }
                Ok(false)
            }
            status if status.is_client_error() && status != StatusCode::UNAUTHORIZED => {
                // Some registries refuse mounts outright (no access to the source, feature
                // off); a copy may still work, and fails clearly if it cannot.
                tracing::debug!(
                    status = status.as_u16(),
                    reference = %context.reference,
                    "the registry refused a cross-repository mount"
                );
                Ok(false)
            }
            _ => Err(context.unexpected(response).await),
        }
    }

    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, RegistryError> {
        let path = self.path(repository)?;
        validate_tag(tag)?;
        let context = Context::new("delete tag", self.reference(repository, tag));
        // OCI distribution 1.1 deletes a tag by name; older registries answer 400 (or 405 for a
        // reference that is not a digest) and delete by digest only.
        let response = self.delete(&path, tag, &context).await?;
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => return Ok(true),
            StatusCode::NOT_FOUND => return Ok(false),
            StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED => {}
            _ => return Err(context.unexpected(response).await),
        }
        let declined = ResponseError::read(response).await;
        if declined.code.as_deref() == Some("UNSUPPORTED") && declined.status == 405 {
            // Deletes are off altogether; pointing the tag elsewhere first would leave it at the
            // placeholder for good.
            return Err(deletes_disabled(declined, &context));
        }
        if self.resolve(repository, tag).await?.is_none() {
            return Ok(false);
        }
        // Point the tag at a manifest nothing else names, then delete that manifest: the tag
        // goes with it, and the image it pointed at keeps its other tags.
        let placeholder = self.placeholder_manifest(&path, repository, tag).await?;
        self.put_manifest(repository, &placeholder, Some(tag)).await?;
        if !self.delete_manifest(repository, &placeholder.digest()).await? {
            return Err(context.error(ResponseError {
                status: 404,
                code: None,
                message: format!("the placeholder manifest {} vanished before it was deleted", placeholder.digest()),
            }));
        }
        Ok(true)
    }

    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let path = self.path(repository)?;
        let context = Context::new("delete manifest", self.reference(repository, digest.as_str()));
        let response = self.delete(&path, digest.as_str(), &context).await?;
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            StatusCode::METHOD_NOT_ALLOWED => Err(deletes_disabled(ResponseError::read(response).await, &context)),
            _ => Err(context.unexpected(response).await),
        }
    }
}

impl DistributionRegistry {
    async fn delete(&self, path: &str, reference: &str, context: &Context) -> Result<Response, RegistryError> {
        // Token registries say in their challenge which action a delete needs (`delete`, or
        // `*` for docker-registry 2.x); the transport adds it when it fetches the token.
        let scopes = vec![format!("repository:{path}:delete")];
        let request = Request::new(Method::DELETE, self.url(path, "manifests", reference), &scopes);
        self.transport.send(&request, context).await
    }

    /// A manifest unique to this deletion of `tag`: an empty OCI image whose annotation names
    /// the tag and the moment, so that deleting it by digest can take no other tag along.
    async fn placeholder_manifest(&self, path: &str, repository: &str, tag: &str) -> Result<Manifest, RegistryError> {
        let config = b"{}";
        let config_digest = Digest::of(config);
        if !self.blob_exists(repository, &config_digest).await? {
            let context = Context::new("upload blob to", self.reference(repository, config_digest.as_str()));
            self.upload_bytes(path, &config_digest, Bytes::from_static(config), &context).await?;
        }
        let nonce = format!(
            "{}:{} {}",
            repository,
            tag,
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        );
        let bytes = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": OCI_EMPTY_MEDIA_TYPE, "digest": config_digest, "size": config.len()},
            "layers": [],
            "annotations": {"dev.gantry.deleted-tag": nonce},
        })
        .to_string()
        .into_bytes();
        Ok(Manifest { bytes, media_type: OCI_MANIFEST_MEDIA_TYPE.to_owned() })
    }
}

/// The error of a registry that refuses every delete.
fn deletes_disabled(answer: ResponseError, context: &Context) -> RegistryError {
    let hint = "the registry does not allow deletes (docker-registry: `storage.delete.enabled: true`)";
    let message = if answer.message.is_empty() { hint.to_owned() } else { format!("{}; {hint}", answer.message) };
    ResponseError { message, ..answer }.into_error(context.action, context.reference.clone())
}

/// A manifest as a registry served it.
struct Fetched {
    content_type: Option<String>,
    digest: Option<String>,
    body: Bytes,
}

impl Fetched {
    /// The manifest with the media type it was served with, or the one its body declares when
    /// the registry sent something generic.
    fn into_manifest(self, reference: String) -> Result<Manifest, RegistryError> {
        let declared = self.content_type.filter(|value| MANIFEST_MEDIA_TYPES.contains(&value.as_str()));
        let parsed = parse_manifest(&self.body, declared.as_deref())
            .map_err(|reason| RegistryError::InvalidManifest { reference, reason })?;
        Ok(Manifest { bytes: self.body.to_vec(), media_type: parsed.media_type })
    }
}

/// The HTTP client every distribution registry of the process reached with `scheme` uses.
///
/// One client per scheme means one connection pool (a promotion between two repositories of a
/// registry reuses connections) and loading the system's trusted roots at most once. The
/// plain-HTTP client loads no roots at all, which is most of the start-up cost of a short
/// command such as a retag on a local registry; it follows no redirects either, so that a
/// redirect to HTTPS storage goes through the HTTPS client ([`DistributionRegistry::follow_redirect`]).
fn shared_client(scheme: Scheme) -> Result<reqwest::Client, reqwest::Error> {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    static HTTPS: OnceLock<reqwest::Client> = OnceLock::new();
    let cell = match scheme {
        Scheme::Http => &HTTP,
        Scheme::Https => &HTTPS,
    };
    if let Some(client) = cell.get() {
        return Ok(client.clone());
    }
    let builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")));
    let client = match scheme {
        Scheme::Http => builder.tls_certs_only(std::iter::empty()).redirect(reqwest::redirect::Policy::none()),
        Scheme::Https => builder,
    }
    .build()?;
    // Two threads may both build one; either is fine, and the clone shares the pool.
    Ok(cell.get_or_init(|| client).clone())
}

fn pull_scope(path: &str) -> Vec<String> {
    vec![format!("repository:{path}:pull")]
}

fn push_scope(path: &str) -> Vec<String> {
    vec![format!("repository:{path}:pull,push")]
}

fn accept_manifests() -> HeaderValue {
    // The media types are constants made of header-safe characters.
    HeaderValue::from_str(&MANIFEST_MEDIA_TYPES.join(", ")).unwrap_or_else(|_| HeaderValue::from_static("*/*"))
}

fn upload_location(response: &Response) -> Option<String> {
    response.headers().get(LOCATION).and_then(|value| value.to_str().ok()).map(str::to_owned)
}

fn encode_digest(digest: &Digest) -> String {
    digest.as_str().replace(':', "%3A")
}

/// Appends the `digest` query parameter that completes an upload.
fn with_digest(location: &str, digest: &Digest) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={}", encode_digest(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_include_host_and_namespace() {
        let registry =
            DistributionRegistry::new("127.0.0.1:5000", Scheme::Http, Some("team".into()), RegistryAuth::Anonymous)
                .unwrap();
        assert_eq!(registry.reference("app", "dev"), "127.0.0.1:5000/team/app:dev");
        assert_eq!(registry.repository_path("app"), "team/app");
        assert_eq!(registry.identity(), "http://127.0.0.1:5000");
    }

    #[test]
    fn upload_locations_get_the_digest_appended() {
        let digest = Digest::of(b"x");
        let encoded = digest.as_str().replace(':', "%3A");
        assert_eq!(
            with_digest("http://h/v2/app/blobs/uploads/1", &digest),
            format!("http://h/v2/app/blobs/uploads/1?digest={encoded}")
        );
        assert_eq!(
            with_digest("http://h/v2/app/blobs/uploads/1?_state=abc", &digest),
            format!("http://h/v2/app/blobs/uploads/1?_state=abc&digest={encoded}")
        );
    }

    #[test]
    fn relative_locations_become_absolute() {
        let registry =
            DistributionRegistry::new("127.0.0.1:5000", Scheme::Http, None, RegistryAuth::Anonymous).unwrap();
        assert_eq!(registry.absolute("/v2/app/blobs/uploads/1"), "http://127.0.0.1:5000/v2/app/blobs/uploads/1");
        assert_eq!(registry.absolute("https://storage.example.com/upload/1"), "https://storage.example.com/upload/1");
    }
}
