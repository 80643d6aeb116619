//! `scan`: gets a vulnerability report for the pinned artifact, keeps it as evidence and
//! summarizes its findings for the `gate` step.
//!
//! Settings (`with:`), exactly one of `command` and `report`:
//!
//! | setting | meaning |
//! |---|---|
//! | `command` | scanner command line whose standard output is the report, e.g. `trivy image --format json {image}` or `grype {image} -o json`; split on whitespace and run without a shell; `{image}` (the pinned image, `<registry>/<repository>@<digest>`), `{repository}`, `{digest}` and `{tag}` (CI's tag) are replaced |
//! | `report` | a report written elsewhere (by CI): a file path, relative to the config directory or absolute, or an `http(s)://` URL (a CI artifact link) |
//! | `timeout` | longest the scanner or download may take, e.g. `90s`, `10m` (default `10m`) |
//!
//! Any format `gantry gate` reads is accepted (Trivy, Grype, SARIF, CycloneDX; OpenVEX
//! documents are taken as VEX). The report is copied to `evidence/<run>/<step>.json` under
//! the data directory, so that the verdict can always be traced to the exact bytes it judged;
//! the outputs name that copy and its SHA-256.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use gantry_gates::severity_source::{DirectScorer, assess};
use gantry_gates::{FixState, SeveritySelection, reports};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Step, StepContext, StepError, StepOutcome, blocking};

/// See the module documentation.
pub struct Scan;

/// Settings of `scan`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScanSettings {
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    report: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Parses settings as `check_config` and `run` both need them.
pub(super) fn parse<T: serde::de::DeserializeOwned>(config: &Value) -> Result<T, String> {
    let config = if config.is_null() { Value::Object(Default::default()) } else { config.clone() };
    serde_json::from_value(config).map_err(|e| e.to_string())
}

/// A path from step settings: absolute as it is, relative against the config directory.
pub(super) fn settings_path(ctx: &StepContext, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() { path.to_path_buf() } else { ctx.capabilities.config_dir().join(path) }
}

impl ScanSettings {
    fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        match (&self.command, &self.report) {
            (None, None) => problems.push((
                "command".into(),
                "name the report: `command` (a scanner to run) or `report` (a file or URL)".into(),
            )),
            (Some(_), Some(_)) => {
                problems.push(("report".into(), "give either `command` or `report`, not both".into()))
            }
            (Some(command), None) if command.split_whitespace().next().is_none() => {
                problems.push(("command".into(), "the command is empty".into()))
            }
            (None, Some(report)) if report.trim().is_empty() => {
                problems.push(("report".into(), "the report path is empty".into()))
            }
            _ => {}
        }
        if let Some(timeout) = &self.timeout
            && let Err(error) = gantry_workflows::config::parse_duration(timeout)
        {
            problems.push(("timeout".into(), error));
        }
        problems
    }

    fn timeout(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(|t| gantry_workflows::config::parse_duration(t).ok())
            .unwrap_or(DEFAULT_TIMEOUT)
    }
}

/// Where the report came from.
#[derive(Debug)]
struct Fetched {
    source: &'static str,
    origin: String,
    bytes: Vec<u8>,
}

