//! Group storing of webhook deliveries, through the router against a real SQLite store:
//! deliveries arriving together are stored in one write, each once, each answered with its own
//! row; a batch that fails is answered 500 everywhere and leaves nothing behind.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::future::join_all;
use gantry::server::{AppState, router};
use gantry_engine::{SqliteStore, Store};
use serde_json::Value;
use tokio::sync::Notify;
use tower::ServiceExt;

const SECRET: &[u8] = b"webhook secret";

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    state: AppState,
    app: axum::Router,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("gantry.db")).await.unwrap());
    let state = AppState::new(store.clone(), vec![SECRET.to_vec()], Arc::new(Notify::new()));
    let app = router(state.clone());
    Harness { _dir: dir, store, state, app }
}

fn push_body() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/github/go-playground-webhooks/push.0.json"))
        .unwrap()
}

fn signed_push(delivery: &str) -> Request<Body> {
    let body = push_body();
    Request::post("/hooks/github")
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", gantry_webhooks::github::sign(SECRET, &body))
        .body(Body::from(body))
        .unwrap()
}

/// Sends every delivery at once. The handlers all run on this test's thread, so each one has
/// handed its delivery to the writer before the writer takes the first batch.
async fn send_together(h: &Harness, deliveries: &[&str]) -> Vec<(StatusCode, Value)> {
    let responses = join_all(deliveries.iter().map(|d| h.app.clone().oneshot(signed_push(d)))).await;
    let mut answers = Vec::new();
    for response in responses {
        let response = response.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        answers.push((status, serde_json::from_slice(&body).unwrap()));
    }
    answers
}

#[tokio::test]
async fn deliveries_arriving_together_are_one_batch_with_one_row_per_delivery_id() {
    let h = harness().await;
    // Stored earlier, in a batch of its own: a redelivery later is a duplicate across batches.
    let earlier = send_together(&h, &["d-earlier"]).await;
    assert_eq!(earlier[0].0, StatusCode::ACCEPTED);
    let earlier_row = earlier[0].1["inbox_id"].as_i64().unwrap();

    // 20 distinct ids; d-3 three times, d-7 twice, and d-earlier again, all in one batch.
    let mut sent: Vec<String> = (0..20).map(|i| format!("d-{i}")).collect();
    sent.insert(5, "d-3".into());
    sent.insert(11, "d-7".into());
    sent.push("d-3".into());
    sent.insert(0, "d-earlier".into());
    let ids: Vec<&str> = sent.iter().map(String::as_str).collect();
    let answers = send_together(&h, &ids).await;

    let stats = h.state.deliveries.stats();
    assert_eq!(stats.batches, 2, "the concurrent deliveries were not one batch: {stats:?}");
    assert_eq!(stats.largest, ids.len() as u64, "{stats:?}");

    let mut row_of = std::collections::HashMap::<&str, i64>::new();
    for (id, (status, body)) in ids.iter().zip(&answers) {
        assert_eq!(*status, StatusCode::ACCEPTED, "{id}: {body}");
        assert_eq!(body["delivery"], *id, "answer for {id} names another delivery: {body}");
        let row = body["inbox_id"].as_i64().unwrap();
        let duplicate = body["duplicate"].as_bool().unwrap();
        match row_of.get(id) {
            // Later copies point at the first copy's row.
            Some(first) => {
                assert!(duplicate, "{id} sent again was not answered as a duplicate: {body}");
                assert_eq!(row, *first, "{id}: copies answered with different rows");
            }
            None if *id == "d-earlier" => {
                assert!(duplicate, "redelivery of d-earlier was not a duplicate: {body}");
                assert_eq!(row, earlier_row);
                row_of.insert(id, row);
            }
            None => {
                assert!(!duplicate, "first copy of {id} was answered as a duplicate: {body}");
                row_of.insert(id, row);
            }
        }
    }
    let mut rows: Vec<i64> = row_of.values().copied().collect();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), 21, "distinct delivery ids must have distinct rows");

    let stored = h.store.received_deliveries(100).await.unwrap();
    let mut stored_ids: Vec<&str> = stored.iter().map(|d| d.delivery_id.as_str()).collect();
    stored_ids.sort();
    let mut expected: Vec<&str> = row_of.keys().copied().collect();
    expected.sort();
    assert_eq!(stored_ids, expected, "exactly one inbox row per delivery id");
    for delivery in &stored {
        assert_eq!(Some(&delivery.id), row_of.get(delivery.delivery_id.as_str()));
        assert_eq!(delivery.body, push_body(), "{} was stored with another body", delivery.delivery_id);
        assert_eq!(delivery.event_type, "push");
    }
}

/// Limits the size of every file this process writes to `bytes`; a write past it fails with
/// `EFBIG` (SIGXFSZ is ignored), as one fails on a full disk. nextest runs each test in a
/// process of its own, so no other test shares the limit.
fn limit_file_size(bytes: libc::rlim_t) -> libc::rlimit {
    // SAFETY: plain libc calls with valid pointers to stack values.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut previous = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut previous), 0);
        let limit = libc::rlimit { rlim_cur: bytes.min(previous.rlim_max), rlim_max: previous.rlim_max };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        previous
    }
}

#[tokio::test]
async fn a_failed_batch_answers_500_to_every_member_and_stores_none_of_them() {
    let h = harness().await;
    // The inbox journal cannot grow past its first record: the write of the batch fails
    // halfway, and the part written must go too.
    let previous = limit_file_size(4096);
    let batch = ["d-a", "d-b", "d-c", "d-d", "d-a"];
    let answers = send_together(&h, &batch).await;
    // SAFETY: restores the limit read above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &previous) }, 0);
    assert_eq!(h.state.deliveries.stats().batches, 1, "{:?}", h.state.deliveries.stats());
    for (id, (status, body)) in batch.iter().zip(&answers) {
        assert_eq!(*status, StatusCode::INTERNAL_SERVER_ERROR, "{id}: {body}");
        assert_eq!(body["error"], "internal error", "{id}: internal details must not leak: {body}");
    }
    for id in batch {
        assert_eq!(h.store.delivery_status("github", id).await.unwrap(), None, "{id} was stored");
    }
    assert!(h.store.received_deliveries(10).await.unwrap().is_empty());

    // The sender's retries are new deliveries, not duplicates of half-written ones, and every
    // one reads back whole.
    let retried = send_together(&h, &["d-a", "d-b", "d-c"]).await;
    for (status, body) in &retried {
        assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["duplicate"], false, "{body}");
    }
    let stored = h.store.received_deliveries(10).await.unwrap();
    assert_eq!(stored.iter().map(|d| d.delivery_id.as_str()).collect::<Vec<_>>(), ["d-a", "d-b", "d-c"]);
    assert!(stored.iter().all(|d| d.body == push_body()));
}
