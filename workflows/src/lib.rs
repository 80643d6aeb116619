//! The pipeline and environment specification of gantry, and the pure logic around it.
//!
//! `workflows` owns the YAML configuration (apps, registries, environments, pipelines), its
//! published JSON Schema, validation that reports every problem at once with `file:line`,
//! trigger matching (a normalized [`GitEvent`](gantry_webhooks::GitEvent) in, planned runs
//! out), tag templates, and compilation of a pipeline's steps into a DAG.
//!
//! It must not do I/O beyond reading the configuration directory it is pointed at: no
//! network, no store, no git, no registry. Step kinds are not known here; the engine passes a
//! [`StepCatalog`] so that validation can check them without this crate depending on it.

pub mod argo;
pub mod condition;
pub mod config;
pub mod dag;
pub mod dot;
pub mod error;
pub mod load;
pub mod plan;
pub mod spans;
pub mod template;

pub use config::{
    AppSpec, Config, ConfigFile, ConfigRepoSpec, EnvironmentSpec, PipelineSpec, RegistrySpec, StepSpec, TriggerOn,
    TriggerSpec,
};
pub use error::{ConfigError, TemplateError};
pub use load::{StepCatalog, load_dir, validate_dir};
pub use plan::{ArtifactRef, EnvironmentTarget, Plan, PlannedStep, follow_up, next_environments, plan};
