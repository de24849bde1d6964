//! Kernel tests: run the real `ig` binary, which loads real eBPF into the
//! running kernel. They need root (or CAP_BPF + CAP_PERFMON), BTF, tracefs
//! and bpftool; `.ci/run` provides all of it. They never skip: a missing
//! capability fails the test with the reason.
//!
//! Each test looks only at events of processes it started itself (by pid),
//! so other activity on the host cannot make it flaky.

mod attach;
#[path = "../common/mod.rs"]
mod common;
mod compat_load;
mod daemon;
mod examples;
mod fanout;
mod headless;
mod instances;
mod operators;
mod output_modes;
#[path = "../common/runc.rs"]
mod runc;
mod runtimes;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{TestStore, gadget_store, repo, text};
use runc::RuncContainer;
use serde_json::Value;

/// Fail loudly, never skip: these tests exist to prove the kernel path.
fn require_kernel() {
    assert!(
        ig::bpf::privileges::check().is_ok(),
        "kernel tests need root or CAP_BPF+CAP_PERFMON (run them as root, as .ci/run does)"
    );
    assert!(
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "kernel tests need a kernel with BTF (/sys/kernel/btf/vmlinux)"
    );
    assert!(
        Path::new("/sys/kernel/tracing/events").exists(),
        "kernel tests need tracefs at /sys/kernel/tracing (mount -t tracefs tracefs /sys/kernel/tracing)"
    );
}

use std::path::Path;

/// A running `ig run`, its stdout read line by line on a thread.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(store: &TestStore, args: &[&str]) -> Self {
        let mut ig = store.ig();
        ig.arg("run").args(args);
        Self::spawn(&mut ig)
    }

    /// Any program that prints events a line each (the examples).
    fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Wait until a line satisfies `pred`, calling `poke` every 200 ms to
    /// cause the event (the first pokes may come before the programs are
    /// attached). Panics with everything seen after `limit`.
    fn wait_for(
        &mut self,
        limit: Duration,
        mut poke: impl FnMut(),
        mut pred: impl FnMut(&str) -> bool,
    ) -> String {
        let end = Instant::now() + limit;
        let mut next_poke = Instant::now();
        loop {
            let now = Instant::now();
            if now >= end {
                let _ = self.child.kill();
                let stderr = self.child.stderr.take().map(|mut e| {
                    let mut s = String::new();
                    let _ = std::io::Read::read_to_string(&mut e, &mut s);
                    s
                });
                panic!(
                    "no matching line within {limit:?}; {} lines seen, last ones:\n{}\nstderr:\n{}",
                    self.seen.len(),
                    self.seen
                        .iter()
                        .rev()
                        .take(10)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("\n"),
                    stderr.unwrap_or_default()
                );
            }
            if now >= next_poke {
                assert!(
                    self.child.try_wait().unwrap().is_none(),
                    "ig exited early: {:?}",
                    self.child.wait()
                );
                poke();
                next_poke = now + Duration::from_millis(200);
            }
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(line.clone());
                if pred(&line) {
                    return line;
                }
            }
        }
    }

    /// Wait for the program to end on its own (killed, and the test
    /// failed, after `limit`): the exit status, stderr and every stdout
    /// line.
    fn wait_all(mut self, limit: Duration) -> (std::process::ExitStatus, String, Vec<String>) {
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < end, "still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut err);
        let mut seen = std::mem::take(&mut self.seen);
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            seen.push(l);
        }
        (status, err, seen)
    }

    /// SIGINT, then wait: the exit status, stderr and every stdout line.
    fn interrupt_all(mut self) -> (std::process::ExitStatus, String, Vec<String>) {
        let lines = std::mem::replace(&mut self.lines, mpsc::channel().1);
        let mut seen = std::mem::take(&mut self.seen);
        let (status, stderr) = self.interrupt();
        // The reader thread ends at EOF, after the last line.
        while let Ok(l) = lines.recv_timeout(Duration::from_secs(5)) {
            seen.push(l);
        }
        (status, stderr, seen)
    }

    /// SIGINT, then wait: returns the exit status and stderr.
    fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                let _ =
                    std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut err);
                return (status, err);
            }
            assert!(
                Instant::now() < end,
                "ig did not stop within 10 s of SIGINT"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A test that fails leaves no `ig` behind (it would run until the machine
/// stops, and disturb the tests after it).
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ids of the BPF objects of one kind held open by process `pid`, read from
/// `/proc/PID/fdinfo` (`prog_id:`, `link_id:` or `map_id:` lines). This
/// needs no bpftool feature: Debian's bpftool does not report owner pids.
fn bpf_ids_of(kind: &str, pid: u32) -> Vec<u64> {
    let key = format!("{kind}_id:");
    let mut ids = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(info) = std::fs::read_to_string(e.unwrap().path()) else {
            continue;
        };
        ids.extend(
            info.lines()
                .filter_map(|l| l.strip_prefix(key.as_str()))
                .filter_map(|v| v.trim().parse::<u64>().ok()),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Wait (5 s at most) until no object of `held` (`(kind, ids)`, as
/// [`bpf_ids_of`] gave them) is left in the kernel.
fn assert_released(held: &[(&str, Vec<u64>)]) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<(&str, u64)> = held
            .iter()
            .flat_map(|(k, ids)| ids.iter().map(move |id| (*k, *id)))
            .filter(|(k, id)| bpf_id_exists(k, *id))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < end,
            "still loaded after ig exited: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Make trace_open (run with a 4 KiB ring buffer and a 2 s flush
/// interval, whose events `ig` prints) lose events: opens of `file` until
/// one is printed, then a burst larger than the ring, then a wait for the
/// flush that reports the loss.
fn overflow_ring(ig: &mut Running, file: &Path) {
    let needle = file.display().to_string();
    ig.wait_for(
        Duration::from_secs(20),
        || {
            for _ in 0..2000 {
                let _ = std::fs::File::open(file);
            }
        },
        |l| l.contains(&needle),
    );
    for _ in 0..5000 {
        let _ = std::fs::File::open(file);
    }
    std::thread::sleep(Duration::from_millis(2500));
}

/// Whether the kernel still knows BPF object `id`, asked through bpftool.
fn bpf_id_exists(kind: &str, id: u64) -> bool {
    Command::new("bpftool")
        .args([kind, "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A copy of /bin/true under a name no other process has.
fn unique_program(dir: &Path, stem: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{stem}{}", std::process::id() % 10000));
    std::fs::copy("/bin/true", &p).unwrap();
    p
}

/// Runs `prog` with `argv` from a forked child whose argument strings sit in
/// a file mapping nobody has touched yet: the BPF program cannot read them
/// at syscall entry (no page faults in BPF), so trace_exec has to take them
/// from the new program's argument area. Returns the child's pid.
fn exec_with_unmapped_args(prog: &Path, argv: &[&str], dir: &Path) -> u32 {
    use std::os::unix::ffi::OsStrExt as _;
    let mut blob = Vec::new();
    let mut offsets = Vec::new();
    for a in argv {
        offsets.push(blob.len());
        blob.extend_from_slice(a.as_bytes());
        blob.push(0);
    }
    let file = dir.join(format!("argv{}", offsets.len()));
    std::fs::write(&file, &blob).unwrap();
    let fd = std::fs::File::open(&file).unwrap();
    let path = std::ffi::CString::new(prog.as_os_str().as_bytes()).unwrap();
    let mut ptrs: Vec<*const libc::c_char> = vec![std::ptr::null(); offsets.len() + 1];
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the child only calls async-signal-safe functions (mmap,
    // execve, _exit) on memory prepared before fork().
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let base = libc::mmap(
                std::ptr::null_mut(),
                blob.len(),
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                0,
            );
            if base == libc::MAP_FAILED {
                libc::_exit(126);
            }
            for (p, off) in ptrs.iter_mut().zip(&offsets) {
                *p = base.cast::<libc::c_char>().add(*off);
            }
            libc::execve(path.as_ptr(), ptrs.as_ptr(), env.as_ptr());
            libc::_exit(127);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child exec failed: status {status}"
        );
        pid as u32
    }
}

#[test]
fn trace_exec_cuts_long_command_lines_and_reads_unmapped_arguments() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    let prog = unique_program(tmp.path(), "igargs");
    let comm = prog.file_name().unwrap().to_str().unwrap().to_owned();
    let mut ig = Running::start(store, &["trace_exec", "-o", "json"]);

    // 1. More than 20 arguments, one longer than 512 bytes: the gadget keeps
    // the path and the first 19 arguments, cuts the long one to 511 bytes
    // and says so.
    let long = "x".repeat(600);
    let mut args: Vec<String> = vec![long.clone()];
    args.extend((1..25).map(|i| format!("a{i:02}")));
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&prog).args(&args).status();
        },
        |l| l.contains(&comm) && l.contains("a01"),
    );
    let ev: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let want: Vec<String> = std::iter::once(prog.display().to_string())
        .chain(std::iter::once(long[..511].to_owned()))
        .chain((1..19).map(|i| format!("a{i:02}")))
        .collect();
    assert_eq!(ev["args"], want.join(" "), "{line}");
    assert_eq!(ev["args_count"], 20, "{line}");
    assert_eq!(ev["args_truncated"], true, "{line}");

    // 2. Arguments that cannot be read at syscall entry come from the new
    // program's argument area: argv[0] as given, then the others.
    let mut pids = Vec::new();
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            pids.push(exec_with_unmapped_args(
                &prog,
                &["ARGV0", "one", "two three"],
                tmp.path(),
            ))
        },
        |l| l.contains(&comm) && l.contains("ARGV0"),
    );
    let ev: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(
        pids.iter().any(|p| ev["proc"]["pid"] == *p),
        "event of one of our children {pids:?}: {line}"
    );
    assert_eq!(ev["args"], "ARGV0 one two three", "{line}");
    assert_eq!(ev["args_count"], 3, "{line}");
    assert_eq!(ev["args_truncated"], false, "{line}");
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "exit {status}: {stderr}");
}

