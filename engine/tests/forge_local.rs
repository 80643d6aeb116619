//! The local forge end to end on real repos: a promotion branch pushed to a bare env repo,
//! its change request recorded in a real SQLite store, merged onto a base branch that a
//! person (or a second gantry) pushed to meanwhile, and `wait-for-merge` watching it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use gantry_engine::Capabilities;
use gantry_engine::edit::{self, Edit};
use gantry_engine::forge::{
    ChangeRequestDraft, ChangeRequestState, Forge, ForgeError, LocalForge, MergeMethod, ReviewOptions,
};
use gantry_engine::git::{EnvRepo, GitError, LandOutcome, Signature, init_bare_repo};
use gantry_engine::steps::{StepContext, StepError, StepOutcome, StepRegistry};
use gantry_engine::store::{NewRun, RunOrigin};
use gantry_engine::{SqliteStore, Store};
use gantry_workflows::spans::YamlPath;
use serde_json::json;

const WEB: &str = "apps/web/values.yaml";
const API: &str = "apps/api/values.yaml";
const BRANCH: &str = "gantry/prod/web/6f11ad3c9450";

fn values(app: &str, tag: &str) -> String {
    format!("# {app}\nimage:\n  repository: ghcr.io/acme/{app}\n  tag: \"{tag}\"\nreplicaCount: 2\n")
}

fn gantry() -> Signature {
    Signature { name: "gantry".into(), email: "gantry@example.com".into() }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Ops Person", "-c", "user.email=ops@example.com"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

struct World {
    dir: tempfile::TempDir,
    remote: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("repos/prod.git");
        let (web, api) = (values("web", "prod-1.4.2"), values("api", "prod-2.0.0"));
        init_bare_repo(&remote, "main", &[(WEB, web.as_bytes()), (API, api.as_bytes())], &gantry()).unwrap();
        World { dir, remote }
    }

    fn url(&self) -> String {
        format!("file://{}", self.remote.display())
    }

    fn cache(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The promotion's commit on its branch: `path`'s tag set to `tag`, on top of main.
    fn promote(&self, cache: &Path, path: &str, tag: &str, branch: &str) -> String {
        let repo = EnvRepo::open(cache, &self.url()).unwrap();
        let base = repo.branch_head("main").unwrap().unwrap();
        let text = String::from_utf8(repo.read_file(&base, path).unwrap().unwrap()).unwrap();
        let edited =
            edit::apply(&text, &[Edit::SetScalar { path: YamlPath::parse("image.tag").unwrap(), value: tag.into() }])
                .unwrap();
        let commit = repo
            .commit_files(
                &base,
                &[(path, edited.as_bytes())],
                &format!("Promote to {tag}"),
                &gantry(),
                Utc.timestamp_opt(1_767_323_045, 0).unwrap(),
                branch,
            )
            .unwrap();
        repo.push_branch(&commit, branch).unwrap();
        commit
    }

    /// A person clones the env repo, edits `path`, commits and pushes to main.
    fn human_push(&self, path: &str, from: &str, to: &str) -> String {
        let work = self.dir.path().join("work");
        let _ = std::fs::remove_dir_all(&work);
        let output = Command::new("git")
            .args(["clone", "-q"])
            .arg(&self.remote)
            .arg(&work)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let file = work.join(path);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(from));
        std::fs::write(&file, text.replace(from, to)).unwrap();
        git(&work, &["commit", "-q", "-am", "change by hand"]);
        git(&work, &["push", "-q", "origin", "HEAD:main"]);
        git(&self.remote, &["rev-parse", "main"]).trim().to_owned()
    }

    fn show(&self, path: &str) -> String {
        git(&self.remote, &["show", &format!("main:{path}")])
    }
}

