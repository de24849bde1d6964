//! Attach kinds that follow the host and its containers (issue 20):
//! uprobes by library name, resolved in every root the run covers.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::common::{TestStore, repo};
use super::{RuncContainer, Running, require_kernel};

/// Sizes the `uprobe_library` fixture reports: `[MIN, MIN + 1000)`.
const MIN: u64 = 7_770_000;

fn uprobe_store() -> TestStore {
    let s = TestStore::new();
    s.build(
        &repo().join("tests/fixtures/uprobe_library"),
        "uprobe_library",
    );
    s
}

/// `uprobe/libc:malloc` resolves through the host's ld.so.cache and sees
/// our calls; the fixture's two other probes (a library no cache lists, a
/// symbol libc lacks) attach nowhere, and the run goes on with a warning
/// naming each, as upstream's does.
#[test]
fn uprobes_by_library_name_attach_what_exists_and_warn_about_the_rest() {
    require_kernel();
    let s = uprobe_store();
    let min = MIN.to_string();
    let mut ig = Running::start(&s, &["uprobe_library", "--size_min", &min, "-o", "json"]);
    let me = std::process::id();
    let size = MIN + 17;
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            // SAFETY: malloc/free of a fresh block, through libc.
            unsafe { libc::free(libc::malloc(size as usize)) };
        },
        |l| l.contains(&format!("\"pid\":{me},")),
    );
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["size"], size, "{line}");
    let (status, stderr, _) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: uprobes not attached: library libig_nowhere not found")
            && stderr.contains("programs ig_nowhere"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ig_no_such_symbol (program ig_no_symbol)") && stderr.contains("libc.so.6"),
        "{stderr}"
    );
}

