//! Errors of the git adapter.

use std::path::PathBuf;

use git2::{ErrorClass, ErrorCode};

/// A failure of the git adapter. Messages read after "failed to …" and name the remote (without
/// credentials), branch, commit or path involved.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The remote URL uses a transport this build cannot speak, or is malformed.
    #[error("use remote {url:?}: {reason}")]
    UnsupportedUrl {
        /// The URL as given, with any user information removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The cache directory holding mirrors could not be prepared.
    #[error("prepare mirror directory {}", path.display())]
    MirrorDirectory {
        /// The directory that could not be created, renamed or read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// An existing mirror could not be opened or created.
    #[error("open mirror {} of {url}", path.display())]
    OpenMirror {
        /// The remote the mirror belongs to.
        url: String,
        /// Where the mirror lives.
        path: PathBuf,
        /// The underlying libgit2 error.
        #[source]
        source: git2::Error,
    },

    /// Fetching from the remote failed (network, missing repository, corrupt data).
    #[error("fetch {refspecs} from {url}")]
    Fetch {
        /// The remote.
        url: String,
        /// The refspecs that were requested, space separated.
        refspecs: String,
        /// The underlying libgit2 error.
        #[source]
        source: git2::Error,
    },

    /// The remote asked for credentials that are missing or were refused.
    #[error("authenticate to {url}: {reason}")]
    Authentication {
        /// The remote.
        url: String,
        /// Why authentication failed.
        reason: String,
    },

    /// The git command line, which runs the network operations of https and ssh remotes,
    /// failed (or could not be started).
    #[error("run git {operation} against {url}: {message}")]
    Command {
        /// The remote.
        url: String,
        /// What git was asked to do (`fetch`, `push`).
        operation: &'static str,
        /// What git said (its last lines of error output), or why it could not run.
        message: String,
        /// Whether the failure looks temporary (network, server error, timeout).
        transient: bool,
    },

    /// Pushing failed before the remote could accept or reject the update.
    #[error("push branch {branch} to {url}")]
    Push {
        /// The remote.
        url: String,
        /// The branch that was being pushed.
        branch: String,
        /// The underlying libgit2 error.
        #[source]
        source: git2::Error,
    },

    /// The remote received the push and refused the update (hook, protection, race).
    #[error("push branch {branch} to {url}: the remote rejected it ({reason})")]
    PushRejected {
        /// The remote.
        url: String,
        /// The branch that was refused.
        branch: String,
        /// The status the remote sent back.
        reason: String,
    },

    /// The branch would have to be rewritten, and only gantry's own branches may be.
    #[error(
        "update branch {branch} on {url}: it is at {remote_commit}, which {commit} does not \
         descend from, and only branches under gantry/ may be force-updated"
    )]
    NotGantryOwned {
        /// The remote.
        url: String,
        /// The branch that would have been rewritten.
        branch: String,
        /// The commit that was to be pushed.
        commit: String,
        /// Where the branch is on the remote.
        remote_commit: String,
    },

    /// A commit id is not a full hexadecimal object id.
    #[error("parse commit id {value:?}: expected 40 hexadecimal characters")]
    InvalidCommitId {
        /// The text that was given.
        value: String,
    },

    /// A commit id is well formed but the mirror does not hold that commit.
    #[error("find commit {commit} in the mirror of {url}")]
    CommitNotFound {
        /// The remote whose mirror was searched.
        url: String,
        /// The commit that was looked up.
        commit: String,
        /// The underlying libgit2 error.
        #[source]
        source: git2::Error,
    },

    /// A branch name is not a valid git branch name.
    #[error("use branch name {branch:?}: it is not a valid git branch name")]
    InvalidBranch {
        /// The name that was given.
        branch: String,
    },

    /// A file path is malformed or collides with the tree it is written into.
    #[error("use path {path:?}: {reason}")]
    InvalidPath {
        /// The path that was given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A path names a directory or submodule where a file was expected.
    #[error("read {path:?} at {commit}: it is not a file")]
    NotAFile {
        /// The commit that was read.
        commit: String,
        /// The path that was read.
        path: String,
    },

    /// The requested files already have the requested contents, so a commit would be empty.
    #[error("commit to {branch}: the files already match parent {parent}")]
    NoChanges {
        /// The branch the commit was meant for.
        branch: String,
        /// The parent commit that already holds the content.
        parent: String,
    },

    /// The author identity cannot be written into a commit.
    #[error("use signature {name:?} <{email}>")]
    InvalidSignature {
        /// The name that was given.
        name: String,
        /// The email that was given.
        email: String,
        /// The underlying libgit2 error.
        #[source]
        source: git2::Error,
    },

    /// A local operation on a mirror's object database or refs failed.
    #[error("{operation} in the mirror of {url}")]
    Repository {
        /// The remote whose mirror was being used.
        url: String,
        /// What was being done, as a fragment ("write the commit").
        operation: &'static str,
        /// The underlying libgit2 error.
        #[source]
        source: git2::Error,
    },

    /// The change does not apply on top of where the branch is now: the same lines were
    /// changed there by someone else.
    #[error(
        "rebase {commit} onto {onto} of branch {branch} in {url}: conflicting changes in {}",
        paths.join(", ")
    )]
    RebaseConflict {
        /// The remote.
        url: String,
        /// The branch the change was to land on.
        branch: String,
        /// The commit holding the change.
        commit: String,
        /// Where the branch is now.
        onto: String,
        /// The files changed on both sides.
        paths: Vec<String>,
    },

    /// The branch kept moving: every attempt to land the change lost a race with another
    /// writer.
    #[error("land {commit} on branch {branch} of {url}: the branch moved during each of {attempts} attempts")]
    KeptMoving {
        /// The remote.
        url: String,
        /// The branch.
        branch: String,
        /// The commit holding the change.
        commit: String,
        /// How many attempts were made.
        attempts: u32,
    },

    /// A bare repository could not be created or populated.
    #[error("{operation} in repository {}", path.display())]
    InitRepository {
        /// Where the repository was being created.
        path: PathBuf,
        /// What was being done, as a fragment ("create the repository").
        operation: &'static str,
        /// The underlying libgit2 error.
        #[source]
        source: git2::Error,
    },
}

