//! Test support: runs the real `gantry` binary as a child process, the way a user does.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A `gantry serve` process on a free loopback port.
pub struct Gantry {
    child: Child,
    /// Base URL, `http://127.0.0.1:<port>`.
    pub url: String,
    /// Where the server's output goes.
    pub log: PathBuf,
}

/// Path of the `gantry` binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_gantry")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

impl Gantry {
    /// Starts `gantry <command> --listen …` with the given data and config directories and
    /// extra environment, and waits until `/healthz` answers (or the process dies).
    pub fn start(command: &str, data_dir: &Path, config_dir: &Path, env: &[(&str, &str)]) -> Gantry {
        let port = free_port();
        let log = data_dir.with_extension(format!("{port}.log"));
        let output = std::fs::File::create(&log).expect("create log");
        let mut cmd = Command::new(binary());
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg(command)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--config")
            .arg(config_dir)
            .env("GANTRY_LOG", "info")
            .env_remove("GANTRY_FAILPOINTS")
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone log"))
            .stderr(output);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let child = cmd.spawn().expect("spawn gantry");
        let mut gantry = Gantry { child, url: format!("http://127.0.0.1:{port}"), log };
        gantry.wait_healthy();
        gantry
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gantry exited with {status} before answering:\n{}", self.output());
            }
            if std::net::TcpStream::connect(self.url.trim_start_matches("http://")).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gantry did not start listening within 30s:\n{}", self.output());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit by itself (e.g. at an armed failpoint).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!("gantry did not exit within {timeout:?}:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gantry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `gantry` with arguments to completion; returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary()).args(args).env("GANTRY_LOG", "warn").output().expect("run gantry");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `git` in `dir`, returning stdout; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git").arg("-C").arg(dir).args(args).output().expect("run git");
    assert!(output.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Lines a unified diff changes (`+`/`-` lines without the file headers).
pub fn changed_lines(diff: &str) -> Vec<&str> {
    diff.lines()
        .filter(|l| (l.starts_with('+') && !l.starts_with("+++")) || (l.starts_with('-') && !l.starts_with("---")))
        .collect()
}
