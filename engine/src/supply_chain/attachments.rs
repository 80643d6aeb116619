//! The manifests behind `sha256-<hex>.sig` and `.att` tags: one OCI image manifest whose layers
//! are the signatures (or attestations), read layer by layer and extended one layer at a time,
//! and carried along when their image is promoted to another repository or registry.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::{SupplyChainError, attestation_tag, signature_tag};
use crate::registry::image::{OCI_CONFIG_MEDIA_TYPE, parse_manifest};
use crate::registry::{Digest, Image, Location, OCI_MANIFEST_MEDIA_TYPE, Registry, RegistryError, TagOutcome, promote};

/// Signature payloads are a few hundred bytes and attestations rarely more than a few MiB
/// (an SBOM predicate); anything larger is not read, so a hostile tag cannot exhaust memory.
pub(crate) const MAX_LAYER_BYTES: u64 = 64 * 1024 * 1024;

/// One layer of an attachment manifest.
#[derive(Debug, Clone)]
pub(crate) struct AttachedLayer {
    /// The descriptor as stored, kept whole so that fields gantry does not know survive when
    /// the manifest is rewritten with one more layer.
    pub(crate) descriptor: Value,
    pub(crate) media_type: String,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) annotations: BTreeMap<String, String>,
}

impl AttachedLayer {
    pub(crate) fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }
}

/// The layers under `tag`, or None when the tag does not exist.
pub(crate) async fn read_layers(
    registry: &dyn Registry,
    repository: &str,
    tag: &str,
) -> Result<Option<Vec<AttachedLayer>>, SupplyChainError> {
    let reference = registry.reference(repository, tag);
    let read_error = SupplyChainError::registry("read", reference.clone());
    let Some(digest) =
        registry.resolve(repository, tag).await.map_err(SupplyChainError::registry("read", reference.clone()))?
    else {
        return Ok(None);
    };
    let manifest = match registry.fetch_manifest(repository, &digest).await {
        Ok(manifest) => manifest,
        // Deleted between the two requests: as good as never there.
        Err(RegistryError::NotFound { .. }) => return Ok(None),
        Err(error) => return Err(read_error(error)),
    };
    let invalid = |reason: String| SupplyChainError::InvalidAttachment { reference: reference.clone(), reason };
    if manifest.media_type != OCI_MANIFEST_MEDIA_TYPE
        && manifest.media_type != crate::registry::DOCKER_MANIFEST_MEDIA_TYPE
    {
        return Err(invalid(format!("it is a {} where an image manifest was expected", manifest.media_type)));
    }
    let document: Value = serde_json::from_slice(&manifest.bytes)
        .map_err(|error| invalid(format!("the manifest is not JSON: {error}")))?;
    let layers = match document.get("layers") {
        Some(Value::Array(layers)) => layers,
        _ => return Err(invalid("the manifest has no layers array".to_owned())),
    };
    layers
        .iter()
        .enumerate()
        .map(|(index, descriptor)| {
            parse_layer(descriptor).map_err(|reason| invalid(format!("layer {index}: {reason}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn parse_layer(descriptor: &Value) -> Result<AttachedLayer, String> {
    let media_type =
        descriptor.get("mediaType").and_then(Value::as_str).ok_or("the descriptor has no mediaType")?.to_owned();
    let digest = descriptor.get("digest").and_then(Value::as_str).ok_or("the descriptor has no digest")?;
    let digest = Digest::parse(digest).map_err(|error| error.to_string())?;
    let size = descriptor.get("size").and_then(Value::as_u64).ok_or("the descriptor has no size")?;
    let annotations = match descriptor.get("annotations") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(map)) => {
            map.iter().filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned()))).collect()
        }
        Some(_) => return Err("the annotations are not an object".to_owned()),
    };
    Ok(AttachedLayer { descriptor: descriptor.clone(), media_type, digest, size, annotations })
}

/// The blob of `layer`, refusing oversized ones before downloading them.
pub(crate) async fn read_blob(
    registry: &dyn Registry,
    repository: &str,
    layer: &AttachedLayer,
) -> Result<Vec<u8>, SupplyChainError> {
    let reference = registry.reference(repository, layer.digest.as_str());
    if layer.size > MAX_LAYER_BYTES {
        return Err(SupplyChainError::InvalidAttachment {
            reference,
            reason: format!("the layer is {} bytes, more than the {MAX_LAYER_BYTES} bytes gantry reads", layer.size),
        });
    }
    let read_error = SupplyChainError::registry("read", reference.clone());
    let blob = registry.read_blob(repository, &layer.digest).await.map_err(read_error)?;
    let mut stream = blob.stream;
    let mut bytes = Vec::with_capacity(usize::try_from(layer.size).unwrap_or_default());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(SupplyChainError::registry("read", reference.clone()))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > layer.size {
            break;
        }
    }
    // The stream is not verified by the registry layer; a layer is only believed when its
    // bytes are exactly the ones its descriptor names.
    let actual = Digest::of(&bytes);
    if actual != layer.digest || bytes.len() as u64 != layer.size {
        return Err(SupplyChainError::Registry {
            action: "read",
            reference,
            source: RegistryError::DigestMismatch { expected: layer.digest.to_string(), actual: actual.to_string() },
        });
    }
    Ok(bytes)
}

