//! Remote URLs: which transport reaches a remote, where a remote's mirror lives in the cache,
//! and how credentials reach libgit2 (for `http://`) or the git command line (for `https://`
//! and ssh, see [`super::cli`]).

use std::cell::Cell;
use std::path::Path;

use git2::{Cred, CredentialType, RemoteCallbacks};
use sha2::{Digest, Sha256};

use super::GitError;

/// How a remote is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A plain path to a repository on this machine.
    Path,
    /// `file://`, `git://` or `http://`: libgit2's own transports.
    Libgit2,
    /// `https://`: the git command line (this build of libgit2 has no TLS).
    Https,
    /// `ssh://` or scp-like `user@host:path`: the git command line with ssh.
    Ssh,
}

/// A validated remote, split into the URL handed to git (never carrying credentials) and
/// the credentials that were embedded in the URL the caller gave.
#[derive(Clone)]
pub(crate) struct RemoteUrl {
    /// The URL without a password; safe to log and to put in error messages.
    url: String,
    /// How the remote is reached.
    transport: Transport,
    /// `user` and `password` taken from `http(s)://user:password@host/…`, percent-decoded.
    credentials: Option<(String, String)>,
}

impl std::fmt::Debug for RemoteUrl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password must never end up in logs through a derived Debug.
        formatter
            .debug_struct("RemoteUrl")
            .field("url", &self.url)
            .field("transport", &self.transport)
            .field("has_credentials", &self.credentials.is_some())
            .finish()
    }
}

impl RemoteUrl {
    /// Accepts `file://` URLs, plain paths to a repository, `git://`, `http://`, `https://`,
    /// `ssh://` and scp-like `user@host:path`; rejects anything else with an error that says
    /// why.
    pub(crate) fn parse(input: &str) -> Result<RemoteUrl, GitError> {
        let unsupported =
            |reason: &str| GitError::UnsupportedUrl { url: strip_user_info(input), reason: reason.to_owned() };
        if input.trim().is_empty() {
            return Err(unsupported("the url is empty"));
        }
        if input.contains('\0') {
            return Err(unsupported("the url contains a NUL byte"));
        }
        if input.chars().any(char::is_control) {
            return Err(unsupported("the url contains a control character"));
        }
        if input.starts_with('-') {
            // git would read it as an option.
            return Err(unsupported("the url starts with '-'"));
        }
        if let Some((scheme, rest)) = input.split_once("://") {
            return match scheme.to_ascii_lowercase().as_str() {
                "file" | "git" => {
                    Ok(RemoteUrl { url: input.to_owned(), transport: Transport::Libgit2, credentials: None })
                }
                "http" | "https" => {
                    let (credentials, host_and_path) = split_user_info(rest);
                    if host_and_path.is_empty() || host_and_path.starts_with('/') {
                        return Err(unsupported("the url names no host"));
                    }
                    let transport =
                        if scheme.eq_ignore_ascii_case("https") { Transport::Https } else { Transport::Libgit2 };
                    Ok(RemoteUrl { url: format!("{scheme}://{host_and_path}"), transport, credentials })
                }
                "ssh" | "git+ssh" | "ssh+git" => {
                    let authority = rest.split('/').next().unwrap_or_default();
                    if authority.rsplit_once('@').is_some_and(|(user_info, _)| user_info.contains(':')) {
                        return Err(unsupported("an ssh url cannot carry a password (configure an ssh key)"));
                    }
                    let host = authority.rsplit('@').next().unwrap_or_default();
                    if host.is_empty() || host.starts_with('-') {
                        return Err(unsupported("the url names no host"));
                    }
                    Ok(RemoteUrl { url: input.to_owned(), transport: Transport::Ssh, credentials: None })
                }
                other => Err(unsupported(&format!(
                    "unknown url scheme {other:?} (use https://, ssh://, user@host:path, http://, git://, file:// or a path)"
                ))),
            };
        }
        if is_scp_like(input) {
            let host = input.split(':').next().unwrap_or_default().rsplit('@').next().unwrap_or_default();
            if host.is_empty() || host.starts_with('-') {
                return Err(unsupported("the url names no host"));
            }
            return Ok(RemoteUrl { url: input.to_owned(), transport: Transport::Ssh, credentials: None });
        }
        // A plain path: make it absolute so that the mirror does not depend on the working
        // directory of whichever process opened it first.
        let absolute = std::path::absolute(Path::new(input))
            .map_err(|error| unsupported(&format!("cannot resolve the path: {error}")))?;
        let url = absolute.to_str().ok_or_else(|| unsupported("the path is not valid UTF-8"))?.to_owned();
        Ok(RemoteUrl { url, transport: Transport::Path, credentials: None })
    }

