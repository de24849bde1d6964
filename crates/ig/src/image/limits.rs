//! The sizes every reader and writer of images holds to: the store, pulls,
//! archive imports and `ig image build` share them, so that what one side
//! writes the others can read (docs/reliability.md, "Sizes").
//!
//! Every document that is parsed in memory is capped, and the cap is
//! checked before or while the bytes are read, never after.

/// An image index, a manifest or a config (`gadget.yaml`): parsed whole in
/// memory. Registries commonly refuse manifests above 4 MiB.
pub const MAX_JSON: u64 = 4 << 20;

/// A layer read into memory (an eBPF object, a WASM module, btfgen data):
/// a hundred times the largest WASM guest we have seen (a Go guest of
/// 2 MB).
pub const MAX_LAYER: u64 = 256 << 20;

/// The store's `index.json`: it names every image and carries each one's
/// annotations. A write that would make it larger is refused, so the store
/// never becomes unreadable.
pub const MAX_INDEX_FILE: u64 = 64 << 20;

/// The annotations of a built image, as JSON: `gadget.yaml`'s
/// `description`, `homepageURL`... are copied into every manifest, the
/// index and the store's `index.json`.
pub const MAX_ANNOTATIONS: u64 = 64 << 10;
