//! `gantry drift`: where the environments' config repos differ from what gantry promoted,
//! and from each other (see `gantry_engine::drift`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gantry_engine::drift::{self, DriftReport, Promotion};
use gantry_engine::{SqliteStore, Store};
use gantry_workflows::Config;

/// Output formats of `gantry drift`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriftFormat {
    /// Summary lines and unified diffs, for people.
    Text,
    /// The whole report as one JSON document, for tools and dashboards.
    Json,
}

/// Arguments of `gantry drift`.
#[derive(Debug, Clone, clap::Args)]
pub struct DriftArgs {
    /// Config directory.
    #[arg(long, env = "GANTRY_CONFIG", default_value = "environments")]
    pub config: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: DriftFormat,
    /// Exit with an error when any environment drifted from its last promotion.
    #[arg(long)]
    pub fail_on_drift: bool,
}

/// Runs the check and prints the report to `out`. `database` is the SQLite file holding
/// gantry's runs; without one, only environment-vs-environment differences are reported.
pub async fn run(
    args: &DriftArgs,
    config: Config,
    data_dir: &Path,
    database: &Path,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let promotions = if database.exists() {
        let store =
            SqliteStore::open(database).await.with_context(|| format!("open the store at {}", database.display()))?;
        let runs = store.last_succeeded_runs().await.context("list the last promotions")?;
        let mut promotions = Vec::with_capacity(runs.len());
        for run in runs {
            let change_requests = store
                .change_requests(&run.id)
                .await
                .with_context(|| format!("list the change requests of run {}", run.id))?;
            promotions.extend(Promotion::from_run(&run, &change_requests));
        }
        promotions
    } else {
        Vec::new()
    };
    let (data_dir, cache_dir) = (data_dir.to_path_buf(), data_dir.join("mirrors"));
    let report: DriftReport =
        tokio::task::spawn_blocking(move || drift::check(&config, &promotions, &data_dir, &cache_dir))
            .await
            .context("check drift")?;
    match args.format {
        DriftFormat::Text => {
            if !database.exists() {
                writeln!(out, "note: no database at {}; only comparing environments", database.display())
                    .context("write to stdout")?;
            }
            out.write_all(report.to_text().as_bytes()).context("write to stdout")?;
        }
        DriftFormat::Json => {
            let json = serde_json::to_string_pretty(&report).context("render the report")?;
            writeln!(out, "{json}").context("write to stdout")?;
        }
    }
    out.flush().context("write to stdout")?;
    if args.fail_on_drift && report.drifted() > 0 {
        anyhow::bail!("{} environment(s) drifted from what gantry promoted", report.drifted());
    }
    Ok(())
}
