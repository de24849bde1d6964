//! The on-disk cache of compiled modules.
//!
//! Compiling a module with cranelift costs far more than loading it, so
//! `ig run` keeps wasmtime's serialized form of every module it compiled,
//! keyed by the module's sha256 and the engine's compatibility hash (which
//! covers the wasmtime version and the engine settings). An entry is
//! `sha256(payload) || payload`: a truncated or flipped file fails the
//! check and is recompiled and rewritten, it is never handed to
//! `Module::deserialize` (which trusts its input). Entries are written to a
//! temporary file and renamed, so a reader never sees half a file.

use std::hash::{Hash as _, Hasher as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use wasmtime::{Engine, Module};

/// Where an entry for `wasm` lives in `dir`.
pub(super) fn entry_path(dir: &Path, engine: &Engine, wasm: &[u8]) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let digest = hex(&Sha256::digest(wasm));
    dir.join(format!("{digest}-{:016x}.cwasm", h.finish()))
}

/// How the module was obtained, for the debug log and the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    Cached,
    Compiled,
}

/// Load `wasm` from the cache in `dir`, or compile it and store it there.
/// A cache that cannot be read or written only costs time: it is logged,
/// never an error.
pub(super) fn load_or_compile(
    engine: &Engine,
    wasm: &[u8],
    dir: Option<&Path>,
) -> wasmtime::Result<(Module, Origin)> {
    let Some(dir) = dir else {
        return Ok((Module::new(engine, wasm)?, Origin::Compiled));
    };
    let path = entry_path(dir, engine, wasm);
    if let Some(m) = read_entry(engine, &path) {
        return Ok((m, Origin::Cached));
    }
    let module = Module::new(engine, wasm)?;
    match module.serialize() {
        Ok(bytes) => {
            if let Err(e) = write_entry(dir, &path, &bytes) {
                log::debug!("wasm cache: cannot write {}: {e}", path.display());
            }
        }
        Err(e) => log::debug!("wasm cache: cannot serialize the module: {e}"),
    }
    Ok((module, Origin::Compiled))
}

fn read_entry(engine: &Engine, path: &Path) -> Option<Module> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 32 || Sha256::digest(&bytes[32..]).as_slice() != &bytes[..32] {
        log::warn!(
            "wasm cache: {} is corrupt; compiling the module again",
            path.display()
        );
        return None;
    }
    // SAFETY: the payload is exactly what `Module::serialize` of an engine
    // with the same compatibility hash wrote (checked by the sha256 above),
    // into a directory only root can write.
    match unsafe { Module::deserialize(engine, &bytes[32..]) } {
        Ok(m) => Some(m),
        Err(e) => {
            log::warn!(
                "wasm cache: {} cannot be loaded ({e}); compiling the module again",
                path.display()
            );
            None
        }
    }
}

fn write_entry(dir: &Path, path: &Path, payload: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&Sha256::digest(payload))?;
        f.write_all(payload)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid module: the header alone.
    const EMPTY: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn second_load_is_cached_and_corruption_is_recompiled() {
        let engine = Engine::default();
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cache");
        let (_, o) = load_or_compile(&engine, EMPTY, Some(&dir)).unwrap();
        assert_eq!(o, Origin::Compiled);
        let (_, o) = load_or_compile(&engine, EMPTY, Some(&dir)).unwrap();
        assert_eq!(o, Origin::Cached);
        let path = entry_path(&dir, &engine, EMPTY);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let (_, o) = load_or_compile(&engine, EMPTY, Some(&dir)).unwrap();
        assert_eq!(o, Origin::Compiled);
        // ... and the rewritten entry is good again.
        let (_, o) = load_or_compile(&engine, EMPTY, Some(&dir)).unwrap();
        assert_eq!(o, Origin::Cached);
        std::fs::write(&path, b"short").unwrap();
        let (_, o) = load_or_compile(&engine, EMPTY, Some(&dir)).unwrap();
        assert_eq!(o, Origin::Compiled);
    }
}
