//! Scanner reports in, normalized [`Finding`]s (and VEX statements) out.
//!
//! The format is recognized from the document's shape, not its file name:
//!
//! | format | recognized by |
//! |---|---|
//! | Trivy JSON | `SchemaVersion`/`Results`, the legacy top-level list of results, or `trivy k8s` (`ClusterName`) |
//! | Grype JSON | `matches` |
//! | SARIF 2.1.0 | `runs` with a SARIF `version` or `$schema` |
//! | CycloneDX JSON | `bomFormat: CycloneDX`; its `vulnerabilities` become findings, their `analysis` VEX statements |
//! | OpenVEX | an `@context` under `https://openvex.dev/ns`; VEX statements only |
//!
//! Anything else is an error that names the file. Reports are read leniently (fields the
//! formats add over time are ignored), but a field of the wrong type is an error with its path.

mod cyclonedx;
mod grype;
mod sarif;
mod trivy;

use std::fmt;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::finding::Finding;
use crate::vex::{self, VexStatement};

/// A report or VEX document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// Trivy JSON (`trivy image --format json`).
    Trivy,
    /// Grype JSON (`grype -o json`).
    Grype,
    /// SARIF 2.1.0.
    Sarif,
    /// CycloneDX JSON with vulnerabilities.
    CycloneDx,
    /// OpenVEX.
    OpenVex,
}

impl ReportFormat {
    /// Name as shown (`trivy`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Trivy => "trivy",
            ReportFormat::Grype => "grype",
            ReportFormat::Sarif => "sarif",
            ReportFormat::CycloneDx => "cyclonedx",
            ReportFormat::OpenVex => "openvex",
        }
    }
}

impl fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed document.
#[derive(Debug, Clone)]
pub struct Document {
    /// Name it was read under (usually its path).
    pub name: String,
    /// Its format.
    pub format: ReportFormat,
    /// SHA-256 of its bytes, hex, so a verdict can name exactly what it judged.
    pub sha256: String,
    /// Findings, one per (vulnerability, package) entry.
    pub findings: Vec<Finding>,
    /// VEX statements it makes (OpenVEX, or CycloneDX `analysis`).
    pub vex: Vec<VexStatement>,
}

impl Document {
    /// What a verdict records about the document.
    pub fn summary(&self) -> ReportSummary {
        ReportSummary {
            name: self.name.clone(),
            format: self.format,
            sha256: self.sha256.clone(),
            findings: self.findings.len(),
            vex_statements: self.vex.len(),
        }
    }
}

/// What a verdict records about one input document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportSummary {
    /// Name it was read under.
    pub name: String,
    /// Its format.
    pub format: ReportFormat,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// How many findings it holds.
    pub findings: usize,
    /// How many VEX statements it makes.
    pub vex_statements: usize,
}

/// Why a document cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file cannot be read.
    #[error("read report {path}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not JSON at all.
    #[error("read report {name}: it is not JSON")]
    NotJson {
        /// The document's name.
        name: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// JSON, but no format this crate reads.
    #[error(
        "read report {name}: unknown format (expected Trivy JSON, Grype JSON, SARIF 2.1.0, CycloneDX JSON or OpenVEX)"
    )]
    UnknownFormat {
        /// The document's name.
        name: String,
    },
    /// The format was recognized but the content does not fit it.
    #[error("read {format} report {name}: {reason}")]
    Malformed {
        /// The document's name.
        name: String,
        /// The recognized format.
        format: ReportFormat,
        /// What does not fit, with its JSON path.
        reason: String,
    },
}

/// Reads and parses the document at `path` (named by its path).
pub fn read(path: &std::path::Path) -> Result<Document, ReportError> {
    let bytes = std::fs::read(path).map_err(|source| ReportError::Read { path: path.to_path_buf(), source })?;
    parse(&path.display().to_string(), &bytes)
}

/// Recognizes and parses one document named `name`.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Document, ReportError> {
    let format = detect(bytes).map_err(|source| ReportError::NotJson { name: name.to_string(), source })?;
    let format = format.ok_or_else(|| ReportError::UnknownFormat { name: name.to_string() })?;
    let (findings, vex) = match format {
        ReportFormat::Trivy => (trivy::parse(name, bytes)?, Vec::new()),
        ReportFormat::Grype => (grype::parse(name, bytes)?, Vec::new()),
        ReportFormat::Sarif => (sarif::parse(name, bytes)?, Vec::new()),
        ReportFormat::CycloneDx => cyclonedx::parse(name, bytes)?,
        ReportFormat::OpenVex => (Vec::new(), vex::parse_openvex(name, bytes)?),
    };
    Ok(Document { name: name.to_string(), format, sha256: hex::encode(Sha256::digest(bytes)), findings, vex })
}

/// The top-level fields that tell formats apart; everything else is skipped unread, so that
/// recognizing a large report does not build it twice.
#[derive(Deserialize)]
struct Top {
    #[serde(default, rename = "bomFormat")]
    bom_format: Option<serde_json::Value>,
    #[serde(default, rename = "@context")]
    context: Option<serde_json::Value>,
    #[serde(default, rename = "$schema")]
    schema: Option<serde_json::Value>,
    #[serde(default)]
    version: Option<serde_json::Value>,
    #[serde(default)]
    runs: Option<IgnoredAny>,
    #[serde(default)]
    matches: Option<IgnoredAny>,
    #[serde(default, rename = "SchemaVersion")]
    schema_version: Option<IgnoredAny>,
    #[serde(default, rename = "Results")]
    results: Option<IgnoredAny>,
    #[serde(default, rename = "ClusterName")]
    cluster_name: Option<IgnoredAny>,
}

