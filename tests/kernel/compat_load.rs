//! Issue 18: objects built the way upstream's builder builds them (clang
//! 19, the same flags) load and run. Each fixture `tests/fixtures/load_*`
//! reproduces, with constructs written in the fixture, one failure of
//! upstream's gadgets on our loader; each test here runs it and checks the
//! exact events of its own pid (or port), then that nothing stays loaded.

use super::*;

/// The compiler upstream's builder uses is clang 18; 19 emits the same
/// BTF and CO-RE records, and is the one setup installs (clang 14, the
/// system default, cannot compile `bpf_core_type_matches`).
const CLANG: &str = "clang-19";

/// A store with fixture `name` built into it with [`CLANG`], tagged `name`.
fn fixture_store(name: &str) -> TestStore {
    let s = TestStore::new();
    let dir = repo().join("tests/fixtures").join(name);
    let out = s
        .ig()
        .env("IG_CLANG", CLANG)
        .args(["image", "build", dir.to_str().unwrap(), "-t", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building {name} with {CLANG} (cargo xtask setup installs it):\n{}",
        text(&out.stderr)
    );
    s
}

/// Whether JSON event `l` comes from this test process.
fn ours(l: &str) -> bool {
    serde_json::from_str::<Value>(l)
        .is_ok_and(|v| v["proc"]["pid"].as_u64() == Some(u64::from(std::process::id())))
}

fn getpid() {
    // SAFETY: a plain system call (libc::getpid may not reach the kernel).
    unsafe { libc::syscall(libc::SYS_getpid) };
}

/// Stop `ig` and check that no program, link or map it held is left.
/// Returns its stderr.
fn stop_and_check_released(ig: Running) -> String {
    stop_and_check_released_but(ig, &[])
}

/// [`stop_and_check_released`], but for the maps `others` (ids of maps
/// another program owns, such as a pinned map ig used).
fn stop_and_check_released_but(ig: Running, others: &[u64]) -> String {
    let pid = ig.child.id();
    let held: Vec<(&str, Vec<u64>)> = ["prog", "link", "map"]
        .into_iter()
        .map(|k| {
            let mut ids = bpf_ids_of(k, pid);
            if k == "map" {
                ids.retain(|id| !others.contains(id));
            }
            (k, ids)
        })
        .collect();
    assert!(!held[0].1.is_empty(), "ig {pid} holds programs");
    let (status, stderr) = ig.interrupt();
    assert!(status.success(), "exit {status}: {stderr}");
    super::assert_released(&held);
    stderr
}

/// `(map_type, max_entries)` of every map `pid` holds, from fdinfo.
fn maps_of(pid: u32) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(info) = std::fs::read_to_string(e.unwrap().path()) else {
            continue;
        };
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(t), Some(n)) = (field("map_type:"), field("max_entries:")) {
            out.push((t, n));
        }
    }
    out.sort_unstable();
    out
}

