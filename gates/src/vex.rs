//! VEX: statements that a product is, or is not, affected by a vulnerability.
//!
//! Statements come from OpenVEX documents and from CycloneDX `analysis` (see
//! [`crate::reports`]). A statement applies to a finding when its vulnerability names the
//! finding's id or an alias, and one of its products identifies the finding's package:
//!
//! - a product (or, when the product lists subcomponents, a subcomponent) that is a package URL
//!   covers the finding's purl — same type, namespace and name, and the same version when the
//!   statement gives one; a finding without a purl is compared by package name and version;
//! - a product that is not a package URL (`product-ABC`) names the package by name;
//! - a product that names the artifact under gate (`pkg:oci/<name>[@<digest>]`, or the
//!   artifact's repository) covers every finding in it; with subcomponents, only those.
//!
//! Among the statements that apply to a finding the latest wins (by timestamp, then document
//! order), as OpenVEX prescribes; it suppresses the finding when its status is
//! `not_affected` or `fixed` (CycloneDX: `not_affected`, `false_positive`, `resolved`,
//! `resolved_with_pedigree`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::finding::Finding;
use crate::purl::Purl;
use crate::reports::{ReportError, ReportFormat, decode, timestamp};

/// Where a statement was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VexFormat {
    /// An OpenVEX document.
    OpenVex,
    /// A CycloneDX vulnerability's `analysis`.
    CycloneDx,
}

/// A statement's status, on OpenVEX's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VexStatus {
    /// Not affected: suppresses.
    NotAffected,
    /// Fixed in this product: suppresses.
    Fixed,
    /// Affected.
    Affected,
    /// Still being looked at.
    UnderInvestigation,
}

impl VexStatus {
    /// Whether the status takes a finding out of the gate.
    pub fn suppresses(self) -> bool {
        matches!(self, VexStatus::NotAffected | VexStatus::Fixed)
    }

    /// OpenVEX status names.
    pub fn from_openvex(status: &str) -> Option<VexStatus> {
        match status {
            "not_affected" => Some(VexStatus::NotAffected),
            "fixed" => Some(VexStatus::Fixed),
            "affected" => Some(VexStatus::Affected),
            "under_investigation" => Some(VexStatus::UnderInvestigation),
            _ => None,
        }
    }

    /// CycloneDX `analysis.state` names.
    pub fn from_cyclonedx(state: &str) -> Option<VexStatus> {
        match state {
            "not_affected" | "false_positive" => Some(VexStatus::NotAffected),
            "resolved" | "resolved_with_pedigree" => Some(VexStatus::Fixed),
            "exploitable" => Some(VexStatus::Affected),
            "in_triage" => Some(VexStatus::UnderInvestigation),
            _ => None,
        }
    }
}

/// A product a statement speaks about, with the subcomponents it narrows the statement to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VexProduct {
    /// Product identifier: a package URL, an OCI image purl, or a plain reference.
    pub id: String,
    /// Subcomponent identifiers (package URLs), if the statement narrows to them.
    pub subcomponents: Vec<String>,
}

/// One VEX statement, kept whole as evidence when it suppresses a finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VexStatement {
    /// Document it came from.
    pub document: String,
    /// Its format.
    pub format: VexFormat,
    /// Index of the statement (or CycloneDX vulnerability) in its document.
    pub position: usize,
    /// Vulnerability id.
    pub vulnerability: String,
    /// Other ids of the vulnerability.
    pub aliases: Vec<String>,
    /// Products it speaks about.
    pub products: Vec<VexProduct>,
    /// Status.
    pub status: VexStatus,
    /// Why not affected, if stated.
    pub justification: Option<String>,
    /// Impact statement or analysis detail, if any.
    pub impact_statement: Option<String>,
    /// When it was made (the statement's own time, else its document's).
    pub timestamp: Option<DateTime<Utc>>,
}

/// The artifact under gate, as far as VEX matching needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Image repository (`acme/checkout`).
    pub repository: String,
    /// Digest (`sha256:…`), if pinned.
    #[serde(default)]
    pub digest: Option<String>,
    /// Tag, if any.
    #[serde(default)]
    pub tag: Option<String>,
}

impl Artifact {
    fn is_named_by(&self, id: &str) -> bool {
        if self.repository.is_empty() {
            return false;
        }
        let last = self.repository.rsplit('/').next().unwrap_or(&self.repository);
        match Purl::parse(id) {
            Some(purl) if purl.kind == "oci" => {
                purl.name.eq_ignore_ascii_case(last)
                    && purl.version.as_ref().is_none_or(|version| self.digest.as_deref() == Some(version.as_str()))
            }
            Some(_) => false,
            None => id == self.repository || id == last,
        }
    }
}

