//! `gantry attest IMAGE --predicate FILE --type URI --key FILE`: a signed in-toto attestation.
//!
//! The predicate (a JSON file: an SBOM, a scan report, provenance) becomes the predicate of an
//! in-toto Statement v1 about the image digest, signed as a DSSE envelope and stored as a layer
//! of the `sha256-<hex>.att` tag, where `cosign verify-attestation` finds it. Attesting the same
//! predicate again with the same key is a no-op.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use gantry_engine::registry::ImageReference;
use gantry_engine::supply_chain::{AttestOutcome, attest_image};

use super::sign::{DEFAULT_PASSWORD_ENV, ImageRegistryArgs, load_signing_key};

/// Arguments of `gantry attest`.
#[derive(Debug, Clone, clap::Args)]
pub struct AttestArgs {
    /// The image: `host[:port]/repo:tag`, `…@sha256:…`, or `oci-layout:DIR/repo:tag`.
    pub image: String,
    /// The predicate, a JSON file.
    #[arg(long, value_name = "FILE")]
    pub predicate: PathBuf,
    /// The predicate type URI, e.g. `https://slsa.dev/provenance/v1`.
    #[arg(long = "type", value_name = "URI")]
    pub predicate_type: String,
    /// Private key PEM file (as for `gantry sign`).
    #[arg(long, value_name = "FILE", required_unless_present = "key_env")]
    pub key: Option<PathBuf>,
    /// Environment variable holding the private key PEM instead of a file.
    #[arg(long, value_name = "VARIABLE", conflicts_with = "key")]
    pub key_env: Option<String>,
    /// Environment variable holding the password of an encrypted key.
    #[arg(long, value_name = "VARIABLE", default_value = DEFAULT_PASSWORD_ENV)]
    pub password_env: String,
    #[command(flatten)]
    pub registry: ImageRegistryArgs,
}

/// Runs `gantry attest`, reporting what it did on `out`.
pub async fn run(args: &AttestArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let image = ImageReference::parse(&args.image)?;
    let text =
        std::fs::read(&args.predicate).with_context(|| format!("read predicate {}", args.predicate.display()))?;
    let predicate: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("parse predicate {} as JSON", args.predicate.display()))?;
    let key = load_signing_key(args.key.as_deref(), args.key_env.as_deref(), &args.password_env)?;
    let (registry, digest) = args.registry.open(&image).await?;
    let outcome =
        attest_image(registry.as_ref(), &image.repository, &digest, &key, &args.predicate_type, predicate).await?;
    let name = registry.reference(&image.repository, digest.as_str());
    match outcome {
        AttestOutcome::Attached { tag, .. } => writeln!(
            out,
            "attested {name}: {} signed by key {} (stored under tag {tag})",
            args.predicate_type,
            key.public_key().id()
        ),
        AttestOutcome::AlreadyPresent { tag } => writeln!(
            out,
            "{name} already has this {} attestation by key {} (tag {tag}); nothing written",
            args.predicate_type,
            key.public_key().id()
        ),
    }
    .context("write the result")
}
