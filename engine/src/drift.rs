//! Drift: where the environments' config repos differ from what gantry promoted, and from
//! each other.
//!
//! Two questions, answered from the env repos as they are now (fetched into the warm
//! mirrors, read without a checkout):
//!
//! - **promoted vs actual** — for every (app, environment), the newest run that succeeded
//!   and changed the environment's config says which tag it pinned. If the file now pins
//!   something else (someone edited prod by hand), that is drift, shown as a unified diff
//!   from the file as gantry would have it to the file as it is. A change request still open
//!   for that run is reported as awaiting merge rather than as drift.
//! - **environment vs environment** — for every app and every pair of an environment and
//!   the one it promotes into (its `after` list, else the previous one by `order`), which
//!   version each runs; apps whose versions (or digests) differ are listed with the unified
//!   diff of their files: what staging runs that prod does not yet.
//!
//! Reading is blocking git work: call [`check`] from `spawn_blocking` (or a CLI).

use std::collections::HashMap;
use std::path::Path;

use gantry_workflows::Config;
use gantry_workflows::config::EnvironmentSpec;
use gantry_workflows::spans::YamlPath;
use gantry_workflows::template::{self, Vars};
use serde::{Deserialize, Serialize};

use crate::edit::{self, Format, PinLocation, Pinned};
use crate::git::{EnvRepo, FileBlob};
use crate::model::{ChangeRequest, Run};
use crate::repos::RepoCatalog;

/// How an environment stands against what gantry last promoted there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromotionState {
    /// The file pins what gantry promoted.
    InSync,
    /// The file pins something else: someone changed it outside gantry.
    Drifted,
    /// Gantry's change request for the promotion is still open.
    AwaitingMerge,
}

/// One (app, environment) compared with its last promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionDrift {
    /// App.
    pub app: String,
    /// Environment.
    pub environment: String,
    /// The run that promoted it.
    pub run_id: String,
    /// The file gantry edited.
    pub path: String,
    /// The env repo commit that was read.
    pub commit: String,
    /// The tag gantry pinned.
    pub promoted_tag: String,
    /// The digest gantry promoted.
    pub promoted_digest: Option<String>,
    /// What the file pins now.
    pub actual: Pinned,
    /// In sync, drifted or awaiting merge.
    pub state: PromotionState,
    /// For drift: unified diff from the file as promoted to the file as it is.
    pub diff: Option<String>,
}

/// One app whose version differs between two environments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentDiff {
    /// App.
    pub app: String,
    /// The environment that promotes (e.g. `staging`).
    pub from: String,
    /// The environment it promotes into (e.g. `prod`).
    pub to: String,
    /// Version `from` runs (its tag with the environment's tag template taken off).
    pub from_version: Option<String>,
    /// Version `to` runs.
    pub to_version: Option<String>,
    /// Digest `from` pins, if its file pins one.
    pub from_digest: Option<String>,
    /// Digest `to` pins, if its file pins one.
    pub to_digest: Option<String>,
    /// Unified diff from `to`'s file to `from`'s: what `from` runs that `to` does not yet.
    pub diff: String,
}

/// Something that kept one app or environment out of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftProblem {
    /// App, when it concerns one.
    pub app: Option<String>,
    /// Environment.
    pub environment: String,
    /// What went wrong.
    pub message: String,
}

/// The answer to both drift questions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Every (app, environment) gantry promoted into, against its last promotion.
    pub promoted: Vec<PromotionDrift>,
    /// Apps whose versions differ between an environment and the next.
    pub environments: Vec<EnvironmentDiff>,
    /// What could not be compared.
    pub problems: Vec<DriftProblem>,
}

impl DriftReport {
    /// How many (app, environment) pairs drifted from their last promotion.
    pub fn drifted(&self) -> usize {
        self.promoted.iter().filter(|drift| drift.state == PromotionState::Drifted).count()
    }

