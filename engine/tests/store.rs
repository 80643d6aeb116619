//! The store contract: the same scenarios against SQLite and PostgreSQL, so that both stores
//! keep the same semantics — DAG order, retries, waiting and waking, admission (supersede,
//! queue, holds), cancel, leases and their expiry — and, for the stores several executors
//! share, that concurrent claims, admissions, settles and creations never do anything twice.
//!
//! Each PostgreSQL test runs in a database of its own (see `tests/support/postgres.rs`).

#[path = "../../tests/support/postgres.rs"]
mod postgres_support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use gantry_engine::error::StoreError;
use gantry_engine::model::{Millis, RunState, StepState, now_millis};
use gantry_engine::store::{
    ClaimedStep, DeliveryStatus, Hold, Inserted, NewChangeRequest, NewDelivery, NewRun, PostgresStore, RunOrigin,
    StepRecord,
};
use gantry_engine::{SqliteStore, StepRegistry, Store};
use gantry_webhooks::{EventKind, Forge, GitEvent, RefKind};
use gantry_workflows::{Config, Plan};
use postgres_support::TestDatabase;
use serde_json::json;

/// Apps `app-0` … `app-59` (for the tests that need many independent runs) plus `web`.
const APPS: usize = 60;

/// dev supersedes, qa queues. Every pipeline: build → (left, right) → join, and notify after
/// build only on failure.
fn config_yaml() -> String {
    let mut apps = String::from("  - { name: web, source_repo: acme/web, registry: local, repository: web }\n");
    for i in 0..APPS {
        apps.push_str(&format!(
            "  - {{ name: app-{i}, source_repo: acme/app-{i}, registry: local, repository: app-{i} }}\n"
        ));
    }
    format!(
        r#"
registries:
  - {{ name: local, url: "oci-layout:registry" }}
apps:
{apps}
environments:
  - name: dev
    order: 1
    concurrency: supersede
    config_repo: {{ url: repos/dev.git, path: "apps/{{app}}/kustomization.yaml" }}
  - name: qa
    order: 2
    concurrency: queue
    config_repo: {{ url: repos/qa.git, path: "apps/{{app}}/kustomization.yaml" }}
pipelines:
  - name: default
    triggers:
      - {{ on: branch, pattern: main, environment: dev, artifact_tag: "sha-{{sha7}}" }}
      - {{ on: branch, pattern: "queue/*", environment: qa, artifact_tag: "sha-{{sha7}}" }}
    steps:
      - {{ name: build, kind: noop }}
      - {{ name: left, kind: noop, needs: [build] }}
      - {{ name: right, kind: noop, needs: [build] }}
      - {{ name: join, kind: noop, needs: [left, right] }}
      - {{ name: notify, kind: noop, needs: [build], if: "failure()" }}
"#
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// One store under test, and what the scenarios need around it.
struct Harness {
    backend: Backend,
    store: Arc<dyn Store>,
    config: Config,
    database: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new(backend: Backend) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gantry.yaml"), config_yaml()).unwrap();
        let config = gantry_workflows::load_dir(dir.path(), &StepRegistry::builtin())
            .unwrap_or_else(|errors| panic!("test config: {errors:#?}"));
        let (store, database): (Arc<dyn Store>, _) = match backend {
            Backend::Sqlite => (Arc::new(SqliteStore::open(&dir.path().join("gantry.db")).await.unwrap()), None),
            Backend::Postgres => {
                let database = TestDatabase::create().await;
                (Arc::new(PostgresStore::connect(&database.url).await.unwrap()), Some(database))
            }
        };
        Harness { backend, store, config, database, _dir: dir }
    }

    /// Another store on the same database, as another replica opens it (SQLite is one process:
    /// the same store).
    async fn replica(&self) -> Arc<dyn Store> {
        match &self.database {
            Some(database) => Arc::new(PostgresStore::connect(&database.url).await.unwrap()),
            None => self.store.clone(),
        }
    }

    /// Whether executors in several processes share this store.
    fn shared(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// The plan a push of a fresh commit to `branch` of `app` starts.
    fn plan(&self, app: &str, branch: &str) -> Plan {
        let event = GitEvent {
            ref_kind: Some(RefKind::Branch),
            ref_name: Some(branch.into()),
            sha: Some(uuid::Uuid::new_v4().simple().to_string() + "00000000"),
            ..GitEvent::new(Forge::Github, EventKind::Push, format!("acme/{app}"))
        };
        let mut plans = gantry_workflows::plan(&self.config, &event).unwrap();
        assert_eq!(plans.len(), 1, "one plan for a push of {app} to {branch}");
        plans.remove(0)
    }

    async fn create(&self, app: &str, branch: &str) -> String {
        self.create_with(app, branch, RunOrigin::Manual, false).await
    }

    async fn create_with(&self, app: &str, branch: &str, origin: RunOrigin, bypass_hold: bool) -> String {
        let plan = self.plan(app, branch);
        self.store.create_run(NewRun { plan: &plan, digest: None, origin, bypass_hold }).await.unwrap().unwrap()
    }

    async fn step_state(&self, run: &str, step: &str) -> StepState {
        let run = self.store.get_run(run).await.unwrap().unwrap();
        run.steps.iter().find(|s| s.name == step).unwrap().state
    }

    async fn run_state(&self, run: &str) -> RunState {
        self.store.get_run(run).await.unwrap().unwrap().state
    }
}

fn succeeded(outputs: serde_json::Value) -> StepRecord {
    StepRecord::Succeeded { outputs, pin_digest: None }
}

async fn claim(store: &Arc<dyn Store>, owner: &str, now: Millis) -> Option<ClaimedStep> {
    store.claim_step(owner, now, now + 60_000).await.unwrap()
}

async fn claim_all(store: &Arc<dyn Store>, owner: &str, now: Millis) -> Vec<ClaimedStep> {
    let mut claimed = Vec::new();
    while let Some(step) = claim(store, owner, now).await {
        claimed.push(step);
    }
    claimed
}

fn names(claimed: &[ClaimedStep]) -> Vec<&str> {
    let mut names: Vec<&str> = claimed.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    names
}

/// Runs one scenario against SQLite and against PostgreSQL.
macro_rules! contract {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::Harness::new(super::Backend::Sqlite).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::Harness::new(super::Backend::Postgres).await).await;
                }
            )*
        }
    };
}