#[test]
fn trace_exec_reports_our_exec_as_json_and_leaves_nothing_loaded() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    let prog = unique_program(tmp.path(), "igexec");
    let comm = prog.file_name().unwrap().to_str().unwrap().to_owned();
    let mut ig = Running::start(store, &["trace_exec", "-o", "json"]);
    let ig_pid = ig.child.id();
    let mut pids = Vec::new();
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            let c = Command::new(&prog)
                .args(["alpha", "beta gamma"])
                .spawn()
                .unwrap();
            pids.push(c.id());
            let _ = { c }.wait();
        },
        |l| l.contains(&comm),
    );
    let ev: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let pid = ev["proc"]["pid"].as_u64().unwrap();
    assert!(
        pids.iter().any(|p| u64::from(*p) == pid),
        "event pid {pid} is one of ours {pids:?}: {line}"
    );
    assert_eq!(ev["proc"]["comm"], comm.as_str(), "{line}");
    assert_eq!(ev["proc"]["parent"]["pid"], std::process::id(), "{line}");
    assert_eq!(ev["proc"]["creds"]["uid"], 0, "{line}");
    assert_eq!(
        ev["args"],
        format!("{} alpha beta gamma", prog.display()),
        "{line}"
    );
    assert_eq!(ev["error_raw"], 0, "{line}");
    assert!(ev["timestamp_raw"].as_u64().unwrap() > 0, "{line}");
    assert!(ev["proc"]["mntns_id"].as_u64().unwrap() > 0, "{line}");

    // While running, ig holds programs and links...
    let progs = bpf_ids_of("prog", ig_pid);
    let links = bpf_ids_of("link", ig_pid);
    let maps = bpf_ids_of("map", ig_pid);
    assert!(
        !progs.is_empty() && !maps.is_empty(),
        "ig {ig_pid} holds BPF programs and maps"
    );
    // ...and after SIGINT it exits 0 and none of them is left.
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "exit {status}: {stderr}");
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<_> = progs
            .iter()
            .filter(|id| bpf_id_exists("prog", **id))
            .collect();
        let left_links: Vec<_> = links
            .iter()
            .filter(|id| bpf_id_exists("link", **id))
            .collect();
        let left_maps: Vec<_> = maps
            .iter()
            .filter(|id| bpf_id_exists("map", **id))
            .collect();
        if left.is_empty() && left_links.is_empty() && left_maps.is_empty() {
            break;
        }
        assert!(
            Instant::now() < end,
            "still loaded after ig exited: programs {left:?}, links {left_links:?}, maps {left_maps:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn trace_exec_reports_failed_execs_when_asked() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    // Not executable: execve fails with EACCES.
    let path = tmp
        .path()
        .join(format!("igfail{}", std::process::id() % 10000));
    std::fs::write(&path, "not a program").unwrap();
    let mut ig = Running::start(
        store,
        &["trace_exec", "-o", "json", "--ignore-failed=false"],
    );
    let needle = path.display().to_string();
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&path).status();
        },
        |l| l.contains(&needle),
    );
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["error_raw"], libc::EACCES, "{line}");
    // std forks a child that calls execve; the child's parent is us.
    assert_eq!(
        ev["proc"]["parent"]["pid"],
        std::process::id(),
        "the failed exec is ours: {line}"
    );
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
}

/// `--pid` is written into the program's `.rodata`: the kernel side drops
/// every other process's events.
#[test]
fn pid_parameter_filters_in_the_kernel() {
    require_kernel();
    let store = gadget_store();
    let me = std::process::id();
    let tmp = tempfile::tempdir().unwrap();
    let name = tmp.path().join(format!("igpid-{me}"));
    std::fs::write(&name, "x").unwrap();
    let mut ig = Running::start(
        store,
        &["trace_open", "-o", "json", "--pid", &me.to_string()],
    );
    let needle = name.display().to_string();
    ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = std::fs::File::open(&name).unwrap();
            // Someone else's opens, which must not show.
            let _ = Command::new("cat").arg("/etc/hostname").output();
        },
        |l| l.contains(&needle),
    );
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    assert!(lines.iter().any(|l| l.contains(&needle)));
    for line in &lines {
        let ev: Value = serde_json::from_str(line).unwrap();
        assert_eq!(ev["proc"]["pid"], me, "only our events: {line}");
    }
}

#[test]
fn trace_exec_table_has_a_header_and_our_row() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    let prog = unique_program(tmp.path(), "igtable");
    let comm = prog.file_name().unwrap().to_str().unwrap().to_owned();
    let mut ig = Running::start(store, &["trace_exec"]);
    let header = ig.wait_for(Duration::from_secs(20), || {}, |l| l.contains("PID"));
    for col in ["COMM", "PID", "PPID", "UID", "ARGS"] {
        assert!(
            header.split_whitespace().any(|c| c == col),
            "{col} in {header}"
        );
    }
    let row = ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&prog).arg("tabletest").status();
        },
        |l| l.starts_with(&comm),
    );
    assert!(row.contains("tabletest"), "{row}");
    assert!(
        row.split_whitespace()
            .any(|c| c == std::process::id().to_string()),
        "our pid as ppid: {row}"
    );
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
}

#[test]
fn trace_open_reports_our_open_with_flags_and_fd() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    let name = tmp
        .path()
        .join(format!("igopen-{}-target", std::process::id()));
    std::fs::write(&name, "x").unwrap();
    let missing = tmp
        .path()
        .join(format!("igopen-{}-missing", std::process::id()));
    let mut ig = Running::start(store, &["trace_open", "-o", "json"]);
    let needle = name.display().to_string();
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = std::fs::File::open(&name).unwrap();
        },
        |l| l.contains(&needle),
    );
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["proc"]["pid"], std::process::id(), "{line}");
    assert_eq!(ev["fname"], needle.as_str(), "{line}");
    assert!(ev["fd"].as_u64().unwrap() > 2, "a real fd: {line}");
    assert_eq!(ev["error_raw"], 0, "{line}");
    // O_RDONLY|O_CLOEXEC, as std opens files.
    assert_eq!(ev["flags_raw"].as_u64().unwrap() & 0o3, 0, "{line}");
    assert_ne!(
        ev["flags_raw"].as_u64().unwrap() & libc::O_CLOEXEC as u64,
        0,
        "{line}"
    );

    let needle = missing.display().to_string();
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = std::fs::File::open(&missing);
        },
        |l| l.contains(&needle),
    );
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["error_raw"], libc::ENOENT, "{line}");
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
}

