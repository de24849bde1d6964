//! Image signatures in cosign's format, and the policy `ig run` applies.
//!
//! Owns, all pure (bytes in, bytes out; no files, no network, no store):
//! - the "simple signing" payload cosign signs: a JSON document naming the
//!   repository (`critical.identity.docker-reference`) and the digest of
//!   the signed image (`critical.image.docker-manifest-digest`);
//! - keys: ECDSA P-256 private keys as PEM (`PRIVATE KEY` PKCS#8 and
//!   `EC PRIVATE KEY` SEC1, as openssl writes them) and public keys as
//!   `PUBLIC KEY` PEM (what `cosign.pub` is), several per file;
//! - signing (ECDSA P-256 over SHA-256 of the payload bytes, the signature
//!   ASN.1 DER encoded, then base64) and verifying;
//! - the signature image: an OCI manifest whose config is a small OCI image
//!   config and whose layers (media type
//!   `application/vnd.dev.cosign.simplesigning.v1+json`) are payloads, each
//!   carrying its signature in the annotation
//!   `dev.cosignproject.cosign/signature`. It is stored in the same
//!   repository as the image under the tag `sha256-<hex>.sig` ([`signature_tag`]),
//!   which is cosign's tag-based discovery, so `cosign verify --key` can
//!   check what `ig image sign` wrote and ig can check what `cosign sign`
//!   wrote;
//! - the run policy: which images must be verified, and `--allowed-gadgets`.
//!
//! The signed digest is that of the image's top-level document, the image
//! index (what the tag names in the registry and in the store), as upstream
//! `ig` verifies. `docker-reference` is written but not enforced on
//! verification (cosign does not either): a signature binds a key to a
//! digest, so an image keeps its signature when it is tagged into another
//! repository before a push.
//!
//! Does not own: where signature images live (`store`), moving them
//! (`registry`, `archive`), reading key files or passwords (`cli`).
//! cosign's own private keys (`cosign generate-key-pair`: PEM `ENCRYPTED
//! SIGSTORE PRIVATE KEY`, a JSON document holding a PKCS#8 key sealed with
//! NaCl secretbox under a key derived from the password by scrypt) are read
//! too, given the password.
//!
//! Forms: besides the `.sig` tag, an image's signatures may be OCI 1.1
//! referrers, cosign's simple-signing manifest or a sigstore bundle
//! ([`referrers`]); [`verify_found`] takes them all, and says which key
//! and which form verified.
//!
//! Trust root: [`UPSTREAM_PUBLIC_KEY`], the public key upstream Inspektor
//! Gadget signs its images with, is the key `ig run` verifies with when
//! no `--public-keys` is given (as upstream's own default; a key given
//! replaces it, as upstream's flag does).
//!
//! Not supported: cosign's keyless signatures (Fulcio certificates) and
//! the transparency-log entries (Rekor) that cosign attaches: with a key,
//! the signature is what is checked, as upstream `ig` checks it.

use std::collections::BTreeMap;

#[cfg(feature = "signing")]
use base64::Engine as _;
#[cfg(feature = "signing")]
use base64::engine::general_purpose::STANDARD as BASE64;
#[cfg(feature = "signing")]
use p256::ecdsa::signature::{Signer as _, Verifier as _};
#[cfg(feature = "signing")]
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
#[cfg(feature = "signing")]
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::oci::{Annotations, Descriptor, MEDIA_TYPE_IMAGE_MANIFEST, Manifest};
use super::reference::Reference;

pub mod referrers;
pub use referrers::{FoundSignature, SignatureForm, Signed, referrers_tag};

/// The public key upstream Inspektor Gadget signs its gadget images with
/// (`cosign sign --key`), the default trust root of `ig run`. A public
/// key is data, not code: it is the PEM of upstream's
/// `pkg/resources/inspektor-gadget.pub` (which upstream embeds as the
/// default of its `--public-keys`), copied as is into
/// `trust/inspektor-gadget.pub`.
pub const UPSTREAM_PUBLIC_KEY: &str = include_str!("trust/inspektor-gadget.pub");
/// How [`UPSTREAM_PUBLIC_KEY`] is named in messages.
pub const UPSTREAM_KEY_NAME: &str = "the built-in key of upstream Inspektor Gadget";