contract!(
    steps_run_in_dag_order_with_their_needs_outputs,
    transient_errors_retry_at_their_time_and_failures_fail_the_run,
    waiting_steps_sleep_until_their_time_or_event,
    newer_artifacts_supersede_queued_runs_but_never_a_running_one,
    queue_policy_admits_one_run_at_a_time_oldest_first,
    holds_keep_runs_out_except_rollbacks,
    cancel_stops_a_run_and_its_running_attempt_records_nothing_new,
    skipped_steps_let_the_run_go_on,
    leases_are_renewed_by_heartbeats_and_taken_over_when_expired,
    concurrent_claims_and_settles_do_everything_exactly_once,
    concurrent_admissions_admit_one_run_per_environment,
    deliveries_and_follow_ups_are_created_once,
    change_requests_are_recorded_once_per_branch,
);

async fn steps_run_in_dag_order_with_their_needs_outputs(h: Harness) {
    let run = h.create("web", "main").await;
    assert_eq!(h.run_state(&run).await, RunState::Pending);
    let t = now_millis() + 1_000;
    assert!(claim(&h.store, "a", t).await.is_none(), "a run is not executed before it is admitted");
    let admission = h.store.admit(t).await.unwrap();
    assert_eq!(admission.admitted, std::slice::from_ref(&run));

    let build = claim(&h.store, "a", t).await.expect("build is ready");
    assert_eq!((build.name.as_str(), build.attempt), ("build", 1));
    assert!(claim(&h.store, "a", t).await.is_none(), "left and right need build");
    assert_eq!(h.run_state(&run).await, RunState::Running);
    h.store
        .finish_step(
            &run,
            "build",
            StepRecord::Succeeded { outputs: json!({"image": "x"}), pin_digest: Some("sha256:abc".into()) },
            t,
        )
        .await
        .unwrap();

    let both = claim_all(&h.store, "a", t).await;
    assert_eq!(names(&both), ["left", "right"]);
    for step in &both {
        assert_eq!(step.outputs["build"], json!({"image": "x"}), "earlier outputs reach later steps");
        assert_eq!(step.digest.as_deref(), Some("sha256:abc"), "the pinned digest reaches later steps");
    }
    h.store.finish_step(&run, "left", succeeded(json!({})), t).await.unwrap();
    assert!(claim(&h.store, "a", t).await.is_none(), "join needs right too");
    h.store.finish_step(&run, "right", succeeded(json!({})), t).await.unwrap();
    let join = claim(&h.store, "a", t).await.expect("join is ready");
    assert_eq!(join.name, "join");
    h.store.finish_step(&run, "join", succeeded(json!({"done": true})), t + 5).await.unwrap();

    let done = h.store.get_run(&run).await.unwrap().unwrap();
    assert_eq!(done.state, RunState::Succeeded);
    assert_eq!(done.digest.as_deref(), Some("sha256:abc"));
    assert_eq!(done.finished_at, Some(t + 5));
    let notify = done.steps.iter().find(|s| s.name == "notify").unwrap();
    assert_eq!(notify.state, StepState::Cancelled);
    assert_eq!(notify.note.as_deref(), Some("not run: condition failure() is false"));
    let plan_order: Vec<&str> = done.plan.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(done.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), plan_order, "steps in plan order");
    // A finished step's record is not taken twice.
    h.store.finish_step(&run, "join", StepRecord::Failed { error: "late".into() }, t + 6).await.unwrap();
    assert_eq!(h.run_state(&run).await, RunState::Succeeded);

    assert_eq!(
        h.store.runs_to_advance(10).await.unwrap().iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        std::slice::from_ref(&run)
    );
    assert_eq!(h.store.promoted_environments("web", "sha256:abc").await.unwrap(), ["dev"]);
    assert_eq!(h.store.succeeded_runs("web", "dev", 5).await.unwrap()[0].id, run);
    assert_eq!(h.store.last_succeeded_runs().await.unwrap()[0].id, run);
    assert_eq!(h.store.list_runs(10).await.unwrap(), [done]);
    assert_eq!(h.store.next_wakeup().await.unwrap(), None, "nothing is left to run");
}

