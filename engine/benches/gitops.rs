//! GitOps write and drift benchmark, compared in the same run with what a user would
//! otherwise do by hand (run by `scripts/bench-gitops.sh`; not part of the test suite).
//!
//! 1. Update-and-push on an env repo with 5,000 apps and 300 commits of history: gantry's
//!    warm mirror (incremental fetch, one blob and the trees above it rewritten, push of the
//!    new objects only) against `git clone --depth 1` + edit + commit + push.
//! 2. Drift across 1,000 apps in 4 environments: `gantry_engine::drift::check` against
//!    `git diff --no-index` over the same trees checked out.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use gantry_engine::StepRegistry;
use gantry_engine::drift;
use gantry_engine::edit;
use gantry_engine::git::{EnvRepo, Signature};

const APPS: usize = 5_000;
const COMMITS: usize = 300;
const DRIFT_APPS: usize = 1_000;
const ENVIRONMENTS: [&str; 4] = ["dev", "staging", "uat", "prod"];

fn kustomization(app: &str, tag: &str) -> String {
    format!(
        "# Overlay of {app}; the image pin below is rewritten on promotion.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         namespace: {app}\nresources:\n  - ../../base\n  - hpa.yaml\n\
         images:\n  - name: ghcr.io/acme/{app}\n    newTag: \"{tag}\"   # pinned by gantry\n\
         replicas:\n  - name: {app}\n    count: 3\n"
    )
}

