//! CVSS v3.0, v3.1 and v4.0 scoring.
//!
//! Scores come from the `cvss` crate, which implements the FIRST formulas (v3.x) and the v4.0
//! macro-vector lookup. The crate accepts vectors that lack base metrics (it scores a missing
//! metric as zero), so this module checks the vector's shape first: every base metric present
//! exactly once, every component `KEY:VALUE`. The crate's results were checked against every
//! vector of the reference test suites kept under `tests/fixtures/cvss/` (see the crate's
//! integration tests), and agree with all of them.

use std::fmt;

use serde::Serialize;

use crate::severity::Severity;

/// A CVSS version this module scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum CvssVersion {
    /// CVSS v3.0.
    #[serde(rename = "3.0")]
    V3_0,
    /// CVSS v3.1.
    #[serde(rename = "3.1")]
    V3_1,
    /// CVSS v4.0.
    #[serde(rename = "4.0")]
    V4_0,
}

impl CvssVersion {
    /// `3.0`, `3.1` or `4.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            CvssVersion::V3_0 => "3.0",
            CvssVersion::V3_1 => "3.1",
            CvssVersion::V4_0 => "4.0",
        }
    }
}

impl fmt::Display for CvssVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which metric groups produced [`CvssScore::score`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreKind {
    /// v3.x base score.
    Base,
    /// v3.x temporal score (base plus E/RL/RC).
    Temporal,
    /// v3.x environmental score (with the temporal metrics, if any).
    Environmental,
    /// v4.0 base metrics only.
    #[serde(rename = "CVSS-B")]
    CvssB,
    /// v4.0 base and threat metrics.
    #[serde(rename = "CVSS-BT")]
    CvssBT,
    /// v4.0 base and environmental metrics.
    #[serde(rename = "CVSS-BE")]
    CvssBE,
    /// v4.0 base, threat and environmental metrics.
    #[serde(rename = "CVSS-BTE")]
    CvssBTE,
}

impl ScoreKind {
    /// Name as printed (`environmental`, `CVSS-BT`).
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreKind::Base => "base",
            ScoreKind::Temporal => "temporal",
            ScoreKind::Environmental => "environmental",
            ScoreKind::CvssB => "CVSS-B",
            ScoreKind::CvssBT => "CVSS-BT",
            ScoreKind::CvssBE => "CVSS-BE",
            ScoreKind::CvssBTE => "CVSS-BTE",
        }
    }
}

/// The scores of one vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CvssScore {
    /// The vector as given (trimmed).
    pub vector: String,
    /// Its version.
    pub version: CvssVersion,
    /// Base score (v4.0: the CVSS-B score of the base metrics alone).
    pub base: f64,
    /// v3.x temporal score, when a temporal metric is set (not `X`).
    pub temporal: Option<f64>,
    /// v3.x environmental score, when an environmental metric is set (not `X`).
    pub environmental: Option<f64>,
    /// The most specific score the vector defines: v3.x environmental, else temporal, else
    /// base; v4.0 the score of the whole vector.
    pub score: f64,
    /// Which score [`CvssScore::score`] is.
    pub kind: ScoreKind,
    /// Rating of [`CvssScore::score`].
    pub severity: Severity,
}

/// Why a vector cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CvssError {
    /// The vector does not start with a version this module scores.
    #[error("score CVSS vector {vector:?}: unsupported version prefix {prefix:?} (use CVSS:3.0, CVSS:3.1 or CVSS:4.0)")]
    UnsupportedVersion {
        /// The vector.
        vector: String,
        /// Its first component.
        prefix: String,
    },
    /// A base metric is absent.
    #[error("score CVSS vector {vector:?}: base metric {metric} is missing")]
    MissingMetric {
        /// The vector.
        vector: String,
        /// The missing metric's abbreviation.
        metric: &'static str,
    },
    /// A component is malformed, unknown, repeated or has a value the metric does not take.
    #[error("score CVSS vector {vector:?}: {reason}")]
    Invalid {
        /// The vector.
        vector: String,
        /// What is wrong.
        reason: String,
    },
}

