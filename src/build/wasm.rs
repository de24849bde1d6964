//! The WASM part of `ig image build`: `build.yaml`'s `wasm:` names either a
//! prebuilt module (`.wasm`, packed as is) or a C guest (`.c`), compiled
//! with clang for `wasm32-wasi` as a reactor against Debian's wasi-libc
//! (sysroot `/usr`, override with `IG_WASI_SYSROOT`). Rust (`wasm32-wasip1`)
//! and Go guests are built by their own toolchains into a `.wasm` first.

use std::path::Path;
use std::process::Command;

use super::{BuildError, BuildOptions, run_tool};

/// Every module starts with this.
const MAGIC: &[u8] = b"\0asm";

pub(super) fn build(opts: &BuildOptions, src: &Path, work: &Path) -> Result<Vec<u8>, BuildError> {
    let ext = src.extension().and_then(|e| e.to_str()).unwrap_or("");
    let module = match ext {
        "wasm" => src.to_owned(),
        "c" => {
            let out = work.join("program.wasm");
            let sysroot = std::env::var("IG_WASI_SYSROOT").unwrap_or_else(|_| "/usr".into());
            let mut clang = Command::new(&opts.clang);
            clang
                .args([
                    "--target=wasm32-wasi",
                    "-O2",
                    "-Wall",
                    "-mexec-model=reactor",
                ])
                .arg(format!("--sysroot={sysroot}"))
                .arg(src)
                .arg("-o")
                .arg(&out);
            run_tool(clang, &opts.clang, "IG_CLANG")?;
            out
        }
        _ => {
            return Err(BuildError::WasmSource {
                path: src.to_owned(),
            });
        }
    };
    let bytes = std::fs::read(&module).map_err(|source| BuildError::Read {
        path: module.clone(),
        source,
    })?;
    if !bytes.starts_with(MAGIC) {
        return Err(BuildError::NotWasm { path: module });
    }
    Ok(bytes)
}
