//! Symbolization against real ELF files: one compiled here with `cc`, and
//! this test binary itself, mapped in this very process.

use std::process::Command;

use super::*;

/// A shared library with two functions, built with `cc`; returns its path
/// and the `nm` addresses of the functions.
fn tiny_elf(dir: &std::path::Path, strip: bool) -> (std::path::PathBuf, u64, u64) {
    let src = dir.join("tiny.c");
    std::fs::write(
        &src,
        "int ig_tiny_one(int x) { return x * 3 + 1; }\n\
         int ig_tiny_two(int x) { int s = 0; for (int i = 0; i < x; i++) s += ig_tiny_one(i); return s; }\n",
    )
    .unwrap();
    let so = dir.join(if strip { "tiny-stripped.so" } else { "tiny.so" });
    let st = Command::new("cc")
        .args(["-O0", "-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .status()
        .expect("cc is needed for this test");
    assert!(st.success());
    let nm = Command::new("nm").arg("-D").arg(&so).output().unwrap();
    let text = String::from_utf8(nm.stdout).unwrap();
    let addr = |name: &str| {
        text.lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .and_then(|l| u64::from_str_radix(l.split(' ').next()?, 16).ok())
            .unwrap_or_else(|| panic!("{name} not in nm -D output:\n{text}"))
    };
    let (one, two) = (addr("ig_tiny_one"), addr("ig_tiny_two"));
    if strip {
        assert!(Command::new("strip").arg(&so).status().unwrap().success());
    }
    (so, one, two)
}

#[test]
fn elf_symbols_of_a_compiled_library_with_and_without_symtab() {
    let dir = tempfile::tempdir().unwrap();
    for strip in [false, true] {
        let (so, one, two) = tiny_elf(dir.path(), strip);
        let syms = ElfSymbols::parse(&std::fs::read(&so).unwrap()).unwrap();
        assert!(!syms.is_empty());
        let f = syms.resolve_vaddr(two + 5).unwrap();
        assert_eq!((f.name, f.offset), ("ig_tiny_two", 5), "strip={strip}");
        assert_eq!(
            syms.resolve_vaddr(one).unwrap().to_string(),
            "ig_tiny_one+0x0"
        );
        // Text of a shared object is mapped at file offset == vaddr here,
        // but go through the segments as the symbolizer does.
        let off = (0..1 << 20).find(|o| syms.offset_to_vaddr(*o) == Some(two + 2));
        assert!(off.is_some(), "no file offset maps to {two:#x}");
        assert_eq!(
            syms.resolve_offset(off.unwrap()).unwrap().name,
            "ig_tiny_two"
        );
    }
    assert!(ElfSymbols::parse(b"not an elf file").is_err());
}

#[inline(never)]
fn ig_symbols_probe_function(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_mul(7)
}

#[test]
fn user_addresses_of_this_process_resolve_and_files_are_cached() {
    let addr = ig_symbols_probe_function as *const () as u64;
    assert_eq!(ig_symbols_probe_function(1), 7);
    let pid = std::process::id();
    let exe_inode = {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self/exe").unwrap().ino()
    };
    let mut s = UserSymbolizer::new();
    let mut out = String::new();
    s.symbolize(pid, exe_inode, &[addr + 1, 0x10], &mut out);
    let (first, second) = out.split_once("; ").unwrap();
    assert!(
        first.contains("ig_symbols_probe_function") && first.ends_with("+0x1"),
        "{out}"
    );
    assert_eq!(second, UNKNOWN);
    assert_eq!(s.parsed, 1);

    // Another batch re-reads the maps but not the file.
    s.new_batch();
    out.clear();
    s.symbolize(pid, exe_inode, &[addr], &mut out);
    assert!(
        out.contains("ig_symbols_probe_function") && out.ends_with("+0x0"),
        "{out}"
    );
    assert_eq!(s.parsed, 1);

    // A different executable inode: the pid was reused, nothing is named.
    s.new_batch();
    out.clear();
    s.symbolize(pid, exe_inode + 1, &[addr, addr], &mut out);
    assert_eq!(out, "[unknown]; [unknown]");
}

#[test]
fn a_gone_process_prints_unknown_and_pids_follow_our_namespace() {
    let mut s = UserSymbolizer::with_proc_root("/nonexistent-proc");
    let mut out = String::new();
    s.symbolize(4242, 0, &[0x1000], &mut out);
    assert_eq!(out, UNKNOWN);
    // Without a namespace to compare with, the root namespace's pid.
    let owner = StackOwner {
        exe_inode: 1,
        pid_level0: 100,
        pidns_level0: 5,
        pid_level1: 7,
        pidns_level1: 6,
    };
    assert_eq!(s.pid_of(&owner), Some(100));

    let s = UserSymbolizer::new();
    let ours = {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self/ns/pid").unwrap().ino() as u32
    };
    let level1 = StackOwner {
        pidns_level1: ours,
        ..owner
    };
    assert_eq!(s.pid_of(&level1), Some(7));
    let level0 = StackOwner {
        pidns_level0: ours,
        ..owner
    };
    assert_eq!(s.pid_of(&level0), Some(100));
    assert_eq!(s.pid_of(&owner), None);
}

#[test]
fn maps_and_elf_together_for_a_synthetic_process() {
    // A maps text pointing at the compiled library, as a process that
    // mapped it at 0x7f0000000000 would show it.
    let dir = tempfile::tempdir().unwrap();
    let (so, _, two) = tiny_elf(dir.path(), false);
    let syms = ElfSymbols::parse(&std::fs::read(&so).unwrap()).unwrap();
    let off = (0..1 << 20)
        .step_by(0x1000)
        .find(|o| {
            syms.offset_to_vaddr(*o)
                .is_some_and(|v| v <= two && two - v < 0x1000)
        })
        .unwrap();
    let page_vaddr = syms.offset_to_vaddr(off).unwrap();
    let maps = parse_maps(&format!(
        "7f0000000000-7f0000001000 r-xp {off:08x} 08:01 1 {}\n",
        so.display()
    ));
    let m = find_mapping(&maps, 0x7f0000000000 + (two - page_vaddr) + 4).unwrap();
    let f = syms
        .resolve_offset(m.file_offset(0x7f0000000000 + (two - page_vaddr) + 4))
        .unwrap();
    assert_eq!(f.to_string(), "ig_tiny_two+0x4");
}
