//! What a run asks of its image before anything reaches the kernel: the
//! pull policy (is the image in the store, or fetched from its
//! registry?) and the trust policy (`allowed gadgets` by name or digest,
//! cosign signatures checked with the given public keys). Policies are
//! data ([`PullPolicy`], [`RegistryConfig`], [`VerifyPolicy`]), set by
//! whoever builds the run: the CLI maps its flags onto them.
//!
//! Owns: deciding from the policy and the image's origin whether to
//! verify, fetching a missing signature on demand (unless the pull policy
//! is `never`), which credentials a pull uses. The protocol, the
//! cryptography and the rules themselves are `image::registry`'s and
//! `image::trust`'s; where signatures are stored is `image::store`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::RunError;
use crate::image::auth::AuthError;
use crate::image::registry::{Platforms, Progress, PullOutcome, RegistryOptions, SignatureFetch};
#[cfg(feature = "registry")]
use crate::image::registry::{Registry, RegistryError};
#[cfg(feature = "signing")]
use crate::image::trust::PublicKey;
use crate::image::trust::{self, AllowRule, Origin, SignatureLayer};
use crate::image::{Digest, ImageError, Reference, Store};

/// When a run downloads its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull every time, so a moved tag is followed.
    Always,
    /// Pull only images missing from the local store.
    #[default]
    Missing,
    /// Never use the network: the image must be in the store.
    Never,
}

/// How registries are reached, and with which credentials.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The credentials file (docker's `config.json` format). `None`: ig's
    /// own ([`crate::image::auth::DEFAULT_AUTH_FILE`]), then docker's
    /// `config.json` (`$DOCKER_CONFIG`, else `~/.docker`) for a registry
    /// ig's has nothing for. A credential helper a file names
    /// (`credHelpers`, `credsStore`) is run for its registries.
    pub authfile: Option<PathBuf>,
    /// Registries (`host[:port]`) reached over plain HTTP; loopback hosts
    /// always are.
    pub insecure_registries: Vec<String>,
    /// Longest a registry may keep a pull waiting (connecting, an answer,
    /// a gap in a download); `None`: no limit.
    pub timeout: Option<Duration>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        let o = RegistryOptions::default();
        Self {
            authfile: None,
            insecure_registries: o.insecure_registries,
            timeout: o.timeout,
        }
    }
}

impl RegistryConfig {
    /// The client options these settings make.
    pub fn options(&self) -> RegistryOptions {
        RegistryOptions {
            insecure_registries: self.insecure_registries.clone(),
            timeout: self.timeout,
        }
    }

    /// A client for registry `host`, with the credentials
    /// [`crate::image::auth::credentials_for`] finds for it.
    #[cfg(feature = "registry")]
    pub fn client_for(&self, host: &str) -> Result<Registry, PullError> {
        let creds = crate::image::auth::credentials_for(host, self.authfile.as_deref())?;
        match &creds {
            Some((c, from)) => log::debug!("registry {host}: user {} from {from}", c.username),
            None => log::debug!("registry {host}: anonymous"),
        }
        Ok(Registry::new(
            host,
            creds.as_ref().map(|(c, _)| c),
            &self.options(),
        )?)
    }
}

/// Which images a run accepts, and whether their signatures are checked.
#[derive(Debug, Clone, Default)]
pub struct VerifyPolicy {
    /// Check the image's cosign signature before loading anything:
    /// `Some(true)` always, `Some(false)` never, `None` for images pulled
    /// or imported (not for images built on this machine).
    pub verify: Option<bool>,
    /// Public keys (PEM `PUBLIC KEY`): each entry a file, which may hold
    /// several keys, or the PEM text itself. A signature by any of them is
    /// accepted. Empty: upstream Inspektor Gadget's built-in key
    /// ([`trust::UPSTREAM_PUBLIC_KEY`]), for every image, as upstream;
    /// keys given replace it (give it too, `--public-keys` of its PEM, to
    /// trust both).
    pub public_keys: Vec<String>,
    /// Run only these images: a digest (`sha256:…`), a name (any tag, or
    /// `name:tag`) or a prefix ending in `*`. Empty: any image.
    pub allowed_gadgets: Vec<String>,
}