/// A gadget none of whose programs can attach anywhere is an error that
/// says why, not a run that shows nothing.
#[test]
fn uprobes_that_attach_nowhere_are_an_error_when_nothing_else_runs() {
    require_kernel();
    let s = TestStore::new();
    s.build(
        &repo().join("tests/fixtures/uprobe_nowhere"),
        "uprobe_nowhere",
    );
    let out = s.run(&["run", "uprobe_nowhere", "--timeout", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no program of the gadget could attach")
            && stderr
                .contains("library libig_nowhere not found (not in /etc/ld.so.cache, in the host)"),
        "{stderr}"
    );
}

/// A rootfs with its own copy of libc (hard links of `libs`, so that two
/// containers share one file), a dynamically linked program calling
/// malloc(base + i) ten times a second (through a volatile pointer: clang
/// drops a malloc whose block is only freed), and an ld.so.cache made by
/// `ldconfig -r`.
fn malloc_rootfs(root: &Path, libs: &Path) {
    for d in ["lib", "lib64", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::hard_link(libs.join("libc.so.6"), root.join("lib/libc.so.6")).unwrap();
    std::fs::hard_link(
        libs.join("ld-linux-x86-64.so.2"),
        root.join("lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    std::fs::hard_link(libs.join("mallocker"), root.join("bin/mallocker")).unwrap();
    let out = Command::new("ldconfig")
        .arg("-r")
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "ldconfig -r: {out:?}");
}

/// The files every container's rootfs links to: libc and the dynamic
/// loader copied from the host (other inodes than the host's), and the
/// program, built here with clang.
fn malloc_libs(dir: &Path) {
    let src = dir.join("mallocker.c");
    std::fs::write(
        &src,
        "#include <stdlib.h>\n#include <unistd.h>\n\
         int main(int argc, char **argv) {\n\
           unsigned long base = strtoul(argv[1], 0, 10);\n\
           for (unsigned i = 0;; i++) {\n\
             void *volatile p = malloc(base + (i % 400));\n\
             free(p);\n\
             usleep(100000);\n\
           }\n\
         }\n",
    )
    .unwrap();
    let out = Command::new("clang")
        .args(["-O1", "-o"])
        .arg(dir.join("mallocker"))
        .arg(&src)
        .output()
        .expect("this test builds a C program with clang (cargo xtask setup installs it)");
    assert!(out.status.success(), "clang: {out:?}");
    for (from, to) in [
        ("/lib/x86_64-linux-gnu/libc.so.6", "libc.so.6"),
        (
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "ld-linux-x86-64.so.2",
        ),
    ] {
        std::fs::copy(from, dir.join(to)).unwrap();
    }
}

/// Containers that start after `ig` get the uprobe in their own libc,
/// found through their own ld.so.cache; two containers whose libc is the
/// same file share one link, so each of their calls is reported once; and
/// the events carry the container's name.
#[test]
fn uprobes_follow_new_containers_with_one_link_per_library_file() {
    require_kernel();
    let s = uprobe_store();
    let libs = tempfile::tempdir().unwrap();
    malloc_libs(libs.path());
    let min = MIN.to_string();
    let mut ig = Running::start(&s, &["uprobe_library", "--size_min", &min, "-o", "json"]);
    let me = std::process::id();
    // Running and attached on the host first.
    ig.wait_for(
        Duration::from_secs(20),
        || {
            // SAFETY: malloc/free of a fresh block, through libc.
            unsafe { libc::free(libc::malloc((MIN + 999) as usize)) };
        },
        |l| l.contains(&format!("\"pid\":{me},")),
    );
    let a = RuncContainer::start_with(
        RuncContainer::new_id(),
        &format!("exec /bin/mallocker {MIN}"),
        |root| malloc_rootfs(root, libs.path()),
    );
    let b = RuncContainer::start_with(
        RuncContainer::new_id(),
        &format!("exec /bin/mallocker {}", MIN + 500),
        |root| malloc_rootfs(root, libs.path()),
    );
    let mut sizes: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let enough = |sizes: &BTreeMap<u32, Vec<u64>>| {
        [a.pid, b.pid]
            .iter()
            .all(|p| sizes.get(p).is_some_and(|v| v.len() >= 10))
    };
    let mut names: BTreeMap<u32, String> = BTreeMap::new();
    ig.wait_for(
        Duration::from_secs(30),
        || {},
        |l| {
            let Ok(v) = serde_json::from_str::<Value>(l) else {
                return false;
            };
            let pid = u32::try_from(v["pid"].as_u64().unwrap_or(0)).unwrap_or(0);
            if pid == a.pid || pid == b.pid {
                sizes
                    .entry(pid)
                    .or_default()
                    .push(v["size"].as_u64().unwrap());
                names.insert(
                    pid,
                    v["runtime"]["containerName"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                );
            }
            enough(&sizes)
        },
    );
    let (status, stderr, _) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    for (c, base) in [(&a, MIN), (&b, MIN + 500)] {
        let got = &sizes[&c.pid];
        // Each call once, in order: a second link on the same file would
        // report every call twice.
        assert!(
            got.windows(2).all(|w| w[1] > w[0]),
            "container {}: {got:?}",
            c.name
        );
        assert!(
            got.iter().all(|s| (base..base + 400).contains(s)),
            "{got:?}"
        );
        assert_eq!(names[&c.pid], c.name, "events carry the container's name");
    }
}

/// A DNS responder in the network namespace of `pid` (a thread that
/// enters it), on 127.0.0.1:`port`, answering every query with the
/// question and one address until `stop` is set.
fn responder_in(
    pid: u32,
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd as _;
        // SAFETY: setns(2) of this thread only, with a namespace fd.
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "{}",
            std::io::Error::last_os_error()
        );
        let s = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 512];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                let mut r = buf[..n].to_vec();
                r[2] |= 0x80;
                let _ = s.send_to(&r, from);
            }
        }
    })
}

