//! `gantry step <kind>`: one step of a plan, run by itself, as an Argo Workflows step container
//! (or a person at a terminal) runs it.
//!
//! Inputs come from flags, the environment and files: the plan (`--plan FILE`, one run of
//! `gantry plan --format json`), the pinned digest (`--digest`, repeatable: empty values are
//! ignored and the others must agree), and the outputs of earlier steps (`--input
//! NAME=JSON` or `--input NAME=@FILE`), which steps such as `open-pr` read. The step gets the
//! same capabilities as under `gantry serve`: registries, the environment repositories
//! (mirrored under the data directory) and the forge (`local` records change requests in the
//! data directory's store, against the run named by `--run-id`).
//!
//! With `--outputs DIR`, a step that succeeds writes `outputs.json` (all outputs, compact
//! JSON), one file per top-level output whose name is a plain file name (strings as they are,
//! anything else as JSON), and `run-digest` (the pinned digest, empty when none). Nothing is
//! written when the step does not succeed.
//!
//! Exit codes: 0 succeeded; 3 waiting (standard output says for what and when to try again);
//! 75 (`EX_TEMPFAIL`) a transient failure worth retrying; 1 a failure retrying cannot fix;
//! 2 a usage or input error (nothing ran).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use gantry_engine::forge::LocalForge;
use gantry_engine::model::now_millis;
use gantry_engine::registry::Digest;
use gantry_engine::steps::{StepContext, StepError, StepOutcome};
use gantry_engine::{Capabilities, ExecutorOptions, SqliteStore, StepRegistry, Store};
use gantry_workflows::argo::{DIGEST_FILE, EXIT_TRANSIENT, EXIT_WAITING, OUTPUTS_FILE};
use gantry_workflows::config::ForgeKind;
use gantry_workflows::{Plan, PlannedStep};
use serde_json::{Map, Value};

/// Arguments of `gantry step`.
#[derive(Debug, Clone, clap::Args)]
pub struct StepArgs {
    /// Step kind; must be the kind of `--step` in the plan.
    pub kind: String,
    /// Plan file: one run of `gantry plan --format json`, or its whole output when that holds
    /// a single run (`-` reads standard input).
    #[arg(long, env = "GANTRY_PLAN", value_name = "FILE")]
    pub plan: PathBuf,
    /// Name of the step in the plan.
    #[arg(long, env = "GANTRY_STEP", value_name = "NAME")]
    pub step: String,
    /// The run's pinned artifact digest. Repeatable: empty values are ignored and the others
    /// must agree.
    #[arg(long, env = "GANTRY_DIGEST", value_delimiter = ',', value_name = "DIGEST")]
    pub digest: Vec<String>,
    /// Directory to write the outputs into (created if missing).
    #[arg(long, env = "GANTRY_OUTPUTS", value_name = "DIR")]
    pub outputs: Option<PathBuf>,
    /// Outputs of an earlier step of the run: `NAME=JSON`, or `NAME=@FILE` to read the JSON
    /// from a file. Repeatable.
    #[arg(long = "input", value_name = "NAME=JSON")]
    pub inputs: Vec<String>,
    /// Id of the run (Argo: `{{workflow.uid}}`); a fresh one when absent.
    #[arg(long, env = "GANTRY_RUN_ID")]
    pub run_id: Option<String>,
    /// When the run started, RFC 3339 or Unix milliseconds; bounded waits (for CI to push the
    /// artifact, say) count from it. Now when absent, so each invocation waits afresh.
    #[arg(long, env = "GANTRY_RUN_CREATED_AT", value_name = "TIME")]
    pub run_created_at: Option<String>,
    /// When this step first started, RFC 3339 or Unix milliseconds (soak times count from
    /// it). Now when absent.
    #[arg(long, env = "GANTRY_STEP_STARTED_AT", value_name = "TIME")]
    pub started_at: Option<String>,
    /// What this step recorded while waiting in an earlier attempt: JSON, or `@FILE`.
    #[arg(long, value_name = "JSON")]
    pub progress: Option<String>,
    /// Attempt number, from 1.
    #[arg(long, conflicts_with = "retries")]
    pub attempt: Option<u32>,
    /// Attempts before this one, from 0 (Argo's `{{retries}}`); the attempt is one more.
    #[arg(long)]
    pub retries: Option<u32>,
}

