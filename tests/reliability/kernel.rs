//! `ig run` under signals, storms and readers that stop: nothing of ours
//! stays in the kernel, memory stays bounded, loss is reported, SIGINT
//! works within 1 s. Root, a BTF kernel and bpftool are required (missing
//! ones fail the tests, as in tests/kernel).
//!
//! Each test builds its own copy of the `minimal_tracer` fixture (one event
//! per getpid) whose program and ring buffer carry a name no other process
//! uses, so `bpftool prog/map show` can tell ours from everyone else's on
//! a shared machine. A BPF link holds its program, so "no program of ours
//! left" also proves "no link of ours left".

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{TestStore, fixture_copy, text};

fn require_kernel() {
    assert!(
        ig::bpf::privileges::check().is_ok(),
        "these tests need root or CAP_BPF+CAP_PERFMON (run them as root, as .ci/run does)"
    );
    assert!(
        Command::new("bpftool")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "bpftool is needed to look for leftovers"
    );
}

/// A gadget whose program is `rp<token>` and whose ring buffer is
/// `rm<token>`, built into a fresh store.
struct Unique {
    token: String,
    store: TestStore,
}

impl Unique {
    fn build() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let token = format!(
            "{}{}",
            std::process::id() % 100_000,
            char::from(b'a' + u8::try_from(N.fetch_add(1, Ordering::Relaxed) % 26).unwrap())
        );
        let dir = fixture_copy("minimal_tracer");
        let src = dir.path().join("program.bpf.c");
        let c = std::fs::read_to_string(&src)
            .unwrap()
            .replace("minimal_getpid", &format!("rp{token}"))
            .replace(
                "GADGET_TRACER_MAP(events,",
                &format!("GADGET_TRACER_MAP(rm{token},"),
            )
            .replace(
                "minimal, events, event",
                &format!("minimal, rm{token}, event"),
            )
            .replace("&events", &format!("&rm{token}"));
        std::fs::write(&src, c).unwrap();
        let store = TestStore::new();
        store.build(dir.path(), "uniq");
        Self { token, store }
    }

    fn spawn(&self, args: &[&str], stdout: Stdio) -> Child {
        self.store
            .ig()
            .args(["run", "uniq"])
            .args(args)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Names of BPF programs and maps of ours the kernel still has.
    fn in_kernel(&self) -> Vec<String> {
        let mut found = Vec::new();
        for kind in ["prog", "map"] {
            let out = Command::new("bpftool")
                .args(["-j", kind, "show"])
                .output()
                .unwrap();
            assert!(out.status.success(), "bpftool {kind} show");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            for o in v.as_array().unwrap() {
                if let Some(name) = o["name"].as_str()
                    && name.contains(&self.token)
                {
                    found.push(format!("{kind} {name} id {}", o["id"]));
                }
            }
        }
        found
    }

    /// Wait for the kernel to free ours (it does so after the last fd
    /// closes, asynchronously); panic naming what is left.
    fn assert_gone(&self, what: &str) {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.in_kernel();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < end,
                "{what}: still in the kernel: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_loaded(&self, child: &mut Child) {
        let end = Instant::now() + Duration::from_secs(20);
        while self
            .in_kernel()
            .iter()
            .filter(|n| n.starts_with("prog"))
            .count()
            == 0
        {
            if let Some(st) = child.try_wait().unwrap() {
                panic!("ig exited before loading: {st}");
            }
            assert!(Instant::now() < end, "ig did not load within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), sig) };
}

/// Wait for `child` at most `limit`; how long it took.
fn wait_within(child: &mut Child, limit: Duration, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what}: ig still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Entries under /sys/fs/bpf (ig never pins; nothing may appear).
fn pins() -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack = vec![PathBuf::from("/sys/fs/bpf")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            found.insert(p);
        }
    }
    found
}

fn store_files(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            found.insert(p);
        }
    }
    found
}

