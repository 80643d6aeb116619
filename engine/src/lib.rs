//! The engine of gantry: domain model, store, executor, step kinds and adapters.
//!
//! `engine` owns everything with side effects: the store (SQLite by default), the executor
//! that walks a run's DAG with retries and crash-resume, the built-in step kinds (one file
//! each under `steps/`), and the adapters they use — OCI registries, env config repos over
//! git, forges. It builds on the pure crates (`workflows` for plans, `webhooks` for events,
//! `gates` for verdicts) and must not know about HTTP routing or JSON wire formats: the
//! binary owns those.

pub mod actions;
pub mod capabilities;
pub mod drift;
pub mod edit;
pub mod error;
pub mod executor;
pub mod failpoint;
pub mod forge;
pub mod git;
pub mod history;
pub mod intake;
pub mod model;
pub mod registry;
pub mod repos;
pub mod steps;
pub mod store;
pub mod supply_chain;
pub mod templates;

pub use capabilities::Capabilities;
pub use executor::{Executor, ExecutorOptions};
pub use model::{Run, RunState, StepRun, StepState};
pub use steps::StepRegistry;
pub use store::{SqliteStore, Store};
