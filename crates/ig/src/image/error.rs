//! `ImageError`: everything that can go wrong in `image/`, with the path,
//! reference or digest involved so the CLI can print a useful message.

use std::io;
use std::path::PathBuf;

use super::digest::Digest;
use super::reference::ReferenceError;
use crate::text::Echo;

/// How a blob failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The file's length differs from the descriptor's `size`.
    Size {
        /// The descriptor's size.
        expected: u64,
        /// The blob's.
        actual: u64,
    },
    /// The content hashes to something else.
    Hash {
        /// The blob's digest.
        actual: Digest,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Size { expected, actual } => {
                write!(f, "size is {actual} bytes, descriptor says {expected}")
            }
            Mismatch::Hash { actual } => write!(f, "content hashes to {actual}"),
        }
    }
}

/// Why the local store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An image reference is not one.
    #[error(transparent)]
    Reference(#[from] ReferenceError),

    /// No `index.json` entry carries this reference. `reference` is the full
    /// normalized form, so the CLI can suggest `ig image pull <reference>`.
    #[error("image {reference} is not in the local store {}", store.display())]
    NotFound {
        /// The image reference.
        reference: String,
        /// The store.
        store: PathBuf,
    },

    /// A digest prefix given by the user matches several images.
    #[error("digest prefix {} is ambiguous: it matches {}", Echo(prefix), matches.join(", "))]
    AmbiguousDigest {
        /// The prefix.
        prefix: String,
        /// The matches.
        matches: Vec<String>,
    },

    /// A file operation of the store failed.
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

    /// A JSON document of the store is malformed.
    #[error("malformed {what} {}: {source}", path.display())]
    Json {
        /// Which document.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },

    /// A blob on disk does not match its descriptor: the store is corrupt.
    #[error("blob {digest} at {} is corrupt: {mismatch}", path.display())]
    DigestMismatch {
        /// The digest.
        digest: Digest,
        /// The file.
        path: PathBuf,
        /// How they differ.
        mismatch: Mismatch,
    },

    /// Blob `digest` of image `reference` is missing (expected at `path`).
    #[error("blob {digest} of image {reference} is missing (expected at {})", path.display())]
    MissingBlob {
        /// The image reference.
        reference: String,
        /// The digest.
        digest: Digest,
        /// The file.
        path: PathBuf,
    },

    /// Blob `digest` is `size` bytes, more than the `limit` bytes allowed for a
    /// `what`.
    #[error("blob {digest} is {size} bytes, more than the {limit} bytes allowed for a {what}")]
    BlobTooLarge {
        /// What the blob is for.
        what: &'static str,
        /// The digest.
        digest: Digest,
        /// The size in bytes.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// A built image's part is larger than readers accept.
    #[error("the image's {what} would be {size} bytes; at most {limit} can be read back ({hint})")]
    PartTooLarge {
        /// Which part.
        what: &'static str,
        /// Its size in bytes.
        size: u64,
        /// The limit.
        limit: u64,
        /// Where the bytes come from.
        hint: &'static str,
    },

    /// The store's `index.json` is, or would become, larger than
    /// [`super::limits::MAX_INDEX_FILE`].
    #[error(
        "the store's index {} {} {size} bytes; at most {limit} are read (remove images with `ig image remove`)",
        path.display(), if *existing { "is" } else { "would be" }
    )]
    IndexTooLarge {
        /// `index.json`.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit.
        limit: u64,
        /// The file is that large now (not a write that would make it so).
        existing: bool,
    },

    /// Image `reference` has no manifest for this machine's architecture.
    #[error(
        "image {reference} has no manifest for architecture {architecture} (available: {})",
        if available.is_empty() { "none".to_owned() } else { available.join(", ") }
    )]
    NoMatchingPlatform {
        /// The image reference.
        reference: String,
        /// The architecture.
        architecture: String,
        /// What there is instead.
        available: Vec<String>,
    },

    /// A blob arriving in the store (from a pull) does not match the
    /// descriptor it was fetched by. Nothing was stored.
    #[error("blob {digest} does not match its descriptor: {mismatch}")]
    Unverified {
        /// The digest.
        digest: Digest,
        /// How they differ.
        mismatch: Mismatch,
    },

    /// The index names platforms whose manifests are not in the store: a
    /// pull fetches only the host's platform. Pushing or exporting it
    /// would hand out an index that names manifests not sent with it.
    #[error(
        "image {reference} is incomplete in the store: its platform(s) {} were not pulled (present: {})",
        missing.join(", "),
        if present.is_empty() { "none".to_owned() } else { present.join(", ") }
    )]
    IncompletePlatforms {
        /// The image.
        reference: String,
        /// Platforms in the store.
        present: Vec<String>,
        /// Platforms the index names but the store lacks.
        missing: Vec<String>,
    },

    /// The index has a manifest for `architecture`, but it was not pulled.
    #[error("image {reference}: the platform {architecture} was not pulled into the store")]
    PlatformNotPulled {
        /// The image reference.
        reference: String,
        /// The architecture.
        architecture: String,
    },

    /// Image `reference`: unsupported `what` media type `media_type`.
    #[error(
        "image {reference}: unsupported {what} media type {}",
        Echo(media_type)
    )]
    UnsupportedMediaType {
        /// The image reference.
        reference: String,
        /// Which part (config, layer).
        what: &'static str,
        /// The media type.
        media_type: String,
    },

    /// Image `reference` has more than one layer of type `media_type`.
    #[error("image {reference} has more than one layer of type {media_type}")]
    DuplicateLayer {
        /// The image reference.
        reference: String,
        /// The media type.
        media_type: String,
    },

    /// An image may have only one manifest per architecture.
    #[error("an image may have only one manifest per architecture")]
    DuplicatePlatform,

    /// `path`: unsupported OCI image layout version `version`.
    #[error("{}: unsupported OCI image layout version {}", path.display(), Echo(version))]
    UnsupportedLayout {
        /// The file.
        path: PathBuf,
        /// The version.
        version: String,
    },

    /// Garbage collection could not read a document the image `image`
    /// reaches (`cause` names it), so it cannot know which blobs that
    /// image uses: nothing was removed. (`cause` is in the message rather
    /// than the source chain, so it is printed once.)
    #[error("cannot tell which blobs image {image} uses: {cause}; nothing was removed")]
    UnknownReferences {
        /// The image.
        image: String,
        /// Why.
        cause: Box<ImageError>,
    },

    /// `index.json` is missing from a store that holds blobs: the names
    /// of its images are lost. Taken for an empty store, it would let the
    /// next collection delete every blob, so the store is refused.
    #[error(
        "the store index {} is missing, but the store {} holds blobs: the names of its images are lost, and ig changes nothing until the index is back",
        path.display(),
        store.display()
    )]
    IndexMissing {
        /// The missing `index.json`.
        path: PathBuf,
        /// The store.
        store: PathBuf,
    },

    /// The image store `path` was opened read-only.
    #[error("the image store {} was opened read-only", path.display())]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },

    /// Cannot tag with a digest reference `reference`: give a tag instead.
    #[error("cannot tag with a digest reference {reference}: give a tag instead")]
    TagWithDigest {
        /// The image reference.
        reference: String,
    },

    /// An image needs at least one platform.
    #[error("an image needs at least one platform")]
    NoPlatforms,

    /// Invalid SOURCE_DATE_EPOCH `value`: expected seconds since 1970 as an
    /// integer.
    #[error(
        "invalid SOURCE_DATE_EPOCH {}: expected seconds since 1970 as an integer",
        Echo(value)
    )]
    InvalidSourceDateEpoch {
        /// The value.
        value: String,
    },

    /// The store directory (or a part of it ig reads) belongs to someone
    /// else: writing there could hand them our images, and running from
    /// it would load into the kernel whatever they put there.
    #[error(
        "refusing the image store: {} is owned by uid {owner}; ig {} a store only when {}; use your own store (--store DIR) or chown it",
        path.display(),
        if *root_allowed { "reads" } else { "writes" },
        whose_store(*uid, *root_allowed)
    )]
    ForeignOwner {
        /// The file.
        path: PathBuf,
        /// The owner.
        owner: u32,
        /// The uid.
        uid: u32,
        /// Whether root's ownership would have done (reading).
        root_allowed: bool,
    },

    /// A part of the store (or a directory above it) is a symbolic link,
    /// or a directory above it can be written by others: whoever controls
    /// it controls what ig reads.
    #[error(
        "refusing the image store: {} {why}; ig follows no link inside its store and needs the directories above it writable by their owner only (or sticky, as /tmp)",
        path.display()
    )]
    UnsafePath {
        /// The path.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },

    /// `--store DIR` names a directory with other content: ig would write
    /// `blobs/`, `ingest/` and `index.json` among someone's files.
    #[error(
        "refusing the image store: {} is not empty and holds no image store (no oci-layout, index.json or blobs/); name an empty or new directory",
        path.display()
    )]
    NotAStore {
        /// The directory.
        path: PathBuf,
    },

    /// The store directory (or a part of it ig reads) can be written by
    /// other users: they could change what `ig run` loads.
    #[error(
        "refusing the image store: {} is writable by {who} (mode {mode:o}), who could change what ig runs; fix it with: chmod go-w {}",
        path.display(),
        path.display()
    )]
    WritableByOthers {
        /// The file or directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
        /// `group` or `others`.
        who: &'static str,
    },
}

/// Who may own a store ig uses, as the refusal says it: root reading is
/// told only about root (it is both "you" and "root").
fn whose_store(uid: u32, root_allowed: bool) -> String {
    match (uid, root_allowed) {
        (0, _) => "root owns it".to_owned(),
        (uid, true) => format!("you (uid {uid}) or root own it"),
        (uid, false) => format!("you (uid {uid}) own it"),
    }
}

impl ImageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