/// Media type of a signature layer (the payload).
pub const MEDIA_TYPE_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 DER signature of the payload.
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// Media type of the signature image's config.
pub const MEDIA_TYPE_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `critical.type` of the payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// Largest payload we parse: cosign's are a few hundred bytes.
pub const MAX_PAYLOAD: u64 = 64 << 10;

/// Why signing or verifying failed, or a trust rule is malformed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A PEM key cannot be read.
    #[error("{source_name}: {message}")]
    Pem {
        /// Where the key came from (a file, or the text given).
        source_name: String,
        /// What went wrong.
        message: String,
    },

    /// No key of the kind needed was found.
    #[error("{source_name}: no {what} found (expected a PEM block such as -----BEGIN {what}-----)")]
    NoKey {
        /// Where the key came from (a file, or the text given).
        source_name: String,
        /// The PEM label looked for.
        what: &'static str,
    },

    /// A key that is not ECDSA P-256.
    #[error(
        "{source_name}: {label} is not an ECDSA P-256 key ({detail}); cosign key pairs and `openssl ecparam -name prime256v1` keys are"
    )]
    UnsupportedKey {
        /// Where the key came from (a file, or the text given).
        source_name: String,
        /// Its PEM label.
        label: String,
        /// What it is.
        detail: String,
    },

    /// `source_name`: cannot read cosign's encrypted key.
    #[error("{source_name}: cannot read cosign's encrypted key: {message}")]
    CosignKey {
        /// Where the key came from (a file, or the text given).
        source_name: String,
        /// What went wrong.
        message: String,
    },

    /// `source_name`: cannot decrypt cosign's key.
    #[error(
        "{source_name}: cannot decrypt cosign's key: wrong password (it is read from COSIGN_PASSWORD)"
    )]
    WrongPassword {
        /// Where the key came from (a file, or the text given).
        source_name: String,
    },

    /// `source_name`: encrypted PEM keys (`label`) are not supported.
    #[error(
        "{source_name}: encrypted PEM keys ({label}) are not supported; decrypt it first (`openssl pkey -in KEY -out plain.pem`)"
    )]
    EncryptedPem {
        /// Where the key came from (a file, or the text given).
        source_name: String,
        /// The label.
        label: String,
    },

    /// Malformed signature image `digest`.
    #[error("malformed signature image {digest}: {message}")]
    MalformedSignatureImage {
        /// The digest.
        digest: Digest,
        /// What went wrong.
        message: String,
    },

    /// Image `reference` (`digest`) is not signed.
    #[error(
        "image {reference} ({digest}) is not signed: there is no signature for it (neither the tag {tag} nor an OCI 1.1 referrer){where_}"
    )]
    Unsigned {
        /// The image reference.
        reference: String,
        /// The digest.
        digest: Digest,
        /// The signature tag looked for.
        tag: String,
        /// " in the local store", or where else was looked.
        where_: String,
    },

    /// Image `reference` (`digest`) failed signature verification.
    #[error(
        "image {reference} ({digest}) failed signature verification: {}",
        reasons.join("; ")
    )]
    Untrusted {
        /// The image reference.
        reference: String,
        /// The digest.
        digest: Digest,
        /// Why, one reason per key or signature.
        reasons: Vec<String>,
    },

    /// `digest` is `None` when the image was refused by its name alone,
    /// before it was pulled or read.
    #[error(
        "image {reference}{} is not in --allowed-gadgets ({})",
        digest.as_ref().map(|d| format!(" ({d})")).unwrap_or_default(),
        allowed.join(", ")
    )]
    NotAllowed {
        /// The image.
        reference: String,
        /// Its digest, if it was read.
        digest: Option<Digest>,
        /// The `--allowed-gadgets` entries.
        allowed: Vec<String>,
    },

    /// --allowed-gadgets entry `entry`.
    #[error("--allowed-gadgets entry {entry:?}: {message}")]
    BadAllowEntry {
        /// The entry.
        entry: String,
        /// What went wrong.
        message: String,
    },
}

