//! Network operations of https and ssh remotes through the `git` command line.
//!
//! This build's libgit2 has neither a TLS nor an ssh transport (both would bring in OpenSSL),
//! so for those remotes `git fetch` and `git push` run against the warm mirror, and everything
//! else (reading, building commits, comparing history) stays in libgit2.
//!
//! Secrets never appear in arguments or logs:
//!
//! - an https token reaches git through a credential helper that is a small shell function
//!   printing two environment variables, which are set on the child process only; the helper
//!   answers only for the remote's own protocol and host, so a redirect elsewhere gets nothing;
//! - an ssh key is named by path in `GIT_SSH_COMMAND` (`-i KEY -o IdentitiesOnly=yes`), with
//!   `BatchMode=yes`, so a missing key or passphrase fails instead of prompting.
//!
//! Git never prompts: `GIT_TERMINAL_PROMPT=0` and no askpass program, so wrong credentials end
//! in one clear, permanent [`GitError::Authentication`] naming the remote. Messages are read
//! with `LC_ALL=C` so they can be classified (transient network trouble vs. permanent refusal).

use std::path::Path;
use std::process::{Command, Stdio};

use super::GitError;
use super::auth::{HostKeyChecking, RemoteAuth};
use super::remote::{RemoteUrl, Transport};

/// Environment variables of the gantry process that must not reach git: they would point it at
/// another repository, make it prompt, or trace traffic (headers included) to a file.
const SCRUBBED_ENVIRONMENT: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_TRACE",
    "GIT_TRACE_CURL",
    "GIT_TRACE_PACKET",
    "GIT_CURL_VERBOSE",
];

/// The credential helper: answers `get` for the expected protocol and host with the user name
/// and token from its environment, and ignores everything else (`store`, `erase`, other hosts).
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get || exit 0; protocol=; host=; \
while IFS= read -r line; do case \"$line\" in protocol=*) protocol=${line#protocol=};; \
host=*) host=${line#host=};; esac; done; \
test \"$protocol\" = \"$GANTRY_GIT_PROTOCOL\" && test \"$host\" = \"$GANTRY_GIT_HOST\" || exit 0; \
printf 'username=%s\\npassword=%s\\n' \"$GANTRY_GIT_USERNAME\" \"$GANTRY_GIT_PASSWORD\"; }; f";

/// How much of git's error output goes into a message.
const MESSAGE_LIMIT: usize = 1_500;

/// A prepared git invocation for one remote, and the secret it carries (to scrub from output).
struct Invocation {
    command: Command,
    secret: Option<String>,
}

/// Builds `git --git-dir=<git_dir> -c … <operation args>` for `remote`, with the credentials
/// (already read) in the child's environment only.
fn command(
    git_dir: &Path,
    remote: &RemoteUrl,
    auth: &RemoteAuth,
    credentials: Option<&(String, String)>,
    operation: &[&str],
) -> Result<Command, GitError> {
    let mut command = Command::new("git");
    command.arg(format!("--git-dir={}", git_dir.display()));
    let mut config = |setting: String| {
        command.arg("-c").arg(setting);
    };
    // An empty value clears helpers from the user's configuration, so only this one answers
    // and nothing is stored anywhere.
    config("credential.helper=".to_owned());
    config("core.askPass=".to_owned());
    config("gc.auto=0".to_owned());
    config("maintenance.auto=false".to_owned());
    // A stalled connection fails instead of hanging a worker forever.
    config("http.lowSpeedLimit=1".to_owned());
    config("http.lowSpeedTime=60".to_owned());
    if remote.transport() == Transport::Https {
        if credentials.is_some() {
            config(format!("credential.helper={CREDENTIAL_HELPER}"));
        }
        if let Some(ca_file) = &auth.ca_file {
            config(format!("http.sslCAInfo={}", ca_file.display()));
        }
    }
    command.args(operation);
    for name in SCRUBBED_ENVIRONMENT {
        command.env_remove(name);
    }
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "never")
        .env("LC_ALL", "C")
        .env("LANGUAGE", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((username, password)) = credentials {
        command
            .env("GANTRY_GIT_PROTOCOL", "https")
            .env("GANTRY_GIT_HOST", remote.http_host().unwrap_or_default())
            .env("GANTRY_GIT_USERNAME", username)
            .env("GANTRY_GIT_PASSWORD", password);
    }
    if remote.transport() == Transport::Https && auth.ca_file.is_some() {
        // These would override `http.sslCAInfo`.
        command.env_remove("GIT_SSL_CAINFO").env_remove("GIT_SSL_CAPATH");
    }
    if remote.transport() == Transport::Ssh {
        command.env(
            "GIT_SSH_COMMAND",
            ssh_command(auth).map_err(|reason| GitError::UnsupportedUrl { url: remote.as_str().to_owned(), reason })?,
        );
    }
    Ok(command)
}

