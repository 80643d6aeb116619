//! The GitHub webhook endpoint against bad input, in process (no port): what is rejected is
//! never stored, what is accepted is stored once.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gantry::server::{AppState, MAX_WEBHOOK_BODY, router};
use gantry_engine::intake::process_inbox;
use gantry_engine::{SqliteStore, StepRegistry, Store};
use tokio::sync::Notify;
use tower::ServiceExt;

const SECRET: &[u8] = b"webhook secret";

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    app: axum::Router,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("gantry.db")).await.unwrap());
    let app = router(AppState::new(store.clone(), vec![SECRET.to_vec()], Arc::new(Notify::new())));
    Harness { _dir: dir, store, app }
}

fn push_fixture() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/github/octokit-examples/push.4.json")).unwrap()
}

fn request(event: &str, delivery: &str, signature: Option<String>, body: Vec<u8>) -> Request<Body> {
    let mut builder = Request::post("/hooks/github")
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery);
    if let Some(signature) = signature {
        builder = builder.header("x-hub-signature-256", signature);
    }
    builder.body(Body::from(body)).unwrap()
}

fn signed(event: &str, delivery: &str, body: Vec<u8>) -> Request<Body> {
    let signature = gantry_webhooks::github::sign(SECRET, &body);
    request(event, delivery, Some(signature), body)
}

