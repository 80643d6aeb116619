//! The concurrency rules of promotions, as a pure decision over queued runs, so that every
//! store applies the same rules and they are tested without a database.

use std::collections::HashSet;

/// A run waiting to be admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRun {
    /// Run id.
    pub id: String,
    /// App.
    pub app: String,
    /// Environment.
    pub environment: String,
    /// The environment's policy: a newer queued artifact cancels older queued ones.
    pub supersede: bool,
    /// Admitted even into a held environment (a rollback); never superseded.
    pub bypass_hold: bool,
}

/// What to do with the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmissionDecision {
    /// Runs to admit.
    pub admitted: Vec<String>,
    /// Runs to cancel, each with the run that supersedes it.
    pub superseded: Vec<(String, String)>,
}

/// Decides admission. `queued` is oldest first; `busy` holds the (app, environment) pairs with
/// an admitted run still going; `holds` (environment, app or "" for all apps).
pub fn decide_admission(
    queued: Vec<QueuedRun>,
    busy: &HashSet<(String, String)>,
    holds: &[(String, String)],
) -> AdmissionDecision {
    let mut decision = AdmissionDecision::default();
    let mut groups: Vec<((String, String), Vec<QueuedRun>)> = Vec::new();
    for run in queued {
        let key = (run.app.clone(), run.environment.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, runs)) => runs.push(run),
            None => groups.push((key, vec![run])),
        }
    }
    for ((app, environment), mut runs) in groups {
        let held = holds.iter().any(|(env, held_app)| *env == environment && (held_app.is_empty() || *held_app == app));
        if runs.last().is_some_and(|r| r.supersede) && runs.len() > 1 {
            let newest = runs.iter().rev().find(|r| !r.bypass_hold).map(|r| r.id.clone());
            if let Some(newest) = newest {
                runs.retain(|r| {
                    let keep = r.id == newest || r.bypass_hold;
                    if !keep {
                        decision.superseded.push((r.id.clone(), newest.clone()));
                    }
                    keep
                });
            }
        }
        if busy.contains(&(app, environment)) {
            continue;
        }
        // Rollbacks first; otherwise oldest first (with supersede only the newest is left).
        let next = runs.iter().find(|r| r.bypass_hold).or_else(|| if held { None } else { runs.first() });
        if let Some(run) = next {
            decision.admitted.push(run.id.clone());
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, env: &str, supersede: bool, bypass_hold: bool) -> QueuedRun {
        QueuedRun { id: id.into(), app: "app".into(), environment: env.into(), supersede, bypass_hold }
    }

    #[test]
    fn newest_queued_artifact_supersedes_older_ones() {
        let d = decide_admission(
            vec![run("a", "dev", true, false), run("b", "dev", true, false), run("c", "dev", true, false)],
            &HashSet::new(),
            &[],
        );
        assert_eq!(d.admitted, ["c"]);
        assert_eq!(d.superseded, [("a".to_string(), "c".to_string()), ("b".to_string(), "c".to_string())]);
    }

    #[test]
    fn queue_policy_admits_oldest_and_keeps_the_rest() {
        let d =
            decide_admission(vec![run("a", "dev", false, false), run("b", "dev", false, false)], &HashSet::new(), &[]);
        assert_eq!(d.admitted, ["a"]);
        assert!(d.superseded.is_empty());
    }

    #[test]
    fn busy_environments_admit_nothing_but_still_supersede() {
        let busy: HashSet<_> = [("app".to_string(), "dev".to_string())].into();
        let d = decide_admission(
            vec![run("a", "dev", true, false), run("b", "dev", true, false), run("c", "prod", true, false)],
            &busy,
            &[],
        );
        assert_eq!(d.admitted, ["c"]);
        assert_eq!(d.superseded, [("a".to_string(), "b".to_string())]);
    }

    #[test]
    fn holds_block_everything_but_rollbacks() {
        let holds = [("prod".to_string(), String::new())];
        let d = decide_admission(vec![run("a", "prod", true, false)], &HashSet::new(), &holds);
        assert!(d.admitted.is_empty());
        let d = decide_admission(
            vec![run("r", "prod", true, true), run("a", "prod", true, false)],
            &HashSet::new(),
            &holds,
        );
        assert_eq!(d.admitted, ["r"]);
        let app_hold = [("prod".to_string(), "other".to_string())];
        let d = decide_admission(vec![run("a", "prod", true, false)], &HashSet::new(), &app_hold);
        assert_eq!(d.admitted, ["a"]);
    }
}
