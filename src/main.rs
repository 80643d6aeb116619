//! The `gantry` command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gantry::{bootstrap, demo, server};
use gantry_engine::{ExecutorOptions, SqliteStore, StepRegistry, Store};
use gantry_workflows::{Config, ConfigError};

/// See the workspace manifest for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// gantry — a GitOps promotion engine: Git events in, one immutable artifact walked from dev to prod.
#[derive(Debug, Parser)]
#[command(name = "gantry", version, about)]
struct Cli {
    /// Directory for embedded state: database, mirrors, local registry and repos.
    #[arg(long, global = true, env = "GANTRY_DATA_DIR", default_value = ".gantry")]
    data_dir: PathBuf,
    /// Database URL: `sqlite://PATH`, or `postgres://USER@HOST/DATABASE` for several replicas
    /// sharing one database; overrides the SQLite file in the data directory.
    #[arg(long, global = true, env = "GANTRY_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start on embedded defaults: create env repos, a local registry with a sample image and a
    /// webhook secret if absent, then serve.
    Up(ServeArgs),
    /// Serve webhooks, the API and the status page, and run promotions.
    Serve(ServeArgs),
    /// Check a config directory and report every problem with file:line.
    Validate {
        /// Config directory.
        #[arg(long, default_value = "environments")]
        config: PathBuf,
    },
    /// Print the JSON Schema of config files.
    Schema,
    #[command(flatten)]
    Operate(gantry::commands::operate::Operation),
    /// Print promotion runs as a table.
    Status {
        /// How many runs, newest first.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Play CI and GitHub for the quickstart's sample app.
    #[command(subcommand)]
    Demo(DemoCommand),
    /// Edit YAML or JSON files without reformatting them: only the changed scalars change.
    Edit(gantry::commands::edit::EditArgs),
    /// Report where env repos differ from what gantry promoted, and from each other.
    Drift(gantry::commands::drift::DriftArgs),
    /// Sign an image with a cosign-compatible key-based signature (sha256-<hex>.sig).
    Sign(gantry::commands::sign::SignArgs),
    /// Verify an image's signatures against trusted keys or a keyless identity.
    Verify(gantry::commands::verify::VerifyArgs),
    /// Attach a signed in-toto attestation (sha256-<hex>.att) to an image.
    Attest(gantry::commands::attest::AttestArgs),
    /// Give an image another tag in its repository (manifest only, same digest).
    Retag(gantry::commands::retag::RetagArgs),
    /// Copy an image or OCI artifact to another repository or registry, keeping its digest.
    Copy(gantry::commands::copy::CopyArgs),
    /// Print what a webhook event would start (runs, step DAGs, Argo Workflows) without starting it.
    Plan(gantry::commands::plan::PlanArgs),
    /// Run one step of a plan by itself, as an Argo Workflows step container does.
    Step(gantry::commands::step::StepArgs),
    /// Score CVSS v3.0, v3.1 and v4.0 vectors (arguments, or standard input one per line).
    Cvss(gantry::commands::cvss::CvssArgs),
    /// Judge scan reports against a gate policy: exit 0 allow, 1 deny, 2 error.
    Gate(gantry::commands::gate::GateArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "GANTRY_LISTEN", default_value = "127.0.0.1:8420")]
    listen: SocketAddr,
    /// Config directory.
    #[arg(long, env = "GANTRY_CONFIG", default_value = "environments")]
    config: PathBuf,
    /// Steps run at the same time.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// How long a claimed step stays this process's without a heartbeat (renewed every third
    /// of it); with replicas sharing PostgreSQL, a dead replica's steps resume this long after
    /// it died.
    #[arg(long, env = "GANTRY_LEASE", default_value = "60s", value_parser = parse_lease)]
    lease: std::time::Duration,
    /// Base URL people reach this server at (e.g. `https://gantry.example.com`), for links to
    /// runs in change requests; default `http://<listen address>`.
    #[arg(long, env = "GANTRY_PUBLIC_URL")]
    public_url: Option<String>,
}

fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let lease = gantry_workflows::config::parse_duration(text)?;
    if lease < std::time::Duration::from_secs(1) {
        return Err(format!("lease {text:?} is shorter than 1s"));
    }
    Ok(lease)
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Push an image for a fresh commit and send the signed GitHub push webhook for it.
    Push {
        /// The gantry server.
        #[arg(long, default_value = "http://127.0.0.1:8420")]
        server: String,
        /// Branch or tag pushed (`main`, `develop`, `v1.2.3`, `refs/heads/…`).
        #[arg(long = "ref", default_value = "main")]
        reference: String,
        /// App to push (default: the first in the config).
        #[arg(long)]
        app: Option<String>,
        /// Config directory.
        #[arg(long, default_value = "environments")]
        config: PathBuf,
    },
    /// Print the push webhook payload `demo push` would send.
    Event {
        /// Branch or tag pushed.
        #[arg(long = "ref", default_value = "main")]
        reference: String,
        /// App (default: the first in the config).
        #[arg(long)]
        app: Option<String>,
        /// Config directory.
        #[arg(long, default_value = "environments")]
        config: PathBuf,
    },
}

