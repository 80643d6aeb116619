//! Just enough of the package-URL spec (`pkg:type/namespace/name@version?qualifiers#subpath`)
//! to tell whether two identifiers name the same package.

/// A parsed package URL; components are percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purl {
    /// Package type, lowercase (`deb`, `npm`, `maven`, `oci`).
    pub kind: String,
    /// Namespace (`debian`, `org.apache.logging.log4j`, `@types`), if any.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Version, if any.
    pub version: Option<String>,
}

impl Purl {
    /// Parses `text`; `None` when it is not a package URL.
    pub fn parse(text: &str) -> Option<Purl> {
        let rest = text.trim().strip_prefix("pkg:")?;
        let rest = rest.trim_start_matches('/');
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
        let (kind, path) = rest.split_once('/')?;
        // The version starts at the last `@` after the last `/` (npm scopes start with `@`).
        let (path, version) = match path.rsplit_once('/') {
            Some((head, last)) => match last.split_once('@') {
                Some((name, version)) => (format!("{head}/{name}"), Some(version)),
                None => (path.to_string(), None),
            },
            None => match path.split_once('@') {
                Some((name, version)) => (name.to_string(), Some(version)),
                None => (path.to_string(), None),
            },
        };
        let path = path.trim_matches('/');
        let (namespace, name) = match path.rsplit_once('/') {
            Some((namespace, name)) => (Some(decode(namespace)), decode(name)),
            None => (None, decode(path)),
        };
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Purl {
            kind: kind.to_ascii_lowercase(),
            namespace: namespace.filter(|n| !n.is_empty()),
            name,
            version: version.map(decode).filter(|v| !v.is_empty()),
        })
    }

    /// The name alone, without parsing the rest or copying when nothing needs decoding.
    pub fn name_of(text: &str) -> Option<std::borrow::Cow<'_, str>> {
        let rest = text.trim().strip_prefix("pkg:")?;
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches('/');
        let last = path.rsplit('/').next()?;
        if last.len() == path.len() {
            // Only a type: no name.
            return None;
        }
        let name = last.split_once('@').map_or(last, |(name, _)| name);
        if name.is_empty() {
            return None;
        }
        if name.contains('%') {
            return Some(std::borrow::Cow::Owned(decode(name)));
        }
        Some(std::borrow::Cow::Borrowed(name))
    }

    /// The name reports use for the package: Maven `group:artifact`, Go and npm
    /// `namespace/name`, and the bare name for OS packages (whose namespace is the distribution).
    pub fn package_name(&self) -> String {
        match (&self.namespace, self.kind.as_str()) {
            (Some(namespace), "maven") => format!("{namespace}:{}", self.name),
            (Some(namespace), "golang" | "npm" | "composer" | "github" | "swift") => {
                format!("{namespace}/{}", self.name)
            }
            _ => self.name.clone(),
        }
    }

    /// Whether `self` (a pattern, maybe without version) names the package `other`: same type,
    /// namespace and name, and the same version when `self` has one.
    pub fn covers(&self, other: &Purl) -> bool {
        self.kind == other.kind
            && eq_loose(self.namespace.as_deref(), other.namespace.as_deref())
            && self.name.eq_ignore_ascii_case(&other.name)
            && self.version.as_ref().is_none_or(|version| other.version.as_deref() == Some(version.as_str()))
    }
}

fn eq_loose(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (None, None) => true,
        _ => false,
    }
}

/// Percent-decodes; malformed escapes stay as they are.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
            if let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(value);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shapes_reports_use() {
        let purl = Purl::parse("pkg:deb/ubuntu/libstdc%2B%2B6@12.3.0-1ubuntu1~22.04?arch=amd64").unwrap();
        assert_eq!(purl.kind, "deb");
        assert_eq!(purl.namespace.as_deref(), Some("ubuntu"));
        assert_eq!(purl.name, "libstdc++6");
        assert_eq!(purl.version.as_deref(), Some("12.3.0-1ubuntu1~22.04"));
        assert_eq!(purl.package_name(), "libstdc++6");

        let maven = Purl::parse("pkg:maven/org.apache.logging.log4j/log4j-core@2.13.2?x=y").unwrap();
        assert_eq!(maven.package_name(), "org.apache.logging.log4j:log4j-core");

        let go = Purl::parse("pkg:golang/github.com/docker/distribution@v2.7.1%2Bincompatible").unwrap();
        assert_eq!(go.package_name(), "github.com/docker/distribution");
        assert_eq!(go.version.as_deref(), Some("v2.7.1+incompatible"));

        let scoped = Purl::parse("pkg:npm/%40types/node@1.0.0").unwrap();
        assert_eq!(scoped.package_name(), "@types/node");

        let oci = Purl::parse("pkg:oci/debian").unwrap();
        assert_eq!((oci.kind.as_str(), oci.name.as_str(), oci.version), ("oci", "debian", None));

        for text in [
            "pkg:deb/ubuntu/libstdc%2B%2B6@12.3.0?arch=amd64",
            "pkg:npm/%40types/node@1.0.0",
            "pkg:oci/debian",
            "pkg:maven/org.apache.logging.log4j/log4j-core@2.13.2?x=y",
        ] {
            let parsed = Purl::parse(text).unwrap();
            assert_eq!(Purl::name_of(text).as_deref(), Some(parsed.name.as_str()), "{text}");
        }
        assert_eq!(Purl::name_of("pkg:deb"), None);
        assert_eq!(Purl::parse("product-ABC"), None);
        assert_eq!(Purl::parse("pkg:"), None);
        assert_eq!(Purl::parse("pkg:deb/"), None);
        assert_eq!(Purl::parse("pkg:deb/debian/a%2"), Purl::parse("pkg:deb/debian/a%2"));
    }

    #[test]
    fn a_versionless_purl_covers_every_version() {
        let any = Purl::parse("pkg:deb/debian/bash").unwrap();
        let one = Purl::parse("pkg:deb/debian/bash@5.0-4?arch=amd64").unwrap();
        let other = Purl::parse("pkg:deb/debian/bash@5.1").unwrap();
        assert!(any.covers(&one) && any.covers(&other));
        assert!(one.covers(&one) && !one.covers(&other));
        assert!(!Purl::parse("pkg:rpm/debian/bash").unwrap().covers(&one));
    }
}