// ------------------------------------------------------------------ payload

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SimpleSigning {
    critical: Critical,
    optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Critical {
    identity: Identity,
    image: ImageId,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ImageId {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// What a payload says, once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadClaims {
    /// `critical.identity.docker-reference`: the repository signed.
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`: the digest signed.
    pub digest: String,
    /// `critical.type`: cosign's signature type.
    pub kind: String,
}

/// The payload cosign signs for `digest` in `repository` (no tag, no
/// digest: `ghcr.io/org/gadget`). Fields in cosign's order, no
/// whitespace, `optional` null.
pub fn payload(repository: &str, digest: &Digest) -> Vec<u8> {
    let doc = SimpleSigning {
        critical: Critical {
            identity: Identity {
                docker_reference: repository.to_owned(),
            },
            image: ImageId {
                docker_manifest_digest: digest.to_string(),
            },
            kind: PAYLOAD_TYPE.to_owned(),
        },
        optional: None,
    };
    // Strings and a null only: serializing cannot fail.
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// Parses a payload. Unknown fields are allowed (cosign adds some under
/// `optional`, and annotations).
pub fn parse_payload(bytes: &[u8]) -> Result<PayloadClaims, String> {
    let doc: SimpleSigning = serde_json::from_slice(bytes)
        .map_err(|e| format!("payload is not simple signing JSON: {e}"))?;
    Ok(PayloadClaims {
        docker_reference: doc.critical.identity.docker_reference,
        digest: doc.critical.image.docker_manifest_digest,
        kind: doc.critical.kind,
    })
}

/// The tag of the signature image of `digest`: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm().as_str(), digest.hex())
}

/// `repository:sha256-<hex>.sig`: where the signature of the image `image`
/// (whose top-level digest is `digest`) lives, cosign's tag-based
/// discovery.
pub fn signature_reference(
    image: &Reference,
    digest: &Digest,
) -> Result<Reference, super::reference::ReferenceError> {
    image.with_tag(&signature_tag(digest))
}

// --------------------------------------------------------------------- keys

#[cfg(feature = "signing")]
/// One PEM block: its label and decoded body.
struct PemBlock {
    label: String,
    headers: bool,
    der: Vec<u8>,
}

#[cfg(feature = "signing")]
/// Splits `text` into PEM blocks (text around them is ignored, as openssl
/// does). A block whose base64 does not decode is an error.
fn pem_blocks(text: &str, source_name: &str) -> Result<Vec<PemBlock>, TrustError> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut headers = false;
        let mut closed = false;
        for l in lines.by_ref() {
            if l == end {
                closed = true;
                break;
            }
            if l.contains(':') {
                headers = true;
            } else {
                body.push_str(l);
            }
        }
        if !closed {
            return Err(TrustError::Pem {
                source_name: source_name.to_owned(),
                message: format!("PEM block {label} has no END line"),
            });
        }
        let der = BASE64
            .decode(body.as_bytes())
            .map_err(|e| TrustError::Pem {
                source_name: source_name.to_owned(),
                message: format!("PEM block {label}: bad base64: {e}"),
            })?;
        out.push(PemBlock {
            label: label.to_owned(),
            headers,
            der,
        });
    }
    Ok(out)
}

#[cfg(feature = "signing")]
/// A private key to sign with.
pub struct PrivateKey {
    key: SigningKey,
}

#[cfg(feature = "signing")]
impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(P-256, redacted)")
    }
}

#[cfg(feature = "signing")]
impl PrivateKey {
    /// Reads the first private key of a PEM file. `source_name` (a path)
    /// only appears in errors. A cosign key is tried with the empty
    /// password.
    pub fn from_pem(text: &str, source_name: &str) -> Result<Self, TrustError> {
        Self::from_pem_with_password(text, source_name, b"")
    }

    /// [`PrivateKey::from_pem`] with the password of a cosign key.
    pub fn from_pem_with_password(
        text: &str,
        source_name: &str,
        password: &[u8],
    ) -> Result<Self, TrustError> {
        let unsupported = |label: &str, detail: String| TrustError::UnsupportedKey {
            source_name: source_name.to_owned(),
            label: label.to_owned(),
            detail,
        };
        for block in pem_blocks(text, source_name)? {
            let label = block.label.as_str();
            let secret = match label {
                "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => {
                    let der = open_cosign_key(&block.der, password, source_name)?;
                    p256::SecretKey::from_pkcs8_der(&der)
                        .map_err(|e| unsupported(label, e.to_string()))?
                }
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(TrustError::EncryptedPem {
                        source_name: source_name.to_owned(),
                        label: label.to_owned(),
                    });
                }
                _ if block.headers && label.ends_with("PRIVATE KEY") => {
                    // `Proc-Type: 4,ENCRYPTED` of openssl's legacy format.
                    return Err(TrustError::EncryptedPem {
                        source_name: source_name.to_owned(),
                        label: label.to_owned(),
                    });
                }
                "PRIVATE KEY" => p256::SecretKey::from_pkcs8_der(&block.der)
                    .map_err(|e| unsupported(label, e.to_string()))?,
                "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&block.der)
                    .map_err(|e| unsupported(label, e.to_string()))?,
                l if l.ends_with("PRIVATE KEY") => {
                    return Err(unsupported(label, "not an EC key".into()));
                }
                // EC PARAMETERS (openssl ecparam without -noout), others.
                _ => continue,
            };
            return Ok(PrivateKey {
                key: SigningKey::from(secret),
            });
        }
        Err(TrustError::NoKey {
            source_name: source_name.to_owned(),
            what: "PRIVATE KEY",
        })
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
            name: "the signing key".to_owned(),
        }
    }

    /// Signs `payload`: base64 of the ASN.1 DER ECDSA signature over its
    /// SHA-256, the value of [`ANNOTATION_SIGNATURE`].
    pub fn sign(&self, payload: &[u8]) -> String {
        let sig: Signature = self.key.sign(payload);
        BASE64.encode(sig.to_der().as_bytes())
    }
}

#[cfg(feature = "signing")]
/// The JSON body of cosign's encrypted key.
#[derive(Deserialize)]
struct SealedKey {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[cfg(feature = "signing")]
#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[cfg(feature = "signing")]
#[derive(Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[cfg(feature = "signing")]
#[derive(Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

#[cfg(feature = "signing")]
/// Decrypts the body of an `ENCRYPTED SIGSTORE PRIVATE KEY` block: scrypt
/// derives a 32-byte key from the password and salt, which opens the NaCl
/// secretbox (XSalsa20-Poly1305, tag first) holding the PKCS#8 DER key.
fn open_cosign_key(body: &[u8], password: &[u8], source_name: &str) -> Result<Vec<u8>, TrustError> {
    use crypto_secretbox::aead::{Aead as _, KeyInit as _};
    let bad = |message: String| TrustError::CosignKey {
        source_name: source_name.to_owned(),
        message,
    };
    let sealed: SealedKey =
        serde_json::from_slice(body).map_err(|e| bad(format!("not cosign's key format: {e}")))?;
    if sealed.kdf.name != "scrypt" {
        return Err(bad(format!(
            "unsupported key derivation {:?}",
            sealed.kdf.name
        )));
    }
    if sealed.cipher.name != "nacl/secretbox" {
        return Err(bad(format!("unsupported cipher {:?}", sealed.cipher.name)));
    }
    let ScryptParams { n, r, p } = sealed.kdf.params;
    // Bounded so a hostile file cannot ask for gigabytes: cosign uses
    // N = 2^15 or 2^16 with r = 8.
    if !n.is_power_of_two()
        || !(2..=1 << 20).contains(&n)
        || !(1..=32).contains(&r)
        || !(1..=16).contains(&p)
    {
        return Err(bad(format!(
            "scrypt parameters N={n} r={r} p={p} are out of range"
        )));
    }
    let log_n = u8::try_from(n.trailing_zeros()).unwrap_or(u8::MAX);
    let params =
        scrypt::Params::new(log_n, r, p, 32).map_err(|e| bad(format!("scrypt parameters: {e}")))?;
    let decode = |what: &str, v: &str| {
        BASE64
            .decode(v.as_bytes())
            .map_err(|e| bad(format!("{what} is not base64: {e}")))
    };
    let salt = decode("salt", &sealed.kdf.salt)?;
    let nonce = decode("nonce", &sealed.cipher.nonce)?;
    let ciphertext = decode("ciphertext", &sealed.ciphertext)?;
    if nonce.len() != 24 {
        return Err(bad(format!("the nonce is {} bytes, not 24", nonce.len())));
    }
    let mut key = [0u8; 32];
    scrypt::scrypt(password, &salt, &params, &mut key).map_err(|e| bad(format!("scrypt: {e}")))?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    cipher
        .decrypt(
            crypto_secretbox::Nonce::from_slice(&nonce),
            ciphertext.as_slice(),
        )
        .map_err(|_| TrustError::WrongPassword {
            source_name: source_name.to_owned(),
        })
}

#[cfg(feature = "signing")]
/// A public key to verify with, named for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    /// Where it came from (`keys.pub #2`).
    pub name: String,
}

#[cfg(feature = "signing")]
impl PublicKey {
    /// Every `PUBLIC KEY` block of `text`; at least one is required.
    /// `source_name` names the file (or "inline key") in errors and in
    /// each key's [`PublicKey::name`].
    pub fn all_from_pem(text: &str, source_name: &str) -> Result<Vec<Self>, TrustError> {
        let mut keys = Vec::new();
        for block in pem_blocks(text, source_name)? {
            if block.label != "PUBLIC KEY" {
                continue;
            }
            let key = p256::PublicKey::from_public_key_der(&block.der).map_err(|e| {
                TrustError::UnsupportedKey {
                    source_name: source_name.to_owned(),
                    label: format!("PUBLIC KEY #{}", keys.len() + 1),
                    detail: e.to_string(),
                }
            })?;
            keys.push(PublicKey {
                key: VerifyingKey::from(key),
                name: format!("{source_name} #{}", keys.len() + 1),
            });
        }
        if keys.is_empty() {
            return Err(TrustError::NoKey {
                source_name: source_name.to_owned(),
                what: "PUBLIC KEY",
            });
        }
        Ok(keys)
    }

    /// [`UPSTREAM_PUBLIC_KEY`], named [`UPSTREAM_KEY_NAME`].
    pub fn upstream() -> Vec<Self> {
        // A constant checked by the tests: it parses.
        let mut keys =
            Self::all_from_pem(UPSTREAM_PUBLIC_KEY, UPSTREAM_KEY_NAME).unwrap_or_default();
        for k in &mut keys {
            k.name = UPSTREAM_KEY_NAME.to_owned();
        }
        keys
    }

    /// The key's hint in a sigstore bundle: base64 of the SHA-256 of its
    /// DER `SubjectPublicKeyInfo`.
    pub fn hint(&self) -> String {
        use p256::pkcs8::EncodePublicKey as _;
        let der = p256::PublicKey::from(&self.key)
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        use sha2::Digest as _;
        BASE64.encode(sha2::Sha256::digest(&der))
    }

    /// The key as a `PUBLIC KEY` PEM block (what `--public-keys` reads).
    pub fn to_pem(&self) -> String {
        use p256::pkcs8::{EncodePublicKey as _, LineEnding};
        p256::PublicKey::from(&self.key)
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// Whether `signature_b64` (base64 DER) is this key's signature of
    /// `payload`. The error says what was wrong with it.
    pub fn verify(&self, payload: &[u8], signature_b64: &str) -> Result<(), String> {
        let der = BASE64
            .decode(signature_b64.trim().as_bytes())
            .map_err(|e| format!("signature is not base64: {e}"))?;
        let sig =
            Signature::from_der(&der).map_err(|_| "signature is not ASN.1 DER ECDSA".to_owned())?;
        self.key
            .verify(payload, &sig)
            .map_err(|_| format!("does not verify with {}", self.name))
    }
}

// ---------------------------------------------------------- signature image

/// One signature: a payload and its base64 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    /// The signed payload (simple signing JSON).
    pub payload: Vec<u8>,
    /// The base64 ECDSA signature of the payload.
    pub signature: String,
}

/// The documents of a signature image, ready for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureImage {
    /// Descriptor of the manifest (the store's `index.json` entry).
    pub top: Descriptor,
    /// Manifest, config and every payload.
    pub blobs: Vec<Vec<u8>>,
}

/// Builds the signature image holding `layers` (in order, duplicates
/// dropped).
pub fn signature_image(layers: &[SignatureLayer]) -> SignatureImage {
    let (manifest, mut blobs) = signature_manifest_of(layers);
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    let top = Descriptor::for_bytes(MEDIA_TYPE_IMAGE_MANIFEST, &manifest_bytes);
    blobs.push(manifest_bytes);
    SignatureImage { top, blobs }
}

/// The manifest of a signature image holding `layers` (in order,
/// duplicates dropped), and its blobs: payloads, then the config.
fn signature_manifest_of(layers: &[SignatureLayer]) -> (Manifest, Vec<Vec<u8>>) {
    let mut blobs = Vec::new();
    let mut descs: Vec<Descriptor> = Vec::new();
    for l in layers {
        let mut d = Descriptor::for_bytes(MEDIA_TYPE_SIMPLE_SIGNING, &l.payload);
        d.annotations
            .insert(ANNOTATION_SIGNATURE.to_owned(), l.signature.clone());
        if descs.contains(&d) {
            continue;
        }
        descs.push(d);
        blobs.push(l.payload.clone());
    }
    // An OCI image config whose layers are the payloads, as cosign writes.
    let diff_ids: Vec<String> = descs.iter().map(|d| d.digest.to_string()).collect();
    let config = serde_json::json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config_bytes = serde_json::to_vec(&config).unwrap_or_default();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_IMAGE_MANIFEST.to_owned()),
        artifact_type: None,
        config: Descriptor::for_bytes(MEDIA_TYPE_IMAGE_CONFIG, &config_bytes),
        layers: descs,
        subject: None,
        annotations: Annotations::new(),
    };
    blobs.push(config_bytes);
    (manifest, blobs)
}

