//! Rendering planned runs as a Graphviz graph, for `gantry plan --format dot`.
//!
//! All runs go into one `digraph`, each run a cluster, so that `dot -Tsvg` draws them in one
//! picture. A node shows a step's name and kind; an edge goes from a need to the step that
//! needs it. Approvals are drawn as hexagons and conditions label the step they guard.

use std::fmt::Write as _;

use crate::argo::APPROVAL_KIND;
use crate::plan::Plan;

/// The step DAGs of `plans` as one Graphviz `digraph`.
pub fn render(plans: &[Plan]) -> String {
    let mut out = String::from("digraph gantry {\n");
    out.push_str("  rankdir=LR;\n");
    out.push_str("  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
    out.push_str("  edge [fontname=\"Helvetica\"];\n");
    if plans.is_empty() {
        out.push_str("  label=\"no runs\";\n");
    }
    for (run, plan) in plans.iter().enumerate() {
        // Writing to a String cannot fail, so the results of `writeln!` carry no information.
        let _ = writeln!(out, "  subgraph \"cluster_{run}\" {{");
        let _ = writeln!(
            out,
            "    label={};",
            quote(&format!("{} → {} ({}, {})", plan.app, plan.environment, plan.pipeline, plan.trigger))
        );
        for step in &plan.steps {
            let mut label = format!("{}\n{}", step.name, step.kind);
            if let Some(condition) = &step.condition {
                label.push_str(&format!("\nif: {condition}"));
            }
            let shape = if step.kind == APPROVAL_KIND { ", shape=hexagon" } else { "" };
            let _ = writeln!(out, "    {} [label={}{shape}];", node(run, &step.name), quote(&label));
        }
        for step in &plan.steps {
            for need in &step.needs {
                let _ = writeln!(out, "    {} -> {};", node(run, need), node(run, &step.name));
            }
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

/// Node ids carry the run's index: two runs usually have steps of the same name.
fn node(run: usize, step: &str) -> String {
    quote(&format!("{run}/{step}"))
}

/// A DOT quoted string; newlines become DOT's centred line breaks.
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => {}
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_escape_what_dot_would_misread() {
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        assert_eq!(quote("a\\nb"), "\"a\\\\nb\"");
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
    }

    #[test]
    fn no_runs_is_still_a_graph() {
        let text = render(&[]);
        assert!(text.starts_with("digraph gantry {"));
        assert!(text.contains("no runs"));
        assert!(text.trim_end().ends_with('}'));
    }
}
