//! Gate policies: per-environment thresholds, exceptions, VEX documents and Rego modules.
//!
//! A policy is one YAML file:
//!
//! ```yaml
//! default:                     # for every environment without its own section
//!   severity_source: highest   # or an ordered list: [nvd, ghsa, vendor, report]
//!   max_score: 9.0             # deny unsuppressed findings scoring at or above this
//! environments:
//!   staging:                   # overrides `default` field by field
//!     max_score: 7.0
//!     max_count: { critical: 0, high: 3 }   # deny more than this many per severity
//!     ignore_unfixed: true     # findings without a fixed version do not count
//!     max_age_days: 90         # deny findings published longer ago with no decision
//! exceptions:
//!   - id: CVE-2023-4863        # a vulnerability id or alias, and/or
//!     package: libwebp         # a package name or purl (alone: every finding in it)
//!     environments: [staging]  # optional; default every environment
//!     justification: not reachable from the decoder we ship
//!     approver: security@example.com
//!     expires: 2026-12-31      # a date (expires at 00:00 UTC that day) or an RFC 3339 time
//! vex: [vex/app.openvex.json]  # OpenVEX or CycloneDX VEX, relative to this file
//! rego: [policies/gate.rego]   # Rego modules whose `deny` messages deny, relative to this file
//! ```
//!
//! Every exception needs a justification, an approver and an expiry: once `expires` has
//! passed (against the clock the caller passes in) it no longer applies, and the verdict says
//! so. A decision that is permanent belongs in a VEX document instead. A finding counts as
//! decided when VEX, an exception or `ignore_unfixed` takes it out; `max_age_days` denies the
//! undecided ones whose vulnerability was published more than that many days ago (findings
//! whose report gives no publication date cannot age).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::finding::Finding;
use crate::purl::Purl;
use crate::rego::{RegoError, RegoPolicy};
use crate::reports::{self, ReportError};
use crate::severity::Severity;
use crate::severity_source::SeveritySelection;
use crate::vex::VexStatement;

/// Limits for one environment. Unset fields do not limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Which rating decides each finding's score and severity (default `highest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity_source: Option<SeveritySelection>,
    /// Deny any unsuppressed finding whose score is at or above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_score: Option<f64>,
    /// Deny when more unsuppressed findings than this have the severity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_count: BTreeMap<Severity, u32>,
    /// Findings without a fixed version do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_unfixed: Option<bool>,
    /// Deny unsuppressed findings published more than this many days ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_days: Option<u32>,
}

impl Thresholds {
    /// `self` with every field `over` sets taken from `over` (counts per severity merged).
    pub fn overridden_by(&self, over: &Thresholds) -> Thresholds {
        let mut max_count = self.max_count.clone();
        max_count.extend(over.max_count.iter().map(|(k, v)| (*k, *v)));
        Thresholds {
            severity_source: over.severity_source.clone().or_else(|| self.severity_source.clone()),
            max_score: over.max_score.or(self.max_score),
            max_count,
            ignore_unfixed: over.ignore_unfixed.or(self.ignore_unfixed),
            max_age_days: over.max_age_days.or(self.max_age_days),
        }
    }

    fn problems(&self, section: &str, into: &mut Vec<String>) {
        if let Some(score) = self.max_score
            && !(0.0..=10.0).contains(&score)
        {
            into.push(format!("{section}.max_score: {score} is not a CVSS score (0.0 to 10.0)"));
        }
    }
}

/// An accepted risk, until it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    /// Vulnerability id or alias it covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Package (name or purl) it covers; alone, every finding in that package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Environments it applies in; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// Why the risk is accepted.
    pub justification: String,
    /// Who accepted it.
    pub approver: String,
    /// When it stops applying.
    #[serde(deserialize_with = "expiry")]
    pub expires: DateTime<Utc>,
}

fn expiry<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    reports::timestamp(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "expiry {text:?} is neither a date (2026-12-31) nor an RFC 3339 time (2026-12-31T18:00:00Z)"
        ))
    })
}

