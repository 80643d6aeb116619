//! Amazon ECR through its own API: a retag is `BatchGetImage` (the manifest by digest) then
//! `PutImage` (the same manifest under the new tag), so no blob moves and the digest stays.
//!
//! The registry URL names the account and region the way image references do, with `ecr://`
//! in front so that gantry knows to use the AWS API rather than the distribution endpoint:
//!
//! ```text
//! ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com
//! ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com?endpoint=http://127.0.0.1:5000
//! ```
//!
//! `endpoint` points the API client somewhere else, such as a local emulator; plain HTTP is
//! allowed there under the same rule as for registries (loopback, or an insecure host).
//! Credentials come from the AWS default chain (environment, profile, instance role), or from
//! [`RegistryAuth::Basic`] as access key id and secret access key.
//!
//! Tags: ECR answers `ImageAlreadyExistsException` when the tag already points at the very
//! same manifest, which is success, and `ImageTagAlreadyExistsException` when a repository
//! with immutable tags already has the tag elsewhere, which is [`RegistryError::TagImmutable`].
//!
//! Blobs are out of reach of this API (ECR takes layers only through its multi-call layer
//! upload), so pushing whole images, copying blobs in and mounting between repositories are
//! reported as [`RegistryError::Unsupported`].

use std::fmt;

use aws_sdk_ecr::Client;
use aws_sdk_ecr::config::Credentials;
use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::types::{ImageIdentifier, LayerAvailability, ListImagesFilter, TagStatus};
use tokio::sync::OnceCell;

use super::{
    Blob, BlobStream, Digest, Image, ImmutableTags, MANIFEST_MEDIA_TYPES, Manifest, Registry, RegistryAuth,
    RegistryError, RegistryOptions, TagOutcome, is_loopback_host, join_reference, validate_repository, validate_tag,
};

/// Why blob transfers are not done through ECR's API.
const NO_BLOBS: &str = "ECR's API takes blobs only through its layer-upload calls, which gantry \
                        does not drive; push the image with docker or copy it through the \
                        registry's distribution endpoint";

/// A repository host of Amazon ECR, reached through the AWS API.
pub struct EcrRegistry {
    account: String,
    region: String,
    host: String,
    endpoint: Option<String>,
    credentials: Option<(String, String)>,
    immutable_tags: ImmutableTags,
    client: OnceCell<Client>,
}

impl fmt::Debug for EcrRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrRegistry")
            .field("host", &self.host)
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials.as_ref().map(|(key_id, _)| key_id))
            .field("immutable_tags", &self.immutable_tags)
            .finish_non_exhaustive()
    }
}

impl EcrRegistry {
    /// Parses `ecr://<account>.dkr.ecr.<region>.amazonaws.com[?endpoint=<url>]` (see the module
    /// documentation). The AWS client is created on first use.
    pub fn from_url(url: &str, options: &RegistryOptions) -> Result<Self, RegistryError> {
        let invalid = |reason: String| RegistryError::InvalidUrl { url: url.to_owned(), reason };
        let rest = url
            .trim()
            .strip_prefix("ecr://")
            .ok_or_else(|| invalid("an ECR registry URL starts with ecr://".to_owned()))?;
        let (host, query) = match rest.split_once('?') {
            Some((host, query)) => (host, Some(query)),
            None => (rest, None),
        };
        let host = host.trim_end_matches('/');
        let (account, region) = parse_host(host).map_err(|reason| invalid(reason.to_owned()))?;

        let mut endpoint = None;
        for pair in query.into_iter().flat_map(|query| query.split('&')) {
            match pair.split_once('=') {
                Some(("endpoint", value)) if !value.is_empty() => {
                    endpoint = Some(check_endpoint(value, options).map_err(invalid)?);
                }
                _ => {
                    return Err(invalid(format!(
                        "unknown query parameter {pair:?}; only `endpoint=<url>` is understood"
                    )));
                }
            }
        }
        let credentials = match &options.auth {
            RegistryAuth::Anonymous => None,
            RegistryAuth::Basic { username, password } => Some((username.clone(), password.clone())),
        };
        Ok(Self {
            account: account.to_owned(),
            region: region.to_owned(),
            host: host.to_owned(),
            endpoint,
            credentials,
            immutable_tags: options.immutable_tags.clone(),
            client: OnceCell::new(),
        })
    }

