//! Image references as the command line takes them: a registry, a repository, and a tag or a
//! digest (or both, when the digest pins what the tag should be).
//!
//! ```text
//! 127.0.0.1:5000/team/app:dev-v1.2.3           distribution registry (plain HTTP on loopback)
//! registry.example.com/app@sha256:<hex>        distribution registry over HTTPS, by digest
//! http://10.0.0.5:5000/app:v1                  explicit scheme (needs --insecure-registry)
//! oci-layout:/srv/oci/app:prod                 repository `app` of the layout root /srv/oci
//! ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:v1?endpoint=http://127.0.0.1:5000
//! ```
//!
//! A distribution reference must name its registry host: the first path component has to
//! contain a `.` or a `:` or be `localhost`, so that a forgotten host is an error instead of a
//! silent trip to Docker Hub. In an `oci-layout:` reference the last path component is the
//! repository and the directories before it are the layout root.

use std::fmt;

use super::{Digest, RegistryError, validate_repository, validate_tag};

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// The registry as [`super::open_with`] takes it: `127.0.0.1:5000`, `https://host`,
    /// `oci-layout:/srv/oci`, `ecr://…?endpoint=…`.
    pub registry: String,
    /// The repository inside the registry.
    pub repository: String,
    /// The tag, when one was given.
    pub tag: Option<String>,
    /// The digest, when one was given.
    pub digest: Option<Digest>,
}

impl ImageReference {
    /// Parses a reference; see the module documentation for the accepted forms.
    pub fn parse(input: &str) -> Result<Self, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidUrl { url: input.to_owned(), reason: reason.to_owned() };
        let input_trimmed = input.trim();
        if input_trimmed.is_empty() {
            return Err(invalid("the image reference is empty"));
        }

        if let Some(path) = input_trimmed.strip_prefix("oci-layout:") {
            let (location, tag, digest) = split_name(path).map_err(invalid)?;
            let (root, repository) = location
                .rsplit_once('/')
                .ok_or_else(|| invalid("an oci-layout reference is `oci-layout:<root dir>/<repository>[:tag]`"))?;
            if root.is_empty() {
                return Err(invalid("the layout root directory is missing"));
            }
            return Self::checked(format!("oci-layout:{root}"), repository, tag, digest, input);
        }

        if let Some(rest) = input_trimmed.strip_prefix("ecr://") {
            let (name, query) = match rest.split_once('?') {
                Some((name, query)) => (name, Some(query)),
                None => (rest, None),
            };
            let (host, path) =
                name.split_once('/').ok_or_else(|| invalid("an ECR reference needs a repository after the host"))?;
            let (repository, tag, digest) = split_name(path).map_err(invalid)?;
            let registry = match query {
                Some(query) => format!("ecr://{host}?{query}"),
                None => format!("ecr://{host}"),
            };
            return Self::checked(registry, repository, tag, digest, input);
        }

        let (scheme, rest) = if let Some(rest) = input_trimmed.strip_prefix("http://") {
            ("http://", rest)
        } else if let Some(rest) = input_trimmed.strip_prefix("https://") {
            ("https://", rest)
        } else if input_trimmed.contains("://") {
            return Err(invalid("unsupported scheme; use host/repository[:tag], http(s)://, oci-layout: or ecr://"));
        } else {
            ("", input_trimmed)
        };
        let (host, path) =
            rest.split_once('/').ok_or_else(|| invalid("the reference needs a registry host and a repository"))?;
        let names_a_host = host.contains('.') || host.contains(':') || host == "localhost";
        if !names_a_host {
            return Err(invalid(
                "the first component must be a registry host such as `registry.example.com` or \
                 `127.0.0.1:5000`",
            ));
        }
        let (repository, tag, digest) = split_name(path).map_err(invalid)?;
        Self::checked(format!("{scheme}{host}"), repository, tag, digest, input)
    }

    fn checked(
        registry: String,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        input: &str,
    ) -> Result<Self, RegistryError> {
        validate_repository(repository)?;
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        let digest = digest.map(Digest::parse).transpose()?;
        if registry.is_empty() {
            return Err(RegistryError::InvalidUrl {
                url: input.to_owned(),
                reason: "the registry is missing".to_owned(),
            });
        }
        Ok(Self { registry, repository: repository.to_owned(), tag: tag.map(str::to_owned), digest })
    }

    /// The tag or digest part as it would be written after the repository: the digest when
    /// there is one, else the tag, else nothing.
    pub fn tag_or_digest(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.as_str(),
            (None, Some(tag)) => tag,
            (None, None) => "",
        }
    }
}