const V3_BASE: [&str; 8] = ["AV", "AC", "PR", "UI", "S", "C", "I", "A"];
const V3_TEMPORAL: [&str; 3] = ["E", "RL", "RC"];
const V3_ENVIRONMENTAL: [&str; 11] = ["CR", "IR", "AR", "MAV", "MAC", "MPR", "MUI", "MS", "MC", "MI", "MA"];
const V4_BASE: [&str; 11] = ["AV", "AT", "AC", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA"];

/// Scores one vector (`CVSS:3.0/…`, `CVSS:3.1/…` or `CVSS:4.0/…`).
pub fn score(vector: &str) -> Result<CvssScore, CvssError> {
    let vector = vector.trim();
    let invalid = |reason: String| CvssError::Invalid { vector: vector.to_string(), reason };
    let mut components = Vec::new();
    for component in vector.split('/') {
        let Some((key, value)) = component.split_once(':') else {
            return Err(invalid(format!("component {component:?} is not of the form METRIC:VALUE")));
        };
        if key.is_empty() || value.is_empty() || value.contains(':') {
            return Err(invalid(format!("component {component:?} is not of the form METRIC:VALUE")));
        }
        components.push((key, value));
    }
    let (prefix, metrics) = components.split_first().ok_or_else(|| invalid("the vector is empty".into()))?;
    let version = match *prefix {
        ("CVSS", "3.0") => CvssVersion::V3_0,
        ("CVSS", "3.1") => CvssVersion::V3_1,
        ("CVSS", "4.0") => CvssVersion::V4_0,
        (key, value) => {
            return Err(CvssError::UnsupportedVersion { vector: vector.to_string(), prefix: format!("{key}:{value}") });
        }
    };
    let required: &[&'static str] = match version {
        CvssVersion::V3_0 | CvssVersion::V3_1 => &V3_BASE,
        CvssVersion::V4_0 => &V4_BASE,
    };
    for metric in required {
        if !metrics.iter().any(|(key, _)| key == metric) {
            return Err(CvssError::MissingMetric { vector: vector.to_string(), metric });
        }
    }
    let is_set = |group: &[&str]| metrics.iter().any(|(key, value)| group.contains(key) && *value != "X");
    match version {
        CvssVersion::V3_0 | CvssVersion::V3_1 => {
            let parsed: cvss::v3::Vector = vector.parse().map_err(|e: cvss::Error| invalid(e.to_string()))?;
            let base = parsed.base_score().value();
            let temporal = is_set(&V3_TEMPORAL).then(|| parsed.temporal_score().value());
            let environmental = is_set(&V3_ENVIRONMENTAL).then(|| parsed.environmental_score().value());
            let (score, kind) = match (environmental, temporal) {
                (Some(score), _) => (score, ScoreKind::Environmental),
                (None, Some(score)) => (score, ScoreKind::Temporal),
                (None, None) => (base, ScoreKind::Base),
            };
            Ok(CvssScore {
                vector: vector.to_string(),
                version,
                base,
                temporal,
                environmental,
                score,
                kind,
                severity: Severity::from_score(score),
            })
        }
        CvssVersion::V4_0 => {
            let parsed: cvss::v4::Vector = vector.parse().map_err(|e: cvss::Error| invalid(e.to_string()))?;
            let whole = parsed.score().value();
            let kind = match parsed.nomenclature() {
                cvss::v4::Nomenclature::CvssB => ScoreKind::CvssB,
                cvss::v4::Nomenclature::CvssBT => ScoreKind::CvssBT,
                cvss::v4::Nomenclature::CvssBE => ScoreKind::CvssBE,
                cvss::v4::Nomenclature::CvssBTE => ScoreKind::CvssBTE,
            };
            let base = if kind == ScoreKind::CvssB {
                whole
            } else {
                // The base score is the score of the base metrics alone (supplemental metrics
                // never change a score, so they may stay out too).
                let base_only: Vec<String> = std::iter::once("CVSS:4.0".to_string())
                    .chain(
                        metrics
                            .iter()
                            .filter(|(key, _)| V4_BASE.contains(key))
                            .map(|(key, value)| format!("{key}:{value}")),
                    )
                    .collect();
                base_only
                    .join("/")
                    .parse::<cvss::v4::Vector>()
                    .map_err(|e: cvss::Error| invalid(e.to_string()))?
                    .score()
                    .value()
            };
            Ok(CvssScore {
                vector: vector.to_string(),
                version,
                base,
                temporal: None,
                environmental: None,
                score: whole,
                kind,
                severity: Severity::from_score(whole),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v31_base_vector_scores_its_base() {
        let scored = score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").unwrap();
        assert_eq!(scored.score, 9.8);
        assert_eq!(scored.kind, ScoreKind::Base);
        assert_eq!(scored.severity, Severity::Critical);
        assert_eq!(scored.temporal, None);
    }

    #[test]
    fn v3_picks_the_most_specific_score() {
        let temporal = score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O").unwrap();
        assert_eq!(temporal.kind, ScoreKind::Temporal);
        assert_eq!(temporal.base, 9.8);
        assert!(temporal.score < temporal.base);
        // `X` means "not defined": the group is not set.
        let unset = score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:X/MAV:X").unwrap();
        assert_eq!(unset.kind, ScoreKind::Base);
        let environmental = score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/MAV:P").unwrap();
        assert_eq!(environmental.kind, ScoreKind::Environmental);
        assert!(environmental.score < 9.8);
    }

    #[test]
    fn v4_scores_the_whole_vector_and_keeps_the_base() {
        let scored = score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:U").unwrap();
        assert_eq!(scored.kind, ScoreKind::CvssBT);
        assert_eq!(scored.base, 9.3);
        assert!(scored.score < scored.base, "{scored:?}");
    }

    #[test]
    fn bad_vectors_say_what_is_wrong() {
        let cases = [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H", "base metric A is missing"),
            ("CVSS:2.0/AV:N", "unsupported version prefix"),
            ("AV:N/AC:L/Au:N/C:P/I:P/A:P", "unsupported version prefix"),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:Q", "A"),
            ("CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "AV"),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/ZZ:1", "ZZ"),
            ("CVSS:3.1/AV:N/AC", "not of the form METRIC:VALUE"),
            ("", "not of the form"),
        ];
        for (vector, expected) in cases {
            let error = score(vector).unwrap_err().to_string();
            assert!(error.contains(expected), "{vector}: {error}");
        }
    }
}
