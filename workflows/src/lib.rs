//! The pipeline and environment specification of gantry, and the pure logic around it.
//!
//! `workflows` owns the YAML configuration (apps, registries, environments, pipelines), its
//! published JSON Schema, validation that reports every problem at once with `file:line`,
//! trigger matching and its filters (a normalized [`GitEvent`](gantry_webhooks::GitEvent) in,
//! planned runs out, preview environments included), tag templates, and compilation of a
//! pipeline's steps into a DAG.
//!
//! It must not do I/O beyond reading the configuration directory it is pointed at: no
//! network, no store, no git, no registry. Step kinds are not known here; the engine passes a
//! [`StepCatalog`] so that validation can check them without this crate depending on it. The
//! one kind a plan names by itself, [`REMOVE_PREVIEW_KIND`], is checked against that catalog.

pub mod argo;
pub mod condition;
pub mod config;
pub mod config_repo;
pub mod dag;
pub mod dot;
pub mod error;
pub mod load;
pub mod plan;
pub mod spans;
pub mod template;
pub mod trigger;

pub use config::{
    AppSpec, Config, ConfigFile, ConfigRepoSpec, EnvironmentSpec, PipelineSpec, PreviewSpec, RegistrySpec, SourceForge,
    StepSpec, TriggerOn, TriggerSpec,
};
pub use error::{ConfigError, TemplateError};
pub use load::{StepCatalog, load_dir, validate_dir};
pub use plan::{
    ArtifactRef, EnvironmentTarget, Plan, PlanAction, PlannedStep, PreviewTarget, REMOVE_PREVIEW_KIND, follow_up,
    next_environments, plan,
};
pub use trigger::{TriggerCheck, explain};
