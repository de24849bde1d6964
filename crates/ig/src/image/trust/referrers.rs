//! The OCI 1.1 forms of cosign signatures: signatures stored as
//! *referrers* of the image (manifests whose `subject` is the image
//! index), found through the registry's referrers API or, on registries
//! without it, through the referrers tag schema of the OCI distribution
//! spec 1.1 (an image index tagged `sha256-<hex>` listing them).
//!
//! Two kinds of referrer are signatures, the two upstream `ig` reads:
//! - cosign's OCI 1.1 signature (`cosign sign
//!   --registry-referrers-mode=oci-1-1`): a manifest whose config media
//!   type (and artifact type) is `application/vnd.dev.cosign.artifact.sig.v1+json`,
//!   with the same simple-signing layers as the `.sig` tag;
//! - a sigstore bundle (`cosign sign --new-bundle-format`): a manifest of
//!   artifact type `application/vnd.dev.sigstore.bundle.v0.3+json` whose
//!   one layer is the bundle, holding a DSSE envelope around an in-toto
//!   statement whose subject is the image digest. The DSSE signature
//!   covers the envelope's pre-authentication encoding (PAE), not the
//!   payload alone.
//!
//! In the store, an image's signature referrers live as they do in the
//! tag schema: an image index tagged `<repository>:sha256-<hex>` whose
//! entries are the referrer manifests ([`referrers_tag`]), so one local
//! form serves both discovery paths, and a push writes exactly that tag.
//!
//! Pure: bytes in, bytes out. Other referrers (notation signatures, SBOMs)
//! are not ours to read and are skipped.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use super::{SignatureLayer, TrustError};
use crate::image::digest::Digest;
use crate::image::oci::{
    Annotations, Descriptor, EMPTY_JSON, Index, MEDIA_TYPE_EMPTY_JSON, MEDIA_TYPE_IMAGE_INDEX,
    MEDIA_TYPE_IMAGE_MANIFEST, Manifest,
};

/// Artifact type (and config media type) of cosign's OCI 1.1 signature.
pub const ARTIFACT_TYPE_COSIGN_SIGNATURE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// Media type of a sigstore bundle, v0.3 (what `cosign sign
/// --new-bundle-format` writes); also the referrer's artifact type.
pub const MEDIA_TYPE_SIGSTORE_BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";
/// The in-toto predicate type of `cosign sign`'s bundles. Attestations
/// (`cosign attest`: SBOMs, provenance) use the same bundle with other
/// predicate types; they say something about an image, they do not vouch
/// for it, so they are not taken as signatures.
pub const PREDICATE_TYPE_COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";
/// Most signature referrers of one image we read: a registry lists what
/// it has, and a hostile one should not make us fetch without end.
pub const MAX_REFERRERS: usize = 64;
/// Largest bundle we parse: cosign's are a few KiB (a Rekor inclusion
/// proof included).
pub const MAX_BUNDLE: u64 = 1 << 20;

/// The tag of the referrers index of `digest` in the OCI 1.1 tag schema:
/// `sha256-<hex>`.
pub fn referrers_tag(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm().as_str(), digest.hex())
}

/// How a signature was stored: the forms cosign writes and upstream
/// reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SignatureForm {
    /// cosign's tag `sha256-<hex>.sig` (its default, and upstream's).
    Tag,
    /// An OCI 1.1 referrer holding simple-signing layers.
    Referrer,
    /// An OCI 1.1 referrer holding a sigstore bundle (DSSE).
    Bundle,
}

impl SignatureForm {
    /// For messages: `tag sha256-<hex>.sig`, `OCI 1.1 referrer`, …
    pub fn describe(self) -> &'static str {
        match self {
            SignatureForm::Tag => "cosign signature tag (sha256-<hex>.sig)",
            SignatureForm::Referrer => "OCI 1.1 referrer (cosign simple signing)",
            SignatureForm::Bundle => "OCI 1.1 referrer (sigstore bundle, DSSE)",
        }
    }

    /// The name `--form` takes (`ig image sign`).
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureForm::Tag => "tag",
            SignatureForm::Referrer => "referrer",
            SignatureForm::Bundle => "bundle",
        }
    }
}

/// What a signature signs, with its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// A simple-signing payload and its signature (tag and referrer
    /// forms).
    Simple(SignatureLayer),
    /// A DSSE envelope (bundle form): the signature covers
    /// [`pae`]`(payload_type, payload)`.
    Dsse {
        /// The envelope's `payloadType`.
        payload_type: String,
        /// The decoded payload (an in-toto statement).
        payload: Vec<u8>,
        /// The base64 DER ECDSA signature.
        signature: String,
    },
}

/// One signature found for an image, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundSignature {
    /// Its form.
    pub form: SignatureForm,
    /// Where it was found: the signature image's name, or the referrer's
    /// digest.
    pub source: String,
    /// The signature.
    pub signed: Signed,
}

/// DSSE's pre-authentication encoding: what a DSSE signature covers.
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in
/// ASCII decimal bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: Option<String>,
    dsse_envelope: Option<Envelope>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[cfg(feature = "signing")]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(default)]
    subject: Vec<Subject>,
    #[serde(default)]
    predicate_type: String,
}