#[test]
fn timeout_stops_the_run_with_exit_0() {
    require_kernel();
    let store = gadget_store();
    let start = Instant::now();
    let out = store.run(&["run", "trace_open", "-o", "json", "--timeout", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    for line in text(&out.stdout).lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

/// `ig run trace_open -o json` with ring buffers of `size` and a flush
/// interval of `flush`.
fn trace_open_json_with_ring(store: &TestStore, size: &str, flush: &str) -> Running {
    Running::start(
        store,
        &[
            "trace_open",
            "-o",
            "json",
            "--ringbuf-size",
            size,
            "--flush-interval",
            flush,
        ],
    )
}

#[test]
fn a_full_ring_buffer_is_reported_as_lost_events() {
    require_kernel();
    let store = gadget_store();
    // 4 KiB holds a handful of events, and a 2 s flush interval lets it fill.
    let mut ig = trace_open_json_with_ring(store, "4096", "2s");
    let tmp = tempfile::tempdir().unwrap();
    let name = tmp.path().join(format!("igflood-{}", std::process::id()));
    std::fs::write(&name, "x").unwrap();
    overflow_ring(&mut ig, &name);
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("events lost"),
        "loss is reported on stderr: {stderr}"
    );
}

/// ig maps a ring buffer's data pages once (crates/ig/src/bpf/ring.rs), so
/// a record that wraps around the end of the ring is put together from two
/// pieces. An 8 KiB ring wraps every ~20 trace_open records: 2,000 opens of
/// numbered names of varying length must come out whole, each at most
/// once, and most of them (the opener paces itself so that the reader,
/// woken per event, keeps up). A wrong piece shows as a name that does not
/// parse back.
#[test]
fn records_that_wrap_around_a_small_ring_arrive_whole() {
    require_kernel();
    let store = gadget_store();
    let mut ig = trace_open_json_with_ring(store, "8K", "0");
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join(format!("wrap{}-", std::process::id()));
    let prefix = prefix.display().to_string();
    let ready = format!("{prefix}ready");
    ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = std::fs::File::open(&ready);
        },
        |l| l.contains(&ready),
    );
    const N: usize = 2000;
    let name = |n: usize| format!("{prefix}{n}-{}", "x".repeat(n % 37));
    for n in 0..N {
        let _ = std::fs::File::open(name(n));
        if n % 8 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    let mut seen = vec![false; N];
    for line in lines
        .iter()
        .filter(|l| l.contains(&prefix) && !l.contains(&ready))
    {
        let ev: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let f = ev["fname"].as_str().unwrap_or_else(|| panic!("{line}"));
        let n: usize = f
            .strip_prefix(&prefix)
            .and_then(|r| r.split('-').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("garbled name {f:?} in {line}"));
        assert!(n < N, "{line}");
        assert_eq!(f, name(n), "garbled: {line}");
        assert_eq!(ev["proc"]["pid"], std::process::id(), "{line}");
        assert!(!seen[n], "open {n} printed twice");
        seen[n] = true;
    }
    let got = seen.iter().filter(|&&s| s).count();
    assert!(
        got >= N / 2,
        "only {got} of {N} opens arrived; stderr: {stderr}"
    );
}

#[test]
fn output_closed_by_reader_ends_quietly() {
    require_kernel();
    let store = gadget_store();
    // `ig run | head -1`: the pipe closes after the header line; the next
    // events (our own opens, below) make ig's write fail with EPIPE.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opener = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::File::open("/etc/hostname");
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let start = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' run trace_open --timeout 20 | head -1; echo \"status=${{PIPESTATUS[0]}}\"",
            common::ig_bin()
        ))
        .env("IG_STORE", store.path())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("COMM"), "{stdout}");
    assert!(
        stdout.contains("status=0"),
        "ig exits 0 on a closed pipe: {stdout}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "ig noticed the closed pipe before its timeout"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    opener.join().unwrap();
    assert!(
        !text(&out.stderr).contains("error"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn verifier_rejection_prints_the_verifier_log() {
    require_kernel();
    let s = TestStore::new();
    s.build(
        &repo().join("tests/fixtures/verifier_reject"),
        "verifier_reject",
    );
    let out = s.run(&["run", "verifier_reject", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("verifier rejected program bad_getpid"),
        "{err}"
    );
    assert!(
        err.contains("invalid mem access 'map_value_or_null'"),
        "the kernel's own log: {err}"
    );
    assert!(
        err.contains("program.bpf.c:"),
        "source lines from BTF line info: {err}"
    );
}

#[test]
fn kprobe_and_fentry_gadgets_fail_clearly_where_the_kernel_forbids_them() {
    require_kernel();
    let s = TestStore::new();
    for f in ["kprobe_tracer", "fentry_tracer"] {
        s.build(&repo().join("tests/fixtures").join(f), f);
    }
    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let out = s.run(&["run", "kprobe_tracer", "--timeout", "1"]);
    let err = text(&out.stderr);
    if kprobes {
        assert!(out.status.success(), "{err}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("kprobe_nanosleep") && err.contains("CONFIG_KPROBES"),
            "{err}"
        );
    }
    let out = s.run(&["run", "fentry_tracer", "--timeout", "1"]);
    let err = text(&out.stderr);
    if !out.status.success() {
        assert!(
            err.contains("fentry_nanosleep") && err.contains("fentry"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn object_without_btf_is_refused_with_a_reason() {
    require_kernel();
    let tmp = tempfile::tempdir().unwrap();
    let obj = tmp.path().join("nobtf.o");
    let out = Command::new("clang")
        .args(["-target", "bpf", "-O2", "-c", "-x", "c", "-", "-o"])
        .arg(&obj)
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(
                b"__attribute__((section(\"tracepoint/syscalls/sys_enter_getpid\"), used)) int f(void *c) { return 0; }\n\
                  char LICENSE[] __attribute__((section(\"license\"), used)) = \"GPL\";\n",
            )?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "clang: {}", text(&out.stderr));
    let s = TestStore::new();
    let store = ig::image::Store::open(s.path()).unwrap();
    let image = ig::image::GadgetImage {
        config_yaml: b"name: nobtf\n".to_vec(),
        ebpf_object: std::fs::read(&obj).unwrap(),
        ..Default::default()
    };
    store
        .add_gadget_image(&ig::image::Reference::parse("nobtf").unwrap(), image)
        .unwrap();
    let out = s.run(&["run", "nobtf", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("no .BTF section"), "{err}");
}

#[test]
fn without_privileges_ig_run_names_what_is_missing() {
    require_kernel();
    let store = gadget_store();
    // setpriv drops to nobody with no capabilities.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(common::ig_bin())
        .args(["run", "trace_exec"])
        .env("IG_STORE", store.path())
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON"),
        "{err}"
    );
    assert!(err.contains("hint: run ig as root"), "{err}");
}

#[test]
fn corrupt_object_layer_is_a_digest_error_not_a_crash() {
    require_kernel();
    let s = TestStore::new();
    s.build(
        &repo().join("tests/fixtures/minimal_tracer"),
        "minimal_tracer",
    );
    // Flip one byte of the biggest blob (the eBPF object).
    let blobs = s.path().join("blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&biggest).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&biggest, bytes).unwrap();
    let out = s.run(&["run", "minimal_tracer", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("digest") || err.contains("sha256"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The JSON lines go through the real `jq`, as the README's recipes do.
#[test]
fn json_output_pipes_into_jq() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    let name = tmp.path().join(format!("igjq-{}", std::process::id()));
    std::fs::write(&name, "x").unwrap();
    let filter = format!("select(.proc.pid == {}) | .fname", std::process::id());
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' run trace_open -o json --timeout 4 | jq -r --unbuffered '{filter}'",
            common::ig_bin()
        ))
        .env("IG_STORE", store.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Open the file a few times while ig runs (the first opens may come
    // before it is attached).
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let _ = std::fs::File::open(&name).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "jq failed: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.lines().any(|l| l == name.display().to_string()),
        "jq printed our file name: {stdout}"
    );
    assert!(stdout.lines().all(|l| !l.is_empty()), "{stdout}");
}

#[test]
fn sigterm_stops_cleanly_with_exit_0() {
    require_kernel();
    let store = gadget_store();
    let mut ig = Running::start(store, &["trace_open"]);
    ig.wait_for(Duration::from_secs(20), || {}, |l| l.starts_with("COMM"));
    let pid = i32::try_from(ig.child.id()).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let start = Instant::now();
    let status = ig.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "stopped within 2 s: {:?}",
        start.elapsed()
    );
}

/// `GADGET_ITER`: the iterator runs once, its records come out as one JSON
/// array, and ig exits by itself.
#[test]
fn snapshotter_lists_our_process_once() {
    require_kernel();
    let s = TestStore::new();
    s.build(&repo().join("tests/fixtures/iter_tasks"), "iter_tasks");
    let out = s.run(&["run", "iter_tasks", "-o", "json", "--timeout", "20"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one array: {stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let me = std::process::id();
    let mine = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["pid"] == me)
        .unwrap_or_else(|| panic!("pid {me} in {stdout}"));
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(mine["comm"], comm.trim_end(), "{mine}");
    // SAFETY: getppid has no preconditions.
    assert_eq!(mine["ppid"], unsafe { libc::getppid() }, "{mine}");
    // The table prints a header and one row per process.
    let out = s.run(&["run", "iter_tasks"]);
    let table = text(&out.stdout);
    assert!(table.starts_with("    PID    PPID COMM"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&me.to_string())),
        "{table}"
    );
}

/// `GADGET_MAPITER`: the hash map is drained every interval; the getpid()
/// calls of a child we fork are counted exactly once.
#[test]
fn topper_counts_our_calls_per_interval() {
    require_kernel();
    let s = TestStore::new();
    s.build(
        &repo().join("tests/fixtures/topper_getpid"),
        "topper_getpid",
    );
    let mut ig = Running::start(
        &s,
        &[
            "topper_getpid",
            "-o",
            "json",
            "--map-fetch-interval",
            "300ms",
        ],
    );
    let children = std::cell::RefCell::new(Vec::new());
    let counts = |l: &str| -> Vec<(u64, u64)> {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            return Vec::new();
        };
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e["pid"].as_u64()?, e["calls"].as_u64()?)))
            .collect()
    };
    ig.wait_for(
        Duration::from_secs(20),
        || {
            // A child of our own: its pid is unique, and it makes exactly
            // 1000 getpid() calls. Between fork and _exit it only makes
            // raw syscalls, which is safe in a multithreaded parent.
            // SAFETY: see above.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                for _ in 0..1000 {
                    // SAFETY: a raw syscall without preconditions.
                    unsafe { libc::syscall(libc::SYS_getpid) };
                }
                // SAFETY: leave the child without running any Rust code.
                unsafe { libc::_exit(0) };
            }
            // SAFETY: waiting for the child just forked.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            children.borrow_mut().push(pid as u64);
        },
        |l| counts(l).iter().any(|(p, _)| children.borrow().contains(p)),
    );
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    // Summed over every fetch, each child made exactly 1000 calls: each
    // fetch emptied the map, so nothing was counted twice.
    let kids = children.borrow();
    let mut total: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for l in &lines {
        for (p, c) in counts(l) {
            if kids.contains(&p) {
                *total.entry(p).or_default() += c;
            }
        }
    }
    assert!(!total.is_empty());
    for (p, c) in total {
        assert_eq!(c, 1000, "child {p}: {lines:?}");
    }
}

/// A gadget whose fentry program the kernel refuses runs on its declared
/// tracepoint fallback, and says so with -v.
#[test]
fn refused_program_falls_back_to_its_alternative() {
    require_kernel();
    let s = TestStore::new();
    s.build(
        &repo().join("tests/fixtures/fallback_tracer"),
        "fallback_tracer",
    );
    let mut ig = Running::start(&s, &["fallback_tracer", "-o", "json", "-v"]);
    let me = std::process::id();
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            // SAFETY: getpid has no preconditions.
            unsafe { libc::syscall(libc::SYS_getpid) };
        },
        |l| l.contains(&format!("\"pid\":{me}")),
    );
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
    let fentry_works = line.contains("\"via_fentry\":1");
    if !fentry_works {
        assert!(
            stderr.contains("using its fallback slow_getpid"),
            "{stderr}"
        );
        assert!(stderr.contains("attached slow_getpid"), "{stderr}");
    }
}

/// Build a gadget from source written by the test, expecting `ig run` to
/// fail with a message containing every `want`.
fn expect_run_error(name: &str, source: &str, want: &[&str]) {
    let s = TestStore::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("program.bpf.c"), source).unwrap();
    std::fs::write(dir.path().join("gadget.yaml"), format!("name: {name}\n")).unwrap();
    s.build(dir.path(), name);
    let out = s.run(&["run", name, "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
    let err = text(&out.stderr);
    for w in want {
        assert!(err.contains(w), "{name}: {w:?} in {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

const BAD_HEADER: &str = "#include <vmlinux.h>\n#include <bpf/bpf_helpers.h>\n#include <gadget/buffer.h>\n\
    #include <gadget/macros.h>\nstruct event { __u32 pid; };\nchar LICENSE[] SEC(\"license\") = \"GPL\";\n";

#[test]
fn malformed_gadgets_fail_with_the_marker_and_the_problem() {
    require_kernel();
    let prog = "SEC(\"tracepoint/syscalls/sys_enter_getpid\") int p(void *ctx) { return 0; }\n";
    expect_run_error(
        "two_tracers_one_map",
        &format!(
            "{BAD_HEADER}GADGET_TRACER_MAP(events, 4096);\nGADGET_TRACER(a, events, event);\nGADGET_TRACER(b, events, event);\n{prog}"
        ),
        &["both read map events"],
    );
    expect_run_error(
        "missing_struct",
        &format!(
            "{BAD_HEADER}GADGET_TRACER_MAP(events, 4096);\nconst void *gadget_tracer_a___events___nosuch __attribute__((unused));\n{prog}"
        ),
        &["data source a", "nosuch"],
    );
    expect_run_error(
        "missing_map",
        &format!(
            "{BAD_HEADER}const void *gadget_map_tracer_ghost __attribute__((unused));\nGADGET_TRACER(a, ghost, event);\n{prog}"
        ),
        &["ghost"],
    );
    expect_run_error(
        "unknown_section",
        &format!(
            "{BAD_HEADER}GADGET_TRACER_MAP(events, 4096);\nGADGET_TRACER(a, events, event);\nSEC(\"xdp\") int p(void *ctx) {{ return 2; }}\n"
        ),
        &["program p", "section \"xdp\" is not supported"],
    );
}

// --- The operator chain: filter, formatters, uid/gid names -------------

/// A copy of /bin/cat under a name no other process has (at most 15
/// bytes, the kernel's comm length), in a directory every user may enter.
fn unique_cat(dir: &Path, stem: &str) -> (std::path::PathBuf, String) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let name = format!("{stem}{}", std::process::id() % 10000);
    assert!(name.len() <= 15, "{name} fits in comm");
    let p = dir.join(&name);
    std::fs::copy("/bin/cat", &p).unwrap();
    (p, name)
}

/// Seconds since the epoch of an RFC 3339 UTC time as the formatters write
/// it (`2024-05-01T12:34:56.123456789Z`).
fn rfc3339_utc_secs(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 30 || b[4] != b'-' || b[10] != b'T' || b[19] != b'.' || b[29] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    n(20..29)?;
    // Days from civil (the inverse of what ig computes).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[test]
fn filter_by_comm_shows_only_that_program() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    let (cat, comm) = unique_cat(tmp.path(), "igflt");
    let file = tmp.path().join("hello");
    std::fs::write(&file, "x").unwrap();
    let needle = file.display().to_string();
    let filter = format!("proc.comm=={comm}");
    let mut ig = Running::start(store, &["trace_open", "-o", "json", "--filter", &filter]);
    ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&cat).arg(&file).output();
            // The same opens by another program, which must not show.
            let _ = Command::new("cat").arg(&file).output();
        },
        |l| l.contains(&needle),
    );
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    assert!(!lines.is_empty());
    for line in &lines {
        let ev: Value = serde_json::from_str(line).unwrap();
        assert_eq!(ev["proc"]["comm"], comm.as_str(), "only {comm}: {line}");
    }
}

#[test]
fn a_bad_filter_fails_before_loading_and_lists_the_fields() {
    require_kernel();
    let store = gadget_store();
    let out = store.run(&[
        "run",
        "trace_open",
        "--filter",
        "cmd==cat",
        "--timeout",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no field cmd; the fields are:") && err.contains("proc.pid"),
        "{err}"
    );
    let out = store.run(&["run", "trace_open", "--filter", "fname~(", "--timeout", "5"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("bad regular expression"),
        "{}",
        text(&out.stderr)
    );
}

/// `-E`, `--filter-expr.open` and `-F` together: every one must hold, and
/// each drops opens the others keep. The program opens four files of its
/// directory; another program opens them too.
#[test]
fn filter_expressions_select_events_with_rules_and_per_source_flags() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    let (cat, comm) = unique_cat(tmp.path(), "igexpr");
    let files: Vec<String> = ["keep-a", "keep-b", "drop-c", "drop-d"]
        .iter()
        .map(|n| {
            let f = tmp.path().join(n);
            std::fs::write(&f, "x").unwrap();
            f.display().to_string()
        })
        .collect();
    // Drops drop-d (and what is not in the directory).
    let expr = format!(
        r#"fname startsWith "{}/" and not (fname endsWith "-d") && proc.pid > 0"#,
        tmp.path().display()
    );
    // Drops drop-c.
    let per_source = r#"not (fname matches "drop-c$") and len(fname) > 0"#;
    // Drops the other program.
    let rule = format!("proc.comm=={comm}");
    let mut ig = Running::start(
        store,
        &[
            "trace_open",
            "-o",
            "json",
            "-E",
            &expr,
            "--filter-expr.open",
            per_source,
            "-F",
            &rule,
        ],
    );
    ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&cat).args(&files).output();
            // The same opens by another program, which must not show.
            let _ = Command::new("cat").args(&files).output();
        },
        |l| l.contains(&files[1]),
    );
    // One more round, so that both kept files surely showed.
    let _ = Command::new(&cat).args(&files).output();
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    let mut seen = std::collections::BTreeSet::new();
    for line in &lines {
        let ev: Value = serde_json::from_str(line).unwrap();
        assert_eq!(ev["proc"]["comm"], comm.as_str(), "only {comm}: {line}");
        let f = ev["fname"].as_str().unwrap().to_owned();
        assert!(
            f == files[0] || f == files[1],
            "only the kept files: {line}"
        );
        seen.insert(f);
    }
    assert_eq!(seen.len(), 2, "both kept files: {lines:?}");
}

