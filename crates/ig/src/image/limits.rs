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

/// A layer by default (an eBPF object, a WASM module, btfgen data): a
/// hundred times the largest WASM guest we have seen (a Go guest of
/// 2 MB). `ig run` reads the layers it uses into memory; pulls, imports,
/// pushes and exports stream them. See [`max_layer`].
pub const MAX_LAYER: u64 = 256 << 20;

/// The environment variable through which the CLI raises (or lowers)
/// [`MAX_LAYER`] ([`set_max_layer`]): bytes, or with a `K`, `M` or `G`
/// suffix (powers of 1024), `IG_MAX_LAYER_SIZE=1G`. The library itself
/// reads no environment.
pub const MAX_LAYER_VAR: &str = "IG_MAX_LAYER_SIZE";

/// An image's blobs together (a pull, an archive's import): they go to
/// disk, not memory, but a hostile image should not fill the disk.
pub const MAX_IMAGE: u64 = 4 << 30;

static LAYER_LIMIT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(MAX_LAYER);

/// The largest layer the store, pulls, imports, exports, pushes and builds
/// accept in this process: [`MAX_LAYER`] unless [`set_max_layer`] said
/// otherwise.
pub fn max_layer() -> u64 {
    LAYER_LIMIT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets [`max_layer`] for the whole process (at least 1 byte): for images
/// whose layers are larger than the default. `ig run` holds the layers it
/// uses in memory, so this is also how much it may hold per layer.
pub fn set_max_layer(bytes: u64) {
    LAYER_LIMIT.store(bytes.max(1), std::sync::atomic::Ordering::Relaxed);
}

/// `123`, `64K`, `512M`, `2G` (powers of 1024) as bytes; at least 1.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = digits.parse().ok()?;
    let bytes = n.checked_mul(1u64 << shift)?;
    (bytes > 0).then_some(bytes)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size(" 2G "), Some(2 << 30));
        for bad in ["", "0", "G", "-1", "1T", "1.5G", "99999999999999999999G"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