/// Items 1 and 6: upstream's user_stack_map.h maps (empty program arrays
/// declared with `__array(values, int())`, a per-CPU parameters map, a map
/// sized by `<map>_max_entries`) load and stay harmless. A map pinned by
/// name is its owner's: without the pin the gadget runs on an empty map of
/// its own, with one warning naming it, and nothing is pinned or left
/// loaded after it; with the pin (made here with bpftool, as the GPU
/// bridge would) the gadget reads that very map, and ig leaves the pin as
/// it found it.
#[test]
fn upstream_map_shapes_load_and_stay_harmless() {
    require_kernel();
    let s = fixture_store("load_prog_array");
    let pinned = Path::new("/sys/fs/bpf/fixture_pinned");
    assert!(
        !pinned.exists(),
        "{} is left from another run",
        pinned.display()
    );
    let args = [
        "load_prog_array",
        "-o",
        "json",
        "--fixture_sized_max_entries",
        "7",
    ];
    let check_shapes = |ig: &Running| {
        let maps = maps_of(ig.child.id());
        // BPF_MAP_TYPE_PROG_ARRAY (3), one entry each; the HASH (1) sized
        // by the parameter.
        assert_eq!(
            maps.iter().filter(|m| **m == (3, 1)).count(),
            2,
            "two program arrays: {maps:?}"
        );
        assert!(maps.contains(&(1, 7)), "a hash map of 7 entries: {maps:?}");
    };

    // No pin: a map of this run's own, empty, and one warning.
    let mut ig = Running::start(&s, &args);
    let line = ig.wait_for(Duration::from_secs(20), getpid, ours);
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["fell_through"], 1, "{line}");
    assert_eq!(ev["correlation_id"], 0, "{line}");
    assert_eq!(ev["pinned_value"], 0, "an empty map of ig's own: {line}");
    check_shapes(&ig);
    assert!(!pinned.exists(), "{} was pinned", pinned.display());
    let err = stop_and_check_released(ig);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("fixture_pinned"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning naming the map: {err}");
    assert!(
        warnings[0].contains("map fixture_pinned is pinned by name")
            && warnings[0].contains("nothing is pinned under /sys/fs/bpf for it")
            && warnings[0].contains("using a map of this run's own, empty and not pinned"),
        "{err}"
    );
    assert!(!pinned.exists(), "{} was pinned", pinned.display());

    // The owner's map, as the GPU bridge would pin it, holding 42.
    let made = Command::new("bpftool")
        .args(["map", "create"])
        .arg(pinned)
        .args(["type", "array", "key", "4", "value", "8", "entries", "1"])
        .args(["name", "fixture_pinned"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    struct Unpin<'a>(&'a Path);
    impl Drop for Unpin<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _unpin = Unpin(pinned);
    let set = Command::new("bpftool")
        .args(["map", "update", "pinned"])
        .arg(pinned)
        .args([
            "key", "0", "0", "0", "0", "value", "42", "0", "0", "0", "0", "0", "0", "0",
        ])
        .output()
        .unwrap();
    assert!(set.status.success(), "{}", text(&set.stderr));
    let shown = Command::new("bpftool")
        .args(["-j", "map", "show", "pinned"])
        .arg(pinned)
        .output()
        .unwrap();
    let owners_map = serde_json::from_slice::<Value>(&shown.stdout).unwrap()["id"]
        .as_u64()
        .expect("the pinned map's id");

    let mut ig = Running::start(&s, &args);
    let line = ig.wait_for(Duration::from_secs(20), getpid, ours);
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["fell_through"], 1, "{line}");
    assert_eq!(ev["pinned_value"], 42, "the owner's map: {line}");
    check_shapes(&ig);
    assert!(
        bpf_ids_of("map", ig.child.id()).contains(&owners_map),
        "ig did not use the pinned map {owners_map}"
    );
    let err = stop_and_check_released_but(ig, &[owners_map]);
    assert!(!err.contains("fixture_pinned"), "no warning: {err}");
    assert!(pinned.exists(), "ig removed its owner's pin");
    assert!(bpf_id_exists("map", owners_map), "the owner's map is gone");
}

/// Item 2: `ctx->args[0]` and `ctx->args[1]` through the flexible array of
/// struct syscall_trace_enter, relocated for the kernel by ig.
#[test]
fn syscall_arguments_read_through_a_flexible_array() {
    require_kernel();
    let s = fixture_store("load_flex_args");
    let mut ig = Running::start(&s, &["load_flex_args", "-o", "json"]);
    // No such process: the call fails with ESRCH and signals nobody.
    let (target, sig) = (987_654, libc::SIGWINCH);
    let line = ig.wait_for(
        Duration::from_secs(20),
        // SAFETY: kill(2) of a pid that does not exist.
        || unsafe {
            libc::kill(target, sig);
        },
        ours,
    );
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["target"], target, "{line}");
    assert_eq!(ev["sig"], sig, "{line}");
    stop_and_check_released(ig);
}

