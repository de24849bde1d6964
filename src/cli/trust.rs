//! `ig image sign` and the trust check `ig run` makes before it loads
//! anything into the kernel.
//!
//! Owns: reading key files, deciding from the flags and the image's origin
//! whether to verify, fetching a missing signature on demand (unless
//! `--pull never`), and wording refusals. The format, the cryptography and
//! the policy rules are `image::trust`'s; where signatures are stored is
//! `image::store`'s.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};

use super::args::{PullPolicy, RunArgs};
use super::logger;
use super::registry::PullOptions;
use crate::image::registry::SignatureFetch;
use crate::image::trust::{self, AllowRule, Origin, PrivateKey, PublicKey, SignatureLayer};
use crate::image::{Digest, Reference, Store};

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
        stored_layers(&store, &sig_ref)?
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

/// The signatures of the stored signature image `sig`.
fn stored_layers(store: &Store, sig: &Reference) -> anyhow::Result<Vec<SignatureLayer>> {
    let (top, blobs) = store
        .image_blobs(sig)
        .with_context(|| format!("reading the signature {sig}"))?;
    let manifest = blobs
        .iter()
        .find(|b| b.descriptor.digest == top.digest)
        .map(|b| b.bytes.as_slice())
        .unwrap_or_default();
    Ok(trust::signature_layers(&top.digest, manifest, |d| {
        blobs
            .iter()
            .find(|b| b.descriptor.digest == d.digest)
            .map(|b| b.bytes.clone())
    })?)
}

/// What the trust check needs to know about the image `ig run` is about
/// to load.
#[derive(Debug, Clone)]
pub struct RunImage {
    pub store: PathBuf,
    pub reference: Reference,
    /// Top-level digest (the image index): what signatures cover.
    pub index_digest: Digest,
    pub manifest_digest: Digest,
    pub origin: Option<Origin>,
    /// How the image was pulled, for fetching a missing signature.
    pub pull: PullOptions,
}

/// Parses `--allowed-gadgets` entries (empty ones are ignored).
fn allow_rules(entries: &[String]) -> anyhow::Result<Vec<(String, AllowRule)>> {
    Ok(entries
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| Ok((e.trim().to_owned(), AllowRule::parse(e)?)))
        .collect::<Result<Vec<_>, trust::TrustError>>()?)
}

/// The part of `--allowed-gadgets` that the reference alone decides, for
/// `ig run` before it pulls or reads the image: an image no rule can
/// allow is refused without a single network request. Rules naming a
/// digest are left to [`check_before_load`].
pub fn check_name_before_pull(entries: &[String], reference: &Reference) -> anyhow::Result<()> {
    let rules = allow_rules(entries)?;
    trust::check_allowed_by_name(&rules, reference)
        .with_context(|| format!("refusing to run {reference}"))
}

/// Refuses the image unless `--allowed-gadgets` allows it and, when
/// verification is on, one of the public keys signed it. Runs before
/// anything is loaded.
pub fn check_before_load(args: &RunArgs, image: &RunImage) -> anyhow::Result<()> {
    let reference = &image.reference;
    let refuse = || format!("refusing to run {reference}");
    let rules = allow_rules(&args.allowed_gadgets)?;
    trust::check_allowed(
        &rules,
        reference,
        &[&image.index_digest, &image.manifest_digest],
    )
    .with_context(refuse)?;

    let why = match (args.verify_image, image.origin) {
        (Some(false), _) => {
            log::debug!("{reference}: signature not verified (--verify-image=false)");
            return Ok(());
        }
        (Some(true), _) => "--verify-image is set".to_owned(),
        (None, o) if !trust::verify_by_default(o) => {
            log::debug!("{reference}: built on this machine, signature not verified");
            return Ok(());
        }
        (None, Some(o)) => format!("the image was {} (not built here)", o.as_str()),
        (None, None) => "the store does not record where the image came from".to_owned(),
    };
    let how = "give the signer's public key with --public-keys FILE, or run it unverified with --verify-image=false";
    let keys = load_public_keys(&args.public_keys)?;
    if keys.is_empty() {
        bail!(
            "{}: its signature must be verified because {why}, but no public key was given: {how}",
            refuse()
        );
    }

    let store = Store::open_read_only(&image.store)?;
    let digest = &image.index_digest;
    let context = || format!("{} (verification is on because {why})", refuse());
    // Every signature the store holds for the digest, whatever its
    // repository; then, when none verifies, the registry's.
    let mut refused = match verify_stored(&store, reference, digest, &keys)? {
        Some(Ok(verified)) => {
            log_verified(reference, &verified);
            return Ok(());
        }
        Some(Err(e)) => Some(e),
        None => None,
    };
    let mut looked = " in the local store".to_owned();
    if image.pull.policy == PullPolicy::Never {
        looked.push_str(" (--pull never: the registry was not asked)");
    } else if image.origin != Some(Origin::Pulled) {
        // Built or imported here: its registry has no say.
    } else {
        let sig_ref = trust::signature_reference(reference, digest)?;
        // What the store has under the registry's name: the fetch replaces
        // it, so its signatures are merged back afterwards.
        let before = if store.contains(&sig_ref)? {
            stored_layers(&store, &sig_ref).ok()
        } else {
            None
        };
        match super::registry::fetch_signature(
            &image.store,
            reference,
            digest,
            &image.pull.registry,
        ) {
            SignatureFetch::Stored(r) => {
                log::debug!("fetched the signature {r}");
                if let Some(before) = before {
                    merge_signatures(&image.store, &store, &sig_ref, before)?;
                }
                match verify_stored(&store, reference, digest, &keys)? {
                    Some(Ok(verified)) => {
                        log_verified(reference, &verified);
                        return Ok(());
                    }
                    Some(Err(e)) => refused = Some(e),
                    None => {}
                }
            }
            SignatureFetch::Absent => {
                looked = format!(" in the local store nor in registry {}", reference.domain());
            }
            SignatureFetch::Failed(e) => {
                log::debug!("fetching the signature of {reference} failed: {e}");
                looked = format!(" in the local store, and fetching it failed: {e}");
            }
        }
    }
    if let Some(e) = refused {
        return Err(anyhow!(e)).context(context());
    }
    Err(anyhow!(trust::TrustError::Unsigned {
        reference: reference.to_string(),
        digest: digest.clone(),
        tag: trust::signature_tag(digest),
        where_: looked,
    }))
    .context(context())
}

