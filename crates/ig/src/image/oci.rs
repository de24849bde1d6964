//! Serde types for the OCI JSON documents a gadget image is made of
//! (descriptor, image manifest, image index, platform) and the media types
//! and annotation keys involved.
//!
//! Owns: the wire format only. Does not own: where documents are stored or
//! how they are verified (`store`), nor what the config blob means (it is an
//! opaque `gadget.yaml` here).
//!
//! Field order follows the Go structs of the OCI image-spec so that our JSON
//! reads like upstream's; annotations are `BTreeMap`s so output is
//! deterministic (Go also sorts map keys). Unknown fields are ignored on
//! input, and every optional field defaults, because documents written by
//! other tools (oras, skopeo, upstream `ig`) must load.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

/// `mediaType` of an OCI image manifest.
pub const MEDIA_TYPE_IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `mediaType` of an OCI image index.
pub const MEDIA_TYPE_IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI empty descriptor's media type (content `{}`).
pub const MEDIA_TYPE_EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";
/// Docker's manifest list / manifest: accepted when reading, never written.
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's image manifest: accepted when reading, never written.
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// `artifactType` of a gadget manifest.
pub const ARTIFACT_TYPE_GADGET: &str = "application/vnd.gadget.v1+binary";
/// Config blob: the raw `gadget.yaml`.
pub const MEDIA_TYPE_GADGET_CONFIG: &str = "application/vnd.gadget.config.v1+yaml";
/// Layer: the eBPF ELF object.
pub const MEDIA_TYPE_GADGET_EBPF: &str = "application/vnd.gadget.ebpf.program.v1+binary";
/// Layer: the WASM module.
pub const MEDIA_TYPE_GADGET_WASM: &str = "application/vnd.gadget.wasm.program.v1+binary";
/// Layer: a tar.gz of minimized BTF files (btfgen).
pub const MEDIA_TYPE_GADGET_BTFGEN: &str = "application/vnd.gadget.btfgen.v1+binary";

/// The bytes of the OCI empty blob.
pub const EMPTY_JSON: &[u8] = b"{}";

/// Annotation naming a tag in an image layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// When the image was made (RFC 3339).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// The image's title (the gadget's name).
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// The image's description.
pub const ANNOTATION_DESCRIPTION: &str = "org.opencontainers.image.description";
/// The gadget's homepage.
pub const ANNOTATION_URL: &str = "org.opencontainers.image.url";
/// The gadget's documentation.
pub const ANNOTATION_DOCUMENTATION: &str = "org.opencontainers.image.documentation";
/// The gadget's source.
pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";
/// The `ig` version that built the image (upstream warns on mismatch).
pub const ANNOTATION_BUILDER_VERSION: &str = "io.inspektor-gadget.builder.version";

/// Content of the `oci-layout` file.
pub const IMAGE_LAYOUT_VERSION: &str = "1.0.0";

/// Annotations: sorted so that serialized JSON (and so digests) are stable.
pub type Annotations = BTreeMap<String, String>;

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is.
    pub media_type: String,
    /// The content's digest.
    pub digest: Digest,
    /// The content's size in bytes.
    pub size: u64,
    /// Where else it may be downloaded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Annotations (in an index: `org.opencontainers.image.ref.name`...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: Annotations,
    /// Embedded content, base64 (the empty descriptor carries `e30=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The platform of a manifest in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type of the content it points to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor for `bytes` with the given media type (sha256).
    pub fn for_bytes(media_type: &str, bytes: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: Digest::sha256_of(bytes),
            size: bytes.len() as u64,
            urls: Vec::new(),
            annotations: Annotations::new(),
            data: None,
            platform: None,
            artifact_type: None,
        }
    }

    /// The OCI empty descriptor, `{}` inlined as `data`, as upstream uses
    /// for the config of an image built without metadata.
    pub fn empty_json() -> Self {
        Descriptor {
            data: Some("e30=".to_owned()),
            ..Descriptor::for_bytes(MEDIA_TYPE_EMPTY_JSON, EMPTY_JSON)
        }
    }

    /// True for the OCI empty descriptor. Decided by media type alone: a
    /// container image config may also be `{}`, and must not pass for an
    /// absent gadget config.
    pub fn is_empty_json(&self) -> bool {
        self.media_type == MEDIA_TYPE_EMPTY_JSON
    }

    /// The value of `org.opencontainers.image.ref.name`, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
    }
}

/// Platform of a manifest in an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// The CPU architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// The operating system (`linux`).
    pub os: String,
    /// `os.version`.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// `os.features`.
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// The CPU variant (`v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/<arch>`.
    pub fn linux(architecture: &str) -> Self {
        Platform {
            architecture: architecture.to_owned(),
            os: "linux".to_owned(),
            os_version: None,
            os_features: Vec::new(),
            variant: None,
        }
    }
}