/// A store with one run, which the change requests belong to.
async fn store_with_run(world: &World) -> (Arc<SqliteStore>, gantry_workflows::Plan, String) {
    let config_dir = world.dir.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("gantry.yaml"),
        format!(
            "registries:\n  - name: local\n    url: oci-layout:registry\n\
             apps:\n  - name: web\n    source_repo: acme/web\n    registry: local\n    repository: ghcr.io/acme/web\n\
             environments:\n  - name: prod\n    order: 1\n    config_repo:\n      url: {}\n      path: apps/{{app}}/values.yaml\n      yaml_path: image.tag\n\
             pipelines:\n  - name: default\n    triggers:\n      - on: tag\n        pattern: v*\n        environment: prod\n        artifact_tag: \"{{tag}}\"\n\
             \x20   steps:\n      - name: wait\n        kind: wait-for-merge\n",
            world.url()
        ),
    )
    .unwrap();
    let config = gantry_workflows::load_dir(&config_dir, &StepRegistry::builtin())
        .unwrap_or_else(|errors| panic!("config: {errors:?}"));
    let event: gantry_webhooks::GitEvent = serde_json::from_value(json!({
        "forge": "github", "kind": "tag", "repo": "acme/web", "ref_kind": "tag", "ref": "v1.5.0",
        "before": null, "sha": "0123456789abcdef0123456789abcdef01234567", "deleted": false,
        "merged": false, "actor": "octocat", "change_request": null, "timestamp": null,
        "changed_paths": []
    }))
    .unwrap();
    let plan = gantry_workflows::plan(&config, &event)
        .unwrap()
        .into_iter()
        .next()
        .expect("the tag plans a promotion into prod");
    let store = Arc::new(SqliteStore::open(&world.dir.path().join("gantry.db")).await.unwrap());
    let run_id = store
        .create_run(NewRun { plan: &plan, digest: None, origin: RunOrigin::Manual, bypass_hold: true })
        .await
        .unwrap()
        .expect("the run is created");
    (store, plan, run_id)
}

fn draft(world: &World, head: &str, run_id: &str) -> ChangeRequestDraft {
    ChangeRequestDraft {
        repo: world.url(),
        branch: BRANCH.into(),
        base: "main".into(),
        head_commit: head.into(),
        title: "Promote web prod-1.5.0".into(),
        body: "one line".into(),
        run_id: run_id.into(),
        review: ReviewOptions::default(),
    }
}

#[tokio::test]
async fn a_change_request_merges_onto_a_base_that_moved_by_rebasing() {
    let world = World::new();
    let (store, _, run_id) = store_with_run(&world).await;
    let forge = LocalForge::new(store.clone()).with_mirrors(world.cache("mirrors"));
    let head = world.promote(&world.cache("mirrors"), WEB, "prod-1.5.0", BRANCH);

    let (request, opened) = forge.open_change_request(&draft(&world, &head, &run_id)).await.unwrap();
    assert!(opened);
    let (again, opened_again) = forge.open_change_request(&draft(&world, &head, &run_id)).await.unwrap();
    assert!(!opened_again);
    assert_eq!(again.id, request.id);
    let found = forge.find_change_request(&world.url(), BRANCH).await.unwrap().unwrap();
    assert_eq!(found.id, request.id);
    assert_eq!(forge.change_request_status(&request).await.unwrap().state, ChangeRequestState::Open);

    // While the request waits for review, a person pushes an unrelated change to main.
    let human = world.human_push(API, "replicaCount: 2", "replicaCount: 4");

    let status = forge.merge_change_request(&request, MergeMethod::Merge).await.unwrap();
    assert_eq!(status.state, ChangeRequestState::Merged);
    let main = git(&world.remote, &["rev-parse", "main"]).trim().to_owned();
    assert_eq!(status.merge_commit.as_deref(), Some(main.as_str()));
    assert_ne!(main, head, "the change was replayed, not fast-forwarded");
    assert_eq!(
        git(&world.remote, &["rev-parse", "main^"]).trim(),
        human,
        "the change sits on top of the person's commit"
    );
    // Both changes are on main, and the rebased commit changes exactly the tag line.
    assert!(world.show(WEB).contains("tag: \"prod-1.5.0\""));
    assert!(world.show(API).contains("replicaCount: 4"));
    let diff = git(&world.remote, &["diff", "--unified=0", "main^", "main"]);
    let changed: Vec<&str> = diff
        .lines()
        .filter(|line| line.starts_with(['+', '-']) && !line.starts_with("+++") && !line.starts_with("---"))
        .collect();
    assert_eq!(changed, ["-  tag: \"prod-1.4.2\"", "+  tag: \"prod-1.5.0\""]);
    assert_eq!(
        git(&world.remote, &["log", "-1", "--format=%an <%ae>|%s", "main"]).trim(),
        "gantry <gantry@example.com>|Promote to prod-1.5.0"
    );

    // Merging again changes nothing; the store remembers the merge.
    let again = forge.merge_change_request(&request, MergeMethod::Merge).await.unwrap();
    assert_eq!(again.merge_commit, status.merge_commit);
    assert_eq!(git(&world.remote, &["rev-parse", "main"]).trim(), main);
    let recorded = forge.find_change_request(&world.url(), BRANCH).await.unwrap().unwrap();
    assert_eq!(recorded.state, "merged");
}

