//! Handlebars templates for commit messages and change requests, compiled into the binary
//! from the repository's `templates/` folder.

use handlebars::Handlebars;
use serde::Serialize;

/// The compiled templates.
pub struct Templates {
    registry: Handlebars<'static>,
}

const TEMPLATES: &[(&str, &str)] = &[
    ("commit_message", include_str!("../../templates/commit_message.hbs")),
    ("pr_title", include_str!("../../templates/pr_title.hbs")),
    ("pr_body", include_str!("../../templates/pr_body.hbs")),
];

impl Templates {
    /// The built-in templates. They are checked by a unit test, so a broken one fails the build's
    /// tests rather than a promotion.
    pub fn builtin() -> Self {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        // Commit messages and Markdown are not HTML: no escaping.
        registry.register_escape_fn(handlebars::no_escape);
        for (name, text) in TEMPLATES {
            if let Err(error) = registry.register_template_string(name, *text) {
                tracing::error!(template = name, %error, "built-in template does not compile");
            }
        }
        Self { registry }
    }

    /// Renders template `name` with `data`.
    pub fn render(&self, name: &str, data: &impl Serialize) -> Result<String, handlebars::RenderError> {
        self.registry.render(name, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_template_compiles() {
        for (name, text) in TEMPLATES {
            let mut registry = Handlebars::new();
            registry.register_template_string(name, *text).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