async fn transient_errors_retry_at_their_time_and_failures_fail_the_run(h: Harness) {
    let run = h.create("web", "main").await;
    let t = now_millis() + 1_000;
    h.store.admit(t).await.unwrap();
    claim(&h.store, "a", t).await.unwrap();
    h.store.finish_step(&run, "build", StepRecord::Retry { at: t + 60_000, error: "503".into() }, t).await.unwrap();
    assert!(claim(&h.store, "a", t + 59_999).await.is_none(), "not before its retry time");
    assert_eq!(h.store.next_wakeup().await.unwrap(), Some(t + 60_000));
    let again = claim(&h.store, "a", t + 60_000).await.expect("claimable at its retry time");
    assert_eq!(again.attempt, 2);
    let t = t + 60_000;
    h.store.finish_step(&run, "build", StepRecord::Failed { error: "denied".into() }, t).await.unwrap();
    // The failure cancels what needed build, and lets notify (failure()) run.
    assert_eq!(h.step_state(&run, "left").await, StepState::Cancelled);
    assert_eq!(h.step_state(&run, "join").await, StepState::Cancelled);
    let notify = claim(&h.store, "a", t).await.expect("notify runs on failure");
    assert_eq!(notify.name, "notify");
    h.store.finish_step(&run, "notify", succeeded(json!({})), t).await.unwrap();
    let failed = h.store.get_run(&run).await.unwrap().unwrap();
    assert_eq!(failed.state, RunState::Failed);
    // The step's own error is on the step; the run names the failed steps.
    assert_eq!(failed.error.as_deref(), Some("step build failed"));
    let build = failed.steps.iter().find(|s| s.name == "build").unwrap();
    assert_eq!((build.state, build.error.as_deref()), (StepState::Failed, Some("denied")));

    // An operator retries the failed step: the steps its failure kept from running come back.
    let error = h.store.retry_step(&run, "left", t).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error}");
    h.store.retry_step(&run, "build", t).await.unwrap();
    assert_eq!(h.run_state(&run).await, RunState::Running);
    assert_eq!(h.step_state(&run, "left").await, StepState::Pending);
    let build = claim(&h.store, "a", t).await.unwrap();
    assert_eq!((build.name.as_str(), build.attempt), ("build", 3));
    h.store.finish_step(&run, "build", succeeded(json!({})), t).await.unwrap();
    for step in claim_all(&h.store, "a", t).await {
        h.store.finish_step(&run, &step.name, succeeded(json!({})), t).await.unwrap();
    }
    let join = claim(&h.store, "a", t).await.unwrap();
    h.store.finish_step(&run, &join.name, succeeded(json!({})), t).await.unwrap();
    let done = h.store.get_run(&run).await.unwrap().unwrap();
    assert_eq!(done.state, RunState::Succeeded, "{done:#?}");
    assert_eq!(done.error, None);
}

