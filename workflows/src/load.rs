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
use crate::config::{AppSpec, Config, EnvironmentSpec, Origin, PipelineSpec, RegistrySpec, parse_duration};
use crate::dag::{self, DagProblem};
use crate::error::ConfigError;
use crate::spans::{SpanError, SpanIndex, YamlPath};
use crate::template;

/// What the engine can run, so that validation can check step kinds and their settings.
pub trait StepCatalog {
    /// Names of the step kinds that exist.
    fn kinds(&self) -> Vec<&'static str>;
    /// Problems with one step's `with:` settings, each as (dotted path below `with`, message).
    fn check(&self, kind: &str, with: &serde_json::Value) -> Vec<(String, String)>;
}

const SECTIONS: &[&str] = &["registries", "apps", "environments", "pipelines"];
const PATH_PLACEHOLDERS: &[&str] = &["app", "env"];

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
            if let Err(reason) = check_registry_url(&registry.url) {
                problems.push((i, reason));
            }
        }
        for (i, message) in problems {
            self.item_error("registries", i, "url", message);
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
        }
        for (i, field, message) in problems {
            self.item_error("environments", i, field, message);
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
        for (p, field, message) in problems {
            self.item_error("pipelines", p, &field, message);
        }
    }
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
    if let Some(dir) = url.strip_prefix("oci-layout:") {
        return if dir.trim().is_empty() { Err("oci-layout: needs a directory".into()) } else { Ok(()) };
    }
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(format!("registry url `{url}` must be oci-layout:<dir>, http(s)://host[:port] or host[:port]"));
    }
    Ok(())
}
