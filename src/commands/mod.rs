//! Subcommands of the `gantry` CLI that live in their own files.