/// Why a pull failed (the store, the credentials file, or the registry).
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The local store.
    #[error(transparent)]
    Store(#[from] ImageError),
    /// The credentials file.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The registry.
    #[cfg(feature = "registry")]
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// This build of the library has no registry client.
    #[error(
        "this ig was built without a registry client (the library's feature `registry`): the image must be in the store"
    )]
    NoRegistryClient,
}

/// Why a stored signature could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The signature image of the store.
    #[error("reading the signature {reference}")]
    Read {
        /// The signature image.
        reference: Reference,
        /// Why.
        #[source]
        source: ImageError,
    },
    /// Its layers are not cosign's.
    #[error(transparent)]
    Trust(#[from] trust::TrustError),
}

/// Copies `reference` from its registry into the store at `store`.
pub fn pull(
    store: &Path,
    reference: &Reference,
    platforms: Platforms,
    registry: &RegistryConfig,
    progress: &mut dyn Progress,
) -> Result<PullOutcome, PullError> {
    #[cfg(not(feature = "registry"))]
    {
        let _ = (store, reference, platforms, registry, progress);
        Err(PullError::NoRegistryClient)
    }
    #[cfg(feature = "registry")]
    pull_with_client(store, reference, platforms, registry, progress)
}

#[cfg(feature = "registry")]
fn pull_with_client(
    store: &Path,
    reference: &Reference,
    platforms: Platforms,
    registry: &RegistryConfig,
    progress: &mut dyn Progress,
) -> Result<PullOutcome, PullError> {
    let store = Store::open(store)?;
    let client = registry.client_for(reference.domain())?;
    let outcome = client.pull(&store, reference, platforms, progress)?;
    log::debug!(
        "{}: {} downloaded, {} already in the store",
        outcome.reference,
        outcome.downloaded,
        outcome.reused
    );
    if !outcome.not_fetched.is_empty() {
        log::debug!(
            "{}: platforms not downloaded (not this machine's): {}",
            outcome.reference,
            outcome.not_fetched.join(", ")
        );
    }
    match &outcome.signature {
        SignatureFetch::Stored(r) => log::debug!("signatures stored as {}", names(r)),
        SignatureFetch::Absent => log::debug!("{} has no signature", outcome.reference),
        SignatureFetch::Failed(e) => {
            log::warn!(
                "could not fetch the signature of {}: {e}",
                outcome.reference
            )
        }
    }
    Ok(outcome)
}

