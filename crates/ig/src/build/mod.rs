//! `ig image build`: compile a gadget directory into the parts of an image.
//!
//! Owns: reading `build.yaml`, writing the author headers (embedded in the
//! binary, see [`headers`]) and a `vmlinux.h` generated from the running
//! kernel's BTF ([`KERNEL_BTF`], turned into C by
//! [`crate::btf::c_header`]: no bpftool) into a private temporary
//! directory, running clang and llvm-strip (which drops the DWARF that
//! `-g` adds for BTF), and checking the result is a gadget we can run (BTF
//! present, markers well formed) before anything is written to the store.
//! The header is generated for every build, not cached: it takes a fraction
//! of a second (see `btf::c_header`) and then always matches the running
//! kernel. A directory without `program.bpf.c` (and no `ebpfsource` in
//! `build.yaml`) is a gadget made of operators only, as upstream's
//! bpfstats: nothing is compiled and the image has no eBPF layer.
//! Does not own: the store (`image::Store` writes the image) or the
//! metadata model (`metadata`).
//!
//! clang's diagnostics go straight to our stderr, unchanged: they are the
//! most useful thing a gadget author can see.

pub mod headers;
pub mod toolchain;
mod wasm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::bpf::contract::Contract;
use crate::btf::Btf;
use crate::metadata::GadgetMetadata;

