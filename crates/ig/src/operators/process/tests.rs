//! The process operator against a `/proc` tree written by the test.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::pipeline::testing::{Collector, Subscribe};
use crate::pipeline::{Pipeline, priority};

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn stat_line(pid: i32, comm: &str, utime: u64, stime: u64, start: u64) -> String {
    format!(
        "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194304 100 0 0 0 {utime} {stime} 0 0 20 0 1 0 {start} 1000 100 18446744073709551615\n"
    )
}

fn status(name: &str, ppid: i32, uid: u32, rss_kib: u64, threads: u32) -> String {
    format!(
        "Name:\t{name}\nState:\tR (running)\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nVmSize:\t  8000 kB\nVmRSS:\t  {rss_kib} kB\nRssFile:\t  100 kB\nRssShmem:\t  28 kB\nThreads:\t{threads}\n"
    )
}

fn tree(root: &Path) {
    let proc = root.join("proc");
    write(&proc.join("meminfo"), "MemTotal:        1000000 kB\n");
    write(&proc.join("stat"), "cpu  1 2 3\nbtime 1700000000\n");
    write(&root.join("sys/devices/system/cpu/online"), "0-3\n");
    write(
        &proc.join("10/stat"),
        &stat_line(10, "busy one", 100, 0, 250),
    );
    write(
        &proc.join("10/status"),
        &status("busy one", 1, 1000, 2000, 3),
    );
    std::fs::create_dir_all(proc.join("10/ns")).unwrap();
    std::os::unix::fs::symlink("mnt:[4026531841]", proc.join("10/ns/mnt")).unwrap();
    write(&proc.join("11/stat"), &stat_line(11, "idle", 7, 3, 100));
    write(&proc.join("11/status"), &status("idle", 10, 0, 500, 1));
    // Not a process.
    write(&proc.join("self_test/stat"), "junk");
}

fn meta(yaml: &str) -> GadgetMetadata {
    GadgetMetadata::parse(yaml.as_bytes(), "gadget.yaml").unwrap()
}

