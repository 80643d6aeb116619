//! A real OCI distribution registry (`docker-registry`, the CNCF distribution server) on
//! loopback, for integration tests.
//!
//! Include it from a test binary with
//! `#[path = "../../tests/support/registry.rs"] mod registry_support;` (or
//! `#[path = "support/registry.rs"]` from the root package's tests). It uses only std and
//! `tempfile`, so it compiles in any crate of the workspace.
//!
//! Each [`TestRegistry`] is its own process with filesystem storage in a temporary
//! directory; dropping it stops the process and removes the storage.
//!
//! Around it:
//! - [`FaultProxy`], a small HTTP proxy on loopback that fails chosen requests (`503` with or
//!   without `Retry-After`, `429`), declines cross-repository mounts, or demands basic
//!   credentials, and forwards everything else;
//! - [`TokenServer`], a token endpoint for registries started with
//!   [`TestRegistry::start_with_token_auth`]: it checks basic credentials and signs JWTs
//!   (ES256, `x5c` header) with `openssl`, granting exactly the scopes asked for;
//! - [`MotoServer`], `moto_server` (PyPI `moto[server]`) emulating the AWS ECR API.

// Each test binary uses a different part of this helper.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where Debian's `docker-registry` package installs the server.
const BINARY: &str = "/usr/bin/docker-registry";
/// How long a fresh registry may take to answer `GET /v2/`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often to retry with another port when one was taken between probing and binding.
const START_ATTEMPTS: usize = 5;

/// A running `docker-registry` process listening on `127.0.0.1`.
pub struct TestRegistry {
    /// `127.0.0.1:<port>`, the registry's host as image references spell it.
    pub addr: String,
    /// The filesystem storage root of the registry.
    pub storage: PathBuf,
    child: Child,
    access_log: PathBuf,
    server_log: PathBuf,
    // Dropped after the process is killed (see `Drop`), taking storage and logs with it.
    _dir: tempfile::TempDir,
    // Files the configuration names (an htpasswd file), when there are any.
    _config_files: Option<tempfile::TempDir>,
}

impl TestRegistry {
    /// Starts a registry on a free loopback port and waits until it answers `GET /v2/`.
    ///
    /// Panics when the server is not installed or does not come up, with what it logged.
    pub fn start() -> TestRegistry {
        Self::start_with_config("")
    }

    /// Starts a registry that wants bearer tokens from `tokens` (the distribution token flow).
    pub fn start_with_token_auth(tokens: &TokenServer) -> TestRegistry {
        Self::start_with_config(&format!(
            "auth:\n  token:\n    realm: {}/token\n    service: {TOKEN_SERVICE}\n    \
             issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            tokens.url(),
            tokens.certificate.display()
        ))
    }

    /// Starts a registry that wants HTTP basic credentials, checked against `htpasswd` (lines
    /// of `user:bcrypt-hash`, as `htpasswd -nbB user password` prints them).
    pub fn start_with_htpasswd(htpasswd: &str) -> TestRegistry {
        let dir = tempfile::tempdir().expect("temporary directory for the htpasswd file");
        let path = dir.path().join("htpasswd");
        fs::write(&path, htpasswd).expect("write the htpasswd file");
        let mut registry = Self::start_with_config(&format!(
            "auth:\n  htpasswd:\n    realm: gantry-test\n    path: {}\n",
            path.display()
        ));
        // The server reads the file again whenever it changes, so it lives as long as the server.
        registry._config_files = Some(dir);
        registry
    }