    /// The AWS account id (the ECR registry id).
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The AWS region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The API endpoint override, if any.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The AWS client, configured on first use from the region, the endpoint override and
    /// the credentials (or the default chain).
    pub async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.region.clone()));
                if let Some((key_id, secret)) = &self.credentials {
                    loader = loader.credentials_provider(Credentials::new(key_id, secret, None, None, "gantry"));
                }
                if let Some(endpoint) = &self.endpoint {
                    loader = loader.endpoint_url(endpoint);
                }
                Client::new(&loader.load().await)
            })
            .await
    }

    /// Looks up images by tag and digest in one call: `(found, missing)`.
    async fn batch_get(
        &self,
        repository: &str,
        ids: Vec<ImageIdentifier>,
        action: &'static str,
        reference: &str,
    ) -> Result<Option<Vec<aws_sdk_ecr::types::Image>>, RegistryError> {
        let mut request = self.client().await.batch_get_image().registry_id(&self.account).repository_name(repository);
        for id in ids {
            request = request.image_ids(id);
        }
        for media_type in MANIFEST_MEDIA_TYPES {
            request = request.accepted_media_types(media_type);
        }
        match request.send().await {
            Ok(output) => Ok(Some(output.images().to_vec())),
            Err(error) if error.code() == Some("RepositoryNotFoundException") => Ok(None),
            Err(error) => Err(sdk_error(action, reference.to_owned(), error)),
        }
    }

    /// Writes `manifest` under `tag` (or untagged) with `PutImage`.
    ///
    /// Returns true when it was written and false when the tag already pointed at this very
    /// manifest. A tag held elsewhere in a repository with immutable tags is
    /// [`RegistryError::TagImmutable`].
    pub async fn put_tag(
        &self,
        repository: &str,
        manifest: &Manifest,
        tag: Option<&str>,
    ) -> Result<bool, RegistryError> {
        validate_repository(repository)?;
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        let digest = manifest.digest();
        let reference = self.reference(repository, tag.unwrap_or(digest.as_str()));
        let text = std::str::from_utf8(&manifest.bytes).map_err(|_| RegistryError::InvalidManifest {
            reference: reference.clone(),
            reason: "ECR stores manifests as text and this one is not UTF-8".to_owned(),
        })?;
        let mut request = self
            .client()
            .await
            .put_image()
            .registry_id(&self.account)
            .repository_name(repository)
            .image_manifest(text)
            .image_manifest_media_type(&manifest.media_type)
            .image_digest(digest.as_str());
        if let Some(tag) = tag {
            request = request.image_tag(tag);
        }
        let error = match request.send().await {
            Ok(_) => return Ok(true),
            Err(error) => error,
        };
        let conflict = matches!(error.code(), Some("ImageAlreadyExistsException" | "ImageTagAlreadyExistsException"));
        let Some(tag) = tag.filter(|_| conflict) else {
            return Err(sdk_error("push manifest", reference, error));
        };
        // Both answers mean "the tag is taken"; where it points decides success or conflict.
        match self.resolve(repository, tag).await? {
            Some(current) if current == digest => Ok(false),
            Some(current) => Err(RegistryError::TagImmutable { reference, current, requested: digest }),
            None => Err(sdk_error("push manifest", reference, error)),
        }
    }
}

#[async_trait::async_trait]
impl Registry for EcrRegistry {
    async fn resolve(&self, repository: &str, tag: &str) -> Result<Option<Digest>, RegistryError> {
        validate_repository(repository)?;
        validate_tag(tag)?;
        let reference = self.reference(repository, tag);
        let id = ImageIdentifier::builder().image_tag(tag).build();
        let Some(images) = self.batch_get(repository, vec![id], "resolve", &reference).await? else {
            return Ok(None);
        };
        // Asked for one tag, every image returned is that tag's (the `imageTag` an image
        // carries in the answer is not reliable when it has several tags).
        images
            .iter()
            .filter_map(|image| image.image_id())
            .find_map(|id| id.image_digest())
            .map(Digest::parse)
            .transpose()
    }