/// Why `ig image build` failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `path` is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The file.
        path: PathBuf,
    },
    /// Reading `path` failed.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing `path` failed.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// build.yaml cannot be used.
    #[error("{path}: {message}")]
    BuildFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// `path` is larger than any reader of the image would take.
    #[error("{path} is {size} bytes; at most {limit} are read (the image's readers take no more)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// `path` is missing: every gadget needs a gadget.yaml with at least
    /// `name:`.
    #[error("{path} is missing: every gadget needs a gadget.yaml with at least `name:`")]
    MissingMetadata {
        /// The file.
        path: PathBuf,
    },
    /// gadget.yaml is not valid.
    #[error(transparent)]
    Metadata(#[from] crate::metadata::MetadataError),
    /// `path`: not a WASM module (it does not start with \\0asm).
    #[error("{path}: not a WASM module (it does not start with \\0asm)")]
    NotWasm {
        /// The file.
        path: PathBuf,
    },
    /// `path`: `wasm:` must name a prebuilt .wasm module or a guest's source.
    #[error(
        "{path}: `wasm:` must name a prebuilt .wasm module or a guest's source: C (.c), Rust (the crate's src/lib.rs) or Go (.go)"
    )]
    WasmSource {
        /// The file.
        path: PathBuf,
    },
    /// The WASM guest could not be built.
    #[error(transparent)]
    Guest(#[from] wasm::GuestError),
    /// Cannot run `program` (set `env` to use another binary).
    #[error("cannot run {program} (set {env} to use another binary)")]
    ToolMissing {
        /// The tool.
        program: String,
        /// The variable that names another.
        env: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No clang on `PATH`, and `IG_CLANG` names none.
    #[error(
        "no clang on PATH: building a gadget needs clang and llvm-strip (Debian bookworm: apt-get install clang-19 llvm-19 libbpf-dev), or IG_CLANG naming one"
    )]
    NoClang,
    /// `tool` failed with `status` (its messages are above).
    #[error("{tool} failed with {status} (its messages are above)")]
    ToolFailed {
        /// The tool.
        tool: String,
        /// How it exited.
        status: std::process::ExitStatus,
    },
    /// Reading the kernel's BTF `path` (needed to write vmlinux.h) failed.
    #[error("reading the kernel's BTF {path} (needed to write vmlinux.h)")]
    KernelBtf {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Generating vmlinux.h from `path` failed.
    #[error("generating vmlinux.h from {path}")]
    Vmlinux {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The compiled object is not a usable gadget.
    #[error("the compiled object is not a usable gadget")]
    Object(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Keys of `build.yaml` (upstream's names). All optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildFile {
    #[serde(default)]
    ebpfsource: Option<String>,
    #[serde(default)]
    wasm: Option<String>,
    #[serde(default)]
    metadata: Option<String>,
    #[serde(default)]
    cflags: Option<String>,
}

/// What to build and with which tools.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The gadget directory.
    pub dir: PathBuf,
    /// `build.yaml` path; defaults to `DIR/build.yaml` if it exists.
    pub build_file: Option<PathBuf>,
    /// The clang to compile with.
    pub clang: String,
    /// The llvm-strip to strip with.
    pub strip: String,
    /// How `clang` was chosen (see [`toolchain`]).
    pub toolchain: toolchain::Toolchain,
}

impl BuildOptions {
    /// Tools from `IG_CLANG`, `IG_LLVM_STRIP`, else the newest clang on
    /// `PATH` ([`toolchain`]).
    pub fn new(dir: PathBuf) -> Self {
        let toolchain = toolchain::Toolchain::from_env();
        Self {
            dir,
            build_file: None,
            clang: toolchain.clang.clone(),
            strip: toolchain.strip.clone(),
            toolchain,
        }
    }
}

/// A compiled gadget, ready for the store.
#[derive(Debug)]
pub struct Built {
    /// gadget.yaml as written.
    pub metadata_yaml: Vec<u8>,
    /// `metadata:` of build.yaml, when it names another file than
    /// gadget.yaml.
    pub metadata_file: Option<String>,
    /// gadget.yaml, parsed.
    pub metadata: GadgetMetadata,
    /// The eBPF object and its markers; `None` for a gadget of operators
    /// only.
    pub object: Option<Vec<u8>>,
    /// The object's markers, when it has an object.
    pub contract: Option<Contract>,
    /// The WASM module named by `build.yaml`'s `wasm:`.
    pub wasm: Option<Vec<u8>>,
}

/// Compile `opts.dir` into a [`Built`] gadget. Writes nothing outside a
/// private temporary directory, which is removed afterwards.
pub fn build(opts: &BuildOptions) -> Result<Built, BuildError> {
    let dir = &opts.dir;
    if !dir.is_dir() {
        return Err(BuildError::NotADirectory { path: dir.clone() });
    }
    let bf_path = opts
        .build_file
        .clone()
        .unwrap_or_else(|| dir.join("build.yaml"));
    let bf: BuildFile = match read_capped(&bf_path) {
        Ok(text) if text.trim_ascii().is_empty() => BuildFile::default(),
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|e| BuildError::BuildFile {
                path: bf_path.clone(),
                message: format!("not UTF-8: {e}"),
            })?;
            crate::metadata::nesting::check_flow_depth(&text).map_err(|d| {
                BuildError::BuildFile {
                    path: bf_path.clone(),
                    message: crate::metadata::too_deep("", d)
                        .to_string()
                        .trim_start_matches(':')
                        .to_owned(),
                }
            })?;
            yaml_serde::from_str(&text).map_err(|e| BuildError::BuildFile {
                path: bf_path.clone(),
                message: e.to_string(),
            })?
        }
        Err(Capped::Io(e))
            if e.kind() == std::io::ErrorKind::NotFound && opts.build_file.is_none() =>
        {
            BuildFile::default()
        }
        Err(e) => return Err(e.at(bf_path)),
    };
    let meta_path = dir.join(bf.metadata.as_deref().unwrap_or("gadget.yaml"));
    let metadata_yaml = match read_capped(&meta_path) {
        Ok(b) => b,
        Err(Capped::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BuildError::MissingMetadata { path: meta_path });
        }
        Err(e) => return Err(e.at(meta_path)),
    };
    let meta_name = meta_path.display().to_string();
    let metadata = GadgetMetadata::parse(&metadata_yaml, &meta_name)?;
    metadata.validate_for_build(&meta_name)?;
    for k in metadata.unknown.keys() {
        log::warn!("{meta_name}: unknown key {k} (ignored)");
    }
    let source = dir.join(bf.ebpfsource.as_deref().unwrap_or("program.bpf.c"));
    if !source.is_file() && bf.ebpfsource.is_none() {
        // Upstream's rule: no default source, no eBPF layer.
        log::debug!("{} not found: a gadget without eBPF", source.display());
        let wasm = match &bf.wasm {
            Some(w) => Some(wasm::build(opts, &dir.join(w), temp_dir()?.path())?),
            None => None,
        };
        return Ok(Built {
            metadata_yaml,
            metadata_file: bf.metadata,
            metadata,
            object: None,
            contract: None,
            wasm,
        });
    }
    if !source.is_file() {
        return Err(BuildError::Read {
            path: source,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "eBPF source not found"),
        });
    }

    log::debug!("{}", opts.toolchain.describe());
    if opts.toolchain.origin == toolchain::Origin::NotFound {
        return Err(BuildError::NoClang);
    }
    if let Some(v) = opts.toolchain.clang_major
        && v < toolchain::UPSTREAM_CLANG_MAJOR
    {
        log::warn!(
            "{} is clang {v}, older than upstream's builder (clang {}): some gadgets written for upstream do not compile with it (install clang-19, or set IG_CLANG)",
            opts.clang,
            toolchain::UPSTREAM_CLANG_MAJOR
        );
    }

    let work = temp_dir()?;
    let include = work.path().join("include");
    headers::write_all(&include)?;
    let arch_dir = include.join("gadget").join(headers::ARCH_DIR);
    make_vmlinux_h(Path::new(KERNEL_BTF), &arch_dir.join("vmlinux.h"))?;

    let obj = work.path().join("program.o");
    let stripped = work.path().join("program.stripped.o");
    let mut clang = Command::new(&opts.clang);
    clang
        .args(["-target", "bpf", "-Wall", "-g", "-O2"])
        .arg(format!("-D__TARGET_ARCH_{}", headers::TARGET_ARCH))
        .arg("-I")
        .arg(&include)
        .arg("-I")
        .arg(&arch_dir)
        .arg(format!(
            "-I/usr/include/{}-linux-gnu",
            std::env::consts::ARCH
        ));
    if let Some(flags) = &bf.cflags {
        clang.args(flags.split_whitespace());
    }
    clang.arg("-c").arg(&source).arg("-o").arg(&obj);
    run_tool(clang, &opts.clang, "IG_CLANG")?;
    let mut strip = Command::new(&opts.strip);
    strip.arg("-g").arg(&obj).arg("-o").arg(&stripped);
    run_tool(strip, &opts.strip, "IG_LLVM_STRIP")?;
    let object = std::fs::read(&stripped).map_err(|source| BuildError::Read {
        path: stripped.clone(),
        source,
    })?;

    let contract = check_object(&object)?;
    let wasm = match &bf.wasm {
        Some(w) => Some(wasm::build(opts, &dir.join(w), work.path())?),
        None => None,
    };
    Ok(Built {
        metadata_yaml,
        metadata_file: bf.metadata,
        metadata,
        object: Some(object),
        contract: Some(contract),
        wasm,
    })
}

