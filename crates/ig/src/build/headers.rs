//! The author headers (`gadget-ebpf/include/gadget/*.h`), embedded in the
//! binary so that `ig image build` works on a host that has clang but not
//! this repository, and our layer over libbpf's BPF headers
//! (`gadget-ebpf/include/bpf/*.h`): each includes the system's header of
//! its name (`#include_next`) and adds what libbpf added after Debian
//! bookworm's 1.1 and upstream's gadgets use (`BPF_UPROBE`, the sixth
//! argument registers...). Written by us; a newer libbpf-dev wins, since
//! every definition is skipped when the system's header has it. Not taken
//! from a crate: libbpf-sys ships libbpf's sources, but its build script
//! either compiles libbpf or links the system's (a build dependency would
//! link it into our build script, and need libbpf-dev, libelf-dev and
//! zlib at `cargo build` time), and the gap to the libbpf 1.3 headers of
//! upstream's builder is a dozen macros.

use std::path::Path;

use super::BuildError;

/// Upstream's per-architecture directory name for `vmlinux.h`.
#[cfg(target_arch = "x86_64")]
pub const ARCH_DIR: &str = "amd64";
#[cfg(target_arch = "aarch64")]
pub const ARCH_DIR: &str = "arm64";

/// The `__TARGET_ARCH_*` libbpf's tracing macros expect.
#[cfg(target_arch = "x86_64")]
pub const TARGET_ARCH: &str = "x86";
#[cfg(target_arch = "aarch64")]
pub const TARGET_ARCH: &str = "arm64";

macro_rules! headers {
    ($const:ident, $dir:literal: $($name:literal),* $(,)?) => {
        /// `(file name, contents)` of every header in `include/
        #[doc = $dir]
        /// /`.
        pub const $const: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../../../../gadget-ebpf/include/", $dir, "/", $name)))),*
        ];
    };
}

/// Version of the author API (the contract in macros.h/buffer.h), bumped
/// when a gadget built by one `ig` would not run on another.
pub const AUTHOR_API_VERSION: &str = "1";

headers!(HEADERS, "gadget":
    "bits.bpf.h",
    "buffer.h",
    "common.h",
    "core_fixes.bpf.h",
    "filesystem.h",
    "filter.h",
    "fnv1a.h",
    "gpu_bridge_maps.h",
    "gpu_types.h",
    "kernel_stack_map.h",
    "macros.h",
    "maps.bpf.h",
    "mntns.h",
    "mntns_filter.h",
    "packetfilter.h",
    "sockets-map.h",
    "types.h",
    "user_stack_map.h",
);

headers!(LIBBPF_COMPAT, "bpf": "bpf_core_read.h", "bpf_helpers.h", "bpf_tracing.h");

/// Write the headers as `<root>/gadget/<name>` and `<root>/bpf/<name>`,
/// plus the empty arch directory that receives `vmlinux.h`.
pub fn write_all(root: &Path) -> Result<(), BuildError> {
    let arch = root.join("gadget").join(ARCH_DIR);
    let compat = root.join("bpf");
    for d in [&arch, &compat] {
        std::fs::create_dir_all(d).map_err(|source| BuildError::Write {
            path: d.clone(),
            source,
        })?;
    }
    for (dir, set) in [("gadget", HEADERS), ("bpf", LIBBPF_COMPAT)] {
        for (name, text) in set {
            let p = root.join(dir).join(name);
            std::fs::write(&p, text).map_err(|source| BuildError::Write {
                path: p.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_header_in_the_tree_is_embedded() {
        for (dir, set) in [("gadget", HEADERS), ("bpf", LIBBPF_COMPAT)] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../gadget-ebpf/include")
                .join(dir);
            let mut on_disk: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".h"))
                .collect();
            on_disk.sort();
            let embedded: Vec<&str> = set.iter().map(|(n, _)| *n).collect();
            assert_eq!(
                on_disk, embedded,
                "update the headers! lists in src/build/headers.rs ({dir}/)"
            );
        }
    }
}
