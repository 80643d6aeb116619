//! The git adapter for environment config repos.
//!
//! Every environment's config repo is a git remote that gantry changes only through one small
//! commit on a deterministic branch (`gantry/<env>/<app>/<digest12>`), pushed and then reviewed.
//! The cost of doing so must grow with the change, not with the repository, so:
//!
//! - each remote gets a warm **bare mirror** under a cache directory, named after a hash of the
//!   URL, created once and then fetched incrementally;
//! - nothing checks out a work tree: commits are built by writing blobs and rewriting only the
//!   trees on the way to the changed files;
//! - commits are **deterministic** (same parent, files, message, author and time give the same
//!   id), so a step re-run after a crash produces the identical commit, and pushes are
//!   idempotent (see [`EnvRepo::push_branch`]).
//!
//! Inside a mirror, `refs/remotes/origin/<branch>` is the remote's branch as last fetched and
//! `refs/gantry-local/<branch>` is the commit gantry made for a branch; the latter survives
//! restarts and is what gets pushed.
//!
//! Transports: `file://` URLs, plain paths, `git://` and `http://` go through libgit2;
//! `https://`, `ssh://` and scp-like `user@host:path` remotes are fetched and pushed with the
//! `git` command line (see `cli`), because this build's libgit2 has no TLS or ssh (both would
//! need OpenSSL); everything local stays in libgit2 either way. Credentials come from a
//! [`RemoteAuth`] (an https token from an environment variable or file, an ssh key and known
//! hosts) or, for http(s), from user information in the URL; they never appear in logs or
//! error messages, and a refused credential is a permanent [`GitError::Authentication`], not a
//! prompt or a retry loop.
//!
//! libgit2 is blocking, so this API is synchronous; async callers wrap calls in
//! `tokio::task::spawn_blocking`. An [`EnvRepo`] holds no open handles and can be shared between
//! threads; concurrent writers to one mirror are serialized by git's ref locks, and losing such a
//! race is a transient error.

mod auth;
mod cli;
mod error;
mod remote;
mod tree;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use git2::{
    AutotagOption, Commit, DiffFormat, ErrorClass, ErrorCode, FetchOptions, FetchPrune, ObjectType, Oid, PushOptions,
    Reference, Repository, RepositoryInitOptions,
};
use serde::{Deserialize, Serialize};

pub(crate) use auth::resolve as resolve_path;
pub use auth::{DEFAULT_TOKEN_USERNAME, HostKeyChecking, RemoteAuth, SecretSource};
pub use error::GitError;
use remote::{CredentialSupply, RemoteUrl};
use tree::TreeEditError;

/// Where fetched remote branches live inside a mirror.
const TRACKING_PREFIX: &str = "refs/remotes/origin/";
/// Where commits made by gantry live inside a mirror, per branch.
const LOCAL_PREFIX: &str = "refs/gantry-local/";
/// Branches under this prefix belong to gantry and may be force-updated.
const GANTRY_BRANCH_PREFIX: &str = "gantry/";
/// Refspec that mirrors every branch of the remote.
const ALL_BRANCHES: &str = "+refs/heads/*:refs/remotes/origin/*";

/// The identity written as both author and committer of gantry's commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Display name, e.g. `gantry`.
    pub name: String,
    /// Email address, e.g. `gantry@example.com`.
    pub email: String,
}

/// The files below a directory, as (path relative to it, contents): see [`EnvRepo::read_dir`].
pub type DirFiles = Vec<(String, Vec<u8>)>;

/// A file read from a commit, with its blob id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBlob {
    /// The blob's object id (hex): equal ids mean equal contents.
    pub id: String,
    /// The file's bytes.
    pub content: Vec<u8>,
}

/// What [`EnvRepo::push_branch`] did to the remote branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum PushOutcome {
    /// The branch did not exist and now points at `commit`.
    Created {
        /// The commit the branch now points at.
        commit: String,
    },
    /// The branch pointed at `previous` and now points at `commit`.
    Updated {
        /// The commit the branch now points at.
        commit: String,
        /// The commit the branch pointed at before.
        previous: String,
    },
    /// Nothing was pushed: the branch already held `commit`, or another commit with exactly the
    /// same tree, in which case `commit` is that remote commit (adopted in place of the one given).
    Unchanged {
        /// The commit the branch points at.
        commit: String,
    },
}

/// What [`EnvRepo::land`] did to the branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum LandOutcome {
    /// The branch was still at the change's parent and now points at the change.
    FastForward {
        /// The commit the branch now points at.
        commit: String,
        /// Attempts it took (more than one when the branch moved during an attempt).
        attempts: u32,
    },
    /// The branch had moved; the change was replayed onto it.
    Rebased {
        /// The new commit the branch points at.
        commit: String,
        /// Where the branch was when the change was replayed.
        onto: String,
        /// Attempts it took.
        attempts: u32,
    },
    /// The branch already held the change; nothing was pushed.
    AlreadyLanded {
        /// The commit the branch points at.
        commit: String,
        /// Attempts it took.
        attempts: u32,
    },
}

impl LandOutcome {
    /// The commit the branch points at afterwards.
    pub fn commit(&self) -> &str {
        match self {
            LandOutcome::FastForward { commit, .. }
            | LandOutcome::Rebased { commit, .. }
            | LandOutcome::AlreadyLanded { commit, .. } => commit,
        }
    }

    fn with_attempts(mut self, count: u32) -> Self {
        match &mut self {
            LandOutcome::FastForward { attempts, .. }
            | LandOutcome::Rebased { attempts, .. }
            | LandOutcome::AlreadyLanded { attempts, .. } => *attempts = count,
        }
        self
    }
}

/// Copies `commit` and whatever it needs that `target` lacks from `repo`: commits back to the
/// first one `target` has, and in each only the trees and blobs that differ from its first
/// parent's (an unchanged directory is skipped by id, without being read).
fn copy_missing(
    repo: &Repository,
    source: &git2::Odb<'_>,
    target: &git2::Odb<'_>,
    commit: Oid,
) -> Result<(), git2::Error> {
    let mut pending = vec![commit];
    let mut commits = Vec::new();
    while let Some(id) = pending.pop() {
        if target.exists(id) || commits.contains(&id) {
            continue;
        }
        let found = repo.find_commit(id)?;
        pending.extend(found.parent_ids());
        commits.push(id);
    }
    // Parents first, so that the target never holds a commit whose history is missing.
    for id in commits.into_iter().rev() {
        let found = repo.find_commit(id)?;
        let parent_tree = match found.parent_ids().next() {
            Some(parent) => Some(repo.find_commit(parent)?.tree()?),
            None => None,
        };
        copy_tree(repo, source, target, &found.tree()?, parent_tree.as_ref())?;
        copy_object(source, target, id)?;
    }
    Ok(())
}