    /// The report for people: drift first, then environment differences, then problems.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let awaiting = self.promoted.iter().filter(|drift| drift.state == PromotionState::AwaitingMerge).count();
        text.push_str(&format!(
            "promoted vs actual: {} checked, {} drifted, {} awaiting merge\n",
            self.promoted.len(),
            self.drifted(),
            awaiting
        ));
        for drift in &self.promoted {
            if drift.state != PromotionState::Drifted {
                continue;
            }
            text.push_str(&format!(
                "\nDRIFT {} in {}: gantry promoted {} (run {}), {} at {} pins {}\n",
                drift.app,
                drift.environment,
                drift.promoted_tag,
                drift.run_id,
                drift.path,
                short(&drift.commit),
                describe(&drift.actual),
            ));
            if let Some(diff) = &drift.diff {
                text.push_str(diff);
                if !diff.ends_with('\n') {
                    text.push('\n');
                }
            }
        }
        text.push_str(&format!("\nenvironment vs environment: {} app(s) differ\n", self.environments.len()));
        for difference in &self.environments {
            text.push_str(&format!(
                "\n{}: {} runs {}, {} runs {}\n",
                difference.app,
                difference.from,
                difference.from_version.as_deref().unwrap_or("nothing"),
                difference.to,
                difference.to_version.as_deref().unwrap_or("nothing"),
            ));
            text.push_str(&difference.diff);
            if !difference.diff.ends_with('\n') {
                text.push('\n');
            }
        }
        for problem in &self.problems {
            text.push_str(&format!(
                "\nproblem: {}{}: {}\n",
                problem.app.as_deref().map(|app| format!("{app} in ")).unwrap_or_default(),
                problem.environment,
                problem.message
            ));
        }
        text
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

fn describe(pinned: &Pinned) -> String {
    match (&pinned.tag, &pinned.digest) {
        (Some(tag), Some(digest)) => format!("{tag}@{digest}"),
        (Some(tag), None) => tag.clone(),
        (None, Some(digest)) => digest.clone(),
        (None, None) => "nothing".to_owned(),
    }
}

/// What gantry last promoted into one environment: the file it edited and the tag it pinned
/// there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// The run that promoted it.
    pub run_id: String,
    /// App.
    pub app: String,
    /// Environment.
    pub environment: String,
    /// Config repo URL as configured.
    pub repo_url: String,
    /// Branch the environment deploys from.
    pub branch: String,
    /// File gantry edited.
    pub path: String,
    /// YAML path of the tag, or `None` for a kustomization `images:` entry.
    pub yaml_path: Option<String>,
    /// Image name in a kustomization.
    pub image_name: String,
    /// Tag gantry pinned.
    pub tag: String,
    /// Digest gantry promoted.
    pub digest: Option<String>,
    /// Whether the run's change request is still open (not merged, not closed).
    pub awaiting_merge: bool,
}

impl Promotion {
    /// The promotion a succeeded run made, or `None` when the run did not change the config
    /// repo (no succeeded `update-config` step, or it found the tag already there).
    pub fn from_run(run: &Run, change_requests: &[ChangeRequest]) -> Option<Promotion> {
        let edited = run
            .steps
            .iter()
            .any(|step| step.kind == "update-config" && step.state == crate::model::StepState::Succeeded);
        if !edited {
            return None;
        }
        let target = &run.plan.target;
        Some(Promotion {
            run_id: run.id.clone(),
            app: run.app.clone(),
            environment: target.environment.clone(),
            repo_url: target.repo_url.clone(),
            branch: target.branch.clone(),
            path: target.path.clone(),
            yaml_path: target.yaml_path.clone(),
            image_name: target.image_name.clone(),
            tag: target.tag.clone(),
            digest: run.digest.clone(),
            awaiting_merge: change_requests.iter().any(|request| request.state == "open"),
        })
    }
}

/// One environment's config repo, opened once and read at one commit.
struct EnvironmentRepo {
    repo: EnvRepo,
    commit: String,
}

/// Opens the env repos the environments and promotions need, once per (url, branch).
struct Repos<'a> {
    cache_dir: &'a Path,
    catalog: RepoCatalog,
    opened: HashMap<(String, String), Result<EnvironmentRepo, String>>,
}

