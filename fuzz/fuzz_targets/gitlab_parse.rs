//! `gitlab::parse`, `gitlab::infer_event_type` and `gitlab::delivery_key` on arbitrary bytes.
//! The first byte picks the `X-Gitlab-Event` value so every event parser is reached; the rest
//! is the body.

#![no_main]

use gantry_webhooks::gitlab;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const EVENT_TYPES: [&str; 7] =
    ["Push Hook", "Tag Push Hook", "Merge Request Hook", "Pipeline Hook", "System Hook", "Job Hook", ""];

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let event_type = EVENT_TYPES[usize::from(*selector) % EVENT_TYPES.len()];
    common::check_outcome(gitlab::parse(event_type, body));
    if let Some(inferred) = gitlab::infer_event_type(body) {
        common::check_outcome(gitlab::parse(inferred, body));
    }

    // Header values arrive as text; the body doubles as one so odd values are reached.
    let text = String::from_utf8_lossy(body);
    let (first, second) =
        text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(text.len(), |(i, _)| i));
    for headers in [(Some(first), Some(second)), (None, Some(second)), (None, None)] {
        if let Ok(key) = gitlab::delivery_key(headers.0, headers.1, body) {
            assert!(!key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()), "{key:?}");
            let again = gitlab::delivery_key(headers.0, headers.1, body);
            assert_eq!(again.as_deref(), Ok(key.as_str()), "keys are deterministic");
        }
    }
});
