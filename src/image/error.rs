//! `ImageError`: everything that can go wrong in `image/`, with the path,
//! reference or digest involved so the CLI can print a useful message.

use std::io;
use std::path::PathBuf;

use super::digest::Digest;
use super::reference::ReferenceError;

/// How a blob failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The file's length differs from the descriptor's `size`.
    Size { expected: u64, actual: u64 },
    /// The content hashes to something else.
    Hash { actual: Digest },
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

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),

    /// No `index.json` entry carries this reference. `reference` is the full
    /// normalized form, so the CLI can suggest `ig image pull <reference>`.
    #[error("image {reference} not found in the local store {}", store.display())]
    NotFound { reference: String, store: PathBuf },

    /// A digest prefix given by the user matches several images.
    #[error("digest prefix {prefix:?} is ambiguous: it matches {}", matches.join(", "))]
    AmbiguousDigest {
        prefix: String,
        matches: Vec<String>,
    },

    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("malformed {what} {}: {source}", path.display())]
    Json {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A blob on disk does not match its descriptor: the store is corrupt.
    #[error("blob {digest} at {} is corrupt: {mismatch}", path.display())]
    DigestMismatch {
        digest: Digest,
        path: PathBuf,
        mismatch: Mismatch,
    },

    #[error("blob {digest} of image {reference} is missing (expected at {})", path.display())]
    MissingBlob {
        reference: String,
        digest: Digest,
        path: PathBuf,
    },

    #[error("blob {digest} is {size} bytes, more than the {limit} bytes allowed for a {what}")]
    BlobTooLarge {
        what: &'static str,
        digest: Digest,
        size: u64,
        limit: u64,
    },

    #[error(
        "image {reference} has no manifest for architecture {architecture} (available: {})",
        if available.is_empty() { "none".to_owned() } else { available.join(", ") }
    )]
    NoMatchingPlatform {
        reference: String,
        architecture: String,
        available: Vec<String>,
    },

    /// A blob arriving in the store (from a pull) does not match the
    /// descriptor it was fetched by. Nothing was stored.
    #[error("blob {digest} does not match its descriptor: {mismatch}")]
    Unverified { digest: Digest, mismatch: Mismatch },

    /// The index names platforms whose manifests are not in the store: a
    /// pull fetches only the host's platform. Pushing or exporting it
    /// would hand out an index that names manifests not sent with it.
    #[error(
        "image {reference} is incomplete in the store: its platform(s) {} were not pulled (present: {})",
        missing.join(", "),
        if present.is_empty() { "none".to_owned() } else { present.join(", ") }
    )]
    IncompletePlatforms {
        reference: String,
        present: Vec<String>,
        missing: Vec<String>,
    },

    /// The index has a manifest for `architecture`, but it was not pulled.
    #[error("image {reference}: the platform {architecture} was not pulled into the store")]
    PlatformNotPulled {
        reference: String,
        architecture: String,
    },

    #[error("image {reference}: unsupported {what} media type {media_type:?}")]
    UnsupportedMediaType {
        reference: String,
        what: &'static str,
        media_type: String,
    },

    #[error("image {reference} has more than one layer of type {media_type}")]
    DuplicateLayer {
        reference: String,
        media_type: String,
    },

    #[error("an image may have only one manifest per architecture")]
    DuplicatePlatform,

    #[error("{}: unsupported OCI image layout version {version:?}", path.display())]
    UnsupportedLayout { path: PathBuf, version: String },

    /// Garbage collection could not read a document the image `image`
    /// reaches (`cause` names it), so it cannot know which blobs that
    /// image uses: nothing was removed. (`cause` is in the message rather
    /// than the source chain, so it is printed once.)
    #[error("cannot tell which blobs image {image} uses: {cause}; nothing was removed")]
    UnknownReferences {
        image: String,
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
    IndexMissing { path: PathBuf, store: PathBuf },

    #[error("the image store {} was opened read-only", path.display())]
    ReadOnly { path: PathBuf },

    #[error("cannot tag with a digest reference {reference}: give a tag instead")]
    TagWithDigest { reference: String },

    #[error("an image needs at least one platform")]
    NoPlatforms,

    #[error("invalid SOURCE_DATE_EPOCH {value:?}: expected seconds since 1970 as an integer")]
    InvalidSourceDateEpoch { value: String },

    /// The store directory (or a part of it ig reads) belongs to someone
    /// else: writing there could hand them our images, and running from
    /// it would load into the kernel whatever they put there.
    #[error(
        "refusing the image store: {} is owned by uid {owner}, not by you (uid {uid}){}; use your own store (--store DIR) or chown it",
        path.display(),
        if *root_allowed { " nor by root" } else { "" }
    )]
    ForeignOwner {
        path: PathBuf,
        owner: u32,
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
    UnsafePath { path: PathBuf, why: &'static str },

    /// `--store DIR` names a directory with other content: ig would write
    /// `blobs/`, `ingest/` and `index.json` among someone's files.
    #[error(
        "refusing the image store: {} is not empty and holds no image store (no oci-layout, index.json or blobs/); name an empty or new directory",
        path.display()
    )]
    NotAStore { path: PathBuf },

    /// The store directory (or a part of it ig reads) can be written by
    /// other users: they could change what `ig run` loads.
    #[error(
        "refusing the image store: {} is writable by {who} (mode {mode:o}), who could change what ig runs; fix it with: chmod go-w {}",
        path.display(),
        path.display()
    )]
    WritableByOthers {
        path: PathBuf,
        mode: u32,
        who: &'static str,
    },
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
