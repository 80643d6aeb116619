//! Which source's rating decides a finding's score and severity: explicit policy, never an
//! accident of which rating a report happened to list first.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cvss;
use crate::finding::{Finding, Rating};
use crate::severity::Severity;

/// One choice in a severity-source preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeveritySource {
    /// NVD's rating.
    Nvd,
    /// The GitHub Advisory Database's rating.
    Ghsa,
    /// The rating of the distribution or ecosystem database that matched the package
    /// (Trivy's data source, Grype's namespace); when the report names none, the worst rating
    /// of any source other than NVD and GHSA.
    Vendor,
    /// One named vendor's rating (`vendor:redhat`).
    NamedVendor(String),
    /// The worst rating of any source, the report's own label included.
    Highest,
    /// The report's own label (Trivy `Severity`, Grype `severity`, SARIF level) and ratings
    /// that name no source.
    Report,
}

impl SeveritySource {
    /// Reads `nvd`, `ghsa`, `vendor`, `vendor:<name>`, `highest` or `report`.
    pub fn parse(text: &str) -> Result<SeveritySource, String> {
        match text.trim() {
            "nvd" => Ok(SeveritySource::Nvd),
            "ghsa" => Ok(SeveritySource::Ghsa),
            "vendor" => Ok(SeveritySource::Vendor),
            "highest" => Ok(SeveritySource::Highest),
            "report" => Ok(SeveritySource::Report),
            other => match other.strip_prefix("vendor:") {
                Some(name) if !name.trim().is_empty() => {
                    Ok(SeveritySource::NamedVendor(name.trim().to_ascii_lowercase()))
                }
                _ => Err(format!(
                    "unknown severity source {other:?} (use nvd, ghsa, vendor, vendor:<name>, highest or report)"
                )),
            },
        }
    }
}

impl fmt::Display for SeveritySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeveritySource::Nvd => f.write_str("nvd"),
            SeveritySource::Ghsa => f.write_str("ghsa"),
            SeveritySource::Vendor => f.write_str("vendor"),
            SeveritySource::NamedVendor(name) => write!(f, "vendor:{name}"),
            SeveritySource::Highest => f.write_str("highest"),
            SeveritySource::Report => f.write_str("report"),
        }
    }
}

/// An ordered preference: the first source that rates a finding decides. Written as one
/// source (`highest`) or a list (`[nvd, ghsa, vendor]`). The default is `highest`, so that a
/// gate errs on the side of denying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeveritySelection(pub Vec<SeveritySource>);

impl Default for SeveritySelection {
    fn default() -> Self {
        SeveritySelection(vec![SeveritySource::Highest])
    }
}

impl fmt::Display for SeveritySelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&names.join(", "))
    }
}

impl Serialize for SeveritySelection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        names.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SeveritySelection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SeveritySelection;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a severity source or a list of them (nvd, ghsa, vendor, vendor:<name>, highest, report)")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                SeveritySource::parse(text).map(|s| SeveritySelection(vec![s])).map_err(E::custom)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut sources = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    sources.push(SeveritySource::parse(&text).map_err(serde::de::Error::custom)?);
                }
                if sources.is_empty() {
                    return Err(serde::de::Error::custom("the severity source list is empty"));
                }
                Ok(SeveritySelection(sources))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A finding's score and severity as a policy sees them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    /// CVSS score, when the deciding rating has one.
    pub score: Option<f64>,
    /// Severity.
    pub severity: Severity,
    /// Source of the deciding rating (`nvd`, `redhat`, `report`), or `None` when nothing rated it.
    pub source: Option<String>,
    /// CVSS vector of the deciding rating, if any.
    pub vector: Option<String>,
}

impl Assessment {
    fn unrated() -> Self {
        Assessment { score: None, severity: Severity::Unknown, source: None, vector: None }
    }
}

/// Scores a vector, remembering results (reports repeat the same vectors many times).
pub trait VectorScorer {
    /// The most specific score of `vector`, if it can be scored.
    fn score(&mut self, vector: &str) -> Option<f64>;
}

/// Scores with no memory.
pub struct DirectScorer;

impl VectorScorer for DirectScorer {
    fn score(&mut self, vector: &str) -> Option<f64> {
        cvss::score(vector).ok().map(|s| s.score)
    }
}