fn run(command: &mut Command) -> String {
    let output =
        command.env("GIT_CONFIG_GLOBAL", "/dev/null").env("GIT_CONFIG_NOSYSTEM", "1").output().expect("run a command");
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn git(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command.arg("-C").arg(dir).args(["-c", "user.name=bench", "-c", "user.email=bench@example.com"]);
    command
}

/// A bare repo whose `main` holds `apps/app-NNNN/kustomization.yaml` for `apps` apps, built in
/// `commits` commits (the first adds every app, each later one bumps a handful of tags), via
/// `git fast-import`.
fn make_repo(path: &Path, apps: usize, commits: usize, tag_of: impl Fn(usize, usize) -> String) {
    run(Command::new("git").args(["init", "-q", "--bare", "-b", "main"]).arg(path));
    let mut stream = String::new();
    let mut mark = 0;
    let per_commit = apps.div_ceil(commits.max(1)).max(1);
    for commit in 0..commits {
        let changed: Vec<usize> = if commit == 0 {
            (0..apps).collect()
        } else {
            (0..per_commit).map(|i| (commit * 7919 + i * 104_729) % apps).collect()
        };
        let mut blobs = Vec::with_capacity(changed.len());
        for &app in &changed {
            mark += 1;
            let content = kustomization(&format!("app-{app:04}"), &tag_of(app, commit));
            let _ = write!(stream, "blob\nmark :{mark}\ndata {}\n{content}\n", content.len());
            blobs.push((app, mark));
        }
        let message = format!("commit {commit}\n");
        let _ = write!(
            stream,
            "commit refs/heads/main\ncommitter bench <bench@example.com> {} +0000\ndata {}\n{message}",
            1_700_000_000 + commit * 60,
            message.len()
        );
        for (app, mark) in blobs {
            let _ = writeln!(stream, "M 100644 :{mark} apps/app-{app:04}/kustomization.yaml");
        }
        stream.push('\n');
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(path)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start git fast-import");
    child.stdin.take().expect("stdin").write_all(stream.as_bytes()).expect("feed git fast-import");
    assert!(child.wait().expect("git fast-import").success());
    run(git(path).args(["gc", "-q"]));
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// `min / median / max` in milliseconds: the spread matters on a shared machine.
fn spread(samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    format!(
        "{:.1} / {:.1} / {:.1} ms",
        millis(sorted[0]),
        millis(sorted[sorted.len() / 2]),
        millis(sorted[sorted.len() - 1])
    )
}

/// The 1-minute load average, to read the figures against.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn bench_update_and_push(dir: &Path, rounds: usize) -> (Duration, Duration) {
    let remote = dir.join("prod.git");
    let started = Instant::now();
    make_repo(&remote, APPS, COMMITS, |app, commit| format!("prod-1.{commit}.{app}"));
    let objects = run(git(&remote).args(["count-objects", "-v"]));
    println!(
        "env repo: {APPS} apps, {COMMITS} commits, built in {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        objects.lines().find(|line| line.starts_with("size-pack")).unwrap_or("size-pack: ?")
    );
    let url = format!("file://{}", remote.display());
    let cache = dir.join("mirrors");
    let author = Signature { name: "gantry".into(), email: "gantry@example.com".into() };
    // The mirror is warm, as it is in a running gantry: the first clone is not timed.
    let first_clone = Instant::now();
    EnvRepo::open(&cache, &url).expect("first clone");
    println!(
        "gantry's first (cold) mirror clone: {:.0} ms (once per env repo, not per promotion)",
        millis(first_clone.elapsed())
    );

    let mut gantry = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let app = format!("app-{:04}", (round * 37) % APPS);
        let path = format!("apps/{app}/kustomization.yaml");
        let branch = format!("gantry/prod/{app}/{round:012}");
        let started = Instant::now();
        let repo = EnvRepo::open(&cache, &url).expect("open the mirror");
        let base = repo.branch_head("main").expect("head").expect("main");
        let text = String::from_utf8(repo.read_file(&base, &path).expect("read").expect("file")).expect("utf-8");
        let edited =
            edit::set_kustomize_image(&text, &format!("ghcr.io/acme/{app}"), Some(&format!("prod-2.0.{round}")), None)
                .expect("edit");
        let commit = repo
            .commit_files(
                &base,
                &[(path.as_str(), edited.as_bytes())],
                "Promote",
                &author,
                Utc.timestamp_opt(1_767_323_045, 0).unwrap(),
                &branch,
            )
            .expect("commit");
        repo.push_branch(&commit, &branch).expect("push");
        gantry.push(started.elapsed());
    }

    let mut shell = Vec::with_capacity(rounds.min(5));
    for round in 0..rounds.min(5) {
        let work = dir.join(format!("clone-{round}"));
        let app = format!("app-{:04}", (round * 53 + 11) % APPS);
        let script = format!(
            "set -e\n\
             git clone -q --depth 1 --branch main {url} {work}\n\
             cd {work}\n\
             sed -i 's/newTag: \"[^\"]*\"/newTag: \"prod-3.0.{round}\"/' apps/{app}/kustomization.yaml\n\
             git -c user.name=bench -c user.email=bench@example.com commit -q -am Promote\n\
             git push -q origin HEAD:refs/heads/manual/{app}/{round}\n",
            work = work.display()
        );
        let started = Instant::now();
        run(Command::new("bash").arg("-c").arg(&script));
        shell.push(started.elapsed());
        let _ = std::fs::remove_dir_all(&work);
    }
    (median(gantry), median(shell))
}

fn bench_drift(dir: &Path, rounds: usize) -> (Vec<Duration>, Vec<Duration>) {
    // dev runs 1.6.x; staging, uat and prod 1.5.x, with a tenth of prod one patch behind.
    for env in ENVIRONMENTS {
        let repo = dir.join(format!("{env}.git"));
        make_repo(&repo, DRIFT_APPS, 1, |app, _| {
            let minor = if env == "dev" { 6 } else { 5 };
            let patch = if env == "prod" && app % 10 == 0 { 0 } else { 1 };
            format!("{env}-1.{minor}.{patch}")
        });
    }
    let config_dir = dir.join("config");
    std::fs::create_dir_all(&config_dir).expect("config dir");
    let mut yaml = String::from("registries:\n  - name: local\n    url: oci-layout:registry\napps:\n");
    for app in 0..DRIFT_APPS {
        let _ = write!(
            yaml,
            "  - name: app-{app:04}\n    source_repo: acme/app-{app:04}\n    registry: local\n    repository: ghcr.io/acme/app-{app:04}\n"
        );
    }
    yaml.push_str("environments:\n");
    for (order, env) in ENVIRONMENTS.iter().enumerate() {
        let after = if order == 0 { String::new() } else { format!("    after: [{}]\n", ENVIRONMENTS[order - 1]) };
        let _ = write!(
            yaml,
            "  - name: {env}\n    order: {}\n{after}    config_repo:\n      url: {}\n      path: apps/{{app}}/kustomization.yaml\n    tag_template: \"{{env}}-{{version}}\"\n",
            order + 1,
            dir.join(format!("{env}.git")).display()
        );
    }
    yaml.push_str("pipelines:\n  - name: default\n    triggers:\n      - on: branch\n        pattern: main\n        environment: dev\n        artifact_tag: sha-{sha7}\n    steps:\n      - name: update-config\n        kind: update-config\n");
    std::fs::write(config_dir.join("gantry.yaml"), yaml).expect("write config");
    let config = gantry_workflows::load_dir(&config_dir, &StepRegistry::builtin())
        .unwrap_or_else(|errors| panic!("config: {errors:?}"));
    let cache = dir.join("drift-mirrors");
    // Warm the mirrors, as a running gantry has them.
    let warm = drift::check(&config, &[], dir, &cache);
    assert!(warm.problems.is_empty(), "{:?}", warm.problems);
    println!(
        "drift: {} apps x {} environments, {} app/environment pairs differ",
        DRIFT_APPS,
        ENVIRONMENTS.len(),
        warm.environments.len()
    );

    let mut gantry = Vec::with_capacity(rounds);

    // The same trees checked out, compared pairwise as a person would.
    let trees = dir.join("trees");
    for env in ENVIRONMENTS {
        let tree = trees.join(env);
        std::fs::create_dir_all(&tree).expect("tree dir");
        run(Command::new("bash").arg("-c").arg(format!(
            "git -C {} archive main | tar -x -C {}",
            dir.join(format!("{env}.git")).display(),
            tree.display()
        )));
    }
    let mut shell = Vec::with_capacity(rounds);
    for round in 0..rounds * 2 {
        // Alternate with gantry's rounds, so both see the same load.
        if round % 2 == 1 {
            let started = Instant::now();
            let report = drift::check(&config, &[], dir, &cache);
            gantry.push(started.elapsed());
            assert_eq!(report.environments.len(), warm.environments.len());
            continue;
        }
        let started = Instant::now();
        for pair in ENVIRONMENTS.windows(2) {
            // Exit status 1 means "differences found".
            let status = Command::new("git")
                .args(["diff", "--no-index", "--no-color"])
                .arg(trees.join(pair[0]))
                .arg(trees.join(pair[1]))
                .stdout(Stdio::null())
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .status()
                .expect("git diff");
            assert!(matches!(status.code(), Some(0 | 1)));
        }
        shell.push(started.elapsed());
    }
    (gantry, shell)
}

fn main() {
    let rounds: usize = std::env::var("GANTRY_BENCH_ROUNDS").ok().and_then(|rounds| rounds.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().expect("temp dir");
    let root: PathBuf = dir.path().to_path_buf();
    // `GANTRY_BENCH_ONLY=drift` (or `write`) runs one half, for profiling.
    let only = std::env::var("GANTRY_BENCH_ONLY").unwrap_or_default();

    if only.is_empty() || only == "write" {
        bench_write(&root, rounds);
    }
    if only.is_empty() || only == "drift" {
        bench_drift_and_report(&root, rounds);
    }
}

fn bench_write(root: &Path, rounds: usize) {
    let (gantry, shell) = bench_update_and_push(&root.join("write"), rounds);
    let ratio = gantry.as_secs_f64() / shell.as_secs_f64();
    println!(
        "update-and-push: gantry {:.1} ms (median of {rounds}), git clone --depth 1 + edit + commit + push {:.1} ms (median of {}) -> {:.2} % (target <= 1 %) {}",
        millis(gantry),
        millis(shell),
        rounds.min(5),
        ratio * 100.0,
        if ratio <= 0.01 { "PASS" } else { "MISS" }
    );
}

fn bench_drift_and_report(root: &Path, rounds: usize) {
    let load_before = load_average();
    let (gantry, shell) = bench_drift(&root.join("drift"), rounds.min(10));
    let ratio = median(gantry.clone()).as_secs_f64() / median(shell.clone()).as_secs_f64();
    println!(
        "drift {DRIFT_APPS} apps x 4 envs ({} rounds each, interleaved; min / median / max): gantry {}, \
         git diff --no-index over the same trees {} -> ratio of medians {:.2} (target <= 1) {}; load average {} -> {}",
        gantry.len(),
        spread(&gantry),
        spread(&shell),
        ratio,
        if ratio <= 1.0 { "PASS" } else { "MISS" },
        load_before,
        load_average()
    );
}
