//! Gadget tests: every gadget of `gadgets/` (but trace_exec and trace_open,
//! which `tests/kernel` covers) is built with the real `ig image build`,
//! run with the real `ig run NAME -o json` as root, fed a workload the test
//! makes itself, and checked for the exact events of that workload.
//!
//! Each test looks only at its own processes (by pid), its own ports or
//! its own names, so other activity on the host cannot make it flaky. The
//! tests of this binary run in parallel threads: ports are chosen by the
//! kernel, names carry the pid and the test's name.
//!
//! A tracer is started with `-v`, and the workload starts once ig says on
//! stderr that the gadget is `started` (every program attached), so one
//! workload suffices and the events can be counted exactly.

mod btf_subset;
#[path = "../common/mod.rs"]
mod common;
mod export;
mod metrics;
mod operators;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{TestStore, all_gadgets_store, text};
use serde_json::Value;

/// Fail loudly, never skip: these tests exist to prove the gadgets.
fn require_kernel() {
    assert!(
        ig::bpf::privileges::check().is_ok(),
        "gadget tests need root or CAP_BPF+CAP_PERFMON (run them as root, as .ci/run does)"
    );
    assert!(
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "gadget tests need a kernel with BTF (/sys/kernel/btf/vmlinux)"
    );
    assert!(
        Path::new("/sys/kernel/tracing/events").exists(),
        "gadget tests need tracefs at /sys/kernel/tracing"
    );
}

fn store() -> &'static TestStore {
    require_kernel();
    all_gadgets_store()
}

fn me() -> u64 {
    u64::from(std::process::id())
}

fn gettid() -> u64 {
    // SAFETY: gettid has no preconditions.
    u64::try_from(unsafe { libc::gettid() }).unwrap()
}

/// A running `ig run -v ...`: stdout lines and stderr lines, each read on
/// a thread of its own.
struct Running {
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
    stderr: Vec<String>,
    /// Every stdout line parsed as JSON so far.
    values: Vec<Value>,
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    /// `ig run -v -o json ARGS` (`-o json` unless ARGS has `-o`), returned once the gadget is started (all
    /// its programs attached), or a panic after 20 s.
    fn start(args: &[&str]) -> Self {
        Self::start_in(store(), args)
    }

