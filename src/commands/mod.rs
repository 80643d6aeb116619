//! Subcommands of the `gantry` CLI that live in their own files.

pub mod attest;
pub mod copy;
pub mod cvss;
pub mod drift;
pub mod edit;
pub mod gate;
pub mod operate;
pub mod plan;
pub mod retag;
pub mod sign;
pub mod step;
pub mod verify;
