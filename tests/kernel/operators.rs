//! `gadget.yaml` configuring operators of a run that loads eBPF:
//! `operator:` sections next to a tracer, `paramDefaults` of the eBPF
//! operator's parameters, the cgroup operator on this host's CPU
//! controller, and the kernel's eBPF statistics switched on only while
//! bpfstats runs.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{TestStore, repo, text};
use super::{Running, require_kernel};

fn fixture(name: &str) -> std::path::PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// A `getpid()` through the raw syscall (the tracepoint's).
fn getpid() {
    // SAFETY: a raw syscall without preconditions.
    unsafe { libc::syscall(libc::SYS_getpid) };
}

#[test]
fn operator_sections_and_param_defaults_configure_a_tracer() {
    require_kernel();
    let s = TestStore::new();
    s.build(&fixture("ops_operator_sections"), "ops_operator_sections");
    let help = text(&s.run(&["run", "ops_operator_sections", "--help"]).stdout);
    assert!(
        help.contains("Number copied into every event [default: 7]"),
        "paramDefaults sets the default:\n{help}"
    );
    let mut ig = Running::start(&s, &["ops_operator_sections", "-o", "json"]);
    let me = u64::from(std::process::id());
    // The tracer's events: objects; the process table: arrays.
    let event = ig.wait_for(Duration::from_secs(20), getpid, |l| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object() && v["proc"]["pid"] == me)
    });
    let v: Value = serde_json::from_str(&event).unwrap();
    assert_eq!(v["value"], 7, "the gadget's default reached .rodata: {v}");
    let table = ig.wait_for(Duration::from_secs(20), || {}, |l| l.starts_with('['));
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
    let rows: Vec<Value> = serde_json::from_str(&table).unwrap();
    let mine = rows
        .iter()
        .find(|r| r["pid"] == me)
        .expect("our own process");
    let mut keys: Vec<&str> = mine
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["comm", "k8s", "mountnsid", "pid", "ppid", "runtime"],
        "{mine}"
    );
    // SAFETY: getppid has no preconditions.
    assert_eq!(mine["ppid"], unsafe { libc::getppid() }, "{mine}");
}

/// `ig run -v ARGS` with stdout and stderr read by threads; returned once
/// ig says the gadget started.
struct Started {
    child: Child,
    out: mpsc::Receiver<String>,
}

