//! Preview environments in a config repository: the files a new preview starts as.
//!
//! A preview is a directory of its environment's config repo (`previews/<slug>/`). The first
//! promotion into it finds the directory missing and copies the environment's template
//! directory into it, in the same commit as the tag edit, so the change request shows the
//! whole new preview. Later promotions find the directory and only edit the tag.

use gantry_workflows::{EnvironmentTarget, PreviewTarget};

use super::{StepError, chain, classify};
use crate::git::EnvRepo;

/// The files a promotion into `target` adds besides the file it edits: when `target` is a
/// preview whose directory does not exist at `base_commit`, the template's files copied into
/// it, placeholders replaced, each as (repository path, contents). Empty when `target` is no
/// preview or the preview exists. The edited file itself is among them when the template
/// holds it (the edit then starts from the template's version).
pub(crate) fn seed_files(
    repo: &EnvRepo,
    base_commit: &str,
    target: &EnvironmentTarget,
    app: &str,
) -> Result<Vec<(String, Vec<u8>)>, StepError> {
    let Some(preview) = &target.preview else {
        return Ok(Vec::new());
    };
    let existing = repo.read_dir(base_commit, &preview.directory).map_err(|e| classify(e.is_transient(), chain(&e)))?;
    if existing.is_some() {
        return Ok(Vec::new());
    }
    let Some(template) = &preview.template else {
        return Ok(Vec::new());
    };
    let files =
        repo.read_dir(base_commit, template).map_err(|e| classify(e.is_transient(), chain(&e)))?.ok_or_else(|| {
            StepError::terminal(format!(
                "the preview template directory {template} does not exist in {} at {}",
                target.repo_url, target.branch
            ))
        })?;
    let seeded: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .map(|(path, content)| {
            let content = match String::from_utf8(content) {
                Ok(text) => fill_in(&text, preview, &target.environment, app).into_bytes(),
                Err(binary) => binary.into_bytes(),
            };
            (format!("{}/{path}", preview.directory), content)
        })
        .collect();
    if !seeded.iter().any(|(path, _)| *path == target.path) {
        let relative = target.path.strip_prefix(&format!("{}/", preview.directory)).unwrap_or(&target.path);
        return Err(StepError::terminal(format!(
            "the preview template {template} in {} has no {relative}, the file a promotion edits",
            target.repo_url
        )));
    }
    Ok(seeded)
}

/// Replaces the template placeholders of a preview file: `{{slug}}`, `{{branch}}`,
/// `{{preview}}` (the preview environment's name), `{{app}}` and `{{env}}` (the environment it
/// previews). Anything else in double braces is left alone (it may be another tool's syntax).
pub(crate) fn fill_in(text: &str, preview: &PreviewTarget, preview_name: &str, app: &str) -> String {
    let values = [
        ("slug", preview.slug.as_str()),
        ("branch", preview.branch.as_str()),
        ("preview", preview_name),
        ("app", app),
        ("env", preview.environment.as_str()),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let replaced = after.find("}}").and_then(|close| {
            let name = after[..close].trim();
            values.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value, close))
        });
        match replaced {
            Some((value, close)) => {
                out.push_str(value);
                rest = &after[close + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preview() -> PreviewTarget {
        PreviewTarget {
            environment: "dev".into(),
            branch: "feature/Login".into(),
            slug: "feature-login".into(),
            directory: "previews/feature-login".into(),
            template: Some("previews/_template".into()),
        }
    }

    #[test]
    fn known_placeholders_are_filled_in_and_others_left_alone() {
        let text = "namespace: preview-{{slug}}\n# {{ branch }} of {{app}} in {{env}} as {{preview}}\n\
                    value: \"{{ .Values.keep }}\"\nodd: {{slug";
        assert_eq!(
            fill_in(text, &preview(), "dev-feature-login", "shop"),
            "namespace: preview-feature-login\n# feature/Login of shop in dev as dev-feature-login\n\
             value: \"{{ .Values.keep }}\"\nodd: {{slug"
        );
    }
}
