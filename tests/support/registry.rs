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

// Each test binary uses a different part of this helper.
#![allow(dead_code)]

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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
}

impl TestRegistry {
    /// Starts a registry on a free loopback port and waits until it answers `GET /v2/`.
    ///
    /// Panics when the server is not installed or does not come up, with what it logged.
    pub fn start() -> TestRegistry {
        assert!(
            Path::new(BINARY).is_file(),
            "{BINARY} is missing: integration tests need a real OCI registry. Run the project's \
             test command, which installs the Debian package `docker-registry` \
             (or install it yourself: `apt-get install docker-registry`)"
        );
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start() {
                Ok(registry) => return registry,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "docker-registry did not start after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    fn try_start() -> Result<TestRegistry, String> {
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
             http:\n  addr: {addr}\n  secret: gantry-test-registry\n",
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
        let mut registry = TestRegistry {
            addr,
            storage,
            child,
            access_log,
            server_log,
            _dir: dir,
        };

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = registry.child.try_wait() {
                return Err(format!(
                    "docker-registry exited with {status}:\n{}",
                    registry.server_log()
                ));
            }
            if http_status(&registry.addr, "/v2/") == Some(200) {
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
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A port that was free a moment ago; the caller retries if someone takes it meanwhile.
fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|error| format!("probe a free port: {error}"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|error| format!("probe a free port: {error}"))
}

/// The status code of a plain `GET`, or None when nothing answers.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}