/// The image annotations upstream sets, from the metadata.
pub fn annotations(meta: &GadgetMetadata, created: String) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            a.insert(format!("org.opencontainers.image.{k}"), v.to_owned());
        }
    };
    put("title", &meta.name);
    put("description", &meta.description);
    put("url", &meta.homepage_url);
    put("documentation", &meta.documentation_url);
    put("source", &meta.source_url);
    put("created", &created);
    a.insert(
        "io.inspektor-gadget.builder.version".to_owned(),
        format!("v{}", env!("CARGO_PKG_VERSION")),
    );
    a.extend(meta.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
    a
}

/// The checks `ig run` would make on the object, done now so a broken
/// gadget never reaches the store.
fn check_object(object: &[u8]) -> Result<Contract, BuildError> {
    Ok(crate::bpf::inspect(object)
        .map_err(BuildError::Object)?
        .contract)
}

fn run_tool(mut cmd: Command, program: &str, env: &'static str) -> Result<(), BuildError> {
    log::debug!("running {cmd:?}");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|source| BuildError::ToolMissing {
            program: program.to_owned(),
            env,
            source,
        })?;
    if !status.success() {
        return Err(BuildError::ToolFailed {
            tool: program.to_owned(),
            status,
        });
    }
    Ok(())
}

/// Where the running kernel exposes its BTF (`CONFIG_DEBUG_INFO_BTF`).
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// `vmlinux.h` for the kernel whose BTF is at `btf_path`. Generated, never
/// committed: it must match the kernel the gadget is compiled for (CO-RE
/// relocates the rest).
pub fn make_vmlinux_h(btf_path: &Path, dest: &Path) -> Result<(), BuildError> {
    let started = std::time::Instant::now();
    let data = std::fs::read(btf_path).map_err(|source| BuildError::KernelBtf {
        path: btf_path.to_owned(),
        source,
    })?;
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| BuildError::Vmlinux {
        path: btf_path.to_owned(),
        source,
    };
    let btf = Btf::parse(&data).map_err(|e| failed(e.into()))?;
    let header = crate::btf::c_header::vmlinux_h(&btf).map_err(|e| failed(e.into()))?;
    std::fs::write(dest, &header).map_err(|source| BuildError::Write {
        path: dest.to_owned(),
        source,
    })?;
    log::debug!(
        "wrote vmlinux.h ({} bytes) from {} in {:.0?}",
        header.len(),
        btf_path.display(),
        started.elapsed()
    );
    Ok(())
}

