//! Remote URLs: which transports this build can use, where a remote's mirror lives in the
//! cache, and how credentials embedded in an `http://` URL reach libgit2.

use std::cell::Cell;
use std::path::Path;

use git2::{Cred, CredentialType, RemoteCallbacks};
use sha2::{Digest, Sha256};

use super::GitError;

/// A validated remote, split into the URL handed to libgit2 (never carrying credentials) and
/// the credentials that were embedded in the URL the caller gave.
#[derive(Clone)]
pub(crate) struct RemoteUrl {
    /// The URL without user information; safe to log and to put in error messages.
    url: String,
    /// `user` and `password` taken from `http://user:password@host/…`, percent-decoded.
    credentials: Option<(String, String)>,
}

impl std::fmt::Debug for RemoteUrl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password must never end up in logs through a derived Debug.
        formatter
            .debug_struct("RemoteUrl")
            .field("url", &self.url)
            .field("has_credentials", &self.credentials.is_some())
            .finish()
    }
}

impl RemoteUrl {
    /// Accepts `file://` URLs, plain paths to a repository, `git://` and `http://`; rejects
    /// transports this build cannot speak with an error that says so.
    pub(crate) fn parse(input: &str) -> Result<RemoteUrl, GitError> {
        let unsupported =
            |reason: &str| GitError::UnsupportedUrl { url: strip_user_info(input), reason: reason.to_owned() };
        if input.trim().is_empty() {
            return Err(unsupported("the url is empty"));
        }
        if input.contains('\0') {
            return Err(unsupported("the url contains a NUL byte"));
        }
        if let Some((scheme, rest)) = input.split_once("://") {
            return match scheme.to_ascii_lowercase().as_str() {
                "file" | "git" => Ok(RemoteUrl { url: input.to_owned(), credentials: None }),
                "http" => {
                    let (credentials, host_and_path) = split_user_info(rest);
                    Ok(RemoteUrl { url: format!("{scheme}://{host_and_path}"), credentials })
                }
                "https" => Err(unsupported("https is not supported yet (this build has no TLS transport for git)")),
                "ssh" | "git+ssh" | "ssh+git" => {
                    Err(unsupported("ssh is not supported yet (this build has no ssh transport for git)"))
                }
                other => Err(unsupported(&format!("unknown url scheme {other:?}"))),
            };
        }
        if is_scp_like(input) {
            return Err(unsupported("ssh is not supported yet (this build has no ssh transport for git)"));
        }
        // A plain path: make it absolute so that the mirror does not depend on the working
        // directory of whichever process opened it first.
        let absolute = std::path::absolute(Path::new(input))
            .map_err(|error| unsupported(&format!("cannot resolve the path: {error}")))?;
        let url = absolute.to_str().ok_or_else(|| unsupported("the path is not valid UTF-8"))?.to_owned();
        Ok(RemoteUrl { url, credentials: None })
    }

    /// The repository path when the remote was given as a plain path rather than a URL.
    pub(crate) fn local_path(&self) -> Option<&Path> {
        (!self.url.contains("://")).then(|| Path::new(&self.url))
    }

    /// The URL as given to libgit2, without credentials.
    pub(crate) fn as_str(&self) -> &str {
        &self.url
    }

    /// The mirror directory name for this remote: a readable hint from the last path segment
    /// plus a hash of the whole URL, so two remotes never share a mirror and rotating a
    /// password keeps the same one.
    pub(crate) fn cache_dir_name(&self) -> String {
        let digest = Sha256::digest(self.url.as_bytes());
        let hash = hex::encode(&digest[..16]);
        let hint: String = self
            .url
            .trim_end_matches('/')
            .rsplit(['/', ':'])
            .next()
            .unwrap_or_default()
            .trim_end_matches(".git")
            .chars()
            .filter(|character| character.is_ascii_alphanumeric() || matches!(character, '-' | '_'))
            .take(40)
            .collect();
        if hint.is_empty() { format!("{hash}.git") } else { format!("{hint}-{hash}.git") }
    }
}

/// Answers libgit2's credential requests for one network operation.
///
/// libgit2 asks again every time the server refuses what it was given, and would loop for a
/// long time on a wrong password; the first refusal is therefore final.
pub(crate) struct CredentialSupply<'remote> {
    remote: &'remote RemoteUrl,
    requests: Cell<u32>,
    failure: Cell<Option<&'static str>>,
}

impl<'remote> CredentialSupply<'remote> {
    pub(crate) fn new(remote: &'remote RemoteUrl) -> Self {
        CredentialSupply { remote, requests: Cell::new(0), failure: Cell::new(None) }
    }

