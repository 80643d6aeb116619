//! How gantry authenticates to an environment repository's remote: a token for https (and
//! plain http), a private key and known hosts for ssh.
//!
//! Secrets are never stored here, only where to find them (an environment variable or a
//! file), and they are read at the moment of each network operation, so a rotated token is
//! picked up without a restart.

use std::path::{Path, PathBuf};

/// User name sent with a token when none is configured: what GitHub expects for installation
/// and personal tokens; GitLab and most other servers accept any name with a token.
pub const DEFAULT_TOKEN_USERNAME: &str = "x-access-token";

/// Where a secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The environment variable of this name (of the gantry process).
    Env(String),
    /// The first line of this file (a mounted secret, say).
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret now: surrounding whitespace (a trailing newline above all) is dropped,
    /// and an empty secret is an error. Errors name where the secret was looked for, never
    /// what it holds.
    pub fn read(&self) -> Result<String, String> {
        let value = match self {
            SecretSource::Env(name) => std::env::var(name).map_err(|error| match error {
                std::env::VarError::NotPresent => format!("environment variable {name} is not set"),
                std::env::VarError::NotUnicode(_) => format!("environment variable {name} is not valid UTF-8"),
            })?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read secret file {}: {error}", path.display()))?,
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        if value.chars().any(char::is_control) {
            return Err(format!("{} holds a control character (several lines?)", self.describe()));
        }
        Ok(value.to_owned())
    }

    /// Where the secret comes from, for messages: `environment variable X` or `file Y`.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Env(name) => format!("environment variable {name}"),
            SecretSource::File(path) => format!("file {}", path.display()),
        }
    }
}

/// How strictly ssh checks the server's host key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostKeyChecking {
    /// The host key must already be in the known hosts file (ssh's `StrictHostKeyChecking yes`).
    #[default]
    Strict,
    /// A host never seen before is trusted and recorded; a changed key is refused
    /// (`accept-new`).
    AcceptNew,
    /// No checking at all (`no`, with no known hosts file): for throwaway test servers only.
    Off,
}

/// Credentials for one remote. The default is none: the remote is reached anonymously (or, for
/// `http://user:password@…` URLs, with what the URL carries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteAuth {
    /// User name sent with the token (default [`DEFAULT_TOKEN_USERNAME`]).
    pub username: Option<String>,
    /// Token (or password) for https and http remotes.
    pub token: Option<SecretSource>,
    /// CA certificates (PEM) that https server certificates are checked against, instead of
    /// the system's.
    pub ca_file: Option<PathBuf>,
    /// Private key for ssh remotes; only this key is offered (`IdentitiesOnly`).
    pub ssh_key: Option<PathBuf>,
    /// Known hosts file for ssh remotes (default: ssh's own, `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// How the ssh host key is checked.
    pub host_key_checking: HostKeyChecking,
}

impl RemoteAuth {
    /// No credentials.
    pub fn none() -> Self {
        RemoteAuth::default()
    }

    /// The user name and token to send, read now; `None` when no token is configured.
    pub(crate) fn token_credentials(&self) -> Result<Option<(String, String)>, String> {
        let Some(source) = &self.token else { return Ok(None) };
        let token = source.read()?;
        let username = self.username.clone().unwrap_or_else(|| DEFAULT_TOKEN_USERNAME.to_owned());
        Ok(Some((username, token)))
    }

    /// The token's source, for messages.
    pub(crate) fn token_source(&self) -> Option<String> {
        self.token.as_ref().map(SecretSource::describe)
    }
}

/// Resolves `path` against `base` unless it is absolute.
pub(crate) fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { base.join(path) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_trimmed_and_errors_do_not_show_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret-token\n").unwrap();
        assert_eq!(SecretSource::File(file.clone()).read().unwrap(), "s3cret-token");

        std::fs::write(&file, "  \n").unwrap();
        let message = SecretSource::File(file.clone()).read().unwrap_err();
        assert!(message.contains("is empty"), "{message}");

        std::fs::write(&file, "first\nsecond\n").unwrap();
        let message = SecretSource::File(file.clone()).read().unwrap_err();
        assert!(message.contains("control character") && !message.contains("first"), "{message}");

        let missing = SecretSource::File(dir.path().join("missing")).read().unwrap_err();
        assert!(missing.contains("missing"), "{missing}");
    }

    #[test]
    fn an_unset_variable_is_named() {
        let message = SecretSource::Env("GANTRY_TEST_SURELY_UNSET_VARIABLE".into()).read().unwrap_err();
        assert_eq!(message, "environment variable GANTRY_TEST_SURELY_UNSET_VARIABLE is not set");
    }

    #[test]
    fn token_credentials_default_the_user_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "abc").unwrap();
        let auth = RemoteAuth { token: Some(SecretSource::File(file)), ..RemoteAuth::none() };
        assert_eq!(auth.token_credentials().unwrap(), Some((DEFAULT_TOKEN_USERNAME.to_owned(), "abc".to_owned())));
        assert_eq!(RemoteAuth::none().token_credentials().unwrap(), None);
    }
}