#[cfg(any(feature = "registry", feature = "signing"))]
fn names(r: &[Reference]) -> String {
    r.iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Makes sure `reference` is in the store at `store`, pulling it as
/// `policy` says. With [`PullPolicy::Never`] the network is not touched.
pub(super) fn ensure_present(
    store: &Path,
    reference: &Reference,
    policy: PullPolicy,
    registry: &RegistryConfig,
    progress: &mut dyn Progress,
) -> Result<(), RunError> {
    let pull_it = |progress: &mut dyn Progress| {
        pull(store, reference, Platforms::Host, registry, progress)
            .map(|_| ())
            .map_err(|source| RunError::Pull {
                reference: reference.clone(),
                source,
            })
    };
    match policy {
        PullPolicy::Never => Ok(()),
        PullPolicy::Missing => {
            // A store that does not exist yet reads as empty; one that
            // cannot be read is an error worth reporting as such, not a
            // reason to download.
            let present = Store::open_read_only(store)
                .and_then(|s| s.contains(reference))
                .map_err(|source| RunError::Lookup {
                    reference: reference.clone(),
                    source,
                })?;
            if present {
                return Ok(());
            }
            log::debug!("{reference} is not in the store: pulling it");
            pull_it(progress).map_err(|e| match e {
                RunError::Pull { reference, source } => RunError::NotPulled {
                    reference,
                    store: store.to_owned(),
                    source,
                },
                other => other,
            })
        }
        PullPolicy::Always => pull_it(progress),
    }
}

/// Fetches the signature of `image` (top-level digest `digest`) from its
/// registry into the store at `store`.
pub fn fetch_signature(
    store: &Path,
    image: &Reference,
    digest: &Digest,
    registry: &RegistryConfig,
) -> SignatureFetch {
    #[cfg(not(feature = "registry"))]
    {
        let _ = (store, image, digest, registry);
        SignatureFetch::Failed(PullError::NoRegistryClient.to_string())
    }
    #[cfg(feature = "registry")]
    {
        let client = Store::open(store)
            .map_err(PullError::from)
            .and_then(|s| Ok((s, registry.client_for(image.domain())?)));
        match client {
            Ok((store, client)) => client.pull_signature(&store, image, digest),
            Err(e) => SignatureFetch::Failed(super::error_chain(&e)),
        }
    }
}

/// The signatures of the stored signature image `sig`.
pub fn stored_layers(
    store: &Store,
    sig: &Reference,
) -> Result<Vec<SignatureLayer>, SignatureError> {
    let (top, blobs) = store
        .image_blobs(sig)
        .map_err(|source| SignatureError::Read {
            reference: sig.clone(),
            source,
        })?;
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

/// What the trust check needs to know about the image a run is about to
/// load.
#[derive(Debug, Clone)]
pub(super) struct StoredImage {
    /// The store (where signatures are looked for).
    #[cfg_attr(
        not(feature = "signing"),
        allow(dead_code, reason = "only signature checks read it")
    )]
    pub store: PathBuf,
    pub reference: Reference,
    /// Top-level digest (the image index): what signatures cover.
    pub index_digest: Digest,
    pub manifest_digest: Digest,
    pub origin: Option<Origin>,
}

/// Parses allowed-gadgets entries (empty ones are ignored).
fn allow_rules(entries: &[String]) -> Result<Vec<(String, AllowRule)>, RunError> {
    Ok(entries
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| Ok((e.trim().to_owned(), AllowRule::parse(e)?)))
        .collect::<Result<Vec<_>, trust::TrustError>>()?)
}

/// The part of the allowed-gadgets rules that the reference alone
/// decides, before the image is pulled or read: an image no rule can
/// allow is refused without a single network request. Rules naming a
/// digest are left to [`check_before_load`].
pub(super) fn check_name_before_pull(
    entries: &[String],
    reference: &Reference,
) -> Result<(), RunError> {
    let rules = allow_rules(entries)?;
    trust::check_allowed_by_name(&rules, reference).map_err(|source| RunError::Refused {
        reference: reference.clone(),
        source,
    })
}