async fn send(h: &Harness, request: Request<Body>) -> (StatusCode, String) {
    let response = h.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn stored(h: &Harness, delivery: &str) -> Option<(String, Option<String>)> {
    h.store.delivery_status("github", delivery).await.unwrap()
}

#[tokio::test]
async fn missing_or_wrong_signatures_get_401_and_nothing_is_stored() {
    let h = harness().await;
    let (status, body) = send(&h, request("push", "d-missing", None, push_fixture())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("signature"), "{body}");
    let forged = gantry_webhooks::github::sign(b"someone else's secret", &push_fixture());
    let (status, _) = send(&h, request("push", "d-forged", Some(forged), push_fixture())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Signed for a different body: a tampered payload.
    let mut tampered = push_fixture();
    let signature = gantry_webhooks::github::sign(SECRET, &tampered);
    tampered.extend_from_slice(b" ");
    let (status, _) = send(&h, request("push", "d-tampered", Some(signature), tampered)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for delivery in ["d-missing", "d-forged", "d-tampered"] {
        assert_eq!(stored(&h, delivery).await, None, "{delivery} must not be stored");
    }
    assert!(h.store.received_deliveries(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_secret_rotated_out_of_the_list_gets_401_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("gantry.db")).await.unwrap());
    let (old, new) = (b"secret before the rotation".to_vec(), b"secret after the rotation".to_vec());
    let body = push_fixture();
    let signed_with = |secret: &[u8], delivery: &str| {
        request("push", delivery, Some(gantry_webhooks::github::sign(secret, &body)), body.clone())
    };
    let status = |secrets: Vec<Vec<u8>>, request: Request<Body>| {
        let app = router(AppState::new(store.clone(), secrets, Arc::new(Notify::new())));
        async move { app.oneshot(request).await.unwrap().status() }
    };
    // While rotating, both secrets are configured and both work.
    assert_eq!(status(vec![old.clone(), new.clone()], signed_with(&old, "d-rotating-old")).await, StatusCode::ACCEPTED);
    assert_eq!(status(vec![old.clone(), new.clone()], signed_with(&new, "d-rotating-new")).await, StatusCode::ACCEPTED);
    // Once the old one is rotated out, a delivery still signed with it is refused.
    assert_eq!(status(vec![new.clone()], signed_with(&old, "d-stale")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(vec![new.clone()], signed_with(&new, "d-current")).await, StatusCode::ACCEPTED);
    assert_eq!(store.delivery_status("github", "d-stale").await.unwrap(), None, "d-stale must not be stored");
    let stored: Vec<String> =
        store.received_deliveries(10).await.unwrap().into_iter().map(|delivery| delivery.delivery_id).collect();
    assert_eq!(stored, ["d-rotating-old", "d-rotating-new", "d-current"]);
}

#[tokio::test]
async fn bodies_over_25_mib_get_413() {
    let h = harness().await;
    let body = vec![b' '; MAX_WEBHOOK_BODY + 1];
    let (status, _) = send(&h, signed("push", "d-huge", body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(stored(&h, "d-huge").await, None);
}

#[tokio::test]
async fn malformed_json_gets_400_with_a_message() {
    let h = harness().await;
    let (status, body) = send(&h, signed("push", "d-bad-json", b"{\"ref\": ".to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("malformed JSON"), "{body}");
    assert_eq!(stored(&h, "d-bad-json").await, None);
}

#[tokio::test]
async fn missing_delivery_header_gets_400() {
    let h = harness().await;
    let body = push_fixture();
    let signature = gantry_webhooks::github::sign(SECRET, &body);
    let request = Request::post("/hooks/github")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", signature)
        .body(Body::from(body))
        .unwrap();
    let (status, message) = send(&h, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("X-GitHub-Delivery"), "{message}");
}

fn reference_config() -> gantry_workflows::Config {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("environments");
    gantry_workflows::load_dir(&dir, &StepRegistry::builtin()).unwrap()
}

#[tokio::test]
async fn unknown_event_types_are_accepted_and_recorded_as_ignored() {
    let h = harness().await;
    let (status, _) = send(&h, signed("watch", "d-watch", br#"{"action":"started"}"#.to_vec())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let done = process_inbox(&h.store, &reference_config()).await.unwrap();
    assert_eq!(done.len(), 1);
    let (state, detail) = stored(&h, "d-watch").await.unwrap();
    assert_eq!(state, "ignored");
    assert!(detail.unwrap_or_default().contains("watch"));
    assert!(h.store.list_runs(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_delivery_sent_three_times_starts_one_run() {
    let h = harness().await;
    let body = gantry::demo::push_event(reference_config().app("sample-app").unwrap(), "main").body;
    for _ in 0..3 {
        let (status, _) = send(&h, signed("push", "d-same", body.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    process_inbox(&h.store, &reference_config()).await.unwrap();
    // Processing again (as after a crash) starts nothing new either.
    process_inbox(&h.store, &reference_config()).await.unwrap();
    let runs = h.store.list_runs(10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].environment, "dev");
    assert_eq!(stored(&h, "d-same").await.unwrap().0, "processed");
}

#[tokio::test]
async fn api_lists_runs_with_their_steps() {
    let h = harness().await;
    let body = gantry::demo::push_event(reference_config().app("sample-app").unwrap(), "main").body;
    send(&h, signed("push", "d-api", body)).await;
    process_inbox(&h.store, &reference_config()).await.unwrap();
    let (status, body) = send(&h, Request::get("/api/runs").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let runs: serde_json::Value = serde_json::from_str(&body).unwrap();
    let run = &runs[0];
    for field in ["id", "app", "environment", "digest", "state", "created_at", "steps"] {
        assert!(run.get(field).is_some(), "run lacks {field}: {run:#}");
    }
    assert_eq!(run["state"], "pending");
    let step = &run["steps"][0];
    for field in ["name", "kind", "state", "attempts", "outputs", "error"] {
        assert!(step.get(field).is_some(), "step lacks {field}: {step:#}");
    }
    let id = run["id"].as_str().unwrap();
    let (status, _) = send(&h, Request::get(format!("/api/runs/{id}")).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(&h, Request::get("/api/runs/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, page) = send(&h, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(id) && page.contains("sample-app"), "{page}");
    let (status, _) = send(&h, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn gitlab_hooks_need_the_token_and_are_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("gantry.db")).await.unwrap());
    let app = router(
        AppState::new(store.clone(), vec![SECRET.to_vec()], Arc::new(Notify::new()))
            .with_gitlab_tokens(vec![b"old-token".to_vec(), b"new-token".to_vec()]),
    );
    let body =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gitlab/docs-examples/push.0.json")).unwrap();
    let request = |token: Option<&str>| {
        let mut builder = Request::post("/hooks/gitlab")
            .header("x-gitlab-event", "Push Hook")
            .header("x-gitlab-event-uuid", "9cbbd8d3-1d1a-4b3d-a3d3-0a8a2e1d6f00");
        if let Some(token) = token {
            builder = builder.header("x-gitlab-token", token);
        }
        builder.body(Body::from(body.clone())).unwrap()
    };
    let status = |request: Request<Body>| {
        let app = app.clone();
        async move { app.oneshot(request).await.unwrap().status() }
    };
    assert_eq!(status(request(None)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(request(Some("stolen"))).await, StatusCode::UNAUTHORIZED);
    assert!(store.received_deliveries(10).await.unwrap().is_empty());
    // Both the old and the new token work while rotating; the redelivery is one delivery.
    assert_eq!(status(request(Some("old-token"))).await, StatusCode::ACCEPTED);
    assert_eq!(status(request(Some("new-token"))).await, StatusCode::ACCEPTED);
    assert_eq!(store.received_deliveries(10).await.unwrap().len(), 1);
}
