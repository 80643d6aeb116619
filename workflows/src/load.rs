//! Loading and validating a configuration directory.
//!
//! Every file is read, every item of every section is deserialized on its own, and every
//! cross-reference is checked, so that one run of `gantry validate` lists all problems with
//! `file:line`. Line numbers come from [`SpanIndex`]: serde reports the path of a bad field,
//! the index turns that path into a position in the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::condition::Condition;
use crate::config::{
    AppSpec, Config, EnvironmentSpec, Origin, PipelineSpec, PreviewSpec, RegistrySpec, TriggerOn, TriggerSpec,
    parse_duration,
};
use crate::dag::{self, DagProblem};
use crate::error::ConfigError;
use crate::plan::REMOVE_PREVIEW_KIND;
use crate::spans::{SpanError, SpanIndex, YamlPath};
use crate::template;

/// What the engine can run, so that validation can check step kinds and their settings.
pub trait StepCatalog {
    /// Names of the step kinds that exist.
    fn kinds(&self) -> Vec<&'static str>;
    /// Problems with one step's `with:` settings, each as (dotted path below `with`, message).
    fn check(&self, kind: &str, with: &serde_json::Value) -> Vec<(String, String)>;
    /// Registries (by name) that one step's `with:` settings refer to, each as (dotted path
    /// below `with`, name); unknown names are reported like every other broken reference.
    fn registry_references(&self, kind: &str, with: &serde_json::Value) -> Vec<(String, String)> {
        let _ = (kind, with);
        Vec::new()
    }
}

const SECTIONS: &[&str] = &["registries", "apps", "environments", "pipelines"];
const PATH_PLACEHOLDERS: &[&str] = &["app", "env"];
const PREVIEW_DIRECTORY_PLACEHOLDERS: &[&str] = &["slug", "app", "env"];

/// Loads and validates every `*.yaml` / `*.yml` file of `dir`.
pub fn load_dir(dir: &Path, catalog: &dyn StepCatalog) -> Result<Config, Vec<ConfigError>> {
    let mut loader = Loader::default();
    let files = match config_files(dir) {
        Ok(files) => files,
        Err(error) => return Err(vec![error]),
    };
    if files.is_empty() {
        return Err(vec![ConfigError::at(dir, None, "no *.yaml or *.yml files in the config directory")]);
    }
    for file in files {
        loader.read_file(&file);
    }
    loader.check(catalog);
    if loader.errors.is_empty() { Ok(loader.config) } else { Err(loader.errors) }
}

/// Every problem in the directory; empty when it is valid.
pub fn validate_dir(dir: &Path, catalog: &dyn StepCatalog) -> Vec<ConfigError> {
    load_dir(dir, catalog).err().unwrap_or_default()
}

