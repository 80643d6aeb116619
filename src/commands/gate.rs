//! `gantry gate --report FILE… [--policy FILE] [--env NAME] [--max-score N] [--format json|table]`:
//! judges scan reports against a gate policy, the way the `gate` step does in a promotion.
//!
//! Reports may be Trivy JSON, Grype JSON, SARIF 2.1.0 or CycloneDX; an OpenVEX document given
//! as a report adds its statements. `--max-score N` alone is a complete policy (deny any
//! unsuppressed finding scoring at or above N); with `--policy` it replaces the policy's
//! `max_score` in every environment. Exceptions expire against the current time.
//!
//! Exit codes: 0 allow, 1 deny, 2 error (unreadable report or policy, bad arguments).
//! JSON output is the verdict: `decision`, `reasons`, `notes`, `counts`, `findings` (one per
//! vulnerability and package entry of the reports, with id, package, score, severity and, if
//! suppressed, the cause) and `evidence`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use gantry_gates::{Decision, GateInput, Policy, Verdict, evaluate, reports};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GateFormat {
    /// The verdict as JSON.
    Json,
    /// Findings, reasons and the decision for people.
    Table,
}

/// Arguments of `gantry gate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GateArgs {
    /// Scan reports (and VEX documents) to judge.
    #[arg(long = "report", value_name = "FILE", required = true, num_args = 1..)]
    pub reports: Vec<PathBuf>,
    /// Gate policy file (YAML).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Environment whose thresholds apply.
    #[arg(long = "env", value_name = "NAME")]
    pub environment: Option<String>,
    /// Deny any unsuppressed finding scoring at or above N.
    #[arg(long, value_name = "N")]
    pub max_score: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: GateFormat,
}

/// Judges the reports; `Err` is an error (exit 2), otherwise the decision.
pub fn run(args: &GateArgs, out: &mut impl Write) -> anyhow::Result<Decision> {
    if let Some(score) = args.max_score
        && !(0.0..=10.0).contains(&score)
    {
        bail!("read --max-score: {score} is not a CVSS score (0.0 to 10.0)");
    }
    let mut policy = match (&args.policy, args.max_score) {
        (Some(path), _) => Policy::load(path)?,
        (None, Some(score)) => Policy::max_score(score),
        (None, None) => bail!("give a gate policy: --policy FILE, --max-score N, or both"),
    };
    if let (Some(score), Some(_)) = (args.max_score, &args.policy) {
        policy.default.max_score = Some(score);
        for thresholds in policy.environments.values_mut() {
            thresholds.max_score = Some(score);
        }
    }
    let mut documents = Vec::new();
    for path in &args.reports {
        documents.push(reports::read(path)?);
    }
    let findings: Vec<_> = documents.iter().flat_map(|d| d.findings.clone()).collect();
    let vex: Vec<_> = documents.iter().flat_map(|d| d.vex.clone()).collect();
    let summaries: Vec<_> = documents.iter().map(|d| d.summary()).collect();
    let input = GateInput {
        vex: &vex,
        reports: &summaries,
        environment: args.environment.as_deref(),
        ..GateInput::new(&findings, chrono::Utc::now())
    };
    let verdict = evaluate(&policy, &input)?;
    match args.format {
        GateFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &verdict).context("write the verdict")?;
            writeln!(out).context("write the verdict")?;
        }
        GateFormat::Table => table(&verdict, out).context("write the verdict")?,
    }
    Ok(verdict.decision)
}

/// Ends the process with exit code 1 when the gate denies (after flushing what was printed).
pub fn exit_unless_allowed(decision: Decision) {
    if decision == Decision::Deny {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        std::process::exit(1);
    }
}

fn table(verdict: &Verdict, out: &mut impl Write) -> std::io::Result<()> {
    let width = |values: &mut dyn Iterator<Item = usize>, header: &str| values.max().unwrap_or(0).max(header.len());
    let id_width = width(&mut verdict.findings.iter().map(|f| f.id.len()), "ID");
    let package_width = width(&mut verdict.findings.iter().map(|f| f.package.len()), "PACKAGE");
    let version_width =
        width(&mut verdict.findings.iter().map(|f| f.version.as_deref().unwrap_or("-").len()), "VERSION");
    writeln!(
        out,
        "{:<id_width$}  {:<package_width$}  {:<version_width$}  {:>5}  {:<8}  SUPPRESSED",
        "ID", "PACKAGE", "VERSION", "SCORE", "SEVERITY"
    )?;
    for finding in &verdict.findings {
        writeln!(
            out,
            "{:<id_width$}  {:<package_width$}  {:<version_width$}  {:>5}  {:<8}  {}",
            finding.id,
            finding.package,
            finding.version.as_deref().unwrap_or("-"),
            finding.score.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into()),
            finding.severity.as_str(),
            finding.suppressed.as_ref().map(|s| s.describe()).unwrap_or_else(|| "-".into()),
        )?;
    }
    writeln!(out)?;
    for note in &verdict.notes {
        writeln!(out, "note: {note}")?;
    }
    for reason in &verdict.reasons {
        writeln!(out, "reason: {reason}")?;
    }
    let place = verdict.environment.as_deref().map(|env| format!(" ({env})")).unwrap_or_default();
    writeln!(
        out,
        "{}{place}: {} findings, {} suppressed, {} reasons",
        verdict.decision.as_str(),
        verdict.findings.len(),
        verdict.findings.iter().filter(|f| f.suppressed.is_some()).count(),
        verdict.reasons.len()
    )
}