/// getpid() in a loop on one thread until dropped: far more events than
/// one reader can format.
struct Storm {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Storm {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                for _ in 0..1000 {
                    // SAFETY: getpid has no preconditions; glibc does not
                    // cache it, so each call is a system call.
                    unsafe { libc::syscall(libc::SYS_getpid) };
                }
                n += 1000;
            }
            n
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// stderr lines with the time they arrived.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<(Instant, String)> {
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    rx
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn every_signal_at_every_stage_leaves_nothing_behind() {
    require_kernel();
    let u = Unique::build();
    let pins_before = pins();
    let files_before = store_files(&u.store.path());
    let mut loaded_kills = 0;
    for (sig, name) in [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGKILL, "SIGKILL"),
    ] {
        // While reading the store, loading, attaching (the early delays
        // land there on a loaded machine), then surely attached, then in a
        // storm.
        for stage in [
            "0ms", "5ms", "15ms", "30ms", "60ms", "120ms", "250ms", "attached", "storm",
        ] {
            let what = format!("{name} at {stage}");
            let mut child = u.spawn(&["-o", "json"], Stdio::null());
            let storm = match stage {
                "attached" | "storm" => {
                    u.wait_loaded(&mut child);
                    loaded_kills += 1;
                    (stage == "storm").then(|| {
                        let s = Storm::start();
                        std::thread::sleep(Duration::from_millis(500));
                        s
                    })
                }
                ms => {
                    let ms: u64 = ms.trim_end_matches("ms").parse().unwrap();
                    std::thread::sleep(Duration::from_millis(ms));
                    None
                }
            };
            signal(&child, sig);
            let took = wait_within(&mut child, Duration::from_secs(5), &what);
            drop(storm);
            if sig != libc::SIGKILL && matches!(stage, "attached" | "storm") {
                assert!(took < Duration::from_secs(1), "{what}: took {took:?}");
                let status = child.wait().unwrap();
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
                assert!(status.success(), "{what}: {status} {err}");
            }
            u.assert_gone(&what);
        }
        // Right after, a new run loads, sees events and ends cleanly.
        let out = u
            .store
            .ig()
            .args(["run", "uniq", "-o", "json", "--timeout", "2"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "a run after {name}: {}",
            text(&out.stderr)
        );
        u.assert_gone(&format!("the run after {name}"));
    }
    assert_eq!(loaded_kills, 6);
    let new_pins: Vec<_> = pins().difference(&pins_before).cloned().collect();
    assert!(new_pins.is_empty(), "pins appeared: {new_pins:?}");
    assert_eq!(
        store_files(&u.store.path()),
        files_before,
        "ig run changed the store (a temp file?)"
    );
}

#[test]
fn a_storm_keeps_memory_bounded_reports_loss_every_second_and_sigint_stops_it() {
    require_kernel();
    let u = Unique::build();
    // A 4 KiB ring buffer: a getpid storm overflows it at once.
    let mut child = u.spawn(&["-o", "json", "--ringbuf-size", "4096"], Stdio::null());
    let lines = stderr_lines(&mut child);
    u.wait_loaded(&mut child);
    std::thread::sleep(Duration::from_millis(300));
    let rss_start = rss_kib(child.id());
    let storm = Storm::start();
    let storm_start = Instant::now();
    let mut rss_max = rss_start;
    while storm_start.elapsed() < Duration::from_secs(6) {
        rss_max = rss_max.max(rss_kib(child.id()));
        std::thread::sleep(Duration::from_millis(200));
    }
    let storm_end = Instant::now();
    signal(&child, libc::SIGINT);
    let took = wait_within(&mut child, Duration::from_secs(3), "SIGINT in a storm");
    drop(storm);
    assert!(
        took < Duration::from_secs(1),
        "SIGINT took {took:?} in a storm"
    );
    assert!(child.wait().unwrap().success());
    let got: Vec<(Instant, String)> = lines.iter().collect();
    let during: Vec<Instant> = got
        .iter()
        .filter(|(t, l)| *t > storm_start && *t <= storm_end && l.contains("events lost"))
        .map(|(t, _)| *t)
        .collect();
    let all: Vec<&str> = got.iter().map(|(_, l)| l.as_str()).collect();
    assert!(
        during.len() >= 4,
        "loss reported {} times in 6 s: {all:#?}",
        during.len()
    );
    let mut marks = vec![storm_start];
    marks.extend(&during);
    marks.push(storm_end);
    let gap = marks.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        gap < Duration::from_secs(3),
        "{gap:?} without a loss report: {all:#?}"
    );
    assert!(
        all.iter()
            .any(|l| l.contains("events lost during this run:")),
        "the total at the end: {all:#?}"
    );
    assert!(
        rss_max < rss_start + 16 * 1024,
        "RSS grew from {rss_start} KiB to {rss_max} KiB in the storm"
    );
    u.assert_gone("after the storm");
}

