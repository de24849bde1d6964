//! Compatibility suite: gadgets written against upstream's author API build
//! with `ig image build` and compute what upstream's headers compute.
//!
//! Each `tests/fixtures/compat_*` gadget uses one group of author headers
//! the way upstream's gadgets do (filesystem.h as trace_open/trace_exec,
//! core_fixes.bpf.h, bits.bpf.h, fnv1a.h, maps.bpf.h, user_stack_map.h,
//! sockets-map.h/packetfilter.h on the UAPI headers, gpu_bridge_maps.h),
//! and sends the helpers' results to user space, where these tests compare
//! them with what the test process knows: its working directory, the
//! arguments it passed to a system call, FNV-1a computed here, the inode of
//! its own executable... `_Static_assert`s in the fixtures pin upstream's
//! struct layouts at build time. The tests also cover the toolchain side:
//! which clang builds, and the one-line errors of a misused header or a
//! missing clang, with the store left unchanged.
//!
//! Kernel tests (root): each looks only at its own process, thread or
//! marker values, so other tests and the host cannot make it flaky.

#[path = "../common/mod.rs"]
mod common;

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use common::{TestStore, repo, text};
use serde_json::Value;

fn require_kernel() {
    assert!(
        ig::bpf::privileges::check().is_ok(),
        "compat tests load eBPF: run them as root (as .ci/run does)"
    );
    assert!(
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "compat tests need a kernel with BTF (/sys/kernel/btf/vmlinux)"
    );
}

/// The compat fixtures, built once into a store shared by the tests.
fn store() -> &'static TestStore {
    static STORE: OnceLock<TestStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let s = TestStore::new();
        for name in [
            "compat_filesystem",
            "compat_core_fixes",
            "compat_ustack",
            "compat_networking",
            "compat_gpu",
        ] {
            s.build(&repo().join("tests/fixtures").join(name), name);
        }
        s
    })
}

/// A running `ig run -o json`, its stdout parsed line by line on a thread.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
}

impl Running {
    fn start(store: &TestStore, args: &[&str]) -> Self {
        let mut child = store
            .ig()
            .arg("run")
            .args(args)
            .args(["-o", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
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

    /// Calls `poke` every 200 ms (the first ones may come before the
    /// programs are attached) until the events seen satisfy `done`; then
    /// stops ig and returns every event. Panics after 30 s with what was
    /// seen and ig's stderr.
    fn collect(mut self, mut poke: impl FnMut(), done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let end = Instant::now() + Duration::from_secs(30);
        let mut next_poke = Instant::now();
        while !done(&self.seen) {
            let now = Instant::now();
            if now >= end || self.child.try_wait().unwrap().is_some() {
                let _ = self.child.kill();
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                let last: Vec<String> = self
                    .seen
                    .iter()
                    .rev()
                    .take(5)
                    .map(Value::to_string)
                    .collect();
                panic!(
                    "ig ended or 30 s passed before the expected events; {} seen, last:\n{}\nstderr:\n{err}",
                    self.seen.len(),
                    last.join("\n")
                );
            }
            if now >= next_poke {
                poke();
                next_poke = now + Duration::from_millis(200);
            }
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                self.seen.push(v);
            }
        }
        std::mem::take(&mut self.seen)
    }

    /// [`Running::collect`], then ig is killed and its stderr returned too.
    fn collect_with_stderr(
        mut self,
        poke: impl FnMut(),
        done: impl Fn(&[Value]) -> bool,
    ) -> (Vec<Value>, String) {
        let mut child_err = self.child.stderr.take();
        let pid = self.child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut err = String::new();
            if let Some(e) = child_err.as_mut() {
                let _ = std::io::Read::read_to_string(e, &mut err);
            }
            let _ = tx.send(err);
        });
        let events = self.collect(poke, done);
        // `collect` consumed self; its drop killed ig, which closes stderr.
        let err = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("ig {pid}'s stderr did not end"));
        (events, err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned number: {v}"))
}

fn gettid() -> u64 {
    // SAFETY: gettid has no arguments and cannot fail.
    u64::try_from(unsafe { libc::gettid() }).unwrap()
}

/// The change time of `path` as the kernel keeps it, in nanoseconds.
fn ctime_ns(path: &str) -> u64 {
    let m = std::fs::metadata(path).unwrap();
    u64::try_from(m.ctime()).unwrap() * 1_000_000_000 + u64::try_from(m.ctime_nsec()).unwrap()
}

#[test]
fn filesystem_h_gives_the_working_directory_and_full_paths() {
    require_kernel();
    let me = std::process::id().to_string();
    let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir
        .path()
        .canonicalize()
        .unwrap()
        .join(format!("igcompat-fs-{me}"));
    std::fs::write(&file, "x").unwrap();
    // A file with no path in any file system: get_path_str() gives its
    // dentry's name.
    let name = std::ffi::CString::new(format!("igcompat{me}")).unwrap();
    // SAFETY: a valid NUL-terminated name; the fd is ours.
    let memfd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    assert!(
        memfd >= 0,
        "memfd_create: {}",
        std::io::Error::last_os_error()
    );
    let via_proc = format!("/proc/self/fd/{memfd}");
    let want_file = file.display().to_string();
    let want_memfd = format!("memfd:igcompat{me}");

    let events = Running::start(store(), &["compat_filesystem", "--pid", &me]).collect(
        || {
            drop(std::fs::File::open(&file).unwrap());
            drop(std::fs::File::open(&via_proc).unwrap());
        },
        |seen| {
            seen.iter().any(|e| e["fpath"] == want_file.as_str())
                && seen.iter().any(|e| e["fpath"] == want_memfd.as_str())
        },
    );
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(memfd) };
    for e in &events {
        assert_eq!(e["proc"]["pid"], std::process::id(), "--pid: {e}");
        // get_path_str(&task->fs->pwd) is this process's working directory.
        assert_eq!(e["cwd"], cwd.display().to_string(), "{e}");
    }
    // Components cross mounts: the fixture's temp dir and /proc.
    assert!(events.iter().any(|e| e["fpath"] == want_file.as_str()));
}