fn log_verified(reference: &Reference, verified: &trust::Verified) {
    log::debug!(
        "{reference}: signature verified with {} (signed as {})",
        verified.key,
        verified.docker_reference
    );
}

/// Tries every signature the store holds for `digest` (every signature
/// image, every layer). `None` when there is none; otherwise the first
/// that verifies, or why each one was refused.
fn verify_stored(
    store: &Store,
    reference: &Reference,
    digest: &Digest,
    keys: &[PublicKey],
) -> anyhow::Result<Option<Result<trust::Verified, trust::TrustError>>> {
    let images = store.find_signatures(&reference.repository(), digest)?;
    if images.is_empty() {
        return Ok(None);
    }
    let mut layers: Vec<SignatureLayer> = Vec::new();
    let mut broken = Vec::new();
    for sig in &images {
        match stored_layers(store, sig) {
            Ok(found) => {
                for l in found {
                    if !layers.contains(&l) {
                        layers.push(l);
                    }
                }
            }
            // One damaged signature image must not hide the others.
            Err(e) => broken.push(format!("{sig}: {e:#}")),
        }
    }
    log::debug!(
        "{reference}: {} signature(s) in {}",
        layers.len(),
        images
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Some(
        match trust::verify(&reference.to_string(), digest, &layers, keys) {
            Err(trust::TrustError::Untrusted {
                reference,
                digest,
                mut reasons,
            }) => {
                reasons.extend(broken);
                Err(trust::TrustError::Untrusted {
                    reference,
                    digest,
                    reasons,
                })
            }
            other => other,
        },
    ))
}

/// Adds the signatures of `before` that the signature image `sig_ref`
/// (just fetched over them) lacks, so a fetch never loses one.
fn merge_signatures(
    store_path: &Path,
    store: &Store,
    sig_ref: &Reference,
    before: Vec<SignatureLayer>,
) -> anyhow::Result<()> {
    let mut layers = stored_layers(store, sig_ref)?;
    let fetched = layers.len();
    for l in before {
        if !layers.contains(&l) {
            layers.push(l);
        }
    }
    if layers.len() > fetched {
        let image = trust::signature_image(&layers);
        Store::open(store_path)?
            .import(sig_ref, &image.top, image.blobs, Origin::Pulled)
            .with_context(|| format!("storing the signature {sig_ref}"))?;
    }
    Ok(())
}

/// Reads `--public-keys` values: PEM text given inline, else files.
fn load_public_keys(values: &[String]) -> anyhow::Result<Vec<PublicKey>> {
    let mut keys = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if v.contains("-----BEGIN") {
            keys.extend(PublicKey::all_from_pem(
                v,
                &format!("--public-keys value {}", i + 1),
            )?);
        } else {
            let text = std::fs::read_to_string(v)
                .with_context(|| format!("reading the public key file {v}"))?;
            keys.extend(PublicKey::all_from_pem(&text, v)?);
        }
    }
    Ok(keys)
}
