//! `gantry edit` as a user runs it: on copies of realistic config files, printing to stdout or
//! rewriting in place, and failing with the path and the file named.

#[path = "support/gantry.rs"]
mod gantry_support;

use std::path::{Path, PathBuf};

use gantry_support::run;

const API: &str = "ghcr.io/acme/checkout-api";
const DIGEST: &str = "sha256:6f11ad3c9450922f7ebcdf5a010fd54f42c9bff1dc1be8b9cfb0b7e0f25f560a";

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/edit").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Copies fixtures into a fresh directory and returns their new paths.
fn copies(names: &[&str]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let paths = names
        .iter()
        .map(|name| {
            let path = dir.path().join(name);
            std::fs::write(&path, fixture(name)).unwrap();
            path
        })
        .collect();
    (dir, paths)
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The lines of `after` that differ from `before`, as (1-based line, text); the line counts
/// must match.
fn changed(before: &str, after: &str) -> Vec<(usize, String)> {
    let (old, new): (Vec<&str>, Vec<&str>) =
        (before.split_inclusive('\n').collect(), after.split_inclusive('\n').collect());
    assert_eq!(old.len(), new.len(), "line count changed:\n{after}");
    (0..old.len()).filter(|&i| old[i] != new[i]).map(|i| (i + 1, new[i].to_owned())).collect()
}

#[test]
fn prints_the_edited_file_and_leaves_it_alone() {
    let (_dir, files) = copies(&["values.yaml"]);
    let (code, stdout, stderr) =
        run(&["edit", text(&files[0]), "--set", "image.tag=1.42.0", "--set", "worker.replicaCount=3"]);
    assert_eq!(code, 0, "{stderr}");
    let original = fixture("values.yaml");
    assert_eq!(
        changed(&original, &stdout),
        [(10, "  tag: '1.42.0'          # set on promotion\n".to_owned()), (17, "  replicaCount: 3\n".to_owned()),]
    );
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), original);
}

#[test]
fn in_place_rewrites_only_the_changed_scalars() {
    let (_dir, files) = copies(&["odd-indent.yaml", "kustomization.yaml"]);
    let (code, stdout, stderr) = run(&[
        "edit",
        "--in-place",
        text(&files[0]),
        "--set",
        "spec.template.spec.containers[0].image=ghcr.io/acme/checkout-api:1.42.0",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "");
    let edited = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(
        changed(&fixture("odd-indent.yaml"), &edited),
        [(13, "           image:    ghcr.io/acme/checkout-api:1.42.0     # rewritten on promotion\n".to_owned())]
    );

    // Pinning by tag and digest: the tag line changes, the digest line is inserted after it.
    let (code, _, stderr) = run(&["edit", "-i", text(&files[1]), "--image", &format!("{API}=1.42.0@{DIGEST}")]);
    assert_eq!(code, 0, "{stderr}");
    let edited = std::fs::read_to_string(&files[1]).unwrap();
    let original = fixture("kustomization.yaml");
    let mut expected: Vec<&str> = original.split_inclusive('\n').collect();
    expected[21] = "    newTag: \"1.42.0\"   # pinned by gantry\n";
    let digest_line = format!("    digest: {DIGEST}\n");
    expected.insert(22, &digest_line);
    assert_eq!(edited, expected.concat());
}

#[test]
fn an_edit_to_the_value_already_there_keeps_every_byte() {
    let (_dir, files) = copies(&["crlf.yaml", "flow.yaml", "values.json"]);
    for (file, set) in
        [(&files[0], "image.tag=1.41.0"), (&files[1], "helm.image.tag=1.41.0"), (&files[2], "replicaCount=2")]
    {
        let before = std::fs::read(file).unwrap();
        let modified = std::fs::metadata(file).unwrap().modified().unwrap();
        let (code, stdout, stderr) = run(&["edit", text(file), "--set", set]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.as_bytes() == before, "{}", file.display());
        let (code, _, stderr) = run(&["edit", "--in-place", text(file), "--set", set]);
        assert_eq!(code, 0, "{stderr}");
        assert!(std::fs::read(file).unwrap() == before);
        assert_eq!(std::fs::metadata(file).unwrap().modified().unwrap(), modified);
    }
}

#[test]
fn several_files_get_headers_and_json_stays_json() {
    let (_dir, files) = copies(&["values.yaml", "values.json"]);
    let (code, stdout, stderr) = run(&["edit", text(&files[0]), text(&files[1]), "--set", "image.tag=1.42.0"]);
    assert_eq!(code, 0, "{stderr}");
    let (yaml, json) = stdout
        .strip_prefix(&format!("==> {} <==\n", files[0].display()))
        .and_then(|rest| rest.split_once(&format!("\n==> {} <==\n", files[1].display())))
        .unwrap_or_else(|| panic!("unexpected output:\n{stdout}"));
    assert!(yaml.contains("  tag: '1.42.0'  "));
    assert_eq!(changed(&fixture("values.json"), json), [(4, "    \"tag\": \"1.42.0\",\n".to_owned())]);
}

#[test]
fn a_missing_path_names_the_path_and_the_file_and_writes_nothing() {
    let (_dir, files) = copies(&["values.yaml", "kustomization.yaml"]);
    let (code, stdout, stderr) =
        run(&["edit", "--in-place", text(&files[0]), text(&files[1]), "--set", "image.tag=1.42.0"]);
    assert_ne!(code, 0);
    assert_eq!(stdout, "");
    assert!(stderr.contains("image.tag"), "{stderr}");
    assert!(stderr.contains(text(&files[1])), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The first file was editable, but nothing is written when any file fails.
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), fixture("values.yaml"));

    let (code, _, stderr) = run(&["edit", text(&files[1]), "--image", "ghcr.io/acme/nope=1"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("ghcr.io/acme/nope"), "{stderr}");
    assert!(stderr.contains(text(&files[1])), "{stderr}");

    let (code, _, stderr) = run(&["edit", text(&files[0])]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--set"), "{stderr}");
    let (code, _, stderr) = run(&["edit", "/nonexistent/values.yaml", "--set", "a=b"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("/nonexistent/values.yaml"), "{stderr}");
}