    fn start_with_config(extra_config: &str) -> TestRegistry {
        assert!(
            Path::new(BINARY).is_file(),
            "{BINARY} is missing: integration tests need a real OCI registry. Run the project's \
             test command, which installs the Debian package `docker-registry` \
             (or install it yourself: `apt-get install docker-registry`)"
        );
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(extra_config) {
                Ok(registry) => return registry,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("docker-registry did not start after {START_ATTEMPTS} attempts:\n{}", failures.join("\n---\n"));
    }

    fn try_start(extra_config: &str) -> Result<TestRegistry, String> {
        let dir = tempfile::tempdir().map_err(|error| format!("temporary directory: {error}"))?;
        let storage = dir.path().join("storage");
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let config_path = dir.path().join("config.yml");
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n  secret: gantry-test-registry\n{extra_config}",
            storage = storage.display(),
        );
        fs::write(&config_path, config).map_err(|error| format!("write config: {error}"))?;

        let access_log = dir.path().join("access.log");
        let server_log = dir.path().join("server.log");
        let stdout = fs::File::create(&access_log).map_err(|error| error.to_string())?;
        let stderr = fs::File::create(&server_log).map_err(|error| error.to_string())?;
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|error| format!("spawn {BINARY}: {error}"))?;
        let mut registry =
            TestRegistry { addr, storage, child, access_log, server_log, _dir: dir, _config_files: None };

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = registry.child.try_wait() {
                return Err(format!("docker-registry exited with {status}:\n{}", registry.server_log()));
            }
            // 401 is what a registry that wants tokens answers when it is up.
            if matches!(http_status(&registry.addr, "/v2/"), Some(200 | 401)) {
                return Ok(registry);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "docker-registry did not answer GET /v2/ within {STARTUP_TIMEOUT:?}:\n{}",
                    registry.server_log()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the server logged on stderr (startup, errors).
    pub fn server_log(&self) -> String {
        fs::read_to_string(&self.server_log).unwrap_or_default()
    }

    /// Every request the registry has answered, as `METHOD /path?query`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        // The access log is written in the combined log format:
        // 127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "" "agent"
        fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let request = line.split('"').nth(1)?;
                let (method_and_path, _protocol) = request.rsplit_once(' ')?;
                Some(method_and_path.to_owned())
            })
            .collect()
    }

    /// Waits until a request equal to `request` (e.g. `PUT /v2/app/manifests/dev`) shows up in
    /// the access log, which the server writes right after answering. Returns whether it did.
    pub fn wait_for_request(&self, request: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.requests().iter().any(|seen| seen == request) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The file holding the bytes of blob `digest` (`sha256:…`) in storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// The digests (`sha256:…`) of every blob in storage, sorted. Manifests are blobs too.
    pub fn blobs(&self) -> Vec<String> {
        let root = self.storage.join("docker/registry/v2/blobs/sha256");
        let mut digests = Vec::new();
        for prefix in read_dir_names(&root) {
            for hex in read_dir_names(&root.join(&prefix)) {
                if root.join(&prefix).join(&hex).join("data").is_file() {
                    digests.push(format!("sha256:{hex}"));
                }
            }
        }
        digests.sort();
        digests
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_dir_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(Result::ok).map(|entry| entry.file_name().to_string_lossy().into_owned()).collect()
        })
        .unwrap_or_default()
}

/// A port that was free a moment ago; the caller retries if someone takes it meanwhile.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|error| format!("probe a free port: {error}"))?;
    listener.local_addr().map(|addr| addr.port()).map_err(|error| format!("probe a free port: {error}"))
}

/// The status code of a plain `GET`, or None when nothing answers.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// The `service` a token-auth registry names in its challenges and expects as audience.
pub const TOKEN_SERVICE: &str = "gantry-test-registry";
/// The issuer a token-auth registry trusts.
pub const TOKEN_ISSUER: &str = "gantry-test-issuer";

/// What a [`FaultProxy`] rule does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an OCI error body instead of forwarding.
    Status {
        /// The HTTP status, e.g. 503 or 429.
        status: u16,
        /// Seconds to send in a `Retry-After` header.
        retry_after: Option<u64>,
    },
    /// Forward a cross-repository mount without its `mount` and `from` parameters, so the
    /// registry opens an ordinary upload session: what a registry declining a mount does.
    DeclineMount,
    /// Answer `307 Temporary Redirect` to the same path on the registry itself, the way a
    /// registry sends blob downloads to its object storage.
    Redirect,
}