/// A bad expression is one message with the expression and a caret, and
/// ig stops before any bpf(2) call (strace).
#[test]
fn a_bad_filter_expression_fails_before_any_bpf_call() {
    require_kernel();
    let store = gadget_store();
    let cases: &[(&[&str], &str)] = &[
        (
            &["-E", r#"proc.pid == "x""#],
            "invalid operation: proc.pid == \"x\" (mismatched types uint32 and string) (at 1:10)\n | proc.pid == \"x\"\n |          ^^\n",
        ),
        (
            &["--filter-expr.open", "fname matches '('"],
            "bad regular expression \"(\"",
        ),
        (
            &["-E", "proc.com == 'cat'"],
            "unknown field proc.com (did you mean proc.comm?); the fields of data source open, nearest first: proc.comm, proc.pid",
        ),
        (
            &["-E", "proc.comm == 'cat' and"],
            "unexpected end of the expression",
        ),
    ];
    let traced = |flags: &[&str]| {
        let trace = tempfile::NamedTempFile::new().unwrap();
        let out = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=bpf", "-o"])
            .arg(trace.path())
            .arg(common::ig_bin())
            .args(["run", "trace_open", "--timeout", "1"])
            .args(flags)
            .env("IG_STORE", store.path())
            .output()
            .expect("strace (cargo xtask setup installs it)");
        (out, std::fs::read_to_string(trace.path()).unwrap())
    };
    // The trace sees loads: a good expression loads the gadget.
    let (out, calls) = traced(&["-E", "proc.pid > 0 or true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(calls.contains("BPF_PROG_LOAD"), "no load traced: {calls}");
    for (flags, want) in cases {
        let (out, calls) = traced(flags);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {err}");
        assert!(
            err.contains("running gadget trace_open: operator filter: filter expression for data source open: ")
                && err.contains(want),
            "{flags:?}: {err}"
        );
        assert!(
            !calls.contains("bpf("),
            "{flags:?}: bpf calls before refusing:\n{calls}"
        );
    }
}

#[test]
fn trace_open_formats_error_flags_and_time() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    let (cat, comm) = unique_cat(tmp.path(), "igfmt");
    let missing = tmp.path().join("missing");
    let needle = missing.display().to_string();
    let filter = format!("proc.comm=={comm}");
    let mut ig = Running::start(store, &["trace_open", "-o", "json", "-F", &filter]);
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&cat).arg(&missing).output();
        },
        |l| l.contains(&needle),
    );
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["error"], "ENOENT", "{line}");
    assert_eq!(ev["error_raw"], libc::ENOENT, "both in JSON: {line}");
    let flags = ev["flags"].as_str().unwrap();
    assert!(flags.split('|').any(|f| f == "O_RDONLY"), "{line}");
    let ts = ev["timestamp"].as_str().unwrap();
    let secs = rfc3339_utc_secs(ts).unwrap_or_else(|| panic!("RFC 3339: {line}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - secs).abs() < 30,
        "{ts} is close to now ({now}): {line}"
    );
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");

    // The table shows the names in place of the numbers.
    let mut ig = Running::start(store, &["trace_open", "-F", &filter]);
    let header = ig.wait_for(Duration::from_secs(20), || {}, |l| l.starts_with("COMM"));
    let cols: Vec<&str> = header.split_whitespace().collect();
    for c in ["ERROR", "FLAGS", "MODE", "FNAME"] {
        assert!(cols.contains(&c), "{c} in {header}");
    }
    for c in ["ERROR_RAW", "FLAGS_RAW", "TIMESTAMP_RAW"] {
        assert!(!cols.contains(&c), "{c} hidden: {header}");
    }
    let row = ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&cat).arg(&missing).output();
        },
        |l| l.contains(&needle),
    );
    assert!(row.contains("ENOENT") && row.contains("O_RDONLY"), "{row}");
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
}

/// Removes the test user (and its group) however the test ends.
struct TestUser(String);
impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
        let _ = Command::new("groupdel")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn user_names_are_resolved_for_a_user_created_while_running() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    let (cat, comm) = unique_cat(tmp.path(), "iguid");
    let filter = format!("proc.comm=={comm}");
    let mut ig = Running::start(store, &["trace_open", "-o", "json", "-F", &filter]);
    // ig is attached once it sees our program's opens as root.
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&cat).arg("/etc/hostname").output();
        },
        |l| l.contains("/etc/hostname"),
    );
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["proc"]["creds"]["user"], "root", "{line}");
    assert_eq!(ev["proc"]["creds"]["group"], "root", "{line}");

    // A user created now: ig re-reads /etc/passwd within a second or so.
    let name = format!("igusr{}", std::process::id() % 100_000);
    let st = Command::new("useradd")
        .args([
            "--no-create-home",
            "--user-group",
            "--shell",
            "/bin/false",
            &name,
        ])
        .status()
        .expect("useradd (passwd package)");
    assert!(st.success(), "useradd {name}");
    let _user = TestUser(name.clone());
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, &name]).output().unwrap();
        text(&out.stdout).trim().parse().unwrap()
    };
    let (uid, gid) = (id("-u"), id("-g"));
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new("setpriv")
                .args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={gid}"),
                    "--clear-groups",
                ])
                .arg(&cat)
                .arg("/etc/hostname")
                .output();
        },
        |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|ev| {
                ev["proc"]["creds"]["uid"] == uid && ev["proc"]["creds"]["user"] == name.as_str()
            })
        },
    );
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["proc"]["creds"]["group"], name.as_str(), "{line}");
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
}

/// A CPU burner for profile_cpu: `ig_test_burn` spins in user space, and
/// `ig_test_syscalls` enters the kernel, for `argv[1]` seconds. Built
/// without optimization and with frame pointers, so the stacks are whole.
const BURN_C: &str = r#"
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long ig_sink;

__attribute__((noinline)) void ig_test_burn(void)
{
	for (unsigned long i = 0; i < 2000000; i++)
		ig_sink += i * 7;
}

__attribute__((noinline)) void ig_test_syscalls(void)
{
	for (int i = 0; i < 2000; i++)
		ig_sink += getppid();
}

int main(int argc, char **argv)
{
	time_t end = time(NULL) + (argc > 1 ? atoi(argv[1]) : 3);
	while (time(NULL) < end) {
		ig_test_burn();
		ig_test_syscalls();
	}
	return 0;
}
"#;

