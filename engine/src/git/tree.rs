//! Editing trees in the object database without a work tree.
//!
//! Only the directories on the way to a changed file are rewritten; every other subtree keeps
//! its object id, so the cost of a commit grows with the change and not with the repository.

use std::collections::BTreeMap;

use git2::{ObjectType, Oid, Repository, Tree};

/// Regular file mode in a git tree.
const MODE_FILE: i32 = 0o100_644;
/// Executable file mode in a git tree.
const MODE_EXECUTABLE: i32 = 0o100_755;
/// Directory mode in a git tree.
const MODE_TREE: i32 = 0o040_000;
/// Symbolic link mode in a git tree.
const MODE_LINK: i32 = 0o120_000;
/// Submodule (gitlink) mode in a git tree.
const MODE_GITLINK: i32 = 0o160_000;

/// Why a tree edit could not be made.
#[derive(Debug)]
pub(crate) enum TreeEditError {
    /// The path is malformed or collides with what the tree holds.
    Path { path: String, reason: String },
    /// libgit2 failed to read or write an object.
    Git(git2::Error),
}

impl From<git2::Error> for TreeEditError {
    fn from(error: git2::Error) -> Self {
        TreeEditError::Git(error)
    }
}

fn path_error(path: &str, reason: impl Into<String>) -> TreeEditError {
    TreeEditError::Path { path: path.to_owned(), reason: reason.into() }
}

/// Splits a repository-relative path into its components, refusing anything git or a checkout
/// would treat specially (absolute paths, `.`/`..`, empty components, `.git`).
pub(crate) fn split_path(path: &str) -> Result<Vec<&str>, TreeEditError> {
    if path.is_empty() {
        return Err(path_error(path, "the path is empty"));
    }
    if path.contains('\0') {
        return Err(path_error(path, "the path contains a NUL byte"));
    }
    if path.starts_with('/') {
        return Err(path_error(path, "the path must be relative to the repository root"));
    }
    let components: Vec<&str> = path.split('/').collect();
    for component in &components {
        match *component {
            "" => return Err(path_error(path, "the path has an empty component")),
            "." | ".." => return Err(path_error(path, "the path has a '.' or '..' component")),
            name if name.eq_ignore_ascii_case(".git") => {
                return Err(path_error(path, "the path enters the reserved '.git' directory"));
            }
            _ => {}
        }
    }
    Ok(components)
}

/// The requested changes below one directory.
enum Change {
    File(Oid),
    /// Remove the file or the whole directory at this path, if there is one.
    Remove,
    Directory(BTreeMap<String, Change>),
}

/// Writes `files` as blobs and returns the id of `base` with those files replaced or added.
/// Existing files keep their executable bit; missing directories are created.
pub(crate) fn edit_tree(repo: &Repository, base: &Tree<'_>, files: &[(&str, &[u8])]) -> Result<Oid, TreeEditError> {
    edit_tree_removing(repo, base, files, &[])
}

/// [`edit_tree`], also removing the files or whole directories at `removals` (a path that
/// does not exist is no error). A directory left empty is removed too, since git trees do
/// not hold empty directories.
pub(crate) fn edit_tree_removing(
    repo: &Repository,
    base: &Tree<'_>,
    files: &[(&str, &[u8])],
    removals: &[&str],
) -> Result<Oid, TreeEditError> {
    let mut root: BTreeMap<String, Change> = BTreeMap::new();
    for (path, content) in files {
        let components = split_path(path)?;
        let blob = repo.blob(content)?;
        insert_change(&mut root, path, &components, Change::File(blob))?;
    }
    for path in removals {
        let components = split_path(path)?;
        insert_change(&mut root, path, &components, Change::Remove)?;
    }
    match write_directory(repo, Some(base), &root, "")? {
        Some(tree) => Ok(tree),
        None => Ok(repo.treebuilder(None)?.write()?),
    }
}

