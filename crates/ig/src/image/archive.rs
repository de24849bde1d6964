//! `ig image export` / `ig image import`: images as a tar of an OCI image
//! layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`), the format
//! skopeo calls `oci-archive:` and upstream `ig` writes.
//!
//! Owns: writing such a tar from images of the store (each named in
//! `index.json` by the annotation `org.opencontainers.image.ref.name`
//! holding its full normalized reference, as upstream does), and reading
//! one back: every blob is streamed into an ingest session of the store
//! (`store::Ingest`: on disk, hashed as it is written, never whole in
//! memory) and checked against the digest its path names, every image's
//! graph is checked against its descriptors before the store's index is
//! touched, and the session then adds all images in one `index.json`
//! write. An export streams each blob from its store file into the tar.
//! An exported image's cosign signature (`repo:sha256-<hex>.sig`, see
//! `trust`) and its OCI 1.1 signature referrers (the tag schema's index
//! `repo:sha256-<hex>`) are written next to it, and come back like any
//! named image.
//! Does not own: the store's own layout and locking (`store`), or what
//! each kind of destination file becomes (`crate::files::Destination`:
//! replaced atomically, streamed to, or refused).
//!
//! Exports are reproducible: entries are sorted, and owners, modes and
//! times are fixed, so the same images give the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::error::{ImageError, Mismatch};
use super::oci::Descriptor;
use super::oci::{
    self, ANNOTATION_REF_NAME, EMPTY_JSON, IMAGE_LAYOUT_VERSION, ImageLayout, Index,
    MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_IMAGE_INDEX,
    MEDIA_TYPE_IMAGE_MANIFEST, TopLevel,
};
use super::reference::Reference;
use super::store::{Ingest, Store};
use super::trust::{self, Origin};
use crate::files::{Destination, DestinationError, Target};
use crate::text::{Echo, EchoBare};

const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
/// Largest `index.json`, `oci-layout` or manifest read from an archive.
const MAX_JSON: u64 = super::limits::MAX_JSON;
/// Largest sum of an archive's blobs (they go to disk, not memory; this
/// is a pull's limit on one image).
const MAX_TOTAL: u64 = super::limits::MAX_IMAGE;

/// Why an OCI archive cannot be exported or imported.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading or writing the archive failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `path` is not an OCI image layout archive.
    #[error("{} is not an OCI image layout archive: {what}", path.display())]
    NotALayout {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        what: String,
    },
    /// `path`: unsupported OCI image layout version `version`.
    #[error("{}: unsupported OCI image layout version {}", path.display(), Echo(version))]
    UnsupportedLayout {
        /// The file.
        path: PathBuf,
        /// The version.
        version: String,
    },
    /// A JSON document of the archive is malformed.
    #[error("{}: malformed {what}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Which document.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// `path`: blob `digest` is corrupt.
    #[error("{}: blob {digest} is corrupt: {mismatch}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The digest.
        digest: Digest,
        /// How they differ.
        mismatch: Mismatch,
    },
    /// `path`: blob `digest` of image `reference` is missing from the archive.
    #[error("{}: blob {digest} of image {reference} is missing from the archive", path.display())]
    MissingBlob {
        /// The file.
        path: PathBuf,
        /// The image reference.
        reference: String,
        /// The digest.
        digest: Digest,
    },
    /// An entry of the archive is larger than allowed.
    #[error("{}: {what} {} is larger than {limit} bytes", path.display(), Echo(name))]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Which kind of entry.
        what: &'static str,
        /// The name.
        name: String,
        /// The limit.
        limit: u64,
    },
    /// `path`: image `reference` has unsupported media type `media_type`.
    #[error("{}: image {reference} has unsupported media type {}", path.display(), Echo(media_type))]
    UnsupportedMediaType {
        /// The file.
        path: PathBuf,
        /// The image reference.
        reference: String,
        /// The media type.
        media_type: String,
    },
    /// `path`: no image in the archive has a name (annotation
    /// `ANNOTATION_REF_NAME`).
    #[error("{}: no image in the archive has a name (annotation {ANNOTATION_REF_NAME})", path.display())]
    NoTaggedImages {
        /// The file.
        path: PathBuf,
    },
    /// An image name in the archive is not a valid reference.
    #[error("{}: image name {}: {source}", path.display(), Echo(name))]
    BadName {
        /// The file.
        path: PathBuf,
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: Box<super::reference::ReferenceError>,
    },
    /// Writing the archive to `target` failed.
    #[error("writing the archive to {target}: {source}")]
    Write {
        /// The target.
        target: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The destination is refused.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// The store.
    #[error(transparent)]
    Store(#[from] ImageError),
}

/// What an import added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The names now in the store, in archive order.
    pub images: Vec<(Reference, Digest)>,
    /// `index.json` entries without a name, which were not imported.
    pub untagged: usize,
}

