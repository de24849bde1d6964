//! `cargo xtask dist`: the binary that ships, and `cargo xtask man|docs`:
//! the man pages and the markdown reference generated from the clap
//! definitions.
//!
//! The dist binary is `ig` for `x86_64-unknown-linux-musl`, linked
//! statically and stripped (`[profile.dist]` in Cargo.toml), copied to
//! `target/dist/ig`. It is a second full build of every dependency, so it
//! uses a target directory of its own (`target/dist-build`): a developer's
//! `cargo test` does not wait for its lock, and its cache survives.
//! `dist` also checks what it produced (static, under the size budget,
//! runs), so a dependency that brings in a dynamic library or a large
//! growth fails here rather than on a user's host; `tests/dist` checks
//! the same binary from the test side and builds a gadget with it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::{cargo, run};

/// The target of the shipped binary.
pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// Largest acceptable dist binary: the budget, 30 MB, which
/// includes the WASM runtime (wasmtime, cranelift, WASI). The measured
/// size is in docs/benchmarks.md.
pub const MAX_SIZE: u64 = 30 * 1000 * 1000;

/// Adds the musl target to the toolchain when it is missing.
pub fn rustup_target() -> Result<()> {
    rustup_target_add(TARGET)
}

/// Adds `target` to the toolchain when it is missing.
pub fn rustup_target_add(target: &str) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (is the toolchain installed with rustup?)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == target)
    {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", target]))
}

/// Builds, copies and checks `target/dist/ig`; returns its path.
pub fn dist(root: &Path) -> Result<PathBuf> {
    rustup_target()?;
    if Command::new("musl-gcc").arg("--version").output().is_err() {
        bail!("musl-gcc is missing: apt-get install musl-tools (or run `cargo xtask setup`)");
    }
    let started = Instant::now();
    let target_dir = root.join("target/dist-build");
    cargo(&[
        "build",
        "--locked",
        "--profile",
        "dist",
        "--target",
        TARGET,
        "--bin",
        "ig",
        "--target-dir",
        target_dir.to_str().context("non-UTF-8 repository path")?,
    ])?;
    let built = target_dir.join(TARGET).join("dist/ig");
    let out_dir = root.join("target/dist");
    std::fs::create_dir_all(&out_dir)?;
    let out = out_dir.join("ig");
    // Copy through a temp name so a running `target/dist/ig` is not
    // overwritten in place ("text file busy").
    let tmp = out_dir.join(".ig.tmp");
    std::fs::copy(&built, &tmp).with_context(|| format!("copying {}", built.display()))?;
    std::fs::rename(&tmp, &out)?;
    let size = check(&out)?;
    eprintln!(
        "dist: {} is static, stripped, {:.1} MB ({size} bytes); built in {:.0} s",
        out.display(),
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// The checks a shipped binary must pass; returns its size.
fn check(ig: &Path) -> Result<u64> {
    let size = std::fs::metadata(ig)?.len();
    if size > MAX_SIZE {
        bail!(
            "{} is {size} bytes, over the budget of {MAX_SIZE}: see docs/benchmarks.md (binary size) for what takes the room",
            ig.display()
        );
    }
    let ldd = Command::new("ldd")
        .arg(ig)
        .output()
        .context("running ldd")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    if !(said.contains("not a dynamic executable") || said.contains("statically linked")) {
        bail!("{} is not static; ldd says:\n{said}", ig.display());
    }
    let file = Command::new("file").arg(ig).output();
    if let Ok(f) = file
        && String::from_utf8_lossy(&f.stdout).contains("not stripped")
    {
        bail!("{} is not stripped", ig.display());
    }
    let version = Command::new(ig).arg("version").output()?;
    if !version.status.success() || !String::from_utf8_lossy(&version.stdout).contains("ig version")
    {
        bail!(
            "{} version failed: {}",
            ig.display(),
            String::from_utf8_lossy(&version.stderr)
        );
    }
    Ok(size)
}

/// `cargo xtask man` / `cargo xtask docs`: regenerate `docs/reference/`
/// (markdown, committed, compared by `tests/conventions`) and `target/man/`
/// (man pages, `man -l target/man/ig.1`; each rendered by a test of
/// `tests/conventions` too) from the clap definitions.
pub fn reference(root: &Path) -> Result<()> {
    cargo(&[
        "run",
        "--locked",
        "--quiet",
        "--example",
        "reference",
        "--",
        root.join("docs/reference")
            .to_str()
            .context("non-UTF-8 repository path")?,
        root.join("target/man")
            .to_str()
            .context("non-UTF-8 repository path")?,
    ])?;
    eprintln!("wrote docs/reference/ and target/man/");
    Ok(())
}
