//! `if:` conditions of steps: when a step runs, given how the steps it needs ended.
//!
//! The language is deliberately small: `success()` (the default: every needed step succeeded
//! or was skipped by an operator), `failure()` (a needed step failed), `always()`, and
//! `steps.<name>.succeeded|failed|skipped|cancelled`, combined with `!`, `&&`, `||` and
//! parentheses. A general expression language would make pipelines harder to read and to check.

use std::collections::HashMap;

/// How a finished step ended, as conditions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Succeeded.
    Succeeded,
    /// Failed for good.
    Failed,
    /// Skipped by an operator; counts as done.
    Skipped,
    /// Not run (its condition was false, or the run was cancelled).
    Cancelled,
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Every need succeeded or was skipped.
    Success,
    /// Some need failed.
    Failure,
    /// Always true.
    Always,
    /// A named step ended this way.
    Step { name: String, outcome: Outcome },
    /// Negation.
    Not(Box<Condition>),
    /// Conjunction.
    And(Box<Condition>, Box<Condition>),
    /// Disjunction.
    Or(Box<Condition>, Box<Condition>),
}

impl Condition {
    /// Parses a condition, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens: &tokens, at: 0 };
        let condition = parser.or()?;
        if parser.at != tokens.len() {
            return Err(format!("unexpected `{}` in condition `{text}`", tokens[parser.at]));
        }
        Ok(condition)
    }

    /// Step names the condition refers to.
    pub fn step_names(&self) -> Vec<&str> {
        match self {
            Condition::Step { name, .. } => vec![name.as_str()],
            Condition::Not(inner) => inner.step_names(),
            Condition::And(a, b) | Condition::Or(a, b) => {
                let mut names = a.step_names();
                names.extend(b.step_names());
                names
            }
            _ => Vec::new(),
        }
    }

    /// Evaluates the condition given the outcomes of the step's needs (and any other finished
    /// steps it names). A named step that has not finished makes `steps.x.*` false.
    pub fn evaluate(&self, needs: &[&str], outcomes: &HashMap<&str, Outcome>) -> bool {
        match self {
            Condition::Success => {
                needs.iter().all(|n| matches!(outcomes.get(n), Some(Outcome::Succeeded | Outcome::Skipped)))
            }
            Condition::Failure => needs.iter().any(|n| outcomes.get(n) == Some(&Outcome::Failed)),
            Condition::Always => true,
            Condition::Step { name, outcome } => outcomes.get(name.as_str()) == Some(outcome),
            Condition::Not(inner) => !inner.evaluate(needs, outcomes),
            Condition::And(a, b) => a.evaluate(needs, outcomes) && b.evaluate(needs, outcomes),
            Condition::Or(a, b) => a.evaluate(needs, outcomes) || b.evaluate(needs, outcomes),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if (c == '&' || c == '|') && chars.get(i + 1) == Some(&c) {
            tokens.push(format!("{c}{c}"));
            i += 2;
        } else if c == '!' || c == '(' || c == ')' {
            tokens.push(c.to_string());
            i += 1;
        } else if c.is_alphanumeric() || c == '_' || c == '-' || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '-' | '.')) {
                i += 1;
            }
            let mut word: String = chars[start..i].iter().collect();
            // `success()` and friends: keep the call parentheses with the word.
            if chars.get(i) == Some(&'(') && chars.get(i + 1) == Some(&')') {
                word.push_str("()");
                i += 2;
            }
            tokens.push(word);
        } else {
            return Err(format!("unexpected character `{c}` in condition `{text}`"));
        }
    }
    if tokens.is_empty() {
        return Err("empty condition".into());
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: &'a [String],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn or(&mut self) -> Result<Condition, String> {
        let mut left = self.and()?;
        while self.peek() == Some("||") {
            self.at += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, String> {
        let mut left = self.unary()?;
        while self.peek() == Some("&&") {
            self.at += 1;
            left = Condition::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, String> {
        match self.peek() {
            Some("!") => {
                self.at += 1;
                Ok(Condition::Not(Box::new(self.unary()?)))
            }
            Some("(") => {
                self.at += 1;
                let inner = self.or()?;
                if self.peek() != Some(")") {
                    return Err("missing `)` in condition".into());
                }
                self.at += 1;
                Ok(inner)
            }
            Some(word) => {
                let word = word.to_string();
                self.at += 1;
                atom(&word)
            }
            None => Err("condition ends too early".into()),
        }
    }
}

fn atom(word: &str) -> Result<Condition, String> {
    match word {
        "success()" => return Ok(Condition::Success),
        "failure()" => return Ok(Condition::Failure),
        "always()" => return Ok(Condition::Always),
        _ => {}
    }
    let Some(rest) = word.strip_prefix("steps.") else {
        return Err(format!(
            "unknown condition `{word}` (use success(), failure(), always() or steps.<name>.succeeded|failed|skipped|cancelled)"
        ));
    };
    let (name, outcome) = rest
        .rsplit_once('.')
        .ok_or_else(|| format!("`{word}` needs an outcome: steps.<name>.succeeded|failed|skipped|cancelled"))?;
    let outcome = match outcome {
        "succeeded" => Outcome::Succeeded,
        "failed" => Outcome::Failed,
        "skipped" => Outcome::Skipped,
        "cancelled" => Outcome::Cancelled,
        other => return Err(format!("unknown outcome `{other}` in `{word}` (succeeded, failed, skipped, cancelled)")),
    };
    if name.is_empty() {
        return Err(format!("`{word}` names no step"));
    }
    Ok(Condition::Step { name: name.to_string(), outcome })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes<'a>(pairs: &[(&'a str, Outcome)]) -> HashMap<&'a str, Outcome> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn default_success_needs_every_need_done() {
        let c = Condition::parse("success()").unwrap();
        assert!(c.evaluate(&["a", "b"], &outcomes(&[("a", Outcome::Succeeded), ("b", Outcome::Skipped)])));
        assert!(!c.evaluate(&["a", "b"], &outcomes(&[("a", Outcome::Succeeded), ("b", Outcome::Failed)])));
        assert!(!c.evaluate(&["a"], &outcomes(&[("a", Outcome::Cancelled)])));
    }

    #[test]
    fn combinations_and_step_outcomes() {
        let c = Condition::parse("failure() && !steps.scan.skipped || always() && steps.gate.failed").unwrap();
        let o = outcomes(&[("scan", Outcome::Failed), ("gate", Outcome::Succeeded)]);
        assert!(c.evaluate(&["scan"], &o));
        let o = outcomes(&[("scan", Outcome::Skipped), ("gate", Outcome::Succeeded)]);
        assert!(!c.evaluate(&["scan"], &o));
        assert_eq!(Condition::parse("(steps.a.failed)").unwrap().step_names(), ["a"]);
    }

    #[test]
    fn bad_conditions_say_why() {
        assert!(Condition::parse("").unwrap_err().contains("empty"));
        assert!(Condition::parse("sucess()").unwrap_err().contains("unknown condition"));
        assert!(Condition::parse("steps.a.done").unwrap_err().contains("unknown outcome"));
        assert!(Condition::parse("(always()").unwrap_err().contains("missing `)`"));
        assert!(Condition::parse("always() &&").unwrap_err().contains("ends too early"));
        assert!(Condition::parse("always() $").unwrap_err().contains("unexpected character"));
    }
}
