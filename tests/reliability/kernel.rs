//! `ig run` under signals, storms and readers that stop: nothing of ours
//! stays in the kernel, memory stays bounded, loss is reported, SIGINT
//! works within 1 s. Root, a BTF kernel and bpftool are required (missing
//! ones fail the tests, as in tests/kernel).
//!
//! Each test builds its own copy of a gadget whose programs and maps carry
//! a name no other process uses, so `bpftool prog/map/link show` can tell
//! ours from everyone else's on a shared machine: the `minimal_tracer`
//! fixture (a tracepoint, one event per getpid) for most tests; the leak
//! test also takes the `uprobe_tracer` fixture (a uprobe and a uretprobe
//! on libc's getppid) and the `trace_dns` gadget (a socket filter on
//! packet sockets), whose programs attach by other paths. A link is ours
//! when its program is.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
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

/// How a test gadget attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attach {
    /// `minimal_tracer`: a tracepoint, through a BPF link.
    Tracepoint,
    /// `uprobe_tracer`: a uprobe and a uretprobe, each through a link.
    Uprobe,
    /// `trace_dns`: a socket filter, attached to packet sockets (no link).
    Socket,
    /// `tc_frames`: TC programs behind dispatchers, through TCX links on
    /// a veth pair the test makes (`--iface`).
    Tc,
}

/// A veth pair (both ends on the host), removed on drop.
struct Veth(String);

