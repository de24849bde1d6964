//! The library's run (`ig::run::GadgetRun`) in this process, as root:
//! several runs at once, each stopped on its own, from another thread,
//! leaving nothing in the kernel; `describe` without privileges.
//!
//! Runs load real eBPF into this test process, so the tests of this
//! binary take turns ([`serial`]): the leak checks read which BPF objects
//! the whole process holds.

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use ig::datasource::{Event, Schema, ValueRef};
use ig::run::{EventSink, GadgetRun, PullPolicy, RunEvent, StopReason};

/// One library test at a time in this process.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn require_root() {
    // SAFETY: geteuid has no failure mode.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests load eBPF programs: run them as root"
    );
}

/// The text of string field `name` of `event`, if it has one.
fn text(schema: &Schema, event: &Event, name: &str) -> Option<String> {
    let id = schema.field_by_name(name)?;
    match event.get(schema.field(id)) {
        ValueRef::Str(b) => {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            Some(String::from_utf8_lossy(&b[..end]).into_owned())
        }
        _ => None,
    }
}

/// Ids of the BPF objects of `kind` (`prog`, `link`, `map`) this process
/// holds, from `/proc/self/fdinfo`.
fn held(kind: &str) -> BTreeSet<u64> {
    let key = format!("{kind}_id:");
    let mut ids = BTreeSet::new();
    for e in std::fs::read_dir("/proc/self/fdinfo").unwrap() {
        let Ok(info) = std::fs::read_to_string(e.unwrap().path()) else {
            continue;
        };
        ids.extend(
            info.lines()
                .filter_map(|l| l.strip_prefix(key.as_str()))
                .filter_map(|v| v.trim().parse::<u64>().ok()),
        );
    }
    ids
}

/// Every BPF object this process holds, as `kind:id`.
fn held_all() -> BTreeSet<String> {
    ["prog", "link", "map"]
        .into_iter()
        .flat_map(|k| held(k).into_iter().map(move |id| format!("{k}:{id}")))
        .collect()
}