/// Item 1 (profile_blockio): `bpf_core_type_matches()` answered by ig
/// against the kernel's prototype of sched_process_fork.
#[test]
fn type_matches_are_answered_against_the_kernel() {
    require_kernel();
    let s = fixture_store("load_type_match");
    let mut ig = Running::start(&s, &["load_type_match", "-o", "json"]);
    let line = ig.wait_for(Duration::from_secs(20), getpid, ours);
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (&ev["same"], &ev["fewer"], &ev["other"]),
        (&Value::from(1), &Value::from(0), &Value::from(0)),
        "{line}"
    );
    stop_and_check_released(ig);
}

/// Item 3: a socket filter in section `socket1` whose program has
/// relocations sees our UDP datagram.
#[test]
fn numbered_socket_section_with_relocations_sees_our_packet() {
    require_kernel();
    let s = fixture_store("load_socket1");
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sport = tx.local_addr().unwrap().port();
    let port_arg = port.to_string();
    let mut ig = Running::start(&s, &["load_socket1", "-o", "json", "--port", &port_arg]);
    let line = ig.wait_for(
        Duration::from_secs(20),
        || {
            tx.send_to(b"ig-socket1", ("127.0.0.1", port)).unwrap();
        },
        |l| l.contains("\"dport\""),
    );
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["dport"], port, "{line}");
    assert_eq!(ev["sport"], sport, "{line}");
    // Ethernet (14) + IPv4 (20) + UDP (8) + 10 bytes.
    assert_eq!(ev["len"], 52, "{line}");
    stop_and_check_released(ig);
}

/// Item 4: `defaultValue: ""` leaves the compiled values; a value given
/// on the command line still replaces them.
#[test]
fn empty_defaults_keep_the_compiled_values() {
    require_kernel();
    let s = fixture_store("load_empty_default");
    for (args, answer) in [(&[][..], 42), (&["--answer", "7"][..], 7)] {
        let mut all = vec!["load_empty_default", "-o", "json"];
        all.extend_from_slice(args);
        let mut ig = Running::start(&s, &all);
        let line = ig.wait_for(Duration::from_secs(20), getpid, ours);
        let ev: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(ev["answer"], answer, "{args:?}: {line}");
        assert_eq!(ev["enabled"], true, "{args:?}: {line}");
        stop_and_check_released(ig);
    }
}

/// The running kernel's build configuration, read the way a person reads
/// it (not through ig): `/boot/config-$(uname -r)`, else `/proc/config.gz`
/// through gzip.
fn kernel_config() -> String {
    let boot = format!("/boot/config-{}", uname_release());
    if let Ok(text) = std::fs::read_to_string(&boot) {
        return text;
    }
    let out = std::process::Command::new("gzip")
        .args(["-dc", "/proc/config.gz"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "this test needs the kernel's configuration ({boot} or /proc/config.gz): {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn uname_release() -> String {
    let out = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .unwrap();
    text(&out.stdout).trim().to_owned()
}

/// The value `CONFIG_NAME=value` gives `name` in `config`.
fn config_value<'a>(config: &'a str, name: &str) -> Option<&'a str> {
    config
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
}