/// Run `op` until its source finishes (5 s at most).
fn run(op: ProcessOperator, during: impl FnOnce()) -> (Collector, Duration) {
    let col = Collector::default();
    let ops: Vec<Box<dyn Operator>> = vec![
        Box::new(op),
        Box::new(Subscribe {
            name: "collector",
            priority: priority::OUTPUT,
            handler: col.clone(),
        }),
    ];
    let mut p = Pipeline::build(ops, &crate::params::ParamValues::default()).unwrap();
    let started = Instant::now();
    p.start().unwrap();
    during();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let (sources, dispatch) = p.parts();
        let mut done = true;
        for s in sources {
            s.drain(dispatch).unwrap();
            done &= s.finished();
        }
        if done {
            break;
        }
        assert!(Instant::now() < end, "not finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    p.stop().unwrap();
    (col, took)
}

#[test]
fn a_table_of_processes_with_upstreams_values() {
    let d = tempfile::tempdir().unwrap();
    tree(d.path());
    let m = meta("operator:\n  process:\n    emitstats: true\n    interval: 50ms\n    count: 1\n");
    let op = ProcessOperator::from_config(&m)
        .unwrap()
        .unwrap()
        .with_roots(d.path().join("proc"), d.path().join("sys"));
    let proc = d.path().join("proc");
    let (col, took) = run(op, || {
        // After the baseline: 50 ticks of CPU for pid 10, and a new pid.
        write(
            &proc.join("10/stat"),
            &stat_line(10, "busy one", 130, 20, 250),
        );
        write(&proc.join("12/stat"), &stat_line(12, "new", 40, 0, 300));
        write(&proc.join("12/status"), &status("new", 1, 0, 1, 1));
    });
    assert_eq!(*col.arrays.borrow(), [3], "one report of three processes");
    assert_eq!(
        col.column("pid"),
        [Some("10".into()), Some("11".into()), Some("12".into())]
    );
    assert_eq!(col.column("comm")[0].as_deref(), Some("busy one"));
    assert_eq!(col.column("ppid")[1].as_deref(), Some("10"));
    assert_eq!(col.column("uid")[0].as_deref(), Some("1000"));
    assert_eq!(col.column("state")[0].as_deref(), Some("R"));
    assert_eq!(col.column("threadCount")[0].as_deref(), Some("3"));
    assert_eq!(col.column("memoryRSS_raw")[0].as_deref(), Some("2048000"));
    assert_eq!(
        col.column("memoryVirtual_raw")[0].as_deref(),
        Some("8192000")
    );
    assert_eq!(col.column("memoryShared_raw")[0].as_deref(), Some("131072"));
    assert_eq!(col.column("memoryRelative")[0].as_deref(), Some("0.2"));
    assert_eq!(col.column("priority")[0].as_deref(), Some("20"));
    assert_eq!(col.column("nice")[0].as_deref(), Some("0"));
    assert_eq!(col.column("cpuTime")[0].as_deref(), Some("150"));
    assert_eq!(col.column("cpuTimeStr")[0].as_deref(), Some("0:01.500"));
    assert_eq!(col.column("startTime")[0].as_deref(), Some("250"));
    // btime + 250 ticks = 2.5 s, shown to the second.
    assert_eq!(
        col.column("startTimeStr")[0].as_deref(),
        Some("2023-11-14T22:13:22Z")
    );
    assert_eq!(col.column("mountnsid")[0].as_deref(), Some("4026531841"));
    assert_eq!(col.column("mountnsid")[1].as_deref(), Some("0"));
    // 50 ticks = 0.5 s of CPU over the interval.
    let cpu: f64 = col.column("cpuUsage")[0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let rel: f64 = col.column("cpuUsageRelative")[0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let bound = |s: f64| 50.0 / s;
    assert!(
        cpu <= bound(0.05) && cpu >= bound(took.as_secs_f64()),
        "{cpu} in {took:?}"
    );
    assert_eq!(rel, cpu / 4.0, "over the 4 online CPUs");
    // Unchanged and new processes used nothing.
    assert_eq!(col.column("cpuUsage")[1].as_deref(), Some("0"));
    assert_eq!(col.column("cpuUsage")[2].as_deref(), Some("0"));
}

#[test]
fn fields_choose_the_columns_and_the_early_report_does_not_count() {
    let d = tempfile::tempdir().unwrap();
    tree(d.path());
    let m = meta(
        "operator:\n  process:\n    emitstats: 'true'\n    interval: 40ms\n    first-interval: 10ms\n    count: 2\n    fields: [comm, memoryRSS]\n",
    );
    let op = ProcessOperator::from_config(&m)
        .unwrap()
        .unwrap()
        .with_roots(d.path().join("proc"), d.path().join("sys"));
    let (col, _) = run(op, || {});
    assert_eq!(
        *col.arrays.borrow(),
        [2, 2, 2],
        "the early report and two more"
    );
    let row = &col.seen.borrow()[0];
    let names: Vec<&str> = row.iter().map(|c| c.split('=').next().unwrap()).collect();
    assert_eq!(names, ["pid", "comm", "memoryRSS_raw", "mountnsid"]);
}

#[test]
fn settings_come_from_gadget_yaml() {
    assert!(
        ProcessOperator::from_config(&meta("name: x\n"))
            .unwrap()
            .is_none()
    );
    assert!(
        ProcessOperator::from_config(&meta("operator:\n  process:\n    emitstats: false\n"))
            .unwrap()
            .is_none()
    );
    let s = Settings::from_config(&meta("operator:\n  process:\n    emitstats: true\n"))
        .unwrap()
        .unwrap();
    assert_eq!(
        s,
        Settings {
            interval: DEFAULT_INTERVAL,
            first_interval: Duration::ZERO,
            count: 0,
            fields: vec![],
        }
    );
    let e = Settings::from_config(&meta(
        "operator:\n  process:\n    emitstats: true\n    interval: 3\n",
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("operator.process.interval: \"3\" has no unit"),
        "{e}"
    );
    let e = Settings::from_config(&meta(
        "operator:\n  process:\n    emitstats: true\n    fields: pid,cpu\n",
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("operator.process.fields: unknown field cpu"),
        "{e}"
    );
}
