//! The loader hands aya a subset of the kernel's BTF to relocate against
//! (`ig::btf::subset`, docs/design/012-attach-time.md). These tests prove
//! that aya computes the same relocations from it as from the whole BTF,
//! for every object we can build: our gadgets and the fixtures written for
//! upstream's CO-RE constructs.
//!
//! By hand, more objects can be compared (upstream's gadgets built with our
//! `ig image build`, for instance): `IG_TEST_EXTRA_OBJECTS=DIR` adds every
//! `*.o` of DIR.

use std::path::Path;

use super::common::{TestStore, all_gadgets_store, repo, text};
use super::require_kernel;

const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The eBPF objects (ELF blobs) in `store`.
fn objects_in(store: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = store.join("blobs/sha256");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let b = std::fs::read(&p).unwrap();
        if b.starts_with(b"\x7fELF") {
            out.push((p.file_name().unwrap().to_string_lossy().into_owned(), b));
        }
    }
    out
}

/// The instructions of every function of `object` once aya relocated it
/// against `btf`, or aya's error.
fn relocated(object: &[u8], btf: &aya_obj::btf::Btf) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut o = aya_obj::Object::parse(object).map_err(|e| e.to_string())?;
    o.relocate_btf(btf).map_err(|e| e.to_string())?;
    Ok(o.functions
        .values()
        .map(|f| {
            let bytes = f
                .instructions
                .iter()
                .flat_map(|i| {
                    // SAFETY: bpf_insn is a plain 8-byte C struct.
                    let raw: [u8; 8] = unsafe { std::mem::transmute_copy(i) };
                    raw
                })
                .collect();
            (f.name.clone(), bytes)
        })
        .collect())
}

/// Our gadgets and the CO-RE fixtures (built with clang 19, as upstream's
/// builder builds) relocate to the same instructions against the subset of
/// their roots as against the whole kernel BTF. Objects the loader would
/// relocate against the whole BTF anyway (`core_roots` is `None`) are
/// counted, not compared.
#[test]
fn aya_relocates_every_object_the_same_against_the_kernel_btf_subset() {
    require_kernel();
    let kernel = std::fs::read(KERNEL_BTF).expect("the kernel's BTF");
    let whole = aya_obj::btf::Btf::parse(&kernel, object::Endianness::default()).unwrap();
    let ours = ig::btf::Btf::parse(&kernel).unwrap();

    let fixtures = TestStore::new();
    for name in [
        "compat_core_fixes",
        "compat_filesystem",
        "compat_gpu",
        "compat_ustack",
        "iter_tasks",
        "load_flex_args",
        "load_type_match",
    ] {
        let out = fixtures
            .ig()
            .env("IG_CLANG", "clang-19")
            .args(["image", "build"])
            .arg(repo().join("tests/fixtures").join(name))
            .args(["-t", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    }
    let mut objects = objects_in(&all_gadgets_store().path());
    objects.extend(objects_in(&fixtures.path()));
    if let Some(dir) = std::env::var_os("IG_TEST_EXTRA_OBJECTS") {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "o") {
                objects.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }

    let (mut compared, mut whole_only, mut relocations) = (0, 0, 0);
    for (name, object) in &objects {
        // As the loader prepares it: libbpf's conventions rewritten, the
        // relocations aya cannot compute done by ig.
        let object = ig::bpf::compat::for_aya(object);
        let object = ig::bpf::compat::resolve_core(&object, &ours, None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let Some(roots) = ig::bpf::compat::core_roots(&object) else {
            whole_only += 1;
            continue;
        };
        let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
        relocations += roots.len();
        let subset = ig::btf::subset::kernel_subset(&kernel, &roots).unwrap();
        let subset = aya_obj::btf::Btf::parse(&subset, object::Endianness::default())
            .unwrap_or_else(|e| panic!("{name}: aya refuses the subset: {e}"));
        let a = relocated(&object, &whole);
        let b = relocated(&object, &subset);
        assert!(
            a.is_ok(),
            "{name}: aya relocates it against the whole BTF: {a:?}"
        );
        assert_eq!(a, b, "{name} (roots {roots:?})");
        compared += 1;
    }
    assert!(
        compared >= 20 && relocations >= 20,
        "{compared} objects compared ({relocations} root types), {whole_only} need the whole \
         BTF: the gadgets and fixtures did not build?"
    );
}