async fn waiting_steps_sleep_until_their_time_or_event(h: Harness) {
    let run = h.create("web", "main").await;
    let t = now_millis() + 1_000;
    h.store.admit(t).await.unwrap();
    claim(&h.store, "a", t).await.unwrap();
    let waiting = StepRecord::Waiting {
        until: t + 3_600_000,
        wake_on: Some("merge:abc".into()),
        outputs: Some(json!({"checked": 1})),
        reason: "change request merge".into(),
    };
    h.store.finish_step(&run, "build", waiting, t).await.unwrap();
    assert_eq!(h.run_state(&run).await, RunState::Waiting);
    assert!(claim(&h.store, "a", t + 1).await.is_none(), "a waiting step holds no worker");
    assert_eq!(h.store.wake("merge:other", t + 2).await.unwrap(), 0);
    assert_eq!(h.store.wake("merge:abc", t + 2).await.unwrap(), 1);
    let woken = claim(&h.store, "a", t + 2).await.expect("woken by its event");
    assert_eq!(woken.progress, Some(json!({"checked": 1, "waiting_for": "change request merge"})));
    assert_eq!(h.run_state(&run).await, RunState::Running);

    // Waiting again, then approved: the approval is recorded and the step is due at once.
    let waiting = StepRecord::Waiting { until: t + 3_600_000, wake_on: None, outputs: None, reason: "approval".into() };
    h.store.finish_step(&run, "build", waiting, t + 3).await.unwrap();
    h.store.approve_step(&run, "build", "alice", Some("ship it"), t + 4).await.unwrap();
    let approved = claim(&h.store, "a", t + 4).await.expect("approval wakes the step");
    let progress = approved.progress.unwrap();
    assert_eq!((progress["approved_by"].as_str(), progress["comment"].as_str()), (Some("alice"), Some("ship it")));
    assert_eq!(progress["waiting_for"], "approval");
    let error = h.store.approve_step(&run, "build", "bob", None, t + 5).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "a running step has nothing to approve: {error}");
}

async fn newer_artifacts_supersede_queued_runs_but_never_a_running_one(h: Harness) {
    let first = h.create("web", "main").await;
    let t = now_millis() + 1_000;
    assert_eq!(h.store.admit(t).await.unwrap().admitted, std::slice::from_ref(&first));
    claim(&h.store, "a", t).await.unwrap();
    let second = h.create("web", "main").await;
    let third = h.create("web", "main").await;
    let admission = h.store.admit(t + 1).await.unwrap();
    assert!(admission.admitted.is_empty(), "web is busy in dev");
    assert_eq!(admission.superseded, std::slice::from_ref(&second));
    let cancelled = h.store.get_run(&second).await.unwrap().unwrap();
    assert_eq!(cancelled.state, RunState::Cancelled);
    assert!(cancelled.error.unwrap().contains(&format!("superseded by run {third}")));
    assert!(cancelled.steps.iter().all(|s| s.state == StepState::Cancelled));
    assert_eq!(h.run_state(&first).await, RunState::Running, "the running run goes on");
    h.store.cancel_run(&first, "make room", t + 2).await.unwrap();
    assert_eq!(h.store.admit(t + 3).await.unwrap().admitted, std::slice::from_ref(&third));
    assert_eq!(claim(&h.store, "a", t + 3).await.unwrap().run_id, third);
}

async fn queue_policy_admits_one_run_at_a_time_oldest_first(h: Harness) {
    let runs = [h.create("web", "queue/1").await, h.create("web", "queue/2").await, h.create("web", "queue/3").await];
    let t = now_millis() + 1_000;
    let admission = h.store.admit(t).await.unwrap();
    assert_eq!(admission.admitted, [runs[0].clone()]);
    assert!(admission.superseded.is_empty());
    assert!(h.store.admit(t).await.unwrap().admitted.is_empty(), "one admitted run per environment");
    for (i, run) in runs.iter().enumerate() {
        let build = claim(&h.store, "a", t).await.unwrap();
        assert_eq!(&build.run_id, run, "run {i} goes next");
        h.store.finish_step(run, "build", StepRecord::Failed { error: "no".into() }, t).await.unwrap();
        let notify = claim(&h.store, "a", t).await.unwrap();
        h.store.finish_step(run, &notify.name, succeeded(json!({})), t).await.unwrap();
        assert_eq!(h.run_state(run).await, RunState::Failed);
        let next = h.store.admit(t).await.unwrap().admitted;
        assert_eq!(next, runs.get(i + 1).cloned().into_iter().collect::<Vec<_>>());
    }
}

