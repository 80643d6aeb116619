//! The normalized finding every report format is read into.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::severity::Severity;

/// One vulnerability in one package, as one report entry states it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Vulnerability id (`CVE-2021-44228`, `GHSA-…`), or a rule id for SARIF results.
    pub id: String,
    /// Other ids of the same vulnerability (GHSA for a CVE, vendor advisories).
    pub aliases: Vec<String>,
    /// The affected package.
    pub package: Package,
    /// Versions that fix it, as the report lists them.
    pub fixed_versions: Vec<String>,
    /// Whether a fix exists.
    pub fix_state: FixState,
    /// The report's own overall label, if any (Trivy `Severity`, Grype `severity`, SARIF level).
    pub reported_severity: Option<Severity>,
    /// Ratings by source: each CVSS vector, score or label the report carries.
    pub ratings: Vec<Rating>,
    /// The distribution or ecosystem database that matched the package (Trivy `DataSource`,
    /// Grype namespace), which `vendor` severity selection prefers.
    pub vendor: Option<String>,
    /// When the vulnerability was published, if the report says.
    pub published: Option<DateTime<Utc>>,
    /// Short title.
    pub title: Option<String>,
    /// Where in the artifact it was found (Trivy target, file path, layer).
    pub location: Option<String>,
    /// Which report it came from (the file name given to the parser).
    pub report: String,
}

impl Finding {
    /// The finding's id and every alias.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// A package as reports name it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Package {
    /// Name (`openssl`, `org.apache.logging.log4j:log4j-core`, a file path for SARIF).
    pub name: String,
    /// Installed version, if known.
    pub version: Option<String>,
    /// Package URL, if the report gives one.
    pub purl: Option<String>,
    /// Package type (`deb`, `npm`, `maven`, …), if known.
    pub kind: Option<String>,
}

impl fmt::Display for Package {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}@{version}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Whether a fix exists, as the report states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixState {
    /// A fixed version exists.
    Fixed,
    /// No fix yet (affected, under investigation, deferred).
    NotFixed,
    /// The vendor will not fix it (or the release is end of life).
    WontFix,
    /// The vendor states the package is not affected.
    NotAffected,
    /// The report does not say.
    Unknown,
}

impl FixState {
    /// Name as shown (`not-fixed`).
    pub fn as_str(self) -> &'static str {
        match self {
            FixState::Fixed => "fixed",
            FixState::NotFixed => "not-fixed",
            FixState::WontFix => "wont-fix",
            FixState::NotAffected => "not-affected",
            FixState::Unknown => "unknown",
        }
    }
}

/// One source's rating of a vulnerability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rating {
    /// Normalized source name: `nvd`, `ghsa`, a vendor (`redhat`, `debian`, …), or `report`
    /// when the report does not say whose rating it is.
    pub source: String,
    /// CVSS version as the report states it (`2.0`, `3.0`, `3.1`, `4.0`), if this is a CVSS rating.
    pub cvss_version: Option<String>,
    /// CVSS vector, if any.
    pub vector: Option<String>,
    /// Score the report gives, if any (recomputed from the vector when it can be).
    pub score: Option<f64>,
    /// Qualitative label the source gives, if any.
    pub severity: Option<Severity>,
}

impl Rating {
    /// A label-only rating.
    pub fn label(source: impl Into<String>, severity: Severity) -> Self {
        Rating { source: source.into(), cvss_version: None, vector: None, score: None, severity: Some(severity) }
    }
}

/// Normalizes the many spellings of rating sources: `nvd@nist.gov`, `nvd:cpe` and `NVD` are
/// all `nvd`; `github:language:go`, `security-advisories@github.com` and `GitHub` are `ghsa`;
/// `secalert@redhat.com` and `redhat:distro:redhat:8` are `redhat`.
pub fn normalize_source(source: &str) -> String {
    let lower = source.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return "report".to_string();
    }
    if lower == "nvd" || lower.starts_with("nvd:") || lower.ends_with("@nist.gov") {
        return "nvd".to_string();
    }
    if lower == "ghsa" || lower == "github" || lower.starts_with("github:") || lower.ends_with("@github.com") {
        return "ghsa".to_string();
    }
    if let Some((_, domain)) = lower.split_once('@') {
        return domain.split('.').next().unwrap_or(domain).to_string();
    }
    if let Some((first, _)) = lower.split_once(':') {
        return first.to_string();
    }
    lower
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_normalize() {
        let cases = [
            ("nvd@nist.gov", "nvd"),
            ("nvd:cpe", "nvd"),
            ("NVD", "nvd"),
            ("github:language:go", "ghsa"),
            ("security-advisories@github.com", "ghsa"),
            ("secalert@redhat.com", "redhat"),
            ("redhat:distro:redhat:8", "redhat"),
            ("debian", "debian"),
            ("", "report"),
        ];
        for (given, expected) in cases {
            assert_eq!(normalize_source(given), expected, "{given}");
        }
    }
}