#[tokio::test]
async fn a_conflicting_push_is_reported_and_main_is_left_alone() {
    let world = World::new();
    let (store, _, run_id) = store_with_run(&world).await;
    let forge = LocalForge::new(store.clone()).with_mirrors(world.cache("mirrors"));
    let head = world.promote(&world.cache("mirrors"), WEB, "prod-1.5.0", BRANCH);
    let (request, _) = forge.open_change_request(&draft(&world, &head, &run_id)).await.unwrap();
    let human = world.human_push(WEB, "prod-1.4.2", "hotfix-1.4.3");
    let error = forge.merge_change_request(&request, MergeMethod::Merge).await.unwrap_err();
    let ForgeError::Git { source, .. } = &error else {
        panic!("expected a git error, got {error:?}");
    };
    assert!(
        matches!(source.as_ref(), GitError::RebaseConflict { paths, .. } if paths == &[WEB.to_owned()]),
        "{source:?}"
    );
    assert!(!error.is_transient());
    assert_eq!(git(&world.remote, &["rev-parse", "main"]).trim(), human);
    assert_eq!(forge.change_request_status(&request).await.unwrap().state, ChangeRequestState::Open);
    // Without a mirror directory the forge cannot merge, and says so.
    let error = LocalForge::new(store).merge_change_request(&request, MergeMethod::Merge).await.unwrap_err();
    assert!(matches!(error, ForgeError::Setup { .. }), "{error:?}");
}

#[test]
fn two_writers_landing_at_once_both_land() {
    // Two gantry processes (two mirrors) land different changes onto main at the same time,
    // round after round; whoever loses a race rebases and retries, and no change is lost.
    let world = World::new();
    for round in 0..6 {
        let web_tag = format!("prod-1.5.{round}");
        let api_tag = format!("prod-2.0.{}", round + 1);
        let web = world.promote(&world.cache("a"), WEB, &web_tag, "gantry/prod/web/round");
        let api = world.promote(&world.cache("b"), API, &api_tag, "gantry/prod/api/round");
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let landers: Vec<_> = [("a", web), ("b", api)]
            .into_iter()
            .map(|(cache, commit)| {
                let (cache, url, barrier) = (world.cache(cache), world.url(), barrier.clone());
                std::thread::spawn(move || {
                    let repo = EnvRepo::open(&cache, &url).unwrap();
                    barrier.wait();
                    repo.land(&commit, "main", 10)
                })
            })
            .collect();
        let outcomes: Vec<LandOutcome> = landers.into_iter().map(|lander| lander.join().unwrap().unwrap()).collect();
        assert!(world.show(WEB).contains(&web_tag), "round {round}: {outcomes:?}");
        assert!(world.show(API).contains(&api_tag), "round {round}: {outcomes:?}");
        // Linear history: every round adds exactly two commits.
        let count: usize = git(&world.remote, &["rev-list", "--count", "main"]).trim().parse().unwrap();
        assert_eq!(count, 1 + 2 * (round + 1), "round {round}: {outcomes:?}");
        let main = git(&world.remote, &["rev-parse", "main"]).trim().to_owned();
        assert!(outcomes.iter().any(|outcome| outcome.commit() == main));
    }
}

#[test]
fn landing_is_idempotent() {
    let world = World::new();
    let head = world.promote(&world.cache("mirrors"), WEB, "prod-1.5.0", BRANCH);
    let repo = EnvRepo::open(&world.cache("mirrors"), &world.url()).unwrap();
    let first = repo.land(&head, "main", 3).unwrap();
    assert_eq!(first, LandOutcome::FastForward { commit: head.clone(), attempts: 1 });
    let second = repo.land(&head, "main", 3).unwrap();
    assert!(matches!(second, LandOutcome::AlreadyLanded { ref commit, .. } if *commit == head));
}

