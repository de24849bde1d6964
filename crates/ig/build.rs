//! Records the git commit `ig` is built from, for `ig version`, and
//! compiles the eBPF programs `ig` carries inside itself (the process
//! tracker of `--enrich-process`, the socket enricher, the dispatchers in
//! front of networking programs) with clang.
//!
//! A build from a source tarball (no `.git`, or no `git` program) is a
//! normal build: the commit is then `unknown`. `IG_GIT_COMMIT` in the
//! environment wins, for packagers that build outside the repository.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// eBPF sources built into the binary: (source, object name in OUT_DIR).
const BPF_OBJECTS: &[(&str, &str)] = &[
    ("src/operators/processinfo/tracker.bpf.c", "tracker.bpf.o"),
    ("src/bpf/socket_enricher.bpf.c", "socket_enricher.bpf.o"),
    ("src/bpf/dispatch.bpf.c", "dispatch.bpf.o"),
];

/// Compile the embedded eBPF programs. They include no system header, so
/// clang alone (any version with the BPF target) is enough; `IG_CLANG`
/// names another clang, as for `ig image build`.
fn bpf_objects() {
    println!("cargo:rerun-if-env-changed=IG_CLANG");
    let clang = std::env::var("IG_CLANG").unwrap_or_else(|_| "clang".into());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (src, obj) in BPF_OBJECTS {
        println!("cargo:rerun-if-changed={src}");
        let status = Command::new(&clang)
            .args([
                "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c", src, "-o",
            ])
            .arg(out.join(obj))
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("{clang} failed to compile {src} ({s}); see its messages above"),
            Err(e) => panic!(
                "building ig needs clang with the BPF target to compile {src} ({clang}: {e}); \
                 on Debian: apt-get install clang, or set IG_CLANG"
            ),
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    bpf_objects();
    println!("cargo:rerun-if-env-changed=IG_GIT_COMMIT");
    let commit = std::env::var("IG_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]));
    // Rebuild when HEAD moves: HEAD itself (checkout) and the branch it
    // names (commit). Paths come from git, so worktrees work too.
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])),
        git(&["rev-parse", "--git-path", "packed-refs"]),
    ]
    .into_iter()
    .flatten()
    {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    // The target triple, so `ig version` tells a static musl build apart.
    println!(
        "cargo:rustc-env=IG_BUILD_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=IG_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
}