/// trace_dns in a container with a network namespace of its own: ig
/// attaches its socket filter there too (behind the dispatcher that tells
/// it the namespace) as the container starts, and the socket enricher
/// attributes the container's query to the process that sent it, in the
/// container (name, mount namespace).
#[test]
fn trace_dns_follows_a_container_network_namespace_and_names_the_sender() {
    require_kernel();
    let s = TestStore::new();
    s.build(&repo().join("gadgets/trace_dns"), "trace_dns");
    let name = format!("ctr-{}.igtest.example", std::process::id());
    let mut ig = Running::start(&s, &["trace_dns", "--port", "5353", "-o", "json"]);
    // Running once ig reports anything of ours: a query to nowhere.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    ig.wait_for(
        Duration::from_secs(20),
        || {
            let _ = probe.send_to(&[0u8; 12], "127.0.0.1:5353");
        },
        |l| l.contains(&format!("\"pid\":{},", std::process::id())),
    );
    let c = RuncContainer::start_with(
        RuncContainer::new_id(),
        &format!("while true; do nslookup -type=a {name} 127.0.0.1:5353; sleep 1; done"),
        |root| std::os::unix::fs::symlink("busybox", root.join("bin/nslookup")).unwrap(),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let responder = responder_in(c.pid, 5353, stop.clone());
    let line = ig.wait_for(
        Duration::from_secs(30),
        || {},
        |l| {
            l.contains(&name)
                && l.contains("\"pkt_type\":\"OUTGOING\"")
                && l.contains("\"qr\":\"Q\"")
        },
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (status, stderr, _) = ig.interrupt_all();
    responder.join().unwrap();
    assert!(status.success(), "{stderr}");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["proc"]["comm"], "nslookup", "{line}");
    assert_eq!(v["proc"]["mntns_id"], c.mntns(), "{line}");
    assert_eq!(v["runtime"]["containerName"], c.name.as_str(), "{line}");
}

/// `(protocol, port)` of every entry of the socket enricher's map that
/// process `pid` holds (the 16384-entry `gadget_sockets`; the objects'
/// own one-entry definitions are not it); none before it has one.
fn enricher_ports(pid: u32) -> Vec<(u8, u16)> {
    super::map_keys_of(pid, |info| {
        info["name"] == "gadget_sockets" && info["max_entries"] == 16384
    })
    .unwrap_or_default()
    .into_iter()
    .map(|k| (k[6], u16::from_ne_bytes([k[8], k[9]])))
    .collect()
}

