//! The baselines of `scripts/bench-webhooks.sh`, on the same runtime settings as `gantry serve`:
//!
//! - bare: the least an axum server can do with a webhook — take the body and answer 200. What
//!   gantry achieves is reported as a fraction of this server's throughput.
//! - checked (`--checked SECRET`): in addition, what any receiver must do before it may accept
//!   a delivery — verify the `X-Hub-Signature-256` HMAC over the body and check that the body is
//!   JSON — with the functions `gantry serve` uses (401 / 400 otherwise), but storing nothing.
//!   The gap between the two is the cost of those checks alone; the gap between this one and
//!   gantry is what storing and answering the delivery adds.
//!
//! Usage: `bare_webhook_server ADDRESS [--checked SECRET]` (e.g. `127.0.0.1:0`); prints
//! `listening on ADDRESS` once it accepts connections and serves until killed. Under `cargo
//! bench` (no address) it only says how to use it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use gantry_webhooks::github;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(address) = args.next().and_then(|arg| arg.parse::<SocketAddr>().ok()) else {
        eprintln!("bare_webhook_server: pass a listen address; scripts/bench-webhooks.sh runs it");
        return std::process::ExitCode::SUCCESS;
    };
    let secret = match (args.next().as_deref(), args.next()) {
        (None, _) => None,
        (Some("--checked"), Some(secret)) => Some(secret),
        _ => {
            eprintln!("bare_webhook_server: usage: bare_webhook_server ADDRESS [--checked SECRET]");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The same runtime `gantry serve` builds: multi-threaded, one worker per core.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bare_webhook_server: start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(address, secret)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bare_webhook_server: serve on {address}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(address: SocketAddr, secret: Option<String>) -> std::io::Result<()> {
    let app = match secret {
        None => Router::new().route("/hooks/github", post(|_body: Bytes| async { StatusCode::OK })),
        Some(secret) => Router::new().route("/hooks/github", post(checked)).with_state(Arc::new(secret.into_bytes())),
    };
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}

async fn checked(State(secret): State<Arc<Vec<u8>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers.get("x-hub-signature-256").and_then(|value| value.to_str().ok());
    if github::verify_signature(&[secret.as_slice()], signature, &body).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    if gantry_webhooks::check_json(&body).is_err() {
        return StatusCode::BAD_REQUEST;
    }
    StatusCode::OK
}