impl Repos<'_> {
    fn get(&mut self, url: &str, branch: &str) -> Result<&EnvironmentRepo, String> {
        let key = (url.to_owned(), branch.to_owned());
        if !self.opened.contains_key(&key) {
            let opened = open_env_repo(&self.catalog, self.cache_dir, url, branch);
            self.opened.insert(key.clone(), opened);
        }
        match &self.opened[&key] {
            Ok(repo) => Ok(repo),
            Err(message) => Err(message.clone()),
        }
    }
}

fn open_env_repo(catalog: &RepoCatalog, cache_dir: &Path, url: &str, branch: &str) -> Result<EnvironmentRepo, String> {
    let repo = catalog.open(cache_dir, url).map_err(|error| crate::steps::chain(&error))?;
    let commit = repo
        .branch_head(branch)
        .map_err(|error| crate::steps::chain(&error))?
        .ok_or_else(|| format!("branch {branch} does not exist in {url}"))?;
    Ok(EnvironmentRepo { repo, commit })
}

/// Where an app is pinned in an environment's file.
fn location(yaml_path: Option<&str>, image_name: &str) -> Result<PinLocation, String> {
    match yaml_path {
        Some(path) => YamlPath::parse(path).map(PinLocation::Scalar).map_err(|error| error.to_string()),
        None => Ok(PinLocation::KustomizeImage(image_name.to_owned())),
    }
}

/// The version inside `tag`, given the environment's tag template (`{env}-{version}` makes
/// `prod-1.4.2` version `1.4.2`); the tag itself when the template cannot be undone.
fn version_of(tag: &str, tag_template: &str, app: &str, environment: &str) -> String {
    const MARK: &str = "\u{1}version\u{1}";
    let vars = Vars::new().set("app", Some(app)).set("env", Some(environment)).set("version", Some(MARK));
    let Ok(rendered) = template::render(tag_template, &vars) else {
        return tag.to_owned();
    };
    let Some((prefix, suffix)) = rendered.split_once(MARK) else {
        return tag.to_owned();
    };
    tag.strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .filter(|version| !version.is_empty())
        .unwrap_or(tag)
        .to_owned()
}

fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    similar::TextDiff::from_lines(old, new).unified_diff().context_radius(3).header(old_name, new_name).to_string()
}

/// Checks both kinds of drift. `promotions` are what gantry last promoted per (app,
/// environment) (see [`Promotion::from_run`] and [`crate::store::Store::last_succeeded_runs`]);
/// env repos are fetched into mirrors under `cache_dir`, relative repo URLs resolve against
/// `data_dir`.
///
/// An unreadable repo or file becomes a [`DriftProblem`] in the report, so that one broken
/// environment does not hide the others' drift.
pub fn check(config: &Config, promotions: &[Promotion], data_dir: &Path, cache_dir: &Path) -> DriftReport {
    let catalog = RepoCatalog::from_config(config, data_dir);
    let mut repos = Repos { cache_dir, catalog, opened: HashMap::new() };
    let mut report = DriftReport::default();
    check_promotions(promotions, &mut repos, &mut report);
    check_environments(config, &mut repos, &mut report);
    report
}

