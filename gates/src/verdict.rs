//! Evaluation: findings and a policy in, a verdict with its reasons and evidence out.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::finding::{Finding, FixState};
use crate::policy::{Exception, Policy, Thresholds};
use crate::purl::Purl;
use crate::rego::RegoError;
use crate::reports::ReportSummary;
use crate::severity::Severity;
use crate::severity_source;
use crate::vex::{Artifact, VexSet, VexStatement};

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The artifact may enter the environment.
    Allow,
    /// It may not; the verdict's reasons say why.
    Deny,
}

impl Decision {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// Why a finding does not count.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Suppression {
    /// A VEX statement says the product is not affected, or the vulnerability is fixed in it.
    Vex {
        /// The statement, whole.
        statement: Box<VexStatement>,
    },
    /// An unexpired exception covers it.
    Exception {
        /// The exception, whole.
        exception: Box<Exception>,
    },
    /// The scanner reports the vendor's `not_affected` status.
    VendorNotAffected,
    /// No fixed version exists and the policy ignores unfixed findings.
    Unfixed,
}

impl Suppression {
    /// One line for tables.
    pub fn describe(&self) -> String {
        match self {
            Suppression::Vex { statement } => format!(
                "vex {} ({}{})",
                match statement.status {
                    crate::vex::VexStatus::NotAffected => "not_affected",
                    crate::vex::VexStatus::Fixed => "fixed",
                    crate::vex::VexStatus::Affected => "affected",
                    crate::vex::VexStatus::UnderInvestigation => "under_investigation",
                },
                statement.document,
                statement.justification.as_deref().map(|j| format!(", {j}")).unwrap_or_default()
            ),
            Suppression::Exception { exception } => {
                format!("exception by {} until {}", exception.approver, exception.expires.format("%Y-%m-%dT%H:%M:%SZ"))
            }
            Suppression::VendorNotAffected => "vendor: not affected".into(),
            Suppression::Unfixed => "unfixed (ignored)".into(),
        }
    }
}

/// One finding as the gate judged it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssessedFinding {
    /// Vulnerability id.
    pub id: String,
    /// Other ids.
    pub aliases: Vec<String>,
    /// Package name.
    pub package: String,
    /// Installed version.
    pub version: Option<String>,
    /// Package URL.
    pub purl: Option<String>,
    /// Score under the policy's severity source.
    pub score: Option<f64>,
    /// Severity under the policy's severity source.
    pub severity: Severity,
    /// Which source decided.
    pub severity_source: Option<String>,
    /// The deciding CVSS vector.
    pub vector: Option<String>,
    /// Whether a fix exists.
    pub fix_state: FixState,
    /// Fixed versions.
    pub fixed_versions: Vec<String>,
    /// Publication time, if known.
    pub published: Option<DateTime<Utc>>,
    /// Where in the artifact.
    pub location: Option<String>,
    /// Report it came from.
    pub report: String,
    /// Why it does not count, if it does not.
    pub suppressed: Option<Suppression>,
}

impl AssessedFinding {
    fn key(&self) -> (String, String, Option<String>) {
        (self.id.to_ascii_uppercase(), self.package.clone(), self.version.clone())
    }

    fn subject(&self) -> String {
        match &self.version {
            Some(version) => format!("{} in {}@{version}", self.id, self.package),
            None => format!("{} in {}", self.id, self.package),
        }
    }
}

/// An exception that applied, and to how many findings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedException {
    /// The exception.
    pub exception: Exception,
    /// Findings it suppressed (or, when expired, would have).
    pub findings: usize,
}

/// Everything a verdict rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// The clock reading the verdict was made at.
    pub evaluated_at: DateTime<Utc>,
    /// The policy's name.
    pub policy: String,
    /// The thresholds that held.
    pub thresholds: Thresholds,
    /// The severity sources that decided scores.
    pub severity_source: String,
    /// The reports judged.
    pub reports: Vec<ReportSummary>,
    /// The artifact judged, if known.
    pub artifact: Option<Artifact>,
    /// VEX statements that suppressed at least one finding.
    pub vex_applied: Vec<VexStatement>,
    /// Exceptions that suppressed at least one finding.
    pub exceptions_applied: Vec<AppliedException>,
    /// Expired exceptions that would otherwise have suppressed a finding.
    pub exceptions_expired: Vec<AppliedException>,
    /// Rego modules evaluated.
    pub rego_modules: Vec<String>,
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Allow or deny.
    pub decision: Decision,
    /// Environment judged for, if any.
    pub environment: Option<String>,
    /// Why it denies (empty when it allows).
    pub reasons: Vec<String>,
    /// Things worth knowing that do not deny (expired exceptions).
    pub notes: Vec<String>,
    /// Unsuppressed findings per severity, each (vulnerability, package, version) once.
    pub counts: BTreeMap<Severity, usize>,
    /// Every finding of the reports, in report order.
    pub findings: Vec<AssessedFinding>,
    /// What the verdict rests on.
    pub evidence: Evidence,
}