/// The `ssh` command git runs for an ssh remote: never interactive, only the configured key,
/// host keys checked as configured.
pub(crate) fn ssh_command(auth: &RemoteAuth) -> Result<String, String> {
    let mut words = vec![
        "ssh".to_owned(),
        "-o".to_owned(),
        "BatchMode=yes".to_owned(),
        "-o".to_owned(),
        "ConnectTimeout=30".to_owned(),
        "-o".to_owned(),
        "ServerAliveInterval=15".to_owned(),
    ];
    if let Some(key) = &auth.ssh_key {
        words.push("-i".to_owned());
        words.push(shell_quote(&path_text(key, "ssh_key")?));
        words.push("-o".to_owned());
        words.push("IdentitiesOnly=yes".to_owned());
    }
    match auth.host_key_checking {
        HostKeyChecking::Strict => words.extend(["-o".to_owned(), "StrictHostKeyChecking=yes".to_owned()]),
        HostKeyChecking::AcceptNew => words.extend(["-o".to_owned(), "StrictHostKeyChecking=accept-new".to_owned()]),
        HostKeyChecking::Off => words.extend([
            "-o".to_owned(),
            "StrictHostKeyChecking=no".to_owned(),
            "-o".to_owned(),
            "UserKnownHostsFile=/dev/null".to_owned(),
            "-o".to_owned(),
            "LogLevel=ERROR".to_owned(),
        ]),
    }
    if let Some(known_hosts) = &auth.known_hosts
        && auth.host_key_checking != HostKeyChecking::Off
    {
        // ssh splits the option's value at spaces unless it is double-quoted.
        let path = path_text(known_hosts, "known_hosts")?;
        words.push("-o".to_owned());
        words.push(shell_quote(&format!("UserKnownHostsFile=\"{path}\"")));
    }
    Ok(words.join(" "))
}

fn path_text(path: &Path, setting: &str) -> Result<String, String> {
    let text = path.to_str().ok_or_else(|| format!("{setting} path {} is not valid UTF-8", path.display()))?;
    if text.chars().any(|character| character.is_control() || character == '"') {
        return Err(format!("{setting} path {text:?} holds a control character or a double quote"));
    }
    Ok(text.to_owned())
}

/// Quotes `word` for `sh`: single quotes, with embedded single quotes closed and escaped.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The credentials to send to an https remote: those in the URL, else the configured token
/// (read now).
fn credentials(remote: &RemoteUrl, auth: &RemoteAuth) -> Result<Option<(String, String)>, GitError> {
    if remote.transport() != Transport::Https {
        return Ok(None);
    }
    if let Some(embedded) = remote.embedded_credentials() {
        return Ok(Some(embedded.clone()));
    }
    auth.token_credentials().map_err(|reason| GitError::Authentication {
        url: remote.as_str().to_owned(),
        reason: format!("read the token: {reason}"),
    })
}

fn prepare(git_dir: &Path, remote: &RemoteUrl, auth: &RemoteAuth, operation: &[&str]) -> Result<Invocation, GitError> {
    let credentials = credentials(remote, auth)?;
    let command = command(git_dir, remote, auth, credentials.as_ref(), operation)?;
    Ok(Invocation { command, secret: credentials.map(|(_, password)| password) })
}

