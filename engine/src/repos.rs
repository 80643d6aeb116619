//! The environment config repositories of a configuration: how each is reached (its
//! credentials) and where its changes are reviewed (its forge and the forge's settings), by
//! repository URL.
//!
//! Built once from the validated configuration ([`RepoCatalog::from_config`]) and shared by
//! the capabilities steps get, the local forge (which merges by pushing) and drift. Secrets
//! stay where the configuration names them (environment variables, files) and are read when
//! used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gantry_workflows::Config;
use gantry_workflows::config::{ConfigRepoSpec, ForgeKind, HostKeyCheckingSpec, RepoAuthSpec};

use crate::capabilities::resolve_repo_url;
use crate::forge::{Forge, ForgeError, GitHubAuth, GitHubForge, GitLabForge};
use crate::git::{EnvRepo, GitError, HostKeyChecking, RemoteAuth, SecretSource};

/// The GitHub REST API used when none is configured.
pub const GITHUB_API: &str = "https://api.github.com";
/// The GitLab instance used when none is configured.
pub const GITLAB_URL: &str = "https://gitlab.com";

/// How gantry proves who it is to GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitHubCredentials {
    /// A personal or fine-grained access token.
    Token(SecretSource),
    /// A GitHub App installation.
    App {
        /// The app's id.
        app_id: u64,
        /// The installation's id.
        installation_id: u64,
        /// The app's RSA private key (PEM).
        private_key_file: PathBuf,
    },
}

/// Where a repository's changes are reviewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgeSettings {
    /// gantry tracks the change request itself and merges by pushing.
    Local,
    /// Pull requests on GitHub.
    GitHub {
        /// REST API base URL.
        api_url: String,
        /// `owner/name`, when it cannot (or should not) be read from the repository URL.
        repository: Option<String>,
        /// Token or app.
        credentials: GitHubCredentials,
    },
    /// Merge requests on GitLab.
    GitLab {
        /// Instance URL.
        url: String,
        /// Project path, when it cannot (or should not) be read from the repository URL.
        project: Option<String>,
        /// Access token.
        token: SecretSource,
    },
}

impl ForgeSettings {
    /// `local`, `github` or `gitlab`.
    pub fn name(&self) -> &'static str {
        match self {
            ForgeSettings::Local => "local",
            ForgeSettings::GitHub { .. } => "github",
            ForgeSettings::GitLab { .. } => "gitlab",
        }
    }

    /// A client for this forge, reading its secrets now; `None` for the local forge, which
    /// the engine holds already. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`ForgeError::Setup`] naming the secret that could not be read or the setting that is
    /// wrong.
    pub fn open(&self) -> Result<Option<Arc<dyn Forge>>, ForgeError> {
        let setup = |forge: &'static str, reason: String| ForgeError::Setup { forge, reason };
        match self {
            ForgeSettings::Local => Ok(None),
            ForgeSettings::GitHub { api_url, credentials, .. } => {
                let auth = match credentials {
                    GitHubCredentials::Token(source) => GitHubAuth::Token(
                        source.read().map_err(|reason| setup("github", format!("read the token: {reason}")))?,
                    ),
                    GitHubCredentials::App { app_id, installation_id, private_key_file } => {
                        let private_key_pem = std::fs::read(private_key_file).map_err(|error| {
                            setup(
                                "github",
                                format!("read the app's private key {}: {error}", private_key_file.display()),
                            )
                        })?;
                        GitHubAuth::App { app_id: *app_id, private_key_pem, installation_id: *installation_id }
                    }
                };
                Ok(Some(Arc::new(GitHubForge::new(api_url, auth)?)))
            }
            ForgeSettings::GitLab { url, token, .. } => {
                let token = token.read().map_err(|reason| setup("gitlab", format!("read the token: {reason}")))?;
                Ok(Some(Arc::new(GitLabForge::new(url, &token)?)))
            }
        }
    }

    /// How the forge names the repository at `url`: the configured repository or project, else
    /// the URL itself (the forges read `owner/name` out of it).
    pub fn repository(&self, url: &str) -> String {
        match self {
            ForgeSettings::GitHub { repository: Some(repository), .. } => repository.clone(),
            ForgeSettings::GitLab { project: Some(project), .. } => project.clone(),
            _ => url.to_owned(),
        }
    }
}

