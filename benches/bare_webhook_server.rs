//! The baseline of `scripts/bench-webhooks.sh`: the least an axum server can do with a webhook —
//! take the body and answer 200 — on the same runtime settings as `gantry serve`. What gantry
//! achieves is reported as a fraction of this server's throughput.
//!
//! Usage: `bare_webhook_server ADDRESS` (e.g. `127.0.0.1:0`); prints `listening on ADDRESS`
//! once it accepts connections and serves until killed. Under `cargo bench` (no address) it
//! only says how to use it.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;

fn main() -> std::process::ExitCode {
    let Some(address) = std::env::args().nth(1).and_then(|arg| arg.parse::<SocketAddr>().ok()) else {
        eprintln!("bare_webhook_server: pass a listen address; scripts/bench-webhooks.sh runs it");
        return std::process::ExitCode::SUCCESS;
    };
    // The same runtime `gantry serve` builds: multi-threaded, one worker per core.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bare_webhook_server: start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(address)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bare_webhook_server: serve on {address}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(address: SocketAddr) -> std::io::Result<()> {
    let app = Router::new().route("/hooks/github", post(|_body: Bytes| async { StatusCode::OK }));
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
