//! Signing and verification keys, from PEM files or environment variables.
//!
//! Signing keys are ECDSA P-256, the scheme of cosign's key-based signatures, in one of two
//! PEM forms: cosign's encrypted `ENCRYPTED SIGSTORE PRIVATE KEY` (or the older
//! `ENCRYPTED COSIGN PRIVATE KEY`) as `cosign generate-key-pair` writes it, or a plain PKCS#8
//! `PRIVATE KEY` as `openssl genpkey` / `openssl pkcs8 -topk8 -nocrypt` write it. Verification
//! keys are SPKI `PUBLIC KEY` PEMs (`cosign.pub`); besides P-256 they may be any key type
//! cosign verifies with (P-384, P-521, Ed25519, RSA).

use std::fmt;
use std::path::Path;

use sha2::{Digest as _, Sha256};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{CosignVerificationKey, SigStoreSigner, Signature, SigningScheme};

use super::SupplyChainError;

const ENCRYPTED_LABELS: [&str; 2] = ["ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"];
const PKCS8_LABEL: &str = "PRIVATE KEY";
const PUBLIC_LABEL: &str = "PUBLIC KEY";

/// An ECDSA P-256 private key that signs cosign-compatible signatures and DSSE envelopes.
pub struct SigningKey {
    signer: SigStoreSigner,
    public: VerificationKey,
}

impl fmt::Debug for SigningKey {
    // Never print key material; the public half identifies the key well enough.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("public", &self.public).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads a key from PEM text. `password` decrypts cosign's encrypted keys; when it is None
    /// the empty password is tried, which is what cosign uses when none was set.
    ///
    /// `origin` names where the PEM came from, for messages (a path, `env:VARIABLE`).
    pub fn from_pem(pem: &[u8], password: Option<&[u8]>, origin: &str) -> Result<Self, SupplyChainError> {
        let invalid = |reason: String| SupplyChainError::Key { origin: origin.to_owned(), reason };
        let label =
            pem_label(pem).ok_or_else(|| invalid("it is not a PEM file (no `-----BEGIN …-----` line)".to_owned()))?;
        let pair = if ENCRYPTED_LABELS.contains(&label) {
            SigStoreKeyPair::from_encrypted_pem(pem, password.unwrap_or_default())
                .map_err(|error| invalid(format!("decrypt the cosign key: {error} (wrong password, or none given)")))?
        } else if label == PKCS8_LABEL {
            SigStoreKeyPair::from_pem(pem).map_err(|error| invalid(format!("read the PKCS#8 private key: {error}")))?
        } else {
            return Err(invalid(match label {
                "EC PRIVATE KEY" => "it is a SEC1 `EC PRIVATE KEY`; convert it to PKCS#8 with \
                                     `openssl pkcs8 -topk8 -nocrypt -in KEY`"
                    .to_owned(),
                "ENCRYPTED PRIVATE KEY" => "password-protected PKCS#8 keys are not supported; \
                                            use a cosign key (`cosign generate-key-pair`) or an \
                                            unencrypted PKCS#8 key"
                    .to_owned(),
                PUBLIC_LABEL => "it is a public key; signing needs the private key".to_owned(),
                other => format!(
                    "unsupported PEM block `{other}`; expected `ENCRYPTED SIGSTORE PRIVATE KEY` \
                     or `PRIVATE KEY`"
                ),
            }));
        };
        Self::from_pair(&pair, origin)
    }

    /// Loads a key from a PEM file (see [`SigningKey::from_pem`]).
    pub fn from_file(path: &Path, password: Option<&[u8]>) -> Result<Self, SupplyChainError> {
        let pem = read_file(path)?;
        Self::from_pem(&pem, password, &path.display().to_string())
    }

    /// Loads a key from the PEM text held by environment variable `variable`.
    pub fn from_env(variable: &str, password: Option<&[u8]>) -> Result<Self, SupplyChainError> {
        let pem = read_env(variable)?;
        Self::from_pem(pem.as_bytes(), password, &format!("env:{variable}"))
    }

    /// A fresh random P-256 key, e.g. for a demo or a test.
    pub fn generate() -> Result<Self, SupplyChainError> {
        let origin = "generated";
        let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
            .create_signer()
            .map_err(|error| SupplyChainError::Key { origin: origin.to_owned(), reason: error.to_string() })?;
        let pair = signer
            .to_sigstore_keypair()
            .map_err(|error| SupplyChainError::Key { origin: origin.to_owned(), reason: error.to_string() })?;
        Self::from_pair(&pair, origin)
    }