impl GitError {
    /// Whether retrying the same operation later may succeed: network failures, server errors,
    /// locked refs, and races with another writer (a branch that moved between fetch and push).
    /// Bad input, missing credentials and refused rewrites are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            GitError::Fetch { url, source, .. } | GitError::Push { url, source, .. } => {
                is_transient_transport(url, source)
            }
            GitError::PushRejected { reason, .. } => is_transient_rejection(reason),
            GitError::KeptMoving { .. } => true,
            GitError::Command { transient, .. } => *transient,
            GitError::RebaseConflict { .. } => false,
            GitError::OpenMirror { source, .. }
            | GitError::Repository { source, .. }
            | GitError::InitRepository { source, .. } => source.code() == ErrorCode::Locked,
            GitError::MirrorDirectory { source, .. } => {
                matches!(source.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock)
            }
            GitError::UnsupportedUrl { .. }
            | GitError::Authentication { .. }
            | GitError::NotGantryOwned { .. }
            | GitError::InvalidCommitId { .. }
            | GitError::CommitNotFound { .. }
            | GitError::InvalidBranch { .. }
            | GitError::InvalidPath { .. }
            | GitError::NotAFile { .. }
            | GitError::NoChanges { .. }
            | GitError::InvalidSignature { .. } => false,
        }
    }
}

fn is_transient_transport(url: &str, error: &git2::Error) -> bool {
    // A lock held by another writer, or abandoned by a crashed one (swept once it is old):
    // the same operation succeeds later.
    if error.message().contains("failed to lock file") {
        return true;
    }
    match error.code() {
        ErrorCode::Locked | ErrorCode::NotFastForward | ErrorCode::Timeout => return true,
        ErrorCode::Auth | ErrorCode::Certificate | ErrorCode::InvalidSpec => return false,
        _ => {}
    }
    match error.class() {
        ErrorClass::Net | ErrorClass::Ssl => true,
        // Socket failures (refused, reset) are OS errors too; on a local path the same class
        // means the repository is missing or unreadable, which waiting will not fix.
        ErrorClass::Os => is_network_url(url),
        ErrorClass::Http => match http_status(error.message()) {
            Some(status) => status == 408 || status == 429 || status >= 500,
            // No status means the connection broke mid-exchange, unless it was about
            // authentication, which the same request will not fix.
            None => !error.message().contains("authentication"),
        },
        _ => false,
    }
}

