//! A registry reached over the OCI distribution API: Docker Hub, Harbor, `docker-registry`,
//! or anything else that serves `/v2/`.
//!
//! A retag never re-uploads anything: gantry reads the manifest by digest and writes the very
//! same bytes, with the same media type, under the new tag. The registry stores it under the
//! same digest, and the layers stay where they are because they are already in the repository.

use std::fmt;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth as ClientAuth;
use oci_client::{Client, Reference};
use reqwest::header::HeaderValue;

use super::image::parse_manifest;
use super::{
    Digest, Image, MANIFEST_MEDIA_TYPES, Registry, RegistryAuth, RegistryError, TagOutcome,
    join_reference, validate_repository, validate_tag,
};

/// How long to wait for a TCP (and TLS) connection before calling the registry unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a response may stall before the request is given up as transient.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Tags asked for per page when listing; registries may return fewer.
const TAGS_PAGE_SIZE: usize = 1000;

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
    client: Client,
    host: String,
    namespace: Option<String>,
    auth: ClientAuth,
}

impl fmt::Debug for DistributionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistributionRegistry")
            .field("host", &self.host)
            .field("namespace", &self.namespace)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl DistributionRegistry {
    /// A registry at `host` (`host[:port]`), with every repository name prefixed by
    /// `namespace` when one is given.
    pub fn new(
        host: &str,
        scheme: Scheme,
        namespace: Option<String>,
        auth: RegistryAuth,
    ) -> Result<Self, RegistryError> {
        if let Some(namespace) = &namespace {
            validate_repository(namespace)?;
        }
        let protocol = match scheme {
            Scheme::Http => ClientProtocol::Http,
            Scheme::Https => ClientProtocol::Https,
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: concat!("gantry/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        // `Client::new` would fall back to a default client on error; building explicitly
        // surfaces the problem instead of silently ignoring the configuration.
        let client = Client::try_from(config).map_err(|error| RegistryError::InvalidUrl {
            url: host.to_owned(),
            reason: format!("the HTTP client cannot be built: {error}"),
        })?;
        let auth = match auth {
            RegistryAuth::Anonymous => ClientAuth::Anonymous,
            RegistryAuth::Basic { username, password } => ClientAuth::Basic(username, password),
        };
        Ok(Self {
            client,
            host: host.to_owned(),
            namespace,
            auth,
        })
    }

    /// The repository's full name on the registry, namespace included.
    fn repository_path(&self, repository: &str) -> Result<String, RegistryError> {
        validate_repository(repository)?;
        Ok(match &self.namespace {
            Some(namespace) => format!("{namespace}/{repository}"),
            None => repository.to_owned(),
        })
    }

    fn tag_reference(&self, repository: &str, tag: &str) -> Result<Reference, RegistryError> {
        validate_tag(tag)?;
        Ok(Reference::with_tag(
            self.host.clone(),
            self.repository_path(repository)?,
            tag.to_owned(),
        ))
    }

    fn digest_reference(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Reference, RegistryError> {
        Ok(Reference::with_digest(
            self.host.clone(),
            self.repository_path(repository)?,
            digest.to_string(),
        ))
    }

    /// Makes the credentials known to the client before requests that do not take them as an
    /// argument (blob checks and pushes).
    async fn remember_auth(&self) {
        self.client
            .store_auth_if_needed(&self.host, &self.auth)
            .await;
    }
}

#[async_trait::async_trait]
impl Registry for DistributionRegistry {
    async fn resolve(&self, repository: &str, tag: &str) -> Result<Option<Digest>, RegistryError> {
        let reference = self.tag_reference(repository, tag)?;
        match self
            .client
            .fetch_manifest_digest(&reference, &self.auth)
            .await
        {
            Ok(digest) => Digest::parse(&digest).map(Some),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(request_error(
                "resolve",
                self.reference(repository, tag),
                error,
            )),
        }
    }

    async fn tag(
        &self,
        repository: &str,
        digest: &Digest,
        tag: &str,
    ) -> Result<TagOutcome, RegistryError> {
        let destination = self.tag_reference(repository, tag)?;
        let source = self.digest_reference(repository, digest)?;

        // Checking first keeps a repeated promotion from writing anything at all.
        let previous = self.resolve(repository, tag).await?;
        if previous.as_ref() == Some(digest) {
            return Ok(TagOutcome::AlreadyPresent);
        }

        let source_name = self.reference(repository, digest.as_str());
        let (manifest, _) = self
            .client
            .pull_manifest_raw(&source, &self.auth, &MANIFEST_MEDIA_TYPES)
            .await
            .map_err(|error| {
                if is_not_found(&error) {
                    RegistryError::NotFound {
                        reference: source_name.clone(),
                    }
                } else {
                    request_error("pull manifest", source_name.clone(), error)
                }
            })?;
        // The client checks the digest header; hashing again ties the bytes to the digest
        // gantry asked for, whatever header the registry sent.
        let actual = Digest::of(&manifest);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let parsed =
            parse_manifest(&manifest, None).map_err(|reason| RegistryError::InvalidManifest {
                reference: source_name.clone(),
                reason,
            })?;
        let content_type = header_value(&parsed.media_type, &source_name)?;

        self.remember_auth().await;
        self.client
            .push_manifest_raw(&destination, manifest, content_type)
            .await
            .map_err(|error| {
                request_error("push manifest", self.reference(repository, tag), error)
            })?;

        Ok(match previous {
            None => TagOutcome::Created,
            Some(from) => TagOutcome::Moved { from },
        })
    }

    async fn push_image(
        &self,
        repository: &str,
        tag: &str,
        image: &Image,
    ) -> Result<Digest, RegistryError> {
        let destination = self.tag_reference(repository, tag)?;
        let name = self.reference(repository, tag);
        let blobs = image.checked_blobs(&name)?;
        let content_type = header_value(&image.manifest_media_type, &name)?;

        self.remember_auth().await;
        let mut sent: Vec<&Digest> = Vec::new();
        for (digest, bytes) in &blobs {
            if sent.contains(&digest) {
                continue;
            }
            let blob_name = self.reference(repository, digest.as_str());
            let present = self
                .client
                .blob_exists(&destination, digest.as_str())
                .await
                .map_err(|error| request_error("check blob", blob_name.clone(), error))?;
            if !present {
                self.client
                    .push_blob(&destination, bytes.to_vec(), digest.as_str())
                    .await
                    .map_err(|error| request_error("push blob", blob_name, error))?;
            }
            sent.push(digest);
        }
        self.client
            .push_manifest_raw(&destination, image.manifest.clone(), content_type)
            .await
            .map_err(|error| request_error("push manifest", name, error))?;
        Ok(image.digest())
    }

    async fn list_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        // Any tag will do: the tags endpoint only looks at the repository.
        let reference = self.tag_reference(repository, "latest")?;
        let name = self.reference(repository, "");
        let mut tags: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self
                .client
                .list_tags(
                    &reference,
                    &self.auth,
                    Some(TAGS_PAGE_SIZE),
                    last.as_deref(),
                )
                .await
                .map_err(|error| {
                    if is_not_found(&error) {
                        RegistryError::NotFound {
                            reference: name.clone(),
                        }
                    } else {
                        request_error("list tags of", name.clone(), error)
                    }
                })?;
            let before = tags.len();
            tags.extend(
                page.tags
                    .into_iter()
                    .filter(|tag| Some(tag) != last.as_ref()),
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
        let repository = match &self.namespace {
            Some(namespace) => format!("{namespace}/{repository}"),
            None => repository.to_owned(),
        };
        join_reference(format!("{}/{repository}", self.host), tag_or_digest)
    }
}

fn header_value(media_type: &str, reference: &str) -> Result<HeaderValue, RegistryError> {
    HeaderValue::from_str(media_type).map_err(|_| RegistryError::InvalidManifest {
        reference: reference.to_owned(),
        reason: format!("media type {media_type:?} cannot be sent as a Content-Type"),
    })
}

/// Whether the registry said the repository or manifest does not exist.
fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|error| {
                matches!(
                    error.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            })
        }
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        _ => false,
    }
}