async fn holds_keep_runs_out_except_rollbacks(h: Harness) {
    let t = now_millis();
    let hold = Hold { environment: "dev".into(), app: None, reason: "freeze".into(), digest: None, created_at: t };
    h.store.hold(&hold).await.unwrap();
    h.store.hold(&Hold { reason: "freeze, really".into(), ..hold.clone() }).await.unwrap();
    assert_eq!(h.store.holds().await.unwrap(), [Hold { reason: "freeze, really".into(), ..hold.clone() }]);
    let run = h.create("web", "main").await;
    assert!(h.store.admit(t + 1).await.unwrap().admitted.is_empty(), "dev is held");
    let rollback = h.create_with("web", "main", RunOrigin::Rollback, true).await;
    let admission = h.store.admit(t + 2).await.unwrap();
    assert_eq!(admission.admitted, std::slice::from_ref(&rollback), "a rollback enters a held environment");
    assert!(admission.superseded.is_empty(), "the held run waits; the rollback supersedes nothing");
    h.store.cancel_run(&rollback, "done", t + 3).await.unwrap();
    assert!(!h.store.release("dev", Some("web")).await.unwrap(), "no hold of web alone");
    assert!(h.store.release("dev", None).await.unwrap());
    assert_eq!(h.store.admit(t + 4).await.unwrap().admitted, [run]);
    assert!(h.store.holds().await.unwrap().is_empty());
}

async fn cancel_stops_a_run_and_its_running_attempt_records_nothing_new(h: Harness) {
    let run = h.create("web", "main").await;
    let t = now_millis() + 1_000;
    h.store.admit(t).await.unwrap();
    claim(&h.store, "a", t).await.unwrap();
    h.store.cancel_run(&run, "wrong branch", t + 1).await.unwrap();
    let cancelled = h.store.get_run(&run).await.unwrap().unwrap();
    assert_eq!(cancelled.state, RunState::Cancelled);
    assert_eq!(cancelled.error.as_deref(), Some("cancelled: wrong branch"));
    for step in &cancelled.steps {
        let expected = if step.name == "build" { StepState::Running } else { StepState::Cancelled };
        assert_eq!(
            step.state, expected,
            "{}: the attempt under way finishes by itself, nothing else starts",
            step.name
        );
    }
    h.store.finish_step(&run, "build", succeeded(json!({})), t + 2).await.unwrap();
    assert_eq!(h.run_state(&run).await, RunState::Cancelled);
    assert!(claim(&h.store, "a", t + 3).await.is_none(), "nothing of a cancelled run starts");
    let again = h.store.cancel_run(&run, "again", t + 4).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict { .. }), "{again}");
    let unknown = h.store.cancel_run("no-such-run", "x", t).await.unwrap_err();
    assert!(matches!(unknown, StoreError::NotFound { .. }), "{unknown}");
}

async fn skipped_steps_let_the_run_go_on(h: Harness) {
    let run = h.create("web", "main").await;
    let t = now_millis() + 1_000;
    h.store.admit(t).await.unwrap();
    h.store.skip_step(&run, "left", "checked by hand", t).await.unwrap();
    let build = claim(&h.store, "a", t).await.unwrap();
    let error = h.store.skip_step(&run, "build", "x", t).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "a running step cannot be skipped: {error}");
    h.store.finish_step(&run, &build.name, succeeded(json!({})), t).await.unwrap();
    let right = claim(&h.store, "a", t).await.unwrap();
    assert_eq!(right.name, "right", "left was skipped");
    h.store.finish_step(&run, "right", succeeded(json!({})), t).await.unwrap();
    let join = claim(&h.store, "a", t).await.unwrap();
    assert_eq!(join.name, "join", "a skipped need counts as done");
    h.store.finish_step(&run, "join", succeeded(json!({})), t).await.unwrap();
    let done = h.store.get_run(&run).await.unwrap().unwrap();
    assert_eq!(done.state, RunState::Succeeded);
    let left = done.steps.iter().find(|s| s.name == "left").unwrap();
    assert_eq!((left.state, left.note.as_deref()), (StepState::Skipped, Some("skipped: checked by hand")));
}

