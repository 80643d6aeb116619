//! Images as bytes: what [`Registry::push_image`](super::Registry::push_image) sends, how a
//! manifest is read back, and a small deterministic sample image for tests and demos.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;

use flate2::Compression;
use flate2::GzBuilder;
use serde::Deserialize;
use serde_json::json;

use super::{
    DOCKER_MANIFEST_LIST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, Digest, OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE,
    RegistryError,
};

/// Media type of an OCI image config blob.
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of the empty descriptor (`{}`), the config of artifacts that need none.
pub const OCI_EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Media type of a gzip-compressed OCI layer.
pub const OCI_LAYER_GZIP_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// An image to push: its manifest bytes + media type, config blob, and layer blobs.
///
/// The manifest is kept as bytes because its digest is the digest of exactly these bytes;
/// re-serializing it would produce another image as far as any registry is concerned.
/// `config` and `layers` must be the blobs the manifest names, in the manifest's order.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    /// The manifest, byte for byte.
    pub manifest: Vec<u8>,
    /// The manifest's media type (an OCI image manifest or a Docker schema 2 manifest).
    pub manifest_media_type: String,
    /// The image config blob.
    pub config: Vec<u8>,
    /// The layer blobs, in manifest order.
    pub layers: Vec<Vec<u8>>,
}

impl Image {
    /// The manifest digest: the image's identity in every registry.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    /// Checks that the manifest is an image manifest naming exactly `config` and `layers`, and
    /// returns every blob with its digest, config first. Registries reject manifests whose
    /// blobs are missing; checking first turns that into a clear error before any upload.
    pub(crate) fn checked_blobs(&self, reference: &str) -> Result<Vec<(Digest, &[u8])>, RegistryError> {
        let invalid = |reason: String| RegistryError::InvalidManifest { reference: reference.to_owned(), reason };
        let parsed = parse_manifest(&self.manifest, Some(&self.manifest_media_type)).map_err(invalid)?;
        let ManifestKind::Image { config, layers } = parsed.kind else {
            return Err(invalid(format!(
                "{} is an index; push its images first and tag the index by digest",
                parsed.media_type
            )));
        };
        if layers.len() != self.layers.len() {
            return Err(invalid(format!(
                "the manifest names {} layers but {} were given",
                layers.len(),
                self.layers.len()
            )));
        }
        let described = std::iter::once((&config, self.config.as_slice()))
            .chain(layers.iter().zip(self.layers.iter().map(Vec::as_slice)));
        let mut blobs = Vec::with_capacity(1 + layers.len());
        for (descriptor, bytes) in described {
            let actual = Digest::of(bytes);
            if actual != descriptor.digest {
                return Err(RegistryError::DigestMismatch {
                    expected: descriptor.digest.to_string(),
                    actual: actual.to_string(),
                });
            }
            if descriptor.size != bytes.len() as u64 {
                return Err(invalid(format!(
                    "blob {} is {} bytes but the manifest says {}",
                    descriptor.digest,
                    bytes.len(),
                    descriptor.size
                )));
            }
            blobs.push((actual, bytes));
        }
        Ok(blobs)
    }
}

/// A manifest as a registry stores it: the exact bytes, which its digest is the hash of, and
/// the media type it is served with.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest, byte for byte.
    pub bytes: Vec<u8>,
    /// Its media type: an image manifest or an index, OCI or Docker.
    pub media_type: String,
}

impl Manifest {
    /// The manifest digest.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.bytes)
    }

    /// Reads what the manifest references; `reference` names it in errors.
    pub(crate) fn parse(&self, reference: &str) -> Result<ParsedManifest, RegistryError> {
        parse_manifest(&self.bytes, Some(&self.media_type))
            .map_err(|reason| RegistryError::InvalidManifest { reference: reference.to_owned(), reason })
    }
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("digest", &self.digest())
            .field("media_type", &self.media_type)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl fmt::Debug for Image {
    // Blobs can be megabytes; their sizes are what is useful in a debug print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("digest", &self.digest())
            .field("manifest_media_type", &self.manifest_media_type)
            .field("config_bytes", &self.config.len())
            .field("layer_bytes", &self.layers.iter().map(Vec::len).collect::<Vec<_>>())
            .finish()
    }
}

/// A content descriptor inside a manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
}

/// What a manifest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ManifestKind {
    /// A single image: a config blob and layer blobs.
    Image { config: Descriptor, layers: Vec<Descriptor> },
    /// An index: child manifests.
    Index { manifests: Vec<Descriptor> },
}

/// A manifest read far enough to know its media type and what it references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedManifest {
    pub(crate) media_type: String,
    pub(crate) kind: ManifestKind,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: String,
    size: u64,
}