/// The HTTP status behind a client error, when there was one.
fn status_of(error: &OciDistributionError) -> Option<u16> {
    match error {
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        OciDistributionError::RequestError(error) => error.status().map(|status| status.as_u16()),
        // The client keeps only the error body of 4xx answers; the status follows from the
        // OCI error code.
        OciDistributionError::RegistryError { envelope, .. } => {
            let code = envelope.errors.first().map(|error| &error.code);
            Some(match code {
                Some(OciErrorCode::Toomanyrequests) => 429,
                Some(OciErrorCode::Unauthorized) => 401,
                Some(OciErrorCode::Denied) => 403,
                Some(
                    OciErrorCode::NameUnknown
                    | OciErrorCode::ManifestUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound,
                ) => 404,
                _ => 400,
            })
        }
        _ => None,
    }
}

fn request_error(
    action: &'static str,
    reference: String,
    error: OciDistributionError,
) -> RegistryError {
    if let OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) =
        &error
    {
        return RegistryError::DigestMismatch {
            expected: expected.clone(),
            actual: actual.clone(),
        };
    }
    RegistryError::Distribution {
        action,
        reference,
        status: status_of(&error),
        source: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use oci_client::errors::{OciEnvelope, OciError};

    use super::*;

    fn envelope(code: OciErrorCode) -> OciDistributionError {
        OciDistributionError::RegistryError {
            envelope: OciEnvelope {
                errors: vec![OciError {
                    code,
                    message: String::new(),
                    detail: serde_json::Value::Null,
                }],
            },
            url: "http://registry/v2/app/manifests/v1".to_owned(),
        }
    }

    #[test]
    fn registry_answers_map_to_statuses_and_retry_policy() {
        let error = request_error(
            "resolve",
            "r/app:v1".into(),
            envelope(OciErrorCode::Toomanyrequests),
        );
        assert!(matches!(
            error,
            RegistryError::Distribution {
                status: Some(429),
                ..
            }
        ));
        assert!(error.is_transient());

        let error = request_error("resolve", "r/app:v1".into(), envelope(OciErrorCode::Denied));
        assert!(matches!(
            error,
            RegistryError::Distribution {
                status: Some(403),
                ..
            }
        ));
        assert!(!error.is_transient());

        let server = OciDistributionError::ServerError {
            code: 502,
            url: "http://registry/v2/".into(),
            message: "bad gateway".into(),
        };
        assert!(request_error("resolve", "r/app:v1".into(), server).is_transient());
    }

    #[test]
    fn unknown_names_and_manifests_are_not_found() {
        assert!(is_not_found(&envelope(OciErrorCode::ManifestUnknown)));
        assert!(is_not_found(&envelope(OciErrorCode::NameUnknown)));
        assert!(!is_not_found(&envelope(OciErrorCode::Denied)));
    }

    #[test]
    fn digest_verification_failures_become_mismatches() {
        let error = OciDistributionError::DigestError(DigestError::VerificationError {
            expected: "sha256:a".into(),
            actual: "sha256:b".into(),
        });
        assert!(matches!(
            request_error("pull manifest", "r/app@sha256:a".into(), error),
            RegistryError::DigestMismatch { .. }
        ));
    }

    #[test]
    fn references_include_host_and_namespace() {
        let registry = DistributionRegistry::new(
            "127.0.0.1:5000",
            Scheme::Http,
            Some("team".into()),
            RegistryAuth::Anonymous,
        )
        .unwrap();
        assert_eq!(
            registry.reference("app", "dev"),
            "127.0.0.1:5000/team/app:dev"
        );
    }
}
