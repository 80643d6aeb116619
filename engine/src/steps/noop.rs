//! `noop`: does nothing and succeeds — for trying pipelines out, for structuring a DAG (a join
//! point), and for measuring the executor itself.
//!
//! With `marker_dir` set, it has a side effect that a test or a drill can count: a file named
//! after the run and step (`<run>.<step>`), idempotent by that key like every real step's side
//! effect — created by the first execution, found by any later one — and one line appended to
//! it per execution (`pid <process> attempt <n>`). The file says the effect happened; its lines
//! say how often the step ran and in which process, e.g. once by a replica that was killed
//! before it could record the outcome and once more by the replica that took the step over.

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
        let mut outputs = json!({});
        if let Some(dir) = settings.marker_dir {
            let path = std::path::Path::new(&dir).join(format!("{}.{}", ctx.run_id, ctx.step));
            ctx.failpoint("before-side-effect");
            let existed = path.exists();
            // One write of one short line in append mode: executions in several processes
            // never interleave within a line.
            let line = format!("pid {} attempt {}\n", std::process::id(), ctx.attempt);
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .and_then(|mut file| file.write_all(line.as_bytes()))
                .map_err(|error| StepError::terminal(format!("record marker {}: {error}", path.display())))?;
            ctx.failpoint("after-side-effect");
            outputs = json!({ "marker": if existed { "already-present" } else { "created" } });
        }
        Ok(StepOutcome::Succeeded { outputs, pin_digest: None })
    }
}
