//! `verify-signature`: requires a valid signature of the pinned digest by a trusted key (for
//! example CI's) or a trusted keyless identity before the promotion goes on. An unsigned image,
//! or one signed only by others, fails the step for good, with the reason.
//!
//! Settings (`with:`), at least one of `keys` / `key_env` / `keyless`:
//!
//! | setting | meaning |
//! |---|---|
//! | `keys` | public key PEM files (`cosign.pub`); a signature by any of them passes; relative paths resolve against the config directory |
//! | `key_env` | environment variable holding one more public key PEM |
//! | `keyless.trust_root` | a Sigstore `trusted_root.json` for keyless signatures |
//! | `keyless.identity` | the certificate identity (SAN) that must have signed |
//! | `keyless.issuer` | the OIDC issuer of that identity |

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::sign::{parse_settings, settings, settings_path, supply_chain_error, verification_keys};
use super::{Step, StepContext, StepError, StepOutcome, chain, classify};
use crate::supply_chain::{KeylessPolicy, SignatureCheck, TrustRoot, verify_signatures};

/// See the module documentation.
pub struct VerifySignature;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifySignatureSettings {
    #[serde(default)]
    keys: Vec<String>,
    key_env: Option<String>,
    keyless: Option<KeylessSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeylessSettings {
    trust_root: String,
    identity: String,
    issuer: String,
}

#[async_trait]
impl Step for VerifySignature {
    fn kind(&self) -> &'static str {
        "verify-signature"
    }

    fn summary(&self) -> &'static str {
        "require a valid signature of the pinned digest by a trusted key or keyless identity"
    }

    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        match parse_settings::<VerifySignatureSettings>(config) {
            Ok(settings) if settings.keys.is_empty() && settings.key_env.is_none() && settings.keyless.is_none() => {
                vec![(
                    "keys".to_owned(),
                    "name who must have signed: `keys` (public key files), `key_env`, or `keyless`".to_owned(),
                )]
            }
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings: VerifySignatureSettings = settings(ctx)?;
        let digest = ctx.require_digest()?;
        let keys = verification_keys(ctx, &settings.keys, settings.key_env.as_deref())?;
        let keyless = match &settings.keyless {
            Some(keyless) => Some(KeylessPolicy {
                trust_root: TrustRoot::from_file(&settings_path(ctx, &keyless.trust_root))
                    .map_err(|error| StepError::terminal(chain(&error)))?,
                identity: keyless.identity.clone(),
                issuer: keyless.issuer.clone(),
            }),
            None => None,
        };
        let check = SignatureCheck { keys, keyless };
        let artifact = &ctx.plan.artifact;
        let registry =
            ctx.capabilities.registry(&artifact.registry_url).map_err(|e| classify(e.is_transient(), chain(&e)))?;
        let verified = verify_signatures(registry.as_ref(), &artifact.repository, &digest, &check)
            .await
            .map_err(supply_chain_error)?;
        Ok(StepOutcome::Succeeded {
            outputs: json!({
                "image": registry.reference(&artifact.repository, digest.as_str()),
                "digest": digest.as_str(),
                "verified": verified,
            }),
            pin_digest: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_must_name_a_trusted_signer() {
        let step = VerifySignature;
        assert!(step.check_config(&json!({"keys": ["ci.pub"]})).is_empty());
        assert!(step.check_config(&json!({"key_env": "CI_PUB"})).is_empty());
        assert!(
            step.check_config(&json!({"keyless": {
                "trust_root": "trusted_root.json",
                "identity": "https://github.com/o/r/.github/workflows/ci.yml@refs/heads/main",
                "issuer": "https://token.actions.githubusercontent.com",
            }}))
            .is_empty()
        );
        assert_eq!(step.check_config(&Value::Null)[0].0, "keys");
        assert!(!step.check_config(&json!({"keyless": {"trust_root": "x"}})).is_empty());
        assert!(!step.check_config(&json!({"keys": "ci.pub"})).is_empty());
    }
}
