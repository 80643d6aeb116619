//! The order of events on one ref, kept by the store, against SQLite and PostgreSQL alike:
//! an older push delivered late is refused, the head again is a repeat, the history is pruned,
//! and concurrent judgements of one ref (several replicas) never take two events for the newest.
//!
//! Each PostgreSQL test runs in a database of its own (see `tests/support/postgres.rs`).

#[path = "../../tests/support/postgres.rs"]
mod postgres_support;

use std::sync::Arc;

use gantry_engine::store::{
    DeliveryStatus, Inserted, NewDelivery, PostgresStore, REF_HISTORY, RefObservation, RefOrder,
};
use gantry_engine::{SqliteStore, Store};
use postgres_support::TestDatabase;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Harness {
    store: Arc<dyn Store>,
    database: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new(backend: Backend) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let (store, database): (Arc<dyn Store>, _) = match backend {
            Backend::Sqlite => (Arc::new(SqliteStore::open(&dir.path().join("gantry.db")).await.unwrap()), None),
            Backend::Postgres => {
                let database = TestDatabase::create().await;
                (Arc::new(PostgresStore::connect(&database.url).await.unwrap()), Some(database))
            }
        };
        Harness { store, database, _dir: dir }
    }

    /// Another store on the same database, as another replica opens it.
    async fn replica(&self) -> Arc<dyn Store> {
        match &self.database {
            Some(database) => Arc::new(PostgresStore::connect(&database.url).await.unwrap()),
            None => self.store.clone(),
        }
    }

    /// Stores a delivery (the ref's events point at their delivery) and returns a push of
    /// `main` carried by it.
    async fn push(&self, delivery: &str, before: Option<u32>, after: u32) -> RefObservation {
        let inserted = self
            .store
            .insert_delivery(NewDelivery {
                source: "github",
                delivery_id: delivery,
                event_type: "push",
                body: b"{}",
                packed_body: None,
                status: DeliveryStatus::Received,
                detail: None,
            })
            .await
            .unwrap();
        let Inserted::New(inbox_id) = inserted else { panic!("{delivery} stored twice") };
        // Intake observes a delivery's ref once it has taken the delivery (SQLite's journal
        // moves it into the inbox table then).
        let taken = self.store.received_deliveries(1000).await.unwrap();
        assert!(taken.iter().any(|d| d.id == inbox_id), "{delivery} is not received");
        RefObservation {
            forge: "github".into(),
            repo: "acme/shop".into(),
            git_ref: "refs/heads/main".into(),
            inbox_id,
            delivery: delivery.into(),
            sha: Some(sha(after)),
            before: before.map(sha),
            deleted: false,
            event_time: None,
        }
    }
}

/// The `n`th commit id.
fn sha(n: u32) -> String {
    format!("{n:040x}")
}

async fn an_older_push_delivered_late_is_refused(h: Harness) {
    let (a, b, c) = (1, 2, 3);
    let to_b = h.push("to-b", Some(a), b).await;
    let to_c = h.push("to-c", Some(b), c).await;
    let to_a = h.push("to-a", None, a).await;
    assert_eq!(h.store.observe_ref(&to_c).await.unwrap(), RefOrder::Newest);
    // Older than c by the chain: c came from b.
    let RefOrder::Older { reason } = h.store.observe_ref(&to_b).await.unwrap() else { panic!() };
    assert!(reason.contains("delivery to-c"), "{reason}");
    // The refused push is not recorded, so nothing links a to c, and there are no commit
    // times: arrival order stands.
    assert_eq!(h.store.observe_ref(&to_a).await.unwrap(), RefOrder::Newest);
    // The same delivery handled again (after a crash) gets the same answer.
    assert_eq!(h.store.observe_ref(&to_a).await.unwrap(), RefOrder::Newest);
    // Another ref is judged on its own.
    let mut other = h.push("other-ref", Some(a), b).await;
    other.git_ref = "refs/heads/develop".into();
    assert_eq!(h.store.observe_ref(&other).await.unwrap(), RefOrder::Newest);
    let again = h.push("to-a-again", None, a).await;
    assert!(matches!(h.store.observe_ref(&again).await.unwrap(), RefOrder::Repeat { .. }));
}

async fn the_history_is_pruned_but_keeps_the_newest(h: Harness) {
    // A chain longer than the kept history: each push moves main on from the previous commit.
    let count = REF_HISTORY as u32 + 8;
    let mut pushes = Vec::new();
    for i in 0..count {
        let mut push = h.push(&format!("push-{i}"), Some(i), i + 1).await;
        push.event_time = Some(1_000 * i64::from(i + 1));
        pushes.push(push);
    }
    for push in &pushes {
        assert_eq!(h.store.observe_ref(push).await.unwrap(), RefOrder::Newest, "{}", push.delivery);
    }
    // Recent pushes delivered again late are older than the head; so is the first push after
    // the head's predecessor, known through the kept chain.
    let late = h.push("late", Some(count - 2), count - 1).await;
    let RefOrder::Older { reason } = h.store.observe_ref(&late).await.unwrap() else { panic!() };
    assert!(reason.contains(&format!("push-{}", count - 1)), "{reason}");
    // The first push's commits were pruned from the chain; its commit time still gives it away.
    let mut forgotten = h.push("forgotten", Some(0), 1).await;
    forgotten.event_time = Some(1_000);
    let RefOrder::Older { reason } = h.store.observe_ref(&forgotten).await.unwrap() else { panic!() };
    assert!(reason.contains("committed before"), "{reason}");
}

async fn concurrent_judgements_take_one_event_for_the_newest(h: Harness) {
    // The same push delivered by several hooks at once, on each of several branches, judged
    // by two replicas all at the same moment: per branch exactly one delivery is the newest,
    // every other one a repeat of it.
    const BRANCHES: usize = 12;
    const HOOKS: usize = 8;
    let replica = h.replica().await;
    let mut observations = Vec::new();
    for branch in 0..BRANCHES {
        for hook in 0..HOOKS {
            let mut push = h.push(&format!("branch-{branch}-hook-{hook}"), Some(1), 2).await;
            push.git_ref = format!("refs/heads/branch-{branch}");
            observations.push((branch, push));
        }
    }
    let start = Arc::new(tokio::sync::Barrier::new(observations.len()));
    let mut tasks = Vec::new();
    for (i, (branch, observation)) in observations.into_iter().enumerate() {
        let store = if i % 2 == 0 { h.store.clone() } else { replica.clone() };
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            (branch, store.observe_ref(&observation).await.unwrap())
        }));
    }
    let mut newest = [0; BRANCHES];
    for task in tasks {
        match task.await.unwrap() {
            (branch, RefOrder::Newest) => newest[branch] += 1,
            (_, RefOrder::Repeat { .. }) => {}
            (_, other) => panic!("{other:?}"),
        }
    }
    assert_eq!(newest, [1; BRANCHES]);
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
    an_older_push_delivered_late_is_refused,
    the_history_is_pruned_but_keeps_the_newest,
    concurrent_judgements_take_one_event_for_the_newest,
);
