//! CycloneDX JSON: one finding per (vulnerability, affected component); a vulnerability with
//! an `analysis.state` is also a VEX statement about the components it affects.

use std::collections::HashMap;

use serde::Deserialize;

use super::{ReportError, ReportFormat, decode, prefixed_vector, timestamp};
use crate::finding::{Finding, FixState, Package, Rating, normalize_source};
use crate::purl::Purl;
use crate::severity::Severity;
use crate::vex::{VexFormat, VexProduct, VexStatement, VexStatus};

#[derive(Deserialize)]
struct Bom {
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    components: Option<Vec<Component>>,
    #[serde(default)]
    vulnerabilities: Option<Vec<Vulnerability>>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    component: Option<Component>,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Deserialize)]
struct Component {
    #[serde(default, rename = "bom-ref")]
    bom_ref: Option<String>,
    #[serde(default)]
    group: Option<String>,
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    purl: Option<String>,
    #[serde(default)]
    components: Option<Vec<Component>>,
}

#[derive(Deserialize)]
struct Vulnerability {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    references: Option<Vec<Reference>>,
    #[serde(default)]
    ratings: Option<Vec<CdxRating>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    analysis: Option<Analysis>,
    #[serde(default)]
    affects: Option<Vec<Affects>>,
}

#[derive(Deserialize)]
struct Source {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Reference {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct CdxRating {
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    vector: Option<String>,
}

#[derive(Deserialize)]
struct Analysis {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Deserialize)]
struct Affects {
    #[serde(rename = "ref")]
    reference: String,
}

/// A component by its `bom-ref`, flattened from the nested tree.
fn index(components: &[Component], into: &mut HashMap<String, Package>) {
    for component in components {
        if let Some(reference) = &component.bom_ref {
            into.insert(reference.clone(), package(component));
        }
        index(component.components.as_deref().unwrap_or_default(), into);
    }
}

fn package(component: &Component) -> Package {
    let parsed = component.purl.as_deref().and_then(Purl::parse);
    let name = match (&parsed, &component.group) {
        (Some(purl), _) => purl.package_name(),
        (None, Some(group)) if !group.is_empty() => format!("{group}:{}", component.name),
        _ => component.name.clone(),
    };
    Package { name, version: component.version.clone(), purl: component.purl.clone(), kind: parsed.map(|p| p.kind) }
}

/// The package an `affects` reference names: a component of this BOM, or (for references into
/// another BOM, `urn:cdx:<serial>/<version>#<bom-ref>`) the purl or name after the `#`.
fn referenced(reference: &str, components: &HashMap<String, Package>) -> Package {
    if let Some(package) = components.get(reference) {
        return package.clone();
    }
    let local =
        reference.strip_prefix("urn:cdx:").and_then(|rest| rest.split_once('#')).map_or(reference, |(_, local)| local);
    if let Some(package) = components.get(local) {
        return package.clone();
    }
    match Purl::parse(local) {
        Some(purl) => Package {
            name: purl.package_name(),
            version: purl.version.clone(),
            purl: Some(local.to_string()),
            kind: Some(purl.kind),
        },
        None => Package { name: local.to_string(), ..Package::default() },
    }
}

fn version_of_method(method: &str) -> Option<&'static str> {
    match method {
        "CVSSv2" => Some("2.0"),
        "CVSSv3" => Some("3.0"),
        "CVSSv31" => Some("3.1"),
        "CVSSv4" => Some("4.0"),
        _ => None,
    }
}

pub(super) fn parse(name: &str, bytes: &[u8]) -> Result<(Vec<Finding>, Vec<VexStatement>), ReportError> {
    let bom: Bom = decode(name, ReportFormat::CycloneDx, bytes)?;
    let mut components = HashMap::new();
    if let Some(component) = bom.metadata.as_ref().and_then(|m| m.component.as_ref()) {
        index(std::slice::from_ref(component), &mut components);
    }
    index(bom.components.as_deref().unwrap_or_default(), &mut components);
    let document_time = bom.metadata.as_ref().and_then(|m| m.timestamp.as_deref()).and_then(timestamp);
    let mut findings = Vec::new();
    let mut statements = Vec::new();
    for (position, vulnerability) in bom.vulnerabilities.into_iter().flatten().enumerate() {
        let Some(id) = vulnerability.id.clone().filter(|id| !id.is_empty()) else {
            return Err(ReportError::Malformed {
                name: name.to_string(),
                format: ReportFormat::CycloneDx,
                reason: format!("at vulnerabilities[{position}]: vulnerability has no id"),
            });
        };
        let vulnerability_source = vulnerability
            .source
            .as_ref()
            .and_then(|s| s.name.as_deref())
            .map(normalize_source)
            .unwrap_or_else(|| "report".to_string());
        let mut ratings = Vec::new();
        for rating in vulnerability.ratings.iter().flatten() {
            let source = rating
                .source
                .as_ref()
                .and_then(|s| s.name.as_deref())
                .map(normalize_source)
                .unwrap_or_else(|| vulnerability_source.clone());
            let severity = rating.severity.as_deref().map(Severity::from_label);
            match rating.method.as_deref().and_then(version_of_method) {
                Some(version) => ratings.push(Rating {
                    source,
                    cvss_version: Some(version.to_string()),
                    vector: rating.vector.as_deref().map(|v| prefixed_vector(v, Some(version))),
                    score: rating.score,
                    severity,
                }),
                // Scores of other methods (EPSS, OWASP, SSVC) are not on the CVSS scale.
                None => {
                    if let Some(severity) = severity {
                        ratings.push(Rating::label(source, severity));
                    }
                }
            }
        }
        let mut aliases: Vec<String> = vulnerability
            .references
            .iter()
            .flatten()
            .filter_map(|r| r.id.clone())
            .filter(|alias| *alias != id)
            .collect();
        let mut seen = std::collections::HashSet::new();
        aliases.retain(|alias| seen.insert(alias.clone()));
        let affected: Vec<(String, Package)> = vulnerability
            .affects
            .iter()
            .flatten()
            .map(|a| (a.reference.clone(), referenced(&a.reference, &components)))
            .collect();
        let published = vulnerability.published.as_deref().and_then(timestamp);
        let packages: Vec<Package> = if affected.is_empty() {
            vec![Package::default()]
        } else {
            affected.iter().map(|(_, p)| p.clone()).collect()
        };
        for package in packages {
            findings.push(Finding {
                id: id.clone(),
                aliases: aliases.clone(),
                package,
                fixed_versions: Vec::new(),
                fix_state: FixState::Unknown,
                reported_severity: None,
                ratings: ratings.clone(),
                vendor: None,
                published,
                title: vulnerability.description.as_deref().map(first_line),
                location: None,
                report: name.to_string(),
            });
        }
        let Some(analysis) = &vulnerability.analysis else {
            continue;
        };
        let Some(status) = analysis.state.as_deref().and_then(VexStatus::from_cyclonedx) else {
            continue;
        };
        statements.push(VexStatement {
            document: name.to_string(),
            format: VexFormat::CycloneDx,
            position,
            vulnerability: id.clone(),
            aliases: aliases.clone(),
            products: affected
                .iter()
                .map(|(reference, package)| VexProduct {
                    id: package.purl.clone().unwrap_or_else(|| reference.clone()),
                    subcomponents: Vec::new(),
                })
                .collect(),
            status,
            justification: analysis.justification.clone(),
            impact_statement: analysis.detail.clone(),
            timestamp: vulnerability.updated.as_deref().and_then(timestamp).or(published).or(document_time),
        });
    }
    Ok((findings, statements))
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}
