//! Step kinds: one file each, registered by name in [`StepRegistry::builtin`].
//!
//! A step gets a [`StepContext`] holding the run's plan, its own settings, the outputs of the
//! steps it follows, and only the capabilities the engine hands to steps (registries, env
//! repos, the forge). It returns an outcome value; what to do about an error (retry when,
//! or fail) is decided by [`crate::executor::retry_policy`], not by the step.

mod approval;
mod attest;
mod gate;
mod noop;
mod open_pr;
mod preview;
mod prune_tags;
mod remove_preview;
mod resolve_artifact;
mod retag;
mod scan;
mod sign;
mod soak;
mod update_config;
mod verify_argocd;
mod verify_attestation;
mod verify_signature;
mod wait_for_merge;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gantry_workflows::{Plan, StepCatalog};

use crate::capabilities::Capabilities;
use crate::model::Millis;

pub use approval::{Approval, wake_key as approval_wake_key};
pub use attest::Attest;
pub use gate::Gate;
pub use noop::Noop;
pub use open_pr::OpenPr;
pub use prune_tags::PruneTags;
pub use remove_preview::{RemovePreview, removal_branch};
pub use resolve_artifact::ResolveArtifact;
pub use retag::Retag;
pub use scan::Scan;
pub use sign::Sign;
pub use soak::Soak;
pub use update_config::UpdateConfig;
pub use verify_argocd::VerifyArgocd;
pub use verify_attestation::VerifyAttestation;
pub use verify_signature::VerifySignature;
pub use wait_for_merge::{WaitForMerge, wake_key as merge_wake_key};

/// What a step attempt achieved.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// Done.
    Succeeded {
        /// Outputs later steps and the API can read.
        outputs: serde_json::Value,
        /// Pins the run's artifact to this digest (the step that resolves it sets this).
        pin_digest: Option<String>,
    },
    /// Not done yet; look again after `retry_in` (or when an event wakes the step).
    Waiting {
        /// When to look again.
        retry_in: Duration,
        /// Event that wakes the step earlier (e.g. `approval:<run>:<step>`).
        wake_on: Option<String>,
        /// What it waits for, for people.
        reason: String,
        /// Progress to show meanwhile.
        progress: Option<serde_json::Value>,
    },
}

/// Why a step attempt did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepError {
    /// Worth retrying (network, 5xx, 429, lock contention, a race).
    #[error("{message}")]
    Transient {
        /// What went wrong.
        message: String,
        /// Server-requested delay, if any.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (bad input, denied, missing artifact after the wait).
    #[error("{message}")]
    Terminal {
        /// What went wrong.
        message: String,
    },
}

impl StepError {
    /// A transient error.
    pub fn transient(message: impl std::fmt::Display) -> Self {
        Self::Transient { message: message.to_string(), retry_after: None }
    }

    /// A terminal error.
    pub fn terminal(message: impl std::fmt::Display) -> Self {
        Self::Terminal { message: message.to_string() }
    }
}

/// Everything one step attempt may use.
#[derive(Clone)]
pub struct StepContext {
    /// Run id.
    pub run_id: String,
    /// Step name.
    pub step: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The step's settings (`null` when none).
    pub config: serde_json::Value,
    /// The run's plan.
    pub plan: Plan,
    /// The run's pinned artifact digest, once resolved.
    pub digest: Option<String>,
    /// When the run was created (for deterministic commits and bounded waits).
    pub run_created_at: Millis,
    /// Outputs of the run's succeeded steps, by step name.
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// This step's own outputs so far: progress it recorded while waiting, or an approval.
    pub progress: Option<serde_json::Value>,
    /// When this step first started.
    pub started_at: Millis,
    /// Capabilities available to steps.
    pub capabilities: Arc<Capabilities>,
}

impl StepContext {
    /// The pinned digest, or a terminal error for steps that need it before it exists.
    pub fn require_digest(&self) -> Result<crate::registry::Digest, StepError> {
        let digest = self.digest.as_deref().ok_or_else(|| {
            StepError::terminal(format!(
                "step {} needs the artifact digest, but no earlier step resolved it (add `needs: [<a resolve-artifact step>]`)",
                self.step
            ))
        })?;
        crate::registry::Digest::parse(digest).map_err(StepError::terminal)
    }

