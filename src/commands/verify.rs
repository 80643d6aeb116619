//! `gantry verify IMAGE --key FILE`: checks that an image carries a valid cosign signature by
//! a trusted key, or by a trusted keyless identity (`--trust-root` with
//! `--certificate-identity` and `--certificate-oidc-issuer`).
//!
//! With `--bundle FILE` it verifies a Sigstore bundle about the image's digest instead (an
//! attestation bundle, for instance), offline, against the trust root.
//!
//! It fails (non-zero exit) when the image is unsigned or no signature verifies, listing why
//! each signature was rejected.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use gantry_engine::registry::ImageReference;
use gantry_engine::supply_chain::keyless::verify_bundle;
use gantry_engine::supply_chain::{KeylessPolicy, SignatureCheck, TrustRoot, VerificationKey, verify_signatures};

use super::sign::ImageRegistryArgs;

/// Arguments of `gantry verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The image: `host[:port]/repo:tag`, `…@sha256:…`, or `oci-layout:DIR/repo:tag`.
    pub image: String,
    /// A trusted public key PEM (`cosign.pub`); repeatable, any of them may have signed.
    #[arg(long, value_name = "FILE")]
    pub key: Vec<PathBuf>,
    /// Environment variable holding one more trusted public key PEM.
    #[arg(long, value_name = "VARIABLE")]
    pub key_env: Option<String>,
    /// A Sigstore `trusted_root.json` for keyless signatures.
    #[arg(
        long,
        value_name = "FILE",
        requires_all = ["certificate_identity", "certificate_oidc_issuer"]
    )]
    pub trust_root: Option<PathBuf>,
    /// The identity (certificate SAN) a keyless signature must be issued to.
    #[arg(long, value_name = "IDENTITY", requires = "trust_root")]
    pub certificate_identity: Option<String>,
    /// The OIDC issuer of that identity.
    #[arg(long, value_name = "URL", requires = "trust_root")]
    pub certificate_oidc_issuer: Option<String>,
    /// Verify this Sigstore bundle (`*.sigstore.json`) about the image's digest instead of
    /// the image's `.sig` signatures; needs the keyless options.
    #[arg(long, value_name = "FILE", requires = "trust_root")]
    pub bundle: Option<PathBuf>,
    /// Print the verified signatures as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: ImageRegistryArgs,
}

/// Runs `gantry verify`, printing the signatures that verified on `out`.
pub async fn run(args: &VerifyArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let image = ImageReference::parse(&args.image)?;
    let mut keys = Vec::new();
    for path in &args.key {
        keys.push(VerificationKey::from_file(path)?);
    }
    if let Some(variable) = &args.key_env {
        keys.push(VerificationKey::from_env(variable)?);
    }
    let keyless = match (&args.trust_root, &args.certificate_identity, &args.certificate_oidc_issuer) {
        (Some(path), Some(identity), Some(issuer)) => Some(KeylessPolicy {
            trust_root: TrustRoot::from_file(path)?,
            identity: identity.clone(),
            issuer: issuer.clone(),
        }),
        (None, None, None) => None,
        _ => bail!(
            "keyless verification needs --trust-root, --certificate-identity and \
             --certificate-oidc-issuer together"
        ),
    };
    if keys.is_empty() && keyless.is_none() {
        bail!("name who must have signed: --key FILE, --key-env VARIABLE, or --trust-root with an identity");
    }
    let (registry, digest) = args.registry.open(&image).await?;
    let name = registry.reference(&image.repository, digest.as_str());

    if let Some(bundle) = &args.bundle {
        let Some(policy) = &keyless else {
            bail!("--bundle needs --trust-root, --certificate-identity and --certificate-oidc-issuer");
        };
        let bytes = std::fs::read(bundle).with_context(|| format!("read bundle {}", bundle.display()))?;
        let identity = verify_bundle(&bytes, &digest, policy).await?;
        if args.json {
            let printed = serde_json::json!({
                "image": name,
                "identity": identity.identity,
                "issuer": identity.issuer,
                "log_index": identity.log_index,
                "integrated_time": identity.integrated_time,
            });
            writeln!(out, "{printed}").context("write the result")?;
        } else {
            writeln!(
                out,
                "verified bundle for {name}: signed by {} ({}), Rekor log index {}",
                identity.identity, identity.issuer, identity.log_index
            )
            .context("write the result")?;
        }
        return Ok(());
    }

    let check = SignatureCheck { keys, keyless };
    let verified = verify_signatures(registry.as_ref(), &image.repository, &digest, &check).await?;
    if args.json {
        let printed = serde_json::json!({"image": name, "verified": verified});
        writeln!(out, "{printed}").context("write the result")?;
    } else {
        for signature in &verified {
            writeln!(out, "verified {name}: signed by {} (layer {})", signature.signer, signature.layer)
                .context("write the result")?;
        }
    }
    Ok(())
}