    async fn tag(&self, repository: &str, digest: &Digest, tag: &str) -> Result<TagOutcome, RegistryError> {
        validate_repository(repository)?;
        validate_tag(tag)?;
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
        if !self.put_tag(repository, &manifest, Some(tag)).await? {
            return Ok(TagOutcome::AlreadyPresent);
        }
        Ok(match previous {
            None => TagOutcome::Created,
            Some(from) => TagOutcome::Moved { from },
        })
    }

    async fn push_image(&self, repository: &str, tag: &str, _image: &Image) -> Result<Digest, RegistryError> {
        Err(RegistryError::Unsupported {
            operation: "push an image to",
            reference: self.reference(repository, tag),
            reason: NO_BLOBS,
        })
    }

    async fn list_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        validate_repository(repository)?;
        let reference = self.reference(repository, "");
        let mut tags = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let mut request = self
                .client()
                .await
                .list_images()
                .registry_id(&self.account)
                .repository_name(repository)
                .filter(ListImagesFilter::builder().tag_status(TagStatus::Tagged).build());
            if let Some(token) = &next_token {
                request = request.next_token(token);
            }
            let output = match request.send().await {
                Ok(output) => output,
                Err(error) if error.code() == Some("RepositoryNotFoundException") => {
                    return Err(RegistryError::NotFound { reference });
                }
                Err(error) => return Err(sdk_error("list tags of", reference, error)),
            };
            tags.extend(output.image_ids().iter().filter_map(|id| id.image_tag()).map(str::to_owned));
            match output.next_token() {
                Some(token) if !token.is_empty() && Some(token) != next_token.as_deref() => {
                    next_token = Some(token.to_owned());
                }
                _ => break,
            }
        }
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    fn reference(&self, repository: &str, tag_or_digest: &str) -> String {
        join_reference(format!("{}/{repository}", self.host), tag_or_digest)
    }

    fn identity(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("ecr://{}?endpoint={endpoint}", self.host),
            None => format!("ecr://{}", self.host),
        }
    }

    fn immutable_tags(&self, repository: &str) -> bool {
        self.immutable_tags.applies_to(repository)
    }

    async fn fetch_manifest(&self, repository: &str, digest: &Digest) -> Result<Manifest, RegistryError> {
        validate_repository(repository)?;
        let reference = self.reference(repository, digest.as_str());
        let id = ImageIdentifier::builder().image_digest(digest.as_str()).build();
        let images = self.batch_get(repository, vec![id], "pull manifest", &reference).await?.unwrap_or_default();
        let image = images
            .iter()
            .find(|image| image.image_id().and_then(|id| id.image_digest()) == Some(digest.as_str()))
            .ok_or_else(|| RegistryError::NotFound { reference: reference.clone() })?;
        to_manifest(image, digest, &reference)
    }

    async fn fetch_tagged(&self, repository: &str, tag: &str) -> Result<Option<Manifest>, RegistryError> {
        validate_repository(repository)?;
        validate_tag(tag)?;
        let reference = self.reference(repository, tag);
        let id = ImageIdentifier::builder().image_tag(tag).build();
        let images = self.batch_get(repository, vec![id], "pull manifest", &reference).await?.unwrap_or_default();
        let Some(image) = images.first() else {
            return Ok(None);
        };
        let digest =
            image.image_id().and_then(|id| id.image_digest()).map(Digest::parse).transpose()?.ok_or_else(|| {
                RegistryError::InvalidManifest {
                    reference: reference.clone(),
                    reason: "ECR returned the image without its digest".to_owned(),
                }
            })?;
        to_manifest(image, &digest, &reference).map(Some)
    }

    async fn manifest_exists(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        match self.fetch_manifest(repository, digest).await {
            Ok(_) => Ok(true),
            Err(RegistryError::NotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn put_manifest(
        &self,
        repository: &str,
        manifest: &Manifest,
        tag: Option<&str>,
    ) -> Result<(), RegistryError> {
        self.put_tag(repository, manifest, tag).await.map(|_| ())
    }

    async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        validate_repository(repository)?;
        let reference = self.reference(repository, digest.as_str());
        let output = self
            .client()
            .await
            .batch_check_layer_availability()
            .registry_id(&self.account)
            .repository_name(repository)
            .layer_digests(digest.as_str())
            .send()
            .await
            .map_err(|error| sdk_error("check blob", reference, error))?;
        Ok(output.layers().iter().any(|layer| {
            layer.layer_digest() == Some(digest.as_str())
                && layer.layer_availability() == Some(&LayerAvailability::Available)
        }))
    }

    async fn read_blob(&self, repository: &str, digest: &Digest) -> Result<Blob, RegistryError> {
        Err(RegistryError::Unsupported {
            operation: "download blob",
            reference: self.reference(repository, digest.as_str()),
            reason: NO_BLOBS,
        })
    }

    async fn write_blob(
        &self,
        repository: &str,
        digest: &Digest,
        _size: u64,
        _blob: BlobStream,
    ) -> Result<(), RegistryError> {
        Err(RegistryError::Unsupported {
            operation: "upload blob to",
            reference: self.reference(repository, digest.as_str()),
            reason: NO_BLOBS,
        })
    }

    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, RegistryError> {
        validate_tag(tag)?;
        // ECR removes only the tag while the image has others, but the image itself along with
        // its last tag (see the trait: the one registry where a tag deletion can take more).
        let id = ImageIdentifier::builder().image_tag(tag).build();
        self.batch_delete(repository, id, "delete tag", &self.reference(repository, tag)).await
    }

    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let id = ImageIdentifier::builder().image_digest(digest.as_str()).build();
        self.batch_delete(repository, id, "delete manifest", &self.reference(repository, digest.as_str())).await
    }
}