    /// Stops the process here when the named failpoint is armed (crash tests).
    pub fn failpoint(&self, point: &str) {
        crate::failpoint::hit(&format!("{point}:{}", self.step));
    }
}

/// One step kind.
#[async_trait]
pub trait Step: Send + Sync {
    /// Kind name used in pipelines (kebab-case verb).
    fn kind(&self) -> &'static str;
    /// One line on what it does.
    fn summary(&self) -> &'static str;
    /// Problems with its `with:` settings, as (dotted path, message).
    fn check_config(&self, config: &serde_json::Value) -> Vec<(String, String)> {
        no_settings(config)
    }
    /// Registries (by name) its `with:` settings refer to, as (dotted path, name).
    fn registry_references(&self, config: &serde_json::Value) -> Vec<(String, String)> {
        let _ = config;
        Vec::new()
    }
    /// Runs one attempt.
    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError>;
}

/// Settings check for kinds that take none.
pub fn no_settings(config: &serde_json::Value) -> Vec<(String, String)> {
    match config {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Object(map) if map.is_empty() => Vec::new(),
        serde_json::Value::Object(map) => map
            .keys()
            .map(|key| (key.clone(), format!("unknown setting `{key}` (this step kind takes none)")))
            .collect(),
        _ => vec![(String::new(), "`with` must be a mapping".into())],
    }
}

/// Step kinds by name.
#[derive(Clone)]
pub struct StepRegistry {
    kinds: BTreeMap<&'static str, Arc<dyn Step>>,
}

impl StepRegistry {
    /// Every built-in step kind: the one list to extend when adding a kind.
    pub fn builtin() -> Self {
        let steps: Vec<Arc<dyn Step>> = vec![
            Arc::new(ResolveArtifact),
            Arc::new(Scan),
            Arc::new(Gate),
            Arc::new(Approval),
            Arc::new(Soak),
            Arc::new(Noop),
            Arc::new(Retag),
            Arc::new(PruneTags),
            Arc::new(UpdateConfig),
            Arc::new(OpenPr),
            Arc::new(RemovePreview),
            Arc::new(WaitForMerge),
            Arc::new(VerifyArgocd),
            Arc::new(Sign),
            Arc::new(VerifySignature),
            Arc::new(Attest),
            Arc::new(VerifyAttestation),
        ];
        Self { kinds: steps.into_iter().map(|s| (s.kind(), s)).collect() }
    }

    /// The step kind named `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Step>> {
        self.kinds.get(kind)
    }

    /// All kinds with their summaries.
    pub fn describe(&self) -> Vec<(&'static str, &'static str)> {
        self.kinds.values().map(|s| (s.kind(), s.summary())).collect()
    }
}

impl StepCatalog for StepRegistry {
    fn kinds(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }

    fn check(&self, kind: &str, with: &serde_json::Value) -> Vec<(String, String)> {
        self.kinds.get(kind).map(|s| s.check_config(with)).unwrap_or_default()
    }

    fn registry_references(&self, kind: &str, with: &serde_json::Value) -> Vec<(String, String)> {
        self.kinds.get(kind).map(|s| s.registry_references(with)).unwrap_or_default()
    }
}

/// Runs blocking work (git) off the async runtime; a panic inside becomes a terminal error.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| StepError::terminal(format!("step work panicked: {join}")))?
}

/// Classifies an adapter error by whether retrying can help.
pub(crate) fn classify(transient: bool, error: impl std::fmt::Display) -> StepError {
    // Keep the whole cause chain: "push branch x: connection refused" tells more than "push branch x".
    if transient { StepError::transient(error) } else { StepError::terminal(error) }
}

/// Formats an error with its sources, `a: b: c`.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The branch a promotion's change lives on: `gantry/<env>/<app>/<digest12>`.
pub fn promotion_branch(environment: &str, app: &str, digest: &crate::registry::Digest) -> String {
    format!("gantry/{environment}/{app}/{}", &digest.hex()[..12])
}

/// Deserializes a step's `with:` settings into its typed struct; `null` means "no settings".
/// The error is (dotted path, message), ready for config validation.
pub fn typed_settings<T: serde::de::DeserializeOwned>(config: &serde_json::Value) -> Result<T, (String, String)> {
    let value = if config.is_null() { serde_json::Value::Object(Default::default()) } else { config.clone() };
    serde_path_to_error::deserialize::<_, T>(value).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, error.into_inner().to_string())
    })
}