async fn leases_are_renewed_by_heartbeats_and_taken_over_when_expired(h: Harness) {
    let run = h.create("web", "main").await;
    let t = now_millis() + 1_000;
    h.store.admit(t).await.unwrap();
    let first = h.store.claim_step("executor-a", t, t + 1_000).await.unwrap().unwrap();
    assert_eq!(first.attempt, 1);
    assert_eq!(h.store.heartbeat("executor-a", t + 5_000).await.unwrap(), 1);
    assert_eq!(h.store.heartbeat("executor-c", t + 5_000).await.unwrap(), 0);
    assert_eq!(h.store.recover("executor-a", t + 2_000).await.unwrap(), 0, "an executor keeps its own live steps");

    let other = h.replica().await;
    let taken_over = other.recover("executor-b", t + 2_000).await.unwrap();
    if h.shared() {
        // Another replica: executor-a's lease, renewed to t+5s, still holds.
        assert_eq!(taken_over, 0, "a live replica's step is not taken over");
        assert_eq!(h.step_state(&run, "build").await, StepState::Running);
        assert_eq!(other.recover("executor-b", t + 5_001).await.unwrap(), 1, "an expired lease is taken over");
    } else {
        // One process: a step not leased to the running executor was left by a dead one.
        assert_eq!(taken_over, 1);
    }
    let second = other.claim_step("executor-b", t + 5_001, t + 65_000).await.unwrap().expect("handed out again");
    assert_eq!((second.name.as_str(), second.attempt), ("build", 2));

    // executor-a comes back from its stall with an outcome: with replicas, the lease is
    // executor-b's now and only its record counts.
    h.store
        .finish_claimed_step("executor-a", &run, "build", StepRecord::Failed { error: "stale".into() }, t + 6_000)
        .await
        .unwrap();
    if h.shared() {
        assert_eq!(h.step_state(&run, "build").await, StepState::Running, "a lost lease's record is dropped");
        other.finish_claimed_step("executor-b", &run, "build", succeeded(json!({})), t + 6_001).await.unwrap();
        assert_eq!(h.step_state(&run, "build").await, StepState::Succeeded);
    } else {
        assert_eq!(h.step_state(&run, "build").await, StepState::Failed);
    }
    assert_eq!(h.store.heartbeat("executor-b", t + 70_000).await.unwrap(), 0, "no lease outlives its step");
}

