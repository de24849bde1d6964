//! The sizes every reader and writer of images holds to: the store, pulls,
//! archive imports and `ig image build` share them, so that what one side
//! writes the others can read (docs/reliability.md, "Sizes").
//!
//! Every document that is parsed in memory is capped, and the cap is
//! checked before or while the bytes are read, never after
//! ([`read_capped`], shared by the store and `ig image build`).

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

/// The whole of `file` if it is at most `limit` bytes, else its size: the
/// size is checked before reading, and the read stops at the limit too (a
/// file that grows meanwhile is not read past it). The caller opens the
/// file (the store without following links).
pub fn read_capped(file: std::fs::File, limit: u64) -> std::io::Result<Result<Vec<u8>, u64>> {
    use std::io::Read;
    let size = file.metadata()?.len();
    if size > limit {
        return Ok(Err(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Ok(Err(bytes.len() as u64));
    }
    Ok(Ok(bytes))
}
