//! Configuration types: what users write in the YAML files of a config directory.
//!
//! A config directory holds any number of `*.yaml` / `*.yml` files; each may define any of the
//! top-level sections below, and the sections are merged across files. Every type here denies
//! unknown fields so that a typo is an error with a line number, not a silently ignored key.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One configuration file as written by a user.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "gantry configuration file")]
pub struct ConfigFile {
    /// Container registries that hold the artifacts.
    #[serde(default)]
    pub registries: Vec<RegistrySpec>,
    /// Applications whose source repositories trigger promotions.
    #[serde(default)]
    pub apps: Vec<AppSpec>,
    /// Environments an artifact is promoted through.
    #[serde(default)]
    pub environments: Vec<EnvironmentSpec>,
    /// Pipelines: which events start a promotion, and which steps it runs.
    #[serde(default)]
    pub pipelines: Vec<PipelineSpec>,
}

/// A container registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrySpec {
    /// Name other sections refer to.
    pub name: String,
    /// `oci-layout:<dir>` for an OCI image-layout directory (relative to the data directory),
    /// `http://host:port` or `https://host` for a distribution registry, or a bare `host[:port]`;
    /// a path after the host (`https://harbor.example.com/team`) is a namespace put in front of
    /// every repository; `ecr://<account>.dkr.ecr.<region>.amazonaws.com` for Amazon ECR.
    pub url: String,
    /// Credentials; without them the registry is used anonymously.
    #[serde(default)]
    pub credentials: Option<RegistryCredentialsSpec>,
    /// Speak plain HTTP to this host although it is not on loopback (like docker's
    /// `--insecure-registry`).
    #[serde(default)]
    pub insecure: bool,
    /// Repositories whose tags never move: a tag already at another digest is a conflict, not
    /// overwritten. Repository names or globs (`*` within a path component, `**` across them).
    #[serde(default)]
    pub immutable_tags: Vec<String>,
}

/// Credentials of a registry: a user name and a password or token read when the registry is
/// first used, never written in the configuration itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentialsSpec {
    /// User name (for ECR: the AWS access key id; for token logins whatever the registry
    /// expects, such as `oauth2accesstoken`).
    pub username: String,
    /// Environment variable holding the password or token.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password or token (one trailing newline is ignored); a relative path
    /// resolves against the config directory.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// An application: a source repository whose events promote one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// Application name, used in branch names, tags and config paths.
    pub name: String,
    /// Full path of the source repository on the forge, e.g. `acme/checkout`.
    pub source_repo: String,
    /// Registry (by name) that CI pushes the application's image to.
    pub registry: String,
    /// Repository of the image inside that registry.
    pub repository: String,
    /// Name the image goes by in the environments' config files (a kustomization's
    /// `images[].name`); defaults to `repository`.
    #[serde(default)]
    pub image_name: Option<String>,
    /// Pipeline (by name) that promotes this application.
    #[serde(default = "default_pipeline")]
    pub pipeline: String,
}

impl AppSpec {
    /// Name of the image in config files.
    pub fn image_name(&self) -> &str {
        self.image_name.as_deref().unwrap_or(&self.repository)
    }
}

fn default_pipeline() -> String {
    "default".to_string()
}

/// One environment (one IDP instance with its own config repository).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// Environment name (`dev`, `staging`, `uat`, `prod`, …).
    pub name: String,
    /// Position in the promotion order; lower comes first, values are unique.
    pub order: u32,
    /// Where the environment's desired state lives.
    pub config_repo: ConfigRepoSpec,
    /// Template of the tag the artifact gets in this environment.
    #[serde(default = "default_tag_template")]
    pub tag_template: String,
    /// Environments that must have promoted an artifact before it enters this one. When the
    /// last of them succeeds, gantry starts the promotion here (fan-in: several; fan-out:
    /// several environments naming the same one).
    #[serde(default)]
    pub after: Vec<String>,
    /// Whether a promotion starts here by itself once every `after` environment has the
    /// artifact (`auto`), or only when an operator promotes (`manual`).
    #[serde(default)]
    pub promotion: PromotionMode,
    /// What happens to queued promotions when a newer artifact arrives for the same app:
    /// `supersede` (only the newest queued one runs) or `queue` (all run, oldest first).
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Preview instances of this environment, one per branch, for triggers with `preview: true`:
    /// each is a directory of the same config repo, created from a template by the first
    /// promotion and removed through a change request when the branch is deleted.
    #[serde(default)]
    pub previews: Option<PreviewSpec>,
}

