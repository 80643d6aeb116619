//! Every scan report and VEX document under `tests/fixtures/scans/` parses, with the expected
//! number of findings and statements, and a few findings per format read exactly.

use std::path::{Path, PathBuf};

use gantry_gates::reports::{self, Document, ReportFormat};
use gantry_gates::severity_source::{DirectScorer, assess};
use gantry_gates::{Finding, FixState, Severity, SeveritySelection, VexStatus};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/scans")
}

fn read(relative: &str) -> Document {
    let path = fixtures().join(relative);
    reports::read(&path).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn find<'a>(document: &'a Document, id: &str, package: &str) -> &'a Finding {
    document
        .findings
        .iter()
        .find(|f| f.id == id && f.package.name == package)
        .unwrap_or_else(|| panic!("{}: no {id} in {package}", document.name))
}

fn score_by(finding: &Finding, selection: &str) -> (Option<f64>, Severity, Option<String>) {
    let selection: SeveritySelection = yaml_serde::from_str(selection).unwrap();
    let assessed = assess(finding, &selection, &mut DirectScorer);
    (assessed.score, assessed.severity, assessed.source)
}

/// (file, format, findings, VEX statements) for every fixture.
const EXPECTED: &[(&str, ReportFormat, usize, usize)] = &[
    ("trivy/defectdojo.all_statuses.json", ReportFormat::Trivy, 8, 0),
    ("trivy/defectdojo.cvss_severity_source.json", ReportFormat::Trivy, 2, 0),
    ("trivy/defectdojo.cvssv4_severity_source.json", ReportFormat::Trivy, 3, 0),
    ("trivy/defectdojo.issue_9333.json", ReportFormat::Trivy, 13, 0),
    ("trivy/defectdojo.kubernetes.json", ReportFormat::Trivy, 10, 0),
    ("trivy/defectdojo.legacy_many_vulns.json", ReportFormat::Trivy, 93, 0),
    ("trivy/trivy-golden.alpine-39.json", ReportFormat::Trivy, 6, 0),
    ("trivy/trivy-golden.debian-stretch.json", ReportFormat::Trivy, 5, 0),
    ("trivy/trivy-golden.distroless-python27.json", ReportFormat::Trivy, 4, 0),
    ("trivy/trivy-golden.fluentd-multiple-lockfiles.json", ReportFormat::Trivy, 3, 0),
    ("trivy/trivy-golden.gomod-vex.json", ReportFormat::Trivy, 4, 0),
    ("trivy/trivy-golden.gomod.json", ReportFormat::Trivy, 5, 0),
    ("trivy/trivy-golden.npm.json", ReportFormat::Trivy, 1, 0),
    ("trivy/trivy-golden.pip.json", ReportFormat::Trivy, 2, 0),
    ("trivy/trivy-golden.spring4shell-jre11.json", ReportFormat::Trivy, 1, 0),
    ("grype/defectdojo.check_all_fields.json", ReportFormat::Grype, 6, 0),
    ("grype/defectdojo.fix_available.json", ReportFormat::Grype, 1, 0),
    ("grype/defectdojo.issue_9618.json", ReportFormat::Grype, 35, 0),
    ("grype/grype-snapshot.TestJsonDirsPresenter.json", ReportFormat::Grype, 2, 0),
    ("grype/grype-snapshot.TestJsonImgsPresenter.json", ReportFormat::Grype, 2, 0),
    ("sarif/defectdojo.codeQL-output.sarif.json", ReportFormat::Sarif, 72, 0),
    ("sarif/grype-snapshot.TestSarifPresenter_directory.sarif.json", ReportFormat::Sarif, 2, 0),
    ("sarif/grype-snapshot.TestSarifPresenter_image.sarif.json", ReportFormat::Sarif, 2, 0),
    ("sarif/trivy-golden.alpine-310.sarif.json", ReportFormat::Sarif, 4, 0),
    ("cyclonedx/bom-examples.SBOM.cern-lhc-vdm-editor.bom.json", ReportFormat::CycloneDx, 0, 0),
    ("cyclonedx/bom-examples.SBOM.laravel-7.12.0.bom.1.4.json", ReportFormat::CycloneDx, 0, 0),
    ("cyclonedx/bom-examples.VEX.CISA-Case-1.vex-affected.json", ReportFormat::CycloneDx, 1, 1),
    ("cyclonedx/bom-examples.VEX.CISA-Case-1.vex-not_affected.json", ReportFormat::CycloneDx, 1, 1),
    ("cyclonedx/bom-examples.VEX.CISA-Case-2.vex.json", ReportFormat::CycloneDx, 19, 19),
    ("cyclonedx/bom-examples.VEX.Use-Cases.Case-1.vex.json", ReportFormat::CycloneDx, 1, 1),
    ("cyclonedx/bom-examples.VEX.Use-Cases.Case-10.vex.json", ReportFormat::CycloneDx, 1, 1),
    ("cyclonedx/bom-examples.VEX.Use-Cases.Case-11.vex.json", ReportFormat::CycloneDx, 19, 19),
    ("cyclonedx/bom-examples.VEX.Use-Cases.Case-2.vex.json", ReportFormat::CycloneDx, 1, 1),
    ("cyclonedx/bom-examples.VEX.Use-Cases.Case-3.vex.json", ReportFormat::CycloneDx, 1, 1),
    ("cyclonedx/bom-examples.VEX.Use-Cases.Case-4.vex.json", ReportFormat::CycloneDx, 1, 1),
    ("cyclonedx/bom-examples.VEX.Use-Cases.Case-5.vex.json", ReportFormat::CycloneDx, 2, 2),
    ("cyclonedx/bom-examples.VEX.Use-Cases.Case-9.vex.json", ReportFormat::CycloneDx, 57, 19),
    ("cyclonedx/bom-examples.VEX.bom.json", ReportFormat::CycloneDx, 0, 0),
    ("cyclonedx/bom-examples.VEX.vex.json", ReportFormat::CycloneDx, 1, 1),
    ("cyclonedx/defectdojo.log4j.cdx.json", ReportFormat::CycloneDx, 8, 8),
    ("cyclonedx/defectdojo.valid-vulnerability-1.4.cdx.json", ReportFormat::CycloneDx, 1, 1),
    ("cyclonedx/grype-snapshot.TestCycloneDxPresenterImage.cdx.json", ReportFormat::CycloneDx, 2, 0),
    ("cyclonedx/trivy-golden.npm-cyclonedx.json", ReportFormat::CycloneDx, 1, 0),
    ("cyclonedx/trivy-vex-testdata.cyclonedx-vex.json", ReportFormat::CycloneDx, 2, 2),
    ("openvex/defectdojo.openvex_many_vuln.json", ReportFormat::OpenVex, 0, 6),
    ("openvex/defectdojo.openvex_one_vuln.json", ReportFormat::OpenVex, 0, 1),
    ("openvex/openvex-spec-example.0.json", ReportFormat::OpenVex, 0, 1),
    ("openvex/openvex-spec-example.1.json", ReportFormat::OpenVex, 0, 1),
    ("openvex/trivy-integration.openvex.json", ReportFormat::OpenVex, 0, 1),
    ("openvex/trivy-vex-testdata.openvex-multiple.json", ReportFormat::OpenVex, 0, 2),
    ("openvex/trivy-vex-testdata.openvex-nested.json", ReportFormat::OpenVex, 0, 1),
    ("openvex/trivy-vex-testdata.openvex-oci.json", ReportFormat::OpenVex, 0, 1),
    ("openvex/trivy-vex-testdata.openvex.json", ReportFormat::OpenVex, 0, 1),
];

