//! `gantry copy SRC DST`: promotes an image (or any OCI artifact) to another repository or
//! registry under the same digest, and the registry flags `gantry retag` shares with it.
//!
//! The cheapest move that keeps the digest is chosen: a retag inside one repository, a blob
//! mount between repositories of one registry, a streamed and digest-checked copy between
//! registries. Copying again is a no-op once the destination tag is at the digest.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use gantry_engine::StepRegistry;
use gantry_engine::registry::{
    self, ImageReference, ImmutableTags, Location, Promotion, RegistryAuth, RegistryOptions, TagOutcome, settings,
};
use gantry_workflows::config::RegistrySpec;

/// Arguments of `gantry copy`.
#[derive(Debug, Clone, clap::Args)]
pub struct CopyArgs {
    /// What to copy: `host[:port]/repo:tag`, `…@sha256:…`, `oci-layout:DIR/repo:tag` or
    /// `ecr://ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo:tag`.
    pub source: String,
    /// Where to: a reference of the same forms; without a tag, the source's tag is used.
    pub destination: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How to reach the registries of a copy or retag.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// Config directory whose `registries:` say how to reach each registry host (credentials,
    /// `insecure`, `immutable_tags`); the flags below add to or override what it says.
    #[arg(long, value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// Speak plain HTTP to this registry host (`host` or `host:port`) although it is not on
    /// loopback; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Refuse to move a destination tag that already points at another digest.
    #[arg(long)]
    pub immutable_tags: bool,
    /// Source registry credentials as USER:PASSWORD (default: the configured ones, else
    /// GANTRY_REGISTRY_USERNAME and GANTRY_REGISTRY_PASSWORD).
    #[arg(long, env = "GANTRY_SRC_CREDS", hide_env_values = true, value_name = "USER:PASSWORD")]
    pub src_creds: Option<String>,
    /// Destination registry credentials as USER:PASSWORD (default: the configured ones, else
    /// GANTRY_REGISTRY_USERNAME and GANTRY_REGISTRY_PASSWORD).
    #[arg(long, env = "GANTRY_DEST_CREDS", hide_env_values = true, value_name = "USER:PASSWORD")]
    pub dest_creds: Option<String>,
}

/// The registries of `--config`, when one is given.
pub(crate) fn configured_registries(config: Option<&Path>) -> anyhow::Result<Vec<RegistrySpec>> {
    let Some(dir) = config else {
        return Ok(Vec::new());
    };
    let config = gantry_workflows::load_dir(dir, &StepRegistry::builtin()).map_err(|errors| {
        let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow!("read the registry settings of {}: {}", dir.display(), listed.join("; "))
    })?;
    Ok(config.registries.into_iter().map(|(spec, _)| spec).collect())
}

/// The options to open `registry` (a reference's registry part) with: its configured settings
/// (found by host), then the flags: `credentials` as USER:PASSWORD replaces the configured
/// ones, `insecure` hosts are added, `immutable` makes every tag immutable.
pub(crate) fn registry_options(
    configured: &[RegistrySpec],
    config_dir: Option<&Path>,
    registry: &str,
    credentials: Option<&str>,
    insecure: &[String],
    immutable: bool,
) -> anyhow::Result<RegistryOptions> {
    let mut options = match settings::spec_for_reference(configured, registry) {
        Some(spec) => settings::options_from_spec(spec, config_dir.unwrap_or(Path::new(".")))?,
        None => RegistryOptions::default(),
    };
    match credentials {
        Some(pair) => {
            let Some((username, password)) = pair.split_once(':') else {
                bail!("credentials must be USER:PASSWORD");
            };
            if username.is_empty() {
                bail!("the user name in USER:PASSWORD is empty");
            }
            options.auth = RegistryAuth::Basic { username: username.to_owned(), password: password.to_owned() };
        }
        None if options.auth == RegistryAuth::Anonymous => options.auth = default_auth(),
        None => {}
    }
    options.insecure_hosts.extend(insecure.iter().cloned());
    if immutable {
        options.immutable_tags = ImmutableTags::All;
    }
    Ok(options)
}

/// Credentials from `GANTRY_REGISTRY_USERNAME` / `GANTRY_REGISTRY_PASSWORD`, when set.
pub(crate) fn default_auth() -> RegistryAuth {
    match (std::env::var("GANTRY_REGISTRY_USERNAME"), std::env::var("GANTRY_REGISTRY_PASSWORD")) {
        (Ok(username), Ok(password)) if !username.is_empty() => RegistryAuth::Basic { username, password },
        _ => RegistryAuth::Anonymous,
    }
}