fn copy_tree(
    repo: &Repository,
    source: &git2::Odb<'_>,
    target: &git2::Odb<'_>,
    tree: &git2::Tree<'_>,
    old: Option<&git2::Tree<'_>>,
) -> Result<(), git2::Error> {
    if old.is_some_and(|old| old.id() == tree.id()) || target.exists(tree.id()) {
        return Ok(());
    }
    for entry in tree.iter() {
        let previous = old.and_then(|old| old.get_name_bytes(entry.name_bytes()));
        if previous.as_ref().is_some_and(|previous| previous.id() == entry.id()) {
            continue;
        }
        match entry.kind() {
            Some(ObjectType::Tree) => {
                let previous_tree = match &previous {
                    Some(previous) if previous.kind() == Some(ObjectType::Tree) => Some(repo.find_tree(previous.id())?),
                    _ => None,
                };
                copy_tree(repo, source, target, &repo.find_tree(entry.id())?, previous_tree.as_ref())?;
            }
            Some(ObjectType::Blob) => copy_object(source, target, entry.id())?,
            // Submodule commits live in another repository.
            _ => {}
        }
    }
    copy_object(source, target, tree.id())
}

fn copy_object(source: &git2::Odb<'_>, target: &git2::Odb<'_>, id: Oid) -> Result<(), git2::Error> {
    if target.exists(id) {
        return Ok(());
    }
    let object = source.read(id)?;
    target.write(object.kind(), object.data())?;
    Ok(())
}

/// Whether a push failed because the branch moved under it (another writer won the race).
fn is_lost_race(error: &GitError) -> bool {
    match error {
        GitError::Push { source, .. } => source.code() == ErrorCode::NotFastForward,
        GitError::PushRejected { reason, .. } => {
            let reason = reason.to_ascii_lowercase();
            ["non-fast-forward", "fetch first", "stale info", "failed to update ref", "cannot lock ref"]
                .iter()
                .any(|marker| reason.contains(marker))
        }
        _ => false,
    }
}

impl PushOutcome {
    /// The commit the remote branch points at after the push.
    pub fn commit(&self) -> &str {
        match self {
            PushOutcome::Created { commit }
            | PushOutcome::Updated { commit, .. }
            | PushOutcome::Unchanged { commit } => commit,
        }
    }
}

/// One environment config repo, reached through its warm bare mirror.
#[derive(Debug, Clone)]
pub struct EnvRepo {
    remote: RemoteUrl,
    mirror_path: PathBuf,
    auth: RemoteAuth,
}

impl EnvRepo {
    /// Opens (or creates with a first clone) the warm bare mirror for `url` under `cache_dir`
    /// (directory name derived from a hash of the url), then fetches every branch of the remote
    /// incrementally, which includes the base branch and `refs/heads/gantry/*`. Branches deleted
    /// on the remote are forgotten.
    ///
    /// A new mirror is filled in a scratch directory and renamed into place, so an interrupted
    /// first clone never leaves a half-made mirror behind, and two processes racing to create
    /// the same mirror both end up using one.
    pub fn open(cache_dir: &Path, url: &str) -> Result<EnvRepo, GitError> {
        EnvRepo::open_with(cache_dir, url, &RemoteAuth::none())
    }

    /// Like [`EnvRepo::open`], authenticating to the remote with `auth` (an https token, an
    /// ssh key) for this and every later network operation.
    pub fn open_with(cache_dir: &Path, url: &str, auth: &RemoteAuth) -> Result<EnvRepo, GitError> {
        let remote = RemoteUrl::parse(url)?;
        let mirror_path = cache_dir.join(remote.cache_dir_name());
        let env_repo = EnvRepo { remote, mirror_path, auth: auth.clone() };
        if env_repo.mirror_path.is_dir() {
            let repo = env_repo.repository()?;
            env_repo.fetch_refspecs(&repo, &[ALL_BRANCHES.to_owned()])?;
        } else {
            env_repo.create_mirror(cache_dir)?;
        }
        Ok(env_repo)
    }

    /// The remote URL, without any credentials it was given with.
    pub fn url(&self) -> &str {
        self.remote.as_str()
    }

    /// Where the bare mirror lives on disk.
    pub fn mirror_path(&self) -> &Path {
        &self.mirror_path
    }

    /// Fetches the named branches incrementally (only objects the mirror lacks travel); a
    /// branch that no longer exists on the remote is forgotten. An empty list fetches every
    /// branch.
    pub fn fetch(&self, branches: &[&str]) -> Result<(), GitError> {
        let refspecs = if branches.is_empty() {
            vec![ALL_BRANCHES.to_owned()]
        } else {
            branches.iter().map(|branch| validate_branch(branch).map(branch_refspec)).collect::<Result<Vec<_>, _>>()?
        };
        let repo = self.repository()?;
        self.fetch_refspecs(&repo, &refspecs)
    }

    /// Commit id of `branch` on the remote as last fetched (None if absent).
    pub fn branch_head(&self, branch: &str) -> Result<Option<String>, GitError> {
        let branch = validate_branch(branch)?;
        let repo = self.repository()?;
        Ok(self.tracking_head(&repo, branch)?.map(|commit| commit.to_string()))
    }

