//! `X-Hub-Signature-256` verification against GitHub's published test vector and real payloads.

use std::path::PathBuf;

use gantry_webhooks::SignatureError;
use gantry_webhooks::github::{sign, verify_signature};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/github")
}

/// GitHub's documented vector: secret, payload and the header it sends.
struct Vector {
    secret: String,
    payload: String,
    header: String,
}

fn vector() -> Vector {
    let text = std::fs::read_to_string(fixtures().join("signature-test-vector.json")).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    let field = |name: &str| value[name].as_str().unwrap().to_owned();
    Vector { secret: field("secret"), payload: field("payload"), header: field("X-Hub-Signature-256") }
}

fn push_body() -> Vec<u8> {
    std::fs::read(fixtures().join("go-playground-webhooks/push.0.json")).unwrap()
}

#[test]
fn published_vector_verifies() {
    let v = vector();
    assert_eq!(verify_signature(&[v.secret.as_bytes()], Some(&v.header), v.payload.as_bytes()), Ok(()));
}

#[test]
fn sign_reproduces_the_published_header() {
    let v = vector();
    assert_eq!(sign(v.secret.as_bytes(), v.payload.as_bytes()), v.header);
}

#[test]
fn one_changed_byte_in_the_body_fails() {
    let v = vector();
    let mut body = v.payload.into_bytes();
    body[0] ^= 0x01;
    assert_eq!(verify_signature(&[v.secret.as_bytes()], Some(&v.header), &body), Err(SignatureError::Mismatch));
}

#[test]
fn one_changed_byte_in_a_real_payload_fails() {
    let secret = b"gantry-webhook-secret";
    let mut body = push_body();
    let header = sign(secret, &body);
    assert_eq!(verify_signature(&[secret], Some(&header), &body), Ok(()));

    let middle = body.len() / 2;
    body[middle] ^= 0x20;
    assert_eq!(verify_signature(&[secret], Some(&header), &body), Err(SignatureError::Mismatch));
}

#[test]
fn wrong_secret_fails() {
    let v = vector();
    assert_eq!(
        verify_signature(&[b"It's a Secret to Nobody"], Some(&v.header), v.payload.as_bytes()),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn rotated_secret_in_second_place_passes() {
    let v = vector();
    let secrets: [&[u8]; 2] = [b"the-new-secret", v.secret.as_bytes()];
    assert_eq!(verify_signature(&secrets, Some(&v.header), v.payload.as_bytes()), Ok(()));
}

#[test]
fn rotation_still_rejects_when_no_secret_matches() {
    let v = vector();
    let secrets: [&[u8]; 2] = [b"the-new-secret", b"the-old-secret"];
    assert_eq!(verify_signature(&secrets, Some(&v.header), v.payload.as_bytes()), Err(SignatureError::Mismatch));
}

#[test]
fn missing_header_is_reported() {
    let v = vector();
    assert_eq!(verify_signature(&[v.secret.as_bytes()], None, v.payload.as_bytes()), Err(SignatureError::Missing));
}

#[test]
fn header_without_scheme_prefix_is_malformed() {
    let v = vector();
    let bare_hex = v.header.trim_start_matches("sha256=");
    let error = verify_signature(&[v.secret.as_bytes()], Some(bare_hex), v.payload.as_bytes()).unwrap_err();
    assert!(matches!(&error, SignatureError::Malformed { reason } if reason.contains("sha256=")), "{error:?}");
}

#[test]
fn non_hex_digest_is_malformed() {
    let v = vector();
    // Same length as a real digest, so only the alphabet is wrong.
    let header = format!("sha256={}", "z".repeat(64));
    let error = verify_signature(&[v.secret.as_bytes()], Some(&header), v.payload.as_bytes()).unwrap_err();
    assert!(matches!(&error, SignatureError::Malformed { reason } if reason.contains("not hexadecimal")), "{error:?}");
}

#[test]
fn uppercase_hex_digest_is_accepted() {
    let v = vector();
    let header = format!("sha256={}", v.header["sha256=".len()..].to_uppercase());
    assert_eq!(verify_signature(&[v.secret.as_bytes()], Some(&header), v.payload.as_bytes()), Ok(()));
}

#[test]
fn no_secret_configured_is_its_own_error() {
    let v = vector();
    assert_eq!(verify_signature(&[], Some(&v.header), v.payload.as_bytes()), Err(SignatureError::NoSecretConfigured));
}

#[test]
fn error_messages_never_echo_the_secret_or_digest() {
    let v = vector();
    let errors = [
        verify_signature(&[v.secret.as_bytes()], None, b"x").unwrap_err(),
        verify_signature(&[v.secret.as_bytes()], Some(&v.header), b"x").unwrap_err(),
        verify_signature(&[v.secret.as_bytes()], Some("sha256=zz"), b"x").unwrap_err(),
        verify_signature(&[], Some(&v.header), b"x").unwrap_err(),
    ];
    let digest = &v.header["sha256=".len()..];
    for error in errors {
        let message = error.to_string();
        assert!(!message.contains(&v.secret), "{message}");
        assert!(!message.contains(digest), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }
}
