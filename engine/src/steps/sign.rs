//! `sign`: signs the pinned digest with a cosign-compatible key-based signature, stored as a
//! layer of the `sha256-<hex>.sig` tag next to the image.
//!
//! Settings (`with:`), exactly one of `key` / `key_env`:
//!
//! | setting | meaning |
//! |---|---|
//! | `key` | PEM file of the private key (cosign's encrypted key or a PKCS#8 EC key); a relative path resolves against the config directory |
//! | `key_env` | environment variable holding the PEM text instead |
//! | `password_env` | environment variable holding the password of an encrypted key (default `COSIGN_PASSWORD`) |
//! | `annotations` | claims written into the payload's `optional` section, like `cosign sign -a` |
//!
//! Idempotent: a digest this key already signed (with the same claims) is not signed again,
//! so a resumed run never adds a duplicate signature.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{Step, StepContext, StepError, StepOutcome, chain, classify};
use crate::supply_chain::{SignOutcome, SigningKey, SupplyChainError, VerificationKey, sign_image};

/// The password variable cosign itself reads.
pub(super) const DEFAULT_PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// See the module documentation.
pub struct Sign;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignSettings {
    key: Option<String>,
    key_env: Option<String>,
    password_env: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[async_trait]
impl Step for Sign {
    fn kind(&self) -> &'static str {
        "sign"
    }

    fn summary(&self) -> &'static str {
        "sign the pinned digest with a cosign-compatible key (sha256-<hex>.sig), once per key"
    }

    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        match parse_settings::<SignSettings>(config) {
            Ok(settings) => check_one_key(settings.key.as_deref(), settings.key_env.as_deref()),
            Err(problems) => problems,
        }
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings: SignSettings = settings(ctx)?;
        let digest = ctx.require_digest()?;
        let key =
            signing_key(ctx, settings.key.as_deref(), settings.key_env.as_deref(), settings.password_env.as_deref())?;
        let artifact = &ctx.plan.artifact;
        let registry =
            ctx.capabilities.registry(&artifact.registry_url).map_err(|e| classify(e.is_transient(), chain(&e)))?;
        let claims: BTreeMap<String, Value> =
            settings.annotations.into_iter().map(|(name, value)| (name, Value::String(value))).collect();
        ctx.failpoint("before-side-effect");
        let outcome = sign_image(registry.as_ref(), &artifact.repository, &digest, &key, Some(claims))
            .await
            .map_err(supply_chain_error)?;
        ctx.failpoint("after-side-effect");
        let (result, tag, manifest) = match outcome {
            SignOutcome::Signed { tag, manifest } => ("signed", tag, Some(manifest.to_string())),
            SignOutcome::AlreadySigned { tag } => ("already-signed", tag, None),
        };
        Ok(StepOutcome::Succeeded {
            outputs: json!({
                "image": registry.reference(&artifact.repository, digest.as_str()),
                "digest": digest.as_str(),
                "signature_tag": tag,
                "signature_manifest": manifest,
                "key": key.public_key().id(),
                "result": result,
            }),
            pin_digest: None,
        })
    }
}

/// Parses a step's settings, reporting problems as (path, message) for `check_config`.
pub(super) fn parse_settings<T: DeserializeOwned>(config: &Value) -> Result<T, Vec<(String, String)>> {
    let config = if config.is_null() { Value::Object(Default::default()) } else { config.clone() };
    serde_json::from_value(config).map_err(|error| vec![(String::new(), error.to_string())])
}

/// The step's settings at run time; settings that passed `check_config` always parse.
pub(super) fn settings<T: DeserializeOwned>(ctx: &StepContext) -> Result<T, StepError> {
    parse_settings(&ctx.config).map_err(|problems| {
        let text: Vec<String> = problems.into_iter().map(|(_, message)| message).collect();
        StepError::terminal(format!("step {} has invalid settings: {}", ctx.step, text.join("; ")))
    })
}

/// `check_config` rule: exactly one of `key` and `key_env`.
pub(super) fn check_one_key(key: Option<&str>, key_env: Option<&str>) -> Vec<(String, String)> {
    match (key, key_env) {
        (Some(_), None) | (None, Some(_)) => Vec::new(),
        (None, None) => vec![(
            "key".to_owned(),
            "name the signing key: `key` (a PEM file) or `key_env` (a variable holding the PEM)".to_owned(),
        )],
        (Some(_), Some(_)) => vec![("key_env".to_owned(), "give either `key` or `key_env`, not both".to_owned())],
    }
}

/// A path from step settings: absolute, or relative to the config directory (where the
/// pipeline files that name it live).
pub(super) fn settings_path(ctx: &StepContext, path: &str) -> PathBuf {
    let path = std::path::Path::new(path);
    if path.is_absolute() { path.to_path_buf() } else { ctx.capabilities.config_dir().join(path) }
}

/// Loads the signing key named by the settings.
pub(super) fn signing_key(
    ctx: &StepContext,
    key: Option<&str>,
    key_env: Option<&str>,
    password_env: Option<&str>,
) -> Result<SigningKey, StepError> {
    let password_env = password_env.unwrap_or(DEFAULT_PASSWORD_ENV);
    let password = std::env::var(password_env).ok();
    let password = password.as_deref().map(str::as_bytes);
    let loaded = match (key, key_env) {
        (Some(path), None) => SigningKey::from_file(&settings_path(ctx, path), password),
        (None, Some(variable)) => SigningKey::from_env(variable, password),
        _ => {
            return Err(StepError::terminal(format!("step {} needs exactly one of `key` and `key_env`", ctx.step)));
        }
    };
    loaded.map_err(|error| StepError::terminal(chain(&error)))
}

/// Loads the public keys named by the settings (files and/or one variable).
pub(super) fn verification_keys(
    ctx: &StepContext,
    keys: &[String],
    key_env: Option<&str>,
) -> Result<Vec<VerificationKey>, StepError> {
    let mut loaded = Vec::new();
    for path in keys {
        loaded.push(
            VerificationKey::from_file(&settings_path(ctx, path))
                .map_err(|error| StepError::terminal(chain(&error)))?,
        );
    }
    if let Some(variable) = key_env {
        loaded.push(VerificationKey::from_env(variable).map_err(|error| StepError::terminal(chain(&error)))?);
    }
    Ok(loaded)
}

/// Registry outages are retried; everything else (a missing or bad signature) is final.
pub(super) fn supply_chain_error(error: SupplyChainError) -> StepError {
    classify(error.is_transient(), chain(&error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_need_exactly_one_key() {
        assert!(Sign.check_config(&json!({"key": "cosign.key"})).is_empty());
        assert!(Sign.check_config(&json!({"key_env": "KEY", "password_env": "PW"})).is_empty());
        assert_eq!(Sign.check_config(&Value::Null)[0].0, "key");
        assert_eq!(Sign.check_config(&json!({"key": "a", "key_env": "B"}))[0].0, "key_env");
        let unknown = Sign.check_config(&json!({"key": "a", "kye": "b"}));
        assert!(unknown[0].1.contains("unknown field `kye`"), "{unknown:?}");
        let wrong_type = Sign.check_config(&json!({"key": "a", "annotations": ["x"]}));
        assert_eq!(wrong_type.len(), 1);
    }
}