/// profile_cpu names the functions of both stacks: the rows of a child of
/// ours burning CPU in `ig_test_burn` show it in `user_stack_raw.symbols`
/// (upstream's ustack operator's name), and kernel
/// stacks come out as `function+0xoffset` from /proc/kallsyms.
#[test]
fn profile_cpu_symbolizes_user_and_kernel_stacks() {
    require_kernel();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("burn.c");
    std::fs::write(&src, BURN_C).unwrap();
    let exe = tmp.path().join("igburn");
    let cc = Command::new("cc")
        .args(["-O0", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("cc is needed to build the CPU burner");
    assert!(cc.status.success(), "{}", text(&cc.stderr));

    let s = TestStore::new();
    s.build(&repo().join("gadgets/profile_cpu"), "profile_cpu");
    let mut ig = Running::start(
        &s,
        &[
            "profile_cpu",
            "-o",
            "json",
            "--map-fetch-interval",
            "1s",
            // Ended by the interrupt below; the count only bounds a run
            // whose output never matches. A short count made the test
            // flaky when other tests kept both cores busy: ig could finish
            // its intervals before a sample of the burner was symbolized.
            "--map-fetch-count",
            "30",
        ],
    );
    let mut burner = Command::new(&exe).arg("8").spawn().unwrap();
    let pid = u64::from(burner.id());
    let rows = |l: &str| -> Vec<Value> {
        serde_json::from_str::<Value>(l)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    let ours = |r: &Value| r["proc"]["pid"].as_u64() == Some(pid);
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {},
        |l| {
            rows(l).iter().any(|r| {
                ours(r)
                    && r["user_stack_raw"]["symbols"]
                        .as_str()
                        .is_some_and(|s| s.contains("ig_test_burn"))
            })
        },
    );
    let _ = burner.kill();
    burner.wait().unwrap();
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");

    // Innermost first: the burner's hot frame starts its user stack.
    let hot_row = rows(&line)
        .into_iter()
        .filter(|r| ours(r))
        .find(|r| {
            r["user_stack_raw"]["symbols"]
                .as_str()
                .is_some_and(|s| s.contains("ig_test_burn"))
        })
        .unwrap();
    let hot = hot_row["user_stack_raw"]["symbols"].as_str().unwrap();
    assert!(hot.starts_with("ig_test_burn+0x"), "{hot}");
    assert!(hot.contains("; main+0x"), "{hot}");
    // The addresses beside the names, one per frame (upstream's
    // `addresses` sub-field).
    let addresses: Vec<&str> = hot_row["user_stack_raw"]["addresses"]
        .as_str()
        .unwrap()
        .split("; ")
        .collect();
    assert_eq!(addresses.len(), hot.split("; ").count(), "{hot_row}");
    assert!(
        addresses.iter().all(|a| a.len() == 18
            && a.starts_with("0x")
            && u64::from_str_radix(&a[2..], 16).is_ok()),
        "{hot_row}"
    );

    // Kernel stacks: frames are symbols, never bare addresses.
    let kstacks: Vec<String> = lines
        .iter()
        .flat_map(|l| rows(l))
        .filter_map(|r| r["kern_stack"].as_str().map(str::to_owned))
        .filter(|s| !s.is_empty())
        .collect();
    assert!(!kstacks.is_empty(), "no kernel stack in {lines:?}");
    let frame = kstacks[0].split("; ").next().unwrap();
    let name = frame.split('+').next().unwrap();
    assert!(
        !frame.starts_with("0x") && frame.contains("+0x"),
        "{kstacks:?}"
    );
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
    assert!(
        kallsyms
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some(name)),
        "{name} is not in /proc/kallsyms"
    );
}

#[test]
fn list_containers_shows_a_real_runc_container() {
    let c = RuncContainer::start("while true; do sleep 1; done");
    let store = TestStore::new();
    let out = store.run(&["list-containers", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = all
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["runtime"]["containerId"] == c.id.as_str())
        .unwrap_or_else(|| panic!("{} not in {all}", c.id));
    assert_eq!(ours["runtime"]["containerName"], c.name.as_str());
    assert_eq!(ours["runtime"]["runtimeName"], "docker");
    assert_eq!(ours["runtime"]["containerPid"], u64::from(c.pid));
    assert_eq!(ours["mntns"], c.mntns());
    // Once: runc's state names it by its runc name, not by the id of its
    // cgroup path, and is the same container.
    let with_pid: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["runtime"]["containerPid"] == u64::from(c.pid))
        .collect();
    assert_eq!(with_pid.len(), 1, "{with_pid:?}");
    let table = store.run(&["list-containers"]);
    let table = text(&table.stdout);
    assert!(table.starts_with("RUNTIME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains(&c.name) && l.contains(&c.pid.to_string())),
        "{table}"
    );
}

/// Without -c, events are enriched: the container's with its name, ours
/// (the host's) with empty runtime fields.
#[test]
fn events_of_a_container_carry_its_name() {
    require_kernel();
    let c = RuncContainer::start("while true; do cat /proc/self/stat >/dev/null; sleep 0.2; done");
    let store = gadget_store();
    let dir = tempfile::tempdir().unwrap();
    let (cat, unique) = unique_cat(dir.path(), "iglmhost");
    let mut ig = Running::start(store, &["trace_exec", "-o", "json"]);
    let container_line = ig.wait_for(Duration::from_secs(20), || {}, |l| l.contains(&c.id));
    let v: Value = serde_json::from_str(&container_line).unwrap();
    assert_eq!(v["runtime"]["containerName"], c.name.as_str());
    assert_eq!(v["runtime"]["containerPid"], u64::from(c.pid));
    assert_eq!(v["proc"]["mntns_id"], c.mntns());
    let host_line = ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&cat).arg("/dev/null").output();
        },
        |l| l.contains(&unique),
    );
    let v: Value = serde_json::from_str(&host_line).unwrap();
    assert_eq!(v["runtime"]["containerName"], "", "{host_line}");
    assert_eq!(v["runtime"]["containerId"], "", "{host_line}");
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
}

/// `-c NAME` selects in the kernel: the filter map holds the container's
/// mount namespace, the host's and other containers' events never arrive,
/// and a selected container that starts after ig is picked up by the
/// refresh on the timer.
#[test]
fn containername_filters_in_the_kernel_and_follows_new_containers() {
    require_kernel();
    let store = gadget_store();
    let busy = "while true; do cat /proc/self/stat >/dev/null; sleep 0.2; done";
    let first = RuncContainer::start(busy);
    let other = RuncContainer::start(busy);
    let dir = tempfile::tempdir().unwrap();
    let (cat, unique) = unique_cat(dir.path(), "iglmsel");
    let mut ig = Running::start(store, &["trace_open", "-c", &first.name, "-o", "json"]);
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&cat).arg("/dev/null").output();
        },
        |l| l.contains(&first.id),
    );
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["runtime"]["containerName"], first.name.as_str());

    // The kernel map holds exactly the container's mount namespace.
    assert_eq!(mntns_filter_keys(ig.child.id()), [first.mntns()]);
    // The host and the other container keep opening files meanwhile.
    for _ in 0..5 {
        let _ = Command::new(&cat).arg("/dev/null").output();
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    assert!(
        !lines.iter().any(|l| l.contains(&unique)),
        "a host event passed the container filter"
    );
    assert!(
        !lines.iter().any(|l| l.contains(&other.id)),
        "an unselected container passed the filter"
    );
    let name = format!("\"containerName\":\"{}\"", first.name);
    assert!(lines.iter().all(|l| l.contains(&name)), "{lines:?}");

    // Selected by name before it exists: a warning, then its events once
    // it starts (the table and the kernel map are refreshed every second).
    let id = RuncContainer::new_id();
    let mut ig = Running::start(store, &["trace_open", "-c", &id[..12], "-o", "json"]);
    std::thread::sleep(Duration::from_secs(1));
    let late = RuncContainer::start_with_id(id, busy);
    ig.wait_for(Duration::from_secs(20), || {}, |l| l.contains(&late.id));
    assert_eq!(mntns_filter_keys(ig.child.id()), [late.mntns()]);
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("no running container matches --containername"),
        "{stderr}"
    );
}

/// The keys of the `gadget_mntns_filter_map` held by process `pid`, read
/// with bpftool.
fn mntns_filter_keys(pid: u32) -> Vec<u64> {
    // The kernel keeps 15 characters of a map's name.
    let mut keys: Vec<u64> = map_keys_of(pid, |info| {
        info["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty() && "gadget_mntns_filter_map".starts_with(n))
    })
    .unwrap_or_else(|| panic!("process {pid} holds no gadget_mntns_filter_map"))
    .into_iter()
    .map(|k| u64::from_ne_bytes(k.try_into().unwrap()))
    .collect();
    keys.sort_unstable();
    keys
}

/// The keys of the first map process `pid` holds whose `bpftool map show`
/// answer `pick` accepts (`None`: no such map), dumped with bpftool.
fn map_keys_of(pid: u32, pick: impl Fn(&Value) -> bool) -> Option<Vec<Vec<u8>>> {
    for id in bpf_ids_of("map", pid) {
        let info = Command::new("bpftool")
            .args(["-j", "map", "show", "id", &id.to_string()])
            .output()
            .unwrap();
        let info: Value = serde_json::from_slice(&info.stdout).unwrap_or(Value::Null);
        if !pick(&info) {
            continue;
        }
        let out = Command::new("bpftool")
            .args(["-j", "map", "dump", "id", &id.to_string()])
            .output()
            .unwrap();
        let dump: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let keys = dump
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        e["key"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|b| {
                                u8::from_str_radix(b.as_str().unwrap().trim_start_matches("0x"), 16)
                                    .unwrap()
                            })
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Some(keys);
    }
    None
}

/// `uprobe/<lib>:<symbol>` and `uretprobe/...`: probes on libc's getppid()
/// see our calls, the return probe with the returned value.
#[test]
fn uprobes_on_a_library_symbol_see_our_calls() {
    require_kernel();
    let s = TestStore::new();
    s.build(
        &repo().join("tests/fixtures/uprobe_tracer"),
        "uprobe_tracer",
    );
    let mut ig = Running::start(&s, &["uprobe_tracer", "-o", "json"]);
    let me = std::process::id();
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            // SAFETY: as above; through libc, where the probe is.
            unsafe { libc::getppid() };
        },
        |l| l.contains(&format!("\"pid\":{me},")) && l.contains("\"is_return\":1"),
    );
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        ev["ret"], parent,
        "the uretprobe sees the return value: {line}"
    );
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("\"pid\":{me},")) && l.contains("\"is_return\":0")),
        "the entry probe fired too"
    );
}