fn insert_change(
    directory: &mut BTreeMap<String, Change>,
    path: &str,
    components: &[&str],
    leaf: Change,
) -> Result<(), TreeEditError> {
    let Some((first, rest)) = components.split_first() else {
        return Err(path_error(path, "the path is empty"));
    };
    if rest.is_empty() {
        return match directory.get(*first) {
            Some(Change::File(_) | Change::Remove) => Err(path_error(path, "the path is given more than once")),
            Some(Change::Directory(_)) if matches!(leaf, Change::Remove) => {
                Err(path_error(path, "the change writes inside a directory it removes"))
            }
            Some(Change::Directory(_)) => {
                Err(path_error(path, "the path is both a file and a directory in this change"))
            }
            None => {
                directory.insert((*first).to_owned(), leaf);
                Ok(())
            }
        };
    }
    let entry = directory.entry((*first).to_owned()).or_insert_with(|| Change::Directory(BTreeMap::new()));
    match entry {
        Change::Directory(children) => insert_change(children, path, rest, leaf),
        Change::File(_) => Err(path_error(path, "the path is both a file and a directory in this change")),
        Change::Remove => Err(path_error(path, "the change writes inside a directory it removes")),
    }
}

/// The id of `base` with `changes` made, or `None` when that leaves the directory empty.
fn write_directory(
    repo: &Repository,
    base: Option<&Tree<'_>>,
    changes: &BTreeMap<String, Change>,
    prefix: &str,
) -> Result<Option<Oid>, TreeEditError> {
    let mut builder = repo.treebuilder(base)?;
    for (name, change) in changes {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let existing = base.and_then(|tree| tree.get_name(name));
        match change {
            Change::Remove => {
                if existing.is_some() {
                    builder.remove(name.as_str())?;
                }
            }
            Change::File(blob) => {
                let mode = match existing.map(|entry| entry.filemode()) {
                    None | Some(MODE_FILE) => MODE_FILE,
                    Some(MODE_EXECUTABLE) => MODE_EXECUTABLE,
                    Some(MODE_TREE) => {
                        return Err(path_error(&path, "the path is an existing directory"));
                    }
                    Some(MODE_LINK) => {
                        return Err(path_error(&path, "the path is an existing symbolic link"));
                    }
                    Some(MODE_GITLINK) => {
                        return Err(path_error(&path, "the path is an existing submodule"));
                    }
                    Some(other) => {
                        return Err(path_error(&path, format!("the path has an unexpected file mode {other:o}")));
                    }
                };
                builder.insert(name.as_str(), *blob, mode)?;
            }
            Change::Directory(children) => {
                let subtree = match &existing {
                    None => None,
                    Some(entry) if entry.kind() == Some(ObjectType::Tree) => Some(repo.find_tree(entry.id())?),
                    Some(_) => {
                        return Err(path_error(&path, "the path is an existing file, not a directory"));
                    }
                };
                match write_directory(repo, subtree.as_ref(), children, &path)? {
                    Some(tree) => {
                        builder.insert(name.as_str(), tree, MODE_TREE)?;
                    }
                    None if existing.is_some() => builder.remove(name.as_str())?,
                    None => {}
                }
            }
        }
    }
    if builder.is_empty() {
        return Ok(None);
    }
    Ok(Some(builder.write()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<impl std::fmt::Debug, TreeEditError>) -> String {
        match result {
            Err(TreeEditError::Path { reason, .. }) => reason,
            other => panic!("expected a path error, got {other:?}"),
        }
    }

    fn empty_repo() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        (dir, repo)
    }

    fn tree_with(repo: &Repository, files: &[(&str, &[u8])]) -> Oid {
        let empty = repo.find_tree(repo.treebuilder(None).unwrap().write().unwrap()).unwrap();
        edit_tree(repo, &empty, files).unwrap()
    }

    #[test]
    fn rejects_paths_git_would_treat_specially() {
        assert!(reason(split_path("")).contains("empty"));
        assert!(reason(split_path("/etc/passwd")).contains("relative"));
        assert!(reason(split_path("a//b")).contains("empty component"));
        assert!(reason(split_path("a/")).contains("empty component"));
        assert!(reason(split_path("a/../b")).contains("'..'"));
        assert!(reason(split_path("./a")).contains("'.'"));
        assert!(reason(split_path(".git/config")).contains(".git"));
        assert!(reason(split_path("apps/.GIT/hooks")).contains(".git"));
        assert!(reason(split_path("a\0b")).contains("NUL"));
        assert_eq!(split_path("apps/web/values.yaml").unwrap(), ["apps", "web", "values.yaml"]);
    }

    #[test]
    fn unrelated_subtrees_keep_their_ids() {
        let (_dir, repo) = empty_repo();
        let base = tree_with(&repo, &[("a/one.yaml", b"1\n"), ("b/two.yaml", b"2\n")]);
        let base = repo.find_tree(base).unwrap();
        let edited = edit_tree(&repo, &base, &[("a/one.yaml", b"changed\n")]).unwrap();
        let edited = repo.find_tree(edited).unwrap();
        assert_eq!(edited.get_name("b").unwrap().id(), base.get_name("b").unwrap().id());
        assert_ne!(edited.get_name("a").unwrap().id(), base.get_name("a").unwrap().id());
    }

    #[test]
    fn new_directories_are_created() {
        let (_dir, repo) = empty_repo();
        let tree = repo.find_tree(tree_with(&repo, &[("x/y/z.txt", b"z")])).unwrap();
        let entry = tree.get_path(std::path::Path::new("x/y/z.txt")).unwrap();
        assert_eq!(repo.find_blob(entry.id()).unwrap().content(), b"z");
    }

    #[test]
    fn executable_bit_survives_an_edit() {
        let (_dir, repo) = empty_repo();
        let blob = repo.blob(b"#!/bin/sh\n").unwrap();
        let mut builder = repo.treebuilder(None).unwrap();
        builder.insert("run.sh", blob, MODE_EXECUTABLE).unwrap();
        let base = repo.find_tree(builder.write().unwrap()).unwrap();
        let edited = edit_tree(&repo, &base, &[("run.sh", b"#!/bin/sh\nexit 0\n")]).unwrap();
        let edited = repo.find_tree(edited).unwrap();
        assert_eq!(edited.get_name("run.sh").unwrap().filemode(), MODE_EXECUTABLE);
    }

    #[test]
    fn conflicting_requests_are_refused() {
        let (_dir, repo) = empty_repo();
        let base = repo.find_tree(tree_with(&repo, &[("a/b.yaml", b"b")])).unwrap();
        assert!(reason(edit_tree(&repo, &base, &[("a", b"x")])).contains("existing directory"));
        assert!(reason(edit_tree(&repo, &base, &[("a/b.yaml/c", b"x")])).contains("existing file"));
        assert!(reason(edit_tree(&repo, &base, &[("n", b"1"), ("n", b"2")])).contains("more than once"));
        assert!(reason(edit_tree(&repo, &base, &[("n", b"1"), ("n/m", b"2")])).contains("both a file and a directory"));
        assert!(reason(edit_tree(&repo, &base, &[("n/m", b"1"), ("n", b"2")])).contains("both a file and a directory"));
    }

    #[test]
    fn removals_take_whole_directories_and_prune_empty_parents() {
        let (_dir, repo) = empty_repo();
        let base = tree_with(
            &repo,
            &[("previews/a/kustomization.yaml", b"a"), ("previews/a/sub/x.yaml", b"x"), ("apps/web.yaml", b"w")],
        );
        let base = repo.find_tree(base).unwrap();
        let edited = repo.find_tree(edit_tree_removing(&repo, &base, &[], &["previews/a"]).unwrap()).unwrap();
        // `previews/` held only `a`, so it goes too; `apps/` is untouched.
        assert!(edited.get_name("previews").is_none());
        assert_eq!(edited.get_name("apps").unwrap().id(), base.get_name("apps").unwrap().id());
        // Removing what is not there changes nothing.
        assert_eq!(edit_tree_removing(&repo, &base, &[], &["previews/b"]).unwrap(), base.id());
        // Writing and removing in one change.
        let both = edit_tree_removing(&repo, &base, &[("previews/b/k.yaml", b"b")], &["previews/a"]).unwrap();
        let both = repo.find_tree(both).unwrap();
        assert!(both.get_path(std::path::Path::new("previews/b/k.yaml")).is_ok());
        assert!(both.get_path(std::path::Path::new("previews/a")).is_err());
        assert!(
            reason(edit_tree_removing(&repo, &base, &[("previews/a/k.yaml", b"b")], &["previews/a"]))
                .contains("writes inside a directory it removes")
        );
    }

    #[test]
    fn order_of_files_does_not_change_the_tree() {
        let (_dir, repo) = empty_repo();
        let forward = tree_with(&repo, &[("a", b"1"), ("d/e", b"2")]);
        let backward = tree_with(&repo, &[("d/e", b"2"), ("a", b"1")]);
        assert_eq!(forward, backward);
    }
}