/// Poll `cond` on the enricher's entries of `pid` for at most `limit`.
fn until_entries(pid: u32, limit: Duration, what: &str, cond: impl Fn(&[(u8, u16)]) -> bool) {
    let end = std::time::Instant::now() + limit;
    loop {
        let e = enricher_ports(pid);
        if cond(&e) {
            return;
        }
        assert!(std::time::Instant::now() < end, "{what}: {e:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The socket enricher forgets sockets that close: a TCP listener by its
/// state change to CLOSE, a UDP socket (no tracepoint at its close) by
/// the periodic walk of the sockets tasks hold; both after the grace
/// period. Sockets made while ig runs are recorded by the bind tracepoint.
#[test]
fn socket_enricher_records_and_forgets_sockets() {
    require_kernel();
    let s = TestStore::new();
    s.build(&repo().join("gadgets/trace_dns"), "trace_dns");
    let ig = Running::start(&s, &["trace_dns", "-o", "json"]);
    let pid = ig.child.id();
    // Running once the map holds something of ours.
    let early = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let early_port = early.local_addr().unwrap().port();
    until_entries(pid, Duration::from_secs(20), "a socket made before", |e| {
        e.contains(&(17, early_port))
    });
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let uport = udp.local_addr().unwrap().port();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tport = tcp.local_addr().unwrap().port();
    until_entries(pid, Duration::from_secs(5), "bind recorded", |e| {
        e.contains(&(17, uport)) && e.contains(&(6, tport))
    });
    drop(udp);
    drop(tcp);
    // TCP: marked at its close, removed after the 5 s grace; UDP: marked
    // at the next walk (every 10 s), removed 5 s later.
    until_entries(
        pid,
        Duration::from_secs(30),
        "closed sockets forgotten",
        |e| !e.contains(&(17, uport)) && !e.contains(&(6, tport)),
    );
    assert!(
        enricher_ports(pid).contains(&(17, early_port)),
        "a socket still open stays"
    );
    let (status, stderr, _) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    drop(early);
}

/// A veth pair the test made, removed on drop (with its namespace, if
/// one end was moved into a named one).
struct Veth {
    host: String,
    peer: String,
}

impl Veth {
    /// `ig<pid><tag>a` (stays on the host) and `...b`, both up.
    fn new(tag: &str) -> Self {
        let base = format!("ig{}{tag}", std::process::id() % 100_000);
        let v = Self {
            host: format!("{base}a"),
            peer: format!("{base}b"),
        };
        ip(&[
            "link", "add", &v.host, "type", "veth", "peer", "name", &v.peer,
        ]);
        ip(&["link", "set", &v.host, "up"]);
        ip(&["link", "set", &v.peer, "up"]);
        v
    }

    /// Move the peer into the network namespace of `pid` and bring it up
    /// there.
    fn move_peer_to(&self, pid: u32) {
        ip(&["link", "set", &self.peer, "netns", &pid.to_string()]);
        let out = Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-n",
                "ip",
                "link",
                "set",
                &self.peer,
                "up",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    fn index(&self) -> u32 {
        ig::netif::ifindex(&self.host).unwrap()
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting one end deletes the pair, wherever the other is.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

/// Send one Ethernet frame of ethertype 0x88b5 carrying `marker` out of
/// interface `iface`, from the network namespace of `pid` (ours: `None`).
fn send_frame(iface: &str, pid: Option<u32>, marker: u32) {
    let iface = iface.to_owned();
    let ns = pid.map(|p| std::fs::File::open(format!("/proc/{p}/ns/net")).unwrap());
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd as _;
        if let Some(ns) = ns {
            // SAFETY: setns(2) of this thread only.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
        }
        let index = ig::netif::ifindex(&iface).unwrap();
        // SAFETY: a raw packet socket, closed below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        let mut frame = vec![0xffu8; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x88, 0xb5]);
        frame.extend_from_slice(&marker.to_be_bytes());
        frame.resize(64, 0);
        // SAFETY: a zeroed sockaddr_ll filled for sendto(2).
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = i32::try_from(index).unwrap();
        to.sll_halen = 6;
        // SAFETY: sendto(2) of a live buffer to a live address.
        let n = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(&to).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        let err = std::io::Error::last_os_error();
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
        assert_eq!(n, 64, "sending on {iface}: {err}");
    })
    .join()
    .unwrap();
}

fn own_netns() -> u64 {
    let l = std::fs::read_link("/proc/self/ns/net").unwrap();
    ig::containers::parse_ns_link(l.to_str().unwrap()).unwrap()
}

fn tc_store() -> TestStore {
    let s = TestStore::new();
    s.build(&repo().join("tests/fixtures/tc_frames"), "tc_frames");
    s
}

/// `classifier/ingress/...` and `classifier/egress/...` on `--iface`: a
/// frame the test sends out of the host end of a veth pair is seen by the
/// egress program, one sent from the other end arrives and is seen by the
/// ingress program, each once, with the host's network namespace from the
/// dispatcher. Nothing is left on the interface afterwards.
#[test]
fn tc_programs_on_an_interface_see_frames_both_ways() {
    require_kernel();
    let s = tc_store();
    let v = Veth::new("t");
    let mut ig = Running::start(&s, &["tc_frames", "--iface", &v.host, "-o", "json"]);
    let out_marker = 0x1a2b_0000 | (std::process::id() & 0xffff);
    let in_marker = out_marker ^ 0xffff_0000;
    let seen = |l: &str, m: u32| l.contains(&format!("\"marker\":{m},"));
    ig.wait_for(
        Duration::from_secs(20),
        || send_frame(&v.host, None, out_marker),
        |l| seen(l, out_marker),
    );
    send_frame(&v.peer, None, in_marker);
    ig.wait_for(Duration::from_secs(10), || {}, |l| seen(l, in_marker));
    let (status, stderr, lines) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    let evs: Vec<Value> = lines
        .iter()
        .filter(|l| seen(l, in_marker))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["ingress"], true, "{evs:?}");
    assert_eq!(evs[0]["ifindex"], v.index(), "{evs:?}");
    assert_eq!(evs[0]["netns"], own_netns(), "{evs:?}");
    let outs: Vec<Value> = lines
        .iter()
        .filter(|l| seen(l, out_marker))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        outs.iter().all(|e| e["ingress"] == false && e["len"] == 64),
        "{outs:?}"
    );
    // Nothing on the interface: no TCX program, no qdisc, no filter.
    let tc = |args: &[&str]| {
        let out = Command::new("tc").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for dir in ["ingress", "egress"] {
        assert_eq!(tc(&["filter", "show", "dev", &v.host, dir]).trim(), "");
    }
    assert!(!tc(&["qdisc", "show", "dev", &v.host]).contains("clsact"));
}

/// `--iface` naming no interface is an error that names it.
#[test]
fn tc_programs_on_a_missing_interface_fail_clearly() {
    require_kernel();
    let s = tc_store();
    let out = s.run(&[
        "run",
        "tc_frames",
        "--iface",
        "ig-no-such0",
        "--timeout",
        "5",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--iface ig-no-such0: no such interface"),
        "{stderr}"
    );
}

/// Without `--iface`, TC programs go on the host side of each followed
/// container's interfaces, found as they appear (here a veth added after
/// the container started), in the other direction: what the container
/// sends is its egress, seen on the host-side veth's ingress, with the
/// container's network namespace from the dispatcher.
#[test]
fn tc_programs_follow_a_container_interface() {
    require_kernel();
    let s = tc_store();
    let mut ig = Running::start(&s, &["tc_frames", "-o", "json", "-v"]);
    let c = RuncContainer::start("sleep 600");
    let v = Veth::new("c");
    v.move_peer_to(c.pid);
    let marker = 0x3c4d_0000 | (std::process::id() & 0xffff);
    let seen = |l: &str| l.contains(&format!("\"marker\":{marker},"));
    let line = ig.wait_for(
        Duration::from_secs(30),
        || send_frame(&v.peer, Some(c.pid), marker),
        seen,
    );
    let (status, stderr, _) = ig.interrupt_all();
    assert!(status.success(), "{stderr}");
    let e: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(e["ingress"], false, "the container's egress: {e}");
    assert_eq!(e["ifindex"], v.index(), "{e}");
    let l = std::fs::read_link(format!("/proc/{}/ns/net", c.pid)).unwrap();
    let netns = ig::containers::parse_ns_link(l.to_str().unwrap()).unwrap();
    assert_eq!(e["netns"], netns, "{e}");
}

fn capture_store() -> TestStore {
    let s = TestStore::new();
    s.build(&repo().join("tests/fixtures/tc_capture"), "tc_capture");
    s
}

/// `ig run tc_capture ARGS` with stdout to `out`, once `-v` says it
/// started; the child and its stderr lines.
fn start_to_file(
    s: &TestStore,
    args: &[&str],
    out: std::fs::File,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead as _;
    let mut child = s
        .ig()
        .args(["run", "tc_capture", "-v"])
        .args(args)
        .stdout(out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match rx.recv_timeout(end.saturating_duration_since(std::time::Instant::now())) {
            Ok(l) if l.ends_with(" started") => return (child, rx),
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ig did not start: {e}");
            }
        }
    }
}

/// SIGINT and wait; the exit status and what ig said.
fn stop(mut child: std::process::Child, err: &std::sync::mpsc::Receiver<String>) -> (bool, String) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGINT) };
    let st = child.wait().unwrap();
    let said: Vec<String> = err.try_iter().collect();
    (st.success(), said.join("\n"))
}