/// Where the preview instances of an environment live in its config repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewSpec {
    /// Directory of one preview; must use `{slug}` (the branch name made safe: lowercase
    /// `[a-z0-9-]`, at most 40 characters) and may use `{app}` and `{env}`, e.g. `previews/{slug}`.
    pub directory: String,
    /// Directory (on `config_repo.branch`) whose files a new preview starts as: they are copied
    /// into the preview's directory, with `{{slug}}`, `{{branch}}`, `{{preview}}` (the preview
    /// environment's name), `{{app}}` and `{{env}}` replaced. May use `{app}` and `{env}`.
    /// Without it, a preview's file must exist already.
    #[serde(default)]
    pub template: Option<String>,
    /// File to edit, relative to the preview's directory; may use `{app}` and `{env}`.
    #[serde(default = "default_preview_file")]
    pub file: String,
    /// YAML path of the scalar that holds the image tag in that file. When absent, the file is
    /// a kustomization and the `images:` entry named after the image gets `newTag`.
    #[serde(default)]
    pub yaml_path: Option<String>,
}

fn default_preview_file() -> String {
    "kustomization.yaml".to_string()
}

/// How promotions enter an environment that follows others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PromotionMode {
    /// Start as soon as every `after` environment has the artifact.
    #[default]
    Auto,
    /// Wait for an operator.
    Manual,
}

/// Policy for queued promotions of one app into one environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// A newer queued artifact cancels older queued ones (running ones finish).
    #[default]
    Supersede,
    /// Every queued promotion runs, oldest first.
    Queue,
}

fn default_tag_template() -> String {
    "{env}-{version}".to_string()
}

/// The environment's config repository and the file gantry edits in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigRepoSpec {
    /// Git URL of the repository; a relative path resolves against the data directory.
    pub url: String,
    /// Branch the environment deploys from, and that promotion branches start from.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// File to edit; may use `{app}` and `{env}`.
    pub path: String,
    /// YAML path of the scalar that holds the image tag (e.g. `image.tag`). When absent, the file
    /// is a kustomization and the `images:` entry named after the image repository gets `newTag`.
    #[serde(default)]
    pub yaml_path: Option<String>,
    /// Forge that reviews the change: `local` (a branch in the repository, tracked by gantry),
    /// `github` (a pull request; settings in `github`) or `gitlab` (a merge request; settings
    /// in `gitlab`).
    #[serde(default)]
    pub forge: ForgeKind,
    /// Credentials for fetching and pushing: an https token, or an ssh key and known hosts.
    #[serde(default)]
    pub auth: Option<RepoAuthSpec>,
    /// GitHub settings, for `forge: github`.
    #[serde(default)]
    pub github: Option<GitHubSpec>,
    /// GitLab settings, for `forge: gitlab`.
    #[serde(default)]
    pub gitlab: Option<GitLabSpec>,
}

/// How gantry authenticates to a config repository. Secrets are named, never written here: an
/// environment variable or a file (relative paths resolve against the config file's
/// directory), read at each use so a rotated token is picked up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepoAuthSpec {
    /// User name sent with the token over https (default `x-access-token`, what GitHub
    /// expects; GitLab accepts any name with an access token).
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the https token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the https token.
    #[serde(default)]
    pub token_file: Option<String>,
    /// CA certificates (PEM) to check the https server against instead of the system's.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Private key for an ssh url (`ssh://…` or `git@host:path`); only this key is offered.
    #[serde(default)]
    pub ssh_key: Option<String>,
    /// Known hosts file for an ssh url (default: ssh's own).
    #[serde(default)]
    pub known_hosts: Option<String>,
    /// How ssh checks the server's host key: `strict` (default: it must be in known hosts),
    /// `accept-new` (trust a new host once, refuse a changed key) or `off`.
    #[serde(default)]
    pub host_key_checking: HostKeyCheckingSpec,
}

/// ssh host key checking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyCheckingSpec {
    /// The key must be in the known hosts file.
    #[default]
    Strict,
    /// Trust a host seen for the first time and record it; refuse a changed key.
    AcceptNew,
    /// No checking (throwaway test servers only).
    Off,
}

