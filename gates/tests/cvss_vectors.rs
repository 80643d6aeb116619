//! Every vector of the reference CVSS test suites scores exactly as expected.

use std::path::PathBuf;

use gantry_gates::cvss;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cvss").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Rows of a fixture CSV, without its header: (line number, fields).
fn rows(name: &str) -> Vec<(usize, Vec<String>)> {
    fixture(name)
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| (index + 1, line.split(',').map(str::to_string).collect()))
        .collect()
}

fn expect(value: &str) -> f64 {
    value.parse().unwrap_or_else(|_| panic!("bad expected score {value:?}"))
}

/// Checks each row with `check`, collecting every mismatch before failing.
fn check_all(name: &str, minimum_rows: usize, check: impl Fn(&[String]) -> Result<(), String>) {
    let rows = rows(name);
    assert!(rows.len() >= minimum_rows, "{name}: only {} rows", rows.len());
    let failures: Vec<String> =
        rows.iter().filter_map(|(line, fields)| check(fields).err().map(|e| format!("{name}:{line}: {e}"))).collect();
    assert!(failures.is_empty(), "{} of {} vectors disagree:\n{}", failures.len(), rows.len(), failures.join("\n"));
}

fn base_row(fields: &[String]) -> Result<(), String> {
    let scored = cvss::score(&fields[0]).map_err(|e| e.to_string())?;
    let expected = expect(&fields[1]);
    if scored.base != expected || scored.score != expected {
        return Err(format!("{}: base {} score {}, expected {expected}", fields[0], scored.base, scored.score));
    }
    Ok(())
}

#[test]
fn every_v31_base_vector() {
    check_all("cvss-v3.1-base.csv", 2592, base_row);
}

#[test]
fn every_v30_base_vector() {
    check_all("cvss-v3.0-base.csv", 2592, base_row);
}

#[test]
fn every_v40_base_vector() {
    check_all("cvss-v4.0-base.csv", 1634, base_row);
}

#[test]
fn every_v30_temporal_and_environmental_vector() {
    check_all("cvss-v3.0-temporal-environmental.csv", 31, |fields| {
        let scored = cvss::score(&fields[0]).map_err(|e| e.to_string())?;
        let (base, temporal, environmental) = (expect(&fields[1]), expect(&fields[2]), expect(&fields[3]));
        let got_temporal = scored.temporal.unwrap_or(scored.base);
        let got_environmental = scored.environmental.unwrap_or(got_temporal);
        if scored.base != base || got_temporal != temporal || got_environmental != environmental {
            return Err(format!(
                "{}: got ({}, {got_temporal}, {got_environmental}), expected ({base}, {temporal}, {environmental})",
                fields[0], scored.base
            ));
        }
        Ok(())
    });
}

#[test]
fn every_v40_threat_and_environmental_vector() {
    check_all("cvss-v4.0-threat-environmental.csv", 60, |fields| {
        let scored = cvss::score(&fields[0]).map_err(|e| e.to_string())?;
        let expected = expect(&fields[1]);
        if scored.score != expected {
            return Err(format!("{}: got {} ({}), expected {expected}", fields[0], scored.score, scored.kind.as_str()));
        }
        Ok(())
    });
}