/// Item 7: `.kconfig` externs read the running kernel's values, stored
/// the way libbpf stores them: LINUX_KERNEL_VERSION is KERNEL_VERSION() of
/// uname's release, y/m/n a bool, a tristate (1/2/0) or the letter, numbers
/// (decimal and hexadecimal) and strings as the configuration says, a
/// missing __weak option 0.
#[test]
fn kconfig_externs_read_the_running_kernels_values() {
    require_kernel();
    let config = kernel_config();
    let s = fixture_store("load_kconfig");
    let mut ig = Running::start(&s, &["load_kconfig", "-o", "json"]);
    let line = ig.wait_for(Duration::from_secs(20), getpid, ours);
    let ev: Value = serde_json::from_str(&line).unwrap();

    let release = uname_release();
    let mut numbers = release.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u64>()
            .unwrap_or(0)
    });
    let (a, b, c) = (
        numbers.next().unwrap(),
        numbers.next().unwrap(),
        numbers.next().unwrap_or(0),
    );
    assert_eq!(
        ev["kernel_version"],
        (a << 16) + (b << 8) + c.min(255),
        "{release}: {line}"
    );
    let option = |name: &str| {
        config_value(&config, name).unwrap_or_else(|| panic!("this kernel does not set {name}"))
    };
    let tristate = |v: &str| match v {
        "y" => 1,
        "m" => 2,
        _ => 0,
    };
    assert_eq!(
        ev["bpf_syscall"],
        u8::from(option("CONFIG_BPF_SYSCALL") == "y"),
        "{line}"
    );
    assert_eq!(ev["bpf_jit"], tristate(option("CONFIG_BPF_JIT")), "{line}");
    assert_eq!(
        ev["perf_events"],
        option("CONFIG_PERF_EVENTS").as_bytes()[0],
        "{line}"
    );
    assert_eq!(
        ev["hz"],
        option("CONFIG_HZ").parse::<i64>().unwrap(),
        "{line}"
    );
    let physical_start = config_value(&config, "CONFIG_PHYSICAL_START").map_or(0, |v| {
        u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
    });
    assert_eq!(ev["physical_start"], physical_start, "{line}");
    assert_eq!(
        ev["localversion"],
        option("CONFIG_LOCALVERSION").trim_matches('"'),
        "{line}"
    );
    assert_eq!(ev["absent"], 0, "{line}");
    // The kernel has the bpf syscall's wrapper (it takes a struct pt_regs)
    // if kallsyms lists it.
    let wrapper = if cfg!(target_arch = "aarch64") {
        "__arm64_sys_bpf"
    } else {
        "__x64_sys_bpf"
    };
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
    let has_wrapper = kallsyms
        .lines()
        .any(|l| l.ends_with(&format!(" {wrapper}")));
    assert_eq!(ev["syscall_wrapper"], u8::from(has_wrapper), "{line}");
    // The values are in a map of their own, read-only for the program
    // (BPF_F_RDONLY_PROG) and frozen, as libbpf's .kconfig map: the
    // verifier knows them.
    let kconfig_maps: Vec<String> = bpf_ids_of("map", ig.child.id())
        .into_iter()
        .map(|id| {
            let out = std::process::Command::new("bpftool")
                .args(["map", "show", "id", &id.to_string()])
                .output()
                .unwrap();
            text(&out.stdout)
        })
        .filter(|m| m.contains("name .rodata.kconfig"))
        .collect();
    assert_eq!(kconfig_maps.len(), 1, "{kconfig_maps:?}");
    assert!(
        kconfig_maps[0].contains("flags 0x80") && kconfig_maps[0].contains("frozen"),
        "{}",
        kconfig_maps[0]
    );
    stop_and_check_released(ig);
}

/// Item 7: an option the kernel does not set, not declared __weak, cannot
/// be given a value: one error naming it, before anything is created in
/// the kernel (the `maps created` stage of `-v` is never reached).
#[test]
fn a_kconfig_option_the_kernel_lacks_is_one_error_naming_it() {
    require_kernel();
    let s = fixture_store("load_kconfig_missing");
    let out = s.run(&["-v", "run", "load_kconfig_missing", "--timeout", "5"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains(".kconfig extern CONFIG_IG_FIXTURE_ABSENT of the object")
            && errors[0].contains("does not set it")
            && errors[0].contains("__weak"),
        "{err}"
    );
    assert!(err.contains("debug: operators:"), "-v stages: {err}");
    assert!(!err.contains("maps created"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