#[test]
fn every_fixture_parses_with_the_expected_counts() {
    // Every JSON file in the fixture folder is listed: a new fixture needs an expectation.
    let mut on_disk = Vec::new();
    for folder in std::fs::read_dir(fixtures()).unwrap() {
        let folder = folder.unwrap().path();
        if !folder.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&folder).unwrap() {
            let file = file.unwrap().path();
            let relative = file.strip_prefix(fixtures()).unwrap().display().to_string();
            on_disk.push(relative);
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|(f, ..)| f.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);

    let mut wrong = Vec::new();
    for (file, format, findings, vex) in EXPECTED {
        let document = read(file);
        let got = (document.format, document.findings.len(), document.vex.len());
        if got != (*format, *findings, *vex) {
            wrong.push(format!("{file}: got {got:?}, expected {:?}", (format, findings, vex)));
        }
        for finding in &document.findings {
            assert!(!finding.id.is_empty(), "{file}: a finding without an id");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn trivy_findings_keep_package_fix_and_every_source() {
    let alpine = read("trivy/trivy-golden.alpine-39.json");
    let crypto = find(&alpine, "CVE-2019-1549", "libcrypto1.1");
    assert_eq!(crypto.package.version.as_deref(), Some("1.1.1b-r1"));
    assert_eq!(crypto.package.purl.as_deref(), Some("pkg:apk/alpine/libcrypto1.1@1.1.1b-r1?arch=x86_64&distro=3.9.4"));
    assert_eq!(crypto.fixed_versions, ["1.1.1d-r0"]);
    assert_eq!(crypto.fix_state, FixState::Fixed);
    assert_eq!(crypto.reported_severity, Some(Severity::Medium));
    assert_eq!(score_by(crypto, "nvd"), (Some(5.3), Severity::Medium, Some("nvd".into())));
    assert!(crypto.published.is_some());

    // A CVSS v4.0 vector from GHSA next to a v3.1 one from Red Hat.
    let tomcat = read("trivy/defectdojo.cvssv4_severity_source.json");
    let catalina = find(&tomcat, "CVE-2025-66614", "org.apache.tomcat:tomcat-catalina");
    assert_eq!(catalina.aliases, ["GHSA-fpj8-gq4v-p354"]);
    assert_eq!(catalina.fixed_versions, ["11.0.14", "10.1.49", "9.0.112"]);
    assert_eq!(score_by(catalina, "ghsa").0, Some(6.3));
    assert_eq!(score_by(catalina, "vendor:redhat").0, Some(5.3));
    assert_eq!(score_by(catalina, "nvd").1, Severity::Unknown);

    // Every status Trivy writes maps onto a fix state.
    let statuses = read("trivy/defectdojo.all_statuses.json");
    let states: Vec<(&str, FixState)> = statuses.findings.iter().map(|f| (f.id.as_str(), f.fix_state)).collect();
    assert_eq!(
        states,
        [
            ("CVE-2011-3374", FixState::Unknown),
            ("CVE-2019-18276", FixState::NotAffected),
            ("TEMP-0841856-B18BAF", FixState::NotFixed),
            ("CVE-2018-1000876", FixState::Fixed),
            ("CVE-2018-12697", FixState::NotFixed),
            ("CVE-2018-12698", FixState::WontFix),
            ("CVE-2018-12699", FixState::NotFixed),
            ("CVE-2018-12934", FixState::WontFix),
        ]
    );

    // `trivy k8s` findings say which workload they are in.
    let cluster = read("trivy/defectdojo.kubernetes.json");
    let apt = find(&cluster, "CVE-2020-27350", "apt");
    assert_eq!(
        apt.location.as_deref(),
        Some("default/Deployment/redis-follower: gcr.io/google_samples/gb-redis-follower:v2 (debian 10.4)")
    );
    assert_eq!(apt.aliases, ["DSA-4808-1"]);
}

#[test]
fn grype_matches_carry_related_nvd_ratings() {
    let report = read("grype/defectdojo.issue_9618.json");
    let avahi = find(&report, "CVE-2023-38473", "avahi-libs");
    assert_eq!(avahi.package.version.as_deref(), Some("0.7-20.el8"));
    assert_eq!(avahi.package.kind.as_deref(), Some("rpm"));
    assert_eq!(avahi.fix_state, FixState::Fixed);
    assert_eq!(avahi.fixed_versions, ["0:0.7-21.el8_9.1"]);
    assert_eq!(avahi.vendor.as_deref(), Some("redhat"));
    assert_eq!(avahi.aliases, ["RHSA-2023:7836"]);
    assert_eq!(avahi.location.as_deref(), Some("/var/lib/rpm/Packages"));
    assert_eq!(score_by(avahi, "nvd"), (Some(5.5), Severity::Medium, Some("nvd".into())));
    assert_eq!(score_by(avahi, "vendor").0, Some(6.2));
    assert_eq!(score_by(avahi, "highest").0, Some(6.2));

    let snapshot = read("grype/grype-snapshot.TestJsonImgsPresenter.json");
    let package = find(&snapshot, "CVE-1999-0001", "package-1");
    assert_eq!(package.fixed_versions, ["1.2.1", "2.1.3", "3.4.0"]);
}

#[test]
fn sarif_results_become_findings_with_packages_from_their_text() {
    let trivy = read("sarif/trivy-golden.alpine-310.sarif.json");
    let ids: Vec<(&str, &str)> = trivy.findings.iter().map(|f| (f.id.as_str(), f.package.name.as_str())).collect();
    assert_eq!(
        ids,
        [
            ("CVE-2019-1549", "libcrypto1.1"),
            ("CVE-2019-1551", "libcrypto1.1"),
            ("CVE-2019-1549", "libssl1.1"),
            ("CVE-2019-1551", "libssl1.1"),
        ]
    );
    let crypto = &trivy.findings[0];
    assert_eq!(crypto.package.version.as_deref(), Some("1.1.1c-r0"));
    assert_eq!(crypto.fixed_versions, ["1.1.1d-r0"]);
    assert_eq!(score_by(crypto, "report"), (Some(5.3), Severity::Medium, Some("report".into())));

    let grype = read("sarif/grype-snapshot.TestSarifPresenter_image.sarif.json");
    let first = find(&grype, "CVE-1999-0001", "package-1");
    assert_eq!(first.package.version.as_deref(), Some("1.1.1"));
    assert_eq!(score_by(first, "report").0, Some(8.2));

    // A code scanner's results name their file.
    let codeql = read("sarif/defectdojo.codeQL-output.sarif.json");
    let first = &codeql.findings[0];
    assert_eq!((first.id.as_str(), first.package.name.as_str()), ("py/empty-except", "good/db_init.py"));
}

#[test]
fn cyclonedx_vulnerabilities_resolve_their_components() {
    let log4j = read("cyclonedx/defectdojo.log4j.cdx.json");
    let shell = find(&log4j, "CVE-2021-44228", "org.apache.logging.log4j:log4j-core");
    assert_eq!(shell.package.version.as_deref(), Some("2.13.2"));
    assert_eq!(score_by(shell, "nvd"), (Some(10.0), Severity::Critical, Some("nvd".into())));
    // Its `in_triage` analysis is a VEX statement that does not suppress.
    assert_eq!(log4j.vex[0].status, VexStatus::UnderInvestigation);

    let npm = read("cyclonedx/trivy-golden.npm-cyclonedx.json");
    let jquery = find(&npm, "CVE-2019-11358", "jquery");
    assert_eq!(jquery.package.purl.as_deref(), Some("pkg:npm/jquery@3.3.9"));
    assert_eq!(score_by(jquery, "nvd").0, Some(6.1));
    assert_eq!(score_by(jquery, "vendor:redhat").0, Some(5.6));
    assert_eq!(score_by(jquery, "vendor:ubuntu").1, Severity::Low);

    // References into another BOM name the package by the purl after `#`.
    let vex = read("cyclonedx/trivy-vex-testdata.cyclonedx-vex.json");
    assert_eq!(vex.vex[1].vulnerability, "CVE-2022-27943");
    assert_eq!(vex.findings[1].package.name, "libstdc++6");
    assert_eq!(vex.vex[1].status, VexStatus::NotAffected);
}

#[test]
fn openvex_statements_keep_status_justification_and_products() {
    let many = read("openvex/defectdojo.openvex_many_vuln.json");
    let statuses: Vec<VexStatus> = many.vex.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [
            VexStatus::NotAffected,
            VexStatus::Affected,
            VexStatus::Fixed,
            VexStatus::UnderInvestigation,
            VexStatus::NotAffected,
            VexStatus::NotAffected,
        ]
    );
    let zlib = &many.vex[4];
    assert_eq!(zlib.aliases, ["GHSA-jfh8-c2jp-5v3q"]);
    assert_eq!(zlib.justification.as_deref(), Some("inline_mitigations_already_exist"));
    // The old bare-string shapes of vulnerability and product are read too.
    assert_eq!(many.vex[5].vulnerability, "CVE-2024-10006");
    assert_eq!(many.vex[5].products[0].id, "pkg:apk/alpine/openssl@1.1.1k-r0");

    let nested = read("openvex/trivy-vex-testdata.openvex-nested.json");
    assert_eq!(nested.vex[0].products[0].subcomponents, ["pkg:golang/github.com/aquasecurity/go-transitive@v4.0.0"]);
}
