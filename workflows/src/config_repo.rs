//! Checks of an environment's `config_repo` that go beyond its shape: which credentials fit
//! the URL's transport, which forge settings the chosen forge needs, and that environments
//! sharing one repository agree on how to reach and review it.
//!
//! Every problem is returned with the field it concerns (relative to the environment item), so
//! that validation can report it at its `file:line`.

use crate::config::{ConfigRepoSpec, ForgeKind, GitHubSpec, GitLabSpec, HostKeyCheckingSpec, RepoAuthSpec};

/// How a config repo URL is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoTransport {
    /// A path or `file://` URL: a repository on this machine.
    Local,
    /// `git://` (no authentication).
    Git,
    /// `http://`.
    Http,
    /// `https://`.
    Https,
    /// `ssh://` or scp-like `user@host:path`.
    Ssh,
}

impl RepoTransport {
    /// The transport of `url`, or the unknown scheme.
    pub fn of(url: &str) -> Result<RepoTransport, String> {
        let url = url.trim();
        if let Some((scheme, _)) = url.split_once("://") {
            return match scheme.to_ascii_lowercase().as_str() {
                "file" => Ok(RepoTransport::Local),
                "git" => Ok(RepoTransport::Git),
                "http" => Ok(RepoTransport::Http),
                "https" => Ok(RepoTransport::Https),
                "ssh" | "git+ssh" | "ssh+git" => Ok(RepoTransport::Ssh),
                other => Err(other.to_owned()),
            };
        }
        // Git reads `host:path` as ssh when no `/` comes before the first `:`.
        match url.find(':') {
            Some(colon) if colon > 0 && !url[..colon].contains('/') => Ok(RepoTransport::Ssh),
            _ => Ok(RepoTransport::Local),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            RepoTransport::Local => "a repository on this machine",
            RepoTransport::Git => "a git:// url",
            RepoTransport::Http => "an http url",
            RepoTransport::Https => "an https url",
            RepoTransport::Ssh => "an ssh url",
        }
    }
}

/// The repository path (`owner/name`, `group/sub/name`) a forge URL names, if it has one:
/// `https://host/owner/name(.git)`, `ssh://git@host/owner/name.git`, `git@host:owner/name.git`.
pub fn repository_path(url: &str) -> Option<String> {
    let trimmed = url.trim();
    let path = if let Some((_, rest)) = trimmed.split_once("://") {
        rest.split_once('/').map(|(_, path)| path).unwrap_or_default()
    } else if let Some((host, path)) = trimmed.split_once(':')
        && !host.contains('/')
    {
        path
    } else {
        trimmed
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    valid_repository_path(path).then(|| path.to_owned())
}

/// Whether `path` has the form `owner/name` (or deeper, for GitLab groups).
fn valid_repository_path(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    segments.len() >= 2
        && segments
            .iter()
            .all(|segment| !segment.is_empty() && *segment != "." && *segment != ".." && segment.chars().all(allowed))
}

/// Every problem of one environment's `config_repo`, as (field below the environment, message).
pub fn check(repo: &ConfigRepoSpec) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let transport = match RepoTransport::of(&repo.url) {
        Ok(transport) => Some(transport),
        Err(scheme) => {
            problems.push((
                "config_repo.url".to_owned(),
                format!(
                    "unknown url scheme `{scheme}` (use https://, ssh://, user@host:path, http://, git://, file:// or a path)"
                ),
            ));
            None
        }
    };
    if let (Some(auth), Some(transport)) = (&repo.auth, transport) {
        check_auth(auth, transport, &mut problems);
    }
    check_forge(repo, &mut problems);
    problems
}

