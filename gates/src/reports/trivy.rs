//! Trivy JSON: schema version 2 (`Results`), the older bare list of results, and `trivy k8s`
//! reports (`ClusterName` with per-resource `Results`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ReportError, ReportFormat, decode, split_versions, timestamp, vector_version};
use crate::finding::{Finding, FixState, Package, Rating, normalize_source};
use crate::purl::Purl;
use crate::severity::Severity;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Report {
    #[serde(default)]
    results: Option<Vec<TrivyResult>>,
    /// `trivy k8s` (older): resources with their results.
    #[serde(default)]
    vulnerabilities: Option<Vec<Resource>>,
    /// `trivy k8s` (newer).
    #[serde(default)]
    resources: Option<Vec<Resource>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Resource {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    results: Option<Vec<TrivyResult>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyResult {
    #[serde(default)]
    target: Option<String>,
    #[serde(default, rename = "Type")]
    kind: Option<String>,
    #[serde(default)]
    vulnerabilities: Option<Vec<Vulnerability>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Vulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: String,
    #[serde(default, rename = "VendorIDs")]
    vendor_ids: Option<Vec<String>>,
    pkg_name: String,
    #[serde(default)]
    pkg_identifier: Option<PkgIdentifier>,
    #[serde(default)]
    installed_version: Option<String>,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    data_source: Option<DataSource>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    vendor_severity: Option<BTreeMap<String, i64>>,
    #[serde(default, rename = "CVSS")]
    cvss: Option<BTreeMap<String, Cvss>>,
    #[serde(default)]
    published_date: Option<String>,
}

#[derive(Deserialize)]
struct PkgIdentifier {
    #[serde(default, rename = "PURL")]
    purl: Option<String>,
}

#[derive(Deserialize)]
struct DataSource {
    #[serde(default, rename = "ID")]
    id: Option<String>,
}

#[derive(Deserialize)]
struct Cvss {
    #[serde(default, rename = "V2Vector")]
    v2_vector: Option<String>,
    #[serde(default, rename = "V2Score")]
    v2_score: Option<f64>,
    #[serde(default, rename = "V3Vector")]
    v3_vector: Option<String>,
    #[serde(default, rename = "V3Score")]
    v3_score: Option<f64>,
    #[serde(default, rename = "V40Vector")]
    v40_vector: Option<String>,
    #[serde(default, rename = "V40Score")]
    v40_score: Option<f64>,
}

pub(super) fn parse(name: &str, bytes: &[u8]) -> Result<Vec<Finding>, ReportError> {
    // (location prefix, results) in report order.
    let mut groups: Vec<(Option<String>, Vec<TrivyResult>)> = Vec::new();
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        let results: Vec<TrivyResult> = decode(name, ReportFormat::Trivy, bytes)?;
        groups.push((None, results));
    } else {
        let report: Report = decode(name, ReportFormat::Trivy, bytes)?;
        groups.push((None, report.results.unwrap_or_default()));
        let resources = report.vulnerabilities.into_iter().flatten().chain(report.resources.into_iter().flatten());
        for resource in resources {
            let prefix =
                [resource.namespace, resource.kind, resource.name].into_iter().flatten().collect::<Vec<_>>().join("/");
            groups.push((Some(prefix), resource.results.unwrap_or_default()));
        }
    }
    let mut findings = Vec::new();
    for (prefix, results) in groups {
        for result in results {
            let location = match (&prefix, &result.target) {
                (Some(prefix), Some(target)) => Some(format!("{prefix}: {target}")),
                (Some(prefix), None) => Some(prefix.clone()),
                (None, target) => target.clone(),
            };
            for vulnerability in result.vulnerabilities.into_iter().flatten() {
                findings.push(finding(name, &location, result.kind.as_deref(), vulnerability));
            }
        }
    }
    Ok(findings)
}

fn finding(
    report: &str,
    location: &Option<String>,
    result_kind: Option<&str>,
    vulnerability: Vulnerability,
) -> Finding {
    let purl = vulnerability.pkg_identifier.and_then(|p| p.purl);
    let kind = purl.as_deref().and_then(Purl::parse).map(|p| p.kind).or_else(|| result_kind.map(str::to_string));
    let fixed_versions = vulnerability.fixed_version.as_deref().map(split_versions).unwrap_or_default();
    let fix_state = match vulnerability.status.as_deref() {
        Some("fixed") => FixState::Fixed,
        Some("affected" | "under_investigation" | "fix_deferred") => FixState::NotFixed,
        Some("will_not_fix" | "end_of_life") => FixState::WontFix,
        Some("not_affected") => FixState::NotAffected,
        // Reports before `Status` existed list only fixable vulnerabilities with a version.
        _ if !fixed_versions.is_empty() => FixState::Fixed,
        Some(_) => FixState::Unknown,
        None => FixState::NotFixed,
    };
    let mut ratings = Vec::new();
    for (source, number) in vulnerability.vendor_severity.iter().flatten() {
        ratings.push(Rating::label(normalize_source(source), Severity::from_trivy_number(*number)));
    }
    for (source, cvss) in vulnerability.cvss.into_iter().flatten() {
        let source = normalize_source(&source);
        let versions = [
            (cvss.v40_vector, cvss.v40_score, Some("4.0".to_string())),
            (cvss.v3_vector, cvss.v3_score, None),
            (cvss.v2_vector, cvss.v2_score, Some("2.0".to_string())),
        ];
        for (vector, score, version) in versions {
            if vector.is_none() && score.is_none() {
                continue;
            }
            let version = version.or_else(|| vector.as_deref().and_then(vector_version));
            ratings.push(Rating { source: source.clone(), cvss_version: version, vector, score, severity: None });
        }
    }
    let vendor = vulnerability
        .data_source
        .and_then(|d| d.id)
        .map(|id| normalize_source(&id))
        .filter(|id| id != "nvd" && id != "ghsa");
    Finding {
        aliases: vulnerability
            .vendor_ids
            .unwrap_or_default()
            .into_iter()
            .filter(|alias| *alias != vulnerability.vulnerability_id)
            .collect(),
        id: vulnerability.vulnerability_id,
        package: Package { name: vulnerability.pkg_name, version: vulnerability.installed_version, purl, kind },
        fixed_versions,
        fix_state,
        reported_severity: vulnerability.severity.as_deref().map(Severity::from_label),
        ratings,
        vendor,
        published: vulnerability.published_date.as_deref().and_then(timestamp),
        title: vulnerability.title,
        location: location.clone(),
        report: report.to_string(),
    }
}
