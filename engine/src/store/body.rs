//! How the SQLite inbox keeps webhook bodies.
//!
//! A burst of webhooks costs the embedded store mostly bytes: every body is written to the WAL
//! and copied into the database file again at the next checkpoint. Webhook bodies are JSON
//! with long repeated keys and URLs, which LZ4 packs to a quarter or a third at a few
//! microseconds per body, so the SQLite store keeps them packed (`body_encoding = 'lz4'`) and
//! unpacks them when intake reads them. A body that does not get smaller is kept as received
//! (`body_encoding` NULL), as are every body PostgreSQL stores and rows from before packing.

use crate::error::StoreError;

/// The `body_encoding` of a packed body: an LZ4 block after the unpacked length as a
/// little-endian u32.
pub(crate) const LZ4: &str = "lz4";

/// The largest body unpacking accepts. Webhook bodies are limited far below this at the
/// endpoint; the bound keeps a damaged row from asking for gigabytes.
const MAX_UNPACKED: usize = 256 * 1024 * 1024;

/// `body` as the SQLite inbox keeps it: the packed bytes with [`LZ4`], or `None` when packing
/// would not make it smaller (store it as received).
pub(crate) fn pack(body: &[u8]) -> Option<Vec<u8>> {
    let packed = lz4_flex::block::compress_prepend_size(body);
    (packed.len() < body.len()).then_some(packed)
}

/// The body as received, from a stored one and its `body_encoding`.
pub(crate) fn unpack(encoding: Option<&str>, stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    match encoding {
        None => Ok(stored),
        Some(LZ4) => {
            let Some(length) = stored.get(..4) else {
                return Err(StoreError::corrupt("delivery body", "an lz4 body shorter than its length prefix"));
            };
            let length = u32::from_le_bytes([length[0], length[1], length[2], length[3]]) as usize;
            if length > MAX_UNPACKED {
                return Err(StoreError::corrupt("delivery body", format!("an lz4 body claims {length} bytes")));
            }
            lz4_flex::block::decompress_size_prepended(&stored).map_err(|e| StoreError::corrupt("delivery body", e))
        }
        Some(other) => Err(StoreError::corrupt("delivery body", format!("unknown body encoding {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUSH: &[u8] = include_bytes!("../../../tests/fixtures/github/go-playground-webhooks/push.0.json");

    #[test]
    fn a_webhook_body_packs_smaller_and_unpacks_to_the_same_bytes() {
        let packed = pack(PUSH).expect("a push payload packs smaller");
        assert!(packed.len() * 2 < PUSH.len(), "{} of {} bytes", packed.len(), PUSH.len());
        assert_eq!(unpack(Some(LZ4), packed).unwrap(), PUSH);
    }

    #[test]
    fn a_body_that_does_not_shrink_is_kept_as_received() {
        assert_eq!(pack(b"{}"), None);
        assert_eq!(unpack(None, b"{}".to_vec()).unwrap(), b"{}");
    }

    #[test]
    fn damaged_or_unknown_bodies_are_errors_not_panics() {
        let mut packed = pack(PUSH).unwrap();
        packed.truncate(packed.len() / 2);
        assert!(unpack(Some(LZ4), packed).is_err());
        assert!(unpack(Some(LZ4), vec![1, 2]).is_err());
        assert!(unpack(Some(LZ4), vec![0xff, 0xff, 0xff, 0xff, 0]).unwrap_err().to_string().contains("claims"));
        assert!(unpack(Some("zstd"), PUSH.to_vec()).unwrap_err().to_string().contains("zstd"));
    }
}