fn check_promotions(promotions: &[Promotion], repos: &mut Repos<'_>, report: &mut DriftReport) {
    for promotion in promotions {
        let problem = |message: String| DriftProblem {
            app: Some(promotion.app.clone()),
            environment: promotion.environment.clone(),
            message,
        };
        let env_repo = match repos.get(&promotion.repo_url, &promotion.branch) {
            Ok(env_repo) => env_repo,
            Err(message) => {
                report.problems.push(problem(message));
                continue;
            }
        };
        let pin = match location(promotion.yaml_path.as_deref(), &promotion.image_name) {
            Ok(pin) => pin,
            Err(message) => {
                report.problems.push(problem(message));
                continue;
            }
        };
        let text = match env_repo.repo.read_file(&env_repo.commit, &promotion.path) {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(None) => {
                report.problems.push(problem(format!(
                    "{} no longer exists at {}",
                    promotion.path,
                    short(&env_repo.commit)
                )));
                continue;
            }
            Err(error) => {
                report.problems.push(problem(crate::steps::chain(&error)));
                continue;
            }
        };
        let format = Format::from_path(Path::new(&promotion.path));
        let actual = match edit::read_pin(format, &text, &pin) {
            Ok(actual) => actual,
            Err(error) => {
                report.problems.push(problem(format!("read {}: {error}", promotion.path)));
                continue;
            }
        };
        let (state, diff) = if actual.tag.as_deref() == Some(promotion.tag.as_str()) {
            (PromotionState::InSync, None)
        } else if promotion.awaiting_merge {
            (PromotionState::AwaitingMerge, None)
        } else {
            // The file as gantry would have it: the same file with the promoted tag put back.
            let desired = edit::apply_format(format, &text, &[pin.set_tag(&promotion.tag)]);
            let diff = desired.ok().map(|desired| {
                unified_diff(
                    &desired,
                    &text,
                    &format!("promoted/{}", promotion.path),
                    &format!("actual/{}", promotion.path),
                )
            });
            (PromotionState::Drifted, diff)
        };
        report.promoted.push(PromotionDrift {
            app: promotion.app.clone(),
            environment: promotion.environment.clone(),
            run_id: promotion.run_id.clone(),
            path: promotion.path.clone(),
            commit: env_repo.commit.clone(),
            promoted_tag: promotion.tag.clone(),
            promoted_digest: promotion.digest.clone(),
            actual,
            state,
            diff,
        });
    }
}

/// Pairs (from, to) of environments where `from` promotes into `to`.
fn environment_pairs(config: &Config) -> Vec<(&EnvironmentSpec, &EnvironmentSpec)> {
    let environments: Vec<&EnvironmentSpec> = config.environments.iter().map(|(env, _)| env).collect();
    let mut pairs = Vec::new();
    for (position, env) in environments.iter().enumerate() {
        if env.after.is_empty() {
            if position > 0 {
                pairs.push((environments[position - 1], *env));
            }
        } else {
            for name in &env.after {
                if let Some(from) = environments.iter().find(|other| &other.name == name) {
                    pairs.push((*from, *env));
                }
            }
        }
    }
    pairs
}

/// One app's file in one environment, as read from the env repo.
struct AppFile {
    app: usize,
    path: String,
    blob: FileBlob,
}

/// What one environment's file says about one app.
struct AppState {
    path: String,
    /// Blob id of the file: equal ids mean equal files.
    blob: String,
    content: Vec<u8>,
    pinned: Pinned,
    version: Option<String>,
}

/// What pins a file is read for: a file's blob id and the place the pin is (its format
/// follows from the path's extension, which is part of the key too). Environments that hold
/// the same file (staging and uat between promotions, say) parse it once.
type ParseKey = (String, String, bool);