impl Veth {
    fn new(token: &str) -> Self {
        let a = format!("igr{token}a");
        let b = format!("igr{token}b");
        for args in [
            vec!["link", "add", &a, "type", "veth", "peer", "name", &b],
            vec!["link", "set", &a, "up"],
            vec!["link", "set", &b, "up"],
        ] {
            let out = Command::new("ip").args(&args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        Self(a)
    }

    /// What TC left on the interface: filters, a clsact qdisc.
    fn leftovers(&self) -> Vec<String> {
        let tc = |args: &[&str]| {
            let out = Command::new("tc").args(args).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let mut found = Vec::new();
        for dir in ["ingress", "egress"] {
            let f = tc(&["filter", "show", "dev", &self.0, dir]);
            if !f.is_empty() {
                found.push(format!("tc filter on {} {dir}: {f}", self.0));
            }
        }
        let q = tc(&["qdisc", "show", "dev", &self.0]);
        if q.contains("clsact") {
            found.push(format!("qdisc on {}: {q}", self.0));
        }
        found
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

/// A gadget whose programs and maps are named `r?<token>`, built into a
/// fresh store.
struct Unique {
    token: String,
    store: TestStore,
    attach: Attach,
    /// For TC: the interface ig attaches to.
    veth: Option<Veth>,
}

/// `src` with every `(from, to)` replaced; each `from` must occur.
fn renamed(src: &str, pairs: &[(&str, String)]) -> String {
    let mut out = src.to_owned();
    for (from, to) in pairs {
        assert!(out.contains(from), "{from:?} not in the gadget source");
        out = out.replace(from, to);
    }
    out
}

impl Unique {
    fn build() -> Self {
        Self::build_for(Attach::Tracepoint)
    }

    fn build_for(attach: Attach) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let token = format!(
            "{}{}",
            std::process::id() % 100_000,
            char::from(b'a' + u8::try_from(N.fetch_add(1, Ordering::Relaxed) % 26).unwrap())
        );
        let t = &token;
        let ring = [
            (
                "GADGET_TRACER_MAP(events,",
                format!("GADGET_TRACER_MAP(rm{t},"),
            ),
            ("&events", format!("&rm{t}")),
        ];
        let (dir, pairs) = match attach {
            Attach::Tracepoint => (
                fixture_copy("minimal_tracer"),
                vec![
                    ("minimal_getpid", format!("rp{t}")),
                    ("minimal, events, event", format!("minimal, rm{t}, event")),
                ],
            ),
            Attach::Uprobe => (
                fixture_copy("uprobe_tracer"),
                vec![
                    ("enter_getppid", format!("ru{t}")),
                    ("exit_getppid", format!("rv{t}")),
                    (
                        "getppid_calls, events, event",
                        format!("getppid_calls, rm{t}, event"),
                    ),
                ],
            ),
            Attach::Tc => (
                fixture_copy("tc_frames"),
                vec![
                    ("int ig_tc_in(", format!("int rt{t}(")),
                    ("int ig_tc_out(", format!("int ro{t}(")),
                    ("frames, events, event", format!("frames, rm{t}, event")),
                ],
            ),
            Attach::Socket => {
                let dir = tempfile::tempdir().unwrap();
                let src = crate::common::repo().join("gadgets/trace_dns");
                for e in std::fs::read_dir(&src).unwrap() {
                    let e = e.unwrap();
                    std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
                }
                (
                    dir,
                    vec![
                        ("int ig_trace_dns(", format!("int rs{t}(")),
                        ("dns, events, event", format!("dns, rm{t}, event")),
                        ("} work SEC", format!("}} rw{t} SEC")),
                        ("&work,", format!("&rw{t},")),
                        ("} queries SEC", format!("}} rq{t} SEC")),
                        ("&queries,", format!("&rq{t},")),
                    ],
                )
            }
        };
        let src = dir.path().join("program.bpf.c");
        let c = std::fs::read_to_string(&src).unwrap();
        let c = renamed(&c, &pairs);
        std::fs::write(&src, renamed(&c, &ring)).unwrap();
        let store = TestStore::new();
        store.build(dir.path(), "uniq");
        let veth = (attach == Attach::Tc).then(|| Veth::new(&token));
        Self {
            token,
            store,
            attach,
            veth,
        }
    }

    /// `ig run uniq` with the arguments this gadget needs.
    fn run_cmd(&self) -> Command {
        let mut cmd = self.store.ig();
        cmd.args(["run", "uniq"]);
        if let Some(v) = &self.veth {
            cmd.args(["--iface", &v.0]);
        }
        cmd
    }

    fn spawn(&self, args: &[&str], stdout: Stdio) -> Child {
        self.spawn_with(args, stdout, Stdio::piped())
    }

    fn spawn_with(&self, args: &[&str], stdout: Stdio, stderr: Stdio) -> Child {
        let mut cmd = self.run_cmd();
        cmd.args(args).stdout(stdout).stderr(stderr);
        // A test run from `cmd &` in a script inherits SIGINT ignored. ig
        // resets it first thing, but a signal sent before its first
        // instruction would still be dropped: start it with the default.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    /// BPF programs, maps and links of ours the kernel still has. A link
    /// is ours when its program is (links have no name of their own).
    fn in_kernel(&self) -> Vec<String> {
        let show = |kind: &str| -> serde_json::Value {
            let out = Command::new("bpftool")
                .args(["-j", kind, "show"])
                .output()
                .unwrap();
            assert!(out.status.success(), "bpftool {kind} show");
            serde_json::from_slice(&out.stdout).unwrap()
        };
        // Links first: a link listed after its program vanished would
        // otherwise look foreign.
        let links = show("link");
        let mut found = Vec::new();
        let mut our_progs = BTreeSet::new();
        for kind in ["prog", "map"] {
            for o in show(kind).as_array().unwrap() {
                if let Some(name) = o["name"].as_str()
                    && name.contains(&self.token)
                {
                    found.push(format!("{kind} {name} id {}", o["id"]));
                    if kind == "prog" {
                        our_progs.insert(o["id"].as_u64());
                    }
                }
            }
        }
        for l in links.as_array().unwrap() {
            if our_progs.contains(&l["prog_id"].as_u64()) {
                found.push(format!(
                    "link id {} ({}) of prog id {}",
                    l["id"], l["type"], l["prog_id"]
                ));
            }
        }
        if let Some(v) = &self.veth {
            found.extend(v.leftovers());
        }
        // ig's own programs (the socket enricher's, the dispatchers)
        // carry no token, and other runs may have theirs: one is left
        // behind when no process holds it (attached to a hook that
        // outlived ig, or pinned).
        let held = held_prog_ids();
        for o in show("prog").as_array().unwrap() {
            let (Some(name), Some(id)) = (o["name"].as_str(), o["id"].as_u64()) else {
                continue;
            };
            if IG_OWN_PROGS.iter().any(|p| name.starts_with(p)) && !held.contains(&id) {
                found.push(format!("prog {name} id {id}, held by no process"));
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

    /// What makes this gadget's programs run, in a loop on one thread.
    fn storm(&self) -> Storm {
        match self.attach {
            Attach::Tracepoint => Storm::start(),
            // Through libc, where the probes are.
            // SAFETY: getppid has no preconditions.
            Attach::Uprobe => Storm::with(|| unsafe {
                libc::getppid();
            }),
            Attach::Tc => {
                let iface = self.veth.as_ref().map(|v| v.0.clone()).unwrap_or_default();
                let index = std::ffi::CString::new(iface).unwrap();
                // SAFETY: if_nametoindex of a NUL-terminated name.
                let index = unsafe { libc::if_nametoindex(index.as_ptr()) };
                // SAFETY: a raw packet socket, owned by the storm's closure.
                let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
                assert!(fd >= 0);
                // SAFETY: a fresh descriptor nobody else owns.
                let fd =
                    unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                let mut frame = vec![0xffu8; 6];
                frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x88, 0xb5, 1, 2, 3, 4]);
                frame.resize(64, 0);
                // SAFETY: a zeroed sockaddr_ll.
                let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                to.sll_family = libc::AF_PACKET as u16;
                to.sll_ifindex = i32::try_from(index).unwrap();
                to.sll_halen = 6;
                Storm::with(move || {
                    // SAFETY: sendto(2) of a live frame to a live address.
                    unsafe {
                        libc::sendto(
                            std::os::fd::AsRawFd::as_raw_fd(&fd),
                            frame.as_ptr().cast(),
                            frame.len(),
                            0,
                            std::ptr::from_ref(&to).cast(),
                            std::mem::size_of::<libc::sockaddr_ll>() as u32,
                        )
                    };
                })
            }
            Attach::Socket => {
                let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                // A DNS query header (id 1, one question) and a name.
                let query =
                    b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03ig\x00\x00\x01\x00\x01";
                Storm::with(move || {
                    let _ = sock.send_to(query, "127.0.0.1:53");
                })
            }
        }
    }
}

/// Name prefixes of the programs ig loads besides a gadget's.
const IG_OWN_PROGS: &[&str] = &["ig_se_", "ig_sock_disp", "ig_tc_disp"];

/// Ids of the BPF programs some process holds a descriptor of (its
/// fdinfo says `prog_id:`), links and perf events included.
fn held_prog_ids() -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return ids;
    };
    for p in procs.flatten() {
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        for f in fds.flatten() {
            let Ok(info) = std::fs::read_to_string(f.path()) else {
                continue;
            };
            ids.extend(
                info.lines()
                    .filter_map(|l| l.strip_prefix("prog_id:"))
                    .filter_map(|v| v.trim().parse::<u64>().ok()),
            );
        }
    }
    ids
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
        // SAFETY: getpid has no preconditions; glibc does not cache it,
        // so each call is a system call.
        Self::with(|| unsafe {
            libc::syscall(libc::SYS_getpid);
        })
    }

    /// `event` in a loop on one thread.
    fn with(event: impl Fn() + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                for _ in 0..1000 {
                    event();
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

/// Where `ig run` is when the leak test signals it.
#[derive(Clone, Copy, Debug)]
enum Stage {
    /// This long after start: reading the store, parsing the object (on
    /// a loaded machine, maybe later).
    After(u64),
    /// When `ig -v` prints this stage line on stderr: `operators:` (the
    /// object is parsed, nothing is in the kernel), `maps created` (maps,
    /// no program), `attached ` (the first program attached, for the
    /// uprobe gadget the second not yet).
    Line(&'static str),
    /// Once `… started` is printed: everything attached, the run loop
    /// about to begin. Links must be visible here.
    Started,
    /// Started, then 500 ms of events.
    Storm,
}

/// Kill `ig run` with each signal at each stage; after each, nothing of
/// ours in the kernel (programs, maps, links), and a run right after each
/// signal loads and exits 0.
fn kill_at_every_stage(u: &Unique) {
    let stages = [
        Stage::After(0),
        Stage::After(15),
        Stage::After(60),
        Stage::Line("debug: operators: "),
        Stage::Line("maps created; loading"),
        Stage::Line("debug: attached "),
        Stage::Started,
        Stage::Storm,
    ];
    for (sig, name) in [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGKILL, "SIGKILL"),
    ] {
        for stage in stages {
            let what = format!("{:?}: {name} at {stage:?}", u.attach);
            let mut child = u.spawn(&["-o", "json", "-v"], Stdio::null());
            let lines = stderr_lines(&mut child);
            let until_line = |needle: &str| {
                let end = Instant::now() + Duration::from_secs(20);
                loop {
                    let left = end.saturating_duration_since(Instant::now());
                    match lines.recv_timeout(left) {
                        Ok((_, l)) if l.contains(needle) => return,
                        Ok(_) => {}
                        Err(e) => panic!("{what}: no line {needle:?} from ig ({e})"),
                    }
                }
            };
            let storm = match stage {
                Stage::After(ms) => {
                    std::thread::sleep(Duration::from_millis(ms));
                    None
                }
                Stage::Line(needle) => {
                    until_line(needle);
                    None
                }
                Stage::Started | Stage::Storm => {
                    until_line(" started");
                    let there = u.in_kernel();
                    assert!(
                        there.iter().any(|n| n.starts_with("prog")),
                        "{what}: {there:?}"
                    );
                    // The link check can see our links (a socket filter
                    // has none: its packet sockets hold it).
                    // (Nor do TC programs: their dispatchers' TCX links
                    // hold them.)
                    assert_eq!(
                        there.iter().any(|n| n.starts_with("link")),
                        !matches!(u.attach, Attach::Socket | Attach::Tc),
                        "{what}: {there:?}"
                    );
                    matches!(stage, Stage::Storm).then(|| {
                        let s = u.storm();
                        std::thread::sleep(Duration::from_millis(500));
                        s
                    })
                }
            };
            signal(&child, sig);
            let took = wait_within(&mut child, Duration::from_secs(5), &what);
            drop(storm);
            let status = child.wait().unwrap();
            // From `operators:` on, SIGINT and SIGTERM are blocked and read
            // by the run loop: loading finishes, then a clean stop.
            if sig != libc::SIGKILL && !matches!(stage, Stage::After(_)) {
                let err: Vec<String> = lines.try_iter().map(|(_, l)| l).collect();
                assert!(status.success(), "{what}: {status} {err:#?}");
                if matches!(stage, Stage::Started | Stage::Storm) {
                    assert!(took < Duration::from_secs(1), "{what}: took {took:?}");
                }
            }
            u.assert_gone(&what);
        }
        // Right after, a new run loads, sees events and ends cleanly.
        let out = u
            .run_cmd()
            .args(["-o", "json", "--timeout", "1"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{:?}: a run after {name}: {}",
            u.attach,
            text(&out.stderr)
        );
        u.assert_gone(&format!("{:?}: the run after {name}", u.attach));
    }
}

#[test]
fn every_signal_at_every_stage_leaves_nothing_behind() {
    require_kernel();
    let pins_before = pins();
    for attach in [
        Attach::Tracepoint,
        Attach::Uprobe,
        Attach::Socket,
        Attach::Tc,
    ] {
        let u = Unique::build_for(attach);
        let files_before = store_files(&u.store.path());
        kill_at_every_stage(&u);
        assert_eq!(
            store_files(&u.store.path()),
            files_before,
            "{attach:?}: ig run changed the store (a temp file?)"
        );
    }
    let new_pins: Vec<_> = pins().difference(&pins_before).cloned().collect();
    assert!(new_pins.is_empty(), "pins appeared: {new_pins:?}");
}

/// Started from `cmd &` in a script, ig inherits SIGINT ignored; it still
/// stops on SIGINT, from its first instruction on (ig resets the
/// disposition before anything else, so no early signal is dropped).
#[test]
fn sigint_inherited_as_ignored_still_stops_ig() {
    require_kernel();
    let u = Unique::build();
    let mut cmd = u.store.ig();
    cmd.args(["run", "uniq", "-o", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let _lines = stderr_lines(&mut child);
    u.wait_loaded(&mut child);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    // Stop it first (wait_within kills it if it does not stop), so that a
    // failed check leaves nothing running.
    signal(&child, libc::SIGINT);
    wait_within(&mut child, Duration::from_secs(2), "SIGINT after SIG_IGN");
    assert!(child.wait().unwrap().success());
    u.assert_gone("SIGINT after SIG_IGN");
    assert_eq!(ignored & (1 << (libc::SIGINT - 1)), 0, "{status}");
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
    // Output backlog (4 MiB) + printer buffers (the ring buffer's pages
    // are mapped, hence counted, from the start); a reader-sized leak
    // would be 100s of MiB.
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

/// `common::full_pipe_fds`, the write end ready to be a child's stdout.
fn full_pipe() -> (std::fs::File, Stdio) {
    let (r, w) = crate::common::full_pipe_fds();
    (r, Stdio::from(w))
}

/// `ig run ... 2>&1 | less`, paused: stdout and stderr are one pipe (one
/// open file description), full, never read, while a storm overflows a
/// 4 KiB ring buffer so that loss warnings are due every second. Before,
/// the first warning blocked ig in `write(2)` on stderr with its programs
/// attached, and SIGINT and SIGTERM (read from a signalfd) did nothing.
/// Now each stops ig within 1 s, exit 0, nothing left in the kernel.
#[test]
fn a_stopped_reader_of_stdout_and_stderr_together_never_holds_ig() {
    require_kernel();
    let u = Unique::build();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let (_unread, w) = crate::common::full_pipe_fds();
        let flags_before = fd_flags(&w);
        let mut child = u.spawn_with(
            &["-o", "json", "--ringbuf-size", "4096"],
            Stdio::from(w.try_clone().unwrap()),
            Stdio::from(w.try_clone().unwrap()),
        );
        u.wait_loaded(&mut child);
        let storm = Storm::start();
        // Loss warnings are due every second: several are stuck by now.
        std::thread::sleep(Duration::from_millis(3500));
        assert!(child.try_wait().unwrap().is_none(), "ig exited on its own");
        signal(&child, sig);
        let took = wait_within(
            &mut child,
            Duration::from_secs(5),
            &format!("signal {sig} with stdout and stderr one stopped pipe"),
        );
        drop(storm);
        assert!(
            took < Duration::from_secs(1),
            "signal {sig} took {took:?} with a stopped reader of stderr"
        );
        assert!(child.wait().unwrap().success(), "signal {sig}");
        u.assert_gone(&format!("after signal {sig} with stderr stopped"));
        // ig wrote through its own open file: the shell's (shared) one
        // keeps its flags.
        assert_eq!(fd_flags(&w), flags_before, "O_NONBLOCK leaked to the pipe");
    }
}

fn fd_flags(fd: &std::os::fd::OwnedFd) -> i32 {
    use std::os::fd::AsRawFd as _;
    // SAFETY: F_GETFL on an open descriptor.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }
}

/// Warnings ig could not write while stderr's reader was stopped are
/// counted, not waited for, and the count comes before the first line
/// that gets through once the reader reads again.
#[test]
fn messages_a_stopped_stderr_reader_missed_are_counted_when_it_reads_again() {
    use std::io::Read as _;
    require_kernel();
    let u = Unique::build();
    let (mut reader, w) = crate::common::full_pipe_fds();
    let mut child = u.spawn_with(
        &["-o", "json", "--ringbuf-size", "4096"],
        Stdio::null(),
        Stdio::from(w),
    );
    u.wait_loaded(&mut child);
    let storm = Storm::start();
    std::thread::sleep(Duration::from_millis(3500));
    // The reader comes back: read what arrives for two more seconds.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = reader.read_to_end(&mut all);
        let _ = tx.send(all);
    });
    std::thread::sleep(Duration::from_millis(2500));
    signal(&child, libc::SIGINT);
    wait_within(
        &mut child,
        Duration::from_secs(5),
        "SIGINT after stderr resumed",
    );
    drop(storm);
    assert!(child.wait().unwrap().success());
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let text = String::from_utf8_lossy(&got);
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let at = lines
        .iter()
        .position(|l| l.contains("not written: the reader of stderr did not take them"))
        .unwrap_or_else(|| panic!("no count of the messages dropped: {lines:#?}"));
    let n: u64 = lines[at]
        .trim_start_matches("warning: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", lines[at]));
    assert!(n >= 2, "3.5 s of a storm drop a loss warning a second: {n}");
    assert!(
        lines.get(at + 1).is_some_and(|l| l.contains("events lost")),
        "the count comes with the next line that got through: {lines:#?}"
    );
    u.assert_gone("after stderr resumed");
}

/// `ig run --timeout 2 | slow reader` in a storm: a reader that keeps
/// reading, however slowly, gets every byte, the last line whole (the
/// user guide's `--timeout N | jq` recipes on a busy machine).
#[test]
fn after_the_timeout_a_slow_reader_still_gets_everything() {
    use std::io::Read as _;
    require_kernel();
    let u = Unique::build();
    let storm = Storm::start();
    let (mut rx, tx) = {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors from pipe2.
        unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                Stdio::from(std::os::fd::OwnedFd::from_raw_fd(fds[1])),
            )
        }
    };
    let mut child = u.spawn(&["-o", "json", "--timeout", "2"], tx);
    let lines = stderr_lines(&mut child);
    u.wait_loaded(&mut child);
    std::thread::sleep(Duration::from_millis(2500));
    drop(storm);
    // The run is over; its backlog (up to 4 MiB) waits in ig. Read 32 KiB
    // every 100 ms, far slower than ig could write, to the end of the pipe.
    let mut got = Vec::new();
    let mut buf = vec![0; 32 << 10];
    let start = Instant::now();
    loop {
        let n = rx.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(100));
        assert!(start.elapsed() < Duration::from_secs(60), "never ended");
    }
    let status = child.wait().unwrap();
    let err: Vec<String> = lines.iter().map(|(_, l)| l).collect();
    assert!(status.success(), "{status}: {err:#?}");
    assert!(
        !err.iter().any(|l| l.contains("not written")),
        "nothing dropped: {err:#?}"
    );
    // Whole JSON lines, the last one too.
    let text = String::from_utf8(got).unwrap();
    let events: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(events.len() > 100, "the storm's events: {}", events.len());
    for l in &events {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    assert!(
        start.elapsed() > Duration::from_secs(5),
        "the reader was slow enough to outlast one stall period (5 s)"
    );
}

/// `ig run --timeout 2 | sleep 30` in a storm: the timeout ends the run
/// (before, ig waited for the reader until a signal); what the reader did
/// not take is dropped and counted.
#[test]
fn the_timeout_ends_the_run_when_the_reader_stopped() {
    require_kernel();
    let u = Unique::build();
    let storm = Storm::start();
    let (_unread, stdout) = full_pipe();
    let mut child = u.spawn(&["-o", "json", "--timeout", "2"], stdout);
    let lines = stderr_lines(&mut child);
    u.wait_loaded(&mut child);
    // From loaded: the rest of the timeout, the final drain (at most
    // 250 ms) and five seconds of a reader taking nothing.
    let took = wait_within(
        &mut child,
        Duration::from_secs(15),
        "--timeout 2 with a stopped reader",
    );
    drop(storm);
    assert!(took < Duration::from_secs(8), "took {took:?} after loading");
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
    // started), the snapshot dropped and counted.
    let (_unread, stdout) = full_pipe();
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
        Duration::from_secs(15),
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
    // snapshot (one JSON line: the array) after the filler.
    let (mut reader, stdout) = full_pipe();
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
    let json: Vec<&str> = got.lines().filter(|l| !l.is_empty()).collect();
    assert!(!json.is_empty(), "nothing after the filler");
    for l in json {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v.as_array().is_some_and(|a| !a.is_empty()), "{l}");
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
