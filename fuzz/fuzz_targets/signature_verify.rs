//! `github::verify_signature` and `gitlab::verify_token` on arbitrary secrets, headers and
//! bodies: nothing panics, a correct signature or token always passes, and a wrong one never
//! does.
//!
//! Layout: the first byte is the secret's length (mod 64), then the secret, then the body; the
//! body read as text is also tried as a header.

#![no_main]

use gantry_webhooks::{SignatureError, github, gitlab};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((length, rest)) = data.split_first() else {
        return;
    };
    let split = (usize::from(*length) % 64).min(rest.len());
    let (secret, body) = rest.split_at(split);
    let header = String::from_utf8_lossy(body);

    let signed = github::sign(secret, body);
    let verdict = github::verify_signature(&[secret], Some(&signed), body);
    if secret.is_empty() {
        assert_eq!(verdict, Err(SignatureError::NoSecretConfigured));
    } else {
        assert_eq!(verdict, Ok(()));
        // Any other body must fail under the same signature.
        let mut other = body.to_vec();
        other.push(0);
        assert_eq!(github::verify_signature(&[secret], Some(&signed), &other), Err(SignatureError::Mismatch));
        // Rotation: the right secret in second place still passes.
        let rotated: [&[u8]; 2] = [b"another secret", secret];
        let rotated_verdict = github::verify_signature(&rotated, Some(&signed), body);
        assert_eq!(rotated_verdict, Ok(()));
    }
    // Arbitrary header text is rejected cleanly (or, astronomically unlikely, accepted).
    let _ = github::verify_signature(&[secret], Some(&header), body);

    let token_verdict = gitlab::verify_token(&[secret], Some(&header));
    let expected_ok = !secret.is_empty() && !header.trim().is_empty() && header.as_bytes() == secret;
    assert_eq!(token_verdict.is_ok(), expected_ok, "{token_verdict:?}");
    if let Ok(token) = std::str::from_utf8(secret)
        && !token.trim().is_empty()
    {
        assert_eq!(gitlab::verify_token(&[secret], Some(token)), Ok(()));
    }
});