fn check_environments(config: &Config, repos: &mut Repos<'_>, report: &mut DriftReport) {
    let pairs = environment_pairs(config);
    if pairs.is_empty() {
        return;
    }
    let mut involved: Vec<&EnvironmentSpec> = Vec::new();
    for (from, to) in &pairs {
        for env in [*from, *to] {
            if !involved.iter().any(|seen| seen.name == env.name) {
                involved.push(env);
            }
        }
    }
    // Fetch each repo once (a no-op for a local repo that did not move), then read the
    // environments' files in parallel: inflating thousands of blobs is work per environment.
    let opened: Vec<(&EnvironmentSpec, OpenedRepo)> = involved
        .into_iter()
        .map(|env| {
            let repo = repos
                .get(&env.config_repo.url, &env.config_repo.branch)
                .map(|opened| (opened.repo.clone(), opened.commit.clone()));
            (env, repo)
        })
        .collect();
    let reads: Vec<(&EnvironmentSpec, std::thread::Result<EnvironmentRead>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = opened
            .into_iter()
            .map(|(env, repo)| (env, scope.spawn(move || read_environment(config, env, repo))))
            .collect();
        workers.into_iter().map(|(env, worker)| (env, worker.join())).collect()
    });
    let mut files: Vec<(&EnvironmentSpec, Vec<AppFile>)> = Vec::new();
    for (env, read) in reads {
        match read {
            Ok(read) => {
                report.problems.extend(read.problems);
                files.push((env, read.files));
            }
            Err(_) => report.problems.push(DriftProblem {
                app: None,
                environment: env.name.clone(),
                message: "reading the environment's files panicked".to_owned(),
            }),
        }
    }

    // Parse each distinct (blob, place) once, spread over the machine's cores.
    let mut jobs: Vec<(ParseKey, &[u8], PinLocation, Format)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (env, env_files) in &files {
        for file in env_files {
            let app = &config.apps[file.app].0;
            let Ok(pin) = location(env.config_repo.yaml_path.as_deref(), app.image_name()) else { continue };
            let format = Format::from_path(Path::new(&file.path));
            let key = parse_key(&file.blob.id, &pin, format);
            if seen.insert(key.clone()) {
                jobs.push((key, &file.blob.content, pin, format));
            }
        }
    }
    let parsed: HashMap<ParseKey, Result<Pinned, String>> = parallel_map(&jobs, |(key, content, pin, format)| {
        let text = String::from_utf8_lossy(content);
        (key.clone(), edit::read_pin(*format, &text, pin).map_err(|error| error.to_string()))
    })
    .into_iter()
    .collect();

    let mut states: HashMap<(usize, &str), AppState> = HashMap::new();
    for (env, env_files) in files {
        for file in env_files {
            let app = &config.apps[file.app].0;
            let problem =
                |message: String| DriftProblem { app: Some(app.name.clone()), environment: env.name.clone(), message };
            let pin = match location(env.config_repo.yaml_path.as_deref(), app.image_name()) {
                Ok(pin) => pin,
                Err(message) => {
                    report.problems.push(problem(message));
                    continue;
                }
            };
            let key = parse_key(&file.blob.id, &pin, Format::from_path(Path::new(&file.path)));
            let pinned = match &parsed[&key] {
                Ok(pinned) => pinned.clone(),
                Err(message) => {
                    report.problems.push(problem(format!("read {}: {message}", file.path)));
                    continue;
                }
            };
            let version = pinned.tag.as_deref().map(|tag| version_of(tag, &env.tag_template, &app.name, &env.name));
            let state = AppState { path: file.path, blob: file.blob.id, content: file.blob.content, pinned, version };
            states.insert((file.app, env.name.as_str()), state);
        }
    }

    // Compare; a file identical in both environments (same blob) cannot differ.
    let mut differing: Vec<(&EnvironmentSpec, &EnvironmentSpec, usize, &AppState, &AppState)> = Vec::new();
    for (from, to) in &pairs {
        for app in 0..config.apps.len() {
            let (Some(upstream), Some(downstream)) =
                (states.get(&(app, from.name.as_str())), states.get(&(app, to.name.as_str())))
            else {
                continue;
            };
            if upstream.blob == downstream.blob {
                continue;
            }
            let digests_differ = match (&upstream.pinned.digest, &downstream.pinned.digest) {
                (Some(a), Some(b)) => a != b,
                _ => false,
            };
            if upstream.version == downstream.version && !digests_differ {
                continue;
            }
            differing.push((*from, *to, app, upstream, downstream));
        }
    }
    let diffs = parallel_map(&differing, |(from, to, _, upstream, downstream)| {
        unified_diff(
            &String::from_utf8_lossy(&downstream.content),
            &String::from_utf8_lossy(&upstream.content),
            &format!("{}/{}", to.name, downstream.path),
            &format!("{}/{}", from.name, upstream.path),
        )
    });
    for ((from, to, app, upstream, downstream), diff) in differing.iter().zip(diffs) {
        report.environments.push(EnvironmentDiff {
            app: config.apps[*app].0.name.clone(),
            from: from.name.clone(),
            to: to.name.clone(),
            from_version: upstream.version.clone(),
            to_version: downstream.version.clone(),
            from_digest: upstream.pinned.digest.clone(),
            to_digest: downstream.pinned.digest.clone(),
            diff,
        });
    }
}