/// An OCI layout read from a tar: its documents parsed, every blob
/// streamed into an ingest session of the store (never held whole in
/// memory) and verified against the digest its path names.
#[derive(Debug)]
pub struct Layout {
    /// `index.json`, if the archive has one.
    pub index: Option<Index>,
    /// The `oci-layout` file's `imageLayoutVersion`.
    pub layout_version: Option<String>,
    /// Every blob's size, by digest; the bytes wait in `ingest`.
    pub blobs: BTreeMap<Digest, u64>,
    ingest: Ingest,
}

impl Layout {
    /// The blob `digest` if the archive has it and it is a document
    /// (at most [`MAX_JSON`] bytes: what gets parsed).
    fn document(&self, digest: &Digest, path: &Path) -> Option<Result<Vec<u8>, ArchiveError>> {
        self.blobs.get(digest)?;
        let read = self.ingest.read_ready(digest, MAX_JSON)?;
        Some(match read {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(_)) => Err(ArchiveError::TooLarge {
                path: path.to_owned(),
                what: "manifest",
                name: digest.to_string(),
                limit: MAX_JSON,
            }),
            Err(e) => Err(e.into()),
        })
    }
}

/// What an export did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// The archive went to our stdout (`-`, or a path naming it such as
    /// `/dev/stdout`): messages must stay off it.
    pub to_stdout: bool,
}

/// Writes `images` of `store` as an OCI layout tar to `target`. A regular
/// file (or a new one) is replaced atomically: a temp file next to it,
/// renamed when complete. A device, a FIFO or stdout gets the tar as a
/// stream; anything else is refused ([`Destination`]). Every image is read
/// and verified before the destination is opened, so a FIFO's reader
/// never waits on a missing image.
pub fn export(
    store: &Store,
    images: &[Reference],
    target: Target<'_>,
) -> Result<Exported, ArchiveError> {
    let mut entries: Vec<(Reference, Descriptor)> = Vec::new();
    let mut blobs: BTreeMap<Digest, LayoutBlob> = BTreeMap::new();
    // Documents are held (they are small and parsed); every other blob is
    // verified now and streamed from its file into the tar later.
    let mut add = |stored: Vec<super::store::StoredBlob>| {
        for b in stored {
            let blob = if is_document(&b.descriptor.media_type) || !b.bytes.is_empty() {
                LayoutBlob::Bytes(b.bytes)
            } else {
                LayoutBlob::Stored(Box::new(b.descriptor.clone()))
            };
            blobs.entry(b.descriptor.digest).or_insert(blob);
        }
    };
    for r in images {
        if entries.iter().any(|(e, _)| e == r) {
            continue;
        }
        let (top, stored) = store.image_blobs_streamed(r)?;
        add(stored);
        let signed = top.digest.clone();
        entries.push((r.clone(), top));
        // The image's signature travels with it, named as cosign names it
        // next to the image's repository.
        // So do its OCI 1.1 signature referrers, as the tag schema's index.
        let sig = store.find_signature(&r.repository(), &signed)?;
        let sig_name = trust::signature_reference(r, &signed).map_err(ImageError::from)?;
        let referrers = store
            .find_referrers(&r.repository(), &signed)?
            .into_iter()
            .next();
        let referrers_name = r
            .with_tag(&trust::referrers_tag(&signed))
            .map_err(ImageError::from)?;
        for (stored_as, name) in [(sig, sig_name), (referrers, referrers_name)] {
            let Some(stored_as) = stored_as else {
                continue;
            };
            let (sig_top, stored) = store.image_blobs_streamed(&stored_as)?;
            add(stored);
            if !entries.iter().any(|(e, _)| *e == name) {
                entries.push((name, sig_top));
            }
        }
    }

    let mut dest = Destination::open(target)?;
    let to_stdout = dest.is_stdout();
    let mut out = io::BufWriter::with_capacity(1 << 20, &mut dest);
    write_layout(store, &entries, &blobs, &mut out)
        .and_then(|()| out.flush())
        .map_err(|source| ArchiveError::Write {
            target: target.to_string(),
            source,
        })?;
    drop(out);
    dest.finish()?;
    Ok(Exported { to_stdout })
}