#[async_trait]
impl Step for Scan {
    fn kind(&self) -> &'static str {
        "scan"
    }

    fn summary(&self) -> &'static str {
        "run a vulnerability scanner on the pinned image (or read its report) and keep the report as evidence"
    }

    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        match parse::<ScanSettings>(config) {
            Ok(settings) => settings.problems(),
            Err(error) => vec![(String::new(), error)],
        }
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings: ScanSettings = parse(&ctx.config)
            .map_err(|e| StepError::terminal(format!("step {} has invalid settings: {e}", ctx.step)))?;
        let timeout = settings.timeout();
        let fetched = match (&settings.command, &settings.report) {
            (Some(command), _) => run_scanner(ctx, command, timeout).await?,
            (None, Some(report)) if is_url(report) => download(report, timeout).await?,
            (None, Some(report)) => {
                let path = settings_path(ctx, report);
                let shown = path.display().to_string();
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|e| StepError::terminal(format!("read the scan report {shown}: {e}")))?;
                Fetched { source: "file", origin: shown, bytes }
            }
            (None, None) => {
                return Err(StepError::terminal(format!(
                    "step {} names no report: set `command` or `report`",
                    ctx.step
                )));
            }
        };
        let evidence =
            ctx.capabilities.data_dir().join("evidence").join(&ctx.run_id).join(format!("{}.json", ctx.step));
        let stored = evidence.display().to_string();
        let origin = fetched.origin.clone();
        let summary = blocking(move || {
            let document =
                reports::parse(&origin, &fetched.bytes).map_err(|e| StepError::terminal(super::chain(&e)))?;
            if let Some(parent) = evidence.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StepError::transient(format!("create {}: {e}", parent.display())))?;
            }
            std::fs::write(&evidence, &fetched.bytes)
                .map_err(|e| StepError::transient(format!("store the report as {}: {e}", evidence.display())))?;
            Ok(summarize(&document))
        })
        .await?;
        Ok(StepOutcome::Succeeded {
            outputs: json!({
                "scan": {
                    "source": fetched.source,
                    "origin": fetched.origin,
                    "stored": stored,
                    "format": summary.format,
                    "sha256": summary.sha256,
                    "findings": summary.findings,
                    "vex_statements": summary.vex_statements,
                    "fixable": summary.fixable,
                    "by_severity": summary.by_severity,
                }
            }),
            pin_digest: None,
        })
    }
}

struct Summary {
    format: &'static str,
    sha256: String,
    findings: usize,
    vex_statements: usize,
    fixable: usize,
    by_severity: BTreeMap<&'static str, usize>,
}

/// Counts by severity as the worst rating sees it (the gate's policy may choose otherwise).
fn summarize(document: &reports::Document) -> Summary {
    let selection = SeveritySelection::default();
    let mut by_severity = BTreeMap::new();
    for finding in &document.findings {
        let severity = assess(finding, &selection, &mut DirectScorer).severity;
        *by_severity.entry(severity.as_str()).or_insert(0) += 1;
    }
    Summary {
        format: document.format.as_str(),
        sha256: document.sha256.clone(),
        findings: document.findings.len(),
        vex_statements: document.vex.len(),
        fixable: document.findings.iter().filter(|f| f.fix_state == FixState::Fixed).count(),
        by_severity,
    }
}

fn is_url(report: &str) -> bool {
    report.starts_with("http://") || report.starts_with("https://")
}

/// The scanner's argument list with placeholders filled in.
fn render_command(ctx: &StepContext, command: &str) -> Result<Vec<String>, StepError> {
    let artifact = &ctx.plan.artifact;
    let needs_digest = command.contains("{image}") || command.contains("{digest}");
    let digest = if needs_digest { Some(ctx.require_digest()?) } else { None };
    let image = match &digest {
        Some(digest) => {
            let registry =
                ctx.capabilities.registry(&artifact.registry_url).map_err(|e| StepError::terminal(super::chain(&e)))?;
            registry.reference(&artifact.repository, digest.as_str())
        }
        None => String::new(),
    };
    let digest_text = digest.as_ref().map(|d| d.as_str().to_string()).unwrap_or_default();
    Ok(command
        .split_whitespace()
        .map(|word| {
            word.replace("{image}", &image)
                .replace("{repository}", &artifact.repository)
                .replace("{digest}", &digest_text)
                .replace("{tag}", &artifact.tag)
        })
        .collect())
}

async fn run_scanner(ctx: &StepContext, command: &str, timeout: Duration) -> Result<Fetched, StepError> {
    let argv = render_command(ctx, command)?;
    run_argv(&argv, timeout).await
}