    /// Contents of `path` at commit `commit` (None if the file does not exist). A path that
    /// names a directory or submodule is an error.
    pub fn read_file(&self, commit: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        tree::split_path(path).map_err(|error| self.tree_error(error))?;
        let repo = self.repository()?;
        let commit_object = self.find_commit(&repo, commit)?;
        let tree = commit_object.tree().map_err(|source| self.repository_error("read the commit's tree", source))?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(entry) => entry,
            Err(error) if error.code() == ErrorCode::NotFound => return Ok(None),
            Err(source) => return Err(self.repository_error("look up the path", source)),
        };
        if entry.kind() != Some(ObjectType::Blob) {
            return Err(GitError::NotAFile { commit: commit.to_owned(), path: path.to_owned() });
        }
        let blob = repo.find_blob(entry.id()).map_err(|source| self.repository_error("read the file", source))?;
        Ok(Some(blob.content().to_vec()))
    }

    /// Creates (without pushing) a commit whose parent is `parent` and whose tree is parent's
    /// tree with the given files replaced or added (an existing file keeps its executable bit).
    ///
    /// Deterministic: same inputs (including `time`, written with a UTC offset) give the same
    /// commit id, so a step that is re-run after a crash produces the identical commit. The
    /// message gets a trailing newline if it lacks one, as git itself writes messages.
    /// `author` is also the committer.
    ///
    /// Returns the commit id and stores it under the local ref `refs/gantry-local/<branch>` so
    /// it survives restarts. If the files already hold the given contents the result is
    /// [`GitError::NoChanges`] rather than an empty commit.
    pub fn commit_files(
        &self,
        parent: &str,
        files: &[(&str, &[u8])],
        message: &str,
        author: &Signature,
        time: DateTime<Utc>,
        branch: &str,
    ) -> Result<String, GitError> {
        self.commit_changes(parent, files, &[], message, author, time, branch)
    }

    /// [`EnvRepo::commit_files`] that also removes the files or whole directories at
    /// `removals` (one that does not exist is skipped; a directory left empty goes too).
    #[allow(clippy::too_many_arguments)]
    pub fn commit_changes(
        &self,
        parent: &str,
        files: &[(&str, &[u8])],
        removals: &[&str],
        message: &str,
        author: &Signature,
        time: DateTime<Utc>,
        branch: &str,
    ) -> Result<String, GitError> {
        let branch = validate_branch(branch)?;
        let signature = git_signature(author, time)?;
        let repo = self.repository()?;
        let parent_commit = self.find_commit(&repo, parent)?;
        let base_tree =
            parent_commit.tree().map_err(|source| self.repository_error("read the parent's tree", source))?;
        let tree_id =
            tree::edit_tree_removing(&repo, &base_tree, files, removals).map_err(|error| self.tree_error(error))?;
        if tree_id == base_tree.id() {
            return Err(GitError::NoChanges { branch: branch.to_owned(), parent: parent_commit.id().to_string() });
        }
        let new_tree = repo.find_tree(tree_id).map_err(|source| self.repository_error("read the new tree", source))?;
        let message = if message.ends_with('\n') { message.to_owned() } else { format!("{message}\n") };
        let commit_id = repo
            .commit(None, &signature, &signature, &message, &new_tree, &[&parent_commit])
            .map_err(|source| self.repository_error("write the commit", source))?;
        self.set_ref(&repo, &local_ref(branch), commit_id, "gantry: commit files")?;
        Ok(commit_id.to_string())
    }

    /// Every file below directory `dir` at `commit`, as (path relative to `dir`, contents),
    /// sorted by path; `None` when `dir` does not exist. A file at `dir`, or a symbolic link
    /// or submodule below it, is an error: callers copy what they read as plain files.
    pub fn read_dir(&self, commit: &str, dir: &str) -> Result<Option<DirFiles>, GitError> {
        let dir = dir.trim_end_matches('/');
        tree::split_path(dir).map_err(|error| self.tree_error(error))?;
        let repo = self.repository()?;
        let root = self
            .find_commit(&repo, commit)?
            .tree()
            .map_err(|source| self.repository_error("read the commit's tree", source))?;
        let entry = match root.get_path(Path::new(dir)) {
            Ok(entry) => entry,
            Err(error) if error.code() == ErrorCode::NotFound => return Ok(None),
            Err(source) => return Err(self.repository_error("look up the directory", source)),
        };
        if entry.kind() != Some(ObjectType::Tree) {
            return Err(GitError::InvalidPath { path: dir.to_owned(), reason: "is not a directory".to_owned() });
        }
        let tree = repo.find_tree(entry.id()).map_err(|source| self.repository_error("read the directory", source))?;
        let mut entries = Vec::new();
        let mut problem = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |parent, entry| {
            let path = format!("{parent}{}", entry.name().unwrap_or_default());
            match entry.kind() {
                Some(ObjectType::Tree) => git2::TreeWalkResult::Ok,
                Some(ObjectType::Blob) if matches!(entry.filemode(), 0o100_644 | 0o100_755) => {
                    entries.push((path, entry.id()));
                    git2::TreeWalkResult::Ok
                }
                _ => {
                    problem = Some(path);
                    git2::TreeWalkResult::Abort
                }
            }
        })
        .or_else(|error| if problem.is_some() { Ok(()) } else { Err(error) })
        .map_err(|source| self.repository_error("list the directory", source))?;
        if let Some(path) = problem {
            return Err(GitError::InvalidPath {
                path: format!("{dir}/{path}"),
                reason: "is a symbolic link or submodule, not a file".to_owned(),
            });
        }
        let mut files = Vec::with_capacity(entries.len());
        for (path, id) in entries {
            let blob = repo.find_blob(id).map_err(|source| self.repository_error("read a file", source))?;
            files.push((path, blob.content().to_vec()));
        }
        files.sort();
        Ok(Some(files))
    }

    /// Pushes `commit` to `refs/heads/<branch>` on the remote, after fetching that branch to
    /// learn where it really is. Idempotent:
    ///
    /// - the remote branch is already at `commit` → [`PushOutcome::Unchanged`];
    /// - it is at another commit with an identical tree → [`PushOutcome::Unchanged`] with that
    ///   commit, which is adopted as `refs/gantry-local/<branch>`;
    /// - the branch is absent → [`PushOutcome::Created`];
    /// - otherwise → [`PushOutcome::Updated`]: a fast-forward for any branch, a force-update
    ///   only for a stale branch under `gantry/` (e.g. its base moved). Rewriting any other
    ///   branch is refused with [`GitError::NotGantryOwned`].
    ///
    /// A rejection by the remote or a transport failure is a [`GitError`]; losing a race with
    /// another writer is transient.
    pub fn push_branch(&self, commit: &str, branch: &str) -> Result<PushOutcome, GitError> {
        let branch = validate_branch(branch)?;
        let repo = self.repository()?;
        let local_commit = self.find_commit(&repo, commit)?;
        let local_id = local_commit.id();
        self.fetch_refspecs(&repo, &[branch_refspec(branch)])?;
        let local_ref = local_ref(branch);

        let Some(remote_id) = self.tracking_head(&repo, branch)? else {
            self.set_ref(&repo, &local_ref, local_id, "gantry: push")?;
            self.push_local_ref(&repo, branch, local_id, false)?;
            return Ok(PushOutcome::Created { commit: local_id.to_string() });
        };
        if remote_id == local_id {
            self.set_ref(&repo, &local_ref, local_id, "gantry: already pushed")?;
            return Ok(PushOutcome::Unchanged { commit: local_id.to_string() });
        }
        let remote_commit = repo
            .find_commit(remote_id)
            .map_err(|source| self.repository_error("read the remote branch's commit", source))?;
        if remote_commit.tree_id() == local_commit.tree_id() {
            self.set_ref(&repo, &local_ref, remote_id, "gantry: adopt identical commit")?;
            return Ok(PushOutcome::Unchanged { commit: remote_id.to_string() });
        }
        let fast_forward = repo
            .graph_descendant_of(local_id, remote_id)
            .map_err(|source| self.repository_error("compare the commits' history", source))?;
        if !fast_forward && !branch.starts_with(GANTRY_BRANCH_PREFIX) {
            return Err(GitError::NotGantryOwned {
                url: self.url().to_owned(),
                branch: branch.to_owned(),
                commit: local_id.to_string(),
                remote_commit: remote_id.to_string(),
            });
        }
        self.set_ref(&repo, &local_ref, local_id, "gantry: push")?;
        self.push_local_ref(&repo, branch, local_id, !fast_forward)?;
        Ok(PushOutcome::Updated { commit: local_id.to_string(), previous: remote_id.to_string() })
    }

    /// Lands the change that `commit` makes (its diff against its first parent) on `branch`
    /// of the remote, the way a merge of a change request does without a merge commit:
    ///
    /// - the branch already holds the change (it is at `commit`, descends from it, or replaying
    ///   the change onto it changes nothing) → [`LandOutcome::AlreadyLanded`];
    /// - the branch is still where `commit` started → a fast-forward push;
    /// - the branch moved (someone pushed meanwhile) → the change is replayed onto the new head
    ///   (keeping the author, time and message, so the rebased commit is deterministic too) and
    ///   pushed; a conflict with what was pushed is [`GitError::RebaseConflict`].
    ///
    /// A push can still lose a race with a writer that pushes between this fetch and the
    /// update. That is detected (the remote refuses a non-fast-forward; for a repository on
    /// this machine the update is a compare-and-swap of the branch under git's ref lock) and
    /// the whole fetch, replay and push is retried, up to `max_attempts` times, after which the
    /// error is [`GitError::KeptMoving`], a transient one.
    pub fn land(&self, commit: &str, branch: &str, max_attempts: u32) -> Result<LandOutcome, GitError> {
        let branch = validate_branch(branch)?;
        let mut last_race = None;
        for attempt in 1..=max_attempts.max(1) {
            match self.land_once(commit, branch) {
                Ok(Some(outcome)) => return Ok(outcome.with_attempts(attempt)),
                Ok(None) => last_race = Some(attempt),
                Err(error) if is_lost_race(&error) => last_race = Some(attempt),
                Err(error) => return Err(error),
            }
        }
        Err(GitError::KeptMoving {
            url: self.url().to_owned(),
            branch: branch.to_owned(),
            commit: commit.to_owned(),
            attempts: last_race.unwrap_or(max_attempts),
        })
    }

    /// One attempt of [`EnvRepo::land`]; `None` when the branch moved under the push.
    fn land_once(&self, commit: &str, branch: &str) -> Result<Option<LandOutcome>, GitError> {
        let repo = self.repository()?;
        let change = self.find_commit(&repo, commit)?;
        self.fetch_refspecs(&repo, &[branch_refspec(branch)])?;
        let remote_head = self.tracking_head(&repo, branch)?;
        let candidate = match remote_head {
            None => change.id(),
            Some(head) if head == change.id() => {
                return Ok(Some(LandOutcome::AlreadyLanded { commit: head.to_string(), attempts: 0 }));
            }
            Some(head) => {
                let contains_change = repo
                    .graph_descendant_of(head, change.id())
                    .map_err(|source| self.repository_error("compare the commits' history", source))?;
                if contains_change {
                    return Ok(Some(LandOutcome::AlreadyLanded { commit: head.to_string(), attempts: 0 }));
                }
                let fast_forward = repo
                    .graph_descendant_of(change.id(), head)
                    .map_err(|source| self.repository_error("compare the commits' history", source))?;
                if fast_forward {
                    change.id()
                } else {
                    match self.replay(&repo, &change, head, branch)? {
                        Some(rebased) => rebased,
                        None => {
                            return Ok(Some(LandOutcome::AlreadyLanded { commit: head.to_string(), attempts: 0 }));
                        }
                    }
                }
            }
        };
        self.set_ref(&repo, &local_ref(branch), candidate, "gantry: land")?;
        let updated = match self.local_remote_path() {
            Some(path) => self.compare_and_swap(&repo, &path, branch, remote_head, candidate)?,
            None => {
                self.push_local_ref(&repo, branch, candidate, false)?;
                true
            }
        };
        if !updated {
            return Ok(None);
        }
        let commit = candidate.to_string();
        Ok(Some(if candidate == change.id() {
            LandOutcome::FastForward { commit, attempts: 0 }
        } else {
            LandOutcome::Rebased {
                commit,
                onto: remote_head.map(|head| head.to_string()).unwrap_or_default(),
                attempts: 0,
            }
        }))
    }

    /// Replays `change` onto `onto`; `None` when `onto` already holds exactly that result.
    fn replay(&self, repo: &Repository, change: &Commit<'_>, onto: Oid, branch: &str) -> Result<Option<Oid>, GitError> {
        let onto_commit =
            repo.find_commit(onto).map_err(|source| self.repository_error("read the branch's commit", source))?;
        let mut index = repo
            .cherrypick_commit(change, &onto_commit, 0, None)
            .map_err(|source| self.repository_error("replay the change", source))?;
        if index.has_conflicts() {
            let mut paths: Vec<String> = index
                .conflicts()
                .map_err(|source| self.repository_error("list the conflicts", source))?
                .filter_map(Result::ok)
                .filter_map(|conflict| conflict.our.or(conflict.their).or(conflict.ancestor))
                .map(|entry| String::from_utf8_lossy(&entry.path).into_owned())
                .collect();
            paths.sort();
            paths.dedup();
            return Err(GitError::RebaseConflict {
                url: self.url().to_owned(),
                branch: branch.to_owned(),
                commit: change.id().to_string(),
                onto: onto.to_string(),
                paths,
            });
        }
        let tree_id =
            index.write_tree_to(repo).map_err(|source| self.repository_error("write the replayed tree", source))?;
        if tree_id == onto_commit.tree_id() {
            return Ok(None);
        }
        let tree = repo.find_tree(tree_id).map_err(|source| self.repository_error("read the replayed tree", source))?;
        let message = String::from_utf8_lossy(change.message_raw_bytes()).into_owned();
        let rebased = repo
            .commit(None, &change.author(), &change.committer(), &message, &tree, &[&onto_commit])
            .map_err(|source| self.repository_error("write the rebased commit", source))?;
        Ok(Some(rebased))
    }

    /// The remote's directory when it is a repository on this machine (plain path or
    /// `file://`).
    fn local_remote_path(&self) -> Option<PathBuf> {
        if let Some(path) = self.remote.local_path() {
            return Some(path.to_path_buf());
        }
        self.url().strip_prefix("file://").map(PathBuf::from)
    }

    /// Updates `branch` of a repository on this machine from `expected` to `new` atomically:
    /// the objects travel by a push to a scratch ref, then the branch moves by a
    /// compare-and-swap under git's ref lock (libgit2's local transport would overwrite a
    /// branch that moved after its check). False when the branch is no longer at `expected`.
    fn compare_and_swap(
        &self,
        repo: &Repository,
        remote_path: &Path,
        branch: &str,
        expected: Option<Oid>,
        new: Oid,
    ) -> Result<bool, GitError> {
        static SCRATCH: AtomicU64 = AtomicU64::new(0);
        let scratch_branch =
            format!("gantry-incoming/{}-{}", std::process::id(), SCRATCH.fetch_add(1, Ordering::Relaxed));
        self.set_ref(repo, &local_ref(&scratch_branch), new, "gantry: stage")?;
        let staged = self.push_local_ref(repo, &scratch_branch, new, true);
        let _ = repo.find_reference(&local_ref(&scratch_branch)).and_then(|mut reference| reference.delete());
        let _ = repo.find_reference(&tracking_ref(&scratch_branch)).and_then(|mut reference| reference.delete());
        staged?;
        let remote = Repository::open_bare(remote_path).map_err(|source| GitError::OpenMirror {
            url: self.url().to_owned(),
            path: remote_path.to_path_buf(),
            source,
        })?;
        let branch_ref = format!("refs/heads/{branch}");
        let result = match expected {
            Some(expected) => remote.reference_matching(&branch_ref, new, true, expected, "gantry: land"),
            None => remote.reference(&branch_ref, new, false, "gantry: land"),
        };
        let _ =
            remote.find_reference(&format!("refs/heads/{scratch_branch}")).and_then(|mut reference| reference.delete());
        match result {
            Ok(_) => {
                self.set_ref(repo, &tracking_ref(branch), new, "gantry: landed")?;
                Ok(true)
            }
            Err(error) if matches!(error.code(), ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked) => {
                Ok(false)
            }
            Err(source) => Err(GitError::Push { url: self.url().to_owned(), branch: branch.to_owned(), source }),
        }
    }

    /// Reads several files at one commit with one open of the mirror, for callers that read
    /// many (drift over thousands of apps). Each result is `None` for a missing file; a
    /// path naming a directory is an error.
    ///
    /// Directories are resolved once and kept: looking each path up from the root would
    /// inflate a large shared directory (`apps/`, thousands of entries) again for every file.
    pub fn read_files(&self, commit: &str, paths: &[&str]) -> Result<Vec<Option<Vec<u8>>>, GitError> {
        let files = self.read_files_with_ids(commit, paths)?;
        Ok(files.into_iter().map(|file| file.map(|file| file.content)).collect())
    }

    /// Like [`EnvRepo::read_files`], with each file's blob id: two files with the same id
    /// have the same content, which callers comparing many files use to skip work.
    pub fn read_files_with_ids(&self, commit: &str, paths: &[&str]) -> Result<Vec<Option<FileBlob>>, GitError> {
        let repo = self.repository()?;
        let root = self
            .find_commit(&repo, commit)?
            .tree()
            .map_err(|source| self.repository_error("read the commit's tree", source))?;
        // Directory path → its tree, or `None` when it does not exist (or is not a tree).
        let mut directories: std::collections::HashMap<String, Option<git2::Tree<'_>>> =
            std::collections::HashMap::new();
        let mut contents = Vec::with_capacity(paths.len());
        for path in paths {
            let components = tree::split_path(path).map_err(|error| self.tree_error(error))?;
            let Some((file, parents)) = components.split_last() else {
                contents.push(None);
                continue;
            };
            let mut directory = String::new();
            let mut current = Some(root.clone());
            for component in parents {
                let parent = current.take();
                if !directory.is_empty() {
                    directory.push('/');
                }
                directory.push_str(component);
                current = match directories.get(&directory) {
                    Some(known) => known.clone(),
                    None => {
                        let found = match parent {
                            Some(parent) => match parent.get_name(component) {
                                Some(entry) if entry.kind() == Some(ObjectType::Tree) => Some(
                                    repo.find_tree(entry.id())
                                        .map_err(|source| self.repository_error("read a directory", source))?,
                                ),
                                _ => None,
                            },
                            None => None,
                        };
                        directories.insert(directory.clone(), found.clone());
                        found
                    }
                };
                if current.is_none() {
                    break;
                }
            }
            let Some(entry) = current.as_ref().and_then(|tree| tree.get_name(file)) else {
                contents.push(None);
                continue;
            };
            if entry.kind() != Some(ObjectType::Blob) {
                return Err(GitError::NotAFile { commit: commit.to_owned(), path: (*path).to_owned() });
            }
            let blob = repo.find_blob(entry.id()).map_err(|source| self.repository_error("read the file", source))?;
            contents.push(Some(FileBlob { id: entry.id().to_string(), content: blob.content().to_vec() }));
        }
        Ok(contents)
    }

    /// Unified diff (text) between the trees of two commits, for PR bodies and the status page.
    /// Files are prefixed `a/` and `b/` as `git diff` does; non-UTF-8 bytes are replaced.
    pub fn diff(&self, from: &str, to: &str) -> Result<String, GitError> {
        let repo = self.repository()?;
        let from_tree = self
            .find_commit(&repo, from)?
            .tree()
            .map_err(|source| self.repository_error("read the old tree", source))?;
        let to_tree =
            self.find_commit(&repo, to)?.tree().map_err(|source| self.repository_error("read the new tree", source))?;
        let diff = repo
            .diff_tree_to_tree(Some(&from_tree), Some(&to_tree), None)
            .map_err(|source| self.repository_error("compare the trees", source))?;
        let mut text = Vec::new();
        diff.print(DiffFormat::Patch, |_delta, _hunk, line| {
            // Content lines come without their marker; headers already carry theirs.
            let origin = line.origin();
            if matches!(origin, '+' | '-' | ' ') {
                text.push(origin as u8);
            }
            text.extend_from_slice(line.content());
            true
        })
        .map_err(|source| self.repository_error("format the diff", source))?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    fn repository(&self) -> Result<Repository, GitError> {
        Repository::open_bare(&self.mirror_path).map_err(|source| GitError::OpenMirror {
            url: self.url().to_owned(),
            path: self.mirror_path.clone(),
            source,
        })
    }

    fn create_mirror(&self, cache_dir: &Path) -> Result<(), GitError> {
        std::fs::create_dir_all(cache_dir)
            .map_err(|source| GitError::MirrorDirectory { path: cache_dir.to_path_buf(), source })?;
        let scratch = cache_dir.join(scratch_name(&self.remote));
        let result = self.clone_into(&scratch).and_then(|()| self.publish_mirror(&scratch));
        if result.is_err() && scratch.exists() {
            // Best effort: the original error is what the caller needs, and a leftover scratch
            // directory has a unique name that nothing will ever open.
            let _ = std::fs::remove_dir_all(&scratch);
        }
        result
    }

    fn clone_into(&self, scratch: &Path) -> Result<(), GitError> {
        let mut options = RepositoryInitOptions::new();
        options.bare(true).mkpath(true).no_reinit(true).external_template(false);
        let repo = Repository::init_opts(scratch, &options).map_err(|source| GitError::OpenMirror {
            url: self.url().to_owned(),
            path: scratch.to_path_buf(),
            source,
        })?;
        self.fetch_refspecs(&repo, &[ALL_BRANCHES.to_owned()])
    }

    fn publish_mirror(&self, scratch: &Path) -> Result<(), GitError> {
        match std::fs::rename(scratch, &self.mirror_path) {
            Ok(()) => Ok(()),
            Err(_) if self.mirror_path.is_dir() => {
                // Another process published the mirror first; use theirs and bring it up to date.
                let _ = std::fs::remove_dir_all(scratch);
                let repo = self.repository()?;
                self.fetch_refspecs(&repo, &[ALL_BRANCHES.to_owned()])
            }
            Err(source) => Err(GitError::MirrorDirectory { path: self.mirror_path.clone(), source }),
        }
    }

    fn fetch_refspecs(&self, repo: &Repository, refspecs: &[String]) -> Result<(), GitError> {
        remove_stale_locks(repo.path());
        let fetch_error = |source| GitError::Fetch { url: self.url().to_owned(), refspecs: refspecs.join(" "), source };
        if let Some(path) = self.remote.local_path() {
            // libgit2 reports a missing plain path as an "unsupported URL protocol".
            if !path.exists() {
                return Err(fetch_error(git2::Error::new(
                    ErrorCode::NotFound,
                    ErrorClass::Os,
                    format!("no repository at {}", path.display()),
                )));
            }
        }
        if self.local_refs_unchanged(repo, refspecs) {
            return Ok(());
        }
        if self.remote.uses_cli() {
            let missing = cli::fetch(repo.path(), &self.remote, &self.auth, refspecs)?;
            // A branch the remote does not have (any more) is forgotten, as libgit2's prune does.
            for refspec in missing {
                if let Some((_, destination)) = refspec.split_once(':') {
                    let _ = repo.find_reference(destination).and_then(|mut reference| reference.delete());
                }
            }
            return Ok(());
        }
        let mut remote = repo.remote_anonymous(self.url()).map_err(fetch_error)?;
        let credentials = self.credential_supply()?;
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(credentials.callbacks())
            .prune(FetchPrune::On)
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        let result = remote.fetch(refspecs, Some(&mut options), Some("gantry: fetch"));
        drop(options);
        result.map_err(|source| match credentials.failure() {
            Some(reason) => GitError::Authentication { url: self.url().to_owned(), reason },
            None => fetch_error(source),
        })
    }

    /// For a repository on this machine: whether the mirror already holds exactly the remote
    /// branches `refspecs` ask for, so that a fetch would transfer nothing and can be skipped.
    /// libgit2 would still negotiate, walking history on both sides; reading the remote's refs
    /// costs microseconds. Anything unusual (a symbolic ref, an unreadable repository) answers
    /// `false`, and the fetch runs as usual.
    fn local_refs_unchanged(&self, repo: &Repository, refspecs: &[String]) -> bool {
        let Some(path) = self.local_remote_path() else { return false };
        let Ok(remote) = Repository::open_bare(&path) else { return false };
        refspecs.iter().all(|refspec| {
            let Some((source, destination)) = refspec.trim_start_matches('+').split_once(':') else {
                return false;
            };
            match (source.strip_suffix('*'), destination.strip_suffix('*')) {
                (Some(source_prefix), Some(destination_prefix)) => {
                    match (refs_under(&remote, source_prefix), refs_under(repo, destination_prefix)) {
                        (Some(theirs), Some(ours)) => theirs == ours,
                        _ => false,
                    }
                }
                (None, None) => match (ref_target(&remote, source), ref_target(repo, destination)) {
                    (Ok(theirs), Ok(ours)) => theirs == ours,
                    _ => false,
                },
                _ => false,
            }
        })
    }

    /// Credentials for libgit2's http transport: those in the URL, else the configured token.
    fn credential_supply(&self) -> Result<CredentialSupply, GitError> {
        if let Some(embedded) = self.remote.embedded_credentials() {
            return Ok(CredentialSupply::new(Some(embedded.clone()), "the url"));
        }
        let credentials = self.auth.token_credentials().map_err(|reason| GitError::Authentication {
            url: self.url().to_owned(),
            reason: format!("read the token: {reason}"),
        })?;
        let source = self.auth.token_source().unwrap_or_else(|| "the url".to_owned());
        Ok(CredentialSupply::new(credentials, source))
    }

    /// Pushes `refs/gantry-local/<branch>` (already pointing at `commit`) to the remote branch,
    /// then records the new remote position so [`EnvRepo::branch_head`] agrees without a fetch.
    fn push_local_ref(&self, repo: &Repository, branch: &str, commit: Oid, force: bool) -> Result<(), GitError> {
        if let Some(remote_path) = self.local_remote_path() {
            return self.push_to_local(repo, &remote_path, branch, commit, force);
        }
        let push_error = |source| GitError::Push { url: self.url().to_owned(), branch: branch.to_owned(), source };
        let refspec = format!("{}{LOCAL_PREFIX}{branch}:refs/heads/{branch}", if force { "+" } else { "" });
        if self.remote.uses_cli() {
            cli::push(repo.path(), &self.remote, &self.auth, branch, &refspec)?;
            return self.set_ref(repo, &tracking_ref(branch), commit, "gantry: pushed");
        }
        let mut remote = repo.remote_anonymous(self.url()).map_err(push_error)?;
        let credentials = self.credential_supply()?;
        // The server reports refused updates through this callback, not as an error.
        let rejections = RefCell::new(Vec::new());
        let mut callbacks = credentials.callbacks();
        callbacks.push_update_reference(|_refname, status| {
            if let Some(status) = status {
                rejections.borrow_mut().push(status.to_owned());
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks);
        let result = remote.push(&[refspec], Some(&mut options));
        drop(options);
        result.map_err(|source| match credentials.failure() {
            Some(reason) => GitError::Authentication { url: self.url().to_owned(), reason },
            None => push_error(source),
        })?;
        let rejections = rejections.into_inner();
        if !rejections.is_empty() {
            return Err(GitError::PushRejected {
                url: self.url().to_owned(),
                branch: branch.to_owned(),
                reason: rejections.join("; "),
            });
        }
        self.set_ref(repo, &tracking_ref(branch), commit, "gantry: pushed")
    }

    /// Pushes to a repository on this machine by writing exactly the objects it lacks into
    /// its object database and moving the branch under git's ref lock. libgit2's own local
    /// push packs the new commit against everything the remote has, which reads every tree
    /// of the repository (thousands of app directories); this costs O(change). A branch
    /// that moved since the last fetch is refused like a non-fast-forward, unless `force`.
    fn push_to_local(
        &self,
        repo: &Repository,
        remote_path: &Path,
        branch: &str,
        commit: Oid,
        force: bool,
    ) -> Result<(), GitError> {
        let push_error = |source| GitError::Push { url: self.url().to_owned(), branch: branch.to_owned(), source };
        if !remote_path.exists() {
            return Err(push_error(git2::Error::new(
                ErrorCode::NotFound,
                ErrorClass::Os,
                format!("no repository at {}", remote_path.display()),
            )));
        }
        let remote = Repository::open(remote_path).map_err(push_error)?;
        let source = repo.odb().map_err(|source| self.repository_error("open the object database", source))?;
        let target = remote.odb().map_err(push_error)?;
        copy_missing(repo, &source, &target, commit).map_err(push_error)?;
        let name = format!("refs/heads/{branch}");
        remove_stale_lock(&remote.path().join(format!("{name}.lock")));
        let expected = self.tracking_head(repo, branch)?;
        let updated = match (force, expected) {
            (true, _) => remote.reference(&name, commit, true, "gantry: push"),
            (false, Some(expected)) => remote.reference_matching(&name, commit, true, expected, "gantry: push"),
            (false, None) => remote.reference(&name, commit, false, "gantry: push"),
        };
        match updated {
            Ok(_) => self.set_ref(repo, &tracking_ref(branch), commit, "gantry: pushed"),
            Err(error) if matches!(error.code(), ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked) => {
                Err(GitError::PushRejected {
                    url: self.url().to_owned(),
                    branch: branch.to_owned(),
                    reason: "non-fast-forward: the branch moved since it was fetched (fetch first)".to_owned(),
                })
            }
            Err(source) => Err(push_error(source)),
        }
    }

    fn tracking_head(&self, repo: &Repository, branch: &str) -> Result<Option<Oid>, GitError> {
        match repo.refname_to_id(&tracking_ref(branch)) {
            Ok(commit) => Ok(Some(commit)),
            Err(error) if error.code() == ErrorCode::NotFound => Ok(None),
            Err(source) => Err(self.repository_error("read the remote branch", source)),
        }
    }

    fn find_commit<'repo>(&self, repo: &'repo Repository, commit: &str) -> Result<Commit<'repo>, GitError> {
        let id = parse_commit_id(commit)?;
        repo.find_commit(id).map_err(|source| GitError::CommitNotFound {
            url: self.url().to_owned(),
            commit: commit.to_owned(),
            source,
        })
    }

    fn set_ref(&self, repo: &Repository, name: &str, commit: Oid, log_message: &str) -> Result<(), GitError> {
        repo.reference(name, commit, true, log_message)
            .map(|_| ())
            .map_err(|source| self.repository_error("update a reference", source))
    }

    fn repository_error(&self, operation: &'static str, source: git2::Error) -> GitError {
        GitError::Repository { url: self.url().to_owned(), operation, source }
    }

    fn tree_error(&self, error: TreeEditError) -> GitError {
        match error {
            TreeEditError::Path { path, reason } => GitError::InvalidPath { path, reason },
            TreeEditError::Git(source) => self.repository_error("write the new tree", source),
        }
    }
}

