//! The HTTP server: webhooks in, runs out, a status page for people.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_engine::forge::LocalForge;
use gantry_engine::store::Inserted;
use gantry_engine::{Capabilities, Executor, ExecutorOptions, SqliteStore, StepRegistry, Store};
use gantry_webhooks::github;
use gantry_workflows::Config;
use handlebars::Handlebars;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;

use crate::api::{ChangeRequestDto, RunDto};
use crate::intake_batch::{BatchLimits, DeliveryBatcher, ReceivedDelivery};

/// GitHub does not deliver payloads over 25 MB; neither do we accept them.
pub const MAX_WEBHOOK_BODY: usize = 25 * 1024 * 1024;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Accepted GitHub webhook secrets (more than one while rotating).
    pub github_secrets: Arc<Vec<Vec<u8>>>,
    /// Accepted GitLab webhook tokens (more than one while rotating); none = GitLab disabled.
    pub gitlab_tokens: Arc<Vec<Vec<u8>>>,
    /// Wakes the intake loop when a delivery was stored.
    pub intake_wake: Arc<Notify>,
    /// Stores verified webhook deliveries in batches (group commit).
    pub deliveries: DeliveryBatcher,
    /// Wakes the executor after an operator action.
    pub executor_wake: Arc<Notify>,
    pages: Arc<Handlebars<'static>>,
}

impl AppState {
    /// State for the handlers. Starts the task that writes webhook deliveries, so it must be
    /// called on a Tokio runtime.
    pub fn new(store: Arc<dyn Store>, github_secrets: Vec<Vec<u8>>, intake_wake: Arc<Notify>) -> Self {
        let mut pages = Handlebars::new();
        pages.set_strict_mode(false);
        for (name, text) in
            [("status", include_str!("../templates/status.hbs")), ("run", include_str!("../templates/run.hbs"))]
        {
            if let Err(error) = pages.register_template_string(name, text) {
                tracing::error!(page = name, %error, "status page template does not compile");
            }
        }
        let deliveries = DeliveryBatcher::start(store.clone(), intake_wake.clone(), BatchLimits::default());
        Self {
            store,
            github_secrets: Arc::new(github_secrets),
            gitlab_tokens: Arc::new(Vec::new()),
            intake_wake,
            deliveries,
            executor_wake: Arc::new(Notify::new()),
            pages: Arc::new(pages),
        }
    }
}

impl AppState {
    /// Accepts GitLab webhooks carrying one of `tokens` in `X-Gitlab-Token`.
    pub fn with_gitlab_tokens(mut self, tokens: Vec<Vec<u8>>) -> Self {
        self.gitlab_tokens = Arc::new(tokens);
        self
    }