/// 60 runs, each build → (left, right) → join, driven by 8 concurrent workers (on 4 store
/// instances with PostgreSQL, as 4 replicas would): every step is claimed exactly once, every
/// join becomes ready exactly once, every run succeeds.
async fn concurrent_claims_and_settles_do_everything_exactly_once(h: Harness) {
    let mut runs = HashSet::new();
    for i in 0..APPS {
        runs.insert(h.create(&format!("app-{i}"), "main").await);
    }
    let t = now_millis() + 1_000;
    assert_eq!(h.store.admit(t).await.unwrap().admitted.len(), APPS);
    let mut stores = vec![h.store.clone()];
    for _ in 1..4 {
        stores.push(h.replica().await);
    }
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let store = stores[worker % stores.len()].clone();
        workers.spawn(async move {
            let owner = format!("worker-{worker}");
            let mut done = Vec::new();
            // Until no step has been claimable for a while: the others may still be settling.
            let mut idle = 0;
            while idle < 20 {
                match store.claim_step(&owner, t, t + 60_000).await.unwrap() {
                    Some(step) => {
                        idle = 0;
                        store
                            .finish_claimed_step(&owner, &step.run_id, &step.name, succeeded(json!({"by": owner})), t)
                            .await
                            .unwrap();
                        done.push((step.run_id, step.name, step.attempt));
                    }
                    None => {
                        idle += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
            done
        });
    }
    let mut executed: HashMap<(String, String), usize> = HashMap::new();
    while let Some(done) = workers.join_next().await {
        for (run, step, attempt) in done.unwrap() {
            assert_eq!(attempt, 1, "{run} {step} claimed after an earlier attempt");
            *executed.entry((run, step)).or_default() += 1;
        }
    }
    assert_eq!(executed.len(), APPS * 4, "build, left, right and join of every run");
    assert!(executed.values().all(|&n| n == 1), "a step ran twice: {executed:?}");
    for run in h.store.list_runs(1_000).await.unwrap() {
        assert!(runs.contains(&run.id));
        assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
        for step in &run.steps {
            let expected = if step.name == "notify" { (StepState::Cancelled, 0) } else { (StepState::Succeeded, 1) };
            assert_eq!((step.state, step.attempts), expected, "{} of {}", step.name, run.id);
        }
    }
}

/// Four stores (four replicas) creating runs and admitting at once: never more than one
/// admitted run per (app, environment), every run admitted or superseded at most once.
async fn concurrent_admissions_admit_one_run_per_environment(h: Harness) {
    let mut stores = vec![h.store.clone()];
    for _ in 1..4 {
        stores.push(h.replica().await);
    }
    for round in 0..5 {
        let mut admitting = tokio::task::JoinSet::new();
        for store in &stores {
            let store = store.clone();
            // Each replica takes in new artifacts for web in dev (supersede) and qa (queue) and
            // runs admission passes in between, as its intake and admission loops would.
            let plans: Vec<Plan> = (0..4).flat_map(|_| [h.plan("web", "main"), h.plan("web", "queue/x")]).collect();
            admitting.spawn(async move {
                let (mut admitted, mut superseded) = (Vec::new(), Vec::new());
                for plan in &plans {
                    store
                        .create_run(NewRun { plan, digest: None, origin: RunOrigin::Manual, bypass_hold: false })
                        .await
                        .unwrap();
                    let admission = store.admit(now_millis()).await.unwrap();
                    admitted.extend(admission.admitted);
                    superseded.extend(admission.superseded);
                }
                (admitted, superseded)
            });
        }
        let (mut admitted, mut superseded) = (Vec::new(), Vec::new());
        while let Some(done) = admitting.join_next().await {
            let (a, s) = done.unwrap();
            admitted.extend(a);
            superseded.extend(s);
        }
        let mut by_environment: HashMap<String, Vec<String>> = HashMap::new();
        for run in h.store.list_runs(1_000).await.unwrap() {
            if run.admitted && !run.state.is_final() {
                by_environment.entry(run.environment.clone()).or_default().push(run.id.clone());
            }
        }
        assert_eq!(by_environment.len(), 2, "round {round}: {by_environment:?}");
        assert!(by_environment.values().all(|ids| ids.len() == 1), "round {round}: two admitted: {by_environment:?}");
        assert_eq!(admitted.len(), 2, "round {round}: one admission per environment: {admitted:?}");
        let unique: HashSet<&String> = superseded.iter().collect();
        assert_eq!(unique.len(), superseded.len(), "round {round}: superseded twice: {superseded:?}");
        assert!(superseded.iter().all(|id| !admitted.contains(id)), "round {round}: admitted and superseded");
        // Make room for the next round.
        let t = now_millis();
        for run in h.store.list_runs(1_000).await.unwrap() {
            if !run.state.is_final() {
                h.store.cancel_run(&run.id, "next round", t).await.unwrap();
            }
        }
    }
}

async fn deliveries_and_follow_ups_are_created_once(h: Harness) {
    let delivery = |id: &'static str| NewDelivery {
        source: "github",
        delivery_id: id,
        event_type: "push",
        body: b"{}",
        packed_body: None,
        status: DeliveryStatus::Received,
        detail: None,
    };
    let Inserted::New(inbox) = h.store.insert_delivery(delivery("d-1")).await.unwrap() else { panic!("new") };
    assert_eq!(h.store.insert_delivery(delivery("d-1")).await.unwrap(), Inserted::Duplicate(inbox));
    let batch = h.store.insert_deliveries(&[delivery("d-2"), delivery("d-1"), delivery("d-2")]).await.unwrap();
    let Inserted::New(second) = batch[0] else { panic!("{batch:?}") };
    assert_eq!(batch[1..], [Inserted::Duplicate(inbox), Inserted::Duplicate(second)]);
    let received = h.store.received_deliveries(10).await.unwrap();
    assert_eq!(received.iter().map(|d| d.delivery_id.as_str()).collect::<Vec<_>>(), ["d-1", "d-2"]);
    assert_eq!(received[0].body, b"{}");

    // A real webhook body reads back byte for byte whether the store packs it, the caller
    // packed it, or it came alone or in a batch.
    let push: &[u8] = include_bytes!("../../tests/fixtures/github/go-playground-webhooks/push.0.json");
    let packed = gantry_engine::store::pack_body(push).expect("a push payload packs smaller");
    let real =
        |id: &'static str, packed_body: Option<&'static [u8]>| NewDelivery { body: push, packed_body, ..delivery(id) };
    let packed: &'static [u8] = Box::leak(packed.into_boxed_slice());
    assert!(matches!(h.store.insert_delivery(real("p-1", None)).await.unwrap(), Inserted::New(_)));
    assert!(matches!(h.store.insert_delivery(real("p-2", Some(packed))).await.unwrap(), Inserted::New(_)));
    let batch = h.store.insert_deliveries(&[real("p-3", None), real("p-4", Some(packed))]).await.unwrap();
    assert!(batch.iter().all(|b| matches!(b, Inserted::New(_))), "{batch:?}");
    let received = h.store.received_deliveries(10).await.unwrap();
    assert_eq!(received.len(), 6);
    for delivery in &received[2..] {
        assert!(delivery.body == push, "{} read back {} bytes", delivery.delivery_id, delivery.body.len());
    }
    for delivery in &received[2..] {
        h.store.complete_delivery(delivery.id, DeliveryStatus::Ignored, Some("body check"), &[]).await.unwrap();
    }

    // A batch larger than one multi-row INSERT (64 rows), with a copy of one of its own ids
    // and of an earlier delivery.
    let ids: Vec<&'static str> = (0..150).map(|i| &*Box::leak(format!("b-{i}").into_boxed_str())).collect();
    let mut large: Vec<NewDelivery<'_>> = ids.iter().map(|id| delivery(id)).collect();
    large.push(delivery("b-3"));
    large.push(delivery("d-1"));
    let answers = h.store.insert_deliveries(&large).await.unwrap();
    assert_eq!(answers.len(), 152);
    let Inserted::New(b3) = answers[3] else { panic!("{:?}", answers[3]) };
    assert!(answers[..150].iter().all(|a| matches!(a, Inserted::New(_))), "{answers:?}");
    assert_eq!(answers[150..], [Inserted::Duplicate(b3), Inserted::Duplicate(inbox)]);
    let mut waiting = h.store.received_deliveries(200).await.unwrap();
    assert_eq!(waiting.len(), 152, "d-1, d-2 and the 150 new ones");
    waiting.retain(|d| d.delivery_id.starts_with("b-"));
    for delivery in &waiting {
        h.store.complete_delivery(delivery.id, DeliveryStatus::Ignored, Some("batch check"), &[]).await.unwrap();
    }

    // Two replicas' intake completing the same delivery at once create its runs once.
    let plans = vec![h.plan("web", "main"), h.plan("web", "queue/1")];
    let other = h.replica().await;
    let (a, b) = tokio::join!(
        h.store.complete_delivery(inbox, DeliveryStatus::Processed, None, &plans),
        other.complete_delivery(inbox, DeliveryStatus::Processed, None, &plans),
    );
    let created: Vec<String> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(created.len(), 2, "{created:?}");
    assert_eq!(h.store.list_runs(10).await.unwrap().len(), 2);
    assert_eq!(h.store.delivery_status("github", "d-1").await.unwrap(), Some(("processed".into(), None)));
    assert_eq!(h.store.received_deliveries(10).await.unwrap().len(), 1);

    // Two replicas advancing the same succeeded run create its follow-up once.
    let follow_up = h.plan("web", "queue/2");
    let (a, b) = tokio::join!(
        h.store.advance(&created[0], "sha256:f", std::slice::from_ref(&follow_up)),
        other.advance(&created[0], "sha256:f", std::slice::from_ref(&follow_up)),
    );
    let follow_ups: Vec<String> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(follow_ups.len(), 1, "{follow_ups:?}");
    let run = h.store.get_run(&follow_ups[0]).await.unwrap().unwrap();
    assert_eq!((run.origin.as_str(), run.digest.as_deref()), ("follow-up", Some("sha256:f")));
    let again = h
        .store
        .create_run(NewRun {
            plan: &follow_up,
            digest: Some("sha256:f"),
            origin: RunOrigin::FollowUp,
            bypass_hold: false,
        })
        .await
        .unwrap();
    assert_eq!(again, None, "one follow-up per (app, environment, digest)");
}

async fn change_requests_are_recorded_once_per_branch(h: Harness) {
    let run = h.create("web", "main").await;
    let request = |head: &'static str| NewChangeRequest {
        forge: "local",
        repo: "repos/dev.git",
        branch: "gantry/dev/web/abc",
        base: "main",
        head_commit: head,
        title: "Promote web",
        body: "body",
        run_id: &run,
    };
    let (first, new) = h.store.upsert_change_request(request("c1")).await.unwrap();
    assert!(new);
    let (second, new) = h.store.upsert_change_request(request("c2")).await.unwrap();
    assert!(!new);
    assert_eq!((second.id, second.head_commit.as_str(), second.state.as_str()), (first.id, "c2", "open"));
    h.store.set_change_request_state(first.id, "merged", Some("m1")).await.unwrap();
    let found = h.store.find_change_request("local", "repos/dev.git", "gantry/dev/web/abc").await.unwrap().unwrap();
    assert_eq!((found.state.as_str(), found.head_commit.as_str()), ("merged", "m1"));
    assert_eq!(h.store.change_requests(&run).await.unwrap(), [found]);
    assert!(h.store.find_change_request("local", "repos/dev.git", "other").await.unwrap().is_none());
}

#[tokio::test]
async fn store_urls_pick_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("by-url.db");
    let store = gantry_engine::store::open(&format!("sqlite://{}", path.display())).await.unwrap();
    assert!(store.list_runs(1).await.unwrap().is_empty());
    assert!(path.exists());
    let database = TestDatabase::create().await;
    let store = gantry_engine::store::open(&database.url).await.unwrap();
    assert!(store.holds().await.unwrap().is_empty());
    let error = gantry_engine::store::open("mysql://root:hunter2@db/gantry").await.err().expect("not supported");
    let message = error.to_string();
    assert!(message.contains("mysql://root:***@db/gantry") && message.contains("postgres://"), "{message}");
    let error = gantry_engine::store::open("postgres://postgres@127.0.0.1:1/none").await.err().expect("no server");
    assert!(error.to_string().starts_with("open database postgres://postgres@127.0.0.1:1/none"), "{error}");
}