/// Refuses the image unless the allowed-gadgets rules allow it and, when
/// verification is on, one of the public keys signed it. Runs before
/// anything is loaded.
pub(super) fn check_before_load(
    policy: &VerifyPolicy,
    pull: PullPolicy,
    registry: &RegistryConfig,
    image: &StoredImage,
) -> Result<(), RunError> {
    let reference = &image.reference;
    let rules = allow_rules(&policy.allowed_gadgets)?;
    trust::check_allowed(
        &rules,
        reference,
        &[&image.index_digest, &image.manifest_digest],
    )
    .map_err(|source| RunError::Refused {
        reference: reference.clone(),
        source,
    })?;

    let why = match (policy.verify, image.origin) {
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
    #[cfg(not(feature = "signing"))]
    {
        let _ = (pull, registry);
        Err(RunError::NoSigning {
            reference: reference.clone(),
            why,
        })
    }
    #[cfg(feature = "signing")]
    verify_before_load(policy, pull, registry, image, why)
}

/// The signature check of [`check_before_load`], once it is known to be
/// needed (`why`).
#[cfg(feature = "signing")]
fn verify_before_load(
    policy: &VerifyPolicy,
    pull: PullPolicy,
    registry: &RegistryConfig,
    image: &StoredImage,
    why: String,
) -> Result<(), RunError> {
    let reference = &image.reference;
    let keys = load_public_keys(&policy.public_keys)?;
    let unverified = |source| RunError::Unverified {
        reference: reference.clone(),
        why: why.clone(),
        source,
    };
    let store = Store::open_read_only(&image.store)?;
    let digest = &image.index_digest;
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
    if pull == PullPolicy::Never {
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
        match fetch_signature(&image.store, reference, digest, registry) {
            SignatureFetch::Stored(r) => {
                log::debug!("fetched the signatures {}", names(&r));
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
        return Err(unverified(e));
    }
    Err(unverified(trust::TrustError::Unsigned {
        reference: reference.to_string(),
        digest: digest.clone(),
        tag: trust::signature_tag(digest),
        where_: looked,
    }))
}

#[cfg(feature = "signing")]
fn log_verified(reference: &Reference, verified: &trust::Verified) {
    log::debug!(
        "{reference}: signature verified with {} ({}, {}{})",
        verified.key,
        verified.form.describe(),
        verified.source,
        verified
            .docker_reference
            .as_ref()
            .map(|r| format!(", signed as {r}"))
            .unwrap_or_default()
    );
}

/// Every signature the store holds for the image with top-level digest
/// `digest`, in every form: the layers of each `sha256-<hex>.sig`
/// signature image and the signature referrers listed by each
/// `sha256-<hex>` referrers index, in any repository (those of
/// `reference`'s first). Also the names read, and why any of them could
/// not be read (one damaged signature must not hide the others).
pub fn stored_signatures(
    store: &Store,
    reference: &Reference,
    digest: &Digest,
) -> Result<StoredSignatures, ImageError> {
    let mut out = StoredSignatures::default();
    let repository = reference.repository();
    let tags = store.find_signatures(&repository, digest)?;
    let indexes = store.find_referrers(&repository, digest)?;
    let read = tags
        .into_iter()
        .map(|r| (r, false))
        .chain(indexes.into_iter().map(|r| (r, true)));
    for (name, is_index) in read {
        let found = if is_index {
            stored_referrers(store, &name)
        } else {
            stored_layers(store, &name).map(|layers| {
                layers
                    .into_iter()
                    .map(|l| trust::FoundSignature {
                        form: trust::SignatureForm::Tag,
                        source: name.to_string(),
                        signed: trust::Signed::Simple(l),
                    })
                    .collect()
            })
        };
        match found {
            Ok(found) => {
                for f in found {
                    if !out.signatures.iter().any(|x| x.signed == f.signed) {
                        out.signatures.push(f);
                    }
                }
            }
            // One damaged signature image must not hide the others.
            Err(e) => out
                .broken
                .push(format!("{name}: {}", super::error_chain(&e))),
        }
        out.read.push(name);
    }
    Ok(out)
}

/// What [`stored_signatures`] found.
#[derive(Debug, Clone, Default)]
pub struct StoredSignatures {
    /// Every signature, each once.
    pub signatures: Vec<trust::FoundSignature>,
    /// The signature images and referrers indexes read.
    pub read: Vec<Reference>,
    /// Those that could not be read, and why.
    pub broken: Vec<String>,
}

/// The signatures held by the referrers listed in the stored referrers
/// index `index`.
fn stored_referrers(
    store: &Store,
    index: &Reference,
) -> Result<Vec<trust::FoundSignature>, SignatureError> {
    let (top, blobs) = store
        .image_blobs(index)
        .map_err(|source| SignatureError::Read {
            reference: index.clone(),
            source,
        })?;
    let find = |d: &crate::image::Digest| {
        blobs
            .iter()
            .find(|b| b.descriptor.digest == *d)
            .map(|b| b.bytes.as_slice())
    };
    let listed: crate::image::oci::Index =
        serde_json::from_slice(find(&top.digest).unwrap_or_default()).map_err(|e| {
            trust::TrustError::MalformedSignatureImage {
                digest: top.digest.clone(),
                message: format!("not an OCI image index: {e}"),
            }
        })?;
    let mut out = Vec::new();
    for entry in listed
        .manifests
        .iter()
        .take(trust::referrers::MAX_REFERRERS)
    {
        if !trust::referrers::may_be_signature(entry.artifact_type.as_deref()) {
            continue;
        }
        let Some(manifest) = find(&entry.digest) else {
            continue;
        };
        out.extend(trust::referrers::referrer_signatures(
            &entry.digest,
            manifest,
            |d| find(&d.digest).map(<[u8]>::to_vec),
        )?);
    }
    Ok(out)
}

#[cfg(feature = "signing")]
/// Tries every signature the store holds for `digest` (every form, every
/// signature image and referrer). `None` when there is none; otherwise
/// the first that verifies, or why each one was refused.
fn verify_stored(
    store: &Store,
    reference: &Reference,
    digest: &Digest,
    keys: &[PublicKey],
) -> Result<Option<Result<trust::Verified, trust::TrustError>>, RunError> {
    let found = stored_signatures(store, reference, digest)?;
    if found.read.is_empty() {
        return Ok(None);
    }
    log::debug!(
        "{reference}: {} signature(s) in {}",
        found.signatures.len(),
        found
            .read
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Some(verify_stored_signatures(
        found, reference, digest, keys,
    )))
}

#[cfg(feature = "signing")]
/// [`trust::verify_found`] over what [`stored_signatures`] found; the
/// signature images it could not read are among the reasons of a refusal.
pub fn verify_stored_signatures(
    found: StoredSignatures,
    reference: &Reference,
    digest: &Digest,
    keys: &[PublicKey],
) -> Result<trust::Verified, trust::TrustError> {
    match trust::verify_found(&reference.to_string(), digest, &found.signatures, keys) {
        Err(trust::TrustError::Untrusted {
            reference,
            digest,
            mut reasons,
        }) => {
            reasons.extend(found.broken);
            Err(trust::TrustError::Untrusted {
                reference,
                digest,
                reasons,
            })
        }
        other => other,
    }
}

#[cfg(feature = "signing")]
/// Adds the signatures of `before` that the signature image `sig_ref`
/// (just fetched over them) lacks, so a fetch never loses one.
fn merge_signatures(
    store_path: &Path,
    store: &Store,
    sig_ref: &Reference,
    before: Vec<SignatureLayer>,
) -> Result<(), RunError> {
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
            .map_err(|source| RunError::StoreSignature {
                reference: sig_ref.clone(),
                source,
            })?;
    }
    Ok(())
}

#[cfg(feature = "signing")]
/// Reads public keys: PEM text given inline, else files. None given:
/// upstream's built-in key ([`trust::UPSTREAM_PUBLIC_KEY`]), as upstream's
/// `--public-keys` defaults to it; keys given replace it.
pub fn load_public_keys(values: &[String]) -> Result<Vec<PublicKey>, RunError> {
    if values.iter().all(|v| v.trim().is_empty()) {
        return Ok(PublicKey::upstream());
    }
    let mut keys = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if v.contains("-----BEGIN") {
            keys.extend(PublicKey::all_from_pem(
                v,
                &format!("--public-keys value {}", i + 1),
            )?);
        } else {
            let text = std::fs::read_to_string(v).map_err(|source| RunError::PublicKeyFile {
                path: PathBuf::from(v),
                source,
            })?;
            keys.extend(PublicKey::all_from_pem(&text, v)?);
        }
    }
    Ok(keys)
}