/// Build directories are `ig-build-<pid>-<random>` in the system's
/// temporary directory: the pid tells a directory whose `ig` is gone (killed
/// with SIGKILL, or a machine that lost power) from one in use.
const BUILD_DIR_PREFIX: &str = "ig-build-";

/// A directory of an older `ig` (`ig-build-<random>`, no pid) is stale once
/// untouched this long.
const LEGACY_BUILD_DIR_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Whose build directory `name` is: `None` if it is not one;
/// `Some(Some(pid))`; `Some(None)` for a name of an older `ig`, without a
/// pid.
fn build_dir_owner(name: &str) -> Option<Option<u32>> {
    let rest = name.strip_prefix(BUILD_DIR_PREFIX)?;
    match rest.split_once('-') {
        Some((pid, random)) if !random.is_empty() => pid.parse().ok().map(Some),
        Some(_) => None,
        None => (!rest.is_empty()).then_some(None),
    }
}

/// Which build directories [`sweep_build_dirs`] removes.
#[derive(Clone, Copy, Debug)]
pub enum Sweep {
    /// Those whose `ig` has exited (no `/proc/PID`), and older `ig`'s
    /// untouched for a day.
    Stale,
    /// This process's: a build interrupted by a signal.
    OfPid(u32),
}

/// Remove build directories of ours (owned by this user, real directories,
/// not links) from `tmp` (the system's temporary directory in use) as
/// `which` says; the number removed. Errors are skipped: this is upkeep.
/// A process that reused a dead build's pid keeps its directory until it
/// ends too.
pub fn sweep_build_dirs(tmp: &Path, which: Sweep) -> usize {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return 0;
    };
    // SAFETY: geteuid(2) cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(owner) = name.to_str().and_then(build_dir_owner) else {
            continue;
        };
        let path = e.path();
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !m.is_dir() || m.uid() != me {
            continue;
        }
        let remove = match (which, owner) {
            (Sweep::OfPid(p), Some(pid)) => p == pid,
            (Sweep::OfPid(_), None) => false,
            (Sweep::Stale, Some(pid)) => !Path::new(&format!("/proc/{pid}")).exists(),
            (Sweep::Stale, None) => m
                .modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > LEGACY_BUILD_DIR_AGE),
        };
        if remove && remove_dir_patiently(&path, which) {
            log::debug!("removed the build directory {}", path.display());
            removed += 1;
        }
    }
    removed
}