/// `process_vm_readv` with non-zero flags fails at once (EINVAL) whatever
/// the other arguments: six free values for the fixture to read back.
fn marked_syscall(args: [u64; 6]) {
    // SAFETY: the kernel rejects the flags before it looks at anything.
    let r = unsafe {
        libc::syscall(
            libc::SYS_process_vm_readv,
            args[0],
            args[1],
            args[2],
            args[3],
            args[4],
            args[5],
        )
    };
    assert_eq!(r, -1);
}

fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[test]
fn core_fixes_bits_fnv1a_and_maps_compute_upstreams_values() {
    require_kernel();
    // The marker's low 16 bits are ours: this process's pid.
    let marker = 0x1617_c0de_0000_0000 | u64::from(std::process::id() & 0xffff);
    let cases: [(u64, u64); 4] = [(0, 0), (1, 1), (4096, 13), (1 << 40, 41)];
    let (a2, a3, a4, a5) = (
        0x0012_3456_u64,
        0x0102_0304_0506_0708_u64,
        0xaabb_ccdd_u64,
        5_u64,
    );
    let events = Running::start(store(), &["compat_core_fixes"]).collect(
        || {
            for (a1, _) in cases {
                marked_syscall([a1, a2, a3, a4, a5, marker]);
            }
        },
        |seen| seen.iter().filter(|e| e["arg6"] == marker).count() >= 8,
    );
    let ours: Vec<&Value> = events.iter().filter(|e| e["arg6"] == marker).collect();
    let exe_ctime = ctime_ns("/proc/self/exe");
    for e in &ours {
        assert_eq!(u(&e["proc"]["pid"]), u64::from(std::process::id()), "{e}");
        // gadget_get_syscall_nr / gadget_get_syscall_arg(1..6): what we passed.
        assert_eq!(u(&e["nr"]), libc::SYS_process_vm_readv as u64, "{e}");
        assert_eq!(
            (u(&e["arg2"]), u(&e["arg3"]), u(&e["arg4"]), u(&e["arg5"])),
            (a2, a3, a4, a5),
            "{e}"
        );
        assert_eq!(u(&e["arg7"]), 0, "no seventh argument: {e}");
        // get_task_state: TASK_RUNNING, in the middle of a system call.
        assert_eq!(e["task_state"], 0, "{e}");
        // gadget_get_ctime_nanosec_from_inode on our own executable.
        assert_eq!(u(&e["exe_ctime"]), exe_ctime, "{e}");
        // bits.bpf.h
        let (_, slot) = cases.iter().find(|(a1, _)| *a1 == u(&e["arg1"])).unwrap();
        assert_eq!(u(&e["slot_of_arg1"]), *slot, "get_slot_idx: {e}");
        assert_eq!(u(&e["log2_of_arg2"]), u64::from(a2.ilog2()), "log2: {e}");
        // fnv1a.h: the offset bases, and hashes of little-endian integers.
        assert_eq!(u(&e["fnv64_init"]), 0xcbf2_9ce4_8422_2325, "{e}");
        assert_eq!(u(&e["fnv32_init"]), 0x811c_9dc5, "{e}");
        assert_eq!(u(&e["fnv64_of_arg3"]), fnv1a_64(&a3.to_le_bytes()), "{e}");
        assert_eq!(
            u(&e["fnv32_of_arg3"]),
            u64::from(fnv1a_32(&a3.to_le_bytes())),
            "{e}"
        );
        let mut b = (a4 as u32).to_le_bytes().to_vec();
        b.extend((a4 as u16).to_le_bytes());
        b.push(a4 as u8);
        assert_eq!(u(&e["fnv64_of_arg4_u32_u16_u8"]), fnv1a_64(&b), "{e}");
    }
    // maps.bpf.h: bpf_map_lookup_or_try_init created the counter once and
    // found it afterwards: 1, 2, 3... in the order of the calls.
    let counts: Vec<u64> = ours.iter().map(|e| u(&e["calls"])).collect();
    assert_eq!(counts, (1..=counts.len() as u64).collect::<Vec<_>>());
}