/// What to judge.
#[derive(Debug, Clone)]
pub struct GateInput<'a> {
    /// Findings of every report.
    pub findings: &'a [Finding],
    /// VEX statements that came with the reports (in addition to the policy's own).
    pub vex: &'a [VexStatement],
    /// The reports, for evidence.
    pub reports: &'a [ReportSummary],
    /// The environment the artifact would enter.
    pub environment: Option<&'a str>,
    /// The artifact, if known.
    pub artifact: Option<&'a Artifact>,
    /// The event that started the promotion, if any (for Rego).
    pub event: Option<&'a serde_json::Value>,
    /// The time to judge exceptions and ages at.
    pub now: DateTime<Utc>,
}

impl<'a> GateInput<'a> {
    /// Findings judged at `now`, with nothing else known.
    pub fn new(findings: &'a [Finding], now: DateTime<Utc>) -> Self {
        GateInput { findings, vex: &[], reports: &[], environment: None, artifact: None, event: None, now }
    }
}

/// Vulnerability ids compare case-insensitively; most are uppercase already, so only the
/// others pay for a copy.
fn id_key(id: &str) -> std::borrow::Cow<'_, str> {
    if id.bytes().any(|b| b.is_ascii_lowercase()) {
        std::borrow::Cow::Owned(id.to_ascii_uppercase())
    } else {
        std::borrow::Cow::Borrowed(id)
    }
}

/// Exceptions in force, indexed for lookup by vulnerability id and by package name, so that
/// judging a finding costs a few hash lookups however many exceptions there are.
struct ExceptionIndex<'p> {
    by_id: HashMap<String, Vec<usize>>,
    by_package: HashMap<String, Vec<usize>>,
    exceptions: &'p [Exception],
}

impl<'p> ExceptionIndex<'p> {
    fn new(exceptions: &'p [Exception], keep: impl Fn(&Exception) -> bool) -> Self {
        let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_package: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, exception) in exceptions.iter().enumerate() {
            if !keep(exception) {
                continue;
            }
            match (&exception.id, &exception.package) {
                (Some(id), _) => by_id.entry(id_key(id).into_owned()).or_default().push(index),
                (None, Some(package)) => {
                    // A purl pattern is filed under the names a finding may carry.
                    let names = match Purl::parse(package) {
                        Some(purl) => vec![purl.package_name(), purl.name],
                        None => vec![package.clone()],
                    };
                    for name in names {
                        let entry = by_package.entry(name).or_default();
                        if !entry.contains(&index) {
                            entry.push(index);
                        }
                    }
                }
                (None, None) => {}
            }
        }
        ExceptionIndex { by_id, by_package, exceptions }
    }

    fn find(&self, finding: &Finding, environment: Option<&str>) -> Option<usize> {
        if self.by_id.is_empty() && self.by_package.is_empty() {
            return None;
        }
        let by_id = finding.ids().filter_map(|id| self.by_id.get(id_key(id).as_ref())).flatten();
        let purl_name = finding.package.purl.as_deref().filter(|_| !self.by_package.is_empty()).and_then(Purl::name_of);
        let by_package = std::iter::once(finding.package.name.as_str())
            .chain(purl_name.as_deref())
            .filter_map(|name| self.by_package.get(name))
            .flatten();
        by_id.chain(by_package).copied().filter(|&index| self.exceptions[index].covers(finding, environment)).min()
    }
}

