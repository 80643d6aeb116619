//! Gate policies against real reports: per-environment thresholds, counts, exception expiry on
//! a fixed clock, VEX suppression, Rego, severity-source choice, unfixed and age rules — each
//! with a case that allows and one that denies.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use gantry_gates::reports::{self, Document};
use gantry_gates::{Artifact, Decision, GateInput, Policy, Severity, Suppression, Verdict, VexStatus, evaluate};

fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/scans").join(relative)
}

fn report(relative: &str) -> Document {
    reports::read(&fixture(relative)).unwrap()
}

fn at(time: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(time).unwrap().with_timezone(&Utc)
}

/// A policy from YAML, with relative paths resolving in the scans fixture folder.
fn policy(yaml: &str) -> Policy {
    Policy::from_yaml("policy.yaml", yaml, &fixture("")).unwrap()
}

const NOW: &str = "2026-05-01T12:00:00Z";

fn gate(policy: &Policy, documents: &[&Document], environment: Option<&str>, now: &str) -> Verdict {
    let findings: Vec<_> = documents.iter().flat_map(|d| d.findings.clone()).collect();
    let vex: Vec<_> = documents.iter().flat_map(|d| d.vex.clone()).collect();
    let summaries: Vec<_> = documents.iter().map(|d| d.summary()).collect();
    let input = GateInput { vex: &vex, reports: &summaries, environment, ..GateInput::new(&findings, at(now)) };
    evaluate(policy, &input).unwrap()
}

fn assert_allows(verdict: &Verdict) {
    assert_eq!(verdict.decision, Decision::Allow, "{:#?}", verdict.reasons);
    assert!(verdict.reasons.is_empty());
}

fn assert_denies(verdict: &Verdict, reason: &str) {
    assert_eq!(verdict.decision, Decision::Deny);
    assert!(verdict.reasons.iter().any(|r| r == reason), "no reason {reason:?} among {:#?}", verdict.reasons);
}

#[test]
fn thresholds_differ_per_environment() {
    let pip = report("trivy/trivy-golden.pip.json");
    let policy = policy("default: { max_score: 9.0 }\nenvironments:\n  staging: { max_score: 7.0 }\n");
    assert_allows(&gate(&policy, &[&pip], Some("dev"), NOW));
    let staging = gate(&policy, &[&pip], Some("staging"), NOW);
    assert_denies(
        &staging,
        "CVE-2019-14806 in Werkzeug@0.11 scores 7.5 (high, redhat), at or above the limit 7.0 in staging",
    );
    assert_eq!(staging.reasons.len(), 1, "{:#?}", staging.reasons);
    assert_eq!(staging.evidence.thresholds.max_score, Some(7.0));
    assert_eq!(staging.evidence.reports[0].findings, 2);
    assert_eq!(staging.evidence.reports[0].sha256.len(), 64);
    // `--max-score` alone is a complete policy.
    assert_denies(
        &gate(&Policy::max_score(6.1), &[&pip], None, NOW),
        "CVE-2020-28724 in Werkzeug@0.11 scores 6.1 (medium, nvd), at or above the limit 6.1",
    );
    assert_allows(&gate(&Policy::max_score(7.6), &[&pip], None, NOW));
}

#[test]
fn counts_per_severity_count_each_vulnerability_and_package_once() {
    let debian = report("trivy/trivy-golden.debian-stretch.json");
    let policy = policy(
        "default: { max_count: { medium: 5 } }\n\
         environments:\n  prod: { max_count: { medium: 3, high: 0 } }\n",
    );
    let dev = gate(&policy, &[&debian], Some("dev"), NOW);
    assert_allows(&dev);
    assert_eq!(dev.counts.get(&Severity::Medium), Some(&4));
    assert_eq!(dev.counts.get(&Severity::High), Some(&1));
    let prod = gate(&policy, &[&debian], Some("prod"), NOW);
    assert_denies(&prod, "1 high finding, more than the 0 allowed in prod");
    assert_denies(&prod, "4 medium findings, more than the 3 allowed in prod");
    // The same report twice is the same risk, not twice the risk.
    let twice = gate(&policy, &[&debian, &debian], Some("dev"), NOW);
    assert_allows(&twice);
    assert_eq!(twice.findings.len(), 10);
}

