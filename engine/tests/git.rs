//! The git adapter against real bare repositories: `file://` URLs, plain paths and a
//! `git daemon` on loopback, checked with the `git` command line.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use gantry_engine::git::{EnvRepo, GitError, PushOutcome, Signature, init_bare_repo};

const VALUES_PATH: &str = "apps/web/values.yaml";
const OLD_DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const NEW_DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const BRANCH: &str = "gantry/dev/web/222222222222";

fn values(digest: &str) -> Vec<u8> {
    format!("image:\n  repository: registry.local/web\n  digest: {digest}\nreplicas: 2\n").into_bytes()
}

fn author() -> Signature {
    Signature { name: "gantry".to_owned(), email: "gantry@example.com".to_owned() }
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_323_045 + seconds, 0).unwrap()
}

/// Runs the git command line in `dir`, isolated from the machine's git configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=someone", "-c", "user.email=someone@example.com"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// A temporary world: one bare env repo with `main` holding `apps/web/values.yaml`, and a
/// cache directory for mirrors.
struct World {
    dir: tempfile::TempDir,
    remote: PathBuf,
    cache: PathBuf,
}

impl World {
    fn new() -> World {
        World::with_files(&[])
    }

    /// Like [`World::new`], plus `extra` files in the initial commit.
    fn with_files(extra: &[(String, Vec<u8>)]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("remotes").join("dev.git");
        let cache = dir.path().join("cache");
        let mut files: Vec<(&str, &[u8])> =
            extra.iter().map(|(path, content)| (path.as_str(), content.as_slice())).collect();
        let initial_values = values(OLD_DIGEST);
        files.push((VALUES_PATH, &initial_values));
        files.push(("README.md", b"dev environment\n"));
        init_bare_repo(&remote, "main", &files, &author()).unwrap();
        World { dir, remote, cache }
    }

    fn url(&self) -> String {
        format!("file://{}", self.remote.display())
    }

    fn open(&self) -> EnvRepo {
        EnvRepo::open(&self.cache, &self.url()).unwrap()
    }

    fn remote_head(&self, branch: &str) -> String {
        git(&self.remote, &["rev-parse", &format!("refs/heads/{branch}")]).trim().to_owned()
    }

