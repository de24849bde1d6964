//! The local image store: an OCI image layout directory.
//!
//! ```text
//! <root>/                  mode 0700
//!   oci-layout             {"imageLayoutVersion":"1.0.0"}
//!   index.json             one descriptor per tag; the tag is the annotation
//!                          org.opencontainers.image.ref.name = full normalized ref
//!   index.json.lock        flock target (shared with upstream ig)
//!   blobs/sha256/<hex>     content-addressed blobs
//!   ingest/ig-tmp-*        temp files of writes in progress, and the
//!                          session directories of pulls in progress
//!                          (`store/ingest.rs`)
//! ```
//!
//! Owns: writing gadget images in upstream's format (image index → one
//! manifest per platform → config + layers), resolving a reference to
//! verified bytes, listing, tagging, removing with garbage collection, and
//! the locking and crash-safety that make all of this safe with several
//! `ig` processes at once. Does not own: the network (pull/push), compiling
//! (clang), or what the config means (`gadget.yaml` bytes are opaque here).
//! The store path comes from the caller; nothing here reads the environment.
//!
//! Blobs of a pull stream into an ingest session ([`Ingest`]) outside the
//! lock and are committed under it, so a download never holds the store.
//!
//! Partial images: a pull stores an image index whole but only the
//! manifest of the host's platform. Manifests an index names that are not
//! in the store are therefore normal, not corruption: resolving, listing,
//! inspecting, signing and removing work on what is there, and resolving
//! for an absent platform says it was not pulled. Exporting or pushing
//! one is refused ([`ImageError::IncompletePlatforms`]); anything else
//! missing (a layer of a present manifest) is an error as before.
//!
//! Each `index.json` entry written here records where the image came from
//! (annotation [`ANNOTATION_ORIGIN`]: built, pulled or imported), which
//! `ig run` uses to decide whether to verify signatures. Signature images
//! (cosign's `sha256-<hex>.sig` tags, see `trust`) and referrers indexes
//! (the OCI 1.1 tag schema's `sha256-<hex>`, holding signatures in the
//! referrer forms) are ordinary entries; [`Store::find_signatures`] and
//! [`Store::find_referrers`] find those of a digest, and `list` hides
//! them.
//!
//! Concurrency: every mutation takes an exclusive `flock` on
//! `index.json.lock` for its whole duration — blob writes included, so a
//! garbage collection in another process can never delete blobs of an
//! image that is being added but not yet named in `index.json`. Readers
//! take a shared lock while they read, so blobs do not vanish under them.
//!
//! Crash safety: blobs and `index.json` are written to a temp file under
//! `ingest/`, fsynced and renamed into place, so a crash leaves either the
//! old or the new file, plus at most a temp file that a later write removes
//! once it is ten minutes old.
//!
//! Garbage collection (`remove`, `prune`) deletes a blob only when it has
//! read every image of `index.json` (`Store::reachable`): an index or
//! manifest that cannot be read, or an `index.json` missing over blobs,
//! stops it before anything changes, naming the image or file.
//!
//! Hygiene (`store/hygiene.rs`): `ig image prune` removes every temp file
//! and unreferenced blob under the lock, and a store another user owns or
//! can write (the directory, `blobs/`, `ingest/`, `index.json`) is
//! refused (for reading, root's is accepted).

mod fsutil;
mod hygiene;
mod index_file;
mod ingest;

pub use hygiene::PruneReport;
pub use ingest::{BlobWriter, Ingest};

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use index_file::IndexFile;

use super::digest::Digest;
use super::error::{ImageError, Mismatch};
use super::limits::{MAX_ANNOTATIONS, MAX_INDEX_FILE, MAX_JSON, max_layer};
use super::oci::{
    self, ANNOTATION_CREATED, ANNOTATION_REF_NAME, ARTIFACT_TYPE_GADGET, Annotations, Descriptor,
    EMPTY_JSON, IMAGE_LAYOUT_VERSION, ImageLayout, Index, MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_GADGET_BTFGEN, MEDIA_TYPE_GADGET_CONFIG,
    MEDIA_TYPE_GADGET_EBPF, MEDIA_TYPE_GADGET_WASM, MEDIA_TYPE_IMAGE_INDEX,
    MEDIA_TYPE_IMAGE_MANIFEST, Manifest, Platform, TopLevel,
};
use super::reference::Reference;
use super::trust::{self, Origin};

/// Where root's store lives (upstream's path). The CLI decides which path
/// to use (`IG_STORE`, per-user stores) and passes it to [`Store::open`].
pub const DEFAULT_STORE: &str = "/var/lib/ig/oci-store";

/// Annotation on an `index.json` entry recording where the image came
/// from ([`Origin`]): `ig run` verifies signatures by default for anything
/// not built here. Only in the store's own `index.json`; never pushed or
/// exported (the manifests themselves are untouched).
pub const ANNOTATION_ORIGIN: &str = "dev.ig.origin";

const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LOCK_FILE: &str = "index.json.lock";
const BLOBS_DIR: &str = "blobs";
const INGEST_DIR: &str = "ingest";

/// The parts of a single-platform gadget image, for [`Store::add_gadget_image`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GadgetImage {
    /// Raw `gadget.yaml`; empty means "no metadata" (the config becomes
    /// the OCI empty descriptor, as upstream does).
    pub config_yaml: Vec<u8>,
    /// The eBPF object; empty for a gadget without one (no eBPF layer, as
    /// upstream builds gadgets made of operators only).
    pub ebpf_object: Vec<u8>,
    /// The WASM module, if the gadget has one.
    pub wasm: Option<Vec<u8>>,
    /// Set on the config descriptor, the manifest, its index entry, the
    /// index and the `index.json` entry. The caller supplies title,
    /// description, url, documentation, source, created and builder
    /// version; nothing is added here.
    pub annotations: Annotations,
}

/// The objects of one platform of a multi-platform image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformObjects {
    /// OCI architecture name (`amd64`, `arm64`), see [`oci::oci_architecture`].
    pub architecture: String,
    /// Empty: no eBPF layer.
    pub ebpf_object: Vec<u8>,
    /// The WASM module, if any.
    pub wasm: Option<Vec<u8>>,
    /// tar.gz of minimized BTFs, if the builder ran btfgen.
    pub btfgen: Option<Vec<u8>>,
}

/// An image read back from the store, every blob verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The reference that was asked for (full normalized form).
    pub reference: Reference,
    /// Digest of the `index.json` entry: the image index, or the manifest
    /// itself when the entry is a plain manifest. This is what signatures
    /// cover and what `ig image list` shows.
    pub index_digest: Digest,
    /// Digest of the manifest picked for the platform.
    pub manifest_digest: Digest,
    /// The manifest picked for the platform.
    pub manifest: Manifest,
    /// `gadget.yaml` bytes; empty when the config is the empty descriptor.
    pub config_yaml: Vec<u8>,
    /// The eBPF object, if the image has one.
    pub ebpf_object: Option<Vec<u8>>,
    /// The WASM module, if the image has one.
    pub wasm: Option<Vec<u8>>,
    /// The btfgen tarball, if the image has one.
    pub btfgen: Option<Vec<u8>>,
    /// The manifest's annotations (the index entry's when it has none).
    pub annotations: Annotations,
    /// `org.opencontainers.image.created`, if present.
    pub created: Option<String>,
    /// Layers with media types we do not know; the CLI should warn.
    pub skipped: Vec<Descriptor>,
    /// Where the image came from; `None` when the store has no record
    /// (written by an older ig or another tool).
    pub origin: Option<Origin>,
}

