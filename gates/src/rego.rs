//! Rego gate rules, evaluated with `regorus`.
//!
//! Each module must define a `deny` rule in its package; every message it produces is a
//! reason to deny. The input document is:
//!
//! ```json
//! {
//!   "environment": "staging",
//!   "artifact": {"repository": "acme/app", "digest": "sha256:…", "tag": "…"},
//!   "event": { "...": "the Git event that started the promotion, if any" },
//!   "findings": [{"id": "CVE-…", "aliases": [], "package": "openssl", "version": "3.0.1",
//!                 "purl": null, "score": 9.8, "severity": "critical", "severity_source": "nvd",
//!                 "vector": "CVSS:3.1/…", "fix_state": "fixed", "fixed_versions": ["3.0.2"],
//!                 "published": "2024-…", "location": "…", "report": "trivy.json",
//!                 "suppressed": null}]
//! }
//! ```
//!
//! `suppressed` is `null`, or why the finding does not count: `vex`, `exception`, `unfixed`
//! or `vendor-not-affected`, so a rule can choose to look at suppressed findings too (the
//! verdict keeps the full cause). Absent values are `null`. Modules use Rego v1 syntax
//! (`deny contains msg if { … }`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use regorus::Value;

use crate::verdict::{AssessedFinding, Suppression};
use crate::vex::Artifact;

/// Why Rego modules do not load or evaluate.
#[derive(Debug, thiserror::Error)]
pub enum RegoError {
    /// A module file cannot be read.
    #[error("read Rego module {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A module does not parse.
    #[error("load Rego module {module}: {message}")]
    Load {
        /// The module's name.
        module: String,
        /// The parser's message.
        message: String,
    },
    /// A module has no `deny` rule.
    #[error("load Rego module {module}: package {package} defines no `deny` rule")]
    NoDenyRule {
        /// The module's name.
        module: String,
        /// Its package.
        package: String,
    },
    /// Evaluation failed (a runtime error in a rule, or an input that is not a document).
    #[error("evaluate Rego rule {rule}: {message}")]
    Evaluate {
        /// The rule (`data.gantry.gate.deny`).
        rule: String,
        /// The engine's message.
        message: String,
    },
}

/// Compiled Rego modules, ready to evaluate against many inputs.
#[derive(Clone)]
pub struct RegoPolicy {
    engine: regorus::Engine,
    /// (module name, `data.<package>.deny`) for each module.
    rules: Vec<(String, String)>,
}

impl fmt::Debug for RegoPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegoPolicy").field("rules", &self.rules).finish_non_exhaustive()
    }
}

impl RegoPolicy {
    /// Compiles `(name, source)` modules.
    pub fn new(modules: Vec<(String, String)>) -> Result<RegoPolicy, RegoError> {
        let mut engine = regorus::Engine::new();
        let mut rules = Vec::new();
        for (name, source) in modules {
            let package = engine
                .add_policy(name.clone(), source)
                .map_err(|e| RegoError::Load { module: name.clone(), message: format!("{e:#}") })?;
            let declared = engine
                .has_declared_rule_rooted_at(&name, "deny")
                .map_err(|e| RegoError::Load { module: name.clone(), message: format!("{e:#}") })?;
            if !declared {
                return Err(RegoError::NoDenyRule { module: name, package });
            }
            let rule = format!("{package}.deny");
            if !rules.iter().any(|(_, known)| *known == rule) {
                rules.push((name, rule));
            }
        }
        Ok(RegoPolicy { engine, rules })
    }

    /// Names of the modules, for evidence.
    pub fn modules(&self) -> Vec<String> {
        self.rules.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Every `deny` message for a JSON `input` document.
    pub fn deny(&self, input: serde_json::Value) -> Result<Vec<String>, RegoError> {
        self.deny_value(Value::from(input))
    }

    /// Every `deny` message for the gate's input document (see the module documentation).
    pub fn deny_findings(
        &self,
        environment: Option<&str>,
        artifact: Option<&Artifact>,
        event: Option<&serde_json::Value>,
        findings: &[AssessedFinding],
    ) -> Result<Vec<String>, RegoError> {
        self.deny_value(input(environment, artifact, event, findings))
    }

    fn deny_value(&self, input: Value) -> Result<Vec<String>, RegoError> {
        let mut engine = self.engine.clone();
        engine.set_input(input);
        let mut messages = Vec::new();
        for (_, rule) in &self.rules {
            let value = engine
                .eval_rule(rule.clone())
                .map_err(|e| RegoError::Evaluate { rule: rule.clone(), message: format!("{e:#}") })?;
            collect(&value, &mut messages);
        }
        Ok(messages)
    }
}

/// Engine values for strings that repeat across findings (packages, severities, dates,
/// vectors), made once and shared.
#[derive(Default)]
struct Interner<'a> {
    strings: std::collections::HashMap<&'a str, Value>,
    times: std::collections::HashMap<chrono::DateTime<chrono::Utc>, Value>,
}

impl<'a> Interner<'a> {
    fn text(&mut self, text: &'a str) -> Value {
        self.strings.entry(text).or_insert_with(|| Value::from(text)).clone()
    }

    fn optional(&mut self, text: Option<&'a str>) -> Value {
        text.map_or(Value::Null, |t| self.text(t))
    }

