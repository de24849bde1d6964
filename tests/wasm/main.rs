//! The WASM operator end to end: the real `ig`, real eBPF, real guests
//! compiled from C by `ig image build` (clang for wasm32-wasi). Events are
//! filtered to this test's own pid.

use std::process::Stdio;
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;

use common::{TestStore, repo, text};

fn require_kernel() {
    assert!(
        ig::bpf::privileges::check().is_ok(),
        "WASM kernel tests need root or CAP_BPF+CAP_PERFMON (run them as root, as .ci/run does)"
    );
}

fn fixture(name: &str) -> std::path::PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// Run `ig run IMAGE -o json` for `secs`, calling getpid() from this
/// process meanwhile; returns (status, JSON lines, stderr).
fn run_with_getpid(
    s: &TestStore,
    image: &str,
    secs: u32,
    extra: &[&str],
) -> (i32, Vec<serde_json::Value>, String) {
    let t = secs.to_string();
    let mut args = vec!["run", image, "-o", "json", "--timeout", &t];
    args.extend_from_slice(extra);
    let child = s
        .ig()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(u64::from(secs));
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: getpid has no preconditions.
        unsafe { libc::getpid() };
    }
    let out = child.wait_with_output().unwrap();
    let lines = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (out.status.code().unwrap_or(-1), lines, text(&out.stderr))
}

#[test]
fn guest_uses_every_implemented_host_function() {
    require_kernel();
    let s = TestStore::new();
    s.build(&fixture("wasm_api"), "wasm_api");
    let (code, lines, err) = run_with_getpid(&s, "wasm_api", 3, &["--greeting", "bonjour"]);
    assert_eq!(code, 0, "{err}");
    let me = u64::from(std::process::id());
    let ours: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["proc"]["pid"].as_u64() == Some(me))
        .collect();
    assert!(!ours.is_empty(), "no event of pid {me}: {lines:?}\n{err}");
    for e in &ours {
        assert_eq!(e["checks"], "ok", "{e}");
        // A kernel field rewritten in place by the guest.
        assert_eq!(e["value"], 84, "{e}");
        assert_eq!(e["k_bool"], true);
        assert_eq!(e["k_i8"], -8);
        assert_eq!(e["k_i16"], -1600);
        assert_eq!(e["k_i32"], -320000);
        assert_eq!(e["k_i64"], -6400000000i64);
        assert_eq!(e["k_u8"], 200);
        assert_eq!(e["k_u16"], 60000);
        assert_eq!(e["k_u32"], 4000000000u32);
        assert_eq!(e["k_u64"], 18000000000000000000u64);
        assert_eq!(e["k_f32"], 1.5);
        assert_eq!(e["k_f64"], -2.25);
        assert_eq!(e["greeting"], "bonjour");
        assert_eq!(e["syscall_name"], "getpid");
        assert_eq!(e["syscall_id"], 39);
        assert_eq!(e["label_copy"], "getpid");
        assert_eq!(e["raw"], "0102ff");
        // getMap is a stub: it answers the error handle 0.
        assert_eq!(e["stub"], 0);
    }
    // One packet per event of any process on the guest's own data source.
    let emitted = lines
        .iter()
        .filter(|l| l["message"] == "emitted by wasm")
        .count();
    assert!(
        emitted >= ours.len(),
        "{emitted} packets for {} events",
        ours.len()
    );
    assert!(err.contains("wasm_api guest: init"), "{err}");
    assert!(err.contains("wasm_api guest: stop"), "{err}");
    assert!(
        err.contains("getMap is not implemented by this version of ig"),
        "{err}"
    );
    assert_eq!(err.matches("getMap is not implemented").count(), 1, "{err}");
    assert!(!err.contains("fd_write"), "WASI call traces leak: {err}");
}

