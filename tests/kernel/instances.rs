//! `ig run -f MANIFEST`: several gadget instances in one `ig` process,
//! one output stream.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Running, assert_released, bpf_ids_of, overflow_ring, require_kernel, unique_program};
use crate::common::{TestStore, repo, text};

/// trace_exec, trace_open and snapshot_process, built once.
fn store() -> &'static TestStore {
    static STORE: OnceLock<TestStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let s = TestStore::new();
        for g in ["trace_exec", "trace_open", "snapshot_process"] {
            s.build(&repo().join("gadgets").join(g), g);
        }
        s
    })
}

/// A process that runs until dropped, under a name of its own.
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn instance(doc: &str, name: &str, image: &str, filter: &str) -> String {
    format!(
        "{doc}apiVersion: 1\nkind: instance-spec\nname: {name}\nimage: {image}\nparamValues:\n  operator.filter.filter: '{filter}'\n"
    )
}

/// The instance of a line of `-o json` output (an array's elements all
/// carry theirs).
fn instance_of(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    let one = match &v {
        Value::Array(a) => a.first()?,
        v => v,
    };
    one["instance"].as_str().map(str::to_owned)
}

#[test]
fn three_instances_in_one_process_each_marker_once_under_its_name() {
    require_kernel();
    let s = store();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A process the snapshot lists (running before ig starts).
    let sleeper_bin = dir.join(format!("igfsnap{}", std::process::id() % 100_000));
    std::fs::copy("/bin/sleep", &sleeper_bin).unwrap();
    let snap_comm = sleeper_bin
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let _sleeper = Sleeper(Command::new(&sleeper_bin).arg("120").spawn().unwrap());
    // Programs for trace_exec: one to learn it is attached, then the
    // marker, run once.
    let warm = unique_program(dir, "igfw");
    let marker = unique_program(dir, "igfm");
    let warm_comm = warm.file_name().unwrap().to_str().unwrap().to_owned();
    let marker_comm = marker.file_name().unwrap().to_str().unwrap().to_owned();
    let open_warm = dir.join("warm-open");
    let open_marker = dir.join("marker-open");
    std::fs::write(&open_warm, "w").unwrap();
    std::fs::write(&open_marker, "m").unwrap();
    let prefix = regex_quote(&dir.display().to_string());
    let manifest = [
        instance(
            "",
            "execs",
            "trace_exec",
            &format!("proc.comm~^(?:{warm_comm}|{marker_comm})$"),
        ),
        instance("---\n", "opens", "trace_open", &format!("fname~^{prefix}/")),
        instance(
            "---\n",
            "procs",
            "snapshot_process",
            &format!("comm=={snap_comm}"),
        ),
    ]
    .concat();
    let path = dir.join("instances.yaml");
    std::fs::write(&path, &manifest).unwrap();

    let mut ig = Running::start(s, &["-f", path.to_str().unwrap(), "-o", "json"]);
    let ig_pid = ig.child.id();
    // The snapshot comes first and ends its instance; the others go on.
    let snap = ig.wait_for(Duration::from_secs(30), || {}, |l| l.contains(&snap_comm));
    let v: Value = serde_json::from_str(&snap).unwrap();
    let arr = v.as_array().unwrap_or_else(|| panic!("an array: {snap}"));
    assert_eq!(arr.len(), 1, "{snap}");
    assert_eq!(arr[0]["instance"], "procs", "{snap}");
    assert_eq!(arr[0]["comm"], snap_comm.as_str(), "{snap}");
    ig.wait_for(
        Duration::from_secs(30),
        || {
            Command::new(&warm).status().unwrap();
        },
        |l| l.contains(&warm_comm),
    );
    ig.wait_for(
        Duration::from_secs(30),
        || {
            let _ = std::fs::File::open(&open_warm).unwrap();
        },
        |l| l.contains("warm-open"),
    );
    // Attached, all of them: each marker once.
    Command::new(&marker).status().unwrap();
    let _ = std::fs::File::open(&open_marker).unwrap();
    // The two instances flush on their own: either line may come first.
    let (mut saw_exec, mut saw_open) = (false, false);
    ig.wait_for(
        Duration::from_secs(10),
        || {},
        |l| {
            saw_exec |= l.contains(&marker_comm);
            saw_open |= l.contains("marker-open");
            saw_exec && saw_open
        },
    );
    let held: Vec<(&str, Vec<u64>)> = ["prog", "link", "map"]
        .into_iter()
        .map(|k| (k, bpf_ids_of(k, ig_pid)))
        .collect();
    assert!(!held[0].1.is_empty(), "ig {ig_pid} holds programs");
    // Late events still arrive before the stop.
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "exit {status}: {stderr}");
    assert_released(&held);

    let with =
        |needle: &str| -> Vec<&String> { lines.iter().filter(|l| l.contains(needle)).collect() };
    for (needle, name) in [
        (marker_comm.as_str(), "execs"),
        ("marker-open", "opens"),
        (snap_comm.as_str(), "procs"),
    ] {
        let found = with(needle);
        assert_eq!(found.len(), 1, "{needle} once: {found:#?}");
        assert_eq!(instance_of(found[0]).as_deref(), Some(name), "{}", found[0]);
    }
    // The marker open is trace_open's, and only trace_open's.
    let ev: Value = serde_json::from_str(with("marker-open")[0]).unwrap();
    assert_eq!(ev["fname"], open_marker.display().to_string());
    // jq reads every line; every event names one of the instances.
    let mut jq = Command::new("jq")
        .args([
            "-r",
            "if type == \"array\" then .[].instance else .instance end",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jq");
    {
        use std::io::Write as _;
        let mut input = jq.stdin.take().unwrap();
        for l in &lines {
            writeln!(input, "{l}").unwrap();
        }
    }
    let out = jq.wait_with_output().unwrap();
    assert!(out.status.success(), "jq: {}", text(&out.stderr));
    let names = text(&out.stdout);
    assert!(
        names.lines().count() >= lines.len(),
        "{} lines, {} instances",
        lines.len(),
        names.lines().count()
    );
    assert!(
        names
            .lines()
            .all(|n| ["execs", "opens", "procs"].contains(&n)),
        "{names}"
    );
}

/// `RE2` quoting of a path (it has no metacharacters but `.` here).
fn regex_quote(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

#[test]
fn instances_as_a_table_have_an_instance_column_and_a_header_per_schema() {
    require_kernel();
    let s = store();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_program(tmp.path(), "igft");
    let comm = marker.file_name().unwrap().to_str().unwrap().to_owned();
    let manifest = [
        instance("", "e", "trace_exec", &format!("proc.comm=={comm}")),
        instance(
            "---\n",
            "snap-shot",
            "snapshot_process",
            &format!("pid=={}", std::process::id()),
        ),
    ]
    .concat();
    let path = tmp.path().join("m.yaml");
    std::fs::write(&path, manifest).unwrap();
    let mut ig = Running::start(s, &["-f", path.to_str().unwrap()]);
    ig.wait_for(
        Duration::from_secs(30),
        || {
            Command::new(&marker).status().unwrap();
        },
        |l| l.contains(&comm),
    );
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "exit {status}: {stderr}");
    // The instance column is as wide as the longest name.
    let exec_header = lines
        .iter()
        .position(|l| l.starts_with("INSTANCE ") && l.contains(" ARGS"))
        .unwrap_or_else(|| panic!("trace_exec's header: {lines:#?}"));
    let row = lines.iter().position(|l| l.contains(&comm)).unwrap();
    assert!(row > exec_header, "{lines:#?}");
    assert!(lines[row].starts_with("e         "), "{}", lines[row]);
    let snap_header = lines
        .iter()
        .position(|l| l.starts_with("INSTANCE ") && !l.contains(" ARGS"))
        .unwrap_or_else(|| panic!("snapshot_process's header: {lines:#?}"));
    let me = std::process::id().to_string();
    let snap_row = &lines[snap_header + 1];
    assert!(
        snap_row.starts_with("snap-shot ") && snap_row.split_whitespace().any(|w| w == me),
        "{lines:#?}"
    );
}

/// What `ig run -f` refuses, before anything is loaded.
#[test]
fn a_bad_instance_is_refused_before_any_is_loaded() {
    require_kernel();
    let s = store();
    let tmp = tempfile::tempdir().unwrap();
    let manifest = [
        instance("", "good", "trace_exec", "proc.comm==x"),
        "---\napiVersion: 1\nkind: instance-spec\nname: bad\nimage: trace_open\nparamValues:\n  operator.oci.ebpf.no-such: '1'\n".to_owned(),
    ]
    .concat();
    let path = tmp.path().join("m.yaml");
    std::fs::write(&path, manifest).unwrap();
    let t0 = Instant::now();
    let out = s.run(&["run", "-f", path.to_str().unwrap(), "--timeout", "5"]);
    assert!(!out.status.success());
    // Refused at once, not after the good one ran its 5 s.
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let err = text(&out.stderr);
    assert!(
        err.contains("instance bad: parameter operator.oci.ebpf.no-such"),
        "{err}"
    );
    assert!(
        err.contains("hint: `ig run trace_open --help` lists its parameters with their full names"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    // A key the gadget has, under another operator: the hint names it.
    let manifest = "apiVersion: 1\nkind: instance-spec\nimage: trace_open\nparamValues:\n  operator.oci.ebpf.max-entries: '5'\n";
    std::fs::write(&path, manifest).unwrap();
    let out = s.run(&["run", "-f", path.to_str().unwrap(), "--timeout", "5"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("hint: trace_open's parameter max-entries is operator.limiter.max-entries"),
        "{err}"
    );
}

/// Every loss is reported under the name of the instance that lost it,
/// as it happens and in the total at the end.
#[test]
fn losses_are_reported_per_instance() {
    require_kernel();
    let s = store();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join(format!("igfloss-{}", std::process::id()));
    std::fs::write(&file, "x").unwrap();
    let manifest = [
        instance(
            "",
            "flood",
            "trace_open",
            &format!("fname=={}", file.display()),
        ),
        instance("---\n", "calm", "trace_exec", "proc.comm==igf-none"),
    ]
    .concat();
    let path = tmp.path().join("m.yaml");
    std::fs::write(&path, manifest).unwrap();
    // 4 KiB holds a handful of events, and a 2 s flush interval lets it
    // fill (as in the single-gadget test).
    let mut ig = Running::start(
        s,
        &[
            "-f",
            path.to_str().unwrap(),
            "-o",
            "json",
            "--ringbuf-size",
            "4096",
            "--flush-interval",
            "2s",
        ],
    );
    overflow_ring(&mut ig, &file);
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
    let lost: Vec<&str> = stderr.lines().filter(|l| l.contains("lost")).collect();
    assert!(
        lost.iter()
            .any(|l| l.starts_with("warning: instance flood: data source ")
                && l.contains(" events lost")),
        "flood's losses as they happen: {stderr}"
    );
    assert!(
        lost.iter()
            .any(|l| l.starts_with("warning: instance flood: events lost during this run: ")),
        "flood's total: {stderr}"
    );
    // Whatever else lost events (the calm instance may, under the same
    // small ring buffer, from the host's execs) says which it is.
    assert!(
        lost.iter()
            .all(|l| l.starts_with("warning: instance flood: ")
                || l.starts_with("warning: instance calm: ")),
        "{stderr}"
    );
}

/// Without --timeout or Ctrl-C, ig ends when its last instance ends;
/// `operator.cli.fields` and `operator.cli.output` in a spec set that
/// instance's printing.
#[test]
fn ig_ends_when_every_instance_has_ended_and_specs_set_their_printing() {
    require_kernel();
    let s = store();
    let tmp = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let manifest = format!(
        "{}  operator.cli.fields: pid,comm\n{}  operator.cli.output: yaml\n",
        instance("", "a", "snapshot_process", &format!("pid=={me}")),
        instance("---\n", "b", "snapshot_process", &format!("pid=={me}")),
    );
    let path = tmp.path().join("m.yaml");
    std::fs::write(&path, manifest).unwrap();
    let t0 = Instant::now();
    let out = s.run(&["run", "-f", path.to_str().unwrap(), "-o", "json"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    let stdout = text(&out.stdout);
    // a: JSON (the command line's), only the spec's fields.
    let json: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('['))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), 1, "{stdout}");
    let row = &json[0][0];
    let mut keys: Vec<&str> = row
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["comm", "instance", "pid"], "{row}");
    assert_eq!(row["instance"], "a");
    assert_eq!(row["pid"], me);
    // b: YAML, as its spec says.
    assert!(
        stdout.contains("- instance: \"b\"\n") && stdout.contains(&format!("\n  pid: {me}\n")),
        "{stdout}"
    );
    // --timeout ends instances that would run for ever.
    let manifest = instance("", "execs", "trace_exec", "proc.comm==igf-none");
    std::fs::write(&path, manifest).unwrap();
    let t0 = Instant::now();
    let out = s.run(&["run", "-f", path.to_str().unwrap(), "--timeout", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

/// An instance that fails once running (here: the verifier refuses it)
/// stops the others: the manifest runs as a whole. Without that, ig would
/// run the good instance until the test gives up.
#[test]
fn an_instance_that_fails_to_load_stops_the_others() {
    require_kernel();
    let s = TestStore::new();
    s.build(&repo().join("gadgets/trace_exec"), "trace_exec");
    s.build(
        &repo().join("tests/fixtures/verifier_reject"),
        "verifier_reject",
    );
    let tmp = tempfile::tempdir().unwrap();
    let manifest = [
        instance("", "good", "trace_exec", "proc.comm==igf-none"),
        "---\napiVersion: 1\nkind: instance-spec\nname: bad\nimage: verifier_reject\n".to_owned(),
    ]
    .concat();
    let path = tmp.path().join("m.yaml");
    std::fs::write(&path, manifest).unwrap();
    let mut ig = s
        .ig()
        .args(["run", "-f", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = ig.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = ig.kill();
            let _ = ig.wait();
            panic!("ig still runs 30 s after its bad instance failed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut ig.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: instance bad: ")
            && err.contains("verifier rejected program bad_getpid"),
        "{err}"
    );
    assert!(err.contains("error: 1 of 2 instances failed"), "{err}");
    assert!(!err.contains("instance good"), "{err}");
}
