//! Several replicas on one PostgreSQL database: three `gantry serve` processes share 1,000
//! promotions of cheap steps, and one of them is killed with SIGKILL half-way through.
//!
//! What must hold afterwards:
//! - every run succeeded;
//! - every step's side effect exists exactly once (the `noop` marker file of each step), and
//!   the executions behind it (the lines of that file, each naming its process) are exactly
//!   one per step — except the steps the killed replica was running when it died: that replica
//!   may have executed one before it could record the outcome, and the replica that took the
//!   step over executed it again, as at-least-once execution with idempotent side effects
//!   intends. Those steps, and only those, may show two executions: the dead replica's first,
//!   then one by a live replica. No step is ever executed twice by live replicas;
//! - no step is still leased to the dead replica once its lease has expired (plus one
//!   recovery interval of the survivors);
//! - per app, promotions never overlapped (admission across replicas).

#[path = "support/gantry.rs"]
mod gantry_support;
#[path = "support/postgres.rs"]
mod postgres_support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gantry_engine::model::now_millis;
use gantry_support::Gantry;
use postgres_support::TestDatabase;
use sqlx::Row;

const REPLICAS: usize = 3;
const RUNS: usize = 1_000;
const APPS: usize = 50;
/// Short, so that the dead replica's steps are taken over within seconds.
const LEASE: Duration = Duration::from_secs(3);
const SECRET: &str = "replica-test-secret";

/// 50 apps; every push to a `release/*` branch promotes into dev, where promotions of one app
/// queue (none is superseded: every run must finish). Two steps, each a marker.
fn config(dir: &Path, markers: &Path) {
    let mut apps = String::new();
    for i in 0..APPS {
        apps.push_str(&format!(
            "  - {{ name: app-{i}, source_repo: acme/app-{i}, registry: local, repository: app-{i} }}\n"
        ));
    }
    let config = format!(
        r#"
registries:
  - {{ name: local, url: "oci-layout:registry" }}
apps:
{apps}
environments:
  - name: dev
    order: 1
    concurrency: queue
    config_repo: {{ url: repos/dev.git, path: "apps/{{app}}/kustomization.yaml" }}
pipelines:
  - name: default
    triggers:
      - {{ on: branch, pattern: "release/*", environment: dev, artifact_tag: "sha-{{sha7}}" }}
    steps:
      - {{ name: first, kind: noop, with: {{ marker_dir: "{markers}" }} }}
      - {{ name: second, kind: noop, needs: [first], with: {{ marker_dir: "{markers}" }} }}
"#,
        markers = markers.display()
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("gantry.yaml"), config).unwrap();
}