/// An OCI image manifest.
///
/// `media_type` is optional: upstream `ig` omits it from the body (the spec
/// only says SHOULD), so a reader must not require it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// `application/vnd.oci.image.manifest.v1+json`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// What the image is (a gadget: `application/vnd.gadget.v1+binary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob (a gadget's: `gadget.yaml`).
    pub config: Descriptor,
    /// The layers (eBPF object, WASM module...).
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (a signature's image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: Annotations,
}

/// An OCI image index. Also the shape of an image layout's `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// `application/vnd.oci.image.index.v1+json`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// What the artifact is, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifests (one per platform; in a layout, one per tag).
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// The manifest this index refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: Annotations,
}

impl Index {
    /// An image index of `manifests` (schema 2, its media type given),
    /// as ig writes them: a multi-platform image, a layout's
    /// `index.json`, a referrers index.
    pub fn of(manifests: Vec<Descriptor>, annotations: Annotations) -> Self {
        Self {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_IMAGE_INDEX.to_owned()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations,
        }
    }
}

/// The `oci-layout` marker file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageLayout {
    /// `1.0.0`.
    pub image_layout_version: String,
}

/// What a top-level JSON blob turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopLevel {
    /// An image index (one manifest per platform).
    Index(Box<Index>),
    /// An image manifest.
    Manifest(Box<Manifest>),
}

/// Parses a blob that should be an index or a manifest. The descriptor's
/// media type decides when it is one of the known ones; otherwise (or when
/// the body says something else) the body's own `mediaType`, then its
/// shape (`manifests` vs `config`) decides.
pub fn parse_top_level(
    descriptor_media_type: &str,
    bytes: &[u8],
) -> Result<TopLevel, serde_json::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde::de::IgnoredAny>,
    }
    let is_index_type =
        |t: &str| t == MEDIA_TYPE_IMAGE_INDEX || t == MEDIA_TYPE_DOCKER_MANIFEST_LIST;
    let is_manifest_type =
        |t: &str| t == MEDIA_TYPE_IMAGE_MANIFEST || t == MEDIA_TYPE_DOCKER_MANIFEST;

    let index = if is_index_type(descriptor_media_type) {
        true
    } else if is_manifest_type(descriptor_media_type) {
        false
    } else {
        let probe: Probe = serde_json::from_slice(bytes)?;
        match probe.media_type.as_deref() {
            Some(t) if is_index_type(t) => true,
            Some(t) if is_manifest_type(t) => false,
            _ => probe.manifests.is_some(),
        }
    };
    if index {
        serde_json::from_slice(bytes).map(|i| TopLevel::Index(Box::new(i)))
    } else {
        serde_json::from_slice(bytes).map(|m| TopLevel::Manifest(Box::new(m)))
    }
}

/// The manifest of `index` for `architecture`: the first entry whose
/// platform names it exactly (upstream matches `GOARCH` the same way,
/// without variants).
pub fn pick_platform<'a>(index: &'a Index, architecture: &str) -> Option<&'a Descriptor> {
    index.manifests.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.architecture == architecture)
    })
}

/// The architectures `index` has manifests for, in index order.
pub fn architectures(index: &Index) -> Vec<String> {
    index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| p.architecture.clone())
        .collect()
}

/// Maps a Rust `target_arch` name to the GOARCH-style name OCI platforms use.
pub fn oci_architecture(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        // arm, riscv64, s390x, mips64 … are spelled the same.
        other => other,
    }
}

/// The OCI architecture of the machine we run on.
pub fn host_architecture() -> &'static str {
    oci_architecture(std::env::consts::ARCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_descriptor_is_the_well_known_one() {
        let d = Descriptor::empty_json();
        assert_eq!(
            d.digest.to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(d.size, 2);
        assert!(d.is_empty_json());
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"data":"e30="}"#
        );
    }

    #[test]
    fn manifest_without_media_type_parses() {
        let json = r#"{"schemaVersion":2,"artifactType":"application/vnd.gadget.v1+binary",
            "config":{"mediaType":"application/vnd.gadget.config.v1+yaml","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},
            "layers":[],"unknownField":1}"#;
        let m: Manifest = serde_json::from_str(json).unwrap();
        assert_eq!(m.media_type, None);
        assert_eq!(m.artifact_type.as_deref(), Some(ARTIFACT_TYPE_GADGET));
        // Shape-based detection when neither descriptor nor body say.
        assert!(matches!(
            parse_top_level("application/octet-stream", json.as_bytes()).unwrap(),
            TopLevel::Manifest(_)
        ));
        assert!(matches!(
            parse_top_level("", br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            TopLevel::Index(_)
        ));
    }

    #[test]
    fn platform_field_names() {
        let p = Platform {
            os_version: Some("10".into()),
            ..Platform::linux("arm64")
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"architecture":"arm64","os":"linux","os.version":"10"}"#
        );
    }

    #[test]
    fn architectures() {
        assert_eq!(oci_architecture("x86_64"), "amd64");
        assert_eq!(oci_architecture("aarch64"), "arm64");
        assert_eq!(oci_architecture("riscv64"), "riscv64");
        assert!(!host_architecture().is_empty());
    }
}