/// Whether the kernel still knows BPF object `kind:id`, asked through
/// bpftool (a held descriptor is not the only way to keep an object).
fn exists(object: &str) -> bool {
    let (kind, id) = object.split_once(':').unwrap();
    Command::new("bpftool")
        .args([kind, "show", "id", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("bpftool")
        .success()
}

/// Wait until none of `objects` exists any more (a detach may finish on
/// the kernel's side shortly after the descriptor is closed).
fn assert_released(objects: &BTreeSet<String>, what: &str) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<&String> = objects.iter().filter(|o| exists(o)).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < end, "{what}: still loaded: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A copy of /bin/true under a name unique to this test, in `dir`.
fn marker_program(dir: &Path, stem: &str) -> PathBuf {
    let p = dir.join(format!("{stem}{}", std::process::id() % 100_000));
    std::fs::copy("/bin/true", &p).unwrap();
    p
}

/// Tells the test when a run has started, then collects the values of
/// field `field` of its events that contain `needle`.
struct Collect {
    field: &'static str,
    needle: String,
    started: mpsc::Sender<()>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl EventSink for Collect {
    fn on_start(&mut self, sources: &[Arc<Schema>]) {
        assert!(!sources.is_empty());
        let _ = self.started.send(());
    }
    fn on_event(&mut self, schema: &Schema, event: &Event) {
        if let Some(v) = text(schema, event, self.field)
            && v.contains(&self.needle)
        {
            self.seen.lock().unwrap().push(v);
        }
    }
}

/// Poke with `poke` every 200 ms until `seen` has an entry with `want`.
fn wait_for(seen: &Mutex<Vec<String>>, want: &str, mut poke: impl FnMut(), what: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if seen.lock().unwrap().iter().any(|s| s.contains(want)) {
            return;
        }
        assert!(Instant::now() < end, "{what}: no event with {want}");
        poke();
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn started(rx: &mpsc::Receiver<()>, what: &str) {
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
}

#[test]
fn two_runs_of_different_gadgets_in_one_process_stop_on_their_own_and_release_everything() {
    require_root();
    let _serial = serial();
    let store = common::gadget_store();
    let dir = tempfile::tempdir().unwrap();
    let prog = marker_program(dir.path(), "libmark");
    let prog_name = prog.file_name().unwrap().to_str().unwrap().to_owned();
    let before = held_all();

    // Run A: trace_exec, events through a callback on its thread.
    let exec_seen = Arc::new(Mutex::new(Vec::new()));
    let (a_tx, a_started) = mpsc::channel();
    let a = GadgetRun::from_store(store.path(), "trace_exec")
        .pull(PullPolicy::Never)
        .sink(Collect {
            field: "proc.comm",
            needle: prog_name.clone(),
            started: a_tx,
            seen: exec_seen.clone(),
        })
        .spawn()
        .unwrap();
    // Run B: trace_open, events through a bounded channel read here.
    let mut b = GadgetRun::from_store(store.path(), "trace_open").pull(PullPolicy::Never);
    let mut events = b.event_channel(4096);
    let b = b.spawn().unwrap();
    started(&a_started, "trace_exec");
    let open_seen = Arc::new(Mutex::new(Vec::new()));
    let (b_tx, b_started) = mpsc::channel::<()>();
    let reader = {
        let seen = open_seen.clone();
        let needle = dir.path().display().to_string();
        std::thread::spawn(move || {
            let mut summary_notices = 0;
            while let Some(item) = events.recv_blocking() {
                match item {
                    RunEvent::Started { sources } => {
                        assert!(sources.iter().any(|s| s.name == "open"), "{sources:?}");
                        let _ = b_tx.send(());
                    }
                    RunEvent::Event { schema, event } => {
                        if let Some(f) = text(&schema, &event, "fname")
                            && f.contains(&needle)
                        {
                            seen.lock().unwrap().push(f);
                        }
                    }
                    RunEvent::Array { .. } => panic!("trace_open has no array source"),
                    RunEvent::Notice(_) => summary_notices += 1,
                }
            }
            summary_notices
        })
    };
    started(&b_started, "trace_open");

    // Both deliver.
    wait_for(
        &exec_seen,
        &prog_name,
        || {
            Command::new(&prog).status().unwrap();
        },
        "trace_exec",
    );
    let first = dir.path().join("first-open");
    wait_for(
        &open_seen,
        "first-open",
        || {
            let _ = std::fs::File::create(&first);
        },
        "trace_open",
    );
    let both = held_all();
    let ours: BTreeSet<String> = both.difference(&before).cloned().collect();
    assert!(
        ours.iter().any(|o| o.starts_with("prog:")) && ours.iter().any(|o| o.starts_with("link:")),
        "the runs hold programs and links: {ours:?}"
    );

    // A stops; B keeps delivering.
    let handle = a.stop_handle();
    std::thread::spawn(move || handle.stop()).join().unwrap();
    let summary = a.join().expect("trace_exec ends cleanly");
    assert_eq!(summary.reason, StopReason::Stopped);
    let after_a = held_all();
    let gone_with_a: BTreeSet<String> = ours.difference(&after_a).cloned().collect();
    let left_with_b: BTreeSet<String> = ours.intersection(&after_a).cloned().collect();
    assert!(
        gone_with_a.iter().any(|o| o.starts_with("prog:")),
        "stopping trace_exec released its programs: {ours:?} -> {after_a:?}"
    );
    assert!(
        left_with_b.iter().any(|o| o.starts_with("prog:")),
        "trace_open still holds its programs: {after_a:?}"
    );
    assert_released(&gone_with_a, "after trace_exec stopped");
    let second = dir.path().join("second-open");
    wait_for(
        &open_seen,
        "second-open",
        || {
            let _ = std::fs::File::create(&second);
        },
        "trace_open after trace_exec stopped",
    );
    // trace_exec saw its marker, and nothing after its stop.
    let execs_at_stop = exec_seen.lock().unwrap().len();
    Command::new(&prog).status().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(exec_seen.lock().unwrap().len(), execs_at_stop);

    b.stop();
    let summary = b.join().expect("trace_open ends cleanly");
    assert_eq!(summary.reason, StopReason::Stopped);
    // The channel ends once the run has ended and it was drained.
    reader.join().unwrap();
    assert_released(&left_with_b, "after trace_open stopped");
    assert_eq!(
        held_all(),
        before,
        "the process holds nothing of either run"
    );
}

#[test]
fn a_run_stopped_from_another_thread_returns_within_1s() {
    require_root();
    let _serial = serial();
    let store = common::gadget_store();
    let (tx, rx) = mpsc::channel();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let before = held_all();
    // A long flush interval and a quiet gadget: the loop sleeps in
    // poll(2) for seconds between timer ticks, so only the stop handle's
    // wake-up can end it within the second.
    let run = GadgetRun::from_store(store.path(), "trace_exec")
        .pull(PullPolicy::Never)
        .flush_interval(Duration::from_secs(10))
        .sink(Collect {
            field: "proc.comm",
            needle: "-".into(),
            started: tx,
            seen,
        })
        .spawn()
        .unwrap();
    started(&rx, "trace_open");
    std::thread::sleep(Duration::from_millis(500));
    let loaded: BTreeSet<String> = held_all().difference(&before).cloned().collect();
    assert!(!loaded.is_empty());
    let stop = run.stop_handle();
    let t0 = Instant::now();
    std::thread::spawn(move || stop.stop()).join().unwrap();
    let summary = run.join().expect("the run ends cleanly");
    let took = t0.elapsed();
    assert_eq!(summary.reason, StopReason::Stopped);
    assert!(took < Duration::from_secs(1), "stop took {took:?}");
    assert_released(&loaded, "after the stop");
}

#[test]
fn a_run_stopped_before_it_starts_loads_nothing() {
    require_root();
    let _serial = serial();
    let store = common::gadget_store();
    let before = held_all();
    let mut run = GadgetRun::from_store(store.path(), "trace_exec").pull(PullPolicy::Never);
    run.stop_handle().unwrap().stop();
    let summary = run.run().expect("a clean end");
    assert_eq!(summary.reason, StopReason::Stopped);
    assert_eq!(held_all(), before);
}

#[test]
fn errors_are_typed_and_name_what_is_wrong() {
    let _serial = serial();
    let store = common::gadget_store();
    let err = GadgetRun::from_store(store.path(), "trace_exec")
        .pull(PullPolicy::Never)
        .param("no-such-param", "1")
        .run()
        .unwrap_err();
    assert!(
        matches!(&err, ig::run::RunError::Param { name, .. } if name == "no-such-param"),
        "{err:?}"
    );
    let err = GadgetRun::from_store(store.path(), "not_in_the_store")
        .pull(PullPolicy::Never)
        .run()
        .unwrap_err();
    assert!(
        matches!(&err, ig::run::RunError::NotFound { image, .. } if image == "not_in_the_store"),
        "{err:?}"
    );
    // Short and full names alike; a bad value is refused before loading.
    let err = GadgetRun::from_store(store.path(), "trace_exec")
        .pull(PullPolicy::Never)
        .param("operator.oci.ebpf.pid", "x")
        .run()
        .unwrap_err();
    assert!(matches!(err, ig::run::RunError::Param { .. }), "{err:?}");
}

/// The child of [`describe_needs_no_privileges`]: describes the gadget of
/// the store named by `IG_LIBTEST_STORE` and prints what it found. Does
/// nothing when run on its own.
#[test]
#[ignore = "run by describe_needs_no_privileges as an unprivileged user"]
#[allow(clippy::print_stdout, reason = "the parent test reads it")]
fn describe_child() {
    let Some(store) = std::env::var_os("IG_LIBTEST_STORE") else {
        return;
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_default()
            .to_owned()
    };
    println!("child {} {}", line("Uid:"), line("CapEff:"));
    let info = GadgetRun::from_store(PathBuf::from(store), "trace_exec")
        .pull(PullPolicy::Never)
        .param("pid", "1")
        .describe()
        .expect("describe as an unprivileged user");
    println!("name {}", info.name);
    for p in &info.params {
        println!("param {} default={}", p.full_name, p.default);
    }
    for s in &info.sources {
        let fields: Vec<&str> = s.fields().iter().map(|f| f.name.as_str()).collect();
        println!("source {} {}", s.name, fields.join(","));
    }
}

#[test]
fn describe_needs_no_privileges() {
    require_root();
    let _serial = serial();
    // A copy of the store that nobody (uid 65534) can read, as
    // /var/lib/ig is after `chmod -R a+rX`.
    let copy = tempfile::tempdir().unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(common::gadget_store().path())
        .arg(copy.path().join("store"))
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(st.success());
    let me = std::env::current_exe().unwrap();
    let out = common::output_bounded(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(&me)
            .args(["describe_child", "--exact", "--ignored", "--nocapture"])
            .env("IG_LIBTEST_STORE", copy.path().join("store"))
            .env("HOME", "/nonexistent"),
        Duration::from_secs(60),
    );
    let stdout = common::text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        common::text(&out.stderr)
    );
    // It ran unprivileged, so it reached no kernel object.
    assert!(stdout.contains("Uid:\t65534\t65534"), "{stdout}");
    assert!(stdout.contains("CapEff:\t0000000000000000"), "{stdout}");
    assert!(
        stdout.contains("name ghcr.io/inspektor-gadget/gadget/trace_exec:latest"),
        "{stdout}"
    );
    // The image's parameters, the operators' and the value given.
    assert!(stdout.contains("param operator.oci.ebpf.pid"), "{stdout}");
    assert!(stdout.contains("param operator.filter.filter"), "{stdout}");
    let source = stdout
        .lines()
        .find(|l| l.starts_with("source exec "))
        .unwrap_or_else(|| panic!("no source exec: {stdout}"));
    for f in ["proc.comm", "proc.pid", "args", "error", "timestamp"] {
        assert!(source.split([' ', ',']).any(|x| x == f), "{f}: {source}");
    }
}