/// The signature layers of a signature image: its manifest's bytes, and
/// `blob` to read a (verified) blob by descriptor. Layers of other media
/// types, or without the signature annotation, are skipped (cosign adds
/// none, but other tools may); a missing payload is an error.
pub fn signature_layers(
    digest: &Digest,
    manifest_bytes: &[u8],
    mut blob: impl FnMut(&Descriptor) -> Option<Vec<u8>>,
) -> Result<Vec<SignatureLayer>, TrustError> {
    let manifest = signature_manifest(digest, manifest_bytes)?;
    let mut out = Vec::new();
    for layer in &manifest.layers {
        out.extend(simple_signing_layer(digest, layer, &mut blob)?);
    }
    Ok(out)
}

/// The manifest `manifest_bytes` of the signature document `digest`.
fn signature_manifest(digest: &Digest, manifest_bytes: &[u8]) -> Result<Manifest, TrustError> {
    serde_json::from_slice(manifest_bytes).map_err(|e| TrustError::MalformedSignatureImage {
        digest: digest.clone(),
        message: format!("not an OCI manifest: {e}"),
    })
}

/// The simple-signing signature `layer` (of the signature document
/// `digest`) holds: `None` for a layer of another media type or without
/// the signature annotation; an error for a payload too large or
/// missing.
fn simple_signing_layer(
    digest: &Digest,
    layer: &Descriptor,
    blob: &mut impl FnMut(&Descriptor) -> Option<Vec<u8>>,
) -> Result<Option<SignatureLayer>, TrustError> {
    let malformed = |message: String| TrustError::MalformedSignatureImage {
        digest: digest.clone(),
        message,
    };
    let Some(signature) = layer.annotations.get(ANNOTATION_SIGNATURE) else {
        return Ok(None);
    };
    if layer.media_type != MEDIA_TYPE_SIMPLE_SIGNING {
        return Ok(None);
    }
    if layer.size > MAX_PAYLOAD {
        return Err(malformed(format!(
            "payload {} is {} bytes, more than {MAX_PAYLOAD}",
            layer.digest, layer.size
        )));
    }
    let payload =
        blob(layer).ok_or_else(|| malformed(format!("payload {} is missing", layer.digest)))?;
    Ok(Some(SignatureLayer {
        payload,
        signature: signature.clone(),
    }))
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Name of the key that verified ([`PublicKey::name`]).
    pub key: String,
    /// The repository the signer named (simple-signing payloads only;
    /// a bundle's statement names the digest alone).
    pub docker_reference: Option<String>,
    /// The form of the signature that verified.
    pub form: SignatureForm,
    /// Where it was found ([`FoundSignature::source`]).
    pub source: String,
}

