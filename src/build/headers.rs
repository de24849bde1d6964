//! The author headers (`gadget-ebpf/include/gadget/*.h`), embedded in the
//! binary so that `ig image build` works on a host that has clang but not
//! this repository.

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
    ($($name:literal),* $(,)?) => {
        /// `(file name, contents)` of every header in `include/gadget/`.
        pub const HEADERS: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../../gadget-ebpf/include/gadget/", $name)))),*
        ];
    };
}

/// Version of the author API (the contract in macros.h/buffer.h), bumped
/// when a gadget built by one `ig` would not run on another.
pub const AUTHOR_API_VERSION: &str = "1";

headers!(
    "buffer.h",
    "common.h",
    "filter.h",
    "kernel_stack_map.h",
    "macros.h",
    "mntns.h",
    "mntns_filter.h",
    "types.h",
    "user_stack_map.h"
);

/// Write the headers as `<root>/gadget/<name>`, plus the empty arch
/// directory that receives `vmlinux.h`.
pub fn write_all(root: &Path) -> Result<(), BuildError> {
    let dir = root.join("gadget");
    let arch = dir.join(ARCH_DIR);
    std::fs::create_dir_all(&arch).map_err(|source| BuildError::Write {
        path: arch.clone(),
        source,
    })?;
    for (name, text) in HEADERS {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|source| BuildError::Write {
            path: p.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_header_in_the_tree_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("gadget-ebpf/include/gadget");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".h"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = HEADERS.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            on_disk, embedded,
            "update the headers! list in src/build/headers.rs"
        );
    }
}
