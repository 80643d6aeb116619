//! `{placeholder}` templates for tags, versions, branch names and file paths.
//!
//! Deliberately tiny: a tag template has a handful of known placeholders and nothing else, so
//! a general template language would only add ways to get it wrong.

use crate::error::TemplateError;

/// Every placeholder a tag or path template may use.
pub const PLACEHOLDERS: &[&str] = &["app", "env", "version", "sha", "sha7", "branch", "tag", "ref", "slug"];

/// Values for the placeholders; `None` means "not defined for this event".
#[derive(Debug, Clone, Default)]
pub struct Vars {
    pairs: Vec<(&'static str, Option<String>)>,
}

impl Vars {
    /// Starts an empty set of values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one placeholder (an unknown name is a programming error caught by tests).
    pub fn set(mut self, name: &'static str, value: Option<&str>) -> Self {
        debug_assert!(PLACEHOLDERS.contains(&name), "unknown placeholder {name}");
        self.pairs.retain(|(n, _)| *n != name);
        self.pairs.push((name, value.map(str::to_string)));
        self
    }

    fn get(&self, name: &str) -> Option<Option<&str>> {
        self.pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_deref())
    }
}

/// Names of the placeholders a template uses, or why it is malformed.
pub fn placeholders(template: &str) -> Result<Vec<&str>, TemplateError> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| TemplateError::Unclosed { template: template.to_string() })?;
        names.push(&after[..close]);
        rest = &after[close + 1..];
    }
    Ok(names)
}

/// Checks that a template only uses known placeholders.
pub fn check(template: &str) -> Result<(), TemplateError> {
    for name in placeholders(template)? {
        if !PLACEHOLDERS.contains(&name) {
            return Err(unknown(template, name));
        }
    }
    Ok(())
}

/// Renders a template with the given values.
pub fn render(template: &str, vars: &Vars) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| TemplateError::Unclosed { template: template.to_string() })?;
        let name = &after[..close];
        match vars.get(name) {
            Some(Some(value)) => out.push_str(value),
            Some(None) => {
                return Err(TemplateError::MissingValue { template: template.to_string(), name: name.to_string() });
            }
            None => return Err(unknown(template, name)),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn unknown(template: &str, name: &str) -> TemplateError {
    TemplateError::UnknownPlaceholder {
        template: template.to_string(),
        name: name.to_string(),
        known: PLACEHOLDERS.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_placeholders() {
        let vars = Vars::new().set("env", Some("dev")).set("version", Some("v1.2.3"));
        assert_eq!(render("{env}-{version}", &vars).unwrap(), "dev-v1.2.3");
        assert_eq!(render("plain", &vars).unwrap(), "plain");
    }

    #[test]
    fn reports_unknown_missing_and_unclosed() {
        let vars = Vars::new().set("tag", None);
        assert!(matches!(render("{nope}", &vars), Err(TemplateError::UnknownPlaceholder { .. })));
        assert!(matches!(render("{tag}", &vars), Err(TemplateError::MissingValue { .. })));
        assert!(matches!(render("a-{tag", &vars), Err(TemplateError::Unclosed { .. })));
        assert!(check("{env}-{version}").is_ok());
        assert!(check("{env}-{versoin}").is_err());
    }
}
