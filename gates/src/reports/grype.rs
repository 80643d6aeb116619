//! Grype JSON (`grype -o json`): one finding per match.

use serde::Deserialize;

use super::{ReportError, ReportFormat, decode, prefixed_vector, vector_version};
use crate::finding::{Finding, FixState, Package, Rating, normalize_source};
use crate::severity::Severity;

#[derive(Deserialize)]
struct Report {
    #[serde(default)]
    matches: Vec<Match>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Match {
    vulnerability: Vulnerability,
    #[serde(default)]
    related_vulnerabilities: Vec<Vulnerability>,
    artifact: Artifact,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vulnerability {
    id: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    cvss: Option<Vec<Cvss>>,
    #[serde(default)]
    fix: Option<Fix>,
    #[serde(default)]
    advisories: Option<Vec<Advisory>>,
}

#[derive(Deserialize)]
struct Advisory {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct Cvss {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    vector: Option<String>,
    #[serde(default)]
    metrics: Option<Metrics>,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metrics {
    #[serde(default)]
    base_score: Option<f64>,
}

#[derive(Deserialize)]
struct Fix {
    #[serde(default)]
    versions: Option<Vec<String>>,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Deserialize)]
struct Artifact {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    purl: Option<String>,
    #[serde(default)]
    locations: Option<Vec<Location>>,
}

#[derive(Deserialize)]
struct Location {
    #[serde(default)]
    path: Option<String>,
}

pub(super) fn parse(name: &str, bytes: &[u8]) -> Result<Vec<Finding>, ReportError> {
    let report: Report = decode(name, ReportFormat::Grype, bytes)?;
    Ok(report.matches.into_iter().map(|m| finding(name, m)).collect())
}

/// Adds a vulnerability record's label and CVSS entries to `ratings`.
fn add_ratings(ratings: &mut Vec<Rating>, record: &Vulnerability) {
    let record_source = normalize_source(record.namespace.as_deref().unwrap_or(""));
    if let Some(label) = record.severity.as_deref() {
        ratings.push(Rating::label(record_source.clone(), Severity::from_label(label)));
    }
    for cvss in record.cvss.iter().flatten() {
        let source = cvss.source.as_deref().map(normalize_source).unwrap_or_else(|| record_source.clone());
        let vector = cvss.vector.as_deref().map(|v| prefixed_vector(v, cvss.version.as_deref()));
        let version = cvss.version.clone().or_else(|| vector.as_deref().and_then(vector_version));
        ratings.push(Rating {
            source,
            cvss_version: version,
            vector,
            score: cvss.metrics.as_ref().and_then(|m| m.base_score),
            severity: None,
        });
    }
}

fn finding(report: &str, matched: Match) -> Finding {
    let vulnerability = &matched.vulnerability;
    let mut ratings = Vec::new();
    add_ratings(&mut ratings, vulnerability);
    for related in &matched.related_vulnerabilities {
        add_ratings(&mut ratings, related);
    }
    let mut aliases: Vec<String> = matched
        .related_vulnerabilities
        .iter()
        .map(|r| r.id.clone())
        .chain(vulnerability.advisories.iter().flatten().filter_map(|a| a.id.clone()))
        .filter(|alias| *alias != vulnerability.id)
        .collect();
    let mut seen = std::collections::HashSet::new();
    aliases.retain(|alias| seen.insert(alias.clone()));
    let fixed_versions = vulnerability.fix.as_ref().and_then(|f| f.versions.clone()).unwrap_or_default();
    let fix_state = match vulnerability.fix.as_ref().and_then(|f| f.state.as_deref()) {
        Some("fixed") => FixState::Fixed,
        Some("not-fixed") => FixState::NotFixed,
        Some("wont-fix") => FixState::WontFix,
        _ if !fixed_versions.is_empty() => FixState::Fixed,
        _ => FixState::Unknown,
    };
    let vendor =
        vulnerability.namespace.as_deref().map(normalize_source).filter(|source| source != "nvd" && source != "ghsa");
    let artifact = matched.artifact;
    Finding {
        id: vulnerability.id.clone(),
        aliases,
        package: Package {
            name: artifact.name,
            version: artifact.version,
            purl: artifact.purl.filter(|p| !p.is_empty()),
            kind: artifact.kind,
        },
        fixed_versions,
        fix_state,
        reported_severity: vulnerability.severity.as_deref().map(Severity::from_label),
        ratings,
        vendor,
        published: None,
        title: None,
        location: artifact.locations.into_iter().flatten().find_map(|l| l.path),
        report: report.to_string(),
    }
}