fn is_network_url(url: &str) -> bool {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    matches!(scheme.as_deref(), Some("http" | "https" | "git" | "ssh"))
}

/// The HTTP status libgit2 puts at the end of messages such as "unexpected http status code: 503".
fn http_status(message: &str) -> Option<u16> {
    let (_, tail) = message.rsplit_once(':')?;
    tail.trim().parse().ok()
}

/// Rejections that describe a race with another writer rather than a policy.
fn is_transient_rejection(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    ["non-fast-forward", "fetch first", "lock", "stale info", "already exists"]
        .iter()
        .any(|marker| reason.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_error(code: ErrorCode, class: ErrorClass, message: &str) -> git2::Error {
        git2::Error::new(code, class, message)
    }

    fn fetch_error(source: git2::Error) -> GitError {
        GitError::Fetch {
            url: "http://git.example/dev.git".to_owned(),
            refspecs: "+refs/heads/main:refs/remotes/origin/main".to_owned(),
            source,
        }
    }

    #[test]
    fn network_and_server_failures_are_transient() {
        for source in [
            git_error(ErrorCode::GenericError, ErrorClass::Net, "failed to connect to 127.0.0.1: connection refused"),
            git_error(ErrorCode::GenericError, ErrorClass::Http, "unexpected http status code: 503"),
            git_error(ErrorCode::GenericError, ErrorClass::Http, "unexpected http status code: 429"),
            git_error(ErrorCode::GenericError, ErrorClass::Http, "unexpected EOF"),
            git_error(ErrorCode::Locked, ErrorClass::Reference, "failed to lock file"),
            git_error(ErrorCode::NotFastForward, ErrorClass::Reference, "cannot push non-fastforwardable reference"),
        ] {
            let error = fetch_error(source);
            assert!(error.is_transient(), "{error:?}");
        }
    }

    #[test]
    fn client_side_failures_are_permanent() {
        for source in [
            git_error(ErrorCode::GenericError, ErrorClass::Http, "unexpected http status code: 404"),
            git_error(ErrorCode::GenericError, ErrorClass::Http, "unexpected authentication failure"),
            git_error(ErrorCode::Auth, ErrorClass::Http, "authentication required"),
            git_error(ErrorCode::NotFound, ErrorClass::Repository, "could not find repository"),
        ] {
            let error = fetch_error(source);
            assert!(!error.is_transient(), "{error:?}");
        }
    }

    #[test]
    fn os_errors_are_transient_only_over_the_network() {
        let refused =
            git_error(ErrorCode::GenericError, ErrorClass::Os, "failed to connect to 127.0.0.1: Connection refused");
        assert!(fetch_error(refused).is_transient());
        let local = GitError::Fetch {
            url: "file:///srv/missing.git".to_owned(),
            refspecs: "+refs/heads/*:refs/remotes/origin/*".to_owned(),
            source: git_error(
                ErrorCode::GenericError,
                ErrorClass::Os,
                "failed to resolve path '/srv/missing.git': No such file or directory",
            ),
        };
        assert!(!local.is_transient());
    }

    #[test]
    fn rejections_are_transient_only_for_races() {
        let rejected = |reason: &str| GitError::PushRejected {
            url: "file:///srv/dev.git".to_owned(),
            branch: "gantry/dev/web/0123456789ab".to_owned(),
            reason: reason.to_owned(),
        };
        assert!(rejected("failed to lock").is_transient());
        assert!(rejected("non-fast-forward").is_transient());
        assert!(!rejected("pre-receive hook declined").is_transient());
        assert!(!rejected("protected branch hook declined").is_transient());
    }

    #[test]
    fn messages_read_after_failed_to() {
        let error = GitError::InvalidBranch { branch: "bad..name".to_owned() };
        let message = error.to_string();
        assert!(message.starts_with("use branch name"), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }
}