/// Checks that one of `layers` (of the `.sig` tag form) is a signature of
/// `digest` by one of `keys`. See [`verify_found`].
#[cfg(feature = "signing")]
pub fn verify(
    reference: &str,
    digest: &Digest,
    layers: &[SignatureLayer],
    keys: &[PublicKey],
) -> Result<Verified, TrustError> {
    let found: Vec<FoundSignature> = layers
        .iter()
        .map(|l| FoundSignature {
            form: SignatureForm::Tag,
            source: signature_tag(digest),
            signed: Signed::Simple(l.clone()),
        })
        .collect();
    verify_found(reference, digest, &found, keys)
}

/// Checks that one of `signatures`, whatever its form, is a signature of
/// `digest` by one of `keys`: the signature must verify first, and only
/// then is what it signs read (a simple-signing payload, or a DSSE
/// envelope's in-toto statement), and it must name `digest`. On failure,
/// the error lists why each signature was refused.
#[cfg(feature = "signing")]
pub fn verify_found(
    reference: &str,
    digest: &Digest,
    signatures: &[FoundSignature],
    keys: &[PublicKey],
) -> Result<Verified, TrustError> {
    let mut reasons = Vec::new();
    if keys.is_empty() {
        reasons.push("no public key to verify with".to_owned());
    }
    if signatures.is_empty() {
        reasons.push("the signature image holds no signature".to_owned());
    }
    for (i, found) in signatures.iter().enumerate() {
        let n = i + 1;
        let label = match found.form {
            SignatureForm::Tag => format!("signature {n}"),
            _ => format!("signature {n} ({})", found.source),
        };
        let (signed_bytes, signature) = match &found.signed {
            Signed::Simple(l) => (std::borrow::Cow::Borrowed(&l.payload[..]), &l.signature),
            Signed::Dsse {
                payload_type,
                payload,
                signature,
            } => (
                std::borrow::Cow::Owned(referrers::pae(payload_type, payload)),
                signature,
            ),
        };
        let mut failures = Vec::new();
        let mut good = None;
        for key in keys {
            match key.verify(&signed_bytes, signature) {
                Ok(()) => {
                    good = Some(key);
                    break;
                }
                Err(e) => failures.push(e),
            }
        }
        let Some(key) = good else {
            failures.dedup();
            reasons.push(format!("{label}: {}", failures.join(", ")));
            continue;
        };
        // The signature is genuine; now what it says must be this image.
        let docker_reference = match &found.signed {
            Signed::Simple(l) => match check_simple(&l.payload, digest) {
                Ok(r) => Some(r),
                Err(e) => {
                    reasons.push(format!("{label} (valid, by {}): {e}", key.name));
                    continue;
                }
            },
            Signed::Dsse {
                payload_type,
                payload,
                ..
            } => {
                if let Err(e) = referrers::check_statement(payload_type, payload, digest) {
                    reasons.push(format!("{label} (valid, by {}): {e}", key.name));
                    continue;
                }
                None
            }
        };
        return Ok(Verified {
            key: key.name.clone(),
            docker_reference,
            form: found.form,
            source: found.source.clone(),
        });
    }
    Err(TrustError::Untrusted {
        reference: reference.to_owned(),
        digest: digest.clone(),
        reasons,
    })
}

