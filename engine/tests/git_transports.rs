//! The git adapter over real authenticated transports on loopback, through the `git` command
//! line: https (`git http-backend` behind a small TLS server with Basic authentication and a
//! self-signed certificate made by `openssl`) and ssh (a real `sshd` on a free port, started by
//! the test with its own host key, authorized key and configuration).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use gantry_engine::git::{
    EnvRepo, GitError, HostKeyChecking, LandOutcome, PushOutcome, RemoteAuth, SecretSource, Signature, init_bare_repo,
};

const VALUES_PATH: &str = "apps/web/values.yaml";
const BRANCH: &str = "gantry/dev/web/222222222222";
const TOKEN: &str = "ghs_Zr8kT0kenThatMustNeverShow";

fn author() -> Signature {
    Signature { name: "gantry".to_owned(), email: "gantry@example.com".to_owned() }
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_323_045 + seconds, 0).unwrap()
}

/// Runs a command, isolated from the machine's git configuration, and returns its stdout.
fn run(command: &mut Command) -> String {
    let output = command.env("GIT_CONFIG_GLOBAL", "/dev/null").env("GIT_CONFIG_NOSYSTEM", "1").output().unwrap();
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn git(dir: &Path, args: &[&str]) -> String {
    run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=someone", "-c", "user.email=s@example.com"])
        .args(args))
}

/// One bare env repo `dev.git` under `remotes/`, a cache for mirrors, and room for keys.
struct World {
    dir: tempfile::TempDir,
    remote: PathBuf,
    cache: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("remotes").join("dev.git");
        init_bare_repo(&remote, "main", &[(VALUES_PATH, b"image:\n  tag: dev-1.0.0\n")], &author()).unwrap();
        let cache = dir.path().join("cache");
        World { dir, remote, cache }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn remote_head(&self, branch: &str) -> String {
        git(&self.remote, &["rev-parse", &format!("refs/heads/{branch}")]).trim().to_owned()
    }

    /// Someone else commits on `main` of the bare repository, through a clone on disk.
    fn push_from_elsewhere(&self, path: &str, content: &str) {
        let work = self.path("elsewhere");
        git(self.dir.path(), &["clone", "--quiet", self.remote.to_str().unwrap(), work.to_str().unwrap()]);
        std::fs::create_dir_all(work.join(path).parent().unwrap()).unwrap();
        std::fs::write(work.join(path), content).unwrap();
        git(&work, &["add", "--all"]);
        git(&work, &["commit", "--quiet", "--message", "change from elsewhere"]);
        git(&work, &["push", "--quiet", "origin", "HEAD:refs/heads/main"]);
    }
}

/// The commit that sets a new tag on top of `main` as last fetched.
fn promote(repo: &EnvRepo, tag: &str, branch: &str) -> String {
    let base = repo.branch_head("main").unwrap().unwrap();
    let content = format!("image:\n  tag: {tag}\n");
    repo.commit_files(&base, &[(VALUES_PATH, content.as_bytes())], "promote web", &author(), at(0), branch).unwrap()
}

// ---------------------------------------------------------------------------------------------
// https

/// `git http-backend` behind TLS and Basic authentication on a free loopback port.
struct HttpsGit {
    port: u16,
    requests: Arc<AtomicUsize>,
    cert: PathBuf,
}

impl HttpsGit {
    fn start(world: &World, user: &str, password: &str) -> HttpsGit {
        use base64::Engine as _;
        use rustls::pki_types::pem::PemObject as _;
        let (cert, key) = (world.path("cert.pem"), world.path("key.pem"));
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null()));
        let chain = vec![rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap()];
        let private_key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, private_key)
                .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let expected =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let root = world.remote.parent().unwrap().to_path_buf();
        // The thread ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Ok(connection) = rustls::ServerConnection::new(config.clone()) else { continue };
                let tls = rustls::StreamOwned::new(connection, stream);
                let _ = serve_one(tls, &root, &expected, &counter);
            }
        });
        HttpsGit { port, requests, cert }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/dev.git", self.port)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Serves one request: 401 without the expected credentials, else the CGI's answer.
