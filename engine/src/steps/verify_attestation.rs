//! `verify-attestation`: requires an attestation of a given predicate type about the pinned
//! digest, signed by a trusted key, before the promotion goes on. No such attestation fails
//! the step for good, with the reasons each stored attestation was rejected.
//!
//! Settings (`with:`), at least one of `keys` / `key_env`:
//!
//! | setting | meaning |
//! |---|---|
//! | `keys` | public key PEM files; relative paths resolve against the config directory |
//! | `key_env` | environment variable holding one more public key PEM |
//! | `predicate_type` | the required predicate type (default SLSA provenance v1, `https://slsa.dev/provenance/v1`) |

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::sign::{parse_settings, settings, supply_chain_error, verification_keys};
use super::{Step, StepContext, StepError, StepOutcome, chain, classify};
use crate::supply_chain::{PROVENANCE_PREDICATE_TYPE, verify_attestations};

/// See the module documentation.
pub struct VerifyAttestation;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyAttestationSettings {
    #[serde(default)]
    keys: Vec<String>,
    key_env: Option<String>,
    predicate_type: Option<String>,
}

#[async_trait]
impl Step for VerifyAttestation {
    fn kind(&self) -> &'static str {
        "verify-attestation"
    }

    fn summary(&self) -> &'static str {
        "require a trusted attestation of a predicate type (SLSA provenance by default) about the pinned digest"
    }

    fn check_config(&self, config: &Value) -> Vec<(String, String)> {
        let settings = match parse_settings::<VerifyAttestationSettings>(config) {
            Ok(settings) => settings,
            Err(problems) => return problems,
        };
        let mut problems = Vec::new();
        if settings.keys.is_empty() && settings.key_env.is_none() {
            problems.push((
                "keys".to_owned(),
                "name who must have attested: `keys` (public key files) or `key_env`".to_owned(),
            ));
        }
        if let Some(kind) = &settings.predicate_type
            && !kind.contains(':')
        {
            problems.push(("predicate_type".to_owned(), format!("{kind:?} is not a URI")));
        }
        problems
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let settings: VerifyAttestationSettings = settings(ctx)?;
        let digest = ctx.require_digest()?;
        let keys = verification_keys(ctx, &settings.keys, settings.key_env.as_deref())?;
        let predicate_type = settings.predicate_type.unwrap_or_else(|| PROVENANCE_PREDICATE_TYPE.to_owned());
        let artifact = &ctx.plan.artifact;
        let registry =
            ctx.capabilities.registry(&artifact.registry_url).map_err(|e| classify(e.is_transient(), chain(&e)))?;
        let verified = verify_attestations(registry.as_ref(), &artifact.repository, &digest, &keys, &predicate_type)
            .await
            .map_err(supply_chain_error)?;
        let verified: Vec<Value> = verified
            .iter()
            .map(|attestation| {
                json!({
                    "layer": attestation.layer,
                    "signer": attestation.signer,
                    "predicate_type": attestation.statement.predicate_type,
                })
            })
            .collect();
        Ok(StepOutcome::Succeeded {
            outputs: json!({
                "image": registry.reference(&artifact.repository, digest.as_str()),
                "digest": digest.as_str(),
                "predicate_type": predicate_type,
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
    fn settings_need_a_key_and_a_uri() {
        let step = VerifyAttestation;
        assert!(step.check_config(&json!({"keys": ["ci.pub"]})).is_empty());
        assert_eq!(step.check_config(&Value::Null)[0].0, "keys");
        let problems = step.check_config(&json!({"predicate_type": "slsa"}));
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
