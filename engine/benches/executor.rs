//! Executor overhead on SQLite: how long the engine itself spends per step (claim, context,
//! run in its own task, record, settle the DAG) with a step kind that does nothing, and what
//! 10,000 queued promotions do to memory. Run with `scripts/bench-executor.sh`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_engine::forge::LocalForge;
use gantry_engine::model::now_millis;
use gantry_engine::store::{NewRun, RunOrigin};
use gantry_engine::{Capabilities, Executor, ExecutorOptions, SqliteStore, StepRegistry, Store};
use gantry_webhooks::{EventKind, Forge, GitEvent};
use gantry_workflows::config::{Concurrency, ForgeKind};
use gantry_workflows::{ArtifactRef, EnvironmentTarget, Plan, PlannedStep};

fn plan(app: &str, steps: usize, concurrency: Concurrency) -> Plan {
    let steps = (0..steps)
        .map(|i| PlannedStep {
            name: format!("s{i}"),
            kind: "noop".into(),
            needs: if i == 0 { vec![] } else { vec![format!("s{}", i - 1)] },
            with: serde_json::Value::Null,
            condition: None,
            max_attempts: None,
            backoff_ms: None,
            timeout_ms: None,
        })
        .collect();
    Plan {
        app: app.into(),
        environment: "dev".into(),
        pipeline: "bench".into(),
        trigger: "bench".into(),
        artifact: ArtifactRef {
            registry: "r".into(),
            registry_url: "oci-layout:r".into(),
            repository: app.into(),
            tag: "t".into(),
        },
        artifact_wait_ms: 0,
        version: "v".into(),
        target: EnvironmentTarget {
            environment: "dev".into(),
            repo_url: "repos/dev.git".into(),
            branch: "main".into(),
            path: "x".into(),
            yaml_path: None,
            image_name: app.into(),
            tag: "dev-v".into(),
            forge: ForgeKind::Local,
            concurrency,
            preview: None,
        },
        steps,
        event: GitEvent::new(Forge::Github, EventKind::Push, "acme/bench"),
        action: Default::default(),
        notes: Vec::new(),
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn wait_all_final(store: &Arc<dyn Store>, expected: usize) {
    loop {
        // Cheap while steps are still claimable (one indexed MIN); the full listing, which
        // loads every run with its steps, only once none is, so the watching does not take the
        // executor's CPU.
        if store.next_wakeup().await.unwrap().is_none() {
            let runs = store.list_runs(expected as u32 + 10).await.unwrap();
            if runs.len() >= expected && runs.iter().all(|r| r.state.is_final()) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A store in `dir` and an executor on it (not started).
async fn setup(dir: &std::path::Path) -> (Arc<dyn Store>, Arc<Executor>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("gantry.db")).await.unwrap());
    let capabilities = Arc::new(Capabilities::new(dir, Arc::new(LocalForge::new(store.clone())), None));
    let wake = Arc::new(tokio::sync::Notify::new());
    let options = ExecutorOptions { workers: 4, idle_poll: Duration::from_millis(5), ..Default::default() };
    let executor = Arc::new(Executor::new(store.clone(), StepRegistry::builtin(), capabilities, wake, options));
    (store, executor)
}

/// One round of the overhead figure on a fresh store: `runs` runs of `steps` chained no-op
/// steps, each run its own app (all admitted at once), queued before the executor starts;
/// the time from its start until every run is final, per step.
async fn overhead_round(runs: usize, steps: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let (store, executor) = setup(dir.path()).await;
    for i in 0..runs {
        let plan = plan(&format!("app-{i}"), steps, Concurrency::Queue);
        store
            .create_run(NewRun { plan: &plan, digest: None, origin: RunOrigin::Manual, bypass_hold: false })
            .await
            .unwrap();
    }
    let started = Instant::now();
    let running = tokio::spawn(executor.run());
    wait_all_final(&store, runs).await;
    let elapsed = started.elapsed();
    running.abort();
    elapsed / (runs * steps) as u32
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // 1. Overhead per step: ROUNDS (default 5) rounds of 200 runs × 10 no-op steps; the median.
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
    let (runs, steps) = (200, 10);
    let mut per_step = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        per_step.push(overhead_round(runs, steps).await);
    }
    let ms: Vec<String> = per_step.iter().map(|d| format!("{:.3}", d.as_secs_f64() * 1e3)).collect();
    per_step.sort();
    println!(
        "executor overhead: {} rounds of {} no-op steps: median {:.3} ms/step (target <= 1 ms; rounds: {} ms)",
        rounds,
        runs * steps,
        per_step[rounds / 2].as_secs_f64() * 1e3,
        ms.join(", ")
    );

    let dir = tempfile::tempdir().unwrap();
    let (store, executor) = setup(dir.path()).await;
    let running = tokio::spawn(executor.run());
    // 2. Memory with 10,000 queued promotions of one app into one held environment.
    store
        .hold(&gantry_engine::store::Hold {
            environment: "dev".into(),
            app: Some("queued".into()),
            reason: "bench".into(),
            digest: None,
            created_at: now_millis(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // RSS after each thousand queued promotions: flat means it stops growing with the queue once
    // the fixed-size caches (SQLite's page caches, statement caches, allocator pools) are warm.
    let before = rss_kib();
    let mut samples = Vec::new();
    for thousand in 1..=10 {
        for _ in 0..1_000 {
            let plan = plan("queued", 3, Concurrency::Queue);
            store
                .create_run(NewRun { plan: &plan, digest: None, origin: RunOrigin::Manual, bypass_hold: false })
                .await
                .unwrap();
        }
        // Let the admission pass look at the whole queue.
        tokio::time::sleep(Duration::from_millis(300)).await;
        samples.push((thousand * 1_000, rss_kib()));
    }
    let queued = store.list_runs(20_000).await.unwrap().iter().filter(|run| !run.admitted).count();
    let after = samples.last().map_or(0, |&(_, rss)| rss);
    let at_1k = samples[0].1;
    println!(
        "10,000 queued promotions ({queued} not admitted): RSS {before} KiB before, {after} KiB after ({:+} KiB)",
        after as i64 - before as i64
    );
    println!(
        "  RSS per 1,000 queued: {}",
        samples.iter().map(|(n, rss)| format!("{n}: {rss}")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "  from 1,000 to 10,000 queued: {:+} KiB ({:.1} bytes per queued promotion)",
        after as i64 - at_1k as i64,
        (after as f64 - at_1k as f64) * 1024.0 / 9_000.0
    );
    running.abort();
}