    /// Callbacks that answer credential requests from this supply.
    pub(crate) fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |_url, _username, allowed| self.answer(allowed));
        callbacks
    }

    fn answer(&self, allowed: CredentialType) -> Result<Cred, git2::Error> {
        let request = self.requests.get().saturating_add(1);
        self.requests.set(request);
        if request > 1 {
            let reason = "the remote rejected the credentials from the url";
            self.failure.set(Some(reason));
            return Err(git2::Error::from_str(reason));
        }
        match &self.remote.credentials {
            Some((user, password)) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                Cred::userpass_plaintext(user, password)
            }
            Some(_) => {
                let reason = "the remote asked for a kind of credentials other than user and password";
                self.failure.set(Some(reason));
                Err(git2::Error::from_str(reason))
            }
            None => {
                let reason = "the remote requires credentials and the url carries none";
                self.failure.set(Some(reason));
                Err(git2::Error::from_str(reason))
            }
        }
    }

    /// Why authentication failed, if it did during the operation.
    pub(crate) fn failure(&self) -> Option<&'static str> {
        self.failure.get()
    }
}

/// `user:password@host/path` → credentials and `host/path`. Only the authority (the part before
/// the first `/`) may carry user information.
fn split_user_info(rest: &str) -> (Option<(String, String)>, String) {
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
            let credentials = (percent_decode(user), percent_decode(password));
            (Some(credentials), format!("{host}{path}"))
        }
        None => (None, rest.to_owned()),
    }
}

/// Removes user information from anything URL-shaped so errors never echo a password.
fn strip_user_info(input: &str) -> String {
    match input.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", split_user_info(rest).1),
        None => input.to_owned(),
    }
}

/// Git treats `host:path` as ssh when there is no `/` before the first `:`.
fn is_scp_like(input: &str) -> bool {
    match input.find(':') {
        Some(colon) => !input[..colon].contains('/') && colon > 0,
        None => false,
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%'
            && let Some(value) = bytes
                .get(index + 1..index + 3)
                .and_then(|pair| std::str::from_utf8(pair).ok())
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        {
            decoded.push(value);
            index += 3;
            continue;
        }
        decoded.push(byte);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason_for(input: &str) -> String {
        match RemoteUrl::parse(input) {
            Err(GitError::UnsupportedUrl { reason, .. }) => reason,
            other => panic!("expected an unsupported url error for {input}, got {other:?}"),
        }
    }

    #[test]
    fn supported_schemes_pass_through() {
        for url in ["file:///srv/git/dev.git", "git://127.0.0.1:9418/dev.git", "http://git.example/dev.git"] {
            let remote = RemoteUrl::parse(url).unwrap();
            assert_eq!(remote.as_str(), url);
            assert!(remote.credentials.is_none());
        }
    }

    #[test]
    fn plain_paths_become_absolute() {
        let remote = RemoteUrl::parse("relative/dev.git").unwrap();
        assert!(Path::new(remote.as_str()).is_absolute());
        assert!(remote.as_str().ends_with("relative/dev.git"));
        assert_eq!(RemoteUrl::parse("/srv/git/dev.git").unwrap().as_str(), "/srv/git/dev.git");
    }

    #[test]
    fn http_credentials_are_split_off_and_decoded() {
        let remote = RemoteUrl::parse("http://bot:p%40ss%3Aword@git.example:8080/org/dev.git").unwrap();
        assert_eq!(remote.as_str(), "http://git.example:8080/org/dev.git");
        assert_eq!(remote.credentials, Some(("bot".to_owned(), "p@ss:word".to_owned())));
        assert!(!format!("{remote:?}").contains("word"));
    }

    #[test]
    fn an_at_sign_in_the_path_is_not_user_info() {
        let remote = RemoteUrl::parse("http://git.example/org/dev@2.git").unwrap();
        assert_eq!(remote.as_str(), "http://git.example/org/dev@2.git");
        assert!(remote.credentials.is_none());
    }

    #[test]
    fn unsupported_transports_say_what_is_missing() {
        assert!(reason_for("https://github.com/org/dev.git").contains("https is not supported"));
        assert!(reason_for("ssh://git@github.com/org/dev.git").contains("ssh is not supported"));
        assert!(reason_for("git@github.com:org/dev.git").contains("ssh is not supported"));
        assert!(reason_for("ftp://example/dev.git").contains("unknown url scheme"));
        assert!(reason_for("").contains("empty"));
    }

    #[test]
    fn rejected_urls_do_not_echo_passwords() {
        let error = RemoteUrl::parse("https://bot:hunter2@github.com/org/dev.git").unwrap_err();
        let message = error.to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("https://github.com/org/dev.git"), "{message}");
    }

    #[test]
    fn cache_names_are_stable_distinct_and_ignore_credentials() {
        let name = |url: &str| RemoteUrl::parse(url).unwrap().cache_dir_name();
        assert_eq!(name("file:///srv/dev.git"), name("file:///srv/dev.git"));
        assert_ne!(name("file:///srv/dev.git"), name("file:///srv/prod.git"));
        assert_eq!(name("http://a:b@git.example/dev.git"), name("http://c:d@git.example/dev.git"));
        assert!(name("file:///srv/dev.git").starts_with("dev-"));
        assert!(name("file:///srv/dev.git").ends_with(".git"));
    }

    #[test]
    fn malformed_percent_escapes_are_kept_literally() {
        assert_eq!(percent_decode("a%zzb%4"), "a%zzb%4");
        assert_eq!(percent_decode("%41%62"), "Ab");
    }
}
