//! Qualitative severity, shared by scanners' labels, CVSS scores and policies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How bad a finding is, on the CVSS qualitative scale plus `unknown`.
///
/// Ordered from least to most severe, so `max()` picks the worst. Scanner labels map onto it:
/// Grype's and Debian's `negligible` and SARIF's `none` level become [`Severity::None`];
/// anything a scanner could not rate is [`Severity::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Not rated.
    Unknown,
    /// CVSS 0.0, or rated negligible.
    None,
    /// CVSS 0.1–3.9.
    Low,
    /// CVSS 4.0–6.9.
    Medium,
    /// CVSS 7.0–8.9.
    High,
    /// CVSS 9.0–10.0.
    Critical,
}

impl Severity {
    /// Every severity, least severe first.
    pub const ALL: [Severity; 6] =
        [Severity::Unknown, Severity::None, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

    /// Lowercase name (`critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The CVSS v3.x / v4.0 rating of a score.
    pub fn from_score(score: f64) -> Severity {
        if score < 0.1 {
            Severity::None
        } else if score < 4.0 {
            Severity::Low
        } else if score < 7.0 {
            Severity::Medium
        } else if score < 9.0 {
            Severity::High
        } else {
            Severity::Critical
        }
    }

    /// The CVSS v2 rating of a score (v2 has no `critical` band).
    pub fn from_v2_score(score: f64) -> Severity {
        if score < 4.0 {
            Severity::Low
        } else if score < 7.0 {
            Severity::Medium
        } else {
            Severity::High
        }
    }

    /// Trivy's numeric vendor severities (`VendorSeverity`): 0 unknown … 4 critical.
    pub fn from_trivy_number(number: i64) -> Severity {
        match number {
            1 => Severity::Low,
            2 => Severity::Medium,
            3 => Severity::High,
            4 => Severity::Critical,
            _ => Severity::Unknown,
        }
    }

    /// Reads a scanner's label leniently: case-insensitive, with the synonyms scanners use.
    /// Labels that mean nothing known become [`Severity::Unknown`].
    pub fn from_label(label: &str) -> Severity {
        label.parse().unwrap_or(Severity::Unknown)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A label that names no severity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("read severity {label:?} (use unknown, none, low, medium, high or critical)")]
pub struct SeverityParseError {
    /// What was given.
    pub label: String,
}

impl FromStr for Severity {
    type Err = SeverityParseError;

    fn from_str(label: &str) -> Result<Self, Self::Err> {
        match label.trim().to_ascii_lowercase().as_str() {
            "unknown" | "unspecified" | "" => Ok(Severity::Unknown),
            "none" | "negligible" | "info" | "informational" => Ok(Severity::None),
            "low" => Ok(Severity::Low),
            "medium" | "moderate" => Ok(Severity::Medium),
            "high" | "important" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            _ => Err(SeverityParseError { label: label.to_string() }),
        }
    }
}

impl Serialize for Severity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let label = String::deserialize(deserializer)?;
        label.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_follow_the_cvss_rating_scale() {
        let cases = [
            (0.0, Severity::None),
            (0.1, Severity::Low),
            (3.9, Severity::Low),
            (4.0, Severity::Medium),
            (6.9, Severity::Medium),
            (7.0, Severity::High),
            (8.9, Severity::High),
            (9.0, Severity::Critical),
            (10.0, Severity::Critical),
        ];
        for (score, expected) in cases {
            assert_eq!(Severity::from_score(score), expected, "{score}");
        }
        assert_eq!(Severity::from_v2_score(10.0), Severity::High);
        assert_eq!(Severity::from_v2_score(3.9), Severity::Low);
    }

    #[test]
    fn scanner_labels_map_onto_the_scale() {
        assert_eq!(Severity::from_label("CRITICAL"), Severity::Critical);
        assert_eq!(Severity::from_label("Negligible"), Severity::None);
        assert_eq!(Severity::from_label("moderate"), Severity::Medium);
        assert_eq!(Severity::from_label("weird"), Severity::Unknown);
        assert!("weird".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::High && Severity::None > Severity::Unknown);
    }
}