impl VectorScorer for std::collections::HashMap<String, Option<f64>> {
    fn score(&mut self, vector: &str) -> Option<f64> {
        if let Some(known) = self.get(vector) {
            return *known;
        }
        let scored = cvss::score(vector).ok().map(|s| s.score);
        self.insert(vector.to_string(), scored);
        scored
    }
}

/// A rating reduced to what decides: (severity, score).
fn evaluate(rating: &Rating, scorer: &mut dyn VectorScorer) -> (Severity, Option<f64>) {
    let is_v2 = rating.cvss_version.as_deref() == Some("2.0");
    let computed = match (&rating.vector, is_v2) {
        (Some(vector), false) => scorer.score(vector),
        _ => None,
    };
    let score = computed.or(rating.score);
    // A score decides the severity when there is one, so that scores and severities agree.
    let severity = match (score, rating.severity) {
        (Some(score), _) if is_v2 => Severity::from_v2_score(score),
        (Some(score), _) => Severity::from_score(score),
        (None, Some(label)) => label,
        (None, None) => Severity::Unknown,
    };
    (severity, score)
}

/// The best rating of one source: the newest CVSS version with a score, else its label.
fn best_of<'a>(ratings: impl Iterator<Item = &'a Rating>, scorer: &mut dyn VectorScorer) -> Option<Assessment> {
    let version_rank = |r: &Rating| match r.cvss_version.as_deref() {
        Some("4.0") => 4,
        Some("3.1") => 3,
        Some("3.0") => 2,
        Some(_) if r.vector.is_some() || r.score.is_some() => 1,
        _ => 0,
    };
    // (rank, severity, score, rating): the owned assessment is made once, for the winner.
    let mut best: Option<(u8, Severity, Option<f64>, &Rating)> = None;
    for rating in ratings {
        let (severity, score) = evaluate(rating, scorer);
        if severity == Severity::Unknown && score.is_none() {
            continue;
        }
        // Scored ratings beat labels; among scored ones the newest CVSS version wins.
        let rank = if score.is_some() { 10 + version_rank(rating) } else { 0 };
        if best.as_ref().is_none_or(|(r, ..)| rank > *r) {
            best = Some((rank, severity, score, rating));
        }
    }
    best.map(|(_, severity, score, rating)| Assessment {
        score,
        severity,
        source: Some(rating.source.clone()),
        vector: rating.vector.clone(),
    })
}

fn worst(candidates: impl Iterator<Item = Assessment>) -> Option<Assessment> {
    candidates.max_by(|a, b| {
        (a.severity, a.score.unwrap_or(-1.0))
            .partial_cmp(&(b.severity, b.score.unwrap_or(-1.0)))
            .unwrap_or(std::cmp::Ordering::Equal)
    })
}

/// Assesses `finding` under `selection`: the first source in the preference that rates it.
/// A finding none of the chosen sources rates is `unknown`, with no score.
pub fn assess(finding: &Finding, selection: &SeveritySelection, scorer: &mut dyn VectorScorer) -> Assessment {
    for source in &selection.0 {
        let chosen = match source {
            SeveritySource::Nvd => best_of(finding.ratings.iter().filter(|r| r.source == "nvd"), scorer),
            SeveritySource::Ghsa => best_of(finding.ratings.iter().filter(|r| r.source == "ghsa"), scorer),
            SeveritySource::NamedVendor(name) => best_of(finding.ratings.iter().filter(|r| r.source == *name), scorer),
            SeveritySource::Vendor => {
                match &finding.vendor {
                    Some(vendor) => best_of(finding.ratings.iter().filter(|r| r.source == *vendor), scorer),
                    None => {
                        let mut sources: Vec<&str> = finding
                            .ratings
                            .iter()
                            .map(|r| r.source.as_str())
                            .filter(|s| !matches!(*s, "nvd" | "ghsa" | "report"))
                            .collect();
                        sources.sort_unstable();
                        sources.dedup();
                        worst(sources.into_iter().filter_map(|source| {
                            best_of(finding.ratings.iter().filter(|r| r.source == source), scorer)
                        }))
                    }
                }
            }
            SeveritySource::Report => report_assessment(finding, scorer),
            SeveritySource::Highest => {
                let mut sources: Vec<&str> = finding.ratings.iter().map(|r| r.source.as_str()).collect();
                sources.sort_unstable();
                sources.dedup();
                let per_source: Vec<Assessment> = sources
                    .into_iter()
                    .filter_map(|source| best_of(finding.ratings.iter().filter(|r| r.source == source), scorer))
                    .collect();
                worst(per_source.into_iter().chain(report_assessment(finding, scorer)))
            }
        };
        if let Some(assessment) = chosen {
            return assessment;
        }
    }
    Assessment::unrated()
}

