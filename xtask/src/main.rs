//! Project automation: `cargo xtask <command>`.
//!
//! - `setup`   install the system packages ig needs, mount tracefs and bpffs,
//!   build ig in release mode and build every gadget of `gadgets/` into the
//!   local store. After it, `./target/release/ig run trace_exec` works.
//! - `gadgets` build every gadget of `gadgets/` into the store (`IG_STORE`
//!   or the default) with the release binary.
//! - `test`    the whole suite: format and lint checks, unit, CLI and kernel
//!   tests. Installs and mounts what the tests need first, so it works on a
//!   fresh machine as root. This is what CI runs.
//!
//! Written in Rust rather than shell so that it runs the same everywhere
//! cargo does and fails with a message naming the step.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a developer tool talks to its user"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Debian packages: the gadget build tools (clang, llvm-strip, libbpf
/// headers, bpftool for vmlinux.h), the OCI interop checker (skopeo) and
/// jq for the README's recipes and tests.
const PACKAGES: &[&str] = &["clang", "llvm", "libbpf-dev", "bpftool", "skopeo", "jq"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("setup") => {
            let deps_only = args.iter().any(|a| a == "--deps-only");
            system_deps()?;
            if !deps_only {
                cargo(&["build", "--release", "--locked", "--bin", "ig"])?;
                gadgets(&root.join("target/release/ig"))?;
                println!("\nready: ./target/release/ig run trace_exec");
            }
            Ok(())
        }
        Some("gadgets") => {
            cargo(&["build", "--release", "--locked", "--bin", "ig"])?;
            gadgets(&root.join("target/release/ig"))
        }
        Some("test") => test(),
        _ => {
            eprintln!("usage: cargo xtask <setup [--deps-only] | gadgets | test>");
            bail!("unknown or missing command")
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_owned()
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo(args: &[&str]) -> Result<()> {
    run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args(args))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Packages, then the kernel filesystems ig and its tests use.
fn system_deps() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg")
                .args(["-s", p])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        if !is_root() {
            bail!("missing packages {missing:?}: run as root (or apt-get install them)");
        }
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    for (fs, dir) in [("tracefs", "/sys/kernel/tracing"), ("bpf", "/sys/fs/bpf")] {
        let mounted = Command::new("mountpoint")
            .args(["-q", dir])
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            if !is_root() {
                bail!("{dir} is not mounted: run as root (mount -t {fs} {fs} {dir})");
            }
            run(Command::new("mount").args(["-t", fs, fs, dir]))?;
        }
    }
    Ok(())
}

/// Build each `gadgets/<name>` as image `<name>`.
fn gadgets(ig: &Path) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir("gadgets")?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("program.bpf.c").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        run(Command::new(ig).args(["image", "build", &format!("gadgets/{name}"), "-t", &name]))?;
    }
    Ok(())
}

fn test() -> Result<()> {
    system_deps()?;
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    // Kernel tests fail rather than skip when BPF is missing.
    cargo(&["test", "--workspace", "--locked"])
}