/// `ig run` in a storm with `stdout` as its output, whose reader never
/// reads (the caller keeps it open): memory stays bounded, loss is
/// reported, SIGINT still ends ig within 1 s with exit 0.
fn stopped_reader_case(u: &Unique, stdout: Stdio, what: &str) {
    let mut child = u.spawn(&["-o", "json"], stdout);
    let _unread = child.stdout.take();
    let lines = stderr_lines(&mut child);
    u.wait_loaded(&mut child);
    std::thread::sleep(Duration::from_millis(300));
    let rss_start = rss_kib(child.id());
    let storm = Storm::start();
    let start = Instant::now();
    let mut rss_max = rss_start;
    while start.elapsed() < Duration::from_secs(5) {
        rss_max = rss_max.max(rss_kib(child.id()));
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGINT while stdout has been full for seconds.
    signal(&child, libc::SIGINT);
    let took = wait_within(
        &mut child,
        Duration::from_secs(5),
        &format!("SIGINT with {what} blocked"),
    );
    drop(storm);
    assert!(
        took < Duration::from_secs(1),
        "SIGINT took {took:?} with {what} blocked"
    );
    let status = child.wait().unwrap();
    let all: Vec<String> = lines.iter().map(|(_, l)| l).collect();
    assert!(status.success(), "{what}: {status}: {all:#?}");
    // Output backlog (4 MiB) + the ring buffer's pages (4 MiB, mapped
    // twice) + printer buffers; a reader-sized leak would be 100s of MiB.
    assert!(
        rss_max < rss_start + 24 * 1024,
        "RSS grew from {rss_start} KiB to {rss_max} KiB with a stopped reader of {what}"
    );
    assert!(
        all.iter().any(|l| l.contains("events lost")),
        "what the stopped reader cost is reported: {all:#?}"
    );
    u.assert_gone(&format!("after the stopped reader of {what}"));
}

#[test]
fn a_stopped_reader_keeps_memory_bounded_and_sigint_still_stops_within_1s() {
    require_kernel();
    let u = Unique::build();
    // Our end of the pipe is never read: `ig run | sleep 100`.
    stopped_reader_case(&u, Stdio::piped(), "a pipe");
}

/// stdout a socket (a service manager's log socket, `ssh`, a supervisor)
/// whose peer stops reading. A socket cannot be reopened non-blocking
/// through /proc; ig sends with MSG_DONTWAIT instead. (Before, it wrote
/// blocking: SIGINT did nothing until the peer read.)
#[test]
fn a_stopped_socket_reader_keeps_memory_bounded_and_sigint_still_stops_within_1s() {
    require_kernel();
    let u = Unique::build();
    let (peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
    stopped_reader_case(
        &u,
        Stdio::from(std::os::fd::OwnedFd::from(ours)),
        "a socket",
    );
    drop(peer);
}

/// A pipe whose buffer holds one page, so a few KiB of output already
/// wait for the reader; (read end, write end for the child's stdout).
fn small_pipe() -> (std::fs::File, Stdio) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: shrinking the buffer of a pipe we just made.
    unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 4096) };
    // SAFETY: fresh descriptors from pipe2.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            Stdio::from(std::os::fd::OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