#[test]
fn exceptions_apply_until_the_moment_they_expire() {
    let spring = report("trivy/trivy-golden.spring4shell-jre11.json");
    let policy = policy(
        "default: { max_score: 7.0 }\n\
         exceptions:\n\
         \x20 - id: CVE-2022-22965\n\
         \x20   package: org.springframework:spring-beans\n\
         \x20   justification: data binding is disabled in this service\n\
         \x20   approver: security@example.com\n\
         \x20   expires: 2026-06-01\n\
         \x20 - id: CVE-2022-22965\n\
         \x20   environments: [dev]\n\
         \x20   justification: dev only\n\
         \x20   approver: lead@example.com\n\
         \x20   expires: 2027-01-01T00:00:00Z\n",
    );
    let before = gate(&policy, &[&spring], Some("staging"), "2026-05-31T23:59:59Z");
    assert_allows(&before);
    let Some(Suppression::Exception { exception }) = &before.findings[0].suppressed else {
        panic!("not suppressed by the exception: {:#?}", before.findings[0]);
    };
    assert_eq!(exception.approver, "security@example.com");
    assert_eq!(before.evidence.exceptions_applied.len(), 1);
    assert_eq!(before.evidence.exceptions_applied[0].findings, 1);

    let after = gate(&policy, &[&spring], Some("staging"), "2026-06-01T00:00:00Z");
    assert_denies(
        &after,
        "CVE-2022-22965 in org.springframework:spring-beans@5.3.15 scores 9.8 (critical, nvd), at or above the limit 7.0 in staging",
    );
    assert_eq!(
        after.notes,
        [
            "exception for CVE-2022-22965 in org.springframework:spring-beans (approved by security@example.com) expired at 2026-06-01T00:00:00Z and no longer covers 1 finding"
        ]
    );
    assert_eq!(after.evidence.exceptions_expired.len(), 1);
    // An exception scoped to dev still holds there.
    assert_allows(&gate(&policy, &[&spring], Some("dev"), "2026-06-01T00:00:00Z"));
}

#[test]
fn vex_not_affected_suppresses_with_the_statement_as_evidence() {
    let gomod = report("trivy/trivy-golden.gomod.json");
    let strict = policy("default: { max_score: 5.0 }\n");
    assert_denies(
        &gate(&strict, &[&gomod], None, NOW),
        "CVE-2022-23628 in github.com/open-policy-agent/opa@v0.35.0 scores 5.3 (medium, nvd), at or above the limit 5.0",
    );
    let with_vex = policy("default: { max_score: 5.0 }\nvex: [openvex/trivy-integration.openvex.json]\n");
    let verdict = gate(&with_vex, &[&gomod], None, NOW);
    assert_allows(&verdict);
    let opa = verdict.findings.iter().find(|f| f.id == "CVE-2022-23628").unwrap();
    let Some(Suppression::Vex { statement }) = &opa.suppressed else {
        panic!("not suppressed by VEX: {opa:#?}");
    };
    assert_eq!(statement.status, VexStatus::NotAffected);
    assert_eq!(statement.justification.as_deref(), Some("vulnerable_code_not_in_execute_path"));
    assert_eq!(statement.impact_statement.as_deref(), Some("The vulnerable code isn't called"));
    assert_eq!(verdict.evidence.vex_applied.len(), 1);

    // CycloneDX analysis in the report itself: `not_affected` suppresses, `in_triage` does not.
    let critical = policy("default: { max_score: 9.0 }\n");
    assert_allows(&gate(&critical, &[&report("cyclonedx/defectdojo.valid-vulnerability-1.4.cdx.json")], None, NOW));
    assert_denies(
        &gate(&critical, &[&report("cyclonedx/defectdojo.log4j.cdx.json")], None, NOW),
        "CVE-2021-44228 in org.apache.logging.log4j:log4j-core@2.13.2 scores 10.0 (critical, nvd), at or above the limit 9.0",
    );
}

#[test]
fn vex_about_an_image_applies_only_to_that_image() {
    let debian = report("trivy/trivy-golden.debian-stretch.json");
    // The fixture set has no VEX about this image, so the test writes one.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vex.json"),
        r#"{"@context": "https://openvex.dev/ns/v0.2.0", "statements": [
            {"vulnerability": {"name": "CVE-2019-18276"}, "status": "not_affected",
             "justification": "vulnerable_code_not_in_execute_path",
             "products": [{"@id": "pkg:oci/debian", "subcomponents": [{"@id": "pkg:deb/debian/bash"}]}]}
        ]}"#,
    )
    .unwrap();
    let policy =
        Policy::from_yaml("policy.yaml", "default: { max_count: { high: 0 } }\nvex: [vex.json]\n", dir.path()).unwrap();
    let findings = debian.findings.clone();
    let image = |repository: &str| Artifact { repository: repository.into(), digest: None, tag: None };
    let debian_image = image("library/debian");
    let other_image = image("acme/app");
    let judge = |artifact: &Artifact| {
        evaluate(&policy, &GateInput { artifact: Some(artifact), ..GateInput::new(&findings, at(NOW)) }).unwrap()
    };
    assert_allows(&judge(&debian_image));
    assert_denies(&judge(&other_image), "1 high finding, more than the 0 allowed");
}