impl EcrRegistry {
    /// `BatchDeleteImage` of one image id: true when ECR deleted it, false when it was not there.
    async fn batch_delete(
        &self,
        repository: &str,
        id: ImageIdentifier,
        action: &'static str,
        reference: &str,
    ) -> Result<bool, RegistryError> {
        validate_repository(repository)?;
        let output = match self
            .client()
            .await
            .batch_delete_image()
            .registry_id(&self.account)
            .repository_name(repository)
            .image_ids(id)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if error.code() == Some("RepositoryNotFoundException") => return Ok(false),
            Err(error) => return Err(sdk_error(action, reference.to_owned(), error)),
        };
        if !output.image_ids().is_empty() {
            return Ok(true);
        }
        match output.failures().first() {
            None => Ok(false),
            Some(failure)
                if matches!(
                    failure.failure_code(),
                    Some(
                        aws_sdk_ecr::types::ImageFailureCode::ImageNotFound
                            | aws_sdk_ecr::types::ImageFailureCode::ImageTagDoesNotMatchDigest
                    )
                ) =>
            {
                Ok(false)
            }
            Some(failure) => Err(RegistryError::Distribution {
                action,
                reference: reference.to_owned(),
                status: None,
                source: format!(
                    "ECR refused: {} {}",
                    failure.failure_code().map(|code| code.as_str()).unwrap_or("unknown failure"),
                    failure.failure_reason().unwrap_or_default()
                )
                .into(),
            }),
        }
    }
}

/// Splits `<account>.dkr.ecr.<region>.amazonaws.com` (or `.amazonaws.com.cn`).
fn parse_host(host: &str) -> Result<(&str, &str), &'static str> {
    const SHAPE: &str = "expected ecr://<12-digit account>.dkr.ecr.<region>.amazonaws.com";
    let without_suffix =
        host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn")).ok_or(SHAPE)?;
    let (account, region) = without_suffix.split_once(".dkr.ecr.").ok_or(SHAPE)?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the account id must be 12 digits");
    }
    let region_ok = !region.is_empty()
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if !region_ok {
        return Err("the region must look like `eu-west-1`");
    }
    Ok((account, region))
}

/// Checks an endpoint override: an http(s) URL, plain HTTP only where registries may use it.
fn check_endpoint(value: &str, options: &RegistryOptions) -> Result<String, String> {
    let parsed = reqwest::Url::parse(value).map_err(|error| format!("the endpoint {value:?} is not a URL: {error}"))?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => return Err(format!("the endpoint {value:?} has no host")),
    };
    match parsed.scheme() {
        "https" => Ok(value.to_owned()),
        "http" if is_loopback_host(&host) || options.is_insecure(&host) => Ok(value.to_owned()),
        "http" => Err(format!(
            "plain HTTP endpoints are only used on loopback; list {host} as an insecure registry to allow it"
        )),
        other => Err(format!("the endpoint scheme {other:?} is not http or https")),
    }
}