#[cfg(feature = "signing")]
/// What a verified simple-signing payload must say: cosign's type, and
/// `digest`. Returns the repository it names.
fn check_simple(payload: &[u8], digest: &Digest) -> Result<String, String> {
    let claims = parse_payload(payload)?;
    if claims.kind != PAYLOAD_TYPE {
        return Err(format!(
            "payload type is {:?}, not {PAYLOAD_TYPE:?}",
            claims.kind
        ));
    }
    if claims.digest != digest.to_string() {
        return Err(format!("signs another image: {}", claims.digest));
    }
    Ok(claims.docker_reference)
}

// ------------------------------------------------------------------- policy

/// One entry of `--allowed-gadgets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRule {
    /// `sha256:<hex>`: the image index (or manifest) with this digest.
    Digest(Digest),
    /// A reference without tag: every tag of this repository.
    Repository(String),
    /// A reference with a tag (or digest): exactly that, normalized.
    Reference(String),
    /// `prefix*`: any full normalized reference starting with `prefix`.
    Prefix(String),
}

impl AllowRule {
    /// Parses one entry. Names are normalized like image references, so
    /// `trace_exec` means `ghcr.io/inspektor-gadget/gadget/trace_exec`.
    pub fn parse(entry: &str) -> Result<Self, TrustError> {
        let e = entry.trim();
        let bad = |message: String| TrustError::BadAllowEntry {
            entry: entry.to_owned(),
            message,
        };
        if e.is_empty() {
            return Err(bad("empty entry".into()));
        }
        if let Some(prefix) = e.strip_suffix('*') {
            if prefix.contains('*') {
                return Err(bad("`*` may only end an entry".into()));
            }
            return Ok(AllowRule::Prefix(prefix.to_owned()));
        }
        if e.contains(':') && Digest::parse(e).is_ok() {
            return Ok(AllowRule::Digest(
                Digest::parse(e).map_err(|x| bad(x.to_string()))?,
            ));
        }
        let r = Reference::parse(e).map_err(|x| bad(x.to_string()))?;
        let last = e.rsplit('/').next().unwrap_or(e);
        if last.contains(':') || e.contains('@') {
            Ok(AllowRule::Reference(r.to_string()))
        } else {
            Ok(AllowRule::Repository(r.repository()))
        }
    }