#[test]
fn rego_deny_messages_become_reasons() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gate.rego"),
        r#"package gantry.gate

deny contains msg if {
    input.environment == "prod"
    some f in input.findings
    f.suppressed == null
    f.severity == "critical"
    count(f.fixed_versions) > 0
    msg := sprintf("%s has a fix (%s) and must be upgraded before prod", [f.id, concat(", ", f.fixed_versions)])
}
"#,
    )
    .unwrap();
    let policy = Policy::from_yaml("policy.yaml", "rego: [gate.rego]\n", dir.path()).unwrap();
    let spring = report("trivy/trivy-golden.spring4shell-jre11.json");
    assert_allows(&gate(&policy, &[&spring], Some("staging"), NOW));
    let prod = gate(&policy, &[&spring], Some("prod"), NOW);
    assert_eq!(prod.reasons, ["CVE-2022-22965 has a fix (5.3.18) and must be upgraded before prod"]);
    assert_eq!(prod.evidence.rego_modules.len(), 1);
}

#[test]
fn the_severity_source_is_the_policys_choice() {
    // Trivy rates bash LOW (Debian's label) while NVD scores it 7.8.
    let debian = report("trivy/trivy-golden.debian-stretch.json");
    let by = |source: &str| policy(&format!("default: {{ severity_source: {source}, max_count: {{ high: 0 }} }}\n"));
    assert_allows(&gate(&by("report"), &[&debian], None, NOW));
    assert_allows(&gate(&by("vendor"), &[&debian], None, NOW));
    assert_denies(&gate(&by("[nvd, vendor]"), &[&debian], None, NOW), "1 high finding, more than the 0 allowed");
    // NVD says 9.8, Red Hat 8.1.
    let spring = report("trivy/trivy-golden.spring4shell-jre11.json");
    let scored = |source: &str| policy(&format!("default: {{ severity_source: {source}, max_score: 9.0 }}\n"));
    assert_allows(&gate(&scored("vendor:redhat"), &[&spring], None, NOW));
    let nvd = gate(&scored("nvd"), &[&spring], None, NOW);
    assert_eq!(nvd.decision, Decision::Deny);
    assert_eq!(nvd.evidence.severity_source, "nvd");
    // Grype: NVD 5.5 against Red Hat's 6.2 for the same avahi finding.
    let grype = report("grype/defectdojo.issue_9618.json");
    let avahi: Vec<_> = grype.findings.iter().filter(|f| f.id == "CVE-2023-38473").cloned().collect();
    let limit_six = |source: &str| policy(&format!("default: {{ severity_source: {source}, max_score: 6.0 }}\n"));
    let nvd = evaluate(&limit_six("nvd"), &GateInput::new(&avahi, at(NOW))).unwrap();
    assert_allows(&nvd);
    let vendor = evaluate(&limit_six("vendor"), &GateInput::new(&avahi, at(NOW))).unwrap();
    assert_eq!(vendor.decision, Decision::Deny);
    assert_eq!(vendor.findings[0].severity_source.as_deref(), Some("redhat"));
}

#[test]
fn unfixed_findings_can_be_ignored() {
    let python = report("trivy/trivy-golden.distroless-python27.json");
    let strict = policy("default: { max_score: 5.0 }\n");
    let lenient = policy("default: { max_score: 5.0, ignore_unfixed: true }\n");
    let denied = gate(&strict, &[&python], None, NOW);
    assert_eq!(denied.decision, Decision::Deny);
    assert!(denied.reasons.iter().any(|r| r.starts_with("CVE-2019-1551 in libssl1.1@")), "{:#?}", denied.reasons);
    let verdict = gate(&lenient, &[&python], None, NOW);
    assert!(!verdict.reasons.iter().any(|r| r.starts_with("CVE-2019-1551 ")), "{:#?}", verdict.reasons);
    assert!(
        verdict.findings.iter().filter(|f| f.id == "CVE-2019-1551").all(|f| f.suppressed == Some(Suppression::Unfixed))
    );
}

#[test]
fn old_findings_without_a_decision_are_denied() {
    // Published 2022-04-01.
    let spring = report("trivy/trivy-golden.spring4shell-jre11.json");
    let policy = policy("default: { max_age_days: 30 }\n");
    assert_allows(&gate(&policy, &[&spring], None, "2022-04-20T00:00:00Z"));
    assert_denies(
        &gate(&policy, &[&spring], Some("prod"), "2022-06-01T00:00:00Z"),
        "CVE-2022-22965 in org.springframework:spring-beans@5.3.15 was published 2022-04-01 (60 days ago) and has no decision (fix, VEX or exception); the limit in prod is 30 days",
    );
}
