//! `gantry sign IMAGE --key FILE`: a cosign-compatible key-based signature of an image.
//!
//! The image is signed by digest (a tag is resolved first) and the signature is stored as a
//! layer of the `sha256-<hex>.sig` tag in the same repository, where `cosign verify` finds it.
//! Signing again with the same key is a no-op.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use gantry_engine::registry::{self, Digest, ImageReference, Registry};
use gantry_engine::supply_chain::{SignOutcome, SigningKey, sign_image};

use super::copy::{configured_registries, registry_options};

/// The password variable cosign itself reads.
pub const DEFAULT_PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// Arguments of `gantry sign`.
#[derive(Debug, Clone, clap::Args)]
pub struct SignArgs {
    /// The image: `host[:port]/repo:tag`, `…@sha256:…`, or `oci-layout:DIR/repo:tag`.
    pub image: String,
    /// Private key PEM file: cosign's encrypted key (`cosign generate-key-pair`) or an
    /// unencrypted PKCS#8 EC P-256 key.
    #[arg(long, value_name = "FILE", required_unless_present = "key_env")]
    pub key: Option<std::path::PathBuf>,
    /// Environment variable holding the private key PEM instead of a file.
    #[arg(long, value_name = "VARIABLE", conflicts_with = "key")]
    pub key_env: Option<String>,
    /// Environment variable holding the password of an encrypted key.
    #[arg(long, value_name = "VARIABLE", default_value = DEFAULT_PASSWORD_ENV)]
    pub password_env: String,
    /// A claim for the payload's `optional` section, like `cosign sign -a`; repeatable.
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    #[command(flatten)]
    pub registry: ImageRegistryArgs,
}

/// How to reach the image's registry.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ImageRegistryArgs {
    /// Config directory whose `registries:` say how to reach each registry host (credentials,
    /// `insecure`); without one, or for a host it does not name, credentials come from
    /// GANTRY_REGISTRY_USERNAME and GANTRY_REGISTRY_PASSWORD.
    #[arg(long, value_name = "DIR")]
    pub config: Option<std::path::PathBuf>,
    /// Speak plain HTTP to this registry host (`host` or `host:port`) although it is not on
    /// loopback; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

impl ImageRegistryArgs {
    /// Opens the registry of `image` (relative layout directories resolve against the
    /// working directory) and returns it with the image's digest: the one given, or the one
    /// its tag points at now.
    pub async fn open(&self, image: &ImageReference) -> anyhow::Result<(Arc<dyn Registry>, Digest)> {
        let configured = configured_registries(self.config.as_deref())?;
        let options = registry_options(
            &configured,
            self.config.as_deref(),
            &image.registry,
            None,
            &self.insecure_registries,
            false,
        )?;
        let registry = registry::open_with(&image.registry, Path::new("."), &options)
            .with_context(|| format!("open the registry of {image}"))?;
        if let Some(digest) = &image.digest {
            return Ok((registry, digest.clone()));
        }
        let Some(tag) = &image.tag else {
            bail!("name a tag (`…:v1`) or a digest (`…@sha256:…`) of {image}");
        };
        let digest = registry.resolve(&image.repository, tag).await.with_context(|| format!("resolve {image}"))?;
        match digest {
            Some(digest) => Ok((registry, digest)),
            None => bail!("find {image}: the tag does not exist"),
        }
    }
}

/// Loads the key the arguments name.
pub fn load_signing_key(key: Option<&Path>, key_env: Option<&str>, password_env: &str) -> anyhow::Result<SigningKey> {
    let password = std::env::var(password_env).ok();
    let password = password.as_deref().map(str::as_bytes);
    let key = match (key, key_env) {
        (Some(path), _) => SigningKey::from_file(path, password)?,
        (None, Some(variable)) => SigningKey::from_env(variable, password)?,
        (None, None) => bail!("name the signing key with --key FILE or --key-env VARIABLE"),
    };
    Ok(key)
}

/// Runs `gantry sign`, reporting what it did on `out`.
pub async fn run(args: &SignArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let image = ImageReference::parse(&args.image)?;
    let mut claims = BTreeMap::new();
    for annotation in &args.annotations {
        let Some((name, value)) = annotation.split_once('=') else {
            bail!("annotation {annotation:?} is not KEY=VALUE");
        };
        claims.insert(name.to_owned(), serde_json::Value::String(value.to_owned()));
    }
    let key = load_signing_key(args.key.as_deref(), args.key_env.as_deref(), &args.password_env)?;
    let (registry, digest) = args.registry.open(&image).await?;
    let outcome = sign_image(registry.as_ref(), &image.repository, &digest, &key, Some(claims)).await?;
    let name = registry.reference(&image.repository, digest.as_str());
    match outcome {
        SignOutcome::Signed { tag, .. } => {
            writeln!(out, "signed {name} with key {} (stored under tag {tag})", key.public_key().id())
        }
        SignOutcome::AlreadySigned { tag } => {
            writeln!(out, "{name} is already signed by key {} (tag {tag}); nothing written", key.public_key().id())
        }
    }
    .context("write the result")
}