    /// Uses `wake` to wake the executor after operator actions.
    pub fn with_executor_wake(mut self, wake: Arc<Notify>) -> Self {
        self.executor_wake = wake;
        self
    }
}

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/hooks/github", post(github_hook).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY)))
        .route("/hooks/gitlab", post(gitlab_hook).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY)))
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/deliveries/{source}/{id}", get(get_delivery))
        .route("/api/runs/{id}/cancel", post(crate::actions::cancel_run))
        .route("/api/runs/{id}/steps/{step}/retry", post(crate::actions::retry_step))
        .route("/api/runs/{id}/steps/{step}/skip", post(crate::actions::skip_step))
        .route("/api/runs/{id}/steps/{step}/approve", post(crate::actions::approve_step))
        .route("/api/holds", get(crate::actions::list_holds))
        .route("/api/holds/{environment}", axum::routing::put(crate::actions::hold).delete(crate::actions::release))
        .route("/api/rollbacks", post(crate::actions::rollback))
        .route("/", get(status_page))
        .route("/runs/{id}", get(run_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Errors of the HTTP API; the one place that decides status codes. Internal details are
/// logged, never sent to the client.
#[derive(Debug)]
pub enum ApiError {
    /// 400 with a message for the sender.
    BadRequest(String),
    /// 401 with a message for the sender.
    Unauthorized(String),
    /// 404.
    NotFound(String),
    /// 409: the action does not fit the current state.
    Conflict(String),
    /// 500; the cause is logged.
    Internal(anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            ApiError::Unauthorized(message) => (StatusCode::UNAUTHORIZED, message),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            ApiError::Conflict(message) => (StatusCode::CONFLICT, message),
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".to_string())
            }
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

impl<E: Into<anyhow::Error>> From<E> for ApiError {
    fn from(error: E) -> Self {
        ApiError::Internal(error.into())
    }
}

impl ApiError {
    /// Maps store errors that a client caused (unknown ids, actions that do not fit) to
    /// 404/409; everything else is internal.
    pub fn from_store(error: gantry_engine::error::StoreError) -> Self {
        use gantry_engine::error::StoreError;
        match error {
            StoreError::NotFound { what } => ApiError::NotFound(format!("{what} not found")),
            StoreError::Conflict { message } => ApiError::Conflict(message),
            other => ApiError::Internal(other.into()),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

async fn github_hook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    // Authenticity first: nothing about an unsigned request is looked at or stored.
    let secrets: Vec<&[u8]> = state.github_secrets.iter().map(Vec::as_slice).collect();
    github::verify_signature(&secrets, header(&headers, "x-hub-signature-256"), &body)
        .map_err(|error| ApiError::Unauthorized(format!("signature rejected: {error}")))?;
    let event_type = header(&headers, "x-github-event")
        .ok_or_else(|| ApiError::BadRequest("missing X-GitHub-Event header".into()))?;
    let delivery_id = header(&headers, "x-github-delivery")
        .ok_or_else(|| ApiError::BadRequest("missing X-GitHub-Delivery header".into()))?;
    if let Err(error) = gantry_webhooks::check_json(&body) {
        return Err(ApiError::BadRequest(format!("malformed JSON body: {error}")));
    }
    let delivery = ReceivedDelivery {
        source: "github",
        delivery_id: delivery_id.to_string(),
        event_type: event_type.to_string(),
        body,
        packed: None,
    };
    store_delivery(&state, delivery).await
}

async fn gitlab_hook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    use gantry_webhooks::gitlab;
    let tokens: Vec<&[u8]> = state.gitlab_tokens.iter().map(Vec::as_slice).collect();
    gitlab::verify_token(&tokens, header(&headers, gitlab::TOKEN_HEADER))
        .map_err(|error| ApiError::Unauthorized(format!("token rejected: {error}")))?;
    let event_type = header(&headers, gitlab::EVENT_HEADER)
        .ok_or_else(|| ApiError::BadRequest(format!("missing {} header", gitlab::EVENT_HEADER)))?;
    if let Err(error) = gantry_webhooks::check_json(&body) {
        return Err(ApiError::BadRequest(format!("malformed JSON body: {error}")));
    }
    let delivery_id = gitlab::delivery_key(
        header(&headers, gitlab::IDEMPOTENCY_KEY_HEADER),
        header(&headers, gitlab::EVENT_UUID_HEADER),
        &body,
    )
    .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let delivery =
        ReceivedDelivery { source: "gitlab", delivery_id, event_type: event_type.to_string(), body, packed: None };
    store_delivery(&state, delivery).await
}

/// Answers 202 once the delivery is stored (with the other deliveries of its batch); the
/// batch writer wakes the intake loop.
async fn store_delivery(state: &AppState, delivery: ReceivedDelivery) -> Result<Response, ApiError> {
    let delivery_id = delivery.delivery_id.clone();
    let (id, duplicate) = match state.deliveries.insert(delivery).await? {
        Inserted::New(id) => (id, false),
        Inserted::Duplicate(id) => (id, true),
    };
    let body = json!({ "delivery": delivery_id, "inbox_id": id, "duplicate": duplicate });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<u32>,
}

async fn list_runs(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<RunDto>>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let runs = state.store.list_runs(limit).await?;
    Ok(Json(runs.iter().map(RunDto::from).collect()))
}

async fn load_run(state: &AppState, id: &str) -> Result<RunDto, ApiError> {
    let run = state.store.get_run(id).await?.ok_or_else(|| ApiError::NotFound(format!("no run {id}")))?;
    let requests = state.store.change_requests(id).await?;
    let mut dto = RunDto::from(&run);
    dto.change_requests = Some(requests.iter().map(ChangeRequestDto::from).collect());
    Ok(dto)
}

async fn get_run(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<RunDto>, ApiError> {
    load_run(&state, &id).await.map(Json)
}

async fn get_delivery(
    State(state): State<AppState>,
    Path((source, id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (status, detail) = state
        .store
        .delivery_status(&source, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no {source} delivery {id}")))?;
    Ok(Json(json!({ "source": source, "delivery": id, "status": status, "detail": detail })))
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.store.list_runs(1).await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

async fn status_page(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let runs: Vec<RunDto> = state.store.list_runs(100).await?.iter().map(RunDto::from).collect();
    Ok(Html(state.pages.render("status", &json!({ "runs": runs }))?))
}

async fn run_page(State(state): State<AppState>, Path(id): Path<String>) -> Result<Html<String>, ApiError> {
    let run = load_run(&state, &id).await?;
    let steps: Vec<serde_json::Value> = run
        .steps
        .iter()
        .map(|s| json!({ "step": s, "outputs_json": serde_json::to_string_pretty(&s.outputs).unwrap_or_default() }))
        .collect();
    Ok(Html(state.pages.render("run", &json!({ "run": run, "steps": steps }))?))
}

/// Everything `gantry serve` needs.
pub struct ServeOptions {
    /// Data directory (database, mirrors, embedded registry and repos).
    pub data_dir: PathBuf,
    /// Validated configuration.
    pub config: Config,
    /// The directory the configuration was read from; relative paths in step settings
    /// (gate policies, scan reports) resolve against it.
    pub config_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// GitHub webhook secrets.
    pub github_secrets: Vec<Vec<u8>>,
    /// GitLab webhook tokens (`GANTRY_GITLAB_TOKEN`, comma-separated); empty = GitLab disabled.
    pub gitlab_tokens: Vec<Vec<u8>>,
    /// Database URL (`sqlite://…`, `postgres://…`); `None` = `gantry.db` in the data directory.
    pub database_url: Option<String>,
    /// Executor tuning.
    pub executor: ExecutorOptions,
    /// Base URL for links to runs (`--public-url`); `None` = `http://<listen address>`.
    pub public_url: Option<String>,
}

/// Opens the store, starts intake and executor, and serves HTTP until Ctrl-C.
pub async fn serve(options: ServeOptions, on_listening: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.data_dir)?;
    let store: Arc<dyn Store> = match &options.database_url {
        Some(url) => gantry_engine::store::open(url).await?,
        None => Arc::new(SqliteStore::open(&options.data_dir.join("gantry.db")).await?),
    };
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let address = listener.local_addr()?;
    let status_url = options.public_url.clone().unwrap_or_else(|| format!("http://{address}"));
    let repos = Arc::new(gantry_engine::repos::RepoCatalog::from_config(&options.config, &options.data_dir));
    let forge = Arc::new(
        LocalForge::new(store.clone()).with_mirrors(options.data_dir.join("mirrors")).with_repos(repos.clone()),
    );
    let registry_specs: Vec<_> = options.config.registries.iter().map(|(spec, _)| spec.clone()).collect();
    let capabilities = Arc::new(
        Capabilities::new(&options.data_dir, forge, Some(status_url))
            .with_config_dir(&options.config_dir)
            .with_registries(&registry_specs)
            .with_repos(repos)
            .with_history(Arc::new(gantry_engine::history::StoreHistory::new(store.clone()))),
    );
    let executor_wake = Arc::new(Notify::new());
    let intake_wake = Arc::new(Notify::new());
    let executor = Arc::new(Executor::new(
        store.clone(),
        StepRegistry::builtin(),
        capabilities,
        executor_wake.clone(),
        options.executor,
    ));
    tokio::spawn(async move {
        if let Err(error) = executor.run().await {
            tracing::error!(%error, "executor stopped");
        }
    });
    let state = AppState::new(store.clone(), options.github_secrets, intake_wake.clone())
        .with_executor_wake(executor_wake.clone())
        .with_gitlab_tokens(options.gitlab_tokens);
    tokio::spawn(intake_loop(store, Arc::new(options.config), intake_wake, executor_wake, state.deliveries.clone()));
    let app = router(state);
    on_listening(address);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// While webhooks keep arriving, intake spends at most about this percentage of the time on
/// processing (it rests the remainder between passes): the endpoints answer a burst first,
/// and its deliveries — already on disk — are processed as it goes on, at full speed once it
/// ends.
const INTAKE_PERCENT_UNDER_LOAD: u32 = 10;

async fn intake_loop(
    store: Arc<dyn Store>,
    config: Arc<Config>,
    wake: Arc<Notify>,
    executor_wake: Arc<Notify>,
    deliveries: DeliveryBatcher,
) {
    use gantry_engine::intake::{INTAKE_PASS, advance_runs, process_received};
    loop {
        let notified = wake.notified();
        let arrived = deliveries.stats().deliveries;
        let started = std::time::Instant::now();
        let full = match process_received(&store, &config, INTAKE_PASS).await {
            Ok(done) => {
                if done.iter().any(|d| !d.runs.is_empty()) {
                    executor_wake.notify_waiters();
                }
                done.len() == INTAKE_PASS as usize
            }
            Err(error) => {
                tracing::warn!(%error, "intake failed; will retry");
                false
            }
        };
        if full {
            // More is waiting. Rest in proportion to the pass if the endpoints took deliveries
            // meanwhile (a burst is on), else go on at once.
            if deliveries.stats().deliveries != arrived {
                tokio::time::sleep(started.elapsed() * (100 / INTAKE_PERCENT_UNDER_LOAD - 1)).await;
            }
            continue;
        }
        match advance_runs(&store, &config).await {
            Ok(created) if !created.is_empty() => executor_wake.notify_waiters(),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "starting follow-up promotions failed; will retry"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
    }
}