/// One row of `ig image list`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageSummary {
    /// Full repository (`ghcr.io/inspektor-gadget/gadget/trace_exec`); see
    /// [`super::reference::short_repository`] for the display form.
    pub repository: String,
    /// The tag, if the entry has one.
    pub tag: Option<String>,
    /// Digest of the `index.json` entry (the image index).
    pub digest: Digest,
    /// `org.opencontainers.image.created`, if present.
    pub created: Option<String>,
    /// The full reference.
    pub reference: Reference,
    /// Why the image cannot be used, if it cannot: a blob it needs is
    /// missing or has the wrong size, or a manifest or index is corrupt
    /// or unreadable. Layers are not hashed here (`ig image inspect` and
    /// `ig run` verify them), so a changed layer of the right size shows
    /// only there.
    pub problem: Option<String>,
}

/// A blob and the descriptor it was verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// The descriptor it was checked against.
    pub descriptor: Descriptor,
    /// Its content.
    pub bytes: Vec<u8>,
}

/// Handle on a store directory. Cheap; holds no open files or locks, so
/// several handles (threads, processes) can use one directory at once.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    read_only: bool,
}

impl Store {
    /// Opens the store at `root`, creating the directory (mode 0700, parents
    /// included), `oci-layout` and an empty `index.json` as needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let store = Store {
            root: root.into(),
            read_only: false,
        };
        hygiene::check_store(&store.root, false)?;
        for dir in [
            store.root.clone(),
            store.root.join(BLOBS_DIR).join("sha256"),
            store.ingest_dir(),
        ] {
            fsutil::create_dir_all(&dir).map_err(|e| ImageError::io("creating", &dir, e))?;
        }
        store.check_layout(true)?;
        // A new store gets an empty index. One whose index is missing but
        // that holds blobs does not: an empty index would make the next
        // collection delete every blob. `read_index` refuses it instead.
        if store.index_missing() {
            let _lock = store.lock()?;
            if store.index_missing() && !store.has_blobs() {
                store.write_index(&IndexFile::default())?;
            }
        }
        Ok(store)
    }

    /// Opens an existing store without ever writing to it (for example
    /// another user's store under sudo). A missing directory reads as an
    /// empty store; every mutation fails with [`ImageError::ReadOnly`].
    pub fn open_read_only(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let store = Store {
            root: root.into(),
            read_only: true,
        };
        hygiene::check_store(&store.root, true)?;
        store.check_layout(false)?;
        Ok(store)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a blob inside this store (it may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.blob_rel_path())
    }

    // ---------------------------------------------------------------- writing

    /// Writes a gadget image for the host's architecture and tags it
    /// `reference`. Returns the descriptor now in `index.json`.
    pub fn add_gadget_image(
        &self,
        reference: &Reference,
        parts: GadgetImage,
    ) -> Result<Descriptor, ImageError> {
        let platform = PlatformObjects {
            architecture: oci::host_architecture().to_owned(),
            ebpf_object: parts.ebpf_object,
            wasm: parts.wasm,
            btfgen: None,
        };
        self.add_multi_platform_image(
            reference,
            &parts.config_yaml,
            &parts.annotations,
            &[platform],
        )
    }

    /// Writes a gadget image with one manifest per platform (sorted by
    /// architecture, as upstream does) sharing one config, and tags it.
    pub fn add_multi_platform_image(
        &self,
        reference: &Reference,
        config_yaml: &[u8],
        annotations: &Annotations,
        platforms: &[PlatformObjects],
    ) -> Result<Descriptor, ImageError> {
        let (top, blobs) = build_gadget_image(config_yaml, annotations, platforms)?;
        let mut tagged = self.commit(
            &[(reference.clone(), top.clone())],
            blobs,
            false,
            Origin::Built,
        )?;
        Ok(tagged.pop().unwrap_or(top))
    }

    /// Adds an arbitrary image (from a pull or an archive import): writes
    /// `blobs` (stored under their sha256), checks that everything `top`
    /// references is now present and intact, and tags `top` as
    /// `reference`. On a missing or corrupt blob `index.json` is left as
    /// it was.
    ///
    /// `reference` may also be a digest-only reference (`name@sha256:…`,
    /// from a pull by digest) naming `top` itself: the image is then
    /// recorded under that name, which `resolve` finds and `list` shows
    /// without a tag.
    pub fn import(
        &self,
        reference: &Reference,
        top: &Descriptor,
        blobs: impl IntoIterator<Item = Vec<u8>>,
        origin: Origin,
    ) -> Result<Descriptor, ImageError> {
        let mut tagged = self.import_all(&[(reference.clone(), top.clone())], blobs, origin)?;
        Ok(tagged.pop().unwrap_or_else(|| top.clone()))
    }

    /// [`Store::import`] for several images at once (an archive): every
    /// closure is checked before `index.json` is written, once, so either
    /// all images are added or none is.
    pub fn import_all(
        &self,
        images: &[(Reference, Descriptor)],
        blobs: impl IntoIterator<Item = Vec<u8>>,
        origin: Origin,
    ) -> Result<Vec<Descriptor>, ImageError> {
        self.commit(images, blobs.into_iter().collect(), true, origin)
    }

    fn commit(
        &self,
        images: &[(Reference, Descriptor)],
        blobs: Vec<Vec<u8>>,
        verify_closure: bool,
        origin: Origin,
    ) -> Result<Vec<Descriptor>, ImageError> {
        self.writable()?;
        for (reference, top) in images {
            let digest_names_top = verify_closure
                && reference.tag().is_none()
                && reference.digest() == Some(&top.digest);
            if reference.digest().is_some() && !digest_names_top {
                return Err(ImageError::TagWithDigest {
                    reference: reference.to_string(),
                });
            }
        }
        let _lock = self.write_lock()?;
        // An index that cannot be read fails the write before any blob is
        // added.
        let index = self.read_index()?;

        let mut written = BTreeSet::new();
        for blob in &blobs {
            let digest = Digest::sha256_of(blob);
            if written.insert(digest.clone()) {
                self.write_blob(&digest, blob)?;
            }
        }
        if verify_closure {
            for (reference, top) in images {
                self.closure(top, &reference.to_string())?;
            }
        }

        self.record(index, images, origin)
    }

    /// Names `images` in `index` (read under the lock the caller holds)
    /// and writes it: the last step of every write. The caller has
    /// checked that every blob of the images is in place.
    fn record(
        &self,
        mut index: IndexFile,
        images: &[(Reference, Descriptor)],
        origin: Origin,
    ) -> Result<Vec<Descriptor>, ImageError> {
        for (reference, top) in images {
            let mut entry = top.clone();
            entry.annotations.remove(ANNOTATION_REF_NAME);
            entry
                .annotations
                .insert(ANNOTATION_ORIGIN.to_owned(), origin.as_str().to_owned());
            index.set(&reference.to_string(), entry);
        }
        self.write_index(&index)?;
        Ok(images
            .iter()
            .map(|(reference, top)| {
                index
                    .find_by_name(&reference.to_string())
                    .cloned()
                    .unwrap_or_else(|| top.clone())
            })
            .collect())
    }

    /// Writes one blob (always rewriting it, which also repairs a corrupt
    /// copy). Caller holds the exclusive lock.
    fn write_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), ImageError> {
        let path = self.blob_path(digest);
        if let Some(dir) = path.parent() {
            fsutil::create_dir_all(dir).map_err(|e| ImageError::io("creating", dir, e))?;
        }
        fsutil::write_atomic(&self.ingest_dir(), &path, bytes)
            .map_err(|e| ImageError::io("writing blob", &path, e))
    }

    /// Points the tag `dst` at the image `src` names.
    pub fn tag(&self, src: &Reference, dst: &Reference) -> Result<Descriptor, ImageError> {
        self.writable()?;
        if dst.digest().is_some() {
            return Err(ImageError::TagWithDigest {
                reference: dst.to_string(),
            });
        }
        let _lock = self.write_lock()?;
        let mut index = self.read_index()?;
        let mut desc = self.find_top(&index, src)?;
        desc.annotations.remove(ANNOTATION_REF_NAME);
        index.set(&dst.to_string(), desc);
        self.write_index(&index)?;
        self.find_top(&index, dst)
    }

    /// Removes the tag `reference` (or, for `name@digest`, every tag of
    /// that repository pointing at the digest) and deletes the blobs no
    /// other entry of `index.json` still reaches. Returns the descriptor
    /// that was removed.
    pub fn remove(&self, reference: &Reference) -> Result<Descriptor, ImageError> {
        let _lock = self.write_lock()?;
        let mut index = self.read_index()?;
        let name = reference.to_string();

        let mut names = Vec::new();
        if index.find_by_name(&name).is_some() {
            names.push(name);
        } else if let Some(digest) = reference.digest() {
            for d in index.descriptors() {
                let same_repo = d
                    .ref_name()
                    .and_then(|n| Reference::parse(n).ok())
                    .is_some_and(|r| r.repository() == reference.repository());
                if same_repo && d.digest == *digest {
                    names.extend(d.ref_name().map(str::to_owned));
                }
            }
        }
        let mut removed = None;
        for n in &names {
            removed = index.remove_name(n).or(removed);
        }
        let Some(removed) = removed else {
            return Err(self.not_found(reference));
        };
        if !index.descriptors().any(|d| d.digest == removed.digest) {
            index.remove_unnamed_with_digest(&removed.digest);
        }
        // What the remaining images use is known before anything changes:
        // if it cannot be (an unreadable manifest), the tag stays too.
        let keep = self.reachable(&index)?;
        self.write_index(&index)?;
        self.delete_unreachable(&keep);
        Ok(removed)
    }

    /// Deletes blobs that no `index.json` entry reaches any more (left
    /// behind when a tag is moved to a new image; `remove` collects on its
    /// own). Returns how many were deleted. Deletes nothing when an image's
    /// manifest cannot be read ([`ImageError::UnknownReferences`]).
    pub fn prune(&self) -> Result<usize, ImageError> {
        let _lock = self.write_lock()?;
        let index = self.read_index()?;
        let keep = self.reachable(&index)?;
        Ok(self.delete_unreachable(&keep))
    }

    // ---------------------------------------------------------------- reading

    /// Resolves `reference` for the host's architecture.
    pub fn resolve(&self, reference: &Reference) -> Result<ResolvedImage, ImageError> {
        self.resolve_for_arch(reference, oci::host_architecture())
    }

    /// Resolves `reference` and reads the manifest for `architecture`
    /// (exact match, as upstream; a plain manifest is taken as is).
    pub fn resolve_for_arch(
        &self,
        reference: &Reference,
        architecture: &str,
    ) -> Result<ResolvedImage, ImageError> {
        let _lock = self.lock_shared();
        let index = self.read_index()?;
        let top = self.find_top(&index, reference)?;
        let name = reference.to_string();

        let top_bytes = self.read_blob(&top, &name, Some(MAX_JSON), "manifest")?;
        let top_parsed = oci::parse_top_level(&top.media_type, &top_bytes)
            .map_err(|e| self.json_err("image index or manifest", &top.digest, e))?;
        let (manifest_desc, manifest) = match top_parsed {
            TopLevel::Manifest(m) => (top.clone(), *m),
            TopLevel::Index(idx) => {
                let Some(desc) = oci::pick_platform(&idx, architecture) else {
                    return Err(ImageError::NoMatchingPlatform {
                        reference: name,
                        architecture: architecture.to_owned(),
                        available: oci::architectures(&idx),
                    });
                };
                let bytes = match self.read_blob(desc, &name, Some(MAX_JSON), "manifest") {
                    // A pull fetches the host's platform only.
                    Err(ImageError::MissingBlob { .. }) => {
                        return Err(ImageError::PlatformNotPulled {
                            reference: name,
                            architecture: architecture.to_owned(),
                        });
                    }
                    other => other?,
                };
                match oci::parse_top_level(&desc.media_type, &bytes)
                    .map_err(|e| self.json_err("manifest", &desc.digest, e))?
                {
                    TopLevel::Manifest(m) => (desc.clone(), *m),
                    TopLevel::Index(_) => {
                        return Err(ImageError::UnsupportedMediaType {
                            reference: name,
                            what: "manifest (nested index)",
                            media_type: desc.media_type.clone(),
                        });
                    }
                }
            }
        };

        let config_yaml = if manifest.config.is_empty_json() {
            Vec::new()
        } else if manifest.config.media_type == MEDIA_TYPE_GADGET_CONFIG {
            self.read_blob(&manifest.config, &name, Some(MAX_JSON), "config")?
        } else {
            return Err(ImageError::UnsupportedMediaType {
                reference: name,
                what: "config",
                media_type: manifest.config.media_type.clone(),
            });
        };

        let mut layers: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
        let mut skipped = Vec::new();
        for layer in &manifest.layers {
            let kind = match layer.media_type.as_str() {
                t
                @ (MEDIA_TYPE_GADGET_EBPF | MEDIA_TYPE_GADGET_WASM | MEDIA_TYPE_GADGET_BTFGEN) => t,
                _ => {
                    skipped.push(layer.clone());
                    continue;
                }
            };
            if layers.contains_key(kind) {
                return Err(ImageError::DuplicateLayer {
                    reference: name,
                    media_type: kind.to_owned(),
                });
            }
            let bytes = self.read_blob(layer, &name, Some(max_layer()), "layer")?;
            layers.insert(kind, bytes);
        }

        let mut annotations = manifest.annotations.clone();
        if annotations.is_empty() {
            annotations = top.annotations.clone();
            annotations.remove(ANNOTATION_REF_NAME);
            annotations.remove(ANNOTATION_ORIGIN);
        }
        let created = annotations.get(ANNOTATION_CREATED).cloned();
        Ok(ResolvedImage {
            reference: reference.clone(),
            index_digest: top.digest.clone(),
            manifest_digest: manifest_desc.digest.clone(),
            ebpf_object: layers.remove(MEDIA_TYPE_GADGET_EBPF),
            wasm: layers.remove(MEDIA_TYPE_GADGET_WASM),
            btfgen: layers.remove(MEDIA_TYPE_GADGET_BTFGEN),
            manifest,
            config_yaml,
            annotations,
            created,
            skipped,
            origin: top
                .annotations
                .get(ANNOTATION_ORIGIN)
                .and_then(|o| Origin::parse(o)),
        })
    }

    /// Whether `reference` names an image in the store (by tag, or by
    /// digest for `name@digest`).
    pub fn contains(&self, reference: &Reference) -> Result<bool, ImageError> {
        let _lock = self.lock_shared();
        let index = self.read_index()?;
        match self.find_top(&index, reference) {
            Ok(_) => Ok(true),
            Err(ImageError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Turns user input into a stored reference: a reference naming an
    /// image in the store, or else a digest prefix (`3f2a`, `sha256:3f2a…`)
    /// of exactly one listed image.
    pub fn find(&self, input: &str) -> Result<Reference, ImageError> {
        let parsed = Reference::parse(input);
        if let Ok(r) = &parsed
            && self.contains(r)?
        {
            return Ok(r.clone());
        }
        let prefix = input.strip_prefix("sha256:").unwrap_or(input);
        let is_hex = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if is_hex {
            let hits: Vec<ImageSummary> = self
                .list()?
                .into_iter()
                .filter(|s| s.digest.hex().starts_with(prefix))
                .collect();
            let digests: BTreeSet<&Digest> = hits.iter().map(|s| &s.digest).collect();
            match digests.len() {
                0 => {}
                1 => return Ok(hits[0].reference.clone()),
                _ => {
                    return Err(ImageError::AmbiguousDigest {
                        prefix: input.to_owned(),
                        matches: hits.iter().map(|s| s.reference.to_string()).collect(),
                    });
                }
            }
        }
        match parsed {
            Ok(r) => Err(self.not_found(&r)),
            Err(e) => Err(e.into()),
        }
    }

    /// Every tagged image, sorted by repository, tag and digest. Entries
    /// that are not ours to show are skipped, not errors: unnamed entries,
    /// names that are not normalized references (tags written by other
    /// tools) and cosign signature/attestation tags.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let _lock = self.lock_shared();
        let index = self.read_index()?;
        let mut out = Vec::new();
        for desc in index.descriptors() {
            let Some(name) = desc.ref_name() else {
                continue;
            };
            let Ok(reference) = Reference::parse(name) else {
                continue;
            };
            if reference.to_string() != name || reference.tag().is_some_and(is_cosign_tag) {
                continue;
            }
            out.push(ImageSummary {
                repository: reference.repository(),
                tag: reference.tag().map(str::to_owned),
                digest: desc.digest.clone(),
                created: self.created_of(desc),
                problem: self
                    .walk(desc, name, Keep::Presence, &BTreeSet::new())
                    .err()
                    .map(|e| problem_of(&e)),
                reference,
            });
        }
        out.sort();
        Ok(out)
    }

    /// Every blob of the image `reference` names, top descriptor first,
    /// each verified: what an export or a push sends. An image whose index
    /// has platforms that were not pulled is refused
    /// ([`ImageError::IncompletePlatforms`]): sending it would publish an
    /// index naming manifests that do not come with it.
    pub fn image_blobs(
        &self,
        reference: &Reference,
    ) -> Result<(Descriptor, Vec<StoredBlob>), ImageError> {
        let (top, blobs, absent) = self.image_blobs_present(reference)?;
        if !absent.is_empty() {
            let index = blobs
                .iter()
                .find(|b| b.descriptor.digest == top.digest)
                .and_then(|b| oci::parse_top_level(&top.media_type, &b.bytes).ok());
            let all = match index {
                Some(TopLevel::Index(i)) => oci::architectures(&i),
                _ => Vec::new(),
            };
            let missing = platform_names(&absent);
            return Err(ImageError::IncompletePlatforms {
                reference: reference.to_string(),
                present: all.into_iter().filter(|a| !missing.contains(a)).collect(),
                missing,
            });
        }
        Ok((top, blobs))
    }

    /// [`Store::image_blobs`] for an image that may lack platforms (a
    /// pull fetches only the host's): also returns the descriptors of the
    /// index's manifests that are not in the store. What is present is
    /// verified all the same.
    pub fn image_blobs_present(
        &self,
        reference: &Reference,
    ) -> Result<(Descriptor, Vec<StoredBlob>, Vec<Descriptor>), ImageError> {
        self.image_walk(reference, Keep::Bytes)
    }

    /// [`Store::image_blobs`] without holding layers in memory (an export
    /// or a push streams them): indexes and manifests come with their
    /// bytes (they are parsed), every other blob is verified in pieces
    /// and comes with empty `bytes`; [`Store::open_blob`] reads it.
    pub fn image_blobs_streamed(
        &self,
        reference: &Reference,
    ) -> Result<(Descriptor, Vec<StoredBlob>), ImageError> {
        let (top, blobs, absent) = self.image_walk(reference, Keep::Documents)?;
        if !absent.is_empty() {
            // The same refusal, with the platforms named.
            return self.image_blobs(reference);
        }
        Ok((top, blobs))
    }

    fn image_walk(
        &self,
        reference: &Reference,
        keep: Keep,
    ) -> Result<(Descriptor, Vec<StoredBlob>, Vec<Descriptor>), ImageError> {
        let _lock = self.lock_shared();
        let index = self.read_index()?;
        let mut top = self.find_top(&index, reference)?;
        let walk = self.walk(&top, &reference.to_string(), keep, &BTreeSet::new())?;
        top.annotations.remove(ANNOTATION_ORIGIN);
        Ok((top, walk.blobs, walk.absent))
    }

    /// The blob `desc` names as a reader that checks its size and digest
    /// as it goes: a file that changed since it was verified ends in an
    /// error, never in other bytes passed on as the blob. Opened without
    /// following a link. What an export or a push streams.
    pub fn open_blob(&self, desc: &Descriptor) -> Result<BlobReader, ImageError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.blob_path(&desc.digest);
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| ImageError::io("reading", &path, e))?;
        Ok(BlobReader {
            file,
            hasher: desc.digest.hasher_like(),
            desc: desc.clone(),
            read: 0,
            done: false,
        })
    }

    /// The stored signature image (cosign's `sha256-<hex>.sig` tag) of the
    /// image with top-level digest `digest`: the one in `repository` if
    /// there is one, else one in any repository (a signature covers a
    /// digest, not a name; see [`trust`]).
    pub fn find_signature(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<Reference>, ImageError> {
        Ok(self.find_signatures(repository, digest)?.into_iter().next())
    }

    /// Every stored signature image of the image with top-level digest
    /// `digest`, in any repository: the one of `repository` first, then the
    /// others by name. A verifier tries them all: the image may have been
    /// signed under several names, by several keys.
    pub fn find_signatures(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<Reference>, ImageError> {
        self.find_tagged(repository, &trust::signature_tag(digest))
    }

    /// Every stored referrers index (OCI 1.1 tag schema, tag
    /// `sha256-<hex>`) of the image with top-level digest `digest`, in any
    /// repository, the one of `repository` first: where the image's
    /// signatures in the OCI 1.1 forms are kept (see
    /// [`trust::referrers`]).
    pub fn find_referrers(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<Reference>, ImageError> {
        self.find_tagged(repository, &trust::referrers_tag(digest))
    }

    fn find_tagged(&self, repository: &str, tag: &str) -> Result<Vec<Reference>, ImageError> {
        let _lock = self.lock_shared();
        let index = self.read_index()?;
        let mut found: Vec<Reference> = index
            .descriptors()
            .filter_map(|d| d.ref_name())
            .filter_map(|n| Reference::parse(n).ok())
            .filter(|r| r.tag() == Some(tag) && r.digest().is_none())
            .collect();
        found.sort_by_key(|r| (r.repository() != repository, r.to_string()));
        found.dedup();
        Ok(found)
    }

    /// Reads a blob and checks it against its descriptor.
    pub fn read_verified(&self, desc: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let _lock = self.lock_shared();
        self.read_blob(desc, &desc.digest.to_string(), Some(max_layer()), "blob")
    }

    // ---------------------------------------------------------------- internals

    fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join(INGEST_DIR)
    }

    fn writable(&self) -> Result<(), ImageError> {
        if self.read_only {
            return Err(ImageError::ReadOnly {
                path: self.root.clone(),
            });
        }
        Ok(())
    }

    fn lock(&self) -> Result<fsutil::FileLock, ImageError> {
        let path = self.root.join(LOCK_FILE);
        fsutil::lock_exclusive(&path).map_err(|e| ImageError::io("locking", path, e))
    }

    /// What every mutation starts with: refuse on a read-only handle, take
    /// the exclusive lock, and clear temp files of writers that died (safe
    /// now: no live writer of ours can be mid-write while we hold the lock,
    /// and the age limit spares other tools' writes).
    fn write_lock(&self) -> Result<fsutil::FileLock, ImageError> {
        self.writable()?;
        let lock = self.lock()?;
        fsutil::remove_stale_temps(&self.ingest_dir(), fsutil::STALE_TEMP_AGE);
        Ok(lock)
    }

    fn lock_shared(&self) -> Option<fsutil::FileLock> {
        fsutil::lock_shared(&self.root.join(LOCK_FILE))
    }

    fn not_found(&self, reference: &Reference) -> ImageError {
        ImageError::NotFound {
            reference: reference.to_string(),
            store: self.root.clone(),
        }
    }

    fn json_err(&self, what: &'static str, digest: &Digest, e: serde_json::Error) -> ImageError {
        ImageError::Json {
            what,
            path: self.blob_path(digest),
            source: e,
        }
    }

    /// Checks `oci-layout`, writing it when missing if `create`.
    fn check_layout(&self, create: bool) -> Result<(), ImageError> {
        let path = self.root.join(LAYOUT_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let layout: ImageLayout =
                    serde_json::from_slice(&bytes).map_err(|e| ImageError::Json {
                        what: "oci-layout",
                        path: path.clone(),
                        source: e,
                    })?;
                if layout.image_layout_version != IMAGE_LAYOUT_VERSION {
                    return Err(ImageError::UnsupportedLayout {
                        path,
                        version: layout.image_layout_version,
                    });
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                let bytes = serde_json::to_vec(&ImageLayout {
                    image_layout_version: IMAGE_LAYOUT_VERSION.to_owned(),
                })
                .unwrap_or_default();
                fsutil::write_atomic(&self.ingest_dir(), &path, &bytes)
                    .map_err(|e| ImageError::io("writing", &path, e))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io("reading", path, e)),
        }
    }

    /// Reads `index.json`. A missing file is an empty store only when the
    /// store holds no blob: otherwise the names of its images are lost,
    /// and taking it for empty would let a collection delete every blob.
    fn read_index(&self) -> Result<IndexFile, ImageError> {
        let path = self.index_path();
        match read_capped(&path, MAX_INDEX_FILE) {
            Ok(Err(size)) => Err(ImageError::IndexTooLarge {
                path,
                size,
                limit: MAX_INDEX_FILE,
                existing: true,
            }),
            Ok(Ok(bytes)) => IndexFile::parse(&bytes).map_err(|e| ImageError::Json {
                what: "index",
                path,
                source: e,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.has_blobs() {
                    return Err(ImageError::IndexMissing {
                        path,
                        store: self.root.clone(),
                    });
                }
                Ok(IndexFile::default())
            }
            Err(e) => Err(ImageError::io("reading", path, e)),
        }
    }

    /// Whether `index.json` is known to be absent (not merely unreadable).
    fn index_missing(&self) -> bool {
        matches!(fs::symlink_metadata(self.index_path()), Err(e) if e.kind() == io::ErrorKind::NotFound)
    }

    /// Whether `blobs/` holds any blob (a file named by a digest). A
    /// directory that cannot be read counts as holding some: nothing is
    /// decided on what could not be seen.
    fn has_blobs(&self) -> bool {
        let algorithms = match fs::read_dir(self.root.join(BLOBS_DIR)) {
            Ok(a) => a,
            Err(e) => return e.kind() != io::ErrorKind::NotFound,
        };
        algorithms.flatten().any(|alg| {
            let name = alg.file_name().to_string_lossy().into_owned();
            match fs::read_dir(alg.path()) {
                Ok(files) => files.flatten().any(|f| {
                    Digest::parse(&format!("{name}:{}", f.file_name().to_string_lossy())).is_ok()
                }),
                Err(e) => e.kind() != io::ErrorKind::NotFound,
            }
        })
    }

    /// Replaces `index.json` atomically. Caller holds the exclusive lock.
    fn write_index(&self, index: &IndexFile) -> Result<(), ImageError> {
        let path = self.index_path();
        let bytes = index.to_bytes();
        if bytes.len() as u64 > MAX_INDEX_FILE {
            return Err(ImageError::IndexTooLarge {
                path,
                size: bytes.len() as u64,
                limit: MAX_INDEX_FILE,
                existing: false,
            });
        }
        fsutil::write_atomic(&self.ingest_dir(), &path, &bytes)
            .map_err(|e| ImageError::io("writing", path, e))
    }

    /// The `index.json` descriptor `reference` designates: the entry with
    /// its name (unless a digest in the reference says otherwise), else an
    /// entry with the reference's digest (same repository preferred), else
    /// a blob with that digest on disk.
    fn find_top(&self, index: &IndexFile, reference: &Reference) -> Result<Descriptor, ImageError> {
        let name = reference.to_string();
        if let Some(d) = index.find_by_name(&name)
            && reference.digest().is_none_or(|want| *want == d.digest)
        {
            return Ok(d.clone());
        }
        let Some(digest) = reference.digest() else {
            return Err(self.not_found(reference));
        };
        let same_repo = |d: &&Descriptor| {
            d.ref_name()
                .and_then(|n| Reference::parse(n).ok())
                .is_some_and(|r| r.repository() == reference.repository())
        };
        let candidates: Vec<&Descriptor> = index
            .descriptors()
            .filter(|d| d.digest == *digest)
            .collect();
        if let Some(d) = candidates
            .iter()
            .copied()
            .find(same_repo)
            .or(candidates.first().copied())
        {
            return Ok(d.clone());
        }
        // Not in index.json but maybe stored (a manifest digest, say).
        let path = self.blob_path(digest);
        let Ok(meta) = fs::metadata(&path) else {
            return Err(self.not_found(reference));
        };
        if meta.len() > MAX_JSON {
            return Err(self.not_found(reference));
        }
        let bytes = fs::read(&path).map_err(|e| ImageError::io("reading", &path, e))?;
        let media_type = match oci::parse_top_level("", &bytes) {
            Ok(TopLevel::Index(_)) => MEDIA_TYPE_IMAGE_INDEX,
            Ok(TopLevel::Manifest(_)) => MEDIA_TYPE_IMAGE_MANIFEST,
            Err(_) => return Err(self.not_found(reference)),
        };
        Ok(Descriptor {
            size: meta.len(),
            digest: digest.clone(),
            ..Descriptor::for_bytes(media_type, &[])
        })
    }

    /// Reads the blob `desc` names and verifies size and digest. `limit`
    /// caps the size for blobs that are parsed in memory.
    fn read_blob(
        &self,
        desc: &Descriptor,
        reference: &str,
        limit: Option<u64>,
        what: &'static str,
    ) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(&desc.digest);
        let corrupt = |mismatch| ImageError::DigestMismatch {
            digest: desc.digest.clone(),
            path: path.clone(),
            mismatch,
        };
        if let Some(limit) = limit
            && desc.size > limit
        {
            return Err(ImageError::BlobTooLarge {
                what,
                digest: desc.digest.clone(),
                size: desc.size,
                limit,
            });
        }
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::MissingBlob {
                    reference: reference.to_owned(),
                    digest: desc.digest.clone(),
                    path,
                });
            }
            Err(e) => return Err(ImageError::io("reading", path, e)),
        };
        // Checked before reading so a huge stray file is never loaded.
        if meta.len() != desc.size {
            return Err(corrupt(Mismatch::Size {
                expected: desc.size,
                actual: meta.len(),
            }));
        }
        // Never more than the descriptor's size, even if the file grew
        // since.
        let bytes = match read_capped(&path, desc.size) {
            Ok(Ok(bytes)) if bytes.len() as u64 == desc.size => bytes,
            Ok(Ok(bytes)) => {
                return Err(corrupt(Mismatch::Size {
                    expected: desc.size,
                    actual: bytes.len() as u64,
                }));
            }
            Ok(Err(actual)) => {
                return Err(corrupt(Mismatch::Size {
                    expected: desc.size,
                    actual,
                }));
            }
            Err(e) => return Err(ImageError::io("reading", &path, e)),
        };
        let actual = desc.digest.compute_like(&bytes);
        if actual != desc.digest {
            return Err(corrupt(Mismatch::Hash { actual }));
        }
        Ok(bytes)
    }

    /// All blobs reachable from `top` (itself included), verified. Errors on
    /// the first missing or corrupt one, absent platforms included.
    fn closure(&self, top: &Descriptor, reference: &str) -> Result<Vec<StoredBlob>, ImageError> {
        let walk = self.walk(top, reference, Keep::Bytes, &BTreeSet::new())?;
        if let Some(desc) = walk.absent.first() {
            return Err(ImageError::MissingBlob {
                reference: reference.to_owned(),
                digest: desc.digest.clone(),
                path: self.blob_path(&desc.digest),
            });
        }
        Ok(walk.blobs)
    }

    /// Checks that everything `top` reaches is present and intact, except
    /// platform manifests of an index (absent ones were not pulled), for
    /// a pull's commit. Blobs are hashed in pieces, never held whole;
    /// those in `trusted` were verified as they were written and only
    /// their size is checked. Caller holds the exclusive lock.
    fn check_present(
        &self,
        top: &Descriptor,
        reference: &str,
        trusted: &BTreeSet<&Digest>,
    ) -> Result<(), ImageError> {
        self.walk(top, reference, Keep::Documents, trusted)
            .map(|_| ())
    }

    /// Walks the graph under `top` depth first, verifying every blob.
    /// Platform manifests of an index that are not in the store are
    /// collected in [`Walk::absent`], not errors; anything else missing
    /// or corrupt is.
    fn walk(
        &self,
        top: &Descriptor,
        reference: &str,
        keep: Keep,
        trusted: &BTreeSet<&Digest>,
    ) -> Result<Walk, ImageError> {
        let mut out = Walk::default();
        let mut seen = BTreeSet::new();
        // (descriptor, reached from an index)
        let mut stack = vec![(top.clone(), false)];
        while let Some((desc, in_index)) = stack.pop() {
            if !seen.insert(desc.digest.clone()) {
                continue;
            }
            let json = is_index_or_manifest(&desc.media_type);
            let read = if json || keep == Keep::Bytes {
                self.read_blob(
                    &desc,
                    reference,
                    Some(if json { MAX_JSON } else { max_layer() }),
                    "manifest",
                )
            } else if desc.size > max_layer() {
                // Not read here, but no reader would take it: the same
                // limit for every command.
                Err(ImageError::BlobTooLarge {
                    what: "layer",
                    digest: desc.digest.clone(),
                    size: desc.size,
                    limit: max_layer(),
                })
            } else {
                let sizes_only = keep == Keep::Presence || trusted.contains(&desc.digest);
                self.check_blob_file(&desc, reference, sizes_only)
                    .map(|()| Vec::new())
            };
            let bytes = match read {
                // The empty config may live only inline in its descriptor.
                Err(ImageError::MissingBlob { .. })
                    if desc.is_empty_json() && desc.digest.matches(EMPTY_JSON) =>
                {
                    EMPTY_JSON.to_vec()
                }
                Err(ImageError::MissingBlob { .. }) if in_index && json => {
                    out.absent.push(desc);
                    continue;
                }
                other => other?,
            };
            if json {
                match oci::parse_top_level(&desc.media_type, &bytes)
                    .map_err(|e| self.json_err("manifest", &desc.digest, e))?
                {
                    TopLevel::Index(i) => {
                        stack.extend(i.manifests.into_iter().rev().map(|d| (d, true)))
                    }
                    TopLevel::Manifest(m) => {
                        stack.extend(m.layers.into_iter().rev().map(|d| (d, false)));
                        stack.push((m.config, false));
                    }
                }
            }
            out.blobs.push(StoredBlob {
                descriptor: desc,
                bytes,
            });
        }
        Ok(out)
    }

    /// Checks a blob file against `desc` without reading it whole: its
    /// size, and unless `trusted`, its digest (read in pieces).
    fn check_blob_file(
        &self,
        desc: &Descriptor,
        reference: &str,
        trusted: bool,
    ) -> Result<(), ImageError> {
        let path = self.blob_path(&desc.digest);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::MissingBlob {
                    reference: reference.to_owned(),
                    digest: desc.digest.clone(),
                    path,
                });
            }
            Err(e) => return Err(ImageError::io("reading", path, e)),
        };
        if meta.len() != desc.size {
            return Err(ImageError::DigestMismatch {
                digest: desc.digest.clone(),
                path,
                mismatch: Mismatch::Size {
                    expected: desc.size,
                    actual: meta.len(),
                },
            });
        }
        if trusted {
            return Ok(());
        }
        ingest::verify_file(&path, desc)
    }

    /// Every blob the entries of `index` reach: the entries themselves and,
    /// through every index and manifest, their manifests, configs and
    /// layers. Caller holds the exclusive lock.
    ///
    /// Strict on purpose: a blob is deleted only when it is known that no
    /// image uses it. So every document on the way must be read, intact
    /// (its digest checked) and parsed; one that cannot be (an I/O error,
    /// a directory in its place, invalid JSON, an entry whose blob is
    /// gone) is [`ImageError::UnknownReferences`], naming the image, and
    /// the caller changes nothing. The exceptions are what is normal in a
    /// store: a platform manifest an index names but a pull skipped
    /// (absent), and an entry we cannot parse whose blob is absent or is
    /// not an index or manifest (it protects only itself).
    fn reachable(&self, index: &IndexFile) -> Result<BTreeSet<Digest>, ImageError> {
        struct Node<'a> {
            digest: Digest,
            /// `None` for an entry we cannot parse: its type is unknown.
            media_type: Option<String>,
            /// The `index.json` entry it was reached from, for messages.
            image: &'a str,
            root: bool,
        }
        let names: Vec<String> = index.entries.iter().map(index_file::Entry::name).collect();
        let mut stack: Vec<Node> = Vec::new();
        for (entry, image) in index.entries.iter().zip(&names) {
            let (digest, media_type) = match &entry.desc {
                Some(d) => (d.digest.clone(), Some(d.media_type.clone())),
                // An entry we cannot parse still protects what it names.
                None => match entry.raw_digest().and_then(|s| Digest::parse(s).ok()) {
                    Some(d) => (d, None),
                    None => continue,
                },
            };
            stack.push(Node {
                digest,
                media_type,
                image,
                root: true,
            });
        }
        let mut reachable: BTreeSet<Digest> = BTreeSet::new();
        while let Some(node) = stack.pop() {
            if !reachable.insert(node.digest.clone()) {
                continue;
            }
            let known = node.media_type.as_deref();
            if known.is_some_and(|t| !is_index_or_manifest(t)) {
                continue;
            }
            let unknown = |cause: ImageError| ImageError::UnknownReferences {
                image: node.image.to_owned(),
                cause: Box::new(cause),
            };
            let path = self.blob_path(&node.digest);
            let bytes = match self.read_document(&node.digest, known.is_none()) {
                Ok(Some(b)) => b,
                // Not pulled (a platform of an index), or an entry of
                // unknown type that names nothing stored.
                Ok(None) if !node.root || known.is_none() => continue,
                Ok(None) => {
                    return Err(unknown(ImageError::MissingBlob {
                        reference: node.image.to_owned(),
                        digest: node.digest,
                        path,
                    }));
                }
                Err(e) => return Err(unknown(e)),
            };
            let parsed = oci::parse_top_level(known.unwrap_or_default(), &bytes);
            let children: Vec<Descriptor> = match parsed {
                Ok(TopLevel::Index(i)) => i.manifests,
                Ok(TopLevel::Manifest(m)) => std::iter::once(m.config).chain(m.layers).collect(),
                // Of unknown type: a blob that is not a document.
                Err(_) if known.is_none() => continue,
                Err(e) => return Err(unknown(self.json_err("manifest", &node.digest, e))),
            };
            stack.extend(children.into_iter().map(|d| Node {
                digest: d.digest,
                media_type: Some(d.media_type),
                image: node.image,
                root: false,
            }));
        }
        Ok(reachable)
    }

    /// Reads the document blob `digest` for [`Store::reachable`], its
    /// digest checked: `None` when absent. One larger than any manifest is
    /// an error, or, when `lenient` (its type is unknown), `None`.
    fn read_document(&self, digest: &Digest, lenient: bool) -> Result<Option<Vec<u8>>, ImageError> {
        let path = self.blob_path(digest);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ImageError::io("reading", path, e)),
        };
        if meta.len() > MAX_JSON {
            if lenient {
                return Ok(None);
            }
            return Err(ImageError::BlobTooLarge {
                what: "manifest",
                digest: digest.clone(),
                size: meta.len(),
                limit: MAX_JSON,
            });
        }
        let bytes = fs::read(&path).map_err(|e| ImageError::io("reading", &path, e))?;
        let actual = digest.compute_like(&bytes);
        if actual != *digest {
            return Err(ImageError::DigestMismatch {
                digest: digest.clone(),
                path,
                mismatch: Mismatch::Hash { actual },
            });
        }
        Ok(Some(bytes))
    }

    /// Deletes the blob files not in `keep` (from [`Store::reachable`],
    /// under the same exclusive lock). A failed deletion is left for the
    /// next collection. Returns how many were deleted.
    fn delete_unreachable(&self, keep: &BTreeSet<Digest>) -> usize {
        let mut deleted = 0;
        let Ok(algorithms) = fs::read_dir(self.root.join(BLOBS_DIR)) else {
            return 0;
        };
        for alg in algorithms.flatten() {
            let Ok(files) = fs::read_dir(alg.path()) else {
                continue;
            };
            let alg_name = alg.file_name().to_string_lossy().into_owned();
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                // Files that are not digests (another tool's temp files)
                // are not ours to delete.
                let Ok(digest) = Digest::parse(&format!("{alg_name}:{name}")) else {
                    continue;
                };
                if !keep.contains(&digest) && fs::remove_file(file.path()).is_ok() {
                    deleted += 1;
                }
            }
        }
        deleted
    }

    /// The creation time of a listed image: from its `index.json` entry,
    /// else from the host manifest (or the first one) of the image.
    fn created_of(&self, top: &Descriptor) -> Option<String> {
        if let Some(c) = top.annotations.get(ANNOTATION_CREATED) {
            return Some(c.clone());
        }
        let bytes = self.read_blob(top, "", Some(MAX_JSON), "manifest").ok()?;
        match oci::parse_top_level(&top.media_type, &bytes).ok()? {
            TopLevel::Manifest(m) => m.annotations.get(ANNOTATION_CREATED).cloned(),
            TopLevel::Index(i) => {
                if let Some(c) = i.annotations.get(ANNOTATION_CREATED) {
                    return Some(c.clone());
                }
                let desc =
                    oci::pick_platform(&i, oci::host_architecture()).or(i.manifests.first())?;
                if let Some(c) = desc.annotations.get(ANNOTATION_CREATED) {
                    return Some(c.clone());
                }
                let bytes = self.read_blob(desc, "", Some(MAX_JSON), "manifest").ok()?;
                let m: Manifest = serde_json::from_slice(&bytes).ok()?;
                m.annotations.get(ANNOTATION_CREATED).cloned()
            }
        }
    }
}

