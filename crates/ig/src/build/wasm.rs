//! The WASM part of `ig image build`: `build.yaml`'s `wasm:` names a
//! prebuilt module (`.wasm`, packed as is) or a guest's source, built the
//! way upstream's `ig image build` builds it:
//!
//! - C (`.c`): clang for `wasm32-wasi` as a reactor against Debian's
//!   wasi-libc (sysroot `/usr`, override with `IG_WASI_SYSROOT`);
//! - Rust (`.rs`, the crate's `src/lib.rs`): `cargo build --release
//!   --target wasm32-wasip1` of the crate whose `Cargo.toml` is next to
//!   the file's directory (upstream's layout: `rust/src/lib.rs` →
//!   `rust/Cargo.toml`), into a private target directory; the module is
//!   the crate's `cdylib`, as cargo reports it. `IG_CARGO` and `RUSTC`
//!   choose the tools;
//! - Go (`.go`): `go build -buildmode=c-shared` with `GOOS=wasip1
//!   GOARCH=wasm` in the file's directory. Needs a Go at least as new as
//!   the module's `go.mod` asks (upstream's guests: 1.26.0), and never
//!   older than 1.24 (`//go:wasmexport`); `IG_GO` chooses the binary.
//!   Without one the build stops with one line naming the version.
//!
//! The toolchains' own messages go to our stderr unchanged.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{BuildError, BuildOptions, run_tool};

/// Every module starts with this.
const MAGIC: &[u8] = b"\0asm";

/// The Rust target upstream builds guests for.
pub const RUST_TARGET: &str = "wasm32-wasip1";

/// The oldest Go that can build a reactor guest (`//go:wasmexport`).
const GO_MIN: (u32, u32, u32) = (1, 24, 0);

/// Why a guest's source cannot be built (the toolchain's own failures are
/// `BuildError::ToolFailed`, with its messages above).
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error(
        "{source_file}: no Cargo.toml in {} or {} (a Rust guest names its crate's src/lib.rs)",
        tried[0].display(), tried[1].display()
    )]
    NoManifest {
        source_file: PathBuf,
        tried: [PathBuf; 2],
    },
    #[error(
        "the Rust target {RUST_TARGET} is not installed for the toolchain at {sysroot} (rustup target add {RUST_TARGET})"
    )]
    RustTarget { sysroot: String },
    #[error(
        "cargo built no {RUST_TARGET} module for {manifest}: a guest crate needs `[lib] crate-type = [\"cdylib\"]`"
    )]
    NoCdylib { manifest: PathBuf },
    #[error("building {source_file} needs Go {needed} or newer (GOOS=wasip1); {found}")]
    Go {
        source_file: PathBuf,
        needed: String,
        found: String,
    },
}

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
        "rs" => build_rust(src, work)?,
        "go" => build_go(src, work)?,
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

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// The crate of a Rust guest: `Cargo.toml` in the parent of the file's
/// directory (upstream's `rust/src/lib.rs`), else in the file's directory.
fn cargo_manifest(src: &Path) -> Result<PathBuf, GuestError> {
    let dir = src.parent().unwrap_or(Path::new("."));
    let tried = [dir.join("..").join("Cargo.toml"), dir.join("Cargo.toml")];
    match tried.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => Err(GuestError::NoManifest {
            source_file: src.to_owned(),
            tried: tried.map(|p| p.parent().map(Path::to_owned).unwrap_or_default()),
        }),
    }
}