impl RawDescriptor {
    fn checked(self) -> Result<Descriptor, String> {
        let digest = Digest::parse(&self.digest)
            .map_err(|_| format!("descriptor digest {:?} is not a sha256 digest", self.digest))?;
        Ok(Descriptor { digest, size: self.size })
    }
}

/// Reads an OCI or Docker schema 2 manifest or index.
///
/// `declared` is the media type the manifest travels with (an HTTP header, an index.json
/// descriptor). OCI manifests may leave out their own `mediaType`; then the declared type, or
/// failing that the shape of the document, decides. A manifest whose body contradicts the
/// declared type is rejected, because registries would store it under the wrong type.
pub(crate) fn parse_manifest(bytes: &[u8], declared: Option<&str>) -> Result<ParsedManifest, String> {
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|error| format!("the manifest is not valid manifest JSON: {error}"))?;
    if raw.schema_version != Some(2) {
        return Err("only schemaVersion 2 manifests are supported".to_owned());
    }
    let media_type = match (raw.media_type.as_deref(), declared) {
        (Some(body), Some(declared)) if body != declared => {
            return Err(format!("the manifest says it is {body} but is declared as {declared}"));
        }
        (Some(body), _) => body.to_owned(),
        (None, Some(declared)) => declared.to_owned(),
        (None, None) if raw.manifests.is_some() => OCI_INDEX_MEDIA_TYPE.to_owned(),
        (None, None) => OCI_MANIFEST_MEDIA_TYPE.to_owned(),
    };
    let kind = match media_type.as_str() {
        OCI_MANIFEST_MEDIA_TYPE | DOCKER_MANIFEST_MEDIA_TYPE => {
            let config = raw.config.ok_or("an image manifest needs a config descriptor")?.checked()?;
            let layers = raw
                .layers
                .ok_or("an image manifest needs a layers array")?
                .into_iter()
                .map(RawDescriptor::checked)
                .collect::<Result<_, _>>()?;
            ManifestKind::Image { config, layers }
        }
        OCI_INDEX_MEDIA_TYPE | DOCKER_MANIFEST_LIST_MEDIA_TYPE => {
            let manifests = raw
                .manifests
                .ok_or("an index needs a manifests array")?
                .into_iter()
                .map(RawDescriptor::checked)
                .collect::<Result<_, _>>()?;
            ManifestKind::Index { manifests }
        }
        other => return Err(format!("unsupported manifest media type {other}")),
    };
    Ok(ParsedManifest { media_type, kind })
}

/// The time stamped on every sample image, so that rebuilding one yields the same bytes.
const SAMPLE_CREATED: &str = "1970-01-01T00:00:00Z";

/// Builds a small but real OCI image (one gzip'd tar layer with a text file, an image config with
/// rootfs.diff_ids and history, an OCI manifest). Labels (e.g. `org.opencontainers.image.revision`)
/// go into the config, so different revisions get different digests while the layer is shared.
/// Must be deterministic: same inputs → same bytes → same digest (fixed mtimes, no gzip timestamp).
///
/// When a label key repeats, the last value wins.
pub fn sample_image(app: &str, labels: &[(&str, &str)]) -> Image {
    let tar = sample_layer_tar(app);
    let diff_id = Digest::of(&tar);
    let layer = gzip(&tar);

    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    // serde_json sorts object keys, which keeps the config bytes stable across runs.
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": SAMPLE_CREATED,
        "config": {
            "Labels": labels,
            "Cmd": ["/bin/cat", "/gantry-sample.txt"],
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{
            "created": SAMPLE_CREATED,
            "created_by": format!("gantry sample image for {app}"),
        }],
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
        "layers": [{
            "mediaType": OCI_LAYER_GZIP_MEDIA_TYPE,
            "digest": Digest::of(&layer),
            "size": layer.len(),
        }],
    })
    .to_string()
    .into_bytes();

    Image { manifest, manifest_media_type: OCI_MANIFEST_MEDIA_TYPE.to_owned(), config, layers: vec![layer] }
}

/// A tar archive with one file whose text names the app. The path is fixed so that no app
/// name can produce an unusual tar entry.
fn sample_layer_tar(app: &str) -> Vec<u8> {
    let text = format!("gantry sample image for {app}\n");
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    let mut builder = tar::Builder::new(Vec::new());
    // Writing to a Vec cannot fail and the entry path is a constant, so these cannot error.
    builder
        .append_data(&mut header, "gantry-sample.txt", text.as_bytes())
        .expect("appending a constant entry to an in-memory tar cannot fail");
    builder.into_inner().expect("finishing an in-memory tar cannot fail")
}