/// Failures with their own exit codes.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{} problem(s) in the configuration", .0.len())]
    InvalidConfig(Vec<ConfigError>),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::InvalidConfig(_) => 1,
            Failure::Other(_) => 2,
        }
    }
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // A one-shot registry command is a handful of requests: one thread serves them without
    // starting worker threads and handing every wake-up across them.
    let mut builder = match cli.command {
        Command::Retag(_) | Command::Copy(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            match &failure {
                Failure::InvalidConfig(errors) => {
                    for error in errors {
                        eprintln!("{error}");
                    }
                    eprintln!("error: {failure}");
                }
                Failure::Other(error) => eprintln!("error: {error:#}"),
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

fn load_config(dir: &Path) -> Result<Config, Failure> {
    gantry_workflows::load_dir(dir, &StepRegistry::builtin()).map_err(Failure::InvalidConfig)
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn reject_database_url(cli: &Cli) -> anyhow::Result<()> {
    let Some(url) = &cli.database_url else { return Ok(()) };
    if is_postgres(url) {
        // `drift` and `step` read and write the SQLite file of a data directory.
        if let Command::Drift(_) | Command::Step(_) = cli.command {
            anyhow::bail!(
                "this command works on a SQLite store only: drop --database-url (GANTRY_DATABASE_URL) or use a sqlite: URL"
            );
        }
    } else if !url.starts_with("sqlite:") {
        // The scheme only: the rest of a URL may hold a password.
        let scheme = url.split(':').next().unwrap_or_default();
        anyhow::bail!(
            "database URL scheme {scheme:?} is not supported: use sqlite://PATH or postgres://USER@HOST/DATABASE"
        );
    }
    Ok(())
}

fn database_path(cli: &Cli) -> PathBuf {
    match cli.database_url.as_deref().and_then(|u| u.strip_prefix("sqlite://").or_else(|| u.strip_prefix("sqlite:"))) {
        Some(path) => PathBuf::from(path),
        None => cli.data_dir.join("gantry.db"),
    }
}

fn github_secrets(data_dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    // Comma-separated, so that an old and a new secret both work while rotating.
    if let Ok(value) = std::env::var("GANTRY_GITHUB_SECRET") {
        let secrets: Vec<Vec<u8>> =
            value.split(',').map(|s| s.trim().as_bytes().to_vec()).filter(|s| !s.is_empty()).collect();
        if !secrets.is_empty() {
            return Ok(secrets);
        }
    }
    Ok(vec![bootstrap::read_secret(data_dir)?])
}

async fn run(cli: Cli) -> Result<(), Failure> {
    reject_database_url(&cli)?;
    match &cli.command {
        Command::Up(args) | Command::Serve(args) => {
            let config = load_config(&args.config)?;
            if matches!(cli.command, Command::Up(_)) {
                let done = bootstrap::bootstrap(&cli.data_dir, &config).await?;
                for repo in &done.created_repos {
                    eprintln!("created env repo {}", repo.display());
                }
            }
            let options = server::ServeOptions {
                data_dir: cli.data_dir.clone(),
                config,
                config_dir: args.config.clone(),
                listen: args.listen,
                github_secrets: github_secrets(&cli.data_dir)?,
                gitlab_tokens: std::env::var("GANTRY_GITLAB_TOKEN")
                    .map(|v| v.split(',').map(|t| t.trim().as_bytes().to_vec()).filter(|t| !t.is_empty()).collect())
                    .unwrap_or_default(),
                database_url: cli.database_url.clone(),
                executor: ExecutorOptions { workers: args.workers, lease: args.lease, ..ExecutorOptions::default() },
                public_url: args.public_url.clone(),
            };
            let data_dir = cli.data_dir.clone();
            server::serve(options, move |address| {
                println!("gantry is up: status page http://{address}/");
                println!(
                    "  webhooks: POST http://{address}/hooks/github (secret in {})",
                    data_dir.join(bootstrap::SECRET_FILE).display()
                );
                println!("  try it:   gantry demo push --server http://{address}");
            })
            .await?;
            Ok(())
        }
        Command::Validate { config } => {
            let config = load_config(config)?;
            println!(
                "ok: {} registries, {} apps, {} environments, {} pipelines",
                config.registries.len(),
                config.apps.len(),
                config.environments.len(),
                config.pipelines.len()
            );
            Ok(())
        }
        Command::Drift(args) => {
            let config = load_config(&args.config)?;
            gantry::commands::drift::run(
                args,
                config,
                &cli.data_dir,
                &database_path(&cli),
                &mut std::io::stdout().lock(),
            )
            .await?;
            Ok(())
        }
        Command::Edit(args) => {
            gantry::commands::edit::run(args, &mut std::io::stdout().lock())?;
            Ok(())
        }
        Command::Sign(args) => {
            gantry::commands::sign::run(args, &mut std::io::stdout()).await?;
            Ok(())
        }
        Command::Verify(args) => {
            gantry::commands::verify::run(args, &mut std::io::stdout()).await?;
            Ok(())
        }
        Command::Attest(args) => {
            gantry::commands::attest::run(args, &mut std::io::stdout()).await?;
            Ok(())
        }
        Command::Retag(args) => {
            gantry::commands::retag::run(args, &mut std::io::stdout()).await?;
            Ok(())
        }
        Command::Copy(args) => {
            gantry::commands::copy::run(args, &mut std::io::stdout()).await?;
            Ok(())
        }
        Command::Plan(args) => {
            let config = load_config(&args.config)?;
            gantry::commands::plan::run(args, &config, &mut std::io::stdout().lock())?;
            Ok(())
        }
        Command::Step(args) => {
            let database = database_path(&cli);
            gantry::commands::step::run(args, &cli.data_dir, &database).await?.exit_unless_succeeded();
            Ok(())
        }
        Command::Cvss(args) => {
            let valid = gantry::commands::cvss::run(args, std::io::stdin().lock(), &mut std::io::stdout().lock())?;
            gantry::commands::cvss::exit_unless_valid(valid);
            Ok(())
        }
        Command::Gate(args) => {
            let decision = gantry::commands::gate::run(args, &mut std::io::stdout().lock())?;
            gantry::commands::gate::exit_unless_allowed(decision);
            Ok(())
        }
        Command::Operate(operation) => {
            let answer = gantry::commands::operate::run(operation.clone()).await?;
            println!("{}", serde_json::to_string_pretty(&answer).context("render the answer")?);
            Ok(())
        }
        Command::Schema => {
            let schema = serde_json::to_string_pretty(&Config::json_schema()).context("render the schema")?;
            println!("{schema}");
            Ok(())
        }
        Command::Status { limit } => {
            let store: Arc<dyn Store> = match cli.database_url.as_deref().filter(|url| is_postgres(url)) {
                Some(url) => gantry_engine::store::open(url).await.context("open the store")?,
                None => {
                    let path = database_path(&cli);
                    if !path.exists() {
                        return Err(anyhow::anyhow!(
                            "no database at {} (start gantry with `gantry up` first)",
                            path.display()
                        )
                        .into());
                    }
                    Arc::new(SqliteStore::open(&path).await.context("open the store")?)
                }
            };
            let runs = store.list_runs(*limit).await.context("list runs")?;
            println!("{:<36}  {:<14} {:<8} {:<10} {:<24} {:<19}  STEPS", "RUN", "APP", "ENV", "STATE", "TAG", "DIGEST");
            for run in runs {
                let digest = run.digest.as_deref().map(|d| &d[..d.len().min(19)]).unwrap_or("-");
                let steps: Vec<String> = run.steps.iter().map(|s| format!("{}:{}", s.name, s.state)).collect();
                println!(
                    "{:<36}  {:<14} {:<8} {:<10} {:<24} {:<19}  {}",
                    run.id,
                    run.app,
                    run.environment,
                    run.state.as_str(),
                    run.plan.target.tag,
                    digest,
                    steps.join(" ")
                );
            }
            Ok(())
        }
        Command::Demo(DemoCommand::Event { reference, app, config }) => {
            let config = load_config(config)?;
            let app = demo::pick_app(&config, app.as_deref())?;
            let push = demo::push_event(app, reference);
            println!("{}", String::from_utf8_lossy(&push.body));
            Ok(())
        }
        Command::Demo(DemoCommand::Push { server, reference, app, config }) => {
            let config = load_config(config)?;
            let app = demo::pick_app(&config, app.as_deref())?;
            let push = demo::push_event(app, reference);
            let images = demo::publish_image(&cli.data_dir, &config, app, &push).await?;
            for image in &images {
                println!("CI pushed {image}");
            }
            let secret = github_secrets(&cli.data_dir)?.remove(0);
            let (status, body) = demo::send(server, &secret, &push).await?;
            if status != 202 {
                return Err(anyhow::anyhow!("gantry answered {status}: {body}").into());
            }
            println!("GitHub sent push {} of {} ({reference}): {status} {body}", &push.sha[..7], app.source_repo);
            println!("watch it: {}/", server.trim_end_matches('/'));
            Ok(())
        }
    }
}