fn start_verbose(s: &TestStore, args: &[&str]) -> Started {
    let mut child = s
        .ig()
        .args(["run", "-v"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = |r: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let out = lines(Box::new(child.stdout.take().unwrap()));
    let err = lines(Box::new(child.stderr.take().unwrap()));
    let end = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        match err.recv_timeout(Duration::from_millis(100)) {
            Ok(l) if l.starts_with("debug: ") && l.ends_with(" started") => break,
            Ok(l) => seen.push(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("ig exited: {:?}\n{}", child.wait(), seen.join("\n"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("not started within 20 s:\n{}", seen.join("\n"));
        }
    }
    // Keep reading stderr so ig never blocks on it.
    std::thread::spawn(move || while err.recv().is_ok() {});
    Started { child, out }
}

impl Started {
    fn signal(&mut self, sig: i32) -> std::process::ExitStatus {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(i32::try_from(self.child.id()).unwrap(), sig) };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < end,
                "ig did not end within 10 s of signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn rest(&self) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(l) = self.out.recv_timeout(Duration::from_secs(5)) {
            v.push(l);
        }
        v
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `paramDefaults: operator.oci.ebpf.map-fetch-interval: "0"`, as the
/// advise gadgets write it: the map is drained once, when the run ends.
#[test]
fn param_defaults_make_a_topper_drain_only_at_the_end() {
    require_kernel();
    let s = TestStore::new();
    s.build(&fixture("ops_param_defaults"), "ops_param_defaults");
    let help = text(&s.run(&["run", "ops_param_defaults", "--help"]).stdout);
    let interval = help
        .split("--map-fetch-interval")
        .nth(1)
        .and_then(|h| h.split("--map-fetch-count").next())
        .unwrap_or_default();
    assert!(interval.contains("[default: 0]"), "{help}");
    let mut ig = start_verbose(&s, &["ops_param_defaults", "-o", "json"]);
    // SAFETY: the child makes raw syscalls only, then _exit.
    let child = unsafe { libc::fork() };
    if child == 0 {
        for _ in 0..1000 {
            getpid();
        }
        // SAFETY: leave without running any Rust code.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: waiting for the child just forked.
    unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
    // Longer than the operator's own default interval (1 s): nothing yet.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        ig.out.try_recv().is_err(),
        "the map was drained before the end"
    );
    let status = ig.signal(libc::SIGINT);
    assert!(status.success());
    let lines = ig.rest();
    assert_eq!(lines.len(), 1, "one drain, at the end: {lines:?}");
    let rows: Vec<Value> = serde_json::from_str(&lines[0]).unwrap();
    let ours: Vec<&Value> = rows.iter().filter(|r| r["pid"] == child).collect();
    assert_eq!(ours.len(), 1, "{rows:?}");
    assert_eq!(ours[0]["calls"], 1000);
}

/// The inode of a namespace link of this process.
fn own_mntns() -> u64 {
    let l = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let l = l.to_string_lossy();
    l.trim_start_matches("mnt:[")
        .trim_end_matches(']')
        .parse()
        .unwrap()
}

/// A cgroup of the CPU controller made for the test, with a bandwidth
/// limit of 10 ms every 100 ms, removed on drop.
struct LimitedCgroup {
    dir: std::path::PathBuf,
    /// As `/proc/PID/cgroup` names it.
    path: String,
    busy: Option<Child>,
}

impl LimitedCgroup {
    fn new(name: &str) -> Self {
        use ig::operators::cgroup::{Hierarchy, detect_hierarchy};
        let h = detect_hierarchy().unwrap_or_else(|e| panic!("{e}"));
        let path = format!("/{name}");
        let dir = h.dir(&path).unwrap();
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let me = Self {
            dir,
            path,
            busy: None,
        };
        match h {
            Hierarchy::V1 { .. } => {
                std::fs::write(me.dir.join("cpu.cfs_period_us"), "100000").unwrap();
                std::fs::write(me.dir.join("cpu.cfs_quota_us"), "10000").unwrap();
            }
            Hierarchy::V2 { .. } => {
                std::fs::write(me.dir.join("cpu.max"), "10000 100000").unwrap();
            }
        }
        me
    }

    /// A child spinning on the CPU inside the cgroup.
    fn spin(&mut self) -> u32 {
        let child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let pid = child.id();
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
        self.busy = Some(child);
        pid
    }
}

impl Drop for LimitedCgroup {
    fn drop(&mut self) {
        if let Some(mut c) = self.busy.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The cgroup can go once its process is reaped.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// This host keeps the CPU controller on cgroup v1 (hybrid): the operator
/// reads it there. A child spinning in a cgroup limited to a tenth of a
/// CPU is throttled in every period it runs.
#[test]
fn cgroup_operator_reports_the_throttling_of_our_cgroup() {
    require_kernel();
    let s = TestStore::new();
    s.build(&fixture("ops_cpu_throttle"), "ops_cpu_throttle");
    let mut cg = LimitedCgroup::new(&format!("ig-test-throttle-{}", std::process::id()));
    cg.spin();
    let mut ig = Running::start(
        &s,
        &["ops_cpu_throttle", "-o", "json", "--interval", "500ms"],
    );
    let ours = |l: &str| -> Option<Value> {
        let rows: Vec<Value> = serde_json::from_str(l).ok()?;
        rows.into_iter()
            .find(|r| r["cgroupPath"] == cg.path.as_str())
    };
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {},
        |l| ours(l).is_some_and(|r| r["nrThrottled"].as_u64().unwrap_or(0) > 0),
    );
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
    let r = ours(&line).unwrap();
    assert_eq!(r["cpuQuota_raw"], 10_000_000, "{r}");
    assert_eq!(r["cpuQuota"], "10.00ms", "{r}");
    assert_eq!(r["cpuPeriod_raw"], 100_000_000, "{r}");
    assert_eq!(r["cpuLimitCores"], 0.1, "{r}");
    let periods = r["nrPeriods"].as_u64().unwrap();
    let throttled = r["nrThrottled"].as_u64().unwrap();
    assert!(periods >= throttled && throttled >= 1, "{r}");
    // serde_json reads floats to within one unit in the last place.
    let ratio = throttled as f64 / periods as f64 * 100.0;
    assert!(
        (r["throttleRatio"].as_f64().unwrap() - ratio).abs() <= 1e-12 * ratio,
        "{r}"
    );
    assert!(r["throttledTime_raw"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["mountnsid"], own_mntns(), "{r}");
}

fn stats_sysctl() -> String {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .unwrap()
        .trim()
        .to_owned()
}

/// The ids of the eBPF programs process `pid` holds (fdinfo `prog_id`).
fn prog_ids_of(pid: u32) -> Vec<u64> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let Ok(t) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if let Some(id) = t.lines().find_map(|l| {
            l.strip_prefix("prog_id:")
                .map(|v| v.trim().parse::<u64>().unwrap())
        }) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// `run_cnt` of program `id` as bpftool reads it (absent: 0).
fn run_count(id: u64) -> u64 {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "prog", "show", "id", &id.to_string()])
        .output()
        .expect("bpftool (installed by cargo xtask setup)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["run_cnt"].as_u64().unwrap_or(0)
}

/// The kernel counts program runs (`bpf_stats_enabled`) only while
/// bpfstats runs, and stops when it ends, however it ends: ig holds the
/// statistics on with a `BPF_ENABLE_STATS` descriptor, which the kernel
/// closes even after SIGKILL. The sysctl file is not written (it shows
/// what was written to it, not descriptor holders), so it keeps its value.
#[test]
fn bpfstats_turns_statistics_on_only_while_it_runs() {
    require_kernel();
    let s = TestStore::new();
    s.build(&repo().join("gadgets/bpfstats"), "bpfstats");
    s.build(&fixture("minimal_tracer"), "minimal_tracer");
    assert_eq!(
        stats_sysctl(),
        "0",
        "kernel.bpf_stats_enabled is on: the test cannot tell ours from it"
    );
    let me = u64::from(std::process::id());
    let mut tracer = Running::start(&s, &["minimal_tracer", "-o", "json"]);
    tracer.wait_for(Duration::from_secs(20), getpid, |l| {
        l.contains(&format!("\"pid\":{me},"))
    });
    let ids = prog_ids_of(tracer.child.id());
    assert_eq!(ids.len(), 1, "the tracer's one program: {ids:?}");
    let id = ids[0];
    let calls = |n: usize| (0..n).for_each(|_| getpid());
    // Off: runs are not counted.
    let off = run_count(id);
    calls(500);
    assert_eq!(run_count(id), off, "counted before bpfstats ran");
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let mut ig = start_verbose(
            &s,
            &["bpfstats", "-o", "json", "--statistics-interval", "200ms"],
        );
        let on = run_count(id);
        calls(500);
        let counted = run_count(id);
        assert!(counted >= on + 500, "signal {sig}: {on} then {counted}");
        // A report, so the run is well under way.
        ig.out.recv_timeout(Duration::from_secs(10)).unwrap();
        let status = ig.signal(sig);
        if sig == libc::SIGKILL {
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&status),
                Some(sig)
            );
        } else {
            assert!(status.success(), "signal {sig}: {status}");
        }
        let after = run_count(id);
        calls(500);
        assert_eq!(run_count(id), after, "still counting after signal {sig}");
        assert_eq!(stats_sysctl(), "0", "the sysctl is left alone");
    }
    let (status, stderr) = tracer.interrupt();
    assert!(status.success(), "{stderr}");
}