#[cfg(feature = "signing")]
#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// Reads a sigstore bundle: its DSSE envelope's signatures. A bundle
/// without an envelope (a `messageSignature`, which signs a blob digest,
/// not an image) is refused, as upstream does.
pub fn parse_bundle(bytes: &[u8]) -> Result<Vec<Signed>, String> {
    let b: Bundle =
        serde_json::from_slice(bytes).map_err(|e| format!("bundle is not JSON: {e}"))?;
    if let Some(t) = &b.media_type
        && !t.starts_with("application/vnd.dev.sigstore.bundle")
    {
        return Err(format!("bundle media type is {t:?}"));
    }
    let env = b
        .dsse_envelope
        .ok_or("bundle has no DSSE envelope (a message signature does not sign an image)")?;
    let payload = BASE64
        .decode(env.payload.as_bytes())
        .map_err(|e| format!("DSSE payload is not base64: {e}"))?;
    if env.signatures.is_empty() {
        return Err("DSSE envelope holds no signature".into());
    }
    Ok(env
        .signatures
        .into_iter()
        .map(|s| Signed::Dsse {
            payload_type: env.payload_type.clone(),
            payload: payload.clone(),
            signature: s.sig,
        })
        .collect())
}

#[cfg(feature = "signing")]
/// Checks what a verified DSSE payload says: an in-toto statement of
/// `cosign sign` whose subjects include `digest`.
pub(super) fn check_statement(
    payload_type: &str,
    payload: &[u8],
    digest: &Digest,
) -> Result<(), String> {
    if payload_type != PAYLOAD_TYPE_IN_TOTO {
        return Err(format!(
            "DSSE payload type is {payload_type:?}, not {PAYLOAD_TYPE_IN_TOTO:?}"
        ));
    }
    let s: Statement = serde_json::from_slice(payload)
        .map_err(|e| format!("DSSE payload is not an in-toto statement: {e}"))?;
    if s.predicate_type != PREDICATE_TYPE_COSIGN_SIGN {
        return Err(format!(
            "in-toto predicate type is {:?}, not {PREDICATE_TYPE_COSIGN_SIGN:?} (an attestation, not a signature)",
            s.predicate_type
        ));
    }
    let algorithm = digest.algorithm().as_str();
    let hex = digest.hex();
    if s.subject
        .iter()
        .any(|x| x.digest.get(algorithm).is_some_and(|h| h == hex))
    {
        return Ok(());
    }
    let named: Vec<String> = s
        .subject
        .iter()
        .flat_map(|x| x.digest.iter().map(|(a, h)| format!("{a}:{h}")))
        .collect();
    Err(format!("signs another image: {}", named.join(", ")))
}

/// The signatures a referrer manifest holds (none if it is another kind
/// of referrer). `blob` reads a (verified) blob by descriptor.
pub fn referrer_signatures(
    digest: &Digest,
    manifest_bytes: &[u8],
    mut blob: impl FnMut(&Descriptor) -> Option<Vec<u8>>,
) -> Result<Vec<FoundSignature>, TrustError> {
    let malformed = |message: String| TrustError::MalformedSignatureImage {
        digest: digest.clone(),
        message,
    };
    let manifest = super::signature_manifest(digest, manifest_bytes)?;
    let mut out = Vec::new();
    let source = format!("referrer {digest}");
    for layer in &manifest.layers {
        if let Some(l) = super::simple_signing_layer(digest, layer, &mut blob)? {
            out.push(FoundSignature {
                form: SignatureForm::Referrer,
                source: source.clone(),
                signed: Signed::Simple(l),
            });
        } else if layer.media_type == MEDIA_TYPE_SIGSTORE_BUNDLE {
            if layer.size > MAX_BUNDLE {
                return Err(malformed(format!(
                    "bundle {} is {} bytes, more than {MAX_BUNDLE}",
                    layer.digest, layer.size
                )));
            }
            let bytes = blob(layer)
                .ok_or_else(|| malformed(format!("bundle {} is missing", layer.digest)))?;
            for signed in parse_bundle(&bytes)
                .map_err(|e| malformed(format!("bundle {}: {e}", layer.digest)))?
            {
                out.push(FoundSignature {
                    form: SignatureForm::Bundle,
                    source: source.clone(),
                    signed,
                });
            }
        }
    }
    Ok(out)
}

/// Whether a referrers-list entry may be a signature we read: its
/// artifact type says so, or says nothing useful (the tag schema written
/// by some tools records the config's media type, `application/vnd.oci.empty.v1+json`,
/// for bundles). Notation signatures, SBOMs and the like are skipped
/// without being fetched.
pub fn may_be_signature(artifact_type: Option<&str>) -> bool {
    match artifact_type {
        None => true,
        Some(t) => {
            t == ARTIFACT_TYPE_COSIGN_SIGNATURE
                || t == MEDIA_TYPE_SIGSTORE_BUNDLE
                || t == MEDIA_TYPE_EMPTY_JSON
                || t.is_empty()
        }
    }
}