    /// Someone else commits `content` at `path` on `main` through a clone and pushes it.
    fn push_from_elsewhere(&self, path: &str, content: &str) -> String {
        let work = self.dir.path().join(format!("work-{}", rand_suffix()));
        git(self.dir.path(), &["clone", "--quiet", &self.url(), work.to_str().unwrap()]);
        let file = work.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        git(&work, &["add", "--all"]);
        git(&work, &["commit", "--quiet", "--message", "change from elsewhere"]);
        git(&work, &["push", "--quiet", "origin", "HEAD:refs/heads/main"]);
        git(&work, &["rev-parse", "HEAD"]).trim().to_owned()
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// Loose plus packed objects in a repository.
fn object_count(repo: &Path) -> u64 {
    git(repo, &["count-objects", "-v"])
        .lines()
        .filter_map(|line| line.split_once(": "))
        .filter(|(key, _)| *key == "count" || *key == "in-pack")
        .map(|(_, value)| value.trim().parse::<u64>().unwrap())
        .sum()
}

/// The commit that promotes the new digest on top of `main` as last fetched.
fn promote(repo: &EnvRepo, time: DateTime<Utc>) -> String {
    let base = repo.branch_head("main").unwrap().unwrap();
    let new_values = values(NEW_DIGEST);
    repo.commit_files(&base, &[(VALUES_PATH, &new_values)], "promote web to dev", &author(), time, BRANCH).unwrap()
}

#[test]
fn open_clones_and_reads_the_base_branch() {
    let world = World::new();
    let repo = world.open();

    let head = repo.branch_head("main").unwrap();
    assert_eq!(head.as_deref(), Some(world.remote_head("main").as_str()));
    assert_eq!(repo.branch_head("no-such-branch").unwrap(), None);
    let head = head.unwrap();
    assert_eq!(repo.read_file(&head, VALUES_PATH).unwrap(), Some(values(OLD_DIGEST)));
    // The remote's HEAD names the base branch, as `gantry up` needs for cloning by hand.
    assert_eq!(git(&world.remote, &["symbolic-ref", "HEAD"]).trim(), "refs/heads/main");
}

#[test]
fn plain_paths_work_like_file_urls() {
    let world = World::new();
    let repo = EnvRepo::open(&world.cache, world.remote.to_str().unwrap()).unwrap();
    assert_eq!(repo.branch_head("main").unwrap().as_deref(), Some(world.remote_head("main").as_str()));
    let commit = promote(&repo, at(0));
    assert!(matches!(repo.push_branch(&commit, BRANCH).unwrap(), PushOutcome::Created { .. }));
    assert_eq!(world.remote_head(BRANCH), commit);
}

#[test]
fn read_file_distinguishes_missing_files_from_directories() {
    let world = World::new();
    let repo = world.open();
    let head = repo.branch_head("main").unwrap().unwrap();

    assert_eq!(repo.read_file(&head, "apps/web/missing.yaml").unwrap(), None);
    assert_eq!(repo.read_file(&head, "no/such/dir/file").unwrap(), None);
    assert_eq!(repo.read_file(&head, "README.md/inside").unwrap(), None);
    assert!(matches!(repo.read_file(&head, "apps/web"), Err(GitError::NotAFile { .. })));
    assert!(matches!(repo.read_file(&head, "../escape"), Err(GitError::InvalidPath { .. })));
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    assert!(matches!(repo.read_file(unknown, "README.md"), Err(GitError::CommitNotFound { .. })));
}

#[test]
fn commit_files_is_deterministic() {
    let world = World::new();
    let repo = world.open();
    let first = promote(&repo, at(0));
    let again = promote(&repo, at(0));
    assert_eq!(first, again);

    // A different mirror of the same remote (another replica, or the same one after losing
    // its cache) computes the very same commit.
    let other_cache = world.dir.path().join("other-cache");
    let other = EnvRepo::open(&other_cache, &world.url()).unwrap();
    assert_eq!(promote(&other, at(0)), first);

    // The time is part of the identity.
    assert_ne!(promote(&repo, at(60)), first);

    // Author, committer and message are what was asked for, with git's trailing newline.
    let shown = git(repo.mirror_path(), &["show", "--no-patch", "--format=%an <%ae>|%cn <%ce>|%at|%B", &first]);
    assert_eq!(
        shown,
        format!("gantry <gantry@example.com>|gantry <gantry@example.com>|{}|promote web to dev\n\n", at(0).timestamp())
    );
}

#[test]
fn committed_ids_survive_restarts_under_local_refs() {
    let world = World::new();
    let commit = promote(&world.open(), at(0));
    let reopened = world.open();
    let stored = git(reopened.mirror_path(), &["rev-parse", &format!("refs/gantry-local/{BRANCH}")]);
    assert_eq!(stored.trim(), commit);
}

#[test]
fn commit_files_refuses_an_empty_change() {
    let world = World::new();
    let repo = world.open();
    let base = repo.branch_head("main").unwrap().unwrap();
    let same = values(OLD_DIGEST);
    let result = repo.commit_files(&base, &[(VALUES_PATH, &same)], "nothing", &author(), at(0), BRANCH);
    match result {
        Err(GitError::NoChanges { parent, .. }) => assert_eq!(parent, base),
        other => panic!("expected NoChanges, got {other:?}"),
    }
}

#[test]
fn push_creates_then_leaves_unchanged_then_updates_a_stale_branch() {
    let world = World::new();
    let repo = world.open();
    let commit = promote(&repo, at(0));

    assert_eq!(repo.push_branch(&commit, BRANCH).unwrap(), PushOutcome::Created { commit: commit.clone() });
    assert_eq!(world.remote_head(BRANCH), commit);
    assert_eq!(repo.branch_head(BRANCH).unwrap().as_deref(), Some(commit.as_str()));

    assert_eq!(repo.push_branch(&commit, BRANCH).unwrap(), PushOutcome::Unchanged { commit: commit.clone() });

    // The base moves under the open branch; the re-made commit sits on the new base, so the
    // gantry branch is rewritten.
    world.push_from_elsewhere("README.md", "dev environment, now with notes\n");
    repo.fetch(&["main"]).unwrap();
    let rebased = promote(&repo, at(0));
    assert_ne!(rebased, commit);
    assert_eq!(
        repo.push_branch(&rebased, BRANCH).unwrap(),
        PushOutcome::Updated { commit: rebased.clone(), previous: commit }
    );
    assert_eq!(world.remote_head(BRANCH), rebased);
    assert_eq!(git(&world.remote, &["rev-parse", &format!("{rebased}^")]).trim(), world.remote_head("main"));
}

#[test]
fn a_remote_commit_with_the_same_tree_is_adopted() {
    let world = World::new();
    let repo = world.open();
    let pushed = promote(&repo, at(0));
    repo.push_branch(&pushed, BRANCH).unwrap();

    // A re-run that lost the original time makes a different commit with the same content.
    let remade = promote(&repo, at(3600));
    assert_ne!(remade, pushed);
    assert_eq!(repo.push_branch(&remade, BRANCH).unwrap(), PushOutcome::Unchanged { commit: pushed.clone() });
    assert_eq!(world.remote_head(BRANCH), pushed);
    let adopted = git(repo.mirror_path(), &["rev-parse", &format!("refs/gantry-local/{BRANCH}")]);
    assert_eq!(adopted.trim(), pushed);
}

#[test]
fn push_sees_the_remote_as_it_is_not_as_last_fetched() {
    let world = World::new();
    let repo = world.open();
    let commit = promote(&repo, at(0));
    repo.push_branch(&commit, BRANCH).unwrap();

    // After a merge the forge deletes the branch; pushing again must create it, and the
    // mirror must forget the deleted branch.
    git(&world.remote, &["branch", "--quiet", "-D", BRANCH]);
    assert_eq!(repo.push_branch(&commit, BRANCH).unwrap(), PushOutcome::Created { commit: commit.clone() });
    git(&world.remote, &["branch", "--quiet", "-D", BRANCH]);
    repo.fetch(&[BRANCH]).unwrap();
    assert_eq!(repo.branch_head(BRANCH).unwrap(), None);
}

#[test]
fn only_gantry_branches_are_rewritten() {
    let world = World::new();
    let repo = world.open();
    let base = repo.branch_head("main").unwrap().unwrap();
    let new_values = values(NEW_DIGEST);
    let direct =
        repo.commit_files(&base, &[(VALUES_PATH, &new_values)], "direct change", &author(), at(0), "main").unwrap();

    world.push_from_elsewhere("README.md", "moved on\n");
    let moved = world.remote_head("main");
    let error = repo.push_branch(&direct, "main").unwrap_err();
    assert!(matches!(error, GitError::NotGantryOwned { .. }), "{error:?}");
    assert!(!error.is_transient());
    assert_eq!(world.remote_head("main"), moved);

    // A fast-forward of a branch gantry does not own is fine.
    let on_top =
        repo.commit_files(&moved, &[(VALUES_PATH, &new_values)], "direct change", &author(), at(0), "main").unwrap();
    assert_eq!(
        repo.push_branch(&on_top, "main").unwrap(),
        PushOutcome::Updated { commit: on_top.clone(), previous: moved }
    );
    assert_eq!(world.remote_head("main"), on_top);
}

#[test]
fn pushed_branch_differs_from_base_by_exactly_one_line() {
    let world = World::new();
    let repo = world.open();
    let base = repo.branch_head("main").unwrap().unwrap();
    let commit = promote(&repo, at(0));
    repo.push_branch(&commit, BRANCH).unwrap();

    let log = git(&world.remote, &["log", "--format=%H %s", &format!("main..{BRANCH}")]);
    assert_eq!(log, format!("{commit} promote web to dev\n"));

    let changed_lines = |diff: &str| -> Vec<String> {
        diff.lines()
            .filter(|line| {
                (line.starts_with('+') || line.starts_with('-')) && !line.starts_with("+++") && !line.starts_with("---")
            })
            .map(str::to_owned)
            .collect()
    };
    let expected = vec![format!("-  digest: {OLD_DIGEST}"), format!("+  digest: {NEW_DIGEST}")];
    let cli_diff = git(&world.remote, &["diff", "main", BRANCH]);
    assert_eq!(changed_lines(&cli_diff), expected);
    assert_eq!(git(&world.remote, &["diff", "--name-only", "main", BRANCH]), format!("{VALUES_PATH}\n"));

    let own_diff = repo.diff(&base, &commit).unwrap();
    assert_eq!(changed_lines(&own_diff), expected);
    assert!(own_diff.starts_with(&format!("diff --git a/{VALUES_PATH} b/{VALUES_PATH}\n")), "{own_diff}");
    assert!(own_diff.contains(&format!("--- a/{VALUES_PATH}\n+++ b/{VALUES_PATH}\n")));
}

#[test]
fn a_second_open_reuses_the_mirror() {
    let world = World::new();
    let first = world.open();
    let commit = promote(&first, at(0));
    let marker = first.mirror_path().join("gantry-test-marker");
    std::fs::write(&marker, "kept").unwrap();

    let second = world.open();
    assert_eq!(second.mirror_path(), first.mirror_path());
    assert!(marker.exists(), "the mirror was recreated");
    let entries: Vec<_> = std::fs::read_dir(&world.cache).unwrap().collect();
    assert_eq!(entries.len(), 1, "exactly one mirror, no leftovers: {entries:?}");
    // The commit made through the first handle is visible through the second.
    assert_eq!(second.read_file(&commit, VALUES_PATH).unwrap(), Some(values(NEW_DIGEST)));
}

#[test]
fn fetch_brings_only_what_changed() {
    // Enough unrelated content that a fresh clone would be obvious in the object count.
    let extra: Vec<(String, Vec<u8>)> = (0..150)
        .map(|index| (format!("apps/app-{index:03}/values.yaml"), format!("replicas: {index}\n").into_bytes()))
        .collect();
    let world = World::with_files(&extra);
    let repo = world.open();
    let before = object_count(repo.mirror_path());
    assert!(before > 300, "the initial clone holds the whole repo: {before}");

    let pushed = world.push_from_elsewhere("apps/app-007/values.yaml", "replicas: 70\n");
    assert_ne!(repo.branch_head("main").unwrap(), Some(pushed.clone()), "not fetched yet");
    repo.fetch(&["main"]).unwrap();
    assert_eq!(repo.branch_head("main").unwrap(), Some(pushed.clone()));
    // One commit, the root tree, `apps`, `apps/app-007` and one blob.
    let added = object_count(repo.mirror_path()) - before;
    assert!(added <= 5, "fetched {added} objects for a one-file change");
    assert_eq!(repo.read_file(&pushed, "apps/app-007/values.yaml").unwrap(), Some(b"replicas: 70\n".to_vec()));
}

#[test]
fn unknown_transports_are_refused_clearly() {
    let world = World::new();
    for url in ["ftp://files.example/env-dev.git", "svn://svn.example/env-dev"] {
        let error = EnvRepo::open(&world.cache, url).unwrap_err();
        assert!(matches!(error, GitError::UnsupportedUrl { .. }), "{error:?}");
        assert!(!error.is_transient());
        let message = error.to_string();
        assert!(message.contains("unknown url scheme"), "{message}");
        assert!(message.contains(".example"), "{message}");
    }
    assert!(!world.cache.exists(), "nothing is created for a refused url");
}

#[test]
fn a_missing_remote_fails_permanently_and_leaves_nothing_behind() {
    let world = World::new();
    let missing = world.dir.path().join("remotes").join("missing.git");
    for url in [format!("file://{}", missing.display()), missing.display().to_string()] {
        let error = EnvRepo::open(&world.cache, &url).unwrap_err();
        assert!(matches!(error, GitError::Fetch { .. }), "{error:?}");
        assert!(!error.is_transient(), "{error:?}");
        assert!(error.to_string().contains("missing.git"), "{error}");
        let leftovers: Vec<_> = std::fs::read_dir(&world.cache).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn init_bare_repo_leaves_an_existing_branch_alone() {
    let world = World::new();
    let head = world.remote_head("main");
    init_bare_repo(&world.remote, "main", &[("other.txt", b"x")], &author()).unwrap();
    assert_eq!(world.remote_head("main"), head);
}

/// A `git daemon` serving one directory on a free loopback port, stopped on drop.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(base: &Path) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Run the daemon program itself: `git daemon` would start it as a grandchild that
        // outlives a kill of the `git` wrapper.
        let exec_path = git(base, &["--exec-path"]);
        let child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .args([
                "--export-all",
                "--enable=receive-pack",
                "--reuseaddr",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
            ])
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let daemon = Daemon { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn git_daemon_round_trip_and_server_side_rejection() {
    let world = World::new();
    let daemon = Daemon::start(world.remote.parent().unwrap());
    let url = format!("git://127.0.0.1:{}/dev.git", daemon.port);
    let repo = EnvRepo::open(&world.cache, &url).unwrap();
    assert_eq!(repo.url(), url);

    let commit = promote(&repo, at(0));
    assert_eq!(repo.push_branch(&commit, BRANCH).unwrap(), PushOutcome::Created { commit: commit.clone() });
    assert_eq!(world.remote_head(BRANCH), commit);
    assert_eq!(repo.push_branch(&commit, BRANCH).unwrap(), PushOutcome::Unchanged { commit });

    // A server-side hook refuses the next branch; the refusal must surface as an error.
    let hook = world.remote.join("hooks").join("pre-receive");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(&hook, "#!/bin/sh\necho 'branch frozen' >&2\nexit 1\n").unwrap();
    let mut permissions = std::fs::metadata(&hook).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&hook, permissions).unwrap();

    let other_branch = "gantry/dev/web/333333333333";
    let base = repo.branch_head("main").unwrap().unwrap();
    let other = repo
        .commit_files(&base, &[("apps/web/extra.yaml", b"x: 1\n")], "another promotion", &author(), at(0), other_branch)
        .unwrap();
    let error = repo.push_branch(&other, other_branch).unwrap_err();
    assert!(matches!(error, GitError::PushRejected { .. }), "{error:?}");
    assert!(!error.is_transient(), "{error:?}");
    assert_eq!(repo.branch_head(other_branch).unwrap(), None);
}

#[test]
fn an_unreachable_daemon_is_a_transient_error() {
    let world = World::new();
    // Bind and release a port so nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let error = EnvRepo::open(&world.cache, &format!("git://127.0.0.1:{port}/dev.git")).unwrap_err();
    assert!(matches!(error, GitError::Fetch { .. }), "{error:?}");
    assert!(error.is_transient(), "{error:?}");
}

/// `git http-backend` behind Basic authentication on a free loopback port: a minimal HTTP/1.1
/// server that runs the CGI program once per request and closes each connection.
struct HttpGit {
    port: u16,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HttpGit {
    fn start(project_root: &Path, user: &str, password: &str) -> HttpGit {
        use base64::Engine as _;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let expected =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = requests.clone();
        let root = project_root.to_path_buf();
        // The thread ends with the test process; the listener is never closed before that.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = serve_one(stream, &root, &expected);
            }
        });
        HttpGit { port, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn serve_one(stream: TcpStream, root: &Path, expected_auth: &str) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = std::collections::HashMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let mut body = Vec::new();
    if let Some(length) = headers.get("content-length") {
        body.resize(length.parse().unwrap_or(0), 0);
        reader.read_exact(&mut body)?;
    } else if headers.get("transfer-encoding").is_some_and(|value| value.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size = usize::from_str_radix(size_line.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    if headers.get("authorization").map(String::as_str) != Some(expected_auth) {
        return writer.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut child = Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", "bot")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", headers.get("content-type").cloned().unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body)?;
    }
    let output = child.wait_with_output()?;
    let split = output.stdout.windows(4).position(|window| window == b"\r\n\r\n").unwrap_or(output.stdout.len());
    let cgi_headers = String::from_utf8_lossy(&output.stdout[..split]).into_owned();
    let cgi_body = output.stdout.get(split + 4..).unwrap_or_default();
    let mut status = "200 OK".to_owned();
    let mut response = Vec::new();
    for line in cgi_headers.lines() {
        match line.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("status") => {
                status = value.trim().to_owned();
            }
            Some(_) => response.extend_from_slice(format!("{line}\r\n").as_bytes()),
            None => {}
        }
    }
    writer.write_all(format!("HTTP/1.1 {status}\r\n").as_bytes())?;
    writer.write_all(&response)?;
    writer.write_all(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", cgi_body.len()).as_bytes())?;
    writer.write_all(cgi_body)
}

#[test]
fn http_with_credentials_in_the_url() {
    let world = World::new();
    let server = HttpGit::start(world.remote.parent().unwrap(), "bot", "s3cret");
    let base = format!("127.0.0.1:{}/dev.git", server.port);

    let repo = EnvRepo::open(&world.cache, &format!("http://bot:s3cret@{base}")).unwrap();
    assert_eq!(repo.url(), format!("http://{base}"));
    let commit = promote(&repo, at(0));
    assert_eq!(repo.push_branch(&commit, BRANCH).unwrap(), PushOutcome::Created { commit: commit.clone() });
    assert_eq!(world.remote_head(BRANCH), commit);

    // A wrong password is refused after one attempt, not retried in a loop.
    let before = server.requests();
    let other_cache = world.dir.path().join("other-cache");
    let error = EnvRepo::open(&other_cache, &format!("http://bot:wrong@{base}")).unwrap_err();
    assert!(matches!(error, GitError::Authentication { .. }), "{error:?}");
    assert!(!error.is_transient());
    assert!(!error.to_string().contains("wrong"), "{error}");
    let attempts = server.requests() - before;
    assert!(attempts <= 3, "{attempts} requests for one refused login");

    let error = EnvRepo::open(&other_cache, &format!("http://{base}")).unwrap_err();
    assert!(matches!(error, GitError::Authentication { .. }), "{error:?}");
}