/// Whether a `struct gadget_user_stack` field is empty: every member 0,
/// and the sub-fields ig adds (`addresses`, `buildid`, `symbols`) "".
fn is_empty_stack(us: &Value) -> bool {
    us.as_object().unwrap().values().all(|v| v == 0 || v == "")
}

/// Frames of a stack field ig printed (`a; b; c`).
fn frames(text: &Value) -> Vec<&str> {
    text.as_str()
        .unwrap()
        .split("; ")
        .filter(|f| !f.is_empty())
        .collect()
}

/// One `buildid` frame: `<40 hex digits> +<hex offset>`, or a bare hex
/// address where the kernel found no build id.
fn is_build_id_frame(f: &str) -> bool {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    match f.split_once(" +") {
        Some((id, off)) => id.len() == 40 && hex(id) && hex(off),
        None => hex(f),
    }
}

#[test]
fn user_stack_map_h_fills_upstreams_layout_from_uprobes_and_tracepoints() {
    require_kernel();
    let tid = gettid();
    let pid = u64::from(std::process::id());
    let exe = std::fs::metadata("/proc/self/exe").unwrap();
    let marker = 0x1617_c0de_5ac0_ffee_u64;
    let ig = Running::start(
        store(),
        &[
            "compat_ustack",
            "--tid",
            &tid.to_string(),
            "--collect-ustack",
            "--collect-build-id",
            "--ig_build_id_max_entries",
            "7",
        ],
    );
    let sized = std::cell::Cell::new(false);
    let events = ig.collect(
        || {
            // SAFETY: getppid cannot fail.
            unsafe { libc::getppid() };
            marked_syscall([1, 2, 3, 4, 0, marker]);
            if !sized.get() {
                sized.set(live_map_with_entries("ig_build_id", 7));
            }
        },
        |seen| {
            sized.get()
                && seen.iter().any(|e| e["from_uprobe"] == 1)
                && seen.iter().any(|e| e["from_uprobe"] == 0)
        },
    );
    for e in &events {
        assert_eq!(u(&e["proc"]["tid"]), tid, "--tid: {e}");
        let us = &e["ustack"];
        // The executable, by device, inode and mtime.
        assert_eq!(u(&us["inode"]), exe.ino(), "{e}");
        let dev = exe.dev();
        let major = (dev >> 8) & 0xfff | (dev >> 32) & 0xffff_f000;
        let minor = dev & 0xff | (dev >> 12) & 0xffff_ff00;
        assert_eq!((u(&us["major"]), u(&us["minor"])), (major, minor), "{e}");
        assert_eq!(us["mtime_sec"], exe.mtime(), "{e}");
        // The process as seen from the initial pid namespace.
        assert_eq!(u(&us["tgid_level0"]), pid, "{e}");
        assert_eq!(u(&us["pid_level0"]), tid, "{e}");
        assert_ne!(u(&us["pidns_level0"]), 0, "{e}");
        assert_ne!(u(&us["base_addr_hash"]), 0, "{e}");
        assert_ne!(u(&us["boot_timestamp"]), 0, "{e}");
        assert!(u(&us["stack_id"]) < 1 << 31, "a stack was stored: {e}");
        // Symbolized by ig under upstream's sub-fields of the struct,
        // whatever its name: the innermost frame is libc's.
        let text = us["symbols"].as_str().unwrap();
        let want = if e["from_uprobe"] == 1 {
            "getppid"
        } else {
            "syscall"
        };
        assert!(text.starts_with(want), "{want}: {e}");
        let addresses = frames(&us["addresses"]);
        assert_eq!(addresses.len(), frames(&us["symbols"]).len(), "{e}");
        assert!(
            addresses
                .iter()
                .all(|a| a.len() == 18 && a.starts_with("0x")),
            "{e}"
        );
        // --collect-build-id: one record per frame.
        let ids = frames(&us["buildid"]);
        assert_eq!(ids.len(), addresses.len(), "{e}");
        assert!(ids.iter().all(|f| is_build_id_frame(f)), "{e}");
    }
    // ig_build_id was sized by ig_build_id_max_entries (upstream's rule):
    // `collect` waited for a live ig_build_id of 7 entries.

    // Without --collect-ustack the stack is left empty.
    let events = Running::start(store(), &["compat_ustack", "--tid", &tid.to_string()]).collect(
        || marked_syscall([1, 2, 3, 4, 0, marker]),
        |seen| seen.iter().any(|e| e["from_uprobe"] == 0),
    );
    for e in events.iter().filter(|e| e["from_uprobe"] == 0) {
        assert!(is_empty_stack(&e["ustack"]), "{e}");
        assert_eq!(e["ustack"]["symbols"], "", "{e}");
    }
}