fn parse_key(blob: &str, pin: &PinLocation, format: Format) -> ParseKey {
    let place = match pin {
        PinLocation::Scalar(path) => format!("scalar:{path}"),
        PinLocation::KustomizeImage(name) => format!("image:{name}"),
    };
    (blob.to_owned(), place, format == Format::Json)
}

/// `work` applied to every item, the items split into one contiguous chunk per core; results
/// keep the items' order.
fn parallel_map<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    /// Below this, starting threads costs more than it saves.
    const SERIAL_BELOW: usize = 64;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 || items.len() < SERIAL_BELOW {
        return items.iter().map(&work).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let work = &work;
    std::thread::scope(|scope| {
        let workers: Vec<_> =
            items.chunks(chunk).map(|part| scope.spawn(move || part.iter().map(work).collect::<Vec<R>>())).collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// An environment's repo and the commit to read, or why it could not be opened.
type OpenedRepo = Result<(EnvRepo, String), String>;

/// What [`read_environment`] found in one environment.
#[derive(Default)]
struct EnvironmentRead {
    files: Vec<AppFile>,
    problems: Vec<DriftProblem>,
}

/// Reads every app's file in one environment (apps without one there are skipped).
fn read_environment(config: &Config, env: &EnvironmentSpec, repo: OpenedRepo) -> EnvironmentRead {
    let mut read = EnvironmentRead::default();
    let problem = |app: Option<&str>, message: String| DriftProblem {
        app: app.map(str::to_owned),
        environment: env.name.clone(),
        message,
    };
    let (repo, commit) = match repo {
        Ok(opened) => opened,
        Err(message) => {
            read.problems.push(problem(None, message));
            return read;
        }
    };
    let mut paths = Vec::with_capacity(config.apps.len());
    for (index, (app, _)) in config.apps.iter().enumerate() {
        let vars = Vars::new().set("app", Some(&app.name)).set("env", Some(&env.name));
        match template::render(&env.config_repo.path, &vars) {
            Ok(path) => paths.push((index, path)),
            Err(error) => read.problems.push(problem(Some(&app.name), error.to_string())),
        }
    }
    let path_list: Vec<&str> = paths.iter().map(|(_, path)| path.as_str()).collect();
    let contents = match repo.read_files_with_ids(&commit, &path_list) {
        Ok(contents) => contents,
        Err(error) => {
            read.problems.push(problem(None, crate::steps::chain(&error)));
            return read;
        }
    };
    for ((app, path), blob) in paths.into_iter().zip(contents) {
        // An app not deployed to this environment has no file there: nothing to compare.
        if let Some(blob) = blob {
            read.files.push(AppFile { app, path, blob });
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_out_of_tags() {
        assert_eq!(version_of("prod-1.4.2", "{env}-{version}", "web", "prod"), "1.4.2");
        assert_eq!(version_of("web-1.4.2-staging", "{app}-{version}-{env}", "web", "staging"), "1.4.2");
        assert_eq!(version_of("1.4.2", "{version}", "web", "prod"), "1.4.2");
        // A tag that does not follow the template is its own version.
        assert_eq!(version_of("hotfix", "{env}-{version}", "web", "prod"), "hotfix");
        // A template with placeholders drift cannot know keeps the whole tag.
        assert_eq!(version_of("prod-abc1234", "{env}-{sha7}", "web", "prod"), "prod-abc1234");
    }

    #[test]
    fn diffs_are_unified_with_headers() {
        let diff = unified_diff("a: 1\nb: 2\n", "a: 1\nb: 3\n", "prod/x.yaml", "staging/x.yaml");
        assert_eq!(diff, "--- prod/x.yaml\n+++ staging/x.yaml\n@@ -1,2 +1,2 @@\n a: 1\n-b: 2\n+b: 3\n");
    }
}