    fn from_pair(pair: &SigStoreKeyPair, origin: &str) -> Result<Self, SupplyChainError> {
        let invalid = |reason: String| SupplyChainError::Key { origin: origin.to_owned(), reason };
        let signer = pair.to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1).map_err(|_| {
            invalid(format!("it is an {pair}, but cosign-compatible signing here needs an ECDSA P-256 key"))
        })?;
        let spki = pair.public_key_to_der().map_err(|error| invalid(format!("derive the public key: {error}")))?;
        let public = VerificationKey::from_spki_der(spki, origin)?;
        Ok(Self { signer, public })
    }

    /// The key as an unencrypted PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Result<String, SupplyChainError> {
        let pair = self.pair()?;
        let pem = pair.private_key_to_pem().map_err(|error| self.error(error))?;
        Ok(pem.to_string())
    }

    /// The key in cosign's encrypted format (`ENCRYPTED SIGSTORE PRIVATE KEY`).
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, SupplyChainError> {
        let pair = self.pair()?;
        let pem = pair.private_key_to_encrypted_pem(password).map_err(|error| self.error(error))?;
        Ok(pem.to_string())
    }

    fn pair(&self) -> Result<SigStoreKeyPair, SupplyChainError> {
        self.signer.to_sigstore_keypair().map_err(|error| self.error(error))
    }

    fn error(&self, error: impl fmt::Display) -> SupplyChainError {
        SupplyChainError::Key { origin: self.public.origin.clone(), reason: error.to_string() }
    }

    /// The public half.
    pub fn public_key(&self) -> &VerificationKey {
        &self.public
    }

    /// An ASN.1 DER ECDSA P-256 signature over SHA-256 of `message`, the form cosign stores
    /// (base64) in its signature annotation.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SupplyChainError> {
        self.signer
            .sign(message)
            .map_err(|error| SupplyChainError::Sign { key: self.public.id(), reason: error.to_string() })
    }
}

/// A public key that signatures are checked against.
#[derive(Clone)]
pub struct VerificationKey {
    key: CosignVerificationKey,
    spki_der: Vec<u8>,
    origin: String,
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey").field("id", &self.id()).field("origin", &self.origin).finish()
    }
}

impl VerificationKey {
    /// Loads an SPKI `PUBLIC KEY` PEM; `origin` names where it came from, for messages.
    pub fn from_pem(pem: &[u8], origin: &str) -> Result<Self, SupplyChainError> {
        let invalid = |reason: String| SupplyChainError::Key { origin: origin.to_owned(), reason };
        match pem_label(pem) {
            Some(PUBLIC_LABEL) => {}
            Some(label) if label.contains("PRIVATE KEY") => {
                return Err(invalid(
                    "it is a private key; verification takes the public key (e.g. cosign.pub)".to_owned(),
                ));
            }
            Some(other) => {
                return Err(invalid(format!("unsupported PEM block `{other}`; expected `PUBLIC KEY`")));
            }
            None => {
                return Err(invalid("it is not a PEM file (no `-----BEGIN …-----` line)".to_owned()));
            }
        }
        let der = pem_body(pem).ok_or_else(|| invalid("the PEM body is not base64".to_owned()))?;
        Self::from_spki_der(der, origin)
    }

    /// Loads a public key PEM file.
    pub fn from_file(path: &Path) -> Result<Self, SupplyChainError> {
        let pem = read_file(path)?;
        Self::from_pem(&pem, &path.display().to_string())
    }

    /// Loads the public key PEM held by environment variable `variable`.
    pub fn from_env(variable: &str) -> Result<Self, SupplyChainError> {
        let pem = read_env(variable)?;
        Self::from_pem(pem.as_bytes(), &format!("env:{variable}"))
    }

    fn from_spki_der(spki_der: Vec<u8>, origin: &str) -> Result<Self, SupplyChainError> {
        let key = CosignVerificationKey::try_from_der(&spki_der).map_err(|error| SupplyChainError::Key {
            origin: origin.to_owned(),
            reason: format!("read the public key: {error}"),
        })?;
        Ok(Self { key, spki_der, origin: origin.to_owned() })
    }

    /// A short fingerprint, `sha256:<first 12 hex digits of SHA-256 over the SPKI DER>`, to
    /// name the key in messages and outputs without printing it.
    pub fn id(&self) -> String {
        let hash = hex::encode(Sha256::digest(&self.spki_der));
        format!("sha256:{}", &hash[..12])
    }

