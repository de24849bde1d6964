//! `cargo xtask dist`: the binary that ships, and `cargo xtask man|docs`:
//! the man pages and the markdown reference generated from the clap
//! definitions.
//!
//! The dist binaries are `ig` and `gadgetctl` (the client of `ig
//! daemon`) for `x86_64-unknown-linux-musl`, linked statically and
//! stripped (`[profile.dist]` in Cargo.toml), copied to `target/dist/`. It is a second full build of every dependency, so it
//! uses a target directory of its own (`target/dist-build`): a developer's
//! `cargo test` does not wait for its lock, and its cache survives.
//! `dist` then packs the release archive, `ig-VERSION-x86_64-linux-musl.tar.gz`
//! (both binaries, their man pages and completions, LICENSE) with its
//! `.sha256` beside it (`package`). `dist` also checks what it produced (static, under the size budget,
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
        "--bin",
        "gadgetctl",
        "--target-dir",
        target_dir.to_str().context("non-UTF-8 repository path")?,
    ])?;
    let out_dir = root.join("target/dist");
    std::fs::create_dir_all(&out_dir)?;
    for bin in ["ig", "gadgetctl"] {
        let built = target_dir.join(TARGET).join("dist").join(bin);
        // Copy through a temp name so a running `target/dist/ig` is not
        // overwritten in place ("text file busy").
        let tmp = out_dir.join(format!(".{bin}.tmp"));
        std::fs::copy(&built, &tmp).with_context(|| format!("copying {}", built.display()))?;
        std::fs::rename(&tmp, out_dir.join(bin))?;
    }
    let out = out_dir.join("ig");
    let size = check(&out, "version", "ig version")?;
    let gadgetctl = out_dir.join("gadgetctl");
    let client_size = check(&gadgetctl, "--version", "gadgetctl ")?;
    eprintln!(
        "dist: {} is static, stripped, {:.1} MB ({client_size} bytes)",
        gadgetctl.display(),
        client_size as f64 / 1e6,
    );
    eprintln!(
        "dist: {} is static, stripped, {:.1} MB ({size} bytes); built in {:.0} s",
        out.display(),
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let tarball = package(root, &out, &gadgetctl)?;
    eprintln!("dist: {} and its .sha256", tarball.display());
    Ok(out)
}

/// The release archive `target/dist/ig-VERSION-x86_64-linux-musl.tar.gz`:
/// one directory of that name holding the binaries (`ig`, `gadgetctl`),
/// LICENSE, the man pages (`man/man1/`, from `ig man --dir` and
/// `gadgetctl man --dir`) and the completion scripts (`completions/`:
/// `ig.bash`, `_ig`, `ig.fish` and gadgetctl's, from `completion`), all
/// produced by the binaries themselves so they describe them; and beside
/// it `<archive>.sha256`, in `sha256sum`'s format (`sha256sum -c` checks
/// it). Returns the archive's path.
fn package(root: &Path, ig: &Path, gadgetctl: &Path) -> Result<PathBuf> {
    let version = Command::new(ig).arg("--version").output()?;
    let version = String::from_utf8_lossy(&version.stdout)
        .trim()
        .strip_prefix("ig ")
        .context("`ig --version` does not say `ig VERSION`")?
        .to_owned();
    let name = format!("ig-{version}-x86_64-linux-musl");
    let out_dir = root.join("target/dist");
    let staging = out_dir.join(".staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let top = staging.join(&name);
    std::fs::create_dir_all(top.join("completions"))?;
    std::fs::copy(root.join("LICENSE"), top.join("LICENSE"))?;
    for (bin, path) in [("ig", ig), ("gadgetctl", gadgetctl)] {
        std::fs::copy(path, top.join(bin))?;
        run(Command::new(path)
            .args(["man", "--dir"])
            .arg(top.join("man/man1")))?;
        for (shell, file) in [
            ("bash", format!("{bin}.bash")),
            ("zsh", format!("_{bin}")),
            ("fish", format!("{bin}.fish")),
        ] {
            let script = Command::new(path).args(["completion", shell]).output()?;
            if !script.status.success() || script.stdout.is_empty() {
                bail!(
                    "`{bin} completion {shell}` failed: {}",
                    String::from_utf8_lossy(&script.stderr)
                );
            }
            std::fs::write(top.join("completions").join(file), script.stdout)?;
        }
    }
    let tarball = out_dir.join(format!("{name}.tar.gz"));
    // Owner and times fixed, names sorted: the same inputs give the same
    // archive.
    run(Command::new("tar")
        .arg("-C")
        .arg(&staging)
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-czf",
        ])
        .arg(&tarball)
        .arg(&name))?;
    std::fs::remove_dir_all(&staging)?;
    let sum = Command::new("sha256sum")
        .arg(format!("{name}.tar.gz"))
        .current_dir(&out_dir)
        .output()
        .context("running sha256sum")?;
    if !sum.status.success() {
        bail!("sha256sum failed: {}", String::from_utf8_lossy(&sum.stderr));
    }
    std::fs::write(out_dir.join(format!("{name}.tar.gz.sha256")), sum.stdout)?;
    Ok(tarball)
}

/// The checks a shipped binary must pass; returns its size. `version`
/// must print `says` (gadgetctl's `version` asks the daemon: it is
/// checked with `--version`).
fn check(ig: &Path, version: &str, says: &str) -> Result<u64> {
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
    let version = Command::new(ig).arg(version).output()?;
    if !version.status.success() || !String::from_utf8_lossy(&version.stdout).contains(says) {
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