/// A stored blob read in pieces, checked against its descriptor as it is
/// read ([`Store::open_blob`]).
#[derive(Debug)]
pub struct BlobReader {
    file: fs::File,
    hasher: super::digest::Hasher,
    desc: Descriptor,
    read: u64,
    /// The end was reached and checked.
    done: bool,
}

impl BlobReader {
    fn changed(&self, what: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "blob {} changed since it was verified: {what}",
                self.desc.digest
            ),
        )
    }
}

impl io::Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        // One byte past the size is asked for, to see a file that grew.
        let left = (self.desc.size - self.read).saturating_add(1);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            if self.read != self.desc.size {
                return Err(self.changed(format!("{} bytes, not {}", self.read, self.desc.size)));
            }
            let actual =
                std::mem::replace(&mut self.hasher, self.desc.digest.hasher_like()).finish();
            if actual != self.desc.digest {
                return Err(self.changed(format!("its content hashes to {actual}")));
            }
            self.done = true;
            return Ok(0);
        }
        self.read += n as u64;
        if self.read > self.desc.size {
            return Err(self.changed(format!("longer than {} bytes", self.desc.size)));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What [`Store::walk`] keeps of the blobs it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Every blob's bytes (push, export).
    Bytes,
    /// Only indexes' and manifests' (they must be parsed); other blobs are
    /// verified in pieces and dropped.
    Documents,
    /// As `Documents`, but other blobs are only checked to be there with
    /// their size (`ig image list`: cheap whatever the layers' size).
    Presence,
}