/// One repository's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSettings {
    /// Credentials for fetch and push.
    pub auth: RemoteAuth,
    /// Where its changes are reviewed.
    pub forge: ForgeSettings,
}

impl RepoSettings {
    /// The settings `spec` describes; relative file paths resolve against `base` (the
    /// directory of the config file that names them).
    pub fn from_spec(spec: &ConfigRepoSpec, base: &Path) -> RepoSettings {
        let file = |path: &str| crate::git::resolve_path(base, Path::new(path));
        let secret = |env: &Option<String>, path: &Option<String>| match (env, path) {
            (Some(name), _) => Some(SecretSource::Env(name.clone())),
            (None, Some(path)) => Some(SecretSource::File(file(path))),
            (None, None) => None,
        };
        let auth = match &spec.auth {
            None => RemoteAuth::none(),
            Some(auth) => remote_auth(auth, &secret, &file),
        };
        let forge = match spec.forge {
            ForgeKind::Local => ForgeSettings::Local,
            ForgeKind::Github => {
                let github = spec.github.clone().unwrap_or_default();
                let credentials = match (&github.app, secret(&github.token_env, &github.token_file)) {
                    (Some(app), _) => GitHubCredentials::App {
                        app_id: app.app_id,
                        installation_id: app.installation_id,
                        private_key_file: file(&app.private_key_file),
                    },
                    (None, Some(token)) => GitHubCredentials::Token(token),
                    // Validation refuses this; an unset variable then fails at first use, with
                    // its name.
                    (None, None) => GitHubCredentials::Token(SecretSource::Env("GITHUB_TOKEN".to_owned())),
                };
                ForgeSettings::GitHub {
                    api_url: github.api_url.unwrap_or_else(|| GITHUB_API.to_owned()),
                    repository: github.repository,
                    credentials,
                }
            }
            ForgeKind::Gitlab => {
                let gitlab = spec.gitlab.clone().unwrap_or_default();
                ForgeSettings::GitLab {
                    url: gitlab.url.clone().unwrap_or_else(|| GITLAB_URL.to_owned()),
                    token: secret(&gitlab.token_env, &gitlab.token_file)
                        .unwrap_or_else(|| SecretSource::Env("GITLAB_TOKEN".to_owned())),
                    project: gitlab.project,
                }
            }
        };
        RepoSettings { auth, forge }
    }
}

fn remote_auth(
    spec: &RepoAuthSpec,
    secret: &dyn Fn(&Option<String>, &Option<String>) -> Option<SecretSource>,
    file: &dyn Fn(&str) -> PathBuf,
) -> RemoteAuth {
    RemoteAuth {
        username: spec.username.clone(),
        token: secret(&spec.token_env, &spec.token_file),
        ca_file: spec.ca_file.as_deref().map(file),
        ssh_key: spec.ssh_key.as_deref().map(file),
        known_hosts: spec.known_hosts.as_deref().map(file),
        host_key_checking: match spec.host_key_checking {
            HostKeyCheckingSpec::Strict => HostKeyChecking::Strict,
            HostKeyCheckingSpec::AcceptNew => HostKeyChecking::AcceptNew,
            HostKeyCheckingSpec::Off => HostKeyChecking::Off,
        },
    }
}

/// Every config repository of a configuration, by URL (relative URLs resolved against the data
/// directory, as the engine resolves them).
#[derive(Debug, Clone, Default)]
pub struct RepoCatalog {
    data_dir: PathBuf,
    repos: HashMap<String, RepoSettings>,
}

impl RepoCatalog {
    /// A catalog that knows no repository: every one is reached without credentials and
    /// reviewed by the local forge.
    pub fn empty(data_dir: &Path) -> RepoCatalog {
        RepoCatalog { data_dir: data_dir.to_path_buf(), repos: HashMap::new() }
    }

    /// The repositories of every environment of `config`. Validation has made sure that
    /// environments sharing a repository agree on its settings; should they not, the first
    /// environment's win.
    pub fn from_config(config: &Config, data_dir: &Path) -> RepoCatalog {
        let mut catalog = RepoCatalog::empty(data_dir);
        for (environment, origin) in &config.environments {
            let base = origin.file.parent().unwrap_or(Path::new("."));
            let url = resolve_repo_url(data_dir, &environment.config_repo.url);
            catalog.repos.entry(url).or_insert_with(|| RepoSettings::from_spec(&environment.config_repo, base));
        }
        catalog
    }