impl Exception {
    /// Whether it covers `finding` in `environment` (ignoring expiry).
    pub fn covers(&self, finding: &Finding, environment: Option<&str>) -> bool {
        if !self.environments.is_empty() && !environment.is_some_and(|env| self.environments.iter().any(|e| e == env)) {
            return false;
        }
        if let Some(id) = &self.id
            && !finding.ids().any(|known| known.eq_ignore_ascii_case(id))
        {
            return false;
        }
        match &self.package {
            None => true,
            Some(package) => match Purl::parse(package) {
                Some(pattern) => match finding.package.purl.as_deref().and_then(Purl::parse) {
                    Some(actual) => pattern.covers(&actual),
                    None => {
                        pattern.package_name() == finding.package.name
                            && pattern
                                .version
                                .as_ref()
                                .is_none_or(|v| finding.package.version.as_deref() == Some(v.as_str()))
                    }
                },
                None => *package == finding.package.name,
            },
        }
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires
    }

    /// Short name for messages (`CVE-… in openssl`).
    pub fn label(&self) -> String {
        match (&self.id, &self.package) {
            (Some(id), Some(package)) => format!("{id} in {package}"),
            (Some(id), None) => id.clone(),
            (None, Some(package)) => format!("package {package}"),
            (None, None) => "an exception".into(),
        }
    }
}

/// The policy file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Thresholds for environments without a section of their own.
    #[serde(default)]
    pub default: Thresholds,
    /// Thresholds per environment, overriding `default` field by field.
    #[serde(default)]
    pub environments: BTreeMap<String, Thresholds>,
    /// Accepted risks.
    #[serde(default)]
    pub exceptions: Vec<Exception>,
    /// VEX documents, relative to the policy file.
    #[serde(default)]
    pub vex: Vec<PathBuf>,
    /// Rego modules, relative to the policy file.
    #[serde(default)]
    pub rego: Vec<PathBuf>,
}

/// Why a policy cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file cannot be read.
    #[error("read policy {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file has problems; all of them are listed.
    #[error("load policy {name}: {}", problems.join("; "))]
    Invalid {
        /// The policy's name (its path).
        name: String,
        /// Every problem found.
        problems: Vec<String>,
    },
    /// A VEX document it names cannot be read.
    #[error("load VEX document {path} named by policy {name}")]
    Vex {
        /// The policy's name.
        name: String,
        /// The document.
        path: PathBuf,
        /// The cause.
        #[source]
        source: ReportError,
    },
    /// A VEX document it names cannot be read from disk.
    #[error("read VEX document {path} named by policy {name}")]
    ReadVex {
        /// The policy's name.
        name: String,
        /// The document.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A Rego module it names does not load.
    #[error(transparent)]
    Rego(#[from] RegoError),
}

/// A loaded policy: thresholds, exceptions, VEX statements and compiled Rego.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Where it came from (a path, or a description such as `--max-score 7`).
    pub name: String,
    /// Default thresholds.
    pub default: Thresholds,
    /// Per-environment thresholds.
    pub environments: BTreeMap<String, Thresholds>,
    /// Accepted risks.
    pub exceptions: Vec<Exception>,
    /// VEX statements from the documents the policy names.
    pub vex: Vec<VexStatement>,
    /// Rego modules, if any.
    pub rego: Option<RegoPolicy>,
}

impl Policy {
    /// The complete policy `--max-score N` stands for: deny any unsuppressed finding scoring
    /// at or above `max_score`, in every environment.
    pub fn max_score(max_score: f64) -> Policy {
        Policy {
            name: format!("--max-score {max_score}"),
            default: Thresholds { max_score: Some(max_score), ..Thresholds::default() },
            ..Policy::default()
        }
    }