/// Statements indexed by vulnerability id, ready to match findings.
#[derive(Debug, Clone, Default)]
pub struct VexSet {
    statements: Vec<VexStatement>,
    by_id: HashMap<String, Vec<usize>>,
}

impl VexSet {
    /// Indexes `statements`.
    pub fn new(statements: Vec<VexStatement>) -> Self {
        let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, statement) in statements.iter().enumerate() {
            for id in std::iter::once(&statement.vulnerability).chain(&statement.aliases) {
                let entry = by_id.entry(id.to_ascii_uppercase()).or_default();
                if !entry.contains(&index) {
                    entry.push(index);
                }
            }
        }
        Self { statements, by_id }
    }

    /// How many statements it holds.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// The statement that decides `finding`'s status, if any applies: the latest of those
    /// that apply. `artifact` is the artifact under gate, when known.
    pub fn decide(&self, finding: &Finding, artifact: Option<&Artifact>) -> Option<&VexStatement> {
        if self.by_id.is_empty() {
            return None;
        }
        let mut candidates: Vec<usize> =
            finding.ids().filter_map(|id| self.by_id.get(&id.to_ascii_uppercase())).flatten().copied().collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .filter(|&index| applies(&self.statements[index], finding, artifact))
            // Latest by time; a statement without a time counts as older than any with one,
            // and document order breaks ties (later statements override earlier ones).
            .max_by_key(|&index| (self.statements[index].timestamp, index))
            .map(|index| &self.statements[index])
    }
}

fn applies(statement: &VexStatement, finding: &Finding, artifact: Option<&Artifact>) -> bool {
    if statement.products.is_empty() {
        // A statement about no product in particular speaks about every product.
        return true;
    }
    statement.products.iter().any(|product| {
        let names_artifact = artifact.is_some_and(|a| a.is_named_by(&product.id));
        if product.subcomponents.is_empty() {
            return names_artifact || names_package(&product.id, finding);
        }
        // An image product must be the image under gate when that is known; other parents
        // cannot be checked from a flat finding, so their subcomponents decide.
        let parent_ok = match Purl::parse(&product.id) {
            Some(purl) if purl.kind == "oci" => artifact.is_none() || names_artifact,
            _ => true,
        };
        parent_ok && product.subcomponents.iter().any(|sub| names_package(sub, finding))
    })
}

/// Whether the identifier `id` names `finding`'s package.
fn names_package(id: &str, finding: &Finding) -> bool {
    let package = &finding.package;
    match Purl::parse(id) {
        Some(pattern) => {
            if let Some(actual) = package.purl.as_deref().and_then(Purl::parse) {
                return pattern.covers(&actual);
            }
            (pattern.package_name() == package.name || pattern.name == package.name)
                && pattern.version.as_ref().is_none_or(|v| package.version.as_deref() == Some(v.as_str()))
        }
        None => !id.is_empty() && (id == package.name || package.purl.as_deref() == Some(id)),
    }
}

#[derive(Deserialize)]
struct OpenVexDocument {
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    statements: Vec<OpenVexStatement>,
}

#[derive(Deserialize)]
struct OpenVexStatement {
    vulnerability: OpenVexVulnerability,
    #[serde(default)]
    products: Vec<OpenVexProduct>,
    status: String,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    impact_statement: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
}

/// OpenVEX allows a vulnerability to be a bare string (v0.0.x) or an object (v0.2).
#[derive(Deserialize)]
#[serde(untagged)]
enum OpenVexVulnerability {
    Id(String),
    Object {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, rename = "@id")]
        id: Option<String>,
        #[serde(default)]
        aliases: Vec<String>,
    },
}