/// Pull requests on GitHub or GitHub Enterprise Server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitHubSpec {
    /// `owner/name` of the repository; by default taken from `config_repo.url`.
    #[serde(default)]
    pub repository: Option<String>,
    /// REST API base URL: `https://api.github.com` (default), or `https://HOST/api/v3` for
    /// GitHub Enterprise Server.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Environment variable holding a personal or fine-grained access token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the token.
    #[serde(default)]
    pub token_file: Option<String>,
    /// A GitHub App installation instead of a token.
    #[serde(default)]
    pub app: Option<GitHubAppSpec>,
}

/// A GitHub App installation that gantry acts as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitHubAppSpec {
    /// The app's id.
    pub app_id: u64,
    /// The installation's id (on the organisation that owns the env repos).
    pub installation_id: u64,
    /// The app's RSA private key (PEM).
    pub private_key_file: String,
}

/// Merge requests on gitlab.com or a self-managed GitLab.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitLabSpec {
    /// Project path (`group/sub/name`); by default taken from `config_repo.url`.
    #[serde(default)]
    pub project: Option<String>,
    /// Instance URL, `https://gitlab.com` by default (`/api/v4` is added).
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding a personal, project or group access token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the token.
    #[serde(default)]
    pub token_file: Option<String>,
}

fn default_branch() -> String {
    "main".to_string()
}

/// Forge kinds that can review a change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    /// A plain git remote: gantry pushes the branch and tracks the change request itself.
    #[default]
    Local,
    /// A GitHub pull request.
    Github,
    /// A GitLab merge request.
    Gitlab,
}

impl ForgeKind {
    /// `local`, `github` or `gitlab`, as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::Local => "local",
            ForgeKind::Github => "github",
            ForgeKind::Gitlab => "gitlab",
        }
    }
}

/// A pipeline: triggers that start it, and its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Pipeline name that apps refer to.
    pub name: String,
    /// Events that start a promotion, each into an entry environment.
    pub triggers: Vec<TriggerSpec>,
    /// Steps of one promotion; `needs` makes them a DAG.
    pub steps: Vec<StepSpec>,
}

/// Which kind of ref a trigger listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TriggerOn {
    /// Pushes to branches matching the pattern.
    Branch,
    /// Tags matching the pattern.
    Tag,
}

/// Event pattern → entry environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// Ref kind the trigger listens to.
    pub on: TriggerOn,
    /// Glob over the branch or tag name (`main`, `release/*`, `v*`).
    pub pattern: String,
    /// Environment the promotion enters.
    pub environment: String,
    /// Tag CI gives the image for this event, e.g. `sha-{sha7}` or `{tag}`; the artifact is
    /// found under it and pinned by digest from then on.
    pub artifact_tag: String,
    /// Version string used in environment tags; defaults to the rendered `artifact_tag`.
    #[serde(default)]
    pub version: Option<String>,
    /// How long to wait for CI to push the artifact, e.g. `90s`, `10m`, `1h`.
    #[serde(default = "default_artifact_wait")]
    pub artifact_wait: String,
    /// Only pushes that change a file matching one of these globs (`*` stays within a
    /// directory, `**` crosses them), e.g. `services/checkout/**`. When the payload does not
    /// list every changed file (a new branch, a truncated commit list) the push matches, and
    /// the plan says so. Branch triggers only.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Changed files matching these globs do not count, e.g. `docs/**` or `**/*.md`: a push
    /// that changes nothing else does not match. Branch triggers only.
    #[serde(default)]
    pub ignore_paths: Vec<String>,
    /// Only events caused by one of these actors (the pusher or sender): names, compared
    /// without regard to case, where `*` stands for any run of characters and `?` for one
    /// (e.g. `alice`, `release-*`); nothing else is special, so `renovate[bot]` is a name.
    #[serde(default)]
    pub actors: Vec<String>,
    /// Events caused by these actors (names with `*` and `?`, as in `actors`) never match,
    /// e.g. `dependabot[bot]`.
    #[serde(default)]
    pub ignore_actors: Vec<String>,
    /// Only events from this forge; by default from either.
    #[serde(default)]
    pub forge: Option<SourceForge>,
    /// Pipeline (by name) whose steps this promotion runs, and the promotions that follow it
    /// through the environment graph; by default the pipeline the trigger belongs to. An
    /// expedited path (`hotfix/*`) names a pipeline with its own mandatory steps this way.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Promote into a preview instance of `environment` of its own (see
    /// [`EnvironmentSpec::previews`]), named `<environment>-<slug>`, instead of into the
    /// environment itself; deleting the branch removes the preview. Branch triggers only.
    #[serde(default)]
    pub preview: bool,
}