/// `--enrich-process` takes command lines and executables from the kernel
/// as processes exec and fork, so processes that are gone long before
/// their events are printed are enriched too (from /proc they would not
/// be), a forked child that did not exec shows its parent's program, and
/// the tracker's programs go away with ig.
#[test]
fn enrich_process_knows_short_lived_and_forked_processes() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    let prog = unique_program(tmp.path(), "igenrich");
    let comm = prog.file_name().unwrap().to_str().unwrap().to_owned();
    let mut ig = Running::start(store, &["trace_exec", "-o", "json", "--enrich-process"]);
    // Attached once one of our execs shows up.
    ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&prog).arg("warmup").status();
        },
        |l| l.contains(&comm),
    );
    let ig_pid = ig.child.id();
    // ig holds the tracker's programs next to the gadget's: 3 + trace_exec's.
    let progs = bpf_ids_of("prog", ig_pid);
    // Twenty processes that exit at once.
    let mut pids = Vec::new();
    for i in 0..20 {
        let mut c = Command::new(&prog).arg(format!("run-{i}")).spawn().unwrap();
        pids.push(c.id());
        c.wait().unwrap();
    }
    // A subshell is a fork of the shell that does not exec; the program it
    // starts has it as parent, which runs the shell's program (read from
    // /proc if it is alive when its child's event is handled).
    let script = format!("( {} forked-child; true )", prog.display());
    let sh = Command::new("/bin/sh")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(sh.success());
    // The same with ig stopped until the subshell has exited: the tracker
    // reports no fork, so the subshell is known only by its exit record,
    // which names the shell it was forked from (from /proc it would read
    // nothing: it is gone).
    let stopped = format!("( {} forked-stopped; true )", prog.display());
    let ig_raw = i32::try_from(ig_pid).unwrap();
    // SAFETY: signals to ig, our child, which we still hold.
    unsafe { libc::kill(ig_raw, libc::SIGSTOP) };
    let sh = Command::new("/bin/sh")
        .args(["-c", &stopped])
        .status()
        .unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(ig_raw, libc::SIGCONT) };
    assert!(sh.success());
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(
        !stderr.contains("process tracker could not start"),
        "{stderr}"
    );
    let events: Vec<Value> = lines
        .iter()
        .filter(|l| l.contains(&comm))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let exe = std::fs::canonicalize(&prog).unwrap();
    for (i, pid) in pids.iter().enumerate() {
        let ev = events
            .iter()
            .find(|e| e["proc"]["pid"] == *pid)
            .unwrap_or_else(|| panic!("no event of pid {pid} in {events:?}"));
        assert_eq!(
            ev["proc"]["cmdline"],
            format!("{} run-{i}", prog.display()),
            "{ev}"
        );
        assert_eq!(ev["proc"]["exe"], exe.to_str().unwrap(), "{ev}");
        // The parent is this test: alive, read from /proc or the table.
        assert_eq!(ev["proc"]["parent"]["pid"], std::process::id(), "{ev}");
        let me = std::fs::canonicalize("/proc/self/exe").unwrap();
        assert_eq!(ev["proc"]["parent"]["exe"], me.to_str().unwrap(), "{ev}");
    }
    let sh_exe = std::fs::canonicalize("/bin/sh").unwrap();
    // Alive when its child's event was read (or not), and surely gone.
    for (arg, script, what) in [
        ("forked-child", &script, "the forked subshell"),
        (
            "forked-stopped",
            &stopped,
            "the subshell gone before it was read",
        ),
    ] {
        let forked = events
            .iter()
            .find(|e| e["args"].as_str().is_some_and(|a| a.ends_with(arg)))
            .unwrap_or_else(|| panic!("no event of the child of {what} in {events:?}"));
        let parent = &forked["proc"]["parent"];
        assert_eq!(
            parent["cmdline"],
            format!("/bin/sh -c {script}"),
            "{what} runs the shell's program: {forked}"
        );
        assert_eq!(parent["exe"], sh_exe.to_str().unwrap(), "{forked}");
    }
    assert!(
        progs.len() >= 4,
        "ig holds the tracker's programs too: {progs:?}"
    );
    let end = Instant::now() + Duration::from_secs(5);
    while progs.iter().any(|id| bpf_id_exists("prog", *id)) {
        assert!(Instant::now() < end, "programs left after ig exited");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Under an exec storm every exec event carries its own command line, never
/// the one its process ran before the exec (its parent's, copied at the
/// fork). trace_exec emits from `sched_process_exec`, where the process
/// tracker reads the new command line too: the tracker's record must be in
/// its ring before the gadget's event is in the gadget's, or a reader on the
/// other core can take the event first (issue 31: 0.01-0.02% of exec events
/// in the benchmark's `ig-chain` peer).
#[test]
fn enrich_process_gives_every_exec_of_a_storm_its_own_command_line() {
    require_kernel();
    let store = gadget_store();
    let tmp = tempfile::tempdir().unwrap();
    // Sixty directories deep and a long argument: the tracker's exec
    // program walks every path component and copies the arguments, which
    // widens the window in which the gadget's event is readable and the
    // exec record is not (before the fix, one run in three failed with
    // the program at the top of the temp dir; with this, most do).
    let deep = (0..60).fold(tmp.path().to_owned(), |p, i| p.join(format!("d{i}")));
    std::fs::create_dir_all(&deep).unwrap();
    let prog = unique_program(&deep, "igstorm");
    let comm = prog.file_name().unwrap().to_str().unwrap().to_owned();
    let pad = "p".repeat(2000);
    let mut ig = Running::start(store, &["trace_exec", "-o", "json", "--enrich-process"]);
    ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&prog).arg("warmup").status();
        },
        |l| l.contains(&comm),
    );
    // Two spawning threads keep both cores busy with execs while ig reads.
    const PER_THREAD: usize = 6000;
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (prog, pad) = (prog.clone(), pad.clone());
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let ok = Command::new(&prog)
                        .arg(&pad)
                        .arg(format!("storm-{t}-{i}"))
                        .status()
                        .unwrap()
                        .success();
                    assert!(ok);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "exit {status}: {stderr}");
    let mut seen = 0;
    let mut wrong = Vec::new();
    for l in lines.iter().filter(|l| l.contains("storm-")) {
        let ev: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        if ev["proc"]["comm"] != comm.as_str() {
            continue;
        }
        seen += 1;
        let args = ev["args"].as_str().unwrap_or_default();
        let arg = args.rsplit(' ').next().unwrap_or_default();
        if ev["proc"]["cmdline"] != format!("{} {pad} {arg}", prog.display()) {
            wrong.push(l.clone());
        }
    }
    assert!(
        seen >= 2 * PER_THREAD * 99 / 100,
        "only {seen} of {} storm execs seen: {stderr}",
        2 * PER_THREAD
    );
    assert!(
        wrong.is_empty(),
        "{} of {seen} exec events carry another command line, e.g. {}",
        wrong.len(),
        wrong[0]
    );
}

// ---- Kubernetes and container runtimes (tests/kernel/runtimes.rs) ----