/// What is wrong with a listed image, short enough for a table cell.
fn problem_of(e: &ImageError) -> String {
    match e {
        ImageError::MissingBlob { digest, .. } => format!("blob {} missing", digest.short()),
        ImageError::DigestMismatch { digest, .. } => format!("blob {} corrupt", digest.short()),
        ImageError::Json { .. } => "manifest unreadable (invalid JSON)".to_owned(),
        ImageError::Io { .. } => "manifest unreadable".to_owned(),
        ImageError::BlobTooLarge { digest, .. } => {
            format!("blob {} too large", digest.short())
        }
        other => other.to_string(),
    }
}

/// What [`Store::walk`] found.
#[derive(Debug, Default)]
struct Walk {
    blobs: Vec<StoredBlob>,
    /// Manifests an index names that are not in the store (platforms that
    /// were not pulled).
    absent: Vec<Descriptor>,
}

/// The architectures of platform descriptors (`?` for one without).
fn platform_names(descs: &[Descriptor]) -> Vec<String> {
    descs
        .iter()
        .map(|d| {
            d.platform
                .as_ref()
                .map(|p| p.architecture.clone())
                .unwrap_or_else(|| "?".to_owned())
        })
        .collect()
}

fn is_index_or_manifest(media_type: &str) -> bool {
    matches!(
        media_type,
        MEDIA_TYPE_IMAGE_INDEX
            | MEDIA_TYPE_IMAGE_MANIFEST
            | MEDIA_TYPE_DOCKER_MANIFEST_LIST
            | MEDIA_TYPE_DOCKER_MANIFEST
    )
}