/// How the step ended, as far as the exit code goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepExit {
    /// The step succeeded.
    Succeeded,
    /// The step waits for something; run it again later.
    Waiting,
    /// The step failed; retrying may help.
    Transient,
    /// The step failed; retrying cannot help.
    Failed,
}

impl StepExit {
    /// The process exit code for this ending.
    pub fn code(self) -> u8 {
        match self {
            StepExit::Succeeded => 0,
            StepExit::Waiting => EXIT_WAITING,
            StepExit::Transient => EXIT_TRANSIENT,
            StepExit::Failed => 1,
        }
    }

    /// Ends the process with [`StepExit::code`] unless the step succeeded.
    pub fn exit_unless_succeeded(self) {
        if self != StepExit::Succeeded {
            // Exiting skips destructors, so push out what was printed first.
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            std::process::exit(i32::from(self.code()));
        }
    }
}

/// Runs one step. `Err` is a usage or input error: the step did not run.
pub async fn run(args: &StepArgs, data_dir: &Path, database: &Path) -> anyhow::Result<StepExit> {
    let registry = StepRegistry::builtin();
    let Some(kind) = registry.get(&args.kind).cloned() else {
        let known: Vec<&str> = registry.describe().into_iter().map(|(k, _)| k).collect();
        bail!("run a step of kind `{}`: no such step kind (known: {})", args.kind, known.join(", "));
    };
    let plan = read_plan(&args.plan)?;
    let planned = find_step(&plan, &args.step)?.clone();
    if planned.kind != args.kind {
        bail!("run step `{}` as `{}`: the plan says it is a `{}` step", planned.name, args.kind, planned.kind);
    }
    let problems = kind.check_config(&planned.with);
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(|(path, message)| format!("  with.{path}: {message}")).collect();
        bail!("run step `{}`: its settings are invalid:\n{}", planned.name, lines.join("\n"));
    }
    let digest = pinned_digest(&args.digest)?;
    let outputs = read_inputs(&args.inputs, &plan, &planned.name)?;
    let run_created_at = match &args.run_created_at {
        Some(text) => parse_time("--run-created-at", text)?,
        None => now_millis(),
    };
    let started_at = match &args.started_at {
        Some(text) => parse_time("--started-at", text)?,
        None => now_millis(),
    };
    let progress = args.progress.as_deref().map(|text| read_json("--progress", text)).transpose()?;
    let attempt = match (args.attempt, args.retries) {
        (Some(0), _) => bail!("read --attempt: attempts count from 1"),
        (Some(attempt), _) => attempt,
        (None, Some(retries)) => retries.saturating_add(1),
        (None, None) => 1,
    };
    let run_id =
        args.run_id.clone().filter(|id| !id.trim().is_empty()).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());

    std::fs::create_dir_all(data_dir).with_context(|| format!("create the data directory {}", data_dir.display()))?;
    if let Some(parent) = database.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("create the directory of {}", database.display()))?;
    }
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(database).await.with_context(|| format!("open the store {}", database.display()))?);
    let run_known = store.get_run(&run_id).await.context("look the run up in the store")?.is_some();
    let capabilities = Arc::new(Capabilities::new(
        data_dir,
        Arc::new(LocalForge::new(store.clone()).with_mirrors(data_dir.join("mirrors"))),
        None,
    ));
    let forge = plan.target.forge;
    let ctx = StepContext {
        run_id: run_id.clone(),
        step: planned.name.clone(),
        attempt,
        config: planned.with.clone(),
        plan,
        digest: digest.clone(),
        run_created_at,
        outputs,
        progress,
        started_at,
        capabilities,
    };

    let timeout = planned.timeout_ms.map(Duration::from_millis).unwrap_or(ExecutorOptions::default().step_timeout);
    // A task of its own, as under the executor, so that a panicking step is a failed step.
    let task = tokio::spawn(async move { tokio::time::timeout(timeout, kind.run(&ctx)).await });
    let result = match task.await {
        Ok(Ok(result)) => result,
        Ok(Err(_elapsed)) => Err(StepError::transient(format!("step timed out after {}s", timeout.as_secs()))),
        Err(join) => Err(StepError::terminal(format!("step panicked: {join}"))),
    };

    match result {
        Ok(StepOutcome::Succeeded { outputs, pin_digest }) => {
            let digest = pin_digest.or(digest);
            if let Some(dir) = &args.outputs {
                write_outputs(dir, &outputs, digest.as_deref())?;
            }
            let text = serde_json::to_string_pretty(&outputs).context("print the outputs")?;
            println!("{text}");
            Ok(StepExit::Succeeded)
        }
        Ok(StepOutcome::Waiting { retry_in, wake_on, reason, progress }) => {
            let at = chrono::Duration::from_std(retry_in)
                .ok()
                .and_then(|delay| chrono::Utc::now().checked_add_signed(delay))
                .map(|at| format!(" (at {})", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
                .unwrap_or_default();
            println!("waiting for {reason}: try again in {}{at}", human_duration(retry_in));
            if let Some(event) = wake_on {
                println!("or as soon as {event} happens, under `gantry serve`");
            }
            if let Some(progress) = progress {
                println!("progress: {progress}");
            }
            Ok(StepExit::Waiting)
        }
        Err(error) => {
            let (exit, message) = match &error {
                StepError::Transient { message, retry_after } => {
                    eprintln!("error: step {} failed, retrying may help: {message}", planned.name);
                    if let Some(after) = retry_after {
                        eprintln!("retry after {}", human_duration(*after));
                    }
                    (StepExit::Transient, message)
                }
                StepError::Terminal { message } => {
                    eprintln!("error: step {} failed: {message}", planned.name);
                    (StepExit::Failed, message)
                }
            };
            if !run_known && forge == ForgeKind::Local && message.contains("change request") {
                eprintln!(
                    "note: run {run_id} is not in the store {}; the local forge records change requests against a run there (pass --run-id of a run `gantry status` lists)",
                    database.display()
                );
            }
            Ok(exit)
        }
    }
}

/// Reads a plan: a `Plan` object, or `gantry plan` output holding exactly one run.
fn read_plan(path: &Path) -> anyhow::Result<Plan> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("read the plan from standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("read the plan {}", path.display()))?
    };
    let mut value: Value =
        serde_json::from_str(&text).with_context(|| format!("read the plan {}: it is not JSON", path.display()))?;
    if let Some(runs) = value.get_mut("runs").and_then(Value::as_array_mut) {
        value = match runs.len() {
            1 => runs.remove(0),
            0 => bail!("read the plan {}: it holds no runs (the event starts nothing)", path.display()),
            n => bail!("read the plan {}: it holds {n} runs; pass one of them (e.g. `jq '.runs[0]'`)", path.display()),
        };
    }
    serde_json::from_value(value).with_context(|| format!("read the plan {}", path.display()))
}