/// What a finished git process reported.
struct Finished {
    success: bool,
    stdout: String,
    stderr: String,
}

fn run(invocation: Invocation, remote: &RemoteUrl, operation: &'static str) -> Result<Finished, GitError> {
    let Invocation { mut command, secret } = invocation;
    let output = command.output().map_err(|error| GitError::Command {
        url: remote.as_str().to_owned(),
        operation,
        message: format!("could not start git (https and ssh remotes need the git command line): {error}"),
        transient: false,
    })?;
    let scrub = |text: &[u8]| {
        let text = String::from_utf8_lossy(text).into_owned();
        match &secret {
            Some(secret) if !secret.is_empty() => text.replace(secret.as_str(), "***"),
            _ => text,
        }
    };
    Ok(Finished { success: output.status.success(), stdout: scrub(&output.stdout), stderr: scrub(&output.stderr) })
}

/// Fetches `refspecs` from `remote` into the repository at `git_dir`. A refspec whose source
/// branch does not exist on the remote is dropped (and returned, so the caller can forget its
/// tracking ref) instead of failing the fetch, as libgit2 does.
pub(crate) fn fetch(
    git_dir: &Path,
    remote: &RemoteUrl,
    auth: &RemoteAuth,
    refspecs: &[String],
) -> Result<Vec<String>, GitError> {
    let mut remaining: Vec<String> = refspecs.to_vec();
    let mut missing = Vec::new();
    while !remaining.is_empty() {
        let mut operation = vec!["fetch", "--quiet", "--prune", "--no-tags", "--no-write-fetch-head"];
        operation.extend(["--no-recurse-submodules", "--", remote.as_str()]);
        operation.extend(remaining.iter().map(String::as_str));
        let finished = run(prepare(git_dir, remote, auth, &operation)?, remote, "fetch")?;
        if finished.success {
            return Ok(missing);
        }
        let absent = missing_remote_ref(&finished.stderr);
        let position = absent.and_then(|absent| remaining.iter().position(|refspec| refspec_source(refspec) == absent));
        match position {
            Some(position) => missing.push(remaining.remove(position)),
            None => return Err(failure(remote, auth, "fetch", &finished.stderr)),
        }
    }
    Ok(missing)
}

/// Pushes `refspec` to `remote` from the repository at `git_dir`. A refusal by the remote (a
/// hook, a protected branch, a non-fast-forward) is [`GitError::PushRejected`].
pub(crate) fn push(
    git_dir: &Path,
    remote: &RemoteUrl,
    auth: &RemoteAuth,
    branch: &str,
    refspec: &str,
) -> Result<(), GitError> {
    let operation = ["push", "--porcelain", "--no-verify", "--", remote.as_str(), refspec];
    let finished = run(prepare(git_dir, remote, auth, &operation)?, remote, "push")?;
    let rejections = push_rejections(&finished.stdout);
    if !rejections.is_empty() {
        return Err(GitError::PushRejected {
            url: remote.as_str().to_owned(),
            branch: branch.to_owned(),
            reason: rejections.join("; "),
        });
    }
    if finished.success { Ok(()) } else { Err(failure(remote, auth, "push", &finished.stderr)) }
}

/// `refs/heads/x` of `+refs/heads/x:refs/remotes/origin/x`.
fn refspec_source(refspec: &str) -> &str {
    refspec.trim_start_matches('+').split(':').next().unwrap_or_default()
}

/// The ref named by git's "couldn't find remote ref <ref>".
fn missing_remote_ref(stderr: &str) -> Option<&str> {
    stderr.lines().find_map(|line| line.split("couldn't find remote ref ").nth(1)).map(str::trim)
}

/// The refused updates of `git push --porcelain`: lines `!\t<src>:<dst>\t<summary> (<reason>)`.
fn push_rejections(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("!\t"))
        .map(|line| line.split('\t').nth(1).unwrap_or(line).trim().to_owned())
        .collect()
}