/// `remove_dir_all`, retried for up to a second when the directory is of
/// this process: a compiler ig started may still be writing into it when
/// a signal arrives (a signal to ig alone does not stop clang), and a file
/// it creates between the listing and the `rmdir` fails the removal.
fn remove_dir_patiently(path: &Path, which: Sweep) -> bool {
    let tries = if matches!(which, Sweep::OfPid(_)) {
        50
    } else {
        1
    };
    for _ in 0..tries {
        match std::fs::remove_dir_all(path) {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    false
}

/// A private temporary directory for a build, removed on drop:
/// `ig-build-<pid>-<random>` (see [`BUILD_DIR_PREFIX`]).
fn temp_dir() -> Result<crate::files::TempDir, BuildError> {
    crate::files::TempDir::new(&format!("{BUILD_DIR_PREFIX}{}-", std::process::id()))
        .map_err(|(path, source)| BuildError::Write { path, source })
}

/// Why [`read_capped`] gave no bytes.
enum Capped {
    Io(std::io::Error),
    TooLarge(u64),
}

impl Capped {
    fn at(self, path: PathBuf) -> BuildError {
        match self {
            Capped::Io(source) => BuildError::Read { path, source },
            Capped::TooLarge(size) => BuildError::TooLarge {
                path,
                size,
                limit: crate::image::limits::MAX_JSON,
            },
        }
    }
}

/// A YAML file of the gadget, refused before it is read (and parsed) if
/// it is larger than the image's readers take for a config: a 50 MB
/// `description:` took 681 MB to build into an image nothing could read.
fn read_capped(path: &Path) -> Result<Vec<u8>, Capped> {
    let file = std::fs::File::open(path).map_err(Capped::Io)?;
    crate::image::limits::read_capped(file, crate::image::limits::MAX_JSON)
        .map_err(Capped::Io)?
        .map_err(Capped::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_dir_names() {
        assert_eq!(build_dir_owner("ig-build-1234-0a1b"), Some(Some(1234)));
        assert_eq!(build_dir_owner("ig-build-0a1b2c"), Some(None));
        assert_eq!(build_dir_owner("ig-build-"), None);
        assert_eq!(build_dir_owner("ig-build-12-"), None);
        assert_eq!(build_dir_owner("ig-build-x1-ab"), None);
        assert_eq!(build_dir_owner("other-1234-ab"), None);
    }

    #[test]
    fn sweeps_dead_and_own_build_dirs_only() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        // pid 1 exists everywhere; 2^22+1 is above Linux's pid_max.
        let dead = 4_194_305;
        for n in [
            format!("ig-build-{dead}-aa"),
            "ig-build-1-bb".to_owned(),
            format!("ig-build-{}-cc", std::process::id()),
            "ig-build-dd".to_owned(),
            "unrelated".to_owned(),
        ] {
            std::fs::create_dir(t.join(n)).unwrap();
        }
        // A link with a build directory's name is not followed or removed.
        let target = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(target.path(), t.join(format!("ig-build-{dead}-ee"))).unwrap();
        let left = |t: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(t)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(sweep_build_dirs(t, Sweep::Stale), 1);
        assert!(
            !left(t).contains(&format!("ig-build-{dead}-aa")),
            "{:?}",
            left(t)
        );
        assert_eq!(sweep_build_dirs(t, Sweep::OfPid(std::process::id())), 1);
        assert_eq!(
            left(t),
            [
                "ig-build-1-bb".to_owned(),
                format!("ig-build-{dead}-ee"),
                "ig-build-dd".to_owned(),
                "unrelated".to_owned()
            ]
        );
        assert!(target.path().exists());
    }

    #[test]
    fn annotations_follow_upstream_keys() {
        let meta = GadgetMetadata {
            name: "trace_exec".into(),
            description: "Trace exec".into(),
            source_url: "https://example.invalid/src".into(),
            ..GadgetMetadata::default()
        };
        let a = annotations(&meta, "2026-01-01T00:00:00Z".into());
        assert_eq!(a["org.opencontainers.image.title"], "trace_exec");
        assert_eq!(a["org.opencontainers.image.description"], "Trace exec");
        assert_eq!(
            a["org.opencontainers.image.source"],
            "https://example.invalid/src"
        );
        assert_eq!(
            a["org.opencontainers.image.created"],
            "2026-01-01T00:00:00Z"
        );
        assert!(!a.contains_key("org.opencontainers.image.url"));
        assert!(a["io.inspektor-gadget.builder.version"].starts_with('v'));
    }

    #[test]
    fn missing_dir_and_metadata_are_clear_errors() {
        let e = build(&BuildOptions::new("/nonexistent/gadget".into())).unwrap_err();
        assert!(matches!(e, BuildError::NotADirectory { .. }));
        let d = tempfile::tempdir().unwrap();
        let e = build(&BuildOptions::new(d.path().to_owned())).unwrap_err();
        assert!(matches!(e, BuildError::MissingMetadata { .. }), "{e}");
        std::fs::write(d.path().join("gadget.yaml"), "name: [\n").unwrap();
        let e = build(&BuildOptions::new(d.path().to_owned())).unwrap_err();
        assert!(e.to_string().contains("gadget.yaml:"), "{e}");
        std::fs::write(d.path().join("gadget.yaml"), "name: x\n").unwrap();
    }
}