/// Forges events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceForge {
    /// github.com or GitHub Enterprise Server.
    Github,
    /// gitlab.com or a self-managed GitLab.
    Gitlab,
}

fn default_artifact_wait() -> String {
    "10m".to_string()
}

/// One step of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Unique name within the pipeline.
    pub name: String,
    /// Step kind (`resolve-artifact`, `retag`, `update-config`, `open-pr`, …).
    pub kind: String,
    /// Steps that must succeed first.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Settings of the step kind; each kind documents and checks its own.
    #[serde(default, rename = "with")]
    pub with: Option<serde_json::Map<String, serde_json::Value>>,
    /// When the step runs, given how its needs ended: `success()` (default), `failure()`,
    /// `always()`, `steps.<name>.succeeded|failed|skipped|cancelled`, with `!`, `&&`, `||`.
    #[serde(default, rename = "if")]
    pub condition: Option<String>,
    /// Retries of transient errors (network, 5xx, rate limits).
    #[serde(default)]
    pub retry: Option<RetrySpec>,
    /// Longest one attempt may take, e.g. `30s`, `10m`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Environments this step runs in (default: all). Where it does not run, the steps that
    /// need it need what it needed instead.
    #[serde(default)]
    pub environments: Vec<String>,
}

/// Retry settings of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// First delay between attempts, doubled each time (with jitter), e.g. `500ms`, `2s`.
    #[serde(default = "default_backoff")]
    pub backoff: String,
}

fn default_backoff() -> String {
    "500ms".to_string()
}

/// Where a configuration item came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// File it was read from.
    pub file: PathBuf,
    /// 1-based line of the item's first key.
    pub line: Option<usize>,
}

/// A whole, validated configuration directory.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Registries by declaration order.
    pub registries: Vec<(RegistrySpec, Origin)>,
    /// Apps by declaration order.
    pub apps: Vec<(AppSpec, Origin)>,
    /// Environments sorted by `order`.
    pub environments: Vec<(EnvironmentSpec, Origin)>,
    /// Pipelines by declaration order.
    pub pipelines: Vec<(PipelineSpec, Origin)>,
}

impl Config {
    /// The registry named `name`.
    pub fn registry(&self, name: &str) -> Option<&RegistrySpec> {
        self.registries.iter().map(|(r, _)| r).find(|r| r.name == name)
    }

    /// The app named `name`.
    pub fn app(&self, name: &str) -> Option<&AppSpec> {
        self.apps.iter().map(|(a, _)| a).find(|a| a.name == name)
    }

    /// The environment named `name`.
    pub fn environment(&self, name: &str) -> Option<&EnvironmentSpec> {
        self.environments.iter().map(|(e, _)| e).find(|e| e.name == name)
    }

    /// The pipeline named `name`.
    pub fn pipeline(&self, name: &str) -> Option<&PipelineSpec> {
        self.pipelines.iter().map(|(p, _)| p).find(|p| p.name == name)
    }

    /// The JSON Schema of one configuration file, as shipped for editors.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(ConfigFile)).unwrap_or(serde_json::Value::Null)
    }
}

/// Parses a short duration such as `90s`, `10m`, `2h` or `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {text:?} has no unit (use ms, s, m or h)"))?;
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("duration {text:?} does not start with a number"))?;
    let millis = match unit {
        "ms" => value,
        "s" => value * 1_000,
        "m" => value * 60_000,
        "h" => value * 3_600_000,
        _ => {
            return Err(format!("duration {text:?} has unknown unit {unit:?} (use ms, s, m or h)"));
        }
    };
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn schema_names_every_section() {
        let schema = Config::json_schema();
        let properties = &schema["properties"];
        for section in ["registries", "apps", "environments", "pipelines"] {
            assert!(properties.get(section).is_some(), "schema lacks {section}");
        }
    }
}