    /// [`Running::start`] with the gadgets of `store`.
    fn start_in(store: &TestStore, args: &[&str]) -> Self {
        let mut child = store
            .ig()
            .args(["run", "-v"])
            .args(if args.contains(&"-o") {
                &[][..]
            } else {
                &["-o", "json"][..]
            })
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = lines_of(child.stdout.take().unwrap());
        let err = lines_of(child.stderr.take().unwrap());
        let mut r = Self {
            child,
            out,
            err,
            stderr: Vec::new(),
            values: Vec::new(),
        };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            match r.err.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let started = l.starts_with("debug: ") && l.ends_with(" started");
                    r.stderr.push(l);
                    if started {
                        return r;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = r.child.wait().unwrap();
                    panic!(
                        "ig {args:?} exited before starting ({status}):\n{}",
                        r.stderr.join("\n")
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= end {
                let _ = r.child.kill();
                panic!(
                    "ig {args:?} not started within 20 s:\n{}",
                    r.stderr.join("\n")
                );
            }
        }
    }

    fn take_output(&mut self) {
        while let Ok(l) = self.out.try_recv() {
            let v = serde_json::from_str(&l)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"));
            self.values.push(v);
        }
        while let Ok(l) = self.err.try_recv() {
            self.stderr.push(l);
        }
    }

    /// Read output until `done(every value so far)`, or panic after
    /// `limit` with what was seen.
    fn wait_until(&mut self, limit: Duration, mut done: impl FnMut(&[Value]) -> bool) {
        let end = Instant::now() + limit;
        loop {
            self.take_output();
            if done(&self.values) {
                return;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let last: Vec<String> = self
                    .values
                    .iter()
                    .rev()
                    .take(5)
                    .map(|v| {
                        let s = v.to_string();
                        s.chars().take(2000).collect()
                    })
                    .collect();
                panic!(
                    "condition not met within {limit:?}; {} values, the last ones:\n{}\nstderr:\n{}",
                    self.values.len(),
                    last.join("\n"),
                    self.stderr.join("\n")
                );
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "ig exited early: {:?}\n{}",
                self.child.wait(),
                self.stderr.join("\n")
            );
            if let Ok(l) = self.out.recv_timeout(Duration::from_millis(50)) {
                let v = serde_json::from_str(&l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"));
                self.values.push(v);
            }
        }
    }

    /// SIGINT, wait (10 s at most), read the rest: every value and stderr.
    /// Asserts exit 0.
    fn stop(mut self) -> (Vec<Value>, String) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let end = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                panic!("ig did not stop within 10 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Both reader threads end at EOF.
        while let Ok(l) = self.out.recv_timeout(Duration::from_secs(5)) {
            let v = serde_json::from_str(&l)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"));
            self.values.push(v);
        }
        while let Ok(l) = self.err.recv_timeout(Duration::from_secs(5)) {
            self.stderr.push(l);
        }
        let stderr = self.stderr.join("\n");
        assert!(status.success(), "ig exit {status}:\n{stderr}");
        (std::mem::take(&mut self.values), stderr)
    }
}

/// A test that fails leaves no `ig` behind.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ig ARGS` to its end, killed (and failed) after 20 s.
fn run_bounded(args: &[&str]) -> Output {
    common::output_bounded(store().ig().args(args), Duration::from_secs(20))
}

/// `addr:port` of a JSON l4 endpoint (`{addr, port, ...}`), as the table's
/// `endpoint` column shows an IPv4 one.
fn endpoint(v: &Value) -> String {
    format!("{}:{}", v["addr"].as_str().unwrap_or("?"), v["port"])
}

fn pid_of(v: &Value) -> u64 {
    v["proc"]["pid"].as_u64().unwrap_or(0)
}

/// The rows of every JSON array (one per interval of a topper) in `values`.
fn rows(values: &[Value]) -> impl Iterator<Item = &Value> {
    values
        .iter()
        .flat_map(|v| v.as_array().into_iter().flatten())
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned number: {v}"))
}

// ---------------------------------------------------------------- tracers

#[test]
fn trace_tcp_reports_our_connect_accept_and_closes() {
    let mut ig = Running::start(&["trace_tcp"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let lport = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", lport)).unwrap();
    let cport = client.local_addr().unwrap().port();
    let (server, _) = listener.accept().unwrap();
    let server_fd = u64::try_from(server.as_raw_fd()).unwrap();
    drop(client);
    drop(server);
    let ours = |v: &Value| {
        pid_of(v) == me()
            && [&v["src"]["port"], &v["dst"]["port"]]
                .iter()
                .any(|p| **p == lport)
    };
    ig.wait_until(Duration::from_secs(10), |vs| {
        vs.iter().filter(|v| ours(v)).count() >= 4
    });
    let (values, _) = ig.stop();
    let evs: Vec<&Value> = values.iter().filter(|v| ours(v)).collect();
    let show = || {
        evs.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let cli = format!("127.0.0.1:{cport}");
    let srv = format!("127.0.0.1:{lport}");
    // (type, type_raw, src, dst) of each event, in order of kind.
    let mut got: Vec<(String, u64, String, String)> = evs
        .iter()
        .map(|v| {
            assert_eq!(v["error_raw"], 0, "{v}");
            assert_eq!(v["error"], "", "{v}");
            assert_eq!(v["src"]["proto"], "TCP", "{v}");
            assert_eq!(v["src"]["version"], 4, "{v}");
            (
                v["type"].as_str().unwrap_or("").to_owned(),
                u(&v["type_raw"]),
                endpoint(&v["src"]),
                endpoint(&v["dst"]),
            )
        })
        .collect();
    got.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
    let mut want = vec![
        ("connect".to_owned(), 0, cli.clone(), srv.clone()),
        ("accept".to_owned(), 1, srv.clone(), cli.clone()),
        ("close".to_owned(), 2, cli.clone(), srv.clone()),
        ("close".to_owned(), 2, srv.clone(), cli.clone()),
    ];
    want.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
    assert_eq!(got, want, "our events:\n{}", show());
    // The accept event has the new socket's fd, and its thread is ours.
    let accept = evs.iter().find(|v| v["type_raw"] == 1).unwrap();
    assert_eq!(u(&accept["fd"]), server_fd, "{accept}");
    assert_eq!(u(&accept["proc"]["tid"]), gettid(), "{accept}");
}

#[test]
fn trace_tcp_table_shows_addr_port_endpoints() {
    let mut ig = Running::start(&["trace_tcp", "--connect-only", "-o", "columns"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let lport = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", lport)).unwrap();
    let cport = client.local_addr().unwrap().port();
    drop(client);
    // Columns output is not JSON: read raw lines.
    let want = (format!("127.0.0.1:{cport}"), format!("127.0.0.1:{lport}"));
    let end = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let row = loop {
        assert!(
            Instant::now() < end,
            "no row with {want:?} in:\n{}",
            seen.join("\n")
        );
        if let Ok(l) = ig.out.recv_timeout(Duration::from_millis(50)) {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.contains(&want.0.as_str()) && cols.contains(&want.1.as_str()) {
                break l;
            }
            seen.push(l);
        }
    };
    let header = seen.first().cloned().unwrap_or_default();
    assert!(
        header.split_whitespace().any(|h| h == "SRC") && header.contains("DST"),
        "header {header:?}"
    );
    let cols: Vec<&str> = row.split_whitespace().collect();
    let src = cols.iter().position(|c| *c == want.0).unwrap();
    let dst = cols.iter().position(|c| *c == want.1).unwrap();
    assert!(src < dst, "src before dst: {row}");
    assert!(cols.contains(&"connect"), "{row}");
    ig.out = mpsc::channel().1;
    let _ = ig.stop();
}

#[test]
fn trace_signal_reports_our_sigusr1_to_our_child() {
    let mut ig = Running::start(&["trace_signal", "--signal", "10"]);
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let target = u64::from(child.id());
    // spawn() returns when exec has closed our CLOEXEC pipe, which can be
    // before the kernel renames the task: wait for the new comm.
    let end = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{target}/comm")).unwrap_or_default() != "sleep\n" {
        assert!(Instant::now() < end, "the child never became sleep");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: signalling our own child.
    let rc = unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGUSR1) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGUSR1)
    );
    let ours = |v: &Value| v["tpid"] == target;
    ig.wait_until(Duration::from_secs(10), |vs| vs.iter().any(ours));
    let (values, _) = ig.stop();
    // --signal 10 is applied in the kernel: only SIGUSR1 is reported.
    for v in &values {
        assert_eq!(v["sig_raw"], 10, "only SIGUSR1 with --signal 10: {v}");
    }
    let evs: Vec<&Value> = values.iter().filter(|v| ours(v)).collect();
    assert_eq!(evs.len(), 1, "{evs:?}");
    let v = evs[0];
    assert_eq!(v["sig"], "SIGUSR1", "{v}");
    assert_eq!(u(&v["tpid"]), target, "{v}");
    assert_eq!(u(&v["ttid"]), target, "{v}");
    assert_eq!(v["tcomm"], "sleep", "{v}");
    // The sender is this thread of ours; kill(2) gives SI_USER to the group.
    assert_eq!(pid_of(v), me(), "{v}");
    assert_eq!(u(&v["proc"]["tid"]), gettid(), "{v}");
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["group"], true, "{v}");
    assert_eq!(v["from_interrupt"], false, "{v}");
    assert_eq!(v["result_raw"], 0, "{v}");
    assert_eq!(v["result"], "delivered", "{v}");
    assert_eq!(v["error_raw"], 0, "{v}");
}

/// A port nobody uses right now (for TCP and UDP on 127.0.0.1), for a test
/// that must pass an explicit port to bind(2).
fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

#[test]
fn trace_bind_reports_our_tcp_and_udp_binds_with_the_port() {
    let port = free_port();
    let ps = port.to_string();
    let mut ig = Running::start(&["trace_bind", "--port", &ps]);
    let tcp = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let ours = |v: &Value| pid_of(v) == me();
    ig.wait_until(Duration::from_secs(10), |vs| {
        vs.iter().filter(|v| ours(v)).count() >= 2
    });
    let (values, _) = ig.stop();
    // --port is applied in the kernel.
    for v in &values {
        assert_eq!(v["addr"]["port"], port, "only port {port}: {v}");
    }
    let mut evs: Vec<&Value> = values.iter().filter(|v| ours(v)).collect();
    evs.sort_by_key(|v| v["addr"]["proto_raw"].as_u64());
    assert_eq!(evs.len(), 2, "{evs:?}");
    for (v, proto, fd) in [
        (evs[0], "TCP", tcp.as_raw_fd()),
        (evs[1], "UDP", udp.as_raw_fd()),
    ] {
        assert_eq!(endpoint(&v["addr"]), format!("127.0.0.1:{port}"), "{v}");
        assert_eq!(v["addr"]["proto"], proto, "{v}");
        assert_eq!(v["addr"]["version"], 4, "{v}");
        assert_eq!(v["fd"], fd, "{v}");
        assert_eq!(v["error_raw"], 0, "{v}");
        assert_eq!(v["bound_dev_if"], 0, "{v}");
        assert_eq!(u(&v["proc"]["tid"]), gettid(), "{v}");
    }
}

/// Unmounts (lazily) on drop, so a failed test leaves no mount behind.
struct Mounted(CString);

impl Drop for Mounted {
    fn drop(&mut self) {
        // SAFETY: a valid C string; failure (already unmounted) is fine.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn trace_mount_reports_our_tmpfs_mount_and_umount() {
    let dir = tempfile::Builder::new()
        .prefix("ig-mnt-")
        .tempdir()
        .unwrap();
    let target = dir.path().to_str().unwrap().to_owned();
    let source = format!("igsrc{}", me());
    let (c_src, c_tgt) = (
        CString::new(source.clone()).unwrap(),
        CString::new(target.clone()).unwrap(),
    );
    let (c_fs, c_data) = (c"tmpfs", c"size=1m,mode=700");
    let mut ig = Running::start(&["trace_mount"]);
    // SAFETY: valid C strings.
    let rc = unsafe {
        libc::mount(
            c_src.as_ptr(),
            c_tgt.as_ptr(),
            c_fs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c_data.as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "mount: {}", std::io::Error::last_os_error());
    let guard = Mounted(c_tgt.clone());
    // SAFETY: a valid C string.
    let rc = unsafe { libc::umount2(c_tgt.as_ptr(), 0) };
    assert_eq!(rc, 0, "umount: {}", std::io::Error::last_os_error());
    std::mem::forget(guard);
    let ours = |v: &Value| pid_of(v) == me() && v["target"] == target.as_str();
    ig.wait_until(Duration::from_secs(10), |vs| {
        vs.iter().filter(|v| ours(v)).count() >= 2
    });
    let (values, _) = ig.stop();
    let evs: Vec<&Value> = values.iter().filter(|v| ours(v)).collect();
    assert_eq!(evs.len(), 2, "{evs:?}");
    let (m, um) = (evs[0], evs[1]);
    assert_eq!(m["op"], "mount", "{m}");
    assert_eq!(m["op_raw"], 0, "{m}");
    assert_eq!(m["fs"], "tmpfs", "{m}");
    assert_eq!(m["src"], source.as_str(), "{m}");
    assert_eq!(m["data"], "size=1m,mode=700", "{m}");
    assert_eq!(m["flags_raw"], libc::MS_NOSUID | libc::MS_NODEV, "{m}");
    assert_eq!(m["flags"], "MS_NOSUID|MS_NODEV", "{m}");
    assert_eq!(m["error_raw"], 0, "{m}");
    assert_eq!(um["op"], "umount", "{um}");
    assert_eq!(um["op_raw"], 1, "{um}");
    assert_eq!(um["error_raw"], 0, "{um}");
    for v in [m, um] {
        assert_eq!(u(&v["proc"]["tid"]), gettid(), "{v}");
    }
}

/// A memory cgroup limited to 64 MiB, removed on drop.
struct MemCgroup {
    dir: std::path::PathBuf,
    /// The file a process writes "0" to, to move itself in.
    procs: CString,
}

impl MemCgroup {
    /// Cgroup v1 memory controller, or v2 with `memory` enabled at the
    /// root; `Err(why)` when the host offers neither.
    fn new(name: &str) -> Result<Self, String> {
        let limit = 64 * 1024 * 1024;
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let v2 = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(Path::new)
            .find(|p| {
                std::fs::read_to_string(p.join("cgroup.subtree_control"))
                    .is_ok_and(|c| c.split_whitespace().any(|w| w == "memory"))
            });
        let (dir, limit_file) = if v1.join("memory.limit_in_bytes").exists() {
            (v1.join(name), "memory.limit_in_bytes")
        } else if let Some(root) = v2 {
            (root.join(name), "memory.max")
        } else {
            return Err(
                "no cgroup v1 memory controller at /sys/fs/cgroup/memory and no cgroup v2 \
                 hierarchy with the memory controller enabled"
                    .into(),
            );
        };
        std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cg = Self {
            procs: CString::new(dir.join("cgroup.procs").to_str().unwrap()).unwrap(),
            dir,
        };
        std::fs::write(cg.dir.join(limit_file), limit.to_string())
            .map_err(|e| format!("{limit_file}: {e}"))?;
        // No swap to escape to, where the kernel offers the knob.
        for f in ["memory.memsw.limit_in_bytes", "memory.swap.max"] {
            let v = if f == "memory.swap.max" {
                "0".to_owned()
            } else {
                limit.to_string()
            };
            let _ = std::fs::write(cg.dir.join(f), v);
        }
        Ok(cg)
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // The victim may take a moment to leave the cgroup.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn trace_oomkill_reports_our_child_killed_in_a_64m_cgroup() {
    require_kernel();
    let cg = match MemCgroup::new(&format!("ig-test-oom-{}", me())) {
        Ok(cg) => cg,
        Err(why) => {
            // The one documented skip: nothing here can trigger the OOM killer.
            #[allow(clippy::print_stderr, reason = "the test says why it skips")]
            {
                eprintln!("SKIP trace_oomkill: {why}");
            }
            return;
        }
    };
    let mut ig = Running::start(&["trace_oomkill"]);
    let procs = cg.procs.as_ptr();
    // SAFETY: the child only makes system calls and touches memory it
    // mapped, then _exits: safe in a multithreaded parent.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, c"igoomvictim".as_ptr());
            let fd = libc::open(procs, libc::O_WRONLY);
            if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(3);
            }
            libc::close(fd);
            let len = 512 * 1024 * 1024;
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                libc::_exit(4);
            }
            let p = p.cast::<u8>();
            let mut off = 0;
            while off < len {
                std::ptr::write_volatile(p.add(off), 1);
                off += 4096;
            }
            libc::_exit(5);
        }
    }
    let child = u64::try_from(pid).unwrap();
    // Reap the child, 20 s at most.
    let end = Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    loop {
        // SAFETY: waiting for the child just forked.
        let r = unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if Instant::now() >= end {
            // SAFETY: our child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &raw mut status, 0);
            }
            panic!("the child was not OOM-killed within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "the child was killed by SIGKILL (status {status:#x}; exit 3: no cgroup.procs, 4: mmap, 5: not killed)"
    );
    let ours = |v: &Value| pid_of(v) == child;
    ig.wait_until(Duration::from_secs(10), |vs| vs.iter().any(ours));
    let (values, _) = ig.stop();
    drop(cg);
    let evs: Vec<&Value> = values.iter().filter(|v| ours(v)).collect();
    assert_eq!(evs.len(), 1, "{evs:?}");
    let v = evs[0];
    // The victim and the task whose allocation triggered the killer are
    // both our child.
    assert_eq!(v["proc"]["comm"], "igoomvictim", "{v}");
    assert_eq!(u(&v["proc"]["parent"]["pid"]), me(), "{v}");
    assert_eq!(u(&v["fpid"]), child, "{v}");
    assert_eq!(u(&v["ftid"]), child, "{v}");
    assert_eq!(v["fcomm"], "igoomvictim", "{v}");
    assert_eq!(v["fuid"], 0, "{v}");
    assert_eq!(v["oom_score_adj"], 0, "{v}");
    // It was killed at its 64 MiB limit: at least half of that is
    // resident anonymous memory (4 KiB pages; the count also has the pages
    // it shares with us since fork, which are charged to our cgroup).
    let anon = u(&v["anon_rss"]);
    assert!(anon >= 8192, "anon_rss {anon} pages: {v}");
    assert!(u(&v["total_vm"]) >= 512 * 256, "the 512 MiB mapping: {v}");
}

/// A DNS message: header, one question (`name`, type A, class IN), and
/// for a response one A record 10.1.2.3 pointing back at the question.
fn dns_message(id: u16, name: &str, response: Option<u8>) -> Vec<u8> {
    let mut m = Vec::new();
    let flags: u16 = match response {
        None => 0x0100,                           // RD
        Some(rcode) => 0x8180 | u16::from(rcode), // QR RD RA
    };
    let answers: u16 = u16::from(response == Some(0));
    for w in [id, flags, 1, answers, 0, 0] {
        m.extend_from_slice(&w.to_be_bytes());
    }
    for label in name.split('.') {
        m.push(u8::try_from(label.len()).unwrap());
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&[0, 1, 0, 1]);
    if answers == 1 {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 1, 2, 3]);
    }
    m
}

#[test]
fn trace_dns_reports_our_queries_and_answers() {
    // A tiny DNS responder on 127.0.0.1 at a port the kernel chose; the
    // gadget watches that port.
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sport = server.local_addr().unwrap().port();
    let ps = sport.to_string();
    let mut ig = Running::start(&["trace_dns", "--port", &ps]);
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let cport = client.local_addr().unwrap().port();
    let ok_name = format!("ok-{}.igtest.example", me());
    let nx_name = format!("nx-{}.igtest.example", me());
    let id_base = u16::try_from(me() % 30000).unwrap();
    let queries = [(id_base, &ok_name, 0u8), (id_base + 1, &nx_name, 3u8)];
    for (id, name, rcode) in queries {
        client
            .send_to(&dns_message(id, name, None), ("127.0.0.1", sport))
            .unwrap();
        let mut buf = [0u8; 512];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], dns_message(id, name, None).as_slice());
        server
            .send_to(&dns_message(id, name, Some(rcode)), from)
            .unwrap();
        client.recv_from(&mut buf).unwrap();
    }
    let ours = |v: &Value| v["name"] == ok_name.as_str() || v["name"] == nx_name.as_str();
    ig.wait_until(Duration::from_secs(10), |vs| {
        vs.iter().filter(|v| ours(v)).count() >= 8
    });
    let (values, _) = ig.stop();
    let evs: Vec<&Value> = values.iter().filter(|v| ours(v)).collect();
    assert_eq!(evs.len(), 8, "{evs:?}");
    let cli = format!("127.0.0.1:{cport}");
    let srv = format!("127.0.0.1:{sport}");
    for (i, (id, name, rcode)) in queries.into_iter().enumerate() {
        // On loopback each packet passes twice: leaving, then arriving.
        let [q_out, q, r_out, r] = [0, 1, 2, 3].map(|k| evs[4 * i + k]);
        for (out, inn) in [(q_out, q), (r_out, r)] {
            assert_eq!(out["pkt_type"], "OUTGOING", "{out}");
            assert_eq!(out["id"], inn["id"], "{out}\n{inn}");
            assert_eq!(out["src"], inn["src"], "{out}\n{inn}");
            assert_eq!(out["latency_ns_raw"], 0, "{out}");
        }
        // Every copy's local end is a socket of ours (client and server
        // alike), found by the socket enricher.
        for v in [q_out, q, r_out, r] {
            assert_eq!(v["proc"]["pid"], me(), "{v}");
        }
        for v in [q, r] {
            assert_eq!(v["id"], id, "{v}");
            assert_eq!(v["name"], name.as_str(), "{v}");
            assert_eq!(v["qtype"], "A", "{v}");
            assert_eq!(v["qtype_raw"], 1, "{v}");
            assert_eq!(v["rd"], true, "{v}");
            assert_eq!(v["tc"], false, "{v}");
            assert_eq!(v["ifindex"], 1, "loopback: {v}");
            assert_eq!(v["pkt_type"], "HOST", "{v}");
            assert_eq!(v["nameserver"]["addr"], "127.0.0.1", "{v}");
            assert_eq!(v["src"]["proto"], "UDP", "{v}");
        }
        assert_eq!(q["qr"], "Q", "{q}");
        assert_eq!(q["qr_raw"], 0, "{q}");
        assert_eq!(q["rcode"], "Success", "{q}");
        assert_eq!(q["num_answers"], 0, "{q}");
        assert_eq!(q["ra"], false, "{q}");
        assert_eq!(q["latency_ns_raw"], 0, "{q}");
        assert_eq!(endpoint(&q["src"]), cli, "{q}");
        assert_eq!(endpoint(&q["dst"]), srv, "{q}");
        assert_eq!(r["qr"], "R", "{r}");
        assert_eq!(r["qr_raw"], 1, "{r}");
        assert_eq!(r["rcode_raw"], rcode, "{r}");
        let rname = if rcode == 0 { "Success" } else { "NameError" };
        assert_eq!(r["rcode"], rname, "{r}");
        assert_eq!(r["num_answers"], u64::from(rcode == 0), "{r}");
        assert_eq!(r["ra"], true, "{r}");
        assert_eq!(endpoint(&r["src"]), srv, "{r}");
        assert_eq!(endpoint(&r["dst"]), cli, "{r}");
        // Paired with its query: the latency is positive and below the
        // test's own duration.
        let lat = u(&r["latency_ns_raw"]);
        assert!(lat > 0 && lat < 10_000_000_000, "latency {lat}: {r}");
        assert!(u(&r["timestamp_raw"]) >= u(&q["timestamp_raw"]), "{q}\n{r}");
    }
}

/// A query made by another process (busybox's nslookup) is attributed to
/// it: the copy leaving through loopback by its source port, the response
/// arriving by its destination port, both found by the socket enricher in
/// the namespace the dispatcher wrote. The server's copies are ours.
#[test]
fn trace_dns_attributes_a_query_to_the_process_that_sent_it() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sport = server.local_addr().unwrap().port();
    let ps = sport.to_string();
    let mut ig = Running::start(&["trace_dns", "--port", &ps]);
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let name = format!("who-{}.igtest.example", me());
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("this test needs busybox-static (cargo xtask setup installs it)");
    let mut client = Command::new(busybox)
        .args(["nslookup", "-type=a", &name, &format!("127.0.0.1:{sport}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cpid = u64::from(client.id());
    let mut buf = [0u8; 512];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    // Answer with the query's id and question.
    let mut answer = buf[..n].to_vec();
    answer[2] |= 0x80;
    server.send_to(&answer, from).unwrap();
    let _ = client.wait();
    let ours = |v: &Value| v["name"] == name.as_str();
    ig.wait_until(Duration::from_secs(10), |vs| {
        vs.iter().filter(|v| ours(v)).count() >= 4
    });
    let (values, _) = ig.stop();
    let evs: Vec<&Value> = values.iter().filter(|v| ours(v)).collect();
    let find = |qr: &str, pkt: &str| {
        *evs.iter()
            .find(|v| v["qr"] == qr && v["pkt_type"] == pkt)
            .unwrap_or_else(|| panic!("no {qr} {pkt} in {evs:?}"))
    };
    for v in [find("Q", "OUTGOING"), find("R", "HOST")] {
        assert_eq!(v["proc"]["pid"], cpid, "the client: {v}");
        assert_eq!(v["proc"]["comm"], "busybox", "{v}");
        assert_eq!(v["proc"]["parent"]["pid"], me(), "{v}");
    }
    for v in [find("Q", "HOST"), find("R", "OUTGOING")] {
        assert_eq!(v["proc"]["pid"], me(), "the server: {v}");
    }
    assert!(u(&find("R", "HOST")["latency_ns_raw"]) > 0, "{evs:?}");
}

// ----------------------------------------------------------- snapshotters

#[test]
fn snapshot_process_lists_our_process_and_threads() {
    let out = run_bounded(&["run", "snapshot_process", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one JSON array: {stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let all = v.as_array().unwrap();
    // This gadget's process fields are at the top level (no `proc.`).
    let mine: Vec<&Value> = all.iter().filter(|e| e["pid"] == me()).collect();
    assert_eq!(mine.len(), 1, "one row per process: {mine:?}");
    let e = mine[0];
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(e["comm"], comm.trim_end(), "{e}");
    assert_eq!(u(&e["tid"]), me(), "the main thread: {e}");
    // SAFETY: getppid has no preconditions.
    let ppid = u64::try_from(unsafe { libc::getppid() }).unwrap();
    assert_eq!(u(&e["parent"]["pid"]), ppid, "{e}");
    let pcomm = std::fs::read_to_string(format!("/proc/{ppid}/comm")).unwrap();
    assert_eq!(e["parent"]["comm"], pcomm.trim_end(), "{e}");
    assert_eq!(e["creds"]["uid"], 0, "{e}");
    assert_eq!(e["creds"]["user"], "root", "{e}");
    let mntns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_eq!(
        format!("mnt:[{}]", e["mntns_id"]),
        mntns.to_str().unwrap(),
        "{e}"
    );

    // With --threads, this thread of ours is listed too.
    let out = run_bounded(&["run", "snapshot_process", "-o", "json", "--threads"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let tid = gettid();
    let t = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["tid"] == tid)
        .unwrap_or_else(|| panic!("thread {tid} in --threads output"));
    assert_eq!(t["pid"], me(), "{t}");
    assert_eq!(t["parent"]["pid"], ppid, "{t}");
}

fn inode_of_fd(fd: i32) -> u64 {
    std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .unwrap()
        .ino()
}

#[test]
fn snapshot_socket_lists_our_listener_and_udp_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tport = listener.local_addr().unwrap().port();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uport = udp.local_addr().unwrap().port();
    let out = run_bounded(&["run", "snapshot_socket", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one JSON array");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let find = |proto: &str, port: u16| -> Vec<&Value> {
        v.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["src"]["proto"] == proto && e["src"]["port"] == port)
            .collect()
    };
    let t = find("TCP", tport);
    assert_eq!(t.len(), 1, "{t:?}");
    let t = t[0];
    assert_eq!(endpoint(&t["src"]), format!("127.0.0.1:{tport}"), "{t}");
    assert_eq!(endpoint(&t["dst"]), "0.0.0.0:0", "{t}");
    assert_eq!(t["state"], "LISTEN", "{t}");
    assert_eq!(t["state_raw"], 10, "{t}");
    assert_eq!(t["uid"], 0, "{t}");
    assert_eq!(u(&t["ino"]), inode_of_fd(listener.as_raw_fd()), "{t}");
    let netns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(
        format!("net:[{}]", t["netns_id"]),
        netns.to_str().unwrap(),
        "{t}"
    );
    let d = find("UDP", uport);
    assert_eq!(d.len(), 1, "{d:?}");
    let d = d[0];
    assert_eq!(endpoint(&d["src"]), format!("127.0.0.1:{uport}"), "{d}");
    assert_eq!(d["state"], "CLOSE", "an unconnected UDP socket: {d}");
    assert_eq!(u(&d["ino"]), inode_of_fd(udp.as_raw_fd()), "{d}");
}

// ---------------------------------------------------------------- toppers

#[test]
fn top_file_counts_our_writes_and_reads_of_one_file() {
    let dir = tempfile::Builder::new()
        .prefix("ig-topfile-")
        .tempdir()
        .unwrap();
    let path = dir.path().join(format!("data-{}", me()));
    let path_s = path.to_str().unwrap().to_owned();
    let mut ig = Running::start(&["top_file", "--map-fetch-interval", "500ms"]);
    // Three writes of known sizes, then one read of all of it.
    let sizes = [10_000usize, 20_000, 3_456];
    let total: usize = sizes.iter().sum();
    let mut f = std::fs::File::create(&path).unwrap();
    for n in sizes {
        // write_all: a regular file takes each in one call.
        f.write_all(&vec![b'x'; n]).unwrap();
    }
    drop(f);
    let mut buf = vec![0u8; total + 1];
    let mut f = std::fs::File::open(&path).unwrap();
    assert_eq!(f.read(&mut buf).unwrap(), total);
    drop(f);
    let ino = std::fs::metadata(&path).unwrap().ino();
    let ours = |r: &Value| pid_of(r) == me() && r["file"] == path_s.as_str();
    let sum = |vs: &[Value], field: &str| -> u64 {
        rows(vs).filter(|r| ours(r)).map(|r| u(&r[field])).sum()
    };
    ig.wait_until(Duration::from_secs(10), |vs| {
        sum(vs, "wbytes") >= total as u64 && sum(vs, "rbytes") >= total as u64
    });
    let (values, _) = ig.stop();
    // Summed over the intervals (each fetch empties the map): exact.
    assert_eq!(sum(&values, "wbytes"), total as u64);
    assert_eq!(sum(&values, "writes"), sizes.len() as u64);
    assert_eq!(sum(&values, "rbytes"), total as u64);
    assert_eq!(sum(&values, "reads"), 1);
    for r in rows(&values).filter(|r| ours(r)) {
        assert_eq!(u(&r["inode"]), ino, "{r}");
        assert_eq!(r["t"], "R", "{r}");
        assert_eq!(u(&r["proc"]["tid"]), gettid(), "{r}");
    }
    // One array per interval.
    assert!(values.iter().all(Value::is_array));
}

#[test]
fn top_tcp_counts_bytes_sent_and_received_on_our_connection() {
    let mut ig = Running::start(&["top_tcp", "--map-fetch-interval", "500ms"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let lport = listener.local_addr().unwrap().port();
    let mut client = TcpStream::connect(("127.0.0.1", lport)).unwrap();
    let cport = client.local_addr().unwrap().port();
    let (mut server, _) = listener.accept().unwrap();
    let (up, down) = (100_000usize, 4_321usize);
    let writer = std::thread::spawn(move || {
        client.write_all(&vec![b'u'; up]).unwrap();
        let mut b = vec![0u8; down];
        client.read_exact(&mut b).unwrap();
        client
    });
    let mut b = vec![0u8; up];
    server.read_exact(&mut b).unwrap();
    server.write_all(&vec![b'd'; down]).unwrap();
    let client = writer.join().unwrap();
    // (sent, received) per (src port, dst port) of ours.
    let totals = |vs: &[Value]| -> BTreeMap<(u64, u64), (u64, u64)> {
        let mut m = BTreeMap::new();
        for r in rows(vs).filter(|r| pid_of(r) == me()) {
            let k = (u(&r["src"]["port"]), u(&r["dst"]["port"]));
            if k.0 != u64::from(lport) && k.1 != u64::from(lport) {
                continue;
            }
            let e: &mut (u64, u64) = m.entry(k).or_default();
            e.0 += u(&r["sent"]);
            e.1 += u(&r["received"]);
        }
        m
    };
    let (c, s) = (
        (u64::from(cport), u64::from(lport)),
        (u64::from(lport), u64::from(cport)),
    );
    let want: BTreeMap<_, _> =
        [(c, (up as u64, down as u64)), (s, (down as u64, up as u64))].into();
    ig.wait_until(Duration::from_secs(10), |vs| totals(vs) == want);
    let (values, _) = ig.stop();
    assert_eq!(totals(&values), want);
    for r in rows(&values).filter(|r| pid_of(r) == me() && r["src"]["port"] == cport) {
        assert_eq!(endpoint(&r["src"]), format!("127.0.0.1:{cport}"), "{r}");
        assert_eq!(endpoint(&r["dst"]), format!("127.0.0.1:{lport}"), "{r}");
        assert_eq!(r["src"]["proto"], "TCP", "{r}");
    }
    drop((client, server));
}

// --------------------------------------------------------------- profiler

/// A forked child named `name` that spins on the CPU (`busy`) or sleeps
/// in `pause()`, killed on drop.
pub(crate) struct Forked(i32);

impl Forked {
    fn start(name: &'static std::ffi::CStr, busy: bool) -> Self {
        // The store first: building it runs `ig image build` with pipes,
        // and no child may be forked while another thread builds it.
        let _ = store();
        // SAFETY: the child only makes system calls until killed.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // A fork does not close close-on-exec descriptors: drop every
            // descriptor the test threads had open (pipes of their children
            // among them), or a reader waiting for the end of such a pipe
            // would wait as long as this child lives.
            // SAFETY: raw system calls, no Rust runtime state touched.
            unsafe {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                libc::prctl(libc::PR_SET_NAME, name.as_ptr());
            }
            let mut x: u64 = 0;
            loop {
                if busy {
                    x = std::hint::black_box(
                        x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
                    );
                } else {
                    // SAFETY: waits for a signal.
                    unsafe { libc::pause() };
                }
            }
        }
        Self(pid)
    }

    fn raw(&self) -> i32 {
        self.0
    }

    fn pid(&self) -> u64 {
        u64::try_from(self.0).unwrap()
    }

    fn proc(&self, file: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.0)).unwrap()
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        // SAFETY: our child.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

#[test]
fn profile_cpu_samples_our_busy_child() {
    let guard = Forked::start(c"igburn", true);
    let pid = guard.raw();
    let child = guard.pid();
    let ps = pid.to_string();
    let mut ig = Running::start(&["profile_cpu", "--pid", &ps, "--map-fetch-interval", "500ms"]);
    let samples = |vs: &[Value]| -> u64 {
        rows(vs)
            .filter(|r| pid_of(r) == child)
            .map(|r| u(&r["samples"]))
            .sum()
    };
    // 49 Hz: 20 samples is less than half a second of one CPU.
    ig.wait_until(Duration::from_secs(15), |vs| samples(vs) >= 20);
    // Stop ig before the child dies: a sample taken while it exits has its
    // memory half torn down (no executable inode for its user stack).
    let (values, _) = ig.stop();
    drop(guard);
    let exe = std::fs::metadata("/proc/self/exe").unwrap();
    let all: Vec<&Value> = rows(&values).collect();
    assert!(!all.is_empty());
    for r in &all {
        // --pid is applied in the kernel.
        assert_eq!(pid_of(r), child, "only our child with --pid: {r}");
        assert_eq!(r["proc"]["comm"], "igburn", "{r}");
        assert!(u(&r["samples"]) >= 1, "{r}");
        // Its user stack is in this very executable (the child is a fork).
        let us = &r["user_stack_raw"];
        // struct gadget_user_stack has upstream's layout: the executable
        // by device, inode and mtime, the process by tgid and pid.
        assert_eq!(u(&us["inode"]), exe.ino(), "{r}");
        // st_dev in glibc's encoding of major and minor.
        let dev = exe.dev();
        let major = (dev >> 8) & 0xfff | (dev >> 32) & 0xffff_f000;
        let minor = dev & 0xff | (dev >> 12) & 0xffff_ff00;
        assert_eq!((u(&us["major"]), u(&us["minor"])), (major, minor), "{r}");
        assert_eq!(us["mtime_sec"], exe.mtime(), "{r}");
        assert_eq!(
            u(&us["mtime_nsec"]),
            u64::try_from(exe.mtime_nsec()).unwrap(),
            "{r}"
        );
        assert_eq!(u(&us["pid_level0"]), child, "{r}");
        assert_eq!(u(&us["tgid_level0"]), child, "{r}");
        assert_ne!(u(&us["base_addr_hash"]), 0, "{r}");
        assert_ne!(u(&us["boot_timestamp"]), 0, "{r}");
        let id = u(&r["user_stack_id"]);
        assert!(id < 1 << 31, "a user stack was recorded: {r}");
        assert_eq!(u(&us["stack_id"]), id, "{r}");
        // A kernel stack id, or a negative error (no kernel stack: the
        // sample hit user space).
        let k = u(&r["kern_stack_raw"]);
        assert!(!((1 << 31)..(1 << 32) - 4095).contains(&k), "{r}");
    }
    // The spinning child is sampled mostly in user space: some of its
    // rows have no kernel stack (-EFAULT).
    assert!(
        all.iter()
            .any(|r| u(&r["kern_stack_raw"]) == (1u64 << 32) - 14),
        "a row without kernel stack: {all:?}"
    );
    assert!(samples(&values) >= 20);
    // Symbolized (from this executable's ELF symbols): the spinning loop is
    // in `Forked::start` (mangled `..6Forked5start..`), the innermost frame
    // of most samples.
    let me_fn = "Forked5start";
    assert!(
        all.iter().any(|r| r["user_stack_raw"]["symbols"]
            .as_str()
            .is_some_and(|s| s.contains(me_fn))),
        "a user stack naming {me_fn}: {all:?}"
    );
}