fn find_step<'a>(plan: &'a Plan, name: &str) -> anyhow::Result<&'a PlannedStep> {
    plan.steps.iter().find(|s| s.name == name).with_context(|| {
        let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        format!("find step `{name}` in the plan: its steps are {}", names.join(", "))
    })
}

/// The one digest the `--digest` values agree on, if any.
fn pinned_digest(values: &[String]) -> anyhow::Result<Option<String>> {
    let mut pinned: Option<String> = None;
    for value in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        let digest = Digest::parse(value).with_context(|| format!("read --digest {value:?}"))?;
        match &pinned {
            Some(existing) if existing != digest.as_str() => {
                bail!("read --digest: the values disagree ({existing} and {})", digest.as_str())
            }
            _ => pinned = Some(digest.as_str().to_string()),
        }
    }
    Ok(pinned)
}

/// Outputs of earlier steps from `--input NAME=JSON|@FILE`, by step name.
fn read_inputs(inputs: &[String], plan: &Plan, step: &str) -> anyhow::Result<Map<String, Value>> {
    let mut outputs = Map::new();
    for input in inputs {
        let Some((name, value)) = input.split_once('=') else {
            bail!("read --input {input:?}: expected NAME=JSON or NAME=@FILE");
        };
        let name = name.trim();
        if name == step {
            bail!("read --input {name}: a step cannot take its own outputs as input");
        }
        find_step(plan, name).with_context(|| format!("read --input {name}"))?;
        let parsed = read_json(&format!("--input {name}"), value)?;
        if outputs.insert(name.to_string(), parsed).is_some() {
            bail!("read --input {name}: given twice");
        }
    }
    Ok(outputs)
}