/// The meaningful part of git's error output: hints and progress dropped, bounded in size.
fn summary(stderr: &str) -> String {
    let lines: Vec<&str> =
        stderr.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with("hint:")).collect();
    let mut text = lines.join(" / ");
    if text.len() > MESSAGE_LIMIT {
        let mut cut = MESSAGE_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    if text.is_empty() { "git failed without saying why".to_owned() } else { text }
}

/// Turns a failed fetch or push into an error: authentication problems are permanent and say
/// which credentials were refused; network trouble and server errors are transient.
fn failure(remote: &RemoteUrl, auth: &RemoteAuth, operation: &'static str, stderr: &str) -> GitError {
    let lower = stderr.to_ascii_lowercase();
    let said = summary(stderr);
    let url = remote.as_str().to_owned();
    let has = |markers: &[&str]| markers.iter().any(|marker| lower.contains(marker));
    if has(&["host key verification failed", "remote host identification has changed"]) {
        let known_hosts = auth
            .known_hosts
            .as_ref()
            .map_or_else(|| "ssh's default known_hosts".to_owned(), |path| path.display().to_string());
        return GitError::Authentication {
            url,
            reason: format!("the server's ssh host key is not trusted by {known_hosts} ({said})"),
        };
    }
    if has(&["unprotected private key file", "bad permissions"]) {
        return GitError::Authentication {
            url,
            reason: format!("ssh refuses the key file because others can read it; make it mode 0600 ({said})"),
        };
    }
    if has(&[
        "authentication failed",
        "could not read username",
        "could not read password",
        "permission denied (publickey",
        "permission denied, please try again",
        "invalid username or password",
        "http basic: access denied",
        "returned error: 401",
        "returned error: 403",
        "no such identity",
        "load key",
    ]) {
        let offered = match remote.transport() {
            Transport::Ssh => auth.ssh_key.as_ref().map_or_else(
                || "ssh's default keys were refused".to_owned(),
                |key| format!("the ssh key {} was refused", key.display()),
            ),
            _ => match (remote.embedded_credentials(), auth.token_source()) {
                (Some(_), _) => "the credentials in the url were refused".to_owned(),
                (None, Some(source)) => format!("the token from {source} was refused"),
                (None, None) => {
                    "the remote requires credentials and none are configured (a token in the repository's `auth`)"
                        .to_owned()
                }
            },
        };
        return GitError::Authentication { url, reason: format!("{offered} ({said})") };
    }
    let transient = has(&[
        "could not resolve host",
        "temporary failure in name resolution",
        "connection refused",
        "failed to connect",
        "couldn't connect to server",
        "connection reset",
        "connection timed out",
        "operation timed out",
        "timed out",
        "network is unreachable",
        "no route to host",
        "early eof",
        "unexpected disconnect",
        "rpc failed",
        "returned error: 408",
        "returned error: 429",
        "returned error: 5",
        "the remote end hung up unexpectedly",
        "connection closed by",
        "broken pipe",
        "cannot lock ref",
        "unable to create",
    ]);
    GitError::Command { url, operation, message: said, transient }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::auth::SecretSource;
    use super::*;

    fn args(command: &Command) -> Vec<String> {
        command.get_args().map(|arg| arg.to_string_lossy().into_owned()).collect()
    }

    fn env(command: &Command, name: &str) -> Option<String> {
        command
            .get_envs()
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| value.map(|value| value.to_string_lossy().into_owned()))
    }

    #[test]
    fn tokens_travel_in_the_environment_not_in_arguments() {
        let remote = RemoteUrl::parse("https://git.example:8443/acme/env-prod.git").unwrap();
        let auth = RemoteAuth { ca_file: Some(PathBuf::from("/etc/gantry/ca.pem")), ..RemoteAuth::none() };
        let credentials = ("x-access-token".to_owned(), "ghs_s3cret".to_owned());
        let command = command(Path::new("/m.git"), &remote, &auth, Some(&credentials), &["fetch"]).unwrap();
        let arguments = args(&command);
        assert!(arguments.iter().all(|arg| !arg.contains("ghs_s3cret")), "{arguments:?}");
        assert!(arguments.contains(&"http.sslCAInfo=/etc/gantry/ca.pem".to_owned()), "{arguments:?}");
        assert!(arguments.iter().any(|arg| arg.starts_with("credential.helper=!f()")), "{arguments:?}");
        assert_eq!(arguments.iter().filter(|arg| *arg == "credential.helper=").count(), 1);
        assert_eq!(env(&command, "GANTRY_GIT_PASSWORD").as_deref(), Some("ghs_s3cret"));
        assert_eq!(env(&command, "GANTRY_GIT_HOST").as_deref(), Some("git.example:8443"));
        assert_eq!(env(&command, "GIT_TERMINAL_PROMPT").as_deref(), Some("0"));
        // Removed variables show up with no value.
        assert!(command.get_envs().any(|(key, value)| key == "GIT_ASKPASS" && value.is_none()));
    }

    #[test]
    fn the_credential_helper_answers_only_its_own_host() {
        let helper = CREDENTIAL_HELPER.strip_prefix('!').unwrap();
        let ask = |action: &str, input: &str| {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(format!("{helper} \"$@\""))
                .arg("helper")
                .arg(action)
                .env("GANTRY_GIT_PROTOCOL", "https")
                .env("GANTRY_GIT_HOST", "git.example:8443")
                .env("GANTRY_GIT_USERNAME", "bot")
                .env("GANTRY_GIT_PASSWORD", "p a'ss")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            // For anything but `get` the helper exits without reading, as git allows (it ignores
            // SIGPIPE while talking to helpers); the write may then meet a closed pipe.
            match std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()) {
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.unwrap(),
            }
            String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
        };
        assert_eq!(ask("get", "protocol=https\nhost=git.example:8443\n\n"), "username=bot\npassword=p a'ss\n");
        assert_eq!(ask("get", "protocol=https\nhost=elsewhere.example\n\n"), "");
        assert_eq!(ask("get", "protocol=http\nhost=git.example:8443\n\n"), "");
        assert_eq!(ask("store", "protocol=https\nhost=git.example:8443\n\n"), "");
    }

    #[test]
    fn ssh_runs_batch_mode_with_only_the_configured_key() {
        let auth = RemoteAuth {
            ssh_key: Some(PathBuf::from("/run/secrets/deploy key")),
            known_hosts: Some(PathBuf::from("/etc/gantry/known_hosts")),
            ..RemoteAuth::none()
        };
        let text = ssh_command(&auth).unwrap();
        assert_eq!(
            text,
            "ssh -o BatchMode=yes -o ConnectTimeout=30 -o ServerAliveInterval=15 -i '/run/secrets/deploy key' \
             -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o 'UserKnownHostsFile=\"/etc/gantry/known_hosts\"'"
        );
        let accept_new = RemoteAuth { host_key_checking: HostKeyChecking::AcceptNew, ..RemoteAuth::none() };
        assert!(ssh_command(&accept_new).unwrap().ends_with("StrictHostKeyChecking=accept-new"));
        let off = RemoteAuth {
            host_key_checking: HostKeyChecking::Off,
            known_hosts: Some(PathBuf::from("/ignored")),
            ..RemoteAuth::none()
        };
        let text = ssh_command(&off).unwrap();
        assert!(text.contains("UserKnownHostsFile=/dev/null") && !text.contains("/ignored"), "{text}");
        let quoted = RemoteAuth { ssh_key: Some(PathBuf::from("/k/it's")), ..RemoteAuth::none() };
        assert!(ssh_command(&quoted).unwrap().contains("-i '/k/it'\\''s'"));
        let bad = RemoteAuth { known_hosts: Some(PathBuf::from("/a\"b")), ..RemoteAuth::none() };
        assert!(ssh_command(&bad).is_err());

        let remote = RemoteUrl::parse("git@github.com:acme/env-prod.git").unwrap();
        let command = command(Path::new("/m.git"), &remote, &auth, None, &["fetch"]).unwrap();
        assert_eq!(env(&command, "GIT_SSH_COMMAND"), Some(ssh_command(&auth).unwrap()));
        assert!(args(&command).iter().all(|arg| !arg.starts_with("credential.helper=!")));
    }

    #[test]
    fn a_token_that_cannot_be_read_is_an_authentication_error() {
        let remote = RemoteUrl::parse("https://git.example/acme/env.git").unwrap();
        let auth = RemoteAuth {
            token: Some(SecretSource::Env("GANTRY_TEST_TOKEN_THAT_IS_NOT_SET".into())),
            ..RemoteAuth::none()
        };
        let error = prepare(Path::new("/m.git"), &remote, &auth, &["fetch"]).err().unwrap();
        assert!(matches!(error, GitError::Authentication { .. }), "{error:?}");
        assert!(error.to_string().contains("GANTRY_TEST_TOKEN_THAT_IS_NOT_SET is not set"), "{error}");
    }

    #[test]
    fn failures_are_classified() {
        let https = RemoteUrl::parse("https://git.example/acme/env.git").unwrap();
        let auth = RemoteAuth { token: Some(SecretSource::Env("ENV_TOKEN".into())), ..RemoteAuth::none() };
        let refused =
            failure(&https, &auth, "fetch", "fatal: Authentication failed for 'https://git.example/acme/env.git/'\n");
        assert!(
            matches!(&refused, GitError::Authentication { reason, .. } if reason.contains("environment variable ENV_TOKEN"))
        );
        assert!(!refused.is_transient());
        let unreachable = failure(
            &https,
            &auth,
            "fetch",
            "fatal: unable to access 'https://git.example/acme/env.git/': Could not resolve host: git.example\n",
        );
        assert!(unreachable.is_transient(), "{unreachable:?}");
        let server = failure(
            &https,
            &auth,
            "push",
            "error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502\n",
        );
        assert!(server.is_transient());
        let missing = failure(&https, &auth, "fetch", "remote: Repository not found.\nfatal: repository not found\n");
        assert!(!missing.is_transient());

        let ssh = RemoteUrl::parse("ssh://git@127.0.0.1:2222/env.git").unwrap();
        let key = RemoteAuth { ssh_key: Some(PathBuf::from("/keys/deploy")), ..RemoteAuth::none() };
        let denied = failure(
            &ssh,
            &key,
            "fetch",
            "git@127.0.0.1: Permission denied (publickey).\nfatal: Could not read from remote repository.\n",
        );
        assert!(
            matches!(&denied, GitError::Authentication { reason, .. } if reason.contains("/keys/deploy")),
            "{denied:?}"
        );
        let host_key = failure(
            &ssh,
            &key,
            "fetch",
            "Host key verification failed.\nfatal: Could not read from remote repository.\n",
        );
        assert!(matches!(&host_key, GitError::Authentication { reason, .. } if reason.contains("host key")));
        let refused_port =
            failure(&ssh, &key, "fetch", "ssh: connect to host 127.0.0.1 port 2222: Connection refused\n");
        assert!(refused_port.is_transient());
    }

    #[test]
    fn push_output_is_read() {
        let stdout = "To https://git.example/env.git\n!\trefs/gantry-local/a:refs/heads/a\t[rejected] (fetch first)\n\
                      =\trefs/gantry-local/b:refs/heads/b\t[up to date]\nDone\n";
        assert_eq!(push_rejections(stdout), ["[rejected] (fetch first)"]);
        assert_eq!(
            missing_remote_ref("fatal: couldn't find remote ref refs/heads/gantry/x\n"),
            Some("refs/heads/gantry/x")
        );
        assert_eq!(refspec_source("+refs/heads/a/b:refs/remotes/origin/a/b"), "refs/heads/a/b");
        let long = "x".repeat(5_000);
        assert!(summary(&format!("hint: ignore me\nfatal: {long}")).len() <= MESSAGE_LIMIT + 3);
    }
}