/// Judges `input` under `policy`. Fails only when a Rego rule cannot be evaluated.
pub fn evaluate(policy: &Policy, input: &GateInput<'_>) -> Result<Verdict, RegoError> {
    let environment = input.environment;
    let thresholds = policy.thresholds(environment);
    let selection = thresholds.severity_source.clone().unwrap_or_default();
    let ignore_unfixed = thresholds.ignore_unfixed.unwrap_or(false);
    let vex = VexSet::new(policy.vex.iter().chain(input.vex.iter()).cloned().collect());
    let now = input.now;
    let applies_here = |e: &Exception| {
        e.environments.is_empty() || environment.is_some_and(|env| e.environments.iter().any(|x| x == env))
    };
    let active = ExceptionIndex::new(&policy.exceptions, |e| applies_here(e) && !e.expired(now));
    let expired = ExceptionIndex::new(&policy.exceptions, |e| applies_here(e) && e.expired(now));

    let mut scorer: HashMap<String, Option<f64>> = HashMap::new();
    let mut applied_counts: BTreeMap<usize, usize> = BTreeMap::new();
    let mut expired_counts: BTreeMap<usize, usize> = BTreeMap::new();
    let mut vex_applied: Vec<VexStatement> = Vec::new();
    let mut vex_seen: HashSet<(String, usize)> = HashSet::new();
    let mut findings = Vec::with_capacity(input.findings.len());
    for finding in input.findings {
        let assessment = severity_source::assess(finding, &selection, &mut scorer);
        let mut suppressed = None;
        if let Some(statement) = vex.decide(finding, input.artifact)
            && statement.status.suppresses()
        {
            if vex_seen.insert((statement.document.clone(), statement.position)) {
                vex_applied.push(statement.clone());
            }
            suppressed = Some(Suppression::Vex { statement: Box::new(statement.clone()) });
        }
        if suppressed.is_none() {
            if let Some(index) = active.find(finding, environment) {
                *applied_counts.entry(index).or_default() += 1;
                suppressed = Some(Suppression::Exception { exception: Box::new(policy.exceptions[index].clone()) });
            } else if let Some(index) = expired.find(finding, environment) {
                *expired_counts.entry(index).or_default() += 1;
            }
        }
        if suppressed.is_none() && finding.fix_state == FixState::NotAffected {
            suppressed = Some(Suppression::VendorNotAffected);
        }
        if suppressed.is_none() && ignore_unfixed && finding.fix_state != FixState::Fixed {
            suppressed = Some(Suppression::Unfixed);
        }
        findings.push(AssessedFinding {
            id: finding.id.clone(),
            aliases: finding.aliases.clone(),
            package: finding.package.name.clone(),
            version: finding.package.version.clone(),
            purl: finding.package.purl.clone(),
            score: assessment.score,
            severity: assessment.severity,
            severity_source: assessment.source,
            vector: assessment.vector,
            fix_state: finding.fix_state,
            fixed_versions: finding.fixed_versions.clone(),
            published: finding.published,
            location: finding.location.clone(),
            report: finding.report.clone(),
            suppressed,
        });
    }

    // The same vulnerability in the same package, reported twice (two scanners, two lock
    // files), is one risk: count it and give reasons for it once.
    let mut seen = HashSet::new();
    let counted: Vec<&AssessedFinding> =
        findings.iter().filter(|f| f.suppressed.is_none()).filter(|f| seen.insert(f.key())).collect();
    let place = environment.map(|env| format!(" in {env}")).unwrap_or_default();
    let mut reasons = Vec::new();
    if let Some(limit) = thresholds.max_score {
        for finding in &counted {
            if let Some(score) = finding.score.filter(|score| *score >= limit) {
                reasons.push(format!(
                    "{} scores {score:.1} ({}{}), at or above the limit {limit:.1}{place}",
                    finding.subject(),
                    finding.severity,
                    finding.severity_source.as_deref().map(|s| format!(", {s}")).unwrap_or_default(),
                ));
            }
        }
    }
    let mut counts: BTreeMap<Severity, usize> = BTreeMap::new();
    for finding in &counted {
        *counts.entry(finding.severity).or_default() += 1;
    }
    for (severity, limit) in thresholds.max_count.iter().rev() {
        let count = counts.get(severity).copied().unwrap_or(0);
        if count > *limit as usize {
            reasons.push(format!(
                "{count} {severity} finding{}, more than the {limit} allowed{place}",
                if count == 1 { "" } else { "s" }
            ));
        }
    }
    if let Some(days) = thresholds.max_age_days {
        for finding in &counted {
            let Some(published) = finding.published else {
                continue;
            };
            let age = now.signed_duration_since(published).num_days();
            if age > i64::from(days) {
                reasons.push(format!(
                    "{} was published {} ({age} days ago) and has no decision (fix, VEX or exception); the limit{place} is {days} days",
                    finding.subject(),
                    published.format("%Y-%m-%d"),
                ));
            }
        }
    }
    let rego_modules = policy.rego.as_ref().map(|r| r.modules()).unwrap_or_default();
    if let Some(rego) = &policy.rego {
        reasons.extend(rego.deny_findings(environment, input.artifact, input.event, &findings)?);
    }

    let mut notes = Vec::new();
    let exceptions_expired: Vec<AppliedException> = expired_counts
        .iter()
        .map(|(&index, &count)| {
            let exception = &policy.exceptions[index];
            notes.push(format!(
                "exception for {} (approved by {}) expired at {} and no longer covers {count} finding{}",
                exception.label(),
                exception.approver,
                exception.expires.format("%Y-%m-%dT%H:%M:%SZ"),
                if count == 1 { "" } else { "s" }
            ));
            AppliedException { exception: exception.clone(), findings: count }
        })
        .collect();
    let exceptions_applied = applied_counts
        .iter()
        .map(|(&index, &count)| AppliedException { exception: policy.exceptions[index].clone(), findings: count })
        .collect();
    Ok(Verdict {
        decision: if reasons.is_empty() { Decision::Allow } else { Decision::Deny },
        environment: environment.map(str::to_string),
        reasons,
        notes,
        counts,
        findings,
        evidence: Evidence {
            evaluated_at: now,
            policy: policy.name.clone(),
            severity_source: selection.to_string(),
            thresholds,
            reports: input.reports.to_vec(),
            artifact: input.artifact.cloned(),
            vex_applied,
            exceptions_applied,
            exceptions_expired,
            rego_modules,
        },
    })
}