fn check_auth(auth: &RepoAuthSpec, transport: RepoTransport, problems: &mut Vec<(String, String)>) {
    let mut problem = |field: &str, message: String| problems.push((format!("config_repo.auth.{field}"), message));
    let set = [
        ("username", &auth.username),
        ("token_env", &auth.token_env),
        ("token_file", &auth.token_file),
        ("ca_file", &auth.ca_file),
        ("ssh_key", &auth.ssh_key),
        ("known_hosts", &auth.known_hosts),
    ];
    for (field, value) in set {
        if value.as_deref().is_some_and(|value| value.trim().is_empty()) {
            problem(field, format!("{field} must not be empty"));
        }
    }
    if auth.token_env.is_some() && auth.token_file.is_some() {
        problem("token_file", "set token_env or token_file, not both".to_owned());
    }
    let web = matches!(transport, RepoTransport::Https | RepoTransport::Http);
    for (field, value) in [("token_env", &auth.token_env), ("token_file", &auth.token_file)] {
        if value.is_some() && !web {
            problem(
                field,
                format!("a token is sent only to https and http urls, and this is {}", transport.describe()),
            );
        }
    }
    if auth.username.is_some() && auth.token_env.is_none() && auth.token_file.is_none() {
        problem("username", "username is sent with a token: set token_env or token_file too".to_owned());
    }
    if auth.ca_file.is_some() && transport != RepoTransport::Https {
        problem("ca_file", format!("ca_file applies to https urls, and this is {}", transport.describe()));
    }
    let ssh = transport == RepoTransport::Ssh;
    for (field, is_set) in [
        ("ssh_key", auth.ssh_key.is_some()),
        ("known_hosts", auth.known_hosts.is_some()),
        ("host_key_checking", auth.host_key_checking != HostKeyCheckingSpec::Strict),
    ] {
        if is_set && !ssh {
            problem(field, format!("{field} applies to ssh urls, and this is {}", transport.describe()));
        }
    }
    if auth.known_hosts.is_some() && auth.host_key_checking == HostKeyCheckingSpec::Off {
        problem("known_hosts", "known_hosts is not read when host_key_checking is off".to_owned());
    }
}

fn check_forge(repo: &ConfigRepoSpec, problems: &mut Vec<(String, String)>) {
    let forge = repo.forge;
    if repo.github.is_some() && forge != ForgeKind::Github {
        problems.push((
            "config_repo.github".to_owned(),
            format!("`github` settings need `forge: github` (the forge is {})", forge.as_str()),
        ));
    }
    if repo.gitlab.is_some() && forge != ForgeKind::Gitlab {
        problems.push((
            "config_repo.gitlab".to_owned(),
            format!("`gitlab` settings need `forge: gitlab` (the forge is {})", forge.as_str()),
        ));
    }
    match forge {
        ForgeKind::Local => {}
        ForgeKind::Github => match &repo.github {
            None => problems.push((
                "config_repo.forge".to_owned(),
                "forge github needs a `github:` section with a token (token_env, token_file) or an app".to_owned(),
            )),
            Some(github) => check_github(github, &repo.url, problems),
        },
        ForgeKind::Gitlab => match &repo.gitlab {
            None => problems.push((
                "config_repo.forge".to_owned(),
                "forge gitlab needs a `gitlab:` section with a token (token_env or token_file)".to_owned(),
            )),
            Some(gitlab) => check_gitlab(gitlab, &repo.url, problems),
        },
    }
}