struct Rule {
    method: String,
    path_contains: String,
    remaining: usize,
    fault: Fault,
}

#[derive(Default)]
struct ProxyState {
    rules: Vec<Rule>,
    /// The `Authorization` value required of every request, when basic auth is on.
    basic: Option<String>,
    requests: Vec<String>,
    faults: usize,
}

enum Decision {
    Forward,
    Fault(Fault),
    Unauthorized,
}

/// An HTTP proxy on loopback in front of a registry that fails, alters or guards chosen
/// requests and forwards the rest. Each connection carries one request (the proxy asks the
/// registry to close after answering), so every request is seen.
pub struct FaultProxy {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` (`127.0.0.1:<port>`).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("the proxy's address").to_string();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let (accept_state, accept_stop) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if accept_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let state = accept_state.clone();
                let upstream = upstream.clone();
                thread::spawn(move || {
                    let _ = proxy_one(client, &upstream, &state);
                });
            }
        });
        FaultProxy { addr, state, stop }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ProxyState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers the next `times` requests with method `method` and `path_contains` in their
    /// path with `status` (and `Retry-After: retry_after`), without forwarding them.
    pub fn fail(&self, method: &str, path_contains: &str, times: usize, status: u16, retry_after: Option<u64>) {
        self.state().rules.push(Rule {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            remaining: times,
            fault: Fault::Status { status, retry_after },
        });
    }

    /// Makes every cross-repository mount look declined from now on.
    pub fn decline_mounts(&self) {
        self.state().rules.push(Rule {
            method: "POST".to_owned(),
            path_contains: "mount=".to_owned(),
            remaining: usize::MAX,
            fault: Fault::DeclineMount,
        });
    }

    /// Redirects every blob download to the registry itself from now on.
    pub fn redirect_blobs(&self) {
        self.state().rules.push(Rule {
            method: "GET".to_owned(),
            path_contains: "/blobs/sha256:".to_owned(),
            remaining: usize::MAX,
            fault: Fault::Redirect,
        });
    }

    /// Requires these basic credentials on every request (`401` with a `Basic` challenge
    /// otherwise); they are removed before forwarding.
    pub fn require_basic(&self, username: &str, password: &str) {
        let encoded = base64(format!("{username}:{password}").as_bytes(), STANDARD);
        self.state().basic = Some(format!("Basic {encoded}"));
    }

    /// Drops every rule: from now on everything is forwarded.
    pub fn heal(&self) {
        self.state().rules.clear();
    }

    /// How many requests got a [`Fault`].
    pub fn faults_served(&self) -> usize {
        self.state().faults
    }

    /// Every request seen, as `METHOD /path?query`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// The request line and headers of one HTTP request, and a reader positioned at its body.
struct RequestHead {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    fn read(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<RequestHead>> {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(None);
        };
        let (method, target, version) = (method.to_owned(), target.to_owned(), version.to_owned());
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                break;
            }
            let header = header.trim_end_matches(['\r', '\n']);
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        Ok(Some(RequestHead { method, target, version, headers }))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(candidate, _)| candidate.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// Reads and drops the body, so that an answer sent before it is not taken for a reset.
    fn drain_body(&self, reader: &mut BufReader<TcpStream>) -> std::io::Result<()> {
        let length: u64 = self.header("content-length").and_then(|value| value.parse().ok()).unwrap_or(0);
        std::io::copy(&mut reader.by_ref().take(length), &mut std::io::sink())?;
        Ok(())
    }
}

fn proxy_one(client: TcpStream, upstream: &str, state: &Mutex<ProxyState>) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(head) = RequestHead::read(&mut reader)? else {
        return Ok(());
    };
    let (decision, strip_auth) = {
        let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.requests.push(format!("{} {}", head.method, head.target));
        let strip_auth = state.basic.is_some();
        let authorized = state.basic.as_deref().is_none_or(|expected| head.header("authorization") == Some(expected));
        let decision = if authorized {
            let matched = state
                .rules
                .iter_mut()
                .find(|rule| {
                    rule.remaining > 0 && rule.method == head.method && head.target.contains(&rule.path_contains)
                })
                .map(|rule| {
                    rule.remaining -= 1;
                    rule.fault.clone()
                });
            match matched {
                Some(fault) => {
                    if matches!(fault, Fault::Status { .. }) {
                        state.faults += 1;
                    }
                    Decision::Fault(fault)
                }
                None => Decision::Forward,
            }
        } else {
            Decision::Unauthorized
        };
        (decision, strip_auth)
    };
    let mut client = client;
    match decision {
        Decision::Unauthorized => {
            head.drain_body(&mut reader)?;
            respond(
                &mut client,
                401,
                &[("WWW-Authenticate", "Basic realm=\"gantry-test\"".to_owned())],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
        }
        Decision::Fault(Fault::Status { status, retry_after }) => {
            head.drain_body(&mut reader)?;
            let extra: Vec<(&str, String)> =
                retry_after.map(|seconds| ("Retry-After", seconds.to_string())).into_iter().collect();
            let code = if status == 429 { "TOOMANYREQUESTS" } else { "UNAVAILABLE" };
            respond(
                &mut client,
                status,
                &extra,
                &format!(r#"{{"errors":[{{"code":"{code}","message":"injected by the fault proxy"}}]}}"#),
            )
        }
        Decision::Fault(Fault::Redirect) => {
            head.drain_body(&mut reader)?;
            respond(&mut client, 307, &[("Location", format!("http://{upstream}{}", head.target))], "")
        }
        Decision::Fault(Fault::DeclineMount) => {
            let target = without_mount(&head.target);
            forward(client, reader, upstream, &head, &target, strip_auth)
        }
        Decision::Forward => {
            let target = head.target.clone();
            forward(client, reader, upstream, &head, &target, strip_auth)
        }
    }
}

/// The request target without the `mount` and `from` query parameters.
fn without_mount(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let kept: Vec<&str> =
        query.split('&').filter(|pair| !pair.starts_with("mount=") && !pair.starts_with("from=")).collect();
    if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
}

fn forward(
    client: TcpStream,
    mut reader: BufReader<TcpStream>,
    upstream: &str,
    head: &RequestHead,
    target: &str,
    strip_auth: bool,
) -> std::io::Result<()> {
    let mut upstream_stream = TcpStream::connect(upstream)?;
    let mut request = format!("{} {target} {}\r\n", head.method, head.version);
    for (name, value) in &head.headers {
        if name.eq_ignore_ascii_case("connection") || (strip_auth && name.eq_ignore_ascii_case("authorization")) {
            continue;
        }
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    upstream_stream.write_all(request.as_bytes())?;

    // The body (already partly buffered in `reader`) streams up while the answer streams back.
    let mut upstream_writer = upstream_stream.try_clone()?;
    let body = thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut upstream_writer);
    });
    let mut client_writer = client;
    let _ = std::io::copy(&mut upstream_stream, &mut client_writer);
    // The registry closed after answering; closing the client ends the body copy too.
    let _ = client_writer.shutdown(Shutdown::Both);
    let _ = upstream_stream.shutdown(Shutdown::Both);
    let _ = body.join();
    Ok(())
}

fn respond(client: &mut TcpStream, status: u16, extra_headers: &[(&str, String)], body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Injected",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    client.write_all(response.as_bytes())?;
    client.flush()?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

#[derive(Default)]
struct TokenState {
    scopes: Vec<Vec<String>>,
    refused: usize,
}

/// A token endpoint for the distribution token flow: checks basic credentials and issues
/// ES256 JWTs signed by a throwaway key whose certificate the registry trusts, granting the
/// scopes each request asks for.
pub struct TokenServer {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// The PEM certificate registries must trust (`rootcertbundle`).
    pub certificate: PathBuf,
    state: Arc<Mutex<TokenState>>,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    /// Starts a token endpoint accepting `username` / `password`.
    pub fn start(username: &str, password: &str) -> TokenServer {
        let dir = tempfile::tempdir().expect("temporary directory for the token server");
        let key = dir.path().join("key.pem");
        let certificate = dir.path().join("cert.pem");
        let generated = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:prime256v1")
            .args(["-nodes", "-days", "2", "-subj", "/CN=gantry-test-token"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&certificate)
            .output()
            .expect("run openssl (Debian package `openssl`)");
        assert!(
            generated.status.success(),
            "openssl could not make a key: {}",
            String::from_utf8_lossy(&generated.stderr)
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&certificate)
            .output()
            .expect("run openssl");
        assert!(der.status.success(), "openssl could not convert the certificate");
        let x5c = base64(&der.stdout, STANDARD);

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token server");
        let addr = listener.local_addr().expect("its address").to_string();
        let state = Arc::new(Mutex::new(TokenState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let expected = format!("Basic {}", base64(format!("{username}:{password}").as_bytes(), STANDARD));
        let (accept_state, accept_stop) = (state.clone(), stop.clone());
        let work_dir = dir.path().to_path_buf();
        let subject = username.to_owned();
        thread::spawn(move || {
            let issued = AtomicUsize::new(0);
            for client in listener.incoming() {
                if accept_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let serial = issued.fetch_add(1, Ordering::SeqCst);
                let _ = serve_token(
                    client,
                    &accept_state,
                    &expected,
                    &TokenSigner { key: &key, x5c: &x5c, subject: &subject, work_dir: &work_dir, serial },
                );
            }
        });
        TokenServer { addr, certificate, state, stop, _dir: dir }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The scopes of every token issued, oldest first.
    pub fn scopes(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).scopes.clone()
    }

    /// How many token requests were refused for bad or missing credentials.
    pub fn refused(&self) -> usize {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).refused
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

struct TokenSigner<'a> {
    key: &'a Path,
    x5c: &'a str,
    subject: &'a str,
    work_dir: &'a Path,
    serial: usize,
}

impl TokenSigner<'_> {
    /// A JWT granting `scopes` (`repository:<name>:<actions>`), signed with ES256.
    fn token(&self, scopes: &[String]) -> std::io::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
        let access: Vec<String> = scopes
            .iter()
            .filter_map(|scope| {
                let mut parts = scope.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                let actions: Vec<String> = actions
                    .split(',')
                    .filter(|action| !action.is_empty())
                    .map(|action| format!("\"{action}\""))
                    .collect();
                Some(format!(r#"{{"type":"{kind}","name":"{name}","actions":[{}]}}"#, actions.join(",")))
            })
            .collect();
        let header = format!(r#"{{"alg":"ES256","typ":"JWT","x5c":["{}"]}}"#, self.x5c);
        let claims = format!(
            r#"{{"iss":"{TOKEN_ISSUER}","sub":"{}","aud":"{TOKEN_SERVICE}","exp":{},"nbf":{},"iat":{now},"jti":"gantry-test-{}","access":[{}]}}"#,
            self.subject,
            now + 300,
            now.saturating_sub(10),
            self.serial,
            access.join(",")
        );
        let signing_input = format!("{}.{}", base64(header.as_bytes(), URL_SAFE), base64(claims.as_bytes(), URL_SAFE));
        let input_file = self.work_dir.join(format!("input-{}", self.serial));
        fs::write(&input_file, &signing_input)?;
        let signed =
            Command::new("openssl").args(["dgst", "-sha256", "-sign"]).arg(self.key).arg(&input_file).output()?;
        if !signed.status.success() {
            return Err(std::io::Error::other(String::from_utf8_lossy(&signed.stderr).into_owned()));
        }
        let raw = der_signature_to_raw(&signed.stdout)
            .ok_or_else(|| std::io::Error::other("openssl returned an unreadable signature"))?;
        Ok(format!("{signing_input}.{}", base64(&raw, URL_SAFE)))
    }
}

fn serve_token(
    client: TcpStream,
    state: &Mutex<TokenState>,
    expected_authorization: &str,
    signer: &TokenSigner<'_>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(head) = RequestHead::read(&mut reader)? else {
        return Ok(());
    };
    let mut client = client;
    if head.header("authorization") != Some(expected_authorization) {
        state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).refused += 1;
        return respond(&mut client, 401, &[], r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#);
    }
    let query = head.target.split_once('?').map_or("", |(_, query)| query);
    let scopes: Vec<String> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| *name == "scope")
        .map(|(_, value)| percent_decode(value))
        .collect();
    let token = signer.token(&scopes)?;
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).scopes.push(scopes);
    respond(&mut client, 200, &[], &format!(r#"{{"token":"{token}","access_token":"{token}","expires_in":300}}"#))
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        decoded.push(byte);
                        i += 3;
                    }
                    Err(_) => {
                        decoded.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                decoded.push(b' ');
                i += 1;
            }
            byte => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// An ECDSA signature in DER (`SEQUENCE { INTEGER r, INTEGER s }`) as JWS wants it: r and s
/// as 32 big-endian bytes each.
fn der_signature_to_raw(der: &[u8]) -> Option<Vec<u8>> {
    fn integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&length, rest) = rest.split_first()?;
        if tag != 0x02 || rest.len() < length as usize {
            return None;
        }
        Some(rest.split_at(length as usize))
    }
    let (&tag, rest) = der.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (_, rest) = rest.split_first()?;
    let (r, rest) = integer(rest)?;
    let (s, _) = integer(rest)?;
    let mut raw = Vec::with_capacity(64);
    for part in [r, s] {
        let trimmed: Vec<u8> = part.iter().copied().skip_while(|byte| *byte == 0).collect();
        if trimmed.len() > 32 {
            return None;
        }
        raw.extend(std::iter::repeat_n(0u8, 32 - trimmed.len()));
        raw.extend(trimmed);
    }
    Some(raw)
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with `alphabet`; padded for the standard alphabet, unpadded for the URL-safe one
/// (as JWTs are).
fn base64(input: &[u8], alphabet: &[u8; 64]) -> String {
    let pad = alphabet == STANDARD;
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let bytes = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        let symbols = chunk.len() + 1;
        for position in 0..4 {
            if position < symbols {
                let index = (n >> (18 - 6 * position)) & 0x3f;
                out.push(alphabet[index as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// `moto_server` (PyPI `moto[server]`) on a free loopback port: the AWS APIs, ECR included,
/// emulated in memory. Dropping it stops the process.
pub struct MotoServer {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl MotoServer {
    /// Starts `moto_server` and waits until it answers HTTP.
    ///
    /// Panics when it is not installed (`pip install 'moto[server]'`) or does not come up.
    pub fn start() -> MotoServer {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start() {
                Ok(server) => return server,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "moto_server did not start after {START_ATTEMPTS} attempts (install it with \
             `pip install 'moto[server]'`, or run the project's test command):\n{}",
            failures.join("\n---\n")
        );
    }

    fn try_start() -> Result<MotoServer, String> {
        let dir = tempfile::tempdir().map_err(|error| format!("temporary directory: {error}"))?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let log = dir.path().join("moto.log");
        let output = fs::File::create(&log).map_err(|error| error.to_string())?;
        let errors = output.try_clone().map_err(|error| error.to_string())?;
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .map_err(|error| format!("spawn moto_server: {error}"))?;
        let mut server = MotoServer { addr, child, log, _dir: dir };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("moto_server exited with {status}:\n{}", server.log()));
            }
            if http_status(&server.addr, "/moto-api/").is_some() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!("moto_server did not answer within {STARTUP_TIMEOUT:?}:\n{}", server.log()));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
