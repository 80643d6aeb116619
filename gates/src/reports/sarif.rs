//! SARIF 2.1.0: one finding per result.
//!
//! SARIF has no package field, so scanners write it into text. Trivy and Grype both put
//! `Package: …` / `Installed Version: …` (or `Version: …`) / `Fixed Version: …` (or
//! `Fix Version: …`) lines into the result message or the rule's help, and
//! `Vulnerability <id>` into the help; these are read when present. Otherwise the finding's
//! package is the first location's file (code scanners such as CodeQL). The score is the rule's
//! `security-severity` property (GitHub's convention), or its CVSS vector when the scanner
//! adds one; the label comes from `Severity:` in the help, a severity tag, or the level.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ReportError, ReportFormat, decode, split_versions, vector_version};
use crate::finding::{Finding, FixState, Package, Rating};
use crate::severity::Severity;

#[derive(Deserialize)]
struct Log {
    #[serde(default)]
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    tool: Tool,
    #[serde(default)]
    results: Option<Vec<SarifResult>>,
}

#[derive(Deserialize)]
struct Tool {
    driver: Driver,
}

#[derive(Deserialize)]
struct Driver {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    rules: Option<Vec<Rule>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: String,
    #[serde(default)]
    short_description: Option<Text>,
    #[serde(default)]
    help: Option<Text>,
    #[serde(default)]
    properties: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    default_configuration: Option<Configuration>,
}

#[derive(Deserialize)]
struct Text {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Configuration {
    #[serde(default)]
    level: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    #[serde(default)]
    rule_id: Option<String>,
    #[serde(default)]
    rule_index: Option<usize>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    message: Option<Text>,
    #[serde(default)]
    locations: Option<Vec<Location>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    #[serde(default)]
    physical_location: Option<PhysicalLocation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    #[serde(default)]
    artifact_location: Option<ArtifactLocation>,
}

#[derive(Deserialize)]
struct ArtifactLocation {
    #[serde(default)]
    uri: Option<String>,
}

pub(super) fn parse(name: &str, bytes: &[u8]) -> Result<Vec<Finding>, ReportError> {
    let log: Log = decode(name, ReportFormat::Sarif, bytes)?;
    let mut findings = Vec::new();
    for run in log.runs {
        let rules = run.tool.driver.rules.unwrap_or_default();
        let tool = run.tool.driver.name.unwrap_or_else(|| "sarif".into());
        for (index, result) in run.results.into_iter().flatten().enumerate() {
            let rule = result
                .rule_index
                .and_then(|i| rules.get(i))
                .filter(|r| result.rule_id.as_ref().is_none_or(|id| *id == r.id))
                .or_else(|| {
                    let id = result.rule_id.as_ref()?;
                    rules.iter().find(|r| r.id == *id)
                });
            let finding = finding(name, &tool, index, &result, rule).map_err(|reason| ReportError::Malformed {
                name: name.to_string(),
                format: ReportFormat::Sarif,
                reason,
            })?;
            findings.push(finding);
        }
    }
    Ok(findings)
}

/// `Key: value` lines of a text, first occurrence of each key winning.
fn fields(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(':') {
            let key = key.trim().to_ascii_lowercase();
            // Field names are one or two words; longer prefixes are prose with a colon.
            if !key.is_empty() && key.split_whitespace().count() <= 2 {
                fields.entry(key).or_insert_with(|| value.trim().to_string());
            }
        }
    }
    fields
}

fn finding(
    report: &str,
    tool: &str,
    index: usize,
    result: &SarifResult,
    rule: Option<&Rule>,
) -> Result<Finding, String> {
    let rule_id = result
        .rule_id
        .clone()
        .or_else(|| rule.map(|r| r.id.clone()))
        .ok_or_else(|| format!("at runs[].results[{index}]: result has no ruleId"))?;
    let message = result.message.as_ref().and_then(|m| m.text.as_deref()).unwrap_or("");
    let help = rule.and_then(|r| r.help.as_ref()).and_then(|h| h.text.as_deref()).unwrap_or("");
    // The result's own text is more specific than its rule's (Trivy shares a rule among
    // every package a vulnerability affects).
    let mut known = fields(message);
    for (key, value) in fields(help) {
        known.entry(key).or_insert(value);
    }
    let id = help
        .lines()
        .find_map(|line| line.trim().strip_prefix("Vulnerability "))
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| rule_id.clone());
    let location = result
        .locations
        .iter()
        .flatten()
        .find_map(|l| l.physical_location.as_ref()?.artifact_location.as_ref()?.uri.clone());
    let package_name = known.get("package").cloned().filter(|p| !p.is_empty());
    let version = known.get("installed version").or_else(|| known.get("version")).cloned().filter(|v| !v.is_empty());
    let fixed_versions =
        known.get("fixed version").or_else(|| known.get("fix version")).map(|v| split_versions(v)).unwrap_or_default();
    let properties = rule.and_then(|r| r.properties.as_ref());
    let property = |key: &str| properties.and_then(|p| p.get(key));
    let number = |value: Option<&serde_json::Value>| match value {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let mut ratings = Vec::new();
    let v3_vector = property("cvssv3_vector").and_then(|v| v.as_str());
    if let Some(vector) = v3_vector {
        ratings.push(Rating {
            source: "report".into(),
            cvss_version: vector_version(vector),
            vector: Some(vector.to_string()),
            score: number(property("cvssv3_baseScore")),
            severity: None,
        });
    } else if let Some(score) = number(property("security-severity")) {
        ratings.push(Rating {
            source: "report".into(),
            cvss_version: None,
            vector: None,
            score: Some(score),
            severity: None,
        });
    }
    if let Some(vector) = property("cvssv2_vector").and_then(|v| v.as_str()) {
        ratings.push(Rating {
            source: "report".into(),
            cvss_version: Some("2.0".into()),
            vector: Some(vector.to_string()),
            score: number(property("cvssv2_score")),
            severity: None,
        });
    }
    let tagged = property("tags")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str())
        .find_map(|t| t.parse::<Severity>().ok().filter(|s| *s != Severity::Unknown));
    let level = result
        .level
        .clone()
        .or_else(|| rule.and_then(|r| r.default_configuration.as_ref()).and_then(|c| c.level.clone()));
    let reported_severity =
        known.get("severity").map(|s| Severity::from_label(s)).filter(|s| *s != Severity::Unknown).or(tagged).or_else(
            || {
                // SARIF's default level is `warning`.
                Some(match level.as_deref().unwrap_or("warning") {
                    "error" => Severity::High,
                    "warning" => Severity::Medium,
                    "note" => Severity::Low,
                    "none" => Severity::None,
                    _ => Severity::Unknown,
                })
            },
        );
    let package_kind = known.get("type").cloned().filter(|t| !t.is_empty());
    Ok(Finding {
        aliases: if id != rule_id && !rule_id.starts_with(&format!("{id}-")) {
            vec![rule_id.clone()]
        } else {
            Vec::new()
        },
        id,
        package: Package {
            name: package_name.or_else(|| location.clone()).unwrap_or_else(|| tool.to_string()),
            version,
            purl: None,
            kind: package_kind,
        },
        fix_state: if fixed_versions.is_empty() { FixState::Unknown } else { FixState::Fixed },
        fixed_versions,
        reported_severity,
        ratings,
        vendor: None,
        published: None,
        title: rule.and_then(|r| r.short_description.as_ref()).and_then(|d| d.text.clone()),
        location,
        report: report.to_string(),
    })
}