fn config_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| ConfigError::at(dir, None, format!("cannot read the config directory: {error}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

/// Where an item was read from: which file (index into `files`) and its path there.
#[derive(Debug, Clone)]
struct Place {
    file: usize,
    path: YamlPath,
}

#[derive(Default)]
struct Loader {
    files: Vec<(PathBuf, SpanIndex)>,
    config: Config,
    places: HashMap<(&'static str, usize), Place>,
    /// Names of items that failed to deserialize: references to them are not reported again.
    broken: std::collections::HashSet<(&'static str, String)>,
    errors: Vec<ConfigError>,
}

impl Loader {
    fn read_file(&mut self, file: &Path) {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) => {
                self.errors.push(ConfigError::at(file, None, format!("cannot read file: {error}")));
                return;
            }
        };
        let index = match SpanIndex::parse(&text) {
            Ok(index) => index,
            Err(error) => {
                let line = match &error {
                    SpanError::Syntax { line, .. } | SpanError::DuplicateKey { line, .. } => *line,
                };
                self.errors.push(ConfigError::at(file, Some(line), error.to_string()));
                return;
            }
        };
        let value: yaml_serde::Value = match yaml_serde::from_str(&text) {
            Ok(value) => value,
            Err(error) => {
                let line = error.location().map(|l| l.line());
                self.errors.push(ConfigError::at(file, line, format!("invalid YAML: {error}")));
                return;
            }
        };
        let file_index = self.files.len();
        self.files.push((file.to_path_buf(), index));
        let mapping = match value {
            yaml_serde::Value::Null => return,
            yaml_serde::Value::Mapping(mapping) => mapping,
            _ => {
                self.error(
                    file_index,
                    &YamlPath::default(),
                    format!("a config file must be a mapping with any of the sections {}", SECTIONS.join(", ")),
                );
                return;
            }
        };
        for (key, value) in mapping {
            let Some(section) = key.as_str().map(str::to_string) else {
                self.error(file_index, &YamlPath::default(), "section names must be strings");
                continue;
            };
            let mut path = YamlPath::default();
            path.push_key(&section);
            let items = match value {
                yaml_serde::Value::Null => continue,
                yaml_serde::Value::Sequence(items) => items,
                _ => {
                    self.error(file_index, &path, format!("section `{section}` must be a list"));
                    continue;
                }
            };
            match section.as_str() {
                "registries" => self.read_items(file_index, &path, items, Section::Registries),
                "apps" => self.read_items(file_index, &path, items, Section::Apps),
                "environments" => self.read_items(file_index, &path, items, Section::Environments),
                "pipelines" => self.read_items(file_index, &path, items, Section::Pipelines),
                other => self.error(
                    file_index,
                    &path,
                    format!("unknown section `{other}` (expected one of {})", SECTIONS.join(", ")),
                ),
            }
        }
    }

    fn read_items(&mut self, file: usize, section_path: &YamlPath, items: Vec<yaml_serde::Value>, section: Section) {
        for (i, item) in items.into_iter().enumerate() {
            let mut path = section_path.clone();
            path.push_index(i);
            let place = Place { file, path: path.clone() };
            let origin = Origin { file: self.files[file].0.clone(), line: self.line(&place) };
            match section {
                Section::Registries => {
                    if let Some(spec) = self.deserialize::<RegistrySpec>("registries", &place, item) {
                        self.places.insert(("registries", self.config.registries.len()), place);
                        self.config.registries.push((spec, origin));
                    }
                }
                Section::Apps => {
                    if let Some(spec) = self.deserialize::<AppSpec>("apps", &place, item) {
                        self.places.insert(("apps", self.config.apps.len()), place);
                        self.config.apps.push((spec, origin));
                    }
                }
                Section::Environments => {
                    if let Some(spec) = self.deserialize::<EnvironmentSpec>("environments", &place, item) {
                        self.places.insert(("environments", self.config.environments.len()), place);
                        self.config.environments.push((spec, origin));
                    }
                }
                Section::Pipelines => {
                    if let Some(spec) = self.deserialize::<PipelineSpec>("pipelines", &place, item) {
                        self.places.insert(("pipelines", self.config.pipelines.len()), place);
                        self.config.pipelines.push((spec, origin));
                    }
                }
            }
        }
    }

    fn deserialize<T: DeserializeOwned>(
        &mut self,
        section: &'static str,
        place: &Place,
        item: yaml_serde::Value,
    ) -> Option<T> {
        let name = item.get("name").and_then(|n| n.as_str()).map(str::to_string);
        match serde_path_to_error::deserialize::<_, T>(item) {
            Ok(value) => Some(value),
            Err(error) => {
                let mut path = place.path.clone();
                for segment in error.path().iter() {
                    match segment {
                        serde_path_to_error::Segment::Seq { index } => path.push_index(*index),
                        serde_path_to_error::Segment::Map { key } => path.push_key(key),
                        serde_path_to_error::Segment::Enum { variant } => path.push_key(variant),
                        serde_path_to_error::Segment::Unknown => {}
                    }
                }
                let field = path.to_string();
                self.error(place.file, &path, format!("{field}: {}", error.into_inner()));
                if let Some(name) = name {
                    self.broken.insert((section, name));
                }
                None
            }
        }
    }

    fn is_broken(&self, section: &'static str, name: &str) -> bool {
        self.broken.contains(&(section, name.to_string()))
    }

    fn line(&self, place: &Place) -> Option<usize> {
        self.files[place.file].1.line_of(&place.path)
    }

    fn error(&mut self, file: usize, path: &YamlPath, message: impl Into<String>) {
        let (name, index) = &self.files[file];
        let line = index.line_of(path);
        self.errors.push(ConfigError::at(name.clone(), line, message));
    }

    /// Reports a problem at `field` (dotted, relative to the item) of item `i` of `section`.
    fn item_error(&mut self, section: &'static str, i: usize, field: &str, message: impl Into<String>) {
        let Some(place) = self.places.get(&(section, i)).cloned() else {
            self.errors.push(ConfigError::general(message));
            return;
        };
        let mut path = place.path.clone();
        if !field.is_empty() {
            if let Ok(relative) = YamlPath::parse(field) {
                path.0.extend(relative.0);
            }
        }
        self.error(place.file, &path, message);
    }

    fn check(&mut self, catalog: &dyn StepCatalog) {
        self.check_unique_names();
        self.check_registries();
        self.check_apps();
        self.check_environments();
        self.check_environment_graph();
        self.check_pipelines(catalog);
        self.config.environments.sort_by_key(|(e, _)| e.order);
    }

    fn check_unique_names(&mut self) {
        let mut problems = Vec::new();
        let sections: [(&'static str, Vec<&str>); 4] = [
            ("registries", self.config.registries.iter().map(|(r, _)| r.name.as_str()).collect()),
            ("apps", self.config.apps.iter().map(|(a, _)| a.name.as_str()).collect()),
            ("environments", self.config.environments.iter().map(|(e, _)| e.name.as_str()).collect()),
            ("pipelines", self.config.pipelines.iter().map(|(p, _)| p.name.as_str()).collect()),
        ];
        for (section, names) in &sections {
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for (i, name) in names.iter().enumerate() {
                if name.trim().is_empty() {
                    problems.push((*section, i, "name", "name must not be empty".to_string()));
                } else if let Some(first) = seen.insert(name, i) {
                    seen.insert(name, first);
                    let first_at = self.describe(section, first);
                    problems.push((
                        *section,
                        i,
                        "name",
                        format!("duplicate name `{name}` (first defined at {first_at})"),
                    ));
                }
            }
        }
        let mut orders: HashMap<u32, usize> = HashMap::new();
        for (i, (env, _)) in self.config.environments.iter().enumerate() {
            if let Some(first) = orders.get(&env.order) {
                let first_name = &self.config.environments[*first].0.name;
                problems.push((
                    "environments",
                    i,
                    "order",
                    format!("order {} is already used by environment `{first_name}`", env.order),
                ));
            } else {
                orders.insert(env.order, i);
            }
        }
        for (section, i, field, message) in problems {
            self.item_error(section, i, field, message);
        }
    }

    fn describe(&self, section: &'static str, i: usize) -> String {
        match self.places.get(&(section, i)) {
            Some(place) => {
                let file = self.files[place.file].0.display();
                match self.line(place) {
                    Some(line) => format!("{file}:{line}"),
                    None => file.to_string(),
                }
            }
            None => section.to_string(),
        }
    }

    fn check_registries(&mut self) {
        let mut problems = Vec::new();
        for (i, (registry, _)) in self.config.registries.iter().enumerate() {
            for (field, message) in check_registry(registry) {
                problems.push((i, field, message));
            }
        }
        for (i, field, message) in problems {
            self.item_error("registries", i, &field, message);
        }
    }

    fn check_apps(&mut self) {
        let mut problems = Vec::new();
        for (i, (app, _)) in self.config.apps.iter().enumerate() {
            if self.config.registry(&app.registry).is_none() && !self.is_broken("registries", &app.registry) {
                problems.push((
                    i,
                    "registry",
                    format!(
                        "unknown registry `{}`{}",
                        app.registry,
                        known(self.config.registries.iter().map(|(r, _)| &r.name))
                    ),
                ));
            }
            if self.config.pipeline(&app.pipeline).is_none() && !self.is_broken("pipelines", &app.pipeline) {
                problems.push((
                    i,
                    "pipeline",
                    format!(
                        "unknown pipeline `{}`{}",
                        app.pipeline,
                        known(self.config.pipelines.iter().map(|(p, _)| &p.name))
                    ),
                ));
            }
            if app.source_repo.split('/').filter(|s| !s.is_empty()).count() < 2 {
                problems.push((
                    i,
                    "source_repo",
                    format!("source_repo `{}` must be a full path such as `org/app`", app.source_repo),
                ));
            }
            if app.repository.trim().is_empty() {
                problems.push((i, "repository", "repository must not be empty".to_string()));
            }
        }
        for (i, field, message) in problems {
            self.item_error("apps", i, field, message);
        }
    }

    fn check_environments(&mut self) {
        let mut problems = Vec::new();
        for (i, (env, _)) in self.config.environments.iter().enumerate() {
            if let Err(error) = template::check(&env.tag_template) {
                problems.push((i, "tag_template", error.to_string()));
            }
            if let Err(message) = check_restricted_template(&env.config_repo.path, PATH_PLACEHOLDERS) {
                problems.push((i, "config_repo.path", message));
            }
            if env.config_repo.url.trim().is_empty() {
                problems.push((i, "config_repo.url", "config_repo.url must not be empty".to_string()));
            }
            if let Some(yaml_path) = &env.config_repo.yaml_path {
                if let Err(error) = YamlPath::parse(yaml_path) {
                    problems.push((i, "config_repo.yaml_path", format!("invalid yaml_path `{yaml_path}`: {error}")));
                }
            }
            if let Some(previews) = &env.previews {
                for (field, message) in preview_problems(previews) {
                    problems.push((i, field, message));
                }
            }
        }
        for (i, field, message) in problems {
            self.item_error("environments", i, field, message);
        }
        self.check_config_repos();
    }

    /// Credentials, forge settings, and agreement between environments sharing a repository.
    fn check_config_repos(&mut self) {
        let mut problems = Vec::new();
        for (i, (env, _)) in self.config.environments.iter().enumerate() {
            for (field, message) in crate::config_repo::check(&env.config_repo) {
                problems.push((i, field, message));
            }
            let shared = self.config.environments[..i].iter().position(|(other, _)| {
                other.config_repo.url == env.config_repo.url
                    && !crate::config_repo::same_access(&other.config_repo, &env.config_repo)
            });
            if let Some(first) = shared {
                problems.push((
                    i,
                    "config_repo.url".to_owned(),
                    format!(
                        "repository `{}` is also the config repo of environment `{}` (at {}) with other auth or forge \
                         settings; give both the same",
                        env.config_repo.url,
                        self.config.environments[first].0.name,
                        self.describe("environments", first)
                    ),
                ));
            }
        }
        for (i, field, message) in problems {
            self.item_error("environments", i, &field, message);
        }
    }

    fn check_environment_graph(&mut self) {
        let mut problems = Vec::new();
        let names: Vec<&str> = self.config.environments.iter().map(|(e, _)| e.name.as_str()).collect();
        for (i, (env, _)) in self.config.environments.iter().enumerate() {
            for (a, after) in env.after.iter().enumerate() {
                if after == &env.name {
                    problems.push((
                        i,
                        format!("after[{a}]"),
                        format!("environment `{}` cannot come after itself", env.name),
                    ));
                } else if !names.contains(&after.as_str()) && !self.is_broken("environments", after) {
                    problems.push((
                        i,
                        format!("after[{a}]"),
                        format!(
                            "unknown environment `{after}`{}",
                            known(self.config.environments.iter().map(|(e, _)| &e.name))
                        ),
                    ));
                }
            }
        }
        // Cycles: follow `after` edges; a cycle means no environment on it can ever start.
        let mut graph = petgraph::graph::DiGraph::<usize, ()>::new();
        let nodes: Vec<_> = (0..names.len()).map(|i| graph.add_node(i)).collect();
        for (i, (env, _)) in self.config.environments.iter().enumerate() {
            for after in &env.after {
                if let Some(j) = names.iter().position(|n| n == after) {
                    if j != i {
                        graph.update_edge(nodes[j], nodes[i], ());
                    }
                }
            }
        }
        for component in petgraph::algo::tarjan_scc(&graph) {
            if component.len() > 1 {
                let mut members: Vec<usize> = component.iter().map(|n| graph[*n]).collect();
                members.sort();
                let cycle: Vec<&str> = members.iter().map(|i| names[*i]).collect();
                problems.push((
                    members[0],
                    "after".into(),
                    format!("environments form a cycle: {}", cycle.join(" → ")),
                ));
            }
        }
        // Reachability: from every trigger's environment along `after` edges.
        let entries: Vec<usize> = self
            .config
            .pipelines
            .iter()
            .flat_map(|(p, _)| p.triggers.iter())
            .filter_map(|t| names.iter().position(|n| *n == t.environment))
            .collect();
        let mut reachable = vec![false; names.len()];
        let mut stack = entries;
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut reachable[i], true) {
                continue;
            }
            stack.extend(graph.neighbors(nodes[i]).map(|n| graph[n]));
        }
        // A trigger into a misspelled environment is reported already; "unreachable" would only
        // repeat it in other words.
        let unknown_entry = self
            .config
            .pipelines
            .iter()
            .flat_map(|(p, _)| p.triggers.iter())
            .any(|t| !names.contains(&t.environment.as_str()));
        if !self.config.pipelines.is_empty() && !unknown_entry {
            for (i, reached) in reachable.iter().enumerate() {
                if !reached {
                    problems.push((i, "name".into(), format!(
                        "environment `{}` is unreachable: no trigger enters it and it is not `after` an environment that is reached",
                        names[i]
                    )));
                }
            }
        }
        for (i, field, message) in problems {
            self.item_error("environments", i, &field, message);
        }
    }

    fn check_pipelines(&mut self, catalog: &dyn StepCatalog) {
        let kinds = catalog.kinds();
        let mut problems = Vec::new();
        for (p, (pipeline, _)) in self.config.pipelines.iter().enumerate() {
            if pipeline.steps.is_empty() {
                problems.push((p, "steps".to_string(), "a pipeline needs at least one step".to_string()));
            }
            for (t, trigger) in pipeline.triggers.iter().enumerate() {
                if let Err(error) = globset::Glob::new(&trigger.pattern) {
                    problems.push((
                        p,
                        format!("triggers[{t}].pattern"),
                        format!("invalid pattern `{}`: {error}", trigger.pattern),
                    ));
                }
                if self.config.environment(&trigger.environment).is_none()
                    && !self.is_broken("environments", &trigger.environment)
                {
                    problems.push((
                        p,
                        format!("triggers[{t}].environment"),
                        format!(
                            "unknown environment `{}`{}",
                            trigger.environment,
                            known(self.config.environments.iter().map(|(e, _)| &e.name))
                        ),
                    ));
                }
                for (field, text) in
                    [("artifact_tag", Some(&trigger.artifact_tag)), ("version", trigger.version.as_ref())]
                {
                    if let Some(text) = text {
                        if let Err(error) = template::check(text) {
                            problems.push((p, format!("triggers[{t}].{field}"), error.to_string()));
                        }
                    }
                }
                if let Err(message) = parse_duration(&trigger.artifact_wait) {
                    problems.push((p, format!("triggers[{t}].artifact_wait"), message));
                }
                for (field, message) in self.trigger_filter_problems(trigger) {
                    problems.push((p, format!("triggers[{t}].{field}"), message));
                }
            }
            for (s, step) in pipeline.steps.iter().enumerate() {
                if let Some(condition) = &step.condition {
                    match Condition::parse(condition) {
                        Ok(parsed) => {
                            for name in parsed.step_names() {
                                if !pipeline.steps.iter().any(|other| other.name == name) {
                                    problems.push((
                                        p,
                                        format!("steps[{s}].if"),
                                        format!("condition of step `{}` names unknown step `{name}`", step.name),
                                    ));
                                }
                            }
                        }
                        Err(message) => problems.push((p, format!("steps[{s}].if"), message)),
                    }
                }
                if let Some(retry) = &step.retry {
                    if retry.attempts == 0 {
                        problems.push((
                            p,
                            format!("steps[{s}].retry.attempts"),
                            "retry.attempts counts the first attempt too: it must be at least 1".into(),
                        ));
                    }
                    if let Err(message) = parse_duration(&retry.backoff) {
                        problems.push((p, format!("steps[{s}].retry.backoff"), message));
                    }
                }
                if let Some(timeout) = &step.timeout {
                    if let Err(message) = parse_duration(timeout) {
                        problems.push((p, format!("steps[{s}].timeout"), message));
                    }
                }
                for (e, env) in step.environments.iter().enumerate() {
                    if self.config.environment(env).is_none() && !self.is_broken("environments", env) {
                        problems.push((
                            p,
                            format!("steps[{s}].environments[{e}]"),
                            format!("unknown environment `{env}`"),
                        ));
                    }
                }
                if !kinds.contains(&step.kind.as_str()) {
                    let mut sorted = kinds.clone();
                    sorted.sort();
                    problems.push((
                        p,
                        format!("steps[{s}].kind"),
                        format!("unknown step kind `{}` (known: {})", step.kind, sorted.join(", ")),
                    ));
                    continue;
                }
                let with = step.with.clone().map(serde_json::Value::Object).unwrap_or(serde_json::Value::Null);
                for (field, message) in catalog.check(&step.kind, &with) {
                    let at =
                        if field.is_empty() { format!("steps[{s}].with") } else { format!("steps[{s}].with.{field}") };
                    problems.push((p, at, format!("step `{}`: {message}", step.name)));
                }
                for (field, name) in catalog.registry_references(&step.kind, &with) {
                    if self.config.registry(&name).is_none() && !self.is_broken("registries", &name) {
                        problems.push((
                            p,
                            format!("steps[{s}].with.{field}"),
                            format!(
                                "step `{}`: unknown registry `{name}`{}",
                                step.name,
                                known(self.config.registries.iter().map(|(r, _)| &r.name))
                            ),
                        ));
                    }
                }
            }
            if let Err(dag_problems) = dag::compile(&pipeline.steps) {
                for problem in dag_problems {
                    let (field, message) = match problem {
                        DagProblem::DuplicateName { step, name } => {
                            (format!("steps[{step}].name"), format!("duplicate step name `{name}`"))
                        }
                        DagProblem::UnknownNeed { step, need, name } => (
                            format!("steps[{step}].needs[{need}]"),
                            format!("step `{}` needs unknown step `{name}`", pipeline.steps[step].name),
                        ),
                        DagProblem::SelfNeed { step, need } => (
                            format!("steps[{step}].needs[{need}]"),
                            format!("step `{}` needs itself", pipeline.steps[step].name),
                        ),
                        DagProblem::Cycle { step, names } => {
                            (format!("steps[{step}].needs"), format!("steps form a cycle: {}", names.join(" → ")))
                        }
                    };
                    problems.push((p, field, message));
                }
            }
        }
        let previews_used = self.config.environments.iter().any(|(e, _)| e.previews.is_some())
            || self.config.pipelines.iter().flat_map(|(p, _)| &p.triggers).any(|t| t.preview);
        if previews_used && !kinds.contains(&REMOVE_PREVIEW_KIND) {
            self.errors.push(ConfigError::general(format!(
                "preview environments need the `{REMOVE_PREVIEW_KIND}` step kind, which this build lacks"
            )));
        }
        for (p, field, message) in problems {
            self.item_error("pipelines", p, &field, message);
        }
    }

    /// Problems with a trigger's filters, preview and pipeline, as (field below the trigger, message).
    fn trigger_filter_problems(&self, trigger: &TriggerSpec) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (field, patterns) in [("paths", &trigger.paths), ("ignore_paths", &trigger.ignore_paths)] {
            if !patterns.is_empty() && trigger.on == TriggerOn::Tag {
                problems.push((
                    field.to_string(),
                    format!("`{field}` filters branch pushes; a tag lists no changed files"),
                ));
            }
            for (i, pattern) in patterns.iter().enumerate() {
                if pattern.trim().is_empty() {
                    problems.push((format!("{field}[{i}]"), "an empty path pattern matches nothing".to_string()));
                } else if let Err(error) = globset::Glob::new(pattern) {
                    problems.push((format!("{field}[{i}]"), format!("invalid pattern `{pattern}`: {error}")));
                } else if pattern.starts_with('/') {
                    problems.push((
                        format!("{field}[{i}]"),
                        format!("path pattern `{pattern}` must be relative to the repository root (no leading `/`)"),
                    ));
                }
            }
        }
        for (field, names) in [("actors", &trigger.actors), ("ignore_actors", &trigger.ignore_actors)] {
            for (i, name) in names.iter().enumerate() {
                if name.trim().is_empty() {
                    problems.push((format!("{field}[{i}]"), "an empty actor name matches nobody".to_string()));
                }
            }
        }
        if let Some(pipeline) = &trigger.pipeline
            && self.config.pipeline(pipeline).is_none()
            && !self.is_broken("pipelines", pipeline)
        {
            problems.push((
                "pipeline".to_string(),
                format!("unknown pipeline `{pipeline}`{}", known(self.config.pipelines.iter().map(|(p, _)| &p.name))),
            ));
        }
        if trigger.preview {
            if trigger.on != TriggerOn::Branch {
                problems.push((
                    "preview".to_string(),
                    "previews follow branches: `preview: true` needs `on: branch`".to_string(),
                ));
            }
            if let Some(env) = self.config.environment(&trigger.environment)
                && env.previews.is_none()
            {
                problems.push((
                    "preview".to_string(),
                    format!("environment `{}` has no `previews` section saying where its previews live", env.name),
                ));
            }
        }
        problems
    }
}

