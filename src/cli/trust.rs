//! `ig image sign` and `ig image verify`: reading the private key (and
//! cosign's password) or the public keys, and wording the result. The
//! formats and the cryptography are `image::trust`'s; the check `ig run`
//! makes before it loads anything is the library's (`run::VerifyPolicy`),
//! and `ig image verify` makes the same one, offline.

use std::path::Path;

use anyhow::Context as _;

use super::args::SignForm;
use super::logger;
use ig::image::trust::{self, Origin, PrivateKey, SignatureForm, SignatureLayer};
use ig::image::{Reference, Store};

/// `ig image sign IMAGE --key KEY [--form FORM]`.
pub fn sign_command(store: &Path, image: &str, key: &Path, form: SignForm) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    // cosign's own variable, so `cosign generate-key-pair` keys work as is.
    let password = std::env::var("COSIGN_PASSWORD").unwrap_or_default();
    let key =
        PrivateKey::from_pem_with_password(&text, &key.display().to_string(), password.as_bytes())?;
    let store = Store::open(store)?;
    let reference = store.find(image)?;
    // Reads (and verifies) every blob present: never sign a damaged image.
    // Platforms a pull did not download do not change the index digest,
    // which is what the signature covers.
    let (top, _, _) = store
        .image_blobs_present(&reference)
        .with_context(|| format!("reading image {reference}"))?;
    let digest = top.digest.clone();
    let payload = trust::payload(&reference.repository(), &digest);
    let new = SignatureLayer {
        signature: key.sign(&payload),
        payload,
    };
    let (written, form) = match form {
        SignForm::Tag => (
            sign_tag(&store, &reference, &digest, new)?,
            SignatureForm::Tag,
        ),
        SignForm::Referrer => {
            let referrer = trust::referrers::referrer_signature(&top, &[new]);
            (
                add_referrer(&store, &reference, &digest, referrer)?,
                SignatureForm::Referrer,
            )
        }
        SignForm::Bundle => {
            let hint = key.public_key().hint();
            let bundle = trust::referrers::bundle(&digest, &hint, |bytes| key.sign(bytes));
            let created =
                ig::image::created_timestamp(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())?;
            let referrer = trust::referrers::referrer_bundle(&top, bundle, &created);
            (
                add_referrer(&store, &reference, &digest, referrer)?,
                SignatureForm::Bundle,
            )
        }
    };
    logger::stdout_line(&format!(
        "Signed {reference}@{digest} (signature {written}, {})",
        form.describe()
    ));
    Ok(())
}

/// Adds `new` to the image's `.sig` signature image (signing again, with
/// another key, adds a signature, as cosign does).
fn sign_tag(
    store: &Store,
    reference: &Reference,
    digest: &ig::image::Digest,
    new: SignatureLayer,
) -> anyhow::Result<Reference> {
    let sig_ref = trust::signature_reference(reference, digest)?;
    let mut layers = if store.contains(&sig_ref)? {
        ig::run::stored_layers(store, &sig_ref)?
    } else {
        Vec::new()
    };
    layers.push(new);
    let image = trust::signature_image(&layers);
    store
        .import(&sig_ref, &image.top, image.blobs, Origin::Built)
        .with_context(|| format!("storing the signature {sig_ref}"))?;
    Ok(sig_ref)
}

/// Adds `referrer` to the image's referrers index (the tag schema's
/// `sha256-<hex>` in its repository), keeping the referrers it lists.
fn add_referrer(
    store: &Store,
    reference: &Reference,
    digest: &ig::image::Digest,
    referrer: trust::referrers::Referrer,
) -> anyhow::Result<Reference> {
    let index_ref = reference.with_tag(&trust::referrers_tag(digest))?;
    let mut entries = Vec::new();
    if store.contains(&index_ref)? {
        let (top, blobs) = store
            .image_blobs(&index_ref)
            .with_context(|| format!("reading the referrers index {index_ref}"))?;
        let bytes = blobs
            .iter()
            .find(|b| b.descriptor.digest == top.digest)
            .map(|b| b.bytes.as_slice())
            .unwrap_or_default();
        let index: ig::image::oci::Index = serde_json::from_slice(bytes)
            .with_context(|| format!("reading the referrers index {index_ref}"))?;
        entries = index.manifests;
    }
    entries.push(referrer.descriptor);
    let (top, bytes) = trust::referrers::referrers_index(&entries);
    let mut blobs = referrer.blobs;
    blobs.push(bytes);
    store
        .import(&index_ref, &top, blobs, Origin::Built)
        .with_context(|| format!("storing the referrers index {index_ref}"))?;
    Ok(index_ref)
}

/// `ig image verify IMAGE [--public-keys ...]`: offline, every signature
/// the store holds for the image.
pub fn verify_command(store: &Path, image: &str, public_keys: &[String]) -> anyhow::Result<()> {
    let keys = ig::run::load_public_keys(public_keys)?;
    let store = Store::open_read_only(store)?;
    let reference = store.find(image)?;
    let (top, _, _) = store
        .image_blobs_present(&reference)
        .with_context(|| format!("reading image {reference}"))?;
    let digest = top.digest;
    let found = ig::run::stored_signatures(&store, &reference, &digest)?;
    if found.read.is_empty() {
        return Err(trust::TrustError::Unsigned {
            reference: reference.to_string(),
            digest: digest.clone(),
            tag: trust::signature_tag(&digest),
            where_: " in the local store (`ig image pull` fetches an image's signatures with it)"
                .into(),
        }
        .into());
    }
    let v = ig::run::verify_stored_signatures(found, &reference, &digest, &keys)?;
    logger::stdout_line(&format!("Verified {reference}@{digest}"));
    logger::stdout_line(&format!("  key:       {}", v.key));
    logger::stdout_line(&format!("  signature: {}", v.form.describe()));
    logger::stdout_line(&format!("  found in:  {}", v.source));
    if let Some(r) = &v.docker_reference {
        logger::stdout_line(&format!("  signed as: {r}"));
    }
    Ok(())
}
