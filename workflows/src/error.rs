//! Errors of the configuration layer.

use std::fmt;
use std::path::PathBuf;

/// One problem found in the configuration, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// File the problem is in (`None` when it concerns the directory as a whole).
    pub file: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong, as a lowercase fragment.
    pub message: String,
}

impl ConfigError {
    /// A problem located at `file:line`.
    pub fn at(file: impl Into<PathBuf>, line: Option<usize>, message: impl Into<String>) -> Self {
        Self { file: Some(file.into()), line, message: message.into() }
    }

    /// A problem with no file to point at.
    pub fn general(message: impl Into<String>) -> Self {
        Self { file: None, line: None, message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{}: {}", file.display(), line, self.message),
            (Some(file), None) => write!(f, "{}: {}", file.display(), self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

/// A `{placeholder}` template that cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template names a placeholder that does not exist.
    #[error("unknown placeholder {{{name}}} in template {template:?} (known: {known})")]
    UnknownPlaceholder { template: String, name: String, known: String },
    /// The placeholder exists but has no value for this event (e.g. `{tag}` on a branch push).
    #[error("placeholder {{{name}}} in template {template:?} has no value for this event")]
    MissingValue { template: String, name: String },
    /// A `{` without its `}`.
    #[error("unclosed '{{' in template {template:?}")]
    Unclosed { template: String },
}