/// Splits `name[:tag][@digest]`.
fn split_name(path: &str) -> Result<(&str, Option<&str>, Option<&str>), &'static str> {
    let (name, digest) = match path.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (path, None),
    };
    // A tag follows the last `:` after the last `/`; a `:` before that belongs to a path.
    let last_slash = name.rfind('/').map_or(0, |at| at + 1);
    let (name, tag) = match name[last_slash..].rfind(':') {
        Some(at) => (&name[..last_slash + at], Some(&name[last_slash + at + 1..])),
        None => (name, None),
    };
    if name.is_empty() {
        return Err("the repository is missing");
    }
    if tag == Some("") {
        return Err("the tag after `:` is empty");
    }
    Ok((name, tag, digest))
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (registry, query) = match self.registry.split_once('?') {
            Some((registry, query)) if self.registry.starts_with("ecr://") => (registry, Some(query)),
            _ => (self.registry.as_str(), None),
        };
        write!(f, "{registry}/{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        if let Some(query) = query {
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of(b"x")
    }

    fn check(input: &str, registry: &str, repository: &str, tag: Option<&str>, digest: bool) {
        let parsed = ImageReference::parse(input).unwrap();
        assert_eq!(parsed.registry, registry, "{input}");
        assert_eq!(parsed.repository, repository, "{input}");
        assert_eq!(parsed.tag.as_deref(), tag, "{input}");
        assert_eq!(parsed.digest.is_some(), digest, "{input}");
        assert_eq!(parsed.to_string(), input, "round trip of {input}");
    }

    #[test]
    fn distribution_references() {
        let d = digest();
        check("127.0.0.1:5000/app:dev", "127.0.0.1:5000", "app", Some("dev"), false);
        check("registry.example.com/team/app:v1.2.3", "registry.example.com", "team/app", Some("v1.2.3"), false);
        check(&format!("localhost/app@{d}"), "localhost", "app", None, true);
        check(&format!("localhost:5000/app:v1@{d}"), "localhost:5000", "app", Some("v1"), true);
        check("http://10.0.0.5:5000/app:v1", "http://10.0.0.5:5000", "app", Some("v1"), false);
        check("127.0.0.1:5000/app", "127.0.0.1:5000", "app", None, false);
    }

    #[test]
    fn layout_and_ecr_references() {
        check("oci-layout:/srv/oci/app:prod", "oci-layout:/srv/oci", "app", Some("prod"), false);
        check(&format!("oci-layout:relative/dir/app@{}", digest()), "oci-layout:relative/dir", "app", None, true);
        check(
            "ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1",
            "ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "team/app",
            Some("v1"),
            false,
        );
        check(
            "ecr://123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1?endpoint=http://127.0.0.1:5000",
            "ecr://123456789012.dkr.ecr.us-east-1.amazonaws.com?endpoint=http://127.0.0.1:5000",
            "app",
            Some("v1"),
            false,
        );
    }

    #[test]
    fn bad_references_are_rejected() {
        for bad in [
            "",
            "app:v1",
            "library/app:v1",
            "127.0.0.1:5000",
            "127.0.0.1:5000/",
            "127.0.0.1:5000/App:v1",
            "127.0.0.1:5000/app:",
            "127.0.0.1:5000/app:-x",
            "127.0.0.1:5000/app@sha256:nope",
            "ftp://host/app",
            "oci-layout:app:v1",
            "oci-layout:/app:v1",
            "ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        ] {
            assert!(ImageReference::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn the_digest_wins_over_the_tag() {
        let d = digest();
        let parsed = ImageReference::parse(&format!("127.0.0.1:5000/app:v1@{d}")).unwrap();
        assert_eq!(parsed.tag_or_digest(), d.as_str());
        let parsed = ImageReference::parse("127.0.0.1:5000/app:v1").unwrap();
        assert_eq!(parsed.tag_or_digest(), "v1");
    }
}