/// The `ig list-containers -o json` entry of container `id`, if listed.
fn listed(store: &TestStore, env: &[(&str, &str)], id: &str) -> Option<Value> {
    let out = store
        .ig()
        .args(["list-containers", "-o", "json"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|v| v["runtime"]["containerId"] == id)
        .cloned()
}

fn hex_id(seed: &str) -> String {
    use std::fmt::Write as _;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut id = String::new();
    for i in 0..4u8 {
        for b in seed.bytes().chain([i]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        let _ = write!(id, "{h:016x}");
    }
    id
}

/// Two pods of a real containerd (CRI annotations, kubelet-style cgroups):
/// listed with their namespace, pod, container, image and full id; a pod
/// with a short, non-hex id is listed; a sandbox (pause) container is not.
#[test]
fn containerd_pods_are_listed_with_their_kubernetes_names() {
    let pod_a = runtimes::unique("pa");
    let pod_b = runtimes::unique("pb");
    let a = runtimes::Pod::start(
        &runtimes::PodSpec::new(hex_id(&pod_a), "ns-a", &pod_a, "web")
            .image("docker.io/library/busybox:1.35"),
        runtimes::IDLE,
    );
    let b = runtimes::Pod::start(
        &runtimes::PodSpec::new(runtimes::unique("igt"), "ns-b", &pod_b, "db")
            .image("quay.io/x/db:2"),
        runtimes::IDLE,
    );
    let pause = runtimes::Pod::start(
        &runtimes::PodSpec::new(runtimes::unique("pause"), "ns-a", &pod_a, "")
            .image("registry.k8s.io/pause:3.9")
            .sandbox(),
        runtimes::IDLE,
    );
    let store = TestStore::new();
    for (p, ns, pod, ctr, image) in [
        (&a, "ns-a", &pod_a, "web", "docker.io/library/busybox:1.35"),
        (&b, "ns-b", &pod_b, "db", "quay.io/x/db:2"),
    ] {
        let v = listed(&store, &[], &p.id).unwrap_or_else(|| panic!("{} not listed", p.id));
        assert_eq!(v["runtime"]["runtimeName"], "containerd", "{v}");
        assert_eq!(v["runtime"]["containerId"], p.id.as_str(), "{v}");
        assert_eq!(v["runtime"]["containerName"], ctr, "{v}");
        assert_eq!(v["runtime"]["containerImageName"], image, "{v}");
        assert_eq!(v["runtime"]["containerPid"], u64::from(p.pid), "{v}");
        assert_eq!(v["k8s"]["namespace"], ns, "{v}");
        assert_eq!(v["k8s"]["podName"], pod.as_str(), "{v}");
        assert_eq!(v["k8s"]["containerName"], ctr, "{v}");
        assert_eq!(v["k8s"]["podUID"], p.pod_uid.as_str(), "{v}");
        assert_eq!(v["mntns"], p.mntns(), "{v}");
        assert!(
            v["cgroupPath"]
                .as_str()
                .unwrap()
                .starts_with("/kubepods/besteffort/pod"),
            "{v}"
        );
        assert!(
            v["runtime"]["containerStartedAt"].as_i64().unwrap() > 0,
            "{v}"
        );
    }
    assert!(!b.id.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(listed(&store, &[], &pause.id), None, "a sandbox is listed");
    let table = text(&store.run(&["list-containers"]).stdout);
    assert!(
        table
            .lines()
            .any(|l| l.contains("ns-b") && l.contains(&pod_b) && l.contains("db")),
        "{table}"
    );
}

/// `ig run` events from inside a pod carry its Kubernetes names; the
/// host's carry empty ones.
#[test]
fn events_of_a_pod_carry_its_kubernetes_names() {
    require_kernel();
    let pod = runtimes::unique("pe");
    let marker = runtimes::unique("/igmark-");
    let p = runtimes::Pod::start(
        &runtimes::PodSpec::new(hex_id(&pod), "ns-e", &pod, "app"),
        &[
            "/bin/sh",
            "-c",
            &format!("while true; do cat {marker} 2>/dev/null; sleep 0.2; done"),
        ],
    );
    let store = gadget_store();
    let dir = tempfile::tempdir().unwrap();
    let (cat, unique) = unique_cat(dir.path(), "igk8shost");
    let mut ig = Running::start(store, &["trace_open", "-o", "json"]);
    let line = ig.wait_for(Duration::from_secs(20), || {}, |l| l.contains(&marker));
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["k8s"]["namespace"], "ns-e", "{line}");
    assert_eq!(v["k8s"]["podName"], pod.as_str(), "{line}");
    assert_eq!(v["k8s"]["containerName"], "app", "{line}");
    assert_eq!(v["k8s"]["hostnetwork"], false, "{line}");
    assert_eq!(v["runtime"]["containerId"], p.id.as_str(), "{line}");
    assert_eq!(v["runtime"]["runtimeName"], "containerd", "{line}");
    assert_eq!(v["runtime"]["containerImageName"], "img:1", "{line}");
    let host = ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new(&cat).arg("/dev/null").output();
        },
        |l| l.contains(&unique),
    );
    let v: Value = serde_json::from_str(&host).unwrap();
    for f in ["node", "namespace", "podName", "containerName", "podLabels"] {
        assert_eq!(v["k8s"][f], "", "{f}: {host}");
    }
    assert_eq!(v["k8s"]["owner"]["kind"], "", "{host}");
    assert_eq!(v["runtime"]["containerName"], "", "{host}");
    // In tables, k8s is hidden (as upstream's ig).
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
    let out = store.run(&["run", "trace_open", "--timeout", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let header = text(&out.stdout);
    let header = header.lines().next().unwrap_or_default();
    assert!(
        !header.contains("NAMESPACE") && !header.contains("POD"),
        "{header}"
    );
}

/// `--k8s-podname P` selects in the kernel: the filter map holds exactly
/// P's mount namespace, the host's and the other pod's events never
/// arrive; `!P` inverts it.
#[test]
fn k8s_podname_selects_in_the_kernel_and_bang_inverts() {
    require_kernel();
    let (pod_p, pod_q) = (runtimes::unique("pp"), runtimes::unique("pq"));
    let (mark_p, mark_q) = (runtimes::unique("/igmp-"), runtimes::unique("/igmq-"));
    let start = |pod: &str, mark: &str| {
        runtimes::Pod::start(
            &runtimes::PodSpec::new(hex_id(pod), "ns-s", pod, "app"),
            &[
                "/bin/sh",
                "-c",
                &format!("while true; do cat {mark} 2>/dev/null; sleep 0.2; done"),
            ],
        )
    };
    let p = start(&pod_p, &mark_p);
    let q = start(&pod_q, &mark_q);
    let store = gadget_store();
    let dir = tempfile::tempdir().unwrap();
    let (cat, unique) = unique_cat(dir.path(), "igk8ssel");
    let mut ig = Running::start(
        store,
        &["trace_open", "--k8s-podname", &pod_p, "-o", "json"],
    );
    ig.wait_for(Duration::from_secs(20), || {}, |l| l.contains(&mark_p));
    assert_eq!(mntns_filter_keys(ig.child.id()), [p.mntns()]);
    for _ in 0..5 {
        let _ = Command::new(&cat).arg("/dev/null").output();
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    assert!(
        !lines.iter().any(|l| l.contains(&unique)),
        "a host event passed"
    );
    assert!(
        !lines.iter().any(|l| l.contains(&mark_q)),
        "the other pod passed"
    );
    let want = format!("\"podName\":\"{pod_p}\"");
    assert!(lines.iter().all(|l| l.contains(&want)), "{lines:?}");

    let not_p = format!("!{pod_p}");
    let mut ig = Running::start(
        store,
        &["trace_open", "--k8s-podname", &not_p, "-o", "json"],
    );
    ig.wait_for(Duration::from_secs(20), || {}, |l| l.contains(&mark_q));
    let keys = mntns_filter_keys(ig.child.id());
    assert!(
        keys.contains(&q.mntns()) && !keys.contains(&p.mntns()),
        "{keys:?}"
    );
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    assert!(
        !lines.iter().any(|l| l.contains(&mark_p)),
        "the excluded pod passed"
    );
    assert!(
        !lines.iter().any(|l| l.contains(&unique)),
        "a host event passed"
    );
}

/// `--k8s-podname` given before the pods start; each pod's very first
/// program opens a marker file. ig holds the runtime's `runc` until the
/// new container is in the kernel filter, so that open arrives every
/// time (20 pods), with the pod's name.
#[test]
fn a_pod_started_after_ig_loses_not_even_its_first_open() {
    require_kernel();
    const N: usize = 20;
    let names: Vec<String> = (0..N).map(|_| runtimes::unique("pf")).collect();
    let marks: Vec<String> = (0..N).map(|_| runtimes::unique("/igfirst-")).collect();
    let store = gadget_store();
    runtimes::containerd();
    let ig = Running::start(
        store,
        &[
            "trace_open",
            "--k8s-podname",
            &names.join(","),
            "-o",
            "json",
        ],
    );
    wait_for_runtime_hook(ig.child.id());
    let mut pods = Vec::new();
    for (name, mark) in names.iter().zip(&marks) {
        pods.push(runtimes::Pod::start(
            &runtimes::PodSpec::new(hex_id(name), "ns-f", name, "first"),
            // The container's init: its first and only open is the marker.
            &["/bin/cat", mark],
        ));
    }
    let mut missing: Vec<&str> = marks.iter().map(String::as_str).collect();
    let end = Instant::now() + Duration::from_secs(20);
    while !missing.is_empty() && Instant::now() < end {
        if let Ok(l) = ig.lines.recv_timeout(Duration::from_millis(100)) {
            for (name, mark) in names.iter().zip(&marks) {
                if l.contains(&format!("\"fname\":\"{mark}\"")) {
                    let v: Value = serde_json::from_str(&l).unwrap();
                    assert_eq!(v["k8s"]["podName"], name.as_str(), "{l}");
                    missing.retain(|m| m != mark);
                }
            }
        }
    }
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
    assert!(
        missing.is_empty(),
        "{} of {N} first opens lost: {missing:?}\n{stderr}",
        missing.len()
    );
    assert!(!stderr.contains("was held"), "a hold timed out: {stderr}");
}

/// A deleted pod leaves the table and the kernel filter within a second.
#[test]
fn a_deleted_pod_leaves_the_filter_within_a_second() {
    require_kernel();
    let pod = runtimes::unique("pd");
    let mark = runtimes::unique("/igdel-");
    let p = runtimes::Pod::start(
        &runtimes::PodSpec::new(runtimes::unique("igdel"), "ns-d", &pod, "app"),
        &[
            "/bin/sh",
            "-c",
            &format!("while true; do cat {mark} 2>/dev/null; sleep 0.2; done"),
        ],
    );
    let store = gadget_store();
    let mut ig = Running::start(store, &["trace_open", "--k8s-podname", &pod, "-o", "json"]);
    ig.wait_for(Duration::from_secs(20), || {}, |l| l.contains(&mark));
    assert_eq!(mntns_filter_keys(ig.child.id()), [p.mntns()]);
    p.delete();
    let gone = Instant::now();
    while !mntns_filter_keys(ig.child.id()).is_empty() {
        assert!(
            gone.elapsed() < Duration::from_secs(1),
            "the deleted pod is still in the filter after 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
}

/// A docker container (dockerd on the test's containerd): its
/// `io.kubernetes.*` labels give the k8s fields, the API its name and the
/// digest of its (pushed) image.
#[test]
fn docker_labels_name_the_pod_and_the_api_gives_the_image_digest() {
    require_kernel();
    let d = runtimes::dockerd();
    let (image, digest) = d.pushed_image(&runtimes::unique("igimg"));
    let name = runtimes::unique("igdock");
    let pod = runtimes::unique("dpod");
    let id = runtimes::run_ok(d.docker().args([
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        "--label",
        &format!("io.kubernetes.pod.name={pod}"),
        "--label",
        "io.kubernetes.pod.namespace=dns",
        "--label",
        "io.kubernetes.container.name=dapp",
        &image,
        "/bin/sh",
        "-c",
        "while true; do sleep 1; done",
    ]));
    let id = id.trim().to_owned();
    struct Rm<'a>(&'a runtimes::Dockerd, String);
    impl Drop for Rm<'_> {
        fn drop(&mut self) {
            let _ = self.0.docker().args(["rm", "-f", &self.1]).output();
        }
    }
    let _rm = Rm(d, id.clone());
    let store = TestStore::new();
    let sock = d.socket.to_str().unwrap().to_owned();
    let out = store.run(&[
        "list-containers",
        "-o",
        "json",
        "--docker-socketpath",
        &sock,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = all
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["runtime"]["containerId"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {all}"));
    assert_eq!(v["runtime"]["runtimeName"], "docker", "{v}");
    assert_eq!(v["runtime"]["containerName"], name.as_str(), "{v}");
    assert_eq!(v["runtime"]["containerImageName"], image.as_str(), "{v}");
    assert_eq!(v["runtime"]["containerImageDigest"], digest.as_str(), "{v}");
    assert_eq!(v["k8s"]["podName"], pod.as_str(), "{v}");
    assert_eq!(v["k8s"]["namespace"], "dns", "{v}");
    assert_eq!(v["k8s"]["containerName"], "dapp", "{v}");
    // Selected by digest in ig run too.
    let gs = gadget_store();
    let mut ig = Running::start(
        gs,
        &[
            "trace_exec",
            "--docker-socketpath",
            &sock,
            "--runtime-containerimage-digest",
            &digest,
            "-o",
            "json",
        ],
    );
    let line = ig.wait_for(Duration::from_secs(20), || {}, |l| l.contains(&id));
    let e: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(e["runtime"]["containerName"], name.as_str(), "{line}");
    assert_eq!(e["k8s"]["podName"], pod.as_str(), "{line}");
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
}

/// `HOST_ROOT`: `/proc` and the runtimes' state are read under it. A root
/// with the host's `/proc` and `/run` finds the pod with its names; one
/// with `/proc` only finds its processes but no annotations.
#[test]
fn host_root_is_where_proc_and_runtime_state_are_read() {
    let pod = runtimes::unique("ph");
    let p = runtimes::Pod::start(
        &runtimes::PodSpec::new(runtimes::unique("ighr"), "ns-h", &pod, "app"),
        runtimes::IDLE,
    );
    let full = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/proc", full.path().join("proc")).unwrap();
    std::os::unix::fs::symlink("/run", full.path().join("run")).unwrap();
    let bare = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/proc", bare.path().join("proc")).unwrap();
    let store = TestStore::new();
    let root = full.path().to_str().unwrap();
    let v = listed(&store, &[("HOST_ROOT", root)], &p.id).expect("listed under HOST_ROOT");
    assert_eq!(v["k8s"]["podName"], pod.as_str(), "{v}");
    // Without the runtime's state, a non-hex id in a kubelet cgroup is no
    // container ig can recognize.
    let bare_root = bare.path().to_str().unwrap();
    assert_eq!(listed(&store, &[("HOST_ROOT", bare_root)], &p.id), None);
    let none = tempfile::tempdir().unwrap();
    let out = store
        .ig()
        .args(["list-containers", "-o", "json"])
        .env("HOST_ROOT", none.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "[]");
}

/// Flags that need an API server are refused with one line saying why; a
/// runtime or socket named explicitly that does not exist is an error;
/// `--host` is accepted.
#[test]
fn flags_a_host_cannot_serve_are_refused() {
    let store = gadget_store();
    for (args, want) in [
        (&["--k8s-selector", "app=web"][..], "pod labels"),
        (&["--enrich-with-k8s-apiserver"][..], "API client"),
        (&["--runtime-protocol", "cri"][..], "CRI (gRPC) client"),
        (
            &["--docker-socketpath", "/nonexistent/d.sock"][..],
            "non-existent socket path /nonexistent/d.sock",
        ),
        (&["-r", "rkt"][..], "runtime \"rkt\" is not supported"),
    ] {
        let out = store
            .ig()
            .args(["run", "trace_exec", "--timeout", "1"])
            .args(args)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let out = store.run(&[
        "list-containers",
        "--crio-socketpath",
        "/nonexistent/c.sock",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("non-existent socket path"),
        "{}",
        text(&out.stderr)
    );
    let out = store.run(&["run", "trace_exec", "--host", "--timeout", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Wait until `ig` (pid) holds the fanotify fd of its runtime hook.
fn wait_for_runtime_hook(pid: u32) {
    let end = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .any(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("fanotify"))
        })
    {
        assert!(Instant::now() < end, "ig set no runtime hook within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A held runtime goes on when ig dies: an ig that cannot answer
/// (stopped) holds `ctr run`; killing it releases the runtime at once.
#[test]
fn a_runtime_held_by_ig_goes_on_when_ig_dies() {
    require_kernel();
    let _one = runtimes::unresponsive_ig();
    let store = gadget_store();
    runtimes::containerd();
    let ig = Running::start(
        store,
        &["trace_open", "--k8s-podname", "nobody", "-o", "json"],
    );
    let pid = ig.child.id();
    wait_for_runtime_hook(pid);
    let ipid = i32::try_from(pid).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(ipid, libc::SIGSTOP) };
    let pod = runtimes::unique("pk");
    let id = hex_id(&pod);
    let (tx, rx) = mpsc::channel();
    let starter = {
        let (pod, id) = (pod.clone(), id.clone());
        std::thread::spawn(move || {
            let p = runtimes::Pod::start(
                &runtimes::PodSpec::new(id, "ns-k", &pod, "app"),
                runtimes::IDLE,
            );
            let _ = tx.send(Instant::now());
            p
        })
    };
    assert!(
        rx.recv_timeout(Duration::from_secs(3)).is_err(),
        "the runtime was not held while ig was stopped"
    );
    let killed = Instant::now();
    // SAFETY: as above.
    unsafe { libc::kill(ipid, libc::SIGKILL) };
    let started = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the runtime stayed held after ig died");
    assert!(
        started.duration_since(killed) < Duration::from_secs(2),
        "released only after {:?}",
        started.duration_since(killed)
    );
    drop(starter.join().unwrap());
    drop(ig);
}

/// Enrichment by network namespace: a connect made in a pod's network
/// namespace by a host process (`nsenter -n`: the host's mount
/// namespace, no container's) carries the pod's names, since that network
/// namespace is the pod's alone.
#[test]
fn connects_in_a_pod_network_namespace_carry_its_names() {
    require_kernel();
    let pod = runtimes::unique("pn");
    let p = runtimes::Pod::start(
        &runtimes::PodSpec::new(hex_id(&pod), "ns-n", &pod, "srv"),
        &[
            "/bin/sh",
            "-c",
            "while true; do /bin/busybox nc -l -p 7777 </dev/null >/dev/null; done",
        ],
    );
    let netns = {
        let l = std::fs::read_link(format!("/proc/{}/ns/net", p.pid)).unwrap();
        ig::containers::parse_ns_link(l.to_str().unwrap()).unwrap()
    };
    let s = TestStore::new();
    s.build(&repo().join("gadgets/trace_tcp"), "trace_tcp");
    let mut ig = Running::start(&s, &["trace_tcp", "-o", "json"]);
    let pid = p.pid.to_string();
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = Command::new("nsenter")
                .args([
                    "-t",
                    &pid,
                    "-n",
                    "/bin/busybox",
                    "nc",
                    "-w",
                    "1",
                    "127.0.0.1",
                    "7777",
                ])
                .stdin(Stdio::null())
                .output();
        },
        |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| {
                v["netns_id"] == netns && v["type"] == "connect" && v["dst"]["port"] == 7777
            })
        },
    );
    let v: Value = serde_json::from_str(&line).unwrap();
    let host_mntns = {
        let l = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        ig::containers::parse_ns_link(l.to_str().unwrap()).unwrap()
    };
    assert_eq!(v["proc"]["mntns_id"], host_mntns, "a host process: {line}");
    assert_eq!(v["k8s"]["podName"], pod.as_str(), "{line}");
    assert_eq!(v["k8s"]["namespace"], "ns-n", "{line}");
    assert_eq!(v["runtime"]["containerId"], p.id.as_str(), "{line}");
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "{stderr}");
}

/// `k8s.hostnetwork`: a pod on the host's network namespace says so, one
/// with its own does not.
#[test]
fn a_pod_on_the_host_network_says_so() {
    fn spec(pod: &str) -> runtimes::PodSpec<'_> {
        runtimes::PodSpec::new(hex_id(pod), "ns-hn", pod, "app")
    }
    let (a, b) = (runtimes::unique("phn"), runtimes::unique("pon"));
    let host = runtimes::Pod::start_with(&spec(&a), runtimes::IDLE, &["--net-host"]);
    let own = runtimes::Pod::start(&spec(&b), runtimes::IDLE);
    let store = TestStore::new();
    let v = listed(&store, &[], &host.id).unwrap();
    assert_eq!(v["k8s"]["hostnetwork"], true, "{v}");
    let v = listed(&store, &[], &own.id).unwrap();
    assert_eq!(v["k8s"]["hostnetwork"], false, "{v}");
}

/// The hold is bounded: an ig whose event loop cannot answer (its reader
/// stopped reading, so the loop waits for room to write) lets the runtime
/// go on after 2 s per runc exec, with a warning.
#[test]
fn a_stuck_ig_holds_a_runtime_at_most_two_seconds_per_exec() {
    require_kernel();
    let _one = runtimes::unresponsive_ig();
    let store = gadget_store();
    runtimes::containerd();
    let mut child = store
        .ig()
        .args(["run", "trace_open", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Never read: once the pipe and ig's backlog are full, its loop only
    // waits for room.
    let _stdout = child.stdout.take().unwrap();
    wait_for_runtime_hook(child.id());
    // Opens for a second fill the pipe and ig's backlog; with nobody
    // reading, they stay full and the loop waits for room for ever.
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        for _ in 0..1000 {
            let _ = std::fs::File::open("/dev/null");
        }
    }
    let pod = runtimes::unique("pst");
    let t0 = Instant::now();
    let p = runtimes::Pod::start(
        &runtimes::PodSpec::new(hex_id(&pod), "ns-st", &pod, "app"),
        runtimes::IDLE,
    );
    let took = t0.elapsed();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(stderr.contains("was held"), "no hold ran out: {stderr}");
    // create, the init's re-exec, start: a few holds of 2 s at most, one
    // after the other.
    assert!(took < Duration::from_secs(12), "ctr run took {took:?}");
    drop(p);
}

/// Issue 29: `--timeout 0` is upstream's "run until stopped" (it used to
/// end the run at once), and `-t` takes a duration with a unit besides
/// upstream's bare seconds (`-t 3s` used to fail with "invalid digit").
#[test]
fn timeout_zero_runs_until_stopped_and_units_are_taken() {
    require_kernel();
    let s = TestStore::new();
    s.build(
        &repo().join("tests/fixtures/minimal_tracer"),
        "minimal_tracer",
    );
    let mut run = Running::start(&s, &["minimal_tracer", "--timeout", "0"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "--timeout 0 ended the run: {:?}",
        run.child.wait()
    );
    let (status, err) = run.interrupt();
    assert!(status.success(), "{status:?}: {err}");
    for t in ["1500ms", "1s", "1"] {
        let started = Instant::now();
        let run = Running::start(&s, &["minimal_tracer", "-t", t]);
        let (status, err, _) = run.wait_all(Duration::from_secs(30));
        assert!(status.success(), "-t {t}: {status:?}: {err}");
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "-t {t} ended after {:?}",
            started.elapsed()
        );
    }
}