async fn count(db: &mut sqlx::PgConnection, sql: &'static str, owner: Option<&str>) -> i64 {
    let mut query = sqlx::query_scalar(sql);
    if let Some(owner) = owner {
        query = query.bind(owner.to_string());
    }
    query.fetch_one(db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_finish_every_run_when_one_is_killed() {
    let started = Instant::now();
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (config_dir, markers) = (dir.path().join("config"), dir.path().join("markers"));
    std::fs::create_dir_all(&markers).unwrap();
    config(&config_dir, &markers);
    let lease = format!("{}s", LEASE.as_secs());
    let env = [
        ("GANTRY_DATABASE_URL", database.url.as_str()),
        ("GANTRY_GITHUB_SECRET", SECRET),
        ("GANTRY_LEASE", lease.as_str()),
        ("GANTRY_LOG", "warn"),
    ];
    let mut replicas: Vec<Gantry> = (0..REPLICAS)
        .map(|i| Gantry::start("serve", &dir.path().join(format!("replica-{i}")), &config_dir, &env))
        .collect();
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();

    // 1,000 pushes, each to a branch of its own, spread over the replicas.
    let loaded = gantry_workflows::load_dir(&config_dir, &gantry_engine::StepRegistry::builtin()).unwrap();
    let pushes: Vec<gantry::demo::DemoPush> = (0..RUNS)
        .map(|i| gantry::demo::push_event(loaded.app(&format!("app-{}", i % APPS)).unwrap(), &format!("release/{i}")))
        .collect();
    // Sent while the replicas work, as GitHub would: a push the chosen replica does not take
    // (it has been killed) goes to the next one, with the same delivery id.
    let sending = tokio::spawn(async move {
        futures_util::stream::iter(pushes.into_iter().enumerate())
            .map(|(i, push)| {
                let urls = urls.clone();
                async move {
                    let delivery = uuid::Uuid::new_v4().to_string();
                    for attempt in 0..REPLICAS * 3 {
                        let url = &urls[(i + attempt) % REPLICAS];
                        if let Ok((202, _)) =
                            gantry::demo::send_delivery(url, SECRET.as_bytes(), &push, &delivery).await
                        {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    panic!("no replica accepted push {i}");
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
        started.elapsed()
    });

    // Half-way through, kill replica 0 while it is running steps.
    let mut db = database.connect().await;
    let deadline = started + Duration::from_secs(120);
    let victim_pid = replicas[0].pid();
    let victim = format!("executor-{victim_pid}-%");
    loop {
        assert!(Instant::now() < deadline, "runs do not progress:\n{}", replicas[0].output());
        if count(&mut db, "SELECT count(*) FROM runs WHERE state = 'succeeded'", None).await >= (RUNS * 2 / 5) as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    loop {
        assert!(Instant::now() < deadline, "replica 0 runs no steps:\n{}", replicas[0].output());
        let running =
            count(&mut db, "SELECT count(*) FROM steps WHERE state = 'running' AND lease_owner LIKE $1", Some(&victim))
                .await;
        if running >= 2 {
            break;
        }
    }
    replicas[0].kill();
    let killed_at = now_millis();
    // A claim the dead replica had sent may still commit on its server session after the
    // process is gone; give it a moment (far less than the lease, so nothing is taken over yet)
    // before reading what it left running.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let done_at_kill = count(&mut db, "SELECT count(*) FROM runs WHERE state = 'succeeded'", None).await;
    // What the dead replica left running: its lease on each holds until it expires.
    let orphans: Vec<(String, String, i64)> =
        sqlx::query("SELECT run_id, name, lease_until FROM steps WHERE state = 'running' AND lease_owner LIKE $1")
            .bind(&victim)
            .fetch_all(&mut db)
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get("run_id"), row.get("name"), row.get("lease_until")))
            .collect();
    assert!(!orphans.is_empty(), "replica 0 died with no step in flight; nothing was taken over");
    let expiry = orphans.iter().map(|(_, _, until)| *until).max().unwrap();

    // Once the lease has expired and the survivors' next recovery pass (every third of the
    // lease) has run, the dead replica holds nothing.
    let recovery_pass = LEASE.as_millis() as i64 / 3;
    let released_at = loop {
        let held = count(&mut db, "SELECT count(*) FROM steps WHERE lease_owner LIKE $1", Some(&victim)).await;
        if held == 0 {
            break now_millis();
        }
        assert!(
            now_millis() <= expiry + recovery_pass + 1_000,
            "{held} step(s) still leased to the dead replica {}ms after the lease expired",
            now_millis() - expiry
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(released_at >= expiry, "a dead replica's step was taken over before its lease expired");

    // Every run finishes on the two survivors.
    loop {
        let failed = count(&mut db, "SELECT count(*) FROM runs WHERE state IN ('failed', 'cancelled')", None).await;
        assert_eq!(failed, 0, "a run failed:\n{}", replicas[1].output());
        if count(&mut db, "SELECT count(*) FROM runs WHERE state = 'succeeded'", None).await == RUNS as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "runs did not finish:\n{}", replicas[1].output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let finished_in = started.elapsed();
    let sent_in = sending.await.unwrap();
    assert_eq!(count(&mut db, "SELECT count(*) FROM runs", None).await, RUNS as i64, "one run per push");
    assert_eq!(count(&mut db, "SELECT count(*) FROM steps WHERE lease_owner IS NOT NULL", None).await, 0);

    // Side effects and executions, per step.
    let orphaned: HashSet<String> = orphans.iter().map(|(run, step, _)| format!("{run}.{step}")).collect();
    let steps: Vec<(String, String, i64)> = sqlx::query("SELECT run_id, name, state, attempts FROM steps")
        .fetch_all(&mut db)
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                format!("{}.{}", row.get::<String, _>("run_id"), row.get::<String, _>("name")),
                row.get("state"),
                row.get("attempts"),
            )
        })
        .collect();
    assert_eq!(steps.len(), RUNS * 2);
    let marker_files = std::fs::read_dir(&markers).unwrap().count();
    assert_eq!(marker_files, RUNS * 2, "one side effect per step");
    let (mut executions, mut twice, mut by_dead_only) = (0, 0, 0);
    for (key, state, attempts) in &steps {
        assert_eq!(state, "succeeded", "{key}");
        let text = std::fs::read_to_string(markers.join(key)).unwrap_or_else(|e| panic!("side effect of {key}: {e}"));
        let pids: Vec<u32> = text
            .lines()
            .map(|line| {
                line.split_whitespace().nth(1).and_then(|pid| pid.parse().ok()).unwrap_or_else(|| panic!("{line:?}"))
            })
            .collect();
        executions += pids.len();
        let by_survivors = pids.iter().filter(|&&pid| pid != victim_pid).count();
        assert!(by_survivors <= 1, "{key} executed {by_survivors} times by live replicas: {text}");
        if orphaned.contains(key) {
            // Claimed by the dead replica, then by a survivor.
            assert_eq!(*attempts, 2, "{key}");
            assert_eq!(by_survivors, 1, "{key} was not run again after its replica died: {text}");
            if pids.len() == 2 {
                assert_eq!(pids[0], victim_pid, "{key}: the dead replica's execution comes first: {text}");
                twice += 1;
            }
        } else {
            assert_eq!((pids.len(), *attempts), (1, 1), "{key} executed more than once: {text}");
            if pids[0] == victim_pid {
                by_dead_only += 1;
            }
        }
    }

    // Admission across replicas: one promotion per app at a time.
    let spans = sqlx::query(
        "SELECT r.app, MIN(s.started_at) AS started, r.finished_at FROM runs r JOIN steps s ON s.run_id = r.id \
         GROUP BY r.id, r.app, r.finished_at",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut by_app: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for row in &spans {
        by_app.entry(row.get("app")).or_default().push((row.get("started"), row.get("finished_at")));
    }
    for (app, spans) in &mut by_app {
        spans.sort();
        for pair in spans.windows(2) {
            assert!(pair[1].0 >= pair[0].1, "{app}: a promotion started before the previous one finished: {pair:?}");
        }
    }

    eprintln!(
        "replicas: {RUNS} runs ({APPS} apps, 2 steps each) on {REPLICAS} replicas, webhooks in {:.1}s; \
         1 SIGKILL at {done_at_kill} runs done with {} step(s) in flight; lease {}s, dead replica's leases \
         released {}ms after the kill ({}ms after they expired); {executions} executions of {} steps: {} steps once by live replicas, \
         {by_dead_only} once by the dead replica, {twice} twice (dead replica, then a survivor), \
         {} in flight at the kill run only by the survivor; every run succeeded in {:.1}s",
        sent_in.as_secs_f64(),
        orphans.len(),
        LEASE.as_secs(),
        released_at - killed_at,
        released_at - expiry,
        steps.len(),
        steps.len() - by_dead_only - orphans.len(),
        orphans.len() - twice,
        finished_in.as_secs_f64(),
    );
    drop(replicas);
}

#[test]
fn the_database_url_picks_the_store_or_says_what_is_wrong() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let database = runtime.block_on(TestDatabase::create());
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    // An empty PostgreSQL database is migrated and listed, like a fresh SQLite file.
    let (code, out, err) = gantry_support::run(&["--data-dir", data_dir, "--database-url", &database.url, "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("RUN"), "{out}");
    let (code, _, err) = gantry_support::run(&["--database-url", "mysql://root:hunter2@db/gantry", "status"]);
    assert_eq!(code, 2);
    assert!(err.contains("not supported") && err.contains("postgres://") && !err.contains("hunter2"), "{err}");
    let (code, _, err) = gantry_support::run(&["--database-url", &database.url, "drift", "--config", data_dir]);
    assert_eq!(code, 2);
    assert!(err.contains("SQLite store only"), "{err}");
    let unreachable = "postgres://gantry:s3cret@127.0.0.1:1/gantry";
    let (code, _, err) = gantry_support::run(&["--data-dir", data_dir, "--database-url", unreachable, "status"]);
    assert_eq!(code, 2);
    assert!(err.contains("postgres://gantry:***@127.0.0.1:1/gantry") && !err.contains("s3cret"), "{err}");
}
