//! Compilation of a pipeline's steps into a DAG.

use std::collections::HashMap;

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::config::StepSpec;

/// A problem with the shape of a pipeline's steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DagProblem {
    /// Two steps share a name; `step` is the later one.
    DuplicateName { step: usize, name: String },
    /// `needs` names a step that does not exist.
    UnknownNeed { step: usize, need: usize, name: String },
    /// A step needs itself.
    SelfNeed { step: usize, need: usize },
    /// The steps form a cycle; `step` is one step on it.
    Cycle { step: usize, names: Vec<String> },
}

/// Steps of one pipeline as a graph: an edge `a → b` means `b` needs `a`.
#[derive(Debug, Clone)]
pub struct StepGraph {
    graph: DiGraph<usize, ()>,
    order: Vec<usize>,
}

impl StepGraph {
    /// Step indices in an order where every step comes after the steps it needs.
    pub fn topological_order(&self) -> &[usize] {
        &self.order
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether the pipeline has no steps.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }
}

/// Builds the DAG, reporting every problem found rather than the first.
pub fn compile(steps: &[StepSpec]) -> Result<StepGraph, Vec<DagProblem>> {
    let mut problems = Vec::new();
    let mut graph = DiGraph::with_capacity(steps.len(), steps.len());
    let nodes: Vec<NodeIndex> = (0..steps.len()).map(|i| graph.add_node(i)).collect();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        if by_name.contains_key(step.name.as_str()) {
            problems.push(DagProblem::DuplicateName { step: i, name: step.name.clone() });
        } else {
            by_name.insert(step.name.as_str(), i);
        }
    }
    for (i, step) in steps.iter().enumerate() {
        for (n, need) in step.needs.iter().enumerate() {
            match by_name.get(need.as_str()) {
                Some(&j) if j == i => problems.push(DagProblem::SelfNeed { step: i, need: n }),
                Some(&j) => {
                    graph.update_edge(nodes[j], nodes[i], ());
                }
                None => problems.push(DagProblem::UnknownNeed { step: i, need: n, name: need.clone() }),
            }
        }
    }
    let order = match toposort(&graph, None) {
        Ok(order) => order.into_iter().map(|n| graph[n]).collect(),
        Err(cycle) => {
            let start = graph[cycle.node_id()];
            problems.push(DagProblem::Cycle { step: start, names: cycle_names(&graph, steps, start) });
            Vec::new()
        }
    };
    if problems.is_empty() { Ok(StepGraph { graph, order }) } else { Err(problems) }
}

/// Names along one cycle through `start`, for the error message.
fn cycle_names(graph: &DiGraph<usize, ()>, steps: &[StepSpec], start: usize) -> Vec<String> {
    let scc = petgraph::algo::kosaraju_scc(graph);
    let members = scc.into_iter().find(|component| component.iter().any(|n| graph[*n] == start)).unwrap_or_default();
    let mut names: Vec<String> = members.iter().map(|n| steps[graph[*n]].name.clone()).collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, needs: &[&str]) -> StepSpec {
        StepSpec {
            name: name.into(),
            kind: "noop".into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            with: None,
            condition: None,
            retry: None,
            timeout: None,
            environments: Vec::new(),
        }
    }

    #[test]
    fn orders_steps_after_their_needs() {
        let steps = [step("c", &["a", "b"]), step("a", &[]), step("b", &["a"])];
        let graph = compile(&steps).unwrap();
        let order: Vec<&str> = graph.topological_order().iter().map(|i| steps[*i].name.as_str()).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn reports_every_problem() {
        let steps = [step("a", &["c"]), step("b", &["b", "ghost"]), step("c", &["a"]), step("a", &[])];
        let problems = compile(&steps).unwrap_err();
        assert!(problems.contains(&DagProblem::DuplicateName { step: 3, name: "a".into() }));
        assert!(problems.contains(&DagProblem::SelfNeed { step: 1, need: 0 }));
        assert!(problems.contains(&DagProblem::UnknownNeed { step: 1, need: 1, name: "ghost".into() }));
        assert!(problems.iter().any(|p| matches!(p, DagProblem::Cycle { .. })));
    }
}