/// Problems with an environment's `previews`, as (field below the environment, message).
fn preview_problems(previews: &PreviewSpec) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    match check_restricted_template(&previews.directory, PREVIEW_DIRECTORY_PLACEHOLDERS) {
        Err(message) => problems.push(("previews.directory", message)),
        Ok(()) => {
            let uses_slug = template::placeholders(&previews.directory).is_ok_and(|names| names.contains(&"slug"));
            if !uses_slug {
                problems.push((
                    "previews.directory",
                    format!(
                        "previews.directory `{}` must use {{slug}}, or every branch would share one preview",
                        previews.directory
                    ),
                ));
            }
        }
    }
    if let Err(message) = check_repo_path(&previews.directory) {
        problems.push(("previews.directory", message));
    }
    if let Some(template_dir) = &previews.template
        && let Err(message) =
            check_restricted_template(template_dir, PATH_PLACEHOLDERS).and_then(|()| check_repo_path(template_dir))
    {
        problems.push(("previews.template", message));
    }
    if let Err(message) =
        check_restricted_template(&previews.file, PATH_PLACEHOLDERS).and_then(|()| check_repo_path(&previews.file))
    {
        problems.push(("previews.file", message));
    }
    if let Some(yaml_path) = &previews.yaml_path
        && let Err(error) = YamlPath::parse(yaml_path)
    {
        problems.push(("previews.yaml_path", format!("invalid yaml_path `{yaml_path}`: {error}")));
    }
    problems
}

