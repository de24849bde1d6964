//! `ig image sign`: reading the private key (and cosign's password) and
//! wording the result. The format and the cryptography are
//! `image::trust`'s; the check `ig run` makes before it loads anything is
//! the library's (`run::VerifyPolicy`).

use std::path::Path;

use anyhow::Context as _;

use super::logger;
use crate::image::Store;
use crate::image::trust::{self, Origin, PrivateKey, SignatureLayer};

/// `ig image sign IMAGE --key KEY`.
pub fn sign_command(store: &Path, image: &str, key: &Path) -> anyhow::Result<()> {
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
    let digest = top.digest;
    let payload = trust::payload(&reference.repository(), &digest);
    let new = SignatureLayer {
        signature: key.sign(&payload),
        payload,
    };
    let sig_ref = trust::signature_reference(&reference, &digest)?;
    // Signing again (another key) adds a signature, as cosign does.
    let mut layers = if store.contains(&sig_ref)? {
        crate::run::stored_layers(&store, &sig_ref)?
    } else {
        Vec::new()
    };
    layers.push(new);
    let image = trust::signature_image(&layers);
    store
        .import(&sig_ref, &image.top, image.blobs, Origin::Built)
        .with_context(|| format!("storing the signature {sig_ref}"))?;
    logger::stdout_line(&format!(
        "Signed {reference}@{digest} (signature {sig_ref})"
    ));
    Ok(())
}