/// The manifest of an ECR image, checked against the digest it was fetched by.
fn to_manifest(image: &aws_sdk_ecr::types::Image, digest: &Digest, reference: &str) -> Result<Manifest, RegistryError> {
    let text = image.image_manifest().ok_or_else(|| RegistryError::InvalidManifest {
        reference: reference.to_owned(),
        reason: "ECR returned the image without its manifest".to_owned(),
    })?;
    let bytes = text.as_bytes().to_vec();
    let actual = Digest::of(&bytes);
    if &actual != digest {
        return Err(RegistryError::DigestMismatch { expected: digest.to_string(), actual: actual.to_string() });
    }
    let declared = image.image_manifest_media_type().filter(|media_type| MANIFEST_MEDIA_TYPES.contains(media_type));
    let parsed = super::image::parse_manifest(&bytes, declared)
        .map_err(|reason| RegistryError::InvalidManifest { reference: reference.to_owned(), reason })?;
    Ok(Manifest { bytes, media_type: parsed.media_type })
}

/// An AWS SDK failure as a [`RegistryError`]: the HTTP status when there was an answer, and
/// network failures marked so that [`RegistryError::is_transient`] recognises them.
fn sdk_error<E>(action: &'static str, reference: String, error: SdkError<E, HttpResponse>) -> RegistryError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let throttled = matches!(error.code(), Some("ThrottlingException" | "TooManyRequestsException"));
    let status = if throttled { Some(429) } else { error.raw_response().map(|response| response.status().as_u16()) };
    let source: Box<dyn std::error::Error + Send + Sync> = match &error {
        SdkError::DispatchFailure(_) => Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            aws_sdk_ecr::error::DisplayErrorContext(&error).to_string(),
        )),
        SdkError::TimeoutError(_) => Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            aws_sdk_ecr::error::DisplayErrorContext(&error).to_string(),
        )),
        _ => Box::new(error),
    };
    RegistryError::Distribution { action, reference, status, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_account_region_and_endpoint() {
        let options = RegistryOptions::default();
        let registry = EcrRegistry::from_url("ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com", &options).unwrap();
        assert_eq!(registry.account(), "123456789012");
        assert_eq!(registry.region(), "eu-west-1");
        assert_eq!(registry.endpoint(), None);
        assert_eq!(
            registry.reference("team/app", "prod"),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:prod"
        );

        let emulated = EcrRegistry::from_url(
            "ecr://123456789012.dkr.ecr.us-east-1.amazonaws.com?endpoint=http://127.0.0.1:5000",
            &options,
        )
        .unwrap();
        assert_eq!(emulated.endpoint(), Some("http://127.0.0.1:5000"));
        assert_ne!(emulated.identity(), registry.identity());

        let china = EcrRegistry::from_url("ecr://123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", &options).unwrap();
        assert_eq!(china.region(), "cn-north-1");
    }

    #[test]
    fn bad_urls_are_rejected_with_a_reason() {
        let options = RegistryOptions::default();
        for bad in [
            "ecr://",
            "ecr://eu-west-1",
            "ecr://12345.dkr.ecr.eu-west-1.amazonaws.com",
            "ecr://123456789012.dkr.ecr.EU_WEST.amazonaws.com",
            "ecr://123456789012.dkr.ecr.eu-west-1.example.com",
            "ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com?region=x",
            "ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com?endpoint=ftp://x",
            "ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com?endpoint=http://10.0.0.1:5000",
        ] {
            assert!(
                matches!(EcrRegistry::from_url(bad, &options), Err(RegistryError::InvalidUrl { .. })),
                "{bad:?} must be rejected"
            );
        }
        let insecure = RegistryOptions { insecure_hosts: vec!["10.0.0.1".into()], ..RegistryOptions::default() };
        assert!(
            EcrRegistry::from_url(
                "ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com?endpoint=http://10.0.0.1:5000",
                &insecure,
            )
            .is_ok()
        );
    }
}