fn report_assessment(finding: &Finding, scorer: &mut dyn VectorScorer) -> Option<Assessment> {
    let unsourced = best_of(finding.ratings.iter().filter(|r| r.source == "report"), scorer);
    let label = finding.reported_severity.filter(|s| *s != Severity::Unknown).map(|severity| Assessment {
        score: None,
        severity,
        source: Some("report".into()),
        vector: None,
    });
    unsourced.or(label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{FixState, Package};

    fn rating(source: &str, vector: Option<&str>, score: Option<f64>, label: Option<Severity>) -> Rating {
        Rating {
            source: source.into(),
            cvss_version: vector
                .and_then(|v| v.strip_prefix("CVSS:").and_then(|r| r.split('/').next()).map(str::to_string)),
            vector: vector.map(str::to_string),
            score,
            severity: label,
        }
    }

    fn finding(ratings: Vec<Rating>, vendor: Option<&str>, reported: Option<Severity>) -> Finding {
        Finding {
            id: "CVE-2025-0001".into(),
            aliases: Vec::new(),
            package: Package { name: "openssl".into(), ..Package::default() },
            fixed_versions: Vec::new(),
            fix_state: FixState::Unknown,
            reported_severity: reported,
            ratings,
            vendor: vendor.map(str::to_string),
            published: None,
            title: None,
            location: None,
            report: "test".into(),
        }
    }

    fn selection(text: &str) -> SeveritySelection {
        yaml_serde::from_str(text).unwrap()
    }

    const CRITICAL: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";
    const MEDIUM: &str = "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:N/A:N";

    #[test]
    fn the_policy_not_the_report_picks_the_source() {
        let found = finding(
            vec![
                rating("nvd", Some(CRITICAL), Some(9.8), None),
                rating("redhat", Some(MEDIUM), Some(5.3), None),
                rating("redhat", None, None, Some(Severity::Low)),
            ],
            Some("redhat"),
            Some(Severity::Low),
        );
        let mut scorer = DirectScorer;
        let nvd = assess(&found, &selection("nvd"), &mut scorer);
        assert_eq!((nvd.score, nvd.severity), (Some(9.8), Severity::Critical));
        let vendor = assess(&found, &selection("[vendor, nvd]"), &mut scorer);
        assert_eq!((vendor.score, vendor.severity), (Some(5.3), Severity::Medium));
        assert_eq!(vendor.source.as_deref(), Some("redhat"));
        let report = assess(&found, &selection("report"), &mut scorer);
        assert_eq!((report.score, report.severity), (None, Severity::Low));
        let highest = assess(&found, &selection("highest"), &mut scorer);
        assert_eq!(highest.severity, Severity::Critical);
        let named = assess(&found, &selection("vendor:redhat"), &mut scorer);
        assert_eq!(named.score, Some(5.3));
    }

    #[test]
    fn the_first_source_that_rates_decides_and_none_means_unknown() {
        let found = finding(vec![rating("ghsa", Some(MEDIUM), None, None)], None, None);
        let mut scorer = DirectScorer;
        let chosen = assess(&found, &selection("[nvd, ghsa]"), &mut scorer);
        // The score is computed from the vector when the report gives none.
        assert_eq!((chosen.score, chosen.source.as_deref()), (Some(5.3), Some("ghsa")));
        let unrated = assess(&found, &selection("nvd"), &mut scorer);
        assert_eq!((unrated.severity, unrated.score), (Severity::Unknown, None));
    }

    #[test]
    fn recomputed_scores_win_over_reported_ones() {
        // A report that says 8.2 for a vector that scores otherwise is believed by its vector.
        let found = finding(vec![rating("nvd", Some(MEDIUM), Some(8.2), None)], None, None);
        let assessed = assess(&found, &SeveritySelection::default(), &mut DirectScorer);
        assert_eq!(assessed.score, Some(5.3));
    }

    #[test]
    fn unknown_sources_are_refused() {
        let error = yaml_serde::from_str::<SeveritySelection>("[nvd, nvdd]").unwrap_err().to_string();
        assert!(error.contains("unknown severity source \"nvdd\""), "{error}");
        assert!(yaml_serde::from_str::<SeveritySelection>("[]").is_err());
    }
}
