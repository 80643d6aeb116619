//! `gantry step` as an Argo step container runs it: the real binary, a data directory prepared
//! the way `gantry up` prepares it, the reference config and its demo event, and the exit
//! codes and output files Argo reads.

#[path = "support/gantry.rs"]
mod gantry_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use gantry_engine::StepRegistry;
use gantry_engine::registry::{self, RegistryAuth};
use gantry_support::binary;
use serde_json::Value;

fn environments() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("environments")
}

/// `gantry --data-dir DATA step ARGS…`; (exit code, stdout, stderr).
fn step(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("step")
        .args(args)
        .env("GANTRY_LOG", "warn")
        .env_remove("GANTRY_DATABASE_URL")
        .env_remove("GANTRY_FAILPOINTS")
        .output()
        .expect("run gantry step");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A data directory bootstrapped like `gantry up` does, the demo push for `main`, and the
/// plan `gantry plan` prints for it.
struct Setup {
    _dir: tempfile::TempDir,
    data: PathBuf,
    plan: PathBuf,
    config: gantry_workflows::Config,
    push: gantry::demo::DemoPush,
    runtime: tokio::runtime::Runtime,
    work: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let config = gantry_workflows::load_dir(&environments(), &StepRegistry::builtin()).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(gantry::bootstrap::bootstrap(&data, &config)).unwrap();
        let app = gantry::demo::pick_app(&config, None).unwrap();
        let push = gantry::demo::push_event(app, "main");
        let event = work.join("push.json");
        std::fs::write(&event, &push.body).unwrap();

        let output = Command::new(binary())
            .args(["plan", "--forge", "github", "--config"])
            .arg(environments())
            .arg("--event")
            .arg(&event)
            .env("GANTRY_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        let document: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(document["runs"].as_array().unwrap().len(), 1, "{stdout}");
        let plan = work.join("plan.json");
        std::fs::write(&plan, stdout.as_bytes()).unwrap();
        Setup { _dir: dir, data, plan, config, push, runtime, work }
    }

    fn plan_str(&self) -> &str {
        self.plan.to_str().unwrap()
    }

    fn outputs(&self, step: &str) -> PathBuf {
        self.work.join("outputs").join(step)
    }

    /// What CI does: push the image for the demo commit; returns its digest.
    fn publish(&self) -> String {
        let app = gantry::demo::pick_app(&self.config, None).unwrap();
        let pushed =
            self.runtime.block_on(gantry::demo::publish_image(&self.data, &self.config, app, &self.push)).unwrap();
        pushed[0].rsplit_once('@').unwrap().1.to_string()
    }

    fn run(&self, kind: &str, name: &str, extra: &[&str]) -> (i32, String, String) {
        let outputs = self.outputs(name);
        let mut args = vec![kind, "--plan", self.plan_str(), "--step", name, "--outputs", outputs.to_str().unwrap()];
        args.extend_from_slice(extra);
        step(&self.data, &args)
    }
}

#[test]
fn resolve_retag_and_update_config_run_one_by_one() {
    let setup = Setup::new();
    let resolve_out = setup.outputs("resolve");

    // CI has not pushed the image yet: the step waits, says until when, and writes nothing.
    let (code, stdout, stderr) = setup.run("resolve-artifact", "resolve", &[]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stdout.contains("waiting for CI to push"), "{stdout}");
    assert!(stdout.contains("try again in"), "{stdout}");
    assert!(!resolve_out.join("outputs.json").exists());

    // Once the run is older than the trigger's artifact_wait (10m), waiting is over.
    let (code, stdout, stderr) =
        setup.run("resolve-artifact", "resolve", &["--run-created-at", "2020-01-01T00:00:00Z", "--retries", "4"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("did not appear within 600s"), "{stderr}");

    // CI pushes; the step pins the digest and writes what Argo reads.
    let digest = setup.publish();
    let created_at = chrono::Utc::now().to_rfc3339();
    let (code, stdout, stderr) = setup.run("resolve-artifact", "resolve", &["--run-created-at", &created_at]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(read(&resolve_out.join("run-digest")), digest);
    assert_eq!(read(&resolve_out.join("digest")), digest);
    let outputs: Value = serde_json::from_str(&read(&resolve_out.join("outputs.json"))).unwrap();
    assert_eq!(outputs["digest"], digest);
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), outputs);

    // retag gets the digest the way the Argo task passes it: one --digest per upstream task.
    let retag_out = setup.outputs("retag");
    let from_resolve = read(&resolve_out.join("run-digest"));
    let (code, stdout, stderr) = setup.run("retag", "retag", &["--digest", &from_resolve, "--digest", ""]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(read(&retag_out.join("result")), "created");
    assert_eq!(read(&retag_out.join("run-digest")), digest);
    let tag = read(&retag_out.join("tag"));
    let plan: Value = serde_json::from_str(&read(&setup.plan)).unwrap();
    assert_eq!(tag, plan["runs"][0]["target"]["tag"].as_str().unwrap());
    let registry_url = plan["runs"][0]["artifact"]["registry_url"].as_str().unwrap();
    let repository = plan["runs"][0]["artifact"]["repository"].as_str().unwrap();
    let registry = registry::open(registry_url, &setup.data, RegistryAuth::Anonymous).unwrap();
    let tagged =
        setup.runtime.block_on(registry.resolve(repository, &tag)).unwrap().expect("the environment tag exists");
    assert_eq!(tagged.as_str(), digest);

    // A second run (Argo retrying after a lost pod, say) changes nothing.
    let (code, stdout, stderr) = setup.run("retag", "retag", &["--digest", &digest]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(read(&retag_out.join("result")), "already-present");

    // Without the digest there is nothing to tag: a failure retrying cannot fix.
    let (code, _, stderr) = setup.run("retag", "retag", &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("needs the artifact digest"), "{stderr}");

    // update-config commits the new tag on the promotion branch of the env repo's mirror.
    let update_out = setup.outputs("update-config");
    let resolve_input = format!("resolve=@{}", resolve_out.join("outputs.json").display());
    let (code, stdout, stderr) =
        setup.run("update-config", "update-config", &["--digest", &digest, "--input", &resolve_input]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(read(&update_out.join("changed")), "true");
    assert!(read(&update_out.join("diff")).contains(&tag));
    assert!(read(&update_out.join("branch")).starts_with("gantry/dev/"));

    // open-pr needs a run in the store for the local forge to record the request against.
    let update_input = format!("update-config=@{}", update_out.join("outputs.json").display());
    let (code, _, stderr) = setup.run("open-pr", "open-pr", &["--digest", &digest, "--input", &update_input]);
    // Whether the store's refusal is worth retrying is the step's call; either way the step
    // fails and says how to give it a run.
    assert!(code == 1 || code == 75, "{code}: {stderr}");
    assert!(stderr.contains("--run-id"), "{stderr}");
}

#[test]
fn an_unreachable_registry_is_a_transient_failure() {
    let setup = Setup::new();
    // The same plan, pointed at a registry nobody listens on.
    let mut plan: Value = serde_json::from_str(&read(&setup.plan)).unwrap();
    let port = gantry_support::free_port();
    plan["runs"][0]["artifact"]["registry_url"] = Value::String(format!("http://127.0.0.1:{port}"));
    std::fs::write(&setup.plan, plan.to_string()).unwrap();
    let (code, stdout, stderr) = setup.run("resolve-artifact", "resolve", &[]);
    assert_eq!(code, 75, "{stdout}{stderr}");
    assert!(stderr.contains("retrying may help"), "{stderr}");
}

#[test]
fn bad_input_is_a_usage_error_and_nothing_runs() {
    let setup = Setup::new();
    let digest = format!("sha256:{}", "a".repeat(64));
    let other = format!("sha256:{}", "b".repeat(64));
    let cases: &[(&[&str], &str)] = &[
        (&["retag", "--step", "resolve"], "`resolve-artifact` step"),
        (&["retag", "--step", "ghost"], "ghost"),
        (&["re-tag", "--step", "retag"], "no such step kind"),
        (&["retag", "--step", "retag", "--digest", "latest"], "--digest"),
        (&["retag", "--step", "retag", "--digest", &digest, "--digest", &other], "disagree"),
        (&["retag", "--step", "retag", "--input", "resolve={not json"], "not JSON"),
        (&["retag", "--step", "retag", "--input", "ghost={}"], "ghost"),
        (&["retag", "--step", "retag", "--input", "retag={}"], "its own"),
        (&["retag", "--step", "retag", "--attempt", "0"], "--attempt"),
    ];
    for (args, expected) in cases {
        let mut full = vec![args[0], "--plan", setup.plan_str()];
        full.extend_from_slice(&args[1..]);
        let (code, stdout, stderr) = step(&setup.data, &full);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }

    // A plan document with several runs must be narrowed down to one.
    let mut plan: Value = serde_json::from_str(&read(&setup.plan)).unwrap();
    let run = plan["runs"][0].clone();
    plan["runs"].as_array_mut().unwrap().push(run.clone());
    let two = setup.work.join("two.json");
    std::fs::write(&two, plan.to_string()).unwrap();
    let (code, _, stderr) = step(&setup.data, &["retag", "--plan", two.to_str().unwrap(), "--step", "retag"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("2 runs"), "{stderr}");

    // A single run on its own, as `jq '.runs[0]'` leaves it, is a plan too.
    let one = setup.work.join("one.json");
    std::fs::write(&one, run.to_string()).unwrap();
    let (code, _, stderr) = step(&setup.data, &["retag", "--plan", one.to_str().unwrap(), "--step", "retag"]);
    // It reads the plan and runs: no digest was given, so retag fails as a step would.
    assert_eq!(code, 1, "{stderr}");
}