    /// The repository path when the remote was given as a plain path rather than a URL.
    pub(crate) fn local_path(&self) -> Option<&Path> {
        (self.transport == Transport::Path).then(|| Path::new(&self.url))
    }

    /// How the remote is reached.
    pub(crate) fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether network operations go through the git command line (https and ssh).
    pub(crate) fn uses_cli(&self) -> bool {
        matches!(self.transport, Transport::Https | Transport::Ssh)
    }

    /// User and password embedded in the URL, if any.
    pub(crate) fn embedded_credentials(&self) -> Option<&(String, String)> {
        self.credentials.as_ref()
    }

    /// `host[:port]` of an http(s) URL, as git's credential protocol names it.
    pub(crate) fn http_host(&self) -> Option<&str> {
        let (_, rest) = self.url.split_once("://")?;
        Some(rest.split('/').next().unwrap_or_default())
    }

    /// The URL as given to git, without credentials.
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
pub(crate) struct CredentialSupply {
    /// User and password to send, if any.
    credentials: Option<(String, String)>,
    /// Where they came from, for messages (`the url`, `environment variable X`).
    source: String,
    requests: Cell<u32>,
    failure: std::cell::RefCell<Option<String>>,
}

impl CredentialSupply {
    /// Answers with `credentials` (taken from `source`), or refuses when there are none.
    pub(crate) fn new(credentials: Option<(String, String)>, source: impl Into<String>) -> Self {
        CredentialSupply { credentials, source: source.into(), requests: Cell::new(0), failure: Default::default() }
    }

    /// Callbacks that answer credential requests from this supply.
    pub(crate) fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |_url, _username, allowed| self.answer(allowed));
        callbacks
    }

    fn fail(&self, reason: String) -> git2::Error {
        let error = git2::Error::from_str(&reason);
        *self.failure.borrow_mut() = Some(reason);
        error
    }

    fn answer(&self, allowed: CredentialType) -> Result<Cred, git2::Error> {
        let request = self.requests.get().saturating_add(1);
        self.requests.set(request);
        if request > 1 {
            return Err(self.fail(format!("the remote rejected the credentials from {}", self.source)));
        }
        match &self.credentials {
            Some((user, password)) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                Cred::userpass_plaintext(user, password)
            }
            Some(_) => Err(self.fail("the remote asked for a kind of credentials other than user and password".into())),
            None => Err(self.fail(
                "the remote requires credentials and none are configured (a token in the repository's `auth`)".into(),
            )),
        }
    }

    /// Why authentication failed, if it did during the operation.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
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
    fn https_and_ssh_go_through_the_command_line() {
        let https = RemoteUrl::parse("https://bot:hunter2@github.com/org/dev.git").unwrap();
        assert_eq!(https.transport(), Transport::Https);
        assert_eq!(https.as_str(), "https://github.com/org/dev.git");
        assert_eq!(https.http_host(), Some("github.com"));
        assert_eq!(https.embedded_credentials(), Some(&("bot".to_owned(), "hunter2".to_owned())));
        assert!(!format!("{https:?}").contains("hunter2"));
        for ssh in
            ["ssh://git@github.com/org/dev.git", "ssh://git@127.0.0.1:2222/srv/dev.git", "git@github.com:org/dev.git"]
        {
            let remote = RemoteUrl::parse(ssh).unwrap();
            assert_eq!(remote.transport(), Transport::Ssh, "{ssh}");
            assert!(remote.uses_cli());
            assert_eq!(remote.as_str(), ssh);
            // An scp-like url is not a path on this machine.
            assert!(remote.local_path().is_none(), "{ssh}");
        }
        assert!(!RemoteUrl::parse("http://git.example/dev.git").unwrap().uses_cli());
    }

    #[test]
    fn malformed_urls_say_what_is_wrong() {
        assert!(reason_for("ftp://example/dev.git").contains("unknown url scheme"));
        assert!(reason_for("").contains("empty"));
        assert!(reason_for("https:///dev.git").contains("no host"));
        assert!(reason_for("ssh://git:pw@host/dev.git").contains("cannot carry a password"));
        assert!(reason_for("-uhost:dev.git").contains("starts with '-'"));
        assert!(reason_for("ssh://-oProxyCommand=x/dev.git").contains("no host"));
        assert!(reason_for("https://host/dev\n.git").contains("control character"));
    }

    #[test]
    fn rejected_urls_do_not_echo_passwords() {
        let error = RemoteUrl::parse("ftp://bot:hunter2@example.com/org/dev.git").unwrap_err();
        let message = error.to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("ftp://example.com/org/dev.git"), "{message}");
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