fn context(
    world: &World,
    plan: gantry_workflows::Plan,
    run_id: &str,
    forge: Arc<dyn Forge>,
    config: serde_json::Value,
    attempt: u32,
) -> StepContext {
    let mut outputs = serde_json::Map::new();
    outputs
        .insert("open-pr".into(), json!({ "forge": "local", "branch": BRANCH, "opened": true, "change_request": 1 }));
    StepContext {
        run_id: run_id.into(),
        step: "wait".into(),
        attempt,
        config,
        plan,
        digest: None,
        run_created_at: gantry_engine::model::now_millis(),
        outputs,
        progress: None,
        started_at: gantry_engine::model::now_millis(),
        capabilities: Arc::new(Capabilities::new(world.dir.path(), forge, None)),
    }
}

#[tokio::test]
async fn wait_for_merge_polls_with_backoff_then_sees_the_merge() {
    let world = World::new();
    let (store, plan, run_id) = store_with_run(&world).await;
    let forge: Arc<dyn Forge> = Arc::new(LocalForge::new(store).with_mirrors(world.cache("mirrors")));
    let head = world.promote(&world.cache("mirrors"), WEB, "prod-1.5.0", BRANCH);
    let (request, _) = forge.open_change_request(&draft(&world, &head, &run_id)).await.unwrap();
    let step = StepRegistry::builtin();
    let wait = step.get("wait-for-merge").unwrap();
    let settings = json!({ "poll": "2s", "max_poll": "5s" });

    let mut intervals = Vec::new();
    for attempt in 1..=4 {
        let ctx = context(&world, plan.clone(), &run_id, forge.clone(), settings.clone(), attempt);
        let StepOutcome::Waiting { retry_in, wake_on, .. } = wait.run(&ctx).await.unwrap() else {
            panic!("an open request is waited for");
        };
        assert_eq!(wake_on.as_deref(), Some(format!("merge:{BRANCH}").as_str()));
        intervals.push(retry_in.as_secs());
    }
    assert_eq!(intervals, [2, 4, 5, 5]);

    forge.merge_change_request(&request, MergeMethod::Merge).await.unwrap();
    let ctx = context(&world, plan.clone(), &run_id, forge.clone(), settings.clone(), 5);
    let StepOutcome::Succeeded { outputs, .. } = wait.run(&ctx).await.unwrap() else {
        panic!("a merged request ends the wait");
    };
    assert_eq!(outputs["merged"], json!(true));
    assert_eq!(outputs["merge_commit"].as_str().unwrap(), git(&world.remote, &["rev-parse", "main"]).trim());
}

#[tokio::test]
async fn wait_for_merge_fails_when_the_request_is_closed_and_can_merge_itself() {
    let world = World::new();
    let (store, plan, run_id) = store_with_run(&world).await;
    let local = LocalForge::new(store.clone()).with_mirrors(world.cache("mirrors"));
    let forge: Arc<dyn Forge> = Arc::new(local);
    let head = world.promote(&world.cache("mirrors"), WEB, "prod-1.5.0", BRANCH);
    let (request, _) = forge.open_change_request(&draft(&world, &head, &run_id)).await.unwrap();
    let wait = StepRegistry::builtin();
    let wait = wait.get("wait-for-merge").unwrap();

    // `merge: true` merges the open request instead of waiting for a person.
    let ctx = context(&world, plan.clone(), &run_id, forge.clone(), json!({"merge": true}), 1);
    let StepOutcome::Succeeded { outputs, .. } = wait.run(&ctx).await.unwrap() else {
        panic!("merge: true merges");
    };
    assert_eq!(outputs["merged"], json!(true));
    assert!(world.show(WEB).contains("prod-1.5.0"));

    // A request closed without merge fails the step with that reason.
    store.set_change_request_state(request.id, "closed", None).await.unwrap();
    let ctx = context(&world, plan, &run_id, forge.clone(), serde_json::Value::Null, 1);
    let error = wait.run(&ctx).await.unwrap_err();
    let StepError::Terminal { message } = error else {
        panic!("closed is terminal");
    };
    assert!(message.contains("closed without being merged"), "{message}");
}