/// Creates a bare repository at `path` (if absent) whose `branch` holds `files` in one initial
/// commit, with HEAD pointing at `branch`; used by `gantry up` to lay out the embedded env repos
/// and by tests.
///
/// Idempotent: if the repository already has `branch`, nothing is changed. If it exists without
/// `branch`, the branch is created, and HEAD is moved to it only when HEAD names no commit yet.
pub fn init_bare_repo(path: &Path, branch: &str, files: &[(&str, &[u8])], author: &Signature) -> Result<(), GitError> {
    let branch = validate_branch(branch)?;
    let branch_ref = format!("refs/heads/{branch}");
    let init_error = |operation: &'static str| {
        move |source| GitError::InitRepository { path: path.to_path_buf(), operation, source }
    };
    let signature = git_signature(author, Utc::now())?;
    let repo = match Repository::open_bare(path) {
        Ok(repo) => repo,
        Err(error) if error.code() == ErrorCode::NotFound => {
            let mut options = RepositoryInitOptions::new();
            options.bare(true).mkpath(true).external_template(false).initial_head(&branch_ref);
            Repository::init_opts(path, &options).map_err(init_error("create the repository"))?
        }
        Err(source) => return Err(init_error("open the repository")(source)),
    };
    match repo.find_reference(&branch_ref) {
        Ok(_) => return Ok(()),
        Err(error) if error.code() == ErrorCode::NotFound => {}
        Err(source) => return Err(init_error("look up the branch")(source)),
    }
    let empty_tree = repo
        .treebuilder(None)
        .and_then(|builder| builder.write())
        .and_then(|id| repo.find_tree(id))
        .map_err(init_error("write an empty tree"))?;
    let tree_id = tree::edit_tree(&repo, &empty_tree, files).map_err(|error| match error {
        TreeEditError::Path { path, reason } => GitError::InvalidPath { path, reason },
        TreeEditError::Git(source) => init_error("write the files")(source),
    })?;
    let tree = repo.find_tree(tree_id).map_err(init_error("read the new tree"))?;
    repo.commit(Some(&branch_ref), &signature, &signature, "Initial commit\n", &tree, &[])
        .map_err(init_error("write the initial commit"))?;
    let head_is_unborn = match repo.head() {
        Ok(_) => false,
        Err(error) => matches!(error.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound),
    };
    if head_is_unborn {
        repo.set_head(&branch_ref).map_err(init_error("point HEAD at the branch"))?;
    }
    Ok(())
}