/// Gzip without a file name or timestamp in the header, so equal input gives equal output.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzBuilder::new().mtime(0).write(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("compressing into memory cannot fail");
    encoder.finish().expect("compressing into memory cannot fail")
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn sample_image_is_deterministic() {
        let labels = [("org.opencontainers.image.revision", "abc1234")];
        let first = sample_image("app", &labels);
        let second = sample_image("app", &labels);
        assert_eq!(first, second);
        assert_eq!(first.digest(), second.digest());
    }

    #[test]
    fn revisions_differ_in_config_but_share_the_layer() {
        let one = sample_image("app", &[("org.opencontainers.image.revision", "1111111")]);
        let two = sample_image("app", &[("org.opencontainers.image.revision", "2222222")]);
        assert_ne!(one.digest(), two.digest());
        assert_ne!(one.config, two.config);
        assert_eq!(one.layers, two.layers);

        let other_app = sample_image("other", &[]);
        assert_ne!(other_app.layers, one.layers);
    }

    #[test]
    fn sample_image_is_a_consistent_oci_image() {
        let image = sample_image("team/app", &[("a", "1"), ("a", "2")]);
        let blobs = image.checked_blobs("test").unwrap();
        assert_eq!(blobs.len(), 2);

        let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
        assert_eq!(config["config"]["Labels"]["a"], "2");
        assert_eq!(config["os"], "linux");

        // The diff_id is the digest of the uncompressed layer, as image configs require.
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(image.layers[0].as_slice()).read_to_end(&mut tar).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], Digest::of(&tar).to_string());
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("gantry-sample.txt"));
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        assert_eq!(text, "gantry sample image for team/app\n");
        assert!(entries.next().is_none());
    }

    #[test]
    fn checked_blobs_rejects_blobs_that_do_not_match() {
        let mut image = sample_image("app", &[]);
        image.layers[0].push(0);
        assert!(matches!(image.checked_blobs("test"), Err(RegistryError::DigestMismatch { .. })));

        let mut image = sample_image("app", &[]);
        image.layers.clear();
        assert!(matches!(image.checked_blobs("test"), Err(RegistryError::InvalidManifest { .. })));

        let mut image = sample_image("app", &[]);
        image.manifest_media_type = DOCKER_MANIFEST_MEDIA_TYPE.to_owned();
        assert!(matches!(image.checked_blobs("test"), Err(RegistryError::InvalidManifest { .. })));
    }

    #[test]
    fn parse_manifest_reads_all_four_kinds() {
        let digest = Digest::of(b"x");
        let descriptor = json!({"mediaType": "x", "digest": digest, "size": 1});
        let cases = [
            (json!({"schemaVersion": 2, "config": descriptor, "layers": [descriptor]}), None, OCI_MANIFEST_MEDIA_TYPE),
            (json!({"schemaVersion": 2, "manifests": [descriptor]}), None, OCI_INDEX_MEDIA_TYPE),
            (
                json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_MEDIA_TYPE,
                       "config": descriptor, "layers": []}),
                None,
                DOCKER_MANIFEST_MEDIA_TYPE,
            ),
            (
                json!({"schemaVersion": 2, "manifests": []}),
                Some(DOCKER_MANIFEST_LIST_MEDIA_TYPE),
                DOCKER_MANIFEST_LIST_MEDIA_TYPE,
            ),
        ];
        for (document, declared, expected) in cases {
            let bytes = document.to_string().into_bytes();
            let parsed = parse_manifest(&bytes, declared).unwrap();
            assert_eq!(parsed.media_type, expected);
        }
    }

    #[test]
    fn parse_manifest_rejects_what_it_cannot_handle() {
        let digest = Digest::of(b"x");
        let descriptor = json!({"digest": digest, "size": 1});
        let cases = [
            (json!({"schemaVersion": 1, "fsLayers": []}), None),
            (json!({"schemaVersion": 2, "mediaType": "text/plain"}), None),
            (json!({"schemaVersion": 2, "layers": [descriptor]}), None),
            (json!({"schemaVersion": 2, "config": {"digest": "md5:x", "size": 1}, "layers": []}), None),
            (
                json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST_MEDIA_TYPE,
                       "config": descriptor, "layers": []}),
                Some(DOCKER_MANIFEST_MEDIA_TYPE),
            ),
        ];
        for (document, declared) in cases {
            let bytes = document.to_string().into_bytes();
            assert!(parse_manifest(&bytes, declared).is_err(), "{document} must be rejected");
        }
        assert!(parse_manifest(b"not json", None).is_err());
    }
}