/// Fail early, with the command that fixes it, when the toolchain cargo
/// will use (rustup picks it by the crate's directory) lacks the target.
/// Says nothing when rustc cannot be asked: cargo will speak then.
fn check_rust_target(crate_dir: &Path) -> Result<(), GuestError> {
    let out = Command::new(env_or("RUSTC", "rustc"))
        .args(["--print", "sysroot"])
        .current_dir(crate_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else {
        return Ok(());
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || sysroot.is_empty() {
        return Ok(());
    }
    let lib = Path::new(&sysroot).join("lib/rustlib").join(RUST_TARGET);
    if lib.is_dir() {
        Ok(())
    } else {
        Err(GuestError::RustTarget { sysroot })
    }
}

fn build_rust(src: &Path, work: &Path) -> Result<PathBuf, BuildError> {
    let manifest = cargo_manifest(src)?;
    let manifest_abs = std::fs::canonicalize(&manifest).map_err(|source| BuildError::Read {
        path: manifest.clone(),
        source,
    })?;
    let crate_dir = manifest_abs.parent().unwrap_or(Path::new("/"));
    check_rust_target(crate_dir)?;
    let cargo = env_or("IG_CARGO", "cargo");
    let mut cmd = Command::new(&cargo);
    // Run in the crate's directory, so cargo reads the configuration
    // around the crate (a `.cargo/config.toml` pointing `api` at ig's
    // crate, see docs/wasm.md) and rustup its toolchain file.
    cmd.args(["build", "--release", "--target", RUST_TARGET])
        .arg("--manifest-path")
        .arg(&manifest_abs)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(crate_dir)
        .env("CARGO_TARGET_DIR", work.join("cargo-target"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    log::debug!("running {cmd:?}");
    let out = cmd.output().map_err(|source| BuildError::ToolMissing {
        program: cargo.clone(),
        env: "IG_CARGO",
        source,
    })?;
    if !out.status.success() {
        return Err(BuildError::ToolFailed {
            tool: cargo,
            status: out.status,
        });
    }
    cdylib_of(&out.stdout, &manifest_abs).ok_or_else(|| GuestError::NoCdylib { manifest }.into())
}

/// The `.wasm` cargo reports (`compiler-artifact` messages, one JSON
/// object a line) for the `cdylib` of the package at `manifest`.
fn cdylib_of(report: &[u8], manifest: &Path) -> Option<PathBuf> {
    for line in report.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact"
            || msg["manifest_path"].as_str().map(Path::new) != Some(manifest)
        {
            continue;
        }
        let kinds = msg["target"]["kind"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !kinds.iter().any(|k| k == "cdylib") {
            continue;
        }
        let files = msg["filenames"].as_array().cloned().unwrap_or_default();
        if let Some(f) = files
            .iter()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"))
        {
            return Some(PathBuf::from(f));
        }
    }
    None
}

/// `go1.26.0`, `go1.26`, `go1.27rc1`, `devel go1.27-abc` → (1, 26, 0)...
fn parse_go_version(v: &str) -> Option<(u32, u32, u32)> {
    let v = v.split_whitespace().find(|w| w.starts_with("go1"))?;
    let digits = |s: &str| -> Option<u32> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    let mut parts = v.trim_start_matches("go").splitn(3, '.');
    let major = digits(parts.next()?)?;
    let minor = digits(parts.next().unwrap_or("0")).unwrap_or(0);
    let patch = parts.next().and_then(digits).unwrap_or(0);
    Some((major, minor, patch))
}

/// The `go` directive of the `go.mod` governing `dir` (the nearest one
/// above it, as the go command finds it).
fn go_mod_version(dir: &Path) -> Option<String> {
    let mut d = std::fs::canonicalize(dir).ok()?;
    loop {
        if let Ok(text) = std::fs::read_to_string(d.join("go.mod")) {
            return text.lines().find_map(|l| {
                let v = l.trim().strip_prefix("go ")?.trim();
                Some(v.split_whitespace().next()?.to_owned())
            });
        }
        if !d.pop() {
            return None;
        }
    }
}

fn build_go(src: &Path, work: &Path) -> Result<PathBuf, BuildError> {
    let dir = src.parent().unwrap_or(Path::new("."));
    let wanted = go_mod_version(dir)
        .and_then(|v| Some((parse_go_version(&format!("go{v}"))?, v)))
        .filter(|(n, _)| *n >= GO_MIN);
    let (needed, needed_text) = wanted.unwrap_or((GO_MIN, "1.24".to_owned()));
    let go = env_or("IG_GO", "go");
    let refuse = |found: String| GuestError::Go {
        source_file: src.to_owned(),
        needed: needed_text.clone(),
        found,
    };
    let version = Command::new(&go)
        .args(["env", "GOVERSION"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let have = match version {
        Err(_) => {
            return Err(refuse(format!(
                "there is no `{go}` to run (install Go, put it on PATH or set IG_GO; or build the module yourself and name the .wasm in build.yaml)"
            ))
            .into());
        }
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    };
    match parse_go_version(&have) {
        Some(v) if v >= needed => {}
        _ => {
            let shown = if have.is_empty() {
                "an unknown version"
            } else {
                &have
            };
            return Err(refuse(format!(
                "`{go}` is {shown} (install a newer Go, or set IG_GO to one)"
            ))
            .into());
        }
    }
    let out = work.join("program.wasm");
    let mut cmd = Command::new(&go);
    cmd.arg("build")
        .arg("-C")
        .arg(dir)
        .arg("-o")
        .arg(&out)
        .args(["-buildmode=c-shared", "-ldflags", "-w -s"])
        .arg(src.file_name().unwrap_or_default())
        .env("CGO_ENABLED", "0")
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm");
    run_tool(cmd, &go, "IG_GO")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_versions() {
        assert_eq!(parse_go_version("go1.26.0"), Some((1, 26, 0)));
        assert_eq!(parse_go_version("go1.26"), Some((1, 26, 0)));
        assert_eq!(parse_go_version("go1.27rc1"), Some((1, 27, 0)));
        assert_eq!(parse_go_version("devel go1.27-abcdef"), Some((1, 27, 0)));
        assert_eq!(parse_go_version("go1.19.8"), Some((1, 19, 8)));
        assert_eq!(parse_go_version(""), None);
        assert_eq!(parse_go_version("1.26"), None);
        assert!(parse_go_version("go1.19.8") < Some(GO_MIN));
    }

    #[test]
    fn the_module_is_the_cdylib_of_our_package() {
        let m = Path::new("/g/rust/Cargo.toml");
        let report = br#"{"reason":"compiler-artifact","manifest_path":"/api/Cargo.toml","target":{"kind":["lib"]},"filenames":["/t/libapi.rlib"]}
not json
{"reason":"compiler-artifact","manifest_path":"/g/rust/Cargo.toml","target":{"kind":["cdylib"]},"filenames":["/t/wasm32-wasip1/release/trace_mount.wasm"]}
{"reason":"build-finished","success":true}
"#;
        assert_eq!(
            cdylib_of(report, m),
            Some(PathBuf::from("/t/wasm32-wasip1/release/trace_mount.wasm"))
        );
        assert_eq!(cdylib_of(report, Path::new("/other/Cargo.toml")), None);
    }
}