/// A blob of an archive being written.
#[derive(Debug)]
pub enum LayoutBlob {
    /// Held in memory (a document).
    Bytes(Vec<u8>),
    /// In the store: streamed from its file, checked as it is read
    /// ([`Store::open_blob`]).
    Stored(Box<Descriptor>),
}

/// Writes the tar of an OCI layout holding `entries` (each named by its
/// reference) and `blobs` (those of `store` streamed from their files).
pub fn write_layout(
    store: &Store,
    entries: &[(Reference, Descriptor)],
    blobs: &BTreeMap<Digest, LayoutBlob>,
    out: impl Write,
) -> io::Result<()> {
    let mut manifests: Vec<Descriptor> = entries
        .iter()
        .map(|(r, top)| {
            let mut d = top.clone();
            d.annotations
                .insert(ANNOTATION_REF_NAME.to_owned(), r.to_string());
            d
        })
        .collect();
    manifests.sort_by(|a, b| a.ref_name().cmp(&b.ref_name()));
    let index = Index::of(manifests, Default::default());
    let index_bytes = serde_json::to_vec(&index).map_err(io::Error::other)?;
    let layout_bytes = serde_json::to_vec(&ImageLayout {
        image_layout_version: IMAGE_LAYOUT_VERSION.to_owned(),
    })
    .map_err(io::Error::other)?;

    let mut tar = tar::Builder::new(out);
    append_file(&mut tar, LAYOUT_FILE, &layout_bytes)?;
    append_file(&mut tar, INDEX_FILE, &index_bytes)?;
    let algorithms: BTreeSet<&str> = blobs.keys().map(|d| d.algorithm().as_str()).collect();
    append_dir(&mut tar, "blobs/")?;
    for alg in algorithms {
        append_dir(&mut tar, &format!("blobs/{alg}/"))?;
    }
    for (digest, blob) in blobs {
        let rel = digest.blob_rel_path();
        match blob {
            LayoutBlob::Bytes(bytes) => append_file(&mut tar, &rel.to_string_lossy(), bytes)?,
            LayoutBlob::Stored(desc) => {
                let reader = store.open_blob(desc).map_err(io::Error::other)?;
                let mut h = header(tar::EntryType::Regular, 0o644, desc.size);
                tar.append_data(&mut h, &*rel.to_string_lossy(), reader)?;
            }
        }
    }
    tar.into_inner()?.flush()
}

fn header(entry_type: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(entry_type);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append_file<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
    tar.append_data(&mut h, name, bytes)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, name, io::empty())
}

/// A tar reader's error about the archive's content quotes the archive
/// (`... when getting size for NAME`, NAME an entry's name): its text is
/// escaped whole, line breaks included, and cut ([`EchoBare`]), so an
/// entry named with escape sequences or a forged `hint:` line shows as
/// what it is. An error of the system (`EIO`) is kept as it is.
fn quoting_the_archive(e: io::Error) -> io::Error {
    if e.raw_os_error().is_some() || e.get_ref().is_none() {
        return e;
    }
    io::Error::new(e.kind(), EchoBare(&e.to_string()).to_string())
}

