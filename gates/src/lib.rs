//! Promotion gates: scan reports and policies in, verdicts with their evidence out.
//!
//! `gates` owns CVSS scoring (v3.0, v3.1, v4.0), the scan-report readers (Trivy, Grype,
//! SARIF 2.1.0, CycloneDX) that normalize every format into one [`Finding`], VEX (OpenVEX and
//! CycloneDX), the choice of severity source, and gate policies: per-environment thresholds,
//! expiring exceptions and Rego rules. It is pure: it must not do network I/O, touch the
//! store, or read the clock — the caller passes the time in, so that exception expiry is
//! testable and a verdict can be reproduced. The only I/O is reading the policy file and the
//! documents it names from the local disk. Running scanners and storing verdicts is the
//! engine's job.
//!
//! The flow: [`reports::parse`] each document, load a [`Policy`], then [`evaluate`] a
//! [`GateInput`] into a [`Verdict`].

pub mod cvss;
pub mod finding;
pub mod policy;
pub mod purl;
pub mod rego;
pub mod reports;
pub mod severity;
pub mod severity_source;
pub mod verdict;
pub mod vex;

pub use finding::{Finding, FixState, Package, Rating};
pub use policy::{Exception, Policy, PolicyError, Thresholds};
pub use rego::{RegoError, RegoPolicy};
pub use reports::{Document, ReportError, ReportFormat, ReportSummary};
pub use severity::Severity;
pub use severity_source::{Assessment, SeveritySelection, SeveritySource};
pub use verdict::{AssessedFinding, Decision, Evidence, GateInput, Suppression, Verdict, evaluate};
pub use vex::{Artifact, VexStatement, VexStatus};