/// Runs `gantry copy`, reporting what it did on `out`.
pub async fn run(args: &CopyArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let source = ImageReference::parse(&args.source)?;
    let destination = ImageReference::parse(&args.destination)?;
    if destination.digest.is_some() {
        bail!("the destination {destination} names a digest; name a tag (the digest is always the source's)");
    }
    let Some(tag) = destination.tag.clone().or_else(|| source.tag.clone()) else {
        bail!("name the destination tag: the source {source} has none to reuse");
    };
    transfer(&source, &destination, &tag, &args.registry, out).await?;
    Ok(())
}

/// Promotes `source` to `tag` in the repository of `destination`, and prints one line about it.
pub(crate) async fn transfer(
    source: &ImageReference,
    destination: &ImageReference,
    tag: &str,
    flags: &RegistryArgs,
    out: &mut impl Write,
) -> anyhow::Result<Promotion> {
    let base = Path::new(".");
    let configured = configured_registries(flags.config.as_deref())?;
    let options = |registry: &str, credentials: Option<&str>, immutable: bool| {
        let insecure = &flags.insecure_registries;
        registry_options(&configured, flags.config.as_deref(), registry, credentials, insecure, immutable)
    };
    let source_registry =
        registry::open_with(&source.registry, base, &options(&source.registry, flags.src_creds.as_deref(), false)?)?;
    let destination_registry = registry::open_with(
        &destination.registry,
        base,
        &options(&destination.registry, flags.dest_creds.as_deref(), flags.immutable_tags)?,
    )?;
    let from = Location::new(source_registry.as_ref(), &source.repository);
    let to = Location::new(destination_registry.as_ref(), &destination.repository);
    let target = to.reference(tag);
    let promotion = match (&source.digest, &source.tag) {
        (Some(digest), _) => registry::promote(&from, &to, digest, tag).await,
        (None, Some(source_tag)) => registry::promote_tag(&from, source_tag, &to, tag).await,
        (None, None) => bail!("name the source tag or digest: {source} has neither"),
    }
    .with_context(|| format!("copy {} to {target}", from.reference(source.tag_or_digest())))?;
    writeln!(out, "{}", summary(&target, &promotion)).context("write the result")?;
    Ok(promotion)
}

/// One line for the terminal: what happened to the tag, and how the content got there.
fn summary(target: &str, promotion: &Promotion) -> String {
    let outcome = match &promotion.outcome {
        TagOutcome::Created => "created".to_owned(),
        TagOutcome::Moved { from } => format!("moved (from {from})"),
        TagOutcome::AlreadyPresent => "already present".to_owned(),
    };
    let mut line = format!("{target} -> {}: {outcome}", promotion.digest);
    if promotion.outcome != TagOutcome::AlreadyPresent {
        line.push_str(&format!(
            " by {}; {} manifest(s) written, blobs: {} mounted, {} copied ({} bytes), {} already there",
            promotion.strategy.as_str(),
            promotion.manifests_written,
            promotion.blobs_mounted,
            promotion.blobs_copied,
            promotion.bytes_copied,
            promotion.blobs_present,
        ));
    }
    line
}

