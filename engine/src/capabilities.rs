//! What the engine hands to steps: registries, environment repositories, the forge, the
//! templates, and a read-only view of earlier promotions. Steps get nothing else — no store
//! handle, no global state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gantry_workflows::config::{ForgeKind, RegistrySpec};

use crate::forge::{Forge, ForgeError};
use crate::git::{EnvRepo, GitError, Signature};
use crate::history::PromotionHistory;
use crate::registry::{self, Registry, RegistryError, RegistryOptions};
use crate::repos::RepoCatalog;
use crate::templates::Templates;

/// Shared capabilities of one engine instance.
pub struct Capabilities {
    data_dir: PathBuf,
    config_dir: Option<PathBuf>,
    git_cache: PathBuf,
    registries: Mutex<HashMap<String, Arc<dyn Registry>>>,
    /// The configured registries (`registries:`): credentials, plain HTTP, immutable tags.
    registry_specs: Vec<RegistrySpec>,
    /// What was promoted before, for steps that look back (retention).
    history: Option<Arc<dyn PromotionHistory>>,
    forge: Arc<dyn Forge>,
    repos: Arc<RepoCatalog>,
    /// Forge clients opened from the repositories' settings, by repository URL.
    forges: Mutex<HashMap<String, Arc<dyn Forge>>>,
    committer: Signature,
    templates: Templates,
    status_url: Option<String>,
}

impl Capabilities {
    /// Capabilities rooted at `data_dir` (relative registry and repository paths resolve there).
    pub fn new(data_dir: &Path, forge: Arc<dyn Forge>, status_url: Option<String>) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            config_dir: None,
            git_cache: data_dir.join("mirrors"),
            registries: Mutex::new(HashMap::new()),
            registry_specs: Vec::new(),
            history: None,
            forge,
            repos: Arc::new(RepoCatalog::empty(data_dir)),
            forges: Mutex::new(HashMap::new()),
            committer: Signature { name: "gantry".into(), email: "gantry@localhost".into() },
            templates: Templates::builtin(),
            status_url,
        }
    }

    /// The same capabilities, with relative paths in step settings (policies, reports)
    /// resolving against the config directory `dir`.
    pub fn with_config_dir(mut self, dir: &Path) -> Self {
        self.config_dir = Some(dir.to_path_buf());
        self
    }

    /// The same capabilities, reaching and reviewing env repos as `repos` says (credentials,
    /// forge and its settings per repository).
    pub fn with_repos(mut self, repos: Arc<RepoCatalog>) -> Self {
        self.repos = repos;
        self
    }

    /// The same capabilities, opening the registries of `specs` with their settings
    /// (credentials, `insecure`, `immutable_tags`) rather than anonymously with defaults.
    pub fn with_registries(mut self, specs: &[RegistrySpec]) -> Self {
        self.registry_specs = specs.to_vec();
        self
    }

    /// The same capabilities, with the promotion history steps such as `prune-tags` read.
    pub fn with_history(mut self, history: Arc<dyn PromotionHistory>) -> Self {
        self.history = Some(history);
        self
    }

    /// The promotion history, when the engine runs with a store.
    pub fn history(&self) -> Option<&Arc<dyn PromotionHistory>> {
        self.history.as_ref()
    }

    /// Where relative paths in step settings resolve: the config directory, or the data
    /// directory when the engine was started without one (`gantry step`).
    pub fn config_dir(&self) -> &Path {
        self.config_dir.as_deref().unwrap_or(&self.data_dir)
    }

    /// The data directory (database, mirrors, evidence).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The registry at `url` (opened once, then shared), with the settings of the configured
    /// registry of that URL, or anonymously with defaults when none is configured.
    pub fn registry(&self, url: &str) -> Result<Arc<dyn Registry>, RegistryError> {
        let mut registries = self.registries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(registry) = registries.get(url) {
            return Ok(registry.clone());
        }
        let options = match self.registry_specs.iter().find(|spec| spec.url == url) {
            Some(spec) => registry::settings::options_from_spec(spec, self.config_dir())?,
            None => RegistryOptions::default(),
        };
        let opened = registry::open_with(url, &self.data_dir, &options)?;
        registries.insert(url.to_string(), opened.clone());
        Ok(opened)
    }

    /// The URL of the configured registry `name`, if there is one.
    pub fn registry_url(&self, name: &str) -> Option<&str> {
        self.registry_specs.iter().find(|spec| spec.name == name).map(|spec| spec.url.as_str())
    }

    /// A config repository URL with relative paths resolved against the data directory.
    pub fn repo_url(&self, url: &str) -> String {
        resolve_repo_url(&self.data_dir, url)
    }

    /// Opens (and fetches) the warm mirror of an environment repository. Blocking: call it
    /// from `spawn_blocking`.
    pub fn env_repo(&self, url: &str) -> Result<EnvRepo, GitError> {
        self.repos.open(&self.git_cache, url)
    }

    /// The engine's own (local) forge.
    pub fn forge(&self) -> &Arc<dyn Forge> {
        &self.forge
    }

    /// The forge that reviews changes to the repository at `url`, and the name it knows the
    /// repository by: the one its settings choose, else the local forge when `kind` (from the
    /// run's plan) is `local`. Clients are opened once per repository. Must be called inside a
    /// Tokio runtime.
    ///
    /// # Errors
    /// [`ForgeError::Setup`] when the forge's secrets cannot be read, or when the plan names a
    /// remote forge for a repository this engine has no settings for.
    pub fn forge_for(&self, url: &str, kind: ForgeKind) -> Result<ForgeHandle, ForgeError> {
        let resolved = self.repo_url(url);
        let Some(settings) = self.repos.settings(url) else {
            return match kind {
                ForgeKind::Local => Ok(ForgeHandle { forge: self.forge.clone(), repo: resolved }),
                other => Err(ForgeError::Setup {
                    forge: other.as_str(),
                    reason: format!(
                        "no {} settings for config repo {resolved}: the environment's config_repo needs a `{}:` \
                         section, and gantry must run with that configuration",
                        other.as_str(),
                        other.as_str()
                    ),
                }),
            };
        };
        let repo = settings.forge.repository(&resolved);
        let mut forges = self.forges.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(forge) = forges.get(&resolved) {
            return Ok(ForgeHandle { forge: forge.clone(), repo });
        }
        let forge = settings.forge.open()?.unwrap_or_else(|| self.forge.clone());
        forges.insert(resolved, forge.clone());
        Ok(ForgeHandle { forge, repo })
    }

    /// Identity of gantry's commits.
    pub fn committer(&self) -> &Signature {
        &self.committer
    }

    /// PR and message templates.
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// Link to a run on the status page, when the server's address is known.
    pub fn run_url(&self, run_id: &str) -> Option<String> {
        self.status_url.as_ref().map(|base| format!("{}/runs/{run_id}", base.trim_end_matches('/')))
    }
}

/// A forge and the name it knows one repository by.
#[derive(Clone)]
pub struct ForgeHandle {
    /// The forge.
    pub forge: Arc<dyn Forge>,
    /// The repository as the forge's calls take it (`owner/name`, a project path, or the URL).
    pub repo: String,
}

/// Resolves a configured repository URL: URLs with a scheme and absolute paths stay as they
/// are, relative paths are taken from `data_dir`.
pub fn resolve_repo_url(data_dir: &Path, url: &str) -> String {
    if url.contains("://") || Path::new(url).is_absolute() {
        url.to_string()
    } else {
        data_dir.join(url).display().to_string()
    }
}