    /// Adds (or replaces) the settings of the repository at `url`.
    pub fn insert(&mut self, url: &str, settings: RepoSettings) {
        self.repos.insert(resolve_repo_url(&self.data_dir, url), settings);
    }

    /// The settings of the repository at `url` (as configured, or resolved), if it is known.
    pub fn settings(&self, url: &str) -> Option<&RepoSettings> {
        self.repos.get(&resolve_repo_url(&self.data_dir, url))
    }

    /// The credentials for the repository at `url` (none for an unknown one).
    pub fn auth(&self, url: &str) -> RemoteAuth {
        self.settings(url).map(|settings| settings.auth.clone()).unwrap_or_default()
    }

    /// Opens (and fetches) the warm mirror of the repository at `url` under `cache_dir`, with
    /// its credentials. Blocking.
    pub fn open(&self, cache_dir: &Path, url: &str) -> Result<EnvRepo, GitError> {
        EnvRepo::open_with(cache_dir, &resolve_repo_url(&self.data_dir, url), &self.auth(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: serde_json::Value) -> ConfigRepoSpec {
        serde_json::from_value(yaml).unwrap()
    }

    #[test]
    fn relative_secret_files_resolve_against_the_config_file() {
        let repo = spec(serde_json::json!({
            "url": "https://git.example/acme/env.git",
            "path": "x.yaml",
            "auth": { "token_file": "secrets/token", "ca_file": "/etc/ca.pem" },
            "forge": "gitlab",
            "gitlab": { "token_env": "GITLAB_TOKEN", "project": "acme/env" },
        }));
        let settings = RepoSettings::from_spec(&repo, Path::new("/etc/gantry"));
        assert_eq!(settings.auth.token, Some(SecretSource::File(PathBuf::from("/etc/gantry/secrets/token"))));
        assert_eq!(settings.auth.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            settings.forge,
            ForgeSettings::GitLab {
                url: GITLAB_URL.to_owned(),
                project: Some("acme/env".to_owned()),
                token: SecretSource::Env("GITLAB_TOKEN".to_owned()),
            }
        );
        assert_eq!(settings.forge.repository("https://git.example/acme/env.git"), "acme/env");
    }

    #[test]
    fn github_apps_and_defaults() {
        let repo = spec(serde_json::json!({
            "url": "git@github.com:acme/env.git",
            "path": "x.yaml",
            "auth": { "ssh_key": "keys/deploy", "host_key_checking": "accept-new" },
            "forge": "github",
            "github": { "app": { "app_id": 7, "installation_id": 42, "private_key_file": "app.pem" } },
        }));
        let settings = RepoSettings::from_spec(&repo, Path::new("/cfg"));
        assert_eq!(settings.auth.ssh_key, Some(PathBuf::from("/cfg/keys/deploy")));
        assert_eq!(settings.auth.host_key_checking, HostKeyChecking::AcceptNew);
        assert_eq!(
            settings.forge,
            ForgeSettings::GitHub {
                api_url: GITHUB_API.to_owned(),
                repository: None,
                credentials: GitHubCredentials::App {
                    app_id: 7,
                    installation_id: 42,
                    private_key_file: PathBuf::from("/cfg/app.pem"),
                },
            }
        );
        assert_eq!(settings.forge.repository("git@github.com:acme/env.git"), "git@github.com:acme/env.git");
    }

    #[test]
    fn unknown_repositories_have_no_credentials() {
        let mut catalog = RepoCatalog::empty(Path::new("/data"));
        assert_eq!(catalog.auth("repos/dev.git"), RemoteAuth::none());
        let auth = RemoteAuth { token: Some(SecretSource::Env("T".into())), ..RemoteAuth::none() };
        catalog.insert("repos/dev.git", RepoSettings { auth: auth.clone(), forge: ForgeSettings::Local });
        // Known by the url as configured and as resolved.
        assert_eq!(catalog.auth("repos/dev.git"), auth);
        assert_eq!(catalog.auth("/data/repos/dev.git"), auth);
    }
}