    /// Where the key came from: a path, `env:VARIABLE`, or `generated`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The key as a `PUBLIC KEY` PEM, as `cosign.pub` holds it.
    pub fn to_pem(&self) -> String {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.encode(&self.spki_der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            // Base64 output is ASCII, so every chunk is valid UTF-8.
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Whether `signature` (ASN.1 DER for ECDSA keys) is this key's signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_signature(Signature::Raw(signature), message).is_ok()
    }
}

/// The label of the first PEM block, e.g. `PRIVATE KEY`.
fn pem_label(pem: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let end = text[start..].find("-----")?;
    Some(&text[start..start + end])
}

/// The decoded body of the first PEM block.
pub(crate) fn pem_body(pem: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = std::str::from_utf8(pem).ok()?;
    let begin = text.find("-----BEGIN ")?;
    let after_begin = begin + text[begin..].find('\n')? + 1;
    let end = after_begin + text[after_begin..].find("-----END ")?;
    let body: String = text[after_begin..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn read_file(path: &Path) -> Result<Vec<u8>, SupplyChainError> {
    std::fs::read(path).map_err(|source| SupplyChainError::ReadFile { what: "key", path: path.to_path_buf(), source })
}

fn read_env(variable: &str) -> Result<String, SupplyChainError> {
    match std::env::var(variable) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        Ok(_) => {
            Err(SupplyChainError::Key { origin: format!("env:{variable}"), reason: "the variable is empty".to_owned() })
        }
        Err(std::env::VarError::NotPresent) => Err(SupplyChainError::Key {
            origin: format!("env:{variable}"),
            reason: "the variable is not set".to_owned(),
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(SupplyChainError::Key {
            origin: format!("env:{variable}"),
            reason: "the variable does not hold UTF-8 text".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify() {
        let key = SigningKey::generate().unwrap();
        let signature = key.sign(b"payload").unwrap();
        assert!(key.public_key().verify(b"payload", &signature));
        assert!(!key.public_key().verify(b"payloaD", &signature));

        let other = SigningKey::generate().unwrap();
        assert!(!other.public_key().verify(b"payload", &signature));
        assert_ne!(key.public_key().id(), other.public_key().id());
    }

    #[test]
    fn pkcs8_and_public_pem_round_trip() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        assert_eq!(pem_label(pem.as_bytes()), Some("PRIVATE KEY"));
        let again = SigningKey::from_pem(pem.as_bytes(), None, "test").unwrap();
        assert_eq!(again.public_key().id(), key.public_key().id());

        let public = VerificationKey::from_pem(key.public_key().to_pem().as_bytes(), "pub").unwrap();
        assert_eq!(public.id(), key.public_key().id());
        let signature = again.sign(b"m").unwrap();
        assert!(public.verify(b"m", &signature));
    }

    #[test]
    fn wrong_kinds_of_pem_get_a_clear_reason() {
        let key = SigningKey::generate().unwrap();
        let public_pem = key.public_key().to_pem();
        let error = SigningKey::from_pem(public_pem.as_bytes(), None, "k.pub").unwrap_err();
        assert!(error.to_string().contains("signing needs the private key"), "{error}");

        let private_pem = key.to_pkcs8_pem().unwrap();
        let error = VerificationKey::from_pem(private_pem.as_bytes(), "k.key").unwrap_err();
        assert!(error.to_string().contains("it is a private key"), "{error}");

        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let error = SigningKey::from_pem(sec1.as_bytes(), None, "ec.pem").unwrap_err();
        assert!(error.to_string().contains("openssl pkcs8 -topk8"), "{error}");

        let error = SigningKey::from_pem(b"not a key", None, "junk").unwrap_err();
        assert_eq!(error.to_string(), "load key junk: it is not a PEM file (no `-----BEGIN …-----` line)");
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(SigningKey::from_pem(garbage.as_bytes(), None, "garbage").is_err());
    }

    #[test]
    fn missing_environment_variables_are_named() {
        let error = VerificationKey::from_env("GANTRY_TEST_KEY_THAT_IS_NEVER_SET").unwrap_err();
        assert_eq!(error.to_string(), "load key env:GANTRY_TEST_KEY_THAT_IS_NEVER_SET: the variable is not set");
    }

    #[test]
    fn debug_output_holds_no_key_material() {
        let key = SigningKey::generate().unwrap();
        let printed = format!("{key:?}");
        let pem = key.to_pkcs8_pem().unwrap();
        let body_line = pem.lines().nth(1).unwrap();
        assert!(!printed.contains(body_line));
        assert!(printed.contains(&key.public_key().id()));
    }
}