/// `ig run --timeout 2 | sleep 30` in a storm: the timeout ends the run
/// (before, ig waited for the reader until a signal); what the reader did
/// not take is dropped and counted.
#[test]
fn the_timeout_ends_the_run_when_the_reader_stopped() {
    require_kernel();
    let u = Unique::build();
    let storm = Storm::start();
    let (_unread, stdout) = small_pipe();
    let mut child = u.spawn(&["-o", "json", "--timeout", "2"], stdout);
    let lines = stderr_lines(&mut child);
    u.wait_loaded(&mut child);
    // From loaded: the timeout, the final drain (at most 250 ms) and the
    // output's grace (300 ms).
    let took = wait_within(
        &mut child,
        Duration::from_secs(10),
        "--timeout 2 with a stopped reader",
    );
    drop(storm);
    assert!(took < Duration::from_secs(3), "took {took:?} after loading");
    let status = child.wait().unwrap();
    let all: Vec<String> = lines.iter().map(|(_, l)| l).collect();
    assert!(status.success(), "{status}: {all:#?}");
    assert!(
        all.iter()
            .any(|l| l.contains("bytes of output not written: the reader did not take them")),
        "the dropped output is counted: {all:#?}"
    );
    u.assert_gone("after the timeout with a stopped reader");
}

/// A snapshot that finished waits for its reader like any filter
/// (`| less` reads a screen at a time), but not past `--timeout`.
#[test]
fn a_finished_snapshot_waits_for_its_reader_but_not_past_the_timeout() {
    require_kernel();
    let s = TestStore::new();
    s.build(
        &crate::common::repo().join("tests/fixtures/iter_tasks"),
        "iter_tasks",
    );

    // A reader that stops: the run ends at the timeout (3 s after it
    // started), the rest of the snapshot dropped and counted.
    let (_unread, stdout) = small_pipe();
    let mut child = s
        .ig()
        .args(["run", "iter_tasks", "-o", "json", "--timeout", "3"])
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let took = wait_within(
        &mut child,
        Duration::from_secs(10),
        "a finished snapshot, --timeout 3, a stopped reader",
    );
    let status = child.wait().unwrap();
    let err: Vec<String> = lines.iter().map(|(_, l)| l).collect();
    assert!(status.success(), "{err:#?}");
    assert!(
        took >= Duration::from_millis(2500),
        "took {took:?}: {err:#?}"
    );
    assert!(
        err.iter()
            .any(|l| l.contains("bytes of output not written")),
        "{err:#?}"
    );

    // A reader that comes back after 1.5 s, no timeout: it gets the whole
    // snapshot.
    let (mut reader, stdout) = small_pipe();
    let child = s
        .ig()
        .args(["run", "iter_tasks", "-o", "json"])
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut got = String::new();
    std::io::Read::read_to_string(&mut reader, &mut got).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("not written"), "{err}");
    assert!(got.len() > 4096, "{} bytes", got.len());
    for l in got.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

#[test]
fn head_1_in_a_storm_exits_0_quietly() {
    require_kernel();
    let u = Unique::build();
    let storm = Storm::start();
    let start = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' run uniq -o json --timeout 30 | head -1; echo \"status=${{PIPESTATUS[0]}}\"",
            crate::common::ig_bin()
        ))
        .env("IG_STORE", u.store.path())
        .output()
        .unwrap();
    drop(storm);
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with('{'), "{stdout}");
    assert!(
        stdout.contains("status=0"),
        "exit 0 on a closed pipe: {stdout}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    // Quietly: no error about the pipe (a loss warning from the storm
    // before head went away is information, not noise).
    let err = text(&out.stderr);
    assert!(
        !err.contains("error") && !err.contains("pipe") && !err.contains("panicked"),
        "{err}"
    );
    u.assert_gone("after head -1");
}