/// Writes the manifest under `tag` again with `existing` layers followed by a new layer holding
/// `blob`, and returns the new manifest's digest.
///
/// Every existing blob is fetched again because pushing a manifest needs its blobs in the
/// repository; registries skip the ones they already hold.
pub(crate) async fn append_layer(
    registry: &dyn Registry,
    repository: &str,
    tag: &str,
    existing: &[AttachedLayer],
    blob: Vec<u8>,
    media_type: &str,
    annotations: BTreeMap<String, String>,
) -> Result<Digest, SupplyChainError> {
    let descriptor = json!({
        "mediaType": media_type,
        "digest": Digest::of(&blob),
        "size": blob.len(),
        "annotations": annotations,
    });
    write_layers(registry, repository, tag, existing, vec![(descriptor, blob)]).await
}

/// Writes the manifest under `tag` again with the `existing` layers (read back from the
/// repository) followed by `added` (descriptor and blob each), and returns its digest.
async fn write_layers(
    registry: &dyn Registry,
    repository: &str,
    tag: &str,
    existing: &[AttachedLayer],
    added: Vec<(Value, Vec<u8>)>,
) -> Result<Digest, SupplyChainError> {
    let reference = registry.reference(repository, tag);
    let mut descriptors = Vec::with_capacity(existing.len() + added.len());
    let mut blobs = Vec::with_capacity(existing.len() + added.len());
    for layer in existing {
        let bytes = read_blob(registry, repository, layer).await?;
        descriptors.push(layer.descriptor.clone());
        blobs.push(bytes);
    }
    for (descriptor, blob) in added {
        descriptors.push(descriptor);
        blobs.push(blob);
    }

    // The config cosign writes: empty apart from the layer list, with the zero timestamp so the
    // same layers always give the same config bytes.
    let config = json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {
            "type": "layers",
            "diff_ids": blobs.iter().map(|b| Digest::of(b)).collect::<Vec<_>>(),
        },
    })
    .to_string()
    .into_bytes();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": OCI_CONFIG_MEDIA_TYPE,
            "digest": Digest::of(&config),
            "size": config.len(),
        },
        "layers": descriptors,
    })
    .to_string()
    .into_bytes();
    // A sanity check on what is about to be pushed: the registry would reject the same things.
    parse_manifest(&manifest, Some(OCI_MANIFEST_MEDIA_TYPE))
        .map_err(|reason| SupplyChainError::InvalidAttachment { reference: reference.clone(), reason })?;
    let image = Image { manifest, manifest_media_type: OCI_MANIFEST_MEDIA_TYPE.to_owned(), config, layers: blobs };
    registry.push_image(repository, tag, &image).await.map_err(SupplyChainError::registry("write", reference))
}

/// What happened to one attachment tag (`.sig`, `.att`) when its image moved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttachmentCopy {
    /// The tag, `sha256-<hex>.sig` or `sha256-<hex>.att`.
    pub tag: String,
    /// `copied` (the destination had none), `merged` (the destination had other layers, and
    /// now has both), or `already-present`.
    pub result: &'static str,
    /// The digest of the manifest now under the tag at the destination.
    pub digest: Digest,
}