/// A perf event array tracer with the packet after the struct
/// (`ebpf.rest.name`/`ebpf.rest.len`, upstream's tcpdump): the bytes field
/// holds the frame's first `--snaplen` bytes; `-o pcap-ng` makes a capture
/// tshark reads, with the interface's name, the wire and captured lengths
/// and the bytes.
#[test]
fn tc_capture_gives_packet_bytes_and_a_pcap_ng_tshark_reads() {
    require_kernel();
    let s = capture_store();
    let v = Veth::new("p");
    let tmp = tempfile::tempdir().unwrap();
    // JSON: the payload field.
    let json_path = tmp.path().join("out.json");
    let (child, err) = start_to_file(
        &s,
        &["--iface", &v.host, "--snaplen", "32", "-o", "json"],
        std::fs::File::create(&json_path).unwrap(),
    );
    let marker = 0x5e6f_0000 | (std::process::id() & 0xffff);
    send_frame(&v.host, None, marker);
    std::thread::sleep(Duration::from_millis(500));
    let (ok, said) = stop(child, &err);
    assert!(ok, "{said}");
    let hex = format!("{marker:08x}");
    let json = std::fs::read_to_string(&json_path).unwrap();
    let line = json
        .lines()
        .find(|l| l.contains(&format!("\"payload\":\"ffffffffffff02000000000188b5{hex}")))
        .unwrap_or_else(|| panic!("no frame with {hex} in {json}"));
    let e: Value = serde_json::from_str(line).unwrap();
    assert_eq!(e["payload_len"], 32, "{line}");
    assert_eq!(e["packet_size"], 64, "{line}");
    assert_eq!(
        e["payload"].as_str().unwrap().len(),
        64,
        "32 bytes in hex: {line}"
    );
    assert_eq!(e["ingress"], false, "{line}");

    // pcap-ng: tshark reads it.
    let pcap = tmp.path().join("out.pcapng");
    let (child, err) = start_to_file(
        &s,
        &["--iface", &v.host, "--snaplen", "32", "-o", "pcap-ng"],
        std::fs::File::create(&pcap).unwrap(),
    );
    let markers: Vec<u32> = (0..3).map(|i| marker ^ (0x0101_0000 * (i + 1))).collect();
    for m in &markers {
        send_frame(&v.host, None, *m);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (ok, said) = stop(child, &err);
    assert!(ok, "{said}");
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "eth.type",
            "-e",
            "frame.len",
            "-e",
            "frame.cap_len",
            "-e",
            "data.data",
        ])
        .output()
        .expect("this test reads the capture with tshark (cargo xtask setup installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tshark: {out:?}");
    for m in markers {
        let hex = format!("{m:08x}");
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.split('\t').nth(4).is_some_and(|d| d.starts_with(&hex)))
            .unwrap_or_else(|| panic!("no frame {hex} in:\n{text}"))
            .split('\t')
            .collect();
        assert_eq!(row[..4], [v.host.as_str(), "0x88b5", "64", "32"], "{text}");
    }
}

