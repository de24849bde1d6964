//! `cargo xtask fuzz [--seconds N] [--build-only] [TARGET...]`: coverage-guided
//! fuzzing of ig's parsers on stable Rust.
//!
//! The `fuzz/` crate links libFuzzer (compiled from source by
//! `libfuzzer-sys`) and is built here with SanitizerCoverage turned on by
//! stable codegen flags (`-C passes=sancov-module` and the
//! `-sanitizer-coverage-*` LLVM options), the same instrumentation
//! `cargo fuzz` asks for, minus the nightly-only sanitizers. `--target` is
//! passed so that the flags reach ig and its dependencies but not build
//! scripts or proc macros.
//!
//! Each target starts from its committed seeds (`fuzz/corpus/TARGET/`) in a
//! scratch corpus under `target/fuzz/`, so a run never rewrites the
//! repository; a crash lands in `target/fuzz/artifacts/TARGET/` and fails
//! the command. Each run appends a line (date, target, seconds, executions,
//! command) to `target/fuzz/runs.log` for docs/reliability.md.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// The targets of `fuzz/src/targets.rs` (`NAMES` there), in run order.
const TARGETS: &[&str] = &[
    "gadget_yaml",
    "oci_json",
    "object",
    "btf",
    "filter",
    "filter_expr",
    "reference",
    "wasm",
    "wasm_host",
    "wire",
];

/// Largest input per target: gadget objects and images can be large, an
/// expression is small (16 KiB is far past any real one), a
/// WASM module is compiled per input, so its inputs stay at 64 KiB (what
/// `targets::WASM_MAX_LEN` takes).
fn max_len(target: &str) -> usize {
    if target.starts_with("wasm") {
        64 << 10
    } else if target == "filter_expr" {
        // An expression: real ones are under 1 KiB.
        16 << 10
    } else {
        256 << 10
    }
}

/// Stable rustc flags for libFuzzer's coverage feedback: edge counters,
/// the PC table, and comparison tracing (which lets it guess magic numbers
/// such as the ELF and BTF headers).
const SANCOV_FLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg=fuzzing",
];

pub fn main(root: &Path, args: &[String]) -> Result<()> {
    let mut seconds: u64 = 10;
    let mut build_only = false;
    let mut names: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .context("--seconds needs a number")?
                    .parse()
                    .context("--seconds needs a number")?;
            }
            "--build-only" => build_only = true,
            t if TARGETS.contains(&t) => names.push(t.to_owned()),
            other => bail!("unknown fuzz target or flag {other:?}; targets: {TARGETS:?}"),
        }
    }
    if names.is_empty() {
        names = TARGETS.iter().map(|s| (*s).to_owned()).collect();
    }
    let triple = host_triple()?;
    let target_dir = root.join("target/fuzz");
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(root.join("fuzz/Cargo.toml"))
        .args(["--target", &triple, "--target-dir"])
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", SANCOV_FLAGS.join(" "));
    for n in &names {
        build.args(["--bin", n]);
    }
    crate::run(&mut build)?;
    if build_only {
        return Ok(());
    }
    let bin_dir = target_dir.join(&triple).join("release");
    let log = target_dir.join("runs.log");
    let mut failed = Vec::new();
    for name in &names {
        let seeds = root.join("fuzz/corpus").join(name);
        let work = target_dir.join("corpus").join(name);
        let artifacts = target_dir.join("artifacts").join(name);
        std::fs::create_dir_all(&work)?;
        std::fs::create_dir_all(&artifacts)?;
        let mut cmd = Command::new(bin_dir.join(name));
        cmd.arg(format!("-max_total_time={seconds}"))
            // A single input taking over 10 s, or a run over 2 GiB, is a
            // finding (super-linear input, unbounded allocation).
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .arg(format!("-max_len={}", max_len(name)))
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(&work)
            .arg(&seeds);
        eprintln!("$ {cmd:?}");
        // When the run started, for the record.
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%dT%H:%MZ"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let out = cmd
            .stderr(std::process::Stdio::piped())
            .output()
            .with_context(|| format!("starting fuzz target {name}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let execs = stat(&stderr, "stat::number_of_executed_units:").unwrap_or_default();
        let verdict = if out.status.success() { "ok" } else { "CRASH" };
        let line = format!(
            "{date} {name} {seconds}s execs={execs} {verdict} (cargo xtask fuzz --seconds {seconds} {name})\n"
        );
        eprint!("{line}");
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?
            .write_all(line.as_bytes())?;
        if !out.status.success() {
            // The panic message and the first frames, then libFuzzer's
            // verdict (where the input was written).
            let lines: Vec<&str> = stderr.lines().collect();
            if let Some(i) = lines.iter().position(|l| l.contains("panicked at")) {
                for l in &lines[i..(i + 12).min(lines.len())] {
                    eprintln!("  {l}");
                }
                eprintln!("  ...");
            }
            for l in &lines[lines.len().saturating_sub(12)..] {
                eprintln!("  {l}");
            }
            failed.push(name.clone());
        }
    }
    if !failed.is_empty() {
        bail!("fuzz targets {failed:?} crashed; inputs are in target/fuzz/artifacts/");
    }
    Ok(())
}

/// The value of a `-print_final_stats` line.
fn stat(stderr: &str, key: &str) -> Option<String> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
}

fn host_triple() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}