/// An element of a top-level list (old Trivy reports are a list of results).
#[derive(Deserialize)]
struct Item {
    #[serde(default, rename = "Target")]
    target: Option<IgnoredAny>,
    #[serde(default, rename = "Vulnerabilities")]
    vulnerabilities: Option<IgnoredAny>,
}

/// The format of a JSON document, if it is one this crate reads; `Err` when it is not JSON.
pub fn detect(bytes: &[u8]) -> Result<Option<ReportFormat>, serde_json::Error> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        Some(b'{') => match serde_json::from_slice::<Top>(bytes) {
            Ok(top) => Ok(detect_top(&top)),
            // Valid JSON whose top-level fields have unexpected types is no known format.
            Err(error) if error.is_data() => Ok(None),
            Err(error) => Err(error),
        },
        Some(b'[') => match serde_json::from_slice::<Vec<Item>>(bytes) {
            Ok(items) => Ok((!items.is_empty()
                && items.iter().all(|i| i.target.is_some() || i.vulnerabilities.is_some()))
            .then_some(ReportFormat::Trivy)),
            Err(error) if error.is_data() => Ok(None),
            Err(error) => Err(error),
        },
        _ => serde_json::from_slice::<IgnoredAny>(bytes).map(|_| None),
    }
}

fn detect_top(top: &Top) -> Option<ReportFormat> {
    let text = |value: &Option<serde_json::Value>| value.as_ref().and_then(|v| v.as_str()).unwrap_or("").to_string();
    if text(&top.bom_format) == "CycloneDX" {
        return Some(ReportFormat::CycloneDx);
    }
    if text(&top.context).starts_with("https://openvex.dev/ns") {
        return Some(ReportFormat::OpenVex);
    }
    if top.runs.is_some() {
        let sarif = text(&top.version) == "2.1.0" || text(&top.schema).contains("sarif");
        return sarif.then_some(ReportFormat::Sarif);
    }
    if top.matches.is_some() {
        return Some(ReportFormat::Grype);
    }
    if top.schema_version.is_some() || top.results.is_some() || top.cluster_name.is_some() {
        return Some(ReportFormat::Trivy);
    }
    None
}

/// Deserializes `bytes` as `T`, naming the JSON path of a misfit.
pub(crate) fn decode<T: DeserializeOwned>(name: &str, format: ReportFormat, bytes: &[u8]) -> Result<T, ReportError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| ReportError::Malformed {
        name: name.to_string(),
        format,
        reason: format!("at {}: {}", error.path(), error.inner()),
    })
}

/// Parses the timestamps reports write (RFC 3339, or a bare date).
pub(crate) fn timestamp(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = text.trim();
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|time| time.and_utc())
}

/// Splits a list of versions written as one string (`1.2.1, 2.1.3`).
pub(crate) fn split_versions(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_string).collect()
}

/// Gives a vector without its `CVSS:x.y/` prefix (CycloneDX and some Grype versions write
/// them so) the prefix of its stated version.
pub(crate) fn prefixed_vector(vector: &str, version: Option<&str>) -> String {
    let vector = vector.trim();
    match version {
        Some(version @ ("3.0" | "3.1" | "4.0")) if !vector.starts_with("CVSS:") => {
            format!("CVSS:{version}/{vector}")
        }
        _ => vector.to_string(),
    }
}

/// The CVSS version a vector states by its prefix (`2.0` for prefix-less v2 vectors).
pub(crate) fn vector_version(vector: &str) -> Option<String> {
    if let Some(rest) = vector.strip_prefix("CVSS:") {
        return rest.split('/').next().map(str::to_string);
    }
    vector.contains("Au:").then(|| "2.0".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_documents_name_the_file() {
        let error = parse("scan.json", br#"{"hello": "world"}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "read report scan.json: unknown format (expected Trivy JSON, Grype JSON, SARIF 2.1.0, CycloneDX JSON or OpenVEX)"
        );
        let error = parse("scan.txt", b"not json").unwrap_err();
        assert!(error.to_string().contains("scan.txt"), "{error}");
        let error = parse("list.json", b"[1, 2]").unwrap_err();
        assert!(matches!(error, ReportError::UnknownFormat { .. }));
    }

    #[test]
    fn misfits_name_their_path() {
        let error = parse("bad.json", br#"{"matches": [{"vulnerability": {"id": 7}}]}"#).unwrap_err().to_string();
        assert!(error.starts_with("read grype report bad.json: at matches[0]"), "{error}");
    }

    #[test]
    fn timestamps_and_vectors() {
        assert_eq!(
            timestamp("2026-02-17T19:21:55.31Z").map(|t| t.to_rfc3339()),
            Some("2026-02-17T19:21:55.310+00:00".to_string())
        );
        assert!(timestamp("2020-12-03").is_some());
        assert_eq!(timestamp("yesterday"), None);
        assert_eq!(
            prefixed_vector("AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:N", Some("3.1")),
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:N"
        );
        assert_eq!(vector_version("AV:N/AC:L/Au:N/C:P/I:P/A:P").as_deref(), Some("2.0"));
        assert_eq!(split_versions("11.0.14, 10.1.49,,"), ["11.0.14", "10.1.49"]);
    }
}