    /// Whether the rule can allow an image by its digest (so that a name
    /// alone cannot decide against it).
    fn needs_digest(&self) -> bool {
        match self {
            AllowRule::Digest(_) => true,
            AllowRule::Reference(r) => Reference::parse(r).is_ok_and(|x| x.digest().is_some()),
            AllowRule::Repository(_) | AllowRule::Prefix(_) => false,
        }
    }

    fn allows(&self, reference: &Reference, digests: &[&Digest]) -> bool {
        match self {
            AllowRule::Digest(d) => digests.contains(&d),
            AllowRule::Repository(repo) => reference.repository() == *repo,
            AllowRule::Reference(r) => {
                // `name@digest` also allows the image with that digest
                // when it was run under another tag.
                reference.to_string() == *r
                    || Reference::parse(r)
                        .ok()
                        .and_then(|x| x.digest().cloned())
                        .is_some_and(|d| digests.contains(&&d))
            }
            AllowRule::Prefix(p) => reference.to_string().starts_with(p.as_str()),
        }
    }
}

/// Refuses an image no rule allows. No rules means everything is allowed.
/// `digests` are the image's index and manifest digests; the first is
/// named in the error.
pub fn check_allowed(
    rules: &[(String, AllowRule)],
    reference: &Reference,
    digests: &[&Digest],
) -> Result<(), TrustError> {
    if rules.is_empty() || rules.iter().any(|(_, r)| r.allows(reference, digests)) {
        return Ok(());
    }
    Err(TrustError::NotAllowed {
        reference: reference.to_string(),
        digest: digests.first().map(|d| (*d).clone()),
        allowed: rules.iter().map(|(s, _)| s.clone()).collect(),
    })
}