fn serve_one(
    stream: rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    root: &Path,
    expected_auth: &str,
    requests: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    if request_line.trim().is_empty() {
        return Ok(());
    }
    requests.fetch_add(1, Ordering::SeqCst);
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
    let authorized = headers.get("authorization").map(String::as_str) == Some(expected_auth);
    if authorized && headers.get("expect").is_some_and(|value| value.eq_ignore_ascii_case("100-continue")) {
        reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        reader.get_mut().flush()?;
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
    let mut response = Vec::new();
    if !authorized {
        response.extend_from_slice(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    } else {
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
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
            .env("CONTENT_TYPE", header("content-type"))
            .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
            .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
            .env("CONTENT_LENGTH", body.len().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        child.stdin.take().unwrap().write_all(&body)?;
        let output = child.wait_with_output()?;
        let split = output.stdout.windows(4).position(|window| window == b"\r\n\r\n").unwrap_or(output.stdout.len());
        let cgi_headers = String::from_utf8_lossy(&output.stdout[..split]).into_owned();
        let cgi_body = output.stdout.get(split + 4..).unwrap_or_default();
        let mut status = "200 OK".to_owned();
        let mut lines = Vec::new();
        for line in cgi_headers.lines() {
            match line.split_once(':') {
                Some((name, value)) if name.eq_ignore_ascii_case("status") => status = value.trim().to_owned(),
                Some(_) => lines.push(format!("{line}\r\n")),
                None => {}
            }
        }
        response.extend_from_slice(format!("HTTP/1.1 {status}\r\n").as_bytes());
        for line in lines {
            response.extend_from_slice(line.as_bytes());
        }
        response
            .extend_from_slice(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", cgi_body.len()).as_bytes());
        response.extend_from_slice(cgi_body);
    }
    let stream = reader.get_mut();
    stream.write_all(&response)?;
    stream.conn.send_close_notify();
    stream.flush()
}

fn token_file(world: &World, token: &str) -> SecretSource {
    let path = world.path("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    SecretSource::File(path)
}

#[test]
fn https_with_a_token_fetches_pushes_and_lands() {
    let world = World::new();
    let server = HttpsGit::start(&world, "x-access-token", TOKEN);
    let auth =
        RemoteAuth { token: Some(token_file(&world, TOKEN)), ca_file: Some(server.cert.clone()), ..RemoteAuth::none() };

    let repo = EnvRepo::open_with(&world.cache, &server.url(), &auth).unwrap();
    assert_eq!(repo.url(), server.url());
    assert_eq!(repo.branch_head("main").unwrap(), Some(world.remote_head("main")));

    let commit = promote(&repo, "dev-1.1.0", BRANCH);
    assert_eq!(repo.push_branch(&commit, BRANCH).unwrap(), PushOutcome::Created { commit: commit.clone() });
    assert_eq!(world.remote_head(BRANCH), commit);
    assert_eq!(repo.push_branch(&commit, BRANCH).unwrap(), PushOutcome::Unchanged { commit: commit.clone() });

    // A branch the remote does not have is fetched as absent, not as an error.
    repo.fetch(&["gantry/dev/web/000000000000"]).unwrap();
    assert_eq!(repo.branch_head("gantry/dev/web/000000000000").unwrap(), None);

    // Someone pushes to main meanwhile; landing replays the change onto it, over https.
    world.push_from_elsewhere("README.md", "dev environment\n");
    let landed = repo.land(&commit, "main", 3).unwrap();
    assert!(matches!(landed, LandOutcome::Rebased { .. }), "{landed:?}");
    assert_eq!(world.remote_head("main"), landed.commit());
    let values = git(&world.remote, &["show", &format!("main:{VALUES_PATH}")]);
    assert_eq!(values, "image:\n  tag: dev-1.1.0\n");

    // A second open reuses the warm mirror and sees the remote as it is.
    let again = EnvRepo::open_with(&world.cache, &server.url(), &auth).unwrap();
    assert_eq!(again.mirror_path(), repo.mirror_path());
    assert_eq!(again.branch_head("main").unwrap(), Some(world.remote_head("main")));
}

#[test]
fn https_token_from_an_environment_variable_is_read_at_each_use() {
    let world = World::new();
    let server = HttpsGit::start(&world, "bot", TOKEN);
    // SAFETY: nextest runs every test in a process of its own, and this one has started no
    // other thread that reads the environment.
    unsafe { std::env::set_var("GANTRY_TEST_ENV_REPO_TOKEN", TOKEN) };
    let auth = RemoteAuth {
        username: Some("bot".to_owned()),
        token: Some(SecretSource::Env("GANTRY_TEST_ENV_REPO_TOKEN".to_owned())),
        ca_file: Some(server.cert.clone()),
        ..RemoteAuth::none()
    };
    let repo = EnvRepo::open_with(&world.cache, &server.url(), &auth).unwrap();
    let commit = promote(&repo, "dev-1.2.0", BRANCH);
    repo.push_branch(&commit, BRANCH).unwrap();
    assert_eq!(world.remote_head(BRANCH), commit);

    // The token is revoked and the variable now holds an old one: the next fetch says so.
    // SAFETY: as above.
    unsafe { std::env::set_var("GANTRY_TEST_ENV_REPO_TOKEN", "ghs_revoked") };
    let error = repo.fetch(&[]).unwrap_err();
    assert!(matches!(error, GitError::Authentication { .. }), "{error:?}");
    assert!(error.to_string().contains("environment variable GANTRY_TEST_ENV_REPO_TOKEN"), "{error}");
}

#[test]
fn a_wrong_token_is_refused_once_clearly_and_without_showing_it() {
    let world = World::new();
    let server = HttpsGit::start(&world, "x-access-token", TOKEN);
    let wrong = "ghs_wrongWrongWrong";
    let auth =
        RemoteAuth { token: Some(token_file(&world, wrong)), ca_file: Some(server.cert.clone()), ..RemoteAuth::none() };
    let started = Instant::now();
    let error = EnvRepo::open_with(&world.cache, &server.url(), &auth).unwrap_err();
    assert!(matches!(error, GitError::Authentication { .. }), "{error:?}");
    assert!(!error.is_transient(), "a refused token is not worth retrying");
    let message = error.to_string();
    assert!(message.contains(&server.url()), "names the repo: {message}");
    assert!(message.contains("token from file"), "names where the token came from: {message}");
    assert!(!message.contains(wrong) && !message.contains(TOKEN), "{message}");
    // One anonymous request, one with the token; no prompting, no retry loop.
    assert!(server.requests() <= 3, "{} requests for one refused token", server.requests());
    assert!(started.elapsed() < Duration::from_secs(20));
    let leftovers: Vec<_> = std::fs::read_dir(&world.cache).map(|entries| entries.collect()).unwrap_or_default();
    assert!(leftovers.is_empty(), "no half-made mirror is left behind: {leftovers:?}");
}

#[test]
fn a_missing_token_is_named_before_anything_is_sent() {
    let world = World::new();
    let server = HttpsGit::start(&world, "x-access-token", TOKEN);
    let auth = RemoteAuth {
        token: Some(SecretSource::Env("GANTRY_TEST_TOKEN_NOBODY_SET".to_owned())),
        ca_file: Some(server.cert.clone()),
        ..RemoteAuth::none()
    };
    let error = EnvRepo::open_with(&world.cache, &server.url(), &auth).unwrap_err();
    assert!(matches!(error, GitError::Authentication { .. }), "{error:?}");
    assert!(error.to_string().contains("environment variable GANTRY_TEST_TOKEN_NOBODY_SET is not set"), "{error}");
    assert_eq!(server.requests(), 0);

    // Without any token, the server's demand for credentials is a clear refusal too.
    let anonymous = RemoteAuth { ca_file: Some(server.cert.clone()), ..RemoteAuth::none() };
    let error = EnvRepo::open_with(&world.cache, &server.url(), &anonymous).unwrap_err();
    assert!(
        matches!(&error, GitError::Authentication { reason, .. } if reason.contains("none are configured")),
        "{error:?}"
    );
}

#[test]
fn an_untrusted_certificate_is_a_permanent_error() {
    let world = World::new();
    let server = HttpsGit::start(&world, "x-access-token", TOKEN);
    let auth = RemoteAuth { token: Some(token_file(&world, TOKEN)), ..RemoteAuth::none() };
    let error = EnvRepo::open_with(&world.cache, &server.url(), &auth).unwrap_err();
    assert!(matches!(error, GitError::Command { .. }), "{error:?}");
    assert!(!error.is_transient(), "{error:?}");
    let message = error.to_string().to_ascii_lowercase();
    assert!(message.contains("certificate"), "{message}");
}

#[test]
fn an_unreachable_https_remote_is_transient() {
    let world = World::new();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let error = EnvRepo::open_with(&world.cache, &format!("https://127.0.0.1:{port}/dev.git"), &RemoteAuth::none())
        .unwrap_err();
    assert!(matches!(error, GitError::Command { .. }), "{error:?}");
    assert!(error.is_transient(), "{error:?}");
}

// ---------------------------------------------------------------------------------------------
// ssh

/// A real `sshd` on a free loopback port, accepting one key for the current user, stopped on
/// drop.
struct Sshd {
    child: Child,
    port: u16,
    user: String,
    host_key_line: String,
    log: PathBuf,
}

impl Sshd {
    fn start(world: &World, authorized_key: &Path) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(sshd.exists(), "sshd is missing: scripts/test-deps.sh installs Debian's openssh-server");
        let user = run(Command::new("id").arg("-un")).trim().to_owned();
        if run(Command::new("id").arg("-u")).trim() == "0" {
            // Running as root, sshd insists on its privilege separation directory, which the
            // Debian service would create at boot.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let host_key = world.path("ssh_host_ed25519_key");
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&host_key));
        let host_public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = world.path("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nAllowUsers {user}\n",
                host_key.display(),
                authorized_key.display(),
                world.path("sshd.pid").display(),
            ),
        )
        .unwrap();
        let log = world.path("sshd.log");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut fields = host_public.split_whitespace();
        let host_key_line = format!("[127.0.0.1]:{port} {} {}\n", fields.next().unwrap(), fields.next().unwrap());
        Sshd { child, port, user, host_key_line, log }
    }

    fn url(&self, world: &World) -> String {
        format!("ssh://{}@127.0.0.1:{}{}", self.user, self.port, world.remote.display())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new ed25519 key pair under the world's directory; returns the private key's path.
fn key_pair(world: &World, name: &str) -> PathBuf {
    let key = world.path(name);
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"]).arg(&key));
    key
}

#[test]
fn ssh_with_a_key_and_known_hosts_fetches_and_pushes() {
    let world = World::new();
    let key = key_pair(&world, "deploy_key");
    let sshd = Sshd::start(&world, &key.with_extension("pub"));
    let known_hosts = world.path("known_hosts");
    std::fs::write(&known_hosts, &sshd.host_key_line).unwrap();
    let auth = RemoteAuth { ssh_key: Some(key), known_hosts: Some(known_hosts), ..RemoteAuth::none() };

    let repo = EnvRepo::open_with(&world.cache, &sshd.url(&world), &auth).unwrap_or_else(|error| {
        panic!("{error}\nsshd log:\n{}", std::fs::read_to_string(&sshd.log).unwrap_or_default())
    });
    assert_eq!(repo.branch_head("main").unwrap(), Some(world.remote_head("main")));
    let commit = promote(&repo, "dev-2.0.0", BRANCH);
    assert_eq!(repo.push_branch(&commit, BRANCH).unwrap(), PushOutcome::Created { commit: commit.clone() });
    assert_eq!(world.remote_head(BRANCH), commit);
    assert_eq!(repo.push_branch(&commit, BRANCH).unwrap(), PushOutcome::Unchanged { commit: commit.clone() });
    let landed = repo.land(&commit, "main", 3).unwrap();
    assert_eq!(landed, LandOutcome::FastForward { commit: commit.clone(), attempts: 1 });
    assert_eq!(world.remote_head("main"), commit);
}

#[test]
fn a_key_the_server_does_not_know_is_refused_with_its_name() {
    let world = World::new();
    let allowed = key_pair(&world, "allowed_key");
    let other = key_pair(&world, "other_key");
    let sshd = Sshd::start(&world, &allowed.with_extension("pub"));
    let known_hosts = world.path("known_hosts");
    std::fs::write(&known_hosts, &sshd.host_key_line).unwrap();
    let auth = RemoteAuth { ssh_key: Some(other.clone()), known_hosts: Some(known_hosts), ..RemoteAuth::none() };
    let started = Instant::now();
    let error = EnvRepo::open_with(&world.cache, &sshd.url(&world), &auth).unwrap_err();
    assert!(matches!(error, GitError::Authentication { .. }), "{error:?}");
    assert!(!error.is_transient());
    let message = error.to_string();
    assert!(message.contains(&sshd.url(&world)), "{message}");
    assert!(message.contains(other.to_str().unwrap()), "names the key: {message}");
    assert!(started.elapsed() < Duration::from_secs(20), "no prompting");
}

#[test]
fn host_keys_are_checked_as_configured() {
    let world = World::new();
    let key = key_pair(&world, "deploy_key");
    let sshd = Sshd::start(&world, &key.with_extension("pub"));
    let known_hosts = world.path("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();

    // Strict: a host that is not in known_hosts is refused.
    let strict =
        RemoteAuth { ssh_key: Some(key.clone()), known_hosts: Some(known_hosts.clone()), ..RemoteAuth::none() };
    let error = EnvRepo::open_with(&world.cache, &sshd.url(&world), &strict).unwrap_err();
    assert!(matches!(&error, GitError::Authentication { reason, .. } if reason.contains("host key")), "{error:?}");
    assert!(error.to_string().contains(known_hosts.to_str().unwrap()), "{error}");

    // accept-new: the first connection records the key, later ones check it.
    let accept_new = RemoteAuth { host_key_checking: HostKeyChecking::AcceptNew, ..strict.clone() };
    let repo = EnvRepo::open_with(&world.cache, &sshd.url(&world), &accept_new).unwrap();
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    // ssh may hash the host name (Debian's HashKnownHosts), never the key.
    let host_key = sshd.host_key_line.split_whitespace().nth(2).unwrap();
    assert!(recorded.contains(host_key), "{recorded:?}");
    repo.fetch(&["main"]).unwrap();

    // A changed host key is refused even with accept-new.
    let mut fields = sshd.host_key_line.split_whitespace();
    let (host, kind) = (fields.next().unwrap(), fields.next().unwrap());
    let impostor = key_pair(&world, "impostor");
    let impostor_key = std::fs::read_to_string(impostor.with_extension("pub")).unwrap();
    let impostor_key = impostor_key.split_whitespace().nth(1).unwrap();
    std::fs::write(&known_hosts, format!("{host} {kind} {impostor_key}\n")).unwrap();
    let error = repo.fetch(&[]).unwrap_err();
    assert!(matches!(&error, GitError::Authentication { reason, .. } if reason.contains("host key")), "{error:?}");
}