fn validate_branch(branch: &str) -> Result<&str, GitError> {
    let valid = !branch.is_empty()
        && branch != "HEAD"
        && !branch.starts_with('-')
        && Reference::is_valid_name(&format!("refs/heads/{branch}"));
    if valid { Ok(branch) } else { Err(GitError::InvalidBranch { branch: branch.to_owned() }) }
}

/// The direct refs under `prefix`, by the rest of their names; `None` when one is symbolic or
/// they cannot be read.
fn refs_under(repo: &Repository, prefix: &str) -> Option<std::collections::BTreeMap<String, Oid>> {
    let mut refs = std::collections::BTreeMap::new();
    for reference in repo.references_glob(&format!("{prefix}*")).ok()? {
        let reference = reference.ok()?;
        let name = std::str::from_utf8(reference.name_bytes()).ok()?;
        refs.insert(name.strip_prefix(prefix)?.to_owned(), reference.target()?);
    }
    Some(refs)
}

/// Where the direct ref `name` points, `None` when it does not exist.
fn ref_target(repo: &Repository, name: &str) -> Result<Option<Oid>, git2::Error> {
    match repo.find_reference(name) {
        Ok(reference) => reference.target().map(Some).ok_or_else(|| git2::Error::from_str("symbolic reference")),
        Err(error) if error.code() == ErrorCode::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

fn branch_refspec(branch: &str) -> String {
    format!("+refs/heads/{branch}:{TRACKING_PREFIX}{branch}")
}

fn tracking_ref(branch: &str) -> String {
    format!("{TRACKING_PREFIX}{branch}")
}

fn local_ref(branch: &str) -> String {
    format!("{LOCAL_PREFIX}{branch}")
}

/// Only full object ids are accepted: libgit2 would pad a short one with zeros and silently look
/// up a different object.
fn parse_commit_id(value: &str) -> Result<Oid, GitError> {
    let invalid = || GitError::InvalidCommitId { value: value.to_owned() };
    if value.len() != 40 || !value.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    Oid::from_str(value).map_err(|_| invalid())
}

fn git_signature(author: &Signature, time: DateTime<Utc>) -> Result<git2::Signature<'static>, GitError> {
    let invalid =
        |source| GitError::InvalidSignature { name: author.name.clone(), email: author.email.clone(), source };
    // A control character (a newline above all) would let the identity write extra commit
    // headers; libgit2 only checks for angle brackets.
    if author.name.chars().chain(author.email.chars()).any(char::is_control) {
        return Err(invalid(git2::Error::from_str("the name or email contains a control character")));
    }
    git2::Signature::new(&author.name, &author.email, &git2::Time::new(time.timestamp(), 0)).map_err(invalid)
}

/// A directory name for a mirror being created that no other process or thread can pick.
fn scratch_name(remote: &RemoteUrl) -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(".{}.{}-{nanos}-{sequence}.partial", remote.cache_dir_name(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_follow_git_rules() {
        for valid in ["main", "gantry/dev/web/0123456789ab", "release-1.2"] {
            assert_eq!(validate_branch(valid).unwrap(), valid);
        }
        for invalid in ["", "HEAD", "-x", "a..b", "a b", "a~1", "a:b", "ends/", "x.lock", "a\\b"] {
            assert!(
                matches!(validate_branch(invalid), Err(GitError::InvalidBranch { .. })),
                "{invalid:?} should be refused"
            );
        }
    }

    #[test]
    fn only_full_commit_ids_are_accepted() {
        let full = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(parse_commit_id(full).unwrap().to_string(), full);
        for invalid in ["", "0123456", "main", &format!("{full}0"), "g123456789abcdef0123456789abcdef01234567"] {
            assert!(matches!(parse_commit_id(invalid), Err(GitError::InvalidCommitId { .. })));
        }
    }

    #[test]
    fn signatures_refuse_header_injection() {
        let author = Signature { name: "gantry\ncommitter someone".to_owned(), email: "gantry@example.com".to_owned() };
        assert!(matches!(git_signature(&author, Utc::now()), Err(GitError::InvalidSignature { .. })));
        let angle = Signature { name: "gantry <x>".to_owned(), email: "gantry@example.com".to_owned() };
        assert!(git_signature(&angle, Utc::now()).is_err());
    }

    #[test]
    fn push_outcomes_name_the_resulting_commit() {
        let created = PushOutcome::Created { commit: "a".to_owned() };
        let updated = PushOutcome::Updated { commit: "b".to_owned(), previous: "a".to_owned() };
        assert_eq!(created.commit(), "a");
        assert_eq!(updated.commit(), "b");
        assert_eq!(
            serde_json::to_value(&updated).unwrap(),
            serde_json::json!({"outcome": "updated", "commit": "b", "previous": "a"})
        );
    }
}

/// A ref lock left behind by a process that died while holding it (git's `*.lock` files are
/// never cleaned up by anyone else) would refuse every later push of the branch. A live writer
/// holds a ref lock for milliseconds, so a lock older than this is taken to be abandoned.
const STALE_LOCK_AGE: std::time::Duration = std::time::Duration::from_secs(5);

fn remove_stale_lock(lock: &Path) {
    let age = std::fs::metadata(lock).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    if age.is_some_and(|age| age > STALE_LOCK_AGE) && std::fs::remove_file(lock).is_ok() {
        tracing::warn!(lock = %lock.display(), "removed a ref lock abandoned by a crashed writer");
    }
}

/// Sweeps ref locks that a crashed process left in a mirror (see [`STALE_LOCK_AGE`]).
fn remove_stale_locks(git_dir: &Path) {
    for name in ["packed-refs.lock", "HEAD.lock", "FETCH_HEAD.lock", "shallow.lock"] {
        remove_stale_lock(&git_dir.join(name));
    }
    let mut pending = vec![git_dir.join("refs")];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "lock") {
                remove_stale_lock(&path);
            }
        }
    }
}