/// [`check_allowed`] from the reference alone, before the image is pulled
/// or read: refuses only when no rule could allow it whatever its digest,
/// that is when no rule names a digest and none allows the name. A rule
/// that names a digest leaves the decision to [`check_allowed`] once the
/// digests are known.
pub fn check_allowed_by_name(
    rules: &[(String, AllowRule)],
    reference: &Reference,
) -> Result<(), TrustError> {
    if rules.iter().any(|(_, r)| r.needs_digest()) {
        return Ok(());
    }
    check_allowed(rules, reference, &[])
}

/// Where an image in the store came from, which decides whether `ig run`
/// verifies it by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `ig image build` (or `ig image sign` of a signature image).
    Built,
    /// `ig image pull` or the pull of `ig run`.
    Pulled,
    /// `ig image import` of an archive.
    Imported,
}

impl Origin {
    /// As written in the store's records.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Built => "built",
            Origin::Pulled => "pulled",
            Origin::Imported => "imported",
        }
    }

    /// Read back [`Origin::as_str`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "built" => Some(Origin::Built),
            "pulled" => Some(Origin::Pulled),
            "imported" => Some(Origin::Imported),
            _ => None,
        }
    }
}

/// Whether `ig run` verifies an image by default: not for images built
/// here; for everything else, including images whose origin was not
/// recorded (stores written before ig recorded it, or by other tools),
/// because nothing says they were made on this machine.
pub fn verify_by_default(origin: Option<Origin>) -> bool {
    origin != Some(Origin::Built)
}

#[cfg(all(test, feature = "signing"))]
mod tests;