/// Brings the signatures and attestations of `digest` along with an image promoted from
/// `source` to `destination`: each of its `.sig` / `.att` tags that exists at the source.
///
/// A tag the destination lacks is copied as it is (same manifest digest, so cosign finds the
/// same bytes). A tag the destination already has with other layers (signed there by another
/// key, say) is merged: the source's layers the destination lacks are appended, so no
/// signature is lost on either side. Idempotent: once every layer is there, nothing is written.
pub async fn copy_attachments(
    source: &Location<'_>,
    destination: &Location<'_>,
    digest: &Digest,
) -> Result<Vec<AttachmentCopy>, SupplyChainError> {
    let mut copies = Vec::new();
    for tag in [signature_tag(digest), attestation_tag(digest)] {
        let source_reference = source.reference(&tag);
        let destination_reference = destination.reference(&tag);
        let Some(source_digest) = source
            .registry
            .resolve(source.repository, &tag)
            .await
            .map_err(SupplyChainError::registry("read", source_reference.clone()))?
        else {
            continue;
        };
        let current = destination
            .registry
            .resolve(destination.repository, &tag)
            .await
            .map_err(SupplyChainError::registry("read", destination_reference.clone()))?;
        let copy = match current {
            None => {
                let promotion = promote(source, destination, &source_digest, &tag)
                    .await
                    .map_err(SupplyChainError::registry("copy", destination_reference.clone()))?;
                let result = if promotion.outcome == TagOutcome::AlreadyPresent { "already-present" } else { "copied" };
                AttachmentCopy { tag, result, digest: source_digest }
            }
            Some(current) if current == source_digest => {
                AttachmentCopy { tag, result: "already-present", digest: source_digest }
            }
            Some(_) => merge(source, destination, &tag).await?,
        };
        copies.push(copy);
    }
    Ok(copies)
}

/// Appends the layers of `tag` at `source` that the same tag at `destination` lacks.
async fn merge(
    source: &Location<'_>,
    destination: &Location<'_>,
    tag: &str,
) -> Result<AttachmentCopy, SupplyChainError> {
    let theirs = read_layers(source.registry, source.repository, tag).await?.unwrap_or_default();
    let ours = read_layers(destination.registry, destination.repository, tag).await?.unwrap_or_default();
    let mut added = Vec::new();
    for layer in theirs.iter().filter(|layer| !ours.iter().any(|own| own.digest == layer.digest)) {
        let blob = read_blob(source.registry, source.repository, layer).await?;
        added.push((layer.descriptor.clone(), blob));
    }
    if added.is_empty() {
        let digest = destination
            .registry
            .resolve(destination.repository, tag)
            .await
            .map_err(SupplyChainError::registry("read", destination.reference(tag)))?
            .ok_or_else(|| SupplyChainError::InvalidAttachment {
                reference: destination.reference(tag),
                reason: "the tag vanished while its layers were compared".to_owned(),
            })?;
        return Ok(AttachmentCopy { tag: tag.to_owned(), result: "already-present", digest });
    }
    let digest = write_layers(destination.registry, destination.repository, tag, &ours, added).await?;
    Ok(AttachmentCopy { tag: tag.to_owned(), result: "merged", digest })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::LayoutRegistry;

    #[tokio::test]
    async fn layers_accumulate_and_keep_their_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let registry = LayoutRegistry::new(dir.path());
        assert!(read_layers(&registry, "app", "x.sig").await.unwrap().is_none());

        let first = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
        append_layer(&registry, "app", "x.sig", &[], b"one".to_vec(), "t/one", first).await.unwrap();
        let layers = read_layers(&registry, "app", "x.sig").await.unwrap().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].annotation("a"), Some("1"));

        let second = BTreeMap::from([("b".to_owned(), "2".to_owned())]);
        append_layer(&registry, "app", "x.sig", &layers, b"two".to_vec(), "t/two", second).await.unwrap();
        let layers = read_layers(&registry, "app", "x.sig").await.unwrap().unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0].annotation("a"), Some("1"));
        assert_eq!(layers[1].media_type, "t/two");
        assert_eq!(layers[1].digest, Digest::of(b"two"));
        assert_eq!(read_blob(&registry, "app", &layers[0]).await.unwrap(), b"one");
    }

    #[tokio::test]
    async fn oversized_layers_are_not_downloaded() {
        let dir = tempfile::tempdir().unwrap();
        let registry = LayoutRegistry::new(dir.path());
        let layer = AttachedLayer {
            descriptor: Value::Null,
            media_type: "x".into(),
            digest: Digest::of(b""),
            size: MAX_LAYER_BYTES + 1,
            annotations: BTreeMap::new(),
        };
        let error = read_blob(&registry, "app", &layer).await.unwrap_err();
        assert!(error.to_string().contains("more than"), "{error}");
    }

    #[test]
    fn descriptors_without_required_fields_are_rejected() {
        for bad in [
            json!({"digest": Digest::of(b""), "size": 0}),
            json!({"mediaType": "x", "size": 0}),
            json!({"mediaType": "x", "digest": "md5:x", "size": 0}),
            json!({"mediaType": "x", "digest": Digest::of(b"")}),
            json!({"mediaType": "x", "digest": Digest::of(b""), "size": 0, "annotations": []}),
        ] {
            assert!(parse_layer(&bad).is_err(), "{bad}");
        }
    }
}
