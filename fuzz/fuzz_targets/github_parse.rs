//! `github::parse` and `github::infer_event_type` on arbitrary bytes. The first byte picks the
//! `X-GitHub-Event` value so every event parser is reached; the rest is the body.

#![no_main]

use gantry_webhooks::github;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const EVENT_TYPES: [&str; 10] =
    ["push", "ping", "create", "delete", "pull_request", "package", "registry_package", "workflow_run", "release", " "];

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let event_type = EVENT_TYPES[usize::from(*selector) % EVENT_TYPES.len()];
    common::check_outcome(github::parse(event_type, body));
    if let Some(inferred) = github::infer_event_type(body) {
        common::check_outcome(github::parse(inferred, body));
    }
});