fn build_broken(s: &TestStore, kind: &str) {
    let dir = fixture("wasm_errors");
    let file = dir.join(format!("build-{kind}.yaml"));
    let out = s.run(&[
        "image",
        "build",
        dir.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
        "-t",
        kind,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn run_broken(kind: &str, secs: u32) -> (i32, String, Duration) {
    require_kernel();
    let s = TestStore::new();
    build_broken(&s, kind);
    let started = Instant::now();
    let (code, _, err) = run_with_getpid(&s, kind, secs, &[]);
    assert!(!err.contains("panicked"), "{err}");
    (code, err, started.elapsed())
}

#[test]
fn looping_guest_is_stopped_with_a_clear_error() {
    let (code, err, took) = run_broken("loop", 1);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("wasm module ghcr.io/inspektor-gadget/gadget/loop:latest: gadgetInit ran longer than 2 s"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn trapping_guest_is_reported_once_with_its_message() {
    let (code, err, _) = run_broken("trap", 3);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.matches("trapped").count(), 1, "{err}");
    assert!(err.contains("dataSourceCallback trapped"), "{err}");
    assert!(err.contains("unreachable"), "{err}");
    // What the guest printed before abort() reaches our stderr.
    assert!(err.contains("guest: giving up on event"), "{err}");
}

#[test]
fn wrong_api_version_is_refused() {
    let (code, err, _) = run_broken("version", 1);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("uses gadget API version 2; this ig supports version 1"),
        "{err}"
    );
}

#[test]
fn unknown_import_is_named() {
    let (code, err, _) = run_broken("import", 1);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("imports ig.teleport, which this version of ig does not provide"),
        "{err}"
    );
}

/// The second run of an image loads the compiled module from the cache,
/// and a corrupt entry is compiled again rather than trusted.
#[test]
fn compiled_module_is_cached_and_corruption_ignored() {
    require_kernel();
    let s = TestStore::new();
    build_broken(&s, "version");
    let cache = s.dir.path().join("wasm-cache");
    let run = || {
        let out = s.run(&["run", "version", "--timeout", "1", "-v"]);
        text(&out.stderr)
    };
    let first = run();
    assert!(first.contains("Compiled in"), "{first}");
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(run().contains("Cached in"));
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entries[0], bytes).unwrap();
    let third = run();
    assert!(
        third.contains("is corrupt; compiling the module again"),
        "{third}"
    );
    assert!(third.contains("Compiled in"), "{third}");
    assert!(run().contains("Cached in"));
}

/// A compiled module runs native code as root: the cache is read only
/// where nobody but us could have written. A valid entry owned by another
/// user, in a directory another user owns or can write to, or reached
/// through a symbolic link is not loaded; the module is compiled instead.
#[test]
fn cache_entries_others_could_have_written_are_not_loaded() {
    require_kernel();
    let s = TestStore::new();
    build_broken(&s, "version");
    let cache = s.dir.path().join("wasm-cache");
    let run = || {
        let out = s.run(&["run", "version", "--timeout", "1", "-v"]);
        text(&out.stderr)
    };
    let chown = |p: &std::path::Path, uid: u32| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid path; lchown does not follow a link.
        assert_eq!(unsafe { libc::lchown(c.as_ptr(), uid, uid) }, 0, "{}", p.display());
    };
    let chmod = |p: &std::path::Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    assert!(run().contains("Compiled in"));
    let entry = std::fs::read_dir(&cache).unwrap().next().unwrap().unwrap().path();
    assert!(run().contains("Cached in"));

    // An entry of another user: recompiled, and replaced by ours.
    chown(&entry, 65534);
    let out = run();
    assert!(out.contains("is owned by uid 65534, not by us (uid 0)"), "{out}");
    assert!(out.contains("Compiled in"), "{out}");
    assert!(run().contains("Cached in"));

    // A directory of another user, or one others may write to: not used.
    chown(&cache, 65534);
    let out = run();
    assert!(out.contains("wasm cache: not using it"), "{out}");
    assert!(out.contains("Compiled in"), "{out}");
    chown(&cache, 0);
    for mode in [0o777, 0o770, 0o1777] {
        chmod(&cache, mode);
        let out = run();
        assert!(out.contains("is writable by group or others"), "{mode:o}: {out}");
        assert!(out.contains("Compiled in"), "{mode:o}: {out}");
    }
    chmod(&cache, 0o700);
    assert!(run().contains("Cached in"));

    // A link to a valid entry elsewhere is not followed.
    let elsewhere = s.dir.path().join("planted.cwasm");
    std::fs::rename(&entry, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
    let out = run();
    assert!(out.contains("is a symbolic link"), "{out}");
    assert!(out.contains("Compiled in"), "{out}");
    assert!(std::fs::symlink_metadata(&entry).unwrap().is_file());
}

/// The shipped gadget with a C guest: opens under /tmp are `tmp`, under
/// /proc `proc`, and `--filter` sees the guest's field.
#[test]
fn trace_open_classify_adds_a_category() {
    require_kernel();
    let s = TestStore::new();
    s.build(
        &repo().join("gadgets/trace_open_classify"),
        "trace_open_classify",
    );
    let dir = tempfile::Builder::new()
        .prefix("igclassify")
        .tempdir_in("/tmp")
        .unwrap();
    let name = dir.path().join(format!("f{}", std::process::id()));
    std::fs::write(&name, "x").unwrap();
    let child = s
        .ig()
        .args(["run", "trace_open_classify", "-o", "json", "--timeout", "3"])
        .args(["--filter", "category!=lib"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(100));
        let _ = std::fs::File::open(&name).unwrap();
        let _ = std::fs::File::open("/proc/self/stat").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let me = u64::from(std::process::id());
    let mut seen = std::collections::BTreeMap::new();
    for l in text(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_ne!(v["category"], "lib", "--filter on the guest's field: {v}");
        if v["proc"]["pid"].as_u64() == Some(me) {
            seen.insert(
                v["fname"].as_str().unwrap().to_owned(),
                v["category"].clone(),
            );
        }
    }
    assert_eq!(
        seen.get(name.to_str().unwrap()),
        Some(&serde_json::json!("tmp")),
        "{seen:?}"
    );
    assert_eq!(
        seen.get("/proc/self/stat"),
        Some(&serde_json::json!("proc")),
        "{seen:?}"
    );
}

/// Guest memory is capped at 16 MiB: growing past it fails inside the
/// guest (malloc returns NULL), it does not kill ig.
#[test]
fn guest_memory_is_capped_at_16_mib() {
    let (code, err, _) = run_broken("memory", 1);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("guest: 8 MiB granted"), "{err}");
    assert!(err.contains("guest: 32 MiB refused"), "{err}");
}