fn check_web_url(field: &str, url: &str) -> Option<String> {
    let valid = ["https://", "http://"]
        .iter()
        .any(|scheme| url.strip_prefix(scheme).is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/')))
        && !url.contains(char::is_whitespace);
    (!valid).then(|| format!("{field} `{url}` must be an http(s):// URL"))
}

fn check_github(github: &GitHubSpec, url: &str, problems: &mut Vec<(String, String)>) {
    let mut problem = |field: &str, message: String| {
        let at = if field.is_empty() { "config_repo.github".to_owned() } else { format!("config_repo.github.{field}") };
        problems.push((at, message));
    };
    let credentials = [github.token_env.is_some(), github.token_file.is_some(), github.app.is_some()]
        .iter()
        .filter(|set| **set)
        .count();
    match credentials {
        0 => problem("", "name a token (token_env or token_file) or an app installation (app)".to_owned()),
        1 => {}
        _ => problem("", "use one of token_env, token_file and app".to_owned()),
    }
    for (field, value) in [("token_env", &github.token_env), ("token_file", &github.token_file)] {
        if value.as_deref().is_some_and(|value| value.trim().is_empty()) {
            problem(field, format!("{field} must not be empty"));
        }
    }
    if let Some(app) = &github.app {
        if app.app_id == 0 {
            problem("app.app_id", "app_id must be the app's id (a positive number)".to_owned());
        }
        if app.installation_id == 0 {
            problem("app.installation_id", "installation_id must be a positive number".to_owned());
        }
        if app.private_key_file.trim().is_empty() {
            problem("app.private_key_file", "private_key_file must name the app's private key (PEM)".to_owned());
        }
    }
    if let Some(api_url) = &github.api_url
        && let Some(message) = check_web_url("api_url", api_url)
    {
        problem("api_url", message);
    }
    match &github.repository {
        Some(repository) if !valid_repository_path(repository) || repository.split('/').count() != 2 => {
            problem("repository", format!("repository `{repository}` must be `owner/name`"));
        }
        Some(_) => {}
        None if repository_path(url).is_none_or(|path| path.split('/').count() != 2) => {
            problem("", format!("cannot tell the repository's owner/name from url `{url}`; set github.repository"))
        }
        None => {}
    }
}

fn check_gitlab(gitlab: &GitLabSpec, url: &str, problems: &mut Vec<(String, String)>) {
    let mut problem = |field: &str, message: String| {
        let at = if field.is_empty() { "config_repo.gitlab".to_owned() } else { format!("config_repo.gitlab.{field}") };
        problems.push((at, message));
    };
    match (&gitlab.token_env, &gitlab.token_file) {
        (None, None) => problem("", "name a token (token_env or token_file)".to_owned()),
        (Some(_), Some(_)) => problem("token_file", "set token_env or token_file, not both".to_owned()),
        _ => {}
    }
    for (field, value) in [("token_env", &gitlab.token_env), ("token_file", &gitlab.token_file)] {
        if value.as_deref().is_some_and(|value| value.trim().is_empty()) {
            problem(field, format!("{field} must not be empty"));
        }
    }
    if let Some(instance) = &gitlab.url
        && let Some(message) = check_web_url("url", instance)
    {
        problem("url", message);
    }
    match &gitlab.project {
        Some(project) if !valid_repository_path(project) => {
            problem("project", format!("project `{project}` must be a path such as `group/name`"));
        }
        Some(_) => {}
        None if repository_path(url).is_none() => {
            problem("", format!("cannot tell the project's path from url `{url}`; set gitlab.project"))
        }
        None => {}
    }
}

/// Whether two environments that share a repository URL reach and review it the same way.
pub fn same_access(a: &ConfigRepoSpec, b: &ConfigRepoSpec) -> bool {
    a.auth == b.auth && a.forge == b.forge && a.github == b.github && a.gitlab == b.gitlab
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GitHubAppSpec;

    fn repo(url: &str) -> ConfigRepoSpec {
        serde_json::from_value(serde_json::json!({ "url": url, "path": "apps/{app}/values.yaml" })).unwrap()
    }

    fn fields(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(field, _)| field.as_str()).collect()
    }

    #[test]
    fn transports_of_urls() {
        for (url, transport) in [
            ("repos/dev.git", RepoTransport::Local),
            ("/srv/dev.git", RepoTransport::Local),
            ("file:///srv/dev.git", RepoTransport::Local),
            ("git://host/dev.git", RepoTransport::Git),
            ("http://host/dev.git", RepoTransport::Http),
            ("HTTPS://host/dev.git", RepoTransport::Https),
            ("ssh://git@host:22/dev.git", RepoTransport::Ssh),
            ("git@github.com:acme/dev.git", RepoTransport::Ssh),
        ] {
            assert_eq!(RepoTransport::of(url), Ok(transport), "{url}");
        }
        assert_eq!(RepoTransport::of("ftp://host/dev.git"), Err("ftp".to_owned()));
    }

    #[test]
    fn credentials_must_fit_the_transport() {
        let mut https = repo("https://github.com/acme/env-prod.git");
        https.auth = Some(RepoAuthSpec {
            token_env: Some("TOKEN".into()),
            ca_file: Some("ca.pem".into()),
            ..RepoAuthSpec::default()
        });
        assert!(check(&https).is_empty(), "{:?}", check(&https));

        https.auth = Some(RepoAuthSpec {
            token_env: Some("TOKEN".into()),
            token_file: Some("token".into()),
            ssh_key: Some("id_ed25519".into()),
            ..RepoAuthSpec::default()
        });
        assert_eq!(fields(&check(&https)), ["config_repo.auth.token_file", "config_repo.auth.ssh_key"]);

        let mut ssh = repo("git@github.com:acme/env-prod.git");
        ssh.auth = Some(RepoAuthSpec {
            token_env: Some("TOKEN".into()),
            known_hosts: Some("known_hosts".into()),
            host_key_checking: HostKeyCheckingSpec::Off,
            ca_file: Some("ca.pem".into()),
            ..RepoAuthSpec::default()
        });
        assert_eq!(
            fields(&check(&ssh)),
            ["config_repo.auth.token_env", "config_repo.auth.ca_file", "config_repo.auth.known_hosts"]
        );

        let mut local = repo("repos/dev.git");
        local.auth = Some(RepoAuthSpec { username: Some("bot".into()), ..RepoAuthSpec::default() });
        assert_eq!(fields(&check(&local)), ["config_repo.auth.username"]);
        assert_eq!(fields(&check(&repo("ftp://host/dev.git"))), ["config_repo.url"]);
    }

    #[test]
    fn forges_need_their_settings() {
        let mut github = repo("https://github.com/acme/env-prod.git");
        github.forge = ForgeKind::Github;
        assert_eq!(fields(&check(&github)), ["config_repo.forge"]);

        github.github = Some(GitHubSpec { token_env: Some("GITHUB_TOKEN".into()), ..GitHubSpec::default() });
        assert!(check(&github).is_empty());

        github.github = Some(GitHubSpec {
            token_env: Some("GITHUB_TOKEN".into()),
            app: Some(GitHubAppSpec { app_id: 0, installation_id: 7, private_key_file: "app.pem".into() }),
            api_url: Some("api.github.com".into()),
            repository: Some("acme".into()),
            ..GitHubSpec::default()
        });
        assert_eq!(
            fields(&check(&github)),
            [
                "config_repo.github",
                "config_repo.github.app.app_id",
                "config_repo.github.api_url",
                "config_repo.github.repository"
            ]
        );

        let mut unnamed = repo("repos/prod.git");
        unnamed.forge = ForgeKind::Github;
        unnamed.github = Some(GitHubSpec { token_file: Some("token".into()), ..GitHubSpec::default() });
        assert_eq!(fields(&check(&unnamed)), Vec::<&str>::new(), "a relative path still names repos/prod");
        unnamed.url = "/prod.git".into();
        let problems = check(&unnamed);
        assert_eq!(fields(&problems), ["config_repo.github"]);
        assert!(problems[0].1.contains("set github.repository"), "{problems:?}");

        let mut gitlab = repo("https://gitlab.example.com/platform/envs/prod.git");
        gitlab.forge = ForgeKind::Gitlab;
        gitlab.gitlab = Some(GitLabSpec { token_env: Some("GITLAB_TOKEN".into()), ..GitLabSpec::default() });
        assert!(check(&gitlab).is_empty());
        gitlab.github = Some(GitHubSpec::default());
        gitlab.gitlab = Some(GitLabSpec::default());
        assert_eq!(fields(&check(&gitlab)), ["config_repo.github", "config_repo.gitlab"]);
    }

    #[test]
    fn repository_paths_from_urls() {
        assert_eq!(repository_path("https://github.com/acme/env-prod.git").as_deref(), Some("acme/env-prod"));
        assert_eq!(repository_path("git@github.com:acme/env-prod.git").as_deref(), Some("acme/env-prod"));
        assert_eq!(repository_path("https://gitlab.example/a/b/c").as_deref(), Some("a/b/c"));
        assert_eq!(repository_path("https://github.com/"), None);
    }
}