/// Runs `argv` (no shell) and takes its standard output as the report.
async fn run_argv(argv: &[String], timeout: Duration) -> Result<Fetched, StepError> {
    let (program, args) = argv.split_first().ok_or_else(|| StepError::terminal("run scanner: the command is empty"))?;
    let shown = argv.join(" ");
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                StepError::terminal(format!("run scanner `{shown}`: {program} is not installed"))
            }
            _ => StepError::transient(format!("run scanner `{shown}`: {e}")),
        })?;
    // Dropping the child on timeout kills it (`kill_on_drop`).
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| StepError::transient(format!("run scanner `{shown}`: no report after {}s", timeout.as_secs())))?
        .map_err(|e| StepError::transient(format!("run scanner `{shown}`: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(StepError::terminal(format!(
            "run scanner `{shown}`: it exited with {}: {}",
            output.status,
            tail.join(" / ")
        )));
    }
    Ok(Fetched { source: "command", origin: shown, bytes: output.stdout })
}

async fn download(url: &str, timeout: Duration) -> Result<Fetched, StepError> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| StepError::terminal(format!("download the scan report {url}: {e}")))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| StepError::transient(format!("download the scan report {url}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let message = format!("download the scan report {url}: the server answered {status}");
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            StepError::transient(message)
        } else {
            StepError::terminal(message)
        });
    }
    let bytes =
        response.bytes().await.map_err(|e| StepError::transient(format!("download the scan report {url}: {e}")))?;
    Ok(Fetched { source: "url", origin: url.to_string(), bytes: bytes.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: Value) -> Vec<String> {
        Scan.check_config(&config).into_iter().map(|(path, message)| format!("{path}: {message}")).collect()
    }

    fn words(command: &str) -> Vec<String> {
        command.split_whitespace().map(str::to_string).collect()
    }

    #[tokio::test]
    async fn the_scanners_standard_output_is_the_report() {
        let fetched = run_argv(&words("printf {\"matches\":[]}"), Duration::from_secs(10)).await.unwrap();
        assert_eq!(fetched.bytes, br#"{"matches":[]}"#);
        assert_eq!(fetched.source, "command");
    }

    #[tokio::test]
    async fn a_failing_slow_or_missing_scanner_is_an_error() {
        let failed = run_argv(&words("ls /no/such/dir"), Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(&failed, StepError::Terminal { .. }), "{failed:?}");
        assert!(failed.to_string().contains("it exited with"), "{failed}");
        let slow = run_argv(&words("sleep 5"), Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(&slow, StepError::Transient { .. }), "{slow:?}");
        assert!(slow.to_string().contains("no report after"), "{slow}");
        let missing = run_argv(&words("no-such-scanner-here"), Duration::from_secs(1)).await.unwrap_err();
        assert!(missing.to_string().contains("is not installed"), "{missing}");
    }

    /// Serves one HTTP response on a loopback port; returns its URL.
    async fn serve_once(status: &'static str, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await;
            let response =
                format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            socket.write_all(response.as_bytes()).await.unwrap();
        });
        format!("http://{address}/artifacts/trivy.json")
    }

    #[tokio::test]
    async fn reports_download_from_ci_artifact_links() {
        let url = serve_once("200 OK", r#"{"SchemaVersion": 2, "Results": []}"#).await;
        let fetched = download(&url, Duration::from_secs(10)).await.unwrap();
        assert_eq!(fetched.source, "url");
        assert_eq!(fetched.bytes, br#"{"SchemaVersion": 2, "Results": []}"#);
        let gone = serve_once("404 Not Found", "").await;
        let error = download(&gone, Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(&error, StepError::Terminal { .. }), "{error:?}");
        let busy = serve_once("503 Service Unavailable", "").await;
        let error = download(&busy, Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(&error, StepError::Transient { .. }), "{error:?}");
    }

    #[test]
    fn settings_need_exactly_one_source() {
        assert!(check(json!({"report": "scans/trivy.json"})).is_empty());
        assert!(check(json!({"command": "trivy image --format json {image}", "timeout": "5m"})).is_empty());
        assert_eq!(
            check(json!({})),
            ["command: name the report: `command` (a scanner to run) or `report` (a file or URL)"]
        );
        assert_eq!(
            check(json!({"command": "grype {image}", "report": "x.json"})),
            ["report: give either `command` or `report`, not both"]
        );
        assert_eq!(check(json!({"report": "x", "timeout": "soon"})).len(), 1);
        let typo = check(json!({"reprot": "x.json"}));
        assert!(typo[0].contains("unknown field `reprot`"), "{typo:?}");
    }
}
