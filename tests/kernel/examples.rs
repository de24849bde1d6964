//! The embedding examples (`examples/embed_thread.rs`,
//! `examples/embed_async.rs`) built and run against a store of ours: they
//! are programs an embedder copies, so they must work as their docs say.

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Running, assert_released, bpf_ids_of, require_kernel, unique_program};
use crate::common::{TestStore, repo, text};

/// The examples' binaries, built once by cargo (a no-op when the suite's
/// `cargo test` built them already).
fn example(name: &str) -> std::path::PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new(env!("CARGO"))
            .current_dir(repo())
            .args(["build", "--locked", "--example", "embed_thread"])
            .args(["--example", "embed_async"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "building the examples: {}",
            text(&out.stderr)
        );
    });
    // This test binary is target/<profile>/deps/kernel-*; examples are
    // target/<profile>/examples/.
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|d| d.parent()).unwrap();
    profile.join("examples").join(name)
}

fn store() -> &'static TestStore {
    static STORE: OnceLock<TestStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let s = TestStore::new();
        s.build(&repo().join("gadgets/trace_exec"), "trace_exec");
        s
    })
}

/// `embed_thread`: JSON lines of exec events for 5 s, then exit 0 with
/// nothing left in the kernel. The store comes from `IG_STORE`.
#[test]
fn embed_thread_prints_exec_events_for_5_s_then_exits_0() {
    require_kernel();
    let bin = example("embed_thread");
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_program(tmp.path(), "igex");
    let comm = marker.file_name().unwrap().to_str().unwrap().to_owned();
    let t0 = Instant::now();
    let mut ex = Running::spawn(Command::new(&bin).env("IG_STORE", store().path()));
    let line = ex.wait_for(
        Duration::from_secs(30),
        || {
            Command::new(&marker).status().unwrap();
        },
        |l| l.contains(&comm),
    );
    let held: Vec<(&str, Vec<u64>)> = ["prog", "link", "map"]
        .into_iter()
        .map(|k| (k, bpf_ids_of(k, ex.child.id())))
        .collect();
    assert!(!held[0].1.is_empty(), "the example holds programs");
    let (status, stderr, lines) = ex.wait_all(Duration::from_secs(60));
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(t0.elapsed() >= Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(stderr.contains("stopped (Stopped)"), "{stderr}");
    assert_released(&held);
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["proc.comm"], comm.as_str(), "{line}");
    assert_eq!(v["args"], marker.display().to_string(), "{line}");
    for l in &lines {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

/// `embed_async`: a tokio program that Ctrl-C (SIGINT) stops through the
/// run's stop handle.
#[test]
fn embed_async_stops_on_ctrl_c() {
    require_kernel();
    let bin = example("embed_async");
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_program(tmp.path(), "igea");
    let comm = marker.file_name().unwrap().to_str().unwrap().to_owned();
    let mut ex = Running::spawn(Command::new(&bin).env("IG_STORE", store().path()));
    let line = ex.wait_for(
        Duration::from_secs(30),
        || {
            Command::new(&marker).status().unwrap();
        },
        |l| l.contains(&comm),
    );
    assert!(line.starts_with(&format!("comm={comm} pid=")), "{line}");
    let held: Vec<(&str, Vec<u64>)> = ["prog", "link", "map"]
        .into_iter()
        .map(|k| (k, bpf_ids_of(k, ex.child.id())))
        .collect();
    let (status, stderr) = ex.interrupt();
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(stderr.contains("stopped (Stopped)"), "{stderr}");
    assert_released(&held);
}