/// What `first` (the first bytes of a file, up to a tar block) is, when
/// it is not the start of a tar archive; `None` when it is one.
fn not_a_tar(first: &[u8]) -> Option<&'static str> {
    if first.is_empty() {
        return Some("the file is empty");
    }
    if first.starts_with(&[0x1f, 0x8b]) {
        return Some(
            "it is gzip-compressed data (decompress it first: an OCI archive is a plain tar)",
        );
    }
    if first.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Some(
            "it is zstd-compressed data (decompress it first: an OCI archive is a plain tar)",
        );
    }
    if first.len() >= 512 && first.iter().all(|&b| b == 0) {
        // Two zero blocks end a tar: an empty archive is still a tar.
        return None;
    }
    // A tar header's checksum: the sum of its bytes, the checksum field
    // counted as spaces, written in octal at offset 148.
    let valid_header = first.len() >= 512 && {
        let field = &first[148..156];
        let digits: String = field
            .iter()
            .map(|&b| b as char)
            .filter(|c| ('0'..='7').contains(c))
            .collect();
        let sum: u32 = first[..512]
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(b)
                }
            })
            .sum();
        u32::from_str_radix(&digits, 8).is_ok_and(|want| want == sum)
    };
    if valid_header {
        return None;
    }
    Some(if std::str::from_utf8(first).is_ok() {
        "it is text, not a tar archive"
    } else {
        "its first bytes are not a tar header"
    })
}

/// Reads an OCI layout tar into an ingest session of `store`: documents
/// (`oci-layout`, `index.json`, at most [`MAX_JSON`] each) are parsed,
/// every blob is streamed to disk in pieces and verified against the
/// digest its path names as it is written (at most `limits::max_layer()` each,
/// [`MAX_TOTAL`] in all); entries that are not part of a layout are
/// ignored. Memory stays bounded whatever the archive holds. `path` is
/// only used in errors. Nothing is added to the store until
/// [`import_layout`].
pub fn read_layout(store: &Store, input: impl Read, path: &Path) -> Result<Layout, ArchiveError> {
    let io_err = |source: io::Error| ArchiveError::Io {
        op: "reading archive",
        path: path.to_owned(),
        source: quoting_the_archive(source),
    };
    let too_large = |what, name: &str, limit| ArchiveError::TooLarge {
        path: path.to_owned(),
        what,
        name: name.to_owned(),
        limit,
    };
    // A file that is not a tar at all is said so, before the tar reader
    // quotes its bytes as a header's fields (`ig image import
    // /etc/passwd` printed the file).
    let mut input = io::BufReader::with_capacity(64 << 10, input);
    let mut first = Vec::with_capacity(512);
    (&mut input)
        .take(512)
        .read_to_end(&mut first)
        .map_err(io_err)?;
    if let Some(what) = not_a_tar(&first) {
        return Err(ArchiveError::NotALayout {
            path: path.to_owned(),
            what: what.to_owned(),
        });
    }
    let mut layout = Layout {
        index: None,
        layout_version: None,
        blobs: BTreeMap::new(),
        ingest: store.ingest()?,
    };
    let mut total: u64 = 0;
    let mut archive = tar::Archive::new(io::Read::chain(&first[..], input));
    let mut buf = vec![0u8; 256 << 10];
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().map_err(io_err)?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_owned();
        let size = entry.size();
        let short = |name: &str| {
            io_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("entry {} is shorter than its header says", Echo(name)),
            ))
        };
        let read_json = |entry: &mut tar::Entry<'_, _>| -> Result<Vec<u8>, ArchiveError> {
            if size > MAX_JSON {
                return Err(too_large("file", &name, MAX_JSON));
            }
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            entry
                .take(MAX_JSON + 1)
                .read_to_end(&mut bytes)
                .map_err(io_err)?;
            if bytes.len() as u64 != size {
                return Err(short(&name));
            }
            Ok(bytes)
        };
        if name == LAYOUT_FILE {
            let bytes = read_json(&mut entry)?;
            let l: ImageLayout =
                serde_json::from_slice(&bytes).map_err(|source| ArchiveError::Json {
                    path: path.to_owned(),
                    what: LAYOUT_FILE.into(),
                    source,
                })?;
            layout.layout_version = Some(l.image_layout_version);
        } else if name == INDEX_FILE {
            let bytes = read_json(&mut entry)?;
            let index: Index =
                serde_json::from_slice(&bytes).map_err(|source| ArchiveError::Json {
                    path: path.to_owned(),
                    what: INDEX_FILE.into(),
                    source,
                })?;
            layout.index = Some(index);
        } else if let Some(rest) = name.strip_prefix("blobs/")
            && let Some((alg, hex)) = rest.split_once('/')
            && let Ok(digest) = Digest::parse(&format!("{alg}:{hex}"))
        {
            let max_blob = super::limits::max_layer();
            if size > max_blob {
                return Err(too_large("blob", &name, max_blob));
            }
            total = total.saturating_add(size);
            if total > MAX_TOTAL {
                return Err(too_large("archive", "blobs", MAX_TOTAL));
            }
            if layout.blobs.contains_key(&digest) {
                continue;
            }
            // What the tar says of the blob: its path names the digest,
            // its header the size.
            let desc = Descriptor {
                media_type: "application/octet-stream".to_owned(),
                digest: digest.clone(),
                size,
                urls: Vec::new(),
                annotations: Default::default(),
                data: None,
                platform: None,
                artifact_type: None,
            };
            let corrupt = |e| match e {
                ImageError::Unverified {
                    mismatch: Mismatch::Size { .. },
                    ..
                } => short(&name),
                ImageError::Unverified { digest, mismatch } => ArchiveError::Corrupt {
                    path: path.to_owned(),
                    digest,
                    mismatch,
                },
                e => e.into(),
            };
            let mut w = layout.ingest.blob(&desc)?;
            loop {
                let n = match entry.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err(e)),
                };
                w.write(&buf[..n]).map_err(corrupt)?;
            }
            w.finish().map_err(corrupt)?;
            layout.blobs.insert(digest, size);
        }
    }
    Ok(layout)
}