/// JSON given inline, or read from the file named after an `@`.
fn read_json(what: &str, value: &str) -> anyhow::Result<Value> {
    let text = match value.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("read {what}: read {file}"))?,
        None => value.to_string(),
    };
    serde_json::from_str(&text).with_context(|| format!("read {what}: the value is not JSON"))
}

/// Unix milliseconds from RFC 3339 text or a number of milliseconds.
fn parse_time(what: &str, text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Ok(millis) = text.parse::<i64>() {
        return Ok(millis);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_millis())
        .with_context(|| format!("read {what} {text:?}: expected RFC 3339 or Unix milliseconds"))
}

/// Writes the outputs the way Argo output parameters read them: no trailing newlines.
fn write_outputs(dir: &Path, outputs: &Value, digest: Option<&str>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create the outputs directory {}", dir.display()))?;
    let write = |name: &str, contents: &str| {
        let path = dir.join(name);
        std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))
    };
    write(OUTPUTS_FILE, &serde_json::to_string(outputs).context("render the outputs")?)?;
    write(DIGEST_FILE, digest.unwrap_or_default())?;
    if let Value::Object(map) = outputs {
        for (key, value) in map {
            // Keys come from step code, but a key that is not a plain file name must never
            // write outside the directory or over the files above; it stays in outputs.json.
            if !is_plain_file_name(key) || key == OUTPUTS_FILE || key == DIGEST_FILE {
                continue;
            }
            let contents = match value {
                Value::String(text) => text.clone(),
                other => serde_json::to_string(other).context("render an output")?,
            };
            write(key, &contents)?;
        }
    }
    Ok(())
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn human_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis < 120_000 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{}m", duration.as_secs().div_ceil(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_must_agree_and_empty_ones_do_not_count() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        assert_eq!(pinned_digest(&[]).unwrap(), None);
        assert_eq!(pinned_digest(&["".into(), " ".into()]).unwrap(), None);
        assert_eq!(pinned_digest(&["".into(), a.clone(), a.clone()]).unwrap(), Some(a.clone()));
        assert!(pinned_digest(&[a, b]).is_err());
        assert!(pinned_digest(&["latest".into()]).is_err());
    }

    #[test]
    fn times_are_rfc3339_or_milliseconds() {
        assert_eq!(parse_time("t", "1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("t", "2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
        let error = parse_time("--started-at", "yesterday").unwrap_err();
        assert!(error.to_string().contains("--started-at"), "{error}");
    }

    #[test]
    fn only_plain_names_become_files() {
        assert!(is_plain_file_name("previous_digest"));
        assert!(is_plain_file_name("image.ref"));
        assert!(!is_plain_file_name("../escape"));
        assert!(!is_plain_file_name(".hidden"));
        assert!(!is_plain_file_name("a/b"));
        assert!(!is_plain_file_name(""));
    }

    #[test]
    fn outputs_become_files_and_odd_keys_stay_in_the_json() {
        let dir = tempfile::tempdir().unwrap();
        let outputs = serde_json::json!({
            "tag": "dev-sha-abc1234",
            "result": {"created": true},
            "../up": "no",
            "outputs.json": "no",
        });
        write_outputs(dir.path(), &outputs, Some("sha256:abc")).unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("tag"), "dev-sha-abc1234");
        assert_eq!(read("result"), r#"{"created":true}"#);
        assert_eq!(read(DIGEST_FILE), "sha256:abc");
        let all: Value = serde_json::from_str(&read(OUTPUTS_FILE)).unwrap();
        assert_eq!(all, outputs);
        assert!(!dir.path().join("../up").exists());
    }

    #[test]
    fn waits_read_as_people_say_them() {
        assert_eq!(human_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human_duration(Duration::from_secs(600)), "10m");
    }
}