// Paths of `#[path]` modules are relative to this file's directory only outside inline modules.
#[cfg(test)]
#[path = "../../tests/support/registry.rs"]
pub(crate) mod registry_support;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gantry_engine::registry::{Registry, RegistryAuth, sample_image};

    use super::registry_support::TestRegistry;

    use super::*;

    fn connect(server: &TestRegistry) -> Arc<dyn Registry> {
        registry::open(&server.addr, Path::new("."), RegistryAuth::Anonymous).unwrap()
    }

    fn args(source: String, destination: String) -> CopyArgs {
        CopyArgs { source, destination, registry: RegistryArgs::default() }
    }

    #[tokio::test]
    async fn copy_between_registries_keeps_the_digest_and_is_idempotent() {
        let first = TestRegistry::start();
        let second = TestRegistry::start();
        let image = sample_image("app", &[("org.opencontainers.image.revision", "abc1234")]);
        let digest = connect(&first).push_image("app", "dev-abc1234", &image).await.unwrap();

        let copy = args(format!("{}/app:dev-abc1234", first.addr), format!("{}/prod/app:prod-v1", second.addr));
        let mut out = Vec::new();
        run(&copy, &mut out).await.unwrap();
        let printed = String::from_utf8(out).unwrap();
        assert!(printed.contains("created by copy"), "{printed}");
        assert!(printed.contains(digest.as_str()), "{printed}");
        assert_eq!(connect(&second).resolve("prod/app", "prod-v1").await.unwrap(), Some(digest.clone()));

        let mut out = Vec::new();
        run(&copy, &mut out).await.unwrap();
        let printed = String::from_utf8(out).unwrap();
        assert!(printed.contains("already present"), "{printed}");

        // Without a destination tag the source's is reused; by digest works as well.
        let by_digest = args(format!("{}/app:dev-abc1234@{digest}", first.addr), format!("{}/mirror/app", second.addr));
        run(&by_digest, &mut Vec::new()).await.unwrap();
        assert_eq!(connect(&second).resolve("mirror/app", "dev-abc1234").await.unwrap(), Some(digest));
    }

    #[tokio::test]
    async fn copy_takes_credentials_and_immutable_tags_from_the_configuration() {
        // `htpasswd -nbB ci s3cret-token`
        let prod =
            TestRegistry::start_with_htpasswd("ci:$2y$05$pjbImcs4/QyrgZ/vd6GCS.ZGI8lF4E5MJrpId8XTvnurplmN6wDeq\n");
        let dev = TestRegistry::start();
        let image = sample_image("app", &[("org.opencontainers.image.revision", "abc1234")]);
        let digest = connect(&dev).push_image("app", "v1", &image).await.unwrap();
        let other = connect(&dev).push_image("app", "v2", &sample_image("app", &[("rev", "2")])).await.unwrap();

        let config = tempfile::tempdir().unwrap();
        std::fs::write(config.path().join("token"), "s3cret-token\n").unwrap();
        std::fs::write(
            config.path().join("registries.yaml"),
            format!(
                "registries:\n  - name: prod\n    url: {}\n    credentials:\n      username: ci\n      \
                 password_file: token\n    immutable_tags: [\"release/*\"]\n",
                prod.url()
            ),
        )
        .unwrap();
        let mut copy = args(format!("{}/app:v1", dev.addr), format!("{}/release/app:prod", prod.addr));
        // Without the configuration prod answers 401.
        let error = run(&copy, &mut Vec::new()).await.unwrap_err();
        assert!(format!("{error:#}").contains("401"), "{error:#}");

        copy.registry.config = Some(config.path().to_path_buf());
        run(&copy, &mut Vec::new()).await.unwrap();
        let auth = RegistryAuth::Basic { username: "ci".into(), password: "s3cret-token".into() };
        let prod_registry = registry::open(&prod.addr, Path::new("."), auth).unwrap();
        assert_eq!(prod_registry.resolve("release/app", "prod").await.unwrap(), Some(digest.clone()));

        // `release/*` is immutable there: another digest may not take the tag.
        let mut moved = args(format!("{}/app:v2", dev.addr), format!("{}/release/app:prod", prod.addr));
        moved.registry.config = Some(config.path().to_path_buf());
        let error = run(&moved, &mut Vec::new()).await.unwrap_err();
        assert!(format!("{error:#}").contains("immutable"), "{error:#}");
        assert_eq!(prod_registry.resolve("release/app", "prod").await.unwrap(), Some(digest));
        // Outside the pattern tags move as usual.
        let mut elsewhere = args(format!("{}/app:v2", dev.addr), format!("{}/scratch/app:prod", prod.addr));
        elsewhere.registry.config = Some(config.path().to_path_buf());
        run(&elsewhere, &mut Vec::new()).await.unwrap();
        assert_eq!(prod_registry.resolve("scratch/app", "prod").await.unwrap(), Some(other));
    }

    #[tokio::test]
    async fn copy_reports_bad_input_clearly() {
        let server = TestRegistry::start();
        let missing = args(format!("{}/app:nope", server.addr), format!("{}/app:prod", server.addr));
        let error = run(&missing, &mut Vec::new()).await.unwrap_err();
        assert!(format!("{error:#}").contains(&format!("find {}/app:nope", server.addr)), "{error:#}");

        let untagged = args(format!("{}/app", server.addr), format!("{}/other", server.addr));
        let error = run(&untagged, &mut Vec::new()).await.unwrap_err();
        assert!(format!("{error:#}").contains("destination tag"), "{error:#}");

        let mut creds = args(format!("{}/app:v1", server.addr), format!("{}/app:v2", server.addr));
        creds.registry.src_creds = Some("no-colon".into());
        let error = run(&creds, &mut Vec::new()).await.unwrap_err();
        assert!(format!("{error:#}").contains("USER:PASSWORD"), "{error:#}");

        let insecure = args("http://10.255.255.1:5000/app:v1".into(), format!("{}/app:v2", server.addr));
        let error = run(&insecure, &mut Vec::new()).await.unwrap_err();
        assert!(format!("{error:#}").contains("--insecure-registry 10.255.255.1:5000"), "{error:#}");
    }
}
