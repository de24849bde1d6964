//! `-o none` and `--annotate` on trace_exec: the real binary, real eBPF.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::common::{gadget_store, output_bounded, text};
use super::{require_kernel, unique_program};

/// Runs `prog` every 100 ms until the returned guard is dropped, so a
/// run of `--timeout 2` sees execs.
struct Execs(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Option<std::thread::JoinHandle<()>>,
);

fn exec_while(prog: std::path::PathBuf, arg: &'static str) -> Execs {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = Command::new(&prog).arg(arg).status();
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    Execs(stop, Some(t))
}

impl Drop for Execs {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

/// `-o none`: the gadget runs (the same run with `-o json` prints our
/// execs) and nothing reaches stdout; the exit code is 0 as for any
/// timeout.
#[test]
fn output_none_writes_nothing_and_exits_0() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    let prog = unique_program(tmp.path(), "ignone");
    let comm = prog.file_name().unwrap().to_str().unwrap().to_owned();
    let _execs = exec_while(prog, "none");
    let limit = Duration::from_secs(30);
    let out = output_bounded(
        store
            .ig()
            .args(["run", "trace_exec", "-o", "none", "--timeout", "2"]),
        limit,
    );
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 0, "{}", text(&out.stdout));
    let json = output_bounded(
        store
            .ig()
            .args(["run", "trace_exec", "-o", "json", "--timeout", "2"]),
        limit,
    );
    assert!(json.status.success(), "{}", text(&json.stderr));
    assert!(
        text(&json.stdout).contains(&comm),
        "the same run with -o json sees {comm}"
    );
}

/// `--annotate` hides a column of the gadget's, shows one an operator
/// added after the gadget declared its data source (the uid resolver's
/// `proc.creds.user`, hidden by default), and leaves JSON whole: jq
/// finds our exec with its `args`.
#[test]
fn annotate_changes_columns_of_gadget_and_operator_fields() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    let prog = unique_program(tmp.path(), "iganno");
    let comm = prog.file_name().unwrap().to_str().unwrap().to_owned();
    let _execs = exec_while(prog, "annotated");
    let limit = Duration::from_secs(30);
    let header = |extra: &[&str]| {
        let out = output_bounded(
            store
                .ig()
                .args(["run", "trace_exec", "--timeout", "2"])
                .args(extra),
            limit,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let header = stdout.lines().next().unwrap_or_default().to_owned();
        let columns: Vec<String> = header.split_whitespace().map(str::to_owned).collect();
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&comm))
            .map(str::to_owned);
        (columns, row)
    };
    let has = |cols: &[String], c: &str| cols.iter().any(|x| x == c);
    let (plain, row) = header(&[]);
    assert!(has(&plain, "ARGS") && !has(&plain, "USER"), "{plain:?}");
    assert!(row.is_some_and(|r| r.contains("annotated")));
    let (annotated, row) = header(&[
        "--annotate",
        "exec.args:columns.hidden=true",
        "--annotate=exec.proc.creds.user:columns.hidden=false",
    ]);
    assert!(!has(&annotated, "ARGS"), "{annotated:?}");
    assert!(has(&annotated, "USER"), "{annotated:?}");
    let row = row.expect("our exec's row");
    assert!(!row.contains("annotated"), "args hidden: {row}");
    assert!(
        row.split_whitespace().any(|c| c == "root"),
        "user shown: {row}"
    );

    // JSON is not a table: the annotation hides nothing there.
    let json = output_bounded(
        store.ig().args([
            "run",
            "trace_exec",
            "-o",
            "json",
            "--timeout",
            "2",
            "--annotate",
            "exec.args:columns.hidden=true",
        ]),
        limit,
    );
    assert!(json.status.success(), "{}", text(&json.stderr));
    let mut jq = Command::new("jq")
        .args([
            "-r",
            "--arg",
            "c",
            &comm,
            "select(.proc.comm == $c) | .args",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("jq");
    {
        use std::io::Write as _;
        jq.stdin.take().unwrap().write_all(&json.stdout).unwrap();
    }
    let out = jq.wait_with_output().unwrap();
    assert!(out.status.success(), "jq read every line");
    let args = text(&out.stdout);
    assert!(
        args.lines()
            .next()
            .is_some_and(|a| a.ends_with(" annotated")),
        "{args}"
    );
}

/// An unknown data source or field is an error that names the known
/// ones, operators' fields included; nothing is printed.
#[test]
fn annotate_refuses_unknown_subjects_naming_the_known_ones() {
    require_kernel();
    let store = gadget_store();
    let limit = Duration::from_secs(30);
    let run = |ann: &str| {
        let out = output_bounded(
            store
                .ig()
                .args(["run", "trace_exec", "--timeout", "2", "--annotate", ann]),
            limit,
        );
        assert!(!out.status.success(), "{ann} refused");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        text(&out.stderr)
    };
    let e = run("exek:columns.hidden=true");
    assert!(
        e.contains("annotation \"exek:columns.hidden=true\": no data source exek (the gadget's data sources: exec)"),
        "{e}"
    );
    let e = run("exec.proc.creds.usr:columns.hidden=true");
    assert!(
        e.contains("data source exec has no field proc.creds.usr (its fields: "),
        "{e}"
    );
    for known in [
        "proc.comm",
        "proc.creds.user",
        "k8s.namespace",
        "timestamp",
        "error",
    ] {
        assert!(
            e.contains(&format!(" {known},")) || e.contains(&format!(" {known})")),
            "{known} in {e}"
        );
    }
    let e = run("exec");
    assert!(e.contains("expected DATASOURCE:KEY=VALUE"), "{e}");
}

/// The scheduling policy of each thread of `pid` (field 41 of
/// `/proc/PID/task/TID/stat`: 0 normal, 2 SCHED_RR).
fn thread_policies(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| {
            // After the command name in parentheses, fields from 3 on.
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.split(' ').nth(41 - 3)?.parse().ok()
        })
        .collect()
}

/// Whether a thread of a run of `ig run trace_exec -o none EXTRA` is
/// ever seen in SCHED_RR while it runs (2 s).
fn reader_runs_realtime(store: &super::common::TestStore, extra: &[&str]) -> bool {
    let mut child = store
        .ig()
        .args(["run", "trace_exec", "-o", "none", "--timeout", "2"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        seen |= thread_policies(child.id()).contains(&(libc::SCHED_RR as u32));
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    seen
}

/// `ig run` reads its ring buffers on a SCHED_RR thread by default (so a
/// saturated host does not make it wait while the kernel drops events;
/// the governor only gives that up while the reader cannot keep up, which
/// an idle trace_exec never is), and keeps the priority it was started
/// with under `--reader-priority inherit`.
#[test]
fn the_reader_thread_runs_realtime_unless_told_to_inherit() {
    require_kernel();
    let store = gadget_store();
    let throttled = std::fs::read_to_string("/proc/sys/kernel/sched_rt_runtime_us")
        .unwrap()
        .trim()
        != "-1";
    assert!(throttled, "this host must have real-time throttling on");
    assert!(
        reader_runs_realtime(store, &["--reader-priority", "realtime"]),
        "realtime: the reader in SCHED_RR"
    );
    assert!(
        !reader_runs_realtime(store, &["--reader-priority", "inherit"]),
        "inherit: no thread in SCHED_RR"
    );
    assert!(reader_runs_realtime(store, &[]), "default: realtime");
}
