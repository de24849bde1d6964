//! What the kernel knows about every eBPF program and map on the host, for
//! the eBPF statistics operator (`operator.ebpf.emitstats`, the bpfstats
//! gadget): programs with their run time and run count, maps with the
//! memory they hold, and the switch that makes the kernel count.
//!
//! The kernel counts run time and runs only while `bpf_stats_enabled` is
//! on. [`StatsSwitch::enable`] turns it on the way upstream does: first
//! with `BPF_ENABLE_STATS`, which hands out a file descriptor and counts
//! for as long as any such descriptor is open, so the previous state comes
//! back when ours is closed, whatever ends ig (SIGKILL included, since the
//! kernel closes a dead process's descriptors); the `kernel.bpf_stats_enabled`
//! sysctl then reads 1 while it is open. Kernels before 5.8 lack it: then
//! the sysctl itself is set, and its previous value written back when the
//! switch is dropped (stop, error, SIGINT, SIGTERM); a SIGKILL leaves it on.
//!
//! With `loader.rs`, the only users of aya: these are read-only queries by
//! id, and the switch.

use std::collections::HashMap;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};

/// Where the sysctl lives.
pub const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Why the kernel's eBPF statistics cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Cannot turn on the kernel's eBPF statistics.
    #[error(
        "cannot turn on the kernel's eBPF statistics: BPF_ENABLE_STATS failed ({syscall}) and so did writing {path}"
    )]
    Enable {
        /// Why `BPF_ENABLE_STATS` failed.
        syscall: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Listing eBPF programs failed.
    #[error("listing eBPF programs")]
    List(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The kernel counts program runs while this lives.
#[derive(Debug)]
pub enum StatsSwitch {
    /// A `BPF_ENABLE_STATS` descriptor: closing it is the restore.
    Fd(OwnedFd),
    /// The sysctl was written; `previous` goes back on drop.
    Sysctl {
        /// The sysctl file (`/proc/sys/kernel/bpf_stats_enabled`).
        path: PathBuf,
        /// Its value before.
        previous: String,
    },
}

impl StatsSwitch {
    /// Turn statistics on, with `BPF_ENABLE_STATS` if the kernel has it,
    /// else the sysctl.
    pub fn enable() -> Result<Self, StatsError> {
        match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => Ok(Self::Fd(fd)),
            Err(e) => {
                log::debug!("BPF_ENABLE_STATS: {e}; setting {SYSCTL} instead");
                Self::with_sysctl(Path::new(SYSCTL)).map_err(|(path, source)| StatsError::Enable {
                    syscall: e.to_string(),
                    path,
                    source,
                })
            }
        }
    }

    /// Turn statistics on through the sysctl at `path`, remembering what it
    /// held.
    pub fn with_sysctl(path: &Path) -> Result<Self, (PathBuf, std::io::Error)> {
        let fail = |e| (path.to_owned(), e);
        let previous = std::fs::read_to_string(path).map_err(fail)?;
        std::fs::write(path, "1").map_err(fail)?;
        Ok(Self::Sysctl {
            path: path.to_owned(),
            previous: previous.trim().to_owned(),
        })
    }
}

impl Drop for StatsSwitch {
    fn drop(&mut self) {
        if let Self::Sysctl { path, previous } = self
            && let Err(e) = std::fs::write(&*path, previous.as_bytes())
        {
            log::warn!("could not restore {} to {previous}: {e}", path.display());
        }
    }
}

/// One loaded program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The kernel's id of the program.
    pub id: u32,
    /// The kernel keeps the first 15 bytes of the name.
    pub name: String,
    /// Upstream's name of its type (`TracePoint`, `Kprobe`...).
    pub kind: &'static str,
    /// Nanoseconds run since statistics were turned on.
    pub run_time_ns: u64,
    /// Runs since statistics were turned on.
    pub run_count: u64,
    /// The maps it uses.
    pub map_ids: Vec<u32>,
}

/// Every program loaded now. Programs unloaded while we list are left out.
pub fn programs() -> Result<Vec<Program>, StatsError> {
    let mut out = Vec::new();
    let mut first_error = None;
    for p in aya::programs::loaded_programs() {
        match p {
            Ok(p) => out.push(Program {
                id: p.id(),
                name: String::from_utf8_lossy(p.name()).into_owned(),
                kind: type_name(p.program_type() as u32),
                run_time_ns: u64::try_from(p.run_time().as_nanos()).unwrap_or(u64::MAX),
                run_count: p.run_count(),
                map_ids: p.map_ids().ok().flatten().unwrap_or_default(),
            }),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // An error for every program is a refusal (privileges), not churn.
    match first_error {
        Some(e) if out.is_empty() => Err(StatsError::List(Box::new(e))),
        _ => Ok(out),
    }
}

/// The memory each map holds (`memlock` of its fdinfo), by map id.
pub fn map_memory() -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    for m in aya::maps::loaded_maps().flatten() {
        let Ok(fd) = m.fd() else { continue };
        let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
        if let Some(n) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| fdinfo_value(&t, "memlock"))
        {
            out.insert(m.id(), n);
        }
    }
    out
}

/// A `key:\tvalue` number of an fdinfo file.
pub fn fdinfo_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Upstream's name of a program type (the kernel's `enum bpf_prog_type`).
pub fn type_name(t: u32) -> &'static str {
    const NAMES: &[&str] = &[
        "UnspecifiedProgram",
        "SocketFilter",
        "Kprobe",
        "SchedCLS",
        "SchedACT",
        "TracePoint",
        "XDP",
        "PerfEvent",
        "CGroupSKB",
        "CGroupSock",
        "LWTIn",
        "LWTOut",
        "LWTXmit",
        "SockOps",
        "SkSKB",
        "CGroupDevice",
        "SkMsg",
        "RawTracepoint",
        "CGroupSockAddr",
        "LWTSeg6Local",
        "LircMode2",
        "SkReuseport",
        "FlowDissector",
        "CGroupSysctl",
        "RawTracepointWritable",
        "CGroupSockopt",
        "Tracing",
        "StructOps",
        "Extension",
        "LSM",
        "SkLookup",
        "Syscall",
        "Netfilter",
    ];
    usize::try_from(t)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("Unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sysctl_gets_its_value_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bpf_stats_enabled");
        std::fs::write(&p, "0\n").unwrap();
        let s = StatsSwitch::with_sysctl(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1");
        drop(s);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "0");
        // Already on: stays on.
        std::fs::write(&p, "1\n").unwrap();
        drop(StatsSwitch::with_sysctl(&p).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1");
        assert!(StatsSwitch::with_sysctl(&d.path().join("nope")).is_err());
    }

    #[test]
    fn names_and_fdinfo() {
        assert_eq!(type_name(5), "TracePoint");
        assert_eq!(type_name(2), "Kprobe");
        assert_eq!(type_name(26), "Tracing");
        assert_eq!(type_name(32), "Netfilter");
        assert_eq!(type_name(999), "Unknown");
        let fdinfo = "pos:\t0\nflags:\t02000002\nmap_type:\t27\nmemlock:\t4198400\nmap_id:\t42\n";
        assert_eq!(fdinfo_value(fdinfo, "memlock"), Some(4_198_400));
        assert_eq!(fdinfo_value(fdinfo, "map_id"), Some(42));
        assert_eq!(fdinfo_value(fdinfo, "prog_id"), None);
    }
}