/// A referrer document ready for the store: its descriptor (as listed in
/// the referrers index, artifact type set) and the blobs under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    /// The manifest's descriptor, with `artifactType`.
    pub descriptor: Descriptor,
    /// The manifest, then its config and layers.
    pub blobs: Vec<Vec<u8>>,
}

/// cosign's OCI 1.1 signature manifest of the image `subject`, holding
/// `layers` (as `cosign sign --registry-referrers-mode=oci-1-1` writes
/// it: config media type and artifact type
/// `application/vnd.dev.cosign.artifact.sig.v1+json`, config the same
/// small image config as the tag form).
pub fn referrer_signature(subject: &Descriptor, layers: &[SignatureLayer]) -> Referrer {
    // The tag form's manifest, re-typed: same layers, same config bytes.
    let (mut manifest, blobs) = super::signature_manifest_of(layers);
    manifest.config.media_type = ARTIFACT_TYPE_COSIGN_SIGNATURE.to_owned();
    manifest.subject = Some(subject_of(subject));
    finish(manifest, blobs, ARTIFACT_TYPE_COSIGN_SIGNATURE)
}

/// A sigstore bundle referrer of the image `subject`, laid out as cosign
/// writes one: empty config, the bundle as only layer, artifact type
/// [`MEDIA_TYPE_SIGSTORE_BUNDLE`], and cosign's annotations.
/// `bundle` is the bundle's JSON.
pub fn referrer_bundle(subject: &Descriptor, bundle: Vec<u8>, created: &str) -> Referrer {
    let layer = Descriptor::for_bytes(MEDIA_TYPE_SIGSTORE_BUNDLE, &bundle);
    let mut config = Descriptor::for_bytes(MEDIA_TYPE_EMPTY_JSON, EMPTY_JSON);
    config.artifact_type = Some(MEDIA_TYPE_SIGSTORE_BUNDLE.to_owned());
    let mut annotations = Annotations::new();
    annotations.insert("dev.sigstore.bundle.content".into(), "dsse-envelope".into());
    annotations.insert(
        "dev.sigstore.bundle.predicateType".into(),
        PREDICATE_TYPE_COSIGN_SIGN.into(),
    );
    annotations.insert("org.opencontainers.image.created".into(), created.into());
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_IMAGE_MANIFEST.to_owned()),
        artifact_type: Some(MEDIA_TYPE_SIGSTORE_BUNDLE.to_owned()),
        config,
        layers: vec![layer],
        subject: Some(subject_of(subject)),
        annotations,
    };
    finish(
        manifest,
        vec![EMPTY_JSON.to_vec(), bundle],
        MEDIA_TYPE_SIGSTORE_BUNDLE,
    )
}

/// The bundle `cosign sign --new-bundle-format --key` writes for the
/// image `digest`, signed by `sign` (which returns the base64 signature of
/// the bytes it is given): a DSSE envelope around cosign's in-toto
/// statement, the key named by its hint (base64 SHA-256 of its DER
/// form). No transparency-log entry: that is Rekor's, and ig does not
/// read it.
pub fn bundle(digest: &Digest, key_hint: &str, sign: impl FnOnce(&[u8]) -> String) -> Vec<u8> {
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {digest.algorithm().as_str(): digest.hex()}}],
        "predicateType": PREDICATE_TYPE_COSIGN_SIGN,
    });
    let payload = serde_json::to_vec(&statement).unwrap_or_default();
    let sig = sign(&pae(PAYLOAD_TYPE_IN_TOTO, &payload));
    let doc = serde_json::json!({
        "mediaType": MEDIA_TYPE_SIGSTORE_BUNDLE,
        "verificationMaterial": {"publicKey": {"hint": key_hint}},
        "dsseEnvelope": {
            "payload": BASE64.encode(&payload),
            "payloadType": PAYLOAD_TYPE_IN_TOTO,
            "signatures": [{"sig": sig}],
        },
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

fn subject_of(d: &Descriptor) -> Descriptor {
    Descriptor {
        annotations: Annotations::new(),
        platform: None,
        urls: Vec::new(),
        data: None,
        artifact_type: None,
        ..d.clone()
    }
}

fn finish(manifest: Manifest, mut blobs: Vec<Vec<u8>>, artifact_type: &str) -> Referrer {
    let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    let mut descriptor = Descriptor::for_bytes(MEDIA_TYPE_IMAGE_MANIFEST, &bytes);
    descriptor.artifact_type = Some(artifact_type.to_owned());
    blobs.insert(0, bytes);
    Referrer { descriptor, blobs }
}

/// The referrers index (tag schema) listing `entries`, in order, without
/// duplicates: its descriptor and bytes.
pub fn referrers_index(entries: &[Descriptor]) -> (Descriptor, Vec<u8>) {
    let mut manifests: Vec<Descriptor> = Vec::new();
    for e in entries {
        if !manifests.iter().any(|m| m.digest == e.digest) {
            manifests.push(e.clone());
        }
    }
    let index = Index::of(manifests, Annotations::new());
    let bytes = serde_json::to_vec(&index).unwrap_or_default();
    (Descriptor::for_bytes(MEDIA_TYPE_IMAGE_INDEX, &bytes), bytes)
}
