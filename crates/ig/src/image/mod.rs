//! Gadget images: OCI references and the local OCI image-layout store.
//!
//! - [`reference`](mod@reference): parse and normalize `trace_exec`, `myorg/foo:v1`,
//!   `localhost:5000/x@sha256:…` the way upstream `ig` does.
//! - [`digest`]: validated content digests.
//! - [`oci`]: serde types and media types of the OCI JSON documents.
//! - [`store`]: the image-layout directory (`/var/lib/ig/oci-store`):
//!   writing gadget images, resolving them to verified bytes, list, tag,
//!   remove with garbage collection, safe under concurrent processes.
//! - [`limits`]: the sizes readers and writers share.
//! - [`created`]: the `created` annotation (honours `SOURCE_DATE_EPOCH`).
//! - [`registry`]: pull and push against OCI registries, login checks.
//! - [`auth`]: registry credentials in a docker-style `config.json`.
//! - [`archive`]: export and import as a tar of an OCI image layout.
//! - [`trust`]: cosign signatures (payload, keys, sign, verify) and the
//!   run policy (`--verify-image`, `--allowed-gadgets`).
//!
//! Only `registry` touches the network. Nothing here runs a compiler or
//! interprets `gadget.yaml`: config bytes are opaque to this module.

pub mod archive;
pub mod auth;
pub mod created;
pub mod credhelper;
pub mod digest;
mod error;
pub mod limits;
pub mod oci;
pub mod reference;
pub mod registry;
pub mod store;
pub mod trust;

pub use created::{created_timestamp, format_rfc3339_utc};
pub use digest::{Digest, DigestError};
pub use error::{ImageError, Mismatch};
pub use oci::{Annotations, Descriptor, Index, Manifest, Platform};
pub use reference::{Reference, ReferenceError, ReferenceErrorKind};
pub use store::{
    BlobReader, DEFAULT_STORE, GadgetImage, ImageSummary, PlatformObjects, ResolvedImage, Store,
    StoredBlob,
};