/// Products are bare identifiers in early OpenVEX and objects in v0.2.
#[derive(Deserialize)]
#[serde(untagged)]
enum OpenVexProduct {
    Id(String),
    Object {
        #[serde(rename = "@id")]
        id: String,
        #[serde(default)]
        subcomponents: Vec<OpenVexComponent>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OpenVexComponent {
    Id(String),
    Object {
        #[serde(rename = "@id")]
        id: String,
    },
}

/// Reads the statements of an OpenVEX document named `name`.
pub fn parse_openvex(name: &str, bytes: &[u8]) -> Result<Vec<VexStatement>, ReportError> {
    let document: OpenVexDocument = decode(name, ReportFormat::OpenVex, bytes)?;
    let document_time = document.timestamp.as_deref().and_then(timestamp);
    let malformed =
        |reason: String| ReportError::Malformed { name: name.to_string(), format: ReportFormat::OpenVex, reason };
    let mut statements = Vec::new();
    for (position, statement) in document.statements.into_iter().enumerate() {
        let (vulnerability, aliases) = match statement.vulnerability {
            OpenVexVulnerability::Id(id) => (id, Vec::new()),
            OpenVexVulnerability::Object { name, id, aliases } => {
                let primary = name.or(id).ok_or_else(|| {
                    malformed(format!("at statements[{position}].vulnerability: it has neither name nor @id"))
                })?;
                (primary, aliases)
            }
        };
        let status = VexStatus::from_openvex(&statement.status).ok_or_else(|| {
            malformed(format!(
                "at statements[{position}].status: unknown status {:?} (expected not_affected, affected, fixed or under_investigation)",
                statement.status
            ))
        })?;
        statements.push(VexStatement {
            document: name.to_string(),
            format: VexFormat::OpenVex,
            position,
            vulnerability,
            aliases,
            products: statement
                .products
                .into_iter()
                .map(|product| match product {
                    OpenVexProduct::Id(id) => VexProduct { id, subcomponents: Vec::new() },
                    OpenVexProduct::Object { id, subcomponents } => VexProduct {
                        id,
                        subcomponents: subcomponents
                            .into_iter()
                            .map(|c| match c {
                                OpenVexComponent::Id(id) | OpenVexComponent::Object { id } => id,
                            })
                            .collect(),
                    },
                })
                .collect(),
            status,
            justification: statement.justification,
            impact_statement: statement.impact_statement,
            timestamp: statement.timestamp.as_deref().and_then(timestamp).or(document_time),
        });
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{FixState, Package};

    fn finding(id: &str, name: &str, version: &str, purl: Option<&str>) -> Finding {
        Finding {
            id: id.into(),
            aliases: Vec::new(),
            package: Package {
                name: name.into(),
                version: Some(version.into()),
                purl: purl.map(str::to_string),
                kind: None,
            },
            fixed_versions: Vec::new(),
            fix_state: FixState::Unknown,
            reported_severity: None,
            ratings: Vec::new(),
            vendor: None,
            published: None,
            title: None,
            location: None,
            report: "test".into(),
        }
    }

    fn set(json: &str) -> VexSet {
        VexSet::new(parse_openvex("vex.json", json.as_bytes()).unwrap())
    }

    #[test]
    fn the_latest_statement_wins() {
        let vex = set(r#"{"@context": "https://openvex.dev/ns", "timestamp": "2023-01-16T00:00:00Z",
            "statements": [
              {"vulnerability": {"name": "CVE-1"}, "products": ["pkg:npm/a@1"], "status": "not_affected",
               "timestamp": "2023-01-17T00:00:00Z"},
              {"vulnerability": {"name": "CVE-1"}, "products": ["pkg:npm/a@1"], "status": "affected"}
            ]}"#);
        let found = finding("CVE-1", "a", "1", Some("pkg:npm/a@1"));
        let decided = vex.decide(&found, None).unwrap();
        assert_eq!(decided.status, VexStatus::NotAffected);
        assert_eq!(decided.position, 0);
    }

    #[test]
    fn an_image_product_must_be_the_artifact_under_gate() {
        let vex = set(r#"{"@context": "https://openvex.dev/ns/v0.2.0", "statements": [
              {"vulnerability": {"name": "CVE-2"}, "status": "not_affected",
               "products": [{"@id": "pkg:oci/debian", "subcomponents": [{"@id": "pkg:deb/debian/bash"}]}]}
            ]}"#);
        let bash = finding("CVE-2", "bash", "5.0", Some("pkg:deb/debian/bash@5.0?arch=amd64"));
        let debian = Artifact { repository: "library/debian".into(), ..Artifact::default() };
        let other = Artifact { repository: "acme/app".into(), ..Artifact::default() };
        assert!(vex.decide(&bash, Some(&debian)).is_some());
        assert!(vex.decide(&bash, None).is_some());
        assert!(vex.decide(&bash, Some(&other)).is_none());
        let zsh = finding("CVE-2", "zsh", "5.0", Some("pkg:deb/debian/zsh@5.0"));
        assert!(vex.decide(&zsh, Some(&debian)).is_none());
    }

    #[test]
    fn versions_and_names_must_match() {
        let vex = set(r#"{"@context": "https://openvex.dev/ns", "statements": [
              {"vulnerability": "CVE-3", "products": ["pkg:apk/alpine/openssl@1.1.1k-r0"], "status": "fixed"}
            ]}"#);
        assert!(vex.decide(&finding("CVE-3", "openssl", "1.1.1k-r0", None), None).is_some());
        assert!(vex.decide(&finding("CVE-3", "openssl", "1.1.1j-r0", None), None).is_none());
        assert!(vex.decide(&finding("CVE-4", "openssl", "1.1.1k-r0", None), None).is_none());
    }

    #[test]
    fn bad_statements_are_errors() {
        let error = parse_openvex("vex.json", br#"{"statements": [{"vulnerability": "CVE-1", "status": "maybe"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown status \"maybe\""), "{error}");
    }
}
