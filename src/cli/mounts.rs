//! `--auto-mount-filesystems`: mount tracefs, debugfs and bpffs on their
//! usual places when nothing is mounted there, as upstream's flag does. A
//! fresh container or a minimal VM often lacks them, and tracepoint
//! attachment needs tracefs.
//!
//! Owns: reading `/proc/self/mountinfo` and the `mount(2)` calls. Mounts
//! are left in place when ig exits (they are the host's, as after
//! `mount -t tracefs ...`).

use std::ffi::CString;

use anyhow::Context as _;

/// `(filesystem type, mount point)` in the order they are mounted: debugfs
/// first, since older kernels expose tracefs below it.
pub const FILESYSTEMS: &[(&str, &str)] = &[
    ("debugfs", "/sys/kernel/debug"),
    ("tracefs", "/sys/kernel/tracing"),
    ("bpf", "/sys/fs/bpf"),
];

/// Whether `mountinfo` (the text of /proc/self/mountinfo) has a mount of
/// `fstype` on `dir`.
pub fn is_mounted(mountinfo: &str, fstype: &str, dir: &str) -> bool {
    mountinfo.lines().any(|l| {
        let mut fields = l.split(' ');
        let point = fields.nth(4);
        // After the optional fields comes `-`, then the type.
        let kind = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
        point == Some(dir) && kind == Some(fstype)
    })
}

/// Mounts each missing filesystem of [`FILESYSTEMS`].
pub fn auto_mount() -> anyhow::Result<()> {
    for &(fstype, dir) in FILESYSTEMS {
        let info = std::fs::read_to_string("/proc/self/mountinfo")
            .context("reading /proc/self/mountinfo")?;
        if is_mounted(&info, fstype, dir) {
            log::debug!("{fstype} is mounted on {dir}");
            continue;
        }
        let c = |s: &str| CString::new(s).expect("no NUL in constants");
        let (src, target, kind) = (c(fstype), c(dir), c(fstype));
        // SAFETY: three valid NUL-terminated strings that outlive the call,
        // and no data argument.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                kind.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(e).with_context(|| {
                format!("mounting {fstype} on {dir} (--auto-mount-filesystems needs root)")
            });
        }
        log::info!("mounted {fstype} on {dir}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let info = "\
36 25 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime shared:14 - tracefs tracefs rw
40 25 0:33 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime - bpf bpf rw,mode=700
41 25 0:34 / /sys/kernel/debug rw - tmpfs none rw";
        assert!(is_mounted(info, "tracefs", "/sys/kernel/tracing"));
        assert!(is_mounted(info, "bpf", "/sys/fs/bpf"));
        assert!(!is_mounted(info, "debugfs", "/sys/kernel/debug"));
        assert!(!is_mounted(info, "bpf", "/sys/fs/bpf/x"));
    }
}
