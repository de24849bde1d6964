//! Tidy checks: the layering rules of ARCHITECTURE.md, enforced by scanning
//! the library's sources (`crates/ig/src`) for `crate::<module>` paths
//! outside comments. (The command line, `src/cli`, is another crate: Cargo
//! keeps the library from using it.)

use std::collections::BTreeSet;
use std::path::Path;

/// Which top-level modules each module of the library may use. Modules not
/// listed may use anything (`build`).
const ALLOWED: &[(&str, &[&str])] = &[
    ("datasource", &[]),
    ("btf", &[]),
    ("metadata", &[]),
    // Untrusted text in messages (`text::Echo`): pure, used by every
    // layer that echoes what an archive or a registry says.
    ("text", &[]),
    ("image", &["files", "text"]),
    ("params", &[]),
    ("pipeline", &["datasource", "params"]),
    ("output", &["pipeline", "datasource"]),
    (
        "bpf",
        &[
            "btf",
            "datasource",
            "metadata",
            "params",
            "netif",
            "containers",
        ],
    ),
    (
        "operators",
        &[
            "pipeline",
            "bpf",
            "datasource",
            "expr",
            "metadata",
            "btf",
            "params",
            "containers",
            "symbols",
            "names",
            "files",
            // The names of the output modes (pure), for the annotations
            // ig honours; never the printers.
            "output::mode",
            // The logs operator's `data` is `-o json`'s object, made by the
            // same code (`ObjectWriter`) from the same fields; the
            // otel-logs operator's records carry those fields too.
            "output::fields",
            "output::json",
            // The otel-logs operator hands its batches to an exporter.
            "otlp",
            "otlp::metrics",
            // The log writer's thread is scheduled as the reader is.
            "sched",
        ],
    ),
    // OTLP: its messages, the exporters' thread; the metrics registry's
    // snapshots, the registry client's TLS set-up and error wording.
    (
        "otlp",
        &[
            "datasource",
            "params",
            "output::fields",
            "operators::otel_metrics",
            "operators::otel_metrics::exposition",
            "image::registry",
            "run",
        ],
    ),
    ("runner", &["output", "pipeline", "sched"]),
    // The library's run: everything but the CLI.
    (
        "run",
        &[
            "bpf",
            "datasource",
            "files",
            "image",
            "metadata",
            "operators",
            "output",
            "params",
            "pipeline",
            "runner",
            "sched",
        ],
    ),
    ("expr", &["datasource"]),
    ("containers", &[]),
    ("symbols", &[]),
    ("names", &[]),
    ("files", &[]),
    ("netif", &[]),
    ("sched", &[]),
];

fn uses(dir: &Path, out: &mut BTreeSet<String>, files: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            uses(&p, out, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            scan(&p, out, files);
        }
    }
}

/// The modules one file names as `crate::<module>`, each as
/// `module::item` (`output::mode`) or `module` alone. A `tests.rs` file
/// is test code, which may assemble any layers: not scanned.
fn scan(p: &Path, out: &mut BTreeSet<String>, files: &mut Vec<String>) {
    files.push(p.display().to_string());
    if p.file_name().is_some_and(|n| n == "tests.rs") {
        return;
    }
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for line in std::fs::read_to_string(p).unwrap().lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + 7..];
            let m = ident(rest);
            match rest[m.len()..].strip_prefix("::").map(ident) {
                Some(item) if !item.is_empty() => out.insert(format!("{m}::{item}")),
                _ => out.insert(m),
            };
        }
    }
}

#[test]
fn modules_respect_the_layering() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/ig/src");
    let mut problems = Vec::new();
    for (module, allowed) in ALLOWED {
        let mut used = BTreeSet::new();
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            uses(&dir, &mut used, &mut files);
        }
        // A module in one file (`src/params.rs`).
        let file = src.join(format!("{module}.rs"));
        if file.is_file() {
            scan(&file, &mut used, &mut files);
        }
        assert!(!files.is_empty(), "module {module} not found");
        for u in used {
            // `output::mode` is allowed by `output` or by `output::mode`.
            let top = u.split("::").next().unwrap_or_default();
            if top != *module && !allowed.contains(&top) && !allowed.contains(&u.as_str()) {
                problems.push(format!("{module} uses crate::{u} (allowed: {allowed:?})"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering violations:\n{}",
        problems.join("\n")
    );
}

/// Operators meet through fields, tags and annotations, never by calling
/// each other: no operator module names another.
#[test]
fn operators_do_not_import_each_other() {
    // Modules of operators/ that are shared helpers, not operators
    // (ARCHITECTURE.md): any operator may use them.
    const HELPERS: &[&str] = &["calendar", "ticker", "usersource"];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/ig/src/operators");
    let mut problems = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let own = p.file_stem().unwrap().to_string_lossy().into_owned();
        if own == "mod" {
            continue;
        }
        let mut files = Vec::new();
        if p.is_dir() {
            uses(&p, &mut BTreeSet::new(), &mut files);
        } else {
            files.push(p.display().to_string());
        }
        for f in files {
            for line in std::fs::read_to_string(&f).unwrap().lines() {
                let code = line.split("//").next().unwrap_or("");
                let mut rest = code;
                while let Some(i) = rest.find("crate::operators::") {
                    rest = &rest[i + 18..];
                    let m: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if m != own && !HELPERS.contains(&m.as_str()) {
                        problems.push(format!("{f} uses crate::operators::{m}"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// aya stays behind two doors: the loader (load, attach, read) and the
/// host's program statistics (`bpf/stats.rs`: read-only queries by id and
/// the statistics switch).
#[test]
fn only_the_loader_and_stats_use_aya() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/ig/src");
    let mut files = Vec::new();
    uses(&src, &mut BTreeSet::new(), &mut files);
    let offenders: Vec<_> = files
        .iter()
        .filter(|f| !f.ends_with("bpf/loader.rs") && !f.ends_with("bpf/stats.rs"))
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .any(|l| l.split("//").next().unwrap_or("").contains("aya::"))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "aya used outside src/bpf/loader.rs and src/bpf/stats.rs: {offenders:?}"
    );
}

#[test]
fn anyhow_only_at_the_edge() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/ig/src");
    let mut files = Vec::new();
    uses(&src, &mut BTreeSet::new(), &mut files);
    let offenders: Vec<_> = files
        .iter()
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("anyhow"))
        .collect();
    assert!(
        offenders.is_empty(),
        "anyhow in the library (only the command line, src/cli, uses it): {offenders:?}"
    );
}

/// The Rust guest crates live outside the workspace (they build for
/// wasm32-wasip1, `ig image build` builds them), so `cargo fmt --all`
/// does not see them: they are checked here.
#[test]
fn rust_guest_crates_are_formatted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in ["wasmapi/rust", "tests/fixtures/wasm_rust/rust"] {
        let lib = root.join(krate).join("src/lib.rs");
        let out = std::process::Command::new("rustfmt")
            .args(["--edition", "2021", "--check"])
            .arg(&lib)
            .output()
            .expect("rustfmt (installed with the toolchain)");
        assert!(
            out.status.success(),
            "{krate} is not formatted (rustfmt --edition 2021 {}):\n{}",
            lib.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