    fn list(&mut self, items: &'a [String]) -> Value {
        Value::from(items.iter().map(|s| self.text(s)).collect::<Vec<_>>())
    }

    fn time(&mut self, time: Option<chrono::DateTime<chrono::Utc>>) -> Value {
        time.map_or(Value::Null, |t| self.times.entry(t).or_insert_with(|| Value::from(t.to_rfc3339())).clone())
    }
}

/// Builds the input document directly as engine values: converting 10,000 findings through
/// JSON would cost more than evaluating the rules.
fn input(
    environment: Option<&str>,
    artifact: Option<&Artifact>,
    event: Option<&serde_json::Value>,
    findings: &[AssessedFinding],
) -> Value {
    // In key order, so that each finding's map is built from sorted entries.
    let keys: Vec<Value> = [
        "aliases",
        "fix_state",
        "fixed_versions",
        "id",
        "location",
        "package",
        "published",
        "purl",
        "report",
        "score",
        "severity",
        "severity_source",
        "suppressed",
        "vector",
        "version",
    ]
    .into_iter()
    .map(Value::from)
    .collect();
    let mut interner = Interner::default();
    let items: Vec<Value> = findings
        .iter()
        .map(|f| {
            let values = [
                interner.list(&f.aliases),
                interner.text(f.fix_state.as_str()),
                interner.list(&f.fixed_versions),
                Value::from(f.id.as_str()),
                interner.optional(f.location.as_deref()),
                interner.text(&f.package),
                interner.time(f.published),
                interner.optional(f.purl.as_deref()),
                interner.text(&f.report),
                f.score.map_or(Value::Null, Value::from),
                interner.text(f.severity.as_str()),
                interner.optional(f.severity_source.as_deref()),
                match &f.suppressed {
                    None => Value::Null,
                    Some(Suppression::Vex { .. }) => interner.text("vex"),
                    Some(Suppression::Exception { .. }) => interner.text("exception"),
                    Some(Suppression::Unfixed) => interner.text("unfixed"),
                    Some(Suppression::VendorNotAffected) => interner.text("vendor-not-affected"),
                },
                interner.optional(f.vector.as_deref()),
                interner.optional(f.version.as_deref()),
            ];
            let object: BTreeMap<Value, Value> = keys.iter().cloned().zip(values).collect();
            Value::from(object)
        })
        .collect();
    let mut document = BTreeMap::new();
    document.insert(Value::from("environment"), environment.map_or(Value::Null, Value::from));
    document.insert(
        Value::from("artifact"),
        artifact.and_then(|a| serde_json::to_value(a).ok()).map_or(Value::Null, Value::from),
    );
    document.insert(Value::from("event"), event.cloned().map_or(Value::Null, Value::from));
    document.insert(Value::from("findings"), Value::from(items));
    Value::from(document)
}

/// Turns a `deny` value (a set or array of messages) into strings; non-string messages are
/// kept as their JSON.
fn collect(value: &regorus::Value, into: &mut Vec<String>) {
    let items: Vec<&regorus::Value> = match value {
        regorus::Value::Set(set) => set.iter().collect(),
        regorus::Value::Array(array) => array.iter().collect(),
        regorus::Value::Undefined | regorus::Value::Null => Vec::new(),
        // `deny = true`-style rules: a bare truthy value is one anonymous reason.
        regorus::Value::Bool(false) => Vec::new(),
        other => vec![other],
    };
    for item in items {
        match item {
            regorus::Value::String(text) => into.push(text.to_string()),
            other => into.push(
                other
                    .to_json_str()
                    .map(|json| json.split_whitespace().collect::<Vec<_>>().join(" "))
                    .unwrap_or_else(|_| "denied by a Rego rule".to_string()),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULE: &str = r#"
package gantry.gate

deny contains msg if {
    some f in input.findings
    f.severity == "critical"
    f.suppressed == null
    msg := sprintf("%s in %s is critical in %s", [f.id, f.package, input.environment])
}
"#;

    #[test]
    fn deny_messages_are_collected() {
        let policy = RegoPolicy::new(vec![("gate.rego".into(), RULE.into())]).unwrap();
        let input = json!({"environment": "prod", "findings": [
            {"id": "CVE-1", "package": "a", "severity": "critical", "suppressed": null},
            {"id": "CVE-2", "package": "b", "severity": "critical", "suppressed": "vex"},
            {"id": "CVE-3", "package": "c", "severity": "low", "suppressed": null}
        ]});
        assert_eq!(policy.deny(input).unwrap(), ["CVE-1 in a is critical in prod"]);
        let clean = json!({"environment": "prod", "findings": []});
        assert!(policy.deny(clean).unwrap().is_empty());
    }

    #[test]
    fn modules_without_deny_or_with_syntax_errors_are_refused() {
        let error = RegoPolicy::new(vec![("allow.rego".into(), "package p\nallow := true\n".into())]).unwrap_err();
        assert!(matches!(error, RegoError::NoDenyRule { .. }), "{error}");
        let error = RegoPolicy::new(vec![("bad.rego".into(), "package p\ndeny contains".into())]).unwrap_err();
        assert!(error.to_string().starts_with("load Rego module bad.rego"), "{error}");
    }
}
