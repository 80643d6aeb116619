//! What the engine hands to steps: registries, environment repositories, the forge and the
//! templates. Steps get nothing else — no store handle, no global state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::forge::Forge;
use crate::git::{EnvRepo, GitError, Signature};
use crate::registry::{self, Registry, RegistryAuth, RegistryError};
use crate::templates::Templates;

/// Shared capabilities of one engine instance.
pub struct Capabilities {
    data_dir: PathBuf,
    config_dir: Option<PathBuf>,
    git_cache: PathBuf,
    registries: Mutex<HashMap<String, Arc<dyn Registry>>>,
    forge: Arc<dyn Forge>,
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
            forge,
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

    /// Where relative paths in step settings resolve: the config directory, or the data
    /// directory when the engine was started without one (`gantry step`).
    pub fn config_dir(&self) -> &Path {
        self.config_dir.as_deref().unwrap_or(&self.data_dir)
    }

    /// The data directory (database, mirrors, evidence).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The registry at `url` (opened once, then shared).
    pub fn registry(&self, url: &str) -> Result<Arc<dyn Registry>, RegistryError> {
        let mut registries = self.registries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(registry) = registries.get(url) {
            return Ok(registry.clone());
        }
        let opened = registry::open(url, &self.data_dir, RegistryAuth::Anonymous)?;
        registries.insert(url.to_string(), opened.clone());
        Ok(opened)
    }

    /// A config repository URL with relative paths resolved against the data directory.
    pub fn repo_url(&self, url: &str) -> String {
        resolve_repo_url(&self.data_dir, url)
    }

    /// Opens (and fetches) the warm mirror of an environment repository. Blocking: call it
    /// from `spawn_blocking`.
    pub fn env_repo(&self, url: &str) -> Result<EnvRepo, GitError> {
        EnvRepo::open(&self.git_cache, &self.repo_url(url))
    }

    /// The forge that reviews changes.
    pub fn forge(&self) -> &Arc<dyn Forge> {
        &self.forge
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

/// Resolves a configured repository URL: URLs with a scheme and absolute paths stay as they
/// are, relative paths are taken from `data_dir`.
pub fn resolve_repo_url(data_dir: &Path, url: &str) -> String {
    if url.contains("://") || Path::new(url).is_absolute() {
        url.to_string()
    } else {
        data_dir.join(url).display().to_string()
    }
}
