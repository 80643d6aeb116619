//! `gantry edit`: the promotion editor as a user tool.
//!
//! Like `yq -i`, but it never reformats: each `--set` or `--image` changes one scalar's text
//! (or adds one line for a missing kustomization field) and every other byte of the file —
//! comments, quoting, indentation, anchors, line endings — stays. JSON files (by their
//! `.json` extension) are edited the same way.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use gantry_engine::edit::{self, Edit, Format};
use gantry_workflows::spans::YamlPath;

/// Arguments of `gantry edit`.
#[derive(Debug, Clone, clap::Args)]
pub struct EditArgs {
    /// Files to edit; every edit applies to each of them.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Set the scalar at PATH (dotted, `[n]` for sequence items:
    /// `spec.template.spec.containers[0].image`) to VALUE. A number, boolean or null stays
    /// one when VALUE is one too; anything else is written as a string.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Pin the kustomization `images:` entry named NAME to a tag (`NAME=TAG`), a digest
    /// (`NAME@sha256:…`) or both (`NAME=TAG@sha256:…`).
    #[arg(long = "image", value_name = "NAME=TAG|NAME@DIGEST")]
    pub image: Vec<String>,
    /// Rewrite the files instead of printing them.
    #[arg(long, short = 'i')]
    pub in_place: bool,
}

/// Runs `gantry edit`, printing edited files to `out` unless `--in-place` is given.
///
/// Every file is edited before any is written, so one bad file leaves all of them untouched.
/// With several files and no `--in-place`, each is preceded by a `==> FILE <==` line, as
/// `head` does.
pub fn run(args: &EditArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let edits = parse_edits(&args.set, &args.image)?;
    if edits.is_empty() {
        bail!("nothing to do: give at least one --set PATH=VALUE or --image NAME=TAG");
    }
    let mut results = Vec::with_capacity(args.files.len());
    for file in &args.files {
        let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
        let edited = edit::apply_format(Format::from_path(file), &text, &edits)
            .with_context(|| format!("edit {}", file.display()))?;
        results.push((file, text, edited));
    }
    if args.in_place {
        for (file, text, edited) in &results {
            if edited != text {
                write_in_place(file, edited)?;
            }
        }
        return Ok(());
    }
    let headers = results.len() > 1;
    for (index, (file, _, edited)) in results.iter().enumerate() {
        if headers {
            let gap = if index == 0 { "" } else { "\n" };
            writeln!(out, "{gap}==> {} <==", file.display()).context("write to stdout")?;
        }
        out.write_all(edited.as_bytes()).context("write to stdout")?;
    }
    out.flush().context("write to stdout")
}

/// Turns `--set` and `--image` arguments into edits, `--set` first, each in the order given.
pub fn parse_edits(sets: &[String], images: &[String]) -> anyhow::Result<Vec<Edit>> {
    let mut edits = Vec::with_capacity(sets.len() + images.len());
    for set in sets {
        let Some((path, value)) = set.split_once('=') else {
            bail!("parse --set {set:?}: expected PATH=VALUE");
        };
        let path = YamlPath::parse(path).with_context(|| format!("parse --set {set:?}"))?;
        if path.is_root() {
            bail!("parse --set {set:?}: the path is empty");
        }
        edits.push(Edit::SetValue { path, value: value.to_owned() });
    }
    for image in images {
        edits.push(parse_image(image)?);
    }
    Ok(edits)
}

/// `NAME=TAG`, `NAME@DIGEST` or `NAME=TAG@DIGEST`. Image names may hold `:` (a registry
/// port) but never `=` or `@`.
fn parse_image(image: &str) -> anyhow::Result<Edit> {
    let fail = |reason: &str| anyhow::anyhow!("parse --image {image:?}: {reason}");
    let (name, tag, digest) = match image.split_once('=') {
        Some((name, pin)) => match pin.split_once('@') {
            Some((tag, digest)) => (name, Some(tag), Some(digest)),
            None => (name, Some(pin), None),
        },
        None => match image.split_once('@') {
            Some((name, digest)) => (name, None, Some(digest)),
            None => return Err(fail("expected NAME=TAG, NAME@DIGEST or NAME=TAG@DIGEST")),
        },
    };
    if name.is_empty() {
        return Err(fail("the image name is empty"));
    }
    if tag.is_some_and(str::is_empty) {
        return Err(fail("the tag is empty"));
    }
    if let Some(digest) = digest {
        let well_formed = digest.split_once(':').is_some_and(|(algorithm, hex)| {
            !algorithm.is_empty() && hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !well_formed {
            return Err(fail("the digest is not ALGORITHM:HEX (e.g. sha256:…)"));
        }
    }
    Ok(Edit::KustomizeImage {
        name: name.to_owned(),
        new_tag: tag.map(str::to_owned),
        digest: digest.map(str::to_owned),
    })
}

/// Replaces `file` by writing a sibling temporary file and renaming it over, so a crash never
/// leaves half a file; the original permissions are kept.
fn write_in_place(file: &Path, text: &str) -> anyhow::Result<()> {
    let directory = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let permissions =
        std::fs::metadata(file).with_context(|| format!("read the permissions of {}", file.display()))?.permissions();
    let name = file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = directory.join(format!(".{name}.gantry-edit-{}", std::process::id()));
    let written = std::fs::write(&temporary, text)
        .and_then(|()| std::fs::set_permissions(&temporary, permissions))
        .and_then(|()| std::fs::rename(&temporary, file));
    if let Err(error) = written {
        // Best effort: the write error is what matters, and the temporary name is unique.
        let _ = std::fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("write {}", file.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_arguments() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases = [
            ("app=1.2.3", ("app", Some("1.2.3"), None)),
            ("localhost:5000/app=v1", ("localhost:5000/app", Some("v1"), None)),
            (&*format!("app@{digest}"), ("app", None, Some(&*digest))),
            (&*format!("app=v1@{digest}"), ("app", Some("v1"), Some(&*digest))),
        ];
        for (argument, (name, tag, pinned)) in cases {
            assert_eq!(
                parse_image(argument).unwrap(),
                Edit::KustomizeImage {
                    name: name.into(),
                    new_tag: tag.map(Into::into),
                    digest: pinned.map(Into::into),
                },
                "{argument}"
            );
        }
        for bad in ["app", "=v1", "app=", "app@sha256:xyz", "app@nothex"] {
            assert!(parse_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_arguments() {
        let edits = parse_edits(&["a.b[0]=x=y".into()], &[]).unwrap();
        assert_eq!(edits, [Edit::SetValue { path: YamlPath::parse("a.b[0]").unwrap(), value: "x=y".into() }]);
        assert!(parse_edits(&["novalue".into()], &[]).is_err());
        assert!(parse_edits(&["=v".into()], &[]).is_err());
        assert!(parse_edits(&["a[x]=v".into()], &[]).is_err());
    }
}