/// `--pf` (upstream's packet filter parameter): the expression, compiled
/// with tcpdump and put in front of the gadget's `gadget_pf_matches` hook,
/// keeps the matching frames only; a bad expression is tcpdump's error.
#[test]
fn a_packet_filter_keeps_the_matching_frames_only() {
    require_kernel();
    let s = capture_store();
    let v = Veth::new("f");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("out.json");
    let want = 0x7a00_0000 | (std::process::id() & 0xffff);
    let other = want ^ 0x0100_0000;
    let expr = format!("ether proto 0x88b5 and ether[14:4] = {want:#x}");
    let (child, err) = start_to_file(
        &s,
        &["--iface", &v.host, "--pf", &expr, "-o", "json"],
        std::fs::File::create(&path).unwrap(),
    );
    for m in [want, other, want, other] {
        send_frame(&v.host, None, m);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (ok, said) = stop(child, &err);
    assert!(ok, "{said}");
    let json = std::fs::read_to_string(&path).unwrap();
    let payloads: Vec<String> = json
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| e["payload"].as_str().unwrap_or_default().to_owned())
        .collect();
    let with = |m: u32| {
        payloads
            .iter()
            .filter(|p| p.get(28..36) == Some(format!("{m:08x}").as_str()))
            .count()
    };
    assert_eq!(with(want), 2, "{json}");
    assert_eq!(payloads.len(), 2, "nothing else passes: {json}");
    assert_eq!(with(other), 0);

    let out = s.run(&[
        "run",
        "tc_capture",
        "--iface",
        &v.host,
        "--pf",
        "ether proto and",
        "--timeout",
        "5",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--pf") && stderr.contains("syntax error"),
        "{stderr}"
    );
}

/// Without tcpdump, `--pf` is one clear error saying what to install.
#[test]
fn a_packet_filter_without_tcpdump_says_so() {
    require_kernel();
    let s = capture_store();
    let empty = tempfile::tempdir().unwrap();
    let out = s
        .ig()
        .env("PATH", empty.path())
        .args([
            "run",
            "tc_capture",
            "--iface",
            "lo",
            "--pf",
            "tcp",
            "--timeout",
            "5",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--pf needs tcpdump") && stderr.contains("apt-get install tcpdump"),
        "{stderr}"
    );
}