/// Imports every named image of the OCI layout tar at `path` into `store`.
/// Nothing is added unless every image is complete and intact.
pub fn import_file(store: &Store, path: &Path) -> Result<Imported, ArchiveError> {
    let not_layout = |what: &str| ArchiveError::NotALayout {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    if fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(not_layout(
            "it is a directory (ig image import reads a tar of an OCI image layout, as `ig image export` writes; make one with `tar -cf FILE.tar -C DIR .`)",
        ));
    }
    let file = fs::File::open(path).map_err(|source| ArchiveError::Io {
        op: "opening archive",
        path: path.to_owned(),
        source,
    })?;
    let layout = read_layout(store, file, path)?;
    import_layout(layout, path)
}

/// Checks `layout` and adds its named images to its store at once.
pub fn import_layout(mut layout: Layout, path: &Path) -> Result<Imported, ArchiveError> {
    let not_layout = |what: &str| ArchiveError::NotALayout {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    match layout.layout_version.as_deref() {
        None => return Err(not_layout("it has no oci-layout file")),
        Some(IMAGE_LAYOUT_VERSION) => {}
        Some(v) => {
            return Err(ArchiveError::UnsupportedLayout {
                path: path.to_owned(),
                version: v.to_owned(),
            });
        }
    }
    let index = layout
        .index
        .take()
        .ok_or_else(|| not_layout("it has no index.json"))?;

    let mut entries: Vec<(Reference, Descriptor)> = Vec::new();
    let mut untagged = 0;
    for desc in &index.manifests {
        let Some(name) = desc.ref_name() else {
            untagged += 1;
            continue;
        };
        let bad_name = |source| ArchiveError::BadName {
            path: path.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        };
        let reference = Reference::parse(name).map_err(bad_name)?;
        // A tag and a digest: the tag names it; the digest must agree.
        let reference = match (reference.tag(), reference.digest()) {
            (Some(t), Some(_)) => reference.with_tag(t).map_err(bad_name)?,
            _ => reference,
        };
        let mut top = desc.clone();
        top.annotations.remove(ANNOTATION_REF_NAME);
        entries.push((reference, top));
    }
    if entries.is_empty() {
        return Err(ArchiveError::NoTaggedImages {
            path: path.to_owned(),
        });
    }

    // Walk every image first: a missing or mismatched blob is reported by
    // name and the store is not touched.
    let mut needed: BTreeSet<Digest> = BTreeSet::new();
    for (reference, top) in &entries {
        check_closure(&layout, top, reference, path, &mut needed)?;
    }
    layout.ingest.retain(&needed);
    let added = layout.ingest.commit(&entries, Origin::Imported)?;
    Ok(Imported {
        images: entries
            .into_iter()
            .zip(added)
            .map(|((r, _), d)| (r, d.digest))
            .collect(),
        untagged,
    })
}

fn is_document(media_type: &str) -> bool {
    matches!(
        media_type,
        MEDIA_TYPE_IMAGE_INDEX
            | MEDIA_TYPE_IMAGE_MANIFEST
            | MEDIA_TYPE_DOCKER_MANIFEST_LIST
            | MEDIA_TYPE_DOCKER_MANIFEST
    )
}

/// Checks that every blob `top` reaches is in `layout` with the size its
/// descriptor says, and collects their digests.
fn check_closure(
    layout: &Layout,
    top: &Descriptor,
    reference: &Reference,
    path: &Path,
    needed: &mut BTreeSet<Digest>,
) -> Result<(), ArchiveError> {
    let name = reference.to_string();
    if !is_document(&top.media_type) {
        return Err(ArchiveError::UnsupportedMediaType {
            path: path.to_owned(),
            reference: name,
            media_type: top.media_type.clone(),
        });
    }
    let mut seen: BTreeSet<Digest> = BTreeSet::new();
    let mut stack = vec![top.clone()];
    while let Some(desc) = stack.pop() {
        if !seen.insert(desc.digest.clone()) {
            continue;
        }
        let Some(&size) = layout.blobs.get(&desc.digest) else {
            // The empty config may be only inline in its descriptor.
            if desc.is_empty_json() && desc.digest.matches(EMPTY_JSON) {
                continue;
            }
            return Err(ArchiveError::MissingBlob {
                path: path.to_owned(),
                reference: name,
                digest: desc.digest,
            });
        };
        if size != desc.size {
            return Err(ArchiveError::Corrupt {
                path: path.to_owned(),
                digest: desc.digest,
                mismatch: Mismatch::Size {
                    expected: desc.size,
                    actual: size,
                },
            });
        }
        needed.insert(desc.digest.clone());
        if is_document(&desc.media_type) {
            let bytes = match layout.document(&desc.digest, path) {
                Some(read) => read?,
                None => continue,
            };
            let doc = oci::parse_top_level(&desc.media_type, &bytes).map_err(|source| {
                ArchiveError::Json {
                    path: path.to_owned(),
                    what: format!("manifest {}", desc.digest),
                    source,
                }
            })?;
            match doc {
                TopLevel::Index(i) => stack.extend(i.manifests),
                TopLevel::Manifest(m) => {
                    stack.push(m.config);
                    stack.extend(m.layers);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::PlantedLink;
    use crate::image::store::GadgetImage;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().join("store")).unwrap();
        (dir, s)
    }

    fn add(s: &Store, name: &str, object: &[u8]) -> Reference {
        let r = Reference::parse(name).unwrap();
        s.add_gadget_image(
            &r,
            GadgetImage {
                config_yaml: format!("name: {name}\n").into_bytes(),
                ebpf_object: object.to_vec(),
                ..GadgetImage::default()
            },
        )
        .unwrap();
        r
    }

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, bytes) in files {
            append_file(&mut tar, name, bytes).unwrap();
        }
        tar.into_inner().unwrap()
    }

    #[test]
    fn export_import_round_trip_is_reproducible() {
        let (dir, src) = store();
        let a = add(&src, "a:v1", b"object a");
        let b = add(&src, "localhost:5000/b:v2", b"object b");
        let file = dir.path().join("out.tar");
        export(
            &src,
            &[b.clone(), a.clone(), a.clone()],
            Target::Path(&file),
        )
        .unwrap();
        let first = fs::read(&file).unwrap();
        export(&src, &[a.clone(), b.clone()], Target::Path(&file)).unwrap();
        assert_eq!(first, fs::read(&file).unwrap(), "same images, same bytes");

        // The layout names each image by its full reference.
        let layout = read_layout(&src, &first[..], &file).unwrap();
        let names: Vec<&str> = layout
            .index
            .as_ref()
            .unwrap()
            .manifests
            .iter()
            .filter_map(Descriptor::ref_name)
            .collect();
        assert_eq!(
            names,
            [
                "ghcr.io/inspektor-gadget/gadget/a:v1",
                "localhost:5000/b:v2"
            ]
        );

        let (_d2, dst) = store();
        let imported = import_file(&dst, &file).unwrap();
        assert_eq!(imported.untagged, 0);
        assert_eq!(imported.images.len(), 2);
        for r in [&a, &b] {
            let want = src.resolve(r).unwrap();
            let got = dst.resolve(r).unwrap();
            assert_eq!(want.index_digest, got.index_digest);
            assert_eq!(want.ebpf_object, got.ebpf_object);
        }
    }

    /// The temp file used to be `.NAME.ig-tmp-PID`, created with
    /// `O_CREAT|O_TRUNC`: a link planted there made the exporter (root)
    /// overwrite the link's target with the tar.
    #[test]
    fn a_link_planted_at_the_old_temp_name_is_not_followed() {
        let (dir, src) = store();
        let a = add(&src, "a:v1", b"object a");
        let planted = PlantedLink::plant(
            dir.path(),
            &format!(".out.tar.ig-tmp-{}", std::process::id()),
        );
        let file = dir.path().join("out.tar");
        export(&src, std::slice::from_ref(&a), Target::Path(&file)).unwrap();
        planted.assert_not_followed();
        let layout = read_layout(&src, &fs::read(&file).unwrap()[..], &file).unwrap();
        assert_eq!(layout.index.unwrap().manifests.len(), 1);
    }

    #[test]
    fn corrupt_or_incomplete_archives_change_nothing() {
        let (dir, src) = store();
        let a = add(&src, "a:v1", b"object a");
        let file = dir.path().join("out.tar");
        export(&src, std::slice::from_ref(&a), Target::Path(&file)).unwrap();
        let (_d2, dst) = store();
        let good = read_layout(&dst, &fs::read(&file).unwrap()[..], &file).unwrap();
        let index_before = fs::read(dst.root().join("index.json")).unwrap();

        // A blob whose content does not match its name.
        let (digest, _) = good.blobs.iter().next().unwrap();
        let rel = digest.blob_rel_path();
        let bad = tar_of(&[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            (&rel.to_string_lossy(), b"tampered"),
        ]);
        let e = read_layout(&dst, &bad[..], &file).unwrap_err();
        assert!(
            matches!(&e, ArchiveError::Corrupt { digest: d, .. } if d == digest),
            "{e}"
        );

        // A missing blob is named.
        let mut partial = read_layout(&dst, &fs::read(&file).unwrap()[..], &file).unwrap();
        let (_, top) = ((), partial.index.as_ref().unwrap().manifests[0].clone());
        let victim = partial
            .blobs
            .keys()
            .find(|d| **d != top.digest)
            .cloned()
            .unwrap();
        partial.blobs.remove(&victim);
        let e = import_layout(partial, &file).unwrap_err();
        assert!(
            matches!(&e, ArchiveError::MissingBlob { digest, .. } if *digest == victim),
            "{e}"
        );

        // No oci-layout, no index, no names, garbage.
        for (files, want) in [
            (
                vec![("index.json", &br#"{"schemaVersion":2}"#[..])],
                "oci-layout",
            ),
            (
                vec![("oci-layout", &br#"{"imageLayoutVersion":"1.0.0"}"#[..])],
                "index.json",
            ),
            (
                vec![
                    ("oci-layout", &br#"{"imageLayoutVersion":"1.0.0"}"#[..]),
                    ("index.json", &br#"{"schemaVersion":2,"manifests":[]}"#[..]),
                ],
                "no image",
            ),
        ] {
            let t = tar_of(&files);
            let e = read_layout(&dst, &t[..], &file)
                .and_then(|l| import_layout(l, &file))
                .unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        assert!(read_layout(&dst, &b"not a tar at all, just some bytes"[..], &file).is_err());
        // A tar cut in the middle of a blob.
        let whole = fs::read(&file).unwrap();
        let cut = &whole[..whole.len() / 2];
        assert!(
            read_layout(&dst, cut, &file)
                .and_then(|l| import_layout(l, &file))
                .is_err()
        );

        assert_eq!(
            index_before,
            fs::read(dst.root().join("index.json")).unwrap()
        );
    }

    #[test]
    fn wrong_layout_version_is_refused() {
        let (dir, dst) = store();
        let t = tar_of(&[("./oci-layout", br#"{"imageLayoutVersion":"2.0.0"}"#)]);
        let l = read_layout(&dst, &t[..], dir.path()).unwrap();
        let e = import_layout(l, dir.path()).unwrap_err();
        assert!(matches!(e, ArchiveError::UnsupportedLayout { .. }), "{e}");
    }
}