/// Checks a path inside a config repository: relative, and without `.` or `..` components.
fn check_repo_path(path: &str) -> Result<(), String> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("the path is empty".to_string());
    }
    if trimmed.starts_with('/') {
        return Err(format!("`{path}` must be relative to the repository root"));
    }
    if trimmed.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(format!("`{path}` must not have empty, `.` or `..` components"));
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Section {
    Registries,
    Apps,
    Environments,
    Pipelines,
}

fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() { String::new() } else { format!(" (known: {})", names.join(", ")) }
}

fn check_restricted_template(text: &str, allowed: &[&str]) -> Result<(), String> {
    let names = template::placeholders(text).map_err(|e| e.to_string())?;
    match names.into_iter().find(|n| !allowed.contains(n)) {
        Some(name) => Err(format!(
            "unknown placeholder {{{name}}} in `{text}` (allowed here: {})",
            allowed.iter().map(|a| format!("{{{a}}}")).collect::<Vec<_>>().join(", ")
        )),
        None => Ok(()),
    }
}

/// Checks the form of a registry URL (see [`RegistrySpec::url`]).
pub fn check_registry_url(url: &str) -> Result<(), String> {
    let shape = || {
        format!(
            "registry url `{url}` must be oci-layout:<dir>, http(s)://host[:port][/namespace], \
             host[:port][/namespace] or ecr://<account>.dkr.ecr.<region>.amazonaws.com"
        )
    };
    if let Some(dir) = url.strip_prefix("oci-layout:") {
        return if dir.trim().is_empty() { Err("oci-layout: needs a directory".into()) } else { Ok(()) };
    }
    if let Some(rest) = url.strip_prefix("ecr://") {
        let host = rest.split('?').next().unwrap_or_default().trim_end_matches('/');
        return if host.contains(".dkr.ecr.") && !host.contains(['/', ' ']) { Ok(()) } else { Err(shape()) };
    }
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
    if rest.contains("://") {
        return Err(shape());
    }
    let rest = rest.trim_end_matches('/');
    let (host, namespace) = rest.split_once('/').unwrap_or((rest, ""));
    let host_ok =
        !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !host_ok {
        return Err(shape());
    }
    if !(namespace.is_empty() || namespace.split('/').all(is_repository_component)) {
        return Err(format!("{}: the namespace `{namespace}` is not a repository path", shape()));
    }
    Ok(())
}