/// A program of ours, built with frame pointers: main calls
/// ig_ustack_outer, which calls ig_ustack_inner, which calls getppid()
/// (the fixture's uprobe). At the uprobe, the stack walk starts in getppid
/// and goes on from ig_ustack_inner's frame: its return address is in
/// ig_ustack_outer.
const USTACK_C: &str = r#"
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) void ig_ustack_inner(void)
{
	getppid();
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void ig_ustack_outer(void)
{
	ig_ustack_inner();
	__asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
	time_t end = time(NULL) + (argc > 1 ? atoi(argv[1]) : 3);
	while (time(NULL) < end) {
		ig_ustack_outer();
		usleep(20000);
	}
	return 0;
}
"#;

/// Upstream's naming: a `struct gadget_user_stack` called `ustack` (as in
/// upstream's trace_open) is symbolized into `ustack.symbols`, which names
/// the functions of the traced program, beside `ustack.addresses` and
/// (`--collect-build-id`) `ustack.buildid`, which holds the program's own
/// build id for its frames. No warning about the field's name.
#[test]
fn a_user_stack_field_of_any_name_is_symbolized_as_upstream() {
    require_kernel();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("ustack.c");
    std::fs::write(&src, USTACK_C).unwrap();
    let exe = tmp.path().join("igustack");
    let cc = Command::new("cc")
        .args(["-O0", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("cc is needed to build the traced program");
    assert!(cc.status.success(), "{}", text(&cc.stderr));
    let bytes = std::fs::read(&exe).unwrap();
    let build_id: String = {
        use object::Object as _;
        let elf = object::File::parse(bytes.as_slice()).unwrap();
        let id = elf.build_id().unwrap().expect("cc links a build id");
        id.iter().map(|b| format!("{b:02x}")).collect()
    };

    let mut child = Command::new(&exe).arg("25").spawn().unwrap();
    let pid = child.id().to_string();
    let ig = Running::start(
        store(),
        &[
            "compat_ustack",
            "--pid",
            &pid,
            "--collect-ustack",
            "--collect-build-id",
        ],
    );
    let outer = |e: &Value| {
        e["from_uprobe"] == 1
            && e["ustack"]["symbols"]
                .as_str()
                .is_some_and(|s| s.contains("ig_ustack_outer+0x"))
    };
    let (events, stderr) = ig.collect_with_stderr(|| {}, |seen| seen.iter().any(outer));
    let _ = child.kill();
    child.wait().unwrap();
    assert!(
        !stderr.contains("ustack"),
        "no warning about the field: {stderr}"
    );
    let e = events.iter().find(|e| outer(e)).unwrap();
    assert_eq!(e["proc"]["pid"].to_string(), pid, "{e}");
    let us = &e["ustack"];
    let symbols = frames(&us["symbols"]);
    assert!(symbols[0].starts_with("getppid"), "{e}");
    let at = symbols
        .iter()
        .position(|f| f.starts_with("ig_ustack_outer+0x"))
        .unwrap();
    assert!(
        symbols
            .get(at + 1)
            .is_some_and(|f| f.starts_with("main+0x")),
        "{e}"
    );
    let addresses = frames(&us["addresses"]);
    assert_eq!(addresses.len(), symbols.len(), "{e}");
    // The frame in our program: its return address lies in the program's
    // text, and its build id is the program's.
    let ids = frames(&us["buildid"]);
    assert_eq!(ids.len(), symbols.len(), "{e}");
    assert!(ids.iter().all(|f| is_build_id_frame(f)), "{e}");
    assert!(
        ids[at].starts_with(&format!("{build_id} +")),
        "{build_id} at frame {at}: {e}"
    );
}

/// Whether the kernel has a map named `name` of `entries` entries (other
/// gadgets may have maps of that name, of their own size).
fn live_map_with_entries(name: &str, entries: u64) -> bool {
    let Ok(out) = Command::new("bpftool").args(["-j", "map", "show"]).output() else {
        return false;
    };
    let maps: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    maps.as_array().is_some_and(|maps| {
        maps.iter()
            .any(|m| m["name"] == name && m["max_entries"] == entries)
    })
}

/// Our mount namespace's inode.
fn own_mntns() -> u64 {
    let l = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    ig::containers::parse_ns_link(l.to_str().unwrap()).unwrap()
}

#[test]
fn networking_fixture_builds_on_uapi_headers_and_reads_packets() {
    require_kernel();
    // Built by store(): sockets-map.h, packetfilter.h, filter.h, buffer.h,
    // mntns_filter.h and kernel_stack_map.h on <linux/bpf.h> and friends,
    // in a socket1 section. Any of them pulling vmlinux.h would fail the
    // build with "typedef redefinition".
    let store = store();
    let out = store.run(&["image", "inspect", "compat_networking", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dport = target.local_addr().unwrap().port();
    let sport = sock.local_addr().unwrap().port();
    let payload = b"igcompat";
    let events = Running::start(store, &["compat_networking", "--port", &dport.to_string()])
        .collect(
            || {
                sock.send_to(payload, target.local_addr().unwrap()).unwrap();
            },
            |seen| seen.iter().any(|e| e["sport"] == sport),
        );
    let e = events.iter().find(|e| e["sport"] == sport).unwrap();
    assert_eq!(e["dport"], dport, "{e}");
    // Ethernet (14) + IPv4 (20) + UDP (8) + payload.
    assert_eq!(u(&e["len"]), 14 + 20 + 8 + payload.len() as u64, "{e}");
    // Both sockets are ours, made before ig started: the socket enricher
    // found them (its iterator), gadget_socket_lookup finds the owner in
    // the namespace the dispatcher wrote into skb->cb[0], and
    // gadget_process_populate_from_socket fills the process from it.
    assert_eq!(e["owner_found"], true, "{e}");
    assert_eq!(e["proc"]["pid"], std::process::id(), "{e}");
    assert_eq!(e["proc"]["mntns_id"], own_mntns(), "{e}");
    // The packet filter placeholder matches every non-empty packet.
    assert_eq!(e["pf_matched"], true, "{e}");
}

/// Without the GPU bridge, its maps are made for the run, empty and not
/// pinned: the gadget runs (and finds no GPU process), one warning names
/// the four maps, and nothing is pinned afterwards.
#[test]
fn gpu_bridge_maps_build_and_run_on_empty_maps_of_their_own() {
    require_kernel();
    let out = store().run(&["run", "compat_gpu", "--timeout", "1", "-o", "json"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(text(&out.stdout), "", "no GPU process, no event");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].contains(
            "maps gpu_device, gpu_meta, gpu_per_pid, gpu_per_pid_per_device are pinned by name"
        ) && lines[0].contains("empty and not pinned"),
        "{err}"
    );
    // Nothing was pinned.
    for e in std::fs::read_dir("/sys/fs/bpf").unwrap() {
        let n = e.unwrap().file_name();
        assert!(!n.to_string_lossy().starts_with("gpu_"), "{n:?} pinned");
    }
}

/// A gadget directory with this `program.bpf.c`.
fn gadget_dir(source: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("gadget.yaml"), "name: misuse\n").unwrap();
    std::fs::write(d.path().join("program.bpf.c"), source).unwrap();
    d
}

/// `ig image build` of `dir` into a fresh store: (success, stderr, images).
fn build_into_new_store(dir: &Path, env: &[(&str, &str)]) -> (bool, String, String) {
    let store = TestStore::new();
    let mut c = store.ig();
    c.args(["image", "build", dir.to_str().unwrap(), "-t", "misuse"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let list = store.run(&["image", "list"]);
    (out.status.success(), text(&out.stderr), text(&list.stdout))
}

#[test]
fn misused_headers_fail_naming_the_file_and_line_and_store_nothing() {
    let head = "#include <vmlinux.h>\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_tracing.h>\n";
    let cases: [(&str, String, &str); 3] = [
        (
            // A tracepoint context is not what gadget_get_user_stack takes.
            "gadget_get_user_stack",
            format!(
                "{head}#include <gadget/user_stack_map.h>\nstruct gadget_user_stack us;\nSEC(\"tracepoint/syscalls/sys_enter_getpid\")\nint p(void *ctx)\n{{\n\tgadget_get_user_stack(ctx, &us);\n\treturn 0;\n}}\nchar LICENSE[] SEC(\"license\") = \"GPL\";\n"
            ),
            "program.bpf.c:9:",
        ),
        (
            "gadget_pf_matches",
            format!(
                "{head}#include <gadget/packetfilter.h>\nGADGET_PF();\nSEC(\"socket\")\nint p(struct __sk_buff *skb)\n{{\n\treturn gadget_pf_matches(skb, 0);\n}}\nchar LICENSE[] SEC(\"license\") = \"GPL\";\n"
            ),
            "program.bpf.c:9:",
        ),
        (
            // sockets-map.h needs <vmlinux.h> or <linux/types.h> first.
            "sockets-map.h",
            "#include <gadget/sockets-map.h>\nchar LICENSE[] __attribute__((section(\"license\"))) = \"GPL\";\n".to_owned(),
            "program.bpf.c:1:",
        ),
    ];
    for (what, source, at) in cases {
        let dir = gadget_dir(&source);
        let (ok, err, images) = build_into_new_store(dir.path(), &[]);
        assert!(!ok, "{what}: built");
        assert!(err.contains(what), "{what}: {err}");
        assert!(err.contains(at), "{what}: the gadget's line {at}: {err}");
        assert_eq!(
            images.lines().count(),
            1,
            "{what}: only the header line: {images}"
        );
    }
}

/// A directory holding links to the given tools, to be the whole PATH.
fn tool_dir(tools: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, target) in tools {
        std::os::unix::fs::symlink(target, d.path().join(name)).unwrap();
    }
    d
}

fn which(name: &str) -> PathBuf {
    let p = Path::new("/usr/bin").join(name);
    assert!(p.exists(), "{name} is installed by cargo xtask setup");
    p
}

#[test]
fn image_build_takes_the_newest_clang_and_says_so() {
    let gadget = repo().join("tests/fixtures/compat_core_fixes");
    let clang14 = which("clang-14");
    let clang19 = which("clang-19");
    let strip19 = which("llvm-strip-19");
    let tools = tool_dir(&[
        ("clang", clang14.to_str().unwrap()),
        ("clang-19", clang19.to_str().unwrap()),
        ("llvm-strip", which("llvm-strip").to_str().unwrap()),
        ("llvm-strip-19", strip19.to_str().unwrap()),
    ]);
    let path = tools.path().to_str().unwrap();
    let store = TestStore::new();
    // `ig -v image build` with this PATH (and IG_CLANG, if given): stderr.
    let build = |clang: Option<&Path>| {
        let mut c = store.ig();
        c.env("PATH", path);
        if let Some(clang) = clang {
            c.env("IG_CLANG", clang);
        }
        let out = c
            .args(["-v", "image", "build", gadget.to_str().unwrap(), "-t", "x"])
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        err
    };
    let err = build(None);
    assert!(
        err.contains(
            "compiling with clang-19 (version 19) and llvm-strip-19 (the newest clang on PATH"
        ),
        "{err}"
    );
    // IG_CLANG wins, and an old clang is warned about.
    let err = build(Some(&clang14));
    assert!(
        err.contains(&format!("compiling with {}", clang14.display())),
        "{err}"
    );
    assert!(err.contains("from IG_CLANG"), "{err}");
    assert!(err.contains("older than upstream's builder"), "{err}");

    // No clang at all: one error naming what to install, nothing stored.
    let empty = tool_dir(&[]);
    let (ok, err, images) =
        build_into_new_store(&gadget, &[("PATH", empty.path().to_str().unwrap())]);
    assert!(!ok);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("no clang on PATH") && errors[0].contains("clang-19"),
        "{err}"
    );
    assert_eq!(images.lines().count(), 1, "{images}");
}

#[test]
fn trace_exec_paths_and_change_times_come_from_the_new_headers() {
    require_kernel();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let sub = root.join("cwd");
    std::fs::create_dir(&sub).unwrap();
    let prog = root.join(format!("igcompat-exec{}", std::process::id() % 10000));
    std::fs::copy("/bin/true", &prog).unwrap();
    let prog_s = prog.display().to_string();
    let events = Running::start(common::gadget_store(), &["trace_exec", "--paths"]).collect(
        || {
            let _ = Command::new(&prog).current_dir(&sub).status();
        },
        |seen| seen.iter().any(|e| e["args"] == prog_s.as_str()),
    );
    let e = events
        .iter()
        .find(|e| e["args"] == prog_s.as_str())
        .unwrap();
    // filesystem.h: the working directory at the exec, the executable.
    assert_eq!(e["cwd"], sub.display().to_string(), "{e}");
    assert_eq!(e["exepath"], prog_s.as_str(), "{e}");
    // core_fixes.bpf.h: the change times of the executable and of the
    // parent's (this test binary).
    assert_eq!(u(&e["ctime"]), ctime_ns(&prog_s), "{e}");
    assert_eq!(u(&e["pctime"]), ctime_ns("/proc/self/exe"), "{e}");
}

#[test]
fn trace_open_paths_resolve_symlinks_with_filesystem_h() {
    require_kernel();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let target = root.join("target");
    std::fs::write(&target, "x").unwrap();
    let link = root.join(format!("igcompat-link{}", std::process::id()));
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let link_s = link.display().to_string();
    let me = std::process::id().to_string();
    let events = Running::start(
        common::gadget_store(),
        &["trace_open", "--paths", "--pid", &me],
    )
    .collect(
        || drop(std::fs::File::open(&link).unwrap()),
        |seen| seen.iter().any(|e| e["fname"] == link_s.as_str()),
    );
    let e = events
        .iter()
        .find(|e| e["fname"] == link_s.as_str())
        .unwrap();
    // The caller's path is the link; the opened file is its target.
    assert_eq!(e["fpath"], target.display().to_string(), "{e}");

    // Without --paths the record ends before fpath, which ig zero-fills.
    let events = Running::start(common::gadget_store(), &["trace_open", "--pid", &me]).collect(
        || drop(std::fs::File::open(&link).unwrap()),
        |seen| seen.iter().any(|e| e["fname"] == link_s.as_str()),
    );
    let e = events
        .iter()
        .find(|e| e["fname"] == link_s.as_str())
        .unwrap();
    assert_eq!(e["fpath"], "", "{e}");
    assert_eq!(
        e["flags"], "O_RDONLY|O_CLOEXEC",
        "the members before fpath: {e}"
    );
}
