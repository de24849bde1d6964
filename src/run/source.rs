//! Where a run's gadget comes from: an image of a store (pulled as the
//! policy says), an OCI archive, or its parts in memory. Whatever the
//! source, the result is the same plain data ([`Resolved`]), which is
//! `Send`: the operators are made from it on the run's thread.

use std::path::PathBuf;

use super::RunError;
use super::policy::{self, PullPolicy, RegistryConfig, StoredImage};
use crate::image::registry::Progress;
use crate::image::{ImageError, Reference, Store};

/// A gadget's parts, for [`super::GadgetRun::from_bytes`].
#[derive(Clone, Debug, Default)]
pub struct GadgetBytes {
    /// The eBPF object (ELF), if the gadget has one.
    pub object: Option<Vec<u8>>,
    /// `gadget.yaml` (empty: none).
    pub gadget_yaml: Vec<u8>,
    /// The WASM module, if any.
    pub wasm: Option<Vec<u8>>,
}

pub(super) enum ImageSource {
    Store {
        store: PathBuf,
        image: String,
    },
    Bytes(GadgetBytes),
    Archive {
        path: PathBuf,
        image: Option<String>,
        /// The private store the archive was read into, kept (and
        /// removed) with the run.
        store: Option<crate::files::TempDir>,
    },
}

/// The parts of the gadget a run runs.
pub(super) struct Resolved {
    /// The gadget as the caller named it (`running gadget NAME`).
    pub given: String,
    /// Its full name (an image's normalized reference).
    pub name: String,
    /// How messages name its `gadget.yaml`.
    pub file: String,
    pub gadget_yaml: Vec<u8>,
    pub object: Option<Vec<u8>>,
    pub wasm: Option<Vec<u8>>,
    /// Where compiled WASM modules are kept (`None`: compiled each time).
    pub wasm_cache: Option<PathBuf>,
    /// An image of a store, which the trust policy checks before load.
    pub stored: Option<StoredImage>,
}

impl ImageSource {
    /// The gadget as named before it is read.
    pub fn name(&self) -> String {
        match self {
            ImageSource::Store { image, .. } => image.clone(),
            ImageSource::Archive {
                image: Some(image), ..
            } => image.clone(),
            ImageSource::Archive { path, .. } => path.display().to_string(),
            ImageSource::Bytes(b) => name_in_yaml(&b.gadget_yaml),
        }
    }

    pub fn resolve(
        &mut self,
        pull: PullPolicy,
        registry: &RegistryConfig,
        allowed: &[String],
        progress: &mut dyn Progress,
    ) -> Result<Resolved, RunError> {
        match self {
            ImageSource::Store { store, image } => {
                let reference = Reference::parse(image)?;
                // A name the allowed-gadgets rules refuse is not even pulled.
                policy::check_name_before_pull(allowed, &reference)?;
                policy::ensure_present(store, &reference, pull, registry, progress)?;
                from_store(store.clone(), image, reference)
            }
            ImageSource::Archive { path, image, store } => {
                let archive = path.clone();
                let fail = |source: Box<dyn std::error::Error + Send + Sync>| RunError::Archive {
                    path: archive.clone(),
                    source,
                };
                let dir = crate::files::TempDir::new("ig-archive-")
                    .map_err(|(_, e)| fail(Box::new(e)))?;
                let s = Store::open(dir.path()).map_err(|e| fail(Box::new(e)))?;
                let imported =
                    crate::image::archive::import_file(&s, path).map_err(|e| fail(Box::new(e)))?;
                let reference = match image {
                    Some(i) => Reference::parse(i)?,
                    None => match imported.images.as_slice() {
                        [(r, _)] => r.clone(),
                        many => {
                            let names: Vec<String> =
                                many.iter().map(|(r, _)| r.to_string()).collect();
                            return Err(fail(
                                format!(
                                    "it holds several images ({}): name the one to run",
                                    names.join(", ")
                                )
                                .into(),
                            ));
                        }
                    },
                };
                policy::check_name_before_pull(allowed, &reference)?;
                let shown = reference.to_string();
                let r = from_store(dir.path().to_owned(), &shown, reference);
                *store = Some(dir);
                r
            }
            ImageSource::Bytes(b) => {
                let name = name_in_yaml(&b.gadget_yaml);
                Ok(Resolved {
                    file: "gadget.yaml".to_owned(),
                    given: name.clone(),
                    name,
                    gadget_yaml: b.gadget_yaml.clone(),
                    object: b.object.clone(),
                    wasm: b.wasm.clone(),
                    wasm_cache: None,
                    stored: None,
                })
            }
        }
    }
}

/// `reference` of the store at `store` (`image` as the caller named it).
fn from_store(store: PathBuf, image: &str, reference: Reference) -> Result<Resolved, RunError> {
    let s = Store::open_read_only(&store)?;
    let resolved = match s.resolve(&reference) {
        Ok(i) => i,
        Err(source @ ImageError::NotFound { .. }) => {
            return Err(RunError::NotFound {
                image: image.to_owned(),
                source,
            });
        }
        Err(source) => return Err(RunError::ReadImage { reference, source }),
    };
    for skipped in &resolved.skipped {
        log::warn!(
            "image {reference}: ignoring layer of unknown media type {}",
            skipped.media_type
        );
    }
    Ok(Resolved {
        given: image.to_owned(),
        name: reference.to_string(),
        file: format!("gadget.yaml of {reference}"),
        gadget_yaml: resolved.config_yaml,
        object: resolved.ebpf_object,
        wasm: resolved.wasm,
        wasm_cache: crate::operators::wasm::cache_dir(s.root()),
        stored: Some(StoredImage {
            store,
            reference,
            index_digest: resolved.index_digest,
            manifest_digest: resolved.manifest_digest,
            origin: resolved.origin,
        }),
    })
}

/// The `name` of a `gadget.yaml`, or `gadget` when it has none.
fn name_in_yaml(yaml: &[u8]) -> String {
    crate::metadata::GadgetMetadata::parse(yaml, "gadget.yaml")
        .ok()
        .map(|m| m.name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "gadget".to_owned())
}