/// Whether `text` is one component of an OCI repository name: lowercase letters and digits,
/// joined by `.`, `_`, `__` or runs of `-`.
fn is_repository_component(text: &str) -> bool {
    let bytes = text.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !(bytes.first().is_some_and(alnum) && bytes.last().is_some_and(alnum)) {
        return false;
    }
    let mut separators = text.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()).filter(|s| !s.is_empty());
    separators.all(|separator| matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-'))
}

/// The host of a distribution registry URL (`http://host:port/ns` → `host:port`), or None for
/// image layouts and ECR.
fn registry_host(url: &str) -> Option<&str> {
    if url.starts_with("oci-layout:") || url.starts_with("ecr://") {
        return None;
    }
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
    rest.split('/').next().filter(|host| !host.is_empty())
}

/// Whether `host` (with or without a port) is this machine, which is reached over plain HTTP
/// without `insecure` (as docker does).
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1")
}

/// Every problem of one registry entry, as (field, message).
fn check_registry(registry: &RegistrySpec) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let url = registry.url.trim();
    if let Err(reason) = check_registry_url(url) {
        problems.push(("url".to_owned(), reason));
    }
    let is_layout = url.starts_with("oci-layout:");
    if registry.insecure {
        if is_layout {
            problems.push(("insecure".to_owned(), "`insecure` applies to registries reached over the network".into()));
        } else if url.starts_with("https://") {
            problems.push((
                "insecure".to_owned(),
                format!("`insecure: true` asks for plain HTTP, but the url `{url}` says https://"),
            ));
        }
    } else if let (true, Some(host)) = (url.starts_with("http://"), registry_host(url))
        && !is_loopback(host)
    {
        problems.push((
            "url".to_owned(),
            format!(
                "plain HTTP to `{host}` needs `insecure: true` (only localhost, 127.0.0.1 and [::1] are \
                 reached over plain HTTP without it)"
            ),
        ));
    }
    if let Some(credentials) = &registry.credentials {
        if is_layout {
            problems.push(("credentials".to_owned(), "an oci-layout registry takes no credentials".into()));
        }
        if credentials.username.trim().is_empty() {
            problems.push(("credentials.username".to_owned(), "the user name must not be empty".into()));
        }
        match (&credentials.password_env, &credentials.password_file) {
            (None, None) => problems.push((
                "credentials".to_owned(),
                "say where the password or token comes from: `password_env` or `password_file`".into(),
            )),
            (Some(_), Some(_)) => problems.push((
                "credentials.password_file".to_owned(),
                "give either `password_env` or `password_file`, not both".into(),
            )),
            (Some(variable), None) if variable.trim().is_empty() || variable.contains(['=', '\0']) => problems.push((
                "credentials.password_env".to_owned(),
                format!("`{variable}` is not an environment variable name"),
            )),
            (None, Some(file)) if file.as_os_str().is_empty() => {
                problems.push(("credentials.password_file".to_owned(), "the file name is empty".into()))
            }
            _ => {}
        }
    }
    for (j, pattern) in registry.immutable_tags.iter().enumerate() {
        let probe: String = pattern.chars().map(|c| if c == '*' || c == '?' { 'x' } else { c }).collect();
        if pattern.trim().is_empty() || pattern.contains("***") || !probe.split('/').all(is_repository_component) {
            problems.push((
                format!("immutable_tags[{j}]"),
                format!(
                    "`{pattern}` is not a repository name or glob (lowercase path components; `*` within a \
                     component, `**` across them)"
                ),
            ));
        }
    }
    problems
}