    /// Reads the policy file at `path` and the VEX documents and Rego modules it names.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| PolicyError::Read { path: path.to_path_buf(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Policy::from_yaml(&path.display().to_string(), &text, base)
    }

    /// Parses policy YAML named `name`; relative paths in it resolve against `base`.
    pub fn from_yaml(name: &str, text: &str, base: &Path) -> Result<Policy, PolicyError> {
        let invalid = |problems: Vec<String>| PolicyError::Invalid { name: name.to_string(), problems };
        let file: PolicyFile = if text.trim().is_empty() {
            PolicyFile::default()
        } else {
            yaml_serde::from_str(text).map_err(|e| invalid(vec![e.to_string()]))?
        };
        let mut problems = Vec::new();
        file.default.problems("default", &mut problems);
        for (environment, thresholds) in &file.environments {
            if environment.trim().is_empty() {
                problems.push("environments: an environment name is empty".into());
            }
            thresholds.problems(&format!("environments.{environment}"), &mut problems);
        }
        for (index, exception) in file.exceptions.iter().enumerate() {
            let at = format!("exceptions[{index}]");
            if exception.id.as_deref().is_none_or(|s| s.trim().is_empty())
                && exception.package.as_deref().is_none_or(|s| s.trim().is_empty())
            {
                problems.push(format!("{at}: names neither an id nor a package"));
            }
            if exception.justification.trim().is_empty() {
                problems.push(format!("{at}.justification: is empty"));
            }
            if exception.approver.trim().is_empty() {
                problems.push(format!("{at}.approver: is empty"));
            }
        }
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let mut vex = Vec::new();
        for relative in &file.vex {
            let path = base.join(relative);
            let bytes = std::fs::read(&path).map_err(|source| PolicyError::ReadVex {
                name: name.to_string(),
                path: path.clone(),
                source,
            })?;
            let document = reports::parse(&path.display().to_string(), &bytes).map_err(|source| PolicyError::Vex {
                name: name.to_string(),
                path: path.clone(),
                source,
            })?;
            vex.extend(document.vex);
        }
        let rego = if file.rego.is_empty() {
            None
        } else {
            let mut modules = Vec::new();
            for relative in &file.rego {
                let path = base.join(relative);
                let text =
                    std::fs::read_to_string(&path).map_err(|source| RegoError::Read { path: path.clone(), source })?;
                modules.push((path.display().to_string(), text));
            }
            Some(RegoPolicy::new(modules)?)
        };
        Ok(Policy {
            name: name.to_string(),
            default: file.default,
            environments: file.environments,
            exceptions: file.exceptions,
            vex,
            rego,
        })
    }

    /// The thresholds that hold in `environment`: its section over `default`.
    pub fn thresholds(&self, environment: Option<&str>) -> Thresholds {
        match environment.and_then(|env| self.environments.get(env)) {
            Some(section) => self.default.overridden_by(section),
            None => self.default.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> Result<Policy, PolicyError> {
        Policy::from_yaml("policy.yaml", yaml, Path::new("."))
    }

    #[test]
    fn environment_sections_override_the_default_field_by_field() {
        let policy = policy(
            "default: { max_score: 9.0, max_count: { critical: 0 }, ignore_unfixed: true }\n\
             environments:\n  staging: { max_score: 7.0, max_count: { high: 2 } }\n",
        )
        .unwrap();
        let staging = policy.thresholds(Some("staging"));
        assert_eq!(staging.max_score, Some(7.0));
        assert_eq!(staging.ignore_unfixed, Some(true));
        assert_eq!(staging.max_count, BTreeMap::from([(Severity::High, 2), (Severity::Critical, 0)]));
        assert_eq!(policy.thresholds(Some("dev")).max_score, Some(9.0));
        assert_eq!(policy.thresholds(None).max_score, Some(9.0));
    }

    #[test]
    fn every_problem_is_reported_together() {
        let error = policy(
            "default: { max_score: 11 }\n\
             exceptions:\n  - { justification: '', approver: '', expires: 2026-01-01 }\n",
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "default.max_score: 11 is not a CVSS score",
            "exceptions[0]: names neither an id nor a package",
            "exceptions[0].justification: is empty",
            "exceptions[0].approver: is empty",
        ] {
            assert!(error.contains(expected), "{expected} missing from: {error}");
        }
    }

    #[test]
    fn typos_and_bad_expiries_are_errors_with_a_line() {
        let error = policy("default:\n  max_scroe: 7\n").unwrap_err().to_string();
        assert!(error.contains("max_scroe") && error.contains("line 2"), "{error}");
        let error = policy("exceptions:\n  - { id: CVE-1, justification: x, approver: y, expires: soon }\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("expiry \"soon\""), "{error}");
    }

    #[test]
    fn exceptions_expire_at_their_moment() {
        let policy =
            policy("exceptions:\n  - { id: CVE-1, justification: x, approver: y, expires: 2026-03-01 }\n").unwrap();
        let exception = &policy.exceptions[0];
        let before = reports::timestamp("2026-02-28T23:59:59Z").unwrap();
        let at = reports::timestamp("2026-03-01T00:00:00Z").unwrap();
        assert!(!exception.expired(before));
        assert!(exception.expired(at));
    }

    #[test]
    fn missing_vex_documents_are_errors() {
        let error = policy("vex: [nowhere.json]\n").unwrap_err();
        assert!(matches!(error, PolicyError::ReadVex { .. }), "{error}");
    }
}
