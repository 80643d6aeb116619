//! `noop`: does nothing and succeeds — for trying pipelines out, for structuring a DAG (a join
//! point), and for measuring the executor itself. With `marker_dir` set, each execution
//! creates a file named after the run and step there, failing if it already exists: a test
//! or a drill can then count how often each step's side effect happened.

use std::io::Write;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{Step, StepContext, StepError, StepOutcome, typed_settings};

/// See the module documentation.
pub struct Noop;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    marker_dir: Option<String>,
}

#[async_trait]
impl Step for Noop {
    fn kind(&self) -> &'static str {
        "noop"
    }

    fn summary(&self) -> &'static str {
        "do nothing and succeed (settings: marker_dir to record each execution)"
    }

    fn check_config(&self, config: &serde_json::Value) -> Vec<(String, String)> {
        typed_settings::<Settings>(config).err().into_iter().collect()
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings: Settings = typed_settings(&ctx.config).map_err(|(_, message)| StepError::terminal(message))?;
        if let Some(dir) = settings.marker_dir {
            let path = std::path::Path::new(&dir).join(format!("{}.{}", ctx.run_id, ctx.step));
            ctx.failpoint("before-side-effect");
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(|error| {
                StepError::terminal(format!("create marker {}: {error} (the side effect ran twice?)", path.display()))
            })?;
            let _ = writeln!(file, "attempt {}", ctx.attempt);
            ctx.failpoint("after-side-effect");
        }
        Ok(StepOutcome::Succeeded { outputs: json!({}), pin_digest: None })
    }
}
