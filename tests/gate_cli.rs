//! `gantry cvss` and `gantry gate` as a user runs them: the real binary, real reports.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn scans(relative: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scans").join(relative).display().to_string()
}

/// Runs `gantry` with `args` and `stdin`; returns (exit code, stdout, stderr).
fn gantry(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .env("GANTRY_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gantry");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

#[test]
fn cvss_scores_arguments_with_the_most_specific_score() {
    let (code, out, err) = gantry(
        &[
            "cvss",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:R",
            "CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:H/I:H/A:N/E:H/RL:O/RC:C/CR:H/IR:H/AR:H/MAV:N/MAC:L/MPR:L/MUI:N/MS:C/MC:H/MI:H/MA:H",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\t9.8\tcritical",
            // Temporal: 9.8 × 0.91 × 0.95 × 0.96, rounded up.
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:R\t8.2\thigh",
            // Environmental, from the reference suite (base 9.3, temporal 8.9).
            "CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:H/I:H/A:N/E:H/RL:O/RC:C/CR:H/IR:H/AR:H/MAV:N/MAC:L/MPR:L/MUI:N/MS:C/MC:H/MI:H/MA:H\t9.5\tcritical",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N\t9.3\tcritical",
        ]
    );
}

#[test]
fn cvss_reads_standard_input_and_fails_at_the_end_for_invalid_vectors() {
    let stdin = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N/E:A\n\
                 \n\
                 CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H\n\
                 CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H\n";
    let (code, out, _) = gantry(&["cvss"], stdin);
    assert_eq!(code, 1);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N/E:A\t0.0\tnone",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H\tinvalid\tscore CVSS vector \"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H\": base metric A is missing",
            "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H\t5.5\tmedium",
        ]
    );
}

#[test]
fn max_score_alone_is_a_complete_policy() {
    let report = scans("trivy/trivy-golden.pip.json");
    let (code, out, err) = gantry(&["gate", "--report", &report, "--max-score", "7", "--format", "json"], "");
    assert_eq!(code, 1, "{err}");
    let verdict = json(&out);
    assert_eq!(verdict["decision"], "deny");
    assert_eq!(
        verdict["reasons"],
        serde_json::json!(["CVE-2019-14806 in Werkzeug@0.11 scores 7.5 (high, redhat), at or above the limit 7.0"])
    );
    let findings = verdict["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2);
    assert_eq!(findings[0]["id"], "CVE-2019-14806");
    assert_eq!(findings[0]["package"], "Werkzeug");
    assert_eq!(findings[0]["score"], 7.5);
    assert_eq!(findings[0]["severity"], "high");
    assert_eq!(findings[0]["suppressed"], Value::Null);

    let (code, out, err) = gantry(&["gate", "--report", &report, "--max-score", "7.6"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().last().unwrap().starts_with("allow: 2 findings, 0 suppressed, 0 reasons"), "{out}");
}

fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn policy_environments_exceptions_and_vex_decide_together() {
    let dir = tempfile::tempdir().unwrap();
    let vex = scans("openvex/trivy-integration.openvex.json");
    let policy = write_policy(
        dir.path(),
        &format!(
            "default:\n  max_score: 9.0\n\
             environments:\n  staging:\n    max_score: 5.0\n    max_count: {{ unknown: 0 }}\n\
             exceptions:\n\
             \x20 - id: GMS-2022-20\n    justification: registry access is read-only\n    approver: sec@example.com\n    expires: 2999-01-01\n\
             \x20 - id: CVE-2021-38561\n    justification: expired long ago\n    approver: sec@example.com\n    expires: 2001-01-01\n\
             vex: [{vex}]\n"
        ),
    );
    let policy = policy.display().to_string();
    let report = scans("trivy/trivy-golden.gomod.json");
    let run =
        |env: &str| gantry(&["gate", "--report", &report, "--policy", &policy, "--env", env, "--format", "json"], "");
    let (code, out, err) = run("dev");
    assert_eq!(code, 0, "{err}\n{out}");
    let verdict = json(&out);
    let causes: Vec<(String, Value)> = verdict["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_string(), f["suppressed"]["kind"].clone()))
        .collect();
    assert!(causes.contains(&("GMS-2022-20".into(), "exception".into())), "{causes:?}");
    assert!(causes.contains(&("CVE-2022-23628".into(), "vex".into())), "{causes:?}");
    assert!(causes.contains(&("CVE-2021-38561".into(), Value::Null)), "{causes:?}");
    assert_eq!(
        verdict["notes"][0],
        "exception for CVE-2021-38561 (approved by sec@example.com) expired at 2001-01-01T00:00:00Z and no longer covers 1 finding"
    );
    let vex_finding = verdict["findings"].as_array().unwrap().iter().find(|f| f["id"] == "CVE-2022-23628").unwrap();
    assert_eq!(vex_finding["suppressed"]["statement"]["justification"], "vulnerable_code_not_in_execute_path");

    // Staging also refuses unrated findings: the one whose exception expired now denies.
    let (code, out, _) = run("staging");
    assert_eq!(code, 1, "{out}");
    assert_eq!(json(&out)["reasons"], serde_json::json!(["1 unknown finding, more than the 0 allowed in staging"]));
}

#[test]
fn errors_exit_2_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("notes.json");
    std::fs::write(&unknown, r#"{"hello": "world"}"#).unwrap();
    let unknown = unknown.display().to_string();
    let (code, _, err) = gantry(&["gate", "--report", &unknown, "--max-score", "7"], "");
    assert_eq!(code, 2);
    assert!(err.contains(&format!("read report {unknown}: unknown format")), "{err}");

    let report = scans("trivy/trivy-golden.pip.json");
    let (code, _, err) = gantry(&["gate", "--report", &report], "");
    assert_eq!(code, 2);
    assert!(err.contains("give a gate policy"), "{err}");

    let policy = write_policy(dir.path(), "default:\n  max_scroe: 7\n");
    let policy = policy.display().to_string();
    let (code, _, err) = gantry(&["gate", "--report", &report, "--policy", &policy], "");
    assert_eq!(code, 2);
    assert!(err.contains("max_scroe"), "{err}");
}
