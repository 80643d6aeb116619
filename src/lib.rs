//! The `gantry` binary's library half: HTTP server assembly, wire formats, quickstart and
//! demo. It is the only place that knows axum routes and JSON wire formats; the domain lives
//! in `gantry-engine`, `gantry-workflows`, `gantry-webhooks` and `gantry-gates`.

pub mod actions;
pub mod api;
pub mod bootstrap;
pub mod commands;
pub mod demo;
pub mod intake_batch;
pub mod server;