/// Tags cosign stores next to images: `sha256-<hex>.sig|.att|.sbom`.
fn is_cosign_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    // `sha256-<hex>` (the OCI 1.1 referrers tag schema) and cosign's
    // `sha256-<hex>.sig`, `.att`, `.sbom`.
    let hex = rest.split('.').next().unwrap_or_default();
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Serializes one of our JSON documents. Our types hold only strings,
/// numbers and maps with string keys, so this cannot fail.
fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Builds the documents of a gadget image in upstream's layout. Returns
/// the descriptor of the image index and every blob to store.
fn build_gadget_image(
    config_yaml: &[u8],
    annotations: &Annotations,
    platforms: &[PlatformObjects],
) -> Result<(Descriptor, Vec<Vec<u8>>), ImageError> {
    if platforms.is_empty() {
        return Err(ImageError::NoPlatforms);
    }
    // What readers refuse is never written (see `limits`).
    let cap = |what, size: usize, limit, hint| {
        if size as u64 > limit {
            return Err(ImageError::PartTooLarge {
                what,
                size: size as u64,
                limit,
                hint,
            });
        }
        Ok(())
    };
    cap("config", config_yaml.len(), MAX_JSON, "gadget.yaml")?;
    cap(
        "annotations",
        to_json(annotations).len(),
        MAX_ANNOTATIONS,
        "gadget.yaml's name, description and homepageURL, copied into every manifest and the store's index",
    )?;
    for p in platforms {
        let layers = [Some(&p.ebpf_object), p.wasm.as_ref(), p.btfgen.as_ref()];
        for layer in layers.into_iter().flatten() {
            cap(
                "layer",
                layer.len(),
                max_layer(),
                "the eBPF object, WASM module or btfgen data",
            )?;
        }
    }
    let mut sorted: Vec<&PlatformObjects> = platforms.iter().collect();
    sorted.sort_by(|a, b| a.architecture.cmp(&b.architecture));
    sorted.dedup_by(|a, b| a.architecture == b.architecture);
    if sorted.len() != platforms.len() {
        return Err(ImageError::DuplicatePlatform);
    }

    let mut blobs = Vec::new();
    let mut config = if config_yaml.is_empty() {
        blobs.push(EMPTY_JSON.to_vec());
        Descriptor::empty_json()
    } else {
        blobs.push(config_yaml.to_vec());
        Descriptor::for_bytes(MEDIA_TYPE_GADGET_CONFIG, config_yaml)
    };
    config.annotations = annotations.clone();

    let mut manifests = Vec::new();
    for p in sorted {
        let mut layers = Vec::new();
        let objects = [
            (
                MEDIA_TYPE_GADGET_EBPF,
                (!p.ebpf_object.is_empty()).then_some(&p.ebpf_object),
            ),
            (MEDIA_TYPE_GADGET_WASM, p.wasm.as_ref()),
            (MEDIA_TYPE_GADGET_BTFGEN, p.btfgen.as_ref()),
        ];
        for (media_type, bytes) in objects {
            if let Some(bytes) = bytes {
                layers.push(Descriptor::for_bytes(media_type, bytes));
                blobs.push(bytes.clone());
            }
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_IMAGE_MANIFEST.to_owned()),
            artifact_type: Some(ARTIFACT_TYPE_GADGET.to_owned()),
            config: config.clone(),
            layers,
            subject: None,
            annotations: annotations.clone(),
        };
        let bytes = to_json(&manifest);
        cap(
            "manifest",
            bytes.len(),
            MAX_JSON,
            "its layers and annotations",
        )?;
        let mut desc = Descriptor::for_bytes(MEDIA_TYPE_IMAGE_MANIFEST, &bytes);
        desc.platform = Some(Platform::linux(&p.architecture));
        desc.annotations = annotations.clone();
        manifests.push(desc);
        blobs.push(bytes);
    }

    let index = Index::of(manifests, annotations.clone());
    let bytes = to_json(&index);
    cap(
        "index",
        bytes.len(),
        MAX_JSON,
        "its manifests and annotations",
    )?;
    let mut top = Descriptor::for_bytes(MEDIA_TYPE_IMAGE_INDEX, &bytes);
    top.annotations = annotations.clone();
    blobs.push(bytes);
    Ok((top, blobs))
}

/// [`super::limits::read_capped`] of the file at `path`, opened without
/// following a link, even one planted after the store was checked.
fn read_capped(path: &Path, limit: u64) -> io::Result<Result<Vec<u8>, u64>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    super::limits::read_capped(file, limit)
}

#[cfg(test)]
mod tests;
