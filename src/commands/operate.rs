//! Operator commands that act on a running `gantry serve` through its API: cancel a run, retry
//! or skip a step, approve, hold and release an environment, roll back.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};

/// Where the running server is.
#[derive(Debug, Clone, clap::Args)]
pub struct Server {
    /// The gantry server.
    #[arg(long, env = "GANTRY_SERVER", default_value = "http://127.0.0.1:8420")]
    pub server: String,
}

/// An operator action.
#[derive(Debug, Clone, Subcommand)]
pub enum Operation {
    /// Cancel a run that has not finished.
    Cancel {
        #[command(flatten)]
        target: Server,
        /// Run id.
        run: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Run a failed step again.
    Retry {
        #[command(flatten)]
        target: Server,
        /// Run id.
        run: String,
        /// Step name.
        step: String,
    },
    /// Skip a step, recording why; the steps after it proceed.
    Skip {
        #[command(flatten)]
        target: Server,
        /// Run id.
        run: String,
        /// Step name.
        step: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
    /// Approve a step waiting for approval.
    Approve {
        #[command(flatten)]
        target: Server,
        /// Run id.
        run: String,
        /// Step name.
        step: String,
        /// Who approves (default: $USER).
        #[arg(long = "as", env = "USER")]
        approver: String,
        /// Comment.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Hold an environment (or one app in it): no promotion enters until released.
    Hold {
        #[command(flatten)]
        target: Server,
        /// Environment.
        environment: String,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
    /// Release a hold.
    Release {
        #[command(flatten)]
        target: Server,
        /// Environment.
        environment: String,
        /// Only this app's hold.
        #[arg(long)]
        app: Option<String>,
    },
    /// Promote the previous digest of an app into an environment again, and hold it there.
    Rollback {
        #[command(flatten)]
        target: Server,
        /// App.
        app: String,
        /// Environment.
        environment: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

impl Operation {
    fn server(&self) -> &str {
        match self {
            Operation::Cancel { target, .. }
            | Operation::Retry { target, .. }
            | Operation::Skip { target, .. }
            | Operation::Approve { target, .. }
            | Operation::Hold { target, .. }
            | Operation::Release { target, .. }
            | Operation::Rollback { target, .. } => &target.server,
        }
    }
}

/// Sends the action to its server; returns the server's JSON answer.
pub async fn run(operation: Operation) -> anyhow::Result<Value> {
    let base = operation.server().trim_end_matches('/').to_string();
    let (method, path, body) = match operation {
        Operation::Cancel { run, reason, .. } => {
            (reqwest::Method::POST, format!("/api/runs/{run}/cancel"), json!({ "reason": reason }))
        }
        Operation::Retry { run, step, .. } => {
            (reqwest::Method::POST, format!("/api/runs/{run}/steps/{step}/retry"), json!({}))
        }
        Operation::Skip { run, step, reason, .. } => {
            (reqwest::Method::POST, format!("/api/runs/{run}/steps/{step}/skip"), json!({ "reason": reason }))
        }
        Operation::Approve { run, step, approver, comment, .. } => (
            reqwest::Method::POST,
            format!("/api/runs/{run}/steps/{step}/approve"),
            json!({ "approver": approver, "comment": comment }),
        ),
        Operation::Hold { environment, app, reason, .. } => {
            (reqwest::Method::PUT, format!("/api/holds/{environment}"), json!({ "app": app, "reason": reason }))
        }
        Operation::Release { environment, app, .. } => {
            let query = app.map(|a| format!("?app={a}")).unwrap_or_default();
            (reqwest::Method::DELETE, format!("/api/holds/{environment}{query}"), Value::Null)
        }
        Operation::Rollback { app, environment, reason, .. } => (
            reqwest::Method::POST,
            "/api/rollbacks".to_string(),
            json!({ "app": app, "environment": environment, "reason": reason }),
        ),
    };
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    if !body.is_null() {
        request = request.json(&body);
    }
    let response =
        request.send().await.with_context(|| format!("reach gantry at {base} (is `gantry serve` running?)"))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = answer.get("error").and_then(|e| e.as_str()).unwrap_or("no details");
        bail!("gantry answered {status}: {message}");
    }
    Ok(answer)
}
